//! Properties: evaluation is deterministic; hold rules are independent of their order in the
//! file (the policy says so: reasons are a set, check sentences are ordered by rule id); the
//! dispatch order is a strict total order; a replay of a tightened rule changes exactly the
//! decisions that rule now catches.

mod common;

use std::sync::Arc;

use chrono::DateTime;
use dispatch_core::{CreditStatus, OrderState};
use dispatch_policy::{DEFAULT_POLICY, Policy, RecordedDecision, queue_cmp, replay};
use proptest::prelude::*;
use rand::SeedableRng;

/// The default policy with its `[[hold]]` blocks in another order.
fn shuffled_policy(perm: &[usize]) -> String {
    let start = DEFAULT_POLICY.find("[[hold]]").unwrap();
    let end = DEFAULT_POLICY.find("# --- What a passed check says.").unwrap();
    let blocks: Vec<&str> = DEFAULT_POLICY[start..end].split("[[hold]]").filter(|b| !b.trim().is_empty()).collect();
    let mut order: Vec<usize> = (0..blocks.len()).collect();
    for (i, p) in perm.iter().enumerate() {
        let j = p % blocks.len();
        order.swap(i % blocks.len(), j);
    }
    let body: String = order.iter().map(|i| format!("[[hold]]{}", blocks[*i])).collect();
    format!("{}{}{}", &DEFAULT_POLICY[..start], body, &DEFAULT_POLICY[end..])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn evaluation_is_deterministic_and_independent_of_hold_rule_order(
        seed in any::<u64>(),
        perm in proptest::collection::vec(0usize..64, 1..12),
    ) {
        let base = Policy::default_policy();
        let other = Policy::compile(&shuffled_policy(&perm), "shuffled.toml", None).unwrap();
        let whs = common::warehouses();
        for (facts, now) in common::orders(seed, 25) {
            let wh = whs.get(&facts.warehouse).unwrap();
            let a = base.evaluate(&facts, wh, now);
            prop_assert_eq!(&a, &base.evaluate(&facts, wh, now));
            let mut b = other.evaluate(&facts, wh, now);
            prop_assert_eq!(&a.outcome, &b.outcome);
            prop_assert_eq!(&a.hold_reasons, &b.hold_reasons);
            prop_assert_eq!(&a.checks, &b.checks);
            prop_assert_eq!(a.priority, b.priority);
            prop_assert_eq!(&a.carrier, &b.carrier);
            // The fired rules are the same set, listed in file order.
            let mut ra: Vec<_> = a.rules.iter().map(|r| r.rule.clone()).collect();
            let mut rb: Vec<_> = b.rules.drain(..).map(|r| r.rule).collect();
            ra.sort();
            rb.sort();
            prop_assert_eq!(ra, rb);
        }
    }

    #[test]
    fn the_dispatch_order_is_a_strict_total_order(seed in any::<u64>()) {
        let policy = Policy::default_policy();
        let whs = common::warehouses();
        let evaluated: Vec<(i32, Option<DateTime<chrono::Utc>>, String)> = common::orders(seed, 40)
            .into_iter()
            .enumerate()
            .map(|(i, (f, now))| {
                let e = policy.evaluate(&f, whs.get(&f.warehouse).unwrap(), now);
                // A few orders without a latest departure (never evaluated) and equal scores.
                let ld = (i % 7 != 0).then_some(e.inputs.latest_departure);
                (e.priority / 100 * 100, ld, format!("ord_{i:04}"))
            })
            .collect();
        let key = |x: &(i32, Option<DateTime<chrono::Utc>>, String)| (x.0, x.1, x.2.clone());
        for a in &evaluated {
            let ka = key(a);
            prop_assert_eq!(queue_cmp((ka.0, ka.1, &ka.2), (ka.0, ka.1, &ka.2)), std::cmp::Ordering::Equal);
            for b in &evaluated {
                let kb = key(b);
                let ab = queue_cmp((ka.0, ka.1, &ka.2), (kb.0, kb.1, &kb.2));
                let ba = queue_cmp((kb.0, kb.1, &kb.2), (ka.0, ka.1, &ka.2));
                prop_assert_eq!(ab, ba.reverse(), "antisymmetric");
                if a.2 != b.2 {
                    prop_assert_ne!(ab, std::cmp::Ordering::Equal, "distinct orders never tie");
                }
                for c in &evaluated {
                    let kc = key(c);
                    if ab.is_lt() && queue_cmp((kb.0, kb.1, &kb.2), (kc.0, kc.1, &kc.2)).is_lt() {
                        prop_assert!(queue_cmp((ka.0, ka.1, &ka.2), (kc.0, kc.1, &kc.2)).is_lt(), "transitive");
                    }
                }
            }
        }
    }
}

#[test]
fn a_replay_of_a_tightened_rule_changes_exactly_the_orders_it_catches() {
    let whs = common::warehouses();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let mut decisions = Vec::new();
    for i in 0..3000 {
        let now = common::instant(&mut rng);
        let facts = common::order(&mut rng, i, now, &whs);
        let e = dispatch_core::readiness::evaluate(&facts, whs.get(&facts.warehouse).unwrap(), now);
        decisions.push(RecordedDecision {
            order_id: format!("ord_{i:05}"),
            facts: Arc::new(facts),
            now,
            outcome: e.outcome,
            hold_reasons: e.hold_reasons,
            priority: e.priority,
            latest_departure: e.inputs.latest_departure,
            policy: e.policy,
            rules: vec![],
            latest: true,
            route_density: None,
        });
    }
    // Unchanged policy: nothing changes.
    let same = replay(&Policy::default_policy(), &decisions, &whs, 2, 10, &|_| {});
    assert_eq!((same.changed, same.priority.changed, same.priority.rank_moved), (0, 0, 0), "{same:?}");
    // Customers on watch are held too.
    let tight = Policy::compile(
        &DEFAULT_POLICY
            .replace(r#"["hold", "blocked", "over_limit"]"#, r#"["hold", "blocked", "over_limit", "watch"]"#),
        "tight.toml",
        None,
    )
    .unwrap();
    let r = replay(&tight, &decisions, &whs, 2, 5000, &|_| {});
    let expected: Vec<&str> = decisions
        .iter()
        .filter(|d| {
            d.facts.customer.credit_status == CreditStatus::Watch
                && !d.hold_reasons.contains(&dispatch_core::HoldReason::CreditHold)
        })
        .map(|d| d.order_id.as_str())
        .collect();
    assert!(expected.len() > 50, "{}", expected.len());
    let mut got: Vec<&str> = r.examples.iter().map(|e| e.order_id.as_str()).collect();
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(r.changed, expected.len() as u64);
    assert_eq!(r.by_reason["credit_hold"].added, expected.len() as u64);
    assert_eq!(r.by_reason["credit_hold"].removed, 0);
    let newly_held = decisions
        .iter()
        .filter(|d| expected.contains(&d.order_id.as_str()) && d.outcome == OrderState::Released)
        .count() as u64;
    assert_eq!(r.newly_held, newly_held);
    assert_eq!(r.newly_released, 0);
    assert_eq!(r.by_rule["credit"].fired_in_changed, expected.len() as u64);
    // Tightening a hold does not move priorities.
    assert_eq!(r.priority.changed, 0);
}

#[test]
fn the_fast_path_gives_exactly_what_the_interpreter_gives() {
    let whs = common::warehouses();
    // The default policy, plus rules that exercise comprehensions, optional fields, errors and
    // fallbacks (a rule reading an absent optional field fails at run time in both).
    let extra = r#"
[[hold]]
id = "heavy_hazmat_line"
when = 'lines.exists(l, l.hazmat && has(l.weight_kg) && l.weight_kg * double(l.qty) > 50.0)'
reason = "policy_hold"
message = 'hazmat lines: {lines.filter(l, l.hazmat).map(l, l.sku).join("+")} of {size(lines)}'

[[hold]]
id = "channel_probe"
when = 'order.channel == "key_account" && customer.tier == "standard"'
reason = "policy_hold"
on_error = "ignore"
message = 'key account order for a standard customer {order.margin:.1}'

[[hold]]
id = "all_cheap"
when = 'lines.all(l, l.unit_value < 2.0) && order.value < 10.0 && math.greatest(order.weight_kg, 1.0) > 0.0'
reason = "policy_hold"
message = 'only cheap lines, {order.line_count} of them; {now.weekday} {now.local_time}'
"#;
    let src =
        DEFAULT_POLICY.replace("# --- What a passed check says.", &format!("{extra}\n# --- What a passed check says."));
    let policy = Policy::compile(&src, "extra.toml", None).unwrap();
    let mut errors = 0;
    for (facts, now) in common::orders(5, 4000) {
        let wh = whs.get(&facts.warehouse).unwrap();
        let fast = policy.evaluate(&facts, wh, now);
        let slow = policy.evaluate_interpreted(&facts, wh, now);
        assert_eq!(fast, slow, "{}", facts.external_id);
        errors += fast.rules.iter().filter(|r| r.error.is_some()).count();
    }
    assert!(errors > 0, "some orders have no channel: the probe rule must fail on them");
}

#[test]
fn decisions_read_from_stored_json_equal_those_from_parsed_events() {
    use dispatch_core::{Event, EventData};
    let policy = Policy::default_policy();
    let whs = common::warehouses();
    let mut full = dispatch_policy::Collector::new(None);
    let mut raw = dispatch_policy::Collector::new(None);
    for (i, (facts, now)) in common::orders(11, 300).into_iter().enumerate() {
        let e = policy.evaluate(&facts, whs.get(&facts.warehouse).unwrap(), now);
        for (v, data) in [EventData::Received { facts }, EventData::Evaluated(e)].into_iter().enumerate() {
            let json = serde_json::to_string(&data).unwrap();
            let kind = data.kind();
            let ev = Event {
                order_id: format!("ord_{i}"),
                version: v as u64 + 1,
                at: now,
                actor: "t".into(),
                request_id: None,
                data,
            };
            raw.push_raw(&ev.order_id, kind, &json).unwrap();
            full.push(ev);
        }
    }
    let (a, b) = (full.finish(), raw.finish());
    assert_eq!(a.len(), 300);
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}
