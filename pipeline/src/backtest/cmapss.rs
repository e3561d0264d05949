//! NASA C-MAPSS turbofan data: training the RUL model, and backtesting it through the graph.
//!
//! Input: C-MAPSS text files — space-separated rows of unit, cycle, three operating settings and
//! sensors s1..s21 (`train_FD00x.txt`, units run to failure; `test_FD00x.txt`, units cut before
//! failure, with `RUL_FD00x.txt` giving each test unit's true remaining life).
//!
//! Each unit is an asset; each column (`setting1..3`, `s1..s21`) a sensor of it named
//! `<asset>-<column>`; cycle `c` a reading at `2026-01-01 + c hours`, so one-hour tumbling windows
//! hold one cycle each and RUL in hours is RUL in cycles.
//!
//! [`train`] fits a gradient-boosted-tree RUL model ([`vigil_operators::rul_model`]) on the
//! features the asset stage computes from those windows ([`vigil_operators::rul_features`]),
//! target `min(last cycle − cycle, 125)`. It validates by repeated holdout — each of `repeats`
//! seeded splits holds out 20 % of the units, each cut at a seeded random cycle, and a model fitted
//! on the other units predicts them — then fits the registered model on every unit and registers
//! it with its metadata and the validation scores. [`backtest`] replays test units
//! through the whole dataflow with the model loaded, takes each asset's last prediction, and
//! scores it: RMSE and the PHM08 score.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use vigil_connectors::models::{sha256_file, ModelMeta, ModelRegistry, ModelVersion};
use vigil_events::{EventTime, SensorType};
use vigil_operators::gbt::{GbtModel, GbtParams, SplitMix64};
use vigil_operators::rul_features::{RulFeatureConfig, RulFeatures};
use vigil_operators::rul_model::{LoadedRul, RulModel, RUL_MODEL_KIND};

use super::{run_series, scratch_dir, BacktestError, Point, Series};
use crate::config::VigilConfig;

/// The columns after unit and cycle, in file order.
pub const COLUMNS: [&str; 24] = [
    "setting1", "setting2", "setting3", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "s12", "s13", "s14",
    "s15", "s16", "s17", "s18", "s19", "s20", "s21",
];

/// Training targets are clipped here (cycles): early life looks healthy whatever its length.
pub const RUL_CLIP: f64 = 125.0;

/// Event time of cycle 0.
const T0: EventTime = 1_767_225_600_000; // 2026-01-01T00:00:00Z
/// One cycle of event time.
const CYCLE_MS: i64 = 3_600_000;

/// One engine: its cycles in order, each the 24 columns.
#[derive(Debug, Clone)]
pub struct Unit {
    /// Unit number.
    pub id: u32,
    /// The columns of each cycle, cycles 1, 2, … in order.
    pub rows: Vec<[f64; 24]>,
}

impl Unit {
    /// The asset name of the unit.
    pub fn asset(&self) -> String {
        format!("unit-{:03}", self.id)
    }
}

/// Reads a C-MAPSS file into units.
pub fn read_units(path: &Path) -> Result<Vec<Unit>, BacktestError> {
    let text = std::fs::read_to_string(path).map_err(BacktestError::io(path))?;
    let mut units: Vec<Unit> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        if fields.len() != 26 {
            return Err(BacktestError::data(path, format!("line {line_no}: {} columns, expected 26", fields.len())));
        }
        let num = |k: usize| {
            fields[k]
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| BacktestError::data(path, format!("line {line_no}: column {} is not a number", k + 1)))
        };
        let id = num(0)? as u32;
        let cycle = num(1)? as usize;
        let mut row = [0.0; 24];
        for (k, v) in row.iter_mut().enumerate() {
            *v = num(k + 2)?;
        }
        match units.last_mut() {
            Some(u) if u.id == id => {
                if cycle != u.rows.len() + 1 {
                    return Err(BacktestError::data(path, format!("line {line_no}: unit {id} cycle {cycle} out of sequence")));
                }
                u.rows.push(row);
            }
            _ => {
                if cycle != 1 {
                    return Err(BacktestError::data(path, format!("line {line_no}: unit {id} starts at cycle {cycle}")));
                }
                if units.iter().any(|u| u.id == id) {
                    return Err(BacktestError::data(path, format!("line {line_no}: unit {id} appears twice")));
                }
                units.push(Unit { id, rows: vec![row] });
            }
        }
    }
    if units.is_empty() {
        return Err(BacktestError::data(path, "no rows"));
    }
    Ok(units)
}

/// Reads `RUL_FD00x.txt`: one true RUL per test unit, in unit order.
pub fn read_rul(path: &Path) -> Result<Vec<f64>, BacktestError> {
    let text = std::fs::read_to_string(path).map_err(BacktestError::io(path))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| l.trim().parse::<f64>().map_err(|_| BacktestError::data(path, format!("line {}: not a number", i + 1))))
        .collect()
}

/// RMSE and PHM08 score of predictions against true RULs.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct RulScores {
    /// Units scored.
    pub units: usize,
    /// Root mean squared error, cycles.
    pub rmse: f64,
    /// Mean absolute error, cycles.
    pub mae: f64,
    /// PHM08: Σ e^(−d/13) − 1 for d < 0, Σ e^(d/10) − 1 for d ≥ 0, d = predicted − true.
    pub phm08: f64,
}

/// Scores `(predicted, true)` pairs.
pub fn score(pairs: &[(f64, f64)]) -> RulScores {
    if pairs.is_empty() {
        return RulScores::default();
    }
    let n = pairs.len() as f64;
    let mut se = 0.0;
    let mut ae = 0.0;
    let mut phm = 0.0;
    for &(p, t) in pairs {
        let d = p - t;
        se += d * d;
        ae += d.abs();
        phm += if d < 0.0 { (-d / 13.0).exp() - 1.0 } else { (d / 10.0).exp() - 1.0 };
    }
    RulScores { units: pairs.len(), rmse: (se / n).sqrt(), mae: ae / n, phm08: phm }
}

/// The validation split: which units validate (a seeded fraction), and the cycle each is cut at.
///
/// The units are shuffled (Fisher–Yates from the front, `SplitMix64(seed)`); the first
/// `round(fraction · n)` validate, the rest train. Each validation unit, in unit order, is cut at
/// a cycle drawn uniformly from `[max(31, L − 145), L − 7]`, so at least 31 cycles are observed
/// and the true RUL is 7 to 145 cycles, as in the official test sets.
pub fn validation_split(units: &[Unit], fraction: f64, seed: u64) -> (Vec<usize>, Vec<(usize, usize)>) {
    let mut rng = SplitMix64::new(seed);
    let n = units.len();
    let mut order: Vec<usize> = (0..n).collect();
    for i in 0..n.saturating_sub(1) {
        let j = i + rng.below(n - i);
        order.swap(i, j);
    }
    let n_val = ((n as f64 * fraction).round() as usize).min(n.saturating_sub(1));
    let mut val: Vec<usize> = order[..n_val].to_vec();
    val.sort_unstable();
    let mut train: Vec<usize> = order[n_val..].to_vec();
    train.sort_unstable();
    let cuts = val
        .iter()
        .map(|&u| {
            let len = units[u].rows.len();
            let hi = len.saturating_sub(7).max(1);
            let lo = 31.max(len.saturating_sub(145)).min(hi);
            (u, lo + rng.below(hi - lo + 1))
        })
        .collect();
    (train, cuts)
}

/// The feature vectors of every cycle of a unit (the asset stage's features after each window).
fn unit_vectors(cfg: &RulFeatureConfig, unit: &Unit, upto: usize) -> Vec<Vec<f64>> {
    let mut f = RulFeatures::new(cfg, COLUMNS.len());
    let mut out = Vec::with_capacity(upto);
    for row in &unit.rows[..upto] {
        let values: Vec<Option<f64>> = row.iter().map(|v| Some(*v)).collect();
        f.observe(&values);
        out.push(f.vector());
    }
    out
}

/// The feature settings `vigil train cmapss` uses.
pub fn default_features() -> RulFeatureConfig {
    RulFeatureConfig::default()
}

/// The tree settings `vigil train cmapss` uses.
pub fn default_params() -> GbtParams {
    GbtParams::default()
}

/// Options of `vigil train cmapss`.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The training file.
    pub data: PathBuf,
    /// The registry.
    pub registry: PathBuf,
    /// Model name.
    pub name: String,
    /// Seed of the first validation split (split `r` uses `seed + r`).
    pub seed: u64,
    /// Validation splits (repeated holdout).
    pub repeats: usize,
    /// Fraction of units held out for validation.
    pub validation_fraction: f64,
    /// Feature settings.
    pub features: RulFeatureConfig,
    /// Tree settings.
    pub params: GbtParams,
    /// Show progress on stderr.
    pub progress: bool,
}

/// What training reports.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// The registered version.
    pub model: ModelVersion,
    /// Validation scores over the held-out predictions of every split.
    pub validation: RulScores,
    /// RMSE of each split.
    pub per_split_rmse: Vec<f64>,
    /// Rows the registered model was fitted on.
    pub training_rows: usize,
    /// Units (the registered model is fitted on all of them).
    pub units: usize,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Fits the RUL model on the training units and registers it.
pub fn train(opts: &TrainOptions, now_ms: i64) -> Result<TrainReport, BacktestError> {
    let start = std::time::Instant::now();
    let units = read_units(&opts.data)?;
    let fit = |chosen: &[usize]| -> Result<(RulModel, usize), BacktestError> {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for &u in chosen {
            let unit = &units[u];
            let len = unit.rows.len();
            for (c, v) in unit_vectors(&opts.features, unit, len).into_iter().enumerate() {
                x.push(v);
                y.push(((len - c - 1) as f64).min(RUL_CLIP));
            }
        }
        let gbt = GbtModel::fit(&x, &y, &opts.params).map_err(|e| BacktestError::data(&opts.data, e.to_string()))?;
        let inputs = COLUMNS.iter().map(|c| c.to_string()).collect();
        Ok((RulModel { inputs, features: opts.features.clone(), gbt, clip: RUL_CLIP }, x.len()))
    };
    // Repeated holdout: each split trains on the other units and predicts its held-out units at
    // their cuts; the predictions of every split are scored together.
    let mut pairs: Vec<(f64, f64)> = Vec::new();
    let mut per_split = Vec::new();
    for r in 0..opts.repeats.max(1) {
        let seed = opts.seed.wrapping_add(r as u64);
        let (train_units, cuts) = validation_split(&units, opts.validation_fraction, seed);
        if cuts.is_empty() {
            return Err(BacktestError::data(
                &opts.data,
                format!("{} units and --validation-fraction {}: no unit is held out", units.len(), opts.validation_fraction),
            ));
        }
        if opts.progress {
            eprintln!(
                "  split {}/{} (seed {seed}): fitting {} trees on {} units",
                r + 1,
                opts.repeats.max(1),
                opts.params.trees,
                train_units.len()
            );
        }
        let (model, _) = fit(&train_units)?;
        let split: Vec<(f64, f64)> = cuts
            .iter()
            .map(|&(u, cut)| {
                let unit = &units[u];
                let last = unit_vectors(&opts.features, unit, cut).pop().unwrap_or_default();
                (model.predict_vector(&last), (unit.rows.len() - cut) as f64)
            })
            .collect();
        per_split.push(score(&split).rmse);
        pairs.extend(split);
    }
    let validation = score(&pairs);
    if opts.progress {
        eprintln!("  fitting the registered model on all {} units", units.len());
    }
    let all: Vec<usize> = (0..units.len()).collect();
    let (model, training_rows) = fit(&all)?;
    let artifact = serde_json::to_vec(&model).map_err(|e| BacktestError::data(&opts.data, e.to_string()))?;
    let sha = sha256_file(&opts.data).map_err(|e| BacktestError::data(&opts.data, e.to_string()))?;
    let mut metrics = BTreeMap::new();
    metrics.insert("validation_rmse".to_string(), validation.rmse);
    metrics.insert("validation_mae".to_string(), validation.mae);
    metrics.insert("validation_phm08_per_unit".to_string(), validation.phm08 / validation.units.max(1) as f64);
    metrics.insert("validation_predictions".to_string(), validation.units as f64);
    for (r, rmse) in per_split.iter().enumerate() {
        metrics.insert(format!("validation_rmse_split{}", r + 1), *rmse);
    }
    let meta = ModelMeta {
        kind: RUL_MODEL_KIND.to_string(),
        params: serde_json::json!({
            "gbt": opts.params,
            "features": opts.features,
            "rul_clip": RUL_CLIP,
            "validation": {"fraction": opts.validation_fraction, "seeds": [opts.seed, opts.seed.wrapping_add(opts.repeats.max(1) as u64 - 1)],
                "cut": "uniform over [max(31, L - 145), L - 7]: ≥ 31 cycles observed, true RUL 7..=145"},
        }),
        training_data: opts.data.display().to_string(),
        training_data_sha256: sha,
        metrics,
        notes: Some(format!(
            "C-MAPSS RUL model trained on all {} units; validated by {} seeded holdouts of {:.0} % of the units, each cut at a random cycle",
            units.len(),
            opts.repeats.max(1),
            opts.validation_fraction * 100.0
        )),
    };
    let reg = ModelRegistry::new(&opts.registry);
    let version = reg
        .register(&opts.name, "json", &artifact, meta, now_ms)
        .map_err(|e| BacktestError::data(&opts.registry, e.to_string()))?;
    Ok(TrainReport {
        model: version,
        validation,
        per_split_rmse: per_split,
        training_rows,
        units: units.len(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Loads a model from the registry: `NAME`, `NAME@latest` or `NAME@<version>`.
pub fn load_model(registry: &Path, model: &str) -> Result<LoadedRul, BacktestError> {
    let (v, bytes) = super::registered_model(registry, model, RUL_MODEL_KIND, "")?;
    let model: RulModel =
        serde_json::from_slice(&bytes).map_err(|e| BacktestError::data(registry, format!("{}@{}: {e}", v.name, v.version)))?;
    Ok(LoadedRul { name: v.name, version: v.version, model })
}

/// Options of `vigil backtest cmapss`.
#[derive(Debug, Clone)]
pub struct BacktestOptions {
    /// The test file (units cut before failure).
    pub test: PathBuf,
    /// The true RUL of each test unit.
    pub rul: PathBuf,
    /// Write `unit,predicted_rul,true_rul` here.
    pub out: Option<PathBuf>,
    /// Timely workers.
    pub workers: usize,
    /// Show progress on stderr.
    pub progress: bool,
}

/// One unit's result.
#[derive(Debug, Clone, Serialize)]
pub struct UnitResult {
    /// Unit number.
    pub unit: u32,
    /// Cycles observed.
    pub cycles: usize,
    /// The graph's last prediction, cycles.
    pub predicted_rul: f64,
    /// The true RUL, cycles.
    pub true_rul: f64,
}

/// What `vigil backtest cmapss` reports.
#[derive(Debug, Clone, Serialize)]
pub struct CmapssReport {
    /// The model, `name@version`.
    pub model: String,
    /// Scores.
    pub scores: RulScores,
    /// Per unit.
    pub units: Vec<UnitResult>,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// The dataflow settings of a C-MAPSS replay: one-cycle windows, a prediction every window, the model.
pub fn replay_config(base: &VigilConfig, model: LoadedRul) -> VigilConfig {
    let mut cfg = super::series_config(base, CYCLE_MS);
    cfg.maintenance.predict_every_windows = 1;
    cfg.models.loaded_rul = Some(Arc::new(model));
    cfg
}

/// The units as series: one sensor per column, a reading per cycle.
pub fn unit_series(units: &[Unit]) -> Vec<Series> {
    let mut out = Vec::with_capacity(units.len() * COLUMNS.len());
    for u in units {
        let asset = u.asset();
        for (k, col) in COLUMNS.iter().enumerate() {
            out.push(Series {
                sensor_id: format!("{asset}-{col}"),
                asset_id: asset.clone(),
                sensor_type: SensorType::Other,
                points: u
                    .rows
                    .iter()
                    .enumerate()
                    .map(|(c, row)| Point { ts: T0 + (c as i64 + 1) * CYCLE_MS, value: row[k] })
                    .collect(),
            });
        }
    }
    out
}

/// Replays the test units through the dataflow with the model and scores the last predictions.
pub fn backtest(base: &VigilConfig, model: LoadedRul, opts: &BacktestOptions) -> Result<CmapssReport, BacktestError> {
    let start = std::time::Instant::now();
    let units = read_units(&opts.test)?;
    let truth = read_rul(&opts.rul)?;
    if truth.len() != units.len() {
        return Err(BacktestError::data(&opts.rul, format!("{} true RULs for {} test units", truth.len(), units.len())));
    }
    let name = format!("{}@{}", model.name, model.version);
    let cfg = replay_config(base, model);
    if opts.progress {
        let cycles: usize = units.iter().map(|u| u.rows.len()).sum();
        eprintln!(
            "  replaying {} units ({cycles} cycles, {} readings) through the dataflow with {name}",
            units.len(),
            cycles * COLUMNS.len()
        );
    }
    let stats = run_series(&unit_series(&units), &cfg, opts.workers, &scratch_dir("cmapss"))?;
    let mut results = Vec::with_capacity(units.len());
    for (u, t) in units.iter().zip(&truth) {
        let last_ts = T0 + u.rows.len() as i64 * CYCLE_MS;
        let p = stats
            .last_predictions
            .get(u.asset().as_str())
            .ok_or_else(|| BacktestError::data(&opts.test, format!("the graph made no prediction for unit {}", u.id)))?;
        // The last window of a unit ends one cycle after its last reading.
        if p.ts < last_ts + CYCLE_MS {
            return Err(BacktestError::data(&opts.test, format!("unit {}: the last prediction is before the last cycle", u.id)));
        }
        let predicted = p.rul_hours.map_or(RUL_CLIP, |h| h * 3_600_000.0 / CYCLE_MS as f64);
        results.push(UnitResult { unit: u.id, cycles: u.rows.len(), predicted_rul: predicted, true_rul: *t });
    }
    if let Some(out) = &opts.out {
        let mut text = String::from("unit,predicted_rul,true_rul\n");
        for r in &results {
            text.push_str(&format!("{},{:.3},{}\n", r.unit, r.predicted_rul, r.true_rul));
        }
        std::fs::write(out, text).map_err(BacktestError::io(out))?;
    }
    let pairs: Vec<(f64, f64)> = results.iter().map(|r| (r.predicted_rul, r.true_rul)).collect();
    Ok(CmapssReport { model: name, scores: score(&pairs), units: results, seconds: start.elapsed().as_secs_f64() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Synthetic engines: s2 wears linearly towards failure, s3 is noise, the rest constant.
    fn synthetic_units(n: u32, seed: u64) -> Vec<Unit> {
        let mut rng = SplitMix64::new(seed);
        (1..=n)
            .map(|id| {
                let len = 120 + rng.below(80);
                let rows = (0..len)
                    .map(|c| {
                        let mut row = [1.0; 24];
                        row[4] = 640.0 + 5.0 * (c as f64 / len as f64).powi(2) + (rng.below(100) as f64 - 50.0) / 200.0;
                        row[5] = 1580.0 + (rng.below(100) as f64 - 50.0) / 10.0;
                        row
                    })
                    .collect();
                Unit { id, rows }
            })
            .collect()
    }

    #[test]
    fn the_graph_predicts_what_the_model_predicts_offline() {
        let units = synthetic_units(12, 5);
        let features = RulFeatureConfig::default();
        let params = GbtParams { trees: 40, ..GbtParams::default() };
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for u in &units {
            let len = u.rows.len();
            for (c, v) in unit_vectors(&features, u, len).into_iter().enumerate() {
                x.push(v);
                y.push(((len - c - 1) as f64).min(RUL_CLIP));
            }
        }
        let model = RulModel {
            inputs: COLUMNS.iter().map(|c| c.to_string()).collect(),
            features: features.clone(),
            gbt: GbtModel::fit(&x, &y, &params).unwrap(),
            clip: RUL_CLIP,
        };
        // Test units: the same engines cut before failure.
        let cut: Vec<Unit> =
            units.iter().map(|u| Unit { id: u.id, rows: u.rows[..u.rows.len() - 15 - u.id as usize].to_vec() }).collect();
        let offline: Vec<f64> =
            cut.iter().map(|u| model.predict_vector(&unit_vectors(&features, u, u.rows.len()).pop().unwrap())).collect();
        let cfg = replay_config(&VigilConfig::default(), LoadedRul { name: "t".into(), version: 3, model });
        let tmp = std::env::temp_dir().join(format!("vigil-cmapss-test-{}", std::process::id()));
        for workers in [1, 2] {
            let stats = run_series(&unit_series(&cut), &cfg, workers, &tmp.join(workers.to_string())).unwrap();
            for (u, want) in cut.iter().zip(&offline) {
                let p = &stats.last_predictions[u.asset().as_str()];
                assert_eq!(p.model, "t@3");
                assert_eq!(p.ts, T0 + (u.rows.len() as i64 + 1) * CYCLE_MS, "the last window of unit {}", u.id);
                let got = p.rul_hours.unwrap();
                assert!((got - want).abs() < 1e-9, "unit {}: graph {got}, offline {want}", u.id);
            }
        }
    }

    #[test]
    fn phm08_and_rmse() {
        let s = score(&[(10.0, 20.0), (30.0, 20.0)]);
        assert!((s.rmse - 10.0).abs() < 1e-12);
        let expect = ((10.0f64 / 13.0).exp() - 1.0) + ((10.0f64 / 10.0).exp() - 1.0);
        assert!((s.phm08 - expect).abs() < 1e-12);
    }

    #[test]
    fn the_split_is_seeded_and_cuts_leave_a_test_like_rul() {
        let units: Vec<Unit> = (1..=50).map(|id| Unit { id, rows: vec![[0.0; 24]; 150 + id as usize * 3] }).collect();
        let a = validation_split(&units, 0.2, 7);
        assert_eq!(a, validation_split(&units, 0.2, 7));
        assert_ne!(a, validation_split(&units, 0.2, 8));
        assert_eq!(a.1.len(), 10);
        assert_eq!(a.0.len(), 40);
        for (u, cut) in &a.1 {
            let len = units[*u].rows.len();
            assert!(*cut >= 31 && len - cut >= 7 && len - cut <= 145, "{cut} of {len}");
            assert!(!a.0.contains(u));
        }
    }
}
