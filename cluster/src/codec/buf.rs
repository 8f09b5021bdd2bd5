//! Little-endian reading and writing helpers shared by the codecs.

use crate::error::CodecError;

/// A bounds-checked little-endian reader. Every read returns a typed error instead of
/// panicking.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self { bytes, what }
    }

    pub(crate) fn bytes(&mut self, len: usize) -> Result<&'a [u8], CodecError> {
        if self.bytes.len() < len {
            return Err(CodecError::Truncated {
                what: self.what,
                needed: len,
                available: self.bytes.len(),
            });
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let b = self.bytes(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.array::<1>()?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub(crate) fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub(crate) fn bool(&mut self) -> Result<bool, CodecError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(CodecError::Invalid {
                what: "bool",
                value: u64::from(v),
            }),
        }
    }
    /// A u32 length, then that many bytes.
    pub(crate) fn var_bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let len = self.u32()? as usize;
        self.bytes(len)
    }
    /// Everything left, which must be exactly `count` length-prefixed records (a u32
    /// length, then that many bytes); take them with [`take_validated_var_bytes`].
    pub(crate) fn rest_of_var_bytes(
        &mut self,
        count: usize,
        what: &'static str,
    ) -> Result<&'a [u8], CodecError> {
        let records = self.rest();
        let mut check = Reader::new(records, what);
        for _ in 0..count {
            check.var_bytes()?;
        }
        check.finish()?;
        Ok(records)
    }
    /// Everything left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
    /// Errors if bytes are left.
    pub(crate) fn finish(self) -> Result<(), CodecError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(CodecError::Trailing {
                what: self.what,
                extra: self.bytes.len(),
            })
        }
    }
}

/// Takes the first of `records` — a u32 length, then that many bytes — off their front.
///
/// # Panics
/// If `records` does not begin with a whole record: callers validate the records with
/// [`Reader::var_bytes`] when they decode them, and take them one by one afterwards.
pub(crate) fn take_validated_var_bytes<'a>(records: &mut &'a [u8]) -> &'a [u8] {
    let len = u32::from_le_bytes(records[..4].try_into().expect("4 bytes")) as usize;
    let (bytes, rest) = records[4..].split_at(len);
    *records = rest;
    bytes
}

/// Little-endian writing onto a `Vec<u8>`.
pub(crate) trait Writer {
    fn put_u8(&mut self, v: u8);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_i64(&mut self, v: i64);
    fn put_bool(&mut self, v: bool);
    fn put_var_bytes(&mut self, v: &[u8]);
}

impl Writer for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_i64(&mut self, v: i64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_bool(&mut self, v: bool) {
        self.push(u8::from(v));
    }
    fn put_var_bytes(&mut self, v: &[u8]) {
        let len = u32::try_from(v.len()).expect("field shorter than 4 GiB");
        self.put_u32(len);
        self.extend_from_slice(v);
    }
}
