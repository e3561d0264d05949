//! `vigil backtest labelled`: any labelled CSV of one asset's sensors through the graph.
//!
//! Input: a CSV file, or a directory of them (each file one asset, named after the file), with a
//! timestamp column, a 0/1 label column, optionally a 0/1 changepoint column, and every other
//! numeric column (most of its cells numbers; the others count as missing) a sensor of the
//! asset — so the per-sensor detectors and the multivariate detector of the asset all take part.
//! The first `train_rows` rows of each file are the asset's normal period: the normal model
//! (`operators::normal_model`) learns the asset's joint behaviour from them, the other detectors
//! warm up on them, and they are not scored. With more than one sensor, a row's verdict is the
//! asset-level detectors' (the normal model, the running Mahalanobis distance) and the hard
//! limits' (the per-sensor statistical detectors' events still go to the report's counts); with
//! one sensor, every detector's.
//!
//! Output: point-wise precision, recall, F1, false-alarm rate (normal rows flagged / normal rows)
//! and missed-alarm rate (anomalous rows not flagged / anomalous rows), per file and over all
//! files. A row is flagged when an anomaly the graph emitted covers it: a reading's anomaly its
//! row, a window's anomaly the rows inside the window. With a changepoint column, changepoint
//! scores as well, by SKAB's protocol: a window from each true changepoint to
//! `changepoint_window_ms` after it (cut where the next begins); the predicted changepoints are
//! the scored rows where the verdict changes; NAB's three profiles (a detection's reward falls
//! with its delay in the window; a miss costs the profile's false-negative weight; a predicted
//! changepoint outside every window its false-positive weight), normalised to 100 for a perfect
//! detector and 0 for none. `out` writes every scored row's verdict (`file,row,timestamp,score,
//! predicted,label`) so anyone can recompute the figures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use std::io::Write;
use vigil_events::{EventTime, SensorType};

use vigil_operators::scoring::{CostProfile, NAB_PROFILES};

use super::{median_step_ms, run_series, scratch_dir, series_config, BacktestError, Point, Series};
use crate::config::VigilConfig;
use crate::run::AnomalyBrief;

/// Options of a labelled backtest.
#[derive(Debug, Clone)]
pub struct LabelledOptions {
    /// A CSV file or a directory of them.
    pub data: PathBuf,
    /// The timestamp column.
    pub timestamp: String,
    /// The 0/1 anomaly label column.
    pub label: String,
    /// The 0/1 changepoint column, if any.
    pub changepoint: Option<String>,
    /// Field separator.
    pub sep: u8,
    /// Rows of each file that only warm the detectors up.
    pub train_rows: usize,
    /// Timely workers per file.
    pub workers: usize,
    /// Show progress on stderr.
    pub progress: bool,
    /// Width of a changepoint's window, after it (ms).
    pub changepoint_window_ms: i64,
    /// Where to write each scored row's verdict (CSV), if anywhere.
    pub out: Option<PathBuf>,
}

/// One labelled file, read.
#[derive(Debug, Clone)]
pub struct LabelledFile {
    /// File name without extension: the asset.
    pub name: String,
    /// Event times of the rows (strictly increasing after sorting).
    pub ts: Vec<EventTime>,
    /// Sensor columns: name and values (NaN where a cell is empty).
    pub sensors: Vec<(String, Vec<f64>)>,
    /// Labels, one per row.
    pub labels: Vec<bool>,
    /// Changepoints, one per row, when the column was given.
    pub changepoints: Option<Vec<bool>>,
}

/// Point-wise counts and rates.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PointScores {
    /// Rows scored.
    pub rows: usize,
    /// Anomalous rows flagged.
    pub tp: usize,
    /// Normal rows flagged.
    pub fp: usize,
    /// Anomalous rows not flagged.
    pub fn_: usize,
    /// Normal rows not flagged.
    pub tn: usize,
    /// tp / (tp + fp).
    pub precision: f64,
    /// tp / (tp + fn).
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// fp / (fp + tn).
    pub false_alarm_rate: f64,
    /// fn / (tp + fn).
    pub missed_alarm_rate: f64,
}

impl PointScores {
    fn add(&mut self, flagged: bool, label: bool) {
        self.rows += 1;
        match (flagged, label) {
            (true, true) => self.tp += 1,
            (true, false) => self.fp += 1,
            (false, true) => self.fn_ += 1,
            (false, false) => self.tn += 1,
        }
    }

    fn finish(mut self) -> Self {
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        self.precision = ratio(self.tp, self.tp + self.fp);
        self.recall = ratio(self.tp, self.tp + self.fn_);
        self.f1 = if self.precision + self.recall > 0.0 {
            2.0 * self.precision * self.recall / (self.precision + self.recall)
        } else {
            0.0
        };
        self.false_alarm_rate = ratio(self.fp, self.fp + self.tn);
        self.missed_alarm_rate = ratio(self.fn_, self.tp + self.fn_);
        self
    }

    fn merge(&mut self, o: &PointScores) {
        self.rows += o.rows;
        self.tp += o.tp;
        self.fp += o.fp;
        self.fn_ += o.fn_;
        self.tn += o.tn;
    }
}

/// One file's result.
#[derive(Debug, Clone, Serialize)]
pub struct LabelledFileResult {
    /// The file (asset).
    pub file: String,
    /// Sensors.
    pub sensors: usize,
    /// Anomalies the graph emitted, by detector.
    pub anomalies: BTreeMap<String, usize>,
    /// Point-wise scores.
    pub points: PointScores,
}

/// What `vigil backtest labelled` reports.
#[derive(Debug, Clone, Serialize)]
pub struct LabelledReport {
    /// Per file.
    pub files: Vec<LabelledFileResult>,
    /// Over every file.
    pub points: PointScores,
    /// NAB-style changepoint scores per profile (normalised), when a changepoint column was given.
    pub changepoints: Option<BTreeMap<String, f64>>,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Runs the labelled files through the dataflow and scores them.
pub fn backtest(cfg: &VigilConfig, opts: &LabelledOptions) -> Result<LabelledReport, BacktestError> {
    let start = std::time::Instant::now();
    let paths = input_files(&opts.data)?;
    let mut files_out = Vec::new();
    let mut total = PointScores::default();
    let mut cp_series: Vec<ChangepointSeries> = Vec::new();
    let mut out = match &opts.out {
        Some(p) => {
            let f = std::fs::File::create(p).map_err(|e| BacktestError::data(p, e.to_string()))?;
            let mut w = std::io::BufWriter::new(f);
            writeln!(w, "file,row,timestamp,score,predicted,label").map_err(|e| BacktestError::data(p, e.to_string()))?;
            Some(w)
        }
        None => None,
    };
    for (i, path) in paths.iter().enumerate() {
        if opts.progress {
            eprint!("\r  {}/{} files  {:<60}", i + 1, paths.len(), path.display());
        }
        let file = read_file(path, opts)?;
        let mut file_cfg = series_config(cfg, median_step_ms(&file.ts));
        // The normal period: the training rows, one window each.
        let multivariate = file.sensors.len() > 1;
        if multivariate && opts.train_rows > 0 {
            file_cfg.detectors.normal_model_train_windows = opts.train_rows;
        }
        let series: Vec<Series> = file
            .sensors
            .iter()
            .map(|(name, values)| Series {
                sensor_id: format!("{}-{name}", file.name),
                asset_id: file.name.clone(),
                sensor_type: SensorType::Other,
                points: file
                    .ts
                    .iter()
                    .zip(values)
                    .filter(|(_, v)| v.is_finite())
                    .map(|(&ts, &value)| Point { ts, value })
                    .collect(),
            })
            .collect();
        let stats = run_series(&series, &file_cfg, opts.workers, &scratch_dir("labelled"))?;
        let verdicts: Vec<AnomalyBrief> = if file_cfg.detectors.normal_model_train_windows > 0 {
            stats.anomalies.iter().filter(|a| ASSET_VERDICT.contains(&a.detector.as_str())).cloned().collect()
        } else {
            stats.anomalies.clone()
        };
        let flagged = flagged_rows(&file.ts, &verdicts);
        if let Some(w) = out.as_mut() {
            let scores = row_scores(&file.ts, &verdicts);
            for (row, ((&f, &l), sc)) in flagged.iter().zip(&file.labels).zip(&scores).enumerate().skip(opts.train_rows) {
                writeln!(w, "{},{row},{},{sc},{},{}", csv_field(&file.name), file.ts[row], u8::from(f), u8::from(l))
                    .map_err(|e| BacktestError::data(opts.out.as_deref().unwrap_or(path), e.to_string()))?;
            }
        }
        let mut points = PointScores::default();
        for (row, (&f, &l)) in flagged.iter().zip(&file.labels).enumerate() {
            if row >= opts.train_rows {
                points.add(f, l);
            }
        }
        total.merge(&points);
        if let Some(cps) = &file.changepoints {
            let from = opts.train_rows.min(file.ts.len());
            cp_series.push(ChangepointSeries {
                ts: file.ts[from..].to_vec(),
                flagged: flagged[from..].to_vec(),
                changepoints: cps[from..].to_vec(),
            });
        }
        let mut anomalies: BTreeMap<String, usize> = BTreeMap::new();
        for a in &stats.anomalies {
            *anomalies.entry(a.detector.clone()).or_default() += 1;
        }
        files_out.push(LabelledFileResult {
            file: path.display().to_string(),
            sensors: file.sensors.len(),
            anomalies,
            points: points.finish(),
        });
    }
    if opts.progress {
        eprintln!();
    }
    if let Some(mut w) = out {
        w.flush().map_err(|e| BacktestError::data(opts.out.as_deref().unwrap_or(&opts.data), e.to_string()))?;
    }
    let changepoints = opts.changepoint.as_ref().map(|_| {
        NAB_PROFILES
            .iter()
            .map(|p| (p.name.to_string(), skab_changepoint_score(&cp_series, opts.changepoint_window_ms, p)))
            .collect()
    });
    Ok(LabelledReport { files: files_out, points: total.finish(), changepoints, seconds: start.elapsed().as_secs_f64() })
}

/// With several sensors, the detectors whose events make a row's verdict: the asset-level ones
/// (the normal model, and the running Mahalanobis distance that catches a relationship between
/// sensors breaking where the normal model leaves a slow sensor out) and the hard limits.
const ASSET_VERDICT: &[&str] = &["normal_model", "asset_mahalanobis", "hard_limit"];

/// The scored rows of one file, for the changepoint score.
#[derive(Debug, Clone)]
pub struct ChangepointSeries {
    /// Event times.
    pub ts: Vec<EventTime>,
    /// Verdicts.
    pub flagged: Vec<bool>,
    /// True changepoints.
    pub changepoints: Vec<bool>,
}

/// The changepoint score by SKAB's protocol, pooled over files, normalised (100: every window's
/// changepoint found at its start and nothing else; 0: nothing found).
pub fn skab_changepoint_score(series: &[ChangepointSeries], window_ms: i64, p: &CostProfile) -> f64 {
    let (a_tp, a_fp, a_fn) = (p.tp, -p.fp, -p.fn_weight);
    let (mut score, mut null, mut perfect) = (0.0, 0.0, 0.0);
    for s in series {
        // Predicted changepoints: where the verdict changes (the first row counts when flagged).
        let mut predicted = Vec::new();
        let mut prev = false;
        for (i, &f) in s.flagged.iter().enumerate() {
            if f != prev {
                predicted.push(s.ts[i]);
            }
            prev = f;
        }
        let mut windows: Vec<(EventTime, EventTime)> =
            s.ts.iter().zip(&s.changepoints).filter(|(_, c)| **c).map(|(&t, _)| (t, t.saturating_add(window_ms))).collect();
        for i in 1..windows.len() {
            if windows[i - 1].1 >= windows[i].0 {
                windows[i].0 = windows[i - 1].1;
            }
        }
        let mut false_positives = predicted.len();
        for &(a, b) in &windows {
            let inside: Vec<EventTime> = predicted.iter().copied().filter(|t| *t >= a && *t <= b).collect();
            false_positives -= inside.len();
            score += match inside.first() {
                None => a_fn,
                Some(&t) => tsad_reward(a, t, b, a_tp, a_fp),
            };
        }
        score += a_fp * false_positives as f64;
        null += a_fn * windows.len() as f64;
        perfect += a_tp * windows.len() as f64;
    }
    if perfect == null {
        return 0.0;
    }
    100.0 * (score - null) / (perfect - null)
}

/// SKAB's reward for a detection at `t` in the window `[a, b]`: from `a_tp` at its start down
/// to `a_fp` at its end, along a tanh (1,000 steps, as SKAB computes it).
fn tsad_reward(a: EventTime, t: EventTime, b: EventTime, a_tp: f64, a_fp: f64) -> f64 {
    const STEPS: usize = 1000;
    let step = if b > a { (((t - a) as f64 / (b - a) as f64) * STEPS as f64) as usize } else { 0 };
    let k = step.min(STEPS - 1);
    let half_pi = std::f64::consts::FRAC_PI_2;
    let x = -half_pi + (std::f64::consts::PI) * k as f64 / (STEPS - 1) as f64;
    (a_tp - a_fp) / 2.0 * -x.tanh() / half_pi.tanh() + (a_tp - a_fp) / 2.0 + a_fp
}

/// Per row, the highest score of the anomalies covering it (0 where none does).
fn row_scores(ts: &[EventTime], anomalies: &[AnomalyBrief]) -> Vec<f64> {
    let mut out = vec![0.0f64; ts.len()];
    for a in anomalies {
        for v in &mut out[covered_rows(ts, a)] {
            *v = v.max(a.score);
        }
    }
    out
}

/// A CSV field, quoted when it must be.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// NAB's windows around changepoints: 10 % of the rows shared among them, centred on each,
/// merged where they overlap.
pub fn changepoint_windows(cps: &[bool]) -> Vec<(usize, usize)> {
    let points: Vec<usize> = cps.iter().enumerate().filter(|(_, c)| **c).map(|(i, _)| i).collect();
    if points.is_empty() || cps.is_empty() {
        return Vec::new();
    }
    let width = ((cps.len() as f64 * 0.1) / points.len() as f64).max(1.0) as usize;
    let mut out: Vec<(usize, usize)> = Vec::new();
    for p in points {
        let l = p.saturating_sub(width / 2);
        let r = (p + width / 2).min(cps.len() - 1);
        match out.last_mut() {
            Some(last) if l <= last.1 => last.1 = last.1.max(r),
            _ => out.push((l, r)),
        }
    }
    out
}

/// Rows covered by the anomalies: a reading's anomaly flags its row; a window's, its rows.
pub fn flagged_rows(ts: &[EventTime], anomalies: &[AnomalyBrief]) -> Vec<bool> {
    let mut flagged = vec![false; ts.len()];
    for a in anomalies {
        for f in &mut flagged[covered_rows(ts, a)] {
            *f = true;
        }
    }
    flagged
}

/// The rows an anomaly covers: a reading's anomaly its row, a window's the rows inside it.
fn covered_rows(ts: &[EventTime], a: &AnomalyBrief) -> std::ops::Range<usize> {
    let (from, to) = match a.window_start {
        Some(start) => (ts.partition_point(|t| *t < start), ts.partition_point(|t| *t < a.ts)),
        None => {
            let i = ts.partition_point(|t| *t < a.ts);
            (i, (i + 1).min(ts.len()))
        }
    };
    from..to.max(from)
}

/// The CSV files of `data`: the file itself, or every `.csv` below the directory, sorted.
fn input_files(data: &Path) -> Result<Vec<PathBuf>, BacktestError> {
    if data.is_file() {
        return Ok(vec![data.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![data.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).map_err(BacktestError::io(&dir))? {
            let p = e.map_err(BacktestError::io(&dir))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
                out.push(p);
            }
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(BacktestError::data(data, "no CSV files"));
    }
    Ok(out)
}

fn parse_time(s: &str) -> Option<EventTime> {
    let s = s.trim();
    if let Ok(n) = s.parse::<f64>() {
        return vigil_events::parse_timestamp(n).ok();
    }
    vigil_events::parse_timestamp_str(s)
        .ok()
        .or_else(|| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").ok().map(|t| t.and_utc().timestamp_millis()))
}

fn parse_flag(s: &str) -> Option<bool> {
    match s.trim() {
        "" | "0" | "0.0" | "false" | "False" => Some(false),
        "1" | "1.0" | "true" | "True" => Some(true),
        _ => None,
    }
}

/// Reads one labelled CSV; rows are put in time order.
pub fn read_file(path: &Path, opts: &LabelledOptions) -> Result<LabelledFile, BacktestError> {
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(opts.sep)
        .flexible(false)
        .from_path(path)
        .map_err(|e| BacktestError::data(path, e.to_string()))?;
    let headers: Vec<String> =
        rdr.headers().map_err(|e| BacktestError::data(path, e.to_string()))?.iter().map(|h| h.trim().to_string()).collect();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| BacktestError::data(path, format!("no column {name:?} (columns: {})", headers.join(", "))))
    };
    let ts_col = col(&opts.timestamp)?;
    let label_col = col(&opts.label)?;
    let cp_col = opts.changepoint.as_deref().map(col).transpose()?;
    let sensor_cols: Vec<usize> = (0..headers.len()).filter(|c| *c != ts_col && *c != label_col && Some(*c) != cp_col).collect();
    let mut rows: Vec<(EventTime, Vec<f64>, bool, bool)> = Vec::new();
    // Per column: cells that parse as numbers, and cells that do not.
    let mut parsed = vec![(0usize, 0usize); headers.len()];
    for (i, rec) in rdr.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| BacktestError::data(path, format!("line {line}: {e}")))?;
        let field = |c: usize| rec.get(c).unwrap_or_default();
        let ts = parse_time(field(ts_col))
            .ok_or_else(|| BacktestError::data(path, format!("line {line}: timestamp {:?} not understood", field(ts_col))))?;
        let label = parse_flag(field(label_col))
            .ok_or_else(|| BacktestError::data(path, format!("line {line}: label {:?} is not 0 or 1", field(label_col))))?;
        let cp = match cp_col {
            Some(c) => parse_flag(field(c))
                .ok_or_else(|| BacktestError::data(path, format!("line {line}: changepoint {:?} is not 0 or 1", field(c))))?,
            None => false,
        };
        let values = sensor_cols
            .iter()
            .map(|&c| {
                let cell = field(c).trim();
                if cell.is_empty() {
                    f64::NAN
                } else {
                    match cell.parse::<f64>() {
                        Ok(v) => {
                            parsed[c].0 += 1;
                            v
                        }
                        Err(_) => {
                            parsed[c].1 += 1;
                            f64::NAN
                        }
                    }
                }
            })
            .collect();
        rows.push((ts, values, label, cp));
    }
    rows.sort_by_key(|r| r.0);
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("asset").to_string();
    let sensors: Vec<(String, Vec<f64>)> = sensor_cols
        .iter()
        .enumerate()
        // A column is a sensor when most of its cells are numbers; other cells count as missing.
        .filter(|(_, c)| parsed[**c].0 > parsed[**c].1)
        .map(|(k, &c)| (headers[c].clone(), rows.iter().map(|r| r.1[k]).collect()))
        .collect();
    if sensors.is_empty() {
        return Err(BacktestError::data(path, "no numeric sensor columns"));
    }
    Ok(LabelledFile {
        name,
        ts: rows.iter().map(|r| r.0).collect(),
        sensors,
        labels: rows.iter().map(|r| r.2).collect(),
        changepoints: cp_col.map(|_| rows.iter().map(|r| r.3).collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changepoint_windows_share_a_tenth_of_the_rows() {
        let mut cps = vec![false; 1000];
        cps[300] = true;
        cps[700] = true;
        assert_eq!(changepoint_windows(&cps), vec![(275, 325), (675, 725)]);
        assert!(changepoint_windows(&[false; 10]).is_empty());
    }

    #[test]
    fn point_scores() {
        let mut p = PointScores::default();
        for (f, l) in [(true, true), (true, false), (false, true), (false, false), (false, false)] {
            p.add(f, l);
        }
        let p = p.finish();
        assert_eq!((p.tp, p.fp, p.fn_, p.tn), (1, 1, 1, 2));
        assert!((p.precision - 0.5).abs() < 1e-12 && (p.recall - 0.5).abs() < 1e-12 && (p.f1 - 0.5).abs() < 1e-12);
        assert!((p.false_alarm_rate - 1.0 / 3.0).abs() < 1e-12);
        assert!((p.missed_alarm_rate - 0.5).abs() < 1e-12);
    }
}
