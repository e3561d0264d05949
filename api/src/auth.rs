//! API keys with scopes, and a token bucket per key.
//!
//! Input: the `Authorization: Bearer KEY` or `X-API-Key: KEY` header. Output: the [`Caller`]
//! (key name and scopes) in the request's extensions, or 401 (no key, unknown key), 403 (the
//! route needs a scope the key lacks) or 429 with `Retry-After` (the key's bucket is empty).
//! Keys are compared in constant time, all of them every time. State: one bucket per key name.
//!
//! Guessing keys is throttled: each unknown key a client (IP address, [`ClientAddr`]) presents,
//! over REST or at the console's sign-in, takes a token from that client's bucket
//! ([`FailureLimiter`], `[api] auth_failure_burst` and `auth_failures_per_minute`); with the
//! bucket empty, the client's every attempt is 429 `auth_throttled` with `Retry-After` until it
//! refills, a right key included (so a guess cannot be confirmed while throttled).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::AppState;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read the history, reports and decisions.
    Read,
    /// Send readings.
    Ingest,
    /// Approve, reject or defer proposals; record maintenance.
    Decide,
    /// Everything, including the simulator and the golden-path demo.
    Admin,
}

impl Scope {
    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Ingest => "ingest",
            Scope::Decide => "decide",
            Scope::Admin => "admin",
        }
    }
}

/// One API key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Who holds it (in logs and in the audit log); never the key itself.
    pub name: String,
    /// The secret.
    pub key: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
}

/// The key a request was made with.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's name.
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<Scope>,
}

impl Caller {
    /// Whether the key may do what `scope` allows (`admin` may do everything).
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|s| *s == scope || *s == Scope::Admin)
    }
}

/// The keys, and the buckets of the rate limit.
pub struct Keys {
    keys: Vec<KeyConfig>,
    rate_per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Keys {
    /// Keys with a limit of `rate_per_second` requests a second per key, bursts of `burst`.
    pub fn new(keys: Vec<KeyConfig>, rate_per_second: f64, burst: u32) -> Self {
        Keys {
            keys,
            rate_per_second: rate_per_second.max(0.001),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key matching `presented`, compared with every key in constant time.
    pub fn find(&self, presented: &str) -> Option<Caller> {
        let mut found = None;
        for k in &self.keys {
            if bool::from(k.key.as_bytes().ct_eq(presented.as_bytes())) && found.is_none() {
                found = Some(Caller { name: k.name.clone(), scopes: k.scopes.clone() });
            }
        }
        found
    }

    /// Takes a token from the key's bucket; `Err(seconds)` to wait when it is empty.
    pub fn take(&self, name: &str) -> Result<(), u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let (tokens, last) = buckets.entry(name.to_string()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate_per_second).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.rate_per_second).ceil().max(1.0) as u64)
        }
    }
}

/// Clients whose failures are remembered at most (beyond it, those whose bucket has refilled
/// go first, then the least recently seen).
const MAX_CLIENTS: usize = 10_000;

/// Failed authentications per client address: a token bucket each.
pub struct FailureLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl FailureLimiter {
    /// `burst` failures at once (at least 1), `per_minute` more a minute.
    pub fn new(per_minute: f64, burst: u32) -> Self {
        FailureLimiter {
            per_second: (per_minute / 60.0).max(1e-6),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refilled(&self, tokens: f64, last: Instant, now: Instant) -> f64 {
        (tokens + now.duration_since(last).as_secs_f64() * self.per_second).min(self.burst)
    }

    /// `Err(seconds to wait)` when the client has no failures left.
    pub fn check(&self, client: IpAddr) -> Result<(), u64> {
        let buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(&(tokens, last)) = buckets.get(&client) else { return Ok(()) };
        let tokens = self.refilled(tokens, last, Instant::now());
        if tokens >= 1.0 {
            Ok(())
        } else {
            Err(((1.0 - tokens) / self.per_second).ceil().max(1.0) as u64)
        }
    }

    /// Counts a failure of the client.
    pub fn failed(&self, client: IpAddr) {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if !buckets.contains_key(&client) && buckets.len() >= MAX_CLIENTS {
            buckets.retain(|_, (t, last)| self.refilled(*t, *last, now) < self.burst);
            if buckets.len() >= MAX_CLIENTS {
                if let Some(oldest) = buckets.iter().min_by_key(|(_, (_, last))| *last).map(|(k, _)| *k) {
                    buckets.remove(&oldest);
                }
            }
        }
        let (tokens, last) = buckets.entry(client).or_insert((self.burst, now));
        *tokens = (self.refilled(*tokens, *last, now) - 1.0).max(0.0);
        *last = now;
    }

    /// Clients remembered now.
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Whether no client is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The client's address: the connection's peer, or with `[api] trust_proxy_headers` the last
/// address of `X-Forwarded-For` (the one the proxy in front added). `0.0.0.0` when neither is
/// known (a server started without connection info: every client then shares one bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// From a request's headers and extensions.
    pub fn of(headers: &HeaderMap, extensions: &axum::http::Extensions, trust_proxy: bool) -> ClientAddr {
        if trust_proxy {
            let forwarded = headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|a| a.trim().parse::<IpAddr>().ok())
                .next_back();
            if let Some(ip) = forwarded {
                return ClientAddr(ip);
            }
        }
        let peer = extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        ClientAddr(peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))
    }
}

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr::of(&parts.headers, &parts.extensions, state.config.trust_proxy_headers))
    }
}

/// 429 `auth_throttled` for a client whose failed authentications are spent.
pub(crate) fn throttled(wait: u64) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "auth_throttled",
        format!("too many failed authentications from this address; retry in {wait} s"),
    );
    e.retry_after = Some(wait);
    e
}

fn presented_key(req: &Request) -> Option<&str> {
    let h = req.headers();
    if let Some(v) = h.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    let auth = h.get("authorization")?.to_str().ok()?;
    let (scheme, key) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(key.trim())
}

/// Middleware: authenticates the key and applies its rate limit.
pub(crate) async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let Some(presented) = presented_key(&req) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "an API key is required (Authorization: Bearer KEY, or X-API-Key: KEY)",
        ));
    };
    let client = ClientAddr::of(req.headers(), req.extensions(), state.config.trust_proxy_headers);
    if let Err(wait) = state.auth_failures.check(client.0) {
        state.metrics.auth_throttled.inc();
        return Err(throttled(wait));
    }
    let Some(caller) = state.keys.find(presented) else {
        state.auth_failures.failed(client.0);
        tracing::warn!(client = %client.0, "unknown API key");
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown API key"));
    };
    if let Err(wait) = state.keys.take(&caller.name) {
        state.metrics.rate_limited.inc();
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests for key {:?}; retry in {wait} s", caller.name),
        );
        e.retry_after = Some(wait);
        return Err(e);
    }
    tracing::Span::current().record("key", caller.name.as_str());
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

/// Middleware factory: the route needs `scope`.
pub(crate) async fn require(scope: Scope, req: Request, next: Next) -> Result<Response, ApiError> {
    let allowed = req.extensions().get::<Caller>().is_some_and(|c| c.may(scope));
    if !allowed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this API key lacks the {:?} scope", scope.as_str()),
        ));
    }
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_exactly_and_admin_may_everything() {
        let keys = Keys::new(
            vec![
                KeyConfig { name: "r".into(), key: "read-key".into(), scopes: vec![Scope::Read] },
                KeyConfig { name: "a".into(), key: "admin-key".into(), scopes: vec![Scope::Admin] },
            ],
            10.0,
            2,
        );
        assert!(keys.find("read-ke").is_none());
        assert!(keys.find("read-key ").is_none());
        let r = keys.find("read-key").unwrap();
        assert!(r.may(Scope::Read) && !r.may(Scope::Decide));
        assert!(keys.find("admin-key").unwrap().may(Scope::Decide));
    }

    #[test]
    fn failures_are_limited_per_client_and_the_memory_is_bounded() {
        let f = FailureLimiter::new(60.0, 2);
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        assert!(f.check(a).is_ok());
        f.failed(a);
        assert!(f.check(a).is_ok());
        f.failed(a);
        assert_eq!(f.check(a), Err(1), "a second failure a minute refills a token in a second");
        assert!(f.check(b).is_ok(), "another client has its own bucket");
        for i in 0..(MAX_CLIENTS as u32 + 50) {
            f.failed(IpAddr::from(i.to_be_bytes()));
        }
        assert!(f.len() <= MAX_CLIENTS);
    }

    #[test]
    fn the_bucket_empties_and_refills() {
        let keys = Keys::new(vec![], 1.0, 2);
        assert!(keys.take("k").is_ok());
        assert!(keys.take("k").is_ok());
        assert_eq!(keys.take("k"), Err(1));
        // Another key has its own bucket.
        assert!(keys.take("other").is_ok());
    }
}
