//! The approvals inbox: the pending steps the signed-in user may decide (most urgent first),
//! every other pending request read-only, and the decide form. Eligibility, segregation of
//! duties and the decision itself are the API's (`routes::approvals`).

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use dispatch_core::Order;
use dispatch_core::approval::{ApprovalRequest, ApprovalStatus, Verdict};
use maud::{Markup, html};

use super::layout::{
    ConsoleUser, age, csrf_field, field, form_pairs, page, problem_page, query_pairs, see_other, when,
};
use crate::AppState;
use crate::routes::approvals::{ApprovalView, DecisionRequest, decide_as, view};
use crate::routes::orders::request_id;

/// The inbox page.
#[utoipa::path(get, path = "/console/approvals", tag = "console",
    responses((status = 200, description = "The approvals inbox (HTML)", content_type = "text/html")))]
pub async fn inbox_page(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<ConsoleUser>,
    RawQuery(raw): RawQuery,
) -> Response {
    let pairs = match query_pairs(&user, raw.as_deref()) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let orders = match crate::approvals::awaiting_orders(&app).await {
        Ok(o) => o,
        Err(e) => return problem_page(&user, e.into()),
    };
    let mut views: Vec<(ApprovalView, &Order)> = orders
        .iter()
        .flat_map(|o| o.approvals.iter().map(move |a| (o, a)))
        .filter(|(_, a)| a.status == ApprovalStatus::Pending)
        .map(|(o, a)| (view(o, a, &user.principal), o))
        .collect();
    // Most urgent first (as the API's inbox): the earliest escalation, then the oldest.
    views.sort_by(|(a, _), (b, _)| {
        (a.due_at.is_none(), a.due_at, a.request.created_at).cmp(&(b.due_at.is_none(), b.due_at, b.request.created_at))
    });
    let (mine, others): (Vec<_>, Vec<_>) = views.iter().partition(|(v, _)| v.you_may_decide);
    let now = app.clock.now();
    let done = field(&pairs, "done");
    let body = html! {
        @if let Some(d) = done { p.notice role="status" { "Recorded: " (d) "." } }
        section aria-labelledby="mine-h" {
            h2 id="mine-h" { "Waiting for you (" (mine.len()) ")" }
            @if mine.is_empty() { p.muted { "Nothing waits for your decision." } }
            @for (v, o) in &mine { (card(&user, o, &v.request, v, now, "/console/approvals")) }
        }
        section aria-labelledby="others-h" {
            h2 id="others-h" { "Other pending requests (" (others.len()) ")" }
            @if others.is_empty() { p.muted { "None." } }
            @for (v, o) in &others { (card(&user, o, &v.request, v, now, "/console/approvals")) }
        }
    };
    page(&user, "/console/approvals", "Approvals", body)
}

/// One request: what, why, how much, steps and decisions, and — when the user may decide
/// the current step — the approve/reject form.
pub fn card(
    user: &ConsoleUser,
    o: &Order,
    a: &ApprovalRequest,
    v: &ApprovalView,
    now: chrono::DateTime<chrono::Utc>,
    back: &str,
) -> Markup {
    let urgent = v.due_at.is_some_and(|d| d < now) || a.steps.iter().any(|s| s.escalated_at.is_some());
    html! {
        article.card.approval id=(a.id) data-kind=(a.draft.kind) aria-labelledby=(format!("{}-h", a.id)) {
            h3 id=(format!("{}-h", a.id)) {
                (a.draft.kind) " · " a href=(format!("/console/orders/{}", o.id)) { (o.facts.external_id) }
                " " span class=(format!("badge {}", status_class(a.status))) { (a.status.code()) }
                @if urgent { " " span.badge.bad { "escalated" } }
            }
            dl.facts {
                dt { "Customer" } dd { (o.facts.customer.name) " (" (o.facts.customer.id) ")" }
                dt { "Warehouse" } dd { (o.facts.warehouse) }
                dt { "Reason" } dd { (a.draft.reason.as_deref().unwrap_or("—")) }
                dt { "Amount" } dd { @match a.draft.amount { Some(x) => { (format!("{x:.2}")) " " (a.draft.currency.as_deref().unwrap_or("")) } None => "—" } }
                dt { "Cost center" } dd { (a.draft.cost_center.as_deref().unwrap_or("—")) }
                @if let Some(c) = &a.draft.carrier { dt { "Carrier" } dd { (c) } }
                @if let Some(s) = a.draft.service { dt { "Service" } dd { (s.code()) } }
                dt { "Requested" } dd { "by " (a.requester) ", " (when(a.created_at)) " (" (age(a.created_at, now)) " ago)" }
                dt { "Route" } dd { (a.routing.rule) " " span.muted { "policy " (short(&a.routing.policy)) } }
                dt { "Waiting for" } dd { @if v.waiting_for.is_empty() { "—" } @else {
                    (v.waiting_for.iter().map(|r| r.code()).collect::<Vec<_>>().join(" or ")) } }
                @if let Some(d) = v.due_at { dt { "Escalates" } dd { (when(d))
                    @if d < now { " " span.badge.bad { "overdue" } } @else { " (in " (age(now, d)) ")" } } }
                @if let Some(x) = a.expires_at { dt { "Expires" } dd { (when(x)) } }
            }
            ol.steps {
                @for (i, s) in a.steps.iter().enumerate() {
                    li {
                        "Step " (i + 1) ": " (s.eligible_roles().iter().map(|r| r.code()).collect::<Vec<_>>().join(", "))
                        @if let Some(e) = s.escalated_at { " — escalated " (when(e)) }
                        @for d in &s.decisions {
                            br; span class=(if d.verdict == Verdict::Approve { "pass" } else { "fail" }) { (verdict(d.verdict)) }
                            " by " (d.actor) " as " (d.role.code()) ", " (when(d.at))
                            @if let Some(c) = &d.comment { ": “" (c) "”" }
                        }
                    }
                }
            }
            @if v.you_may_decide {
                form.decide method="post" action=(format!("/console/approvals/{}/decide", a.id)) {
                    (csrf_field(user))
                    input type="hidden" name="version" value=(o.version);
                    input type="hidden" name="back" value=(back);
                    label for=(format!("{}-comment", a.id)) { "Comment (required to reject)" }
                    textarea id=(format!("{}-comment", a.id)) name="comment" rows="2" {}
                    div.actions {
                        button type="submit" name="decision" value="approve" { "Approve" }
                        button.danger type="submit" name="decision" value="reject" { "Reject" }
                    }
                }
            }
        }
    }
}

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Approve => "approved",
        Verdict::Reject => "rejected",
    }
}

pub fn status_class(s: ApprovalStatus) -> &'static str {
    match s {
        ApprovalStatus::Approved => "ok",
        ApprovalStatus::Pending => "info",
        ApprovalStatus::Rejected | ApprovalStatus::Expired => "bad",
        _ => "warn",
    }
}

/// Approve or reject (form: `csrf`, `decision`, `comment`, `version`, `back`).
#[utoipa::path(post, path = "/console/approvals/{id}/decide", tag = "console",
    params(("id" = String, Path, description = "Approval request id")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Recorded: back to the inbox or the order"),
        (status = 403, description = "No CSRF token, or not yours to decide (HTML)"),
        (status = 409, description = "Already decided or the order changed (HTML)"),
        (status = 422, description = "A rejection without a comment (HTML)")))]
pub async fn decide(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<ConsoleUser>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = form_pairs(&body);
    let decision = match field(&f, "decision") {
        Some("approve") => Verdict::Approve,
        Some("reject") => Verdict::Reject,
        other => {
            return super::layout::error_page(
                Some(&user),
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "Bad decision",
                &format!("decision must be `approve` or `reject`, not `{}`", other.unwrap_or("")),
            );
        }
    };
    let expected = match field(&f, "version").map(str::parse::<u64>) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => {
            return super::layout::error_page(
                Some(&user),
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "Bad version",
                "version must be the order's version number",
            );
        }
    };
    let req = DecisionRequest { decision, comment: field(&f, "comment").map(str::to_string) };
    match decide_as(&app, &user.principal, &id, req, expected, request_id(&headers)).await {
        Ok(v) => {
            // Only back to the console itself (no open redirect).
            let back = field(&f, "back")
                .filter(|b| b.starts_with("/console") && !b.starts_with("//"))
                .unwrap_or("/console/approvals");
            let sep = if back.contains('?') { '&' } else { '?' };
            let done = format!("{} {} ({})", v.request.draft.kind, verdict(decision), v.request.status.code());
            see_other(&format!("{back}{sep}{}", serde_urlencoded::to_string([("done", done)]).unwrap_or_default()))
        }
        Err(p) => problem_page(&user, p),
    }
}

/// A policy hash shortened for display (the full one is in the tooltip of the order page).
pub fn short(hash: &str) -> &str {
    let h = hash.strip_prefix("sha256:").unwrap_or(hash);
    h.get(..12).unwrap_or(h)
}
