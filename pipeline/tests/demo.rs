//! The demo end to end: a simulated fleet through the whole graph into the history, scored
//! against the simulator's ground truth.

mod common;

use common::*;
use vigil_connectors::simulator::FleetConfig;
use vigil_pipeline::{demo, Summary};

#[test]
fn demo_finds_what_was_injected_and_rejects_exactly_the_bad_records() {
    let dir = tempfile::tempdir().unwrap();
    let fleet =
        FleetConfig { assets: 10, sensors_per_asset: 6, hours: 1.5, bad_record_rate: 0.002, seed: 3, ..FleetConfig::default() };
    let (stats, fleet) = demo(fleet, &options(dir.path(), 2, 1 << 20)).unwrap();
    assert_eq!(stats.records_in, stats.accepted + stats.rejected_total());
    // Every injected bad record is rejected, with the reason the simulator meant.
    assert_eq!(stats.rejected, stats.injected_bad, "rejections by reason");
    assert!(stats.rejected.len() >= 8, "most kinds of bad record occur: {:?}", stats.rejected);

    let s = Summary::new("demo", vec![], String::new(), 2, 1.0, &stats, Some(&fleet.truth));
    let score = s.ground_truth.clone().unwrap();
    assert!(score.anomalies_injected >= 20, "{score:?}");
    assert!(score.precision >= 0.9, "precision {score:?}");
    assert!(score.recall >= 0.8, "recall {score:?}");
    assert!(score.mean_detection_delay_s < 180.0, "delay {score:?}");
    assert!(score.degrading_assets_proposed == score.degrading_assets, "every degrading asset gets a proposal: {score:?}");
    assert!(score.proposals_without_degradation <= 1, "{score:?}");
    assert_eq!(s.proposals, s.decision_requests, "every proposal of medium priority or above asks a person");

    // The history holds what the summary says.
    let rows = table_rows(dir.path(), "readings", &[]);
    assert_eq!(rows.len() as u64, stats.accepted);
    assert_eq!(table_rows(dir.path(), "anomalies", &[]).len(), stats.anomalies.len());
    assert!(dir.path().join("_manifest/manifest.jsonl").exists());
    // Files roll by size and event-time span, never per stray record: a handful per table and worker.
    assert!(stats.files.len() <= 2 * 8 * 4, "{} history files", stats.files.len());
    assert!(!dir.path().join("_staging").join("t2").exists(), "staging is cleaned after the commit");
}

#[test]
fn injected_episodes_become_a_few_incidents_and_a_healthy_fleet_raises_next_to_none() {
    // A fleet with anomalies, drift and degradation: every episode lies in an incident, nearly
    // every incident holds an episode, and there are far fewer incidents than anomaly events.
    let dir = tempfile::tempdir().unwrap();
    let fleet = FleetConfig { assets: 10, sensors_per_asset: 6, hours: 2.0, seed: 11, ..FleetConfig::default() };
    let (stats, fleet) = demo(fleet, &options(dir.path(), 2, 1 << 20)).unwrap();
    let s = Summary::new("demo", vec![], String::new(), 2, 1.0, &stats, Some(&fleet.truth));
    let score = s.ground_truth.clone().unwrap();
    assert!(score.episodes_injected >= 20, "{score:?}");
    assert!(score.incident_recall >= 0.95, "{score:?}");
    assert!(score.incident_precision >= 0.9, "{score:?}");
    assert!(s.incidents > 0 && s.incidents <= score.episodes_injected, "{} incidents for {score:?}", s.incidents);
    assert!(s.incidents * 5 <= stats.anomalies.len() as u64, "{} incidents, {} anomalies", s.incidents, stats.anomalies.len());
    // Every incident's revisions are in the history; the last of each is `closed`.
    let rows = table_rows(dir.path(), "incidents", &[]);
    assert_eq!(rows.len() as u64, stats.incident_revisions);
    let mut last: std::collections::BTreeMap<String, (u64, String)> = Default::default();
    for r in &rows {
        let field =
            |name: &str| r.split('|').find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('='))).unwrap().to_string();
        let (id, rev, status) = (field("incident_id"), field("revision").parse::<u64>().unwrap(), field("status"));
        let e = last.entry(id).or_insert((0, String::new()));
        if rev > e.0 {
            *e = (rev, status);
        }
    }
    assert_eq!(last.len() as u64, s.incidents);
    assert!(last.values().all(|(_, st)| st == "closed"), "{last:?}");

    // A healthy fleet (nothing injected): at most one false incident per 100 asset-hours.
    let dir = tempfile::tempdir().unwrap();
    let healthy = FleetConfig {
        assets: 20,
        sensors_per_asset: 6,
        hours: 5.0,
        seed: 12,
        anomalies_per_sensor_hour: 0.0,
        drift_fraction: 0.0,
        degrading_fraction: 0.0,
        ..FleetConfig::default()
    };
    let (stats, fleet) = demo(healthy, &options(dir.path(), 2, 1 << 20)).unwrap();
    let s = Summary::new("demo", vec![], String::new(), 2, 1.0, &stats, Some(&fleet.truth));
    let score = s.ground_truth.unwrap();
    assert!(score.false_incidents_per_100_asset_hours <= 1.0, "{} incidents: {score:?}", s.incidents);
}
