//! Events: the facts dispatchd records about an order. The event log is the truth; every
//! projection, the timeline and the audit trail are read from it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::approval::{ApprovalRequest, ApprovalStatus, Remainder, SplitLink, Verdict};
use crate::order::{Line, OrderFacts};
use crate::readiness::Evaluation;
use crate::tracking::TrackingUpdate;
use crate::vocab::{HoldReason, Role};

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
        /// Set when the booking went to a fallback because the preferred carrier was down.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fallback: Option<CarrierFallback>,
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
    /// An exception was put up for approval and routed by the policy's decision table.
    #[serde(rename = "approval.requested")]
    ApprovalRequested { request: Box<ApprovalRequest> },
    /// A person approved or rejected a step (the event's actor), in the role named.
    #[serde(rename = "approval.decided")]
    ApprovalDecided {
        approval_id: String,
        /// Step index, from 0.
        step: usize,
        role: Role,
        verdict: Verdict,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
        /// Hash of the policy in force when the decision was recorded.
        policy: String,
    },
    /// A step waited past its SLA: the escalation roles may decide it now.
    #[serde(rename = "approval.escalated")]
    ApprovalEscalated { approval_id: String, step: usize, to: Vec<Role>, policy: String },
    /// The request ended: approved, rejected, expired, withdrawn or cancelled.
    #[serde(rename = "approval.closed")]
    ApprovalClosed {
        approval_id: String,
        status: ApprovalStatus,
        /// A person (`token:…`), `policy:<rule>` for an auto-approval, or `system`.
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<Role>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        policy: String,
    },
    /// An approved partial shipment: the order keeps what leaves now, the rest becomes the
    /// remainder order named here.
    #[serde(rename = "order.split")]
    Split { approval_id: String, shipped: Vec<Line>, remainder: Remainder },
    /// This order is the backorder remainder of another.
    #[serde(rename = "order.split_from")]
    SplitFrom { link: SplitLink },
    /// A person (the event's actor) overrode hold reasons the policy lets be overridden.
    #[serde(rename = "order.overridden")]
    HoldsOverridden {
        reasons: Vec<HoldReason>,
        /// Why, in the person's words.
        note: String,
        /// The role the override was made in.
        role: Role,
        /// Hash of the policy in force (it said the reasons were overridable).
        policy: String,
    },
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
            EventData::ApprovalRequested { .. } => "approval.requested",
            EventData::ApprovalDecided { .. } => "approval.decided",
            EventData::ApprovalEscalated { .. } => "approval.escalated",
            EventData::ApprovalClosed { .. } => "approval.closed",
            EventData::Split { .. } => "order.split",
            EventData::SplitFrom { .. } => "order.split_from",
            EventData::HoldsOverridden { .. } => "order.overridden",
        }
    }
}

/// Why a booking went to another carrier than the one its plan preferred.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CarrierFallback {
    /// The carrier the plan preferred.
    pub preferred: String,
    /// The carriers of the plan that were down, best first.
    pub down: Vec<String>,
    /// Why they counted as down, e.g. `circuit open`.
    pub why: String,
    /// Lane of the policy's carrier matrix the fallback came from; absent for the
    /// configuration's `fallback` list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lane: Option<String>,
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
    let mut s = summary_of(data);
    // A decision the risk model influenced says so, with its strongest factor.
    if let EventData::Evaluated(e) = data
        && let Some(r) = &e.risk
    {
        s.push_str("; ");
        s.push_str(&r.summary());
    }
    s
}

fn summary_of(data: &EventData) -> String {
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
        EventData::Booked { carrier, tracking_number, fallback: None, .. } => {
            format!("Booked with {carrier}, tracking {tracking_number}")
        }
        EventData::Booked { carrier, tracking_number, fallback: Some(f), .. } => {
            let lane = f.lane.as_ref().map(|l| format!(" of lane {l}")).unwrap_or_default();
            format!(
                "Booked with fallback carrier {carrier}{lane}, tracking {tracking_number}: {} down ({})",
                f.down.join(", "),
                f.why
            )
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
        EventData::ApprovalRequested { request: r } => {
            let route = if r.routing.auto_approve {
                "auto-approved by policy".to_string()
            } else {
                let steps: Vec<String> = r
                    .routing
                    .steps
                    .iter()
                    .map(|s| {
                        let roles: Vec<&str> = s.roles.iter().map(|x| x.code()).collect();
                        let sep = if s.mode == crate::approval::StepMode::AllOf { " and " } else { " or " };
                        roles.join(sep)
                    })
                    .collect();
                format!("routed to {}", steps.join(", then "))
            };
            format!(
                "Approval {} requested ({}) by {}{}: {route} (rule {})",
                r.id,
                r.draft.kind,
                r.requester,
                r.draft.reason.as_deref().map(|x| format!(", reason: {x}")).unwrap_or_default(),
                r.routing.rule
            )
        }
        EventData::ApprovalDecided { approval_id, step, role, verdict, comment, .. } => {
            let v = if *verdict == Verdict::Approve { "approved" } else { "rejected" };
            format!(
                "Approval {approval_id} step {}: {v} as {role}{}",
                step + 1,
                comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default()
            )
        }
        EventData::ApprovalEscalated { approval_id, step, to, .. } => {
            let to: Vec<&str> = to.iter().map(|r| r.code()).collect();
            format!("Approval {approval_id} step {} waited past its SLA: escalated to {}", step + 1, to.join(", "))
        }
        EventData::ApprovalClosed { approval_id, status, by, note, .. } => format!(
            "Approval {approval_id} {status} by {by}{}",
            note.as_deref().map(|n| format!(": {n}")).unwrap_or_default()
        ),
        EventData::Split { shipped, remainder, .. } => {
            let units = |l: &[Line]| l.iter().map(|x| format!("{} {}", x.qty, x.sku)).collect::<Vec<_>>().join(", ");
            format!(
                "Split: ships {} now; remainder {} ({}) follows as its own order",
                units(shipped),
                remainder.external_id,
                units(&remainder.lines)
            )
        }
        EventData::SplitFrom { link } => {
            format!("Backorder remainder of {} ({}), approval {}", link.external_id, link.order_id, link.approval_id)
        }
        EventData::HoldsOverridden { reasons, note, role, .. } => {
            let codes: Vec<&str> = reasons.iter().map(|r| r.code()).collect();
            format!("Hold overridden as {role}: {} lifted; why: {note}", codes.join(", "))
        }
    }
}
