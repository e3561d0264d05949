//! Console sessions: who signed in with which key, and the session's CSRF token.
//!
//! Input: a key accepted at sign-in. Output: a random session token (set as an HttpOnly,
//! SameSite=Strict cookie, `Secure` when the browser came over https — [`Https`]) and a random
//! CSRF token every form of the session carries. State:
//! the open sessions in memory (a restart signs everyone out), each expiring after `ttl` without
//! use; at most [`MAX_SESSIONS`] (the least recently used goes first).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use subtle::ConstantTimeEq;

use crate::auth::Caller;
use crate::{ApiConfig, AppState};

/// Name of the session cookie.
pub(crate) const COOKIE: &str = "vigil_session";
/// Most sessions kept.
const MAX_SESSIONS: usize = 10_000;

/// One signed-in person.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// The key's name and scopes.
    pub(crate) caller: Caller,
    /// What every form of the session must carry.
    pub(crate) csrf: String,
    last_used: Instant,
}

impl Session {
    /// Whether `presented` is this session's CSRF token (constant time).
    pub(crate) fn csrf_ok(&self, presented: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// The open sessions.
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    ttl: Duration,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new(Duration::from_secs(12 * 3600))
    }
}

/// 32 random bytes as hex.
fn token() -> Option<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

impl Sessions {
    /// Sessions that expire after `ttl` without use.
    pub fn new(ttl: Duration) -> Sessions {
        Sessions { map: Mutex::new(HashMap::new()), ttl }
    }

    /// Opens a session for `caller`; its token, or `None` when the system has no randomness.
    pub(crate) fn open(&self, caller: Caller) -> Option<String> {
        let (id, csrf) = (token()?, token()?);
        let mut m = self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        m.retain(|_, s| now.duration_since(s.last_used) < self.ttl);
        if m.len() >= MAX_SESSIONS {
            if let Some(oldest) = m.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| k.clone()) {
                m.remove(&oldest);
            }
        }
        m.insert(id.clone(), Session { caller, csrf, last_used: now });
        Some(id)
    }

    /// The session of a token, if open and not expired (its use extends it).
    pub(crate) fn get(&self, id: &str) -> Option<Session> {
        let mut m = self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let s = m.get_mut(id)?;
        if now.duration_since(s.last_used) >= self.ttl {
            m.remove(id);
            return None;
        }
        s.last_used = now;
        Some(s.clone())
    }

    /// Whether a session is open, without extending it.
    pub(crate) fn is_open(&self, id: &str) -> bool {
        let m = self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        m.get(id).is_some_and(|s| s.last_used.elapsed() < self.ttl)
    }

    /// Closes a session.
    pub(crate) fn close(&self, id: &str) {
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id);
    }

    /// The cookie that carries a session (`None`: the one that removes it); `Secure` when the
    /// browser came over https.
    pub(crate) fn cookie(&self, id: Option<&str>, https: Https) -> String {
        let secure = if https.0 { "; Secure" } else { "" };
        match id {
            Some(id) => format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", self.ttl.as_secs()),
            None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
        }
    }
}

/// Whether the browser reached Vigil over https: `[api] secure_cookies` says so, the request
/// came with an `https` URI, or — with `[api] trust_proxy_headers` — the proxy in front says
/// so (`X-Forwarded-Proto: https`, or `Forwarded: proto=https`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Https(pub(crate) bool);

impl Https {
    pub(crate) fn of(parts: &Parts, config: &ApiConfig) -> Https {
        let scheme = parts.uri.scheme_str().is_some_and(|s| s.eq_ignore_ascii_case("https"));
        let proxied = config.trust_proxy_headers && {
            let h = &parts.headers;
            // The first value is what the client used (proxies append theirs).
            let xfp = h.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).and_then(|v| v.split(',').next());
            let fwd = h.get("forwarded").and_then(|v| v.to_str().ok()).and_then(|v| v.split(',').next()).is_some_and(|v| {
                v.split(';').filter_map(|kv| kv.trim().split_once('=')).any(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("proto") && v.trim().trim_matches('"').eq_ignore_ascii_case("https")
                })
            });
            xfp.is_some_and(|p| p.trim().eq_ignore_ascii_case("https")) || fwd
        };
        Https(config.secure_cookies || scheme || proxied)
    }
}

impl FromRequestParts<AppState> for Https {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Https::of(parts, &state.config))
    }
}

/// The session token in a `Cookie` header.
pub(crate) fn from_cookie_header(header: &str) -> Option<&str> {
    header.split(';').filter_map(|kv| kv.trim().split_once('=')).find(|(k, _)| *k == COOKIE).map(|(_, v)| v.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scope;

    fn caller() -> Caller {
        Caller { name: "ann".into(), scopes: vec![Scope::Read] }
    }

    #[test]
    fn sessions_open_check_csrf_and_close() {
        let s = Sessions::default();
        let id = s.open(caller()).unwrap();
        assert_eq!(id.len(), 64);
        let got = s.get(&id).unwrap();
        assert_eq!(got.caller.name, "ann");
        assert!(got.csrf_ok(&got.csrf.clone()));
        assert!(!got.csrf_ok(""));
        assert!(!got.csrf_ok(&got.csrf[1..]));
        assert!(s.get("nope").is_none());
        let other = s.open(caller()).unwrap();
        assert_ne!(id, other);
        assert_ne!(s.get(&other).unwrap().csrf, got.csrf);
        assert!(s.is_open(&id));
        s.close(&id);
        assert!(s.get(&id).is_none());
        assert!(!s.is_open(&id));
    }

    #[test]
    fn sessions_expire() {
        let s = Sessions::new(Duration::from_millis(20));
        let id = s.open(caller()).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        assert!(s.get(&id).is_none());
    }

    #[test]
    fn https_is_what_the_config_or_a_trusted_proxy_says() {
        let parts = |headers: &[(&str, &str)]| {
            let mut b = axum::http::Request::builder().uri("/login");
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.body(()).unwrap().into_parts().0
        };
        let plain = ApiConfig::default();
        let trusting = ApiConfig { trust_proxy_headers: true, ..ApiConfig::default() };
        let forced = ApiConfig { secure_cookies: true, ..ApiConfig::default() };
        let xfp = parts(&[("x-forwarded-proto", "https")]);
        assert_eq!(Https::of(&xfp, &plain), Https(false), "an untrusted header is ignored");
        assert_eq!(Https::of(&xfp, &trusting), Https(true));
        assert_eq!(Https::of(&parts(&[("x-forwarded-proto", "http")]), &trusting), Https(false));
        assert_eq!(Https::of(&parts(&[("forwarded", "for=1.2.3.4;proto=https")]), &trusting), Https(true));
        assert_eq!(Https::of(&parts(&[]), &forced), Https(true));
        assert_eq!(Https::of(&parts(&[]), &trusting), Https(false));
    }

    #[test]
    fn the_cookie_is_http_only_and_strict() {
        let s = Sessions::default();
        let c = s.cookie(Some("abc"), Https(false));
        assert!(c.starts_with("vigil_session=abc;") && c.contains("HttpOnly") && c.contains("SameSite=Strict"));
        assert!(!c.contains("Secure"));
        assert!(s.cookie(Some("abc"), Https(true)).ends_with("; Secure"));
        assert!(s.cookie(None, Https(false)).contains("Max-Age=0"));
        assert_eq!(from_cookie_header("a=1; vigil_session=xyz; b=2"), Some("xyz"));
        assert_eq!(from_cookie_header("a=1"), None);
    }
}
