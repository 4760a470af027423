//! Approvals of dispatch exceptions: a request on an order, routed by the policy to steps of
//! roles, decided by people who hold those roles (never by the requester), escalated when a
//! step waits past its SLA and expired when nobody decides. Everything here is a pure
//! function of the request, the caller and the time passed in; the state machine records the
//! results as events on the order.
//!
//! ```text
//! requested ──(auto route)──────────────────────────────▶ approved
//!     │  step 1 ─approve→ step 2 … ─approve (last step)─▶ approved ──▶ order proceeds
//!     ├─ any step ─reject──────────────────────────────▶ rejected ──▶ order stays held
//!     ├─ past expires_at ──────────────────────────────▶ expired
//!     ├─ the hold it was for cleared ─────────────────▶ withdrawn
//!     └─ order cancelled ─────────────────────────────▶ cancelled
//! ```

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[cfg(test)]
use crate::order::Order;
use crate::order::{Line, OrderFacts};
use crate::validate::FieldError;
use crate::vocab::{ApprovalKind, HoldReason, Role, ServiceLevel};

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Rejected,
    Expired,
    /// The hold it was requested for cleared by itself (e.g. the documents arrived).
    Withdrawn,
    /// The order was cancelled.
    Cancelled,
}

impl ApprovalStatus {
    pub fn code(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Rejected => "rejected",
            ApprovalStatus::Expired => "expired",
            ApprovalStatus::Withdrawn => "withdrawn",
            ApprovalStatus::Cancelled => "cancelled",
        }
    }

    pub fn from_code(s: &str) -> Option<Self> {
        [Self::Pending, Self::Approved, Self::Rejected, Self::Expired, Self::Withdrawn, Self::Cancelled]
            .into_iter()
            .find(|x| x.code() == s)
    }
}

impl std::fmt::Display for ApprovalStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// How the roles of one step decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepMode {
    /// One approval by anyone holding one of the roles.
    AnyOf,
    /// One approval per role, each by a different person.
    AllOf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    Reject,
}

/// One step of a route as the policy gives it. Steps run in sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepSpec {
    pub roles: Vec<Role>,
    pub mode: StepMode,
    /// Minutes the step may wait before it escalates; no escalation when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla_minutes: Option<i64>,
    /// Roles that may also decide once the step escalated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalate_to: Vec<Role>,
}

/// The policy's answer for a request: which rule of the decision table matched and what it
/// says. Recorded on the request, so the route is explained by policy hash and rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Routing {
    /// Hash of the policy that routed (`builtin-v1` without a policy).
    pub policy: String,
    /// Id of the decision-table row that matched first.
    pub rule: String,
    /// Approved by the policy itself, without a person.
    pub auto_approve: bool,
    pub steps: Vec<StepSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_after_minutes: Option<i64>,
    /// Hold reasons an approval of this kind lifts for the order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waives: Vec<HoldReason>,
}

/// A line of a partial shipment: how many units of a SKU leave now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitLine {
    pub sku: String,
    pub qty: u32,
}

/// What somebody (or the policy) asks to be approved: the body of
/// `POST /api/v1/orders/{id}/approval-requests`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalDraft {
    /// `partial_shipment`, `expedited_freight`, `credit_hold_release`, `route_override`,
    /// `compliance_release`, or a kind the policy adds.
    #[schema(example = "expedited_freight")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Customer line-down; next-day promise after cut-off")]
    pub reason: Option<String>,
    /// The cost to approve (e.g. the premium freight quote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = 182.5)]
    pub amount: Option<f64>,
    /// ISO 4217, e.g. `EUR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "EUR")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "CC-4100")]
    pub cost_center: Option<String>,
    /// `partial_shipment`: the units that leave now; the rest becomes a backorder remainder.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<SplitLine>,
    /// `route_override`: the carrier to book with instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    /// `expedited_freight`: the faster service to book.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceLevel>,
}

/// One person's decision on a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepDecision {
    pub actor: String,
    /// The role the decision counted for.
    pub role: Role,
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
}

/// A step of a request as it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Step {
    #[serde(flatten)]
    pub spec: StepSpec,
    /// When the step became the one to decide; `None` while an earlier step runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_since: Option<DateTime<Utc>>,
    /// When it escalates if undecided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub decisions: Vec<StepDecision>,
}

impl Step {
    /// Roles that may decide the step now: its own, plus the escalation roles once escalated.
    pub fn eligible_roles(&self) -> Vec<Role> {
        let mut r = self.spec.roles.clone();
        if self.escalated_at.is_some() {
            for x in &self.spec.escalate_to {
                if !r.contains(x) {
                    r.push(*x);
                }
            }
        }
        r
    }

    /// Roles whose decision the step still waits for: any of them (any-of), each of the
    /// missing ones (all-of), plus the escalation roles once escalated.
    pub fn waiting_for(&self) -> Vec<Role> {
        match self.spec.mode {
            StepMode::AnyOf => self.eligible_roles(),
            StepMode::AllOf => {
                let mut r = self.open_roles();
                if self.escalated_at.is_some() {
                    r.extend(self.spec.escalate_to.iter().filter(|x| !r.contains(x)).copied().collect::<Vec<_>>());
                }
                r
            }
        }
    }

    /// Roles of an all-of step still waiting for their approval.
    fn open_roles(&self) -> Vec<Role> {
        match self.spec.mode {
            StepMode::AnyOf => self.eligible_roles(),
            StepMode::AllOf => {
                let done: Vec<Role> =
                    self.decisions.iter().filter(|d| d.verdict == Verdict::Approve).map(|d| d.role).collect();
                self.spec.roles.iter().copied().filter(|r| !done.contains(r)).collect()
            }
        }
    }

    fn complete(&self) -> bool {
        let approvals = self.decisions.iter().filter(|d| d.verdict == Verdict::Approve);
        match self.spec.mode {
            StepMode::AnyOf => approvals.count() > 0,
            // An escalation role's approval stands in for one missing role.
            StepMode::AllOf => {
                let stand_ins = approvals.filter(|d| !self.spec.roles.contains(&d.role)).count();
                self.open_roles().len() <= stand_ins
            }
        }
    }
}

/// A request as kept on the order (the fold of its `approval.*` events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApprovalRequest {
    #[schema(example = "apr_01938f0a6c1e7b2a9d4f5e6a7b8c9d0e_1")]
    pub id: String,
    pub order_id: String,
    pub status: ApprovalStatus,
    #[serde(flatten)]
    pub draft: ApprovalDraft,
    /// Who asked: `token:<name>` or `policy`.
    pub requester: String,
    #[serde(default)]
    pub requester_roles: Vec<Role>,
    pub routing: Routing,
    pub steps: Vec<Step>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<DateTime<Utc>>,
    /// Who or what closed it: a person, `policy:<rule>`, `system`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<String>,
}

impl ApprovalRequest {
    /// The step to decide now, by index.
    pub fn current_step(&self) -> Option<(usize, &Step)> {
        if self.status != ApprovalStatus::Pending {
            return None;
        }
        self.steps.iter().enumerate().find(|(_, s)| !s.complete())
    }

    /// The earliest instant at which the sweep has something to do for this request.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        let step_due = self.current_step().and_then(|(_, s)| if s.escalated_at.is_none() { s.due_at } else { None });
        match (step_due, self.expires_at.filter(|_| self.status == ApprovalStatus::Pending)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether `roles` let a person (who is not the requester) decide the current step.
    pub fn decidable_by(&self, actor: &str, roles: &[Role]) -> bool {
        check_decider(self, actor, roles).is_ok()
    }
}

/// On a backorder remainder: where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SplitLink {
    pub order_id: String,
    pub external_id: String,
    pub approval_id: String,
}

/// A remainder split off an order: its natural key and the lines it carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Remainder {
    pub external_id: String,
    pub approval_id: String,
    pub lines: Vec<Line>,
}

/// What an approval decided for the booking: an expedited service or an override carrier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BookingOverride {
    pub approval_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceLevel>,
}

/// The natural key of an order's `n`-th remainder (1-based).
pub fn remainder_external_id(external_id: &str, n: usize) -> String {
    format!("{external_id}-BO{n}")
}

/// Why an approval action is refused. Each maps to one HTTP status in the server.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApprovalError {
    #[error("no approval request `{0}` on this order")]
    NotFound(String),
    /// 403: the caller may not decide this (role, segregation of duties).
    #[error("{0}")]
    Forbidden(String),
    /// 409: the request or step is no longer open for this action.
    #[error("{0}")]
    Conflict(String),
    /// 422: the request itself is incomplete or wrong, by field.
    #[error("the approval request is invalid")]
    Invalid(Vec<FieldError>),
    /// 422: the policy has no route for it.
    #[error("{0}")]
    NoRoute(String),
}

/// The id of an order's `n`-th request (1-based): derived, so a decision is re-runnable and the
/// order is found from the request id alone.
pub fn request_id(order_id: &str, n: usize) -> String {
    format!("apr_{}_{n}", order_id.strip_prefix("ord_").unwrap_or(order_id))
}

/// The order id a request id belongs to.
pub fn order_of(request_id: &str) -> Option<String> {
    let rest = request_id.strip_prefix("apr_")?;
    let (order, n) = rest.rsplit_once('_')?;
    if order.is_empty() || n.parse::<usize>().is_err() {
        return None;
    }
    Some(format!("ord_{order}"))
}

/// Gives requests decided before the order had an id (a new order held by a mapped reason)
/// their id: called by the writer for each event, in order, with the state before it.
pub fn bind_ids(data: &mut crate::event::EventData, order_id: &str, state: Option<&crate::order::Order>) {
    use crate::event::EventData as E;
    let n = state.map_or(0, |o| o.approvals.len());
    match data {
        E::ApprovalRequested { request } if request.id.is_empty() => {
            request.id = request_id(order_id, n + 1);
            request.order_id = order_id.to_string();
        }
        E::ApprovalDecided { approval_id, .. }
        | E::ApprovalEscalated { approval_id, .. }
        | E::ApprovalClosed { approval_id, .. }
        | E::Split { approval_id, .. }
            if approval_id.is_empty() =>
        {
            *approval_id = request_id(order_id, n);
        }
        _ => {}
    }
    if let E::Split { remainder, .. } = data
        && remainder.approval_id.is_empty()
    {
        remainder.approval_id = request_id(order_id, n);
    }
}

/// What a kind of approval does when granted, besides lifting the hold reasons it waives.
pub fn builtin_waives(kind: &str) -> Vec<HoldReason> {
    match ApprovalKind::from_code(kind) {
        Some(ApprovalKind::ExpeditedFreight) => vec![HoldReason::CutoffMissed],
        Some(ApprovalKind::CreditHoldRelease) => vec![HoldReason::CreditHold],
        Some(ApprovalKind::RouteOverride) => vec![HoldReason::CarrierUnavailable],
        Some(ApprovalKind::ComplianceRelease) => vec![HoldReason::DocsMissing],
        // A split ships what is allocated; the remainder waits as its own order.
        Some(ApprovalKind::PartialShipment) | None => vec![],
    }
}

/// Checks the kind's own facts against the order (pure; the policy checks its own
/// requirements such as a mandatory reason or cost center).
pub fn validate_draft(d: &ApprovalDraft, facts: &OrderFacts) -> Vec<FieldError> {
    let mut e = Vec::new();
    if d.kind.trim().is_empty() {
        e.push(FieldError::new("kind", "is required, e.g. `expedited_freight`"));
    }
    if let Some(r) = &d.reason
        && r.len() > 2000
    {
        e.push(FieldError::new("reason", "must be at most 2,000 characters"));
    }
    if let Some(a) = d.amount
        && (!a.is_finite() || a < 0.0)
    {
        e.push(FieldError::new("amount", "must be a non-negative number"));
    }
    if d.amount.is_some()
        && d.currency.as_deref().is_none_or(|c| c.len() != 3 || !c.chars().all(|x| x.is_ascii_uppercase()))
    {
        e.push(FieldError::new("currency", "is required with an amount, as an ISO 4217 code such as EUR"));
    }
    match ApprovalKind::from_code(&d.kind) {
        Some(ApprovalKind::PartialShipment) => {
            if let Err(mut x) = split(facts, &d.lines) {
                e.append(&mut x);
            }
        }
        Some(ApprovalKind::RouteOverride) if d.carrier.as_deref().is_none_or(|c| c.trim().is_empty()) => {
            e.push(FieldError::new("carrier", "is required for a route override: the carrier to book with instead"));
        }
        Some(ApprovalKind::ExpeditedFreight) => match d.service {
            None => e.push(FieldError::new(
                "service",
                "is required for expedited freight: the faster service to book, e.g. `same_day` or `express`",
            )),
            Some(s) if s.transit_days() >= facts.service_level.transit_days() && s != ServiceLevel::SameDay => e.push(
                FieldError::new("service", format!("`{s}` is not faster than the order's `{}`", facts.service_level)),
            ),
            Some(_) => {}
        },
        _ => {}
    }
    if !matches!(ApprovalKind::from_code(&d.kind), Some(ApprovalKind::PartialShipment)) && !d.lines.is_empty() {
        e.push(FieldError::new("lines", "only a partial_shipment takes lines"));
    }
    e
}

/// Splits an order's lines into what leaves now and the remainder. Only allocated units can
/// leave, and something must remain (otherwise it is not a partial shipment).
pub fn split(facts: &OrderFacts, ship: &[SplitLine]) -> Result<(Vec<Line>, Vec<Line>), Vec<FieldError>> {
    let mut errors = Vec::new();
    if ship.is_empty() {
        errors.push(FieldError::new("lines", "name the units that leave now, e.g. [{\"sku\":\"P-1\",\"qty\":2}]"));
        return Err(errors);
    }
    let mut shipped = Vec::new();
    let mut remainder = Vec::new();
    for (i, s) in ship.iter().enumerate() {
        if ship[..i].iter().any(|o| o.sku == s.sku) {
            errors.push(FieldError::new(format!("lines[{i}].sku"), format!("`{}` is listed twice", s.sku)));
        }
        match facts.lines.iter().find(|l| l.sku == s.sku) {
            None => errors
                .push(FieldError::new(format!("lines[{i}].sku"), format!("`{}` is not a line of this order", s.sku))),
            Some(l) if s.qty == 0 || s.qty > l.qty_allocated.min(l.qty) => errors.push(FieldError::new(
                format!("lines[{i}].qty"),
                format!("must be 1 to {} (the allocated units of `{}`)", l.qty_allocated.min(l.qty), s.sku),
            )),
            Some(_) => {}
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    for l in &facts.lines {
        let now = ship.iter().find(|s| s.sku == l.sku).map_or(0, |s| s.qty);
        if now > 0 {
            shipped.push(Line { qty: now, qty_allocated: now, ..l.clone() });
        }
        if l.qty > now {
            remainder.push(Line { qty: l.qty - now, qty_allocated: l.qty_allocated.saturating_sub(now), ..l.clone() });
        }
    }
    if remainder.is_empty() {
        return Err(vec![FieldError::new(
            "lines",
            "these lines ship the whole order; nothing remains, so no partial-shipment approval is needed",
        )]);
    }
    Ok((shipped, remainder))
}

/// A new request from a draft and the policy's routing. An auto-approved route is still
/// recorded as a request, closed by the policy in the next event.
pub fn open(
    id: String,
    order_id: &str,
    draft: ApprovalDraft,
    requester: String,
    requester_roles: Vec<Role>,
    routing: Routing,
    now: DateTime<Utc>,
) -> ApprovalRequest {
    let steps = routing
        .steps
        .iter()
        .enumerate()
        .map(|(i, spec)| Step {
            spec: spec.clone(),
            active_since: (i == 0).then_some(now),
            due_at: if i == 0 { spec.sla_minutes.map(|m| now + Duration::minutes(m)) } else { None },
            escalated_at: None,
            decisions: vec![],
        })
        .collect();
    ApprovalRequest {
        id,
        order_id: order_id.to_string(),
        status: ApprovalStatus::Pending,
        draft,
        requester,
        requester_roles,
        expires_at: routing.expires_after_minutes.map(|m| now + Duration::minutes(m)),
        routing,
        steps,
        created_at: now,
        closed_at: None,
        closed_by: None,
    }
}

/// The role a person's decision counts for on the current step, or why they may not decide.
pub fn check_decider(req: &ApprovalRequest, actor: &str, roles: &[Role]) -> Result<(usize, Role), ApprovalError> {
    if req.status != ApprovalStatus::Pending {
        return Err(ApprovalError::Conflict(format!(
            "approval request {} is already {}; nothing is left to decide",
            req.id, req.status
        )));
    }
    if actor == req.requester {
        return Err(ApprovalError::Forbidden(format!(
            "you requested {} yourself; segregation of duties needs another person to decide it",
            req.id
        )));
    }
    let Some((index, step)) = req.current_step() else {
        return Err(ApprovalError::Conflict(format!("approval request {} has no open step", req.id)));
    };
    if step.decisions.iter().any(|d| d.actor == actor) {
        return Err(ApprovalError::Conflict(format!(
            "you already decided step {} of {}; one decision per person per step",
            index + 1,
            req.id
        )));
    }
    let eligible = step.eligible_roles();
    let open = step.open_roles();
    // All-of: the first still-missing role the caller holds; an escalation role stands in for
    // a missing one once the step escalated.
    let role = open.iter().find(|r| roles.contains(r)).copied().or_else(|| {
        if step.spec.mode == StepMode::AllOf && step.escalated_at.is_some() {
            step.spec.escalate_to.iter().find(|r| roles.contains(r)).copied()
        } else {
            None
        }
    });
    match role {
        Some(r) => Ok((index, r)),
        None => {
            let need: Vec<&str> =
                if step.spec.mode == StepMode::AllOf { &open } else { &eligible }.iter().map(|r| r.code()).collect();
            let have: Vec<&str> = roles.iter().map(|r| r.code()).collect();
            Err(ApprovalError::Forbidden(format!(
                "step {} of {} needs a decision by {}; your roles are {}. Ask someone with that role, or wait for the escalation",
                index + 1,
                req.id,
                need.join(" or "),
                if have.is_empty() { "none".to_string() } else { have.join(", ") }
            )))
        }
    }
}

/// What a decision does to the request.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionEffect {
    pub step: usize,
    pub role: Role,
    /// The request closes with this status (approved after the last step, or rejected).
    pub closes: Option<ApprovalStatus>,
}

/// Decides whether `actor` may record `verdict` now and what it does. A rejection needs a
/// comment, so the requester learns why.
pub fn decide(
    req: &ApprovalRequest,
    actor: &str,
    roles: &[Role],
    verdict: Verdict,
    comment: Option<&str>,
) -> Result<DecisionEffect, ApprovalError> {
    if let Some(c) = comment
        && c.len() > 2000
    {
        return Err(ApprovalError::Invalid(vec![FieldError::new("comment", "must be at most 2,000 characters")]));
    }
    if verdict == Verdict::Reject && comment.is_none_or(|c| c.trim().is_empty()) {
        return Err(ApprovalError::Invalid(vec![FieldError::new(
            "comment",
            "is required to reject: say why, so the requester knows what to change",
        )]));
    }
    let (step, role) = check_decider(req, actor, roles)?;
    let closes = match verdict {
        Verdict::Reject => Some(ApprovalStatus::Rejected),
        Verdict::Approve => {
            let mut after = req.steps[step].clone();
            after.decisions.push(StepDecision {
                actor: actor.into(),
                role,
                verdict,
                comment: None,
                at: req.created_at,
            });
            let last = step + 1 == req.steps.len();
            (after.complete() && last).then_some(ApprovalStatus::Approved)
        }
    };
    Ok(DecisionEffect { step, role, closes })
}

/// Folds a recorded decision into the request (the next step starts when this one completes).
pub fn record_decision(req: &mut ApprovalRequest, step: usize, d: StepDecision) {
    let at = d.at;
    if let Some(s) = req.steps.get_mut(step) {
        s.decisions.push(d);
        if s.complete()
            && let Some(next) = req.steps.get_mut(step + 1)
        {
            next.active_since = Some(at);
            next.due_at = next.spec.sla_minutes.map(|m| at + Duration::minutes(m));
        }
    }
}

/// What the sweep must do for a request at `now`.
#[derive(Debug, Clone, PartialEq)]
pub enum Due {
    Expire,
    Escalate { step: usize, to: Vec<Role> },
}

/// Expiry first: an expired request is not escalated any more.
pub fn due(req: &ApprovalRequest, now: DateTime<Utc>) -> Option<Due> {
    if req.status != ApprovalStatus::Pending {
        return None;
    }
    if req.expires_at.is_some_and(|e| e <= now) {
        return Some(Due::Expire);
    }
    let (i, s) = req.current_step()?;
    if s.escalated_at.is_none() && s.due_at.is_some_and(|d| d <= now) && !s.spec.escalate_to.is_empty() {
        return Some(Due::Escalate { step: i, to: s.spec.escalate_to.clone() });
    }
    None
}

/// Hold reasons still blocking the order after the waivers of its approved requests.
pub fn unwaived(reasons: &[HoldReason], approvals: &[ApprovalRequest]) -> Vec<HoldReason> {
    reasons
        .iter()
        .copied()
        .filter(|r| !approvals.iter().any(|a| a.status == ApprovalStatus::Approved && a.routing.waives.contains(r)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        crate::readiness::tests::now()
    }

    fn order() -> Order {
        let facts = crate::readiness::tests::facts();
        Order {
            id: "ord_abc".into(),
            version: 2,
            state: crate::OrderState::OnHold,
            hold_reasons: vec![HoldReason::CreditHold],
            priority: 0,
            facts,
            checks: vec![],
            latest_departure: None,
            status_note: None,
            shipment: None,
            created_at: t0(),
            updated_at: t0(),
            state_since: t0(),
            approvals: vec![],
            waived: vec![],
            split_from: None,
            remainders: vec![],
            booking_override: None,
            overrides: vec![],
            late_departure_risk: None,
            first_released_at: None,
            released_on_time: None,
            touched: false,
        }
    }

    fn draft(kind: &str) -> ApprovalDraft {
        ApprovalDraft {
            kind: kind.into(),
            reason: Some("r".into()),
            amount: None,
            currency: None,
            cost_center: None,
            lines: vec![],
            carrier: None,
            service: None,
        }
    }

    fn routing(steps: Vec<StepSpec>) -> Routing {
        Routing {
            policy: "p".into(),
            rule: "r".into(),
            auto_approve: false,
            steps,
            expires_after_minutes: Some(48 * 60),
            waives: vec![HoldReason::CreditHold],
        }
    }

    fn step(roles: &[Role], mode: StepMode) -> StepSpec {
        StepSpec { roles: roles.to_vec(), mode, sla_minutes: Some(240), escalate_to: vec![Role::OpsManager] }
    }

    fn req(steps: Vec<StepSpec>) -> ApprovalRequest {
        open(
            request_id("ord_abc", 1),
            &order().id,
            draft("credit_hold_release"),
            "token:ann".into(),
            vec![Role::Dispatcher],
            routing(steps),
            t0(),
        )
    }

    fn approve(r: &mut ApprovalRequest, actor: &str, roles: &[Role]) -> Result<DecisionEffect, ApprovalError> {
        let e = decide(r, actor, roles, Verdict::Approve, None)?;
        record_decision(
            r,
            e.step,
            StepDecision { actor: actor.into(), role: e.role, verdict: Verdict::Approve, comment: None, at: t0() },
        );
        if let Some(s) = e.closes {
            r.status = s;
        }
        Ok(e)
    }

    #[test]
    fn ids_lead_back_to_the_order() {
        let id = request_id("ord_0193abc", 3);
        assert_eq!(id, "apr_0193abc_3");
        assert_eq!(order_of(&id).as_deref(), Some("ord_0193abc"));
        assert_eq!(order_of("apr_x"), None);
        assert_eq!(order_of("nope"), None);
    }

    #[test]
    fn requester_never_decides_and_roles_are_checked() {
        let r = req(vec![step(&[Role::Finance], StepMode::AnyOf)]);
        let own = decide(&r, "token:ann", &[Role::Finance], Verdict::Approve, None).unwrap_err();
        assert!(matches!(own, ApprovalError::Forbidden(m) if m.contains("segregation")));
        let wrong = decide(&r, "token:bob", &[Role::Supervisor, Role::Admin], Verdict::Approve, None).unwrap_err();
        assert!(
            matches!(wrong, ApprovalError::Forbidden(m) if m.contains("finance") && m.contains("supervisor, admin"))
        );
        let ok = decide(&r, "token:fin", &[Role::Finance], Verdict::Approve, None).unwrap();
        assert_eq!(ok.closes, Some(ApprovalStatus::Approved));
        assert_eq!(ok.role, Role::Finance);
    }

    #[test]
    fn reject_needs_a_comment_and_ends_the_request() {
        let r = req(vec![step(&[Role::Finance], StepMode::AnyOf), step(&[Role::OpsManager], StepMode::AnyOf)]);
        assert!(matches!(
            decide(&r, "token:f", &[Role::Finance], Verdict::Reject, Some(" ")),
            Err(ApprovalError::Invalid(_))
        ));
        let e = decide(&r, "token:f", &[Role::Finance], Verdict::Reject, Some("over limit")).unwrap();
        assert_eq!(e.closes, Some(ApprovalStatus::Rejected));
    }

    #[test]
    fn sequential_and_all_of_steps() {
        let mut r = req(vec![
            step(&[Role::WarehouseLead, Role::AccountOwner], StepMode::AllOf),
            step(&[Role::Finance], StepMode::AnyOf),
        ]);
        // One person holding both roles counts once.
        assert_eq!(approve(&mut r, "token:w", &[Role::WarehouseLead, Role::AccountOwner]).unwrap().closes, None);
        assert!(matches!(approve(&mut r, "token:w", &[Role::AccountOwner]), Err(ApprovalError::Conflict(_))));
        // Finance cannot jump ahead of step 1.
        assert!(matches!(approve(&mut r, "token:f", &[Role::Finance]), Err(ApprovalError::Forbidden(_))));
        assert_eq!(approve(&mut r, "token:a", &[Role::AccountOwner]).unwrap().closes, None);
        assert_eq!(r.current_step().unwrap().0, 1);
        assert_eq!(r.steps[1].due_at, Some(t0() + Duration::minutes(240)));
        assert_eq!(approve(&mut r, "token:f", &[Role::Finance]).unwrap().closes, Some(ApprovalStatus::Approved));
        assert!(matches!(approve(&mut r, "token:g", &[Role::Finance]), Err(ApprovalError::Conflict(_))));
    }

    #[test]
    fn escalation_then_expiry_follow_the_clock() {
        let mut r = req(vec![step(&[Role::Supervisor], StepMode::AnyOf)]);
        assert_eq!(due(&r, t0() + Duration::minutes(239)), None);
        assert_eq!(r.next_due(), Some(t0() + Duration::minutes(240)));
        let d = due(&r, t0() + Duration::minutes(240)).unwrap();
        assert_eq!(d, Due::Escalate { step: 0, to: vec![Role::OpsManager] });
        assert!(!r.decidable_by("token:o", &[Role::OpsManager]));
        r.steps[0].escalated_at = Some(t0() + Duration::minutes(240));
        assert!(r.decidable_by("token:o", &[Role::OpsManager]));
        assert_eq!(due(&r, t0() + Duration::hours(47)), None, "escalates once");
        assert_eq!(due(&r, t0() + Duration::hours(48)), Some(Due::Expire));
    }

    #[test]
    fn partial_shipment_split_keeps_every_unit() {
        let mut f = crate::readiness::tests::facts();
        f.lines[0].qty = 4;
        f.lines[0].qty_allocated = 3;
        let (now, rest) = split(&f, &[SplitLine { sku: f.lines[0].sku.clone(), qty: 3 }]).unwrap();
        assert_eq!((now[0].qty, now[0].qty_allocated), (3, 3));
        assert_eq!((rest[0].qty, rest[0].qty_allocated), (1, 0));
        let too_many = split(&f, &[SplitLine { sku: f.lines[0].sku.clone(), qty: 4 }]).unwrap_err();
        assert_eq!(too_many[0].field, "lines[0].qty");
        assert_eq!(split(&f, &[SplitLine { sku: "NOPE".into(), qty: 1 }]).unwrap_err()[0].field, "lines[0].sku");
        f.lines[0].qty_allocated = 4;
        assert_eq!(split(&f, &[SplitLine { sku: f.lines[0].sku.clone(), qty: 4 }]).unwrap_err()[0].field, "lines");
    }

    #[test]
    fn waivers_lift_only_approved_reasons() {
        let mut r = req(vec![step(&[Role::Finance], StepMode::AnyOf)]);
        let reasons = [HoldReason::CreditHold, HoldReason::DocsMissing];
        assert_eq!(unwaived(&reasons, std::slice::from_ref(&r)), reasons.to_vec());
        r.status = ApprovalStatus::Approved;
        assert_eq!(unwaived(&reasons, &[r]), vec![HoldReason::DocsMissing]);
    }

    #[test]
    fn kind_facts_are_checked() {
        let f = crate::readiness::tests::facts();
        let mut d = draft("route_override");
        assert_eq!(validate_draft(&d, &f)[0].field, "carrier");
        d = draft("expedited_freight");
        assert_eq!(validate_draft(&d, &f)[0].field, "service");
        d.service = Some(ServiceLevel::SameDay);
        d.amount = Some(12.0);
        assert_eq!(validate_draft(&d, &f)[0].field, "currency");
        d.currency = Some("EUR".into());
        assert!(validate_draft(&d, &f).is_empty());
    }
}
