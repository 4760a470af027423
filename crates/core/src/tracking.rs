//! Carrier tracking as pure functions: normalizing carrier status codes to the brief's
//! tracking vocabulary, and ordering updates so that a shipment never regresses.
//!
//! Updates arrive duplicated, late and out of order. The rule that makes the result
//! independent of arrival order is a total order on updates ([`precedence`]): the shipment's
//! status is always the *greatest* update seen so far. A maximum is commutative, associative
//! and idempotent, so any permutation and duplication of the same updates ends in the same
//! status. Delivery facts are folded the same way (earliest departure scan, earliest proof of
//! delivery). Updates that lose are still recorded (the timeline keeps every distinct event);
//! they just do not change the status.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::vocab::TrackingStatus;

/// One tracking update from a carrier, already verified and normalized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TrackingUpdate {
    /// The carrier as configured in dispatchd (`dhl`, `easypost`, ...).
    pub carrier: String,
    /// The carrier's own id of this event: the deduplication key.
    pub event_id: String,
    pub tracking_number: String,
    /// The carrier's status code, exactly as sent.
    pub carrier_status: String,
    /// `carrier_status` in the tracking vocabulary; `unknown` when the mapping has no entry.
    pub status: TrackingStatus,
    /// When the carrier says it happened (not when we heard of it).
    pub event_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The last status of a shipment as the fold of its updates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TrackingState {
    pub status: TrackingStatus,
    pub carrier_status: String,
    pub status_at: DateTime<Utc>,
    /// The carrier event that set this status.
    pub event_id: String,
}

/// Where a status lies on the way to the customer: used to break ties between updates with
/// the same event time (the further one wins).
pub const fn progress(s: TrackingStatus) -> u8 {
    match s {
        TrackingStatus::Unknown => 0,
        TrackingStatus::PreTransit => 1,
        TrackingStatus::PickedUp => 2,
        TrackingStatus::InTransit => 3,
        TrackingStatus::Exception => 4,
        TrackingStatus::AttemptFailed => 5,
        TrackingStatus::OutForDelivery => 6,
        TrackingStatus::AvailableForPickup => 7,
        TrackingStatus::Cancelled => 8,
        TrackingStatus::Returned => 9,
        TrackingStatus::Delivered => 10,
    }
}

/// Final statuses: once one is reached, no non-final update (however late its event time)
/// takes the shipment back.
pub const fn is_final(s: TrackingStatus) -> bool {
    matches!(s, TrackingStatus::Delivered | TrackingStatus::Returned | TrackingStatus::Cancelled)
}

/// The shipment physically left the warehouse: the first such scan dispatches the order.
pub const fn is_departure(s: TrackingStatus) -> bool {
    matches!(
        s,
        TrackingStatus::PickedUp
            | TrackingStatus::InTransit
            | TrackingStatus::OutForDelivery
            | TrackingStatus::AvailableForPickup
            | TrackingStatus::AttemptFailed
            | TrackingStatus::Delivered
            | TrackingStatus::Returned
    )
}

/// Proof of delivery.
pub const fn is_delivery(s: TrackingStatus) -> bool {
    matches!(s, TrackingStatus::Delivered)
}

/// The total order on updates: final beats non-final, then the later event time, then the
/// further status, then the event id (so equal-looking updates still have one winner).
pub fn precedence(a: &TrackingUpdate, b: &TrackingUpdate) -> Ordering {
    is_final(a.status)
        .cmp(&is_final(b.status))
        .then(a.event_time.cmp(&b.event_time))
        .then(progress(a.status).cmp(&progress(b.status)))
        .then(a.event_id.cmp(&b.event_id))
        .then(a.carrier_status.cmp(&b.carrier_status))
}

fn state_key(s: &TrackingState) -> TrackingUpdate {
    TrackingUpdate {
        carrier: String::new(),
        event_id: s.event_id.clone(),
        tracking_number: String::new(),
        carrier_status: s.carrier_status.clone(),
        status: s.status,
        event_time: s.status_at,
        detail: None,
    }
}

/// Does this update become the shipment's status? `unknown` never does (it is kept and
/// counted, but a code we cannot read must not move a shipment); otherwise the update must
/// have precedence over the current status.
pub fn supersedes(current: Option<&TrackingState>, u: &TrackingUpdate) -> bool {
    if u.status == TrackingStatus::Unknown {
        return false;
    }
    match current {
        None => true,
        Some(c) => precedence(u, &state_key(c)) == Ordering::Greater,
    }
}

/// The state after an update that [`supersedes`] the current one.
pub fn state_of(u: &TrackingUpdate) -> TrackingState {
    TrackingState {
        status: u.status,
        carrier_status: u.carrier_status.clone(),
        status_at: u.event_time,
        event_id: u.event_id.clone(),
    }
}

/// The earlier of two optional times (a fold that does not depend on arrival order).
pub fn earliest(a: Option<DateTime<Utc>>, b: DateTime<Utc>) -> DateTime<Utc> {
    a.map_or(b, |a| a.min(b))
}

/// A carrier's status-code mapping: carrier code → tracking status. Codes are compared
/// case-insensitively; anything absent maps to `unknown`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "BTreeMap<String, TrackingStatus>", into = "BTreeMap<String, TrackingStatus>")]
pub struct StatusMap(BTreeMap<String, TrackingStatus>);

impl From<BTreeMap<String, TrackingStatus>> for StatusMap {
    fn from(m: BTreeMap<String, TrackingStatus>) -> Self {
        StatusMap::new(m)
    }
}

impl From<StatusMap> for BTreeMap<String, TrackingStatus> {
    fn from(m: StatusMap) -> Self {
        m.0
    }
}

impl StatusMap {
    pub fn new(entries: impl IntoIterator<Item = (String, TrackingStatus)>) -> Self {
        StatusMap(entries.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect())
    }

    /// The mapping of EasyPost-shaped carriers: their codes are already the vocabulary, plus
    /// the older names some carriers still send.
    pub fn easypost() -> Self {
        let mut m: Vec<(String, TrackingStatus)> =
            TrackingStatus::ALL.iter().map(|s| (s.code().to_string(), *s)).collect();
        for (code, s) in [
            ("failure", TrackingStatus::Exception),
            ("error", TrackingStatus::Exception),
            ("return_to_sender", TrackingStatus::Returned),
            ("in_transit_delayed", TrackingStatus::InTransit),
        ] {
            m.push((code.to_string(), s));
        }
        StatusMap::new(m)
    }

    /// Adds or replaces entries (configuration layered over a default map).
    pub fn extend(&mut self, other: &StatusMap) {
        for (k, v) in &other.0 {
            self.0.insert(k.clone(), *v);
        }
    }

    pub fn normalize(&self, carrier_code: &str) -> TrackingStatus {
        self.0.get(&carrier_code.trim().to_ascii_lowercase()).copied().unwrap_or(TrackingStatus::Unknown)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn u(id: &str, status: TrackingStatus, minute: u32) -> TrackingUpdate {
        TrackingUpdate {
            carrier: "mock".into(),
            event_id: id.into(),
            tracking_number: "T1".into(),
            carrier_status: status.code().into(),
            status,
            event_time: Utc.with_ymd_and_hms(2026, 11, 24, 10, minute, 0).unwrap(),
            detail: None,
        }
    }

    #[test]
    fn later_updates_win_and_final_states_never_regress() {
        let s1 = state_of(&u("e1", TrackingStatus::InTransit, 10));
        assert!(supersedes(Some(&s1), &u("e2", TrackingStatus::OutForDelivery, 20)));
        assert!(!supersedes(Some(&s1), &u("e0", TrackingStatus::PreTransit, 5)), "older update");
        let delivered = state_of(&u("e3", TrackingStatus::Delivered, 30));
        assert!(!supersedes(Some(&delivered), &u("e4", TrackingStatus::InTransit, 40)), "late scan after delivery");
        assert!(!supersedes(Some(&s1), &u("e5", TrackingStatus::Unknown, 50)), "unknown never applies");
        assert!(supersedes(None, &u("e6", TrackingStatus::PreTransit, 1)));
        // Same time: the further status wins, whichever came first.
        let a = u("a", TrackingStatus::PickedUp, 10);
        let b = u("b", TrackingStatus::InTransit, 10);
        assert!(supersedes(Some(&state_of(&a)), &b));
        assert!(!supersedes(Some(&state_of(&b)), &a));
        assert!(!supersedes(Some(&state_of(&b)), &b), "a duplicate changes nothing");
    }

    #[test]
    fn mapping_is_case_insensitive_and_unknown_by_default() {
        let mut m = StatusMap::easypost();
        assert_eq!(m.normalize("IN_TRANSIT"), TrackingStatus::InTransit);
        assert_eq!(m.normalize("return_to_sender"), TrackingStatus::Returned);
        assert_eq!(m.normalize("teleported"), TrackingStatus::Unknown);
        let from_config: StatusMap = serde_json::from_str(r#"{"TELEPORTED": "in_transit"}"#).unwrap();
        m.extend(&from_config);
        assert_eq!(m.normalize("teleported"), TrackingStatus::InTransit);
    }
}
