//! Event-time windows of one sensor: tumbling and hopping, built from panes.
//!
//! Input: readings of one sensor `(ts, pos, value)` in event-time order (ties by position), and the
//! watermark. Output: one [`WindowFeatures`]-shaped [`Moments`] per window that holds data, once
//! the watermark has passed its end (or at end of input): count, mean, min, max, std, rms, slope
//! and last. A window is emitted once, final: readings within the allowed lateness reach it before
//! the watermark passes its end, so downstream never sees a window twice.
//!
//! State: panes of `gcd(tumbling, hop size, hop step)` milliseconds with mergeable moments; only
//! the panes the still-open windows need are kept (about `hop size / pane + 1`), so memory per
//! sensor is bounded whatever the length of the stream. Hopping windows are merged from panes, so
//! each reading updates one pane, not `size / step` windows.

use std::collections::VecDeque;

use vigil_events::{EventTime, SourcePos, WindowKind};

/// Window sizes in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WindowConfig {
    /// Tumbling window size.
    pub tumbling_ms: i64,
    /// Hopping window size.
    pub hopping_size_ms: i64,
    /// Hopping window step.
    pub hopping_step_ms: i64,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig { tumbling_ms: 60_000, hopping_size_ms: 600_000, hopping_step_ms: 60_000 }
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl WindowConfig {
    /// The pane size: the largest size that divides every window boundary.
    pub fn pane_ms(&self) -> i64 {
        gcd(self.tumbling_ms, gcd(self.hopping_size_ms, self.hopping_step_ms)).max(1)
    }

    /// Checks the sizes are positive.
    pub fn validate(&self) -> Result<(), String> {
        if self.tumbling_ms <= 0 || self.hopping_size_ms <= 0 || self.hopping_step_ms <= 0 {
            return Err("window sizes must be positive".into());
        }
        if self.hopping_step_ms > self.hopping_size_ms {
            return Err("the hopping step must not exceed the hopping size".into());
        }
        Ok(())
    }
}

/// Mergeable moments of a set of readings. Values are shifted by a per-sensor reference to keep
/// the sums of squares accurate. The time moments are centred (mean time, sum of squared time
/// deviations, co-moment of time and value), updated with Welford's rule and merged with Chan's,
/// so the slope stays exact however far from the window start the readings are, and is exactly 0
/// when every reading has the same time.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Moments {
    /// Number of readings.
    pub count: u64,
    sum: f64,
    sumsq: f64,
    /// Minimum value.
    pub min: f64,
    /// Maximum value.
    pub max: f64,
    mean_t: f64,
    m2_t: f64,
    co_tv: f64,
    last_key: (EventTime, SourcePos),
    /// Value of the latest reading.
    pub last: f64,
}

impl Moments {
    fn new() -> Self {
        Moments {
            count: 0,
            sum: 0.0,
            sumsq: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            mean_t: 0.0,
            m2_t: 0.0,
            co_tv: 0.0,
            last_key: (EventTime::MIN, SourcePos::default()),
            last: f64::NAN,
        }
    }

    #[inline]
    fn add(&mut self, t_sec: f64, shifted: f64, value: f64, key: (EventTime, SourcePos)) {
        self.count += 1;
        let n = self.count as f64;
        self.sum += shifted;
        self.sumsq += shifted * shifted;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        let dt = t_sec - self.mean_t;
        self.mean_t += dt / n;
        self.m2_t += dt * (t_sec - self.mean_t);
        self.co_tv += dt * (shifted - self.sum / n);
        if key >= self.last_key {
            self.last_key = key;
            self.last = value;
        }
    }

    /// Adds `other`, whose times are `d` seconds later than this one's origin.
    fn merge(&mut self, other: &Moments, d: f64) {
        if other.count == 0 {
            return;
        }
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let mean_va = if self.count > 0 { self.sum / na } else { 0.0 };
        let mean_vb = other.sum / nb;
        let delta_t = other.mean_t + d - self.mean_t;
        let delta_v = mean_vb - mean_va;
        self.mean_t += delta_t * nb / n;
        self.m2_t += other.m2_t + delta_t * delta_t * na * nb / n;
        self.co_tv += other.co_tv + delta_t * delta_v * na * nb / n;
        self.count += other.count;
        self.sum += other.sum;
        self.sumsq += other.sumsq;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        if other.last_key >= self.last_key {
            self.last_key = other.last_key;
            self.last = other.last;
        }
    }

    /// The features `(mean, std, rms, slope per second)` given the sensor's value reference.
    pub fn features(&self, reference: f64) -> (f64, f64, f64, f64) {
        let n = self.count as f64;
        let mean_shifted = self.sum / n;
        let mean = mean_shifted + reference;
        let var = (self.sumsq / n - mean_shifted * mean_shifted).max(0.0);
        let std = var.sqrt();
        let sq = self.sumsq + 2.0 * reference * self.sum + n * reference * reference;
        let rms = (sq / n).max(0.0).sqrt();
        let slope = if self.m2_t > 0.0 { self.co_tv / self.m2_t } else { 0.0 };
        (mean, std, rms, slope)
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Pane {
    start: EventTime,
    m: Moments,
}

/// A closed window of one sensor.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedWindow {
    /// Kind.
    pub kind: WindowKind,
    /// Inclusive start.
    pub start: EventTime,
    /// Exclusive end.
    pub end: EventTime,
    /// Count.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Min.
    pub min: f64,
    /// Max.
    pub max: f64,
    /// Std (population).
    pub std: f64,
    /// Root mean square.
    pub rms: f64,
    /// Least-squares slope, per second.
    pub slope: f64,
    /// Last value.
    pub last: f64,
}

/// The open windows of one sensor.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SensorWindows {
    cfg: WindowConfig,
    pane_ms: i64,
    panes: VecDeque<Pane>,
    reference: Option<f64>,
    /// Every tumbling window ending at or before this has been emitted.
    tumble_done: EventTime,
    /// Every hopping window ending at or before this has been emitted.
    hop_done: EventTime,
}

/// A reading arrived for a window that was already emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event time {ts} falls in a window already closed at {closed_until}")]
pub struct LateReading {
    /// The reading's time.
    pub ts: EventTime,
    /// Windows are closed up to here.
    pub closed_until: EventTime,
}

impl SensorWindows {
    /// Empty windows.
    pub fn new(cfg: WindowConfig) -> Self {
        SensorWindows {
            cfg,
            pane_ms: cfg.pane_ms(),
            panes: VecDeque::new(),
            reference: None,
            tumble_done: EventTime::MIN,
            hop_done: EventTime::MIN,
        }
    }

    /// Number of panes held (for memory accounting and tests).
    pub fn panes_held(&self) -> usize {
        self.panes.len()
    }

    /// The earliest event time still accepted.
    pub fn closed_until(&self) -> EventTime {
        let hop_needed = if self.hop_done == EventTime::MIN { EventTime::MIN } else { self.hop_done };
        self.tumble_done.max(hop_needed)
    }

    /// Adds a reading. Readings must come in event-time order per sensor for `last` ties to be
    /// deterministic; any order gives the same sums.
    pub fn insert(&mut self, ts: EventTime, pos: SourcePos, value: f64) -> Result<(), LateReading> {
        if ts < self.closed_until() {
            return Err(LateReading { ts, closed_until: self.closed_until() });
        }
        let reference = *self.reference.get_or_insert(value);
        let start = ts.div_euclid(self.pane_ms) * self.pane_ms;
        let idx = match self.panes.iter().rposition(|p| p.start <= start) {
            Some(i) if self.panes[i].start == start => i,
            Some(i) => {
                self.panes.insert(i + 1, Pane { start, m: Moments::new() });
                i + 1
            }
            None => {
                self.panes.push_front(Pane { start, m: Moments::new() });
                0
            }
        };
        let t_sec = (ts - start) as f64 / 1000.0;
        self.panes[idx].m.add(t_sec, value - reference, value, (ts, pos));
        Ok(())
    }

    fn merged(&self, start: EventTime, end: EventTime) -> Option<Moments> {
        let mut acc: Option<Moments> = None;
        // Panes are in start order: skip to the first in the window (a replay closing a long
        // stretch at once must not rescan every pane per window).
        let from = self.panes.partition_point(|p| p.start < start);
        for p in self.panes.range(from..).take_while(|p| p.start < end) {
            let d = (p.start - start) as f64 / 1000.0;
            match &mut acc {
                None => {
                    let mut m = Moments::new();
                    m.merge(&p.m, d);
                    acc = Some(m);
                }
                Some(m) => m.merge(&p.m, d),
            }
        }
        acc
    }

    fn close_one(&self, kind: WindowKind, start: EventTime, end: EventTime, out: &mut Vec<ClosedWindow>) {
        if let Some(m) = self.merged(start, end) {
            let (mean, std, rms, slope) = m.features(self.reference.unwrap_or(0.0));
            out.push(ClosedWindow {
                kind,
                start,
                end,
                count: m.count,
                mean,
                min: m.min,
                max: m.max,
                std,
                rms,
                slope,
                last: m.last,
            });
        }
    }

    /// Emits, in order of window end, every window that ends at or before `watermark`
    /// (`None` is the end of input: every window holding data), and drops panes no longer needed.
    pub fn close(&mut self, watermark: Option<EventTime>, out: &mut Vec<ClosedWindow>) {
        let limit = watermark.unwrap_or(EventTime::MAX);
        let WindowConfig { tumbling_ms: t, hopping_size_ms: h, hopping_step_ms: e } = self.cfg;
        let mut tumbling = Vec::new();
        let mut hopping = Vec::new();

        // Tumbling windows.
        while let Some(p) = self.panes.get(self.panes.partition_point(|p| p.start < self.tumble_done)) {
            let start = p.start.div_euclid(t) * t;
            let end = start + t;
            if end > limit {
                break;
            }
            self.close_one(WindowKind::Tumbling, start, end, &mut tumbling);
            self.tumble_done = end;
        }

        // Hopping windows [s, s + h) with s a multiple of e.
        loop {
            let next_s = if self.hop_done == EventTime::MIN { EventTime::MIN } else { (self.hop_done - h).div_euclid(e) * e + e };
            let Some(p) = self.panes.get(self.panes.partition_point(|p| p.start < next_s)) else { break };
            let first_s = (p.start - h).div_euclid(e) * e + e;
            let s = first_s.max(next_s);
            let end = s + h;
            if end > limit {
                break;
            }
            self.close_one(WindowKind::Hopping, s, end, &mut hopping);
            self.hop_done = end;
        }

        // Drop panes no open window needs.
        let hop_keep = if self.hop_done == EventTime::MIN { EventTime::MIN } else { (self.hop_done - h).div_euclid(e) * e + e };
        let keep_from = self.tumble_done.min(hop_keep);
        while self.panes.front().is_some_and(|p| p.start < keep_from) {
            self.panes.pop_front();
        }

        // One order for every run: by end, tumbling before hopping.
        let mut merged: Vec<ClosedWindow> = tumbling.into_iter().chain(hopping).collect();
        merged.sort_by_key(|w| (w.end, w.kind as u8));
        out.extend(merged);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(i: u64) -> SourcePos {
        SourcePos { source: 0, offset: i }
    }

    #[test]
    fn tumbling_features_match_a_direct_computation() {
        let cfg = WindowConfig { tumbling_ms: 60_000, hopping_size_ms: 120_000, hopping_step_ms: 60_000 };
        let mut w = SensorWindows::new(cfg);
        // 60 readings, one a second, value = 10 + 0.5 t.
        for i in 0..60 {
            w.insert(i * 1000, pos(i as u64), 10.0 + 0.5 * i as f64).unwrap();
        }
        let mut out = Vec::new();
        w.close(Some(59_999), &mut out);
        assert!(out.is_empty(), "the window is not over yet");
        w.close(Some(60_000), &mut out);
        assert_eq!(out.len(), 2, "the tumbling window and the hopping window ending with it");
        let f = &out[0];
        assert_eq!((out[1].kind, out[1].start, out[1].count), (WindowKind::Hopping, -60_000, 60));
        assert_eq!((f.kind, f.start, f.end, f.count), (WindowKind::Tumbling, 0, 60_000, 60));
        assert!((f.mean - (10.0 + 0.5 * 29.5)).abs() < 1e-9);
        assert_eq!((f.min, f.max, f.last), (10.0, 39.5, 39.5));
        assert!((f.slope - 0.5).abs() < 1e-9, "slope {}", f.slope);
        let std = (0..60).map(|i| (0.5 * i as f64 - 14.75).powi(2)).sum::<f64>() / 60.0;
        assert!((f.std - std.sqrt()).abs() < 1e-9);
        let rms = ((0..60).map(|i| (10.0 + 0.5 * i as f64).powi(2)).sum::<f64>() / 60.0).sqrt();
        assert!((f.rms - rms).abs() < 1e-9);
    }

    #[test]
    fn hopping_windows_cover_every_step_holding_data() {
        let cfg = WindowConfig { tumbling_ms: 60_000, hopping_size_ms: 180_000, hopping_step_ms: 60_000 };
        let mut w = SensorWindows::new(cfg);
        w.insert(30_000, pos(0), 1.0).unwrap();
        w.insert(90_000, pos(1), 3.0).unwrap();
        let mut out = Vec::new();
        w.close(None, &mut out);
        let hop: Vec<_> = out.iter().filter(|w| w.kind == WindowKind::Hopping).map(|w| (w.start, w.end, w.count)).collect();
        assert_eq!(hop, vec![(-120_000, 60_000, 1), (-60_000, 120_000, 2), (0, 180_000, 2), (60_000, 240_000, 1)]);
        let tum: Vec<_> = out.iter().filter(|w| w.kind == WindowKind::Tumbling).map(|w| (w.start, w.count)).collect();
        assert_eq!(tum, vec![(0, 1), (60_000, 1)]);
        assert_eq!(w.panes_held(), 0);
    }

    #[test]
    fn late_readings_are_refused_and_state_stays_bounded() {
        let mut w = SensorWindows::new(WindowConfig::default());
        let mut out = Vec::new();
        for i in 0..100_000i64 {
            w.insert(i * 1000, pos(i as u64), (i % 7) as f64).unwrap();
            if i % 60 == 0 {
                w.close(Some(i * 1000 - 30_000), &mut out);
                assert!(w.panes_held() <= 12, "panes {}", w.panes_held());
            }
        }
        assert!(w.insert(0, pos(0), 1.0).is_err());
    }

    #[test]
    fn gaps_do_not_loop_over_empty_windows() {
        let mut w = SensorWindows::new(WindowConfig::default());
        w.insert(0, pos(0), 1.0).unwrap();
        w.insert(1_000_000_000_000, pos(1), 2.0).unwrap();
        let mut out = Vec::new();
        w.close(None, &mut out);
        assert_eq!(out.iter().filter(|w| w.kind == WindowKind::Tumbling).count(), 2);
        assert_eq!(out.iter().filter(|w| w.kind == WindowKind::Hopping).count(), 20);
    }
}
