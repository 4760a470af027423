//! Background workers. The booking worker takes `book_shipment` jobs from the outbox (written
//! in the same transaction that released the order), books them with a carrier and records the
//! booking through the store like any other command.
//!
//! - Claims jobs under a lease, so a crashed process's jobs are taken over when it expires.
//! - Calls the carrier with the job's dedupe key (`book_shipment:<order>:<release version>`)
//!   as the idempotency key: it does not depend on the attempt, so a retry — after a timeout,
//!   a crash, a lost answer — returns the first booking instead of making a second.
//! - Retries with exponential backoff and full jitter, never sooner than `Retry-After`.
//! - Keeps a circuit breaker per carrier. The carriers to try come from [`carrier_plan`]: the
//!   policy's carrier matrix (the lane's allowed carriers, then its fallbacks), an approved
//!   route override, or the configuration's `fallback` list when no lane takes the order.
//!   When the preferred carrier's circuit is open the next one is booked and the booking
//!   records why; when the lane allows no automatic fallback a `route_override` approval is
//!   requested instead (once per order).
//! - A non-retryable error, or the last attempt failing, makes the job a dead letter (status
//!   `dead` with the last error), puts the order in `exception` with the reason, and counts
//!   `dispatchd_dead_letters_total` for alerting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dispatch_core::approval::ApprovalError;
use dispatch_core::approval::{ApprovalDraft, ApprovalStatus};
use dispatch_core::effects::BOOK_SHIPMENT;
use dispatch_core::event::CarrierFallback;
use dispatch_core::{ApprovalKind, Command, Ctx, DomainError, Order, OrderState, Warehouses, decide};
use dispatch_integrations::resilience::{Breaker, CircuitState, backoff};
use dispatch_integrations::{Booking, BookingRequest, Carriers};
use dispatch_policy::{BookingRoute, Policy};
use dispatch_server::clock::Clock;
use dispatch_store::{CarrierAttempt, Job, JobStatus, OrderWrite, Store, StoreError, Target, WriteMeta};
use rand::Rng;
use tokio::sync::{Semaphore, watch};

use crate::config::BookingConfig;

/// Where a booking plan came from.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanSource {
    /// An approved `route_override` names the carrier.
    Override { approval_id: String },
    /// The lane of the policy's carrier matrix that takes the order.
    Policy { lane: String },
    /// No lane takes the order, or none of the lane's carriers is configured: the order's
    /// preference (else `[booking] default_carrier`), then that carrier's configured
    /// `fallback` list — the behaviour before the matrix, kept as the default.
    Config,
}

/// The carriers the booking worker may use for an order.
#[derive(Debug, Clone, PartialEq)]
pub struct CarrierPlan {
    pub source: PlanSource,
    /// Tried in order: the first whose circuit admits a call is booked.
    pub carriers: Vec<String>,
    /// Tried in order when every one of `carriers` is down, if `auto_fallback`.
    pub fallbacks: Vec<String>,
    /// Whether `fallbacks` may be booked without a person; if not, the worker requests a
    /// `route_override` approval (once per order).
    pub auto_fallback: bool,
}

impl CarrierPlan {
    pub fn is_empty(&self) -> bool {
        self.carriers.is_empty() && self.fallbacks.is_empty()
    }

    /// The carrier the plan prefers (the first one).
    pub fn preferred(&self) -> Option<&str> {
        self.carriers.first().or(self.fallbacks.first()).map(String::as_str)
    }

    fn lane(&self) -> Option<String> {
        match &self.source {
            PlanSource::Policy { lane } => Some(lane.clone()),
            _ => None,
        }
    }

    fn all(&self) -> impl Iterator<Item = &String> {
        self.carriers.iter().chain(&self.fallbacks)
    }
}

/// The carriers to try for an order: an approved route override's carrier; else the policy's
/// lane for the order (`route`, from [`dispatch_policy::Policy::booking_route`]) with only the
/// carriers that are configured here; else the configuration's preference and `fallback`.
pub fn carrier_plan(order: &Order, route: Option<BookingRoute>, carriers: &Carriers) -> CarrierPlan {
    let configured = |p: &str| carriers.get(p).is_some();
    if let Some(o) = &order.booking_override
        && let Some(c) = o.carrier.as_deref().filter(|c| configured(c))
    {
        return CarrierPlan {
            source: PlanSource::Override { approval_id: o.approval_id.clone() },
            carriers: vec![c.to_string()],
            fallbacks: vec![],
            auto_fallback: false,
        };
    }
    if let Some(r) = route {
        let keep = |v: Vec<String>| v.into_iter().filter(|c| configured(c)).collect::<Vec<_>>();
        let plan = CarrierPlan {
            source: PlanSource::Policy { lane: r.lane },
            carriers: keep(r.carriers),
            fallbacks: keep(r.fallbacks),
            auto_fallback: r.auto_fallback,
        };
        if !plan.is_empty() {
            return plan;
        }
    }
    let preferred = order
        .facts
        .carrier_preference
        .as_deref()
        .filter(|p| configured(p))
        .or_else(|| carriers.default_carrier().filter(|p| configured(p)));
    let mut plan = CarrierPlan { source: PlanSource::Config, carriers: vec![], fallbacks: vec![], auto_fallback: true };
    if let Some(p) = preferred {
        plan.carriers.push(p.to_string());
        if let Some(c) = carriers.get(p) {
            for f in &c.fallback {
                if !plan.carriers.contains(f) && !plan.fallbacks.contains(f) && configured(f) {
                    plan.fallbacks.push(f.clone());
                }
            }
        }
    }
    plan
}

/// What to do with a plan given which carriers are up right now.
#[derive(Debug, Clone, PartialEq)]
pub enum Pick {
    /// Book with `carrier`; `fallback` says why when it is not the plan's preferred one.
    Book { carrier: String, fallback: Option<CarrierFallback> },
    /// Every allowed carrier is down and the plan may not fall back by itself: request a
    /// `route_override` to `carrier`.
    AskOverride { carrier: String, down: Vec<String> },
    /// No carrier can be called now: try again later.
    Wait { down: Vec<String> },
}

/// Picks the carrier for a plan. `admits` asks a carrier's circuit breaker for a call (in
/// plan order, stopping at the first yes, since a half-open breaker admits one probe);
/// `is_up` only looks. `others` are further configured carriers a route override may
/// propose; `may_ask` is false once the order had a route override request (one per order).
pub fn pick(
    plan: &CarrierPlan,
    mut admits: impl FnMut(&str) -> bool,
    is_up: impl Fn(&str) -> bool,
    others: &[String],
    may_ask: bool,
) -> Pick {
    let mut down: Vec<String> = Vec::new();
    let fallback = |down: &[String]| {
        plan.preferred().filter(|_| !down.is_empty()).map(|p| CarrierFallback {
            preferred: p.to_string(),
            down: down.to_vec(),
            why: "circuit open".into(),
            lane: plan.lane(),
        })
    };
    for c in &plan.carriers {
        if admits(c) {
            return Pick::Book { carrier: c.clone(), fallback: fallback(&down) };
        }
        down.push(c.clone());
    }
    if plan.auto_fallback {
        for c in &plan.fallbacks {
            if admits(c) {
                return Pick::Book { carrier: c.clone(), fallback: fallback(&down) };
            }
            down.push(c.clone());
        }
    }
    // The policy's lane allows no fallback by itself (none listed, or `auto_fallback = false`):
    // a person decides. The configuration's plan keeps its old behaviour: wait.
    let lane_forbids = !plan.auto_fallback || plan.fallbacks.is_empty();
    if may_ask
        && lane_forbids
        && matches!(plan.source, PlanSource::Policy { .. })
        && let Some(c) = plan.fallbacks.iter().chain(others).find(|c| !plan.carriers.contains(c) && is_up(c))
    {
        return Pick::AskOverride { carrier: c.clone(), down };
    }
    Pick::Wait { down }
}

/// Whether the order may still get an automatic `route_override` request: not when it has
/// one that is pending, approved, rejected or expired (a person decided, or will).
pub fn may_request_override(order: &Order) -> bool {
    !order.approvals.iter().any(|a| {
        a.draft.kind == ApprovalKind::RouteOverride.code()
            && !matches!(a.status, ApprovalStatus::Withdrawn | ApprovalStatus::Cancelled)
    })
}

/// Who requests a route override the booking worker needs.
pub const BOOKING_REQUESTER: &str = "system:booking";

/// The active policy, read afresh for every job (a `PUT /api/v1/policy` applies at once).
pub type PolicySource = Arc<dyn Fn() -> Arc<Policy> + Send + Sync>;

/// The `dead_letter.created` message of a job that failed for good.
pub fn dead_letter_message(job: &Job, error: &str, now: DateTime<Utc>) -> dispatch_core::outbound::Message {
    let data = dispatch_core::outbound::DeadLetterData {
        dead_letter_id: job.id,
        kind: job.kind.clone(),
        order_id: job.order_id.clone(),
        error: Some(error.to_string()),
    };
    dispatch_core::outbound::Message {
        // A dead letter retried and dead again is a new message.
        id: format!("msg_dead_{}_{}", job.id, now.timestamp_micros()),
        event_type: dispatch_core::outbound::EventType::DeadLetterCreated,
        timestamp: now,
        data: serde_json::to_value(data).unwrap_or_default(),
    }
}

pub struct BookingWorker {
    id: String,
    store: Arc<dyn Store>,
    carriers: Arc<Carriers>,
    clock: Arc<dyn Clock>,
    warehouses: Arc<Warehouses>,
    policy: PolicySource,
    cfg: BookingConfig,
    breakers: Mutex<HashMap<String, Breaker>>,
}

enum Outcome {
    Booked,
    /// Booked, and the job marked done in the same transaction.
    BookedAndFinished,
    Retry {
        at: DateTime<Utc>,
        error: String,
    },
    Dead {
        error: String,
    },
    Skip(&'static str),
}

impl BookingWorker {
    pub fn new(
        store: Arc<dyn Store>,
        carriers: Arc<Carriers>,
        clock: Arc<dyn Clock>,
        warehouses: Arc<Warehouses>,
        policy: PolicySource,
        cfg: BookingConfig,
    ) -> Arc<Self> {
        let breakers = carriers
            .names()
            .filter_map(|n| carriers.get(n).map(|c| (n.to_string(), Breaker::new(c.breaker))))
            .collect();
        for n in carriers.names() {
            metrics::gauge!("dispatchd_carrier_circuit_state", "carrier" => n.to_string()).set(0.0);
        }
        Arc::new(BookingWorker {
            id: format!("booking-{}", uuid::Uuid::now_v7().simple()),
            store,
            carriers,
            clock,
            warehouses,
            policy,
            cfg,
            breakers: Mutex::new(breakers),
        })
    }

    /// Runs until `shutdown` turns true, then waits (briefly) for calls in flight.
    pub fn spawn(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(self.cfg.concurrency.max(1)));
            let lease = chrono::Duration::seconds(self.cfg.lease_secs.max(1) as i64);
            let idle = Duration::from_millis(self.cfg.poll_ms.max(1));
            loop {
                if *shutdown.borrow() {
                    break;
                }
                let free = slots.available_permits().min(self.cfg.batch.max(1) as usize);
                if free == 0 {
                    // Wait for a slot, then give it back and claim as many as are free.
                    tokio::select! {
                        p = slots.clone().acquire_owned() => drop(p),
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
                let jobs =
                    match self.store.claim_jobs(&self.id, &[BOOK_SHIPMENT], free as u32, self.clock.now(), lease).await
                    {
                        Ok(j) => j,
                        Err(StoreError::Closed) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot claim booking jobs");
                            Vec::new()
                        }
                    };
                if jobs.is_empty() {
                    // Woken at once by a release (on any node); the poll interval only bounds
                    // the wait for retries that come due.
                    tokio::select! {
                        _ = self.store.wait_for_jobs(&[BOOK_SHIPMENT], idle) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
                for job in jobs {
                    let Ok(permit) = slots.clone().acquire_owned().await else { break };
                    let me = self.clone();
                    tokio::spawn(async move {
                        me.process(job).await;
                        drop(permit);
                    });
                }
            }
            // Let calls in flight finish so their bookings are recorded; anything left is
            // taken over after its lease.
            let _ =
                tokio::time::timeout(Duration::from_secs(5), slots.acquire_many(self.cfg.concurrency.max(1) as u32))
                    .await;
        })
    }

    fn breaker<T>(&self, carrier: &str, f: impl FnOnce(&mut Breaker) -> T) -> Option<T> {
        let mut map = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        let b = map.get_mut(carrier)?;
        let out = f(b);
        let state = b.state(self.clock.now());
        metrics::gauge!("dispatchd_carrier_circuit_state", "carrier" => carrier.to_string()).set(state.gauge());
        Some(out)
    }

    async fn process(&self, job: Job) {
        let outcome = match self.attempt(&job).await {
            Ok(o) => o,
            Err(e) => {
                // The store failed us: try again soon; the carrier call (if any) is idempotent.
                let at = self.clock.now() + chrono::Duration::seconds(1);
                Outcome::Retry { at, error: format!("store error: {e}") }
            }
        };
        let result = match outcome {
            Outcome::Booked => self.store.finish_job(job.id, &self.id, JobStatus::Done, None).await,
            Outcome::BookedAndFinished => Ok(true),
            Outcome::Skip(why) => {
                tracing::info!(job = job.id, order = ?job.order_id, "booking skipped: {why}");
                self.store.finish_job(job.id, &self.id, JobStatus::Done, Some(why)).await
            }
            Outcome::Retry { at, error } => {
                if job.attempts >= i64::from(self.cfg.max_attempts.max(1)) {
                    let error = format!("gave up after {} attempts; last error: {error}", job.attempts);
                    self.dead_letter(&job, &error).await
                } else {
                    tracing::debug!(job = job.id, attempt = job.attempts, %error, retry_at = %at, "booking will be retried");
                    self.store.retry_job(job.id, &self.id, at, &error).await
                }
            }
            Outcome::Dead { error } => self.dead_letter(&job, &error).await,
        };
        match result {
            Ok(true) => {}
            Ok(false) => tracing::warn!(job = job.id, "lease lost: another worker took this job over"),
            Err(e) => {
                tracing::warn!(job = job.id, error = %e, "could not record the job's outcome; it is retried after its lease")
            }
        }
    }

    async fn dead_letter(&self, job: &Job, error: &str) -> Result<bool, StoreError> {
        tracing::error!(job = job.id, order = ?job.order_id, %error, "booking failed for good: dead letter");
        metrics::counter!("dispatchd_dead_letters_total", "kind" => job.kind.clone()).increment(1);
        let finished = self.store.finish_job(job.id, &self.id, JobStatus::Dead, Some(error)).await?;
        if finished {
            // Subscribers (n8n, the internal team) hear of it: `dead_letter.created`.
            let message = dead_letter_message(job, error, self.clock.now());
            let publish = crate::outbound::publish_job(&message);
            if let Err(e) = self.store.enqueue_jobs(&[publish], self.clock.now()).await {
                tracing::warn!(job = job.id, error = %e, "could not publish dead_letter.created");
            }
        }
        if finished && let Some(order_id) = &job.order_id {
            let reason = format!("carrier booking failed: {error}");
            match self.write(order_id, Command::RaiseException { reason }).await {
                Ok(_) | Err(StoreError::Domain(DomainError::IllegalTransition { .. })) => {}
                Err(e) => tracing::warn!(order = %order_id, error = %e, "could not mark the order as exception"),
            }
        }
        Ok(finished)
    }

    async fn write(&self, order_id: &str, cmd: Command) -> Result<dispatch_store::WriteOutcome, StoreError> {
        let now = self.clock.now();
        let warehouses = self.warehouses.clone();
        self.store
            .execute(OrderWrite {
                target: Target::Id(order_id.to_string()),
                meta: WriteMeta { actor: "system:booking".into(), roles: vec![], request_id: None, at: now },
                idempotency: None,
                decide: Box::new(move |cur| decide(cur, cmd.clone(), &Ctx::new(now, &warehouses))),
            })
            .await
    }

    async fn attempt(&self, job: &Job) -> Result<Outcome, StoreError> {
        let Some(order_id) = job.order_id.as_deref() else {
            return Ok(Outcome::Dead { error: "job has no order".into() });
        };
        let Some(order) = self.store.order(order_id).await? else {
            return Ok(Outcome::Dead { error: format!("order {order_id} does not exist") });
        };
        match order.state {
            OrderState::Released => {}
            OrderState::Exception if order.shipment.is_none() => {} // a dead letter sent back
            OrderState::Booked | OrderState::Dispatched | OrderState::Delivered => {
                return Ok(Outcome::Skip("the order is booked already"));
            }
            _ => return Ok(Outcome::Skip("the order is no longer released")),
        }
        let policy = (self.policy)();
        let route = self.warehouses.get(&order.facts.warehouse).and_then(|wh| policy.booking_route(&order.facts, wh));
        let plan = carrier_plan(&order, route, &self.carriers);
        let Some(preferred) = plan.preferred().map(str::to_string) else {
            return Ok(Outcome::Dead { error: "no carrier is configured".into() });
        };
        let now = self.clock.now();
        let others: Vec<String> =
            self.carriers.names().filter(|n| !plan.all().any(|c| c == n)).map(String::from).collect();
        let picked = pick(
            &plan,
            |c| self.breaker(c, |b| b.try_acquire(now)).unwrap_or(false),
            |c| self.breaker(c, |b| b.state(now) != CircuitState::Open).unwrap_or(false),
            &others,
            may_request_override(&order),
        );
        let (name, fallback) = match picked {
            Pick::Book { carrier, fallback } => (carrier, fallback),
            Pick::AskOverride { carrier, down } => {
                return self.request_override(&order, &plan, carrier, down, policy).await;
            }
            Pick::Wait { down } => {
                let reopen = down.iter().filter_map(|c| self.breaker(c, |b| b.reopens_at()).flatten()).min();
                let at =
                    reopen.unwrap_or(now + chrono::Duration::seconds(1)).max(now + chrono::Duration::milliseconds(50));
                metrics::counter!("dispatchd_carrier_bookings_total", "carrier" => preferred, "outcome" => "circuit_open")
                    .increment(1);
                let why = match (&plan.source, plan.auto_fallback) {
                    (PlanSource::Override { .. }, _) => "the approved route override's carrier is down",
                    (_, true) => "every carrier's circuit is open",
                    (_, false) => "the allowed carriers' circuits are open and the policy allows no automatic fallback",
                };
                return Ok(Outcome::Retry { at, error: format!("{why} ({})", down.join(", ")) });
            }
        };
        let Some(carrier) = self.carriers.get(&name).cloned() else {
            return Ok(Outcome::Dead { error: format!("carrier {name} is not configured") });
        };
        if let Some(f) = &fallback {
            tracing::info!(order = %order_id, preferred = %f.preferred, down = ?f.down, lane = ?f.lane, fallback = %name, "preferred carrier is down: using the fallback");
            metrics::counter!("dispatchd_carrier_fallbacks_total", "from" => f.preferred.clone(), "to" => name.clone())
                .increment(1);
        }
        let name = &name;
        let req = BookingRequest::for_order(&order, &job.dedupe_key);
        metrics::counter!("dispatchd_carrier_booking_attempts_total", "carrier" => name.clone()).increment(1);
        let started = std::time::Instant::now();
        let result = carrier.adapter.book(&req).await;
        metrics::histogram!("dispatchd_carrier_request_duration_seconds", "carrier" => name.clone())
            .record(started.elapsed().as_secs_f64());
        // Every node's attempts in the store: the anomaly series, the risk model's
        // `carrier_failures_6h` and the console's carrier health read them.
        let attempt = CarrierAttempt {
            at: self.clock.now(),
            carrier: name.clone(),
            warehouse: order.facts.warehouse.clone(),
            order_id: Some(order.id.clone()),
            outcome: result.as_ref().map_or_else(|e| e.outcome(), |_| CarrierAttempt::BOOKED).to_string(),
        };
        if let Err(e) = self.store.record_carrier_attempt(&attempt).await {
            tracing::warn!(carrier = %name, error = %e, "could not record the booking attempt");
        }
        match result {
            Ok(booking) => {
                self.breaker(name, |b| b.on_success());
                self.record(name, &order, booking, fallback, job.id).await
            }
            Err(e) => {
                if e.is_carrier_fault() {
                    let now = self.clock.now();
                    self.breaker(name, |b| b.on_failure(now));
                } else {
                    self.breaker(name, |b| b.on_neutral());
                }
                metrics::counter!("dispatchd_carrier_bookings_total", "carrier" => name.clone(), "outcome" => e.outcome())
                    .increment(1);
                let error = format!("{name}: {e}");
                if !e.is_retryable() {
                    return Ok(Outcome::Dead { error });
                }
                let attempt = u32::try_from(job.attempts.max(1)).unwrap_or(u32::MAX);
                let unit: f64 = rand::rng().random();
                let delay = backoff(
                    attempt,
                    Duration::from_millis(self.cfg.backoff_base_ms),
                    Duration::from_millis(self.cfg.backoff_cap_ms),
                    e.retry_after(),
                    unit,
                );
                let at = self.clock.now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::seconds(1));
                Ok(Outcome::Retry { at, error })
            }
        }
    }

    /// Every carrier the policy allows for the order is down and its lane allows no automatic
    /// fallback: ask for a `route_override` to `carrier` (routed by the policy's approval
    /// table). The order waits in `awaiting_approval`, so this job ends; the approval releases
    /// the order again and its new booking job books the approved carrier.
    async fn request_override(
        &self,
        order: &Order,
        plan: &CarrierPlan,
        carrier: String,
        down: Vec<String>,
        policy: Arc<Policy>,
    ) -> Result<Outcome, StoreError> {
        let lane = plan.lane().map(|l| format!(" lane {l}")).unwrap_or_default();
        let draft = ApprovalDraft {
            kind: ApprovalKind::RouteOverride.code().to_string(),
            reason: Some(format!(
                "{} down (circuit open); the policy's{lane} allows no automatic fallback: book with {carrier} instead?",
                down.join(", ")
            )),
            amount: None,
            currency: None,
            cost_center: None,
            lines: vec![],
            carrier: Some(carrier.clone()),
            service: None,
        };
        let cmd =
            Command::RequestApproval { draft: Box::new(draft), requester: BOOKING_REQUESTER.into(), roles: vec![] };
        let now = self.clock.now();
        let warehouses = self.warehouses.clone();
        let write = OrderWrite {
            target: Target::Id(order.id.clone()),
            meta: WriteMeta { actor: BOOKING_REQUESTER.into(), roles: vec![], request_id: None, at: now },
            idempotency: None,
            decide: Box::new(move |cur| {
                let rules = dispatch_server::policy::Active(policy.clone());
                decide(cur, cmd.clone(), &Ctx { now, warehouses: &warehouses, rules: &rules })
            }),
        };
        match self.store.execute(write).await {
            Ok(w) => {
                tracing::info!(order = %order.id, %carrier, down = ?down, state = %w.order.state, "route override requested");
                metrics::counter!("dispatchd_route_overrides_requested_total", "carrier" => carrier.clone())
                    .increment(1);
                if w.order.state == OrderState::Released {
                    // The policy approved it by itself: book the approved carrier now.
                    return Ok(Outcome::Retry { at: now, error: format!("route override to {carrier} auto-approved") });
                }
                Ok(Outcome::Skip("every allowed carrier is down: a route_override approval was requested"))
            }
            Err(StoreError::Domain(DomainError::Approval(ApprovalError::Conflict(_)))) => {
                Ok(Outcome::Skip("a route_override approval is already pending"))
            }
            Err(StoreError::Domain(DomainError::IllegalTransition { .. })) => {
                Ok(Outcome::Skip("the order is no longer released"))
            }
            Err(StoreError::Domain(e)) => {
                // No route for the request (or the draft is refused): wait for the carrier.
                let at = now + chrono::Duration::seconds(5);
                Ok(Outcome::Retry { at, error: format!("could not request a route override: {e}") })
            }
            Err(e) => Err(e),
        }
    }

    async fn record(
        &self,
        carrier: &str,
        order: &Order,
        booking: Booking,
        fallback: Option<CarrierFallback>,
        job: i64,
    ) -> Result<Outcome, StoreError> {
        let (carrier_name, tracking_number, service) =
            (carrier.to_string(), booking.tracking_number.clone(), booking.service.clone());
        let cmd = match fallback {
            None => Command::RecordBooking { carrier: carrier_name, tracking_number, service },
            Some(f) => Command::RecordFallbackBooking {
                carrier: carrier_name,
                tracking_number,
                service,
                fallback: Box::new(f),
            },
        };
        let now = self.clock.now();
        let warehouses = self.warehouses.clone();
        let write = OrderWrite {
            target: Target::Id(order.id.clone()),
            meta: WriteMeta { actor: "system:booking".into(), roles: vec![], request_id: None, at: now },
            idempotency: None,
            decide: Box::new(move |cur| decide(cur, cmd.clone(), &Ctx::new(now, &warehouses))),
        };
        // The booking and the job's completion commit together.
        match self.store.execute_finishing(write, job, &self.id).await {
            Ok(_) => {
                metrics::counter!("dispatchd_carrier_bookings_total", "carrier" => carrier.to_string(), "outcome" => "booked")
                    .increment(1);
                Ok(Outcome::BookedAndFinished)
            }
            Err(StoreError::Domain(DomainError::IllegalTransition { from, .. })) => {
                let current = self.store.order(&order.id).await?;
                let same = current
                    .as_ref()
                    .and_then(|o| o.shipment.as_ref())
                    .is_some_and(|s| s.tracking_number == booking.tracking_number);
                if same {
                    return Ok(Outcome::Booked); // recorded by an earlier attempt
                }
                // The order changed meanwhile (cancelled, held): void the label we just bought.
                tracing::warn!(order = %order.id, state = %from, "order left `released` during booking; cancelling the carrier booking");
                if let Some(c) = self.carriers.get(carrier)
                    && let Err(e) = c.adapter.cancel(&booking).await
                {
                    tracing::error!(order = %order.id, error = %e, "could not cancel an unneeded carrier booking");
                }
                metrics::counter!("dispatchd_carrier_bookings_total", "carrier" => carrier.to_string(), "outcome" => "voided")
                    .increment(1);
                Ok(Outcome::Skip("the order left `released` while it was being booked; booking cancelled"))
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use dispatch_integrations::registry::{CarrierConfig, Credentials};
    use serde_json::json;

    use super::*;

    fn carriers(toml_src: &str, default: Option<&str>) -> Carriers {
        let configs: BTreeMap<String, CarrierConfig> = toml::from_str(toml_src).unwrap();
        Carriers::build(&configs, default, &|_| Credentials {
            api_key: Some(dispatch_integrations::Secret::new("k")),
            webhook_secrets: vec![],
        })
        .unwrap()
    }

    fn four() -> Carriers {
        carriers(
            r#"
[alpha]
kind = "easypost"
base_url = "http://127.0.0.1:1"
fallback = ["gamma"]
[beta]
kind = "easypost"
base_url = "http://127.0.0.1:1"
[gamma]
kind = "easypost"
base_url = "http://127.0.0.1:1"
[delta]
kind = "easypost"
base_url = "http://127.0.0.1:1"
"#,
            Some("alpha"),
        )
    }

    fn order(preference: Option<&str>) -> Order {
        let mut o = json!({
            "id": "ord_1", "version": 2, "state": "released", "hold_reasons": [], "priority": 0,
            "source": "odoo", "external_id": "SO-1", "warehouse": "AMS",
            "customer": {"id": "C-1", "name": "Acme", "tier": "silver", "credit_status": "ok"},
            "service_level": "standard", "promised_date": "2026-12-01",
            "ship_to": {"name": "Acme", "street": "Damrak 1", "city": "Amsterdam", "postcode": "1012 LG", "country": "NL"},
            "lines": [{"sku": "P-1", "qty": 1, "qty_allocated": 1, "unit_value": 1.0}],
            "created_at": "2026-11-27T10:00:00Z", "updated_at": "2026-11-27T10:00:00Z",
            "state_since": "2026-11-27T10:00:00Z"
        });
        if let Some(p) = preference {
            o["carrier_preference"] = json!(p);
        }
        serde_json::from_value(o).unwrap()
    }

    fn route(carriers: &[&str], fallbacks: &[&str], auto: bool) -> BookingRoute {
        BookingRoute {
            lane: "eu".into(),
            carriers: carriers.iter().map(|s| s.to_string()).collect(),
            fallbacks: fallbacks.iter().map(|s| s.to_string()).collect(),
            auto_fallback: auto,
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_policy_lane_decides_with_only_configured_carriers() {
        let p = carrier_plan(&order(None), Some(route(&["dhl", "beta", "alpha"], &["gamma", "ups"], true)), &four());
        assert_eq!(p.source, PlanSource::Policy { lane: "eu".into() });
        assert_eq!(p.carriers, strings(&["beta", "alpha"]), "dhl is not configured here");
        assert_eq!(p.fallbacks, strings(&["gamma"]));
        assert!(p.auto_fallback);
    }

    #[test]
    fn without_a_lane_or_a_configured_carrier_of_it_the_configuration_decides() {
        for r in [None, Some(route(&["dhl"], &["ups"], true))] {
            let p = carrier_plan(&order(Some("alpha")), r, &four());
            assert_eq!(p.source, PlanSource::Config);
            assert_eq!(p.carriers, strings(&["alpha"]));
            assert_eq!(p.fallbacks, strings(&["gamma"]), "alpha's configured fallback");
            assert!(p.auto_fallback);
        }
        // No configured preference: the default carrier.
        let p = carrier_plan(&order(Some("nope")), None, &four());
        assert_eq!(p.carriers, strings(&["alpha"]));
        assert!(carrier_plan(&order(None), None, &Carriers::empty()).is_empty());
    }

    #[test]
    fn an_approved_route_override_wins_over_the_lane() {
        let mut o = order(None);
        o.booking_override = Some(dispatch_core::approval::BookingOverride {
            approval_id: "apr_1_1".into(),
            carrier: Some("delta".into()),
            service: None,
        });
        let p = carrier_plan(&o, Some(route(&["alpha"], &["gamma"], true)), &four());
        assert_eq!(p.source, PlanSource::Override { approval_id: "apr_1_1".into() });
        assert_eq!(p.carriers, strings(&["delta"]));
        assert!(p.fallbacks.is_empty());
        // An expedited-freight override names no carrier: the lane decides.
        o.booking_override.as_mut().unwrap().carrier = None;
        let p = carrier_plan(&o, Some(route(&["alpha"], &["gamma"], true)), &four());
        assert_eq!(p.source, PlanSource::Policy { lane: "eu".into() });
    }

    fn plan(carriers: &[&str], fallbacks: &[&str], auto: bool) -> CarrierPlan {
        CarrierPlan {
            source: PlanSource::Policy { lane: "eu".into() },
            carriers: strings(carriers),
            fallbacks: strings(fallbacks),
            auto_fallback: auto,
        }
    }

    #[test]
    fn the_preferred_carrier_is_booked_while_it_is_up() {
        let p = pick(&plan(&["a", "b"], &["f"], true), |_| true, |_| true, &[], true);
        assert_eq!(p, Pick::Book { carrier: "a".into(), fallback: None });
    }

    #[test]
    fn a_down_preferred_carrier_falls_back_and_says_why() {
        let p = pick(&plan(&["a", "b"], &["f"], true), |c| c == "f", |_| true, &[], true);
        let Pick::Book { carrier, fallback: Some(f) } = p else { panic!("{p:?}") };
        assert_eq!(carrier, "f");
        assert_eq!(f.preferred, "a");
        assert_eq!(f.down, strings(&["a", "b"]));
        assert_eq!(f.lane.as_deref(), Some("eu"));
        assert_eq!(f.why, "circuit open");
        // The second allowed carrier before any fallback.
        let p = pick(&plan(&["a", "b"], &["f"], true), |c| c != "a", |_| true, &[], true);
        assert!(matches!(p, Pick::Book { ref carrier, fallback: Some(_) } if carrier == "b"), "{p:?}");
    }

    #[test]
    fn admits_is_asked_in_order_and_stops_at_the_first_yes() {
        let mut asked = Vec::new();
        pick(
            &plan(&["a", "b"], &["f"], true),
            |c| {
                asked.push(c.to_string());
                c == "b"
            },
            |_| true,
            &[],
            true,
        );
        assert_eq!(asked, strings(&["a", "b"]), "a half-open fallback's probe is not spent");
    }

    #[test]
    fn without_automatic_fallback_a_route_override_is_asked_for_once() {
        // The lane's fallback is proposed, never booked directly.
        let p = pick(&plan(&["a"], &["f"], false), |_| false, |_| true, &strings(&["x"]), true);
        assert_eq!(p, Pick::AskOverride { carrier: "f".into(), down: strings(&["a"]) });
        // No fallback on the lane: another configured carrier that is up.
        let p = pick(&plan(&["a"], &[], false), |_| false, |c| c != "x", &strings(&["x", "y"]), true);
        assert_eq!(p, Pick::AskOverride { carrier: "y".into(), down: strings(&["a"]) });
        // Asked before (or nothing is up to propose): wait for the carrier.
        assert_eq!(
            pick(&plan(&["a"], &[], false), |_| false, |_| true, &strings(&["x"]), false),
            Pick::Wait { down: strings(&["a"]) }
        );
        assert_eq!(
            pick(&plan(&["a"], &[], false), |_| false, |_| false, &strings(&["x"]), true),
            Pick::Wait { down: strings(&["a"]) }
        );
        // An allowed carrier up: booked, no approval.
        let p = pick(&plan(&["a", "b"], &[], false), |c| c == "b", |_| true, &[], true);
        assert!(matches!(p, Pick::Book { ref carrier, .. } if carrier == "b"), "{p:?}");
        // A lane without fallbacks forbids falling back even with auto_fallback on.
        let p = pick(&plan(&["a"], &[], true), |_| false, |_| true, &strings(&["x"]), true);
        assert_eq!(p, Pick::AskOverride { carrier: "x".into(), down: strings(&["a"]) });
        // Automatic fallbacks all down too: wait, no approval.
        let p = pick(&plan(&["a"], &["f"], true), |_| false, |_| true, &strings(&["x"]), true);
        assert_eq!(p, Pick::Wait { down: strings(&["a", "f"]) });
    }

    #[test]
    fn the_configurations_plan_never_asks_for_an_approval() {
        let mut p = plan(&["a"], &[], true);
        p.source = PlanSource::Config;
        assert_eq!(pick(&p, |_| false, |_| true, &strings(&["x"]), true), Pick::Wait { down: strings(&["a"]) });
    }

    #[test]
    fn an_approved_override_that_is_down_waits() {
        let mut p = plan(&["o"], &[], false);
        p.source = PlanSource::Override { approval_id: "apr_1_1".into() };
        assert_eq!(pick(&p, |_| false, |_| true, &strings(&["x"]), true), Pick::Wait { down: strings(&["o"]) });
    }

    #[test]
    fn a_route_override_is_requested_once_per_order() {
        let mut o = order(None);
        assert!(may_request_override(&o));
        let request = |status: &str| -> dispatch_core::approval::ApprovalRequest {
            serde_json::from_value(json!({
                "id": "apr_1_1", "order_id": "ord_1", "status": status, "kind": "route_override", "carrier": "x",
                "requester": BOOKING_REQUESTER, "routing": {"policy": "p", "rule": "r", "auto_approve": false, "steps": []},
                "steps": [], "created_at": "2026-11-27T10:00:00Z"
            }))
            .unwrap()
        };
        for (status, may) in
            [("pending", false), ("approved", false), ("rejected", false), ("expired", false), ("withdrawn", true)]
        {
            o.approvals = vec![request(status)];
            assert_eq!(may_request_override(&o), may, "{status}");
        }
    }
}
