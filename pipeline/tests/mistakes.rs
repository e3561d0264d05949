//! A user's mistakes answer with errors, not empty successes; a reader that stops early is not
//! an error. The real binary on a history made by `vigil demo`:
//!
//! - a missing or empty data dir is an error for every command that reads one (`sql`, `report`,
//!   `compact`, `models`, `serve --no-pipeline`), naming the histories beside it;
//! - a report on an asset the history does not know is an error naming the closest ones;
//! - output piped into a reader that closes early (`| head -1`) ends quietly with success.

use std::path::Path;
use std::process::{Command, Stdio};

fn vigil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
}

fn run_in(cwd: &Path, args: &[&str]) -> (bool, String, String) {
    let out = vigil().current_dir(cwd).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A small demo history in `dir/vigil-data`.
fn demo(dir: &Path) {
    let (ok, _, err) = run_in(
        dir,
        &["demo", "--data-dir", "vigil-data", "--assets", "12", "--sensors-per-asset", "2", "--hours", "0.3", "--json"],
    );
    assert!(ok, "{err}");
}

#[test]
fn a_missing_or_empty_data_dir_is_an_error_naming_the_history_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path());
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    for data in ["./nope", "vigil-dat", "empty"] {
        for args in [
            vec!["sql", "--data-dir", data, "SELECT count(*) FROM readings"],
            vec!["sql", "--data-dir", data, "--tables"],
            vec!["report", "--data-dir", data, "--fleet"],
            vec!["compact", "--data-dir", data],
            vec!["models", "list", "--data-dir", data],
            vec!["serve", "--no-pipeline", "--data-dir", data, "--listen", "127.0.0.1:0"],
        ] {
            let (ok, out, err) = run_in(dir.path(), &args);
            assert!(!ok, "{args:?} succeeded: {out}");
            assert!(out.is_empty(), "{args:?} printed a result: {out}");
            let what = if data == "empty" { "holds no Vigil history" } else { "no data dir" };
            assert!(err.contains(what), "{args:?}: {err}");
            assert!(err.contains("did you mean --data-dir ./vigil-data"), "{args:?}: {err}");
        }
    }
    assert!(!dir.path().join("nope").exists(), "a command that reads the history does not create the data dir");
    // The history itself still answers.
    let (ok, out, err) = run_in(dir.path(), &["sql", "--format", "csv", "SELECT count(DISTINCT asset_id) AS n FROM readings"]);
    assert!(ok, "{err}");
    assert_eq!(out, "n\n12\n");
}

#[test]
fn a_report_on_an_unknown_asset_is_an_error_naming_the_closest() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path());
    let (ok, out, err) = run_in(dir.path(), &["report", "--asset", "asset-003", "--format", "json"]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("no asset 'asset-003' in the history; did you mean asset-0003, "), "{err}");
    let (ok, out, err) = run_in(dir.path(), &["report", "--asset", "NO_SUCH_ASSET", "--format", "csv"]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("no asset 'NO_SUCH_ASSET'") && err.contains("12 assets known, e.g. asset-"), "{err}");
    let (ok, out, err) = run_in(dir.path(), &["report", "--asset", "asset-0003", "--format", "json"]);
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["asset_id"], "asset-0003");
}

/// Runs `args` with stdout a pipe whose reader is already gone: the first write fails with a
/// broken pipe. Returns whether the command succeeded, and its stderr.
fn with_closed_stdout(cwd: &Path, args: &[&str]) -> (bool, String) {
    let mut child = vigil().current_dir(cwd).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn output_into_a_reader_that_stops_early_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path());
    for args in [
        vec!["sql", "SELECT * FROM readings"],
        vec!["sql", "--format", "csv", "SELECT * FROM readings"],
        vec!["sql", "--format", "json", "SELECT * FROM readings"],
        vec!["sql", "--tables"],
        vec!["report", "--fleet", "--format", "csv"],
        vec!["report", "--fleet", "--format", "html"],
        vec!["models", "list"],
        vec!["demo", "--data-dir", "d2", "--assets", "2", "--hours", "0.05", "--json"],
        vec!["demo", "--data-dir", "d3", "--assets", "2", "--hours", "0.05"],
    ] {
        let (ok, err) = with_closed_stdout(dir.path(), &args);
        assert!(ok, "{args:?} failed: {err}");
        for noise in ["Broken pipe", "broken pipe", "panicked", "error:"] {
            assert!(!err.contains(noise), "{args:?} printed {noise:?}: {err}");
        }
    }
    // Through a real `head`, as a person types it (the table is far larger than a pipe's buffer).
    let out = Command::new("bash")
        .current_dir(dir.path())
        .arg("-c")
        .arg(format!("set -o pipefail; '{}' sql 'SELECT * FROM readings' | head -1", env!("CARGO_BIN_EXE_vigil")))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "{:?}: {stderr}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}
