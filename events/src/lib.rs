//! Vigil's shared event types.
//!
//! Every crate of the workspace speaks these types: the sensor readings that enter the dataflow,
//! the dead-letter records for those that cannot be accepted, the window features, and the events
//! the detectors, the predictor and the scheduler emit. They serialize to JSON on the wire (serde)
//! and map to one Arrow/Parquet table each in the history.
//!
//! Time is event time in milliseconds since the Unix epoch (UTC), an `i64` ([`EventTime`]).
//! Identifiers that appear in every record of a stream (sensor, asset, unit) are `Arc<str>` so a
//! decoder can intern them and a reading moves between workers without copying its strings.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

mod time;
pub use time::{
    check_time, format_rfc3339_ms, parse_timestamp, parse_timestamp_str, TimeError, TimeOutOfRange, MAX_TIME_MS, MIN_TIME_MS,
};
mod zone;
pub use zone::{parse_timestamp_in, ParsedTime, Zone, ZonedTimeError};

/// Event time: milliseconds since the Unix epoch, UTC.
pub type EventTime = i64;

/// A timestamp of the dataflow: an event-time watermark in its high bits and a cut number in
/// its low [`CUT_BITS`] bits. Operators read the watermark with [`watermark_of`]; a streaming
/// run advances the cut number to make every worker reach a consistent point (all input sent so
/// far processed) without moving the watermark, which would change results.
pub type DataflowTime = i64;

/// Bits of a [`DataflowTime`] that number cuts at one watermark.
pub const CUT_BITS: u32 = 16;

/// The dataflow time at the start of watermark `w` (cut 0). Watermarks beyond the range a
/// dataflow time can hold (about ±4,400 years around 1970) are clamped.
pub fn dataflow_time(w: EventTime) -> DataflowTime {
    w.clamp(i64::MIN >> CUT_BITS, i64::MAX >> CUT_BITS) << CUT_BITS
}

/// The event-time watermark of a dataflow time.
pub fn watermark_of(t: DataflowTime) -> EventTime {
    t >> CUT_BITS
}

/// Version stamped on every event this build emits.
pub const EVENT_VERSION: u32 = 1;

/// Milliseconds in one day, for date partitions.
pub const MS_PER_DAY: i64 = 86_400_000;

/// A stable 64-bit hash (FNV-1a) used for derived reading ids, event ids and for routing keys.
///
/// Stable across builds and platforms, unlike `std`'s `DefaultHasher`: derived ids land in the
/// history and must not change between versions.
#[derive(Clone, Copy, Debug)]
pub struct StableHasher(u64);

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl StableHasher {
    /// Feeds bytes.
    #[inline]
    pub fn write(&mut self, bytes: &[u8]) -> &mut Self {
        let mut h = self.0;
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
        self
    }
    /// Feeds an `i64` as little-endian bytes.
    #[inline]
    pub fn write_i64(&mut self, v: i64) -> &mut Self {
        self.write(&v.to_le_bytes())
    }
    /// Feeds a `u64` as little-endian bytes.
    #[inline]
    pub fn write_u64(&mut self, v: u64) -> &mut Self {
        self.write(&v.to_le_bytes())
    }
    /// The hash, with a final avalanche so that nearby inputs spread over all bits.
    #[inline]
    pub fn finish(&self) -> u64 {
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^= x >> 33;
        x
    }
}

/// Stable hash of a string.
#[inline]
pub fn stable_hash_str(s: &str) -> u64 {
    StableHasher::default().write(s.as_bytes()).finish()
}

/// The derived id of a reading that arrived without one: a stable hash of sensor id, time and value.
#[inline]
pub fn derived_reading_hash(sensor_id: &str, ts: EventTime, value: f64) -> u64 {
    derived_reading_hash_keyed(stable_hash_str(sensor_id), ts, value)
}

/// [`derived_reading_hash`] given the sensor's stable hash (`stable_hash_str(sensor_id)`), which
/// a decoder already has: three 64-bit words mixed, no pass over the bytes again.
#[inline]
pub fn derived_reading_hash_keyed(sensor_key: u64, ts: EventTime, value: f64) -> u64 {
    #[inline]
    fn mix(mut x: u64) -> u64 {
        x ^= x >> 30;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 27;
        x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
    let a = mix(sensor_key ^ 0x9e37_79b9_7f4a_7c15);
    let b = mix(a ^ ts as u64);
    mix(b ^ value.to_bits())
}

/// The kind of physical quantity a sensor measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SensorType {
    /// Degrees Celsius.
    Temperature,
    /// Vibration velocity, mm/s RMS.
    Vibration,
    /// Pressure, kPa.
    Pressure,
    /// Electric current, A.
    Current,
    /// Rotational speed, revolutions per minute.
    Rpm,
    /// Relative humidity, %.
    Humidity,
    /// Flow, litres per minute.
    Flow,
    /// Voltage, V.
    Voltage,
    /// Anything else.
    Other,
}

impl SensorType {
    /// All types, in a fixed order.
    pub const ALL: [SensorType; 9] = [
        SensorType::Temperature,
        SensorType::Vibration,
        SensorType::Pressure,
        SensorType::Current,
        SensorType::Rpm,
        SensorType::Humidity,
        SensorType::Flow,
        SensorType::Voltage,
        SensorType::Other,
    ];

    /// Parses a type name, case-insensitively; unknown names are `None`.
    pub fn parse(s: &str) -> Option<SensorType> {
        let s = s.trim();
        let mut buf = [0u8; 16];
        if s.len() > buf.len() {
            return None;
        }
        // Lowercase into a stack buffer: this runs once per reading.
        for (d, c) in buf.iter_mut().zip(s.bytes()) {
            *d = c.to_ascii_lowercase();
        }
        let t = match std::str::from_utf8(&buf[..s.len()]).unwrap_or("") {
            "temperature" | "temp" => SensorType::Temperature,
            "vibration" | "vib" => SensorType::Vibration,
            "pressure" => SensorType::Pressure,
            "current" => SensorType::Current,
            "rpm" | "speed" => SensorType::Rpm,
            "humidity" => SensorType::Humidity,
            "flow" => SensorType::Flow,
            "voltage" => SensorType::Voltage,
            "other" => SensorType::Other,
            _ => return None,
        };
        Some(t)
    }

    /// The lowercase name used on the wire and in the history.
    pub fn as_str(self) -> &'static str {
        match self {
            SensorType::Temperature => "temperature",
            SensorType::Vibration => "vibration",
            SensorType::Pressure => "pressure",
            SensorType::Current => "current",
            SensorType::Rpm => "rpm",
            SensorType::Humidity => "humidity",
            SensorType::Flow => "flow",
            SensorType::Voltage => "voltage",
            SensorType::Other => "other",
        }
    }

    /// The unit assumed when a reading names none.
    pub fn default_unit(self) -> &'static str {
        match self {
            SensorType::Temperature => "C",
            SensorType::Vibration => "mm/s",
            SensorType::Pressure => "kPa",
            SensorType::Current => "A",
            SensorType::Rpm => "rpm",
            SensorType::Humidity => "%",
            SensorType::Flow => "l/min",
            SensorType::Voltage => "V",
            SensorType::Other => "",
        }
    }

    /// The physically possible range in the default unit; a reading outside it is rejected as
    /// `out_of_range` (it is a broken sensor or a bad record, not an anomaly of the machine).
    pub fn physical_range(self) -> (f64, f64) {
        match self {
            SensorType::Temperature => (-273.15, 5_000.0),
            SensorType::Vibration => (0.0, 10_000.0),
            SensorType::Pressure => (0.0, 1_000_000.0),
            SensorType::Current => (-100_000.0, 100_000.0),
            SensorType::Rpm => (0.0, 1_000_000.0),
            SensorType::Humidity => (0.0, 100.0),
            SensorType::Flow => (0.0, 10_000_000.0),
            SensorType::Voltage => (-1_000_000.0, 1_000_000.0),
            SensorType::Other => (f64::MIN, f64::MAX),
        }
    }

    /// Default operating limits `(low, high)` for the hard-limit detector; `None` where a type
    /// has no sensible universal limit.
    pub fn operating_limits(self) -> (Option<f64>, Option<f64>) {
        match self {
            SensorType::Temperature => (Some(-20.0), Some(110.0)),
            SensorType::Vibration => (None, Some(12.0)),
            SensorType::Pressure => (Some(50.0), Some(900.0)),
            SensorType::Current => (None, Some(120.0)),
            SensorType::Rpm => (None, Some(4_500.0)),
            SensorType::Humidity => (None, Some(95.0)),
            SensorType::Flow => (None, None),
            SensorType::Voltage => (Some(180.0), Some(260.0)),
            SensorType::Other => (None, None),
        }
    }
}

impl fmt::Display for SensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a record came from: a source (file or topic partition) and a position in it.
///
/// Positions are totally ordered and unique within a run, which makes them the tie-breaker that
/// keeps results deterministic when two readings of a sensor share a timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct SourcePos {
    /// Index of the source in the run's source list.
    pub source: u32,
    /// Position in the source: line number (1-based) for line files, row for Parquet, offset for Kafka.
    pub offset: u64,
}

/// An accepted sensor reading.
///
/// Kept small (it is moved several times per reading on the hot path): the fields most readings
/// lack — a given id, a quality, extra metadata — live behind one optional box.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SensorReading {
    /// Dedupe key: the stable hash of the given id, or the derived hash of sensor, time and value.
    pub id_hash: u64,
    /// Sensor identifier.
    pub sensor_id: Arc<str>,
    /// Routing key of the sensor (stable hash of `sensor_id`).
    pub sensor_key: u64,
    /// Asset the sensor belongs to.
    pub asset_id: Arc<str>,
    /// What the sensor measures.
    pub sensor_type: SensorType,
    /// The measured value.
    pub value: f64,
    /// Unit of `value`.
    pub unit: Arc<str>,
    /// Event time.
    pub ts: EventTime,
    /// Where it came from.
    pub pos: SourcePos,
    /// Given id, quality and metadata, when the input had any.
    pub extra: Option<Box<ReadingExtra>>,
}

/// The optional parts of a reading.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReadingExtra {
    /// The id given on input, if any.
    pub reading_id: Option<Arc<str>>,
    /// Optional quality indicator given on input.
    pub quality: Option<f64>,
    /// Extra fields of the input record, as a JSON object.
    pub metadata: Option<Box<str>>,
}

impl ReadingExtra {
    /// `None` when there is nothing to keep.
    pub fn boxed(self) -> Option<Box<ReadingExtra>> {
        (self != ReadingExtra::default()).then(|| Box::new(self))
    }
}

impl SensorReading {
    /// The id given on input, if any.
    pub fn reading_id(&self) -> Option<&Arc<str>> {
        self.extra.as_ref().and_then(|e| e.reading_id.as_ref())
    }
    /// The quality given on input, if any.
    pub fn quality(&self) -> Option<f64> {
        self.extra.as_ref().and_then(|e| e.quality)
    }
    /// Extra fields of the input record, as a JSON object.
    pub fn metadata(&self) -> Option<&str> {
        self.extra.as_ref().and_then(|e| e.metadata.as_deref())
    }
    /// The reading id as stored: the given id, or the derived hash in hexadecimal.
    pub fn reading_id_string(&self) -> String {
        match self.reading_id() {
            Some(id) => id.to_string(),
            None => format!("{:016x}", self.id_hash),
        }
    }
}

/// Why a record was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Not parseable as a record of the source's format.
    MalformedJson,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong type (a string where a number is needed, …).
    BadType,
    /// The value is NaN or infinite.
    NonFinite,
    /// The value is outside the physically possible or configured range of its sensor type.
    OutOfRange,
    /// The event time is further ahead of the wall clock than the configured margin.
    FutureTs,
    /// The event time is behind the watermark.
    TooLate,
    /// The reading id was already seen within the dedupe horizon.
    Duplicate,
    /// The record is larger than the size limit.
    Oversized,
}

impl RejectReason {
    /// All reasons, in a fixed order.
    pub const ALL: [RejectReason; 9] = [
        RejectReason::MalformedJson,
        RejectReason::MissingField,
        RejectReason::BadType,
        RejectReason::NonFinite,
        RejectReason::OutOfRange,
        RejectReason::FutureTs,
        RejectReason::TooLate,
        RejectReason::Duplicate,
        RejectReason::Oversized,
    ];

    /// The reason code as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::MissingField => "missing_field",
            RejectReason::BadType => "bad_type",
            RejectReason::NonFinite => "non_finite",
            RejectReason::OutOfRange => "out_of_range",
            RejectReason::FutureTs => "future_ts",
            RejectReason::TooLate => "too_late",
            RejectReason::Duplicate => "duplicate",
            RejectReason::Oversized => "oversized",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A dead-letter record: what could not be accepted, where it came from, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RejectedReading {
    /// The raw payload (truncated to 64 KiB for oversized records; `detail` says so).
    pub raw: Vec<u8>,
    /// Source position.
    pub pos: SourcePos,
    /// Why.
    pub reason: RejectReason,
    /// Human-readable detail.
    pub detail: String,
    /// Sensor, when it could be read.
    pub sensor_id: Option<Arc<str>>,
    /// Event time, when it could be read.
    pub ts: Option<EventTime>,
    /// When it was rejected (wall clock, ms).
    pub rejected_at: i64,
}

/// Which kind of window a feature row describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowKind {
    /// Non-overlapping windows of one size.
    Tumbling,
    /// Overlapping windows: a size and a smaller hop.
    Hopping,
}

impl WindowKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            WindowKind::Tumbling => "tumbling",
            WindowKind::Hopping => "hopping",
        }
    }
}

/// Features of one sensor over one event-time window `[window_start, window_end)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowFeatures {
    /// Sensor.
    pub sensor_id: Arc<str>,
    /// Routing key of the sensor.
    pub sensor_key: u64,
    /// Asset.
    pub asset_id: Arc<str>,
    /// Sensor type.
    pub sensor_type: SensorType,
    /// Window kind.
    pub kind: WindowKind,
    /// Inclusive start.
    pub window_start: EventTime,
    /// Exclusive end.
    pub window_end: EventTime,
    /// Number of readings.
    pub count: u64,
    /// Mean value.
    pub mean: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
    /// Population standard deviation.
    pub std: f64,
    /// Root mean square.
    pub rms: f64,
    /// Least-squares slope, value units per second (0 with fewer than two distinct times).
    pub slope: f64,
    /// The value of the latest reading (ties broken by source position).
    pub last: f64,
}

/// Severity of an anomaly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// Needs attention.
    Medium,
    /// Act now.
    High,
    /// Safety or imminent failure.
    Critical,
}

impl Severity {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// An anomaly found by one detector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnomalyDetected {
    /// Stable id (hash of detector, sensor/asset and time).
    pub event_id: String,
    /// Traceable back to the readings: `sensor_id@window_start` or the reading id.
    pub correlation_id: String,
    /// Schema version of this event.
    pub event_version: u32,
    /// Sensor, or empty for asset-level detectors.
    pub sensor_id: Arc<str>,
    /// Asset.
    pub asset_id: Arc<str>,
    /// Detector name.
    pub detector: String,
    /// Detector version.
    pub detector_version: u32,
    /// Score (detector-specific scale; larger is more anomalous).
    pub score: f64,
    /// Severity.
    pub severity: Severity,
    /// Event time of the reading, or the end of the window, that triggered it.
    pub ts: EventTime,
    /// Window start, for window-based detectors.
    pub window_start: Option<EventTime>,
    /// The values that explain it, as a JSON object.
    pub explanation: String,
}

/// A change in a sensor's distribution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftDetected {
    /// Stable id.
    pub event_id: String,
    /// `sensor_id@window_start` of the window that completed the evidence.
    pub correlation_id: String,
    /// Schema version.
    pub event_version: u32,
    /// Sensor.
    pub sensor_id: Arc<str>,
    /// Asset.
    pub asset_id: Arc<str>,
    /// Statistic: `page_hinkley` or `ks`.
    pub statistic: String,
    /// Value of the statistic.
    pub value: f64,
    /// Threshold it crossed.
    pub threshold: f64,
    /// Reference period.
    pub reference_start: EventTime,
    /// End of the reference period.
    pub reference_end: EventTime,
    /// Current period.
    pub current_start: EventTime,
    /// End of the current period (event time of the event).
    pub current_end: EventTime,
}

/// The recent anomalies a prediction counts ("N anomalies in the last hour"): the asset's
/// anomalies with an event time in `[ts - RECENT_ANOMALIES_MS, ts]` of the prediction, both
/// ends included. The predictor counts them, and the console shows the same window from the
/// history as the prediction's evidence.
pub const RECENT_ANOMALIES_MS: EventTime = 3_600_000;

/// A maintenance prediction for one asset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MaintenancePredicted {
    /// Stable id.
    pub event_id: String,
    /// `asset_id@ts`.
    pub correlation_id: String,
    /// Schema version.
    pub event_version: u32,
    /// Asset.
    pub asset_id: Arc<str>,
    /// Event time of the prediction (end of the window it is based on).
    pub ts: EventTime,
    /// Health score in [0, 1]; 1 is healthy.
    pub health: f64,
    /// Probability of failure within the planning horizon, in [0, 1].
    pub failure_probability: f64,
    /// Remaining useful life in hours, when a trend towards a limit is seen.
    pub rul_hours: Option<f64>,
    /// Predicted failure time, when `rul_hours` is known.
    pub predicted_failure_ts: Option<EventTime>,
    /// Confidence in [0, 1].
    pub confidence: f64,
    /// Why, for a person.
    pub reasons: Vec<String>,
    /// Model name.
    pub model: String,
    /// Model version.
    pub model_version: String,
}

/// Status of a maintenance proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ScheduleStatus {
    /// Proposed by the policy, waiting for a decision or auto-approved.
    Proposed,
    /// Confirmed.
    Scheduled,
    /// Rejected by a person.
    Rejected,
    /// Done.
    Completed,
}

impl ScheduleStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleStatus::Proposed => "proposed",
            ScheduleStatus::Scheduled => "scheduled",
            ScheduleStatus::Rejected => "rejected",
            ScheduleStatus::Completed => "completed",
        }
    }
}

/// A change to the maintenance schedule (`MaintenanceScheduled`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MaintenanceScheduled {
    /// Stable id.
    pub event_id: String,
    /// The prediction that caused it.
    pub correlation_id: String,
    /// Schema version.
    pub event_version: u32,
    /// Proposal id (stable per asset and proposal).
    pub proposal_id: String,
    /// Asset.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub asset_id: Arc<str>,
    /// Status after this change.
    pub status: ScheduleStatus,
    /// Event time of the change.
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub ts: EventTime,
    /// Proposed time for the work.
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub scheduled_for: EventTime,
    /// Priority derived from health and RUL.
    pub priority: Severity,
    /// Why.
    pub reason: String,
    /// Whether a person must decide.
    pub requires_decision: bool,
}

/// A request for a person to approve, reject or defer a proposal (`HumanDecisionRequested`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HumanDecisionRequested {
    /// Stable id; the request id people answer.
    pub event_id: String,
    /// The proposal's correlation id.
    pub correlation_id: String,
    /// Schema version.
    pub event_version: u32,
    /// The proposal to decide.
    pub proposal_id: String,
    /// Asset.
    pub asset_id: Arc<str>,
    /// Event time of the request.
    pub ts: EventTime,
    /// What is asked, for a person.
    pub question: String,
    /// Decide before this time.
    pub deadline: EventTime,
}

/// What a person decided about a proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Go ahead: the proposal becomes scheduled maintenance.
    Approve,
    /// No: the proposal is closed.
    Reject,
    /// Not now: ask again after `deferred_until`.
    Defer,
}

impl Decision {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
            Decision::Defer => "defer",
        }
    }

    /// Whether the decision closes the request (a deferral does not).
    pub fn is_final(self) -> bool {
        !matches!(self, Decision::Defer)
    }
}

/// A person's answer to a decision request (`HumanDecisionSubmitted`); the audit log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HumanDecisionSubmitted {
    /// Stable id.
    pub event_id: String,
    /// The proposal's correlation id.
    pub correlation_id: String,
    /// Schema version.
    pub event_version: u32,
    /// The request answered.
    pub request_id: String,
    /// The proposal decided on.
    pub proposal_id: String,
    /// Asset.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub asset_id: Arc<str>,
    /// What was decided.
    pub decision: Decision,
    /// Who decided (the operator named in the request).
    pub decided_by: String,
    /// The name of the API key it came with.
    pub via_key: String,
    /// Why.
    pub comment: Option<String>,
    /// Wall-clock time of the decision.
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub ts: EventTime,
    /// For a deferral: when to ask again.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
    pub deferred_until: Option<EventTime>,
}

/// Preventive maintenance follows a proposal; corrective maintenance follows a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MaintenanceKind {
    /// Planned, before a failure.
    Preventive,
    /// After a failure.
    Corrective,
}

impl MaintenanceKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            MaintenanceKind::Preventive => "preventive",
            MaintenanceKind::Corrective => "corrective",
        }
    }
}

/// Maintenance done on an asset (`MaintenanceCompleted`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MaintenanceCompleted {
    /// Stable id.
    pub event_id: String,
    /// The proposal's correlation id, or the event id itself for unplanned work.
    pub correlation_id: String,
    /// Schema version.
    pub event_version: u32,
    /// The proposal carried out, if any.
    pub proposal_id: Option<String>,
    /// Asset.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub asset_id: Arc<str>,
    /// Preventive or corrective.
    pub kind: MaintenanceKind,
    /// Asset out of service from.
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub started_at: EventTime,
    /// Completed: asset back in service.
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub ts: EventTime,
    /// Who did it.
    pub performed_by: String,
    /// What was done.
    pub notes: Option<String>,
}

/// Where an incident stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    /// Opened by its first evidence.
    Open,
    /// Still open; its severity rose, or another sensor or detector joined it.
    Updated,
    /// No evidence for the quiet gap: over.
    Closed,
}

impl IncidentStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Open => "open",
            IncidentStatus::Updated => "updated",
            IncidentStatus::Closed => "closed",
        }
    }
}

/// One sensor's part in an incident: how far it strayed, against its normal range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IncidentSensor {
    /// Sensor (empty for the asset-level multivariate detector).
    pub sensor_id: String,
    /// The largest deviation seen, in multiples of its detector's alarm threshold (1 = at the
    /// threshold): comparable across detectors, it ranks the sensors.
    pub deviation: f64,
    /// The value behind that deviation (a reading, or a window's feature).
    pub value: Option<f64>,
    /// Its normal range, low end, when the detector knows one.
    pub normal_low: Option<f64>,
    /// Its normal range, high end.
    pub normal_high: Option<f64>,
    /// Detectors that fired on it.
    pub detectors: Vec<String>,
    /// Anomaly and drift events of it in the incident.
    pub events: u32,
}

/// One asset's related anomaly and drift events, grouped into one alarm (`Incident`).
///
/// Each change is a revision: `open` at the first evidence, `updated` when the severity rises or
/// another sensor or detector joins, `closed` once no evidence arrived for the quiet gap. The
/// anomalies and drift events stay in their tables as the evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Incident {
    /// Stable id of this revision.
    pub event_id: String,
    /// The event id of the evidence that opened the incident.
    pub correlation_id: String,
    /// Schema version.
    pub event_version: u32,
    /// Stable id of the incident (the same on every revision).
    pub incident_id: String,
    /// Revision, from 1.
    pub revision: u32,
    /// Asset.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub asset_id: Arc<str>,
    /// Status after this revision.
    pub status: IncidentStatus,
    /// Event time of the first evidence.
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub opened_at: EventTime,
    /// Event time of this revision (the latest evidence; the close time when closed).
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub ts: EventTime,
    /// Event time of the last evidence.
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub last_evidence_at: EventTime,
    /// The highest severity of its evidence.
    pub severity: Severity,
    /// Raised while the asset was in a maintenance window: recorded, not alerted.
    pub suppressed: bool,
    /// Anomaly events in it.
    pub anomalies: u32,
    /// Drift events in it.
    pub drifts: u32,
    /// Contributing sensors, the furthest from normal first.
    pub sensors: Vec<IncidentSensor>,
    /// Detectors involved, sorted.
    pub detectors: Vec<String>,
    /// Predictions made while it was open that proposed maintenance, and the latest one.
    pub predictions: Vec<String>,
    /// Decision requests raised while it was open.
    pub decision_requests: Vec<String>,
    /// What happened, for a person.
    pub summary: String,
}

/// What a person did about an incident.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum IncidentActionKind {
    /// Seen and being handled: it stays listed, marked acknowledged.
    Acknowledge,
    /// Set aside until `shelved_until`: left out of the alarm list (and its notices) until then.
    Shelve,
    /// Back on the alarm list before the shelving ran out.
    Unshelve,
}

impl IncidentActionKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentActionKind::Acknowledge => "acknowledge",
            IncidentActionKind::Shelve => "shelve",
            IncidentActionKind::Unshelve => "unshelve",
        }
    }
}

/// A person's action on an incident (`incident_actions`, the audit log of the alarm list).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IncidentAction {
    /// Stable id.
    pub event_id: String,
    /// The incident's id.
    pub correlation_id: String,
    /// Schema version.
    pub event_version: u32,
    /// The incident.
    pub incident_id: String,
    /// Its asset.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub asset_id: Arc<str>,
    /// What was done.
    pub action: IncidentActionKind,
    /// Shelved until (shelve only).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
    pub shelved_until: Option<EventTime>,
    /// Who did it (the API key's name).
    pub performed_by: String,
    /// Why, in their words.
    pub note: Option<String>,
    /// When (wall clock, ms).
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub ts: EventTime,
}

/// Builds a stable event id from a kind and key parts.
pub fn event_id(kind: &str, parts: &[&str], ts: EventTime) -> String {
    let mut h = StableHasher::default();
    h.write(kind.as_bytes());
    for p in parts {
        h.write(&[0xfe]).write(p.as_bytes());
    }
    h.write_i64(ts);
    format!("{kind}-{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    #[test]
    fn dataflow_times_order_like_watermarks() {
        use super::{dataflow_time, watermark_of};
        for w in [i64::MIN, -5, 0, 1, 1_790_000_000_000, i64::MAX] {
            let t = dataflow_time(w);
            assert_eq!(watermark_of(t + 1), watermark_of(t));
            assert!(dataflow_time(w.saturating_add(1)) >= t);
        }
        assert_eq!(watermark_of(dataflow_time(1_790_000_000_123)), 1_790_000_000_123);
        assert!(dataflow_time(-1) < dataflow_time(0));
    }

    use super::*;

    #[test]
    fn stable_hash_is_stable() {
        // Pinned: derived ids land in the history and must never change between versions.
        assert_eq!(stable_hash_str(""), StableHasher::default().finish());
        let a = derived_reading_hash("s-1", 1_000, 2.5);
        let b = derived_reading_hash("s-1", 1_000, 2.5);
        assert_eq!(a, b);
        assert_ne!(a, derived_reading_hash("s-1", 1_001, 2.5));
        assert_ne!(a, derived_reading_hash("s-2", 1_000, 2.5));
        assert_eq!(format!("{:016x}", stable_hash_str("vigil")).len(), 16);
    }

    #[test]
    fn sensor_types_round_trip() {
        for t in SensorType::ALL {
            assert_eq!(SensorType::parse(t.as_str()), Some(t));
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
        }
        assert_eq!(SensorType::parse("Temperature"), Some(SensorType::Temperature));
        assert_eq!(SensorType::parse("plasma"), None);
    }

    #[test]
    fn reasons_have_snake_case_codes() {
        for r in RejectReason::ALL {
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{}\"", r.as_str()));
        }
    }
}

/// One typed cell of a tabular record (a CSV or Parquet row), before validation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    /// Empty or null.
    Null,
    /// A number (Parquet numeric and timestamp columns; timestamps as epoch milliseconds).
    Num(f64),
    /// Text (every CSV cell; Parquet string columns).
    Str(&'a str),
    /// A boolean.
    Bool(bool),
}
