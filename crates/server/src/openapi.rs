//! The OpenAPI 3.1 document, generated from the handlers' annotations and the domain types.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{approvals, dead_letters, orders, policy, schedules, system, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(title = "dispatchd", description = "Dispatch control layer: readiness, holds, priority and the audit trail of every delivery order."),
    paths(
        system::healthz, system::readyz, system::metrics, system::openapi, system::warehouses,
        orders::upsert, orders::list, orders::get_one, orders::timeline, orders::cancel,
        schedules::list, schedules::runs,
        policy::get_policy, policy::put_policy, policy::replay,
        dead_letters::list, dead_letters::retry, webhooks::carrier,
        approvals::request, approvals::list, approvals::get_one, approvals::decide,
    ),
    components(schemas(
        dispatch_core::OrderFacts, dispatch_core::Order, dispatch_core::Event, dispatch_core::EventData,
        dispatch_core::Warehouse, dispatch_core::FieldError, crate::problem::Problem,
        orders::OrderList, orders::Timeline, orders::TimelineEntry, orders::CancelRequest,
        schedules::ScheduleList, schedules::ScheduleView, schedules::RunList, schedules::RunView,
        orders::OrderView, orders::Explanation, orders::ReasonExplained,
        policy::PolicyInfo, policy::PolicyChange, policy::PolicySource, policy::ReasonText,
        dispatch_policy::ReplayReport,
        dead_letters::DeadLetterList, dead_letters::DeadLetterView, dead_letters::RetryAccepted,
        webhooks::WebhookAck, dispatch_core::TrackingUpdate, dispatch_core::TrackingState,
        approvals::ApprovalView, approvals::ApprovalList, approvals::DecisionRequest, approvals::OrderRef,
        dispatch_core::approval::ApprovalDraft, dispatch_core::approval::ApprovalRequest,
    )),
    modifiers(&Bearer),
    tags((name = "orders", description = "Delivery orders: ingest, query, explain, cancel"),
         (name = "config", description = "Configuration the decisions depend on"),
         (name = "policy", description = "The dispatch policy: read, replace, what-if replay"),
         (name = "carriers", description = "Carrier tracking webhooks and failed bookings (dead letters)"),
         (name = "approvals", description = "Approval workflows for dispatch exceptions: request, inbox, decide"),
         (name = "system", description = "Probes, metrics, this document")),
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("dsp_…").build()),
        );
    }
}
