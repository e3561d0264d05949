//! Configuration: serde structs with defaults that work, read from TOML and overridden by
//! `VIGIL_*` environment variables (`VIGIL_PIPELINE__LATENESS_MS=60000`, `VIGIL_DETECTORS__NORMAL_MODEL__SPAN=24`: sections and keys joined
//! by a double underscore). The documented default configuration is `vigil.example.toml` at the
//! root of the repository; a test checks it parses to these defaults.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use vigil_events::{SensorType, Severity};
use vigil_operators::asset_stage::AssetStageConfig;
use vigil_operators::drift::DriftConfig;
use vigil_operators::limits::Limits;
use vigil_operators::multivariate::MultivariateConfig;
use vigil_operators::predictor::PredictorConfig;
use vigil_operators::robust::RobustConfig;
use vigil_operators::scheduler::SchedulerConfig;
use vigil_operators::sensor_stage::{SensorSpec, SensorStageConfig};
use vigil_operators::validate::ValidateConfig;
use vigil_operators::window::WindowConfig;

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The TOML is invalid or has unknown keys.
    #[error("invalid config: {0}")]
    Parse(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VigilConfig {
    /// Event time, watermarks and parallelism.
    pub pipeline: PipelineConfig,
    /// Record validation.
    pub validation: ValidationConfig,
    /// Windows.
    pub windows: WindowsConfig,
    /// Detectors.
    pub detectors: DetectorsConfig,
    /// Predictor and scheduling policy.
    pub maintenance: MaintenanceConfig,
    /// Incidents: how anomaly and drift events of one asset group into the alarms people get.
    pub incidents: vigil_operators::incidents::IncidentConfig,
    /// Parquet history.
    pub history: HistoryConfig,
    /// Kafka input and output topics (`vigil run`, `vigil simulate --brokers`).
    pub kafka: KafkaConfig,
    /// SQL over the history (`vigil sql`, reports, the API): row, time and memory limits.
    pub query: vigil_queries::QueryConfig,
    /// The HTTP API (`vigil serve`): listen address, API keys, rate and body limits.
    pub api: vigil_api::ApiConfig,
    /// Webhook notifications (`vigil run`, `vigil serve`).
    pub notifications: NotificationsConfig,
    /// Sensor registry entries (which sensors belong to which asset, limits, criticality).
    pub registry: Vec<RegistryEntry>,
    /// Trained models the pipeline runs (from the model registry).
    pub models: ModelsConfig,
    /// How input records are read: column names, and the zone of times written without one.
    pub input: InputConfig,
}

/// How input records are read, whatever the source (files, Kafka, REST ingest).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// IANA name of the zone of times written without one (`"Europe/Paris"`). Unset: such times
    /// are read as UTC, and `vigil replay` warns when it saw any. `vigil replay --timezone`
    /// overrides it.
    pub timezone: Option<String>,
    /// Columns (CSV, Parquet) or keys (JSON lines) read as known fields beyond their default
    /// names: `{ sensor_id = "TagName", ts = "DateTime", value = "Value" }`, or the same as text,
    /// `"sensor_id=TagName,ts=DateTime,value=Value"` (what `vigil replay --columns` takes, and
    /// what `VIGIL_INPUT__COLUMNS` may hold).
    pub columns: ColumnsSpec,
}

/// A column mapping, as a table or as `FIELD=COLUMN,...` text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ColumnsSpec {
    /// `{ sensor_id = "TagName" }`.
    Table(std::collections::BTreeMap<String, String>),
    /// `"sensor_id=TagName"`.
    Text(String),
}

impl Default for ColumnsSpec {
    fn default() -> Self {
        ColumnsSpec::Table(Default::default())
    }
}

impl InputConfig {
    /// The column mapping.
    pub fn column_map(&self) -> Result<vigil_operators::decode::ColumnMap, ConfigError> {
        use vigil_operators::decode::ColumnMap;
        let map = match &self.columns {
            ColumnsSpec::Text(t) => ColumnMap::parse(t),
            ColumnsSpec::Table(t) => t
                .iter()
                .map(|(field, column)| ColumnMap::field(field).map(|f| (f, column.clone())))
                .collect::<Result<Vec<_>, _>>()
                .and_then(ColumnMap::new),
        };
        map.map_err(|e| ConfigError::Parse(format!("input.columns: {e}")))
    }

    /// The zone of zoneless times, if one is named.
    pub fn zone(&self) -> Result<Option<vigil_events::Zone>, ConfigError> {
        let Some(name) = self.timezone.as_deref() else { return Ok(None) };
        parse_zone(name).map(Some).map_err(|e| ConfigError::Parse(format!("input.timezone: {e}")))
    }
}

/// A zone by its IANA name; an unknown name is an error naming the closest ones.
pub fn parse_zone(name: &str) -> Result<vigil_events::Zone, String> {
    vigil_events::Zone::parse(name).ok_or_else(|| {
        let near = vigil_queries::known::closest(name.trim(), vigil_events::Zone::names(), 3);
        let hint = if near.is_empty() {
            "an IANA name such as Europe/Paris, America/New_York or UTC".to_string()
        } else {
            format!("did you mean {}?", near.join(", "))
        };
        format!("unknown time zone {:?}; {hint}", name.trim())
    })
}

/// Trained models the pipeline runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// The RUL model: `NAME` or `NAME@latest` (the latest version at start) or `NAME@<n>` (pinned).
    /// Unset: the built-in trend model.
    pub rul: Option<String>,
    /// The registry (default: `_models` under the data directory).
    pub registry: Option<std::path::PathBuf>,
    /// Normal models by asset (`asset = "NAME@latest"`, each registered by `vigil train normal`
    /// from the asset's declared normal period): such an asset is scored by its model from the
    /// start of a run (see `detectors.normal_model_train_windows` for learning one instead).
    pub normal: std::collections::BTreeMap<String, String>,
    /// The RUL model as loaded at start ([`crate::load_models`]); not configuration.
    #[serde(skip)]
    pub loaded_rul: Option<std::sync::Arc<vigil_operators::rul_model::LoadedRul>>,
    /// The normal models as loaded at start, by asset; not configuration.
    #[serde(skip)]
    pub loaded_normal: std::sync::Arc<
        std::collections::HashMap<std::sync::Arc<str>, std::sync::Arc<vigil_operators::normal_model::LoadedNormal>>,
    >,
}

impl PartialEq for ModelsConfig {
    fn eq(&self, o: &Self) -> bool {
        let loaded = match (&self.loaded_rul, &o.loaded_rul) {
            (None, None) => true,
            (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
            _ => false,
        };
        self.rul == o.rul
            && self.registry == o.registry
            && self.normal == o.normal
            && loaded
            && ((self.loaded_normal.is_empty() && o.loaded_normal.is_empty())
                || std::sync::Arc::ptr_eq(&self.loaded_normal, &o.loaded_normal))
    }
}

/// Webhook notifications.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    /// Targets: anomalies at or above a severity, proposals and decisions, POSTed as JSON.
    pub webhooks: Vec<vigil_connectors::webhook::WebhookTarget>,
}

/// Kafka input and output topics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers.
    pub brokers: String,
    /// Input topic of readings (JSON, one reading a message).
    pub topic: String,
    /// Partitions of the input topic when Vigil creates it.
    pub partitions: i32,
    /// Consumer group.
    pub group: String,
    /// This instance's name: instances sharing a data dir need different names.
    pub instance: String,
    /// Time between cuts (history files committed, offsets committed, state checkpointed).
    pub commit_interval_ms: u64,
    /// Join the group as a static member named after the instance (`group.instance.id`): a
    /// restarted instance takes its partitions back at once instead of after the session timeout.
    pub static_membership: bool,
    /// Whether to publish to the output topics.
    pub publish: bool,
    /// Output topics.
    pub outputs: crate::outputs::OutputTopics,
    /// Extra librdkafka consumer settings (e.g. `"security.protocol" = "SSL"`).
    pub consumer: std::collections::BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topic: "vigil.readings".into(),
            partitions: 8,
            group: "vigil".into(),
            instance: "vigil".into(),
            commit_interval_ms: 5_000,
            static_membership: true,
            publish: true,
            outputs: crate::outputs::OutputTopics::default(),
            consumer: Default::default(),
        }
    }
}

/// Event time, watermarks and parallelism.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Timely worker threads.
    pub workers: usize,
    /// Allowed lateness: the watermark trails the greatest event time seen by this much.
    pub lateness_ms: i64,
    /// A source idle for this long (wall clock) stops holding windows open.
    pub idle_timeout_ms: i64,
    /// Dedupe horizon (event time).
    pub dedupe_horizon_ms: i64,
    /// Bytes per chunk when reading files in parallel.
    pub chunk_bytes: usize,
    /// How far (event time) a worker's input may run ahead of the slowest output.
    pub max_lead_ms: i64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            workers: 2,
            lateness_ms: 30_000,
            idle_timeout_ms: 60_000,
            dedupe_horizon_ms: 600_000,
            chunk_bytes: 4 << 20,
            max_lead_ms: 120_000,
        }
    }
}

/// Record validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationConfig {
    /// Records above this size are rejected as `oversized`.
    pub max_record_bytes: usize,
    /// Event times further ahead of the wall clock are rejected as `future_ts`.
    pub future_margin_ms: i64,
    /// Valid ranges per sensor type, overriding the physical defaults: `temperature = [-50, 400]`.
    pub ranges: HashMap<String, [f64; 2]>,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        ValidationConfig { max_record_bytes: 1 << 20, future_margin_ms: 300_000, ranges: HashMap::new() }
    }
}

/// Window sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowsConfig {
    /// Tumbling window size.
    pub tumbling_ms: i64,
    /// Hopping window size.
    pub hopping_size_ms: i64,
    /// Hopping window step.
    pub hopping_step_ms: i64,
}

impl Default for WindowsConfig {
    fn default() -> Self {
        let w = WindowConfig::default();
        WindowsConfig { tumbling_ms: w.tumbling_ms, hopping_size_ms: w.hopping_size_ms, hopping_step_ms: w.hopping_step_ms }
    }
}

/// Detector settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorsConfig {
    /// Robust detector: windows in the baseline.
    pub robust_baseline_windows: usize,
    /// Robust detector: windows before scoring.
    pub robust_warmup_windows: usize,
    /// Robust detector: score threshold (robust standard deviations).
    pub robust_threshold: f64,
    /// Novelty detector: score in [0, 1] at or above which a window is an anomaly (alerts are
    /// self-suppressing, so thresholds are low; NAB's corpus optimum is about 0.08).
    pub novelty_threshold: f64,
    /// Novelty detector: weight of its weekly seasonal channel (a window mean unusual for its hour
    /// of the week, scored from a slot's third window; `vigil_operators::seasonal`), in [0, 1];
    /// 0 turns the channel off.
    pub novelty_seasonal_weight: f64,
    /// Multivariate detector: threshold on squared Mahalanobis distance per dimension.
    pub multivariate_threshold: f64,
    /// Multivariate detector: windows before scoring.
    pub multivariate_warmup_windows: u64,
    /// Drift: windows in the reference and current samples.
    pub drift_window: usize,
    /// Drift: KS significance.
    pub drift_alpha: f64,
    /// Drift: Page-Hinkley threshold (reference long-run standard deviations: its spread widened
    /// for its autocorrelation).
    pub drift_ph_lambda: f64,
    /// Normal model: tumbling windows of each asset (from its start, or its last completed
    /// maintenance) that are its normal period; it learns the asset's joint behaviour from them,
    /// then scores every later window. 0 (the default): off. `vigil backtest labelled` sets it to
    /// `--train-rows`.
    pub normal_model_train_windows: usize,
    /// Normal model settings (span, quantile, margin, release, min_roughness, ridge, min_rows).
    pub normal_model: vigil_operators::normal_model::NormalModelConfig,
    /// Hard limits per sensor type, overriding the defaults: `vibration = [0, 10]`.
    pub limits: HashMap<String, [f64; 2]>,
}

impl Default for DetectorsConfig {
    fn default() -> Self {
        let r = RobustConfig::default();
        let m = MultivariateConfig::default();
        let d = DriftConfig::default();
        DetectorsConfig {
            robust_baseline_windows: r.baseline,
            robust_warmup_windows: r.warmup,
            robust_threshold: r.threshold,
            novelty_threshold: vigil_operators::sensor_stage::DEFAULT_NOVELTY_THRESHOLD,
            novelty_seasonal_weight: vigil_operators::seasonal::SeasonalConfig::default().weight,
            multivariate_threshold: m.threshold,
            multivariate_warmup_windows: m.warmup,
            drift_window: d.window,
            drift_alpha: d.alpha,
            drift_ph_lambda: d.ph_lambda,
            normal_model_train_windows: 0,
            normal_model: vigil_operators::normal_model::NormalModelConfig::default(),
            limits: HashMap::new(),
        }
    }
}

/// Predictor and scheduling policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaintenanceConfig {
    /// Propose maintenance when the predicted RUL is under this many hours.
    pub rul_horizon_hours: f64,
    /// Propose maintenance when health is under this.
    pub health_threshold: f64,
    /// Least confidence of a RUL to act on.
    pub min_confidence: f64,
    /// Proposals of this priority or above ask a person (`low`, `medium`, `high`, `critical`).
    pub decision_from: Severity,
    /// Emit a prediction every this many windows per asset.
    pub predict_every_windows: u64,
    /// After a person rejects a proposal, hours of event time in which the asset gets no new
    /// proposal of the same or a lower priority (a worse one is still proposed).
    pub reject_cooldown_hours: f64,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        let s = SchedulerConfig::default();
        MaintenanceConfig {
            rul_horizon_hours: s.rul_horizon_hours,
            health_threshold: s.health_threshold,
            min_confidence: s.min_confidence,
            decision_from: s.decision_from,
            predict_every_windows: PredictorConfig::default().emit_every,
            reject_cooldown_hours: s.reject_cooldown_hours,
        }
    }
}

/// Parquet history settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Rows buffered per table and worker before a file is written.
    pub max_rows_per_file: usize,
    /// Rows per row group.
    pub row_group_rows: usize,
    /// A file is written once its rows span this much event time (keeps memory flat).
    pub max_file_span_ms: i64,
    /// Files `vigil compact` replaced stay under `DATA/_compaction/trash` this long (ms), so that a
    /// query planned before the compaction still reads them; a later compaction deletes them.
    /// Keep it above `query.timeout_ms`.
    pub replaced_grace_ms: i64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            max_rows_per_file: 512 * 1024,
            row_group_rows: 128 * 1024,
            max_file_span_ms: 3_600_000,
            replaced_grace_ms: vigil_connectors::compact::DEFAULT_TRASH_GRACE_MS,
        }
    }
}

/// One registry entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryEntry {
    /// Sensor.
    pub sensor_id: String,
    /// Asset.
    pub asset_id: Option<String>,
    /// Type.
    pub sensor_type: Option<SensorType>,
    /// Operating limits `[low, high]` for the hard-limit detector.
    pub limits: Option<[f64; 2]>,
    /// Valid range `[min, max]`; readings outside are rejected.
    pub valid_range: Option<[f64; 2]>,
    /// Criticality.
    pub criticality: Option<String>,
}

impl RegistryEntry {
    /// The entry as a registry spec.
    pub fn spec(&self) -> SensorSpec {
        SensorSpec {
            sensor_id: self.sensor_id.clone(),
            asset_id: self.asset_id.clone(),
            sensor_type: self.sensor_type,
            low_bits: self.limits.map(|l| l[0].to_bits()),
            high_bits: self.limits.map(|l| l[1].to_bits()),
            valid_min_bits: self.valid_range.map(|l| l[0].to_bits()),
            valid_max_bits: self.valid_range.map(|l| l[1].to_bits()),
            criticality: self.criticality.clone(),
        }
    }
}

fn by_type(m: &HashMap<String, [f64; 2]>) -> Result<Vec<(SensorType, [f64; 2])>, ConfigError> {
    m.iter()
        .map(|(k, v)| {
            SensorType::parse(k).map(|t| (t, *v)).ok_or_else(|| ConfigError::Parse(format!("unknown sensor type {k:?}")))
        })
        .collect()
}

impl VigilConfig {
    /// Reads a TOML file (or the defaults when `path` is `None`), then applies `VIGIL_*` overrides.
    pub fn load(path: Option<&Path>) -> Result<VigilConfig, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|e| ConfigError::Read { path: p.display().to_string(), source: e })?,
            None => String::new(),
        };
        let mut value: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        for (k, v) in std::env::vars() {
            let Some(rest) = k.strip_prefix("VIGIL_") else { continue };
            // Sections and keys joined by `__`, nested sections too
            // (`VIGIL_DETECTORS__NORMAL_MODEL__SPAN=24`).
            let parts: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
            let Some((key, sections)) = parts.split_last() else { continue };
            if sections.is_empty() {
                continue;
            }
            let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("x = {v}"))
                .ok()
                .and_then(|mut t| t.remove("x"))
                .unwrap_or(toml::Value::String(v.clone()));
            let mut table = &mut value;
            for s in sections {
                let entry = table.entry(s.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
                let toml::Value::Table(t) = entry else {
                    return Err(ConfigError::Parse(format!("{k}: {s} is a value in the configuration, not a section")));
                };
                table = t;
            }
            table.insert(key.clone(), parsed);
        }
        let cfg: VigilConfig = value.try_into().map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), ConfigError> {
        self.window_config().validate().map_err(ConfigError::Parse)?;
        by_type(&self.validation.ranges)?;
        by_type(&self.detectors.limits)?;
        if self.pipeline.workers == 0 {
            return Err(ConfigError::Parse("pipeline.workers must be at least 1".into()));
        }
        if self.pipeline.lateness_ms < 0 {
            return Err(ConfigError::Parse("pipeline.lateness_ms must not be negative".into()));
        }
        self.input.column_map()?;
        self.input.zone()?;
        let t = self.detectors.novelty_threshold;
        if !(t.is_finite() && t > 0.0) {
            return Err(ConfigError::Parse(format!(
                "detectors.novelty_threshold must be a positive number (scores are in [0, 1]; above 1 turns alerts off), not {t}"
            )));
        }
        let w = self.detectors.novelty_seasonal_weight;
        if !(0.0..=1.0).contains(&w) {
            return Err(ConfigError::Parse(format!(
                "detectors.novelty_seasonal_weight must be within [0, 1] (0 turns the seasonal channel off), not {w}"
            )));
        }
        Ok(())
    }

    /// Window sizes.
    pub fn window_config(&self) -> WindowConfig {
        WindowConfig {
            tumbling_ms: self.windows.tumbling_ms,
            hopping_size_ms: self.windows.hopping_size_ms,
            hopping_step_ms: self.windows.hopping_step_ms,
        }
    }

    /// Validator settings.
    pub fn validate_config(&self) -> ValidateConfig {
        ValidateConfig {
            max_record_bytes: self.validation.max_record_bytes,
            future_margin_ms: self.validation.future_margin_ms,
            ranges: by_type(&self.validation.ranges).unwrap_or_default().into_iter().map(|(t, r)| (t, (r[0], r[1]))).collect(),
            // Both were checked when the configuration was loaded.
            columns: self.input.column_map().unwrap_or_default(),
            timezone: self.input.zone().ok().flatten(),
        }
    }

    /// Sensor stage settings.
    pub fn sensor_stage_config(&self) -> SensorStageConfig {
        let d = &self.detectors;
        SensorStageConfig {
            windows: self.window_config(),
            robust: RobustConfig {
                baseline: d.robust_baseline_windows,
                warmup: d.robust_warmup_windows,
                threshold: d.robust_threshold,
                ..RobustConfig::default()
            },
            novelty: vigil_operators::novelty::NoveltyConfig {
                seasonal: vigil_operators::seasonal::SeasonalConfig { weight: d.novelty_seasonal_weight, ..Default::default() },
                ..Default::default()
            },
            novelty_threshold: d.novelty_threshold,
            drift: DriftConfig {
                window: d.drift_window,
                alpha: d.drift_alpha,
                ph_lambda: d.drift_ph_lambda,
                ..DriftConfig::default()
            },
            dedupe_horizon_ms: self.pipeline.dedupe_horizon_ms,
            limits: by_type(&d.limits)
                .unwrap_or_default()
                .into_iter()
                .map(|(t, l)| (t, Limits { low: Some(l[0]), high: Some(l[1]) }))
                .collect(),
        }
    }

    /// Asset stage settings.
    pub fn asset_stage_config(&self) -> AssetStageConfig {
        let m = &self.maintenance;
        AssetStageConfig {
            multivariate: MultivariateConfig {
                threshold: self.detectors.multivariate_threshold,
                warmup: self.detectors.multivariate_warmup_windows,
                ..MultivariateConfig::default()
            },
            predictor: PredictorConfig { emit_every: m.predict_every_windows.max(1), ..PredictorConfig::default() },
            rul_model: self.models.loaded_rul.clone(),
            window_ms: self.windows.tumbling_ms,
            incidents: self.incidents,
            normal_model: self.detectors.normal_model.clone(),
            normal_model_train_windows: self.detectors.normal_model_train_windows,
            normal_models: self.models.loaded_normal.clone(),
            scheduler: SchedulerConfig {
                rul_horizon_hours: m.rul_horizon_hours,
                health_threshold: m.health_threshold,
                min_confidence: m.min_confidence,
                decision_from: m.decision_from,
                reject_cooldown_hours: m.reject_cooldown_hours,
                ..SchedulerConfig::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_to_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vigil.example.toml");
        let cfg = VigilConfig::load(Some(&path)).unwrap();
        let expected = VigilConfig { registry: cfg.registry.clone(), ..VigilConfig::default() };
        assert_eq!(cfg, expected);
        assert!(!cfg.registry.is_empty(), "the example shows a registry entry");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[pipeline]\nlatenes_ms = 5\n").unwrap();
        let err = VigilConfig::load(Some(&p)).unwrap_err().to_string();
        assert!(err.contains("latenes_ms"), "{err}");
    }

    #[test]
    fn input_columns_and_timezone_from_the_file_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[input]\ntimezone = \"europe/paris\"\ncolumns = { sensor_id = \"TagName\", ts = \"DateTime\" }\n")
            .unwrap();
        let cfg = VigilConfig::load(Some(&p)).unwrap();
        let v = cfg.validate_config();
        assert_eq!(v.timezone.map(|z| z.name()), Some("Europe/Paris"));
        assert_eq!(v.columns.column_of(vigil_operators::decode::Field::Ts), Some("DateTime"));
        std::fs::write(&p, "[input]\ncolumns = \"sensor_id=TagName,value=Value\"\n").unwrap();
        let cfg = VigilConfig::load(Some(&p)).unwrap();
        assert_eq!(cfg.validate_config().columns.column_of(vigil_operators::decode::Field::Value), Some("Value"));
        std::fs::write(&p, "[input]\ntimezone = \"Europe/Pari\"\n").unwrap();
        let err = VigilConfig::load(Some(&p)).unwrap_err().to_string();
        assert!(err.contains("input.timezone") && err.contains("Europe/Paris"), "{err}");
        std::fs::write(&p, "[input]\ncolumns = { tag = \"TagName\" }\n").unwrap();
        let err = VigilConfig::load(Some(&p)).unwrap_err().to_string();
        assert!(err.contains("input.columns") && err.contains("unknown field"), "{err}");
    }

    #[test]
    fn bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[windows]\ntumbling_ms = 0\n").unwrap();
        assert!(VigilConfig::load(Some(&p)).is_err());
        std::fs::write(&p, "[detectors.limits]\nplasma = [0, 1]\n").unwrap();
        assert!(VigilConfig::load(Some(&p)).is_err());
        std::fs::write(&p, "[detectors]\nnovelty_threshold = 0.0\n").unwrap();
        let err = VigilConfig::load(Some(&p)).unwrap_err().to_string();
        assert!(err.contains("novelty_threshold"), "{err}");
        std::fs::write(&p, "[detectors]\nnovelty_seasonal_weight = 1.5\n").unwrap();
        let err = VigilConfig::load(Some(&p)).unwrap_err().to_string();
        assert!(err.contains("novelty_seasonal_weight"), "{err}");
        std::fs::write(&p, "[detectors]\nnovelty_seasonal_weight = 0.0\n").unwrap();
        let cfg = VigilConfig::load(Some(&p)).unwrap();
        assert_eq!(cfg.sensor_stage_config().novelty.seasonal.weight, 0.0);
    }
}
