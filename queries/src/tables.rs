//! The tables of the history as SQL sees them: name, one-line description, columns (type and
//! meaning) and the order rows are sorted in within each file.
//!
//! The schemas here are the schemas the writers in `vigil-connectors` write (a test in
//! `tests/catalog.rs` compares them column by column), so a table is queryable with its full
//! schema before its first file exists, and a file written later is read with the same types.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Type of a documented column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// UTF-8 text.
    Text,
    /// Text stored with a dictionary (few distinct values).
    DictText,
    /// Raw bytes.
    Bytes,
    /// 64-bit float.
    Float,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 64-bit integer.
    U64,
    /// Boolean.
    Bool,
    /// Timestamp, milliseconds, UTC.
    Timestamp,
}

impl ColumnType {
    fn arrow(self) -> DataType {
        match self {
            ColumnType::Text => DataType::Utf8,
            ColumnType::DictText => DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            ColumnType::Bytes => DataType::Binary,
            ColumnType::Float => DataType::Float64,
            ColumnType::U32 => DataType::UInt32,
            ColumnType::U64 => DataType::UInt64,
            ColumnType::Bool => DataType::Boolean,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        }
    }

    /// SQL name of the type, as `--tables` shows it.
    pub fn sql_name(self) -> &'static str {
        match self {
            ColumnType::Text | ColumnType::DictText => "VARCHAR",
            ColumnType::Bytes => "BYTEA",
            ColumnType::Float => "DOUBLE",
            ColumnType::U32 => "INT UNSIGNED",
            ColumnType::U64 => "BIGINT UNSIGNED",
            ColumnType::Bool => "BOOLEAN",
            ColumnType::Timestamp => "TIMESTAMP (UTC)",
        }
    }
}

/// One documented column.
#[derive(Debug, Clone, Copy)]
pub struct ColumnDoc {
    /// Name.
    pub name: &'static str,
    /// Type.
    pub ty: ColumnType,
    /// Whether it may be NULL.
    pub nullable: bool,
    /// Meaning.
    pub doc: &'static str,
}

/// One documented table.
#[derive(Debug, Clone, Copy)]
pub struct TableDoc {
    /// Name (the folder under the data dir).
    pub name: &'static str,
    /// One line on what a row is.
    pub doc: &'static str,
    /// Columns, in file order (the `date` partition column is added after them).
    pub columns: &'static [ColumnDoc],
    /// Columns every file is sorted by, ascending.
    pub sort: &'static [&'static str],
}

impl TableDoc {
    /// The Arrow schema of the files (without the `date` partition column).
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(self.columns.iter().map(|c| Field::new(c.name, c.ty.arrow(), c.nullable)).collect::<Vec<_>>()))
    }
}

const fn c(name: &'static str, ty: ColumnType, doc: &'static str) -> ColumnDoc {
    ColumnDoc { name, ty, nullable: false, doc }
}

const fn n(name: &'static str, ty: ColumnType, doc: &'static str) -> ColumnDoc {
    ColumnDoc { name, ty, nullable: true, doc }
}

use ColumnType::{Bool, Bytes, DictText, Float, Text, Timestamp, U32, U64};

const EVENT_ID: ColumnDoc = c("event_id", Text, "stable id of the event (the same on every replay)");
const CORRELATION_ID: ColumnDoc = c("correlation_id", Text, "traces the event back to the readings that caused it");
const EVENT_VERSION: ColumnDoc = c("event_version", U32, "schema version of the event");

/// Every table of the history.
pub const TABLES: &[TableDoc] = &[
    TableDoc {
        name: "readings",
        doc: "accepted sensor readings, one row each, exactly once",
        columns: &[
            c("reading_id", Text, "id given by the producer, or a stable hash of sensor, time and value"),
            c("sensor_id", Text, "sensor"),
            c("asset_id", Text, "asset the sensor belongs to"),
            c("sensor_type", Text, "temperature, vibration, pressure, current, rpm, humidity, flow, voltage or other"),
            c("value", Float, "measured value"),
            c("unit", Text, "unit of the value"),
            c("ts", Timestamp, "event time of the reading"),
            n("quality", Float, "quality flag from the producer (0..1)"),
            n("metadata", Text, "producer metadata (JSON text)"),
            c("source", DictText, "where it came from: file path or topic/partition"),
            c("source_offset", U64, "line number or Kafka offset within the source"),
        ],
        sort: &["sensor_id", "ts"],
    },
    TableDoc {
        name: "features",
        doc: "per sensor and event-time window: count, mean, min, max, std, rms, slope, last",
        columns: &[
            c("sensor_id", Text, "sensor"),
            c("asset_id", Text, "asset"),
            c("sensor_type", Text, "sensor type"),
            c("window", Text, "window name from the config (e.g. 1m, 5m/1m)"),
            c("window_start", Timestamp, "window start (inclusive)"),
            c("window_end", Timestamp, "window end (exclusive)"),
            c("count", U64, "readings in the window"),
            c("mean", Float, "mean value"),
            c("min", Float, "least value"),
            c("max", Float, "greatest value"),
            c("std", Float, "standard deviation"),
            c("rms", Float, "root mean square"),
            c("slope", Float, "least-squares slope, units per second"),
            c("last", Float, "value of the latest reading"),
        ],
        sort: &["sensor_id", "window_start"],
    },
    TableDoc {
        name: "anomalies",
        doc: "anomalies found by the detectors (hard limits, robust statistics, multivariate)",
        columns: &[
            EVENT_ID,
            CORRELATION_ID,
            EVENT_VERSION,
            c("sensor_id", Text, "sensor (empty for asset-level anomalies: multivariate)"),
            c("asset_id", Text, "asset"),
            c("detector", Text, "detector name"),
            c("detector_version", U32, "detector version"),
            c("score", Float, "detector score"),
            c("severity", Text, "low, medium, high or critical"),
            c("ts", Timestamp, "time of the reading or window end"),
            n("window_start", Timestamp, "window start, for window detectors"),
            c("explanation", Text, "the values that triggered it (JSON text)"),
        ],
        sort: &["sensor_id", "ts"],
    },
    TableDoc {
        name: "drift",
        doc: "distribution drift of a sensor between a reference and a current period",
        columns: &[
            EVENT_ID,
            CORRELATION_ID,
            EVENT_VERSION,
            c("sensor_id", Text, "sensor"),
            c("asset_id", Text, "asset"),
            c("statistic", Text, "KS, PSI or Page-Hinkley"),
            c("value", Float, "statistic value"),
            c("threshold", Float, "threshold it crossed"),
            c("reference_start", Timestamp, "reference period start"),
            c("reference_end", Timestamp, "reference period end"),
            c("current_start", Timestamp, "current period start"),
            c("ts", Timestamp, "current period end (detection time)"),
        ],
        sort: &["sensor_id", "ts"],
    },
    TableDoc {
        name: "predictions",
        doc: "per asset: health score, failure probability and remaining useful life over time",
        columns: &[
            EVENT_ID,
            CORRELATION_ID,
            EVENT_VERSION,
            c("asset_id", Text, "asset"),
            c("ts", Timestamp, "time of the prediction (event time)"),
            c("health", Float, "health score, 1 healthy .. 0 failed"),
            c("failure_probability", Float, "probability of failure within the horizon"),
            n("rul_hours", Float, "remaining useful life, hours"),
            n("predicted_failure_ts", Timestamp, "predicted failure time"),
            c("confidence", Float, "confidence of the prediction (0..1)"),
            c("reasons", Text, "what drives the prediction (JSON text)"),
            c("model", Text, "model name"),
            c("model_version", Text, "model version"),
        ],
        sort: &["asset_id", "ts"],
    },
    TableDoc {
        name: "schedule",
        doc: "maintenance proposals and every change of their status",
        columns: &[
            EVENT_ID,
            CORRELATION_ID,
            EVENT_VERSION,
            c("proposal_id", Text, "proposal (one open proposal per asset at most)"),
            c("asset_id", Text, "asset"),
            c("status", Text, "proposed, scheduled, rejected or completed"),
            c("ts", Timestamp, "time of the change"),
            c("scheduled_for", Timestamp, "when the maintenance is planned"),
            c("priority", Text, "low, medium, high or critical"),
            c("reason", Text, "why it was proposed"),
            c("requires_decision", Bool, "whether a person must approve it"),
        ],
        sort: &["asset_id", "ts"],
    },
    TableDoc {
        name: "incidents",
        doc: "alarms: one asset's related anomaly and drift events grouped into one incident, a row per revision (open, updated, closed); the latest revision of each is its state",
        columns: &[
            EVENT_ID,
            c("correlation_id", Text, "event id of the evidence that opened it"),
            EVENT_VERSION,
            c("incident_id", Text, "incident (the same on every revision)"),
            c("revision", U32, "revision, from 1"),
            c("asset_id", Text, "asset"),
            c("status", Text, "open, updated or closed"),
            c("opened_at", Timestamp, "time of the first evidence"),
            c("ts", Timestamp, "time of this revision (the close time when closed)"),
            c("last_evidence_at", Timestamp, "time of the latest evidence"),
            c("severity", Text, "highest severity of its evidence: low, medium, high or critical"),
            c("suppressed", Bool, "raised in a maintenance window: recorded, not alerted"),
            c("anomalies", U32, "anomaly events in it"),
            c("drifts", U32, "drift events in it"),
            c("top_sensor", Text, "the sensor furthest from normal (empty: the multivariate detector)"),
            c("sensors", Text, "contributing sensors, furthest from normal first, with values and normal ranges (JSON text)"),
            c("detectors", Text, "detectors involved, comma-separated"),
            c("predictions", Text, "predictions it caused (JSON array of event ids)"),
            c("decision_requests", Text, "decision requests it caused (JSON array of event ids)"),
            c("summary", Text, "what happened, for a person"),
        ],
        sort: &["asset_id", "ts"],
    },
    TableDoc {
        name: "incident_actions",
        doc: "what people did about incidents: acknowledge, shelve, unshelve (the alarm list's audit log)",
        columns: &[
            EVENT_ID,
            c("correlation_id", Text, "the incident's id"),
            EVENT_VERSION,
            c("incident_id", Text, "incident"),
            c("asset_id", Text, "asset"),
            c("action", Text, "acknowledge, shelve or unshelve"),
            n("shelved_until", Timestamp, "shelved until (shelve)"),
            c("performed_by", Text, "who (the API key's name)"),
            n("note", Text, "why, in their words"),
            c("ts", Timestamp, "when"),
        ],
        sort: &["asset_id", "ts"],
    },
    TableDoc {
        name: "decision_requests",
        doc: "questions put to a person about a proposal",
        columns: &[
            EVENT_ID,
            CORRELATION_ID,
            EVENT_VERSION,
            c("proposal_id", Text, "proposal"),
            c("asset_id", Text, "asset"),
            c("ts", Timestamp, "time of the request"),
            c("question", Text, "what is asked"),
            c("deadline", Timestamp, "answer wanted by"),
        ],
        sort: &["asset_id", "ts"],
    },
    TableDoc {
        name: "decisions",
        doc: "human decisions on proposals: approve, reject or defer (the audit log)",
        columns: &[
            EVENT_ID,
            CORRELATION_ID,
            EVENT_VERSION,
            c("request_id", Text, "the decision request answered"),
            c("proposal_id", Text, "proposal decided on"),
            c("asset_id", Text, "asset"),
            c("decision", Text, "approve, reject or defer"),
            c("decided_by", Text, "who decided (the operator named in the decision)"),
            c("via_key", Text, "name of the API key the decision came with"),
            n("comment", Text, "why"),
            c("ts", Timestamp, "time of the decision"),
            n("deferred_until", Timestamp, "for a deferral: when to ask again"),
        ],
        sort: &["asset_id", "ts"],
    },
    TableDoc {
        name: "maintenance",
        doc: "maintenance done on an asset (preventive, or corrective after a failure)",
        columns: &[
            EVENT_ID,
            CORRELATION_ID,
            EVENT_VERSION,
            n("proposal_id", Text, "proposal it carried out, if any"),
            c("asset_id", Text, "asset"),
            c("kind", Text, "preventive or corrective (corrective follows a failure)"),
            c("started_at", Timestamp, "asset out of service from"),
            c("ts", Timestamp, "completed: asset back in service"),
            c("performed_by", Text, "who did it"),
            n("notes", Text, "what was done"),
        ],
        sort: &["asset_id", "ts"],
    },
    TableDoc {
        name: "rejected",
        doc: "dead letters: records that were not accepted, with the reason and the raw bytes",
        columns: &[
            c("reason", Text, "malformed_json, missing_field, non_finite, out_of_range, future_ts, too_late, duplicate, ..."),
            c("detail", Text, "human-readable detail"),
            c("raw", Bytes, "the record as received"),
            c("source", Text, "file path or topic/partition"),
            c("source_offset", U64, "line number or Kafka offset"),
            n("sensor_id", Text, "sensor, when it could be read"),
            n("ts", Timestamp, "event time, when it could be read"),
            c("rejected_at", Timestamp, "when it was rejected (wall clock)"),
        ],
        sort: &[],
    },
];

/// The documentation of a table.
pub fn table_doc(name: &str) -> Option<&'static TableDoc> {
    TABLES.iter().find(|t| t.name == name)
}

/// The table names closest to `name` (edit distance at most a third of the name, at least 2; a
/// common start of 4 letters or more; or one name containing the other), closest first.
pub fn closest_tables(name: &str) -> Vec<String> {
    let name = name.to_ascii_lowercase();
    let allowed = (name.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &str)> = TABLES
        .iter()
        .map(|t| (edit_distance(&name, t.name), t.name))
        .filter(|(d, t)| {
            let common = name.chars().zip(t.chars()).take_while(|(a, b)| a == b).count();
            *d <= allowed || common >= 4 || (name.len() >= 3 && (t.contains(name.as_str()) || name.contains(*t)))
        })
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, t)| t.to_string()).collect()
}

/// Levenshtein distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_tables_name_near_misses() {
        assert_eq!(closest_tables("readngs").first().map(String::as_str), Some("readings"));
        assert_eq!(closest_tables("anomaly").first().map(String::as_str), Some("anomalies"));
        assert!(closest_tables("zzzzzzzzzz").is_empty());
    }

    #[test]
    fn every_sort_column_is_a_column() {
        for t in TABLES {
            for s in t.sort {
                assert!(t.columns.iter().any(|c| c.name == *s), "{}.{s}", t.name);
            }
            let mut names: Vec<_> = t.columns.iter().map(|c| c.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), t.columns.len(), "{} has a duplicate column", t.name);
        }
    }
}
