//! A small W3C WebDriver client for integration tests that drive a real headless Chromium.
//!
//! Include it from a test with `#[path = "support/webdriver.rs"] mod webdriver;`, then:
//!
//! ```ignore
//! let browser = webdriver::Browser::start().expect("start chromium");
//! browser.goto("http://127.0.0.1:8080/").unwrap();
//! browser.find("#name").unwrap().send_keys("pump-7").unwrap();
//! browser.find("button[type=submit]").unwrap().click().unwrap();
//! browser.wait_until_text("#result", "pump-7", Duration::from_secs(5)).unwrap();
//! assert!(browser.console_errors().unwrap().is_empty());
//! ```
//!
//! Why not a WebDriver crate (fantoccini, thirtyfour, ...)? They pull in an async runtime, an HTTP
//! stack with TLS and a few dozen crates, which costs minutes of build on the 2-core machines the
//! project builds and tests on, for a protocol that is JSON over plain HTTP/1.1 to a process on
//! loopback. This file needs only `std` and `serde_json`: it starts `chromedriver` itself, speaks
//! HTTP/1.1 over a `TcpStream` (one connection per command, `Connection: close`), and decodes
//! screenshots with a tiny base64 decoder.
//!
//! Needs Debian's `chromium` and `chromium-driver` packages (`/usr/bin/chromium`,
//! `/usr/bin/chromedriver`, same version). Overrides: `VIGIL_CHROMEDRIVER` (the driver binary,
//! default `chromedriver` on `PATH`) and `VIGIL_CHROMIUM` (the browser, default `/usr/bin/chromium`).
//!
//! Every call returns `Result<_, String>`; an error names the command and carries the WebDriver
//! error code and message (for instance `POST /element: no such element: Unable to locate
//! element: ...`), so tests can simply `.unwrap()` or `.expect()`.
//!
//! Notes from chromedriver/chromium 156 (Debian bookworm):
//! - `--no-sandbox` is required when tests run as root (CI does). A session starts in about 0.5 s.
//! - The window is not the viewport: `--window-size=1280,800` gives a 1280x657 viewport (and
//!   screenshot), since headless Chromium still reserves 143 px of window chrome. Use
//!   `Browser::set_viewport_size` when the layout width/height matters.
//! - `Element::attr("value")` returns the markup attribute, not what was typed (W3C
//!   getAttribute); read the live value with `Element::property("value")`.
//! - chromedriver's HTTP server answers `Connection: close` but does not close the socket, so a
//!   reply must be read up to its `Content-Length` (reading to end of stream hangs); shutting down
//!   the request's write half makes it drop the request unanswered, and an HTTP/1.0 request gets
//!   an empty reply. Headers come without a space after the colon (`Content-Length:916`). No
//!   chunked reply was seen, but the parser handles one.
//! - Console messages: `POST /session/{id}/se/log` with `{"type":"browser"}` works in W3C mode (as
//!   does the legacy `POST /session/{id}/log`) when the session asked for
//!   `goog:loggingPrefs: {browser: "ALL"}`. Reading the log drains it: each call returns only
//!   entries since the previous read. Entries look like
//!   `{"level":"SEVERE","message":"http://127.0.0.1:1234/ 12:20 \"boom\"","source":"console-api"}`.
//!   Besides `console.error`, uncaught exceptions and unhandled rejections
//!   (`"http://.../app.js 3:7 Uncaught Error: ..."`) and failed loads (`"http://.../favicon.ico -
//!   Failed to load resource: the server responded with a status of 404 (Not Found)"`) are SEVERE
//!   too: serve a favicon (or `<link rel="icon" href="data:,">`) when asserting that a page logs
//!   no errors. `console.warn` is WARNING and not returned by `console_errors`.
//! - Debian's `/usr/bin/chromium` is a shell wrapper that sources `/etc/chromium.d/*`; it prints a
//!   harmless `[: ...: unexpected operator` on machines where `/dev/shm` is mounted twice.

// Each test binary uses a different subset, and the module is private to the test crate.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The key under which W3C WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long `Browser::start` waits for chromedriver to report ready.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Page loads longer than this fail the command (chromedriver's default is 300 s).
const PAGE_LOAD_TIMEOUT_MS: u64 = 60_000;
/// Socket read timeout for one command; above the page-load and script timeouts.
const HTTP_TIMEOUT: Duration = Duration::from_secs(90);
/// Interval between polls in `wait_for` / `wait_until_text`.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A running `chromedriver` with one headless Chromium session.
///
/// Dropping it deletes the session (closing the browser) and stops the driver.
#[derive(Debug)]
pub struct Browser {
    session: String,
    driver: Driver,
}

/// A reference to an element on the current page of a `Browser`.
#[derive(Debug, Clone)]
pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

/// The chromedriver child process; stopped on drop.
#[derive(Debug)]
struct Driver {
    child: Child,
    port: u16,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless Chromium session.
    pub fn start() -> Result<Browser, String> {
        let driver_bin = std::env::var("VIGIL_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_string());
        let chromium = std::env::var("VIGIL_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string());
        if !Path::new(&chromium).exists() {
            return Err(format!(
                "chromium not found at {chromium} (apt-get install chromium, or set VIGIL_CHROMIUM to the browser binary)"
            ));
        }
        let port = free_port()?;
        let child = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run {driver_bin:?}: {e} (apt-get install chromium-driver, or set VIGIL_CHROMEDRIVER to the driver binary)"
                )
            })?;
        let mut driver = Driver { child, port };
        driver.wait_ready(STARTUP_TIMEOUT)?;

        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium,
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--window-size=1280,800",
                        ],
                    },
                    "goog:loggingPrefs": { "browser": "ALL" },
                    "timeouts": { "pageLoad": PAGE_LOAD_TIMEOUT_MS, "script": 30_000, "implicit": 0 },
                }
            }
        });
        let created = driver.command("POST", "/session", Some(&caps)).map_err(|e| format!("creating a chromium session: {e}"))?;
        let session = created
            .get("sessionId")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("POST /session: no sessionId in reply {created}"))?
            .to_string();
        Ok(Browser { session, driver })
    }

    /// The port chromedriver listens on (for debugging).
    pub fn driver_port(&self) -> u16 {
        self.driver.port
    }

    /// Navigates to `url` and waits for the page load to complete.
    pub fn goto(&self, url: &str) -> Result<(), String> {
        self.post("/url", &json!({ "url": url })).map(drop).map_err(|e| format!("goto {url}: {e}"))
    }

    /// The URL of the current page.
    pub fn current_url(&self) -> Result<String, String> {
        string_value(self.get("/url")?, "GET /url")
    }

    /// The title of the current page.
    pub fn title(&self) -> Result<String, String> {
        string_value(self.get("/title")?, "GET /title")
    }

    /// The serialized DOM of the current page.
    pub fn page_source(&self) -> Result<String, String> {
        string_value(self.get("/source")?, "GET /source")
    }

    /// Reloads the current page.
    pub fn refresh(&self) -> Result<(), String> {
        self.post("/refresh", &json!({})).map(drop)
    }

    /// The first element matching the CSS selector; an error if there is none.
    pub fn find(&self, css: &str) -> Result<Element<'_>, String> {
        let found = self.post("/element", &css_locator(css)).map_err(|e| format!("find({css:?}): {e}"))?;
        self.element_from(&found).map_err(|e| format!("find({css:?}): {e}"))
    }

    /// All elements matching the CSS selector (possibly none).
    pub fn find_all(&self, css: &str) -> Result<Vec<Element<'_>>, String> {
        let found = self.post("/elements", &css_locator(css)).map_err(|e| format!("find_all({css:?}): {e}"))?;
        self.elements_from(&found).map_err(|e| format!("find_all({css:?}): {e}"))
    }

    /// Polls until an element matches the CSS selector and returns the first one.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> Result<Element<'_>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut found = self.find_all(css)?;
            if !found.is_empty() {
                return Ok(found.swap_remove(0));
            }
            if Instant::now() >= deadline {
                return Err(format!("wait_for({css:?}): no matching element after {timeout:?}"));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Polls until some element matching the CSS selector has visible text containing `needle`;
    /// returns that element's text. The error quotes the texts seen at the last poll.
    pub fn wait_until_text(&self, css: &str, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut seen = Vec::new();
            for element in self.find_all(css)? {
                // The page may replace the element between finding and reading it: retry then.
                match element.text() {
                    Ok(text) if text.contains(needle) => return Ok(text),
                    Ok(text) => seen.push(text),
                    Err(e) if e.contains("stale element reference") => {}
                    Err(e) => return Err(format!("wait_until_text({css:?}, {needle:?}): {e}")),
                }
            }
            if Instant::now() >= deadline {
                let last = if seen.is_empty() { "no matching element".to_string() } else { format!("last text seen: {seen:?}") };
                return Err(format!("wait_until_text({css:?}, {needle:?}): not found after {timeout:?}; {last}"));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Runs `script` as the body of a synchronous function (use `return` to give a value, and
    /// `arguments[i]` for `args`; pass elements with `Element::as_arg`).
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value, String> {
        self.post("/execute/sync", &json!({ "script": script, "args": args })).map_err(|e| format!("execute: {e}"))
    }

    /// Resizes the browser window (the outer size, in CSS pixels). In headless Chromium 156 the
    /// page's viewport is as wide as asked but 143 px shorter (window chrome): 390x844 gives a
    /// 390x701 viewport. Use `set_viewport_size` to get an exact viewport.
    pub fn set_window_size(&self, width: u32, height: u32) -> Result<(), String> {
        self.post("/window/rect", &json!({ "width": width, "height": height })).map(drop)
    }

    /// Resizes the window so that the page's viewport (`innerWidth` x `innerHeight`) is exactly
    /// `width` x `height`, e.g. 390x844 for a phone-sized layout.
    pub fn set_viewport_size(&self, width: u32, height: u32) -> Result<(), String> {
        let (mut w, mut h) = (width, height);
        for _ in 0..3 {
            self.set_window_size(w, h)?;
            let inner = self.execute("return [window.innerWidth, window.innerHeight];", vec![])?;
            let size = |i: usize| inner.get(i).and_then(Value::as_u64).and_then(|v| u32::try_from(v).ok());
            let (Some(iw), Some(ih)) = (size(0), size(1)) else {
                return Err(format!("set_viewport_size: unexpected inner size {inner}"));
            };
            if (iw, ih) == (width, height) {
                return Ok(());
            }
            (w, h) = ((w + width).saturating_sub(iw), (h + height).saturating_sub(ih));
        }
        Err(format!("set_viewport_size({width}, {height}): the viewport would not settle at that size"))
    }

    /// Saves a PNG screenshot of the viewport to `path`, creating parent directories.
    pub fn screenshot(&self, path: &Path) -> Result<(), String> {
        let encoded = string_value(self.get("/screenshot")?, "GET /screenshot")?;
        let png = base64_decode(&encoded).map_err(|e| format!("screenshot: {e}"))?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| format!("screenshot: creating {}: {e}", parent.display()))?;
        }
        std::fs::write(path, png).map_err(|e| format!("screenshot: writing {}: {e}", path.display()))
    }

    /// The messages of SEVERE browser-log entries (console.error, uncaught exceptions, failed
    /// loads) logged since the previous call; reading the log drains it.
    pub fn console_errors(&self) -> Result<Vec<String>, String> {
        let entries = self.post("/se/log", &json!({ "type": "browser" }))?;
        let entries = entries.as_array().ok_or_else(|| format!("POST /se/log: expected an array, got {entries}"))?;
        Ok(entries
            .iter()
            .filter(|entry| entry.get("level").and_then(Value::as_str) == Some("SEVERE"))
            .map(|entry| entry.get("message").and_then(Value::as_str).map_or_else(|| entry.to_string(), str::to_string))
            .collect())
    }

    /// Deletes every cookie visible to the current page.
    pub fn delete_all_cookies(&self) -> Result<(), String> {
        self.command("DELETE", "/cookie", None).map(drop)
    }

    /// The cookies visible to the current page, as WebDriver cookie objects
    /// (`name`, `value`, `path`, `domain`, `secure`, `httpOnly`, `sameSite`, `expiry`).
    pub fn cookies(&self) -> Result<Vec<Value>, String> {
        match self.get("/cookie")? {
            Value::Array(cookies) => Ok(cookies),
            other => Err(format!("GET /cookie: expected an array, got {other}")),
        }
    }

    fn get(&self, path: &str) -> Result<Value, String> {
        self.command("GET", path, None)
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.command("POST", path, Some(body))
    }

    /// Sends a command for this session; `path` is relative to `/session/{id}`.
    fn command(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let full = format!("/session/{}{path}", self.session);
        self.driver.command(method, &full, body).map_err(|e| e.replace(&full, path))
    }

    fn element_from(&self, value: &Value) -> Result<Element<'_>, String> {
        let id = value.get(ELEMENT_KEY).and_then(Value::as_str).ok_or_else(|| format!("not an element reference: {value}"))?;
        Ok(Element { browser: self, id: id.to_string() })
    }

    fn elements_from(&self, value: &Value) -> Result<Vec<Element<'_>>, String> {
        let list = value.as_array().ok_or_else(|| format!("expected an array of elements, got {value}"))?;
        list.iter().map(|v| self.element_from(v)).collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closes the browser; the driver itself is stopped when `self.driver` drops.
        let _ = self.driver.command_within("DELETE", &format!("/session/{}", self.session), None, Duration::from_secs(15));
    }
}

impl<'a> Element<'a> {
    /// The element's rendered text (empty when it is hidden).
    pub fn text(&self) -> Result<String, String> {
        string_value(self.get("/text")?, "element text")
    }

    /// The attribute as written in the markup, `None` when absent. With chromedriver 156 this is
    /// the markup attribute even for `value`: an input's current text is `property("value")`.
    pub fn attr(&self, name: &str) -> Result<Option<String>, String> {
        match self.get(&format!("/attribute/{}", percent_encode(name)))? {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            other => Ok(Some(other.to_string())),
        }
    }

    /// A DOM property (`value`, `checked`, `selectedIndex`, ...), as JSON; `Null` when undefined.
    pub fn property(&self, name: &str) -> Result<Value, String> {
        self.get(&format!("/property/{}", percent_encode(name)))
    }

    /// Scrolls the element into view and clicks it.
    pub fn click(&self) -> Result<(), String> {
        self.post("/click", &json!({})).map(drop)
    }

    /// Types `text` into the element (after focusing it).
    pub fn send_keys(&self, text: &str) -> Result<(), String> {
        self.post("/value", &json!({ "text": text })).map(drop)
    }

    /// Clears an input or textarea.
    pub fn clear(&self) -> Result<(), String> {
        self.post("/clear", &json!({})).map(drop)
    }

    /// Whether the element is rendered visibly.
    pub fn is_displayed(&self) -> Result<bool, String> {
        let shown = self.get("/displayed")?;
        shown.as_bool().ok_or_else(|| format!("element displayed: expected a bool, got {shown}"))
    }

    /// The first descendant matching the CSS selector; an error if there is none.
    pub fn find(&self, css: &str) -> Result<Element<'a>, String> {
        let found = self.post("/element", &css_locator(css)).map_err(|e| format!("find({css:?}) in element: {e}"))?;
        self.browser.element_from(&found).map_err(|e| format!("find({css:?}) in element: {e}"))
    }

    /// All descendants matching the CSS selector.
    pub fn find_all(&self, css: &str) -> Result<Vec<Element<'a>>, String> {
        let found = self.post("/elements", &css_locator(css)).map_err(|e| format!("find_all({css:?}) in element: {e}"))?;
        self.browser.elements_from(&found).map_err(|e| format!("find_all({css:?}) in element: {e}"))
    }

    /// The element as an argument for `Browser::execute` (`arguments[i]` is then the DOM node).
    pub fn as_arg(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }

    fn get(&self, path: &str) -> Result<Value, String> {
        self.browser.command("GET", &format!("/element/{}{path}", self.id), None)
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.browser.command("POST", &format!("/element/{}{path}", self.id), Some(body))
    }
}

impl Driver {
    /// Polls `GET /status` until chromedriver says it is ready.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("chromedriver on port {} exited during startup: {status}", self.port));
            }
            let last = match self.command_within("GET", "/status", None, Duration::from_secs(2)) {
                Ok(status) if status.get("ready").and_then(Value::as_bool) == Some(true) => return Ok(()),
                Ok(status) => status.to_string(),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(format!("chromedriver on port {} not ready after {timeout:?}: {last}", self.port));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends one WebDriver command and returns its `value`, or an error quoting the
    /// WebDriver `error` and `message`.
    fn command(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        self.command_within(method, path, body, HTTP_TIMEOUT)
    }

    fn command_within(&self, method: &str, path: &str, body: Option<&Value>, timeout: Duration) -> Result<Value, String> {
        let body = body.map(Value::to_string);
        let (status, reply) =
            http_request(self.port, method, path, body.as_deref(), timeout).map_err(|e| format!("{method} {path}: {e}"))?;
        let parsed: Value = serde_json::from_slice(&reply).map_err(|e| {
            format!("{method} {path}: HTTP {status}, reply is not JSON ({e}): {}", String::from_utf8_lossy(&reply))
        })?;
        let value = match parsed {
            Value::Object(mut map) => map.remove("value").unwrap_or(Value::Null),
            other => return Err(format!("{method} {path}: HTTP {status}, unexpected reply {other}")),
        };
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            let message = value.get("message").and_then(Value::as_str).unwrap_or("");
            // Chromedriver appends "(Session info: chrome=...)" lines, which add nothing here,
            // and often repeat the error code at the start of the message.
            let message = message.strip_prefix(error).and_then(|m| m.strip_prefix(": ")).unwrap_or(message);
            let message: Vec<&str> = message.lines().filter(|l| !l.trim_start().starts_with("(Session info:")).collect();
            return Err(format!("{method} {path}: {error}: {}", message.join("\n").trim_end()));
        }
        if !(200..300).contains(&status) {
            return Err(format!("{method} {path}: HTTP {status}: {value}"));
        }
        Ok(value)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // `/shutdown` lets chromedriver close any browser it still owns; kill it if it lingers.
        let _ = http_request(self.port, "GET", "/shutdown", None, Duration::from_secs(2));
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port that was free a moment ago (bind to port 0, read it, release it).
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| format!("finding a free port: {e}"))
}

fn css_locator(css: &str) -> Value {
    json!({ "using": "css selector", "value": css })
}

fn string_value(value: Value, what: &str) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(format!("{what}: expected a string, got {other}")),
    }
}

/// Percent-encodes everything but unreserved URL characters, for use in a path segment.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One HTTP/1.1 request to 127.0.0.1:`port`; returns the status code and the (de-chunked) body.
///
/// The reply is read up to the end of its body as framed by `Content-Length` or chunked encoding,
/// not to end of stream: chromedriver answers `Connection: close` but leaves the socket open.
/// Nor may the write half be shut down early: chromedriver then drops the request unanswered.
fn http_request(port: u16, method: &str, path: &str, body: Option<&str>, timeout: Duration) -> Result<(u16, Vec<u8>), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connecting to chromedriver: {e}"))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let body = body.unwrap_or("");
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nAccept: application/json\r\n");
    if !body.is_empty() || method == "POST" {
        request.push_str(&format!("Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).map_err(|e| format!("sending request: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).map_err(|e| format!("reading reply after {} bytes: {e}", raw.len()))?;
        raw.extend_from_slice(&buf[..n]);
        if let Some(reply) = parse_response(&raw, n == 0)? {
            return Ok(reply);
        }
        if n == 0 {
            return Err(format!("connection closed mid-reply: {:?}", String::from_utf8_lossy(&raw)));
        }
    }
}

/// Parses a raw HTTP/1.1 response into status code and body, honouring `Content-Length` and
/// `Transfer-Encoding: chunked`. `Ok(None)` means more bytes are needed; `eof` says none will come.
fn parse_response(raw: &[u8], eof: bool) -> Result<Option<(u16, Vec<u8>)>, String> {
    let Some(head_end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let rest = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("malformed HTTP status line {status_line:?}"))?;
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.trim().eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse::<usize>().map_err(|_| format!("bad Content-Length {value:?}"))?);
        } else if name.trim().eq_ignore_ascii_case("transfer-encoding") && value.to_ascii_lowercase().contains("chunked") {
            chunked = true;
        }
    }
    if chunked {
        return Ok(dechunk(rest)?.map(|body| (status, body)));
    }
    match content_length {
        Some(n) if rest.len() >= n => Ok(Some((status, rest[..n].to_vec()))),
        Some(_) => Ok(None),
        None if eof => Ok(Some((status, rest.to_vec()))),
        None => Ok(None),
    }
}

/// Decodes a chunked body; `Ok(None)` while the final zero-size chunk has not arrived.
fn dechunk(mut data: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_line = String::from_utf8_lossy(&data[..line_end]);
        let size_hex = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| format!("chunked reply: bad chunk size {size_hex:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(Some(body));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Decodes standard base64 (RFC 4648 alphabet, `=` padding optional, whitespace ignored).
fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for (i, c) in text.bytes().enumerate() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return Err(format!("invalid base64 byte {c:#04x} at offset {i}")),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_known_values() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("Zg==").unwrap(), b"f");
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode("Zm9v").unwrap(), b"foo");
        assert_eq!(base64_decode("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(base64_decode("iVBORw0K\nGgo=").unwrap(), b"\x89PNG\r\n\x1a\n");
        assert!(base64_decode("Zm9v!").is_err());
    }

    #[test]
    fn parses_content_length_and_chunked_replies() {
        let reply = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length:2\r\n\r\n{}", false).unwrap();
        assert_eq!(reply, Some((200, b"{}".to_vec())));
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}", false).unwrap(), None);
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Le", false).unwrap(), None);
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\n\r\nto end", true).unwrap(), Some((200, b"to end".to_vec())));
        let chunked = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=y\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked, false).unwrap(), Some((404, b"{\"a\":1}".to_vec())));
        assert_eq!(parse_response(&chunked[..chunked.len() - 5], false).unwrap(), None);
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n{}", false).is_err());
    }
}
