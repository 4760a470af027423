//! Scheduled actions: durable schedules run on one leader among the nodes. Each due tick is
//! claimed in the database (so it runs once even if two nodes briefly both think they lead),
//! missed ticks after downtime collapse into one run, a failing action is retried with
//! backoff, and repeated failures raise an alert instead of failing silently.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use async_trait::async_trait;
use chrono::Utc;
use dispatch_core::OrderState;
use dispatch_core::schedule::{ALERT_AFTER_FAILURES, Cadence, due, retry_at};
use dispatch_server::AppState;
use dispatch_server::clock::Clock;
use dispatch_store::{LeaderLease, OrderQuery, RunEnd, Store};
use serde::{Deserialize, Serialize};

/// A schedule as configured: `cadence` is a cron expression (UTC) or `every 5m`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    pub name: String,
    pub cadence: String,
    pub action: String,
}

pub fn default_schedules() -> Vec<ScheduleConfig> {
    vec![
        ScheduleConfig { name: "heartbeat".into(), cadence: "every 1m".into(), action: "heartbeat".into() },
        ScheduleConfig {
            name: "reevaluate-open-orders".into(),
            cadence: "every 5m".into(),
            action: "reevaluate_open".into(),
        },
        ScheduleConfig { name: "queue-aging".into(), cadence: "every 5m".into(), action: "queue_aging".into() },
        ScheduleConfig { name: "stalled-records".into(), cadence: "every 5m".into(), action: "stalled_records".into() },
        ScheduleConfig { name: "cutoff-risk".into(), cadence: "every 15m".into(), action: "cutoff_risk".into() },
        ScheduleConfig { name: "retention".into(), cadence: "30 3 * * *".into(), action: "retention".into() },
        ScheduleConfig { name: "approvals-sweep".into(), cadence: "every 1m".into(), action: "approvals_sweep".into() },
    ]
}

/// What a schedule does. Returns a one-line summary, or why it failed.
#[async_trait]
pub trait ScheduledAction: Send + Sync {
    async fn run(&self) -> Result<String, String>;
}

/// Records that the scheduler is alive: alert on `dispatchd_scheduler_heartbeat_seconds` age.
pub struct Heartbeat {
    pub clock: Arc<dyn Clock>,
}

#[async_trait]
impl ScheduledAction for Heartbeat {
    async fn run(&self) -> Result<String, String> {
        metrics::gauge!("dispatchd_scheduler_heartbeat_seconds").set(self.clock.now().timestamp() as f64);
        Ok("alive".into())
    }
}

/// Runs the readiness checks again, under the active policy, for held and released orders:
/// time passes (cut-offs), and a blocking fact may have changed. Only a changed outcome is
/// recorded.
pub struct ReevaluateOpen {
    pub app: Arc<AppState>,
}

#[async_trait]
impl ScheduledAction for ReevaluateOpen {
    async fn run(&self) -> Result<String, String> {
        let q = OrderQuery { states: vec![OrderState::OnHold, OrderState::Released], ..Default::default() };
        let pass =
            dispatch_server::policy::reevaluate(&self.app, q, "system:scheduler").await.map_err(|e| e.to_string())?;
        Ok(format!("{} orders re-evaluated, {} changed", pass.checked, pass.changed))
    }
}

/// Refreshes time-dependent priorities of released orders (incremental: only orders whose
/// score can have changed).
pub struct RefreshPriorities {
    pub app: Arc<AppState>,
}

#[async_trait]
impl ScheduledAction for RefreshPriorities {
    async fn run(&self) -> Result<String, String> {
        let pass = dispatch_server::policy::refresh_priorities(&self.app).await.map_err(|e| e.to_string())?;
        Ok(format!("{} priorities checked, {} changed", pass.checked, pass.changed))
    }
}

/// Escalates approval steps past their SLA and expires requests past their deadline, at the
/// injected clock's time (the due times are stored with the orders: durable across restarts).
pub struct ApprovalsSweep {
    pub app: Arc<AppState>,
}

#[async_trait]
impl ScheduledAction for ApprovalsSweep {
    async fn run(&self) -> Result<String, String> {
        let s = dispatch_server::approvals::sweep(&self.app, "system:scheduler").await.map_err(|e| e.to_string())?;
        Ok(format!("{} approval steps escalated, {} requests expired", s.escalated, s.expired))
    }
}

struct Entry {
    config: ScheduleConfig,
    cadence: Cadence,
    action: Arc<dyn ScheduledAction>,
}

pub struct Scheduler {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    node: String,
    entries: BTreeMap<String, Entry>,
    /// A run that started longer ago than this is presumed dead and may be taken over.
    pub stale_after: chrono::Duration,
    lease: tokio::sync::Mutex<Option<Box<dyn LeaderLease>>>,
}

pub const LEADER_LOCK: &str = "dispatchd-scheduler";

impl Scheduler {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, node: String) -> Self {
        Scheduler {
            store,
            clock,
            node,
            entries: BTreeMap::new(),
            stale_after: chrono::Duration::minutes(15),
            lease: tokio::sync::Mutex::new(None),
        }
    }

    /// Adds a schedule, refusing a bad cadence with a message that says which schedule.
    pub fn add(&mut self, config: ScheduleConfig, action: Arc<dyn ScheduledAction>) -> Result<()> {
        let cadence = Cadence::parse(&config.cadence).with_context(|| format!("schedule `{}`", config.name))?;
        self.entries.insert(config.name.clone(), Entry { config, cadence, action });
        Ok(())
    }

    /// Stores the configured schedules (new ones start at their next tick).
    pub async fn register(&self) -> Result<()> {
        let now = self.clock.now();
        for e in self.entries.values() {
            self.store
                .ensure_schedule(&e.config.name, &e.config.cadence, &e.config.action, e.cadence.next_after(now))
                .await?;
        }
        Ok(())
    }

    /// One pass: if this node leads, run every due schedule once. Returns how many ran.
    pub async fn tick(&self) -> Result<usize> {
        let new_leader = {
            let mut lease = self.lease.lock().await;
            let was_leading = lease.is_some();
            if !was_leading {
                *lease = self.store.try_lead(LEADER_LOCK).await?;
                if lease.is_some() {
                    tracing::info!(node = %self.node, "this node now runs the scheduled actions");
                }
            }
            if lease.is_none() {
                return Ok(0);
            }
            !was_leading
        };
        let mut ran = 0;
        for row in self.store.schedules().await? {
            let Some(entry) = self.entries.get(&row.name) else { continue };
            let now = self.clock.now();
            let Some(d) = due(&entry.cadence, row.next_run_at, now) else { continue };
            // Leadership only passes when the previous leader's lease is gone (its process or
            // its database session died): a run it left `running` is dead, take it over now
            // rather than after `stale_after`.
            let stale_before = if new_leader { now } else { now - self.stale_after };
            let Some(run_id) = self.store.begin_run(&row.name, d.scheduled_for, &self.node, now, stale_before).await?
            else {
                continue; // running elsewhere, or another node just took this tick
            };
            let started = std::time::Instant::now();
            let result = entry.action.run().await;
            let finished = self.clock.now();
            let end = match &result {
                Ok(summary) => RunEnd {
                    ok: true,
                    summary: Some(summary.clone()),
                    error: None,
                    next_run_at: d.next_regular,
                    consecutive_failures: 0,
                },
                Err(e) => {
                    let failures = row.consecutive_failures + 1;
                    RunEnd {
                        ok: false,
                        summary: None,
                        error: Some(e.clone()),
                        next_run_at: retry_at(failures, finished, entry.cadence.next_after(finished)),
                        consecutive_failures: failures,
                    }
                }
            };
            self.store.end_run(run_id, &row.name, &end, finished).await?;
            let outcome = if end.ok { "ok" } else { "failed" };
            metrics::counter!("dispatchd_schedule_runs_total", "schedule" => row.name.clone(), "outcome" => outcome)
                .increment(1);
            metrics::histogram!("dispatchd_schedule_run_seconds", "schedule" => row.name.clone())
                .record(started.elapsed().as_secs_f64());
            let alerting = end.consecutive_failures >= ALERT_AFTER_FAILURES;
            metrics::gauge!("dispatchd_schedule_alerting", "schedule" => row.name.clone()).set(if alerting {
                1.0
            } else {
                0.0
            });
            match (&result, alerting) {
                (Err(e), true) => tracing::error!(
                    schedule = %row.name, failures = end.consecutive_failures, error = %e,
                    "ALERT: scheduled action keeps failing; it is retried with backoff"
                ),
                (Err(e), false) => {
                    tracing::warn!(schedule = %row.name, error = %e, "scheduled action failed; will retry")
                }
                (Ok(s), _) => tracing::debug!(schedule = %row.name, summary = %s, "scheduled action ran"),
            }
            ran += 1;
        }
        Ok(ran)
    }

    /// Ticks every `every` until `stop` resolves. Errors (a database outage) are logged and
    /// the loop goes on; a lost leadership is re-contested.
    pub async fn run(self, every: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        if let Err(e) = self.register().await {
            tracing::error!(error = %e, "could not register schedules");
        }
        loop {
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "scheduler tick failed");
                // The session holding the lock may be gone with the error: contest again.
                *self.lease.lock().await = None;
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

/// A name for this node in run records: host, process and a random suffix.
pub fn node_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "node".into());
    format!("{host}-{}-{}", std::process::id(), Utc::now().timestamp_subsec_micros())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use chrono::TimeZone;
    use dispatch_server::clock::ManualClock;
    use dispatch_store::testing::Location;

    use super::*;

    struct Counting {
        runs: AtomicUsize,
        fail: AtomicBool,
        gate: Option<Arc<tokio::sync::Notify>>,
    }

    impl Counting {
        fn new(fail: bool, gate: Option<Arc<tokio::sync::Notify>>) -> Arc<Self> {
            Arc::new(Counting { runs: AtomicUsize::new(0), fail: AtomicBool::new(fail), gate })
        }
    }

    #[async_trait]
    impl ScheduledAction for Counting {
        async fn run(&self) -> Result<String, String> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            if let Some(g) = &self.gate {
                g.notified().await;
            }
            if self.fail.load(Ordering::SeqCst) { Err("carrier API down".into()) } else { Ok("done".into()) }
        }
    }

    fn t0() -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap()
    }

    async fn setup(action: Arc<Counting>) -> (tempfile::TempDir, Arc<ManualClock>, Arc<Scheduler>, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Location::fresh(dir.path()).await.open().await;
        let clock = Arc::new(ManualClock::new(t0()));
        let mut s = Scheduler::new(store.clone(), clock.clone(), "node-a".into());
        s.add(ScheduleConfig { name: "sweep".into(), cadence: "every 1m".into(), action: "test".into() }, action)
            .unwrap();
        s.register().await.unwrap();
        (dir, clock, Arc::new(s), store)
    }

    #[tokio::test]
    async fn runs_when_due_and_once_after_downtime() {
        let action = Counting::new(false, None);
        let (_dir, clock, s, store) = setup(action.clone()).await;
        assert_eq!(s.tick().await.unwrap(), 0, "not due before its first tick");
        clock.advance(chrono::Duration::minutes(1));
        assert_eq!(s.tick().await.unwrap(), 1);
        assert_eq!(s.tick().await.unwrap(), 0, "a tick runs once");
        // Down for two hours: 120 missed ticks collapse into one run.
        clock.advance(chrono::Duration::hours(2));
        assert_eq!(s.tick().await.unwrap(), 1);
        assert_eq!(s.tick().await.unwrap(), 0);
        assert_eq!(action.runs.load(Ordering::SeqCst), 2);
        let row = &store.schedules().await.unwrap()[0];
        assert_eq!(row.next_run_at, t0() + chrono::Duration::minutes(122), "next tick counted from now");
        let runs = store.schedule_runs("sweep", 10).await.unwrap();
        assert_eq!(runs.len(), 2);
        assert!(runs.iter().all(|r| r.outcome == "ok" && r.node == "node-a" && r.finished_at.is_some()));
    }

    #[tokio::test]
    async fn no_overlapping_runs_of_one_schedule() {
        let gate = Arc::new(tokio::sync::Notify::new());
        let action = Counting::new(false, Some(gate.clone()));
        let (_dir, clock, s, store) = setup(action.clone()).await;
        clock.advance(chrono::Duration::minutes(1));
        let first = {
            let s = s.clone();
            tokio::spawn(async move { s.tick().await.unwrap() })
        };
        while action.runs.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // The first run is still going; even much later nothing starts beside it.
        clock.advance(chrono::Duration::minutes(5));
        assert_eq!(s.tick().await.unwrap(), 0);
        assert!(store.schedules().await.unwrap()[0].running_since.is_some());
        gate.notify_one();
        assert_eq!(first.await.unwrap(), 1);
        assert_eq!(action.runs.load(Ordering::SeqCst), 1);
        assert!(store.schedules().await.unwrap()[0].running_since.is_none());
    }

    #[tokio::test]
    async fn failures_retry_with_backoff_and_alert() {
        let action = Counting::new(true, None);
        let (_dir, clock, s, store) = setup(action.clone()).await;
        clock.advance(chrono::Duration::minutes(1));
        for (n, wait) in [(1u32, 10), (2, 20), (3, 40)] {
            assert_eq!(s.tick().await.unwrap(), 1);
            let row = &store.schedules().await.unwrap()[0];
            assert_eq!(row.consecutive_failures, n);
            assert_eq!(row.last_error.as_deref(), Some("carrier API down"));
            assert_eq!(row.next_run_at, clock.now() + chrono::Duration::seconds(wait), "backoff after failure {n}");
            assert_eq!(s.tick().await.unwrap(), 0, "not before the backoff");
            clock.advance(chrono::Duration::seconds(wait));
        }
        assert!(store.schedules().await.unwrap()[0].consecutive_failures >= ALERT_AFTER_FAILURES);
        action.fail.store(false, Ordering::SeqCst);
        assert_eq!(s.tick().await.unwrap(), 1);
        let row = &store.schedules().await.unwrap()[0];
        assert_eq!((row.consecutive_failures, row.last_outcome.as_deref()), (0, Some("ok")));
        let runs = store.schedule_runs("sweep", 10).await.unwrap();
        assert_eq!(runs.iter().filter(|r| r.outcome == "failed").count(), 3);
    }

    #[tokio::test]
    async fn only_the_leader_runs_schedules() {
        let action = Counting::new(false, None);
        let (dir, clock, leader, _store) = setup(action.clone()).await;
        let _ = dir;
        clock.advance(chrono::Duration::minutes(1));
        assert_eq!(leader.tick().await.unwrap(), 1);
        // A second scheduler on the same store (another node) does nothing while the first leads.
        let mut follower = Scheduler::new(leader.store.clone(), clock.clone(), "node-b".into());
        follower
            .add(
                ScheduleConfig { name: "sweep".into(), cadence: "every 1m".into(), action: "test".into() },
                action.clone(),
            )
            .unwrap();
        clock.advance(chrono::Duration::minutes(1));
        assert_eq!(follower.tick().await.unwrap(), 0);
        assert_eq!(leader.tick().await.unwrap(), 1);
        assert_eq!(action.runs.load(Ordering::SeqCst), 2);
    }

    /// The built-in `approvals_sweep` schedule escalates a request whose step waited past its
    /// SLA — after a restart, at the injected clock's time: the due time is stored.
    #[tokio::test]
    async fn the_approvals_sweep_escalates_after_a_restart() {
        use dispatch_core::approval::{ApprovalDraft, ApprovalStatus};
        use dispatch_core::{Command, Role, Warehouse, Warehouses};
        use dispatch_server::AppState;
        use dispatch_store::{OrderWrite, Target, WriteMeta, decision};

        let dir = tempfile::tempdir().unwrap();
        let loc = Location::fresh(dir.path()).await;
        let whs = || {
            let list: Vec<Warehouse> =
                serde_json::from_value(serde_json::json!([{"code": "AMS", "name": "Amsterdam DC",
                "country": "NL", "timezone": "Europe/Amsterdam", "cutoffs": {"next_day": "17:00"}}]))
                .unwrap();
            Warehouses::new(list).unwrap()
        };
        // 17:30 in Amsterdam: past the next-day cut-off.
        let start = Utc.with_ymd_and_hms(2026, 11, 24, 16, 30, 0).unwrap();
        let clock = Arc::new(ManualClock::new(start));
        let app = AppState::new(loc.open().await, whs(), clock.clone());
        let sched = crate::app::scheduler(app.clone(), &default_schedules()).unwrap();
        sched.register().await.unwrap();
        let facts: dispatch_core::OrderFacts = serde_json::from_value(serde_json::json!({
            "source": "odoo", "external_id": "WH1/OUT/9", "warehouse": "AMS",
            "customer": {"id": "C-1", "name": "Acme BV"}, "service_level": "next_day", "promised_date": "2026-11-25",
            "ship_to": {"name": "Acme BV", "street": "Damrak 1", "city": "Amsterdam", "postcode": "1012 LG", "country": "NL"},
            "lines": [{"sku": "P-1", "qty": 1, "qty_allocated": 1, "unit_value": 10.0}], "documents": []
        }))
        .unwrap();
        let policy: Arc<dyn dispatch_core::Evaluator> = Arc::new(dispatch_server::policy::Active(app.policy.policy()));
        let write = |target: Target, cmd: Command| OrderWrite {
            target,
            meta: WriteMeta {
                actor: "token:disp".into(),
                roles: vec!["dispatcher".into()],
                request_id: None,
                at: start,
            },
            idempotency: None,
            decide: decision(cmd, start, app.warehouses.clone(), policy.clone()),
        };
        let key = Target::NaturalKey { source: "odoo".into(), external_id: "WH1/OUT/9".into() };
        let o = app
            .store
            .execute(write(key, Command::Upsert { facts: Box::new(facts), expected_version: None }))
            .await
            .unwrap()
            .order;
        let draft = ApprovalDraft {
            kind: "expedited_freight".into(),
            reason: Some("line down".into()),
            amount: None,
            currency: None,
            cost_center: Some("CC-1".into()),
            lines: vec![],
            carrier: None,
            service: Some(dispatch_core::ServiceLevel::SameDay),
        };
        let cmd = Command::RequestApproval {
            draft: Box::new(draft),
            requester: "token:disp".into(),
            roles: vec![Role::Dispatcher],
        };
        let o = app.store.execute(write(Target::Id(o.id.clone()), cmd)).await.unwrap().order;
        assert_eq!(o.approvals[0].status, ApprovalStatus::Pending);
        app.store.close().await;
        drop((sched, app));

        // Back two hours later (the SLA is one hour).
        let later = Arc::new(ManualClock::new(start + chrono::Duration::hours(2)));
        let app = AppState::new(loc.open().await, whs(), later.clone());
        let sched = crate::app::scheduler(app.clone(), &default_schedules()).unwrap();
        sched.register().await.unwrap();
        assert!(sched.tick().await.unwrap() >= 1);
        let o = app.store.order(&o.id).await.unwrap().unwrap();
        assert_eq!(o.approvals[0].steps[0].escalated_at, Some(start + chrono::Duration::hours(2)));
        let runs = app.store.schedule_runs("approvals-sweep", 5).await.unwrap();
        assert_eq!(runs[0].summary.as_deref(), Some("1 approval steps escalated, 0 requests expired"));
    }
}
