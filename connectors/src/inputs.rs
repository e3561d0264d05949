//! Bounded inputs identified by their content, so that the same input given again adds nothing.
//!
//! A replayed file is known by what it holds, not by its path: [`identify`] reads it once and
//! computes the SHA-256 of its content (and of the prefixes the history already knows), so a
//! copy under another name is the same input, a file that grew (the same bytes, and more after
//! them) continues where the history ends, and another file under the same name is new input. A
//! simulated fleet is known by its settings (seed, shape, period).
//!
//! Every commit of a bounded run (`vigil replay`, `vigil demo`) carries a [`ReplayMark`] in its
//! manifest line (the same line as its files, so both are durable together): the inputs it
//! covers ([`InputMark`]: content hash, bytes and lines covered, readings stored), the event-time
//! period it replayed, and the decision requests it raised. The API reads these marks
//! ([`replayed_runs`]) to tell replayed history from live data.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vigil_events::EventTime;

use crate::files::Format;
use crate::history::Commit;
use crate::simulator::FleetConfig;
use crate::{ConnectorError, Result};

/// What a bounded run's commit records besides its files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplayMark {
    /// The inputs the commit covers.
    #[serde(default)]
    pub inputs: Vec<InputMark>,
    /// Least event time replayed (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<EventTime>,
    /// Greatest event time of a reading replayed (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<EventTime>,
    /// Greatest event time of a window or event the run wrote (ms): the windows its end closed
    /// reach past the last reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_to: Option<EventTime>,
    /// The decision requests the run raised (their `event_id`s): requests of replayed history,
    /// which the live pending queue leaves out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decision_requests: Vec<String>,
}

/// Kind of a bounded input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// A file (JSON lines, CSV, Parquet).
    File,
    /// The built-in fleet simulator (`vigil demo`).
    Simulator,
}

/// One input of a bounded run, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputMark {
    /// File or simulator.
    pub kind: InputKind,
    /// The path as given (or `simulator`): for people; identity is the content.
    pub name: String,
    /// SHA-256 (hex) of the content covered, bytes `0..bytes` (files), or of the fleet's settings.
    pub sha256: String,
    /// Bytes of the file covered (all of them up to here, over every run that continued it).
    #[serde(default)]
    pub bytes: u64,
    /// The byte this run started reading at (0, or where an earlier run ended).
    #[serde(default)]
    pub start_byte: u64,
    /// Lines of the file covered (newlines in `0..bytes`; rows for Parquet).
    #[serde(default)]
    pub lines: u64,
    /// Readings stored from this input, over every run that covered it.
    #[serde(default)]
    pub readings: u64,
    /// Records rejected from this input, over every run that covered it.
    #[serde(default)]
    pub rejected: u64,
    /// The simulated fleet's settings (simulator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetConfig>,
}

/// What [`identify`] learned of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// Length in bytes.
    pub len: u64,
    /// SHA-256 (hex) of the whole file.
    pub sha256: String,
    /// Newlines in the whole file.
    pub lines: u64,
    /// Whether the file ends with a newline (or is empty).
    pub ends_with_newline: bool,
    /// For each prefix length asked for (no longer than the file): (length, SHA-256, newlines).
    pub prefixes: Vec<(u64, String, u64)>,
}

/// Reads `path` once: its length, SHA-256, newlines, and the SHA-256 of each prefix of the
/// lengths in `prefixes` (those no longer than the file).
pub fn identify(path: &Path, prefixes: &[u64]) -> Result<Identity> {
    let mut f = File::open(path).map_err(|e| ConnectorError::io(path, e))?;
    let wanted: BTreeSet<u64> = prefixes.iter().copied().collect();
    let mut wanted = wanted.into_iter().peekable();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let (mut pos, mut lines, mut last) = (0u64, 0u64, b'\n');
    let mut out = Vec::new();
    loop {
        let n = f.read(&mut buf).map_err(|e| ConnectorError::io(path, e))?;
        if n > 0 {
            last = buf[n - 1];
        }
        let mut chunk = &buf[..n];
        // Prefix boundaries inside this buffer (or at its end).
        while let Some(&p) = wanted.peek() {
            if p > pos + chunk.len() as u64 {
                break;
            }
            let k = (p - pos) as usize;
            hasher.update(&chunk[..k]);
            lines += memchr::memchr_iter(b'\n', &chunk[..k]).count() as u64;
            out.push((p, hex(&hasher.clone().finalize()), lines));
            pos = p;
            chunk = &chunk[k..];
            wanted.next();
        }
        if n == 0 {
            break;
        }
        hasher.update(chunk);
        lines += memchr::memchr_iter(b'\n', chunk).count() as u64;
        pos += chunk.len() as u64;
    }
    Ok(Identity { len: pos, sha256: hex(&hasher.finalize()), lines, ends_with_newline: last == b'\n', prefixes: out })
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// What to do with an input file, given what the history holds.
#[derive(Debug, Clone, PartialEq)]
pub enum FilePlan {
    /// Every byte of it is in the history already (under this mark).
    InHistory(InputMark),
    /// Its first bytes are in the history (under this mark): read from byte `start`, whose line
    /// number is `first_line`.
    Continue {
        /// The mark of the part already in the history.
        prev: InputMark,
        /// First byte to read (a line start).
        start: u64,
        /// Line number of that byte (1-based).
        first_line: u64,
    },
    /// New input.
    New,
}

/// The file marks of every bounded run in the manifest.
pub fn file_marks(commits: &[Commit]) -> Vec<InputMark> {
    commits
        .iter()
        .filter_map(|c| c.replay.as_ref())
        .flat_map(|m| m.inputs.iter())
        .filter(|i| i.kind == InputKind::File)
        .cloned()
        .collect()
}

/// Decides how to read `path` given the `known` file marks: identifies it by content (reading it
/// once) and returns the plan and its identity.
pub fn plan_file(path: &Path, known: &[InputMark]) -> Result<(FilePlan, Identity)> {
    let prefixes: Vec<u64> = known.iter().map(|m| m.bytes).collect();
    let id = identify(path, &prefixes)?;
    // The longest known content this file starts with.
    let best = known
        .iter()
        .filter(|m| m.bytes <= id.len)
        .filter(|m| id.prefixes.iter().any(|(len, sha, _)| *len == m.bytes && *sha == m.sha256))
        .max_by_key(|m| (m.bytes, m.readings));
    let Some(m) = best else { return Ok((FilePlan::New, id)) };
    if m.bytes == id.len {
        return Ok((FilePlan::InHistory(m.clone()), id));
    }
    // A grown Parquet file is a rewritten one (its footer moved): only line files continue.
    if matches!(Format::from_path(path)?, Format::Parquet) || m.bytes == 0 {
        return Ok((FilePlan::New, id));
    }
    let newlines = id.prefixes.iter().find(|(len, ..)| *len == m.bytes).map_or(0, |p| p.2);
    let (start, first_line) = if newlines == m.lines && last_byte_is_newline(path, m.bytes)? {
        (m.bytes, newlines + 1)
    } else {
        // The last line was incomplete when it was read (and stored as it was): go on after it.
        (next_line_start(path, m.bytes)?, newlines + 2)
    };
    if start >= id.len {
        return Ok((FilePlan::InHistory(m.clone()), id));
    }
    Ok((FilePlan::Continue { prev: m.clone(), start, first_line }, id))
}

fn last_byte_is_newline(path: &Path, at: u64) -> Result<bool> {
    use std::os::unix::fs::FileExt;
    let f = File::open(path).map_err(|e| ConnectorError::io(path, e))?;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at - 1).map_err(|e| ConnectorError::io(path, e))?;
    Ok(b[0] == b'\n')
}

fn next_line_start(path: &Path, from: u64) -> Result<u64> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path).map_err(|e| ConnectorError::io(path, e))?;
    f.seek(SeekFrom::Start(from)).map_err(|e| ConnectorError::io(path, e))?;
    let mut buf = vec![0u8; 64 << 10];
    let mut pos = from;
    loop {
        let n = f.read(&mut buf).map_err(|e| ConnectorError::io(path, e))?;
        if n == 0 {
            return Ok(pos);
        }
        if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
            return Ok(pos + i as u64 + 1);
        }
        pos += n as u64;
    }
}

/// The identity of a simulated fleet: the SHA-256 of its settings.
pub fn fleet_sha256(fleet: &FleetConfig) -> String {
    let json = serde_json::to_vec(fleet).unwrap_or_default();
    hex(&Sha256::digest(&json))
}

/// Two fleets are the same fleet (the same assets behaving the same way) when everything but
/// their period agrees.
pub fn same_fleet(a: &FleetConfig, b: &FleetConfig) -> bool {
    FleetConfig { start_ms: 0, hours: 0.0, ..a.clone() } == FleetConfig { start_ms: 0, hours: 0.0, ..b.clone() }
}

/// End of a fleet's period (ms).
pub fn fleet_end(f: &FleetConfig) -> EventTime {
    f.start_ms.saturating_add((f.hours * 3_600_000.0) as i64)
}

/// The simulator marks of the bounded runs in the manifest (the demos), oldest first.
pub fn fleet_marks(commits: &[Commit]) -> Vec<InputMark> {
    commits
        .iter()
        .filter_map(|c| c.replay.as_ref())
        .flat_map(|m| m.inputs.iter())
        .filter(|i| i.kind == InputKind::Simulator && i.fleet.is_some())
        .cloned()
        .collect()
}

/// What to do with a demo of `fleet`, given the demos in the history.
#[derive(Debug, Clone, PartialEq)]
pub enum FleetPlan {
    /// This very fleet and period is in the history (under this mark).
    InHistory(InputMark),
    /// The same fleet, continuing after the period in the history.
    Continue(InputMark),
    /// No demo in the history.
    New,
    /// Another fleet, or an overlapping period: refused, with the reason.
    Refused(String),
}

/// Decides how a demo of `fleet` goes into a history holding the demos `known`.
pub fn plan_fleet(fleet: &FleetConfig, known: &[InputMark]) -> FleetPlan {
    let sha = fleet_sha256(fleet);
    if let Some(m) = known.iter().find(|m| m.sha256 == sha) {
        return FleetPlan::InHistory(m.clone());
    }
    let Some(last) = known.iter().filter_map(|m| m.fleet.as_ref().map(|f| (m, f))).max_by_key(|(_, f)| fleet_end(f)) else {
        return FleetPlan::New;
    };
    let (mark, other) = last;
    if !same_fleet(fleet, other) {
        return FleetPlan::Refused(format!(
            "the history already holds the demo of another fleet ({}); a demo never mixes two fleets: \
             use a new --data-dir, or the same fleet settings",
            describe_fleet(other)
        ));
    }
    let end = known.iter().filter_map(|m| m.fleet.as_ref()).map(fleet_end).max().unwrap_or(fleet_end(other));
    let start_all = known.iter().filter_map(|m| m.fleet.as_ref()).map(|f| f.start_ms).min().unwrap_or(other.start_ms);
    if fleet.start_ms >= end {
        return FleetPlan::Continue(mark.clone());
    }
    FleetPlan::Refused(format!(
        "the history already holds this fleet from {} to {}; a demo adds only a later period \
         (--start {} or later), never the same readings twice",
        vigil_events::format_rfc3339_ms(start_all),
        vigil_events::format_rfc3339_ms(end),
        vigil_events::format_rfc3339_ms(end)
    ))
}

/// A fleet's settings in a few words.
pub fn describe_fleet(f: &FleetConfig) -> String {
    format!(
        "seed {}, {} assets x {} sensors, {} h from {}",
        f.seed,
        f.assets,
        f.sensors_per_asset,
        f.hours,
        vigil_events::format_rfc3339_ms(f.start_ms)
    )
}

/// The `event_id`s of a history file (a run's decision requests, read back before its commit).
pub fn event_ids(path: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for b in crate::files::read_parquet(path)? {
        let ids = b.column_by_name("event_id").and_then(|c| c.as_any().downcast_ref::<arrow::array::StringArray>());
        if let Some(ids) = ids {
            out.extend(ids.iter().flatten().map(str::to_string));
        }
    }
    Ok(out)
}

/// A bounded run as the API shows it: a replayed period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplayedRun {
    /// Run id.
    pub run: String,
    /// When it was committed (wall clock, ms).
    pub committed_at: i64,
    /// Its inputs (file names, or `simulator`).
    pub inputs: Vec<String>,
    /// Least event time replayed (ms).
    pub from: Option<EventTime>,
    /// Greatest event time replayed, readings or the events the run's end wrote (ms).
    pub to: Option<EventTime>,
}

/// The bounded runs of the history and the decision requests they raised, read from the
/// manifest. Lines that are not a bounded run's commit are skipped without being parsed in full.
pub fn replayed_runs(data_dir: &Path) -> Result<(Vec<ReplayedRun>, BTreeSet<String>)> {
    let path = crate::history::manifest_path(data_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), BTreeSet::new())),
        Err(e) => return Err(ConnectorError::io(&path, e)),
    };
    let mut runs = Vec::new();
    let mut requests = BTreeSet::new();
    for line in text.lines().filter(|l| l.contains("\"replay\":{")) {
        let Ok(c) = serde_json::from_str::<Commit>(line) else { continue };
        let Some(m) = c.replay else { continue };
        requests.extend(m.decision_requests.iter().cloned());
        runs.push(ReplayedRun {
            run: c.run,
            committed_at: c.committed_at,
            inputs: m.inputs.iter().map(|i| i.name.clone()).collect(),
            from: m.from,
            to: m.to.max(m.events_to),
        });
    }
    Ok((runs, requests))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_hash_like_the_files_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
        std::fs::write(&a, "one\ntwo\n").unwrap();
        std::fs::write(&b, "one\ntwo\nthree\n").unwrap();
        let ia = identify(&a, &[]).unwrap();
        let ib = identify(&b, &[ia.len, 100]).unwrap();
        assert_eq!((ia.len, ia.lines, ia.ends_with_newline), (8, 2, true));
        assert_eq!(ib.prefixes, vec![(8, ia.sha256.clone(), 2)], "the prefix beyond the end is left out");
        assert_ne!(ib.sha256, ia.sha256);
    }
}
