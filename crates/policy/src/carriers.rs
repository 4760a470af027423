//! The carrier matrix: which carriers may take an order, by destination, origin, transport
//! mode, weight and dangerous goods, in order of preference with fallbacks. [`choose_carrier`]
//! is pure, so the booking worker can call it with the carriers that are down right now.

use dispatch_core::readiness::{CarrierChoice, Customs, customs_of};
use dispatch_core::{OrderFacts, Warehouse, in_eu_customs_union};

#[derive(Debug, Clone, PartialEq)]
pub enum Dest {
    Country(String),
    Domestic,
    Eu,
    Export,
    Any,
}

impl Dest {
    pub fn parse(s: &str) -> Option<Dest> {
        match s {
            "*" => Some(Dest::Any),
            "domestic" => Some(Dest::Domestic),
            "eu" | "EU" => Some(Dest::Eu),
            "export" => Some(Dest::Export),
            c if c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()) => Some(Dest::Country(c.to_string())),
            _ => None,
        }
    }

    fn matches(&self, origin: &str, dest: &str) -> bool {
        match self {
            Dest::Any => true,
            Dest::Domestic => origin == dest,
            Dest::Eu => in_eu_customs_union(dest),
            Dest::Export => customs_of(origin, dest) == Customs::Export,
            Dest::Country(c) => c == dest,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Lane {
    pub id: String,
    pub destinations: Vec<Dest>,
    pub warehouses: Vec<String>,
    pub modes: Vec<String>,
    pub max_weight_kg: Option<f64>,
    pub hazmat: bool,
    pub carriers: Vec<String>,
    pub fallbacks: Vec<String>,
    /// Whether the booking worker may book a fallback without a person's approval.
    pub auto_fallback: bool,
}

impl Lane {
    fn why_not(&self, facts: &OrderFacts, wh: &Warehouse) -> Option<String> {
        let dest = facts.ship_to.country.as_str();
        if !self.warehouses.is_empty() && !self.warehouses.contains(&wh.code) {
            return Some(format!("not from {}", wh.code));
        }
        if !self.destinations.is_empty() && !self.destinations.iter().any(|d| d.matches(&wh.country, dest)) {
            return Some(format!("not to {dest}"));
        }
        if !self.modes.is_empty() {
            match &facts.transport_mode {
                Some(m) if self.modes.iter().any(|x| x == m) => {}
                Some(m) => return Some(format!("not by {m}")),
                None => return Some("the order names no transport mode".into()),
            }
        }
        if let Some(max) = self.max_weight_kg {
            let w = facts.total_weight_kg();
            if w > max {
                return Some(format!("{w:.1} kg is over {max} kg"));
            }
        }
        if !self.hazmat && facts.has_hazmat() {
            return Some("no dangerous goods".into());
        }
        None
    }
}

#[derive(Debug, Clone, Default)]
pub struct CarrierMatrix {
    pub known: Vec<String>,
    pub hold_when_none: bool,
    pub honour_preference: bool,
    pub lanes: Vec<Lane>,
}

/// The carrier for an order: the first lane (in file order) that takes it, then the order's
/// own preference if the lane allows it, else the lane's first allowed carrier that is not
/// `unavailable`, else its first available fallback.
pub fn choose_carrier(m: &CarrierMatrix, facts: &OrderFacts, wh: &Warehouse, unavailable: &[&str]) -> CarrierChoice {
    let Some(lane) = m.lanes.iter().find(|l| l.why_not(facts, wh).is_none()) else {
        return CarrierChoice {
            carrier: None,
            lane: None,
            alternatives: vec![],
            reason: if m.lanes.is_empty() {
                "the policy has no carrier lanes".into()
            } else {
                format!(
                    "no lane takes this order ({} to {}, {}, {:.1} kg{})",
                    wh.code,
                    facts.ship_to.country,
                    facts.transport_mode.as_deref().unwrap_or("no mode"),
                    facts.total_weight_kg(),
                    if facts.has_hazmat() { ", dangerous goods" } else { "" }
                )
            },
        };
    };
    let up = |c: &&String| !unavailable.contains(&c.as_str());
    let allowed: Vec<&String> = lane.carriers.iter().filter(up).collect();
    let fallbacks: Vec<&String> = lane.fallbacks.iter().filter(up).collect();
    let down = lane.carriers.len() - allowed.len();
    let (chosen, reason) = match &facts.carrier_preference {
        Some(p) if m.honour_preference && allowed.contains(&p) => {
            (Some(p.clone()), format!("the order's preferred carrier {p} is allowed on lane {}", lane.id))
        }
        pref => {
            let note = match pref {
                Some(p) if m.honour_preference => format!(" (preferred {p} is not allowed or unavailable here)"),
                _ => String::new(),
            };
            if let Some(first) = allowed.first() {
                (Some((*first).clone()), format!("first allowed carrier on lane {}{note}", lane.id))
            } else if let Some(fb) = fallbacks.first() {
                (
                    Some((*fb).clone()),
                    format!("fallback on lane {}: its {down} allowed carrier(s) are unavailable", lane.id),
                )
            } else {
                (None, format!("every carrier of lane {} is unavailable", lane.id))
            }
        }
    };
    let alternatives = allowed
        .iter()
        .chain(fallbacks.iter())
        .filter(|c| Some(c.as_str()) != chosen.as_deref())
        .map(|c| (*c).clone())
        .collect();
    CarrierChoice { carrier: chosen, lane: Some(lane.id.clone()), alternatives, reason }
}

/// What the booking worker may try for an order, from the matrix: the lane that takes it, its
/// allowed carriers in order (the order's own preference first when the lane allows it and
/// the matrix honours preferences), and the lane's fallbacks for when every allowed one is down.
#[derive(Debug, Clone, PartialEq)]
pub struct BookingRoute {
    pub lane: String,
    pub carriers: Vec<String>,
    pub fallbacks: Vec<String>,
    /// Fallbacks may be booked without a person; otherwise a `route_override` is requested.
    pub auto_fallback: bool,
}

/// The booking route of an order: `None` when no lane takes it.
pub fn booking_route(m: &CarrierMatrix, facts: &OrderFacts, wh: &Warehouse) -> Option<BookingRoute> {
    let lane = m.lanes.iter().find(|l| l.why_not(facts, wh).is_none())?;
    let mut carriers = lane.carriers.clone();
    if m.honour_preference
        && let Some(p) = &facts.carrier_preference
        && let Some(i) = carriers.iter().position(|c| c == p)
    {
        let p = carriers.remove(i);
        carriers.insert(0, p);
    }
    let fallbacks = lane.fallbacks.iter().filter(|f| !carriers.contains(f)).cloned().collect();
    Some(BookingRoute { lane: lane.id.clone(), carriers, fallbacks, auto_fallback: lane.auto_fallback })
}
