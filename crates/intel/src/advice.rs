//! Advice for planners, as pure functions: ship what is there now or wait for the missing
//! stock, and in which order to work a warehouse's released queue. Advice is never acted on by
//! itself: a partial shipment still goes through the `partial_shipment` approval.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartialInput {
    /// The last departure that still meets the promised date.
    pub latest_departure: DateTime<Utc>,
    /// When the missing stock is expected in the warehouse; `None` when nobody knows.
    pub inbound_eta: Option<DateTime<Utc>>,
    /// Hours from goods receipt to ready-to-ship.
    pub receiving_hours: f64,
    /// Value that could ship now, and value waiting for stock.
    pub shippable_value: f64,
    pub backordered_value: f64,
    /// Policy costs: freight and handling of one more shipment, and the cost of each day the
    /// whole order is late (lateness of part of the order is charged pro rata by value).
    pub extra_shipment_cost: f64,
    pub late_cost_per_day: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartialChoice {
    ShipPartial,
    Wait,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartialAdvice {
    pub recommendation: PartialChoice,
    pub reason: String,
    /// Expected cost of each choice under the policy's costs (`None` when it cannot be known).
    pub cost_partial: Option<f64>,
    pub cost_wait: Option<f64>,
    pub days_late_if_wait: Option<i64>,
}

/// Ship the available part now, or wait for the rest.
pub fn partial_or_wait(i: &PartialInput) -> PartialAdvice {
    let total = i.shippable_value + i.backordered_value;
    if i.shippable_value <= 0.0 {
        return PartialAdvice {
            recommendation: PartialChoice::Wait,
            reason: "nothing is in stock to ship now".into(),
            cost_partial: None,
            cost_wait: None,
            days_late_if_wait: None,
        };
    }
    let Some(eta) = i.inbound_eta else {
        return PartialAdvice {
            recommendation: PartialChoice::ShipPartial,
            reason: format!(
                "no inbound date is known for the missing stock; ship the {:.0} available now (needs partial_shipment approval) and the rest when it arrives",
                i.shippable_value
            ),
            cost_partial: None,
            cost_wait: None,
            days_late_if_wait: None,
        };
    };
    let ready = eta + chrono::Duration::minutes((i.receiving_hours.max(0.0) * 60.0) as i64);
    if ready <= i.latest_departure {
        return PartialAdvice {
            recommendation: PartialChoice::Wait,
            reason: format!(
                "the missing stock is ready at {} — before the last departure that meets the promise ({}); one shipment, no extra freight",
                ready.format("%Y-%m-%d %H:%M UTC"),
                i.latest_departure.format("%Y-%m-%d %H:%M UTC")
            ),
            cost_partial: Some(i.extra_shipment_cost),
            cost_wait: Some(0.0),
            days_late_if_wait: Some(0),
        };
    }
    let late_hours = (ready - i.latest_departure).num_minutes() as f64 / 60.0;
    let days_late = (late_hours / 24.0).ceil() as i64;
    let share = if total > 0.0 { i.backordered_value / total } else { 1.0 };
    let cost_wait = days_late as f64 * i.late_cost_per_day;
    let cost_partial = i.extra_shipment_cost + days_late as f64 * i.late_cost_per_day * share;
    let (recommendation, reason) = if cost_partial < cost_wait {
        (
            PartialChoice::ShipPartial,
            format!(
                "waiting makes the whole order {days_late} day(s) late (cost {cost_wait:.2}); shipping the available {:.0}% now costs {cost_partial:.2} including the extra shipment (needs partial_shipment approval)",
                100.0 * (1.0 - share)
            ),
        )
    } else {
        (
            PartialChoice::Wait,
            format!(
                "an extra shipment costs more ({cost_partial:.2}) than {days_late} day(s) of lateness for the whole order ({cost_wait:.2})"
            ),
        )
    };
    PartialAdvice {
        recommendation,
        reason,
        cost_partial: Some(cost_partial),
        cost_wait: Some(cost_wait),
        days_late_if_wait: Some(days_late),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueItem {
    pub order_id: String,
    /// The model's late-departure probability.
    pub risk: f64,
    pub latest_departure: DateTime<Utc>,
    /// Minutes of picking and packing left.
    pub work_minutes: f64,
}

/// The recovery assumption behind sequencing: an order finished with slack before its
/// cut-off has time for a rebooking or second pick-up, so up to `recoverable` of its risk is
/// avoided, the more the longer the slack (`1 - exp(-slack / recovery_hours)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceOptions {
    pub recoverable: f64,
    pub recovery_hours: f64,
}

impl Default for SequenceOptions {
    fn default() -> Self {
        SequenceOptions { recoverable: 0.5, recovery_hours: 2.0 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceAdvice {
    pub sequence: Vec<String>,
    pub expected_late_current: f64,
    pub expected_late_recommended: f64,
    pub sentence: String,
}

/// Expected late departures when one lane works `items` in this order from `start`.
pub fn expected_late(items: &[&QueueItem], start: DateTime<Utc>, o: &SequenceOptions) -> f64 {
    let mut t = start;
    let mut sum = 0.0;
    for it in items {
        t += chrono::Duration::seconds((it.work_minutes.max(0.0) * 60.0) as i64);
        let slack_h = (it.latest_departure - t).num_seconds() as f64 / 3600.0;
        sum += if slack_h < 0.0 {
            1.0
        } else {
            let r = it.risk.clamp(0.0, 1.0);
            r * (1.0 - o.recoverable * (1.0 - (-slack_h / o.recovery_hours.max(0.01)).exp()))
        };
    }
    sum
}

/// A dispatch sequence for a released queue (given in its current order) that lowers the
/// expected late departures: earliest cut-off first, riskier first among equals, then
/// improved by adjacent swaps while that helps.
pub fn sequence(queue: &[QueueItem], start: DateTime<Utc>, o: &SequenceOptions) -> SequenceAdvice {
    let current: Vec<&QueueItem> = queue.iter().collect();
    let before = expected_late(&current, start, o);
    let mut seq = current.clone();
    seq.sort_by(|a, b| {
        a.latest_departure
            .cmp(&b.latest_departure)
            .then_with(|| b.risk.total_cmp(&a.risk))
            .then_with(|| a.order_id.cmp(&b.order_id))
    });
    let mut best = expected_late(&seq, start, o);
    for _ in 0..queue.len().min(50) {
        let mut improved = false;
        for i in 0..seq.len().saturating_sub(1) {
            seq.swap(i, i + 1);
            let e = expected_late(&seq, start, o);
            if e + 1e-12 < best {
                best = e;
                improved = true;
            } else {
                seq.swap(i, i + 1);
            }
        }
        if !improved {
            break;
        }
    }
    // Never recommend something worse than what the floor is already doing.
    if before <= best {
        seq = current;
        best = before;
    }
    SequenceAdvice {
        sequence: seq.iter().map(|i| i.order_id.clone()).collect(),
        expected_late_current: before,
        expected_late_recommended: best,
        sentence: format!(
            "working the queue in the recommended order is expected to give {best:.2} late departures instead of {before:.2}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 8, 0, 0).unwrap()
    }

    fn input(eta_hours: Option<i64>) -> PartialInput {
        PartialInput {
            latest_departure: t0() + Duration::hours(8),
            inbound_eta: eta_hours.map(|h| t0() + Duration::hours(h)),
            receiving_hours: 2.0,
            shippable_value: 800.0,
            backordered_value: 200.0,
            extra_shipment_cost: 40.0,
            late_cost_per_day: 120.0,
        }
    }

    #[test]
    fn wait_when_the_stock_arrives_in_time() {
        let a = partial_or_wait(&input(Some(4)));
        assert_eq!(a.recommendation, PartialChoice::Wait);
        assert_eq!(a.days_late_if_wait, Some(0));
    }

    #[test]
    fn ship_partial_when_waiting_costs_more() {
        // Ready at +50 h: 42 h after the last departure → 2 days late.
        let a = partial_or_wait(&input(Some(48)));
        assert_eq!(a.recommendation, PartialChoice::ShipPartial);
        assert_eq!(a.days_late_if_wait, Some(2));
        assert_eq!(a.cost_wait, Some(240.0));
        assert_eq!(a.cost_partial, Some(40.0 + 240.0 * 0.2));
        assert!(a.reason.contains("partial_shipment approval"));
    }

    #[test]
    fn wait_when_an_extra_shipment_costs_more() {
        let mut i = input(Some(20));
        i.extra_shipment_cost = 500.0;
        assert_eq!(partial_or_wait(&i).recommendation, PartialChoice::Wait);
        assert_eq!(partial_or_wait(&input(None)).recommendation, PartialChoice::ShipPartial);
        i.shippable_value = 0.0;
        assert_eq!(partial_or_wait(&i).recommendation, PartialChoice::Wait);
    }

    #[test]
    fn sequencing_moves_the_tight_risky_order_forward() {
        let item = |id: &str, risk: f64, h: i64, m: f64| QueueItem {
            order_id: id.into(),
            risk,
            latest_departure: t0() + Duration::hours(h),
            work_minutes: m,
        };
        // FIFO would finish the tight order after its cut-off.
        let queue = vec![
            item("a", 0.05, 8, 60.0),
            item("b", 0.05, 8, 60.0),
            item("tight", 0.4, 2, 45.0),
            item("c", 0.1, 9, 30.0),
        ];
        let adv = sequence(&queue, t0(), &SequenceOptions::default());
        assert_eq!(adv.sequence[0], "tight");
        assert!(adv.expected_late_recommended < adv.expected_late_current - 0.5, "{adv:?}");
        let mut sorted = adv.sequence.clone();
        sorted.sort();
        assert_eq!(sorted, vec!["a", "b", "c", "tight"]);
    }

    #[test]
    fn an_already_good_order_is_kept() {
        let q = vec![QueueItem {
            order_id: "x".into(),
            risk: 0.1,
            latest_departure: t0() + Duration::hours(5),
            work_minutes: 10.0,
        }];
        let adv = sequence(&q, t0(), &SequenceOptions::default());
        assert_eq!(adv.sequence, vec!["x"]);
        assert_eq!(adv.expected_late_current, adv.expected_late_recommended);
    }
}
