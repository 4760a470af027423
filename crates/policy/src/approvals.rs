//! The `[approvals]` section: approval kinds and their requirements, the holds the policy puts
//! up for approval by itself, and the routing decision table (hit policy FIRST, conditions in
//! CEL over the order context plus `request`). Checked whole at load, like the rest of the
//! policy: unknown roles, kinds or reasons, a route naming a role its kind does not allow, an
//! auto-approval of a kind that must never be auto-approved are all refused with a location.

use std::collections::BTreeMap;

use cel::{Context, Value};
use chrono::{DateTime, Utc};
use dispatch_core::approval::{self, ApprovalDraft, ApprovalError, Routing, StepMode, StepSpec};
use dispatch_core::{ApprovalKind, FieldError, HoldReason, OrderFacts, Role, Warehouse};
use toml::Spanned;

use crate::error::suggest;
use crate::model::{ApprovalsDef, StepDef};
use crate::schema::{self, Computed, RequestVals, Scratch};
use crate::{Compiler, Expr, Policy, Want, valid_id};

/// Requirements of one approval kind.
#[derive(Debug, Clone, Default)]
pub struct KindRules {
    pub description: String,
    pub reason_required: bool,
    pub cost_center_required: bool,
    pub amount_required: bool,
    pub never_auto: bool,
    /// Empty: any role.
    pub only_roles: Vec<Role>,
    pub waives: Vec<HoldReason>,
}

/// One row of the decision table.
pub struct RouteRow {
    pub id: String,
    pub kind: String,
    pub when: Option<Expr>,
    pub auto: bool,
    pub steps: Vec<StepSpec>,
    pub expires_after_minutes: Option<i64>,
}

/// The compiled section.
#[derive(Default)]
pub struct Approvals {
    pub holds: BTreeMap<HoldReason, String>,
    pub kinds: BTreeMap<String, KindRules>,
    pub routes: Vec<RouteRow>,
}

/// `30m`, `4h`, `2d` (also `90` for minutes) as minutes.
pub fn parse_minutes(s: &str) -> Option<i64> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "m"),
    };
    let n: i64 = num.parse().ok().filter(|n| *n > 0)?;
    match unit.trim() {
        "m" | "min" => Some(n),
        "h" => n.checked_mul(60),
        "d" => n.checked_mul(24 * 60),
        _ => None,
    }
}

fn role_list(c: &mut Compiler<'_>, list: &[Spanned<String>], what: &str) -> Vec<Role> {
    let mut out = Vec::new();
    for r in list {
        match Role::from_code(r.get_ref()) {
            Some(x) => {
                if !out.contains(&x) {
                    out.push(x);
                }
            }
            None => {
                let all: Vec<&str> = Role::ALL.iter().map(|r| r.code()).collect();
                let hint = suggest(r.get_ref(), all.iter().copied())
                    .map(|x| format!(" Did you mean `{x}`?"))
                    .unwrap_or_default();
                c.err(
                    r.span().start,
                    "invalid",
                    format!("{what}: unknown role `{}`; roles are {}.{hint}", r.get_ref(), all.join(", ")),
                );
            }
        }
    }
    out
}

fn minutes(c: &mut Compiler<'_>, s: &Spanned<String>, what: &str) -> Option<i64> {
    let m = parse_minutes(s.get_ref());
    if m.is_none() {
        c.err(
            s.span().start,
            "invalid",
            format!("{what}: `{}` is not a duration; write e.g. `30m`, `4h` or `2d`", s.get_ref()),
        );
    }
    m
}

pub(crate) fn compile(c: &mut Compiler<'_>, def: &ApprovalsDef) -> Approvals {
    let mut kinds: BTreeMap<String, KindRules> = ApprovalKind::ALL
        .iter()
        .map(|k| (k.code().to_string(), KindRules { waives: approval::builtin_waives(k.code()), ..Default::default() }))
        .collect();
    for (name, k) in &def.kinds {
        if !valid_id(name.get_ref()) {
            c.err(
                name.span().start,
                "invalid",
                format!("approval kind `{}` must be letters, digits, `_` or `-`", name.get_ref()),
            );
            continue;
        }
        let what = format!("approval kind `{}`", name.get_ref());
        let mut rules = kinds.get(name.get_ref()).cloned().unwrap_or_default();
        rules.description = k.description.clone();
        rules.reason_required = k.reason_required;
        rules.cost_center_required = k.cost_center_required;
        rules.amount_required = k.amount_required;
        rules.never_auto = k.never_auto;
        rules.only_roles = role_list(c, &k.only_roles, &what);
        if let Some(w) = &k.waives {
            rules.waives = Vec::new();
            for r in w {
                match HoldReason::from_code(r.get_ref()) {
                    Some(x) => rules.waives.push(x),
                    None => c.err(
                        r.span().start,
                        "unknown_reason",
                        format!("{what}: unknown reason code `{}` in waives", r.get_ref()),
                    ),
                }
            }
        }
        kinds.insert(name.get_ref().clone(), rules);
    }
    let known: Vec<String> = kinds.keys().cloned().collect();
    let check_kind = |c: &mut Compiler<'_>, k: &Spanned<String>, what: &str| -> bool {
        if kinds.contains_key(k.get_ref()) {
            return true;
        }
        let hint = suggest(k.get_ref(), known.iter().map(String::as_str))
            .map(|x| format!(" Did you mean `{x}`?"))
            .unwrap_or_default();
        c.err(
            k.span().start,
            "invalid",
            format!(
                "{what}: unknown approval kind `{}`; kinds are {} (add one under [approvals.kinds.<name>]).{hint}",
                k.get_ref(),
                known.join(", ")
            ),
        );
        false
    };

    let mut holds = BTreeMap::new();
    for (reason, kind) in &def.holds {
        let Some(r) = HoldReason::from_code(reason.get_ref()) else {
            c.err(
                reason.span().start,
                "unknown_reason",
                format!("[approvals.holds]: unknown reason code `{}`", reason.get_ref()),
            );
            continue;
        };
        if !check_kind(c, kind, "[approvals.holds]") {
            continue;
        }
        // The policy asks by itself, so the kind must not need facts only a person can give.
        let needs_facts = matches!(
            ApprovalKind::from_code(kind.get_ref()),
            Some(ApprovalKind::PartialShipment | ApprovalKind::RouteOverride | ApprovalKind::ExpeditedFreight)
        );
        let k = &kinds[kind.get_ref()];
        if needs_facts || k.cost_center_required || k.amount_required {
            c.err(
                kind.span().start,
                "invalid",
                format!(
                    "[approvals.holds]: `{}` needs facts a person gives (lines, carrier, service, cost center or amount); the policy cannot request it for a hold by itself",
                    kind.get_ref()
                ),
            );
            continue;
        }
        holds.insert(r, kind.get_ref().clone());
    }

    let mut routes = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for d in &def.route {
        let id = d.id.get_ref().clone();
        let what = format!("approval route `{id}`");
        if !valid_id(&id) {
            c.err(d.id.span().start, "invalid", format!("{what}: ids must be letters, digits, `_` or `-`"));
        }
        if !ids.insert(id.clone()) {
            c.err(
                d.id.span().start,
                "invalid",
                format!("{what}: the id is used twice; ids name routes on approval events"),
            );
        }
        if !check_kind(c, &d.kind, &what) {
            continue;
        }
        let rules = kinds[d.kind.get_ref()].clone();
        let when = match &d.when {
            Some(w) => match c.expr(w, &what, Want::Bool) {
                Some(e) => {
                    // Routing runs outside an order evaluation, where no model scores.
                    if e.reads.iter().any(|r| crate::risk::is_risk_path(r)) {
                        let span = w.span();
                        let o = c.loc.inside(&span, 0);
                        c.err(o, "unknown_field", format!("{what}: `risk` is not available in approval routes"));
                    }
                    Some(e)
                }
                None => continue,
            },
            None => None,
        };
        if d.auto && !d.steps.is_empty() {
            c.err(d.id.span().start, "invalid", format!("{what}: give either `auto = true` or `steps`, not both"));
        }
        if !d.auto && d.steps.is_empty() {
            c.err(
                d.id.span().start,
                "invalid",
                format!("{what}: needs `steps = [{{ any_of = [\"supervisor\"] }}]` or `auto = true`"),
            );
        }
        if d.auto && rules.never_auto {
            c.err(
                d.id.span().start,
                "invalid",
                format!("{what}: `{}` is never auto-approved (never_auto in its kind)", d.kind.get_ref()),
            );
        }
        let mut steps = Vec::new();
        for (i, s) in d.steps.iter().enumerate() {
            if let Some(spec) = step(c, s, &format!("{what}, step {}", i + 1), &rules, &d.id) {
                steps.push(spec);
            }
        }
        let expires = d.expires_after.as_ref().and_then(|e| minutes(c, e, &what));
        routes.push(RouteRow {
            id,
            kind: d.kind.get_ref().clone(),
            when,
            auto: d.auto,
            steps,
            expires_after_minutes: expires,
        });
    }
    Approvals { holds, kinds, routes }
}

fn step(c: &mut Compiler<'_>, s: &StepDef, what: &str, rules: &KindRules, at: &Spanned<String>) -> Option<StepSpec> {
    let (mode, list) = match (&s.any_of, &s.all_of) {
        (Some(l), None) => (StepMode::AnyOf, l),
        (None, Some(l)) => (StepMode::AllOf, l),
        _ => {
            c.err(at.span().start, "invalid", format!("{what}: give exactly one of `any_of` or `all_of`"));
            return None;
        }
    };
    let roles = role_list(c, list, what);
    if list.is_empty() {
        c.err(at.span().start, "invalid", format!("{what}: names no role"));
    }
    if roles.is_empty() {
        return None;
    }
    let escalate_to = role_list(c, &s.escalate_to, what);
    if !rules.only_roles.is_empty() {
        for r in roles.iter().chain(&escalate_to) {
            if !rules.only_roles.contains(r) {
                let only: Vec<&str> = rules.only_roles.iter().map(|r| r.code()).collect();
                c.err(
                    at.span().start,
                    "invalid",
                    format!("{what}: role `{r}` may not decide this kind; only {} may (only_roles)", only.join(", ")),
                );
            }
        }
    }
    let sla = s.sla.as_ref().and_then(|x| minutes(c, x, what));
    if !escalate_to.is_empty() && s.sla.is_none() {
        c.err(at.span().start, "invalid", format!("{what}: `escalate_to` needs an `sla` after which to escalate"));
    }
    Some(StepSpec { roles, mode, sla_minutes: sla, escalate_to })
}

impl Policy {
    /// The kind a hold reason is put up for, if `[approvals.holds]` maps it.
    pub fn approval_kind_for(&self, r: HoldReason) -> Option<&str> {
        self.approvals.holds.get(&r).map(String::as_str)
    }

    /// Routes a request: checks the kind's requirements, then the first matching row of the
    /// decision table decides. A row whose condition fails to evaluate does not match (never
    /// approve on a doubt).
    pub fn route_approval(
        &self,
        draft: &ApprovalDraft,
        requester_roles: &[Role],
        facts: &OrderFacts,
        wh: &Warehouse,
        now: DateTime<Utc>,
    ) -> Result<Routing, ApprovalError> {
        let Some(kind) = self.approvals.kinds.get(&draft.kind) else {
            let known: Vec<&str> = self.approvals.kinds.keys().map(String::as_str).collect();
            return Err(ApprovalError::Invalid(vec![FieldError::new(
                "kind",
                format!("unknown approval kind `{}`; this policy knows {}", draft.kind, known.join(", ")),
            )]));
        };
        let blank = |x: &Option<String>| x.as_deref().is_none_or(|s| s.trim().is_empty());
        let mut missing = Vec::new();
        if kind.reason_required && blank(&draft.reason) {
            missing.push(FieldError::new(
                "reason",
                format!("is required for {}: say why the exception is needed", draft.kind),
            ));
        }
        if kind.cost_center_required && blank(&draft.cost_center) {
            missing.push(FieldError::new(
                "cost_center",
                format!("is required for {}: the cost center that pays for it", draft.kind),
            ));
        }
        if kind.amount_required && draft.amount.is_none() {
            missing.push(FieldError::new(
                "amount",
                format!("is required for {}: the cost to approve, with its currency", draft.kind),
            ));
        }
        if !missing.is_empty() {
            return Err(ApprovalError::Invalid(missing));
        }

        let vals = self.request_vals(draft, requester_roles, facts, wh);
        let d = self.derive(facts, wh, now);
        let scratch = Scratch::new(facts, wh, &d, &self.needs);
        let mut comp = Computed::new(facts, wh, now, &d, &self.needs);
        self.route_of(facts, &d, &mut comp, None);
        let mut ctx = Context::with_env(self.env.clone());
        schema::bind(&mut ctx, facts, wh, &d, &scratch, &comp);
        schema::bind_request(&mut ctx, &vals);
        for row in self.approvals.routes.iter().filter(|r| r.kind == draft.kind) {
            let matched = match &row.when {
                None => true,
                Some(e) => matches!(e.program.execute(&ctx), Ok(Value::Bool(true))),
            };
            if matched {
                return Ok(Routing {
                    policy: self.hash.clone(),
                    rule: row.id.clone(),
                    auto_approve: row.auto,
                    steps: row.steps.clone(),
                    expires_after_minutes: row.expires_after_minutes,
                    waives: kind.waives.clone(),
                });
            }
        }
        Err(ApprovalError::NoRoute(format!(
            "the dispatch policy has no approval route that matches this {} request; ask an ops manager to add an [[approvals.route]] row for it",
            draft.kind
        )))
    }

    fn request_vals(&self, draft: &ApprovalDraft, roles: &[Role], facts: &OrderFacts, wh: &Warehouse) -> RequestVals {
        let carrier = draft.carrier.clone().unwrap_or_default();
        let in_matrix = !carrier.is_empty() && {
            let choice = self.choose_carrier(facts, wh, &[]);
            choice.carrier.as_deref() == Some(carrier.as_str()) || choice.alternatives.contains(&carrier)
        };
        let (shipped_value, remainder_value) = match approval::split(facts, &draft.lines) {
            Ok((s, r)) if !draft.lines.is_empty() => {
                let v = |l: &[dispatch_core::Line]| l.iter().map(|x| f64::from(x.qty) * x.unit_value).sum::<f64>();
                (v(&s), v(&r))
            }
            _ => (0.0, 0.0),
        };
        RequestVals {
            kind: draft.kind.clone(),
            reason: draft.reason.clone().unwrap_or_default(),
            amount: draft.amount.unwrap_or(0.0),
            currency: draft.currency.clone().unwrap_or_default(),
            cost_center: draft.cost_center.clone().unwrap_or_default(),
            carrier,
            service: draft.service.map(|s| s.code().to_string()).unwrap_or_default(),
            carrier_in_matrix: in_matrix,
            shipped_value,
            remainder_value,
            by_policy: roles.is_empty(),
            requester_roles: roles.iter().map(|r| r.code().to_string()).collect(),
        }
    }
}
