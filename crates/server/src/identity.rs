//! Users, their tokens and their passwords: the operations behind `dispatchd user …` and
//! `dispatchd token …`, each recorded in the audit log in the same transaction as the change.
//!
//! A user holds several roles. A token acts either for a user (its roles must be a subset of
//! the user's, and a role later taken from the user is gone from the token too) or for a
//! service (`integration` machines, ERP sync). Passwords (console sign-in) are argon2id.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use chrono::{DateTime, SubsecRound, Utc};
use dispatch_core::Role;
use dispatch_core::audit::AuditDraft;
use dispatch_store::{Store, StoreError, TokenRecord, UserRecord};

use crate::auth::{TokenError, new_token};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("there is no user `{0}`")]
    NoSuchUser(String),
    #[error("there is no token `{0}` (give its id `tok_…` or its prefix)")]
    NoSuchToken(String),
    #[error("user `{user}` does not hold the role(s) {missing}; a token cannot have more than its user")]
    RolesExceedUser { user: String, missing: String },
    #[error("user `{0}` is disabled")]
    Disabled(String),
    #[error("a user name is 1 to 64 letters, digits, `.`, `_`, `-` or `@`")]
    BadName,
    #[error("a password needs at least 12 characters")]
    WeakPassword,
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn draft(actor: &str, action: &str, subject: String, before: Option<String>, after: Option<String>) -> AuditDraft {
    AuditDraft {
        at: Utc::now().trunc_subsecs(6),
        actor: actor.to_string(),
        roles: vec![],
        request_id: None,
        action: action.to_string(),
        subject,
        before,
        after,
    }
}

fn codes(roles: &[Role]) -> Vec<String> {
    roles.iter().map(|r| r.code().to_string()).collect()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

/// argon2id with the crate's defaults (19 MiB, 2 passes), salted.
pub fn hash_password(password: &str) -> Result<String, IdentityError> {
    if password.chars().count() < 12 {
        return Err(IdentityError::WeakPassword);
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| IdentityError::Hash(e.to_string()))
}

/// A hash of a password nobody knows, computed once: checked when the user is unknown or has
/// no password, so that answer takes as long as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let random = uuid::Uuid::new_v4().to_string();
        Argon2::default().hash_password(random.as_bytes()).map(|h| h.to_string()).unwrap_or_default()
    })
}

/// Checks a password against a stored hash, or (when there is none) against a dummy hash, so
/// both cost the same. argon2's verification compares in constant time.
pub fn check_password(stored: Option<&str>, password: &str) -> bool {
    let (phc, real) = match stored {
        Some(h) => (h, true),
        None => (dummy_hash(), false),
    };
    let ok = PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok());
    ok && real
}

pub async fn create_user(
    store: &dyn Store,
    actor: &str,
    name: &str,
    roles: &[Role],
    password: Option<&str>,
    now: DateTime<Utc>,
) -> Result<UserRecord, IdentityError> {
    // Names are case-insensitive: kept in lower case, looked up in lower case.
    let name = &name.trim().to_lowercase();
    if !valid_name(name) {
        return Err(IdentityError::BadName);
    }
    if roles.is_empty() {
        return Err(TokenError::NoRoles.into());
    }
    let password_hash = password.map(hash_password).transpose()?;
    let u = UserRecord {
        id: format!("usr_{}", uuid::Uuid::now_v7().simple()),
        name: name.to_string(),
        roles: codes(roles),
        password_hash,
        created_at: now.trunc_subsecs(6),
        disabled_at: None,
    };
    let after = serde_json::json!({"roles": u.roles, "password": u.password_hash.is_some()}).to_string();
    store.create_user(&u, draft(actor, "user.created", format!("user:{name}"), None, Some(after))).await?;
    Ok(u)
}

async fn user(store: &dyn Store, name: &str) -> Result<UserRecord, IdentityError> {
    store.user_by_name(&name.trim().to_lowercase()).await?.ok_or_else(|| IdentityError::NoSuchUser(name.to_string()))
}

/// Disables (or re-enables) a user: their tokens and sessions stop working at once.
pub async fn set_disabled(
    store: &dyn Store,
    actor: &str,
    name: &str,
    disabled: bool,
    now: DateTime<Utc>,
) -> Result<UserRecord, IdentityError> {
    let mut u = user(store, name).await?;
    let before = u.disabled_at.is_some();
    u.disabled_at = if disabled { u.disabled_at.or(Some(now.trunc_subsecs(6))) } else { None };
    let action = if disabled { "user.disabled" } else { "user.enabled" };
    let audit = draft(
        actor,
        action,
        format!("user:{name}"),
        Some(serde_json::json!({ "disabled": before }).to_string()),
        Some(serde_json::json!({ "disabled": disabled }).to_string()),
    );
    store.update_user(&u, audit).await?;
    Ok(u)
}

/// Replaces a user's roles; a role taken away is gone from all of the user's tokens.
pub async fn set_roles(
    store: &dyn Store,
    actor: &str,
    name: &str,
    roles: &[Role],
) -> Result<UserRecord, IdentityError> {
    if roles.is_empty() {
        return Err(TokenError::NoRoles.into());
    }
    let mut u = user(store, name).await?;
    let before = serde_json::json!({ "roles": u.roles }).to_string();
    u.roles = codes(roles);
    let after = serde_json::json!({ "roles": u.roles }).to_string();
    store
        .update_user(&u, draft(actor, "user.roles_changed", format!("user:{name}"), Some(before), Some(after)))
        .await?;
    Ok(u)
}

pub async fn set_password(store: &dyn Store, actor: &str, name: &str, password: &str) -> Result<(), IdentityError> {
    let mut u = user(store, name).await?;
    u.password_hash = Some(hash_password(password)?);
    // The audit entry says that it changed, never what to.
    store.update_user(&u, draft(actor, "user.password_changed", format!("user:{name}"), None, None)).await?;
    Ok(())
}

/// Creates a token (for `user`, or a service token without one) and returns the token string,
/// to show once.
pub async fn create_token(
    store: &dyn Store,
    actor: &str,
    name: &str,
    user_name: Option<&str>,
    roles: &[Role],
    now: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
) -> Result<String, IdentityError> {
    let mut t = new_token(name, roles, now.trunc_subsecs(6), expires_at.map(|e| e.trunc_subsecs(6)))?;
    if let Some(user_name) = user_name {
        let u = user(store, user_name).await?;
        if u.disabled_at.is_some() {
            return Err(IdentityError::Disabled(user_name.to_string()));
        }
        let missing: Vec<&str> = roles.iter().map(|r| r.code()).filter(|r| !u.roles.iter().any(|ur| ur == r)).collect();
        if !missing.is_empty() {
            return Err(IdentityError::RolesExceedUser { user: user_name.to_string(), missing: missing.join(", ") });
        }
        t.record.user_id = Some(u.id);
    }
    let after = serde_json::json!({
        "name": t.record.name, "prefix": t.record.prefix, "roles": t.record.roles,
        "user": user_name, "expires_at": t.record.expires_at,
    })
    .to_string();
    store
        .create_token(&t.record, draft(actor, "token.created", format!("token:{}", t.record.id), None, Some(after)))
        .await?;
    Ok(t.token)
}

async fn find_token(store: &dyn Store, id_or_prefix: &str) -> Result<TokenRecord, IdentityError> {
    let found = if id_or_prefix.starts_with("tok_") {
        store.tokens().await?.into_iter().find(|t| t.id == id_or_prefix)
    } else {
        store.token_by_prefix(id_or_prefix).await?
    };
    found.ok_or_else(|| IdentityError::NoSuchToken(id_or_prefix.to_string()))
}

/// Revokes a token by id or prefix; `false` when it was revoked already.
pub async fn revoke_token(
    store: &dyn Store,
    actor: &str,
    id_or_prefix: &str,
    now: DateTime<Utc>,
) -> Result<bool, IdentityError> {
    let t = find_token(store, id_or_prefix).await?;
    let audit = draft(actor, "token.revoked", format!("token:{}", t.id), None, None);
    Ok(store.revoke_token(&t.id, now.trunc_subsecs(6), audit).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_argon2id_and_checked() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(check_password(Some(&h), "correct horse battery"));
        assert!(!check_password(Some(&h), "correct horse batterx"));
        assert!(!check_password(None, "correct horse battery"));
        assert!(!check_password(Some("not a hash"), "x"));
        assert!(matches!(hash_password("short"), Err(IdentityError::WeakPassword)));
    }

    #[test]
    fn user_names_are_plain() {
        assert!(valid_name("ana.lopez@acme"));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        assert!(!valid_name(&"x".repeat(65)));
    }
}
