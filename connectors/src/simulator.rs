//! The fleet simulator: normal behaviour, injected anomalies, drift, degradation, bad records.
//!
//! A [`Fleet`] is fixed by its [`FleetConfig`] (seeded): which sensors exist, which anomalies,
//! drifts and degradations happen when, and which records are bad. Readings are produced per
//! sensor in time order by a [`SensorSim`], so any partition of the sensors (one per worker)
//! produces the same records. [`GroundTruth`] is what was injected, for scoring and for `--labels`.
//!
//! Normal behaviour: a per-sensor base level, a slow sinusoid, and AR(1) noise. Anomalies:
//! spikes (a few readings far off), level shifts, stuck values and noise bursts. Drift: a linear
//! offset growing from an onset. Degradation: an asset's temperature and vibration rise
//! quadratically to their high limit at the failure time. Bad records (JSON only): malformed,
//! missing field, bad type, non-finite, out of range, future timestamp, duplicate, too late,
//! oversized — counted by reason in the ground truth.

use std::io::Write;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};
use vigil_events::{format_rfc3339_ms, EventTime, RejectReason, SensorType, StableHasher};

/// Settings of a simulated fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetConfig {
    /// Assets.
    pub assets: usize,
    /// Sensors per asset.
    pub sensors_per_asset: usize,
    /// Simulated hours.
    pub hours: f64,
    /// Seed.
    pub seed: u64,
    /// Start of the simulation, ms since the epoch.
    pub start_ms: EventTime,
    /// Interval between readings of one sensor, ms.
    pub interval_ms: i64,
    /// Anomalies injected per sensor per hour (on average).
    pub anomalies_per_sensor_hour: f64,
    /// Fraction of sensors that drift.
    pub drift_fraction: f64,
    /// Fraction of assets that degrade towards failure.
    pub degrading_fraction: f64,
    /// Fraction of records made bad (JSON output only).
    pub bad_record_rate: f64,
    /// Asset ids are `<prefix>-0001`, `<prefix>-0002`, ...
    #[serde(default = "default_asset_prefix")]
    pub asset_prefix: String,
}

fn default_asset_prefix() -> String {
    "asset".into()
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            assets: 50,
            sensors_per_asset: 6,
            hours: 2.0,
            seed: 42,
            start_ms: 1_767_225_600_000, // 2026-01-01T00:00:00Z
            interval_ms: 1000,
            anomalies_per_sensor_hour: 0.5,
            drift_fraction: 0.1,
            degrading_fraction: 0.1,
            bad_record_rate: 0.0,
            asset_prefix: default_asset_prefix(),
        }
    }
}

/// Kind of an injected anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// A few readings far from normal.
    Spike,
    /// The level moves and stays for a while.
    LevelShift,
    /// The value freezes.
    Stuck,
    /// The noise grows.
    NoiseBurst,
}

/// An injected anomaly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InjectedAnomaly {
    /// Sensor.
    pub sensor_id: String,
    /// Asset.
    pub asset_id: String,
    /// Kind.
    pub kind: AnomalyKind,
    /// Start (inclusive), ms.
    pub start: EventTime,
    /// End (exclusive), ms.
    pub end: EventTime,
    /// Magnitude in noise standard deviations (or the noise multiplier).
    pub magnitude: f64,
}

/// An injected drift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InjectedDrift {
    /// Sensor.
    pub sensor_id: String,
    /// Asset.
    pub asset_id: String,
    /// Onset, ms.
    pub start: EventTime,
    /// Offset growth, noise standard deviations per hour.
    pub sigmas_per_hour: f64,
}

/// An injected degradation of an asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InjectedDegradation {
    /// Asset.
    pub asset_id: String,
    /// Onset, ms.
    pub start: EventTime,
    /// When the affected sensors reach their high limit, ms.
    pub failure: EventTime,
    /// Affected sensors.
    pub sensors: Vec<String>,
}

/// Reasons of injected bad records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BadKind {
    /// Not JSON.
    MalformedJson,
    /// No value.
    MissingField,
    /// Value is text.
    BadType,
    /// Value is "NaN".
    NonFinite,
    /// Physically impossible.
    OutOfRange,
    /// Far in the future.
    FutureTs,
    /// The previous record again.
    Duplicate,
    /// Ten minutes old.
    TooLate,
    /// Above 1 MiB.
    Oversized,
}

impl BadKind {
    const ALL: [BadKind; 9] = [
        BadKind::MalformedJson,
        BadKind::MissingField,
        BadKind::BadType,
        BadKind::NonFinite,
        BadKind::OutOfRange,
        BadKind::FutureTs,
        BadKind::Duplicate,
        BadKind::TooLate,
        BadKind::Oversized,
    ];
    /// The reason the pipeline must give it.
    pub fn reason(self) -> RejectReason {
        match self {
            BadKind::MalformedJson => RejectReason::MalformedJson,
            BadKind::MissingField => RejectReason::MissingField,
            BadKind::BadType => RejectReason::BadType,
            BadKind::NonFinite => RejectReason::NonFinite,
            BadKind::OutOfRange => RejectReason::OutOfRange,
            BadKind::FutureTs => RejectReason::FutureTs,
            BadKind::Duplicate => RejectReason::Duplicate,
            BadKind::TooLate => RejectReason::TooLate,
            BadKind::Oversized => RejectReason::Oversized,
        }
    }
}

/// What the simulator injected.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    /// Fleet settings.
    pub config: Option<FleetConfig>,
    /// Anomalies.
    pub anomalies: Vec<InjectedAnomaly>,
    /// Drifts.
    pub drifts: Vec<InjectedDrift>,
    /// Degradations.
    pub degradations: Vec<InjectedDegradation>,
    /// Records written, good and bad.
    pub records: u64,
    /// Bad records by expected reason.
    pub bad_records: std::collections::BTreeMap<String, u64>,
}

/// One simulated sensor.
#[derive(Debug, Clone)]
pub struct SimSensor {
    /// Index in the fleet.
    pub index: usize,
    /// Id.
    pub sensor_id: String,
    /// Asset.
    pub asset_id: String,
    /// Type.
    pub sensor_type: SensorType,
    base: f64,
    sigma: f64,
    period_s: f64,
    phase: f64,
    anomalies: Vec<InjectedAnomaly>,
    drift: Option<InjectedDrift>,
    degradation: Option<(EventTime, EventTime, f64)>,
}

impl SimSensor {
    /// A spike of `sigmas` times this sensor's noise (what [`crate::export::FeedControl::inject`]
    /// adds to a reading).
    pub fn spike(&self, sigmas: f64) -> f64 {
        sigmas * self.sigma
    }
}

/// The fleet.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// Settings.
    pub cfg: FleetConfig,
    /// Sensors.
    pub sensors: Vec<SimSensor>,
    /// Ground truth of behaviour (records counted as they are produced).
    pub truth: GroundTruth,
}

const TYPES: [SensorType; 6] = [
    SensorType::Temperature,
    SensorType::Vibration,
    SensorType::Pressure,
    SensorType::Current,
    SensorType::Rpm,
    SensorType::Humidity,
];

fn type_params(t: SensorType) -> (f64, f64) {
    match t {
        SensorType::Temperature => (60.0, 0.5),
        SensorType::Vibration => (3.0, 0.12),
        SensorType::Pressure => (400.0, 3.0),
        SensorType::Current => (40.0, 0.8),
        SensorType::Rpm => (1500.0, 5.0),
        SensorType::Humidity => (45.0, 1.0),
        _ => (100.0, 1.0),
    }
}

fn rng_for(seed: u64, parts: &[u64]) -> SmallRng {
    let mut h = StableHasher::default();
    h.write_u64(seed);
    for p in parts {
        h.write_u64(*p);
    }
    SmallRng::seed_from_u64(h.finish())
}

impl Fleet {
    /// Builds the fleet and everything that will be injected.
    pub fn new(cfg: FleetConfig) -> Fleet {
        let duration = (cfg.hours * 3_600_000.0) as i64;
        let mut sensors = Vec::new();
        let mut truth = GroundTruth { config: Some(cfg.clone()), ..Default::default() };
        let mut fleet_rng = rng_for(cfg.seed, &[0]);
        let n_degrading = ((cfg.assets as f64 * cfg.degrading_fraction).round() as usize).min(cfg.assets);
        let mut degrading: Vec<usize> = (0..cfg.assets).collect();
        for i in (1..degrading.len()).rev() {
            let j = fleet_rng.random_range(0..=i);
            degrading.swap(i, j);
        }
        degrading.truncate(n_degrading);
        for a in 0..cfg.assets {
            let asset_id = format!("{}-{:04}", cfg.asset_prefix, a + 1);
            let mut arng = rng_for(cfg.seed, &[1, a as u64]);
            let degradation = degrading.contains(&a).then(|| {
                let start = cfg.start_ms + (duration as f64 * arng.random_range(0.15..0.35)) as i64;
                let failure = start + (duration as f64 * arng.random_range(0.8..1.6)) as i64;
                (start, failure)
            });
            let mut degraded_sensors = Vec::new();
            for s in 0..cfg.sensors_per_asset {
                let index = sensors.len();
                let sensor_type = TYPES[s % TYPES.len()];
                let suffix = if s < TYPES.len() {
                    sensor_type.as_str().to_string()
                } else {
                    format!("{}-{}", sensor_type.as_str(), s / TYPES.len() + 1)
                };
                let sensor_id = format!("{asset_id}-{suffix}");
                let mut r = rng_for(cfg.seed, &[2, index as u64]);
                let (base0, sigma) = type_params(sensor_type);
                let base = base0 * (1.0 + r.random_range(-0.08..0.08));
                let period_s = r.random_range(1200.0..2400.0);
                let phase = r.random_range(0.0..std::f64::consts::TAU);
                // Anomalies: a Poisson number, placed after a warm-up, not overlapping.
                let mut anomalies = Vec::new();
                let expected = cfg.anomalies_per_sensor_hour * cfg.hours;
                let count = poisson(&mut r, expected);
                let warmup = (duration as f64 * 0.2).max(20.0 * 60_000.0) as i64;
                for _ in 0..count {
                    let kind = match r.random_range(0..4) {
                        0 => AnomalyKind::Spike,
                        1 => AnomalyKind::LevelShift,
                        2 => AnomalyKind::Stuck,
                        _ => AnomalyKind::NoiseBurst,
                    };
                    let len_ms = match kind {
                        AnomalyKind::Spike => r.random_range(1..=3) * cfg.interval_ms,
                        AnomalyKind::LevelShift => r.random_range(5..=12) * 60_000,
                        AnomalyKind::Stuck => r.random_range(5..=12) * 60_000,
                        AnomalyKind::NoiseBurst => r.random_range(4..=10) * 60_000,
                    };
                    let latest = duration - len_ms - 10 * 60_000;
                    if latest <= warmup {
                        continue;
                    }
                    let start = cfg.start_ms + (r.random_range(warmup..latest) / cfg.interval_ms) * cfg.interval_ms;
                    let end = start + len_ms;
                    let magnitude = match kind {
                        AnomalyKind::Spike => r.random_range(15.0..25.0) * if r.random_bool(0.5) { 1.0 } else { -1.0 },
                        AnomalyKind::LevelShift => r.random_range(4.0..7.0) * if r.random_bool(0.5) { 1.0 } else { -1.0 },
                        AnomalyKind::Stuck => 0.0,
                        AnomalyKind::NoiseBurst => r.random_range(5.0..8.0),
                    };
                    // Keep one anomaly at a time per sensor, with a gap for the baseline to settle.
                    if anomalies.iter().any(|x: &InjectedAnomaly| start < x.end + 15 * 60_000 && x.start < end + 15 * 60_000) {
                        continue;
                    }
                    anomalies.push(InjectedAnomaly {
                        sensor_id: sensor_id.clone(),
                        asset_id: asset_id.clone(),
                        kind,
                        start,
                        end,
                        magnitude,
                    });
                }
                anomalies.sort_by_key(|a| a.start);
                let drift = (r.random_bool(cfg.drift_fraction.clamp(0.0, 1.0)) && degradation.is_none()).then(|| InjectedDrift {
                    sensor_id: sensor_id.clone(),
                    asset_id: asset_id.clone(),
                    start: cfg.start_ms + (duration as f64 * r.random_range(0.3..0.6)) as i64,
                    sigmas_per_hour: r.random_range(4.0..8.0) * if r.random_bool(0.5) { 1.0 } else { -1.0 },
                });
                let degr = match (degradation, sensor_type) {
                    (Some((start, failure)), SensorType::Temperature | SensorType::Vibration) => {
                        degraded_sensors.push(sensor_id.clone());
                        let (_, high) = sensor_type.operating_limits();
                        Some((start, failure, high.unwrap_or(base * 2.0) - base))
                    }
                    _ => None,
                };
                truth.anomalies.extend(anomalies.iter().cloned());
                if let Some(d) = &drift {
                    truth.drifts.push(d.clone());
                }
                sensors.push(SimSensor {
                    index,
                    sensor_id,
                    asset_id: asset_id.clone(),
                    sensor_type,
                    base,
                    sigma,
                    period_s,
                    phase,
                    anomalies,
                    drift,
                    degradation: degr,
                });
            }
            if let Some((start, failure)) = degradation {
                truth.degradations.push(InjectedDegradation {
                    asset_id: asset_id.clone(),
                    start,
                    failure,
                    sensors: degraded_sensors,
                });
            }
        }
        Fleet { cfg, sensors, truth }
    }

    /// Number of readings per sensor.
    pub fn ticks(&self) -> u64 {
        ((self.cfg.hours * 3_600_000.0) as i64 / self.cfg.interval_ms.max(1)) as u64
    }

    /// Total good readings (before bad-record injection).
    pub fn readings(&self) -> u64 {
        self.ticks() * self.sensors.len() as u64
    }
}

fn poisson(r: &mut SmallRng, lambda: f64) -> usize {
    let l = (-lambda).exp();
    let (mut k, mut p) = (0usize, 1.0f64);
    loop {
        p *= r.random::<f64>();
        if p <= l || k > 1000 {
            return k;
        }
        k += 1;
    }
}

/// One record produced by the simulator.
#[derive(Debug, Clone, PartialEq)]
pub enum SimRecord {
    /// A good reading.
    Reading {
        /// Event time.
        ts: EventTime,
        /// Value.
        value: f64,
    },
    /// A bad record of a kind.
    Bad(BadKind),
}

/// The running state of one simulated sensor.
pub struct SensorSim {
    rng: SmallRng,
    noise: Normal<f64>,
    ar: f64,
    stuck_at: Option<f64>,
    last_value: f64,
}

impl SensorSim {
    /// The state of sensor `s` at the start.
    pub fn new(fleet: &Fleet, s: &SimSensor) -> SensorSim {
        SensorSim {
            rng: rng_for(fleet.cfg.seed, &[3, s.index as u64]),
            // A standard normal always exists.
            noise: Normal::new(0.0, 1.0).unwrap_or_else(|_| unreachable!()),
            ar: 0.0,
            stuck_at: None,
            last_value: s.base,
        }
    }

    /// The records of tick `tick` of sensor `s`: normally one reading; with bad-record
    /// injection, sometimes a bad record instead of or next to it.
    pub fn step(&mut self, fleet: &Fleet, s: &SimSensor, tick: u64, out: &mut Vec<SimRecord>) {
        let ts = fleet.cfg.start_ms + tick as i64 * fleet.cfg.interval_ms;
        let e: f64 = self.noise.sample(&mut self.rng);
        self.ar = 0.7 * self.ar + (1.0f64 - 0.49).sqrt() * e;
        let t = (ts - fleet.cfg.start_ms) as f64 / 1000.0;
        let mut v = s.base + s.sigma * (std::f64::consts::TAU * t / s.period_s + s.phase).sin() + s.sigma * self.ar;
        if let Some(d) = &s.drift {
            if ts >= d.start {
                v += d.sigmas_per_hour * s.sigma * (ts - d.start) as f64 / 3_600_000.0;
            }
        }
        if let Some((start, failure, span)) = s.degradation {
            if ts >= start {
                let x = (ts - start) as f64 / (failure - start) as f64;
                v += span * x * x;
            }
        }
        let mut stuck = false;
        if let Some(a) = s.anomalies.iter().find(|a| ts >= a.start && ts < a.end) {
            match a.kind {
                AnomalyKind::Spike => v += a.magnitude * s.sigma,
                AnomalyKind::LevelShift => v += a.magnitude * s.sigma,
                AnomalyKind::NoiseBurst => v += (a.magnitude - 1.0) * s.sigma * e,
                AnomalyKind::Stuck => {
                    stuck = true;
                    v = *self.stuck_at.get_or_insert(self.last_value);
                }
            }
        }
        if !stuck {
            self.stuck_at = None;
        }
        let (lo, hi) = s.sensor_type.physical_range();
        v = v.clamp(lo, hi);
        let v = (v * 10_000.0).round() / 10_000.0;
        self.last_value = v;
        let rate = fleet.cfg.bad_record_rate;
        if rate > 0.0 && self.rng.random_bool(rate.min(1.0)) {
            let kind = match self.rng.random_range(0..100) {
                0 => BadKind::Oversized,
                n => BadKind::ALL[(n as usize) % 8],
            };
            match kind {
                // Duplicates and late records come next to a good reading; the rest replace it.
                BadKind::Duplicate | BadKind::TooLate => {
                    out.push(SimRecord::Reading { ts, value: v });
                    out.push(SimRecord::Bad(kind));
                }
                _ => out.push(SimRecord::Bad(kind)),
            }
        } else {
            out.push(SimRecord::Reading { ts, value: v });
        }
        let _ = ts;
    }
}

/// Writes one record as a JSON line. `prev` is the previous good line of the same sensor (for duplicates).
pub fn write_json(s: &SimSensor, rec: &SimRecord, tick_ts: EventTime, prev: &mut Vec<u8>, out: &mut Vec<u8>) {
    match rec {
        SimRecord::Reading { ts, value } => {
            let start = out.len();
            let _ = write!(
                out,
                "{{\"sensor_id\":\"{}\",\"asset_id\":\"{}\",\"sensor_type\":\"{}\",\"value\":{},\"unit\":\"{}\",\"ts\":\"{}\"}}",
                s.sensor_id,
                s.asset_id,
                s.sensor_type.as_str(),
                value,
                s.sensor_type.default_unit(),
                format_rfc3339_ms(*ts)
            );
            prev.clear();
            prev.extend_from_slice(&out[start..]);
            out.push(b'\n');
        }
        SimRecord::Bad(kind) => {
            let ts = format_rfc3339_ms(tick_ts);
            let id = &s.sensor_id;
            let ty = s.sensor_type.as_str();
            let _ = match kind {
                BadKind::MalformedJson => writeln!(out, "{{\"sensor_id\":\"{id}\",\"value\":12.5,\"ts\":\"{ts}\""),
                BadKind::MissingField => writeln!(out, "{{\"sensor_id\":\"{id}\",\"sensor_type\":\"{ty}\",\"ts\":\"{ts}\"}}"),
                BadKind::BadType => {
                    writeln!(out, "{{\"sensor_id\":\"{id}\",\"sensor_type\":\"{ty}\",\"value\":\"high\",\"ts\":\"{ts}\"}}")
                }
                BadKind::NonFinite => {
                    writeln!(out, "{{\"sensor_id\":\"{id}\",\"sensor_type\":\"{ty}\",\"value\":\"NaN\",\"ts\":\"{ts}\"}}")
                }
                BadKind::OutOfRange => {
                    let (lo, hi) = s.sensor_type.physical_range();
                    let bad = if lo > f64::MIN { lo - 1000.0 } else { hi * 10.0 };
                    writeln!(out, "{{\"sensor_id\":\"{id}\",\"sensor_type\":\"{ty}\",\"value\":{bad},\"ts\":\"{ts}\"}}")
                }
                BadKind::FutureTs => {
                    let future = format_rfc3339_ms(tick_ts + 100 * 365 * 86_400_000);
                    writeln!(out, "{{\"sensor_id\":\"{id}\",\"sensor_type\":\"{ty}\",\"value\":1.0,\"ts\":\"{future}\"}}")
                }
                BadKind::Duplicate => {
                    out.extend_from_slice(prev);
                    writeln!(out)
                }
                BadKind::TooLate => {
                    let late = format_rfc3339_ms(tick_ts - 15 * 60_000);
                    writeln!(
                        out,
                        "{{\"sensor_id\":\"{id}\",\"sensor_type\":\"{ty}\",\"value\":1.5,\"ts\":\"{late}\",\"note\":\"late\"}}"
                    )
                }
                BadKind::Oversized => {
                    let pad = "x".repeat((1 << 20) + 16);
                    writeln!(
                        out,
                        "{{\"sensor_id\":\"{id}\",\"sensor_type\":\"{ty}\",\"value\":1.0,\"ts\":\"{ts}\",\"pad\":\"{pad}\"}}"
                    )
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_is_deterministic_and_labelled() {
        let cfg = FleetConfig { assets: 5, sensors_per_asset: 6, hours: 1.0, ..Default::default() };
        let a = Fleet::new(cfg.clone());
        let b = Fleet::new(cfg);
        assert_eq!(a.truth, b.truth);
        assert_eq!(a.sensors.len(), 30);
        assert_eq!(a.ticks(), 3600);
        let s = &a.sensors[0];
        let (mut x, mut y) = (SensorSim::new(&a, s), SensorSim::new(&b, s));
        let (mut ox, mut oy) = (Vec::new(), Vec::new());
        for t in 0..100 {
            x.step(&a, s, t, &mut ox);
            y.step(&b, s, t, &mut oy);
        }
        assert_eq!(ox, oy);
    }

    #[test]
    fn spikes_show_in_values() {
        let cfg =
            FleetConfig { assets: 10, sensors_per_asset: 6, hours: 2.0, anomalies_per_sensor_hour: 2.0, ..Default::default() };
        let f = Fleet::new(cfg);
        let spike = f.truth.anomalies.iter().find(|a| a.kind == AnomalyKind::Spike).expect("some spike");
        let s = f.sensors.iter().find(|s| s.sensor_id == spike.sensor_id).unwrap();
        let mut sim = SensorSim::new(&f, s);
        let mut out = Vec::new();
        let mut at_spike = None;
        for t in 0..f.ticks() {
            out.clear();
            sim.step(&f, s, t, &mut out);
            let ts = f.cfg.start_ms + t as i64 * 1000;
            if ts == spike.start {
                if let SimRecord::Reading { value, .. } = out[0] {
                    at_spike = Some(value);
                }
            }
        }
        let v = at_spike.unwrap();
        assert!((v - s.base).abs() > 8.0 * s.sigma, "spike value {v} base {}", s.base);
    }
}
