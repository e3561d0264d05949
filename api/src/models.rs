//! The model registry over HTTP: `GET /api/v1/models`, `/models/{name}/versions` and
//! `/models/{name}/latest`.
//!
//! Input: the registry directory ([`vigil_connectors::models::ModelRegistry`], shared with
//! `vigil train` and the pipeline). Output: the models with their versions' metadata (training
//! data hash, parameters, validation metrics, creation time), and which model the running
//! pipeline predicts with. State: none (the registry's files are read on each request).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use vigil_connectors::models::{ModelRegistry, ModelSummary, ModelVersion};
use vigil_connectors::ConnectorError;

use crate::error::{ApiError, ApiPath, ErrorBody};
use crate::AppState;

/// The model the running pipeline predicts with.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RunningModel {
    /// Model name.
    pub name: String,
    /// Version.
    pub version: String,
    /// `registry` (loaded from the registry) or `built-in`.
    pub source: String,
}

/// `GET /api/v1/models`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelList {
    /// The registry directory.
    pub registry: String,
    /// Every model with its latest version, by name.
    pub models: Vec<ModelSummary>,
    /// What the running pipeline uses (absent without a pipeline).
    pub running: Option<RunningModel>,
}

fn registry_error(e: ConnectorError) -> ApiError {
    match e {
        ConnectorError::Invalid(m) => ApiError::bad_request("bad_parameter", m),
        e => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "registry_unreadable",
            crate::error::redact_paths(&e.to_string(), None),
        ),
    }
}

pub(crate) async fn blocking<T: Send + 'static>(
    registry: &ModelRegistry,
    f: impl FnOnce(&ModelRegistry) -> Result<T, ConnectorError> + Send + 'static,
) -> Result<T, ApiError> {
    let registry = registry.clone();
    tokio::task::spawn_blocking(move || f(&registry)).await.map_err(ApiError::internal)?.map_err(registry_error)
}

/// `GET /api/v1/models`.
#[utoipa::path(
    get,
    path = "/api/v1/models",
    tag = "models",
    operation_id = "list_models",
    summary = "The model registry: every model with its latest version, and what the pipeline runs",
    description = "Models registered by `vigil train` (name, number of versions, the latest version's metadata: kind, parameters, training data and its SHA-256, validation metrics, creation time), and the model the running pipeline predicts with.",
    responses(
        (status = 200, description = "The models", body = ModelList),
        (status = 500, description = "The registry is unreadable (`registry_unreadable`), or an internal error", body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<ModelList>, ApiError> {
    let models = blocking(&state.models, |r| r.list()).await?;
    let running = state.pipeline.as_ref().map(|p| p.running_model());
    Ok(Json(ModelList { registry: state.models.root().display().to_string(), models, running }))
}

/// `GET /api/v1/models/{name}/versions`.
#[utoipa::path(
    get,
    path = "/api/v1/models/{name}/versions",
    tag = "models",
    operation_id = "list_model_versions",
    summary = "A model's versions, oldest first",
    params(("name" = String, Path, description = "Model name")),
    responses(
        (status = 200, description = "The versions", body = Vec<ModelVersion>),
        (status = 400, description = "Not a model name (`bad_parameter`)", body = ErrorBody),
        (status = 404, description = "No such model (`not_found`)", body = ErrorBody),
        (status = 500, description = "The registry is unreadable (`registry_unreadable`), or an internal error", body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn versions(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Vec<ModelVersion>>, ApiError> {
    let n = name.clone();
    let versions = blocking(&state.models, move |r| r.versions(&n)).await?;
    if versions.is_empty() {
        return Err(ApiError::not_found(format!("no model {name:?} in the registry")));
    }
    Ok(Json(versions))
}

/// `GET /api/v1/models/{name}/latest`.
#[utoipa::path(
    get,
    path = "/api/v1/models/{name}/latest",
    tag = "models",
    operation_id = "latest_model_version",
    summary = "A model's latest version",
    params(("name" = String, Path, description = "Model name")),
    responses(
        (status = 200, description = "The latest version", body = ModelVersion),
        (status = 400, description = "Not a model name (`bad_parameter`)", body = ErrorBody),
        (status = 404, description = "No such model (`not_found`)", body = ErrorBody),
        (status = 500, description = "The registry is unreadable (`registry_unreadable`), or an internal error", body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn latest(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ModelVersion>, ApiError> {
    let n = name.clone();
    let latest = blocking(&state.models, move |r| r.versions(&n)).await?.pop();
    latest.map(Json).ok_or_else(|| ApiError::not_found(format!("no model {name:?} in the registry")))
}
