//! Byte-level primitives of the versioned binary state encoding (forest and thresholder).
//!
//! Everything is little-endian. Integers that are usually small (counts, index deltas) are
//! LEB128 varints; floats are written as their exact bit patterns so that a decoded model is
//! bit-identical. Every encoding ends with a 64-bit FNV-1a checksum of the bytes before it:
//! a checkpoint is read back from disk or RocksDB, and a flipped bit must surface as a
//! [`DecodeError`] rather than as a silently different model.
//!
//! The layouts themselves are documented next to the code that writes them
//! (`Forest::encode`, `Thresholder::encode`).

use thiserror::Error;

/// Why a checkpoint could not be decoded. Each variant means the bytes are not a state this
/// build can restore; retrying will not help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The bytes do not start with the expected magic tag: not this kind of state at all.
    #[error("not an osprey {0} checkpoint (bad magic)")]
    BadMagic(&'static str),
    /// Written by a newer encoder that this build does not understand.
    #[error("unsupported checkpoint version {0}")]
    UnsupportedVersion(u16),
    /// The input ended before the encoding did.
    #[error("checkpoint is truncated")]
    Truncated,
    /// The trailing checksum does not match: the bytes were corrupted in storage or transit.
    #[error("checkpoint checksum mismatch")]
    Checksum,
    /// Structurally invalid content (the checksum matched, so this is an encoder bug or a
    /// crafted input); the text names the violated invariant.
    #[error("corrupt checkpoint: {0}")]
    Corrupt(&'static str),
}

/// 64-bit FNV-1a: tiny, dependency-free, and plenty to detect storage corruption (it is not
/// meant to resist tampering).
pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Appends primitives to a byte buffer.
pub(super) struct Writer<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> Writer<'a> {
    /// Starts an encoding at the current end of `out` (which may already hold other data).
    pub(super) fn new(out: &'a mut Vec<u8>) -> Self {
        let start = out.len();
        Self { out, start }
    }

    pub(super) fn bytes(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    pub(super) fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    pub(super) fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    pub(super) fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    pub(super) fn f32(&mut self, v: f32) {
        self.u32(v.to_bits());
    }

    pub(super) fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }

    /// Unsigned LEB128.
    pub(super) fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    /// Appends the checksum of everything written since [`Writer::new`].
    pub(super) fn finish(self) {
        let sum = fnv1a(&self.out[self.start..]);
        self.out.extend_from_slice(&sum.to_le_bytes());
    }
}

/// Packs unsigned fields of up to 32 bits, least-significant bit first, into bytes; used for
/// tree shapes and the few-bit fields of tree nodes.
pub(super) struct BitWriter {
    bytes: Vec<u8>,
    acc: u64,
    used: u32,
}

impl BitWriter {
    pub(super) fn new() -> Self {
        Self {
            bytes: Vec::new(),
            acc: 0,
            used: 0,
        }
    }

    /// Appends the low `width` bits of `v` (`width` ≤ 32).
    pub(super) fn bits(&mut self, v: u32, width: u32) {
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
    pub(super) fn into_bytes(mut self) -> Vec<u8> {
        if self.used > 0 {
            self.bytes.push(self.acc as u8);
        }
        self.bytes
    }
}

/// Reads what [`BitWriter`] wrote.
pub(super) struct BitReader<'a> {
    bytes: &'a [u8],
    next: usize,
    acc: u64,
    avail: u32,
}

impl<'a> BitReader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            next: 0,
            acc: 0,
            avail: 0,
        }
    }

    /// Reads a `width`-bit field (`width` ≤ 32).
    pub(super) fn bits(&mut self, width: u32) -> Result<u32, DecodeError> {
        while self.avail < width {
            let b = *self.bytes.get(self.next).ok_or(DecodeError::Truncated)?;
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
    pub(super) fn end(&self) -> Result<(), DecodeError> {
        if self.next == self.bytes.len() && self.acc == 0 {
            Ok(())
        } else {
            Err(DecodeError::Corrupt("bit field has trailing data"))
        }
    }
}

/// Reads primitives from a checksummed encoding.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Verifies and strips the trailing checksum, then reads from the start of `bytes`.
    pub(super) fn checked(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let body_len = bytes.len().checked_sub(8).ok_or(DecodeError::Truncated)?;
        let (body, sum) = bytes.split_at(body_len);
        let mut word = [0u8; 8];
        word.copy_from_slice(sum);
        if fnv1a(body) != u64::from_le_bytes(word) {
            return Err(DecodeError::Checksum);
        }
        Ok(Self {
            bytes: body,
            pos: 0,
        })
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let s = self
            .bytes
            .get(self.pos..end)
            .ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub(super) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(super) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(super) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(super) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(super) fn f32(&mut self) -> Result<f32, DecodeError> {
        Ok(f32::from_bits(self.u32()?))
    }

    pub(super) fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_bits(self.u64()?))
    }

    pub(super) fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Corrupt("varint longer than 64 bits"))
    }

    /// A varint that must fit in `usize` and be at most `max` (bounds every allocation the
    /// decoder makes by what the configuration allows, so bad input cannot exhaust memory).
    pub(super) fn len(&mut self, max: usize) -> Result<usize, DecodeError> {
        let v = self.varint()?;
        usize::try_from(v)
            .ok()
            .filter(|&n| n <= max)
            .ok_or(DecodeError::Corrupt("length out of range"))
    }

    /// Fails unless every byte was consumed.
    pub(super) fn end(&self) -> Result<(), DecodeError> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(DecodeError::Corrupt("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn primitives_round_trip() {
        let mut buf = vec![0xAA]; // pre-existing data must not enter the checksum
        let mut w = Writer::new(&mut buf);
        w.bytes(&[7]);
        w.u16(0xBEEF);
        w.varint(0);
        w.varint(300);
        w.varint(u64::MAX);
        w.f32(-0.0);
        w.f64(f64::MIN_POSITIVE);
        w.finish();
        let mut r = Reader::checked(&buf[1..]).expect("checksum");
        assert_eq!(r.u8().expect("u8"), 7);
        assert_eq!(r.u16().expect("u16"), 0xBEEF);
        assert_eq!(r.varint().expect("v0"), 0);
        assert_eq!(r.varint().expect("v1"), 300);
        assert_eq!(r.varint().expect("v2"), u64::MAX);
        assert_eq!(r.f32().expect("f32").to_bits(), (-0.0f32).to_bits());
        assert_eq!(r.f64().expect("f64"), f64::MIN_POSITIVE);
        r.end().expect("end");
    }

    #[test]
    fn corruption_is_detected() {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf);
        w.u64(12345);
        w.finish();
        buf[3] ^= 1;
        assert_eq!(Reader::checked(&buf).err(), Some(DecodeError::Checksum));
        assert_eq!(
            Reader::checked(&buf[..9]).err(),
            Some(DecodeError::Checksum)
        );
        assert_eq!(
            Reader::checked(&buf[..4]).err(),
            Some(DecodeError::Truncated)
        );
        assert_eq!(Reader::checked(&[]).err(), Some(DecodeError::Truncated));
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
        r.end().expect("all read");
    }
}
