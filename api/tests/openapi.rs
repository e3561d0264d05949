//! The OpenAPI document and the docs page over a real socket, on the fixture of `http.rs`.
//!
//! The document is served without a key; it parses as utoipa's model and as `oas3`'s (an
//! independent OpenAPI 3.1 parser), every `$ref` resolves, and every operation has an
//! operationId and responses. It covers exactly the routes the server serves: each route of
//! the router (written out below) is in it, and each documented operation, requested on the
//! live server, reaches a route (no 404 route miss, no 405). Keyed operations declare security
//! and an `x-scope` that the router enforces (checked with one-scope keys); open ones declare
//! none. The docs page names every operation and loads nothing from elsewhere.

use std::collections::{BTreeSet, HashSet};

mod common;

use common::{fixture, http, Reply, Server, JSON};
use vigil_api::{ApiConfig, KeyConfig, Scope};

/// Every route the router serves, with the scope it needs (`None`: open). Written out here, not
/// taken from the crate, so that the document is checked against an independent list.
const ROUTES: &[(&str, &str, Option<&str>)] = &[
    ("GET", "/health", None),
    ("GET", "/api/v1/health", None),
    ("GET", "/ready", None),
    ("GET", "/api/v1/ready", None),
    ("GET", "/metrics", None),
    ("GET", "/api/v1/openapi.json", None),
    ("GET", "/api/v1/docs", None),
    ("GET", "/api/v1/history", Some("read")),
    ("GET", "/api/v1/sensors", Some("read")),
    ("GET", "/api/v1/readings", Some("read")),
    ("GET", "/api/v1/anomalies", Some("read")),
    ("GET", "/api/v1/drift", Some("read")),
    ("GET", "/api/v1/predictions", Some("read")),
    ("GET", "/api/v1/schedule", Some("read")),
    ("GET", "/api/v1/fleet", Some("read")),
    ("GET", "/api/v1/pipeline", Some("read")),
    ("GET", "/api/v1/decisions/pending", Some("read")),
    ("GET", "/api/v1/decisions", Some("read")),
    ("POST", "/api/v1/query", Some("read")),
    ("POST", "/api/v1/reports", Some("read")),
    ("GET", "/api/v1/demo/golden-path/{correlation_id}", Some("read")),
    ("GET", "/api/v1/models", Some("read")),
    ("GET", "/api/v1/models/{name}/versions", Some("read")),
    ("GET", "/api/v1/models/{name}/latest", Some("read")),
    ("GET", "/api/v1/incidents", Some("read")),
    ("GET", "/api/v1/incidents/{incident_id}", Some("read")),
    ("POST", "/api/v1/decisions/{request_id}", Some("decide")),
    ("POST", "/api/v1/incidents/{incident_id}/acknowledge", Some("decide")),
    ("POST", "/api/v1/incidents/{incident_id}/shelve", Some("decide")),
    ("POST", "/api/v1/incidents/{incident_id}/unshelve", Some("decide")),
    ("POST", "/api/v1/maintenance/{proposal_id}/complete", Some("decide")),
    ("POST", "/api/v1/readings", Some("ingest")),
    ("POST", "/api/v1/demo/golden-path", Some("admin")),
];

/// One key per scope, named after it, secret `<scope>-secret`.
fn config() -> ApiConfig {
    let key =
        |scope: Scope| KeyConfig { name: scope.as_str().into(), key: format!("{}-secret", scope.as_str()), scopes: vec![scope] };
    ApiConfig {
        keys: vec![key(Scope::Read), key(Scope::Decide), key(Scope::Ingest), key(Scope::Admin)],
        rate_per_second: 10_000.0,
        rate_burst: 10_000,
        body_limit_bytes: 4096,
        ..ApiConfig::default()
    }
}

/// A documented path with its `{param}`s filled with a dummy value.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("x-dummy");
            }
            '}' => in_param = false,
            c if !in_param => out.push(c),
            _ => {}
        }
    }
    out
}

/// The document's operations as (METHOD, path, operation).
fn operations(doc: &serde_json::Value) -> Vec<(String, String, serde_json::Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            if ["get", "put", "post", "delete", "options", "head", "patch", "trace"].contains(&method.as_str()) {
                out.push((method.to_uppercase(), path.clone(), op.clone()));
            }
        }
    }
    out
}

/// Every `$ref` in a JSON value.
fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", serde_json::Value::String(r)) => out.push(r.clone()),
                    _ => refs(x, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

async fn fetch_document(addr: std::net::SocketAddr) -> Reply {
    let r = http(addr, "GET", "/api/v1/openapi.json", &[], None).await;
    assert_eq!(r.status, 200, "the document needs no key: {}", r.body);
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("application/json")));
    r
}

#[tokio::test]
async fn the_document_is_served_open_and_parses_as_two_openapi_models() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let srv = Server::start(dir.path(), config()).await;
    let r = fetch_document(srv.addr).await;

    // utoipa's own model.
    let parsed: utoipa::openapi::OpenApi = serde_json::from_str(&r.body).expect("utoipa's model");
    assert_eq!(parsed.paths.paths.len(), ROUTES.iter().map(|r| r.1).collect::<HashSet<_>>().len());
    assert_eq!(parsed.info.title, "Vigil API");

    // oas3, an independent 3.1 parser: version, operations, and every reference resolved.
    let spec = oas3::from_json(&r.body).expect("oas3's model");
    assert!(spec.openapi.starts_with("3.1"), "{}", spec.openapi);
    spec.validate_version().expect("a 3.1 version");
    let mut ids = HashSet::new();
    let mut n = 0;
    for (path, method, op) in spec.operations() {
        n += 1;
        let what = format!("{method} {path}");
        let id = op.operation_id.clone().unwrap_or_else(|| panic!("{what}: no operationId"));
        assert!(ids.insert(id), "{what}: operationId repeated");
        assert!(op.summary.as_deref().is_some_and(|s| !s.is_empty()), "{what}: no summary");
        assert!(op.description.as_deref().is_some_and(|s| !s.is_empty()), "{what}: no description");
        assert!(!op.tags.is_empty(), "{what}: no tag");
        let declared = op.responses.as_ref().map_or(0, |r| r.len());
        assert!(declared > 0, "{what}: no responses");
        let resolved = op.responses(&spec);
        assert_eq!(resolved.len(), declared, "{what}: a response reference does not resolve");
        assert!(resolved.keys().any(|s| s.starts_with('2')), "{what}: no success response");
        op.parameters(&spec).unwrap_or_else(|e| panic!("{what}: parameters: {e}"));
        op.request_body(&spec).unwrap_or_else(|e| panic!("{what}: request body: {e}"));
        // Path parameters are declared.
        let declared_params: Vec<String> = op.parameters(&spec).unwrap().into_iter().map(|p| p.name).collect();
        for seg in path.split('/').filter(|s| s.starts_with('{')) {
            let name = seg.trim_matches(|c| c == '{' || c == '}');
            assert!(declared_params.iter().any(|p| p == name), "{what}: path parameter {name} undeclared");
        }
        // Every error response has the error shape (the one exception: /ready's 503 is its body).
        for (status, resp) in &resolved {
            if status.starts_with('4') || status.starts_with('5') {
                let media = resp.content.get("application/json").unwrap_or_else(|| panic!("{what} {status}: no JSON body"));
                let schema = serde_json::to_value(&media.schema).unwrap();
                let expected = if path == "/ready" || path == "/api/v1/ready" {
                    "#/components/schemas/Ready"
                } else {
                    "#/components/schemas/ErrorBody"
                };
                assert_eq!(schema["$ref"], expected, "{what} {status}");
            }
        }
    }
    assert_eq!(n, ROUTES.len());
    // The error body's shape.
    let doc = r.json();
    let err = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(err["required"], serde_json::json!(["error"]), "{err}");
    let detail = &doc["components"]["schemas"]["ErrorDetail"];
    let mut fields: Vec<&str> = detail["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["code", "message", "request_id"]);

    // Every $ref, anywhere, points at a component that exists.
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in &all {
        let rest = r.strip_prefix("#/components/").unwrap_or_else(|| panic!("{r}: not a component reference"));
        let (kind, name) = rest.split_once('/').unwrap();
        assert!(doc["components"][kind][name].is_object(), "{r} does not resolve");
    }
    // The types of other crates are in it.
    for name in
        ["HumanDecisionSubmitted", "MaintenanceScheduled", "MaintenanceCompleted", "Decision", "FleetHealth", "ReportFormat"]
    {
        assert!(doc["components"]["schemas"][name].is_object(), "no schema {name}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn the_document_covers_exactly_the_routes_served() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let srv = Server::start(dir.path(), config()).await;
    let doc = fetch_document(srv.addr).await.json();
    let documented: BTreeSet<(String, String)> = operations(&doc).into_iter().map(|(m, p, _)| (m, p)).collect();
    let routes: BTreeSet<(String, String)> = ROUTES.iter().map(|(m, p, _)| (m.to_string(), p.to_string())).collect();
    let missing: Vec<_> = routes.difference(&documented).collect();
    assert!(missing.is_empty(), "routes the document lacks: {missing:?}");
    let extra: Vec<_> = documented.difference(&routes).collect();
    assert!(extra.is_empty(), "operations not in the route list: {extra:?}");

    // The control: a route miss is a 404 "no such route".
    let miss = http(srv.addr, "GET", "/api/v1/no-such-thing", &[], None).await;
    assert_eq!((miss.status, miss.code().as_deref()), (404, Some("not_found")));
    // Every documented operation reaches a route of the live server: without a key the keyed
    // ones are refused by the authentication (which runs only on a matched route), the open
    // ones answer; with the admin key none is a route miss or a wrong method.
    for (method, path, op) in operations(&doc) {
        let url = concrete(&path);
        let keyed = op.get("security").is_some();
        let r = http(srv.addr, &method, &url, &[], None).await;
        if keyed {
            assert_eq!((r.status, r.code().as_deref()), (401, Some("unauthorized")), "{method} {url}: {}", r.body);
        } else {
            assert_eq!(r.status, 200, "{method} {url}: {}", r.body);
        }
        let body = (method == "POST").then_some("{}");
        let r = http(srv.addr, &method, &url, &[JSON, ("Authorization", "Bearer admin-secret")], body).await;
        assert_ne!(r.status, 405, "{method} {url}: {}", r.body);
        assert!(!(r.status == 404 && r.body.contains("no such route")), "{method} {url} is not served: {}", r.body);
    }
    srv.stop().await;
}

#[tokio::test]
async fn keyed_operations_declare_security_and_the_scope_the_router_enforces() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let srv = Server::start(dir.path(), config()).await;
    let doc = fetch_document(srv.addr).await.json();
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!((schemes["bearer"]["type"].as_str(), schemes["bearer"]["scheme"].as_str()), (Some("http"), Some("bearer")));
    assert_eq!(
        (schemes["api_key"]["type"].as_str(), schemes["api_key"]["in"].as_str(), schemes["api_key"]["name"].as_str()),
        (Some("apiKey"), Some("header"), Some("X-API-Key"))
    );
    assert!(doc.get("security").is_none(), "no document-wide security: the open operations have none");
    let scopes = ["read", "decide", "ingest", "admin"];
    for (method, path, op) in operations(&doc) {
        let what = format!("{method} {path}");
        let expected = ROUTES.iter().find(|r| r.0 == method && r.1 == path).unwrap().2;
        let scope = op["x-scope"].as_str();
        assert_eq!(scope, expected, "{what}: x-scope");
        match expected {
            None => {
                assert!(op.get("security").is_none(), "{what}: an open operation declares security");
                assert!(op["responses"].get("401").is_none(), "{what}");
            }
            Some(s) => {
                let alternatives: Vec<String> = op["security"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{what}: no security"))
                    .iter()
                    .flat_map(|req| req.as_object().unwrap().keys().cloned().collect::<Vec<_>>())
                    .collect();
                assert_eq!(alternatives, ["bearer", "api_key"], "{what}");
                for status in ["401", "403", "429"] {
                    assert!(op["responses"].get(status).is_some(), "{what}: no {status}");
                }
                assert!(op["description"].as_str().unwrap().contains(&format!("`{s}` scope")), "{what}: {}", op["description"]);
                // The router enforces the documented scope: a key with only that scope passes
                // the check, a key with another (admin aside) is refused.
                let url = concrete(&path);
                let body = (method == "POST").then_some("{}");
                for key in scopes {
                    let auth = format!("Bearer {key}-secret");
                    let r = http(srv.addr, &method, &url, &[JSON, ("Authorization", &auth)], body).await;
                    let refused = r.status == 403 && r.code().as_deref() == Some("forbidden");
                    let allowed = key == s || key == "admin";
                    assert_eq!(refused, !allowed, "{what} with a {key} key: {} {}", r.status, r.body);
                }
            }
        }
    }
    srv.stop().await;
}

#[tokio::test]
async fn the_docs_page_names_every_operation_and_loads_nothing_from_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let srv = Server::start(dir.path(), config()).await;
    let doc = fetch_document(srv.addr).await.json();
    let r = http(srv.addr, "GET", "/api/v1/docs", &[], None).await;
    assert_eq!(r.status, 200, "the docs page needs no key: {}", r.body);
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/html")));
    let page = &r.body;
    assert!(page.starts_with("<!doctype html>"));
    for (method, path, _) in ROUTES {
        assert!(page.contains(&format!("<code>{path}</code>")), "the page does not name {method} {path}");
    }
    for (method, _, op) in operations(&doc) {
        let id = op["operationId"].as_str().unwrap();
        let section = page.split(&format!("<section id=\"{id}\">")).nth(1).unwrap_or_else(|| panic!("no section for {id}"));
        let section = section.split("</section>").next().unwrap();
        assert!(section.contains(&format!(">{method}</span>")), "{id}");
        let scope = op["x-scope"].as_str().unwrap_or("none (open)");
        assert!(
            section
                .contains(&format!("class=\"scope{}\">{scope}</span>", if op.get("x-scope").is_some() { "" } else { " open" })),
            "{id}: scope"
        );
        for p in op["parameters"].as_array().into_iter().flatten() {
            assert!(section.contains(&format!("<code>{}</code>", p["name"].as_str().unwrap())), "{id}: parameter {p}");
        }
        assert!(section.contains("<h3>Responses</h3>"), "{id}");
    }
    assert!(page.contains("href=\"/api/v1/openapi.json\""), "no link to the document");
    let lower = page.to_ascii_lowercase();
    for banned in ["<script", "http://", "https://", "<link", "@import", "url(", "<iframe", "<img"] {
        assert!(!lower.contains(banned), "the page contains {banned:?}");
    }
    srv.stop().await;
}
