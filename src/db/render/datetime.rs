//! Dates, times and intervals → ISO 8601 text, by plain arithmetic (no calendar library range limits).
//!
//! PostgreSQL counts days and microseconds from 2000-01-01 00:00:00; infinity is the extreme integer value.

use super::Malformed;
use super::wire::{Reader, exact, push_decimal, push_padded, push_signed};

const MICROS_PER_SECOND: u64 = 1_000_000;
const MICROS_PER_MINUTE: u64 = 60 * MICROS_PER_SECOND;
const MICROS_PER_HOUR: u64 = 60 * MICROS_PER_MINUTE;
const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR as i64;
/// Days from 0000-03-01 (the epoch of the civil-date algorithm below) to 2000-01-01.
const DAYS_0000_03_01_TO_2000_01_01: i64 = 730_425;

pub(crate) fn date(raw: &[u8]) -> Result<String, Malformed> {
    let days = i32::from_be_bytes(exact(raw)?);
    match days {
        i32::MAX => return Ok("infinity".to_owned()),
        i32::MIN => return Ok("-infinity".to_owned()),
        _ => {}
    }
    let mut text = String::with_capacity(10);
    push_date(&mut text, i64::from(days));
    Ok(text)
}

pub(crate) fn time(raw: &[u8]) -> Result<String, Malformed> {
    let micros = i64::from_be_bytes(exact(raw)?);
    let mut text = String::with_capacity(15);
    push_time_of_day(&mut text, micros)?;
    Ok(text)
}

pub(crate) fn timetz(raw: &[u8]) -> Result<String, Malformed> {
    let mut reader = Reader::new(raw);
    let micros = reader.i64()?;
    // PostgreSQL stores the zone as seconds WEST of UTC, the opposite sign of the ISO offset.
    let seconds_west = reader.i32()?;
    reader.finish()?;
    let mut text = String::with_capacity(24);
    push_time_of_day(&mut text, micros)?;
    let east = -i64::from(seconds_west);
    text.push(if east < 0 { '-' } else { '+' });
    let east = east.unsigned_abs();
    push_padded(&mut text, east / 3600, 2);
    text.push(':');
    push_padded(&mut text, east / 60 % 60, 2);
    if east % 60 != 0 {
        text.push(':');
        push_padded(&mut text, east % 60, 2);
    }
    Ok(text)
}

pub(crate) fn timestamp(raw: &[u8], in_utc: bool) -> Result<String, Malformed> {
    let micros = i64::from_be_bytes(exact(raw)?);
    match micros {
        i64::MAX => return Ok("infinity".to_owned()),
        i64::MIN => return Ok("-infinity".to_owned()),
        _ => {}
    }
    let mut text = String::with_capacity(28);
    push_date(&mut text, micros.div_euclid(MICROS_PER_DAY));
    text.push('T');
    push_time_of_day(&mut text, micros.rem_euclid(MICROS_PER_DAY))?;
    if in_utc {
        text.push('Z');
    }
    Ok(text)
}

/// ISO 8601 duration. Months split into years and months; the day count stays separate (a day is not always
/// 24 hours); microseconds become hours, minutes and seconds. Each component keeps its own sign.
pub(crate) fn interval(raw: &[u8]) -> Result<String, Malformed> {
    let mut reader = Reader::new(raw);
    let micros = reader.i64()?;
    let days = reader.i32()?;
    let months = reader.i32()?;
    reader.finish()?;
    // PostgreSQL 17 represents infinite intervals with every field at its extreme.
    if (micros, days, months) == (i64::MAX, i32::MAX, i32::MAX) {
        return Ok("infinity".to_owned());
    }
    if (micros, days, months) == (i64::MIN, i32::MIN, i32::MIN) {
        return Ok("-infinity".to_owned());
    }
    let mut text = String::with_capacity(24);
    text.push('P');
    let years = months / 12;
    let months = months % 12;
    if years != 0 {
        push_signed(&mut text, i64::from(years));
        text.push('Y');
    }
    if months != 0 {
        push_signed(&mut text, i64::from(months));
        text.push('M');
    }
    if days != 0 {
        push_signed(&mut text, i64::from(days));
        text.push('D');
    }
    if micros != 0 {
        text.push('T');
        let sign = if micros < 0 { "-" } else { "" };
        let magnitude = micros.unsigned_abs();
        let hours = magnitude / MICROS_PER_HOUR;
        let minutes = magnitude / MICROS_PER_MINUTE % 60;
        let second_micros = magnitude % MICROS_PER_MINUTE;
        if hours != 0 {
            text.push_str(sign);
            push_decimal(&mut text, hours);
            text.push('H');
        }
        if minutes != 0 {
            text.push_str(sign);
            push_decimal(&mut text, minutes);
            text.push('M');
        }
        if second_micros != 0 {
            text.push_str(sign);
            push_decimal(&mut text, second_micros / MICROS_PER_SECOND);
            push_fraction(&mut text, second_micros % MICROS_PER_SECOND);
            text.push('S');
        }
    }
    if text.len() == 1 {
        text.push_str("T0S");
    }
    Ok(text)
}

/// Appends the date `days` after 2000-01-01 as YYYY-MM-DD, ISO 8601 years (1 BC = 0000, −0001 = 2 BC, +10000).
fn push_date(text: &mut String, days_since_2000: i64) {
    let (year, month, day) = civil_from_days(days_since_2000);
    if year < 0 {
        text.push('-');
    } else if year > 9999 {
        text.push('+');
    }
    push_padded(text, year.unsigned_abs(), 4);
    text.push('-');
    push_padded(text, u64::from(month), 2);
    text.push('-');
    push_padded(text, u64::from(day), 2);
}

/// Proleptic Gregorian calendar date from a day count, valid for any i64 day count PostgreSQL can produce.
/// Counts from 0000-03-01 so leap days fall at the end of each 400-year era.
fn civil_from_days(days_since_2000: i64) -> (i64, u32, u32) {
    let days = days_since_2000 + DAYS_0000_03_01_TO_2000_01_01;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Appends HH:MM:SS[.fraction]; 24:00:00 is a valid `time` in PostgreSQL.
fn push_time_of_day(text: &mut String, micros: i64) -> Result<(), Malformed> {
    let micros = u64::try_from(micros)
        .ok()
        .filter(|&m| m <= MICROS_PER_DAY as u64)
        .ok_or(Malformed("time of day out of range"))?;
    push_padded(text, micros / MICROS_PER_HOUR, 2);
    text.push(':');
    push_padded(text, micros / MICROS_PER_MINUTE % 60, 2);
    text.push(':');
    push_padded(text, micros / MICROS_PER_SECOND % 60, 2);
    push_fraction(text, micros % MICROS_PER_SECOND);
    Ok(())
}

/// Appends `.` and the microseconds without trailing zeros; nothing when zero.
fn push_fraction(text: &mut String, micros: u64) {
    if micros == 0 {
        return;
    }
    let mut digits = micros;
    let mut width = 6;
    while digits.is_multiple_of(10) {
        digits /= 10;
        width -= 1;
    }
    text.push('.');
    push_padded(text, digits, width);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval_bytes(micros: i64, days: i32, months: i32) -> Vec<u8> {
        let mut raw = micros.to_be_bytes().to_vec();
        raw.extend_from_slice(&days.to_be_bytes());
        raw.extend_from_slice(&months.to_be_bytes());
        raw
    }

    fn render_interval(micros: i64, days: i32, months: i32) -> String {
        interval(&interval_bytes(micros, days, months)).expect("valid interval")
    }

    #[test]
    fn interval_components() {
        let micros = 4 * 3_600_000_000 + 5 * 60_000_000 + 6_500_000;
        assert_eq!(render_interval(micros, 3, 14), "P1Y2M3DT4H5M6.5S");
        assert_eq!(render_interval(0, 0, 0), "PT0S");
        assert_eq!(render_interval(0, 0, 12), "P1Y");
        assert_eq!(render_interval(1, 0, 0), "PT0.000001S");
        assert_eq!(render_interval(60_000_000, 0, 0), "PT1M");
        assert_eq!(render_interval(0, 40, 0), "P40D");
    }

    #[test]
    fn interval_negative_components() {
        assert_eq!(render_interval(-2 * 3_600_000_000, -1, 0), "P-1DT-2H");
        assert_eq!(render_interval(-500_000, 0, -14), "P-1Y-2MT-0.5S");
        assert_eq!(render_interval(3_600_000_000, -1, 1), "P1M-1DT1H");
    }

    #[test]
    fn interval_extremes_do_not_overflow() {
        assert_eq!(render_interval(i64::MAX, i32::MAX, i32::MAX), "infinity");
        assert_eq!(render_interval(i64::MIN, i32::MIN, i32::MIN), "-infinity");
        assert_eq!(
            render_interval(i64::MIN, 0, i32::MIN),
            "P-178956970Y-8MT-2562047788H-54.775808S"
        );
        assert!(interval(&[0; 15]).is_err());
        assert!(interval(&[0; 17]).is_err());
    }

    #[test]
    fn dates_across_eras() {
        let render = |days: i32| date(&days.to_be_bytes()).expect("valid date");
        assert_eq!(render(0), "2000-01-01");
        assert_eq!(render(8_825), "2024-02-29");
        assert_eq!(render(-10_957), "1970-01-01");
        assert_eq!(render(-730_119), "0001-01-01");
        assert_eq!(render(-730_120), "0000-12-31");
        // '0044-03-15 BC' (proleptic Gregorian, as PostgreSQL counts) is ISO year -0043.
        assert_eq!(render(-746_117), "-0043-03-15");
        assert_eq!(render(2_921_940), "+10000-01-01");
        assert_eq!(render(i32::MAX), "infinity");
        assert_eq!(render(i32::MIN), "-infinity");
    }

    #[test]
    fn times_and_timestamps() {
        let time_of = |micros: i64| time(&micros.to_be_bytes()).expect("valid time");
        assert_eq!(time_of(0), "00:00:00");
        assert_eq!(time_of(49_506_500_000), "13:45:06.5");
        assert_eq!(time_of(86_400_000_000), "24:00:00");
        assert!(time(&(-1i64).to_be_bytes()).is_err());
        assert!(time(&86_400_000_001i64.to_be_bytes()).is_err());

        let stamp = |micros: i64| timestamp(&micros.to_be_bytes(), false).expect("valid");
        assert_eq!(stamp(0), "2000-01-01T00:00:00");
        assert_eq!(stamp(-1), "1999-12-31T23:59:59.999999");
        assert_eq!(stamp(762_487_506_123_456), "2024-02-29T02:05:06.123456");
        assert_eq!(stamp(i64::MAX), "infinity");
        // Any other i64 renders without overflow.
        assert!(timestamp(&(i64::MAX - 1).to_be_bytes(), true).is_ok());
        assert!(timestamp(&(i64::MIN + 1).to_be_bytes(), true).is_ok());
    }

    #[test]
    fn timetz_offsets() {
        let encode = |micros: i64, west: i32| {
            let mut raw = micros.to_be_bytes().to_vec();
            raw.extend_from_slice(&west.to_be_bytes());
            timetz(&raw).expect("valid timetz")
        };
        assert_eq!(encode(49_506_000_000, -7200), "13:45:06+02:00");
        assert_eq!(encode(0, 18_000), "00:00:00-05:00");
        assert_eq!(encode(0, -(5 * 3600 + 30 * 60 + 15)), "00:00:00+05:30:15");
    }
}
