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

pub mod sqlite;
mod time;

pub use sqlite::{SqliteOptions, SqliteStore};
pub use time::{from_micros, to_micros};

/// The decision function of a write: the current order (if any) in, events out. It runs
/// inside the write transaction, so what it sees is what it changes.
pub type Decide = Box<dyn FnOnce(Option<&Order>) -> Result<Vec<EventData>, DomainError> + Send>;

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
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("the store is shutting down")]
    Closed,
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

/// Counts for `/metrics`, computed from the projection at scrape time.
#[derive(Debug, Clone, Default)]
pub struct OrderCounts {
    pub by_state_warehouse: Vec<(String, String, i64)>,
    pub holds_by_reason: Vec<(String, i64)>,
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
}

/// A follow-up job claimed from the outbox.
#[derive(Debug, Clone, PartialEq)]
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

/// One storage interface; SQLite implements it today and PostgreSQL will.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Decides and appends in one transaction; answers after commit.
    async fn execute(&self, write: OrderWrite) -> Result<WriteOutcome, StoreError>;
    async fn order(&self, id: &str) -> Result<Option<Order>, StoreError>;
    async fn order_by_key(&self, source: &str, external_id: &str) -> Result<Option<Order>, StoreError>;
    async fn list_orders(&self, q: &OrderQuery) -> Result<Page<Order>, StoreError>;
    /// The order's whole stream, oldest first.
    async fn events(&self, order_id: &str) -> Result<Vec<Event>, StoreError>;
    /// The events a decision is made on (`order.received`, `order.updated`, `order.evaluated`)
    /// of all orders in recording order, after position `after_seq` (0 for the start), as
    /// stored: the reader parses only what it needs. For what-if replay.
    async fn scan_decision_events(&self, after_seq: i64, limit: u32) -> Result<Vec<RawEvent>, StoreError>;
    async fn order_count(&self) -> Result<i64, StoreError>;
    async fn counts(&self) -> Result<OrderCounts, StoreError>;

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

    /// Cheap check that the database answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Finishes pending writes and closes.
    async fn close(&self);
}
