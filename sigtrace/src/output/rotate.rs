//! `-o FILE` as a log file: `--rotate-size` renames FILE to FILE.1 (FILE.1 to FILE.2, ...)
//! before a record would take it past the size, and SIGHUP reopens FILE after logrotate
//! moved it. Every open goes through [`file::open_append`], with its refusals.
//!
//! The layer sits in front of the buffer, where [`Output`](super::Output) hands over whole
//! lines (one `write_all` per record), so that a rotation falls between two records: a JSON
//! line split over two files would be a corrupt record for a log shipper. A write that would
//! cross the size is split at its line ends, and a line is never split: one written in
//! pieces (a text loss notice, the text summary) is held until its end, and one longer than the size fills a
//! file alone.

use std::{
    ffi::OsString,
    fs::File,
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

use super::file;

/// Size of the buffer between the records and the file.
const BUFFER: usize = 64 * 1024;

/// `--rotate-size` and `--rotate-keep`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rotation {
    /// A file is not taken past this many bytes (unless by a single record).
    pub(crate) size: u64,
    /// Rotated files kept, FILE.1 (newest) to FILE.keep; 0 keeps none.
    pub(crate) keep: u32,
}

/// The output file, buffered; `W` wraps each file opened (the tracer's stop watchdog).
pub(crate) struct LogFile<W: Write> {
    path: PathBuf,
    rotation: Option<Rotation>,
    out: BufWriter<W>,
    wrap: fn(File) -> W,
    /// Bytes in the current file: what it had when opened, and what was written since
    /// (buffered or not).
    size: u64,
    /// The last byte written ended a line (or nothing was written yet).
    at_line_start: bool,
    /// The start of a line written in pieces, held until its end comes (or a flush).
    partial: Vec<u8>,
}

impl<W: Write> LogFile<W> {
    pub(crate) fn open(
        path: &Path,
        rotation: Option<Rotation>,
        wrap: fn(File) -> W,
    ) -> Result<Self, file::OpenError> {
        let (file, size) = open_sized(path)?;
        Ok(LogFile {
            path: path.to_owned(),
            rotation,
            out: BufWriter::with_capacity(BUFFER, wrap(file)),
            wrap,
            size,
            at_line_start: true,
            partial: Vec::new(),
        })
    }

    /// SIGHUP: what is buffered goes to the file open now (moved away by logrotate, or
    /// not), and what follows to FILE, created anew when it is gone.
    pub(crate) fn reopen(&mut self) -> io::Result<()> {
        self.flush()?;
        self.switch()
    }

    /// Opens FILE and writes into it from now on; the old file is closed.
    fn switch(&mut self) -> io::Result<()> {
        let (file, size) = open_sized(&self.path).map_err(|e| {
            let kind = match &e {
                file::OpenError::Open { source, .. } => source.kind(),
                _ => io::ErrorKind::PermissionDenied,
            };
            io::Error::new(kind, e.to_string())
        })?;
        *self.out.get_mut() = (self.wrap)(file);
        self.size = size;
        Ok(())
    }

    /// FILE.n
    fn numbered(&self, n: u32) -> PathBuf {
        let mut name = OsString::from(self.path.as_os_str());
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Shifts FILE.1.. up by one (what falls past `keep` is replaced), FILE becomes FILE.1,
    /// and a new FILE is opened. Missing files are gaps, not errors: someone may have
    /// removed one, or FILE itself.
    fn rotate(&mut self, keep: u32) -> io::Result<()> {
        self.out.flush()?;
        let failed = |what: String, e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("-o {}: cannot rotate: {what}: {e}", self.path.display()),
            )
        };
        let gone_is_fine = |result: io::Result<()>| match result {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
        for n in (1..keep).rev() {
            let (from, to) = (self.numbered(n), self.numbered(n + 1));
            gone_is_fine(std::fs::rename(&from, &to)).map_err(|e| {
                failed(
                    format!("renaming {} to {}", from.display(), to.display()),
                    e,
                )
            })?;
        }
        if keep == 0 {
            gone_is_fine(std::fs::remove_file(&self.path))
                .map_err(|e| failed("removing it".into(), e))?;
        } else {
            let first = self.numbered(1);
            gone_is_fine(std::fs::rename(&self.path, &first))
                .map_err(|e| failed(format!("renaming it to {}", first.display()), e))?;
        }
        self.switch()
    }

    /// Writes complete lines (and, after a flush cut one short, the rest of a line),
    /// rotating before a line that would take the file past the size.
    fn write_lines(&mut self, lines: &[u8], rotation: Rotation) -> io::Result<()> {
        let mut rest = lines;
        while !rest.is_empty() {
            // The common case in one piece: all of it fits. Otherwise line by line.
            let end = if self.size + rest.len() as u64 <= rotation.size {
                rest.len()
            } else {
                rest.iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |i| i + 1)
            };
            let (piece, after) = rest.split_at(end);
            if self.at_line_start && self.size > 0 && self.size + piece.len() as u64 > rotation.size
            {
                self.rotate(rotation.keep)?;
            }
            self.out.write_all(piece)?;
            self.size += piece.len() as u64;
            self.at_line_start = piece.last() == Some(&b'\n');
            rest = after;
        }
        Ok(())
    }

    /// Writes the line begun in `partial`, ended or not (a flush).
    fn write_partial(&mut self, rotation: Rotation) -> io::Result<()> {
        let line = std::mem::take(&mut self.partial);
        let result = self.write_lines(&line, rotation);
        // Its allocation is kept for the next one.
        self.partial = line;
        self.partial.clear();
        result
    }
}

impl<W: Write> Write for LogFile<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(rotation) = self.rotation else {
            return self.out.write(buf);
        };
        let mut rest = buf;
        if !self.partial.is_empty() {
            let Some(i) = rest.iter().position(|&b| b == b'\n') else {
                self.partial.extend_from_slice(rest);
                return Ok(buf.len());
            };
            self.partial.extend_from_slice(&rest[..=i]);
            rest = &rest[i + 1..];
            self.write_partial(rotation)?;
        }
        // A record ends its write with its newline: found at once, from the end.
        let complete = rest.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let (lines, tail) = rest.split_at(complete);
        self.write_lines(lines, rotation)?;
        // The start of a line written in pieces waits for its end, so that its whole
        // length decides the rotation.
        self.partial.extend_from_slice(tail);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(rotation) = self.rotation
            && !self.partial.is_empty()
        {
            self.write_partial(rotation)?;
        }
        self.out.flush()
    }
}

/// Opens `path` for appending, with its current size.
fn open_sized(path: &Path) -> Result<(File, u64), file::OpenError> {
    let file = file::open_append(path)?;
    let size = file
        .metadata()
        .map_err(|source| file::OpenError::Open {
            path: path.display().to_string(),
            source,
        })?
        .len();
    Ok((file, size))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn rotating(path: &Path, size: u64, keep: u32) -> LogFile<File> {
        LogFile::open(path, Some(Rotation { size, keep }), |f| f).expect("open")
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn numbered(path: &Path, n: u32) -> PathBuf {
        PathBuf::from(format!("{}.{n}", path.display()))
    }

    /// A 10-byte line: "rec NNNNN\n".
    fn record(n: u32) -> String {
        format!("rec {n:05}\n")
    }

    #[test]
    fn rotates_before_a_record_would_cross_the_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trace.jsonl");
        let mut log = rotating(&path, 30, 5);
        // Three 10-byte records fill 30 bytes exactly; the fourth opens a new file.
        for n in 0..4 {
            log.write_all(record(n).as_bytes()).expect("write");
        }
        log.flush().expect("flush");
        assert_eq!(
            read(&numbered(&path, 1)),
            record(0) + &record(1) + &record(2)
        );
        assert_eq!(read(&path), record(3));
        assert!(!numbered(&path, 2).exists());
    }

    #[test]
    fn shifts_the_old_files_and_keeps_only_keep_of_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trace.log");
        let mut log = rotating(&path, 20, 2);
        for n in 0..9 {
            log.write_all(record(n).as_bytes()).expect("write");
        }
        log.flush().expect("flush");
        // Two records a file: 0 1 | 2 3 | 4 5 | 6 7 | 8 — the newest three files stay.
        assert_eq!(read(&path), record(8));
        assert_eq!(read(&numbered(&path, 1)), record(6) + &record(7));
        assert_eq!(read(&numbered(&path, 2)), record(4) + &record(5));
        assert!(!numbered(&path, 3).exists());
        for file in [path.clone(), numbered(&path, 1), numbered(&path, 2)] {
            assert_eq!(
                std::fs::metadata(&file).expect("stat").mode() & 0o777,
                0o600,
                "{}",
                file.display()
            );
        }
    }

    #[test]
    fn keep_zero_starts_afresh_without_an_old_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trace.log");
        let mut log = rotating(&path, 20, 0);
        for n in 0..5 {
            log.write_all(record(n).as_bytes()).expect("write");
        }
        log.flush().expect("flush");
        assert_eq!(read(&path), record(4));
        assert!(!numbered(&path, 1).exists());
    }

    #[test]
    fn a_record_larger_than_the_size_fills_a_file_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trace.log");
        let mut log = rotating(&path, 20, 5);
        let big = format!("{}\n", "x".repeat(49));
        log.write_all(record(0).as_bytes()).expect("write");
        log.write_all(big.as_bytes()).expect("write");
        log.write_all(record(1).as_bytes()).expect("write");
        log.flush().expect("flush");
        assert_eq!(read(&numbered(&path, 2)), record(0));
        assert_eq!(read(&numbered(&path, 1)), big);
        assert_eq!(read(&path), record(1));
    }

    #[test]
    fn lines_are_never_split_whatever_the_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trace.log");
        let size = 64;
        let mut log = rotating(&path, size, 100);
        // Lines of 1 to 40 bytes, handed over in every way: several in one write, one in
        // several writes, a write ending mid-line.
        let lines: Vec<String> = (0..200)
            .map(|n| format!("{}\n", "abcdefghij".repeat(4)[..n % 40].to_owned()))
            .collect();
        let all = lines.concat();
        let mut at = 0;
        for (i, chunk) in [1usize, 7, 13, 64, 100, 3, 250].iter().cycle().enumerate() {
            if at == all.len() {
                break;
            }
            let end = (at + chunk + i % 5).min(all.len());
            log.write_all(&all.as_bytes()[at..end]).expect("write");
            at = end;
        }
        log.flush().expect("flush");
        let mut files: Vec<PathBuf> = (1..=100)
            .rev()
            .map(|n| numbered(&path, n))
            .filter(|p| p.exists())
            .collect();
        files.push(path.clone());
        assert!(files.len() > 10, "{} files", files.len());
        let mut joined = String::new();
        for file in &files {
            let text = read(file);
            assert!(text.ends_with('\n'), "{}: {text:?}", file.display());
            assert!(text.len() as u64 <= size, "{}: {text:?}", file.display());
            joined.push_str(&text);
        }
        assert_eq!(joined, all, "every line once, in order");
    }

    #[test]
    fn an_existing_file_counts_its_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trace.log");
        std::fs::write(&path, "x".repeat(25) + "\n").expect("seed");
        let mut log = rotating(&path, 30, 5);
        log.write_all(record(0).as_bytes()).expect("write");
        log.flush().expect("flush");
        assert_eq!(read(&numbered(&path, 1)), "x".repeat(25) + "\n");
        assert_eq!(read(&path), record(0));
    }

    #[test]
    fn reopen_after_a_rename_writes_the_rest_to_a_new_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trace.log");
        let moved = dir.path().join("trace.log.old");
        let mut log = LogFile::open(&path, None, |f| f).expect("open");
        log.write_all(record(0).as_bytes()).expect("write");
        // logrotate: move, then HUP. What was still buffered belongs to the moved file.
        std::fs::rename(&path, &moved).expect("rename");
        log.write_all(record(1).as_bytes()).expect("write");
        log.reopen().expect("reopen");
        log.write_all(record(2).as_bytes()).expect("write");
        log.flush().expect("flush");
        assert_eq!(read(&moved), record(0) + &record(1));
        assert_eq!(read(&path), record(2));
        assert_eq!(
            std::fs::metadata(&path).expect("stat").mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn reopen_counts_the_new_files_size_for_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trace.log");
        let mut log = rotating(&path, 30, 5);
        log.write_all(record(0).as_bytes()).expect("write");
        log.write_all(record(1).as_bytes()).expect("write");
        std::fs::rename(&path, dir.path().join("moved")).expect("rename");
        log.reopen().expect("reopen");
        // A fresh FILE: three records fit before the next rotation.
        for n in 2..5 {
            log.write_all(record(n).as_bytes()).expect("write");
        }
        log.write_all(record(5).as_bytes()).expect("write");
        log.flush().expect("flush");
        assert_eq!(
            read(&numbered(&path, 1)),
            record(2) + &record(3) + &record(4)
        );
        assert_eq!(read(&path), record(5));
    }

    #[test]
    fn a_failed_reopen_is_one_clear_error_and_keeps_the_old_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("logs");
        std::fs::create_dir(&sub).expect("mkdir");
        let path = sub.join("trace.log");
        let mut log = LogFile::open(&path, None, |f| f).expect("open");
        log.write_all(record(0).as_bytes()).expect("write");
        std::fs::remove_file(&path).expect("rm");
        std::fs::remove_dir(&sub).expect("rmdir");
        let err = log.reopen().expect_err("its directory is gone");
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        assert!(err.to_string().starts_with("-o "), "{err}");
        assert!(err.to_string().contains("trace.log"), "{err}");
        // Still writable (into the unlinked file): no panic, no lost buffer.
        log.write_all(record(1).as_bytes()).expect("write");
        log.flush().expect("flush");
    }

    #[test]
    fn a_failed_rotation_names_the_file_and_the_step() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trace.log");
        // FILE.1 a non-empty directory: FILE cannot be renamed over it.
        std::fs::create_dir(numbered(&path, 1)).expect("mkdir");
        std::fs::write(numbered(&path, 1).join("x"), "").expect("file in it");
        let mut log = rotating(&path, 20, 1);
        log.write_all(record(0).as_bytes()).expect("write");
        log.write_all(record(1).as_bytes()).expect("write");
        let err = log
            .write_all(record(2).as_bytes())
            .expect_err("cannot rotate");
        let text = err.to_string();
        assert!(
            text.starts_with("-o ") && text.contains("cannot rotate: renaming it to"),
            "{text}"
        );
        assert_eq!(read(&path), record(0) + &record(1));
    }

    #[test]
    fn without_rotation_it_only_appends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trace.log");
        std::fs::write(&path, "before\n").expect("seed");
        let mut log = LogFile::open(&path, None, |f| f).expect("open");
        for n in 0..100 {
            log.write_all(record(n).as_bytes()).expect("write");
        }
        log.flush().expect("flush");
        assert_eq!(read(&path).len(), 7 + 1000);
        assert!(!numbered(&path, 1).exists());
    }
}
