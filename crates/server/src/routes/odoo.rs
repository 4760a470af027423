//! `POST /webhooks/odoo`: the payload of an Odoo automation rule's "Send Webhook
//! Notification" action (`_model`, `_id`, `_action` and the chosen fields).
//!
//! Order of checks: the per-source secret (constant time; `X-Dispatchd-Secret`, or `?token=`
//! because Odoo's action cannot set headers) → the body's shape (400) → the model (422) →
//! the record is fetched from Odoo (the payload is only a hint: Odoo's webhooks are
//! fire-and-forget and may repeat) and applied like the sync applies it. 2xx only after the
//! writes committed; a duplicate changes nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use dispatch_odoo::sync::{HINT_MODELS, SyncError};
use dispatch_odoo::{HintOutcome, OdooError};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::problem::Problem;

fn refused(reason: &'static str, detail: &str) -> Response {
    // Nothing of the request is stored or logged but the reason.
    tracing::warn!(target: "dispatchd::security", reason, "Odoo webhook refused: {detail}");
    metrics::counter!("dispatchd_odoo_webhooks_total", "outcome" => reason).increment(1);
    Problem::unauthorized("the Odoo webhook secret is missing or wrong (X-Dispatchd-Secret header or ?token=)")
        .into_response()
}

fn matches_any(presented: &str, secrets: &[dispatch_integrations::Secret]) -> bool {
    // Hash both sides so the comparison takes the same time whatever the lengths.
    let p = Sha256::digest(presented.as_bytes());
    let mut ok = false;
    for s in secrets {
        let q = Sha256::digest(s.expose().as_bytes());
        ok |= bool::from(p[..].ct_eq(&q[..]));
    }
    ok
}

/// A hint from an Odoo automation rule. Authenticated by the secret configured in
/// `DISPATCHD_ODOO_WEBHOOK_SECRET`.
#[utoipa::path(post, path = "/webhooks/odoo", tag = "odoo",
    params(("X-Dispatchd-Secret" = Option<String>, Header, description = "The webhook secret (or `?token=` in the URL)"),
        ("token" = Option<String>, Query, description = "The webhook secret, for Odoo actions that cannot set headers")),
    request_body(content = Object, description = "Odoo's payload: `_model`, `_id`, `_action` and the fields the rule sends"),
    responses(
        (status = 200, description = "Fetched from Odoo and applied (or unchanged)"),
        (status = 400, description = "Malformed body, or `_model`/`_id` missing", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong secret", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A model dispatchd does not sync", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 502, description = "Odoo refused dispatchd's request (access rights, missing field)", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Odoo is unreachable; the periodic sync will pick the change up", body = crate::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn receive(
    State(app): State<Arc<AppState>>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let presented = headers
        .get("x-dispatchd-secret")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| query.iter().find(|(k, _)| k == "token").map(|(_, v)| v.clone()));
    let Some(connector) = app.odoo.get().cloned() else {
        return Ok(refused("not_configured", "the Odoo connector is not configured ([odoo] section)"));
    };
    let Some(presented) = presented.filter(|p| !p.is_empty()) else {
        return Ok(refused("missing_secret", "no secret presented"));
    };
    if connector.secrets.webhook_secrets.is_empty() || !matches_any(&presented, &connector.secrets.webhook_secrets) {
        return Ok(refused("bad_secret", "the secret does not match DISPATCHD_ODOO_WEBHOOK_SECRET"));
    }
    let payload: Value = serde_json::from_slice(&body)
        .map_err(|e| Problem::bad_request("malformed-webhook", format!("the body is not JSON: {e}")))?;
    let Some(obj) = payload.as_object() else {
        return Err(Problem::bad_request(
            "malformed-webhook",
            "the body must be a JSON object with `_model` and `_id`",
        ));
    };
    let model = obj.get("_model").and_then(Value::as_str).ok_or_else(|| {
        Problem::bad_request(
            "malformed-webhook",
            "`_model` is missing or not a string; send Odoo's \"Send Webhook Notification\" payload",
        )
    })?;
    let id = obj
        .get("_id")
        .and_then(|v| v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
        .filter(|id| *id > 0)
        .ok_or_else(|| Problem::bad_request("malformed-webhook", "`_id` is missing or not a positive record id"))?;
    if !HINT_MODELS.contains(&model) {
        metrics::counter!("dispatchd_odoo_webhooks_total", "outcome" => "unknown_model").increment(1);
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown-model",
            "Model not synced",
            format!(
                "dispatchd does not sync `{model}`; point the automation rule at one of {}",
                HINT_MODELS.join(", ")
            ),
        ));
    }
    // Only a picking's name, and only to find an order whose picking Odoo says is gone.
    let name = obj.get("name").and_then(Value::as_str).filter(|_| model == dispatch_odoo::mapping::PICKING);
    match connector.hint(model, id, name).await {
        Ok(outcome) => {
            metrics::counter!("dispatchd_odoo_webhooks_total", "outcome" => "applied").increment(1);
            Ok(axum::Json::<HintOutcome>(outcome).into_response())
        }
        Err(SyncError::Store(e)) => Err(e.into()),
        Err(SyncError::Odoo(e)) => {
            metrics::counter!("dispatchd_odoo_webhooks_total", "outcome" => e.kind()).increment(1);
            tracing::warn!(target: "dispatchd::odoo", model, id, error = %e, "Odoo webhook: fetching the record failed");
            let (status, slug, title) = match &e {
                OdooError::Unavailable { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, "odoo-unavailable", "Odoo is unreachable")
                }
                _ => (StatusCode::BAD_GATEWAY, "odoo-error", "Odoo refused the request"),
            };
            let mut p = Problem::new(
                status,
                slug,
                title,
                format!("{e}; the periodic sync will pick the change up once this is fixed"),
            );
            if status == StatusCode::SERVICE_UNAVAILABLE {
                p.retry_after = Some(30);
            }
            Err(p)
        }
    }
}
