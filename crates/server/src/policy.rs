//! The active dispatch policy of a running server: swapped atomically on `PUT /api/v1/policy`
//! or a reload, used by every decision through [`Active`], with evaluation errors logged and
//! counted. Also the work a policy change or the passing of time causes: re-evaluating held
//! orders, refreshing time-dependent priorities, and reading history for a what-if replay.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Duration, Utc};
use dispatch_core::{Command, Ctx, Evaluation, Evaluator, OrderFacts, OrderState, Warehouse, decide};
use dispatch_policy::{PendingDecision, Policy, PolicyErrors, ReplayReport, Router, Tally};
use dispatch_store::{OrderQuery, OrderWrite, RawEvent, Store, StoreError, Target, WriteMeta};
use futures::StreamExt;

use crate::AppState;

/// The policy in force and where it came from.
pub struct Loaded {
    pub policy: Arc<Policy>,
    pub loaded_at: DateTime<Utc>,
    /// `embedded`, `file` or `api`.
    pub origin: &'static str,
}

/// Holds the active policy; readers take a cheap `Arc` clone, writers swap it whole.
pub struct PolicyState {
    current: RwLock<Arc<Loaded>>,
    /// The configured `policy_file`: reloads read it, a `PUT` writes it (so both agree).
    pub file: Option<PathBuf>,
    /// Serializes changes (PUT, reload) so two cannot interleave their re-evaluations.
    pub change: tokio::sync::Mutex<()>,
}

impl PolicyState {
    pub fn new(policy: Arc<Policy>, origin: &'static str, file: Option<PathBuf>, now: DateTime<Utc>) -> Self {
        PolicyState {
            current: RwLock::new(Arc::new(Loaded { policy, loaded_at: now, origin })),
            file,
            change: tokio::sync::Mutex::new(()),
        }
    }

    pub fn current(&self) -> Arc<Loaded> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.current().policy.clone()
    }

    pub fn swap(&self, policy: Arc<Policy>, origin: &'static str, now: DateTime<Utc>) {
        // The new policy starts with the route densities counted so far.
        policy.densities.set(self.policy().densities.snapshot());
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Loaded { policy, loaded_at: now, origin });
    }
}

/// The active policy as the state machine's evaluator: rules that fail at run time are
/// logged and counted here (the policy crate itself does no I/O).
pub struct Active(pub Arc<Policy>);

fn log_errors(policy: &Policy, facts: &OrderFacts, e: &Evaluation) {
    for r in e.rules.iter().filter(|r| r.error.is_some()) {
        tracing::warn!(
            policy = %policy.hash, rule = %r.rule, order = %facts.external_id,
            error = r.error.as_deref().unwrap_or(""), "policy rule failed; its on_error decided"
        );
        metrics::counter!("dispatchd_policy_errors_total", "rule" => r.rule.clone()).increment(1);
    }
}

impl Evaluator for Active {
    fn evaluate(&self, facts: &OrderFacts, warehouse: &Warehouse, now: DateTime<Utc>) -> Evaluation {
        let e = self.0.evaluate(facts, warehouse, now);
        log_errors(&self.0, facts, &e);
        e
    }

    fn policy_id(&self) -> String {
        self.0.hash.clone()
    }

    fn approval_for_hold(&self, reason: dispatch_core::HoldReason) -> Option<String> {
        self.0.approval_kind_for(reason).map(str::to_string)
    }

    fn overridable(&self, reason: dispatch_core::HoldReason) -> bool {
        self.0.overridable(reason)
    }

    fn route_approval(
        &self,
        draft: &dispatch_core::approval::ApprovalDraft,
        requester_roles: &[dispatch_core::Role],
        facts: &OrderFacts,
        warehouse: &Warehouse,
        now: DateTime<Utc>,
    ) -> Result<dispatch_core::approval::Routing, dispatch_core::approval::ApprovalError> {
        self.0.route_approval(draft, requester_roles, facts, warehouse, now)
    }
}

/// The active policy with the active risk model bound as `risk`: the evaluator of decisions
/// on new facts and of the sweeps. Without a model it decides exactly like [`Active`].
pub struct Scored {
    pub active: Active,
    pub risk: Option<Arc<crate::intel::Scorer>>,
}

impl Scored {
    pub fn new(app: &AppState, policy: Arc<Policy>) -> Scored {
        // Bound whenever a model is active: the policy asks it only when a rule reads `risk`,
        // the score is recorded either way (the board filters by it).
        Scored { active: Active(policy), risk: app.intel.scorer() }
    }
}

/// The model's score of an evaluated order: the one the decision read, else one asked now
/// with the carrier and latest departure the evaluation derived (the same query the policy
/// makes, so the numbers agree).
fn model_score(
    scorer: &crate::intel::Scorer,
    facts: &OrderFacts,
    warehouse: &Warehouse,
    now: DateTime<Utc>,
    e: &Evaluation,
) -> Option<dispatch_core::risk::ModelScore> {
    use dispatch_policy::RiskSource;
    if let Some(r) = &e.risk {
        return Some(dispatch_core::risk::ModelScore {
            model_version: r.model_version.clone(),
            late_departure: r.late_departure,
        });
    }
    let carrier = e.carrier.as_ref().and_then(|c| c.carrier.as_deref()).or(facts.carrier_preference.as_deref());
    let q = dispatch_policy::RiskQuery { facts, warehouse, now, carrier, latest_departure: e.inputs.latest_departure };
    scorer
        .score(&q)
        .map(|s| dispatch_core::risk::ModelScore { model_version: s.model_version, late_departure: s.late_departure })
}

impl Evaluator for Scored {
    fn evaluate(&self, facts: &OrderFacts, warehouse: &Warehouse, now: DateTime<Utc>) -> Evaluation {
        let source = self.risk.as_deref().map(|s| s as &dyn dispatch_policy::RiskSource);
        let mut e = self.active.0.evaluate_scored(facts, warehouse, now, source);
        log_errors(&self.active.0, facts, &e);
        if let Some(scorer) = self.risk.as_deref() {
            e.scored = model_score(scorer, facts, warehouse, now, &e);
        }
        if let Some(r) = &e.risk {
            metrics::counter!("dispatchd_risk_influenced_decisions_total").increment(1);
            tracing::debug!(order = %facts.external_id, model = %r.model_version, p = r.late_departure, "risk influenced a decision");
        }
        e
    }

    fn policy_id(&self) -> String {
        self.active.policy_id()
    }

    fn approval_for_hold(&self, reason: dispatch_core::HoldReason) -> Option<String> {
        self.active.approval_for_hold(reason)
    }

    fn overridable(&self, reason: dispatch_core::HoldReason) -> bool {
        self.active.overridable(reason)
    }

    fn route_approval(
        &self,
        draft: &dispatch_core::approval::ApprovalDraft,
        requester_roles: &[dispatch_core::Role],
        facts: &OrderFacts,
        warehouse: &Warehouse,
        now: DateTime<Utc>,
    ) -> Result<dispatch_core::approval::Routing, dispatch_core::approval::ApprovalError> {
        self.active.route_approval(draft, requester_roles, facts, warehouse, now)
    }
}

/// Compiles a candidate against the configured warehouses.
pub fn compile(app: &AppState, source: &str, file: &str) -> Result<Policy, PolicyErrors> {
    let codes: Vec<String> = app.warehouses.iter().map(|w| w.code.clone()).collect();
    Policy::compile(source, file, Some(&codes))
}

/// Counts of a re-evaluation pass.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Pass {
    pub checked: u64,
    pub changed: u64,
}

/// Runs `Command::Reevaluate` under the active policy for every order the query selects
/// (all pages); orders whose decision is unchanged record nothing.
pub async fn reevaluate(app: &AppState, mut q: OrderQuery, actor: &str) -> Result<Pass, StoreError> {
    let mut pass = Pass::default();
    q.limit = 500;
    loop {
        let page = app.store.list_orders(&q).await?;
        let now = app.clock.now();
        let rules = Arc::new(Scored::new(app, app.policy.policy()));
        let writes: Vec<OrderWrite> = page
            .items
            .iter()
            .map(|o| {
                let warehouses = app.warehouses.clone();
                let rules = rules.clone();
                OrderWrite {
                    target: Target::Id(o.id.clone()),
                    meta: WriteMeta { actor: actor.to_string(), roles: vec![], request_id: None, at: now },
                    idempotency: None,
                    decide: Box::new(move |cur| {
                        let ctx = Ctx { now, warehouses: &warehouses, rules: rules.as_ref() };
                        match decide(cur, Command::Reevaluate, &ctx) {
                            // The order moved on meanwhile (booked, cancelled): nothing to do.
                            Err(dispatch_core::DomainError::IllegalTransition { .. }) => Ok(vec![]),
                            other => other,
                        }
                    }),
                }
            })
            .collect();
        let store = app.store.clone();
        let writes = futures::stream::iter(writes).map(move |w| {
            let store = store.clone();
            async move { store.execute_background(w).await }
        });
        let mut results = writes.buffer_unordered(64);
        while let Some(r) = results.next().await {
            let outcome = r?;
            pass.checked += 1;
            if outcome.appended > 0 {
                pass.changed += 1;
            }
        }
        match page.next_after {
            Some(after) => q.after_id = Some(after),
            None => return Ok(pass),
        }
    }
}

/// After a policy change: every order that is not yet released (held or just received).
pub async fn reevaluate_held(app: &AppState, actor: &str) -> Result<Pass, StoreError> {
    let q = OrderQuery { states: vec![OrderState::OnHold, OrderState::Received], ..Default::default() };
    reevaluate(app, q, actor).await
}

/// The periodic priority refresh, incremental. When the policy reads `route.*`, the route
/// densities are counted again (the store lists each wave's members from its index) and only
/// the released orders of waves whose membership changed are re-evaluated. When a priority
/// term reads the time, the released orders whose latest departure is still ahead and within
/// the policy's horizon are re-evaluated. Either way only orders whose decision changed get
/// an event.
pub async fn refresh_priorities(app: &AppState) -> Result<Pass, StoreError> {
    let policy = app.policy.policy();
    let mut pass = Pass::default();
    // The sweep is also where a node notices a promoted or rolled-back risk model.
    let model = app.intel.refresh(app.store.as_ref(), app.clock.now()).await?;
    if policy.reads_risk() && model.changed {
        // Held orders may be held (or not) because of the old model's score.
        let held = reevaluate_held(app, "system:risk-model").await?;
        tracing::info!(version = ?model.version, checked = held.checked, changed = held.changed, "re-evaluated held orders under the new risk model");
    }
    if policy.reads_route() {
        let touched = refresh_route_densities(app).await?;
        let targets = touched
            .iter()
            .filter_map(|m| dispatch_policy::density::natural_key(m))
            .map(|(source, external_id)| Target::NaturalKey {
                source: source.to_string(),
                external_id: external_id.to_string(),
            })
            .collect();
        let p = reevaluate_targets(app, targets, "system:priority-refresh").await?;
        metrics::counter!("dispatchd_route_density_refreshed_total").increment(p.changed);
        pass.checked += p.checked;
        pass.changed += p.changed;
    }
    let scores_move = policy.reads_risk() && model.version.is_some();
    if !policy.time_dependent_priority() && !scores_move {
        return Ok(pass);
    }
    let now = app.clock.now();
    let q = OrderQuery {
        states: vec![OrderState::Released],
        departure_from: Some(now),
        departure_to: Some(now + Duration::hours(i64::from(policy.refresh_horizon_hours))),
        ..Default::default()
    };
    let p = reevaluate(app, q, "system:priority-refresh").await?;
    metrics::counter!("dispatchd_priority_refreshed_total").increment(p.changed);
    pass.checked += p.checked;
    pass.changed += p.changed;
    Ok(pass)
}

/// Counts the route densities again into the active policy's table (when it reads `route.*`);
/// returns the members (natural keys, see [`dispatch_policy::density::natural_key`]) of every
/// wave whose membership changed. Cheap: one indexed read of the waves still ahead.
pub async fn refresh_route_densities(app: &AppState) -> Result<Vec<String>, StoreError> {
    let policy = app.policy.policy();
    if !policy.reads_route() {
        return Ok(vec![]);
    }
    let rows = app.store.route_members(app.clock.now()).await?;
    metrics::gauge!("dispatchd_route_members").set(rows.len() as f64);
    Ok(policy.densities.replace(rows.into_iter().map(|m| (m.route_key, m.source, m.external_id))))
}

/// Runs `Command::Reevaluate` under the active policy for these orders; an order that is no
/// longer open (or gone) is skipped.
pub async fn reevaluate_targets(app: &AppState, targets: Vec<Target>, actor: &str) -> Result<Pass, StoreError> {
    let mut pass = Pass::default();
    let now = app.clock.now();
    let policy = app.policy.policy();
    let writes: Vec<OrderWrite> = targets
        .into_iter()
        .map(|target| {
            let warehouses = app.warehouses.clone();
            let policy = policy.clone();
            OrderWrite {
                target,
                meta: WriteMeta { actor: actor.to_string(), roles: vec![], request_id: None, at: now },
                idempotency: None,
                decide: Box::new(move |cur| {
                    let rules = Active(policy.clone());
                    let ctx = Ctx { now, warehouses: &warehouses, rules: &rules };
                    match decide(cur, Command::Reevaluate, &ctx) {
                        Err(dispatch_core::DomainError::IllegalTransition { .. }) => Ok(vec![]),
                        other => other,
                    }
                }),
            }
        })
        .collect();
    let store = app.store.clone();
    let mut results = futures::stream::iter(writes)
        .map(move |w| {
            let store = store.clone();
            async move { store.execute_background(w).await }
        })
        .buffer_unordered(64);
    while let Some(r) = results.next().await {
        match r {
            Ok(outcome) => {
                pass.checked += 1;
                if outcome.appended > 0 {
                    pass.changed += 1;
                }
            }
            Err(StoreError::Domain(dispatch_core::DomainError::NotFound)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(pass)
}

/// How a replay of the event log runs.
#[derive(Debug, Clone)]
pub struct ReplayRun {
    /// Only decisions evaluated at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Evaluation workers.
    pub threads: usize,
    pub max_examples: usize,
    /// Events read per query.
    pub page: u32,
    /// Decisions handed to a worker at a time.
    pub batch: usize,
}

impl ReplayRun {
    /// One worker per core, 5,000 events a page, 1,000 decisions a batch: small enough that
    /// what is in flight stays in a few tens of MB (fresh memory costs page faults), large
    /// enough that the hand-offs cost nothing.
    pub fn new(since: Option<DateTime<Utc>>, max_examples: usize) -> ReplayRun {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        ReplayRun { since, threads, max_examples, page: 5_000, batch: 1_000 }
    }
}

/// What-if replay of the event log: re-evaluates every recorded decision (evaluated at or
/// after `run.since`) under `candidate` and reports the difference. Streams, so that memory
/// stays bounded and reading overlaps evaluation: this task reads pages of the log in
/// recording order and sorts them into pending decisions (a hash-map insert per event); the
/// workers parse each decision with its facts, re-evaluate it and count it into their own
/// [`Tally`], merged at the end. `on_progress` hears how many decisions were replayed.
pub async fn replay_event_log(
    store: Arc<dyn Store>,
    candidate: Arc<Policy>,
    warehouses: Arc<dispatch_core::Warehouses>,
    run: &ReplayRun,
    on_progress: Arc<dyn Fn(u64) + Send + Sync>,
) -> Result<ReplayReport, StoreError> {
    let (since, max_examples) = (run.since, run.max_examples);
    let (page_size, batch_size) = (run.page.max(1), run.batch.max(1));
    let threads = run.threads.clamp(1, 64);
    // Two batches in flight per worker: enough to keep them busy while a page is routed.
    let (send, recv) = tokio::sync::mpsc::channel::<Vec<PendingDecision>>(threads * 2);
    let recv = Arc::new(std::sync::Mutex::new(recv));
    let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<tokio::task::JoinHandle<Result<Tally, String>>> = (0..threads)
        .map(|_| {
            let (recv, failed, candidate, warehouses, on_progress) =
                (recv.clone(), failed.clone(), candidate.clone(), warehouses.clone(), on_progress.clone());
            tokio::task::spawn_blocking(move || {
                let mut tally = Tally::new(&candidate, max_examples);
                loop {
                    // The lock is held only while waiting for the next batch.
                    let next = recv.lock().map_err(|_| "a replay worker failed".to_string())?.blocking_recv();
                    let Some(batch) = next else { return Ok(tally) };
                    let n = batch.len() as u64;
                    for p in batch {
                        let seq = p.seq;
                        match p.parse(since) {
                            Ok(Some(d)) => tally.replay_one(&candidate, &warehouses, seq as u64, &d),
                            Ok(None) => {}
                            Err(e) => {
                                failed.store(true, std::sync::atomic::Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                    on_progress(n);
                }
            })
        })
        .collect();
    // The store reads pages on its own thread (two pages ahead); this task routes them.
    let (page_send, mut pages) = tokio::sync::mpsc::channel::<Vec<RawEvent>>(2);
    let read = store.stream_decision_events(0, page_size, page_send);
    let route = async {
        let mut router = Router::default();
        let mut batch = Vec::with_capacity(batch_size);
        while let Some(page) = pages.recv().await {
            if failed.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            for RawEvent { seq, order_id, kind, data } in page {
                if let Some(p) = router.route(seq, order_id, &kind, data) {
                    batch.push(p);
                    if batch.len() == batch_size {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
                        // Waits while every worker is busy: the bound that keeps memory flat.
                        if send.send(full).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
        if !batch.is_empty() {
            let _ = send.send(batch).await;
        }
    };
    let (read, ()) = futures::join!(read, route);
    drop(send);
    let mut total = Tally::new(&candidate, max_examples);
    let mut worker_error = None;
    for w in workers {
        match w.await {
            Ok(Ok(t)) => total.merge(t),
            Ok(Err(e)) => worker_error = worker_error.or(Some(e)),
            Err(_) => worker_error = worker_error.or(Some("a replay worker failed".to_string())),
        }
    }
    read?;
    if let Some(e) = worker_error {
        return Err(StoreError::Corrupt(format!("reading a recorded decision: {e}")));
    }
    Ok(total.finish())
}
