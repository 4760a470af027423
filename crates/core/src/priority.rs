//! Built-in dispatch priority: how urgent and how valuable an order is, as a score from
//! 0 to 1000 with the terms that made it up. The policy issue makes the terms configurable;
//! these are its defaults. Ties are broken by latest departure, then by order id.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::order::OrderFacts;
use crate::vocab::ServiceLevel;

/// One term of the priority score, so "why this priority" has an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PriorityTerm {
    pub term: String,
    pub points: i32,
    pub why: String,
}

pub const MAX: i32 = 1000;

pub fn score(facts: &OrderFacts, now: DateTime<Utc>, latest_departure: DateTime<Utc>) -> (i32, Vec<PriorityTerm>) {
    let service = match facts.service_level {
        ServiceLevel::SameDay => 350,
        ServiceLevel::NextDay | ServiceLevel::Express => 250,
        ServiceLevel::Standard => 120,
        ServiceLevel::Economy => 40,
    };
    let tier = match facts.customer.tier.as_str() {
        "platinum" | "key_account" => 200,
        "gold" => 150,
        "silver" => 75,
        _ => 0,
    };
    // Slack to the latest departure: the nearer the cut-off, the more urgent; past it the
    // order cannot be saved by sequencing, so urgency stops growing.
    let hours_left = (latest_departure - now).num_minutes() as f64 / 60.0;
    let urgency = if hours_left < 0.0 { 0 } else { (300.0 - hours_left * 4.0).clamp(0.0, 300.0) as i32 };
    let value = (facts.order_value() / 50.0).clamp(0.0, 150.0) as i32;
    let terms = vec![
        PriorityTerm { term: "service_level".into(), points: service, why: facts.service_level.code().into() },
        PriorityTerm { term: "customer_tier".into(), points: tier, why: facts.customer.tier.clone() },
        PriorityTerm {
            term: "time_to_cutoff".into(),
            points: urgency,
            why: format!("{hours_left:.1}h to latest departure"),
        },
        PriorityTerm { term: "order_value".into(), points: value, why: format!("{:.2}", facts.order_value()) },
    ];
    let total = terms.iter().map(|t| t.points).sum::<i32>().clamp(0, MAX);
    (total, terms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readiness::tests::{facts, now};
    use chrono::Duration;

    #[test]
    fn urgent_gold_same_day_outranks_routine_economy() {
        let mut urgent = facts();
        urgent.service_level = ServiceLevel::SameDay;
        let mut routine = facts();
        routine.service_level = ServiceLevel::Economy;
        routine.customer.tier = "standard".into();
        let (a, _) = score(&urgent, now(), now() + Duration::hours(2));
        let (b, _) = score(&routine, now(), now() + Duration::days(4));
        assert!(a > b, "{a} <= {b}");
    }

    #[test]
    fn terms_add_up_and_stay_in_range() {
        let (total, terms) = score(&facts(), now(), now() + Duration::hours(10));
        assert_eq!(total, terms.iter().map(|t| t.points).sum::<i32>());
        assert!((0..=MAX).contains(&total));
        let (late, _) = score(&facts(), now(), now() - Duration::hours(10));
        assert!(late < total, "a missed cut-off gets no urgency points");
    }
}
