//! `POST /api/v1/orders/{id}/override`: a supervisor lifts hold reasons the policy marks
//! overridable, with a reason in words. The decision (`Command::OverrideHolds`) is pure and
//! checks the state, the reasons and the caller's roles; this is the HTTP shell.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use dispatch_core::{Command, HoldReason};
use dispatch_store::{IdempotencyKey, OrderWrite, Target, WriteMeta, WriteOutcome, decision};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::orders::{expected_version, idempotency, order_response, request_id};
use crate::AppState;
use crate::auth::Principal;
use crate::policy::Active;
use crate::problem::Problem;

/// The hold reasons to lift and why.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideRequest {
    /// Reason codes holding the order now, each overridable under the policy in force.
    #[schema(example = json!(["cutoff_missed"]))]
    pub reasons: Vec<HoldReason>,
    /// Why the order may leave despite them (required; recorded on the event and the audit trail).
    #[schema(example = "customer collects at the dock tonight; agreed with their planner")]
    pub note: String,
}

/// Records the override as `principal` (the API and the console form both come here).
pub(crate) async fn override_as(
    app: &AppState,
    principal: &Principal,
    id: &str,
    req: OverrideRequest,
    expected: Option<u64>,
    idem: Option<IdempotencyKey>,
    request_id: Option<String>,
) -> Result<WriteOutcome, Problem> {
    let now = app.clock.now();
    let write = OrderWrite {
        target: Target::Id(id.to_string()),
        meta: WriteMeta { actor: principal.actor(), roles: principal.role_codes(), request_id, at: now },
        idempotency: idem,
        decide: decision(
            Command::OverrideHolds {
                reasons: req.reasons,
                note: req.note,
                roles: principal.roles.clone(),
                expected_version: expected,
            },
            now,
            app.warehouses.clone(),
            Arc::new(Active(app.policy.policy())),
        ),
    };
    let outcome = app.store.execute(write).await.map_err(|e| match e {
        dispatch_store::StoreError::Domain(dispatch_core::DomainError::NotFound) => {
            Problem::not_found(&format!("order `{id}`"))
        }
        other => other.into(),
    })?;
    crate::metrics::record_write(&outcome);
    Ok(outcome)
}

/// Override hold reasons of a held order (`override_holds`: supervisors, ops managers, admins).
#[utoipa::path(post, path = "/api/v1/orders/{id}/override", tag = "orders",
    params(("id" = String, Path, description = "Order id"),
        ("If-Match" = Option<String>, Header, description = "Expected current version")),
    request_body = OverrideRequest,
    responses((status = 200, body = dispatch_core::Order, description = "Overridden: the order as it settled (released when nothing else holds it)"),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::problem::Problem, content_type = "application/problem+json", description = "Stale If-Match, or the order is not on hold"),
        (status = 422, body = crate::problem::Problem, content_type = "application/problem+json", description = "No reasons or note, a reason not holding the order, or not overridable")),
    security(("bearer" = [])))]
pub async fn override_holds(
    State(app): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    let req: OverrideRequest = crate::extract::parse(&body)?;
    let expected = expected_version(&headers)?;
    let idem = idempotency(&headers, &principal, &format!("override:{id}"), &req)?;
    let outcome = override_as(&app, &principal, &id, req, expected, idem, request_id(&headers)).await?;
    Ok(order_response(StatusCode::OK, &outcome))
}
