//! Readiness checks: may this order leave? Each check looks at one family of facts and reports
//! pass or fail with a reason code and a sentence a dispatcher can act on. All checks always
//! run, so a held order shows every reason at once, not just the first.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::order::OrderFacts;
use crate::priority::{self, PriorityTerm};
use crate::vocab::{CheckName, CreditStatus, HoldReason, OrderState, PaymentStatus, document, in_eu_customs_union};
use crate::warehouse::Warehouse;

/// Name of the built-in rule set; the policy engine replaces it with a content hash.
pub const BUILTIN_POLICY: &str = "builtin-v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckResult {
    pub check: CheckName,
    pub passed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<HoldReason>,
    pub detail: String,
}

/// How the order crosses borders, which decides the papers it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Customs {
    Domestic,
    /// Inside the EU customs union: no export papers.
    EuInternal,
    /// Leaves a customs territory: commercial invoice and export declaration.
    Export,
}

/// The facts the decision was made on, besides the order itself: recorded in the event so a
/// decision can be explained and replayed later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EvalInputs {
    pub now: DateTime<Utc>,
    /// `now` in the warehouse's zone, e.g. `2026-11-27T15:04:00+01:00`.
    pub warehouse_local_now: String,
    pub timezone: String,
    /// Last warehouse ship day that still meets the promised date.
    #[schema(value_type = String, format = Date)]
    pub ship_by: NaiveDate,
    /// Local cut-off that applies, `HH:MM`.
    pub cutoff: String,
    pub latest_departure: DateTime<Utc>,
    pub customs: Customs,
    pub required_documents: Vec<String>,
    /// Postcode area, wave and route density the policy saw; only when it reads `route`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteInput>,
}

/// The route density an evaluation saw (see [`crate::route`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RouteInput {
    /// e.g. `NL-10`
    pub area: String,
    /// e.g. `AMS@2026-11-30T17:00Z`
    pub wave: String,
    /// Orders of the area and wave that are released or booked, this one included.
    pub density: u32,
}

/// The result of one readiness evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Evaluation {
    /// `released` or `on_hold`.
    pub outcome: OrderState,
    pub hold_reasons: Vec<HoldReason>,
    pub checks: Vec<CheckResult>,
    pub priority: i32,
    pub priority_terms: Vec<PriorityTerm>,
    pub inputs: EvalInputs,
    /// Which rule set decided: `builtin-v1` or a policy hash.
    pub policy: String,
    /// The policy rules that fired (held the order, or failed to evaluate) with the values
    /// they saw. Empty for the built-in rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleHit>,
    /// The carrier the policy's matrix chose, and why. `None` for the built-in rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<CarrierChoice>,
    /// The late-departure risk, when a rule or priority term that reads it changed the
    /// decision (model version, probability, top factors). `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<crate::risk::RiskNote>,
    /// The active risk model's score of the order, when a model is active (whether or not a
    /// rule read it). The projection keeps it for the board's risk filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scored: Option<crate::risk::ModelScore>,
}

/// A policy rule that fired or failed, so "why" has an answer that names the rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RuleHit {
    /// The rule's id in the policy file.
    pub rule: String,
    /// `hold`, `release`, `priority` or `carrier`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<HoldReason>,
    pub message: String,
    /// The context values the rule read, by path (`order.units_allocated`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub seen: BTreeMap<String, serde_json::Value>,
    /// Set when the rule could not be evaluated; its `on_error` decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The carrier chosen for an order by the policy's carrier matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CarrierChoice {
    /// `None` when no lane or no carrier takes the order.
    pub carrier: Option<String>,
    /// Id of the lane that took the order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lane: Option<String>,
    /// Other allowed carriers and fallbacks, in order, for when the chosen one fails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<String>,
    pub reason: String,
}

/// Runs every readiness check and scores priority. Pure: same facts, warehouse and `now`
/// give the same evaluation.
pub fn evaluate(facts: &OrderFacts, wh: &Warehouse, now: DateTime<Utc>) -> Evaluation {
    let customs = customs_of(&wh.country, &facts.ship_to.country);
    let required_documents = required_documents(facts, customs);
    let ship_by = wh.ship_day_on_or_before(facts.promised_date - Duration::days(facts.service_level.transit_days()));
    let cutoff = wh.cutoff(facts.service_level);
    let latest_departure = wh.local_instant(ship_by, cutoff);

    let checks = vec![
        check_stock(facts),
        check_credit(facts),
        check_payment(facts),
        check_cutoff(facts, wh, now, latest_departure),
        check_address(facts),
        check_documents(facts, &required_documents),
    ];
    let mut hold_reasons: Vec<HoldReason> = checks.iter().filter_map(|c| c.reason).collect();
    hold_reasons.sort();
    hold_reasons.dedup();
    let outcome = if hold_reasons.is_empty() { OrderState::Released } else { OrderState::OnHold };
    let (priority, priority_terms) = priority::score(facts, now, latest_departure);
    Evaluation {
        outcome,
        hold_reasons,
        checks,
        priority,
        priority_terms,
        inputs: EvalInputs {
            now,
            warehouse_local_now: now.with_timezone(&wh.timezone).to_rfc3339(),
            timezone: wh.timezone.name().to_string(),
            ship_by,
            cutoff: cutoff.format("%H:%M").to_string(),
            latest_departure,
            customs,
            required_documents,
            route: None,
        },
        policy: BUILTIN_POLICY.to_string(),
        rules: vec![],
        carrier: None,
        risk: None,
        scored: None,
    }
}

pub fn customs_of(origin: &str, destination: &str) -> Customs {
    if origin == destination {
        Customs::Domestic
    } else if in_eu_customs_union(origin) && in_eu_customs_union(destination) {
        Customs::EuInternal
    } else {
        Customs::Export
    }
}

pub fn required_documents(facts: &OrderFacts, customs: Customs) -> Vec<String> {
    let mut docs = Vec::new();
    if customs == Customs::Export {
        docs.push(document::COMMERCIAL_INVOICE.to_string());
        docs.push(document::EXPORT_DECLARATION.to_string());
    }
    if facts.has_hazmat() {
        docs.push(document::DANGEROUS_GOODS_DECLARATION.to_string());
    }
    docs
}

fn pass(check: CheckName, detail: impl Into<String>) -> CheckResult {
    CheckResult { check, passed: true, reason: None, detail: detail.into() }
}

fn fail(check: CheckName, reason: HoldReason, detail: String) -> CheckResult {
    CheckResult { check, passed: false, reason: Some(reason), detail }
}

fn check_stock(facts: &OrderFacts) -> CheckResult {
    let demanded: u64 = facts.lines.iter().map(|l| u64::from(l.qty)).sum();
    let allocated: u64 = facts.lines.iter().map(|l| u64::from(l.qty_allocated.min(l.qty))).sum();
    if allocated >= demanded {
        return pass(CheckName::Stock, format!("all {demanded} units allocated"));
    }
    let short: Vec<String> = facts
        .lines
        .iter()
        .filter(|l| l.qty_allocated < l.qty)
        .map(|l| format!("{} {}/{}", l.sku, l.qty_allocated, l.qty))
        .collect();
    if allocated == 0 {
        fail(CheckName::Stock, HoldReason::StockUnallocated, format!("no stock allocated yet ({})", short.join(", ")))
    } else {
        fail(
            CheckName::Stock,
            HoldReason::StockShort,
            format!("{allocated} of {demanded} units allocated; short: {}", short.join(", ")),
        )
    }
}

fn check_credit(facts: &OrderFacts) -> CheckResult {
    match facts.customer.credit_status {
        CreditStatus::Ok | CreditStatus::Watch => {
            pass(CheckName::Credit, format!("customer credit status {}", facts.customer.credit_status))
        }
        s => fail(
            CheckName::Credit,
            HoldReason::CreditHold,
            format!("customer {} credit status is {s}", facts.customer.id),
        ),
    }
}

fn check_payment(facts: &OrderFacts) -> CheckResult {
    let p = &facts.payment;
    match p.status {
        PaymentStatus::Ok | PaymentStatus::Paid | PaymentStatus::Authorized => {
            pass(CheckName::Payment, format!("payment {} ({})", p.status, p.terms))
        }
        // Overdue receivables are a credit question, not a missing payment for this order.
        PaymentStatus::Overdue => fail(
            CheckName::Payment,
            HoldReason::CreditHold,
            format!("customer has overdue invoices ({} terms)", p.terms),
        ),
        s => fail(CheckName::Payment, HoldReason::PaymentPending, format!("payment is {s} ({} terms)", p.terms)),
    }
}

fn check_cutoff(
    facts: &OrderFacts,
    wh: &Warehouse,
    now: DateTime<Utc>,
    latest_departure: DateTime<Utc>,
) -> CheckResult {
    let local = latest_departure.with_timezone(&wh.timezone);
    let when = format!("{} {} ({} cut-off)", local.format("%Y-%m-%d %H:%M"), wh.timezone.name(), facts.service_level);
    if now <= latest_departure {
        pass(CheckName::Cutoff, format!("must leave by {when}; {} left", human_duration(latest_departure - now)))
    } else {
        fail(
            CheckName::Cutoff,
            HoldReason::CutoffMissed,
            format!(
                "had to leave by {when} to arrive on {}; missed by {}",
                facts.promised_date,
                human_duration(now - latest_departure)
            ),
        )
    }
}

fn check_address(facts: &OrderFacts) -> CheckResult {
    let problems = crate::address::problems(&facts.ship_to);
    if problems.is_empty() {
        pass(CheckName::Address, format!("{} {} {}", facts.ship_to.postcode, facts.ship_to.city, facts.ship_to.country))
    } else {
        fail(CheckName::Address, HoldReason::AddressInvalid, problems.join("; "))
    }
}

fn check_documents(facts: &OrderFacts, required: &[String]) -> CheckResult {
    let missing: Vec<&str> =
        required.iter().filter(|d| !facts.documents.iter().any(|have| have == *d)).map(String::as_str).collect();
    if missing.is_empty() {
        if required.is_empty() {
            pass(CheckName::Documents, "no mandatory documents")
        } else {
            pass(CheckName::Documents, format!("present: {}", required.join(", ")))
        }
    } else {
        fail(CheckName::Documents, HoldReason::DocsMissing, format!("missing: {}", missing.join(", ")))
    }
}

/// `3h 12m`, `2d 4h`, `45m`.
pub fn human_duration(d: Duration) -> String {
    let mins = d.num_minutes().max(0);
    let (days, hours, m) = (mins / 1440, (mins % 1440) / 60, mins % 60);
    match (days, hours) {
        (0, 0) => format!("{m}m"),
        (0, h) => format!("{h}h {m}m"),
        (d, h) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::order::{Address, Customer, Line, Payment};
    use crate::vocab::ServiceLevel;
    use chrono::TimeZone;

    pub fn warehouse(code: &str, country: &str, tz: &str) -> Warehouse {
        serde_json::from_value(serde_json::json!({
            "code": code, "country": country, "timezone": tz,
            "cutoffs": {"same_day": "12:00", "next_day": "17:00", "standard": "18:00"}
        }))
        .unwrap()
    }

    pub fn facts() -> OrderFacts {
        OrderFacts {
            source: "odoo".into(),
            external_id: "WH1/OUT/00042".into(),
            warehouse: "AMS".into(),
            channel: Some("ecommerce".into()),
            customer: Customer {
                id: "C-100".into(),
                name: "Acme BV".into(),
                tier: "gold".into(),
                credit_status: CreditStatus::Ok,
                account_owner: Some("u-7".into()),
                email: None,
                locale: None,
                notifications_opt_out: false,
            },
            service_level: ServiceLevel::NextDay,
            promised_date: NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
            ship_to: Address {
                name: "Acme BV".into(),
                street: "Damrak 1".into(),
                city: "Amsterdam".into(),
                postcode: "1012 LG".into(),
                country: "NL".into(),
            },
            lines: vec![Line {
                sku: "P-1".into(),
                product_family: Some("pumps".into()),
                qty: 4,
                qty_allocated: 4,
                unit_value: 120.0,
                unit_cost: Some(80.0),
                weight_kg: Some(3.5),
                hazmat: false,
            }],
            payment: Payment { terms: "net30".into(), status: PaymentStatus::Ok },
            documents: vec!["commercial_invoice".into()],
            transport_mode: Some("parcel".into()),
            carrier_preference: Some("dhl".into()),
        }
    }

    /// Friday 27 Nov 2026, 10:00 in Amsterdam.
    pub fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 9, 0, 0).unwrap()
    }

    fn ams() -> Warehouse {
        warehouse("AMS", "NL", "Europe/Amsterdam")
    }

    fn reasons(f: &OrderFacts) -> Vec<HoldReason> {
        evaluate(f, &ams(), now()).hold_reasons
    }

    #[test]
    fn a_clean_order_is_released_and_every_check_passes() {
        let e = evaluate(&facts(), &ams(), now());
        assert_eq!(e.outcome, OrderState::Released);
        assert!(e.hold_reasons.is_empty());
        assert_eq!(e.checks.len(), 6);
        assert!(e.checks.iter().all(|c| c.passed && c.reason.is_none()));
        assert_eq!(e.inputs.customs, Customs::Domestic);
        // Promised Wed 2 Dec, next day → ship by Tue 1 Dec 17:00 local (16:00 UTC).
        assert_eq!(e.inputs.ship_by, NaiveDate::from_ymd_opt(2026, 12, 1).unwrap());
        assert_eq!(e.inputs.latest_departure.to_rfc3339(), "2026-12-01T16:00:00+00:00");
    }

    #[test]
    fn stock_partial_and_none() {
        let mut f = facts();
        f.lines[0].qty_allocated = 2;
        assert_eq!(reasons(&f), vec![HoldReason::StockShort]);
        f.lines[0].qty_allocated = 0;
        assert_eq!(reasons(&f), vec![HoldReason::StockUnallocated]);
        // Over-allocation counts as full, never as more than demanded.
        f.lines[0].qty_allocated = 9;
        assert!(reasons(&f).is_empty());
    }

    #[test]
    fn credit_and_payment() {
        let mut f = facts();
        f.customer.credit_status = CreditStatus::Hold;
        assert_eq!(reasons(&f), vec![HoldReason::CreditHold]);
        f.customer.credit_status = CreditStatus::Watch;
        assert!(reasons(&f).is_empty());
        f.payment.status = PaymentStatus::Pending;
        assert_eq!(reasons(&f), vec![HoldReason::PaymentPending]);
        f.payment.status = PaymentStatus::Overdue;
        assert_eq!(reasons(&f), vec![HoldReason::CreditHold]);
    }

    #[test]
    fn cutoff_is_judged_in_warehouse_local_time() {
        let mut f = facts();
        f.service_level = ServiceLevel::SameDay;
        f.promised_date = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        // 11:59 local (10:59 UTC) is before the 12:00 same-day cut-off.
        let before = Utc.with_ymd_and_hms(2026, 11, 27, 10, 59, 0).unwrap();
        assert!(evaluate(&f, &ams(), before).hold_reasons.is_empty());
        // 12:01 local is after it, although it is only 11:01 UTC.
        let after = Utc.with_ymd_and_hms(2026, 11, 27, 11, 1, 0).unwrap();
        let e = evaluate(&f, &ams(), after);
        assert_eq!(e.hold_reasons, vec![HoldReason::CutoffMissed]);
        let c = e.checks.iter().find(|c| c.check == CheckName::Cutoff).unwrap();
        assert!(c.detail.contains("12:00 Europe/Amsterdam"), "{}", c.detail);
        // The same instant in London (one hour behind) is still before its cut-off.
        let lon = warehouse("MAN", "GB", "Europe/London");
        let mut g = f.clone();
        g.ship_to.country = "GB".into();
        g.ship_to.postcode = "M1 1AE".into();
        assert!(evaluate(&g, &lon, after).hold_reasons.is_empty());
    }

    #[test]
    fn promised_monday_next_day_ships_friday() {
        let mut f = facts();
        f.promised_date = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        let e = evaluate(&f, &ams(), now());
        assert_eq!(e.inputs.ship_by, NaiveDate::from_ymd_opt(2026, 11, 27).unwrap());
        assert!(e.hold_reasons.is_empty());
    }

    #[test]
    fn address_problems_hold() {
        let mut f = facts();
        f.ship_to.postcode = "ABC".into();
        assert_eq!(reasons(&f), vec![HoldReason::AddressInvalid]);
    }

    #[test]
    fn export_outside_the_customs_union_needs_papers() {
        let mut f = facts();
        f.ship_to.country = "GB".into();
        f.ship_to.postcode = "SW1A 1AA".into();
        let e = evaluate(&f, &ams(), now());
        assert_eq!(e.inputs.customs, Customs::Export);
        assert_eq!(e.hold_reasons, vec![HoldReason::DocsMissing]);
        let c = e.checks.iter().find(|c| c.check == CheckName::Documents).unwrap();
        assert_eq!(c.detail, "missing: export_declaration");
        f.documents.push("export_declaration".into());
        assert!(reasons(&f).is_empty());
        // Within the EU: no export papers even without an invoice.
        let mut g = facts();
        g.ship_to = Address { country: "DE".into(), postcode: "10115".into(), ..g.ship_to };
        g.documents.clear();
        assert!(reasons(&g).is_empty());
    }

    #[test]
    fn hazmat_needs_a_dangerous_goods_declaration() {
        let mut f = facts();
        f.lines[0].hazmat = true;
        assert_eq!(reasons(&f), vec![HoldReason::DocsMissing]);
        f.documents.push("dangerous_goods_declaration".into());
        assert!(reasons(&f).is_empty());
    }

    #[test]
    fn every_failing_reason_is_reported_not_just_the_first() {
        let mut f = facts();
        f.lines[0].qty_allocated = 0;
        f.customer.credit_status = CreditStatus::Blocked;
        f.payment.status = PaymentStatus::Unpaid;
        f.ship_to.postcode = String::new();
        f.ship_to.country = "US".into();
        f.promised_date = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let e = evaluate(&f, &ams(), now());
        assert_eq!(
            e.hold_reasons,
            vec![
                HoldReason::StockUnallocated,
                HoldReason::CreditHold,
                HoldReason::PaymentPending,
                HoldReason::AddressInvalid,
                HoldReason::DocsMissing,
                HoldReason::CutoffMissed,
            ]
        );
        assert_eq!(e.checks.iter().filter(|c| !c.passed).count(), 6);
    }
}
