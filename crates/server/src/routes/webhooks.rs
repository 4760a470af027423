//! `POST /webhooks/carriers/{carrier}`: carrier tracking webhooks.
//!
//! Order of checks: the signature (over the raw body, every active secret, constant time) →
//! the body's shape → the replay window → the order by tracking number → one write that
//! records the event id and the order's events together. A 2xx is sent only after that
//! commit; a duplicate event id is acknowledged without writing anything.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use dispatch_core::{Command, Ctx, OrderState, TrackingStatus, TrackingUpdate, decide};
use dispatch_integrations::webhook::{self, SignatureError};
use dispatch_store::{InboundKey, OrderWrite, Target, WriteMeta};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::problem::Problem;

#[derive(Serialize, ToSchema)]
pub struct WebhookAck {
    /// `applied` (the shipment's status now), `recorded` (kept in the timeline, status
    /// unchanged: late or unknown), `duplicate` (seen before) or `ignored` (not about tracking).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_state: Option<OrderState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_status: Option<TrackingStatus>,
}

fn refused(carrier: &str, reason: &'static str, detail: &str) -> Response {
    // Nothing of the request is stored; a security log line and a metric are all it leaves.
    tracing::warn!(target: "dispatchd::security", carrier = %carrier, reason, "carrier webhook refused: {detail}");
    metrics::counter!("dispatchd_webhook_signatures_rejected_total", "carrier" => carrier.to_string(), "reason" => reason)
        .increment(1);
    Problem::unauthorized("the webhook signature is missing, invalid or expired").into_response()
}

/// A carrier's tracking event (EasyPost `Event` with a `Tracker`, or the carrier's configured
/// JSON shape), signed with `X-Hmac-Signature: hmac-sha256-hex=<hex>`.
#[utoipa::path(post, path = "/webhooks/carriers/{carrier}", tag = "carriers",
    params(("carrier" = String, Path, description = "The carrier's name in dispatchd's configuration"),
        ("X-Hmac-Signature" = String, Header, description = "hmac-sha256-hex=<hex of HMAC-SHA256(secret, raw body)>")),
    request_body(content = Object, description = "The carrier's event, as it sends it"),
    responses(
        (status = 200, description = "Committed (or a duplicate, or not about tracking)", body = WebhookAck),
        (status = 400, description = "Malformed body", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid or stale signature; unknown carrier", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No shipment with this tracking number (yet): the carrier should retry", body = crate::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn carrier(
    State(app): State<Arc<AppState>>,
    Path(carrier): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let now = app.clock.now();
    let Some(c) = app.carriers.get(&carrier).cloned() else {
        let name: String =
            carrier.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').take(40).collect();
        return Ok(refused(&name, "unknown_carrier", "no such carrier is configured"));
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    if let Err(e) = webhook::verify(&c.signature, &c.webhook_secrets, header, &body, now) {
        return Ok(refused(&carrier, e.reason(), &e.to_string()));
    }
    let event = match webhook::parse(&c.format, &body) {
        Ok(Some(e)) => e,
        Ok(None) => {
            return Ok(axum::Json(WebhookAck {
                status: "ignored",
                order_id: None,
                order_state: None,
                tracking_status: None,
            })
            .into_response());
        }
        Err(e) => return Err(Problem::bad_request("malformed-webhook", e.to_string())),
    };
    // Schemes without a timestamp header sign the event's own creation time.
    if c.signature.timestamp_header.is_none()
        && let Some(created) = event.created_at
        && let Err(e) = webhook::check_fresh(created, now, std::time::Duration::from_secs(c.signature.tolerance_secs))
    {
        return Ok(refused(&carrier, SignatureError::Stale { age_secs: 0 }.reason(), &e.to_string()));
    }
    let status = c.status_map.normalize(&event.carrier_status);
    let unknown_shipment = || {
        Problem::new(
            StatusCode::NOT_FOUND,
            "unknown-shipment",
            "Unknown shipment",
            format!("no {carrier} shipment has tracking number {}; retry later", event.tracking_number),
        )
    };
    let Some((order_id, booked_with)) = app.store.order_by_tracking(&event.tracking_number).await? else {
        return Err(unknown_shipment());
    };
    if booked_with != carrier {
        return Err(unknown_shipment());
    }
    let update = TrackingUpdate {
        carrier: carrier.clone(),
        event_id: event.event_id.clone(),
        tracking_number: event.tracking_number.clone(),
        carrier_status: event.carrier_status.clone(),
        status,
        event_time: event.event_time,
        detail: event.detail.clone(),
    };
    let warehouses = app.warehouses.clone();
    let write = OrderWrite {
        target: Target::Id(order_id),
        meta: WriteMeta {
            actor: format!("carrier:{carrier}"),
            roles: vec![],
            request_id: headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string),
            at: now,
        },
        idempotency: None,
        decide: Box::new(move |current| {
            decide(current, Command::RecordTracking { update: update.clone() }, &Ctx::new(now, &warehouses))
        }),
    };
    let event_id = event.event_id;
    let key =
        InboundKey { source: format!("carrier:{carrier}"), event_id: event_id.clone(), kind: status.code().into() };
    let outcome = app.store.execute_inbound(key, write).await?;
    crate::metrics::record_write(&outcome);
    let applied =
        outcome.order.shipment.as_ref().and_then(|s| s.tracking.as_ref()).is_some_and(|t| t.event_id == event_id);
    let ack_status = if outcome.replayed {
        metrics::counter!("dispatchd_webhook_duplicates_total", "carrier" => carrier.clone()).increment(1);
        "duplicate"
    } else {
        metrics::counter!("dispatchd_tracking_events_total", "carrier" => carrier.clone(), "status" => status.code())
            .increment(1);
        if applied { "applied" } else { "recorded" }
    };
    Ok(axum::Json(WebhookAck {
        status: ack_status,
        order_id: Some(outcome.order.id.clone()),
        order_state: Some(outcome.order.state),
        tracking_status: Some(status),
    })
    .into_response())
}
