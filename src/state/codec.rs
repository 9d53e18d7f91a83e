//! Encoding of state values: every value starts with a version byte, so a new osprey can read
//! (and migrate) what an older one wrote.

/// A value that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode state value: {0}")]
pub struct DecodeError(pub String);

/// A value kept in keyed state.
pub trait StateValue: Sized + Send + 'static {
    /// Appends the encoding (starting with a version byte) to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Decodes what `encode` wrote, in this or any earlier version.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;
}

/// Little-endian reader over an encoded value.
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads from `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    /// Takes `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError(format!(
                "truncated: wanted {n} bytes, {} left",
                self.bytes.len()
            )));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    /// Reads a byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    /// Reads a little-endian u64.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(
            b.try_into().expect("take returned 8 bytes"),
        ))
    }

    /// Reads a little-endian i64.
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(self.u64()? as i64)
    }

    /// Reads a little-endian f64.
    pub fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_bits(self.u64()?))
    }

    /// Reads a u64 length-prefixed byte string.
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = usize::try_from(self.u64()?).map_err(|_| DecodeError("length overflow".into()))?;
        self.take(n)
    }

    /// True when everything was read.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Fails unless everything was read.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(DecodeError(format!("{} trailing bytes", self.bytes.len())))
        }
    }
}

/// Appends a little-endian u64.
pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends a little-endian f64.
pub fn put_f64(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_bits().to_le_bytes());
}

/// Appends a u64 length-prefixed byte string.
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u64(out, b.len() as u64);
    out.extend_from_slice(b);
}

impl StateValue for u64 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(1);
        put_u64(out, *self);
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        match r.u8()? {
            1 => {
                let v = r.u64()?;
                r.finish()?;
                Ok(v)
            }
            v => Err(DecodeError(format!("unknown version {v}"))),
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
            Some((v, _)) => Err(DecodeError(format!("unknown version {v}"))),
            None => Err(DecodeError("empty value".into())),
        }
    }
}
