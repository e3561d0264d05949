//! `vigil train normal`: an asset's normal model fitted on a declared normal period of its
//! history, and registered (versioned, with its metadata) in the model registry; and loading it
//! back for a run (`[models.normal]`).
//!
//! Input: the `features` table of a data dir (the tumbling windows' means of the asset's
//! sensors, the rows the asset stage scores) between two times. Output: a registered
//! [`NormalModelArtifact`] (kind [`NORMAL_MODEL_KIND`]) — the model, its asset and period — with
//! the rows and sensors it was fitted on, the SHA-256 of those rows and the alarm threshold as
//! metadata. State: none (the registry's files).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use serde::Serialize;
use sha2::Digest;
use vigil_connectors::models::{ModelMeta, ModelRegistry, ModelVersion};
use vigil_events::format_rfc3339_ms;
use vigil_operators::normal_model::{
    normal_rows, LoadedNormal, NormalModel, NormalModelArtifact, NormalModelConfig, NormalRows, NORMAL_MODEL_KIND,
};
use vigil_queries::{History, QueryConfig};

use super::BacktestError;

/// What `vigil train normal` does.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The data dir whose history holds the asset's windows.
    pub data_dir: PathBuf,
    /// The asset.
    pub asset: String,
    /// The normal period: window ends in `[from, to)`, ms since the epoch.
    pub from_ms: i64,
    /// See `from_ms`.
    pub to_ms: i64,
    /// The registry.
    pub registry: PathBuf,
    /// Model name.
    pub name: String,
    /// The model's settings (`[detectors.normal_model]`).
    pub config: NormalModelConfig,
}

/// What was registered.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// The registered version.
    pub model: ModelVersion,
    /// Complete rows (window ends with every sensor) fitted on.
    pub rows: usize,
    /// Window ends left out for a missing or non-numeric value.
    pub skipped: usize,
    /// Sensors, and how many of them are scored (the others too smooth or constant).
    pub sensors: Vec<String>,
    /// See `sensors`.
    pub scored_sensors: usize,
}

fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The asset's tumbling-window means in `[from, to)`: `(window end, sensor, mean)`.
fn window_means(opts: &TrainOptions) -> Result<Vec<(i64, String, f64)>, BacktestError> {
    let history =
        History::open(&opts.data_dir, &QueryConfig::default()).map_err(|e| BacktestError::data(&opts.data_dir, e.to_string()))?;
    let sql = format!(
        "SELECT CAST(window_end AS BIGINT) AS t, sensor_id, mean FROM features \
         WHERE asset_id = {} AND \"window\" = 'tumbling' AND window_end >= to_timestamp_millis({}) AND window_end < to_timestamp_millis({}) \
         ORDER BY t, sensor_id",
        sql_text(&opts.asset),
        opts.from_ms,
        opts.to_ms
    );
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(BacktestError::io(&opts.data_dir))?;
    let result = rt.block_on(history.sql(&sql)).map_err(|e| BacktestError::data(&opts.data_dir, e.to_string()))?;
    let mut points = Vec::with_capacity(result.rows);
    for b in &result.batches {
        let sensor =
            arrow::compute::cast(b.column(1), &DataType::Utf8).map_err(|e| BacktestError::data(&opts.data_dir, e.to_string()))?;
        let (t, s, m) =
            (b.column(0).as_primitive::<Int64Type>(), sensor.as_string::<i32>(), b.column(2).as_primitive::<Float64Type>());
        for i in 0..b.num_rows() {
            if !t.is_null(i) && !m.is_null(i) && !s.is_null(i) {
                points.push((t.value(i), s.value(i).to_string(), m.value(i)));
            }
        }
    }
    Ok(points)
}

/// Fits the asset's normal model on its windows in the period and registers it.
pub fn train(opts: &TrainOptions, now_ms: i64) -> Result<TrainReport, BacktestError> {
    if opts.from_ms >= opts.to_ms {
        return Err(BacktestError::data(&opts.data_dir, "the normal period is empty: --from must be before --to"));
    }
    let points = window_means(opts)?;
    let period = format!("{} to {}", format_rfc3339_ms(opts.from_ms), format_rfc3339_ms(opts.to_ms));
    if points.is_empty() {
        return Err(BacktestError::data(
            &opts.data_dir,
            format!("no windows of asset {:?} from {period} in the features table", opts.asset),
        ));
    }
    let NormalRows { sensors, rows, skipped } = normal_rows(&points);
    let values: Vec<Vec<f64>> = rows.iter().map(|(_, r)| r.clone()).collect();
    let (model, _) = NormalModel::fit(sensors.clone(), &values, &opts.config).map_err(|e| {
        BacktestError::data(&opts.data_dir, format!("asset {:?}, {} complete windows from {period}: {e}", opts.asset, rows.len()))
    })?;
    // The rows fitted on, as text: what the training data's hash is of.
    let mut h = sha2::Sha256::new();
    h.update(sensors.join(",").as_bytes());
    for (t, r) in &rows {
        h.update(format!("\n{t}").as_bytes());
        for v in r {
            h.update(format!(",{v:?}").as_bytes());
        }
    }
    let sha: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let scored_sensors = model.scored_sensors();
    let mut metrics = BTreeMap::new();
    metrics.insert("rows".to_string(), rows.len() as f64);
    metrics.insert("skipped_windows".to_string(), skipped as f64);
    metrics.insert("sensors".to_string(), sensors.len() as f64);
    metrics.insert("scored_sensors".to_string(), scored_sensors as f64);
    metrics.insert("threshold".to_string(), model.threshold);
    let artifact = NormalModelArtifact {
        asset_id: opts.asset.clone(),
        from_ms: rows.first().map_or(opts.from_ms, |r| r.0),
        to_ms: rows.last().map_or(opts.to_ms, |r| r.0),
        model,
    };
    let bytes = serde_json::to_vec(&artifact).map_err(|e| BacktestError::data(&opts.registry, e.to_string()))?;
    let meta = ModelMeta {
        kind: NORMAL_MODEL_KIND.to_string(),
        params: serde_json::json!({"asset_id": opts.asset, "from": format_rfc3339_ms(opts.from_ms), "to": format_rfc3339_ms(opts.to_ms), "config": opts.config}),
        training_data: format!("{}: features of asset {} (tumbling windows) from {period}", opts.data_dir.display(), opts.asset),
        training_data_sha256: sha,
        metrics,
        notes: Some(format!(
            "normal model of {} fitted on {} windows ({} sensors, {} scored)",
            opts.asset,
            rows.len(),
            sensors.len(),
            scored_sensors
        )),
    };
    let model = ModelRegistry::new(&opts.registry)
        .register(&opts.name, "json", &bytes, meta, now_ms)
        .map_err(|e| BacktestError::data(&opts.registry, e.to_string()))?;
    Ok(TrainReport { model, rows: rows.len(), skipped, sensors, scored_sensors })
}

/// Loads `asset`'s normal model from the registry: `NAME`, `NAME@latest` or `NAME@<version>`,
/// registered by [`train`] for that asset.
pub fn load_model(registry: &Path, model: &str, asset: &str) -> Result<LoadedNormal, BacktestError> {
    let (v, bytes) = super::registered_model(registry, model, NORMAL_MODEL_KIND, &format!(" (models.normal.{asset})"))?;
    let artifact: NormalModelArtifact =
        serde_json::from_slice(&bytes).map_err(|e| BacktestError::data(registry, format!("{}@{}: {e}", v.name, v.version)))?;
    if artifact.asset_id != asset {
        return Err(BacktestError::data(
            registry,
            format!("{}@{} models asset {:?}, not {asset:?} (models.normal.{asset})", v.name, v.version, artifact.asset_id),
        ));
    }
    Ok(LoadedNormal { name: v.name, version: v.version, artifact })
}
