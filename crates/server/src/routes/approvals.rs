//! Approvals of dispatch exceptions: request one on an order, list the caller's inbox, read a
//! request with its history, decide a step. The rules (routing, segregation of duties, step
//! roles, one decision per person and step) are `core::approval` and the policy's; this file
//! parses, authorizes and renders.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use dispatch_core::approval::{ApprovalDraft, ApprovalRequest, ApprovalStatus, Verdict, order_of};
use dispatch_core::{Command, EventData, FieldError, Order, OrderState, Role};
use dispatch_store::{OrderWrite, Target, WriteMeta, decision};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::orders::{TimelineEntry, expected_version, idempotency, request_id};
use crate::AppState;
use crate::auth::Principal;
use crate::extract::JsonBody;
use crate::policy::Active;
use crate::problem::Problem;

/// The order a request is about, in brief.
#[derive(Serialize, ToSchema)]
pub struct ApprovalOrder {
    pub id: String,
    pub external_id: String,
    pub warehouse: String,
    pub state: OrderState,
    pub version: u64,
    pub customer: String,
    /// Goods value of the order.
    pub value: f64,
}

/// A request with what an approver needs to act on it.
#[derive(Serialize, ToSchema)]
pub struct ApprovalView {
    #[serde(flatten)]
    pub request: ApprovalRequest,
    pub order: ApprovalOrder,
    /// Index (from 0) of the step to decide now; `null` once closed.
    pub current_step: Option<usize>,
    /// Roles that may decide the current step now.
    pub waiting_for: Vec<Role>,
    /// When the current step escalates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_at: Option<DateTime<Utc>>,
    /// Whether the caller may decide the current step.
    pub you_may_decide: bool,
    /// Every event of this request on the order's log (only on `GET /approvals/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<TimelineEntry>>,
}

#[derive(Serialize, ToSchema)]
pub struct ApprovalList {
    pub items: Vec<ApprovalView>,
    /// Always `null`: every match is returned.
    pub next_cursor: Option<String>,
}

/// `POST /api/v1/approvals/{id}/decisions`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// `approve` or `reject`.
    pub decision: Verdict,
    /// Required to reject.
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the parameters; parsing is strict and by hand below
pub struct ApprovalParams {
    /// `me`: the pending steps the caller may decide now.
    inbox: Option<String>,
    /// `pending` (default without `inbox`), `approved`, `rejected`, `expired`, `withdrawn`, `cancelled`.
    status: Option<String>,
    kind: Option<String>,
    /// Only this order's requests.
    order: Option<String>,
}

pub(crate) fn view(order: &Order, a: &ApprovalRequest, p: &Principal) -> ApprovalView {
    let current = a.current_step();
    ApprovalView {
        request: a.clone(),
        order: ApprovalOrder {
            id: order.id.clone(),
            external_id: order.facts.external_id.clone(),
            warehouse: order.facts.warehouse.clone(),
            state: order.state,
            version: order.version,
            customer: order.facts.customer.name.clone(),
            value: order.facts.order_value(),
        },
        current_step: current.map(|(i, _)| i),
        waiting_for: current.map(|(_, s)| s.waiting_for()).unwrap_or_default(),
        due_at: current.and_then(|(_, s)| if s.escalated_at.is_none() { s.due_at } else { None }),
        you_may_decide: a.decidable_by(&p.actor(), &p.roles),
        history: None,
    }
}

fn with_etag(status: StatusCode, body: &ApprovalView) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", body.order.version)) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/approvals/{}", body.request.id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// Put an exception of an order up for approval. The policy's decision table routes it: to
/// people (steps of roles), or auto-approved within policy.
#[utoipa::path(post, path = "/api/v1/orders/{id}/approval-requests", tag = "approvals", request_body = ApprovalDraft,
    params(("id" = String, Path, description = "Order id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Same key and body: the first answer again")),
    responses(
        (status = 201, description = "Requested (and routed; `status` is `approved` when the policy auto-approved it)", body = ApprovalView),
        (status = 403, description = "Role may not request approvals", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "A request of this kind is pending, or the order has left", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing reason, cost center, lines …, named; or no route", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn request(
    State(app): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(draft): JsonBody<ApprovalDraft>,
) -> Result<Response, Problem> {
    let idem = idempotency(&headers, &principal, &format!("request_approval:{id}"), &draft)?;
    let v = request_as(&app, &principal, &id, draft, idem, request_id(&headers)).await?;
    Ok(with_etag(StatusCode::CREATED, &v))
}

/// Requests an approval as `principal` (the API's and the console's shared path).
pub(crate) async fn request_as(
    app: &AppState,
    principal: &Principal,
    id: &str,
    draft: ApprovalDraft,
    idem: Option<dispatch_store::IdempotencyKey>,
    request_id: Option<String>,
) -> Result<ApprovalView, Problem> {
    let id = id.to_string();
    let now = app.clock.now();
    let kind = draft.kind.clone();
    let write = OrderWrite {
        target: Target::Id(id.clone()),
        meta: WriteMeta { actor: principal.actor(), roles: principal.role_codes(), request_id, at: now },
        idempotency: idem,
        decide: decision(
            Command::RequestApproval {
                draft: Box::new(draft),
                requester: principal.actor(),
                roles: principal.roles.clone(),
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
    crate::approvals::observe(&outcome.order, now);
    let a = outcome.order.approvals.iter().rev().find(|a| a.draft.kind == kind).ok_or_else(Problem::internal)?;
    Ok(view(&outcome.order, a, principal))
}

/// Approval requests: `?inbox=me` for the steps the caller may decide now; otherwise by
/// status (default `pending`), kind or order.
#[utoipa::path(get, path = "/api/v1/approvals", tag = "approvals", params(ApprovalParams),
    responses((status = 200, body = ApprovalList), (status = 400, body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<axum::Json<ApprovalList>, Problem> {
    let bad = |field: &str, msg: String| {
        Problem::bad_request("bad-query", msg.clone()).with_errors(vec![FieldError::new(field, msg)])
    };
    let (mut inbox, mut status, mut kind, mut order) = (false, None, None, None);
    for (k, v) in &params {
        match k.as_str() {
            "inbox" if v == "me" => inbox = true,
            "inbox" => return Err(bad("inbox", format!("inbox must be `me`, not `{v}`"))),
            "status" => {
                status = Some(ApprovalStatus::from_code(v).ok_or_else(|| {
                    bad(
                        "status",
                        format!(
                            "unknown status `{v}`; use pending, approved, rejected, expired, withdrawn or cancelled"
                        ),
                    )
                })?)
            }
            "kind" => kind = Some(v.clone()),
            "order" => order = Some(v.clone()),
            other => {
                return Err(bad(other, format!("unknown query parameter `{other}`; use inbox, status, kind, order")));
            }
        }
    }
    let status = status.unwrap_or(ApprovalStatus::Pending);
    // Pending requests keep their order `awaiting_approval`; closed ones are read per order.
    let orders: Vec<Order> = match &order {
        Some(id) => app.store.order(id).await?.into_iter().collect(),
        None if status == ApprovalStatus::Pending || inbox => crate::approvals::awaiting_orders(&app).await?,
        None => {
            return Err(bad(
                "order",
                "closed requests are listed per order: add `order=<id>` (or read the order's timeline)".into(),
            ));
        }
    };
    let actor = principal.actor();
    let mut items: Vec<ApprovalView> = orders
        .iter()
        .flat_map(|o| o.approvals.iter().map(move |a| (o, a)))
        .filter(|(_, a)| a.status == status || (inbox && a.status == ApprovalStatus::Pending))
        .filter(|(_, a)| !inbox || a.decidable_by(&actor, &principal.roles))
        .filter(|(_, a)| kind.as_ref().is_none_or(|k| &a.draft.kind == k))
        .map(|(o, a)| view(o, a, &principal))
        .collect();
    // Most urgent first: the earliest escalation, then the oldest request.
    items.sort_by(|a, b| {
        (a.due_at.is_none(), a.due_at, a.request.created_at).cmp(&(b.due_at.is_none(), b.due_at, b.request.created_at))
    });
    Ok(axum::Json(ApprovalList { items, next_cursor: None }))
}

async fn load(app: &AppState, id: &str) -> Result<Order, Problem> {
    let missing = || {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            format!("approval request `{id}` does not exist; list open ones with GET /api/v1/approvals?inbox=me"),
        )
    };
    let order_id = order_of(id).ok_or_else(missing)?;
    let order = app.store.order(&order_id).await?.ok_or_else(missing)?;
    if !order.approvals.iter().any(|a| a.id == id) {
        return Err(missing());
    }
    Ok(order)
}

fn is_about(data: &EventData, id: &str) -> bool {
    match data {
        EventData::ApprovalRequested { request } => request.id == id,
        EventData::ApprovalDecided { approval_id, .. }
        | EventData::ApprovalEscalated { approval_id, .. }
        | EventData::ApprovalClosed { approval_id, .. }
        | EventData::Split { approval_id, .. } => approval_id == id,
        _ => false,
    }
}

/// One request with its steps, decisions and history (who, in which role, when, under which
/// policy).
#[utoipa::path(get, path = "/api/v1/approvals/{id}", tag = "approvals",
    params(("id" = String, Path, description = "Approval request id (`apr_…`)")),
    responses((status = 200, body = ApprovalView), (status = 404, body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_one(
    State(app): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let order = load(&app, &id).await?;
    let a = order.approvals.iter().find(|a| a.id == id).ok_or_else(Problem::internal)?;
    let mut v = view(&order, a, &principal);
    let events = app.store.events(&order.id).await?;
    v.history = Some(
        events
            .into_iter()
            .filter(|e| is_about(&e.data, &id))
            .map(|event| TimelineEntry { summary: dispatch_core::event::summary(&event.data), event })
            .collect(),
    );
    Ok(with_etag(StatusCode::OK, &v))
}

/// Approve or reject the current step. The caller must hold one of the step's roles now and
/// must not be the requester; one decision per person per step. Of two approvers acting at
/// once exactly one decision is applied; the other gets a 409.
#[utoipa::path(post, path = "/api/v1/approvals/{id}/decisions", tag = "approvals", request_body = DecisionRequest,
    params(("id" = String, Path, description = "Approval request id"),
        ("If-Match" = Option<String>, Header, description = "The order version the approver looked at; a stale one is a 409")),
    responses(
        (status = 200, description = "Recorded; `status` says whether the request is now approved or rejected", body = ApprovalView),
        (status = 403, description = "Not one of the step's roles, or your own request", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already decided (by someone else, or by you on this step), or expired", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A rejection without a comment", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn decide(
    State(app): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<DecisionRequest>,
) -> Result<Response, Problem> {
    let expected = expected_version(&headers)?;
    let v = decide_as(&app, &principal, &id, body, expected, request_id(&headers)).await?;
    Ok(with_etag(StatusCode::OK, &v))
}

/// Records a decision as `principal` (the API's and the console's shared path).
pub(crate) async fn decide_as(
    app: &AppState,
    principal: &Principal,
    id: &str,
    body: DecisionRequest,
    expected: Option<u64>,
    request_id: Option<String>,
) -> Result<ApprovalView, Problem> {
    let id = id.to_string();
    let order_id = order_of(&id).ok_or_else(|| {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", format!("approval request `{id}` does not exist"))
    })?;
    let now = app.clock.now();
    let write = OrderWrite {
        target: Target::Id(order_id),
        meta: WriteMeta { actor: principal.actor(), roles: principal.role_codes(), request_id, at: now },
        idempotency: None,
        decide: decision(
            Command::DecideApproval {
                approval_id: id.clone(),
                actor: principal.actor(),
                roles: principal.roles.clone(),
                verdict: body.decision,
                comment: body.comment.clone().filter(|c| !c.trim().is_empty()),
                expected_version: expected,
            },
            now,
            app.warehouses.clone(),
            Arc::new(Active(app.policy.policy())),
        ),
    };
    let outcome = app.store.execute(write).await.map_err(|e| match e {
        dispatch_store::StoreError::Domain(dispatch_core::DomainError::NotFound) => Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            format!("approval request `{id}` does not exist"),
        ),
        other => other.into(),
    })?;
    crate::metrics::record_write(&outcome);
    crate::approvals::observe(&outcome.order, now);
    let a = outcome.order.approvals.iter().find(|a| a.id == id).ok_or_else(Problem::internal)?;
    tracing::info!(approval = %id, order = %outcome.order.id, actor = %principal.actor(), decision = ?body.decision, status = %a.status, "approval decision recorded");
    Ok(view(&outcome.order, a, principal))
}
