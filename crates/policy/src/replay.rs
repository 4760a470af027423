//! What-if replay: re-evaluate recorded decisions (the facts the order had and the instant it
//! was evaluated at) under a candidate policy and report what would have been decided
//! differently. Pure: the caller reads the decisions from the event log and gets a report.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use dispatch_core::{HoldReason, OrderFacts, OrderState, Warehouses};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{Policy, queue_cmp};

/// One recorded `order.evaluated` with the facts it was made on.
#[derive(Debug, Clone)]
pub struct RecordedDecision {
    pub order_id: String,
    pub facts: Arc<OrderFacts>,
    pub now: DateTime<Utc>,
    pub outcome: OrderState,
    pub hold_reasons: Vec<HoldReason>,
    pub priority: i32,
    pub latest_departure: DateTime<Utc>,
    /// Policy that decided (`builtin-v1` or a hash).
    pub policy: String,
    /// Rule ids that fired then (empty for the built-in rules).
    pub rules: Vec<String>,
    /// This is the order's latest decision (its current one, for ranking).
    pub latest: bool,
    /// The route density the decision saw, when its policy read it.
    pub route_density: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema, PartialEq)]
pub struct ReasonDelta {
    /// Decisions that gain this reason under the candidate.
    pub added: u64,
    /// Decisions that lose it.
    pub removed: u64,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema, PartialEq)]
pub struct RuleDelta {
    /// Decisions in which the rule fired under the candidate.
    pub fired: u64,
    /// Of those, decisions whose outcome or reasons changed.
    pub fired_in_changed: u64,
    /// Decisions in which a rule of this id had fired as recorded (policy decisions only).
    pub fired_before: u64,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema, PartialEq)]
pub struct WarehouseDelta {
    pub decisions: u64,
    pub changed: u64,
    pub newly_held: u64,
    pub newly_released: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct Side {
    pub outcome: OrderState,
    pub hold_reasons: Vec<HoldReason>,
    pub priority: i32,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct Example {
    pub order_id: String,
    pub external_id: String,
    pub warehouse: String,
    pub evaluated_at: DateTime<Utc>,
    pub recorded: Side,
    pub candidate: Side,
    /// Candidate rules that fired, with their messages.
    pub rules: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema, PartialEq)]
pub struct PriorityDelta {
    /// Decisions whose score changed.
    pub changed: u64,
    pub raised: u64,
    pub lowered: u64,
    pub mean_abs_change: f64,
    /// Released orders (latest decision, released both ways) whose place in the queue moved.
    pub rank_moved: u64,
    pub rank_max_move: u64,
    pub ranked: u64,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema, PartialEq)]
pub struct ReplayReport {
    pub candidate_name: String,
    pub candidate_hash: String,
    pub decisions: u64,
    pub orders: u64,
    /// Decisions skipped because their warehouse is no longer configured.
    pub skipped: u64,
    /// Outcome (released/on hold) or set of reasons differs.
    pub changed: u64,
    pub outcome_changed: u64,
    pub newly_held: u64,
    pub newly_released: u64,
    /// Candidate rules that failed to evaluate (counted per decision).
    pub policy_errors: u64,
    pub by_reason: BTreeMap<String, ReasonDelta>,
    pub by_rule: BTreeMap<String, RuleDelta>,
    pub by_warehouse: BTreeMap<String, WarehouseDelta>,
    pub priority: PriorityDelta,
    /// Up to `max_examples` changed decisions, newest orders first.
    pub examples: Vec<Example>,
    /// Largest queue moves.
    pub rank_examples: Vec<RankMove>,
}

/// An order whose place in the dispatch queue moves (1 = leaves first).
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct RankMove {
    pub order_id: String,
    pub recorded_rank: u64,
    pub candidate_rank: u64,
}

struct One {
    idx: usize,
    outcome: OrderState,
    reasons: Vec<HoldReason>,
    priority: i32,
    latest_departure: DateTime<Utc>,
    fired: Vec<(String, String)>,
    errors: u64,
}

/// Replays `decisions` under `candidate`, on `threads` threads; `tick` is called every 10,000
/// decisions with how many were done (for a progress bar).
pub fn replay(
    candidate: &Policy,
    decisions: &[RecordedDecision],
    warehouses: &Warehouses,
    threads: usize,
    max_examples: usize,
    tick: &(dyn Fn(u64) + Sync),
) -> ReplayReport {
    let threads = threads.clamp(1, 64);
    let chunk = decisions.len().div_ceil(threads).max(1);
    let results: Vec<Option<One>> = std::thread::scope(|s| {
        let handles: Vec<_> = decisions
            .chunks(chunk)
            .enumerate()
            .map(|(ci, part)| {
                s.spawn(move || {
                    let mut out = Vec::with_capacity(part.len());
                    for (i, d) in part.iter().enumerate() {
                        if i % 10_000 == 9_999 {
                            tick(10_000);
                        }
                        let Some(wh) = warehouses.get(&d.facts.warehouse) else {
                            out.push(None);
                            continue;
                        };
                        // The density the order saw then, not today's table.
                        let e = match d.route_density {
                            Some(n) => candidate.evaluate_at_density(&d.facts, wh, d.now, n),
                            None => candidate.evaluate(&d.facts, wh, d.now),
                        };
                        let errors = e.rules.iter().filter(|r| r.error.is_some()).count() as u64;
                        out.push(Some(One {
                            idx: ci * chunk + i,
                            outcome: e.outcome,
                            reasons: e.hold_reasons,
                            priority: e.priority,
                            latest_departure: e.inputs.latest_departure,
                            fired: e.rules.into_iter().map(|r| (r.rule, r.message)).collect(),
                            errors,
                        }));
                    }
                    tick((part.len() % 10_000) as u64);
                    out
                })
            })
            .collect();
        // A panicking worker would be a bug in evaluation, which never panics by design;
        // its decisions are reported as skipped rather than taking the caller down.
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    });

    let mut r = ReplayReport {
        candidate_name: candidate.name.clone(),
        candidate_hash: candidate.hash.clone(),
        decisions: decisions.len() as u64,
        ..Default::default()
    };
    let mut orders = std::collections::HashSet::new();
    let mut abs_sum: u64 = 0;
    let mut examples: Vec<&One> = Vec::new();
    let mut ranked_before: Vec<(i32, DateTime<Utc>, &str)> = Vec::new();
    let mut ranked_after: Vec<(i32, DateTime<Utc>, &str)> = Vec::new();
    for (d, one) in decisions.iter().zip(results.iter()) {
        orders.insert(d.order_id.as_str());
        let Some(one) = one else {
            r.skipped += 1;
            continue;
        };
        r.policy_errors += one.errors;
        let w = r.by_warehouse.entry(d.facts.warehouse.clone()).or_default();
        w.decisions += 1;
        let mut before = d.hold_reasons.clone();
        before.sort();
        let changed = before != one.reasons || d.outcome != one.outcome;
        for reason in &one.reasons {
            if !before.contains(reason) {
                r.by_reason.entry(reason.code().to_string()).or_default().added += 1;
            }
        }
        for reason in &before {
            if !one.reasons.contains(reason) {
                r.by_reason.entry(reason.code().to_string()).or_default().removed += 1;
            }
        }
        for (rule, _) in &one.fired {
            let e = r.by_rule.entry(rule.clone()).or_default();
            e.fired += 1;
            if changed {
                e.fired_in_changed += 1;
            }
        }
        for rule in &d.rules {
            r.by_rule.entry(rule.clone()).or_default().fired_before += 1;
        }
        if changed {
            r.changed += 1;
            w.changed += 1;
            if d.outcome != one.outcome {
                r.outcome_changed += 1;
                if one.outcome == OrderState::OnHold {
                    r.newly_held += 1;
                    w.newly_held += 1;
                } else {
                    r.newly_released += 1;
                    w.newly_released += 1;
                }
            }
            if examples.len() < max_examples {
                examples.push(one);
            }
        }
        if one.priority != d.priority {
            r.priority.changed += 1;
            if one.priority > d.priority {
                r.priority.raised += 1;
            } else {
                r.priority.lowered += 1;
            }
            abs_sum += u64::from(one.priority.abs_diff(d.priority));
        }
        if d.latest && d.outcome == OrderState::Released && one.outcome == OrderState::Released {
            ranked_before.push((d.priority, d.latest_departure, d.order_id.as_str()));
            ranked_after.push((one.priority, one.latest_departure, d.order_id.as_str()));
        }
    }
    r.orders = orders.len() as u64;
    if r.priority.changed > 0 {
        r.priority.mean_abs_change = abs_sum as f64 / r.priority.changed as f64;
    }
    let rank = |list: &mut Vec<(i32, DateTime<Utc>, &str)>| -> HashMap<String, u64> {
        list.sort_by(|a, b| queue_cmp((a.0, Some(a.1), a.2), (b.0, Some(b.1), b.2)));
        list.iter().enumerate().map(|(i, x)| (x.2.to_string(), i as u64 + 1)).collect()
    };
    let before = rank(&mut ranked_before);
    let after = rank(&mut ranked_after);
    r.priority.ranked = before.len() as u64;
    let mut moves: Vec<(String, u64, u64)> =
        before.iter().filter_map(|(id, b)| after.get(id).filter(|a| *a != b).map(|a| (id.clone(), *b, *a))).collect();
    r.priority.rank_moved = moves.len() as u64;
    moves.sort_by(|x, y| y.1.abs_diff(y.2).cmp(&x.1.abs_diff(x.2)).then_with(|| x.0.cmp(&y.0)));
    r.priority.rank_max_move = moves.first().map_or(0, |m| m.1.abs_diff(m.2));
    moves.truncate(max_examples);
    r.rank_examples = moves
        .into_iter()
        .map(|(order_id, recorded_rank, candidate_rank)| RankMove { order_id, recorded_rank, candidate_rank })
        .collect();
    r.examples = examples
        .into_iter()
        .filter_map(|one| {
            let d = decisions.get(one.idx)?;
            Some(Example {
                order_id: d.order_id.clone(),
                external_id: d.facts.external_id.clone(),
                warehouse: d.facts.warehouse.clone(),
                evaluated_at: d.now,
                recorded: Side { outcome: d.outcome, hold_reasons: d.hold_reasons.clone(), priority: d.priority },
                candidate: Side { outcome: one.outcome, hold_reasons: one.reasons.clone(), priority: one.priority },
                rules: one.fired.iter().map(|(id, msg)| format!("{id}: {msg}")).collect(),
            })
        })
        .collect();
    r
}

impl ReplayReport {
    /// A plain-text summary for the terminal.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let pct = |n: u64| if self.decisions == 0 { 0.0 } else { n as f64 * 100.0 / self.decisions as f64 };
        let _ = writeln!(s, "candidate {} ({})", self.candidate_name, self.candidate_hash);
        let _ =
            writeln!(s, "replayed {} decisions of {} orders ({} skipped)", self.decisions, self.orders, self.skipped);
        let _ = writeln!(
            s,
            "changed  {} ({:.2}%): {} newly held, {} newly released, {} with other reasons",
            self.changed,
            pct(self.changed),
            self.newly_held,
            self.newly_released,
            self.changed - self.outcome_changed
        );
        if self.policy_errors > 0 {
            let _ = writeln!(s, "policy errors: {} rule evaluations failed (held by on_error)", self.policy_errors);
        }
        if !self.by_reason.is_empty() {
            let _ = writeln!(s, "\nby reason                 added   removed");
            for (k, v) in &self.by_reason {
                let _ = writeln!(s, "  {k:<22} {:>7} {:>9}", v.added, v.removed);
            }
        }
        if !self.by_rule.is_empty() {
            let _ = writeln!(s, "\nby rule                   fired  in changed  fired before");
            for (k, v) in &self.by_rule {
                let _ = writeln!(s, "  {k:<22} {:>7} {:>11} {:>13}", v.fired, v.fired_in_changed, v.fired_before);
            }
        }
        let _ = writeln!(s, "\nby warehouse          decisions  changed  newly held  newly released");
        for (k, v) in &self.by_warehouse {
            let _ = writeln!(
                s,
                "  {k:<18} {:>10} {:>8} {:>11} {:>15}",
                v.decisions, v.changed, v.newly_held, v.newly_released
            );
        }
        let p = &self.priority;
        let _ = writeln!(
            s,
            "\npriority: {} scores changed ({} up, {} down, mean |Δ| {:.1}); queue: {} of {} released orders move, at most {} places",
            p.changed, p.raised, p.lowered, p.mean_abs_change, p.rank_moved, p.ranked, p.rank_max_move
        );
        if !self.examples.is_empty() {
            let _ = writeln!(s, "\nexamples");
            for e in &self.examples {
                let reasons = |v: &[HoldReason]| v.iter().map(|r| r.code()).collect::<Vec<_>>().join(",");
                let _ = writeln!(
                    s,
                    "  {} {} ({}): {} [{}] -> {} [{}]",
                    e.order_id,
                    e.external_id,
                    e.warehouse,
                    e.recorded.outcome,
                    reasons(&e.recorded.hold_reasons),
                    e.candidate.outcome,
                    reasons(&e.candidate.hold_reasons)
                );
                for r in &e.rules {
                    let _ = writeln!(s, "      {r}");
                }
            }
        }
        s
    }
}

/// Builds recorded decisions from the event log, fed in recording order (all orders mixed):
/// each `order.evaluated` with the facts its order had at that point and its `inputs.now`.
#[derive(Default)]
pub struct Collector {
    since: Option<DateTime<Utc>>,
    facts: HashMap<String, Arc<OrderFacts>>,
    last: HashMap<String, usize>,
    out: Vec<RecordedDecision>,
}

impl Collector {
    /// Keeps decisions evaluated at or after `since` (all when `None`).
    pub fn new(since: Option<DateTime<Utc>>) -> Collector {
        Collector { since, ..Default::default() }
    }

    pub fn push(&mut self, ev: dispatch_core::Event) {
        use dispatch_core::EventData;
        match ev.data {
            EventData::Received { facts } | EventData::FactsUpdated { facts, .. } => {
                self.facts.insert(ev.order_id, Arc::new(facts));
            }
            EventData::Evaluated(e) => {
                if self.since.is_some_and(|s| e.inputs.now < s) {
                    return;
                }
                let Some(facts) = self.facts.get(&ev.order_id).cloned() else { return };
                let rules = e.rules.into_iter().filter(|r| r.reason.is_some()).map(|r| r.rule).collect();
                self.record(
                    ev.order_id,
                    facts,
                    e.inputs.now,
                    e.outcome,
                    e.hold_reasons,
                    e.priority,
                    e.inputs.latest_departure,
                    e.policy,
                    rules,
                    e.inputs.route.map(|r| r.density),
                );
            }
            _ => {}
        }
    }

    /// Feeds one stored event by its type and JSON, parsing only what a replay needs (the
    /// facts; an evaluation's outcome, reasons, priority, instant, policy and fired rules).
    /// Other types are skipped.
    pub fn push_raw(&mut self, order_id: &str, kind: &str, data: &str) -> Result<(), serde_json::Error> {
        if let Some(p) = parse_raw(order_id, kind, data)? {
            self.push_parsed(p);
        }
        Ok(())
    }

    /// Feeds an event parsed by [`parse_raw`] (parsing can run in parallel; feeding is in order).
    pub fn push_parsed(&mut self, p: Parsed) {
        match p {
            Parsed::Facts { order_id, facts } => {
                self.facts.insert(order_id, facts);
            }
            Parsed::Decision { order_id, d } => {
                if self.since.is_some_and(|s| d.inputs.now < s) {
                    return;
                }
                let Some(facts) = self.facts.get(&order_id).cloned() else { return };
                let rules = d.rules.into_iter().filter(|r| r.reason.is_some()).map(|r| r.rule).collect();
                self.record(
                    order_id,
                    facts,
                    d.inputs.now,
                    d.outcome,
                    d.hold_reasons,
                    d.priority,
                    d.inputs.latest_departure,
                    d.policy,
                    rules,
                    d.inputs.route.map(|r| r.density),
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        order_id: String,
        facts: Arc<OrderFacts>,
        now: DateTime<Utc>,
        outcome: OrderState,
        hold_reasons: Vec<HoldReason>,
        priority: i32,
        latest_departure: DateTime<Utc>,
        policy: String,
        rules: Vec<String>,
        route_density: Option<u32>,
    ) {
        if let Some(prev) = self.last.insert(order_id.clone(), self.out.len())
            && let Some(p) = self.out.get_mut(prev)
        {
            p.latest = false;
        }
        self.out.push(RecordedDecision {
            order_id,
            facts,
            now,
            outcome,
            hold_reasons,
            priority,
            latest_departure,
            policy,
            rules,
            latest: true,
            route_density,
        });
    }

    pub fn len(&self) -> usize {
        self.out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    pub fn finish(self) -> Vec<RecordedDecision> {
        self.out
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct SlimInputs {
    now: DateTime<Utc>,
    latest_departure: DateTime<Utc>,
    #[serde(default)]
    route: Option<SlimRoute>,
}

#[derive(Debug, serde::Deserialize)]
pub struct SlimRoute {
    density: u32,
}

#[derive(Debug, serde::Deserialize)]
pub struct SlimRule {
    rule: String,
    #[serde(default)]
    reason: Option<HoldReason>,
}

/// The part of a recorded evaluation a replay compares against.
#[derive(Debug, serde::Deserialize)]
pub struct SlimDecision {
    outcome: OrderState,
    hold_reasons: Vec<HoldReason>,
    priority: i32,
    inputs: SlimInputs,
    policy: String,
    #[serde(default)]
    rules: Vec<SlimRule>,
}

/// A stored event parsed for replay.
#[derive(Debug)]
pub enum Parsed {
    Facts { order_id: String, facts: Arc<OrderFacts> },
    Decision { order_id: String, d: SlimDecision },
}

/// Parses a stored event (`kind`, JSON `data`) for replay; `None` for types a replay skips.
pub fn parse_raw(order_id: &str, kind: &str, data: &str) -> Result<Option<Parsed>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct WithFacts {
        facts: OrderFacts,
    }
    Ok(match kind {
        "order.received" | "order.updated" => {
            let w: WithFacts = serde_json::from_str(data)?;
            Some(Parsed::Facts { order_id: order_id.to_string(), facts: Arc::new(w.facts) })
        }
        "order.evaluated" => Some(Parsed::Decision { order_id: order_id.to_string(), d: serde_json::from_str(data)? }),
        _ => None,
    })
}
