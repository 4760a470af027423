//! The OpenAPI 3.1 document, generated from the handlers' annotations and the domain types.

use dispatch_core::outbound as ob;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::console;
use crate::routes::{
    advice, approvals, audit, dead_letters, insights, odoo, orders, overrides, policy, schedules, system,
    webhook_endpoints, webhooks,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "dispatchd", description = "Dispatch control layer: readiness, holds, priority and the audit trail of every delivery order."),
    paths(
        system::healthz, system::readyz, system::metrics, system::openapi, system::warehouses,
        orders::upsert, orders::list, orders::get_one, orders::timeline, orders::cancel,
        overrides::override_holds,
        schedules::list, schedules::runs,
        policy::get_policy, policy::put_policy, policy::replay,
        dead_letters::list, dead_letters::retry, webhooks::carrier, odoo::receive,
        audit::list, console::login_page, console::login, console::logout,
        insights::order_risk, insights::list_hotspots, insights::list_anomalies,
        advice::partial, advice::sequence_queue,
        webhook_endpoints::create, webhook_endpoints::list, webhook_endpoints::get_one, webhook_endpoints::delete,
        webhook_endpoints::rotate_secret, webhook_endpoints::enable,
        approvals::request, approvals::list, approvals::get_one, approvals::decide,
        console::assets::css, console::assets::js, console::board::page_handler, console::board::fragment,
        console::order::page_handler, console::exceptions::page_handler, console::exceptions::request, console::exceptions::override_form,
        console::approvals::inbox_page, console::approvals::decide, console::integrations::page_handler,
        console::integrations::retry, console::kpis::page_handler, console::insights::page_handler,
        console::policy::page_handler, console::policy::replay,
    ),
    components(schemas(
        dispatch_core::OrderFacts, dispatch_core::Order, dispatch_core::Event, dispatch_core::EventData,
        dispatch_core::Warehouse, dispatch_core::FieldError, crate::problem::Problem,
        orders::OrderList, orders::Timeline, orders::TimelineEntry, orders::NotificationView, orders::CancelRequest,
        overrides::OverrideRequest, dispatch_core::overrides::HoldOverride,
        schedules::ScheduleList, schedules::ScheduleView, schedules::RunList, schedules::RunView,
        orders::OrderView, orders::Explanation, orders::ReasonExplained,
        policy::PolicyInfo, policy::PolicyChange, policy::PolicySource, policy::ReasonText,
        dispatch_policy::ReplayReport,
        dead_letters::DeadLetterList, dead_letters::DeadLetterView, dead_letters::RetryAccepted,
        webhooks::WebhookAck, dispatch_core::TrackingUpdate, dispatch_core::TrackingState,
        audit::AuditList, audit::AuditEntryView,
        insights::HotspotList, insights::AnomalyList, insights::AnomalyView, insights::RiskView,
        advice::PartialAdviceView, advice::SequenceView, advice::SequenceEntry,
        webhook_endpoints::CreateEndpoint, webhook_endpoints::EndpointView, webhook_endpoints::EndpointCreated,
        webhook_endpoints::EndpointList, webhook_endpoints::SecretRotated,
        ob::OrderRef, ob::OrderReleasedData, ob::OrderHeldData, ob::OrderNoteData, ob::ShipmentData,
        ob::TrackingData, ob::ApprovalData, ob::DeadLetterData, ob::AlertData, ob::EventType,
        approvals::ApprovalView, approvals::ApprovalList, approvals::DecisionRequest, approvals::ApprovalOrder,
        dispatch_core::approval::ApprovalDraft, dispatch_core::approval::ApprovalRequest,
    )),
    modifiers(&Bearer, &Webhooks),
    tags((name = "orders", description = "Delivery orders: ingest, query, explain, cancel"),
         (name = "config", description = "Configuration the decisions depend on"),
         (name = "policy", description = "The dispatch policy: read, replace, what-if replay"),
         (name = "carriers", description = "Carrier tracking webhooks and failed bookings (dead letters)"),
         (name = "approvals", description = "Approval workflows for dispatch exceptions: request, inbox, decide"),
         (name = "odoo", description = "Odoo automation-rule webhooks (hints; the record is fetched from Odoo)"),
         (name = "insights", description = "Decision support: late-departure risk, delay hotspots, anomalies"),
         (name = "webhooks", description = "Outbound webhook subscriptions (Standard Webhooks); the events are under `webhooks`"),
         (name = "system", description = "Probes, metrics, this document"),
         (name = "audit", description = "The tamper-evident audit log"),
         (name = "console", description = "The operations console: HTML pages and forms (session cookie, CSRF token); see docs/console.md")),
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

/// The event catalogue as OpenAPI 3.1 `webhooks`: one entry per event type, its body the
/// Standard Webhooks envelope with the typed `data`, and the signature headers.
struct Webhooks;

impl Modify for Webhooks {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
        use utoipa::openapi::request_body::RequestBodyBuilder;
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        use utoipa::openapi::{ContentBuilder, PathsBuilder, Ref, Required, ResponseBuilder};

        let header = |name: &str, description: &str| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Header)
                .required(Required::True)
                .description(Some(description))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build()
        };
        let mut paths = PathsBuilder::new();
        for t in ob::EventType::ALL {
            let envelope = ObjectBuilder::new()
                .property("type", ObjectBuilder::new().schema_type(Type::String).enum_values(Some([t.code()])))
                .required("type")
                .property(
                    "timestamp",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
                )
                .required("timestamp")
                .property("data", Ref::from_schema_name(t.payload_schema()))
                .required("data");
            let op = OperationBuilder::new()
                .summary(Some(t.code()))
                .description(Some(t.description()))
                .tag("webhooks")
                .parameter(header("webhook-id", "Message id; the same on every retry: deduplicate on it"))
                .parameter(header("webhook-timestamp", "Unix seconds of the attempt; reject old ones (replay)"))
                .parameter(header(
                    "webhook-signature",
                    "`v1,<base64 HMAC-SHA256(key, id.timestamp.body)>`, space-separated, one per active secret",
                ))
                .request_body(Some(
                    RequestBodyBuilder::new()
                        .content("application/json", ContentBuilder::new().schema(Some(envelope)).build())
                        .required(Some(Required::True))
                        .build(),
                ))
                .response("200", ResponseBuilder::new().description("Any 2xx within 15 s is a delivery"))
                .response("410", ResponseBuilder::new().description("Gone: dispatchd disables the endpoint"));
            paths = paths.path(t.code(), PathItem::new(HttpMethod::Post, op));
        }
        api.webhooks = Some(paths.build());
    }
}
