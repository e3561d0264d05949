//! `vigil serve` under clients that race and clients that lie about time: the real binary, real
//! HTTP on an ephemeral port, the history read back with SQL after the pipeline commits.
//!
//! - 50 concurrent identical `POST /api/v1/readings` with one `Idempotency-Key`, five times over:
//!   exactly one append per key (one fresh answer, the rest the first one's answer), and the
//!   history holds each reading exactly once, with no duplicate dead letters.
//! - Readings whose time lies outside the one accepted range are dead letters `out_of_range`:
//!   no reading and no `date=` partition outside 1970…9999.
//! - `/ready` says what it is reading without saying where the disk is.

#[path = "support/serving.rs"]
mod serving;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const KEY: &str = "test-admin-key";

use serving::ServerProcess as Server;

impl Server {
    fn start(data: &Path) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
        cmd.args(["serve", "--data-dir", data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .args(["--source", "ingest", "--workers", "2"])
            .env("VIGIL_API_KEY", KEY)
            .env("VIGIL_KAFKA__COMMIT_INTERVAL_MS", "200")
            .env("VIGIL_PIPELINE__IDLE_TIMEOUT_MS", "300");
        Server::spawn(&mut cmd)
    }
}

struct Reply {
    status: u16,
    head: String,
    body: String,
}

fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {KEY}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or(""));
    s.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    let body = if head.contains("transfer-encoding: chunked") { serving::dechunk(body) } else { body.to_string() };
    Reply { status, head, body }
}

fn sql(addr: &str, q: &str) -> Vec<serde_json::Value> {
    let r = request(addr, "POST", "/api/v1/query", &[], Some(&serde_json::json!({ "sql": q }).to_string()));
    assert_eq!(r.status, 200, "{q}: {}", r.body);
    serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["rows"].as_array().unwrap().clone()
}

fn count(addr: &str, q: &str) -> u64 {
    sql(addr, q).first().and_then(|r| r["n"].as_u64()).unwrap_or(0)
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Directories under `dir` named `date=...`.
fn partitions(dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with("date=") {
                out.push(name);
            }
            partitions(&p, out);
        }
    }
}

#[test]
fn one_idempotency_key_appends_once_under_concurrency_and_bad_times_are_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let srv = Server::start(&data);
    let addr = srv.addr.clone();

    // Times outside 1970-01-01 … 9999-12-31, before any watermark could call them late.
    let bad = r#"[
        {"sensor_id": "p9-temp", "sensor_type": "temperature", "value": 40, "ts": -1},
        {"sensor_id": "p9-temp", "sensor_type": "temperature", "value": 41, "ts": "0001-01-01T00:00:00Z"},
        {"sensor_id": "p9-temp", "sensor_type": "temperature", "value": 42, "ts": 253402300800000}
    ]"#;
    let r = request(&addr, "POST", "/api/v1/readings", &[], Some(bad));
    assert_eq!(r.status, 202, "{}", r.body);

    let now_min = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 / 60;
    let t0 = now_min - 120;
    const TRIALS: i64 = 5;
    const CONCURRENT: usize = 50;
    for trial in 0..TRIALS {
        let body = Arc::new(serving::two_sensor_readings(t0, trial * 10, trial * 10 + 10));
        let key = Arc::new(format!("batch-{trial}-{}", std::process::id()));
        let barrier = Arc::new(Barrier::new(CONCURRENT));
        let threads: Vec<_> = (0..CONCURRENT)
            .map(|_| {
                let (addr, body, key, barrier) = (addr.clone(), body.clone(), key.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    request(&addr, "POST", "/api/v1/readings", &[("Idempotency-Key", &key)], Some(&body))
                })
            })
            .collect();
        let replies: Vec<Reply> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let fresh = replies.iter().filter(|r| r.status == 202 && !r.head.contains("idempotent-replayed: true")).count();
        let replayed = replies.iter().filter(|r| r.status == 202 && r.head.contains("idempotent-replayed: true")).count();
        let in_progress = replies.iter().filter(|r| r.status == 409 && r.body.contains("in_progress")).count();
        eprintln!("trial {trial}: {fresh} fresh, {replayed} replayed, {in_progress} in progress");
        assert_eq!(fresh, 1, "trial {trial}: exactly one request appends");
        assert_eq!(replayed + in_progress, CONCURRENT - 1, "trial {trial}: the others get its answer or 409");
        for r in replies.iter().filter(|r| r.status == 202) {
            assert!(r.body.contains("\"accepted\":20"), "the first one's answer: {}", r.body);
        }
    }
    // Later readings move the watermark past every trial's.
    let r = request(&addr, "POST", "/api/v1/readings", &[], Some(&serving::two_sensor_readings(t0, 100, 120)));
    assert_eq!(r.status, 202, "{}", r.body);
    let cut = (t0 + TRIALS * 10) * 60_000;
    let cut = vigil_events::format_rfc3339_ms(cut);
    let trials_q = format!("SELECT count(*) AS n FROM readings WHERE sensor_id IN ('p1-temp', 'p2-temp') AND ts < '{cut}'");
    let expected = (TRIALS * 10 * 2) as u64;
    wait_for("every trial's readings in the history", || count(&addr, &trials_q) >= expected);
    wait_for("the bad times as dead letters", || {
        count(&addr, "SELECT count(*) AS n FROM rejected WHERE sensor_id = 'p9-temp'") >= 3
    });
    // A few more commits: nothing arrives late.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(count(&addr, &trials_q), expected, "each reading exactly once");
    let dup = count(&addr, "SELECT count(*) AS n FROM rejected WHERE reason = 'duplicate'");
    assert_eq!(dup, 0, "no second append for the pipeline to deduplicate");

    let reasons = sql(&addr, "SELECT reason, count(*) AS n FROM rejected WHERE sensor_id = 'p9-temp' GROUP BY reason");
    assert_eq!(reasons, vec![serde_json::json!({"reason": "out_of_range", "n": 3})], "{reasons:?}");
    assert_eq!(count(&addr, "SELECT count(*) AS n FROM readings WHERE sensor_id = 'p9-temp'"), 0);
    let mut dates = Vec::new();
    partitions(&data, &mut dates);
    assert!(!dates.is_empty());
    for d in &dates {
        let year: i64 = d["date=".len()..].split('-').next().and_then(|y| y.parse().ok()).unwrap_or(-1);
        assert!((1970..=9999).contains(&year) && d.len() == "date=2026-01-01".len(), "partition {d}");
    }
    // Queries still answer JSON.
    let r = request(&addr, "GET", "/api/v1/fleet", &[], None);
    assert_eq!(r.status, 200, "{}", r.body);

    // /ready names its source without the data dir's path.
    let r = request(&addr, "GET", "/ready", &[], None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains(dir.path().to_str().unwrap()), "a path in /ready: {}", r.body);
    assert!(r.body.contains("_log"), "it still says what it reads: {}", r.body);
    drop(srv);
}
