//! Abuse limits: token buckets per client IP (API and webhook routes) and per API token, a cap
//! on the size of request headers, and the settings of console sign-in throttling. Over a
//! limit the answer is 429 with `Retry-After`; nothing behind it runs.
//!
//! Buckets live in this node's memory: with several nodes each enforces its own share, which
//! is what a limit against runaway or abusive clients needs (not an exact global quota).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::problem::Problem;

/// Security settings of a server (`[security]` in the configuration file).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Requests per second each client IP may send to `/api` and `/webhooks` (sustained).
    pub per_ip_rps: f64,
    pub per_ip_burst: f64,
    /// Requests per second each API token may send (sustained).
    pub per_token_rps: f64,
    pub per_token_burst: f64,
    /// Total bytes of request header names and values; more is a 431.
    pub max_header_bytes: usize,
    /// Console cookies carry `Secure` unless this is false (only for plain-http localhost).
    pub secure_cookies: bool,
    /// Console session lifetime.
    pub session_minutes: i64,
    /// Failed sign-ins of one user name before a temporary lockout, and its length.
    pub login_failures_before_lockout: u32,
    pub lockout_secs: u64,
    /// Sign-in attempts per minute from one IP (throttling, whatever the user name).
    pub login_attempts_per_minute: f64,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            // Generous: they stop runaway clients without touching a bulk ERP sync.
            per_ip_rps: 20_000.0,
            per_ip_burst: 40_000.0,
            per_token_rps: 20_000.0,
            per_token_burst: 40_000.0,
            max_header_bytes: 16 * 1024,
            secure_cookies: true,
            session_minutes: 8 * 60,
            login_failures_before_lockout: 5,
            lockout_secs: 15 * 60,
            login_attempts_per_minute: 20.0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by key.
#[derive(Debug)]
pub struct Buckets {
    rate: f64,
    burst: f64,
    map: Mutex<HashMap<String, Bucket>>,
}

impl Buckets {
    pub fn new(rate_per_sec: f64, burst: f64) -> Self {
        Buckets { rate: rate_per_sec.max(f64::MIN_POSITIVE), burst: burst.max(1.0), map: Mutex::default() }
    }

    /// Takes one token for `key`, or says how long until one is available.
    pub fn take(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 50_000 {
            // Forget buckets that have refilled: they hold no information.
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = map.entry(key.to_string()).or_insert(Bucket { tokens: self.burst, at: now });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.rate))
        }
    }
}

/// The limiters of one server.
#[derive(Debug)]
pub struct Limiters {
    pub per_ip: Buckets,
    pub per_token: Buckets,
    pub login_per_ip: Buckets,
}

impl Limiters {
    pub fn new(c: &SecurityConfig) -> Self {
        Limiters {
            per_ip: Buckets::new(c.per_ip_rps, c.per_ip_burst),
            per_token: Buckets::new(c.per_token_rps, c.per_token_burst),
            login_per_ip: Buckets::new(c.login_attempts_per_minute / 60.0, c.login_attempts_per_minute),
        }
    }
}

/// 429 with `Retry-After` in whole seconds (at least 1).
pub fn too_many(retry: Duration, what: &str) -> Response {
    let secs = retry.as_secs() + u64::from(retry.subsec_nanos() > 0);
    let secs = secs.max(1);
    let mut r = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
        "Too many requests",
        format!("{what} sent too many requests; retry after {secs} s"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

pub fn client_ip(req: &Request) -> Option<IpAddr> {
    req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

/// Outermost guard: header size for every request; the per-IP bucket for API and webhook routes.
pub async fn guard(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let header_bytes: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if header_bytes > app.security.max_header_bytes {
        return Problem::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers-too-large",
            "Request headers too large",
            format!("request headers may total {} bytes", app.security.max_header_bytes),
        )
        .into_response();
    }
    let path = req.uri().path();
    if (path.starts_with("/api/v1/") || path.starts_with("/webhooks/"))
        && let Some(ip) = client_ip(&req)
        && let Err(retry) = app.limiters.per_ip.take(&ip.to_string(), Instant::now())
    {
        metrics::counter!("dispatchd_rate_limited_total", "by" => "ip").increment(1);
        return too_many(retry, "this address");
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let b = Buckets::new(10.0, 3.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(b.take("k", t0).is_ok());
        }
        let wait = b.take("k", t0).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100), "{wait:?}");
        // Other keys have their own bucket.
        assert!(b.take("other", t0).is_ok());
        assert!(b.take("k", t0 + Duration::from_millis(100)).is_ok());
        assert!(b.take("k", t0 + Duration::from_millis(100)).is_err());
        // Refill stops at the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(b.take("k", later).is_ok());
        }
        assert!(b.take("k", later).is_err());
    }

    #[test]
    fn retry_after_is_whole_seconds_and_at_least_one() {
        let r = too_many(Duration::from_millis(10), "x");
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let r = too_many(Duration::from_millis(2_100), "x");
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
    }
}
