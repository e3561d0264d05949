//! SQL, canned queries and reports over a small fixed history written by the connectors' real
//! writers (real Parquet files, committed through the manifest).
//!
//! The fixture: assets a1 and a2, two sensors each (temperature, vibration), a reading every
//! minute for two days from 2026-01-01; anomalies, drift, predictions and one proposal with
//! known values, so the expected results below are worked out by hand.

use std::path::Path;
use std::sync::Arc;

use vigil_connectors::history::{commit, HistoryRow, TableWriter, WriterConfig};
use vigil_events::{
    AnomalyDetected, DriftDetected, MaintenancePredicted, MaintenanceScheduled, ScheduleStatus, SensorReading, SensorType,
    Severity, SourcePos,
};
use vigil_queries::canned::EventFilter;
use vigil_queries::format::{write_result, OutputFormat};
use vigil_queries::report::ReportRequest;
use vigil_queries::{History, QueryConfig, QueryError};

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn writer_cfg(dir: &Path, run: &str) -> WriterConfig {
    WriterConfig {
        data_dir: dir.into(),
        run: run.into(),
        worker: 0,
        max_rows_per_file: 1000,
        row_group_rows: 250,
        max_file_span_ms: i64::MAX,
        sources: Arc::new(vec!["fixture.jsonl".into()]),
    }
}

fn write<R: HistoryRow + Send + 'static>(dir: &Path, run: &str, rows: Vec<R>) {
    let mut w = TableWriter::<R>::new(writer_cfg(dir, run));
    for r in rows {
        w.push(r).unwrap();
    }
    let files = w.finish().unwrap();
    commit(dir, run, files, 0).unwrap();
}

const SENSORS: [(&str, &str, SensorType, &str, f64); 4] = [
    ("a1-temp", "a1", SensorType::Temperature, "C", 50.0),
    ("a1-vib", "a1", SensorType::Vibration, "mm/s", 2.0),
    ("a2-temp", "a2", SensorType::Temperature, "C", 60.0),
    ("a2-vib", "a2", SensorType::Vibration, "mm/s", 3.0),
];

/// Reading `i` (minute i) of sensor `s`: base + (i mod 10).
fn reading(s: usize, i: i64) -> SensorReading {
    let (id, asset, ty, unit, base) = SENSORS[s];
    SensorReading {
        id_hash: (s as u64) << 32 | i as u64,
        sensor_id: Arc::from(id),
        sensor_key: s as u64,
        asset_id: Arc::from(asset),
        sensor_type: ty,
        value: base + (i % 10) as f64,
        unit: Arc::from(unit),
        ts: T0 + i * MIN,
        extra: None,
        pos: SourcePos { source: 0, offset: (i * 4 + s as i64) as u64 },
    }
}

fn anomaly(n: u32, sensor: &str, asset: &str, detector: &str, severity: Severity, ts: i64) -> AnomalyDetected {
    AnomalyDetected {
        event_id: format!("an-{n:03}"),
        correlation_id: format!("corr-{n}"),
        event_version: 1,
        sensor_id: Arc::from(sensor),
        asset_id: Arc::from(asset),
        detector: detector.into(),
        detector_version: 1,
        score: 3.0 + n as f64,
        severity,
        ts,
        window_start: None,
        explanation: format!("{{\"n\":{n}}}"),
    }
}

fn anomalies() -> Vec<AnomalyDetected> {
    vec![
        // a1-vib: three on day 1.
        anomaly(1, "a1-vib", "a1", "robust_zscore", Severity::Medium, T0 + 2 * HOUR),
        anomaly(2, "a1-vib", "a1", "robust_zscore", Severity::High, T0 + 3 * HOUR),
        anomaly(3, "a1-vib", "a1", "hard_limit", Severity::Critical, T0 + 4 * HOUR),
        // a2-temp: two critical episodes on day 2 (10:00-10:20, and 20:00), and one in the last hour.
        anomaly(4, "a2-temp", "a2", "hard_limit", Severity::Critical, T0 + DAY + 10 * HOUR),
        anomaly(5, "a2-temp", "a2", "hard_limit", Severity::Critical, T0 + DAY + 10 * HOUR + 20 * MIN),
        anomaly(6, "a2-temp", "a2", "hard_limit", Severity::Critical, T0 + DAY + 20 * HOUR),
        anomaly(7, "a2-temp", "a2", "robust_zscore", Severity::Low, T0 + 2 * DAY - 30 * MIN),
    ]
}

fn predictions() -> Vec<MaintenancePredicted> {
    let mut out = Vec::new();
    for h in 0..48i64 {
        for (asset, health) in [("a1", 1.0 - h as f64 / 94.0), ("a2", 0.95)] {
            out.push(MaintenancePredicted {
                event_id: format!("p-{asset}-{h:02}"),
                correlation_id: "c".into(),
                event_version: 1,
                asset_id: Arc::from(asset),
                ts: T0 + h * HOUR + HOUR - 1,
                health,
                failure_probability: 1.0 - health,
                rul_hours: (asset == "a1").then_some(100.0 - h as f64),
                predicted_failure_ts: None,
                confidence: 0.8,
                reasons: vec!["trend".into()],
                model: "trend-rul".into(),
                model_version: "1".into(),
            });
        }
    }
    out
}

fn schedule() -> Vec<MaintenanceScheduled> {
    let change = |n: u32, status: ScheduleStatus, ts: i64| MaintenanceScheduled {
        event_id: format!("s-{n}"),
        correlation_id: "c".into(),
        event_version: 1,
        proposal_id: "prop-a1-1".into(),
        asset_id: Arc::from("a1"),
        status,
        ts,
        scheduled_for: T0 + 3 * DAY,
        priority: Severity::High,
        reason: "health falling, RUL 60 h".into(),
        requires_decision: true,
    };
    vec![change(1, ScheduleStatus::Proposed, T0 + 30 * HOUR), change(2, ScheduleStatus::Scheduled, T0 + 31 * HOUR)]
}

fn drift() -> Vec<DriftDetected> {
    vec![DriftDetected {
        event_id: "d-1".into(),
        correlation_id: "c".into(),
        event_version: 1,
        sensor_id: Arc::from("a1-vib"),
        asset_id: Arc::from("a1"),
        statistic: "ks".into(),
        value: 0.4,
        threshold: 0.2,
        reference_start: T0,
        reference_end: T0 + 6 * HOUR,
        current_start: T0 + 6 * HOUR,
        current_end: T0 + 12 * HOUR,
    }]
}

/// Writes the fixture: readings in two commits (day 1, then day 2), then the events.
fn fixture(dir: &Path) {
    let day = |d: i64| (0..4).flat_map(move |s| (d * 1440..(d + 1) * 1440).map(move |i| reading(s, i))).collect::<Vec<_>>();
    write(dir, "r1", day(0));
    write(dir, "r2", day(1));
    write(dir, "r3", anomalies());
    write(dir, "r3", predictions());
    write(dir, "r3", schedule());
    write(dir, "r3", drift());
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn table(r: &vigil_queries::QueryResult) -> String {
    let mut out = Vec::new();
    write_result(r, OutputFormat::Table, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn open(dir: &Path) -> History {
    History::open(dir, &QueryConfig::default()).unwrap()
}

#[test]
fn golden_sql_over_the_fixture() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let h = open(dir.path());
    let rt = rt();
    let r = rt
        .block_on(
            h.sql("SELECT sensor_type, count(*) AS n, min(value) AS lo, max(value) AS hi FROM readings GROUP BY 1 ORDER BY 1"),
        )
        .unwrap();
    assert_eq!(
        table(&r).trim(),
        "\
+-------------+------+------+------+
| sensor_type | n    | lo   | hi   |
+-------------+------+------+------+
| temperature | 5760 | 50.0 | 69.0 |
| vibration   | 5760 | 2.0  | 12.0 |
+-------------+------+------+------+"
    );
    // The date partition column, and a filter on it.
    let r = rt.block_on(h.sql("SELECT date, count(*) AS n FROM readings WHERE date >= '2026-01-02' GROUP BY date")).unwrap();
    assert_eq!(
        table(&r).trim(),
        "\
+------------+------+
| date       | n    |
+------------+------+
| 2026-01-02 | 5760 |
+------------+------+"
    );
    // A join of events and readings, with a CTE.
    let r = rt
        .block_on(h.sql(
            "WITH a AS (SELECT sensor_id, ts, severity FROM anomalies WHERE asset_id = 'a1') \
             SELECT a.sensor_id, a.severity, r.value FROM a JOIN readings r ON r.sensor_id = a.sensor_id AND r.ts = a.ts ORDER BY a.ts",
        ))
        .unwrap();
    assert_eq!(
        table(&r).trim(),
        "\
+-----------+----------+-------+
| sensor_id | severity | value |
+-----------+----------+-------+
| a1-vib    | medium   | 2.0   |
| a1-vib    | high     | 2.0   |
| a1-vib    | critical | 2.0   |
+-----------+----------+-------+"
    );
    // Tables with no file yet are there, empty, with their columns.
    let r = rt.block_on(h.sql("SELECT count(*) AS n FROM decisions")).unwrap();
    assert!(table(&r).contains("| 0 |"), "{}", table(&r));
    let r = rt.block_on(h.sql("SHOW TABLES")).unwrap();
    let t = table(&r);
    for name in ["readings", "features", "anomalies", "drift", "predictions", "schedule", "decisions", "maintenance", "rejected"]
    {
        assert!(t.contains(name), "SHOW TABLES lacks {name}:\n{t}");
    }
    let r = rt.block_on(h.sql("DESCRIBE anomalies")).unwrap();
    assert!(table(&r).contains("explanation"));
    // CSV and JSON output.
    let r = rt.block_on(h.sql("SELECT sensor_id, value FROM readings WHERE sensor_id = 'a2-vib' ORDER BY ts LIMIT 2")).unwrap();
    let mut csv = Vec::new();
    write_result(&r, OutputFormat::Csv, &mut csv).unwrap();
    assert_eq!(String::from_utf8(csv).unwrap(), "sensor_id,value\na2-vib,3.0\na2-vib,4.0\n");
    let mut json = Vec::new();
    write_result(&r, OutputFormat::Json, &mut json).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v, serde_json::json!([{"sensor_id": "a2-vib", "value": 3.0}, {"sensor_id": "a2-vib", "value": 4.0}]));
}

#[test]
fn the_guard_refuses_each_kind_of_write_through_the_session() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let h = open(dir.path());
    let rt = rt();
    for (sql, what) in [
        ("CREATE TABLE t AS SELECT * FROM readings", "CREATE TABLE"),
        ("CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'", "CREATE EXTERNAL TABLE"),
        ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
        ("CREATE FUNCTION f(x INT) RETURNS INT RETURN x", "CREATE FUNCTION"),
        ("INSERT INTO readings SELECT * FROM readings", "INSERT"),
        ("UPDATE readings SET value = 0", "UPDATE"),
        ("DELETE FROM readings", "DELETE"),
        ("COPY (SELECT * FROM readings) TO '/tmp/vigil-guard-test.parquet'", "COPY"),
        ("SET datafusion.execution.target_partitions = 64", "SET"),
        ("DROP TABLE readings", "DROP TABLE"),
        ("SELECT * FROM '/etc/passwd'", "reading '/etc/passwd'"),
        ("SELECT * FROM read_csv('/etc/passwd')", "table function read_csv"),
    ] {
        match rt.block_on(h.sql(sql)) {
            Err(QueryError::Refused(w)) => assert!(w.starts_with(what), "{sql}: refused as {w:?}"),
            other => panic!("{sql}: expected a refusal, got {other:?}"),
        }
    }
    assert!(!Path::new("/tmp/vigil-guard-test.parquet").exists());
    // The history is untouched.
    let r = rt.block_on(h.sql("SELECT count(*) AS n FROM readings")).unwrap();
    assert!(table(&r).contains("11520"));
    // Errors name the problem.
    let e = rt.block_on(h.sql("SELECT nope FROM readings")).unwrap_err();
    assert!(matches!(&e, QueryError::Sql(m) if m.contains("nope")), "{e}");
    let e = rt.block_on(h.sql("SELECT * FROM no_such_table")).unwrap_err();
    assert!(matches!(&e, QueryError::UnknownTable { name, .. } if name == "no_such_table"), "{e}");
}

#[test]
fn row_and_time_limits_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let rt = rt();
    let h = History::open(dir.path(), &QueryConfig { max_rows: 10, ..QueryConfig::default() }).unwrap();
    let r = rt.block_on(h.sql("SELECT * FROM readings")).unwrap();
    assert_eq!(r.rows, 10);
    assert!(r.truncated);
    assert_eq!(r.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 10);
    let r = rt.block_on(h.sql("SELECT * FROM readings LIMIT 10")).unwrap();
    assert!(!r.truncated, "exactly the limit is not cut off");
    let h = History::open(dir.path(), &QueryConfig { timeout_ms: 200, ..QueryConfig::default() }).unwrap();
    let started = std::time::Instant::now();
    let e = rt.block_on(h.sql("SELECT count(*) FROM generate_series(1, 100000000000)")).unwrap_err();
    assert!(matches!(e, QueryError::Timeout { limit_ms: 200 }), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "cancelled promptly: {:?}", started.elapsed());
}

#[test]
fn a_query_sees_files_committed_after_the_session_opened() {
    let dir = tempfile::tempdir().unwrap();
    let h = open(dir.path());
    let rt = rt();
    let count = |h: &History| table(&rt.block_on(h.sql("SELECT count(*) AS n FROM readings")).unwrap());
    assert!(count(&h).contains("| 0 "), "{}", count(&h));
    write(dir.path(), "r1", (0..100).map(|i| reading(0, i)).collect());
    assert!(count(&h).contains("| 100 "), "{}", count(&h));
    write(dir.path(), "r2", (100..250).map(|i| reading(0, i)).collect());
    assert!(count(&h).contains("| 250 "), "{}", count(&h));
}

#[test]
fn sorted_files_are_pruned_by_row_group_statistics() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let h = open(dir.path());
    let rt = rt();
    let r = rt.block_on(h.sql("EXPLAIN ANALYZE SELECT value FROM readings WHERE sensor_id = 'a2-vib'")).unwrap();
    let plan = table(&r);
    // 11,520 rows in files of 1,000 sorted by sensor, row groups of 250: most row groups hold
    // other sensors and are skipped from their statistics.
    let pruned = plan
        .split("row_groups_pruned_statistics=")
        .nth(1)
        .unwrap_or_else(|| panic!("no pruning metric in\n{plan}"))
        .split([' ', ',', '|'])
        .next()
        .unwrap()
        .to_string();
    assert!(pruned.contains("matched") || pruned.parse::<u64>().is_ok(), "{pruned}");
    let matched: Vec<u64> = pruned.split(|c: char| !c.is_ascii_digit()).filter_map(|s| s.parse().ok()).collect();
    assert!(!matched.is_empty(), "{pruned}");
    let r = rt.block_on(h.sql("SELECT value FROM readings WHERE sensor_id = 'a2-vib'")).unwrap();
    assert_eq!(r.rows, 2880);
    // The declared order reaches the scan (files within a partition are read in key order).
    // Files overlap in key range (each holds every sensor of a time span), so a global ORDER BY
    // still sorts; within a file no sort is needed.
    let r = rt.block_on(h.sql("EXPLAIN SELECT sensor_id, ts, value FROM readings ORDER BY sensor_id, ts")).unwrap();
    let plan = table(&r);
    assert!(plan.contains("sort_order_for_reorder=[sensor_id@0 ASC NULLS LAST, ts@2 ASC NULLS LAST]"), "{plan}");
}

#[test]
fn canned_readings_are_raw_or_downsampled() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let h = open(dir.path());
    let rt = rt();
    // One hour: 60 raw readings.
    let s = rt.block_on(h.readings("a1-temp", T0, T0 + HOUR, 100)).unwrap();
    assert_eq!(s.bucket_ms, None);
    assert_eq!(s.points.len(), 60);
    assert_eq!(s.points[3].value, 53.0);
    assert_eq!(s.points[3].ts, T0 + 3 * MIN);
    // Two days into at most 48 points: hourly buckets of 60 readings each.
    let s = rt.block_on(h.readings("a1-temp", T0, T0 + 2 * DAY, 48)).unwrap();
    assert_eq!(s.bucket_ms, Some(HOUR));
    assert_eq!(s.points.len(), 48);
    assert!(s.points.iter().all(|p| p.count == 60 && p.min == 50.0 && p.max == 59.0 && (p.value - 54.5).abs() < 1e-9));
    assert_eq!(s.points.iter().map(|p| p.count).sum::<u64>(), 2880);
    assert_eq!(s.points[1].ts, T0 + HOUR);
    // Unknown sensor: empty; a reversed period: an error.
    assert!(rt.block_on(h.readings("nope", T0, T0 + DAY, 10)).unwrap().points.is_empty());
    assert!(matches!(rt.block_on(h.readings("a1-temp", T0 + 1, T0, 10)), Err(QueryError::Invalid(_))));
    // A sensor id is a bound parameter, not SQL.
    assert!(rt.block_on(h.readings("x' OR '1'='1", T0, T0 + DAY, 10)).unwrap().points.is_empty());
}

#[test]
fn several_sensors_read_in_one_scan_match_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let h = open(dir.path());
    let rt = rt();
    let sensors: Vec<String> = ["a2-temp", "nope", "a1-temp"].iter().map(|s| s.to_string()).collect();
    for (from, to, points) in [(T0, T0 + HOUR, 100), (T0, T0 + 2 * DAY, 48), (T0 + 7 * MIN, T0 + 3 * HOUR, 13)] {
        let all = rt.block_on(h.readings_of(&sensors, from, to, points)).unwrap();
        assert_eq!(all.iter().map(|s| s.sensor_id.as_str()).collect::<Vec<_>>(), ["a2-temp", "nope", "a1-temp"]);
        assert!(all[1].points.is_empty());
        for s in [&all[0], &all[2]] {
            let one = rt.block_on(h.readings(&s.sensor_id, from, to, points)).unwrap();
            assert_eq!(s.bucket_ms, one.bucket_ms, "{} {from} {to}", s.sensor_id);
            assert_eq!(s.points, one.points, "{} {from} {to}", s.sensor_id);
        }
    }
    assert!(rt.block_on(h.readings_of(&["x' OR '1'='1".to_string()], T0, T0 + DAY, 10)).unwrap()[0].points.is_empty());
    assert!(rt.block_on(h.readings_of(&[], T0, T0 + DAY, 10)).unwrap().is_empty());
}

#[test]
fn canned_sensors_events_and_fleet_health() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let h = open(dir.path());
    let rt = rt();
    let list = rt.block_on(h.sensors()).unwrap();
    let last = T0 + (2 * 1440 - 1) * MIN;
    assert_eq!(list.as_of, Some(last));
    let ids: Vec<&str> = list.sensors.iter().map(|s| s.sensor_id.as_str()).collect();
    assert_eq!(ids, ["a1-temp", "a1-vib", "a2-temp", "a2-vib"]);
    let a2 = &list.sensors[2];
    assert_eq!((a2.last_ts, a2.last_value, a2.unit.as_str()), (last, 60.0 + 9.0, "C"));
    assert_eq!((a2.status.as_str(), a2.anomalies_last_hour), ("warning", 1));
    assert_eq!(list.sensors[0].status, "ok");

    let f =
        EventFilter { asset_id: Some("a2".into()), from: Some(T0 + DAY), to: Some(T0 + DAY + 12 * HOUR), ..Default::default() };
    let a = rt.block_on(h.anomalies(&f)).unwrap();
    assert_eq!(a.iter().map(|a| a.event_id.as_str()).collect::<Vec<_>>(), ["an-005", "an-004"], "newest first");
    let f = EventFilter { sensor_id: Some("a1-vib".into()), limit: 2, ..Default::default() };
    assert_eq!(rt.block_on(h.anomalies(&f)).unwrap().len(), 2);
    let p = rt.block_on(h.predictions(&EventFilter { asset_id: Some("a1".into()), limit: 1, ..Default::default() })).unwrap();
    assert_eq!(p[0].event_id, "p-a1-47");
    assert_eq!(p[0].rul_hours, Some(53.0));
    assert!(matches!(
        rt.block_on(h.predictions(&EventFilter { sensor_id: Some("x".into()), ..Default::default() })),
        Err(QueryError::Invalid(_))
    ));
    assert_eq!(rt.block_on(h.drift(&EventFilter::default())).unwrap()[0].statistic, "ks");
    let sched = rt.block_on(h.schedule(&EventFilter::default())).unwrap();
    assert_eq!(sched[0].status, "scheduled");

    let fleet = rt.block_on(h.fleet_health()).unwrap();
    assert_eq!(fleet.as_of, Some(T0 + 2 * DAY - 1), "the newest prediction");
    // a1: health 1 - 47/94 = 0.5 → warning (not < 0.5), probability 0.5 → critical.
    assert_eq!(fleet.assets[0].asset_id, "a1");
    assert_eq!(fleet.assets[0].status, "critical");
    assert_eq!(fleet.assets[0].open_proposals, ["prop-a1-1"]);
    // a2: healthy predictions, but critical anomalies in the last day → warning.
    assert_eq!(fleet.assets[1].asset_id, "a2");
    assert_eq!((fleet.assets[1].status.as_str(), fleet.assets[1].critical_24h, fleet.assets[1].anomalies_24h), ("warning", 3, 4));
    assert_eq!(fleet.counts.get("critical"), Some(&1));
}

#[test]
fn reports_as_json_csv_and_html() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let h = open(dir.path());
    let rt = rt();
    let req = ReportRequest { asset_id: Some("a2".into()), from: T0, to: T0 + 2 * DAY };
    let r = rt.block_on(h.report(&req)).unwrap();
    assert_eq!((r.summary.anomalies, r.summary.critical_anomalies, r.summary.predictions), (4, 3, 48));
    // Critical anomalies, but no maintenance record: no failure, no downtime, no MTBF.
    let rel = &r.reliability[0];
    assert_eq!((rel.asset_id.as_str(), rel.failures, rel.mtbf_hours), ("a2", 0, None));
    assert_eq!((rel.downtime_hours, rel.availability), (0.0, 1.0));
    assert_eq!(r.charts.len(), 1, "a2-temp is the only sensor of a2 with anomalies");
    assert_eq!(r.charts[0].sensor_id, "a2-temp");
    assert_eq!(r.charts[0].anomalies.len(), 4);
    assert!(r.charts[0].points.len() <= 400);

    let fleet = rt.block_on(h.report(&ReportRequest { asset_id: None, from: T0, to: T0 + 2 * DAY })).unwrap();
    assert_eq!(fleet.summary.assets, 2);
    assert_eq!(fleet.summary.anomalies, 7);
    assert_eq!(fleet.summary.proposals, 1);
    assert_eq!(fleet.proposals[0].status, "scheduled");
    assert_eq!(fleet.proposals[0].changes.len(), 2);
    assert_eq!(fleet.drift.len(), 1);
    assert_eq!(fleet.reliability[0].asset_id, "fleet");
    assert_eq!(fleet.reliability[0].failures, 0, "anomalies are not failures");
    let a1 = fleet.predictions.iter().find(|p| p.asset_id == "a1").unwrap();
    assert!((a1.first.health - 1.0).abs() < 1e-9 && (a1.last.health - 0.5).abs() < 1e-9);

    // JSON round-trips.
    let back: vigil_queries::report::Report = serde_json::from_str(&fleet.to_json()).unwrap();
    // (Floats may differ in the last bit through JSON; compare the exact parts.)
    assert!(back.summary == fleet.summary && back.proposals == fleet.proposals && back.top_anomalies == fleet.top_anomalies);
    assert_eq!(back.reliability.len(), fleet.reliability.len());
    // CSV: one figure a row, five columns.
    let csv = fleet.to_csv();
    let mut rows = csv::ReaderBuilder::new().from_reader(csv.as_bytes());
    let recs: Vec<csv::StringRecord> = rows.records().map(Result::unwrap).collect();
    assert!(recs.iter().all(|r| r.len() == 5));
    assert!(recs.iter().any(|r| &r[0] == "reliability" && &r[1] == "a2" && &r[3] == "failures" && &r[4] == "0"));
    assert!(recs.iter().any(|r| &r[0] == "anomalies_by_detector" && &r[2] == "hard_limit/critical" && &r[4] == "4"));

    // HTML: parses, has every section, charts with anomaly markers, and nothing external.
    let html = r.to_html();
    let dom = tl::parse(&html, tl::ParserOptions::default()).unwrap();
    let parser = dom.parser();
    for id in ["summary", "reliability", "charts", "anomalies", "drift", "predictions", "proposals", "maintenance"] {
        assert!(dom.get_element_by_id(id).is_some(), "no section #{id}");
    }
    let svgs = dom.query_selector("svg").unwrap().count();
    assert!(svgs >= 2, "a sensor chart and the health chart: {svgs}");
    let markers = dom.query_selector("circle.anomaly").unwrap().count();
    assert_eq!(markers, 4);
    let title = dom.query_selector("h1").unwrap().next().unwrap().get(parser).unwrap().inner_text(parser);
    assert_eq!(title, "Maintenance report: asset a2");
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href=\"http"));
}

fn maintenance(
    n: u32,
    asset: &str,
    kind: vigil_events::MaintenanceKind,
    started_at: i64,
    ts: i64,
) -> vigil_events::MaintenanceCompleted {
    vigil_events::MaintenanceCompleted {
        event_id: format!("m-{n}"),
        correlation_id: format!("m-{n}"),
        event_version: 1,
        proposal_id: None,
        asset_id: Arc::from(asset),
        kind,
        started_at,
        ts,
        performed_by: "ann".into(),
        notes: None,
    }
}

/// Failures are completed corrective maintenance records, never anomalies (a2 has three critical
/// anomalies and no failure); with none, there is no MTBF; every format states the definitions.
#[test]
fn reliability_counts_failures_not_anomalies() {
    use vigil_events::MaintenanceKind::{Corrective, Preventive};
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    // a1: a repair after a failure (2 h out of service) and a preventive service (1 h).
    write(
        dir.path(),
        "r4",
        vec![
            maintenance(1, "a1", Corrective, T0 + 5 * HOUR, T0 + 7 * HOUR),
            maintenance(2, "a1", Preventive, T0 + 30 * HOUR, T0 + 31 * HOUR),
        ],
    );
    let h = open(dir.path());
    let rt = rt();
    let report = |asset: Option<&str>| {
        rt.block_on(h.report(&ReportRequest { asset_id: asset.map(str::to_string), from: T0, to: T0 + 2 * DAY })).unwrap()
    };

    let a2 = report(Some("a2"));
    assert_eq!(a2.summary.critical_anomalies, 3);
    let r = &a2.reliability[0];
    assert_eq!((r.failures, r.mtbf_hours), (0, None), "three critical anomalies are no failure: {r:?}");
    assert_eq!((r.downtime_hours, r.availability), (0.0, 1.0));

    let a1 = report(Some("a1"));
    let r = &a1.reliability[0];
    assert_eq!(r.failures, 1, "the corrective record only");
    assert!((r.downtime_hours - 3.0).abs() < 1e-9, "both records took it out of service");
    assert!((r.mtbf_hours.unwrap() - 45.0).abs() < 1e-9);
    let json: serde_json::Value = serde_json::from_str(&a1.to_json()).unwrap();
    assert_eq!(json["reliability"][0]["mtbf"], "45.0 h");
    assert!((r.availability - 45.0 / 48.0).abs() < 1e-9);

    let fleet = report(None);
    let f = &fleet.reliability[0];
    assert_eq!((f.asset_id.as_str(), f.failures), ("fleet", 1));
    assert!((f.mtbf_hours.unwrap() - 93.0).abs() < 1e-9, "{f:?}");

    // The definitions, beside the figures in every format.
    let json: serde_json::Value = serde_json::from_str(&a2.to_json()).unwrap();
    assert!(json["definitions"]["failure"].as_str().unwrap().contains("corrective maintenance"), "{}", json["definitions"]);
    assert!(json["definitions"]["mtbf"].as_str().unwrap().contains("no failure"));
    assert!(json["definitions"]["availability"].as_str().unwrap().contains("up time"));
    assert_eq!(json["reliability"][0]["mtbf_hours"], serde_json::Value::Null);
    assert_eq!(json["reliability"][0]["mtbf"], "no failures in the period");
    let csv = a2.to_csv();
    let mut rows = csv::ReaderBuilder::new().from_reader(csv.as_bytes());
    let recs: Vec<csv::StringRecord> = rows.records().map(Result::unwrap).collect();
    assert!(
        recs.iter().any(|r| &r[0] == "reliability" && &r[3] == "mtbf_hours" && &r[4] == "no failures in the period"),
        "{csv}"
    );
    for term in ["failure", "downtime", "MTBF", "availability"] {
        assert!(recs.iter().any(|r| &r[0] == "definitions" && &r[2] == term && !r[4].is_empty()), "{term} in {csv}");
    }
    let html = a2.to_html();
    let dom = tl::parse(&html, tl::ParserOptions::default()).unwrap();
    let parser = dom.parser();
    let section = dom.get_element_by_id("reliability").unwrap().get(parser).unwrap().inner_text(parser);
    assert!(section.contains("no failures in the period"), "{section}");
    assert!(section.contains("completed corrective maintenance record"), "the definition beside the figures: {section}");
    assert!(!html.contains("episode"), "no estimate from anomalies");
}

/// An asset that sends readings but has no prediction yet is in the fleet, `warming_up` (a
/// planner reads absence as "fine"), after the assets with a verdict against them and before
/// the ones judged fine; every asset of `sensors` is in the fleet.
#[test]
fn the_fleet_lists_assets_without_a_prediction() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    // a3: one sensor, readings through the second day, no prediction, no anomaly.
    let a3: Vec<SensorReading> = (1440..2 * 1440)
        .map(|i| SensorReading {
            id_hash: 9 << 32 | i as u64,
            sensor_id: Arc::from("a3-temp"),
            sensor_key: 9,
            asset_id: Arc::from("a3"),
            sensor_type: SensorType::Temperature,
            value: 40.0,
            unit: Arc::from("C"),
            ts: T0 + i * MIN,
            extra: None,
            pos: SourcePos { source: 1, offset: i as u64 },
        })
        .collect();
    write(dir.path(), "r5", a3);
    let h = open(dir.path());
    let rt = rt();
    let fleet = rt.block_on(h.fleet_health()).unwrap();
    let ids: Vec<&str> = fleet.assets.iter().map(|a| a.asset_id.as_str()).collect();
    assert_eq!(ids, ["a1", "a2", "a3"], "worst first, the warming-up asset after the judged ones");
    let a3 = &fleet.assets[2];
    assert_eq!((a3.status.as_str(), a3.health, a3.predicted_at), ("warming_up", None, None));
    let json = serde_json::to_value(a3).unwrap();
    assert_eq!(json["last_reading"], T0 + (2 * 1440 - 1) * MIN);
    assert_eq!(fleet.counts.get("warming_up"), Some(&1));
    // Every asset the sensors list knows.
    let sensors = rt.block_on(h.sensors()).unwrap();
    for s in &sensors.sensors {
        assert!(ids.contains(&s.asset_id.as_str()), "{} of {} is not in the fleet", s.sensor_id, s.asset_id);
    }
}
