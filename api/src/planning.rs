//! The human-decision loop: pending requests, decisions, the audit log, maintenance done.
//!
//! Input: decision requests and proposals the pipeline wrote to the history (read through
//! `vigil-queries`, cached in [`RequestIndex`]); decisions and completions from people.
//! Output: [`LedgerRecord`]s in the planning ledger, durable before the response — a decision,
//! and for an approval or rejection the proposal's new status (`schedule`); for a completion the
//! `maintenance` record and the `completed` status. State: [`PlanningBook`], the ledger's index.
//!
//! Rules: approve and reject are final — the same decision again (same operator, decision,
//! rationale) is answered with the recorded one (idempotent), another is 409. A deferral keeps
//! the request open until `deferred_until` (it leaves the pending list until then). Completion
//! needs an approved proposal and is recorded once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use vigil_connectors::ledger::{AppendError, LedgerRecord, LedgerState};
use vigil_connectors::webhook::NoticeKind;
use vigil_events::{
    Decision, HumanDecisionSubmitted, MaintenanceCompleted, MaintenanceKind, MaintenanceScheduled, ScheduleStatus, Severity,
};
use vigil_queries::canned::DecisionRequestRow;
use vigil_queries::History;

use crate::auth::Caller;
use crate::error::{check_time, parse_time, ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use crate::AppState;

/// Version of the decision and maintenance events.
const EVENT_VERSION: u32 = 1;
/// A deferral without a date asks again after this long.
const DEFAULT_DEFERRAL_MS: i64 = 24 * 3_600_000;
/// Longest operator name, rationale and notes.
const MAX_NAME: usize = 200;
const MAX_TEXT: usize = 4000;

/// What the ledger holds, indexed.
#[derive(Debug, Default)]
pub struct PlanningBook {
    decisions: Vec<HumanDecisionSubmitted>,
    by_request: HashMap<String, Vec<usize>>,
    /// Proposal → its latest status change recorded in the ledger.
    proposals: HashMap<String, MaintenanceScheduled>,
    maintenance: Vec<MaintenanceCompleted>,
    by_proposal: HashMap<String, usize>,
    /// Per incident: what people did about it, and the actions in order.
    incidents: HashMap<String, (crate::incidents::IncidentHandling, Vec<vigil_events::IncidentAction>)>,
}

impl LedgerState for PlanningBook {
    fn apply(&mut self, r: &LedgerRecord) {
        match r {
            LedgerRecord::Decision(d) => {
                self.by_request.entry(d.request_id.clone()).or_default().push(self.decisions.len());
                self.decisions.push(d.clone());
            }
            LedgerRecord::Schedule(s) => {
                self.proposals.insert(s.proposal_id.clone(), s.clone());
            }
            LedgerRecord::Maintenance(m) => {
                if let Some(p) = &m.proposal_id {
                    self.by_proposal.insert(p.clone(), self.maintenance.len());
                }
                self.maintenance.push(m.clone());
            }
            LedgerRecord::IncidentAction(a) => {
                let e = self.incidents.entry(a.incident_id.clone()).or_default();
                e.0.apply(a);
                e.1.push(a.clone());
            }
        }
    }
}

impl PlanningBook {
    /// The latest decision on a request.
    pub fn last_decision(&self, request_id: &str) -> Option<&HumanDecisionSubmitted> {
        self.by_request.get(request_id).and_then(|v| v.last()).map(|i| &self.decisions[*i])
    }
    /// Decisions recorded, in order.
    pub fn decisions(&self) -> &[HumanDecisionSubmitted] {
        &self.decisions
    }
    /// Maintenance recorded, in order.
    pub fn maintenance(&self) -> &[MaintenanceCompleted] {
        &self.maintenance
    }
    /// Per asset, the latest approval, rejection or completion recorded: what the dataflow must have
    /// applied (handed to it again at start; it applies them idempotently).
    pub fn latest_closing_changes(&self) -> Vec<MaintenanceScheduled> {
        let mut by_asset: HashMap<&str, &MaintenanceScheduled> = HashMap::new();
        for s in self.proposals.values() {
            // Approvals too: they open the asset's maintenance window (its alarms suppressed).
            if matches!(s.status, ScheduleStatus::Rejected | ScheduleStatus::Completed | ScheduleStatus::Scheduled) {
                let e = by_asset.entry(&s.asset_id).or_insert(s);
                if (s.ts, &s.proposal_id) > (e.ts, &e.proposal_id) {
                    *e = s;
                }
            }
        }
        let mut out: Vec<MaintenanceScheduled> = by_asset.into_values().cloned().collect();
        out.sort_by(|a, b| a.asset_id.cmp(&b.asset_id));
        out
    }
    /// What people did about an incident.
    pub fn incident_handling(&self, incident_id: &str) -> Option<&crate::incidents::IncidentHandling> {
        self.incidents.get(incident_id).map(|e| &e.0)
    }
    /// The actions on an incident, in order.
    pub fn incident_actions(&self, incident_id: &str) -> Vec<vigil_events::IncidentAction> {
        self.incidents.get(incident_id).map(|e| e.1.clone()).unwrap_or_default()
    }
    /// The ledger's latest status of a proposal.
    pub fn proposal_status(&self, proposal_id: &str) -> Option<ScheduleStatus> {
        self.proposals.get(proposal_id).map(|s| s.status)
    }
}

/// The pipeline's decision requests (with their proposals), cached: requests never change once
/// written, so the cache is reloaded only for an id it does not know (at most every 250 ms) and
/// for the pending list (at most every second).
#[derive(Default)]
pub struct RequestIndex {
    cache: tokio::sync::Mutex<Requests>,
    /// The requests raised while replaying history (`vigil replay`, `vigil demo`), from the
    /// manifest's marks of bounded runs, and the replayed runs themselves.
    replayed: std::sync::Mutex<Arc<Replayed>>,
}

/// The bounded runs of the history (replayed periods) and the decision requests they raised.
#[derive(Debug, Default)]
pub struct Replayed {
    /// The runs, oldest first.
    pub runs: Vec<vigil_connectors::inputs::ReplayedRun>,
    /// Their decision requests.
    pub requests: std::collections::BTreeSet<String>,
}

/// Requests by id, in order, and when they were loaded.
type Requests = (HashMap<String, Arc<DecisionRequestRow>>, Vec<Arc<DecisionRequestRow>>, Option<Instant>);

impl RequestIndex {
    async fn reload_if_older(&self, history: &History, age: Duration) -> Result<(), ApiError> {
        let mut c = self.cache.lock().await;
        if c.2.is_some_and(|t| t.elapsed() < age) {
            return Ok(());
        }
        let rows = history.decision_requests().await?;
        let dir = history.data_dir().to_path_buf();
        let replayed = tokio::task::spawn_blocking(move || vigil_connectors::inputs::replayed_runs(&dir))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        if let Ok(mut r) = self.replayed.lock() {
            *r = Arc::new(Replayed { runs: replayed.0, requests: replayed.1 });
        }
        let list: Vec<Arc<DecisionRequestRow>> = rows.into_iter().map(Arc::new).collect();
        c.0 = list.iter().map(|r| (r.request_id.clone(), r.clone())).collect();
        c.1 = list;
        c.2 = Some(Instant::now());
        Ok(())
    }

    /// One request.
    pub async fn get(&self, history: &History, id: &str) -> Result<Option<Arc<DecisionRequestRow>>, ApiError> {
        if let Some(r) = self.cache.lock().await.0.get(id) {
            return Ok(Some(r.clone()));
        }
        self.reload_if_older(history, Duration::from_millis(250)).await?;
        Ok(self.cache.lock().await.0.get(id).cloned())
    }

    /// The replayed runs and their requests, as of the last reload (at most a second old after
    /// [`RequestIndex::all`]).
    pub fn replayed(&self) -> Arc<Replayed> {
        self.replayed.lock().map(|r| Arc::clone(&r)).unwrap_or_default()
    }

    /// The replayed runs and their requests, reloaded when older than a second.
    pub async fn replayed_now(&self, history: &History) -> Result<Arc<Replayed>, ApiError> {
        self.reload_if_older(history, Duration::from_secs(1)).await?;
        Ok(self.replayed())
    }

    /// Every request, oldest first, read from the history now (for a caller that just committed
    /// one: [`RequestIndex::all`] may answer from a load up to a second old).
    pub async fn all_now(&self, history: &History) -> Result<Vec<Arc<DecisionRequestRow>>, ApiError> {
        self.reload_if_older(history, Duration::ZERO).await?;
        Ok(self.cache.lock().await.1.clone())
    }

    /// Every request, oldest first.
    pub async fn all(&self, history: &History) -> Result<Vec<Arc<DecisionRequestRow>>, ApiError> {
        self.reload_if_older(history, Duration::from_secs(1)).await?;
        Ok(self.cache.lock().await.1.clone())
    }
}

/// A decision request as the pending list shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PendingRequest {
    /// The request (question, deadline, proposal).
    #[serde(flatten)]
    pub request: DecisionRequestRow,
    /// `pending`, or `deferred` (until `deferred_until`).
    pub status: String,
    /// Until when it is deferred.
    pub deferred_until: Option<i64>,
    /// Whether the deadline has passed.
    pub overdue: bool,
    /// Raised while replaying history (`vigil replay`, `vigil demo`), not by the live pipeline:
    /// listed only with `include_replayed`.
    pub replayed: bool,
}

/// Query of the pending list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PendingQuery {
    /// Only this asset.
    pub asset_id: Option<String>,
    /// Also list requests deferred to a later time.
    #[serde(default)]
    pub include_deferred: bool,
    /// Also list requests raised while replaying history (`vigil replay`, `vigil demo`).
    #[serde(default)]
    pub include_replayed: bool,
}

/// `GET /api/v1/decisions/pending`: requests with no final decision, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/decisions/pending",
    tag = "decisions",
    operation_id = "list_pending_decisions",
    summary = "Decision requests with no final decision, oldest first",
    description = "The pipeline's decision requests not yet approved or rejected, with their proposal; deferred ones only with `include_deferred`, those raised while replaying history (`vigil replay`, `vigil demo`: `replayed`) only with `include_replayed`.",
    params(PendingQuery),
    responses(
        (status = 200, description = "The pending requests", body = Vec<PendingRequest>),
        (status = 400, description = "A bad or unknown query parameter (`bad_query`)", body = ErrorBody),
        (status = 500, description = "The decision requests could not be read from the history (`query_failed`), or an internal error", body = ErrorBody),
        (status = 504, description = "Reading the decision requests ran past `[query] timeout_ms` (`query_timeout`)", body = ErrorBody),
        (status = 413, description = "Reading the decision requests needed more memory than `[query] memory_limit_mb` (`query_too_large`)", body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn pending(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PendingQuery>,
) -> Result<Json<Vec<PendingRequest>>, ApiError> {
    pending_requests(&state, &q).await.map(Json)
}

/// The pending list (the REST handler's and the console's).
pub(crate) async fn pending_requests(state: &AppState, q: &PendingQuery) -> Result<Vec<PendingRequest>, ApiError> {
    let all = state.requests.all(&state.history).await?;
    let replayed = state.requests.replayed();
    let now = (state.now_ms)();
    let out = state.ledger.read(|book| {
        all.iter()
            .filter(|r| q.asset_id.as_ref().is_none_or(|a| *a == r.asset_id))
            .filter(|r| q.include_replayed || !replayed.requests.contains(&r.request_id))
            .filter_map(|r| {
                let last = book.last_decision(&r.request_id);
                let deferred_until = match last {
                    Some(d) if d.decision.is_final() => return None,
                    Some(d) => d.deferred_until,
                    None => None,
                };
                let deferred = deferred_until.is_some_and(|t| t > now);
                if deferred && !q.include_deferred {
                    return None;
                }
                Some(PendingRequest {
                    request: (**r).clone(),
                    status: if deferred { "deferred" } else { "pending" }.into(),
                    deferred_until,
                    overdue: r.deadline < now,
                    replayed: replayed.requests.contains(&r.request_id),
                })
            })
            .collect()
    });
    Ok(out)
}

/// Body of `POST /api/v1/decisions/{request_id}`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// `approve`, `reject` or `defer`.
    pub decision: Decision,
    /// Who decides (defaults to the API key's name).
    pub operator: Option<String>,
    /// Why.
    pub rationale: Option<String>,
    /// For `defer`: when to ask again (RFC 3339 or epoch ms; default in 24 h).
    #[schema(value_type = Option<crate::openapi::TimeValue>)]
    pub deferred_until: Option<serde_json::Value>,
}

/// The answer to a decision.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DecisionResponse {
    /// The recorded decision.
    pub decision: HumanDecisionSubmitted,
    /// The proposal's new status, if it changed.
    pub schedule: Option<MaintenanceScheduled>,
    /// Whether this repeats a decision already recorded (nothing new was written).
    pub replayed: bool,
}

enum Refusal {
    Replay(Box<HumanDecisionSubmitted>),
    Conflict(String),
}

fn text_field(name: &str, v: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    let v = v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    if let Some(s) = &v {
        if s.chars().count() > max {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!("{name} is longer than {max} characters"),
            ));
        }
    }
    Ok(v)
}

fn time_value(name: &str, v: &serde_json::Value) -> Result<i64, ApiError> {
    match v {
        serde_json::Value::String(s) => parse_time(name, s),
        serde_json::Value::Number(n) => {
            let t = n.as_i64().ok_or_else(|| ApiError::bad_request("bad_parameter", format!("{name}: not a time")))?;
            check_time(name, t)
        }
        _ => Err(ApiError::bad_request("bad_parameter", format!("{name}: not a time (RFC 3339 or epoch milliseconds)"))),
    }
}

fn schedule_change(
    req: &DecisionRequestRow,
    status: ScheduleStatus,
    ts: i64,
    why: &str,
    previous: Option<&MaintenanceScheduled>,
) -> MaintenanceScheduled {
    let priority = previous
        .map(|p| p.priority)
        .or_else(|| req.priority.as_deref().and_then(|p| serde_json::from_value(serde_json::Value::String(p.into())).ok()))
        .unwrap_or(Severity::Medium);
    MaintenanceScheduled {
        event_id: vigil_events::event_id("schedule", &[&req.proposal_id, status.as_str()], ts),
        correlation_id: req.correlation_id.clone(),
        event_version: EVENT_VERSION,
        proposal_id: req.proposal_id.clone(),
        asset_id: Arc::from(req.asset_id.as_str()),
        status,
        ts,
        scheduled_for: previous.map(|p| p.scheduled_for).or(req.scheduled_for).unwrap_or(ts),
        priority,
        reason: why.to_string(),
        requires_decision: true,
    }
}

/// `POST /api/v1/decisions/{request_id}`.
#[utoipa::path(
    post,
    path = "/api/v1/decisions/{request_id}",
    tag = "decisions",
    operation_id = "decide",
    summary = "Approve, reject or defer a decision request",
    description = "Records the decision in the planning ledger (durable before the answer); approve and reject also change the proposal's status. Approve and reject are final: the same decision again is answered with the recorded one (200, `replayed`), another is 409.",
    params(("request_id" = String, Path, description = "The decision request (its event id)")),
    request_body(content = DecisionBody, content_type = "application/json", description = "The decision"),
    responses(
        (status = 201, description = "Recorded", body = DecisionResponse),
        (status = 200, description = "The same decision was already recorded; nothing new was written (`replayed: true`)", body = DecisionResponse),
        (status = 400, description = "Bad JSON, a bad path, or a time that does not parse or lies outside 1970-01-01 to 9999-12-31 (`bad_json`, `bad_path`, `bad_parameter`, naming the field)", body = ErrorBody),
        (status = 404, description = "No such decision request (`not_found`)", body = ErrorBody),
        (status = 409, description = "The request was already decided otherwise (`already_decided`)", body = ErrorBody),
        (status = 413, description = "The body is larger than `[api] body_limit_bytes`, or reading the decision requests needed more memory than `[query] memory_limit_mb` (`query_too_large`)", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "The body does not match the schema, a text is too long, or `deferred_until` is in the past or given without `defer` (`invalid_body`)", body = ErrorBody),
        (status = 500, description = "The decision requests could not be read from the history (`query_failed`), or an internal error", body = ErrorBody),
        (status = 504, description = "Reading the decision requests ran past `[query] timeout_ms` (`query_timeout`)", body = ErrorBody),
        (status = 503, description = "The ledger did not record the decision (`ledger_unavailable`)", body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn decide(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(request_id): ApiPath<String>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> Result<Response, ApiError> {
    let (status, response) = record_decision(&state, &caller, request_id, body).await?;
    Ok((status, Json(response)).into_response())
}

/// Records a decision: 201 and the decision when new, 200 when it repeats the recorded one (the
/// REST handler's and the console's).
pub(crate) async fn record_decision(
    state: &AppState,
    caller: &Caller,
    request_id: String,
    body: DecisionBody,
) -> Result<(StatusCode, DecisionResponse), ApiError> {
    let operator = text_field("operator", body.operator.clone(), MAX_NAME)?.unwrap_or_else(|| caller.name.clone());
    let rationale = text_field("rationale", body.rationale.clone(), MAX_TEXT)?;
    let now = (state.now_ms)();
    let deferred_until = match (body.decision, &body.deferred_until) {
        (Decision::Defer, Some(v)) => {
            let t = time_value("deferred_until", v)?;
            if t <= now {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                    "deferred_until must be in the future",
                ));
            }
            Some(t)
        }
        (Decision::Defer, None) => Some(now.saturating_add(DEFAULT_DEFERRAL_MS)),
        (_, Some(_)) => {
            return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", "deferred_until only goes with defer"));
        }
        (_, None) => None,
    };
    let Some(req) = state.requests.get(&state.history, &request_id).await? else {
        return Err(ApiError::not_found(format!("no decision request {request_id:?}")));
    };
    let result = state
        .ledger
        .append_with(|book: &PlanningBook| {
            if let Some(last) = book.last_decision(&request_id) {
                let same = last.decision == body.decision && last.decided_by == operator && last.comment == rationale;
                let same_deferral =
                    body.decision != Decision::Defer || body.deferred_until.is_none() || last.deferred_until == deferred_until;
                if same && same_deferral {
                    return Err(Refusal::Replay(Box::new(last.clone())));
                }
                if last.decision.is_final() {
                    return Err(Refusal::Conflict(format!(
                        "request {request_id} was already decided: {} by {} at {}",
                        last.decision.as_str(),
                        last.decided_by,
                        vigil_events::format_rfc3339_ms(last.ts)
                    )));
                }
            }
            let decision = HumanDecisionSubmitted {
                event_id: vigil_events::event_id("decision", &[&request_id, body.decision.as_str(), &operator], now),
                correlation_id: req.correlation_id.clone(),
                event_version: EVENT_VERSION,
                request_id: request_id.clone(),
                proposal_id: req.proposal_id.clone(),
                asset_id: Arc::from(req.asset_id.as_str()),
                decision: body.decision,
                decided_by: operator.clone(),
                via_key: caller.name.clone(),
                comment: rationale.clone(),
                ts: now,
                deferred_until,
            };
            let previous = book.proposals.get(&req.proposal_id);
            let why =
                |verb: &str| format!("{verb} by {operator}{}", rationale.as_ref().map_or(String::new(), |r| format!(": {r}")));
            let change = match body.decision {
                Decision::Approve => Some(schedule_change(&req, ScheduleStatus::Scheduled, now, &why("approved"), previous)),
                Decision::Reject => Some(schedule_change(&req, ScheduleStatus::Rejected, now, &why("rejected"), previous)),
                Decision::Defer => None,
            };
            let mut out = vec![LedgerRecord::Decision(decision)];
            out.extend(change.map(LedgerRecord::Schedule));
            Ok(out)
        })
        .await;
    match result {
        Ok(records) => {
            let mut decision = None;
            let mut schedule = None;
            for r in records {
                match r {
                    LedgerRecord::Decision(d) => decision = Some(d),
                    LedgerRecord::Schedule(s) => schedule = Some(s),
                    LedgerRecord::Maintenance(_) | LedgerRecord::IncidentAction(_) => {}
                }
            }
            let decision = decision.ok_or_else(|| ApiError::internal("the ledger returned no decision"))?;
            state.metrics.decision(decision.decision.as_str());
            tracing::info!(request = %request_id, decision = decision.decision.as_str(), operator = %decision.decided_by, "decision recorded");
            if let Some(n) = &state.notifier {
                n.event(NoticeKind::Decision, &decision.event_id, None, &decision);
                if let Some(s) = &schedule {
                    n.event(NoticeKind::Proposal, &s.event_id, Some(s.priority), s);
                }
            }
            if let (Some(p), Some(s)) = (&state.pipeline, &schedule) {
                p.schedule_changed(s);
            }
            Ok((StatusCode::CREATED, DecisionResponse { decision, schedule, replayed: false }))
        }
        Err(AppendError::Refused(Refusal::Replay(d))) => {
            Ok((StatusCode::OK, DecisionResponse { decision: *d, schedule: None, replayed: true }))
        }
        Err(AppendError::Refused(Refusal::Conflict(m))) => Err(ApiError::conflict("already_decided", m)),
        Err(AppendError::Failed(m)) => {
            Err(ApiError::unavailable("ledger_unavailable", format!("the decision was not recorded: {m}")))
        }
    }
}

/// Query of the audit log.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only this asset.
    pub asset_id: Option<String>,
    /// Only this request.
    pub request_id: Option<String>,
    /// Only this decision.
    pub decision: Option<Decision>,
    /// Only decisions by this operator.
    pub decided_by: Option<String>,
    /// From (RFC 3339 or ms, inclusive).
    pub from: Option<String>,
    /// To (exclusive).
    pub to: Option<String>,
    /// Page size (default 50, at most 1000).
    pub limit: Option<usize>,
    /// Skip this many (newest first).
    pub offset: Option<usize>,
}

/// A page of the audit log.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// Decisions matching the filter.
    pub total: usize,
    /// First item's position.
    pub offset: usize,
    /// Page size.
    pub limit: usize,
    /// Decisions, newest first.
    pub items: Vec<HumanDecisionSubmitted>,
}

/// `GET /api/v1/decisions`: the audit log, newest first, paginated.
#[utoipa::path(
    get,
    path = "/api/v1/decisions",
    tag = "decisions",
    operation_id = "list_decisions",
    summary = "The audit log of decisions, newest first, paginated",
    description = "Every decision recorded in the planning ledger, filtered by asset, request, decision, operator and time.",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of decisions", body = AuditPage),
        (status = 400, description = "A bad or unknown query parameter (`bad_query`, `bad_parameter`)", body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn audit(State(state): State<AppState>, ApiQuery(q): ApiQuery<AuditQuery>) -> Result<Json<AuditPage>, ApiError> {
    audit_page(&state, &q).map(Json)
}

/// A page of the audit log (the REST handler's and the console's).
pub(crate) fn audit_page(state: &AppState, q: &AuditQuery) -> Result<AuditPage, ApiError> {
    let from = q.from.as_deref().map(|s| parse_time("from", s)).transpose()?;
    let to = q.to.as_deref().map(|s| parse_time("to", s)).transpose()?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let offset = q.offset.unwrap_or(0);
    let page = state.ledger.read(|book| {
        let matching: Vec<&HumanDecisionSubmitted> = book
            .decisions()
            .iter()
            .rev()
            .filter(|d| q.asset_id.as_ref().is_none_or(|a| **a == *d.asset_id))
            .filter(|d| q.request_id.as_ref().is_none_or(|r| *r == d.request_id))
            .filter(|d| q.decision.is_none_or(|x| x == d.decision))
            .filter(|d| q.decided_by.as_ref().is_none_or(|x| *x == d.decided_by))
            .filter(|d| from.is_none_or(|f| d.ts >= f) && to.is_none_or(|t| d.ts < t))
            .collect();
        AuditPage {
            total: matching.len(),
            offset,
            limit,
            items: matching.into_iter().skip(offset).take(limit).cloned().collect(),
        }
    });
    Ok(page)
}

/// Body of `POST /api/v1/maintenance/{proposal_id}/complete`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompletionBody {
    /// Who did the work (defaults to the API key's name).
    pub performed_by: Option<String>,
    /// What was done.
    pub notes: Option<String>,
    /// `preventive` (default) or `corrective`.
    pub kind: Option<MaintenanceKind>,
    /// Out of service from (default: the completion time).
    #[schema(value_type = Option<crate::openapi::TimeValue>)]
    pub started_at: Option<serde_json::Value>,
    /// Back in service at (default: now).
    #[schema(value_type = Option<crate::openapi::TimeValue>)]
    pub completed_at: Option<serde_json::Value>,
}

/// The answer to a completion.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CompletionResponse {
    /// The maintenance record.
    pub maintenance: MaintenanceCompleted,
    /// The proposal's `completed` status.
    pub schedule: Option<MaintenanceScheduled>,
    /// Whether this repeats a completion already recorded.
    pub replayed: bool,
}

enum CompletionRefusal {
    Replay(Box<MaintenanceCompleted>),
    Conflict(&'static str, String),
}

/// `POST /api/v1/maintenance/{proposal_id}/complete`: the approved maintenance is done.
#[utoipa::path(
    post,
    path = "/api/v1/maintenance/{proposal_id}/complete",
    tag = "decisions",
    operation_id = "complete_maintenance",
    summary = "The approved maintenance is done",
    description = "Records the maintenance and the proposal's `completed` status in the planning ledger; the asset's baselines restart. Needs an approved proposal; recorded once (the same completion again is 200, `replayed`).",
    params(("proposal_id" = String, Path, description = "The proposal carried out")),
    request_body(content = CompletionBody, content_type = "application/json", description = "Who did what, and when"),
    responses(
        (status = 201, description = "Recorded", body = CompletionResponse),
        (status = 200, description = "The same completion was already recorded; nothing new was written (`replayed: true`)", body = CompletionResponse),
        (status = 400, description = "Bad JSON, a bad path, or a time that does not parse or lies outside 1970-01-01 to 9999-12-31 (`bad_json`, `bad_path`, `bad_parameter`, naming the field)", body = ErrorBody),
        (status = 404, description = "No such proposal with a decision request (`not_found`)", body = ErrorBody),
        (status = 409, description = "Already completed otherwise (`already_completed`), or the proposal is not approved (`not_scheduled`)", body = ErrorBody),
        (status = 413, description = "The body is larger than `[api] body_limit_bytes`, or reading the decision requests needed more memory than `[query] memory_limit_mb` (`query_too_large`)", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "The body does not match the schema, a text is too long, or `started_at` is after `completed_at` (`invalid_body`)", body = ErrorBody),
        (status = 500, description = "The decision requests could not be read from the history (`query_failed`), or an internal error", body = ErrorBody),
        (status = 504, description = "Reading the decision requests ran past `[query] timeout_ms` (`query_timeout`)", body = ErrorBody),
        (status = 503, description = "The ledger did not record the completion (`ledger_unavailable`)", body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn complete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(proposal_id): ApiPath<String>,
    ApiJson(body): ApiJson<CompletionBody>,
) -> Result<Response, ApiError> {
    let performed_by = text_field("performed_by", body.performed_by.clone(), MAX_NAME)?.unwrap_or_else(|| caller.name.clone());
    let notes = text_field("notes", body.notes.clone(), MAX_TEXT)?;
    let now = (state.now_ms)();
    let ts = body.completed_at.as_ref().map(|v| time_value("completed_at", v)).transpose()?.unwrap_or(now);
    let started_at = body.started_at.as_ref().map(|v| time_value("started_at", v)).transpose()?.unwrap_or(ts);
    if started_at > ts {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", "started_at is after completed_at"));
    }
    let kind = body.kind.unwrap_or(MaintenanceKind::Preventive);
    let requests = state.requests.all(&state.history).await?;
    let Some(req) = requests.iter().find(|r| r.proposal_id == proposal_id).cloned() else {
        return Err(ApiError::not_found(format!("no proposal {proposal_id:?} with a decision request")));
    };
    let result = state
        .ledger
        .append_with(|book: &PlanningBook| {
            if let Some(i) = book.by_proposal.get(&proposal_id) {
                let done = &book.maintenance[*i];
                if done.performed_by == performed_by && done.notes == notes && done.kind == kind {
                    return Err(CompletionRefusal::Replay(Box::new(done.clone())));
                }
                return Err(CompletionRefusal::Conflict(
                    "already_completed",
                    format!("proposal {proposal_id} was completed at {}", vigil_events::format_rfc3339_ms(done.ts)),
                ));
            }
            match book.proposal_status(&proposal_id) {
                Some(ScheduleStatus::Scheduled) => {}
                other => {
                    let status = other.map_or("proposed (not approved)", |s| s.as_str());
                    return Err(CompletionRefusal::Conflict(
                        "not_scheduled",
                        format!("proposal {proposal_id} is {status}; only approved maintenance can be completed"),
                    ));
                }
            }
            let m = MaintenanceCompleted {
                event_id: vigil_events::event_id("maintenance", &[&proposal_id], ts),
                correlation_id: req.correlation_id.clone(),
                event_version: EVENT_VERSION,
                proposal_id: Some(proposal_id.clone()),
                asset_id: Arc::from(req.asset_id.as_str()),
                kind,
                started_at,
                ts,
                performed_by: performed_by.clone(),
                notes: notes.clone(),
            };
            // The status changes when the completion is recorded (the work itself may be reported late).
            let change = schedule_change(
                &req,
                ScheduleStatus::Completed,
                now,
                &format!("completed by {performed_by}"),
                book.proposals.get(&proposal_id),
            );
            Ok(vec![LedgerRecord::Maintenance(m), LedgerRecord::Schedule(change)])
        })
        .await;
    match result {
        Ok(records) => {
            let mut maintenance = None;
            let mut schedule = None;
            for r in records {
                match r {
                    LedgerRecord::Maintenance(m) => maintenance = Some(m),
                    LedgerRecord::Schedule(s) => schedule = Some(s),
                    LedgerRecord::Decision(_) | LedgerRecord::IncidentAction(_) => {}
                }
            }
            let maintenance = maintenance.ok_or_else(|| ApiError::internal("the ledger returned no maintenance record"))?;
            tracing::info!(proposal = %proposal_id, asset = %maintenance.asset_id, "maintenance completed");
            if let (Some(p), Some(s)) = (&state.pipeline, &schedule) {
                p.schedule_changed(s);
            }
            Ok((StatusCode::CREATED, Json(CompletionResponse { maintenance, schedule, replayed: false })).into_response())
        }
        Err(AppendError::Refused(CompletionRefusal::Replay(m))) => {
            Ok((StatusCode::OK, Json(CompletionResponse { maintenance: *m, schedule: None, replayed: true })).into_response())
        }
        Err(AppendError::Refused(CompletionRefusal::Conflict(code, m))) => Err(ApiError::conflict(code, m)),
        Err(AppendError::Failed(m)) => {
            Err(ApiError::unavailable("ledger_unavailable", format!("the completion was not recorded: {m}")))
        }
    }
}
