//! Audit entries for actions that are not order events (policy changes, reprocessing, sign-in):
//! who (actor and roles), in which request, what, to what, before and after.

use axum::http::HeaderMap;
use chrono::{DateTime, SubsecRound, Utc};
use dispatch_core::audit::AuditDraft;

use crate::auth::Principal;

pub fn request_id(headers: &HeaderMap) -> Option<String> {
    headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// An entry by the caller of this request.
pub fn by(
    p: &Principal,
    headers: &HeaderMap,
    at: DateTime<Utc>,
    action: &str,
    subject: impl Into<String>,
    before: Option<String>,
    after: Option<String>,
) -> AuditDraft {
    AuditDraft {
        at: at.trunc_subsecs(6),
        actor: p.actor(),
        roles: p.role_codes(),
        request_id: request_id(headers),
        action: action.to_string(),
        subject: subject.into(),
        before,
        after,
    }
}
