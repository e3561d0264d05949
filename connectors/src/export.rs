//! Writing a simulated fleet to a file: JSON lines, CSV or Parquet (from the extension).
//!
//! Records are written in time order (all sensors of a tick, then the next tick), as a live
//! fleet would send them. Bad records are injected only into JSON lines (the other formats are
//! typed and cannot carry most of them); the ground truth counts what was written.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::files::Format;
use crate::simulator::{write_json, Fleet, GroundTruth, SensorSim, SimRecord};
use crate::{ConnectorError, Result};

/// Writes the fleet's readings to `path`, calling `progress(ticks_done, ticks_total)` now and
/// then; returns the ground truth.
pub fn write_fleet(fleet: &Fleet, path: &Path, mut progress: impl FnMut(u64, u64)) -> Result<GroundTruth> {
    let format = Format::from_path(path)?;
    let mut fleet = fleet.clone();
    if format != Format::JsonLines {
        fleet.cfg.bad_record_rate = 0.0;
    }
    let mut truth = fleet.truth.clone();
    let mut sims: Vec<SensorSim> = fleet.sensors.iter().map(|s| SensorSim::new(&fleet, s)).collect();
    let mut prev: Vec<Vec<u8>> = vec![Vec::new(); fleet.sensors.len()];
    let file = File::create(path).map_err(|e| ConnectorError::io(path, e))?;
    let ticks = fleet.ticks();
    let mut recs = Vec::new();
    match format {
        Format::JsonLines => {
            let mut w = BufWriter::with_capacity(1 << 20, file);
            let mut line = Vec::with_capacity(256);
            for t in 0..ticks {
                let ts = fleet.cfg.start_ms + t as i64 * fleet.cfg.interval_ms;
                for (i, s) in fleet.sensors.iter().enumerate() {
                    recs.clear();
                    sims[i].step(&fleet, s, t, &mut recs);
                    for r in &recs {
                        line.clear();
                        write_json(s, r, ts, &mut prev[i], &mut line);
                        w.write_all(&line).map_err(|e| ConnectorError::io(path, e))?;
                        truth.records += 1;
                        if let SimRecord::Bad(k) = r {
                            *truth.bad_records.entry(k.reason().to_string()).or_default() += 1;
                        }
                    }
                }
                if t % 600 == 0 {
                    progress(t, ticks);
                }
            }
            w.flush().map_err(|e| ConnectorError::io(path, e))?;
            w.get_ref().sync_all().map_err(|e| ConnectorError::io(path, e))?;
        }
        Format::Csv { sep } => {
            let sep = sep as char;
            let mut w = BufWriter::with_capacity(1 << 20, file);
            writeln!(w, "ts{sep}sensor_id{sep}asset_id{sep}sensor_type{sep}value{sep}unit")
                .map_err(|e| ConnectorError::io(path, e))?;
            for t in 0..ticks {
                for (i, s) in fleet.sensors.iter().enumerate() {
                    recs.clear();
                    sims[i].step(&fleet, s, t, &mut recs);
                    for r in &recs {
                        if let SimRecord::Reading { ts, value } = r {
                            writeln!(
                                w,
                                "{}{sep}{}{sep}{}{sep}{}{sep}{}{sep}{}",
                                vigil_events::format_rfc3339_ms(*ts),
                                s.sensor_id,
                                s.asset_id,
                                s.sensor_type.as_str(),
                                value,
                                s.sensor_type.default_unit()
                            )
                            .map_err(|e| ConnectorError::io(path, e))?;
                            truth.records += 1;
                        }
                    }
                }
                if t % 600 == 0 {
                    progress(t, ticks);
                }
            }
            w.flush().map_err(|e| ConnectorError::io(path, e))?;
        }
        Format::Parquet => {
            let schema = Arc::new(Schema::new(vec![
                Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
                Field::new("sensor_id", DataType::Utf8, false),
                Field::new("asset_id", DataType::Utf8, false),
                Field::new("sensor_type", DataType::Utf8, false),
                Field::new("value", DataType::Float64, false),
                Field::new("unit", DataType::Utf8, false),
            ]));
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).map_err(|e| ConnectorError::Arrow(e.to_string()))?))
                .build();
            let mut w = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|e| ConnectorError::parquet(path, e))?;
            let mut b = (
                TimestampMillisecondBuilder::new().with_timezone("UTC"),
                StringBuilder::new(),
                StringBuilder::new(),
                StringBuilder::new(),
                Float64Builder::new(),
                StringBuilder::new(),
            );
            let mut rows = 0usize;
            for t in 0..ticks {
                for (i, s) in fleet.sensors.iter().enumerate() {
                    recs.clear();
                    sims[i].step(&fleet, s, t, &mut recs);
                    for r in &recs {
                        if let SimRecord::Reading { ts, value } = r {
                            b.0.append_value(*ts);
                            b.1.append_value(&s.sensor_id);
                            b.2.append_value(&s.asset_id);
                            b.3.append_value(s.sensor_type.as_str());
                            b.4.append_value(*value);
                            b.5.append_value(s.sensor_type.default_unit());
                            rows += 1;
                            truth.records += 1;
                        }
                    }
                }
                if rows >= 256 * 1024 || t + 1 == ticks {
                    let cols: Vec<ArrayRef> = vec![
                        Arc::new(b.0.finish()),
                        Arc::new(b.1.finish()),
                        Arc::new(b.2.finish()),
                        Arc::new(b.3.finish()),
                        Arc::new(b.4.finish()),
                        Arc::new(b.5.finish()),
                    ];
                    let batch = RecordBatch::try_new(schema.clone(), cols).map_err(|e| ConnectorError::Arrow(e.to_string()))?;
                    w.write(&batch).map_err(|e| ConnectorError::parquet(path, e))?;
                    rows = 0;
                }
                if t % 600 == 0 {
                    progress(t, ticks);
                }
            }
            w.close().map_err(|e| ConnectorError::parquet(path, e))?;
        }
    }
    progress(ticks, ticks);
    Ok(truth)
}
