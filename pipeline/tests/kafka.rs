//! `vigil run` against a real Kafka broker: the round trip, dead letters, kill -9 at random
//! moments, and a rebalance between two instances. Every check reads the Parquet history and the
//! topics back; nothing is mocked.

mod common;
mod kafka_common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kafka_common::*;
use rand::{Rng, SeedableRng};

/// Columns that carry the wall clock (when a record was rejected), not the data.
const WALL_CLOCK: [&str; 1] = ["rejected_at"];

#[test]
fn round_trip_with_dead_letters_and_output_topics() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("roundtrip");
    let truth = simulate(dir.path(), &topic, 6, 0.25, 0.003, None);
    let cfg = config(dir.path(), &topic, 1_000);
    let data = dir.path().join("history");
    let summary = run_to_end(&cfg, &data, &topic, &unique("g"), "a", 2);

    // Every produced record is in the history once: as a reading or as a rejected record.
    let readings = positions(&data, "readings");
    let rejected = positions(&data, "rejected");
    assert!(readings.is_disjoint(&rejected));
    assert_eq!(readings.len() as u64 + rejected.len() as u64, truth.records, "{summary}");
    let expected: BTreeSet<(String, u64)> =
        consume_all(&topic).into_iter().map(|(p, o, _)| (format!("{topic}/{p}"), o as u64)).collect();
    assert_eq!(readings.union(&rejected).cloned().collect::<BTreeSet<_>>(), expected);

    // The rejected table says why, reason by reason as injected.
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    for r in common::table_rows(&data, "rejected", &[]) {
        let reason = r.split('|').find_map(|kv| kv.strip_prefix("reason=")).unwrap().to_string();
        *by_reason.entry(reason).or_default() += 1;
    }
    assert_eq!(by_reason, truth.bad_records);

    // The dead-letter topic has the same records: original bytes, partition, offset, reason.
    let letters = consume_all(&format!("{topic}.dead-letters"));
    let mut seen = BTreeSet::new();
    for (_, _, payload) in &letters {
        let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
        assert!(v["event_id"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(!v["raw"].as_str().unwrap().is_empty() || v["reason"] == "malformed_json");
        let pos = (format!("{}/{}", v["topic"].as_str().unwrap(), v["partition"]), v["offset"].as_u64().unwrap());
        assert!(rejected.contains(&pos), "dead letter {v} not in the rejected table");
        seen.insert(pos);
    }
    assert_eq!(seen, rejected, "dead letters and the rejected table differ");

    // Output topics carry what the history holds (at least once: distinct event ids match). The
    // anomalies topic also has the hard-limit alerts sent on arrival; those have the stage's ids,
    // so only hard-limit alerts may be extra.
    for (table, suffix) in [("predictions", "predictions"), ("anomalies", "anomalies"), ("drift", "drift")] {
        let published: BTreeMap<String, String> = consume_all(&format!("{topic}.{suffix}"))
            .iter()
            .map(|(_, _, p)| {
                let v = serde_json::from_slice::<serde_json::Value>(p).unwrap();
                (v["event_id"].as_str().unwrap().to_string(), v["detector"].as_str().unwrap_or("").to_string())
            })
            .collect();
        let stored: BTreeSet<String> = common::table_rows(&data, table, &[])
            .iter()
            .map(|r| r.split('|').find_map(|kv| kv.strip_prefix("event_id=")).unwrap().to_string())
            .collect();
        let missing: Vec<&String> = stored.iter().filter(|id| !published.contains_key(*id)).collect();
        assert!(missing.is_empty(), "{table}: {} events of the history not published", missing.len());
        let extra: Vec<(&String, &String)> =
            published.iter().filter(|(id, d)| !stored.contains(*id) && *d != "hard_limit").collect();
        assert!(extra.is_empty(), "{table}: published events not in the history: {extra:?}");
    }
    assert!(!common::table_rows(&data, "predictions", &[]).is_empty());
}

#[test]
fn kill_nine_at_random_moments_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("crash");
    let truth = simulate(dir.path(), &topic, 10, 0.6, 0.002, None);
    // Frequent cuts, so kills land before, between and after commits.
    let cfg = config(dir.path(), &topic, 150);

    let reference = dir.path().join("reference");
    run_to_end(&cfg, &reference, &topic, &unique("ref"), "ref", 2);

    let crashed = dir.path().join("crashed");
    let group = unique("crash");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let mut kills = 0;
    let started = Instant::now();
    while kills < 6 && started.elapsed() < Duration::from_secs(300) {
        // Alternate the worker count: state moves between workers on restore.
        let before = vigil_connectors::history::read_manifest(&crashed).unwrap().len();
        let mut child = spawn_run(&cfg, &crashed, &topic, &group, "c", 1 + kills % 2, true);
        if kills % 2 == 0 {
            // Any moment of the start: joining the group, restoring, the first records.
            std::thread::sleep(Duration::from_millis(rng.random_range(200..3_000)));
        } else {
            // Mid-stream: once this run has committed, at a random moment (often mid-cut).
            let deadline = Instant::now() + Duration::from_secs(60);
            while vigil_connectors::history::read_manifest(&crashed).unwrap().len() <= before && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(rng.random_range(0..1_500)));
        }
        if child.try_wait().is_some() {
            break; // finished before the kill
        }
        child.kill(); // SIGKILL
        kills += 1;
    }
    assert!(kills >= 5, "only {kills} kills landed while the run was going");
    run_to_end(&cfg, &crashed, &topic, &group, "c", 2);
    // The kills cut runs short after some of their commits: several runs wrote the history.
    let commits = vigil_connectors::history::read_manifest(&crashed).unwrap();
    let runs: BTreeSet<&str> = commits.iter().map(|c| c.run.as_str()).collect();
    assert!(runs.len() >= 3, "only {} runs committed files: the kills all landed before any commit", runs.len());

    let readings = positions(&crashed, "readings");
    let rejected = positions(&crashed, "rejected");
    assert_eq!(readings.len() as u64 + rejected.len() as u64, truth.records);
    let a = common::history(&reference, &WALL_CLOCK);
    let b = common::history(&crashed, &WALL_CLOCK);
    for ((table, x), (_, y)) in a.iter().zip(&b) {
        assert!(!x.is_empty() || table != "features", "no features at all");
        if x != y {
            let only_a: Vec<_> = x.iter().filter(|r| !y.contains(r)).take(3).collect();
            let only_b: Vec<_> = y.iter().filter(|r| !x.contains(r)).take(3).collect();
            panic!(
                "{table} differs after {kills} kills: {} vs {} rows; only uninterrupted: {only_a:?}; only crashed: {only_b:?}",
                x.len(),
                y.len()
            );
        }
    }
}

#[test]
fn a_second_instance_joining_and_leaving_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("rebalance");
    // Dynamic members: instances come and go under their own names.
    let cfg = config_with(dir.path(), &topic, 300, false);
    let data = dir.path().join("history");
    let group = unique("g");
    vigil_connectors::kafka::ensure_topic(&broker(), &topic, 8, Duration::from_secs(30)).unwrap();

    // A producer at a steady rate, so the stream is live while the group changes.
    let producer = {
        let d = dir.path().to_path_buf();
        let t = topic.clone();
        std::thread::spawn(move || simulate(&d, &t, 10, 0.25, 0.002, Some(3_000)))
    };
    let a = spawn_run(&cfg, &data, &topic, &group, "a", 2, false);
    std::thread::sleep(Duration::from_secs(4));
    let b = spawn_run(&cfg, &data, &topic, &group, "b", 1, false);
    std::thread::sleep(Duration::from_secs(9));
    let (out_b, took_b) = terminate(b);
    assert!(out_b.status.success(), "b: {}", String::from_utf8_lossy(&out_b.stderr));
    assert!(took_b < Duration::from_secs(10), "b took {took_b:?} to stop");
    let truth = producer.join().unwrap();

    // Wait until a has committed everything, then stop it.
    let deadline = Instant::now() + Duration::from_secs(120);
    while committed_total(&data, &topic) < end_total(&topic) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(committed_total(&data, &topic), end_total(&topic), "a did not catch up");
    let (out_a, took_a) = terminate(a);
    assert!(out_a.status.success(), "a: {}", String::from_utf8_lossy(&out_a.stderr));
    assert!(took_a < Duration::from_secs(10), "a took {took_a:?} to stop");

    // Both instances owned partitions at some point.
    let commits = vigil_connectors::history::read_manifest(&data).unwrap();
    for who in ["a", "b"] {
        assert!(
            commits.iter().filter_map(|c| c.stream.as_ref()).any(|m| m.instance == who && !m.next_offsets.is_empty()),
            "instance {who} never owned a partition"
        );
    }

    // Readings still waiting for the watermark are in each instance's checkpoint: flush both.
    run_to_end(&cfg, &data, &topic, &unique("flush-a"), "a", 2);
    run_to_end(&cfg, &data, &topic, &unique("flush-b"), "b", 2);
    let readings = positions(&data, "readings");
    let rejected = positions(&data, "rejected");
    assert!(readings.is_disjoint(&rejected));
    assert_eq!(readings.len() as u64 + rejected.len() as u64, truth.records);
    let expected: BTreeSet<(String, u64)> =
        consume_all(&topic).into_iter().map(|(p, o, _)| (format!("{topic}/{p}"), o as u64)).collect();
    assert_eq!(readings.union(&rejected).cloned().collect::<BTreeSet<_>>(), expected);
}

#[test]
fn demo_through_kafka_reads_every_record_and_scores_against_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("demo");
    let cfg = config(dir.path(), &prefix, 1_000);
    let data = dir.path().join("history");
    let out = vigil()
        .arg("--config")
        .arg(&cfg)
        .args(["demo", "--brokers", &broker(), "--assets", "4", "--hours", "0.25", "--bad-rate", "0.003", "--json"])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let records = s["records_in"].as_u64().unwrap();
    assert_eq!(records, s["accepted"].as_u64().unwrap() + s["rejected"].as_u64().unwrap(), "{s}");
    assert!(records > 20_000, "{s}");
    let readings = positions(&data, "readings");
    let rejected = positions(&data, "rejected");
    assert_eq!(readings.len() as u64 + rejected.len() as u64, records);
    assert!(s["windows"].as_object().unwrap().values().any(|v| v.as_u64().unwrap_or(0) > 0), "{s}");
}
