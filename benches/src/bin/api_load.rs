//! `api_load`: an HTTP load generator for `vigil serve`, open loop (a fixed request rate, latency
//! measured from each request's scheduled time, so a slow server cannot hide its queue) or closed
//! loop (`--rate 0`: every connection sends its next request as soon as the last is answered).
//!
//! Modes:
//! - `decide`: `POST /api/v1/decisions/{id}` deferrals with a fresh rationale each (so each is a
//!   new durable ledger append), over the request ids in `--ids` (comma-separated).
//! - `get-readings`: `GET /api/v1/readings?sensor_id=S&from=F&to=T` (`--query`).
//! - `post-readings`: `POST /api/v1/readings` NDJSON batches of `--batch` readings over
//!   `--sensors` sensors, event times climbing from an hour ago.
//! - `health`: `GET /health` (liveness).
//! - `query`: `POST /api/v1/query` with the statement `--sql` (closed loop: heavy queries that
//!   keep the query threads busy while another `api_load` measures the rest).
//!
//! Prints one JSON line: requests, statuses, achieved rate, readings/s (post-readings), and
//! latency percentiles in milliseconds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Args {
    addr: String,
    key: String,
    mode: String,
    rate: f64,
    seconds: f64,
    connections: usize,
    ids: Vec<String>,
    query: String,
    batch: usize,
    sensors: usize,
    sql: String,
}

fn parse_args() -> Args {
    let mut a = Args {
        addr: "127.0.0.1:8080".into(),
        key: std::env::var("VIGIL_API_KEY").unwrap_or_default(),
        mode: "get-readings".into(),
        rate: 0.0,
        seconds: 10.0,
        connections: 8,
        ids: Vec::new(),
        query: String::new(),
        batch: 1000,
        sensors: 2000,
        sql: "SELECT 1".into(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < args.len() {
        let v = args[i + 1].clone();
        match args[i].as_str() {
            "--addr" => a.addr = v,
            "--key" => a.key = v,
            "--mode" => a.mode = v,
            "--rate" => a.rate = v.parse().expect("--rate"),
            "--seconds" => a.seconds = v.parse().expect("--seconds"),
            "--connections" => a.connections = v.parse().expect("--connections"),
            "--ids" => a.ids = v.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
            "--query" => a.query = v,
            "--batch" => a.batch = v.parse().expect("--batch"),
            "--sensors" => a.sensors = v.parse().expect("--sensors"),
            "--sql" => a.sql = v,
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    r: BufReader<TcpStream>,
}

impl Conn {
    async fn open(addr: &str) -> std::io::Result<Conn> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Conn { r: BufReader::with_capacity(64 * 1024, s) })
    }

    /// Sends a request and reads the whole response; returns the status.
    async fn call(&mut self, head: &str, body: &[u8]) -> std::io::Result<u16> {
        let s = self.r.get_mut();
        s.write_all(head.as_bytes()).await?;
        s.write_all(body).await?;
        let mut line = String::new();
        self.r.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = None;
        let mut chunked = false;
        loop {
            line.clear();
            if self.r.read_line(&mut line).await? == 0 {
                return Err(std::io::Error::other("closed"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse::<usize>().ok();
            } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        if chunked {
            loop {
                line.clear();
                self.r.read_line(&mut line).await?;
                let n = usize::from_str_radix(line.trim(), 16).map_err(std::io::Error::other)?;
                let mut skip = vec![0u8; n + 2];
                self.r.read_exact(&mut skip).await?;
                if n == 0 {
                    break;
                }
            }
        } else if let Some(n) = length {
            let mut skip = vec![0u8; n];
            self.r.read_exact(&mut skip).await?;
        }
        Ok(status)
    }
}

struct Request {
    head: String,
    body: Vec<u8>,
    readings: u64,
}

struct Maker {
    args: Args,
    seq: AtomicU64,
    t0: i64,
}

impl Maker {
    fn next(&self) -> Request {
        let i = self.seq.fetch_add(1, Ordering::Relaxed);
        let a = &self.args;
        let auth = format!("Authorization: Bearer {}\r\n", a.key);
        match a.mode.as_str() {
            "decide" => {
                let id = &a.ids[(i as usize) % a.ids.len()];
                let body = format!(r#"{{"decision":"defer","operator":"load","rationale":"load {i}"}}"#).into_bytes();
                let head = format!(
                    "POST /api/v1/decisions/{id} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                Request { head, body, readings: 0 }
            }
            "get-readings" => {
                let head = format!("GET /api/v1/readings?{} HTTP/1.1\r\nHost: x\r\n{auth}\r\n", a.query);
                Request { head, body: Vec::new(), readings: 0 }
            }
            "post-readings" => {
                let mut body = Vec::with_capacity(a.batch * 160);
                for j in 0..a.batch as u64 {
                    let k = i * a.batch as u64 + j;
                    let sensor = k % a.sensors as u64;
                    let ts = self.t0 + (k / a.sensors as u64) as i64 * 1000;
                    let v = 50.0 + (k % 97) as f64 * 0.1;
                    body.extend_from_slice(
                        format!(
                            r#"{{"sensor_id":"load-{sensor:05}","asset_id":"load-a{:04}","sensor_type":"temperature","value":{v:.1},"unit":"C","ts":{ts}}}"#,
                            sensor / 6
                        )
                        .as_bytes(),
                    );
                    body.push(b'\n');
                }
                let head = format!(
                    "POST /api/v1/readings HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                Request { head, body, readings: a.batch as u64 }
            }
            "health" => Request { head: "GET /health HTTP/1.1\r\nHost: x\r\n\r\n".into(), body: Vec::new(), readings: 0 },
            "query" => {
                let body = serde_json::json!({ "sql": a.sql }).to_string().into_bytes();
                let head = format!(
                    "POST /api/v1/query HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                Request { head, body, readings: 0 }
            }
            m => panic!("unknown mode {m}"),
        }
    }
}

#[derive(Default)]
struct Results {
    latencies_us: Vec<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    readings: u64,
}

/// Records one answer (`None`: the connection failed); returns whether the connection is usable.
fn record(results: &Mutex<Results>, status: Option<u16>, latency: Duration, readings: u64) -> bool {
    let mut r = results.lock().expect("results");
    match status {
        Some(status) => {
            r.latencies_us.push(latency.as_micros() as u64);
            *r.statuses.entry(status).or_default() += 1;
            if status < 300 {
                r.readings += readings;
            }
            true
        }
        None => {
            r.errors += 1;
            false
        }
    }
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    rt.block_on(run(args));
}

async fn run(args: Args) {
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let rate = args.rate;
    let seconds = args.seconds;
    let connections = args.connections.max(1);
    let addr = args.addr.clone();
    let mode = args.mode.clone();
    let maker = Arc::new(Maker { args, seq: AtomicU64::new(0), t0: now_ms - 3_600_000 });
    let results = Arc::new(Mutex::new(Results::default()));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);

    if rate > 0.0 {
        // Open loop: request n is due at start + n / rate, whatever happened to the others.
        let (tx, rx) = connection_pool(connections);
        for _ in 0..connections {
            let c = Conn::open(&addr).await.expect("connect");
            tx.send(c).await.ok();
        }
        let total = (rate * seconds) as u64;
        let mut tasks = Vec::with_capacity(total as usize);
        for n in 0..total {
            let due = started + Duration::from_secs_f64(n as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
            let req = maker.next();
            let (tx, rx, results, addr) = (tx.clone(), rx.clone(), results.clone(), addr.clone());
            tasks.push(tokio::spawn(async move {
                let mut conn = rx.recv().await.expect("pool");
                let outcome = conn.call(&req.head, &req.body).await;
                let ok = record(&results, outcome.as_ref().ok().copied(), due.elapsed(), req.readings);
                if ok {
                    tx.send(conn).await.ok();
                } else if let Ok(c) = Conn::open(&addr).await {
                    tx.send(c).await.ok();
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    } else {
        // Closed loop: each connection sends its next request when the last is answered.
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let (maker, results, addr) = (maker.clone(), results.clone(), addr.clone());
            tasks.push(tokio::spawn(async move {
                let mut conn = Conn::open(&addr).await.expect("connect");
                while Instant::now() < deadline {
                    let req = maker.next();
                    let t = Instant::now();
                    let outcome = conn.call(&req.head, &req.body).await;
                    if !record(&results, outcome.ok(), t.elapsed(), req.readings) {
                        match Conn::open(&addr).await {
                            Ok(c) => conn = c,
                            Err(_) => return,
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut r = results.lock().expect("results");
    r.latencies_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        if r.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((p / 100.0) * (r.latencies_us.len() - 1) as f64).round() as usize;
        r.latencies_us[i] as f64 / 1000.0
    };
    let n = r.latencies_us.len();
    let out = serde_json::json!({
        "mode": mode,
        "target_rate": rate,
        "connections": connections,
        "seconds": elapsed,
        "requests": n,
        "errors": r.errors,
        "statuses": r.statuses.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
        "achieved_rps": n as f64 / elapsed,
        "readings_per_s": r.readings as f64 / elapsed,
        "p50_ms": pct(50.0),
        "p90_ms": pct(90.0),
        "p99_ms": pct(99.0),
        "max_ms": r.latencies_us.last().map_or(0.0, |v| *v as f64 / 1000.0),
    });
    println!("{out}");
}

/// A multi-producer multi-consumer pool of connections (tokio's mpsc has one consumer).
fn connection_pool(cap: usize) -> (PoolTx, PoolRx) {
    let (tx, rx) = tokio::sync::mpsc::channel(cap.max(1) * 2);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    (PoolTx(tx), PoolRx(rx))
}

#[derive(Clone)]
struct PoolTx(tokio::sync::mpsc::Sender<Conn>);
impl PoolTx {
    async fn send(&self, c: Conn) -> Result<(), ()> {
        self.0.send(c).await.map_err(|_| ())
    }
}

#[derive(Clone)]
struct PoolRx(Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Conn>>>);
impl PoolRx {
    async fn recv(&self) -> Option<Conn> {
        self.0.lock().await.recv().await
    }
}
