//! The order state machine as two pure functions: [`decide`] turns a command and the current
//! state into events (or a typed refusal), [`apply`] folds one event into the state.
//!
//! ```text
//! received ──evaluate──▶ released ──book──▶ booked ──depart──▶ dispatched ──deliver──▶ delivered
//!     │                   ▲    │               │                    │
//!     └──evaluate──▶ on_hold   └──exception────┴────────────────────┴──▶ exception
//!      (cancel from any open state, booked or exception)  ──▶ cancelled
//! ```

use chrono::{DateTime, Utc};

use crate::approval::{
    self, ApprovalDraft, ApprovalError, ApprovalRequest, ApprovalStatus, Routing, SplitLink, Verdict,
};
use crate::event::{Event, EventData};
use crate::order::{Order, OrderFacts, Shipment};
use crate::overrides::{self, HoldOverride, OverrideError};
use crate::readiness;
use crate::tracking::{self, TrackingUpdate};
use crate::validate::{FieldError, validate};
use crate::vocab::{ApprovalKind, HoldReason, OrderState, Role};
use crate::warehouse::{Warehouse, Warehouses};

/// Decides readiness and priority of an order: the built-in rules, or a compiled policy
/// (the policy crate implements this, so the core does not depend on it).
pub trait Evaluator: Send + Sync {
    fn evaluate(&self, facts: &OrderFacts, warehouse: &Warehouse, now: DateTime<Utc>) -> readiness::Evaluation;

    /// The version recorded on approval events (`builtin-v1` or the policy hash).
    fn policy_id(&self) -> String {
        readiness::BUILTIN_POLICY.to_string()
    }

    /// The approval kind a hold reason is put up for, when the rules map it to one.
    fn approval_for_hold(&self, _reason: HoldReason) -> Option<String> {
        None
    }

    /// Whether a person with `override_holds` may override this hold reason (the policy's
    /// `[exceptions]` catalogue; without a policy, [`overrides::default_overridable`]).
    fn overridable(&self, reason: HoldReason) -> bool {
        overrides::default_overridable(reason)
    }

    /// Routes an approval request (the policy's decision table). Without a policy: the five
    /// built-in kinds go to a supervisor, one step.
    fn route_approval(
        &self,
        draft: &ApprovalDraft,
        _requester_roles: &[Role],
        _facts: &OrderFacts,
        _warehouse: &Warehouse,
        _now: DateTime<Utc>,
    ) -> Result<Routing, ApprovalError> {
        if ApprovalKind::from_code(&draft.kind).is_none() {
            return Err(ApprovalError::Invalid(vec![FieldError::new(
                "kind",
                format!("unknown approval kind `{}`", draft.kind),
            )]));
        }
        Ok(Routing {
            policy: self.policy_id(),
            rule: "builtin".into(),
            auto_approve: false,
            steps: vec![approval::StepSpec {
                roles: vec![Role::Supervisor],
                mode: approval::StepMode::AnyOf,
                sla_minutes: None,
                escalate_to: vec![],
            }],
            expires_after_minutes: None,
            waives: approval::builtin_waives(&draft.kind),
        })
    }
}

/// The rules of [`readiness::evaluate`], recorded as [`readiness::BUILTIN_POLICY`].
pub struct BuiltinRules;

impl Evaluator for BuiltinRules {
    fn evaluate(&self, facts: &OrderFacts, warehouse: &Warehouse, now: DateTime<Utc>) -> readiness::Evaluation {
        readiness::evaluate(facts, warehouse, now)
    }
}

static BUILTIN: BuiltinRules = BuiltinRules;

/// What a decision may depend on besides the order: the injected clock, configuration and
/// the rules in force.
pub struct Ctx<'a> {
    pub now: DateTime<Utc>,
    pub warehouses: &'a Warehouses,
    pub rules: &'a dyn Evaluator,
}

impl<'a> Ctx<'a> {
    /// A context with the built-in rules.
    pub fn new(now: DateTime<Utc>, warehouses: &'a Warehouses) -> Self {
        Ctx { now, warehouses, rules: &BUILTIN }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Create or update the order's facts from the system of record.
    Upsert {
        facts: Box<OrderFacts>,
        expected_version: Option<u64>,
    },
    Cancel {
        reason: Option<String>,
        expected_version: Option<u64>,
    },
    /// Run the readiness checks again (time passed or a blocking fact may have changed).
    Reevaluate,
    RecordBooking {
        carrier: String,
        tracking_number: String,
        service: Option<String>,
    },
    /// A booking with a fallback carrier, with why the preferred one was not used.
    RecordFallbackBooking {
        carrier: String,
        tracking_number: String,
        service: Option<String>,
        fallback: Box<crate::event::CarrierFallback>,
    },
    RecordDeparture {
        at: DateTime<Utc>,
    },
    RecordDelivery {
        at: DateTime<Utc>,
    },
    RaiseException {
        reason: String,
    },
    /// A verified, normalized tracking update from the shipment's carrier.
    RecordTracking {
        update: TrackingUpdate,
    },
    /// Put an exception up for approval; the rules route it.
    RequestApproval {
        draft: Box<ApprovalDraft>,
        requester: String,
        roles: Vec<Role>,
    },
    /// A person's decision on the current step of a request. `roles` are the ones the person
    /// holds now.
    DecideApproval {
        approval_id: String,
        actor: String,
        roles: Vec<Role>,
        verdict: Verdict,
        comment: Option<String>,
        expected_version: Option<u64>,
    },
    /// Escalate steps past their SLA and expire requests past their deadline (at `Ctx.now`).
    SweepApprovals,
    /// Create the backorder remainder of an approved partial shipment (no-op if it exists).
    CreateRemainder {
        facts: Box<OrderFacts>,
        link: SplitLink,
    },
    /// A person lifts overridable hold reasons of a held order. `roles` are the ones the
    /// person holds now.
    OverrideHolds {
        reasons: Vec<HoldReason>,
        note: String,
        roles: Vec<Role>,
        expected_version: Option<u64>,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DomainError {
    #[error("the order is invalid")]
    Invalid(Vec<FieldError>),
    #[error("no such order")]
    NotFound,
    #[error("version conflict: you expected version {expected}, the order is at version {current}")]
    VersionConflict { expected: u64, current: u64 },
    #[error("cannot {action} an order that is {from}")]
    IllegalTransition { from: OrderState, action: &'static str },
    #[error("event stream is inconsistent: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Approval(#[from] ApprovalError),
    #[error(transparent)]
    Override(#[from] OverrideError),
}

/// Decides what happens. Returns no events when the command changes nothing (an upsert with
/// identical facts, cancelling a cancelled order): that is how retries stay harmless.
pub fn decide(state: Option<&Order>, cmd: Command, ctx: &Ctx<'_>) -> Result<Vec<EventData>, DomainError> {
    let expected = match &cmd {
        Command::Upsert { expected_version, .. }
        | Command::Cancel { expected_version, .. }
        | Command::DecideApproval { expected_version, .. }
        | Command::OverrideHolds { expected_version, .. } => *expected_version,
        _ => None,
    };
    if let Some(expected) = expected {
        let current = state.map_or(0, |o| o.version);
        if expected != current {
            return Err(DomainError::VersionConflict { expected, current });
        }
    }
    match (state, cmd) {
        (None, Command::Upsert { facts, .. }) => {
            let evaluation = evaluate(&facts, ctx)?;
            let follow = after_evaluation(None, &facts, &evaluation, ctx);
            let mut events = vec![EventData::Received { facts: *facts }, EventData::Evaluated(evaluation)];
            events.extend(follow);
            Ok(events)
        }
        (None, Command::CreateRemainder { facts, link }) => {
            let evaluation = evaluate(&facts, ctx)?;
            let follow = after_evaluation(None, &facts, &evaluation, ctx);
            let mut events = vec![
                EventData::Received { facts: *facts },
                EventData::SplitFrom { link },
                EventData::Evaluated(evaluation),
            ];
            events.extend(follow);
            Ok(events)
        }
        (Some(_), Command::CreateRemainder { .. }) => Ok(vec![]),
        (None, _) => Err(DomainError::NotFound),
        (Some(o), Command::Upsert { facts, .. }) => {
            if o.facts == *facts {
                return Ok(vec![]);
            }
            if o.facts.source != facts.source || o.facts.external_id != facts.external_id {
                return Err(DomainError::Invalid(vec![FieldError::new(
                    "external_id",
                    "source and external_id identify the order and cannot change",
                )]));
            }
            if !o.state.is_open() {
                return Err(DomainError::IllegalTransition { from: o.state, action: "update" });
            }
            let evaluation = evaluate(&facts, ctx)?;
            let changed = changed_fields(&o.facts, &facts);
            let follow = after_evaluation(Some(o), &facts, &evaluation, ctx);
            let mut events = vec![EventData::FactsUpdated { facts: *facts, changed }, EventData::Evaluated(evaluation)];
            events.extend(follow);
            Ok(events)
        }
        (Some(o), Command::Cancel { reason, .. }) => match o.state {
            OrderState::Cancelled => Ok(vec![]),
            OrderState::Dispatched | OrderState::Delivered => {
                Err(DomainError::IllegalTransition { from: o.state, action: "cancel" })
            }
            _ => {
                // Cancelling the order cancels its open requests: nobody should decide them.
                let mut events: Vec<EventData> = o
                    .approvals
                    .iter()
                    .filter(|a| a.status == ApprovalStatus::Pending)
                    .map(|a| EventData::ApprovalClosed {
                        approval_id: a.id.clone(),
                        status: ApprovalStatus::Cancelled,
                        by: "system".into(),
                        role: None,
                        note: Some("the order was cancelled".into()),
                        policy: ctx.rules.policy_id(),
                    })
                    .collect();
                events.push(EventData::Cancelled { reason });
                Ok(events)
            }
        },
        (Some(o), Command::Reevaluate) => match o.state {
            OrderState::Received | OrderState::OnHold | OrderState::Released | OrderState::AwaitingApproval => {
                let e = evaluate(&o.facts, ctx)?;
                let follow = after_evaluation(Some(o), &o.facts, &e, ctx);
                // A changed priority is recorded too: the dispatch sequence depends on it.
                let unlifted = overrides::not_overridden(&e.hold_reasons, &o.overrides);
                let outcome = settled_state(OrderState::Received, &unlifted, &o.approvals);
                if follow.is_empty()
                    && outcome == o.state
                    && e.hold_reasons == o.hold_reasons
                    && e.priority == o.priority
                {
                    Ok(vec![])
                } else {
                    let mut events = vec![EventData::Evaluated(e)];
                    events.extend(follow);
                    Ok(events)
                }
            }
            from => Err(DomainError::IllegalTransition { from, action: "re-evaluate" }),
        },
        (Some(o), Command::RequestApproval { draft, requester, roles }) => {
            if !o.state.is_open() {
                return Err(DomainError::IllegalTransition { from: o.state, action: "request an approval for" });
            }
            if let Some(p) =
                o.approvals.iter().find(|a| a.status == ApprovalStatus::Pending && a.draft.kind == draft.kind)
            {
                return Err(ApprovalError::Conflict(format!(
                    "approval request {} for {} is already pending on this order; decide or let it expire first",
                    p.id, draft.kind
                ))
                .into());
            }
            let errors = approval::validate_draft(&draft, &o.facts);
            if !errors.is_empty() {
                return Err(ApprovalError::Invalid(errors).into());
            }
            let wh = warehouse_of(&o.facts, ctx)?;
            let routing = ctx.rules.route_approval(&draft, &roles, &o.facts, wh, ctx.now)?;
            let id = approval::request_id(&o.id, o.approvals.len() + 1);
            let req = approval::open(id, &o.id, *draft, requester, roles, routing, ctx.now);
            let mut events = Vec::new();
            if req.routing.auto_approve {
                let by = format!("policy:{}", req.routing.rule);
                let granted = approved(o, &o.facts, &req, by, None, ctx)?;
                events.push(EventData::ApprovalRequested { request: Box::new(req) });
                events.extend(granted);
            } else {
                events.push(EventData::ApprovalRequested { request: Box::new(req) });
            }
            Ok(events)
        }
        (Some(o), Command::DecideApproval { approval_id, actor, roles, verdict, comment, .. }) => {
            let req = o
                .approvals
                .iter()
                .find(|a| a.id == approval_id)
                .ok_or_else(|| ApprovalError::NotFound(approval_id.clone()))?;
            let effect = approval::decide(req, &actor, &roles, verdict, comment.as_deref())?;
            let policy = ctx.rules.policy_id();
            let mut events = vec![EventData::ApprovalDecided {
                approval_id: approval_id.clone(),
                step: effect.step,
                role: effect.role,
                verdict,
                comment: comment.clone(),
                policy: policy.clone(),
            }];
            match effect.closes {
                Some(ApprovalStatus::Approved) => {
                    events.extend(approved(o, &o.facts, req, actor, Some(effect.role), ctx)?)
                }
                Some(status) => events.push(EventData::ApprovalClosed {
                    approval_id,
                    status,
                    by: actor,
                    role: Some(effect.role),
                    note: comment,
                    policy,
                }),
                None => {}
            }
            Ok(events)
        }
        (Some(o), Command::SweepApprovals) => {
            if !o.state.is_open() {
                return Ok(vec![]);
            }
            let policy = ctx.rules.policy_id();
            Ok(o.approvals
                .iter()
                .filter_map(|a| match approval::due(a, ctx.now)? {
                    approval::Due::Expire => Some(EventData::ApprovalClosed {
                        approval_id: a.id.clone(),
                        status: ApprovalStatus::Expired,
                        by: "system".into(),
                        role: None,
                        note: Some("nobody decided before the deadline; request again if still needed".into()),
                        policy: policy.clone(),
                    }),
                    approval::Due::Escalate { step, to } => Some(EventData::ApprovalEscalated {
                        approval_id: a.id.clone(),
                        step,
                        to,
                        policy: policy.clone(),
                    }),
                })
                .collect())
        }
        (Some(o), Command::RecordBooking { carrier, tracking_number, service }) => {
            book(o, EventData::Booked { carrier, tracking_number, service, fallback: None })
        }
        (Some(o), Command::RecordFallbackBooking { carrier, tracking_number, service, fallback }) => {
            book(o, EventData::Booked { carrier, tracking_number, service, fallback: Some(*fallback) })
        }
        (Some(o), Command::RecordDeparture { at }) => match o.state {
            OrderState::Booked => Ok(vec![EventData::Dispatched { departed_at: at }]),
            OrderState::Dispatched | OrderState::Delivered => Ok(vec![]),
            from => Err(DomainError::IllegalTransition { from, action: "dispatch" }),
        },
        (Some(o), Command::RecordDelivery { at }) => match o.state {
            // A carrier may deliver without a departure scan we saw; delivery implies it left.
            OrderState::Booked | OrderState::Dispatched => Ok(vec![EventData::Delivered { delivered_at: at }]),
            OrderState::Delivered => Ok(vec![]),
            from => Err(DomainError::IllegalTransition { from, action: "deliver" }),
        },
        (Some(o), Command::RaiseException { reason }) => match o.state {
            OrderState::Released | OrderState::Booked | OrderState::Dispatched => {
                Ok(vec![EventData::ExceptionRaised { reason }])
            }
            from => Err(DomainError::IllegalTransition { from, action: "raise an exception on" }),
        },
        (Some(o), Command::RecordTracking { update }) => decide_tracking(o, update),
        (Some(o), Command::OverrideHolds { mut reasons, note, roles, .. }) => {
            if o.state != OrderState::OnHold {
                return Err(DomainError::IllegalTransition { from: o.state, action: "override a hold of" });
            }
            let holding = holding(o);
            let role = overrides::check(&reasons, &note, &roles, &holding, &|r| ctx.rules.overridable(r))?;
            let mut seen = Vec::with_capacity(reasons.len());
            reasons.retain(|r| {
                let first = !seen.contains(r);
                seen.push(*r);
                first
            });
            Ok(vec![EventData::HoldsOverridden { reasons, note, role, policy: ctx.rules.policy_id() }])
        }
    }
}

/// The reasons holding the order now: failing, not waived by an approval, not overridden.
pub fn holding(o: &Order) -> Vec<HoldReason> {
    overrides::not_overridden(&approval::unwaived(&o.hold_reasons, &o.approvals), &o.overrides)
}

fn book(o: &Order, booked: EventData) -> Result<Vec<EventData>, DomainError> {
    match o.state {
        OrderState::Released => Ok(vec![booked]),
        // A booking that went to the dead letters put the order in `exception`; a manual
        // reprocess that succeeds books it after all.
        OrderState::Exception if o.shipment.is_none() => Ok(vec![booked]),
        from => Err(DomainError::IllegalTransition { from, action: "book" }),
    }
}

/// Every distinct tracking event is recorded (with whether it became the shipment's status);
/// the first departure scan dispatches the order, proof of delivery delivers it. Both are
/// monotonic, so the order's final state does not depend on the order events arrive in.
fn decide_tracking(o: &Order, update: TrackingUpdate) -> Result<Vec<EventData>, DomainError> {
    let Some(shipment) = o.shipment.as_ref() else {
        return Err(DomainError::IllegalTransition { from: o.state, action: "track" });
    };
    if shipment.tracking_number != update.tracking_number {
        return Err(DomainError::Invalid(vec![FieldError::new(
            "tracking_number",
            format!("the order's shipment has tracking number {}", shipment.tracking_number),
        )]));
    }
    let applied = tracking::supersedes(shipment.tracking.as_ref(), &update);
    let (status, at) = (update.status, update.event_time);
    let mut events = vec![EventData::TrackingUpdated { update, applied }];
    match o.state {
        OrderState::Booked | OrderState::Dispatched if tracking::is_delivery(status) => {
            events.push(EventData::Delivered { delivered_at: at });
        }
        OrderState::Booked if tracking::is_departure(status) => events.push(EventData::Dispatched { departed_at: at }),
        _ => {}
    }
    Ok(events)
}

fn warehouse_of<'c>(facts: &OrderFacts, ctx: &Ctx<'c>) -> Result<&'c Warehouse, DomainError> {
    ctx.warehouses
        .get(&facts.warehouse)
        .ok_or_else(|| DomainError::Invalid(vec![FieldError::new("warehouse", "unknown warehouse")]))
}

/// The state an evaluated order settles in given its requests: awaiting approval while one is
/// pending, released when every failing reason is waived by an approved request, else held.
pub fn settled_state(current: OrderState, reasons: &[HoldReason], approvals: &[ApprovalRequest]) -> OrderState {
    if !current.is_open() {
        return current;
    }
    if approvals.iter().any(|a| a.status == ApprovalStatus::Pending) {
        OrderState::AwaitingApproval
    } else if approval::unwaived(reasons, approvals).is_empty() {
        OrderState::Released
    } else {
        OrderState::OnHold
    }
}

/// What follows a new evaluation: requests the policy made for holds that cleared are
/// withdrawn, and holds the policy maps to an approval kind get a request (once per kind and
/// order; after a rejection or expiry a person asks again).
fn after_evaluation(o: Option<&Order>, facts: &OrderFacts, e: &readiness::Evaluation, ctx: &Ctx<'_>) -> Vec<EventData> {
    let approvals: &[ApprovalRequest] = o.map_or(&[], |o| o.approvals.as_slice());
    let mut events = Vec::new();
    for a in approvals.iter().filter(|a| a.status == ApprovalStatus::Pending && a.requester == POLICY_REQUESTER) {
        if !a.routing.waives.is_empty() && !a.routing.waives.iter().any(|r| e.hold_reasons.contains(r)) {
            events.push(EventData::ApprovalClosed {
                approval_id: a.id.clone(),
                status: ApprovalStatus::Withdrawn,
                by: "system".into(),
                role: None,
                note: Some("the hold it was requested for cleared".into()),
                policy: ctx.rules.policy_id(),
            });
        }
    }
    let Ok(wh) = warehouse_of(facts, ctx) else { return events };
    let mut asked: Vec<String> = Vec::new();
    for reason in &e.hold_reasons {
        let Some(kind) = ctx.rules.approval_for_hold(*reason) else { continue };
        if asked.contains(&kind)
            || approvals.iter().any(|a| a.draft.kind == kind && a.status != ApprovalStatus::Cancelled)
        {
            continue;
        }
        let draft = ApprovalDraft {
            kind: kind.clone(),
            reason: Some(format!("held for {reason}; the policy asks for a {kind} approval")),
            amount: None,
            currency: None,
            cost_center: None,
            lines: vec![],
            carrier: None,
            service: None,
        };
        if !approval::validate_draft(&draft, facts).is_empty() {
            continue;
        }
        // A route the policy cannot give leaves the order held, as before.
        let Ok(routing) = ctx.rules.route_approval(&draft, &[], facts, wh, ctx.now) else { continue };
        let id = o.map_or_else(String::new, |o| approval::request_id(&o.id, o.approvals.len() + asked.len() + 1));
        let order_id = o.map_or("", |o| o.id.as_str());
        let req = approval::open(id, order_id, draft, POLICY_REQUESTER.into(), vec![], routing, ctx.now);
        let auto = req.routing.auto_approve.then(|| EventData::ApprovalClosed {
            approval_id: req.id.clone(),
            status: ApprovalStatus::Approved,
            by: format!("policy:{}", req.routing.rule),
            role: None,
            note: None,
            policy: req.routing.policy.clone(),
        });
        events.push(EventData::ApprovalRequested { request: Box::new(req) });
        events.extend(auto);
        asked.push(kind);
    }
    events
}

/// Who requests what the policy asks for by itself.
pub const POLICY_REQUESTER: &str = "policy";

/// The events of a granted request: it closes approved, and a partial shipment splits the
/// order (it keeps what leaves now and is evaluated again; the remainder is created by the
/// follow-up job the split enqueues).
fn approved(
    o: &Order,
    facts: &OrderFacts,
    req: &ApprovalRequest,
    by: String,
    role: Option<Role>,
    ctx: &Ctx<'_>,
) -> Result<Vec<EventData>, DomainError> {
    let mut events = vec![EventData::ApprovalClosed {
        approval_id: req.id.clone(),
        status: ApprovalStatus::Approved,
        by,
        role,
        note: None,
        policy: ctx.rules.policy_id(),
    }];
    if ApprovalKind::from_code(&req.draft.kind) == Some(ApprovalKind::PartialShipment) {
        let (shipped, rest) = approval::split(facts, &req.draft.lines).map_err(|_| {
            ApprovalError::Conflict(format!(
                "the order's lines changed since {} was requested and the split no longer fits; reject it and request again",
                req.id
            ))
        })?;
        let mut after = facts.clone();
        after.lines = shipped.clone();
        let evaluation = evaluate(&after, ctx)?;
        events.push(EventData::Split {
            approval_id: req.id.clone(),
            shipped,
            remainder: approval::Remainder {
                external_id: approval::remainder_external_id(&facts.external_id, o.remainders.len() + 1),
                approval_id: req.id.clone(),
                lines: rest,
            },
        });
        events.push(EventData::Evaluated(evaluation));
    }
    Ok(events)
}

fn evaluate(facts: &OrderFacts, ctx: &Ctx<'_>) -> Result<readiness::Evaluation, DomainError> {
    let errors = validate(facts, ctx.warehouses);
    if !errors.is_empty() {
        return Err(DomainError::Invalid(errors));
    }
    let wh = ctx
        .warehouses
        .get(&facts.warehouse)
        .ok_or_else(|| DomainError::Invalid(vec![FieldError::new("warehouse", "unknown warehouse")]))?;
    Ok(ctx.rules.evaluate(facts, wh, ctx.now))
}

fn changed_fields(old: &OrderFacts, new: &OrderFacts) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return vec![];
    };
    let mut keys: Vec<String> = a.keys().chain(b.keys()).filter(|k| a.get(*k) != b.get(*k)).cloned().collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Folds one event into the state. Refuses a sequence that could not have been decided
/// (a gap in versions, an event before the order exists) instead of guessing.
pub fn apply(state: Option<Order>, ev: &Event) -> Result<Order, DomainError> {
    let expected_version = state.as_ref().map_or(1, |o| o.version + 1);
    if ev.version != expected_version {
        return Err(DomainError::Corrupt(format!(
            "order {}: event version {} where {expected_version} was due",
            ev.order_id, ev.version
        )));
    }
    let mut o = match (state, &ev.data) {
        (None, EventData::Received { facts }) => {
            return Ok(Order {
                id: ev.order_id.clone(),
                version: ev.version,
                state: OrderState::Received,
                hold_reasons: vec![],
                priority: 0,
                facts: facts.clone(),
                checks: vec![],
                latest_departure: None,
                status_note: None,
                shipment: None,
                created_at: ev.at,
                updated_at: ev.at,
                state_since: ev.at,
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
            });
        }
        (None, d) => return Err(DomainError::Corrupt(format!("order {} starts with {}", ev.order_id, d.kind()))),
        (Some(_), EventData::Received { .. }) => {
            return Err(DomainError::Corrupt(format!("order {} received twice", ev.order_id)));
        }
        (Some(o), _) => o,
    };
    let new_state = match &ev.data {
        EventData::Received { .. } => o.state,
        EventData::FactsUpdated { facts, .. } => {
            o.facts = facts.clone();
            o.state
        }
        EventData::Evaluated(e) => {
            o.hold_reasons = e.hold_reasons.clone();
            o.checks = e.checks.clone();
            o.priority = e.priority;
            o.latest_departure = Some(e.inputs.latest_departure);
            // An evaluation made without the model (an approval's split) keeps the last score.
            if let Some(p) = e.scored.as_ref().map(|s| s.late_departure).or(e.risk.as_ref().map(|r| r.late_departure)) {
                o.late_departure_risk = Some(p);
            }
            settle(&mut o, e.outcome)
        }
        EventData::ApprovalRequested { request } => {
            o.approvals.push((**request).clone());
            let current = o.state;
            settle(&mut o, current)
        }
        EventData::ApprovalDecided { approval_id, step, role, verdict, comment, .. } => {
            o.touched = true;
            let a = request_mut(&mut o, approval_id)?;
            approval::record_decision(
                a,
                *step,
                approval::StepDecision {
                    actor: ev.actor.clone(),
                    role: *role,
                    verdict: *verdict,
                    comment: comment.clone(),
                    at: ev.at,
                },
            );
            o.state
        }
        EventData::ApprovalEscalated { approval_id, step, .. } => {
            let a = request_mut(&mut o, approval_id)?;
            if let Some(s) = a.steps.get_mut(*step) {
                s.escalated_at = Some(ev.at);
            }
            o.state
        }
        EventData::ApprovalClosed { approval_id, status, by, .. } => {
            let a = request_mut(&mut o, approval_id)?;
            a.status = *status;
            a.closed_at = Some(ev.at);
            a.closed_by = Some(by.clone());
            if *status == ApprovalStatus::Approved {
                let kind = ApprovalKind::from_code(&a.draft.kind);
                let id = a.id.clone();
                match kind {
                    Some(ApprovalKind::ExpeditedFreight) => {
                        let service = a.draft.service;
                        let carrier = o.booking_override.as_ref().and_then(|b| b.carrier.clone());
                        o.booking_override = Some(approval::BookingOverride { approval_id: id, carrier, service });
                    }
                    Some(ApprovalKind::RouteOverride) => {
                        let carrier = a.draft.carrier.clone();
                        let service = o.booking_override.as_ref().and_then(|b| b.service);
                        o.booking_override = Some(approval::BookingOverride { approval_id: id, carrier, service });
                    }
                    _ => {}
                }
            }
            let current = if o.state == OrderState::Received { OrderState::OnHold } else { o.state };
            settle(&mut o, current)
        }
        EventData::Split { shipped, remainder, .. } => {
            o.facts.lines = shipped.clone();
            o.remainders.push(remainder.clone());
            o.state
        }
        EventData::SplitFrom { link } => {
            o.split_from = Some(link.clone());
            o.state
        }
        EventData::Cancelled { reason } => {
            o.hold_reasons.clear();
            o.status_note = reason.clone();
            OrderState::Cancelled
        }
        EventData::Booked { carrier, tracking_number, service, .. } => {
            o.shipment = Some(Shipment {
                carrier: carrier.clone(),
                tracking_number: tracking_number.clone(),
                service: service.clone(),
                departed_at: None,
                delivered_at: None,
                tracking: None,
            });
            OrderState::Booked
        }
        EventData::Dispatched { departed_at } => {
            if let Some(s) = o.shipment.as_mut() {
                s.departed_at = Some(tracking::earliest(s.departed_at, *departed_at));
            }
            OrderState::Dispatched
        }
        EventData::Delivered { delivered_at } => {
            if let Some(s) = o.shipment.as_mut() {
                s.delivered_at = Some(tracking::earliest(s.delivered_at, *delivered_at));
            }
            OrderState::Delivered
        }
        EventData::TrackingUpdated { update, applied } => {
            if let Some(s) = o.shipment.as_mut() {
                if *applied {
                    s.tracking = Some(tracking::state_of(update));
                }
                if tracking::is_departure(update.status) {
                    s.departed_at = Some(tracking::earliest(s.departed_at, update.event_time));
                }
                if tracking::is_delivery(update.status) {
                    s.delivered_at = Some(tracking::earliest(s.delivered_at, update.event_time));
                }
            }
            o.state
        }
        EventData::ExceptionRaised { reason } => {
            o.status_note = Some(reason.clone());
            OrderState::Exception
        }
        EventData::HoldsOverridden { reasons, note, role, .. } => {
            o.overrides.push(HoldOverride {
                reasons: reasons.clone(),
                note: note.clone(),
                by: ev.actor.clone(),
                role: *role,
                at: ev.at,
            });
            o.touched = true;
            let current = o.state;
            settle(&mut o, current)
        }
    };
    if new_state == OrderState::Released && o.first_released_at.is_none() {
        o.first_released_at = Some(ev.at);
        o.released_on_time = Some(o.latest_departure.is_none_or(|ld| ev.at <= ld));
    }
    if new_state != o.state {
        o.state_since = ev.at;
        o.state = new_state;
    }
    o.version = ev.version;
    o.updated_at = ev.at;
    Ok(o)
}

/// The state after an evaluation or a change of requests; see [`settled_state`].
fn settle(o: &mut Order, current: OrderState) -> OrderState {
    let unlifted = overrides::not_overridden(&o.hold_reasons, &o.overrides);
    o.waived = o
        .hold_reasons
        .iter()
        .copied()
        .filter(|r| !unlifted.contains(r) || approval::unwaived(std::slice::from_ref(r), &o.approvals).is_empty())
        .collect();
    if current == OrderState::Received {
        // Not evaluated yet: requests wait for the evaluation that follows.
        return if o.approvals.iter().any(|a| a.status == ApprovalStatus::Pending) {
            OrderState::AwaitingApproval
        } else {
            current
        };
    }
    settled_state(current, &unlifted, &o.approvals)
}

fn request_mut<'o>(o: &'o mut Order, id: &str) -> Result<&'o mut ApprovalRequest, DomainError> {
    let order_id = o.id.clone();
    o.approvals
        .iter_mut()
        .find(|a| a.id == id)
        .ok_or_else(|| DomainError::Corrupt(format!("order {order_id}: event for unknown approval request {id}")))
}

/// Rebuilds an order from its whole stream; `None` for an empty stream.
pub fn replay(events: &[Event]) -> Result<Option<Order>, DomainError> {
    events.iter().try_fold(None, |state, ev| apply(state, ev).map(Some))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readiness::tests::{facts, now, warehouse};
    use crate::vocab::HoldReason;

    fn whs() -> Warehouses {
        Warehouses::new(vec![warehouse("AMS", "NL", "Europe/Amsterdam")]).unwrap()
    }

    /// Runs a command against a state and applies what it decided.
    fn run(state: Option<Order>, cmd: Command) -> Result<Order, DomainError> {
        let w = whs();
        let ctx = Ctx::new(now(), &w);
        let events = decide(state.as_ref(), cmd, &ctx)?;
        let mut s = state;
        for data in events {
            let version = s.as_ref().map_or(1, |o| o.version + 1);
            let ev =
                Event { order_id: "ord_1".into(), version, at: now(), actor: "test".into(), request_id: None, data };
            s = Some(apply(s, &ev)?);
        }
        s.ok_or(DomainError::NotFound)
    }

    fn upsert(f: OrderFacts) -> Command {
        Command::Upsert { facts: Box::new(f), expected_version: None }
    }

    fn released() -> Order {
        run(None, upsert(facts())).unwrap()
    }

    fn in_state(state: OrderState) -> Order {
        let o = released();
        match state {
            OrderState::Released => o,
            OrderState::OnHold => {
                let mut f = facts();
                f.lines[0].qty_allocated = 0;
                run(Some(o), upsert(f)).unwrap()
            }
            OrderState::Booked => run(
                Some(o),
                Command::RecordBooking { carrier: "dhl".into(), tracking_number: "T1".into(), service: None },
            )
            .unwrap(),
            OrderState::Dispatched => {
                run(Some(in_state(OrderState::Booked)), Command::RecordDeparture { at: now() }).unwrap()
            }
            OrderState::Delivered => {
                run(Some(in_state(OrderState::Dispatched)), Command::RecordDelivery { at: now() }).unwrap()
            }
            OrderState::Exception => {
                run(Some(o), Command::RaiseException { reason: "carrier refused".into() }).unwrap()
            }
            OrderState::Cancelled => run(Some(o), Command::Cancel { reason: None, expected_version: None }).unwrap(),
            OrderState::Received | OrderState::AwaitingApproval => {
                let mut o = o;
                o.state = state;
                o
            }
        }
    }

    #[test]
    fn a_new_clean_order_is_received_then_released() {
        let o = released();
        assert_eq!(o.state, OrderState::Released);
        assert_eq!(o.version, 2);
        assert!(o.hold_reasons.is_empty());
        assert_eq!(o.checks.len(), 6);
        assert!(o.priority > 0);
    }

    #[test]
    fn a_new_order_with_problems_is_held_with_every_reason() {
        let mut f = facts();
        f.lines[0].qty_allocated = 1;
        f.customer.credit_status = crate::CreditStatus::Hold;
        let o = run(None, upsert(f)).unwrap();
        assert_eq!(o.state, OrderState::OnHold);
        assert_eq!(o.hold_reasons, vec![HoldReason::StockShort, HoldReason::CreditHold]);
    }

    #[test]
    fn identical_upsert_records_nothing() {
        let w = whs();
        let ctx = Ctx::new(now(), &w);
        assert_eq!(decide(Some(&released()), upsert(facts()), &ctx), Ok(vec![]));
    }

    #[test]
    fn changed_facts_are_reevaluated_and_named() {
        let o = released();
        let mut f = facts();
        f.lines[0].qty_allocated = 0;
        let w = whs();
        let ctx = Ctx::new(now(), &w);
        let events = decide(Some(&o), upsert(f.clone()), &ctx).unwrap();
        assert!(matches!(&events[0], EventData::FactsUpdated { changed, .. } if changed == &["lines"]));
        let held = run(Some(o), upsert(f)).unwrap();
        assert_eq!(held.state, OrderState::OnHold);
        assert_eq!(held.version, 4);
        // Stock arrives: released again.
        let again = run(Some(held), upsert(facts())).unwrap();
        assert_eq!(again.state, OrderState::Released);
    }

    #[test]
    fn stale_version_is_a_conflict() {
        let o = released();
        let err =
            run(Some(o.clone()), Command::Upsert { facts: Box::new(facts()), expected_version: Some(1) }).unwrap_err();
        assert_eq!(err, DomainError::VersionConflict { expected: 1, current: 2 });
        let err = run(Some(o), Command::Cancel { reason: None, expected_version: Some(7) }).unwrap_err();
        assert!(matches!(err, DomainError::VersionConflict { expected: 7, current: 2 }));
        let ok = run(Some(released()), Command::Cancel { reason: None, expected_version: Some(2) }).unwrap();
        assert_eq!(ok.state, OrderState::Cancelled);
    }

    #[test]
    fn invalid_facts_are_refused_with_fields() {
        let mut f = facts();
        f.warehouse = "NOPE".into();
        match run(None, upsert(f)) {
            Err(DomainError::Invalid(errs)) => assert_eq!(errs[0].field, "warehouse"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn commands_on_a_missing_order_are_not_found() {
        assert_eq!(run(None, Command::Reevaluate).unwrap_err(), DomainError::NotFound);
        assert_eq!(
            run(None, Command::Cancel { reason: None, expected_version: None }).unwrap_err(),
            DomainError::NotFound
        );
    }

    #[test]
    fn cancel_from_each_state() {
        for s in OrderState::ALL {
            let o = in_state(*s);
            let r = run(Some(o.clone()), Command::Cancel { reason: Some("customer".into()), expected_version: None });
            match s {
                OrderState::Dispatched | OrderState::Delivered => {
                    assert_eq!(r.unwrap_err(), DomainError::IllegalTransition { from: *s, action: "cancel" })
                }
                OrderState::Cancelled => assert_eq!(r.unwrap().version, o.version, "cancel is idempotent"),
                _ => {
                    let c = r.unwrap();
                    assert_eq!(c.state, OrderState::Cancelled, "from {s}");
                    assert_eq!(c.status_note.as_deref(), Some("customer"));
                    assert!(c.hold_reasons.is_empty());
                }
            }
        }
    }

    #[test]
    fn updates_only_while_open() {
        let mut f = facts();
        f.documents.push("packing_list".into());
        for s in OrderState::ALL {
            let r = run(Some(in_state(*s)), upsert(f.clone()));
            if s.is_open() {
                assert!(r.is_ok(), "{s}: {r:?}");
            } else {
                assert_eq!(r.unwrap_err(), DomainError::IllegalTransition { from: *s, action: "update" });
            }
        }
    }

    #[test]
    fn booking_departure_delivery_follow_the_lifecycle() {
        let booked = in_state(OrderState::Booked);
        assert_eq!(booked.shipment.as_ref().unwrap().tracking_number, "T1");
        let d = in_state(OrderState::Delivered);
        assert_eq!(d.state, OrderState::Delivered);
        assert!(d.shipment.as_ref().unwrap().delivered_at.is_some());
        for s in [OrderState::OnHold, OrderState::Booked, OrderState::Cancelled] {
            let r = run(
                Some(in_state(s)),
                Command::RecordBooking { carrier: "x".into(), tracking_number: "y".into(), service: None },
            );
            assert_eq!(r.unwrap_err(), DomainError::IllegalTransition { from: s, action: "book" });
        }
        assert!(matches!(
            run(Some(in_state(OrderState::Released)), Command::RecordDeparture { at: now() }),
            Err(DomainError::IllegalTransition { action: "dispatch", .. })
        ));
        // Delivered without a departure scan is accepted (the scan was lost), twice is a no-op.
        let direct = run(Some(in_state(OrderState::Booked)), Command::RecordDelivery { at: now() }).unwrap();
        assert_eq!(direct.state, OrderState::Delivered);
        assert_eq!(run(Some(direct.clone()), Command::RecordDelivery { at: now() }).unwrap().version, direct.version);
        assert!(run(Some(in_state(OrderState::OnHold)), Command::RaiseException { reason: "x".into() }).is_err());
    }

    #[test]
    fn reevaluate_records_only_a_changed_outcome_or_priority() {
        let o = released();
        let w = whs();
        let ctx = Ctx::new(now(), &w);
        assert_eq!(decide(Some(&o), Command::Reevaluate, &ctx), Ok(vec![]));
        // Hours before the cut-off: same outcome, more urgent, so a new evaluation.
        let nearer = Ctx::new(now() + chrono::Duration::days(4), &w);
        let ev = decide(Some(&o), Command::Reevaluate, &nearer).unwrap();
        assert!(
            matches!(&ev[0], EventData::Evaluated(e) if e.outcome == OrderState::Released && e.priority > o.priority)
        );
        // A week later the promised date is gone: cut-off missed.
        let later = Ctx::new(now() + chrono::Duration::days(7), &w);
        let ev = decide(Some(&o), Command::Reevaluate, &later).unwrap();
        assert!(matches!(&ev[0], EventData::Evaluated(e) if e.hold_reasons == vec![HoldReason::CutoffMissed]));
        assert!(decide(Some(&in_state(OrderState::Booked)), Command::Reevaluate, &ctx).is_err());
    }

    fn ask(kind: &str) -> Command {
        let mut draft = ApprovalDraft {
            kind: kind.into(),
            reason: Some("deadline".into()),
            amount: None,
            currency: None,
            cost_center: None,
            lines: vec![],
            carrier: None,
            service: None,
        };
        if kind == "partial_shipment" {
            draft.lines = vec![approval::SplitLine { sku: facts().lines[0].sku.clone(), qty: 1 }];
        }
        Command::RequestApproval {
            draft: Box::new(draft),
            requester: "token:ann".into(),
            roles: vec![Role::Dispatcher],
        }
    }

    fn verdict(id: &str, actor: &str, roles: &[Role], v: Verdict) -> Command {
        Command::DecideApproval {
            approval_id: id.into(),
            actor: actor.into(),
            roles: roles.to_vec(),
            verdict: v,
            comment: Some("ok".into()),
            expected_version: None,
        }
    }

    fn credit_held() -> Order {
        let mut f = facts();
        f.customer.credit_status = crate::CreditStatus::Hold;
        run(None, upsert(f)).unwrap()
    }

    #[test]
    fn an_approved_request_waives_its_reason_and_releases() {
        let held = credit_held();
        let waiting = run(Some(held), ask("credit_hold_release")).unwrap();
        assert_eq!(waiting.state, OrderState::AwaitingApproval);
        let id = waiting.approvals[0].id.clone();
        assert_eq!(id, "apr_1_1");
        // Re-evaluating while it waits changes nothing.
        let w = whs();
        assert_eq!(decide(Some(&waiting), Command::Reevaluate, &Ctx::new(now(), &w)), Ok(vec![]));
        let own = run(Some(waiting.clone()), verdict(&id, "token:ann", &[Role::Supervisor], Verdict::Approve));
        assert!(matches!(own, Err(DomainError::Approval(ApprovalError::Forbidden(_)))));
        let done = run(Some(waiting), verdict(&id, "token:sam", &[Role::Supervisor], Verdict::Approve)).unwrap();
        assert_eq!(done.state, OrderState::Released);
        assert_eq!(done.hold_reasons, vec![HoldReason::CreditHold]);
        assert_eq!(done.waived, vec![HoldReason::CreditHold]);
        assert_eq!(done.approvals[0].status, ApprovalStatus::Approved);
    }

    #[test]
    fn a_rejection_keeps_the_order_held_and_cancel_closes_requests() {
        let waiting = run(Some(credit_held()), ask("credit_hold_release")).unwrap();
        let rejected =
            run(Some(waiting.clone()), verdict("apr_1_1", "token:sam", &[Role::Supervisor], Verdict::Reject)).unwrap();
        assert_eq!((rejected.state, rejected.approvals[0].status), (OrderState::OnHold, ApprovalStatus::Rejected));
        let cancelled = run(Some(waiting), Command::Cancel { reason: None, expected_version: None }).unwrap();
        assert_eq!(
            (cancelled.state, cancelled.approvals[0].status),
            (OrderState::Cancelled, ApprovalStatus::Cancelled)
        );
        assert!(run(Some(in_state(OrderState::Booked)), ask("credit_hold_release")).is_err());
    }

    /// Like `run`, but also returns the outbound messages the step publishes.
    fn run_published(state: Option<Order>, cmd: Command) -> (Order, Vec<crate::outbound::Message>) {
        let w = whs();
        let events = decide(state.as_ref(), cmd, &Ctx::new(now(), &w)).unwrap();
        let mut s = state.clone();
        let mut stored = Vec::new();
        for data in events {
            let version = s.as_ref().map_or(1, |o| o.version + 1);
            let ev =
                Event { order_id: "ord_1".into(), version, at: now(), actor: "test".into(), request_id: None, data };
            s = Some(apply(s, &ev).unwrap());
            stored.push(ev);
        }
        let after = s.unwrap();
        let messages = crate::outbound::messages(state.as_ref(), &after, &stored);
        (after, messages)
    }

    #[test]
    fn approval_requests_and_decisions_are_published_to_subscribers() {
        let (waiting, sent) = run_published(Some(credit_held()), ask("credit_hold_release"));
        let requested = sent.iter().find(|m| m.event_type.code() == "approval.requested").expect("published");
        assert_eq!(requested.data["kind"], "credit_hold_release");
        assert_eq!(requested.data["status"], "pending");
        assert!(!requested.data["roles"].as_array().unwrap().is_empty(), "who may decide is named");
        let id = waiting.approvals[0].id.clone();
        let (_, sent) = run_published(Some(waiting), verdict(&id, "token:sam", &[Role::Supervisor], Verdict::Reject));
        let decided = sent.iter().find(|m| m.event_type.code() == "approval.decided").expect("published");
        assert_eq!(
            (decided.data["approval_id"].as_str(), decided.data["status"].as_str()),
            (Some(id.as_str()), Some("rejected"))
        );
    }

    #[test]
    fn an_approved_partial_shipment_splits_the_order() {
        let mut f = facts();
        f.lines[0].qty_allocated = 1;
        let held = run(None, upsert(f.clone())).unwrap();
        let waiting = run(Some(held), ask("partial_shipment")).unwrap();
        let done = run(Some(waiting), verdict("apr_1_1", "token:sam", &[Role::Supervisor], Verdict::Approve)).unwrap();
        assert_eq!(done.state, OrderState::Released);
        assert_eq!((done.facts.lines[0].qty, done.facts.lines[0].qty_allocated), (1, 1));
        assert_eq!(done.remainders[0].external_id, format!("{}-BO1", f.external_id));
        assert_eq!(done.remainders[0].lines[0].qty, f.lines[0].qty - 1);
        let jobs = crate::effects::follow_ups(None, &done, &[], Default::default());
        assert!(jobs.iter().any(|j| j.kind == crate::effects::CREATE_REMAINDER));
    }

    fn override_cmd(reasons: &[HoldReason], roles: &[Role], expected_version: Option<u64>) -> Command {
        Command::OverrideHolds {
            reasons: reasons.to_vec(),
            note: "customer collects at the dock tonight".into(),
            roles: roles.to_vec(),
            expected_version,
        }
    }

    /// Released at `now()`, then re-evaluated a week later: held for the missed cut-off.
    fn cutoff_held() -> Order {
        let w = whs();
        let o = released();
        let later = Ctx::new(now() + chrono::Duration::days(7), &w);
        let events = decide(Some(&o), Command::Reevaluate, &later).unwrap();
        let mut s = Some(o);
        for data in events {
            let version = s.as_ref().map_or(1, |o| o.version + 1);
            let ev =
                Event { order_id: "ord_1".into(), version, at: now(), actor: "test".into(), request_id: None, data };
            s = Some(apply(s, &ev).unwrap());
        }
        s.unwrap()
    }

    #[test]
    fn a_supervisor_overrides_a_soft_hold_and_the_order_is_released() {
        let held = cutoff_held();
        assert_eq!((held.state, held.hold_reasons.clone()), (OrderState::OnHold, vec![HoldReason::CutoffMissed]));
        assert!(!held.touched);
        let cmd = override_cmd(&[HoldReason::CutoffMissed], &[Role::Supervisor], Some(held.version));
        let done = run(Some(held.clone()), cmd).unwrap();
        assert_eq!(done.state, OrderState::Released);
        assert_eq!(done.version, held.version + 1);
        assert_eq!(done.hold_reasons, vec![HoldReason::CutoffMissed], "the check still fails; it is lifted");
        assert_eq!(done.waived, vec![HoldReason::CutoffMissed]);
        assert_eq!(done.overrides[0].role, Role::Supervisor);
        assert_eq!(done.overrides[0].by, "test");
        assert!(done.touched, "an override is a human touch");
        // The next evaluation sees the same failing check and keeps it lifted.
        let w = whs();
        let later = Ctx::new(now() + chrono::Duration::days(8), &w);
        assert_eq!(decide(Some(&done), Command::Reevaluate, &later), Ok(vec![]));
        let w = whs();
        let ev = decide(
            Some(&held),
            override_cmd(&[HoldReason::CutoffMissed], &[Role::OpsManager], None),
            &Ctx::new(now(), &w),
        )
        .unwrap();
        assert!(crate::event::summary(&ev[0]).contains("cutoff_missed lifted; why: customer collects"));
    }

    #[test]
    fn overrides_are_refused_for_hard_blocks_other_states_stale_versions_and_dispatchers() {
        let held = cutoff_held();
        let v = held.version;
        assert_eq!(
            run(Some(held.clone()), override_cmd(&[HoldReason::CutoffMissed], &[Role::Supervisor], Some(v - 1)))
                .unwrap_err(),
            DomainError::VersionConflict { expected: v - 1, current: v }
        );
        assert!(matches!(
            run(Some(held.clone()), override_cmd(&[HoldReason::CutoffMissed], &[Role::Dispatcher], None)),
            Err(DomainError::Override(OverrideError::Forbidden(_)))
        ));
        assert!(matches!(
            run(Some(held), override_cmd(&[HoldReason::StockShort], &[Role::Supervisor], None)),
            Err(DomainError::Override(OverrideError::NotOverridable(_)))
        ));
        let mut f = facts();
        f.lines[0].qty_allocated = 0;
        f.ship_to.postcode.clear();
        let hard = run(None, upsert(f)).unwrap();
        assert_eq!(hard.state, OrderState::OnHold);
        assert!(hard.hold_reasons.contains(&HoldReason::AddressInvalid), "{:?}", hard.hold_reasons);
        for r in hard.hold_reasons.clone() {
            assert!(
                matches!(
                    run(Some(hard.clone()), override_cmd(&[r], &[Role::Admin], None)),
                    Err(DomainError::Override(OverrideError::NotOverridable(_)))
                ),
                "{r}"
            );
        }
        assert_eq!(
            run(Some(released()), override_cmd(&[HoldReason::CutoffMissed], &[Role::Supervisor], None)).unwrap_err(),
            DomainError::IllegalTransition { from: OrderState::Released, action: "override a hold of" }
        );
    }

    #[test]
    fn the_first_release_and_whether_it_was_on_time_are_kept() {
        let o = released();
        assert_eq!(o.first_released_at, Some(now()));
        assert_eq!(o.released_on_time, Some(true));
        let held = cutoff_held();
        assert_eq!(held.first_released_at, Some(now()), "a later hold does not change the first release");
    }

    #[test]
    fn apply_refuses_impossible_streams() {
        let o = released();
        let ev = |version, data| Event {
            order_id: "ord_1".into(),
            version,
            at: now(),
            actor: "t".into(),
            request_id: None,
            data,
        };
        assert!(matches!(apply(None, &ev(1, EventData::Cancelled { reason: None })), Err(DomainError::Corrupt(_))));
        assert!(matches!(
            apply(Some(o.clone()), &ev(5, EventData::Cancelled { reason: None })),
            Err(DomainError::Corrupt(_))
        ));
        assert!(matches!(apply(Some(o), &ev(3, EventData::Received { facts: facts() })), Err(DomainError::Corrupt(_))));
    }
}
