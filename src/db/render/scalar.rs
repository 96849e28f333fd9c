//! Fixed-layout scalar types: booleans, integers, floats, text, JSON, bytes, identifiers, network and bit types.

use std::fmt::Write as _;
use std::net::Ipv6Addr;

use serde_json::{Number, Value};

use super::Malformed;
use super::wire::{Reader, exact, push_decimal, push_hex_byte};

pub(crate) fn boolean(raw: &[u8]) -> Result<Value, Malformed> {
    match exact::<1>(raw)? {
        [0] => Ok(Value::Bool(false)),
        [1] => Ok(Value::Bool(true)),
        _ => Err(Malformed("boolean byte is neither 0 nor 1")),
    }
}

pub(crate) fn int2(raw: &[u8]) -> Result<Value, Malformed> {
    Ok(Value::from(i16::from_be_bytes(exact(raw)?)))
}

pub(crate) fn int4(raw: &[u8]) -> Result<Value, Malformed> {
    Ok(Value::from(i32::from_be_bytes(exact(raw)?)))
}

pub(crate) fn int8(raw: &[u8]) -> Result<Value, Malformed> {
    Ok(Value::from(i64::from_be_bytes(exact(raw)?)))
}

pub(crate) fn oid(raw: &[u8]) -> Result<Value, Malformed> {
    Ok(Value::from(u32::from_be_bytes(exact(raw)?)))
}

/// A float4 widened to f64 shows its binary noise (1.1 → 1.100000023841858). Its shortest round-trip decimal
/// form, read back as f64, is the number a person wrote. Formatted on the stack to avoid an allocation.
pub(crate) fn float4(raw: &[u8]) -> Result<Value, Malformed> {
    let value = f32::from_be_bytes(exact(raw)?);
    if !value.is_finite() {
        return Ok(non_finite(f64::from(value)));
    }
    let mut buffer = StackText::default();
    let widened = match write!(buffer, "{value}") {
        Ok(()) => buffer.as_str().parse::<f64>().unwrap_or(f64::from(value)),
        Err(_) => f64::from(value),
    };
    Ok(Number::from_f64(widened).map_or_else(|| non_finite(widened), Value::Number))
}

pub(crate) fn float8(raw: &[u8]) -> Result<Value, Malformed> {
    let value = f64::from_be_bytes(exact(raw)?);
    Ok(Number::from_f64(value).map_or_else(|| non_finite(value), Value::Number))
}

fn non_finite(value: f64) -> Value {
    let text = if value.is_nan() {
        "NaN"
    } else if value > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    };
    Value::String(text.to_owned())
}

/// Enough for any f32 in Display form (the longest, the smallest subnormal, is 47 bytes).
struct StackText {
    bytes: [u8; 64],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        StackText {
            bytes: [0; 64],
            len: 0,
        }
    }
}

impl StackText {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let end = self.len + text.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

pub(crate) fn text(raw: &[u8]) -> Result<Value, Malformed> {
    as_str(raw).map(|text| Value::String(text.to_owned()))
}

fn as_str(raw: &[u8]) -> Result<&str, Malformed> {
    std::str::from_utf8(raw).map_err(|_| Malformed("text is not valid UTF-8"))
}

/// `"char"` is a single byte; like PostgreSQL's charout, a high-bit byte shows as a backslash and three octal
/// digits (it is not a character on its own), and the zero byte as the empty string.
pub(crate) fn single_char(raw: &[u8]) -> Value {
    let mut text = String::with_capacity(4);
    match raw.first() {
        None | Some(0) => {}
        Some(&byte) if byte.is_ascii() => text.push(char::from(byte)),
        Some(&byte) => {
            text.push('\\');
            for shift in [6, 3, 0] {
                text.push(char::from(b'0' + ((byte >> shift) & 7)));
            }
        }
    }
    Value::String(text)
}

pub(crate) fn json(raw: &[u8]) -> Result<Value, Malformed> {
    let text = as_str(raw)?;
    Ok(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())))
}

/// jsonb's binary form is a version byte (1) followed by the JSON text.
pub(crate) fn jsonb(raw: &[u8]) -> Result<Value, Malformed> {
    match raw.split_first() {
        Some((1, document)) => json(document),
        Some(_) => Err(Malformed("unsupported jsonb format version")),
        None => Err(Malformed("empty jsonb value")),
    }
}

pub(crate) fn bytea(raw: &[u8]) -> Value {
    let mut text = String::with_capacity(2 + raw.len() * 2);
    text.push_str("\\x");
    for &byte in raw {
        push_hex_byte(&mut text, byte);
    }
    Value::String(text)
}

pub(crate) fn uuid(raw: &[u8]) -> Result<Value, Malformed> {
    let bytes = exact::<16>(raw)?;
    let mut text = String::with_capacity(36);
    for (index, &byte) in bytes.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        push_hex_byte(&mut text, byte);
    }
    Ok(Value::String(text))
}

const FAMILY_INET: u8 = 2;
const FAMILY_INET6: u8 = 3;

/// Wire layout (inet_send): family, mask bits, is_cidr flag, address length, address bytes.
/// The mask is shown for cidr always and for inet only when it does not cover the whole address.
pub(crate) fn inet(raw: &[u8], is_cidr_type: bool) -> Result<Value, Malformed> {
    let mut reader = Reader::new(raw);
    let family = reader.u8()?;
    let bits = reader.u8()?;
    let _is_cidr_flag = reader.u8()?;
    let address_len = reader.u8()?;
    let address = reader.take(usize::from(address_len))?;
    reader.finish()?;
    let mut text = String::with_capacity(48);
    let max_bits = match (family, address) {
        (FAMILY_INET, &[a, b, c, d]) => {
            for (index, octet) in [a, b, c, d].into_iter().enumerate() {
                if index > 0 {
                    text.push('.');
                }
                push_decimal(&mut text, u64::from(octet));
            }
            32
        }
        (FAMILY_INET6, address) if address.len() == 16 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(address);
            write!(text, "{}", Ipv6Addr::from(octets))
                .map_err(|_| Malformed("cannot format IPv6 address"))?;
            128
        }
        _ => return Err(Malformed("unknown address family or address length")),
    };
    if bits > max_bits {
        return Err(Malformed("netmask longer than the address"));
    }
    if is_cidr_type || bits != max_bits {
        text.push('/');
        push_decimal(&mut text, u64::from(bits));
    }
    Ok(Value::String(text))
}

pub(crate) fn macaddr(raw: &[u8], octet_count: usize) -> Result<Value, Malformed> {
    if raw.len() != octet_count {
        return Err(Malformed("value has the wrong length for its type"));
    }
    let mut text = String::with_capacity(octet_count * 3);
    for (index, &byte) in raw.iter().enumerate() {
        if index > 0 {
            text.push(':');
        }
        push_hex_byte(&mut text, byte);
    }
    Ok(Value::String(text))
}

/// Wire layout (bit_send/varbit_send): int32 bit count, then the bits packed most significant first.
pub(crate) fn bits(raw: &[u8]) -> Result<Value, Malformed> {
    let mut reader = Reader::new(raw);
    let bit_count =
        usize::try_from(reader.i32()?).map_err(|_| Malformed("negative bit string length"))?;
    let packed = reader.take(bit_count.div_ceil(8))?;
    reader.finish()?;
    let mut text = String::with_capacity(bit_count);
    for position in 0..bit_count {
        let bit = (packed[position / 8] >> (7 - position % 8)) & 1;
        text.push(if bit == 1 { '1' } else { '0' });
    }
    Ok(Value::String(text))
}
