//! The single writer: takes every queued write, runs them in one transaction (group commit),
//! and answers each only after that transaction committed.
//!
//! A batch is decided in memory first: each write loads its order (from the batch, from the
//! orders this writer committed before, or from the database), runs its pure decision, folds
//! the events and *stages* the rows it needs. The staged rows of the whole batch are then
//! written with a few multi-row statements and committed once. Round trips to SQLite's worker
//! thread, not SQL, are what cost on this path, so a batch of hundreds of writes costs about as
//! many statements as one write.

use std::collections::{HashMap, HashSet};

use chrono::SubsecRound;
use dispatch_core::effects::follow_ups;
use dispatch_core::{DomainError, Event, Order, apply};
use sqlx::{Connection, QueryBuilder, Sqlite, SqliteConnection};
use tokio::sync::Notify;

use crate::write::{Pending, Queues};

use crate::time::to_micros;
use crate::{InboundKey, OrderWrite, StoreError, Target, WriteOutcome};

/// What earlier writes of the same batch did: later writes must see it although it is not
/// committed yet.
#[derive(Default)]
struct BatchView {
    orders: HashMap<String, Order>,
    keys: HashMap<(String, String), String>,
    idempotency: HashMap<(String, String), (String, String)>,
    /// Natural keys and idempotency keys the batch's prefetch looked up and did not find: a
    /// write about one of them needs no read of its own (the writer is the only one writing).
    absent_keys: HashSet<(String, String)>,
    absent_idempotency: HashSet<(String, String)>,
    /// Inbound event ids recorded before this batch, or by an earlier write of it.
    inbound_seen: HashSet<(String, String)>,
    follow_ups: dispatch_core::effects::FollowUpConfig,
}

/// Rows the batch will write, in order.
#[derive(Default)]
struct Staged {
    events: Vec<Event>,
    /// The roles each event was written with (same positions as `events`), for its audit entry.
    roles: Vec<Vec<String>>,
    /// Orders whose projection changed (an order written twice in a batch is upserted once,
    /// with its latest state from the batch view).
    orders: Vec<String>,
    order_set: HashSet<String>,
    jobs: Vec<(&'static str, String, String, String, i64)>,
    idempotency: Vec<(String, String, String, String, i64)>,
    inbound: Vec<(String, String, Option<String>, String, i64)>,
    finish: Vec<(i64, String)>,
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

/// Rows per multi-row statement (well under SQLite's limit on bound parameters).
const CHUNK: usize = 64;

impl Committed {
    fn absorb(&mut self, view: BatchView) {
        self.orders.extend(view.orders);
        self.keys.extend(view.keys);
        self.trim();
    }

    fn trim(&mut self) {
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

    /// Reads what the batch's writes will look up and this cache does not hold — orders by id
    /// and by natural key, and stored idempotency answers — with one query per kind (per chunk)
    /// instead of a round trip per write. What was looked up and not found goes into the
    /// batch view as absent.
    async fn prefetch(
        &mut self,
        conn: &mut SqliteConnection,
        batch: &[Pending],
        view: &mut BatchView,
    ) -> Result<(), StoreError> {
        let mut ids = Vec::new();
        let mut keys = HashSet::new();
        let mut idempotency = HashSet::new();
        for p in batch {
            match &p.write.target {
                Target::Id(id) if !self.orders.contains_key(id) => ids.push(id.clone()),
                Target::NaturalKey { source, external_id } => {
                    let k = (source.clone(), external_id.clone());
                    match self.keys.get(&k) {
                        Some(id) if !self.orders.contains_key(id) => ids.push(id.clone()),
                        Some(_) => {}
                        None => {
                            keys.insert(k);
                        }
                    }
                }
                Target::Id(_) => {}
            }
            if let Some(k) = &p.write.idempotency {
                idempotency.insert((k.scope.clone(), k.key.clone()));
            }
        }
        ids.sort();
        ids.dedup();
        for chunk in ids.chunks(CHUNK * 4) {
            let mut b: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT doc FROM orders WHERE id IN (");
            let mut sep = b.separated(", ");
            for id in chunk {
                sep.push_bind(id.clone());
            }
            b.push(")");
            for doc in b.build_query_scalar::<String>().fetch_all(&mut *conn).await? {
                let o = super::order_from_doc(&doc)?;
                self.orders.insert(o.id.clone(), o);
            }
        }
        let keys: Vec<(String, String)> = keys.into_iter().collect();
        for chunk in keys.chunks(CHUNK) {
            let mut b: QueryBuilder<Sqlite> =
                QueryBuilder::new("SELECT doc FROM orders WHERE (source, external_id) IN (VALUES ");
            push_pairs(&mut b, chunk);
            for doc in b.build_query_scalar::<String>().fetch_all(&mut *conn).await? {
                let o = super::order_from_doc(&doc)?;
                self.keys.insert((o.facts.source.clone(), o.facts.external_id.clone()), o.id.clone());
                self.orders.insert(o.id.clone(), o);
            }
        }
        view.absent_keys.extend(keys.into_iter().filter(|k| !self.keys.contains_key(k)));
        let idempotency: Vec<(String, String)> = idempotency.into_iter().collect();
        for chunk in idempotency.chunks(CHUNK) {
            let mut b: QueryBuilder<Sqlite> = QueryBuilder::new(
                "SELECT scope, key, request_hash, response FROM idempotency_keys WHERE (scope, key) IN (VALUES ",
            );
            push_pairs(&mut b, chunk);
            let rows: Vec<(String, String, String, String)> = b.build_query_as().fetch_all(&mut *conn).await?;
            for (scope, key, hash, response) in rows {
                view.idempotency.insert((scope, key), (hash, response));
            }
        }
        view.absent_idempotency.extend(idempotency.into_iter().filter(|k| !view.idempotency.contains_key(k)));
        Ok(())
    }
}

/// Pushes `(a, b), (c, d), …)` — the rest of a `… IN (VALUES ` list.
fn push_pairs(b: &mut QueryBuilder<Sqlite>, pairs: &[(String, String)]) {
    let mut sep = b.separated(", ");
    for (x, y) in pairs {
        sep.push("(").push_bind_unseparated(x.clone()).push_unseparated(", ");
        sep.push_bind_unseparated(y.clone()).push_unseparated(")");
    }
    b.push(")");
}

/// How often the writer checkpoints when its queue is empty, and at the latest when it is not.
const CHECKPOINT_IDLE: std::time::Duration = std::time::Duration::from_millis(100);
const CHECKPOINT_BUSY: std::time::Duration = std::time::Duration::from_secs(1);

pub(crate) async fn run(
    mut conn: SqliteConnection,
    mut queues: Queues,
    max_batch: usize,
    jobs: std::sync::Arc<Notify>,
    follow_ups: dispatch_core::effects::FollowUpConfig,
    publish: crate::PublishEvents,
) {
    let mut batch: Vec<Pending> = Vec::with_capacity(max_batch);
    let mut committed = Committed::default();
    let mut last_checkpoint = std::time::Instant::now();
    loop {
        let shutdown = queues.next_batch(max_batch, &mut batch).await;
        if !batch.is_empty() {
            let (size, started) = (batch.len(), std::time::Instant::now());
            let enqueued =
                commit_batch(&mut conn, std::mem::take(&mut batch), &mut committed, follow_ups, publish).await;
            crate::write::observe_batch("sqlite", size, started.elapsed());
            if enqueued {
                // Follow-up jobs were enqueued: wake idle workers now rather than at their next poll.
                jobs.notify_waiters();
            }
        }
        // Keep the WAL short. The background checkpointer copies pages while writes go on, but
        // it can never finish while new frames keep arriving, and the WAL only restarts from
        // its beginning once a checkpoint has copied everything. Here, between batches, no frame
        // can arrive: the little left to copy is copied and the next commit rewinds the WAL.
        // In a pause of the queue that costs nobody; under saturation once a second at most.
        let since = last_checkpoint.elapsed();
        if !shutdown && (since >= CHECKPOINT_IDLE && queues.is_empty() || since >= CHECKPOINT_BUSY) {
            let started = std::time::Instant::now();
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&mut conn).await {
                tracing::warn!(error = %e, "writer's WAL checkpoint failed; it is retried");
            }
            crate::write::observe_checkpoint(started.elapsed());
            last_checkpoint = std::time::Instant::now();
        }
        if shutdown {
            let _ = conn.close().await;
            return;
        }
    }
}

/// Commits one batch and answers its callers; `true` when it enqueued follow-up jobs.
async fn commit_batch(
    conn: &mut SqliteConnection,
    batch: Vec<Pending>,
    committed: &mut Committed,
    follow_ups: dispatch_core::effects::FollowUpConfig,
    publish: crate::PublishEvents,
) -> bool {
    let mut replies = Vec::with_capacity(batch.len());
    let mut view = BatchView { follow_ups, ..BatchView::default() };
    let mut enqueued = false;
    let seen: &mut Committed = committed;
    let result: Result<(), sqlx::Error> = async {
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let view = &mut view;
        view.follow_ups.publish_events = match publish {
            crate::PublishEvents::Always => true,
            crate::PublishEvents::Never => false,
            crate::PublishEvents::WhileSubscribed => {
                sqlx::query_scalar::<_, bool>(crate::ENDPOINT_ACTIVE_SQL).fetch_one(&mut *tx).await?
            }
        };
        let mut staged = Staged::default();
        if let Err(e) = seen.prefetch(&mut tx, &batch, view).await {
            // Harmless: each write then reads what it needs itself.
            view.absent_keys.clear();
            view.absent_idempotency.clear();
            tracing::warn!(error = %e, "could not prefetch the batch's orders; reading them one by one");
        }
        let keys: Vec<&InboundKey> = batch.iter().filter_map(|p| p.inbound.as_ref()).collect();
        match inbound_seen(&mut tx, &keys).await {
            Ok(s) => view.inbound_seen = s,
            Err(e) => return Err(e),
        }
        for p in batch {
            let r = match p.inbound {
                Some(key) => write_inbound(&mut tx, key, p.write, view, seen, &mut staged).await,
                None => write_one(&mut tx, p.write, view, seen, &mut staged).await,
            };
            if r.is_ok()
                && let Some(f) = p.finish
            {
                staged.finish.push(f);
            }
            // A database error leaves the transaction in an unknown state: abort the batch.
            if let Err(StoreError::Db(e)) = r {
                let _ = p.reply.send(Err(StoreError::Corrupt(format!("write failed: {e}"))));
                return Err(e);
            }
            replies.push((p.reply, r));
        }
        if let Err(e) = flush(&mut tx, &staged, view).await {
            return Err(match e {
                StoreError::Db(e) => e,
                other => sqlx::Error::Protocol(other.to_string()),
            });
        }
        enqueued = !staged.jobs.is_empty();
        tx.commit().await
    }
    .await;
    match result {
        Ok(()) => {
            committed.absorb(view);
            for (reply, r) in replies {
                let _ = reply.send(r);
            }
            enqueued
        }
        Err(e) => {
            tracing::error!(error = %e, "write batch failed; nothing of it was committed");
            // The cache may be what was wrong (another process wrote the same database, a
            // version clashed): start from the database again.
            committed.orders.clear();
            committed.keys.clear();
            for (reply, _) in replies {
                let _ =
                    reply.send(Err(StoreError::Unavailable(format!("write batch failed, nothing was committed: {e}"))));
            }
            false
        }
    }
}

/// Which of these inbound event ids were recorded before (one query for the batch).
async fn inbound_seen(
    conn: &mut SqliteConnection,
    keys: &[&InboundKey],
) -> Result<HashSet<(String, String)>, sqlx::Error> {
    let mut seen = HashSet::new();
    for chunk in keys.chunks(CHUNK) {
        let mut b: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT source, event_id FROM inbound_events WHERE (source, event_id) IN (VALUES ");
        let pairs: Vec<(String, String)> = chunk.iter().map(|k| (k.source.clone(), k.event_id.clone())).collect();
        push_pairs(&mut b, &pairs);
        let rows: Vec<(String, String)> = b.build_query_as().fetch_all(&mut *conn).await?;
        seen.extend(rows);
    }
    Ok(seen)
}

/// Writes everything the batch staged, a few statements per kind of row.
async fn flush(conn: &mut SqliteConnection, s: &Staged, view: &BatchView) -> Result<(), StoreError> {
    let mut audit = Vec::with_capacity(s.events.len());
    for (chunk, roles) in s.events.chunks(CHUNK).zip(s.roles.chunks(CHUNK)) {
        let mut b: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO events (order_id, version, kind, at, actor, request_id, data) ");
        let rows = chunk
            .iter()
            .map(|ev| serde_json::to_string(&ev.data).map(|data| (ev, data)))
            .collect::<Result<Vec<_>, _>>()?;
        for ((ev, data), roles) in rows.iter().zip(roles) {
            audit.push(crate::security::event_draft(ev, roles, data));
        }
        b.push_values(rows, |mut r, (ev, data)| {
            r.push_bind(ev.order_id.clone())
                .push_bind(ev.version as i64)
                .push_bind(ev.data.kind())
                .push_bind(to_micros(ev.at))
                .push_bind(ev.actor.clone())
                .push_bind(ev.request_id.clone())
                .push_bind(data);
        });
        b.build().execute(&mut *conn).await?;
    }
    let projections: Vec<&Order> = s.orders.iter().filter_map(|id| view.orders.get(id)).collect();
    for chunk in projections.chunks(CHUNK) {
        let mut rows = Vec::with_capacity(chunk.len());
        for o in chunk {
            rows.push((
                *o,
                serde_json::to_string(&o.hold_reasons)?,
                serde_json::to_string(o)?,
                dispatch_core::route::member_key(o),
                crate::write::console_columns(o),
            ));
        }
        let mut b: QueryBuilder<Sqlite> = QueryBuilder::new(crate::write::ORDERS_INSERT);
        b.push_values(rows, |mut r, (o, holds, doc, route_key, c)| {
            r.push_bind(o.id.clone())
                .push_bind(o.facts.source.clone())
                .push_bind(o.facts.external_id.clone())
                .push_bind(o.version as i64)
                .push_bind(o.state.code())
                .push_bind(o.facts.warehouse.clone())
                .push_bind(o.priority)
                .push_bind(holds)
                .push_bind(o.facts.customer.id.clone())
                .push_bind(o.facts.channel.clone())
                .push_bind(o.facts.service_level.code())
                .push_bind(o.latest_departure.map(to_micros))
                .push_bind(to_micros(o.created_at))
                .push_bind(to_micros(o.updated_at))
                .push_bind(to_micros(o.state_since))
                .push_bind(doc)
                .push_bind(route_key)
                .push_bind(c.risk)
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
    for chunk in s.jobs.chunks(CHUNK) {
        let mut b: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO jobs (kind, order_id, dedupe_key, payload, run_at, created_at, updated_at) ",
        );
        b.push_values(chunk, |mut r, (kind, order_id, key, payload, at)| {
            r.push_bind(*kind)
                .push_bind(order_id.clone())
                .push_bind(key.clone())
                .push_bind(payload.clone())
                .push_bind(*at)
                .push_bind(*at)
                .push_bind(*at);
        });
        b.push(" ON CONFLICT (dedupe_key) DO NOTHING");
        b.build().execute(&mut *conn).await?;
    }
    for chunk in s.idempotency.chunks(CHUNK) {
        let mut b: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO idempotency_keys (scope, key, request_hash, response, created_at) ");
        b.push_values(chunk, |mut r, (scope, key, hash, response, at)| {
            r.push_bind(scope.clone())
                .push_bind(key.clone())
                .push_bind(hash.clone())
                .push_bind(response.clone())
                .push_bind(*at);
        });
        b.build().execute(&mut *conn).await?;
    }
    for chunk in s.inbound.chunks(CHUNK) {
        let mut b: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO inbound_events (source, event_id, order_id, kind, received_at) ");
        b.push_values(chunk, |mut r, (source, event_id, order_id, kind, at)| {
            r.push_bind(source.clone())
                .push_bind(event_id.clone())
                .push_bind(order_id.clone())
                .push_bind(kind.clone())
                .push_bind(*at);
        });
        b.build().execute(&mut *conn).await?;
    }
    if !audit.is_empty() {
        super::security::append_chain(conn, audit).await?;
    }
    let now = to_micros(chrono::Utc::now());
    for chunk in s.finish.chunks(CHUNK) {
        let mut b: QueryBuilder<Sqlite> =
            QueryBuilder::new("UPDATE jobs SET status = 'done', lease_until = NULL, updated_at = ");
        b.push_bind(now).push(" WHERE status = 'running' AND (id, locked_by) IN (VALUES ");
        let mut sep = b.separated(", ");
        for (id, worker) in chunk {
            sep.push("(").push_bind_unseparated(*id).push_unseparated(", ");
            sep.push_bind_unseparated(worker.clone()).push_unseparated(")");
        }
        b.push(")");
        b.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// The order a write is about: as this batch left it, else as last committed (taken out of
/// the cache: the write puts its result in the batch view, which goes back to the cache on
/// commit; a refused write just costs a read later), else from the database.
async fn load(
    conn: &mut SqliteConnection,
    target: &Target,
    view: &BatchView,
    committed: &mut Committed,
) -> Result<Option<Order>, StoreError> {
    let id = match target {
        Target::Id(id) => Some(id.clone()),
        Target::NaturalKey { source, external_id } => {
            let k = (source.clone(), external_id.clone());
            view.keys.get(&k).or_else(|| committed.keys.get(&k)).cloned()
        }
    };
    if let Some(id) = &id {
        if let Some(o) = view.orders.get(id) {
            return Ok(Some(o.clone()));
        }
        if let Some(o) = committed.orders.remove(id) {
            return Ok(Some(o));
        }
    } else if let Target::NaturalKey { source, external_id } = target
        && view.absent_keys.contains(&(source.clone(), external_id.clone()))
    {
        return Ok(None);
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

async fn write_inbound(
    conn: &mut SqliteConnection,
    key: InboundKey,
    w: OrderWrite,
    view: &mut BatchView,
    committed: &mut Committed,
    staged: &mut Staged,
) -> Result<WriteOutcome, StoreError> {
    let id = (key.source.clone(), key.event_id.clone());
    if view.inbound_seen.contains(&id) {
        let order = load(conn, &w.target, view, committed).await?.ok_or(DomainError::NotFound)?;
        return Ok(WriteOutcome { order, created: false, appended: 0, replayed: true });
    }
    let at = to_micros(w.meta.at);
    // A refused decision returns before anything is staged, the key included.
    let outcome = write_one(conn, w, view, committed, staged).await?;
    staged.inbound.push((key.source, key.event_id, Some(outcome.order.id.clone()), key.kind, at));
    view.inbound_seen.insert(id);
    Ok(outcome)
}

async fn write_one(
    conn: &mut SqliteConnection,
    w: OrderWrite,
    view: &mut BatchView,
    committed: &mut Committed,
    staged: &mut Staged,
) -> Result<WriteOutcome, StoreError> {
    if let Some(k) = &w.idempotency {
        let id = (k.scope.clone(), k.key.clone());
        let stored: Option<(String, String)> = match view.idempotency.get(&id) {
            Some(v) => Some(v.clone()),
            None if view.absent_idempotency.contains(&id) => None,
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

    // Follow-up jobs depend on the state before the write only when readiness was evaluated
    // (that is how an order becomes released); keep a copy only then.
    let evaluated = events.iter().any(|e| {
        matches!(
            e,
            dispatch_core::EventData::Evaluated(_)
                | dispatch_core::EventData::ApprovalRequested { .. }
                | dispatch_core::EventData::ApprovalClosed { .. }
        )
    });
    let before = if evaluated { current.clone() } else { None };
    // Fold everything in memory first: a refused stream must not leave half its rows behind.
    let mut state = current;
    let mut stored = Vec::with_capacity(events.len());
    for mut data in events {
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
        stored.push(ev);
    }
    let order = state.ok_or(DomainError::NotFound)?;
    let appended = stored.len();
    let outcome = WriteOutcome { order, created: created && appended > 0, appended, replayed: false };
    // Serialize the idempotency answer before staging anything: a failure here stages nothing.
    let idempotency = match w.idempotency {
        Some(k) => Some((k, serde_json::to_string(&outcome)?)),
        None => None,
    };

    if appended > 0 {
        for f in follow_ups(before.as_ref(), &outcome.order, &stored, view.follow_ups) {
            staged.jobs.push((f.kind, order_id.clone(), f.dedupe_key, f.payload.to_string(), to_micros(at)));
        }
        staged.roles.extend(std::iter::repeat_n(w.meta.roles.clone(), stored.len()));
        staged.events.extend(stored);
        if staged.order_set.insert(order_id.clone()) {
            staged.orders.push(order_id.clone());
        }
    }
    if let Some((k, response)) = idempotency {
        staged.idempotency.push((
            k.scope.clone(),
            k.key.clone(),
            k.request_hash.clone(),
            response.clone(),
            to_micros(at),
        ));
        view.idempotency.insert((k.scope, k.key), (k.request_hash, response));
    }
    view.keys.insert((outcome.order.facts.source.clone(), outcome.order.facts.external_id.clone()), order_id.clone());
    view.orders.insert(order_id, outcome.order.clone());
    Ok(outcome)
}
