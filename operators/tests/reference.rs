//! Reference tests of the sensor path.
//!
//! - [`SensorWindows`] against a brute-force computation of every window straight from the
//!   readings, with watermarks at random points.
//! - [`SensorStage`] gives the same outputs whether everything arrives at once or in shuffled
//!   batches between watermarks.
//! - The timely wrapper ([`SensorStageExt::sensor_stage`]) on 1, 2 and 3 workers gives the
//!   outputs of the pure stage run sequentially.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use differential_dataflow::input::InputSession;
use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use timely::dataflow::operators::{Input, Inspect};
use timely::dataflow::{InputHandleVec, StreamVec};
use vigil_events::{
    derived_reading_hash, stable_hash_str, EventTime, RejectReason, RejectedReading, SensorReading, SensorType, SourcePos,
    WindowKind,
};
use vigil_operators::dataflow::SensorStageExt;
use vigil_operators::sensor_stage::{SensorOutputs, SensorSpec, SensorStage, SensorStageConfig};
use vigil_operators::window::{ClosedWindow, SensorWindows, WindowConfig};

const SEC: i64 = 1000;
const HOUR: i64 = 3_600_000;

/// Relative tolerance of the features.
const REL: f64 = 1e-6;
/// Relative size of rounding residues of sums (about 4500 ulps), scaled by the conditioning.
const ROUND: f64 = 1e-12;

// ---------------------------------------------------------------------------------------------
// 1. Windows against a brute-force reference.
// ---------------------------------------------------------------------------------------------

/// One reading of the generated sensor, and whether to close windows after inserting it.
#[derive(Debug, Clone)]
struct Step {
    /// Event time after the previous reading.
    gap_ms: i64,
    value: f64,
    source: u32,
    offset: u32,
    /// Close after this reading: where the watermark lands in its allowed range (0..=1), and
    /// whether to snap it down to a multiple of 30 s (a window boundary) when that stays allowed.
    close: Option<(f64, bool)>,
}

fn step() -> impl Strategy<Value = Step> {
    let gap = prop_oneof![2 => Just(0i64), 6 => 1i64..2_000, 4 => 2_000i64..90_000, 1 => 90_000i64..HOUR];
    let value = prop_oneof![3 => -100.0..100.0f64, 1 => (-3i32..=3).prop_map(f64::from)];
    let close = proptest::option::weighted(0.3, (0.0..=1.0f64, any::<bool>()));
    (gap, value, 0u32..2, any::<u32>(), close).prop_map(|(gap_ms, value, source, offset, close)| Step {
        gap_ms,
        value,
        source,
        offset,
        close,
    })
}

fn window_config() -> impl Strategy<Value = WindowConfig> {
    (prop::sample::select(vec![30, 60, 120]), prop::sample::select(vec![(300, 60), (600, 60), (120, 30)]))
        .prop_map(|(t, (h, e))| WindowConfig { tumbling_ms: t * SEC, hopping_size_ms: h * SEC, hopping_step_ms: e * SEC })
}

/// `(ts, pos, value)`, sorted by `(ts, pos)`.
type Obs = (EventTime, SourcePos, f64);

/// Every window holding at least one reading, by `(kind, start)`, with its end.
fn reference_windows(readings: &[Obs], cfg: WindowConfig) -> BTreeMap<(WindowKind, EventTime), EventTime> {
    let WindowConfig { tumbling_ms: t, hopping_size_ms: h, hopping_step_ms: e } = cfg;
    let mut windows = BTreeMap::new();
    for &(ts, _, _) in readings {
        let start = ts.div_euclid(t) * t;
        windows.insert((WindowKind::Tumbling, start), start + t);
        // Every s = k * e with s <= ts < s + h.
        let mut s = ts.div_euclid(e) * e;
        while s + h > ts {
            windows.insert((WindowKind::Hopping, s), s + h);
            s -= e;
        }
    }
    windows
}

fn within(got: f64, want: f64, tol: f64) -> bool {
    got == want || (got - want).abs() <= tol
}

/// Tolerance on a root of a mean of squares whose sum may be off by `abs_sq` (before the root).
fn root_tol(want: f64, abs_sq: f64) -> f64 {
    let root_err = if want > 0.0 { abs_sq.sqrt().min(abs_sq / want) } else { abs_sq.sqrt() };
    REL * want + root_err
}

/// Compares one emitted window with the features computed directly from its readings `xs`
/// (sorted by `(ts, pos)`); `v0` is the first value of the sensor (the stage shifts values by it).
fn check_window(w: &ClosedWindow, xs: &[Obs], v0: f64) -> Result<(), TestCaseError> {
    let ctx = format!("{:?} [{}, {}): {} readings", w.kind, w.start, w.end, xs.len());
    prop_assert_eq!(w.count, xs.len() as u64, "count of {}", ctx);
    let n = xs.len() as f64;
    let min = xs.iter().map(|r| r.2).fold(f64::INFINITY, f64::min);
    let max = xs.iter().map(|r| r.2).fold(f64::NEG_INFINITY, f64::max);
    let last = xs[xs.len() - 1].2;
    prop_assert_eq!(w.min, min, "min of {}", ctx);
    prop_assert_eq!(w.max, max, "max of {}", ctx);
    prop_assert_eq!(w.last, last, "last of {}", ctx);

    let mean = xs.iter().map(|r| r.2).sum::<f64>() / n;
    let var = xs.iter().map(|r| (r.2 - mean).powi(2)).sum::<f64>() / n;
    let std = var.sqrt();
    let rms = (xs.iter().map(|r| r.2 * r.2).sum::<f64>() / n).sqrt();
    // Size of the shifted values the stage sums.
    let dv = xs.iter().map(|r| (r.2 - v0).abs()).fold(0.0, f64::max);

    let tol_mean = REL * mean.abs() + ROUND * (v0.abs() + dv);
    prop_assert!(within(w.mean, mean, tol_mean), "mean of {}: {} vs {}", ctx, w.mean, mean);
    // The reference itself is only good to a few ulps of the values' magnitude.
    let vmax = xs.iter().map(|r| r.2.abs()).fold(0.0, f64::max);
    let tol_std = root_tol(std, ROUND * dv * dv) + ROUND * vmax;
    prop_assert!(within(w.std, std, tol_std), "std of {}: {} vs {}", ctx, w.std, std);
    let tol_rms = root_tol(rms, ROUND * (v0.abs() + dv).powi(2));
    prop_assert!(within(w.rms, rms, tol_rms), "rms of {}: {} vs {}", ctx, w.rms, rms);

    // Least squares on seconds from the window start, centred (well conditioned).
    let ts: Vec<f64> = xs.iter().map(|r| (r.0 - w.start) as f64 / 1000.0).collect();
    let mt = ts.iter().sum::<f64>() / n;
    let stt = ts.iter().map(|t| (t - mt).powi(2)).sum::<f64>();
    let distinct_times = xs[0].0 != xs[xs.len() - 1].0;
    if !distinct_times {
        // Documented as 0 (see `slope_is_zero_when_every_reading_of_a_window_has_one_time`).
        prop_assert_eq!(w.slope, 0.0, "slope of {} with a single event time", ctx);
    } else {
        let stv = ts.iter().zip(xs).map(|(t, r)| (t - mt) * (r.2 - mean)).sum::<f64>();
        let slope = stv / stt;
        // The stage uses raw sums of t and t²: their residue grows with span² / variance of the times
        // (and so does the reference's own rounding, relative to the values' magnitude).
        let span = (w.end - w.start) as f64 / 1000.0;
        let var_t = stt / n;
        let cond = 1.0 + span * span / var_t;
        let tol = REL * slope.abs() + ROUND * cond * (slope.abs() + (dv + vmax) / span);
        prop_assert!(within(w.slope, slope, tol), "slope of {}: {} vs {} (tolerance {})", ctx, w.slope, slope, tol);
    }
    Ok(())
}

/// Records one `close` call's output: each window once, in order of end, aligned, not past `wm`.
fn record(
    emitted: &mut BTreeMap<(WindowKind, EventTime), ClosedWindow>,
    out: &[ClosedWindow],
    cfg: WindowConfig,
    wm: Option<EventTime>,
) -> Result<(), TestCaseError> {
    let order: Vec<(EventTime, u8)> = out.iter().map(|w| (w.end, w.kind as u8)).collect();
    let mut sorted = order.clone();
    sorted.sort();
    prop_assert_eq!(&order, &sorted, "one close call emits windows in order of end, tumbling first");
    for w in out {
        let (size, align) = match w.kind {
            WindowKind::Tumbling => (cfg.tumbling_ms, cfg.tumbling_ms),
            WindowKind::Hopping => (cfg.hopping_size_ms, cfg.hopping_step_ms),
        };
        prop_assert_eq!(w.end - w.start, size, "size of {:?}", w);
        prop_assert_eq!(w.start.rem_euclid(align), 0, "alignment of {:?}", w);
        if let Some(wm) = wm {
            prop_assert!(w.end <= wm, "{:?} emitted before the watermark {} passed its end", w, wm);
        }
        let prev = emitted.insert((w.kind, w.start), w.clone());
        prop_assert!(prev.is_none(), "window {:?} {} emitted twice", w.kind, w.start);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn windows_match_a_sequential_reference(
        cfg in window_config(),
        lateness in prop::sample::select(vec![0, SEC, 30 * SEC, 120 * SEC, 900 * SEC]),
        start in -2 * HOUR..2 * HOUR,
        offset in prop_oneof![Just(0.0), -1e4..1e4f64],
        steps in prop::collection::vec(step(), 1..250),
    ) {
        let mut t = start;
        let mut readings: Vec<Obs> = Vec::with_capacity(steps.len());
        for (i, s) in steps.iter().enumerate() {
            t += s.gap_ms;
            // Distinct positions in an order unrelated to insertion, to break ties of event time.
            let pos = SourcePos { source: s.source, offset: (u64::from(s.offset) << 16) | i as u64 };
            readings.push((t, pos, offset + s.value));
        }
        readings.sort_by_key(|r| (r.0, r.1));
        let v0 = readings[0].2;
        let expected = reference_windows(&readings, cfg);

        let mut w = SensorWindows::new(cfg);
        let mut emitted = BTreeMap::new();
        let mut out = Vec::new();
        let mut wm = EventTime::MIN;
        for (i, &(ts, pos, v)) in readings.iter().enumerate() {
            let res = w.insert(ts, pos, v);
            prop_assert!(res.is_ok(), "reading at {} refused after watermark {}: {:?}", ts, wm, res);
            let Some((frac, snap)) = steps[i].close else { continue };
            // Never more than the lateness behind the latest reading, never past the next one.
            let next = readings.get(i + 1).map_or(ts + 2 * HOUR, |r| r.0);
            let lo = wm.max(ts - lateness);
            let mut candidate = (lo + ((next - lo) as f64 * frac) as i64).clamp(lo, next);
            let snapped = candidate.div_euclid(30 * SEC) * 30 * SEC;
            if snap && snapped >= lo {
                candidate = snapped;
            }
            wm = candidate;
            out.clear();
            w.close(Some(wm), &mut out);
            record(&mut emitted, &out, cfg, Some(wm))?;
            for (key, &end) in &expected {
                if end <= wm {
                    prop_assert!(emitted.contains_key(key), "window {:?} ends at {} but is not out at watermark {}", key, end, wm);
                }
            }
        }
        out.clear();
        w.close(None, &mut out);
        record(&mut emitted, &out, cfg, None)?;
        prop_assert_eq!(w.panes_held(), 0, "no pane is held after the end of input");

        let got: BTreeSet<_> = emitted.keys().copied().collect();
        let want: BTreeSet<_> = expected.keys().copied().collect();
        prop_assert_eq!(
            got.symmetric_difference(&want).collect::<Vec<_>>(),
            Vec::<&(WindowKind, EventTime)>::new(),
            "windows emitted differ from the windows holding data"
        );
        for ((kind, start), win) in &emitted {
            prop_assert_eq!(win.end, expected[&(*kind, *start)]);
            let lo = readings.partition_point(|r| r.0 < win.start);
            let hi = readings.partition_point(|r| r.0 < win.end);
            check_window(win, &readings[lo..hi], v0)?;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Generated fleets of sensors, for the stage tests.
// ---------------------------------------------------------------------------------------------

struct Fleet {
    readings: Vec<SensorReading>,
    specs: Vec<SensorSpec>,
}

/// Roughly normal noise with unit variance.
fn noise(rng: &mut SmallRng) -> f64 {
    ((0..4).map(|_| rng.random::<f64>()).sum::<f64>() - 2.0) * 3f64.sqrt()
}

fn make_reading(
    sensor_id: &Arc<str>,
    asset_id: &Arc<str>,
    sensor_type: SensorType,
    ts: EventTime,
    value: f64,
    id: Option<String>,
) -> SensorReading {
    let id_hash = match &id {
        Some(id) => stable_hash_str(id),
        None => derived_reading_hash(sensor_id, ts, value),
    };
    SensorReading {
        id_hash,
        sensor_id: sensor_id.clone(),
        sensor_key: stable_hash_str(sensor_id),
        asset_id: asset_id.clone(),
        sensor_type,
        value,
        unit: Arc::from("u"),
        ts,
        extra: vigil_events::ReadingExtra { reading_id: id.map(Arc::from), ..Default::default() }.boxed(),
        pos: SourcePos::default(),
    }
}

/// `sensors` sensors over `minutes` of event time: noise around a level, level shifts, spikes,
/// stuck stretches, exact re-sends, ids reused later, several readings at one time; registry
/// entries with valid ranges, limits and asset/type overrides. Positions are unique, in an order
/// unrelated to event time.
fn fleet(seed: u64, sensors: usize, minutes: i64) -> Fleet {
    let mut rng = SmallRng::seed_from_u64(seed);
    let t0: EventTime = 1_700_000_000_000 + rng.random_range(0..600_000);
    let end = t0 + minutes * 60_000;
    let horizon = SensorStageConfig::default().dedupe_horizon_ms;
    let types = [SensorType::Temperature, SensorType::Vibration, SensorType::Pressure, SensorType::Other];
    let mut readings = Vec::new();
    let mut specs = Vec::new();
    for i in 0..sensors {
        let sensor_type = types[rng.random_range(0..types.len())];
        let sensor_id: Arc<str> = Arc::from(format!("s{i}"));
        // A reading naming no asset carries its sensor id; the registry may name the asset.
        let asset_id: Arc<str> =
            if sensor_type == SensorType::Other { sensor_id.clone() } else { Arc::from(format!("a{}", i % 2)) };
        let (base, sd) = match sensor_type {
            SensorType::Temperature => (70.0, 1.5),
            SensorType::Vibration => (3.0, 0.3),
            SensorType::Pressure => (400.0, 8.0),
            _ => (rng.random_range(-50.0..50.0), 2.0),
        };
        let given_ids = rng.random_bool(0.4);
        let interval = rng.random_range(3_000..20_000i64);
        let shift = rng.random_bool(0.6).then(|| (t0 + rng.random_range(0..end - t0), sd * rng.random_range(-25.0..25.0)));
        let stuck = rng.random_bool(0.4).then(|| {
            let s = t0 + rng.random_range(0..end - t0);
            (s, s + rng.random_range(300_000..1_200_000))
        });
        let mut ts = t0 + rng.random_range(0..interval);
        let mut held = base;
        let mut k = 0u64;
        while ts < end {
            let mut value = base + sd * noise(&mut rng);
            if shift.is_some_and(|(at, _)| ts >= at) {
                value += shift.map_or(0.0, |s| s.1);
            }
            if stuck.is_some_and(|(a, b)| ts >= a && ts < b) {
                value = held;
            } else {
                held = value;
            }
            if rng.random_bool(0.006) {
                let sign = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
                value += sign * sd * rng.random_range(15.0..60.0);
            }
            let id = given_ids.then(|| format!("{sensor_id}-{k}"));
            let r = make_reading(&sensor_id, &asset_id, sensor_type, ts, value, id.clone());
            if rng.random_bool(0.02) {
                readings.push(r.clone()); // an exact re-send
            }
            if given_ids && rng.random_bool(0.01) {
                let mut again = r.clone(); // the id reused later, inside or beyond the dedupe horizon
                again.ts += rng.random_range(1..2 * horizon);
                readings.push(again);
            }
            if rng.random_bool(0.01) {
                let other = id.map(|id| format!("{id}b"));
                readings.push(make_reading(&sensor_id, &asset_id, sensor_type, ts, value + sd, other));
            }
            readings.push(r);
            k += 1;
            ts += interval + rng.random_range(-interval / 3..=interval / 3);
        }
        let bits = |v: f64| Some(v.to_bits());
        let mut spec = SensorSpec { sensor_id: sensor_id.to_string(), ..SensorSpec::default() };
        if i == 0 {
            spec.valid_min_bits = bits(base - 30.0 * sd);
            spec.valid_max_bits = bits(base + 30.0 * sd);
        }
        if sensor_type == SensorType::Other {
            spec.asset_id = Some(format!("a{}", 7 + i % 2));
            spec.sensor_type = Some(SensorType::Current);
            spec.low_bits = bits(base - 10.0 * sd);
            spec.high_bits = bits(base + 10.0 * sd);
        }
        if spec != (SensorSpec { sensor_id: sensor_id.to_string(), ..SensorSpec::default() }) || rng.random_bool(0.5) {
            spec.criticality = Some("high".into());
            specs.push(spec);
        }
    }
    let mut offsets: Vec<u64> = (1..=readings.len() as u64).collect();
    offsets.shuffle(&mut rng);
    for (r, o) in readings.iter_mut().zip(offsets) {
        r.pos = SourcePos { source: (o % 2) as u32, offset: o };
    }
    Fleet { readings, specs }
}

/// Sorted Debug strings of every output (`rejected_at` left out).
#[derive(Debug, Default, PartialEq)]
struct Summary {
    readings: Vec<String>,
    rejected: Vec<String>,
    features: Vec<String>,
    anomalies: Vec<String>,
    drift: Vec<String>,
    asset: Vec<String>,
}

fn fmt_rejected(r: &RejectedReading) -> String {
    format!("{:?} {:?} {} {:?} {:?} {}", r.pos, r.reason, r.detail, r.sensor_id, r.ts, String::from_utf8_lossy(&r.raw))
}

fn debug_all<T: std::fmt::Debug>(xs: &[T]) -> Vec<String> {
    xs.iter().map(|x| format!("{x:?}")).collect()
}

impl Summary {
    fn of(out: &SensorOutputs) -> Summary {
        Summary {
            readings: debug_all(&out.readings),
            rejected: out.rejected.iter().map(fmt_rejected).collect(),
            features: debug_all(&out.features),
            anomalies: debug_all(&out.anomalies),
            drift: debug_all(&out.drift),
            asset: debug_all(&out.asset),
        }
        .sorted()
    }

    fn sorted(mut self) -> Summary {
        for v in
            [&mut self.readings, &mut self.rejected, &mut self.features, &mut self.anomalies, &mut self.drift, &mut self.asset]
        {
            v.sort();
        }
        self
    }

    fn parts(&self) -> [(&'static str, &Vec<String>); 6] {
        [
            ("readings", &self.readings),
            ("rejected", &self.rejected),
            ("features", &self.features),
            ("anomalies", &self.anomalies),
            ("drift", &self.drift),
            ("asset inputs", &self.asset),
        ]
    }

    /// The first difference, readable (the whole summaries are too long to print).
    fn diff(&self, other: &Summary) -> Option<String> {
        for ((name, a), (_, b)) in self.parts().into_iter().zip(other.parts()) {
            if a != b {
                let first = a.iter().zip(b.iter()).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
                return Some(format!(
                    "{name}: {} vs {} items; first difference at {first}:\n  {:?}\n  {:?}",
                    a.len(),
                    b.len(),
                    a.get(first),
                    b.get(first)
                ));
            }
        }
        None
    }
}

fn new_stage(specs: &[SensorSpec]) -> SensorStage {
    let mut stage = SensorStage::new(SensorStageConfig::default(), Box::new(|| 0));
    for spec in specs {
        stage.apply_registry(spec.clone(), 1);
    }
    stage
}

/// Everything pushed, then the end of input.
fn run_at_once(fleet: &Fleet) -> SensorOutputs {
    let mut stage = new_stage(&fleet.specs);
    for r in &fleet.readings {
        stage.push(r.clone());
    }
    let mut out = SensorOutputs::default();
    stage.advance(None, &mut out);
    out
}

/// The features of each sensor, in the order they were emitted.
fn feature_sequences(out: &SensorOutputs) -> BTreeMap<u64, Vec<String>> {
    let mut seqs: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for f in &out.features {
        seqs.entry(f.sensor_key).or_default().push(format!("{f:?}"));
    }
    seqs
}

// ---------------------------------------------------------------------------------------------
// 2. The stage does not depend on batching or arrival order.
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn sensor_stage_is_independent_of_batching(
        seed in any::<u64>(),
        sensors in 1usize..5,
        minutes in 10i64..150,
        watermarks in 0usize..40,
        eager in 0.0..1.0f64,
    ) {
        let fleet = fleet(seed, sensors, minutes);
        let all = run_at_once(&fleet);

        // Batches between increasing watermarks (repeats allowed); a reading goes in any batch
        // before the first watermark above its time, at random or as late as possible.
        let mut rng = SmallRng::seed_from_u64(seed.rotate_left(17) ^ 0x5eed);
        let lo = fleet.readings.iter().map(|r| r.ts).min().unwrap_or(0);
        let hi = fleet.readings.iter().map(|r| r.ts).max().unwrap_or(0);
        // Watermarks anywhere, at a reading's time, or at a time several readings share.
        let mut times: Vec<EventTime> = fleet.readings.iter().map(|r| r.ts).collect();
        times.sort_unstable();
        let shared: Vec<EventTime> = times.windows(2).filter(|p| p[0] == p[1]).map(|p| p[0]).collect();
        let mut wms: Vec<EventTime> = (0..watermarks)
            .map(|_| match rng.random_range(0..3) {
                0 => rng.random_range(lo..=hi + 1),
                1 => times[rng.random_range(0..times.len())],
                _ => shared.get(rng.random_range(0..shared.len().max(1))).copied().unwrap_or(lo),
            })
            .collect();
        wms.sort_unstable();
        let mut batches: Vec<Vec<&SensorReading>> = vec![Vec::new(); wms.len() + 1];
        for r in &fleet.readings {
            let deadline = wms.partition_point(|&w| w <= r.ts);
            let b = if rng.random_bool(eager) { rng.random_range(0..=deadline) } else { deadline };
            batches[b].push(r);
        }
        let mut stage = new_stage(&fleet.specs);
        let mut out = SensorOutputs::default();
        for (k, batch) in batches.iter_mut().enumerate() {
            batch.shuffle(&mut rng);
            for r in batch.iter() {
                stage.push((*r).clone());
            }
            stage.advance(wms.get(k).copied(), &mut out);
        }
        prop_assert_eq!(stage.pending(), 0);

        let (a, b) = (Summary::of(&all), Summary::of(&out));
        prop_assert!(!a.features.is_empty());
        if let Some(d) = a.diff(&b) {
            prop_assert!(false, "all at once vs {} batches: {}", wms.len() + 1, d);
        }
        prop_assert_eq!(feature_sequences(&all), feature_sequences(&out), "order of each sensor's windows");
    }
}

// ---------------------------------------------------------------------------------------------
// 3. The timely wrapper on several workers gives the pure stage's outputs.
// ---------------------------------------------------------------------------------------------

/// Readings in an arrival order where each is at most `lateness` behind the greatest event time
/// before it, each with the watermark it is sent under (the greatest earlier time less the
/// lateness, so never past its own time).
fn arrival(readings: &[SensorReading], seed: u64, lateness: i64) -> Vec<(EventTime, SensorReading)> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut keyed: Vec<(EventTime, SourcePos, &SensorReading)> =
        readings.iter().map(|r| (r.ts + rng.random_range(0..=lateness), r.pos, r)).collect();
    keyed.sort_by_key(|k| (k.0, k.1));
    let mut max_seen = EventTime::MIN;
    let mut out = Vec::with_capacity(keyed.len());
    for (_, _, r) in keyed {
        let wm = max_seen.saturating_sub(lateness);
        assert!(wm <= r.ts, "arrival order within the lateness");
        out.push((wm, r.clone()));
        max_seen = max_seen.max(r.ts);
    }
    out
}

/// What the dataflow emitted, by stream name.
#[derive(Default)]
struct Sinks {
    /// Debug strings of the records.
    records: Mutex<BTreeMap<&'static str, Vec<String>>>,
    /// Distinct times records were emitted at.
    times: Mutex<BTreeMap<&'static str, BTreeSet<EventTime>>>,
    /// Records that travelled at a time later than their own event time.
    early: Mutex<Vec<String>>,
}

impl Sinks {
    fn take(&self, name: &str) -> Vec<String> {
        self.records.lock().unwrap().remove(name).unwrap_or_default()
    }
}

/// Collects a stream's records under `name`, and checks each travels at a time no later than
/// its event time.
fn capture<T: Clone + 'static>(
    stream: StreamVec<'_, EventTime, T>,
    sinks: &Arc<Sinks>,
    name: &'static str,
    show: fn(&T) -> String,
    event_time: fn(&T) -> EventTime,
) {
    let sinks = sinks.clone();
    stream.inspect_core(move |event| {
        let Ok((stamp, data)) = event else { return };
        let sent_at = vigil_events::watermark_of(stamp.iter().copied().max().unwrap_or(EventTime::MIN));
        let mut records = sinks.records.lock().unwrap();
        let records = records.entry(name).or_default();
        for x in data {
            if sent_at > event_time(x) {
                sinks.early.lock().unwrap().push(format!("{name} at {sent_at}: {}", show(x)));
            }
            records.push(show(x));
        }
        sinks.times.lock().unwrap().entry(name).or_default().insert(sent_at);
    });
}

/// Runs the timely wrapper on `workers` workers; returns the outputs and the number of distinct
/// times features were emitted at.
fn run_dataflow(input: Arc<Vec<(EventTime, SensorReading)>>, specs: Arc<Vec<SensorSpec>>, workers: usize) -> (Summary, usize) {
    let sinks = Arc::new(Sinks::default());
    let shared = sinks.clone();
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let mut readings_in: InputHandleVec<EventTime, SensorReading> = InputHandleVec::new();
        let mut registry_in: InputSession<EventTime, SensorSpec, isize> = InputSession::new();
        worker.dataflow::<EventTime, _, _>(|scope| {
            let readings = scope.input_from(&mut readings_in);
            let registry = registry_in.to_collection(scope).inner;
            let stage = std::rc::Rc::new(std::cell::RefCell::new(SensorStage::new(SensorStageConfig::default(), Box::new(|| 0))));
            let changes =
                timely::dataflow::operators::ToStream::to_stream(Vec::<vigil_events::MaintenanceScheduled>::new(), scope);
            let s = readings.sensor_stage(registry, changes, stage);
            capture(s.readings, &shared, "readings", |r| format!("{r:?}"), |r| r.ts);
            capture(s.rejected, &shared, "rejected", fmt_rejected, |r| r.ts.unwrap_or(EventTime::MAX));
            capture(s.features, &shared, "features", |f| format!("{f:?}"), |f| f.window_end);
            capture(s.anomalies, &shared, "anomalies", |a| format!("{a:?}"), |a| a.ts);
            capture(s.drift, &shared, "drift", |d| format!("{d:?}"), |d| d.current_end);
            capture(s.asset, &shared, "asset", |a| format!("{a:?}"), |a| a.time());
        });
        if index == 0 {
            for spec in specs.iter() {
                registry_in.insert(spec.clone());
            }
        }
        registry_in.flush();
        // Every worker walks the whole arrival order, so all advance their inputs alike; each
        // sends its share of the readings.
        let mut time = EventTime::MIN;
        for (i, (wm, r)) in input.iter().enumerate() {
            if *wm > time {
                time = *wm;
                readings_in.advance_to(vigil_events::dataflow_time(time));
                registry_in.advance_to(vigil_events::dataflow_time(time));
                registry_in.flush();
            }
            if i % peers == index {
                readings_in.send(r.clone());
            }
            if i % 32 == 31 {
                worker.step();
                worker.step();
            }
        }
        // Dropping the inputs closes them; `execute` runs the dataflow to completion.
    })
    .expect("timely starts");
    for r in guards.join() {
        r.expect("worker finished");
    }
    let early = std::mem::take(&mut *sinks.early.lock().unwrap());
    assert!(early.is_empty(), "{} records sent later than their event time, first {:?}", early.len(), early.first());
    let summary = Summary {
        readings: sinks.take("readings"),
        rejected: sinks.take("rejected"),
        features: sinks.take("features"),
        anomalies: sinks.take("anomalies"),
        drift: sinks.take("drift"),
        asset: sinks.take("asset"),
    }
    .sorted();
    let times = sinks.times.lock().unwrap().get("features").map_or(0, BTreeSet::len);
    (summary, times)
}

#[test]
fn multi_worker_dataflow_matches_sequential_stage() {
    for seed in [3u64, 4] {
        let fleet = fleet(seed, 5, 120);
        let sequential = run_at_once(&fleet);
        let expected = Summary::of(&sequential);
        // The generated input exercises every output.
        let detectors: BTreeSet<&str> = sequential.anomalies.iter().map(|a| a.detector.as_str()).collect();
        let reasons: BTreeSet<RejectReason> = sequential.rejected.iter().map(|r| r.reason).collect();
        assert!(detectors.contains("hard_limit") && detectors.contains("robust_zscore"), "seed {seed}: {detectors:?}");
        assert!(reasons.contains(&RejectReason::Duplicate) && reasons.contains(&RejectReason::OutOfRange), "{reasons:?}");
        assert!(!sequential.drift.is_empty(), "seed {seed}: no drift");
        assert!(fleet.readings.len() > 1_000, "{} readings", fleet.readings.len());

        let input = Arc::new(arrival(&fleet.readings, seed, 30 * SEC));
        let specs = Arc::new(fleet.specs.clone());
        for workers in 1..=3 {
            let (got, emission_times) = run_dataflow(input.clone(), specs.clone(), workers);
            assert!(emission_times >= 5, "windows closed incrementally, not all at the end: {emission_times} times");
            if let Some(d) = expected.diff(&got) {
                panic!("seed {seed}, {workers} workers differ from the sequential stage: {d}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Regression: a spurious slope when every reading of a window has one event time.
// ---------------------------------------------------------------------------------------------

/// `WindowFeatures::slope` is documented as 0 with fewer than two distinct times. The
/// least-squares denominator `n·Σt² − (Σt)²` has a rounding residue that grows like `ε·n²·t²`
/// with `t` the readings' offset from the window start (up to 600 s for the default hopping
/// windows); an absolute guard let two readings at one instant 307 s into a hopping window give a
/// slope of 2⁻⁶ per second. The guard is now relative to `n·Σt²`.
#[test]
fn slope_is_zero_when_every_reading_of_a_window_has_one_time() {
    let mut w = SensorWindows::new(WindowConfig::default());
    w.insert(7_001, SourcePos { source: 0, offset: 1 }, 10.0).unwrap();
    w.insert(7_001, SourcePos { source: 0, offset: 2 }, 20.0).unwrap();
    let mut out = Vec::new();
    w.close(None, &mut out);
    assert_eq!(out.len(), 11, "one tumbling and ten hopping windows");
    let wrong: Vec<(WindowKind, EventTime, f64)> =
        out.iter().filter(|x| x.slope != 0.0).map(|x| (x.kind, x.start, x.slope)).collect();
    assert!(wrong.is_empty(), "nonzero slopes with a single event time: {wrong:?}");
}

// ---------------------------------------------------------------------------------------------
// Arrival-order hard-limit alerts give the stage's events (same ids), ahead of the watermark.
// ---------------------------------------------------------------------------------------------

#[test]
fn arrival_limit_alerts_include_every_hard_limit_event_of_the_stage() {
    use vigil_operators::sensor_stage::ArrivalLimitAlerts;
    for seed in [3u64, 5] {
        let fleet = fleet(seed, 5, 120);
        let stage_events: BTreeSet<String> =
            run_at_once(&fleet).anomalies.iter().filter(|a| a.detector == "hard_limit").map(|a| format!("{a:?}")).collect();
        assert!(!stage_events.is_empty(), "seed {seed}: no hard-limit events to compare");
        // In event-time order (what a partition delivers when the producer sends in order).
        let mut ordered = fleet.readings.clone();
        ordered.sort_by_key(|r| (r.ts, r.pos));
        let mut alerts = ArrivalLimitAlerts::new(SensorStageConfig::default(), &fleet.specs);
        let early: BTreeSet<String> = ordered.iter().filter_map(|r| alerts.observe(r)).map(|a| format!("{a:?}")).collect();
        let missing: Vec<&String> = stage_events.difference(&early).collect();
        assert!(
            missing.is_empty(),
            "seed {seed}: the arrival path misses {} of the stage's alerts: {:?}",
            missing.len(),
            missing.first()
        );
    }
}
