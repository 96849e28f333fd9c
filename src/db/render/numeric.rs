//! `numeric` binary form → the exact decimal text PostgreSQL itself prints.
//!
//! Wire layout (numeric_send): int16 ndigits, int16 weight, uint16 sign, int16 dscale, then ndigits base-10000
//! digits, most significant first. The value is Σ digit[i] · 10000^(weight − i); dscale is the number of decimal
//! digits shown after the point, which may be more (trailing zeros) or fewer (never, for valid input) than the
//! digits carry.

use super::Malformed;
use super::wire::{Reader, push_decimal};

const SIGN_POSITIVE: u16 = 0x0000;
const SIGN_NEGATIVE: u16 = 0x4000;
const SIGN_NAN: u16 = 0xC000;
const SIGN_PLUS_INFINITY: u16 = 0xD000;
const SIGN_MINUS_INFINITY: u16 = 0xF000;
const DSCALE_MAX: u16 = 0x3FFF;
const DIGIT_BASE: u16 = 10_000;

pub(crate) fn numeric_to_string(raw: &[u8]) -> Result<String, Malformed> {
    let mut reader = Reader::new(raw);
    let ndigits = usize::try_from(reader.i16()?).map_err(|_| Malformed("negative digit count"))?;
    let weight = i64::from(reader.i16()?);
    let sign = reader.u16()?;
    let dscale = reader.u16()?;
    match sign {
        SIGN_NAN => return Ok("NaN".to_owned()),
        SIGN_PLUS_INFINITY => return Ok("Infinity".to_owned()),
        SIGN_MINUS_INFINITY => return Ok("-Infinity".to_owned()),
        SIGN_POSITIVE | SIGN_NEGATIVE => {}
        _ => return Err(Malformed("invalid sign")),
    }
    if dscale > DSCALE_MAX {
        return Err(Malformed("invalid display scale"));
    }
    let digit_bytes = reader.take(ndigits * 2)?;
    reader.finish()?;
    if digit_bytes
        .chunks_exact(2)
        .any(|pair| u16::from_be_bytes([pair[0], pair[1]]) >= DIGIT_BASE)
    {
        return Err(Malformed("digit out of range"));
    }
    // Index i of the digit array holds the group with exponent weight − i; positions outside it are zero.
    let digit = |index: i64| -> u16 {
        usize::try_from(index)
            .ok()
            .filter(|&i| i < ndigits)
            .map_or(0, |i| {
                u16::from_be_bytes([digit_bytes[2 * i], digit_bytes[2 * i + 1]])
            })
    };

    let integer_groups = usize::try_from(weight + 1).unwrap_or(0);
    let mut text = String::with_capacity(2 + integer_groups * 4 + usize::from(dscale));
    if sign == SIGN_NEGATIVE {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    } else {
        // The first group is printed without leading zeros, every later one as four digits.
        push_decimal(&mut text, u64::from(digit(0)));
        for index in 1..=weight {
            push_group(&mut text, digit(index), 4);
        }
    }
    if dscale > 0 {
        text.push('.');
        let mut left = usize::from(dscale);
        let mut index = weight + 1;
        while left > 0 {
            let shown = left.min(4);
            push_group(&mut text, digit(index), shown);
            left -= shown;
            index += 1;
        }
    }
    Ok(text)
}

/// Appends the first `shown` of the four decimal digits of a base-10000 group.
fn push_group(text: &mut String, group: u16, shown: usize) {
    let digits = [group / 1000, group / 100 % 10, group / 10 % 10, group % 10];
    for &d in &digits[..shown] {
        text.push(char::from(b'0' + d as u8));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(digits.len() as i16).to_be_bytes());
        raw.extend_from_slice(&weight.to_be_bytes());
        raw.extend_from_slice(&sign.to_be_bytes());
        raw.extend_from_slice(&dscale.to_be_bytes());
        for d in digits {
            raw.extend_from_slice(&d.to_be_bytes());
        }
        raw
    }

    fn render(weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> String {
        numeric_to_string(&encode(weight, sign, dscale, digits)).expect("valid numeric")
    }

    #[test]
    fn zero_in_every_scale() {
        assert_eq!(render(0, SIGN_POSITIVE, 0, &[]), "0");
        assert_eq!(render(0, SIGN_POSITIVE, 2, &[]), "0.00");
        assert_eq!(render(-1, SIGN_POSITIVE, 0, &[]), "0");
    }

    #[test]
    fn integers_and_group_padding() {
        assert_eq!(render(0, SIGN_POSITIVE, 0, &[42]), "42");
        assert_eq!(render(1, SIGN_POSITIVE, 0, &[1, 5]), "10005");
        // 10^8: one digit with weight 2, the trailing groups are implicit zeros.
        assert_eq!(render(2, SIGN_POSITIVE, 0, &[1]), "100000000");
        assert_eq!(render(1, SIGN_NEGATIVE, 0, &[12, 3456]), "-123456");
    }

    #[test]
    fn fractions_respect_display_scale() {
        // 1.50: digits [1, 5000], dscale 2.
        assert_eq!(render(0, SIGN_POSITIVE, 2, &[1, 5000]), "1.50");
        // dscale beyond the stored digits pads with zeros.
        assert_eq!(render(0, SIGN_POSITIVE, 7, &[3, 1400]), "3.1400000");
        assert_eq!(render(0, SIGN_NEGATIVE, 3, &[0, 1230]), "-0.123");
    }

    #[test]
    fn tiny_values_have_negative_weight() {
        // 0.00001234: weight -2 → groups 0000 | 1234 after the point.
        assert_eq!(render(-2, SIGN_POSITIVE, 8, &[1234]), "0.00001234");
        assert_eq!(render(-3, SIGN_NEGATIVE, 12, &[5]), "-0.000000000005");
    }

    #[test]
    fn huge_values() {
        let digits = [9999u16; 10];
        let expected = "9".repeat(40) + ".5";
        let mut with_fraction = digits.to_vec();
        with_fraction.push(5000);
        assert_eq!(render(9, SIGN_POSITIVE, 1, &with_fraction), expected);
        assert_eq!(
            render(100, SIGN_POSITIVE, 0, &[1]),
            format!("1{}", "0".repeat(400))
        );
    }

    #[test]
    fn special_values() {
        assert_eq!(render(0, SIGN_NAN, 0, &[]), "NaN");
        assert_eq!(render(0, SIGN_PLUS_INFINITY, 0, &[]), "Infinity");
        assert_eq!(render(0, SIGN_MINUS_INFINITY, 0, &[]), "-Infinity");
    }

    #[test]
    fn malformed_bytes_are_errors() {
        assert!(numeric_to_string(&[]).is_err());
        assert!(
            numeric_to_string(&[0, 1, 0, 0, 0, 0, 0, 0]).is_err(),
            "missing digit"
        );
        assert!(
            numeric_to_string(&encode(0, 0x1234, 0, &[])).is_err(),
            "bad sign"
        );
        assert!(
            numeric_to_string(&encode(0, 0, 0, &[10_000])).is_err(),
            "digit too big"
        );
        assert!(
            numeric_to_string(&encode(0, 0, 0x4000, &[1])).is_err(),
            "bad dscale"
        );
        assert!(
            numeric_to_string(&[0xff, 0xff, 0, 0, 0, 0, 0, 0]).is_err(),
            "negative count"
        );
        let mut trailing = encode(0, 0, 0, &[1]);
        trailing.push(0);
        assert!(numeric_to_string(&trailing).is_err());
    }
}
