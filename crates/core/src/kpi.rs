//! The business KPIs of the design brief (pure).
//!
//! - dispatch cycle time: `received` → `dispatched`, p50 and p90;
//! - on-time release rate: share of released orders first released before their latest
//!   departure then in force (the warehouse cut-off of their ship-by date);
//! - touchless rate: share of dispatched orders no person acted on (approval decision or
//!   hold override);
//! - premium freight avoided: expedited-freight cost requested minus cost approved (closed
//!   requests only).
//!
//! What an order contributes ([`OrderKpi`]) is read off its projection: [`crate::apply`] keeps
//! the first release, whether it was on time, and whether a person touched the order, so the
//! store can keep these as columns and the console aggregates every order of a window without
//! reading events. [`order_kpi`] folds an event stream to the same values (tests compare the
//! two). Exception aging is a snapshot of open holds, taken from the board.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};

use crate::approval::ApprovalStatus;
use crate::{Event, Order, OrderState, replay};

/// What one order contributes to the KPIs.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderKpi {
    pub warehouse: String,
    pub received_at: DateTime<Utc>,
    /// When it was first released, and whether before the latest departure then in force.
    pub released_at: Option<DateTime<Utc>>,
    pub released_on_time: bool,
    pub dispatched_at: Option<DateTime<Utc>>,
    /// A person decided an approval step on it or overrode a hold.
    pub touched: bool,
    pub expedite_requested: f64,
    pub expedite_approved: f64,
}

impl OrderKpi {
    /// Read off the projection.
    pub fn of(o: &Order) -> OrderKpi {
        let dispatched = matches!(o.state, OrderState::Dispatched | OrderState::Delivered)
            || o.shipment.as_ref().is_some_and(|s| s.departed_at.is_some());
        let dispatched_at = if dispatched {
            o.shipment.as_ref().and_then(|s| s.departed_at.or(s.delivered_at)).or(Some(o.state_since))
        } else {
            None
        };
        let (mut requested, mut approved) = (0.0, 0.0);
        // Only closed requests count: a pending one is neither spent nor avoided yet.
        for a in
            o.approvals.iter().filter(|a| a.draft.kind == "expedited_freight" && a.status != ApprovalStatus::Pending)
        {
            let amount = a.draft.amount.unwrap_or(0.0);
            requested += amount;
            if a.status == ApprovalStatus::Approved {
                approved += amount;
            }
        }
        OrderKpi {
            warehouse: o.facts.warehouse.clone(),
            received_at: o.created_at,
            released_at: o.first_released_at,
            released_on_time: o.released_on_time.unwrap_or(false),
            dispatched_at,
            touched: o.touched,
            expedite_requested: requested,
            expedite_approved: approved,
        }
    }
}

/// Folds one order's events (oldest first). `None` for an empty or inconsistent stream.
pub fn order_kpi(events: &[Event]) -> Option<OrderKpi> {
    replay(events).ok().flatten().map(|o| OrderKpi::of(&o))
}

/// The KPIs of one warehouse on one day (orders by the day they were received, UTC).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KpiBucket {
    pub received: u64,
    pub released: u64,
    pub released_on_time: u64,
    pub dispatched: u64,
    pub dispatched_touchless: u64,
    /// Cycle times (received → dispatched) in seconds, sorted.
    pub cycle_secs: Vec<i64>,
    pub expedite_requested: f64,
    pub expedite_approved: f64,
}

impl KpiBucket {
    fn add(&mut self, k: &OrderKpi) {
        self.received += 1;
        if k.released_at.is_some() {
            self.released += 1;
            if k.released_on_time {
                self.released_on_time += 1;
            }
        }
        if let Some(d) = k.dispatched_at {
            self.dispatched += 1;
            if !k.touched {
                self.dispatched_touchless += 1;
            }
            self.cycle_secs.push((d - k.received_at).num_seconds().max(0));
        }
        self.expedite_requested += k.expedite_requested;
        self.expedite_approved += k.expedite_approved;
    }

    fn merge(&mut self, o: &KpiBucket) {
        self.received += o.received;
        self.released += o.released;
        self.released_on_time += o.released_on_time;
        self.dispatched += o.dispatched;
        self.dispatched_touchless += o.dispatched_touchless;
        self.cycle_secs.extend(&o.cycle_secs);
        self.cycle_secs.sort_unstable();
        self.expedite_requested += o.expedite_requested;
        self.expedite_approved += o.expedite_approved;
    }

    /// Share of released orders released on time, 0–1; `None` with none released.
    pub fn on_time_rate(&self) -> Option<f64> {
        ratio(self.released_on_time, self.released)
    }

    /// Share of dispatched orders nobody touched, 0–1; `None` with none dispatched.
    pub fn touchless_rate(&self) -> Option<f64> {
        ratio(self.dispatched_touchless, self.dispatched)
    }

    /// Cycle time percentile (nearest rank), seconds.
    pub fn cycle_percentile(&self, p: f64) -> Option<i64> {
        percentile(&self.cycle_secs, p)
    }

    pub fn premium_freight_avoided(&self) -> f64 {
        self.expedite_requested - self.expedite_approved
    }
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// Nearest-rank percentile of sorted values (`p` in 0–1).
pub fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// KPIs per warehouse per day, and per warehouse over the whole window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Kpis {
    pub daily: BTreeMap<(String, NaiveDate), KpiBucket>,
    pub total: BTreeMap<String, KpiBucket>,
}

impl Kpis {
    /// Counts one order (by the UTC day it was received). Call [`Kpis::finish`] after the last.
    pub fn add(&mut self, k: &OrderKpi) {
        self.daily.entry((k.warehouse.clone(), k.received_at.date_naive())).or_default().add(k);
    }

    /// Sorts the cycle times and sums the days into the per-warehouse totals.
    pub fn finish(mut self) -> Kpis {
        self.total.clear();
        for ((w, _), b) in &self.daily {
            self.total.entry(w.clone()).or_default().merge(b);
        }
        for b in self.daily.values_mut() {
            b.cycle_secs.sort_unstable();
        }
        self
    }
}

/// Groups events (by order, then version, as the store returns them) and folds them.
pub fn kpis(events: &[Event]) -> Kpis {
    let mut out = Kpis::default();
    let mut start = 0;
    while start < events.len() {
        let id = &events[start].order_id;
        let end = events[start..].iter().position(|e| &e.order_id != id).map_or(events.len(), |n| start + n);
        if let Some(k) = order_kpi(&events[start..end]) {
            out.add(&k);
        }
        start = end;
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<i64> = (1..=10).collect();
        assert_eq!(percentile(&v, 0.5), Some(5));
        assert_eq!(percentile(&v, 0.9), Some(9));
        assert_eq!(percentile(&v, 1.0), Some(10));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn buckets_count_on_time_touchless_cycle_and_premium_freight() {
        let t0 = DateTime::parse_from_rfc3339("2026-11-24T08:00:00Z").unwrap().with_timezone(&Utc);
        let h = chrono::Duration::hours(1);
        let mut b = KpiBucket::default();
        let base = OrderKpi {
            warehouse: "AMS".into(),
            received_at: t0,
            released_at: Some(t0 + h),
            released_on_time: true,
            dispatched_at: Some(t0 + h * 3),
            touched: false,
            expedite_requested: 0.0,
            expedite_approved: 0.0,
        };
        b.add(&base);
        b.add(&OrderKpi {
            released_at: Some(t0 + h * 5),
            released_on_time: false,
            touched: true,
            dispatched_at: Some(t0 + h * 6),
            expedite_requested: 180.0,
            expedite_approved: 0.0,
            ..base.clone()
        });
        b.add(&OrderKpi {
            released_at: None,
            dispatched_at: None,
            expedite_requested: 50.0,
            expedite_approved: 50.0,
            ..base
        });
        b.cycle_secs.sort_unstable();
        assert_eq!((b.received, b.released, b.dispatched), (3, 2, 2));
        assert_eq!(b.on_time_rate(), Some(0.5));
        assert_eq!(b.touchless_rate(), Some(0.5));
        assert_eq!(b.cycle_percentile(0.5), Some(3 * 3600));
        assert_eq!(b.cycle_percentile(0.9), Some(6 * 3600));
        assert_eq!(b.premium_freight_avoided(), 180.0);
        assert_eq!(KpiBucket::default().on_time_rate(), None);
    }
}
