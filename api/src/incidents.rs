//! Incidents over REST: the alarm list people act on.
//!
//! `GET /api/v1/incidents` lists incidents (the latest revision of each, from the `incidents`
//! table the pipeline writes) with what people did about them; `GET /api/v1/incidents/{id}`
//! shows one with its revisions, its evidence (the asset's anomalies and drift events while it
//! was open) and its audit trail. `POST …/acknowledge`, `…/shelve` and `…/unshelve` (decide
//! scope) record a person's action in the planning ledger, durable before the answer, and
//! queryable as the `incident_actions` table.
//!
//! State: what people did, per incident, is part of the planning ledger's state
//! ([`crate::planning::PlanningBook`]).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use vigil_connectors::ledger::{AppendError, LedgerRecord};
use vigil_events::{Incident, IncidentAction, IncidentActionKind, Severity};
use vigil_queries::canned::{AnomalyRow, DriftRow, EventFilter, IncidentFilter};

use crate::auth::Caller;
use crate::error::{parse_time, ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use crate::planning::PlanningBook;
use crate::AppState;

/// Longest shelving (ms): a shelved alarm must come back.
pub const MAX_SHELVE_MS: i64 = 30 * 24 * 3_600_000;
/// Longest note.
const MAX_NOTE: usize = 4000;

/// What people did about one incident, from the ledger.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct IncidentHandling {
    /// Who acknowledged it (first acknowledgement).
    pub acknowledged_by: Option<String>,
    /// When (ms).
    pub acknowledged_at: Option<i64>,
    /// Shelved until (ms), while that lies ahead.
    pub shelved_until: Option<i64>,
    /// Who shelved it.
    pub shelved_by: Option<String>,
}

impl IncidentHandling {
    /// Applies one action, in ledger order.
    pub(crate) fn apply(&mut self, a: &IncidentAction) {
        match a.action {
            IncidentActionKind::Acknowledge => {
                if self.acknowledged_by.is_none() {
                    self.acknowledged_by = Some(a.performed_by.clone());
                    self.acknowledged_at = Some(a.ts);
                }
            }
            IncidentActionKind::Shelve => {
                self.shelved_until = a.shelved_until;
                self.shelved_by = Some(a.performed_by.clone());
            }
            IncidentActionKind::Unshelve => {
                self.shelved_until = None;
                self.shelved_by = None;
            }
        }
    }

    fn shelved_at(&self, now: i64) -> bool {
        self.shelved_until.is_some_and(|u| u > now)
    }
}

/// An incident as listed: its latest revision and what people did about it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IncidentView {
    /// The latest revision.
    #[serde(flatten)]
    pub incident: Incident,
    /// Acknowledged and shelved state.
    pub handling: IncidentHandling,
    /// Shelved right now.
    pub shelved: bool,
}

/// Query of `GET /api/v1/incidents`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct IncidentsQuery {
    /// Only this asset.
    pub asset_id: Option<String>,
    /// `open` (default: incidents not closed yet), `closed` or `all`.
    pub status: Option<String>,
    /// Only those of at least this severity (`low`, `medium`, `high`, `critical`).
    pub min_severity: Option<String>,
    /// Opened at or after (RFC 3339 or ms).
    pub from: Option<String>,
    /// Opened before.
    pub to: Option<String>,
    /// Shelved incidents too (default false).
    pub include_shelved: Option<bool>,
    /// Incidents raised in a maintenance window too (default true).
    pub include_suppressed: Option<bool>,
    /// At most this many, the most recently opened first (default 100).
    pub limit: Option<usize>,
}

/// The incidents a query asks for (the REST handler's and the console's).
pub(crate) async fn list(state: &AppState, q: &IncidentsQuery) -> Result<Vec<IncidentView>, ApiError> {
    let status = q.status.as_deref().unwrap_or("open");
    if !["open", "closed", "all"].contains(&status) {
        return Err(ApiError::bad_request("bad_parameter", format!("status: {status:?} is not open, closed or all")));
    }
    let min_severity = match q.min_severity.as_deref() {
        None => None,
        Some(s) => Some(serde_json::from_value::<Severity>(serde_json::Value::String(s.to_string())).map_err(|_| {
            ApiError::bad_request("bad_parameter", format!("min_severity: {s:?} is not low, medium, high or critical"))
        })?),
    };
    let limit = q.limit.unwrap_or(100).min(10_000);
    let filter = IncidentFilter {
        asset_id: q.asset_id.clone(),
        incident_id: None,
        open_only: status == "open",
        min_severity,
        from: q.from.as_deref().map(|s| parse_time("from", s)).transpose()?,
        to: q.to.as_deref().map(|s| parse_time("to", s)).transpose()?,
        // Shelved and suppressed ones may be left out after the query: ask for more.
        limit: 0,
    };
    let rows = state.history.incidents(&filter).await?;
    if rows.is_empty() {
        if let Some(a) = &q.asset_id {
            state.history.require_asset(a).await?;
        }
    }
    let now = (state.now_ms)();
    let handling = state.ledger.read(|book: &PlanningBook| {
        rows.iter().map(|r| book.incident_handling(&r.incident_id).cloned().unwrap_or_default()).collect::<Vec<_>>()
    });
    Ok(rows
        .into_iter()
        .zip(handling)
        .filter(|(r, _)| status != "closed" || r.status == vigil_events::IncidentStatus::Closed)
        .filter(|(r, _)| q.include_suppressed.unwrap_or(true) || !r.suppressed)
        .map(|(incident, handling)| {
            let shelved = handling.shelved_at(now);
            IncidentView { incident, handling, shelved }
        })
        .filter(|v| q.include_shelved.unwrap_or(false) || !v.shelved)
        .take(limit)
        .collect())
}

/// `GET /api/v1/incidents`.
#[utoipa::path(
    get,
    path = "/api/v1/incidents",
    tag = "incidents",
    operation_id = "list_incidents",
    summary = "The alarm list: incidents, the most recently opened first",
    description = "Each incident is one asset's related anomaly and drift events grouped into one alarm: its latest revision (severity, contributing sensors ranked by how far each strayed from normal, detectors, linked predictions and decision requests) and what people did about it. By default the open ones that are not shelved.",
    params(IncidentsQuery),
    responses(
        (status = 200, description = "The incidents", body = Vec<IncidentView>),
        (status = 400, description = "A bad or unknown query parameter (`bad_query`, `bad_parameter`)", body = ErrorBody),
        (status = 404, description = "No such asset in the history (`not_found`; the message names the closest ones)", body = ErrorBody),
        (status = 413, description = "The query needed more memory than `[query] memory_limit_mb` (`query_too_large`)", body = ErrorBody),
        (status = 500, description = "The history could not be read (`query_failed`), or an internal error", body = ErrorBody),
        (status = 504, description = "The query ran past `[query] timeout_ms` (`query_timeout`)", body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn incidents(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<IncidentsQuery>,
) -> Result<Json<Vec<IncidentView>>, ApiError> {
    Ok(Json(list(&state, &q).await?))
}

/// One incident in full.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IncidentDetail {
    /// The latest revision, and what people did about it.
    #[serde(flatten)]
    pub view: IncidentView,
    /// Every revision, oldest first.
    pub revisions: Vec<Incident>,
    /// Its evidence: the asset's anomalies from its opening to its last evidence, newest first.
    pub anomalies: Vec<AnomalyRow>,
    /// The asset's drift events over the same period.
    pub drift: Vec<DriftRow>,
    /// What people did about it, in order.
    pub actions: Vec<IncidentAction>,
}

/// One incident with its revisions, evidence and actions (the REST handler's and the console's).
pub(crate) async fn detail(state: &AppState, incident_id: &str) -> Result<IncidentDetail, ApiError> {
    let revisions = state.history.incident_revisions(incident_id).await?;
    let Some(latest) = revisions.last().cloned() else {
        return Err(ApiError::not_found(format!("no incident {incident_id:?}")));
    };
    let evidence = EventFilter {
        asset_id: Some(latest.asset_id.to_string()),
        from: Some(latest.opened_at),
        to: Some(latest.last_evidence_at.saturating_add(1)),
        limit: 1000,
        ..EventFilter::default()
    };
    let anomalies = state.history.anomalies(&evidence).await?;
    let drift = state.history.drift(&evidence).await?;
    let now = (state.now_ms)();
    let (handling, actions) = state.ledger.read(|book: &PlanningBook| {
        (book.incident_handling(incident_id).cloned().unwrap_or_default(), book.incident_actions(incident_id))
    });
    let shelved = handling.shelved_at(now);
    Ok(IncidentDetail { view: IncidentView { incident: latest, handling, shelved }, revisions, anomalies, drift, actions })
}

/// `GET /api/v1/incidents/{incident_id}`.
#[utoipa::path(
    get,
    path = "/api/v1/incidents/{incident_id}",
    tag = "incidents",
    operation_id = "get_incident",
    summary = "One incident: its revisions, its evidence and what people did about it",
    params(("incident_id" = String, Path, description = "The incident")),
    responses(
        (status = 200, description = "The incident", body = IncidentDetail),
        (status = 400, description = "A bad path (`bad_path`)", body = ErrorBody),
        (status = 404, description = "No such incident (`not_found`)", body = ErrorBody),
        (status = 413, description = "The query needed more memory than `[query] memory_limit_mb` (`query_too_large`)", body = ErrorBody),
        (status = 500, description = "The history could not be read (`query_failed`), or an internal error", body = ErrorBody),
        (status = 504, description = "The query ran past `[query] timeout_ms` (`query_timeout`)", body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn incident(
    State(state): State<AppState>,
    ApiPath(incident_id): ApiPath<String>,
) -> Result<Json<IncidentDetail>, ApiError> {
    Ok(Json(detail(&state, &incident_id).await?))
}

/// Body of the acknowledge and unshelve actions.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentNote {
    /// Why, in the person's words.
    pub note: Option<String>,
}

/// Body of the shelve action.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShelveBody {
    /// Until when (RFC 3339, or milliseconds as digits); or give `minutes`.
    pub until: Option<String>,
    /// For this many minutes from now.
    pub minutes: Option<u64>,
    /// Why, in the person's words.
    pub note: Option<String>,
}

/// Records a person's action on an incident (the REST handlers' and the console's).
pub(crate) async fn act(
    state: &AppState,
    caller: &Caller,
    incident_id: &str,
    action: IncidentActionKind,
    shelved_until: Option<i64>,
    note: Option<String>,
) -> Result<IncidentAction, ApiError> {
    let note = note.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    if note.as_ref().is_some_and(|n| n.chars().count() > MAX_NOTE) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("note is longer than {MAX_NOTE} characters"),
        ));
    }
    let revisions = state.history.incident_revisions(incident_id).await?;
    let Some(latest) = revisions.last() else {
        return Err(ApiError::not_found(format!("no incident {incident_id:?}")));
    };
    let now = (state.now_ms)();
    let record = IncidentAction {
        event_id: vigil_events::event_id("incident-action", &[incident_id, action.as_str(), &caller.name], now),
        correlation_id: incident_id.to_string(),
        event_version: 1,
        incident_id: incident_id.to_string(),
        asset_id: Arc::clone(&latest.asset_id),
        action,
        shelved_until,
        performed_by: caller.name.clone(),
        note,
        ts: now,
    };
    let result = state
        .ledger
        .append_with(|_: &PlanningBook| Ok::<_, std::convert::Infallible>(vec![LedgerRecord::IncidentAction(record.clone())]))
        .await;
    match result {
        Ok(_) => {
            tracing::info!(incident = %incident_id, action = action.as_str(), by = %caller.name, "incident action recorded");
            Ok(record)
        }
        Err(AppendError::Refused(e)) => match e {},
        Err(AppendError::Failed(e)) => {
            Err(ApiError::unavailable("ledger_unavailable", format!("the action was not recorded: {e}")))
        }
    }
}

/// `POST /api/v1/incidents/{incident_id}/acknowledge`.
#[utoipa::path(
    post,
    path = "/api/v1/incidents/{incident_id}/acknowledge",
    tag = "incidents",
    operation_id = "acknowledge_incident",
    summary = "Acknowledge an incident: seen, being handled",
    description = "Recorded in the planning ledger (durable before the answer) and in `incident_actions`.",
    params(("incident_id" = String, Path, description = "The incident")),
    request_body(content = IncidentNote, content_type = "application/json", description = "An optional note"),
    responses(
        (status = 201, description = "Recorded", body = IncidentAction),
        (status = 400, description = "Bad JSON or a bad path (`bad_json`, `bad_path`)", body = ErrorBody),
        (status = 404, description = "No such incident (`not_found`)", body = ErrorBody),
        (status = 413, description = "The body is larger than `[api] body_limit_bytes`, or the query needed more memory than `[query] memory_limit_mb` (`query_too_large`)", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "The body does not match the schema, or the note is too long (`invalid_body`)", body = ErrorBody),
        (status = 500, description = "The history could not be read (`query_failed`), or an internal error", body = ErrorBody),
        (status = 503, description = "The ledger did not record it (`ledger_unavailable`)", body = ErrorBody),
        (status = 504, description = "The query ran past `[query] timeout_ms` (`query_timeout`)", body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn acknowledge(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(incident_id): ApiPath<String>,
    ApiJson(body): ApiJson<IncidentNote>,
) -> Result<Response, ApiError> {
    let a = act(&state, &caller, &incident_id, IncidentActionKind::Acknowledge, None, body.note).await?;
    Ok((StatusCode::CREATED, Json(a)).into_response())
}

/// When a shelving ends, from `until` or `minutes`.
pub(crate) fn shelve_until(now: i64, until: Option<&str>, minutes: Option<u64>) -> Result<i64, ApiError> {
    let invalid = |m: &str| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", m.to_string());
    let t = match (until, minutes) {
        (Some(_), Some(_)) => return Err(invalid("give until or minutes, not both")),
        (None, None) => return Err(invalid("give until (a time) or minutes")),
        (None, Some(m)) => now.saturating_add((m.min(i64::MAX as u64 / 60_000) as i64).saturating_mul(60_000)),
        (Some(s), None) => parse_time("until", s)?,
    };
    if t <= now {
        return Err(invalid("the shelving must end in the future"));
    }
    if t - now > MAX_SHELVE_MS {
        return Err(invalid("an incident is shelved for 30 days at most"));
    }
    Ok(t)
}

/// `POST /api/v1/incidents/{incident_id}/shelve`.
#[utoipa::path(
    post,
    path = "/api/v1/incidents/{incident_id}/shelve",
    tag = "incidents",
    operation_id = "shelve_incident",
    summary = "Shelve an incident for a set time (at most 30 days)",
    description = "A shelved incident leaves the alarm list until the time given (`include_shelved=true` lists it). Recorded in the planning ledger (durable before the answer) and in `incident_actions`.",
    params(("incident_id" = String, Path, description = "The incident")),
    request_body(content = ShelveBody, content_type = "application/json", description = "Until when, and why"),
    responses(
        (status = 201, description = "Recorded", body = IncidentAction),
        (status = 400, description = "Bad JSON, a bad path, or a time that does not parse or lies outside 1970-01-01 to 9999-12-31 (`bad_json`, `bad_path`, `bad_parameter`)", body = ErrorBody),
        (status = 404, description = "No such incident (`not_found`)", body = ErrorBody),
        (status = 413, description = "The body is larger than `[api] body_limit_bytes`, or the query needed more memory than `[query] memory_limit_mb` (`query_too_large`)", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "The body does not match the schema, the time is not ahead or more than 30 days ahead, or the note is too long (`invalid_body`)", body = ErrorBody),
        (status = 500, description = "The history could not be read (`query_failed`), or an internal error", body = ErrorBody),
        (status = 503, description = "The ledger did not record it (`ledger_unavailable`)", body = ErrorBody),
        (status = 504, description = "The query ran past `[query] timeout_ms` (`query_timeout`)", body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn shelve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(incident_id): ApiPath<String>,
    ApiJson(body): ApiJson<ShelveBody>,
) -> Result<Response, ApiError> {
    let until = shelve_until((state.now_ms)(), body.until.as_deref(), body.minutes)?;
    let a = act(&state, &caller, &incident_id, IncidentActionKind::Shelve, Some(until), body.note).await?;
    Ok((StatusCode::CREATED, Json(a)).into_response())
}

/// `POST /api/v1/incidents/{incident_id}/unshelve`.
#[utoipa::path(
    post,
    path = "/api/v1/incidents/{incident_id}/unshelve",
    tag = "incidents",
    operation_id = "unshelve_incident",
    summary = "Put a shelved incident back on the alarm list",
    params(("incident_id" = String, Path, description = "The incident")),
    request_body(content = IncidentNote, content_type = "application/json", description = "An optional note"),
    responses(
        (status = 201, description = "Recorded", body = IncidentAction),
        (status = 400, description = "Bad JSON or a bad path (`bad_json`, `bad_path`)", body = ErrorBody),
        (status = 404, description = "No such incident (`not_found`)", body = ErrorBody),
        (status = 413, description = "The body is larger than `[api] body_limit_bytes`, or the query needed more memory than `[query] memory_limit_mb` (`query_too_large`)", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "The body does not match the schema, or the note is too long (`invalid_body`)", body = ErrorBody),
        (status = 500, description = "The history could not be read (`query_failed`), or an internal error", body = ErrorBody),
        (status = 503, description = "The ledger did not record it (`ledger_unavailable`)", body = ErrorBody),
        (status = 504, description = "The query ran past `[query] timeout_ms` (`query_timeout`)", body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn unshelve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(incident_id): ApiPath<String>,
    ApiJson(body): ApiJson<IncidentNote>,
) -> Result<Response, ApiError> {
    let a = act(&state, &caller, &incident_id, IncidentActionKind::Unshelve, None, body.note).await?;
    Ok((StatusCode::CREATED, Json(a)).into_response())
}
