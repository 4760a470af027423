//! The business KPIs of the design brief, computed from order event streams (pure).
//!
//! - dispatch cycle time: `received` → `dispatched`, p50 and p90;
//! - on-time release rate: share of released orders released before their latest departure
//!   (the warehouse cut-off of their ship-by date);
//! - touchless rate: share of dispatched orders with no human approval decision;
//! - premium freight avoided: expedited-freight cost requested minus cost approved (closed
//!   requests only).
//!
//! Each order is folded once with [`crate::apply`], so the KPI sees exactly the state the
//! projection had after each event. Exception aging is a snapshot of open holds and is taken
//! from the projection (the console's board), not from history.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};

use crate::approval::ApprovalStatus;
use crate::{Event, EventData, OrderState, apply};

/// What one order contributes to the KPIs.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderKpi {
    pub warehouse: String,
    pub received_at: DateTime<Utc>,
    pub released_at: Option<DateTime<Utc>>,
    /// The latest departure in force when the order was first released.
    pub latest_departure: Option<DateTime<Utc>>,
    pub dispatched_at: Option<DateTime<Utc>>,
    /// A person decided an approval step on it.
    pub touched: bool,
    pub expedite_requested: f64,
    pub expedite_approved: f64,
}

/// Folds one order's events (oldest first). `None` for an empty or inconsistent stream.
pub fn order_kpi(events: &[Event]) -> Option<OrderKpi> {
    let first = events.first()?;
    let mut state = None;
    let mut k = OrderKpi {
        warehouse: String::new(),
        received_at: first.at,
        released_at: None,
        latest_departure: None,
        dispatched_at: None,
        touched: false,
        expedite_requested: 0.0,
        expedite_approved: 0.0,
    };
    for ev in events {
        let o = apply(state, ev).ok()?;
        if k.released_at.is_none() && o.state == OrderState::Released {
            k.released_at = Some(ev.at);
            k.latest_departure = o.latest_departure;
        }
        if k.dispatched_at.is_none() && matches!(o.state, OrderState::Dispatched | OrderState::Delivered) {
            k.dispatched_at = Some(o.shipment.as_ref().and_then(|s| s.departed_at).unwrap_or(ev.at));
        }
        if let EventData::ApprovalDecided { .. } = ev.data {
            k.touched = true;
        }
        k.warehouse = o.facts.warehouse.clone();
        state = Some(o);
    }
    let o = state?;
    // Only closed requests count: a pending one is neither spent nor avoided yet.
    for a in o.approvals.iter().filter(|a| a.draft.kind == "expedited_freight" && a.status != ApprovalStatus::Pending) {
        let amount = a.draft.amount.unwrap_or(0.0);
        k.expedite_requested += amount;
        if a.status == ApprovalStatus::Approved {
            k.expedite_approved += amount;
        }
    }
    Some(k)
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
        if let Some(r) = k.released_at {
            self.released += 1;
            if k.latest_departure.is_none_or(|ld| r <= ld) {
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

/// Groups events (by order, then version, as the store returns them) and folds them.
pub fn kpis(events: &[Event]) -> Kpis {
    let mut out = Kpis::default();
    let mut start = 0;
    while start < events.len() {
        let id = &events[start].order_id;
        let end = events[start..].iter().position(|e| &e.order_id != id).map_or(events.len(), |n| start + n);
        if let Some(k) = order_kpi(&events[start..end]) {
            out.daily.entry((k.warehouse.clone(), k.received_at.date_naive())).or_default().add(&k);
        }
        start = end;
    }
    for ((w, _), b) in &out.daily {
        out.total.entry(w.clone()).or_default().merge(b);
    }
    for b in out.daily.values_mut() {
        b.cycle_secs.sort_unstable();
    }
    out
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
            latest_departure: Some(t0 + h * 2),
            dispatched_at: Some(t0 + h * 3),
            touched: false,
            expedite_requested: 0.0,
            expedite_approved: 0.0,
        };
        b.add(&base);
        b.add(&OrderKpi {
            released_at: Some(t0 + h * 5),
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
