//! `vigil sql` and `vigil report` as a user runs them: the real binary on a history made by
//! `vigil demo`.

use std::process::Command;

fn vigil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = vigil().args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn sql_and_reports_over_a_demo_history() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let (ok, summary, err) =
        run(&["demo", "--data-dir", data, "--assets", "6", "--hours", "1", "--workers", "2", "--json", "--seed", "5"]);
    assert!(ok, "{err}");
    let summary: serde_json::Value = serde_json::from_str(summary.trim()).unwrap();

    // SQL agrees with the demo's own counts.
    let (ok, out, err) = run(&["sql", "--data-dir", data, "--format", "json", "SELECT count(*) AS n FROM readings"]);
    assert!(ok, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["n"], summary["accepted"], "{out}");
    let (ok, out, _) =
        run(&["sql", "--data-dir", data, "--format", "csv", "SELECT reason, count(*) AS n FROM rejected GROUP BY 1 ORDER BY 1"]);
    assert!(ok);
    let total: u64 = out.lines().skip(1).map(|l| l.rsplit(',').next().unwrap().parse::<u64>().unwrap()).sum();
    assert_eq!(total, summary["rejected"].as_u64().unwrap());
    assert!(out.starts_with("reason,n\n"));

    // SQL on stdin, and the table listing.
    let mut child = vigil()
        .args(["sql", "--data-dir", data])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"SELECT count(DISTINCT sensor_id) AS sensors FROM readings;\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("| 36 "), "{}", String::from_utf8_lossy(&out.stdout));
    let (ok, out, _) = run(&["sql", "--data-dir", data, "--tables"]);
    assert!(ok);
    for t in ["readings —", "anomalies —", "decisions —", "maintenance —", "rejected —"] {
        assert!(out.contains(t), "--tables lacks {t}:\n{out}");
    }

    // Refused statements and bad SQL fail with a clear message and a non-zero status.
    let (ok, _, err) = run(&["sql", "--data-dir", data, "DROP TABLE readings"]);
    assert!(!ok && err.contains("refused: DROP TABLE"), "{err}");
    let (ok, _, err) = run(&["sql", "--data-dir", data, "SELECT nope FROM readings"]);
    assert!(!ok && err.contains("nope"), "{err}");
    // The row limit cuts off and says so.
    let (ok, out, err) = run(&["sql", "--data-dir", data, "--max-rows", "5", "--format", "csv", "SELECT * FROM readings"]);
    assert!(ok);
    assert_eq!(out.lines().count(), 6, "a header and five rows");
    assert!(err.contains("cut off"), "{err}");

    // Reports: the fleet as HTML, an asset as JSON and CSV.
    let html = dir.path().join("fleet.html");
    let (ok, _, err) = run(&["report", "--data-dir", data, "--fleet", "--out", html.to_str().unwrap()]);
    assert!(ok, "{err}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("<svg") && page.contains("id=\"reliability\""));
    let (ok, out, err) = run(&["report", "--data-dir", data, "--asset", "asset-0002", "--format", "json"]);
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["asset_id"], "asset-0002");
    assert!(r["summary"]["predictions"].as_u64().unwrap() > 0, "{}", r["summary"]);
    let (ok, out, _) = run(&[
        "report",
        "--data-dir",
        data,
        "--asset",
        "asset-0002",
        "--format",
        "csv",
        "--from",
        "2026-01-01",
        "--to",
        "2026-01-02",
    ]);
    assert!(ok);
    assert!(out.starts_with("section,asset_id,item,metric,value\n"));
    let (ok, _, err) = run(&["report", "--data-dir", data, "--fleet", "--from", "2026-01-02", "--to", "2026-01-01"]);
    assert!(!ok && err.contains("after"), "{err}");
}
