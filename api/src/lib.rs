//! Vigil's HTTP API.
//!
//! [`app`] builds the axum router over an [`AppState`] (the history directory). Routes so far:
//! `GET /health` (liveness) and `GET /api/v1/history` (the tables of the Parquet history with
//! their rows, files and date partitions, from the Parquet footers). Every error — unknown route,
//! wrong method, unreadable history — has one shape:
//! `{"error": {"code": "...", "message": "..."}}` with the matching status.
//! Decisions, SQL, reports, metrics and auth come with the API issue and build on this router.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// History directory.
    pub data_dir: Arc<PathBuf>,
}

/// An API error: a status, a stable code and a message for people.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Message.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
}

async fn health() -> Json<Health> {
    Json(Health { status: "ok", version: env!("CARGO_PKG_VERSION") })
}

#[derive(Serialize)]
struct TableSummary {
    name: String,
    rows: u64,
    files: usize,
    partitions: Vec<String>,
    columns: Vec<String>,
}

async fn history(State(state): State<AppState>) -> Result<Json<Vec<TableSummary>>, ApiError> {
    let dir = state.data_dir.clone();
    let catalog = tokio::task::spawn_blocking(move || vigil_queries::Catalog::read(&dir))
        .await
        .map_err(|e| ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, code: "internal", message: e.to_string() })?
        .map_err(|e| ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "history_unreadable",
            message: e.to_string(),
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
    ApiError { status: StatusCode::NOT_FOUND, code: "not_found", message: "no such route".into() }
}

async fn method_not_allowed() -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: "method not allowed on this route".into(),
    }
}

/// The router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health).fallback(method_not_allowed))
        .route("/api/v1/history", get(history).fallback(method_not_allowed))
        .fallback(not_found)
        .with_state(state)
}
