//! Read endpoints over the history: sensors, readings, events, fleet health, SQL and reports.
//!
//! Input: query strings and bodies. Output: JSON (reports also CSV and HTML). Every endpoint
//! goes through `vigil-queries` — the same code as `vigil sql` and `vigil report` — under the
//! `[query]` limits. State: none.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use vigil_queries::canned::{
    AnomalyRow, DriftRow, EventFilter, FleetHealth, PredictionRow, ReadingSeries, ScheduleRow, SensorList,
};
use vigil_queries::report::{ReportFormat, ReportRequest};

use crate::error::{parse_time, ApiError, ApiJson, ApiQuery, ErrorBody};
use crate::AppState;

/// Points a series returns when `max_points` is not given.
const DEFAULT_POINTS: usize = 1000;
/// Most points a series may ask for.
const MAX_POINTS: usize = 20_000;

/// `GET /api/v1/sensors`.
#[utoipa::path(
    get,
    path = "/api/v1/sensors",
    tag = "history",
    operation_id = "list_sensors",
    summary = "Every sensor seen in the last day of data, with its last value and status",
    description = "Sensors with a reading in the day before the history's newest reading (`as_of`), their last value, anomalies in the last hour and status (`alarm`, `warning`, `silent` or `ok`).",
    responses(
        (status = 200, description = "The sensors", body = SensorList),
        (status = 500, description = "The history could not be read (`query_failed`), or an internal error", body = ErrorBody),
        (status = 504, description = "The query ran past `[query] timeout_ms` (`query_timeout`)", body = ErrorBody),
        (status = 413, description = "The query needed more memory than `[query] memory_limit_mb` (`query_too_large`)", body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn sensors(State(state): State<AppState>) -> Result<Json<SensorList>, ApiError> {
    Ok(Json(state.history.sensors().await?))
}

/// Query of `GET /api/v1/readings`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReadingsQuery {
    /// Sensor.
    pub sensor_id: String,
    /// From (RFC 3339 or ms; default: a day before `to`).
    pub from: Option<String>,
    /// To (default: just after the sensor's newest reading).
    pub to: Option<String>,
    /// At most this many points (buckets with mean, min and max beyond it).
    pub max_points: Option<usize>,
}

/// `GET /api/v1/readings`: one sensor's readings, downsampled to at most `max_points`.
#[utoipa::path(
    get,
    path = "/api/v1/readings",
    tag = "history",
    operation_id = "get_readings",
    summary = "One sensor's readings, downsampled to at most `max_points`",
    description = "The readings of `sensor_id` in `[from, to)`; beyond `max_points` (default 1000, at most 20000) readings are bucketed with their mean, min and max.",
    params(ReadingsQuery),
    responses(
        (status = 200, description = "The series", body = ReadingSeries),
        (status = 400, description = "A bad or unknown query parameter (`bad_query`, `bad_parameter`)", body = ErrorBody),
        (status = 404, description = "No such asset or sensor in the history (`not_found`; the message names the closest ones)", body = ErrorBody),
        (status = 500, description = "The history could not be read (`query_failed`), or an internal error", body = ErrorBody),
        (status = 504, description = "The query ran past `[query] timeout_ms` (`query_timeout`)", body = ErrorBody),
        (status = 413, description = "The query needed more memory than `[query] memory_limit_mb` (`query_too_large`)", body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn readings(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ReadingsQuery>,
) -> Result<Json<ReadingSeries>, ApiError> {
    let max_points = q.max_points.unwrap_or(DEFAULT_POINTS);
    if max_points == 0 || max_points > MAX_POINTS {
        return Err(ApiError::bad_request("bad_parameter", format!("max_points must be 1..={MAX_POINTS}")));
    }
    let to = match q.to.as_deref() {
        Some(t) => parse_time("to", t)?,
        None => state.history.newest("readings").await?.map_or(0, |t| t + 1),
    };
    let from = match q.from.as_deref() {
        Some(f) => parse_time("from", f)?,
        None => to.saturating_sub(24 * 3_600_000),
    };
    let series = state.history.readings(&q.sensor_id, from, to, max_points).await?;
    if series.points.is_empty() {
        state.history.require_sensor(&q.sensor_id).await?;
    }
    Ok(Json(series))
}

/// Query of the event endpoints.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only this asset.
    pub asset_id: Option<String>,
    /// Only this sensor.
    pub sensor_id: Option<String>,
    /// From (RFC 3339 or ms, inclusive).
    pub from: Option<String>,
    /// To (exclusive).
    pub to: Option<String>,
    /// At most this many, newest first (default 100).
    pub limit: Option<usize>,
    /// Only this detector (anomalies) or drift statistic (drift).
    pub detector: Option<String>,
    /// Only this severity (anomalies: `low`, `medium`, `high`, `critical`).
    pub severity: Option<String>,
}

impl EventsQuery {
    pub(crate) fn filter(&self) -> Result<EventFilter, ApiError> {
        Ok(EventFilter {
            asset_id: self.asset_id.clone(),
            sensor_id: self.sensor_id.clone(),
            from: self.from.as_deref().map(|s| parse_time("from", s)).transpose()?,
            to: self.to.as_deref().map(|s| parse_time("to", s)).transpose()?,
            limit: self.limit.unwrap_or(100),
            detector: self.detector.clone(),
            severity: self.severity.clone(),
        })
    }
}

/// An empty answer about an asset or sensor the history does not know: 404 `not_found`, naming
/// the closest known ids (an empty list would read as "nothing happened there").
async fn known_or_404(state: &AppState, f: &EventFilter, empty: bool) -> Result<(), ApiError> {
    if !empty {
        return Ok(());
    }
    if let Some(a) = &f.asset_id {
        state.history.require_asset(a).await?;
    }
    if let Some(s) = &f.sensor_id {
        state.history.require_sensor(s).await?;
    }
    Ok(())
}

/// `GET /api/v1/anomalies`.
#[utoipa::path(
    get,
    path = "/api/v1/anomalies",
    tag = "history",
    operation_id = "list_anomalies",
    summary = "Anomalies by asset, sensor and period, newest first",
    description = "Anomalies the detectors found, filtered by asset, sensor and event time, newest first.",
    params(EventsQuery),
    responses(
        (status = 200, description = "The events", body = Vec<AnomalyRow>),
        (status = 400, description = "A bad or unknown query parameter (`bad_query`, `bad_parameter`)", body = ErrorBody),
        (status = 404, description = "No such asset or sensor in the history (`not_found`; the message names the closest ones)", body = ErrorBody),
        (status = 500, description = "The history could not be read (`query_failed`), or an internal error", body = ErrorBody),
        (status = 504, description = "The query ran past `[query] timeout_ms` (`query_timeout`)", body = ErrorBody),
        (status = 413, description = "The query needed more memory than `[query] memory_limit_mb` (`query_too_large`)", body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn anomalies(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<Vec<AnomalyRow>>, ApiError> {
    let filter = q.filter()?;
    let rows = state.history.anomalies(&filter).await?;
    known_or_404(&state, &filter, rows.is_empty()).await?;
    Ok(Json(rows))
}

/// `GET /api/v1/drift`.
#[utoipa::path(
    get,
    path = "/api/v1/drift",
    tag = "history",
    operation_id = "list_drift",
    summary = "Drift events by asset, sensor and period, newest first",
    description = "Distribution drift found on sensors, filtered by asset, sensor and event time, newest first.",
    params(EventsQuery),
    responses(
        (status = 200, description = "The events", body = Vec<DriftRow>),
        (status = 400, description = "A bad or unknown query parameter (`bad_query`, `bad_parameter`)", body = ErrorBody),
        (status = 404, description = "No such asset or sensor in the history (`not_found`; the message names the closest ones)", body = ErrorBody),
        (status = 500, description = "The history could not be read (`query_failed`), or an internal error", body = ErrorBody),
        (status = 504, description = "The query ran past `[query] timeout_ms` (`query_timeout`)", body = ErrorBody),
        (status = 413, description = "The query needed more memory than `[query] memory_limit_mb` (`query_too_large`)", body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn drift(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<Vec<DriftRow>>, ApiError> {
    let filter = q.filter()?;
    let rows = state.history.drift(&filter).await?;
    known_or_404(&state, &filter, rows.is_empty()).await?;
    Ok(Json(rows))
}

/// `GET /api/v1/predictions`.
#[utoipa::path(
    get,
    path = "/api/v1/predictions",
    tag = "history",
    operation_id = "list_predictions",
    summary = "Health and failure predictions by asset and period, newest first",
    description = "Predictions (health, failure probability, remaining useful life), filtered by asset and event time, newest first.",
    params(EventsQuery),
    responses(
        (status = 200, description = "The events", body = Vec<PredictionRow>),
        (status = 400, description = "A bad or unknown query parameter (`bad_query`, `bad_parameter`)", body = ErrorBody),
        (status = 404, description = "No such asset or sensor in the history (`not_found`; the message names the closest ones)", body = ErrorBody),
        (status = 500, description = "The history could not be read (`query_failed`), or an internal error", body = ErrorBody),
        (status = 504, description = "The query ran past `[query] timeout_ms` (`query_timeout`)", body = ErrorBody),
        (status = 413, description = "The query needed more memory than `[query] memory_limit_mb` (`query_too_large`)", body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn predictions(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<Vec<PredictionRow>>, ApiError> {
    let filter = q.filter()?;
    let rows = state.history.predictions(&filter).await?;
    known_or_404(&state, &filter, rows.is_empty()).await?;
    Ok(Json(rows))
}

/// `GET /api/v1/schedule`: proposals and every change of their status (decisions included).
#[utoipa::path(
    get,
    path = "/api/v1/schedule",
    tag = "history",
    operation_id = "list_schedule",
    summary = "Proposals and every change of their status (decisions included)",
    description = "Maintenance proposals and their status changes (proposed, scheduled, rejected, completed), filtered by asset and event time, newest first.",
    params(EventsQuery),
    responses(
        (status = 200, description = "The schedule changes", body = Vec<ScheduleRow>),
        (status = 400, description = "A bad or unknown query parameter (`bad_query`, `bad_parameter`)", body = ErrorBody),
        (status = 404, description = "No such asset or sensor in the history (`not_found`; the message names the closest ones)", body = ErrorBody),
        (status = 500, description = "The history could not be read (`query_failed`), or an internal error", body = ErrorBody),
        (status = 504, description = "The query ran past `[query] timeout_ms` (`query_timeout`)", body = ErrorBody),
        (status = 413, description = "The query needed more memory than `[query] memory_limit_mb` (`query_too_large`)", body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn schedule(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<Vec<ScheduleRow>>, ApiError> {
    let filter = q.filter()?;
    let rows = state.history.schedule(&filter).await?;
    known_or_404(&state, &filter, rows.is_empty()).await?;
    Ok(Json(rows))
}

/// The fleet, with the periods of its history that were replayed rather than lived.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FleetView {
    /// The fleet's health.
    #[serde(flatten)]
    pub fleet: FleetHealth,
    /// The bounded runs of the history (`vigil replay`, `vigil demo`): periods replayed in
    /// batch, not lived by the running pipeline, oldest first.
    pub replayed_periods: Vec<vigil_connectors::inputs::ReplayedRun>,
    /// Assets whose latest prediction comes from a replayed period (their status is history,
    /// not now).
    pub replayed_assets: Vec<String>,
}

/// `GET /api/v1/fleet`: every asset's health now, worst first.
#[utoipa::path(
    get,
    path = "/api/v1/fleet",
    tag = "history",
    operation_id = "fleet_health",
    summary = "Every asset's health now, worst first",
    description = "Every asset with a reading in the day before the history's newest event (as `/sensors` lists them), a prediction, an anomaly of that day or an open proposal: per asset the latest prediction, anomalies of the last day, open proposals and status (`critical`, `warning`, `warming_up` — readings but no prediction yet — or `ok`), worst first, and the fleet's counts by status; the periods replayed in batch (`vigil replay`, `vigil demo`) and the assets whose latest prediction comes from one.",
    responses(
        (status = 200, description = "The fleet", body = FleetView),
        (status = 500, description = "The history could not be read (`query_failed`), or an internal error", body = ErrorBody),
        (status = 504, description = "The query ran past `[query] timeout_ms` (`query_timeout`)", body = ErrorBody),
        (status = 413, description = "The query needed more memory than `[query] memory_limit_mb` (`query_too_large`)", body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn fleet(State(state): State<AppState>) -> Result<Json<FleetView>, ApiError> {
    let fleet = state.history.fleet_health().await?;
    let replayed = state.requests.replayed_now(&state.history).await?;
    let within = |t: i64| replayed.runs.iter().any(|r| r.from.is_some_and(|f| f <= t) && r.to.is_some_and(|e| t <= e));
    let replayed_assets =
        fleet.assets.iter().filter(|a| a.predicted_at.is_some_and(within)).map(|a| a.asset_id.clone()).collect();
    Ok(Json(FleetView { fleet, replayed_periods: replayed.runs.clone(), replayed_assets }))
}

/// Body of `POST /api/v1/query`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryBody {
    /// One read-only statement.
    pub sql: String,
    /// Fewer rows than the configured limit.
    pub max_rows: Option<usize>,
}

/// The result of `POST /api/v1/query`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueryResponse {
    /// Column names and types.
    pub columns: Vec<ColumnInfo>,
    /// Rows as objects.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
    /// Rows returned.
    pub row_count: usize,
    /// Whether rows were cut off at the limit.
    pub truncated: bool,
    /// Time taken (ms).
    pub elapsed_ms: f64,
}

/// A result column.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ColumnInfo {
    /// Name.
    pub name: String,
    /// Arrow type.
    #[serde(rename = "type")]
    pub data_type: String,
}

/// `POST /api/v1/query`: read-only SQL over the history.
#[utoipa::path(
    post,
    path = "/api/v1/query",
    tag = "history",
    operation_id = "run_query",
    summary = "Read-only SQL over the history",
    description = "One read-only statement (DataFusion SQL) over the history's tables, under the `[query]` limits; rows come back as JSON objects.",
    request_body(content = QueryBody, content_type = "application/json", description = "The statement"),
    responses(
        (status = 200, description = "The result", body = QueryResponse),
        (status = 400, description = "Bad JSON, an empty statement, SQL that does not plan (`bad_json`, `bad_sql`, `bad_parameter`), a statement too deep or too large to plan (`query_too_complex`: `[query] max_nesting`, `max_expressions`), or a wrong argument or value found while running, such as a division by zero or a failed cast (`bad_sql_argument`)", body = ErrorBody),
        (status = 403, description = "The statement is not read-only (`query_refused`)", body = ErrorBody),
        (status = 404, description = "The statement names a table the history does not have; the message names the closest ones (`unknown_table`)", body = ErrorBody),
        (status = 413, description = "The body is larger than `[api] body_limit_bytes`, or the query needed more memory than `[query] memory_limit_mb` (`query_too_large`)", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "The body does not match the schema (`invalid_body`)", body = ErrorBody),
        (status = 500, description = "The history could not be read (`query_failed`), or an internal error", body = ErrorBody),
        (status = 503, description = "`[query] max_concurrent` statements are running and `[query] queue_length` waiting (`query_busy`); try again after `Retry-After` seconds", body = ErrorBody),
        (status = 504, description = "The query ran past `[query] timeout_ms` (`query_timeout`)", body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn query(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<QueryBody>,
) -> Result<Json<QueryResponse>, ApiError> {
    if body.sql.trim().is_empty() {
        return Err(ApiError::bad_request("bad_sql", "the query is empty"));
    }
    let mut result = state.history.sql(&body.sql).await?;
    if let Some(m) = body.max_rows {
        if result.rows > m {
            let mut kept = Vec::new();
            let mut n = 0;
            for b in result.batches {
                let take = (m - n).min(b.num_rows());
                if take > 0 {
                    kept.push(b.slice(0, take));
                }
                n += take;
            }
            result.batches = kept;
            result.rows = n;
            result.truncated = true;
        }
    }
    let columns = result
        .schema
        .fields()
        .iter()
        .map(|f| ColumnInfo { name: f.name().clone(), data_type: f.data_type().to_string() })
        .collect();
    let rows = vigil_queries::format::to_json_rows(&result)?;
    Ok(Json(QueryResponse {
        columns,
        row_count: result.rows,
        rows,
        truncated: result.truncated,
        elapsed_ms: result.elapsed.as_secs_f64() * 1000.0,
    }))
}

/// Body of `POST /api/v1/reports`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportBody {
    /// One asset; the fleet when absent.
    pub asset_id: Option<String>,
    /// From (RFC 3339 or ms; default: a week before `to`, or the history's start).
    pub from: Option<String>,
    /// To (default: just after the newest event).
    pub to: Option<String>,
    /// `json` (default), `csv` or `html`.
    pub format: Option<ReportFormat>,
}

/// `POST /api/v1/reports`: the report of an asset or the fleet for a period.
#[utoipa::path(
    post,
    path = "/api/v1/reports",
    tag = "history",
    operation_id = "make_report",
    summary = "The report of an asset or the fleet for a period",
    description = "Availability, anomalies, drift, predictions and maintenance of one asset or the fleet over `[from, to)`, as JSON, CSV (one row per figure) or one self-contained HTML page.",
    request_body(content = ReportBody, content_type = "application/json", description = "What to report on, and the format"),
    responses(
        (status = 200, description = "The report, in the format asked for", content(
            (Object = "application/json"),
            (String = "text/csv"),
            (String = "text/html")
        )),
        (status = 400, description = "Bad JSON or a bad time (`bad_json`, `bad_parameter`)", body = ErrorBody),
        (status = 413, description = "The body is larger than `[api] body_limit_bytes`, or a query needed more memory than `[query] memory_limit_mb` (`query_too_large`)", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "The body does not match the schema (`invalid_body`), or the history is empty and no period was given (`empty_history`)", body = ErrorBody),
        (status = 404, description = "No such asset or sensor in the history (`not_found`; the message names the closest ones)", body = ErrorBody),
        (status = 500, description = "The history could not be read (`query_failed`), or an internal error", body = ErrorBody),
        (status = 504, description = "The query ran past `[query] timeout_ms` (`query_timeout`)", body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn report(State(state): State<AppState>, ApiJson(body): ApiJson<ReportBody>) -> Result<Response, ApiError> {
    let from = body.from.as_deref().map(|s| parse_time("from", s)).transpose()?;
    let to = body.to.as_deref().map(|s| parse_time("to", s)).transpose()?;
    let Some((from, to)) = state.history.report_period(from, to).await? else {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "empty_history", "the history is empty: give from and to"));
    };
    let report = state.history.report(&ReportRequest { asset_id: body.asset_id, from, to }).await?;
    Ok(match body.format.unwrap_or(ReportFormat::Json) {
        ReportFormat::Json => ([(header::CONTENT_TYPE, "application/json")], report.to_json()).into_response(),
        ReportFormat::Csv => ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], report.to_csv()).into_response(),
        ReportFormat::Html => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CONTENT_SECURITY_POLICY, crate::REPORT_CSP)],
            report.to_html(),
        )
            .into_response(),
    })
}

/// `GET /api/v1/pipeline`: the running pipeline's counters, every record accounted for.
#[utoipa::path(
    get,
    path = "/api/v1/pipeline",
    tag = "history",
    operation_id = "pipeline_status",
    summary = "The running pipeline's counters: records in, accepted, rejected by reason, waiting for the watermark",
    description = "What the console's Pipeline page shows. Every record read is accounted for: `records_in = committed_in + read_since_commit` and `committed_in + carried_over = accepted + sum(rejected) + waiting + redelivered` (the counts of the last commit; `read_since_commit` are in the dataflow and counted at the next). Also windows, anomalies by detector, drift by statistic, predictions, decision requests, commits, watermark, lag and readiness.",
    responses(
        (status = 200, description = "The pipeline's counters", body = crate::PipelineStatus),
        (status = 404, description = "This server runs no pipeline (`no_pipeline`: `vigil serve --no-pipeline`)", body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn pipeline(State(state): State<AppState>) -> Result<Json<crate::PipelineStatus>, ApiError> {
    match &state.pipeline {
        Some(p) => Ok(Json(p.status())),
        None => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "no_pipeline", "this server runs no pipeline: it serves the history only"))
        }
    }
}
