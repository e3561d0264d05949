//! Exactly once across runs: the same input given again adds nothing to the history, whatever
//! its name; a file that grew adds only its new rows; another file under a known name is new
//! input; a demo of the same fleet adds nothing, a demo of another fleet is refused.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::*;
use vigil_connectors::simulator::FleetConfig;
use vigil_pipeline::{demo, replay, ReplayOrder, RunError, RunStats, Summary};

fn replay_as(run: &str, inputs: &[PathBuf], data: &Path) -> RunStats {
    let mut opts = options(data, 2, 64 << 10);
    opts.run_id = run.into();
    replay(inputs, ReplayOrder::EventTime, &opts).unwrap().0
}

/// Rows per table.
fn counts(data: &Path) -> Vec<(String, usize)> {
    history(data, &[]).into_iter().map(|(t, rows)| (t, rows.len())).collect()
}

fn summary_text(stats: &RunStats) -> String {
    Summary::new("replay", vec![], String::new(), 2, 1.0, stats, None).to_string()
}

fn reading_ids(data: &Path) -> Vec<String> {
    table_rows(data, "readings", &[]).iter().map(|r| r.split('|').next().unwrap().to_string()).collect()
}

#[test]
fn the_same_file_twice_adds_nothing_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let input = simulated_jsonl(dir.path(), 3, 0.5, 0.002);
    let data = dir.path().join("h");
    let first = replay_as("r1", std::slice::from_ref(&input), &data);
    assert!(first.accepted > 10_000);
    let before = counts(&data);

    let again = replay_as("r2", std::slice::from_ref(&input), &data);
    assert_eq!((again.records_in, again.accepted), (0, 0), "nothing read again");
    assert_eq!(counts(&data), before, "the history is unchanged");
    let text = summary_text(&again);
    let n = first.accepted.to_string();
    let grouped: String = n
        .chars()
        .rev()
        .collect::<Vec<_>>()
        .chunks(3)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(",")
        .chars()
        .rev()
        .collect();
    assert!(
        text.contains(&format!("already in history: {grouped} readings")) && text.contains(&input.display().to_string()),
        "{text}"
    );

    // A copy under another name is the same input.
    let copy = dir.path().join("copy-of-fleet.jsonl");
    std::fs::copy(&input, &copy).unwrap();
    let copied = replay_as("r3", std::slice::from_ref(&copy), &data);
    assert_eq!(copied.records_in, 0);
    assert_eq!(counts(&data), before, "a copy adds nothing");
    assert!(summary_text(&copied).contains(&format!("the same content as {}", input.display())), "{}", summary_text(&copied));

    // Both at once: still nothing.
    let both = replay_as("r4", &[input.clone(), copy.clone()], &data);
    assert_eq!(both.records_in, 0);
    assert_eq!(counts(&data), before);
}

#[test]
fn a_grown_file_adds_only_its_new_rows() {
    let dir = tempfile::tempdir().unwrap();
    let full = simulated_jsonl(dir.path(), 3, 1.0, 0.0);
    let text = std::fs::read_to_string(&full).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cut = lines.len() * 2 / 3;
    let growing = dir.path().join("growing.jsonl");
    std::fs::write(&growing, lines[..cut].join("\n") + "\n").unwrap();

    // The whole file in one run, for reference.
    let reference = dir.path().join("ref");
    let once = replay_as("ref", std::slice::from_ref(&full), &reference);

    let data = dir.path().join("h");
    let first = replay_as("g1", std::slice::from_ref(&growing), &data);
    assert_eq!(first.records_in, cut as u64);
    // Rows appended, as a logger appends them.
    std::fs::write(&growing, lines.join("\n") + "\n").unwrap();
    let second = replay_as("g2", std::slice::from_ref(&growing), &data);
    assert_eq!(second.records_in, (lines.len() - cut) as u64, "only the new rows are read");
    let note = summary_text(&second);
    assert!(note.contains(&format!("replayed from line {} on", cut + 1)), "{note}");

    // Readings: exactly the single run's, none twice.
    let ids = reading_ids(&data);
    assert_eq!(ids.len() as u64, once.accepted);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len(), "no reading stored twice");
    assert_eq!(ids, reading_ids(&reference));
    // Derived rows are not written twice either: one row per window.
    let windows: Vec<String> = table_rows(&data, "features", &[])
        .iter()
        .map(|r| r.split('|').filter(|f| f.starts_with("sensor_id=") || f.starts_with("window")).collect::<Vec<_>>().join("|"))
        .collect();
    assert_eq!(windows.iter().collect::<BTreeSet<_>>().len(), windows.len(), "a window stored twice");
    let requests: Vec<String> =
        table_rows(&data, "decision_requests", &["event_id", "correlation_id", "proposal_id", "question", "deadline"]);
    assert_eq!(requests.iter().collect::<BTreeSet<_>>().len(), requests.len(), "a decision request stored twice");

    // The same grown file a third time: nothing.
    let third = replay_as("g3", std::slice::from_ref(&growing), &data);
    assert_eq!(third.records_in, 0);
    assert_eq!(reading_ids(&data).len() as u64, once.accepted);
}

#[test]
fn another_file_under_a_known_name_is_new_input() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("h");
    let path = dir.path().join("day.jsonl");
    let t0 = 1_767_225_600_000i64;
    let write = |value: f64| {
        let lines: Vec<String> = (0..300)
            .map(|i| {
                format!(
                    r#"{{"sensor_id":"s1","asset_id":"a","sensor_type":"temperature","value":{},"ts":{}}}"#,
                    value + (i % 5) as f64,
                    t0 + i * 1000
                )
            })
            .collect();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    };
    write(20.0);
    let first = replay_as("d1", std::slice::from_ref(&path), &data);
    assert_eq!(first.accepted, 300);
    write(30.0);
    let second = replay_as("d2", std::slice::from_ref(&path), &data);
    assert_eq!(second.accepted, 300, "new content under the same name is new input");
    assert_eq!(table_rows(&data, "readings", &[]).len(), 600);
}

fn demo_as(run: &str, fleet: FleetConfig, data: &Path) -> Result<RunStats, RunError> {
    let mut opts = options(data, 2, 1 << 20);
    opts.run_id = run.into();
    demo(fleet, &opts).map(|(s, _)| s)
}

#[test]
fn a_demo_twice_adds_nothing_and_another_fleet_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("h");
    let fleet = FleetConfig { assets: 4, sensors_per_asset: 6, hours: 0.5, seed: 3, ..FleetConfig::default() };
    let first = demo_as("d1", fleet.clone(), &data).unwrap();
    assert!(first.accepted > 0);
    let before = counts(&data);

    let again = demo_as("d2", fleet.clone(), &data).unwrap();
    assert_eq!(again.records_in, 0);
    assert_eq!(counts(&data), before, "the same demo adds nothing");
    let text = Summary::new("demo", vec![], String::new(), 2, 1.0, &again, None).to_string();
    assert!(text.contains("already in history") && text.contains("the demo fleet (seed 3"), "{text}");

    let other = demo_as("d3", FleetConfig { seed: 4, ..fleet.clone() }, &data).unwrap_err();
    assert!(other.to_string().contains("another fleet"), "{other}");
    let bigger = demo_as("d4", FleetConfig { assets: 5, ..fleet.clone() }, &data).unwrap_err();
    assert!(bigger.to_string().contains("another fleet"), "{bigger}");
    let overlapping = demo_as("d5", FleetConfig { hours: 1.0, ..fleet.clone() }, &data).unwrap_err();
    assert!(overlapping.to_string().contains("--start"), "{overlapping}");
    assert_eq!(counts(&data), before, "refused demos write nothing");

    // The same fleet after its period continues it.
    let later = FleetConfig { start_ms: fleet.start_ms + 1_800_000, ..fleet.clone() };
    let next = demo_as("d6", later, &data).unwrap();
    assert!(next.accepted > 0);
    let ids = reading_ids(&data);
    assert_eq!(ids.len() as u64, first.accepted + next.accepted);
}
