//! sigtrace's end-to-end suite, one test binary: the real `sigtrace` binary (found by
//! [`util::sigtrace_bin`]) against real processes these tests spawn, with real signals and,
//! as root, real BPF. Without root the tests that load BPF skip loudly, except under
//! CI=true, where a skip is a failure.
//!
//! The tests of every module run in parallel threads of this one process; a test that must
//! not share the machine with any other takes [`util::alone`], every other one that starts
//! processes [`util::beside_others`].

mod audit;
mod containers;
mod faults;
mod fold;
mod handlers;
mod hostile;
mod interrupted;
mod kernel_log;
mod knowledge;
mod metrics;
mod outcomes;
mod rotation;
mod schema;
mod senders;
mod stacks;
mod trace;
mod util;
