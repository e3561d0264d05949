//! The console's pages (GET): what each shows, read through `vigil-queries`, the planning ledger
//! and the pipeline, exactly as the REST API reads them.
//!
//! Input: the signed-in request and its query string. Output: HTML pages, the fleet's event
//! stream, report downloads. State: none of their own.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;
use vigil_queries::canned::{AnomalyRow, DecisionRequestRow, EventFilter, PredictionRow};
use vigil_queries::report::{ReportFormat, ReportRequest};

use super::{badge, chart, fmt_time, input_time, num, parse_form_time, raw, url_encode, url_segment, Failure, Signed};
use crate::auth::Scope;
use crate::error::ApiError;
use crate::planning::{self, AuditQuery, PendingQuery};
use crate::AppState;

const HOUR_MS: i64 = 3_600_000;
/// Points per chart at most (the server buckets beyond).
const CHART_POINTS: usize = 1200;
/// Rows of an event table.
const EVENT_ROWS: usize = 200;
/// Pending requests a page.
const PENDING_PAGE: usize = 20;
/// Audit log rows a page.
const AUDIT_PAGE: usize = 25;

type PageResult = Result<Response, Failure>;

/// Query strings the console reads: a field left empty in a form is absent.
fn some(s: &Option<String>) -> Option<String> {
    s.as_ref().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// A query string the page cannot read, as a readable error instead of axum's plain text.
fn query<T: serde::de::DeserializeOwned + Default>(
    s: &Signed,
    q: Result<Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, Failure> {
    q.map(|Query(v)| v).map_err(|e| s.fail(ApiError::bad_request("bad_query", e.body_text())))
}

/// `/`: the fleet when signed in, else the sign-in page.
pub(crate) async fn home(s: Option<Signed>) -> Redirect {
    // The alarm list first: incidents are what people act on.
    Redirect::to(if s.is_some() { "/incidents" } else { "/login" })
}

/// What changes when the fleet page may change: the pipeline's commits and the decisions.
fn live_version(state: &AppState) -> String {
    let commits = state.pipeline.as_ref().map_or(0, |p| p.commits());
    let decisions = state.ledger.read(|b| b.decisions().len());
    format!("{commits}.{decisions}")
}

/// The fleet table: every asset, worst first, with its pending decisions.
async fn fleet_section(state: &AppState) -> Result<Markup, ApiError> {
    let fleet = state.history.fleet_health().await?;
    let pending = planning::pending_requests(state, &PendingQuery::default()).await?;
    let mut waiting: HashMap<&str, usize> = HashMap::new();
    for p in &pending {
        *waiting.entry(p.request.asset_id.as_str()).or_default() += 1;
    }
    Ok(html! {
        p.summary {
            @if let Some(t) = fleet.as_of { "As of " time datetime=(vigil_events::format_rfc3339_ms(t)) { (fmt_time(t)) } ": " }
            @for (status, n) in &fleet.counts { (fleet_badge(status)) " " (n) " " }
            " · " a href="/decisions" { (pending.len()) " pending decisions" }
        }
        @if fleet.assets.is_empty() {
            p.empty { "No assets in the history yet: start the pipeline, the simulator or the golden path." }
        } @else {
            div.table-wrap {
                table #fleet {
                    caption { "Assets, worst first" }
                    thead { tr {
                        th scope="col" { "Asset" } th scope="col" { "Status" } th scope="col" { "Health" }
                        th scope="col" { "RUL (h)" } th scope="col" { "Failure prob." } th scope="col" { "Anomalies 24 h" }
                        th scope="col" { "Critical 24 h" } th scope="col" { "Open proposals" } th scope="col" { "Pending decisions" }
                        th scope="col" { "Last prediction" }
                    } }
                    tbody {
                        @for a in &fleet.assets {
                            tr data-asset=(a.asset_id) {
                                th scope="row" { a href={ "/assets/" (url_segment(&a.asset_id)) } { (a.asset_id) } }
                                td { (fleet_badge(&a.status)) }
                                td.num { (num(a.health, 2)) }
                                td.num { (num(a.rul_hours, 1)) }
                                td.num { (num(a.failure_probability, 2)) }
                                td.num { (a.anomalies_24h) }
                                td.num { (a.critical_24h) }
                                td.num { (a.open_proposals.len()) }
                                td.num {
                                    @match waiting.get(a.asset_id.as_str()) {
                                        Some(n) => a href={ "/decisions?asset=" (url_encode(&a.asset_id)) } { (n) },
                                        None => "0",
                                    }
                                }
                                td {
                                    @match a.predicted_at {
                                        Some(t) => (fmt_time(t)),
                                        None => span.muted { "none yet" },
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}

/// An asset's fleet status as a badge, in words (`warming_up`: "warming up").
fn fleet_badge(status: &str) -> Markup {
    html! { span class={ "badge badge-" (status) } { (status.replace('_', " ")) } }
}

/// `/fleet`.
pub(crate) async fn fleet(s: Signed, State(state): State<AppState>) -> PageResult {
    let version = live_version(&state);
    let section = fleet_section(&state).await.map_err(|e| s.fail(e))?;
    let replayed = state.requests.replayed_now(&state.history).await.map_err(|e| s.fail(e))?;
    Ok(s.page(
        "/fleet",
        "Fleet",
        html! {
            p.live #live-status aria-live="polite" { "Updates live as the pipeline commits." }
            @if !replayed.runs.is_empty() {
                p.notice #replayed-periods { "Replayed history, not live (vigil replay, vigil demo): "
                    @for (i, r) in replayed.runs.iter().enumerate() {
                        @if i > 0 { "; " }
                        (r.inputs.join(", ")) " from " (r.from.map(fmt_time).unwrap_or_default()) " to " (r.to.map(fmt_time).unwrap_or_default())
                    }
                    ". Its decision requests are left out of the pending queue."
                }
            }
            div #fleet-live data-live={ "/fleet/live?since=" (version) } { (section) }
        },
    ))
}

/// The fleet table at version `v`, rendered once for every stream that wants it.
async fn shared_fleet_section(state: &AppState, v: &str) -> Result<std::sync::Arc<String>, ApiError> {
    let mut cache = state.console.fleet.lock().await;
    if let Some((at, html)) = cache.as_ref() {
        if at == v {
            return Ok(html.clone());
        }
    }
    let html = std::sync::Arc::new(fleet_section(state).await?.into_string());
    *cache = Some((v.to_string(), html.clone()));
    Ok(html)
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct LiveQuery {
    since: Option<String>,
}

/// `/fleet/live`: the fleet table again (event `update`) each time a commit or a decision may
/// have changed it; `problem` when it cannot be read.
pub(crate) async fn fleet_live(
    s: Signed,
    State(state): State<AppState>,
    Query(q): Query<LiveQuery>,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let since = q.since.unwrap_or_default();
    let token = s.token;
    // Ends when the session does (sign-out, expiry) or the server shuts down.
    let stream = futures::stream::unfold((state, since), move |(state, mut last)| {
        let token = token.clone();
        async move {
            loop {
                if state.console.is_closing() || !state.console.sessions.is_open(&token) {
                    return None;
                }
                let v = live_version(&state);
                if v != last {
                    last = v.clone();
                    let event = match shared_fleet_section(&state, &v).await {
                        Ok(html) => Event::default().event("update").id(v).data(html.as_str()),
                        Err(e) => Event::default().event("problem").data(format!("live updates paused: {}", e.message)),
                    };
                    return Some((Ok(event), (state, last)));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct AssetQuery {
    hours: Option<f64>,
    end: Option<String>,
}

/// Marks of one sensor's chart: its anomalies and drift, the asset's maintenance.
fn marks_for(
    sensor: &str,
    anomalies: &[AnomalyRow],
    drift: &[vigil_queries::canned::DriftRow],
    maintenance: &[chart::Mark],
) -> Vec<chart::Mark> {
    let mut marks: Vec<chart::Mark> = anomalies
        .iter()
        .filter(|a| a.sensor_id == sensor)
        .map(|a| chart::Mark {
            ts: a.ts,
            kind: chart::MarkKind::Anomaly,
            label: format!("{} {} ({}), score {:.2}: {}", fmt_time(a.ts), a.detector, a.severity, a.score, a.explanation),
        })
        .collect();
    marks.extend(drift.iter().filter(|d| d.sensor_id == sensor).map(|d| chart::Mark {
        ts: d.ts,
        kind: chart::MarkKind::Drift,
        label: format!("{} drift: {} = {:.3} (threshold {:.3})", fmt_time(d.ts), d.statistic, d.value, d.threshold),
    }));
    marks.extend(maintenance.iter().map(|m| chart::Mark {
        ts: m.ts,
        kind: chart::MarkKind::Maintenance,
        label: m.label.clone(),
    }));
    marks
}

/// `/assets/{asset_id}`: the asset's sensors as charts over a range, with anomalies, drift and
/// maintenance marked; its predictions over time.
pub(crate) async fn asset(
    s: Signed,
    State(state): State<AppState>,
    Path(asset_id): Path<String>,
    q: Result<Query<AssetQuery>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    let q = query(&s, q)?;
    let hours = q.hours.filter(|h| h.is_finite() && *h > 0.0).unwrap_or(24.0).clamp(0.02, 24.0 * 90.0);
    let newest = state.history.newest("readings").await.map_err(|e| s.fail(e.into()))?;
    let end = match parse_form_time("end", q.end.as_deref().unwrap_or("")).map_err(|e| s.fail(e))? {
        Some(t) => t,
        None => newest.map_or((state.now_ms)(), |t| t + 1),
    };
    // Years 1970 to 9999: the arithmetic below cannot overflow.
    let end = end.clamp(HOUR_MS * 24 * 91, vigil_events::MAX_TIME_MS);
    let span = (hours * HOUR_MS as f64) as i64;
    let from = end - span;
    let h = &state.history;
    let sensors = h.asset_sensors(&asset_id, from, end).await.map_err(|e| s.fail(e.into()))?;
    let f =
        EventFilter { asset_id: Some(asset_id.clone()), from: Some(from), to: Some(end), limit: 5000, ..EventFilter::default() };
    let ids: Vec<String> = sensors.iter().map(|(id, _, _)| id.clone()).collect();
    // One scan for every sensor's series, and the event queries beside it.
    let (series, anomalies, drift, predictions) =
        tokio::join!(h.readings_of(&ids, from, end, CHART_POINTS), h.anomalies(&f), h.drift(&f), h.predictions(&f));
    let fail = |e: vigil_queries::QueryError| s.fail(e.into());
    let series = series.map_err(fail)?;
    let anomalies = anomalies.map_err(fail)?;
    let drift = drift.map_err(fail)?;
    let predictions = predictions.map_err(fail)?;
    let maintenance: Vec<chart::Mark> = state.ledger.read(|b| {
        b.maintenance()
            .iter()
            .filter(|m| *m.asset_id == *asset_id && m.ts >= from && m.ts < end)
            .map(|m| chart::Mark {
                ts: m.ts,
                kind: chart::MarkKind::Maintenance,
                label: format!("{} maintenance by {}", fmt_time(m.ts), m.performed_by),
            })
            .collect()
    });
    let mut charts = Vec::new();
    for ((sensor, kind, unit), series) in sensors.iter().zip(&series) {
        let points: Vec<chart::Point> =
            series.points.iter().map(|p| chart::Point { ts: p.ts, value: p.value, min: p.min, max: p.max }).collect();
        let marks = marks_for(sensor, &anomalies, &drift, &maintenance);
        let title = format!("{sensor} ({kind})");
        let svg =
            chart::render(&chart::Chart { title: &title, unit, from, to: end, points: &points, marks: &marks, limits: None });
        let readings: u64 = series.points.iter().map(|p| p.count).sum();
        charts.push((sensor.clone(), readings, series.bucket_ms, svg));
    }
    let health_points: Vec<chart::Point> =
        predictions.iter().rev().map(|p| chart::Point { ts: p.ts, value: p.health, min: p.health, max: p.health }).collect();
    // The latest prediction's failure time, when it falls in the range.
    let failure_marks: Vec<chart::Mark> = predictions
        .first()
        .and_then(|p| p.predicted_failure_ts.map(|t| (p, t)))
        .map(|(p, t)| chart::Mark {
            ts: t,
            kind: chart::MarkKind::Prediction,
            label: format!("predicted failure {} ({} {})", fmt_time(t), p.model, p.model_version),
        })
        .into_iter()
        .collect();
    let health_svg = chart::render(&chart::Chart {
        title: "Health (1 = new, 0 = failed)",
        unit: "",
        from,
        to: end,
        points: &health_points,
        marks: &failure_marks,
        limits: None,
    });
    let link = |end_ms: i64, hours: f64| format!("/assets/{}?hours={}&end={}", url_segment(&asset_id), hours, end_ms);
    let content = html! {
        p { a href="/fleet" { "← Fleet" } " · " a href={ "/decisions?asset=" (url_encode(&asset_id)) } { "Decisions" } " · " a href={ "/anomalies?asset=" (url_encode(&asset_id)) } { "Anomalies & drift" } }
        form.range method="get" action={ "/assets/" (url_segment(&asset_id)) } {
            label { "Hours " input type="number" name="hours" min="0.02" max="2160" step="any" value=(hours); }
            label { "Ending (UTC) " input type="datetime-local" name="end" value=(input_time(end)); }
            button type="submit" { "Show" }
        }
        nav.pager aria-label="Time range" {
            a href=(link(end - span / 2, hours)) { "← Earlier" }
            a href=(link(end - span / 4, hours / 2.0)) { "Zoom in" }
            a href=(link(end + span / 2, hours * 2.0)) { "Zoom out" }
            a href=(link(end + span / 2, hours)) { "Later →" }
            a href={ "/assets/" (url_segment(&asset_id)) "?hours=" (hours) } { "Latest" }
        }
        p.muted { (fmt_time(from)) " – " (fmt_time(end)) " UTC. Marks: " span.key-anomaly { "anomaly" } ", " span.key-drift { "drift" } ", " span.key-maintenance { "maintenance" } ", " span.key-prediction { "predicted failure" } "." }
        @if sensors.is_empty() { p.empty { "No readings of " (asset_id) " in this range." } }
        div.charts {
            @for (sensor, n, bucket, svg) in &charts {
                figure.chart-box {
                    (raw(svg.clone()))
                    figcaption { (sensor) ": " (n) " readings" @if let Some(b) = bucket { " (buckets of " (fmt_duration(*b)) ": mean, with min–max band)" } }
                }
            }
        }
        h2 { "Predictions" }
        figure.chart-box.chart-wide { (raw(health_svg)) figcaption { (predictions.len()) " predictions in range" } }
        (prediction_table(&predictions[..predictions.len().min(20)]))
        h2 { "Anomalies in range" }
        (anomaly_table(&anomalies[..anomalies.len().min(50)]))
    };
    Ok(s.page("/fleet", &format!("Asset {asset_id}"), content))
}

fn fmt_duration(ms: i64) -> String {
    match ms {
        m if m < 1000 => format!("{m} ms"),
        m if m < 60_000 => format!("{:.0} s", m as f64 / 1000.0),
        m if m < HOUR_MS => format!("{:.0} min", m as f64 / 60_000.0),
        m => format!("{:.1} h", m as f64 / HOUR_MS as f64),
    }
}

fn prediction_table(rows: &[PredictionRow]) -> Markup {
    html! {
        @if rows.is_empty() { p.empty { "No predictions." } } @else {
            div.table-wrap { table {
                thead { tr { th scope="col" { "Time" } th scope="col" { "Asset" } th scope="col" { "Health" } th scope="col" { "Failure prob." } th scope="col" { "RUL (h)" } th scope="col" { "Confidence" } th scope="col" { "Model" } th scope="col" { "Reasons" } } }
                tbody { @for p in rows { tr {
                    td { (fmt_time(p.ts)) } td { (p.asset_id) } td.num { (num(Some(p.health), 2)) } td.num { (num(Some(p.failure_probability), 2)) }
                    td.num { (num(p.rul_hours, 1)) } td.num { (num(Some(p.confidence), 2)) } td { (p.model) " " (p.model_version) } td { (p.reasons) }
                } } }
            } }
        }
    }
}

/// An anomaly's explanation (a JSON object of the values that triggered it) for people:
/// `key value` pairs, numbers to 4 significant digits, nested objects flattened once.
fn explain(text: &str) -> String {
    fn value(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(x) if x.fract() != 0.0 => {
                    let digits = (3 - x.abs().log10().floor() as i32).clamp(0, 6) as usize;
                    format!("{x:.digits$}")
                }
                _ => n.to_string(),
            },
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(m) => m.iter().map(|(k, v)| format!("{k} {}", value(v))).collect::<Vec<_>>().join(", "),
            other => other.to_string(),
        }
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v @ serde_json::Value::Object(_)) => value(&v),
        _ => text.to_string(),
    }
}

fn anomaly_table(rows: &[AnomalyRow]) -> Markup {
    html! {
        @if rows.is_empty() { p.empty { "No anomalies." } } @else {
            div.table-wrap { table.anomalies {
                thead { tr { th scope="col" { "Time" } th scope="col" { "Asset" } th scope="col" { "Sensor" } th scope="col" { "Detector" } th scope="col" { "Severity" } th scope="col" { "Score" } th scope="col" { "Explanation" } } }
                tbody { @for a in rows { tr {
                    td { (fmt_time(a.ts)) } td { a href={ "/assets/" (url_segment(&a.asset_id)) } { (a.asset_id) } } td { (a.sensor_id) }
                    td { (a.detector) " v" (a.detector_version) } td { (badge(&a.severity)) } td.num { (num(Some(a.score), 2)) } td.explain { (explain(&a.explanation)) }
                } } }
            } }
        }
    }
}

/// Anomalies listed as a request's evidence at most (the count covers them all).
const EVIDENCE_ROWS: usize = 10;

/// A decision request's evidence: the prediction behind it (the request's correlation id is
/// that prediction's event id) and the asset's anomalies that prediction counted — those of
/// the hour up to it ([`vigil_events::RECENT_ANOMALIES_MS`], both ends included) — so the
/// figures here are the ones in the request's reasons, read from the history.
struct Evidence {
    prediction: Option<PredictionRow>,
    /// The anomalies' window (ms, both ends included).
    from: i64,
    to: i64,
    /// Anomalies in the window.
    count: u64,
    /// The newest of them, at most [`EVIDENCE_ROWS`].
    newest: Vec<AnomalyRow>,
}

async fn evidence_of(state: &AppState, r: &DecisionRequestRow) -> Result<Evidence, vigil_queries::QueryError> {
    let h = &state.history;
    let asset_id = Some(r.asset_id.clone());
    // The request is made at its prediction's time.
    let at = EventFilter {
        asset_id: asset_id.clone(),
        from: Some(r.ts),
        to: Some(r.ts.saturating_add(1)),
        limit: 20,
        ..EventFilter::default()
    };
    let predictions = h.predictions(&at).await?;
    let prediction = predictions
        .iter()
        .find(|p| p.event_id == r.correlation_id)
        .or_else(|| predictions.iter().find(|p| p.ts == r.ts))
        .cloned();
    let to = prediction.as_ref().map_or(r.ts, |p| p.ts);
    let from = to.saturating_sub(vigil_events::RECENT_ANOMALIES_MS);
    let f = EventFilter {
        asset_id,
        from: Some(from),
        to: Some(to.saturating_add(1)),
        limit: EVIDENCE_ROWS,
        ..EventFilter::default()
    };
    let (count, newest) = tokio::join!(h.anomaly_count(&f), h.anomalies(&f));
    Ok(Evidence { prediction, from, to, count: count?, newest: newest? })
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct DecisionsQuery {
    asset: Option<String>,
    decision: Option<String>,
    operator: Option<String>,
    page: Option<usize>,
    pending_page: Option<usize>,
    done: Option<String>,
    /// `1`: also the requests raised while replaying history.
    replayed: Option<String>,
}

/// `/decisions`: the pending queue with each request's evidence and a decision form; the audit
/// log, filterable and paginated.
pub(crate) async fn decisions(
    s: Signed,
    State(state): State<AppState>,
    q: Result<Query<DecisionsQuery>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    let q = query(&s, q)?;
    let asset = some(&q.asset);
    let with_replayed = some(&q.replayed).is_some_and(|v| v == "1" || v == "true");
    let mut pending = planning::pending_requests(
        &state,
        &PendingQuery { asset_id: asset.clone(), include_deferred: true, include_replayed: true },
    )
    .await
    .map_err(|e| s.fail(e))?;
    // Requests of replayed history (`vigil replay`, `vigil demo`) only when asked for.
    let replayed_hidden = if with_replayed { 0 } else { pending.iter().filter(|p| p.replayed).count() };
    if !with_replayed {
        pending.retain(|p| !p.replayed);
    }
    let ppage = q.pending_page.unwrap_or(0).min(pending.len() / PENDING_PAGE);
    let shown: Vec<_> = pending.iter().skip(ppage * PENDING_PAGE).take(PENDING_PAGE).collect();
    // Evidence of each request shown, read from the history (a few small queries a request,
    // run together).
    let evidence: HashMap<String, Evidence> = futures::future::join_all(shown.iter().map(|p| evidence_of(&state, &p.request)))
        .await
        .into_iter()
        .zip(&shown)
        .map(|(e, p)| e.map(|e| (p.request.request_id.clone(), e)))
        .collect::<Result<_, _>>()
        .map_err(|e| s.fail(e.into()))?;
    let decision = match some(&q.decision).as_deref() {
        None => None,
        Some(d) => Some(serde_json::from_value(serde_json::Value::String(d.to_string())).map_err(|_| {
            s.fail(ApiError::bad_request("bad_parameter", format!("decision: {d:?} is not approve, reject or defer")))
        })?),
    };
    let page = q.page.unwrap_or(0).min(1_000_000);
    let audit = planning::audit_page(
        &state,
        &AuditQuery {
            asset_id: asset.clone(),
            decision,
            decided_by: some(&q.operator),
            limit: Some(AUDIT_PAGE),
            offset: Some(page.saturating_mul(AUDIT_PAGE)),
            ..AuditQuery::default()
        },
    )
    .map_err(|e| s.fail(e))?;
    let may_decide = s.may(Scope::Decide);
    let now = (state.now_ms)();
    let asset_param = asset.as_ref().map(|a| format!("&asset={}", url_encode(a))).unwrap_or_default()
        + if with_replayed { "&replayed=1" } else { "" };
    let filter_link = |page: usize| {
        let mut l = format!("/decisions?page={page}");
        for (k, v) in [("asset", &q.asset), ("decision", &q.decision), ("operator", &q.operator)] {
            if let Some(v) = some(v) {
                l.push_str(&format!("&{k}={}", url_encode(&v)));
            }
        }
        l
    };
    let content = html! {
        @if let Some(done) = some(&q.done) { p.notice role="status" { (done) } }
        h2 #pending { "Pending decisions (" (pending.len()) ")" @if let Some(a) = &asset { " for " (a) } }
        @if !may_decide { p.notice { "Your key (" (s.scopes()) ") may read decisions but not make them: that needs the decide scope." } }
        @if pending.is_empty() { p.empty { "Nothing waits for a decision." } }
        @if replayed_hidden > 0 {
            p.notice #replayed-hidden { (replayed_hidden) " more raised while replaying history (vigil replay, vigil demo) are not listed: "
                a href={ "/decisions?replayed=1" (asset_param) } { "show them" } }
        }
        @if with_replayed { p.notice { "Listing also the requests raised while replaying history, marked " span.badge { "replayed" } "." } }
        @for p in &shown {
            @let r = &p.request;
            article.request id={ "req-" (r.request_id) } {
                h3 { a href={ "/assets/" (url_segment(&r.asset_id)) } { (r.asset_id) } ": " (r.question) }
                dl.facts {
                    dt { "Status" } dd { (p.status) @if let Some(t) = p.deferred_until { " until " (fmt_time(t)) } @if p.overdue { " " span.badge.badge-critical { "overdue" } } @if p.replayed { " " span.badge.replayed { "replayed" } } }
                    dt { "Asked" } dd { (fmt_time(r.ts)) }
                    dt { "Answer by" } dd { (fmt_time(r.deadline)) }
                    @if let Some(t) = r.scheduled_for { dt { "Planned for" } dd { (fmt_time(t)) } }
                    @if let Some(pr) = &r.priority { dt { "Priority" } dd { (badge(pr)) } }
                    @if let Some(why) = &r.reason { dt { "Why" } dd { (why) } }
                    dt { "Request" } dd { code { (r.request_id) } }
                }
                @if let Some(e) = evidence.get(&r.request_id) {
                    details.evidence open data-asset=(r.asset_id) data-from=(e.from) data-to=(e.to) data-anomalies=(e.count) {
                        summary {
                            "Evidence: "
                            @match &e.prediction {
                                Some(p) => { "the prediction behind it (" (fmt_time(p.ts)) "), and " }
                                None => { "(the prediction behind it is not in the history) " }
                            }
                            span.evidence-count { (e.count) } " anomalies of " (r.asset_id) " in the hour up to it ("
                            (fmt_time(e.from)) " – " (fmt_time(e.to)) ", the window the prediction counts)"
                            @if (e.count as usize) > e.newest.len() { "; the newest " (e.newest.len()) " below" }
                        }
                        @if let Some(pr) = &e.prediction { (prediction_table(std::slice::from_ref(pr))) }
                        (anomaly_table(&e.newest))
                    }
                }
                @if may_decide {
                    form.decide method="post" action={ "/decisions/" (url_segment(&r.request_id)) } {
                        input type="hidden" name="csrf" value=(s.session.csrf);
                        fieldset {
                            legend { "Decision" }
                            label { input type="radio" name="decision" value="approve" required; " Approve" }
                            label { input type="radio" name="decision" value="reject"; " Reject" }
                            label { input type="radio" name="decision" value="defer"; " Defer" }
                        }
                        label { "Rationale " textarea name="rationale" rows="2" maxlength="4000" {} }
                        label { "Defer until (UTC, optional) " input type="datetime-local" name="deferred_until" min=(input_time(now)); }
                        button type="submit" { "Submit decision" }
                    }
                }
            }
        }
        @if pending.len() > PENDING_PAGE {
            nav.pager aria-label="Pending pages" {
                @if ppage > 0 { a href={ "/decisions?pending_page=" (ppage - 1) (asset_param) } { "← Previous" } }
                span { "Page " (ppage + 1) " of " (pending.len().div_ceil(PENDING_PAGE)) }
                @if (ppage + 1) * PENDING_PAGE < pending.len() { a href={ "/decisions?pending_page=" (ppage + 1) (asset_param) } { "Next →" } }
            }
        }
        h2 #audit { "Audit log" }
        form.filters method="get" action="/decisions" {
            label { "Asset " input type="text" name="asset" value=(q.asset.clone().unwrap_or_default()); }
            label { "Decision "
                select name="decision" {
                    @for (v, l) in [("", "any"), ("approve", "approve"), ("reject", "reject"), ("defer", "defer")] {
                        option value=(v) selected[q.decision.as_deref() == Some(v)] { (l) }
                    }
                }
            }
            label { "Operator " input type="text" name="operator" value=(q.operator.clone().unwrap_or_default()); }
            button type="submit" { "Filter" }
        }
        @if audit.items.is_empty() { p.empty { "No decisions recorded" @if asset.is_some() || q.decision.is_some() || q.operator.is_some() { " that match" } "." } } @else {
            div.table-wrap { table #audit-log {
                thead { tr { th scope="col" { "Time" } th scope="col" { "Asset" } th scope="col" { "Decision" } th scope="col" { "By" } th scope="col" { "Key" } th scope="col" { "Rationale" } th scope="col" { "Request" } } }
                tbody { @for d in &audit.items { tr {
                    td { (fmt_time(d.ts)) } td { (d.asset_id.as_ref()) } td { (d.decision.as_str()) @if let Some(t) = d.deferred_until { " until " (fmt_time(t)) } }
                    td { (d.decided_by) } td { (d.via_key) } td { (d.comment.clone().unwrap_or_default()) } td { code { (d.request_id) } }
                } } }
            } }
            nav.pager aria-label="Audit log pages" {
                @if page > 0 { a href=(filter_link(page - 1)) { "← Newer" } }
                span { (audit.offset + 1) "–" (audit.offset + audit.items.len()) " of " (audit.total) }
                @if audit.offset + audit.items.len() < audit.total { a href=(filter_link(page + 1)) { "Older →" } }
            }
        }
    };
    Ok(s.page("/decisions", "Decisions", content))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct EventsPageQuery {
    kind: Option<String>,
    asset: Option<String>,
    sensor: Option<String>,
    detector: Option<String>,
    severity: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// `/anomalies`: anomalies or drift events, filtered by asset, sensor, detector, severity and time.
pub(crate) async fn anomalies(
    s: Signed,
    State(state): State<AppState>,
    q: Result<Query<EventsPageQuery>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    let q = query(&s, q)?;
    let drift = q.kind.as_deref() == Some("drift");
    let f = EventFilter {
        asset_id: some(&q.asset),
        sensor_id: some(&q.sensor),
        from: parse_form_time("from", q.from.as_deref().unwrap_or("")).map_err(|e| s.fail(e))?,
        to: parse_form_time("to", q.to.as_deref().unwrap_or("")).map_err(|e| s.fail(e))?,
        limit: EVENT_ROWS,
        detector: some(&q.detector),
        severity: if drift { None } else { some(&q.severity) },
    };
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let form = html! {
        form.filters method="get" action="/anomalies" {
            label { "Show "
                select name="kind" {
                    option value="anomalies" selected[!drift] { "anomalies" }
                    option value="drift" selected[drift] { "drift events" }
                }
            }
            label { "Asset " input type="text" name="asset" value=(v(&q.asset)); }
            label { "Sensor " input type="text" name="sensor" value=(v(&q.sensor)); }
            label { (if drift { "Statistic " } else { "Detector " }) input type="text" name="detector" list="detectors" value=(v(&q.detector)); }
            datalist #detectors {
                @for d in ["hard_limit", "robust_zscore", "multivariate", "novelty", "ks", "psi", "page_hinkley"] { option value=(d) {} }
            }
            label { "Severity "
                select name="severity" {
                    @for sev in ["", "low", "medium", "high", "critical"] {
                        option value=(sev) selected[q.severity.as_deref() == Some(sev)] { (if sev.is_empty() { "any" } else { sev }) }
                    }
                }
            }
            label { "From (UTC) " input type="datetime-local" name="from" value=(v(&q.from)); }
            label { "To (UTC) " input type="datetime-local" name="to" value=(v(&q.to)); }
            button type="submit" { "Filter" }
        }
    };
    let table = if drift {
        let rows = state.history.drift(&f).await.map_err(|e| s.fail(e.into()))?;
        html! {
            p.muted { (rows.len()) " drift events, newest first" @if rows.len() == EVENT_ROWS { " (the newest " (EVENT_ROWS) ")" } }
            @if rows.is_empty() { p.empty { "No drift events match." } } @else {
                div.table-wrap { table {
                    thead { tr { th scope="col" { "Time" } th scope="col" { "Asset" } th scope="col" { "Sensor" } th scope="col" { "Statistic" } th scope="col" { "Value" } th scope="col" { "Threshold" } th scope="col" { "Reference" } th scope="col" { "Current from" } } }
                    tbody { @for d in &rows { tr {
                        td { (fmt_time(d.ts)) } td { a href={ "/assets/" (url_segment(&d.asset_id)) } { (d.asset_id) } } td { (d.sensor_id) } td { (d.statistic) }
                        td.num { (num(Some(d.value), 3)) } td.num { (num(Some(d.threshold), 3)) } td { (fmt_time(d.reference_start)) " – " (fmt_time(d.reference_end)) } td { (fmt_time(d.current_start)) }
                    } } }
                } }
            }
        }
    } else {
        let rows = state.history.anomalies(&f).await.map_err(|e| s.fail(e.into()))?;
        html! {
            p.muted { (rows.len()) " anomalies, newest first" @if rows.len() == EVENT_ROWS { " (the newest " (EVENT_ROWS) ")" } }
            (anomaly_table(&rows))
        }
    };
    Ok(s.page("/anomalies", "Anomalies & drift", html! { (form) (table) }))
}

/// `/golden`: start the golden path; the recent runs.
pub(crate) async fn golden(s: Signed, State(state): State<AppState>) -> PageResult {
    let runs: Vec<_> = state.golden.recent().iter().filter_map(|id| crate::golden::run_status(&state, id).ok()).collect();
    let content = html! {
        p { "The golden path simulates one asset degrading to failure over six hours, puts it through the whole dataflow into the history, and confirms each step there: readings stored, anomalies detected, a failure predicted, maintenance proposed, a decision requested. Then the decision is yours, on the Decisions page." }
        @if state.pipeline.is_none() { p.notice { "No pipeline runs in this server (it serves the history only), so the golden path cannot run here." } }
        @else if s.may(Scope::Admin) {
            form method="post" action="/golden" {
                input type="hidden" name="csrf" value=(s.session.csrf);
                button type="submit" { "Run the golden path" }
            }
        } @else { p.notice { "Running the golden path needs a key with the admin scope (yours: " (s.scopes()) ")." } }
        h2 { "Recent runs" }
        @if runs.is_empty() { p.empty { "None yet." } } @else {
            div.table-wrap { table {
                thead { tr { th scope="col" { "Run" } th scope="col" { "Asset" } th scope="col" { "Started" } th scope="col" { "Status" } } }
                tbody { @for r in &runs { tr {
                    td { a href={ "/golden/" (url_segment(&r.correlation_id)) } { (r.correlation_id) } } td { (r.asset_id) } td { (fmt_time(r.started_at)) } td { (badge(&r.status)) }
                } } }
            } }
        }
    };
    Ok(s.page("/golden", "Golden path", content))
}

/// `/golden/{id}`: one run's steps with their timings; refreshes itself while it runs.
pub(crate) async fn golden_run(s: Signed, State(state): State<AppState>, Path(id): Path<String>) -> PageResult {
    let run = crate::golden::run_status(&state, &id).map_err(|e| s.fail(e))?;
    let running = run.status == "running" || run.status == "queued";
    let content = html! {
        @if running { div data-refresh="1000" {} p.live aria-live="polite" {
            @if run.status == "queued" { "Queued: golden paths run one at a time, this one starts when the one before it is done." }
            @else { "Running: this page follows each step." }
        } }
        dl.facts {
            dt { "Run" } dd { code { (run.correlation_id) } }
            dt { "Asset" } dd { a href={ "/assets/" (url_segment(&run.asset_id)) } { (run.asset_id) } }
            dt { "Started" } dd { (fmt_time(run.started_at)) }
            dt { "Status" } dd #golden-status { (badge(&run.status)) }
            @if let Some(e) = &run.error { dt { "Error" } dd.error { (e) } }
        }
        div.table-wrap { table #golden-steps {
            thead { tr { th scope="col" { "Step" } th scope="col" { "Status" } th scope="col" { "At (ms after start)" } th scope="col" { "Detail" } } }
            tbody { @for st in &run.steps { tr {
                td { (st.name.replace('_', " ")) } td { (badge(&st.status)) } td.num { (num(st.at_ms, 0)) } td { (st.detail.clone().unwrap_or_default()) }
            } } }
        } }
        @if let Some(r) = &run.request_id {
            p { "The decision request is waiting: " a href={ "/decisions?asset=" (url_encode(&run.asset_id)) "#req-" (r) } { "decide on it" } "." }
        }
    };
    Ok(s.page("/golden", "Golden path run", content))
}

/// Counts as a two-column table.
fn counts_table(caption: &str, key: &str, rows: &BTreeMap<String, u64>) -> Markup {
    html! {
        div.table-wrap { table.counts {
            caption { (caption) }
            thead { tr { th scope="col" { (key) } th scope="col" { "Count" } } }
            tbody {
                @for (k, v) in rows { tr { td { (k) } td.num { (v) } } }
                @if rows.is_empty() { tr { td colspan="2" { "none" } } }
            }
        } }
    }
}

/// `/pipeline`: counters, throughput, watermark and lag, per-detector counts; the latest dead
/// letters with their raw payload and reason.
pub(crate) async fn pipeline(s: Signed, State(state): State<AppState>) -> PageResult {
    // What is wrong, not where the disk is: paths are left out of the source and the reason.
    let dir = state.data_dir();
    let status = state.pipeline.as_ref().map(|p| {
        let mut st = p.status();
        st.source = crate::error::redact_paths(&st.source, Some(dir.as_path()));
        st.reason = st.reason.map(|r| crate::error::redact_paths(&r, Some(dir.as_path())));
        st
    });
    let dead = state
        .history
        .sql(
            "SELECT rejected_at, reason, detail, source, source_offset, sensor_id, raw FROM rejected \
             ORDER BY rejected_at DESC, source, source_offset DESC LIMIT 20",
        )
        .await;
    let now = (state.now_ms)();
    let dead_rows = match dead {
        Ok(r) if r.rows > 0 => vigil_queries::format::to_json_rows(&r).map_err(|e| s.fail(e.into()))?,
        Ok(_) => Vec::new(),
        // An empty history has no `rejected` table yet.
        Err(e) if e.to_string().contains("not found") => Vec::new(),
        Err(e) => return Err(s.fail(e.into())),
    };
    let content = html! {
        @match &status {
            None => p.notice { "No pipeline runs in this server: it serves the history only." },
            Some(p) => {
                @let secs = ((now - p.started_ms) as f64 / 1000.0).max(0.001);
                dl.facts #pipeline-status {
                    dt { "Source" } dd { (p.source) }
                    dt { "State" } dd { @if p.ready { (badge("ok")) " consuming and committing" } @else { (badge("warning")) " " (p.reason.clone().unwrap_or_default()) } }
                    dt { "Records in" } dd.num data-field="records_in" { (p.records_in) }
                    dt { "… covered by the last commit" } dd.num data-field="committed_in" { (p.committed_in) }
                    dt { "… read since the last commit" } dd { span.num data-field="read_since_commit" { (p.read_since_commit) } " (in the dataflow, counted at the next commit)" }
                    dt { "Accepted (stored)" } dd.num data-field="accepted" { (p.accepted) }
                    dt { "Rejected (dead letters)" } dd.num data-field="rejected" { (p.rejected_total()) }
                    dt { "Waiting for the watermark" } dd { span.num data-field="waiting" { (p.waiting) } " (valid, kept in the dataflow's state until the watermark passes them)" }
                    @if p.redelivered > 0 { dt { "Re-delivered, skipped" } dd.num data-field="redelivered" { (p.redelivered) } }
                    @if p.carried_over > 0 { dt { "Carried over from the last run" } dd.num data-field="carried_over" { (p.carried_over) } }
                    dt { "Accounted for" } dd #pipeline-balance {
                        (p.committed_in)
                        @if p.carried_over > 0 { " + " (p.carried_over) " carried over" }
                        " = " (p.accepted) " accepted + " (p.rejected_total()) " rejected + " (p.waiting) " waiting"
                        @if p.redelivered > 0 { " + " (p.redelivered) " re-delivered" }
                        @if !p.balances() { " " span.badge.badge-critical { "does not add up" } }
                    }
                    dt { "Throughput" } dd { (num(Some(p.records_in as f64 / secs), 1)) " records/s since start (" (fmt_time(p.started_ms)) ")" }
                    dt { "Watermark" } dd { (p.watermark_ms.map(fmt_time).unwrap_or_else(|| "none yet".into())) }
                    dt { "Lag" } dd { (p.lag.map_or("unknown".to_string(), |l| format!("{l} records"))) }
                    dt { "Commits" } dd.num { (p.commits) }
                    dt { "Windows closed" } dd.num { (p.windows) }
                    dt { "Predictions" } dd.num { (p.predictions) }
                    dt { "Decision requests" } dd.num { (p.decision_requests) }
                }
                div.grid {
                    (counts_table("Rejected by reason", "Reason", &p.rejected))
                    (counts_table("Anomalies by detector", "Detector", &p.anomalies_by_detector))
                    (counts_table("Drift by statistic", "Statistic", &p.drift_by_statistic))
                }
            }
        }
        h2 { "Latest dead letters" }
        @if dead_rows.is_empty() { p.empty { "No dead letters in the history." } } @else {
            div.table-wrap { table #dead-letters {
                thead { tr { th scope="col" { "Rejected at" } th scope="col" { "Reason" } th scope="col" { "Detail" } th scope="col" { "Source" } th scope="col" { "Raw payload" } } }
                tbody { @for r in &dead_rows { tr {
                    td { (cell(&r["rejected_at"]).replace('T', " ").trim_end_matches('Z')) } td { (badge("warning")) " " (cell(&r["reason"])) } td { (cell(&r["detail"])) }
                    td { (cell(&r["source"])) " @ " (cell(&r["source_offset"])) }
                    td { code.raw { (raw_payload(&r["raw"])) } }
                } } }
            } }
        }
    };
    Ok(s.page("/pipeline", "Pipeline", content))
}

/// A JSON cell as text.
fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A raw payload cell (binary comes out of the JSON formatter as hex or text): at most 300
/// characters.
fn raw_payload(v: &serde_json::Value) -> String {
    let text = cell(v);
    let bytes: Option<Vec<u8>> = (text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| (0..text.len()).step_by(2).filter_map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect());
    let shown = bytes.map_or(text, |b| String::from_utf8_lossy(&b).into_owned());
    if shown.chars().count() > 300 {
        format!("{}… ({} bytes)", shown.chars().take(300).collect::<String>(), shown.len())
    } else {
        shown
    }
}

/// `/models`: the registry's models with their versions and metrics; what the pipeline runs.
pub(crate) async fn models(s: Signed, State(state): State<AppState>) -> PageResult {
    let list = crate::models::blocking(&state.models, |r| {
        let mut out = Vec::new();
        for m in r.list()? {
            let versions = r.versions(&m.name)?;
            out.push((m, versions));
        }
        Ok(out)
    })
    .await
    .map_err(|e| s.fail(e))?;
    let running = state.pipeline.as_ref().map(|p| p.running_model());
    let content = html! {
        @match &running {
            Some(r) => p #running-model { "The pipeline predicts with " strong { (r.name) " " (r.version) } " (" (r.source) ")." },
            None => p.notice { "No pipeline runs in this server." },
        }
        p.muted { "Registry: " code { (state.models.root().display()) } ". Train with " code { "vigil train cmapss" } "." }
        @if list.is_empty() { p.empty { "The registry holds no models yet." } }
        @for (m, versions) in &list {
            section.model {
                h2 { (m.name) " (" (m.versions) " versions)" }
                div.table-wrap { table {
                    thead { tr { th scope="col" { "Version" } th scope="col" { "Created" } th scope="col" { "Kind" } th scope="col" { "Training data" } th scope="col" { "Metrics" } th scope="col" { "Runs" } } }
                    tbody { @for v in versions.iter().rev() { tr {
                        td { (v.version) } td { (fmt_time(v.created_ms)) } td { (v.meta.kind) } td { (v.meta.training_data) }
                        td { @for (k, x) in &v.meta.metrics { span.metric { (k) " " (num(Some(*x), 3)) } " " } }
                        td { @if running.as_ref().is_some_and(|r| r.name == v.name && r.version == v.version.to_string()) { (badge("ok")) " running" } }
                    } } }
                } }
            }
        }
    };
    Ok(s.page("/models", "Models", content))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ReportQuery {
    asset: Option<String>,
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
}

impl ReportQuery {
    fn link(&self, path: &str, format: Option<&str>) -> String {
        let mut l = format!("{path}?");
        for (k, v) in [("asset", &self.asset), ("from", &self.from), ("to", &self.to)] {
            if let Some(v) = some(v) {
                l.push_str(&format!("{k}={}&", url_encode(&v)));
            }
        }
        if let Some(f) = format {
            l.push_str(&format!("format={f}"));
        }
        l.trim_end_matches(['&', '?']).to_string()
    }

    async fn report(&self, state: &AppState) -> Result<vigil_queries::report::Report, ApiError> {
        let from = parse_form_time("from", self.from.as_deref().unwrap_or(""))?;
        let to = parse_form_time("to", self.to.as_deref().unwrap_or(""))?;
        let Some((from, to)) = state.history.report_period(from, to).await? else {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "empty_history",
                "the history is empty: nothing to report on",
            ));
        };
        Ok(state.history.report(&ReportRequest { asset_id: some(&self.asset), from, to }).await?)
    }
}

/// `/reports`: pick asset or fleet and period; the HTML report in a frame, CSV and JSON downloads.
pub(crate) async fn reports(
    s: Signed,
    State(state): State<AppState>,
    q: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    let q = query(&s, q)?;
    let fleet = state.history.fleet_health().await.map_err(|e| s.fail(e.into()))?;
    let asked = q.asset.is_some() || q.from.is_some() || q.to.is_some();
    if asked {
        // Check the period here, so that a bad one is a readable message, not a broken frame.
        parse_form_time("from", q.from.as_deref().unwrap_or("")).map_err(|e| s.fail(e))?;
        parse_form_time("to", q.to.as_deref().unwrap_or("")).map_err(|e| s.fail(e))?;
    }
    let content = html! {
        form.filters method="get" action="/reports" {
            label { "Report on "
                select name="asset" {
                    option value="" { "the whole fleet" }
                    @for a in &fleet.assets { option value=(a.asset_id) selected[q.asset.as_deref() == Some(a.asset_id.as_str())] { (a.asset_id) } }
                }
            }
            label { "From (UTC, default a week before the end) " input type="date" name="from" value=(q.from.clone().unwrap_or_default()); }
            label { "To (UTC, default the newest event) " input type="date" name="to" value=(q.to.clone().unwrap_or_default()); }
            button type="submit" { "Show report" }
        }
        @if asked || !fleet.assets.is_empty() {
            p.downloads {
                "Download: " a href=(q.link("/reports/download", Some("csv"))) download { "CSV" } " · " a href=(q.link("/reports/download", Some("json"))) download { "JSON" }
                " · " a href=(q.link("/reports/view", None)) target="_blank" rel="noopener" { "Open the HTML report on its own" }
            }
            iframe.report src=(q.link("/reports/view", None)) title="Report" {}
        } @else { p.empty { "The history is empty: nothing to report on yet." } }
    };
    Ok(s.page("/reports", "Reports", content))
}

/// `/reports/view`: the HTML report itself (framed by `/reports`).
pub(crate) async fn report_view(
    s: Signed,
    State(state): State<AppState>,
    q: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    let q = query(&s, q)?;
    let report = q.report(&state).await.map_err(|e| s.fail(e))?;
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], report.to_html()).into_response())
}

/// `/reports/download?format=csv|json`: the report as a file.
pub(crate) async fn report_download(
    s: Signed,
    State(state): State<AppState>,
    q: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    let q = query(&s, q)?;
    let format = match q.format.as_deref().unwrap_or("csv") {
        "csv" => ReportFormat::Csv,
        "json" => ReportFormat::Json,
        f => return Err(s.fail(ApiError::bad_request("bad_parameter", format!("format: {f:?} is not csv or json")))),
    };
    let report = q.report(&state).await.map_err(|e| s.fail(e))?;
    let name = some(&q.asset).unwrap_or_else(|| "fleet".into()).replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_");
    let (body, ct, ext) = match format {
        ReportFormat::Json => (report.to_json(), "application/json", "json"),
        _ => (report.to_csv(), "text/csv; charset=utf-8", "csv"),
    };
    let disposition = format!("attachment; filename=\"vigil-report-{name}.{ext}\"");
    Ok(([(header::CONTENT_TYPE, ct.to_string()), (header::CONTENT_DISPOSITION, disposition)], body).into_response())
}

/// The SQL page's form, with the statement typed so far.
pub(super) fn sql_form(s: &Signed, sql: &str) -> Markup {
    html! {
        form.sql method="post" action="/sql" {
            input type="hidden" name="csrf" value=(s.session.csrf);
            label for="sql" { "Query (read-only: SELECT, WITH or EXPLAIN)" }
            textarea #sql name="sql" rows="6" spellcheck="false" required { (sql) }
            div.buttons {
                button type="submit" { "Run" }
                button type="submit" formaction="/sql/csv" { "Download CSV" }
            }
        }
    }
}

/// The tables of the history, for writing queries.
pub(super) async fn table_list(state: &AppState) -> Markup {
    let dir = state.data_dir();
    let catalog = tokio::task::spawn_blocking(move || vigil_queries::Catalog::read(&dir)).await;
    match catalog {
        Ok(Ok(c)) => html! {
            details.tables {
                summary { "Tables (" (c.tables.len()) ")" }
                dl { @for (name, t) in &c.tables { dt { code { (name) } " (" (t.rows) " rows)" } dd { (t.columns.join(", ")) } } }
            }
        },
        _ => html! { p.muted { "The history's catalog is unreadable." } },
    }
}

/// `/sql`: the query box.
pub(crate) async fn sql_page(s: Signed, State(state): State<AppState>) -> PageResult {
    let example =
        "SELECT asset_id, detector, count(*) AS n\nFROM anomalies\nGROUP BY asset_id, detector\nORDER BY n DESC\nLIMIT 20";
    let tables = table_list(&state).await;
    Ok(s.page("/sql", "SQL", html! { (sql_form(&s, example)) (tables) }))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct SimulatorQuery {
    injected: Option<String>,
    /// Event time of the tick before the injection.
    since: Option<i64>,
    /// Wall time of the injection.
    at: Option<i64>,
    done: Option<String>,
}

/// `/simulator`: start or stop the embedded simulator, inject an anomaly on a sensor, and see
/// what the detectors made of it.
pub(crate) async fn simulator(
    s: Signed,
    State(state): State<AppState>,
    q: Result<Query<SimulatorQuery>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    let q = query(&s, q)?;
    let sim = state.pipeline.as_ref().and_then(|p| p.simulator());
    let detected = match (&q.injected, q.since) {
        (Some(sensor), Some(since)) => Some(
            state
                .history
                .anomalies(&EventFilter {
                    sensor_id: Some(sensor.clone()),
                    from: Some(since.saturating_sub(60_000)),
                    limit: 50,
                    ..EventFilter::default()
                })
                .await
                .map_err(|e| s.fail(e.into()))?,
        ),
        _ => None,
    };
    let admin = s.may(Scope::Admin);
    let waiting =
        detected.as_ref().is_some_and(Vec::is_empty) && q.at.is_some_and(|t| (state.now_ms)().saturating_sub(t) < 120_000);
    let content = html! {
        @if let Some(done) = some(&q.done) { p.notice role="status" { (done) } }
        @match &sim {
            None => p.notice { "This server runs no simulator: start one with " code { "vigil serve --source simulator" } " or " code { "vigil demo --serve" } "." },
            Some(sim) => {
                dl.facts #simulator-status {
                    dt { "State" } dd { @if sim.running { (badge("ok")) " running" } @else { (badge("warning")) " stopped" } }
                    dt { "Sensors" } dd { (sim.sensors.len()) }
                    dt { "A reading every" } dd { (fmt_duration(sim.interval_ms)) " per sensor, " (sim.speed) "× real time" }
                    dt { "Records fed" } dd.num { (sim.fed) }
                    dt { "Last tick" } dd { (sim.last_tick_ms.map(fmt_time).unwrap_or_else(|| "none yet".into())) }
                    @if !sim.injections.is_empty() { dt { "Injecting" } dd { @for (sensor, left) in &sim.injections { (sensor) " (" (left) " readings left) " } } }
                }
                @if admin {
                    form.inline method="post" action="/simulator" {
                        input type="hidden" name="csrf" value=(s.session.csrf);
                        @if sim.running { button type="submit" name="action" value="stop" { "Stop the simulator" } }
                        @else { button type="submit" name="action" value="start" { "Start the simulator" } }
                    }
                    form.inject method="post" action="/simulator" {
                        input type="hidden" name="csrf" value=(s.session.csrf);
                        input type="hidden" name="action" value="inject";
                        label { "Sensor "
                            select name="sensor" required {
                                @for (sensor, asset) in &sim.sensors { option value=(sensor) selected[q.injected.as_deref() == Some(sensor.as_str())] { (sensor) " (" (asset) ")" } }
                            }
                        }
                        button type="submit" { "Inject an anomaly" }
                    }
                } @else { p.notice { "Controlling the simulator needs a key with the admin scope (yours: " (s.scopes()) ")." } }
            }
        }
        @if let (Some(sensor), Some(rows)) = (&q.injected, &detected) {
            h2 { "Detected on " (sensor) }
            @if waiting { div data-refresh="2000" {} p.live aria-live="polite" { "Waiting for the detectors (the pipeline commits every few seconds)…" } }
            (anomaly_table(rows))
        }
    };
    Ok(s.page("/simulator", "Simulator", content))
}

/// A JSON cell of a query result as text (`None`: a missing column).
pub(super) fn cell_text(v: Option<&serde_json::Value>) -> String {
    v.map(cell).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explanations_read_as_text() {
        assert_eq!(
            explain(r#"{"observed":4.8128,"expected":3.201895,"count":60,"c":{"a":-1.0549,"b":15.07}}"#),
            "c a -1.055, b 15.07, count 60, expected 3.202, observed 4.813"
        );
        assert_eq!(explain("not json"), "not json");
        assert_eq!(explain(r#"{"x":0.000012345}"#), "x 0.000012");
    }

    #[test]
    fn raw_payloads_decode_hex_and_are_cut() {
        assert_eq!(raw_payload(&serde_json::json!("7b7d")), "{}");
        assert_eq!(raw_payload(&serde_json::json!("plain text")), "plain text");
        assert!(raw_payload(&serde_json::json!("x".repeat(400))).ends_with("(400 bytes)"));
    }
}

/// Query of the incidents page.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct IncidentsPageQuery {
    status: Option<String>,
    asset: Option<String>,
    severity: Option<String>,
    shelved: Option<String>,
    done: Option<String>,
}

/// The sensors of an incident, furthest from normal first, as a short text.
fn incident_sensors(i: &vigil_events::Incident, max: usize) -> Markup {
    html! {
        @for (k, x) in i.sensors.iter().take(max).enumerate() {
            @if k > 0 { br; }
            span.sensor { (if x.sensor_id.is_empty() { "all sensors (multivariate)" } else { x.sensor_id.as_str() }) }
            " ×" (num(Some(x.deviation), 1))
            @if let Some(v) = x.value {
                " · " (num(Some(v), 3))
                @if let (Some(lo), Some(hi)) = (x.normal_low, x.normal_high) { " (normal " (num(Some(lo), 3)) "–" (num(Some(hi), 3)) ")" }
            }
        }
        @if i.sensors.len() > max { br; span.muted { "+" (i.sensors.len() - max) " more" } }
    }
}

/// The forms to acknowledge, shelve or unshelve an incident.
fn incident_actions_form(s: &Signed, v: &crate::incidents::IncidentView) -> Markup {
    let id = &v.incident.incident_id;
    html! {
        @if s.may(Scope::Decide) {
            form.inline method="post" action={ "/incidents/" (url_segment(id)) "/action" } {
                input type="hidden" name="csrf" value=(s.session.csrf);
                @if v.handling.acknowledged_by.is_none() { button type="submit" name="action" value="acknowledge" { "Acknowledge" } }
                @if v.shelved {
                    button type="submit" name="action" value="unshelve" { "Unshelve" }
                } @else {
                    select name="minutes" aria-label="Shelve for" {
                        option value="60" { "1 h" } option value="480" { "8 h" } option value="1440" { "24 h" } option value="10080" { "7 days" }
                    }
                    button type="submit" name="action" value="shelve" { "Shelve" }
                }
                input type="text" name="note" placeholder="note (optional)" aria-label="Note";
            }
        }
    }
}

/// `/incidents`: the alarm list.
pub(crate) async fn incidents(
    s: Signed,
    State(state): State<AppState>,
    q: Result<Query<IncidentsPageQuery>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    let q = query(&s, q)?;
    let status = some(&q.status).unwrap_or_else(|| "open".into());
    let with_shelved = some(&q.shelved).is_some_and(|v| v == "1" || v == "true");
    let api_q = crate::incidents::IncidentsQuery {
        asset_id: some(&q.asset),
        status: Some(status.clone()),
        min_severity: some(&q.severity),
        include_shelved: Some(with_shelved),
        limit: Some(200),
        ..Default::default()
    };
    let rows = crate::incidents::list(&state, &api_q).await.map_err(|e| s.fail(e))?;
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let content = html! {
        @if let Some(done) = some(&q.done) { p.notice role="status" { (done) } }
        form.filters method="get" action="/incidents" {
            label { "Show "
                select name="status" {
                    @for (val, label) in [("open", "open"), ("closed", "closed"), ("all", "all")] {
                        option value=(val) selected[status == val] { (label) }
                    }
                }
            }
            label { "Asset " input type="text" name="asset" value=(v(&q.asset)); }
            label { "At least "
                select name="severity" {
                    @for sev in ["", "low", "medium", "high", "critical"] {
                        option value=(sev) selected[q.severity.as_deref() == Some(sev)] { (if sev.is_empty() { "any severity" } else { sev }) }
                    }
                }
            }
            label { input type="checkbox" name="shelved" value="1" checked[with_shelved]; " shelved too" }
            button type="submit" { "Filter" }
        }
        p.muted #incident-count { (rows.len()) " " (status) " incidents, the most recently opened first. Each groups one asset's related anomalies and drift events; the anomalies stay as their evidence." }
        @if rows.is_empty() { p.empty { "No incidents match." } } @else {
            div.table-wrap { table #incidents {
                thead { tr {
                    th scope="col" { "Severity" } th scope="col" { "Asset" } th scope="col" { "Opened" } th scope="col" { "Last evidence" }
                    th scope="col" { "State" } th scope="col" { "Furthest from normal" } th scope="col" { "Evidence" } th scope="col" { "Actions" }
                } }
                tbody { @for r in &rows { tr id={ "inc-" (r.incident.incident_id) } {
                    td { (badge(r.incident.severity.as_str())) }
                    td { a href={ "/assets/" (url_segment(&r.incident.asset_id)) } { (r.incident.asset_id) } }
                    td { a href={ "/incidents/" (url_segment(&r.incident.incident_id)) } { (fmt_time(r.incident.opened_at)) } }
                    td { (fmt_time(r.incident.last_evidence_at)) }
                    td {
                        (r.incident.status.as_str())
                        @if r.incident.suppressed { " " span.badge { "suppressed" } }
                        @if let Some(by) = &r.handling.acknowledged_by { " " span.badge.badge-ok title={ "by " (by) } { "acknowledged" } }
                        @if r.shelved { " " span.badge { "shelved" } }
                    }
                    td { (incident_sensors(&r.incident, 3)) }
                    td.num { (r.incident.anomalies) " anomalies" @if r.incident.drifts > 0 { ", " (r.incident.drifts) " drift" } br; span.muted { (r.incident.detectors.join(", ")) } }
                    td { (incident_actions_form(&s, r)) }
                } } }
            } }
        }
    };
    Ok(s.page("/incidents", "Incidents", content))
}

/// `/incidents/{id}`: one incident with its revisions, evidence and audit trail.
pub(crate) async fn incident(s: Signed, State(state): State<AppState>, Path(id): Path<String>) -> PageResult {
    let d = crate::incidents::detail(&state, &id).await.map_err(|e| s.fail(e))?;
    let i = &d.view.incident;
    let content = html! {
        p #incident-summary { (i.summary) }
        dl.facts {
            dt { "Asset" } dd { a href={ "/assets/" (url_segment(&i.asset_id)) } { (i.asset_id) } }
            dt { "Severity" } dd { (badge(i.severity.as_str())) }
            dt { "Status" } dd { (i.status.as_str()) @if i.suppressed { " (suppressed: maintenance window)" } }
            dt { "Opened" } dd { (fmt_time(i.opened_at)) }
            dt { "Last evidence" } dd { (fmt_time(i.last_evidence_at)) }
            dt { "Detectors" } dd { (i.detectors.join(", ")) }
            @if let Some(by) = &d.view.handling.acknowledged_by { dt { "Acknowledged" } dd { "by " (by) @if let Some(t) = d.view.handling.acknowledged_at { " at " (fmt_time(t)) } } }
            @if d.view.shelved { dt { "Shelved" } dd { "until " (d.view.handling.shelved_until.map(fmt_time).unwrap_or_default()) } }
            @if !i.decision_requests.is_empty() { dt { "Decision requests" } dd { @for r in &i.decision_requests { a href="/decisions" { code { (r) } } " " } } }
        }
        (incident_actions_form(&s, &d.view))
        h2 { "Sensors, furthest from normal first" }
        div.table-wrap { table #incident-sensors {
            thead { tr { th scope="col" { "Sensor" } th scope="col" { "Deviation (× threshold)" } th scope="col" { "Value" } th scope="col" { "Normal range" } th scope="col" { "Detectors" } th scope="col" { "Events" } } }
            tbody { @for x in &i.sensors { tr {
                td { (if x.sensor_id.is_empty() { "all sensors (multivariate)" } else { x.sensor_id.as_str() }) }
                td.num { (num(Some(x.deviation), 2)) } td.num { (num(x.value, 3)) }
                td { @if let (Some(lo), Some(hi)) = (x.normal_low, x.normal_high) { (num(Some(lo), 3)) " – " (num(Some(hi), 3)) } }
                td { (x.detectors.join(", ")) } td.num { (x.events) }
            } } }
        } }
        h2 { "Evidence: " (d.anomalies.len()) " anomalies, " (d.drift.len()) " drift events" }
        div.table-wrap { table #incident-evidence {
            thead { tr { th scope="col" { "Time" } th scope="col" { "Sensor" } th scope="col" { "Detector" } th scope="col" { "Severity" } th scope="col" { "Score" } } }
            tbody { @for a in &d.anomalies { tr {
                td { (fmt_time(a.ts)) } td { (a.sensor_id) } td { (a.detector) } td { (badge(&a.severity)) } td.num { (num(Some(a.score), 3)) }
            } } }
        } }
        h2 { "Revisions" }
        ol #incident-revisions { @for r in &d.revisions { li { (r.status.as_str()) " at " (fmt_time(r.ts)) ": " (r.summary) } } }
        h2 { "What people did" }
        @if d.actions.is_empty() { p.empty { "Nothing yet." } } @else {
            ul #incident-audit { @for a in &d.actions { li {
                (fmt_time(a.ts)) " " (a.performed_by) " " (a.action.as_str())
                @if let Some(u) = a.shelved_until { " until " (fmt_time(u)) }
                @if let Some(n) = &a.note { ": " (n) }
            } } }
        }
    };
    Ok(s.page("/incidents", &format!("Incident on {}", i.asset_id), content))
}
