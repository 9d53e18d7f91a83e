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

    /// A state header: a 4-byte magic tag naming the kind of state, then a u16 format version
    /// (read back by [`Reader::header`]).
    pub fn header(&mut self, magic: &[u8; 4], version: u16) {
        self.bytes(magic);
        self.u16(version);
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
        let n =
            usize::try_from(self.u64()?).map_err(|_| DecodeError::invalid("length overflow"))?;
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

    /// Checks a header written by [`Writer::header`]: [`DecodeError::BadMagic`] (naming
    /// `what`) for another magic tag, [`DecodeError::UnsupportedVersion`] for another version.
    pub fn header(
        &mut self,
        magic: &[u8; 4],
        what: &'static str,
        version: u16,
    ) -> Result<(), DecodeError> {
        if self.take(4)? != magic {
            return Err(DecodeError::BadMagic(what));
        }
        match self.u16()? {
            v if v == version => Ok(()),
            v => Err(DecodeError::UnsupportedVersion(v)),
        }
    }

    /// Like [`Reader::header`], accepting any version in `versions`; returns the one read.
    pub fn header_in(
        &mut self,
        magic: &[u8; 4],
        what: &'static str,
        versions: std::ops::RangeInclusive<u16>,
    ) -> Result<u16, DecodeError> {
        if self.take(4)? != magic {
            return Err(DecodeError::BadMagic(what));
        }
        match self.u16()? {
            v if versions.contains(&v) => Ok(v),
            v => Err(DecodeError::UnsupportedVersion(v)),
        }
    }

    /// A varint length or count of at most `max`. Bounding every length by what the
    /// configuration allows keeps a corrupt input from making the decoder allocate wildly.
    pub fn varint_len(&mut self, max: usize) -> Result<usize, DecodeError> {
        let v = self.varint()?;
        bounded(v, max)
    }

    /// A little-endian u64 length or count of at most `max` (see [`Reader::varint_len`]).
    pub fn u64_len(&mut self, max: usize) -> Result<usize, DecodeError> {
        let v = self.u64()?;
        bounded(v, max)
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

fn bounded(v: u64, max: usize) -> Result<usize, DecodeError> {
    usize::try_from(v)
        .ok()
        .filter(|&n| n <= max)
        .ok_or(DecodeError::invalid("length out of range"))
}

/// Packs unsigned fields of up to 32 bits, least-significant bit first, into bytes (tree
/// shapes and the few-bit fields of tree nodes in detector models).
#[derive(Debug, Default)]
pub struct BitWriter {
    bytes: Vec<u8>,
    acc: u64,
    used: u32,
}

impl BitWriter {
    /// An empty bit string.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the low `width` bits of `v` (`width` ≤ 32).
    pub fn bits(&mut self, v: u32, width: u32) {
        debug_assert!(width <= 32 && (width == 32 || v >> width == 0));
        self.acc |= u64::from(v) << self.used;
        self.used += width;
        while self.used >= 8 {
            self.bytes.push(self.acc as u8);
            self.acc >>= 8;
            self.used -= 8;
        }
    }

    /// The packed bytes; the last one is zero-padded.
    pub fn into_bytes(mut self) -> Vec<u8> {
        if self.used > 0 {
            self.bytes.push(self.acc as u8);
        }
        self.bytes
    }
}

/// Reads what [`BitWriter`] wrote.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    bytes: &'a [u8],
    next: usize,
    acc: u64,
    avail: u32,
}

impl<'a> BitReader<'a> {
    /// Reads the bit string `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            next: 0,
            acc: 0,
            avail: 0,
        }
    }

    /// Reads a `width`-bit field (`width` ≤ 32).
    pub fn bits(&mut self, width: u32) -> Result<u32, DecodeError> {
        while self.avail < width {
            let b = *self
                .bytes
                .get(self.next)
                .ok_or(DecodeError::Truncated { wanted: 1, left: 0 })?;
            self.acc |= u64::from(b) << self.avail;
            self.next += 1;
            self.avail += 8;
        }
        let v = (self.acc & ((1u64 << width) - 1)) as u32;
        self.acc >>= width;
        self.avail -= width;
        Ok(v)
    }

    /// Fails unless every byte was needed and the padding is zero (canonical encoding).
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.next == self.bytes.len() && self.acc == 0 {
            Ok(())
        } else {
            Err(DecodeError::invalid("bit field has trailing data"))
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
        assert_eq!(
            Reader::with_checksum(&out).unwrap_err(),
            DecodeError::Checksum
        );
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

    #[test]
    fn bits_round_trip() {
        let mut w = BitWriter::new();
        for i in 0..100u32 {
            w.bits(i % 7, 3);
        }
        w.bits(u32::MAX, 32);
        w.bits(0, 0);
        let bytes = w.into_bytes();
        assert_eq!(bytes.len(), 42);
        let mut r = BitReader::new(&bytes);
        for i in 0..100u32 {
            assert_eq!(r.bits(3).expect("bits"), i % 7);
        }
        assert_eq!(r.bits(32).expect("bits"), u32::MAX);
        assert_eq!(r.bits(0).expect("bits"), 0);
        r.finish().expect("all read");
        assert!(BitReader::new(&[1]).finish().is_err());
    }

    #[test]
    fn headers_and_bounded_lengths() {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out);
        w.header(b"TEST", 3);
        w.varint(10);
        w.u64(11);
        let mut r = Reader::new(&out);
        r.header(b"TEST", "test", 3).unwrap();
        assert_eq!(r.varint_len(10).unwrap(), 10);
        assert!(matches!(r.u64_len(10), Err(DecodeError::Invalid(_))));
        let mut r = Reader::new(&out);
        assert_eq!(
            r.header(b"TEST", "test", 4),
            Err(DecodeError::UnsupportedVersion(3))
        );
        let mut r = Reader::new(&out);
        assert_eq!(
            r.header(b"NOPE", "test", 3),
            Err(DecodeError::BadMagic("test"))
        );
    }

    // Moved with the codec from the rcf detector, which used these primitives first.
    #[test]
    fn primitives_round_trip_after_existing_data() {
        let mut buf = vec![0xAA]; // pre-existing data must not enter the checksum
        let mut w = Writer::new(&mut buf);
        w.bytes(&[7]);
        w.u16(0xBEEF);
        w.varint(0);
        w.varint(300);
        w.varint(u64::MAX);
        w.f32(-0.0);
        w.f64(f64::MIN_POSITIVE);
        w.finish_with_checksum();
        let mut r = Reader::with_checksum(&buf[1..]).expect("checksum");
        assert_eq!(r.u8().expect("u8"), 7);
        assert_eq!(r.u16().expect("u16"), 0xBEEF);
        assert_eq!(r.varint().expect("v0"), 0);
        assert_eq!(r.varint().expect("v1"), 300);
        assert_eq!(r.varint().expect("v2"), u64::MAX);
        assert_eq!(r.f32().expect("f32").to_bits(), (-0.0f32).to_bits());
        assert_eq!(r.f64().expect("f64"), f64::MIN_POSITIVE);
        r.finish().expect("end");
    }

    #[test]
    fn corruption_and_truncation_are_detected() {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf);
        w.u64(12345);
        w.finish_with_checksum();
        buf[3] ^= 1;
        assert_eq!(
            Reader::with_checksum(&buf).err(),
            Some(DecodeError::Checksum)
        );
        assert_eq!(
            Reader::with_checksum(&buf[..9]).err(),
            Some(DecodeError::Checksum)
        );
        assert!(matches!(
            Reader::with_checksum(&buf[..4]),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            Reader::with_checksum(&[]),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
