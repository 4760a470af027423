//! `/api/v1/orders`: upsert, read, list, timeline, cancel.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dispatch_core::{Command, Event, FieldError, HoldReason, Order, OrderFacts, OrderState};
use dispatch_store::{
    IdempotencyKey, OrderQuery, OrderSort, OrderWrite, QueuePosition, Target, WriteMeta, WriteOutcome, decision,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Principal;
use crate::extract::JsonBody;
use crate::policy::Active;
use crate::problem::Problem;

#[derive(Serialize, ToSchema)]
pub struct OrderList {
    pub items: Vec<Order>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// An order with the explanation of its last decision.
#[derive(Serialize, ToSchema)]
pub struct OrderView {
    #[serde(flatten)]
    pub order: Order,
    /// Why it is held, why this priority, why this carrier: from the last `order.evaluated`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Explanation>,
}

/// A hold reason with the human text of the policy's catalogue.
#[derive(Serialize, ToSchema)]
pub struct ReasonExplained {
    pub code: HoldReason,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Explanation {
    /// `builtin-v1` or the hash of the policy that decided.
    pub policy: String,
    /// The decision was made under the policy in force now.
    pub current_policy: bool,
    pub evaluated_at: chrono::DateTime<chrono::Utc>,
    pub event_version: u64,
    pub outcome: OrderState,
    pub hold_reasons: Vec<ReasonExplained>,
    /// Rules that fired (or failed) with the values they saw.
    pub rules: Vec<dispatch_core::RuleHit>,
    pub priority: i32,
    pub priority_terms: Vec<dispatch_core::priority::PriorityTerm>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carrier: Option<dispatch_core::CarrierChoice>,
    /// The late-departure risk, when it changed this decision: model version, probability,
    /// the rules and terms that used it, and the top factors in plain language.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<dispatch_core::risk::RiskNote>,
}

/// The explanation of the last evaluation in an order's stream.
pub fn explain(app: &AppState, events: &[Event]) -> Option<Explanation> {
    let policy = app.policy.policy();
    events.iter().rev().find_map(|ev| match &ev.data {
        dispatch_core::EventData::Evaluated(e) => Some(Explanation {
            policy: e.policy.clone(),
            current_policy: e.policy == policy.hash,
            evaluated_at: e.inputs.now,
            event_version: ev.version,
            outcome: e.outcome,
            hold_reasons: e
                .hold_reasons
                .iter()
                .map(|r| {
                    let t = policy.exception_text(*r);
                    ReasonExplained { code: *r, title: t.map(|x| x.0.clone()), text: t.map(|x| x.1.clone()) }
                })
                .collect(),
            rules: e.rules.clone(),
            priority: e.priority,
            priority_terms: e.priority_terms.clone(),
            carrier: e.carrier.clone(),
            risk: e.risk.clone(),
        }),
        _ => None,
    })
}

#[derive(Serialize, ToSchema)]
pub struct TimelineEntry {
    #[serde(flatten)]
    pub event: Event,
    /// What happened and why, in one line.
    pub summary: String,
}

#[derive(Serialize, ToSchema)]
pub struct Timeline {
    pub order_id: String,
    pub items: Vec<TimelineEntry>,
    /// Every notice about the order (customer or internal) with its delivery status, oldest
    /// first.
    pub notifications: Vec<NotificationView>,
}

/// A notification as the timeline shows it.
#[derive(Serialize, ToSchema)]
pub struct NotificationView {
    pub id: i64,
    /// `dispatch_confirmation`, `delay_notice`, `proof_of_dispatch`, `proof_of_delivery`,
    /// `exception_alert`.
    pub kind: String,
    /// `email` or `webhook`.
    pub channel: String,
    pub recipient: String,
    pub locale: String,
    pub subject: String,
    /// `queued`, `sent`, `retrying`, `failed` or `suppressed` (with the reason in `last_error`).
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<dispatch_store::NotificationRecord> for NotificationView {
    fn from(n: dispatch_store::NotificationRecord) -> Self {
        NotificationView {
            id: n.id,
            kind: n.kind,
            channel: n.channel,
            recipient: n.recipient,
            locale: n.locale,
            subject: n.subject,
            status: n.status,
            attempts: n.attempts,
            last_error: n.last_error,
            created_at: n.created_at,
            updated_at: n.updated_at,
        }
    }
}

#[derive(Deserialize, ToSchema, Default)]
pub struct CancelRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the parameters; parsing is strict and by hand below
pub struct ListParams {
    /// One state or several separated by commas.
    state: Option<String>,
    warehouse: Option<String>,
    /// Only held orders with this hold reason.
    reason: Option<String>,
    customer: Option<String>,
    /// `priority`: the dispatch sequence (priority descending, latest departure, id); `id`
    /// (default): creation order.
    sort: Option<String>,
    /// Page size, 1–500 (default 50).
    limit: Option<u32>,
    cursor: Option<String>,
}

pub(crate) fn request_id(headers: &HeaderMap) -> Option<String> {
    headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// `If-Match: "3"` (or `3`): the version the caller last saw.
pub(crate) fn expected_version(headers: &HeaderMap) -> Result<Option<u64>, Problem> {
    let Some(v) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let s = v.to_str().unwrap_or("").trim().trim_start_matches("W/").trim_matches('"');
    s.parse::<u64>().map(Some).map_err(|_| {
        Problem::bad_request("bad-if-match", "If-Match must be the order's version as returned in its ETag, e.g. \"3\"")
    })
}

pub(crate) fn idempotency(
    headers: &HeaderMap,
    principal: &Principal,
    what: &str,
    body: &impl Serialize,
) -> Result<Option<IdempotencyKey>, Problem> {
    let Some(v) = headers.get("idempotency-key") else { return Ok(None) };
    let key = v.to_str().unwrap_or("").trim();
    if key.is_empty() || key.len() > 255 {
        return Err(Problem::bad_request("bad-idempotency-key", "Idempotency-Key must be 1–255 visible characters"));
    }
    // The hash covers the operation and the parsed body, so formatting differences do not
    // count as a different request but any change of content does.
    let mut h = Sha256::new();
    h.update(what.as_bytes());
    h.update(serde_json::to_vec(body).map_err(|_| Problem::internal())?);
    Ok(Some(IdempotencyKey {
        scope: principal.token_id.clone(),
        key: key.to_string(),
        request_hash: hex::encode(h.finalize()),
    }))
}

pub(crate) fn order_response(status: StatusCode, outcome: &WriteOutcome) -> Response {
    let mut resp = (status, axum::Json(&outcome.order)).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", outcome.order.version)) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/orders/{}", outcome.order.id)) {
        h.insert(header::LOCATION, v);
    }
    if outcome.replayed {
        h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
}

/// Create or update a delivery order, keyed by (`source`, `external_id`).
#[utoipa::path(post, path = "/api/v1/orders", tag = "orders", request_body = OrderFacts,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Same key and body: the first answer again, nothing recorded twice"),
        ("If-Match" = Option<String>, Header, description = "Expected current version; a stale one is a 409"),
    ),
    responses(
        (status = 201, description = "Created and evaluated", body = Order),
        (status = 200, description = "Updated (or unchanged)", body = Order),
        (status = 400, description = "Malformed JSON", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role may not write orders", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Stale version or order no longer modifiable", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, named", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn upsert(
    State(app): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    JsonBody(facts): JsonBody<OrderFacts>,
) -> Result<Response, Problem> {
    let expected = expected_version(&headers)?;
    let idem = idempotency(&headers, &principal, "upsert_order", &facts)?;
    // Refuse an invalid order before it queues for the writer.
    let errors = dispatch_core::validate(&facts, &app.warehouses);
    if !errors.is_empty() {
        return Err(Problem::validation(errors));
    }
    let now = app.clock.now();
    let warehouses = app.warehouses.clone();
    let policy = app.policy.policy();
    let target = Target::NaturalKey { source: facts.source.clone(), external_id: facts.external_id.clone() };
    let write = OrderWrite {
        target,
        meta: WriteMeta {
            actor: principal.actor(),
            roles: principal.role_codes(),
            request_id: request_id(&headers),
            at: now,
        },
        idempotency: idem,
        decide: decision(
            Command::Upsert { facts: Box::new(facts), expected_version: expected },
            now,
            warehouses,
            Arc::new(crate::policy::Scored::new(&app, policy)),
        ),
    };
    let outcome = app.store.execute(write).await?;
    crate::metrics::record_write(&outcome);
    let status = if outcome.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(order_response(status, &outcome))
}

/// One order with its current state, hold reasons, checks and priority.
#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders",
    params(("id" = String, Path, description = "Order id (`ord_…`)")),
    responses((status = 200, body = OrderView), (status = 404, body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_one(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, Problem> {
    let order = app.store.order(&id).await?.ok_or_else(|| Problem::not_found(&format!("order `{id}`")))?;
    let version = order.version;
    let events = app.store.events(&id).await?;
    let explanation = explain(&app, &events);
    let mut resp = axum::Json(OrderView { order, explanation }).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}

/// Orders, filtered, in creation order, with keyset pagination.
#[utoipa::path(get, path = "/api/v1/orders", tag = "orders", params(ListParams),
    responses((status = 200, body = OrderList), (status = 400, body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<Arc<AppState>>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<axum::Json<OrderList>, Problem> {
    let q = parse_list_query(&params)?;
    let page = app.store.list_orders(&q).await?;
    let next_cursor = match (q.sort, page.next_after) {
        (_, None) => None,
        (OrderSort::Id, Some(id)) => Some(URL_SAFE_NO_PAD.encode(id)),
        (OrderSort::Priority, Some(_)) => page.items.last().map(encode_position),
    };
    Ok(axum::Json(OrderList { items: page.items, next_cursor }))
}

pub(crate) fn parse_list_query(params: &[(String, String)]) -> Result<OrderQuery, Problem> {
    let bad = |field: &str, msg: String| {
        Problem::bad_request("bad-query", msg.clone()).with_errors(vec![FieldError::new(field, msg)])
    };
    let mut q = OrderQuery { limit: 50, ..Default::default() };
    let mut cursor: Option<String> = None;
    for (k, v) in params {
        match k.as_str() {
            "state" => {
                for s in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let state = OrderState::from_code(s).ok_or_else(|| {
                        let all: Vec<&str> = OrderState::ALL.iter().map(|s| s.code()).collect();
                        bad("state", format!("unknown state `{s}`; use one of {}", all.join(", ")))
                    })?;
                    q.states.push(state);
                }
            }
            "warehouse" => q.warehouse = Some(v.clone()),
            "customer" => q.customer_id = Some(v.clone()),
            "reason" => {
                q.hold_reason = Some(HoldReason::from_code(v).ok_or_else(|| {
                    let all: Vec<&str> = HoldReason::ALL.iter().map(|s| s.code()).collect();
                    bad("reason", format!("unknown hold reason `{v}`; use one of {}", all.join(", ")))
                })?)
            }
            "limit" => {
                q.limit = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=500).contains(n))
                    .ok_or_else(|| bad("limit", format!("limit must be a number from 1 to 500, not `{v}`")))?
            }
            "cursor" => cursor = Some(v.clone()),
            "sort" => {
                q.sort = match v.as_str() {
                    "id" | "created" => OrderSort::Id,
                    "priority" => OrderSort::Priority,
                    _ => {
                        return Err(bad(
                            "sort",
                            format!("sort must be `priority` (the dispatch sequence) or `id`, not `{v}`"),
                        ));
                    }
                }
            }
            other => {
                return Err(bad(
                    other,
                    format!(
                        "unknown query parameter `{other}`; use state, warehouse, reason, customer, sort, limit, cursor"
                    ),
                ));
            }
        }
    }
    if let Some(v) = cursor {
        let invalid =
            || bad("cursor", "cursor is not one this server issued for this sort; start again without it".into());
        let decoded =
            URL_SAFE_NO_PAD.decode(v.as_bytes()).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(invalid)?;
        match q.sort {
            OrderSort::Id => {
                q.after_id = Some(Some(decoded).filter(|s| s.starts_with("ord_")).ok_or_else(invalid)?);
            }
            OrderSort::Priority => {
                // `p:<priority>:<latest departure µs>:<id>`
                let mut it = decoded.splitn(4, ':');
                let pos = match (it.next(), it.next(), it.next(), it.next()) {
                    (Some("p"), Some(p), Some(ld), Some(id)) if id.starts_with("ord_") => {
                        match (p.parse::<i32>(), ld.parse::<i64>()) {
                            (Ok(priority), Ok(latest_departure_us)) => {
                                Some(QueuePosition { priority, latest_departure_us, id: id.to_string() })
                            }
                            _ => None,
                        }
                    }
                    _ => None,
                };
                q.after_position = Some(pos.ok_or_else(invalid)?);
            }
        }
    }
    Ok(q)
}

pub(crate) fn encode_position(o: &Order) -> String {
    let p = QueuePosition::of(o);
    URL_SAFE_NO_PAD.encode(format!("p:{}:{}:{}", p.priority, p.latest_departure_us, p.id))
}

/// Every event of the order, oldest first, each with a one-line summary: who, what, when, why.
#[utoipa::path(get, path = "/api/v1/orders/{id}/timeline", tag = "orders",
    params(("id" = String, Path, description = "Order id")),
    responses((status = 200, body = Timeline), (status = 404, body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn timeline(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<axum::Json<Timeline>, Problem> {
    let events = app.store.events(&id).await?;
    if events.is_empty() {
        return Err(Problem::not_found(&format!("order `{id}`")));
    }
    let items = events
        .into_iter()
        .map(|event| TimelineEntry { summary: dispatch_core::event::summary(&event.data), event })
        .collect();
    let notifications = app.store.notifications(&id).await?.into_iter().map(NotificationView::from).collect();
    Ok(axum::Json(Timeline { order_id: id, items, notifications }))
}

/// Cancel an order (not once it has left the warehouse).
#[utoipa::path(post, path = "/api/v1/orders/{id}/cancel", tag = "orders",
    params(("id" = String, Path, description = "Order id"),
        ("If-Match" = Option<String>, Header, description = "Expected current version")),
    request_body(content = Option<CancelRequest>, description = "Optional reason"),
    responses((status = 200, body = Order),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn cancel(
    State(app): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    let req: CancelRequest =
        if body.iter().all(u8::is_ascii_whitespace) { CancelRequest::default() } else { crate::extract::parse(&body)? };
    let expected = expected_version(&headers)?;
    let idem = idempotency(&headers, &principal, &format!("cancel_order:{id}"), &req.reason)?;
    let now = app.clock.now();
    let warehouses = app.warehouses.clone();
    let policy = app.policy.policy();
    let reason = req.reason;
    let write = OrderWrite {
        target: Target::Id(id),
        meta: WriteMeta {
            actor: principal.actor(),
            roles: principal.role_codes(),
            request_id: request_id(&headers),
            at: now,
        },
        idempotency: idem,
        decide: decision(
            Command::Cancel { reason, expected_version: expected },
            now,
            warehouses,
            Arc::new(Active(policy)),
        ),
    };
    let outcome = app.store.execute(write).await?;
    crate::metrics::record_write(&outcome);
    Ok(order_response(StatusCode::OK, &outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<OrderQuery, Problem> {
        parse_list_query(&pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>())
    }

    #[test]
    fn list_query_is_strict() {
        let ok = q(&[("state", "on_hold,released"), ("limit", "10"), ("reason", "credit_hold")]).unwrap();
        assert_eq!(ok.states, vec![OrderState::OnHold, OrderState::Released]);
        assert_eq!(ok.limit, 10);
        for bad in
            [[("state", "flying")], [("limit", "0")], [("limit", "501")], [("cursor", "!!")], [("colour", "red")]]
        {
            let p = q(&bad).unwrap_err();
            assert_eq!(p.status, 400);
            assert_eq!(p.errors[0].field, bad[0].0);
        }
    }
}
