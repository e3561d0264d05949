//! `vigil serve` as a user runs it: the real binary, real HTTP on an ephemeral port.
//!
//! - Decisions survive `kill -9` of the server (durable before the response).
//! - Readings posted to the embedded log reach the history exactly once across a graceful stop
//!   and a restart, bad ones as dead letters.
//! - The live simulator feeds the pipeline, and the API sees its sensors.
//! - Golden-path runs started together write files of their own; reads meanwhile stay whole.
//! - Decisions flow back into the dataflow: completed maintenance closes the asset's proposal
//!   and restarts its baselines, so a still-degrading asset is proposed again. The readings come
//!   in batches with idle time between them (a source that pauses must not stall the pipeline).

#[path = "support/serving.rs"]
mod serving;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const KEY: &str = "test-admin-key";

use serving::ServerProcess as Server;

impl Server {
    fn start(data: &Path, args: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
        cmd.args(["serve", "--data-dir", data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .args(args)
            .env("VIGIL_API_KEY", KEY)
            .env("VIGIL_KAFKA__COMMIT_INTERVAL_MS", "200")
            .env("VIGIL_PIPELINE__IDLE_TIMEOUT_MS", "300");
        Server::spawn(&mut cmd)
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, and the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "the server did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
        self.request(method, path, body.map(|b| ("application/json", b)))
    }

    fn call_ndjson(&self, path: &str, body: &str) -> (u16, serde_json::Value) {
        self.request("POST", path, Some(("application/x-ndjson", body)))
    }

    fn request(&self, method: &str, path: &str, body: Option<(&str, &str)>) -> (u16, serde_json::Value) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {KEY}\r\n");
        if let Some((content_type, b)) = body {
            req.push_str(&format!("Content-Type: {content_type}\r\nContent-Length: {}\r\n", b.len()));
        }
        req.push_str("\r\n");
        req.push_str(body.map_or("", |(_, b)| b));
        s.write_all(req.as_bytes()).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            serving::dechunk(body)
        } else {
            body.to_string()
        };
        (status, serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)))
    }

    fn sql(&self, q: &str) -> Vec<serde_json::Value> {
        let (status, v) = self.call("POST", "/api/v1/query", Some(&serde_json::json!({ "sql": q }).to_string()));
        assert_eq!(status, 200, "{v}");
        v["rows"].as_array().unwrap().clone()
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_decision_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["demo", "--data-dir", data.to_str().unwrap(), "--assets", "10", "--hours", "3", "--workers", "2", "--seed", "3"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let srv = Server::start(&data, &["--no-pipeline"]);
    // The demo's requests are replayed history: listed when asked for.
    let (status, pending) = srv.call("GET", "/api/v1/decisions/pending?include_replayed=true", None);
    assert_eq!(status, 200);
    let pending = pending.as_array().unwrap().clone();
    assert!(!pending.is_empty(), "the demo asks for no decision");
    let id = pending[0]["request_id"].as_str().unwrap().to_string();
    let proposal = pending[0]["proposal_id"].as_str().unwrap().to_string();
    let (status, v) = srv.call("POST", &format!("/api/v1/decisions/{id}"), Some(r#"{"decision":"approve","operator":"ann"}"#));
    assert_eq!(status, 201, "{v}");
    srv.kill();

    let srv = Server::start(&data, &["--no-pipeline"]);
    let (_, log) = srv.call("GET", "/api/v1/decisions", None);
    assert_eq!(log["total"], 1, "{log}");
    assert_eq!(log["items"][0]["request_id"], id.as_str());
    let (_, still) = srv.call("GET", "/api/v1/decisions/pending?include_replayed=true", None);
    assert_eq!(still.as_array().unwrap().len(), pending.len() - 1);
    let (status, v) = srv.call("POST", &format!("/api/v1/decisions/{id}"), Some(r#"{"decision":"approve","operator":"ann"}"#));
    assert_eq!((status, &v["replayed"]), (200, &serde_json::Value::Bool(true)));
    let rows = srv.sql(&format!("SELECT status FROM schedule WHERE proposal_id = '{proposal}' ORDER BY ts"));
    assert_eq!(rows.last().unwrap()["status"], "scheduled", "{rows:?}");
    assert!(srv.stop().success());
}

fn vigil(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_demo_is_replayed_history_once_and_the_live_queue_leaves_it_out() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let demo = ["demo", "--data-dir", d, "--assets", "10", "--hours", "3", "--workers", "2", "--seed", "3", "--json"];
    let (ok, first, err) = vigil(&demo);
    assert!(ok, "{err}");
    let first: serde_json::Value = serde_json::from_str(first.trim()).unwrap();
    let accepted = first["accepted"].as_u64().unwrap();
    assert!(first["decision_requests"].as_u64().unwrap() > 0, "{first}");

    // The same demo again: nothing added, and it says so.
    let (ok, again, err) = vigil(&demo[..demo.len() - 1]);
    assert!(ok, "{err}");
    assert!(again.contains("already in history:") && again.contains("of the demo fleet (seed 3"), "{again}");
    // Another fleet into the same history: refused, nothing written.
    let (ok, _, err) = vigil(&["demo", "--data-dir", d, "--assets", "10", "--hours", "3", "--seed", "4"]);
    assert!(!ok, "a second fleet was mixed in");
    assert!(err.contains("another fleet"), "{err}");
    let (ok, n, err) = vigil(&["sql", "--data-dir", d, "--format", "csv", "SELECT count(*) AS n FROM readings"]);
    assert!(ok, "{err}");
    assert_eq!(n.lines().nth(1).unwrap().parse::<u64>().unwrap(), accepted, "readings stored once");

    let srv = Server::start(&data, &["--no-pipeline"]);
    let (status, live) = srv.call("GET", "/api/v1/decisions/pending", None);
    assert_eq!(status, 200);
    assert_eq!(live.as_array().unwrap().len(), 0, "replayed requests in the live queue: {live}");
    let (_, all) = srv.call("GET", "/api/v1/decisions/pending?include_replayed=true", None);
    let all = all.as_array().unwrap();
    assert_eq!(all.len() as u64, first["decision_requests"].as_u64().unwrap(), "{all:?}");
    assert!(all.iter().all(|r| r["replayed"] == true), "{all:?}");
    let (_, fleet) = srv.call("GET", "/api/v1/fleet", None);
    let periods = fleet["replayed_periods"].as_array().unwrap();
    assert_eq!(periods.len(), 1, "{fleet}");
    assert_eq!(periods[0]["inputs"][0], "simulator");
    assert!(!fleet["replayed_assets"].as_array().unwrap().is_empty(), "{fleet}");
    assert!(srv.stop().success());
}

#[test]
fn replaying_a_file_twice_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (d, input) = (data.to_str().unwrap(), dir.path().join("fleet.jsonl"));
    let input = input.to_str().unwrap();
    let (ok, _, err) = vigil(&["simulate", "--out", input, "--assets", "2", "--hours", "0.5", "--seed", "9"]);
    assert!(ok, "{err}");
    let (ok, first, err) = vigil(&["replay", "--input", input, "--data-dir", d, "--json"]);
    assert!(ok, "{err}");
    let first: serde_json::Value = serde_json::from_str(first.trim()).unwrap();
    let (ok, again, err) = vigil(&["replay", "--input", input, "--data-dir", d]);
    assert!(ok, "{err}");
    let n = first["accepted"].as_u64().unwrap();
    let grouped = format!("{},{:03}", n / 1000, n % 1000);
    assert!(again.contains(&format!("already in history: {grouped} readings of {input}: nothing read")), "{again}");
    let (_, rows, _) = vigil(&["sql", "--data-dir", d, "--format", "csv", "SELECT count(*) AS n FROM readings"]);
    assert_eq!(rows.lines().nth(1).unwrap().parse::<u64>().unwrap(), n);
}

fn readings(from_min: i64, to_min: i64) -> String {
    serving::two_sensor_readings(vigil_now_minute() - 120, from_min, to_min)
}

/// The current minute (so readings are recent but not from the future).
fn vigil_now_minute() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 / 60
}

#[test]
fn posted_readings_reach_the_history_exactly_once_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let srv = Server::start(&data, &["--source", "ingest", "--workers", "2"]);
    let (status, v) = srv.call("POST", "/api/v1/readings", Some(&readings(0, 60)));
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["accepted"], 120);
    let (status, _) = srv.call("POST", "/api/v1/readings", Some(r#"[{"sensor_id": "p1-temp", "value": "hot"}]"#));
    assert_eq!(status, 202, "bad readings are accepted here and dead-lettered by the pipeline");
    let (status, v) = srv.call("POST", "/api/v1/readings", Some(r#"{"not": "an array"}"#));
    assert_eq!((status, v["error"]["code"].as_str()), (400, Some("bad_json")));
    wait_for("the history to hold the first readings", || {
        srv.sql("SELECT count(*) AS n FROM readings")[0]["n"].as_u64().unwrap_or(0) >= 100
    });
    assert!(srv.stop().success(), "a graceful stop exits 0");

    // Restarted: the readings waiting for the watermark come back from the checkpoint.
    let srv = Server::start(&data, &["--source", "ingest", "--workers", "2"]);
    let (status, _) = srv.call("POST", "/api/v1/readings", Some(&readings(60, 120)));
    assert_eq!(status, 202);
    // Everything up to the watermark (the newest minute less the lateness) is in the history, once.
    wait_for("the second batch", || srv.sql("SELECT count(*) AS n FROM readings")[0]["n"].as_u64().unwrap_or(0) >= 236);
    let rows = srv.sql("SELECT count(*) AS n, count(DISTINCT reading_id) AS d FROM readings");
    assert_eq!(rows[0]["n"], rows[0]["d"], "no reading stored twice");
    let rejected = srv.sql("SELECT reason FROM rejected");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    let (_, ready) = srv.call("GET", "/ready", None);
    assert_eq!(ready["pipeline"]["ready"], true, "{ready}");
    assert!(srv.stop().success());
}

#[test]
fn the_live_simulator_feeds_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let srv = Server::start(
        &data,
        &["--source", "simulator", "--assets", "3", "--interval-ms", "1000", "--speed", "120", "--hours", "1"],
    );
    wait_for("sensors in the history", || {
        let (s, v) = srv.call("GET", "/api/v1/sensors", None);
        s == 200 && v["sensors"].as_array().is_some_and(|a| a.len() == 18)
    });
    wait_for("a commit with accepted readings", || value(&srv, "vigil_readings_accepted_total") > 0.0);
    // The whole exposition parses as Prometheus text, and says what the pipeline did.
    let (_, metrics) = srv.call("GET", "/metrics", None);
    let text = metrics.as_str().unwrap().to_string();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let names: std::collections::BTreeSet<&str> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for m in [
        "vigil_records_in_total",
        "vigil_readings_accepted_total",
        "vigil_windows_total",
        "vigil_history_rows_total",
        "vigil_source_lag_records",
        "vigil_commit_delay_seconds",
        "vigil_http_requests_total",
        "vigil_http_request_duration_seconds",
    ] {
        assert!(names.contains(m), "{m} missing from /metrics:\n{text}");
    }
    let by_route = scrape
        .samples
        .iter()
        .find(|s| s.metric == "vigil_http_requests_total" && s.labels.get("route") == Some("/api/v1/sensors"));
    assert!(by_route.is_some(), "{text}");
    assert!(value(&srv, "vigil_records_in_total") > 0.0);
    assert!(srv.stop().success());
}

fn value(srv: &Server, metric: &str) -> f64 {
    let (_, metrics) = srv.call("GET", "/metrics", None);
    metrics
        .as_str()
        .unwrap_or("")
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{metric} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn the_golden_path_runs_end_to_end_and_waits_for_a_decision() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let srv = Server::start(&data, &["--source", "ingest"]);
    let (status, run) = srv.call("POST", "/api/v1/demo/golden-path", Some("{}"));
    assert_eq!(status, 202, "{run}");
    let id = run["correlation_id"].as_str().unwrap().to_string();
    let mut run = serde_json::Value::Null;
    wait_for("the golden path", || {
        let (_, r) = srv.call("GET", &format!("/api/v1/demo/golden-path/{id}"), None);
        run = r;
        run["status"] != "running" && run["status"] != "queued"
    });
    assert_eq!(run["status"], "awaiting_decision", "{run:#}");
    let steps: Vec<&str> = run["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(steps, ["simulate", "ingest", "detect", "predict", "propose", "request_decision"]);
    assert!(run["steps"].as_array().unwrap().iter().all(|s| s["status"] == "done" && s["at_ms"].as_f64().is_some()), "{run:#}");
    let request = run["request_id"].as_str().unwrap().to_string();
    let (_, pending) = srv.call("GET", "/api/v1/decisions/pending", None);
    assert!(pending.as_array().unwrap().iter().any(|p| p["request_id"] == request.as_str()), "{pending}");
    let (status, _) = srv.call("POST", &format!("/api/v1/decisions/{request}"), Some(r#"{"decision":"approve"}"#));
    assert_eq!(status, 201);
    let (_, run) = srv.call("GET", &format!("/api/v1/demo/golden-path/{id}"), None);
    assert_eq!(run["status"], "done");
    assert!(srv.stop().success());
}

/// Golden-path runs started together (within one second, in one process) write files of their
/// own: readers of the API meanwhile never fail, counts never go down, and at the end every run's
/// readings are in the history once.
#[test]
fn golden_paths_started_together_keep_every_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let srv = Server::start(&data, &["--source", "ingest"]);
    let ids: Vec<String> = (0..4)
        .map(|_| {
            let (status, run) = srv.call("POST", "/api/v1/demo/golden-path", Some("{}"));
            assert_eq!(status, 202, "{run}");
            run["correlation_id"].as_str().unwrap().to_string()
        })
        .collect();
    // They run one at a time: one runs, four may wait ([api] golden_path_queue), the next is
    // turned away (429) until one is done.
    let (status, fifth) = srv.call("POST", "/api/v1/demo/golden-path", Some("{}"));
    assert_eq!(status, 202, "{fifth}");
    assert_eq!(fifth["status"], "queued", "{fifth}");
    let ids: Vec<String> = ids.into_iter().chain([fifth["correlation_id"].as_str().unwrap().to_string()]).collect();
    let (status, busy) = srv.call("POST", "/api/v1/demo/golden-path", Some("{}"));
    assert_eq!((status, busy["error"]["code"].as_str()), (429, Some("golden_path_busy")), "{busy}");
    let count = serde_json::json!({ "sql": "SELECT count(*) AS n FROM readings" }).to_string();
    let mut errors = Vec::new();
    let mut last = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    let finished = loop {
        let (status, v) = srv.call("GET", "/api/v1/fleet", None);
        if status != 200 {
            errors.push(format!("GET /api/v1/fleet: {status} {v}"));
        }
        let (status, v) = srv.call("POST", "/api/v1/query", Some(&count));
        match v["rows"][0]["n"].as_u64() {
            Some(n) if status == 200 => {
                if n < last {
                    errors.push(format!("readings went from {last} down to {n}"));
                }
                last = n;
            }
            _ => errors.push(format!("POST /api/v1/query: {status} {v}")),
        }
        let runs: Vec<serde_json::Value> =
            ids.iter().map(|id| srv.call("GET", &format!("/api/v1/demo/golden-path/{id}"), None).1).collect();
        if runs.iter().all(|r| r["status"] != "running" && r["status"] != "queued") {
            break runs;
        }
        assert!(Instant::now() < deadline, "the golden paths did not finish");
        // Seven calls a round: well under the key's rate limit (200/s).
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(errors.is_empty(), "{} failed reads, first ones: {:#?}", errors.len(), &errors[..errors.len().min(5)]);
    let rows = srv.sql("SELECT asset_id, count(*) AS n, count(DISTINCT reading_id) AS d FROM readings GROUP BY asset_id");
    assert_eq!(rows.len(), ids.len(), "{rows:?}");
    for run in &finished {
        // Every step found its own run's results: its proposal, its request.
        assert_eq!(run["status"], "awaiting_decision", "{run:#}");
        let asset = run["asset_id"].as_str().unwrap();
        assert!(run["steps"][4]["detail"].as_str().unwrap().starts_with(&format!("proposal {asset}-")), "{run:#}");
        let request = run["request_id"].as_str().unwrap();
        let pending = pending_for(&srv, asset);
        assert!(pending.iter().any(|p| p["request_id"] == request), "{request} not pending for {asset}: {pending:?}");
        // "N readings stored (M accepted by validation)": all M, once.
        let detail = run["steps"][1]["detail"].as_str().unwrap();
        let accepted: u64 = detail.split('(').nth(1).and_then(|t| t.split(' ').next()).unwrap().parse().unwrap();
        let row = rows.iter().find(|r| r["asset_id"] == run["asset_id"]).unwrap();
        assert_eq!(row["n"].as_u64(), Some(accepted), "{run:#} {rows:?}");
        assert_eq!(row["n"], row["d"], "no reading twice: {rows:?}");
    }
    assert!(srv.stop().success());
}

/// A webhook receiver: every request body it gets, answered 200.
fn webhook_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut len = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_ok() {
                if let Ok(v) = serde_json::from_slice(&body) {
                    g.lock().unwrap().push(v);
                }
            }
            let mut s = s;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, got)
}

#[test]
fn webhooks_hear_of_anomalies_proposals_and_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (url, got) = webhook_receiver();
    let config = dir.path().join("vigil.toml");
    std::fs::write(
        &config,
        format!("[[notifications.webhooks]]\nname = \"test\"\nurl = \"{url}\"\nmin_severity = \"high\"\nmax_attempts = 3\n"),
    )
    .unwrap();
    let srv = Server::start(&data, &["--config", config.to_str().unwrap(), "--source", "ingest"]);
    // A temperature over its hard limit: alerted on arrival.
    let t = vigil_now_minute() * 60_000 - 60_000;
    let body = serde_json::json!([
        {"sensor_id": "h1-temp", "asset_id": "h1", "sensor_type": "temperature", "value": 40.0, "unit": "C", "ts": t},
        {"sensor_id": "h1-temp", "asset_id": "h1", "sensor_type": "temperature", "value": 180.0, "unit": "C", "ts": t + 1000},
    ]);
    let (status, _) = srv.call("POST", "/api/v1/readings", Some(&body.to_string()));
    assert_eq!(status, 202);
    wait_for("an anomaly notice", || {
        got.lock().unwrap().iter().any(|n| n["kind"] == "anomaly" && n["event"]["sensor_id"] == "h1-temp")
    });
    // A decision, and the proposal's new status.
    let (_, run) = srv.call("POST", "/api/v1/demo/golden-path", Some("{}"));
    let id = run["correlation_id"].as_str().unwrap().to_string();
    let mut request = String::new();
    wait_for("the golden path", || {
        let (_, r) = srv.call("GET", &format!("/api/v1/demo/golden-path/{id}"), None);
        request = r["request_id"].as_str().unwrap_or("").to_string();
        !request.is_empty()
    });
    let (status, v) =
        srv.call("POST", &format!("/api/v1/decisions/{request}"), Some(r#"{"decision":"reject","rationale":"not now"}"#));
    assert_eq!(status, 201, "{v}");
    let event_id = v["decision"]["event_id"].as_str().unwrap().to_string();
    wait_for("the decision and proposal notices", || {
        let g = got.lock().unwrap();
        g.iter().any(|n| n["kind"] == "decision" && n["event_id"] == event_id.as_str())
            && g.iter().any(|n| n["kind"] == "proposal" && n["event"]["status"] == "rejected")
    });
    assert!(srv.stop().success());
}

/// One simulated asset that degrades towards failure, as JSON lines in time order.
fn degrading_asset(dir: &Path, prefix: &str, hours: f64) -> Vec<String> {
    degrading_asset_until(dir, prefix, hours, 3_600_000)
}

/// [`degrading_asset`] whose last reading is `ago_ms` before now.
fn degrading_asset_until(dir: &Path, prefix: &str, hours: f64, ago_ms: i64) -> Vec<String> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let cfg = vigil_connectors::simulator::FleetConfig {
        assets: 1,
        sensors_per_asset: 6,
        hours,
        interval_ms: 10_000,
        seed: 11,
        start_ms: now - ago_ms - (hours * 3_600_000.0) as i64,
        degrading_fraction: 1.0,
        drift_fraction: 0.0,
        anomalies_per_sensor_hour: 0.5,
        asset_prefix: prefix.to_string(),
        ..Default::default()
    };
    let path = dir.join(format!("{prefix}.jsonl"));
    vigil_connectors::export::write_fleet(&vigil_connectors::simulator::Fleet::new(cfg), &path, |_, _| {}).unwrap();
    std::fs::read_to_string(&path).unwrap().lines().map(str::to_string).collect()
}

fn pending_for(srv: &Server, asset: &str) -> Vec<serde_json::Value> {
    let (_, pending) = srv.call("GET", "/api/v1/decisions/pending", None);
    pending.as_array().map_or(Vec::new(), |a| a.iter().filter(|p| p["asset_id"] == asset).cloned().collect())
}

/// Posts `lines` as NDJSON batches (20 simulated minutes each, some idle time between them)
/// until `until` holds; returns how many were posted.
fn post_until(srv: &Server, lines: &[String], mut until: impl FnMut() -> bool) -> usize {
    let mut posted = 0;
    for chunk in lines.chunks(720) {
        let (status, v) = srv.call_ndjson("/api/v1/readings", &chunk.join("\n"));
        assert_eq!(status, 202, "{v}");
        posted += chunk.len();
        let deadline = Instant::now() + Duration::from_millis(1200);
        while Instant::now() < deadline {
            if until() {
                return posted;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    posted
}

#[test]
fn people_s_decisions_flow_back_into_the_dataflow() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let lines = degrading_asset(dir.path(), "press", 12.0);
    let srv = Server::start(&data, &["--source", "ingest", "--workers", "2"]);
    // The asset degrades: the pipeline proposes maintenance and asks for a decision.
    let posted = post_until(&srv, &lines, || !pending_for(&srv, "press-0001").is_empty());
    let first = pending_for(&srv, "press-0001");
    assert_eq!(first.len(), 1, "one proposal at a time: {first:?} ({posted} readings posted)");
    let (request, proposal) = (first[0]["request_id"].as_str().unwrap(), first[0]["proposal_id"].as_str().unwrap());
    assert!(proposal.ends_with("-p1"), "{proposal}");
    let (status, v) =
        srv.call("POST", &format!("/api/v1/decisions/{request}"), Some(r#"{"decision":"approve","operator":"ann"}"#));
    assert_eq!(status, 201, "{v}");
    let (status, v) = srv.call("POST", &format!("/api/v1/maintenance/{proposal}/complete"), Some(r#"{"performed_by":"bob"}"#));
    assert_eq!(status, 201, "{v}");
    // Completed maintenance closed the proposal and restarted the asset's baselines: as the
    // asset keeps degrading (the simulator does not know of the repair), it is proposed again.
    let more = post_until(&srv, &lines[posted..], || {
        pending_for(&srv, "press-0001").iter().any(|p| p["proposal_id"] == "press-0001-p2")
    });
    eprintln!("first proposal after {posted} readings, the second {more} readings later, of {}", lines.len());
    let second = pending_for(&srv, "press-0001");
    assert!(second.iter().any(|p| p["proposal_id"] == "press-0001-p2"), "no second proposal after the repair: {second:?}");
    assert!(srv.stop().success());
}

fn incidents_of(srv: &Server, asset: &str, q: &str) -> Vec<serde_json::Value> {
    let (status, v) = srv.call("GET", &format!("/api/v1/incidents?status=all&limit=1000&asset_id={asset}{q}"), None);
    assert_eq!(status, 200, "{v}");
    v.as_array().unwrap().clone()
}

#[test]
fn alarms_in_approved_maintenance_are_recorded_as_suppressed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Up to a minute ago: the work is planned hours after the proposal, inside the readings.
    let lines = degrading_asset_until(dir.path(), "mill", 16.0, 60_000);
    let srv = Server::start(&data, &["--source", "ingest", "--workers", "2"]);
    let posted = post_until(&srv, &lines, || !pending_for(&srv, "mill-0001").is_empty());
    let pending = pending_for(&srv, "mill-0001");
    assert_eq!(pending.len(), 1, "{pending:?} ({posted} readings posted)");
    // Before the decision, the degrading asset's alarms are incidents planners see.
    let before = incidents_of(&srv, "mill-0001", "");
    assert!(!before.is_empty() && before.iter().all(|i| i["suppressed"] == false), "{before:?}");
    let request = pending[0]["request_id"].as_str().unwrap();
    let (status, v) =
        srv.call("POST", &format!("/api/v1/decisions/{request}"), Some(r#"{"decision":"approve","operator":"ann"}"#));
    assert_eq!(status, 201, "{v}");
    let start = v["schedule"]["scheduled_for"].as_i64().unwrap();
    // Readings go on past the work's planned start: what the asset raises from then on lies in
    // the maintenance window, recorded but suppressed.
    let suppressed_seen = || incidents_of(&srv, "mill-0001", "").iter().any(|i| i["suppressed"] == true);
    let more = post_until(&srv, &lines[posted..], suppressed_seen);
    // Every reading is accepted by now, but a loaded machine's graph may still be hours of event
    // time behind the last one: give it time to reach the window before judging.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !suppressed_seen() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    let all = incidents_of(&srv, "mill-0001", "");
    let suppressed: Vec<&serde_json::Value> = all.iter().filter(|i| i["suppressed"] == true).collect();
    let brief: Vec<String> = all
        .iter()
        .map(|i| {
            format!(
                "{} {}..{} {} suppressed={}",
                i["incident_id"], i["opened_at"], i["last_evidence_at"], i["status"], i["suppressed"]
            )
        })
        .collect();
    assert!(
        !suppressed.is_empty(),
        "no suppressed incident in {more} more readings after the approval (work from {start}): {brief:#?}"
    );
    for i in &suppressed {
        assert!(i["opened_at"].as_i64().unwrap() >= start, "suppressed before the window: {i}");
        assert!(i["summary"].as_str().unwrap().contains("suppressed"), "{i}");
    }
    // Left out of the list when asked, kept in the history table.
    assert!(incidents_of(&srv, "mill-0001", "&include_suppressed=false").iter().all(|i| i["suppressed"] == false));
    let rows = srv.sql("SELECT count(*) AS n FROM incidents WHERE asset_id = 'mill-0001' AND suppressed");
    assert!(rows[0]["n"].as_u64().unwrap() >= 1, "{rows:?}");
    assert!(srv.stop().success());
}

#[test]
fn a_file_source_is_fed_once_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let input = dir.path().join("in.jsonl");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&readings(0, 120)).unwrap();
    let mut text: String = rows.iter().map(|r| r.to_string() + "\n").collect();
    text.push_str("{\"sensor_id\": \"p1-temp\", \"value\": \"hot\"}\n");
    std::fs::write(&input, text).unwrap();
    let args = ["--source", "file", "--input", input.to_str().unwrap(), "--workers", "2"];
    let srv = Server::start(&data, &args);
    // Up to the watermark (the newest minute less the lateness), everything is in the history.
    wait_for("the file in the history", || srv.sql("SELECT count(*) AS n FROM readings")[0]["n"].as_u64().unwrap_or(0) >= 236);
    assert!(srv.stop().success());
    let srv = Server::start(&data, &args);
    std::thread::sleep(Duration::from_secs(2));
    let rows = srv.sql("SELECT count(*) AS n, count(DISTINCT reading_id) AS d FROM readings");
    assert_eq!(rows[0]["n"], rows[0]["d"], "no reading stored twice");
    let rejected = srv.sql("SELECT reason FROM rejected");
    assert_eq!(rejected.len(), 1, "the file was fed once, its bad line dead-lettered once: {rejected:?}");
    assert!(srv.stop().success());
}

/// Signs in to the console with the test key; the session cookie.
fn console_cookie(srv: &Server) -> String {
    let mut s = TcpStream::connect(&srv.addr).unwrap();
    let body = format!("key={KEY}&next=/fleet");
    let req = format!(
        "POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let line = text.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).expect("a session cookie");
    line.split_once(':').unwrap().1.trim().split(';').next().unwrap().to_string()
}

/// A console page, signed in.
fn console_page(srv: &Server, cookie: &str, path: &str) -> String {
    let mut s = TcpStream::connect(&srv.addr).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: {cookie}\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        serving::dechunk(body)
    } else {
        body.to_string()
    }
}

/// A fresh live fleet (real time: no prediction for minutes) is on the fleet, every asset the
/// sensors list knows, warming up — in `GET /api/v1/fleet` and on the console's fleet page.
#[test]
fn assets_without_a_prediction_are_on_the_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let srv = Server::start(
        &data,
        &["--source", "simulator", "--assets", "3", "--interval-ms", "1000", "--speed", "1", "--hours", "1"],
    );
    wait_for("the simulator's sensors in the history", || {
        let (s, v) = srv.call("GET", "/api/v1/sensors", None);
        s == 200 && v["sensors"].as_array().is_some_and(|a| a.len() == 18)
    });
    let (_, sensors) = srv.call("GET", "/api/v1/sensors", None);
    let mut known: Vec<String> =
        sensors["sensors"].as_array().unwrap().iter().map(|s| s["asset_id"].as_str().unwrap().to_string()).collect();
    known.sort();
    known.dedup();
    assert_eq!(known.len(), 3, "{sensors}");
    let (status, fleet) = srv.call("GET", "/api/v1/fleet", None);
    assert_eq!(status, 200, "{fleet}");
    let assets = fleet["assets"].as_array().unwrap();
    let mut listed: Vec<String> = assets.iter().map(|a| a["asset_id"].as_str().unwrap().to_string()).collect();
    listed.sort();
    assert_eq!(listed, known, "every asset that sends readings is on the fleet: {fleet}");
    let (_, predictions) = srv.call("GET", "/api/v1/predictions", None);
    for a in assets {
        let id = a["asset_id"].as_str().unwrap();
        let predicted = predictions.as_array().unwrap().iter().any(|p| p["asset_id"] == id);
        if !predicted {
            assert_eq!(a["status"], "warming_up", "{a}");
            assert_eq!(a["health"], serde_json::Value::Null, "{a}");
        }
    }
    assert!(assets.iter().any(|a| a["status"] == "warming_up"), "a minute in, no asset has a prediction yet: {fleet}");
    let page = console_page(&srv, &console_cookie(&srv), "/fleet");
    for id in &known {
        assert!(page.contains(&format!("data-asset=\"{id}\"")), "{id} is not on the fleet page");
    }
    assert!(page.contains("warming up"), "the status in words");
    assert!(srv.stop().success());
}

/// Reads `GET /api/v1/pipeline`.
fn pipeline_status(srv: &Server) -> serde_json::Value {
    let (status, v) = srv.call("GET", "/api/v1/pipeline", None);
    assert_eq!(status, 200, "{v}");
    v
}

fn n(v: &serde_json::Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or_else(|| panic!("{field} in {v}"))
}

/// Checks the accounting of a status: every record read is stored, dead-lettered, waiting for
/// the watermark, re-delivered, or read since the last commit.
fn assert_accounted(v: &serde_json::Value) {
    let rejected: u64 = v["rejected"].as_object().unwrap().values().map(|x| x.as_u64().unwrap()).sum();
    assert_eq!(n(v, "records_in"), n(v, "committed_in") + n(v, "read_since_commit"), "{v}");
    assert_eq!(
        n(v, "committed_in") + n(v, "carried_over"),
        n(v, "accepted") + rejected + n(v, "waiting") + n(v, "redelivered"),
        "every record of the last commit accounted for: {v}"
    );
}

/// The pipeline's counts add up (`GET /api/v1/pipeline`, `/metrics` and the console's page say
/// the same): records in = accepted + rejected (by reason) + waiting for the watermark (+ read
/// since the last commit), across a restart that carries waiting readings over.
#[test]
fn every_record_the_pipeline_reads_is_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let srv = Server::start(&data, &["--source", "ingest", "--workers", "2"]);
    // Two sensors, a reading a minute, from two hours ago (one clock for the whole test).
    let t0 = vigil_now_minute() - 120;
    let batch = |from: i64, to: i64| {
        let rows: Vec<serde_json::Value> = (from..to)
            .flat_map(|m| {
                ["p1-temp", "p2-temp"].into_iter().map(move |s| {
                    serde_json::json!({
                        "sensor_id": s, "asset_id": &s[..2], "sensor_type": "temperature",
                        "value": 40.0 + (m % 7) as f64, "unit": "C", "ts": (t0 + m) * 60_000,
                    })
                })
            })
            .collect();
        serde_json::to_string(&rows).unwrap()
    };
    // 120 good readings; between their halves a duplicate of the newest so far (within the
    // lateness: the sensor stage finds it), a bad record and one an hour too late.
    let duplicate = serde_json::from_str::<serde_json::Value>(&batch(29, 30)).unwrap()[0].clone();
    let late = serde_json::json!([{
        "sensor_id": "p1-temp", "asset_id": "p1", "sensor_type": "temperature", "value": 40.0, "unit": "C",
        "ts": (t0 - 60) * 60_000,
    }]);
    for body in [
        batch(0, 30),
        serde_json::json!([duplicate]).to_string(),
        r#"[{"sensor_id": "p1-temp", "value": "hot"}]"#.to_string(),
        late.to_string(),
        batch(30, 60),
    ] {
        assert_eq!(srv.call("POST", "/api/v1/readings", Some(&body)).0, 202);
    }
    wait_for("a commit covering all 123 records", || {
        let v = pipeline_status(&srv);
        n(&v, "committed_in") == 123 && n(&v, "read_since_commit") == 0
    });
    let v = pipeline_status(&srv);
    assert_accounted(&v);
    assert!(n(&v, "waiting") > 0, "the newest readings wait for the watermark: {v}");
    assert_eq!(n(&v, "accepted") + n(&v, "waiting"), 120, "the good readings are stored or waiting: {v}");
    let rejected = v["rejected"].as_object().unwrap();
    assert_eq!(rejected.values().map(|x| x.as_u64().unwrap()).sum::<u64>(), 3, "{v}");
    assert_eq!(rejected.get("duplicate").and_then(|x| x.as_u64()), Some(1), "{v}");
    assert_eq!(rejected.get("too_late").and_then(|x| x.as_u64()), Some(1), "{v}");
    // The history holds what was accepted, the dead letters what was rejected.
    assert_eq!(srv.sql("SELECT count(*) AS n FROM readings")[0]["n"].as_u64(), Some(n(&v, "accepted")));
    assert_eq!(srv.sql("SELECT count(*) AS n FROM rejected")[0]["n"].as_u64(), Some(3));
    // The metrics say the same.
    assert_eq!(value(&srv, "vigil_readings_waiting") as u64, n(&v, "waiting"));
    assert_eq!(value(&srv, "vigil_records_committed_total") as u64, 123);
    // So does the console's pipeline page.
    let page = console_page(&srv, &console_cookie(&srv), "/pipeline");
    for field in ["records_in", "committed_in", "read_since_commit", "accepted", "rejected", "waiting"] {
        let marker = format!("data-field=\"{field}\">");
        let at = page.find(&marker).unwrap_or_else(|| panic!("{field} is not on the page")) + marker.len();
        let shown: u64 = page[at..].split('<').next().unwrap().trim().parse().unwrap();
        let want = if field == "rejected" { 3 } else { n(&v, field) };
        assert_eq!(shown, want, "{field} on the page");
    }
    assert!(!page.contains("does not add up"));
    let waiting = n(&v, "waiting");
    assert!(srv.stop().success());

    // Restarted: the waiting readings come over from the checkpoint, and are accounted for.
    let srv = Server::start(&data, &["--source", "ingest", "--workers", "2"]);
    wait_for("the checkpoint's waiting readings taken over", || n(&pipeline_status(&srv), "carried_over") == waiting);
    assert_eq!(n(&pipeline_status(&srv), "records_in"), 0);
    assert_eq!(srv.call("POST", "/api/v1/readings", Some(&batch(60, 90))).0, 202);
    wait_for("a commit covering the second batch", || {
        let v = pipeline_status(&srv);
        n(&v, "committed_in") == 60 && n(&v, "read_since_commit") == 0
    });
    let v = pipeline_status(&srv);
    assert_accounted(&v);
    assert_eq!(n(&v, "accepted") + n(&v, "waiting"), 60 + waiting, "{v}");
    assert!(srv.stop().success());
}

#[test]
fn incidents_are_listed_explained_acknowledged_and_shelved_durably() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let (ok, out, err) = vigil(&["demo", "--data-dir", d, "--assets", "6", "--hours", "2", "--seed", "5", "--json"]);
    assert!(ok, "{err}");
    let summary: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let n = summary["incidents"].as_u64().unwrap();
    assert!(n > 0, "{summary}");

    let srv = Server::start(&data, &["--no-pipeline"]);
    // The demo's run closed every incident: none open, all of them listed with status=all.
    let (status, open) = srv.call("GET", "/api/v1/incidents", None);
    assert_eq!((status, open.as_array().map(Vec::len)), (200, Some(0)), "{open}");
    let (status, all) = srv.call("GET", "/api/v1/incidents?status=all&limit=1000", None);
    assert_eq!(status, 200, "{all}");
    let all = all.as_array().unwrap().clone();
    assert_eq!(all.len() as u64, n, "one item per incident, its latest revision");
    let first = &all[0];
    assert_eq!(first["status"], "closed");
    assert!(first["sensors"].as_array().is_some_and(|s| !s.is_empty()), "{first}");
    assert!(first["summary"].as_str().unwrap().contains(first["asset_id"].as_str().unwrap()), "{first}");
    let id = first["incident_id"].as_str().unwrap().to_string();

    // One incident: its revisions and its evidence.
    let (status, one) = srv.call("GET", &format!("/api/v1/incidents/{id}"), None);
    assert_eq!(status, 200, "{one}");
    let revisions = one["revisions"].as_array().unwrap();
    assert_eq!(revisions.first().unwrap()["status"], "open");
    assert_eq!(revisions.last().unwrap()["status"], "closed");
    assert!(one["anomalies"].as_array().unwrap().len() as u64 >= first["anomalies"].as_u64().unwrap().min(1), "{one}");
    let (status, _) = srv.call("GET", "/api/v1/incidents/incident-0000000000000000", None);
    assert_eq!(status, 404);

    // Acknowledge, then shelve for an hour: it leaves the list unless asked for.
    let (status, ack) = srv.call("POST", &format!("/api/v1/incidents/{id}/acknowledge"), Some(r#"{"note": "on it"}"#));
    assert_eq!((status, ack["action"].as_str()), (201, Some("acknowledge")), "{ack}");
    let (status, sh) = srv.call("POST", &format!("/api/v1/incidents/{id}/shelve"), Some(r#"{"minutes": 60}"#));
    assert_eq!((status, sh["action"].as_str()), (201, Some("shelve")), "{sh}");
    let (status, bad) = srv.call("POST", &format!("/api/v1/incidents/{id}/shelve"), Some(r#"{"minutes": 0}"#));
    assert_eq!((status, bad["error"]["code"].as_str()), (422, Some("invalid_body")), "{bad}");
    let listed = |srv: &Server, q: &str| -> Vec<serde_json::Value> {
        let (status, v) = srv.call("GET", &format!("/api/v1/incidents?status=all&limit=1000{q}"), None);
        assert_eq!(status, 200, "{v}");
        v.as_array().unwrap().clone()
    };
    assert!(listed(&srv, "").iter().all(|i| i["incident_id"] != id.as_str()));
    let shelved = listed(&srv, "&include_shelved=true");
    let it = shelved.iter().find(|i| i["incident_id"] == id.as_str()).unwrap();
    assert_eq!((it["shelved"].as_bool(), it["handling"]["acknowledged_by"].as_str()), (Some(true), Some("env")), "{it}");
    // The audit trail is a table.
    let rows = srv.sql(&format!("SELECT action FROM incident_actions WHERE incident_id = '{id}' ORDER BY ts"));
    assert_eq!(rows.len(), 2, "{rows:?}");

    // Durable: after a restart the actions hold.
    srv.kill();
    let srv = Server::start(&data, &["--no-pipeline"]);
    let shelved = listed(&srv, "&include_shelved=true");
    let it = shelved.iter().find(|i| i["incident_id"] == id.as_str()).unwrap();
    assert_eq!(it["shelved"].as_bool(), Some(true), "{it}");
    let (status, _) = srv.call("POST", &format!("/api/v1/incidents/{id}/unshelve"), Some("{}"));
    assert_eq!(status, 201);
    assert!(listed(&srv, "").iter().any(|i| i["incident_id"] == id.as_str()));
}
