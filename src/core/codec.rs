//! The one binary codec of persisted state: little-endian fixed-width fields, LEB128 varints,
//! length-prefixed byte strings and an optional trailing FNV-1a checksum, with one
//! [`DecodeError`] for everything that reads it back.
//!
//! Every state type documents its own layout next to the code that writes it; this module only
//! provides the primitives, so that a flipped bit, a truncated value or a newer format surfaces
//! as the same error wherever it is read (keyed state, detector models, checkpoints).

use std::borrow::Cow;

use super::hash::fnv1a64;

/// Why persisted bytes could not be decoded. Each variant means the bytes are not a state this
/// build can restore; retrying will not help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before the encoding did.
    #[error("truncated: wanted {wanted} bytes, {left} left")]
    Truncated {
        /// Bytes the next field needs.
        wanted: usize,
        /// Bytes that were left.
        left: usize,
    },
    /// Bytes were left over after the encoding ended.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
    /// The bytes do not start with the expected magic tag: not this kind of state at all.
    #[error("not an osprey {0} state (bad magic)")]
    BadMagic(&'static str),
    /// Written by a newer (or unknown) encoder that this build does not understand.
    #[error("unsupported state version {0}")]
    UnsupportedVersion(u16),
    /// The trailing checksum does not match: the bytes were corrupted in storage or transit.
    #[error("state checksum mismatch")]
    Checksum,
    /// Structurally invalid content; the text names the violated invariant.
    #[error("invalid state: {0}")]
    Invalid(Cow<'static, str>),
}

impl DecodeError {
    /// An [`DecodeError::Invalid`] with a fixed or formatted reason.
    pub fn invalid(reason: impl Into<Cow<'static, str>>) -> Self {
        DecodeError::Invalid(reason.into())
    }
}

/// Appends little-endian primitives to a byte buffer that may already hold other data.
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> Writer<'a> {
    /// Starts an encoding at the current end of `out`.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        let start = out.len();
        Writer { out, start }
    }

    /// Raw bytes, no length prefix.
    pub fn bytes(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    /// A u64 length prefix, then the bytes.
    pub fn len_bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.bytes(b);
    }

    /// A byte.
    pub fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    /// A little-endian u16.
    pub fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }

    /// A little-endian u32.
    pub fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }

    /// A little-endian u64.
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    /// A little-endian i64.
    pub fn i64(&mut self, v: i64) {
        self.bytes(&v.to_le_bytes());
    }

    /// An f32's exact bit pattern.
    pub fn f32(&mut self, v: f32) {
        self.u32(v.to_bits());
    }

    /// An f64's exact bit pattern (a decoded model is bit-identical).
    pub fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }

    /// Unsigned LEB128.
    pub fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    /// Bytes written since [`Writer::new`].
    pub fn written(&self) -> usize {
        self.out.len() - self.start
    }

    /// Appends the FNV-1a checksum of everything written since [`Writer::new`] and ends the
    /// encoding.
    pub fn finish_with_checksum(self) {
        let sum = fnv1a64(&self.out[self.start..]);
        self.out.extend_from_slice(&sum.to_le_bytes());
    }
}

/// Reads what [`Writer`] wrote.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads from `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    /// Checks and strips the trailing checksum [`Writer::finish_with_checksum`] appended.
    pub fn with_checksum(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.len() < 8 {
            return Err(DecodeError::Truncated {
                wanted: 8,
                left: bytes.len(),
            });
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        let sum = u64::from_le_bytes(sum.try_into().expect("split at len - 8"));
        if fnv1a64(body) != sum {
            return Err(DecodeError::Checksum);
        }
        Ok(Reader { bytes: body })
    }

    /// Takes `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::Truncated {
                wanted: n,
                left: self.bytes.len(),
            });
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }

    /// A byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A little-endian i64.
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// An f32 bit pattern.
    pub fn f32(&mut self) -> Result<f32, DecodeError> {
        Ok(f32::from_bits(self.u32()?))
    }

    /// An f64 bit pattern.
    pub fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_bits(self.u64()?))
    }

    /// A u64 length prefix, then that many bytes.
    pub fn len_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = usize::try_from(self.u64()?).map_err(|_| DecodeError::invalid("length overflow"))?;
        self.take(n)
    }

    /// Unsigned LEB128 of at most ten bytes.
    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::invalid("varint longer than ten bytes"))
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    /// True when everything was read.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Fails unless everything was read.
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.bytes.len() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn round_trips(a in any::<u64>(), b in any::<u16>(), c in any::<f64>(), d in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut out = vec![9u8];
            let mut w = Writer::new(&mut out);
            w.varint(a);
            w.u16(b);
            w.f64(c);
            w.len_bytes(&d);
            w.finish_with_checksum();
            let mut r = Reader::with_checksum(&out[1..]).unwrap();
            prop_assert_eq!(r.varint().unwrap(), a);
            prop_assert_eq!(r.u16().unwrap(), b);
            prop_assert_eq!(r.f64().unwrap().to_bits(), c.to_bits());
            prop_assert_eq!(r.len_bytes().unwrap(), &d[..]);
            r.finish().unwrap();
        }
    }

    #[test]
    fn a_flipped_bit_is_a_checksum_error() {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out);
        w.u64(42);
        w.finish_with_checksum();
        out[3] ^= 4;
        assert_eq!(Reader::with_checksum(&out).unwrap_err(), DecodeError::Checksum);
    }

    #[test]
    fn truncation_and_trailing_bytes_are_named() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(
            r.u64().unwrap_err(),
            DecodeError::Truncated { wanted: 8, left: 3 }
        );
        let mut r = Reader::new(&[1, 2, 3]);
        r.u8().unwrap();
        assert_eq!(r.finish().unwrap_err(), DecodeError::TrailingBytes(2));
    }
}
