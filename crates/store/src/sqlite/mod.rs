//! The embedded SQLite store: one dedicated writer connection that groups concurrent writes
//! into one transaction, and a small pool for reads (WAL lets them run beside the writer).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dispatch_core::{Event, EventData, Order};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, QueryBuilder, Row, Sqlite};
use std::sync::Arc;

use crate::time::{from_micros, to_micros};
use crate::write::{Urgency, order_from_doc};
use crate::{
    DeadLetter, InboundKey, Job, JobStatus, LeaderLease, OrderCounts, OrderQuery, OrderSort, OrderWrite, Page,
    RawEvent, RunEnd, ScheduleRow, ScheduleRun, Store, StoreError, TokenRecord, WriteOutcome,
};

mod console;
mod intel;
mod ops;
mod outbound;
mod scan;
mod security;
mod writer;

/// How durable a commit is. `Full` survives power loss; `Normal` survives a crash of the
/// process (not of the machine) and is faster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    Full,
    Normal,
}

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub path: PathBuf,
    pub durability: Durability,
    pub read_connections: u32,
    /// Most writes grouped into one transaction.
    pub max_batch: usize,
    /// Optional follow-up jobs (integration write-backs) this deployment wants.
    pub follow_ups: dispatch_core::effects::FollowUpConfig,
    /// When changes are published; overrides `follow_ups.publish_events`.
    pub publish: crate::PublishEvents,
}

impl SqliteOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteOptions {
            path: path.into(),
            durability: Durability::Full,
            read_connections: 4,
            max_batch: 256,
            follow_ups: Default::default(),
            publish: Default::default(),
        }
    }
}

pub struct SqliteStore {
    pool: SqlitePool,
    jobs: Arc<crate::signals::JobSignals>,
    leaders: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    tracking: Arc<crate::tracking::TrackingCache>,
    writes: crate::write::WriteQueue,
    writer: tokio::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database and runs the embedded migrations.
    pub async fn open(opts: SqliteOptions) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::new()
            .filename(&opts.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match opts.durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-16000")
            // After a checkpoint rewinds the WAL, shrink its file back to 64 MiB at most.
            .pragma("journal_size_limit", "67108864")
            .log_statements(tracing::log::LevelFilter::Trace);
        let mut wconn = connect.connect().await?;
        sqlx::migrate!("./migrations/sqlite").run(&mut wconn).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(opts.read_connections.max(1))
            .min_connections(1)
            .connect_with(connect)
            .await?;
        // Checkpoints copy the WAL back into the database file and fsync it. The writer runs
        // them itself, small and often, between batches (see `writer::run`). Only when it is
        // saturated, and so checkpoints once a second at most, does this background pass copy
        // the bulk beside it, in PASSIVE mode, which never blocks a writer or a reader. At any
        // lower load a background pass only competes with the commits' fsyncs (p99 at 2,000
        // upserts/s, writer checkpoints every 25 ms: 12.1 and 60.4 ms with a pass every 500 ms,
        // 11.0, 12.3 and 31.5 ms without; BENCHMARKS.md).
        // (The writer's own connection has `wal_autocheckpoint = 0`: see `writer::connect`.)
        sqlx::Connection::close(wconn).await?;
        let checkpointed = Arc::new(writer::LastCheckpoint::default());
        let (checkpointer, last) = (pool.clone(), checkpointed.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(writer::CHECKPOINT_BACKGROUND);
            loop {
                tick.tick().await;
                if checkpointer.is_closed() {
                    return;
                }
                if last.within(writer::CHECKPOINT_BACKGROUND) {
                    continue;
                }
                // (The safety valve for a WAL past 1 GiB is the writer's: `writer::run`.)
                match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&checkpointer).await {
                    Ok(_) => {}
                    Err(_) if checkpointer.is_closed() => return,
                    Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; it is retried"),
                }
            }
        });
        let (tx, rx) = crate::write::queues();
        let jobs = Arc::new(crate::signals::JobSignals::default());
        let path = opts.path.clone();
        let conn = tokio::task::spawn_blocking(move || writer::connect(&path, opts.durability))
            .await
            .map_err(|e| StoreError::Unavailable(format!("opening the writer's connection: {e}")))??;
        let tracking = Arc::new(crate::tracking::TrackingCache::default());
        let config = writer::Config {
            checkpointed,
            tracking: tracking.clone(),
            max_batch: opts.max_batch,
            jobs: jobs.clone(),
            follow_ups: opts.follow_ups,
            publish: opts.publish,
        };
        let handle = writer::spawn(conn, rx, config)
            .map_err(|e| StoreError::Unavailable(format!("starting the writer thread: {e}")))?;
        Ok(SqliteStore {
            pool,
            jobs,
            leaders: Arc::default(),
            tracking,
            writes: tx,
            writer: tokio::sync::Mutex::new(Some(handle)),
        })
    }

    /// Runs `f` on the writer's connection, in its next transaction (see `writer::task`).
    /// For the store's own frequent writes outside orders (job claims and their ends, carrier
    /// attempts): under load the writer holds the write lock almost all the time, and a pool
    /// connection would wait for it in SQLite's busy handler, seconds at worst.
    async fn on_writer<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (task, answer) = writer::task(f);
        self.writes.task(task).await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Opens a database file for a short CLI task (token creation, migration).
    pub async fn open_path(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let mut o = SqliteOptions::new(path);
        o.read_connections = 1;
        Self::open(o).await
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

fn token_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<TokenRecord, StoreError> {
    let roles: String = r.try_get("roles")?;
    Ok(TokenRecord {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        prefix: r.try_get("prefix")?,
        secret_hash: r.try_get("secret_hash")?,
        roles: serde_json::from_str(&roles)?,
        created_at: from_micros(r.try_get("created_at")?),
        expires_at: r.try_get::<Option<i64>, _>("expires_at")?.map(from_micros),
        revoked_at: r.try_get::<Option<i64>, _>("revoked_at")?.map(from_micros),
        last_used_at: r.try_get::<Option<i64>, _>("last_used_at")?.map(from_micros),
        user_id: r.try_get("user_id")?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn execute(&self, write: OrderWrite) -> Result<WriteOutcome, StoreError> {
        self.writes.submit(Urgency::Request, write, None, None).await
    }

    async fn execute_background(&self, write: OrderWrite) -> Result<WriteOutcome, StoreError> {
        self.writes.submit(Urgency::Background, write, None, None).await
    }

    async fn order(&self, id: &str) -> Result<Option<Order>, StoreError> {
        let doc: Option<String> =
            sqlx::query_scalar("SELECT doc FROM orders WHERE id = ?1").bind(id).fetch_optional(&self.pool).await?;
        doc.as_deref().map(order_from_doc).transpose()
    }

    async fn order_by_key(&self, source: &str, external_id: &str) -> Result<Option<Order>, StoreError> {
        let doc: Option<String> = sqlx::query_scalar("SELECT doc FROM orders WHERE source = ?1 AND external_id = ?2")
            .bind(source)
            .bind(external_id)
            .fetch_optional(&self.pool)
            .await?;
        doc.as_deref().map(order_from_doc).transpose()
    }

    async fn list_orders(&self, q: &OrderQuery) -> Result<Page<Order>, StoreError> {
        let mut b: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT id, doc FROM orders WHERE 1=1");
        if !q.states.is_empty() {
            b.push(" AND state IN (");
            let mut sep = b.separated(", ");
            for s in &q.states {
                sep.push_bind(s.code());
            }
            b.push(")");
        }
        if let Some(w) = &q.warehouse {
            b.push(" AND warehouse = ").push_bind(w.clone());
        }
        if let Some(c) = &q.customer_id {
            b.push(" AND customer_id = ").push_bind(c.clone());
        }
        if let Some(r) = q.hold_reason {
            b.push(" AND EXISTS (SELECT 1 FROM json_each(orders.hold_reasons) WHERE value = ")
                .push_bind(r.code())
                .push(")");
        }
        if let Some(v) = &q.service_level {
            b.push(" AND service_level = ").push_bind(v.clone());
        }
        if let Some(v) = &q.channel {
            b.push(" AND channel = ").push_bind(v.clone());
        }
        if let Some(v) = &q.carrier {
            b.push(
                " AND COALESCE(json_extract(doc, '$.shipment.carrier'), json_extract(doc, '$.carrier_preference')) = ",
            )
            .push_bind(v.clone());
        }
        if let Some(band) = q.risk {
            let (lo, hi) = band.range();
            b.push(" AND late_departure_risk IS NOT NULL");
            if lo.is_finite() {
                b.push(" AND late_departure_risk >= ").push_bind(lo);
            }
            if hi.is_finite() {
                b.push(" AND late_departure_risk < ").push_bind(hi);
            }
        }
        if let Some(v) = &q.search {
            // Each alternative has its own index (primary key, orders_external_id, orders_customer).
            b.push(" AND (id = ").push_bind(v.clone());
            b.push(" OR external_id = ").push_bind(v.clone());
            b.push(" OR customer_id = ").push_bind(v.clone()).push(")");
        }
        if let Some(from) = q.departure_from {
            b.push(" AND latest_departure >= ").push_bind(to_micros(from));
        }
        if let Some(to) = q.departure_to {
            b.push(" AND latest_departure < ").push_bind(to_micros(to));
        }
        let limit = q.limit.clamp(1, 1000);
        match q.sort {
            OrderSort::Id => {
                if let Some(after) = &q.after_id {
                    b.push(" AND id > ").push_bind(after.clone());
                }
                b.push(" ORDER BY id");
            }
            OrderSort::Priority => {
                // Keyset over (priority DESC, latest_departure ASC, id ASC), the columns of the
                // orders_priority index; a missing latest departure sorts last.
                let ld = format!("COALESCE(latest_departure, {})", i64::MAX);
                if let Some(p) = &q.after_position {
                    b.push(" AND (priority < ").push_bind(p.priority);
                    b.push(" OR (priority = ").push_bind(p.priority);
                    b.push(format!(" AND ({ld} > ")).push_bind(p.latest_departure_us);
                    b.push(format!(" OR ({ld} = ")).push_bind(p.latest_departure_us);
                    b.push(" AND id > ").push_bind(p.id.clone());
                    b.push("))))");
                }
                b.push(format!(" ORDER BY priority DESC, {ld}, id"));
            }
        }
        b.push(" LIMIT ").push_bind(i64::from(limit) + 1);
        let rows = b.build().fetch_all(&self.pool).await?;
        let more = rows.len() > limit as usize;
        let mut items = Vec::with_capacity(rows.len().min(limit as usize));
        for r in rows.iter().take(limit as usize) {
            let doc: String = r.try_get("doc")?;
            items.push(order_from_doc(&doc)?);
        }
        let next_after = if more { items.last().map(|o| o.id.clone()) } else { None };
        Ok(Page { items, next_after })
    }

    async fn events(&self, order_id: &str) -> Result<Vec<Event>, StoreError> {
        let rows =
            sqlx::query("SELECT version, at, actor, request_id, data FROM events WHERE order_id = ?1 ORDER BY version")
                .bind(order_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                let data: String = r.try_get("data")?;
                Ok(Event {
                    order_id: order_id.to_string(),
                    version: r.try_get::<i64, _>("version")? as u64,
                    at: from_micros(r.try_get("at")?),
                    actor: r.try_get("actor")?,
                    request_id: r.try_get("request_id")?,
                    data: serde_json::from_str::<EventData>(&data)?,
                })
            })
            .collect()
    }

    async fn scan_decision_events(&self, after_seq: i64, limit: u32) -> Result<Vec<RawEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, order_id, kind, data FROM events WHERE seq > ?1 \
             AND kind IN ('order.received', 'order.updated', 'order.evaluated') ORDER BY seq LIMIT ?2",
        )
        .bind(after_seq)
        .bind(i64::from(limit.clamp(1, 100_000)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RawEvent {
                    seq: r.try_get("seq")?,
                    order_id: r.try_get("order_id")?,
                    kind: r.try_get("kind")?,
                    data: r.try_get("data")?,
                })
            })
            .collect()
    }

    async fn stream_decision_events(
        &self,
        after_seq: i64,
        page: u32,
        sink: tokio::sync::mpsc::Sender<Vec<RawEvent>>,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut locked = rt.block_on(conn.lock_handle())?;
            scan::decision_events(locked.as_raw_handle(), after_seq, page as usize, &sink)
        })
        .await
        .map_err(|_| StoreError::Unavailable("the event log reader stopped".into()))?
    }

    async fn route_members(&self, departing_from: DateTime<Utc>) -> Result<Vec<crate::RouteMember>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT route_key, source, external_id FROM orders \
             WHERE route_key IS NOT NULL AND latest_departure >= ?1",
        )
        .bind(crate::time::to_micros(departing_from))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn order_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM orders").fetch_one(&self.pool).await?)
    }

    async fn counts(&self) -> Result<OrderCounts, StoreError> {
        let by_state_warehouse =
            sqlx::query_as("SELECT state, warehouse, count(*) FROM orders GROUP BY state, warehouse")
                .fetch_all(&self.pool)
                .await?;
        let holds_by_reason = self.holds_by_reason().await?;
        Ok(OrderCounts { by_state_warehouse, holds_by_reason })
    }

    async fn board(&self, aged_before: DateTime<Utc>) -> Result<Vec<crate::BoardCell>, StoreError> {
        self.board_cells(aged_before).await
    }

    async fn kpis_since(&self, from: DateTime<Utc>) -> Result<dispatch_core::kpi::Kpis, StoreError> {
        self.kpi_fold(from).await
    }

    async fn insert_token(&self, t: &TokenRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_tokens (id, name, prefix, secret_hash, roles, created_at, expires_at, revoked_at, last_used_at, \
             user_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .bind(&t.id)
        .bind(&t.name)
        .bind(&t.prefix)
        .bind(&t.secret_hash)
        .bind(serde_json::to_string(&t.roles)?)
        .bind(to_micros(t.created_at))
        .bind(t.expires_at.map(to_micros))
        .bind(t.revoked_at.map(to_micros))
        .bind(t.last_used_at.map(to_micros))
        .bind(&t.user_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn token_by_prefix(&self, prefix: &str) -> Result<Option<TokenRecord>, StoreError> {
        let row =
            sqlx::query("SELECT * FROM api_tokens WHERE prefix = ?1").bind(prefix).fetch_optional(&self.pool).await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn touch_token(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let id = id.to_string();
        self.on_writer(move |conn| {
            conn.prepare_cached("UPDATE api_tokens SET last_used_at = ?2 WHERE id = ?1")?
                .execute(rusqlite::params![id, to_micros(at)])
        })
        .await
        .map(drop)
    }

    async fn claim_jobs(
        &self,
        worker: &str,
        kinds: &[&str],
        limit: u32,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Vec<Job>, StoreError> {
        if kinds.is_empty() {
            return Ok(vec![]);
        }
        let now_us = to_micros(now);
        let lease_until = to_micros(now + lease);
        // An idle poll must not take the write lock (it would queue behind, and hold up, the
        // writer): look first, read-only.
        // Two EXISTS, each a seek on `jobs_kind_due`, rather than one OR the planner may scan.
        let mut probe: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT ");
        for (i, (status, column)) in [("pending", "run_at <="), ("running", "lease_until <")].into_iter().enumerate() {
            if i > 0 {
                probe.push(" OR ");
            }
            probe.push("EXISTS (SELECT 1 FROM jobs WHERE kind IN (");
            let mut sep = probe.separated(", ");
            for k in kinds {
                sep.push_bind(k.to_string());
            }
            probe.push(format!(") AND status = '{status}' AND {column} ")).push_bind(now_us).push(")");
        }
        let due: bool = probe.build_query_scalar().fetch_one(&self.pool).await?;
        if !due {
            return Ok(vec![]);
        }
        // One statement, so the claim is atomic; PostgreSQL uses FOR UPDATE SKIP LOCKED for
        // the same effect across nodes. Run by the writer: under load it holds the write lock
        // almost all the time, and a pool connection would wait for it in SQLite's busy handler.
        let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
        let worker = worker.to_string();
        let rows = self
            .on_writer(move |conn| {
                let sql = claim_sql(kinds.len());
                let mut values: Vec<rusqlite::types::Value> =
                    vec![lease_until.into(), worker.into(), now_us.into(), i64::from(limit).into()];
                values.extend(kinds.into_iter().map(rusqlite::types::Value::from));
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt.query_map(rusqlite::params_from_iter(values), |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, i64>(6)?,
                    ))
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        let mut jobs = rows
            .into_iter()
            .map(|(id, kind, order_id, dedupe_key, payload, attempts, lease_until)| {
                Ok(Job {
                    id,
                    kind,
                    order_id,
                    dedupe_key,
                    payload: serde_json::from_str(&payload)?,
                    attempts,
                    lease_until: from_micros(lease_until),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        jobs.sort_by_key(|j| j.id);
        Ok(jobs)
    }

    async fn finish_job(
        &self,
        id: i64,
        worker: &str,
        status: JobStatus,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let (worker, error, now) = (worker.to_string(), error.map(str::to_string), to_micros(Utc::now()));
        let changed = self
            .on_writer(move |conn| {
                conn.prepare_cached(
                    "UPDATE jobs SET status = ?3, last_error = COALESCE(?4, last_error), lease_until = NULL, \
                     updated_at = ?5 WHERE id = ?1 AND locked_by = ?2 AND status = 'running'",
                )?
                .execute(rusqlite::params![id, worker, status.code(), error, now])
            })
            .await?;
        Ok(changed == 1)
    }

    async fn retry_job(&self, id: i64, worker: &str, run_at: DateTime<Utc>, error: &str) -> Result<bool, StoreError> {
        let (worker, error, now) = (worker.to_string(), error.to_string(), to_micros(Utc::now()));
        let changed = self
            .on_writer(move |conn| {
                conn.prepare_cached(
                    "UPDATE jobs SET status = 'pending', run_at = ?3, last_error = ?4, lease_until = NULL, \
                     locked_by = NULL, updated_at = ?5 WHERE id = ?1 AND locked_by = ?2 AND status = 'running'",
                )?
                .execute(rusqlite::params![id, worker, to_micros(run_at), error, now])
            })
            .await?;
        Ok(changed == 1)
    }

    async fn job_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(sqlx::query_as("SELECT kind, status, count(*) FROM jobs GROUP BY kind, status")
            .fetch_all(&self.pool)
            .await?)
    }

    async fn wait_for_jobs(&self, kinds: &[&str], timeout: Duration) {
        self.jobs.wait(kinds, timeout).await;
    }

    async fn try_lead(&self, name: &str) -> Result<Option<Box<dyn LeaderLease>>, StoreError> {
        // One process owns an SQLite database, so leadership is only contested in-process.
        let mut held = self.leaders.lock().unwrap_or_else(|p| p.into_inner());
        if !held.insert(name.to_string()) {
            return Ok(None);
        }
        Ok(Some(Box::new(LocalLease { name: name.to_string(), leaders: self.leaders.clone() })))
    }

    async fn ensure_schedule(
        &self,
        name: &str,
        cadence: &str,
        action: &str,
        first_run_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO schedules (name, cadence, action, next_run_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4) \
             ON CONFLICT (name) DO UPDATE SET cadence = excluded.cadence, action = excluded.action, \
             next_run_at = excluded.next_run_at, updated_at = excluded.updated_at \
             WHERE schedules.cadence <> excluded.cadence OR schedules.action <> excluded.action",
        )
        .bind(name)
        .bind(cadence)
        .bind(action)
        .bind(to_micros(first_run_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM schedules ORDER BY name").fetch_all(&self.pool).await?;
        rows.iter().map(crate::schedule_rows::schedule).collect()
    }

    async fn begin_run(
        &self,
        name: &str,
        scheduled_for: DateTime<Utc>,
        node: &str,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let claimed = sqlx::query(
            "UPDATE schedules SET running_since = ?3, running_node = ?4, updated_at = ?3 \
             WHERE name = ?1 AND enabled AND next_run_at = ?2 AND (running_since IS NULL OR running_since < ?5)",
        )
        .bind(name)
        .bind(to_micros(scheduled_for))
        .bind(to_micros(now))
        .bind(node)
        .bind(to_micros(stale_before))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed != 1 {
            return Ok(None);
        }
        // A run of this tick that died is taken over rather than run as a second tick.
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO schedule_runs (schedule, scheduled_for, node, started_at, outcome) VALUES (?1, ?2, ?3, ?4, 'running') \
             ON CONFLICT (schedule, scheduled_for) DO UPDATE SET node = excluded.node, started_at = excluded.started_at, \
             outcome = 'running', finished_at = NULL, error = NULL RETURNING id",
        )
        .bind(name)
        .bind(to_micros(scheduled_for))
        .bind(node)
        .bind(to_micros(now))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(id))
    }

    async fn end_run(&self, run_id: i64, name: &str, end: &RunEnd, now: DateTime<Utc>) -> Result<(), StoreError> {
        let outcome = if end.ok { "ok" } else { "failed" };
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("UPDATE schedule_runs SET finished_at = ?2, outcome = ?3, summary = ?4, error = ?5 WHERE id = ?1")
            .bind(run_id)
            .bind(to_micros(now))
            .bind(outcome)
            .bind(&end.summary)
            .bind(&end.error)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE schedules SET running_since = NULL, running_node = NULL, next_run_at = ?2, consecutive_failures = ?3, \
             last_outcome = ?4, last_error = ?5, updated_at = ?6 WHERE name = ?1",
        )
        .bind(name)
        .bind(to_micros(end.next_run_at))
        .bind(end.consecutive_failures as i32)
        .bind(outcome)
        .bind(&end.error)
        .bind(to_micros(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn schedule_runs(&self, name: &str, limit: u32) -> Result<Vec<ScheduleRun>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM schedule_runs WHERE schedule = ?1 ORDER BY started_at DESC, id DESC LIMIT ?2")
                .bind(name)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(crate::schedule_rows::run).collect()
    }

    async fn execute_inbound(&self, key: InboundKey, write: OrderWrite) -> Result<WriteOutcome, StoreError> {
        self.writes.submit(Urgency::Request, write, Some(key), None).await
    }

    async fn execute_finishing(
        &self,
        write: OrderWrite,
        job_id: i64,
        worker: &str,
    ) -> Result<WriteOutcome, StoreError> {
        self.writes.submit(Urgency::Request, write, None, Some((job_id, worker.to_string()))).await
    }

    async fn order_by_tracking(&self, tracking_number: &str) -> Result<Option<(String, String)>, StoreError> {
        if let Some(hit) = self.tracking.get(tracking_number) {
            return Ok(Some(hit));
        }
        // `IS NOT NULL` lets the planner use the partial index `orders_tracking_number`.
        let found: Option<(String, String)> = sqlx::query_as(
            "SELECT id, json_extract(doc, '$.shipment.carrier') FROM orders \
             WHERE tracking_number = ?1 AND tracking_number IS NOT NULL LIMIT 1",
        )
        .bind(tracking_number)
        .fetch_optional(&self.pool)
        .await?;
        self.tracking.keep(tracking_number, &found);
        Ok(found)
    }

    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = sqlx::query(DEAD_LETTERS).bind(i64::from(limit.clamp(1, 1000))).fetch_all(&self.pool).await?;
        rows.iter().map(crate::schedule_rows::dead_letter).collect()
    }

    async fn retry_dead_letter(&self, id: i64, now: DateTime<Utc>) -> Result<Option<DeadLetter>, StoreError> {
        let row = sqlx::query(
            "UPDATE jobs SET status = 'pending', attempts = 0, run_at = ?2, lease_until = NULL, locked_by = NULL, \
             updated_at = ?2 WHERE id = ?1 AND status = 'dead' \
             RETURNING id, kind, order_id, dedupe_key, payload, attempts, last_error, updated_at, created_at",
        )
        .bind(id)
        .bind(to_micros(now))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(crate::schedule_rows::dead_letter).transpose()
    }

    async fn sync_cursor(&self, source: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT position FROM sync_cursors WHERE source = ?1")
            .bind(source)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn set_sync_cursor(&self, source: &str, position: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sync_cursors (source, position, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (source) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
        )
        .bind(source)
        .bind(position)
        .bind(to_micros(at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn insert_history(&self, rows: &[crate::HistoryRow]) -> Result<u64, StoreError> {
        intel::insert_history(&self.pool, rows).await
    }

    async fn history(&self, from: Option<DateTime<Utc>>) -> Result<Vec<String>, StoreError> {
        intel::history(&self.pool, from).await
    }

    async fn history_count(&self) -> Result<i64, StoreError> {
        intel::history_count(&self.pool).await
    }

    async fn ops_counts(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        hold_age: chrono::Duration,
    ) -> Result<Vec<crate::OpsCount>, StoreError> {
        ops::ops_counts(&self.pool, from, to, hold_age).await
    }

    async fn record_carrier_attempt(&self, a: &crate::CarrierAttempt) -> Result<(), StoreError> {
        let a = a.clone();
        self.on_writer(move |conn| {
            conn.prepare_cached(crate::ops_sql::INSERT_ATTEMPT)?.execute(rusqlite::params![
                to_micros(a.at),
                a.carrier,
                a.warehouse,
                a.order_id,
                a.outcome
            ])
        })
        .await
        .map(drop)
    }

    async fn carrier_attempt_totals(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<crate::CarrierAttemptTotal>, StoreError> {
        ops::carrier_attempt_totals(&self.pool, from, to).await
    }

    async fn insert_model(&self, model: &crate::ModelRow, artifact: &[u8]) -> Result<(), StoreError> {
        intel::insert_model(&self.pool, model, artifact).await
    }

    async fn models(&self) -> Result<Vec<crate::ModelRow>, StoreError> {
        intel::models(&self.pool).await
    }

    async fn model_artifact(&self, version: &str) -> Result<Option<Vec<u8>>, StoreError> {
        intel::model_artifact(&self.pool, version).await
    }

    async fn activate_model(&self, version: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        intel::activate_model(&self.pool, version, now).await
    }

    async fn active_model(&self) -> Result<Option<(crate::ModelRow, Vec<u8>)>, StoreError> {
        intel::active_model(&self.pool).await
    }

    async fn enqueue_jobs(&self, jobs: &[crate::NewJob], now: DateTime<Utc>) -> Result<u64, StoreError> {
        let kinds: Vec<String> = jobs.iter().map(|j| j.kind.clone()).collect();
        let (jobs, now) = (jobs.to_vec(), to_micros(now));
        let n = self
            .on_writer(move |conn| {
                let mut insert = conn.prepare_cached(
                    "INSERT INTO jobs (kind, order_id, dedupe_key, payload, run_at, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) ON CONFLICT (dedupe_key) DO NOTHING",
                )?;
                let mut n = 0;
                for j in jobs {
                    let payload = j.payload.to_string();
                    n += insert.execute(rusqlite::params![
                        j.kind,
                        j.order_id,
                        j.dedupe_key,
                        payload,
                        to_micros(j.run_at),
                        now
                    ])?;
                }
                Ok(n as u64)
            })
            .await?;
        if n > 0 {
            self.jobs.notify(kinds.iter().map(String::as_str));
        }
        Ok(n)
    }
    async fn insert_webhook_endpoint(&self, e: &crate::WebhookEndpointRow) -> Result<(), StoreError> {
        outbound::insert_endpoint(&self.pool, e).await
    }
    async fn webhook_endpoints(&self) -> Result<Vec<crate::WebhookEndpointRow>, StoreError> {
        outbound::endpoints(&self.pool).await
    }
    async fn webhook_endpoint(&self, id: &str) -> Result<Option<crate::WebhookEndpointRow>, StoreError> {
        outbound::endpoint(&self.pool, id).await
    }
    async fn set_webhook_secrets(
        &self,
        id: &str,
        secrets: &[crate::EndpointSecret],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        outbound::set_secrets(&self.pool, id, secrets, now).await
    }
    async fn set_webhook_status(
        &self,
        id: &str,
        status: &str,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        outbound::set_status(&self.pool, id, status, reason, now).await
    }
    async fn delete_webhook_endpoint(&self, id: &str) -> Result<bool, StoreError> {
        outbound::delete_endpoint(&self.pool, id).await
    }
    async fn record_webhook_result(
        &self,
        id: &str,
        ok: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<crate::WebhookEndpointRow>, StoreError> {
        outbound::record_result(&self.pool, id, ok, now).await
    }
    async fn insert_notification(&self, n: &crate::NotificationRecord) -> Result<Option<i64>, StoreError> {
        outbound::insert_notification(&self.pool, n).await
    }
    async fn update_notification(
        &self,
        id: i64,
        status: &str,
        attempts: i64,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        outbound::update_notification(&self.pool, id, status, attempts, error, now).await
    }
    async fn notifications(&self, order_id: &str) -> Result<Vec<crate::NotificationRecord>, StoreError> {
        outbound::notifications(&self.pool, order_id).await
    }
    async fn last_notification_at(&self, order_id: &str, kind: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        outbound::last_notification_at(&self.pool, order_id, kind).await
    }
    async fn purge_operational(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        outbound::purge(&self.pool, before).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        // The shutdown message queues behind every write already sent, so those commit first.
        let handle = self.writer.lock().await.take();
        if let Some(h) = handle {
            self.writes.shutdown().await;
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        self.pool.close().await;
    }
}

impl FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "full" => Ok(Durability::Full),
            "normal" => Ok(Durability::Normal),
            _ => Err(format!("durability must be `full` or `normal`, not `{s}`")),
        }
    }
}

struct LocalLease {
    name: String,
    leaders: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl LeaderLease for LocalLease {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for LocalLease {
    fn drop(&mut self) {
        self.leaders.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.name);
    }
}

/// The claim of up to `?4` due jobs of `kinds` kinds (`?5`…) for worker `?2` until `?1`, at
/// `?3`: pending ones due and running ones whose lease expired, each a seek on
/// `jobs_kind_due` by kind and status. (With an `OR` of the two instead, SQLite's planner may
/// seek by kind alone and walk every finished job of the kind.)
fn claim_sql(kinds: usize) -> String {
    let list = (5..5 + kinds).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
    format!(
        "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_until = ?1, locked_by = ?2, \
         updated_at = ?3 WHERE id IN (SELECT id FROM (\
         SELECT id, run_at FROM jobs WHERE kind IN ({list}) AND status = 'pending' AND run_at <= ?3 \
         UNION ALL SELECT id, run_at FROM jobs WHERE kind IN ({list}) AND status = 'running' AND lease_until < ?3) \
         ORDER BY run_at, id LIMIT ?4) \
         RETURNING id, kind, order_id, dedupe_key, payload, attempts, lease_until"
    )
}

/// Dead letters, newest first (the partial index `jobs_dead` holds just these).
const DEAD_LETTERS: &str = "SELECT id, kind, order_id, dedupe_key, payload, attempts, last_error, updated_at, \
                            created_at FROM jobs WHERE status = 'dead' ORDER BY updated_at DESC, id DESC LIMIT ?1";

#[cfg(test)]
mod tests {
    use super::*;

    /// The jobs' indexes keep entries only for what these statements look up (migration 0140):
    /// each must still seek its index by status rather than read every job (of its kinds).
    #[tokio::test]
    async fn job_lookups_by_status_seek_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_path(dir.path().join("t.db")).await.unwrap();
        let claim = claim_sql(2);
        let statements = [
            (outbound::PURGE_DONE_JOBS, 1, "INDEX jobs_done"),
            (DEAD_LETTERS, 1, "INDEX jobs_dead"),
            // Pending and running jobs, each by kind and status.
            (claim.as_str(), 6, "INDEX jobs_kind_due (kind=? AND status=?"),
        ];
        for (sql, params, seek) in statements {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
            for _ in 0..params {
                query = query.bind("x");
            }
            let plan: Vec<String> =
                query.fetch_all(&store.pool).await.unwrap().iter().map(|r| r.get::<String, _>("detail")).collect();
            let seeks = plan.iter().filter(|d| d.contains(seek)).count();
            // (The claim's update then finds each chosen job by its id.)
            let reads = plan.iter().filter(|d| d.contains(" jobs") && !d.contains("PRIMARY KEY")).count();
            assert!(seeks > 0 && seeks == reads, "{sql}: {plan:?}");
        }
    }

    /// A writer task whose statement fails gets the error and undoes only its own statements:
    /// its first insert is gone, and a task beside it (most likely in the same batch) commits.
    #[tokio::test]
    async fn a_failing_writer_task_undoes_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(SqliteOptions::new(dir.path().join("t.db"))).await.unwrap();
        let insert = "INSERT INTO carrier_attempts (at, carrier, warehouse, order_id, outcome) \
                      VALUES (1, 'c', 'W', NULL, 'booked')";
        let (failed, kept) = tokio::join!(
            store.on_writer(move |c| {
                c.execute(insert, [])?;
                c.execute("INSERT INTO no_such_table VALUES (1)", [])
            }),
            store.on_writer(move |c| c.execute(insert, [])),
        );
        assert!(matches!(failed, Err(StoreError::Sqlite(_))), "{failed:?}");
        assert_eq!(kept.unwrap(), 1);
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM carrier_attempts").fetch_one(&store.pool).await.unwrap();
        assert_eq!(n, 1, "the failed task's own insert is undone, the other task's kept");
        store.close().await;
    }
}
