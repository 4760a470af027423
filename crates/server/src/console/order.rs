//! The order page: the single place to answer "why is this order where it is?". Facts,
//! readiness checks, priority terms, carrier choice (the API's `explain`), risk when a model
//! is active, approvals, booking and tracking, notifications and the whole timeline.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use dispatch_core::access::Permission;
use dispatch_core::{Event, EventData, Order};
use maud::{Markup, html};

use super::approvals::{card, short};
use super::layout::{ConsoleUser, age, error_page, field, page, problem_page, query_pairs, when};
use crate::AppState;
use crate::routes::approvals::view;
use crate::routes::orders::{Explanation, NotificationView, explain};

/// One order.
#[utoipa::path(get, path = "/console/orders/{id}", tag = "console",
    params(("id" = String, Path, description = "Order id (`ord_…`)")),
    responses((status = 200, description = "The order page (HTML)", content_type = "text/html"),
        (status = 404, description = "No such order (HTML)")))]
pub async fn page_handler(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<ConsoleUser>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let pairs = match query_pairs(&user, raw.as_deref()) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let order = match app.store.order(&id).await {
        Ok(Some(o)) => o,
        Ok(None) => {
            return error_page(
                Some(&user),
                StatusCode::NOT_FOUND,
                "Order not found",
                &format!("There is no order `{id}`. Search the board by order number or customer."),
            );
        }
        Err(e) => return problem_page(&user, e.into()),
    };
    let events = match app.store.events(&id).await {
        Ok(e) => e,
        Err(e) => return problem_page(&user, e.into()),
    };
    let notifications: Vec<NotificationView> = match app.store.notifications(&id).await {
        Ok(n) => n.into_iter().map(NotificationView::from).collect(),
        Err(e) => return problem_page(&user, e.into()),
    };
    let explanation = explain(&app, &events);
    // The API's own scoring; no active model (409) simply leaves the section out.
    let risk = crate::routes::insights::order_risk(State(app.clone()), Path(order.id.clone()))
        .await
        .ok()
        .map(|axum::Json(v)| risk_card(&v.risk));
    let now = app.clock.now();
    let title = format!("Order {}", order.facts.external_id);
    let body = html! {
        @if let Some(d) = field(&pairs, "done") { p.notice role="status" { "Recorded: " (d) "." } }
        (summary(&order, now))
        div.grid {
            (facts(&order))
            (checks(&order))
        }
        @if let Some(e) = &explanation { (why(e)) }
        @if let Some(r) = risk { (r) }
        section aria-labelledby="appr-h" {
            h2 id="appr-h" { "Approvals" }
            @if order.approvals.is_empty() { p.muted { "No approval requests." } }
            @for a in &order.approvals {
                (card(&user, &order, a, &view(&order, a, &user.principal), now, &format!("/console/orders/{}", order.id)))
            }
            @if order.state == dispatch_core::OrderState::OnHold && user.may(Permission::RequestApprovals) {
                p { a href=(format!("/console/exceptions#{}", order.id)) { "Request an approval for this hold" } }
            }
        }
        (shipment(&order))
        (notices(&notifications))
        (timeline(&events))
    };
    page(&user, "", &title, body)
}

fn summary(o: &Order, now: chrono::DateTime<chrono::Utc>) -> Markup {
    html! {
        p.summary {
            span class=(format!("badge {}", state_class(o.state))) { (o.state.code()) }
            " for " (age(o.state_since, now)) " · priority " strong { (o.priority) }
            " · version " (o.version) " · id " code { (o.id) }
            @for r in &o.hold_reasons { " " span.badge.warn { (r.code()) } }
            @for r in &o.waived { " " span.badge.ok title="waived by an approval or overridden" { (r.code()) " waived" } }
            @if let Some(p) = o.late_departure_risk { " · " (super::board::risk_badge(p)) }
        }
        @if let Some(n) = &o.status_note { p.error { (n) } }
        @for ov in &o.overrides {
            p.notice { "Hold overridden by " strong { (ov.by) } " as " (ov.role) " on " (when(ov.at)) ": "
                @for r in &ov.reasons { span.badge.ok { (r.code()) } " " } "— " (ov.note) }
        }
    }
}

pub fn state_class(s: dispatch_core::OrderState) -> &'static str {
    use dispatch_core::OrderState::*;
    match s {
        Released | Booked | Dispatched | Delivered => "ok",
        OnHold | AwaitingApproval | Received => "warn",
        Exception | Cancelled => "bad",
    }
}

fn facts(o: &Order) -> Markup {
    let f = &o.facts;
    html! {
        section.card aria-labelledby="facts-h" {
            h2 id="facts-h" { "Facts" }
            dl.facts {
                dt { "Order number" } dd { (f.external_id) " (" (f.source) ")" }
                dt { "Customer" } dd { (f.customer.name) " · " (f.customer.id) " · tier " (f.customer.tier) " · credit " (f.customer.credit_status.code()) }
                dt { "Warehouse" } dd { (f.warehouse) }
                dt { "Channel" } dd { (f.channel.as_deref().unwrap_or("—")) }
                dt { "Service level" } dd { (f.service_level.code()) }
                dt { "Promised" } dd { (f.promised_date) }
                dt { "Latest departure" } dd { @match o.latest_departure { Some(t) => (when(t)), None => "—" } }
                dt { "Ship to" } dd { (f.ship_to.name) ", " (f.ship_to.street) ", " (f.ship_to.postcode) " " (f.ship_to.city) ", " (f.ship_to.country) }
                dt { "Payment" } dd { (f.payment.terms) " · " (f.payment.status.code()) }
                dt { "Documents" } dd { @if f.documents.is_empty() { "none" } @else { (f.documents.join(", ")) } }
                dt { "Transport" } dd { (f.transport_mode.as_deref().unwrap_or("—")) " · preferred carrier " (f.carrier_preference.as_deref().unwrap_or("—")) }
                dt { "Value" } dd { (format!("{:.2}", f.order_value())) }
            }
            table {
                caption.muted { "Lines" }
                thead { tr { th scope="col" { "SKU" } th.num scope="col" { "Qty" } th.num scope="col" { "Allocated" } th.num scope="col" { "Unit value" } } }
                tbody { @for l in &f.lines { tr { td { (l.sku) } td.num { (l.qty) } td.num { (l.qty_allocated) } td.num { (format!("{:.2}", l.unit_value)) } } } }
            }
        }
    }
}

fn checks(o: &Order) -> Markup {
    html! {
        section.card aria-labelledby="checks-h" {
            h2 id="checks-h" { "Readiness checks" }
            @if o.checks.is_empty() { p.muted { "Not evaluated yet." } }
            table { tbody {
                @for c in &o.checks {
                    tr {
                        th scope="row" { (c.check) }
                        td { @if c.passed { span.pass { "✓ pass" } } @else { span.fail { "✗ fail" } } }
                        td { (c.detail) @if let Some(r) = c.reason { " " span.badge.warn { (r.code()) } } }
                    }
                }
            } }
        }
    }
}

fn why(e: &Explanation) -> Markup {
    html! {
        section aria-labelledby="why-h" {
            h2 id="why-h" { "Why: the last decision" }
            p { "Evaluated " (when(e.evaluated_at)) " (event " (e.event_version) ") → " strong { (e.outcome.code()) }
                " under policy " code title=(e.policy) { (short(&e.policy)) }
                @if !e.current_policy { " " span.badge.warn { "not the policy in force now" } } }
            div.grid {
                div.card {
                    h3 { "Hold reasons" }
                    @if e.hold_reasons.is_empty() { p { "None: every check passed or was waived." } }
                    ul { @for r in &e.hold_reasons { li { strong { (r.code.code()) } @if let Some(t) = &r.title { " — " (t) } @if let Some(t) = &r.text { br; span.muted { (t) } } } } }
                    @if !e.rules.is_empty() {
                        h3 { "Rules that fired" }
                        ul { @for h in &e.rules { li { code { (h.rule) } " (" (h.kind) "): " (h.message)
                            @if let Some(err) = &h.error { " " span.fail { "error: " (err) } }
                            @if !h.seen.is_empty() { br; span.muted { "saw " (serde_json::to_string(&h.seen).unwrap_or_default()) } } } } }
                    }
                }
                div.card {
                    h3 { "Priority " (e.priority) }
                    table { tbody { @for t in &e.priority_terms { tr { th scope="row" { (t.term) } td.num { (format!("{:+}", t.points)) } td { (t.why) } } } } }
                }
                div.card {
                    h3 { "Carrier" }
                    @match &e.carrier {
                        Some(c) => {
                            p { strong { (c.carrier.as_deref().unwrap_or("none")) } @if let Some(l) = &c.lane { " on lane " code { (l) } } }
                            p { (c.reason) }
                            @if !c.alternatives.is_empty() { p.muted { "Alternatives: " (c.alternatives.join(", ")) } }
                        }
                        None => p.muted { "No carrier chosen by the policy." },
                    }
                }
            }
        }
    }
}

fn shipment(o: &Order) -> Markup {
    html! {
        section aria-labelledby="ship-h" {
            h2 id="ship-h" { "Booking and tracking" }
            @match &o.shipment {
                None => p.muted { "Not booked." },
                Some(s) => dl.facts {
                    dt { "Carrier" } dd { (s.carrier) @if let Some(sv) = &s.service { " · " (sv) } }
                    dt { "Tracking number" } dd { code { (s.tracking_number) } }
                    dt { "Status" } dd { @match &s.tracking { Some(t) => { (t.status.code()) " (" (when(t.status_at)) ")" } None => "—" } }
                    dt { "Departed" } dd { @match s.departed_at { Some(t) => (when(t)), None => "—" } }
                    dt { "Delivered" } dd { @match s.delivered_at { Some(t) => (when(t)), None => "—" } }
                },
            }
            @if let Some(b) = &o.booking_override { p { "Booking override: " (serde_json::to_string(b).unwrap_or_default()) } }
        }
    }
}

fn notices(n: &[NotificationView]) -> Markup {
    html! {
        section aria-labelledby="notes-h" {
            h2 id="notes-h" { "Notifications" }
            @if n.is_empty() { p.muted { "None sent." } } @else {
                div.scroll { table {
                    thead { tr { th scope="col" { "When" } th scope="col" { "Kind" } th scope="col" { "Channel" } th scope="col" { "To" } th scope="col" { "Subject" } th scope="col" { "Status" } } }
                    tbody { @for x in n { tr { td { (when(x.created_at)) } td { (x.kind) } td { (x.channel) } td { (x.recipient) } td { (x.subject) }
                        td { (x.status) @if let Some(e) = &x.last_error { br; span.muted { (e) } } } } } }
                } }
            }
        }
    }
}

/// The policy hash an event was decided under, when it carries one.
fn policy_of(d: &EventData) -> Option<&str> {
    match d {
        EventData::Evaluated(e) => Some(&e.policy),
        EventData::ApprovalDecided { policy, .. }
        | EventData::ApprovalEscalated { policy, .. }
        | EventData::HoldsOverridden { policy, .. } => Some(policy),
        EventData::ApprovalRequested { request } => Some(&request.routing.policy),
        _ => None,
    }
}

fn timeline(events: &[Event]) -> Markup {
    html! {
        section aria-labelledby="tl-h" {
            h2 id="tl-h" { "Timeline" }
            ol.timeline {
                @for e in events {
                    li data-kind=(e.data.kind()) {
                        span.what { (e.data.kind()) } " · " (when(e.at)) " · " span.who { (e.actor) }
                        @if let Some(p) = policy_of(&e.data) { " · policy " code title=(p) { (short(p)) } }
                        @if let Some(r) = &e.request_id { " · " span.muted { "request " (r) } }
                        br; span.why { (dispatch_core::event::summary(&e.data)) }
                    }
                }
            }
        }
    }
}

fn risk_card(r: &dispatch_intel::Risk) -> Markup {
    let pct = r.late_departure * 100.0;
    let class = if pct >= 50.0 {
        "bad"
    } else if pct >= 20.0 {
        "warn"
    } else {
        "ok"
    };
    html! {
        section aria-labelledby="risk-h" {
            h2 id="risk-h" { "Late-departure risk" }
            p { span class=(format!("badge {class}")) { (format!("{pct:.0}%")) } " chance of leaving after the latest departure (model "
                code { (r.model_version) } "). Decision support only." }
            ul { @for f in &r.factors { li { (f.sentence) " " span.muted { (format!("({:+.2})", f.contribution)) } } } }
        }
    }
}
