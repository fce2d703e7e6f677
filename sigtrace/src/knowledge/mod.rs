//! Placeholder: `sigtrace mask|show|diff` are being written (issue 3).
use clap::Args;

#[derive(Debug, Args)]
pub struct MaskArgs {
    pub masks: Vec<String>,
}
#[derive(Debug, Args)]
pub struct ShowArgs {
    pub pid: i32,
}
#[derive(Debug, Args)]
pub struct DiffArgs {
    pub pids: Vec<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not written yet")]
    NotYet,
}
impl Error {
    pub fn exit_code(&self) -> u8 {
        2
    }
}

pub fn run_mask(_args: &MaskArgs, _out: &mut dyn std::io::Write) -> Result<(), Error> {
    Err(Error::NotYet)
}
pub fn run_show(_args: &ShowArgs, _out: &mut dyn std::io::Write) -> Result<(), Error> {
    Err(Error::NotYet)
}
pub fn run_diff(_args: &DiffArgs, _out: &mut dyn std::io::Write) -> Result<(), Error> {
    Err(Error::NotYet)
}
