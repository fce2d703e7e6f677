//! `-o FILE`: the output file, opened for appending. Events name every user's processes, so
//! a file sigtrace creates is readable by its owner only (0600). In a directory anyone can
//! write to (/tmp), another user could have planted a symbolic link or a file of their own
//! under the name root is about to append to: there sigtrace neither follows a link nor
//! writes into a file or device it does not own.

use std::{
    fs::{File, OpenOptions},
    io,
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::Path,
};

/// Why the output file was refused: one line, naming the path and what to do.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    #[error(
        "-o {path}: is a symbolic link in {dir}, a directory anyone can write to; refusing to follow it (give the link's target instead)"
    )]
    SymlinkInSharedDir { path: String, dir: String },
    #[error(
        "-o {path}: in {dir}, a directory anyone can write to, it is {what}; refusing to append to it (remove it or choose another name)"
    )]
    ForeignInSharedDir {
        path: String,
        dir: String,
        what: String,
    },
    #[error("-o {path}: cannot open for appending: {source}")]
    Open {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Opens `path` for appending, creating it 0600.
pub(crate) fn open_append(path: &Path) -> Result<File, OpenError> {
    let shown = || path.display().to_string();
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let shared_dir = std::fs::metadata(dir).is_ok_and(|meta| meta.mode() & 0o002 != 0);
    let mut options = OpenOptions::new();
    options.create(true).append(true).mode(0o600);
    if shared_dir {
        // O_NONBLOCK: a planted FIFO must not hang us in open() waiting for a reader.
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = options
        .open(path)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::ELOOP) if shared_dir => OpenError::SymlinkInSharedDir {
                path: shown(),
                dir: dir.display().to_string(),
            },
            Some(libc::ENXIO) if shared_dir => OpenError::ForeignInSharedDir {
                path: shown(),
                dir: dir.display().to_string(),
                what: "not a regular file".to_owned(),
            },
            _ => OpenError::Open {
                path: shown(),
                source,
            },
        })?;
    if shared_dir {
        let meta = file.metadata().map_err(|source| OpenError::Open {
            path: shown(),
            source,
        })?;
        let me = nix::unistd::geteuid().as_raw();
        let what = if !meta.is_file() {
            Some("not a regular file".to_owned())
        } else if meta.uid() != me {
            Some(format!("owned by uid {}, not by you", meta.uid()))
        } else {
            None
        };
        if let Some(what) = what {
            return Err(OpenError::ForeignInSharedDir {
                path: shown(),
                dir: dir.display().to_string(),
                what,
            });
        }
        // Our own regular file: back to ordinary blocking writes.
        let flags = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL)
            .map(nix::fcntl::OFlag::from_bits_truncate)
            .and_then(|flags| {
                nix::fcntl::fcntl(
                    &file,
                    nix::fcntl::FcntlArg::F_SETFL(flags - nix::fcntl::OFlag::O_NONBLOCK),
                )
            });
        flags.map_err(|errno| OpenError::Open {
            path: shown(),
            source: errno.into(),
        })?;
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn shared_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777))
            .expect("chmod 1777");
        dir
    }

    #[test]
    fn creates_the_file_for_its_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trace.log");
        open_append(&path).expect("open");
        let mode = std::fs::metadata(&path).expect("stat").mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn appends_to_an_existing_file() {
        let dir = shared_dir();
        let path = dir.path().join("trace.log");
        std::fs::write(&path, "before\n").expect("seed");
        let mut file = open_append(&path).expect("open");
        io::Write::write_all(&mut file, b"after\n").expect("write");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "before\nafter\n"
        );
    }

    #[test]
    fn refuses_a_symlink_in_a_world_writable_directory() {
        let dir = shared_dir();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "untouched\n").expect("victim");
        let link = dir.path().join("trace.log");
        std::os::unix::fs::symlink(&victim, &link).expect("symlink");
        let err = open_append(&link).expect_err("a planted link");
        assert!(matches!(err, OpenError::SymlinkInSharedDir { .. }), "{err}");
        assert!(err.to_string().contains("refusing to follow it"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&victim).expect("read"),
            "untouched\n"
        );
    }

    #[test]
    fn follows_a_symlink_in_a_private_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("real.log");
        let link = dir.path().join("trace.log");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        open_append(&link).expect("the user's own link");
        assert!(target.exists());
    }

    #[test]
    fn refuses_another_users_file_in_a_world_writable_directory() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping: giving a file to another user needs root");
            return;
        }
        let dir = shared_dir();
        let planted = dir.path().join("trace.log");
        std::fs::write(&planted, "").expect("file");
        std::os::unix::fs::chown(&planted, Some(65534), Some(65534)).expect("chown");
        let err = open_append(&planted).expect_err("another user's file");
        assert!(err.to_string().contains("owned by uid 65534"), "{err}");
    }

    #[test]
    fn refuses_a_fifo_in_a_world_writable_directory() {
        let dir = shared_dir();
        let fifo = dir.path().join("trace.log");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666))
            .expect("mkfifo");
        // Without a reader (open would block) and with one (it would not).
        let err = open_append(&fifo).expect_err("a FIFO without a reader");
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let _reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .expect("reader");
        let err = open_append(&fifo).expect_err("a FIFO with a reader");
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}
