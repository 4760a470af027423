//! The embedded default policy decides exactly as the built-in rules: outcome, every reason,
//! every check with its sentence, the priority with its terms, and the recorded inputs.

mod common;

use dispatch_core::{HoldReason, OrderState};
use dispatch_policy::Policy;

#[test]
fn default_policy_reproduces_the_builtin_rules_exactly() {
    let policy = Policy::default_policy();
    let whs = common::warehouses();
    let orders = common::orders(42, 20_000);
    let mut held = 0;
    let mut reasons = std::collections::BTreeSet::new();
    for (facts, now) in &orders {
        let wh = whs.get(&facts.warehouse).unwrap();
        let builtin = dispatch_core::readiness::evaluate(facts, wh, *now);
        let mut p = policy.evaluate(facts, wh, *now);
        assert_eq!(p.policy, policy.hash);
        assert!(p.rules.iter().all(|r| r.error.is_none()), "{:?}", p.rules);
        assert!(p.carrier.as_ref().is_some_and(|c| c.carrier.is_some()), "{:?}", p.carrier);
        // What the built-in rules cannot say: which policy, rules and carrier.
        p.policy = builtin.policy.clone();
        p.rules.clear();
        p.carrier = None;
        assert_eq!(p, builtin, "{} at {now}", facts.external_id);
        if builtin.outcome == OrderState::OnHold {
            held += 1;
        }
        reasons.extend(builtin.hold_reasons.iter().copied());
    }
    // The sample exercises every reason the built-in rules can give.
    assert!(held > 2000 && held < 15_000, "{held}");
    for r in [
        HoldReason::StockShort,
        HoldReason::StockUnallocated,
        HoldReason::CreditHold,
        HoldReason::PaymentPending,
        HoldReason::AddressInvalid,
        HoldReason::DocsMissing,
        HoldReason::CutoffMissed,
    ] {
        assert!(reasons.contains(&r), "{r} never occurred");
    }
}

#[test]
fn fired_rules_say_what_they_saw() {
    let policy = Policy::default_policy();
    let whs = common::warehouses();
    let (mut facts, now) = common::orders(1, 1).remove(0);
    facts.lines.truncate(1);
    facts.lines[0].qty = 4;
    facts.lines[0].qty_allocated = 1;
    let e = policy.evaluate(&facts, whs.get(&facts.warehouse).unwrap(), now);
    let hit = e.rules.iter().find(|r| r.rule == "stock_short").expect("stock_short fired");
    assert_eq!(hit.reason, Some(HoldReason::StockShort));
    assert_eq!(hit.seen["order.units_allocated"], 1);
    assert_eq!(hit.seen["order.units_demanded"], 4);
    assert!(hit.message.starts_with("1 of 4 units allocated"), "{}", hit.message);
}
