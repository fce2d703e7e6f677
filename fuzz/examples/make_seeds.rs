//! Writes the committed seed corpus, fuzz/corpus/<target>/, from sigtrace-common's real
//! record types and this process's own /proc files, so that the seeds follow the ABI:
//! `cd fuzz && rustup run nightly cargo run --example make_seeds` after a record changes.
//! Each seed is a small meaningful input; libFuzzer's mutations start from them.

use std::{fs, io, mem::size_of, path::Path};

use sigtrace_common::{
    COMM_LEN, DeliverEvent, ExitEvent, ForkEvent, GenerateEvent, Header, SigactionEvent,
    TTY_NAME_LEN, TaskIds, kind, result, si, via,
};

const SIGINT: i32 = 2;
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;
const SIGCHLD: i32 = 17;

fn main() -> io::Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    decode_record(&corpus.join("decode_record"))?;
    parse_signal_and_mask(&corpus.join("parse_signal_and_mask"))?;
    parse_proc(&corpus.join("parse_proc"))?;
    Ok(())
}

fn name<const N: usize>(text: &[u8]) -> [u8; N] {
    let mut field = [0; N];
    let len = text.len().min(N - 1);
    field[..len].copy_from_slice(&text[..len]);
    field
}

fn task(tgid: u32, comm: &[u8]) -> TaskIds {
    TaskIds {
        tgid,
        tid: tgid,
        uid: 1000,
        _pad: 0,
        comm: name::<COMM_LEN>(comm),
    }
}

fn bytes_of<T: Copy>(record: &T) -> &[u8] {
    // SAFETY: sigtrace-common's records are #[repr(C)] integer structs without padding.
    unsafe { std::slice::from_raw_parts(std::ptr::from_ref(record).cast::<u8>(), size_of::<T>()) }
}

/// A decode_record input: the flags byte, then each record framed by its length.
struct Stream(Vec<u8>);

impl Stream {
    fn new(flags: u8) -> Self {
        Stream(vec![flags])
    }

    fn raw(mut self, bytes: &[u8]) -> Self {
        self.0
            .push(u8::try_from(bytes.len()).expect("a record fits a length byte"));
        self.0.extend_from_slice(bytes);
        self
    }

    fn record<T: Copy>(self, record: &T) -> Self {
        self.raw(bytes_of(record))
    }
}

fn generate(ts_ns: u64, sig: i32, sender: TaskIds, target: TaskIds) -> GenerateEvent {
    let mut e = GenerateEvent {
        header: Header::new(kind::GENERATE, ts_ns),
        sender,
        target,
        sig,
        code: si::USER,
        group: 1,
        result: result::DELIVERED,
        via: via::KILL,
        via_arg: i64::from(target.tgid),
        si_pid: sender.tgid,
        si_uid: sender.uid,
        ..GenerateEvent::default()
    };
    e.recipient.pgid = target.tgid;
    e.recipient.sid = target.tgid;
    e.recipient.ns_tgid = target.tgid;
    e.recipient.ns_pgid = target.tgid;
    e.recipient.ns_sid = target.tgid;
    e.recipient.parent_tgid = sender.tgid;
    e
}

fn deliver(ts_ns: u64, sig: i32, task: TaskIds, handler: u64) -> DeliverEvent {
    DeliverEvent {
        header: Header::new(kind::DELIVER, ts_ns),
        task,
        sig,
        code: si::USER,
        handler,
        ..DeliverEvent::default()
    }
}

fn exit(ts_ns: u64, task: TaskIds, exit_code: i32, parent: u32, children: &[u32]) -> ExitEvent {
    let mut e = ExitEvent {
        header: Header::new(kind::EXIT, ts_ns),
        task,
        exit_code,
        parent_tgid: parent,
        children_count: u32::try_from(children.len()).unwrap_or(u32::MAX),
        ..ExitEvent::default()
    };
    e.children[..children.len()].copy_from_slice(children);
    e
}

fn decode_record(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    // The README's story: bash kills a wrapper script, which dies and orphans its server.
    let bash = task(16652, b"bash");
    let story = task(16656, b"story.sh");
    let mut dying = deliver(2_000_000, SIGKILL, story, 0);
    dying.group_exit_code = SIGTERM;
    let seed = Stream::new(0)
        .record(&generate(1_000_000, SIGTERM, bash, story))
        .record(&deliver(1_500_000, SIGTERM, story, 0))
        .record(&dying)
        .record(&exit(2_100_000, story, SIGTERM, 1, &[16658]));
    fs::write(dir.join("story"), seed.0)?;

    // ^C on a terminal: the tty signals the foreground group, one generation per member.
    let kworker = task(16542, b"kworker/u8:3");
    let perl = task(17153, b"perl");
    let shell = task(17152, b"bash");
    let mut stream = Stream::new(1 | 4);
    for (i, member) in [perl, shell].into_iter().enumerate() {
        let mut e = generate(5_000_000 + i as u64, SIGINT, kworker, member);
        e.code = si::KERNEL;
        e.info_kind = 1;
        e.via = via::OTHER;
        e.via_arg = 0;
        e.recipient.pgid = 17152;
        e.recipient.sid = 17152;
        e.recipient.tty = name::<TTY_NAME_LEN>(b"pts0");
        e.recipient.tty_fg_pgid = 17152;
        e.recipient.handler = if i == 0 { 0x55fe_96a8_1570 } else { 1 };
        if i == 1 {
            e.result = result::IGNORED;
        }
        stream = stream.record(&e);
    }
    let seed = stream
        .record(&deliver(5_100_000, SIGINT, perl, 0x55fe_96a8_1570))
        .record(&exit(5_300_000, perl, 0, 17152, &[]))
        .record(&generate(5_310_000, SIGCHLD, perl, shell))
        .record(&exit(6_000_000, shell, 0, 1, &[]));
    fs::write(dir.join("tty_fanout"), seed.0)?;

    // A followed fork and two changes of action, one refused.
    let fork = ForkEvent {
        header: Header::new(kind::FORK, 7_000_000),
        parent: bash,
        child_tgid: 20000,
        child_tid: 20000,
    };
    let child = task(20000, b"sleep");
    let installed = SigactionEvent {
        header: Header::new(kind::SIGACTION, 7_100_000),
        task: child,
        sig: SIGTERM,
        new_handler: 0x5555_0000_1234,
        new_flags: 0x0400_0000,
        ..SigactionEvent::default()
    };
    let refused = SigactionEvent {
        header: Header::new(kind::SIGACTION, 7_200_000),
        task: child,
        sig: SIGKILL,
        ret: -22,
        ..SigactionEvent::default()
    };
    let seed = Stream::new(2)
        .record(&fork)
        .record(&installed)
        .record(&refused);
    fs::write(dir.join("fork_sigaction"), seed.0)?;

    // Records that are not right: truncated, shorter than a header, of an unknown kind,
    // and padded past their size.
    let whole = generate(8_000_000, SIGTERM, bash, story);
    let mut padded = bytes_of(&deliver(8_100_000, SIGTERM, story, 0)).to_vec();
    padded.resize(255, 0xa5);
    let seed = Stream::new(0)
        .raw(&bytes_of(&whole)[..40])
        .raw(&[1, 0, 0, 0])
        .record(&Header::new(99, 8_050_000))
        .raw(&padded);
    fs::write(dir.join("malformed"), seed.0)?;

    // A hostile name: a screen clear, a newline, a bidi override and invalid UTF-8.
    let hostile = task(31337, b"\x1b[2J\n\xe2\x80\xae\xff");
    let seed = Stream::new(0)
        .record(&generate(9_000_000, SIGTERM, hostile, bash))
        .record(&exit(9_100_000, hostile, 0x8b, 1, &[]));
    fs::write(dir.join("hostile_comm"), seed.0)?;
    Ok(())
}

fn parse_signal_and_mask(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let seeds: &[(&str, &str)] = &[
        ("mask_hex", "0x4b813efb"),
        ("mask_proc_line", "SigCgt:\t0000000000004a02"),
        ("mask_ps", "000000004b813efb"),
        ("mask_bits", "0b1001011100000010011111011111011"),
        ("mask_decimal", "1266761467"),
        ("mask_names", "SIGHUP SIGINT,usr1|9"),
        (
            "mask_table",
            "BIT  NUM  NAME         ACTION DESCRIPTION\n  1    2  SIGINT       Term   Interrupt from keyboard\n 16   17  SIGCHLD      Ign    Child stopped or terminated\n",
        ),
        ("signal_rt", "SIGRTMIN+3"),
        ("signal_alias", "sigiot"),
        ("size", "256K"),
        (
            "cli_trace",
            "--signal\nINT,TERM\n--exclude-signal\nRTMAX-1\n--ring-size\n4M\n--comm\nbash,story.sh\n--uid\n1000\n--failed",
        ),
        (
            "cli_mask",
            "mask\n--format\njson\n0x4b813efb\nSigCgt:\t0000000000004a02",
        ),
    ];
    for (name, text) in seeds {
        fs::write(dir.join(name), text)?;
    }
    Ok(())
}

fn parse_proc(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let status = fs::read("/proc/self/status")?;
    let stat = fs::read("/proc/self/stat")?;
    fs::write(dir.join("self_status"), &status)?;
    fs::write(dir.join("self_stat"), &stat)?;
    // A name with the characters that make stat hard to split: parentheses and spaces.
    let text = String::from_utf8_lossy(&stat);
    if let (Some(open), Some(close)) = (text.find('('), text.rfind(')')) {
        let tricky = format!("{}(a) (b c) d){}", &text[..open], &text[close + 1..]);
        fs::write(dir.join("stat_tricky_name"), tricky)?;
    }
    Ok(())
}
