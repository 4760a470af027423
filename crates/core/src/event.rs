//! Events: the facts dispatchd records about an order. The event log is the truth; every
//! projection, the timeline and the audit trail are read from it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::order::OrderFacts;
use crate::readiness::Evaluation;
use crate::tracking::TrackingUpdate;

/// What happened, with the inputs it was decided on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type")]
pub enum EventData {
    /// The order arrived for the first time.
    #[serde(rename = "order.received")]
    Received { facts: OrderFacts },
    /// The system of record changed the order's facts.
    #[serde(rename = "order.updated")]
    FactsUpdated {
        facts: OrderFacts,
        /// Top-level fields that differ from the previous facts.
        changed: Vec<String>,
    },
    /// Readiness was evaluated: released or on hold, with every check and its inputs.
    #[serde(rename = "order.evaluated")]
    Evaluated(Evaluation),
    #[serde(rename = "order.cancelled")]
    Cancelled {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    #[serde(rename = "shipment.booked")]
    Booked {
        carrier: String,
        tracking_number: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
    },
    /// First departure scan: the shipment left the warehouse.
    #[serde(rename = "shipment.dispatched")]
    Dispatched { departed_at: DateTime<Utc> },
    /// Proof of delivery.
    #[serde(rename = "order.delivered")]
    Delivered { delivered_at: DateTime<Utc> },
    #[serde(rename = "order.exception")]
    ExceptionRaised { reason: String },
    /// A carrier tracking event. Every distinct one is recorded; `applied` says whether it
    /// became the shipment's status (a late or unknown one does not).
    #[serde(rename = "tracking.updated")]
    TrackingUpdated { update: TrackingUpdate, applied: bool },
}

impl EventData {
    /// The stable type name stored with the event and shown in the timeline.
    pub fn kind(&self) -> &'static str {
        match self {
            EventData::Received { .. } => "order.received",
            EventData::FactsUpdated { .. } => "order.updated",
            EventData::Evaluated(_) => "order.evaluated",
            EventData::Cancelled { .. } => "order.cancelled",
            EventData::Booked { .. } => "shipment.booked",
            EventData::Dispatched { .. } => "shipment.dispatched",
            EventData::Delivered { .. } => "order.delivered",
            EventData::ExceptionRaised { .. } => "order.exception",
            EventData::TrackingUpdated { .. } => "tracking.updated",
        }
    }
}

/// One recorded event of an order's stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    pub order_id: String,
    /// Position in the order's stream, from 1, without gaps.
    pub version: u64,
    pub at: DateTime<Utc>,
    /// Who caused it: `token:<name>`, `system`, `demo`, ...
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(flatten)]
    pub data: EventData,
}

/// One line a person reads in the timeline: what happened and why.
pub fn summary(data: &EventData) -> String {
    match data {
        EventData::Received { facts } => format!(
            "Received from {} as {}: {} line(s), {}, promised {}",
            facts.source,
            facts.external_id,
            facts.lines.len(),
            facts.service_level,
            facts.promised_date
        ),
        EventData::FactsUpdated { changed, .. } => format!("Updated by the system of record: {}", changed.join(", ")),
        EventData::Evaluated(e) if e.hold_reasons.is_empty() => {
            format!("Released: all {} readiness checks passed; priority {}", e.checks.len(), e.priority)
        }
        EventData::Evaluated(e) if !e.rules.is_empty() => {
            let fired: Vec<String> = e
                .rules
                .iter()
                .filter_map(|r| r.reason.map(|reason| format!("{reason} ({}: {})", r.rule, r.message)))
                .collect();
            format!("Held: {}", fired.join("; "))
        }
        EventData::Evaluated(e) => {
            let failing: Vec<String> = e
                .checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| format!("{} ({})", c.reason.map_or("?", |r| r.code()), c.detail))
                .collect();
            format!("Held: {}", failing.join("; "))
        }
        EventData::Cancelled { reason } => match reason {
            Some(r) => format!("Cancelled: {r}"),
            None => "Cancelled".to_string(),
        },
        EventData::Booked { carrier, tracking_number, .. } => {
            format!("Booked with {carrier}, tracking {tracking_number}")
        }
        EventData::Dispatched { departed_at } => format!("Departed the warehouse at {}", departed_at.to_rfc3339()),
        EventData::Delivered { delivered_at } => format!("Delivered at {}", delivered_at.to_rfc3339()),
        EventData::ExceptionRaised { reason } => format!("Exception: {reason}"),
        EventData::TrackingUpdated { update, applied } => {
            let effect = if *applied {
                "now the shipment's status"
            } else if update.status == crate::vocab::TrackingStatus::Unknown {
                "unknown code, kept for review; status unchanged"
            } else {
                "older than the current status; recorded, status unchanged"
            };
            format!(
                "Tracking from {}: {} (carrier code `{}`) at {}; {effect}",
                update.carrier,
                update.status,
                update.carrier_status,
                update.event_time.to_rfc3339()
            )
        }
    }
}
