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
    /// This may be the order's latest decision (its current one, for ranking); `false` when a
    /// later decision of the order is known. Of an order's decisions marked `true`, replay
    /// ranks the last one in the event log.
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

/// The candidate's decision for one recorded decision.
struct One {
    outcome: OrderState,
    reasons: Vec<HoldReason>,
    priority: i32,
    latest_departure: DateTime<Utc>,
    fired: Vec<(String, String)>,
    errors: u64,
}

/// Re-evaluates one recorded decision; `None` when its warehouse is no longer configured.
fn evaluate_one(candidate: &Policy, d: &RecordedDecision, warehouses: &Warehouses) -> Option<One> {
    let wh = warehouses.get(&d.facts.warehouse)?;
    // The density the order saw then, not today's table.
    let e = match d.route_density {
        Some(n) => candidate.evaluate_at_density(&d.facts, wh, d.now, n),
        None => candidate.evaluate(&d.facts, wh, d.now),
    };
    let errors = e.rules.iter().filter(|r| r.error.is_some()).count() as u64;
    Some(One {
        outcome: e.outcome,
        reasons: e.hold_reasons,
        priority: e.priority,
        latest_departure: e.inputs.latest_departure,
        fired: e.rules.into_iter().map(|r| (r.rule, r.message)).collect(),
        errors,
    })
}

/// A released order's queue keys (priority, latest departure) as recorded and as replayed.
type Ranked = ((i32, DateTime<Utc>), (i32, DateTime<Utc>));

/// Running totals of a replay. Decisions may be added in any order and by several threads
/// (each into its own tally, merged at the end): every decision carries its position in the
/// event log, which decides which examples are shown (the earliest) and which decision of an
/// order is ranked (its last one marked `latest`). So a streamed replay reports exactly what
/// a replay of the collected decisions reports.
pub struct Tally {
    r: ReplayReport,
    max_examples: usize,
    abs_sum: u64,
    /// Changed decisions by position; only the `max_examples` earliest are kept.
    examples: BTreeMap<u64, Example>,
    /// Per order: position and queue keys of its last decision marked `latest`.
    last: HashMap<String, Option<(u64, Option<Ranked>)>>,
}

impl Tally {
    pub fn new(candidate: &Policy, max_examples: usize) -> Tally {
        Tally {
            r: ReplayReport {
                candidate_name: candidate.name.clone(),
                candidate_hash: candidate.hash.clone(),
                ..Default::default()
            },
            max_examples,
            abs_sum: 0,
            examples: BTreeMap::new(),
            last: HashMap::new(),
        }
    }

    /// Re-evaluates `d` (at position `pos` of the event log) under `candidate` and counts it.
    pub fn replay_one(&mut self, candidate: &Policy, warehouses: &Warehouses, pos: u64, d: &RecordedDecision) {
        let one = evaluate_one(candidate, d, warehouses);
        self.add(pos, d, one.as_ref());
    }

    fn add(&mut self, pos: u64, d: &RecordedDecision, one: Option<&One>) {
        let r = &mut self.r;
        r.decisions += 1;
        let ranked = one.and_then(|one| {
            (d.outcome == OrderState::Released && one.outcome == OrderState::Released)
                .then_some(((d.priority, d.latest_departure), (one.priority, one.latest_departure)))
        });
        let mark = d.latest.then_some((pos, ranked));
        match self.last.get_mut(d.order_id.as_str()) {
            Some(slot) => {
                if mark.is_some_and(|(p, _)| slot.is_none_or(|(q, _)| p > q)) {
                    *slot = mark;
                }
            }
            None => {
                self.last.insert(d.order_id.clone(), mark);
            }
        }
        let Some(one) = one else {
            r.skipped += 1;
            return;
        };
        r.policy_errors += one.errors;
        let w = match r.by_warehouse.get_mut(d.facts.warehouse.as_str()) {
            Some(w) => w,
            None => r.by_warehouse.entry(d.facts.warehouse.clone()).or_default(),
        };
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
            if let Some(e) = rule_entry(&mut r.by_rule, rule) {
                e.fired += 1;
                e.fired_in_changed += u64::from(changed);
            }
        }
        for rule in &d.rules {
            if let Some(e) = rule_entry(&mut r.by_rule, rule) {
                e.fired_before += 1;
            }
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
            let wanted = self.examples.len() < self.max_examples
                || self.examples.last_key_value().is_some_and(|(&p, _)| pos < p);
            if wanted {
                self.examples.insert(pos, example(d, one));
                if self.examples.len() > self.max_examples {
                    self.examples.pop_last();
                }
            }
        }
        if one.priority != d.priority {
            r.priority.changed += 1;
            if one.priority > d.priority {
                r.priority.raised += 1;
            } else {
                r.priority.lowered += 1;
            }
            self.abs_sum += u64::from(one.priority.abs_diff(d.priority));
        }
    }

    /// Adds another tally's decisions (disjoint from this one's).
    pub fn merge(&mut self, other: Tally) {
        let (a, b) = (&mut self.r, other.r);
        a.decisions += b.decisions;
        a.skipped += b.skipped;
        a.changed += b.changed;
        a.outcome_changed += b.outcome_changed;
        a.newly_held += b.newly_held;
        a.newly_released += b.newly_released;
        a.policy_errors += b.policy_errors;
        for (k, v) in b.by_reason {
            let e = a.by_reason.entry(k).or_default();
            e.added += v.added;
            e.removed += v.removed;
        }
        for (k, v) in b.by_rule {
            let e = a.by_rule.entry(k).or_default();
            e.fired += v.fired;
            e.fired_in_changed += v.fired_in_changed;
            e.fired_before += v.fired_before;
        }
        for (k, v) in b.by_warehouse {
            let e = a.by_warehouse.entry(k).or_default();
            e.decisions += v.decisions;
            e.changed += v.changed;
            e.newly_held += v.newly_held;
            e.newly_released += v.newly_released;
        }
        a.priority.changed += b.priority.changed;
        a.priority.raised += b.priority.raised;
        a.priority.lowered += b.priority.lowered;
        self.abs_sum += other.abs_sum;
        self.examples.extend(other.examples);
        while self.examples.len() > self.max_examples {
            self.examples.pop_last();
        }
        for (id, mark) in other.last {
            match self.last.get_mut(&id) {
                Some(slot) => {
                    if mark.is_some_and(|(p, _)| slot.is_none_or(|(q, _)| p > q)) {
                        *slot = mark;
                    }
                }
                None => {
                    self.last.insert(id, mark);
                }
            }
        }
    }

    /// The report: totals, queue ranks of each order's last decision, examples.
    pub fn finish(self) -> ReplayReport {
        let mut r = self.r;
        let max_examples = self.max_examples;
        r.orders = self.last.len() as u64;
        if r.priority.changed > 0 {
            r.priority.mean_abs_change = self.abs_sum as f64 / r.priority.changed as f64;
        }
        let mut ranked_before: Vec<(i32, DateTime<Utc>, &str)> = Vec::new();
        let mut ranked_after: Vec<(i32, DateTime<Utc>, &str)> = Vec::new();
        for (id, mark) in &self.last {
            if let Some((_, Some((before, after)))) = mark {
                ranked_before.push((before.0, before.1, id.as_str()));
                ranked_after.push((after.0, after.1, id.as_str()));
            }
        }
        let rank = |list: &mut Vec<(i32, DateTime<Utc>, &str)>| -> HashMap<String, u64> {
            list.sort_by(|a, b| queue_cmp((a.0, Some(a.1), a.2), (b.0, Some(b.1), b.2)));
            list.iter().enumerate().map(|(i, x)| (x.2.to_string(), i as u64 + 1)).collect()
        };
        let before = rank(&mut ranked_before);
        let after = rank(&mut ranked_after);
        r.priority.ranked = before.len() as u64;
        let mut moves: Vec<(String, u64, u64)> = before
            .iter()
            .filter_map(|(id, b)| after.get(id).filter(|a| *a != b).map(|a| (id.clone(), *b, *a)))
            .collect();
        r.priority.rank_moved = moves.len() as u64;
        moves.sort_by(|x, y| y.1.abs_diff(y.2).cmp(&x.1.abs_diff(x.2)).then_with(|| x.0.cmp(&y.0)));
        r.priority.rank_max_move = moves.first().map_or(0, |m| m.1.abs_diff(m.2));
        moves.truncate(max_examples);
        r.rank_examples = moves
            .into_iter()
            .map(|(order_id, recorded_rank, candidate_rank)| RankMove { order_id, recorded_rank, candidate_rank })
            .collect();
        r.examples = self.examples.into_values().collect();
        r
    }
}

/// The rule's row, allocating its key only the first time.
fn rule_entry<'a>(by_rule: &'a mut BTreeMap<String, RuleDelta>, rule: &str) -> Option<&'a mut RuleDelta> {
    if !by_rule.contains_key(rule) {
        by_rule.insert(rule.to_string(), RuleDelta::default());
    }
    by_rule.get_mut(rule)
}

fn example(d: &RecordedDecision, one: &One) -> Example {
    Example {
        order_id: d.order_id.clone(),
        external_id: d.facts.external_id.clone(),
        warehouse: d.facts.warehouse.clone(),
        evaluated_at: d.now,
        recorded: Side { outcome: d.outcome, hold_reasons: d.hold_reasons.clone(), priority: d.priority },
        candidate: Side { outcome: one.outcome, hold_reasons: one.reasons.clone(), priority: one.priority },
        rules: one.fired.iter().map(|(id, msg)| format!("{id}: {msg}")).collect(),
    }
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
    let mut total = Tally::new(candidate, max_examples);
    let parts: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = decisions
            .chunks(chunk)
            .enumerate()
            .map(|(ci, part)| {
                s.spawn(move || {
                    let mut t = Tally::new(candidate, max_examples);
                    for (i, d) in part.iter().enumerate() {
                        if i % 10_000 == 9_999 {
                            tick(10_000);
                        }
                        t.replay_one(candidate, warehouses, (ci * chunk + i) as u64, d);
                    }
                    tick((part.len() % 10_000) as u64);
                    t
                })
            })
            .collect();
        // A panicking worker would be a bug in evaluation, which never panics by design.
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    for t in parts {
        total.merge(t);
    }
    total.finish()
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

/// An order's facts as stored, parsed at most once, by whichever replay worker needs them first.
pub struct StoredFacts {
    seq: i64,
    json: String,
    parsed: std::sync::OnceLock<Result<Arc<OrderFacts>, String>>,
}

impl StoredFacts {
    fn get(&self) -> Result<Arc<OrderFacts>, String> {
        self.parsed
            .get_or_init(|| {
                #[derive(serde::Deserialize)]
                struct WithFacts {
                    facts: OrderFacts,
                }
                serde_json::from_str::<WithFacts>(&self.json)
                    .map(|w| Arc::new(w.facts))
                    .map_err(|e| format!("event {}: {e}", self.seq))
            })
            .clone()
    }
}

/// A recorded evaluation as stored, with the facts its order had then; parsed by a worker.
pub struct PendingDecision {
    /// Its position in the event log.
    pub seq: i64,
    order_id: String,
    facts: Arc<StoredFacts>,
    data: String,
}

impl PendingDecision {
    /// Parses the decision and its facts; `None` when it was evaluated before `since`.
    pub fn parse(self, since: Option<DateTime<Utc>>) -> Result<Option<RecordedDecision>, String> {
        let d: SlimDecision = serde_json::from_str(&self.data).map_err(|e| format!("event {}: {e}", self.seq))?;
        if since.is_some_and(|s| d.inputs.now < s) {
            return Ok(None);
        }
        let facts = self.facts.get()?;
        Ok(Some(RecordedDecision {
            order_id: self.order_id,
            facts,
            now: d.inputs.now,
            outcome: d.outcome,
            hold_reasons: d.hold_reasons,
            priority: d.priority,
            latest_departure: d.inputs.latest_departure,
            policy: d.policy,
            rules: d.rules.into_iter().filter(|r| r.reason.is_some()).map(|r| r.rule).collect(),
            // Which decision of the order is its last, the tally finds out by position.
            latest: true,
            route_density: d.inputs.route.map(|r| r.density),
        }))
    }
}

/// Sorts stored events, fed in recording order, into decisions to replay without parsing
/// them: it keeps each order's latest facts as stored, so that the parsing (most of the cost
/// of reading) runs on the replay workers, beside the evaluation.
#[derive(Default)]
pub struct Router {
    facts: HashMap<String, Arc<StoredFacts>>,
}

impl Router {
    /// One stored event: an `order.evaluated` of an order with known facts becomes a pending
    /// decision; facts events are remembered; other types are skipped.
    pub fn route(&mut self, seq: i64, order_id: String, kind: &str, data: String) -> Option<PendingDecision> {
        match kind {
            "order.received" | "order.updated" => {
                let cell = Arc::new(StoredFacts { seq, json: data, parsed: std::sync::OnceLock::new() });
                self.facts.insert(order_id, cell);
                None
            }
            "order.evaluated" => {
                let facts = self.facts.get(&order_id)?.clone();
                Some(PendingDecision { seq, order_id, facts, data })
            }
            _ => None,
        }
    }
}
