//! An asset or sensor the history does not know is a 404 naming the closest known ones, over a
//! real socket: never an empty success (an empty series, no anomalies, a report of 100 %
//! availability) that reads as "nothing happened there".

mod common;

use common::{fixture, http, Reply, Server, JSON};
use vigil_api::{ApiConfig, KeyConfig, Scope};

const READ: (&str, &str) = ("Authorization", "Bearer read-secret");

fn config() -> ApiConfig {
    ApiConfig {
        keys: vec![KeyConfig { name: "reader".into(), key: "read-secret".into(), scopes: vec![Scope::Read] }],
        rate_per_second: 1000.0,
        rate_burst: 1000,
        ..ApiConfig::default()
    }
}

fn assert_not_found(r: &Reply, names: &[&str]) {
    assert_eq!(r.status, 404, "{}", r.body);
    let v = r.json();
    assert_eq!(v["error"]["code"], "not_found", "{}", r.body);
    let message = v["error"]["message"].as_str().unwrap_or_default();
    for n in names {
        assert!(message.contains(n), "{message:?} does not name {n}");
    }
}

#[tokio::test]
async fn unknown_assets_and_sensors_are_404_naming_the_closest() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let srv = Server::start(dir.path(), config()).await;
    let a = srv.addr;

    // Readings of a sensor that does not exist: 404 naming the one it resembles.
    let r = http(a, "GET", "/api/v1/readings?sensor_id=a1-tmp", &[READ], None).await;
    assert_not_found(&r, &["no sensor 'a1-tmp'", "a1-temp"]);
    // Events of an unknown asset, filtered by asset or sensor.
    for path in [
        "/api/v1/anomalies?asset_id=A3",
        "/api/v1/drift?asset_id=A3",
        "/api/v1/predictions?asset_id=A3",
        "/api/v1/schedule?asset_id=A3",
    ] {
        let r = http(a, "GET", path, &[READ], None).await;
        assert_not_found(&r, &["no asset 'A3'", "a1", "a2"]);
    }
    let r = http(a, "GET", "/api/v1/anomalies?sensor_id=a2-temperature", &[READ], None).await;
    assert_not_found(&r, &["a2-temp"]);
    // The report of an unknown asset.
    let r = http(a, "POST", "/api/v1/reports", &[READ, JSON], Some(r#"{"asset_id": "NO_SUCH_ASSET"}"#)).await;
    assert_not_found(&r, &["no asset 'NO_SUCH_ASSET'", "2 assets known"]);

    // Known ids with nothing to show stay empty successes.
    let r = http(a, "GET", "/api/v1/anomalies?asset_id=a1", &[READ], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), serde_json::json!([]));
    let r = http(a, "GET", "/api/v1/readings?sensor_id=a1-temp&from=2025-01-01T00:00:00Z&to=2025-01-02T00:00:00Z", &[READ], None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["points"], serde_json::json!([]));
    let r = http(a, "POST", "/api/v1/reports", &[READ, JSON], Some(r#"{"asset_id": "a2", "format": "json"}"#)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    srv.stop().await;
}
