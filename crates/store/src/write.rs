//! The write path shared by every backend: for each queued write, check its idempotency key,
//! load the order, run the (pure, re-runnable) decision, fold the events, and persist events,
//! projection, follow-up jobs and the idempotency answer. Backends supply the I/O through
//! [`WriteTx`]; the order of steps and the in-batch view live here once.

use std::collections::HashMap;

use chrono::{DateTime, SubsecRound, Utc};
use dispatch_core::effects::{FollowUp, follow_ups};
use dispatch_core::{DomainError, Event, Order, apply};

use tokio::sync::mpsc;

use crate::{InboundKey, OrderWrite, StoreError, Target, WriteOutcome};

/// What a committed batch answers: each write's outcome, and the kinds of the follow-up jobs
/// it enqueued (to wake their workers).
pub(crate) type Answers = (Vec<Result<WriteOutcome, StoreError>>, Vec<&'static str>);

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
    /// A statement of the store's own (a job claim, an attempt row) for the SQLite writer to
    /// run in its next transaction, so that nothing outside the writer waits on the write lock.
    Task(Task),
    /// Queued behind every write already sent, so those commit before the writer stops.
    Shutdown,
}

/// A [`Msg::Task`]: run inside the writer's transaction, it returns how to answer its caller
/// once that transaction has committed (`None`) or failed (`Some(error)`).
pub(crate) type Task = Box<dyn FnOnce(&rusqlite::Connection) -> Answer + Send>;
pub(crate) type Answer = Box<dyn FnOnce(Option<&str>) + Send>;

/// Whose write it is: a caller waiting for its answer, or a sweep of the system's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// An API request, a webhook, a worker's effect: someone waits for the commit.
    Request,
    /// A re-evaluation sweep (priority refresh, policy or model change): it goes after the
    /// requests, a bounded share per batch, so a sweep of thousands of orders never holds up
    /// the requests queued behind it.
    Background,
}

/// Most background writes in one batch. A request that arrives meanwhile waits for at most
/// this many of them (a few milliseconds), and a sweep still moves tens of thousands a second.
const BACKGROUND_PER_BATCH: usize = 32;

/// The sending side of the writer's two queues.
#[derive(Clone)]
pub(crate) struct WriteQueue {
    requests: mpsc::Sender<Msg>,
    background: mpsc::Sender<Msg>,
}

/// The writer's side of them.
pub(crate) struct Queues {
    requests: mpsc::Receiver<Msg>,
    background: mpsc::Receiver<Msg>,
}

/// The two queues of one writer.
pub(crate) fn queues() -> (WriteQueue, Queues) {
    let (requests, rx) = mpsc::channel(8192);
    // Sweeps keep at most a few dozen writes in flight each; this bounds them all the same.
    let (background, bg_rx) = mpsc::channel(1024);
    (WriteQueue { requests, background }, Queues { requests: rx, background: bg_rx })
}

impl WriteQueue {
    /// Queues a write and waits for its committed answer.
    pub(crate) async fn submit(
        &self,
        urgency: Urgency,
        write: OrderWrite,
        inbound: Option<crate::InboundKey>,
        finish: Option<(i64, String)>,
    ) -> Result<WriteOutcome, StoreError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let queue = match urgency {
            Urgency::Request => &self.requests,
            Urgency::Background => &self.background,
        };
        queue
            .send(Msg::Write(Box::new(Pending { write, inbound, finish, reply })))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues a task for the writer's next transaction (see [`Msg::Task`]).
    pub(crate) async fn task(&self, task: Task) -> Result<(), StoreError> {
        self.requests.send(Msg::Task(task)).await.map_err(|_| StoreError::Closed)
    }

    /// Asks the writer to stop once everything queued before has committed.
    pub(crate) async fn shutdown(&self) {
        let _ = self.requests.send(Msg::Shutdown).await;
    }
}

impl Queues {
    /// Nothing is waiting in either queue.
    pub(crate) fn is_empty(&self) -> bool {
        self.requests.is_empty() && self.background.is_empty()
    }

    /// Waits for work and fills `batch` (and `tasks`): requests first, up to `max`, then
    /// background writes up to their share. Returns `true` when the writer is to stop after
    /// this batch.
    pub(crate) async fn next_batch(&mut self, max: usize, batch: &mut Vec<Pending>, tasks: &mut Vec<Task>) -> bool {
        let (first, mut taken) = tokio::select! {
            biased;
            m = self.requests.recv() => (m, 0),
            m = self.background.recv() => (m, 1),
        };
        let mut shutdown = match first {
            Some(Msg::Write(p)) => {
                batch.push(*p);
                false
            }
            Some(Msg::Task(t)) => {
                tasks.push(t);
                false
            }
            Some(Msg::Shutdown) | None => true,
        };
        while !shutdown && batch.len() + tasks.len() < max {
            match self.requests.try_recv() {
                Ok(Msg::Write(p)) => batch.push(*p),
                Ok(Msg::Task(t)) => tasks.push(t),
                Ok(Msg::Shutdown) => shutdown = true,
                Err(_) => break,
            }
        }
        // At shutdown every queued sweep write goes too: its caller is waiting for an answer.
        let room =
            if shutdown { usize::MAX } else { BACKGROUND_PER_BATCH.min(max.saturating_sub(batch.len()) + taken) };
        while taken < room {
            match self.background.try_recv() {
                Ok(Msg::Write(p)) => batch.push(*p),
                Ok(Msg::Task(t)) => tasks.push(t),
                Ok(Msg::Shutdown) => shutdown = true,
                Err(_) => break,
            }
            taken += 1;
        }
        shutdown
    }
}

/// The projection upsert both backends' writers send (one row per order, values pushed by
/// each backend in this column order).
pub(crate) const ORDERS_INSERT: &str = "INSERT INTO orders (id, source, external_id, version, state, warehouse, \
     priority, hold_reasons, customer_id, channel, service_level, latest_departure, created_at, updated_at, \
     state_since, doc, route_key, late_departure_risk, released_at, released_on_time, dispatched_at, touched, \
     expedite_requested, expedite_approved, tracking_number) ";
pub(crate) const ORDERS_ON_CONFLICT: &str = " ON CONFLICT (id) DO UPDATE SET version = excluded.version, \
     state = excluded.state, warehouse = excluded.warehouse, priority = excluded.priority, \
     hold_reasons = excluded.hold_reasons, customer_id = excluded.customer_id, channel = excluded.channel, \
     service_level = excluded.service_level, latest_departure = excluded.latest_departure, \
     updated_at = excluded.updated_at, state_since = excluded.state_since, doc = excluded.doc, \
     route_key = excluded.route_key, late_departure_risk = excluded.late_departure_risk, \
     released_at = excluded.released_at, released_on_time = excluded.released_on_time, \
     dispatched_at = excluded.dispatched_at, touched = excluded.touched, \
     expedite_requested = excluded.expedite_requested, expedite_approved = excluded.expedite_approved, \
     tracking_number = excluded.tracking_number";

/// The projection's console columns (migration 0100), bound after `route_key` in this order:
/// the model's risk for the board's filter, and what the order contributes to the KPIs.
#[derive(PartialEq)]
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

/// The columns of `orders` that some index reads, as bound (the SQLite writer binds its upsert
/// from them). No index reads the others
/// (`version`, `channel`, `service_level`, `updated_at`, `doc`; a test checks both lists
/// against the SQLite schema). When a write leaves all of these as they were, SQLite's writer
/// rewrites only the others and so touches none of the table's dozen indexes. (PostgreSQL
/// compares values and updates such rows in place anyway; a narrow statement there measured
/// no faster.)
#[derive(PartialEq)]
pub(crate) struct Indexed<'o> {
    pub source: &'o str,
    pub external_id: &'o str,
    pub state: &'static str,
    pub warehouse: &'o str,
    pub priority: i32,
    pub hold_reasons: &'o [dispatch_core::HoldReason],
    pub customer_id: &'o str,
    pub latest_departure: Option<i64>,
    pub created_at: i64,
    pub state_since: i64,
    pub route_key: Option<String>,
    pub console: ConsoleColumns,
    pub tracking_number: Option<&'o str>,
}

impl<'o> Indexed<'o> {
    pub(crate) fn of(o: &'o Order) -> Self {
        Indexed {
            source: &o.facts.source,
            external_id: &o.facts.external_id,
            state: o.state.code(),
            warehouse: &o.facts.warehouse,
            priority: o.priority,
            hold_reasons: &o.hold_reasons,
            customer_id: &o.facts.customer.id,
            latest_departure: o.latest_departure.map(crate::time::to_micros),
            created_at: crate::time::to_micros(o.created_at),
            state_since: crate::time::to_micros(o.state_since),
            route_key: dispatch_core::route::member_key(o),
            console: console_columns(o),
            tracking_number: o.shipment.as_ref().map(|s| s.tracking_number.as_str()),
        }
    }
}

/// A batch that holds the writer this long is logged: every write queued behind it waited.
const SLOW_BATCH: std::time::Duration = std::time::Duration::from_millis(100);

/// Records one committed (or failed) write batch: its size and how long it held the writer.
pub(crate) fn observe_batch(backend: &'static str, size: usize, took: std::time::Duration) {
    metrics::histogram!("dispatchd_store_write_batch_seconds", "backend" => backend).record(took.as_secs_f64());
    metrics::histogram!("dispatchd_store_write_batch_size", "backend" => backend).record(size as f64);
    if took >= SLOW_BATCH {
        tracing::warn!(backend, writes = size, millis = took.as_millis() as u64, "a write batch held the writer long");
    }
}

/// Records the writer's own WAL checkpoint between batches (SQLite).
pub(crate) fn observe_checkpoint(took: std::time::Duration) {
    metrics::histogram!("dispatchd_store_checkpoint_seconds").record(took.as_secs_f64());
    if took >= SLOW_BATCH {
        tracing::warn!(millis = took.as_millis() as u64, "the writer's WAL checkpoint held the writer long");
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
    /// The projection before them, as stored (or as an earlier write of the batch left it);
    /// `None` for a new order.
    pub before: Option<&'a Order>,
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
    /// Whether an event from another system was recorded before this transaction.
    async fn recorded(&mut self, key: &InboundKey) -> Result<bool, StoreError>;
    /// Records an event from another system as applied to `order_id`.
    async fn record(&mut self, key: &InboundKey, order_id: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
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

    /// The orders the batch left, by id, and their natural keys.
    pub(crate) fn into_orders(self) -> (HashMap<String, Order>, HashMap<(String, String), String>) {
        (self.orders, self.keys)
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

/// An event from another system: applied and remembered together, or (when seen before, in
/// the database or earlier in this batch) answered with the order as it is, changing nothing.
/// A refused decision returns before anything is written, the key included.
pub async fn write_inbound<T: WriteTx>(
    tx: &mut T,
    key: &InboundKey,
    w: &OrderWrite,
    view: &mut BatchView,
    seen: &mut std::collections::HashSet<(String, String)>,
) -> Result<WriteOutcome, StoreError> {
    let id = (key.source.clone(), key.event_id.clone());
    if seen.contains(&id) || tx.recorded(key).await? {
        let order = match view.order(&w.target) {
            Some(o) => o,
            None => tx.load(&w.target).await?.ok_or(DomainError::NotFound)?,
        };
        return Ok(WriteOutcome { order, created: false, appended: 0, replayed: true });
    }
    let outcome = write_one(tx, w, view).await?;
    tx.record(key, &outcome.order.id, w.meta.at).await?;
    seen.insert(id);
    Ok(outcome)
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
        before: current.as_ref(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WriteMeta;

    fn pending(external_id: &str) -> (Pending, tokio::sync::oneshot::Receiver<Result<WriteOutcome, StoreError>>) {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let write = OrderWrite {
            target: Target::NaturalKey { source: "test".into(), external_id: external_id.into() },
            meta: WriteMeta { actor: "test".into(), roles: vec![], request_id: None, at: Utc::now() },
            idempotency: None,
            decide: Box::new(|_| Ok(vec![])),
        };
        (Pending { write, inbound: None, finish: None, reply }, rx)
    }

    fn name(p: &Pending) -> String {
        match &p.write.target {
            Target::NaturalKey { external_id, .. } => external_id.clone(),
            Target::Id(id) => id.clone(),
        }
    }

    async fn send(queue: &mpsc::Sender<Msg>, external_id: &str) {
        let (p, rx) = pending(external_id);
        std::mem::forget(rx);
        queue.send(Msg::Write(Box::new(p))).await.unwrap();
    }

    /// A sweep queued first does not go first: the batch takes every waiting request, then
    /// a bounded share of the sweep; the rest of the sweep follows in later batches.
    #[tokio::test]
    async fn requests_go_before_a_queued_sweep_and_the_sweep_still_moves() {
        let (q, mut queues) = queues();
        for i in 0..100 {
            send(&q.background, &format!("sweep-{i}")).await;
        }
        for i in 0..5 {
            send(&q.requests, &format!("request-{i}")).await;
        }
        let mut batch = Vec::new();
        assert!(!queues.next_batch(256, &mut batch, &mut Vec::new()).await);
        let names: Vec<String> = batch.iter().map(name).collect();
        assert_eq!(names.len(), 5 + BACKGROUND_PER_BATCH);
        assert!(names[..5].iter().all(|n| n.starts_with("request-")), "{names:?}");
        assert_eq!(names[5], "sweep-0", "the sweep keeps its own order");
        let mut left = 100 - BACKGROUND_PER_BATCH;
        while left > 0 {
            batch.clear();
            assert!(!queues.next_batch(256, &mut batch, &mut Vec::new()).await);
            assert!(batch.len() <= BACKGROUND_PER_BATCH);
            left -= batch.len();
        }
        assert!(queues.is_empty());
    }

    /// `max` bounds the requests of a batch; background writes never push it past `max`.
    #[tokio::test]
    async fn a_batch_never_exceeds_its_size() {
        let (q, mut queues) = queues();
        for i in 0..10 {
            send(&q.requests, &format!("request-{i}")).await;
            send(&q.background, &format!("sweep-{i}")).await;
        }
        let mut batch = Vec::new();
        queues.next_batch(4, &mut batch, &mut Vec::new()).await;
        assert_eq!(batch.iter().map(name).collect::<Vec<_>>(), ["request-0", "request-1", "request-2", "request-3"]);
    }

    /// At shutdown the writer takes every queued sweep write along: their callers get an answer.
    #[tokio::test]
    async fn shutdown_takes_the_queued_sweep_along() {
        let (q, mut queues) = queues();
        for i in 0..50 {
            send(&q.background, &format!("sweep-{i}")).await;
        }
        send(&q.requests, "request-0").await;
        q.shutdown().await;
        let mut batch = Vec::new();
        assert!(queues.next_batch(256, &mut batch, &mut Vec::new()).await);
        assert_eq!(batch.len(), 51);
        assert!(queues.is_empty());
    }
}
