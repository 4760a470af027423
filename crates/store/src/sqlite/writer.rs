//! The single writer: takes every queued write, runs them in one transaction (group commit),
//! and answers each only after that transaction committed.

use std::collections::HashMap;

use chrono::SubsecRound;
use dispatch_core::effects::follow_ups;
use dispatch_core::{DomainError, Event, Order, apply};
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use crate::time::to_micros;
use crate::{InboundKey, OrderWrite, StoreError, Target, WriteOutcome};

pub(crate) struct Pending {
    pub write: OrderWrite,
    /// An inbound event: skipped when already recorded, recorded with the events otherwise.
    pub inbound: Option<InboundKey>,
    /// A job (id, worker) to mark done with the write.
    pub finish: Option<(i64, String)>,
    pub reply: oneshot::Sender<Result<WriteOutcome, StoreError>>,
}

pub(crate) enum Msg {
    Write(Box<Pending>),
    Shutdown,
}

/// Orders and idempotency answers touched earlier in the same batch: later writes of the
/// batch must see them although they are not committed yet.
#[derive(Default)]
struct BatchView {
    orders: HashMap<String, Order>,
    keys: HashMap<(String, String), String>,
    idempotency: HashMap<(String, String), (String, String)>,
}

/// Orders as last committed by this writer. The writer is the only one that writes orders, so
/// what it committed is what the database holds: a hit saves a read and a JSON parse. Filled
/// only after a commit, so a failed batch leaves nothing behind.
#[derive(Default)]
struct Committed {
    orders: HashMap<String, Order>,
    keys: HashMap<(String, String), String>,
}

/// Most orders kept; past it the cache starts afresh (cheap, and hot orders come back at once).
const CACHE_ORDERS: usize = 20_000;

impl Committed {
    fn absorb(&mut self, view: BatchView) {
        if self.orders.len() + view.orders.len() > CACHE_ORDERS {
            self.orders.clear();
            self.keys.clear();
        }
        self.orders.extend(view.orders);
        self.keys.extend(view.keys);
    }
}

pub(crate) async fn run(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Msg>, max_batch: usize) {
    let mut batch: Vec<Pending> = Vec::with_capacity(max_batch);
    let mut committed = Committed::default();
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
        if !batch.is_empty() {
            commit_batch(&mut conn, std::mem::take(&mut batch), &mut committed).await;
        }
        if shutdown {
            let _ = conn.close().await;
            return;
        }
    }
}

async fn commit_batch(conn: &mut SqliteConnection, batch: Vec<Pending>, committed: &mut Committed) {
    let mut replies = Vec::with_capacity(batch.len());
    let mut view = BatchView::default();
    let seen: &Committed = committed;
    let result: Result<(), sqlx::Error> = async {
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let view = &mut view;
        for p in batch {
            let mut r = match p.inbound {
                Some(key) => write_inbound(&mut tx, key, p.write, view, seen).await,
                None => write_one(&mut tx, p.write, view, seen).await,
            };
            if let (Ok(_), Some((job, worker))) = (&r, &p.finish)
                && let Err(e) = finish_job(&mut tx, *job, worker).await
            {
                r = Err(e);
            }
            // A database error leaves the transaction in an unknown state: abort the batch.
            if let Err(StoreError::Db(e)) = r {
                let _ = p.reply.send(Err(StoreError::Corrupt(format!("write failed: {e}"))));
                return Err(e);
            }
            replies.push((p.reply, r));
        }
        tx.commit().await
    }
    .await;
    match result {
        Ok(()) => {
            committed.absorb(view);
            for (reply, r) in replies {
                let _ = reply.send(r);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "write batch failed; nothing of it was committed");
            for (reply, _) in replies {
                let _ = reply.send(Err(StoreError::Corrupt(format!("write batch failed, nothing was committed: {e}"))));
            }
        }
    }
}

async fn load(
    conn: &mut SqliteConnection,
    target: &Target,
    view: &BatchView,
    committed: &Committed,
) -> Result<Option<Order>, StoreError> {
    let id = match target {
        Target::Id(id) => Some(id.clone()),
        Target::NaturalKey { source, external_id } => {
            let k = (source.clone(), external_id.clone());
            view.keys.get(&k).or_else(|| committed.keys.get(&k)).cloned()
        }
    };
    if let Some(id) = &id
        && let Some(o) = view.orders.get(id).or_else(|| committed.orders.get(id))
    {
        return Ok(Some(o.clone()));
    }
    let doc: Option<String> = match target {
        Target::Id(id) => {
            sqlx::query_scalar("SELECT doc FROM orders WHERE id = ?1").bind(id).fetch_optional(&mut *conn).await?
        }
        Target::NaturalKey { source, external_id } => {
            sqlx::query_scalar("SELECT doc FROM orders WHERE source = ?1 AND external_id = ?2")
                .bind(source)
                .bind(external_id)
                .fetch_optional(&mut *conn)
                .await?
        }
    };
    doc.as_deref().map(super::order_from_doc).transpose()
}

fn new_order_id() -> String {
    format!("ord_{}", uuid::Uuid::now_v7().simple())
}

async fn finish_job(conn: &mut SqliteConnection, id: i64, worker: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE jobs SET status = 'done', lease_until = NULL, updated_at = ?3 \
         WHERE id = ?1 AND locked_by = ?2 AND status = 'running'",
    )
    .bind(id)
    .bind(worker)
    .bind(to_micros(chrono::Utc::now()))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn write_inbound(
    conn: &mut SqliteConnection,
    key: InboundKey,
    w: OrderWrite,
    view: &mut BatchView,
    committed: &Committed,
) -> Result<WriteOutcome, StoreError> {
    // Claim the event id first: no row inserted means it was seen (in this batch or before).
    let order_id = match &w.target {
        Target::Id(id) => Some(id.clone()),
        Target::NaturalKey { .. } => None,
    };
    let claimed = sqlx::query(
        "INSERT INTO inbound_events (source, event_id, order_id, kind, received_at) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (source, event_id) DO NOTHING",
    )
    .bind(&key.source)
    .bind(&key.event_id)
    .bind(&order_id)
    .bind(&key.kind)
    .bind(to_micros(w.meta.at))
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if !claimed {
        let order = load(conn, &w.target, view, committed).await?.ok_or(DomainError::NotFound)?;
        return Ok(WriteOutcome { order, created: false, appended: 0, replayed: true });
    }
    match write_one(conn, w, view, committed).await {
        Ok(outcome) => Ok(outcome),
        Err(e) => {
            // A refused decision wrote nothing but the claim: take it back.
            sqlx::query("DELETE FROM inbound_events WHERE source = ?1 AND event_id = ?2")
                .bind(&key.source)
                .bind(&key.event_id)
                .execute(&mut *conn)
                .await?;
            Err(e)
        }
    }
}

async fn write_one(
    conn: &mut SqliteConnection,
    w: OrderWrite,
    view: &mut BatchView,
    committed: &Committed,
) -> Result<WriteOutcome, StoreError> {
    if let Some(k) = &w.idempotency {
        let id = (k.scope.clone(), k.key.clone());
        let stored: Option<(String, String)> = match view.idempotency.get(&id) {
            Some(v) => Some(v.clone()),
            None => {
                sqlx::query_as("SELECT request_hash, response FROM idempotency_keys WHERE scope = ?1 AND key = ?2")
                    .bind(&k.scope)
                    .bind(&k.key)
                    .fetch_optional(&mut *conn)
                    .await?
            }
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

    let current = load(conn, &w.target, view, committed).await?;
    let events = (w.decide)(current.as_ref())?;
    let at = w.meta.at.trunc_subsecs(6);
    let created = current.is_none();
    let order_id = match (&current, &w.target) {
        (Some(o), _) => o.id.clone(),
        (None, Target::NaturalKey { .. }) => new_order_id(),
        (None, Target::Id(_)) => return Err(DomainError::NotFound.into()),
    };

    // Fold everything in memory first: a refused stream must not leave half its rows behind.
    let mut state = current.clone();
    let mut stored = Vec::with_capacity(events.len());
    for data in events {
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
        stored.push(ev);
    }
    for ev in &stored {
        sqlx::query(
            "INSERT INTO events (order_id, version, kind, at, actor, request_id, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(&ev.order_id)
        .bind(ev.version as i64)
        .bind(ev.data.kind())
        .bind(to_micros(at))
        .bind(&ev.actor)
        .bind(&ev.request_id)
        .bind(serde_json::to_string(&ev.data)?)
        .execute(&mut *conn)
        .await?;
    }
    let order = state.ok_or(DomainError::NotFound)?;

    if !stored.is_empty() {
        upsert_projection(conn, &order).await?;
        for f in follow_ups(current.as_ref(), &order) {
            sqlx::query(
                "INSERT INTO jobs (kind, order_id, dedupe_key, payload, run_at, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5) ON CONFLICT (dedupe_key) DO NOTHING",
            )
            .bind(f.kind)
            .bind(&order.id)
            .bind(&f.dedupe_key)
            .bind(f.payload.to_string())
            .bind(to_micros(at))
            .execute(&mut *conn)
            .await?;
        }
    }

    let outcome =
        WriteOutcome { order, created: created && !stored.is_empty(), appended: stored.len(), replayed: false };
    if let Some(k) = w.idempotency {
        let response = serde_json::to_string(&outcome)?;
        sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, request_hash, response, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(&k.scope)
        .bind(&k.key)
        .bind(&k.request_hash)
        .bind(&response)
        .bind(to_micros(at))
        .execute(&mut *conn)
        .await?;
        view.idempotency.insert((k.scope, k.key), (k.request_hash, response));
    }
    view.keys.insert((outcome.order.facts.source.clone(), outcome.order.facts.external_id.clone()), order_id.clone());
    view.orders.insert(order_id, outcome.order.clone());
    Ok(outcome)
}

async fn upsert_projection(conn: &mut SqliteConnection, o: &Order) -> Result<(), StoreError> {
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
    .execute(&mut *conn)
    .await?;
    Ok(())
}
