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
/// Creates the backorder remainder of an approved partial shipment.
pub const CREATE_REMAINDER: &str = "create_remainder";

/// What must happen because `before` became `after`.
pub fn follow_ups(before: Option<&Order>, after: &Order) -> Vec<FollowUp> {
    let mut out = Vec::new();
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

#[cfg(test)]
mod tests {
    use super::*;

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
        }
    }

    #[test]
    fn release_enqueues_one_booking() {
        let f = follow_ups(None, &order(OrderState::Released, 2));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].dedupe_key, "book_shipment:ord_1:2");
        assert!(follow_ups(Some(&order(OrderState::Released, 2)), &order(OrderState::Released, 4)).is_empty());
        assert_eq!(follow_ups(Some(&order(OrderState::OnHold, 2)), &order(OrderState::Released, 4)).len(), 1);
        assert!(follow_ups(None, &order(OrderState::OnHold, 2)).is_empty());
    }
}
