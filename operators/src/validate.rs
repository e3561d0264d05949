//! Validation: raw fields in, an accepted [`SensorReading`] or a [`RejectedReading`] out.
//!
//! Input: the [`RawFields`] of one record (from any format), its raw bytes and source position.
//! Output: `Ok(reading)` or `Err(rejected)` with a reason code and a human-readable detail;
//! exactly one of the two for every record, so records in = accepted + rejected.
//! Checks here are those that need nothing but the record and the wall clock: size, required
//! fields and their types, finiteness, the physical range of the sensor type (and configured
//! per-type ranges), and future timestamps. Lateness and duplicates need the stream's state and
//! are decided downstream. State: an interner of sensor, asset and unit strings (bounded).

use std::collections::HashMap;
use std::sync::Arc;

use vigil_events::{
    derived_reading_hash_keyed, parse_timestamp, parse_timestamp_in, stable_hash_str, EventTime, ReadingExtra, RejectReason,
    RejectedReading, SensorReading, SensorType, SourcePos, Zone,
};

use crate::decode::{decode_json_mapped, ColumnMap, Extra, Field, RawFields, Scalar};

/// Settings of the validator.
#[derive(Debug, Clone)]
pub struct ValidateConfig {
    /// Records larger than this many bytes are rejected as `oversized`.
    pub max_record_bytes: usize,
    /// Event times further than this ahead of the wall clock are rejected as `future_ts`.
    pub future_margin_ms: i64,
    /// Per-type valid ranges that override the physical defaults.
    pub ranges: HashMap<SensorType, (f64, f64)>,
    /// Columns or keys read as known fields beyond their default names.
    pub columns: ColumnMap,
    /// The zone of times written without one (UTC when `None`).
    pub timezone: Option<Zone>,
}

impl Default for ValidateConfig {
    fn default() -> Self {
        ValidateConfig {
            max_record_bytes: 1 << 20,
            future_margin_ms: 5 * 60_000,
            ranges: HashMap::new(),
            columns: ColumnMap::NONE,
            timezone: None,
        }
    }
}

/// Times written without a zone that a validator read as UTC because no zone was given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZonelessUtc {
    /// How many.
    pub count: u64,
    /// The first one, as written.
    pub example: Option<String>,
}

/// Most raw bytes kept in a dead-letter record.
pub const MAX_RAW_KEPT: usize = 64 * 1024;

/// How many distinct strings the interner keeps before it stops interning new ones.
const INTERNER_CAPACITY: usize = 1 << 20;

/// Interns the strings repeated on every reading (sensor, asset, unit).
#[derive(Default)]
pub struct Interner {
    map: HashMap<Box<str>, (Arc<str>, u64), ahash::RandomState>,
}

impl Interner {
    /// The shared string and its stable hash.
    #[inline]
    pub fn get(&mut self, s: &str) -> (Arc<str>, u64) {
        if let Some((a, h)) = self.map.get(s) {
            return (a.clone(), *h);
        }
        let a: Arc<str> = Arc::from(s);
        let h = stable_hash_str(s);
        if self.map.len() < INTERNER_CAPACITY {
            self.map.insert(Box::from(s), (a.clone(), h));
        }
        (a, h)
    }
}

/// Validates records; one per worker.
pub struct Validator {
    config: ValidateConfig,
    interner: Interner,
    now_ms: Box<dyn Fn() -> i64 + Send>,
    /// The wall clock as of the last [`Validator::tick`]; read once per batch, not per record.
    now: i64,
    /// Zoneless times read as UTC (no zone configured).
    zoneless_utc: ZonelessUtc,
}

fn reject(raw: &[u8], pos: SourcePos, reason: RejectReason, detail: String, now: i64) -> RejectedReading {
    let keep = raw.len().min(MAX_RAW_KEPT);
    RejectedReading { raw: raw[..keep].to_vec(), pos, reason, detail, sensor_id: None, ts: None, rejected_at: now }
}

fn as_id(s: &Scalar<'_>) -> Option<String> {
    match s {
        Scalar::Num(n) if n.fract() == 0.0 && n.abs() < 1e15 => Some(format!("{}", *n as i64)),
        _ => None,
    }
}

impl Validator {
    /// A validator reading the wall clock through `now_ms` (injected so tests can fix it).
    pub fn new(config: ValidateConfig, now_ms: Box<dyn Fn() -> i64 + Send>) -> Self {
        let now = now_ms();
        Validator { config, interner: Interner::default(), now_ms, now, zoneless_utc: ZonelessUtc::default() }
    }

    /// Reads the wall clock again (call once per batch of records).
    pub fn tick(&mut self) {
        self.now = (self.now_ms)();
    }

    /// A validator on the system clock.
    pub fn with_system_clock(config: ValidateConfig) -> Self {
        Validator::new(
            config,
            Box::new(|| {
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
            }),
        )
    }

    /// The wall-clock time this validator uses (as of the last tick).
    pub fn now(&self) -> i64 {
        self.now
    }

    /// Decodes and validates one JSON record.
    pub fn validate_json(&mut self, raw: &[u8], pos: SourcePos) -> Result<SensorReading, RejectedReading> {
        if raw.len() > self.config.max_record_bytes {
            return Err(self.oversized(raw, pos));
        }
        match decode_json_mapped(raw, &self.config.columns) {
            Ok(fields) => self.validate(fields, raw, pos),
            Err(e) => Err(reject(raw, pos, RejectReason::MalformedJson, e.0, self.now())),
        }
    }

    /// The dead-letter record of a record above the size limit.
    pub fn oversized(&self, raw: &[u8], pos: SourcePos) -> RejectedReading {
        let detail = format!(
            "record of {} bytes exceeds the limit of {} bytes (first {} bytes kept)",
            raw.len(),
            self.config.max_record_bytes,
            raw.len().min(MAX_RAW_KEPT)
        );
        reject(raw, pos, RejectReason::Oversized, detail, self.now())
    }

    /// The configured size limit.
    pub fn max_record_bytes(&self) -> usize {
        self.config.max_record_bytes
    }

    /// The configured column mapping.
    pub fn column_map(&self) -> &ColumnMap {
        &self.config.columns
    }

    /// Times written without a zone that were read as UTC because no zone is configured.
    pub fn zoneless_utc(&self) -> &ZonelessUtc {
        &self.zoneless_utc
    }

    /// How a missing field is named in a detail: by its column when it is mapped.
    fn missing(&self, field: Field, default: &str) -> String {
        match self.config.columns.column_of(field) {
            Some(c) => format!("missing field `{}` (column `{c}`)", field.name()),
            None => default.to_string(),
        }
    }

    /// Validates decoded fields.
    pub fn validate(&mut self, f: RawFields<'_>, raw: &[u8], pos: SourcePos) -> Result<SensorReading, RejectedReading> {
        let now = self.now();
        let fail = |reason: RejectReason, detail: String| reject(raw, pos, reason, detail, now);

        // sensor_id
        let sensor_owned;
        let sensor: &str = match &f.sensor_id {
            None | Some(Scalar::Null) => {
                return Err(fail(RejectReason::MissingField, self.missing(Field::SensorId, "missing field `sensor_id`")))
            }
            Some(Scalar::Str(s)) if !s.trim().is_empty() => s,
            Some(Scalar::Str(_)) => return Err(fail(RejectReason::MissingField, "field `sensor_id` is empty".into())),
            Some(other) => match as_id(other) {
                Some(s) => {
                    sensor_owned = s;
                    &sensor_owned
                }
                None => {
                    return Err(fail(
                        RejectReason::BadType,
                        format!("field `sensor_id` is a {}, expected a string", other.type_name()),
                    ))
                }
            },
        };

        // ts
        let ts: EventTime = match &f.ts {
            None | Some(Scalar::Null) => {
                return Err(with_sensor(
                    fail(RejectReason::MissingField, self.missing(Field::Ts, "missing field `ts` (or `timestamp`, `time`)")),
                    sensor,
                    None,
                ))
            }
            Some(Scalar::Num(n)) => match parse_timestamp(*n) {
                Ok(t) => t,
                Err(e) => return Err(with_sensor(fail(RejectReason::BadType, e.to_string()), sensor, None)),
            },
            Some(Scalar::Str(s)) => match parse_timestamp_in(s, self.config.timezone) {
                Ok(t) => {
                    if t.zoneless && self.config.timezone.is_none() {
                        self.zoneless_utc.count += 1;
                        if self.zoneless_utc.example.is_none() {
                            self.zoneless_utc.example = Some(s.trim().to_string());
                        }
                    }
                    t.ms
                }
                Err(e) => return Err(with_sensor(fail(RejectReason::BadType, e.to_string()), sensor, None)),
            },
            Some(other) => {
                return Err(with_sensor(
                    fail(
                        RejectReason::BadType,
                        format!("field `ts` is a {}, expected RFC 3339 or epoch milliseconds", other.type_name()),
                    ),
                    sensor,
                    None,
                ))
            }
        };

        // One documented range for every client-given time (a partition `date=-292275055` or
        // a year that does not format is never stored).
        if let Err(e) = vigil_events::check_time(ts) {
            return Err(with_sensor(fail(RejectReason::OutOfRange, format!("event time {e}")), sensor, None));
        }

        // value
        let value = match &f.value {
            None | Some(Scalar::Null) => {
                return Err(with_sensor(
                    fail(RejectReason::MissingField, self.missing(Field::Value, "missing field `value`")),
                    sensor,
                    Some(ts),
                ))
            }
            Some(Scalar::Num(n)) => *n,
            Some(Scalar::Str(s)) => match s.trim().parse::<f64>() {
                Ok(v) => v,
                Err(_) => {
                    return Err(with_sensor(
                        fail(RejectReason::BadType, format!("field `value` is {s:?}, expected a number")),
                        sensor,
                        Some(ts),
                    ))
                }
            },
            Some(other) => {
                return Err(with_sensor(
                    fail(RejectReason::BadType, format!("field `value` is a {}, expected a number", other.type_name())),
                    sensor,
                    Some(ts),
                ))
            }
        };
        if !value.is_finite() {
            return Err(with_sensor(fail(RejectReason::NonFinite, format!("value {value} is not finite")), sensor, Some(ts)));
        }

        // sensor_type (optional; unknown names are `other`)
        let sensor_type = match &f.sensor_type {
            None | Some(Scalar::Null) => SensorType::Other,
            Some(Scalar::Str(s)) => SensorType::parse(s).unwrap_or(SensorType::Other),
            Some(other) => {
                return Err(with_sensor(
                    fail(RejectReason::BadType, format!("field `sensor_type` is a {}, expected a string", other.type_name())),
                    sensor,
                    Some(ts),
                ))
            }
        };

        let (lo, hi) = self.config.ranges.get(&sensor_type).copied().unwrap_or_else(|| sensor_type.physical_range());
        if value < lo || value > hi {
            return Err(with_sensor(
                fail(
                    RejectReason::OutOfRange,
                    format!("value {value} outside the valid range [{lo}, {hi}] of a {sensor_type} sensor"),
                ),
                sensor,
                Some(ts),
            ));
        }

        if ts > now.saturating_add(self.config.future_margin_ms) {
            return Err(with_sensor(
                fail(
                    RejectReason::FutureTs,
                    format!(
                        "event time {} is more than {} s ahead of the wall clock",
                        vigil_events::format_rfc3339_ms(ts),
                        self.config.future_margin_ms / 1000
                    ),
                ),
                sensor,
                Some(ts),
            ));
        }

        let quality = match &f.quality {
            None | Some(Scalar::Null) => None,
            Some(Scalar::Num(q)) if q.is_finite() => Some(*q),
            Some(Scalar::Str(s)) if s.trim().parse::<f64>().is_ok_and(f64::is_finite) => s.trim().parse::<f64>().ok(),
            Some(other) => {
                return Err(with_sensor(
                    fail(
                        RejectReason::BadType,
                        format!("field `quality` is a {} that is not a finite number", other.type_name()),
                    ),
                    sensor,
                    Some(ts),
                ))
            }
        };

        let (asset_id, unit) = {
            let asset = match &f.asset_id {
                Some(Scalar::Str(s)) if !s.trim().is_empty() => Some(self.interner.get(s).0),
                Some(other @ Scalar::Num(_)) => as_id(other).map(|s| self.interner.get(&s).0),
                _ => None,
            };
            let unit = match &f.unit {
                Some(Scalar::Str(s)) => self.interner.get(s).0,
                _ => self.interner.get(sensor_type.default_unit()).0,
            };
            (asset, unit)
        };
        let (sensor_id, sensor_key) = self.interner.get(sensor);
        // A sensor without an asset belongs to an asset named after it.
        let asset_id = asset_id.unwrap_or_else(|| sensor_id.clone());

        let (reading_id, id_hash) = match &f.reading_id {
            Some(Scalar::Str(s)) if !s.is_empty() => (Some(Arc::from(&**s)), stable_hash_str(s)),
            Some(other @ Scalar::Num(_)) => match as_id(other) {
                Some(s) => {
                    let h = stable_hash_str(&s);
                    (Some(Arc::from(s.as_str())), h)
                }
                None => (None, derived_reading_hash_keyed(sensor_key, ts, value)),
            },
            _ => (None, derived_reading_hash_keyed(sensor_key, ts, value)),
        };

        let metadata = if f.extras.is_empty() { None } else { Some(extras_to_json(&f.extras)) };

        Ok(SensorReading {
            id_hash,
            sensor_id,
            sensor_key,
            asset_id,
            sensor_type,
            value,
            unit,
            ts,
            pos,
            extra: ReadingExtra { reading_id, quality, metadata }.boxed(),
        })
    }
}

fn with_sensor(mut r: RejectedReading, sensor: &str, ts: Option<EventTime>) -> RejectedReading {
    r.sensor_id = Some(Arc::from(sensor));
    r.ts = ts;
    r
}

fn extras_to_json(extras: &[(std::borrow::Cow<'_, str>, Extra<'_>)]) -> Box<str> {
    let mut s = String::with_capacity(64);
    s.push('{');
    for (i, (k, v)) in extras.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        // Keys are re-encoded (they were unescaped by the decoder).
        s.push_str(&serde_json::to_string(&**k).unwrap_or_else(|_| "\"?\"".into()));
        s.push(':');
        match v {
            Extra::Json(raw) => s.push_str(raw),
            Extra::JsonOwned(t) => s.push_str(t),
        }
    }
    s.push('}');
    s.into_boxed_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn v() -> Validator {
        Validator::new(ValidateConfig::default(), Box::new(|| NOW))
    }

    fn reason(line: &str) -> RejectReason {
        v().validate_json(line.as_bytes(), SourcePos::default()).unwrap_err().reason
    }

    #[test]
    fn accepts_a_liberal_reading() {
        let r = v()
            .validate_json(br#"{"sensor_id":"s1","timestamp":"2025-12-31T23:00:00+01:00","value":"21.5","sensor_type":"Temperature","quality":0.5,"site":"n"}"#, SourcePos { source: 0, offset: 3 })
            .unwrap();
        assert_eq!(&*r.sensor_id, "s1");
        assert_eq!(&*r.asset_id, "s1", "a sensor without an asset belongs to an asset named after it");
        assert_eq!(r.ts, NOW - 2 * 3_600_000);
        assert_eq!(r.value, 21.5);
        assert_eq!(r.sensor_type, SensorType::Temperature);
        assert_eq!(&*r.unit, "C");
        assert_eq!(r.quality(), Some(0.5));
        assert_eq!(r.metadata(), Some(r#"{"site":"n"}"#));
        assert_eq!(r.id_hash, vigil_events::derived_reading_hash("s1", r.ts, 21.5));
        assert_eq!(r.pos.offset, 3);
    }

    #[test]
    fn each_fault_gets_its_reason() {
        assert_eq!(reason("{not json"), RejectReason::MalformedJson);
        assert_eq!(reason(r#"{"ts":1,"value":1}"#), RejectReason::MissingField);
        assert_eq!(reason(r#"{"sensor_id":"a","value":1}"#), RejectReason::MissingField);
        assert_eq!(reason(r#"{"sensor_id":"a","ts":1}"#), RejectReason::MissingField);
        assert_eq!(reason(r#"{"sensor_id":"a","ts":1,"value":"hot"}"#), RejectReason::BadType);
        assert_eq!(reason(r#"{"sensor_id":"a","ts":"noon","value":1}"#), RejectReason::BadType);
        assert_eq!(reason(r#"{"sensor_id":true,"ts":1,"value":1}"#), RejectReason::BadType);
        assert_eq!(reason(r#"{"sensor_id":"a","ts":1,"value":"NaN"}"#), RejectReason::NonFinite);
        assert_eq!(reason(r#"{"sensor_id":"a","ts":1,"value":"-inf"}"#), RejectReason::NonFinite);
        assert_eq!(reason(r#"{"sensor_id":"a","ts":1,"value":-300,"sensor_type":"temperature"}"#), RejectReason::OutOfRange);
        assert_eq!(reason(r#"{"sensor_id":"a","ts":"2026-01-01T01:00:00Z","value":1}"#), RejectReason::FutureTs);
    }

    #[test]
    fn times_outside_the_accepted_range_are_out_of_range() {
        for ts in ["-1", "-86400000", "253402300800000", "\"0001-01-01T00:00:00Z\""] {
            let raw = format!(r#"{{"sensor_id":"a","ts":{ts},"value":1}}"#);
            let r = v().validate_json(raw.as_bytes(), SourcePos::default()).unwrap_err();
            assert_eq!(r.reason, RejectReason::OutOfRange, "{ts}: {}", r.detail);
            assert!(r.detail.contains("1970-01-01"), "{}", r.detail);
        }
        assert!(v().validate_json(br#"{"sensor_id":"a","ts":0,"value":1}"#, SourcePos::default()).is_ok());
    }

    #[test]
    fn oversized_records_are_rejected_before_parsing() {
        let mut val = Validator::new(ValidateConfig { max_record_bytes: 16, ..Default::default() }, Box::new(|| NOW));
        let r = val.validate_json(br#"{"sensor_id":"a","ts":1,"value":1}"#, SourcePos::default()).unwrap_err();
        assert_eq!(r.reason, RejectReason::Oversized);
    }

    #[test]
    fn given_ids_are_kept_and_hashed() {
        let r = v()
            .validate_json(br#"{"reading_id":"r-9","sensor_id":"a","ts":1,"value":1,"asset_id":"pump"}"#, SourcePos::default())
            .unwrap();
        assert_eq!(r.reading_id_string(), "r-9");
        assert_eq!(r.id_hash, stable_hash_str("r-9"));
        assert_eq!(&*r.asset_id, "pump");
    }
}
