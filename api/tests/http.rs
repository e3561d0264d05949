//! The API over a real socket, on a history written by the connectors' real writers.
//!
//! The fixture: assets a1 and a2 with one sensor each, a reading a minute for two hours; two
//! proposals, each with a decision request (the pipeline's output). The tests drive the
//! decision loop, the auth and rate limits, and the error shape through real HTTP.

mod common;

use common::{fixture, http, Reply, Server, JSON, MIN, T0};
use vigil_api::{ApiConfig, KeyConfig, Scope};

fn config(rate: f64, burst: u32) -> ApiConfig {
    ApiConfig {
        keys: vec![
            KeyConfig { name: "reader".into(), key: "read-secret".into(), scopes: vec![Scope::Read] },
            KeyConfig { name: "planner".into(), key: "plan-secret".into(), scopes: vec![Scope::Read, Scope::Decide] },
        ],
        rate_per_second: rate,
        rate_burst: burst,
        body_limit_bytes: 4096,
        // The scope test presents a wrong key on every route; guessing is `abuse.rs`'s.
        auth_failure_burst: 1000,
        ..ApiConfig::default()
    }
}

const READ: (&str, &str) = ("Authorization", "Bearer read-secret");
const PLAN: (&str, &str) = ("X-API-Key", "plan-secret");

fn assert_error_shape(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    let v = r.json();
    assert_eq!(v["error"]["code"], code, "{}", r.body);
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", r.body);
    let id = v["error"]["request_id"].as_str().unwrap_or_default();
    assert!(!id.is_empty(), "no request id in {}", r.body);
    assert_eq!(r.header("x-request-id"), Some(id), "the header and the body name the same request");
}

/// Every keyed route, with a body where it takes one.
const KEYED: &[(&str, &str, Option<&str>)] = &[
    ("GET", "/api/v1/history", None),
    ("GET", "/api/v1/sensors", None),
    ("GET", "/api/v1/readings?sensor_id=a1-temp", None),
    ("GET", "/api/v1/anomalies", None),
    ("GET", "/api/v1/drift", None),
    ("GET", "/api/v1/predictions", None),
    ("GET", "/api/v1/schedule", None),
    ("GET", "/api/v1/fleet", None),
    ("GET", "/api/v1/decisions/pending", None),
    ("GET", "/api/v1/decisions", None),
    ("POST", "/api/v1/query", Some(r#"{"sql": "SELECT 1"}"#)),
    ("POST", "/api/v1/reports", Some(r#"{"asset_id": "a1"}"#)),
    ("GET", "/api/v1/models", None),
    ("GET", "/api/v1/models/rul/versions", None),
    ("GET", "/api/v1/models/rul/latest", None),
    ("POST", "/api/v1/decisions/req-a1", Some(r#"{"decision": "approve"}"#)),
    ("POST", "/api/v1/maintenance/prop-a1-1/complete", Some(r#"{}"#)),
];

#[tokio::test]
async fn every_keyed_route_needs_a_key_and_the_right_scope() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let srv = Server::start(dir.path(), config(1000.0, 1000)).await;
    register_models(dir.path());
    for (method, path, body) in KEYED {
        let r = http(srv.addr, method, path, &[JSON], *body).await;
        assert_error_shape(&r, 401, "unauthorized");
        let r = http(srv.addr, method, path, &[JSON, ("Authorization", "Bearer wrong")], *body).await;
        assert_error_shape(&r, 401, "unauthorized");
        let r = http(srv.addr, method, path, &[JSON, READ], *body).await;
        if path.contains("/decisions/req") || path.contains("/maintenance/") {
            assert_error_shape(&r, 403, "forbidden");
        } else {
            assert_eq!(r.status, 200, "{method} {path}: {}", r.body);
        }
    }
    // Open routes.
    for path in ["/health", "/ready", "/metrics"] {
        assert_eq!(http(srv.addr, "GET", path, &[], None).await.status, 200, "{path}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn every_error_has_one_shape_and_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let srv = Server::start(dir.path(), config(1000.0, 1000)).await;
    let a = srv.addr;
    assert_error_shape(&http(a, "GET", "/nope", &[], None).await, 404, "not_found");
    assert_error_shape(&http(a, "DELETE", "/api/v1/sensors", &[READ], None).await, 405, "method_not_allowed");
    assert_error_shape(&http(a, "POST", "/api/v1/query", &[READ, JSON], Some("{not json")).await, 400, "bad_json");
    assert_error_shape(
        &http(a, "POST", "/api/v1/query", &[READ], Some(r#"{"sql":"SELECT 1"}"#)).await,
        415,
        "unsupported_media_type",
    );
    let big = format!(r#"{{"sql": "SELECT '{}'"}}"#, "x".repeat(10_000));
    assert_error_shape(&http(a, "POST", "/api/v1/query", &[READ, JSON], Some(&big)).await, 413, "payload_too_large");
    assert_error_shape(&http(a, "POST", "/api/v1/query", &[READ, JSON], Some(r#"{"sql": 5}"#)).await, 422, "invalid_body");
    assert_error_shape(
        &http(a, "GET", "/api/v1/readings?sensor_id=a1-temp&from=yesterday", &[READ], None).await,
        400,
        "bad_parameter",
    );
    assert_error_shape(&http(a, "GET", "/api/v1/readings", &[READ], None).await, 400, "bad_query");
    assert_error_shape(
        &http(a, "POST", "/api/v1/query", &[READ, JSON], Some(r#"{"sql": "DROP TABLE readings"}"#)).await,
        403,
        "query_refused",
    );
    assert_error_shape(
        &http(a, "POST", "/api/v1/query", &[READ, JSON], Some(r#"{"sql": "SELECT nope FROM readings"}"#)).await,
        400,
        "bad_sql",
    );
    assert_error_shape(
        &http(a, "POST", "/api/v1/decisions/req-zz", &[PLAN, JSON], Some(r#"{"decision":"approve"}"#)).await,
        404,
        "not_found",
    );
    // A request id given by the caller is kept.
    let r = http(a, "GET", "/nope", &[("X-Request-Id", "trace-42")], None).await;
    assert_eq!(r.json()["error"]["request_id"], "trace-42");
    assert_eq!(r.header("x-request-id"), Some("trace-42"));
    // Successful responses carry one too.
    assert!(http(a, "GET", "/health", &[], None).await.header("x-request-id").is_some_and(|v| v.len() == 16));
    srv.stop().await;
}

#[tokio::test]
async fn a_key_over_its_rate_gets_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let srv = Server::start(dir.path(), config(0.5, 3)).await;
    for _ in 0..3 {
        assert_eq!(http(srv.addr, "GET", "/api/v1/decisions", &[READ], None).await.status, 200);
    }
    let r = http(srv.addr, "GET", "/api/v1/decisions", &[READ], None).await;
    assert_error_shape(&r, 429, "rate_limited");
    assert_eq!(r.header("retry-after"), Some("2"));
    // Another key has its own bucket; health is never limited.
    assert_eq!(http(srv.addr, "GET", "/api/v1/decisions", &[PLAN], None).await.status, 200);
    assert_eq!(http(srv.addr, "GET", "/health", &[], None).await.status, 200);
    let metrics = http(srv.addr, "GET", "/metrics", &[], None).await.body;
    assert!(metrics.contains("vigil_http_rate_limited_total 1\n"), "{metrics}");
    srv.stop().await;
}

async fn sql(addr: std::net::SocketAddr, q: &str) -> Vec<serde_json::Value> {
    let body = serde_json::json!({ "sql": q }).to_string();
    let r = http(addr, "POST", "/api/v1/query", &[READ, JSON], Some(&body)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["rows"].as_array().unwrap().clone()
}

#[tokio::test]
async fn the_decision_loop_is_durable_idempotent_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let srv = Server::start(dir.path(), config(1000.0, 1000)).await;
    let a = srv.addr;

    let pending = http(a, "GET", "/api/v1/decisions/pending", &[READ], None).await.json();
    let ids: Vec<&str> = pending.as_array().unwrap().iter().map(|r| r["request_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["req-a1", "req-a2"]);
    assert_eq!(pending[0]["priority"], "high");
    assert_eq!(pending[0]["scheduled_for"], T0 + 600 * MIN);

    // Approve a1: durable, scheduled.
    let body = r#"{"decision": "approve", "operator": "ann", "rationale": "bearing noise"}"#;
    let r = http(a, "POST", "/api/v1/decisions/req-a1", &[PLAN, JSON], Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    assert_eq!((v["decision"]["decision"].as_str(), v["decision"]["decided_by"].as_str()), (Some("approve"), Some("ann")));
    assert_eq!(v["decision"]["via_key"], "planner");
    assert_eq!(v["schedule"]["status"], "scheduled");
    assert_eq!(v["schedule"]["scheduled_for"], T0 + 600 * MIN);
    // The same decision again: the recorded one, nothing new.
    let again = http(a, "POST", "/api/v1/decisions/req-a1", &[PLAN, JSON], Some(body)).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["replayed"], true);
    assert_eq!(again.json()["decision"]["event_id"], v["decision"]["event_id"]);
    // Another decision on a decided request: 409.
    let r =
        http(a, "POST", "/api/v1/decisions/req-a1", &[PLAN, JSON], Some(r#"{"decision": "reject", "operator": "bob"}"#)).await;
    assert_error_shape(&r, 409, "already_decided");

    // Defer a2: it leaves the pending list until then.
    let r = http(a, "POST", "/api/v1/decisions/req-a2", &[PLAN, JSON], Some(r#"{"decision": "defer", "operator": "ann"}"#)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.json()["schedule"].is_null());
    assert_eq!(http(a, "GET", "/api/v1/decisions/pending", &[READ], None).await.json(), serde_json::json!([]));
    let with = http(a, "GET", "/api/v1/decisions/pending?include_deferred=true", &[READ], None).await.json();
    assert_eq!(with[0]["status"], "deferred");

    // The schedule shows the approval; SQL sees both decisions at once.
    let sched = http(a, "GET", "/api/v1/schedule?asset_id=a1", &[READ], None).await.json();
    assert_eq!(sched[0]["status"], "scheduled", "{sched}");
    let rows = sql(a, "SELECT request_id, decision FROM decisions ORDER BY request_id").await;
    assert_eq!(
        rows,
        vec![
            serde_json::json!({"request_id": "req-a1", "decision": "approve"}),
            serde_json::json!({"request_id": "req-a2", "decision": "defer"})
        ]
    );

    // Completion: only approved maintenance, once.
    let r = http(a, "POST", "/api/v1/maintenance/prop-a2-1/complete", &[PLAN, JSON], Some("{}")).await;
    assert_error_shape(&r, 409, "not_scheduled");
    let done = r#"{"performed_by": "crew 3", "notes": "bearing replaced", "started_at": "2026-01-01T09:00:00Z", "completed_at": "2026-01-01T10:30:00Z"}"#;
    let r = http(a, "POST", "/api/v1/maintenance/prop-a1-1/complete", &[PLAN, JSON], Some(done)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["schedule"]["status"], "completed");
    assert_eq!(
        http(a, "POST", "/api/v1/maintenance/prop-a1-1/complete", &[PLAN, JSON], Some(done)).await.json()["replayed"],
        true
    );
    let rows = sql(a, "SELECT asset_id, kind, performed_by, CAST(ts - started_at AS VARCHAR) AS took FROM maintenance").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["performed_by"], "crew 3");

    // The audit log, paginated, newest first.
    let page = http(a, "GET", "/api/v1/decisions?limit=1", &[READ], None).await.json();
    assert_eq!(page["total"], 2);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["request_id"], "req-a2");
    let page = http(a, "GET", "/api/v1/decisions?limit=1&offset=1&decision=approve", &[READ], None).await.json();
    assert_eq!((page["total"].as_u64(), page["items"].as_array().unwrap().len()), (Some(1), 0));

    // A restart: everything acknowledged is still there, in the API and in SQL.
    srv.stop().await;
    let srv = Server::start(dir.path(), config(1000.0, 1000)).await;
    let a = srv.addr;
    let page = http(a, "GET", "/api/v1/decisions", &[READ], None).await.json();
    assert_eq!(page["total"], 2, "{page}");
    let r =
        http(a, "POST", "/api/v1/decisions/req-a1", &[PLAN, JSON], Some(r#"{"decision": "reject", "operator": "bob"}"#)).await;
    assert_eq!(r.status, 409);
    let rows = sql(a, "SELECT count(*) AS n FROM decisions").await;
    assert_eq!(rows[0]["n"], 2);
    let rows = sql(a, "SELECT status FROM schedule WHERE proposal_id = 'prop-a1-1' ORDER BY ts").await;
    let statuses: Vec<&str> = rows.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["proposed", "scheduled", "completed"]);

    let metrics = http(a, "GET", "/metrics", &[], None).await.body;
    assert!(
        metrics.contains("vigil_http_requests_total{route=\"/api/v1/decisions\",method=\"GET\",status=\"200\"} 1"),
        "{metrics}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn reads_report_and_query() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let srv = Server::start(dir.path(), config(1000.0, 1000)).await;
    let a = srv.addr;
    let series = http(
        a,
        "GET",
        "/api/v1/readings?sensor_id=a1-temp&from=2026-01-01T00:00:00Z&to=2026-01-01T02:00:00Z&max_points=12",
        &[READ],
        None,
    )
    .await
    .json();
    let points = series["points"].as_array().unwrap();
    assert_eq!(points.len(), 12);
    assert_eq!(points[0]["count"], 10);
    assert_eq!(points[0]["value"], 54.5);
    let sensors = http(a, "GET", "/api/v1/sensors", &[READ], None).await.json();
    assert_eq!(sensors["sensors"].as_array().unwrap().len(), 2);
    let r = http(a, "POST", "/api/v1/reports", &[READ, JSON], Some(r#"{"asset_id": "a1", "format": "html"}"#)).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/html")));
    assert!(r.body.contains("<svg"), "no chart");
    let r = http(
        a,
        "POST",
        "/api/v1/query",
        &[READ, JSON],
        Some(r#"{"sql": "SELECT sensor_id, count(*) AS n FROM readings GROUP BY 1 ORDER BY 1", "max_rows": 1}"#),
    )
    .await;
    let v = r.json();
    assert_eq!(v["rows"], serde_json::json!([{"sensor_id": "a1-temp", "n": 120}]));
    assert_eq!(v["truncated"], true);
    assert_eq!(v["columns"][1]["name"], "n");
    srv.stop().await;
}

/// Two versions of `rul` in the data directory's registry, as `vigil train` leaves them.
fn register_models(dir: &std::path::Path) {
    let reg = vigil_connectors::models::ModelRegistry::in_data_dir(dir);
    for (rmse, at) in [(15.5, T0), (12.25, T0 + MIN)] {
        let meta = vigil_connectors::models::ModelMeta {
            kind: "gbt-rul".into(),
            params: serde_json::json!({"trees": 200, "depth": 4}),
            training_data: "train_FD001.txt".into(),
            training_data_sha256: "0f".repeat(32),
            metrics: [("rmse".to_string(), rmse)].into_iter().collect(),
            notes: None,
        };
        reg.register("rul", "json", b"{}", meta, at).unwrap();
    }
}

#[tokio::test]
async fn the_model_registry_is_served() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let srv = Server::start(dir.path(), config(1000.0, 1000)).await;
    let a = srv.addr;
    let empty = http(a, "GET", "/api/v1/models", &[READ], None).await.json();
    assert_eq!(empty["models"], serde_json::json!([]));
    register_models(dir.path());
    let list = http(a, "GET", "/api/v1/models", &[READ], None).await.json();
    assert_eq!(list["models"][0]["name"], "rul");
    assert_eq!(list["models"][0]["versions"], 2);
    assert_eq!(list["models"][0]["latest"]["version"], 2);
    let versions = http(a, "GET", "/api/v1/models/rul/versions", &[READ], None).await.json();
    let rmse: Vec<f64> = versions.as_array().unwrap().iter().map(|v| v["metrics"]["rmse"].as_f64().unwrap()).collect();
    assert_eq!(rmse, [15.5, 12.25]);
    let latest = http(a, "GET", "/api/v1/models/rul/latest", &[READ], None).await.json();
    assert_eq!((latest["version"].as_u64(), latest["created_ms"].as_i64()), (Some(2), Some(T0 + MIN)));
    assert_eq!(latest["training_data_sha256"], "0f".repeat(32));
    assert_eq!(latest["params"]["trees"], 200);
    assert_error_shape(&http(a, "GET", "/api/v1/models/none/latest", &[READ], None).await, 404, "not_found");
    assert_error_shape(&http(a, "GET", "/api/v1/models/none/versions", &[READ], None).await, 404, "not_found");
    assert_error_shape(&http(a, "GET", "/api/v1/models/..%2Fx/latest", &[READ], None).await, 400, "bad_parameter");
    srv.stop().await;
}
