//! Times written without a zone (historian exports), read in a named zone.
//!
//! Historians export local wall-clock times without an offset (`2026-01-05 13:45:00`). Read as
//! UTC they silently shift every reading by the zone's offset; [`parse_timestamp_in`] reads them
//! in a [`Zone`] (an IANA name such as `Europe/Paris`) when one is given, and says that a time
//! had no zone, so a replay can warn when it assumed UTC.
//!
//! Zoneless forms read (`T` or a space between date and time; seconds and fractions optional):
//! `2026-01-05 13:45`, `2026-01-05 13:45:00`, `2026-01-05T13:45:00.123`, `2026/01/05 13:45:00`,
//! and the PI style `05-Jan-2026 13:45:00`. Day-first or month-first slash dates
//! (`05/01/2026`) are refused as ambiguous. In a zone, a time in the hour the clocks repeat
//! (autumn) is read as its first occurrence; a time in the hour they skip (spring) does not exist
//! and is refused. Everything else — RFC 3339 with `Z` or an offset, epoch milliseconds — goes to
//! [`crate::parse_timestamp_str`] unchanged: the zone applies only to times without one.

use chrono::{NaiveDateTime, TimeZone};

use crate::EventTime;

/// A time zone for times written without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone(chrono_tz::Tz);

impl Zone {
    /// The zone of an IANA name (`Europe/Paris`, `America/New_York`, `UTC`), case-insensitive.
    pub fn parse(name: &str) -> Option<Zone> {
        let name = name.trim();
        name.parse::<chrono_tz::Tz>()
            .ok()
            .or_else(|| chrono_tz::TZ_VARIANTS.iter().copied().find(|z| z.name().eq_ignore_ascii_case(name)))
            .map(Zone)
    }

    /// Its IANA name.
    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    /// Every zone name known (for suggestions).
    pub fn names() -> impl Iterator<Item = &'static str> {
        chrono_tz::TZ_VARIANTS.iter().map(|z| z.name())
    }
}

impl std::fmt::Display for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A timestamp read, and whether it was written without a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedTime {
    /// Milliseconds since the epoch (UTC).
    pub ms: EventTime,
    /// The text had no zone or offset (a wall-clock time read in the given zone, or as UTC).
    pub zoneless: bool,
}

/// Why a timestamp could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZonedTimeError {
    /// Not a time in any accepted form.
    #[error(transparent)]
    Unparseable(#[from] crate::TimeError),
    /// A slash date whose day and month order is unknown.
    #[error("ambiguous date {0:?}: day/month or month/day? write YYYY-MM-DD (ISO 8601)")]
    Ambiguous(String),
    /// A wall-clock time that does not exist in the zone (the hour skipped in spring).
    #[error("{time:?} does not exist in {zone} (the clocks skip it)")]
    Nonexistent {
        /// The text.
        time: String,
        /// The zone.
        zone: &'static str,
    },
}

/// The zoneless forms tried, after the ISO ones with `T` or a space.
const NAIVE_FORMATS: [&str; 8] = [
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y/%m/%d %H:%M:%S%.f",
    "%Y/%m/%d %H:%M",
    "%d-%b-%Y %H:%M:%S%.f",
    "%d-%b-%Y %H:%M",
];

fn naive(t: &str) -> Option<NaiveDateTime> {
    NAIVE_FORMATS.iter().find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
}

/// `dd/dd/dddd…`: a slash date that starts with the day or the month.
fn slash_date_first(t: &str) -> bool {
    let b = t.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let first = b.iter().take_while(|c| c.is_ascii_digit()).count();
    (1..=2).contains(&first) && b.get(first) == Some(&b'/') && {
        let rest = first + 1;
        let second = b[rest..].iter().take_while(|c| c.is_ascii_digit()).count();
        (1..=2).contains(&second) && b.get(rest + second) == Some(&b'/') && digits(rest + second + 1..rest + second + 5)
    }
}

/// Reads a timestamp string; times without a zone are read in `zone` (UTC when `None`), and the
/// result says they had none. Times with a zone or offset and epoch milliseconds read as
/// [`crate::parse_timestamp_str`] reads them.
pub fn parse_timestamp_in(s: &str, zone: Option<Zone>) -> Result<ParsedTime, ZonedTimeError> {
    let t = s.trim();
    // The common case first: RFC 3339 in UTC, or epoch milliseconds.
    let zoned_or_epoch = t.ends_with(['Z', 'z'])
        || t.bytes().all(|c| c.is_ascii_digit() || c == b'-') && !t.contains(':')
        // An offset after the time (`…T13:45:00+01:00`).
        || t.as_bytes().get(16..).is_some_and(|r| r.iter().any(|&c| c == b'+' || c == b'-'));
    if !zoned_or_epoch {
        if let Some(n) = naive(t) {
            let ms = match zone {
                None => n.and_utc().timestamp_millis(),
                Some(z) => match z.0.from_local_datetime(&n) {
                    chrono::LocalResult::Single(dt) => dt.timestamp_millis(),
                    // The repeated hour: its first occurrence.
                    chrono::LocalResult::Ambiguous(first, _) => first.timestamp_millis(),
                    chrono::LocalResult::None => return Err(ZonedTimeError::Nonexistent { time: t.to_string(), zone: z.name() }),
                },
            };
            return Ok(ParsedTime { ms, zoneless: true });
        }
        if slash_date_first(t) {
            return Err(ZonedTimeError::Ambiguous(t.to_string()));
        }
    }
    Ok(ParsedTime { ms: crate::parse_timestamp_str(s)?, zoneless: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn utc(s: &str) -> ParsedTime {
        parse_timestamp_in(s, None).unwrap()
    }

    #[test]
    fn zoneless_forms_are_read_and_marked() {
        for s in [
            "2026-01-01 00:00:00",
            "2026-01-01T00:00:00",
            "2026-01-01 00:00",
            "2026-01-01T00:00:00.000",
            "2026/01/01 00:00:00",
            "01-Jan-2026 00:00:00",
            " 2026-01-01 00:00:00 ",
        ] {
            assert_eq!(utc(s), ParsedTime { ms: BASE, zoneless: true }, "{s}");
        }
        assert_eq!(utc("2026-01-01T00:00:00.123").ms, BASE + 123);
    }

    #[test]
    fn zoned_and_epoch_forms_are_not_zoneless_and_ignore_the_zone() {
        let paris = Zone::parse("Europe/Paris");
        for s in ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00", "2026-01-01 01:00:00+01:00", "1767225600000"] {
            assert_eq!(parse_timestamp_in(s, paris).unwrap(), ParsedTime { ms: BASE, zoneless: false }, "{s}");
        }
    }

    #[test]
    fn a_zone_applies_to_wall_clock_times_with_daylight_saving() {
        let paris = Zone::parse("europe/paris").expect("case-insensitive");
        assert_eq!(paris.name(), "Europe/Paris");
        // Winter: UTC+1.
        assert_eq!(parse_timestamp_in("2026-01-01 01:00:00", Some(paris)).unwrap().ms, BASE);
        // Summer: UTC+2.
        let summer = parse_timestamp_in("2026-07-01T14:00:00", Some(paris)).unwrap();
        assert_eq!(summer.ms, parse_timestamp_in("2026-07-01T12:00:00Z", None).unwrap().ms);
        assert!(summer.zoneless);
        // 2026-10-25 02:30 happens twice in Paris: the first (still UTC+2) is taken.
        assert_eq!(
            parse_timestamp_in("2026-10-25 02:30:00", Some(paris)).unwrap().ms,
            parse_timestamp_in("2026-10-25T00:30:00Z", None).unwrap().ms
        );
        // 2026-03-29 02:30 does not exist in Paris.
        let err = parse_timestamp_in("2026-03-29 02:30:00", Some(paris)).unwrap_err();
        assert!(err.to_string().contains("does not exist in Europe/Paris"), "{err}");
        let ny = Zone::parse("America/New_York").unwrap();
        assert_eq!(parse_timestamp_in("2025-12-31 19:00:00", Some(ny)).unwrap().ms, BASE);
    }

    #[test]
    fn ambiguous_and_unknown_inputs_are_refused() {
        let err = parse_timestamp_in("05/01/2026 13:45:00", None).unwrap_err();
        assert!(matches!(err, ZonedTimeError::Ambiguous(_)), "{err}");
        assert!(err.to_string().contains("YYYY-MM-DD"), "{err}");
        assert!(matches!(parse_timestamp_in("yesterday", None), Err(ZonedTimeError::Unparseable(_))));
        assert!(Zone::parse("Mars/Olympus").is_none());
        assert!(Zone::names().any(|n| n == "Asia/Tokyo"));
    }
}
