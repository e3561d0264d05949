//! Weekly seasonal novelty: a value that is ordinary for the sensor but not for this hour of the
//! week (a weekday's traffic on a holiday, a night that looks like a day).
//!
//! Input: a sensor's closed windows in event-time order, as `(end_ts_ms, mean)`. Output: for each
//! window a score in `[0, weight]`; 0 until the window's slot of the week is known, during the
//! first [`SeasonalConfig::warmup`] scored windows, and for non-finite input.
//!
//! How a window is scored:
//! - **Slots.** The period ([`SeasonalConfig::period_ms`], a week) is cut into
//!   [`SeasonalConfig::buckets`] slots (168: the hours of the week), counted from the Unix epoch
//!   in UTC. A window falls in the slot of its last millisecond (`end_ts_ms − 1`), so a window
//!   never straddles two slots when its width divides the slot's.
//! - **Expected value.** Each slot keeps an exponentially weighted mean of the window means seen
//!   in it (weight [`SeasonalConfig::alpha`] for the newest), and how often it has been visited.
//! - **Residual novelty.** Once the slot has been visited [`SeasonalConfig::min_visits`] times,
//!   the residual `mean − slot mean` is compared with the range of residuals seen lately (a ring of
//!   [`SeasonalConfig::range_blocks`] blocks of [`SeasonalConfig::range_block`] residuals): with
//!   `e` the distance beyond that range as a share of its width, the raw score is
//!   `e / (e + tolerance)`, as in the novelty detector's spatial novelty.
//! - **Score.** `weight · max(raw − peak, 0)`, with `peak` a running peak of raw scores halving
//!   every [`SeasonalConfig::half_life`] scored windows, so one event raises one alert.
//!
//! Everything is relative to the sensor's own residuals, so the score is free of units and levels.
//! A slot counts every window that falls in it, so it is scored from its `min_visits`-th window
//! on: with 5-minute windows (NAB) within the first week, with 1-minute windows from the third
//! minute of each hour — the slot's mean is then a recent level more than a weekly one.
//!
//! State (per sensor, fixed at construction): `buckets` means and visit counts, two rings of
//! `range_blocks` floats and a few scalars (about 3.5 KiB by default); `serde`-serialisable, no
//! infinities or NaNs stored. Cost per window: one slot lookup and update, one range comparison,
//! plus `range_blocks` comparisons once per block; no allocation after construction.

use serde::{Deserialize, Serialize};

use crate::novelty::excursion_score;

/// A week in milliseconds.
pub const WEEK_MS: i64 = 7 * 86_400_000;

/// Settings of the [`Seasonal`] channel. `Default` holds the settings chosen on NAB's development
/// files (`benches/detect/nab_seasonal.py`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SeasonalConfig {
    /// Length of the season, ms (a week).
    pub period_ms: i64,
    /// Slots per season (168: hours of the week).
    pub buckets: usize,
    /// Weight of the newest window in its slot's mean.
    pub alpha: f64,
    /// Visits of a slot before its windows are scored.
    pub min_visits: u32,
    /// Excursion of a residual beyond the residuals' range, as a share of its width, that scores 0.5.
    pub tolerance: f64,
    /// Scored windows for the running peak of raw scores to halve (alert suppression).
    pub half_life: usize,
    /// Factor on the score (the channel's share of the novelty score); 0 turns the channel off.
    pub weight: f64,
    /// Residuals learnt before anything is scored.
    pub warmup: usize,
    /// Residuals per block of the range memory.
    pub range_block: usize,
    /// Blocks in the range memory.
    pub range_blocks: usize,
}

impl Default for SeasonalConfig {
    fn default() -> Self {
        SeasonalConfig {
            period_ms: WEEK_MS,
            buckets: 168,
            alpha: 0.1,
            min_visits: 3,
            tolerance: 0.2,
            half_life: 400,
            weight: 0.5,
            warmup: 50,
            range_block: 64,
            range_blocks: 64,
        }
    }
}

/// Per-sensor state of the seasonal channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seasonal {
    cfg: SeasonalConfig,
    /// Mean of each slot (valid when its visits are above 0).
    means: Vec<f64>,
    /// Visits of each slot, saturating at `min_visits`.
    visits: Vec<u32>,
    /// Range memory of the residuals.
    range: RangeMemory,
    /// Residuals scored so far (saturating at `warmup + 1`).
    residuals: usize,
    /// Running peak of raw scores, for suppression.
    peak: f64,
}

impl Default for Seasonal {
    fn default() -> Self {
        Seasonal::new(SeasonalConfig::default())
    }
}

impl Seasonal {
    /// A fresh channel; sizes below 1 are taken as 1.
    pub fn new(cfg: SeasonalConfig) -> Self {
        let buckets = cfg.buckets.max(1);
        Seasonal {
            means: vec![0.0; buckets],
            visits: vec![0; buckets],
            range: RangeMemory::new(cfg.range_block, cfg.range_blocks),
            residuals: 0,
            peak: 0.0,
            cfg,
        }
    }

    /// The settings.
    pub fn config(&self) -> &SeasonalConfig {
        &self.cfg
    }

    /// Whether the channel contributes at all (a positive weight).
    pub fn enabled(&self) -> bool {
        self.cfg.weight > 0.0
    }

    /// The slot of a window ending at `end_ts_ms` (exclusive).
    fn slot(&self, end_ts_ms: i64) -> usize {
        let period = self.cfg.period_ms.max(1);
        let phase = (end_ts_ms.saturating_sub(1)).rem_euclid(period) as i128;
        (phase * self.means.len() as i128 / i128::from(period)) as usize
    }

    /// Scores a closed window's mean and learns from it.
    pub fn observe(&mut self, end_ts_ms: i64, mean: f64) -> f64 {
        if !mean.is_finite() || !self.enabled() {
            return 0.0;
        }
        let b = self.slot(end_ts_ms);
        let min_visits = self.cfg.min_visits.max(1);
        let mut score = 0.0;
        if self.visits[b] >= min_visits {
            let r = mean - self.means[b];
            let raw = self.range.range().map_or(0.0, |(lo, hi)| excursion_score(lo, hi, r, r, self.cfg.tolerance));
            self.range.learn(r, r);
            self.residuals = (self.residuals + 1).min(self.cfg.warmup + 1);
            if self.residuals > self.cfg.warmup {
                score = (raw - self.peak).max(0.0);
            }
            let decay = 0.5f64.powf(1.0 / self.cfg.half_life.max(1) as f64);
            self.peak = (self.peak * decay).max(raw);
        }
        self.means[b] = if self.visits[b] == 0 { mean } else { self.means[b] + self.cfg.alpha * (mean - self.means[b]) };
        self.visits[b] = (self.visits[b] + 1).min(min_visits);
        (self.cfg.weight * score).clamp(0.0, 1.0)
    }
}

/// The min and max of the latest values, kept as a ring of blocks: `blocks` blocks of `block`
/// values each, the open block included (the novelty detector's range memory, on its own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RangeMemory {
    block: usize,
    lo: Vec<f64>,
    hi: Vec<f64>,
    pos: usize,
    closed: usize,
    closed_lo: f64,
    closed_hi: f64,
    in_block: usize,
    open_lo: f64,
    open_hi: f64,
}

impl RangeMemory {
    fn new(block: usize, blocks: usize) -> Self {
        RangeMemory {
            block: block.max(1),
            lo: vec![0.0; blocks.max(1)],
            hi: vec![0.0; blocks.max(1)],
            pos: 0,
            closed: 0,
            closed_lo: 0.0,
            closed_hi: 0.0,
            in_block: 0,
            open_lo: 0.0,
            open_hi: 0.0,
        }
    }

    fn range(&self) -> Option<(f64, f64)> {
        match (self.closed > 0, self.in_block > 0) {
            (true, true) => Some((self.closed_lo.min(self.open_lo), self.closed_hi.max(self.open_hi))),
            (true, false) => Some((self.closed_lo, self.closed_hi)),
            (false, true) => Some((self.open_lo, self.open_hi)),
            (false, false) => None,
        }
    }

    fn learn(&mut self, min: f64, max: f64) {
        if self.in_block == 0 {
            (self.open_lo, self.open_hi) = (min, max);
        } else {
            self.open_lo = self.open_lo.min(min);
            self.open_hi = self.open_hi.max(max);
        }
        self.in_block += 1;
        if self.in_block < self.block {
            return;
        }
        let blocks = self.lo.len();
        self.lo[self.pos] = self.open_lo;
        self.hi[self.pos] = self.open_hi;
        self.pos = (self.pos + 1) % blocks;
        self.closed = (self.closed + 1).min(blocks);
        self.in_block = 0;
        self.closed_lo = self.lo[..self.closed].iter().copied().fold(f64::INFINITY, f64::min);
        self.closed_hi = self.hi[..self.closed].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    /// A deterministic pseudo-random source in [-1, 1).
    struct Noise(u64);

    impl Noise {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        }
    }

    /// Hourly traffic-like values: busy working days, quiet nights and weekends.
    fn weekly(hour: i64, noise: &mut Noise) -> f64 {
        let h = hour % 24;
        let day = (hour / 24 + 3) % 7; // 1970-01-01 was a Thursday: 0 = Monday
        let working = day < 5;
        let base = if (7..20).contains(&h) {
            if working {
                900.0
            } else {
                400.0
            }
        } else {
            150.0
        };
        base + 20.0 * noise.next()
    }

    /// Feeds hourly windows `from..to` (window `i` ends at `(i + 1)` hours), returning the scores.
    fn run(d: &mut Seasonal, from: i64, to: i64, noise: &mut Noise, value: impl Fn(i64, f64) -> f64) -> Vec<f64> {
        (from..to).map(|i| d.observe((i + 1) * HOUR, value(i, weekly(i, noise)))).collect()
    }

    #[test]
    fn a_regular_week_scores_low_and_an_odd_day_high() {
        let mut d = Seasonal::default();
        let mut noise = Noise(0x2545_F491_4F6C_DD1D);
        let weeks = 8 * 168;
        let normal = run(&mut d, 0, weeks, &mut noise, |_, v| v);
        let late = normal[4 * 168..].iter().copied().fold(0.0, f64::max);
        assert!(late < 0.15, "regular weeks: {late}");
        // A working day that looks like a Sunday: every value is within the sensor's range.
        let start = weeks + 24 * ((7 - (weeks / 24 + 3) % 7) % 7) + 8; // the next Monday, 08:00
        let _ = run(&mut d, weeks, start, &mut noise, |_, v| v);
        let holiday = run(&mut d, start, start + 10, &mut noise, |_, v| v - 500.0);
        let top = holiday.iter().copied().fold(0.0, f64::max);
        assert!(top > 0.3 && top > 3.0 * late, "holiday {holiday:?}, regular weeks {late}");
        assert!(holiday.iter().all(|s| (0.0..=0.5).contains(s)));
    }

    #[test]
    fn nothing_is_scored_before_a_slot_is_known() {
        let mut d = Seasonal::default();
        let mut noise = Noise(3);
        // Two weeks: no slot has had its three visits.
        let first = run(&mut d, 0, 2 * 168, &mut noise, |i, v| v * (1.0 + (i % 17) as f64));
        assert!(first.iter().all(|s| *s == 0.0));
        // Off: a zero weight scores nothing and learns nothing.
        let mut off = Seasonal::new(SeasonalConfig { weight: 0.0, ..SeasonalConfig::default() });
        let fresh = off.clone();
        assert!(run(&mut off, 0, 5 * 168, &mut noise, |_, v| v).iter().all(|s| *s == 0.0));
        assert_eq!(off, fresh);
    }

    #[test]
    fn deterministic_scale_free_and_bad_input_ignored() {
        let go = |scale: f64| {
            let mut d = Seasonal::default();
            let mut noise = Noise(11);
            run(&mut d, 0, 6 * 168, &mut noise, |i, v| scale * v * if i == 5 * 168 + 2 { 2.5 } else { 1.0 })
        };
        let a = go(1.0);
        assert_eq!(a, go(1.0));
        assert!(a[5 * 168 + 2] > 0.15, "{}", a[5 * 168 + 2]);
        for (x, y) in a.iter().zip(go(1e-3)) {
            assert!((x - y).abs() < 1e-6, "{x} vs {y}");
        }
        let mut d = Seasonal::default();
        let twin = d.clone();
        assert_eq!(d.observe(HOUR, f64::NAN), 0.0);
        assert_eq!(d.observe(HOUR, f64::INFINITY), 0.0);
        assert_eq!(d, twin);
    }

    #[test]
    fn slots_follow_the_window_end() {
        let d = Seasonal::default();
        // A window [00:00, 01:00) on Thursday 1970-01-01 is slot 0; the next one slot 1.
        assert_eq!(d.slot(HOUR), 0);
        assert_eq!(d.slot(HOUR + 1), 1);
        assert_eq!(d.slot(WEEK_MS), 167);
        assert_eq!(d.slot(WEEK_MS + HOUR), 0);
        // Before the epoch too.
        assert_eq!(d.slot(-WEEK_MS + HOUR), 0);
    }

    #[test]
    fn state_is_bounded_and_round_trips() {
        let mut d = Seasonal::default();
        let mut noise = Noise(5);
        let _ = run(&mut d, 0, 1_000, &mut noise, |_, v| v);
        let early = serde_json::to_string(&d).expect("serialise").len();
        let _ = run(&mut d, 1_000, 100_000, &mut noise, |i, v| v + (i / 5_000) as f64 * 50.0);
        let text = serde_json::to_string(&d).expect("serialise");
        assert!(text.len() < 2 * early + 4_096, "{early} -> {}", text.len());
        assert_eq!((d.means.len(), d.visits.len(), d.range.lo.len()), (168, 168, 64));
        let mut restored: Seasonal = serde_json::from_str(&text).expect("deserialise");
        for i in 100_000..102_000 {
            let v = weekly(i, &mut noise) * if i % 300 == 0 { 2.0 } else { 1.0 };
            let (a, b) = (d.observe((i + 1) * HOUR, v), restored.observe((i + 1) * HOUR, v));
            assert!((a - b).abs() < 1e-9, "window {i}: {a} vs {b}");
        }
    }
}
