//! `vigil backtest …` and `vigil train …`: the command-line side of the backtests and of
//! training (arguments, printing).

use std::path::PathBuf;

use clap::Subcommand;
use vigil_pipeline::backtest::{cmapss, labelled, nab, normal};
use vigil_pipeline::config::VigilConfig;

use crate::out::{out, outln};

/// `vigil backtest` subcommands.
#[derive(Subcommand)]
pub(crate) enum BacktestCommand {
    /// The Numenta Anomaly Benchmark: every CSV under DATA/data as one sensor through the graph,
    /// scored with NAB's three profiles.
    Nab {
        /// The corpus, in NAB's layout (`data/<category>/*.csv`, `labels/combined_windows.json`).
        #[arg(long)]
        data: PathBuf,
        /// Write NAB's results layout here (`OUT/vigil/<category>/vigil_<file>.csv`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Files run at once (default: the configured workers).
        #[arg(long)]
        parallel: Option<usize>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// NASA C-MAPSS: each test unit as an asset through the graph with a registered RUL model;
    /// the prediction at each unit's last cycle scored (RMSE, PHM08).
    Cmapss {
        /// The model: NAME, NAME@latest or NAME@<version>.
        #[arg(long)]
        model: String,
        /// The model registry.
        #[arg(long)]
        registry: PathBuf,
        /// The test file (units cut before failure), e.g. test_FD001.txt.
        #[arg(long)]
        test: PathBuf,
        /// The true RUL of each test unit, e.g. RUL_FD001.txt.
        #[arg(long)]
        rul: PathBuf,
        /// Write `unit,predicted_rul,true_rul` here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Any labelled CSV of one asset's sensors (or a directory of them, one asset each):
    /// point-wise precision, recall, F1, false- and missed-alarm rates; changepoint scores by
    /// SKAB's protocol with --changepoint. The training rows are each asset's normal period.
    Labelled {
        /// A CSV file or a directory of them.
        #[arg(long)]
        data: PathBuf,
        /// The timestamp column.
        #[arg(long)]
        timestamp: String,
        /// The 0/1 anomaly label column.
        #[arg(long)]
        label: String,
        /// The 0/1 changepoint column.
        #[arg(long)]
        changepoint: Option<String>,
        /// Field separator (one character).
        #[arg(long, default_value = ",")]
        sep: char,
        /// Rows of each file that are its normal period: the normal model learns from them, the
        /// other detectors warm up on them; they are not scored.
        #[arg(long, default_value_t = 0)]
        train_rows: usize,
        /// Width of each changepoint's window, after it (ms).
        #[arg(long, default_value_t = 60_000)]
        changepoint_window_ms: i64,
        /// Write every scored row's verdict to this CSV (`file,row,timestamp,score,predicted,label`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `vigil train` subcommands.
#[derive(Subcommand)]
pub(crate) enum TrainCommand {
    /// The RUL model on a C-MAPSS training file (gradient-boosted trees on the asset stage's
    /// window features, target RUL clipped at 125), validated by seeded holdouts of 20 % of the
    /// units, fitted on all units and registered with its metadata.
    Cmapss {
        /// The training file, e.g. train_FD001.txt.
        #[arg(long)]
        data: PathBuf,
        /// The model registry.
        #[arg(long)]
        registry: PathBuf,
        /// Model name (default: cmapss-<file stem>, e.g. cmapss-fd001).
        #[arg(long)]
        name: Option<String>,
        /// Seed of the first validation split (split r uses seed + r).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Validation splits (repeated holdout), each holding out --validation-fraction of the units.
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Fraction of units held out for validation.
        #[arg(long, default_value_t = 0.2)]
        validation_fraction: f64,
        /// Trees.
        #[arg(long)]
        trees: Option<usize>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// An asset's normal model (`[detectors.normal_model]` settings) fitted on a declared normal
    /// period of its history (the means of its tumbling windows ending in [--from, --to)) and
    /// registered; a run scores the asset with it when `[models.normal]` names it
    /// (`ASSET = "NAME@latest"`).
    Normal {
        /// The data dir whose history holds the asset's windows.
        #[arg(long, env = "VIGIL_DATA_DIR")]
        data_dir: PathBuf,
        /// The asset.
        #[arg(long)]
        asset: String,
        /// Start of the normal period (RFC 3339, epoch ms, or a date).
        #[arg(long)]
        from: String,
        /// End of the normal period (excluded).
        #[arg(long)]
        to: String,
        /// The model registry (default: `[models] registry`, else `_models` in the data dir).
        #[arg(long)]
        registry: Option<PathBuf>,
        /// Model name (default: normal-<asset>).
        #[arg(long)]
        name: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a training command.
pub(crate) fn train(what: TrainCommand, cfg: &VigilConfig) -> anyhow::Result<()> {
    match what {
        TrainCommand::Normal { data_dir, asset, from, to, registry, name, json } => {
            anyhow::ensure!(data_dir.is_dir(), "{}: no such data dir", data_dir.display());
            let registry = registry.or_else(|| cfg.models.registry.clone()).unwrap_or_else(|| data_dir.join("_models"));
            let opts = normal::TrainOptions {
                name: name.unwrap_or_else(|| format!("normal-{asset}")),
                from_ms: crate::sql_cli::parse_time(&from)?,
                to_ms: crate::sql_cli::parse_time(&to)?,
                data_dir,
                asset,
                registry,
                config: cfg.detectors.normal_model.clone(),
            };
            let report = normal::train(&opts, vigil_pipeline::run::system_now_ms())?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                outln!(
                    "registered {}@{} in {}: the normal model of {} fitted on {} windows ({} left out for a missing value), {} sensors, {} scored",
                    report.model.name,
                    report.model.version,
                    opts.registry.display(),
                    opts.asset,
                    report.rows,
                    report.skipped,
                    report.sensors.len(),
                    report.scored_sensors
                )?;
                outln!(
                    "run with it, in vigil.toml:\n[models.normal]\n{:?} = \"{}@{}\"",
                    opts.asset,
                    report.model.name,
                    report.model.version
                )?;
            }
        }
        TrainCommand::Cmapss { data, registry, name, seed, repeats, validation_fraction, trees, json } => {
            anyhow::ensure!((0.0..1.0).contains(&validation_fraction), "--validation-fraction must be in [0, 1)");
            let name = name.unwrap_or_else(|| {
                let stem = data.file_stem().and_then(|s| s.to_str()).unwrap_or("train");
                format!("cmapss-{}", stem.trim_start_matches("train_").to_ascii_lowercase())
            });
            let mut params = cmapss::default_params();
            if let Some(t) = trees {
                params.trees = t;
            }
            let opts = cmapss::TrainOptions {
                data,
                registry,
                name,
                seed,
                repeats,
                validation_fraction,
                features: cmapss::default_features(),
                params,
                progress: !json,
            };
            let report = cmapss::train(&opts, vigil_pipeline::run::system_now_ms())?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                outln!(
                    "registered {}@{} in {} (fitted on {} rows of {} units, {:.1} s)",
                    report.model.name,
                    report.model.version,
                    opts.registry.display(),
                    report.training_rows,
                    report.units,
                    report.seconds
                )?;
                let splits: Vec<String> = report.per_split_rmse.iter().map(|r| format!("{r:.2}")).collect();
                outln!(
                    "validation: {} seeded holdouts of {:.0} % of the units, each cut at a random cycle (seeds {}..{}):",
                    opts.repeats.max(1),
                    opts.validation_fraction * 100.0,
                    opts.seed,
                    opts.seed + opts.repeats.max(1) as u64 - 1
                )?;
                outln!(
                    "  RMSE {:.2} over {} predictions (per split {}), MAE {:.2}, PHM08 {:.2} per unit",
                    report.validation.rmse,
                    report.validation.units,
                    splits.join(", "),
                    report.validation.mae,
                    report.validation.phm08 / report.validation.units.max(1) as f64
                )?;
            }
        }
    }
    Ok(())
}

/// Runs a backtest command.
pub(crate) fn backtest(cfg: &VigilConfig, what: BacktestCommand) -> anyhow::Result<()> {
    match what {
        BacktestCommand::Nab { data, out, parallel, json } => {
            let opts = nab::NabOptions { data, out, parallel: parallel.unwrap_or(cfg.pipeline.workers).max(1), progress: !json };
            let report = nab::backtest(cfg, &opts)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                print_nab(&report)?;
            }
        }
        BacktestCommand::Cmapss { model, registry, test, rul, out, json } => {
            let loaded = cmapss::load_model(&registry, &model)?;
            let opts = cmapss::BacktestOptions { test, rul, out, workers: cfg.pipeline.workers.max(1), progress: !json };
            let report = cmapss::backtest(cfg, loaded, &opts)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                outln!(
                    "C-MAPSS backtest of {}: {} units through the dataflow, {:.2} s",
                    report.model,
                    report.units.len(),
                    report.seconds
                )?;
                outln!("RMSE {:.2}  MAE {:.2}  PHM08 {:.1}", report.scores.rmse, report.scores.mae, report.scores.phm08)?;
            }
        }
        BacktestCommand::Labelled { data, timestamp, label, changepoint, sep, train_rows, changepoint_window_ms, out, json } => {
            anyhow::ensure!(sep.is_ascii(), "--sep must be one ASCII character");
            let opts = labelled::LabelledOptions {
                data,
                timestamp,
                label,
                changepoint,
                sep: sep as u8,
                train_rows,
                workers: cfg.pipeline.workers.max(1),
                progress: !json,
                changepoint_window_ms,
                out,
            };
            let report = labelled::backtest(cfg, &opts)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                print_labelled(&report)?;
            }
        }
    }
    Ok(())
}

fn print_labelled(r: &labelled::LabelledReport) -> std::io::Result<()> {
    outln!("labelled backtest: {} files, {:.2} s", r.files.len(), r.seconds)?;
    outln!()?;
    outln!(
        "{:<40} {:>7} {:>9} {:>7} {:>7} {:>11} {:>12}",
        "file",
        "sensors",
        "precision",
        "recall",
        "F1",
        "false alarm",
        "missed alarm"
    )?;
    let row = |name: &str, sensors: String, p: &labelled::PointScores| {
        outln!(
            "{:<40} {:>7} {:>9.3} {:>7.3} {:>7.3} {:>11.3} {:>12.3}",
            name,
            sensors,
            p.precision,
            p.recall,
            p.f1,
            p.false_alarm_rate,
            p.missed_alarm_rate
        )
    };
    for f in &r.files {
        let name = std::path::Path::new(&f.file).file_name().and_then(|n| n.to_str()).unwrap_or(&f.file);
        row(name, f.sensors.to_string(), &f.points)?;
    }
    row("all", String::new(), &r.points)?;
    if let Some(cps) = &r.changepoints {
        outln!()?;
        outln!("changepoints (SKAB's protocol, NAB profiles, normalised):")?;
        for (profile, score) in cps {
            outln!("  {profile:<22} {score:>8.2}")?;
        }
    }
    Ok(())
}

fn print_nab(r: &nab::NabReport) -> std::io::Result<()> {
    outln!("NAB backtest: {} files, {} rows, {} label windows, {:.2} s", r.files.len(), r.rows, r.windows, r.seconds)?;
    outln!()?;
    outln!(
        "{:<22} {:>9} {:>10} {:>16} {:>14} {:>19}",
        "profile",
        "score",
        "threshold",
        "windows detected",
        "windows missed",
        "false-positive rows"
    )?;
    for p in &r.profiles {
        outln!(
            "{:<22} {:>9.2} {:>10.4} {:>16} {:>14} {:>19}",
            p.profile,
            p.score,
            p.threshold,
            p.windows_detected,
            p.windows_missed,
            p.false_positive_rows
        )?;
    }
    outln!()?;
    let cats: Vec<&String> = r.profiles.first().map(|p| p.by_category.keys().collect()).unwrap_or_default();
    out!("{:<24}", "category")?;
    for p in &r.profiles {
        out!(" {:>20}", p.profile)?;
    }
    outln!()?;
    for c in cats {
        out!("{c:<24}")?;
        for p in &r.profiles {
            out!(" {:>20.2}", p.by_category.get(c).copied().unwrap_or(0.0))?;
        }
        outln!()?;
    }
    outln!()?;
    outln!("(category scores are normalised like the total; a category without windows shows its raw score, ≤ 0)")?;
    Ok(())
}
