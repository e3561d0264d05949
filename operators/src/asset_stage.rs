//! The per-asset stage: multivariate detector, predictor and scheduling policy.
//!
//! Input: [`AssetInput`]s (closed tumbling windows and anomalies of the asset's sensors) and
//! watermarks. Output ([`AssetOutputs`]): multivariate [`AnomalyDetected`] events,
//! [`MaintenancePredicted`] events, [`MaintenanceScheduled`] proposals and
//! [`HumanDecisionRequested`] events. Feedback from the planning loop
//! ([`AssetStage::apply_status`]): the status changes people record (rejected, completed) close
//! the open proposal, and completed maintenance restarts the asset's baselines.
//!
//! Inputs are stashed until the watermark passes their event time, then processed in event-time
//! order per asset, all sensors of one window end together, so outputs are deterministic.
//! State per asset: the multivariate mean and covariance, the predictor's trends, the open
//! proposal and a rejection's hold, the time of the last reset; plus the stash ahead of the
//! watermark.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use vigil_events::{
    event_id, format_rfc3339_ms, AnomalyDetected, EventTime, HumanDecisionRequested, Incident, MaintenancePredicted,
    MaintenanceScheduled, ScheduleStatus, Severity, EVENT_VERSION,
};

use crate::incidents::{AssetIncidents, Evidence, EvidenceKind, IncidentConfig};
use crate::normal_model::{LoadedNormal, NormalModel, NormalModelConfig, NormalState};

use crate::multivariate::{AssetMahalanobis, MultivariateConfig};
use crate::predictor::{AssetPredictor, PredictorConfig};
use crate::rul_features::RulFeatures;
use crate::rul_model::LoadedRul;
use crate::scheduler::{AssetSchedule, SchedulerConfig};
use crate::sensor_stage::AssetInput;

/// Version of the multivariate detector.
pub const MULTIVARIATE_VERSION: u32 = 1;

/// Settings of the asset stage.
#[derive(Debug, Clone, Default)]
pub struct AssetStageConfig {
    /// Multivariate detector.
    pub multivariate: MultivariateConfig,
    /// Predictor.
    pub predictor: PredictorConfig,
    /// Scheduling policy.
    pub scheduler: SchedulerConfig,
    /// A trained RUL model from the registry: when set, its RUL replaces the trend model's.
    pub rul_model: Option<Arc<LoadedRul>>,
    /// Tumbling window size (ms): one step of the RUL model.
    pub window_ms: i64,
    /// Incidents.
    pub incidents: IncidentConfig,
    /// The normal model: its settings.
    pub normal_model: NormalModelConfig,
    /// Windows of each asset (from its start, or its last completed maintenance) that are its
    /// normal period: the normal model learns from them, then scores every later window. 0: off.
    pub normal_model_train_windows: usize,
    /// Normal models from the registry, by asset: such an asset scores with its model from its
    /// first window (and again after completed maintenance) instead of learning one.
    pub normal_models: Arc<HashMap<Arc<str>, Arc<LoadedNormal>>>,
}

/// Version of the normal model detector.
pub const NORMAL_MODEL_VERSION: u32 = 1;

/// One asset's normal model: learning its normal period, then scoring.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
enum NormalPhase {
    /// Complete rows of the normal period so far, with the sensors' order.
    Learning { sensors: Vec<Arc<str>>, rows: Vec<Vec<f64>> },
    /// Fitted.
    Scoring { sensors: Vec<Arc<str>>, model: Box<NormalModel>, state: NormalState },
    /// The normal period could not be learned (why): the asset is not scored.
    Unfit(String),
}

/// Outputs of one step.
#[derive(Debug, Default)]
pub struct AssetOutputs {
    /// Multivariate anomalies.
    pub anomalies: Vec<AnomalyDetected>,
    /// Predictions.
    pub predictions: Vec<MaintenancePredicted>,
    /// Proposals.
    pub schedule: Vec<MaintenanceScheduled>,
    /// Decision requests.
    pub decisions: Vec<HumanDecisionRequested>,
    /// Incident revisions.
    pub incidents: Vec<Incident>,
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct AssetState {
    mv: Option<AssetMahalanobis>,
    predictor: AssetPredictor,
    schedule: AssetSchedule,
    /// Recording time of the last completed maintenance that reset the baselines.
    reset_mark: EventTime,
    /// The trained RUL model's features, when one runs.
    #[serde(default)]
    rul: Option<RulFeatures>,
    /// The asset's incidents.
    #[serde(default)]
    incidents: AssetIncidents,
    /// The asset's normal model, when configured.
    #[serde(default)]
    normal: Option<NormalPhase>,
}

impl Default for AssetState {
    fn default() -> Self {
        AssetState {
            mv: None,
            predictor: AssetPredictor::default(),
            schedule: AssetSchedule::default(),
            reset_mark: EventTime::MIN,
            rul: None,
            incidents: AssetIncidents::default(),
            normal: None,
        }
    }
}

/// A serialisable copy of an [`AssetStage`]'s state (see [`AssetStage::checkpoint`]).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct AssetStageCheckpoint {
    assets: Vec<(Arc<str>, AssetState)>,
    pending: Vec<AssetInput>,
}

/// The per-asset stage of one worker.
pub struct AssetStage {
    cfg: AssetStageConfig,
    assets: HashMap<Arc<str>, AssetState>,
    pending: Vec<AssetInput>,
    /// Assets with an open incident or a candidate: their quiet gaps run with the watermark.
    alarmed: BTreeSet<Arc<str>>,
}

/// One window of the asset's normal model: learns while in the normal period (fits at its
/// end), then scores — or scores from the start with the asset's model from the registry
/// (`loaded`); returns the score, with the model's sensors and the row scored, when the alarm is on.
fn normal_step(
    cfg: &AssetStageConfig,
    phase: &mut Option<NormalPhase>,
    loaded: Option<&LoadedNormal>,
    names: &[Arc<str>],
    means: &[f64],
) -> Option<(crate::normal_model::NormalScore, Vec<Arc<str>>, Vec<f64>)> {
    let p = phase.get_or_insert_with(|| match loaded {
        Some(l) => NormalPhase::Scoring {
            sensors: l.artifact.model.sensors.iter().map(|s| Arc::from(s.as_str())).collect(),
            model: Box::new(l.artifact.model.clone()),
            state: l.artifact.model.new_state(),
        },
        None => NormalPhase::Learning { sensors: names.to_vec(), rows: Vec::new() },
    });
    match p {
        NormalPhase::Learning { sensors, rows } => {
            // A complete row: every sensor of the normal period, each finite.
            let row: Option<Vec<f64>> =
                sensors.iter().map(|s| names.iter().position(|n| n == s).map(|k| means[k]).filter(|v| v.is_finite())).collect();
            if let Some(row) = row {
                rows.push(row);
            }
            if rows.len() >= cfg.normal_model_train_windows {
                let names: Vec<String> = sensors.iter().map(|s| s.to_string()).collect();
                *p = match NormalModel::fit(names, rows, &cfg.normal_model) {
                    Ok((model, state)) => {
                        NormalPhase::Scoring { sensors: std::mem::take(sensors), model: Box::new(model), state }
                    }
                    Err(e) => NormalPhase::Unfit(e.to_string()),
                };
            }
            None
        }
        NormalPhase::Scoring { sensors, model, state } => {
            let row: Option<Vec<f64>> =
                sensors.iter().map(|s| names.iter().position(|n| n == s).map(|k| means[k]).filter(|v| v.is_finite())).collect();
            let row = row?;
            let score = model.score(state, &row).ok()?;
            score.alarm.then(|| (score, sensors.clone(), row))
        }
        NormalPhase::Unfit(_) => None,
    }
}

fn order_key(i: &AssetInput) -> (EventTime, u8, &str) {
    match i {
        // Anomalies at a time count before the window ending then.
        // Evidence at one time in the order of its event ids, whatever order it arrived in.
        AssetInput::Anomaly { ts, evidence, .. } => (*ts, 0, evidence.as_ref().map_or("", |e| e.event_id.as_str())),
        AssetInput::Drift { ts, evidence, .. } => (*ts, 0, evidence.event_id.as_str()),
        AssetInput::Window { end, sensor_id, .. } => (*end, 1, sensor_id),
    }
}

impl AssetStage {
    /// An empty stage.
    pub fn new(cfg: AssetStageConfig) -> Self {
        AssetStage { cfg, assets: HashMap::new(), pending: Vec::new(), alarmed: BTreeSet::new() }
    }

    /// The stage's state: per-asset state and the inputs waiting for the watermark.
    pub fn checkpoint(&self) -> AssetStageCheckpoint {
        let mut assets: Vec<(Arc<str>, AssetState)> = self.assets.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assets.sort_by(|a, b| a.0.cmp(&b.0));
        AssetStageCheckpoint { assets, pending: self.pending.clone() }
    }

    /// Takes over the part of a checkpoint whose assets `mine` accepts.
    pub fn restore(&mut self, cp: &AssetStageCheckpoint, mine: impl Fn(&str) -> bool) {
        for (k, s) in &cp.assets {
            if mine(k) {
                if s.incidents.is_active() {
                    self.alarmed.insert(k.clone());
                }
                self.assets.insert(k.clone(), s.clone());
            }
        }
        self.pending.extend(cp.pending.iter().filter(|i| mine(i.asset_id())).cloned());
    }

    /// Stashes an input until the watermark passes it.
    pub fn push(&mut self, i: AssetInput) {
        self.pending.push(i);
    }

    /// Inputs waiting for the watermark.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Takes a status change the planning loop recorded (a decision, completed maintenance) at
    /// event time `at`: a rejection or completion closes the asset's open proposal, and a
    /// completion restarts its baselines (multivariate model and predictor trends). It is
    /// idempotent: a change to a proposal that is not open closes nothing, and a completion
    /// recorded no later than the last one applied resets nothing. Returns whether it changed
    /// the asset's state.
    pub fn apply_status(&mut self, change: &MaintenanceScheduled, at: EventTime) -> bool {
        let a = self.assets.entry(change.asset_id.clone()).or_default();
        let closed = crate::scheduler::proposal_seq(&change.proposal_id)
            .is_some_and(|seq| a.schedule.on_status(&self.cfg.scheduler, seq, change.status, change.priority, at));
        // Approved work: the asset's alarms are suppressed from its planned start until done.
        match change.status {
            ScheduleStatus::Scheduled => a.incidents.maintenance_planned(&self.cfg.incidents, change.scheduled_for),
            ScheduleStatus::Completed => a.incidents.maintenance_done(change.ts),
            _ => {}
        }
        let reset = change.status == ScheduleStatus::Completed && change.ts > a.reset_mark;
        if reset {
            a.reset_mark = change.ts;
            a.mv = None;
            a.normal = None;
            a.predictor.reset();
            a.rul = None;
        }
        closed || reset
    }

    /// Processes every stashed input earlier than `watermark` (`None`: all of them).
    pub fn advance(&mut self, watermark: Option<EventTime>, out: &mut AssetOutputs) {
        let limit = watermark.unwrap_or(EventTime::MAX);
        let mut ready = Vec::new();
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].time() < limit {
                ready.push(self.pending.swap_remove(i));
            } else {
                i += 1;
            }
        }
        if ready.is_empty() {
            self.close_quiet(limit, out);
            return;
        }
        // Group by asset, then by time; within an asset, inputs in event-time order.
        let mut by_asset: BTreeMap<Arc<str>, Vec<AssetInput>> = BTreeMap::new();
        for i in ready {
            by_asset.entry(i.asset_id().clone()).or_default().push(i);
        }
        for (asset, mut inputs) in by_asset {
            inputs.sort_by(|a, b| order_key(a).partial_cmp(&order_key(b)).unwrap_or(std::cmp::Ordering::Equal));
            let mut j = 0;
            while j < inputs.len() {
                match &inputs[j] {
                    AssetInput::Anomaly { ts, evidence, .. } => {
                        let state = self.assets.entry(asset.clone()).or_default();
                        state.predictor.observe_anomaly(*ts);
                        if let Some(e) = evidence {
                            state.incidents.observe(&self.cfg.incidents, &asset, (**e).clone(), &mut out.incidents);
                            self.alarmed.insert(asset.clone());
                        }
                        j += 1;
                    }
                    AssetInput::Drift { evidence, .. } => {
                        let state = self.assets.entry(asset.clone()).or_default();
                        state.incidents.observe(&self.cfg.incidents, &asset, (**evidence).clone(), &mut out.incidents);
                        self.alarmed.insert(asset.clone());
                        j += 1;
                    }
                    AssetInput::Window { end, .. } => {
                        let end = *end;
                        let k = inputs[j..]
                            .iter()
                            .position(|x| !matches!(x, AssetInput::Window { end: e, .. } if *e == end))
                            .map_or(inputs.len(), |p| j + p);
                        self.asset_window(&asset, end, &inputs[j..k], out);
                        j = k;
                    }
                }
            }
        }
        self.close_quiet(limit, out);
    }

    /// Closes the incidents whose quiet gap ran out before `limit`.
    fn close_quiet(&mut self, limit: EventTime, out: &mut AssetOutputs) {
        let cfg = &self.cfg.incidents;
        let assets = &mut self.assets;
        self.alarmed.retain(|asset| {
            let Some(state) = assets.get_mut(asset) else { return false };
            state.incidents.advance(cfg, asset, limit, &mut out.incidents);
            state.incidents.is_active()
        });
    }

    fn asset_window(&mut self, asset: &Arc<str>, end: EventTime, windows: &[AssetInput], out: &mut AssetOutputs) {
        let cfg = &self.cfg;
        let state = self.assets.entry(asset.clone()).or_default();
        let mut means = Vec::with_capacity(windows.len());
        let mut names = Vec::with_capacity(windows.len());
        let mut start = end;
        for w in windows {
            if let AssetInput::Window { sensor_id, sensor_type, mean, limits, start: s, .. } = w {
                state.predictor.observe_window(&cfg.predictor, sensor_id, sensor_type.as_str(), end, *mean, *limits);
                means.push(*mean);
                names.push(sensor_id.clone());
                start = start.min(*s);
            }
        }
        // The multivariate detector needs at least two sensors; its dimension follows the asset.
        if means.len() >= 2 {
            let mv = state.mv.get_or_insert_with(|| AssetMahalanobis::new(cfg.multivariate));
            if let Some(f) = mv.observe(&means) {
                let contributions: serde_json::Map<String, serde_json::Value> = names
                    .iter()
                    .zip(&f.contributions)
                    .map(|(n, c)| (n.to_string(), serde_json::json!((c * 100.0).round() / 100.0)))
                    .collect();
                let severity = if f.score >= 48.0 {
                    Severity::High
                } else if f.score >= 24.0 {
                    Severity::Medium
                } else {
                    Severity::Low
                };
                out.anomalies.push(AnomalyDetected {
                    event_id: event_id("anomaly", &["asset_mahalanobis", asset], end),
                    correlation_id: format!("{asset}@{}", format_rfc3339_ms(start)),
                    event_version: EVENT_VERSION,
                    sensor_id: Arc::from(""),
                    asset_id: asset.clone(),
                    detector: "asset_mahalanobis".into(),
                    detector_version: MULTIVARIATE_VERSION,
                    score: f.score,
                    severity,
                    ts: end,
                    window_start: Some(start),
                    explanation: serde_json::json!({"mahalanobis_sq_per_dim": f.score, "contributions": contributions})
                        .to_string(),
                });
                state.predictor.observe_anomaly(end);
                let evidence = Evidence {
                    event_id: event_id("anomaly", &["asset_mahalanobis", asset], end),
                    kind: EvidenceKind::Anomaly,
                    ts: end,
                    sensor_id: Arc::from(""),
                    detector: "asset_mahalanobis".into(),
                    severity,
                    deviation: f.score / cfg.multivariate.threshold.max(f64::MIN_POSITIVE),
                    value: Some(f.score),
                    normal: Some((0.0, cfg.multivariate.threshold)),
                };
                state.incidents.observe(&cfg.incidents, asset, evidence, &mut out.incidents);
                self.alarmed.insert(asset.clone());
            }
        }
        let loaded = cfg.normal_models.get(asset);
        if (cfg.normal_model_train_windows > 0 || loaded.is_some()) && !names.is_empty() {
            if let Some((f, names, means)) = normal_step(cfg, &mut state.normal, loaded.map(|l| l.as_ref()), &names, &means) {
                let ranked = f.ranked();
                let top: Vec<serde_json::Value> = ranked
                    .iter()
                    .take(3)
                    .filter(|&&k| f.contributions[k] > 0.0)
                    .map(|&k| {
                        serde_json::json!({
                            "sensor_id": names[k].to_string(),
                            "contribution": (f.contributions[k] * 100.0).round() / 100.0,
                            "deviation_sd": (f.deviations[k] * 100.0).round() / 100.0,
                            "value": means[k],
                        })
                    })
                    .collect();
                let severity = if f.ratio >= 4.0 {
                    Severity::High
                } else if f.ratio >= 2.0 {
                    Severity::Medium
                } else {
                    Severity::Low
                };
                let event = event_id("anomaly", &["normal_model", asset], end);
                out.anomalies.push(AnomalyDetected {
                    event_id: event.clone(),
                    correlation_id: format!("{asset}@{}", format_rfc3339_ms(start)),
                    event_version: EVENT_VERSION,
                    sensor_id: Arc::from(""),
                    asset_id: asset.clone(),
                    detector: "normal_model".into(),
                    detector_version: NORMAL_MODEL_VERSION,
                    score: f.ratio,
                    severity,
                    ts: end,
                    window_start: Some(start),
                    explanation: serde_json::json!({
                        "ratio_to_threshold": f.ratio,
                        "statistic": f.statistic,
                        "sensors": top,
                        "model": loaded.map_or_else(|| "learned from the asset's first windows".to_string(), |l| format!("{}@{}", l.name, l.version)),
                    })
                    .to_string(),
                });
                state.predictor.observe_anomaly(end);
                let top_sensor = ranked.first().map(|&k| names[k].clone()).unwrap_or_else(|| Arc::from(""));
                let evidence = Evidence {
                    event_id: event,
                    kind: EvidenceKind::Anomaly,
                    ts: end,
                    sensor_id: top_sensor,
                    detector: "normal_model".into(),
                    severity,
                    deviation: f.ratio,
                    value: ranked.first().map(|&k| means[k]),
                    normal: None,
                };
                state.incidents.observe(&cfg.incidents, asset, evidence, &mut out.incidents);
                self.alarmed.insert(asset.clone());
            }
        }
        let model_rul = cfg.rul_model.as_ref();
        if let Some(m) = model_rul {
            let mut values = vec![None; m.model.inputs.len()];
            for w in windows {
                if let AssetInput::Window { sensor_id, mean, .. } = w {
                    if let Some(k) = m.model.input_of(asset, sensor_id) {
                        values[k] = Some(*mean);
                    }
                }
            }
            // A checkpoint made with another model (other inputs or features) starts afresh.
            let fits = state.rul.as_ref().is_some_and(|f| f.config() == &m.model.features && f.inputs() == m.model.inputs.len());
            if !fits {
                state.rul = Some(m.model.new_state());
            }
            if let Some(f) = state.rul.as_mut() {
                f.observe(&values);
            }
        }
        if let Some(mut p) = state.predictor.end_window(&cfg.predictor) {
            let (mut model, mut model_version) = (cfg.predictor.model.clone(), cfg.predictor.model_version.clone());
            if let (Some(m), Some(features)) = (model_rul, &state.rul) {
                // Predicted only when a prediction is emitted; the features follow every window.
                let (rul_windows, seen) = (m.model.predict(features), features.seen());
                let hours = rul_windows * cfg.window_ms as f64 / 3_600_000.0;
                let horizon = cfg.predictor.horizon_hours;
                p.rul_hours = Some(hours);
                p.failure_probability =
                    (1.0 / (1.0 + ((hours - horizon / 2.0) / (horizon / 8.0)).exp())).max((1.0 - p.health) * 0.5);
                let ring = m.model.features.ring.max(1) as f64;
                p.confidence = 0.8 * (seen as f64 / ring).min(1.0);
                p.reasons.insert(0, format!("{}@{}: {rul_windows:.1} windows ({hours:.1} h) of life left", m.name, m.version));
                model = m.name.clone();
                model_version = m.version.to_string();
            }
            let pred_id = event_id("prediction", &[asset], p.ts);
            let pred = MaintenancePredicted {
                event_id: pred_id.clone(),
                correlation_id: format!("{asset}@{}", format_rfc3339_ms(p.ts)),
                event_version: EVENT_VERSION,
                asset_id: asset.clone(),
                ts: p.ts,
                health: p.health,
                failure_probability: p.failure_probability,
                rul_hours: p.rul_hours,
                predicted_failure_ts: p.rul_hours.map(|h| p.ts + (h * 3_600_000.0) as i64),
                confidence: p.confidence,
                reasons: p.reasons.clone(),
                model,
                model_version,
            };
            let proposal = state.schedule.on_prediction(&cfg.scheduler, &p);
            state.incidents.prediction(&pred_id, proposal.is_some());
            if let Some(prop) = proposal {
                let proposal_id = crate::scheduler::proposal_id(asset, prop.seq);
                out.schedule.push(MaintenanceScheduled {
                    event_id: event_id("schedule", &[&proposal_id, "proposed"], prop.ts),
                    correlation_id: pred_id.clone(),
                    event_version: EVENT_VERSION,
                    proposal_id: proposal_id.clone(),
                    asset_id: asset.clone(),
                    status: ScheduleStatus::Proposed,
                    ts: prop.ts,
                    scheduled_for: prop.scheduled_for,
                    priority: prop.priority,
                    reason: prop.reason.clone(),
                    requires_decision: prop.requires_decision,
                });
                if prop.requires_decision {
                    let request_id = event_id("decision-request", &[&proposal_id], prop.ts);
                    state.incidents.decision_requested(asset, &request_id, prop.ts, &mut out.incidents);
                    out.decisions.push(HumanDecisionRequested {
                        event_id: request_id,
                        correlation_id: pred_id,
                        event_version: EVENT_VERSION,
                        proposal_id,
                        asset_id: asset.clone(),
                        ts: prop.ts,
                        question: format!(
                            "Approve {} priority maintenance of {asset} by {}? {}",
                            prop.priority.as_str(),
                            format_rfc3339_ms(prop.scheduled_for),
                            prop.reason
                        ),
                        deadline: prop.deadline,
                    });
                }
            }
            out.predictions.push(pred);
        }
    }
}
