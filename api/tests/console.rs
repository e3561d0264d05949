//! The web console over real HTTP (no browser): sign-in and sessions, CSRF and scopes on forms,
//! every page rendering from a real history, readable error pages, the SQL box, the live stream.
//! (`pipeline/tests/console.rs` drives the same console in a real browser.)

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vigil_api::{ApiConfig, KeyConfig, Scope};

fn config() -> ApiConfig {
    let key = |name: &str, scopes: Vec<Scope>| KeyConfig { name: name.into(), key: format!("{name}-key"), scopes };
    ApiConfig {
        keys: vec![
            key("reader", vec![Scope::Read]),
            key("planner", vec![Scope::Read, Scope::Decide]),
            key("feeder", vec![Scope::Ingest]),
        ],
        ..ApiConfig::default()
    }
}

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// Signs in; the session cookie (`vigil_session=...`).
async fn sign_in(srv: &Server, key: &str) -> String {
    let r = http(srv.addr, "POST", "/login", &[FORM], Some(&format!("key={key}&next=/decisions"))).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some("/decisions"));
    let c = r.header("set-cookie").expect("a session cookie").to_string();
    assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Path=/"), "{c}");
    c.split(';').next().unwrap().to_string()
}

/// The CSRF token of a page (every page's sign-out form carries it).
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    page[at..at + 64].to_string()
}

#[tokio::test]
async fn sign_in_sessions_and_sign_out() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let srv = Server::start(dir.path(), config()).await;
    // Not signed in: pages send to the sign-in page, keeping where one was going.
    let r = http(srv.addr, "GET", "/fleet", &[], None).await;
    assert_eq!((r.status, r.header("location")), (303, Some("/login?next=/fleet")));
    let r = http(srv.addr, "GET", "/", &[], None).await;
    assert_eq!(r.header("location"), Some("/login"));
    let r = http(srv.addr, "GET", "/login", &[], None).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("<label for=\"key\">API key</label>"), "{}", r.body);
    assert!(r.header("content-security-policy").unwrap().contains("script-src 'self'"));
    // Unknown keys, and keys that cannot read, are refused with a message.
    let r = http(srv.addr, "POST", "/login", &[FORM], Some("key=nope")).await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("That key is not known"), "{}", r.body);
    let r = http(srv.addr, "POST", "/login", &[FORM], Some("key=feeder-key")).await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("cannot read"), "{}", r.body);
    // A form posted from another site is refused, sign-in included.
    let r = http(srv.addr, "POST", "/login", &[FORM, ("Sec-Fetch-Site", "cross-site")], Some("key=reader-key")).await;
    assert_eq!(r.status, 403);
    assert!(r.header("set-cookie").is_none());
    // No open redirect after signing in.
    let r = http(srv.addr, "POST", "/login", &[FORM], Some("key=reader-key&next=//evil.example/x")).await;
    assert_eq!(r.header("location"), Some("/fleet"));

    let cookie = sign_in(&srv, "reader-key").await;
    let r = http(srv.addr, "GET", "/fleet", &[("Cookie", &cookie)], None).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Signed in as <strong>reader</strong> (read)"), "{}", r.body);
    assert!(r.body.contains("data-asset=\"a1\"") && r.body.contains("data-asset=\"a2\""), "{}", r.body);
    // A forged or unknown session is no session.
    let r = http(srv.addr, "GET", "/fleet", &[("Cookie", "vigil_session=0000")], None).await;
    assert_eq!(r.status, 303);
    // Sign-out needs the CSRF token, then ends the session.
    let r = http(srv.addr, "POST", "/logout", &[FORM, ("Cookie", &cookie)], Some("csrf=wrong")).await;
    assert_eq!(r.status, 403);
    let page = http(srv.addr, "GET", "/fleet", &[("Cookie", &cookie)], None).await.body;
    let r = http(srv.addr, "POST", "/logout", &[FORM, ("Cookie", &cookie)], Some(&format!("csrf={}", csrf_of(&page)))).await;
    assert_eq!((r.status, r.header("location")), (303, Some("/login")));
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(http(srv.addr, "GET", "/fleet", &[("Cookie", &cookie)], None).await.status, 303);
    // A POST without a session gets a 401 page, not a redirect.
    let r = http(srv.addr, "POST", "/decisions/req-a1", &[FORM], Some("decision=approve")).await;
    assert_eq!(r.status, 401);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    srv.stop().await;
}

#[tokio::test]
async fn decisions_need_the_csrf_token_and_the_decide_scope() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let srv = Server::start(dir.path(), config()).await;
    let reader = sign_in(&srv, "reader-key").await;
    let page = http(srv.addr, "GET", "/decisions", &[("Cookie", &reader)], None).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Pending decisions (2)"), "{}", page.body);
    assert!(page.body.contains("Approve maintenance of a1?"));
    assert!(!page.body.contains("form class=\"decide\""), "a read key gets no decision form");
    let csrf = csrf_of(&page.body);
    // The read key cannot decide, even with its token.
    let r =
        http(srv.addr, "POST", "/decisions/req-a1", &[FORM, ("Cookie", &reader)], Some(&format!("csrf={csrf}&decision=approve")))
            .await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("that needs the decide scope"), "{}", r.body);

    let planner = sign_in(&srv, "planner-key").await;
    let page = http(srv.addr, "GET", "/decisions", &[("Cookie", &planner)], None).await.body;
    assert!(page.contains("form class=\"decide\" method=\"post\" action=\"/decisions/req-a1\""), "{page}");
    let csrf = csrf_of(&page);
    // Without the token, or with another session's, nothing is recorded.
    let body = "decision=approve&rationale=seen+on+site";
    let r = http(srv.addr, "POST", "/decisions/req-a1", &[FORM, ("Cookie", &planner)], Some(body)).await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("CSRF"), "{}", r.body);
    let other = csrf_of(&http(srv.addr, "GET", "/fleet", &[("Cookie", &reader)], None).await.body);
    let r =
        http(srv.addr, "POST", "/decisions/req-a1", &[FORM, ("Cookie", &planner)], Some(&format!("{body}&csrf={other}"))).await;
    assert_eq!(r.status, 403);
    assert!(srv.ledger.read(|b| b.decisions().is_empty()));
    // A bad choice is a readable 400.
    let r =
        http(srv.addr, "POST", "/decisions/req-a1", &[FORM, ("Cookie", &planner)], Some(&format!("csrf={csrf}&decision=maybe")))
            .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("choose approve, reject or defer"));
    // With the token, the planner approves.
    let r =
        http(srv.addr, "POST", "/decisions/req-a1", &[FORM, ("Cookie", &planner)], Some(&format!("{body}&csrf={csrf}"))).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.header("location").unwrap().starts_with("/decisions?done=Recorded"), "{:?}", r.header("location"));
    let d = srv.ledger.read(|b| b.decisions().to_vec());
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].request_id.as_str(), d[0].decision.as_str(), d[0].via_key.as_str()), ("req-a1", "approve", "planner"));
    assert_eq!(d[0].comment.as_deref(), Some("seen on site"));
    // The audit log shows it; the pending list no longer does.
    let page = http(srv.addr, "GET", "/decisions", &[("Cookie", &planner)], None).await.body;
    assert!(page.contains("Pending decisions (1)") && page.contains("seen on site"), "{page}");
    // Deciding again otherwise is a readable conflict.
    let r =
        http(srv.addr, "POST", "/decisions/req-a1", &[FORM, ("Cookie", &planner)], Some(&format!("csrf={csrf}&decision=reject")))
            .await;
    assert_eq!(r.status, 409);
    assert!(r.body.contains("was already decided"), "{}", r.body);
    // A deferral with a date.
    let r = http(
        srv.addr,
        "POST",
        "/decisions/req-a2",
        &[FORM, ("Cookie", &planner)],
        Some(&format!("csrf={csrf}&decision=defer&deferred_until=2099-01-01T08%3A00")),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(srv.ledger.read(|b| b.last_decision("req-a2").unwrap().deferred_until), Some(4_070_908_800_000 + 8 * 3_600_000));
    srv.stop().await;
}

#[tokio::test]
async fn every_page_renders_and_errors_are_readable() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let srv = Server::start(dir.path(), config()).await;
    let cookie = sign_in(&srv, "reader-key").await;
    for path in [
        "/fleet",
        "/assets/a1",
        "/assets/a1?hours=0.5&end=2026-01-01T01%3A00",
        "/decisions?asset=a1&page=0",
        "/anomalies",
        "/anomalies?kind=drift&asset=a1",
        "/anomalies?severity=critical&detector=hard_limit&from=2026-01-01",
        "/golden",
        "/pipeline",
        "/models",
        "/reports",
        "/reports?asset=a1&from=2026-01-01&to=2026-01-02",
        "/sql",
        "/simulator",
    ] {
        let r = http(srv.addr, "GET", path, &[("Cookie", &cookie)], None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert!(r.body.starts_with("<!DOCTYPE html>"), "{path}");
        for (href, _) in [("/fleet", ""), ("/decisions", ""), ("/simulator", "")] {
            assert!(r.body.contains(&format!("href=\"{href}\"")), "{path}: the navigation bar");
        }
    }
    // The asset page draws its sensor with the readings in range.
    let page = http(srv.addr, "GET", "/assets/a1?hours=3&end=2026-01-01T02%3A00", &[("Cookie", &cookie)], None).await.body;
    assert!(page.contains("<svg") && page.contains("a1-temp: 120 readings"), "{page}");
    // The report and its downloads.
    let r = http(srv.addr, "GET", "/reports/view?asset=a1", &[("Cookie", &cookie)], None).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("a1"));
    let r = http(srv.addr, "GET", "/reports/download?format=csv&asset=a1", &[("Cookie", &cookie)], None).await;
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    assert!(r.header("content-disposition").unwrap().contains("vigil-report-a1.csv"));
    // Errors are pages with the message, never a stack trace or a blank page.
    for (path, status, says) in [
        ("/anomalies?from=soon", 400, "is not a time"),
        ("/golden/nope", 404, "no golden-path run"),
        ("/reports/download?format=xml", 400, "is not csv or json"),
        ("/decisions?decision=maybe", 400, "is not approve, reject or defer"),
    ] {
        let r = http(srv.addr, "GET", path, &[("Cookie", &cookie)], None).await;
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert!(r.header("content-type").unwrap().starts_with("text/html"), "{path}");
        assert!(r.body.contains(says) && r.body.contains("role=\"alert\""), "{path}: {}", r.body);
        assert!(r.body.contains("href=\"/fleet\""), "{path}: errors keep the navigation bar");
    }
    // The console needs no pipeline to read; controlling one it does not have is a clear error.
    let page = http(srv.addr, "GET", "/simulator", &[("Cookie", &cookie)], None).await.body;
    assert!(page.contains("This server runs no simulator"), "{page}");
    srv.stop().await;
}

#[tokio::test]
async fn the_sql_box_reads_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let srv = Server::start(dir.path(), config()).await;
    let cookie = sign_in(&srv, "reader-key").await;
    let csrf = csrf_of(&http(srv.addr, "GET", "/sql", &[("Cookie", &cookie)], None).await.body);
    let q = |sql: &str| {
        format!("csrf={csrf}&sql={}", sql.replace(' ', "+").replace('*', "%2A").replace('=', "%3D").replace('\'', "%27"))
    };
    let r = http(
        srv.addr,
        "POST",
        "/sql",
        &[FORM, ("Cookie", &cookie)],
        Some(&q("SELECT asset_id, count(*) AS n FROM readings GROUP BY asset_id ORDER BY asset_id")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("2 rows in"), "{}", r.body);
    assert!(r.body.contains("<td>a1</td><td>120</td>"), "{}", r.body);
    let r = http(srv.addr, "POST", "/sql", &[FORM, ("Cookie", &cookie)], Some(&q("DROP TABLE readings"))).await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("The query failed"), "{}", r.body);
    let r = http(srv.addr, "POST", "/sql", &[FORM, ("Cookie", &cookie)], Some(&q("SELEC nonsense"))).await;
    assert_eq!(r.status, 400);
    let r = http(srv.addr, "POST", "/sql", &[FORM, ("Cookie", &cookie)], Some("sql=SELECT+1")).await;
    assert_eq!(r.status, 403, "no CSRF token");
    let r = http(
        srv.addr,
        "POST",
        "/sql/csv",
        &[FORM, ("Cookie", &cookie)],
        Some(&q("SELECT asset_id FROM readings WHERE asset_id = 'a2' LIMIT 2")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(r.body.lines().collect::<Vec<_>>(), ["asset_id", "a2", "a2"]);
    srv.stop().await;
}

#[tokio::test]
async fn the_fleet_streams_updates() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let srv = Server::start(dir.path(), config()).await;
    let cookie = sign_in(&srv, "planner-key").await;
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let req = format!("GET /fleet/live?since=stale HTTP/1.1\r\nHost: localhost\r\nCookie: {cookie}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !seen.contains("event: update") || !seen.contains("data-asset=\"a2\"") {
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf)).await.expect("an update within 20 s").unwrap();
        assert!(n > 0, "the stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("text/event-stream"), "{seen}");
    // A decision changes the version: another update follows.
    let before = seen.matches("event: update").count();
    let page = http(srv.addr, "GET", "/decisions", &[("Cookie", &cookie)], None).await.body;
    let r = http(
        srv.addr,
        "POST",
        "/decisions/req-a2",
        &[FORM, ("Cookie", &cookie)],
        Some(&format!("csrf={}&decision=reject", csrf_of(&page))),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    while seen.matches("event: update").count() == before {
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf)).await.expect("a second update").unwrap();
        assert!(n > 0);
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // Signing out ends the stream.
    let r = http(srv.addr, "POST", "/logout", &[FORM, ("Cookie", &cookie)], Some(&format!("csrf={}", csrf_of(&page)))).await;
    assert_eq!(r.status, 303);
    let mut tail = String::new();
    loop {
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf)).await.expect("the stream ends after sign-out").unwrap();
        tail.push_str(&String::from_utf8_lossy(&buf[..n]));
        // The end of the body: the connection closes, or the last (empty) chunk arrives.
        if n == 0 || tail.ends_with("\r\n0\r\n\r\n") || tail == "0\r\n\r\n" {
            break;
        }
    }
    srv.stop().await;
}
