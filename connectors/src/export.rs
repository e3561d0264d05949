//! Writing a simulated fleet to a file: JSON lines, CSV or Parquet (from the extension).
//!
//! Records are written in time order (all sensors of a tick, then the next tick), as a live
//! fleet would send them. Bad records are injected only into JSON lines (the other formats are
//! typed and cannot carry most of them); the ground truth counts what was written.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, Float64Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::files::Format;
use crate::simulator::{write_json, Fleet, GroundTruth, SensorSim, SimRecord, SimSensor};
use crate::{ConnectorError, Result};

/// What the simulation hands the format writer, in time order.
enum Step<'a> {
    /// One record of one sensor (index in the fleet) at tick time `tick_ts`.
    Record { index: usize, sensor: &'a SimSensor, tick_ts: i64, record: &'a SimRecord },
    /// Every sensor has had its turn at this tick; `last` on the final tick.
    TickEnd { last: bool },
}

/// Steps every sensor through every tick, all sensors of a tick before the next tick, handing
/// each record and each tick's end to `f`, and reporting progress now and then.
fn simulate(fleet: &Fleet, progress: &mut impl FnMut(u64, u64), mut f: impl FnMut(Step<'_>) -> Result<()>) -> Result<()> {
    let mut sims: Vec<SensorSim> = fleet.sensors.iter().map(|s| SensorSim::new(fleet, s)).collect();
    let ticks = fleet.ticks();
    let mut recs = Vec::new();
    for t in 0..ticks {
        let tick_ts = fleet.cfg.start_ms + t as i64 * fleet.cfg.interval_ms;
        for (index, sensor) in fleet.sensors.iter().enumerate() {
            recs.clear();
            sims[index].step(fleet, sensor, t, &mut recs);
            for record in &recs {
                f(Step::Record { index, sensor, tick_ts, record })?;
            }
        }
        f(Step::TickEnd { last: t + 1 == ticks })?;
        if t % 600 == 0 {
            progress(t, ticks);
        }
    }
    progress(ticks, ticks);
    Ok(())
}

/// Produces the fleet's readings to a Kafka topic as JSON, keyed by sensor, in time order; at
/// `rate` readings per second when given (else as fast as the broker takes them). Bad records are
/// injected as in JSON lines, except oversized ones: a broker refuses messages above its own limit
/// (1 MB by default) before Vigil could see them. Waits for every acknowledgement; returns the
/// ground truth of what was produced.
pub fn produce_fleet(
    fleet: &Fleet,
    producer: &crate::kafka::JsonProducer,
    topic: &str,
    rate: Option<f64>,
    mut progress: impl FnMut(u64, u64),
) -> Result<GroundTruth> {
    let mut truth = fleet.truth.clone();
    let mut line = Vec::with_capacity(256);
    let mut prev: Vec<Vec<u8>> = vec![Vec::new(); fleet.sensors.len()];
    let start = std::time::Instant::now();
    simulate(fleet, &mut progress, |step| {
        if let Step::Record { index, sensor, tick_ts, record } = step {
            if matches!(record, SimRecord::Bad(crate::simulator::BadKind::Oversized)) {
                return Ok(());
            }
            line.clear();
            write_json(sensor, record, tick_ts, &mut prev[index], &mut line);
            let payload = line.strip_suffix(b"\n").unwrap_or(&line);
            producer.send(topic, sensor.sensor_id.as_bytes(), payload)?;
            truth.records += 1;
            if let SimRecord::Bad(k) = record {
                *truth.bad_records.entry(k.reason().to_string()).or_default() += 1;
            }
            if let Some(r) = rate.filter(|r| *r > 0.0) {
                let due = std::time::Duration::from_secs_f64(truth.records as f64 / r);
                let elapsed = start.elapsed();
                if due > elapsed + std::time::Duration::from_millis(2) {
                    std::thread::sleep(due - elapsed);
                }
            }
        }
        Ok(())
    })?;
    producer.flush(std::time::Duration::from_secs(120))?;
    Ok(truth)
}

/// Live control of a fleet feed ([`feed_fleet`]): stop, pause and resume, injected anomalies,
/// and what has been fed.
#[derive(Debug, Default)]
pub struct FeedControl {
    /// Set to end the feed.
    pub stop: AtomicBool,
    /// While set, no tick is fed; pacing resumes where it left off.
    pub paused: AtomicBool,
    /// Records fed so far.
    pub fed: AtomicU64,
    /// Event time of the last tick fed (ms; `i64::MIN` before the first).
    pub last_tick_ts: AtomicI64,
    injections: Mutex<Vec<Injection>>,
}

/// An anomaly injected into a live feed by a person.
#[derive(Debug, Clone, PartialEq)]
pub struct Injection {
    /// The sensor.
    pub sensor_id: String,
    /// The spike, in multiples of the sensor's noise.
    pub sigmas: f64,
    /// Readings still to change.
    pub readings_left: u32,
}

impl FeedControl {
    /// A control for a feed that starts running (or paused).
    pub fn new(paused: bool) -> FeedControl {
        FeedControl { paused: AtomicBool::new(paused), last_tick_ts: AtomicI64::new(i64::MIN), ..FeedControl::default() }
    }

    /// Adds a spike of `sigmas` times the sensor's noise to its next `readings` readings, and
    /// at least 15% over the sensor type's operating limit when it has one.
    pub fn inject(&self, sensor_id: &str, sigmas: f64, readings: u32) {
        if let Ok(mut v) = self.injections.lock() {
            v.push(Injection { sensor_id: sensor_id.to_string(), sigmas, readings_left: readings.max(1) });
        }
    }

    /// Injections not yet fed completely.
    pub fn injections(&self) -> Vec<Injection> {
        self.injections.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Applies the injections to one sensor's record; `true` when one changed it.
    fn apply(&self, sensor: &SimSensor, record: &mut SimRecord) -> bool {
        let SimRecord::Reading { value, .. } = record else { return false };
        let Ok(mut v) = self.injections.lock() else { return false };
        let Some(i) = v.iter().position(|j| j.sensor_id == sensor.sensor_id) else { return false };
        let (lo, hi) = sensor.sensor_type.physical_range();
        // At least 15% over the type's operating limit, where it has one: a breach the hard-limit
        // detector sees at once, before the statistical detectors have a baseline.
        let over_limit = sensor.sensor_type.operating_limits().1.map_or(f64::MIN, |h| h * 1.15);
        *value = (*value + sensor.spike(v[i].sigmas)).max(over_limit).clamp(lo, hi);
        v[i].readings_left -= 1;
        if v[i].readings_left == 0 {
            v.remove(i);
        }
        true
    }
}

/// Feeds the fleet's readings, one tick at a time, to `sink` as `(sensor id, JSON)` records, in
/// time order (bad records included, oversized ones excepted), until the fleet's end or
/// `control.stop`. With `speed`, ticks are paced to the wall clock: `speed` simulated seconds a
/// second (1.0 is real time); without, as fast as the sink takes them. While `control.paused`
/// nothing is fed, and the pacing shifts by the pause. Returns the records fed.
pub fn feed_fleet(
    fleet: &Fleet,
    speed: Option<f64>,
    control: &FeedControl,
    mut sink: impl FnMut(&[(&[u8], &[u8])]) -> Result<()>,
) -> Result<u64> {
    let mut sims: Vec<SensorSim> = fleet.sensors.iter().map(|s| SensorSim::new(fleet, s)).collect();
    let mut prev: Vec<Vec<u8>> = vec![Vec::new(); fleet.sensors.len()];
    let mut lines: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut recs = Vec::new();
    let mut started = std::time::Instant::now();
    let mut fed = 0u64;
    let stopped = || control.stop.load(Ordering::Relaxed);
    for t in 0..fleet.ticks() {
        if stopped() {
            break;
        }
        if control.paused.load(Ordering::Relaxed) {
            let paused_at = std::time::Instant::now();
            while control.paused.load(Ordering::Relaxed) {
                if stopped() {
                    return Ok(fed);
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            started += paused_at.elapsed();
        }
        if let Some(speed) = speed.filter(|s| *s > 0.0) {
            let due = std::time::Duration::from_secs_f64(t as f64 * fleet.cfg.interval_ms as f64 / 1000.0 / speed);
            while started.elapsed() < due {
                if stopped() {
                    return Ok(fed);
                }
                std::thread::sleep((due - started.elapsed()).min(std::time::Duration::from_millis(100)));
            }
        }
        let tick_ts = fleet.cfg.start_ms + t as i64 * fleet.cfg.interval_ms;
        lines.clear();
        for (index, sensor) in fleet.sensors.iter().enumerate() {
            recs.clear();
            sims[index].step(fleet, sensor, t, &mut recs);
            for record in recs.iter_mut() {
                if matches!(record, SimRecord::Bad(crate::simulator::BadKind::Oversized)) {
                    continue;
                }
                control.apply(sensor, record);
                let mut line = Vec::with_capacity(200);
                write_json(sensor, record, tick_ts, &mut prev[index], &mut line);
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                lines.push((index, line));
            }
        }
        let batch: Vec<(&[u8], &[u8])> =
            lines.iter().map(|(i, l)| (fleet.sensors[*i].sensor_id.as_bytes(), l.as_slice())).collect();
        sink(&batch)?;
        fed += batch.len() as u64;
        control.fed.store(fed, Ordering::Relaxed);
        control.last_tick_ts.store(tick_ts, Ordering::Relaxed);
    }
    Ok(fed)
}

/// Writes the fleet's readings to `path`, calling `progress(ticks_done, ticks_total)` now and
/// then; returns the ground truth.
pub fn write_fleet(fleet: &Fleet, path: &Path, mut progress: impl FnMut(u64, u64)) -> Result<GroundTruth> {
    let format = Format::from_path(path)?;
    let mut fleet = fleet.clone();
    if format != Format::JsonLines {
        fleet.cfg.bad_record_rate = 0.0;
    }
    let mut truth = fleet.truth.clone();
    let file = File::create(path).map_err(|e| ConnectorError::io(path, e))?;
    let io = |e: std::io::Error| ConnectorError::io(path, e);
    match format {
        Format::JsonLines => {
            let mut w = BufWriter::with_capacity(1 << 20, file);
            let mut line = Vec::with_capacity(256);
            let mut prev: Vec<Vec<u8>> = vec![Vec::new(); fleet.sensors.len()];
            simulate(&fleet, &mut progress, |step| {
                if let Step::Record { index, sensor, tick_ts, record } = step {
                    line.clear();
                    write_json(sensor, record, tick_ts, &mut prev[index], &mut line);
                    w.write_all(&line).map_err(io)?;
                    truth.records += 1;
                    if let SimRecord::Bad(k) = record {
                        *truth.bad_records.entry(k.reason().to_string()).or_default() += 1;
                    }
                }
                Ok(())
            })?;
            w.flush().map_err(io)?;
            w.get_ref().sync_all().map_err(io)?;
        }
        Format::Csv { sep } => {
            let sep = sep as char;
            let mut w = BufWriter::with_capacity(1 << 20, file);
            writeln!(w, "ts{sep}sensor_id{sep}asset_id{sep}sensor_type{sep}value{sep}unit").map_err(io)?;
            simulate(&fleet, &mut progress, |step| {
                if let Step::Record { sensor: s, record: SimRecord::Reading { ts, value }, .. } = step {
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
                    .map_err(io)?;
                    truth.records += 1;
                }
                Ok(())
            })?;
            w.flush().map_err(io)?;
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
            simulate(&fleet, &mut progress, |step| {
                match step {
                    Step::Record { sensor: s, record: SimRecord::Reading { ts, value }, .. } => {
                        b.0.append_value(*ts);
                        b.1.append_value(&s.sensor_id);
                        b.2.append_value(&s.asset_id);
                        b.3.append_value(s.sensor_type.as_str());
                        b.4.append_value(*value);
                        b.5.append_value(s.sensor_type.default_unit());
                        rows += 1;
                        truth.records += 1;
                    }
                    Step::TickEnd { last } if rows >= 256 * 1024 || last => {
                        let cols: Vec<ArrayRef> = vec![
                            Arc::new(b.0.finish()),
                            Arc::new(b.1.finish()),
                            Arc::new(b.2.finish()),
                            Arc::new(b.3.finish()),
                            Arc::new(b.4.finish()),
                            Arc::new(b.5.finish()),
                        ];
                        let batch =
                            RecordBatch::try_new(schema.clone(), cols).map_err(|e| ConnectorError::Arrow(e.to_string()))?;
                        w.write(&batch).map_err(|e| ConnectorError::parquet(path, e))?;
                        rows = 0;
                    }
                    _ => {}
                }
                Ok(())
            })?;
            w.close().map_err(|e| ConnectorError::parquet(path, e))?;
        }
    }
    Ok(truth)
}

/// The `sensor_id` of a JSON reading, the key that spreads readings over a log's partitions
/// (`None` when the record is not a JSON object with one: it is dead-lettered downstream).
pub fn sensor_id_of(json: &[u8]) -> Option<&str> {
    #[derive(serde::Deserialize)]
    struct Key<'a> {
        #[serde(borrow)]
        sensor_id: Option<&'a str>,
    }
    serde_json::from_slice::<Key<'_>>(json).ok().and_then(|k| k.sensor_id)
}

/// Feeds a JSON-lines file to `sink` as `(sensor id, line)` records, `batch` lines at a time,
/// after skipping its first `skip` lines (fed before), until its end or `stop` (checked between
/// batches). After each batch the sink took, `fed(lines)` hears how many lines of the file are
/// done (blank ones included), so a caller can record where to continue. A line without a
/// `sensor_id` ([`sensor_id_of`]) goes with an empty key: the pipeline dead-letters it with its
/// reason. Returns the lines done.
pub fn feed_lines(
    path: &Path,
    skip: u64,
    batch: usize,
    stop: &std::sync::atomic::AtomicBool,
    mut sink: impl FnMut(&[(&[u8], &[u8])]) -> Result<()>,
    mut fed: impl FnMut(u64),
) -> Result<u64> {
    use std::io::BufRead;
    let file = File::open(path).map_err(|e| ConnectorError::io(path, e))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut done = 0u64;
    let mut lines: Vec<Vec<u8>> = Vec::with_capacity(batch);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(|e| ConnectorError::io(path, e))?;
        let at_end = n == 0;
        if !at_end {
            done += 1;
            if done > skip {
                while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    line.pop();
                }
                if !line.iter().all(u8::is_ascii_whitespace) {
                    lines.push(std::mem::take(&mut line));
                }
            }
        }
        if (at_end || lines.len() >= batch) && done > skip {
            if !lines.is_empty() {
                let keys: Vec<&[u8]> = lines.iter().map(|l| sensor_id_of(l).map_or(&b""[..], str::as_bytes)).collect();
                let records: Vec<(&[u8], &[u8])> = keys.iter().zip(&lines).map(|(k, l)| (*k, l.as_slice())).collect();
                sink(&records)?;
                lines.clear();
            }
            fed(done);
            // Stop only between batches: what was read is what was fed.
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(done);
            }
        }
        if at_end {
            return Ok(done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::FleetConfig;

    fn fleet() -> Fleet {
        Fleet::new(FleetConfig {
            assets: 1,
            sensors_per_asset: 3,
            hours: 0.05,
            interval_ms: 10_000,
            anomalies_per_sensor_hour: 0.0,
            drift_fraction: 0.0,
            degrading_fraction: 0.0,
            bad_record_rate: 0.0,
            ..FleetConfig::default()
        })
    }

    fn values(lines: &[(String, Vec<u8>)], sensor: &str) -> Vec<f64> {
        lines
            .iter()
            .filter(|(k, _)| k == sensor)
            .filter_map(|(_, l)| serde_json::from_slice::<serde_json::Value>(l).ok()?["value"].as_f64())
            .collect()
    }

    #[test]
    fn injected_spikes_break_the_limit_on_the_chosen_sensor_only() {
        let fleet = fleet();
        let target = fleet.sensors.iter().find(|s| s.sensor_type.operating_limits().1.is_some()).unwrap().clone();
        let control = FeedControl::new(false);
        control.inject(&target.sensor_id, 25.0, 4);
        let mut lines = Vec::new();
        let fed = feed_fleet(&fleet, None, &control, |batch| {
            lines.extend(batch.iter().map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.to_vec())));
            Ok(())
        })
        .unwrap();
        assert_eq!(fed, lines.len() as u64);
        assert_eq!(control.fed.load(Ordering::Relaxed), fed);
        assert_eq!(control.last_tick_ts.load(Ordering::Relaxed), fleet.cfg.start_ms + (fleet.ticks() as i64 - 1) * 10_000);
        let high = target.sensor_type.operating_limits().1.unwrap();
        let v = values(&lines, &target.sensor_id);
        assert!(v[..4].iter().all(|x| *x > high), "the first four readings break the limit: {v:?}");
        assert!(v[4..].iter().all(|x| *x < high), "then the sensor is normal again: {v:?}");
        assert!(control.injections().is_empty(), "the injection is used up");
        for other in fleet.sensors.iter().filter(|s| s.sensor_id != target.sensor_id) {
            let lim = other.sensor_type.operating_limits().1.unwrap_or(f64::MAX);
            assert!(values(&lines, &other.sensor_id).iter().all(|x| *x < lim), "{} untouched", other.sensor_id);
        }
    }

    #[test]
    fn a_paused_feed_feeds_nothing_until_resumed_and_stops_when_asked() {
        let fleet = fleet();
        let control = std::sync::Arc::new(FeedControl::new(true));
        let c = control.clone();
        let f = fleet.clone();
        let feeder = std::thread::spawn(move || feed_fleet(&f, None, &c, |_| Ok(())).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(control.fed.load(Ordering::Relaxed), 0, "paused");
        control.paused.store(false, Ordering::Relaxed);
        let fed = feeder.join().unwrap();
        assert_eq!(fed, fleet.readings());
        // Stopping a paused feed ends it.
        let control = std::sync::Arc::new(FeedControl::new(true));
        let c = control.clone();
        let feeder = std::thread::spawn(move || feed_fleet(&fleet, None, &c, |_| Ok(())).unwrap());
        control.stop.store(true, Ordering::Relaxed);
        assert_eq!(feeder.join().unwrap(), 0);
    }
}
