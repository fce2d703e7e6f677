//! Ring buffer records → typed events. Every record starts with a [`Header`]; the decoder
//! checks the length for the kind it names before copying, so a short or unknown record is an
//! error, never undefined behaviour.

use std::mem::size_of;

use sigtrace_common::{
    DeliverEvent, ExitEvent, ForkEvent, GenerateEvent, Header, SigactionEvent, SigreturnEvent, kind,
};

/// One decoded record.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    Generate(GenerateEvent),
    Deliver(DeliverEvent),
    Exit(ExitEvent),
    Fork(ForkEvent),
    Sigaction(SigactionEvent),
    Sigreturn(SigreturnEvent),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than a header")]
    Short(usize),
    #[error("record of kind {kind} has {len} bytes, expected {expected}")]
    Length {
        kind: u32,
        len: usize,
        expected: usize,
    },
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
}

/// Marker for the plain-data records that may be copied out of raw bytes.
///
/// # Safety
/// Implementors must be `#[repr(C)]` structs of integers and integer arrays, valid for any
/// bit pattern.
unsafe trait Record: Copy {}
macro_rules! plain_records {
    ($($record:ty),+) => {$(
        // SAFETY: a #[repr(C)] integer-only struct (sigtrace-common pins its size).
        unsafe impl Record for $record {}
    )+};
}
plain_records!(
    Header,
    GenerateEvent,
    DeliverEvent,
    ExitEvent,
    ForkEvent,
    SigactionEvent,
    SigreturnEvent
);

fn copy_record<T: Record>(bytes: &[u8], kind: u32) -> Result<T, DecodeError> {
    let expected = size_of::<T>();
    // The ring buffer pads records to 8 bytes, so allow a longer slice.
    if bytes.len() < expected {
        return Err(DecodeError::Length {
            kind,
            len: bytes.len(),
            expected,
        });
    }
    // SAFETY: length checked above; `T: Record` is valid for any bit pattern; the read is
    // unaligned-safe.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    if bytes.len() < size_of::<Header>() {
        return Err(DecodeError::Short(bytes.len()));
    }
    let header: Header = copy_record(bytes, 0)?;
    Ok(match header.kind {
        kind::GENERATE => Event::Generate(copy_record(bytes, header.kind)?),
        kind::DELIVER => Event::Deliver(copy_record(bytes, header.kind)?),
        kind::EXIT => Event::Exit(copy_record(bytes, header.kind)?),
        kind::FORK => Event::Fork(copy_record(bytes, header.kind)?),
        kind::SIGACTION => Event::Sigaction(copy_record(bytes, header.kind)?),
        kind::SIGRETURN => Event::Sigreturn(copy_record(bytes, header.kind)?),
        other => return Err(DecodeError::UnknownKind(other)),
    })
}

impl Event {
    pub fn ts_ns(&self) -> u64 {
        match self {
            Event::Generate(e) => e.header.ts_ns,
            Event::Deliver(e) => e.header.ts_ns,
            Event::Exit(e) => e.header.ts_ns,
            Event::Fork(e) => e.header.ts_ns,
            Event::Sigaction(e) => e.header.ts_ns,
            Event::Sigreturn(e) => e.header.ts_ns,
        }
    }
}

/// A kernel comm or tty name (NUL-padded, not necessarily UTF-8) as text, borrowed when it
/// is UTF-8 (it nearly always is).
pub fn comm(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end])
}

/// [`comm`], owned.
pub(crate) fn comm_str(bytes: &[u8]) -> String {
    comm(bytes).into_owned()
}

#[cfg(test)]
pub(crate) fn record_bytes<T: Copy>(record: &T) -> Vec<u8> {
    // SAFETY: reading the bytes of a plain-data value for a test fixture.
    unsafe { std::slice::from_raw_parts((record as *const T).cast::<u8>(), size_of::<T>()) }
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_generate_record() {
        let mut record = GenerateEvent::default();
        record.header.kind = kind::GENERATE;
        record.sig = 10;
        record.target.tgid = 42;
        let bytes = record_bytes(&record);
        match decode(&bytes) {
            Ok(Event::Generate(e)) => {
                assert_eq!(e.sig, 10);
                assert_eq!(e.target.tgid, 42);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        assert_eq!(decode(&[0; 4]).unwrap_err(), DecodeError::Short(4));
        let mut record = GenerateEvent::default();
        record.header.kind = kind::GENERATE;
        let bytes = record_bytes(&record);
        assert!(matches!(
            decode(&bytes[..40]),
            Err(DecodeError::Length { kind: 1, .. })
        ));
        let header = Header {
            kind: 99,
            ..Default::default()
        };
        assert_eq!(
            decode(&record_bytes(&header)).unwrap_err(),
            DecodeError::UnknownKind(99)
        );
    }

    #[test]
    fn comm_stops_at_nul() {
        assert_eq!(comm_str(b"bash\0\0\0\0"), "bash");
        assert_eq!(comm_str(b"0123456789abcdef"), "0123456789abcdef");
    }
}
