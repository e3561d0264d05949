//! `POST /api/v1/query` answering the client's mistakes as the client's: 400 with a clear code
//! and a sentence (syntax errors with their position, wrong arguments and values found while
//! running), 404 naming the closest tables for an unknown one, 400 `query_too_complex` for a
//! statement too deep to plan — never a 500 and never an abort.

mod common;

use common::*;
use vigil_api::ApiConfig;

async fn query(srv: &Server, sql: &str) -> Reply {
    let body = serde_json::json!({ "sql": sql }).to_string();
    http(srv.addr, "POST", "/api/v1/query", &[JSON, ("Authorization", "Bearer k")], Some(&body)).await
}

fn config() -> ApiConfig {
    ApiConfig {
        keys: vec![vigil_api::KeyConfig { name: "k".into(), key: "k".into(), scopes: vec![vigil_api::Scope::Read] }],
        ..ApiConfig::default()
    }
}

fn message(r: &Reply) -> String {
    r.json()["error"]["message"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn bad_arguments_and_values_are_the_clients_errors() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let srv = Server::start(dir.path(), config()).await;
    for (sql, what) in [
        ("SELECT 1 / 0", "division by zero"),
        ("SELECT CAST(value AS BIGINT) / 0 FROM readings", "division by zero"),
        ("SELECT CAST('abc' AS INT)", "cast"),
        ("SELECT CAST(sensor_id AS BIGINT) FROM readings", "cast"),
        ("SELECT regexp_like(sensor_id, '(') FROM readings", "regex"),
        ("SELECT to_timestamp('not a time')", "not a time"),
        ("SELECT arrow_cast(1, 'NoSuchType')", "nosuchtype"),
        ("SELECT date_trunc('fortnight', now())", "fortnight"),
    ] {
        let r = query(&srv, sql).await;
        assert_eq!(r.status, 400, "{sql}: {}", r.body);
        assert!(["bad_sql", "bad_sql_argument"].contains(&r.code().unwrap_or_default().as_str()), "{sql}: {}", r.body);
        assert!(message(&r).to_lowercase().contains(what), "{sql}: {}", r.body);
    }
}

#[tokio::test]
async fn syntax_errors_read_as_sentences_with_the_position() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let srv = Server::start(dir.path(), config()).await;
    let r = query(&srv, "SELECT sensor_id FROM readings WHERE").await;
    assert_eq!((r.status, r.code().as_deref()), (400, Some("bad_sql")), "{}", r.body);
    let m = message(&r);
    assert!(m.starts_with("syntax error at line 1, column 37: expected an expression"), "{m}");
    assert!(!m.contains("ParserError") && !m.contains("Line:"), "{m}");
    let r = query(&srv, "SELECT 1,\n  2\nFROM readings )").await;
    assert!(message(&r).starts_with("syntax error at line 3, column 15: expected end of statement"), "{}", r.body);
    // Something the planner does not support: a sentence, not the expression's debug dump.
    let r = query(&srv, "SELECT regexp_match(sensor_id, 's([0-9])')[1] FROM readings").await;
    assert_eq!((r.status, r.code().as_deref()), (400, Some("bad_sql")), "{}", r.body);
    let m = message(&r);
    assert!(m.starts_with("not supported: indexing a value with [...]"), "{m}");
    assert!(!m.contains('{') && !m.contains("Expr"), "{m}");
}

#[tokio::test]
async fn an_unknown_table_names_the_closest_tables() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let srv = Server::start(dir.path(), config()).await;
    let r = query(&srv, "SELECT count(*) FROM readngs").await;
    assert_eq!((r.status, r.code().as_deref()), (404, Some("unknown_table")), "{}", r.body);
    let m = message(&r);
    assert!(m.starts_with("table readngs not found (did you mean readings?)"), "{m}");
    let r = query(&srv, "SELECT * FROM anomaly a JOIN readings r ON a.sensor_id = r.sensor_id").await;
    assert!(message(&r).contains("did you mean anomalies"), "{}", r.body);
}

#[tokio::test]
async fn a_statement_too_deep_to_plan_is_refused_and_the_server_lives() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let srv = Server::start(dir.path(), config()).await;
    for n in [300, 3_000, 100_000] {
        let r = query(&srv, &format!("SELECT 1{}", "+1".repeat(n))).await;
        assert_eq!((r.status, r.code().as_deref()), (400, Some("query_too_complex")), "x{n}: {}", r.body);
        // Within the body limit (1 MiB): 19 bytes a branch.
        let r = query(&srv, &format!("SELECT 1{}", " UNION ALL SELECT 1".repeat(n.min(50_000)))).await;
        assert_eq!((r.status, r.code().as_deref()), (400, Some("query_too_complex")), "x{n}: {}", r.body);
        assert_eq!(http(srv.addr, "GET", "/health", &[], None).await.status, 200);
    }
    // Within the limits, deep enough to need more than a default thread's stack to plan.
    let r = query(&srv, &format!("SELECT 1{} AS n", "+1".repeat(150))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["rows"][0]["n"], 151);
}
