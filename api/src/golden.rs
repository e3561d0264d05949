//! The golden-path demo: simulate → detect → predict → propose → decision request, each step
//! with its status and timing.
//!
//! `POST /api/v1/demo/golden-path` (admin) starts a run: the pipeline ([`crate::Pipeline`])
//! simulates a small fleet whose one asset fails, named after the run's correlation id, and puts
//! it through the whole dataflow into the history (a bounded run beside the live one). The API
//! then reads the history back — the same queries planners use — to confirm each step, and
//! finds the decision request, which is then pending like any other.
//! `GET /api/v1/demo/golden-path/{correlation_id}` (read) shows the steps. Runs go one at a
//! time (each is a whole dataflow run); `[api] golden_path_queue` more may wait `queued`, then
//! 429 `golden_path_busy`. State: the last 100 runs, in memory, and the turn.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use vigil_queries::canned::EventFilter;

use crate::error::{ApiError, ApiPath, ErrorBody};
use crate::AppState;

/// Runs kept.
const KEEP: usize = 100;

/// What the pipeline reports of a golden-path run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GoldenOutcome {
    /// Readings simulated.
    pub readings: u64,
    /// Time to simulate them (ms).
    pub simulate_ms: f64,
    /// Time of the dataflow, history commit included (ms).
    pub dataflow_ms: f64,
    /// Readings accepted.
    pub accepted: u64,
    /// Anomalies found.
    pub anomalies: u64,
    /// Predictions made.
    pub predictions: u64,
    /// Proposals made.
    pub proposals: u64,
    /// Decisions requested.
    pub decision_requests: u64,
}

/// One step of a run.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Step {
    /// `simulate`, `ingest`, `detect`, `predict`, `propose` or `request_decision`.
    pub name: String,
    /// `pending`, `running`, `done` or `failed`.
    pub status: String,
    /// Milliseconds from the start of the run to the step's end.
    pub at_ms: Option<f64>,
    /// What the step produced.
    pub detail: Option<String>,
}

/// A golden-path run.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GoldenRun {
    /// The run's correlation id.
    pub correlation_id: String,
    /// The simulated failing asset.
    pub asset_id: String,
    /// `queued` (waiting for the run before it), `running`, `awaiting_decision`, `done` or
    /// `failed`.
    pub status: String,
    /// Wall-clock start (ms).
    pub started_at: i64,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// The decision request to answer (`POST /api/v1/decisions/{request_id}`).
    pub request_id: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// The runs, newest last, and whose turn it is.
pub struct GoldenRuns {
    runs: Mutex<(BTreeMap<String, GoldenRun>, VecDeque<String>)>,
    /// One run at a time.
    turn: Arc<tokio::sync::Semaphore>,
    /// Runs started and not finished (running or waiting).
    active: AtomicUsize,
    /// Runs that may wait.
    queue: usize,
}

impl GoldenRuns {
    /// No run yet; `queue` runs may wait while one runs.
    pub fn new(queue: usize) -> Self {
        GoldenRuns { runs: Mutex::default(), turn: Arc::new(tokio::sync::Semaphore::new(1)), active: AtomicUsize::new(0), queue }
    }

    /// A place among the active runs, or `None` when one runs and `queue` wait.
    fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let limit = self.queue.saturating_add(1);
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1))
            .ok()
            .map(|_| Admitted { runs: Arc::clone(self) })
    }

    fn put(&self, run: GoldenRun) {
        let Ok(mut g) = self.runs.lock() else { return };
        let id = run.correlation_id.clone();
        if g.0.insert(id.clone(), run).is_none() {
            g.1.push_back(id);
        }
        while g.1.len() > KEEP {
            if let Some(old) = g.1.pop_front() {
                g.0.remove(&old);
            }
        }
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut GoldenRun)) {
        if let Ok(mut g) = self.runs.lock() {
            if let Some(r) = g.0.get_mut(id) {
                f(r);
            }
        }
    }

    fn get(&self, id: &str) -> Option<GoldenRun> {
        self.runs.lock().ok()?.0.get(id).cloned()
    }

    /// Ids of the kept runs, newest first.
    pub fn recent(&self) -> Vec<String> {
        self.runs.lock().map(|g| g.1.iter().rev().cloned().collect()).unwrap_or_default()
    }
}

/// A run counted among the active ones until dropped.
struct Admitted {
    runs: SharedRuns,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.runs.active.fetch_sub(1, Ordering::AcqRel);
    }
}

const STEPS: [&str; 6] = ["simulate", "ingest", "detect", "predict", "propose", "request_decision"];

fn finish(run: &mut GoldenRun, name: &str, ok: bool, at_ms: f64, detail: String) {
    if let Some(s) = run.steps.iter_mut().find(|s| s.name == name) {
        s.status = if ok { "done" } else { "failed" }.into();
        s.at_ms = Some(at_ms);
        s.detail = Some(detail);
    }
}

/// `POST /api/v1/demo/golden-path`.
#[utoipa::path(
    post,
    path = "/api/v1/demo/golden-path",
    tag = "demo",
    operation_id = "start_golden_path",
    summary = "Start a golden-path run: simulate, detect, predict, propose, request a decision",
    description = "The pipeline simulates a small fleet whose one asset fails and puts it through the whole dataflow into the history; each step is then confirmed from the history. Answers at once with the run (follow `Location`).",
    responses(
        (status = 202, description = "Started", body = GoldenRun,
            headers(("Location" = String, description = "`/api/v1/demo/golden-path/{correlation_id}` of the run"))),
        (status = 429, description = "One run is running and `[api] golden_path_queue` more wait their turn (`golden_path_busy`, with `Retry-After`)", body = ErrorBody),
        (status = 503, description = "No pipeline runs in this process (`no_pipeline`)", body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn start(State(state): State<AppState>) -> Result<Response, ApiError> {
    let run = start_run(&state)?;
    let location = format!("/api/v1/demo/golden-path/{}", run.correlation_id);
    Ok((StatusCode::ACCEPTED, [("location", location)], Json(run)).into_response())
}

/// Starts a golden-path run in the background (the REST handler's and the console's).
pub(crate) fn start_run(state: &AppState) -> Result<GoldenRun, ApiError> {
    let Some(pipeline) = state.pipeline.clone() else {
        return Err(ApiError::unavailable(
            "no_pipeline",
            "the golden path needs the pipeline (vigil serve without --no-pipeline)",
        ));
    };
    let Some(admitted) = state.golden.admit() else {
        return Err(ApiError {
            retry_after: Some(10),
            // Too many runs asked for at once: the client's to slow down (the server is fine).
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "golden_path_busy",
                format!(
                    "a golden path is running and {} more wait their turn ([api] golden_path_queue); try again later",
                    state.golden.queue
                ),
            )
        });
    };
    let started_at = (state.now_ms)();
    let tag =
        vigil_events::StableHasher::default().write_i64(started_at).write(crate::error::current_request_id().as_bytes()).finish();
    let prefix = format!("golden-{:08x}", tag as u32);
    let correlation_id = prefix.clone();
    let asset_id = format!("{prefix}-0001");
    let mut steps: Vec<Step> =
        STEPS.iter().map(|n| Step { name: (*n).to_string(), status: "pending".into(), at_ms: None, detail: None }).collect();
    // Its turn now, or once the runs before it are done.
    let now_turn = Arc::clone(&state.golden.turn).try_acquire_owned().ok();
    if now_turn.is_some() {
        steps[0].status = "running".into();
    }
    let run = GoldenRun {
        correlation_id: correlation_id.clone(),
        asset_id: asset_id.clone(),
        status: if now_turn.is_some() { "running" } else { "queued" }.into(),
        started_at,
        steps,
        request_id: None,
        error: None,
    };
    state.golden.put(run.clone());
    tracing::info!(correlation_id = %correlation_id, "golden path started");
    let st = state.clone();
    let id = correlation_id.clone();
    tokio::spawn(async move {
        let _admitted = admitted;
        let _turn = match now_turn {
            Some(t) => t,
            None => {
                let Ok(t) = Arc::clone(&st.golden.turn).acquire_owned().await else { return };
                st.golden.update(&id, |r| {
                    r.status = "running".into();
                    r.steps[0].status = "running".into();
                });
                t
            }
        };
        let clock = Instant::now();
        let p = prefix.clone();
        let outcome = tokio::task::spawn_blocking(move || pipeline.golden_path(&p)).await;
        let outcome = match outcome {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                let dir = st.data_dir();
                st.golden.update(&id, |r| {
                    r.status = "failed".into();
                    r.error = Some(crate::error::redact_paths(&e, Some(dir.as_path())));
                });
                return;
            }
            Err(e) => {
                st.golden.update(&id, |r| {
                    r.status = "failed".into();
                    r.error = Some(e.to_string());
                });
                return;
            }
        };
        let flow_end = outcome.simulate_ms + outcome.dataflow_ms;
        st.golden.update(&id, |r| {
            finish(
                r,
                "simulate",
                outcome.readings > 0,
                outcome.simulate_ms,
                format!("{} readings of 6 sensors", outcome.readings),
            );
        });
        // Confirm each step from the history, as a planner would see it.
        let filter = EventFilter { asset_id: Some(asset_id.clone()), limit: 1, ..EventFilter::default() };
        let stored = st.history.readings_count(&asset_id).await.unwrap_or(0);
        let anomalies = st.history.anomalies(&EventFilter { limit: 0, ..filter.clone() }).await.map(|v| v.len()).unwrap_or(0);
        let prediction = st.history.predictions(&filter).await.ok().and_then(|v| v.into_iter().next());
        let proposal = st.history.schedule(&filter).await.ok().and_then(|v| v.into_iter().next());
        let request = st
            .requests
            // The run committed its request just now: not from a load made before it.
            .all_now(&st.history)
            .await
            .ok()
            .and_then(|all| all.iter().rev().find(|r| r.asset_id == asset_id).map(|r| r.request_id.clone()));
        let read_ms = clock.elapsed().as_secs_f64() * 1000.0;
        st.golden.update(&id, |r| {
            finish(
                r,
                "ingest",
                stored > 0,
                flow_end,
                format!("{stored} readings stored ({} accepted by validation)", outcome.accepted),
            );
            finish(r, "detect", anomalies > 0, flow_end, format!("{anomalies} anomalies"));
            finish(
                r,
                "predict",
                prediction.is_some(),
                flow_end,
                prediction.as_ref().map_or("no prediction".into(), |p| {
                    format!(
                        "{} predictions; latest health {:.2}, failure probability {:.2}{}",
                        outcome.predictions,
                        p.health,
                        p.failure_probability,
                        p.rul_hours.map_or(String::new(), |h| format!(", RUL {h:.1} h"))
                    )
                }),
            );
            finish(
                r,
                "propose",
                proposal.is_some(),
                flow_end,
                proposal
                    .as_ref()
                    .map_or("no proposal".into(), |p| format!("proposal {} ({}, {})", p.proposal_id, p.priority, p.reason)),
            );
            finish(
                r,
                "request_decision",
                request.is_some(),
                read_ms.max(flow_end),
                request.as_ref().map_or("no decision request".into(), |q| format!("request {q} is pending")),
            );
            r.request_id = request.clone();
            let all_done = r.steps.iter().all(|s| s.status == "done");
            r.status = if all_done { "awaiting_decision" } else { "failed" }.into();
            if !all_done {
                r.error = Some("a step found nothing in the history".into());
            }
        });
        tracing::info!(correlation_id = %id, ms = read_ms, "golden path ran");
    });
    Ok(run)
}

/// `GET /api/v1/demo/golden-path/{correlation_id}`.
#[utoipa::path(
    get,
    path = "/api/v1/demo/golden-path/{correlation_id}",
    tag = "demo",
    operation_id = "golden_path_status",
    summary = "A golden-path run's steps, with their status and timing",
    description = "One of the last 100 runs; `done` once its decision request is answered.",
    params(("correlation_id" = String, Path, description = "The run's correlation id")),
    responses(
        (status = 200, description = "The run", body = GoldenRun),
        (status = 400, description = "A bad path (`bad_path`)", body = ErrorBody),
        (status = 404, description = "No such run among the last 100 (`not_found`)", body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn status(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<Json<GoldenRun>, ApiError> {
    run_status(&state, &id).map(Json)
}

/// A run as it stands (the REST handler's and the console's).
pub(crate) fn run_status(state: &AppState, id: &str) -> Result<GoldenRun, ApiError> {
    let mut run = state.golden.get(id).ok_or_else(|| ApiError::not_found(format!("no golden-path run {id:?}")))?;
    // Once the request is answered the run is done.
    if let Some(req) = &run.request_id {
        if state.ledger.read(|b| b.last_decision(req).is_some_and(|d| d.decision.is_final())) {
            run.status = "done".into();
        }
    }
    Ok(run)
}

/// Shared, for [`crate::AppState`].
pub type SharedRuns = Arc<GoldenRuns>;
