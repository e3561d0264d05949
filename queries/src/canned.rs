//! The canned queries the API and the reports call: fixed SQL over the history with bound
//! parameters (no text from a caller is spliced into SQL).
//!
//! - [`History::readings`]: one sensor in a time range, downsampled to at most N points.
//! - [`History::sensors`]: every sensor seen in the last day of data, its last value and status.
//! - [`History::anomalies`], [`History::drift`], [`History::predictions`], [`History::schedule`]:
//!   events by asset, sensor and period, newest first.
//! - [`History::fleet_health`]: per asset the latest prediction, recent anomalies and open
//!   proposals, and the fleet's counts by status.
//!
//! "Now" is the newest event time in the history (`as_of`), not the wall clock: a history
//! replayed from last year reads the same as it did then.
//!
//! Input: a [`History`]. Output: serde structs. State: none.

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::scalar::ScalarValue;
use serde::{Deserialize, Serialize};

use crate::{History, QueryError, QueryResult};

/// Milliseconds of an hour.
const HOUR_MS: i64 = 3_600_000;
/// A sensor with no reading for this long before `as_of` is `silent`.
pub const SILENT_AFTER_MS: i64 = 15 * 60_000;
/// The fleet status of an asset that sends readings but has no prediction yet.
pub const WARMING_UP: &str = "warming_up";

/// One point of a sensor's series: a reading, or the summary of a bucket of readings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeriesPoint {
    /// Time (ms since the epoch): the reading's, or the bucket's start.
    pub ts: i64,
    /// Value, or the bucket's mean.
    pub value: f64,
    /// Least value in the bucket.
    pub min: f64,
    /// Greatest value in the bucket.
    pub max: f64,
    /// Readings in the bucket (1 for a raw reading).
    pub count: u64,
}

/// Readings of one sensor in `[from, to)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReadingSeries {
    /// Sensor.
    pub sensor_id: String,
    /// Start (ms, inclusive).
    pub from: i64,
    /// End (ms, exclusive).
    pub to: i64,
    /// Bucket width when downsampled (ms); `None` for raw readings.
    pub bucket_ms: Option<i64>,
    /// Points in time order.
    pub points: Vec<SeriesPoint>,
}

/// A sensor with its last value and status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SensorStatus {
    /// Sensor.
    pub sensor_id: String,
    /// Asset.
    pub asset_id: String,
    /// Type.
    pub sensor_type: String,
    /// Unit.
    pub unit: String,
    /// Time of the last reading (ms).
    pub last_ts: i64,
    /// Last value.
    pub last_value: f64,
    /// Anomalies in the hour before `as_of`.
    pub anomalies_last_hour: u64,
    /// `alarm` (a critical anomaly in the last hour), `warning` (another anomaly in the last
    /// hour), `silent` (no reading for 15 minutes) or `ok`.
    pub status: String,
}

/// The sensors of the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SensorList {
    /// The newest reading time in the history (ms), what "now" means; `None` when empty.
    pub as_of: Option<i64>,
    /// Sensors by id.
    pub sensors: Vec<SensorStatus>,
}

/// Which events to return.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventFilter {
    /// Only this asset.
    pub asset_id: Option<String>,
    /// Only this sensor (tables with a sensor).
    pub sensor_id: Option<String>,
    /// From (ms, inclusive).
    pub from: Option<i64>,
    /// To (ms, exclusive).
    pub to: Option<i64>,
    /// At most this many, newest first (0: the query row limit).
    pub limit: usize,
    /// Only this detector (anomalies) or statistic (drift).
    #[serde(default)]
    pub detector: Option<String>,
    /// Only this severity (anomalies).
    #[serde(default)]
    pub severity: Option<String>,
}

/// An anomaly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnomalyRow {
    /// Event id.
    pub event_id: String,
    /// Correlation id.
    pub correlation_id: String,
    /// Sensor.
    pub sensor_id: String,
    /// Asset.
    pub asset_id: String,
    /// Detector.
    pub detector: String,
    /// Detector version.
    pub detector_version: i64,
    /// Score.
    pub score: f64,
    /// Severity.
    pub severity: String,
    /// Time (ms).
    pub ts: i64,
    /// Window start (ms), for window detectors.
    pub window_start: Option<i64>,
    /// What triggered it (JSON text).
    pub explanation: String,
}

/// A drift event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DriftRow {
    /// Event id.
    pub event_id: String,
    /// Sensor.
    pub sensor_id: String,
    /// Asset.
    pub asset_id: String,
    /// Statistic.
    pub statistic: String,
    /// Value.
    pub value: f64,
    /// Threshold.
    pub threshold: f64,
    /// Reference period start (ms).
    pub reference_start: i64,
    /// Reference period end (ms).
    pub reference_end: i64,
    /// Current period start (ms).
    pub current_start: i64,
    /// Detection time (ms).
    pub ts: i64,
}

/// A prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PredictionRow {
    /// Event id.
    pub event_id: String,
    /// Asset.
    pub asset_id: String,
    /// Time (ms).
    pub ts: i64,
    /// Health, 1 .. 0.
    pub health: f64,
    /// Failure probability within the horizon.
    pub failure_probability: f64,
    /// Remaining useful life, hours.
    pub rul_hours: Option<f64>,
    /// Predicted failure time (ms).
    pub predicted_failure_ts: Option<i64>,
    /// Confidence.
    pub confidence: f64,
    /// Reasons (JSON text).
    pub reasons: String,
    /// Model.
    pub model: String,
    /// Model version.
    pub model_version: String,
}

/// A change of a maintenance proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleRow {
    /// Event id.
    pub event_id: String,
    /// Proposal.
    pub proposal_id: String,
    /// Asset.
    pub asset_id: String,
    /// Status after the change.
    pub status: String,
    /// Time of the change (ms).
    pub ts: i64,
    /// Planned for (ms).
    pub scheduled_for: i64,
    /// Priority.
    pub priority: String,
    /// Reason.
    pub reason: String,
    /// Whether a person must decide.
    pub requires_decision: bool,
}

/// A question put to a person, with the proposal it is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DecisionRequestRow {
    /// Request id (what a decision answers).
    pub request_id: String,
    /// The proposal's correlation id.
    pub correlation_id: String,
    /// Proposal.
    pub proposal_id: String,
    /// Asset.
    pub asset_id: String,
    /// Time of the request (ms).
    pub ts: i64,
    /// What is asked.
    pub question: String,
    /// Answer wanted by (ms).
    pub deadline: i64,
    /// When the proposal plans the work (ms), if the proposal is in the history.
    pub scheduled_for: Option<i64>,
    /// The proposal's priority.
    pub priority: Option<String>,
    /// Why it was proposed.
    pub reason: Option<String>,
}

/// An asset's health now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AssetHealth {
    /// Asset.
    pub asset_id: String,
    /// Latest health (1 .. 0), if predicted.
    pub health: Option<f64>,
    /// Latest failure probability.
    pub failure_probability: Option<f64>,
    /// Latest remaining useful life, hours.
    pub rul_hours: Option<f64>,
    /// Time of the latest prediction (ms).
    pub predicted_at: Option<i64>,
    /// Anomalies in the day before `as_of`.
    pub anomalies_24h: u64,
    /// Critical anomalies in the day before `as_of`.
    pub critical_24h: u64,
    /// Proposals whose latest status is `proposed` or `scheduled`.
    pub open_proposals: Vec<String>,
    /// Time of the asset's latest reading in the day before `as_of` (ms), if any.
    #[serde(default)]
    pub last_reading: Option<i64>,
    /// `critical` (health < 0.5 or failure probability ≥ 0.5), `warning` (health < 0.8, failure
    /// probability ≥ 0.2, or a critical anomaly in the last day), `warming_up` (no prediction
    /// yet: the asset sends readings but the predictor has not judged it — not known to be
    /// fine) or `ok`.
    pub status: String,
}

/// The fleet's health now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FleetHealth {
    /// The newest event time in the history (ms).
    pub as_of: Option<i64>,
    /// Assets by status.
    pub counts: BTreeMap<String, u64>,
    /// Assets, worst first.
    pub assets: Vec<AssetHealth>,
}

/// Columns of a result, cast to plain types and read by name.
pub(crate) struct Columns {
    batch: RecordBatch,
}

impl Columns {
    pub(crate) fn new(r: &QueryResult) -> Result<Columns, QueryError> {
        let batch = arrow::compute::concat_batches(&r.schema, &r.batches).map_err(|e| QueryError::Execution(e.to_string()))?;
        Ok(Columns { batch })
    }

    pub(crate) fn len(&self) -> usize {
        self.batch.num_rows()
    }

    fn column(&self, name: &str, to: &DataType) -> Result<ArrayRef, QueryError> {
        let c = self.batch.column_by_name(name).ok_or_else(|| QueryError::Execution(format!("no column {name}")))?;
        arrow::compute::cast(c, to).map_err(|e| QueryError::Execution(format!("{name}: {e}")))
    }

    pub(crate) fn text(&self, name: &str) -> Result<Vec<Option<String>>, QueryError> {
        let a = self.column(name, &DataType::Utf8)?;
        let s = a.as_string::<i32>();
        Ok((0..s.len()).map(|i| s.is_valid(i).then(|| s.value(i).to_string())).collect())
    }

    pub(crate) fn float(&self, name: &str) -> Result<Vec<Option<f64>>, QueryError> {
        let a = self.column(name, &DataType::Float64)?;
        let f = a.as_primitive::<Float64Type>();
        Ok((0..f.len()).map(|i| f.is_valid(i).then(|| f.value(i))).collect())
    }

    /// Integers, and timestamps as milliseconds.
    pub(crate) fn int(&self, name: &str) -> Result<Vec<Option<i64>>, QueryError> {
        let c = self.batch.column_by_name(name).ok_or_else(|| QueryError::Execution(format!("no column {name}")))?;
        let c = match c.data_type() {
            DataType::Timestamp(_, _) => {
                arrow::compute::cast(c, &DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None))
                    .map_err(|e| QueryError::Execution(e.to_string()))?
            }
            _ => c.clone(),
        };
        let a = arrow::compute::cast(&c, &DataType::Int64).map_err(|e| QueryError::Execution(format!("{name}: {e}")))?;
        let v = a.as_primitive::<Int64Type>();
        Ok((0..v.len()).map(|i| v.is_valid(i).then(|| v.value(i))).collect())
    }

    pub(crate) fn bool(&self, name: &str) -> Result<Vec<Option<bool>>, QueryError> {
        let a = self.column(name, &DataType::Boolean)?;
        let b = a.as_boolean();
        Ok((0..b.len()).map(|i| b.is_valid(i).then(|| b.value(i))).collect())
    }
}

pub(crate) fn ts(ms: i64) -> ScalarValue {
    ScalarValue::TimestampMillisecond(Some(ms), Some("UTC".into()))
}

pub(crate) fn text(s: &str) -> ScalarValue {
    ScalarValue::Utf8(Some(s.to_string()))
}

/// `WHERE` clauses and parameters of an [`EventFilter`]; `has_sensor` says whether the table
/// has a `sensor_id` column, `detector_col` which column the detector filter applies to, and
/// `has_severity` whether it has a `severity` column.
fn filter_sql(
    f: &EventFilter,
    has_sensor: bool,
    detector_col: Option<&str>,
    has_severity: bool,
) -> Result<(String, Vec<ScalarValue>), QueryError> {
    let mut clauses = Vec::new();
    let mut params = Vec::new();
    let mut add = |clause: &str, v: ScalarValue| {
        params.push(v);
        clauses.push(clause.replace('?', &format!("${}", params.len())));
    };
    if let Some(a) = &f.asset_id {
        add("asset_id = ?", text(a));
    }
    if let Some(s) = &f.sensor_id {
        if !has_sensor {
            return Err(QueryError::Invalid("this table has no sensor_id; filter by asset".into()));
        }
        add("sensor_id = ?", text(s));
    }
    if let Some(d) = &f.detector {
        let Some(col) = detector_col else {
            return Err(QueryError::Invalid("this table has no detector to filter by".into()));
        };
        add(&format!("{col} = ?"), text(d));
    }
    if let Some(s) = &f.severity {
        if !has_severity {
            return Err(QueryError::Invalid("this table has no severity to filter by".into()));
        }
        add("severity = ?", text(s));
    }
    if let Some(t) = f.from {
        add("ts >= ?", ts(t));
    }
    if let Some(t) = f.to {
        add("ts < ?", ts(t));
    }
    if let (Some(a), Some(b)) = (f.from, f.to) {
        if b < a {
            return Err(QueryError::Invalid("the period ends before it starts".into()));
        }
    }
    let wh = if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
    Ok((wh, params))
}

fn req<T>(v: Option<T>, what: &str) -> Result<T, QueryError> {
    v.ok_or_else(|| QueryError::Execution(format!("unexpected NULL in {what}")))
}

impl History {
    fn limit_of(&self, f: &EventFilter) -> usize {
        self.row_limit(f.limit)
    }

    /// A requested row count within the query row limit (0: the limit itself).
    fn row_limit(&self, limit: usize) -> usize {
        if limit == 0 {
            self.config().max_rows
        } else {
            limit.min(self.config().max_rows)
        }
    }

    /// The newest `ts` of a table (from the file statistics when they suffice).
    pub async fn newest(&self, table: &str) -> Result<Option<i64>, QueryError> {
        self.time_bound(table, "max", "window_end").await
    }

    /// The oldest `ts` of a table (from the file statistics when they suffice).
    pub async fn oldest(&self, table: &str) -> Result<Option<i64>, QueryError> {
        self.time_bound(table, "min", "window_start").await
    }

    /// `agg(ts)` of a table; `features` has windows instead of `ts`.
    async fn time_bound(&self, table: &str, agg: &str, features_col: &str) -> Result<Option<i64>, QueryError> {
        let col = if table == "features" { features_col } else { "ts" };
        let r = self.query(&format!("SELECT {agg}({col}) AS t FROM {table}"), vec![], 1).await?;
        Ok(Columns::new(&r)?.int("t")?.into_iter().next().flatten())
    }

    /// Readings of `sensor_id` in `[from, to)`: the raw readings when there are at most
    /// `max_points`, else the range cut into `max_points` equal buckets with their mean, min,
    /// max and count (empty buckets are left out).
    pub async fn readings(&self, sensor_id: &str, from: i64, to: i64, max_points: usize) -> Result<ReadingSeries, QueryError> {
        if to < from {
            return Err(QueryError::Invalid("the period ends before it starts".into()));
        }
        let max_points = max_points.clamp(1, self.config().max_rows.max(1));
        let params = vec![text(sensor_id), ts(from), ts(to)];
        let raw = self
            .query(
                &format!(
                    "SELECT ts, value FROM readings WHERE sensor_id = $1 AND ts >= $2 AND ts < $3 ORDER BY ts LIMIT {}",
                    max_points + 1
                ),
                params.clone(),
                max_points + 1,
            )
            .await?;
        let mut series = ReadingSeries { sensor_id: sensor_id.to_string(), from, to, bucket_ms: None, points: Vec::new() };
        if raw.rows <= max_points {
            let c = Columns::new(&raw)?;
            for (t, v) in c.int("ts")?.into_iter().zip(c.float("value")?) {
                let (t, v) = (req(t, "ts")?, req(v, "value")?);
                series.points.push(SeriesPoint { ts: t, value: v, min: v, max: v, count: 1 });
            }
            return Ok(series);
        }
        let bucket = (to.saturating_sub(from) as u64).div_ceil(max_points as u64).max(1) as i64;
        series.bucket_ms = Some(bucket);
        let r = self
            .query(
                &format!(
                    "SELECT {from} + ((CAST(ts AS BIGINT) - {from}) / {bucket}) * {bucket} AS t, avg(value) AS mean, \
                     min(value) AS lo, max(value) AS hi, count(*) AS n \
                     FROM readings WHERE sensor_id = $1 AND ts >= $2 AND ts < $3 GROUP BY 1 ORDER BY 1"
                ),
                params,
                max_points + 1,
            )
            .await?;
        let c = Columns::new(&r)?;
        let (t, mean, lo, hi, n) = (c.int("t")?, c.float("mean")?, c.float("lo")?, c.float("hi")?, c.int("n")?);
        for i in 0..c.len() {
            series.points.push(SeriesPoint {
                ts: req(t[i], "t")?,
                value: req(mean[i], "mean")?,
                min: req(lo[i], "min")?,
                max: req(hi[i], "max")?,
                count: req(n[i], "count")? as u64,
            });
        }
        Ok(series)
    }

    /// The readings of several sensors in `[from, to)` in one scan, each cut into `max_points`
    /// equal buckets with their mean, min, max and count (empty buckets left out); a bucket of
    /// one reading is that reading, at its own time. Series come in the order of `sensors`.
    pub async fn readings_of(
        &self,
        sensors: &[String],
        from: i64,
        to: i64,
        max_points: usize,
    ) -> Result<Vec<ReadingSeries>, QueryError> {
        if to < from {
            return Err(QueryError::Invalid("the period ends before it starts".into()));
        }
        if sensors.is_empty() {
            return Ok(Vec::new());
        }
        let max_points = max_points.clamp(1, self.config().max_rows.max(1));
        let bucket = (to.saturating_sub(from) as u64).div_ceil(max_points as u64).max(1) as i64;
        let list = (0..sensors.len()).map(|i| format!("${}", i + 5)).collect::<Vec<_>>().join(", ");
        let mut params = vec![ts(from), ts(to), text(&crate::report::date_of(from)), text(&crate::report::date_of(to))];
        params.extend(sensors.iter().map(|s| text(s)));
        let r = self
            .query(
                &format!(
                    "SELECT sensor_id, {from} + ((CAST(ts AS BIGINT) - {from}) / {bucket}) * {bucket} AS t, avg(value) AS mean, \
                     min(value) AS lo, max(value) AS hi, count(*) AS n, min(ts) AS first \
                     FROM readings WHERE ts >= $1 AND ts < $2 AND date >= $3 AND date <= $4 AND sensor_id IN ({list}) \
                     GROUP BY 1, 2 ORDER BY 1, 2"
                ),
                params,
                usize::MAX,
            )
            .await?;
        let mut out: Vec<ReadingSeries> = sensors
            .iter()
            .map(|s| ReadingSeries { sensor_id: s.clone(), from, to, bucket_ms: Some(bucket), points: Vec::new() })
            .collect();
        let at: HashMap<&str, usize> = sensors.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
        let c = Columns::new(&r)?;
        let (sensor, t, mean, lo, hi, n, first) =
            (c.text("sensor_id")?, c.int("t")?, c.float("mean")?, c.float("lo")?, c.float("hi")?, c.int("n")?, c.int("first")?);
        for i in 0..c.len() {
            let Some(&k) = sensor[i].as_deref().and_then(|s| at.get(s)) else { continue };
            let count = req(n[i], "count")? as u64;
            out[k].points.push(SeriesPoint {
                ts: if count == 1 { req(first[i], "first")? } else { req(t[i], "t")? },
                value: req(mean[i], "mean")?,
                min: req(lo[i], "min")?,
                max: req(hi[i], "max")?,
                count,
            });
        }
        for s in &mut out {
            if s.points.iter().all(|p| p.count == 1) {
                s.bucket_ms = None;
            }
        }
        Ok(out)
    }

    /// The sensors of one asset with a reading in `[from, to)`: `(sensor, type, unit)`, by id.
    /// Looks at the last hour of the period first (the sensors an asset has rarely change), and
    /// at the whole period only when that hour has none.
    pub async fn asset_sensors(&self, asset_id: &str, from: i64, to: i64) -> Result<Vec<(String, String, String)>, QueryError> {
        let sql = "SELECT sensor_id, first_value(sensor_type) AS sensor_type, first_value(unit) AS unit FROM readings \
                   WHERE asset_id = $1 AND ts >= $2 AND ts < $3 AND date >= $4 AND date <= $5 GROUP BY sensor_id ORDER BY sensor_id";
        for start in [from.max(to.saturating_sub(HOUR_MS)), from] {
            let params =
                vec![text(asset_id), ts(start), ts(to), text(&crate::report::date_of(start)), text(&crate::report::date_of(to))];
            let r = self.query(sql, params, usize::MAX).await?;
            let c = Columns::new(&r)?;
            let out: Vec<(String, String, String)> = c
                .text("sensor_id")?
                .into_iter()
                .zip(c.text("sensor_type")?)
                .zip(c.text("unit")?)
                .filter_map(|((s, t), u)| Some((s?, t.unwrap_or_default(), u.unwrap_or_default())))
                .collect();
            if !out.is_empty() || start == from {
                return Ok(out);
            }
        }
        Ok(Vec::new())
    }

    /// Every sensor with a reading in the day before `as_of`, its last value and its status.
    pub async fn sensors(&self) -> Result<SensorList, QueryError> {
        let Some(as_of) = self.newest("readings").await? else { return Ok(SensorList { as_of: None, sensors: vec![] }) };
        let since = as_of - 24 * HOUR_MS;
        let r = self
            .query(
                "SELECT sensor_id, first_value(asset_id) AS asset_id, first_value(sensor_type) AS sensor_type, \
                 first_value(unit) AS unit, max(ts) AS last_ts, last_value(value ORDER BY ts) AS last_value \
                 FROM readings WHERE ts >= $1 AND date >= $2 GROUP BY sensor_id ORDER BY sensor_id",
                vec![ts(since), text(&crate::report::date_of(since))],
                usize::MAX,
            )
            .await?;
        let recent = self
            .query(
                "SELECT sensor_id, count(*) AS n, sum(CASE WHEN severity = 'critical' THEN 1 ELSE 0 END) AS critical \
                 FROM anomalies WHERE ts >= $1 GROUP BY sensor_id",
                vec![ts(as_of.saturating_sub(HOUR_MS))],
                usize::MAX,
            )
            .await?;
        let rc = Columns::new(&recent)?;
        let mut anomalies: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for ((s, n), k) in rc.text("sensor_id")?.into_iter().zip(rc.int("n")?).zip(rc.int("critical")?) {
            anomalies.insert(req(s, "sensor_id")?, (n.unwrap_or(0) as u64, k.unwrap_or(0) as u64));
        }
        let c = Columns::new(&r)?;
        let (ids, assets, types, units) = (c.text("sensor_id")?, c.text("asset_id")?, c.text("sensor_type")?, c.text("unit")?);
        let (last_ts, last_value) = (c.int("last_ts")?, c.float("last_value")?);
        let mut sensors = Vec::with_capacity(c.len());
        for i in 0..c.len() {
            let sensor_id = req(ids[i].clone(), "sensor_id")?;
            let (n, critical) = anomalies.get(&sensor_id).copied().unwrap_or((0, 0));
            let last = req(last_ts[i], "last_ts")?;
            let status = if critical > 0 {
                "alarm"
            } else if n > 0 {
                "warning"
            } else if as_of - last > SILENT_AFTER_MS {
                "silent"
            } else {
                "ok"
            };
            sensors.push(SensorStatus {
                sensor_id,
                asset_id: assets[i].clone().unwrap_or_default(),
                sensor_type: types[i].clone().unwrap_or_default(),
                unit: units[i].clone().unwrap_or_default(),
                last_ts: last,
                last_value: req(last_value[i], "last_value")?,
                anomalies_last_hour: n,
                status: status.into(),
            });
        }
        Ok(SensorList { as_of: Some(as_of), sensors })
    }

    /// Anomalies matching `f`, newest first.
    pub async fn anomalies(&self, f: &EventFilter) -> Result<Vec<AnomalyRow>, QueryError> {
        let (wh, params) = filter_sql(f, true, Some("detector"), true)?;
        let limit = self.limit_of(f);
        let r = self
            .query(
                &format!(
                    "SELECT event_id, correlation_id, sensor_id, asset_id, detector, detector_version, score, severity, ts, \
                     window_start, explanation FROM anomalies {wh} ORDER BY ts DESC, event_id LIMIT {limit}"
                ),
                params,
                limit,
            )
            .await?;
        let c = Columns::new(&r)?;
        let (id, corr, sensor, asset, det) =
            (c.text("event_id")?, c.text("correlation_id")?, c.text("sensor_id")?, c.text("asset_id")?, c.text("detector")?);
        let (ver, score, sev, t, ws, expl) = (
            c.int("detector_version")?,
            c.float("score")?,
            c.text("severity")?,
            c.int("ts")?,
            c.int("window_start")?,
            c.text("explanation")?,
        );
        (0..c.len())
            .map(|i| {
                Ok(AnomalyRow {
                    event_id: req(id[i].clone(), "event_id")?,
                    correlation_id: corr[i].clone().unwrap_or_default(),
                    sensor_id: sensor[i].clone().unwrap_or_default(),
                    asset_id: asset[i].clone().unwrap_or_default(),
                    detector: det[i].clone().unwrap_or_default(),
                    detector_version: ver[i].unwrap_or(0),
                    score: score[i].unwrap_or(f64::NAN),
                    severity: sev[i].clone().unwrap_or_default(),
                    ts: req(t[i], "ts")?,
                    window_start: ws[i],
                    explanation: expl[i].clone().unwrap_or_default(),
                })
            })
            .collect()
    }

    /// How many anomalies match `f` (its limit aside).
    pub async fn anomaly_count(&self, f: &EventFilter) -> Result<u64, QueryError> {
        let (wh, params) = filter_sql(f, true, Some("detector"), true)?;
        let r = self.query(&format!("SELECT count(*) AS n FROM anomalies {wh}"), params, 1).await?;
        Ok(Columns::new(&r)?.int("n")?.first().copied().flatten().unwrap_or(0).max(0) as u64)
    }

    /// Drift events matching `f`, newest first.
    pub async fn drift(&self, f: &EventFilter) -> Result<Vec<DriftRow>, QueryError> {
        let (wh, params) = filter_sql(f, true, Some("statistic"), false)?;
        let limit = self.limit_of(f);
        let r = self
            .query(
                &format!(
                    "SELECT event_id, sensor_id, asset_id, statistic, value, threshold, reference_start, reference_end, \
                     current_start, ts FROM drift {wh} ORDER BY ts DESC, event_id LIMIT {limit}"
                ),
                params,
                limit,
            )
            .await?;
        let c = Columns::new(&r)?;
        let (id, sensor, asset, stat) = (c.text("event_id")?, c.text("sensor_id")?, c.text("asset_id")?, c.text("statistic")?);
        let (v, th, rs, re, cs, t) = (
            c.float("value")?,
            c.float("threshold")?,
            c.int("reference_start")?,
            c.int("reference_end")?,
            c.int("current_start")?,
            c.int("ts")?,
        );
        (0..c.len())
            .map(|i| {
                Ok(DriftRow {
                    event_id: req(id[i].clone(), "event_id")?,
                    sensor_id: sensor[i].clone().unwrap_or_default(),
                    asset_id: asset[i].clone().unwrap_or_default(),
                    statistic: stat[i].clone().unwrap_or_default(),
                    value: v[i].unwrap_or(f64::NAN),
                    threshold: th[i].unwrap_or(f64::NAN),
                    reference_start: rs[i].unwrap_or(0),
                    reference_end: re[i].unwrap_or(0),
                    current_start: cs[i].unwrap_or(0),
                    ts: req(t[i], "ts")?,
                })
            })
            .collect()
    }

    /// Predictions matching `f`, newest first.
    pub async fn predictions(&self, f: &EventFilter) -> Result<Vec<PredictionRow>, QueryError> {
        let (wh, params) = filter_sql(f, false, None, false)?;
        let limit = self.limit_of(f);
        let r = self
            .query(
                &format!(
                    "SELECT event_id, asset_id, ts, health, failure_probability, rul_hours, predicted_failure_ts, confidence, \
                     reasons, model, model_version FROM predictions {wh} ORDER BY ts DESC, event_id LIMIT {limit}"
                ),
                params,
                limit,
            )
            .await?;
        let c = Columns::new(&r)?;
        let (id, asset, t, health, p) =
            (c.text("event_id")?, c.text("asset_id")?, c.int("ts")?, c.float("health")?, c.float("failure_probability")?);
        let (rul, pf, conf, reasons, model, ver) = (
            c.float("rul_hours")?,
            c.int("predicted_failure_ts")?,
            c.float("confidence")?,
            c.text("reasons")?,
            c.text("model")?,
            c.text("model_version")?,
        );
        (0..c.len())
            .map(|i| {
                Ok(PredictionRow {
                    event_id: req(id[i].clone(), "event_id")?,
                    asset_id: asset[i].clone().unwrap_or_default(),
                    ts: req(t[i], "ts")?,
                    health: health[i].unwrap_or(f64::NAN),
                    failure_probability: p[i].unwrap_or(f64::NAN),
                    rul_hours: rul[i],
                    predicted_failure_ts: pf[i],
                    confidence: conf[i].unwrap_or(f64::NAN),
                    reasons: reasons[i].clone().unwrap_or_default(),
                    model: model[i].clone().unwrap_or_default(),
                    model_version: ver[i].clone().unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Changes of maintenance proposals matching `f`, newest first.
    pub async fn schedule(&self, f: &EventFilter) -> Result<Vec<ScheduleRow>, QueryError> {
        let (wh, params) = filter_sql(f, false, None, false)?;
        let limit = self.limit_of(f);
        let r = self
            .query(
                &format!(
                    "SELECT event_id, proposal_id, asset_id, status, ts, scheduled_for, priority, reason, requires_decision \
                     FROM schedule {wh} ORDER BY ts DESC, event_id LIMIT {limit}"
                ),
                params,
                limit,
            )
            .await?;
        let c = Columns::new(&r)?;
        let (id, prop, asset, status, t, sf) = (
            c.text("event_id")?,
            c.text("proposal_id")?,
            c.text("asset_id")?,
            c.text("status")?,
            c.int("ts")?,
            c.int("scheduled_for")?,
        );
        let (prio, reason, rd) = (c.text("priority")?, c.text("reason")?, c.bool("requires_decision")?);
        (0..c.len())
            .map(|i| {
                Ok(ScheduleRow {
                    event_id: req(id[i].clone(), "event_id")?,
                    proposal_id: prop[i].clone().unwrap_or_default(),
                    asset_id: asset[i].clone().unwrap_or_default(),
                    status: status[i].clone().unwrap_or_default(),
                    ts: req(t[i], "ts")?,
                    scheduled_for: sf[i].unwrap_or(0),
                    priority: prio[i].clone().unwrap_or_default(),
                    reason: reason[i].clone().unwrap_or_default(),
                    requires_decision: rd[i].unwrap_or(false),
                })
            })
            .collect()
    }

    /// Every decision request, oldest first, with its proposal (the pipeline writes both; the
    /// ledger's own schedule changes are not proposals and are not joined).
    pub async fn decision_requests(&self) -> Result<Vec<DecisionRequestRow>, QueryError> {
        let r = self
            .query(
                "SELECT r.event_id, r.correlation_id, r.proposal_id, r.asset_id, r.ts, r.question, r.deadline, \
                        p.scheduled_for, p.priority, p.reason \
                 FROM decision_requests r \
                 LEFT JOIN (SELECT proposal_id, min(scheduled_for) AS scheduled_for, min(priority) AS priority, min(reason) AS reason \
                            FROM schedule WHERE status = 'proposed' GROUP BY proposal_id) p \
                   ON p.proposal_id = r.proposal_id \
                 ORDER BY r.ts, r.event_id",
                vec![],
                usize::MAX,
            )
            .await?;
        let c = Columns::new(&r)?;
        let (id, corr, prop, asset, t, q, dl) = (
            c.text("event_id")?,
            c.text("correlation_id")?,
            c.text("proposal_id")?,
            c.text("asset_id")?,
            c.int("ts")?,
            c.text("question")?,
            c.int("deadline")?,
        );
        let (sf, prio, reason) = (c.int("scheduled_for")?, c.text("priority")?, c.text("reason")?);
        (0..c.len())
            .map(|i| {
                Ok(DecisionRequestRow {
                    request_id: req(id[i].clone(), "event_id")?,
                    correlation_id: corr[i].clone().unwrap_or_default(),
                    proposal_id: prop[i].clone().unwrap_or_default(),
                    asset_id: asset[i].clone().unwrap_or_default(),
                    ts: req(t[i], "ts")?,
                    question: q[i].clone().unwrap_or_default(),
                    deadline: dl[i].unwrap_or(0),
                    scheduled_for: sf[i],
                    priority: prio[i].clone(),
                    reason: reason[i].clone(),
                })
            })
            .collect()
    }

    /// Readings of an asset in the history.
    pub async fn readings_count(&self, asset_id: &str) -> Result<u64, QueryError> {
        let r = self.query("SELECT count(*) AS n FROM readings WHERE asset_id = $1", vec![text(asset_id)], 1).await?;
        let c = Columns::new(&r)?;
        Ok(c.int("n")?.first().copied().flatten().unwrap_or(0).max(0) as u64)
    }

    /// Every asset's health now, worst first: each asset with a reading in the day before
    /// `as_of` (the sensors' list), a prediction, an anomaly in that day or an open proposal.
    pub async fn fleet_health(&self) -> Result<FleetHealth, QueryError> {
        let newest = [self.newest("readings").await?, self.newest("predictions").await?, self.newest("anomalies").await?];
        let Some(as_of) = newest.into_iter().flatten().max() else {
            return Ok(FleetHealth { as_of: None, counts: BTreeMap::new(), assets: vec![] });
        };
        let latest = self
            .query(
                "SELECT asset_id, last_value(health ORDER BY ts) AS health, last_value(failure_probability ORDER BY ts) AS p, \
                 last_value(rul_hours ORDER BY ts) AS rul, max(ts) AS t FROM predictions GROUP BY asset_id",
                vec![],
                usize::MAX,
            )
            .await?;
        let recent = self
            .query(
                "SELECT asset_id, count(*) AS n, sum(CASE WHEN severity = 'critical' THEN 1 ELSE 0 END) AS critical \
                 FROM anomalies WHERE ts >= $1 GROUP BY asset_id",
                vec![ts(as_of - 24 * HOUR_MS)],
                usize::MAX,
            )
            .await?;
        let open = self
            .query(
                "SELECT asset_id, proposal_id FROM (SELECT asset_id, proposal_id, last_value(status ORDER BY ts) AS status \
                 FROM schedule GROUP BY asset_id, proposal_id) WHERE status IN ('proposed', 'scheduled') ORDER BY asset_id, proposal_id",
                vec![],
                usize::MAX,
            )
            .await?;
        // The assets that send readings, as `sensors` sees them: one without a prediction yet
        // is listed too (warming up), since a planner reads absence as "fine".
        let since = as_of - 24 * HOUR_MS;
        let reporting = self
            .query(
                "SELECT asset_id, max(ts) AS t FROM readings WHERE ts >= $1 AND date >= $2 GROUP BY asset_id",
                vec![ts(since), text(&crate::report::date_of(since))],
                usize::MAX,
            )
            .await?;
        let mut assets: BTreeMap<String, AssetHealth> = BTreeMap::new();
        let entry = |a: String| -> AssetHealth {
            AssetHealth {
                asset_id: a,
                health: None,
                failure_probability: None,
                rul_hours: None,
                predicted_at: None,
                anomalies_24h: 0,
                critical_24h: 0,
                open_proposals: vec![],
                last_reading: None,
                status: String::new(),
            }
        };
        let c = Columns::new(&reporting)?;
        for (a, t) in c.text("asset_id")?.into_iter().zip(c.int("t")?) {
            let a = req(a, "asset_id")?;
            let e = assets.entry(a.clone()).or_insert_with(|| entry(a));
            e.last_reading = t;
        }
        let c = Columns::new(&latest)?;
        for ((((a, h), p), rul), t) in
            c.text("asset_id")?.into_iter().zip(c.float("health")?).zip(c.float("p")?).zip(c.float("rul")?).zip(c.int("t")?)
        {
            let a = req(a, "asset_id")?;
            let e = assets.entry(a.clone()).or_insert_with(|| entry(a));
            (e.health, e.failure_probability, e.rul_hours, e.predicted_at) = (h, p, rul, t);
        }
        let c = Columns::new(&recent)?;
        for ((a, n), k) in c.text("asset_id")?.into_iter().zip(c.int("n")?).zip(c.int("critical")?) {
            let a = req(a, "asset_id")?;
            let e = assets.entry(a.clone()).or_insert_with(|| entry(a));
            e.anomalies_24h = n.unwrap_or(0) as u64;
            e.critical_24h = k.unwrap_or(0) as u64;
        }
        let c = Columns::new(&open)?;
        for (a, p) in c.text("asset_id")?.into_iter().zip(c.text("proposal_id")?) {
            let a = req(a, "asset_id")?;
            let e = assets.entry(a.clone()).or_insert_with(|| entry(a));
            e.open_proposals.push(p.unwrap_or_default());
        }
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let mut list: Vec<AssetHealth> = assets
            .into_values()
            .map(|mut a| {
                let h = a.health.unwrap_or(1.0);
                let p = a.failure_probability.unwrap_or(0.0);
                a.status = if h < 0.5 || p >= 0.5 {
                    "critical"
                } else if h < 0.8 || p >= 0.2 || a.critical_24h > 0 {
                    "warning"
                } else if a.predicted_at.is_none() {
                    WARMING_UP
                } else {
                    "ok"
                }
                .into();
                *counts.entry(a.status.clone()).or_default() += 1;
                a
            })
            .collect();
        let rank = |s: &str| match s {
            "critical" => 0,
            "warning" => 1,
            WARMING_UP => 2,
            _ => 3,
        };
        list.sort_by(|a, b| {
            (rank(&a.status), a.health.unwrap_or(1.0), &a.asset_id)
                .partial_cmp(&(rank(&b.status), b.health.unwrap_or(1.0), &b.asset_id))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        Ok(FleetHealth { as_of: Some(as_of), counts, assets: list })
    }
}

/// Which incidents to return.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IncidentFilter {
    /// Only this asset.
    pub asset_id: Option<String>,
    /// Only this incident.
    pub incident_id: Option<String>,
    /// Only open ones (their latest revision is not `closed`).
    pub open_only: bool,
    /// Only those of at least this severity.
    pub min_severity: Option<vigil_events::Severity>,
    /// Opened at or after (ms).
    pub from: Option<i64>,
    /// Opened before (ms).
    pub to: Option<i64>,
    /// At most this many, newest first (0: the query row limit).
    pub limit: usize,
}

impl History {
    /// The latest revision of each incident matching `f`, the most recently opened first.
    pub async fn incidents(&self, f: &IncidentFilter) -> Result<Vec<vigil_events::Incident>, QueryError> {
        self.incident_rows(f, true).await
    }

    /// Every revision of one incident, oldest first.
    pub async fn incident_revisions(&self, incident_id: &str) -> Result<Vec<vigil_events::Incident>, QueryError> {
        let f = IncidentFilter { incident_id: Some(incident_id.to_string()), ..IncidentFilter::default() };
        let mut rows = self.incident_rows(&f, false).await?;
        rows.sort_by_key(|r| r.revision);
        Ok(rows)
    }

    async fn incident_rows(&self, f: &IncidentFilter, latest: bool) -> Result<Vec<vigil_events::Incident>, QueryError> {
        use vigil_events::{Incident, IncidentSensor, IncidentStatus, Severity};
        let mut clauses = Vec::new();
        let mut params = Vec::new();
        let mut add = |clause: &str, v: ScalarValue| {
            params.push(v);
            clauses.push(clause.replace('?', &format!("${}", params.len())));
        };
        if let Some(a) = &f.asset_id {
            add("asset_id = ?", text(a));
        }
        if let Some(i) = &f.incident_id {
            add("incident_id = ?", text(i));
        }
        if let Some(t) = f.from {
            add("opened_at >= ?", ts(t));
        }
        if let Some(t) = f.to {
            add("opened_at < ?", ts(t));
        }
        if let (Some(a), Some(b)) = (f.from, f.to) {
            if b < a {
                return Err(QueryError::Invalid("the period ends before it starts".into()));
            }
        }
        let wh = if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
        let limit = self.row_limit(f.limit);
        let cols = "event_id, correlation_id, event_version, incident_id, revision, asset_id, status, opened_at, ts, \
                    last_evidence_at, severity, suppressed, anomalies, drifts, sensors, detectors, predictions, \
                    decision_requests, summary";
        let mut outer = Vec::new();
        if f.open_only {
            outer.push("status <> 'closed'".to_string());
        }
        if let Some(s) = f.min_severity {
            let at_least: Vec<String> = [Severity::Low, Severity::Medium, Severity::High, Severity::Critical]
                .into_iter()
                .filter(|x| *x >= s)
                .map(|x| format!("'{}'", x.as_str()))
                .collect();
            outer.push(format!("severity IN ({})", at_least.join(", ")));
        }
        let outer = if outer.is_empty() { String::new() } else { format!("AND {}", outer.join(" AND ")) };
        let sql = if latest {
            format!(
                "SELECT {cols} FROM (SELECT {cols}, row_number() OVER (PARTITION BY incident_id ORDER BY revision DESC) AS rn \
                 FROM incidents {wh}) WHERE rn = 1 {outer} ORDER BY opened_at DESC, incident_id LIMIT {limit}"
            )
        } else {
            format!("SELECT {cols} FROM incidents {wh} ORDER BY revision LIMIT {limit}")
        };
        let r = self.query(&sql, params, limit).await?;
        let c = Columns::new(&r)?;
        let (id, corr, iid, asset, status, sev) = (
            c.text("event_id")?,
            c.text("correlation_id")?,
            c.text("incident_id")?,
            c.text("asset_id")?,
            c.text("status")?,
            c.text("severity")?,
        );
        let (ver, rev, anomalies, drifts) = (c.int("event_version")?, c.int("revision")?, c.int("anomalies")?, c.int("drifts")?);
        let (opened, t, last) = (c.int("opened_at")?, c.int("ts")?, c.int("last_evidence_at")?);
        let suppressed = c.bool("suppressed")?;
        let (sensors, detectors, predictions, requests, summary) =
            (c.text("sensors")?, c.text("detectors")?, c.text("predictions")?, c.text("decision_requests")?, c.text("summary")?);
        let list =
            |v: &Option<String>| -> Vec<String> { v.as_deref().and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default() };
        let parse_sev = |v: &Option<String>| -> Severity {
            v.as_deref()
                .and_then(|s| serde_json::from_value(serde_json::Value::String(s.to_string())).ok())
                .unwrap_or(Severity::Low)
        };
        let parse_status = |v: &Option<String>| -> IncidentStatus {
            v.as_deref()
                .and_then(|s| serde_json::from_value(serde_json::Value::String(s.to_string())).ok())
                .unwrap_or(IncidentStatus::Open)
        };
        (0..c.len())
            .map(|i| {
                Ok(Incident {
                    event_id: req(id[i].clone(), "event_id")?,
                    correlation_id: corr[i].clone().unwrap_or_default(),
                    event_version: ver[i].unwrap_or(1) as u32,
                    incident_id: req(iid[i].clone(), "incident_id")?,
                    revision: rev[i].unwrap_or(1) as u32,
                    asset_id: std::sync::Arc::from(asset[i].clone().unwrap_or_default()),
                    status: parse_status(&status[i]),
                    opened_at: req(opened[i], "opened_at")?,
                    ts: req(t[i], "ts")?,
                    last_evidence_at: req(last[i], "last_evidence_at")?,
                    severity: parse_sev(&sev[i]),
                    suppressed: suppressed[i].unwrap_or(false),
                    anomalies: anomalies[i].unwrap_or(0) as u32,
                    drifts: drifts[i].unwrap_or(0) as u32,
                    sensors: sensors[i]
                        .as_deref()
                        .and_then(|s| serde_json::from_str::<Vec<IncidentSensor>>(s).ok())
                        .unwrap_or_default(),
                    detectors: detectors[i]
                        .as_deref()
                        .map(|s| s.split(',').filter(|x| !x.is_empty()).map(str::to_string).collect())
                        .unwrap_or_default(),
                    predictions: list(&predictions[i]),
                    decision_requests: list(&requests[i]),
                    summary: summary[i].clone().unwrap_or_default(),
                })
            })
            .collect()
    }
}
