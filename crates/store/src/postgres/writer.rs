//! The PostgreSQL writer of one node: group commit like SQLite's, but several nodes write at
//! once, so each write locks what it reads (`FOR UPDATE`, and an advisory lock on the natural
//! key for orders that do not exist yet), and a batch that hits a deadlock or a lost race with
//! another node is rolled back and decided again (decisions are pure, so that is safe).

use chrono::{DateTime, Utc};
use dispatch_core::Order;
use sqlx::{Connection, PgConnection};
use tokio::sync::{Notify, mpsc};

use crate::time::to_micros;
use crate::write::{BatchView, Msg, Pending, Plan, WriteTx, order_from_doc, write_one};
use crate::{StoreError, Target, WriteOutcome};

pub const JOBS_CHANNEL: &str = "dispatchd_jobs";
const ATTEMPTS: usize = 4;

pub(crate) async fn run(
    mut conn: PgConnection,
    mut rx: mpsc::Receiver<Msg>,
    max_batch: usize,
    jobs: std::sync::Arc<Notify>,
    follow_ups: dispatch_core::effects::FollowUpConfig,
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
        if !batch.is_empty() && commit_batch(&mut conn, std::mem::take(&mut batch), follow_ups).await {
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
    follow_ups: dispatch_core::effects::FollowUpConfig,
) -> Result<(Vec<Result<WriteOutcome, StoreError>>, bool), sqlx::Error> {
    let mut tx = conn.begin().await?;
    let mut view = BatchView::with_follow_ups(follow_ups);
    let mut io = PgTx { conn: &mut tx, enqueued: false, audit: Vec::new() };
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
) -> bool {
    let mut last_error = None;
    for n in 0..ATTEMPTS {
        match attempt(conn, &batch, follow_ups).await {
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
        let order = io.load(&w.target).await?.ok_or(dispatch_core::DomainError::NotFound)?;
        return Ok(WriteOutcome { order, created: false, appended: 0, replayed: true });
    }
    let outcome = write_one(io, w, view).await?;
    sqlx::query(
        "INSERT INTO inbound_events (source, event_id, order_id, kind, received_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&key.source)
    .bind(&key.event_id)
    .bind(&outcome.order.id)
    .bind(&key.kind)
    .bind(to_micros(w.meta.at))
    .execute(&mut *io.conn)
    .await?;
    seen.insert(id);
    Ok(outcome)
}

struct PgTx<'c> {
    conn: &'c mut PgConnection,
    enqueued: bool,
    /// Audit entries of the events written so far, chained just before commit.
    audit: Vec<dispatch_core::audit::AuditDraft>,
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
            sqlx::query(
                "INSERT INTO events (order_id, version, kind, at, actor, request_id, data) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&ev.order_id)
            .bind(ev.version as i64)
            .bind(ev.data.kind())
            .bind(to_micros(ev.at))
            .bind(&ev.actor)
            .bind(&ev.request_id)
            .bind(data)
            .execute(&mut *self.conn)
            .await?;
        }
        let Some(o) = plan.order else { return Ok(()) };
        sqlx::query(
            "INSERT INTO orders (id, source, external_id, version, state, warehouse, priority, hold_reasons, customer_id, \
             channel, service_level, latest_departure, created_at, updated_at, state_since, doc, route_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
             ON CONFLICT (id) DO UPDATE SET version = excluded.version, state = excluded.state, \
             warehouse = excluded.warehouse, priority = excluded.priority, hold_reasons = excluded.hold_reasons, \
             customer_id = excluded.customer_id, channel = excluded.channel, service_level = excluded.service_level, \
             latest_departure = excluded.latest_departure, updated_at = excluded.updated_at, \
             state_since = excluded.state_since, doc = excluded.doc, route_key = excluded.route_key",
        )
        .bind(&o.id)
        .bind(&o.facts.source)
        .bind(&o.facts.external_id)
        .bind(o.version as i64)
        .bind(o.state.code())
        .bind(&o.facts.warehouse)
        .bind(o.priority)
        .bind(serde_json::to_string(&o.hold_reasons)?)
        .bind(&o.facts.customer.id)
        .bind(&o.facts.channel)
        .bind(o.facts.service_level.code())
        .bind(o.latest_departure.map(to_micros))
        .bind(to_micros(o.created_at))
        .bind(to_micros(o.updated_at))
        .bind(to_micros(o.state_since))
        .bind(serde_json::to_string(o)?)
        .bind(dispatch_core::route::member_key(o))
        .execute(&mut *self.conn)
        .await?;
        for f in plan.jobs {
            sqlx::query(
                "INSERT INTO jobs (kind, order_id, dedupe_key, payload, run_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $5, $5) ON CONFLICT (dedupe_key) DO NOTHING",
            )
            .bind(f.kind)
            .bind(&o.id)
            .bind(&f.dedupe_key)
            .bind(f.payload.to_string())
            .bind(to_micros(plan.at))
            .execute(&mut *self.conn)
            .await?;
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
        sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, request_hash, response, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(scope)
        .bind(key)
        .bind(hash)
        .bind(response)
        .bind(to_micros(at))
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }
}
