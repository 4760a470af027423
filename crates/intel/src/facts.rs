//! The release facts of a live order, as the risk model reads them.

use chrono::{DateTime, Utc};
use dispatch_core::{Order, Warehouse};

use crate::history::ReleaseFacts;

/// What dispatchd knows about `order` at `now` in the history's terms. `backlog` is the
/// warehouse's released queue; `carrier_failures_6h` the carrier's recent failed bookings.
pub fn from_order(
    order: &Order,
    warehouse: &Warehouse,
    now: DateTime<Utc>,
    backlog: Option<u32>,
    carrier_failures_6h: Option<u32>,
) -> ReleaseFacts {
    let f = &order.facts;
    let main_family = f
        .lines
        .iter()
        .max_by(|a, b| (f64::from(a.qty) * a.unit_value).total_cmp(&(f64::from(b.qty) * b.unit_value)))
        .and_then(|l| l.product_family.clone())
        .unwrap_or_else(|| "unknown".into());
    let carrier = order
        .shipment
        .as_ref()
        .map(|s| s.carrier.clone())
        .or_else(|| f.carrier_preference.clone())
        .unwrap_or_else(|| "unassigned".into());
    let weight = f.lines.iter().any(|l| l.weight_kg.is_some()).then(|| f.total_weight_kg());
    ReleaseFacts {
        order_id: order.id.clone(),
        warehouse: f.warehouse.clone(),
        carrier,
        product_family: main_family,
        region: f.ship_to.country.clone(),
        service_level: f.service_level.to_string(),
        transport_mode: f.transport_mode.clone().unwrap_or_else(|| "parcel".into()),
        released_at: now,
        release_local: now.with_timezone(&warehouse.timezone).naive_local(),
        hours_to_cutoff: order.latest_departure.map(|t| (t - now).num_minutes() as f64 / 60.0),
        backlog_at_release: backlog,
        carrier_failures_6h,
        lines: f.lines.len() as u32,
        weight_kg: weight,
        hazmat: f.has_hazmat(),
        order_value: Some(f.order_value()),
    }
}
