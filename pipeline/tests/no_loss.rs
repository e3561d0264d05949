//! No loss: an input holding every kind of bad record gives exactly the expected accepted count
//! and rejected count per reason, and every rejected record is in the history with its reason,
//! raw payload and source line.

mod common;

use std::collections::BTreeMap;

use common::*;
use vigil_pipeline::ReplayOrder;

#[test]
fn every_record_is_accepted_or_rejected_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mixed.jsonl");
    let t0 = 1_767_225_600_000i64; // 2026-01-01T00:00:00Z
    let ts = |s: i64| vigil_events::format_rfc3339_ms(t0 + s * 1000);
    let mut lines = Vec::new();
    let mut good = 0u64;
    for i in 0..600i64 {
        lines.push(format!(
            r#"{{"sensor_id":"s{}","asset_id":"a","sensor_type":"temperature","value":{},"ts":"{}"}}"#,
            i % 3,
            20.0 + (i % 7) as f64,
            ts(i)
        ));
        good += 1;
    }
    let bad: Vec<(&str, String)> = vec![
        ("malformed_json", r#"{"sensor_id":"s1","value":1"#.to_string()),
        ("malformed_json", "not json at all".to_string()),
        ("missing_field", format!(r#"{{"sensor_id":"s1","ts":"{}"}}"#, ts(601))),
        ("missing_field", format!(r#"{{"value":1,"ts":"{}"}}"#, ts(601))),
        ("missing_field", r#"{"sensor_id":"s1","value":1}"#.to_string()),
        ("bad_type", format!(r#"{{"sensor_id":"s1","value":"warm","ts":"{}"}}"#, ts(601))),
        ("bad_type", r#"{"sensor_id":"s1","value":1,"ts":"half past"}"#.to_string()),
        ("non_finite", format!(r#"{{"sensor_id":"s1","value":"NaN","ts":"{}"}}"#, ts(601))),
        ("non_finite", format!(r#"{{"sensor_id":"s1","value":"inf","ts":"{}"}}"#, ts(602))),
        ("out_of_range", format!(r#"{{"sensor_id":"s1","sensor_type":"temperature","value":-300,"ts":"{}"}}"#, ts(601))),
        ("out_of_range", format!(r#"{{"sensor_id":"s2","sensor_type":"humidity","value":140,"ts":"{}"}}"#, ts(601))),
        ("future_ts", r#"{"sensor_id":"s1","value":1,"ts":"2099-01-01T00:00:00Z"}"#.to_string()),
        ("too_late", format!(r#"{{"sensor_id":"s1","value":1,"ts":"{}"}}"#, ts(100))),
        ("oversized", format!(r#"{{"sensor_id":"s1","value":1,"ts":"{}","pad":"{}"}}"#, ts(603), "x".repeat(1 << 20))),
    ];
    for (_, l) in &bad {
        lines.push(l.clone());
    }
    // An exact duplicate of an accepted line, and an id given twice.
    lines.push(lines[599].clone());
    lines.push(format!(r#"{{"reading_id":"r-1","sensor_id":"s9","value":1,"ts":"{}"}}"#, ts(604)));
    lines.push(format!(r#"{{"reading_id":"r-1","sensor_id":"s9","value":2,"ts":"{}"}}"#, ts(605)));
    good += 1;
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();

    let out = dir.path().join("h");
    let stats = run_replay(std::slice::from_ref(&input), &out, 2, 16 << 10, ReplayOrder::File);
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for (reason, _) in &bad {
        *expected.entry(reason.to_string()).or_default() += 1;
    }
    *expected.entry("duplicate".into()).or_default() += 2;
    assert_eq!(stats.records_in, lines.len() as u64);
    assert_eq!(stats.accepted, good);
    assert_eq!(stats.rejected, expected);
    assert_eq!(stats.records_in, stats.accepted + stats.rejected_total());

    // The dead letters are in the history, each with its reason, detail, raw payload and line.
    let rows = table_rows(&out, "rejected", &["rejected_at"]);
    assert_eq!(rows.len() as u64, stats.rejected_total());
    let too_late = rows.iter().find(|r| r.contains("reason=too_late")).unwrap();
    assert!(too_late.contains(&format!("source_offset={}", 600 + 13)), "{too_late}");
    assert!(too_late.contains("behind the watermark"), "{too_late}");
    let malformed = rows.iter().find(|r| r.contains("reason=malformed_json") && r.contains("source_offset=601")).unwrap();
    assert!(malformed.contains(&format!("raw={}", hex(br#"{"sensor_id":"s1","value":1"#))), "{malformed}");
    assert_eq!(table_rows(&out, "readings", &[]).len() as u64, good);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn csv_and_parquet_inputs_are_read_liberally() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("in.csv");
    std::fs::write(
        &csv,
        "Timestamp,sensor_id,value,quality,site\n2026-01-01T01:00:00+01:00,p1,3.5,0.9,north\n1767225601000,p1,3.7,,north\n2026-01-01 00:00:02,p1,oops,,north\n",
    )
    .unwrap();
    let out = dir.path().join("h");
    let stats = run_replay(std::slice::from_ref(&csv), &out, 1, 1 << 20, ReplayOrder::EventTime);
    assert_eq!((stats.accepted, stats.rejected.get("bad_type").copied()), (2, Some(1)));
    let rows = table_rows(&out, "readings", &[]);
    let first = rows.iter().find(|r| r.contains("value=3.5|")).unwrap();
    assert!(first.contains("asset_id=p1"), "a sensor without an asset belongs to an asset named after it: {first}");
    assert!(first.contains("ts=1767225600000"), "{first}");
    assert!(first.contains("quality=0.9") && first.contains(r#"metadata={"site":"north"}"#), "{first}");
    assert!(rows.iter().any(|r| r.contains("value=3.7|") && r.contains("ts=1767225601000")), "epoch milliseconds");
}
