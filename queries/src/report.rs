//! The maintenance report of one asset, or of the fleet, for a period: what a planner reads.
//!
//! Sections: a summary; anomalies by detector and severity (and by asset for the fleet); the
//! most severe anomalies; drift events; how predictions evolved (first, last, worst, and for an
//! asset the series); proposals with their status changes and the decisions on them;
//! maintenance done; reliability (MTBF and availability); charts of the key sensors (the ones
//! with the most anomalies) with their anomalies marked.
//!
//! Reliability ([`Definitions`], stated in every format beside the figures): a failure is a
//! completed corrective maintenance record — anomalies are evidence, not failures, and are
//! never counted as such; downtime is the time maintenance records (of either kind) had the
//! asset out of service, from `started_at` to completion, within the period; up time = period −
//! downtime; MTBF = up time / failures, and with no failure there is no MTBF ("no failures in
//! the period"); availability = up time / period.
//!
//! Input: a [`History`], a [`ReportRequest`]. Output: a [`Report`] (serde), rendered as JSON,
//! CSV (one row per figure: section, asset, item, metric, value) or one self-contained HTML
//! page with inline SVG charts. State: none.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use datafusion::scalar::ScalarValue;
use serde::{Deserialize, Serialize};

use crate::canned::{text, ts, AnomalyRow, Columns, DriftRow, EventFilter, PredictionRow, SeriesPoint};
use crate::{History, QueryError};

/// What the reliability figures mean, as the report states them.
pub const FAILURE_DEFINITION: &str =
    "a completed corrective maintenance record (the asset failed and was repaired); anomalies are evidence, not failures";
/// See [`FAILURE_DEFINITION`].
pub const DOWNTIME_DEFINITION: &str =
    "time the asset was out of service for maintenance (either kind), from the work's start to its completion, within the period";
/// See [`FAILURE_DEFINITION`].
pub const MTBF_DEFINITION: &str =
    "mean time between failures: up time (period − downtime) / failures; with no failure in the period there is none";
/// See [`FAILURE_DEFINITION`].
pub const AVAILABILITY_DEFINITION: &str = "up time (period − downtime) / period";
/// The MTBF of a period without failures.
pub const NO_FAILURES: &str = "no failures in the period";
/// Sensors charted at most.
const CHARTS: usize = 6;
/// Points per chart at most.
const CHART_POINTS: usize = 400;
/// Anomalies listed at most.
const TOP_ANOMALIES: usize = 50;

/// `YYYY-MM-DD` of a time (ms).
pub fn date_of(ms: i64) -> String {
    vigil_events::format_rfc3339_ms(ms)[..10].to_string()
}

fn time_of(ms: i64) -> String {
    let s = vigil_events::format_rfc3339_ms(ms);
    let s = s.trim_end_matches('Z').trim_end_matches(".000").replacen('T', " ", 1);
    // Whole minutes without seconds.
    s.strip_suffix(":00").filter(|_| ms % 60_000 == 0).map_or(s.clone(), str::to_string)
}

/// What the report covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportRequest {
    /// One asset, or the whole fleet when `None`.
    pub asset_id: Option<String>,
    /// Start (ms, inclusive).
    pub from: i64,
    /// End (ms, exclusive).
    pub to: i64,
}

/// Report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    /// The [`Report`] as JSON.
    Json,
    /// One row per figure.
    Csv,
    /// One self-contained page.
    Html,
}

impl std::str::FromStr for ReportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(ReportFormat::Json),
            "csv" => Ok(ReportFormat::Csv),
            "html" => Ok(ReportFormat::Html),
            other => Err(format!("unknown report format {other:?} (json, csv or html)")),
        }
    }
}

/// Counts of the period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportSummary {
    /// Assets covered.
    pub assets: u64,
    /// Anomalies.
    pub anomalies: u64,
    /// Critical anomalies.
    pub critical_anomalies: u64,
    /// Drift events.
    pub drift_events: u64,
    /// Predictions.
    pub predictions: u64,
    /// Proposals made or changed.
    pub proposals: u64,
    /// Decisions taken.
    pub decisions: u64,
    /// Maintenance done.
    pub maintenance: u64,
}

/// Anomalies of one detector and severity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyCount {
    /// Detector.
    pub detector: String,
    /// Severity.
    pub severity: String,
    /// Anomalies.
    pub count: u64,
}

/// Anomalies of one asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetAnomalies {
    /// Asset.
    pub asset_id: String,
    /// Anomalies.
    pub count: u64,
    /// Critical ones.
    pub critical: u64,
}

/// A prediction's figures at one time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionPoint {
    /// Time (ms).
    pub ts: i64,
    /// Health.
    pub health: f64,
    /// Failure probability.
    pub failure_probability: f64,
    /// Remaining useful life, hours.
    pub rul_hours: Option<f64>,
}

/// How an asset's predictions evolved over the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionTrend {
    /// Asset.
    pub asset_id: String,
    /// Predictions in the period.
    pub count: u64,
    /// The first.
    pub first: PredictionPoint,
    /// The last.
    pub last: PredictionPoint,
    /// Least health.
    pub min_health: f64,
    /// Greatest failure probability.
    pub max_failure_probability: f64,
    /// Least remaining useful life, hours.
    pub min_rul_hours: Option<f64>,
    /// The series (downsampled), for one asset's report.
    pub series: Vec<PredictionPoint>,
}

/// A decision on a proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRow {
    /// Proposal.
    pub proposal_id: String,
    /// approve, reject or defer.
    pub decision: String,
    /// Who.
    pub decided_by: String,
    /// Why.
    pub comment: Option<String>,
    /// When (ms).
    pub ts: i64,
}

/// A proposal and what happened to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposalSummary {
    /// Proposal.
    pub proposal_id: String,
    /// Asset.
    pub asset_id: String,
    /// First seen (ms).
    pub proposed_at: i64,
    /// Latest status.
    pub status: String,
    /// Planned for (ms).
    pub scheduled_for: i64,
    /// Priority.
    pub priority: String,
    /// Reason.
    pub reason: String,
    /// Whether a person must decide.
    pub requires_decision: bool,
    /// Status changes (ms, status), in order.
    pub changes: Vec<(i64, String)>,
    /// Decisions, in order.
    pub decisions: Vec<DecisionRow>,
}

/// Maintenance done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceRow {
    /// Asset.
    pub asset_id: String,
    /// Proposal carried out.
    pub proposal_id: Option<String>,
    /// preventive or corrective.
    pub kind: String,
    /// Out of service from (ms).
    pub started_at: i64,
    /// Back in service (ms).
    pub ts: i64,
    /// Who.
    pub performed_by: String,
    /// What.
    pub notes: Option<String>,
}

/// MTBF and availability of an asset (or the fleet) over the period ([`Definitions`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reliability {
    /// Asset, or `fleet`.
    pub asset_id: String,
    /// Failures: completed corrective maintenance records.
    pub failures: u64,
    /// Hours out of service.
    pub downtime_hours: f64,
    /// Hours in service.
    pub uptime_hours: f64,
    /// Mean time between failures, hours (`None` with no failure in the period).
    pub mtbf_hours: Option<f64>,
    /// The MTBF for a person: hours, or "no failures in the period".
    pub mtbf: String,
    /// Up time / period.
    pub availability: f64,
}

/// What the reliability figures mean; every format states them beside the figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Definitions {
    /// What counts as a failure.
    pub failure: String,
    /// What downtime is.
    pub downtime: String,
    /// How MTBF is computed.
    pub mtbf: String,
    /// How availability is computed.
    pub availability: String,
}

impl Default for Definitions {
    fn default() -> Self {
        Definitions {
            failure: FAILURE_DEFINITION.into(),
            downtime: DOWNTIME_DEFINITION.into(),
            mtbf: MTBF_DEFINITION.into(),
            availability: AVAILABILITY_DEFINITION.into(),
        }
    }
}

impl Definitions {
    /// `(term, definition)` in reading order.
    pub fn terms(&self) -> [(&'static str, &str); 4] {
        [
            ("failure", self.failure.as_str()),
            ("downtime", self.downtime.as_str()),
            ("MTBF", self.mtbf.as_str()),
            ("availability", self.availability.as_str()),
        ]
    }
}

/// The MTBF of `up_hours` with `failures`: hours, or none without a failure.
fn mtbf_of(up_hours: f64, failures: u64) -> (Option<f64>, String) {
    if failures == 0 {
        (None, NO_FAILURES.into())
    } else {
        let h = up_hours / failures as f64;
        (Some(h), format!("{h:.1} h"))
    }
}

/// A chart of one sensor with its anomalies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorChart {
    /// Sensor.
    pub sensor_id: String,
    /// Asset.
    pub asset_id: String,
    /// Anomalies of the sensor in the period.
    pub anomaly_count: u64,
    /// Bucket width (ms) when downsampled.
    pub bucket_ms: Option<i64>,
    /// Readings (downsampled).
    pub points: Vec<SeriesPoint>,
    /// Anomalies: time (ms), severity, detector.
    pub anomalies: Vec<(i64, String, String)>,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Title.
    pub title: String,
    /// The asset, or `None` for the fleet.
    pub asset_id: Option<String>,
    /// Start (ms).
    pub from: i64,
    /// End (ms).
    pub to: i64,
    /// Wall-clock time it was made (ms).
    pub generated_at: i64,
    /// Counts.
    pub summary: ReportSummary,
    /// Anomalies by detector and severity.
    pub anomalies_by_detector: Vec<AnomalyCount>,
    /// Anomalies by asset (most first).
    pub anomalies_by_asset: Vec<AssetAnomalies>,
    /// The most severe anomalies.
    pub top_anomalies: Vec<AnomalyRow>,
    /// Drift events.
    pub drift: Vec<DriftRow>,
    /// Predictions per asset.
    pub predictions: Vec<PredictionTrend>,
    /// Proposals and decisions.
    pub proposals: Vec<ProposalSummary>,
    /// Maintenance done.
    pub maintenance: Vec<MaintenanceRow>,
    /// Reliability: the fleet's first (for a fleet report), then per asset, least available first.
    pub reliability: Vec<Reliability>,
    /// What the reliability figures mean.
    #[serde(default)]
    pub definitions: Definitions,
    /// Key sensors.
    pub charts: Vec<SensorChart>,
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "critical" => 0,
        "high" => 1,
        "medium" => 2,
        "low" => 3,
        _ => 4,
    }
}

/// Period clause and parameters, optionally with the asset: `$1`=from, `$2`=to, `$3`=asset.
fn scope(req: &ReportRequest) -> (String, Vec<ScalarValue>) {
    let mut params = vec![ts(req.from), ts(req.to)];
    let mut wh = "ts >= $1 AND ts < $2".to_string();
    if let Some(a) = &req.asset_id {
        params.push(text(a));
        wh.push_str(" AND asset_id = $3");
    }
    (wh, params)
}

impl History {
    /// The period of a report when `from` or `to` is not given: up to just after the newest
    /// event (rounded up to a minute), from a week before that or the start of the history if
    /// it is shorter. `None` when the history is empty and a bound is missing.
    pub async fn report_period(&self, from: Option<i64>, to: Option<i64>) -> Result<Option<(i64, i64)>, QueryError> {
        const MINUTE: i64 = 60_000;
        let to = match to {
            Some(t) => t,
            None => {
                let newest = [self.newest("readings").await?, self.newest("anomalies").await?, self.newest("predictions").await?];
                match newest.into_iter().flatten().max() {
                    Some(t) => (t.div_euclid(MINUTE) + 1) * MINUTE,
                    None => return Ok(None),
                }
            }
        };
        let from = match from {
            Some(f) => f,
            None => {
                let oldest = self.oldest("readings").await?.unwrap_or(to);
                to.saturating_sub(7 * 24 * 3_600_000).max(oldest.div_euclid(MINUTE) * MINUTE)
            }
        };
        Ok(Some((from, to)))
    }

    /// Builds the report of `req`.
    pub async fn report(&self, req: &ReportRequest) -> Result<Report, QueryError> {
        if req.to <= req.from {
            return Err(QueryError::Invalid("the report period must end after it starts".into()));
        }
        if req.asset_id.as_deref().is_some_and(str::is_empty) {
            return Err(QueryError::Invalid("the asset id is empty".into()));
        }
        if let Some(asset) = &req.asset_id {
            // An asset the history never saw is a mistake, not a perfect record.
            self.require_asset(asset).await?;
        }
        let (wh, params) = scope(req);
        let all = usize::MAX;

        // Every query of the report at once (they are independent); reliability, which needs
        // their assets and maintenance, after.
        let by_detector_sql = format!("SELECT detector, severity, count(*) AS n FROM anomalies WHERE {wh} GROUP BY 1, 2");
        let by_asset_sql = format!(
            "SELECT asset_id, count(*) AS n, sum(CASE WHEN severity = 'critical' THEN 1 ELSE 0 END) AS critical \
             FROM anomalies WHERE {wh} GROUP BY 1 ORDER BY n DESC, asset_id"
        );
        // The most severe anomalies: by severity, then score.
        let top_sql = format!(
            "SELECT event_id FROM anomalies WHERE {wh} ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 \
             WHEN 'medium' THEN 2 ELSE 3 END, score DESC, ts, event_id LIMIT {TOP_ANOMALIES}"
        );
        let filter =
            EventFilter { asset_id: req.asset_id.clone(), from: Some(req.from), to: Some(req.to), ..EventFilter::default() };
        let drift_filter = EventFilter { limit: 500, ..filter.clone() };
        let ((by_detector, by_asset_rows, top, all_anomalies, drift), (preds, proposals, maintenance, charts)) =
            futures::future::try_join(
                futures::future::try_join5(
                    self.query(&by_detector_sql, params.clone(), all),
                    self.query(&by_asset_sql, params.clone(), all),
                    self.query(&top_sql, params.clone(), TOP_ANOMALIES),
                    self.anomalies(&filter),
                    self.drift(&drift_filter),
                ),
                futures::future::try_join4(
                    self.predictions(&filter),
                    self.proposals(&wh, &params),
                    self.maintenance_rows(&wh, &params),
                    self.charts(req, &wh, &params),
                ),
            )
            .await?;

        // Anomalies by detector and severity, and by asset.
        let c = Columns::new(&by_detector)?;
        let mut anomalies_by_detector: Vec<AnomalyCount> = c
            .text("detector")?
            .into_iter()
            .zip(c.text("severity")?)
            .zip(c.int("n")?)
            .map(|((d, s), n)| AnomalyCount {
                detector: d.unwrap_or_default(),
                severity: s.unwrap_or_default(),
                count: n.unwrap_or(0) as u64,
            })
            .collect();
        anomalies_by_detector
            .sort_by(|a, b| (&a.detector, severity_rank(&a.severity)).cmp(&(&b.detector, severity_rank(&b.severity))));
        let c = Columns::new(&by_asset_rows)?;
        let anomalies_by_asset: Vec<AssetAnomalies> = c
            .text("asset_id")?
            .into_iter()
            .zip(c.int("n")?)
            .zip(c.int("critical")?)
            .map(|((a, n), k)| AssetAnomalies {
                asset_id: a.unwrap_or_default(),
                count: n.unwrap_or(0) as u64,
                critical: k.unwrap_or(0) as u64,
            })
            .collect();

        let top_ids: Vec<String> = Columns::new(&top)?.text("event_id")?.into_iter().flatten().collect();
        let mut top_anomalies = Vec::new();
        if !top_ids.is_empty() {
            // Same filter, newest first; keep the top ones in severity order.
            let mut rows: BTreeMap<String, AnomalyRow> = all_anomalies.into_iter().map(|a| (a.event_id.clone(), a)).collect();
            for id in &top_ids {
                if let Some(a) = rows.remove(id) {
                    top_anomalies.push(a);
                }
            }
        }

        // Predictions: per asset, first, last, worst; the series for one asset.
        let mut preds = preds;
        preds.reverse(); // oldest first
        let mut by_asset: BTreeMap<String, Vec<PredictionRow>> = BTreeMap::new();
        for p in preds {
            by_asset.entry(p.asset_id.clone()).or_default().push(p);
        }
        let point = |p: &PredictionRow| PredictionPoint {
            ts: p.ts,
            health: p.health,
            failure_probability: p.failure_probability,
            rul_hours: p.rul_hours,
        };
        let mut predictions = Vec::new();
        let mut prediction_count = 0u64;
        for (asset, rows) in &by_asset {
            let (Some(first), Some(last)) = (rows.first(), rows.last()) else { continue };
            prediction_count += rows.len() as u64;
            let step = rows.len().div_ceil(300).max(1);
            predictions.push(PredictionTrend {
                asset_id: asset.clone(),
                count: rows.len() as u64,
                first: point(first),
                last: point(last),
                min_health: rows.iter().map(|p| p.health).fold(f64::INFINITY, f64::min),
                max_failure_probability: rows.iter().map(|p| p.failure_probability).fold(f64::NEG_INFINITY, f64::max),
                min_rul_hours: rows.iter().filter_map(|p| p.rul_hours).reduce(f64::min),
                series: if req.asset_id.is_some() { rows.iter().step_by(step).map(point).collect() } else { vec![] },
            });
        }
        // Worst first.
        predictions.sort_by(|a, b| {
            a.min_health.partial_cmp(&b.min_health).unwrap_or(std::cmp::Ordering::Equal).then(a.asset_id.cmp(&b.asset_id))
        });

        let decisions: u64 = proposals.iter().map(|p| p.decisions.len() as u64).sum();

        // Assets covered: those with predictions, anomalies, proposals or maintenance.
        let mut assets: Vec<String> = by_asset.keys().cloned().collect();
        assets.extend(anomalies_by_asset.iter().map(|a| a.asset_id.clone()));
        assets.extend(proposals.iter().map(|p| p.asset_id.clone()));
        assets.extend(maintenance.iter().map(|m| m.asset_id.clone()));
        if let Some(a) = &req.asset_id {
            assets.push(a.clone());
        }
        assets.sort();
        assets.dedup();

        let reliability = self.reliability(req, &assets, &maintenance).await?;

        let summary = ReportSummary {
            assets: assets.len() as u64,
            anomalies: anomalies_by_detector.iter().map(|a| a.count).sum(),
            critical_anomalies: anomalies_by_detector.iter().filter(|a| a.severity == "critical").map(|a| a.count).sum(),
            drift_events: drift.len() as u64,
            predictions: prediction_count,
            proposals: proposals.len() as u64,
            decisions,
            maintenance: maintenance.len() as u64,
        };
        let title = match &req.asset_id {
            Some(a) => format!("Maintenance report: asset {a}"),
            None => "Maintenance report: fleet".to_string(),
        };
        let generated_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        Ok(Report {
            title,
            asset_id: req.asset_id.clone(),
            from: req.from,
            to: req.to,
            generated_at,
            summary,
            anomalies_by_detector,
            anomalies_by_asset,
            top_anomalies,
            drift,
            predictions,
            proposals,
            maintenance,
            reliability,
            definitions: Definitions::default(),
            charts,
        })
    }

    async fn proposals(&self, wh: &str, params: &[ScalarValue]) -> Result<Vec<ProposalSummary>, QueryError> {
        let r = self
            .query(
                &format!(
                    "SELECT proposal_id, asset_id, status, ts, scheduled_for, priority, reason, requires_decision FROM schedule \
                     WHERE {wh} ORDER BY proposal_id, ts, event_id"
                ),
                params.to_vec(),
                usize::MAX,
            )
            .await?;
        let c = Columns::new(&r)?;
        let (id, asset, status, t, sf) =
            (c.text("proposal_id")?, c.text("asset_id")?, c.text("status")?, c.int("ts")?, c.int("scheduled_for")?);
        let (prio, reason, rd) = (c.text("priority")?, c.text("reason")?, c.bool("requires_decision")?);
        let mut out: Vec<ProposalSummary> = Vec::new();
        for i in 0..c.len() {
            let pid = id[i].clone().unwrap_or_default();
            let st = status[i].clone().unwrap_or_default();
            let at = t[i].unwrap_or(0);
            match out.last_mut() {
                Some(p) if p.proposal_id == pid => {
                    p.status = st.clone();
                    p.scheduled_for = sf[i].unwrap_or(p.scheduled_for);
                    p.changes.push((at, st));
                }
                _ => out.push(ProposalSummary {
                    proposal_id: pid,
                    asset_id: asset[i].clone().unwrap_or_default(),
                    proposed_at: at,
                    status: st.clone(),
                    scheduled_for: sf[i].unwrap_or(0),
                    priority: prio[i].clone().unwrap_or_default(),
                    reason: reason[i].clone().unwrap_or_default(),
                    requires_decision: rd[i].unwrap_or(false),
                    changes: vec![(at, st)],
                    decisions: vec![],
                }),
            }
        }
        let r = self
            .query(
                &format!("SELECT proposal_id, decision, decided_by, comment, ts FROM decisions WHERE {wh} ORDER BY ts, event_id"),
                params.to_vec(),
                usize::MAX,
            )
            .await?;
        let c = Columns::new(&r)?;
        let (pid, d, by, comment, t) =
            (c.text("proposal_id")?, c.text("decision")?, c.text("decided_by")?, c.text("comment")?, c.int("ts")?);
        for i in 0..c.len() {
            let row = DecisionRow {
                proposal_id: pid[i].clone().unwrap_or_default(),
                decision: d[i].clone().unwrap_or_default(),
                decided_by: by[i].clone().unwrap_or_default(),
                comment: comment[i].clone(),
                ts: t[i].unwrap_or(0),
            };
            if let Some(p) = out.iter_mut().find(|p| p.proposal_id == row.proposal_id) {
                p.decisions.push(row);
            }
        }
        out.sort_by(|a, b| (a.proposed_at, &a.proposal_id).cmp(&(b.proposed_at, &b.proposal_id)));
        Ok(out)
    }

    async fn maintenance_rows(&self, wh: &str, params: &[ScalarValue]) -> Result<Vec<MaintenanceRow>, QueryError> {
        let r = self
            .query(
                &format!(
                    "SELECT asset_id, proposal_id, kind, started_at, ts, performed_by, notes FROM maintenance WHERE {wh} \
                     ORDER BY ts, event_id"
                ),
                params.to_vec(),
                usize::MAX,
            )
            .await?;
        let c = Columns::new(&r)?;
        let (a, p, k, s, t, by, n) = (
            c.text("asset_id")?,
            c.text("proposal_id")?,
            c.text("kind")?,
            c.int("started_at")?,
            c.int("ts")?,
            c.text("performed_by")?,
            c.text("notes")?,
        );
        Ok((0..c.len())
            .map(|i| MaintenanceRow {
                asset_id: a[i].clone().unwrap_or_default(),
                proposal_id: p[i].clone(),
                kind: k[i].clone().unwrap_or_default(),
                started_at: s[i].unwrap_or(0),
                ts: t[i].unwrap_or(0),
                performed_by: by[i].clone().unwrap_or_default(),
                notes: n[i].clone(),
            })
            .collect())
    }

    async fn reliability(
        &self,
        req: &ReportRequest,
        assets: &[String],
        maintenance: &[MaintenanceRow],
    ) -> Result<Vec<Reliability>, QueryError> {
        let period_h = req.to.saturating_sub(req.from) as f64 / 3_600_000.0;
        let clip = |t: i64| t.clamp(req.from, req.to);
        let mut out = Vec::new();
        let (mut fleet_failures, mut fleet_down) = (0u64, 0.0f64);
        for asset in assets {
            let records: Vec<&MaintenanceRow> = maintenance.iter().filter(|m| &m.asset_id == asset).collect();
            // Failures are failures: completed corrective work, never anomalies.
            let failures = records.iter().filter(|m| m.kind == "corrective").count() as u64;
            let down_ms: i64 = records.iter().map(|m| clip(m.ts) - clip(m.started_at)).map(|d| d.max(0)).sum();
            let down_h = down_ms as f64 / 3_600_000.0;
            let up_h = (period_h - down_h).max(0.0);
            fleet_failures += failures;
            fleet_down += down_h;
            let (mtbf_hours, mtbf) = mtbf_of(up_h, failures);
            out.push(Reliability {
                asset_id: asset.clone(),
                failures,
                downtime_hours: down_h,
                uptime_hours: up_h,
                mtbf_hours,
                mtbf,
                availability: if period_h > 0.0 { up_h / period_h } else { 1.0 },
            });
        }
        // Least available first.
        out.sort_by(|a, b| a.availability.total_cmp(&b.availability).then_with(|| a.asset_id.cmp(&b.asset_id)));
        if req.asset_id.is_none() && !assets.is_empty() {
            let total_h = period_h * assets.len() as f64;
            let up = (total_h - fleet_down).max(0.0);
            let (mtbf_hours, mtbf) = mtbf_of(up, fleet_failures);
            out.insert(
                0,
                Reliability {
                    asset_id: "fleet".into(),
                    failures: fleet_failures,
                    downtime_hours: fleet_down,
                    uptime_hours: up,
                    mtbf_hours,
                    mtbf,
                    availability: if total_h > 0.0 { up / total_h } else { 1.0 },
                },
            );
        }
        Ok(out)
    }

    async fn charts(&self, req: &ReportRequest, wh: &str, params: &[ScalarValue]) -> Result<Vec<SensorChart>, QueryError> {
        let r = self
            .query(
                &format!(
                    "SELECT sensor_id, first_value(asset_id) AS asset_id, count(*) AS n FROM anomalies WHERE {wh} \
                     AND sensor_id <> '' AND sensor_id <> asset_id GROUP BY sensor_id ORDER BY n DESC, sensor_id LIMIT {CHARTS}"
                ),
                params.to_vec(),
                CHARTS,
            )
            .await?;
        let c = Columns::new(&r)?;
        let mut key: Vec<(String, String, u64)> = c
            .text("sensor_id")?
            .into_iter()
            .zip(c.text("asset_id")?)
            .zip(c.int("n")?)
            .filter_map(|((s, a), n)| Some((s?, a.unwrap_or_default(), n.unwrap_or(0) as u64)))
            .collect();
        if key.is_empty() {
            if let Some(a) = &req.asset_id {
                // No anomaly: chart the asset's sensors seen on the last day of the period.
                let last_day = date_of(req.to - 1);
                let r = self
                    .query(
                        &format!(
                            "SELECT DISTINCT sensor_id FROM readings WHERE asset_id = $1 AND date = $2 ORDER BY sensor_id LIMIT {CHARTS}"
                        ),
                        vec![text(a), text(&last_day)],
                        CHARTS,
                    )
                    .await?;
                key = Columns::new(&r)?.text("sensor_id")?.into_iter().flatten().map(|s| (s, a.clone(), 0)).collect();
            }
        }
        // Every chart's series in one scan; their anomalies side by side.
        let ids: Vec<String> = key.iter().map(|(s, _, _)| s.clone()).collect();
        let filters: Vec<EventFilter> = ids
            .iter()
            .map(|sensor| EventFilter {
                sensor_id: Some(sensor.clone()),
                from: Some(req.from),
                to: Some(req.to),
                limit: 1000,
                ..EventFilter::default()
            })
            .collect();
        let marks = futures::future::try_join_all(filters.iter().map(|f| self.anomalies(f)));
        let (series, marks) = futures::future::try_join(self.readings_of(&ids, req.from, req.to, CHART_POINTS), marks).await?;
        let mut charts = Vec::new();
        for (((sensor, asset, n), series), marks) in key.into_iter().zip(series).zip(marks) {
            let mut anomalies: Vec<(i64, String, String)> = marks.into_iter().map(|a| (a.ts, a.severity, a.detector)).collect();
            anomalies.sort();
            charts.push(SensorChart {
                sensor_id: sensor,
                asset_id: asset,
                anomaly_count: n,
                bucket_ms: series.bucket_ms,
                points: series.points,
                anomalies,
            });
        }
        Ok(charts)
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| format!("{v:.4}"))
}

impl Report {
    /// The report as JSON.
    pub fn to_json(&self) -> String {
        // A Report holds only strings, numbers and options: serialization cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// One row per figure: `section,asset_id,item,metric,value`.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("section,asset_id,item,metric,value\n");
        let mut row = |section: &str, asset: &str, item: &str, metric: &str, value: String| {
            let _ = writeln!(
                out,
                "{},{},{},{},{}",
                csv_field(section),
                csv_field(asset),
                csv_field(item),
                csv_field(metric),
                csv_field(&value)
            );
        };
        let scope = self.asset_id.clone().unwrap_or_else(|| "fleet".into());
        row("period", &scope, "", "from", vigil_events::format_rfc3339_ms(self.from));
        row("period", &scope, "", "to", vigil_events::format_rfc3339_ms(self.to));
        let s = &self.summary;
        for (m, v) in [
            ("assets", s.assets),
            ("anomalies", s.anomalies),
            ("critical_anomalies", s.critical_anomalies),
            ("drift_events", s.drift_events),
            ("predictions", s.predictions),
            ("proposals", s.proposals),
            ("decisions", s.decisions),
            ("maintenance", s.maintenance),
        ] {
            row("summary", &scope, "", m, v.to_string());
        }
        for a in &self.anomalies_by_detector {
            row("anomalies_by_detector", &scope, &format!("{}/{}", a.detector, a.severity), "count", a.count.to_string());
        }
        for a in &self.anomalies_by_asset {
            row("anomalies_by_asset", &a.asset_id, "", "count", a.count.to_string());
            row("anomalies_by_asset", &a.asset_id, "", "critical", a.critical.to_string());
        }
        for d in &self.drift {
            row(
                "drift",
                &d.asset_id,
                &format!("{}/{}", d.sensor_id, d.statistic),
                vigil_events::format_rfc3339_ms(d.ts).as_str(),
                format!("{:.4}", d.value),
            );
        }
        for p in &self.predictions {
            row("predictions", &p.asset_id, "", "count", p.count.to_string());
            row("predictions", &p.asset_id, "", "first_health", format!("{:.4}", p.first.health));
            row("predictions", &p.asset_id, "", "last_health", format!("{:.4}", p.last.health));
            row("predictions", &p.asset_id, "", "min_health", format!("{:.4}", p.min_health));
            row("predictions", &p.asset_id, "", "last_failure_probability", format!("{:.4}", p.last.failure_probability));
            row("predictions", &p.asset_id, "", "max_failure_probability", format!("{:.4}", p.max_failure_probability));
            row("predictions", &p.asset_id, "", "min_rul_hours", opt(p.min_rul_hours));
        }
        for p in &self.proposals {
            row("proposals", &p.asset_id, &p.proposal_id, "status", p.status.clone());
            row("proposals", &p.asset_id, &p.proposal_id, "proposed_at", vigil_events::format_rfc3339_ms(p.proposed_at));
            row("proposals", &p.asset_id, &p.proposal_id, "priority", p.priority.clone());
            for d in &p.decisions {
                row(
                    "decisions",
                    &p.asset_id,
                    &p.proposal_id,
                    &d.decision,
                    format!("{} by {}", vigil_events::format_rfc3339_ms(d.ts), d.decided_by),
                );
            }
        }
        for m in &self.maintenance {
            row(
                "maintenance",
                &m.asset_id,
                m.proposal_id.as_deref().unwrap_or(""),
                &m.kind,
                vigil_events::format_rfc3339_ms(m.ts),
            );
        }
        for r in &self.reliability {
            row("reliability", &r.asset_id, "", "failures", r.failures.to_string());
            row("reliability", &r.asset_id, "", "downtime_hours", format!("{:.3}", r.downtime_hours));
            row(
                "reliability",
                &r.asset_id,
                "",
                "mtbf_hours",
                r.mtbf_hours.map_or_else(|| NO_FAILURES.to_string(), |m| format!("{m:.4}")),
            );
            row("reliability", &r.asset_id, "", "availability", format!("{:.5}", r.availability));
        }
        for (term, definition) in self.definitions.terms() {
            row("definitions", &scope, term, "definition", definition.to_string());
        }
        out
    }

    /// One self-contained HTML page (inline CSS and SVG, no script, no external resource).
    pub fn to_html(&self) -> String {
        let mut h = String::with_capacity(64 * 1024);
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>{}</style></head><body>\n",
            esc(&self.title),
            CSS
        );
        let _ = writeln!(
            h,
            "<header><h1>{}</h1><p class=\"period\">{} — {} (UTC) · generated {}</p></header>",
            esc(&self.title),
            time_of(self.from),
            time_of(self.to),
            time_of(self.generated_at)
        );
        // Summary cards.
        let s = &self.summary;
        h.push_str("<section id=\"summary\"><h2>Summary</h2><div class=\"cards\">");
        for (label, v, warn) in [
            ("assets", s.assets, false),
            ("anomalies", s.anomalies, false),
            ("critical anomalies", s.critical_anomalies, s.critical_anomalies > 0),
            ("drift events", s.drift_events, false),
            ("predictions", s.predictions, false),
            ("proposals", s.proposals, false),
            ("decisions", s.decisions, false),
            ("maintenance done", s.maintenance, false),
        ] {
            let _ = write!(h, "<div class=\"card{}\"><b>{v}</b><span>{label}</span></div>", if warn { " warn" } else { "" });
        }
        h.push_str("</div></section>\n");

        // Reliability.
        h.push_str("<section id=\"reliability\"><h2>Reliability</h2>");
        if self.reliability.is_empty() {
            h.push_str("<p class=\"none\">No asset in the period.</p>");
        } else {
            h.push_str("<table><tr><th>asset</th><th>failures</th><th>downtime (h)</th><th>MTBF</th><th>availability</th></tr>");
            // The fleet and the 20 least available assets; the JSON and CSV have them all.
            let shown = if self.asset_id.is_none() { 21 } else { usize::MAX };
            for r in self.reliability.iter().take(shown) {
                let _ = write!(
                    h,
                    "<tr{}><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{:.2}</td><td class=\"n\">{}</td><td class=\"n\">{:.3}%</td></tr>",
                    if r.asset_id == "fleet" { " class=\"total\"" } else { "" },
                    esc(&r.asset_id),
                    r.failures,
                    r.downtime_hours,
                    esc(&r.mtbf),
                    r.availability * 100.0,
                );
            }
            h.push_str("</table>");
            if self.reliability.len() > shown {
                let _ = write!(
                    h,
                    "<p class=\"none\">{} more assets in the JSON and CSV reports.</p>",
                    self.reliability.len() - shown
                );
            }
        }
        // What the figures mean, beside them.
        h.push_str("<dl class=\"definitions\">");
        for (term, definition) in self.definitions.terms() {
            let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", esc(term), esc(definition));
        }
        h.push_str("</dl></section>\n");

        // Charts.
        h.push_str("<section id=\"charts\"><h2>Key sensors</h2>");
        if self.charts.is_empty() {
            h.push_str("<p class=\"none\">No readings in the period.</p>");
        }
        for c in &self.charts {
            let _ = write!(
                h,
                "<figure><figcaption><b>{}</b> on {} · {} anomalies{}</figcaption>{}</figure>",
                esc(&c.sensor_id),
                esc(&c.asset_id),
                c.anomalies.len(),
                c.bucket_ms.map_or(String::new(), |b| format!(" · mean, min and max per {}", duration(b))),
                chart_svg(c, self.from, self.to)
            );
        }
        h.push_str("</section>\n");

        // Anomalies.
        h.push_str("<section id=\"anomalies\"><h2>Anomalies by detector and severity</h2>");
        if self.anomalies_by_detector.is_empty() {
            h.push_str("<p class=\"none\">No anomaly in the period.</p>");
        } else {
            let severities = ["critical", "high", "medium", "low"];
            let mut detectors: Vec<&str> = self.anomalies_by_detector.iter().map(|a| a.detector.as_str()).collect();
            detectors.dedup();
            h.push_str("<table><tr><th>detector</th>");
            for s in severities {
                let _ = write!(h, "<th class=\"sev-{s}\">{s}</th>");
            }
            h.push_str("<th>total</th></tr>");
            for d in detectors {
                let _ = write!(h, "<tr><td>{}</td>", esc(d));
                let mut total = 0;
                for s in severities {
                    let n: u64 =
                        self.anomalies_by_detector.iter().filter(|a| a.detector == d && a.severity == s).map(|a| a.count).sum();
                    total += n;
                    let _ = write!(h, "<td class=\"n\">{n}</td>");
                }
                let _ = write!(h, "<td class=\"n\"><b>{total}</b></td></tr>");
            }
            h.push_str("</table>");
        }
        if self.asset_id.is_none() && !self.anomalies_by_asset.is_empty() {
            h.push_str("<h3>By asset (most first)</h3><table><tr><th>asset</th><th>anomalies</th><th>critical</th></tr>");
            for a in self.anomalies_by_asset.iter().take(30) {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                    esc(&a.asset_id),
                    a.count,
                    a.critical
                );
            }
            h.push_str("</table>");
        }
        if !self.top_anomalies.is_empty() {
            h.push_str("<h3>Most severe</h3><table><tr><th>time</th><th>sensor</th><th>detector</th><th>severity</th><th>score</th><th>explanation</th></tr>");
            for a in &self.top_anomalies {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"sev-{}\">{}</td><td class=\"n\">{:.2}</td><td class=\"x\">{}</td></tr>",
                    time_of(a.ts),
                    esc(&a.sensor_id),
                    esc(&a.detector),
                    esc(&a.severity),
                    esc(&a.severity),
                    a.score,
                    esc(&a.explanation)
                );
            }
            h.push_str("</table>");
        }
        h.push_str("</section>\n");

        // Drift.
        h.push_str("<section id=\"drift\"><h2>Drift</h2>");
        if self.drift.is_empty() {
            h.push_str("<p class=\"none\">No drift detected in the period.</p>");
        } else {
            h.push_str("<table><tr><th>detected</th><th>sensor</th><th>statistic</th><th>value</th><th>threshold</th><th>reference</th></tr>");
            for d in &self.drift {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{:.3}</td><td class=\"n\">{:.3}</td><td>{} — {}</td></tr>",
                    time_of(d.ts),
                    esc(&d.sensor_id),
                    esc(&d.statistic),
                    d.value,
                    d.threshold,
                    time_of(d.reference_start),
                    time_of(d.reference_end)
                );
            }
            h.push_str("</table>");
        }
        h.push_str("</section>\n");

        // Predictions.
        h.push_str("<section id=\"predictions\"><h2>Predictions</h2>");
        if self.predictions.is_empty() {
            h.push_str("<p class=\"none\">No prediction in the period.</p>");
        } else {
            h.push_str("<table><tr><th>asset</th><th>predictions</th><th>health first → last</th><th>least health</th><th>failure probability last (max)</th><th>least RUL (h)</th></tr>");
            for p in &self.predictions {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{:.2} → {:.2}</td><td class=\"n{}\">{:.2}</td><td class=\"n\">{:.2} ({:.2})</td><td class=\"n\">{}</td></tr>",
                    esc(&p.asset_id),
                    p.count,
                    p.first.health,
                    p.last.health,
                    if p.min_health < 0.5 { " bad" } else { "" },
                    p.min_health,
                    p.last.failure_probability,
                    p.max_failure_probability,
                    p.min_rul_hours.map_or("—".into(), |r| format!("{r:.1}"))
                );
            }
            h.push_str("</table>");
            for p in self.predictions.iter().filter(|p| p.series.len() > 1) {
                let _ = write!(
                    h,
                    "<figure><figcaption>Health of {} (line) and failure probability (dashed)</figcaption>{}</figure>",
                    esc(&p.asset_id),
                    prediction_svg(p, self.from, self.to)
                );
            }
        }
        h.push_str("</section>\n");

        // Proposals and decisions.
        h.push_str("<section id=\"proposals\"><h2>Proposals and decisions</h2>");
        if self.proposals.is_empty() {
            h.push_str("<p class=\"none\">No maintenance proposed in the period.</p>");
        } else {
            h.push_str("<table><tr><th>proposed</th><th>asset</th><th>priority</th><th>status</th><th>planned for</th><th>reason</th><th>decisions</th></tr>");
            for p in &self.proposals {
                let decisions = if p.decisions.is_empty() {
                    if p.requires_decision {
                        "awaiting decision".to_string()
                    } else {
                        "—".to_string()
                    }
                } else {
                    p.decisions
                        .iter()
                        .map(|d| format!("{} by {} ({})", esc(&d.decision), esc(&d.decided_by), time_of(d.ts)))
                        .collect::<Vec<_>>()
                        .join("<br>")
                };
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td class=\"sev-{}\">{}</td><td>{}</td><td>{}</td><td class=\"x\">{}</td><td>{}</td></tr>",
                    time_of(p.proposed_at),
                    esc(&p.asset_id),
                    esc(&p.priority),
                    esc(&p.priority),
                    esc(&p.status),
                    time_of(p.scheduled_for),
                    esc(&p.reason),
                    decisions
                );
            }
            h.push_str("</table>");
        }
        h.push_str("</section>\n");

        // Maintenance.
        h.push_str("<section id=\"maintenance\"><h2>Maintenance done</h2>");
        if self.maintenance.is_empty() {
            h.push_str("<p class=\"none\">No maintenance recorded in the period.</p>");
        } else {
            h.push_str("<table><tr><th>asset</th><th>kind</th><th>out of service</th><th>back in service</th><th>by</th><th>notes</th></tr>");
            for m in &self.maintenance {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"x\">{}</td></tr>",
                    esc(&m.asset_id),
                    esc(&m.kind),
                    time_of(m.started_at),
                    time_of(m.ts),
                    esc(&m.performed_by),
                    esc(m.notes.as_deref().unwrap_or(""))
                );
            }
            h.push_str("</table>");
        }
        h.push_str("</section>\n<footer>Vigil · a failure is a completed corrective maintenance record (anomalies are not failures); MTBF = up time / failures; availability = up time / period.</footer>\n</body></html>\n");
        h
    }
}

fn duration(ms: i64) -> String {
    if ms % 3_600_000 == 0 {
        format!("{} h", ms / 3_600_000)
    } else if ms >= 120_000 {
        format!("{} min", ms / 60_000)
    } else {
        format!("{} s", ms / 1000)
    }
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1d2433;margin:0 auto;max-width:1100px;padding:24px}\
h1{font-size:24px;margin:0}h2{font-size:18px;border-bottom:1px solid #d8dde6;padding-bottom:4px;margin-top:32px}h3{font-size:15px}\
.period{color:#5b6576;margin:4px 0 0}.cards{display:flex;flex-wrap:wrap;gap:10px}.card{border:1px solid #d8dde6;border-radius:6px;padding:10px 14px;min-width:110px}\
.card b{display:block;font-size:22px}.card span{color:#5b6576;font-size:12px}.card.warn{border-color:#d64545;background:#fff5f5}\
table{border-collapse:collapse;width:100%;margin:8px 0}th,td{border-bottom:1px solid #e6e9ef;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#f4f6f9;font-weight:600}dl.definitions{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;font-size:13px;color:#5b6576}dl.definitions dt{font-weight:600}dl.definitions dd{margin:0}td.n{text-align:right;font-variant-numeric:tabular-nums}td.x{font-size:12px;color:#5b6576;max-width:380px;word-break:break-word}\
tr.total td{font-weight:600;background:#f4f6f9}.bad{color:#d64545;font-weight:600}.none{color:#5b6576;font-style:italic}\
.sev-critical{color:#b42318;font-weight:600}.sev-high{color:#d9480f}.sev-medium{color:#b7791f}.sev-low{color:#2f6f9f}\
figure{margin:12px 0}figcaption{font-size:13px;margin-bottom:2px}svg{width:100%;height:auto;background:#fbfcfd;border:1px solid #e6e9ef}\
footer{margin-top:32px;color:#5b6576;font-size:12px}";

/// Chart geometry: viewBox size and margins.
const W: f64 = 1000.0;
const H: f64 = 220.0;
const ML: f64 = 76.0;
const MR: f64 = 10.0;
const MT: f64 = 10.0;
const MB: f64 = 28.0;

struct Axes {
    x0: i64,
    x1: i64,
    y0: f64,
    y1: f64,
}

impl Axes {
    fn x(&self, t: i64) -> f64 {
        ML + (t - self.x0) as f64 / ((self.x1 - self.x0).max(1) as f64) * (W - ML - MR)
    }
    fn y(&self, v: f64) -> f64 {
        let span = if self.y1 > self.y0 { self.y1 - self.y0 } else { 1.0 };
        MT + (1.0 - (v - self.y0) / span) * (H - MT - MB)
    }
    fn frame(&self, out: &mut String, fmt_y: &dyn Fn(f64) -> String) {
        let _ = write!(
            out,
            "<rect x=\"{ML}\" y=\"{MT}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#c9d0db\"/>",
            W - ML - MR,
            H - MT - MB
        );
        for i in 0..=4 {
            let v = self.y0 + (self.y1 - self.y0) * i as f64 / 4.0;
            let y = self.y(v);
            let _ = write!(
                out,
                "<line x1=\"{ML}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eef1f5\"/><text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#5b6576\">{}</text>",
                W - MR,
                ML - 4.0,
                y + 4.0,
                fmt_y(v)
            );
        }
        for i in 0..=4 {
            let t = self.x0 + (self.x1 - self.x0) * i / 4;
            let x = self.x(t);
            let anchor = if i == 0 {
                "start"
            } else if i == 4 {
                "end"
            } else {
                "middle"
            };
            let _ = write!(
                out,
                "<text x=\"{x:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"{anchor}\" fill=\"#5b6576\">{}</text>",
                H - 8.0,
                time_of(t)
            );
        }
    }
}

fn chart_svg(c: &SensorChart, from: i64, to: i64) -> String {
    let mut out = format!("<svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">", esc(&c.sensor_id));
    if c.points.is_empty() {
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#5b6576\">no readings in the period</text></svg>",
            W / 2.0,
            H / 2.0
        );
        return out;
    }
    let lo = c.points.iter().map(|p| p.min).fold(f64::INFINITY, f64::min);
    let hi = c.points.iter().map(|p| p.max).fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.05).max(1e-9);
    let ax = Axes { x0: from, x1: to, y0: lo - pad, y1: hi + pad };
    let span = ax.y1 - ax.y0;
    let decimals = if span >= 100.0 {
        0
    } else if span >= 10.0 {
        1
    } else if span >= 1.0 {
        2
    } else {
        4
    };
    ax.frame(&mut out, &|v| format!("{v:.decimals$}"));
    if c.bucket_ms.is_some() {
        // Min-max band.
        let mut band = String::new();
        for p in &c.points {
            let _ = write!(band, "{:.1},{:.1} ", ax.x(p.ts), ax.y(p.max));
        }
        for p in c.points.iter().rev() {
            let _ = write!(band, "{:.1},{:.1} ", ax.x(p.ts), ax.y(p.min));
        }
        let _ = write!(out, "<polygon points=\"{}\" fill=\"#cfe0f5\" stroke=\"none\"/>", band.trim_end());
    }
    let mut line = String::new();
    for p in &c.points {
        let _ = write!(line, "{:.1},{:.1} ", ax.x(p.ts), ax.y(p.value));
    }
    let _ = write!(out, "<polyline points=\"{}\" fill=\"none\" stroke=\"#2f6f9f\" stroke-width=\"1.2\"/>", line.trim_end());
    // Anomalies: a marker at the value of the nearest point.
    for (t, sev, det) in &c.anomalies {
        let i = c.points.partition_point(|p| p.ts <= *t).saturating_sub(1);
        let v = c.points[i.min(c.points.len() - 1)].max;
        let color = match sev.as_str() {
            "critical" => "#b42318",
            "high" => "#d9480f",
            "medium" => "#b7791f",
            _ => "#2f6f9f",
        };
        let _ = write!(
            out,
            "<circle class=\"anomaly\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{color}\" fill-opacity=\"0.85\"><title>{} {} {}</title></circle>",
            ax.x(*t),
            ax.y(v),
            time_of(*t),
            esc(sev),
            esc(det)
        );
    }
    out.push_str("</svg>");
    out
}

fn prediction_svg(p: &PredictionTrend, from: i64, to: i64) -> String {
    let mut out = format!("<svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"health of {}\">", esc(&p.asset_id));
    let ax = Axes { x0: from, x1: to, y0: 0.0, y1: 1.0 };
    ax.frame(&mut out, &|v| format!("{v:.2}"));
    let mut health = String::new();
    let mut prob = String::new();
    for s in &p.series {
        let _ = write!(health, "{:.1},{:.1} ", ax.x(s.ts), ax.y(s.health.clamp(0.0, 1.0)));
        let _ = write!(prob, "{:.1},{:.1} ", ax.x(s.ts), ax.y(s.failure_probability.clamp(0.0, 1.0)));
    }
    let _ = write!(out, "<polyline points=\"{}\" fill=\"none\" stroke=\"#2b8a3e\" stroke-width=\"1.5\"/>", health.trim_end());
    let _ = write!(
        out,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#b42318\" stroke-width=\"1.2\" stroke-dasharray=\"4 3\"/>",
        prob.trim_end()
    );
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_text() {
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn csv_quotes_fields_with_commas() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }

    #[test]
    fn dates_and_durations() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(time_of(90_000), "1970-01-01 00:01:30");
        assert_eq!(time_of(120_000), "1970-01-01 00:02");
        assert_eq!(duration(3_600_000), "1 h");
        assert_eq!(duration(300_000), "5 min");
    }
}
