//! The KPL aggregated-record format: magic bytes `F3 89 9A C2`, a protobuf `AggregatedRecord`,
//! then the MD5 of the protobuf bytes.
//!
//! ```text
//! AggregatedRecord { repeated string partition_key_table = 1;
//!                    repeated string explicit_hash_key_table = 2;
//!                    repeated Record records = 3; }
//! Record           { required uint64 partition_key_index = 1;
//!                    optional uint64 explicit_hash_key_index = 2;
//!                    required bytes data = 3;
//!                    repeated Tag tags = 4; }
//! ```
//!
//! The decoder is a few dozen lines of protobuf wire format (varints and length-delimited
//! fields; unknown fields are skipped), so no protobuf crate is needed. Pure code, no I/O.

use md5::{Digest, Md5};

/// The four bytes every aggregated record starts with.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_LEN: usize = 16;

/// One user record inside an aggregated record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubRecord {
    /// Its partition key (from the partition-key table).
    pub partition_key: String,
    /// Its payload.
    pub data: Vec<u8>,
}

/// Why a blob that starts with the magic bytes is not a valid aggregated record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KplError {
    /// The trailing MD5 does not match the protobuf bytes.
    #[error("aggregated record: MD5 mismatch")]
    Digest,
    /// The protobuf could not be decoded.
    #[error("aggregated record: {0}")]
    Protobuf(&'static str),
}

/// True when `data` looks like an aggregated record (magic bytes and room for a digest).
pub fn is_aggregated(data: &[u8]) -> bool {
    data.len() >= MAGIC.len() + DIGEST_LEN && data[..MAGIC.len()] == MAGIC
}

/// Decodes an aggregated record into its sub-records, in order (sub-sequence number = index).
/// Returns `Ok(None)` when `data` is not aggregated (no magic bytes).
pub fn decode(data: &[u8]) -> Result<Option<Vec<SubRecord>>, KplError> {
    if !is_aggregated(data) {
        return Ok(None);
    }
    let body = &data[MAGIC.len()..data.len() - DIGEST_LEN];
    let digest = &data[data.len() - DIGEST_LEN..];
    if Md5::digest(body).as_slice() != digest {
        return Err(KplError::Digest);
    }
    let mut keys: Vec<String> = Vec::new();
    // (partition key index, data) in order.
    let mut records: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut r = Wire::new(body);
    while !r.done() {
        let (field, wire) = r.tag()?;
        match (field, wire) {
            (1, 2) => {
                let s = r.bytes()?;
                let s = std::str::from_utf8(s)
                    .map_err(|_| KplError::Protobuf("partition key is not UTF-8"))?;
                keys.push(s.to_string());
            }
            (3, 2) => {
                let mut inner = Wire::new(r.bytes()?);
                let mut pk = None;
                let mut payload = None;
                while !inner.done() {
                    let (f, w) = inner.tag()?;
                    match (f, w) {
                        (1, 0) => pk = Some(inner.varint()?),
                        (3, 2) => payload = Some(inner.bytes()?.to_vec()),
                        _ => inner.skip(w)?,
                    }
                }
                let pk = pk.ok_or(KplError::Protobuf("record without partition_key_index"))?;
                let payload = payload.ok_or(KplError::Protobuf("record without data"))?;
                records.push((pk, payload));
            }
            _ => r.skip(wire)?,
        }
    }
    records
        .into_iter()
        .map(|(i, data)| {
            let partition_key = usize::try_from(i)
                .ok()
                .and_then(|i| keys.get(i))
                .ok_or(KplError::Protobuf("partition_key_index out of range"))?
                .clone();
            Ok(SubRecord {
                partition_key,
                data,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Encodes sub-records as one aggregated record (the sink's KPL aggregation, and tests).
pub fn encode(records: &[SubRecord]) -> Vec<u8> {
    let mut keys: Vec<&str> = Vec::new();
    let mut index = Vec::with_capacity(records.len());
    for r in records {
        let i = match keys.iter().position(|k| *k == r.partition_key) {
            Some(i) => i,
            None => {
                keys.push(&r.partition_key);
                keys.len() - 1
            }
        };
        index.push(i as u64);
    }
    let mut body = Vec::new();
    for k in &keys {
        put_tag(&mut body, 1, 2);
        put_varint(&mut body, k.len() as u64);
        body.extend_from_slice(k.as_bytes());
    }
    for (r, i) in records.iter().zip(index) {
        let mut inner = Vec::with_capacity(r.data.len() + 12);
        put_tag(&mut inner, 1, 0);
        put_varint(&mut inner, i);
        put_tag(&mut inner, 3, 2);
        put_varint(&mut inner, r.data.len() as u64);
        inner.extend_from_slice(&r.data);
        put_tag(&mut body, 3, 2);
        put_varint(&mut body, inner.len() as u64);
        body.extend_from_slice(&inner);
    }
    let mut out = Vec::with_capacity(MAGIC.len() + body.len() + DIGEST_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&body);
    out.extend_from_slice(Md5::digest(&body).as_slice());
    out
}

/// Encoded size of one sub-record added to an aggregate (upper bound, for batching).
pub fn encoded_overhead(partition_key: &str, data_len: usize) -> usize {
    // Key table entry + record message with two tags and three varints.
    partition_key.len() + data_len + 2 * 10 + 8
}

fn put_tag(out: &mut Vec<u8>, field: u64, wire: u64) {
    put_varint(out, (field << 3) | wire);
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Wire<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Wire<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Wire { buf, at: 0 }
    }

    fn done(&self) -> bool {
        self.at >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, KplError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.at)
                .ok_or(KplError::Protobuf("truncated varint"))?;
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(KplError::Protobuf("varint longer than 10 bytes"))
    }

    fn tag(&mut self) -> Result<(u64, u64), KplError> {
        let t = self.varint()?;
        Ok((t >> 3, t & 7))
    }

    fn bytes(&mut self) -> Result<&'a [u8], KplError> {
        let len =
            usize::try_from(self.varint()?).map_err(|_| KplError::Protobuf("length too large"))?;
        let end = self
            .at
            .checked_add(len)
            .filter(|e| *e <= self.buf.len())
            .ok_or(KplError::Protobuf("truncated field"))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn skip(&mut self, wire: u64) -> Result<(), KplError> {
        let n = match wire {
            0 => {
                self.varint()?;
                return Ok(());
            }
            1 => 8,
            2 => {
                self.bytes()?;
                return Ok(());
            }
            5 => 4,
            _ => return Err(KplError::Protobuf("unsupported wire type")),
        };
        if self.at + n > self.buf.len() {
            return Err(KplError::Protobuf("truncated field"));
        }
        self.at += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sub(k: &str, d: &[u8]) -> SubRecord {
        SubRecord {
            partition_key: k.into(),
            data: d.to_vec(),
        }
    }

    #[test]
    fn plain_data_is_not_aggregated() {
        assert_eq!(decode(b"{\"a\":1}").unwrap(), None);
    }

    #[test]
    fn round_trips_and_checks_the_digest() {
        let recs = vec![sub("a", b"1"), sub("b", b"22"), sub("a", b"")];
        let mut blob = encode(&recs);
        assert_eq!(decode(&blob).unwrap().unwrap(), recs);
        let n = blob.len();
        blob[n - 1] ^= 1;
        assert_eq!(decode(&blob), Err(KplError::Digest));
    }

    #[test]
    fn skips_unknown_fields_and_explicit_hash_keys() {
        // Hand-built: key table ["k"], hash-key table ["123"], one record with
        // explicit_hash_key_index = 0 and a tag (field 4), data "x".
        let mut body = vec![0x0a, 1, b'k', 0x12, 3, b'1', b'2', b'3'];
        let inner = [0x08, 0, 0x10, 0, 0x1a, 1, b'x', 0x22, 2, 0x0a, 0];
        body.push(0x1a);
        body.push(inner.len() as u8);
        body.extend_from_slice(&inner);
        let mut blob = MAGIC.to_vec();
        blob.extend_from_slice(&body);
        blob.extend_from_slice(Md5::digest(&body).as_slice());
        assert_eq!(decode(&blob).unwrap().unwrap(), vec![sub("k", b"x")]);
    }

    #[test]
    fn truncated_protobuf_is_an_error_not_a_panic() {
        let body = [0x1a, 50, 0x08];
        let mut blob = MAGIC.to_vec();
        blob.extend_from_slice(&body);
        blob.extend_from_slice(Md5::digest(body).as_slice());
        assert!(matches!(decode(&blob), Err(KplError::Protobuf(_))));
    }

    proptest! {
        #[test]
        fn encode_decode_is_identity(recs in proptest::collection::vec(
            ("[a-z]{0,5}", proptest::collection::vec(any::<u8>(), 0..300)), 1..40)) {
            let recs: Vec<SubRecord> = recs.into_iter().map(|(k, d)| SubRecord { partition_key: k, data: d }).collect();
            prop_assert_eq!(decode(&encode(&recs)).unwrap().unwrap(), recs);
        }

        #[test]
        fn decode_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut blob = MAGIC.to_vec();
            blob.extend_from_slice(&body);
            blob.extend_from_slice(Md5::digest(&body).as_slice());
            let _ = decode(&blob);
        }
    }
}
