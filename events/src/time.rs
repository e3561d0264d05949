//! Event-time parsing and formatting.
//!
//! Accepted on input: RFC 3339 with `Z` or a numeric offset and optional fractional seconds
//! (`2026-01-01T00:00:00.250+02:00`), the same with a space instead of `T` and no zone (taken as
//! UTC, as many exports write it), and epoch milliseconds (a number, or a string of digits).
//! The common `YYYY-MM-DDTHH:MM:SS[.fff]Z` form takes a hand-written fast path; anything else
//! falls back to chrono.
//!
//! Every time a client gives (a reading's `ts`, maintenance and decision times, query and report
//! periods) must lie in ONE range, [`MIN_TIME_MS`] ..= [`MAX_TIME_MS`]
//! (1970-01-01T00:00:00Z … 9999-12-31T23:59:59.999Z): [`check_time`] says whether it does.
//! Inside it every time formats as a four-digit year, lands in a sane `date=` partition, and
//! adding or subtracting any duration up to a few thousand years cannot overflow an `i64`.

use crate::EventTime;

/// Earliest time Vigil accepts from a client: 1970-01-01T00:00:00.000Z.
pub const MIN_TIME_MS: EventTime = 0;
/// Latest time Vigil accepts from a client: 9999-12-31T23:59:59.999Z.
pub const MAX_TIME_MS: EventTime = 253_402_300_799_999;

/// A time outside [`MIN_TIME_MS`] ..= [`MAX_TIME_MS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} ms is outside the accepted range 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z")]
pub struct TimeOutOfRange(pub EventTime);

/// `ts` when it lies in the accepted range ([`MIN_TIME_MS`] ..= [`MAX_TIME_MS`]).
pub fn check_time(ts: EventTime) -> Result<EventTime, TimeOutOfRange> {
    if (MIN_TIME_MS..=MAX_TIME_MS).contains(&ts) {
        Ok(ts)
    } else {
        Err(TimeOutOfRange(ts))
    }
}

/// Why a timestamp could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unparseable timestamp {0:?}: expected RFC 3339 or epoch milliseconds")]
pub struct TimeError(pub String);

/// Days since 1970-01-01 of a civil date (proleptic Gregorian), Howard Hinnant's algorithm.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[inline]
fn digits(b: &[u8]) -> Option<i64> {
    let mut v = 0i64;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

/// Fast path: `YYYY-MM-DD[T ]HH:MM:SS[.f{1,9}][Z]`.
fn parse_fast(s: &[u8]) -> Option<EventTime> {
    if s.len() < 19 || s[4] != b'-' || s[7] != b'-' || (s[10] != b'T' && s[10] != b' ') || s[13] != b':' || s[16] != b':' {
        return None;
    }
    let y = digits(&s[0..4])?;
    let mo = digits(&s[5..7])?;
    let d = digits(&s[8..10])?;
    let h = digits(&s[11..13])?;
    let mi = digits(&s[14..16])?;
    let se = digits(&s[17..19])?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut ms = 0i64;
    if let Some(b'.') = rest.first() {
        let frac_len = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if frac_len == 0 || frac_len > 9 {
            return None;
        }
        let frac = &rest[1..1 + frac_len];
        let mut v = 0i64;
        for i in 0..3 {
            v = v * 10 + frac.get(i).map_or(0, |c| i64::from(c - b'0'));
        }
        ms = v;
        rest = &rest[1 + frac_len..];
    }
    match rest {
        b"Z" | b"z" => {}
        b"" if s[10] == b' ' => {}
        _ => return None,
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if d > month_days[(mo - 1) as usize] {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    Some(((days * 24 + h) * 60 + mi) * 60_000 + se.min(59) * 1000 + ms)
}

/// Parses a timestamp string: RFC 3339 (with offset and fraction), `YYYY-MM-DD HH:MM:SS[.fff]`
/// as UTC, or epoch milliseconds written as digits.
pub fn parse_timestamp_str(s: &str) -> Result<EventTime, TimeError> {
    let t = s.trim();
    if let Some(ms) = parse_fast(t.as_bytes()) {
        return Ok(ms);
    }
    if !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit())
        || (t.starts_with('-') && t.len() > 1 && t[1..].bytes().all(|c| c.is_ascii_digit()))
    {
        return t.parse::<i64>().map_err(|_| TimeError(s.to_string()));
    }
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(dt.timestamp_millis());
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%#z"] {
        if let Ok(dt) = chrono::DateTime::parse_from_str(t, fmt) {
            return Ok(dt.timestamp_millis());
        }
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"] {
        if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(t, fmt) {
            return Ok(dt.and_utc().timestamp_millis());
        }
    }
    Err(TimeError(s.to_string()))
}

/// Parses a timestamp given as a number: epoch milliseconds (fractions are truncated).
pub fn parse_timestamp(n: f64) -> Result<EventTime, TimeError> {
    if n.is_finite() && n.abs() < 9.0e15 {
        Ok(n as i64)
    } else {
        Err(TimeError(n.to_string()))
    }
}

/// Formats event time as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_rfc3339_ms(ts: EventTime) -> String {
    let days = ts.div_euclid(crate::MS_PER_DAY);
    let rem = ts.rem_euclid(crate::MS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let (h, rem) = (rem / 3_600_000, rem % 3_600_000);
    let (mi, rem) = (rem / 60_000, rem % 60_000);
    let (s, ms) = (rem / 1000, rem % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_accepted_forms() {
        let base = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        assert_eq!(parse_timestamp_str("2026-01-01T00:00:00Z").unwrap(), base);
        assert_eq!(parse_timestamp_str("2026-01-01T00:00:00.250Z").unwrap(), base + 250);
        assert_eq!(parse_timestamp_str("2026-01-01T00:00:00.2Z").unwrap(), base + 200);
        assert_eq!(parse_timestamp_str("2026-01-01T00:00:00.123456789Z").unwrap(), base + 123);
        assert_eq!(parse_timestamp_str("2026-01-01T02:00:00+02:00").unwrap(), base);
        assert_eq!(parse_timestamp_str("2025-12-31T19:00:00.5-05:00").unwrap(), base + 500);
        assert_eq!(parse_timestamp_str("2026-01-01 00:00:00").unwrap(), base);
        assert_eq!(parse_timestamp_str("1767225600000").unwrap(), base);
        assert_eq!(parse_timestamp(1_767_225_600_000.0).unwrap(), base);
        assert!(parse_timestamp_str("2026-02-30T00:00:00Z").is_err());
        assert!(parse_timestamp_str("yesterday").is_err());
        assert!(parse_timestamp(f64::NAN).is_err());
    }

    #[test]
    fn the_accepted_range_is_checked_at_both_ends() {
        assert_eq!(format_rfc3339_ms(MIN_TIME_MS), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339_ms(MAX_TIME_MS), "9999-12-31T23:59:59.999Z");
        assert_eq!(parse_timestamp_str("9999-12-31T23:59:59.999Z").unwrap(), MAX_TIME_MS);
        for ok in [MIN_TIME_MS, 1_767_225_600_000, MAX_TIME_MS] {
            assert_eq!(check_time(ok), Ok(ok));
        }
        for bad in [i64::MIN, -1, MAX_TIME_MS + 1, i64::MAX] {
            assert_eq!(check_time(bad), Err(TimeOutOfRange(bad)));
        }
        assert!(TimeOutOfRange(-1).to_string().contains("1970-01-01"));
    }

    #[test]
    fn formats_and_round_trips() {
        for ts in [0i64, 1_767_225_600_123, -86_400_001, 951_782_400_000] {
            assert_eq!(parse_timestamp_str(&format_rfc3339_ms(ts)).unwrap(), ts);
        }
        assert_eq!(format_rfc3339_ms(1_767_225_600_250), "2026-01-01T00:00:00.250Z");
    }
}
