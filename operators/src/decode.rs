//! Decoding a record's fields without committing to their types.
//!
//! Input: a JSON object (one line of a JSON-lines file, one Kafka message) or the cells of a CSV
//! or Parquet row. Output: [`RawFields`], every known field as a loosely typed [`Scalar`]
//! borrowed from the input where possible, and every unknown field kept for the reading's
//! metadata. Typing and range rules are the validator's job (`validate`), so that every format
//! gets the same reasons for the same faults. State: none.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// A loosely typed field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    /// JSON `null` or an empty CSV cell.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number.
    Num(f64),
    /// A string.
    Str(Cow<'a, str>),
    /// An object or array.
    Composite,
}

impl Scalar<'_> {
    /// A short name of the type, for error details.
    pub fn type_name(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "boolean",
            Scalar::Num(_) => "number",
            Scalar::Str(_) => "string",
            Scalar::Composite => "object or array",
        }
    }
}

/// An extra field kept in the reading's metadata.
#[derive(Debug, Clone)]
pub enum Extra<'a> {
    /// JSON text of the value, as it was on input.
    Json(&'a str),
    /// JSON text owned (escaped keys or values from other formats).
    JsonOwned(String),
}

/// The fields of one input record, before validation.
#[derive(Debug, Clone, Default)]
pub struct RawFields<'a> {
    /// `reading_id` or `id`.
    pub reading_id: Option<Scalar<'a>>,
    /// `sensor_id` or `sensor`.
    pub sensor_id: Option<Scalar<'a>>,
    /// `asset_id` or `asset`.
    pub asset_id: Option<Scalar<'a>>,
    /// `sensor_type` or `type`.
    pub sensor_type: Option<Scalar<'a>>,
    /// `value`.
    pub value: Option<Scalar<'a>>,
    /// `unit`.
    pub unit: Option<Scalar<'a>>,
    /// `ts`, `timestamp` or `time`.
    pub ts: Option<Scalar<'a>>,
    /// `quality`.
    pub quality: Option<Scalar<'a>>,
    /// Every other field.
    pub extras: Vec<(Cow<'a, str>, Extra<'a>)>,
}

/// Which known field a column or key names, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// reading id
    ReadingId,
    /// sensor id
    SensorId,
    /// asset id
    AssetId,
    /// sensor type
    SensorType,
    /// value
    Value,
    /// unit
    Unit,
    /// event time
    Ts,
    /// quality
    Quality,
}

impl Field {
    /// Maps a key or column name (case-insensitive) to a known field.
    pub fn from_name(name: &str) -> Option<Field> {
        let f = match name {
            "reading_id" | "id" => Field::ReadingId,
            "sensor_id" | "sensor" => Field::SensorId,
            "asset_id" | "asset" => Field::AssetId,
            "sensor_type" | "type" => Field::SensorType,
            "value" => Field::Value,
            "unit" => Field::Unit,
            "ts" | "timestamp" | "time" => Field::Ts,
            "quality" => Field::Quality,
            _ => {
                if name.bytes().any(|b| b.is_ascii_uppercase()) {
                    return Field::from_name(&name.to_ascii_lowercase());
                }
                return None;
            }
        };
        Some(f)
    }
}

impl Field {
    /// Every field, in the order of [`Field::name`]s.
    pub const ALL: [Field; 8] = [
        Field::ReadingId,
        Field::SensorId,
        Field::AssetId,
        Field::SensorType,
        Field::Value,
        Field::Unit,
        Field::Ts,
        Field::Quality,
    ];

    /// The field's canonical name (`sensor_id`, `ts`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Field::ReadingId => "reading_id",
            Field::SensorId => "sensor_id",
            Field::AssetId => "asset_id",
            Field::SensorType => "sensor_type",
            Field::Value => "value",
            Field::Unit => "unit",
            Field::Ts => "ts",
            Field::Quality => "quality",
        }
    }
}

/// Column (or JSON key) names that stand for known fields, beyond the default names: a
/// historian export's `TagName,DateTime,Value` read as `sensor_id,ts,value`.
///
/// A mapped column is read as its field; a column with a field's default name whose field is
/// mapped to another column is kept as metadata, so the mapping decides. With no mapping, names
/// resolve as [`Field::from_name`] says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnMap {
    /// (column name as written, field), in the order given.
    columns: Vec<(String, Field)>,
}

impl ColumnMap {
    /// No mapping.
    pub const NONE: ColumnMap = ColumnMap { columns: Vec::new() };

    /// A mapping from (field, column) pairs; a field or a column given twice is an error.
    pub fn new(pairs: impl IntoIterator<Item = (Field, String)>) -> Result<ColumnMap, String> {
        let mut columns: Vec<(String, Field)> = Vec::new();
        for (field, column) in pairs {
            let column = column.trim().to_string();
            if column.is_empty() {
                return Err(format!("no column given for {}", field.name()));
            }
            if columns.iter().any(|(_, f)| *f == field) {
                return Err(format!("{} is mapped twice", field.name()));
            }
            if let Some((_, other)) = columns.iter().find(|(c, _)| *c == column) {
                return Err(format!("column {column:?} is mapped to both {} and {}", other.name(), field.name()));
            }
            columns.push((column, field));
        }
        Ok(ColumnMap { columns })
    }

    /// Parses `sensor_id=TagName,ts=DateTime,value=Value` (fields by their names or aliases).
    pub fn parse(spec: &str) -> Result<ColumnMap, String> {
        let mut pairs = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((field, column)) = part.split_once('=') else {
                return Err(format!("{part:?} is not FIELD=COLUMN (e.g. sensor_id=TagName)"));
            };
            pairs.push((Self::field(field)?, column.to_string()));
        }
        ColumnMap::new(pairs)
    }

    /// A field by its name or alias, or an error listing the fields.
    pub fn field(name: &str) -> Result<Field, String> {
        Field::from_name(name.trim()).ok_or_else(|| {
            let names: Vec<&str> = Field::ALL.iter().map(|f| f.name()).collect();
            format!("unknown field {:?}: the fields are {}", name.trim(), names.join(", "))
        })
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// The (column, field) pairs.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, Field)> {
        self.columns.iter().map(|(c, f)| (c.as_str(), *f))
    }

    /// The column a field is read from, if mapped.
    pub fn column_of(&self, field: Field) -> Option<&str> {
        self.columns.iter().find(|(_, f)| *f == field).map(|(c, _)| c.as_str())
    }

    /// The field a column or key names, under this mapping.
    #[inline]
    pub fn resolve(&self, name: &str) -> Option<Field> {
        if self.columns.is_empty() {
            return Field::from_name(name);
        }
        if let Some((_, f)) = self.columns.iter().find(|(c, _)| c == name) {
            return Some(*f);
        }
        Field::from_name(name).filter(|f| self.column_of(*f).is_none())
    }
}

impl<'a> RawFields<'a> {
    /// Stores a known field's value.
    pub fn set(&mut self, field: Field, v: Scalar<'a>) {
        let slot = match field {
            Field::ReadingId => &mut self.reading_id,
            Field::SensorId => &mut self.sensor_id,
            Field::AssetId => &mut self.asset_id,
            Field::SensorType => &mut self.sensor_type,
            Field::Value => &mut self.value,
            Field::Unit => &mut self.unit,
            Field::Ts => &mut self.ts,
            Field::Quality => &mut self.quality,
        };
        *slot = Some(v);
    }
}

/// Why a JSON record could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// Decodes one tabular row given its column names (CSV header or Parquet schema).
///
/// CSV cells are text: numbers in known numeric fields are parsed by the validator, and extra
/// columns that look like numbers are kept as numbers in the metadata.
pub fn decode_cells<'a>(names: &'a [String], cells: &[vigil_events::Cell<'a>]) -> RawFields<'a> {
    decode_cells_mapped(names, cells, &ColumnMap::NONE)
}

/// [`decode_cells`] with columns mapped to fields by `map`.
pub fn decode_cells_mapped<'a>(names: &'a [String], cells: &[vigil_events::Cell<'a>], map: &ColumnMap) -> RawFields<'a> {
    use vigil_events::Cell;
    let mut out = RawFields::default();
    for (name, cell) in names.iter().zip(cells) {
        let scalar = match cell {
            Cell::Null => Scalar::Null,
            Cell::Num(n) => Scalar::Num(*n),
            Cell::Bool(b) => Scalar::Bool(*b),
            Cell::Str("") => Scalar::Null,
            Cell::Str(s) => Scalar::Str(Cow::Borrowed(s)),
        };
        match map.resolve(name) {
            Some(f) => out.set(f, scalar),
            None => {
                let json = match scalar {
                    Scalar::Null => continue,
                    Scalar::Num(n) if n.is_finite() => n.to_string(),
                    Scalar::Bool(b) => b.to_string(),
                    Scalar::Str(s) => match s.trim().parse::<f64>() {
                        Ok(n) if n.is_finite() => s.trim().to_string(),
                        _ => serde_json::to_string(&*s).unwrap_or_default(),
                    },
                    _ => continue,
                };
                out.extras.push((Cow::Borrowed(name.as_str()), Extra::JsonOwned(json)));
            }
        }
    }
    out
}

/// Decodes one JSON object.
///
/// Flat objects of strings without escapes, numbers, booleans and nulls — what sensors send —
/// take a hand-written fast path; anything else (escapes, nesting, errors) goes through
/// serde_json, which also words the errors.
pub fn decode_json(bytes: &[u8]) -> Result<RawFields<'_>, DecodeError> {
    decode_json_mapped(bytes, &ColumnMap::NONE)
}

/// [`decode_json`] with keys mapped to fields by `map`.
pub fn decode_json_mapped<'a>(bytes: &'a [u8], map: &ColumnMap) -> Result<RawFields<'a>, DecodeError> {
    if let Some(fields) = decode_flat(bytes, map) {
        return Ok(fields);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let fields = de::DeserializeSeed::deserialize(Mapped(map), &mut de).map_err(|e| DecodeError(e.to_string()))?;
    de.end().map_err(|e| DecodeError(e.to_string()))?;
    Ok(fields)
}

#[inline]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// A string without escapes starting at the opening quote of `text` at byte `i`; returns it and
/// the index after the closing quote. Quotes are ASCII, so the slice falls on char boundaries.
#[inline]
fn plain_string(text: &str, i: usize) -> Option<(&str, usize)> {
    let rest = &text.as_bytes()[i + 1..];
    let end = memchr::memchr2(b'"', b'\\', rest)?;
    if rest[end] != b'"' || rest[..end].iter().any(|c| *c < 0x20) {
        return None;
    }
    text.get(i + 1..i + 1 + end).map(|s| (s, i + 1 + end + 1))
}

/// The fast path of [`decode_json`]; `None` sends the record to serde_json.
fn decode_flat<'a>(bytes: &'a [u8], map: &ColumnMap) -> Option<RawFields<'a>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let b = bytes;
    let mut out = RawFields::default();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            if b.get(i) != Some(&b'"') {
                return None;
            }
            let (key, next) = plain_string(text, i)?;
            i = skip_ws(b, next);
            if b.get(i) != Some(&b':') {
                return None;
            }
            i = skip_ws(b, i + 1);
            let start = i;
            let value = match *b.get(i)? {
                b'"' => {
                    let (s, next) = plain_string(text, i)?;
                    i = next;
                    Scalar::Str(Cow::Borrowed(s))
                }
                b't' if b[i..].starts_with(b"true") => {
                    i += 4;
                    Scalar::Bool(true)
                }
                b'f' if b[i..].starts_with(b"false") => {
                    i += 5;
                    Scalar::Bool(false)
                }
                b'n' if b[i..].starts_with(b"null") => {
                    i += 4;
                    Scalar::Null
                }
                b'-' | b'0'..=b'9' => {
                    let len = b[i..].iter().take_while(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')).count();
                    let num = text.get(i..i + len)?;
                    // JSON numbers only: no leading '+', no "inf"/"nan", no leading zeros like "01".
                    let digits = num.strip_prefix('-').unwrap_or(num);
                    if digits.is_empty()
                        || !digits.as_bytes()[0].is_ascii_digit()
                        || (digits.len() > 1 && digits.starts_with('0') && digits.as_bytes()[1].is_ascii_digit())
                    {
                        return None;
                    }
                    let n: f64 = num.parse().ok()?;
                    if !n.is_finite() {
                        return None;
                    }
                    i += len;
                    Scalar::Num(n)
                }
                _ => return None,
            };
            match map.resolve(key) {
                Some(f) => out.set(f, value),
                None => {
                    out.extras.push((Cow::Borrowed(key), Extra::Json(text.get(start..i)?)));
                }
            }
            i = skip_ws(b, i);
            match b.get(i) {
                Some(b',') => i = skip_ws(b, i + 1),
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    (skip_ws(b, i) == b.len()).then_some(out)
}

/// Decodes one JSON object with serde_json.
pub fn decode_json_serde(bytes: &[u8]) -> Result<RawFields<'_>, DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let fields = RawFields::deserialize(&mut de).map_err(|e| DecodeError(e.to_string()))?;
    de.end().map_err(|e| DecodeError(e.to_string()))?;
    Ok(fields)
}

struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(v))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Scalar::Composite)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<de::IgnoredAny, de::IgnoredAny>()?.is_some() {}
                Ok(Scalar::Composite)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawFields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de::DeserializeSeed::deserialize(Mapped(&ColumnMap::NONE), d)
    }
}

/// Deserializes [`RawFields`] with keys mapped to fields by a [`ColumnMap`].
struct Mapped<'m>(&'m ColumnMap);

impl<'de> de::DeserializeSeed<'de> for Mapped<'_> {
    type Value = RawFields<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawFields<'de>, D::Error> {
        struct V<'m>(&'m ColumnMap);
        impl<'de> Visitor<'de> for V<'_> {
            type Value = RawFields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = RawFields::default();
                while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
                    match self.0.resolve(&k) {
                        Some(field) => {
                            let v = map.next_value::<Scalar<'de>>()?;
                            out.set(field, v);
                        }
                        None => {
                            let raw = map.next_value::<&'de RawValue>()?;
                            out.extras.push((k, Extra::Json(raw.get())));
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_known_and_extra_fields() {
        let line =
            br#"{"sensor_id":"s1","value":1.5,"timestamp":"2026-01-01T00:00:00Z","quality":0.9,"site":"north","tags":[1,2]}"#;
        let f = decode_json(line).unwrap();
        assert_eq!(f.sensor_id, Some(Scalar::Str(Cow::Borrowed("s1"))));
        assert_eq!(f.value, Some(Scalar::Num(1.5)));
        assert!(matches!(f.ts, Some(Scalar::Str(_))));
        assert_eq!(f.quality, Some(Scalar::Num(0.9)));
        assert_eq!(f.extras.len(), 2);
        match &f.extras[1].1 {
            Extra::Json(raw) => assert_eq!(*raw, "[1,2]"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn fast_path_and_serde_agree() {
        let cases: [&[u8]; 9] = [
            br#"{"sensor_id":"s1","value":1.5e2,"ts":"2026-01-01T00:00:00Z","ok":true,"n":null,"k":-0.25}"#,
            br#" { "sensor_id" : "s\u00e9" , "value" : 3 } "#,
            br#"{"value":{"x":1},"a":[1,2]}"#,
            br#"{}"#,
            br#"{"value":01}"#,
            br#"{"value":+1}"#,
            br#"{"value":1e400}"#,
            br#"{"a":1,}"#,
            br#"{"a":"b"c"}"#,
        ];
        for c in cases {
            let serde = decode_json_serde(c).map(|f| format!("{f:?}")).map_err(|_| ());
            let both = decode_json(c).map(|f| format!("{f:?}")).map_err(|_| ());
            assert_eq!(serde, both, "{}", String::from_utf8_lossy(c));
        }
        assert!(decode_flat(cases[0], &ColumnMap::NONE).is_some(), "the common shape takes the fast path");
    }

    #[test]
    fn rejects_non_objects_and_trailing_garbage() {
        assert!(decode_json(b"[1,2]").is_err());
        assert!(decode_json(b"{\"a\":1} x").is_err());
        assert!(decode_json(b"{\"a\":").is_err());
        assert!(decode_json(b"").is_err());
    }

    #[test]
    fn decodes_cells_by_column_name() {
        use vigil_events::Cell;
        let names: Vec<String> = ["timestamp", "Sensor_ID", "value", "quality", "line"].iter().map(|s| s.to_string()).collect();
        let cells = [Cell::Str("2026-01-01 00:00:00"), Cell::Str("s9"), Cell::Str("3.5"), Cell::Str(""), Cell::Str("7")];
        let f = decode_cells(&names, &cells);
        assert_eq!(f.sensor_id, Some(Scalar::Str(Cow::Borrowed("s9"))));
        assert_eq!(f.value, Some(Scalar::Str(Cow::Borrowed("3.5"))));
        assert_eq!(f.quality, Some(Scalar::Null));
        assert!(matches!(&f.extras[0].1, Extra::JsonOwned(j) if j == "7"));
    }

    #[test]
    fn mapped_columns_and_keys_are_read_as_their_fields() {
        use vigil_events::Cell;
        let map = ColumnMap::parse("sensor_id=TagName, ts=DateTime,value=Value").unwrap();
        let names: Vec<String> = ["TagName", "DateTime", "Value", "ts", "Quality"].iter().map(|s| s.to_string()).collect();
        let cells = [Cell::Str("FIC-101.PV"), Cell::Str("2026-01-05 13:45:00"), Cell::Str("3.5"), Cell::Str("x"), Cell::Str("1")];
        let f = decode_cells_mapped(&names, &cells, &map);
        assert_eq!(f.sensor_id, Some(Scalar::Str(Cow::Borrowed("FIC-101.PV"))));
        assert_eq!(f.ts, Some(Scalar::Str(Cow::Borrowed("2026-01-05 13:45:00"))));
        assert_eq!(f.value, Some(Scalar::Str(Cow::Borrowed("3.5"))));
        // `ts` is mapped to DateTime, so a column named `ts` is metadata; unmapped defaults still apply.
        assert_eq!(f.extras.len(), 1);
        assert_eq!(f.extras[0].0, "ts");
        assert_eq!(f.quality, Some(Scalar::Str(Cow::Borrowed("1"))));

        for line in [
            &br#"{"TagName":"FIC-101.PV","DateTime":"2026-01-05 13:45:00","Value":3.5,"ts":"x"}"#[..],
            &br#"{"TagName":"FIC-101.PV","DateTime":"2026-01-05 13:45:00","Value":3.5,"ts":"x","n":{"a":1}}"#[..],
        ] {
            let f = decode_json_mapped(line, &map).unwrap();
            assert_eq!(f.sensor_id, Some(Scalar::Str(Cow::Borrowed("FIC-101.PV"))), "{}", String::from_utf8_lossy(line));
            assert_eq!(f.value, Some(Scalar::Num(3.5)));
            assert_eq!(f.ts, Some(Scalar::Str(Cow::Borrowed("2026-01-05 13:45:00"))));
            assert_eq!(f.extras[0].0, "ts");
        }
    }

    #[test]
    fn column_maps_are_checked() {
        assert!(ColumnMap::parse("").unwrap().is_empty());
        assert_eq!(ColumnMap::parse("sensor=Tag").unwrap().column_of(Field::SensorId), Some("Tag"));
        let e = ColumnMap::parse("tag=TagName").unwrap_err();
        assert!(e.contains("unknown field \"tag\"") && e.contains("sensor_id"), "{e}");
        assert!(ColumnMap::parse("sensor_id").unwrap_err().contains("FIELD=COLUMN"));
        assert!(ColumnMap::parse("sensor_id=A,sensor=B").unwrap_err().contains("twice"));
        assert!(ColumnMap::parse("sensor_id=A,asset_id=A").unwrap_err().contains("both"));
        assert!(ColumnMap::parse("ts=").is_err());
    }

    #[test]
    fn composite_values_are_marked() {
        let f = decode_json(br#"{"value":{"x":1}}"#).unwrap();
        assert_eq!(f.value, Some(Scalar::Composite));
    }
}
