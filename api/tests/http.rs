//! The router over a real socket: health, the history catalog, and the error shape.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vigil_api::{app, AppState};

async fn request(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, serde_json::Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    let status: u16 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn health_catalog_and_errors_over_http() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("readings/date=2026-01-01")).unwrap();
    std::fs::create_dir_all(dir.path().join("_staging/x")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app(AppState { data_dir: Arc::new(dir.path().to_path_buf()) });
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let (status, body) = request(addr, "GET", "/health").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));

    let (status, body) = request(addr, "GET", "/api/v1/history").await;
    assert_eq!(status, 200);
    let tables = body.as_array().unwrap();
    assert_eq!(tables.len(), 1, "staging folders are not tables: {body}");
    assert_eq!(tables[0]["name"], "readings");
    assert_eq!(tables[0]["rows"], 0);

    let (status, body) = request(addr, "GET", "/nope").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    let (status, body) = request(addr, "POST", "/health").await;
    assert_eq!((status, body["error"]["code"].as_str()), (405, Some("method_not_allowed")));
}
