//! The one error shape of the API: `{"error": {"code", "message", "request_id"}}`.
//!
//! [`ApiError`] is what every handler, extractor and middleware returns; its response carries
//! the request id of the request being served (set by [`crate::observe`] for the task that
//! serves it). [`ApiJson`], [`ApiQuery`] and [`ApiPath`] are axum's extractors with their
//! rejections turned into this shape (bad JSON → 400 `bad_json`, wrong content type → 415,
//! a body over the limit → 413, a bad query string → 400 `bad_query`).

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use vigil_queries::QueryError;

tokio::task_local! {
    /// The id of the request the current task serves.
    pub(crate) static REQUEST_ID: String;
}

/// The current request's id (empty outside a request).
pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// The body of every error response, as the OpenAPI document describes it (the response itself
/// is built by [`ApiError`]'s `IntoResponse`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`bad_parameter`, `unauthorized`, `not_found`, ...).
    pub code: String,
    /// Message for people.
    pub message: String,
    /// The request's id (also in the `X-Request-Id` header).
    pub request_id: String,
}

/// An API error: a status, a stable code and a message for people.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Message.
    pub message: String,
    /// Seconds to wait (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after: None }
    }
    /// 400.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// 409.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }
    /// 500; the cause is logged, the message stays generic.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error (logged with this request id)")
    }
    /// 503.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": {"code": self.code, "message": self.message, "request_id": current_request_id()}
        });
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut().insert("retry-after", v);
            }
        }
        resp
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Refused(_) => ApiError::new(StatusCode::FORBIDDEN, "query_refused", e.to_string()),
            QueryError::Sql(_) => ApiError::bad_request("bad_sql", e.to_string()),
            QueryError::Invalid(_) => ApiError::bad_request("bad_parameter", e.to_string()),
            QueryError::Unknown { .. } => ApiError::not_found(e.to_string()),
            QueryError::TooComplex(_) => ApiError::bad_request("query_too_complex", e.to_string()),
            QueryError::Argument(_) => ApiError::bad_request("bad_sql_argument", e.to_string()),
            QueryError::UnknownTable { .. } => ApiError::new(StatusCode::NOT_FOUND, "unknown_table", e.to_string()),
            QueryError::Busy { retry_after_s } => {
                ApiError { retry_after: Some(retry_after_s), ..ApiError::unavailable("query_busy", e.to_string()) }
            }
            QueryError::Timeout { .. } => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "query_timeout", e.to_string()),
            QueryError::Resources(_) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "query_too_large", e.to_string()),
            QueryError::Read { .. } | QueryError::Execution(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "query_failed", redact_paths(&e.to_string(), None))
            }
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected a JSON body (Content-Type: application/json)",
        ),
        JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the body is larger than the limit")
        }
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::bad_request("bad_json", format!("the body is not valid JSON: {}", e.body_text()))
        }
        JsonRejection::JsonDataError(e) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", e.body_text()),
        other => ApiError::bad_request("bad_body", other.body_text()),
    }
}

/// `Json<T>` with errors in the API's shape.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Json::<T>::from_request(req, state).await.map(|Json(v)| ApiJson(v)).map_err(json_rejection)
    }
}

/// `Query<T>` with errors in the API's shape.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(|e: QueryRejection| ApiError::bad_request("bad_query", e.body_text()))
    }
}

/// `Path<T>` with errors in the API's shape.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| ApiPath(v))
            .map_err(|e: PathRejection| ApiError::bad_request("bad_path", e.body_text()))
    }
}

/// A message for clients with the filesystem left out: paths inside `data_dir` become relative
/// to it (`readings/date=2026-01-01/x.parquet`), the data dir itself "the data dir", and any
/// other absolute path its last component (`…/x.parquet`). Says what is wrong, not where the
/// disk is.
pub fn redact_paths(message: &str, data_dir: Option<&std::path::Path>) -> String {
    let mut s = message.to_string();
    if let Some(dir) = data_dir.map(|d| d.display().to_string()).filter(|d| d.len() > 1) {
        let dir = dir.trim_end_matches('/');
        s = s.replace(&format!("{dir}/"), "").replace(dir, "the data dir");
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(i) = rest.find('/') {
        let starts_token = rest[..i].chars().last().is_none_or(|c| c.is_whitespace() || "\"'`([{=:,".contains(c));
        if !starts_token {
            out.push_str(&rest[..=i]);
            rest = &rest[i + 1..];
            continue;
        }
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let end = after.find(|c: char| c.is_whitespace() || "\"'`)]},;".contains(c)).unwrap_or(after.len());
        let (path, tail) = after.split_at(end);
        // A trailing `:` separates the path from its error (`/x/y: No such file`).
        let (path, colon) = match path.strip_suffix(':') {
            Some(p) => (p, ":"),
            None => (path, ""),
        };
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        match parts.last() {
            Some(last) if parts.len() > 1 => {
                out.push_str("…/");
                out.push_str(last);
            }
            _ => out.push_str(path),
        }
        out.push_str(colon);
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// Parses a time parameter: RFC 3339 or epoch milliseconds, in the accepted range
/// ([`check_time`]).
pub fn parse_time(name: &str, s: &str) -> Result<i64, ApiError> {
    let t = vigil_events::parse_timestamp_str(s).map_err(|_| {
        ApiError::bad_request("bad_parameter", format!("{name}: {s:?} is not a time (RFC 3339 or epoch milliseconds)"))
    })?;
    check_time(name, t)
}

/// A time a client gave, when it lies in the one accepted range
/// ([`vigil_events::MIN_TIME_MS`] ..= [`vigil_events::MAX_TIME_MS`]); 400 `bad_parameter` naming
/// the field otherwise.
pub fn check_time(name: &str, t: i64) -> Result<i64, ApiError> {
    vigil_events::check_time(t).map_err(|e| ApiError::bad_request("bad_parameter", format!("{name}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_left_out_of_messages() {
        let dir = std::path::Path::new("/srv/vigil/data");
        assert_eq!(
            redact_paths("/srv/vigil/data/readings/date=2026-01-01/part-0.parquet: Permission denied (os error 13)", Some(dir)),
            "readings/date=2026-01-01/part-0.parquet: Permission denied (os error 13)"
        );
        assert_eq!(redact_paths("cannot open /srv/vigil/data", Some(dir)), "cannot open the data dir");
        assert_eq!(
            redact_paths("reading \"/home/ann/x/_log/readings/00000.log\": No space left", None),
            "reading \"…/00000.log\": No space left"
        );
        assert_eq!(redact_paths("/tmp/a/b.parquet: bad magic", None), "…/b.parquet: bad magic");
        assert_eq!(redact_paths("a ratio 3/4 and 1/2", None), "a ratio 3/4 and 1/2");
        assert_eq!(redact_paths("nothing here", None), "nothing here");
    }
}
