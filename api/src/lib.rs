//! Vigil's HTTP API (axum, JSON, `/api/v1`).
//!
//! [`app`] builds the router over an [`AppState`]: the history (`vigil-queries`), the planning
//! ledger (`vigil-connectors`), the API keys, the metrics and, when `vigil serve` runs one, the
//! pipeline ([`Pipeline`]).
//!
//! - Open routes: `GET /health` (alive), `GET /ready` (history readable, pipeline running, lag),
//!   both also under the API's prefix (`/api/v1/health`, `/api/v1/ready`), and `GET /metrics`
//!   (Prometheus text).
//! - Keyed routes ([`auth`]): `read` — sensors, readings, anomalies, drift, predictions,
//!   schedule, fleet, decisions (pending, audit log), query, reports, history catalog, the
//!   model registry ([`models`]);
//!   `decide` — `POST /decisions/{request_id}`, `POST /maintenance/{proposal_id}/complete`;
//!   `ingest` — `POST /readings` (into the running pipeline's source); `admin` —
//!   `POST /demo/golden-path` (its status is `read`).
//! - Every response carries `X-Request-Id`; every error, from a handler, an extractor, the
//!   router (404, 405) or a limit (413, 429), has one shape ([`error`]).
//! - The web console ([`console`]) at `/`: sign-in with a key, then HTML pages over the same
//!   code as the routes here.
//! - Documentation, open: `GET /api/v1/openapi.json` is the OpenAPI 3.1 document of every route
//!   here, generated from the handlers' `#[utoipa::path]` attributes (parameters, bodies,
//!   responses with their error statuses, security, and each keyed operation's scope as
//!   `x-scope`, taken from [`KEYED_ROUTES`]); `GET /api/v1/docs` is one self-contained HTML page
//!   rendered from that document ([`openapi`]).
//!
//! Input: HTTP requests. Output: JSON, CSV, HTML and Prometheus text. State: [`AppState`].

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use vigil_connectors::ledger::Ledger;
use vigil_events::MaintenanceScheduled;
use vigil_queries::History;

use crate::error::ErrorBody;

pub mod auth;
pub mod console;
pub mod error;
pub mod golden;
pub mod incidents;
pub mod ingest;
pub mod models;
pub mod observe;
pub mod openapi;
pub mod planning;
pub mod read;

pub use auth::{Caller, KeyConfig, Keys, Scope};
pub use error::ApiError;
pub use observe::Metrics;
pub use planning::{PlanningBook, Replayed, RequestIndex};

/// Settings of the API (`[api]` in the config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address `vigil serve` listens on.
    pub listen: String,
    /// API keys and their scopes. `VIGIL_API_KEY`, when set, adds a key with every scope.
    pub keys: Vec<KeyConfig>,
    /// Requests a second per key (token bucket refill).
    pub rate_per_second: f64,
    /// Requests a key may burst.
    pub rate_burst: u32,
    /// Largest request body (bytes), `POST /readings` excepted.
    pub body_limit_bytes: usize,
    /// Largest `POST /readings` body (bytes).
    pub ingest_limit_bytes: usize,
    /// `Idempotency-Key` answers kept at most (the oldest go first).
    pub idempotency_keys: usize,
    /// How long an `Idempotency-Key` answer is kept (seconds).
    pub idempotency_ttl_secs: u64,
    /// How long a request waits for a running request with the same `Idempotency-Key` before
    /// 409 `in_progress` (ms).
    pub idempotency_wait_ms: u64,
    /// Failed authentications (unknown key, REST or console sign-in) a client (IP address) may
    /// make in a burst before 429 with `Retry-After`.
    pub auth_failure_burst: u32,
    /// Failed authentications a client is allowed again per minute (token bucket refill).
    pub auth_failures_per_minute: f64,
    /// Trust `X-Forwarded-For` and `X-Forwarded-Proto` (set only behind a reverse proxy that
    /// sets them): the client's address for the failed-authentication limit, and https for the
    /// session cookie's `Secure` flag.
    pub trust_proxy_headers: bool,
    /// Always mark the session cookie `Secure` (the console is served over https).
    pub secure_cookies: bool,
    /// Golden-path runs that may wait while one runs (they run one at a time); past that,
    /// `POST /api/v1/demo/golden-path` is 429 `golden_path_busy` with `Retry-After`.
    pub golden_path_queue: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "127.0.0.1:8080".into(),
            keys: Vec::new(),
            rate_per_second: 200.0,
            rate_burst: 400,
            body_limit_bytes: 1 << 20,
            ingest_limit_bytes: 16 << 20,
            idempotency_keys: 10_000,
            idempotency_ttl_secs: 24 * 3600,
            idempotency_wait_ms: 10_000,
            auth_failure_burst: 10,
            auth_failures_per_minute: 10.0,
            trust_proxy_headers: false,
            secure_cookies: false,
            golden_path_queue: 4,
        }
    }
}

impl ApiConfig {
    /// The configured keys, plus `VIGIL_API_KEY` (named `env`, every scope) when set.
    pub fn keys_with_env(&self) -> Vec<KeyConfig> {
        let mut keys = self.keys.clone();
        if let Ok(k) = std::env::var("VIGIL_API_KEY") {
            if !k.trim().is_empty() {
                keys.push(KeyConfig { name: "env".into(), key: k.trim().to_string(), scopes: vec![Scope::Admin] });
            }
        }
        keys
    }
}

/// Content-Security-Policy of the HTML report wherever it is served (`POST /api/v1/reports`
/// with `format: html`, the console's report view): exactly what the self-contained page needs —
/// its inline `<style>` and inline SVG — and nothing else: no script, no fetch, no form, no
/// framing except by the console itself.
pub const REPORT_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'";

/// How the pipeline is doing, for `/ready`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Readiness {
    /// Whether it is consuming and committing normally.
    pub ready: bool,
    /// Why not.
    pub reason: Option<String>,
    /// Records behind the end of the source (when known).
    pub lag: Option<i64>,
    /// The source (a Kafka topic, the embedded log, ...).
    pub source: String,
}

/// The pipeline running in the same process, as the API sees it.
pub trait Pipeline: Send + Sync {
    /// Readiness for `/ready`.
    fn readiness(&self) -> Readiness;
    /// The pipeline's metrics in Prometheus text.
    fn render_metrics(&self, out: &mut String);
    /// People changed a proposal's status (approved, rejected, completed), as the ledger
    /// recorded it: the dataflow's scheduler and baselines follow (a rejection or completion
    /// closes the asset's open proposal, a completion restarts its baselines).
    fn schedule_changed(&self, change: &MaintenanceScheduled);
    /// The model the pipeline predicts with.
    fn running_model(&self) -> models::RunningModel;
    /// Hands `(key, JSON reading)` records to the pipeline's source; returns once they are
    /// durable there (fsynced in the embedded log, acknowledged by Kafka). Blocking.
    fn ingest(&self, records: &[(&[u8], &[u8])]) -> Result<(), String>;
    /// Runs the golden path: a small simulated fleet whose one asset (`<asset_prefix>-0001`)
    /// fails, through the whole dataflow into the history. Blocking.
    fn golden_path(&self, asset_prefix: &str) -> Result<golden::GoldenOutcome, String>;
    /// Commits made so far: the history changed when this did (the console's live pages wait on
    /// it).
    fn commits(&self) -> u64;
    /// The pipeline's counters now.
    fn status(&self) -> PipelineStatus;
    /// The embedded simulator, when this pipeline has one.
    fn simulator(&self) -> Option<SimulatorStatus> {
        None
    }
    /// Starts, stops or injects into the embedded simulator.
    fn control_simulator(&self, command: SimulatorCommand) -> Result<SimulatorStatus, String> {
        let _ = command;
        Err("this pipeline has no simulator (serve with --source simulator)".into())
    }
}

/// The pipeline's counters, as of its last commit (records in: now).
///
/// Every record read is accounted for: `records_in = committed_in + read_since_commit`, and the
/// records the last commit covers, with the readings an earlier run left waiting, are the
/// readings stored, the records dead-lettered, the readings waiting for the watermark and the
/// re-delivered records skipped: `committed_in + carried_over = accepted + Σ rejected + waiting
/// + redelivered` ([`PipelineStatus::balances`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PipelineStatus {
    /// The source.
    pub source: String,
    /// When the pipeline started (ms).
    pub started_ms: i64,
    /// Records read from the source since the pipeline started (now).
    pub records_in: u64,
    /// Of `records_in`, those the last commit covers.
    #[serde(default)]
    pub committed_in: u64,
    /// Of `records_in`, those read since the last commit (`records_in - committed_in`): in
    /// the dataflow, counted at the next commit.
    #[serde(default)]
    pub read_since_commit: u64,
    /// Readings accepted into the history (as of the last commit).
    pub accepted: u64,
    /// Records dead-lettered, by reason (duplicates and too-late readings included).
    pub rejected: std::collections::BTreeMap<String, u64>,
    /// Readings waiting for the watermark at the last commit: valid, kept in the dataflow's
    /// state (and its checkpoint), stored once the watermark passes them.
    #[serde(default)]
    pub waiting: u64,
    /// Readings an earlier run left waiting for the watermark, taken over from its checkpoint
    /// at start (read by that run, stored or rejected by this one).
    #[serde(default)]
    pub carried_over: u64,
    /// Records delivered again after a seek, already processed: skipped.
    #[serde(default)]
    pub redelivered: u64,
    /// Windows closed (tumbling and hopping).
    pub windows: u64,
    /// Anomalies by detector.
    pub anomalies_by_detector: std::collections::BTreeMap<String, u64>,
    /// Drift events by statistic.
    pub drift_by_statistic: std::collections::BTreeMap<String, u64>,
    /// Maintenance predictions.
    pub predictions: u64,
    /// Decisions asked of people.
    pub decision_requests: u64,
    /// Commits of the history.
    pub commits: u64,
    /// Records behind the end of the source, when known.
    pub lag: Option<i64>,
    /// The watermark (ms), once there is one.
    pub watermark_ms: Option<i64>,
    /// Whether it consumes and commits normally.
    pub ready: bool,
    /// Why not.
    pub reason: Option<String>,
}

impl PipelineStatus {
    /// Records dead-lettered, all reasons.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Whether every record is accounted for (see the type's docs).
    pub fn balances(&self) -> bool {
        self.records_in == self.committed_in + self.read_since_commit
            && self.committed_in + self.carried_over == self.accepted + self.rejected_total() + self.waiting + self.redelivered
    }
}

/// The embedded simulator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimulatorStatus {
    /// Feeding readings (not paused, not finished).
    pub running: bool,
    /// The fleet's sensors, `(sensor, asset)`.
    pub sensors: Vec<(String, String)>,
    /// Readings a tick, and simulated seconds a second.
    pub interval_ms: i64,
    /// Simulated seconds a second.
    pub speed: f64,
    /// Records fed so far.
    pub fed: u64,
    /// Event time of the last tick fed (ms).
    pub last_tick_ms: Option<i64>,
    /// Injections not yet fed: `(sensor, readings left)`.
    pub injections: Vec<(String, u32)>,
}

/// What a person asks of the simulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimulatorCommand {
    /// Resume feeding.
    Start,
    /// Pause feeding.
    Stop,
    /// A spike on the sensor's next readings.
    Inject {
        /// The sensor.
        sensor_id: String,
    },
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The history.
    pub history: History,
    /// The planning ledger.
    pub ledger: Ledger<PlanningBook>,
    /// Decision requests, cached.
    pub requests: Arc<RequestIndex>,
    /// API keys and rate limits.
    pub keys: Arc<Keys>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The pipeline, when one runs in this process.
    pub pipeline: Option<Arc<dyn Pipeline>>,
    /// Settings.
    pub config: Arc<ApiConfig>,
    /// Wall clock (ms).
    pub now_ms: fn() -> i64,
    /// Answers already given to `POST /readings` by `Idempotency-Key`.
    pub idempotency: Arc<ingest::IdempotencyCache>,
    /// Failed authentications by client address (REST and console sign-in).
    pub auth_failures: Arc<auth::FailureLimiter>,
    /// Golden-path runs.
    pub golden: golden::SharedRuns,
    /// Webhook notifications of decisions and schedule changes.
    pub notifier: Option<Arc<vigil_connectors::webhook::Notifier>>,
    /// The model registry (default: `DATA/_models`).
    pub models: vigil_connectors::models::ModelRegistry,
    /// The web console's sessions and shared renders.
    pub console: Arc<console::ConsoleState>,
}

impl AppState {
    /// State over an opened history and ledger.
    pub fn new(history: History, ledger: Ledger<PlanningBook>, config: ApiConfig, pipeline: Option<Arc<dyn Pipeline>>) -> Self {
        let keys = Keys::new(config.keys_with_env(), config.rate_per_second, config.rate_burst);
        let idempotency = Arc::new(ingest::IdempotencyCache::new(
            config.idempotency_keys,
            std::time::Duration::from_secs(config.idempotency_ttl_secs),
        ));
        let auth_failures = Arc::new(auth::FailureLimiter::new(config.auth_failures_per_minute, config.auth_failure_burst));
        let golden = Arc::new(golden::GoldenRuns::new(config.golden_path_queue));
        AppState {
            ledger,
            requests: Arc::new(RequestIndex::default()),
            keys: Arc::new(keys),
            metrics: Arc::new(Metrics::default()),
            pipeline,
            config: Arc::new(config),
            now_ms: wall_clock_ms,
            idempotency,
            auth_failures,
            golden,
            notifier: None,
            models: vigil_connectors::models::ModelRegistry::in_data_dir(history.data_dir()),
            console: Arc::new(console::ConsoleState::default()),
            history,
        }
    }

    /// The history directory.
    pub fn data_dir(&self) -> PathBuf {
        self.history.data_dir().to_path_buf()
    }
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The process is alive.
#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    /// Always `ok`.
    status: &'static str,
    /// Vigil's version.
    version: &'static str,
}

#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    operation_id = "health",
    summary = "Liveness: the process serves HTTP",
    description = "Answers `ok` and the version as long as the process serves requests; checks nothing else.",
    responses((status = 200, description = "Alive", body = Health))
)]
async fn health() -> Json<Health> {
    Json(Health { status: "ok", version: env!("CARGO_PKG_VERSION") })
}

#[utoipa::path(
    get,
    path = "/api/v1/health",
    tag = "health",
    operation_id = "health_v1",
    summary = "Liveness under the API's prefix (the same as `/health`)",
    description = "Answers `ok` and the version as long as the process serves requests; checks nothing else. The same answer as `GET /health`.",
    responses((status = 200, description = "Alive", body = Health))
)]
async fn health_v1() -> Json<Health> {
    health().await
}

/// Whether the API can serve: history, ledger and pipeline.
#[derive(Serialize, utoipa::ToSchema)]
struct Ready {
    /// History readable, ledger healthy and pipeline (if any) ready.
    ready: bool,
    /// `ok`, or why the history is unreadable.
    history: String,
    /// `ok`, or `failed: restart to recover`.
    ledger: String,
    /// The pipeline's readiness, when one runs in this process.
    pipeline: Option<Readiness>,
}

#[utoipa::path(
    get,
    path = "/ready",
    tag = "health",
    operation_id = "ready",
    summary = "Readiness: history readable, ledger healthy, pipeline running (with its lag)",
    description = "200 when the history's catalog reads, the planning ledger has not failed and the pipeline (when one runs in this process) is consuming; 503 with the same body otherwise.",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "Not ready: the body says which part is not", body = Ready)
    )
)]
async fn ready(State(state): State<AppState>) -> Response {
    let dir = state.data_dir();
    let read_dir = dir.clone();
    // What is wrong, not where the disk is: paths in causes are left out.
    let history = match tokio::task::spawn_blocking(move || vigil_queries::Catalog::read(&read_dir)).await {
        Ok(Ok(_)) => "ok".to_string(),
        Ok(Err(e)) => format!("unreadable: {}", error::redact_paths(&e.to_string(), Some(dir.as_path()))),
        Err(e) => format!("unreadable: {e}"),
    };
    let ledger = if state.ledger.is_failed() { "failed: restart to recover".to_string() } else { "ok".to_string() };
    let pipeline = state.pipeline.as_ref().map(|p| {
        let mut r = p.readiness();
        r.reason = r.reason.map(|m| error::redact_paths(&m, Some(dir.as_path())));
        r.source = error::redact_paths(&r.source, Some(dir.as_path()));
        r
    });
    let ok = history == "ok" && ledger == "ok" && pipeline.as_ref().is_none_or(|p| p.ready);
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Ready { ready: ok, history, ledger, pipeline })).into_response()
}

#[utoipa::path(
    get,
    path = "/api/v1/ready",
    tag = "health",
    operation_id = "ready_v1",
    summary = "Readiness under the API's prefix (the same as `/ready`)",
    description = "The same answer as `GET /ready`: 200 when the history's catalog reads, the planning ledger has not failed and the pipeline (when one runs in this process) is consuming; 503 with the same body otherwise.",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "Not ready: the body says which part is not", body = Ready)
    )
)]
async fn ready_v1(state: State<AppState>) -> Response {
    ready(state).await
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    operation_id = "metrics",
    summary = "Prometheus metrics of the API and of the pipeline",
    description = "Requests by route, method and status with latency histograms, rate-limit refusals, decisions and ingest counts, plus the pipeline's own metrics when one runs in this process.",
    responses((status = 200, description = "Prometheus text exposition format (0.0.4)", content_type = "text/plain", body = String))
)]
async fn metrics(State(state): State<AppState>) -> Response {
    let mut out = String::with_capacity(8192);
    state.metrics.render(&mut out);
    if let Some(p) = &state.pipeline {
        p.render_metrics(&mut out);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out).into_response()
}

/// One table of the history's catalog.
#[derive(Serialize, utoipa::ToSchema)]
struct TableSummary {
    /// Table name (usable in `POST /api/v1/query`).
    name: String,
    /// Rows committed.
    rows: u64,
    /// Parquet files.
    files: usize,
    /// Partition columns.
    partitions: Vec<String>,
    /// Columns.
    columns: Vec<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/history",
    tag = "history",
    operation_id = "history_catalog",
    summary = "The history's catalog: tables with rows, files, partitions and columns",
    description = "Every table committed to the Parquet history, for writing `POST /api/v1/query` statements.",
    responses(
        (status = 200, description = "The tables", body = Vec<TableSummary>),
        (status = 500, description = "The history's catalog is unreadable (`history_unreadable`) or an internal error", body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn history(State(state): State<AppState>) -> Result<Json<Vec<TableSummary>>, ApiError> {
    let dir = state.data_dir();
    let catalog = tokio::task::spawn_blocking(move || vigil_queries::Catalog::read(&dir))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| {
            let message = error::redact_paths(&e.to_string(), Some(state.history.data_dir()));
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "history_unreadable", message)
        })?;
    Ok(Json(
        catalog
            .tables
            .into_iter()
            .map(|(name, t)| TableSummary {
                name,
                rows: t.rows,
                files: t.files.len(),
                partitions: t.partitions,
                columns: t.columns,
            })
            .collect(),
    ))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route")
}

/// Turns axum's own plain-text errors (a body over the limit caught before a handler, say) into
/// the API's shape.
async fn shape_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    // JSON errors are the API's own; HTML ones are the console's error pages.
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            s if s.is_server_error() => "internal",
            _ => "bad_request",
        };
        let message = status.canonical_reason().unwrap_or("error").to_string();
        return ApiError::new(status, code, message).into_response();
    }
    resp
}

/// The scope each keyed route needs, as (method, path, scope): [`app`] groups its keyed routes by
/// scope exactly so (keep the two together), and the OpenAPI document takes each operation's
/// `x-scope`, its scope sentence and its 401/403/429 responses from here ([`openapi`]).
/// `tests/openapi.rs` checks this table against the served router with one-scope keys.
pub const KEYED_ROUTES: &[(&str, &str, Scope)] = &[
    ("GET", "/api/v1/history", Scope::Read),
    ("GET", "/api/v1/sensors", Scope::Read),
    ("GET", "/api/v1/readings", Scope::Read),
    ("GET", "/api/v1/anomalies", Scope::Read),
    ("GET", "/api/v1/drift", Scope::Read),
    ("GET", "/api/v1/predictions", Scope::Read),
    ("GET", "/api/v1/schedule", Scope::Read),
    ("GET", "/api/v1/fleet", Scope::Read),
    ("GET", "/api/v1/pipeline", Scope::Read),
    ("GET", "/api/v1/decisions/pending", Scope::Read),
    ("GET", "/api/v1/decisions", Scope::Read),
    ("POST", "/api/v1/query", Scope::Read),
    ("POST", "/api/v1/reports", Scope::Read),
    ("GET", "/api/v1/demo/golden-path/{correlation_id}", Scope::Read),
    ("GET", "/api/v1/models", Scope::Read),
    ("GET", "/api/v1/models/{name}/versions", Scope::Read),
    ("GET", "/api/v1/models/{name}/latest", Scope::Read),
    ("GET", "/api/v1/incidents", Scope::Read),
    ("GET", "/api/v1/incidents/{incident_id}", Scope::Read),
    ("POST", "/api/v1/decisions/{request_id}", Scope::Decide),
    ("POST", "/api/v1/incidents/{incident_id}/acknowledge", Scope::Decide),
    ("POST", "/api/v1/incidents/{incident_id}/shelve", Scope::Decide),
    ("POST", "/api/v1/incidents/{incident_id}/unshelve", Scope::Decide),
    ("POST", "/api/v1/maintenance/{proposal_id}/complete", Scope::Decide),
    ("POST", "/api/v1/readings", Scope::Ingest),
    ("POST", "/api/v1/demo/golden-path", Scope::Admin),
];

fn scoped(router: Router<AppState>, scope: Scope) -> Router<AppState> {
    router.route_layer(from_fn(move |req, next| auth::require(scope, req, next)))
}

/// The router.
pub fn app(state: AppState) -> Router {
    let read = Router::new()
        .route("/api/v1/history", get(history))
        .route("/api/v1/sensors", get(read::sensors))
        .route("/api/v1/readings", get(read::readings))
        .route("/api/v1/anomalies", get(read::anomalies))
        .route("/api/v1/drift", get(read::drift))
        .route("/api/v1/predictions", get(read::predictions))
        .route("/api/v1/schedule", get(read::schedule))
        .route("/api/v1/fleet", get(read::fleet))
        .route("/api/v1/pipeline", get(read::pipeline))
        .route("/api/v1/decisions/pending", get(planning::pending))
        .route("/api/v1/decisions", get(planning::audit))
        .route("/api/v1/query", post(read::query))
        .route("/api/v1/reports", post(read::report))
        .route("/api/v1/demo/golden-path/{correlation_id}", get(golden::status))
        .route("/api/v1/models", get(models::list))
        .route("/api/v1/models/{name}/versions", get(models::versions))
        .route("/api/v1/models/{name}/latest", get(models::latest))
        .route("/api/v1/incidents", get(incidents::incidents))
        .route("/api/v1/incidents/{incident_id}", get(incidents::incident))
        .layer(DefaultBodyLimit::max(state.config.body_limit_bytes));
    let decide = Router::new()
        .route("/api/v1/decisions/{request_id}", post(planning::decide))
        .route("/api/v1/maintenance/{proposal_id}/complete", post(planning::complete))
        .route("/api/v1/incidents/{incident_id}/acknowledge", post(incidents::acknowledge))
        .route("/api/v1/incidents/{incident_id}/shelve", post(incidents::shelve))
        .route("/api/v1/incidents/{incident_id}/unshelve", post(incidents::unshelve))
        .layer(DefaultBodyLimit::max(state.config.body_limit_bytes));
    let ingest = Router::new()
        .route("/api/v1/readings", post(ingest::readings))
        .layer(DefaultBodyLimit::max(state.config.ingest_limit_bytes));
    let admin = Router::new()
        .route("/api/v1/demo/golden-path", post(golden::start))
        .layer(DefaultBodyLimit::max(state.config.body_limit_bytes));
    let keyed = scoped(read, Scope::Read)
        .merge(scoped(admin, Scope::Admin))
        .merge(scoped(decide, Scope::Decide))
        .merge(scoped(ingest, Scope::Ingest))
        .route_layer(from_fn_with_state(state.clone(), auth::authenticate));
    let open = Router::new()
        .route("/health", get(health))
        .route("/api/v1/health", get(health_v1))
        .route("/ready", get(ready))
        .route("/api/v1/ready", get(ready_v1))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi::json))
        .route("/api/v1/docs", get(openapi::docs));
    open.merge(keyed)
        .merge(console::router())
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(from_fn(shape_errors))
        .layer(from_fn_with_state(state.clone(), observe::track))
        .with_state(state)
}
