//! The errors sigtrace reports, and the exit status each one means: 2 for input the user can
//! fix (a bad argument, missing privilege, no such process, no BTF), 1 for tracer failures.

use std::io;

use crate::{knowledge, loader::LoadError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad argument: one line naming the problem and what to do.
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Knowledge(#[from] knowledge::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Failed(String),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::BadInput(_) => 2,
            Error::Load(e) if e.is_bad_input() => 2,
            Error::Knowledge(e) => e.exit_code(),
            _ => 1,
        }
    }

    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
