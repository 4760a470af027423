//! Follow-up work an order change causes, written to the outbox in the same transaction as
//! the events (so it is never lost and never sent for a change that did not commit).

use serde_json::json;

use crate::order::Order;
use crate::vocab::OrderState;

#[derive(Debug, Clone, PartialEq)]
pub struct FollowUp {
    /// Job kind, e.g. `book_shipment`.
    pub kind: &'static str,
    /// Unique per piece of work: enqueuing it twice is a no-op.
    pub dedupe_key: String,
    pub payload: serde_json::Value,
}

pub const BOOK_SHIPMENT: &str = "book_shipment";
/// Fan an outbound message out to its webhook endpoints and notification rules.
pub const PUBLISH_EVENT: &str = "publish_event";
/// Creates the backorder remainder of an approved partial shipment.
pub const CREATE_REMAINDER: &str = "create_remainder";

/// Append the dispatched order to the dispatch history (facts at release, outcome).
pub const RECORD_DISPATCH: &str = "record_dispatch";

/// Write the dispatch state, tracking number and a chatter note back to the Odoo picking.
pub const ODOO_WRITEBACK: &str = "odoo_writeback";
/// Orders of this source are Odoo pickings (the connector's key is (`odoo`, picking name)).
pub const ODOO_SOURCE: &str = "odoo";

/// Which optional follow-ups this deployment wants. Jobs are enqueued only when something
/// will take them, so an integration that is not configured never fills the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowUpConfig {
    /// `[odoo]` is configured: write state, tracking and notes back to Odoo pickings.
    pub odoo_writeback: bool,
    /// Someone listens to order changes (a webhook endpoint or a notification rule): write a
    /// `publish_event` job per outbound message.
    pub publish_events: bool,
    /// Append every first departure to the dispatch history (`record_dispatch` jobs), so the
    /// risk model learns from dispatchd's own lifecycle.
    pub dispatch_history: bool,
}

impl Default for FollowUpConfig {
    /// Publishing on, write-back and history off: what a deployment without a connector wants.
    fn default() -> Self {
        FollowUpConfig { odoo_writeback: false, publish_events: true, dispatch_history: false }
    }
}

/// What must happen because `before` became `after` through `events`.
pub fn follow_ups(
    before: Option<&Order>,
    after: &Order,
    events: &[crate::Event],
    cfg: FollowUpConfig,
) -> Vec<FollowUp> {
    let mut out = Vec::new();
    // Every outbound message is written with the events that caused it (at-least-once: the
    // publisher fans it out later, even after a crash).
    let messages = if cfg.publish_events { crate::outbound::messages(before, after, events) } else { Vec::new() };
    for m in messages {
        out.push(FollowUp {
            kind: PUBLISH_EVENT,
            dedupe_key: format!("{PUBLISH_EVENT}:{}", m.id),
            payload: publish_payload(&m),
        });
    }
    let was_released = before.is_some_and(|b| b.state == OrderState::Released);
    if after.state == OrderState::Released && !was_released {
        // Keyed by the release's version: a release after a new hold books anew, a retry of
        // the same release never does.
        out.push(FollowUp {
            kind: BOOK_SHIPMENT,
            dedupe_key: format!("{BOOK_SHIPMENT}:{}:{}", after.id, after.version),
            payload: json!({"order_id": after.id, "release_version": after.version}),
        });
    }
    if cfg.odoo_writeback && after.facts.source == ODOO_SOURCE {
        let state_changed = before.map(|b| b.state) != Some(after.state);
        let holds_changed = before.is_some_and(|b| b.hold_reasons != after.hold_reasons);
        let booked = after.shipment.is_some() && before.is_none_or(|b| b.shipment.is_none());
        if state_changed || holds_changed || booked {
            // One job per order version: what Odoo users should see about this change.
            out.push(FollowUp {
                kind: ODOO_WRITEBACK,
                dedupe_key: format!("{ODOO_WRITEBACK}:{}:{}", after.id, after.version),
                payload: json!({
                    "order_id": after.id,
                    "version": after.version,
                    "external_id": after.facts.external_id,
                    "state": after.state,
                    "previous_state": before.map(|b| b.state),
                    "hold_reasons": after.hold_reasons,
                    "status_note": after.status_note,
                    "shipment": after.shipment.as_ref().map(|s| json!({"carrier": s.carrier, "tracking_number": s.tracking_number})),
                }),
            });
        }
    }
    let departed = after.state == OrderState::Dispatched
        && before.is_none_or(|b| !matches!(b.state, OrderState::Dispatched | OrderState::Delivered));
    if cfg.dispatch_history && departed {
        // Once per order: the first departure is the outcome the history records.
        out.push(FollowUp {
            kind: RECORD_DISPATCH,
            dedupe_key: format!("{RECORD_DISPATCH}:{}", after.id),
            payload: json!({"order_id": after.id, "version": after.version}),
        });
    }
    let known = before.map_or(0, |b| b.remainders.len());
    for r in after.remainders.iter().skip(known) {
        let mut facts = after.facts.clone();
        facts.external_id = r.external_id.clone();
        facts.lines = r.lines.clone();
        let link = crate::approval::SplitLink {
            order_id: after.id.clone(),
            external_id: after.facts.external_id.clone(),
            approval_id: r.approval_id.clone(),
        };
        out.push(FollowUp {
            kind: CREATE_REMAINDER,
            dedupe_key: format!("{CREATE_REMAINDER}:{}:{}", after.id, r.external_id),
            payload: json!({"order_id": after.id, "facts": facts, "link": link}),
        });
    }
    out
}

/// The `publish_event` job's payload: the message with its id.
pub fn publish_payload(m: &crate::outbound::Message) -> serde_json::Value {
    serde_json::to_value(m).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ODOO: FollowUpConfig = FollowUpConfig { odoo_writeback: true, publish_events: true, dispatch_history: false };

    fn order(state: OrderState, version: u64) -> Order {
        let facts = crate::readiness::tests::facts();
        let at = crate::readiness::tests::now();
        Order {
            id: "ord_1".into(),
            version,
            state,
            hold_reasons: vec![],
            priority: 0,
            facts,
            checks: vec![],
            latest_departure: None,
            status_note: None,
            shipment: None,
            created_at: at,
            updated_at: at,
            state_since: at,
            approvals: vec![],
            waived: vec![],
            split_from: None,
            remainders: vec![],
            booking_override: None,
            overrides: vec![],
            late_departure_risk: None,
            first_released_at: None,
            released_on_time: None,
            touched: false,
        }
    }

    #[test]
    fn odoo_orders_are_written_back_on_every_state_change() {
        let mut held = order(OrderState::OnHold, 2);
        held.hold_reasons = vec![crate::HoldReason::StockShort];
        let f = follow_ups(None, &held, &[], ODOO);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, ODOO_WRITEBACK);
        assert_eq!(f[0].dedupe_key, "odoo_writeback:ord_1:2");
        assert_eq!(f[0].payload["hold_reasons"][0], "stock_short");
        assert!(follow_ups(Some(&held), &held.clone(), &[], ODOO).is_empty(), "nothing changed: nothing to write");
        let released = order(OrderState::Released, 4);
        let kinds: Vec<_> = follow_ups(Some(&held), &released, &[], ODOO).iter().map(|f| f.kind).collect();
        assert_eq!(kinds, vec![BOOK_SHIPMENT, ODOO_WRITEBACK]);
        let mut api = order(OrderState::OnHold, 2);
        api.facts.source = "api".into();
        assert!(follow_ups(None, &api, &[], ODOO).is_empty(), "only Odoo pickings are written back");
        let unconfigured = follow_ups(None, &held, &[], FollowUpConfig::default());
        assert!(!unconfigured.iter().any(|f| f.kind == ODOO_WRITEBACK), "no write-back without a connector");
    }

    #[test]
    fn release_enqueues_one_booking() {
        let mut f = follow_ups(None, &order(OrderState::Released, 2), &[], ODOO);
        f.retain(|j| j.kind == BOOK_SHIPMENT);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].dedupe_key, "book_shipment:ord_1:2");
        let books = |b: Option<&Order>, a: &Order| {
            follow_ups(b, a, &[], ODOO).iter().filter(|j| j.kind == BOOK_SHIPMENT).count()
        };
        assert_eq!(books(Some(&order(OrderState::Released, 2)), &order(OrderState::Released, 4)), 0);
        assert_eq!(books(Some(&order(OrderState::OnHold, 2)), &order(OrderState::Released, 4)), 1);
        assert_eq!(books(None, &order(OrderState::OnHold, 2)), 0);
    }

    #[test]
    fn changes_are_published_only_when_someone_listens() {
        let released = order(OrderState::Released, 2);
        let cancelled = order(OrderState::Cancelled, 3);
        let ev = crate::Event {
            order_id: "ord_1".into(),
            version: 3,
            at: cancelled.updated_at,
            actor: "test".into(),
            request_id: None,
            data: crate::EventData::Cancelled { reason: None },
        };
        let kinds = |cfg| {
            follow_ups(Some(&released), &cancelled, std::slice::from_ref(&ev), cfg)
                .iter()
                .map(|f| f.kind)
                .collect::<Vec<_>>()
        };
        assert_eq!(kinds(FollowUpConfig::default()), vec![PUBLISH_EVENT], "a listener hears of the cancellation");
        let quiet = FollowUpConfig { publish_events: false, ..FollowUpConfig::default() };
        assert!(kinds(quiet).is_empty(), "nobody listens: no publish job");
    }

    #[test]
    fn the_first_departure_is_recorded_in_the_history_once() {
        let cfg = FollowUpConfig { dispatch_history: true, ..FollowUpConfig::default() };
        let booked = order(OrderState::Booked, 3);
        let mut gone = order(OrderState::Dispatched, 4);
        gone.facts.source = "api".into();
        let f = follow_ups(Some(&booked), &gone, &[], cfg);
        let jobs: Vec<_> = f.iter().filter(|j| j.kind == RECORD_DISPATCH).collect();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].dedupe_key, "record_dispatch:ord_1");
        assert_eq!(jobs[0].payload["order_id"], "ord_1");
        let later = order(OrderState::Delivered, 5);
        assert!(follow_ups(Some(&gone), &later, &[], cfg).iter().all(|j| j.kind != RECORD_DISPATCH));
        assert!(follow_ups(Some(&gone), &gone.clone(), &[], cfg).iter().all(|j| j.kind != RECORD_DISPATCH));
        let off = FollowUpConfig { dispatch_history: false, ..cfg };
        assert!(follow_ups(Some(&booked), &gone, &[], off).iter().all(|j| j.kind != RECORD_DISPATCH));
    }
}
