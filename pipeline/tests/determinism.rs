//! Determinism: the same input gives the same history whatever the number of workers, the
//! chunk (batch) size, the order of the rows in the file, or arrival shuffled within lateness.

mod common;

use common::*;
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use vigil_pipeline::ReplayOrder;

#[test]
fn same_history_with_1_2_and_4_workers_and_any_chunk_size() {
    let dir = tempfile::tempdir().unwrap();
    let input = simulated_jsonl(dir.path(), 4, 1.0, 0.003);
    let mut reference = None;
    for (workers, chunk) in [(1, 1 << 20), (2, 64 << 10), (4, 16 << 10), (2, 1 << 20)] {
        let out = dir.path().join(format!("h-{workers}-{chunk}"));
        let stats = run_replay(std::slice::from_ref(&input), &out, workers, chunk, ReplayOrder::File);
        assert_eq!(stats.records_in, stats.accepted + stats.rejected_total(), "nothing lost");
        assert!(stats.rejected.get("too_late").copied().unwrap_or(0) > 0, "the input has late records");
        let h = history(&out, &[]);
        assert!(h.iter().any(|(t, rows)| t == "anomalies" && !rows.is_empty()), "something is detected");
        match &reference {
            None => reference = Some(h),
            Some(r) => assert!(r == &h, "history differs with {workers} workers, chunks of {chunk} bytes"),
        }
    }
}

#[test]
fn rows_sorted_by_sensor_give_the_history_of_rows_sorted_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let input = simulated_jsonl(dir.path(), 3, 0.75, 0.0);
    let text = std::fs::read_to_string(&input).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    // Sort by the sensor id (the first field of every simulated line), keeping time order within.
    lines.sort_by_key(|l| l.split('"').nth(3).unwrap_or("").to_string());
    let by_sensor = dir.path().join("by-sensor.jsonl");
    std::fs::write(&by_sensor, lines.join("\n") + "\n").unwrap();

    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let sa = run_replay(std::slice::from_ref(&input), &a, 2, 64 << 10, ReplayOrder::EventTime);
    let sb = vigil_pipeline::replay(std::slice::from_ref(&by_sensor), ReplayOrder::EventTime, &options(&b, 2, 64 << 10)).unwrap();
    assert!(!sa.needs_sort, "the simulated file is in order");
    assert!(sb.1, "the sorted-by-sensor file needed a sort");
    // Source names and line numbers differ between the two files; everything else is equal.
    let skip = ["source", "source_offset"];
    assert!(history(&a, &skip) == history(&b, &skip), "history depends on row order");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3, .. ProptestConfig::default() })]

    /// Arrival shuffled within the lateness bound changes nothing.
    #[test]
    fn arrival_shuffled_within_lateness_changes_nothing(seed in 0u64..1000, block in 200usize..1500) {
        let dir = tempfile::tempdir().unwrap();
        let input = simulated_jsonl(dir.path(), 2, 0.5, 0.0);
        let text = std::fs::read_to_string(&input).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        // 12 sensors at 1 Hz: a block of at most 1500 lines spans at most 125 s of event time,
        // and every line keeps within 30 s of lateness behind the greatest time before it
        // when blocks are shuffled inside windows of 24 s (288 lines).
        let window = 288.min(block);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        for c in lines.chunks_mut(window) {
            c.shuffle(&mut rng);
        }
        let shuffled = dir.path().join("shuffled.jsonl");
        std::fs::write(&shuffled, lines.join("\n") + "\n").unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        run_replay(std::slice::from_ref(&input), &a, 2, 32 << 10, ReplayOrder::File);
        let sb = run_replay(std::slice::from_ref(&shuffled), &b, 2, 32 << 10, ReplayOrder::File);
        prop_assert_eq!(sb.rejected_total(), 0, "nothing is late within the bound");
        let skip = ["source", "source_offset"];
        prop_assert!(history(&a, &skip) == history(&b, &skip));
    }
}
