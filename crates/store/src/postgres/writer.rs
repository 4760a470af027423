//! The PostgreSQL writer of one node: group commit like SQLite's, but several nodes write at
//! once, so each write locks what it reads (`FOR UPDATE`, and an advisory lock on the natural
//! key for orders that do not exist yet), and a batch that hits a deadlock or a lost race with
//! another node is rolled back and decided again (decisions are pure, so that is safe).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use dispatch_core::Order;
use sqlx::{Connection, PgConnection};

use crate::time::to_micros;
use crate::write::{BatchView, Pending, Plan, Queues, WriteTx, order_from_doc, write_inbound, write_one};
use crate::{StoreError, Target};

pub const JOBS_CHANNEL: &str = "dispatchd_jobs";
const ATTEMPTS: usize = 4;

/// What the writers of one node share: the queues, taken by one writer at a time, and
/// whether one of them received the shutdown message.
#[derive(Clone)]
pub(crate) struct Shared {
    queues: std::sync::Arc<tokio::sync::Mutex<Queues>>,
    stopping: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Shared {
    pub(crate) fn new(queues: Queues) -> Self {
        Shared { queues: std::sync::Arc::new(tokio::sync::Mutex::new(queues)), stopping: Default::default() }
    }

    /// The next batch, or `true` when this writer is to stop after it.
    async fn next_batch(&self, max: usize, batch: &mut Vec<Pending>) -> bool {
        use std::sync::atomic::Ordering;
        let mut queues = self.queues.lock().await;
        if self.stopping.load(Ordering::Acquire) {
            return true;
        }
        // Tasks are for the SQLite writer; this store sends none (dropping one answers Closed).
        let shutdown = queues.next_batch(max, batch, &mut Vec::new()).await;
        if shutdown {
            // Set before the lock is let go: the next writer to take it stops too.
            self.stopping.store(true, Ordering::Release);
        }
        shutdown
    }
}

pub(crate) struct Config {
    /// Learns the shipments of committed orders.
    pub tracking: std::sync::Arc<crate::tracking::TrackingCache>,
    pub max_batch: usize,
    pub jobs: std::sync::Arc<crate::signals::JobSignals>,
    pub follow_ups: dispatch_core::effects::FollowUpConfig,
    pub publish: crate::PublishEvents,
}

pub(crate) async fn run(mut conn: PgConnection, shared: Shared, config: Config) {
    let mut batch: Vec<Pending> = Vec::with_capacity(config.max_batch);
    loop {
        let shutdown = shared.next_batch(config.max_batch, &mut batch).await;
        let size = batch.len();
        let started = std::time::Instant::now();
        let enqueued =
            if size == 0 { Vec::new() } else { commit_batch(&mut conn, std::mem::take(&mut batch), &config).await };
        if size > 0 {
            crate::write::observe_batch("postgres", size, started.elapsed());
        }
        if !enqueued.is_empty() {
            config.jobs.notify(enqueued);
        }
        if shutdown {
            let _ = conn.close().await;
            return;
        }
    }
}

fn retryable(e: &sqlx::Error) -> bool {
    // deadlock_detected, serialization_failure, unique_violation (a lost creation race)
    matches!(e.as_database_error().and_then(|d| d.code()).as_deref(), Some("40P01" | "40001" | "23505"))
}

async fn attempt(
    conn: &mut PgConnection,
    batch: &[Pending],
    mut follow_ups: dispatch_core::effects::FollowUpConfig,
    publish: crate::PublishEvents,
) -> Result<crate::write::Answers, sqlx::Error> {
    let mut tx = conn.begin().await?;
    follow_ups.publish_events = match publish {
        crate::PublishEvents::Always => true,
        crate::PublishEvents::Never => false,
        crate::PublishEvents::WhileSubscribed => {
            sqlx::query_scalar::<_, bool>(crate::ENDPOINT_ACTIVE_SQL).fetch_one(&mut *tx).await?
        }
    };
    let mut view = BatchView::with_follow_ups(follow_ups);
    let mut io = PgTx {
        conn: &mut tx,
        enqueued: Vec::new(),
        audit: Vec::new(),
        staged: Staged::default(),
        locked: Locked::default(),
    };
    io.lock_batch(batch).await.map_err(|e| match e {
        StoreError::Db(e) => e,
        other => sqlx::Error::Protocol(other.to_string()),
    })?;
    let mut results = Vec::with_capacity(batch.len());
    let mut inbound_seen = std::collections::HashSet::new();
    for p in batch {
        let r = match &p.inbound {
            Some(key) => write_inbound(&mut io, key, &p.write, &mut view, &mut inbound_seen).await,
            None => write_one(&mut io, &p.write, &mut view).await,
        };
        let r = match (r, &p.finish) {
            (Ok(out), Some((job, worker))) => io.finish_job(*job, worker, p.write.meta.at).await.map(|_| out),
            (r, _) => r,
        };
        match r {
            Err(StoreError::Db(e)) => return Err(e),
            r => results.push(r),
        }
    }
    let staged = std::mem::take(&mut io.staged);
    staged.flush(io.conn).await.map_err(|e| match e {
        StoreError::Db(e) => e,
        other => sqlx::Error::Protocol(other.to_string()),
    })?;
    let enqueued = std::mem::take(&mut io.enqueued);
    let audit = std::mem::take(&mut io.audit);
    if !audit.is_empty() {
        // Last, so the chain head (locked until commit) is held as briefly as possible.
        super::security::append_chain(&mut tx, audit).await.map_err(|e| match e {
            StoreError::Db(e) => e,
            other => sqlx::Error::Protocol(other.to_string()),
        })?;
    }
    if !enqueued.is_empty() {
        // Delivered to every node's listener when (and only if) the transaction commits.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(JOBS_CHANNEL)
            .bind(crate::signals::payload(enqueued.iter().copied()))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok((results, enqueued))
}

async fn commit_batch(conn: &mut PgConnection, batch: Vec<Pending>, config: &Config) -> Vec<&'static str> {
    let mut last_error = None;
    for n in 0..ATTEMPTS {
        match attempt(conn, &batch, config.follow_ups, config.publish).await {
            Ok((results, enqueued)) => {
                config.tracking.learn(&results);
                for (p, r) in batch.into_iter().zip(results) {
                    let _ = p.reply.send(r);
                }
                return enqueued;
            }
            Err(e) if retryable(&e) && n + 1 < ATTEMPTS => {
                tracing::debug!(error = %e, attempt = n + 1, "write batch lost a race with another node; deciding again");
                tokio::time::sleep(std::time::Duration::from_millis(2 << n)).await;
                last_error = Some(e);
            }
            Err(e) => {
                last_error = Some(e);
                break;
            }
        }
    }
    let msg = last_error.map_or_else(|| "unknown".to_string(), |e| e.to_string());
    tracing::error!(error = %msg, "write batch failed; nothing of it was committed");
    for p in batch {
        let _ = p.reply.send(Err(StoreError::Unavailable(format!("write batch failed, nothing was committed: {msg}"))));
    }
    Vec::new()
}

struct PgTx<'c> {
    conn: &'c mut PgConnection,
    /// Kinds of the follow-up jobs staged so far.
    enqueued: Vec<&'static str>,
    /// Audit entries of the events written so far, chained just before commit.
    audit: Vec<dispatch_core::audit::AuditDraft>,
    staged: Staged,
    locked: Locked,
}

/// What [`PgTx::lock_batch`] locked and read for the whole batch at its start.
#[derive(Default)]
struct Locked {
    /// Orders the batch is about, row-locked, by id.
    orders: HashMap<String, Order>,
    /// Natural keys (advisory-locked) with the id of their order.
    keys: HashMap<(String, String), String>,
    /// Natural keys (advisory-locked) that have no order yet.
    absent_keys: HashSet<(String, String)>,
    /// Idempotency keys (advisory-locked) with their stored answer, if any.
    idempotency: HashMap<(String, String), Option<(String, String)>>,
    /// Inbound event ids (advisory-locked) recorded before this transaction.
    recorded: HashSet<(String, String)>,
}

/// Takes the advisory locks of a set of keys in one statement, in hash order so that two
/// nodes locking overlapping sets wait for each other rather than deadlock. `space` keeps the
/// kinds of key apart (0 natural keys, 1 idempotency keys, 2 inbound events).
async fn advisory_locks(conn: &mut PgConnection, keys: &[(String, String)], space: i64) -> Result<(), sqlx::Error> {
    if keys.is_empty() {
        return Ok(());
    }
    let (a, b) = columns(keys);
    sqlx::query(
        "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtextextended(a || chr(31) || b, $3) AS h \
         FROM unnest($1::text[], $2::text[]) AS k(a, b) ORDER BY h) l",
    )
    .bind(a)
    .bind(b)
    .bind(space)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The `(a, b)` pairs as two text arrays for `unnest($1::text[], $2::text[])`.
fn columns(keys: &[(String, String)]) -> (Vec<&str>, Vec<&str>) {
    keys.iter().map(|(a, b)| (a.as_str(), b.as_str())).unzip()
}

impl PgTx<'_> {
    /// Locks and reads, for the whole batch, what its writes would otherwise lock and read one
    /// round trip at a time: inbound event ids, idempotency keys, natural keys and the orders.
    /// Each kind is locked before it is read, and the read is a statement of its own, so it
    /// sees whatever another node committed before it let go of the lock.
    async fn lock_batch(&mut self, batch: &[Pending]) -> Result<(), StoreError> {
        let mut inbound = Vec::new();
        let mut idempotency = Vec::new();
        let mut keys = Vec::new();
        let mut ids = Vec::new();
        for p in batch {
            if let Some(k) = &p.inbound {
                inbound.push((k.source.clone(), k.event_id.clone()));
            }
            if let Some(k) = &p.write.idempotency {
                idempotency.push((k.scope.clone(), k.key.clone()));
            }
            match &p.write.target {
                Target::Id(id) => ids.push(id.clone()),
                Target::NaturalKey { source, external_id } => keys.push((source.clone(), external_id.clone())),
            }
        }
        for v in [&mut inbound, &mut idempotency, &mut keys] {
            v.sort();
            v.dedup();
        }
        let conn = &mut *self.conn;
        if !inbound.is_empty() {
            advisory_locks(conn, &inbound, 2).await?;
            let (a, b) = columns(&inbound);
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT e.source, e.event_id FROM unnest($1::text[], $2::text[]) AS k(a, b) \
                 JOIN inbound_events e ON e.source = k.a AND e.event_id = k.b",
            )
            .bind(a)
            .bind(b)
            .fetch_all(&mut *conn)
            .await?;
            self.locked.recorded.extend(rows);
        }
        if !idempotency.is_empty() {
            advisory_locks(conn, &idempotency, 1).await?;
            let (a, b) = columns(&idempotency);
            let rows: Vec<(String, String, String, String)> = sqlx::query_as(
                "SELECT i.scope, i.key, i.request_hash, i.response FROM unnest($1::text[], $2::text[]) AS k(a, b) \
                 JOIN idempotency_keys i ON i.scope = k.a AND i.key = k.b",
            )
            .bind(a)
            .bind(b)
            .fetch_all(&mut *conn)
            .await?;
            for k in idempotency {
                self.locked.idempotency.insert(k, None);
            }
            for (scope, key, hash, response) in rows {
                self.locked.idempotency.insert((scope, key), Some((hash, response)));
            }
        }
        if !keys.is_empty() {
            // The row may not exist yet: lock the key itself so two nodes cannot create it twice.
            advisory_locks(conn, &keys, 0).await?;
        }
        // Row locks in id order, like the advisory locks, so nodes queue rather than deadlock.
        // Two statements rather than one with `OR`: each is an index lookup per key, where the
        // `OR` made the planner scan the whole table.
        let mut docs: Vec<String> = Vec::new();
        if !ids.is_empty() {
            docs.extend(
                sqlx::query_scalar::<_, String>("SELECT doc FROM orders WHERE id = ANY($1) ORDER BY id FOR UPDATE")
                    .bind(&ids)
                    .fetch_all(&mut *conn)
                    .await?,
            );
        }
        if !keys.is_empty() {
            let (a, b) = columns(&keys);
            docs.extend(
                sqlx::query_scalar::<_, String>(
                    "SELECT o.doc FROM unnest($1::text[], $2::text[]) AS k(a, b) \
                     JOIN orders o ON o.source = k.a AND o.external_id = k.b ORDER BY o.id FOR UPDATE OF o",
                )
                .bind(a)
                .bind(b)
                .fetch_all(&mut *conn)
                .await?,
            );
        }
        {
            for doc in docs {
                let o = order_from_doc(&doc)?;
                self.locked.keys.insert((o.facts.source.clone(), o.facts.external_id.clone()), o.id.clone());
                self.locked.orders.insert(o.id.clone(), o);
            }
        }
        let found = &self.locked.keys;
        self.locked.absent_keys = keys.into_iter().filter(|k| !found.contains_key(k)).collect();
        Ok(())
    }
}

/// (order_id, version, kind, at, actor, request_id, data)
type EventRow = (String, i64, &'static str, i64, String, Option<String>, String);

/// Rows the batch writes, sent as a few multi-row statements before commit rather than one
/// round trip each. Nothing in the batch reads them back from the database: later writes of
/// the batch see its orders through the [`BatchView`].
#[derive(Default)]
struct Staged {
    events: Vec<EventRow>,
    /// The latest projection per order (an order written twice in a batch is upserted once:
    /// PostgreSQL refuses to update one row twice in one statement).
    orders: Vec<Order>,
    order_index: std::collections::HashMap<String, usize>,
    /// (kind, order_id, dedupe_key, payload, at)
    jobs: Vec<(String, String, String, String, i64)>,
    /// (scope, key, request_hash, response, at)
    idempotency: Vec<(String, String, String, String, i64)>,
    /// (source, event_id, order_id, kind, received_at)
    inbound: Vec<(String, String, String, String, i64)>,
}

impl Staged {
    /// One statement per kind of row, whatever the batch's size: the rows go as one array per
    /// column into `unnest`. The SQL text never changes, so each statement is prepared once per
    /// connection and planned in well under a millisecond; a `VALUES` list with a parameter per
    /// value was a new statement for every batch size, and planning it took 13% of the
    /// database's time under tracking webhooks.
    async fn flush(self, conn: &mut PgConnection) -> Result<(), StoreError> {
        if !self.events.is_empty() {
            let mut c = (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
            for (id, version, kind, at, actor, request_id, data) in self.events {
                c.0.push(id);
                c.1.push(version);
                c.2.push(kind);
                c.3.push(at);
                c.4.push(actor);
                c.5.push(request_id);
                c.6.push(data);
            }
            sqlx::query(
                "INSERT INTO events (order_id, version, kind, at, actor, request_id, data) \
                 SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::int8[], $5::text[], $6::text[], $7::text[])",
            )
            .bind(c.0)
            .bind(c.1)
            .bind(c.2)
            .bind(c.3)
            .bind(c.4)
            .bind(c.5)
            .bind(c.6)
            .execute(&mut *conn)
            .await?;
        }
        if !self.orders.is_empty() {
            OrderColumns::of(&self.orders)?.upsert(conn).await?;
        }
        for (sql, rows) in [
            (
                "INSERT INTO jobs (kind, order_id, dedupe_key, payload, run_at, created_at, updated_at) \
                 SELECT kind, order_id, dedupe_key, payload, at, at, at \
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[]) \
                 AS t(kind, order_id, dedupe_key, payload, at) ON CONFLICT (dedupe_key) DO NOTHING",
                self.jobs,
            ),
            (
                "INSERT INTO idempotency_keys (scope, key, request_hash, response, created_at) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[])",
                self.idempotency,
            ),
            (
                "INSERT INTO inbound_events (source, event_id, order_id, kind, received_at) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[])",
                self.inbound,
            ),
        ] {
            if rows.is_empty() {
                continue;
            }
            let c = unzip5(rows);
            sqlx::query(sql).bind(c.0).bind(c.1).bind(c.2).bind(c.3).bind(c.4).execute(&mut *conn).await?;
        }
        Ok(())
    }
}

/// Five columns of rows, for `unnest`.
type Columns5<A, B, C, D, E> = (Vec<A>, Vec<B>, Vec<C>, Vec<D>, Vec<E>);

/// Rows of five columns as five columns of rows.
fn unzip5<A, B, C, D, E>(rows: Vec<(A, B, C, D, E)>) -> Columns5<A, B, C, D, E> {
    let n = rows.len();
    let mut c = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (a, b, d, e, f) in rows {
        c.0.push(a);
        c.1.push(b);
        c.2.push(d);
        c.3.push(e);
        c.4.push(f);
    }
    c
}

/// The batch's order projections, one array per column of [`crate::write::ORDERS_INSERT`].
#[derive(Default)]
struct OrderColumns {
    id: Vec<String>,
    source: Vec<String>,
    external_id: Vec<String>,
    version: Vec<i64>,
    state: Vec<&'static str>,
    warehouse: Vec<String>,
    priority: Vec<i32>,
    hold_reasons: Vec<String>,
    customer_id: Vec<String>,
    channel: Vec<Option<String>>,
    service_level: Vec<&'static str>,
    latest_departure: Vec<Option<i64>>,
    created_at: Vec<i64>,
    updated_at: Vec<i64>,
    state_since: Vec<i64>,
    doc: Vec<String>,
    route_key: Vec<Option<String>>,
    risk: Vec<Option<f64>>,
    released_at: Vec<Option<i64>>,
    released_on_time: Vec<bool>,
    dispatched_at: Vec<Option<i64>>,
    touched: Vec<bool>,
    expedite_requested: Vec<f64>,
    expedite_approved: Vec<f64>,
    tracking_number: Vec<Option<String>>,
}

impl OrderColumns {
    fn of(orders: &[Order]) -> Result<Self, StoreError> {
        let mut c = OrderColumns::default();
        for o in orders {
            c.id.push(o.id.clone());
            c.source.push(o.facts.source.clone());
            c.external_id.push(o.facts.external_id.clone());
            c.version.push(o.version as i64);
            c.state.push(o.state.code());
            c.warehouse.push(o.facts.warehouse.clone());
            c.priority.push(o.priority);
            c.hold_reasons.push(serde_json::to_string(&o.hold_reasons)?);
            c.customer_id.push(o.facts.customer.id.clone());
            c.channel.push(o.facts.channel.clone());
            c.service_level.push(o.facts.service_level.code());
            c.latest_departure.push(o.latest_departure.map(to_micros));
            c.created_at.push(to_micros(o.created_at));
            c.updated_at.push(to_micros(o.updated_at));
            c.state_since.push(to_micros(o.state_since));
            c.doc.push(serde_json::to_string(o)?);
            c.route_key.push(dispatch_core::route::member_key(o));
            let k = crate::write::console_columns(o);
            c.risk.push(k.risk);
            c.released_at.push(k.released_at);
            c.released_on_time.push(k.released_on_time);
            c.dispatched_at.push(k.dispatched_at);
            c.touched.push(k.touched);
            c.expedite_requested.push(k.expedite_requested);
            c.expedite_approved.push(k.expedite_approved);
            c.tracking_number.push(o.shipment.as_ref().map(|s| s.tracking_number.clone()));
        }
        Ok(c)
    }

    async fn upsert(self, conn: &mut PgConnection) -> Result<(), StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(ORDERS_UPSERT.as_str()))
            .bind(self.id)
            .bind(self.source)
            .bind(self.external_id)
            .bind(self.version)
            .bind(self.state)
            .bind(self.warehouse)
            .bind(self.priority)
            .bind(self.hold_reasons)
            .bind(self.customer_id)
            .bind(self.channel)
            .bind(self.service_level)
            .bind(self.latest_departure)
            .bind(self.created_at)
            .bind(self.updated_at)
            .bind(self.state_since)
            .bind(self.doc)
            .bind(self.route_key)
            .bind(self.risk)
            .bind(self.released_at)
            .bind(self.released_on_time)
            .bind(self.dispatched_at)
            .bind(self.touched)
            .bind(self.expedite_requested)
            .bind(self.expedite_approved)
            .bind(self.tracking_number)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

/// [`crate::write::ORDERS_INSERT`] from one array per column (`hold_reasons`, the 8th, is
/// sent as text and cast).
static ORDERS_UPSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    const TYPES: [&str; 25] = [
        "text", "text", "text", "int8", "text", "text", "int4", "text", "text", "text", "text", "int8", "int8", "int8",
        "int8", "text", "text", "float8", "int8", "bool", "int8", "bool", "float8", "float8", "text",
    ];
    let arrays: Vec<String> = TYPES.iter().enumerate().map(|(i, t)| format!("${}::{t}[]", i + 1)).collect();
    let columns: Vec<String> = (1..=25).map(|i| if i == 8 { "c8::jsonb".into() } else { format!("c{i}") }).collect();
    let names: Vec<String> = (1..=25).map(|i| format!("c{i}")).collect();
    format!(
        "{}SELECT {} FROM unnest({}) AS t({}){}",
        crate::write::ORDERS_INSERT,
        columns.join(", "),
        arrays.join(", "),
        names.join(", "),
        crate::write::ORDERS_ON_CONFLICT
    )
});

impl PgTx<'_> {
    /// Marks a job done in this transaction, if `worker` still holds its lease.
    async fn finish_job(&mut self, id: i64, worker: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE jobs SET status = 'done', lease_until = NULL, updated_at = $3 \
             WHERE id = $1 AND locked_by = $2 AND status = 'running'",
        )
        .bind(id)
        .bind(worker)
        .bind(to_micros(at))
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }
}

impl WriteTx for PgTx<'_> {
    async fn idempotency(&mut self, scope: &str, key: &str) -> Result<Option<(String, String)>, StoreError> {
        if let Some(stored) = self.locked.idempotency.get(&(scope.to_string(), key.to_string())) {
            return Ok(stored.clone());
        }
        // Serialize writers of the same key across nodes; the lock ends with the transaction.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(31) || $2, 1))")
            .bind(scope)
            .bind(key)
            .execute(&mut *self.conn)
            .await?;
        Ok(sqlx::query_as("SELECT request_hash, response FROM idempotency_keys WHERE scope = $1 AND key = $2")
            .bind(scope)
            .bind(key)
            .fetch_optional(&mut *self.conn)
            .await?)
    }

    async fn load(&mut self, target: &Target) -> Result<Option<Order>, StoreError> {
        let locked = match target {
            Target::Id(id) => self.locked.orders.get(id),
            Target::NaturalKey { source, external_id } => {
                let k = (source.clone(), external_id.clone());
                if self.locked.absent_keys.contains(&k) {
                    return Ok(None);
                }
                self.locked.keys.get(&k).and_then(|id| self.locked.orders.get(id))
            }
        };
        if let Some(o) = locked {
            return Ok(Some(o.clone()));
        }
        let doc: Option<String> = match target {
            Target::Id(id) => {
                sqlx::query_scalar("SELECT doc FROM orders WHERE id = $1 FOR UPDATE")
                    .bind(id)
                    .fetch_optional(&mut *self.conn)
                    .await?
            }
            Target::NaturalKey { source, external_id } => {
                // The row may not exist yet: lock the key itself so two nodes cannot create it twice.
                sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(31) || $2, 0))")
                    .bind(source)
                    .bind(external_id)
                    .execute(&mut *self.conn)
                    .await?;
                sqlx::query_scalar("SELECT doc FROM orders WHERE source = $1 AND external_id = $2 FOR UPDATE")
                    .bind(source)
                    .bind(external_id)
                    .fetch_optional(&mut *self.conn)
                    .await?
            }
        };
        doc.as_deref().map(order_from_doc).transpose()
    }

    async fn persist(&mut self, plan: Plan<'_>) -> Result<(), StoreError> {
        for ev in plan.events {
            let data = serde_json::to_string(&ev.data)?;
            self.audit.push(crate::security::event_draft(ev, plan.roles, &data));
            self.staged.events.push((
                ev.order_id.clone(),
                ev.version as i64,
                ev.data.kind(),
                to_micros(ev.at),
                ev.actor.clone(),
                ev.request_id.clone(),
                data,
            ));
        }
        let Some(o) = plan.order else { return Ok(()) };
        match self.staged.order_index.get(&o.id) {
            Some(&i) => self.staged.orders[i] = o.clone(),
            None => {
                self.staged.order_index.insert(o.id.clone(), self.staged.orders.len());
                self.staged.orders.push(o.clone());
            }
        }
        for f in plan.jobs {
            let payload = f.payload.to_string();
            self.staged.jobs.push((f.kind.into(), o.id.clone(), f.dedupe_key.clone(), payload, to_micros(plan.at)));
            self.enqueued.push(f.kind);
        }
        Ok(())
    }

    async fn remember(
        &mut self,
        scope: &str,
        key: &str,
        hash: &str,
        response: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.staged.idempotency.push((scope.into(), key.into(), hash.into(), response.into(), to_micros(at)));
        Ok(())
    }

    /// `lock_batch` locked the id (two nodes receiving the same event serialize there; the
    /// second then sees it recorded) and read whether it was recorded before.
    async fn recorded(&mut self, key: &crate::InboundKey) -> Result<bool, StoreError> {
        Ok(self.locked.recorded.contains(&(key.source.clone(), key.event_id.clone())))
    }

    async fn record(&mut self, key: &crate::InboundKey, order_id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let row = (key.source.clone(), key.event_id.clone(), order_id.to_string(), key.kind.clone(), to_micros(at));
        self.staged.inbound.push(row);
        Ok(())
    }
}
