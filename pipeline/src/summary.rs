//! The summary of a run: what came in, what was kept and rejected, what was found, and — when
//! the simulator's ground truth is known — how well the detectors did (precision, recall, mean
//! detection delay). Printed for a person, or as one JSON object with `--json`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use vigil_connectors::simulator::GroundTruth;

use crate::run::RunStats;

/// Scores against the simulator's ground truth.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Score {
    /// Injected anomalies.
    pub anomalies_injected: u64,
    /// Injected anomalies with at least one matching detection.
    pub anomalies_detected: u64,
    /// Anomaly events that match an injected anomaly, drift or degradation.
    pub events_matched: u64,
    /// Anomaly events in all.
    pub events: u64,
    /// events_matched / events.
    pub precision: f64,
    /// anomalies_detected / anomalies_injected.
    pub recall: f64,
    /// Mean delay from an injected anomaly's start to its first detection, seconds.
    pub mean_detection_delay_s: f64,
    /// Recall by injected kind.
    pub recall_by_kind: BTreeMap<String, f64>,
    /// Injected drifts.
    pub drifts_injected: u64,
    /// Injected drifts with a drift event on the sensor after the onset.
    pub drifts_detected: u64,
    /// Mean delay from drift onset to detection, seconds.
    pub mean_drift_delay_s: f64,
    /// Degrading assets.
    pub degrading_assets: u64,
    /// Degrading assets that got a maintenance proposal before their failure time.
    pub degrading_assets_proposed: u64,
    /// Proposals for assets that were not degrading.
    pub proposals_without_degradation: u64,
    /// Bad records injected, by expected reason.
    pub bad_records_injected: BTreeMap<String, u64>,
    /// Injected episodes: anomalies, drifting sensors and degrading assets.
    pub episodes_injected: u64,
    /// Injected episodes that lie in an incident of their asset.
    pub episodes_in_incidents: u64,
    /// episodes_in_incidents / episodes_injected.
    pub incident_recall: f64,
    /// Incidents that contain an injected episode.
    pub incidents_explained: u64,
    /// incidents_explained / incidents.
    pub incident_precision: f64,
    /// Incidents that contain no injected episode, per 100 asset-hours.
    pub false_incidents_per_100_asset_hours: f64,
}

/// The summary.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `demo` or `replay`.
    pub mode: String,
    /// Inputs.
    pub inputs: Vec<String>,
    /// History directory.
    pub data_dir: String,
    /// Workers.
    pub workers: usize,
    /// Whether the input was sorted into event-time order first.
    pub sorted_first: bool,
    /// Wall time, seconds.
    pub elapsed_s: f64,
    /// Records per second.
    pub records_per_s: f64,
    /// Records in.
    pub records_in: u64,
    /// Accepted.
    pub accepted: u64,
    /// Rejected.
    pub rejected: u64,
    /// Rejected by reason.
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Windows by kind.
    pub windows: BTreeMap<String, u64>,
    /// Anomalies by detector.
    pub anomalies_by_detector: BTreeMap<String, u64>,
    /// Anomalies by severity.
    pub anomalies_by_severity: BTreeMap<String, u64>,
    /// Drift events by statistic.
    pub drift_by_statistic: BTreeMap<String, u64>,
    /// Predictions.
    pub predictions: u64,
    /// Maintenance proposals.
    pub proposals: u64,
    /// Decision requests.
    pub decision_requests: u64,
    /// Incidents (every incident of a bounded run is closed by its end).
    pub incidents: u64,
    /// Incidents by severity.
    pub incidents_by_severity: BTreeMap<String, u64>,
    /// Incidents raised in a maintenance window (recorded, not alerted).
    pub incidents_suppressed: u64,
    /// Incidents per asset-hour (simulated input: the fleet's assets and hours).
    pub incidents_per_asset_hour: Option<f64>,
    /// History rows by table.
    pub history_rows: BTreeMap<String, u64>,
    /// History files written.
    pub history_files: u64,
    /// Ground-truth scores (simulated input).
    pub ground_truth: Option<Score>,
    /// Inputs the history held already (identified by content), so not read again, or read only
    /// from where the history ended.
    pub in_history: Vec<crate::run::InputInHistory>,
}

impl Summary {
    /// Builds the summary of a run.
    pub fn new(
        mode: &str,
        inputs: Vec<String>,
        data_dir: String,
        workers: usize,
        elapsed_s: f64,
        stats: &RunStats,
        truth: Option<&GroundTruth>,
    ) -> Summary {
        let mut anomalies_by_detector = stats.folded.anomalies_by_detector.clone();
        let mut anomalies_by_severity = stats.folded.anomalies_by_severity.clone();
        for a in &stats.anomalies {
            *anomalies_by_detector.entry(a.detector.clone()).or_default() += 1;
            *anomalies_by_severity.entry(a.severity.as_str().to_string()).or_default() += 1;
        }
        let mut drift_by_statistic = stats.folded.drift_by_statistic.clone();
        for d in &stats.drift {
            *drift_by_statistic.entry(d.statistic.clone()).or_default() += 1;
        }
        let mut history_rows = stats.folded.history_rows.clone();
        for f in &stats.files {
            *history_rows.entry(f.table.clone()).or_default() += f.rows;
        }
        let windows =
            BTreeMap::from([("tumbling".to_string(), stats.tumbling_windows), ("hopping".to_string(), stats.hopping_windows)]);
        Summary {
            mode: mode.into(),
            inputs,
            data_dir,
            workers,
            sorted_first: stats.needs_sort,
            elapsed_s,
            records_per_s: if elapsed_s > 0.0 { stats.records_in as f64 / elapsed_s } else { 0.0 },
            records_in: stats.records_in,
            accepted: stats.accepted,
            rejected: stats.rejected_total(),
            rejected_by_reason: stats.rejected.clone(),
            windows,
            anomalies_by_detector,
            anomalies_by_severity,
            drift_by_statistic,
            predictions: stats.predictions,
            proposals: stats.proposals.len() as u64 + stats.folded.proposals,
            decision_requests: stats.decision_requests,
            incidents: stats.incidents.len() as u64 + stats.folded.incidents_closed,
            incidents_by_severity: stats.incidents.iter().fold(BTreeMap::new(), |mut m, i| {
                *m.entry(i.severity.as_str().to_string()).or_default() += 1;
                m
            }),
            incidents_suppressed: stats.incidents.iter().filter(|i| i.suppressed).count() as u64,
            incidents_per_asset_hour: truth
                .and_then(|t| t.config.as_ref())
                .map(|c| c.assets as f64 * c.hours)
                .filter(|h| *h > 0.0 && stats.records_in > 0)
                .map(|asset_hours| stats.incidents.len() as f64 / asset_hours),
            history_rows,
            history_files: stats.files.len() as u64,
            // Nothing simulated: nothing to score.
            ground_truth: truth.filter(|_| stats.records_in > 0).map(|t| score(stats, t)),
            in_history: stats.in_history.clone(),
        }
    }
}

/// A detection within this long after an injected anomaly's end still counts (windows close
/// after the watermark passes their end).
const GRACE_MS: i64 = 3 * 60_000;

/// Scores the run's events against the ground truth.
pub fn score(stats: &RunStats, truth: &GroundTruth) -> Score {
    let mut first_detection: Vec<Option<i64>> = vec![None; truth.anomalies.len()];
    let mut matched = 0u64;
    for ev in &stats.anomalies {
        let mut hit = false;
        for (i, a) in truth.anomalies.iter().enumerate() {
            let same = if ev.sensor_id.is_empty() { ev.asset_id == a.asset_id } else { ev.sensor_id == a.sensor_id };
            if same && ev.ts >= a.start && ev.ts <= a.end + GRACE_MS {
                hit = true;
                first_detection[i] = Some(first_detection[i].map_or(ev.ts, |t: i64| t.min(ev.ts)));
            }
        }
        // Detections explained by injected drift or degradation are true, too.
        hit |= truth
            .drifts
            .iter()
            .any(|d| (ev.sensor_id == d.sensor_id || (ev.sensor_id.is_empty() && ev.asset_id == d.asset_id)) && ev.ts >= d.start);
        hit |= truth.degradations.iter().any(|d| ev.asset_id == d.asset_id && ev.ts >= d.start);
        if hit {
            matched += 1;
        }
    }
    let detected: Vec<(usize, i64)> = first_detection.iter().enumerate().filter_map(|(i, t)| t.map(|t| (i, t))).collect();
    let mean_delay = if detected.is_empty() {
        0.0
    } else {
        detected.iter().map(|(i, t)| (t - truth.anomalies[*i].start) as f64 / 1000.0).sum::<f64>() / detected.len() as f64
    };
    let mut by_kind: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (i, a) in truth.anomalies.iter().enumerate() {
        let kind = serde_json::to_value(a.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let e = by_kind.entry(kind).or_default();
        e.0 += 1;
        e.1 += u64::from(first_detection[i].is_some());
    }
    let mut drift_delays = Vec::new();
    for d in &truth.drifts {
        if let Some(ev) = stats.drift.iter().filter(|e| e.sensor_id == d.sensor_id && e.ts >= d.start).map(|e| e.ts).min() {
            drift_delays.push((ev - d.start) as f64 / 1000.0);
        }
    }
    let degrading_proposed = truth
        .degradations
        .iter()
        .filter(|d| stats.proposals.iter().any(|p| p.asset_id == d.asset_id && p.ts >= d.start && p.ts <= d.failure))
        .count() as u64;
    let proposals_without =
        stats.proposals.iter().filter(|p| !truth.degradations.iter().any(|d| d.asset_id == p.asset_id)).count() as u64;
    let events = stats.anomalies.len() as u64;
    // Incidents: an episode lies in one when an incident of its asset overlaps it.
    let end_of_run = truth.config.as_ref().map_or(i64::MAX, |c| c.start_ms + (c.hours * 3_600_000.0) as i64);
    let episodes: Vec<(&str, i64, i64)> = truth
        .anomalies
        .iter()
        .map(|a| (a.asset_id.as_str(), a.start, a.end + GRACE_MS))
        .chain(truth.drifts.iter().map(|d| (d.asset_id.as_str(), d.start, end_of_run + GRACE_MS)))
        .chain(truth.degradations.iter().map(|d| (d.asset_id.as_str(), d.start, d.failure.min(end_of_run) + GRACE_MS)))
        .collect();
    let overlaps = |i: &crate::run::IncidentBrief, e: &(&str, i64, i64)| {
        i.asset_id == e.0 && i.opened_at <= e.2 && i.last_evidence_at + GRACE_MS >= e.1
    };
    let episodes_in = episodes.iter().filter(|e| stats.incidents.iter().any(|i| overlaps(i, e))).count() as u64;
    let explained = stats.incidents.iter().filter(|i| episodes.iter().any(|e| overlaps(i, e))).count() as u64;
    let incidents = stats.incidents.len() as u64;
    let asset_hours = truth.config.as_ref().map_or(0.0, |c| c.assets as f64 * c.hours);
    Score {
        anomalies_injected: truth.anomalies.len() as u64,
        anomalies_detected: detected.len() as u64,
        events_matched: matched,
        events,
        precision: if events > 0 { matched as f64 / events as f64 } else { 0.0 },
        recall: if truth.anomalies.is_empty() { 0.0 } else { detected.len() as f64 / truth.anomalies.len() as f64 },
        mean_detection_delay_s: mean_delay,
        recall_by_kind: by_kind.into_iter().map(|(k, (n, d))| (k, if n > 0 { d as f64 / n as f64 } else { 0.0 })).collect(),
        drifts_injected: truth.drifts.len() as u64,
        drifts_detected: drift_delays.len() as u64,
        mean_drift_delay_s: if drift_delays.is_empty() {
            0.0
        } else {
            drift_delays.iter().sum::<f64>() / drift_delays.len() as f64
        },
        degrading_assets: truth.degradations.len() as u64,
        degrading_assets_proposed: degrading_proposed,
        proposals_without_degradation: proposals_without,
        bad_records_injected: stats.injected_bad.clone(),
        episodes_injected: episodes.len() as u64,
        episodes_in_incidents: episodes_in,
        incident_recall: if episodes.is_empty() { 1.0 } else { episodes_in as f64 / episodes.len() as f64 },
        incidents_explained: explained,
        incident_precision: if incidents == 0 { 1.0 } else { explained as f64 / incidents as f64 },
        false_incidents_per_100_asset_hours: if asset_hours > 0.0 {
            (incidents - explained) as f64 * 100.0 / asset_hours
        } else {
            0.0
        },
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What a run says of an input the history held already.
pub fn in_history_line(h: &crate::run::InputInHistory) -> String {
    let what = h.what.clone().unwrap_or_else(|| h.input.clone());
    let counts = format!("{} readings", thousands(h.readings))
        + &if h.rejected > 0 { format!(" and {} rejected records", thousands(h.rejected)) } else { String::new() };
    match (&h.continued_from_line, &h.same_as) {
        (Some(line), _) => format!(
            "already in history: {counts} of {what} (lines 1-{}); it grew: replayed from line {line} on. Windows and \
             detectors start afresh at line {line}: the windows open at the end of the earlier run were closed by it",
            line.saturating_sub(1)
        ),
        (None, Some(first)) if h.readings == 0 && h.rejected == 0 => {
            format!("{what}: the same content as {first}, read once")
        }
        (None, Some(first)) => {
            format!("already in history: {counts} of {what} (the same content as {first}): nothing read")
        }
        (None, None) => format!("already in history: {counts} of {what}: nothing read"),
    }
}

fn list(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Vigil {} — {} worker(s), {:.2} s, {:.0} records/s",
            self.mode, self.workers, self.elapsed_s, self.records_per_s
        )?;
        for h in &self.in_history {
            writeln!(f, "{}", in_history_line(h))?;
        }
        if self.sorted_first {
            writeln!(f, "  input was not in event-time order within the lateness: replayed from a sorted copy")?;
        }
        // Incidents first: they are what a person acts on; the events below are their evidence.
        let per_hour = self.incidents_per_asset_hour.map(|r| format!("   {r:.3} per asset-hour")).unwrap_or_default();
        writeln!(
            f,
            "Incidents  {}{per_hour}   by severity: {}   suppressed (maintenance) {}",
            self.incidents,
            list(&self.incidents_by_severity),
            self.incidents_suppressed
        )?;
        writeln!(f, "Readings   in {}   accepted {}   rejected {}", self.records_in, self.accepted, self.rejected)?;
        writeln!(f, "  rejected by reason: {}", list(&self.rejected_by_reason))?;
        writeln!(f, "Windows    {}", list(&self.windows))?;
        writeln!(
            f,
            "Anomalies  {}   by detector: {}",
            self.anomalies_by_detector.values().sum::<u64>(),
            list(&self.anomalies_by_detector)
        )?;
        writeln!(f, "  by severity: {}", list(&self.anomalies_by_severity))?;
        writeln!(
            f,
            "Drift      {}   by statistic: {}",
            self.drift_by_statistic.values().sum::<u64>(),
            list(&self.drift_by_statistic)
        )?;
        writeln!(
            f,
            "Predictions {}   maintenance proposals {}   decision requests {}",
            self.predictions, self.proposals, self.decision_requests
        )?;
        if let Some(s) = &self.ground_truth {
            writeln!(f, "Against the simulator's ground truth")?;
            writeln!(
                f,
                "  incidents: {} of {} injected episodes lie in an incident (recall {:.2}); {} of {} incidents contain one (precision {:.2}); {:.2} false incidents per 100 asset-hours",
                s.episodes_in_incidents,
                s.episodes_injected,
                s.incident_recall,
                s.incidents_explained,
                self.incidents,
                s.incident_precision,
                s.false_incidents_per_100_asset_hours
            )?;
            writeln!(
                f,
                "  anomalies: precision {:.2} ({} of {} events explained), recall {:.2} ({} of {} injected), mean detection delay {:.0} s",
                s.precision, s.events_matched, s.events, s.recall, s.anomalies_detected, s.anomalies_injected, s.mean_detection_delay_s
            )?;
            let kinds: Vec<String> = s.recall_by_kind.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
            writeln!(f, "  recall by kind: {}", kinds.join(", "))?;
            writeln!(
                f,
                "  drift: {} of {} drifting sensors detected, mean delay {:.0} s",
                s.drifts_detected, s.drifts_injected, s.mean_drift_delay_s
            )?;
            writeln!(
                f,
                "  degradation: {} of {} degrading assets proposed for maintenance before failure; {} proposals for healthy assets",
                s.degrading_assets_proposed, s.degrading_assets, s.proposals_without_degradation
            )?;
            if !s.bad_records_injected.is_empty() {
                writeln!(f, "  bad records injected: {}", list(&s.bad_records_injected))?;
            }
        }
        writeln!(f, "History    {} ({} files): {}", self.data_dir, self.history_files, list(&self.history_rows))?;
        Ok(())
    }
}
