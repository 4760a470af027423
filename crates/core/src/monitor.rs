//! Watching the dispatch floor, the pure part: which orders have waited too long in a queue,
//! which have stalled between release and booking or between booking and departure, and which
//! will miss their cut-off at the current release rate. The scheduled actions feed these
//! the projection and the clock, and raise alerts with what they return.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::order::Order;
use crate::vocab::OrderState;

/// Thresholds of the monitors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Minutes an order may stay in a state before the queue-aging monitor alerts, by state
    /// (`on_hold`, `awaiting_approval`, `released`, `exception`, ...).
    pub queue_age_minutes: BTreeMap<String, u32>,
    /// Released but not booked after this many minutes: stalled.
    pub booking_within_minutes: u32,
    /// Booked but no departure scan this many minutes after the latest departure (cut-off):
    /// stalled.
    pub departure_grace_minutes: u32,
    /// Done jobs, schedule runs, idempotency answers and notifications older than this are
    /// deleted by the retention action (the event log is never deleted).
    pub retention_days: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            queue_age_minutes: [("on_hold", 240), ("awaiting_approval", 120), ("exception", 60)]
                .into_iter()
                .map(|(s, m)| (s.to_string(), m))
                .collect(),
            booking_within_minutes: 30,
            departure_grace_minutes: 30,
            retention_days: 90,
        }
    }
}

impl Thresholds {
    /// Unknown state names in `queue_age_minutes`.
    pub fn check(&self) -> Result<(), String> {
        for s in self.queue_age_minutes.keys() {
            if serde_json::from_value::<OrderState>(serde_json::Value::String(s.clone())).is_err() {
                return Err(format!("queue_age_minutes: `{s}` is not an order state"));
            }
        }
        Ok(())
    }

    pub fn queue_age(&self, state: OrderState) -> Option<Duration> {
        self.queue_age_minutes.get(state.code()).map(|m| Duration::minutes(i64::from(*m)))
    }
}

/// How long `o` has been in its state, when that is longer than its queue's threshold.
pub fn aged(o: &Order, now: DateTime<Utc>, t: &Thresholds) -> Option<Duration> {
    let limit = t.queue_age(o.state)?;
    let age = now - o.state_since;
    (age > limit).then_some(age)
}

/// Why an order is stalled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stall {
    /// Released, not booked within the threshold.
    NotBooked,
    /// Booked, no departure scan by the cut-off plus grace.
    NotDeparted,
}

pub fn stalled(o: &Order, now: DateTime<Utc>, t: &Thresholds) -> Option<Stall> {
    match o.state {
        OrderState::Released if now - o.state_since > Duration::minutes(i64::from(t.booking_within_minutes)) => {
            Some(Stall::NotBooked)
        }
        OrderState::Booked => {
            let deadline = o.latest_departure? + Duration::minutes(i64::from(t.departure_grace_minutes));
            (now > deadline).then_some(Stall::NotDeparted)
        }
        _ => None,
    }
}

/// The released orders that will miss their latest departure if orders keep leaving at
/// `per_hour` in dispatch sequence (priority first, then the earliest departure). With no
/// throughput every order due is at risk.
pub fn cutoff_at_risk<'a>(pending: &[&'a Order], per_hour: f64, now: DateTime<Utc>) -> Vec<&'a Order> {
    let mut queue: Vec<&Order> = pending.iter().copied().filter(|o| o.latest_departure.is_some()).collect();
    queue.sort_by(|a, b| {
        b.priority.cmp(&a.priority).then(a.latest_departure.cmp(&b.latest_departure)).then(a.id.cmp(&b.id))
    });
    let mut out = Vec::new();
    for (k, o) in queue.into_iter().enumerate() {
        let Some(deadline) = o.latest_departure else { continue };
        let done = if per_hour > 0.0 {
            now + Duration::milliseconds(((k as f64 + 1.0) / per_hour * 3_600_000.0) as i64)
        } else {
            DateTime::<Utc>::MAX_UTC
        };
        if done > deadline {
            out.push(o);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap()
    }

    fn order(id: &str, state: OrderState, since_min: i64, departure_min: Option<i64>, priority: i32) -> Order {
        Order {
            id: id.into(),
            version: 2,
            state,
            hold_reasons: vec![],
            priority,
            facts: crate::readiness::tests::facts(),
            checks: vec![],
            latest_departure: departure_min.map(|m| now() + Duration::minutes(m)),
            status_note: None,
            shipment: None,
            created_at: now() - Duration::minutes(since_min),
            updated_at: now() - Duration::minutes(since_min),
            state_since: now() - Duration::minutes(since_min),
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
    fn queue_aging_uses_the_states_threshold() {
        let t = Thresholds::default();
        assert_eq!(aged(&order("a", OrderState::OnHold, 241, None, 0), now(), &t), Some(Duration::minutes(241)));
        assert_eq!(aged(&order("a", OrderState::OnHold, 240, None, 0), now(), &t), None);
        assert_eq!(aged(&order("a", OrderState::Delivered, 10_000, None, 0), now(), &t), None, "no threshold");
        assert!(t.check().is_ok());
        let mut bad = t.clone();
        bad.queue_age_minutes.insert("waiting".into(), 5);
        assert!(bad.check().unwrap_err().contains("waiting"));
    }

    #[test]
    fn stalled_between_release_booking_and_departure() {
        let t = Thresholds::default();
        assert_eq!(stalled(&order("a", OrderState::Released, 31, Some(60), 0), now(), &t), Some(Stall::NotBooked));
        assert_eq!(stalled(&order("a", OrderState::Released, 29, Some(60), 0), now(), &t), None);
        // Cut-off 31 minutes ago, grace 30: stalled; 29 minutes ago: not yet.
        assert_eq!(stalled(&order("a", OrderState::Booked, 500, Some(-31), 0), now(), &t), Some(Stall::NotDeparted));
        assert_eq!(stalled(&order("a", OrderState::Booked, 500, Some(-29), 0), now(), &t), None);
        assert_eq!(stalled(&order("a", OrderState::Booked, 500, None, 0), now(), &t), None);
    }

    #[test]
    fn cutoff_risk_follows_the_dispatch_sequence() {
        // Four orders due in 60 minutes, two per hour leave: the two of lowest priority miss.
        let os: Vec<Order> =
            (0..4).map(|i| order(&format!("o{i}"), OrderState::Released, 5, Some(60), 100 - i)).collect();
        let refs: Vec<&Order> = os.iter().collect();
        let risk: Vec<&str> = cutoff_at_risk(&refs, 2.0, now()).iter().map(|o| o.id.as_str()).collect();
        assert_eq!(risk, vec!["o2", "o3"]);
        assert!(cutoff_at_risk(&refs, 10.0, now()).is_empty());
        assert_eq!(cutoff_at_risk(&refs, 0.0, now()).len(), 4, "nothing leaves: all at risk");
    }
}
