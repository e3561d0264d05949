//! `vigil backtest labelled`: any labelled CSV of one asset's sensors through the graph.
//!
//! Input: a CSV file, or a directory of them (each file one asset, named after the file), with a
//! timestamp column, a 0/1 label column, optionally a 0/1 changepoint column, and every other
//! numeric column (most of its cells numbers; the others count as missing) a sensor of the
//! asset — so the per-sensor detectors and the multivariate detector of the asset all take part.
//! The first `train_rows` rows of each file only warm the detectors up and are not scored.
//!
//! Output: point-wise precision, recall, F1, false-alarm rate (normal rows flagged / normal rows)
//! and missed-alarm rate (anomalous rows not flagged / anomalous rows), per file and over all
//! files. A row is flagged when an anomaly the graph emitted covers it: a reading's anomaly its
//! row, a window's anomaly the rows inside the window. With a changepoint column, NAB-style
//! changepoint scores as well: NAB's windows (10 % of the file's rows shared among its
//! changepoints, centred on each) and NAB's scoring of the flagged rows, three profiles.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use vigil_events::{EventTime, SensorType};
use vigil_operators::scoring::{self, ScoredSeries, NAB_PROFILES};

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
    let mut cp_series: Vec<ScoredSeries> = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        if opts.progress {
            eprint!("\r  {}/{} files  {:<60}", i + 1, paths.len(), path.display());
        }
        let file = read_file(path, opts)?;
        let file_cfg = series_config(cfg, median_step_ms(&file.ts));
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
        let flagged = flagged_rows(&file.ts, &stats.anomalies);
        let mut points = PointScores::default();
        for (row, (&f, &l)) in flagged.iter().zip(&file.labels).enumerate() {
            if row >= opts.train_rows {
                points.add(f, l);
            }
        }
        total.merge(&points);
        if let Some(cps) = &file.changepoints {
            cp_series.push(ScoredSeries {
                name: file.name.clone(),
                scores: flagged.iter().enumerate().map(|(r, &f)| if f && r >= opts.train_rows { 1.0 } else { 0.0 }).collect(),
                windows: changepoint_windows(cps),
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
    let changepoints = opts.changepoint.as_ref().map(|_| {
        let windows: usize = cp_series.iter().map(|s| s.windows.len()).sum();
        NAB_PROFILES
            .iter()
            .map(|p| {
                let raw: f64 = cp_series.iter().map(|s| scoring::score_series(s, 0.5, p).raw).sum();
                (p.name.to_string(), scoring::normalised(raw, windows, p))
            })
            .collect()
    });
    Ok(LabelledReport { files: files_out, points: total.finish(), changepoints, seconds: start.elapsed().as_secs_f64() })
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
        let (from, to) = match a.window_start {
            Some(start) => (ts.partition_point(|t| *t < start), ts.partition_point(|t| *t < a.ts)),
            None => {
                let i = ts.partition_point(|t| *t < a.ts);
                (i, (i + 1).min(ts.len()))
            }
        };
        for f in &mut flagged[from..to.max(from)] {
            *f = true;
        }
    }
    flagged
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
