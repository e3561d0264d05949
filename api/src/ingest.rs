//! `POST /api/v1/readings`: readings into the running pipeline.
//!
//! Input: a JSON array of readings (the `SensorReading` wire format), or JSON lines
//! (`Content-Type: application/x-ndjson`), at most `[api] ingest_limit_bytes`. Each element is
//! handed to the pipeline's source as it came (keyed by its `sensor_id`), so validation, dead
//! letters and deduplication are the pipeline's, exactly as for Kafka or files: a bad element is
//! accepted here and rejected there with its reason (visible in the `rejected` table). The
//! response (202) comes once the batch is durable in the source. Output: `{"accepted": n}`.
//!
//! `Idempotency-Key`: one append per key, however many requests carry it at once. The first
//! request with a key runs; the others with the same body wait for its answer (409
//! `in_progress` with `Retry-After` if it takes longer than `[api] idempotency_wait_ms`) and
//! get it with `Idempotent-Replayed: true`; the same key with another body is 422. Answers are
//! kept for `[api] idempotency_ttl_secs`, at most `[api] idempotency_keys` of them.
//! State: [`IdempotencyCache`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// The answer to an ingest.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IngestResponse {
    /// Readings handed to the pipeline.
    pub accepted: usize,
}

/// Answers by idempotency key, and the requests still running under a key.
///
/// A key is claimed atomically: the first request with it runs, every other one with the same
/// body waits for its answer (or gets 409 `in_progress` after `[api] idempotency_wait_ms`) —
/// exactly one append per key, however many arrive at once. A failed append frees the key.
/// At most `[api] idempotency_keys` answers are kept, each for `[api] idempotency_ttl_secs`
/// (the oldest go first; running requests are never dropped).
pub struct IdempotencyCache {
    inner: Mutex<Answers>,
    max_keys: usize,
    ttl: Duration,
}

impl Default for IdempotencyCache {
    fn default() -> Self {
        IdempotencyCache::new(10_000, Duration::from_secs(24 * 3600))
    }
}

#[derive(Default)]
struct Answers {
    /// Key → its entry.
    map: HashMap<String, Entry>,
    /// `(key, generation)` in the order the keys were claimed (oldest first).
    order: VecDeque<(String, u64)>,
    /// The next generation.
    next: u64,
}

struct Entry {
    body_hash: u64,
    generation: u64,
    at: Instant,
    state: EntryState,
}

enum EntryState {
    /// The first request runs; its sender is dropped when it ends (waiters then look again).
    Running(tokio::sync::watch::Sender<()>),
    Done(IngestResponse),
}

/// What [`IdempotencyCache::claim`] found.
enum Claim {
    /// The key is this request's: run it, then [`Ticket::done`].
    Fresh(Ticket),
    /// The first request's answer.
    Replay(IngestResponse),
    /// The key was used with another body.
    Reused,
    /// The first request still runs: wait for a change, then claim again.
    Running(tokio::sync::watch::Receiver<()>),
}

/// The right to run under a key. Dropped without [`Ticket::done`] (failure, panic), the key is
/// free again.
struct Ticket {
    cache: Arc<IdempotencyCache>,
    key: String,
    generation: u64,
    finished: bool,
}

impl Ticket {
    fn done(mut self, resp: IngestResponse) {
        self.finished = true;
        self.cache.finish(&self.key, self.generation, Some(resp));
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.finished {
            self.cache.finish(&self.key, self.generation, None);
        }
    }
}

impl IdempotencyCache {
    /// A cache keeping at most `max_keys` answers (at least 1), each for `ttl`.
    pub fn new(max_keys: usize, ttl: Duration) -> Self {
        IdempotencyCache { inner: Mutex::new(Answers::default()), max_keys: max_keys.max(1), ttl }
    }

    /// Answers and running requests held now.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Answers> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn claim(self: &Arc<Self>, key: &str, body_hash: u64) -> Claim {
        let mut g = self.lock();
        let g = &mut *g;
        let now = Instant::now();
        // Answers past their time go first (the oldest are at the front).
        while let Some((k, gen)) = g.order.front() {
            match g.map.get(k) {
                Some(e)
                    if e.generation == *gen && matches!(e.state, EntryState::Done(_)) && now.duration_since(e.at) >= self.ttl =>
                {
                    g.map.remove(k);
                    g.order.pop_front();
                }
                Some(e) if e.generation == *gen => break,
                _ => {
                    g.order.pop_front();
                }
            }
        }
        if let Some(e) = g.map.get(key) {
            if e.body_hash != body_hash {
                return Claim::Reused;
            }
            return match &e.state {
                EntryState::Done(r) => Claim::Replay(r.clone()),
                EntryState::Running(tx) => Claim::Running(tx.subscribe()),
            };
        }
        let generation = g.next;
        g.next += 1;
        let (tx, _) = tokio::sync::watch::channel(());
        g.map.insert(key.to_string(), Entry { body_hash, generation, at: now, state: EntryState::Running(tx) });
        g.order.push_back((key.to_string(), generation));
        // Over the bound: the oldest answers go (running requests stay; there are at most as
        // many as requests in flight).
        let mut looked = 0;
        while g.map.len() > self.max_keys && looked < g.order.len() {
            looked += 1;
            let Some((k, gen)) = g.order.pop_front() else { break };
            match g.map.get(&k) {
                Some(e) if e.generation == gen && matches!(e.state, EntryState::Running(_)) => g.order.push_back((k, gen)),
                Some(e) if e.generation == gen => {
                    g.map.remove(&k);
                }
                _ => {}
            }
        }
        Claim::Fresh(Ticket { cache: self.clone(), key: key.to_string(), generation, finished: false })
    }

    /// The request under `key` ended: its answer is kept, or (`None`) the key is free again.
    fn finish(&self, key: &str, generation: u64, resp: Option<IngestResponse>) {
        let mut g = self.lock();
        let g = &mut *g;
        let Some(e) = g.map.get_mut(key).filter(|e| e.generation == generation) else { return };
        match resp {
            // Replacing the state drops the sender: the waiters look again.
            Some(r) => {
                e.state = EntryState::Done(r);
                e.at = Instant::now();
            }
            None => {
                g.map.remove(key);
                if let Some(i) = g.order.iter().rposition(|(k, gen)| k == key && *gen == generation) {
                    g.order.remove(i);
                }
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
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 200, description = "1 to 200 characters: one append per key — the same key again (even at the same moment) gets the first request's answer without a second append (kept `[api] idempotency_ttl_secs`, at most `[api] idempotency_keys` keys)")),
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
        (status = 409, description = "A request with the same `Idempotency-Key` is still running after `[api] idempotency_wait_ms` (`in_progress`); `Retry-After` says when to ask again", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait"))),
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
    if headers.contains_key("idempotency-key") && key.is_none() {
        return Err(ApiError::bad_request("bad_header", "Idempotency-Key must be 1 to 200 visible ASCII characters"));
    }
    let body_hash = vigil_events::StableHasher::default().write(&body).finish();
    let mut ticket = None;
    if let Some(k) = &key {
        if k.is_empty() || k.len() > 200 {
            return Err(ApiError::bad_request("bad_header", "Idempotency-Key must be 1 to 200 characters"));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(state.config.idempotency_wait_ms);
        loop {
            match state.idempotency.claim(k, body_hash) {
                Claim::Fresh(t) => {
                    ticket = Some(t);
                    break;
                }
                Claim::Replay(resp) => {
                    return Ok((StatusCode::ACCEPTED, [("idempotent-replayed", "true")], Json(resp)).into_response());
                }
                Claim::Reused => {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "idempotency_key_reused",
                        "this Idempotency-Key was used with another body",
                    ));
                }
                Claim::Running(mut changed) => {
                    // The first request with this key runs: wait for its answer (the sender
                    // closing is the change), then look again.
                    if tokio::time::timeout_at(deadline, changed.changed()).await.is_err() {
                        let mut e = ApiError::conflict(
                            "in_progress",
                            "a request with this Idempotency-Key is still being handled; retry to get its answer",
                        );
                        e.retry_after = Some(1);
                        return Err(e);
                    }
                }
            }
        }
    }
    // A bad body frees the key (the ticket is dropped).
    let recs = records(&body, ndjson)?;
    let n = recs.len();
    let metrics = state.metrics.clone();
    // The append and the answer under the key happen together on the blocking pool, which runs
    // them to the end even when the client goes away: a retry then sees the answer, never a
    // second append.
    tokio::task::spawn_blocking(move || {
        let refs: Vec<(&[u8], &[u8])> = recs.iter().map(|(k, v)| (k.as_bytes(), v.as_slice())).collect();
        pipeline.ingest(&refs)?;
        metrics.ingested.add(n as u64);
        let resp = IngestResponse { accepted: n };
        if let Some(t) = ticket {
            t.done(resp.clone());
        }
        Ok::<_, String>(resp)
    })
    .await
    .map_err(ApiError::internal)?
    .map(|resp| (StatusCode::ACCEPTED, Json(resp)).into_response())
    .map_err(|e| {
        let e = crate::error::redact_paths(&e, Some(state.data_dir().as_path()));
        ApiError::unavailable("source_unavailable", format!("the readings were not accepted: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(c: &Arc<IdempotencyCache>, key: &str, hash: u64) -> Ticket {
        match c.claim(key, hash) {
            Claim::Fresh(t) => t,
            _ => panic!("{key} is not free"),
        }
    }

    #[test]
    fn one_claim_per_key_however_many_race() {
        let c = Arc::new(IdempotencyCache::default());
        let barrier = Arc::new(std::sync::Barrier::new(32));
        let threads: Vec<_> = (0..32)
            .map(|_| {
                let (c, barrier) = (c.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    match c.claim("k", 7) {
                        // Hold the ticket until every thread has looked.
                        Claim::Fresh(t) => Some(t),
                        Claim::Running(_) => None,
                        _ => panic!("no answer yet, same body"),
                    }
                })
            })
            .collect();
        let tickets: Vec<Ticket> = threads.into_iter().filter_map(|t| t.join().unwrap()).collect();
        assert_eq!(tickets.len(), 1, "exactly one request runs");
        assert!(matches!(c.claim("k", 8), Claim::Reused), "another body under a running key");
        tickets.into_iter().for_each(|t| t.done(IngestResponse { accepted: 3 }));
        assert!(matches!(c.claim("k", 7), Claim::Replay(IngestResponse { accepted: 3 })));
        assert!(matches!(c.claim("k", 8), Claim::Reused));
    }

    #[test]
    fn a_failed_request_frees_its_key_and_wakes_the_waiters() {
        let c = Arc::new(IdempotencyCache::default());
        let t = fresh(&c, "k", 1);
        let Claim::Running(rx) = c.claim("k", 1) else { panic!("running") };
        drop(t);
        assert!(rx.has_changed().is_err(), "the waiter sees the end");
        assert!(c.is_empty());
        fresh(&c, "k", 1).done(IngestResponse { accepted: 1 });
    }

    #[test]
    fn answers_are_bounded_and_expire_but_running_requests_stay() {
        let c = Arc::new(IdempotencyCache::new(3, Duration::from_secs(3600)));
        let running = fresh(&c, "running", 0);
        for i in 0..10 {
            fresh(&c, &format!("k{i}"), i).done(IngestResponse { accepted: 1 });
            assert!(c.len() <= 3 + 1, "{} held", c.len());
        }
        assert!(matches!(c.claim("running", 0), Claim::Running(_)), "a running request is never dropped");
        assert!(matches!(c.claim("k9", 9), Claim::Replay(_)), "the newest answers stay");
        assert!(matches!(c.claim("k0", 0), Claim::Fresh(_)), "the oldest went");
        drop(running);
        let held = c.len();
        let order = c.inner.lock().unwrap().order.len();
        assert!(order <= held + 1);

        let c = Arc::new(IdempotencyCache::new(100, Duration::from_millis(20)));
        fresh(&c, "old", 1).done(IngestResponse { accepted: 1 });
        std::thread::sleep(Duration::from_millis(40));
        assert!(matches!(c.claim("old", 1), Claim::Fresh(_)), "past its time the key is new again");
    }

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
