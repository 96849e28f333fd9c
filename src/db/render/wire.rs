//! Bounds-checked reading of big-endian binary wire data, and small digit writers that avoid `format!`.

use super::Malformed;

const TRUNCATED: Malformed = Malformed("value is shorter than its binary format requires");

pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { rest: buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    pub(crate) fn take(&mut self, count: usize) -> Result<&'a [u8], Malformed> {
        if count > self.rest.len() {
            return Err(TRUNCATED);
        }
        let (head, tail) = self.rest.split_at(count);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn i16(&mut self) -> Result<i16, Malformed> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Malformed> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, Malformed> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Malformed> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, Malformed> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// A length-prefixed datum as used inside arrays, records and ranges: length -1 means NULL.
    pub(crate) fn datum(&mut self) -> Result<Option<&'a [u8]>, Malformed> {
        let len = self.i32()?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| Malformed("negative element length"))?;
        self.take(len).map(Some)
    }

    /// Succeeds only when every byte has been consumed, so trailing garbage is not silently ignored.
    pub(crate) fn finish(&self) -> Result<(), Malformed> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(Malformed("unexpected bytes after the value"))
        }
    }
}

/// Reads exactly N bytes, the whole value: fixed-size types must be exactly their size.
pub(crate) fn exact<const N: usize>(raw: &[u8]) -> Result<[u8; N], Malformed> {
    <[u8; N]>::try_from(raw).map_err(|_| Malformed("value has the wrong length for its type"))
}

/// Appends `value` in decimal, left-padded with zeros to at least `width` digits.
pub(crate) fn push_padded(out: &mut String, mut value: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for _ in (digits.len() - start)..width {
        out.push('0');
    }
    for &digit in &digits[start..] {
        out.push(digit as char);
    }
}

pub(crate) fn push_decimal(out: &mut String, value: u64) {
    push_padded(out, value, 1);
}

pub(crate) fn push_signed(out: &mut String, value: i64) {
    if value < 0 {
        out.push('-');
    }
    push_decimal(out, value.unsigned_abs());
}

const HEX: &[u8; 16] = b"0123456789abcdef";

pub(crate) fn push_hex_byte(out: &mut String, byte: u8) {
    out.push(HEX[usize::from(byte >> 4)] as char);
    out.push(HEX[usize::from(byte & 0x0f)] as char);
}
