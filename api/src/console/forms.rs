//! The console's forms (POST): sign-in and sign-out, decisions, the golden path, SQL and the
//! simulator. Plain form posts that work without JavaScript; each checks the session's CSRF
//! token, then the key's scope, then goes through the same code as the REST API.
//!
//! Input: `application/x-www-form-urlencoded` bodies. Output: a redirect to the page that shows
//! the result (303), or the page again with a readable error. State: sessions (sign-in/out).

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;
use vigil_events::Decision;

use super::session::Https;
use super::{fmt_time, page, parse_form_time, url_encode, Failure, Signed};
use crate::auth::{ClientAddr, Scope};
use crate::error::ApiError;
use crate::planning::{self, DecisionBody};
use crate::{AppState, SimulatorCommand};

type FormResult = Result<Response, Failure>;

/// The body of a form, or a readable error.
fn form<T>(s: &Signed, f: Result<Form<T>, FormRejection>) -> Result<T, Failure> {
    f.map(|Form(v)| v).map_err(|e| s.fail(ApiError::bad_request("bad_form", e.body_text())))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

/// Where to go after signing in: a path of this site only.
fn local_next(next: Option<&str>) -> String {
    match next {
        // A path of this site: printable ASCII only (browsers drop tabs and newlines, which
        // would turn `/\t/evil` into `//evil`), not `//` or `/\` (another host).
        Some(n)
            if n.starts_with('/')
                && n.bytes().all(|b| b.is_ascii_graphic())
                && !matches!(n.as_bytes().get(1), Some(b'/' | b'\\'))
                && !n.contains('\\')
                && !n.starts_with("/login") =>
        {
            n.to_string()
        }
        _ => "/fleet".into(),
    }
}

fn login_form(next: &str, error: Option<&str>, status: StatusCode) -> Response {
    let content = html! {
        @if let Some(e) = error { div.error role="alert" { p { strong { (e) } } } }
        form.login method="post" action="/login" {
            input type="hidden" name="next" value=(next);
            label for="key" { "API key" }
            input #key type="password" name="key" autocomplete="current-password" required autofocus;
            p.muted { "The key's scopes decide what you may do: read, decide (approve, reject, defer), admin (also the golden path and the simulator)." }
            button type="submit" { "Sign in" }
        }
    };
    page(None, "", "Sign in to Vigil", content, status)
}

/// `GET /login`.
pub(crate) async fn login_page(s: Option<Signed>, Query(q): Query<LoginQuery>) -> Response {
    if s.is_some() {
        return Redirect::to(&local_next(q.next.as_deref())).into_response();
    }
    login_form(&local_next(q.next.as_deref()), None, StatusCode::OK)
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginBody {
    key: String,
    next: Option<String>,
}

/// `POST /login`: a known key with the read scope opens a session.
pub(crate) async fn login(
    State(state): State<AppState>,
    client: ClientAddr,
    https: Https,
    f: Result<Form<LoginBody>, FormRejection>,
) -> Response {
    let Ok(Form(body)) = f else {
        return login_form("/fleet", Some("Type your API key."), StatusCode::BAD_REQUEST);
    };
    let next = local_next(body.next.as_deref());
    // Guessing keys is throttled per client (the REST API shares the count).
    if let Err(wait) = state.auth_failures.check(client.0) {
        state.metrics.auth_throttled.inc();
        let mut resp = login_form(
            &next,
            Some(&format!("Too many failed sign-ins from your address: try again in {wait} s.")),
            StatusCode::TOO_MANY_REQUESTS,
        );
        if let Ok(v) = header::HeaderValue::from_str(&wait.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }
    // One bucket for every sign-in attempt slows guessing.
    if let Err(wait) = state.keys.take("(console sign-in)") {
        state.metrics.rate_limited.inc();
        return login_form(
            &next,
            Some(&format!("Too many sign-in attempts: try again in {wait} s.")),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let Some(caller) = state.keys.find(body.key.trim()) else {
        state.auth_failures.failed(client.0);
        tracing::warn!(client = %client.0, "console sign-in with an unknown key");
        return login_form(&next, Some("That key is not known."), StatusCode::UNAUTHORIZED);
    };
    if !caller.may(Scope::Read) {
        return login_form(
            &next,
            Some(&format!("The key {:?} cannot read, so it cannot use the console.", caller.name)),
            StatusCode::FORBIDDEN,
        );
    }
    let name = caller.name.clone();
    let Some(token) = state.console.sessions.open(caller) else {
        return login_form(
            &next,
            Some("The server could not make a session (no randomness)."),
            StatusCode::INTERNAL_SERVER_ERROR,
        );
    };
    tracing::info!(key = %name, "console sign-in");
    ([(header::SET_COOKIE, state.console.sessions.cookie(Some(&token), https))], Redirect::to(&next)).into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct CsrfBody {
    #[serde(default)]
    csrf: String,
}

/// `POST /logout`.
pub(crate) async fn logout(
    s: Signed,
    State(state): State<AppState>,
    https: Https,
    f: Result<Form<CsrfBody>, FormRejection>,
) -> FormResult {
    let body = form(&s, f)?;
    s.check_csrf(&body.csrf)?;
    state.console.sessions.close(&s.token);
    Ok(([(header::SET_COOKIE, state.console.sessions.cookie(None, https))], Redirect::to("/login")).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct DecisionForm {
    #[serde(default)]
    csrf: String,
    decision: Option<String>,
    rationale: Option<String>,
    deferred_until: Option<String>,
}

/// `POST /decisions/{request_id}`: approve, reject or defer, as `POST /api/v1/decisions/{id}`.
pub(crate) async fn decide(
    s: Signed,
    State(state): State<AppState>,
    Path(request_id): Path<String>,
    f: Result<Form<DecisionForm>, FormRejection>,
) -> FormResult {
    let body = form(&s, f)?;
    s.check_csrf(&body.csrf)?;
    s.require(Scope::Decide, "approve, reject or defer maintenance")?;
    let decision: Decision = match body.decision.as_deref() {
        Some("approve") => Decision::Approve,
        Some("reject") => Decision::Reject,
        Some("defer") => Decision::Defer,
        _ => return Err(s.fail(ApiError::bad_request("bad_form", "choose approve, reject or defer"))),
    };
    let deferred_until = parse_form_time("deferred_until", body.deferred_until.as_deref().unwrap_or(""))
        .map_err(|e| s.fail(e))?
        .filter(|_| decision == Decision::Defer)
        .map(serde_json::Value::from);
    let body = DecisionBody { decision, operator: None, rationale: body.rationale, deferred_until };
    let (_, recorded) = planning::record_decision(&state, &s.session.caller, request_id, body).await.map_err(|e| s.fail(e))?;
    let d = &recorded.decision;
    let done = format!(
        "{} {} for {} at {}{}",
        if recorded.replayed { "Already recorded:" } else { "Recorded:" },
        d.decision.as_str(),
        d.asset_id,
        fmt_time(d.ts),
        d.deferred_until.map(|t| format!(" (until {})", fmt_time(t))).unwrap_or_default()
    );
    Ok(Redirect::to(&format!("/decisions?done={}#audit", url_encode(&done))).into_response())
}

/// `POST /golden`: starts a run, then shows it.
pub(crate) async fn golden_start(
    s: Signed,
    State(state): State<AppState>,
    f: Result<Form<CsrfBody>, FormRejection>,
) -> FormResult {
    let body = form(&s, f)?;
    s.check_csrf(&body.csrf)?;
    s.require(Scope::Admin, "run the golden path")?;
    let run = crate::golden::start_run(&state).map_err(|e| s.fail(e))?;
    Ok(Redirect::to(&format!("/golden/{}", super::url_segment(&run.correlation_id))).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct SqlForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    sql: String,
}

/// Rows shown on the page (the CSV download has them all, up to the query limit).
const SHOWN_ROWS: usize = 1000;

/// `POST /sql`: runs the statement (read-only, under the `[query]` limits) and shows the rows.
pub(crate) async fn sql_run(s: Signed, State(state): State<AppState>, f: Result<Form<SqlForm>, FormRejection>) -> FormResult {
    let body = form(&s, f)?;
    s.check_csrf(&body.csrf)?;
    let tables = super::pages::table_list(&state).await;
    let result = if body.sql.trim().is_empty() {
        Err(ApiError::bad_request("bad_sql", "the query is empty"))
    } else {
        state.history.sql(&body.sql).await.map_err(ApiError::from)
    };
    let (status, out) = match result {
        Err(e) => (
            e.status,
            html! { div.error role="alert" { p { strong { "The query failed: " } (e.message) } p.muted { "Error " (e.status.as_u16()) " · " code { (e.code) } } } },
        ),
        Ok(r) => {
            let rows = vigil_queries::format::to_json_rows(&r).map_err(|e| s.fail(e.into()))?;
            let columns: Vec<String> = r.schema.fields().iter().map(|f| f.name().clone()).collect();
            (
                StatusCode::OK,
                html! {
                    p.muted #sql-summary {
                        (r.rows) " rows in " (format!("{:.1}", r.elapsed.as_secs_f64() * 1000.0)) " ms"
                        @if r.truncated { " (cut at the row limit)" }
                        @if r.rows > SHOWN_ROWS { "; the first " (SHOWN_ROWS) " shown, the CSV download has them all" }
                    }
                    div.table-wrap { table #sql-result {
                        thead { tr { @for c in &columns { th scope="col" { (c) } } } }
                        tbody { @for row in rows.iter().take(SHOWN_ROWS) { tr { @for c in &columns { td { (super::pages::cell_text(row.get(c))) } } } } }
                    } }
                },
            )
        }
    };
    let content = html! { (super::pages::sql_form(&s, &body.sql)) (out) (tables) };
    let mut resp = s.page("/sql", "SQL", content);
    *resp.status_mut() = status;
    Ok(resp)
}

/// `POST /sql/csv`: the statement's rows as a CSV file.
pub(crate) async fn sql_csv(s: Signed, State(state): State<AppState>, f: Result<Form<SqlForm>, FormRejection>) -> FormResult {
    let body = form(&s, f)?;
    s.check_csrf(&body.csrf)?;
    if body.sql.trim().is_empty() {
        return Err(s.fail(ApiError::bad_request("bad_sql", "the query is empty")));
    }
    let r = state.history.sql(&body.sql).await.map_err(|e| s.fail(e.into()))?;
    let mut out = Vec::new();
    vigil_queries::format::write_result(&r, vigil_queries::format::OutputFormat::Csv, &mut out).map_err(|e| s.fail(e.into()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"vigil-query.csv\""),
        ],
        out,
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct SimulatorForm {
    #[serde(default)]
    csrf: String,
    action: Option<String>,
    sensor: Option<String>,
}

/// `POST /simulator`: start, stop, or inject an anomaly on a sensor.
pub(crate) async fn simulator_action(
    s: Signed,
    State(state): State<AppState>,
    f: Result<Form<SimulatorForm>, FormRejection>,
) -> FormResult {
    let body = form(&s, f)?;
    s.check_csrf(&body.csrf)?;
    s.require(Scope::Admin, "control the simulator")?;
    let Some(pipeline) = state.pipeline.clone() else {
        return Err(s.fail(ApiError::unavailable("no_pipeline", "this server runs no pipeline, so no simulator")));
    };
    let command = match (body.action.as_deref(), body.sensor) {
        (Some("start"), _) => SimulatorCommand::Start,
        (Some("stop"), _) => SimulatorCommand::Stop,
        (Some("inject"), Some(sensor)) if !sensor.trim().is_empty() => {
            SimulatorCommand::Inject { sensor_id: sensor.trim().to_string() }
        }
        (Some("inject"), _) => return Err(s.fail(ApiError::bad_request("bad_form", "choose a sensor to inject an anomaly on"))),
        _ => return Err(s.fail(ApiError::bad_request("bad_form", "unknown simulator action"))),
    };
    let now = (state.now_ms)();
    let c = command.clone();
    let status = tokio::task::spawn_blocking(move || pipeline.control_simulator(c))
        .await
        .map_err(|e| s.fail(ApiError::internal(e)))?
        .map_err(|m| s.fail(ApiError::new(StatusCode::CONFLICT, "simulator", m)))?;
    tracing::info!(key = %s.name(), command = ?command, running = status.running, "simulator");
    // The spike goes into the next ticks: their event time, not the wall clock (the simulated
    // fleet may run behind or ahead of it).
    let since = status.last_tick_ms.unwrap_or(now);
    let to = match command {
        SimulatorCommand::Inject { sensor_id } => format!(
            "/simulator?injected={}&since={since}&at={now}&done={}",
            url_encode(&sensor_id),
            url_encode(&format!("Injected a spike on {sensor_id}: watch for it below."))
        ),
        SimulatorCommand::Start => format!("/simulator?done={}", url_encode("The simulator runs.")),
        SimulatorCommand::Stop => format!("/simulator?done={}", url_encode("The simulator is stopped.")),
    };
    Ok(Redirect::to(&to).into_response())
}

#[cfg(test)]
mod tests {
    use super::local_next;

    #[test]
    fn only_paths_of_this_site_are_followed_after_sign_in() {
        assert_eq!(local_next(Some("/decisions?asset=a1")), "/decisions?asset=a1");
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/x",
            "https://evil.example",
            "evil",
            "/login?next=/x",
            "",
        ] {
            assert_eq!(local_next(Some(bad)), "/fleet", "{bad:?}");
        }
        assert_eq!(local_next(None), "/fleet");
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct IncidentForm {
    #[serde(default)]
    csrf: String,
    action: Option<String>,
    minutes: Option<u64>,
    note: Option<String>,
}

/// `POST /incidents/{id}/action`: acknowledge, shelve or unshelve, as the REST actions.
pub(crate) async fn incident_action(
    s: Signed,
    State(state): State<AppState>,
    Path(id): Path<String>,
    f: Result<Form<IncidentForm>, FormRejection>,
) -> FormResult {
    let body = form(&s, f)?;
    s.check_csrf(&body.csrf)?;
    s.require(Scope::Decide, "acknowledge or shelve incidents")?;
    let now = (state.now_ms)();
    let (kind, until) = match body.action.as_deref() {
        Some("acknowledge") => (vigil_events::IncidentActionKind::Acknowledge, None),
        Some("unshelve") => (vigil_events::IncidentActionKind::Unshelve, None),
        Some("shelve") => (
            vigil_events::IncidentActionKind::Shelve,
            Some(crate::incidents::shelve_until(now, None, Some(body.minutes.unwrap_or(60))).map_err(|e| s.fail(e))?),
        ),
        _ => return Err(s.fail(ApiError::bad_request("bad_form", "choose acknowledge, shelve or unshelve"))),
    };
    let a = crate::incidents::act(&state, &s.session.caller, &id, kind, until, body.note).await.map_err(|e| s.fail(e))?;
    let done = format!(
        "Recorded: {} of the incident on {}{}",
        a.action.as_str(),
        a.asset_id,
        a.shelved_until.map(|t| format!(" until {}", fmt_time(t))).unwrap_or_default()
    );
    Ok(Redirect::to(&format!("/incidents?done={}", url_encode(&done))).into_response())
}
