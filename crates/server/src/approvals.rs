//! The shell around `core::approval`: the periodic sweep that escalates and expires requests
//! (durable: the due times live in the orders' projections, so a restart loses nothing), the
//! worker that creates backorder remainders from the outbox, inbox reads, and the approval
//! metrics.

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use dispatch_core::approval::{self, ApprovalRequest, ApprovalStatus, SplitLink};
use dispatch_core::effects::CREATE_REMAINDER;
use dispatch_core::{Command, Ctx, Order, OrderFacts, OrderState, decide};
use dispatch_store::{JobStatus, OrderQuery, OrderWrite, StoreError, Target, WriteMeta};

use crate::AppState;
use crate::policy::Active;

/// Every order with a pending request (a pending request keeps its order `awaiting_approval`).
pub async fn awaiting_orders(app: &AppState) -> Result<Vec<Order>, StoreError> {
    let mut q = OrderQuery { states: vec![OrderState::AwaitingApproval], limit: 500, ..Default::default() };
    let mut out = Vec::new();
    loop {
        let page = app.store.list_orders(&q).await?;
        out.extend(page.items);
        match page.next_after {
            Some(after) => q.after_id = Some(after),
            None => return Ok(out),
        }
    }
}

/// Counts of one sweep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sweep {
    pub escalated: u64,
    pub expired: u64,
}

/// Escalates steps past their SLA and expires requests past their deadline, at the injected
/// clock's time. Run by the `approvals_sweep` scheduled action; re-running it is harmless.
pub async fn sweep(app: &AppState, actor: &str) -> Result<Sweep, StoreError> {
    let now = app.clock.now();
    let mut out = Sweep::default();
    for o in awaiting_orders(app).await? {
        if !o.approvals.iter().any(|a| approval::due(a, now).is_some()) {
            continue;
        }
        let warehouses = app.warehouses.clone();
        let policy = app.policy.policy();
        let write = OrderWrite {
            target: Target::Id(o.id.clone()),
            meta: WriteMeta { actor: actor.to_string(), roles: vec![], request_id: None, at: now },
            idempotency: None,
            decide: Box::new(move |cur| {
                let rules = Active(policy.clone());
                let ctx = Ctx { now, warehouses: &warehouses, rules: &rules };
                decide(cur, Command::SweepApprovals, &ctx)
            }),
        };
        let outcome = app.store.execute(write).await?;
        let at = now.trunc_subsecs(6);
        for a in &outcome.order.approvals {
            for s in a.steps.iter().filter(|s| s.escalated_at == Some(at)) {
                let _ = s;
                out.escalated += 1;
                metrics::counter!("dispatchd_approval_escalations_total", "kind" => a.draft.kind.clone()).increment(1);
                tracing::warn!(approval = %a.id, order = %a.order_id, kind = %a.draft.kind, "approval step waited past its SLA: escalated");
            }
            if a.status == ApprovalStatus::Expired && a.closed_at == Some(at) {
                out.expired += 1;
            }
        }
        observe(&outcome.order, now);
    }
    Ok(out)
}

/// Records the approval metrics for what a committed write at `now` did to `order`.
pub fn observe(order: &Order, now: DateTime<Utc>) {
    let at = now.trunc_subsecs(6);
    for a in &order.approvals {
        let kind = a.draft.kind.clone();
        if a.created_at.trunc_subsecs(6) == at {
            let route = if a.routing.auto_approve { "auto" } else { "people" };
            metrics::counter!("dispatchd_approvals_requested_total", "kind" => kind.clone(), "route" => route)
                .increment(1);
        }
        for (i, s) in a.steps.iter().enumerate() {
            for d in s.decisions.iter().filter(|d| d.at == at) {
                let waited = (d.at - s.active_since.unwrap_or(a.created_at)).num_milliseconds().max(0) as f64 / 1000.0;
                metrics::histogram!("dispatchd_approval_decision_seconds", "kind" => kind.clone(), "step" => (i + 1).to_string())
                    .record(waited);
            }
        }
        if a.closed_at == Some(at) {
            metrics::counter!("dispatchd_approvals_closed_total", "kind" => kind.clone(), "status" => a.status.code())
                .increment(1);
        }
    }
}

/// `dispatchd_approvals_pending{kind}` at scrape time.
pub async fn refresh_gauges(app: &AppState) -> Result<(), StoreError> {
    let mut counts: std::collections::BTreeMap<String, u64> =
        dispatch_core::ApprovalKind::ALL.iter().map(|k| (k.code().to_string(), 0)).collect();
    for o in awaiting_orders(app).await? {
        for a in o.approvals.iter().filter(|a| a.status == ApprovalStatus::Pending) {
            *counts.entry(a.draft.kind.clone()).or_default() += 1;
        }
    }
    for (kind, n) in counts {
        metrics::gauge!("dispatchd_approvals_pending", "kind" => kind).set(n as f64);
    }
    Ok(())
}

/// The pending requests `actor` with `roles` may decide now.
pub fn inbox<'o>(
    orders: &'o [Order],
    actor: &str,
    roles: &[dispatch_core::Role],
) -> Vec<(&'o Order, &'o ApprovalRequest)> {
    orders
        .iter()
        .flat_map(|o| o.approvals.iter().map(move |a| (o, a)))
        .filter(|(_, a)| a.decidable_by(actor, roles))
        .collect()
}

/// Claims `create_remainder` jobs and creates each backorder remainder (an order of its own,
/// keyed by the parent's external id + `-BO<n>`, linked back to the parent and the approval).
/// The remainder and the job's completion commit together; a retry is a no-op.
pub async fn create_remainders(app: &AppState, worker: &str) -> Result<usize, StoreError> {
    let now = app.clock.now();
    let jobs = app.store.claim_jobs(worker, &[CREATE_REMAINDER], 16, now, chrono::Duration::seconds(60)).await?;
    let mut done = 0;
    for job in jobs {
        let parsed = (
            serde_json::from_value::<OrderFacts>(job.payload["facts"].clone()),
            serde_json::from_value::<SplitLink>(job.payload["link"].clone()),
        );
        let (Ok(facts), Ok(link)) = parsed else {
            tracing::error!(job = job.id, "create_remainder job has an unreadable payload: dead letter");
            app.store.finish_job(job.id, worker, JobStatus::Dead, Some("unreadable payload")).await?;
            continue;
        };
        let warehouses = app.warehouses.clone();
        let policy = app.policy.policy();
        let target = Target::NaturalKey { source: facts.source.clone(), external_id: facts.external_id.clone() };
        let cmd = Command::CreateRemainder { facts: Box::new(facts), link };
        let write = OrderWrite {
            target,
            meta: WriteMeta { actor: "system:approvals".into(), roles: vec![], request_id: None, at: now },
            idempotency: None,
            decide: Box::new(move |cur| {
                let rules = Active(policy.clone());
                let ctx = Ctx { now, warehouses: &warehouses, rules: &rules };
                decide(cur, cmd.clone(), &ctx)
            }),
        };
        match app.store.execute_finishing(write, job.id, worker).await {
            Ok(outcome) => {
                crate::metrics::record_write(&outcome);
                done += 1;
            }
            Err(StoreError::Domain(e)) => {
                tracing::error!(job = job.id, error = %e, "backorder remainder refused: dead letter");
                app.store.finish_job(job.id, worker, JobStatus::Dead, Some(&e.to_string())).await?;
            }
            Err(e) => {
                let at = app.clock.now() + chrono::Duration::seconds(5);
                app.store.retry_job(job.id, worker, at, &e.to_string()).await?;
            }
        }
    }
    Ok(done)
}

/// Runs [`create_remainders`] until `stop` turns true, woken by new jobs.
pub fn spawn_remainder_worker(
    app: Arc<AppState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let worker = format!("remainders-{}", uuid::Uuid::now_v7().simple());
    tokio::spawn(async move {
        loop {
            if *stop.borrow() {
                return;
            }
            match create_remainders(&app, &worker).await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "creating backorder remainders failed; retrying"),
            }
            tokio::select! {
                _ = app.store.wait_for_jobs(&[CREATE_REMAINDER], std::time::Duration::from_secs(1)) => {}
                _ = stop.changed() => {}
            }
        }
    })
}
