//! Historian exports through `vigil replay`, as a user runs it on real files: columns named
//! `TagName,DateTime,Value` mapped with `--columns` (or `[input] columns`), local times without a
//! zone read in `--timezone` (or warned about when it is absent), rejected rows counted by
//! reason with the `vigil sql` command that lists them, in CSV, JSON lines and Parquet.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

fn vigil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
}

fn run_in(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = vigil().current_dir(cwd).args(args).envs(env.iter().copied()).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `sensor_id,ts,value` rows of a history, in order, as CSV text.
fn readings(cwd: &Path, data: &str) -> String {
    let (ok, out, err) = run_in(
        cwd,
        &[
            "sql",
            "--data-dir",
            data,
            "--format",
            "csv",
            "SELECT sensor_id, CAST(ts AS BIGINT) AS ms, value FROM readings ORDER BY sensor_id, ts",
        ],
        &[],
    );
    assert!(ok, "{err}");
    out
}

/// Epoch milliseconds of an RFC 3339 time.
fn ms(t: &str) -> i64 {
    vigil_events::parse_timestamp_str(t).unwrap()
}

const EXPORT: &str = "\
TagName,DateTime,Value
FIC-101.PV,2026-01-05 13:45:00,3.5
FIC-101.PV,2026-01-05 13:45:01.250,3.6
TIC-200.PV,2026-01-05T13:45:00,80.1
TIC-200.PV,05/01/2026 13:46:00,80.2
TIC-200.PV,2026-03-29 02:30:00,80.3
FIC-101.PV,,3.7
TIC-200.PV,05-Jan-2026 13:47:00,80.4
";

const COLUMNS: &str = "sensor_id=TagName,ts=DateTime,value=Value";

#[test]
fn replay_help_lists_the_formats() {
    let (ok, out, _) = run_in(Path::new("."), &["replay", "--help"], &[]);
    assert!(ok);
    for s in [
        ".jsonl",
        ".csv",
        ".parquet",
        "--timezone",
        "--columns",
        "2026-01-05 13:45:00",
        "05-Jan-2026",
        "epoch milliseconds",
        "ambiguous",
    ] {
        assert!(out.contains(s), "replay --help lacks {s:?}:\n{out}");
    }
}

#[test]
fn a_historian_csv_with_mapped_columns_and_local_times() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("export.csv"), EXPORT).unwrap();

    // In Paris: winter times are UTC+1; the spring-forward hour does not exist; slash dates are ambiguous.
    let (ok, _, err) = run_in(
        d,
        &["replay", "--input", "export.csv", "--data-dir", "paris", "--columns", COLUMNS, "--timezone", "Europe/Paris"],
        &[],
    );
    assert!(ok, "{err}");
    assert!(!err.contains("warning"), "a zone was given: {err}");
    assert!(err.contains("rejected 3 rows: bad_type 2, missing_field 1"), "{err}");
    let expected = format!(
        "sensor_id,ms,value\nFIC-101.PV,{},3.5\nFIC-101.PV,{},3.6\nTIC-200.PV,{},80.1\nTIC-200.PV,{},80.4\n",
        ms("2026-01-05T12:45:00Z"),
        ms("2026-01-05T12:45:01.250Z"),
        ms("2026-01-05T12:45:00Z"),
        ms("2026-01-05T12:47:00Z")
    );
    assert_eq!(readings(d, "paris"), expected);

    // The command printed at the end lists exactly the rejected rows, with their reasons.
    let cmd = err.split("list them:\n  ").nth(1).and_then(|s| s.lines().next()).expect("the SQL to list them");
    assert!(cmd.starts_with("vigil sql --data-dir paris "), "{cmd}");
    let sh = format!("'{}'{} --format csv", env!("CARGO_BIN_EXE_vigil"), &cmd["vigil".len()..]);
    let out = Command::new("bash").current_dir(d).arg("-c").arg(&sh).output().unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{sh}: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(listed.lines().count(), 4, "a header and three rows:\n{listed}");
    assert!(listed.contains("ambiguous date") && listed.contains("05/01/2026"), "{listed}");
    assert!(listed.contains("does not exist in Europe/Paris"), "{listed}");
    assert!(listed.contains("missing field `ts` (column `DateTime`)"), "{listed}");

    // Without a zone: read as UTC, and the replay says so, naming an example.
    let (ok, _, err) = run_in(d, &["replay", "--input", "export.csv", "--data-dir", "utc", "--columns", COLUMNS], &[]);
    assert!(ok, "{err}");
    assert!(
        err.contains("warning: 5 timestamps had no zone (e.g. \"")
            && err.contains("\") and were read as UTC")
            && err.contains("--timezone"),
        "{err}"
    );
    assert!(readings(d, "utc").contains(&format!("FIC-101.PV,{},3.5", ms("2026-01-05T13:45:00Z"))));

    // A misspelt column, or zone, is named with the closest ones before anything is read.
    let (ok, _, err) =
        run_in(d, &["replay", "--input", "export.csv", "--data-dir", "x", "--columns", "sensor_id=Tagname,ts=DateTime"], &[]);
    assert!(!ok && err.contains("no column \"Tagname\"") && err.contains("did you mean TagName"), "{err}");
    let (ok, _, err) = run_in(d, &["replay", "--input", "export.csv", "--data-dir", "x", "--timezone", "Europe/Pariss"], &[]);
    assert!(!ok && err.contains("unknown time zone") && err.contains("Europe/Paris"), "{err}");
    let (ok, _, err) = run_in(d, &["replay", "--input", "export.csv", "--data-dir", "x", "--columns", "tag=TagName"], &[]);
    assert!(!ok && err.contains("unknown field \"tag\""), "{err}");
    assert!(!d.join("x").join("readings").exists());
}

#[test]
fn json_lines_and_parquet_with_the_mapping_from_the_config_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // JSON lines, mapped and zoned through the environment ([input] columns and timezone).
    std::fs::write(
        d.join("export.jsonl"),
        "{\"TagName\":\"P-1\",\"DateTime\":\"2026-01-05 08:45:00\",\"Value\":1.5}\n\
         {\"TagName\":\"P-1\",\"DateTime\":\"2026-01-05T08:46:00.500\",\"Value\":1.6}\n",
    )
    .unwrap();
    let env = [("VIGIL_INPUT__COLUMNS", COLUMNS), ("VIGIL_INPUT__TIMEZONE", "America/New_York")];
    let (ok, _, err) = run_in(d, &["replay", "--input", "export.jsonl", "--data-dir", "ny"], &env);
    assert!(ok, "{err}");
    assert!(!err.contains("warning") && !err.contains("rejected"), "{err}");
    assert_eq!(
        readings(d, "ny"),
        format!("sensor_id,ms,value\nP-1,{},1.5\nP-1,{},1.6\n", ms("2026-01-05T13:45:00Z"), ms("2026-01-05T13:46:00.500Z"))
    );

    // Parquet with the same columns, mapped in vigil.toml; --timezone overrides the file's zone.
    use arrow::array::{Float64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let schema = Arc::new(Schema::new(vec![
        Field::new("TagName", DataType::Utf8, false),
        Field::new("DateTime", DataType::Utf8, false),
        Field::new("Value", DataType::Float64, false),
    ]));
    let batch = arrow::array::RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["T-9", "T-9"])),
            Arc::new(StringArray::from(vec!["2026-07-01 14:00:00", "2026-07-01 14:01:00"])),
            Arc::new(Float64Array::from(vec![20.5, 20.6])),
        ],
    )
    .unwrap();
    let file = std::fs::File::create(d.join("export.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    std::fs::write(
        d.join("vigil.toml"),
        "[input]\ntimezone = \"Asia/Tokyo\"\ncolumns = { sensor_id = \"TagName\", ts = \"DateTime\", value = \"Value\" }\n",
    )
    .unwrap();
    let (ok, _, err) = run_in(
        d,
        &["replay", "--config", "vigil.toml", "--input", "export.parquet", "--data-dir", "pq", "--timezone", "Europe/Paris"],
        &[],
    );
    assert!(ok, "{err}");
    // Paris in summer is UTC+2.
    assert_eq!(
        readings(d, "pq"),
        format!("sensor_id,ms,value\nT-9,{},20.5\nT-9,{},20.6\n", ms("2026-07-01T12:00:00Z"), ms("2026-07-01T12:01:00Z"))
    );
}
