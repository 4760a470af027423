//! The policy page: the active policy, its version history (the audit log's
//! `policy.changed` entries: who, when, from which hash to which), and a what-if replay of a
//! candidate (the API's replay; it changes nothing).

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use dispatch_core::access::Permission;
use dispatch_policy::ReplayReport;
use dispatch_store::AuditQuery;
use maud::{Markup, html};

use super::layout::{ConsoleUser, csrf_field, field, form_pairs, page, problem_page, when};
use crate::AppState;
use crate::routes::policy::{ReplayParams, info, replay as api_replay};

/// The active policy, its history and the replay form.
#[utoipa::path(get, path = "/console/policy", tag = "console",
    responses((status = 200, description = "The policy page (HTML)", content_type = "text/html")))]
pub async fn page_handler(State(app): State<Arc<AppState>>, Extension(user): Extension<ConsoleUser>) -> Response {
    let body = body(&app, &user, None, None).await;
    page(&user, "/console/policy", "Policy", body)
}

async fn body(app: &AppState, user: &ConsoleUser, candidate: Option<&str>, report: Option<Markup>) -> Markup {
    let cur = app.policy.current();
    let i = info(&cur.policy, cur.origin, cur.loaded_at);
    let q = AuditQuery { action: Some("policy.changed".into()), limit: 50, ..Default::default() };
    let history = app.store.audit_entries(&q).await.unwrap_or_default();
    html! {
        section aria-labelledby="active-h" {
            h2 id="active-h" { "Active policy" }
            dl.facts {
                dt { "Name" } dd { (i.name) }
                dt { "Description" } dd { (i.description) }
                dt { "Hash" } dd { code { (i.hash) } }
                dt { "Loaded" } dd { (when(i.loaded_at)) " from " (i.origin) }
                dt { "Rules" } dd { (i.rules.join(", ")) }
                dt { "Priority terms" } dd { (i.priority_terms.join(", ")) }
                dt { "Carriers" } dd { (i.carriers.join(", ")) }
            }
            details { summary { "Source" } pre { code { (i.source) } } }
        }
        section aria-labelledby="hist-h" {
            h2 id="hist-h" { "Version history" }
            @if history.is_empty() { p.muted { "No change since the server started with its configured policy." } } @else {
                table { thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "From" } th scope="col" { "To" } } }
                    tbody { @for e in history.iter().rev() { tr {
                        td { (when(e.draft.at)) } td { (e.draft.actor) }
                        td { code { (hash_of(e.draft.before.as_deref())) } } td { code { (hash_of(e.draft.after.as_deref())) } }
                    } } } }
            }
        }
        @if user.may(Permission::ReplayPolicy) {
            section aria-labelledby="replay-h" {
                h2 id="replay-h" { "What-if replay" }
                p.muted { "Re-decides the recorded decisions under a candidate policy. Changes nothing." }
                form.decide method="post" action="/console/policy/replay" {
                    (csrf_field(user))
                    label for="candidate" { "Candidate policy (TOML)" }
                    textarea id="candidate" name="source" rows="12" spellcheck="false" { (candidate.unwrap_or(&i.source)) }
                    label for="since" { "Only decisions since (date, optional)" }
                    input id="since" name="since" placeholder="2026-11-01";
                    div.actions { button type="submit" { "Replay" } }
                }
                @if let Some(r) = report { (r) }
            }
        }
    }
}

fn hash_of(json: Option<&str>) -> String {
    json.and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
        .and_then(|v| v["hash"].as_str().map(|h| h.chars().take(12).collect()))
        .unwrap_or_else(|| "—".into())
}

/// Run a replay (form: `csrf`, `source`, `since`).
#[utoipa::path(post, path = "/console/policy/replay", tag = "console",
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The policy page with the replay report (HTML)", content_type = "text/html"),
        (status = 403, description = "No CSRF token or not permitted (HTML)"),
        (status = 422, description = "The candidate does not compile (HTML naming line and column)")))]
pub async fn replay(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<ConsoleUser>,
    body: Bytes,
) -> Response {
    let f = form_pairs(&body);
    let source = field(&f, "source").unwrap_or_default().to_string();
    let json = serde_json::json!({ "source": source, "since": field(&f, "since") });
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let bytes = Bytes::from(json.to_string());
    match api_replay(State(app.clone()), Ok(Query(ReplayParams::default())), headers, bytes).await {
        Ok(axum::Json(r)) => {
            let b = body_with(&app, &user, &source, report(&r)).await;
            page(&user, "/console/policy", "Policy", b)
        }
        Err(p) => problem_page(&user, p),
    }
}

async fn body_with(app: &AppState, user: &ConsoleUser, source: &str, r: Markup) -> Markup {
    body(app, user, Some(source), Some(r)).await
}

fn report(r: &ReplayReport) -> Markup {
    html! {
        div.card.replay-report role="status" {
            h3 { "Replay of " (r.candidate_name) " " code { (r.candidate_hash.chars().take(12).collect::<String>()) } }
            p { (r.decisions) " decisions of " (r.orders) " orders replayed; " strong { (r.changed) } " would change ("
                (r.outcome_changed) " in outcome: " (r.newly_held) " newly held, " (r.newly_released) " newly released); "
                (r.policy_errors) " policy errors; " (r.skipped) " skipped." }
            @if !r.by_reason.is_empty() {
                table { caption.muted { "By hold reason" } thead { tr { th scope="col" { "Reason" } th.num scope="col" { "Added" } th.num scope="col" { "Removed" } } }
                    tbody { @for (k, d) in &r.by_reason { tr { th scope="row" { (k) } td.num { (d.added) } td.num { (d.removed) } } } } }
            }
            @if !r.by_warehouse.is_empty() {
                table { caption.muted { "By warehouse" } thead { tr { th scope="col" { "Warehouse" } th.num scope="col" { "Decisions" } th.num scope="col" { "Changed" }
                    th.num scope="col" { "Newly held" } th.num scope="col" { "Newly released" } } }
                    tbody { @for (k, d) in &r.by_warehouse { tr { th scope="row" { (k) } td.num { (d.decisions) } td.num { (d.changed) }
                        td.num { (d.newly_held) } td.num { (d.newly_released) } } } } }
            }
            @if !r.examples.is_empty() {
                table { caption.muted { "Examples" } thead { tr { th scope="col" { "Order" } th scope="col" { "Recorded" } th scope="col" { "Candidate" } } }
                    tbody { @for e in &r.examples { tr {
                        td { a href=(format!("/console/orders/{}", e.order_id)) { (e.external_id) } }
                        td { (e.recorded.outcome.code()) " " (e.recorded.hold_reasons.iter().map(|h| h.code()).collect::<Vec<_>>().join(",")) }
                        td { (e.candidate.outcome.code()) " " (e.candidate.hold_reasons.iter().map(|h| h.code()).collect::<Vec<_>>().join(",")) }
                    } } } }
            }
        }
    }
}
