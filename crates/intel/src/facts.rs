//! The release facts of a live order, as the risk model reads them.

use chrono::{DateTime, Utc};
use dispatch_core::{Evaluation, Event, EventData, Order, OrderFacts, OrderState, Warehouse};

use crate::history::{DispatchRecord, ReleaseFacts};

/// What dispatchd knows about `order` at `now` in the history's terms. `backlog` is the
/// warehouse's released queue; `carrier_failures_6h` the carrier's recent failed bookings.
pub fn from_order(
    order: &Order,
    warehouse: &Warehouse,
    now: DateTime<Utc>,
    backlog: Option<u32>,
    carrier_failures_6h: Option<u32>,
) -> ReleaseFacts {
    let carrier = order.shipment.as_ref().map(|s| s.carrier.as_str()).or(order.facts.carrier_preference.as_deref());
    let mut r = from_facts(&order.facts, warehouse, now, carrier, order.latest_departure, backlog, carrier_failures_6h);
    r.order_id = order.id.clone();
    r
}

/// The same for an order being evaluated (no projection yet): its facts, the carrier the
/// policy chose and the latest departure it derived. The id is the ERP's (`external_id`).
pub fn from_facts(
    f: &OrderFacts,
    warehouse: &Warehouse,
    now: DateTime<Utc>,
    carrier: Option<&str>,
    latest_departure: Option<DateTime<Utc>>,
    backlog: Option<u32>,
    carrier_failures_6h: Option<u32>,
) -> ReleaseFacts {
    let main_family = f
        .lines
        .iter()
        .max_by(|a, b| (f64::from(a.qty) * a.unit_value).total_cmp(&(f64::from(b.qty) * b.unit_value)))
        .and_then(|l| l.product_family.clone())
        .unwrap_or_else(|| "unknown".into());
    let weight = f.lines.iter().any(|l| l.weight_kg.is_some()).then(|| f.total_weight_kg());
    ReleaseFacts {
        order_id: f.external_id.clone(),
        warehouse: f.warehouse.clone(),
        carrier: carrier.unwrap_or("unassigned").to_string(),
        product_family: main_family,
        region: f.ship_to.country.clone(),
        service_level: f.service_level.to_string(),
        transport_mode: f.transport_mode.clone().unwrap_or_else(|| "parcel".into()),
        released_at: now,
        release_local: now.with_timezone(&warehouse.timezone).naive_local(),
        hours_to_cutoff: latest_departure.map(|t| (t - now).num_minutes() as f64 / 60.0),
        backlog_at_release: backlog,
        carrier_failures_6h,
        lines: f.lines.len() as u32,
        weight_kg: weight,
        hazmat: f.has_hazmat(),
        order_value: Some(f.order_value()),
    }
}

/// The history record of a dispatched order, from its projection and event stream: the facts
/// known at its (last) release and the outcome of its first departure. `None` before it
/// departed or when it was never released. `backlog` is unknown afterwards and left empty.
pub fn dispatch_record(order: &Order, events: &[Event], warehouse: &Warehouse) -> Option<DispatchRecord> {
    let mut release: Option<(&Event, &Evaluation)> = None;
    let mut departed_at: Option<DateTime<Utc>> = None;
    for ev in events {
        match &ev.data {
            // The last release before the departure decides (a release after a new hold
            // replaces an earlier one).
            EventData::Evaluated(e) if e.outcome == OrderState::Released && departed_at.is_none() => {
                release = Some((ev, e));
            }
            EventData::Dispatched { departed_at: at } if departed_at.is_none() => departed_at = Some(*at),
            _ => {}
        }
    }
    let departed_at = departed_at.or_else(|| order.shipment.as_ref().and_then(|s| s.departed_at))?;
    let (ev, e) = release?;
    let released_at = ev.at;
    let latest = e.inputs.latest_departure;
    let carrier = order
        .shipment
        .as_ref()
        .map(|s| s.carrier.as_str())
        .or(e.carrier.as_ref().and_then(|c| c.carrier.as_deref()))
        .or(order.facts.carrier_preference.as_deref());
    let mut facts = from_facts(&order.facts, warehouse, released_at, carrier, Some(latest), None, None);
    facts.order_id = order.id.clone();
    let late_h = (departed_at - latest).num_seconds() as f64 / 3600.0;
    let departed_local = departed_at.with_timezone(&warehouse.timezone).date_naive();
    Some(DispatchRecord {
        facts,
        departed_at: Some(departed_at),
        departed_late: departed_at > latest,
        shipped_after_promise: departed_at > latest || departed_local > e.inputs.ship_by,
        hours_late: late_h.max(0.0),
        true_late_probability: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use dispatch_core::{Command, Ctx, Warehouses, apply, decide};

    fn setup() -> (Warehouses, OrderFacts, DateTime<Utc>) {
        let whs: Vec<Warehouse> = serde_json::from_value(serde_json::json!([
            {"code": "AMS", "name": "Amsterdam DC", "country": "NL", "timezone": "Europe/Amsterdam",
             "cutoffs": {"next_day": "17:00"}}
        ]))
        .unwrap();
        let facts: OrderFacts = serde_json::from_value(serde_json::json!({
            "source": "odoo", "external_id": "WH/OUT/7", "warehouse": "AMS",
            "customer": {"id": "C-1", "name": "Acme", "tier": "gold", "credit_status": "ok"},
            "service_level": "next_day", "promised_date": "2026-11-25",
            "ship_to": {"name": "Acme", "street": "Damrak 1", "city": "Amsterdam", "postcode": "1012 LG", "country": "NL"},
            "lines": [{"sku": "P-1", "product_family": "pumps", "qty": 2, "qty_allocated": 2, "unit_value": 100.0, "weight_kg": 3.0}],
            "payment": {"terms": "net30", "status": "ok"}, "documents": [],
            "transport_mode": "parcel", "carrier_preference": "dhl"
        }))
        .unwrap();
        // Tuesday 24 Nov 2026, 09:00 in Amsterdam; the latest departure is 17:00 local.
        (Warehouses::new(whs).unwrap(), facts, Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap())
    }

    fn run(order: &mut Option<Order>, events: &mut Vec<Event>, cmd: Command, at: DateTime<Utc>, whs: &Warehouses) {
        let ctx = Ctx::new(at, whs);
        let data = decide(order.as_ref(), cmd, &ctx).unwrap();
        for d in data {
            let version = order.as_ref().map_or(1, |o| o.version + 1);
            let ev = Event { order_id: "ord_1".into(), version, at, actor: "test".into(), request_id: None, data: d };
            *order = Some(apply(order.take(), &ev).unwrap());
            events.push(ev);
        }
    }

    fn lifecycle(departure: DateTime<Utc>) -> (Option<DispatchRecord>, Option<DispatchRecord>) {
        let (whs, facts, t0) = setup();
        let (mut order, mut events) = (None, Vec::new());
        run(&mut order, &mut events, Command::Upsert { facts: Box::new(facts), expected_version: None }, t0, &whs);
        let booking = Command::RecordBooking { carrier: "dhl".into(), tracking_number: "JD1".into(), service: None };
        run(&mut order, &mut events, booking, t0 + Duration::minutes(10), &whs);
        let wh = whs.get("AMS").unwrap();
        let before = dispatch_record(order.as_ref().unwrap(), &events, wh);
        run(&mut order, &mut events, Command::RecordDeparture { at: departure }, departure, &whs);
        (before, dispatch_record(order.as_ref().unwrap(), &events, wh))
    }

    #[test]
    fn a_departure_before_the_cutoff_is_on_time() {
        let t0 = setup().2;
        let (before, after) = lifecycle(t0 + Duration::hours(6));
        assert_eq!(before, None, "no record before the departure");
        let r = after.unwrap();
        assert_eq!(r.facts.order_id, "ord_1");
        assert_eq!(r.facts.released_at, t0);
        assert_eq!(r.facts.carrier, "dhl");
        assert_eq!(r.facts.product_family, "pumps");
        assert_eq!(r.facts.hours_to_cutoff, Some(8.0));
        assert_eq!(r.facts.release_local.to_string(), "2026-11-24 09:00:00");
        assert!(!r.departed_late && !r.shipped_after_promise);
        assert_eq!(r.hours_late, 0.0);
    }

    #[test]
    fn a_departure_after_the_cutoff_is_late_by_the_hours_past_it() {
        let t0 = setup().2;
        let r = lifecycle(t0 + Duration::hours(8) + Duration::minutes(90)).1.unwrap();
        assert!(r.departed_late && r.shipped_after_promise);
        assert_eq!(r.hours_late, 1.5);
        assert_eq!(r.departed_at, Some(t0 + Duration::minutes(570)));
    }
}
