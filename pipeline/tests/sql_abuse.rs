//! SQL that tries to take the server down, against the real binary over real HTTP.
//!
//! - Deeply nested statements of growing size, up to the body limit (`1+1+…+1`, `OR` chains,
//!   `UNION ALL` branches, nested brackets, sub-queries, function calls, casts, joins), on
//!   `POST /api/v1/query`, the console's SQL page and `vigil sql`: each is answered (a result,
//!   or 400 `query_too_complex` / `bad_sql`), `vigil sql` exits with a status (no abort), and
//!   the server still answers `/health` after each.
//! - Memory bombs (`repeat('x', 2147483647)`, `lpad`, `replace`, aggregates of large strings,
//!   …) answer 413 `query_too_large`, and the server's peak RSS (`VmHWM`) stays below
//!   `[query] memory_limit_mb` plus the documented fixed overhead.
//! - The query pool: with one slot and no queue, a second statement while a heavy one runs is
//!   refused at once with 503 `query_busy` and `Retry-After`, and `/health` is answered.

#[path = "support/serving.rs"]
mod serving;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const KEY: &str = "test-admin-key";
/// `[api] body_limit_bytes` by default.
const BODY_LIMIT: usize = 1 << 20;
/// The fixed overhead above `[query] memory_limit_mb` the README documents.
const RSS_OVERHEAD_MB: u64 = 256;

fn vigil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
}

/// A small history made by `vigil demo`, shared by the tests of this file.
fn history() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let out = vigil()
            .args(["demo", "--data-dir", data.to_str().unwrap(), "--assets", "2", "--hours", "1", "--seed", "3", "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (dir, data)
    })
    .1
}

/// One server at a time: servers on one data dir share its planning ledger, which one process
/// holds at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Server {
    process: serving::ServerProcess,
    _serial: std::sync::MutexGuard<'static, ()>,
}

struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn code(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

impl Server {
    fn start(env: &[(&str, &str)]) -> Server {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let process = serving::ServerProcess::spawn(
            vigil()
                .args(["serve", "--data-dir", history().to_str().unwrap(), "--listen", "127.0.0.1:0", "--no-pipeline"])
                .env("VIGIL_API_KEY", KEY)
                .env("VIGIL_API__RATE_PER_SECOND", "100000")
                .env("VIGIL_API__RATE_BURST", "100000")
                .envs(env.iter().copied()),
        );
        Server { process, _serial: serial }
    }

    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        request(&self.process.addr, method, path, headers, body)
    }

    fn query(&self, sql: &str) -> Reply {
        query(&self.process.addr, sql)
    }

    fn health(&self) -> u16 {
        self.request("GET", "/health", &[], "").status
    }

    /// Peak resident memory of the server process (MiB).
    fn peak_rss_mb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        kb / 1024
    }
}

/// One request; status 0 when the connection failed or was dropped (the server died).
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let Ok(mut s) = TcpStream::connect(addr) else { return Reply { status: 0, head: String::new(), body: String::new() } };
    let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let _ = s.write_all(req.as_bytes());
    let _ = s.write_all(body.as_bytes());
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let body = if chunked { serving::dechunk(body) } else { body.to_string() };
    Reply { status, head: head.to_string(), body }
}

fn query(addr: &str, sql: &str) -> Reply {
    let body = serde_json::json!({ "sql": sql }).to_string();
    let auth = format!("Bearer {KEY}");
    request(addr, "POST", "/api/v1/query", &[("Authorization", &auth), ("Content-Type", "application/json")], &body)
}

/// Nested statements of each kind, growing by tens up to `max_bytes` of SQL.
fn deep_statements(max_bytes: usize) -> Vec<(String, usize, String)> {
    type Make = fn(usize) -> String;
    let kinds: [(&str, usize, Make); 9] = [
        ("sum", 2, |n| format!("SELECT 1{}", "+1".repeat(n))),
        ("or", 8, |n| format!("SELECT 1 WHERE false{}", " OR true".repeat(n))),
        ("and", 9, |n| format!("SELECT 1 WHERE true{}", " AND true".repeat(n))),
        ("union", 17, |n| format!("SELECT 1{}", " UNION ALL SELECT 1".repeat(n))),
        ("brackets", 2, |n| format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n))),
        ("subqueries", 9, |n| format!("SELECT {}1{}", "(SELECT ".repeat(n), ")".repeat(n))),
        ("functions", 5, |n| format!("SELECT {}1{}", "abs(".repeat(n), ")".repeat(n))),
        ("casts", 8, |n| format!("SELECT 1{}", "::BIGINT".repeat(n))),
        ("joins", 40, |n| {
            let joins: String = (0..n).map(|i| format!(" JOIN generate_series(1, 1) r{i} ON true")).collect();
            format!("SELECT 1 FROM generate_series(1, 1) r{joins}")
        }),
    ];
    let mut out = Vec::new();
    for (kind, bytes_each, make) in kinds {
        let mut n = 10;
        loop {
            let last = n * bytes_each >= max_bytes;
            let n_here = if last { max_bytes / bytes_each - 4 } else { n };
            out.push((kind.to_string(), n_here, make(n_here)));
            if last {
                break;
            }
            n *= 10;
        }
    }
    out
}

#[test]
fn deep_sql_never_aborts_the_server_on_rest() {
    let srv = Server::start(&[]);
    // The JSON wrapper of the body takes a few bytes; the rest is the statement.
    for (kind, n, sql) in deep_statements(BODY_LIMIT - 64) {
        let r = srv.query(&sql);
        assert!(
            r.status == 200
                || (r.status == 400 && ["query_too_complex", "bad_sql"].contains(&r.code().as_str()))
                || (r.status == 413 && r.code() == "payload_too_large"),
            "{kind} x{n}: {} {}",
            r.status,
            r.body.chars().take(300).collect::<String>()
        );
        if r.status != 413 && n >= 1000 && ["sum", "or", "and", "union", "casts", "joins"].contains(&kind.as_str()) {
            assert_eq!(r.code(), "query_too_complex", "{kind} x{n}: {}", r.body);
        }
        if n == 10 {
            assert_eq!(r.status, 200, "{kind} x{n}: {}", r.body);
        }
        assert_eq!(srv.health(), 200, "the server died after {kind} x{n}");
    }
}

fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[test]
fn deep_sql_never_aborts_the_server_on_the_console() {
    let srv = Server::start(&[]);
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let r = srv.request("POST", "/login", &[form], &format!("key={KEY}&next=/sql"));
    assert_eq!(r.status, 303, "{}", r.body);
    let cookie = r
        .head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_string();
    let page = srv.request("GET", "/sql", &[("Cookie", &cookie)], "").body;
    let at = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    let csrf = page[at..].split('"').next().unwrap().to_string();
    // Each character of the statement takes up to three bytes of the form.
    for (kind, n, sql) in deep_statements(BODY_LIMIT / 3 - 64) {
        let body = format!("csrf={csrf}&sql={}", url_encode(&sql));
        let r = srv.request("POST", "/sql", &[form, ("Cookie", &cookie)], &body);
        assert!(r.status == 200 || r.status == 400, "{kind} x{n}: {} {}", r.status, r.body.chars().take(300).collect::<String>());
        if n >= 1000 && ["sum", "or", "union"].contains(&kind.as_str()) {
            assert!(r.body.contains("query_too_complex"), "{kind} x{n}: {}", r.body.chars().take(2000).collect::<String>());
        }
        assert_eq!(srv.health(), 200, "the server died after {kind} x{n}");
    }
}

#[test]
fn deep_sql_never_aborts_vigil_sql() {
    let data = history().to_str().unwrap();
    for (kind, n, sql) in deep_statements(BODY_LIMIT) {
        // Large statements on stdin (an argument is limited to 128 KiB).
        let mut child = vigil()
            .args(["sql", "--data-dir", data, "--format", "csv"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(sql.as_bytes());
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.code().is_some(), "{kind} x{n}: vigil sql was killed ({:?}): {err}", out.status);
        if n >= 1000 && ["sum", "or", "and", "union", "casts", "joins"].contains(&kind.as_str()) {
            assert!(!out.status.success() && err.contains("too complex"), "{kind} x{n}: {err}");
        }
        if n == 10 {
            assert!(out.status.success(), "{kind} x{n}: {err}");
        }
    }
}

#[test]
fn memory_bombs_answer_413_and_the_server_stays_within_its_memory() {
    let limit_mb = 256;
    let srv = Server::start(&[("VIGIL_QUERY__MEMORY_LIMIT_MB", "256")]);
    // Within the limit: answered.
    let r = srv.query("SELECT length(repeat('x', 5000)) AS n FROM generate_series(1, 20000)");
    assert_eq!((r.status, r.body.contains("5000")), (200, true), "{}", r.body.chars().take(300).collect::<String>());
    let before = srv.peak_rss_mb();
    // || doubling a value once per sub-query.
    let doubling = format!(
        "WITH s0 AS (SELECT repeat('x', 1000000) AS s), {} SELECT length(s) FROM s12",
        (1..=12).map(|i| format!("s{i} AS (SELECT s || s AS s FROM s{})", i - 1)).collect::<Vec<_>>().join(", ")
    );
    let literal = format!("SELECT '{}' FROM generate_series(1, 100000)", "x".repeat(500_000));
    for sql in [
        "SELECT repeat('x', 300000000)",
        "SELECT length(repeat(repeat('x', 100000), 100000))",
        "SELECT repeat('x', 100000) FROM generate_series(1, 100000)",
        "SELECT lpad('x', 2147483647)",
        "SELECT rpad('x', 1000000000, 'yz')",
        "SELECT replace(repeat('x', 10000000), 'x', repeat('y', 100))",
        "SELECT regexp_replace(repeat('x', 1000000), 'x', repeat('yy', 1000), 'g')",
        "SELECT length(string_agg(repeat('x', 20000), ',')) FROM generate_series(1, 20000)",
        "SELECT array_agg(repeat('x', 20000)) AS a FROM generate_series(1, 20000)",
        "SELECT length(string_agg(repeat('x', 20000), ',' ORDER BY value DESC)) FROM generate_series(1, 20000)",
        "SELECT length(string_agg(repeat('x', 20000), ',')) FROM generate_series(1, 20000) GROUP BY value % 2",
        "SELECT length(s), count(*) FROM (SELECT repeat('x', 10000) || CAST(value AS VARCHAR) AS s FROM generate_series(1, 30000)) GROUP BY s",
        doubling.as_str(),
        "SELECT repeat('x', 2147483647)",
        // A constant repeated on each row of a batch.
        literal.as_str(),
        "SELECT (SELECT repeat('x', 1000000)) FROM generate_series(1, 100000)",
    ] {
        let r = srv.query(sql);
        assert_eq!((r.status, r.code().as_str()), (413, "query_too_large"), "{sql}: {}", r.body.chars().take(300).collect::<String>());
        let peak = srv.peak_rss_mb();
        assert!(peak < limit_mb + RSS_OVERHEAD_MB, "{sql}: peak RSS {peak} MiB (before the bombs {before} MiB)");
        assert_eq!(srv.health(), 200);
    }
    eprintln!("peak RSS {} MiB with [query] memory_limit_mb = {limit_mb} (before the bombs {before} MiB)", srv.peak_rss_mb());
}

#[test]
fn a_full_query_pool_refuses_with_retry_after_and_health_still_answers() {
    let srv = Server::start(&[
        ("VIGIL_QUERY__MAX_CONCURRENT", "1"),
        ("VIGIL_QUERY__QUEUE_LENGTH", "0"),
        ("VIGIL_QUERY__TIMEOUT_MS", "4000"),
    ]);
    let addr = srv.process.addr.clone();
    let heavy = std::thread::spawn(move || {
        let r = query(&addr, "SELECT max(value % 7) AS m FROM generate_series(1, 100000000000)");
        (r.status, r.code())
    });
    std::thread::sleep(Duration::from_millis(800));
    let t = Instant::now();
    let r = srv.query("SELECT 1");
    assert_eq!((r.status, r.code().as_str()), (503, "query_busy"), "{}", r.body);
    assert!(r.head.to_ascii_lowercase().contains("retry-after: 1"), "{}", r.head);
    assert!(t.elapsed() < Duration::from_secs(3), "refused at once, not after waiting");
    assert_eq!(srv.health(), 200);
    assert_eq!(heavy.join().unwrap(), (504, "query_timeout".to_string()));
    // The slot is free again.
    assert_eq!(srv.query("SELECT 1").status, 200);
}
