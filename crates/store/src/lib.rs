//! Storage of dispatchd behind one narrow interface ([`Store`]): the append-only event log
//! with per-order versions, the query projection kept in the same transaction, the outbox
//! of follow-up jobs, idempotency records and API tokens.
//!
//! Writes of orders go through [`Store::execute`]: the store loads the order *inside* its
//! write transaction, hands it to the caller's pure decision function, appends the events,
//! updates the projection and enqueues follow-ups, and answers only after commit. Concurrent
//! writes are grouped into one transaction (group commit), which is what makes durable writes
//! fast on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dispatch_core::{DomainError, Event, EventData, HoldReason, Order, OrderState};
use serde::{Deserialize, Serialize};

pub mod kpi_rows;
pub mod ops_sql;
mod outbound_rows;
pub mod postgres;
mod schedule_rows;
pub mod security;
mod signals;
pub mod sqlite;
pub mod testing;
mod time;
mod tracking;
mod write;
pub use write::Urgency;

pub use outbound_rows::{EndpointSecret, NewJob, NotificationRecord, WebhookEndpointRow};
pub use postgres::{PgOptions, PgStore};
pub use security::{AuditQuery, SealedSecret, SecurityStore, SessionRecord, UserRecord};
pub use sqlite::{SqliteOptions, SqliteStore};
pub use time::{from_micros, to_micros};

/// When order changes are written as `publish_event` jobs (for webhooks and notifications).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PublishEvents {
    /// Every change (notification rules listen to all of them).
    #[default]
    Always,
    /// Only while an active webhook endpoint exists. Checked inside each write transaction,
    /// so an endpoint created on another node counts from its commit on, and a deployment
    /// nobody subscribes to does not fill the outbox with jobs that fan out to nothing.
    WhileSubscribed,
    Never,
}

/// SQL (both backends) answering "is any webhook endpoint active?".
pub(crate) const ENDPOINT_ACTIVE_SQL: &str = "SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE status = 'active')";

/// The decision function of a write: the current order (if any) in, events out. It runs
/// inside the write transaction, so what it sees is what it changes. It is pure, so a backend
/// may run it again when a transaction must be retried (a deadlock between nodes).
pub type Decide = Box<dyn Fn(Option<&Order>) -> Result<Vec<EventData>, DomainError> + Send + Sync>;

/// The usual decision: `dispatch_core::decide` with this command, the clock reading taken when
/// the request arrived, the configured warehouses and the rules (policy) in force.
pub fn decision(
    cmd: dispatch_core::Command,
    now: DateTime<Utc>,
    warehouses: std::sync::Arc<dispatch_core::Warehouses>,
    rules: std::sync::Arc<dyn dispatch_core::Evaluator>,
) -> Decide {
    Box::new(move |current| {
        let ctx = dispatch_core::Ctx { now, warehouses: &warehouses, rules: rules.as_ref() };
        dispatch_core::decide(current, cmd.clone(), &ctx)
    })
}

/// Which order a write is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Id(String),
    /// (`source`, `external_id`): creates the order when it does not exist yet.
    NaturalKey {
        source: String,
        external_id: String,
    },
}

/// Who and when, recorded on every event.
#[derive(Debug, Clone)]
pub struct WriteMeta {
    pub actor: String,
    /// The roles the actor acted with (recorded in the audit log; empty for the system).
    pub roles: Vec<String>,
    pub request_id: Option<String>,
    pub at: DateTime<Utc>,
}

/// An `Idempotency-Key` in its scope (the caller's identity), with a hash of the request.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub scope: String,
    pub key: String,
    pub request_hash: String,
}

pub struct OrderWrite {
    pub target: Target,
    pub meta: WriteMeta,
    pub idempotency: Option<IdempotencyKey>,
    pub decide: Decide,
}

/// The result of a committed write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteOutcome {
    pub order: Order,
    /// The write created the order.
    pub created: bool,
    /// Events appended by this write (0 when nothing changed).
    pub appended: usize,
    /// The answer is the one stored for an earlier request with the same idempotency key.
    #[serde(default)]
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("this Idempotency-Key was already used for a different request")]
    IdempotencyMismatch,
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("the store is shutting down")]
    Closed,
    /// A unique name is taken (a user name).
    #[error("{0}")]
    Conflict(String),
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// Filters of `GET /api/v1/orders`.
#[derive(Debug, Clone, Default)]
pub struct OrderQuery {
    pub states: Vec<OrderState>,
    pub warehouse: Option<String>,
    pub hold_reason: Option<HoldReason>,
    pub customer_id: Option<String>,
    /// Only orders with an id greater than this (keyset pagination, `sort = Id`).
    pub after_id: Option<String>,
    /// Only orders after this queue position (keyset pagination, `sort = Priority`).
    pub after_position: Option<QueuePosition>,
    /// Only orders whose latest departure is in `[from, to)` (the priority refresh sweep).
    pub departure_from: Option<DateTime<Utc>>,
    pub departure_to: Option<DateTime<Utc>>,
    /// Console board filters: service level, sales channel, carrier (booked, else preferred).
    pub service_level: Option<String>,
    pub channel: Option<String>,
    pub carrier: Option<String>,
    /// Exact order id, order number (`external_id`) or customer id.
    pub search: Option<String>,
    /// Console board: orders whose late-departure risk (the model's, at their last
    /// evaluation) is in this band; unscored orders are in none.
    pub risk: Option<dispatch_core::risk::RiskBand>,
    pub sort: OrderSort,
    pub limit: u32,
}

/// Order of `list_orders`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OrderSort {
    /// By id, i.e. creation order.
    #[default]
    Id,
    /// The dispatch sequence: priority descending, latest departure ascending, id ascending.
    Priority,
}

/// Where an order stands in the dispatch sequence: the keyset cursor of `sort = Priority`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePosition {
    pub priority: i32,
    /// Latest departure in microseconds; orders without one sort last.
    pub latest_departure_us: i64,
    pub id: String,
}

impl QueuePosition {
    pub fn of(o: &Order) -> QueuePosition {
        QueuePosition {
            priority: o.priority,
            latest_departure_us: o.latest_departure.map_or(i64::MAX, to_micros),
            id: o.id.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Id of the last item when more may follow.
    pub next_after: Option<String>,
}

/// An event as stored: its position in the log, order, type and JSON data.
#[derive(Debug, Clone)]
pub struct RawEvent {
    pub seq: i64,
    pub order_id: String,
    pub kind: String,
    pub data: String,
}

/// An order that is a member of a wave (see `dispatch_core::route`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RouteMember {
    pub route_key: String,
    pub source: String,
    pub external_id: String,
}

/// Counts for `/metrics`, computed from the projection at scrape time.
#[derive(Debug, Clone, Default)]
pub struct OrderCounts {
    pub by_state_warehouse: Vec<(String, String, i64)>,
    pub holds_by_reason: Vec<(String, i64)>,
}

/// One cell of the console's dispatch board: orders of a warehouse in a state.
#[derive(Debug, Clone, PartialEq)]
pub struct BoardCell {
    pub warehouse: String,
    pub state: String,
    pub count: i64,
    /// When the longest-waiting order entered this state.
    pub oldest_since: Option<DateTime<Utc>>,
    /// Orders in this state since before the board's aging threshold.
    pub aged: i64,
}

/// An API token as stored: never the secret itself, only its hash.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub secret_hash: String,
    pub roles: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// The user the token acts for; `None` for a service token.
    pub user_id: Option<String>,
}

/// A follow-up job claimed from the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub order_id: Option<String>,
    pub dedupe_key: String,
    pub payload: serde_json::Value,
    pub attempts: i64,
    pub lease_until: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Pending,
    Running,
    Done,
    Dead,
}

impl JobStatus {
    pub fn code(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Dead => "dead",
        }
    }
}

/// A durable schedule as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRow {
    pub name: String,
    pub cadence: String,
    pub action: String,
    pub enabled: bool,
    pub next_run_at: DateTime<Utc>,
    pub running_since: Option<DateTime<Utc>>,
    pub running_node: Option<String>,
    pub consecutive_failures: u32,
    pub last_outcome: Option<String>,
    pub last_error: Option<String>,
}

/// One recorded run of a schedule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleRun {
    pub id: i64,
    pub schedule: String,
    pub scheduled_for: DateTime<Utc>,
    pub node: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `running`, `ok` or `failed`.
    pub outcome: String,
    pub summary: Option<String>,
    pub error: Option<String>,
}

/// How a run ended, and when the schedule runs next.
#[derive(Debug, Clone)]
pub struct RunEnd {
    pub ok: bool,
    pub summary: Option<String>,
    pub error: Option<String>,
    pub next_run_at: DateTime<Utc>,
    pub consecutive_failures: u32,
}

/// Proof of leadership; dropping it hands leadership over.
pub trait LeaderLease: Send + Sync {
    fn name(&self) -> &str;
}

/// An inbound event's identity at its sender: writing it a second time is a no-op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundKey {
    /// Who sent it, e.g. `carrier:dhl`.
    pub source: String,
    /// The sender's id of the event.
    pub event_id: String,
    /// What kind of event it was (kept for review, e.g. the normalized tracking status).
    pub kind: String,
}

/// A job that failed for good: non-retryable error or attempts exhausted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub id: i64,
    pub kind: String,
    pub order_id: Option<String>,
    pub dedupe_key: String,
    pub payload: serde_json::Value,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub failed_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// One storage interface, implemented for SQLite (embedded) and PostgreSQL (several nodes).
/// One completed dispatch for the intelligence history; `record` is the intel crate's JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    pub order_id: String,
    pub warehouse: String,
    pub released_at: DateTime<Utc>,
    pub departed_late: bool,
    pub record: String,
}

/// One call to a carrier's booking API, as the booking worker saw it (migration 0110): the
/// anomaly series, the risk model's `carrier_failures_6h` and the console's carrier health
/// read these rows, so every node sees every node's bookings.
#[derive(Debug, Clone, PartialEq)]
pub struct CarrierAttempt {
    pub at: DateTime<Utc>,
    pub carrier: String,
    pub warehouse: String,
    pub order_id: Option<String>,
    /// `booked`, or the failure's class (`timeout`, `server_error`, `rejected`, ...).
    pub outcome: String,
}

impl CarrierAttempt {
    /// The outcome that is not a failure.
    pub const BOOKED: &'static str = "booked";
}

/// Attempts and failed attempts of one carrier in a time range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierAttemptTotal {
    pub carrier: String,
    pub attempts: i64,
    pub failures: i64,
}

/// What an [`OpsCount`] counts (the live-operations anomaly series).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpsCounter {
    /// Orders newly put on hold (an evaluation holds an order whose previous evaluation did
    /// not), and exceptions raised; `reason` is empty.
    HoldsEntered,
    /// Those holds (not exceptions) still unresolved `hold_age` after they began, counted in
    /// the hour they reached that age.
    HoldsAged,
    /// Failed carrier booking attempts; `carrier` is set.
    BookingFailures,
}

/// One count of live operations per UTC hour, warehouse and (for bookings) carrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsCount {
    pub counter: OpsCounter,
    /// Start of the UTC hour.
    pub hour: DateTime<Utc>,
    pub warehouse: String,
    pub carrier: Option<String>,
    pub count: i64,
}

/// A stored risk model: `status` is `candidate`, `active` or `retired`; `summary` is JSON
/// (metrics, features, training window, data hash).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRow {
    pub version: String,
    pub created_at: DateTime<Utc>,
    pub status: String,
    pub activated_at: Option<DateTime<Utc>>,
    pub summary: String,
}

#[async_trait]
pub trait Store: security::SecurityStore + Send + Sync + 'static {
    /// Decides and appends in one transaction; answers after commit.
    async fn execute(&self, write: OrderWrite) -> Result<WriteOutcome, StoreError>;
    /// Like [`Store::execute`], for a sweep's re-evaluation: queued behind the requests, a
    /// bounded share per batch (see [`Urgency`]).
    async fn execute_background(&self, write: OrderWrite) -> Result<WriteOutcome, StoreError> {
        self.execute(write).await
    }
    async fn order(&self, id: &str) -> Result<Option<Order>, StoreError>;
    async fn order_by_key(&self, source: &str, external_id: &str) -> Result<Option<Order>, StoreError>;
    async fn list_orders(&self, q: &OrderQuery) -> Result<Page<Order>, StoreError>;
    /// The order's whole stream, oldest first.
    async fn events(&self, order_id: &str) -> Result<Vec<Event>, StoreError>;
    /// The events a decision is made on (`order.received`, `order.updated`, `order.evaluated`)
    /// of all orders in recording order, after position `after_seq` (0 for the start), as
    /// stored: the reader parses only what it needs. For what-if replay.
    async fn scan_decision_events(&self, after_seq: i64, limit: u32) -> Result<Vec<RawEvent>, StoreError>;
    /// The same events, all of them after `after_seq`, sent to `sink` in pages of `page` in
    /// recording order, as one consistent read; stops early when the receiver is dropped. For
    /// reading a whole log fast (what-if replay). By default it pages with
    /// [`Store::scan_decision_events`]; SQLite reads in one statement on its own thread.
    async fn stream_decision_events(
        &self,
        after_seq: i64,
        page: u32,
        sink: tokio::sync::mpsc::Sender<Vec<RawEvent>>,
    ) -> Result<(), StoreError> {
        let mut after = after_seq;
        loop {
            let events = self.scan_decision_events(after, page).await?;
            let Some(last) = events.last() else { return Ok(()) };
            after = last.seq;
            if sink.send(events).await.is_err() {
                return Ok(());
            }
        }
    }
    async fn order_count(&self) -> Result<i64, StoreError>;
    async fn counts(&self) -> Result<OrderCounts, StoreError>;
    /// Members of every wave that departs at or after `departing_from`: orders released or
    /// booked, with their route key (postcode area and wave), read from the indexed
    /// `orders.route_key`. Route density is counted from these.
    async fn route_members(&self, departing_from: DateTime<Utc>) -> Result<Vec<RouteMember>, StoreError>;
    /// Counts per warehouse and state with their aging (`aged`: in the state since before
    /// `aged_before`), from the projection's `orders_board` index.
    async fn board(&self, aged_before: DateTime<Utc>) -> Result<Vec<BoardCell>, StoreError>;
    /// The KPIs of every order received at or after `from` (per warehouse and UTC day), from
    /// the projection's KPI columns (migration 0100), not from events.
    async fn kpis_since(&self, from: DateTime<Utc>) -> Result<dispatch_core::kpi::Kpis, StoreError>;

    async fn insert_token(&self, t: &TokenRecord) -> Result<(), StoreError>;
    async fn token_by_prefix(&self, prefix: &str) -> Result<Option<TokenRecord>, StoreError>;
    async fn touch_token(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Claims up to `limit` due jobs of these kinds (or expired leases) for `worker`.
    async fn claim_jobs(
        &self,
        worker: &str,
        kinds: &[&str],
        limit: u32,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Vec<Job>, StoreError>;
    /// Finishes a job; `false` when the lease was lost to another worker.
    async fn finish_job(
        &self,
        id: i64,
        worker: &str,
        status: JobStatus,
        error: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// Puts a job back for a later attempt; `false` when the lease was lost.
    async fn retry_job(&self, id: i64, worker: &str, run_at: DateTime<Utc>, error: &str) -> Result<bool, StoreError>;
    async fn job_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError>;

    /// Waits until new jobs of one of `kinds` may be due (enqueued by any node) or the timeout
    /// passes. Workers poll with this instead of sleeping, so a release is booked without
    /// delay; a worker is woken only for its own kinds.
    async fn wait_for_jobs(&self, kinds: &[&str], timeout: std::time::Duration);
    /// Tries to become the leader for `name` (one scheduler among several nodes). The lease is
    /// held until the returned guard is dropped or this node dies.
    async fn try_lead(&self, name: &str) -> Result<Option<Box<dyn LeaderLease>>, StoreError>;

    /// Creates the schedule if it is new; updates its cadence and action if they changed (and
    /// then its next run to `first_run_at`).
    async fn ensure_schedule(
        &self,
        name: &str,
        cadence: &str,
        action: &str,
        first_run_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    async fn schedules(&self) -> Result<Vec<ScheduleRow>, StoreError>;
    /// Claims the run of `name` due at `scheduled_for` for `node`: succeeds only while the
    /// schedule still waits for exactly that tick and no live run holds it (a run started
    /// before `stale_before` is presumed dead and taken over). Returns the run id.
    async fn begin_run(
        &self,
        name: &str,
        scheduled_for: DateTime<Utc>,
        node: &str,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError>;
    async fn end_run(&self, run_id: i64, name: &str, end: &RunEnd, now: DateTime<Utc>) -> Result<(), StoreError>;
    /// The latest runs of a schedule, newest first.
    async fn schedule_runs(&self, name: &str, limit: u32) -> Result<Vec<ScheduleRun>, StoreError>;
    /// Like [`Store::execute`], for an event from another system: when `key` was already
    /// recorded the write is skipped and the current order returned with `replayed = true`.
    /// The key is stored in the same transaction as the events.
    async fn execute_inbound(&self, key: InboundKey, write: OrderWrite) -> Result<WriteOutcome, StoreError>;
    /// Like [`Store::execute`], and in the same transaction marks the job `done` (when `worker`
    /// still holds its lease): the effect of a job and its completion commit together.
    async fn execute_finishing(&self, write: OrderWrite, job_id: i64, worker: &str)
    -> Result<WriteOutcome, StoreError>;
    /// The order (id, carrier) whose shipment has this tracking number.
    async fn order_by_tracking(&self, tracking_number: &str) -> Result<Option<(String, String)>, StoreError>;
    /// Dead letters, newest first.
    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError>;
    /// Puts a dead letter back in the queue with a fresh attempt budget, due now. `None`
    /// when there is no dead job with that id.
    async fn retry_dead_letter(&self, id: i64, now: DateTime<Utc>) -> Result<Option<DeadLetter>, StoreError>;

    /// The stored cursor of a pull sync (e.g. `odoo`), as the connector wrote it.
    async fn sync_cursor(&self, source: &str) -> Result<Option<String>, StoreError>;
    /// Stores the cursor of a pull sync. Call it only after the writes it covers committed.
    async fn set_sync_cursor(&self, source: &str, position: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Dispatch history (intelligence): inserts or replaces records by order id, in one
    /// transaction. Returns how many rows were written.
    async fn insert_history(&self, rows: &[HistoryRow]) -> Result<u64, StoreError>;
    /// History records (JSON) released at or after `from`, oldest first.
    async fn history(&self, from: Option<DateTime<Utc>>) -> Result<Vec<String>, StoreError>;
    async fn history_count(&self) -> Result<i64, StoreError>;
    /// Stores a trained model as a `candidate`.
    async fn insert_model(&self, model: &ModelRow, artifact: &[u8]) -> Result<(), StoreError>;
    /// Every model, newest first (without artifacts).
    async fn models(&self) -> Result<Vec<ModelRow>, StoreError>;
    async fn model_artifact(&self, version: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Makes `version` the one active model (the previous one is retired), in one
    /// transaction. `false` when there is no such model.
    async fn activate_model(&self, version: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// The active model and its artifact.
    async fn active_model(&self) -> Result<Option<(ModelRow, Vec<u8>)>, StoreError>;
    /// Live-operations counts per UTC hour in `[from, to)`: holds entered, holds that
    /// reached `hold_age` unresolved, failed carrier bookings (see [`OpsCounter`]). One
    /// aggregate query per counter (partial index `events_holds`, migration 0110).
    async fn ops_counts(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        hold_age: chrono::Duration,
    ) -> Result<Vec<OpsCount>, StoreError>;
    /// Records one carrier booking call (outside any order write: it is a fact about the
    /// carrier, not the order).
    async fn record_carrier_attempt(&self, a: &CarrierAttempt) -> Result<(), StoreError>;
    /// Attempts and failures per carrier with `from <= at < to`, by carrier name.
    async fn carrier_attempt_totals(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<CarrierAttemptTotal>, StoreError>;
    // Outbound webhooks and notifications (issue 8).
    /// Puts jobs in the outbox outside an order write; a dedupe key already there is skipped.
    /// Returns how many were added.
    async fn enqueue_jobs(&self, jobs: &[NewJob], now: DateTime<Utc>) -> Result<u64, StoreError>;
    async fn insert_webhook_endpoint(&self, e: &WebhookEndpointRow) -> Result<(), StoreError>;
    /// Every endpoint, oldest first.
    async fn webhook_endpoints(&self) -> Result<Vec<WebhookEndpointRow>, StoreError>;
    async fn webhook_endpoint(&self, id: &str) -> Result<Option<WebhookEndpointRow>, StoreError>;
    /// Replaces the sealed signing secrets (rotation); `false` when there is no such endpoint.
    async fn set_webhook_secrets(
        &self,
        id: &str,
        secrets: &[EndpointSecret],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// `active` (clears the failure clock) or `disabled` with the reason.
    async fn set_webhook_status(
        &self,
        id: &str,
        status: &str,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    async fn delete_webhook_endpoint(&self, id: &str) -> Result<bool, StoreError>;
    /// Records a delivery's outcome: a success clears `failing_since`, a failure starts it
    /// when it is not running. The endpoint after the change.
    async fn record_webhook_result(
        &self,
        id: &str,
        ok: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<WebhookEndpointRow>, StoreError>;
    /// Records a notification; `None` when one with its dedupe key exists already.
    async fn insert_notification(&self, n: &NotificationRecord) -> Result<Option<i64>, StoreError>;
    async fn update_notification(
        &self,
        id: i64,
        status: &str,
        attempts: i64,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// An order's notifications, oldest first.
    async fn notifications(&self, order_id: &str) -> Result<Vec<NotificationRecord>, StoreError>;
    /// When the last (not suppressed) notification of `kind` about this order was recorded.
    async fn last_notification_at(&self, order_id: &str, kind: &str) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Data retention: deletes finished jobs, finished schedule runs, idempotency answers and
    /// settled notifications older than `before` (never events or orders). Rows deleted.
    async fn purge_operational(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Cheap check that the database answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Finishes pending writes and closes.
    async fn close(&self);
}
