//! `/api/v1/webhook-endpoints`: outbound subscriptions (n8n, portals). The signing secret is
//! shown once, at creation and at rotation, and stored only sealed by the vault.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use chrono::{DateTime, Duration, Utc};
use dispatch_core::FieldError;
use dispatch_core::outbound::EventType;
use dispatch_integrations::outbound::generate_secret;
use dispatch_store::{EndpointSecret, WebhookEndpointRow};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Principal;
use crate::extract::JsonBody;
use crate::problem::Problem;

/// How long a rotated-out secret keeps signing beside the new one, so subscribers can switch.
pub const ROTATION_OVERLAP_HOURS: i64 = 24;

/// The vault purpose (associated data) a secret is sealed for: bound to its endpoint.
pub fn secret_purpose(endpoint_id: &str) -> String {
    format!("webhook_endpoint:{endpoint_id}")
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// Where events are POSTed: an absolute `http` or `https` URL.
    #[schema(example = "https://n8n.example.com/webhook/dispatchd")]
    pub url: String,
    /// Event types to receive (see the `webhooks` of this document); empty or absent: all.
    #[serde(default)]
    #[schema(value_type = Vec<String>, example = json!(["approval.requested", "order.held"]))]
    pub event_types: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EndpointView {
    pub id: String,
    pub url: String,
    pub description: Option<String>,
    #[schema(value_type = Vec<String>)]
    pub event_types: Vec<String>,
    /// `active` or `disabled`.
    pub status: String,
    pub disabled_reason: Option<String>,
    /// Failing without a success since then (disabled after the configured number of days).
    pub failing_since: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// Signing secrets in use (2 during a rotation's overlap).
    pub active_secrets: usize,
    pub created_at: DateTime<Utc>,
}

impl EndpointView {
    fn of(e: &WebhookEndpointRow, now: DateTime<Utc>) -> EndpointView {
        EndpointView {
            id: e.id.clone(),
            url: e.url.clone(),
            description: e.description.clone(),
            event_types: e.event_types.clone(),
            status: e.status.clone(),
            disabled_reason: e.disabled_reason.clone(),
            failing_since: e.failing_since,
            last_success_at: e.last_success_at,
            active_secrets: e.secrets.iter().filter(|s| s.expires_at.is_none_or(|x| x > now)).count(),
            created_at: e.created_at,
        }
    }
}

/// An endpoint with its signing secret: shown only in this answer.
#[derive(Serialize, ToSchema)]
pub struct EndpointCreated {
    #[serde(flatten)]
    pub endpoint: EndpointView,
    /// `whsec_<base64>`: verify `webhook-signature` with it. Not shown again.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
}

#[derive(Serialize, ToSchema)]
pub struct SecretRotated {
    pub id: String,
    /// The new secret; not shown again.
    pub secret: String,
    /// Until then deliveries carry a signature with the previous secret too.
    pub previous_secret_expires_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct EndpointList {
    pub items: Vec<EndpointView>,
}

fn vault(app: &AppState) -> Result<&dispatch_integrations::Vault, Problem> {
    app.vault.as_deref().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "vault-not-configured",
            "No master key configured",
            "webhook signing secrets are stored sealed with the master key, and none is configured: set \
             DISPATCHD_MASTER_KEY (or DISPATCHD_MASTER_KEY_FILE) on every node and restart; see docs/webhooks.md",
        )
    })
}

fn validate(req: &CreateEndpoint) -> Result<Vec<String>, Problem> {
    let mut errors = Vec::new();
    match req.url.parse::<Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty()) => {}
        _ => errors.push(FieldError::new("url", "must be an absolute http:// or https:// URL")),
    }
    if req.url.len() > 2048 {
        errors.push(FieldError::new("url", "must be at most 2048 characters"));
    }
    let mut types = Vec::new();
    for (i, t) in req.event_types.iter().enumerate() {
        match EventType::parse(t) {
            Some(t) if !types.contains(&t.code().to_string()) => types.push(t.code().to_string()),
            Some(_) => {}
            None => {
                let known: Vec<&str> = EventType::ALL.iter().map(|t| t.code()).collect();
                errors.push(FieldError::new(
                    format!("event_types[{i}]"),
                    format!("unknown event type `{t}`; known: {}", known.join(", ")),
                ));
            }
        }
    }
    if req.description.as_ref().is_some_and(|d| d.chars().count() > 500) {
        errors.push(FieldError::new("description", "must be at most 500 characters"));
    }
    if errors.is_empty() { Ok(types) } else { Err(Problem::validation(errors)) }
}

/// Subscribe a URL to events. The answer holds the signing secret, once.
#[utoipa::path(post, path = "/api/v1/webhook-endpoints", tag = "webhooks", request_body = CreateEndpoint,
    responses((status = 201, body = EndpointCreated),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 503, body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn create(
    State(app): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    JsonBody(req): JsonBody<CreateEndpoint>,
) -> Result<(StatusCode, axum::Json<EndpointCreated>), Problem> {
    let event_types = validate(&req)?;
    let vault = vault(&app)?;
    let now = app.clock.now();
    let id = format!("ep_{}", uuid::Uuid::now_v7().simple());
    let secret = generate_secret();
    let row = WebhookEndpointRow {
        id: id.clone(),
        url: req.url,
        description: req.description,
        event_types,
        secrets: vec![EndpointSecret {
            sealed: vault.seal(&secret_purpose(&id), secret.expose()),
            created_at: now,
            expires_at: None,
        }],
        status: "active".into(),
        disabled_reason: None,
        failing_since: None,
        last_success_at: None,
        created_at: now,
        updated_at: now,
    };
    app.store.insert_webhook_endpoint(&row).await?;
    tracing::info!(endpoint = %id, url = %row.url, actor = %principal.actor(), "webhook endpoint created");
    let endpoint = EndpointView::of(&row, now);
    Ok((StatusCode::CREATED, axum::Json(EndpointCreated { endpoint, secret: secret.expose().to_string() })))
}

#[utoipa::path(get, path = "/api/v1/webhook-endpoints", tag = "webhooks",
    responses((status = 200, body = EndpointList)), security(("bearer" = [])))]
pub async fn list(State(app): State<Arc<AppState>>) -> Result<axum::Json<EndpointList>, Problem> {
    let now = app.clock.now();
    let items = app.store.webhook_endpoints().await?.iter().map(|e| EndpointView::of(e, now)).collect();
    Ok(axum::Json(EndpointList { items }))
}

#[utoipa::path(get, path = "/api/v1/webhook-endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = EndpointView),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_one(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<axum::Json<EndpointView>, Problem> {
    let e = app.store.webhook_endpoint(&id).await?.ok_or_else(|| Problem::not_found(&format!("endpoint `{id}`")))?;
    Ok(axum::Json(EndpointView::of(&e, app.clock.now())))
}

/// Unsubscribe: nothing more is sent (deliveries already queued fail as dead letters).
#[utoipa::path(delete, path = "/api/v1/webhook-endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 204),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn delete(
    State(app): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    if !app.store.delete_webhook_endpoint(&id).await? {
        return Err(Problem::not_found(&format!("endpoint `{id}`")));
    }
    tracing::info!(endpoint = %id, actor = %principal.actor(), "webhook endpoint deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// A new signing secret. The previous one keeps signing beside it for 24 hours (deliveries
/// carry both signatures), so the subscriber can switch without losing events.
#[utoipa::path(post, path = "/api/v1/webhook-endpoints/{id}/rotate-secret", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = SecretRotated),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 503, body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn rotate_secret(
    State(app): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<axum::Json<SecretRotated>, Problem> {
    let vault = vault(&app)?;
    let e = app.store.webhook_endpoint(&id).await?.ok_or_else(|| Problem::not_found(&format!("endpoint `{id}`")))?;
    let now = app.clock.now();
    let overlap_until = now + Duration::hours(ROTATION_OVERLAP_HOURS);
    let secret = generate_secret();
    let mut secrets = vec![EndpointSecret {
        sealed: vault.seal(&secret_purpose(&id), secret.expose()),
        created_at: now,
        expires_at: None,
    }];
    // Secrets still signing end at the overlap at the latest; expired ones are dropped.
    for s in e.secrets.into_iter().filter(|s| s.expires_at.is_none_or(|x| x > now)) {
        let expires_at = Some(s.expires_at.map_or(overlap_until, |x| x.min(overlap_until)));
        secrets.push(EndpointSecret { expires_at, ..s });
    }
    if !app.store.set_webhook_secrets(&id, &secrets, now).await? {
        return Err(Problem::not_found(&format!("endpoint `{id}`")));
    }
    tracing::info!(endpoint = %id, actor = %principal.actor(), "webhook signing secret rotated");
    Ok(axum::Json(SecretRotated { id, secret: secret.expose().to_string(), previous_secret_expires_at: overlap_until }))
}

/// Enable a disabled endpoint again (its dead letters can then be retried).
#[utoipa::path(post, path = "/api/v1/webhook-endpoints/{id}/enable", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = EndpointView),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn enable(
    State(app): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<axum::Json<EndpointView>, Problem> {
    let now = app.clock.now();
    if !app.store.set_webhook_status(&id, "active", None, now).await? {
        return Err(Problem::not_found(&format!("endpoint `{id}`")));
    }
    tracing::info!(endpoint = %id, actor = %principal.actor(), "webhook endpoint enabled");
    let e = app.store.webhook_endpoint(&id).await?.ok_or_else(|| Problem::not_found(&format!("endpoint `{id}`")))?;
    Ok(axum::Json(EndpointView::of(&e, now)))
}
