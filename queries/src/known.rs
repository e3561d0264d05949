//! Known assets and sensors, and the closest matches to a name the history does not know.
//!
//! A report or a canned query about an asset or sensor the history has never seen must not
//! answer with an empty success (a report of 100 % availability, an empty series): it is an
//! error that names the closest known ids ("no asset 'asset-003' in the history; did you mean
//! asset-0003, asset-0030?"). [`closest`] ranks candidates by edit distance (case-insensitive),
//! then by the length of the common prefix; [`History::require_asset`] and
//! [`History::require_sensor`] check an id against the history and build that error.
//!
//! Input: a name and the history. Output: `Ok(())` or [`QueryError::Unknown`]. State: none.

use crate::canned::{text, Columns};
use crate::{History, QueryError};

/// How many close matches an error names at most.
pub const MAX_SUGGESTIONS: usize = 3;

/// Levenshtein distance over chars, case-insensitive.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().flat_map(char::to_lowercase).collect();
    let b: Vec<char> = b.chars().flat_map(char::to_lowercase).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.chars().zip(b.chars()).take_while(|(x, y)| x.eq_ignore_ascii_case(y)).count()
}

/// The name with the leading zeros of every run of digits dropped (`asset-0003` → `asset-3`), so
/// that a mistake in zero padding counts for nothing.
fn unpadded(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    let mut in_digits = false;
    while let Some(c) = chars.next() {
        if c == '0' && !in_digits && chars.peek().is_some_and(char::is_ascii_digit) {
            continue;
        }
        in_digits = c.is_ascii_digit();
        out.push(c);
    }
    out
}

/// The known names closest to `wanted`, best first, at most `n`: those within an edit distance
/// of a third of the name's length (at least 2) — with or without zero padding — or sharing a
/// prefix of at least half of it. Ranked by the distance without zero padding, then the plain
/// distance, then the longer common prefix, then the name.
pub fn closest<'a>(wanted: &str, known: impl IntoIterator<Item = &'a str>, n: usize) -> Vec<String> {
    let len = wanted.chars().count();
    let max_distance = (len / 3).max(2);
    let wanted_unpadded = unpadded(wanted);
    let mut scored: Vec<(usize, usize, std::cmp::Reverse<usize>, &str)> = known
        .into_iter()
        .filter(|k| *k != wanted)
        .filter_map(|k| {
            let u = distance(&wanted_unpadded, &unpadded(k));
            let d = distance(wanted, k);
            let p = common_prefix(wanted, k);
            (u.min(d) <= max_distance || (len >= 4 && p * 2 >= len)).then_some((u, d, std::cmp::Reverse(p), k))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.3 == b.3);
    scored.into_iter().take(n).map(|(_, _, _, k)| k.to_string()).collect()
}

/// The message of an unknown id: the closest matches, or else a few of the known ids.
pub(crate) fn unknown_message(kind: &str, id: &str, closest: &[String], known: &[String]) -> String {
    let mut m = format!("no {kind} '{id}' in the history");
    if !closest.is_empty() {
        m.push_str(&format!("; did you mean {}?", closest.join(", ")));
    } else if known.is_empty() {
        m.push_str(&format!(" (it holds no {kind} yet)"));
    } else {
        let some: Vec<&str> = known.iter().take(MAX_SUGGESTIONS).map(String::as_str).collect();
        m.push_str(&format!(
            " ({} {kind}{} known, e.g. {})",
            known.len(),
            if known.len() == 1 { "" } else { "s" },
            some.join(", ")
        ));
    }
    m
}

/// The tables with an `asset_id` column, most telling first.
const ASSET_TABLES: [&str; 5] = ["readings", "predictions", "anomalies", "schedule", "maintenance"];

impl History {
    async fn exists_in(&self, table: &str, column: &str, id: &str) -> Result<bool, QueryError> {
        let r = self.query(&format!("SELECT {column} FROM {table} WHERE {column} = $1 LIMIT 1"), vec![text(id)], 1).await?;
        Ok(r.rows > 0)
    }

    async fn distinct(&self, tables: &[&str], column: &str) -> Result<Vec<String>, QueryError> {
        let sql = tables.iter().map(|t| format!("SELECT DISTINCT {column} AS id FROM {t}")).collect::<Vec<_>>().join(" UNION ");
        let r = self.query(&format!("SELECT id FROM ({sql}) ORDER BY id"), vec![], usize::MAX).await?;
        Ok(Columns::new(&r)?.text("id")?.into_iter().flatten().collect())
    }

    /// `Ok(())` when `asset_id` appears in the history (readings, predictions, anomalies,
    /// schedule or maintenance); otherwise [`QueryError::Unknown`] naming the closest assets.
    pub async fn require_asset(&self, asset_id: &str) -> Result<(), QueryError> {
        for t in ASSET_TABLES {
            if self.exists_in(t, "asset_id", asset_id).await? {
                return Ok(());
            }
        }
        let known = self.distinct(&ASSET_TABLES, "asset_id").await?;
        Err(unknown("asset", asset_id, known))
    }

    /// `Ok(())` when `sensor_id` has readings in the history; otherwise [`QueryError::Unknown`]
    /// naming the closest sensors.
    pub async fn require_sensor(&self, sensor_id: &str) -> Result<(), QueryError> {
        if self.exists_in("readings", "sensor_id", sensor_id).await? {
            return Ok(());
        }
        let known = self.distinct(&["readings"], "sensor_id").await?;
        Err(unknown("sensor", sensor_id, known))
    }
}

fn unknown(kind: &'static str, id: &str, known: Vec<String>) -> QueryError {
    let near = closest(id, known.iter().map(String::as_str), MAX_SUGGESTIONS);
    QueryError::Unknown { message: unknown_message(kind, id, &near, &known), kind, id: id.to_string(), closest: near }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assets() -> Vec<String> {
        (0..50).map(|i| format!("asset-{i:04}")).collect()
    }

    #[test]
    fn close_names_come_first() {
        let known = assets();
        let near = closest("asset-003", known.iter().map(String::as_str), 3);
        assert_eq!(near[..2], ["asset-0003".to_string(), "asset-0030".to_string()], "{near:?}");
        assert_eq!(closest("ASSET-0007", known.iter().map(String::as_str), 1), ["asset-0007"]);
        assert!(closest("pump-7", known.iter().map(String::as_str), 3).is_empty());
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(unpadded("asset-0003"), "asset-3");
        assert_eq!(unpadded("a-0-100"), "a-0-100");
    }

    #[test]
    fn messages_name_matches_or_examples() {
        let known = assets();
        let near = closest("asset-003", known.iter().map(String::as_str), 2);
        assert_eq!(
            unknown_message("asset", "asset-003", &near, &known),
            "no asset 'asset-003' in the history; did you mean asset-0003, asset-0030?"
        );
        let m = unknown_message("asset", "NO_SUCH_ASSET", &[], &known);
        assert_eq!(m, "no asset 'NO_SUCH_ASSET' in the history (50 assets known, e.g. asset-0000, asset-0001, asset-0002)");
        assert_eq!(unknown_message("sensor", "s", &[], &[]), "no sensor 's' in the history (it holds no sensor yet)");
    }
}
