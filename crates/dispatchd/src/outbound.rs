//! The outbound worker: fans published events out to webhook endpoints (and notification
//! rules) and delivers them, signed in the Standard Webhooks format.
//!
//! - `publish_event` jobs are written with the order events that caused them (same
//!   transaction); the fan-out enqueues one `deliver_webhook` job per subscribed, active
//!   endpoint and one `send_notification` job per matching notification rule. Dedupe keys make
//!   a re-run after a crash enqueue nothing twice.
//! - A delivery is at least once: the same `webhook-id` on every attempt, so subscribers
//!   deduplicate. Retries follow `core::outbound::RETRY_SCHEDULE_SECS`; after the last one the
//!   job is a dead letter, retried by hand through `/api/v1/dead-letters/{id}/retry`.
//! - 410 Gone disables the endpoint at once; an endpoint failing without a success for
//!   `disable_after_days` is disabled with an alert. A delivery to a disabled endpoint is a
//!   dead letter (replayable after `POST /api/v1/webhook-endpoints/{id}/enable`).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use dispatch_core::effects::PUBLISH_EVENT;
use dispatch_core::outbound::{Message, Verdict, next_attempt_after, should_disable, subscribed, verdict};
use dispatch_integrations::outbound as wire;
use dispatch_integrations::{Secret, Vault};
use dispatch_server::clock::Clock;
use dispatch_store::{Job, JobStatus, NewJob, Store, StoreError, WebhookEndpointRow};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::notify::Notifier;

pub const DELIVER_WEBHOOK: &str = "deliver_webhook";

/// `[webhooks]`: outbound deliveries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Deliver to webhook endpoints (published events are still fanned out to notifications).
    pub enabled: bool,
    /// An attempt without a 2xx answer within this time has failed (Standard Webhooks: 15 s).
    pub timeout_ms: u64,
    /// An endpoint failing without a single success for this many days is disabled.
    pub disable_after_days: u32,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    pub lease_secs: u64,
    pub poll_ms: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            enabled: true,
            timeout_ms: 15_000,
            disable_after_days: 5,
            concurrency: 16,
            lease_secs: 60,
            poll_ms: 200,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Delivery {
    endpoint_id: String,
    message: Message,
}

pub struct OutboundWorker {
    id: String,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    vault: Option<Arc<Vault>>,
    notifier: Option<Arc<Notifier>>,
    cfg: WebhooksConfig,
    http: reqwest::Client,
}

enum Outcome {
    Done(Option<String>),
    Retry { at: chrono::DateTime<Utc>, error: String },
    Dead(String),
}

impl OutboundWorker {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        vault: Option<Arc<Vault>>,
        notifier: Option<Arc<Notifier>>,
        cfg: WebhooksConfig,
    ) -> Arc<Self> {
        Arc::new(OutboundWorker {
            id: format!("outbound-{}", uuid::Uuid::now_v7().simple()),
            store,
            clock,
            vault,
            notifier,
            cfg,
            http: wire::client(),
        })
    }

    fn kinds(&self) -> Vec<&'static str> {
        let mut k = vec![PUBLISH_EVENT, DELIVER_WEBHOOK];
        if self.notifier.is_some() {
            k.push(crate::notify::SEND_NOTIFICATION);
        }
        k
    }

    /// Claims the jobs due now and processes them (concurrently); the number processed.
    pub async fn run_due(&self) -> Result<usize, StoreError> {
        let lease = chrono::Duration::seconds(self.cfg.lease_secs.max(1) as i64);
        let limit = self.cfg.concurrency.max(1) as u32;
        let jobs = self.store.claim_jobs(&self.id, &self.kinds(), limit, self.clock.now(), lease).await?;
        let n = jobs.len();
        futures::future::join_all(jobs.into_iter().map(|j| self.process(j))).await;
        Ok(n)
    }

    pub fn spawn(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let idle = Duration::from_millis(self.cfg.poll_ms.max(1));
            loop {
                if *shutdown.borrow() {
                    break;
                }
                match self.run_due().await {
                    Ok(0) => {
                        let kinds = self.kinds();
                        tokio::select! {
                            _ = self.store.wait_for_jobs(&kinds, idle) => {}
                            _ = shutdown.changed() => {}
                        }
                    }
                    Ok(_) => {}
                    Err(StoreError::Closed) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot claim outbound jobs");
                        tokio::time::sleep(idle).await;
                    }
                }
            }
        })
    }

    async fn process(&self, job: Job) {
        let outcome = match job.kind.as_str() {
            PUBLISH_EVENT => self.fan_out(&job).await,
            DELIVER_WEBHOOK => self.deliver(&job).await,
            crate::notify::SEND_NOTIFICATION => match &self.notifier {
                Some(n) => n.send(&job, self.store.as_ref(), self.clock.as_ref()).await.map(|o| match o {
                    crate::notify::SendOutcome::Done(note) => Outcome::Done(note),
                    crate::notify::SendOutcome::Retry { at, error } => Outcome::Retry { at, error },
                    crate::notify::SendOutcome::Dead(e) => Outcome::Dead(e),
                }),
                None => Ok(Outcome::Dead("notifications are not configured".into())),
            },
            other => Ok(Outcome::Dead(format!("unknown job kind {other}"))),
        };
        let outcome = outcome.unwrap_or_else(|e| Outcome::Retry {
            at: self.clock.now() + chrono::Duration::seconds(1),
            error: format!("store error: {e}"),
        });
        let result = match outcome {
            Outcome::Done(note) => self.store.finish_job(job.id, &self.id, JobStatus::Done, note.as_deref()).await,
            Outcome::Retry { at, error } => self.store.retry_job(job.id, &self.id, at, &error).await,
            Outcome::Dead(error) => {
                tracing::error!(job = job.id, kind = %job.kind, %error, "outbound job failed for good: dead letter");
                metrics::counter!("dispatchd_dead_letters_total", "kind" => job.kind.clone()).increment(1);
                self.store.finish_job(job.id, &self.id, JobStatus::Dead, Some(&error)).await
            }
        };
        if let Err(e) = result {
            tracing::warn!(job = job.id, error = %e, "could not record the outbound job's outcome; retried after its lease");
        }
    }

    /// One published event → a delivery job per subscribed active endpoint, a notification
    /// job per matching rule.
    async fn fan_out(&self, job: &Job) -> Result<Outcome, StoreError> {
        let message: Message = match serde_json::from_value(job.payload.clone()) {
            Ok(m) => m,
            Err(e) => return Ok(Outcome::Dead(format!("unreadable message: {e}"))),
        };
        let now = self.clock.now();
        let mut jobs = Vec::new();
        let endpoints = if self.cfg.enabled { self.store.webhook_endpoints().await? } else { Vec::new() };
        for e in endpoints {
            let types: Vec<_> =
                e.event_types.iter().filter_map(|t| dispatch_core::outbound::EventType::parse(t)).collect();
            if e.status != "active" || !subscribed(&types, message.event_type) {
                continue;
            }
            let payload = serde_json::to_value(Delivery { endpoint_id: e.id.clone(), message: message.clone() })
                .map_err(StoreError::from)?;
            jobs.push(NewJob {
                kind: DELIVER_WEBHOOK.into(),
                order_id: message.order_id().map(str::to_string),
                dedupe_key: format!("{DELIVER_WEBHOOK}:{}:{}", message.id, e.id),
                payload,
                run_at: now,
            });
        }
        if let Some(n) = &self.notifier {
            jobs.extend(n.plan(&message, self.store.as_ref(), now).await?);
        }
        let queued = self.store.enqueue_jobs(&jobs, now).await?;
        Ok(Outcome::Done(Some(format!("{queued} job(s) queued"))))
    }

    fn secrets(&self, e: &WebhookEndpointRow, now: chrono::DateTime<Utc>) -> Result<Vec<Secret>, String> {
        let vault = self.vault.as_ref().ok_or("no master key configured: cannot open the signing secret")?;
        let purpose = dispatch_server::routes::webhook_endpoints::secret_purpose(&e.id);
        e.secrets
            .iter()
            .filter(|s| s.expires_at.is_none_or(|x| x > now))
            .map(|s| vault.open(&purpose, &s.sealed).map_err(|err| format!("signing secret: {err}")))
            .collect()
    }

    async fn deliver(&self, job: &Job) -> Result<Outcome, StoreError> {
        let d: Delivery = match serde_json::from_value(job.payload.clone()) {
            Ok(d) => d,
            Err(e) => return Ok(Outcome::Dead(format!("unreadable delivery: {e}"))),
        };
        let Some(endpoint) = self.store.webhook_endpoint(&d.endpoint_id).await? else {
            return Ok(Outcome::Done(Some("endpoint deleted; not sent".into())));
        };
        if endpoint.status != "active" {
            let why = endpoint.disabled_reason.as_deref().unwrap_or("disabled");
            return Ok(Outcome::Dead(format!("endpoint {} is disabled ({why})", endpoint.id)));
        }
        let now = self.clock.now();
        let secrets = match self.secrets(&endpoint, now) {
            Ok(s) => s,
            Err(e) => return self.failed(job, &endpoint, e).await,
        };
        let body = serde_json::to_vec(&d.message.body()).map_err(StoreError::from)?;
        let ts = now.timestamp();
        let signature = match wire::signature(&secrets, &d.message.id, ts, &body) {
            Ok(s) => s,
            Err(e) => return Ok(Outcome::Dead(format!("cannot sign: {e}"))),
        };
        let timeout = Duration::from_millis(self.cfg.timeout_ms.max(1));
        let attempt = wire::deliver(&self.http, &endpoint.url, &d.message.id, ts, &body, &signature, timeout).await;
        match verdict(attempt.status) {
            Verdict::Delivered => {
                metrics::counter!("dispatchd_webhook_deliveries_total", "outcome" => "delivered").increment(1);
                self.store.record_webhook_result(&endpoint.id, true, self.clock.now()).await?;
                Ok(Outcome::Done(None))
            }
            Verdict::Gone => {
                metrics::counter!("dispatchd_webhook_deliveries_total", "outcome" => "gone").increment(1);
                let reason = "the endpoint answered 410 Gone";
                self.store.set_webhook_status(&endpoint.id, "disabled", Some(reason), self.clock.now()).await?;
                tracing::warn!(endpoint = %endpoint.id, url = %endpoint.url, "webhook endpoint disabled: 410 Gone");
                Ok(Outcome::Dead(format!("{reason}; endpoint disabled")))
            }
            Verdict::Retry => {
                let error = attempt.error.unwrap_or_else(|| "failed".into());
                self.failed(job, &endpoint, error).await
            }
        }
    }

    /// A failed attempt: retry on the schedule, dead letter when it is spent, and disable an
    /// endpoint that has not succeeded for `disable_after_days`.
    async fn failed(&self, job: &Job, endpoint: &WebhookEndpointRow, error: String) -> Result<Outcome, StoreError> {
        metrics::counter!("dispatchd_webhook_deliveries_total", "outcome" => "failed").increment(1);
        let now = self.clock.now();
        let after = self.store.record_webhook_result(&endpoint.id, false, now).await?;
        let failing_since = after.and_then(|e| e.failing_since);
        let limit = chrono::Duration::days(i64::from(self.cfg.disable_after_days.max(1)));
        if should_disable(failing_since, now, limit) {
            let reason = format!("no successful delivery for {} days", self.cfg.disable_after_days);
            self.store.set_webhook_status(&endpoint.id, "disabled", Some(&reason), now).await?;
            // The alert: an error log, a metric that alerting rules watch, and `alert.raised`
            // (other subscribers and, by the default rules, a mail to the internal team).
            tracing::error!(endpoint = %endpoint.id, url = %endpoint.url, %reason, "ALERT: webhook endpoint disabled");
            metrics::counter!("dispatchd_webhook_endpoints_disabled_total", "reason" => "failing").increment(1);
            let msg = format!("webhook endpoint {} ({}) disabled: {reason}", endpoint.id, endpoint.url);
            let alert = format!("webhook_endpoint_disabled_{}", endpoint.id);
            crate::monitors::raise(self.store.as_ref(), now, &alert, "critical", msg, &[]).await?;
            return Ok(Outcome::Dead(format!("{error}; endpoint disabled: {reason}")));
        }
        let attempts = u32::try_from(job.attempts.max(1)).unwrap_or(u32::MAX);
        match next_attempt_after(attempts) {
            Some(delay) => Ok(Outcome::Retry { at: now + delay, error }),
            None => Ok(Outcome::Dead(format!("gave up after {attempts} attempts; last error: {error}"))),
        }
    }
}

/// A `publish_event` job for an event that is not an order event (a dead letter, an alert).
pub fn publish_job(message: &Message) -> NewJob {
    NewJob {
        kind: PUBLISH_EVENT.into(),
        order_id: message.order_id().map(str::to_string),
        dedupe_key: format!("{PUBLISH_EVENT}:{}", message.id),
        payload: dispatch_core::effects::publish_payload(message),
        run_at: message.timestamp,
    }
}
