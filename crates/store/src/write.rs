//! The write path shared by every backend: for each queued write, check its idempotency key,
//! load the order, run the (pure, re-runnable) decision, fold the events, and persist events,
//! projection, follow-up jobs and the idempotency answer. Backends supply the I/O through
//! [`WriteTx`]; the order of steps and the in-batch view live here once.

use std::collections::HashMap;

use chrono::{DateTime, SubsecRound, Utc};
use dispatch_core::effects::{FollowUp, follow_ups};
use dispatch_core::{DomainError, Event, Order, apply};

use crate::{OrderWrite, StoreError, Target, WriteOutcome};

/// A write waiting for its batch, with the channel its committed answer goes back on.
pub(crate) struct Pending {
    pub write: OrderWrite,
    /// An inbound event: skipped when already recorded, recorded with the events otherwise.
    pub inbound: Option<crate::InboundKey>,
    /// A job (id, worker) to mark done with the write.
    pub finish: Option<(i64, String)>,
    pub reply: tokio::sync::oneshot::Sender<Result<WriteOutcome, StoreError>>,
}

pub(crate) enum Msg {
    Write(Box<Pending>),
    /// Queued behind every write already sent, so those commit before the writer stops.
    Shutdown,
}

/// The projection upsert both backends' writers send (one row per order, values pushed by
/// each backend in this column order).
pub(crate) const ORDERS_INSERT: &str = "INSERT INTO orders (id, source, external_id, version, state, warehouse, \
     priority, hold_reasons, customer_id, channel, service_level, latest_departure, created_at, updated_at, \
     state_since, doc, route_key, late_departure_risk, released_at, released_on_time, dispatched_at, touched, \
     expedite_requested, expedite_approved) ";
pub(crate) const ORDERS_ON_CONFLICT: &str = " ON CONFLICT (id) DO UPDATE SET version = excluded.version, \
     state = excluded.state, warehouse = excluded.warehouse, priority = excluded.priority, \
     hold_reasons = excluded.hold_reasons, customer_id = excluded.customer_id, channel = excluded.channel, \
     service_level = excluded.service_level, latest_departure = excluded.latest_departure, \
     updated_at = excluded.updated_at, state_since = excluded.state_since, doc = excluded.doc, \
     route_key = excluded.route_key, late_departure_risk = excluded.late_departure_risk, \
     released_at = excluded.released_at, released_on_time = excluded.released_on_time, \
     dispatched_at = excluded.dispatched_at, touched = excluded.touched, \
     expedite_requested = excluded.expedite_requested, expedite_approved = excluded.expedite_approved";

/// The projection's console columns (migration 0100), bound after `route_key` in this order:
/// the model's risk for the board's filter, and what the order contributes to the KPIs.
pub(crate) struct ConsoleColumns {
    pub risk: Option<f64>,
    pub released_at: Option<i64>,
    pub released_on_time: bool,
    pub dispatched_at: Option<i64>,
    pub touched: bool,
    pub expedite_requested: f64,
    pub expedite_approved: f64,
}

pub(crate) fn console_columns(o: &Order) -> ConsoleColumns {
    let k = dispatch_core::kpi::OrderKpi::of(o);
    ConsoleColumns {
        risk: o.late_departure_risk,
        released_at: k.released_at.map(crate::time::to_micros),
        released_on_time: k.released_on_time,
        dispatched_at: k.dispatched_at.map(crate::time::to_micros),
        touched: k.touched,
        expedite_requested: k.expedite_requested,
        expedite_approved: k.expedite_approved,
    }
}

pub(crate) fn order_from_doc(doc: &str) -> Result<Order, StoreError> {
    Ok(serde_json::from_str(doc)?)
}

/// What one write persists, decided before any row is written.
pub struct Plan<'a> {
    pub events: &'a [Event],
    /// The projection after the events; `None` when nothing changed.
    pub order: Option<&'a Order>,
    pub jobs: &'a [FollowUp],
    pub at: DateTime<Utc>,
    /// The roles the write was made with, for the audit entries of its events.
    pub roles: &'a [String],
}

/// The I/O a backend provides inside its write transaction.
pub trait WriteTx {
    /// The stored `(request_hash, response)` for an idempotency key.
    async fn idempotency(&mut self, scope: &str, key: &str) -> Result<Option<(String, String)>, StoreError>;
    /// The current order, locked for this transaction where the backend has row locks.
    async fn load(&mut self, target: &Target) -> Result<Option<Order>, StoreError>;
    async fn persist(&mut self, plan: Plan<'_>) -> Result<(), StoreError>;
    async fn remember(
        &mut self,
        scope: &str,
        key: &str,
        hash: &str,
        response: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}

/// Orders and idempotency answers touched earlier in the same batch: later writes of the
/// batch must see them although they are not committed yet.
#[derive(Default)]
pub struct BatchView {
    /// Which optional follow-ups to enqueue (set by the writer from its options).
    pub(crate) follow_ups: dispatch_core::effects::FollowUpConfig,
    orders: HashMap<String, Order>,
    keys: HashMap<(String, String), String>,
    idempotency: HashMap<(String, String), (String, String)>,
}

impl BatchView {
    pub fn with_follow_ups(follow_ups: dispatch_core::effects::FollowUpConfig) -> Self {
        BatchView { follow_ups, ..BatchView::default() }
    }

    /// The order as an earlier write of this batch left it, if one did.
    pub fn order(&self, target: &Target) -> Option<Order> {
        let id = match target {
            Target::Id(id) => id,
            Target::NaturalKey { source, external_id } => self.keys.get(&(source.clone(), external_id.clone()))?,
        };
        self.orders.get(id).cloned()
    }
}

fn new_order_id() -> String {
    format!("ord_{}", uuid::Uuid::now_v7().simple())
}

pub async fn write_one<T: WriteTx>(
    tx: &mut T,
    w: &OrderWrite,
    view: &mut BatchView,
) -> Result<WriteOutcome, StoreError> {
    if let Some(k) = &w.idempotency {
        let id = (k.scope.clone(), k.key.clone());
        let stored = match view.idempotency.get(&id) {
            Some(v) => Some(v.clone()),
            None => tx.idempotency(&k.scope, &k.key).await?,
        };
        if let Some((hash, response)) = stored {
            if hash != k.request_hash {
                return Err(StoreError::IdempotencyMismatch);
            }
            let mut outcome: WriteOutcome = serde_json::from_str(&response)?;
            outcome.replayed = true;
            return Ok(outcome);
        }
    }

    let cached = match &w.target {
        Target::Id(id) => view.orders.get(id).cloned(),
        Target::NaturalKey { source, external_id } => {
            view.keys.get(&(source.clone(), external_id.clone())).and_then(|id| view.orders.get(id)).cloned()
        }
    };
    let current = match cached {
        Some(o) => Some(o),
        None => tx.load(&w.target).await?,
    };
    let decided = (w.decide)(current.as_ref())?;
    let at = w.meta.at.trunc_subsecs(6);
    let order_id = match (&current, &w.target) {
        (Some(o), _) => o.id.clone(),
        (None, Target::NaturalKey { .. }) => new_order_id(),
        (None, Target::Id(_)) => return Err(DomainError::NotFound.into()),
    };

    // Fold everything in memory first: a refused stream must not leave half its rows behind.
    let mut state = current.clone();
    let mut events = Vec::with_capacity(decided.len());
    for mut data in decided {
        dispatch_core::approval::bind_ids(&mut data, &order_id, state.as_ref());
        let version = state.as_ref().map_or(1, |o| o.version + 1);
        let ev = Event {
            order_id: order_id.clone(),
            version,
            at,
            actor: w.meta.actor.clone(),
            request_id: w.meta.request_id.clone(),
            data,
        };
        state = Some(apply(state, &ev)?);
        events.push(ev);
    }
    let order = state.ok_or(DomainError::NotFound)?;
    let jobs = if events.is_empty() { vec![] } else { follow_ups(current.as_ref(), &order, &events, view.follow_ups) };
    tx.persist(Plan {
        events: &events,
        order: (!events.is_empty()).then_some(&order),
        jobs: &jobs,
        at,
        roles: &w.meta.roles,
    })
    .await?;

    let outcome = WriteOutcome {
        created: current.is_none() && !events.is_empty(),
        appended: events.len(),
        replayed: false,
        order,
    };
    if let Some(k) = &w.idempotency {
        let response = serde_json::to_string(&outcome)?;
        tx.remember(&k.scope, &k.key, &k.request_hash, &response, at).await?;
        view.idempotency.insert((k.scope.clone(), k.key.clone()), (k.request_hash.clone(), response));
    }
    view.keys.insert((outcome.order.facts.source.clone(), outcome.order.facts.external_id.clone()), order_id.clone());
    view.orders.insert(order_id, outcome.order.clone());
    Ok(outcome)
}
