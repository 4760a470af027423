//! dispatchd's dispatch policy: one TOML file of release and hold rules, cut-offs, priority
//! terms, a carrier matrix and the reason-code catalogue, with conditions in CEL (Common
//! Expression Language). A policy is compiled and checked as a whole when it is loaded —
//! syntax, unknown fields, type errors, unknown reason codes or carriers, over-size expressions
//! are refused with file, line and column — and evaluating it never panics: a rule that fails
//! at run time is decided by its `on_error`.
//!
//! The crate is pure: it reads the text it is given and nothing else. A compiled [`Policy`]
//! implements [`dispatch_core::Evaluator`], so the state machine runs it in place of the
//! built-in rules. [`Policy::default_policy`] is the embedded `policies/default.toml`, which
//! reproduces the built-in rules exactly.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, LazyLock};

use cel::{Context, Env, Value};
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;
use dispatch_core::priority::PriorityTerm;
use dispatch_core::readiness::{
    CarrierChoice, CheckResult, EvalInputs, Evaluation, RuleHit, customs_of, required_documents,
};
use dispatch_core::{CheckName, Evaluator, HoldReason, OrderFacts, OrderState, ServiceLevel, Warehouse};
use sha2::{Digest, Sha256};
use toml::Spanned;

pub mod approvals;
pub mod carriers;
pub mod check;
pub mod density;
pub mod error;
pub mod model;
pub mod native;
pub mod replay;
pub mod risk;
pub mod schema;
pub mod template;

pub use carriers::{BookingRoute, CarrierMatrix, booking_route, choose_carrier};
pub use error::{PolicyError, PolicyErrors};
pub use model::OnError;
pub use replay::{
    Collector, Parsed, PendingDecision, RecordedDecision, ReplayReport, Router, StoredFacts, Tally, parse_raw, replay,
};
pub use risk::{RiskQuery, RiskScore, RiskSource};

use check::{MAX_EXPR_BYTES, MAX_NODES, Ty};
use error::{Locator, suggest};
use native::V;
use schema::{Computed, Derived, Needs, Scratch};

/// The embedded default policy: the built-in readiness rules and priority, as a policy file.
pub const DEFAULT_POLICY: &str = include_str!("../policies/default.toml");
pub const DEFAULT_POLICY_FILE: &str = "policies/default.toml";

/// A compiled expression with what it reads.
pub struct Expr {
    pub src: String,
    program: cel::Program,
    /// The fast path, when the expression is within what it covers.
    native: Option<native::Node>,
    pub reads: Vec<String>,
    pub time_dependent: bool,
    /// It reads `risk`: skipped when no model scored the order (see [`risk`]).
    pub reads_risk: bool,
}

enum Part {
    Text(String),
    Expr(Box<Expr>, Option<usize>),
}

/// A compiled message template.
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// Holds when the condition is true.
    Hold,
    /// Holds when the requirement is false.
    Release,
}

impl RuleKind {
    pub fn code(self) -> &'static str {
        match self {
            RuleKind::Hold => "hold",
            RuleKind::Release => "release",
        }
    }
}

pub struct Rule {
    pub id: String,
    pub kind: RuleKind,
    pub cond: Expr,
    pub reason: HoldReason,
    message: Template,
    pub check: Option<CheckName>,
    pub on_error: OnError,
    /// Programs reading each value the rule saw, for the explanation.
    seen: Vec<(String, cel::Program)>,
}

pub struct Term {
    pub id: String,
    pub expr: Expr,
    pub weight: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    why: Option<Template>,
}

/// A compiled policy. Cheap to share (`Arc`), immutable, `Send + Sync`.
pub struct Policy {
    pub name: String,
    pub description: String,
    /// `sha256:<hex>` of the file's bytes: the policy's version.
    pub hash: String,
    pub file: String,
    pub source: String,
    env: Arc<Env>,
    pub rules: Vec<Rule>,
    checks: BTreeMap<CheckName, Template>,
    /// Checks the policy reports on, in `CheckName` order.
    check_order: Vec<CheckName>,
    cutoffs: HashMap<(String, ServiceLevel), (NaiveTime, Option<Tz>)>,
    holidays: HashMap<String, BTreeSet<NaiveDate>>,
    pub priority_max: i32,
    pub refresh_horizon_hours: u32,
    pub terms: Vec<Term>,
    pub carriers: CarrierMatrix,
    pub exceptions: BTreeMap<HoldReason, (String, String)>,
    /// `[exceptions.<code>] overridable`, where the file sets it.
    pub overridable: BTreeMap<HoldReason, bool>,
    /// Thresholds of the scheduled monitors.
    pub monitors: dispatch_core::monitor::Thresholds,
    /// Approval kinds, mapped holds and the routing decision table.
    pub approvals: approvals::Approvals,
    /// Costs and assumptions of the advice routes.
    pub advice: model::AdviceDef,
    /// Derived values some expression reads (the others are not computed).
    needs: Needs,
    /// Route memberships `route.density` is counted from; refreshed by the server.
    pub densities: density::RouteDensities,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").field("name", &self.name).field("hash", &self.hash).finish_non_exhaustive()
    }
}

fn env() -> Arc<Env> {
    static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
        let mut env = Env::stdlib();
        // Declaring the standard extensions on a fresh stdlib cannot clash; if a future CEL
        // version did, expressions using them would be refused at load, not panic.
        let _ = env.add_extension(cel::extensions::math);
        let _ = env.add_extension(cel::extensions::strings);
        let _ = env.add_extension(cel::extensions::lists);
        Arc::new(env)
    });
    ENV.clone()
}

/// Whether compiled expressions must give a bool, a number or anything.
#[derive(Clone, Copy, PartialEq)]
enum Want {
    Bool,
    Number,
    Any,
}

struct Compiler<'a> {
    loc: Locator<'a>,
    env: Arc<Env>,
    errors: Vec<PolicyError>,
    /// Every context path any expression reads.
    reads: BTreeSet<String>,
}

impl Compiler<'_> {
    fn err(&mut self, offset: usize, kind: &'static str, msg: impl Into<String>) {
        let e = self.loc.error(offset, kind, msg);
        self.errors.push(e);
    }

    /// Compiles the CEL text `src`, which sits in the TOML string value at `span`, starting
    /// `base` bytes into that value. `what` names it in messages.
    fn expr_at(
        &mut self,
        src: &str,
        span: &std::ops::Range<usize>,
        base: usize,
        what: &str,
        want: Want,
    ) -> Option<Expr> {
        let at = |c: &Self, byte_in_src: usize| c.loc.inside(span, base + byte_in_src);
        if src.len() > MAX_EXPR_BYTES {
            let o = at(self, 0);
            self.err(
                o,
                "too_large",
                format!(
                    "{what}: the expression is {} bytes, over the limit of {MAX_EXPR_BYTES}; split it into several rules",
                    src.len()
                ),
            );
            return None;
        }
        let program = match self.env.compile(src) {
            Ok(p) => p,
            Err(errs) => {
                for e in errs.errors {
                    let byte = byte_of_line_col(src, e.pos.0, e.pos.1);
                    let o = at(self, byte);
                    self.err(o, "syntax", format!("{what}: CEL syntax error: {}", e.msg));
                }
                return None;
            }
        };
        let (ty, checked) = check::check(program.expression());
        self.reads.extend(checked.reads.iter().cloned());
        let char_to_byte = |c: u32| src.char_indices().nth(c as usize).map_or(src.len(), |(b, _)| b);
        let mut ok = true;
        for f in &checked.findings {
            let byte = program.source_info().offset_for(f.node).map_or(0, |(s, _)| char_to_byte(s));
            let o = at(self, byte);
            self.err(o, f.kind, format!("{what}: {}", f.message));
            ok = false;
        }
        if checked.nodes > MAX_NODES {
            let o = at(self, 0);
            self.err(
                o,
                "too_large",
                format!(
                    "{what}: the expression has {} parts, over the limit of {MAX_NODES}; simplify or split it",
                    checked.nodes
                ),
            );
            ok = false;
        }
        if ok {
            let bad = match want {
                Want::Bool => !matches!(ty, Ty::Bool | Ty::Dyn),
                Want::Number => !matches!(ty, Ty::Int | Ty::Double | Ty::Dyn),
                Want::Any => false,
            };
            if bad {
                let need = if want == Want::Bool { "a bool (true or false)" } else { "a number" };
                let o = at(self, 0);
                self.err(o, "type", format!("{what}: must give {need}, but gives a {}", ty.name()));
                ok = false;
            }
        }
        ok.then(|| Expr {
            src: src.to_string(),
            native: native::compile(program.expression()),
            program,
            reads_risk: checked.reads.iter().any(|r| risk::is_risk_path(r)),
            reads: checked.reads,
            time_dependent: checked.time_dependent,
        })
    }

    fn expr(&mut self, s: &Spanned<String>, what: &str, want: Want) -> Option<Expr> {
        let span = s.span();
        self.expr_at(s.get_ref(), &span, 0, what, want)
    }

    fn template(&mut self, s: &Spanned<String>, what: &str) -> Option<Template> {
        let span = s.span();
        let parts = match template::split(s.get_ref()) {
            Ok(p) => p,
            Err((off, msg)) => {
                let o = self.loc.inside(&span, off);
                self.err(o, "syntax", format!("{what}: {msg}"));
                return None;
            }
        };
        let mut out = Vec::new();
        let mut ok = true;
        for p in parts {
            match p {
                template::RawPart::Text(t) => out.push(Part::Text(t)),
                template::RawPart::Expr { src, offset, decimals } => {
                    match self.expr_at(&src, &span, offset, what, Want::Any) {
                        Some(e) => out.push(Part::Expr(Box::new(e), decimals)),
                        None => ok = false,
                    }
                }
            }
        }
        ok.then_some(Template { parts: out })
    }

    fn program(&mut self, src: &str) -> Option<cel::Program> {
        self.env.compile(src).ok()
    }
}

/// Byte offset of a 1-based line and 1-based column (as the CEL parser reports them).
fn byte_of_line_col(src: &str, line: isize, col: isize) -> usize {
    let mut offset = 0usize;
    for (i, l) in src.split_inclusive('\n').enumerate() {
        if i as isize + 1 == line {
            let col = (col - 1).max(0) as usize;
            return offset + l.char_indices().nth(col).map_or(l.len(), |(b, _)| b);
        }
        offset += l.len();
    }
    src.len().min(offset)
}

fn parse_time(s: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(s, "%H:%M").ok()
}

impl Policy {
    /// The embedded default policy.
    pub fn default_policy() -> Arc<Policy> {
        static DEFAULT: LazyLock<Arc<Policy>> = LazyLock::new(|| {
            // The embedded file is part of the program; a test compiles it, so this cannot fail
            // in a build that passed its tests.
            #[allow(clippy::expect_used)]
            Arc::new(Policy::compile(DEFAULT_POLICY, DEFAULT_POLICY_FILE, None).expect("embedded default policy"))
        });
        DEFAULT.clone()
    }

    /// Compiles a policy file. `warehouses`, when given, are the configured warehouse codes:
    /// cut-offs, holidays and lanes naming another warehouse are refused.
    pub fn compile(source: &str, file: &str, warehouses: Option<&[String]>) -> Result<Policy, PolicyErrors> {
        let loc = Locator { file, source };
        let parsed: model::PolicyFile = match toml::from_str(source) {
            Ok(p) => p,
            Err(e) => {
                let offset = e.span().map_or(0, |s| s.start);
                let msg = e.message().trim().to_string();
                return Err(PolicyErrors { errors: vec![loc.error(offset, "toml", msg)] });
            }
        };
        let mut c = Compiler { loc, env: env(), errors: Vec::new(), reads: BTreeSet::new() };

        // The reason-code catalogue first: rules are checked against it.
        let mut exceptions = BTreeMap::new();
        let mut overridable = BTreeMap::new();
        for (code, def) in &parsed.exceptions {
            match HoldReason::from_code(code.get_ref()) {
                Some(r) => {
                    exceptions.insert(r, (def.title.clone(), def.text.clone()));
                    if let Some(o) = def.overridable {
                        overridable.insert(r, o);
                    }
                }
                None => c.err(code.span().start, "unknown_reason", unknown_reason(code.get_ref())),
            }
        }

        let mut rules = Vec::new();
        let mut ids = BTreeSet::new();
        for (kind, defs) in [(RuleKind::Release, &parsed.release), (RuleKind::Hold, &parsed.hold)] {
            for d in defs {
                let id = d.id.get_ref().clone();
                if !valid_id(&id) {
                    c.err(d.id.span().start, "invalid", format!("rule id `{id}` must be letters, digits, `_` or `-`"));
                }
                if !ids.insert(id.clone()) {
                    c.err(
                        d.id.span().start,
                        "invalid",
                        format!("rule id `{id}` is used twice; ids name rules in explanations and must be unique"),
                    );
                }
                let what = format!("{} rule `{id}`", kind.code());
                let cond_src = match (kind, &d.when, &d.require) {
                    (RuleKind::Hold, Some(w), None) => Some(w),
                    (RuleKind::Release, None, Some(r)) => Some(r),
                    (RuleKind::Hold, _, _) => {
                        c.err(
                            d.id.span().start,
                            "invalid",
                            format!(
                                "{what} needs `when = \"...\"` (the condition that holds the order) and no `require`"
                            ),
                        );
                        None
                    }
                    (RuleKind::Release, _, _) => {
                        c.err(
                            d.id.span().start,
                            "invalid",
                            format!("{what} needs `require = \"...\"` (what must be true to release) and no `when`"),
                        );
                        None
                    }
                };
                let cond = cond_src.and_then(|s| c.expr(s, &what, Want::Bool));
                if let (Some(e), Some(src)) = (&cond, cond_src) {
                    reads_no_request(&mut c, e, src, &what);
                }
                let reason = match HoldReason::from_code(d.reason.get_ref()) {
                    Some(r) => {
                        if !parsed.exceptions.is_empty() && !exceptions.contains_key(&r) {
                            c.err(
                                d.reason.span().start,
                                "unknown_reason",
                                format!("{what}: reason `{r}` has no entry in [exceptions]; add [exceptions.{r}] with a title and text"),
                            );
                        }
                        Some(r)
                    }
                    None => {
                        c.err(
                            d.reason.span().start,
                            "unknown_reason",
                            format!("{what}: {}", unknown_reason(d.reason.get_ref())),
                        );
                        None
                    }
                };
                let check = match &d.check {
                    None => Some(None),
                    Some(s) => match CheckName::from_code(s.get_ref()) {
                        Some(n) => Some(Some(n)),
                        None => {
                            let all: Vec<&str> = CheckName::ALL.iter().map(|n| n.code()).collect();
                            c.err(
                                s.span().start,
                                "invalid",
                                format!("{what}: unknown check `{}`; checks are {}", s.get_ref(), all.join(", ")),
                            );
                            None
                        }
                    },
                };
                let message = c.template(&d.message, &format!("{what}, message"));
                if let (Some(cond), Some(reason), Some(check), Some(message)) = (cond, reason, check, message) {
                    let seen = cond.reads.iter().filter_map(|p| c.program(p).map(|prog| (p.clone(), prog))).collect();
                    rules.push(Rule { id, kind, cond, reason, message, check, on_error: d.on_error, seen });
                }
            }
        }

        let mut checks = BTreeMap::new();
        for (name, def) in &parsed.checks {
            match CheckName::from_code(name.get_ref()) {
                Some(n) => {
                    if let Some(t) = c.template(&def.passed, &format!("check `{n}`, passed")) {
                        checks.insert(n, t);
                    }
                }
                None => {
                    let all: Vec<&str> = CheckName::ALL.iter().map(|n| n.code()).collect();
                    c.err(
                        name.span().start,
                        "invalid",
                        format!("unknown check `{}`; checks are {}", name.get_ref(), all.join(", ")),
                    );
                }
            }
        }
        let used: BTreeSet<CheckName> = rules.iter().filter_map(|r| r.check).chain(checks.keys().copied()).collect();
        let check_order: Vec<CheckName> = CheckName::ALL.iter().copied().filter(|n| used.contains(n)).collect();

        let known_wh = |c: &mut Compiler<'_>, s: &Spanned<String>| {
            if let Some(list) = warehouses
                && !list.iter().any(|w| w == s.get_ref())
            {
                let hint = suggest(s.get_ref(), list.iter().map(String::as_str))
                    .map(|x| format!(" Did you mean `{x}`?"))
                    .unwrap_or_default();
                c.err(
                    s.span().start,
                    "invalid",
                    format!("unknown warehouse `{}`; configured: {}.{hint}", s.get_ref(), list.join(", ")),
                );
            }
        };
        let mut cutoffs = HashMap::new();
        for o in &parsed.cutoffs.overrides {
            known_wh(&mut c, &o.warehouse);
            let level = ServiceLevel::from_code(o.service_level.get_ref());
            if level.is_none() {
                c.err(
                    o.service_level.span().start,
                    "invalid",
                    format!(
                        "unknown service level `{}`; use same_day, next_day, express, standard or economy",
                        o.service_level.get_ref()
                    ),
                );
            }
            let time = parse_time(o.time.get_ref());
            if time.is_none() {
                c.err(
                    o.time.span().start,
                    "invalid",
                    format!("`{}` is not a time of day in HH:MM form, e.g. 17:00", o.time.get_ref()),
                );
            }
            let tz = match &o.timezone {
                None => Some(None),
                Some(z) => match z.get_ref().parse::<Tz>() {
                    Ok(tz) => Some(Some(tz)),
                    Err(_) => {
                        c.err(
                            z.span().start,
                            "invalid",
                            format!("`{}` is not an IANA time zone such as Europe/Amsterdam", z.get_ref()),
                        );
                        None
                    }
                },
            };
            if let (Some(level), Some(time), Some(tz)) = (level, time, tz)
                && cutoffs.insert((o.warehouse.get_ref().clone(), level), (time, tz)).is_some()
            {
                c.err(
                    o.warehouse.span().start,
                    "invalid",
                    format!("cut-off for {} {level} is given twice", o.warehouse.get_ref()),
                );
            }
        }
        let mut holidays: HashMap<String, BTreeSet<NaiveDate>> = HashMap::new();
        for (wh, dates) in &parsed.cutoffs.holidays {
            known_wh(&mut c, wh);
            for d in dates {
                match NaiveDate::parse_from_str(d.get_ref(), "%Y-%m-%d") {
                    Ok(date) => {
                        holidays.entry(wh.get_ref().clone()).or_default().insert(date);
                    }
                    Err(_) => {
                        c.err(d.span().start, "invalid", format!("`{}` is not a date in YYYY-MM-DD form", d.get_ref()))
                    }
                }
            }
        }

        let mut terms = Vec::new();
        let mut term_ids = BTreeSet::new();
        for t in &parsed.priority.terms {
            let id = t.id.get_ref().clone();
            if !term_ids.insert(id.clone()) {
                c.err(t.id.span().start, "invalid", format!("priority term `{id}` is defined twice"));
            }
            if !t.weight.is_finite() {
                c.err(t.id.span().start, "invalid", format!("priority term `{id}`: weight must be a finite number"));
            }
            let what = format!("priority term `{id}`");
            let expr = c.expr(&t.expr, &what, Want::Number);
            if let Some(e) = &expr {
                reads_no_request(&mut c, e, &t.expr, &what);
            }
            let why = match &t.why {
                Some(w) => c.template(w, &format!("{what}, why")).map(Some),
                None => Some(None),
            };
            if let (Some(expr), Some(why)) = (expr, why) {
                terms.push(Term { id, expr, weight: t.weight, min: t.min, max: t.max, why });
            }
        }
        if parsed.priority.max <= 0 {
            c.err(0, "invalid", "[priority] max must be above 0");
        }

        let cd = &parsed.carriers;
        let known: Vec<String> = cd.known.iter().map(|k| k.get_ref().clone()).collect();
        let mut lanes = Vec::new();
        let mut lane_ids = BTreeSet::new();
        for l in &cd.lanes {
            if !lane_ids.insert(l.id.get_ref().clone()) {
                c.err(l.id.span().start, "invalid", format!("lane `{}` is defined twice", l.id.get_ref()));
            }
            let check_carrier = |c: &mut Compiler<'_>, s: &Spanned<String>| {
                if !known.iter().any(|k| k == s.get_ref()) {
                    let hint = suggest(s.get_ref(), known.iter().map(String::as_str))
                        .map(|x| format!(" Did you mean `{x}`?"))
                        .unwrap_or_default();
                    c.err(
                        s.span().start,
                        "unknown_carrier",
                        format!(
                            "lane `{}`: unknown carrier `{}`; add it to [carriers] known or use one of: {}.{hint}",
                            l.id.get_ref(),
                            s.get_ref(),
                            known.join(", ")
                        ),
                    );
                }
            };
            for s in l.carriers.iter().chain(&l.fallbacks) {
                check_carrier(&mut c, s);
            }
            if l.carriers.is_empty() {
                c.err(l.id.span().start, "invalid", format!("lane `{}` allows no carrier", l.id.get_ref()));
            }
            let mut destinations = Vec::new();
            for d in &l.destinations {
                match carriers::Dest::parse(d.get_ref()) {
                    Some(x) => destinations.push(x),
                    None => c.err(d.span().start, "invalid", format!("lane `{}`: destination `{}` must be an ISO country code (NL), `domestic`, `eu`, `export` or `*`", l.id.get_ref(), d.get_ref())),
                }
            }
            for w in &l.warehouses {
                known_wh(&mut c, w);
            }
            lanes.push(carriers::Lane {
                id: l.id.get_ref().clone(),
                destinations,
                warehouses: l.warehouses.iter().map(|w| w.get_ref().clone()).collect(),
                modes: l.modes.clone(),
                max_weight_kg: l.max_weight_kg,
                hazmat: l.hazmat,
                carriers: l.carriers.iter().map(|x| x.get_ref().clone()).collect(),
                fallbacks: l.fallbacks.iter().map(|x| x.get_ref().clone()).collect(),
                auto_fallback: l.auto_fallback.unwrap_or(cd.auto_fallback),
            });
        }

        if let Err(m) = parsed.monitors.check() {
            c.err(0, "invalid", format!("[monitors] {m}"));
        }
        if let Err(m) = parsed.advice.check() {
            c.err(0, "invalid", format!("[advice] {m}"));
        }
        let approvals = approvals::compile(&mut c, &parsed.approvals);

        if !c.errors.is_empty() {
            c.errors.sort_by_key(|e| (e.line, e.column));
            c.errors.dedup();
            return Err(PolicyErrors { errors: c.errors });
        }
        Ok(Policy {
            name: parsed.policy.name,
            description: parsed.policy.description,
            hash: format!("sha256:{}", hex::encode(Sha256::digest(source.as_bytes()))),
            file: file.to_string(),
            source: source.to_string(),
            env: c.env,
            rules,
            checks,
            check_order,
            cutoffs,
            holidays,
            priority_max: parsed.priority.max,
            refresh_horizon_hours: parsed.priority.refresh_horizon_hours,
            terms,
            carriers: CarrierMatrix {
                known,
                hold_when_none: cd.hold_when_none,
                honour_preference: cd.honour_preference,
                lanes,
            },
            exceptions,
            overridable,
            monitors: parsed.monitors,
            advice: parsed.advice,
            approvals,
            needs: Needs::from_reads(c.reads.iter().map(String::as_str)),
            densities: density::RouteDensities::default(),
        })
    }

    /// How many of the policy's expressions (conditions, terms, placeholders) run on the fast
    /// path, and how many there are.
    pub fn fast_path_coverage(&self) -> (usize, usize) {
        let templates = self
            .rules
            .iter()
            .map(|r| &r.message)
            .chain(self.checks.values())
            .chain(self.terms.iter().filter_map(|t| t.why.as_ref()));
        let placeholders = templates.flat_map(|t| t.parts.iter()).filter_map(|p| match p {
            Part::Expr(e, _) => Some(&**e),
            Part::Text(_) => None,
        });
        let all: Vec<&Expr> =
            self.rules.iter().map(|r| &r.cond).chain(self.terms.iter().map(|t| &t.expr)).chain(placeholders).collect();
        (all.iter().filter(|e| e.native.is_some()).count(), all.len())
    }

    /// Whether any expression reads `route.*` (so the route density must be kept fresh).
    pub fn reads_route(&self) -> bool {
        self.needs.route
    }

    /// Whether any priority term depends on the time (and so needs the periodic refresh).
    pub fn time_dependent_priority(&self) -> bool {
        self.terms.iter().any(|t| t.expr.time_dependent)
    }

    /// Whether any expression reads `risk` (the late-departure model's score).
    pub fn reads_risk(&self) -> bool {
        self.needs.risk
    }

    /// The inputs derived before any rule runs: customs, documents, ship-by date, cut-off.
    pub fn derive(&self, facts: &OrderFacts, wh: &Warehouse, now: DateTime<Utc>) -> Derived {
        let customs = customs_of(&wh.country, &facts.ship_to.country);
        let required = required_documents(facts, customs);
        let over = self.cutoffs.get(&(wh.code.clone(), facts.service_level));
        let cutoff = over.map_or_else(|| wh.cutoff(facts.service_level), |(t, _)| *t);
        let holidays = self.holidays.get(&wh.code);
        let target = facts.promised_date - Duration::days(facts.service_level.transit_days());
        let ship_by = match holidays {
            None => wh.ship_day_on_or_before(target),
            Some(h) => {
                let mut d = target;
                let mut found = None;
                for _ in 0..60 {
                    if wh.ships_on(d) && !h.contains(&d) {
                        found = Some(d);
                        break;
                    }
                    d = d.pred_opt().unwrap_or(d);
                }
                found.unwrap_or(target)
            }
        };
        let latest_departure = match over {
            Some((_, Some(tz))) if *tz != wh.timezone => {
                let mut w = wh.clone();
                w.timezone = *tz;
                w.local_instant(ship_by, cutoff)
            }
            _ => wh.local_instant(ship_by, cutoff),
        };
        let local_now = now.with_timezone(&wh.timezone);
        let is_holiday = holidays.is_some_and(|h| h.contains(&local_now.date_naive()));
        Derived { customs, required_documents: required, ship_by, cutoff, latest_departure, local_now, is_holiday }
    }

    /// Evaluates every rule, the priority and the carrier for one order. Never panics; a rule
    /// that cannot be evaluated is decided by its `on_error` and reported in `rules`.
    pub fn evaluate(&self, facts: &OrderFacts, wh: &Warehouse, now: DateTime<Utc>) -> Evaluation {
        self.evaluate_with(facts, wh, now, true, None)
    }

    /// [`Policy::evaluate`] with a late-departure model bound as `risk` (see [`risk`]); `None`
    /// is the same as no model.
    pub fn evaluate_scored(
        &self,
        facts: &OrderFacts,
        wh: &Warehouse,
        now: DateTime<Utc>,
        risk: Option<&dyn RiskSource>,
    ) -> Evaluation {
        self.evaluate_with(facts, wh, now, true, risk)
    }

    /// [`Policy::evaluate`] with the CEL interpreter only (no fast path): the reference the
    /// fast path is tested against.
    pub fn evaluate_interpreted(&self, facts: &OrderFacts, wh: &Warehouse, now: DateTime<Utc>) -> Evaluation {
        self.evaluate_with(facts, wh, now, false, None)
    }

    /// [`Policy::evaluate_scored`] with the CEL interpreter only.
    pub fn evaluate_scored_interpreted(
        &self,
        facts: &OrderFacts,
        wh: &Warehouse,
        now: DateTime<Utc>,
        risk: Option<&dyn RiskSource>,
    ) -> Evaluation {
        self.evaluate_with(facts, wh, now, false, risk)
    }

    /// [`Policy::evaluate`] with the route density given instead of looked up: a replay
    /// evaluates a recorded decision with the density it saw.
    pub fn evaluate_at_density(
        &self,
        facts: &OrderFacts,
        wh: &Warehouse,
        now: DateTime<Utc>,
        density: u32,
    ) -> Evaluation {
        self.evaluate_full(facts, wh, now, true, None, Some(density))
    }

    fn evaluate_with(
        &self,
        facts: &OrderFacts,
        wh: &Warehouse,
        now: DateTime<Utc>,
        fast: bool,
        risk: Option<&dyn RiskSource>,
    ) -> Evaluation {
        self.evaluate_full(facts, wh, now, fast, risk, None)
    }

    /// Fills `route.*` when the policy reads it: the key from the order and its latest
    /// departure, the density from `density` or the table.
    pub(crate) fn route_of(
        &self,
        facts: &OrderFacts,
        d: &Derived,
        comp: &mut Computed,
        density: Option<u32>,
    ) -> Option<dispatch_core::readiness::RouteInput> {
        if !self.needs.route {
            return None;
        }
        let area = dispatch_core::route::postcode_area(&facts.ship_to.country, &facts.ship_to.postcode);
        let wave = dispatch_core::route::wave(&facts.warehouse, d.latest_departure);
        let density = density
            .unwrap_or_else(|| self.densities.density(&format!("{area}|{wave}"), &facts.source, &facts.external_id));
        comp.route_area.clone_from(&area);
        comp.route_wave.clone_from(&wave);
        comp.route_density = i64::from(density);
        Some(dispatch_core::readiness::RouteInput { area, wave, density })
    }

    fn evaluate_full(
        &self,
        facts: &OrderFacts,
        wh: &Warehouse,
        now: DateTime<Utc>,
        fast: bool,
        risk_source: Option<&dyn RiskSource>,
        density: Option<u32>,
    ) -> Evaluation {
        let d = self.derive(facts, wh, now);
        let scratch = Scratch::new(facts, wh, &d, &self.needs);
        let mut comp = Computed::new(facts, wh, now, &d, &self.needs);
        let route = self.route_of(facts, &d, &mut comp, density);
        let comp = comp;
        // The carrier first: the model scores the order with the carrier it will be booked with.
        let carrier = choose_carrier(&self.carriers, facts, wh, &[]);
        let query = risk::RiskQuery {
            facts,
            warehouse: wh,
            now,
            carrier: carrier.carrier.as_deref().or(facts.carrier_preference.as_deref()),
            latest_departure: d.latest_departure,
        };
        // Asked only when some expression reads `risk`: a policy without risk rules costs nothing.
        let source = risk_source.filter(|_| self.needs.risk);
        let risk_vals: Option<risk::RiskVals> = source.and_then(|src| {
            src.score(&query).map(|sc| risk::RiskVals {
                late_departure: sc.late_departure,
                model_version: sc.model_version,
                factors: if self.needs.risk_factors { src.factors(&query, risk::TOP_FACTORS) } else { Vec::new() },
            })
        });
        let slots = native::slots(facts, wh, &d, &scratch, &comp, risk_vals.as_ref());
        let mut ev = Ev {
            policy: self,
            fast,
            slots: &slots,
            cel: None,
            facts,
            wh,
            d: &d,
            scratch: &scratch,
            comp: &comp,
            risk: risk_vals.as_ref(),
        };
        // Rules and terms that read `risk` and changed the decision.
        let mut risk_used: Vec<String> = Vec::new();

        let mut hits: Vec<RuleHit> = Vec::new();
        let mut reasons: Vec<HoldReason> = Vec::new();
        let mut failing: BTreeMap<CheckName, Vec<(String, HoldReason, String)>> = BTreeMap::new();
        for rule in &self.rules {
            if rule.cond.reads_risk && ev.risk.is_none() {
                // No model: a risk rule does not fire (documented in `risk`).
                continue;
            }
            let fired = ev.cond(&rule.cond).map(|b| if rule.kind == RuleKind::Hold { b } else { !b });
            let (reason, error) = match fired {
                Ok(false) => continue,
                Ok(true) => (Some(rule.reason), None),
                Err(e) => match rule.on_error {
                    OnError::Hold => (Some(HoldReason::PolicyError), Some(e)),
                    OnError::Fire => (Some(rule.reason), Some(e)),
                    OnError::Ignore => (None, Some(e)),
                },
            };
            let message = match (&error, reason) {
                (Some(e), Some(HoldReason::PolicyError)) => {
                    format!(
                        "rule {} could not be evaluated ({e}); held until the policy or the order is fixed",
                        rule.id
                    )
                }
                (Some(e), None) => {
                    format!("rule {} could not be evaluated ({e}); ignored as its on_error says", rule.id)
                }
                _ => ev.render(&rule.message),
            };
            if let Some(r) = reason {
                if rule.cond.reads_risk && error.is_none() {
                    risk_used.push(rule.id.clone());
                }
                reasons.push(r);
                if let Some(chk) = rule.check {
                    failing.entry(chk).or_default().push((rule.id.clone(), r, message.clone()));
                }
            }
            let seen = rule.seen.iter().map(|(path, p)| (path.clone(), ev.seen(path, p))).collect();
            hits.push(RuleHit { rule: rule.id.clone(), kind: rule.kind.code().into(), reason, message, seen, error });
        }

        let checks: Vec<CheckResult> = self
            .check_order
            .iter()
            .map(|chk| match failing.get_mut(chk) {
                Some(list) if !list.is_empty() => {
                    // Independent of the order of rules in the file: by rule id.
                    list.sort_by(|a, b| a.0.cmp(&b.0));
                    let reason = list.iter().map(|x| x.1).min();
                    let detail: Vec<&str> = list.iter().map(|x| x.2.as_str()).collect();
                    CheckResult { check: *chk, passed: false, reason, detail: detail.join("; ") }
                }
                _ => CheckResult {
                    check: *chk,
                    passed: true,
                    reason: None,
                    detail: self.checks.get(chk).map_or_else(|| "passed".to_string(), |t| ev.render(t)),
                },
            })
            .collect();

        if carrier.carrier.is_none() && self.carriers.hold_when_none {
            reasons.push(HoldReason::CarrierUnavailable);
            hits.push(RuleHit {
                rule: "carriers".into(),
                kind: "carrier".into(),
                reason: Some(HoldReason::CarrierUnavailable),
                message: carrier.reason.clone(),
                seen: BTreeMap::new(),
                error: None,
            });
        }

        let mut priority_terms = Vec::with_capacity(self.terms.len());
        for t in &self.terms {
            if t.expr.reads_risk && ev.risk.is_none() {
                // No model: the term is left out, so the priority is as if it were not there.
                continue;
            }
            let (points, why) = match ev.num(&t.expr) {
                Ok(x) => {
                    let mut p = x * t.weight;
                    if let Some(lo) = t.min {
                        p = p.max(lo);
                    }
                    if let Some(hi) = t.max {
                        p = p.min(hi);
                    }
                    let why = t.why.as_ref().map_or_else(|| format!("{x}"), |w| ev.render(w));
                    (p as i32, why)
                }
                Err(e) => (0, format!("error: {e}; counted 0")),
            };
            if why.starts_with("error: ") {
                hits.push(RuleHit {
                    rule: t.id.clone(),
                    kind: "priority".into(),
                    reason: None,
                    message: why.clone(),
                    seen: BTreeMap::new(),
                    error: Some(why.clone()),
                });
            }
            if t.expr.reads_risk && points != 0 {
                risk_used.push(t.id.clone());
            }
            priority_terms.push(PriorityTerm { term: t.id.clone(), points, why });
        }
        let total: i64 = priority_terms.iter().map(|t| i64::from(t.points)).sum();
        let priority = total.clamp(0, i64::from(self.priority_max)) as i32;

        drop(ev);
        drop(slots);
        drop(scratch);
        // The record of what the model contributed, only when it changed the decision; the
        // explanations are computed here if no expression needed them already.
        let risk_note = match (risk_vals, source) {
            (Some(v), Some(src)) if !risk_used.is_empty() => Some(dispatch_core::risk::RiskNote {
                model_version: v.model_version,
                late_departure: v.late_departure,
                used_by: risk_used,
                factors: if v.factors.is_empty() { src.factors(&query, risk::TOP_FACTORS) } else { v.factors },
            }),
            _ => None,
        };
        reasons.sort();
        reasons.dedup();
        let outcome = if reasons.is_empty() { OrderState::Released } else { OrderState::OnHold };
        Evaluation {
            outcome,
            hold_reasons: reasons,
            checks,
            priority,
            priority_terms,
            inputs: EvalInputs {
                now,
                warehouse_local_now: now.with_timezone(&wh.timezone).to_rfc3339(),
                timezone: wh.timezone.name().to_string(),
                ship_by: d.ship_by,
                cutoff: d.cutoff.format("%H:%M").to_string(),
                latest_departure: d.latest_departure,
                customs: d.customs,
                required_documents: d.required_documents,
                route,
            },
            policy: self.hash.clone(),
            rules: hits,
            carrier: Some(carrier),
            risk: risk_note,
            scored: None,
        }
    }

    /// The carrier for an order, skipping carriers that are `unavailable` right now.
    pub fn choose_carrier(&self, facts: &OrderFacts, wh: &Warehouse, unavailable: &[&str]) -> CarrierChoice {
        choose_carrier(&self.carriers, facts, wh, unavailable)
    }

    /// The carriers the booking worker may try for an order; `None` when no lane takes it.
    pub fn booking_route(&self, facts: &OrderFacts, wh: &Warehouse) -> Option<BookingRoute> {
        booking_route(&self.carriers, facts, wh)
    }

    /// Whether a person with `override_holds` may lift this hold: the catalogue's
    /// `overridable`, else the built-in default (soft holds yes, hard blocks no).
    pub fn overridable(&self, r: HoldReason) -> bool {
        self.overridable.get(&r).copied().unwrap_or_else(|| dispatch_core::overrides::default_overridable(r))
    }

    /// Human title and text of a reason code from the catalogue.
    pub fn exception_text(&self, r: HoldReason) -> Option<&(String, String)> {
        self.exceptions.get(&r)
    }
}

impl Evaluator for Policy {
    fn evaluate(&self, facts: &OrderFacts, warehouse: &Warehouse, now: DateTime<Utc>) -> Evaluation {
        Policy::evaluate(self, facts, warehouse, now)
    }

    fn policy_id(&self) -> String {
        self.hash.clone()
    }

    fn approval_for_hold(&self, reason: HoldReason) -> Option<String> {
        self.approval_kind_for(reason).map(str::to_string)
    }

    fn overridable(&self, reason: HoldReason) -> bool {
        Policy::overridable(self, reason)
    }

    fn route_approval(
        &self,
        draft: &dispatch_core::approval::ApprovalDraft,
        requester_roles: &[dispatch_core::Role],
        facts: &OrderFacts,
        warehouse: &Warehouse,
        now: DateTime<Utc>,
    ) -> Result<dispatch_core::approval::Routing, dispatch_core::approval::ApprovalError> {
        Policy::route_approval(self, draft, requester_roles, facts, warehouse, now)
    }
}

/// `request` describes an approval request: only approval routes can read it.
fn reads_no_request(c: &mut Compiler<'_>, e: &Expr, src: &Spanned<String>, what: &str) {
    if e.reads.iter().any(|r| r == "request" || r.starts_with("request.")) {
        let span = src.span();
        let o = c.loc.inside(&span, 0);
        c.err(o, "unknown_field", format!("{what}: `request` exists only in [[approvals.route]] conditions"));
    }
}

/// One evaluation in progress: the order's slot values for the fast path, and the
/// interpreter's context, bound only when an expression needs it.
struct Ev<'v> {
    policy: &'v Policy,
    fast: bool,
    slots: &'v [V<'v>],
    cel: Option<Context<'v, 'v>>,
    facts: &'v OrderFacts,
    wh: &'v Warehouse,
    d: &'v Derived,
    scratch: &'v Scratch,
    comp: &'v Computed,
    risk: Option<&'v risk::RiskVals>,
}

impl<'v> Ev<'v> {
    fn cel(&mut self) -> &Context<'v, 'v> {
        let (policy, facts, wh, d, scratch, comp) = (self.policy, self.facts, self.wh, self.d, self.scratch, self.comp);
        let risk = self.risk;
        self.cel.get_or_insert_with(|| {
            let mut ctx = Context::with_env(policy.env.clone());
            schema::bind(&mut ctx, facts, wh, d, scratch, comp);
            if let Some(r) = risk {
                schema::bind_risk(&mut ctx, r);
            }
            ctx
        })
    }

    fn native<'e>(&self, e: &'e Expr) -> Option<V<'e>>
    where
        'v: 'e,
    {
        if !self.fast {
            return None;
        }
        let n = e.native.as_ref()?;
        let mut env = Vec::new();
        native::eval(n, self.slots, &mut env).ok()
    }

    fn cond(&mut self, e: &Expr) -> Result<bool, String> {
        if let Some(V::Bool(b)) = self.native(e) {
            return Ok(b);
        }
        match e.program.execute(self.cel()) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("the condition gave {}, not true or false", describe(&other))),
            Err(err) => Err(err.to_string()),
        }
    }

    fn num(&mut self, e: &Expr) -> Result<f64, String> {
        match self.native(e) {
            Some(V::Int(i)) => return Ok(i as f64),
            Some(V::Double(d)) => return Ok(d),
            _ => {}
        }
        match e.program.execute(self.cel()) {
            Ok(v) => number(&v).ok_or_else(|| format!("the term gave {}, not a number", describe(&v))),
            Err(err) => Err(err.to_string()),
        }
    }

    fn render(&mut self, t: &Template) -> String {
        let mut out = String::new();
        for p in &t.parts {
            match p {
                Part::Text(x) => out.push_str(x),
                Part::Expr(e, _) if e.reads_risk && self.risk.is_none() => out.push_str("n/a"),
                Part::Expr(e, decimals) => {
                    let mark = out.len();
                    let done = match self.native(e) {
                        Some(v) => native::format(&mut out, &v, *decimals).is_ok(),
                        None => false,
                    };
                    if !done {
                        out.truncate(mark);
                        match e.program.execute(self.cel()) {
                            Ok(v) => format_value(&mut out, &v, *decimals),
                            Err(err) => out.push_str(&format!("<{}: {err}>", e.src)),
                        }
                    }
                }
            }
        }
        out
    }

    fn seen(&mut self, path: &str, p: &cel::Program) -> serde_json::Value {
        if self.fast
            && let Some(i) = native::slot_of(path)
            && let Some(j) = self.slots.get(i).and_then(native::to_json)
        {
            return j;
        }
        p.execute(self.cel()).map_or(serde_json::Value::Null, |v| to_json(&v))
    }
}

fn format_value(out: &mut String, v: &Value, decimals: Option<usize>) {
    match (v, decimals) {
        (Value::Float(f), Some(n)) => out.push_str(&format!("{f:.n$}")),
        (Value::Int(i), Some(n)) => out.push_str(&format!("{:.n$}", *i as f64)),
        (Value::String(s), _) => out.push_str(s),
        (Value::Int(i), None) => out.push_str(&i.to_string()),
        (Value::UInt(i), None) => out.push_str(&i.to_string()),
        (Value::Float(f), None) => out.push_str(&f.to_string()),
        (Value::Bool(b), _) => out.push_str(if *b { "true" } else { "false" }),
        (Value::Timestamp(t), _) => out.push_str(&t.to_rfc3339()),
        (Value::List(l), _) => {
            for (i, x) in l.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                format_value(out, x, decimals);
            }
        }
        (Value::Null, _) => out.push_str("null"),
        (other, _) => out.push_str(&describe(other)),
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("the string {s:?}"),
        Value::Int(i) => format!("the int {i}"),
        Value::Float(f) => format!("the double {f}"),
        Value::Bool(b) => format!("{b}"),
        Value::Null => "null".into(),
        Value::List(_) => "a list".into(),
        Value::Map(_) => "a map".into(),
        _ => "a value of another type".into(),
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::UInt(u) => Some(*u as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

/// A CEL value as JSON, for the recorded explanation.
pub fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Int(i) => J::from(*i),
        Value::UInt(u) => J::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::String(s) => J::String(s.to_string()),
        Value::Bool(b) => J::Bool(*b),
        Value::Null => J::Null,
        Value::Timestamp(t) => J::String(t.to_rfc3339()),
        Value::List(l) => J::Array(l.iter().map(to_json).collect()),
        Value::Map(m) => {
            let mut o = serde_json::Map::new();
            for (k, x) in m.map.iter() {
                let key = match k {
                    cel::objects::Key::String(s) => s.to_string(),
                    cel::objects::Key::Int(i) => i.to_string(),
                    cel::objects::Key::Uint(u) => u.to_string(),
                    cel::objects::Key::Bool(b) => b.to_string(),
                };
                o.insert(key, to_json(x));
            }
            J::Object(o)
        }
        _ => J::Null,
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn unknown_reason(code: &str) -> String {
    let all: Vec<&str> = HoldReason::ALL.iter().map(|r| r.code()).collect();
    let hint = suggest(code, all.iter().copied()).map(|x| format!(" Did you mean `{x}`?")).unwrap_or_default();
    format!(
        "unknown reason code `{code}`; reason codes are {} (use policy_hold for a rule of your own).{hint}",
        all.join(", ")
    )
}

/// Dispatch order of the queue: higher priority first, then the earlier latest departure,
/// then the order id — a strict total order, since ids are unique.
pub fn queue_cmp(a: (i32, Option<DateTime<Utc>>, &str), b: (i32, Option<DateTime<Utc>>, &str)) -> std::cmp::Ordering {
    b.0.cmp(&a.0)
        .then_with(|| match (a.1, b.1) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        })
        .then_with(|| a.2.cmp(b.2))
}
