//! Health score and remaining useful life per asset.
//!
//! Input: the asset's sensors' tumbling-window means with each sensor's operating limits, and
//! the asset's anomalies. Output, every `emit_every` windows of the asset: a [`Prediction`] with
//! a health score in [0, 1], a failure probability within the horizon, the remaining useful life
//! when some sensor trends towards a limit, a confidence, and reasons for a person.
//!
//! The model (`trend-rul`): a least-squares line through each sensor's last `trend_windows`
//! means; if the slope is significant (t ≥ 4, r² ≥ 0.5), points at a limit, and the sensor has
//! already travelled at least `min_progress` of the way from its baseline to that limit (so
//! that normal slow oscillations are not taken for wear), the hours until the line crosses the
//! limit are that sensor's RUL, and the asset's RUL is the least of them. Health falls with
//! how far the sensors have travelled from their baseline towards a limit and with the recent
//! anomaly rate. State: a ring of `trend_windows` points per sensor and the anomaly times of the
//! last hour per asset.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use vigil_events::EventTime;

use crate::limits::Limits;

/// Settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PredictorConfig {
    /// Windows in each sensor's trend.
    pub trend_windows: usize,
    /// Windows of the baseline level (the first ones seen).
    pub baseline_windows: usize,
    /// Emit a prediction every this many windows.
    pub emit_every: u64,
    /// Planning horizon for the failure probability, hours.
    pub horizon_hours: f64,
    /// Least fraction of the way from baseline to limit a sensor must have travelled for its
    /// trend to count as wear.
    pub min_progress: f64,
    /// Model name.
    pub model: String,
    /// Model version.
    pub model_version: String,
}

impl Default for PredictorConfig {
    fn default() -> Self {
        PredictorConfig {
            trend_windows: 30,
            baseline_windows: 15,
            emit_every: 5,
            horizon_hours: 48.0,
            min_progress: 0.15,
            model: "trend-rul".into(),
            model_version: "1".into(),
        }
    }
}

/// A prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Event time (end of the latest window).
    pub ts: EventTime,
    /// Health in [0, 1].
    pub health: f64,
    /// Failure probability within the horizon.
    pub failure_probability: f64,
    /// Remaining useful life, hours.
    pub rul_hours: Option<f64>,
    /// Confidence in [0, 1].
    pub confidence: f64,
    /// Reasons.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct SensorTrend {
    points: VecDeque<(f64, f64)>,
    baseline_sum: f64,
    baseline_n: usize,
    limits: Limits,
    kind: String,
}

/// A least-squares line: `(slope, intercept, r2, t-statistic of the slope)`.
pub fn fit_line(points: &VecDeque<(f64, f64)>) -> Option<(f64, f64, f64, f64)> {
    let n = points.len() as f64;
    if points.len() < 5 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let syy: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let b = sxy / sxx;
    let a = my - b * mx;
    let sse = (syy - b * sxy).max(0.0);
    let r2 = if syy > 0.0 { 1.0 - sse / syy } else { 0.0 };
    let se = (sse / (n - 2.0) / sxx).sqrt();
    let t = if se > 0.0 {
        b.abs() / se
    } else if b != 0.0 {
        f64::INFINITY
    } else {
        0.0
    };
    Some((b, a, r2, t))
}

/// Per-asset predictor state.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct AssetPredictor {
    sensors: BTreeMap<Arc<str>, SensorTrend>,
    anomalies: VecDeque<EventTime>,
    windows: u64,
    last_ts: EventTime,
}

impl AssetPredictor {
    /// Forgets the asset's history (after maintenance).
    pub fn reset(&mut self) {
        *self = AssetPredictor::default();
    }

    /// Records an anomaly of the asset.
    pub fn observe_anomaly(&mut self, ts: EventTime) {
        self.anomalies.push_back(ts);
    }

    /// Records one sensor's window mean.
    pub fn observe_window(
        &mut self,
        cfg: &PredictorConfig,
        sensor: &Arc<str>,
        kind: &str,
        end: EventTime,
        mean: f64,
        limits: Limits,
    ) {
        let s = self.sensors.entry(sensor.clone()).or_default();
        s.limits = limits;
        if s.kind.is_empty() {
            s.kind = kind.to_string();
        }
        if s.baseline_n < cfg.baseline_windows {
            s.baseline_sum += mean;
            s.baseline_n += 1;
        }
        s.points.push_back((end as f64 / 3_600_000.0, mean));
        if s.points.len() > cfg.trend_windows {
            s.points.pop_front();
        }
        self.last_ts = self.last_ts.max(end);
    }

    /// Marks the end of one window of the asset; returns a prediction every `emit_every` windows.
    pub fn end_window(&mut self, cfg: &PredictorConfig) -> Option<Prediction> {
        self.windows += 1;
        self.windows.is_multiple_of(cfg.emit_every).then(|| self.predict(cfg))
    }

    /// The current prediction.
    pub fn predict(&mut self, cfg: &PredictorConfig) -> Prediction {
        let now = self.last_ts;
        while self.anomalies.front().is_some_and(|t| *t < now - vigil_events::RECENT_ANOMALIES_MS) {
            self.anomalies.pop_front();
        }
        let mut reasons = Vec::new();
        let mut rul: Option<(f64, f64)> = None; // (hours, confidence)
        let mut proximity = 0.0f64;
        let t_now = now as f64 / 3_600_000.0;
        for (id, s) in &self.sensors {
            let Some((b, a, r2, t)) = fit_line(&s.points) else { continue };
            let fitted = a + b * t_now;
            let baseline = if s.baseline_n > 0 { s.baseline_sum / s.baseline_n as f64 } else { fitted };
            let towards = match (s.limits.high, s.limits.low) {
                (Some(h), _) if b > 0.0 => Some(h),
                (_, Some(l)) if b < 0.0 => Some(l),
                _ => None,
            };
            let progress_to = |limit: f64| {
                let span = limit - baseline;
                if span.abs() > 0.0 {
                    ((fitted - baseline) / span).clamp(0.0, 1.0)
                } else {
                    0.0
                }
            };
            for limit in [s.limits.high, s.limits.low].into_iter().flatten() {
                proximity = proximity.max(progress_to(limit));
            }
            if let Some(limit) = towards {
                if t >= 4.0 && r2 >= 0.5 && progress_to(limit) >= cfg.min_progress {
                    let hours = ((limit - fitted) / b).max(0.0);
                    let conf = r2 * (s.points.len() as f64 / cfg.trend_windows as f64).min(1.0);
                    reasons.push(format!(
                        "{} {id} trending {:+.3}/h towards limit {limit} (now {fitted:.2}; reaches it in {hours:.1} h; r2 {r2:.2})",
                        s.kind, b
                    ));
                    if rul.is_none_or(|(h, _)| hours < h) {
                        rul = Some((hours, conf));
                    }
                }
            }
        }
        let recent = self.anomalies.len();
        if recent > 0 {
            reasons.push(format!("{recent} anomalies in the last hour"));
        }
        let health = (1.0 - 0.7 * proximity - (0.03 * recent as f64).min(0.3)).clamp(0.0, 1.0);
        let failure_probability = match rul {
            Some((h, _)) => 1.0 / (1.0 + ((h - cfg.horizon_hours / 2.0) / (cfg.horizon_hours / 8.0)).exp()),
            None => 0.0,
        }
        .max((1.0 - health) * 0.5);
        let confidence = match rul {
            Some((_, c)) => c,
            None => {
                let n = self.sensors.values().map(|s| s.points.len()).min().unwrap_or(0);
                0.5 * (n as f64 / cfg.trend_windows as f64).min(1.0)
            }
        };
        if reasons.is_empty() {
            reasons.push("no trend towards a limit; no recent anomalies".into());
        }
        Prediction { ts: now, health, failure_probability, rul_hours: rul.map(|r| r.0), confidence, reasons }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rising_sensor_gives_a_rul() {
        let cfg = PredictorConfig::default();
        let mut p = AssetPredictor::default();
        let id: Arc<str> = Arc::from("a-temp");
        let lim = Limits { low: None, high: Some(110.0) };
        let mut last = None;
        for i in 0..60i64 {
            // Flat at 60 for 20 windows, then +0.5 per minute (30 per hour).
            let v = if i < 20 { 60.0 } else { 60.0 + 0.5 * (i - 20) as f64 } + if i % 2 == 0 { 0.05 } else { -0.05 };
            p.observe_window(&cfg, &id, "temperature", (i + 1) * 60_000, v, lim);
            if let Some(pred) = p.end_window(&cfg) {
                last = Some(pred);
            }
        }
        let pred = last.unwrap();
        let rul = pred.rul_hours.expect("a trend towards the limit");
        // At i = 59 the value is about 79.5; 30.5 more at 30/h is about 1 h.
        assert!((rul - 1.0).abs() < 0.2, "rul {rul}");
        assert!(pred.health < 0.9 && pred.failure_probability > 0.9, "{pred:?}");
        assert!(pred.confidence > 0.8);
    }

    #[test]
    fn flat_sensor_is_healthy() {
        let cfg = PredictorConfig::default();
        let mut p = AssetPredictor::default();
        let id: Arc<str> = Arc::from("a-vib");
        for i in 0..40i64 {
            p.observe_window(
                &cfg,
                &id,
                "vibration",
                i * 60_000,
                3.0 + ((i * 7) % 5) as f64 * 0.01,
                Limits { low: None, high: Some(12.0) },
            );
        }
        let pred = p.predict(&cfg);
        assert!(pred.rul_hours.is_none());
        assert!(pred.health > 0.95);
    }
}
