//! The single SQLite writer: a thread with a connection of its own, which takes every queued
//! write, runs them in one transaction (group commit), and answers each only after that
//! transaction committed. The per-write steps are the shared ones of [`crate::write`].
//!
//! Why a thread and rusqlite rather than a sqlx connection: through sqlx each statement is a
//! hand-off to the connection's worker thread and back, and the writer is serial, so those
//! hand-offs — not SQL — set the write throughput (measured: about 2.2 ms per batch for some
//! 15 statements). Here every statement runs in place, prepared once and cached, and a batch
//! costs its SQL and one commit.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dispatch_core::Order;
use dispatch_core::audit::AuditDraft;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::Durability;
use crate::time::to_micros;
use crate::write::{
    Answer, BatchView, Indexed, Pending, Plan, Queues, Task, WriteTx, order_from_doc, write_inbound, write_one,
};
use crate::{InboundKey, StoreError, Target};

/// What the writer thread needs besides its queues.
pub(crate) struct Config {
    /// When this writer last checkpointed, for the background pass.
    pub checkpointed: Arc<LastCheckpoint>,
    /// Learns the shipments of committed orders.
    pub tracking: Arc<crate::tracking::TrackingCache>,
    pub max_batch: usize,
    pub jobs: Arc<crate::signals::JobSignals>,
    pub follow_ups: dispatch_core::effects::FollowUpConfig,
    pub publish: crate::PublishEvents,
}

/// Opens the writer's connection with the same settings as the pool's (the journal mode is
/// the file's, set when the pool opened it).
pub(crate) fn connect(path: &Path, durability: Durability) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let synchronous = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    // Checkpoints are run by the store's checkpointer and between batches (see `run`), never
    // by a commit of this connection: `wal_autocheckpoint = 0`.
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; \
         PRAGMA cache_size = -16000; PRAGMA journal_size_limit = 67108864; PRAGMA wal_autocheckpoint = 0;"
    ))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Starts the writer thread. It stops after a shutdown message, once everything queued
/// before it has committed, or when every sender is gone.
pub(crate) fn spawn(conn: Connection, queues: Queues, config: Config) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("sqlite-writer".into()).spawn(move || run(conn, queues, config))
}

/// Orders as last committed by this writer. The writer is the only one that writes orders, so
/// what it committed is what the database holds: a hit saves a read and a JSON parse. Filled
/// only after a commit, so a failed batch leaves nothing behind; emptied after a failed batch.
#[derive(Default)]
struct Committed {
    orders: HashMap<String, Order>,
    keys: HashMap<(String, String), String>,
}

/// Most orders kept (about 10 KiB each); past it a tenth of them, arbitrary ones, are dropped.
const CACHE_ORDERS: usize = 2_000;

impl Committed {
    fn absorb(&mut self, view: BatchView) {
        let (orders, keys) = view.into_orders();
        self.orders.extend(orders);
        self.keys.extend(keys);
        if self.orders.len() > CACHE_ORDERS {
            let mut keep = CACHE_ORDERS * 9 / 10;
            self.orders.retain(|_, _| {
                keep = keep.saturating_sub(1);
                keep > 0
            });
        }
        if self.keys.len() > CACHE_ORDERS * 4 {
            self.keys.clear();
        }
    }

    fn clear(&mut self) {
        self.orders.clear();
        self.keys.clear();
    }
}

/// How often the writer checkpoints when its queue is empty, and at the latest when it is not.
/// Often: each checkpoint then copies few pages and fsyncs little, and holds the next batch
/// for a few milliseconds instead of ten or more (measured at 2,000 upserts/s: p99 19-21 ms
/// every 100 ms, 11-12 ms every 25 ms).
const CHECKPOINT_IDLE: Duration = Duration::from_millis(25);
const CHECKPOINT_BUSY: Duration = Duration::from_secs(1);
/// The background pass runs when the writer has not checkpointed for this long (saturated).
pub(crate) const CHECKPOINT_BACKGROUND: Duration = Duration::from_millis(250);

/// When the writer last checkpointed, in milliseconds since the store opened.
pub(crate) struct LastCheckpoint {
    epoch: Instant,
    millis: std::sync::atomic::AtomicU64,
}

impl Default for LastCheckpoint {
    fn default() -> Self {
        LastCheckpoint { epoch: Instant::now(), millis: Default::default() }
    }
}

impl LastCheckpoint {
    fn mark(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.millis.store(now, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the writer checkpointed within the last `window`.
    pub(crate) fn within(&self, window: Duration) -> bool {
        let last = Duration::from_millis(self.millis.load(std::sync::atomic::Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last) < window
    }
}

/// 256k pages: 1 GiB of WAL.
const WAL_VALVE_PAGES: i64 = 262_144;

fn run(mut conn: Connection, mut queues: Queues, config: Config) {
    let max_batch = config.max_batch.max(1);
    let mut batch: Vec<Pending> = Vec::with_capacity(max_batch);
    let mut tasks: Vec<Task> = Vec::new();
    let mut committed = Committed::default();
    let mut last_checkpoint = Instant::now();
    loop {
        // tokio's channels need no runtime to be waited on: this thread just parks.
        let shutdown = futures::executor::block_on(queues.next_batch(max_batch, &mut batch, &mut tasks));
        if !batch.is_empty() || !tasks.is_empty() {
            let (size, started) = (batch.len() + tasks.len(), Instant::now());
            let work = (std::mem::take(&mut batch), std::mem::take(&mut tasks));
            let enqueued = commit_batch(&mut conn, work, &mut committed, &config);
            crate::write::observe_batch("sqlite", size, started.elapsed());
            if !enqueued.is_empty() {
                // Follow-up jobs were enqueued: wake the idle workers of their kinds now, not at
                // their next poll. (Waking every worker instead measured no faster in six
                // alternating runs: 7,242-10,487 against 8,785-10,690 webhooks/s.)
                config.jobs.notify(enqueued);
            }
        }
        // Keep the WAL short. A checkpoint beside the writer can never finish while new frames
        // keep arriving, and the WAL only restarts from its beginning once a checkpoint has
        // copied everything. Here, between batches, no frame can arrive: what is left is copied
        // and the next commit rewinds the WAL. In a pause of the queue, every 25 ms at most;
        // under saturation once a second, with the background pass copying the bulk beside.
        let since = last_checkpoint.elapsed();
        if !shutdown && (since >= CHECKPOINT_IDLE && queues.is_empty() || since >= CHECKPOINT_BUSY) {
            let started = Instant::now();
            // (busy, pages in the WAL, pages checkpointed)
            match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)) {
                // Readers kept the WAL from rewinding until it passed 1 GiB: truncate it, holding
                // writes for a moment — a safety valve. Here, not on a pool connection, which
                // would wait for a write lock the writer hardly ever lets go of.
                Ok(pages) if pages > WAL_VALVE_PAGES => {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
                        tracing::warn!(error = %e, "WAL truncation failed; it is retried");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "writer's WAL checkpoint failed; it is retried"),
            }
            crate::write::observe_checkpoint(started.elapsed());
            config.checkpointed.mark();
            last_checkpoint = Instant::now();
        }
        if shutdown {
            if let Err((_, e)) = conn.close() {
                tracing::warn!(error = %e, "closing the writer's connection failed");
            }
            return;
        }
    }
}

/// Commits one batch and answers its callers; returns the kinds of follow-up jobs it enqueued.
fn commit_batch(
    conn: &mut Connection,
    (batch, tasks): (Vec<Pending>, Vec<Task>),
    committed: &mut Committed,
    config: &Config,
) -> Vec<&'static str> {
    let mut view = BatchView::with_follow_ups(config.follow_ups);
    let mut answers = Vec::with_capacity(tasks.len());
    let result = attempt(conn, &batch, tasks, &mut answers, committed, config.publish, &mut view);
    match result {
        Ok((results, enqueued)) => {
            config.tracking.learn(&results);
            committed.absorb(view);
            for (p, r) in batch.into_iter().zip(results) {
                let _ = p.reply.send(r);
            }
            for answer in answers {
                answer(None);
            }
            enqueued
        }
        Err(e) => {
            tracing::error!(error = %e, "write batch failed; nothing of it was committed");
            // The cache may be what was wrong (another process wrote the same database, a
            // version clashed): start from the database again.
            committed.clear();
            let why = format!("write batch failed, nothing was committed: {e}");
            for p in batch {
                let _ = p.reply.send(Err(StoreError::Unavailable(why.clone())));
            }
            for answer in answers {
                answer(Some(&why));
            }
            Vec::new()
        }
    }
}

/// Runs the batch in one transaction; a database error rolls all of it back.
fn attempt(
    conn: &mut Connection,
    batch: &[Pending],
    tasks: Vec<Task>,
    answers: &mut Vec<Answer>,
    committed: &mut Committed,
    publish: crate::PublishEvents,
    view: &mut BatchView,
) -> Result<crate::write::Answers, rusqlite::Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Each task keeps to a savepoint of its own (see `task`): one that fails leaves the rest.
    for task in tasks {
        answers.push(task(&tx));
    }
    view.follow_ups.publish_events = match publish {
        crate::PublishEvents::Always => true,
        crate::PublishEvents::Never => false,
        crate::PublishEvents::WhileSubscribed => {
            tx.prepare_cached(crate::ENDPOINT_ACTIVE_SQL)?.query_row([], |r| r.get::<_, bool>(0))?
        }
    };
    let mut io = SqliteTx { conn: &tx, committed, audit: Vec::new(), enqueued: Vec::new(), failed: None };
    let mut results = Vec::with_capacity(batch.len());
    let mut seen = HashSet::new();
    for p in batch {
        // The futures never wait: every statement runs in place (see `SqliteTx`).
        let r = futures::executor::block_on(match &p.inbound {
            Some(key) => futures::future::Either::Left(write_inbound(&mut io, key, &p.write, view, &mut seen)),
            None => futures::future::Either::Right(write_one(&mut io, &p.write, view)),
        });
        let r = match (r, &p.finish) {
            (Ok(out), Some((job, worker))) => io.finish_job(*job, worker).map(|()| out),
            (r, _) => r,
        };
        // A database error leaves the transaction in an unknown state: abort the batch.
        if let Some(e) = io.failed.take() {
            return Err(e);
        }
        results.push(r);
    }
    let (audit, enqueued) = (std::mem::take(&mut io.audit), std::mem::take(&mut io.enqueued));
    drop(io);
    if !audit.is_empty() {
        append_chain(&tx, audit)?;
    }
    tx.commit()?;
    Ok((results, enqueued))
}

/// The writer's transaction as [`WriteTx`]. Its futures complete at once. A database error is
/// kept in `failed` as well as returned, so that the batch is aborted even when the shared
/// steps turn the error into a refused write.
struct SqliteTx<'c> {
    conn: &'c Connection,
    committed: &'c mut Committed,
    /// Audit entries of the events written so far, chained once before commit.
    audit: Vec<AuditDraft>,
    /// Kinds of the follow-up jobs written so far.
    enqueued: Vec<&'static str>,
    failed: Option<rusqlite::Error>,
}

impl SqliteTx<'_> {
    /// Notes a database error for the batch and turns it into the write's answer.
    fn check<T>(&mut self, r: rusqlite::Result<T>) -> Result<T, StoreError> {
        r.map_err(|e| {
            let answer = StoreError::Unavailable(format!("write failed: {e}"));
            self.failed.get_or_insert(e);
            answer
        })
    }

    /// Marks a job done in this transaction, if `worker` still holds its lease.
    fn finish_job(&mut self, id: i64, worker: &str) -> Result<(), StoreError> {
        let r = self
            .conn
            .prepare_cached(
                "UPDATE jobs SET status = 'done', lease_until = NULL, updated_at = ?3 \
                 WHERE id = ?1 AND locked_by = ?2 AND status = 'running'",
            )
            .and_then(|mut s| s.execute(params![id, worker, to_micros(Utc::now())]));
        self.check(r).map(drop)
    }

    fn read_order(&self, target: &Target) -> rusqlite::Result<Option<String>> {
        match target {
            Target::Id(id) => self
                .conn
                .prepare_cached("SELECT doc FROM orders WHERE id = ?1")?
                .query_row([id], |r| r.get(0))
                .optional(),
            Target::NaturalKey { source, external_id } => self
                .conn
                .prepare_cached("SELECT doc FROM orders WHERE source = ?1 AND external_id = ?2")?
                .query_row([source, external_id], |r| r.get(0))
                .optional(),
        }
    }

    fn insert_event(&self, ev: &dispatch_core::Event, data: &str) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO events (order_id, version, kind, at, actor, request_id, data) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                ev.order_id,
                ev.version as i64,
                ev.data.kind(),
                to_micros(ev.at),
                ev.actor,
                ev.request_id,
                data
            ])
            .map(drop)
    }

    /// Writes the projection. When no column that an index reads changed (a tracking event on
    /// a shipment under way, a note), only the row is rewritten: SQLite updates just the
    /// indexes whose columns a statement sets, and the full upsert sets all of them, so each
    /// such write would rewrite an entry in each of the table's dozen indexes — most of a
    /// tracking batch's pages and WAL frames (measured: dispatchd's CPU per tracking webhook
    /// fell from 160-177 to 115-149 µs; BENCHMARKS-carriers.md).
    fn upsert_order(&self, o: &Order, before: Option<&Order>) -> rusqlite::Result<()> {
        let to_text = |e: serde_json::Error| rusqlite::Error::ToSqlConversionFailure(Box::new(e));
        let doc = serde_json::to_string(o).map_err(to_text)?;
        let row = Indexed::of(o);
        if before.is_some_and(|b| Indexed::of(b) == row) {
            return self
                .conn
                .prepare_cached(ORDERS_UPDATE_UNINDEXED)?
                .execute(params![
                    o.id,
                    o.version as i64,
                    o.facts.channel,
                    o.facts.service_level.code(),
                    to_micros(o.updated_at),
                    doc
                ])
                .map(drop);
        }
        let holds = serde_json::to_string(row.hold_reasons).map_err(to_text)?;
        let c = &row.console;
        self.conn.prepare_cached(&ORDERS_UPSERT)?.execute(params![
            o.id,
            row.source,
            row.external_id,
            o.version as i64,
            row.state,
            row.warehouse,
            row.priority,
            holds,
            row.customer_id,
            o.facts.channel,
            o.facts.service_level.code(),
            row.latest_departure,
            row.created_at,
            to_micros(o.updated_at),
            row.state_since,
            doc,
            row.route_key,
            c.risk,
            c.released_at,
            c.released_on_time,
            c.dispatched_at,
            c.touched,
            c.expedite_requested,
            c.expedite_approved,
            row.tracking_number,
        ])?;
        Ok(())
    }

    fn insert_job(&self, f: &dispatch_core::effects::FollowUp, order_id: &str, at: i64) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO jobs (kind, order_id, dedupe_key, payload, run_at, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5) ON CONFLICT (dedupe_key) DO NOTHING",
            )?
            .execute(params![f.kind, order_id, f.dedupe_key, f.payload.to_string(), at])
            .map(drop)
    }
}

/// Rewrites an order's row when no indexed column changed (see [`Indexed`]).
const ORDERS_UPDATE_UNINDEXED: &str =
    "UPDATE orders SET version = ?2, channel = ?3, service_level = ?4, updated_at = ?5, doc = ?6 WHERE id = ?1";

/// [`crate::write::ORDERS_INSERT`] with one row of positional parameters.
static ORDERS_UPSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let values: Vec<String> = (1..=25).map(|i| format!("?{i}")).collect();
    format!("{}VALUES ({}){}", crate::write::ORDERS_INSERT, values.join(", "), crate::write::ORDERS_ON_CONFLICT)
});

impl WriteTx for SqliteTx<'_> {
    async fn idempotency(&mut self, scope: &str, key: &str) -> Result<Option<(String, String)>, StoreError> {
        let r = self
            .conn
            .prepare_cached("SELECT request_hash, response FROM idempotency_keys WHERE scope = ?1 AND key = ?2")
            .and_then(|mut s| s.query_row([scope, key], |r| Ok((r.get(0)?, r.get(1)?))).optional());
        self.check(r)
    }

    /// As last committed (taken out of the cache: the write puts its result in the batch
    /// view, which goes back to the cache on commit; a refused write just costs a read
    /// later), else from the database.
    async fn load(&mut self, target: &Target) -> Result<Option<Order>, StoreError> {
        let id = match target {
            Target::Id(id) => Some(id),
            Target::NaturalKey { source, external_id } => {
                self.committed.keys.get(&(source.clone(), external_id.clone()))
            }
        };
        if let Some(o) = id.cloned().and_then(|id| self.committed.orders.remove(&id)) {
            return Ok(Some(o));
        }
        let doc = self.read_order(target);
        self.check(doc)?.as_deref().map(order_from_doc).transpose()
    }

    async fn persist(&mut self, plan: Plan<'_>) -> Result<(), StoreError> {
        let mut r = Ok(());
        for ev in plan.events {
            let data = serde_json::to_string(&ev.data)?;
            self.audit.push(crate::security::event_draft(ev, plan.roles, &data));
            r = r.and_then(|()| self.insert_event(ev, &data));
        }
        if let Some(o) = plan.order {
            r = r.and_then(|()| self.upsert_order(o, plan.before));
            for f in plan.jobs {
                r = r.and_then(|()| self.insert_job(f, &o.id, to_micros(plan.at)));
                self.enqueued.push(f.kind);
            }
        }
        self.check(r)
    }

    async fn remember(
        &mut self,
        scope: &str,
        key: &str,
        hash: &str,
        response: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let r = self
            .conn
            .prepare_cached(
                "INSERT INTO idempotency_keys (scope, key, request_hash, response, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| s.execute(params![scope, key, hash, response, to_micros(at)]));
        self.check(r).map(drop)
    }

    async fn recorded(&mut self, key: &InboundKey) -> Result<bool, StoreError> {
        let r = self
            .conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM inbound_events WHERE source = ?1 AND event_id = ?2)")
            .and_then(|mut s| s.query_row(params![key.source, key.event_id], |r| r.get(0)));
        self.check(r)
    }

    async fn record(&mut self, key: &InboundKey, order_id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let r = self
            .conn
            .prepare_cached(
                "INSERT INTO inbound_events (source, event_id, order_id, kind, received_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| s.execute(params![key.source, key.event_id, order_id, key.kind, to_micros(at)]));
        self.check(r).map(drop)
    }
}

/// Appends the batch's audit entries after the chain's head, inside the batch's transaction.
fn append_chain(conn: &Connection, drafts: Vec<AuditDraft>) -> rusqlite::Result<()> {
    let head: (i64, String) = conn
        .prepare_cached("SELECT seq, hash FROM audit_head WHERE id = 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (entries, (seq, hash)) = dispatch_core::audit::chain(head, drafts);
    let mut insert = conn.prepare_cached(
        "INSERT INTO audit_log (seq, at, actor, roles, request_id, action, subject, before, after, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    for e in &entries {
        let roles =
            serde_json::to_string(&e.draft.roles).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        insert.execute(params![
            e.seq,
            to_micros(e.draft.at),
            e.draft.actor,
            roles,
            e.draft.request_id,
            e.draft.action,
            e.draft.subject,
            e.draft.before,
            e.draft.after,
            e.prev_hash,
            e.hash
        ])?;
    }
    conn.prepare_cached("UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1")?.execute(params![seq, hash])?;
    Ok(())
}

/// Wraps `f` as a writer [`Task`]: it runs in a savepoint of the writer's transaction (its
/// error undoes only its own statements), and its caller gets `f`'s value once the
/// transaction has committed.
pub(crate) fn task<T: Send + 'static>(
    f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
) -> (Task, tokio::sync::oneshot::Receiver<Result<T, StoreError>>) {
    let (reply, rx) = tokio::sync::oneshot::channel();
    let task: Task = Box::new(move |conn: &Connection| {
        let r = conn.execute_batch("SAVEPOINT task").and_then(|()| match f(conn) {
            Ok(v) => conn.execute_batch("RELEASE task").map(|()| v),
            Err(e) => {
                // Undo this task's statements only; the batch goes on.
                let _ = conn.execute_batch("ROLLBACK TO task; RELEASE task");
                Err(e)
            }
        });
        Box::new(move |failed: Option<&str>| {
            let answer = match (r, failed) {
                (Err(e), _) => Err(StoreError::Sqlite(e)),
                (Ok(_), Some(why)) => Err(StoreError::Unavailable(why.to_string())),
                (Ok(v), None) => Ok(v),
            };
            let _ = reply.send(answer);
        })
    });
    (task, rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_background_pass_waits_while_the_writer_checkpoints() {
        let last = LastCheckpoint::default();
        std::thread::sleep(Duration::from_millis(30));
        // Nothing for 30 ms: the writer is saturated, the background pass may run.
        assert!(!last.within(Duration::from_millis(10)));
        last.mark();
        assert!(last.within(CHECKPOINT_BACKGROUND));
    }

    /// The narrow update may set only columns no index reads, and every other column of
    /// `orders` must be one an index reads (so that it is in [`Indexed`], whose change sends
    /// the write through the full upsert). A new column or index must be placed on one side.
    #[tokio::test]
    async fn the_unindexed_update_sets_no_column_an_index_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("schema.db");
        crate::SqliteStore::open_path(&path).await.unwrap();
        let conn = Connection::open(&path).unwrap();
        let strings = |sql: &str| -> Vec<String> {
            let mut st = conn.prepare(sql).unwrap();
            st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
        };
        let mut indexed = HashSet::new();
        let columns = strings("SELECT name FROM pragma_table_info('orders')");
        for index in strings("SELECT name FROM pragma_index_list('orders')") {
            indexed.extend(strings(&format!("SELECT name FROM pragma_index_info('{index}')")));
            // A partial index also reads the columns of its WHERE clause.
            let sql = strings(&format!("SELECT coalesce(sql, '') FROM sqlite_master WHERE name = '{index}'")).concat();
            if let Some((_, filter)) = sql.split_once(" WHERE ") {
                indexed.extend(columns.iter().filter(|c| filter.contains(c.as_str())).cloned());
            }
        }
        let set = ORDERS_UPDATE_UNINDEXED.split(" SET ").nth(1).unwrap().split(" WHERE ").next().unwrap();
        let narrow: Vec<&str> = set.split(", ").map(|a| a.split(" = ").next().unwrap()).collect();
        assert_eq!(narrow.len(), 5);
        for c in &narrow {
            assert!(columns.iter().any(|n| n == c), "{c} is not a column of orders");
            assert!(!indexed.contains(*c), "an index reads {c}: the unindexed update must not set it");
        }
        for c in &columns {
            assert!(
                c == "id" || narrow.contains(&c.as_str()) || indexed.contains(c),
                "no index reads {c}: add it to ORDERS_UPDATE_UNINDEXED, or to Indexed if it is indexed"
            );
        }
    }
}
