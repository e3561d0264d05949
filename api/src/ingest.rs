//! `POST /api/v1/readings`: readings into the running pipeline.
//!
//! Input: a JSON array of readings (the `SensorReading` wire format), or JSON lines
//! (`Content-Type: application/x-ndjson`), at most `[api] ingest_limit_bytes`. Each element is
//! handed to the pipeline's source as it came (keyed by its `sensor_id`), so validation, dead
//! letters and deduplication are the pipeline's, exactly as for Kafka or files: a bad element is
//! accepted here and rejected there with its reason (visible in the `rejected` table). The
//! response (202) comes once the batch is durable in the source. Output: `{"accepted": n}`.
//!
//! `Idempotency-Key`: the answer to a key is kept (the last 10,000 keys, a day): the same key
//! again gets the same answer without a second append (`Idempotent-Replayed: true`); the same
//! key with another body is 422. State: [`IdempotencyCache`].

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// Keys kept at most.
const KEYS: usize = 10_000;
/// How long a key is kept.
const KEY_TTL: Duration = Duration::from_secs(24 * 3600);

/// The answer to an ingest.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IngestResponse {
    /// Readings handed to the pipeline.
    pub accepted: usize,
}

/// Answers by idempotency key: key → (hash of the body, answer, when), and the keys in order.
#[derive(Default)]
pub struct IdempotencyCache {
    inner: Mutex<Answers>,
}

type Answers = (HashMap<String, (u64, IngestResponse, Instant)>, VecDeque<String>);

impl IdempotencyCache {
    fn get(&self, key: &str) -> Option<(u64, IngestResponse)> {
        let g = self.inner.lock().ok()?;
        g.0.get(key).filter(|(_, _, t)| t.elapsed() < KEY_TTL).map(|(h, r, _)| (*h, r.clone()))
    }

    fn put(&self, key: String, body_hash: u64, resp: IngestResponse) {
        let Ok(mut g) = self.inner.lock() else { return };
        if g.0.insert(key.clone(), (body_hash, resp, Instant::now())).is_none() {
            g.1.push_back(key);
        }
        while g.1.len() > KEYS {
            if let Some(old) = g.1.pop_front() {
                g.0.remove(&old);
            }
        }
    }
}

/// Splits the body into `(sensor_id, element)` records.
fn records(body: &[u8], ndjson: bool) -> Result<Vec<(String, Vec<u8>)>, ApiError> {
    let elements: Vec<Box<serde_json::value::RawValue>> = if ndjson {
        body.split(|b| *b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_slice(l).map_err(|e| ApiError::bad_request("bad_json", format!("line {}: {e}", i + 1)))
            })
            .collect::<Result<_, _>>()?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request("bad_json", format!("expected a JSON array of readings: {e}")))?
    };
    if elements.is_empty() {
        return Err(ApiError::bad_request("bad_body", "no readings in the body"));
    }
    Ok(elements
        .into_iter()
        .map(|e| {
            let bytes = e.get().as_bytes();
            (vigil_connectors::export::sensor_id_of(bytes).unwrap_or_default().to_string(), bytes.to_vec())
        })
        .collect())
}

/// `POST /api/v1/readings`.
#[utoipa::path(
    post,
    path = "/api/v1/readings",
    tag = "ingest",
    operation_id = "ingest_readings",
    summary = "Readings into the running pipeline",
    description = "A JSON array of readings (the `SensorReading` wire format) or JSON lines, handed to the pipeline's source as they came; validation and dead letters are the pipeline's. The answer (202) comes once the batch is durable in the source.",
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 200, description = "1 to 200 characters: the same key again gets the same answer without a second append (kept a day, the last 10,000 keys)")),
    request_body(
        description = "Readings, at most `[api] ingest_limit_bytes`",
        content(
            (Vec<Object> = "application/json"),
            (String = "application/x-ndjson")
        )
    ),
    responses(
        (status = 202, description = "Durable in the pipeline's source (`Idempotent-Replayed: true` when answered from an earlier request with the same key)", body = IngestResponse,
            headers(("Idempotent-Replayed" = String, description = "`true` when this repeats the answer to an earlier request with the same `Idempotency-Key`"))),
        (status = 400, description = "Bad JSON, no readings, or a bad `Idempotency-Key` (`bad_json`, `bad_body`, `bad_header`)", body = ErrorBody),
        (status = 413, description = "The body is larger than `[api] ingest_limit_bytes`", body = ErrorBody),
        (status = 415, description = "Neither `application/json` nor `application/x-ndjson`", body = ErrorBody),
        (status = 422, description = "The `Idempotency-Key` was used with another body (`idempotency_key_reused`)", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
        (status = 503, description = "No pipeline runs in this process (`no_pipeline`), or its source did not accept the batch (`source_unavailable`)", body = ErrorBody)
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub(crate) async fn readings(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let Some(pipeline) = state.pipeline.clone() else {
        return Err(ApiError::unavailable("no_pipeline", "no pipeline runs in this process (vigil serve --no-pipeline)"));
    };
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let ndjson = ct.starts_with("application/x-ndjson") || ct.starts_with("application/jsonl");
    if !ndjson && !ct.starts_with("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/json (an array of readings) or application/x-ndjson (one reading a line)",
        ));
    }
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body_hash = vigil_events::StableHasher::default().write(&body).finish();
    if let Some(k) = &key {
        if k.is_empty() || k.len() > 200 {
            return Err(ApiError::bad_request("bad_header", "Idempotency-Key must be 1 to 200 characters"));
        }
        if let Some((h, resp)) = state.idempotency.get(k) {
            if h != body_hash {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used with another body",
                ));
            }
            return Ok((StatusCode::ACCEPTED, [("idempotent-replayed", "true")], Json(resp)).into_response());
        }
    }
    let recs = records(&body, ndjson)?;
    let n = recs.len();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<(&[u8], &[u8])> = recs.iter().map(|(k, v)| (k.as_bytes(), v.as_slice())).collect();
        pipeline.ingest(&refs)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| ApiError::unavailable("source_unavailable", format!("the readings were not accepted: {e}")))?;
    state.metrics.ingested.add(n as u64);
    let resp = IngestResponse { accepted: n };
    if let Some(k) = key {
        state.idempotency.put(k, body_hash, resp.clone());
    }
    Ok((StatusCode::ACCEPTED, Json(resp)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_and_lines_split_into_keyed_records() {
        let r = records(br#"[{"sensor_id":"s1","value":1},{"value":2}]"#, false).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].0, "s1");
        assert_eq!(r[0].1, br#"{"sensor_id":"s1","value":1}"#.to_vec());
        assert_eq!(r[1].0, "");
        let r = records(b"{\"sensor_id\":\"a\"}\n\n{\"sensor_id\":\"b\"}\n", true).unwrap();
        assert_eq!(r.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert!(records(b"{\"sensor_id\":\"a\"}", false).is_err(), "an object is not an array");
        assert!(records(b"[]", false).is_err());
        assert!(records(b"{\"a\":1}\nnot json\n", true).is_err());
    }
}
