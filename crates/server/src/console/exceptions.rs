//! Exceptions: held orders by reason code and age, orders awaiting approval, and orders in
//! `exception` (failed bookings), with the actions the user may take: request an approval,
//! and — for users with `override_holds`, on reasons the policy marks overridable — override
//! the hold with a written reason.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use dispatch_core::access::Permission;
use dispatch_core::approval::ApprovalDraft;
use dispatch_core::{HoldReason, Order, OrderState, ServiceLevel};
use dispatch_store::OrderQuery;
use maud::{Markup, html};

use super::layout::{
    ConsoleUser, age, bad_param, csrf_field, error_page, field, form_pairs, page, problem_page, query_pairs, see_other,
};
use super::order::state_class;
use crate::AppState;
use crate::routes::approvals::request_as;
use crate::routes::orders::request_id;

/// At most this many orders per list (oldest first); the board pages through all of them.
const LIMIT: u32 = 100;

/// The approval kind that lifts a hold reason (the form's suggestion; any kind may be chosen).
pub fn suggested_kind(r: HoldReason) -> &'static str {
    match r {
        HoldReason::CutoffMissed => "expedited_freight",
        HoldReason::CreditHold | HoldReason::PaymentPending => "credit_hold_release",
        HoldReason::DocsMissing => "compliance_release",
        HoldReason::StockShort | HoldReason::StockUnallocated => "partial_shipment",
        HoldReason::CarrierUnavailable => "route_override",
        _ => "expedited_freight",
    }
}

/// The exceptions page (`?reason=`, `?warehouse=` narrow it).
#[utoipa::path(get, path = "/console/exceptions", tag = "console",
    responses((status = 200, description = "Exceptions (HTML)", content_type = "text/html"),
        (status = 400, description = "Unknown reason or warehouse (HTML)")))]
pub async fn page_handler(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<ConsoleUser>,
    RawQuery(raw): RawQuery,
) -> Response {
    let pairs = match query_pairs(&user, raw.as_deref()) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let mut held = OrderQuery { states: vec![OrderState::OnHold], limit: LIMIT, ..Default::default() };
    for (k, v) in &pairs {
        match k.as_str() {
            "reason" if !v.is_empty() => match HoldReason::from_code(v) {
                Some(r) => held.hold_reason = Some(r),
                None => return *bad_param(&user, format!("unknown hold reason `{v}`")),
            },
            "warehouse" if !v.is_empty() => {
                if app.warehouses.get(v).is_none() {
                    return *bad_param(&user, format!("unknown warehouse `{v}`"));
                }
                held.warehouse = Some(v.clone());
            }
            "reason" | "warehouse" | "done" => {}
            other => return *bad_param(&user, format!("unknown parameter `{other}`; use reason, warehouse")),
        }
    }
    let awaiting_q = OrderQuery { states: vec![OrderState::AwaitingApproval], limit: LIMIT, ..held.clone() };
    let awaiting_q = OrderQuery { hold_reason: None, ..awaiting_q };
    let failed_q = OrderQuery { states: vec![OrderState::Exception], hold_reason: None, ..held.clone() };
    let (counts, held_p, awaiting, failed) = match tokio::try_join!(
        app.store.counts(),
        app.store.list_orders(&held),
        app.store.list_orders(&awaiting_q),
        app.store.list_orders(&failed_q)
    ) {
        Ok(x) => x,
        Err(e) => return problem_page(&user, e.into()),
    };
    let now = app.clock.now();
    let body = html! {
        @if let Some(d) = field(&pairs, "done") { p.notice role="status" { "Recorded: " (d) "." } }
        section aria-labelledby="reasons-h" {
            h2 id="reasons-h" { "Holds by reason" }
            table { thead { tr { th scope="col" { "Reason" } th.num scope="col" { "Held orders" } } }
                tbody { @for (r, n) in &counts.holds_by_reason { @if *n > 0 {
                    tr { th scope="row" { a href=(format!("/console/exceptions?reason={r}")) { (r) } } td.num { (n) } } } } } }
            @if held.hold_reason.is_some() || held.warehouse.is_some() { p { a href="/console/exceptions" { "Show all" } } }
        }
        section aria-labelledby="held-h" {
            h2 id="held-h" { "On hold (" (held_p.items.len()) @if held_p.next_after.is_some() { "+" } ")" }
            (table(&app, &user, &held_p.items, now, true))
        }
        section aria-labelledby="await-h" {
            h2 id="await-h" { "Awaiting approval (" (awaiting.items.len()) ")" }
            (table(&app, &user, &awaiting.items, now, false))
        }
        section aria-labelledby="failed-h" {
            h2 id="failed-h" { "Exceptions: bookings that failed (" (failed.items.len()) ")" }
            @if !failed.items.is_empty() { p { "Retry their dead letters on the " a href="/console/integrations" { "integrations page" } "." } }
            (table(&app, &user, &failed.items, now, false))
        }
    };
    page(&user, "/console/exceptions", "Exceptions", body)
}

fn table(
    app: &AppState,
    user: &ConsoleUser,
    orders: &[Order],
    now: chrono::DateTime<chrono::Utc>,
    actions: bool,
) -> Markup {
    let may_override = actions && user.may(Permission::OverrideHolds);
    let may_act = actions && (user.may(Permission::RequestApprovals) || may_override);
    let policy = app.policy.policy();
    // The reasons an override may lift: holding the order now and overridable by the policy.
    let overridable = |o: &Order| -> Vec<HoldReason> {
        if !may_override {
            return vec![];
        }
        dispatch_core::machine::holding(o).into_iter().filter(|r| policy.overridable(*r)).collect()
    };
    html! {
        @if orders.is_empty() { p.muted { "None." } } @else {
            div.scroll { table.exceptions {
                thead { tr { th scope="col" { "Order" } th scope="col" { "Warehouse" } th scope="col" { "State" } th scope="col" { "Reasons" }
                    th scope="col" { "Waiting" } th scope="col" { "Customer" } @if may_act { th scope="col" { "Action" } } } }
                tbody { @for o in orders {
                    tr id=(o.id) data-order=(o.facts.external_id) {
                        td { a href=(format!("/console/orders/{}", o.id)) { (o.facts.external_id) } }
                        td { (o.facts.warehouse) }
                        td { span class=(format!("badge {}", state_class(o.state))) { (o.state.code()) } }
                        td { @for r in &o.hold_reasons { span.badge.warn { (r.code()) } " " }
                            @if let Some(n) = &o.status_note { span.muted { (n) } } }
                        td { span class=(format!("badge {}", super::board::aging_class(o.state, Some(o.state_since), now))) { (age(o.state_since, now)) } }
                        td { (o.facts.customer.name) }
                        @if may_act { td {
                            @if user.may(Permission::RequestApprovals) { (request_form(user, o)) }
                            @let lift = overridable(o);
                            @if !lift.is_empty() { (override_markup(user, o, &lift)) }
                        } }
                    }
                } }
            } }
        }
    }
}

fn request_form(user: &ConsoleUser, o: &Order) -> Markup {
    let suggested = o.hold_reasons.first().map_or("expedited_freight", |r| suggested_kind(*r));
    let id = &o.id;
    html! {
        details {
            summary { "Request approval" }
            form.decide method="post" action=(format!("/console/orders/{id}/approval-requests")) {
                (csrf_field(user))
                label { "Kind " select name="kind" {
                    @for k in dispatch_core::ApprovalKind::ALL { option value=(k.code()) selected[k.code() == suggested] { (k.code()) } } } }
                label { "Reason " input name="reason" required; }
                label { "Cost center " input name="cost_center" size="10"; }
                label { "Amount " input name="amount" inputmode="decimal" size="8"; }
                label { "Currency " input name="currency" value="EUR" size="4"; }
                label { "Faster service (expedited) " select name="service" { option value="" { "—" }
                    @for s in ServiceLevel::ALL { option value=(s.code()) { (s.code()) } } } }
                label { "Carrier (route override) " input name="carrier" size="10"; }
                div.actions { button type="submit" { "Request" } }
            }
        }
    }
}

fn override_markup(user: &ConsoleUser, o: &Order, reasons: &[HoldReason]) -> Markup {
    let id = &o.id;
    html! {
        details.override {
            summary { "Override" }
            form.decide method="post" action=(format!("/console/orders/{id}/override")) {
                (csrf_field(user))
                input type="hidden" name="version" value=(o.version);
                fieldset { legend { "Lift" }
                    @for r in reasons { label { input type="checkbox" name="reason" value=(r.code()) checked; " " (r.code()) } } }
                label { "Why " input name="note" required size="30" placeholder="who agreed, and why it may leave"; }
                div.actions { button type="submit" { "Override hold" } }
            }
        }
    }
}

/// Override hold reasons of a held order (`reason` once per code, `note`, `version`).
#[utoipa::path(post, path = "/console/orders/{id}/override", tag = "console",
    params(("id" = String, Path, description = "Order id")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Overridden: back to the exceptions"),
        (status = 403, description = "No CSRF token or not permitted (HTML)"),
        (status = 409, description = "The order changed or is no longer held (HTML)"),
        (status = 422, description = "No reason, no note, or not overridable (HTML naming it)")))]
pub async fn override_form(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<ConsoleUser>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = form_pairs(&body);
    let mut reasons = Vec::new();
    for (_, v) in f.iter().filter(|(k, _)| k == "reason") {
        match HoldReason::from_code(v) {
            Some(r) => reasons.push(r),
            None => {
                return error_page(
                    Some(&user),
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Bad reason",
                    &format!("unknown hold reason `{v}`"),
                );
            }
        }
    }
    let expected = match field(&f, "version").map(|v| v.trim().parse::<u64>()) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => {
            return error_page(
                Some(&user),
                StatusCode::UNPROCESSABLE_ENTITY,
                "Bad version",
                "version must be a number",
            );
        }
    };
    let req =
        crate::routes::overrides::OverrideRequest { reasons, note: field(&f, "note").unwrap_or_default().to_string() };
    match crate::routes::overrides::override_as(&app, &user.principal, &id, req, expected, None, request_id(&headers))
        .await
    {
        Ok(o) => {
            let done = format!("hold of {} overridden; it is {}", o.order.facts.external_id, o.order.state.code());
            see_other(&format!(
                "/console/exceptions?{}",
                serde_urlencoded::to_string([("done", done)]).unwrap_or_default()
            ))
        }
        Err(p) => problem_page(&user, p),
    }
}

/// Request an approval for a held order (form fields as `ApprovalDraft`).
#[utoipa::path(post, path = "/console/orders/{id}/approval-requests", tag = "console",
    params(("id" = String, Path, description = "Order id")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Requested: back to the exceptions"),
        (status = 403, description = "No CSRF token or not permitted (HTML)"),
        (status = 422, description = "Missing reason, cost center … (HTML naming them)")))]
pub async fn request(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<ConsoleUser>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = form_pairs(&body);
    let amount = match field(&f, "amount").map(|a| a.trim().replace(',', ".").parse::<f64>()) {
        None => None,
        Some(Ok(a)) if a.is_finite() && a >= 0.0 => Some(a),
        Some(_) => {
            return error_page(
                Some(&user),
                StatusCode::UNPROCESSABLE_ENTITY,
                "Bad amount",
                "amount must be a number ≥ 0",
            );
        }
    };
    let service = match field(&f, "service") {
        None => None,
        Some(s) => match ServiceLevel::from_code(s) {
            Some(s) => Some(s),
            None => {
                return error_page(
                    Some(&user),
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Bad service",
                    &format!("unknown service level `{s}`"),
                );
            }
        },
    };
    let draft = ApprovalDraft {
        kind: field(&f, "kind").unwrap_or_default().to_string(),
        reason: field(&f, "reason").map(str::to_string),
        amount,
        currency: field(&f, "currency").filter(|_| amount.is_some()).map(str::to_string),
        cost_center: field(&f, "cost_center").map(str::to_string),
        lines: vec![],
        carrier: field(&f, "carrier").map(str::to_string),
        service,
    };
    match request_as(&app, &user.principal, &id, draft, None, request_id(&headers)).await {
        Ok(v) => {
            let done =
                format!("{} requested for {} ({})", v.request.draft.kind, v.order.external_id, v.request.status.code());
            see_other(&format!(
                "/console/exceptions?{}",
                serde_urlencoded::to_string([("done", done)]).unwrap_or_default()
            ))
        }
        Err(p) => problem_page(&user, p),
    }
}
