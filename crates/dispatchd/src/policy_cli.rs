//! `dispatchd policy check|replay|explain`: the policy from the command line.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use dispatch_core::EventData;
use dispatch_policy::Policy;

use crate::app;
use crate::config::{self, Config};

/// Checks a policy file; prints `file:line:col: message` for every problem.
pub fn check(file: &Path, cfg: Option<&Config>) -> Result<()> {
    let codes: Option<Vec<String>> = cfg.map(|c| c.warehouses.iter().map(|w| w.code.clone()).collect());
    let p = config::load_policy(file, codes.as_deref())?;
    println!(
        "{}: ok — policy `{}` ({}), {} rules, {} priority terms, {} carrier lanes",
        file.display(),
        p.name,
        p.hash,
        p.rules.len(),
        p.terms.len(),
        p.carriers.lanes.len()
    );
    Ok(())
}

pub struct ReplayArgs<'a> {
    pub candidate: &'a Path,
    pub since: Option<DateTime<Utc>>,
    pub json: bool,
    pub examples: usize,
}

/// What-if replay against the recorded decisions of a data directory. Reads only.
pub async fn replay(args: ReplayArgs<'_>, cfg: &Config) -> Result<()> {
    let codes: Vec<String> = cfg.warehouses.iter().map(|w| w.code.clone()).collect();
    let candidate = config::load_policy(args.candidate, Some(&codes))?;
    let warehouses = Arc::new(cfg.warehouses()?);
    let store = app::open_store(cfg).await?;
    let bar = app::progress(0, "replaying recorded decisions");
    let run = dispatch_server::policy::ReplayRun::new(args.since, args.examples);
    let started = std::time::Instant::now();
    let tick = bar.clone();
    let report = dispatch_server::policy::replay_event_log(
        store.clone(),
        Arc::new(candidate),
        warehouses,
        &run,
        Arc::new(move |n| tick.inc(n)),
    )
    .await;
    store.close().await;
    bar.finish_and_clear();
    let report = report.context("replaying the event log")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
        eprintln!(
            "\nread and replayed {} decisions in {:.2?} on {} thread(s); nothing was changed",
            report.decisions,
            started.elapsed(),
            run.threads
        );
    }
    Ok(())
}

/// Why an order is where it is: the last decision with its rules, values, priority, carrier.
pub async fn explain(order_id: &str, cfg: &Config, json: bool) -> Result<()> {
    let store = app::open_store(cfg).await?;
    let order = store.order(order_id).await;
    let events = store.events(order_id).await;
    store.close().await;
    let Some(order) = order? else { bail!("order `{order_id}` does not exist in {}", cfg.database()?) };
    let events = events?;
    let Some((version, e)) = events.iter().rev().find_map(|ev| match &ev.data {
        EventData::Evaluated(e) => Some((ev.version, e)),
        _ => None,
    }) else {
        bail!("order `{order_id}` was never evaluated");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(e)?);
        return Ok(());
    }
    let (policy, _) = cfg.policy()?;
    let current = if e.policy == policy.hash { "the policy in force" } else { "an earlier policy" };
    println!("{} {} ({}) is {}", order.id, order.facts.external_id, order.facts.warehouse, order.state);
    println!("decided at {} (event {version}) by {} — {current}", e.inputs.now.to_rfc3339(), e.policy);
    if e.hold_reasons.is_empty() {
        println!("\nreleased: every rule passed");
    } else {
        println!("\nheld because:");
        for r in &e.hold_reasons {
            let text = exception(&policy, *r);
            println!("  {r}{text}");
        }
    }
    if !e.rules.is_empty() {
        println!("\nrules that fired:");
        for r in &e.rules {
            println!("  {} ({}): {}", r.rule, r.kind, r.message);
            for (path, v) in &r.seen {
                println!("      {path} = {v}");
            }
            if let Some(err) = &r.error {
                println!("      error: {err}");
            }
        }
    }
    println!("\nchecks:");
    for c in &e.checks {
        println!("  {:<10} {}  {}", c.check.code(), if c.passed { "pass" } else { "FAIL" }, c.detail);
    }
    println!("\npriority {}:", e.priority);
    for t in &e.priority_terms {
        println!("  {:<16} {:>4}  {}", t.term, t.points, t.why);
    }
    match &e.carrier {
        Some(c) => println!(
            "\ncarrier {}: {}{}",
            c.carrier.as_deref().unwrap_or("none"),
            c.reason,
            if c.alternatives.is_empty() { String::new() } else { format!(" (then {})", c.alternatives.join(", ")) }
        ),
        None => println!("\ncarrier: not chosen by the built-in rules"),
    }
    println!(
        "\ninputs: ship by {}, cut-off {} {}, latest departure {}, customs {:?}",
        e.inputs.ship_by,
        e.inputs.cutoff,
        e.inputs.timezone,
        e.inputs.latest_departure.to_rfc3339(),
        e.inputs.customs
    );
    Ok(())
}

fn exception(policy: &Policy, r: dispatch_core::HoldReason) -> String {
    policy.exception_text(r).map(|(title, text)| format!(" — {title}: {text}")).unwrap_or_default()
}

pub struct GenerateArgs {
    pub orders: usize,
    pub per_order: usize,
    pub seed: u64,
    /// The clock of the first decisions; each further round is 37 minutes later.
    pub start: DateTime<Utc>,
}

/// Fills an empty data directory with recorded decisions for a replay benchmark: `orders`
/// demo orders (the demo's mix of warehouses, destinations and problems), each decided
/// `per_order` times — received, then updated by the system of record every 37 minutes (a
/// changed allocation or unit value), each update re-evaluated under the configured policy.
/// Written through the ordinary write path, so the event log is what a real one looks like.
pub async fn generate_decisions(args: GenerateArgs, cfg: &Config) -> Result<()> {
    use futures::StreamExt;
    if args.orders == 0 || args.per_order == 0 {
        bail!("--orders and --per-order must be at least 1");
    }
    let warehouses = Arc::new(cfg.warehouses()?);
    let (policy, _) = cfg.policy()?;
    let store = app::open_store(cfg).await?;
    let existing = store.order_count().await?;
    if existing > 0 {
        store.close().await;
        bail!("the database already holds {existing} orders; generate into a new --data-dir");
    }
    let base = crate::demo::orders(args.seed, args.orders, args.start, &warehouses);
    let total = (args.orders * args.per_order) as u64;
    let bar = app::progress(total, "recording decisions");
    let started = std::time::Instant::now();
    let rules: Arc<dyn dispatch_core::Evaluator> = Arc::new(dispatch_server::policy::Active(policy));
    for round in 0..args.per_order {
        let now = args.start + chrono::Duration::minutes(37 * round as i64);
        let writes = base.iter().map(|f| {
            let mut facts = f.clone();
            if round > 0 {
                // What an ERP update looks like: the allocation moves, a price is corrected.
                let i = round % facts.lines.len();
                let l = &mut facts.lines[i];
                l.qty_allocated = if round % 3 == 0 { l.qty_allocated.saturating_sub(1) } else { l.qty };
                // A cent more each round: every round's facts differ, so each is a decision.
                l.unit_value = ((l.unit_value + round as f64 / 100.0) * 100.0).round() / 100.0;
            }
            dispatch_store::OrderWrite {
                target: dispatch_store::Target::NaturalKey {
                    source: facts.source.clone(),
                    external_id: facts.external_id.clone(),
                },
                meta: dispatch_store::WriteMeta {
                    actor: "bench:generate".into(),
                    roles: vec![],
                    request_id: None,
                    at: now,
                },
                idempotency: None,
                decide: dispatch_store::decision(
                    dispatch_core::Command::Upsert { facts: Box::new(facts), expected_version: None },
                    now,
                    warehouses.clone(),
                    rules.clone(),
                ),
            }
        });
        let store2 = store.clone();
        let mut results = futures::stream::iter(writes)
            .map(move |w| {
                let store = store2.clone();
                async move { store.execute(w).await }
            })
            .buffer_unordered(512);
        while let Some(r) = results.next().await {
            match r {
                Ok(_) => bar.inc(1),
                Err(e) => {
                    store.close().await;
                    return Err(e).context("recording a decision");
                }
            }
        }
    }
    bar.finish_and_clear();
    store.close().await;
    eprintln!("recorded {total} decisions ({} orders × {}) in {:.1?}", args.orders, args.per_order, started.elapsed());
    Ok(())
}
