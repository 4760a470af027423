//! Cut-off overrides and holidays, and the carrier matrix.

mod common;

use chrono::{NaiveDate, TimeZone, Utc};
use dispatch_core::{OrderState, ServiceLevel};
use dispatch_policy::{DEFAULT_POLICY, Policy};

fn base_order() -> dispatch_core::OrderFacts {
    let whs = common::warehouses();
    let now = Utc.with_ymd_and_hms(2026, 11, 27, 9, 0, 0).unwrap();
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3);
    let mut f = common::order(&mut rng, 1, now, &whs);
    f.warehouse = "AMS".into();
    f.service_level = ServiceLevel::NextDay;
    f.promised_date = NaiveDate::from_ymd_opt(2026, 12, 2).unwrap();
    f.ship_to = dispatch_core::Address {
        name: "Acme".into(),
        street: "Damrak 1".into(),
        city: "Amsterdam".into(),
        postcode: "1012 LG".into(),
        country: "NL".into(),
    };
    for l in &mut f.lines {
        l.qty_allocated = l.qty;
        l.hazmat = false;
        l.weight_kg = Some(1.0);
    }
    f.customer.credit_status = dispatch_core::CreditStatus::Ok;
    f.payment.status = dispatch_core::PaymentStatus::Ok;
    f.transport_mode = Some("parcel".into());
    f.carrier_preference = Some("dpd".into());
    f
}

#[test]
fn holidays_move_the_ship_by_date_and_overrides_set_the_cutoff() {
    let src = DEFAULT_POLICY.replace(
        "[cutoffs]\n",
        "[cutoffs]\n[[cutoffs.override]]\nwarehouse = \"AMS\"\nservice_level = \"next_day\"\ntime = \"15:30\"\n\n[cutoffs.holidays]\nAMS = [\"2026-12-01\", \"2026-11-27\"]\n",
    );
    let p = Policy::compile(&src, "h.toml", Some(&["AMS".into(), "DUS".into(), "MAN".into()])).unwrap();
    let whs = common::warehouses();
    let wh = whs.get("AMS").unwrap();
    let f = base_order();
    let now = Utc.with_ymd_and_hms(2026, 11, 27, 9, 0, 0).unwrap();
    // Promised Wed 2 Dec, next day: Tue 1 Dec is a holiday, so Mon 30 Nov, 15:30 local.
    let e = p.evaluate(&f, wh, now);
    assert_eq!(e.inputs.ship_by, NaiveDate::from_ymd_opt(2026, 11, 30).unwrap());
    assert_eq!(e.inputs.cutoff, "15:30");
    assert_eq!(e.inputs.latest_departure.to_rfc3339(), "2026-11-30T14:30:00+00:00");
    // The built-in rules know neither.
    let b = dispatch_core::readiness::evaluate(&f, wh, now);
    assert_eq!(b.inputs.ship_by, NaiveDate::from_ymd_opt(2026, 12, 1).unwrap());
    // `now.is_holiday` sees today's holiday (27 Nov in this policy).
    let probe = src.replace(
        "# --- What a passed check says.",
        "[[hold]]\nid = \"holiday\"\nwhen = 'now.is_holiday'\nreason = \"policy_hold\"\nmessage = 'no departures today'\n\n# --- What a passed check says.",
    );
    let p = Policy::compile(&probe, "h.toml", None).unwrap();
    let e = p.evaluate(&f, wh, now);
    assert_eq!(e.outcome, OrderState::OnHold);
    assert_eq!(e.rules[0].rule, "holiday");
}

#[test]
fn the_carrier_matrix_honours_preference_falls_back_and_explains() {
    let p = Policy::default_policy();
    let whs = common::warehouses();
    let wh = whs.get("AMS").unwrap();
    let f = base_order();
    let c = p.choose_carrier(&f, wh, &[]);
    assert_eq!(c.carrier.as_deref(), Some("dpd"));
    assert_eq!(c.lane.as_deref(), Some("parcel-eu"));
    assert!(c.reason.contains("preferred"), "{}", c.reason);
    // dpd is down: the lane's first allowed carrier.
    let c = p.choose_carrier(&f, wh, &["dpd"]);
    assert_eq!(c.carrier.as_deref(), Some("dhl"));
    // Every parcel carrier down: the fallback.
    let c = p.choose_carrier(&f, wh, &["dhl", "dpd", "gls", "postnl", "ups"]);
    assert_eq!(c.carrier.as_deref(), Some("dhl_freight"));
    assert!(c.reason.contains("fallback"), "{}", c.reason);
    // Dangerous goods leave the parcel lanes: freight.
    let mut h = f.clone();
    h.lines[0].hazmat = true;
    let c = p.choose_carrier(&h, wh, &[]);
    assert_eq!(c.lane.as_deref(), Some("freight"));
    // A matrix that takes nothing, and holds when none: carrier_unavailable.
    let strict = DEFAULT_POLICY
        .replace("hold_when_none = false", "hold_when_none = true")
        .replace("[[carriers.lanes]]\nid = \"freight\"\ndestinations = [\"*\"]\ncarriers = [\"dhl_freight\"]\nfallbacks = [\"ups\"]\n", "");
    let strict = Policy::compile(&strict, "s.toml", None).unwrap();
    let e = strict.evaluate(&h, wh, Utc.with_ymd_and_hms(2026, 11, 27, 9, 0, 0).unwrap());
    assert!(e.hold_reasons.contains(&dispatch_core::HoldReason::CarrierUnavailable), "{:?}", e.hold_reasons);
    assert!(e.carrier.unwrap().reason.contains("no lane takes this order"));
}

#[test]
fn the_booking_route_is_the_lane_in_preference_order_then_its_fallbacks() {
    let p = Policy::default_policy();
    let whs = common::warehouses();
    let wh = whs.get("AMS").unwrap();
    let f = base_order();
    let r = p.booking_route(&f, wh).unwrap();
    assert_eq!(r.lane, "parcel-eu");
    // The order's preference first, then the lane's order.
    assert_eq!(r.carriers, ["dpd", "dhl", "gls", "postnl", "ups"]);
    assert_eq!(r.fallbacks, ["dhl_freight"]);
    assert!(r.auto_fallback, "automatic fallback is the default");
    // A preference the lane does not allow changes nothing.
    let mut other = f.clone();
    other.carrier_preference = Some("own_fleet".into());
    assert_eq!(p.booking_route(&other, wh).unwrap().carriers[0], "dhl");
    // No lane takes it: no route (the configuration's fallback applies in the worker).
    let strict = DEFAULT_POLICY
        .replace("[[carriers.lanes]]\nid = \"freight\"\ndestinations = [\"*\"]\ncarriers = [\"dhl_freight\"]\nfallbacks = [\"ups\"]\n", "");
    let strict = Policy::compile(&strict, "s.toml", None).unwrap();
    let mut h = f.clone();
    h.lines[0].hazmat = true;
    assert_eq!(strict.booking_route(&h, wh), None);
}

#[test]
fn auto_fallback_is_set_for_the_matrix_and_overridden_per_lane() {
    let src = DEFAULT_POLICY.replace("honour_preference = true\n", "honour_preference = true\nauto_fallback = false\n");
    let src = src.replacen(
        "carriers = [\"dhl\", \"dpd\", \"gls\", \"postnl\", \"ups\"]\nfallbacks = [\"dhl_freight\"]\n",
        "carriers = [\"dhl\", \"dpd\", \"gls\", \"postnl\", \"ups\"]\nfallbacks = [\"dhl_freight\"]\nauto_fallback = true\n",
        1,
    );
    let p = Policy::compile(&src, "a.toml", None).unwrap();
    let whs = common::warehouses();
    let wh = whs.get("AMS").unwrap();
    let f = base_order();
    assert!(p.booking_route(&f, wh).unwrap().auto_fallback, "the lane overrides the matrix");
    let mut h = f.clone();
    h.lines[0].hazmat = true;
    let r = p.booking_route(&h, wh).unwrap();
    assert_eq!(r.lane, "freight");
    assert!(!r.auto_fallback, "the matrix's setting");
    // A typo is refused like every unknown key.
    let bad = DEFAULT_POLICY.replace("honour_preference = true\n", "honour_preference = true\nauto_fallbak = false\n");
    let e = Policy::compile(&bad, "b.toml", None).unwrap_err();
    assert!(e.to_string().contains("auto_fallbak"), "{e}");
}
