//! The active risk model of a running server, kept in an `Arc` that the write path reads
//! without touching the store: [`ActiveModel::refresh`] (at start, in the periodic sweep and on
//! `GET /orders/{id}/risk`) checks the store's active version and swaps the model only when it
//! changed (promote, rollback, a better candidate), so every node follows the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use dispatch_core::OrderState;
use dispatch_core::effects::RECORD_DISPATCH;
use dispatch_core::risk::RiskFactor;
use dispatch_intel::RiskModel;
use dispatch_policy::{RiskQuery, RiskScore, RiskSource};
use dispatch_store::{HistoryRow, JobStatus, Store, StoreError};

#[derive(Default)]
pub struct ActiveModel {
    cached: RwLock<Option<Arc<RiskModel>>>,
    /// Released orders waiting per warehouse, as of the last refresh: the model's
    /// `backlog_at_release`, read on the write path without a query.
    backlog: RwLock<Arc<HashMap<String, u32>>>,
    /// Failed bookings per carrier in the 6 h before the last refresh (every node's, from the
    /// store): the model's `carrier_failures_6h`, read on the write path without a query.
    carrier_failures: RwLock<Arc<HashMap<String, u32>>>,
    /// Explanations already computed for the current model, by order and score: the sweep
    /// re-evaluates the same orders again and again, and Shapley values cost milliseconds.
    explained: Explained,
}

/// Explanations by (order and the quoted values, score bits).
type Explained = Arc<Mutex<HashMap<(String, u64), Vec<RiskFactor>>>>;

/// Most explanations kept; the cache is emptied when it is full or the model changes.
const EXPLAINED_MAX: usize = 20_000;

/// What a refresh found.
#[derive(Debug, Clone, PartialEq)]
pub struct Refresh {
    /// The active version now (`None`: no model is active).
    pub version: Option<String>,
    /// It differs from the version the server scored with before.
    pub changed: bool,
}

impl ActiveModel {
    /// The model the write path scores with, without I/O.
    pub fn current(&self) -> Option<Arc<RiskModel>> {
        self.cached.read().ok().and_then(|c| c.clone())
    }

    /// A scorer over the current model, `None` when no model is active.
    pub fn scorer(&self) -> Option<Arc<Scorer>> {
        let model = self.current()?;
        let backlog = self.backlog.read().map(|b| b.clone()).unwrap_or_default();
        let carrier_failures = self.carrier_failures.read().map(|b| b.clone()).unwrap_or_default();
        Some(Arc::new(Scorer { model, backlog, carrier_failures, explained: self.explained.clone() }))
    }

    /// Reads the store's active version and swaps the model when it changed; also refreshes
    /// the backlog and carrier-failure snapshots (as of `now`). An unreadable artifact is
    /// logged and leaves no model active.
    pub async fn refresh(&self, store: &dyn Store, now: DateTime<Utc>) -> Result<Refresh, StoreError> {
        let models = store.models().await?;
        let active = models.iter().find(|m| m.status == "active").map(|m| m.version.clone());
        let before = self.current().map(|m| m.version.clone());
        if active != before {
            let loaded = match &active {
                None => None,
                Some(_) => match store.active_model().await? {
                    None => None,
                    Some((row, bytes)) => match RiskModel::from_bytes(&bytes) {
                        Ok(m) => Some(Arc::new(m)),
                        Err(e) => {
                            tracing::error!(version = %row.version, error = %e, "the active risk model cannot be read");
                            None
                        }
                    },
                },
            };
            tracing::info!(from = ?before, to = ?loaded.as_ref().map(|m| &m.version), "risk model swapped");
            if let Ok(mut c) = self.cached.write() {
                *c = loaded;
            }
            if let Ok(mut e) = self.explained.lock() {
                e.clear();
            }
        }
        if self.current().is_some() {
            let counts = store.counts().await?;
            let released = OrderState::Released.to_string();
            let mut backlog: HashMap<String, u32> = HashMap::new();
            for (state, wh, n) in &counts.by_state_warehouse {
                if *state == released {
                    *backlog.entry(wh.clone()).or_default() += u32::try_from(*n).unwrap_or(u32::MAX);
                }
            }
            if let Ok(mut b) = self.backlog.write() {
                *b = Arc::new(backlog);
            }
            let failures = carrier_failures_before(store, now).await?;
            if let Ok(mut f) = self.carrier_failures.write() {
                *f = Arc::new(failures);
            }
        }
        let now = self.current().map(|m| m.version.clone());
        Ok(Refresh { changed: now != before, version: now })
    }

    /// The active model, refreshed from the store first (`None` when no model is active).
    pub async fn get(&self, store: &dyn Store, now: DateTime<Utc>) -> Result<Option<Arc<RiskModel>>, StoreError> {
        self.refresh(store, now).await?;
        Ok(self.current())
    }

    /// Released orders waiting at `warehouse` at the last refresh.
    pub fn backlog(&self, warehouse: &str) -> Option<u32> {
        self.backlog.read().ok().and_then(|b| b.get(warehouse).copied())
    }

    /// Failed bookings of `carrier` in the 6 h before the last refresh.
    pub fn carrier_failures(&self, carrier: &str) -> u32 {
        self.carrier_failures.read().ok().and_then(|f| f.get(carrier).copied()).unwrap_or(0)
    }
}

/// The window of the model's `carrier_failures_6h`.
pub const CARRIER_FAILURE_WINDOW: chrono::Duration = chrono::Duration::hours(6);

/// Failed booking attempts per carrier in the 6 h before `at`, from the store (every node's).
pub async fn carrier_failures_before(store: &dyn Store, at: DateTime<Utc>) -> Result<HashMap<String, u32>, StoreError> {
    Ok(store
        .carrier_attempt_totals(at - CARRIER_FAILURE_WINDOW, at)
        .await?
        .into_iter()
        .map(|t| (t.carrier, u32::try_from(t.failures).unwrap_or(u32::MAX)))
        .collect())
}

/// The release facts of a stored order as the decisions see them: the booked carrier, else
/// the one the policy's matrix chooses, else the ERP's preference; the backlog and
/// carrier-failure snapshots of the last refresh. The same facts the write path scores, so `GET /orders/{id}/risk` agrees with
/// the decision.
pub fn live_facts(
    app: &crate::AppState,
    order: &dispatch_core::Order,
    wh: &dispatch_core::Warehouse,
) -> dispatch_intel::ReleaseFacts {
    let policy = app.policy.policy();
    let carrier = order
        .shipment
        .as_ref()
        .map(|s| s.carrier.clone())
        .or_else(|| policy.choose_carrier(&order.facts, wh, &[]).carrier)
        .or_else(|| order.facts.carrier_preference.clone());
    let mut f = dispatch_intel::facts::from_facts(
        &order.facts,
        wh,
        app.clock.now(),
        carrier.as_deref(),
        order.latest_departure,
        Some(app.intel.backlog(&order.facts.warehouse).unwrap_or(0)),
        Some(carrier.as_deref().map_or(0, |c| app.intel.carrier_failures(c))),
    );
    f.order_id = order.id.clone();
    f
}

/// The active model as the policy's [`RiskSource`].
pub struct Scorer {
    model: Arc<RiskModel>,
    backlog: Arc<HashMap<String, u32>>,
    carrier_failures: Arc<HashMap<String, u32>>,
    explained: Explained,
}

impl Scorer {
    fn facts(&self, q: &RiskQuery<'_>) -> dispatch_intel::ReleaseFacts {
        dispatch_intel::facts::from_facts(
            q.facts,
            q.warehouse,
            q.now,
            q.carrier,
            Some(q.latest_departure),
            Some(self.backlog.get(&q.facts.warehouse).copied().unwrap_or(0)),
            Some(q.carrier.and_then(|c| self.carrier_failures.get(c).copied()).unwrap_or(0)),
        )
    }

    pub fn version(&self) -> &str {
        &self.model.version
    }
}

impl RiskSource for Scorer {
    fn score(&self, q: &RiskQuery<'_>) -> Option<RiskScore> {
        let p = self.model.late_departure(&self.facts(q));
        p.is_finite().then(|| RiskScore { late_departure: p, model_version: self.model.version.clone() })
    }

    fn factors(&self, q: &RiskQuery<'_>, top: usize) -> Vec<RiskFactor> {
        let facts = self.facts(q);
        // The same order with the same score and the same values the sentences quote (hours
        // to cut-off to 0.1 h, backlog, weekday and hour) has the same factors.
        let key = (
            format!(
                "{}\u{1f}{}\u{1f}{:.1}\u{1f}{:?}\u{1f}{}\u{1f}{top}",
                q.facts.source,
                q.facts.external_id,
                facts.hours_to_cutoff.unwrap_or(f64::NAN),
                facts.backlog_at_release,
                facts.release_local.format("%a %H"),
            ),
            self.model.late_departure(&facts).to_bits(),
        );
        if let Some(f) = self.explained.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return f;
        }
        let factors: Vec<RiskFactor> = self
            .model
            .score(&facts, top)
            .factors
            .into_iter()
            .map(|f| RiskFactor { feature: f.feature, contribution: f.contribution, text: f.sentence })
            .collect();
        if let Ok(mut c) = self.explained.lock() {
            if c.len() >= EXPLAINED_MAX {
                c.clear();
            }
            c.insert(key, factors.clone());
        }
        factors
    }
}

/// A dispatch record as the history table stores it (keys beside the intel crate's JSON).
pub fn history_row(r: &dispatch_intel::DispatchRecord) -> Result<HistoryRow, serde_json::Error> {
    Ok(HistoryRow {
        order_id: r.facts.order_id.clone(),
        warehouse: r.facts.warehouse.clone(),
        released_at: r.facts.released_at,
        departed_late: r.departed_late,
        record: serde_json::to_string(r)?,
    })
}

/// Claims `record_dispatch` jobs (written with an order's first departure, in the same
/// transaction) and appends each dispatched order to the dispatch history. The history insert
/// replaces by order id, so a retried job writes the same row again.
pub async fn record_dispatches(app: &crate::AppState, worker: &str) -> Result<usize, StoreError> {
    let now = app.clock.now();
    let jobs = app.store.claim_jobs(worker, &[RECORD_DISPATCH], 64, now, chrono::Duration::seconds(60)).await?;
    let mut rows = Vec::with_capacity(jobs.len());
    let mut ids = Vec::with_capacity(jobs.len());
    for job in jobs {
        let Some(order_id) = job.payload["order_id"].as_str() else {
            tracing::error!(job = job.id, "record_dispatch job without order_id: dead letter");
            app.store.finish_job(job.id, worker, JobStatus::Dead, Some("payload without order_id")).await?;
            continue;
        };
        let record = match app.store.order(order_id).await? {
            Some(order) => {
                let events = app.store.events(order_id).await?;
                app.warehouses
                    .get(&order.facts.warehouse)
                    .and_then(|wh| dispatch_intel::facts::dispatch_record(&order, &events, wh))
            }
            None => None,
        };
        let record = match record {
            Some(mut r) => {
                // What the model would have read at the release: the carrier's failed bookings
                // in the 6 h before it (every node's, from the store).
                let failures = carrier_failures_before(app.store.as_ref(), r.facts.released_at).await?;
                r.facts.carrier_failures_6h = Some(failures.get(&r.facts.carrier).copied().unwrap_or(0));
                Some(r)
            }
            None => None,
        };
        match record.and_then(|r| history_row(&r).ok()) {
            Some(row) => {
                rows.push(row);
                ids.push(job.id);
            }
            None => {
                // Never released by dispatchd (e.g. imported already departed): nothing to learn.
                tracing::info!(job = job.id, order = order_id, "no release before the departure; not recorded");
                app.store.finish_job(job.id, worker, JobStatus::Done, None).await?;
            }
        }
    }
    if rows.is_empty() {
        return Ok(0);
    }
    match app.store.insert_history(&rows).await {
        Ok(_) => {
            for id in &ids {
                app.store.finish_job(*id, worker, JobStatus::Done, None).await?;
            }
            metrics::counter!("dispatchd_history_recorded_total").increment(rows.len() as u64);
            Ok(rows.len())
        }
        Err(e) => {
            let at = app.clock.now() + chrono::Duration::seconds(5);
            for id in &ids {
                app.store.retry_job(*id, worker, at, &e.to_string()).await?;
            }
            Err(e)
        }
    }
}

/// Runs [`record_dispatches`] until `stop` turns true, woken by new jobs.
pub fn spawn_history_worker(
    app: Arc<crate::AppState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let worker = format!("history-{}", uuid::Uuid::now_v7().simple());
    tokio::spawn(async move {
        loop {
            if *stop.borrow() {
                return;
            }
            match record_dispatches(&app, &worker).await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "recording dispatch history failed; retrying"),
            }
            tokio::select! {
                _ = app.store.wait_for_jobs(&[RECORD_DISPATCH], std::time::Duration::from_secs(1)) => {}
                _ = stop.changed() => {}
            }
        }
    })
}
