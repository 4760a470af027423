//! Built-in scheduled monitors: queue aging, stalled records, cut-off risk and data retention.
//! Thresholds come from the active policy (`[monitors]`); the findings are pure functions in
//! `core::monitor`. A finding raises an `alert.raised` event, which reaches webhook
//! subscribers and, through the notification rules, the internal team (`exception_alert`).
//! The same set of orders alerts once a day, not on every run.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use dispatch_core::monitor::{aged, cutoff_at_risk, stalled};
use dispatch_core::outbound::{AlertData, EventType, Message};
use dispatch_core::{Order, OrderState};
use dispatch_server::AppState;
use dispatch_store::{OrderQuery, OrderSort, Store, StoreError};
use sha2::Digest;

use crate::scheduler::ScheduledAction;

/// At most this many orders are read per state by one run (the alert names at most 100).
const SCAN_LIMIT: usize = 20_000;

async fn orders(store: &dyn Store, mut q: OrderQuery) -> Result<Vec<Order>, StoreError> {
    let mut out = Vec::new();
    q.limit = 500;
    loop {
        let page = store.list_orders(&q).await?;
        out.extend(page.items);
        match page.next_after {
            Some(after) if out.len() < SCAN_LIMIT => q.after_id = Some(after),
            _ => return Ok(out),
        }
    }
}

/// Raises `alert.raised` for these orders (once per monitor, set of orders and day).
pub async fn raise(
    store: &dyn Store,
    now: DateTime<Utc>,
    alert: &str,
    severity: &str,
    message: String,
    order_ids: &[String],
) -> Result<bool, StoreError> {
    let mut ids = order_ids.to_vec();
    ids.sort();
    let digest = hex::encode(&sha2::Sha256::digest(ids.join(",").as_bytes())[..8]);
    ids.truncate(100);
    let data = AlertData { alert: alert.into(), severity: severity.into(), message: message.clone(), order_ids: ids };
    let m = Message {
        id: format!("msg_alert_{alert}_{}_{digest}", now.format("%Y%m%d")),
        event_type: EventType::AlertRaised,
        timestamp: now,
        data: serde_json::to_value(data)?,
    };
    metrics::counter!("dispatchd_alerts_total", "alert" => alert.to_string()).increment(1);
    let added = store.enqueue_jobs(&[crate::outbound::publish_job(&m)], now).await?;
    if added > 0 {
        tracing::warn!(alert, severity, %message, "ALERT");
    }
    Ok(added > 0)
}

fn list(ids: &[String]) -> String {
    let shown: Vec<&str> = ids.iter().take(5).map(String::as_str).collect();
    let more = ids.len().saturating_sub(5);
    if more > 0 { format!("{} and {more} more", shown.join(", ")) } else { shown.join(", ") }
}

/// Orders in a state longer than the policy's threshold for it.
pub struct QueueAging {
    pub app: Arc<AppState>,
}

#[async_trait]
impl ScheduledAction for QueueAging {
    async fn run(&self) -> Result<String, String> {
        let t = self.app.policy.policy().monitors.clone();
        let now = self.app.clock.now();
        let mut summary = Vec::new();
        for state in OrderState::ALL {
            if t.queue_age(*state).is_none() {
                continue;
            }
            let q = OrderQuery { states: vec![*state], ..Default::default() };
            let found = orders(self.app.store.as_ref(), q).await.map_err(|e| e.to_string())?;
            let old: Vec<String> = found.iter().filter(|o| aged(o, now, &t).is_some()).map(|o| o.id.clone()).collect();
            metrics::gauge!("dispatchd_queue_aged_orders", "state" => state.code()).set(old.len() as f64);
            if old.is_empty() {
                continue;
            }
            let limit = t.queue_age_minutes.get(state.code()).copied().unwrap_or_default();
            let msg = format!("{} order(s) {} for more than {limit} min: {}", old.len(), state.code(), list(&old));
            raise(self.app.store.as_ref(), now, &format!("queue_aging_{}", state.code()), "warning", msg, &old)
                .await
                .map_err(|e| e.to_string())?;
            summary.push(format!("{} {}", old.len(), state.code()));
        }
        Ok(if summary.is_empty() { "no aged queues".into() } else { format!("aged: {}", summary.join(", ")) })
    }
}

/// Released but not booked in time; booked but no departure scan by the cut-off plus grace.
pub struct StalledRecords {
    pub app: Arc<AppState>,
}

#[async_trait]
impl ScheduledAction for StalledRecords {
    async fn run(&self) -> Result<String, String> {
        let t = self.app.policy.policy().monitors.clone();
        let now = self.app.clock.now();
        let q = OrderQuery { states: vec![OrderState::Released, OrderState::Booked], ..Default::default() };
        let found = orders(self.app.store.as_ref(), q).await.map_err(|e| e.to_string())?;
        let mut not_booked = Vec::new();
        let mut not_departed = Vec::new();
        for o in &found {
            match stalled(o, now, &t) {
                Some(dispatch_core::monitor::Stall::NotBooked) => not_booked.push(o.id.clone()),
                Some(dispatch_core::monitor::Stall::NotDeparted) => not_departed.push(o.id.clone()),
                None => {}
            }
        }
        let store = self.app.store.as_ref();
        if !not_booked.is_empty() {
            let msg = format!(
                "{} released order(s) not booked within {} min: {}",
                not_booked.len(),
                t.booking_within_minutes,
                list(&not_booked)
            );
            raise(store, now, "stalled_not_booked", "warning", msg, &not_booked).await.map_err(|e| e.to_string())?;
        }
        if !not_departed.is_empty() {
            let msg = format!(
                "{} booked order(s) without a departure scan {} min after their cut-off: {}",
                not_departed.len(),
                t.departure_grace_minutes,
                list(&not_departed)
            );
            raise(store, now, "stalled_not_departed", "critical", msg, &not_departed)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(format!("{} not booked, {} not departed", not_booked.len(), not_departed.len()))
    }
}

/// Released orders that will miss their cut-off at the last hour's release rate, per warehouse.
pub struct CutoffRisk {
    pub app: Arc<AppState>,
}

#[async_trait]
impl ScheduledAction for CutoffRisk {
    async fn run(&self) -> Result<String, String> {
        let now = self.app.clock.now();
        let store = self.app.store.as_ref();
        let mut at_risk_total = 0;
        for w in self.app.warehouses.iter() {
            let pending = orders(
                store,
                OrderQuery {
                    states: vec![OrderState::Released],
                    warehouse: Some(w.code.clone()),
                    departure_from: Some(now),
                    departure_to: Some(now + Duration::hours(24)),
                    sort: OrderSort::Id,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            if pending.is_empty() {
                continue;
            }
            // Throughput: orders of this warehouse that left `released` within the last hour.
            let left = orders(
                store,
                OrderQuery {
                    states: vec![OrderState::Booked, OrderState::Dispatched],
                    warehouse: Some(w.code.clone()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            let per_hour = left.iter().filter(|o| now - o.state_since <= Duration::hours(1)).count() as f64;
            let refs: Vec<&Order> = pending.iter().collect();
            let risk: Vec<String> = cutoff_at_risk(&refs, per_hour, now).iter().map(|o| o.id.clone()).collect();
            metrics::gauge!("dispatchd_cutoff_at_risk_orders", "warehouse" => w.code.clone()).set(risk.len() as f64);
            if risk.is_empty() {
                continue;
            }
            at_risk_total += risk.len();
            let msg = format!(
                "{}: {} of {} released order(s) will miss their cut-off at {per_hour:.0} per hour: {}",
                w.code,
                risk.len(),
                pending.len(),
                list(&risk)
            );
            raise(store, now, &format!("cutoff_risk_{}", w.code), "warning", msg, &risk)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(format!("{at_risk_total} order(s) at risk of missing the cut-off"))
    }
}

/// Deletes operational rows older than the policy's retention (never the event log).
pub struct Retention {
    pub app: Arc<AppState>,
}

#[async_trait]
impl ScheduledAction for Retention {
    async fn run(&self) -> Result<String, String> {
        let days = self.app.policy.policy().monitors.retention_days.max(1);
        let before = self.app.clock.now() - Duration::days(i64::from(days));
        let n = self.app.store.purge_operational(before).await.map_err(|e| e.to_string())?;
        Ok(format!("{n} row(s) older than {days} days deleted"))
    }
}
