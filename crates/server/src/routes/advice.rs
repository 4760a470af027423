//! `/api/v1/orders/{id}/advice/partial` and `/api/v1/warehouses/{code}/advice/sequence`: the
//! planners' advice from `dispatch_intel::advice`, with the policy's `[advice]` costs. Read-only:
//! advice is never acted on by itself (a partial shipment still needs its approval).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use dispatch_core::{Order, OrderState};
use dispatch_intel::advice::{
    PartialAdvice, PartialChoice, PartialInput, QueueItem, SequenceOptions, partial_or_wait, sequence,
};
use dispatch_store::{OrderQuery, OrderSort};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::problem::Problem;

fn bad(detail: String) -> Problem {
    Problem::bad_request("bad-query", detail)
}

fn non_negative(name: &str, v: Option<f64>, default: f64) -> Result<f64, Problem> {
    match v {
        None => Ok(default),
        Some(x) if x.is_finite() && x >= 0.0 => Ok(x),
        Some(x) => Err(bad(format!("{name} must be a number ≥ 0, not {x}"))),
    }
}

fn no_model() -> Problem {
    Problem::new(
        axum::http::StatusCode::CONFLICT,
        "no-active-model",
        "No risk model is active",
        "train one with `dispatchd model train` (or promote one with `dispatchd model promote`)",
    )
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PartialParams {
    /// When the missing stock is expected in the warehouse (RFC 3339); omitted: unknown.
    #[param(value_type = Option<String>, format = DateTime)]
    pub inbound_eta: Option<DateTime<Utc>>,
    /// Overrides the policy's `[advice] receiving_hours`.
    pub receiving_hours: Option<f64>,
    /// Overrides the policy's `[advice] extra_shipment_cost`.
    pub extra_shipment_cost: Option<f64>,
    /// Overrides the policy's `[advice] late_cost_per_day`.
    pub late_cost_per_day: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub struct PartialAdviceView {
    pub order_id: String,
    /// `ship_partial` or `wait`.
    pub recommendation: String,
    pub reason: String,
    /// Expected cost of each choice under the costs used (`null` when it cannot be known).
    pub cost_partial: Option<f64>,
    pub cost_wait: Option<f64>,
    pub days_late_if_wait: Option<i64>,
    /// Goods value that can leave now, and value waiting for stock.
    pub shippable_value: f64,
    pub backordered_value: f64,
    pub latest_departure: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub inputs: PartialInput,
    /// Shipping part now goes through the `partial_shipment` approval.
    pub approval_kind: String,
}

/// Ship the allocated part of a short order now, or wait for the missing stock: the cheaper
/// choice under the policy's costs, with the reason.
#[utoipa::path(get, path = "/api/v1/orders/{id}/advice/partial", tag = "insights",
    params(("id" = String, Path, description = "Order id"), PartialParams),
    responses((status = 200, body = PartialAdviceView),
        (status = 400, description = "bad query", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such order", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "the order is not short of stock, or already left", body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn partial(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    params: Result<Query<PartialParams>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<PartialAdviceView>, Problem> {
    let Query(p) = params.map_err(|e| bad(e.body_text()))?;
    let costs = app.policy.policy().advice.clone();
    let receiving_hours = non_negative("receiving_hours", p.receiving_hours, costs.receiving_hours)?;
    let extra_shipment_cost = non_negative("extra_shipment_cost", p.extra_shipment_cost, costs.extra_shipment_cost)?;
    let late_cost_per_day = non_negative("late_cost_per_day", p.late_cost_per_day, costs.late_cost_per_day)?;
    let order = app.store.order(&id).await?.ok_or_else(|| Problem::not_found(&format!("order {id}")))?;
    if !matches!(order.state, OrderState::Received | OrderState::OnHold | OrderState::AwaitingApproval) {
        return Err(Problem::new(
            axum::http::StatusCode::CONFLICT,
            "not-waiting",
            "The order is not waiting",
            format!("order {id} is {}; partial-vs-wait advice is for orders not yet released", order.state),
        ));
    }
    let (shippable, backordered) = split_value(&order);
    if backordered <= 0.0 {
        return Err(Problem::new(
            axum::http::StatusCode::CONFLICT,
            "not-short",
            "Nothing is backordered",
            format!("every line of order {id} is allocated; there is no stock to wait for"),
        ));
    }
    let Some(latest_departure) = order.latest_departure else {
        return Err(Problem::new(
            axum::http::StatusCode::CONFLICT,
            "not-evaluated",
            "The order has no latest departure yet",
            format!("order {id} has not been evaluated"),
        ));
    };
    let inputs = PartialInput {
        latest_departure,
        inbound_eta: p.inbound_eta,
        receiving_hours,
        shippable_value: shippable,
        backordered_value: backordered,
        extra_shipment_cost,
        late_cost_per_day,
    };
    let PartialAdvice { recommendation, reason, cost_partial, cost_wait, days_late_if_wait } = partial_or_wait(&inputs);
    Ok(axum::Json(PartialAdviceView {
        order_id: order.id.clone(),
        recommendation: match recommendation {
            PartialChoice::ShipPartial => "ship_partial".into(),
            PartialChoice::Wait => "wait".into(),
        },
        reason,
        cost_partial,
        cost_wait,
        days_late_if_wait,
        shippable_value: shippable,
        backordered_value: backordered,
        latest_departure,
        inputs,
        approval_kind: "partial_shipment".into(),
    }))
}

/// Goods value of the allocated units and of the missing ones.
fn split_value(o: &Order) -> (f64, f64) {
    o.facts.lines.iter().fold((0.0, 0.0), |(s, b), l| {
        let have = l.qty_allocated.min(l.qty);
        (s + f64::from(have) * l.unit_value, b + f64::from(l.qty - have) * l.unit_value)
    })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SequenceParams {
    /// Most orders of the queue to sequence, 1–500 (default 200), in the current queue order.
    pub limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct SequenceEntry {
    pub order_id: String,
    pub external_id: String,
    pub late_departure: f64,
    pub latest_departure: DateTime<Utc>,
    pub priority: i32,
    pub work_minutes: f64,
}

#[derive(Serialize, ToSchema)]
pub struct SequenceView {
    pub warehouse: String,
    pub model_version: String,
    /// The recommended order of work, first first.
    pub sequence: Vec<SequenceEntry>,
    /// The current queue order (priority, then latest departure).
    pub current: Vec<String>,
    /// Expected late departures working the current order, and the recommended one.
    pub expected_late_current: f64,
    pub expected_late_recommended: f64,
    pub sentence: String,
    #[schema(value_type = Object)]
    pub assumptions: SequenceOptions,
}

/// A dispatch sequence for a warehouse's released queue that lowers the expected late
/// departures (the active model's risk per order), with the expected effect.
#[utoipa::path(get, path = "/api/v1/warehouses/{code}/advice/sequence", tag = "insights",
    params(("code" = String, Path, description = "Warehouse code"), SequenceParams),
    responses((status = 200, body = SequenceView),
        (status = 400, description = "bad query", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such warehouse", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "no risk model is active", body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn sequence_queue(
    State(app): State<Arc<AppState>>,
    Path(code): Path<String>,
    params: Result<Query<SequenceParams>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<SequenceView>, Problem> {
    let Query(p) = params.map_err(|e| bad(e.body_text()))?;
    let limit = p.limit.unwrap_or(200);
    if !(1..=500).contains(&limit) {
        return Err(bad(format!("limit must be 1–500, not {limit}")));
    }
    let wh = app.warehouses.get(&code).ok_or_else(|| Problem::not_found(&format!("warehouse {code}")))?.clone();
    let model = app.intel.get(app.store.as_ref(), app.clock.now()).await?.ok_or_else(no_model)?;
    let q = OrderQuery {
        states: vec![OrderState::Released],
        warehouse: Some(code.clone()),
        sort: OrderSort::Priority,
        limit,
        ..Default::default()
    };
    let page = app.store.list_orders(&q).await?;
    let now = app.clock.now();
    let policy = app.policy.policy();
    let costs = &policy.advice;
    let mut items = Vec::with_capacity(page.items.len());
    let mut entries = std::collections::HashMap::new();
    for o in &page.items {
        let Some(latest) = o.latest_departure else { continue };
        let facts = crate::intel::live_facts(&app, o, &wh);
        let risk = model.late_departure(&facts);
        let work = costs.minutes_per_order + costs.minutes_per_line * o.facts.lines.len() as f64;
        items.push(QueueItem { order_id: o.id.clone(), risk, latest_departure: latest, work_minutes: work });
        entries.insert(
            o.id.clone(),
            SequenceEntry {
                order_id: o.id.clone(),
                external_id: o.facts.external_id.clone(),
                late_departure: risk,
                latest_departure: latest,
                priority: o.priority,
                work_minutes: work,
            },
        );
    }
    let options = SequenceOptions::default();
    let advice = sequence(&items, now, &options);
    Ok(axum::Json(SequenceView {
        warehouse: code,
        model_version: model.version.clone(),
        current: items.iter().map(|i| i.order_id.clone()).collect(),
        sequence: advice.sequence.iter().filter_map(|id| entries.remove(id)).collect(),
        expected_late_current: advice.expected_late_current,
        expected_late_recommended: advice.expected_late_recommended,
        sentence: advice.sentence,
        assumptions: options,
    }))
}
