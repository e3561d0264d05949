//! The web console: server-rendered HTML pages for planners and engineers, served at `/`.
//!
//! - **Sign-in** (`/login`) takes an API key; the session is an HttpOnly, SameSite=Strict cookie
//!   ([`session`]), and the key's scopes decide what the person may do: `read` sees every page,
//!   `decide` approves, rejects and defers, `admin` also runs the golden path and the simulator.
//!   Every form carries the session's CSRF token; a POST without it is refused (403).
//! - **Pages** ([`pages`], [`forms`]): Fleet (live by server-sent events), Asset (charts drawn
//!   on the server as SVG, [`chart`]), Decisions (pending queue with evidence, decision forms,
//!   audit log), Anomalies & drift, Golden path, Pipeline, Models, Reports, SQL, Simulator.
//! - The pages read through the same code as the REST API: `vigil-queries` for the history,
//!   `planning` for decisions, `golden` and the [`crate::Pipeline`] for the rest. No second path
//!   to the data.
//! - Assets (one stylesheet, one small script that only enhances: live updates and nothing a
//!   page needs to work) are compiled into the binary. Pages send a strict
//!   Content-Security-Policy (no inline script or style).
//!
//! Input: HTTP requests from browsers. Output: HTML (and CSV/JSON downloads, an event stream).
//! State: [`ConsoleState`] in [`crate::AppState`]: the sessions, and the fleet table as last
//! rendered for the live stream (one render per change, however many browsers watch).

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{from_fn, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::auth::Scope;
use crate::error::ApiError;
use crate::AppState;

mod chart;
mod forms;
mod pages;
pub mod session;

use session::Session;
pub use session::Sessions;

/// What the console keeps between requests.
#[derive(Default)]
pub struct ConsoleState {
    /// Signed-in sessions.
    pub sessions: Sessions,
    /// The fleet table's HTML for the live stream, with the version it was rendered at.
    fleet: tokio::sync::Mutex<Option<(String, std::sync::Arc<String>)>>,
    /// Set when the server shuts down: live streams end, so that graceful shutdown does not
    /// wait for open browser tabs.
    closing: std::sync::atomic::AtomicBool,
}

impl ConsoleState {
    /// Ends every live stream (call when the server starts shutting down).
    pub fn close(&self) {
        self.closing.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn is_closing(&self) -> bool {
        self.closing.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The stylesheet.
const CSS: &str = include_str!("assets/console.css");
/// The script (progressive enhancement only).
const JS: &str = include_str!("assets/console.js");

/// The pages of the navigation bar: (path, label).
const NAV: &[(&str, &str)] = &[
    ("/incidents", "Incidents"),
    ("/fleet", "Fleet"),
    ("/decisions", "Decisions"),
    ("/anomalies", "Anomalies & drift"),
    ("/golden", "Golden path"),
    ("/pipeline", "Pipeline"),
    ("/models", "Models"),
    ("/reports", "Reports"),
    ("/sql", "SQL"),
    ("/simulator", "Simulator"),
];

/// The console's routes (merged into [`crate::app`]).
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(forms::login_page).post(forms::login))
        .route("/logout", post(forms::logout))
        .route("/fleet", get(pages::fleet))
        .route("/fleet/live", get(pages::fleet_live))
        .route("/assets/{asset_id}", get(pages::asset))
        .route("/decisions", get(pages::decisions))
        .route("/decisions/{request_id}", post(forms::decide))
        .route("/anomalies", get(pages::anomalies))
        .route("/incidents", get(pages::incidents))
        .route("/incidents/{incident_id}", get(pages::incident))
        .route("/incidents/{incident_id}/action", post(forms::incident_action))
        .route("/golden", get(pages::golden).post(forms::golden_start))
        .route("/golden/{id}", get(pages::golden_run))
        .route("/pipeline", get(pages::pipeline))
        .route("/models", get(pages::models))
        .route("/reports", get(pages::reports))
        .route("/reports/view", get(pages::report_view))
        .route("/reports/download", get(pages::report_download))
        .route("/sql", get(pages::sql_page).post(forms::sql_run))
        .route("/sql/csv", post(forms::sql_csv))
        .route("/simulator", get(pages::simulator).post(forms::simulator_action))
        .route("/static/console.css", get(|| async { asset("text/css; charset=utf-8", CSS) }))
        .route("/static/console.js", get(|| async { asset("text/javascript; charset=utf-8", JS) }))
        .layer(from_fn(security_headers))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}

/// Content-Security-Policy of the pages: nothing inline, nothing from elsewhere. The report
/// view (a self-contained HTML document with its own `<style>`) may use inline style.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'";
const CSP_REPORT: &str = crate::REPORT_CSP;

async fn security_headers(req: Request, next: Next) -> Response {
    let report = req.uri().path() == "/reports/view";
    // A form posted from another site (sign-in included) is refused outright, whatever its
    // cookies or tokens: browsers say so in `Sec-Fetch-Site`.
    let cross_site = req.method() == axum::http::Method::POST
        && req.headers().get("sec-fetch-site").is_some_and(|v| v.as_bytes() == b"cross-site");
    let mut resp = if cross_site {
        let e = ApiError::new(StatusCode::FORBIDDEN, "cross_site", "a form from another site cannot act on Vigil");
        Failure { frame: None, error: Box::new(e) }.into_response()
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(if report { CSP_REPORT } else { CSP }));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !report {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// A signed-in request: its session token and session. Extracting it applies the key's rate
/// limit; without a session a GET is sent to the sign-in page, anything else gets a 401 page.
pub(crate) struct Signed {
    token: String,
    session: Session,
}

impl Signed {
    fn name(&self) -> &str {
        &self.session.caller.name
    }
    fn may(&self, scope: Scope) -> bool {
        self.session.caller.may(scope)
    }
    /// 403 unless the key has `scope`.
    fn require(&self, scope: Scope, to: &str) -> Result<(), Failure> {
        if self.may(scope) {
            return Ok(());
        }
        Err(self.fail(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("your key ({}) may not {to}: that needs the {} scope", self.scopes(), scope.as_str()),
        )))
    }
    /// 403 unless `presented` is the session's CSRF token.
    fn check_csrf(&self, presented: &str) -> Result<(), Failure> {
        if self.session.csrf_ok(presented) {
            return Ok(());
        }
        Err(self.fail(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "this form is out of date or did not come from the console (missing or wrong CSRF token): reload the page and try again",
        )))
    }
    fn scopes(&self) -> String {
        self.session.caller.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
    }
    /// An error shown inside the page frame.
    fn fail(&self, e: ApiError) -> Failure {
        Failure { frame: Some(Box::new(Frame::of(self))), error: Box::new(e) }
    }
    /// A page in the frame.
    fn page(&self, active: &str, title: &str, content: Markup) -> Response {
        page(Some(&Frame::of(self)), active, title, content, StatusCode::OK)
    }
}

impl Signed {
    /// The open session of the request's cookie, if any (its use extends it).
    fn of(parts: &Parts, state: &AppState) -> Option<Signed> {
        let token =
            parts.headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(session::from_cookie_header)?;
        state.console.sessions.get(token).map(|session| Signed { token: token.to_string(), session })
    }
}

/// For pages that serve both the signed-in and the signed-out (`/`, `/login`).
impl axum::extract::OptionalFromRequestParts<AppState> for Signed {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Self>, Self::Rejection> {
        Ok(Signed::of(parts, state))
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(Signed { token, session }) = Signed::of(parts, state) else {
            if parts.method == axum::http::Method::GET && !parts.uri.path().ends_with("/live") {
                let next = parts.uri.path_and_query().map_or("/fleet", |p| p.as_str());
                return Err(Redirect::to(&format!("/login?next={}", url_encode(next))).into_response());
            }
            let e = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "you are not signed in (or your session has ended)");
            return Err(Failure { frame: None, error: Box::new(e) }.into_response());
        };
        if let Err(wait) = state.keys.take(&session.caller.name) {
            state.metrics.rate_limited.inc();
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests for key {:?}: try again in {wait} s", session.caller.name),
            );
            e.retry_after = Some(wait);
            let signed = Signed { token, session };
            return Err(signed.fail(e).into_response());
        }
        tracing::Span::current().record("key", session.caller.name.as_str());
        Ok(Signed { token, session })
    }
}

/// What the frame of a page shows of the session: who, and the sign-out form.
#[derive(Clone)]
struct Frame {
    name: String,
    scopes: String,
    csrf: String,
}

impl Frame {
    fn of(s: &Signed) -> Frame {
        Frame { name: s.name().to_string(), scopes: s.scopes(), csrf: s.session.csrf.clone() }
    }
}

/// An error as a page: the message in the frame (or a bare page when not signed in), the API's
/// status, never a stack trace.
pub(crate) struct Failure {
    frame: Option<Box<Frame>>,
    error: Box<ApiError>,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let e = &self.error;
        let title = match e.status {
            StatusCode::UNAUTHORIZED => "Sign in needed",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::TOO_MANY_REQUESTS => "Too many requests",
            s if s.is_server_error() => "Something went wrong",
            _ => "That did not work",
        };
        let content = html! {
            div.error role="alert" {
                p { strong { (e.message) } }
                p.muted { "Error " (e.status.as_u16()) " · " code { (e.code) } " · request " code { (crate::error::current_request_id()) } }
            }
            @if self.frame.is_none() { p { a href="/login" { "Sign in" } } }
        };
        let mut resp = page(self.frame.as_deref(), "", title, content, e.status);
        if let Some(s) = e.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// A whole page: head, skip link, navigation bar, the content under an `h1`.
fn page(frame: Option<&Frame>, active: &str, title: &str, content: Markup, status: StatusCode) -> Response {
    let body = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Vigil" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/static/console.css";
                script src="/static/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/fleet" { "Vigil" }
                    @if let Some(f) = frame {
                        nav aria-label="Main" {
                            ul {
                                @for (href, label) in NAV {
                                    li { a href=(href) aria-current=[(*href == active).then_some("page")] { (label) } }
                                }
                            }
                        }
                        form.who method="post" action="/logout" {
                            span { "Signed in as " strong { (f.name) } " (" (f.scopes) ")" }
                            input type="hidden" name="csrf" value=(f.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (content)
                }
            }
        }
    };
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body.into_string()).into_response()
}

/// `%`-encodes everything but unreserved characters (for `next=` and query links).
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `%`-encodes a path segment (`/` too).
fn url_segment(s: &str) -> String {
    url_encode(s).replace('/', "%2F")
}

/// A time for people: `YYYY-MM-DD HH:MM:SS` UTC.
fn fmt_time(ms: i64) -> String {
    let s = vigil_events::format_rfc3339_ms(ms);
    // 2026-01-01T00:00:00.000Z → 2026-01-01 00:00:00
    s.get(..19).map_or(s.clone(), |d| d.replacen('T', " ", 1))
}

/// A time as an `<input type="datetime-local">` value (UTC, minutes).
fn input_time(ms: i64) -> String {
    vigil_events::format_rfc3339_ms(ms).get(..16).unwrap_or_default().to_string()
}

/// Parses a time typed in a form: RFC 3339, epoch ms, or a `datetime-local` value (UTC).
fn parse_form_time(name: &str, s: &str) -> Result<Option<i64>, ApiError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if let Ok(t) = vigil_events::parse_timestamp_str(s) {
        return crate::error::check_time(name, t).map(Some);
    }
    let padded = match s.len() {
        10 => format!("{s}T00:00:00Z"),
        16 => format!("{s}:00Z"),
        19 => format!("{s}Z"),
        _ => s.to_string(),
    };
    let t = vigil_events::parse_timestamp_str(&padded).map_err(|_| {
        ApiError::bad_request("bad_parameter", format!("{name}: {s:?} is not a time (YYYY-MM-DD HH:MM, RFC 3339 or epoch ms)"))
    })?;
    crate::error::check_time(name, t).map(Some)
}

/// A number with `digits` decimals, or a dash.
fn num(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "–".into(),
    }
}

/// The status badge of a fleet or sensor status.
fn badge(status: &str) -> Markup {
    html! { span class={ "badge badge-" (status) } { (status) } }
}

/// `PreEscaped` SVG or HTML produced by our own renderers.
fn raw(s: String) -> PreEscaped<String> {
    PreEscaped(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_format_and_encode() {
        assert_eq!(url_encode("/assets/a b?x=1&y"), "/assets/a%20b%3Fx%3D1%26y");
        assert_eq!(fmt_time(0), "1970-01-01 00:00:00");
        assert_eq!(input_time(86_400_000 + 60_000), "1970-01-02T00:01");
        assert_eq!(parse_form_time("t", "1970-01-02T00:01").unwrap(), Some(86_460_000));
        assert_eq!(parse_form_time("t", "1970-01-02").unwrap(), Some(86_400_000));
        assert_eq!(parse_form_time("t", " ").unwrap(), None);
        assert!(parse_form_time("t", "soon").is_err());
        let e = parse_form_time("deferred_until", "-9223372036854775808").unwrap_err();
        assert!(e.message.starts_with("deferred_until: ") && e.message.contains("1970-01-01"), "{}", e.message);
        assert!(parse_form_time("to", "10000-01-01").is_err());
        assert_eq!(num(Some(0.12345), 2), "0.12");
        assert_eq!(num(None, 2), "–");
        assert_eq!(num(Some(f64::NAN), 2), "–");
    }
}
