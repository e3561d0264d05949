//! `vigil backtest nab`: the Numenta Anomaly Benchmark through the streaming graph.
//!
//! Input: a directory in NAB's layout — `data/<category>/<file>.csv` (`timestamp,value`) and
//! `labels/combined_windows.json`. Each file becomes one sensor of its own asset (type `other`,
//! no limits) and goes through the dataflow with tumbling windows of the file's step (the median
//! gap between rows), so each window holds one row. The anomalies the graph emits for a row are
//! combined into an anomaly score in [0, 1]: the largest of the novelty score and a hard-limit
//! breach mapped to `s / (s + 1)` (see [`row_scores`] for why the robust z-score is left out). Output: NAB's results format per file (`timestamp,value,anomaly_score,label`)
//! and NAB's scores ([`vigil_operators::scoring`]) for the three profiles, with one threshold per
//! profile chosen over the whole corpus, overall and per category.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::Serialize;
use vigil_events::{EventTime, SensorType};
use vigil_operators::scoring::{self, CostProfile, ScoredSeries, NAB_PROFILES};

use super::{median_step_ms, run_series, scratch_dir, series_config, BacktestError, Point, Series};
use crate::config::VigilConfig;
use crate::run::AnomalyBrief;

/// The detector name written in NAB's results layout.
pub const DETECTOR: &str = "vigil";

/// One file of the corpus.
#[derive(Debug, Clone)]
pub struct NabFile {
    /// Category (the folder under `data/`).
    pub category: String,
    /// File name without `.csv`.
    pub name: String,
    /// Event times of the rows.
    pub ts: Vec<EventTime>,
    /// Values of the rows.
    pub values: Vec<f64>,
    /// Label windows, as event times (inclusive).
    pub windows: Vec<(EventTime, EventTime)>,
}

impl NabFile {
    /// The key NAB's labels use: `<category>/<file>.csv`.
    pub fn key(&self) -> String {
        format!("{}/{}.csv", self.category, self.name)
    }
}

/// Reads a corpus in NAB's layout.
pub fn load(dir: &Path) -> Result<Vec<NabFile>, BacktestError> {
    let data = dir.join("data");
    let labels_path = dir.join("labels").join("combined_windows.json");
    let labels_text = std::fs::read_to_string(&labels_path).map_err(BacktestError::io(&labels_path))?;
    let labels: BTreeMap<String, Vec<[String; 2]>> =
        serde_json::from_str(&labels_text).map_err(|e| BacktestError::data(&labels_path, e.to_string()))?;
    let mut files = Vec::new();
    let categories: Vec<PathBuf> = read_dir_sorted(&data)?.into_iter().filter(|p| p.is_dir()).collect();
    for cat in categories {
        let category = file_name(&cat);
        for path in read_dir_sorted(&cat)? {
            if path.extension().and_then(|e| e.to_str()) != Some("csv") {
                continue;
            }
            let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
            let (ts, values) = read_csv(&path)?;
            let key = format!("{category}/{name}.csv");
            let mut windows = Vec::new();
            for [a, b] in labels.get(&key).map(Vec::as_slice).unwrap_or_default() {
                windows.push((parse_ts(a, &labels_path)?, parse_ts(b, &labels_path)?));
            }
            files.push(NabFile { category: category.clone(), name, ts, values, windows });
        }
    }
    if files.is_empty() {
        return Err(BacktestError::data(&data, "no CSV files under data/<category>/"));
    }
    Ok(files)
}

fn file_name(p: &Path) -> String {
    p.file_name().and_then(|s| s.to_str()).unwrap_or_default().to_string()
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, BacktestError> {
    let mut out: Vec<PathBuf> =
        std::fs::read_dir(dir).map_err(BacktestError::io(dir))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    out.sort();
    Ok(out)
}

/// NAB's timestamps: `YYYY-MM-DD HH:MM:SS[.ffffff]`, UTC.
fn parse_ts(s: &str, path: &Path) -> Result<EventTime, BacktestError> {
    chrono::NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S%.f")
        .map(|t| t.and_utc().timestamp_millis())
        .map_err(|e| BacktestError::data(path, format!("timestamp {s:?}: {e}")))
}

fn read_csv(path: &Path) -> Result<(Vec<EventTime>, Vec<f64>), BacktestError> {
    let text = std::fs::read_to_string(path).map_err(BacktestError::io(path))?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    if header.trim() != "timestamp,value" {
        return Err(BacktestError::data(path, format!("expected the header timestamp,value, found {header:?}")));
    }
    let (mut ts, mut values) = (Vec::new(), Vec::new());
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (t, v) =
            line.split_once(',').ok_or_else(|| BacktestError::data(path, format!("line {}: expected timestamp,value", i + 2)))?;
        let v: f64 = v
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| BacktestError::data(path, format!("line {}: value {v:?} is not a number", i + 2)))?;
        ts.push(parse_ts(t, path)?);
        values.push(v);
    }
    Ok((ts, values))
}

/// The least novelty score a backtest reports (the pipeline's alert threshold is higher).
pub const NOVELTY_FLOOR: f64 = 0.01;

/// The dataflow settings a NAB file runs with: the configured detectors, windows of the file's step.
pub fn file_config(base: &VigilConfig, file: &NabFile) -> VigilConfig {
    let mut cfg = series_config(base, median_step_ms(&file.ts));
    // Every novelty score above noise reaches the scorer, which picks the corpus threshold itself.
    cfg.detectors.novelty_threshold = cfg.detectors.novelty_threshold.min(NOVELTY_FLOOR);
    cfg
}

/// The anomaly score in [0, 1] of each row from the anomalies the graph emitted. Rows are in
/// file order (a file may repeat an hour); the dataflow saw them in event-time order.
pub fn row_scores(file: &NabFile, anomalies: &[AnomalyBrief]) -> Vec<f64> {
    let mut by_time: Vec<(EventTime, usize)> = file.ts.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    by_time.sort_unstable();
    let mut scores = vec![0.0; file.ts.len()];
    for a in anomalies {
        // A window's anomaly is known at the last row inside the window; a reading's at the reading.
        let at = if a.window_start.is_some() { a.ts - 1 } else { a.ts };
        let idx = by_time.partition_point(|(t, _)| *t <= at);
        let Some(&(row_ts, _)) = by_time.get(idx.wrapping_sub(1)) else { continue };
        let Some(s) = detector_score(&a.detector, a.score) else { continue };
        for &(t, row) in by_time[..idx].iter().rev() {
            if t != row_ts {
                break;
            }
            scores[row] = f64::max(scores[row], s);
        }
    }
    scores
}

/// A detector's score mapped to [0, 1], for the detectors that score a single series: the
/// novelty score as it is, a hard-limit breach 0.5 at the limit. The robust z-score is left out:
/// with one row a window its median/MAD baseline collapses on smooth series (1,110 alerts on
/// `art_daily_no_noise`), and the multivariate detector needs two sensors.
fn detector_score(detector: &str, score: f64) -> Option<f64> {
    match detector {
        "novelty" => Some(score.clamp(0.0, 1.0)),
        "hard_limit" => Some((score.max(0.0) / (score.max(0.0) + 1.0)).clamp(0.0, 1.0)),
        _ => None,
    }
}

/// One file's result.
#[derive(Debug, Clone, Serialize)]
pub struct FileResult {
    /// `<category>/<file>.csv`.
    pub file: String,
    /// Rows.
    pub rows: usize,
    /// Label windows scored.
    pub windows: usize,
    /// Anomalies the graph emitted, by detector.
    pub anomalies: BTreeMap<String, usize>,
    /// Raw NAB score per profile at the corpus threshold.
    pub raw: BTreeMap<String, f64>,
}

/// One profile's result.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileResult {
    /// Profile name.
    pub profile: String,
    /// The threshold chosen over the corpus.
    pub threshold: f64,
    /// Normalised score over the corpus (null detector 0, perfect 100).
    pub score: f64,
    /// Normalised score per category at the same threshold.
    pub by_category: BTreeMap<String, f64>,
    /// Label windows with a detection.
    pub windows_detected: usize,
    /// Label windows without one.
    pub windows_missed: usize,
    /// Detections outside every window (rows after the probationary period).
    pub false_positive_rows: usize,
}

/// What `vigil backtest nab` reports.
#[derive(Debug, Clone, Serialize)]
pub struct NabReport {
    /// Files scored.
    pub files: Vec<FileResult>,
    /// Per profile.
    pub profiles: Vec<ProfileResult>,
    /// Rows in the corpus.
    pub rows: usize,
    /// Label windows scored.
    pub windows: usize,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Options of a NAB backtest.
#[derive(Debug, Clone)]
pub struct NabOptions {
    /// The corpus directory.
    pub data: PathBuf,
    /// Where to write NAB's results layout (`<out>/vigil/<category>/vigil_<file>.csv`).
    pub out: Option<PathBuf>,
    /// Files run at once.
    pub parallel: usize,
    /// Show progress on stderr.
    pub progress: bool,
}

/// Runs the corpus through the dataflow and scores it.
pub fn backtest(cfg: &VigilConfig, opts: &NabOptions) -> Result<NabReport, BacktestError> {
    let start = std::time::Instant::now();
    let files = load(&opts.data)?;
    let scored = score_files(cfg, &files, opts)?;
    if let Some(out) = &opts.out {
        write_results(out, &files, &scored)?;
    }
    let series: Vec<ScoredSeries> = files
        .iter()
        .zip(&scored)
        .map(|(f, s)| ScoredSeries { name: f.key(), scores: s.scores.clone(), windows: scoring::window_rows(&f.ts, &f.windows) })
        .collect();
    let windows: usize = series.iter().map(|s| s.windows.len()).sum();
    let mut profiles = Vec::new();
    let mut raw_by_file: Vec<BTreeMap<String, f64>> = vec![BTreeMap::new(); files.len()];
    for p in NAB_PROFILES.iter() {
        let (threshold, _) = scoring::optimise_threshold(&series, p);
        let mut total = scoring::Tally::default();
        let detected: usize = series.iter().map(|s| windows_detected(s, threshold)).sum();
        let mut by_cat: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        for (i, s) in series.iter().enumerate() {
            let t = scoring::score_series(s, threshold, p);
            raw_by_file[i].insert(p.name.to_string(), t.raw);
            let c = by_cat.entry(files[i].category.clone()).or_default();
            c.0 += t.raw;
            c.1 += s.windows.len();
            total.raw += t.raw;
            total.tp += t.tp;
            total.fp += t.fp;
            total.fn_ += t.fn_;
        }
        profiles.push(ProfileResult {
            profile: p.name.to_string(),
            threshold,
            score: scoring::normalised(total.raw, windows, p),
            by_category: by_cat.into_iter().map(|(k, (raw, w))| (k, category_score(raw, w, p))).collect(),
            windows_detected: detected,
            windows_missed: windows - detected,
            false_positive_rows: total.fp,
        });
    }
    let files_out = files
        .iter()
        .zip(&scored)
        .zip(raw_by_file)
        .zip(&series)
        .map(|(((f, s), raw), ser)| FileResult {
            file: f.key(),
            rows: f.ts.len(),
            windows: ser.windows.len(),
            anomalies: s.anomalies.clone(),
            raw,
        })
        .collect();
    Ok(NabReport {
        files: files_out,
        profiles,
        rows: files.iter().map(|f| f.ts.len()).sum(),
        windows,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Windows of `s` with a row at or above `threshold` after the probationary period.
fn windows_detected(s: &ScoredSeries, threshold: f64) -> usize {
    let probation = scoring::probation_rows(s.scores.len());
    s.windows
        .iter()
        .filter(|(l, r)| s.scores.get((*l).max(probation)..=*r).is_some_and(|w| w.iter().any(|x| *x >= threshold)))
        .count()
}

/// A category without windows has no normalisation: its score is its raw score (≤ 0).
fn category_score(raw: f64, windows: usize, p: &CostProfile) -> f64 {
    if windows == 0 {
        raw
    } else {
        scoring::normalised(raw, windows, p)
    }
}

struct Scored {
    scores: Vec<f64>,
    anomalies: BTreeMap<String, usize>,
}

fn score_files(cfg: &VigilConfig, files: &[NabFile], opts: &NabOptions) -> Result<Vec<Scored>, BacktestError> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Scored, BacktestError>>>> = Mutex::new((0..files.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..opts.parallel.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(file) = files.get(i) else { break };
                let r = score_file(cfg, file);
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if opts.progress {
                    eprint!("\r  {n}/{} files  {:<60}", files.len(), file.key());
                }
                if let Ok(mut res) = results.lock() {
                    res[i] = Some(r);
                }
            });
        }
    });
    if opts.progress {
        eprintln!();
    }
    let results = results.into_inner().map_err(|_| BacktestError::data(&opts.data, "a scoring thread panicked"))?;
    results.into_iter().map(|r| r.unwrap_or_else(|| Err(BacktestError::data(&opts.data, "a file was not scored")))).collect()
}

fn score_file(base: &VigilConfig, file: &NabFile) -> Result<Scored, BacktestError> {
    let cfg = file_config(base, file);
    let id = format!("nab-{}", file.name);
    let series = Series {
        sensor_id: id.clone(),
        asset_id: id,
        sensor_type: SensorType::Other,
        points: file.ts.iter().zip(&file.values).map(|(&ts, &value)| Point { ts, value }).collect(),
    };
    let stats = run_series(std::slice::from_ref(&series), &cfg, 1, &scratch_dir("nab"))?;
    let mut by_detector: BTreeMap<String, usize> = BTreeMap::new();
    for a in &stats.anomalies {
        *by_detector.entry(a.detector.clone()).or_default() += 1;
    }
    Ok(Scored { scores: row_scores(file, &stats.anomalies), anomalies: by_detector })
}

fn write_results(out: &Path, files: &[NabFile], scored: &[Scored]) -> Result<(), BacktestError> {
    use std::io::Write;
    for (f, s) in files.iter().zip(scored) {
        let dir = out.join(DETECTOR).join(&f.category);
        std::fs::create_dir_all(&dir).map_err(BacktestError::io(&dir))?;
        let path = dir.join(format!("{DETECTOR}_{}.csv", f.name));
        let file = std::fs::File::create(&path).map_err(BacktestError::io(&path))?;
        let mut w = std::io::BufWriter::new(file);
        let io = BacktestError::io(&path);
        let mut write = || -> std::io::Result<()> {
            writeln!(w, "timestamp,value,anomaly_score,label")?;
            for (i, (&ts, &v)) in f.ts.iter().zip(&f.values).enumerate() {
                let label = f.windows.iter().any(|(a, b)| ts >= *a && ts <= *b) as u8;
                let t = chrono::DateTime::from_timestamp_millis(ts).map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string());
                writeln!(w, "{},{},{},{}", t.unwrap_or_default(), v, s.scores[i], label)?;
            }
            w.flush()
        };
        write().map_err(io)?;
    }
    Ok(())
}
