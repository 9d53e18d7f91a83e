//! Encoding of state values: every value starts with a version byte, so a new osprey can read
//! (and migrate) what an older one wrote.

pub use crate::core::codec::{DecodeError, Reader, Writer};

/// A value kept in keyed state.
pub trait StateValue: Sized + Send + 'static {
    /// Appends the encoding (starting with a version byte) to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Decodes what `encode` wrote, in this or any earlier version.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;
}

impl StateValue for u64 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(1);
        Writer::new(out).u64(*self);
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        match r.u8()? {
            1 => {
                let v = r.u64()?;
                r.finish()?;
                Ok(v)
            }
            v => Err(DecodeError::UnsupportedVersion(u16::from(v))),
        }
    }
}

impl StateValue for Vec<u8> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(1);
        out.extend_from_slice(self);
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match bytes.split_first() {
            Some((1, rest)) => Ok(rest.to_vec()),
            Some((v, _)) => Err(DecodeError::UnsupportedVersion(u16::from(*v))),
            None => Err(DecodeError::Truncated { wanted: 1, left: 0 }),
        }
    }
}
