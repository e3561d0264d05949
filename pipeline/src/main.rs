//! The `vigil` command: `demo`, `simulate`, `replay`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use vigil_connectors::simulator::{Fleet, FleetConfig};
use vigil_pipeline::config::VigilConfig;
use vigil_pipeline::run::system_now_ms;
use vigil_pipeline::{demo, names, new_run_id, replay, timed, ReplayOrder, RunOptions, Summary};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "vigil", version, about = "Streaming predictive maintenance: event-time dataflow, Parquet history")]
struct Cli {
    /// Configuration file (TOML); `VIGIL_*` environment variables override it.
    #[arg(long, global = true, env = "VIGIL_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct FleetArgs {
    /// Assets in the simulated fleet.
    #[arg(long, default_value_t = 50)]
    assets: usize,
    /// Sensors per asset.
    #[arg(long, default_value_t = 6)]
    sensors_per_asset: usize,
    /// Simulated hours (one reading per sensor per second).
    #[arg(long, default_value_t = 2.0)]
    hours: f64,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum OrderArg {
    /// Replay in event-time order whatever the order of the rows.
    Time,
    /// Replay in file order, as a captured stream (late rows are rejected as too_late).
    File,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate a fleet, run it through the whole dataflow, write the history, print what was found.
    Demo {
        /// History directory.
        #[arg(long, default_value = "./vigil-data")]
        data_dir: PathBuf,
        /// Timely worker threads.
        #[arg(long)]
        workers: Option<usize>,
        #[command(flatten)]
        fleet: FleetArgs,
        /// Fraction of records made bad (malformed, out of range, duplicates, ...).
        #[arg(long, default_value_t = 0.001)]
        bad_rate: f64,
        /// Print the summary as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Write simulated readings to a file (.jsonl, .csv, .parquet) and the ground truth.
    Simulate {
        /// Output file; the format comes from the extension.
        #[arg(long)]
        out: PathBuf,
        /// Ground-truth labels (JSON).
        #[arg(long)]
        labels: Option<PathBuf>,
        #[command(flatten)]
        fleet: FleetArgs,
        /// Fraction of bad records (JSON lines only).
        #[arg(long, default_value_t = 0.0)]
        bad_rate: f64,
    },
    /// Replay files (JSON lines, CSV, Parquet) through the dataflow into the history.
    Replay {
        /// Input files.
        #[arg(long, required = true, num_args = 1..)]
        input: Vec<PathBuf>,
        /// History directory.
        #[arg(long, default_value = "./vigil-data")]
        data_dir: PathBuf,
        /// Timely worker threads.
        #[arg(long)]
        workers: Option<usize>,
        /// Replay order.
        #[arg(long, value_enum, default_value = "time")]
        order: OrderArg,
        /// Print the summary as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

fn fleet_config(a: &FleetArgs, bad_rate: f64) -> anyhow::Result<FleetConfig> {
    anyhow::ensure!(a.assets > 0 && a.sensors_per_asset > 0, "--assets and --sensors-per-asset must be positive");
    anyhow::ensure!(a.hours > 0.0 && a.hours.is_finite(), "--hours must be positive");
    anyhow::ensure!((0.0..=1.0).contains(&bad_rate), "--bad-rate must be in [0, 1]");
    Ok(FleetConfig {
        assets: a.assets,
        sensors_per_asset: a.sensors_per_asset,
        hours: a.hours,
        seed: a.seed,
        bad_record_rate: bad_rate,
        ..FleetConfig::default()
    })
}

fn options(cfg: VigilConfig, data_dir: PathBuf, workers: Option<usize>, progress: bool) -> RunOptions {
    let workers = workers.unwrap_or(cfg.pipeline.workers).max(1);
    RunOptions { cfg, data_dir, workers, progress, now_ms: system_now_ms, run_id: new_run_id(system_now_ms()) }
}

fn print(summary: &Summary, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(summary)?);
    } else {
        print!("{summary}");
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The chain of causes, one line, without a backtrace: this is for people.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let cfg = VigilConfig::load(cli.config.as_deref()).context("loading the configuration")?;
    match cli.command {
        Command::Demo { data_dir, workers, fleet, bad_rate, json } => {
            let fc = fleet_config(&fleet, bad_rate)?;
            let opts = options(cfg, data_dir.clone(), workers, true);
            eprintln!(
                "vigil demo: {} assets x {} sensors, {} h at 1 Hz ({} readings), {} workers",
                fc.assets,
                fc.sensors_per_asset,
                fc.hours,
                Fleet::new(fc.clone()).readings(),
                opts.workers
            );
            let (res, secs) = timed(|| demo(fc, &opts));
            let (stats, fleet) = res.context("running the demo")?;
            let summary = Summary::new(
                "demo",
                vec!["simulator".into()],
                data_dir.display().to_string(),
                opts.workers,
                secs,
                &stats,
                Some(&fleet.truth),
            );
            print(&summary, json)?;
            anyhow::ensure!(stats.records_in == stats.accepted + stats.rejected_total(), "records in != accepted + rejected");
        }
        Command::Simulate { out, labels, fleet, bad_rate } => {
            let fleet = Fleet::new(fleet_config(&fleet, bad_rate)?);
            eprintln!("vigil simulate: {} readings to {}", fleet.readings(), out.display());
            let truth = vigil_connectors::export::write_fleet(&fleet, &out, |done, total| {
                if done % 3600 == 0 || done == total {
                    eprintln!("  {:5.1}%", 100.0 * done as f64 / total.max(1) as f64);
                }
            })
            .with_context(|| format!("writing {}", out.display()))?;
            if let Some(l) = labels {
                std::fs::write(&l, serde_json::to_vec_pretty(&truth)?).with_context(|| format!("writing {}", l.display()))?;
            }
            eprintln!("wrote {} records", truth.records);
        }
        Command::Replay { input, data_dir, workers, order, json } => {
            let opts = options(cfg, data_dir.clone(), workers, true);
            let order = match order {
                OrderArg::Time => ReplayOrder::EventTime,
                OrderArg::File => ReplayOrder::File,
            };
            let (res, secs) = timed(|| replay(&input, order, &opts));
            let (stats, _) = res.context("replaying")?;
            let summary = Summary::new("replay", names(&input), data_dir.display().to_string(), opts.workers, secs, &stats, None);
            print(&summary, json)?;
            anyhow::ensure!(stats.records_in == stats.accepted + stats.rejected_total(), "records in != accepted + rejected");
        }
    }
    Ok(())
}
