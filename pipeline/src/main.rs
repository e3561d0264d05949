//! The `vigil` command: `demo`, `simulate`, `replay`, `run`.

use std::path::PathBuf;
use std::sync::Arc;

mod backtest_cli;
mod out;
mod serve;
mod sql_cli;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use vigil_connectors::simulator::{Fleet, FleetConfig};
use vigil_pipeline::config::VigilConfig;
use vigil_pipeline::run::system_now_ms;
use vigil_pipeline::stream::{run_stream, StreamControl, StreamError, StreamOptions, StreamStats};
use vigil_pipeline::{demo, names, new_run_id, replay, timed, ReplayOrder, RunOptions, Summary};

use crate::out::{out, outln};

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
    /// Simulated hours.
    #[arg(long, default_value_t = 2.0)]
    hours: f64,
    /// Milliseconds between two readings of a sensor.
    #[arg(long, default_value_t = 1000)]
    interval_ms: i64,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Event time of the first reading (RFC 3339). Default: `vigil demo` ends at now (or, into a
    /// history holding this fleet's demo, that demo's period); `vigil simulate` starts at
    /// 2026-01-01T00:00:00Z.
    #[arg(long)]
    start: Option<String>,
    /// What the simulator injects: `all` (anomalies, drift and degradation) or `none` (a healthy
    /// fleet: every incident is then a false alarm).
    #[arg(long, value_enum, default_value = "all")]
    inject: InjectArg,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum InjectArg {
    /// Anomalies, drift and degradation at the simulator's rates.
    All,
    /// Nothing: normal behaviour only.
    None,
}

/// `vigil replay --help`: what the inputs may be.
const REPLAY_FORMATS: &str = "\
Input formats (by extension):
  .jsonl .json .ndjson   JSON lines: one object per line
  .csv .txt / .tsv       delimited text with a header line (comma / tab)
  .parquet .pq           Apache Parquet (timestamp columns of any unit)

Fields (column names or JSON keys, any case): sensor_id (or sensor), value, ts (or timestamp,
time); optional: asset_id (or asset; default: the sensor's name), sensor_type (or type), unit,
quality, reading_id (or id). Other columns are kept in the reading's metadata. Other names are
mapped with --columns, e.g. a historian export `TagName,DateTime,Value`:
  vigil replay --input export.csv --columns sensor_id=TagName,ts=DateTime,value=Value --timezone Europe/Paris

Times:
  2026-01-05T13:45:00Z, 2026-01-05T13:45:00.123+01:00    RFC 3339, with a zone or offset
  1767620700000                                          epoch milliseconds (number or digits)
  2026-01-05 13:45:00, 2026-01-05T13:45:00.123,          without a zone: read in --timezone
  2026-01-05 13:45, 2026/01/05 13:45:00,                 (else UTC, with a warning)
  05-Jan-2026 13:45:00
A slash date starting with the day or month (05/01/2026) is refused as ambiguous. In a zone, a
time in the hour the clocks repeat is read as its first occurrence; one in the hour they skip is
rejected.

Rejected rows go to the `rejected` table; the replay ends with their count by reason and the
`vigil sql` command that lists them.";

#[derive(Clone, Copy, ValueEnum)]
enum OrderArg {
    /// Replay in event-time order whatever the order of the rows.
    Time,
    /// Replay in file order, as a captured stream (late rows are rejected as too_late).
    File,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Every model with its latest version.
    List,
    /// One model's versions, oldest first.
    Versions {
        /// Model name.
        name: String,
    },
}

/// `vigil models`.
fn models_cli(reg: &vigil_connectors::models::ModelRegistry, what: ModelsCommand, json: bool) -> anyhow::Result<()> {
    let metrics =
        |m: &std::collections::BTreeMap<String, f64>| m.iter().map(|(k, v)| format!("{k}={v:.3}")).collect::<Vec<_>>().join(" ");
    let when = |ms: i64| vigil_events::format_rfc3339_ms(ms);
    match what {
        ModelsCommand::List => {
            let list = reg.list()?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&list)?)?;
            } else if list.is_empty() {
                outln!("no models in {}", reg.root().display())?;
            } else {
                outln!("{:<24} {:>8} {:<12} {:<24} metrics", "name", "versions", "kind", "latest created")?;
                for m in &list {
                    outln!(
                        "{:<24} {:>8} {:<12} {:<24} v{}: {}",
                        m.name,
                        m.versions,
                        m.latest.meta.kind,
                        when(m.latest.created_ms),
                        m.latest.version,
                        metrics(&m.latest.meta.metrics)
                    )?;
                }
            }
        }
        ModelsCommand::Versions { name } => {
            let versions = reg.versions(&name)?;
            anyhow::ensure!(!versions.is_empty(), "no model {name:?} in {}", reg.root().display());
            if json {
                outln!("{}", serde_json::to_string_pretty(&versions)?)?;
            } else {
                outln!("{:>7} {:<24} {:<16} {:<40} metrics", "version", "created", "training data", "params")?;
                for v in &versions {
                    let data_hash = &v.meta.training_data_sha256[..v.meta.training_data_sha256.len().min(12)];
                    outln!(
                        "{:>7} {:<24} {:<16} {:<40} {}",
                        v.version,
                        when(v.created_ms),
                        data_hash,
                        v.meta.params.to_string(),
                        metrics(&v.meta.metrics)
                    )?;
                }
            }
        }
    }
    Ok(())
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
        /// Run through Kafka instead of the embedded channel: produce the fleet to a new topic on
        /// these brokers, then consume it with `vigil run` to its end (events go to the output topics).
        #[arg(long)]
        brokers: Option<String>,
        /// Print the summary as one JSON object.
        #[arg(long)]
        json: bool,
        /// Then keep serving: the API and the web console over the demo's history, with a live
        /// simulated fleet of the same shape running through the streaming pipeline (as `vigil
        /// serve`). Ctrl-C stops.
        #[arg(long, conflicts_with = "brokers")]
        serve: bool,
        /// Address to serve on with `--serve` (default: `[api] listen`).
        #[arg(long, requires = "serve")]
        listen: Option<String>,
    },
    /// Write simulated readings to a file (.jsonl, .csv, .parquet) or a Kafka topic, and the ground truth.
    Simulate {
        /// Output file; the format comes from the extension.
        #[arg(long, required_unless_present = "brokers", conflicts_with = "brokers")]
        out: Option<PathBuf>,
        /// Produce to Kafka instead (bootstrap servers).
        #[arg(long)]
        brokers: Option<String>,
        /// Topic (default: `[kafka] topic`); created with `[kafka] partitions` if missing.
        #[arg(long, requires = "brokers")]
        topic: Option<String>,
        /// Readings per second (default: as fast as the broker takes them).
        #[arg(long, requires = "brokers")]
        rate: Option<f64>,
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
    #[command(after_long_help = REPLAY_FORMATS)]
    Replay {
        /// Input files; the format comes from the extension (see below).
        #[arg(long, required = true, num_args = 1..)]
        input: Vec<PathBuf>,
        /// IANA zone of times written without one (`Europe/Paris`); default `[input] timezone`,
        /// else UTC with a warning when such times were read.
        #[arg(long, value_name = "ZONE")]
        timezone: Option<String>,
        /// Columns (or JSON keys) read as known fields: `sensor_id=TagName,ts=DateTime,value=Value`;
        /// default `[input] columns`.
        #[arg(long, value_name = "FIELD=COLUMN,...")]
        columns: Option<String>,
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
    /// Run SQL over the history (every table; only reads). With no SQL: an interactive prompt, or
    /// the SQL on stdin.
    Sql {
        /// History directory.
        #[arg(long, default_value = "./vigil-data")]
        data_dir: PathBuf,
        /// Output format: table, csv or json.
        #[arg(long, default_value = "table")]
        format: vigil_queries::format::OutputFormat,
        /// List the tables and their columns, with a line on each.
        #[arg(long)]
        tables: bool,
        /// Rows returned at most (default: `[query] max_rows`).
        #[arg(long)]
        max_rows: Option<usize>,
        /// Time limit in milliseconds (default: `[query] timeout_ms`).
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// The statement.
        sql: Option<String>,
    },
    /// The model registry: list models, or one model's versions, with their metrics.
    Models {
        /// Registry directory (default: `_models` under `--data-dir`).
        #[arg(long, global = true)]
        registry: Option<PathBuf>,
        /// History directory, whose `_models` is the default registry.
        #[arg(long, default_value = "./vigil-data", global = true)]
        data_dir: PathBuf,
        /// Print JSON.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        what: ModelsCommand,
    },
    /// Merge each closed date partition of every history table into one sorted file (atomic,
    /// recorded in the manifest): fewer, larger files make queries faster.
    Compact {
        /// History directory.
        #[arg(long, default_value = "./vigil-data")]
        data_dir: PathBuf,
        /// A partition is closed when it is at least this many days older than its table's newest.
        #[arg(long, default_value_t = 1)]
        min_age_days: i64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Train a model and register it (versioned, with its metadata) in the model registry.
    Train {
        #[command(subcommand)]
        what: backtest_cli::TrainCommand,
    },
    /// Labelled data through the same dataflow, scored against its labels.
    Backtest {
        #[command(subcommand)]
        what: backtest_cli::BacktestCommand,
    },
    /// Report on one asset or the fleet for a period: anomalies, drift, predictions, proposals
    /// and decisions, maintenance, MTBF and availability, charts of the key sensors.
    Report {
        /// History directory.
        #[arg(long, default_value = "./vigil-data")]
        data_dir: PathBuf,
        /// The asset.
        #[arg(long, conflicts_with = "fleet", required_unless_present = "fleet")]
        asset: Option<String>,
        /// The whole fleet.
        #[arg(long)]
        fleet: bool,
        /// Start: RFC 3339, a date (YYYY-MM-DD, UTC) or epoch ms (default: a week before --to).
        #[arg(long)]
        from: Option<String>,
        /// End, exclusive (default: just after the newest event in the history).
        #[arg(long)]
        to: Option<String>,
        /// json, csv or html.
        #[arg(long, default_value = "html")]
        format: vigil_queries::report::ReportFormat,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Serve the API (decisions, queries, reports, health, metrics) and run the pipeline beside it.
    Serve {
        /// History directory.
        #[arg(long, default_value = "./vigil-data")]
        data_dir: PathBuf,
        /// Address to listen on (default: `[api] listen`).
        #[arg(long)]
        listen: Option<String>,
        /// What feeds the pipeline.
        #[arg(long, value_enum, default_value = "simulator", env = "VIGIL_SERVE_SOURCE")]
        source: serve::ServeSource,
        /// The JSON-lines file of `--source file`.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Simulated assets (`--source simulator`).
        #[arg(long, default_value_t = 20)]
        assets: usize,
        /// Sensors per simulated asset.
        #[arg(long, default_value_t = 6)]
        sensors_per_asset: usize,
        /// Milliseconds between two readings of a simulated sensor.
        #[arg(long, default_value_t = 1000)]
        interval_ms: i64,
        /// Simulated hours (the degrading assets fail within them).
        #[arg(long, default_value_t = 24.0)]
        hours: f64,
        /// Simulated seconds per second of wall time (1: real time).
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Random seed of the simulated fleet.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Serve the history only (same as `--source none`).
        #[arg(long)]
        no_pipeline: bool,
        /// Timely worker threads.
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Consume readings from Kafka continuously into the history (exactly once) and the output topics.
    Run {
        /// Bootstrap servers (default: `[kafka] brokers`).
        #[arg(long)]
        brokers: Option<String>,
        /// Input topic (default: `[kafka] topic`).
        #[arg(long)]
        topic: Option<String>,
        /// Consumer group (default: `[kafka] group`).
        #[arg(long)]
        group: Option<String>,
        /// Instance name (default: `[kafka] instance`); instances sharing a data dir need different names.
        #[arg(long)]
        instance: Option<String>,
        /// History directory.
        #[arg(long, default_value = "./vigil-data")]
        data_dir: PathBuf,
        /// Timely worker threads.
        #[arg(long)]
        workers: Option<usize>,
        /// Stop once every partition is read to its end, closing every window (a bounded topic).
        #[arg(long)]
        stop_at_end: bool,
        /// Do not publish to the output topics.
        #[arg(long)]
        no_publish: bool,
        /// Print the summary as one JSON object when it stops.
        #[arg(long)]
        json: bool,
    },
}

fn fleet_config(a: &FleetArgs, bad_rate: f64, default_start: i64) -> anyhow::Result<FleetConfig> {
    anyhow::ensure!(a.assets > 0 && a.sensors_per_asset > 0, "--assets and --sensors-per-asset must be positive");
    anyhow::ensure!(a.hours > 0.0 && a.hours.is_finite(), "--hours must be positive");
    anyhow::ensure!((0.0..=1.0).contains(&bad_rate), "--bad-rate must be in [0, 1]");
    Ok(FleetConfig {
        assets: a.assets,
        sensors_per_asset: a.sensors_per_asset,
        hours: a.hours,
        interval_ms: a.interval_ms.max(1),
        seed: a.seed,
        start_ms: match &a.start {
            Some(s) => vigil_events::parse_timestamp_str(s).map_err(|e| anyhow::anyhow!("--start: {e}"))?,
            None => default_start,
        },
        bad_record_rate: bad_rate,
        ..if a.inject == InjectArg::None {
            FleetConfig { anomalies_per_sensor_hour: 0.0, drift_fraction: 0.0, degrading_fraction: 0.0, ..FleetConfig::default() }
        } else {
            FleetConfig::default()
        }
    })
}

impl Command {
    /// The history directory of a command that runs the dataflow (and so the configured models).
    fn pipeline_data_dir(&self) -> Option<&std::path::Path> {
        match self {
            Command::Demo { data_dir, .. }
            | Command::Replay { data_dir, .. }
            | Command::Run { data_dir, .. }
            | Command::Serve { data_dir, .. } => Some(data_dir),
            _ => None,
        }
    }
}

/// Where `vigil simulate` (and the Kafka demo) start by default: 2026-01-01T00:00:00Z.
const SIMULATE_START_MS: i64 = 1_767_225_600_000;

/// The fleet of `vigil demo`. Without `--start` the demo ends at now (the minute), so that a
/// live fleet can go on from it; into a history that holds this fleet's demo already, it is that
/// demo's period (and so adds nothing).
fn demo_fleet(a: &FleetArgs, bad_rate: f64, data_dir: &std::path::Path) -> anyhow::Result<FleetConfig> {
    let now_minute = system_now_ms() / 60_000 * 60_000;
    let mut fc = fleet_config(a, bad_rate, now_minute - (a.hours * 3_600_000.0) as i64)?;
    if a.start.is_none() {
        let commits = vigil_connectors::history::read_manifest(data_dir).context("reading the history's manifest")?;
        let known = vigil_connectors::inputs::fleet_marks(&commits);
        let same = known.iter().filter_map(|m| m.fleet.as_ref()).filter(|f| vigil_connectors::inputs::same_fleet(f, &fc));
        if let Some(f) = same.max_by_key(|f| vigil_connectors::inputs::fleet_end(f)) {
            fc.start_ms = f.start_ms;
            fc.hours = f.hours;
            fc.bad_record_rate = f.bad_record_rate;
        }
    }
    Ok(fc)
}

/// `vigil serve` on a history holding a demo: the live simulator is the demo's fleet (the same
/// assets, not a second fleet under the same names), going on after the demo's period.
fn continue_demo_fleet(data_dir: &std::path::Path, fleet: &mut FleetConfig, speed: f64) -> anyhow::Result<()> {
    let commits = vigil_connectors::history::read_manifest(data_dir).context("reading the history's manifest")?;
    let known = vigil_connectors::inputs::fleet_marks(&commits);
    let Some(demo) = known.iter().filter_map(|m| m.fleet.as_ref()).max_by_key(|f| vigil_connectors::inputs::fleet_end(f)) else {
        return Ok(());
    };
    let end = vigil_connectors::inputs::fleet_end(demo);
    let start = fleet.start_ms.max(end);
    let mut hours = fleet.hours;
    if speed > 1.0 && start > fleet.start_ms {
        // Faster than real time from a later start, the fleet must end before it would reach the
        // wall clock (readings from the future are rejected).
        let until_now = (system_now_ms() - start).max(0) as f64 * speed / (speed - 1.0);
        hours = hours.min(until_now / 3_600_000.0).max(1.0 / 60.0);
    }
    *fleet = FleetConfig { hours, interval_ms: fleet.interval_ms, start_ms: start, bad_record_rate: 0.0, ..demo.clone() };
    eprintln!(
        "vigil serve: the live simulator goes on with the demo's fleet ({} assets x {} sensors, seed {}) from {}",
        fleet.assets,
        fleet.sensors_per_asset,
        fleet.seed,
        vigil_events::format_rfc3339_ms(fleet.start_ms)
    );
    Ok(())
}

fn options(cfg: VigilConfig, data_dir: PathBuf, workers: Option<usize>, progress: bool) -> RunOptions {
    let workers = workers.unwrap_or(cfg.pipeline.workers).max(1);
    RunOptions {
        cfg,
        data_dir,
        workers,
        progress,
        now_ms: system_now_ms,
        run_id: new_run_id(system_now_ms()),
        write_history: true,
    }
}

fn print(summary: &Summary, json: bool) -> anyhow::Result<()> {
    if json {
        outln!("{}", serde_json::to_string(summary)?)?;
    } else {
        out!("{summary}")?;
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader of stdout went away (`vigil sql … | head -1`): it asked for less, not an error.
        Err(e) if out::is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
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
    let mut cfg = VigilConfig::load(cli.config.as_deref()).context("loading the configuration")?;
    if let Some(dir) = cli.command.pipeline_data_dir() {
        vigil_pipeline::load_models(&mut cfg, dir).context("loading the configured models ([models] rul, [models.normal])")?;
    }
    match cli.command {
        Command::Demo { data_dir, workers, fleet, bad_rate, brokers: Some(brokers), json, .. } => {
            let fc = fleet_config(&fleet, bad_rate, SIMULATE_START_MS)?;
            kafka_demo(&cfg, fc, &brokers, data_dir, workers, json)?;
        }
        Command::Demo { data_dir, workers, fleet, bad_rate, brokers: None, json, serve, listen } => {
            let fc = demo_fleet(&fleet, bad_rate, &data_dir)?;
            let live = serve.then(|| {
                // The live fleet is the demo's fleet going on: the same assets, in real time
                // from where the demo ends (or from now, when that is later).
                let mut live = fc.clone();
                live.hours = 24.0 * 7.0;
                live.bad_record_rate = 0.0;
                live
            });
            let opts = options(cfg.clone(), data_dir.clone(), workers, true);
            eprintln!(
                "vigil demo: {} assets x {} sensors, {} h, a reading every {} ms ({} readings), {} workers",
                fc.assets,
                fc.sensors_per_asset,
                fc.hours,
                fc.interval_ms,
                Fleet::new(fc.clone()).readings(),
                opts.workers
            );
            let end = vigil_connectors::inputs::fleet_end(&fc);
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
            if !json {
                let d = data_dir.display();
                eprintln!("\nquery it:  vigil sql --data-dir {d} --tables\nreport:    vigil report --data-dir {d} --fleet --out fleet.html");
            }
            anyhow::ensure!(stats.records_in == stats.accepted + stats.rejected_total(), "records in != accepted + rejected");
            if let Some(mut fleet) = live {
                fleet.start_ms = end.max(system_now_ms());
                eprintln!(
                    "the live fleet goes on from {} (the demo's period is marked as replayed history)",
                    vigil_events::format_rfc3339_ms(fleet.start_ms)
                );
                let source = serve::ServeSource::Simulator;
                let args = serve::ServeArgs {
                    data_dir,
                    listen,
                    source,
                    input: None,
                    workers,
                    fleet,
                    speed: 1.0,
                    simulator_paused: false,
                };
                serve::serve(&cfg, args)?;
            }
        }
        Command::Simulate { out, brokers, topic, rate, labels, fleet, bad_rate } => {
            let fleet = Fleet::new(fleet_config(&fleet, bad_rate, SIMULATE_START_MS)?);
            let progress = |done: u64, total: u64| {
                if done.is_multiple_of(3600) || done == total {
                    eprintln!("  {:5.1}%", 100.0 * done as f64 / total.max(1) as f64);
                }
            };
            let truth = match (out, brokers) {
                (Some(out), _) => {
                    eprintln!("vigil simulate: {} readings to {}", fleet.readings(), out.display());
                    vigil_connectors::export::write_fleet(&fleet, &out, progress)
                        .with_context(|| format!("writing {}", out.display()))?
                }
                (None, Some(brokers)) => {
                    let topic = topic.unwrap_or_else(|| cfg.kafka.topic.clone());
                    eprintln!("vigil simulate: {} readings to Kafka topic {topic} on {brokers}", fleet.readings());
                    vigil_connectors::kafka::ensure_topic(
                        &brokers,
                        &topic,
                        cfg.kafka.partitions,
                        std::time::Duration::from_secs(30),
                    )
                    .with_context(|| format!("creating topic {topic}"))?;
                    let producer = vigil_connectors::kafka::JsonProducer::new(&brokers)?;
                    vigil_connectors::export::produce_fleet(&fleet, &producer, &topic, rate, progress)
                        .with_context(|| format!("producing to {topic}"))?
                }
                (None, None) => anyhow::bail!("give --out FILE or --brokers B"),
            };
            if let Some(l) = labels {
                std::fs::write(&l, serde_json::to_vec_pretty(&truth)?).with_context(|| format!("writing {}", l.display()))?;
            }
            eprintln!("wrote {} records", truth.records);
        }
        Command::Replay { input, timezone, columns, data_dir, workers, order, json } => {
            let mut cfg = cfg;
            if let Some(z) = timezone {
                vigil_pipeline::config::parse_zone(&z).map_err(|e| anyhow::anyhow!("--timezone: {e}"))?;
                cfg.input.timezone = Some(z);
            }
            if let Some(c) = columns {
                vigil_operators::decode::ColumnMap::parse(&c).map_err(|e| anyhow::anyhow!("--columns: {e}"))?;
                cfg.input.columns = vigil_pipeline::config::ColumnsSpec::Text(c);
            }
            let zone = cfg.input.zone()?;
            let started_ms = system_now_ms();
            let opts = options(cfg, data_dir.clone(), workers, true);
            let order = match order {
                OrderArg::Time => ReplayOrder::EventTime,
                OrderArg::File => ReplayOrder::File,
            };
            let (res, secs) = timed(|| replay(&input, order, &opts));
            let (stats, _) = res.context("replaying")?;
            let summary = Summary::new("replay", names(&input), data_dir.display().to_string(), opts.workers, secs, &stats, None);
            print(&summary, json)?;
            replay_notes(&stats, zone, &input, &data_dir, started_ms);
            anyhow::ensure!(stats.records_in == stats.accepted + stats.rejected_total(), "records in != accepted + rejected");
        }
        Command::Models { registry, data_dir, json, what } => {
            match &registry {
                Some(r) => anyhow::ensure!(r.is_dir(), "no model registry at {}", r.display()),
                None => sql_cli::require_history(&data_dir)?,
            }
            let reg = registry.map_or_else(
                || vigil_connectors::models::ModelRegistry::in_data_dir(&data_dir),
                vigil_connectors::models::ModelRegistry::new,
            );
            models_cli(&reg, what, json)?;
        }
        Command::Backtest { what } => backtest_cli::backtest(&cfg, what)?,
        Command::Train { what } => backtest_cli::train(what, &cfg)?,
        Command::Compact { data_dir, min_age_days, json } => {
            sql_cli::require_history(&data_dir)?;
            let opts = vigil_connectors::compact::CompactOptions {
                min_age_days,
                row_group_rows: cfg.history.row_group_rows,
                trash_grace_ms: cfg.history.replaced_grace_ms,
                ..Default::default()
            };
            let (report, secs) = timed(|| vigil_connectors::compact::compact_all(&data_dir, &opts));
            let report = report.with_context(|| format!("compacting {}", data_dir.display()))?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                outln!(
                    "compacted {} partitions: {} files into {}, {} rows, {:.1} MB into {:.1} MB, {secs:.1} s",
                    report.partitions.len(),
                    report.files_before,
                    report.files_after,
                    report.rows,
                    report.bytes_before as f64 / 1e6,
                    report.bytes_after as f64 / 1e6
                )?;
                for s in &report.skipped {
                    outln!("  skipped {}/date={}: {}", s.table, s.date, s.reason)?;
                }
            }
        }
        Command::Sql { data_dir, format, tables, max_rows, timeout_ms, sql } => {
            let mut q = cfg.query.clone();
            q.max_rows = max_rows.unwrap_or(q.max_rows);
            q.timeout_ms = timeout_ms.unwrap_or(q.timeout_ms);
            sql_cli::sql(&data_dir, &q, format, tables, sql)?;
        }
        Command::Report { data_dir, asset, fleet: _, from, to, format, out } => {
            sql_cli::report(&data_dir, &cfg.query, asset, from, to, format, out.as_deref())?;
        }
        Command::Serve {
            data_dir,
            listen,
            source,
            input,
            no_pipeline,
            workers,
            assets,
            sensors_per_asset,
            interval_ms,
            hours,
            speed,
            seed,
        } => {
            let source = if no_pipeline { serve::ServeSource::None } else { source };
            if source == serve::ServeSource::None {
                // Serving the history only: there must be one (a pipeline would create it).
                sql_cli::require_history(&data_dir)?;
            }
            anyhow::ensure!(speed > 0.0 && speed.is_finite(), "--speed must be positive");
            // Faster than real time, the fleet starts in the past so that its event time reaches
            // the wall clock just as it ends (readings from the future would be rejected).
            let start = system_now_ms() - (hours * 3_600_000.0 * (1.0 - 1.0 / speed.max(1.0))) as i64;
            let mut fleet = fleet_config(
                &FleetArgs { assets, sensors_per_asset, hours, interval_ms, seed, start: None, inject: InjectArg::All },
                0.0,
                start,
            )?;
            if source == serve::ServeSource::Simulator {
                continue_demo_fleet(&data_dir, &mut fleet, speed)?;
            }
            let args = serve::ServeArgs { data_dir, listen, source, input, workers, fleet, speed, simulator_paused: false };
            serve::serve(&cfg, args)?;
        }
        Command::Run { brokers, topic, group, instance, data_dir, workers, stop_at_end, no_publish, json } => {
            let base = StreamOptions::from_config(&cfg, data_dir.clone(), workers);
            let opts = StreamOptions {
                brokers: brokers.unwrap_or(base.brokers.clone()),
                topic: topic.unwrap_or(base.topic.clone()),
                group: group.unwrap_or(base.group.clone()),
                instance: instance.unwrap_or(base.instance.clone()),
                outputs: base.outputs.clone().filter(|_| !no_publish),
                stop_at_end,
                notifier: vigil_connectors::webhook::Notifier::start(cfg.notifications.webhooks.clone(), &data_dir),
                ..base
            };
            let control = Arc::new(StreamControl::default());
            stop_on_signal(control.clone());
            eprintln!(
                "vigil run: topic {} on {} (group {}, instance {}), {} workers, history in {}",
                opts.topic,
                opts.brokers,
                opts.group,
                opts.instance,
                opts.workers,
                data_dir.display()
            );
            let registry = cfg.registry.iter().map(vigil_pipeline::config::RegistryEntry::spec).collect();
            let (res, secs) = timed(|| run_until_stopped(&opts, registry, control.clone()));
            let stats = res?;
            let summary = Summary::new(
                "run",
                vec![opts.topic.clone()],
                data_dir.display().to_string(),
                opts.workers,
                secs,
                &stats.run,
                None,
            );
            print(&summary, json)?;
        }
    }
    Ok(())
}

/// After a replay, on stderr: the zone assumed for times written without one, and the rejected
/// rows by reason with the `vigil sql` command that lists them.
fn replay_notes(
    stats: &vigil_pipeline::RunStats,
    zone: Option<vigil_events::Zone>,
    inputs: &[PathBuf],
    data_dir: &std::path::Path,
    started_ms: i64,
) {
    let z = &stats.zoneless_utc;
    if zone.is_none() && z.count > 0 {
        eprintln!(
            "\nwarning: {} timestamps had no zone (e.g. {:?}) and were read as UTC; if they are local times, replay \
             again with --timezone ZONE (an IANA name such as Europe/Paris) or set [input] timezone",
            z.count,
            z.example.as_deref().unwrap_or("")
        );
    }
    let rejected = stats.rejected_total();
    if rejected == 0 {
        return;
    }
    let by_reason: Vec<String> = stats.rejected.iter().map(|(r, n)| format!("{r} {n}")).collect();
    eprintln!("\nrejected {rejected} rows: {}", by_reason.join(", "));
    eprintln!("list them:\n  {}", rejected_sql(inputs, data_dir, started_ms));
}

/// The `vigil sql` command that lists the rows a replay of `inputs` rejected (rejected since
/// `started_ms`, from those files).
fn rejected_sql(inputs: &[PathBuf], data_dir: &std::path::Path, started_ms: i64) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let sources: Vec<String> = inputs.iter().map(|p| quote(&p.display().to_string())).collect();
    // The wall clock of the replay's start, to the second (rejected_at is at least that).
    let since = vigil_events::format_rfc3339_ms(started_ms.div_euclid(1000) * 1000);
    let sql = format!(
        "SELECT source, source_offset, reason, detail, TRY_CAST(raw AS VARCHAR) AS raw FROM rejected WHERE source IN ({}) AND rejected_at >= TIMESTAMP '{since}' \
         ORDER BY source, source_offset",
        sources.join(", ")
    );
    let dir = data_dir.display().to_string();
    let shell = |s: &str| {
        if s.bytes().all(|c| c.is_ascii_alphanumeric() || b"/._-+:=,".contains(&c)) {
            s.to_string()
        } else if !s.contains(['"', '$', '`', '\\', '!']) {
            format!("\"{s}\"")
        } else {
            format!("'{}'", s.replace('\'', "'\\''"))
        }
    };
    format!("vigil sql --data-dir {} {}", shell(&dir), shell(&sql))
}

/// `vigil demo --brokers`: the fleet through a Kafka topic and `vigil run` to its end.
fn kafka_demo(
    cfg: &VigilConfig,
    fc: FleetConfig,
    brokers: &str,
    data_dir: PathBuf,
    workers: Option<usize>,
    json: bool,
) -> anyhow::Result<()> {
    let fleet = Fleet::new(fc);
    let run_id = new_run_id(system_now_ms());
    let topic = format!("vigil.demo-{run_id}");
    let workers = workers.unwrap_or(cfg.pipeline.workers).max(1);
    eprintln!("vigil demo: {} readings through Kafka topic {topic} on {brokers}, {workers} workers", fleet.readings());
    let (produced, secs_produce) = timed(|| -> anyhow::Result<_> {
        vigil_connectors::kafka::ensure_topic(brokers, &topic, cfg.kafka.partitions, std::time::Duration::from_secs(30))?;
        let producer = vigil_connectors::kafka::JsonProducer::new(brokers)?;
        Ok(vigil_connectors::export::produce_fleet(&fleet, &producer, &topic, None, |_, _| {})?)
    });
    let truth = produced.context("producing the fleet")?;
    eprintln!("  produced {} records in {secs_produce:.1} s; consuming", truth.records);
    let opts = StreamOptions {
        brokers: brokers.to_string(),
        topic: topic.clone(),
        group: format!("vigil-demo-{run_id}"),
        instance: "demo".into(),
        static_membership: false,
        stop_at_end: true,
        ..StreamOptions::from_config(cfg, data_dir.clone(), Some(workers))
    };
    let control = Arc::new(StreamControl::default());
    stop_on_signal(control.clone());
    let registry = vigil_pipeline::fleet_registry(cfg, &fleet);
    let (res, secs) = timed(|| run_stream(&opts, registry, control));
    let stats = res.context("consuming the demo topic")?;
    let mut fleet_truth = fleet.truth.clone();
    fleet_truth.records = truth.records;
    fleet_truth.bad_records = truth.bad_records.clone();
    let summary =
        Summary::new("demo (kafka)", vec![topic], data_dir.display().to_string(), workers, secs, &stats.run, Some(&fleet_truth));
    print(&summary, json)?;
    anyhow::ensure!(stats.run.records_in == truth.records, "read {} of {} records", stats.run.records_in, truth.records);
    Ok(())
}

/// SIGTERM or Ctrl-C asks the run to stop (a last cut, then exit 0).
fn stop_on_signal(control: Arc<StreamControl>) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(serve::shutdown_signal());
        eprintln!("vigil run: stopping (last commit, then exit)");
        control.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}

/// Runs the stream; after a history failure (disk full, unwritable data dir) waits until the data
/// dir takes writes again and starts over from the last commit.
fn run_until_stopped(
    opts: &StreamOptions,
    registry: Vec<vigil_operators::sensor_stage::SensorSpec>,
    control: Arc<StreamControl>,
) -> anyhow::Result<StreamStats> {
    let mut backoff = std::time::Duration::from_secs(1);
    loop {
        match run_stream(opts, registry.clone(), control.clone()) {
            Ok(s) => return Ok(s),
            Err(StreamError::History(e)) => {
                eprintln!("vigil run: history cannot be written ({e}); consuming stopped, retrying from the last commit");
                loop {
                    if control.stop.load(std::sync::atomic::Ordering::Relaxed) {
                        anyhow::bail!("stopped while the history could not be written: {e}");
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(30));
                    if data_dir_writable(&opts.data_dir) {
                        break;
                    }
                }
                eprintln!("vigil run: the data dir takes writes again; resuming");
                backoff = std::time::Duration::from_secs(1);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether a 1 MiB file can be written and synced in the data dir.
fn data_dir_writable(dir: &std::path::Path) -> bool {
    use std::io::Write;
    let probe = dir.join(".vigil-write-probe");
    let ok = std::fs::File::create(&probe)
        .and_then(|mut f| {
            f.write_all(&vec![0u8; 1 << 20])?;
            f.sync_all()
        })
        .is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}
