//! Background workers. The booking worker takes `book_shipment` jobs from the outbox (written
//! in the same transaction that released the order), books them with a carrier and records the
//! booking through the store like any other command.
//!
//! - Claims jobs under a lease, so a crashed process's jobs are taken over when it expires.
//! - Calls the carrier with the job's dedupe key (`book_shipment:<order>:<release version>`)
//!   as the idempotency key: it does not depend on the attempt, so a retry — after a timeout,
//!   a crash, a lost answer — returns the first booking instead of making a second.
//! - Retries with exponential backoff and full jitter, never sooner than `Retry-After`.
//! - Keeps a circuit breaker per carrier; when the preferred carrier's circuit is open the
//!   next carrier of [`carrier_plan`] is used.
//! - A non-retryable error, or the last attempt failing, makes the job a dead letter (status
//!   `dead` with the last error), puts the order in `exception` with the reason, and counts
//!   `dispatchd_dead_letters_total` for alerting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dispatch_core::effects::BOOK_SHIPMENT;
use dispatch_core::{Command, Ctx, DomainError, Order, OrderState, Warehouses, decide};
use dispatch_integrations::resilience::{Breaker, backoff};
use dispatch_integrations::{Booking, BookingRequest, Carriers};
use dispatch_server::clock::Clock;
use dispatch_store::{Job, JobStatus, OrderWrite, Store, StoreError, Target, WriteMeta};
use rand::Rng;
use tokio::sync::{Semaphore, watch};

use crate::config::BookingConfig;

/// The carriers to try for an order, best first: its preference (when configured, else the
/// default carrier), then that carrier's fallbacks. This is the one place a policy-driven
/// carrier matrix replaces.
pub fn carrier_plan(order: &Order, carriers: &Carriers) -> Vec<String> {
    // An approved route override names the carrier; otherwise the order's preference.
    let approved = order.booking_override.as_ref().and_then(|b| b.carrier.as_deref());
    let configured = |p: &&str| carriers.get(p).is_some();
    let preferred = approved
        .filter(configured)
        .or_else(|| order.facts.carrier_preference.as_deref().filter(configured))
        .or_else(|| carriers.default_carrier());
    let mut plan: Vec<String> = Vec::new();
    if let Some(p) = preferred {
        plan.push(p.to_string());
        if let Some(c) = carriers.get(p) {
            for f in &c.fallback {
                if !plan.contains(f) {
                    plan.push(f.clone());
                }
            }
        }
    }
    plan
}

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
                    tokio::select! {
                        _ = tokio::time::sleep(idle) => {}
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
        let plan = carrier_plan(&order, &self.carriers);
        if plan.is_empty() {
            return Ok(Outcome::Dead { error: "no carrier is configured".into() });
        }
        let now = self.clock.now();
        let chosen = plan.iter().find(|c| self.breaker(c, |b| b.try_acquire(now)).unwrap_or(false));
        let Some(name) = chosen else {
            let reopen = plan.iter().filter_map(|c| self.breaker(c, |b| b.reopens_at()).flatten()).min();
            let at = reopen.unwrap_or(now + chrono::Duration::seconds(1)).max(now + chrono::Duration::milliseconds(50));
            metrics::counter!("dispatchd_carrier_bookings_total", "carrier" => plan[0].clone(), "outcome" => "circuit_open")
                .increment(1);
            return Ok(Outcome::Retry { at, error: format!("every carrier's circuit is open ({})", plan.join(", ")) });
        };
        let Some(carrier) = self.carriers.get(name).cloned() else {
            return Ok(Outcome::Dead { error: format!("carrier {name} is not configured") });
        };
        if name != &plan[0] {
            tracing::info!(order = %order_id, preferred = %plan[0], fallback = %name, "preferred carrier is down: using the fallback");
            metrics::counter!("dispatchd_carrier_fallbacks_total", "from" => plan[0].clone(), "to" => name.clone())
                .increment(1);
        }
        let req = BookingRequest::for_order(&order, &job.dedupe_key);
        metrics::counter!("dispatchd_carrier_booking_attempts_total", "carrier" => name.clone()).increment(1);
        let started = std::time::Instant::now();
        let result = carrier.adapter.book(&req).await;
        metrics::histogram!("dispatchd_carrier_request_duration_seconds", "carrier" => name.clone())
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(booking) => {
                self.breaker(name, |b| b.on_success());
                self.record(name, &order, booking, job.id).await
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

    async fn record(&self, carrier: &str, order: &Order, booking: Booking, job: i64) -> Result<Outcome, StoreError> {
        let cmd = Command::RecordBooking {
            carrier: carrier.to_string(),
            tracking_number: booking.tracking_number.clone(),
            service: booking.service.clone(),
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
