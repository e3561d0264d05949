//! The Parquet history: one folder per table, date partitions, atomic files, a manifest.
//!
//! Layout: `DATA/<table>/date=YYYY-MM-DD/part-<run>-<worker>-<seq>.parquet`, each file sorted by
//! (key, time) — sensor and event time for sensor tables, asset and time for asset tables — with
//! the sort order recorded in the Parquet metadata. `DATA/_manifest/manifest.jsonl` holds one
//! line per commit listing the files it made visible and the source positions each covers.
//!
//! Writing is two-phase, so a crash never leaves half a file or a file without its manifest
//! entry: [`TableWriter`]s write complete files into `DATA/_staging/<run>/…` (temporary name,
//! fsync, rename); [`commit`] then appends the commit line to the manifest (fsync), and only then
//! renames the staged files into place. [`recover`] finishes a commit whose line is durable and
//! deletes staged files no commit names.
//!
//! Closed date partitions are later merged into one file each by [`crate::compact`], which adds
//! lines of its own kind (`{"compaction": …}`) to the manifest; [`read_manifest`] skips them.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Float64Builder, Int32Builder, RecordBatch, StringBuilder,
    TimestampMillisecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};
use vigil_events::{
    AnomalyDetected, DriftDetected, EventTime, HumanDecisionRequested, HumanDecisionSubmitted, Incident, IncidentAction,
    MaintenanceCompleted, MaintenancePredicted, MaintenanceScheduled, RejectedReading, SensorReading, WindowFeatures, MS_PER_DAY,
};

use crate::{ConnectorError, Result};

/// A row of a history table.
pub trait HistoryRow: Sized {
    /// Table name (the folder).
    const TABLE: &'static str;
    /// Arrow schema of the table.
    fn schema() -> SchemaRef;
    /// Event time that decides the date partition.
    fn partition_time(&self) -> EventTime;
    /// Sort key within a file: (key, time, tie-breaker).
    fn sort_key(&self) -> (&str, EventTime, u64);
    /// Builds a batch from rows (already sorted).
    fn to_batch(rows: &[&Self], sources: &[String]) -> Result<RecordBatch>;
    /// Columns whose values are (nearly) unique per row: written without a dictionary.
    fn unique_columns() -> &'static [&'static str] {
        &[]
    }
    /// Source position covered by this row, for the manifest (input tables only).
    fn position(&self) -> Option<(u32, u64)> {
        None
    }
}

fn ts_field(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), nullable)
}

fn ts_builder(n: usize) -> TimestampMillisecondBuilder {
    TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC")
}

fn batch(schema: SchemaRef, cols: Vec<ArrayRef>) -> Result<RecordBatch> {
    RecordBatch::try_new(schema, cols).map_err(|e| ConnectorError::Arrow(e.to_string()))
}

fn source_name(sources: &[String], idx: u32) -> &str {
    sources.get(idx as usize).map_or("", String::as_str)
}

impl HistoryRow for SensorReading {
    const TABLE: &'static str = "readings";
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("reading_id", DataType::Utf8, false),
            Field::new("sensor_id", DataType::Utf8, false),
            Field::new("asset_id", DataType::Utf8, false),
            Field::new("sensor_type", DataType::Utf8, false),
            Field::new("value", DataType::Float64, false),
            Field::new("unit", DataType::Utf8, false),
            ts_field("ts", false),
            Field::new("quality", DataType::Float64, true),
            Field::new("metadata", DataType::Utf8, true),
            Field::new("source", source_type(), false),
            Field::new("source_offset", DataType::UInt64, false),
        ]))
    }
    fn partition_time(&self) -> EventTime {
        self.ts
    }
    fn sort_key(&self) -> (&str, EventTime, u64) {
        (&self.sensor_id, self.ts, (u64::from(self.pos.source) << 48) ^ self.pos.offset)
    }
    fn position(&self) -> Option<(u32, u64)> {
        Some((self.pos.source, self.pos.offset))
    }
    fn unique_columns() -> &'static [&'static str] {
        &["reading_id", "value", "ts", "source_offset"]
    }
    fn to_batch(rows: &[&Self], sources: &[String]) -> Result<RecordBatch> {
        let n = rows.len();
        let mut id = StringBuilder::with_capacity(n, n * 16);
        let mut sensor = StringBuilder::with_capacity(n, n * 16);
        let mut asset = StringBuilder::with_capacity(n, n * 12);
        let mut typ = StringBuilder::with_capacity(n, n * 8);
        let mut value = Float64Builder::with_capacity(n);
        let mut unit = StringBuilder::with_capacity(n, n * 2);
        let mut ts = ts_builder(n);
        let mut quality = Float64Builder::with_capacity(n);
        let mut meta = StringBuilder::new();
        let mut source = Int32Builder::with_capacity(n);
        let mut offset = UInt64Builder::with_capacity(n);
        let mut hex = [0u8; 16];
        for r in rows {
            match r.reading_id() {
                Some(given) => id.append_value(given),
                None => id.append_value(hex16(r.id_hash, &mut hex)),
            }
            sensor.append_value(&r.sensor_id);
            asset.append_value(&r.asset_id);
            typ.append_value(r.sensor_type.as_str());
            value.append_value(r.value);
            unit.append_value(&r.unit);
            ts.append_value(r.ts);
            quality.append_option(r.quality());
            meta.append_option(r.metadata());
            source.append_value(r.pos.source as i32);
            offset.append_value(r.pos.offset);
        }
        let source = source_column(source.finish(), sources)?;
        batch(
            Self::schema(),
            vec![
                Arc::new(id.finish()),
                Arc::new(sensor.finish()),
                Arc::new(asset.finish()),
                Arc::new(typ.finish()),
                Arc::new(value.finish()),
                Arc::new(unit.finish()),
                Arc::new(ts.finish()),
                Arc::new(quality.finish()),
                Arc::new(meta.finish()),
                source,
                Arc::new(offset.finish()),
            ],
        )
    }
}

/// The `source` column of the readings: a dictionary of the run's source names (a file path
/// repeated on millions of rows costs nothing this way).
fn source_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

fn source_column(keys: arrow::array::Int32Array, sources: &[String]) -> Result<ArrayRef> {
    let n = sources.len() as i32;
    // Positions name sources of this run only; a key outside the list would be a bug upstream.
    let keys: arrow::array::Int32Array = keys.iter().map(|k| k.filter(|k| *k < n).or(Some(0))).collect();
    let names = if sources.is_empty() { vec![String::new()] } else { sources.to_vec() };
    let values: ArrayRef = Arc::new(arrow::array::StringArray::from(names));
    arrow::array::DictionaryArray::try_new(keys, values)
        .map(|d| Arc::new(d) as ArrayRef)
        .map_err(|e| ConnectorError::Arrow(e.to_string()))
}

fn hex16(v: u64, buf: &mut [u8; 16]) -> &str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in buf.iter_mut().enumerate() {
        *b = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
    // Only ASCII hex digits were written.
    std::str::from_utf8(buf).unwrap_or("")
}

impl HistoryRow for RejectedReading {
    const TABLE: &'static str = "rejected";
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("reason", DataType::Utf8, false),
            Field::new("detail", DataType::Utf8, false),
            Field::new("raw", DataType::Binary, false),
            Field::new("source", DataType::Utf8, false),
            Field::new("source_offset", DataType::UInt64, false),
            Field::new("sensor_id", DataType::Utf8, true),
            ts_field("ts", true),
            ts_field("rejected_at", false),
        ]))
    }
    fn partition_time(&self) -> EventTime {
        self.ts.unwrap_or(self.rejected_at)
    }
    fn sort_key(&self) -> (&str, EventTime, u64) {
        (
            self.sensor_id.as_deref().unwrap_or(""),
            self.ts.unwrap_or(EventTime::MIN),
            (u64::from(self.pos.source) << 48) ^ self.pos.offset,
        )
    }
    fn position(&self) -> Option<(u32, u64)> {
        Some((self.pos.source, self.pos.offset))
    }
    fn to_batch(rows: &[&Self], sources: &[String]) -> Result<RecordBatch> {
        let n = rows.len();
        let mut reason = StringBuilder::new();
        let mut detail = StringBuilder::new();
        let mut raw = BinaryBuilder::new();
        let mut source = StringBuilder::new();
        let mut offset = UInt64Builder::with_capacity(n);
        let mut sensor = StringBuilder::new();
        let mut ts = ts_builder(n);
        let mut at = ts_builder(n);
        for r in rows {
            reason.append_value(r.reason.as_str());
            detail.append_value(&r.detail);
            raw.append_value(&r.raw);
            source.append_value(source_name(sources, r.pos.source));
            offset.append_value(r.pos.offset);
            sensor.append_option(r.sensor_id.as_deref());
            ts.append_option(r.ts);
            at.append_value(r.rejected_at);
        }
        batch(
            Self::schema(),
            vec![
                Arc::new(reason.finish()),
                Arc::new(detail.finish()),
                Arc::new(raw.finish()),
                Arc::new(source.finish()),
                Arc::new(offset.finish()),
                Arc::new(sensor.finish()),
                Arc::new(ts.finish()),
                Arc::new(at.finish()),
            ],
        )
    }
}

impl HistoryRow for WindowFeatures {
    const TABLE: &'static str = "features";
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("sensor_id", DataType::Utf8, false),
            Field::new("asset_id", DataType::Utf8, false),
            Field::new("sensor_type", DataType::Utf8, false),
            Field::new("window", DataType::Utf8, false),
            ts_field("window_start", false),
            ts_field("window_end", false),
            Field::new("count", DataType::UInt64, false),
            Field::new("mean", DataType::Float64, false),
            Field::new("min", DataType::Float64, false),
            Field::new("max", DataType::Float64, false),
            Field::new("std", DataType::Float64, false),
            Field::new("rms", DataType::Float64, false),
            Field::new("slope", DataType::Float64, false),
            Field::new("last", DataType::Float64, false),
        ]))
    }
    fn partition_time(&self) -> EventTime {
        self.window_start
    }
    fn sort_key(&self) -> (&str, EventTime, u64) {
        (&self.sensor_id, self.window_start, self.kind as u64)
    }
    fn to_batch(rows: &[&Self], _sources: &[String]) -> Result<RecordBatch> {
        let n = rows.len();
        let (mut sensor, mut asset, mut typ, mut kind) =
            (StringBuilder::new(), StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
        let (mut ws, mut we) = (ts_builder(n), ts_builder(n));
        let mut count = UInt64Builder::with_capacity(n);
        let mut f: Vec<Float64Builder> = (0..7).map(|_| Float64Builder::with_capacity(n)).collect();
        for r in rows {
            sensor.append_value(&r.sensor_id);
            asset.append_value(&r.asset_id);
            typ.append_value(r.sensor_type.as_str());
            kind.append_value(r.kind.as_str());
            ws.append_value(r.window_start);
            we.append_value(r.window_end);
            count.append_value(r.count);
            for (b, v) in f.iter_mut().zip([r.mean, r.min, r.max, r.std, r.rms, r.slope, r.last]) {
                b.append_value(v);
            }
        }
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(sensor.finish()),
            Arc::new(asset.finish()),
            Arc::new(typ.finish()),
            Arc::new(kind.finish()),
            Arc::new(ws.finish()),
            Arc::new(we.finish()),
            Arc::new(count.finish()),
        ];
        cols.extend(f.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        batch(Self::schema(), cols)
    }
}

impl HistoryRow for AnomalyDetected {
    const TABLE: &'static str = "anomalies";
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("correlation_id", DataType::Utf8, false),
            Field::new("event_version", DataType::UInt32, false),
            Field::new("sensor_id", DataType::Utf8, false),
            Field::new("asset_id", DataType::Utf8, false),
            Field::new("detector", DataType::Utf8, false),
            Field::new("detector_version", DataType::UInt32, false),
            Field::new("score", DataType::Float64, false),
            Field::new("severity", DataType::Utf8, false),
            ts_field("ts", false),
            ts_field("window_start", true),
            Field::new("explanation", DataType::Utf8, false),
        ]))
    }
    fn partition_time(&self) -> EventTime {
        self.ts
    }
    fn sort_key(&self) -> (&str, EventTime, u64) {
        // Asset-level anomalies have no sensor (""): they come first, as the declared order says.
        (&self.sensor_id, self.ts, vigil_events::stable_hash_str(&self.event_id))
    }
    fn to_batch(rows: &[&Self], _sources: &[String]) -> Result<RecordBatch> {
        let n = rows.len();
        let (mut id, mut corr, mut sensor, mut asset, mut det, mut sev, mut expl) = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let (mut ver, mut dver) = (UInt32Builder::with_capacity(n), UInt32Builder::with_capacity(n));
        let mut score = Float64Builder::with_capacity(n);
        let (mut ts, mut ws) = (ts_builder(n), ts_builder(n));
        for r in rows {
            id.append_value(&r.event_id);
            corr.append_value(&r.correlation_id);
            ver.append_value(r.event_version);
            sensor.append_value(&r.sensor_id);
            asset.append_value(&r.asset_id);
            det.append_value(&r.detector);
            dver.append_value(r.detector_version);
            score.append_value(r.score);
            sev.append_value(r.severity.as_str());
            ts.append_value(r.ts);
            ws.append_option(r.window_start);
            expl.append_value(&r.explanation);
        }
        batch(
            Self::schema(),
            vec![
                Arc::new(id.finish()),
                Arc::new(corr.finish()),
                Arc::new(ver.finish()),
                Arc::new(sensor.finish()),
                Arc::new(asset.finish()),
                Arc::new(det.finish()),
                Arc::new(dver.finish()),
                Arc::new(score.finish()),
                Arc::new(sev.finish()),
                Arc::new(ts.finish()),
                Arc::new(ws.finish()),
                Arc::new(expl.finish()),
            ],
        )
    }
}

impl HistoryRow for DriftDetected {
    const TABLE: &'static str = "drift";
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("correlation_id", DataType::Utf8, false),
            Field::new("event_version", DataType::UInt32, false),
            Field::new("sensor_id", DataType::Utf8, false),
            Field::new("asset_id", DataType::Utf8, false),
            Field::new("statistic", DataType::Utf8, false),
            Field::new("value", DataType::Float64, false),
            Field::new("threshold", DataType::Float64, false),
            ts_field("reference_start", false),
            ts_field("reference_end", false),
            ts_field("current_start", false),
            ts_field("ts", false),
        ]))
    }
    fn partition_time(&self) -> EventTime {
        self.current_end
    }
    fn sort_key(&self) -> (&str, EventTime, u64) {
        (&self.sensor_id, self.current_end, vigil_events::stable_hash_str(&self.event_id))
    }
    fn to_batch(rows: &[&Self], _sources: &[String]) -> Result<RecordBatch> {
        let n = rows.len();
        let (mut id, mut corr, mut sensor, mut asset, mut stat) =
            (StringBuilder::new(), StringBuilder::new(), StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
        let mut ver = UInt32Builder::with_capacity(n);
        let (mut val, mut thr) = (Float64Builder::with_capacity(n), Float64Builder::with_capacity(n));
        let mut t: Vec<TimestampMillisecondBuilder> = (0..4).map(|_| ts_builder(n)).collect();
        for r in rows {
            id.append_value(&r.event_id);
            corr.append_value(&r.correlation_id);
            ver.append_value(r.event_version);
            sensor.append_value(&r.sensor_id);
            asset.append_value(&r.asset_id);
            stat.append_value(&r.statistic);
            val.append_value(r.value);
            thr.append_value(r.threshold);
            for (b, v) in t.iter_mut().zip([r.reference_start, r.reference_end, r.current_start, r.current_end]) {
                b.append_value(v);
            }
        }
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(id.finish()),
            Arc::new(corr.finish()),
            Arc::new(ver.finish()),
            Arc::new(sensor.finish()),
            Arc::new(asset.finish()),
            Arc::new(stat.finish()),
            Arc::new(val.finish()),
            Arc::new(thr.finish()),
        ];
        cols.extend(t.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        batch(Self::schema(), cols)
    }
}

impl HistoryRow for MaintenancePredicted {
    const TABLE: &'static str = "predictions";
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("correlation_id", DataType::Utf8, false),
            Field::new("event_version", DataType::UInt32, false),
            Field::new("asset_id", DataType::Utf8, false),
            ts_field("ts", false),
            Field::new("health", DataType::Float64, false),
            Field::new("failure_probability", DataType::Float64, false),
            Field::new("rul_hours", DataType::Float64, true),
            ts_field("predicted_failure_ts", true),
            Field::new("confidence", DataType::Float64, false),
            Field::new("reasons", DataType::Utf8, false),
            Field::new("model", DataType::Utf8, false),
            Field::new("model_version", DataType::Utf8, false),
        ]))
    }
    fn partition_time(&self) -> EventTime {
        self.ts
    }
    fn sort_key(&self) -> (&str, EventTime, u64) {
        (&self.asset_id, self.ts, 0)
    }
    fn to_batch(rows: &[&Self], _sources: &[String]) -> Result<RecordBatch> {
        let n = rows.len();
        let (mut id, mut corr, mut asset, mut reasons, mut model, mut mv) = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let mut ver = UInt32Builder::with_capacity(n);
        let (mut ts, mut pf) = (ts_builder(n), ts_builder(n));
        let mut f: Vec<Float64Builder> = (0..4).map(|_| Float64Builder::with_capacity(n)).collect();
        for r in rows {
            id.append_value(&r.event_id);
            corr.append_value(&r.correlation_id);
            ver.append_value(r.event_version);
            asset.append_value(&r.asset_id);
            ts.append_value(r.ts);
            f[0].append_value(r.health);
            f[1].append_value(r.failure_probability);
            f[2].append_option(r.rul_hours);
            pf.append_option(r.predicted_failure_ts);
            f[3].append_value(r.confidence);
            reasons.append_value(serde_json::to_string(&r.reasons).unwrap_or_default());
            model.append_value(&r.model);
            mv.append_value(&r.model_version);
        }
        let [health, fp, rul, conf]: [Float64Builder; 4] = f.try_into().map_err(|_| ConnectorError::Arrow("builders".into()))?;
        let (mut health, mut fp, mut rul, mut conf) = (health, fp, rul, conf);
        batch(
            Self::schema(),
            vec![
                Arc::new(id.finish()),
                Arc::new(corr.finish()),
                Arc::new(ver.finish()),
                Arc::new(asset.finish()),
                Arc::new(ts.finish()),
                Arc::new(health.finish()),
                Arc::new(fp.finish()),
                Arc::new(rul.finish()),
                Arc::new(pf.finish()),
                Arc::new(conf.finish()),
                Arc::new(reasons.finish()),
                Arc::new(model.finish()),
                Arc::new(mv.finish()),
            ],
        )
    }
}

impl HistoryRow for HumanDecisionSubmitted {
    const TABLE: &'static str = "decisions";
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("correlation_id", DataType::Utf8, false),
            Field::new("event_version", DataType::UInt32, false),
            Field::new("request_id", DataType::Utf8, false),
            Field::new("proposal_id", DataType::Utf8, false),
            Field::new("asset_id", DataType::Utf8, false),
            Field::new("decision", DataType::Utf8, false),
            Field::new("decided_by", DataType::Utf8, false),
            Field::new("via_key", DataType::Utf8, false),
            Field::new("comment", DataType::Utf8, true),
            ts_field("ts", false),
            ts_field("deferred_until", true),
        ]))
    }
    fn partition_time(&self) -> EventTime {
        self.ts
    }
    fn sort_key(&self) -> (&str, EventTime, u64) {
        (&self.asset_id, self.ts, 0)
    }
    fn to_batch(rows: &[&Self], _sources: &[String]) -> Result<RecordBatch> {
        let n = rows.len();
        let mut s: Vec<StringBuilder> = (0..9).map(|_| StringBuilder::new()).collect();
        let mut ver = UInt32Builder::with_capacity(n);
        let (mut ts, mut until) = (ts_builder(n), ts_builder(n));
        for r in rows {
            s[0].append_value(&r.event_id);
            s[1].append_value(&r.correlation_id);
            ver.append_value(r.event_version);
            s[2].append_value(&r.request_id);
            s[3].append_value(&r.proposal_id);
            s[4].append_value(&r.asset_id);
            s[5].append_value(r.decision.as_str());
            s[6].append_value(&r.decided_by);
            s[7].append_value(&r.via_key);
            s[8].append_option(r.comment.as_deref());
            ts.append_value(r.ts);
            until.append_option(r.deferred_until);
        }
        let mut f = |i: usize| Arc::new(s[i].finish()) as ArrayRef;
        let cols: Vec<ArrayRef> = vec![
            f(0),
            f(1),
            Arc::new(ver.finish()),
            f(2),
            f(3),
            f(4),
            f(5),
            f(6),
            f(7),
            f(8),
            Arc::new(ts.finish()),
            Arc::new(until.finish()),
        ];
        batch(Self::schema(), cols)
    }
}

impl HistoryRow for MaintenanceCompleted {
    const TABLE: &'static str = "maintenance";
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("correlation_id", DataType::Utf8, false),
            Field::new("event_version", DataType::UInt32, false),
            Field::new("proposal_id", DataType::Utf8, true),
            Field::new("asset_id", DataType::Utf8, false),
            Field::new("kind", DataType::Utf8, false),
            ts_field("started_at", false),
            ts_field("ts", false),
            Field::new("performed_by", DataType::Utf8, false),
            Field::new("notes", DataType::Utf8, true),
        ]))
    }
    fn partition_time(&self) -> EventTime {
        self.ts
    }
    fn sort_key(&self) -> (&str, EventTime, u64) {
        (&self.asset_id, self.ts, 0)
    }
    fn to_batch(rows: &[&Self], _sources: &[String]) -> Result<RecordBatch> {
        let n = rows.len();
        let mut s: Vec<StringBuilder> = (0..7).map(|_| StringBuilder::new()).collect();
        let mut ver = UInt32Builder::with_capacity(n);
        let (mut started, mut ts) = (ts_builder(n), ts_builder(n));
        for r in rows {
            s[0].append_value(&r.event_id);
            s[1].append_value(&r.correlation_id);
            ver.append_value(r.event_version);
            s[2].append_option(r.proposal_id.as_deref());
            s[3].append_value(&r.asset_id);
            s[4].append_value(r.kind.as_str());
            started.append_value(r.started_at);
            ts.append_value(r.ts);
            s[5].append_value(&r.performed_by);
            s[6].append_option(r.notes.as_deref());
        }
        let mut f = |i: usize| Arc::new(s[i].finish()) as ArrayRef;
        let cols: Vec<ArrayRef> = vec![
            f(0),
            f(1),
            Arc::new(ver.finish()),
            f(2),
            f(3),
            f(4),
            Arc::new(started.finish()),
            Arc::new(ts.finish()),
            f(5),
            f(6),
        ];
        batch(Self::schema(), cols)
    }
}

/// Writes `rows` (sorted here by key and time) as one Parquet file at `DATA/<table>/date=D/<name>`
/// atomically (temporary name, fsync, rename, fsync of the folder); one file per date. Used for
/// tables written outside the dataflow (the decision ledger), so no manifest entry: the name
/// is deterministic, and writing the same rows again replaces the file with the same content.
pub fn write_rows_by_date<R: HistoryRow>(data_dir: &Path, name: &str, rows: &[R]) -> Result<Vec<PathBuf>> {
    let mut by_day: BTreeMap<i64, Vec<&R>> = BTreeMap::new();
    for r in rows {
        by_day.entry(r.partition_time().div_euclid(MS_PER_DAY)).or_default().push(r);
    }
    let mut out = Vec::new();
    for (day, mut rows) in by_day {
        rows.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        let dir = data_dir.join(R::TABLE).join(format!("date={}", date_of_day(day)));
        fs::create_dir_all(&dir).map_err(|e| ConnectorError::io(&dir, e))?;
        let path = dir.join(name);
        let tmp = path.with_extension("parquet.tmp");
        let file = File::create(&tmp).map_err(|e| ConnectorError::io(&tmp, e))?;
        let sorting = vec![
            SortingColumn { column_idx: sort_column::<R>(0), descending: false, nulls_first: false },
            SortingColumn { column_idx: sort_column::<R>(1), descending: false, nulls_first: false },
        ];
        let props = WriterProperties::builder().set_compression(Compression::SNAPPY).set_sorting_columns(Some(sorting)).build();
        let mut w = ArrowWriter::try_new(file, R::schema(), Some(props)).map_err(|e| ConnectorError::parquet(&tmp, e))?;
        w.write(&R::to_batch(&rows, &[])?).map_err(|e| ConnectorError::parquet(&tmp, e))?;
        let file = w.into_inner().map_err(|e| ConnectorError::parquet(&tmp, e))?;
        file.sync_all().map_err(|e| ConnectorError::io(&tmp, e))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(|e| ConnectorError::io(&path, e))?;
        fsync_dir(&dir);
        out.push(path);
    }
    Ok(out)
}

impl HistoryRow for MaintenanceScheduled {
    const TABLE: &'static str = "schedule";
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("correlation_id", DataType::Utf8, false),
            Field::new("event_version", DataType::UInt32, false),
            Field::new("proposal_id", DataType::Utf8, false),
            Field::new("asset_id", DataType::Utf8, false),
            Field::new("status", DataType::Utf8, false),
            ts_field("ts", false),
            ts_field("scheduled_for", false),
            Field::new("priority", DataType::Utf8, false),
            Field::new("reason", DataType::Utf8, false),
            Field::new("requires_decision", DataType::Boolean, false),
        ]))
    }
    fn partition_time(&self) -> EventTime {
        self.ts
    }
    fn sort_key(&self) -> (&str, EventTime, u64) {
        (&self.asset_id, self.ts, 0)
    }
    fn to_batch(rows: &[&Self], _sources: &[String]) -> Result<RecordBatch> {
        let n = rows.len();
        let mut s: Vec<StringBuilder> = (0..7).map(|_| StringBuilder::new()).collect();
        let mut ver = UInt32Builder::with_capacity(n);
        let (mut ts, mut sf) = (ts_builder(n), ts_builder(n));
        let mut req = BooleanBuilder::with_capacity(n);
        for r in rows {
            s[0].append_value(&r.event_id);
            s[1].append_value(&r.correlation_id);
            ver.append_value(r.event_version);
            s[2].append_value(&r.proposal_id);
            s[3].append_value(&r.asset_id);
            s[4].append_value(r.status.as_str());
            ts.append_value(r.ts);
            sf.append_value(r.scheduled_for);
            s[5].append_value(r.priority.as_str());
            s[6].append_value(&r.reason);
            req.append_value(r.requires_decision);
        }
        let mut f = |i: usize| Arc::new(s[i].finish()) as ArrayRef;
        let cols: Vec<ArrayRef> = vec![
            f(0),
            f(1),
            Arc::new(ver.finish()),
            f(2),
            f(3),
            f(4),
            Arc::new(ts.finish()),
            Arc::new(sf.finish()),
            f(5),
            f(6),
            Arc::new(req.finish()),
        ];
        batch(Self::schema(), cols)
    }
}

impl HistoryRow for HumanDecisionRequested {
    const TABLE: &'static str = "decision_requests";
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("correlation_id", DataType::Utf8, false),
            Field::new("event_version", DataType::UInt32, false),
            Field::new("proposal_id", DataType::Utf8, false),
            Field::new("asset_id", DataType::Utf8, false),
            ts_field("ts", false),
            Field::new("question", DataType::Utf8, false),
            ts_field("deadline", false),
        ]))
    }
    fn partition_time(&self) -> EventTime {
        self.ts
    }
    fn sort_key(&self) -> (&str, EventTime, u64) {
        (&self.asset_id, self.ts, 0)
    }
    fn to_batch(rows: &[&Self], _sources: &[String]) -> Result<RecordBatch> {
        let n = rows.len();
        let mut s: Vec<StringBuilder> = (0..5).map(|_| StringBuilder::new()).collect();
        let mut ver = UInt32Builder::with_capacity(n);
        let (mut ts, mut dl) = (ts_builder(n), ts_builder(n));
        for r in rows {
            s[0].append_value(&r.event_id);
            s[1].append_value(&r.correlation_id);
            ver.append_value(r.event_version);
            s[2].append_value(&r.proposal_id);
            s[3].append_value(&r.asset_id);
            ts.append_value(r.ts);
            s[4].append_value(&r.question);
            dl.append_value(r.deadline);
        }
        let mut f = |i: usize| Arc::new(s[i].finish()) as ArrayRef;
        let cols: Vec<ArrayRef> =
            vec![f(0), f(1), Arc::new(ver.finish()), f(2), f(3), Arc::new(ts.finish()), f(4), Arc::new(dl.finish())];
        batch(Self::schema(), cols)
    }
}

impl HistoryRow for Incident {
    const TABLE: &'static str = "incidents";
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("correlation_id", DataType::Utf8, false),
            Field::new("event_version", DataType::UInt32, false),
            Field::new("incident_id", DataType::Utf8, false),
            Field::new("revision", DataType::UInt32, false),
            Field::new("asset_id", DataType::Utf8, false),
            Field::new("status", DataType::Utf8, false),
            ts_field("opened_at", false),
            ts_field("ts", false),
            ts_field("last_evidence_at", false),
            Field::new("severity", DataType::Utf8, false),
            Field::new("suppressed", DataType::Boolean, false),
            Field::new("anomalies", DataType::UInt32, false),
            Field::new("drifts", DataType::UInt32, false),
            Field::new("top_sensor", DataType::Utf8, false),
            Field::new("sensors", DataType::Utf8, false),
            Field::new("detectors", DataType::Utf8, false),
            Field::new("predictions", DataType::Utf8, false),
            Field::new("decision_requests", DataType::Utf8, false),
            Field::new("summary", DataType::Utf8, false),
        ]))
    }
    fn partition_time(&self) -> EventTime {
        self.ts
    }
    fn sort_key(&self) -> (&str, EventTime, u64) {
        (&self.asset_id, self.ts, u64::from(self.revision))
    }
    fn to_batch(rows: &[&Self], _sources: &[String]) -> Result<RecordBatch> {
        let n = rows.len();
        let mut s: Vec<StringBuilder> = (0..12).map(|_| StringBuilder::new()).collect();
        let mut u: Vec<UInt32Builder> = (0..4).map(|_| UInt32Builder::with_capacity(n)).collect();
        let mut t: Vec<TimestampMillisecondBuilder> = (0..3).map(|_| ts_builder(n)).collect();
        let mut suppressed = BooleanBuilder::with_capacity(n);
        let json = |v: &dyn erased::Json| v.text();
        for r in rows {
            s[0].append_value(&r.event_id);
            s[1].append_value(&r.correlation_id);
            u[0].append_value(r.event_version);
            s[2].append_value(&r.incident_id);
            u[1].append_value(r.revision);
            s[3].append_value(&r.asset_id);
            s[4].append_value(r.status.as_str());
            t[0].append_value(r.opened_at);
            t[1].append_value(r.ts);
            t[2].append_value(r.last_evidence_at);
            s[5].append_value(r.severity.as_str());
            suppressed.append_value(r.suppressed);
            u[2].append_value(r.anomalies);
            u[3].append_value(r.drifts);
            s[6].append_value(r.sensors.first().map_or("", |x| x.sensor_id.as_str()));
            s[7].append_value(json(&r.sensors));
            s[8].append_value(r.detectors.join(","));
            s[9].append_value(json(&r.predictions));
            s[10].append_value(json(&r.decision_requests));
            s[11].append_value(&r.summary);
        }
        let mut f = |i: usize| Arc::new(s[i].finish()) as ArrayRef;
        let (c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11) =
            (f(0), f(1), f(2), f(3), f(4), f(5), f(6), f(7), f(8), f(9), f(10), f(11));
        let mut g = |i: usize| Arc::new(u[i].finish()) as ArrayRef;
        let (u0, u1, u2, u3) = (g(0), g(1), g(2), g(3));
        let mut h = |i: usize| Arc::new(t[i].finish()) as ArrayRef;
        let (t0, t1, t2) = (h(0), h(1), h(2));
        let cols: Vec<ArrayRef> =
            vec![c0, c1, u0, c2, u1, c3, c4, t0, t1, t2, c5, Arc::new(suppressed.finish()), u2, u3, c6, c7, c8, c9, c10, c11];
        batch(Self::schema(), cols)
    }
    fn unique_columns() -> &'static [&'static str] {
        &["event_id", "summary", "sensors"]
    }
}

impl HistoryRow for IncidentAction {
    const TABLE: &'static str = "incident_actions";
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("correlation_id", DataType::Utf8, false),
            Field::new("event_version", DataType::UInt32, false),
            Field::new("incident_id", DataType::Utf8, false),
            Field::new("asset_id", DataType::Utf8, false),
            Field::new("action", DataType::Utf8, false),
            ts_field("shelved_until", true),
            Field::new("performed_by", DataType::Utf8, false),
            Field::new("note", DataType::Utf8, true),
            ts_field("ts", false),
        ]))
    }
    fn partition_time(&self) -> EventTime {
        self.ts
    }
    fn sort_key(&self) -> (&str, EventTime, u64) {
        (&self.asset_id, self.ts, vigil_events::stable_hash_str(&self.event_id))
    }
    fn to_batch(rows: &[&Self], _sources: &[String]) -> Result<RecordBatch> {
        let n = rows.len();
        let mut s: Vec<StringBuilder> = (0..7).map(|_| StringBuilder::new()).collect();
        let mut ver = UInt32Builder::with_capacity(n);
        let (mut until, mut ts) = (ts_builder(n), ts_builder(n));
        for r in rows {
            s[0].append_value(&r.event_id);
            s[1].append_value(&r.correlation_id);
            ver.append_value(r.event_version);
            s[2].append_value(&r.incident_id);
            s[3].append_value(&r.asset_id);
            s[4].append_value(r.action.as_str());
            until.append_option(r.shelved_until);
            s[5].append_value(&r.performed_by);
            s[6].append_option(r.note.as_deref());
            ts.append_value(r.ts);
        }
        let mut f = |i: usize| Arc::new(s[i].finish()) as ArrayRef;
        let (c0, c1, c2, c3, c4, c5, c6) = (f(0), f(1), f(2), f(3), f(4), f(5), f(6));
        let cols: Vec<ArrayRef> =
            vec![c0, c1, Arc::new(ver.finish()), c2, c3, c4, Arc::new(until.finish()), c5, c6, Arc::new(ts.finish())];
        batch(Self::schema(), cols)
    }
}

/// Values written as JSON text in a column.
mod erased {
    /// A value serialised as JSON text (an empty array if it cannot be, which a Vec of plain
    /// structs always can).
    pub(super) trait Json {
        fn text(&self) -> String;
    }

    impl<T: serde::Serialize> Json for T {
        fn text(&self) -> String {
            serde_json::to_string(self).unwrap_or_else(|_| "[]".into())
        }
    }
}

/// The positions of one source that a file covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSpan {
    /// Source name (file path, or topic/partition).
    pub source: String,
    /// Least position.
    pub first: u64,
    /// Greatest position.
    pub last: u64,
    /// Number of records.
    pub records: u64,
}

/// A file written to the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Table.
    pub table: String,
    /// Path relative to the data dir, once committed.
    pub path: String,
    /// Path relative to the data dir while staged.
    pub staged: String,
    /// Rows.
    pub rows: u64,
    /// Least partition time.
    pub min_ts: EventTime,
    /// Greatest partition time.
    pub max_ts: EventTime,
    /// Source positions covered (input tables).
    pub sources: Vec<SourceSpan>,
}

/// One line of the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Commit {
    /// Run id.
    pub run: String,
    /// The commit's number within its run (a streaming run's cut; 0 for a bounded run's one
    /// commit): the Delta transaction version of the run's commits ([`crate::delta`]).
    #[serde(default)]
    pub seq: i64,
    /// Commit time (wall clock, ms).
    pub committed_at: i64,
    /// Files made visible.
    pub files: Vec<FileEntry>,
    /// For a streaming run: where each partition resumes and the state to resume with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamMark>,
    /// For a bounded run (`vigil replay`, `vigil demo`): the inputs it covers, identified by
    /// content, and the period it replayed ([`crate::inputs`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<crate::inputs::ReplayMark>,
}

/// What a commit of a streaming run records besides its files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamMark {
    /// Input topic.
    pub topic: String,
    /// The instance that committed (its checkpoints are its own).
    pub instance: String,
    /// Cut number within the run.
    pub cut: u64,
    /// For every partition the instance owned at the cut: the next offset to read. Every record
    /// before it is in this or an earlier commit's files, or in the checkpoint's state.
    pub next_offsets: BTreeMap<i32, i64>,
    /// The greatest event time read from each of those partitions (what their lateness is
    /// measured from).
    pub max_event_time: BTreeMap<i32, EventTime>,
    /// Operator state at the cut, relative to the data dir.
    pub checkpoint: Option<String>,
}

/// Where each partition of `topic` resumes according to the manifest: the greatest next offset
/// any commit recorded for it.
pub fn resume_offsets(commits: &[Commit], topic: &str) -> BTreeMap<i32, i64> {
    let mut out: BTreeMap<i32, i64> = BTreeMap::new();
    for m in commits.iter().filter_map(|c| c.stream.as_ref()).filter(|m| m.topic == topic) {
        for (p, o) in &m.next_offsets {
            let e = out.entry(*p).or_insert(*o);
            *e = (*e).max(*o);
        }
    }
    out
}

/// Settings of the writers.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Run id (names staged files).
    pub run: String,
    /// Worker index.
    pub worker: usize,
    /// Rows buffered before a file is written.
    pub max_rows_per_file: usize,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// A file is also written once its rows span this much event time, so slow tables (features,
    /// events) do not sit in memory until the row limit: memory stays flat over a long stream.
    pub max_file_span_ms: i64,
    /// Source names, indexed by `SourcePos::source`.
    pub sources: Arc<Vec<String>>,
}

/// Buffers rows of one table and writes sorted, date-partitioned files into the staging area.
///
/// Sorting and encoding a full buffer happen on a background thread of the writer, so the
/// worker that feeds it goes on with the stream while a file is written (a worker blocked for a
/// second in Parquet encoding would hold back the watermark of the whole graph). Two buffers per
/// table at most: one fills while the other is written, then they swap (double buffering), so
/// memory is bounded by twice the file size whatever the length of the stream.
pub struct TableWriter<R: HistoryRow + Send + 'static> {
    cfg: WriterConfig,
    buffered: BTreeMap<i64, Vec<R>>,
    count: usize,
    /// Partition time of the first row pushed into each day buffer.
    first_time: BTreeMap<i64, EventTime>,
    /// Buffers allocated so far (at most [`BUFFERS`]).
    allocated: usize,
    seq: usize,
    jobs: Option<std::sync::mpsc::SyncSender<Job<R>>>,
    returned: std::sync::mpsc::Receiver<Vec<R>>,
    thread: Option<std::thread::JoinHandle<Result<Vec<FileEntry>>>>,
}

/// Work for a writer thread.
enum Job<R> {
    /// Write one day's rows as file number `seq`.
    Write(i64, usize, Vec<R>),
    /// Reply with the files written since the last sync (or the first error).
    Sync(std::sync::mpsc::Sender<Result<Vec<FileEntry>>>),
}

/// Buffers per table writer: one filling, one being written. A stream spanning a day boundary
/// needs one per day for a moment; such buffers are allocated beyond this and then reused.
const BUFFERS: usize = 2;

/// `YYYY-MM-DD` of a day number.
pub fn date_of_day(day: i64) -> String {
    vigil_events::format_rfc3339_ms(day * MS_PER_DAY)[..10].to_string()
}

pub(crate) fn fsync_dir(dir: &Path) {
    // Durability of the rename; platforms that cannot open directories ignore it.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

impl<R: HistoryRow + Send + 'static> TableWriter<R> {
    /// A writer for one worker.
    pub fn new(cfg: WriterConfig) -> Self {
        let (jobs, job_rx) = std::sync::mpsc::sync_channel::<Job<R>>(1);
        let (back_tx, returned) = std::sync::mpsc::channel::<Vec<R>>();
        let thread_cfg = cfg.clone();
        let thread = std::thread::Builder::new()
            .name(format!("vigil-{}-writer-{}", R::TABLE, cfg.worker))
            .spawn(move || {
                let mut written = Vec::new();
                let mut first_error = None;
                for job in job_rx {
                    match job {
                        Job::Write(day, seq, mut rows) => {
                            // After a failure the remaining buffers are dropped; the error is reported
                            // (at the next sync, or at the end) and the run must not commit.
                            if first_error.is_none() {
                                match write_sorted(&thread_cfg, day, seq, &rows) {
                                    Ok(e) => written.push(e),
                                    Err(e) => first_error = Some(e),
                                }
                            }
                            rows.clear();
                            let _ = back_tx.send(rows);
                        }
                        Job::Sync(reply) => {
                            let result = match &first_error {
                                Some(e) => Err(ConnectorError::Arrow(e.to_string())),
                                None => Ok(std::mem::take(&mut written)),
                            };
                            let _ = reply.send(result);
                        }
                    }
                }
                match first_error {
                    Some(e) => Err(e),
                    None => Ok(written),
                }
            })
            .map_err(|e| ConnectorError::io(&cfg.data_dir, e));
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(error = %e, "cannot start a history writer thread");
                None
            }
        };
        TableWriter {
            cfg,
            buffered: BTreeMap::new(),
            count: 0,
            first_time: BTreeMap::new(),
            allocated: 0,
            seq: 0,
            jobs: Some(jobs),
            returned,
            thread,
        }
    }

    /// Buffers a row; hands full buffers to the writer thread.
    pub fn push(&mut self, row: R) -> Result<()> {
        let t = row.partition_time();
        let day = t.div_euclid(MS_PER_DAY);
        // The span is per day buffer: a stray row of another day (a far-future dead letter, say)
        // must not cut the files of this one.
        if self.first_time.get(&day).is_some_and(|f| t.saturating_sub(*f) >= self.cfg.max_file_span_ms) {
            self.flush_day(day)?;
        }
        // The span is measured from the buffer's first row, not its earliest: rows that arrive out
        // of time order (a whole batch of windows closing at once) must not roll a file per row.
        self.first_time.entry(day).or_insert(t);
        if !self.buffered.contains_key(&day) {
            let buffer = self.empty_buffer()?;
            self.buffered.insert(day, buffer);
        }
        // The buffer for `day` was just ensured.
        if let Some(b) = self.buffered.get_mut(&day) {
            b.push(row);
        }
        self.count += 1;
        if self.count >= self.cfg.max_rows_per_file {
            self.flush()?;
        }
        Ok(())
    }

    /// An empty buffer: a returned one, a new one while fewer than [`BUFFERS`] exist, or else the
    /// next one the writer thread returns (waiting for it: back-pressure on the worker).
    fn empty_buffer(&mut self) -> Result<Vec<R>> {
        if let Ok(b) = self.returned.try_recv() {
            return Ok(b);
        }
        // Allocate while fewer than BUFFERS exist, or when every buffer is filling (rows of
        // several days at once): waiting then would wait for nothing.
        if self.allocated < BUFFERS || self.allocated <= self.buffered.len() {
            self.allocated += 1;
            return Ok(Vec::with_capacity(self.cfg.max_rows_per_file.min(1 << 20)));
        }
        match self.returned.recv() {
            Ok(b) => Ok(b),
            Err(_) => Err(self.thread_failure()),
        }
    }

    /// Rows buffered.
    pub fn buffered(&self) -> usize {
        self.count
    }

    /// Hands every buffered row to the writer thread.
    pub fn flush(&mut self) -> Result<()> {
        let days: Vec<i64> = self.buffered.keys().copied().collect();
        for day in days {
            self.flush_day(day)?;
        }
        Ok(())
    }

    /// Hands one day's buffer to the writer thread.
    fn flush_day(&mut self, day: i64) -> Result<()> {
        self.first_time.remove(&day);
        let Some(rows) = self.buffered.remove(&day) else { return Ok(()) };
        self.count -= rows.len();
        let seq = self.seq;
        self.seq += 1;
        let sent = self.jobs.as_ref().is_some_and(|j| j.send(Job::Write(day, seq, rows)).is_ok());
        if !sent {
            return Err(self.thread_failure());
        }
        Ok(())
    }

    fn thread_failure(&mut self) -> ConnectorError {
        self.jobs = None;
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            _ => ConnectorError::Arrow(format!("the {} writer thread stopped", R::TABLE)),
        }
    }

    /// Writes what is buffered, waits until the writer thread has written it, and returns the
    /// files written since the last call: every row pushed so far is then in a durable staged
    /// file. The writer stays open (a streaming run calls this at every cut).
    pub fn sync(&mut self) -> Result<Vec<FileEntry>> {
        self.flush()?;
        let (tx, rx) = std::sync::mpsc::channel();
        let sent = self.jobs.as_ref().is_some_and(|j| j.send(Job::Sync(tx)).is_ok());
        if !sent {
            return Err(self.thread_failure());
        }
        match rx.recv() {
            Ok(r) => r,
            Err(_) => Err(self.thread_failure()),
        }
    }

    /// Writes what is buffered, waits for the writer thread, and returns the files written.
    pub fn finish(mut self) -> Result<Vec<FileEntry>> {
        self.flush()?;
        self.jobs = None;
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            _ => Err(ConnectorError::Arrow(format!("the {} writer thread failed", R::TABLE))),
        }
    }
}

/// Sorts one buffer by (key, time, tie-breaker) and writes it as one staged file.
fn write_sorted<R: HistoryRow>(cfg: &WriterConfig, day: i64, seq: usize, rows: &[R]) -> Result<FileEntry> {
    // Sort references, not the rows themselves, and compare each distinct key string once:
    // rows are sorted by the rank of their key among the file's distinct keys.
    let mut ranks: std::collections::HashMap<&str, u32, ahash::RandomState> = Default::default();
    for r in rows {
        let next = ranks.len() as u32;
        ranks.entry(r.sort_key().0).or_insert(next);
    }
    let mut distinct: Vec<(&str, u32)> = ranks.iter().map(|(k, v)| (*k, *v)).collect();
    distinct.sort_unstable();
    let mut rank_of = vec![0u32; distinct.len()];
    for (rank, (_, first_seen)) in distinct.iter().enumerate() {
        rank_of[*first_seen as usize] = rank as u32;
    }
    let mut keyed: Vec<(u32, EventTime, u64, &R)> = rows
        .iter()
        .map(|r| {
            let (k, t, tie) = r.sort_key();
            (rank_of[ranks[k] as usize], t, tie, r)
        })
        .collect();
    keyed.sort_unstable_by_key(|e| (e.0, e.1, e.2));
    let refs: Vec<&R> = keyed.into_iter().map(|e| e.3).collect();
    write_file(cfg, day, seq, &refs)
}

fn write_file<R: HistoryRow>(cfg: &WriterConfig, day: i64, seq: usize, rows: &[&R]) -> Result<FileEntry> {
    let date = date_of_day(day);
    let name = format!("part-{}-{:03}-{:05}.parquet", cfg.run, cfg.worker, seq);
    let rel = format!("{}/date={}/{}", R::TABLE, date, name);
    let staged_rel = format!("_staging/{}/{}", cfg.run, rel);
    let staged = cfg.data_dir.join(&staged_rel);
    let dir = staged.parent().map(Path::to_path_buf).unwrap_or_default();
    fs::create_dir_all(&dir).map_err(|e| ConnectorError::io(&dir, e))?;
    let tmp = staged.with_extension("parquet.tmp");
    let file = File::create(&tmp).map_err(|e| ConnectorError::io(&tmp, e))?;
    let props = writer_properties::<R>(cfg.row_group_rows);
    let mut w = ArrowWriter::try_new(file, R::schema(), Some(props)).map_err(|e| ConnectorError::parquet(&tmp, e))?;
    for part in rows.chunks(cfg.row_group_rows.max(1)) {
        let b = R::to_batch(part, &cfg.sources)?;
        w.write(&b).map_err(|e| ConnectorError::parquet(&tmp, e))?;
    }
    let min_ts = rows.iter().map(|r| r.partition_time()).min().unwrap_or(EventTime::MAX);
    let max_ts = rows.iter().map(|r| r.partition_time()).max().unwrap_or(EventTime::MIN);
    let file = w.into_inner().map_err(|e| ConnectorError::parquet(&tmp, e))?;
    file.sync_all().map_err(|e| ConnectorError::io(&tmp, e))?;
    drop(file);
    fs::rename(&tmp, &staged).map_err(|e| ConnectorError::io(&staged, e))?;
    fsync_dir(&dir);
    Ok(FileEntry {
        table: R::TABLE.into(),
        path: rel,
        staged: staged_rel,
        rows: rows.len() as u64,
        min_ts,
        max_ts,
        sources: spans(rows, &cfg.sources),
    })
}

/// Properties of the files of table `R` (those of the [`TableWriter`]s, and of the merged files of
/// [`crate::compact`]): Snappy, row groups of `row_group_rows`, the sort order (key, time) in the
/// metadata, no dictionary for the unique-per-row columns.
pub fn writer_properties<R: HistoryRow>(row_group_rows: usize) -> WriterProperties {
    let sorting = vec![
        SortingColumn { column_idx: sort_column::<R>(0), descending: false, nulls_first: false },
        SortingColumn { column_idx: sort_column::<R>(1), descending: false, nulls_first: false },
    ];
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_sorting_columns(Some(sorting));
    // Unique-per-row columns gain nothing from a dictionary; trying one first costs time.
    R::unique_columns().iter().fold(props, |p, c| p.set_column_dictionary_enabled(ColumnPath::from(*c), false)).build()
}

/// Index of the sort columns in the schema: the key and the time column.
fn sort_column<R: HistoryRow>(which: usize) -> i32 {
    let schema = R::schema();
    let names: &[&str] = if which == 0 { &["sensor_id", "asset_id", "reason"] } else { &["ts", "window_start"] };
    names.iter().find_map(|n| schema.index_of(n).ok()).map_or(0, |i| i as i32)
}

fn spans<R: HistoryRow>(rows: &[&R], sources: &[String]) -> Vec<SourceSpan> {
    let mut by_source: BTreeMap<u32, SourceSpan> = BTreeMap::new();
    for (s, off) in rows.iter().filter_map(|r| r.position()) {
        let e = by_source.entry(s).or_insert_with(|| SourceSpan {
            source: source_name(sources, s).to_string(),
            first: off,
            last: off,
            records: 0,
        });
        e.first = e.first.min(off);
        e.last = e.last.max(off);
        e.records += 1;
    }
    by_source.into_values().collect()
}

/// Path of the manifest.
pub fn manifest_path(data_dir: &Path) -> PathBuf {
    data_dir.join("_manifest").join("manifest.jsonl")
}

/// Makes staged files visible: appends the commit to the manifest (fsync), then moves the files.
pub fn commit(data_dir: &Path, run: &str, files: Vec<FileEntry>, now_ms: i64) -> Result<Commit> {
    commit_replay(data_dir, run, files, now_ms, None)
}

/// [`commit`] with the bounded run's [`crate::inputs::ReplayMark`] in the same manifest line.
pub fn commit_replay(
    data_dir: &Path,
    run: &str,
    files: Vec<FileEntry>,
    now_ms: i64,
    replay: Option<crate::inputs::ReplayMark>,
) -> Result<Commit> {
    let c = Commit { run: run.to_string(), seq: 0, committed_at: now_ms, files, stream: None, replay };
    append_commit(data_dir, &c)?;
    let staging = data_dir.join("_staging").join(run);
    let _ = fs::remove_dir_all(staging);
    Ok(c)
}

/// Commits one segment of a streaming run: the manifest line (files, offsets, checkpoint) is
/// appended and fsynced, then the files are published. The run's staging area stays.
pub fn commit_segment(data_dir: &Path, run: &str, files: Vec<FileEntry>, stream: StreamMark, now_ms: i64) -> Result<Commit> {
    let seq = i64::try_from(stream.cut).unwrap_or(i64::MAX);
    let c = Commit { run: run.to_string(), seq, committed_at: now_ms, files, stream: Some(stream), replay: None };
    append_commit(data_dir, &c)?;
    Ok(c)
}

fn append_commit(data_dir: &Path, c: &Commit) -> Result<()> {
    let path = manifest_path(data_dir);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| ConnectorError::io(dir, e))?;
    }
    let mut line = serde_json::to_vec(&c).map_err(|e| ConnectorError::Arrow(e.to_string()))?;
    line.push(b'\n');
    let mut f = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| ConnectorError::io(&path, e))?;
    // Several processes may share a data dir: one appends at a time, whole lines.
    f.lock().map_err(|e| ConnectorError::io(&path, e))?;
    drop_torn_line(&path)?;
    f.write_all(&line).map_err(|e| ConnectorError::io(&path, e))?;
    f.sync_all().map_err(|e| ConnectorError::io(&path, e))?;
    let _ = f.unlock();
    publish(data_dir, c)?;
    // The manifest line is the intent; each table's Delta commit follows (a crash in between
    // is finished by `recover`, table by table).
    crate::delta::publish_files(data_dir, &crate::delta::run_app_id(&c.run), c.seq, &c.files)?;
    Ok(())
}

/// Cuts a torn last line (a crash in the middle of an append) off the manifest, so the next
/// line starts on a line of its own: glued to the torn one, it would not parse, and the commit
/// would be lost. The torn line was never acknowledged (its fsync had not returned). Called with
/// the manifest's lock held.
fn drop_torn_line(path: &Path) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ConnectorError::io(path, e)),
    };
    let len = f.metadata().map_err(|e| ConnectorError::io(path, e))?.len();
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        f.seek(SeekFrom::Start(start)).map_err(|e| ConnectorError::io(path, e))?;
        f.read_exact(chunk).map_err(|e| ConnectorError::io(path, e))?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            end = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if end != len {
        tracing::warn!(manifest = %path.display(), bytes = len - end, "a torn last line of the manifest is cut off");
        f.set_len(end).map_err(|e| ConnectorError::io(path, e))?;
        f.sync_all().map_err(|e| ConnectorError::io(path, e))?;
    }
    Ok(())
}

/// Holds a run's staging area: while held, [`recover`] in another process leaves it alone.
pub struct StagingLock {
    _file: File,
}

impl StagingLock {
    /// Takes the lock of run `run` (creating `_staging/<run>.lock`).
    pub fn acquire(data_dir: &Path, run: &str) -> Result<StagingLock> {
        let dir = data_dir.join("_staging");
        fs::create_dir_all(&dir).map_err(|e| ConnectorError::io(&dir, e))?;
        let path = dir.join(format!("{run}.lock"));
        let file = crate::open_lock_file(&path)?;
        file.try_lock().map_err(|e| ConnectorError::io(&path, std::io::Error::other(e.to_string())))?;
        Ok(StagingLock { _file: file })
    }
}

fn publish(data_dir: &Path, c: &Commit) -> Result<()> {
    for f in &c.files {
        let from = data_dir.join(&f.staged);
        let to = data_dir.join(&f.path);
        if from.exists() {
            if let Some(dir) = to.parent() {
                fs::create_dir_all(dir).map_err(|e| ConnectorError::io(dir, e))?;
            }
            fs::rename(&from, &to).map_err(|e| ConnectorError::io(&to, e))?;
            if let Some(dir) = to.parent() {
                fsync_dir(dir);
            }
        }
    }
    Ok(())
}

/// Reads the manifest's commits.
pub fn read_manifest(data_dir: &Path) -> Result<Vec<Commit>> {
    let path = manifest_path(data_dir);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ConnectorError::io(&path, e)),
    };
    // A torn last line (crash during the append) is not a commit.
    Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

/// Finishes committed-but-unpublished files and deletes staged files of uncommitted runs; also
/// finishes the compactions whose manifest line is durable and drops those whose line is not
/// ([`crate::compact::recover_compactions`]). Returns (files published and compactions finished,
/// staged runs discarded).
pub fn recover(data_dir: &Path) -> Result<(usize, usize)> {
    let commits = read_manifest(data_dir)?;
    let mut published = 0;
    for c in &commits {
        for f in &c.files {
            if data_dir.join(&f.staged).exists() {
                published += 1;
            }
        }
        publish(data_dir, c)?;
    }
    published += crate::compact::recover_compactions(data_dir)?;
    crate::delta::catch_up(data_dir, &commits)?;
    let mut discarded = 0;
    let staging = data_dir.join("_staging");
    if let Ok(entries) = fs::read_dir(&staging) {
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "lock") {
                continue;
            }
            // A run still alive (in this or another process) holds its lock: leave it alone.
            let lock = staging.join(format!("{}.lock", e.file_name().to_string_lossy()));
            if let Ok(f) = OpenOptions::new().write(true).open(&lock) {
                if f.try_lock().is_err() {
                    continue;
                }
                let _ = fs::remove_file(&lock);
            }
            let _ = fs::remove_dir_all(&path);
            discarded += 1;
        }
    }
    Ok((published, discarded))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_events::{SensorType, SourcePos};

    fn reading(sensor: &str, ts: EventTime, line: u64) -> SensorReading {
        SensorReading {
            id_hash: line,
            sensor_id: Arc::from(sensor),
            sensor_key: 0,
            asset_id: Arc::from("a"),
            sensor_type: SensorType::Temperature,
            value: line as f64,
            unit: Arc::from("C"),
            ts,
            extra: None,
            pos: SourcePos { source: 0, offset: line },
        }
    }

    #[test]
    fn writes_sorted_partitioned_files_and_commits_them() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = WriterConfig {
            data_dir: dir.path().to_path_buf(),
            run: "r1".into(),
            worker: 0,
            max_rows_per_file: 1000,
            row_group_rows: 100,
            max_file_span_ms: i64::MAX,
            sources: Arc::new(vec!["in.jsonl".into()]),
        };
        let mut w = TableWriter::<SensorReading>::new(cfg);
        w.push(reading("b", 10, 1)).unwrap();
        w.push(reading("a", 20, 2)).unwrap();
        w.push(reading("a", 5, 3)).unwrap();
        w.push(reading("a", MS_PER_DAY + 1, 4)).unwrap();
        let files = w.finish().unwrap();
        assert_eq!(files.len(), 2, "two dates");
        assert!(files[0].path.starts_with("readings/date=1970-01-01/"));
        assert!(!dir.path().join(&files[0].path).exists(), "not visible before the commit");
        commit(dir.path(), "r1", files.clone(), 0).unwrap();
        let batches = crate::files::read_parquet(&dir.path().join(&files[0].path)).unwrap();
        let b = &batches[0];
        let sensors = b.column(1).as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
        let ts = b.column(6).as_any().downcast_ref::<arrow::array::TimestampMillisecondArray>().unwrap();
        let got: Vec<_> = (0..b.num_rows()).map(|i| (sensors.value(i).to_string(), ts.value(i))).collect();
        assert_eq!(got, vec![("a".to_string(), 5), ("a".to_string(), 20), ("b".to_string(), 10)]);
        assert_eq!(files[0].sources, vec![SourceSpan { source: "in.jsonl".into(), first: 1, last: 3, records: 3 }]);
        assert_eq!(read_manifest(dir.path()).unwrap().len(), 1);
        assert!(!dir.path().join("_staging").join("r1").exists());
    }

    #[test]
    fn files_roll_by_span_per_day_and_stray_days_do_not_cut_them() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = WriterConfig {
            data_dir: dir.path().to_path_buf(),
            run: "span".into(),
            worker: 0,
            max_rows_per_file: 1_000_000,
            row_group_rows: 1000,
            max_file_span_ms: 3_600_000,
            sources: Arc::new(vec![]),
        };
        let mut w = TableWriter::<SensorReading>::new(cfg);
        // Three hours of a reading a minute, with a far-future row every ten minutes.
        for m in 0..180i64 {
            w.push(reading("a", m * 60_000, m as u64)).unwrap();
            if m % 10 == 0 {
                w.push(reading("a", 100 * 365 * MS_PER_DAY + m, 1000 + m as u64)).unwrap();
            }
        }
        let files = w.finish().unwrap();
        let day0 = files.iter().filter(|f| f.path.contains("date=1970-01-01")).count();
        let far = files.iter().filter(|f| !f.path.contains("date=1970-01-01")).count();
        assert_eq!((day0, far), (3, 1), "{files:#?}");
        assert_eq!(files.iter().map(|f| f.rows).sum::<u64>(), 180 + 18);
    }

    #[test]
    fn rows_out_of_time_order_do_not_roll_a_file_each() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = WriterConfig {
            data_dir: dir.path().to_path_buf(),
            run: "shuffled".into(),
            worker: 0,
            max_rows_per_file: 1_000_000,
            row_group_rows: 1000,
            max_file_span_ms: 3_600_000,
            sources: Arc::new(vec![]),
        };
        let mut w = TableWriter::<SensorReading>::new(cfg);
        // Six hours of a row a minute, arriving in batches of two hours in scrambled order (as
        // the windows of a replayed chunk close together).
        let mut n = 0u64;
        for batch in 0..3i64 {
            let mut minutes: Vec<i64> = (batch * 120..(batch + 1) * 120).collect();
            minutes.sort_by_key(|m| (m * 7919) % 120);
            for m in minutes {
                w.push(reading("a", m * 60_000, n)).unwrap();
                n += 1;
            }
        }
        let files = w.finish().unwrap();
        assert_eq!(files.iter().map(|f| f.rows).sum::<u64>(), 360);
        assert!(files.len() <= 8, "{} files for six hours of rows with a one-hour span", files.len());
    }

    #[test]
    fn recovery_publishes_committed_and_drops_uncommitted() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |run: &str| WriterConfig {
            data_dir: dir.path().to_path_buf(),
            run: run.into(),
            worker: 0,
            max_rows_per_file: 10,
            row_group_rows: 10,
            max_file_span_ms: i64::MAX,
            sources: Arc::new(vec![]),
        };
        let mut w = TableWriter::<SensorReading>::new(mk("done"));
        w.push(reading("a", 1, 1)).unwrap();
        let files = w.finish().unwrap();
        // Crash after the manifest line but before the renames.
        let c = Commit { run: "done".into(), seq: 0, committed_at: 0, files: files.clone(), stream: None, replay: None };
        let mut line = serde_json::to_vec(&c).unwrap();
        line.push(b'\n');
        fs::create_dir_all(dir.path().join("_manifest")).unwrap();
        fs::write(manifest_path(dir.path()), line).unwrap();
        let mut w = TableWriter::<SensorReading>::new(mk("crashed"));
        w.push(reading("a", 2, 2)).unwrap();
        w.finish().unwrap();
        let (published, discarded) = recover(dir.path()).unwrap();
        assert_eq!((published, discarded), (1, 2));
        assert!(dir.path().join(&files[0].path).exists());
        assert!(!dir.path().join("_staging").join("crashed").exists());
    }
}
