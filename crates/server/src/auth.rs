//! Bearer API tokens. A token is `dsp_<prefix>_<secret>`: the prefix finds the record, the
//! secret is stored only as a SHA-256 hash (it is 256 random bits, so a slow password hash
//! adds nothing) and compared in constant time. Tokens are shown once, at creation.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use dispatch_core::Role;
use dispatch_core::access::{Permission, allows};
use dispatch_store::{Store, StoreError, TokenRecord};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::problem::Problem;

/// The authenticated caller, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token (or console session) the request came with.
    pub token_id: String,
    /// The token's name, or the user's name for a console session.
    pub name: String,
    /// The user the token acts for; `None` for a service token.
    pub user: Option<String>,
    /// The roles in force: the token's roles that its user (if any) still holds.
    pub roles: Vec<Role>,
}

impl Principal {
    /// How the caller appears on events and in the audit trail: the user when there is one
    /// (so two tokens of one person are one actor, as segregation of duties needs).
    pub fn actor(&self) -> String {
        match &self.user {
            Some(u) => format!("user:{u}"),
            None => format!("token:{}", self.name),
        }
    }

    pub fn role_codes(&self) -> Vec<String> {
        self.roles.iter().map(|r| r.code().to_string()).collect()
    }
}

/// A freshly made token: the secret string (to show once) and the record to store.
pub struct NewToken {
    pub token: String,
    pub record: TokenRecord,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("unknown role `{0}`; roles are: {1}")]
    UnknownRole(String, String),
    #[error("a token needs at least one role")]
    NoRoles,
    #[error("a token needs a name")]
    NoName,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub fn parse_roles(list: &str) -> Result<Vec<Role>, TokenError> {
    let mut roles = Vec::new();
    for r in list.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let role = Role::from_code(r).ok_or_else(|| {
            TokenError::UnknownRole(r.into(), Role::ALL.iter().map(|r| r.code()).collect::<Vec<_>>().join(", "))
        })?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    if roles.is_empty() {
        return Err(TokenError::NoRoles);
    }
    Ok(roles)
}

fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub fn new_token(
    name: &str,
    roles: &[Role],
    now: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
) -> Result<NewToken, TokenError> {
    if name.trim().is_empty() {
        return Err(TokenError::NoName);
    }
    if roles.is_empty() {
        return Err(TokenError::NoRoles);
    }
    let mut rng = rand::rng();
    let mut prefix = [0u8; 6];
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut prefix);
    rng.fill_bytes(&mut secret);
    let (prefix, secret) = (hex::encode(prefix), hex::encode(secret));
    Ok(NewToken {
        token: format!("dsp_{prefix}_{secret}"),
        record: TokenRecord {
            id: format!("tok_{}", uuid::Uuid::now_v7().simple()),
            name: name.trim().to_string(),
            prefix,
            secret_hash: hash_secret(&secret),
            roles: roles.iter().map(|r| r.code().to_string()).collect(),
            created_at: now,
            expires_at,
            revoked_at: None,
            last_used_at: None,
            user_id: None,
        },
    })
}

/// Creates a service token and stores it; returns the token string to show once.
pub async fn create_token(
    store: &dyn Store,
    name: &str,
    roles: &[Role],
    now: DateTime<Utc>,
) -> Result<String, crate::identity::IdentityError> {
    crate::identity::create_token(store, "cli", name, None, roles, now, None).await
}

/// Verified tokens for a few seconds, so a busy integration does not cost a database read per
/// request. Revocation therefore takes effect within [`CACHE_TTL`].
pub const CACHE_TTL: Duration = Duration::from_secs(10);

/// How often a token's `last_used_at` is written at most (per process).
const TOUCH_EVERY: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct TokenCache {
    entries: RwLock<HashMap<String, (Principal, Instant)>>,
    /// When this process last wrote each token's `last_used_at`.
    touched: std::sync::Mutex<HashMap<String, Instant>>,
}

impl TokenCache {
    /// `true` for exactly one caller per token per [`TOUCH_EVERY`]: when the cache expires
    /// under load, every in-flight request of a token misses it at once, and each writing
    /// `last_used_at` would queue that many writes behind the order writer.
    fn claim_touch(&self, token_id: &str) -> bool {
        let mut map = self.touched.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(token_id) {
            Some(at) if at.elapsed() < TOUCH_EVERY => false,
            _ => {
                if map.len() > 10_000 {
                    map.retain(|_, at| at.elapsed() < TOUCH_EVERY);
                }
                map.insert(token_id.to_string(), Instant::now());
                true
            }
        }
    }

    fn get(&self, key: &str) -> Option<Principal> {
        let map = self.entries.read().unwrap_or_else(|p| p.into_inner());
        map.get(key).filter(|(_, at)| at.elapsed() < CACHE_TTL).map(|(p, _)| p.clone())
    }

    fn forget(&self, key: &str) {
        let mut map = self.entries.write().unwrap_or_else(|p| p.into_inner());
        map.remove(key);
    }

    /// Drops every cached answer (after an in-process change of users or tokens).
    pub fn clear(&self) {
        self.entries.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn put(&self, key: String, p: Principal) {
        let mut map = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
        }
        map.insert(key, (p, Instant::now()));
    }
}

/// Resolves a bearer token to its principal, or says why not (the same answer for an unknown
/// token, a wrong secret, a revoked or expired token and a disabled user, so tokens cannot be
/// probed). With `fresh` (state-changing requests), a user's token bypasses the cache: the
/// current token and user are read, so a revocation, a disabled user or a removed role takes
/// effect on the next such request. Reads, and service tokens, may use an answer up to
/// [`CACHE_TTL`] old.
pub async fn authenticate(
    store: &Arc<dyn Store>,
    cache: &TokenCache,
    token: &str,
    now: DateTime<Utc>,
    fresh: bool,
) -> Result<Principal, Problem> {
    const BAD: &str = "the bearer token is not valid; create one with `dispatchd token create`";
    let cache_key = hash_secret(token);
    // A service token's answer may be reused for writes too (it is the bulk-sync hot path, and
    // its revocation takes effect within the TTL); a person's never is, for segregation of duties.
    if let Some(p) = cache.get(&cache_key)
        && (!fresh || p.user.is_none())
    {
        return Ok(p);
    }
    let mut parts = token.splitn(3, '_');
    let (Some("dsp"), Some(prefix), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Problem::unauthorized(BAD));
    };
    let record =
        store.token_by_prefix(prefix).await.map_err(Problem::from)?.ok_or_else(|| Problem::unauthorized(BAD))?;
    let ok: bool = hash_secret(secret).as_bytes().ct_eq(record.secret_hash.as_bytes()).into();
    if !ok || record.revoked_at.is_some() || record.expires_at.is_some_and(|e| e <= now) {
        cache.forget(&cache_key);
        return Err(Problem::unauthorized(BAD));
    }
    let mut roles: Vec<Role> = record.roles.iter().filter_map(|r| Role::from_code(r)).collect();
    let mut user = None;
    if let Some(user_id) = &record.user_id {
        let u = store.user_by_id(user_id).await.map_err(Problem::from)?;
        let Some(u) = u.filter(|u| u.disabled_at.is_none()) else {
            cache.forget(&cache_key);
            return Err(Problem::unauthorized(BAD));
        };
        // A role taken from the user is gone from all of their tokens at once.
        roles.retain(|r| u.roles.iter().any(|ur| ur == r.code()));
        user = Some(u.name);
    }
    let p = Principal { token_id: record.id.clone(), name: record.name.clone(), user, roles };
    if record.last_used_at.is_none_or(|t| now - t > chrono::Duration::minutes(1)) && cache.claim_touch(&record.id) {
        // Off the request's path: the write waits for the database's write lock, which the
        // order writer holds most of the time under load, and the request must not wait on it.
        let (store, id) = (store.clone(), record.id.clone());
        tokio::spawn(async move {
            if let Err(e) = store.touch_token(&id, now).await {
                tracing::warn!(error = %e, "could not record token use");
            }
        });
    }
    cache.put(cache_key, p.clone());
    Ok(p)
}

/// Middleware for `/api/v1`: every request needs a valid bearer token.
pub async fn require_token(State(app): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let read = matches!(*req.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    // The console's session authenticates reads only: writes need a token (or, later, a form
    // with the session's CSRF token), so a forged cross-site request can change nothing.
    if header.is_none()
        && read
        && let Some((_, p)) = crate::console::session_user(&app, req.headers()).await
    {
        req.extensions_mut().insert(p);
        return next.run(req).await;
    }
    let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer "))) else {
        return Problem::unauthorized(
            "send `Authorization: Bearer <token>`; create a token with `dispatchd token create`",
        )
        .into_response();
    };
    let fresh = !read;
    match authenticate(&app.store, &app.tokens, token.trim(), app.clock.now(), fresh).await {
        Ok(p) => {
            if let Err(retry) = app.limiters.per_token.take(&p.token_id, std::time::Instant::now()) {
                metrics::counter!("dispatchd_rate_limited_total", "by" => "token").increment(1);
                return crate::limits::too_many(retry, "this token");
            }
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(problem) => problem.into_response(),
    }
}

/// Per-route check of the route's declared permission.
pub async fn require_permission(State(permission): State<Permission>, req: Request, next: Next) -> Response {
    let Some(p) = req.extensions().get::<Principal>() else {
        return Problem::unauthorized("authentication required").into_response();
    };
    if allows(&p.roles, permission) {
        next.run(req).await
    } else {
        let roles: Vec<&str> = p.roles.iter().map(|r| r.code()).collect();
        Problem::forbidden(format!(
            "this needs the `{}` permission, which none of your roles ({}) has",
            permission.code(),
            roles.join(", ")
        ))
        .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_only_their_hash_is_kept() {
        let a = new_token("n", &[Role::Admin], Utc::now(), None).unwrap();
        let b = new_token("n", &[Role::Admin], Utc::now(), None).unwrap();
        assert_ne!(a.token, b.token);
        assert!(a.token.starts_with("dsp_"));
        assert!(!a.record.secret_hash.is_empty());
        assert!(!a.token.contains(&a.record.secret_hash));
        let secret = a.token.rsplit('_').next().unwrap();
        assert_eq!(hash_secret(secret), a.record.secret_hash);
    }

    #[test]
    fn roles_are_parsed_strictly() {
        assert_eq!(parse_roles("admin, dispatcher,admin").unwrap(), vec![Role::Admin, Role::Dispatcher]);
        assert!(matches!(parse_roles("root"), Err(TokenError::UnknownRole(..))));
        assert!(matches!(parse_roles(" , "), Err(TokenError::NoRoles)));
    }
}
