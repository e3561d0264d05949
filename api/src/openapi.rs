//! The API's OpenAPI 3.1 document, generated from the handlers, and the docs page rendered from
//! it.
//!
//! [`document`] collects every handler's `#[utoipa::path]` attribute (method, path, parameters,
//! body, responses with their error statuses, security) and the schemas of the bodies (the API's
//! own types, and `vigil-events` / `vigil-queries` types through their `openapi` feature). Two
//! modifiers finish it: the security schemes (`Authorization: Bearer KEY` and `X-API-Key`), and,
//! from [`crate::KEYED_ROUTES`] — the table the router's scope groups follow — each keyed
//! operation's scope (the `x-scope` extension and a sentence of its description) and its 401,
//! 403 and 429 responses (the authentication middleware's). [`docs_html`] walks the document's
//! paths into one self-contained HTML page (no script, no external stylesheet or font).
//!
//! Served open (no key): `GET /api/v1/openapi.json` ([`json`]) and `GET /api/v1/docs`
//! ([`docs`]); both are rendered once per process. State: none.

use std::fmt::Write as _;
use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, OpenApi as Document, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;
use crate::{Scope, KEYED_ROUTES};

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/api/v1/openapi.json";
/// Where the docs page is served.
pub const DOCS_PATH: &str = "/api/v1/docs";

/// The extension naming the scope a keyed operation needs.
pub const SCOPE_EXTENSION: &str = "x-scope";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vigil API",
        description = "Vigil's HTTP API: history reads, SQL and reports over the Parquet history, the human-decision loop on the planning ledger, ingest into the running pipeline, the golden-path demo, the model registry, health and metrics. Keyed operations take `Authorization: Bearer KEY` or `X-API-Key: KEY`; each needs one scope (`x-scope`), and an `admin` key may do everything. Every error has the body `{\"error\": {\"code\", \"message\", \"request_id\"}}`, and every response carries `X-Request-Id`. Times are RFC 3339 or epoch milliseconds between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z; a time outside that range is 400 `bad_parameter` naming the field."
    ),
    paths(
        crate::health,
        crate::health_v1,
        crate::ready,
        crate::ready_v1,
        crate::metrics,
        json,
        docs,
        crate::history,
        crate::read::sensors,
        crate::read::readings,
        crate::read::anomalies,
        crate::read::drift,
        crate::read::predictions,
        crate::read::schedule,
        crate::read::fleet,
        crate::read::pipeline,
        crate::read::query,
        crate::read::report,
        crate::planning::pending,
        crate::planning::audit,
        crate::planning::decide,
        crate::planning::complete,
        crate::ingest::readings,
        crate::golden::start,
        crate::golden::status,
        crate::models::list,
        crate::models::versions,
        crate::models::latest,
        crate::incidents::incidents,
        crate::incidents::incident,
        crate::incidents::acknowledge,
        crate::incidents::shelve,
        crate::incidents::unshelve,
    ),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes, &Scopes),
    tags(
        (name = "health", description = "Liveness, readiness and metrics (open)"),
        (name = "docs", description = "This document and the docs page (open)"),
        (name = "history", description = "Reads over the Parquet history: sensors, readings, events, fleet health, SQL and reports"),
        (name = "incidents", description = "The alarm list: incidents (an asset's related anomaly and drift events), acknowledged and shelved by people"),
        (name = "decisions", description = "The human-decision loop: pending requests, decisions, the audit log, completed maintenance"),
        (name = "ingest", description = "Readings into the running pipeline"),
        (name = "demo", description = "The golden-path demo"),
        (name = "models", description = "The model registry, and the model the pipeline runs"),
    )
)]
struct ApiDoc;

/// The security schemes the keyed operations refer to.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, api: &mut Document) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("`Authorization: Bearer KEY`")).build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description("X-API-Key", "`X-API-Key: KEY`"))),
        );
    }
}

/// The scope of each keyed operation, and the authentication middleware's responses.
struct Scopes;

/// The responses every keyed operation may get from the authentication middleware.
const AUTH_RESPONSES: [(&str, &str, &str); 3] = [
    ("401", "Unauthorized", "No API key, or an unknown one (`unauthorized`)"),
    ("403", "Forbidden", "The key lacks the operation's scope (`forbidden`)"),
    (
        "429",
        "RateLimited",
        "The key's rate limit is spent (`rate_limited`), or this client made too many failed authentications (`auth_throttled`, `[api] auth_failure_burst`); `Retry-After` says how long to wait",
    ),
];

impl Modify for Scopes {
    fn modify(&self, api: &mut Document) {
        let components = api.components.get_or_insert_with(Default::default);
        for (_, name, description) in AUTH_RESPONSES {
            let mut response = ResponseBuilder::new()
                .description(description)
                .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build());
            if name == "RateLimited" {
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)))
                        .description(Some("Seconds to wait"))
                        .build(),
                );
            }
            components.responses.insert(name.to_string(), RefOr::T(response.build()));
        }
        for (path, item) in api.paths.paths.iter_mut() {
            for (method, op) in operations_mut(item) {
                let Some(scope) = scope_of(method, path) else { continue };
                op.extensions.get_or_insert_with(Default::default).insert(SCOPE_EXTENSION.into(), Value::from(scope.as_str()));
                let sentence = format!("Needs the `{}` scope (an `admin` key may do everything).", scope.as_str());
                op.description = Some(match op.description.take() {
                    Some(d) if !d.is_empty() => format!("{d} {sentence}"),
                    _ => sentence,
                });
                for (status, name, description) in AUTH_RESPONSES {
                    match op.responses.responses.get_mut(status) {
                        // The handler has its own answer with this status (403 `query_refused`).
                        Some(RefOr::T(own)) => own.description = format!("{}; or: {description}", own.description),
                        _ => {
                            op.responses.responses.insert(status.into(), RefOr::Ref(Ref::from_response_name(name)));
                        }
                    }
                }
            }
        }
    }
}

/// The scope a keyed route needs, from [`KEYED_ROUTES`]; `None` for an open one.
pub fn scope_of(method: &str, path: &str) -> Option<Scope> {
    KEYED_ROUTES.iter().find(|(m, p, _)| m.eq_ignore_ascii_case(method) && *p == path).map(|r| r.2)
}

/// A path item's operations, with their methods in capitals.
pub fn operations(item: &PathItem) -> Vec<(&'static str, &Operation)> {
    [
        ("GET", &item.get),
        ("PUT", &item.put),
        ("POST", &item.post),
        ("DELETE", &item.delete),
        ("OPTIONS", &item.options),
        ("HEAD", &item.head),
        ("PATCH", &item.patch),
        ("TRACE", &item.trace),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.as_ref().map(|op| (m, op)))
    .collect()
}

fn operations_mut(item: &mut PathItem) -> Vec<(&'static str, &mut Operation)> {
    [
        ("GET", &mut item.get),
        ("PUT", &mut item.put),
        ("POST", &mut item.post),
        ("DELETE", &mut item.delete),
        ("OPTIONS", &mut item.options),
        ("HEAD", &mut item.head),
        ("PATCH", &mut item.patch),
        ("TRACE", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.as_mut().map(|op| (m, op)))
    .collect()
}

/// The OpenAPI document of every route [`crate::app`] serves.
pub fn document() -> Document {
    ApiDoc::openapi()
}

/// A time: RFC 3339 text or epoch milliseconds.
// Only the document uses it: the bodies keep a JSON value, which the handlers parse.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum TimeValue {
    /// RFC 3339, e.g. `2026-01-01T10:30:00Z`, from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z.
    Text(String),
    /// Epoch milliseconds, from 0 to 253402300799999 (9999-12-31T23:59:59.999Z).
    Millis(i64),
}

/// The document as JSON and the docs page, rendered once.
fn rendered() -> &'static (String, String) {
    static RENDERED: OnceLock<(String, String)> = OnceLock::new();
    RENDERED.get_or_init(|| {
        let api = document();
        let json = serde_json::to_string(&api).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        (json, docs_html(&api))
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "docs",
    operation_id = "openapi_document",
    summary = "This document: the OpenAPI 3.1 description of every route",
    description = "Generated from the handlers; no key needed.",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
pub(crate) async fn json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], rendered().0.as_str()).into_response()
}

#[utoipa::path(
    get,
    path = "/api/v1/docs",
    tag = "docs",
    operation_id = "docs_page",
    summary = "The API's documentation as one self-contained HTML page",
    description = "Every operation of the OpenAPI document with its scope, parameters, body and responses; no key needed.",
    responses((status = 200, description = "The page", content_type = "text/html", body = String))
)]
pub(crate) async fn docs() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], rendered().1.as_str()).into_response()
}

/// HTML-escapes text.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes text, with its `code spans` as `<code>`.
fn prose(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in s.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{}</code>", esc(part));
        } else {
            out.push_str(&esc(part));
        }
    }
    out
}

/// A short name of a schema: its component, its type, or its alternatives.
fn type_label(v: &Value) -> String {
    if let Some(r) = v.get("$ref").and_then(Value::as_str) {
        return r.rsplit('/').next().unwrap_or(r).to_string();
    }
    for (key, sep) in [("oneOf", " | "), ("anyOf", " | "), ("allOf", " & ")] {
        if let Some(items) = v.get(key).and_then(Value::as_array) {
            return items.iter().map(type_label).collect::<Vec<_>>().join(sep);
        }
    }
    if let Some(values) = v.get("enum").and_then(Value::as_array) {
        return values.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" | ");
    }
    let types: Vec<&str> = match v.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if types.is_empty() {
        return "any".into();
    }
    types
        .into_iter()
        .map(|t| match (t, v.get("items")) {
            ("array", Some(items)) => format!("array of {}", type_label(items)),
            ("object", _) if v.get("additionalProperties").is_some_and(Value::is_object) => {
                format!("map of {}", type_label(&v["additionalProperties"]))
            }
            (t, _) => t.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

fn schema_label<T: serde::Serialize>(schema: Option<&T>) -> String {
    schema.and_then(|s| serde_json::to_value(s).ok()).map_or_else(|| "any".into(), |v| type_label(&v))
}

const STYLE: &str = "
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:70em;padding:1em 1.5em 3em;color:#1d2330;background:#fbfbfd}
h1{margin:.2em 0}h2{font-size:1.15em;margin:0 0 .3em}h3{font-size:.95em;margin:.9em 0 .3em;color:#485063}
code{font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#eef0f5;padding:0 .25em;border-radius:3px}
table{border-collapse:collapse;width:100%;margin:.3em 0}th,td{text-align:left;vertical-align:top;padding:.3em .5em;border-bottom:1px solid #e1e4eb}
th{font-weight:600;color:#485063;font-size:.9em}
section{background:#fff;border:1px solid #e1e4eb;border-radius:6px;padding:1em 1.2em;margin:1.2em 0}
.m{display:inline-block;min-width:4.2em;text-align:center;font:600 12px ui-monospace,monospace;color:#fff;border-radius:3px;padding:.15em .3em;margin-right:.4em}
.GET{background:#2b7bb9}.POST{background:#2f9e5b}.PUT{background:#b9822b}.DELETE{background:#b93a2b}.PATCH{background:#7b4bb9}
.scope{white-space:nowrap;font:600 12px ui-monospace,monospace;border-radius:3px;padding:.1em .4em;background:#fdf0d5;color:#7a4b00}
.open{background:#e3f4e8;color:#1c6b38}.muted{color:#6b7385}a{color:#2b5fb9}
";

/// Renders the docs page from the document: an index of every operation, then each one with its
/// summary, description, scope, parameters, request body and responses.
pub fn docs_html(api: &Document) -> String {
    let mut ops: Vec<(&str, &str, &Operation)> = Vec::new();
    for (path, item) in &api.paths.paths {
        for (method, op) in operations(item) {
            ops.push((method, path.as_str(), op));
        }
    }
    let scope_html = |op: &Operation| match op.extensions.as_ref().and_then(|e| e.get(SCOPE_EXTENSION)).and_then(Value::as_str) {
        Some(s) => format!("<span class=\"scope\">{}</span>", esc(s)),
        None => "<span class=\"scope open\">none (open)</span>".to_string(),
    };
    let anchor = |method: &str, path: &str, op: &Operation| {
        op.operation_id.clone().unwrap_or_else(|| {
            format!("{method}{path}").chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect()
        })
    };
    let title = esc(&api.info.title);
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{title} <small class=\"muted\">{}</small></h1>\n",
        esc(&api.info.version)
    );
    if let Some(d) = &api.info.description {
        let _ = writeln!(h, "<p>{}</p>", prose(d));
    }
    let _ = writeln!(
        h,
        "<p>The machine-readable OpenAPI 3.1 document: <a href=\"{DOCUMENT_PATH}\">{DOCUMENT_PATH}</a>. {} operations.</p>",
        ops.len()
    );
    h.push_str("<table>\n<tr><th>Method</th><th>Path</th><th>Summary</th><th>Scope</th></tr>\n");
    for (method, path, op) in &ops {
        let _ = writeln!(
            h,
            "<tr><td><span class=\"m {method}\">{method}</span></td><td><a href=\"#{}\"><code>{}</code></a></td><td>{}</td><td>{}</td></tr>",
            esc(&anchor(method, path, op)),
            esc(path),
            prose(op.summary.as_deref().unwrap_or("")),
            scope_html(op)
        );
    }
    h.push_str("</table>\n");
    let responses = api.components.as_ref().map(|c| &c.responses);
    for (method, path, op) in &ops {
        let _ = writeln!(
            h,
            "<section id=\"{}\">\n<h2><span class=\"m {method}\">{method}</span><code>{}</code></h2>",
            esc(&anchor(method, path, op)),
            esc(path)
        );
        if let Some(s) = &op.summary {
            let _ = writeln!(h, "<p><strong>{}</strong></p>", prose(s));
        }
        if let Some(d) = &op.description {
            let _ = writeln!(h, "<p>{}</p>", prose(d));
        }
        let _ = write!(h, "<p>Scope: {}", scope_html(op));
        if let Some(id) = &op.operation_id {
            let _ = write!(h, " &middot; operation <code>{}</code>", esc(id));
        }
        if let Some(tags) = &op.tags {
            let _ = write!(h, " &middot; tag {}", esc(&tags.join(", ")));
        }
        h.push_str("</p>\n");
        let params = op.parameters.as_deref().unwrap_or(&[]);
        if !params.is_empty() {
            h.push_str("<h3>Parameters</h3>\n<table>\n<tr><th>Name</th><th>In</th><th>Type</th><th>Required</th><th>Description</th></tr>\n");
            for p in params {
                let within = serde_json::to_value(&p.parameter_in).ok().and_then(|v| v.as_str().map(str::to_string));
                let required = matches!(p.required, utoipa::openapi::Required::True);
                let _ = writeln!(
                    h,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&p.name),
                    esc(within.as_deref().unwrap_or("")),
                    esc(&schema_label(p.schema.as_ref())),
                    if required { "yes" } else { "no" },
                    prose(p.description.as_deref().unwrap_or(""))
                );
            }
            h.push_str("</table>\n");
        }
        if let Some(body) = &op.request_body {
            h.push_str("<h3>Request body</h3>\n<table>\n<tr><th>Content type</th><th>Schema</th></tr>\n");
            for (ct, content) in &body.content {
                let _ = writeln!(
                    h,
                    "<tr><td><code>{}</code></td><td>{}</td></tr>",
                    esc(ct),
                    esc(&schema_label(content.schema.as_ref()))
                );
            }
            h.push_str("</table>\n");
            if let Some(d) = &body.description {
                let _ = writeln!(h, "<p class=\"muted\">{}</p>", prose(d));
            }
        }
        h.push_str("<h3>Responses</h3>\n<table>\n<tr><th>Status</th><th>Description</th><th>Body</th></tr>\n");
        for (status, response) in &op.responses.responses {
            let response = match response {
                RefOr::T(r) => Some(r),
                RefOr::Ref(r) => responses
                    .and_then(|all| all.get(r.ref_location.rsplit('/').next().unwrap_or("")))
                    .and_then(|r| if let RefOr::T(r) = r { Some(r) } else { None }),
            };
            let Some(r) = response else { continue };
            let body = r
                .content
                .iter()
                .map(|(ct, c)| format!("<code>{}</code> {}", esc(ct), esc(&schema_label(c.schema.as_ref()))))
                .collect::<Vec<_>>()
                .join("<br>");
            let _ = writeln!(h, "<tr><td>{}</td><td>{}</td><td>{body}</td></tr>", esc(status), prose(&r.description));
        }
        h.push_str("</table>\n</section>\n");
    }
    h.push_str("</body>\n</html>\n");
    h
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn keyed_operations_are_the_scope_table() {
        let api = document();
        let mut keyed = HashSet::new();
        let mut ids = HashSet::new();
        for (path, item) in &api.paths.paths {
            for (method, op) in operations(item) {
                assert!(ids.insert(op.operation_id.clone().expect("an operation id")), "operation ids are unique");
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let scope = op.extensions.as_ref().and_then(|e| e.get(SCOPE_EXTENSION));
                assert_eq!(secured, scope_of(method, path).is_some(), "{method} {path}: security and the scope table disagree");
                assert_eq!(secured, scope.is_some(), "{method} {path}");
                if secured {
                    keyed.insert((method, path.clone()));
                    assert!(op.responses.responses.contains_key("401") && op.responses.responses.contains_key("429"));
                }
            }
        }
        for (m, p, _) in KEYED_ROUTES {
            assert!(keyed.contains(&(*m, p.to_string())), "{m} {p} is in KEYED_ROUTES but not in the document");
        }
    }

    #[test]
    fn the_page_escapes_and_marks_code() {
        assert_eq!(prose("a `<b>` & c"), "a <code>&lt;b&gt;</code> &amp; c");
        assert_eq!(
            type_label(&serde_json::json!({"type": ["array", "null"], "items": {"$ref": "#/components/schemas/X"}})),
            "array of X | null"
        );
    }
}
