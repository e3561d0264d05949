//! The web console in a real browser: `vigil demo --serve` (the real binary, real HTTP on an
//! ephemeral port) driven by Debian's headless Chromium through chromedriver.
//!
//! - Sign-in with a key sets an HttpOnly, SameSite=Strict session cookie; the fleet page lists
//!   the demo's assets and a live update (a reading that breaks a limit, posted to the API)
//!   arrives without a reload.
//! - A POST without the CSRF token, or with a wrong one, is refused and records nothing; a
//!   `read` key sees the pending decision but has no form and cannot approve; a `decide` key
//!   approves it through the form, and the decision shows in the audit log and in
//!   `GET /api/v1/decisions`.
//! - Every page loads with no console errors at 1280×800 and at phone width (no sideways scroll
//!   of the page), with a screenshot of each under `target/console-screenshots/`.
//! - SQL runs from the query box; the simulator injects an anomaly that the detectors find.
//!
//! Needs `chromium` and `chromium-driver` (the README's test command installs them). Set
//! `VIGIL_SKIP_BROWSER_TESTS=1` to skip on a machine without them (it is never skipped silently).

#[path = "support/webdriver.rs"]
mod webdriver;

#[path = "support/serving.rs"]
mod serving;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use webdriver::Browser;

const CONFIG: &str = r#"
[api]
keys = [
  { name = "admin", key = "admin-key", scopes = ["admin"] },
  { name = "planner", key = "planner-key", scopes = ["read", "decide"] },
  { name = "reader", key = "reader-key", scopes = ["read"] },
]
rate_per_second = 10000.0
rate_burst = 10000
"#;

use serving::ServerProcess as Server;

impl Server {
    /// `vigil demo --serve` over a small fleet with one degrading asset (a pending decision).
    fn demo(dir: &Path) -> Server {
        let cfg = dir.join("vigil.toml");
        std::fs::write(&cfg, CONFIG).unwrap();
        let data = dir.join("data");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
        cmd.args(["--config", cfg.to_str().unwrap(), "demo", "--serve", "--listen", "127.0.0.1:0"])
            .args(["--data-dir", data.to_str().unwrap(), "--assets", "10", "--hours", "1.5", "--seed", "3", "--workers", "2"])
            .env("VIGIL_KAFKA__COMMIT_INTERVAL_MS", "200")
            .env("VIGIL_PIPELINE__LATENESS_MS", "2000")
            .env("VIGIL_PIPELINE__IDLE_TIMEOUT_MS", "300")
            .stdout(Stdio::null());
        Server::spawn(&mut cmd)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// One HTTP request; `(status, headers, body)`.
    fn http(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<(&str, &str)>) -> (u16, String, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.addr);
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some((ct, b)) = body {
            req.push_str(&format!("Content-Type: {ct}\r\nContent-Length: {}\r\n", b.len()));
        }
        req.push_str("\r\n");
        req.push_str(body.map_or("", |(_, b)| b));
        s.write_all(req.as_bytes()).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            serving::dechunk(body)
        } else {
            body.to_string()
        };
        (status, head.to_string(), body)
    }

    fn api(&self, method: &str, path: &str, body: Option<(&str, &str)>) -> serde_json::Value {
        let (status, _, body) = self.http(method, path, &[("Authorization", "Bearer admin-key")], body);
        assert!(status < 300, "{method} {path}: {status} {body}");
        serde_json::from_str(&body).unwrap()
    }
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const WAIT: Duration = Duration::from_secs(60);

fn sign_in(b: &Browser, srv: &Server, key: &str) {
    b.goto(&srv.url("/login")).unwrap();
    b.delete_all_cookies().unwrap();
    b.goto(&srv.url("/fleet")).unwrap();
    assert!(b.current_url().unwrap().contains("/login?next=/fleet"), "not sent to sign in: {}", b.current_url().unwrap());
    b.find("#key").unwrap().send_keys(key).unwrap();
    b.find("form.login button[type=submit]").unwrap().click().unwrap();
    b.wait_for("#fleet-live", WAIT).unwrap();
}

/// The session cookie's value.
fn session_cookie(b: &Browser) -> String {
    let cookies = b.cookies().unwrap();
    let c = cookies.iter().find(|c| c["name"] == "vigil_session").expect("a session cookie");
    assert_eq!(c["httpOnly"], true, "{c}");
    assert_eq!(c["sameSite"], "Strict", "{c}");
    c["value"].as_str().unwrap().to_string()
}

/// The pending requests, the demo's (replayed history) included.
fn pending(srv: &Server) -> Vec<serde_json::Value> {
    srv.api("GET", "/api/v1/decisions/pending?include_replayed=true", None).as_array().unwrap().clone()
}

fn browser() -> Option<Browser> {
    if std::env::var("VIGIL_SKIP_BROWSER_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("VIGIL_SKIP_BROWSER_TESTS=1: the browser tests are skipped");
        return None;
    }
    Some(Browser::start().expect("chromium and chromedriver (apt-get install chromium chromium-driver)"))
}

#[test]
fn the_console_in_a_browser() {
    let Some(b) = browser() else { return };
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::demo(dir.path());
    let shots = screenshots();

    // Sign-in: a wrong key is refused with a readable message.
    b.goto(&srv.url("/")).unwrap();
    assert!(b.current_url().unwrap().ends_with("/login"), "{}", b.current_url().unwrap());
    b.find("#key").unwrap().send_keys("not-a-key").unwrap();
    b.find("form.login button[type=submit]").unwrap().click().unwrap();
    b.wait_until_text("[role=alert]", "not known", WAIT).unwrap();
    b.screenshot(&shots.join("login.png")).unwrap();

    // The planner signs in; the fleet lists the demo's assets.
    sign_in(&b, &srv, "planner-key");
    let planner_cookie = session_cookie(&b);
    let rows = b.find_all("#fleet tbody tr[data-asset]").unwrap();
    assert!(rows.len() >= 10, "the demo's 10 assets: {} rows", rows.len());
    b.wait_until_text("#fleet", "asset-0001", WAIT).unwrap();
    // The demo's period is marked as replayed history.
    b.wait_until_text("#replayed-periods", "Replayed history, not live", WAIT).unwrap();

    // A live update: a reading over the temperature limit, posted to the API, shows up as an
    // anomaly of a new asset without a reload.
    b.execute("window.__notReloaded = true; return true;", vec![]).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let reading = serde_json::json!([{
        "sensor_id": "live-probe-temperature", "asset_id": "live-probe", "sensor_type": "temperature",
        "value": 150.0, "unit": "C", "ts": now
    }]);
    srv.api("POST", "/api/v1/readings", Some(("application/json", &reading.to_string())));
    b.wait_until_text("#fleet", "live-probe", WAIT).unwrap();
    assert_eq!(b.execute("return window.__notReloaded === true;", vec![]).unwrap(), true, "the page was reloaded");
    assert!(b.find("#fleet-live").unwrap().attr("data-updated").unwrap().is_some());

    // The demo's pending decision: replayed history, so not in the live queue unless asked for.
    let waiting = pending(&srv);
    assert!(!waiting.is_empty(), "the demo asks for a decision");
    assert!(waiting.iter().all(|p| p["replayed"] == true), "{waiting:?}");
    let live = srv.api("GET", "/api/v1/decisions/pending", None);
    assert!(live.as_array().unwrap().iter().all(|p| p["replayed"] == false), "{live}");
    let request_id = waiting[0]["request_id"].as_str().unwrap().to_string();

    // A POST without the CSRF token, or with a wrong one, is refused and records nothing.
    let cookie = format!("vigil_session={planner_cookie}");
    let form = "decision=approve&rationale=forged";
    let (status, _, body) = srv.http(
        "POST",
        &format!("/decisions/{request_id}"),
        &[("Cookie", &cookie)],
        Some(("application/x-www-form-urlencoded", form)),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("CSRF"), "{body}");
    let (status, _, _) = srv.http(
        "POST",
        &format!("/decisions/{request_id}"),
        &[("Cookie", &cookie)],
        Some(("application/x-www-form-urlencoded", &format!("{form}&csrf=0123"))),
    );
    assert_eq!(status, 403);
    assert_eq!(srv.api("GET", "/api/v1/decisions", None)["total"], 0, "nothing recorded");

    // A read key sees the request but has no form, and cannot approve even with its own token.
    sign_in(&b, &srv, "reader-key");
    b.goto(&srv.url("/decisions")).unwrap();
    b.wait_until_text("#replayed-hidden", "raised while replaying history", WAIT).unwrap();
    assert!(b.find_all(&format!("#req-{request_id}")).unwrap().is_empty(), "a replayed request in the live queue");
    b.goto(&srv.url("/decisions?replayed=1")).unwrap();
    b.wait_until_text("main", "may read decisions but not make them", WAIT).unwrap();
    assert!(b.find_all("form.decide").unwrap().is_empty(), "no decision form for a read key");
    b.wait_for(&format!("#req-{request_id}"), WAIT).unwrap();
    let reader_cookie = format!("vigil_session={}", session_cookie(&b));
    let csrf = b.find("form.who input[name=csrf]").unwrap().attr("value").unwrap().unwrap();
    let (status, _, body) = srv.http(
        "POST",
        &format!("/decisions/{request_id}"),
        &[("Cookie", &reader_cookie)],
        Some(("application/x-www-form-urlencoded", &format!("decision=approve&csrf={csrf}"))),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("decide scope"), "{body}");
    assert_eq!(srv.api("GET", "/api/v1/decisions", None)["total"], 0, "nothing recorded");
    // Sign-out ends the session.
    b.find("form.who button[type=submit]").unwrap().click().unwrap();
    b.wait_for("form.login", WAIT).unwrap();
    let (status, head, _) = srv.http("GET", "/decisions", &[("Cookie", &reader_cookie)], None);
    assert_eq!(status, 303, "{head}");

    // The planner approves it through the form.
    sign_in(&b, &srv, "planner-key");
    b.goto(&srv.url("/decisions?replayed=1")).unwrap();
    let form = b.wait_for(&format!("#req-{request_id} form.decide"), WAIT).unwrap();
    form.find("input[value=approve]").unwrap().click().unwrap();
    form.find("textarea[name=rationale]").unwrap().send_keys("bearing noise confirmed on site").unwrap();
    b.screenshot(&shots.join("decisions-form.png")).unwrap();
    form.find("button[type=submit]").unwrap().click().unwrap();
    b.wait_until_text("#audit-log", "bearing noise confirmed on site", WAIT).unwrap();
    b.wait_until_text("[role=status]", "Recorded: approve", WAIT).unwrap();
    let audit = srv.api("GET", "/api/v1/decisions", None);
    assert_eq!(audit["total"], 1, "{audit}");
    let d = &audit["items"][0];
    assert_eq!(
        (d["request_id"].as_str(), d["decision"].as_str(), d["via_key"].as_str()),
        (Some(request_id.as_str()), Some("approve"), Some("planner"))
    );
    assert_eq!(d["comment"], "bearing noise confirmed on site");
    assert!(pending(&srv).iter().all(|p| p["request_id"] != request_id.as_str()), "no longer pending");

    // SQL from the query box.
    b.goto(&srv.url("/sql")).unwrap();
    let sql = b.find("#sql").unwrap();
    sql.clear().unwrap();
    sql.send_keys("SELECT count(*) AS n FROM decisions").unwrap();
    b.find("form.sql button[type=submit]").unwrap().click().unwrap();
    b.wait_until_text("#sql-summary", "1 rows", WAIT).unwrap();
    // A statement that writes is refused with a readable message.
    let sql = b.find("#sql").unwrap();
    sql.clear().unwrap();
    sql.send_keys("DROP TABLE readings").unwrap();
    b.find("form.sql button[type=submit]").unwrap().click().unwrap();
    b.wait_until_text("[role=alert]", "The query failed", WAIT).unwrap();

    // The admin injects an anomaly with the simulator, and sees it detected.
    sign_in(&b, &srv, "admin-key");
    b.goto(&srv.url("/simulator")).unwrap();
    b.wait_until_text("#simulator-status", "running", WAIT).unwrap();
    b.find("form.inject button[type=submit]").unwrap().click().unwrap();
    b.wait_until_text("[role=status]", "Injected a spike", WAIT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while b.find_all("table.anomalies tbody tr").unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the injected anomaly was not detected: {}", b.find("main").unwrap().text().unwrap());
        std::thread::sleep(Duration::from_millis(500));
    }

    // Every page, at desktop and phone width: no console errors, no sideways scroll.
    let pages = [
        ("fleet", "/fleet"),
        ("asset", "/assets/asset-0001"),
        ("decisions", "/decisions"),
        ("anomalies", "/anomalies"),
        ("drift", "/anomalies?kind=drift"),
        ("golden", "/golden"),
        ("pipeline", "/pipeline"),
        ("models", "/models"),
        ("reports", "/reports"),
        ("sql", "/sql"),
        ("simulator", "/simulator"),
    ];
    let _ = b.console_errors().unwrap();
    for (width, height, suffix) in [(1280, 800, ""), (390, 844, "-phone")] {
        b.set_viewport_size(width, height).unwrap();
        for (name, path) in pages {
            b.goto(&srv.url(path)).unwrap();
            b.wait_for("main h1", WAIT).unwrap();
            assert!(b.find_all("header.top nav a").unwrap().len() >= 9, "{path}: the navigation bar");
            let errors = b.console_errors().unwrap();
            assert!(errors.is_empty(), "{path} at {width} px logged errors: {errors:?}");
            let overflow = b.execute("return document.documentElement.scrollWidth - window.innerWidth;", vec![]).unwrap();
            assert!(overflow.as_i64().unwrap() <= 1, "{path} scrolls sideways at {width} px by {overflow} px");
            b.screenshot(&shots.join(format!("{name}{suffix}.png"))).unwrap();
        }
    }
    b.set_viewport_size(1280, 800).unwrap();

    // The golden path from its page: each step completes.
    b.goto(&srv.url("/golden")).unwrap();
    b.find("main form button[type=submit]").unwrap().click().unwrap();
    b.wait_for("#golden-steps", WAIT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let status = b.find("#golden-status").map(|e| e.text().unwrap_or_default()).unwrap_or_default();
        if status.contains("awaiting_decision") || status.contains("done") {
            break;
        }
        assert!(!status.contains("failed"), "the golden path failed: {}", b.find("main").unwrap().text().unwrap());
        assert!(Instant::now() < deadline, "the golden path did not finish: {status}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let steps = b.find("#golden-steps").unwrap().text().unwrap();
    let statuses: Vec<String> = b.find_all("#golden-steps tbody .badge").unwrap().iter().map(|e| e.text().unwrap()).collect();
    assert_eq!(statuses.len(), 6, "{steps}");
    assert!(statuses.iter().all(|s| s == "done"), "{steps}");
    b.screenshot(&shots.join("golden-run.png")).unwrap();
    assert!(b.console_errors().unwrap().is_empty());
}

/// The first number in a text ("38 anomalies in the last hour" → 38) after `before`.
fn number_after(text: &str, before: &str) -> Option<f64> {
    let at = text.find(before)? + before.len();
    let rest = text[at..].trim_start();
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    rest[..end].trim_end_matches('.').parse().ok()
}

/// The number before `after` in a text ("… 38 anomalies in the last hour" → 38).
fn number_before(text: &str, after: &str) -> Option<f64> {
    let at = text.find(after)?;
    let head = text[..at].trim_end();
    let start = head.rfind(|c: char| !(c.is_ascii_digit() || c == '.')).map_or(0, |i| i + 1);
    head[start..].parse().ok()
}

/// Every figure a page shows is the API's: the fleet (and it fits at 1280 px), the pipeline's
/// counts (which add up), and each decision request's evidence — the anomalies its prediction
/// counted, the prediction's RUL — and deadline (never after the planned work). Every
/// disagreement found is listed at the end.
#[test]
fn the_console_shows_the_api_s_numbers() {
    let Some(b) = browser() else { return };
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::demo(dir.path());
    let shots = screenshots();
    let mut wrong: Vec<String> = Vec::new();
    sign_in(&b, &srv, "admin-key");

    // The fleet's last column is on screen at 1280 px: the table fits its box.
    b.set_viewport_size(1280, 800).unwrap();
    b.goto(&srv.url("/fleet")).unwrap();
    b.wait_for("#fleet", WAIT).unwrap();
    let fit = b
        .execute(
            "const w = document.querySelector('#fleet').closest('.table-wrap'); \
             const last = document.querySelector('#fleet thead th:last-child').getBoundingClientRect(); \
             return [w.scrollWidth - w.clientWidth, Math.round(last.right - w.getBoundingClientRect().right)];",
            vec![],
        )
        .unwrap();
    b.screenshot(&shots.join("fleet-1280.png")).unwrap();
    if fit[0].as_i64().unwrap() > 0 || fit[1].as_i64().unwrap() > 0 {
        wrong.push(format!(
            "the fleet table is cut off at 1280 px: [overflow px, last column's right edge past the box px] = {fit}"
        ));
    }

    // A still picture: the simulator stopped, the pipeline's last commit covering every record.
    b.goto(&srv.url("/simulator")).unwrap();
    b.wait_until_text("#simulator-status", "running", WAIT).unwrap();
    b.find("form.inline button[type=submit]").unwrap().click().unwrap();
    b.wait_until_text("#simulator-status", "stopped", WAIT).unwrap();
    let pipeline = || {
        let (status, _, body) = srv.http("GET", "/api/v1/pipeline", &[("Authorization", "Bearer admin-key")], None);
        (status == 200).then(|| serde_json::from_str::<serde_json::Value>(&body).unwrap())
    };
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    loop {
        std::thread::sleep(Duration::from_millis(1500));
        let v = pipeline();
        if v.as_ref().is_none_or(|v| v["read_since_commit"] == 0 && Some(v) == last.as_ref()) {
            break;
        }
        assert!(Instant::now() < deadline, "the pipeline did not settle: {v:?}");
        last = v;
    }

    // Fleet: the API's assets in the API's order, with the API's figures.
    b.goto(&srv.url("/fleet")).unwrap();
    b.wait_for("#fleet", WAIT).unwrap();
    let fleet = srv.api("GET", "/api/v1/fleet", None);
    let rows = b
        .execute(
            "return [...document.querySelectorAll('#fleet tbody tr')].map(r => [...r.querySelectorAll('th,td')].map(c => c.textContent.trim()));",
            vec![],
        )
        .unwrap();
    let rows = rows.as_array().unwrap();
    let assets = fleet["assets"].as_array().unwrap();
    if rows.len() != assets.len() {
        wrong.push(format!("fleet: {} rows on the page, {} assets in the API", rows.len(), assets.len()));
    }
    let fmt = |v: &serde_json::Value, digits: usize| v.as_f64().map_or("–".to_string(), |x| format!("{x:.digits$}"));
    for (row, a) in rows.iter().zip(assets) {
        let cells: Vec<&str> = row.as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        let want = [
            a["asset_id"].as_str().unwrap().to_string(),
            a["status"].as_str().unwrap().replace('_', " "),
            fmt(&a["health"], 2),
            fmt(&a["rul_hours"], 1),
            fmt(&a["failure_probability"], 2),
            a["anomalies_24h"].to_string(),
            a["critical_24h"].to_string(),
            a["open_proposals"].as_array().unwrap().len().to_string(),
        ];
        if cells[..8] != want {
            wrong.push(format!("fleet row {:?} against the API's {want:?}", &cells[..8]));
        }
    }

    // Pipeline: the API's counts, which add up.
    b.goto(&srv.url("/pipeline")).unwrap();
    b.wait_for("#pipeline-status", WAIT).unwrap();
    b.screenshot(&shots.join("pipeline-numbers.png")).unwrap();
    match pipeline() {
        None => wrong.push(format!(
            "GET /api/v1/pipeline is not served; the page says: {}",
            b.find("#pipeline-status").unwrap().text().unwrap().replace('\n', " | ")
        )),
        Some(status) => {
            let shown = b
                .execute(
                    "return Object.fromEntries([...document.querySelectorAll('#pipeline-status [data-field]')].map(e => [e.dataset.field, e.textContent.trim()]));",
                    vec![],
                )
                .unwrap();
            let rejected: u64 = status["rejected"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
            for field in ["records_in", "committed_in", "read_since_commit", "accepted", "rejected", "waiting"] {
                let want = if field == "rejected" { rejected.to_string() } else { status[field].to_string() };
                if shown[field].as_str() != Some(want.as_str()) {
                    wrong.push(format!("pipeline {field}: page {}, API {want}", shown[field]));
                }
            }
            let n = |f: &str| status[f].as_u64().unwrap();
            if n("records_in") != n("committed_in") + n("read_since_commit")
                || n("committed_in") + n("carried_over") != n("accepted") + rejected + n("waiting") + n("redelivered")
            {
                wrong.push(format!("the pipeline's counts do not add up: {status}"));
            }
        }
    }

    // Incidents: the alarm list shows what the API lists, each row its incident.
    let listed = srv.api("GET", "/api/v1/incidents?status=all&limit=200", None);
    let listed = listed.as_array().unwrap();
    b.goto(&srv.url("/incidents?status=all")).unwrap();
    b.wait_for("#incident-count", WAIT).unwrap();
    b.screenshot(&shots.join("incidents.png")).unwrap();
    let shown = b.find("#incident-count").unwrap().text().unwrap();
    if !shown.starts_with(&format!("{} all incidents", listed.len())) {
        wrong.push(format!("incidents: page says {shown:?}, the API lists {}", listed.len()));
    }
    for i in listed.iter().take(10) {
        let id = i["incident_id"].as_str().unwrap();
        if b.find(&format!("#inc-{id}")).is_err() {
            wrong.push(format!("incident {id} is in the API, not on the page"));
        }
    }

    // Decisions: each request's evidence is what its prediction counted, from the API.
    // The demo is replayed history: its requests are listed when asked for.
    let pending = srv.api("GET", "/api/v1/decisions/pending?include_deferred=true&include_replayed=true", None);
    let pending = pending.as_array().unwrap();
    assert!(!pending.is_empty(), "the demo asks for a decision");
    b.goto(&srv.url("/decisions?replayed=1")).unwrap();
    b.wait_for("article.request", WAIT).unwrap();
    b.screenshot(&shots.join("decisions-numbers.png")).unwrap();
    for p in pending.iter().take(20) {
        let id = p["request_id"].as_str().unwrap();
        let asset = p["asset_id"].as_str().unwrap();
        // Never asked to answer after the work is planned.
        if let Some(planned) = p["scheduled_for"].as_i64() {
            if p["deadline"].as_i64().unwrap() > planned {
                wrong.push(format!("{id}: answer by {} after the work planned for {planned}", p["deadline"]));
            }
        }
        let article = b.find(&format!("#req-{id}")).unwrap();
        let evidence = article.find("details.evidence").unwrap();
        let summary = evidence.find("summary").unwrap().text().unwrap();
        let reason = p["reason"].as_str().unwrap_or_default().to_string() + " " + p["question"].as_str().unwrap_or_default();
        let said = number_before(&reason, "anomalies in the last hour").unwrap_or(0.0) as u64;
        let window = evidence.attr("data-from").unwrap().zip(evidence.attr("data-to").unwrap());
        let count = article.find_all(".evidence-count").unwrap().first().map(|e| e.text().unwrap().parse::<u64>().unwrap());
        match (window, count) {
            (Some((from, to)), Some(count)) => {
                let to_excl = to.parse::<i64>().unwrap() + 1;
                let api =
                    srv.api("GET", &format!("/api/v1/anomalies?asset_id={asset}&from={from}&to={to_excl}&limit=100000"), None);
                if count != api.as_array().unwrap().len() as u64 {
                    wrong.push(format!("{id}: evidence counts {count} anomalies, the API {}", api.as_array().unwrap().len()));
                }
                // The request's reasons count the same anomalies.
                if said != count {
                    wrong.push(format!("{id}: the reasons say {said} anomalies in the last hour, the evidence {count}"));
                }
            }
            _ => {
                wrong.push(format!("{id}: the reasons say {said} anomalies in the last hour above evidence titled \"{summary}\""))
            }
        }
        // The prediction shown is the one behind the request, with the RUL its reasons give.
        let preds = srv.api(
            "GET",
            &format!("/api/v1/predictions?asset_id={asset}&from={}&to={}", p["ts"], p["ts"].as_i64().unwrap() + 1),
            None,
        );
        let Some(pred) = preds.as_array().unwrap().iter().find(|x| x["event_id"] == p["correlation_id"]) else {
            wrong.push(format!("{id}: the prediction behind it is not in the API: {preds}"));
            continue;
        };
        let cells: Vec<String> =
            evidence.find_all("table:first-of-type tbody td").unwrap().iter().map(|c| c.text().unwrap()).collect();
        if cells.get(4).map(String::as_str) != Some(fmt(&pred["rul_hours"], 1).as_str()) {
            wrong.push(format!("{id}: RUL shown {:?}, the API's prediction {}", cells.get(4), pred["rul_hours"]));
        }
        if let Some(rul) = number_after(&reason, "remaining useful life") {
            if format!("{rul:.1}") != fmt(&pred["rul_hours"], 1) {
                wrong.push(format!("{id}: the reasons' RUL {rul} against the prediction's {}", pred["rul_hours"]));
            }
        }
    }
    assert!(b.console_errors().unwrap().is_empty());
    assert!(wrong.is_empty(), "the console disagrees with the API:\n{}", wrong.join("\n"));
}
