//! The operations console: server-rendered pages (maud) over the same store, policy and
//! permission checks as the API. This file holds sign-in (`GET/POST /console/login`,
//! `POST /console/logout`) and the gate every other console route passes; each page is a
//! module of its own.
//!
//! - Passwords are argon2id; an unknown user, a disabled user and a wrong password get the same
//!   answer after the same work (a dummy hash is checked when there is no real one).
//! - Every form carries a CSRF token: before sign-in a double-submit token (cookie + field),
//!   after it the session's synchronizer token. Both are compared in constant time.
//! - Sign-in attempts are throttled per IP, and a user name with too many failures in a row is
//!   locked out for a while (whether or not such a user exists, so a lockout reveals nothing).
//! - Cookies are `HttpOnly`, `SameSite=Strict`, `Path=/` and `Secure` (configurable off only
//!   for plain-http localhost). Only a hash of the session id is stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, SubsecRound, Utc};
use dispatch_core::Role;
use dispatch_core::audit::AuditDraft;
use dispatch_store::SessionRecord;
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::auth::Principal;
use crate::limits::{client_ip, too_many};

pub mod approvals;
pub mod assets;
pub mod board;
pub mod exceptions;
pub mod insights;
pub mod integrations;
pub mod kpis;
pub mod layout;
pub mod order;
pub mod policy;
pub mod svg;

pub use layout::{ConsoleUser, Gate, gate};

pub const SESSION_COOKIE: &str = "dsp_session";
pub const CSRF_COOKIE: &str = "dsp_csrf";

/// Consecutive failed sign-ins per user name, and lockouts.
#[derive(Debug, Default)]
pub struct LoginGuard {
    names: Mutex<HashMap<String, (u32, Option<Instant>)>>,
}

impl LoginGuard {
    /// How long `name` stays locked, if it is.
    pub fn locked(&self, name: &str, now: Instant) -> Option<Duration> {
        let map = self.names.lock().unwrap_or_else(|p| p.into_inner());
        map.get(name).and_then(|(_, until)| until.and_then(|u| u.checked_duration_since(now)))
    }

    /// Records a failure; `true` when it starts a lockout.
    pub fn failed(&self, name: &str, now: Instant, max: u32, lockout: Duration) -> bool {
        let mut map = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, (_, until)| until.is_some_and(|u| u > now));
        }
        let e = map.entry(name.to_string()).or_insert((0, None));
        if e.1.is_some_and(|u| u <= now) {
            *e = (0, None);
        }
        e.0 += 1;
        if e.0 >= max.max(1) {
            *e = (0, Some(now + lockout));
            return true;
        }
        false
    }

    pub fn succeeded(&self, name: &str) {
        self.names.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
    }
}

pub(crate) fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set_cookie(app: &AppState, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if app.security.secure_cookies { "; Secure" } else { "" };
    let v = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} · dispatchd</title>\
         <meta name=\"viewport\" content=\"width=device-width\"><link rel=\"stylesheet\" href=\"/console/assets/console.css\"></head>\
         <body class=\"signin\"><main><h1>{t}</h1>{body}</main></body></html>",
        t = escape(title)
    )
}

fn login_form(csrf: &str, message: Option<&str>) -> String {
    let msg = message.map(|m| format!("<p role=\"alert\">{}</p>", escape(m))).unwrap_or_default();
    page(
        "Sign in",
        &format!(
            "{msg}<form method=\"post\" action=\"/console/login\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label>User <input name=\"username\" autocomplete=\"username\" required></label>\
             <label>Password <input type=\"password\" name=\"password\" autocomplete=\"current-password\" required></label>\
             <button>Sign in</button></form>",
            csrf = escape(csrf)
        ),
    )
}

/// The signed-in user of a request's session cookie (`None`: no valid session).
pub async fn session_user(app: &AppState, headers: &HeaderMap) -> Option<(SessionRecord, Principal)> {
    let id = cookie(headers, SESSION_COOKIE)?;
    let s = app.store.session(&sha256_hex(id)).await.ok()??;
    if s.expires_at <= app.clock.now() {
        return None;
    }
    let u = app.store.user_by_id(&s.user_id).await.ok()??;
    if u.disabled_at.is_some() {
        return None;
    }
    let roles = u.roles.iter().filter_map(|r| Role::from_code(r)).collect();
    let p = Principal {
        token_id: format!("session:{}", &s.id_hash[..12]),
        name: u.name.clone(),
        user: Some(u.name),
        roles,
    };
    Some((s, p))
}

/// A fresh sign-in form with a double-submit CSRF token (or, when signed in, who and a
/// sign-out form carrying the session's token).
#[utoipa::path(get, path = "/console/login", tag = "console",
    responses((status = 200, description = "The sign-in page (HTML)", content_type = "text/html")))]
pub async fn login_page(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some((s, p)) = session_user(&app, &headers).await {
        let body = format!(
            "<p>Signed in as <strong>{}</strong> ({}).</p>\
             <form method=\"post\" action=\"/console/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button>Sign out</button></form><p><a href=\"/console\">Open the dispatch board</a></p>",
            escape(p.user.as_deref().unwrap_or_default()),
            escape(&p.role_codes().join(", ")),
            escape(&s.csrf)
        );
        return Html(page("dispatchd console", &body)).into_response();
    }
    fresh_form(&app, StatusCode::OK, None)
}

fn fresh_form(app: &AppState, status: StatusCode, message: Option<&str>) -> Response {
    let csrf = random_hex();
    let mut r = (status, Html(login_form(&csrf, message))).into_response();
    r.headers_mut().append(header::SET_COOKIE, set_cookie(app, CSRF_COOKIE, &csrf, 3600));
    no_store(&mut r);
    r
}

pub(crate) fn no_store(r: &mut Response) {
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert("x-frame-options", HeaderValue::from_static("DENY"));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

pub(crate) fn forbidden_csrf(app: &AppState) -> Response {
    fresh_form(app, StatusCode::FORBIDDEN, Some("The form expired or did not come from this site; please try again."))
}

async fn parse_form<T: serde::de::DeserializeOwned>(req: Request) -> Option<(HeaderMap, T)> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024).await.ok()?;
    let form: T = serde_urlencoded::from_bytes(&bytes).ok()?;
    Some((parts.headers, form))
}

const FAILED: &str = "Sign-in failed: unknown user or wrong password.";

/// Sign in with user name and password (form fields `username`, `password`, `csrf`). The same
/// answer for an unknown user and a wrong password; throttled per IP; locked out per user name
/// after repeated failures.
#[utoipa::path(post, path = "/console/login", tag = "console",
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Signed in: session cookie set"),
        (status = 401, description = "Unknown user or wrong password (HTML form again)"),
        (status = 403, description = "Missing or wrong CSRF token"),
        (status = 429, description = "Throttled or locked out")))]
pub async fn login(State(app): State<Arc<AppState>>, req: Request) -> Response {
    let ip = client_ip(&req).map_or_else(|| "unknown".to_string(), |i| i.to_string());
    if let Err(retry) = app.limiters.login_per_ip.take(&ip, Instant::now()) {
        metrics::counter!("dispatchd_rate_limited_total", "by" => "login").increment(1);
        return too_many(retry, "this address");
    }
    // A body that is not this form carries no CSRF token either: refused the same way.
    let Some((headers, form)) = parse_form::<LoginForm>(req).await else {
        return forbidden_csrf(&app);
    };
    let cookie_csrf = cookie(&headers, CSRF_COOKIE).unwrap_or_default();
    if form.csrf.is_empty() || !same(cookie_csrf, &form.csrf) {
        return forbidden_csrf(&app);
    }
    let name = form.username.trim().to_lowercase();
    let now_i = Instant::now();
    if app.logins.locked(&name, now_i).is_some() {
        // The same answer whether or not the user exists; the password is not even checked.
        return fresh_form(
            &app,
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many failed sign-ins for this user; try again later."),
        );
    }
    let user = app.store.user_by_name(&name).await.ok().flatten();
    let stored = user.as_ref().filter(|u| u.disabled_at.is_none()).and_then(|u| u.password_hash.clone());
    let password = form.password;
    // argon2 is deliberately slow: keep it off the async workers.
    let ok = tokio::task::spawn_blocking(move || crate::identity::check_password(stored.as_deref(), &password))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|_| ok) else {
        let lockout = Duration::from_secs(app.security.lockout_secs);
        if app.logins.failed(&name, now_i, app.security.login_failures_before_lockout, lockout) {
            tracing::warn!(user = %name, "console sign-in locked after repeated failures");
            let _ = app
                .store
                .append_audit(vec![draft(&app, "system:console", "console.locked_out", &name, &headers)])
                .await;
        }
        return fresh_form(&app, StatusCode::UNAUTHORIZED, Some(FAILED));
    };
    app.logins.succeeded(&name);
    let now = app.clock.now().trunc_subsecs(6);
    let id = random_hex();
    let session = SessionRecord {
        id_hash: sha256_hex(&id),
        user_id: user.id.clone(),
        csrf: random_hex(),
        created_at: now,
        expires_at: now + chrono::Duration::minutes(app.security.session_minutes),
    };
    let mut audit = draft(&app, &format!("user:{}", user.name), "console.signed_in", &user.name, &headers);
    audit.roles = user.roles.clone();
    if let Err(e) = app.store.create_session(&session, audit).await {
        return crate::problem::Problem::from(e).into_response();
    }
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/console")]).into_response();
    let max_age = app.security.session_minutes * 60;
    r.headers_mut().append(header::SET_COOKIE, set_cookie(&app, SESSION_COOKIE, &id, max_age));
    r.headers_mut().append(header::SET_COOKIE, set_cookie(&app, CSRF_COOKIE, "", 0));
    no_store(&mut r);
    r
}

fn draft(app: &AppState, actor: &str, action: &str, user: &str, headers: &HeaderMap) -> AuditDraft {
    let at: DateTime<Utc> = app.clock.now().trunc_subsecs(6);
    AuditDraft {
        at,
        actor: actor.to_string(),
        roles: vec![],
        request_id: headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string),
        action: action.to_string(),
        subject: format!("user:{user}"),
        before: None,
        after: None,
    }
}

/// Sign out (form field `csrf`: the session's token).
#[utoipa::path(post, path = "/console/logout", tag = "console",
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Signed out: session ended, cookie cleared"),
        (status = 403, description = "Missing or wrong CSRF token")))]
pub async fn logout(State(app): State<Arc<AppState>>, req: Request) -> Response {
    let Some((headers, form)) = parse_form::<LogoutForm>(req).await else {
        return forbidden_csrf(&app);
    };
    let Some((s, p)) = session_user(&app, &headers).await else {
        let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/console/login")]).into_response();
        r.headers_mut().append(header::SET_COOKIE, set_cookie(&app, SESSION_COOKIE, "", 0));
        return r;
    };
    if form.csrf.is_empty() || !same(&s.csrf, &form.csrf) {
        return forbidden_csrf(&app);
    }
    let mut audit = draft(&app, &p.actor(), "console.signed_out", p.user.as_deref().unwrap_or_default(), &headers);
    audit.roles = p.role_codes();
    if let Err(e) = app.store.delete_session(&s.id_hash, audit).await {
        return crate::problem::Problem::from(e).into_response();
    }
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/console/login")]).into_response();
    r.headers_mut().append(header::SET_COOKIE, set_cookie(&app, SESSION_COOKIE, "", 0));
    no_store(&mut r);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockout_after_consecutive_failures_then_release() {
        let g = LoginGuard::default();
        let t0 = Instant::now();
        let lock = Duration::from_secs(60);
        for _ in 0..4 {
            assert!(!g.failed("ana", t0, 5, lock));
        }
        assert!(g.locked("ana", t0).is_none());
        assert!(g.failed("ana", t0, 5, lock));
        assert!(g.locked("ana", t0 + Duration::from_secs(59)).is_some());
        assert!(g.locked("ana", t0 + Duration::from_secs(61)).is_none());
        assert!(g.locked("bob", t0).is_none());
        // A success resets the count.
        g.failed("bob", t0, 5, lock);
        g.succeeded("bob");
        for _ in 0..4 {
            assert!(!g.failed("bob", t0, 5, lock));
        }
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; dsp_session=xyz; dsp_sessionx=no"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "b"), None);
        assert_eq!(escape("<a href=\"x\">'&"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;");
    }
}
