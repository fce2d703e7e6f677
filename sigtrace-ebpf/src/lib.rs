//! Present only so that the userspace crate can name this package as a build dependency
//! (cargo then rebuilds it when this crate changes); the programs are in `main.rs` and
//! its modules (`programs/` for the hooks).
#![no_std]
