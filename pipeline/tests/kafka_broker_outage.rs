//! The broker stops for 30 s in the middle of a live stream: `vigil run` keeps running, reports
//! the outage, and ends with every record exactly once. (Its own test binary: stopping the broker
//! must not disturb the other Kafka tests, and test binaries run one after another.)

mod common;
mod kafka_common;

use std::process::Command;
use std::time::{Duration, Instant};

use kafka_common::*;

fn kafka_script(cmd: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/kafka.sh");
    let ok = Command::new(script).arg(cmd).status().unwrap().success();
    assert!(ok, "scripts/kafka.sh {cmd} failed");
}

#[test]
fn broker_stopped_for_30_s_mid_stream_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("outage");
    let cfg = config_with(dir.path(), &topic, 500, false);
    let data = dir.path().join("history");
    let group = unique("g");
    vigil_connectors::kafka::ensure_topic(&broker(), &topic, 8, Duration::from_secs(30)).unwrap();

    // A first part of the stream, then `vigil run` consuming it and waiting for more.
    let first = simulate(dir.path(), &topic, 6, 0.1, 0.002, None);
    let run = spawn_run(&cfg, &data, &topic, &group, "a", 2, false);
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed_total(&data, &topic) < first.records as i64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(committed_total(&data, &topic), first.records as i64, "the first part was not committed");

    kafka_script("stop");
    std::thread::sleep(Duration::from_secs(30));
    kafka_script("start");

    // The same process goes on: the stream's next part (a new producer) is consumed too.
    let second = simulate_from(dir.path(), &topic, 6, 0.1, 0.002, "2026-01-01T00:06:00Z");
    let truth_records = first.records + second.records;
    let deadline = Instant::now() + Duration::from_secs(180);
    while committed_total(&data, &topic) < end_total(&topic) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(committed_total(&data, &topic), end_total(&topic), "did not catch up after the outage");
    let (out, took) = terminate(run);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?} to stop");
    assert!(stderr.contains("not ready"), "the outage was not reported: {stderr}");

    // Flush what waits for the watermark in the checkpoint, then count.
    run_to_end(&cfg, &data, &topic, &group, "a", 2);
    let readings = positions(&data, "readings");
    let rejected = positions(&data, "rejected");
    assert!(readings.is_disjoint(&rejected));
    assert_eq!(readings.len() as u64 + rejected.len() as u64, truth_records);
}
