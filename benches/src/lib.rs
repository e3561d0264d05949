//! Vigil's benchmarks. `cargo bench -p vigil-benches` runs the criterion micro-benchmarks of
//! each operator (`benches/operators.rs`, throughput in readings); `benches/e2e.sh` is the
//! end-to-end harness (10 M JSON-lines readings of 2,000 sensors replayed to Parquet).
//! This library holds the input generators the benchmarks share.

use vigil_events::{format_rfc3339_ms, SourcePos};

/// `n` JSON-lines readings of `sensors` sensors at 1 Hz, in time order.
pub fn json_lines(n: usize, sensors: usize) -> Vec<(SourcePos, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let s = i % sensors;
            let ts = 1_767_225_600_000 + (i / sensors) as i64 * 1000;
            let line = format!(
                r#"{{"sensor_id":"asset-{:04}-temperature","asset_id":"asset-{:04}","sensor_type":"temperature","value":{:.4},"unit":"C","ts":"{}"}}"#,
                s,
                s / 6,
                60.0 + ((i * 7919) % 1000) as f64 / 500.0,
                format_rfc3339_ms(ts)
            );
            (SourcePos { source: 0, offset: i as u64 + 1 }, line.into_bytes())
        })
        .collect()
}
