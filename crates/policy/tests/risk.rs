//! `risk` in the policy: bound from a late-departure model when one scores the order, skipped
//! without one (a risk rule does not fire, a risk term is left out), and recorded on the
//! decision with the model version, probability and factors when it changed the decision.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use dispatch_core::risk::RiskFactor;
use dispatch_core::{HoldReason, OrderState};
use dispatch_policy::{Policy, RiskQuery, RiskScore, RiskSource};

/// A model stand-in with a fixed probability that counts how often it is asked.
struct Fixed {
    p: f64,
    scored: AtomicUsize,
    explained: AtomicUsize,
}

impl Fixed {
    fn new(p: f64) -> Fixed {
        Fixed { p, scored: AtomicUsize::new(0), explained: AtomicUsize::new(0) }
    }
}

impl RiskSource for Fixed {
    fn score(&self, q: &RiskQuery<'_>) -> Option<RiskScore> {
        assert!(q.latest_departure > q.now - chrono::Duration::days(30));
        self.scored.fetch_add(1, Ordering::Relaxed);
        Some(RiskScore { late_departure: self.p, model_version: "risk-test-1".into() })
    }

    fn factors(&self, q: &RiskQuery<'_>, top: usize) -> Vec<RiskFactor> {
        self.explained.fetch_add(1, Ordering::Relaxed);
        let carrier = q.carrier.unwrap_or("none").to_string();
        let all = vec![
            RiskFactor {
                feature: "route".into(),
                contribution: 0.9,
                text: format!(
                    "carrier {carrier} to {} has departed late often; this raises the risk",
                    q.facts.ship_to.country
                ),
            },
            RiskFactor {
                feature: "backlog_at_release".into(),
                contribution: 0.4,
                text: "backlog 120 raises the risk".into(),
            },
            RiskFactor {
                feature: "hazmat".into(),
                contribution: -0.1,
                text: "no dangerous goods lowers the risk".into(),
            },
            RiskFactor { feature: "lines".into(), contribution: 0.05, text: "3 lines".into() },
        ];
        all.into_iter().take(top).collect()
    }
}

/// The default policy plus a review hold on high risk and a message reading the factors.
fn with_review_rule(extra: &str) -> Policy {
    let src = dispatch_policy::DEFAULT_POLICY
        .replace("[[hold]]\nid = \"credit\"", &format!("{extra}\n[[hold]]\nid = \"credit\""));
    Policy::compile(&src, "risk.toml", None).unwrap_or_else(|e| panic!("{e}"))
}

const REVIEW: &str = r#"[[hold]]
id = "late_risk_review"
when = 'risk.late_departure > 0.7'
reason = "policy_hold"
message = 'late-departure risk {risk.late_departure * 100.0:.0}%: {risk.factors[0].text}'
"#;

#[test]
fn without_a_model_risk_rules_and_terms_change_nothing() {
    let plain = Policy::default_policy();
    let risky = with_review_rule(REVIEW);
    assert!(risky.reads_risk() && plain.reads_risk(), "the default policy has the risk priority term");
    let whs = common::warehouses();
    for (facts, now) in common::orders(7, 2_000) {
        let wh = whs.get(&facts.warehouse).unwrap();
        let builtin = dispatch_core::readiness::evaluate(&facts, wh, now);
        for e in [
            risky.evaluate(&facts, wh, now),
            risky.evaluate_scored(&facts, wh, now, None),
            risky.evaluate_interpreted(&facts, wh, now),
        ] {
            assert_eq!(e.outcome, builtin.outcome, "{}", facts.external_id);
            assert_eq!(e.hold_reasons, builtin.hold_reasons);
            assert_eq!(e.priority, builtin.priority);
            assert_eq!(e.priority_terms, builtin.priority_terms, "the risk term is left out");
            assert!(e.rules.iter().all(|r| r.error.is_none() && r.rule != "late_risk_review"), "{:?}", e.rules);
            assert_eq!(e.risk, None);
        }
    }
}

#[test]
fn a_high_risk_holds_for_review_and_the_decision_records_why() {
    let policy = with_review_rule(REVIEW);
    let whs = common::warehouses();
    let model = Fixed::new(0.82);
    let (facts, now) = common::orders(3, 400)
        .into_iter()
        .find(|(f, n)| {
            let wh = whs.get(&f.warehouse).unwrap();
            dispatch_core::readiness::evaluate(f, wh, *n).outcome == OrderState::Released
        })
        .unwrap();
    let wh = whs.get(&facts.warehouse).unwrap();
    for e in [
        policy.evaluate_scored(&facts, wh, now, Some(&model)),
        policy.evaluate_scored_interpreted(&facts, wh, now, Some(&model)),
    ] {
        assert_eq!(e.outcome, OrderState::OnHold);
        assert_eq!(e.hold_reasons, vec![HoldReason::PolicyHold]);
        let hit = e.rules.iter().find(|r| r.rule == "late_risk_review").unwrap();
        assert_eq!(hit.seen["risk.late_departure"], 0.82);
        assert!(hit.message.starts_with("late-departure risk 82%: carrier "), "{}", hit.message);
        let note = e.risk.as_ref().expect("the decision records the risk");
        assert_eq!(note.model_version, "risk-test-1");
        assert_eq!(note.late_departure, 0.82);
        // The review rule fired and the priority term gave points.
        assert_eq!(note.used_by, vec!["late_risk_review".to_string(), "late_departure_risk".to_string()]);
        assert_eq!(note.factors.len(), dispatch_policy::risk::TOP_FACTORS);
        assert_eq!(note.factors[0].feature, "route");
        let term = e.priority_terms.iter().find(|t| t.term == "late_departure_risk").unwrap();
        assert_eq!((term.points, term.why.as_str()), (60, "late-departure risk 82%"));
        let summary = dispatch_core::event::summary(&dispatch_core::EventData::Evaluated(e.clone()));
        assert!(
            summary.contains(
                "late-departure risk 82% (model risk-test-1, used by late_risk_review, late_departure_risk): carrier"
            ),
            "{summary}"
        );
    }
}

#[test]
fn a_low_risk_is_read_but_not_recorded_and_explanations_are_not_computed() {
    let policy = with_review_rule(
        r#"[[hold]]
id = "late_risk_review"
when = 'risk.late_departure > 0.7'
reason = "policy_hold"
message = 'late-departure risk {risk.late_departure}'
"#,
    );
    let whs = common::warehouses();
    let model = Fixed::new(0.2);
    let (facts, now) = common::orders(3, 1).remove(0);
    let wh = whs.get(&facts.warehouse).unwrap();
    let e = policy.evaluate_scored(&facts, wh, now, Some(&model));
    assert!(!e.hold_reasons.contains(&HoldReason::PolicyHold));
    assert_eq!(e.risk, None, "the risk did not change the decision");
    assert!(e.priority_terms.iter().any(|t| t.term == "late_departure_risk" && t.points == 0));
    assert_eq!(model.scored.load(Ordering::Relaxed), 1, "scored once per evaluation");
    assert_eq!(model.explained.load(Ordering::Relaxed), 0, "no explanation unless it mattered");
}

#[test]
fn factors_are_readable_in_conditions() {
    let policy = with_review_rule(
        r#"[[hold]]
id = "route_review"
when = 'risk.factors.exists(f, f.feature == "route" && f.contribution > 0.5) && risk.late_departure > 0.3'
reason = "policy_hold"
message = '{risk.factors[0].text} (model {risk.model_version})'
"#,
    );
    let whs = common::warehouses();
    let (facts, now) = common::orders(11, 1).remove(0);
    let wh = whs.get(&facts.warehouse).unwrap();
    let model = Fixed::new(0.4);
    let e = policy.evaluate_scored(&facts, wh, now, Some(&model));
    let hit = e.rules.iter().find(|r| r.rule == "route_review").expect("fired");
    assert!(hit.message.ends_with("(model risk-test-1)"), "{}", hit.message);
    assert_eq!(e.risk.as_ref().unwrap().used_by, vec!["route_review".to_string()]);
    assert_eq!(model.explained.load(Ordering::Relaxed), 1, "the factors the policy read are reused for the record");
}

#[test]
fn a_policy_without_risk_never_asks_the_model() {
    let src = dispatch_policy::DEFAULT_POLICY;
    let start = src.find("[[priority.terms]]\nid = \"late_departure_risk\"").unwrap();
    let end = src[start..].find("\n\n").map_or(src.len(), |i| start + i);
    let without = format!("{}{}", &src[..start], &src[end..]);
    let policy = Policy::compile(&without, "p.toml", None).unwrap();
    assert!(!policy.reads_risk());
    let whs = common::warehouses();
    let (facts, now) = common::orders(5, 1).remove(0);
    let model = Fixed::new(0.99);
    let e = policy.evaluate_scored(&facts, whs.get(&facts.warehouse).unwrap(), now, Some(&model));
    assert_eq!(model.scored.load(Ordering::Relaxed), 0);
    assert_eq!(e.risk, None);
}

#[test]
fn approval_routes_cannot_read_risk() {
    let src = dispatch_policy::DEFAULT_POLICY.to_string()
        + r#"
[[approvals.route]]
id = "risky_expedite"
kind = "expedited_freight"
when = 'risk.late_departure > 0.5'
auto = true
"#;
    let e = Policy::compile(&src, "p.toml", None).unwrap_err();
    assert!(e.errors.iter().any(|x| x.message.contains("`risk` is not available in approval routes")), "{e}");
}

#[test]
fn advice_costs_default_and_a_negative_one_is_refused() {
    let p = Policy::default_policy();
    assert_eq!((p.advice.extra_shipment_cost, p.advice.late_cost_per_day), (25.0, 40.0));
    let src = dispatch_policy::DEFAULT_POLICY.to_string() + "\n[advice]\nlate_cost_per_day = -5.0\n";
    let e = Policy::compile(&src, "p.toml", None).unwrap_err();
    assert!(e.errors.iter().any(|x| x.message.contains("[advice] late_cost_per_day must be a number ≥ 0")), "{e}");
    let ok = dispatch_policy::DEFAULT_POLICY.to_string() + "\n[advice]\nextra_shipment_cost = 80.0\n";
    assert_eq!(Policy::compile(&ok, "p.toml", None).unwrap().advice.extra_shipment_cost, 80.0);
}
