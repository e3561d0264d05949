//! What the API's integration tests share: a fixed history written by the connectors' real
//! writers, a real server on an ephemeral port, and an HTTP/1.1 client over a plain socket.
//!
//! The fixture: assets a1 and a2 with one sensor each, a reading a minute for two hours; two
//! proposals, each with a decision request (the pipeline's output).
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vigil_api::{app, ApiConfig, AppState, PlanningBook};
use vigil_connectors::history::{commit, HistoryRow, TableWriter, WriterConfig};
use vigil_connectors::ledger::{Ledger, LedgerConfig};
use vigil_events::{
    HumanDecisionRequested, MaintenanceScheduled, ScheduleStatus, SensorReading, SensorType, Severity, SourcePos,
};
use vigil_queries::{History, QueryConfig};

pub(crate) const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
pub(crate) const MIN: i64 = 60_000;
pub(crate) const JSON: (&str, &str) = ("Content-Type", "application/json");

pub(crate) fn write<R: HistoryRow + Send + 'static>(dir: &Path, run: &str, rows: Vec<R>) {
    let cfg = WriterConfig {
        data_dir: dir.into(),
        run: run.into(),
        worker: 0,
        max_rows_per_file: 10_000,
        row_group_rows: 1000,
        max_file_span_ms: i64::MAX,
        sources: Arc::new(vec!["fixture.jsonl".into()]),
    };
    let mut w = TableWriter::<R>::new(cfg);
    for r in rows {
        w.push(r).unwrap();
    }
    let files = w.finish().unwrap();
    commit(dir, run, files, 0).unwrap();
}

pub(crate) fn fixture(dir: &Path) {
    let readings = (0..120)
        .flat_map(|i| {
            [("a1-temp", "a1"), ("a2-temp", "a2")].into_iter().enumerate().map(move |(s, (id, asset))| SensorReading {
                id_hash: (s as u64) << 32 | i as u64,
                sensor_id: Arc::from(id),
                sensor_key: s as u64,
                asset_id: Arc::from(asset),
                sensor_type: SensorType::Temperature,
                value: 50.0 + i as f64,
                unit: Arc::from("C"),
                ts: T0 + i * MIN,
                extra: None,
                pos: SourcePos { source: 0, offset: (i * 2 + s as i64) as u64 },
            })
        })
        .collect();
    write::<SensorReading>(dir, "r1", readings);
    let proposal = |asset: &str, n: u32| MaintenanceScheduled {
        event_id: format!("sched-{asset}-{n}"),
        correlation_id: format!("corr-{asset}"),
        event_version: 1,
        proposal_id: format!("prop-{asset}-{n}"),
        asset_id: Arc::from(asset),
        status: ScheduleStatus::Proposed,
        ts: T0 + 60 * MIN,
        scheduled_for: T0 + 600 * MIN,
        priority: Severity::High,
        reason: format!("{asset}: health 0.4"),
        requires_decision: true,
    };
    write::<MaintenanceScheduled>(dir, "r2", vec![proposal("a1", 1), proposal("a2", 1)]);
    let request = |asset: &str| HumanDecisionRequested {
        event_id: format!("req-{asset}"),
        correlation_id: format!("corr-{asset}"),
        event_version: 1,
        proposal_id: format!("prop-{asset}-1"),
        asset_id: Arc::from(asset),
        ts: T0 + 60 * MIN,
        question: format!("Approve maintenance of {asset}?"),
        deadline: T0 + 300 * MIN,
    };
    write::<HumanDecisionRequested>(dir, "r3", vec![request("a1"), request("a2")]);
}

pub(crate) struct Server {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) ledger: Ledger<PlanningBook>,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub(crate) async fn start(dir: &Path, cfg: ApiConfig) -> Server {
        let history = History::open(dir, &QueryConfig::default()).unwrap();
        let ledger = Ledger::<PlanningBook>::open(dir, LedgerConfig::default()).unwrap();
        let state = AppState::new(history, ledger.clone(), cfg, None);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = app(state);
        let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let task = tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
        Server { addr, ledger, task }
    }

    /// Stops serving and closes the ledger (what a restart does).
    pub(crate) async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
        let ledger = self.ledger;
        tokio::task::spawn_blocking(move || ledger.close()).await.unwrap();
    }
}

pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    /// The error code of an error body, if it is one.
    pub(crate) fn code(&self) -> Option<String> {
        serde_json::from_str::<serde_json::Value>(&self.body).ok()?["error"]["code"].as_str().map(str::to_string)
    }
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request over a fresh connection.
pub(crate) async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    if let Some(b) = body {
        // The server may answer (413) before reading a large body.
        let _ = s.write_all(b.as_bytes()).await;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status: u16 = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_string() };
    Reply { status, headers, body }
}

pub(crate) fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}
