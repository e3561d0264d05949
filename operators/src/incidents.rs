//! Incidents: one asset's related anomaly and drift events grouped into one alarm.
//!
//! A detector's events are evidence; what a person is alerted to is the incident they belong
//! to. Evidence of one asset joins the open incident while it keeps coming: an incident closes
//! once no evidence arrived for the quiet gap (`quiet_gap_ms`), at the time the gap ran out.
//! Evidence of a severity up to `confirm_up_to` is a candidate until more evidence of the asset
//! follows within `confirm_within_ms` and their deviations add up to `confirm_score` (a lone low-grade blip opens nothing, and stays in the anomalies
//! table); anything more severe opens an incident at once. While the asset is in a maintenance
//! window (approved work from its planned start until it is recorded done, or for
//! `maintenance_window_ms` at most), its incidents are recorded as suppressed, not alerted. An
//! incident never spans a window's edge: the open one closes when evidence arrives on the other
//! side (an alarm that began before the work does not go on alerting during it, and one raised
//! during the work is not carried on as if it had been alerted), and that evidence starts anew.
//!
//! Input: [`Evidence`] in event-time order per asset, watermarks, the asset's predictions and
//! decision requests, and its maintenance windows. Output: [`Incident`] revisions — `open`,
//! `updated` (severity rose, another sensor or detector joined, a decision was requested),
//! `closed`. Deterministic: the close time is the last evidence plus the gap, whatever the
//! watermark's steps.
//! State per asset: the open incident (its sensors, detectors and links, each bounded), at most
//! 16 candidates, the maintenance window.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use vigil_events::{event_id, format_rfc3339_ms, EventTime, Incident, IncidentSensor, IncidentStatus, Severity, EVENT_VERSION};

/// Links kept per incident (predictions, decision requests).
const MAX_LINKS: usize = 16;
/// Unconfirmed evidence kept per asset.
const MAX_CANDIDATES: usize = 16;

/// Settings of incidents.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IncidentConfig {
    /// An incident closes once its asset gave no evidence for this long (ms).
    pub quiet_gap_ms: i64,
    /// Evidence up to this severity needs more evidence of the asset within `confirm_within_ms`
    /// to open an incident; more severe evidence opens one at once.
    pub confirm_up_to: Severity,
    /// How soon more evidence must follow to confirm a candidate (ms).
    pub confirm_within_ms: i64,
    /// Candidates confirm one another when their deviations (each in multiples of its
    /// detector's threshold) add up to this within `confirm_within_ms`: two events barely over
    /// their thresholds are not enough, one far over them with another is.
    pub confirm_score: f64,
    /// A maintenance window lasts from the work's planned start until it is recorded done, and
    /// at most this long (ms).
    pub maintenance_window_ms: i64,
}

impl Default for IncidentConfig {
    fn default() -> Self {
        IncidentConfig {
            quiet_gap_ms: 30 * 60_000,
            confirm_up_to: Severity::High,
            confirm_within_ms: 10 * 60_000,
            confirm_score: 3.0,
            maintenance_window_ms: 8 * 3_600_000,
        }
    }
}

/// Kind of evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EvidenceKind {
    /// An anomaly event.
    Anomaly,
    /// A drift event.
    Drift,
}

/// One anomaly or drift event, as an incident sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evidence {
    /// The event's id.
    pub event_id: String,
    /// Anomaly or drift.
    pub kind: EvidenceKind,
    /// Event time.
    pub ts: EventTime,
    /// Sensor (empty for asset-level detectors).
    pub sensor_id: Arc<str>,
    /// Detector name, or the drift statistic.
    pub detector: String,
    /// Severity.
    pub severity: Severity,
    /// How far from normal, in multiples of the detector's alarm threshold.
    pub deviation: f64,
    /// The value behind it.
    pub value: Option<f64>,
    /// The sensor's normal range, when known.
    pub normal: Option<(f64, f64)>,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct SensorPart {
    deviation: f64,
    value: Option<f64>,
    normal: Option<(f64, f64)>,
    detectors: BTreeSet<String>,
    events: u32,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct OpenIncident {
    incident_id: String,
    correlation_id: String,
    opened_at: EventTime,
    last_evidence_at: EventTime,
    revision: u32,
    severity: Severity,
    suppressed: bool,
    anomalies: u32,
    drifts: u32,
    sensors: BTreeMap<Arc<str>, SensorPart>,
    detectors: BTreeSet<String>,
    /// Predictions that proposed maintenance while it was open.
    proposing: Vec<String>,
    /// The latest prediction while it was open.
    latest_prediction: Option<String>,
    decision_requests: Vec<String>,
}

impl OpenIncident {
    /// Adds evidence; returns whether the incident changed in a way a person should hear of.
    fn add(&mut self, e: &Evidence, suppressed: bool) -> bool {
        let mut changed = false;
        self.last_evidence_at = self.last_evidence_at.max(e.ts);
        match e.kind {
            EvidenceKind::Anomaly => self.anomalies += 1,
            EvidenceKind::Drift => self.drifts += 1,
        }
        if e.severity > self.severity {
            self.severity = e.severity;
            changed = true;
        }
        if self.suppressed && !suppressed {
            self.suppressed = false;
            changed = true;
        }
        changed |= self.detectors.insert(e.detector.clone());
        let new_sensor = !self.sensors.contains_key(&e.sensor_id);
        let part = self.sensors.entry(e.sensor_id.clone()).or_default();
        changed |= new_sensor;
        part.events += 1;
        part.detectors.insert(e.detector.clone());
        if e.deviation > part.deviation || part.events == 1 {
            part.deviation = e.deviation;
            part.value = e.value;
            part.normal = e.normal;
        }
        changed
    }
}

/// The incidents of one asset.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct AssetIncidents {
    open: Option<OpenIncident>,
    /// Unconfirmed evidence within `confirm_within_ms` of the latest (at most [`MAX_CANDIDATES`]).
    #[serde(default)]
    candidates: Vec<Evidence>,
    /// Maintenance window: planned start, end.
    maintenance: Option<(EventTime, EventTime)>,
}

impl AssetIncidents {
    /// Whether an incident is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Whether anything waits for the watermark (an open incident or a candidate).
    pub fn is_active(&self) -> bool {
        self.open.is_some() || !self.candidates.is_empty()
    }

    fn in_maintenance(&self, ts: EventTime) -> bool {
        self.maintenance.is_some_and(|(start, end)| ts >= start && ts < end)
    }

    /// Approved work planned from `start`: the asset's alarms are suppressed from then until it
    /// is done (at most `maintenance_window_ms`).
    pub fn maintenance_planned(&mut self, cfg: &IncidentConfig, start: EventTime) {
        self.maintenance = Some((start, start.saturating_add(cfg.maintenance_window_ms)));
    }

    /// The work was recorded done at `at`: the window ends there.
    pub fn maintenance_done(&mut self, at: EventTime) {
        if let Some((start, end)) = self.maintenance {
            self.maintenance = Some((start, end.min(at.max(start))));
        }
    }

    /// Closes the open incident (and drops the candidate) when the quiet gap ran out before `t`.
    pub fn advance(&mut self, cfg: &IncidentConfig, asset: &Arc<str>, t: EventTime, out: &mut Vec<Incident>) {
        self.candidates.retain(|c| c.ts.saturating_add(cfg.confirm_within_ms) >= t);
        let expired = self.open.as_ref().is_some_and(|o| o.last_evidence_at.saturating_add(cfg.quiet_gap_ms) < t);
        if expired {
            if let Some(mut o) = self.open.take() {
                let at = o.last_evidence_at.saturating_add(cfg.quiet_gap_ms);
                o.revision += 1;
                out.push(revision(asset, &o, IncidentStatus::Closed, at, Some(at)));
            }
        }
    }

    /// Takes one piece of evidence (in event-time order for the asset).
    pub fn observe(&mut self, cfg: &IncidentConfig, asset: &Arc<str>, e: Evidence, out: &mut Vec<Incident>) {
        self.advance(cfg, asset, e.ts, out);
        let suppressed = self.in_maintenance(e.ts);
        if self.open.as_ref().is_some_and(|o| o.suppressed != suppressed) {
            if let Some(mut o) = self.open.take() {
                o.revision += 1;
                let at = e.ts.max(o.last_evidence_at);
                out.push(revision(asset, &o, IncidentStatus::Closed, at, Some(at)));
            }
        }
        if let Some(o) = self.open.as_mut() {
            if o.add(&e, suppressed) {
                o.revision += 1;
                out.push(revision(asset, o, IncidentStatus::Updated, e.ts, None));
            }
            return;
        }
        if e.severity <= cfg.confirm_up_to {
            let score: f64 = self.candidates.iter().map(|c| c.deviation).sum::<f64>() + e.deviation;
            if self.candidates.is_empty() || score < cfg.confirm_score {
                if self.candidates.len() >= MAX_CANDIDATES {
                    self.candidates.remove(0);
                }
                self.candidates.push(e);
                return;
            }
        }
        let mut evidence = std::mem::take(&mut self.candidates);
        evidence.push(e.clone());
        let first = evidence.remove(0);
        let mut o = OpenIncident {
            incident_id: event_id("incident", &[asset], first.ts),
            correlation_id: first.event_id.clone(),
            opened_at: first.ts,
            last_evidence_at: first.ts,
            revision: 1,
            severity: first.severity,
            suppressed: self.in_maintenance(first.ts),
            anomalies: 0,
            drifts: 0,
            sensors: BTreeMap::new(),
            detectors: BTreeSet::new(),
            proposing: Vec::new(),
            latest_prediction: None,
            decision_requests: Vec::new(),
        };
        o.add(&first, o.suppressed);
        for c in &evidence {
            o.add(c, self.in_maintenance(c.ts));
        }
        out.push(revision(asset, &o, IncidentStatus::Open, e.ts, None));
        self.open = Some(o);
    }

    /// A prediction of the asset (`proposed`: it proposed maintenance).
    pub fn prediction(&mut self, id: &str, proposed: bool) {
        if let Some(o) = self.open.as_mut() {
            o.latest_prediction = Some(id.to_string());
            if proposed && o.proposing.len() < MAX_LINKS {
                o.proposing.push(id.to_string());
            }
        }
    }

    /// A decision request about the asset at `ts`: linked to the open incident, which is updated.
    pub fn decision_requested(&mut self, asset: &Arc<str>, id: &str, ts: EventTime, out: &mut Vec<Incident>) {
        if let Some(o) = self.open.as_mut() {
            if o.decision_requests.len() < MAX_LINKS {
                o.decision_requests.push(id.to_string());
                o.revision += 1;
                out.push(revision(asset, o, IncidentStatus::Updated, ts.max(o.last_evidence_at), None));
            }
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn revision(asset: &Arc<str>, o: &OpenIncident, status: IncidentStatus, ts: EventTime, closed_at: Option<EventTime>) -> Incident {
    let mut sensors: Vec<IncidentSensor> = o
        .sensors
        .iter()
        .map(|(id, p)| IncidentSensor {
            sensor_id: id.to_string(),
            deviation: round2(p.deviation),
            value: p.value,
            normal_low: p.normal.map(|n| n.0),
            normal_high: p.normal.map(|n| n.1),
            detectors: p.detectors.iter().cloned().collect(),
            events: p.events,
        })
        .collect();
    // The furthest from normal first; ties by name, so the order is deterministic.
    sensors.sort_by(|a, b| b.deviation.total_cmp(&a.deviation).then_with(|| a.sensor_id.cmp(&b.sensor_id)));
    let mut predictions = o.proposing.clone();
    if let Some(p) = &o.latest_prediction {
        if !predictions.contains(p) {
            predictions.push(p.clone());
        }
    }
    let summary = summary(asset, o, &sensors, status, closed_at);
    Incident {
        event_id: event_id("incident-revision", &[&o.incident_id, &o.revision.to_string()], ts),
        correlation_id: o.correlation_id.clone(),
        event_version: EVENT_VERSION,
        incident_id: o.incident_id.clone(),
        revision: o.revision,
        asset_id: asset.clone(),
        status,
        opened_at: o.opened_at,
        ts,
        last_evidence_at: o.last_evidence_at,
        severity: o.severity,
        suppressed: o.suppressed,
        anomalies: o.anomalies,
        drifts: o.drifts,
        sensors,
        detectors: o.detectors.iter().cloned().collect(),
        predictions,
        decision_requests: o.decision_requests.clone(),
        summary,
    }
}

fn summary(
    asset: &str,
    o: &OpenIncident,
    sensors: &[IncidentSensor],
    status: IncidentStatus,
    closed_at: Option<EventTime>,
) -> String {
    let mut s = format!("{} on {asset}: ", o.severity.as_str());
    let mut parts = Vec::new();
    if o.anomalies > 0 {
        parts.push(format!("{} anomal{}", o.anomalies, if o.anomalies == 1 { "y" } else { "ies" }));
    }
    if o.drifts > 0 {
        parts.push(format!("{} drift event{}", o.drifts, if o.drifts == 1 { "" } else { "s" }));
    }
    s.push_str(&parts.join(" and "));
    let named = sensors.iter().filter(|x| !x.sensor_id.is_empty()).count();
    if named > 0 {
        s.push_str(&format!(" on {named} sensor{}", if named == 1 { "" } else { "s" }));
    }
    if let Some(top) = sensors.first() {
        let who = if top.sensor_id.is_empty() { "the sensors together (multivariate)" } else { top.sensor_id.as_str() };
        s.push_str(&format!("; furthest from normal: {who}"));
        if let Some(v) = top.value {
            s.push_str(&format!(" at {v:.3}"));
            if let (Some(lo), Some(hi)) = (top.normal_low, top.normal_high) {
                s.push_str(&format!(" (normal {lo:.3} to {hi:.3})"));
            }
        }
    }
    s.push_str(&format!("; since {}", format_rfc3339_ms(o.opened_at)));
    if status == IncidentStatus::Closed {
        if let Some(c) = closed_at {
            s.push_str(&format!(", closed {}", format_rfc3339_ms(c)));
        }
    }
    if o.suppressed {
        s.push_str(" (suppressed: maintenance window)");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, ts: EventTime, sensor: &str, detector: &str, severity: Severity, deviation: f64) -> Evidence {
        Evidence {
            event_id: id.into(),
            kind: if detector == "page_hinkley" { EvidenceKind::Drift } else { EvidenceKind::Anomaly },
            ts,
            sensor_id: Arc::from(sensor),
            detector: detector.into(),
            severity,
            deviation,
            value: Some(deviation * 10.0),
            normal: Some((0.0, 5.0)),
        }
    }

    const MIN: i64 = 60_000;

    #[test]
    fn related_evidence_is_one_incident_that_closes_after_the_quiet_gap() {
        let cfg = IncidentConfig::default();
        let asset: Arc<str> = Arc::from("a1");
        let mut inc = AssetIncidents::default();
        let mut out = Vec::new();
        inc.observe(&cfg, &asset, ev("e1", 10 * MIN, "s1", "hard_limit", Severity::Critical, 1.2), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].status, IncidentStatus::Open);
        // Same sensor and detector, same severity: no new revision.
        inc.observe(&cfg, &asset, ev("e2", 12 * MIN, "s1", "hard_limit", Severity::Critical, 1.5), &mut out);
        assert_eq!(out.len(), 1);
        // Another sensor joins: updated, and it is ranked by its deviation.
        inc.observe(&cfg, &asset, ev("e3", 20 * MIN, "s2", "robust_zscore", Severity::Medium, 3.0), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].status, IncidentStatus::Updated);
        assert_eq!(out[1].sensors[0].sensor_id, "s2");
        assert_eq!(out[1].sensors[1].deviation, 1.5);
        assert_eq!(out[1].anomalies, 3);
        // Not closed while the gap runs.
        inc.advance(&cfg, &asset, 49 * MIN, &mut out);
        assert_eq!(out.len(), 2);
        inc.advance(&cfg, &asset, 51 * MIN, &mut out);
        assert_eq!(out.len(), 3);
        let closed = &out[2];
        assert_eq!((closed.status, closed.ts), (IncidentStatus::Closed, 50 * MIN));
        assert_eq!(closed.incident_id, out[0].incident_id);
        assert_eq!(closed.revision, 3);
        assert_eq!(closed.detectors, vec!["hard_limit".to_string(), "robust_zscore".to_string()]);
        // Later evidence opens a new incident.
        inc.observe(&cfg, &asset, ev("e4", 90 * MIN, "s1", "hard_limit", Severity::Critical, 2.0), &mut out);
        assert_eq!(out[3].status, IncidentStatus::Open);
        assert_ne!(out[3].incident_id, out[0].incident_id);
    }

    #[test]
    fn a_lone_low_grade_blip_opens_nothing_and_a_second_confirms_it() {
        let cfg = IncidentConfig::default();
        let asset: Arc<str> = Arc::from("a1");
        let mut inc = AssetIncidents::default();
        let mut out = Vec::new();
        inc.observe(&cfg, &asset, ev("e1", 10 * MIN, "s1", "robust_zscore", Severity::Low, 1.0), &mut out);
        inc.advance(&cfg, &asset, 60 * MIN, &mut out);
        assert!(out.is_empty() && !inc.is_active());
        inc.observe(&cfg, &asset, ev("e2", 70 * MIN, "s1", "robust_zscore", Severity::Medium, 1.1), &mut out);
        assert!(out.is_empty());
        // Two events barely over their thresholds do not confirm each other.
        inc.observe(&cfg, &asset, ev("e3", 72 * MIN, "s2", "novelty", Severity::Low, 1.1), &mut out);
        assert!(out.is_empty());
        inc.observe(&cfg, &asset, ev("e4", 75 * MIN, "s3", "novelty", Severity::Low, 1.0), &mut out);
        assert_eq!(out.len(), 1);
        // Opened at the first of the two, both counted.
        assert_eq!((out[0].opened_at, out[0].anomalies, out[0].correlation_id.as_str()), (70 * MIN, 3, "e2"));
    }

    #[test]
    fn alarms_in_a_maintenance_window_are_recorded_as_suppressed() {
        let cfg = IncidentConfig::default();
        let asset: Arc<str> = Arc::from("a1");
        let mut inc = AssetIncidents::default();
        let mut out = Vec::new();
        inc.maintenance_planned(&cfg, 100 * MIN);
        inc.maintenance_done(130 * MIN);
        inc.observe(&cfg, &asset, ev("e1", 120 * MIN, "s1", "hard_limit", Severity::Critical, 1.2), &mut out);
        assert!(out[0].suppressed && out[0].summary.contains("suppressed"));
        // Evidence after the work is done closes the suppressed incident and opens one a person
        // hears of.
        inc.observe(&cfg, &asset, ev("e2", 140 * MIN, "s1", "hard_limit", Severity::Critical, 1.3), &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!((out[1].status, out[1].suppressed, out[1].anomalies), (IncidentStatus::Closed, true, 1));
        assert_eq!((out[2].status, out[2].suppressed, out[2].anomalies), (IncidentStatus::Open, false, 1));
        assert_ne!(out[1].incident_id, out[2].incident_id);
    }

    #[test]
    fn an_incident_open_when_the_work_starts_closes_and_what_follows_is_suppressed() {
        let cfg = IncidentConfig::default();
        let asset: Arc<str> = Arc::from("a1");
        let mut inc = AssetIncidents::default();
        let mut out = Vec::new();
        inc.observe(&cfg, &asset, ev("e1", 90 * MIN, "s1", "hard_limit", Severity::Critical, 1.2), &mut out);
        inc.maintenance_planned(&cfg, 100 * MIN);
        inc.observe(&cfg, &asset, ev("e2", 95 * MIN, "s1", "hard_limit", Severity::Critical, 1.3), &mut out);
        assert_eq!((out.len(), out[0].suppressed), (1, false), "before the window: the same incident, unchanged");
        inc.observe(&cfg, &asset, ev("e3", 105 * MIN, "s2", "hard_limit", Severity::Critical, 2.0), &mut out);
        assert_eq!(out.len(), 3, "{out:#?}");
        assert_eq!(
            (out[1].status, out[1].suppressed, out[1].anomalies, out[1].ts),
            (IncidentStatus::Closed, false, 2, 105 * MIN)
        );
        assert_eq!((out[2].status, out[2].suppressed, out[2].anomalies), (IncidentStatus::Open, true, 1));
        // Nothing during the window alerts: every revision after the close is suppressed.
        inc.observe(&cfg, &asset, ev("e4", 110 * MIN, "s3", "hard_limit", Severity::Critical, 3.0), &mut out);
        assert!(out[2..].iter().all(|i| i.suppressed), "{out:#?}");
    }

    #[test]
    fn decision_requests_link_to_the_open_incident() {
        let cfg = IncidentConfig::default();
        let asset: Arc<str> = Arc::from("a1");
        let mut inc = AssetIncidents::default();
        let mut out = Vec::new();
        inc.decision_requested(&asset, "req-0", 5 * MIN, &mut out);
        assert!(out.is_empty());
        inc.observe(&cfg, &asset, ev("e1", 10 * MIN, "s1", "hard_limit", Severity::Critical, 1.2), &mut out);
        inc.prediction("pred-1", false);
        inc.prediction("pred-2", true);
        inc.prediction("pred-3", false);
        inc.decision_requested(&asset, "req-1", 11 * MIN, &mut out);
        let last = out.last().unwrap();
        assert_eq!(last.decision_requests, vec!["req-1".to_string()]);
        assert_eq!(last.predictions, vec!["pred-2".to_string(), "pred-3".to_string()]);
    }

    #[test]
    fn the_close_time_does_not_depend_on_the_watermark_steps() {
        let cfg = IncidentConfig::default();
        let asset: Arc<str> = Arc::from("a1");
        let run = |steps: &[i64]| {
            let mut inc = AssetIncidents::default();
            let mut out = Vec::new();
            inc.observe(&cfg, &asset, ev("e1", 10 * MIN, "s1", "hard_limit", Severity::Critical, 1.2), &mut out);
            for t in steps {
                inc.advance(&cfg, &asset, *t, &mut out);
            }
            out
        };
        assert_eq!(run(&[20 * MIN, 41 * MIN, 300 * MIN]), run(&[i64::MAX]));
    }
}
