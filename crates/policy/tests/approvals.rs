//! The approval decision table: the brief's five default rows, risk tiers, hit policy FIRST,
//! the kinds' requirements, and the load-time checks that keep a policy from routing an
//! exception to a role that must not decide it.

mod common;

use chrono::{TimeZone, Utc};
use dispatch_core::approval::{ApprovalDraft, ApprovalError, SplitLine, StepMode};
use dispatch_core::{OrderFacts, Role, ServiceLevel};
use dispatch_policy::{DEFAULT_POLICY, Policy};

fn facts(value_per_unit: f64) -> OrderFacts {
    serde_json::from_value(serde_json::json!({
        "source": "odoo", "external_id": "WH1/OUT/7", "warehouse": "AMS",
        "customer": {"id": "C-1", "name": "Acme BV", "tier": "gold", "credit_status": "ok", "account_owner": "u-7"},
        "service_level": "next_day", "promised_date": "2026-11-27",
        "ship_to": {"name": "Acme BV", "street": "Damrak 1", "city": "Amsterdam", "postcode": "1012 LG", "country": "NL"},
        "lines": [{"sku": "P-1", "qty": 10, "qty_allocated": 6, "unit_value": value_per_unit},
                  {"sku": "V-2", "qty": 2, "qty_allocated": 2, "unit_value": 40.0}],
        "documents": ["commercial_invoice"], "transport_mode": "parcel"
    }))
    .unwrap()
}

fn draft(kind: &str) -> ApprovalDraft {
    ApprovalDraft {
        kind: kind.into(),
        reason: Some("customer deadline".into()),
        amount: None,
        currency: None,
        cost_center: None,
        lines: vec![],
        carrier: None,
        service: None,
    }
}

fn route(p: &Policy, d: &ApprovalDraft, f: &OrderFacts) -> Result<dispatch_core::approval::Routing, ApprovalError> {
    let whs = common::warehouses();
    let now = Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap();
    p.route_approval(d, &[Role::Dispatcher], f, whs.get("AMS").unwrap(), now)
}

fn roles(r: &dispatch_core::approval::Routing) -> Vec<(StepMode, Vec<Role>)> {
    r.steps.iter().map(|s| (s.mode, s.roles.clone())).collect()
}

#[test]
fn the_five_default_rows() {
    let p = Policy::default_policy();
    // Partial shipment: above 5,000 the warehouse lead and the account owner; else the lead.
    let mut d = draft("partial_shipment");
    d.lines = vec![SplitLine { sku: "P-1".into(), qty: 6 }];
    let high = route(&p, &d, &facts(600.0)).unwrap();
    assert_eq!(high.rule, "partial-high-value");
    assert_eq!(roles(&high), vec![(StepMode::AllOf, vec![Role::WarehouseLead, Role::AccountOwner])]);
    assert_eq!(high.steps[0].sla_minutes, Some(240));
    assert_eq!(high.steps[0].escalate_to, vec![Role::OpsManager]);
    let low = route(&p, &d, &facts(100.0)).unwrap();
    assert_eq!((low.rule.as_str(), roles(&low)), ("partial", vec![(StepMode::AnyOf, vec![Role::WarehouseLead])]));
    assert_eq!(low.policy, p.hash);

    // Expedited freight: supervisor, reason and cost center required.
    let mut d = draft("expedited_freight");
    d.service = Some(ServiceLevel::SameDay);
    d.reason = None;
    match route(&p, &d, &facts(100.0)) {
        Err(ApprovalError::Invalid(e)) => {
            let fields: Vec<&str> = e.iter().map(|x| x.field.as_str()).collect();
            assert_eq!(fields, ["reason", "cost_center"]);
        }
        other => panic!("{other:?}"),
    }
    d.reason = Some("line-down at the customer".into());
    d.cost_center = Some("CC-4100".into());
    let r = route(&p, &d, &facts(100.0)).unwrap();
    assert_eq!(roles(&r), vec![(StepMode::AnyOf, vec![Role::Supervisor])]);
    assert_eq!(r.waives, vec![dispatch_core::HoldReason::CutoffMissed]);

    // Credit hold: finance, never auto.
    let r = route(&p, &draft("credit_hold_release"), &facts(100.0)).unwrap();
    assert!(!r.auto_approve);
    assert_eq!(roles(&r), vec![(StepMode::AnyOf, vec![Role::Finance])]);

    // Route override: auto inside the carrier matrix, supervisor outside it.
    let mut d = draft("route_override");
    d.carrier = Some("dpd".into());
    let r = route(&p, &d, &facts(100.0)).unwrap();
    assert!(r.auto_approve, "dpd is an allowed parcel carrier for NL");
    assert_eq!(r.rule, "route-override-in-matrix");
    d.carrier = Some("own_fleet".into());
    let r = route(&p, &d, &facts(100.0)).unwrap();
    assert!(!r.auto_approve);
    assert_eq!(roles(&r), vec![(StepMode::AnyOf, vec![Role::Supervisor])]);

    // Compliance: compliance only.
    let r = route(&p, &draft("compliance_release"), &facts(100.0)).unwrap();
    assert_eq!(roles(&r), vec![(StepMode::AnyOf, vec![Role::Compliance])]);
    assert_eq!(r.waives, vec![dispatch_core::HoldReason::DocsMissing]);

    assert!(
        matches!(route(&p, &draft("teleport"), &facts(1.0)), Err(ApprovalError::Invalid(e)) if e[0].field == "kind")
    );
}

/// Low → auto, medium → supervisor, high → finance then ops leadership, for a kind the policy
/// adds; rows are tried in file order and the first match wins.
#[test]
fn risk_tiers_with_a_kind_the_policy_adds() {
    let src = format!(
        "{DEFAULT_POLICY}\n{}",
        r#"
[approvals.kinds.damaged_goods_writeoff]
amount_required = true
waives = ["policy_hold"]

[[approvals.route]]
id = "writeoff-low"
kind = "damaged_goods_writeoff"
when = 'request.amount < 100.0'
auto = true

[[approvals.route]]
id = "writeoff-medium"
kind = "damaged_goods_writeoff"
when = 'request.amount < 1000.0'
steps = [{ any_of = ["supervisor"], sla = "2h", escalate_to = ["ops_manager"] }]

[[approvals.route]]
id = "writeoff-high"
kind = "damaged_goods_writeoff"
steps = [{ any_of = ["finance"] }, { all_of = ["ops_manager", "account_owner"] }]
"#
    );
    let p = Policy::compile(&src, "p.toml", None).unwrap();
    let mut d = draft("damaged_goods_writeoff");
    assert!(matches!(route(&p, &d, &facts(1.0)), Err(ApprovalError::Invalid(e)) if e[0].field == "amount"));
    let tier = |amount: f64| {
        let mut d = d.clone();
        d.amount = Some(amount);
        d.currency = Some("EUR".into());
        route(&p, &d, &facts(1.0)).unwrap()
    };
    assert!(tier(50.0).auto_approve);
    assert_eq!(tier(50.0).rule, "writeoff-low");
    assert_eq!(tier(500.0).rule, "writeoff-medium");
    let high = tier(5000.0);
    assert_eq!(high.rule, "writeoff-high");
    assert_eq!(
        roles(&high),
        vec![(StepMode::AnyOf, vec![Role::Finance]), (StepMode::AllOf, vec![Role::OpsManager, Role::AccountOwner])]
    );
    assert_eq!(high.waives, vec![dispatch_core::HoldReason::PolicyHold]);
    d.amount = Some(1.0);
}

fn refused(extra: &str) -> Vec<String> {
    match Policy::compile(&format!("{DEFAULT_POLICY}\n{extra}"), "p.toml", None) {
        Ok(_) => panic!("accepted:\n{extra}"),
        Err(e) => e.errors.iter().map(|x| x.message.clone()).collect(),
    }
}

#[test]
fn a_policy_cannot_route_around_the_controls() {
    let e = refused("[[approvals.route]]\nid = \"credit-auto\"\nkind = \"credit_hold_release\"\nauto = true\n");
    assert!(e[0].contains("never auto-approved"), "{e:?}");
    let e = refused(
        "[[approvals.route]]\nid = \"docs-by-super\"\nkind = \"compliance_release\"\nsteps = [{ any_of = [\"supervisor\"] }]\n",
    );
    assert!(e[0].contains("only compliance may"), "{e:?}");
    let e = refused(
        "[[approvals.route]]\nid = \"x\"\nkind = \"compliance_release\"\nsteps = [{ any_of = [\"compliance\"], sla = \"1h\", escalate_to = [\"admin\"] }]\n",
    );
    assert!(e[0].contains("`admin` may not decide"), "{e:?}");
    let e =
        refused("[[approvals.route]]\nid = \"x\"\nkind = \"partial_shipment\"\nsteps = [{ any_of = [\"boss\"] }]\n");
    assert!(e[0].contains("unknown role `boss`"), "{e:?}");
    let e = refused("[[approvals.route]]\nid = \"x\"\nkind = \"partial_shipmnt\"\nauto = true\n");
    assert!(e[0].contains("Did you mean `partial_shipment`"), "{e:?}");
    let e = refused("[approvals.holds]\nstock_short = \"partial_shipment\"\n");
    assert!(e[0].contains("cannot request it for a hold by itself"), "{e:?}");
    let e = refused(
        "[[approvals.route]]\nid = \"x\"\nkind = \"route_override\"\nsteps = [{ any_of = [\"supervisor\"], sla = \"soon\" }]\n",
    );
    assert!(e[0].contains("not a duration"), "{e:?}");
    // `request` is for routes only.
    let e =
        refused("[[hold]]\nid = \"big\"\nwhen = 'request.amount > 1.0'\nreason = \"policy_hold\"\nmessage = \"x\"\n");
    assert!(e.iter().any(|m| m.contains("only in [[approvals.route]]")), "{e:?}");
}

#[test]
fn holds_map_to_kinds() {
    let p = Policy::compile(
        &format!("{DEFAULT_POLICY}\n[approvals.holds]\ncredit_hold = \"credit_hold_release\"\n"),
        "p.toml",
        None,
    )
    .unwrap();
    assert_eq!(p.approval_kind_for(dispatch_core::HoldReason::CreditHold), Some("credit_hold_release"));
    assert_eq!(p.approval_kind_for(dispatch_core::HoldReason::DocsMissing), None);
    assert_eq!(Policy::default_policy().approval_kind_for(dispatch_core::HoldReason::CreditHold), None);
}

#[test]
fn durations() {
    use dispatch_policy::approvals::parse_minutes;
    assert_eq!(parse_minutes("30m"), Some(30));
    assert_eq!(parse_minutes("4h"), Some(240));
    assert_eq!(parse_minutes("2d"), Some(2880));
    assert_eq!(parse_minutes("0h"), None);
    assert_eq!(parse_minutes("soon"), None);
}

/// `[exceptions.<code>] overridable`: the catalogue says which holds a supervisor may override;
/// without it soft holds are overridable and hard blocks are not.
#[test]
fn the_exception_catalogue_says_which_holds_may_be_overridden() {
    let default = Policy::compile(DEFAULT_POLICY, "default.toml", None).unwrap();
    for r in dispatch_core::HoldReason::ALL {
        assert_eq!(default.overridable(*r), dispatch_core::overrides::default_overridable(*r), "{r}");
    }
    assert!(default.overridable(dispatch_core::HoldReason::CutoffMissed));
    assert!(!default.overridable(dispatch_core::HoldReason::AddressInvalid));
    assert!(!default.overridable(dispatch_core::HoldReason::DocsMissing));
    let changed = DEFAULT_POLICY
        .replace("[exceptions.cutoff_missed]\n", "[exceptions.cutoff_missed]\noverridable = false\n")
        .replace("[exceptions.payment_pending]\n", "[exceptions.payment_pending]\noverridable = true\n");
    let p = Policy::compile(&changed, "changed.toml", None).unwrap();
    assert!(!p.overridable(dispatch_core::HoldReason::CutoffMissed));
    assert!(p.overridable(dispatch_core::HoldReason::PaymentPending));
    assert!(p.overridable(dispatch_core::HoldReason::CarrierUnavailable), "unset keeps the default");
    // A typo is an error, not a silently ignored setting.
    let typo =
        DEFAULT_POLICY.replace("[exceptions.cutoff_missed]\n", "[exceptions.cutoff_missed]\noverrideable = true\n");
    assert!(Policy::compile(&typo, "typo.toml", None).is_err());
}
