//! The route table: every route with its method, path and the permission it requires, in one
//! place. The router is built from it, and the access tests walk it, so a route cannot be
//! added without declaring who may call it.

use std::sync::Arc;

use axum::http::Method;
use axum::routing::{MethodRouter, delete, get, post, put};
use dispatch_core::access::Permission;

use crate::AppState;

pub mod advice;
pub mod approvals;
pub mod audit;
pub mod dead_letters;
pub mod insights;
pub mod odoo;
pub mod orders;
pub mod overrides;
pub mod policy;
pub mod schedules;
pub mod system;
pub mod webhook_endpoints;
pub mod webhooks;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token: probes, metrics and the API document.
    Public,
    /// No token, but the sender's signature over the body (carrier webhooks): 401 without.
    Signed,
    /// A valid bearer token whose roles grant this permission.
    Requires(Permission),
    /// No token: a console form, refused (403) without a valid CSRF token; the handler checks
    /// the session where it needs one.
    Form,
    /// A console page: the session cookie (else a redirect to the sign-in) whose user's roles
    /// grant this permission (else a 403 page).
    Console(Permission),
    /// A console form (POST): the session's CSRF token (else 403), and this permission.
    ConsoleForm(Permission),
}

#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub method: Method,
    /// axum path syntax, `{id}` for parameters.
    pub path: &'static str,
    pub access: Access,
}

pub fn table() -> Vec<(RouteSpec, MethodRouter<Arc<AppState>>)> {
    use Access::*;
    use Permission::*;
    let r = |method: Method, path: &'static str, access: Access, handler: MethodRouter<Arc<AppState>>| {
        (RouteSpec { method, path, access }, handler)
    };
    vec![
        r(Method::GET, "/healthz", Public, get(system::healthz)),
        r(Method::GET, "/readyz", Public, get(system::readyz)),
        r(Method::GET, "/metrics", Public, get(system::metrics)),
        r(Method::GET, "/api/openapi.json", Public, get(system::openapi)),
        r(Method::GET, "/api/v1/warehouses", Requires(ReadConfig), get(system::warehouses)),
        r(Method::POST, "/api/v1/orders", Requires(WriteOrders), post(orders::upsert)),
        r(Method::GET, "/api/v1/orders", Requires(ReadOrders), get(orders::list)),
        r(Method::GET, "/api/v1/orders/{id}", Requires(ReadOrders), get(orders::get_one)),
        r(Method::GET, "/api/v1/orders/{id}/timeline", Requires(ReadOrders), get(orders::timeline)),
        r(Method::POST, "/api/v1/orders/{id}/cancel", Requires(CancelOrders), post(orders::cancel)),
        r(Method::POST, "/api/v1/orders/{id}/override", Requires(OverrideHolds), post(overrides::override_holds)),
        r(Method::GET, "/api/v1/schedules", Requires(ReadConfig), get(schedules::list)),
        r(Method::GET, "/api/v1/schedules/{name}/runs", Requires(ReadConfig), get(schedules::runs)),
        r(Method::GET, "/api/v1/policy", Requires(ReadConfig), get(policy::get_policy)),
        r(Method::PUT, "/api/v1/policy", Requires(WritePolicy), put(policy::put_policy)),
        r(Method::POST, "/api/v1/policy/replay", Requires(ReplayPolicy), post(policy::replay)),
        r(Method::GET, "/api/v1/dead-letters", Requires(ReadOrders), get(dead_letters::list)),
        r(Method::POST, "/api/v1/dead-letters/{id}/retry", Requires(ReprocessDeadLetters), post(dead_letters::retry)),
        r(Method::POST, "/api/v1/orders/{id}/approval-requests", Requires(RequestApprovals), post(approvals::request)),
        r(Method::GET, "/api/v1/approvals", Requires(ReadApprovals), get(approvals::list)),
        r(Method::GET, "/api/v1/approvals/{id}", Requires(ReadApprovals), get(approvals::get_one)),
        r(Method::POST, "/api/v1/approvals/{id}/decisions", Requires(DecideApprovals), post(approvals::decide)),
        r(Method::POST, "/webhooks/carriers/{carrier}", Signed, post(webhooks::carrier)),
        r(Method::GET, "/api/v1/audit", Requires(ReadAudit), get(audit::list)),
        r(Method::GET, "/console/login", Public, get(crate::console::login_page)),
        r(Method::POST, "/console/login", Form, post(crate::console::login)),
        r(Method::POST, "/console/logout", Form, post(crate::console::logout)),
        r(Method::POST, "/webhooks/odoo", Signed, post(odoo::receive)),
        // The operations console (crate::console): session-cookie pages and CSRF forms.
        r(Method::GET, "/console/assets/console.css", Public, get(crate::console::assets::css)),
        r(Method::GET, "/console/assets/console.js", Public, get(crate::console::assets::js)),
        r(Method::GET, "/console", Console(ReadOrders), get(crate::console::board::page_handler)),
        r(Method::GET, "/console/board", Console(ReadOrders), get(crate::console::board::fragment)),
        r(Method::GET, "/console/orders/{id}", Console(ReadOrders), get(crate::console::order::page_handler)),
        r(Method::GET, "/console/exceptions", Console(ReadOrders), get(crate::console::exceptions::page_handler)),
        r(
            Method::POST,
            "/console/orders/{id}/approval-requests",
            ConsoleForm(RequestApprovals),
            post(crate::console::exceptions::request),
        ),
        r(
            Method::POST,
            "/console/orders/{id}/override",
            ConsoleForm(OverrideHolds),
            post(crate::console::exceptions::override_form),
        ),
        r(Method::GET, "/console/approvals", Console(ReadApprovals), get(crate::console::approvals::inbox_page)),
        r(
            Method::POST,
            "/console/approvals/{id}/decide",
            ConsoleForm(DecideApprovals),
            post(crate::console::approvals::decide),
        ),
        r(Method::GET, "/console/integrations", Console(ReadConfig), get(crate::console::integrations::page_handler)),
        r(
            Method::POST,
            "/console/dead-letters/{id}/retry",
            ConsoleForm(ReprocessDeadLetters),
            post(crate::console::integrations::retry),
        ),
        r(Method::GET, "/console/kpis", Console(ReadOrders), get(crate::console::kpis::page_handler)),
        r(Method::GET, "/console/insights", Console(ReadOrders), get(crate::console::insights::page_handler)),
        r(Method::GET, "/console/policy", Console(ReadConfig), get(crate::console::policy::page_handler)),
        r(Method::POST, "/console/policy/replay", ConsoleForm(ReplayPolicy), post(crate::console::policy::replay)),
        r(Method::GET, "/api/v1/orders/{id}/risk", Requires(ReadOrders), get(insights::order_risk)),
        r(Method::GET, "/api/v1/insights/hotspots", Requires(ReadOrders), get(insights::list_hotspots)),
        r(Method::GET, "/api/v1/insights/anomalies", Requires(ReadOrders), get(insights::list_anomalies)),
        r(Method::GET, "/api/v1/orders/{id}/advice/partial", Requires(ReadOrders), get(advice::partial)),
        r(Method::GET, "/api/v1/warehouses/{code}/advice/sequence", Requires(ReadOrders), get(advice::sequence_queue)),
        r(Method::POST, "/api/v1/webhook-endpoints", Requires(ManageWebhooks), post(webhook_endpoints::create)),
        r(Method::GET, "/api/v1/webhook-endpoints", Requires(ReadConfig), get(webhook_endpoints::list)),
        r(Method::GET, "/api/v1/webhook-endpoints/{id}", Requires(ReadConfig), get(webhook_endpoints::get_one)),
        r(
            Method::DELETE,
            "/api/v1/webhook-endpoints/{id}",
            Requires(ManageWebhooks),
            delete(webhook_endpoints::delete),
        ),
        r(
            Method::POST,
            "/api/v1/webhook-endpoints/{id}/rotate-secret",
            Requires(ManageWebhooks),
            post(webhook_endpoints::rotate_secret),
        ),
        r(
            Method::POST,
            "/api/v1/webhook-endpoints/{id}/enable",
            Requires(ManageWebhooks),
            post(webhook_endpoints::enable),
        ),
    ]
}

/// The table without handlers, for tests and the security document.
pub fn specs() -> Vec<RouteSpec> {
    table().into_iter().map(|(s, _)| s).collect()
}
