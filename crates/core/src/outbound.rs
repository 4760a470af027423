//! Outbound events: the catalogue subscribers (n8n, customer portals) receive, the typed
//! payload of each, the mapping from order events to them, and the delivery rules of the
//! Standard Webhooks retry schedule. Pure: the shell signs, sends and stores.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::event::{Event, EventData};
use crate::order::Order;
use crate::vocab::{HoldReason, OrderState, TrackingStatus};

/// Every event type a webhook endpoint may subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    #[serde(rename = "order.released")]
    OrderReleased,
    #[serde(rename = "order.held")]
    OrderHeld,
    #[serde(rename = "order.cancelled")]
    OrderCancelled,
    #[serde(rename = "order.exception")]
    OrderException,
    #[serde(rename = "approval.requested")]
    ApprovalRequested,
    #[serde(rename = "approval.decided")]
    ApprovalDecided,
    #[serde(rename = "approval.escalated")]
    ApprovalEscalated,
    #[serde(rename = "shipment.booked")]
    ShipmentBooked,
    #[serde(rename = "shipment.dispatched")]
    ShipmentDispatched,
    #[serde(rename = "tracking.updated")]
    TrackingUpdated,
    #[serde(rename = "order.delivered")]
    OrderDelivered,
    #[serde(rename = "dead_letter.created")]
    DeadLetterCreated,
    /// A scheduled monitor found something for the internal team (stalled orders, ...).
    #[serde(rename = "alert.raised")]
    AlertRaised,
}

impl EventType {
    pub const ALL: &'static [EventType] = &[
        EventType::OrderReleased,
        EventType::OrderHeld,
        EventType::OrderCancelled,
        EventType::OrderException,
        EventType::ApprovalRequested,
        EventType::ApprovalDecided,
        EventType::ApprovalEscalated,
        EventType::ShipmentBooked,
        EventType::ShipmentDispatched,
        EventType::TrackingUpdated,
        EventType::OrderDelivered,
        EventType::DeadLetterCreated,
        EventType::AlertRaised,
    ];

    pub fn code(self) -> &'static str {
        match self {
            EventType::OrderReleased => "order.released",
            EventType::OrderHeld => "order.held",
            EventType::OrderCancelled => "order.cancelled",
            EventType::OrderException => "order.exception",
            EventType::ApprovalRequested => "approval.requested",
            EventType::ApprovalDecided => "approval.decided",
            EventType::ApprovalEscalated => "approval.escalated",
            EventType::ShipmentBooked => "shipment.booked",
            EventType::ShipmentDispatched => "shipment.dispatched",
            EventType::TrackingUpdated => "tracking.updated",
            EventType::OrderDelivered => "order.delivered",
            EventType::DeadLetterCreated => "dead_letter.created",
            EventType::AlertRaised => "alert.raised",
        }
    }

    pub fn parse(code: &str) -> Option<EventType> {
        EventType::ALL.iter().copied().find(|t| t.code() == code)
    }

    /// One sentence for the catalogue (OpenAPI `webhooks`, docs).
    pub fn description(self) -> &'static str {
        match self {
            EventType::OrderReleased => "An order passed every readiness check and may leave.",
            EventType::OrderHeld => "An order was put on hold; `hold_reasons` says why.",
            EventType::OrderCancelled => "An order was cancelled.",
            EventType::OrderException => {
                "An order needs a person: booking failed for good, or the carrier reported a problem."
            }
            EventType::ApprovalRequested => "An exception needs an approval decision.",
            EventType::ApprovalDecided => "An approval was approved or rejected.",
            EventType::ApprovalEscalated => "An approval step waited past its SLA; the roles named may decide it now.",
            EventType::ShipmentBooked => "The order was booked with a carrier.",
            EventType::ShipmentDispatched => "The first departure scan: the shipment left the warehouse.",
            EventType::TrackingUpdated => "The carrier reported a new shipment status.",
            EventType::OrderDelivered => "Proof of delivery.",
            EventType::DeadLetterCreated => "An integration job failed for good and waits for a manual retry.",
            EventType::AlertRaised => "A scheduled monitor raised an alert for the internal team.",
        }
    }
}

impl EventType {
    /// Name of the payload (`data`) schema in the OpenAPI document.
    pub fn payload_schema(self) -> &'static str {
        match self {
            EventType::OrderReleased => "OrderReleasedData",
            EventType::OrderHeld => "OrderHeldData",
            EventType::OrderCancelled | EventType::OrderException => "OrderNoteData",
            EventType::ApprovalRequested | EventType::ApprovalDecided | EventType::ApprovalEscalated => "ApprovalData",
            EventType::ShipmentBooked | EventType::ShipmentDispatched | EventType::OrderDelivered => "ShipmentData",
            EventType::TrackingUpdated => "TrackingData",
            EventType::DeadLetterCreated => "DeadLetterData",
            EventType::AlertRaised => "AlertData",
        }
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// The order an event is about, as every order payload carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderRef {
    pub order_id: String,
    pub source: String,
    pub external_id: String,
    pub warehouse: String,
    pub customer_id: String,
    pub state: OrderState,
    /// The order's version after the event.
    pub version: u64,
}

impl OrderRef {
    pub fn of(o: &Order) -> OrderRef {
        OrderRef {
            order_id: o.id.clone(),
            source: o.facts.source.clone(),
            external_id: o.facts.external_id.clone(),
            warehouse: o.facts.warehouse.clone(),
            customer_id: o.facts.customer.id.clone(),
            state: o.state,
            version: o.version,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderReleasedData {
    pub order: OrderRef,
    pub priority: i32,
    pub latest_departure: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderHeldData {
    pub order: OrderRef,
    pub hold_reasons: Vec<HoldReason>,
    /// The timeline sentence: which checks or rules held it.
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderNoteData {
    pub order: OrderRef,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ShipmentData {
    pub order: OrderRef,
    pub carrier: String,
    pub tracking_number: String,
    pub service: Option<String>,
    /// Set on `shipment.dispatched`.
    pub departed_at: Option<DateTime<Utc>>,
    /// Set on `order.delivered`.
    pub delivered_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TrackingData {
    pub order: OrderRef,
    pub carrier: String,
    pub tracking_number: String,
    pub status: TrackingStatus,
    pub carrier_status: String,
    pub event_time: DateTime<Utc>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApprovalData {
    pub order: OrderRef,
    pub approval_id: String,
    /// Approval kind, e.g. `expedited_freight`.
    pub kind: String,
    /// `pending` on `approval.requested`; `approved` or `rejected` on `approval.decided`;
    /// `escalated` on `approval.escalated`.
    pub status: String,
    /// Roles that may decide.
    pub roles: Vec<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterData {
    /// The dead job's id: `POST /api/v1/dead-letters/{id}/retry` sends it again.
    pub dead_letter_id: i64,
    /// Job kind, e.g. `book_shipment`.
    pub kind: String,
    pub order_id: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertData {
    /// The monitor, e.g. `stalled_released`.
    pub alert: String,
    pub severity: String,
    pub message: String,
    /// Orders concerned (at most 100).
    pub order_ids: Vec<String>,
}

/// One outbound message: the Standard Webhooks body `{type, timestamp, data}` and its id (the
/// `webhook-id` header, the same on every retry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub timestamp: DateTime<Utc>,
    pub data: serde_json::Value,
}

impl Message {
    /// The body as sent: the id travels in the header only.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"type": self.event_type, "timestamp": self.timestamp, "data": self.data})
    }

    pub fn order_id(&self) -> Option<&str> {
        self.data.get("order")?.get("order_id")?.as_str()
    }
}

fn msg(event: &Event, t: EventType, data: impl Serialize) -> Option<Message> {
    Some(Message {
        id: format!("msg_{}_v{}", event.order_id, event.version),
        event_type: t,
        timestamp: event.at,
        data: serde_json::to_value(data).ok()?,
    })
}

/// The outbound messages a committed write causes: one per event at most, keyed by the
/// event's position so a re-run maps to the same ids. `after` is the order after all events
/// (fields not carried by an event, such as the shipment's carrier, are read from it).
pub fn messages(before: Option<&Order>, after: &Order, events: &[Event]) -> Vec<Message> {
    let mut out = Vec::new();
    let mut state = before.map(|b| b.state);
    for ev in events {
        let order = OrderRef { version: ev.version, ..OrderRef::of(after) };
        if let Some(m) = map_event(ev, order, state, after) {
            out.push(m);
        }
        state = Some(state_after(ev, state));
    }
    out
}

fn state_after(ev: &Event, before: Option<OrderState>) -> OrderState {
    match &ev.data {
        EventData::Evaluated(e) => e.outcome,
        EventData::Cancelled { .. } => OrderState::Cancelled,
        EventData::Booked { .. } => OrderState::Booked,
        EventData::Dispatched { .. } => OrderState::Dispatched,
        EventData::Delivered { .. } => OrderState::Delivered,
        EventData::ExceptionRaised { .. } => OrderState::Exception,
        _ => before.unwrap_or(OrderState::Received),
    }
}

/// One order event → at most one outbound message. A re-evaluation that keeps the state
/// publishes nothing (no noise from flapping re-checks).
pub fn map_event(ev: &Event, order: OrderRef, before: Option<OrderState>, after: &Order) -> Option<Message> {
    let shipment = |departed_at, delivered_at| {
        let s = after.shipment.as_ref()?;
        Some(ShipmentData {
            order: order.clone(),
            carrier: s.carrier.clone(),
            tracking_number: s.tracking_number.clone(),
            service: s.service.clone(),
            departed_at,
            delivered_at,
        })
    };
    match &ev.data {
        EventData::Evaluated(e) if before == Some(e.outcome) => None,
        EventData::Evaluated(e) if e.outcome == OrderState::Released => msg(
            ev,
            EventType::OrderReleased,
            OrderReleasedData {
                order: order.clone(),
                priority: e.priority,
                latest_departure: Some(e.inputs.latest_departure),
            },
        ),
        EventData::Evaluated(e) if e.outcome == OrderState::OnHold => msg(
            ev,
            EventType::OrderHeld,
            OrderHeldData {
                order: order.clone(),
                hold_reasons: e.hold_reasons.clone(),
                summary: crate::event::summary(&ev.data),
            },
        ),
        EventData::Cancelled { reason } => {
            msg(ev, EventType::OrderCancelled, OrderNoteData { order: order.clone(), reason: reason.clone() })
        }
        EventData::ExceptionRaised { reason } => {
            msg(ev, EventType::OrderException, OrderNoteData { order: order.clone(), reason: Some(reason.clone()) })
        }
        EventData::Booked { carrier, tracking_number, service, .. } => msg(
            ev,
            EventType::ShipmentBooked,
            ShipmentData {
                order: order.clone(),
                carrier: carrier.clone(),
                tracking_number: tracking_number.clone(),
                service: service.clone(),
                departed_at: None,
                delivered_at: None,
            },
        ),
        EventData::Dispatched { departed_at } => {
            msg(ev, EventType::ShipmentDispatched, shipment(Some(*departed_at), None)?)
        }
        EventData::Delivered { delivered_at } => {
            msg(ev, EventType::OrderDelivered, shipment(None, Some(*delivered_at))?)
        }
        EventData::TrackingUpdated { update, applied: true } => msg(
            ev,
            EventType::TrackingUpdated,
            TrackingData {
                order: order.clone(),
                carrier: update.carrier.clone(),
                tracking_number: update.tracking_number.clone(),
                status: update.status,
                carrier_status: update.carrier_status.clone(),
                event_time: update.event_time,
                detail: update.detail.clone(),
            },
        ),
        _ => map_approval_event(ev, order, after),
    }
}

/// Approval events (`approval.requested`, `approval.decided`, `approval.escalated`) →
/// [`ApprovalData`]; `roles` are the roles that may decide (after an escalation: the roles it
/// escalated to). Closings stay on the order's timeline.
pub fn map_approval_event(ev: &Event, order: OrderRef, after: &Order) -> Option<Message> {
    let role_codes = |roles: &[crate::vocab::Role]| roles.iter().map(|r| r.to_string()).collect::<Vec<_>>();
    match &ev.data {
        EventData::ApprovalRequested { request } => msg(
            ev,
            EventType::ApprovalRequested,
            ApprovalData {
                order,
                approval_id: request.id.clone(),
                kind: request.draft.kind.clone(),
                status: "pending".into(),
                roles: request.steps.first().map(|s| role_codes(&s.spec.roles)).unwrap_or_default(),
                reason: request.draft.reason.clone(),
            },
        ),
        EventData::ApprovalDecided { approval_id, step, verdict, .. } => {
            let request = after.approvals.iter().find(|a| &a.id == approval_id)?;
            msg(
                ev,
                EventType::ApprovalDecided,
                ApprovalData {
                    order,
                    approval_id: approval_id.clone(),
                    kind: request.draft.kind.clone(),
                    status: match verdict {
                        crate::approval::Verdict::Approve => "approved",
                        crate::approval::Verdict::Reject => "rejected",
                    }
                    .into(),
                    roles: request.steps.get(*step).map(|s| role_codes(&s.spec.roles)).unwrap_or_default(),
                    reason: request.draft.reason.clone(),
                },
            )
        }
        EventData::ApprovalEscalated { approval_id, to, .. } => {
            let request = after.approvals.iter().find(|a| &a.id == approval_id)?;
            msg(
                ev,
                EventType::ApprovalEscalated,
                ApprovalData {
                    order,
                    approval_id: approval_id.clone(),
                    kind: request.draft.kind.clone(),
                    status: "escalated".into(),
                    roles: role_codes(to),
                    reason: request.draft.reason.clone(),
                },
            )
        }
        _ => None,
    }
}

/// The Standard Webhooks retry schedule: the delay before attempt `n` (1-based). Attempt 1 is
/// immediate; after the 8th attempt fails the delivery is a dead letter.
pub const RETRY_SCHEDULE_SECS: [i64; 8] = [0, 5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600];

/// When to try again after attempt `attempts` (1-based) failed; `None` when the schedule is
/// spent.
pub fn next_attempt_after(attempts: u32) -> Option<Duration> {
    RETRY_SCHEDULE_SECS.get(attempts as usize).map(|s| Duration::seconds(*s))
}

/// What one delivery attempt's answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// 410 Gone: the subscriber asks us to stop; the endpoint is disabled.
    Gone,
    Retry,
}

/// `status` is `None` for a timeout or a connection error. Only 2xx is success; a redirect
/// is not followed (the endpoint must be configured with its final URL).
pub fn verdict(status: Option<u16>) -> Verdict {
    match status {
        Some(s) if (200..300).contains(&s) => Verdict::Delivered,
        Some(410) => Verdict::Gone,
        _ => Verdict::Retry,
    }
}

/// An endpoint that has failed without a single success since `failing_since` is disabled
/// once that is longer ago than `disable_after`.
pub fn should_disable(failing_since: Option<DateTime<Utc>>, now: DateTime<Utc>, disable_after: Duration) -> bool {
    failing_since.is_some_and(|since| now - since >= disable_after)
}

/// Does an endpoint subscribed to `types` (empty: every type) receive `t`?
pub fn subscribed(types: &[EventType], t: EventType) -> bool {
    types.is_empty() || types.contains(&t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::machine::{Command, Ctx, apply, decide};

    fn ctx_now() -> DateTime<Utc> {
        crate::readiness::tests::now()
    }

    fn run(state: Option<Order>, cmd: Command) -> (Option<Order>, Order, Vec<Event>) {
        let w =
            crate::Warehouses::new(vec![crate::readiness::tests::warehouse("AMS", "NL", "Europe/Amsterdam")]).unwrap();
        let ctx = Ctx::new(ctx_now(), &w);
        let data = decide(state.as_ref(), cmd, &ctx).unwrap();
        let mut s = state.clone();
        let mut evs = vec![];
        for d in data {
            let ev = Event {
                order_id: "ord_1".into(),
                version: s.as_ref().map_or(1, |o| o.version + 1),
                at: ctx_now(),
                actor: "t".into(),
                request_id: None,
                data: d,
            };
            s = Some(apply(s, &ev).unwrap());
            evs.push(ev);
        }
        (state, s.unwrap(), evs)
    }

    #[test]
    fn release_and_booking_map_to_their_types_with_stable_ids() {
        let facts = crate::readiness::tests::facts();
        let (before, after, evs) =
            run(None, Command::Upsert { facts: Box::new(facts.clone()), expected_version: None });
        let m = messages(before.as_ref(), &after, &evs);
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m[0].event_type, EventType::OrderReleased);
        assert_eq!(m[0].id, format!("msg_ord_1_v{}", evs.last().unwrap().version));
        assert_eq!(m[0].order_id(), Some("ord_1"));
        assert_eq!(m, messages(before.as_ref(), &after, &evs), "mapping is deterministic");

        // The same facts again: re-evaluated, still released → nothing new to publish.
        let (b2, a2, e2) = run(Some(after.clone()), Command::Upsert { facts: Box::new(facts), expected_version: None });
        assert!(messages(b2.as_ref(), &a2, &e2).is_empty());

        let (b3, a3, e3) = run(
            Some(after),
            Command::RecordBooking { carrier: "dhl".into(), tracking_number: "T1".into(), service: None },
        );
        let m = messages(b3.as_ref(), &a3, &e3);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].event_type, EventType::ShipmentBooked);
        assert_eq!(m[0].data["tracking_number"], "T1");
        assert_eq!(m[0].body()["type"], "shipment.booked");
        assert!(m[0].body().get("id").is_none());
    }

    #[test]
    fn a_hold_publishes_order_held_with_reasons() {
        let mut facts = crate::readiness::tests::facts();
        facts.lines[0].qty_allocated = 0;
        let (b, a, e) = run(None, Command::Upsert { facts: Box::new(facts), expected_version: None });
        let m = messages(b.as_ref(), &a, &e);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].event_type, EventType::OrderHeld);
        assert!(!m[0].data["hold_reasons"].as_array().unwrap().is_empty());
    }

    #[test]
    fn retry_schedule_is_the_standard_one() {
        let secs: Vec<i64> = (1..=8).map(|n| next_attempt_after(n).map_or(-1, |d| d.num_seconds())).collect();
        assert_eq!(secs, vec![5, 300, 1800, 7200, 18000, 36000, 36000, -1]);
        assert_eq!(verdict(Some(204)), Verdict::Delivered);
        assert_eq!(verdict(Some(410)), Verdict::Gone);
        assert_eq!(verdict(Some(500)), Verdict::Retry);
        assert_eq!(verdict(Some(301)), Verdict::Retry);
        assert_eq!(verdict(None), Verdict::Retry);
        let now = ctx_now();
        assert!(!should_disable(None, now, Duration::days(5)));
        assert!(!should_disable(Some(now - Duration::days(4)), now, Duration::days(5)));
        assert!(should_disable(Some(now - Duration::days(5)), now, Duration::days(5)));
    }

    #[test]
    fn catalogue_codes_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.code()), Some(*t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.code());
        }
        assert!(subscribed(&[], EventType::OrderHeld));
        assert!(!subscribed(&[EventType::OrderReleased], EventType::OrderHeld));
    }
}
