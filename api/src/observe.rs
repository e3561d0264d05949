//! Request ids, request logs and Prometheus metrics.
//!
//! [`track`] is the outermost middleware: it takes the request's `X-Request-Id` (or makes one),
//! serves the request inside a `tracing` span carrying it (so every log line of the request has
//! it) and with it set for [`crate::error::ApiError`], echoes it on the response, and counts the
//! request by route, method and status with its latency — labels from a bounded set: the
//! router's route templates (`axum`'s `MatchedPath`) and the standard methods, the rest
//! `other`, whatever a client sends. [`Metrics`] renders the Prometheus text
//! format, the pipeline's metrics (if one runs in the process) included.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::error::REQUEST_ID;
use crate::AppState;

/// A counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds (seconds) of the latency buckets.
pub const LATENCY_BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A latency histogram with [`LATENCY_BUCKETS`].
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    /// Records one observation (seconds).
    pub fn observe(&mut self, secs: f64) {
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }

    /// Writes the histogram's lines for `name{labels}`.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}", self.counts[i]);
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// The API's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// (route, method, status) → requests.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// route → latency.
    latency: Mutex<BTreeMap<String, Histogram>>,
    /// Requests refused by the rate limit.
    pub rate_limited: Counter,
    /// Authentications refused because the client's failed ones are spent.
    pub auth_throttled: Counter,
    /// Decisions recorded, by decision.
    pub decisions: Mutex<BTreeMap<String, u64>>,
    /// Readings accepted through `POST /readings`.
    pub ingested: Counter,
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    fn record(&self, route: &str, method: &str, status: u16, secs: f64) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route.to_string(), method.to_string(), status)).or_default() += 1;
        }
        if let Ok(mut m) = self.latency.lock() {
            m.entry(route.to_string()).or_default().observe(secs);
        }
    }

    /// Counts a decision.
    pub fn decision(&self, decision: &str) {
        if let Ok(mut m) = self.decisions.lock() {
            *m.entry(decision.to_string()).or_default() += 1;
        }
    }

    /// The API's part of `/metrics`.
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP vigil_http_requests_total HTTP requests served, by route, method and status.\n");
        out.push_str("# TYPE vigil_http_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for ((route, method, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "vigil_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                    escape(route),
                    escape(method)
                );
            }
        }
        out.push_str("# HELP vigil_http_request_duration_seconds Time to serve a request, by route.\n");
        out.push_str("# TYPE vigil_http_request_duration_seconds histogram\n");
        if let Ok(m) = self.latency.lock() {
            for (route, h) in m.iter() {
                h.render(out, "vigil_http_request_duration_seconds", &format!("route=\"{}\"", escape(route)));
            }
        }
        out.push_str("# HELP vigil_http_rate_limited_total Requests refused by the per-key rate limit.\n");
        out.push_str("# TYPE vigil_http_rate_limited_total counter\n");
        let _ = writeln!(out, "vigil_http_rate_limited_total {}", self.rate_limited.get());
        out.push_str(
            "# HELP vigil_http_auth_throttled_total Authentications refused because the client's failed ones are spent.\n",
        );
        out.push_str("# TYPE vigil_http_auth_throttled_total counter\n");
        let _ = writeln!(out, "vigil_http_auth_throttled_total {}", self.auth_throttled.get());
        out.push_str("# HELP vigil_decisions_total Human decisions recorded, by decision.\n");
        out.push_str("# TYPE vigil_decisions_total counter\n");
        if let Ok(m) = self.decisions.lock() {
            for (d, n) in m.iter() {
                let _ = writeln!(out, "vigil_decisions_total{{decision=\"{}\"}} {n}", escape(d));
            }
        }
        out.push_str("# HELP vigil_api_readings_ingested_total Readings accepted through POST /api/v1/readings.\n");
        out.push_str("# TYPE vigil_api_readings_ingested_total counter\n");
        let _ = writeln!(out, "vigil_api_readings_ingested_total {}", self.ingested.get());
    }
}

/// The label of a request whose route or method is not one the router knows.
const OTHER: &str = "other";

/// The method as a metrics label: a standard method, or `other`.
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => OTHER,
    }
}

fn valid_request_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// 16 hex digits, unique in this process and not guessable across processes (request ids, and
/// the key `vigil serve` makes when none is configured).
pub fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    // The standard hasher's keys are random per process; hashing a sequence number and the
    // time gives ids that are unique here and not guessable across processes.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(SEQ.fetch_add(1, Ordering::Relaxed));
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    format!("{:016x}", h.finish())
}

/// Middleware: request id, span, log line and metrics of every request.
pub(crate) async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|s| valid_request_id(s))
        .map_or_else(random_hex, str::to_string);
    // Labels come from a bounded set: the router's own route templates and the standard
    // methods; anything else a client sends is `other`.
    let route = req.extensions().get::<MatchedPath>().map_or(OTHER, |m| m.as_str()).to_string();
    let method = method_label(req.method()).to_string();
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route, key = tracing::field::Empty);
    let mut resp = REQUEST_ID.scope(id.clone(), next.run(req).instrument(span.clone())).await;
    let status = resp.status().as_u16();
    let secs = started.elapsed().as_secs_f64();
    state.metrics.record(&route, &method, status, secs);
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(status, ms = secs * 1000.0, "served");
        } else {
            tracing::debug!(status, ms = secs * 1000.0, "served");
        }
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_checked() {
        assert!(valid_request_id("abc-123_x.y:z"));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id("a b"));
        assert!(!valid_request_id(&"x".repeat(129)));
        assert_eq!(random_hex().len(), 16);
        assert_ne!(random_hex(), random_hex());
    }

    #[test]
    fn methods_outside_the_standard_ones_are_other() {
        assert_eq!(method_label(&axum::http::Method::GET), "GET");
        assert_eq!(method_label(&axum::http::Method::from_bytes(b"FOOBAR").unwrap()), "other");
        assert_eq!(method_label(&axum::http::Method::TRACE), "other");
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::default();
        h.observe(0.003);
        h.observe(0.2);
        let mut out = String::new();
        h.render(&mut out, "x", "r=\"a\"");
        assert!(out.contains("x_bucket{r=\"a\",le=\"0.005\"} 1\n"));
        assert!(out.contains("x_bucket{r=\"a\",le=\"0.25\"} 2\n"));
        assert!(out.contains("x_bucket{r=\"a\",le=\"+Inf\"} 2\n"));
        assert!(out.contains("x_count{r=\"a\"} 2\n"));
    }
}
