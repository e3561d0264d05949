//! What a client cannot do to the API, over a real socket on the fixture of `http.rs`:
//! store or query a time outside the one accepted range (every entry point answers 400 naming
//! the field, and the history stays readable), grow the metrics with made-up methods and paths,
//! guess keys without being throttled (REST and the console's sign-in share the count), get a
//! session cookie without `Secure` over https, or run script in the HTML report. Health and
//! readiness also answer under the API's prefix.

mod common;

use common::{fixture, http, Reply, Server, JSON};
use vigil_api::{ApiConfig, KeyConfig, Scope};

fn config() -> ApiConfig {
    ApiConfig {
        keys: vec![
            KeyConfig { name: "reader".into(), key: "read-secret".into(), scopes: vec![Scope::Read] },
            KeyConfig { name: "planner".into(), key: "plan-secret".into(), scopes: vec![Scope::Read, Scope::Decide] },
        ],
        rate_per_second: 10_000.0,
        rate_burst: 10_000,
        ..ApiConfig::default()
    }
}

const READ: (&str, &str) = ("Authorization", "Bearer read-secret");
const PLAN: (&str, &str) = ("X-API-Key", "plan-secret");
const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// A 400 `bad_parameter` whose message names `field`.
fn assert_names(r: &Reply, field: &str, what: &str) {
    assert_eq!((r.status, r.code().as_deref()), (400, Some("bad_parameter")), "{what}: {}", r.body);
    let message = r.json()["error"]["message"].as_str().unwrap_or_default().to_string();
    assert!(message.starts_with(&format!("{field}: ")), "{what}: the message names {field}: {message}");
}

#[tokio::test]
async fn times_outside_the_one_range_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let srv = Server::start(dir.path(), config()).await;
    let a = srv.addr;
    let (min, max) = (i64::MIN.to_string(), i64::MAX.to_string());
    let year_10000 = "253402300800000"; // 10000-01-01T00:00:00Z, one ms past the range
                                        // Query strings of the canned reads and the audit log.
    for (path, field) in [
        (format!("/api/v1/readings?sensor_id=a1-temp&from={min}"), "from"),
        (format!("/api/v1/readings?sensor_id=a1-temp&to={min}"), "to"),
        (format!("/api/v1/readings?sensor_id=a1-temp&to={max}"), "to"),
        (format!("/api/v1/anomalies?from={min}"), "from"),
        (format!("/api/v1/drift?to={year_10000}"), "to"),
        ("/api/v1/predictions?from=-1".to_string(), "from"),
        ("/api/v1/schedule?to=0001-01-01T00:00:00Z".to_string(), "to"),
        (format!("/api/v1/decisions?from={min}"), "from"),
    ] {
        let r = http(a, "GET", &path, &[READ], None).await;
        assert_names(&r, field, &path);
    }
    // Report periods.
    for (body, field) in [
        (format!(r#"{{"from": "{min}"}}"#), "from"),
        (format!(r#"{{"from": "0", "to": "{max}"}}"#), "to"),
        (r#"{"to": "-292275055-05-16T16:47:04Z"}"#.to_string(), "to"),
    ] {
        let r = http(a, "POST", "/api/v1/reports", &[READ, JSON], Some(&body)).await;
        assert!(r.status == 400, "{body}: {}", r.body);
        if r.code().as_deref() == Some("bad_parameter") && body.contains("292275055") {
            // Not even parseable as a time: also 400 naming the field.
            assert!(r.json()["error"]["message"].as_str().unwrap().starts_with("to: "), "{}", r.body);
        } else {
            assert_names(&r, field, &body);
        }
    }
    // Decisions and maintenance: deferred_until, started_at and completed_at, as numbers and
    // as strings.
    let r = http(
        a,
        "POST",
        "/api/v1/decisions/req-a2",
        &[PLAN, JSON],
        Some(&format!(r#"{{"decision": "defer", "deferred_until": {max}}}"#)),
    )
    .await;
    assert_names(&r, "deferred_until", "defer to i64::MAX");
    let r =
        http(a, "POST", "/api/v1/decisions/req-a1", &[PLAN, JSON], Some(r#"{"decision": "approve", "operator": "ann"}"#)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    for (body, field) in [
        (format!(r#"{{"completed_at": {min}}}"#), "completed_at"),
        (r#"{"completed_at": "10000-01-01T00:00:00Z"}"#.to_string(), "completed_at"),
        (format!(r#"{{"started_at": {min}}}"#), "started_at"),
        (r#"{"started_at": "0001-01-01T00:00:00Z"}"#.to_string(), "started_at"),
    ] {
        let r = http(a, "POST", "/api/v1/maintenance/prop-a1-1/complete", &[PLAN, JSON], Some(&body)).await;
        if body.contains("10000-") {
            // chrono does not read a five-digit year: refused as not a time, naming the field.
            assert_eq!(r.status, 400, "{body}: {}", r.body);
            assert!(r.json()["error"]["message"].as_str().unwrap().starts_with("completed_at: "), "{}", r.body);
        } else {
            assert_names(&r, field, &body);
        }
    }
    // Nothing was recorded: the proposal is still open for a real completion, and reads work.
    let r = http(a, "POST", "/api/v1/maintenance/prop-a1-1/complete", &[PLAN, JSON], Some(r#"{"notes": "done"}"#)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = http(a, "GET", "/api/v1/schedule", &[READ], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let q = r#"{"sql": "SELECT count(*) AS n, min(ts) AS lo, min(started_at) AS s FROM maintenance"}"#;
    let r = http(a, "POST", "/api/v1/query", &[READ, JSON], Some(q)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let row = &r.json()["rows"][0];
    assert_eq!(row["n"], 1, "one record: the real completion");
    for col in ["lo", "s"] {
        assert!(row[col].as_str().is_some_and(|t| t.starts_with("20")), "{}", r.body);
    }
    // The edges of the range are times like any other.
    let r = http(a, "GET", "/api/v1/anomalies?from=0&to=9999-12-31T23:59:59.999Z", &[READ], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    srv.stop().await;
}

#[tokio::test]
async fn console_forms_refuse_times_outside_the_range() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let srv = Server::start(dir.path(), config()).await;
    let r = http(srv.addr, "POST", "/login", &[FORM], Some("key=plan-secret&next=/fleet")).await;
    let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    let r = http(srv.addr, "GET", "/reports/view?from=-9223372036854775808", &[("Cookie", &cookie)], None).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("from: "), "the page names the field: {}", r.body);
    srv.stop().await;
}

/// The `(route, method)` label pairs of `vigil_http_requests_total`.
fn request_labels(metrics: &str) -> Vec<(String, String)> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("vigil_http_requests_total{"))
        .map(|l| {
            let label = |name: &str| {
                let start = l.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                l[start..].split('"').next().unwrap().to_string()
            };
            (label("route"), label("method"))
        })
        .collect()
}

#[tokio::test]
async fn metrics_labels_stay_bounded_whatever_clients_send() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let srv = Server::start(dir.path(), config()).await;
    let a = srv.addr;
    for i in 0..40 {
        http(a, &format!("M{i}X"), "/health", &[], None).await;
        http(a, "GET", &format!("/no/such/path/{i}"), &[], None).await;
        http(a, &format!("PROBE{i}"), &format!("/api/v1/x{i}"), &[], None).await;
    }
    assert_eq!(http(a, "GET", "/api/v1/sensors", &[READ], None).await.status, 200);
    let metrics = http(a, "GET", "/metrics", &[], None).await.body;
    let labels = request_labels(&metrics);
    let routes: std::collections::BTreeSet<&str> = labels.iter().map(|(r, _)| r.as_str()).collect();
    let methods: std::collections::BTreeSet<&str> = labels.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(methods.into_iter().collect::<Vec<_>>(), ["GET", "other"], "{metrics}");
    assert!(routes.contains("/api/v1/sensors") && routes.contains("other"), "{metrics}");
    assert!(routes.iter().all(|r| ["/api/v1/sensors", "/health", "other"].contains(r)), "only route templates: {metrics}");
    let series = metrics.lines().filter(|l| l.starts_with("vigil_http_request")).count();
    assert!(series < 80, "{series} series after 120 made-up requests");
    srv.stop().await;
}

#[tokio::test]
async fn wrong_keys_are_throttled_per_client_over_rest_and_the_console() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let cfg = ApiConfig { auth_failure_burst: 5, auth_failures_per_minute: 2.0, ..config() };
    let srv = Server::start(dir.path(), cfg).await;
    let a = srv.addr;
    // No key at all is not a guess.
    for _ in 0..10 {
        assert_eq!(http(a, "GET", "/api/v1/sensors", &[], None).await.status, 401);
    }
    for i in 0..3 {
        let r = http(a, "GET", "/api/v1/sensors", &[("Authorization", &format!("Bearer guess-{i}"))], None).await;
        assert_eq!(r.status, 401, "{}", r.body);
    }
    // The console's sign-in counts toward the same client's failures.
    for i in 0..2 {
        let r = http(a, "POST", "/login", &[FORM], Some(&format!("key=guess-{i}"))).await;
        assert_eq!(r.status, 401, "{}", r.body);
    }
    let r = http(a, "GET", "/api/v1/sensors", &[("Authorization", "Bearer guess-x")], None).await;
    assert_eq!((r.status, r.code().as_deref()), (429, Some("auth_throttled")), "{}", r.body);
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "two failures a minute: a token in 30 s at most, not {wait}");
    // While throttled, even the right key cannot be confirmed from this address.
    let r = http(a, "GET", "/api/v1/sensors", &[READ], None).await;
    assert_eq!(r.status, 429, "{}", r.body);
    let r = http(a, "POST", "/login", &[FORM], Some("key=read-secret")).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    assert!(r.header("set-cookie").is_none());
    let metrics = http(a, "GET", "/metrics", &[], None).await.body;
    assert!(metrics.contains("vigil_http_auth_throttled_total 3\n"), "{metrics}");
    srv.stop().await;

    // Behind a trusted proxy the client is the forwarded address: another client is not
    // throttled by the first one's guesses.
    let cfg = ApiConfig { auth_failure_burst: 2, trust_proxy_headers: true, ..config() };
    let srv = Server::start(dir.path(), cfg).await;
    let from = |ip: &'static str| ("X-Forwarded-For", ip);
    for _ in 0..2 {
        let r = http(srv.addr, "GET", "/api/v1/sensors", &[from("203.0.113.7"), ("X-API-Key", "nope")], None).await;
        assert_eq!(r.status, 401);
    }
    let r = http(srv.addr, "GET", "/api/v1/sensors", &[from("203.0.113.7"), READ], None).await;
    assert_eq!(r.status, 429, "{}", r.body);
    let r = http(srv.addr, "GET", "/api/v1/sensors", &[from("198.51.100.2"), READ], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    srv.stop().await;
}

/// The `Set-Cookie` of a sign-in with the read key and `headers`.
async fn sign_in_cookie(srv: &Server, headers: &[(&str, &str)]) -> String {
    let mut h = vec![FORM];
    h.extend_from_slice(headers);
    let r = http(srv.addr, "POST", "/login", &h, Some("key=read-secret&next=/fleet")).await;
    assert_eq!(r.status, 303, "{}", r.body);
    r.header("set-cookie").unwrap().to_string()
}

#[tokio::test]
async fn the_session_cookie_is_secure_over_https() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let https = ("X-Forwarded-Proto", "https");
    // Plain http, and a proxy header that is not trusted: no `Secure` (the browser would drop
    // a Secure cookie over http).
    let srv = Server::start(dir.path(), config()).await;
    assert!(!sign_in_cookie(&srv, &[]).await.contains("Secure"));
    assert!(!sign_in_cookie(&srv, &[https]).await.contains("Secure"), "an untrusted X-Forwarded-Proto is ignored");
    srv.stop().await;
    // Behind a trusted proxy that says https.
    let srv = Server::start(dir.path(), ApiConfig { trust_proxy_headers: true, ..config() }).await;
    let c = sign_in_cookie(&srv, &[https]).await;
    assert!(c.contains("; Secure") && c.contains("HttpOnly") && c.contains("SameSite=Strict"), "{c}");
    assert!(!sign_in_cookie(&srv, &[("X-Forwarded-Proto", "http")]).await.contains("Secure"));
    srv.stop().await;
    // Forced by the config.
    let srv = Server::start(dir.path(), ApiConfig { secure_cookies: true, ..config() }).await;
    let c = sign_in_cookie(&srv, &[]).await;
    assert!(c.contains("; Secure"), "{c}");
    srv.stop().await;
}

#[tokio::test]
async fn the_html_report_is_served_with_a_csp_that_allows_no_script() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let srv = Server::start(dir.path(), config()).await;
    let r = http(srv.addr, "POST", "/api/v1/reports", &[READ, JSON], Some(r#"{"asset_id": "a1", "format": "html"}"#)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("<style>") && r.body.contains("<svg"), "the report is what the policy is for");
    let csp = r.header("content-security-policy").expect("a Content-Security-Policy on the HTML report").to_string();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("style-src 'unsafe-inline'"), "its inline <style> is allowed: {csp}");
    assert!(!csp.contains("script"), "no script at all: {csp}");
    // The console's report view sends the same policy.
    let login = http(srv.addr, "POST", "/login", &[FORM], Some("key=read-secret&next=/fleet")).await;
    let cookie = login.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    let r = http(srv.addr, "GET", "/reports/view?asset=a1", &[("Cookie", &cookie)], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-security-policy"), Some(csp.as_str()));
    // JSON reports need none.
    let r = http(srv.addr, "POST", "/api/v1/reports", &[READ, JSON], Some(r#"{"asset_id": "a1"}"#)).await;
    assert_eq!(r.status, 200);
    srv.stop().await;
}

#[tokio::test]
async fn health_and_ready_answer_under_the_api_prefix() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let srv = Server::start(dir.path(), config()).await;
    for (short, long) in [("/health", "/api/v1/health"), ("/ready", "/api/v1/ready")] {
        let (s, l) = (http(srv.addr, "GET", short, &[], None).await, http(srv.addr, "GET", long, &[], None).await);
        assert_eq!((s.status, l.status), (200, 200), "{long}: {}", l.body);
        assert_eq!(s.json(), l.json(), "{long} answers as {short}");
    }
    let r = http(srv.addr, "GET", "/api/v1/ready", &[], None).await.json();
    assert_eq!(r["ready"], true);
    assert!(!r.to_string().contains(dir.path().to_str().unwrap()), "no path in {r}");
    srv.stop().await;
}
