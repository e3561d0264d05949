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

use crate::error::{parse_time, ApiError, ApiJson, ApiQuery};
use crate::AppState;

/// Points a series returns when `max_points` is not given.
const DEFAULT_POINTS: usize = 1000;
/// Most points a series may ask for.
const MAX_POINTS: usize = 20_000;

/// `GET /api/v1/sensors`.
pub(crate) async fn sensors(State(state): State<AppState>) -> Result<Json<SensorList>, ApiError> {
    Ok(Json(state.history.sensors().await?))
}

/// Query of `GET /api/v1/readings`.
#[derive(Debug, Deserialize)]
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
        None => to - 24 * 3_600_000,
    };
    Ok(Json(state.history.readings(&q.sensor_id, from, to, max_points).await?))
}

/// Query of the event endpoints.
#[derive(Debug, Default, Deserialize)]
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
}

impl EventsQuery {
    fn filter(&self) -> Result<EventFilter, ApiError> {
        Ok(EventFilter {
            asset_id: self.asset_id.clone(),
            sensor_id: self.sensor_id.clone(),
            from: self.from.as_deref().map(|s| parse_time("from", s)).transpose()?,
            to: self.to.as_deref().map(|s| parse_time("to", s)).transpose()?,
            limit: self.limit.unwrap_or(100),
        })
    }
}

/// `GET /api/v1/anomalies`.
pub(crate) async fn anomalies(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<Vec<AnomalyRow>>, ApiError> {
    Ok(Json(state.history.anomalies(&q.filter()?).await?))
}

/// `GET /api/v1/drift`.
pub(crate) async fn drift(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<Vec<DriftRow>>, ApiError> {
    Ok(Json(state.history.drift(&q.filter()?).await?))
}

/// `GET /api/v1/predictions`.
pub(crate) async fn predictions(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<Vec<PredictionRow>>, ApiError> {
    Ok(Json(state.history.predictions(&q.filter()?).await?))
}

/// `GET /api/v1/schedule`: proposals and every change of their status (decisions included).
pub(crate) async fn schedule(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<Vec<ScheduleRow>>, ApiError> {
    Ok(Json(state.history.schedule(&q.filter()?).await?))
}

/// `GET /api/v1/fleet`: every asset's health now, worst first.
pub(crate) async fn fleet(State(state): State<AppState>) -> Result<Json<FleetHealth>, ApiError> {
    Ok(Json(state.history.fleet_health().await?))
}

/// Body of `POST /api/v1/query`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryBody {
    /// One read-only statement.
    pub sql: String,
    /// Fewer rows than the configured limit.
    pub max_rows: Option<usize>,
}

/// The result of `POST /api/v1/query`.
#[derive(Debug, Serialize, Deserialize)]
pub struct QueryResponse {
    /// Column names and types.
    pub columns: Vec<ColumnInfo>,
    /// Rows as objects.
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
    /// Rows returned.
    pub row_count: usize,
    /// Whether rows were cut off at the limit.
    pub truncated: bool,
    /// Time taken (ms).
    pub elapsed_ms: f64,
}

/// A result column.
#[derive(Debug, Serialize, Deserialize)]
pub struct ColumnInfo {
    /// Name.
    pub name: String,
    /// Arrow type.
    #[serde(rename = "type")]
    pub data_type: String,
}

/// `POST /api/v1/query`: read-only SQL over the history.
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
#[derive(Debug, Deserialize)]
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
        ReportFormat::Html => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], report.to_html()).into_response(),
    })
}
