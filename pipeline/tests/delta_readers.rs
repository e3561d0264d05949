//! An independent reader agrees with Vigil: after `vigil demo` and `vigil compact`, Python's
//! `deltalake` (delta-rs, from the Python registry; `scripts/test.sh` installs it) reads every
//! history table from its Delta log and gets the rows Vigil's own SQL counts — no file counted
//! twice after the compaction swapped them, none missing.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn vigil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
}

fn run(args: &[&str]) -> String {
    let out = vigil().args(args).output().unwrap();
    assert!(out.status.success(), "vigil {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Rows and the sum of a numeric column per table, as Python's `deltalake` reads them.
const READER: &str = r#"
import json, os, sys
import deltalake
d = sys.argv[1]
out = {}
for t in sorted(os.listdir(d)):
    p = os.path.join(d, t)
    if not os.path.isdir(os.path.join(p, "_delta_log")):
        continue
    dt = deltalake.DeltaTable(p)
    tab = dt.to_pyarrow_table()
    assert "date" in tab.column_names, (t, tab.column_names)
    out[t] = {"rows": tab.num_rows, "version": dt.version(), "files": len(dt.file_uris())}
    if t == "readings":
        import pyarrow.compute as pc
        out[t]["value_sum"] = pc.sum(tab.column("value")).as_py()
print(json.dumps(out))
sys.stdout.flush()
# pyarrow 26 with deltalake 1.6 can abort in the interpreter's teardown (a C++ `terminate` from
# a pool thread) after everything was read and printed: leave without it.
os._exit(0)
"#;

fn python_reader(data: &Path) -> Option<serde_json::Value> {
    let probe = Command::new("python3").args(["-c", "import deltalake, pyarrow"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true and Python's deltalake is missing (scripts/test.sh installs it)"
        );
        eprintln!("skipped: Python's deltalake is not installed (python3 -m pip install deltalake pyarrow)");
        return None;
    }
    let out = Command::new("python3").args(["-c", READER, data.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

fn vigil_count(data: &str, sql: &str) -> serde_json::Value {
    let out = run(&["sql", "--data-dir", data, "--format", "json", sql]);
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    rows[0]["n"].clone()
}

#[test]
fn python_deltalake_reads_every_table_as_vigil_does_before_and_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let data_path = dir.path().join("data");
    let data = data_path.to_str().unwrap();
    // Across midnight, so the tables have two date partitions and the first one is closed.
    run(&[
        "demo",
        "--data-dir",
        data,
        "--assets",
        "6",
        "--hours",
        "1",
        "--workers",
        "2",
        "--seed",
        "5",
        "--start",
        "2026-01-01T23:30:00Z",
    ]);
    let Some(before) = python_reader(&data_path) else { return };
    let tables: Vec<String> = before.as_object().unwrap().keys().cloned().collect();
    for t in ["readings", "features", "anomalies", "rejected", "incidents", "predictions"] {
        assert!(tables.iter().any(|x| x == t), "{t} is a Delta table: {tables:?}");
    }
    let mut counts = BTreeMap::new();
    for t in &tables {
        let n = vigil_count(data, &format!("SELECT count(*) AS n FROM {t}"));
        assert_eq!(before[t]["rows"], n, "{t}: Python's deltalake and Vigil's SQL disagree");
        counts.insert(t.clone(), n);
    }
    let sum = vigil_count(data, "SELECT sum(value) AS n FROM readings").as_f64().unwrap();
    let py_sum = before["readings"]["value_sum"].as_f64().unwrap();
    assert!((sum - py_sum).abs() <= 1e-6 * sum.abs().max(1.0), "sum(value): vigil {sum}, python {py_sum}");

    let report = run(&["compact", "--data-dir", data, "--min-age-days", "0", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert!(!report["partitions"].as_array().unwrap().is_empty(), "something was compacted: {report}");
    let after = python_reader(&data_path).unwrap();
    for t in &tables {
        assert_eq!(after[t]["rows"], counts[t], "{t} after compaction");
    }
    let merged = report["partitions"].as_array().unwrap().iter().filter_map(|p| p["table"].as_str()).collect::<Vec<_>>();
    for t in merged {
        assert!(after[t]["version"].as_i64() > before[t]["version"].as_i64(), "{t}: the compaction is a commit of its log");
        assert!(after[t]["files"].as_i64() < before[t]["files"].as_i64(), "{t}: fewer files after compaction");
    }
}
