//! Robust statistical anomaly detector on a sensor's tumbling-window features.
//!
//! Input: the sensor's closed tumbling windows, in order. Output: for each window, `None` or a
//! [`RobustFinding`] with a score (in robust standard deviations) and the feature that triggered
//! it. The baseline is the median and MAD of the last `baseline` windows' means and standard
//! deviations; nothing is flagged before `warmup` windows. Four shapes are scored:
//! level (the mean against the median of means), spread (the std against the median std: noise
//! bursts), excursion (the min/max against the baseline mean and std: spikes) and stuck (a whole
//! window with zero spread where the baseline has some). A sensor whose window means wander (a
//! slow random walk about its level, as process values do) shows a baseline narrower than its
//! normal range. When the baseline means' lag-1 autocorrelation `ρ` (see
//! [`crate::drift::lag1_autocorrelation`]) says so (`ρ > 0.4`), its level is scored two ways and
//! the larger is kept: against a scale widened by `√((1 + ρ) / (1 − ρ))`, and as a jump from the
//! previous window against the window-to-window changes' robust spread (so a step still stands
//! out of the wandering); for independent means the level is scored as before. Flagged windows stay out of the baseline
//! unless the change persists for `adapt_after` windows, when the detector accepts the new level.
//! State: two rings of `baseline` floats per sensor.

use std::collections::VecDeque;

use crate::window::ClosedWindow;

/// Settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RobustConfig {
    /// Windows in the rolling baseline.
    pub baseline: usize,
    /// Windows needed before scoring.
    pub warmup: usize,
    /// Score at or above which a window is anomalous.
    pub threshold: f64,
    /// Consecutive anomalous windows after which the baseline accepts the new behaviour.
    pub adapt_after: usize,
}

impl Default for RobustConfig {
    fn default() -> Self {
        RobustConfig { baseline: 60, warmup: 15, threshold: 6.0, adapt_after: 10 }
    }
}

/// Why a window was flagged.
#[derive(Debug, Clone, PartialEq)]
pub struct RobustFinding {
    /// Score in robust standard deviations.
    pub score: f64,
    /// `level`, `spread`, `excursion` or `stuck`.
    pub feature: &'static str,
    /// Observed value of the feature.
    pub observed: f64,
    /// Baseline value it was compared with.
    pub expected: f64,
    /// Robust scale used.
    pub scale: f64,
}

/// Per-sensor detector state.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RobustDetector {
    cfg: RobustConfig,
    means: VecDeque<f64>,
    stds: VecDeque<f64>,
    streak: usize,
    scratch: Vec<f64>,
}

fn median_mad(values: &VecDeque<f64>, scratch: &mut Vec<f64>) -> (f64, f64) {
    scratch.clear();
    scratch.extend(values.iter().copied());
    scratch.sort_by(f64::total_cmp);
    let med = median_sorted(scratch);
    for v in scratch.iter_mut() {
        *v = (*v - med).abs();
    }
    scratch.sort_by(f64::total_cmp);
    (med, median_sorted(scratch))
}

fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl RobustDetector {
    /// A fresh detector.
    pub fn new(cfg: RobustConfig) -> Self {
        RobustDetector { cfg, means: VecDeque::new(), stds: VecDeque::new(), streak: 0, scratch: Vec::new() }
    }

    /// Forgets the baseline (after maintenance).
    pub fn reset(&mut self) {
        self.means.clear();
        self.stds.clear();
        self.streak = 0;
    }

    /// Whether the detector has seen enough windows to score.
    pub fn warmed_up(&self) -> bool {
        self.means.len() >= self.cfg.warmup
    }

    /// Scores a window and updates the baseline.
    pub fn observe(&mut self, w: &ClosedWindow) -> Option<RobustFinding> {
        let finding = if self.warmed_up() { self.score(w) } else { None };
        let anomalous = finding.as_ref().is_some_and(|f| f.score >= self.cfg.threshold);
        if anomalous {
            self.streak += 1;
        } else {
            self.streak = 0;
        }
        if !anomalous || self.streak >= self.cfg.adapt_after {
            if self.streak >= self.cfg.adapt_after {
                // The change persisted: it is the new normal; restart the baseline from here.
                self.means.clear();
                self.stds.clear();
                self.streak = 0;
            }
            self.means.push_back(w.mean);
            self.stds.push_back(w.std);
            if self.means.len() > self.cfg.baseline {
                self.means.pop_front();
                self.stds.pop_front();
            }
        }
        finding.filter(|f| f.score >= self.cfg.threshold)
    }

    fn score(&mut self, w: &ClosedWindow) -> Option<RobustFinding> {
        let (med_mean, mad_mean) = median_mad(&self.means, &mut self.scratch);
        let (med_std, mad_std) = median_mad(&self.stds, &mut self.scratch);
        // Floors keep a perfectly flat baseline from turning rounding noise into anomalies.
        let floor = 1e-6 * med_mean.abs().max(1.0);
        let means = self.means.make_contiguous();
        let rho = crate::drift::lag1_autocorrelation(means, means.iter().sum::<f64>() / means.len().max(1) as f64);
        let wanders = rho > 0.4;
        let widen = if wanders { ((1.0 + rho) / (1.0 - rho)).sqrt() } else { 1.0 };
        let level_scale = (1.4826 * mad_mean * widen).max(floor).max(0.05 * med_std);
        // The jump from the previous window, against the robust spread of such jumps.
        let jump = if wanders {
            self.scratch.clear();
            self.scratch.extend(means.windows(2).map(|p| (p[1] - p[0]).abs()));
            self.scratch.sort_by(f64::total_cmp);
            let scale = (1.4826 * median_sorted(&self.scratch)).max(floor).max(0.05 * med_std);
            means.last().map(|last| ((w.mean - last).abs() / scale, *last, scale))
        } else {
            None
        };
        let spread_scale = (1.4826 * mad_std).max(0.1 * med_std).max(floor);
        let point_scale = med_std.max(level_scale).max(floor);

        let mut best = RobustFinding { score: 0.0, feature: "level", observed: w.mean, expected: med_mean, scale: level_scale };
        let mut consider = |score: f64, feature: &'static str, observed: f64, expected: f64, scale: f64| {
            if score > best.score {
                best = RobustFinding { score, feature, observed, expected, scale };
            }
        };
        consider((w.mean - med_mean).abs() / level_scale, "level", w.mean, med_mean, level_scale);
        if let Some((score, last, scale)) = jump {
            consider(score, "level", w.mean, last, scale);
        }
        if w.count >= 3 {
            consider((w.std - med_std) / spread_scale, "spread", w.std, med_std, spread_scale);
        }
        // Excursions are scored against the point spread, discounted so that the extremes of
        // a normal window (about 2.5 std for 60 readings) stay well below the threshold.
        let hi = (w.max - med_mean) / point_scale;
        let lo = (med_mean - w.min) / point_scale;
        let (ext, observed) = if hi >= lo { (hi, w.max) } else { (lo, w.min) };
        consider((ext - 3.0).max(0.0) * 1.5, "excursion", observed, med_mean, point_scale);
        // A frozen value: every reading of the window equal (compared exactly, not through the std,
        // which rounding keeps a hair above zero).
        if w.count >= 10 && w.min == w.max && med_std > 0.0 {
            consider(self.cfg.threshold * 1.5, "stuck", w.std, med_std, spread_scale);
        }
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_events::WindowKind;

    fn win(mean: f64, std: f64) -> ClosedWindow {
        ClosedWindow {
            kind: WindowKind::Tumbling,
            start: 0,
            end: 60_000,
            count: 60,
            mean,
            min: mean - 2.5 * std,
            max: mean + 2.5 * std,
            std,
            rms: mean,
            slope: 0.0,
            last: mean,
        }
    }

    fn warmed() -> RobustDetector {
        let mut d = RobustDetector::new(RobustConfig::default());
        for i in 0..30 {
            let jitter = ((i * 7919) % 13) as f64 / 13.0 - 0.5;
            assert!(d.observe(&win(50.0 + 0.2 * jitter, 1.0 + 0.1 * jitter)).is_none());
        }
        d
    }

    #[test]
    fn normal_windows_are_quiet() {
        let mut d = warmed();
        assert!(d.observe(&win(50.05, 1.02)).is_none());
    }

    #[test]
    fn finds_each_shape() {
        assert_eq!(warmed().observe(&win(56.0, 1.0)).unwrap().feature, "level");
        assert_eq!(warmed().observe(&win(50.0, 6.0)).unwrap().feature, "spread");
        let mut spike = win(50.1, 1.2);
        spike.max = 70.0;
        assert_eq!(warmed().observe(&spike).unwrap().feature, "excursion");
        let mut stuck = win(50.0, 0.0);
        stuck.min = 50.0;
        stuck.max = 50.0;
        assert_eq!(warmed().observe(&stuck).unwrap().feature, "stuck");
    }

    #[test]
    fn nothing_is_flagged_during_warmup() {
        let mut d = RobustDetector::new(RobustConfig::default());
        assert!(d.observe(&win(1000.0, 0.0)).is_none());
        assert!(!d.warmed_up());
    }

    #[test]
    fn a_wandering_level_is_not_an_anomaly_but_a_step_from_it_is() {
        // Window means of a mean-reverting random walk (AR(1), 0.97) with a little noise.
        let (mut flagged, mut state, mut x) = (0, 7u64, 0.0);
        let mut gauss = move || {
            (0..12)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (state >> 11) as f64 / (1u64 << 53) as f64
                })
                .sum::<f64>()
                - 6.0
        };
        let mut d = RobustDetector::new(RobustConfig::default());
        let mut level = 0.0;
        for _ in 0..3000 {
            x = 0.97 * x + 0.25 * gauss();
            level = 50.0 + x + 0.05 * gauss();
            flagged += usize::from(d.observe(&win(level, 0.4)).is_some());
        }
        // Scored as independent means, 17 of these 3,000 windows (50 h of one sensor) were flagged; now none.
        assert!(flagged <= 6, "{flagged} of 3000 wandering windows flagged");
        let step = d.observe(&win(level + 8.0, 0.4)).expect("a step of 8 (about 8 of its long-run sd) is found");
        assert_eq!(step.feature, "level");
    }

    #[test]
    fn persistent_change_becomes_the_new_baseline() {
        let mut d = warmed();
        let flagged = (0..40).filter(|_| d.observe(&win(80.0, 1.0)).is_some()).count();
        assert!((10..40).contains(&flagged), "flagged {flagged}");
    }
}
