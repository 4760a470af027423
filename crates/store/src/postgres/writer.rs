//! The PostgreSQL writer of one node: group commit like SQLite's, but several nodes write at
//! once, so each write locks what it reads (`FOR UPDATE`, and an advisory lock on the natural
//! key for orders that do not exist yet), and a batch that hits a deadlock or a lost race with
//! another node is rolled back and decided again (decisions are pure, so that is safe).

use chrono::{DateTime, Utc};
use dispatch_core::Order;
use sqlx::{Connection, PgConnection, Postgres, QueryBuilder};
use tokio::sync::{Notify, mpsc};

use crate::time::to_micros;
use crate::write::{BatchView, Msg, Pending, Plan, WriteTx, order_from_doc, write_one};
use crate::{StoreError, Target, WriteOutcome};

pub const JOBS_CHANNEL: &str = "dispatchd_jobs";
const ATTEMPTS: usize = 4;
/// Rows per multi-row statement (16 binds per order row stays far below PostgreSQL's 65,535).
const CHUNK: usize = 500;

pub(crate) async fn run(
    mut conn: PgConnection,
    mut rx: mpsc::Receiver<Msg>,
    max_batch: usize,
    jobs: std::sync::Arc<Notify>,
    follow_ups: dispatch_core::effects::FollowUpConfig,
    publish: crate::PublishEvents,
) {
    let mut batch: Vec<Pending> = Vec::with_capacity(max_batch);
    loop {
        let mut shutdown = false;
        match rx.recv().await {
            Some(Msg::Write(p)) => batch.push(*p),
            Some(Msg::Shutdown) | None => shutdown = true,
        }
        while !shutdown && batch.len() < max_batch {
            match rx.try_recv() {
                Ok(Msg::Write(p)) => batch.push(*p),
                Ok(Msg::Shutdown) => shutdown = true,
                Err(_) => break,
            }
        }
        if !batch.is_empty() && commit_batch(&mut conn, std::mem::take(&mut batch), follow_ups, publish).await {
            jobs.notify_waiters();
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
) -> Result<(Vec<Result<WriteOutcome, StoreError>>, bool), sqlx::Error> {
    let mut tx = conn.begin().await?;
    follow_ups.publish_events = match publish {
        crate::PublishEvents::Always => true,
        crate::PublishEvents::Never => false,
        crate::PublishEvents::WhileSubscribed => {
            sqlx::query_scalar::<_, bool>(crate::ENDPOINT_ACTIVE_SQL).fetch_one(&mut *tx).await?
        }
    };
    let mut view = BatchView::with_follow_ups(follow_ups);
    let mut io = PgTx { conn: &mut tx, enqueued: false, audit: Vec::new(), staged: Staged::default() };
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
    let enqueued = io.enqueued;
    let audit = std::mem::take(&mut io.audit);
    if !audit.is_empty() {
        // Last, so the chain head (locked until commit) is held as briefly as possible.
        super::security::append_chain(&mut tx, audit).await.map_err(|e| match e {
            StoreError::Db(e) => e,
            other => sqlx::Error::Protocol(other.to_string()),
        })?;
    }
    if enqueued {
        // Delivered to every node's listener when (and only if) the transaction commits.
        sqlx::query("SELECT pg_notify($1, '')").bind(JOBS_CHANNEL).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok((results, enqueued))
}

async fn commit_batch(
    conn: &mut PgConnection,
    batch: Vec<Pending>,
    follow_ups: dispatch_core::effects::FollowUpConfig,
    publish: crate::PublishEvents,
) -> bool {
    let mut last_error = None;
    for n in 0..ATTEMPTS {
        match attempt(conn, &batch, follow_ups, publish).await {
            Ok((results, enqueued)) => {
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
    false
}

/// An event from another system: applied and remembered together, or (when seen before)
/// answered with the order as it is, changing nothing.
async fn write_inbound(
    io: &mut PgTx<'_>,
    key: &crate::InboundKey,
    w: &crate::OrderWrite,
    view: &mut BatchView,
    seen: &mut std::collections::HashSet<(String, String)>,
) -> Result<WriteOutcome, StoreError> {
    let id = (key.source.clone(), key.event_id.clone());
    // Two nodes receiving the same event serialize here; the second then sees it recorded.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(31) || $2, 2))")
        .bind(&key.source)
        .bind(&key.event_id)
        .execute(&mut *io.conn)
        .await?;
    let recorded: Option<i32> = sqlx::query_scalar("SELECT 1 FROM inbound_events WHERE source = $1 AND event_id = $2")
        .bind(&key.source)
        .bind(&key.event_id)
        .fetch_optional(&mut *io.conn)
        .await?;
    if seen.contains(&id) || recorded.is_some() {
        let order = match view.order(&w.target) {
            Some(o) => o,
            None => io.load(&w.target).await?.ok_or(dispatch_core::DomainError::NotFound)?,
        };
        return Ok(WriteOutcome { order, created: false, appended: 0, replayed: true });
    }
    let outcome = write_one(io, w, view).await?;
    io.staged.inbound.push((
        key.source.clone(),
        key.event_id.clone(),
        outcome.order.id.clone(),
        key.kind.clone(),
        to_micros(w.meta.at),
    ));
    seen.insert(id);
    Ok(outcome)
}

struct PgTx<'c> {
    conn: &'c mut PgConnection,
    enqueued: bool,
    /// Audit entries of the events written so far, chained just before commit.
    audit: Vec<dispatch_core::audit::AuditDraft>,
    staged: Staged,
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
    jobs: Vec<(&'static str, String, String, String, i64)>,
    /// (scope, key, request_hash, response, at)
    idempotency: Vec<(String, String, String, String, i64)>,
    /// (source, event_id, order_id, kind, received_at)
    inbound: Vec<(String, String, String, String, i64)>,
}

impl Staged {
    async fn flush(self, conn: &mut PgConnection) -> Result<(), StoreError> {
        for chunk in self.events.chunks(CHUNK) {
            let mut b: QueryBuilder<Postgres> =
                QueryBuilder::new("INSERT INTO events (order_id, version, kind, at, actor, request_id, data) ");
            b.push_values(chunk, |mut r, (id, version, kind, at, actor, request_id, data)| {
                r.push_bind(id).push_bind(version).push_bind(*kind).push_bind(at);
                r.push_bind(actor).push_bind(request_id).push_bind(data);
            });
            b.build().execute(&mut *conn).await?;
        }
        for chunk in self.orders.chunks(CHUNK) {
            let mut rows = Vec::with_capacity(chunk.len());
            for o in chunk {
                rows.push((o, serde_json::to_string(&o.hold_reasons)?, serde_json::to_string(o)?));
            }
            let mut b: QueryBuilder<Postgres> = QueryBuilder::new(crate::write::ORDERS_INSERT);
            b.push_values(rows, |mut r, (o, holds, doc)| {
                r.push_bind(o.id.clone())
                    .push_bind(o.facts.source.clone())
                    .push_bind(o.facts.external_id.clone())
                    .push_bind(o.version as i64)
                    .push_bind(o.state.code())
                    .push_bind(o.facts.warehouse.clone())
                    .push_bind(o.priority)
                    .push_bind(holds)
                    .push_unseparated("::jsonb")
                    .push_bind(o.facts.customer.id.clone())
                    .push_bind(o.facts.channel.clone())
                    .push_bind(o.facts.service_level.code())
                    .push_bind(o.latest_departure.map(to_micros))
                    .push_bind(to_micros(o.created_at))
                    .push_bind(to_micros(o.updated_at))
                    .push_bind(to_micros(o.state_since))
                    .push_bind(doc)
                    .push_bind(dispatch_core::route::member_key(o));
                let c = crate::write::console_columns(o);
                r.push_bind(c.risk)
                    .push_bind(c.released_at)
                    .push_bind(c.released_on_time)
                    .push_bind(c.dispatched_at)
                    .push_bind(c.touched)
                    .push_bind(c.expedite_requested)
                    .push_bind(c.expedite_approved);
            });
            b.push(crate::write::ORDERS_ON_CONFLICT);
            b.build().execute(&mut *conn).await?;
        }
        for chunk in self.jobs.chunks(CHUNK) {
            let mut b: QueryBuilder<Postgres> = QueryBuilder::new(
                "INSERT INTO jobs (kind, order_id, dedupe_key, payload, run_at, created_at, updated_at) ",
            );
            b.push_values(chunk, |mut r, (kind, order_id, key, payload, at)| {
                r.push_bind(*kind).push_bind(order_id).push_bind(key).push_bind(payload);
                r.push_bind(at).push_bind(at).push_bind(at);
            });
            b.push(" ON CONFLICT (dedupe_key) DO NOTHING");
            b.build().execute(&mut *conn).await?;
        }
        for chunk in self.idempotency.chunks(CHUNK) {
            let mut b: QueryBuilder<Postgres> =
                QueryBuilder::new("INSERT INTO idempotency_keys (scope, key, request_hash, response, created_at) ");
            b.push_values(chunk, |mut r, (scope, key, hash, response, at)| {
                r.push_bind(scope).push_bind(key).push_bind(hash).push_bind(response).push_bind(at);
            });
            b.build().execute(&mut *conn).await?;
        }
        for chunk in self.inbound.chunks(CHUNK) {
            let mut b: QueryBuilder<Postgres> =
                QueryBuilder::new("INSERT INTO inbound_events (source, event_id, order_id, kind, received_at) ");
            b.push_values(chunk, |mut r, (source, event_id, order_id, kind, at)| {
                r.push_bind(source).push_bind(event_id).push_bind(order_id).push_bind(kind).push_bind(at);
            });
            b.build().execute(&mut *conn).await?;
        }
        Ok(())
    }
}

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
            self.staged.jobs.push((f.kind, o.id.clone(), f.dedupe_key.clone(), payload, to_micros(plan.at)));
            self.enqueued = true;
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
}
