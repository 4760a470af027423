//! What dispatchd writes back to Odoo, and the worker that does it.
//!
//! Odoo owns the delivery order; dispatchd owns its decision about it. The field-ownership
//! table ([`OWNERSHIP`], mirrored in docs/odoo.md) says which system writes which field, and
//! [`WritebackSettings::check`] refuses a configuration that would make dispatchd write a
//! field Odoo owns.
//!
//! Each `odoo_writeback` job (one per order version that changed its state, holds or
//! shipment; written in the same transaction as the change) is applied exactly once:
//! field writes are idempotent (only changed values are written, the values are the order's
//! *current* ones so an old job never overwrites a newer state), and the chatter note carries
//! the job's key, which is looked up in the picking's chatter before posting — an answer lost
//! after Odoo posted does not post twice.

use std::sync::Arc;
use std::time::Duration;

use dispatch_core::effects::ODOO_WRITEBACK;
use dispatch_core::{HoldReason, Order, OrderState};
use dispatch_integrations::resilience::backoff;
use dispatch_store::{Job, JobStatus, Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::client::Client;
use crate::error::OdooError;
use crate::mapping::PICKING;

/// Which system writes a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Owner {
    /// Odoo's users and workflows; dispatchd only reads it.
    Odoo,
    /// dispatchd writes it; Odoo users should not edit it.
    Dispatchd,
    /// Both add to it, neither edits the other's entries (the chatter).
    Append,
}

/// The field-ownership table: (model, field, owner, why).
pub const OWNERSHIP: &[(&str, &str, Owner, &str)] = &[
    ("stock.picking", "name", Owner::Odoo, "the order's key in dispatchd"),
    ("stock.picking", "state", Owner::Odoo, "Odoo's workflow: reserve, validate, cancel"),
    ("stock.picking", "partner_id", Owner::Odoo, "ship-to address"),
    ("stock.picking", "scheduled_date", Owner::Odoo, "planning"),
    ("stock.picking", "date_deadline", Owner::Odoo, "promised date fallback"),
    ("stock.picking", "priority", Owner::Odoo, "starred = urgent"),
    ("stock.picking", "move_ids", Owner::Odoo, "lines, demand and reservation"),
    ("stock.picking", "carrier_id", Owner::Odoo, "carrier preference"),
    ("stock.picking", "sale_id", Owner::Odoo, "link to the sale"),
    ("stock.picking", "carrier_tracking_ref", Owner::Dispatchd, "the booking's tracking number"),
    ("stock.picking", "x_dispatch_status", Owner::Dispatchd, "dispatchd's state of the order (configurable)"),
    ("stock.picking", "message_ids", Owner::Append, "chatter notes on holds, approvals, bookings"),
    ("sale.order", "*", Owner::Odoo, "read only"),
    ("res.partner", "*", Owner::Odoo, "read only (credit, address, tier)"),
    ("stock.move", "*", Owner::Odoo, "read only"),
];

/// Who owns `model.field` by the table (unknown fields of `stock.picking`: Odoo).
pub fn owner(model: &str, field: &str) -> Owner {
    OWNERSHIP
        .iter()
        .find(|(m, f, _, _)| *m == model && (*f == field || *f == "*"))
        .map(|(_, _, o, _)| *o)
        .unwrap_or(if field.starts_with("x_") { Owner::Dispatchd } else { Owner::Odoo })
}

/// `[odoo.writeback]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WritebackSettings {
    pub enabled: bool,
    /// The picking's tracking number field.
    pub tracking_field: String,
    /// A custom Char field on `stock.picking` for dispatchd's state (empty: not written).
    pub status_field: String,
    /// Post chatter notes on holds, approvals, bookings, exceptions.
    pub chatter: bool,
    pub concurrency: usize,
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_cap_ms: u64,
    pub lease_secs: u64,
    pub poll_ms: u64,
}

impl Default for WritebackSettings {
    fn default() -> Self {
        WritebackSettings {
            enabled: true,
            tracking_field: "carrier_tracking_ref".into(),
            status_field: "x_dispatch_status".into(),
            chatter: true,
            concurrency: 8,
            max_attempts: 12,
            backoff_base_ms: 1000,
            backoff_cap_ms: 300_000,
            lease_secs: 60,
            poll_ms: 500,
        }
    }
}

impl WritebackSettings {
    /// The picking fields dispatchd writes.
    pub fn fields(&self) -> Vec<String> {
        [&self.tracking_field, &self.status_field].into_iter().filter(|f| !f.is_empty()).cloned().collect()
    }

    /// Refuses fields that Odoo owns.
    pub fn check(&self) -> Vec<String> {
        self.fields()
            .into_iter()
            .filter(|f| owner(PICKING, f) != Owner::Dispatchd)
            .map(|f| format!("writeback field stock.picking.{f} is owned by Odoo (see the field-ownership table in docs/odoo.md); use a custom field such as x_dispatch_status"))
            .collect()
    }
}

/// The job's payload, as `core::effects` writes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WritebackJob {
    pub order_id: String,
    pub version: u64,
    pub external_id: String,
    pub state: OrderState,
    #[serde(default)]
    pub previous_state: Option<OrderState>,
    #[serde(default)]
    pub hold_reasons: Vec<HoldReason>,
    #[serde(default)]
    pub status_note: Option<String>,
    #[serde(default)]
    pub shipment: Option<ShipmentRef>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ShipmentRef {
    pub carrier: String,
    pub tracking_number: String,
}

/// What to do on the picking for one job.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Field values to make true (only those that differ are written).
    pub values: Map<String, Value>,
    /// A chatter note, with its marker.
    pub note: Option<String>,
    /// The marker that identifies the note in the chatter.
    pub marker: String,
}

/// The marker of a job's note: unique per job, so the chatter can be searched for it.
pub fn marker(dedupe_key: &str) -> String {
    format!("[dispatchd {dedupe_key}]")
}

/// Pure: the values from the order as it is now (so a late job never writes an older state)
/// and the note about the change this job records.
pub fn plan(job: &WritebackJob, current: Option<&Order>, s: &WritebackSettings, dedupe_key: &str) -> Plan {
    let mut values = Map::new();
    let state = current.map_or(job.state, |o| o.state);
    if !s.status_field.is_empty() {
        values.insert(s.status_field.clone(), json!(state.code()));
    }
    let tracking = current
        .and_then(|o| o.shipment.as_ref().map(|sh| sh.tracking_number.clone()))
        .or_else(|| job.shipment.as_ref().map(|sh| sh.tracking_number.clone()));
    if let Some(t) = tracking
        && !s.tracking_field.is_empty()
    {
        values.insert(s.tracking_field.clone(), json!(t));
    }
    let marker = marker(dedupe_key);
    let text = match job.state {
        OrderState::OnHold => {
            let reasons: Vec<&str> = job.hold_reasons.iter().map(|r| r.code()).collect();
            Some(format!(
                "dispatchd: on hold ({}).",
                if reasons.is_empty() { "policy".into() } else { reasons.join(", ") }
            ))
        }
        OrderState::AwaitingApproval => Some("dispatchd: waiting for an approval before dispatch.".to_string()),
        OrderState::Released
            if matches!(job.previous_state, Some(OrderState::OnHold | OrderState::AwaitingApproval)) =>
        {
            Some("dispatchd: released for dispatch (hold resolved or approved).".to_string())
        }
        OrderState::Booked => job
            .shipment
            .as_ref()
            .map(|sh| format!("dispatchd: booked with {}, tracking number {}.", sh.carrier, sh.tracking_number)),
        OrderState::Exception => {
            Some(format!("dispatchd: exception: {}.", job.status_note.as_deref().unwrap_or("see dispatchd")))
        }
        _ => None,
    };
    let note = text.filter(|_| s.chatter).map(|t| format!("{t} {marker}"));
    Plan { values, note, marker }
}

/// What one attempt did.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    Done {
        wrote: Vec<String>,
        posted: bool,
    },
    /// The picking is gone from Odoo: nothing to write.
    NoPicking,
}

/// Applies a plan to the picking named `external_id`.
pub async fn apply(client: &Client, external_id: &str, p: &Plan) -> Result<Applied, OdooError> {
    let mut fields: Vec<String> = vec!["id".into()];
    fields.extend(p.values.keys().cloned());
    let found = client.search_read(PICKING, json!([["name", "=", external_id]]), &fields, None, Some(1)).await?;
    let Some(rec) = found.first() else { return Ok(Applied::NoPicking) };
    let id = rec.get("id").and_then(Value::as_i64).unwrap_or(0);
    let changed: Map<String, Value> =
        p.values.iter().filter(|(k, v)| rec.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let wrote: Vec<String> = changed.keys().cloned().collect();
    if !changed.is_empty() {
        client.write(PICKING, &[id], changed).await?;
    }
    let mut posted = false;
    if let Some(note) = &p.note {
        let seen = client
            .search_count(
                "mail.message",
                json!([["model", "=", PICKING], ["res_id", "=", id], ["body", "ilike", p.marker]]),
            )
            .await?;
        if seen == 0 {
            client.message_post(PICKING, id, note).await?;
            posted = true;
        }
    }
    Ok(Applied::Done { wrote, posted })
}

/// Takes `odoo_writeback` jobs from the outbox and applies them.
pub struct Worker {
    pub id: String,
    pub client: Arc<Client>,
    pub store: Arc<dyn Store>,
    pub settings: WritebackSettings,
    pub now: Arc<dyn Fn() -> chrono::DateTime<chrono::Utc> + Send + Sync>,
}

impl Worker {
    /// Claims and processes one round of due jobs; returns how many were claimed.
    pub async fn round(&self) -> Result<usize, StoreError> {
        let lease = chrono::Duration::seconds(self.settings.lease_secs.max(1) as i64);
        let jobs = self
            .store
            .claim_jobs(&self.id, &[ODOO_WRITEBACK], self.settings.concurrency.max(1) as u32, (self.now)(), lease)
            .await?;
        let n = jobs.len();
        futures::future::join_all(jobs.into_iter().map(|j| self.process(j))).await;
        Ok(n)
    }

    async fn process(&self, job: Job) {
        let result = self.attempt(&job).await;
        let recorded = match result {
            Ok(what) => {
                metrics::counter!("dispatchd_odoo_writeback_total", "outcome" => "done").increment(1);
                tracing::debug!(target: "dispatchd::odoo", job = %job.dedupe_key, "{what}");
                self.store.finish_job(job.id, &self.id, JobStatus::Done, None).await
            }
            Err(e) if e.is_retryable() && job.attempts < i64::from(self.settings.max_attempts.max(1)) => {
                metrics::counter!("dispatchd_odoo_writeback_total", "outcome" => "retry").increment(1);
                let attempt = u32::try_from(job.attempts.max(1)).unwrap_or(u32::MAX);
                let unit: f64 = rand_unit(&job.dedupe_key, attempt);
                let delay = backoff(
                    attempt,
                    Duration::from_millis(self.settings.backoff_base_ms),
                    Duration::from_millis(self.settings.backoff_cap_ms),
                    None,
                    unit,
                );
                let at = (self.now)() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::seconds(1));
                tracing::warn!(target: "dispatchd::odoo", job = %job.dedupe_key, error = %e, retry_at = %at, "Odoo write-back failed; will retry");
                self.store.retry_job(job.id, &self.id, at, &e.to_string()).await
            }
            Err(e) => {
                metrics::counter!("dispatchd_odoo_writeback_total", "outcome" => "dead").increment(1);
                metrics::counter!("dispatchd_dead_letters_total", "kind" => ODOO_WRITEBACK).increment(1);
                tracing::error!(target: "dispatchd::odoo", job = %job.dedupe_key, error = %e, "Odoo write-back failed for good: dead letter (retry with `dispatchd dead-letters retry`)");
                self.store.finish_job(job.id, &self.id, JobStatus::Dead, Some(&e.to_string())).await
            }
        };
        if let Err(e) = recorded {
            tracing::warn!(target: "dispatchd::odoo", job = %job.dedupe_key, error = %e, "could not record the write-back's outcome; retried after the lease");
        }
    }

    async fn attempt(&self, job: &Job) -> Result<String, OdooError> {
        let parsed: WritebackJob = serde_json::from_value(job.payload.clone())
            .map_err(|e| OdooError::Protocol { what: "the write-back job".into(), detail: e.to_string() })?;
        let current = self
            .store
            .order(&parsed.order_id)
            .await
            .map_err(|e| OdooError::Unavailable { url: "the store".into(), detail: e.to_string() })?;
        let p = plan(&parsed, current.as_ref(), &self.settings, &job.dedupe_key);
        match apply(&self.client, &parsed.external_id, &p).await? {
            Applied::NoPicking => Ok(format!("picking {} no longer exists in Odoo", parsed.external_id)),
            Applied::Done { wrote, posted } => Ok(format!("wrote {wrote:?}, note posted: {posted}")),
        }
    }

    /// Runs until `stop` turns true.
    pub fn spawn(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let idle = Duration::from_millis(self.settings.poll_ms.max(10));
            loop {
                if *stop.borrow() {
                    break;
                }
                let claimed = match self.round().await {
                    Ok(n) => n,
                    Err(StoreError::Closed) => break,
                    Err(e) => {
                        tracing::warn!(target: "dispatchd::odoo", error = %e, "cannot claim Odoo write-back jobs");
                        0
                    }
                };
                if claimed == 0 {
                    tokio::select! {
                        _ = self.store.wait_for_jobs(&[ODOO_WRITEBACK], idle) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        })
    }
}

/// A jitter unit in [0, 1) that differs per job and attempt (no RNG dependency needed).
fn rand_unit(key: &str, attempt: u32) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain(attempt.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: OrderState) -> WritebackJob {
        WritebackJob {
            order_id: "ord_1".into(),
            version: 3,
            external_id: "WH/OUT/1".into(),
            state,
            previous_state: Some(OrderState::OnHold),
            hold_reasons: vec![HoldReason::StockShort, HoldReason::CreditHold],
            status_note: None,
            shipment: Some(ShipmentRef { carrier: "dhl".into(), tracking_number: "TRK1".into() }),
        }
    }

    #[test]
    fn notes_for_holds_approvals_and_bookings_carry_the_marker() {
        let s = WritebackSettings::default();
        let held = plan(&job(OrderState::OnHold), None, &s, "odoo_writeback:ord_1:3");
        assert_eq!(
            held.note.as_deref(),
            Some("dispatchd: on hold (stock_short, credit_hold). [dispatchd odoo_writeback:ord_1:3]")
        );
        assert_eq!(held.values["x_dispatch_status"], "on_hold");
        let booked = plan(&job(OrderState::Booked), None, &s, "k");
        assert!(booked.note.unwrap().contains("tracking number TRK1"));
        assert_eq!(booked.values["carrier_tracking_ref"], "TRK1");
        assert!(plan(&job(OrderState::Released), None, &s, "k").note.unwrap().contains("released"));
        let mut fresh = job(OrderState::Released);
        fresh.previous_state = None;
        assert!(plan(&fresh, None, &s, "k").note.is_none(), "a plain release is not news in the chatter");
        let quiet = WritebackSettings { chatter: false, status_field: String::new(), ..s };
        let p = plan(&job(OrderState::OnHold), None, &quiet, "k");
        assert!(p.note.is_none());
        assert!(!p.values.contains_key("x_dispatch_status"));
    }

    #[test]
    fn odoo_owned_fields_are_refused() {
        let bad = WritebackSettings { status_field: "state".into(), ..Default::default() };
        assert_eq!(bad.check().len(), 1);
        assert!(bad.check()[0].contains("owned by Odoo"));
        assert!(WritebackSettings::default().check().is_empty());
        assert_eq!(owner("sale.order", "commitment_date"), Owner::Odoo);
        assert_eq!(owner("stock.picking", "x_other"), Owner::Dispatchd);
    }
}
