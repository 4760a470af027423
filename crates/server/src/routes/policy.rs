//! `/api/v1/policy`: read the active dispatch policy, replace it (checked as a whole first;
//! an invalid policy is refused and the running one stays), and what-if replay a candidate
//! against recorded decisions without touching live state.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use dispatch_core::{FieldError, HoldReason};
use dispatch_policy::{Policy, PolicyErrors, ReplayReport};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Principal;
use crate::policy::Pass;
use crate::problem::Problem;

#[derive(Serialize, ToSchema)]
pub struct ReasonText {
    pub code: HoldReason,
    pub title: String,
    pub text: String,
}

/// The active policy: its version (content hash), what it contains and its source.
#[derive(Serialize, ToSchema)]
pub struct PolicyInfo {
    pub name: String,
    pub description: String,
    /// `sha256:<hex>` of the source: recorded on every decision.
    pub hash: String,
    /// `embedded`, `file` or `api`.
    pub origin: String,
    pub loaded_at: DateTime<Utc>,
    pub rules: Vec<String>,
    pub priority_terms: Vec<String>,
    pub carriers: Vec<String>,
    pub exceptions: Vec<ReasonText>,
    /// The policy file (TOML).
    pub source: String,
}

#[derive(Serialize, ToSchema)]
pub struct PolicyChange {
    #[serde(flatten)]
    pub policy: PolicyInfo,
    /// Held and received orders re-evaluated under the new policy.
    pub reevaluated: Pass,
    /// Whether the change was written to the configured policy file.
    pub persisted: bool,
}

/// A body in JSON form; a policy may also be sent as TOML text.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicySource {
    /// The policy file (TOML).
    pub source: String,
    /// Replay only: decisions evaluated at or after this date (`YYYY-MM-DD`) or instant.
    #[serde(default)]
    pub since: Option<String>,
}

pub(crate) fn info(p: &Policy, origin: &str, loaded_at: DateTime<Utc>) -> PolicyInfo {
    PolicyInfo {
        name: p.name.clone(),
        description: p.description.clone(),
        hash: p.hash.clone(),
        origin: origin.to_string(),
        loaded_at,
        rules: p.rules.iter().map(|r| r.id.clone()).collect(),
        priority_terms: p.terms.iter().map(|t| t.id.clone()).collect(),
        carriers: p.carriers.known.clone(),
        exceptions: p
            .exceptions
            .iter()
            .map(|(code, (title, text))| ReasonText { code: *code, title: title.clone(), text: text.clone() })
            .collect(),
        source: p.source.clone(),
    }
}

/// The body as (source, since): JSON `{"source": ..}` or the TOML text itself.
fn body_source(headers: &HeaderMap, body: &[u8]) -> Result<(String, Option<String>), Problem> {
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = ctype.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        let s: PolicySource = crate::extract::parse(body)?;
        return Ok((s.source, s.since));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| Problem::bad_request("bad-encoding", "the policy must be UTF-8 text (TOML)"))?;
    Ok((text.to_string(), None))
}

pub(crate) fn refused(errors: PolicyErrors) -> Problem {
    let first = errors.errors.first().map(|e| e.to_string()).unwrap_or_default();
    let detail = match errors.errors.len() {
        1 => format!("the policy was refused and the running one stays: {first}"),
        n => format!("the policy was refused and the running one stays: {n} problems, the first: {first}"),
    };
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "policy-invalid", "The policy is invalid", detail).with_errors(
        errors
            .errors
            .into_iter()
            .map(|e| {
                FieldError::new(format!("{}:{}:{}", e.file, e.line, e.column), format!("{} ({})", e.message, e.kind))
            })
            .collect(),
    )
}

/// The active dispatch policy.
#[utoipa::path(get, path = "/api/v1/policy", tag = "policy",
    responses((status = 200, body = PolicyInfo)), security(("bearer" = [])))]
pub async fn get_policy(State(app): State<Arc<AppState>>) -> Response {
    let cur = app.policy.current();
    let mut resp = axum::Json(info(&cur.policy, cur.origin, cur.loaded_at)).into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("\"{}\"", cur.policy.hash)) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// Replace the dispatch policy. The whole file is checked first; an invalid one is refused
/// with every problem's line and column, and the running policy stays. Held orders are
/// re-evaluated under the new one.
#[utoipa::path(put, path = "/api/v1/policy", tag = "policy",
    request_body(content = String, content_type = "application/toml", description = "The policy file; or JSON {\"source\": \"...\"}"),
    responses((status = 200, body = PolicyChange),
        (status = 403, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Refused, with `errors[].field` = `file:line:column`", body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn put_policy(
    State(app): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<axum::Json<PolicyChange>, Problem> {
    let (source, _) = body_source(&headers, &body)?;
    let file = app.policy.file.as_ref().map_or("policy.toml".to_string(), |f| f.display().to_string());
    let policy = crate::policy::compile(&app, &source, &file).map_err(|e| {
        metrics::counter!("dispatchd_policy_refused_total", "via" => "api").increment(1);
        tracing::warn!(by = %principal.actor(), errors = %e, "policy refused");
        refused(e)
    })?;
    let _guard = app.policy.change.lock().await;
    // Recorded before the change takes effect: a change the audit log cannot record is refused.
    let prev = app.policy.current();
    let entry = crate::audit::by(
        &principal,
        &headers,
        app.clock.now(),
        "policy.changed",
        "policy",
        Some(serde_json::json!({"hash": prev.policy.hash, "name": prev.policy.name}).to_string()),
        Some(serde_json::json!({"hash": policy.hash, "name": policy.name}).to_string()),
    );
    app.store.append_audit(vec![entry]).await?;
    let mut persisted = false;
    if let Some(path) = &app.policy.file {
        // Written first, so a reload or a restart keeps what was accepted.
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, source.as_bytes()).and_then(|()| std::fs::rename(&tmp, path)).map_err(|e| {
            tracing::error!(error = %e, file = %path.display(), "cannot write the policy file");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "policy-not-saved",
                "Policy not saved",
                format!("the policy is valid but {} could not be written, so it was not activated", path.display()),
            )
        })?;
        persisted = true;
    }
    let now = app.clock.now();
    let policy = Arc::new(policy);
    app.policy.swap(policy.clone(), "api", now);
    metrics::counter!("dispatchd_policy_changes_total", "via" => "api").increment(1);
    tracing::info!(by = %principal.actor(), hash = %policy.hash, name = %policy.name, "policy changed");
    let reevaluated = crate::policy::reevaluate_held(&app, &format!("{}:policy-change", principal.actor())).await?;
    Ok(axum::Json(PolicyChange { policy: info(&policy, "api", now), reevaluated, persisted }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)] // `?sinse=` must not silently replay all of history
pub struct ReplayParams {
    since: Option<String>,
    examples: Option<usize>,
}

pub(crate) fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("`{s}` is neither a date (2026-11-24) nor an RFC 3339 instant"))
}

/// What-if: re-evaluate the recorded decisions under a candidate policy and report what would
/// have been decided differently. Changes nothing.
#[utoipa::path(post, path = "/api/v1/policy/replay", tag = "policy",
    params(("since" = Option<String>, Query, description = "Only decisions evaluated at or after this date or instant"),
           ("examples" = Option<usize>, Query, description = "How many example orders to include (default 20)")),
    request_body(content = String, content_type = "application/toml", description = "The candidate policy; or JSON {\"source\", \"since\"}"),
    responses((status = 200, body = ReplayReport),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn replay(
    State(app): State<Arc<AppState>>,
    params: Result<Query<ReplayParams>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<axum::Json<ReplayReport>, Problem> {
    let Query(params) = params.map_err(|e| Problem::bad_request("bad-query", e.body_text()))?;
    let (source, since_body) = body_source(&headers, &body)?;
    let candidate = crate::policy::compile(&app, &source, "candidate.toml").map_err(refused)?;
    let since = match params.since.or(since_body) {
        Some(s) => Some(parse_since(&s).map_err(|m| {
            Problem::bad_request("bad-query", m.clone()).with_errors(vec![FieldError::new("since", m)])
        })?),
        None => None,
    };
    let run = crate::policy::ReplayRun::new(since, params.examples.unwrap_or(20).min(200));
    let report = crate::policy::replay_event_log(
        app.store.clone(),
        Arc::new(candidate),
        app.warehouses.clone(),
        &run,
        Arc::new(|_| {}),
    )
    .await?;
    Ok(axum::Json(report))
}
