//! The single SQLite writer: takes every queued write, runs them in one `BEGIN IMMEDIATE`
//! transaction (group commit), and answers each only after that transaction committed.

use chrono::{DateTime, Utc};
use dispatch_core::Order;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{Notify, mpsc};

use crate::time::to_micros;
use crate::write::{BatchView, Msg, Pending, Plan, WriteTx, order_from_doc, write_one};
use crate::{StoreError, Target};

pub(crate) async fn run(
    mut conn: SqliteConnection,
    mut rx: mpsc::Receiver<Msg>,
    max_batch: usize,
    jobs: std::sync::Arc<Notify>,
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
        if !batch.is_empty() && commit_batch(&mut conn, std::mem::take(&mut batch)).await {
            jobs.notify_waiters();
        }
        if shutdown {
            let _ = conn.close().await;
            return;
        }
    }
}

/// Commits one batch and answers its callers; `true` when follow-up jobs were enqueued.
async fn commit_batch(conn: &mut SqliteConnection, batch: Vec<Pending>) -> bool {
    let mut replies = Vec::with_capacity(batch.len());
    let mut enqueued = false;
    let result: Result<(), sqlx::Error> = async {
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let mut view = BatchView::default();
        let mut io = SqliteTx { conn: &mut tx, enqueued: false };
        for p in batch {
            let r = write_one(&mut io, &p.write, &mut view).await;
            // A database error leaves the transaction in an unknown state: abort the batch.
            if let Err(StoreError::Db(e)) = r {
                let _ = p.reply.send(Err(StoreError::Unavailable(format!("write failed: {e}"))));
                return Err(e);
            }
            replies.push((p.reply, r));
        }
        enqueued = io.enqueued;
        tx.commit().await
    }
    .await;
    match result {
        Ok(()) => {
            for (reply, r) in replies {
                let _ = reply.send(r);
            }
            enqueued
        }
        Err(e) => {
            tracing::error!(error = %e, "write batch failed; nothing of it was committed");
            for (reply, _) in replies {
                let _ =
                    reply.send(Err(StoreError::Unavailable(format!("write batch failed, nothing was committed: {e}"))));
            }
            false
        }
    }
}

struct SqliteTx<'c> {
    conn: &'c mut SqliteConnection,
    enqueued: bool,
}

impl WriteTx for SqliteTx<'_> {
    async fn idempotency(&mut self, scope: &str, key: &str) -> Result<Option<(String, String)>, StoreError> {
        Ok(sqlx::query_as("SELECT request_hash, response FROM idempotency_keys WHERE scope = ?1 AND key = ?2")
            .bind(scope)
            .bind(key)
            .fetch_optional(&mut *self.conn)
            .await?)
    }

    async fn load(&mut self, target: &Target) -> Result<Option<Order>, StoreError> {
        // SQLite has one writer, so nothing else can change the row before we commit.
        let doc: Option<String> = match target {
            Target::Id(id) => {
                sqlx::query_scalar("SELECT doc FROM orders WHERE id = ?1")
                    .bind(id)
                    .fetch_optional(&mut *self.conn)
                    .await?
            }
            Target::NaturalKey { source, external_id } => {
                sqlx::query_scalar("SELECT doc FROM orders WHERE source = ?1 AND external_id = ?2")
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
            sqlx::query(
                "INSERT INTO events (order_id, version, kind, at, actor, request_id, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .bind(&ev.order_id)
            .bind(ev.version as i64)
            .bind(ev.data.kind())
            .bind(to_micros(ev.at))
            .bind(&ev.actor)
            .bind(&ev.request_id)
            .bind(serde_json::to_string(&ev.data)?)
            .execute(&mut *self.conn)
            .await?;
        }
        let Some(o) = plan.order else { return Ok(()) };
        sqlx::query(
            "INSERT INTO orders (id, source, external_id, version, state, warehouse, priority, hold_reasons, customer_id, \
             channel, service_level, latest_departure, created_at, updated_at, state_since, doc) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) \
             ON CONFLICT (id) DO UPDATE SET version = excluded.version, state = excluded.state, \
             warehouse = excluded.warehouse, priority = excluded.priority, hold_reasons = excluded.hold_reasons, \
             customer_id = excluded.customer_id, channel = excluded.channel, service_level = excluded.service_level, \
             latest_departure = excluded.latest_departure, updated_at = excluded.updated_at, \
             state_since = excluded.state_since, doc = excluded.doc",
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
        .execute(&mut *self.conn)
        .await?;
        for f in plan.jobs {
            sqlx::query(
                "INSERT INTO jobs (kind, order_id, dedupe_key, payload, run_at, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5) ON CONFLICT (dedupe_key) DO NOTHING",
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
            "INSERT INTO idempotency_keys (scope, key, request_hash, response, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
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
