//! `console_bench`: end-to-end timings of the web console of a running `vigil serve`, for
//! `benches/console.sh`. Two figures:
//!
//! - **Pages.** Signs in (`POST /login` with the key; the `vigil_session` cookie afterwards),
//!   then requests every console page in turn, `--requests` times each after 10 warm-up
//!   requests, one at a time over one keep-alive connection: `/fleet`, `/assets/{id}` (the
//!   first asset of the fleet table unless `--asset`), `/decisions`, `/anomalies`,
//!   `/anomalies?kind=drift`, `/golden`, `/pipeline`, `/models`, `/reports`, `/reports/view`
//!   (the fleet report), `/sql`, one `POST /sql` of a typical query (anomalies counted by
//!   asset; the CSRF token comes from the page's sign-out form) and `/simulator`. Every answer
//!   must be 200, or the run stops with the status and the start of the body. Prints p50, p99
//!   and max per page against the target (p99 under 100 ms), and the size of the body.
//! - **Live.** Opens the fleet page's event stream (`GET /fleet/live?since=x`: the first
//!   `update` comes at once) and reads it in a thread that timestamps each `update` as it
//!   completes and notes which `bench-live-…` assets its fleet table lists. Then `--live`
//!   times: posts one reading over the temperature limit for a new asset
//!   (`POST /api/v1/readings`, `Authorization: Bearer KEY`, event time now), and measures from
//!   just before the POST is sent to the first `update` whose table lists that asset. The
//!   asset names carry this run's tag (`bench-live-<tag>-<k>`), so that a second run over the
//!   same history starts from assets nobody posted. Samples are spaced 1 to 2 commit intervals
//!   apart (`--commit-interval-ms`, the server's `VIGIL_KAFKA__COMMIT_INTERVAL_MS`; 1.5 on
//!   average, the fractions spread evenly) so that each starts after the last one is seen, at
//!   a different point of the commit cycle. Target: p99 under 1 s.
//! - **Background readings.** The pipeline processes a reading once the watermark has passed
//!   it, that is once a reading with a later event time has arrived on every active partition
//!   (the watermark is the newest event time less the lateness, and only readings strictly
//!   before it go through). A lone reading on a quiet pipeline therefore waits, whatever the
//!   lateness, until the next reading arrives. So while it measures, the bench feeds what a
//!   fleet would: `--background` sensors (default 300, `bench-bg-<tag>-<i>`, six to an asset)
//!   reading once a second at event time now, a smooth value well inside the limits, posted
//!   in ten batches a second. The same thread posts the samples (between batches), so event
//!   times never go backwards in the log: with a lateness of 0, a reading behind its
//!   partition's newest would be rejected as too late.
//!
//! What the figures are: client-side wall time on loopback, requests sent one at a time, so
//! a page's time is the whole request (HTTP, session, the queries, rendering, transfer) with
//! no concurrency. The live time is ingest (the durable append the POST acknowledges), the
//! pipeline (the allowed lateness, which `benches/console.sh` sets to 0 with
//! `VIGIL_PIPELINE__LATENESS_MS=0`, and the next background batch, at most 100 ms away, to move
//! the watermark past the reading), the wait for the next commit (up to one commit interval),
//! the stream's poll (100 ms) and rendering the fleet table again.
//!
//! Usage: `console_bench --url http://ADDR --key KEY [--requests 200] [--asset ID] [--live 20]
//! [--commit-interval-ms 5000] [--background 300] [--json]`. The key (default `VIGIL_API_KEY`)
//! needs the read scope to sign in and the ingest scope to post readings (admin has both), and
//! a rate limit high enough for the load (`[api] rate_per_second`, `rate_burst`). `--live 0`
//! skips the live figure. Prints a table, or one JSON object with `--json`; progress goes to
//! stderr. Exits non-zero when a page fails or a live sample never shows.
//! `benches/console.sh` starts the server (release, 300 sensors, a day of history) and runs it.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Warm-up requests a page before measuring.
const WARMUP: usize = 10;
/// Target p99 of a page, in ms.
const PAGE_TARGET_MS: f64 = 100.0;
/// Target of the live latency, in ms.
const LIVE_TARGET_MS: f64 = 1000.0;
/// The query of the `POST /sql` "page".
const SQL: &str = "SELECT asset_id, count(*) AS n FROM anomalies GROUP BY asset_id ORDER BY n DESC";
/// Read timeout of a page request (a hung server fails the run instead of hanging it).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// How the live assets' names start.
const LIVE_PREFIX: &str = "bench-live-";
/// Background batches a second (each sensor reads once a second, in one of them).
const BACKGROUND_TICKS_PER_S: u64 = 10;

type Result<T> = std::result::Result<T, String>;

struct Args {
    addr: String,
    key: String,
    requests: usize,
    asset: Option<String>,
    live: usize,
    background: usize,
    commit_interval_ms: u64,
    json: bool,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        addr: "127.0.0.1:8080".into(),
        key: std::env::var("VIGIL_API_KEY").unwrap_or_default(),
        requests: 200,
        asset: None,
        live: 20,
        background: 300,
        commit_interval_ms: 5000,
        json: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--json" {
            a.json = true;
            continue;
        }
        let v = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |what: &str| v.parse::<u64>().map_err(|_| format!("{what}: {v:?} is not a whole number"));
        match flag.as_str() {
            "--url" => a.addr = addr_of(&v)?,
            "--key" => a.key = v,
            "--requests" => a.requests = number("--requests")? as usize,
            "--asset" => a.asset = Some(v),
            "--live" => a.live = number("--live")? as usize,
            "--background" => a.background = number("--background")? as usize,
            "--commit-interval-ms" => a.commit_interval_ms = number("--commit-interval-ms")?.max(1),
            other => return Err(format!("unknown argument {other} (see the top of console_bench.rs)")),
        }
    }
    if a.key.is_empty() {
        return Err("give --key KEY (or set VIGIL_API_KEY)".into());
    }
    if a.requests == 0 {
        return Err("--requests must be at least 1".into());
    }
    Ok(a)
}

/// `http://HOST:PORT[/]` (or a bare `HOST:PORT`) → `HOST:PORT`.
fn addr_of(url: &str) -> Result<String> {
    if url.starts_with("https://") {
        return Err(format!("--url {url}: only plain http is supported"));
    }
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let addr = rest.split('/').next().unwrap_or_default();
    if addr.is_empty() || !addr.contains(':') {
        return Err(format!("--url {url}: expected http://HOST:PORT"));
    }
    Ok(addr.to_string())
}

/// `%`-encodes all but unreserved characters (form bodies, path segments).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An answer: status, headers (names in lower case), the body (de-chunked).
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body's start, for error messages.
    fn excerpt(&self) -> String {
        let t = self.text();
        // The message of a console error page is in its alert.
        let from = t.find("role=\"alert\"").unwrap_or(0);
        let t: String = t[from..].chars().take(400).collect();
        t.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

fn bad_data(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

/// Reads a status line and the headers.
fn read_head(r: &mut impl BufRead) -> std::io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the server closed the connection"));
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad_data(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection in the headers",
            ));
        }
        let l = line.trim_end();
        if l.is_empty() {
            return Ok((status, headers));
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
}

/// One chunk of a chunked body; `None` after the last (trailers read).
fn read_chunk(r: &mut impl BufRead) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the server closed the connection in a chunked body"));
    }
    let size = line.split(';').next().unwrap_or_default().trim();
    let n = usize::from_str_radix(size, 16).map_err(|_| bad_data(format!("bad chunk size line {line:?}")))?;
    if n == 0 {
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
                return Ok(None);
            }
        }
    }
    let mut chunk = vec![0u8; n];
    r.read_exact(&mut chunk)?;
    let mut crlf = [0u8; 2];
    r.read_exact(&mut crlf)?;
    Ok(Some(chunk))
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"))
}

/// Sends one request and reads the whole answer; also whether the connection may be used again.
fn exchange(conn: &mut BufReader<TcpStream>, request: &[u8]) -> std::io::Result<(Reply, bool)> {
    conn.get_mut().write_all(request)?;
    let (status, headers) = read_head(conn)?;
    let mut keep = !headers.iter().any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"));
    let length = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse::<usize>().ok());
    let mut body = Vec::new();
    if (100..200).contains(&status) || status == 204 || status == 304 {
        // No body.
    } else if is_chunked(&headers) {
        while let Some(chunk) = read_chunk(conn)? {
            body.extend_from_slice(&chunk);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        conn.read_exact(&mut body)?;
    } else {
        conn.read_to_end(&mut body)?;
        keep = false;
    }
    Ok((Reply { status, headers, body }, keep))
}

fn connect(addr: &str) -> Result<BufReader<TcpStream>> {
    let s = TcpStream::connect(addr).map_err(|e| format!("connecting to {addr}: {e}"))?;
    s.set_nodelay(true).map_err(|e| format!("TCP_NODELAY: {e}"))?;
    s.set_read_timeout(Some(REQUEST_TIMEOUT)).map_err(|e| format!("read timeout: {e}"))?;
    Ok(BufReader::with_capacity(64 * 1024, s))
}

/// An HTTP/1.1 client of one server over one keep-alive connection (opened again when the
/// server has closed it).
struct Client {
    addr: String,
    conn: Option<BufReader<TcpStream>>,
    /// `Cookie` header value once signed in.
    cookie: Option<String>,
}

impl Client {
    fn new(addr: &str) -> Client {
        Client { addr: addr.to_string(), conn: None, cookie: None }
    }

    fn head(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
        let mut h = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        if let Some(c) = &self.cookie {
            h.push_str(&format!("Cookie: {c}\r\n"));
        }
        for (k, v) in headers {
            h.push_str(&format!("{k}: {v}\r\n"));
        }
        if method != "GET" {
            h.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        h.push_str("\r\n");
        let mut out = h.into_bytes();
        out.extend_from_slice(body);
        out
    }

    /// One request. A failure on a reused connection (the server may have closed it while
    /// idle) is tried once more on a new one.
    fn call(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Reply> {
        let request = self.head(method, path, headers, body);
        let mut retried = false;
        loop {
            let reused = self.conn.is_some();
            let mut conn = match self.conn.take() {
                Some(c) => c,
                None => connect(&self.addr)?,
            };
            match exchange(&mut conn, &request) {
                Ok((reply, keep)) => {
                    if keep {
                        self.conn = Some(conn);
                    }
                    return Ok(reply);
                }
                Err(_) if reused && !retried => retried = true,
                Err(e) => return Err(format!("{method} {path}: {e}")),
            }
        }
    }

    fn get(&mut self, path: &str) -> Result<Reply> {
        self.call("GET", path, &[], &[])
    }

    fn post_form(&mut self, path: &str, form: &str) -> Result<Reply> {
        self.call("POST", path, &[("Content-Type", "application/x-www-form-urlencoded")], form.as_bytes())
    }
}

/// Signs in with the key: the session cookie goes on every later request of `c`.
fn sign_in(c: &mut Client, key: &str) -> Result<()> {
    let r = c.post_form("/login", &format!("key={}&next=%2Ffleet", encode(key)))?;
    if r.status != 303 {
        return Err(format!("POST /login: {} (expected 303): {}", r.status, r.excerpt()));
    }
    let token = r
        .headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .find_map(|(_, v)| v.split(';').next()?.trim().strip_prefix("vigil_session=").map(str::to_string))
        .filter(|t| !t.is_empty())
        .ok_or("POST /login: no vigil_session cookie in the answer")?;
    c.cookie = Some(format!("vigil_session={token}"));
    Ok(())
}

/// The value of the first `attr="…"` after `after` in `html`.
fn attr_after(html: &str, after: &str) -> Option<String> {
    let i = html.find(after)? + after.len();
    let rest = &html[i..];
    Some(rest[..rest.find('"')?].to_string())
}

/// The asset names of a fleet table that start with `prefix`.
fn listed_assets(html: &str, prefix: &str) -> HashSet<String> {
    let marker = format!("data-asset=\"{prefix}");
    let mut out = HashSet::new();
    let mut rest = html;
    while let Some(i) = rest.find(&marker) {
        let name = &rest[i + "data-asset=\"".len()..];
        let end = name.find('"').unwrap_or(name.len());
        out.insert(name[..end].to_string());
        rest = &name[end..];
    }
    out
}

/// Percentile (nearest rank, as `api_load`) of sorted samples, in ms.
fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    ms(sorted[i.min(sorted.len() - 1)])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One page's figures.
struct PageResult {
    page: String,
    p50: f64,
    p99: f64,
    max: f64,
    bytes: usize,
}

/// A console page to time.
struct Page {
    label: String,
    method: &'static str,
    path: String,
    form: String,
}

/// `n` timed requests of a page after the warm-up; every answer must be 200.
fn time_page(c: &mut Client, page: &Page, n: usize) -> Result<PageResult> {
    let mut times = Vec::with_capacity(n);
    let mut bytes = 0;
    for i in 0..WARMUP + n {
        let t = Instant::now();
        let r = match page.method {
            "POST" => c.post_form(&page.path, &page.form)?,
            _ => c.get(&page.path)?,
        };
        let took = t.elapsed();
        if r.status != 200 {
            let hint = if r.status == 429 { " (raise [api] rate_per_second and rate_burst)" } else { "" };
            return Err(format!("{}: status {}{hint}: {}", page.label, r.status, r.excerpt()));
        }
        if i >= WARMUP {
            times.push(took);
        }
        bytes = r.body.len();
    }
    times.sort_unstable();
    Ok(PageResult {
        page: page.label.clone(),
        p50: pct(&times, 50.0),
        p99: pct(&times, 99.0),
        max: times.last().map_or(0.0, |d| ms(*d)),
        bytes,
    })
}

/// What the stream's reader thread reports.
enum LiveMsg {
    /// An `update` event, complete at `at`: its size, the fleet table's rows, the live assets it lists.
    Update { at: Instant, bytes: usize, rows: usize, assets: HashSet<String> },
    /// A `problem` event.
    Problem(String),
    /// The stream ended.
    Closed(String),
}

/// A server-sent event.
struct SseEvent {
    event: String,
    data: String,
}

/// Splits a byte stream into server-sent events.
#[derive(Default)]
struct SseParser {
    pending: Vec<u8>,
    event: String,
    data: Vec<String>,
}

impl SseParser {
    fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(nl) = self.pending.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = self.pending.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() || !self.event.is_empty() {
                    let event = if self.event.is_empty() { "message".to_string() } else { std::mem::take(&mut self.event) };
                    out.push(SseEvent { event, data: self.data.join("\n") });
                }
                self.event.clear();
                self.data.clear();
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.event = value.to_string(),
                "data" => self.data.push(value.to_string()),
                _ => {}
            }
        }
        out
    }
}

/// Reads the event stream until it ends, reporting each `update` and `problem`.
fn read_stream(mut conn: BufReader<TcpStream>, chunked: bool, tx: &mpsc::Sender<LiveMsg>) {
    let mut parser = SseParser::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let got = if chunked {
            read_chunk(&mut conn).map(|c| c.unwrap_or_default())
        } else {
            conn.read(&mut buf).map(|n| buf[..n].to_vec())
        };
        let bytes = match got {
            Ok(b) if b.is_empty() => {
                let _ = tx.send(LiveMsg::Closed("the server ended the event stream".into()));
                return;
            }
            Ok(b) => b,
            Err(e) => {
                let _ = tx.send(LiveMsg::Closed(format!("reading the event stream: {e}")));
                return;
            }
        };
        let at = Instant::now();
        for ev in parser.feed(&bytes) {
            let msg = match ev.event.as_str() {
                "update" => LiveMsg::Update {
                    at,
                    bytes: ev.data.len(),
                    rows: ev.data.matches("data-asset=\"").count(),
                    assets: listed_assets(&ev.data, LIVE_PREFIX),
                },
                "problem" => LiveMsg::Problem(ev.data),
                _ => continue,
            };
            if tx.send(msg).is_err() {
                return;
            }
        }
    }
}

/// The live figure.
struct LiveResult {
    samples: usize,
    background: usize,
    latencies: Vec<Duration>,
    missed: Vec<String>,
    posts: Vec<Duration>,
    initial: Duration,
    rows: usize,
    last_rows: usize,
    update_bytes: usize,
    updates: usize,
    problems: Vec<String>,
    seconds: f64,
    commit_interval_ms: u64,
}

/// Opens `GET /fleet/live?since=x` and hands the stream to a reader thread.
fn open_stream(addr: &str, cookie: &str) -> Result<mpsc::Receiver<LiveMsg>> {
    let mut conn = connect(addr)?;
    conn.get_mut().set_read_timeout(None).map_err(|e| format!("read timeout: {e}"))?;
    let head = format!(
        "GET /fleet/live?since=x HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
    );
    conn.get_mut().write_all(head.as_bytes()).map_err(|e| format!("GET /fleet/live: {e}"))?;
    let (status, headers) = read_head(&mut conn).map_err(|e| format!("GET /fleet/live: {e}"))?;
    let ct = headers.iter().find(|(k, _)| k == "content-type").map_or("", |(_, v)| v.as_str());
    if status != 200 || !ct.starts_with("text/event-stream") {
        return Err(format!("GET /fleet/live: status {status}, content type {ct:?} (expected 200 text/event-stream)"));
    }
    let chunked = is_chunked(&headers);
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("fleet-live".into())
        .spawn(move || read_stream(conn, chunked, &tx))
        .map_err(|e| format!("starting the stream reader: {e}"))?;
    Ok(rx)
}

fn now_ms() -> Result<i64> {
    Ok(SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| format!("the clock: {e}"))?.as_millis() as i64)
}

/// One reading over the temperature limit (110 °C) for a new asset, event time now.
fn sample_reading(asset: &str) -> Result<Vec<u8>> {
    let body = serde_json::json!([{
        "sensor_id": format!("{asset}-temperature"), "asset_id": asset, "sensor_type": "temperature",
        "value": 150.0, "unit": "C", "ts": now_ms()?,
    }]);
    serde_json::to_vec(&body).map_err(|e| format!("encoding a reading: {e}"))
}

/// Background readings: `tick` of the ten a second, so each of the `sensors` sensors
/// (`bench-bg-<tag>-<i>`, six to an asset) reads once a second, at event time now, a smooth value
/// well inside the limits. `None` when the tick has no sensor (fewer than ten).
fn background_batch(tag: u64, sensors: usize, tick: u64) -> Result<Option<Vec<u8>>> {
    let ts = now_ms()?;
    let slot = (tick % BACKGROUND_TICKS_PER_S) as usize;
    let batch: Vec<serde_json::Value> = (slot..sensors)
        .step_by(BACKGROUND_TICKS_PER_S as usize)
        .map(|i| {
            let phase = i as f64 * 0.7 + ts as f64 / 60_000.0 * std::f64::consts::TAU;
            serde_json::json!({
                "sensor_id": format!("bench-bg-{tag}-{i}"), "asset_id": format!("bench-bg-{tag}-a{}", i / 6),
                "sensor_type": "temperature", "value": 60.0 + 0.5 * phase.sin(), "unit": "C", "ts": ts,
            })
        })
        .collect();
    if batch.is_empty() {
        return Ok(None);
    }
    serde_json::to_vec(&batch).map(Some).map_err(|e| format!("encoding readings: {e}"))
}

/// Posts readings; fails on anything but 2xx.
fn post_readings(c: &mut Client, auth: &str, body: &[u8]) -> Result<()> {
    let r = c.call("POST", "/api/v1/readings", &[("Authorization", auth), ("Content-Type", "application/json")], body)?;
    if !(200..300).contains(&r.status) {
        return Err(format!("POST /api/v1/readings: status {}: {}", r.status, r.excerpt()));
    }
    Ok(())
}

/// The sample in flight: its asset, when its POST started, when it counts as missed.
struct InFlight {
    k: usize,
    asset: String,
    t0: Instant,
    deadline: Instant,
}

/// Measures `a.live` samples of event → fleet stream, feeding the background readings
/// between them. One thread posts everything, so event times never go backwards within the
/// log (with a lateness of 0 a reading behind its partition's newest would be too late); the
/// stream's reader thread stamps the updates, so a POST in progress does not delay a stamp.
fn live(c: &mut Client, a: &Args) -> Result<LiveResult> {
    let cookie = c.cookie.clone().ok_or("not signed in")?;
    let interval = Duration::from_millis(a.commit_interval_ms);
    let timeout = (interval * 4).max(Duration::from_secs(15));
    let tick_every = Duration::from_millis(1000 / BACKGROUND_TICKS_PER_S);
    let tag = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| format!("the clock: {e}"))?.as_secs();
    let auth = format!("Bearer {}", a.key);
    let started = Instant::now();
    let rx = open_stream(&c.addr, &cookie)?;
    let mut r = LiveResult {
        samples: a.live,
        background: a.background,
        latencies: Vec::new(),
        missed: Vec::new(),
        posts: Vec::new(),
        initial: Duration::ZERO,
        rows: 0,
        last_rows: 0,
        update_bytes: 0,
        updates: 0,
        problems: Vec::new(),
        seconds: 0.0,
        commit_interval_ms: a.commit_interval_ms,
    };
    // The first update comes at once (since=x differs from any version).
    loop {
        match rx.recv_timeout(timeout) {
            Ok(LiveMsg::Update { at, bytes, rows, .. }) => {
                r.updates += 1;
                (r.initial, r.rows, r.last_rows, r.update_bytes) = (at.duration_since(started), rows, rows, bytes);
                break;
            }
            Ok(LiveMsg::Problem(m)) => r.problems.push(m),
            Ok(LiveMsg::Closed(m)) => return Err(m),
            Err(_) => return Err(format!("GET /fleet/live?since=x: no first update within {} s", timeout.as_secs())),
        }
    }
    let mut tick = 0u64;
    let mut next_tick = Instant::now();
    // The background runs a second (and a commit) before the first sample.
    let mut next_sample = Instant::now() + Duration::from_secs(1) + interval;
    let mut k = 0;
    let mut current: Option<InFlight> = None;
    while k < a.live || current.is_some() {
        let wake = match (&current, a.background > 0) {
            (Some(f), true) => next_tick.min(f.deadline),
            (Some(f), false) => f.deadline,
            (None, true) => next_tick.min(next_sample),
            (None, false) => next_sample,
        };
        match rx.recv_timeout(wake.saturating_duration_since(Instant::now())) {
            Ok(LiveMsg::Update { at, rows, assets, .. }) => {
                r.updates += 1;
                r.last_rows = rows;
                if let Some(f) = current.take_if(|f| assets.contains(&f.asset)) {
                    let d = at.duration_since(f.t0);
                    eprintln!("  live {}/{}: {} on the fleet stream after {:.0} ms", f.k, a.live, f.asset, ms(d));
                    r.latencies.push(d);
                    // The next sample 1 to 2 commit intervals after this one's POST, the
                    // fraction from the golden-ratio sequence (spread over the commit cycle).
                    let frac = (f.k as f64 * 0.618_033_988_749_895).fract();
                    next_sample = (f.t0 + interval.mul_f64(1.0 + frac)).max(Instant::now());
                }
            }
            Ok(LiveMsg::Problem(m)) => r.problems.push(m),
            Ok(LiveMsg::Closed(m)) => return Err(m),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err("the stream reader stopped".into()),
        }
        let now = Instant::now();
        if let Some(f) = current.take_if(|f| now >= f.deadline) {
            eprintln!("  live {}/{}: {} not on the fleet stream within {} s", f.k, a.live, f.asset, timeout.as_secs());
            r.missed.push(f.asset);
            next_sample = now;
        }
        if current.is_none() && k < a.live && now >= next_sample {
            k += 1;
            let asset = format!("{LIVE_PREFIX}{tag}-{k}");
            let body = sample_reading(&asset)?;
            let t0 = Instant::now();
            post_readings(c, &auth, &body)?;
            r.posts.push(t0.elapsed());
            current = Some(InFlight { k, asset, t0, deadline: t0 + timeout });
        }
        if a.background > 0 && Instant::now() >= next_tick {
            if let Some(batch) = background_batch(tag, a.background, tick)? {
                post_readings(c, &auth, &batch)?;
            }
            tick += 1;
            next_tick += tick_every;
            if next_tick < Instant::now() {
                next_tick = Instant::now() + tick_every;
            }
        }
    }
    r.latencies.sort_unstable();
    r.posts.sort_unstable();
    r.seconds = started.elapsed().as_secs_f64();
    Ok(r)
}

const NOTE: &str = "client-side wall time on loopback, one request at a time (no concurrency): a page's time \
    includes HTTP, the session, the queries and rendering; the live time runs from just before POST /api/v1/readings \
    to the fleet stream's update that lists the new asset (ingest, the pipeline with the server's allowed lateness, \
    the next background batch to move the watermark past it, the wait for the next commit, the stream's 100 ms poll, \
    rendering the fleet table)";

fn run(a: &Args) -> Result<bool> {
    let mut c = Client::new(&a.addr);
    sign_in(&mut c, &a.key)?;
    let fleet = c.get("/fleet")?;
    if fleet.status != 200 {
        return Err(format!("GET /fleet: status {}: {}", fleet.status, fleet.excerpt()));
    }
    let html = fleet.text();
    let csrf = attr_after(&html, "name=\"csrf\" value=\"").ok_or("GET /fleet: no CSRF token in the sign-out form")?;
    let asset = match &a.asset {
        Some(x) => x.clone(),
        None => attr_after(&html, "data-asset=\"").ok_or("GET /fleet: the fleet table lists no asset (give --asset)")?,
    };
    let get = |path: &str| Page { label: format!("GET {path}"), method: "GET", path: path.to_string(), form: String::new() };
    let mut pages: Vec<Page> = [
        "/fleet".to_string(),
        format!("/assets/{}", encode(&asset)),
        "/decisions".into(),
        "/anomalies".into(),
        "/anomalies?kind=drift".into(),
        "/golden".into(),
        "/pipeline".into(),
        "/models".into(),
        "/reports".into(),
        "/reports/view".into(),
        "/sql".into(),
    ]
    .iter()
    .map(|p| get(p))
    .collect();
    pages.push(Page {
        label: "POST /sql (anomalies by asset)".into(),
        method: "POST",
        path: "/sql".into(),
        form: format!("csrf={}&sql={}", encode(&csrf), encode(SQL)),
    });
    pages.push(get("/simulator"));

    eprintln!(
        "console_bench: http://{}, asset {asset}, {} requests a page after {WARMUP} warm-up, one at a time",
        a.addr, a.requests
    );
    let mut results = Vec::new();
    for p in &pages {
        let t = Instant::now();
        let r = time_page(&mut c, p, a.requests)?;
        eprintln!("  {:<34} p50 {:>8.1} ms  p99 {:>8.1} ms  ({:.1} s)", r.page, r.p50, r.p99, t.elapsed().as_secs_f64());
        results.push(r);
    }
    let live = if a.live > 0 {
        eprintln!("console_bench: live, {} samples, commit interval {} ms", a.live, a.commit_interval_ms);
        Some(live(&mut c, a)?)
    } else {
        None
    };
    if a.json {
        print_json(a, &asset, &results, live.as_ref());
    } else {
        print_table(a, &asset, &results, live.as_ref());
    }
    Ok(live.as_ref().is_none_or(|l| l.missed.is_empty()))
}

fn print_table(a: &Args, asset: &str, pages: &[PageResult], live: Option<&LiveResult>) {
    println!(
        "console pages: http://{}, {} requests each after {WARMUP} warm-up, one at a time; asset page: {asset}",
        a.addr, a.requests
    );
    println!("{:<34} {:>9} {:>9} {:>9} {:>10}", "page", "p50 ms", "p99 ms", "max ms", "bytes");
    for r in pages {
        let flag = if r.p99 >= PAGE_TARGET_MS { "  over the p99 target" } else { "" };
        println!("{:<34} {:>9.1} {:>9.1} {:>9.1} {:>10}{flag}", r.page, r.p50, r.p99, r.max, r.bytes);
    }
    let over = pages.iter().filter(|r| r.p99 >= PAGE_TARGET_MS).count();
    println!("target: p99 < {PAGE_TARGET_MS:.0} ms: {} of {} pages meet it", pages.len() - over, pages.len());
    if let Some(l) = live {
        println!(
            "live (event -> fleet stream): {} samples, {} seen; commit interval {} ms; {} background sensors at 1 Hz",
            l.samples,
            l.latencies.len(),
            l.commit_interval_ms,
            l.background
        );
        let p99 = pct(&l.latencies, 99.0);
        let met = l.missed.is_empty() && !l.latencies.is_empty() && p99 < LIVE_TARGET_MS;
        println!(
            "  latency p50 {:.0} ms, p99 {p99:.0} ms, max {:.0} ms (target p99 < {LIVE_TARGET_MS:.0} ms: {})",
            pct(&l.latencies, 50.0),
            l.latencies.last().map_or(0.0, |d| ms(*d)),
            if met { "met" } else { "missed" }
        );
        println!(
            "  POST /api/v1/readings of a sample acknowledged p50 {:.1} ms, max {:.1} ms",
            pct(&l.posts, 50.0),
            l.posts.last().map_or(0.0, |d| ms(*d))
        );
        println!(
            "  first update (since=x) after {:.0} ms: {} assets, {} bytes; {} updates in {:.0} s; {} assets at the end; {} problem events",
            ms(l.initial),
            l.rows,
            l.update_bytes,
            l.updates,
            l.seconds,
            l.last_rows,
            l.problems.len()
        );
        for p in l.problems.iter().take(3) {
            println!("  problem: {p}");
        }
        if !l.missed.is_empty() {
            println!("  NOT SEEN within the timeout: {}", l.missed.join(", "));
        }
    }
    println!("note: {NOTE}");
}

fn print_json(a: &Args, asset: &str, pages: &[PageResult], live: Option<&LiveResult>) {
    let pages: Vec<serde_json::Value> = pages
        .iter()
        .map(|r| {
            serde_json::json!({
                "page": r.page, "p50_ms": r.p50, "p99_ms": r.p99, "max_ms": r.max, "bytes": r.bytes,
                "meets_target": r.p99 < PAGE_TARGET_MS,
            })
        })
        .collect();
    let live = live.map(|l| {
        serde_json::json!({
            "samples": l.samples,
            "seen": l.latencies.len(),
            "background_sensors": l.background,
            "missed": l.missed,
            "commit_interval_ms": l.commit_interval_ms,
            "p50_ms": pct(&l.latencies, 50.0),
            "p99_ms": pct(&l.latencies, 99.0),
            "max_ms": l.latencies.last().map_or(0.0, |d| ms(*d)),
            "target_ms": LIVE_TARGET_MS,
            "post_p50_ms": pct(&l.posts, 50.0),
            "post_max_ms": l.posts.last().map_or(0.0, |d| ms(*d)),
            "first_update_ms": ms(l.initial),
            "fleet_rows": l.rows,
            "fleet_rows_at_end": l.last_rows,
            "update_bytes": l.update_bytes,
            "updates": l.updates,
            "problems": l.problems,
            "seconds": l.seconds,
        })
    });
    let out = serde_json::json!({
        "url": format!("http://{}", a.addr),
        "requests": a.requests,
        "warmup": WARMUP,
        "asset": asset,
        "page_target_p99_ms": PAGE_TARGET_MS,
        "pages": pages,
        "live": live,
        "note": NOTE,
    });
    println!("{out}");
}

fn main() -> ExitCode {
    let outcome = parse_args().and_then(|a| run(&a));
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("console_bench: some live samples never showed on the fleet stream");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("console_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_split_across_chunks() {
        let mut p = SseParser::default();
        assert!(p.feed(b": keep-alive\n\nevent: upd").is_empty());
        let evs = p.feed(b"ate\r\nid: 3.1\ndata: <tr data-asset=\"bench-live-9-1\">\ndata: x\n\n");
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].event, "update");
        assert_eq!(evs[0].data, "<tr data-asset=\"bench-live-9-1\">\nx");
        assert_eq!(listed_assets(&evs[0].data, LIVE_PREFIX), HashSet::from(["bench-live-9-1".to_string()]));
        assert!(!listed_assets("<tr data-asset=\"bench-live-9-10\">", LIVE_PREFIX).contains("bench-live-9-1"));
    }

    #[test]
    fn chunked_bodies_and_urls() {
        let mut r = std::io::Cursor::new(b"4\r\nabcd\r\n2;x=1\r\nef\r\n0\r\n\r\n".to_vec());
        assert_eq!(read_chunk(&mut r).unwrap(), Some(b"abcd".to_vec()));
        assert_eq!(read_chunk(&mut r).unwrap(), Some(b"ef".to_vec()));
        assert_eq!(read_chunk(&mut r).unwrap(), None);
        assert_eq!(addr_of("http://127.0.0.1:8080/").unwrap(), "127.0.0.1:8080");
        assert_eq!(addr_of("127.0.0.1:9").unwrap(), "127.0.0.1:9");
        assert!(addr_of("https://x:1").is_err());
        assert_eq!(encode("a b/c=d&e"), "a%20b%2Fc%3Dd%26e");
        assert_eq!(attr_after(r#"<input name="csrf" value="ab12">"#, "name=\"csrf\" value=\"").as_deref(), Some("ab12"));
    }
}
