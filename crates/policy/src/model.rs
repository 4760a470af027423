//! The policy file as written: TOML, one file, every key known (a typo is an error, not a
//! silently ignored setting). Values that can be wrong carry their byte span, so an error can
//! point at the line and column to fix. See `docs/policy.md` for the reference.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    pub policy: Header,
    /// Requirements: when the condition is false the order is held.
    #[serde(default)]
    pub release: Vec<RuleDef>,
    /// Hold conditions: when the condition is true the order is held.
    #[serde(default)]
    pub hold: Vec<RuleDef>,
    /// Sentences for a readiness check that passed, by check name.
    #[serde(default)]
    pub checks: BTreeMap<Spanned<String>, CheckDef>,
    #[serde(default)]
    pub cutoffs: CutoffsDef,
    pub priority: PriorityDef,
    #[serde(default)]
    pub carriers: CarriersDef,
    /// The reason-code catalogue: human text per reason code.
    #[serde(default)]
    pub exceptions: BTreeMap<Spanned<String>, ExceptionDef>,
    /// Thresholds of the scheduled monitors (queue aging, stalled records, retention).
    #[serde(default)]
    pub monitors: dispatch_core::monitor::Thresholds,
    /// Approval kinds, the holds put up for approval, and the routing decision table.
    #[serde(default)]
    pub approvals: ApprovalsDef,
    /// Costs and assumptions of the planners' advice (partial-vs-wait, sequencing).
    #[serde(default)]
    pub advice: AdviceDef,
}

/// `[advice]`: what the advice routes weigh. Advice is never acted on by itself.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdviceDef {
    /// Freight and handling of one more shipment (a partial shipment's remainder).
    pub extra_shipment_cost: f64,
    /// Cost of each day the whole order is late (partial lateness is charged by value share).
    pub late_cost_per_day: f64,
    /// Hours from goods receipt to ready-to-ship.
    pub receiving_hours: f64,
    /// Picking and packing estimate for the sequencing advice: minutes per order and per line.
    pub minutes_per_order: f64,
    pub minutes_per_line: f64,
}

impl Default for AdviceDef {
    fn default() -> Self {
        AdviceDef {
            extra_shipment_cost: 25.0,
            late_cost_per_day: 40.0,
            receiving_hours: 4.0,
            minutes_per_order: 4.0,
            minutes_per_line: 1.5,
        }
    }
}

impl AdviceDef {
    pub fn check(&self) -> Result<(), String> {
        let all = [
            ("extra_shipment_cost", self.extra_shipment_cost),
            ("late_cost_per_day", self.late_cost_per_day),
            ("receiving_hours", self.receiving_hours),
            ("minutes_per_order", self.minutes_per_order),
            ("minutes_per_line", self.minutes_per_line),
        ];
        match all.iter().find(|(_, v)| !(v.is_finite() && *v >= 0.0)) {
            Some((k, v)) => Err(format!("{k} must be a number ≥ 0, not {v}")),
            None => Ok(()),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsDef {
    /// Hold reason → approval kind the policy requests by itself when an order is held for it.
    #[serde(default)]
    pub holds: BTreeMap<Spanned<String>, Spanned<String>>,
    /// Requirements per kind; a kind not built in is added by naming it here.
    #[serde(default)]
    pub kinds: BTreeMap<Spanned<String>, KindDef>,
    /// The decision table, hit policy FIRST: the first row whose kind matches and whose
    /// `when` is true routes the request.
    #[serde(default)]
    pub route: Vec<RouteDef>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct KindDef {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub reason_required: bool,
    #[serde(default)]
    pub cost_center_required: bool,
    #[serde(default)]
    pub amount_required: bool,
    /// No route may auto-approve this kind.
    #[serde(default)]
    pub never_auto: bool,
    /// Only these roles may appear in this kind's routes (steps and escalations).
    #[serde(default)]
    pub only_roles: Vec<Spanned<String>>,
    /// Hold reasons an approval lifts; built-in kinds have their own default.
    #[serde(default)]
    pub waives: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDef {
    pub id: Spanned<String>,
    pub kind: Spanned<String>,
    /// CEL condition; the row always matches without one.
    #[serde(default)]
    pub when: Option<Spanned<String>>,
    /// Approved by the policy (recorded with the policy hash and this row's id).
    #[serde(default)]
    pub auto: bool,
    /// Steps in sequence.
    #[serde(default)]
    pub steps: Vec<StepDef>,
    /// `48h`, `3d`: the request expires when undecided this long.
    #[serde(default)]
    pub expires_after: Option<Spanned<String>>,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDef {
    /// One approval by anyone holding one of these roles.
    #[serde(default)]
    pub any_of: Option<Vec<Spanned<String>>>,
    /// One approval per role, each by a different person.
    #[serde(default)]
    pub all_of: Option<Vec<Spanned<String>>>,
    /// `30m`, `4h`, `1d`: undecided this long, the step escalates.
    #[serde(default)]
    pub sla: Option<Spanned<String>>,
    #[serde(default)]
    pub escalate_to: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Hold the order with `policy_error` (the default: never release on a doubt).
    #[default]
    Hold,
    /// Treat the rule as not fired.
    Ignore,
    /// Treat the rule as fired, with its own reason.
    Fire,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    pub id: Spanned<String>,
    /// `hold` rules: the condition under which the order is held.
    #[serde(default)]
    pub when: Option<Spanned<String>>,
    /// `release` rules: the condition that must hold for the order to leave.
    #[serde(default)]
    pub require: Option<Spanned<String>>,
    pub reason: Spanned<String>,
    /// Sentence shown when the rule holds the order; `{cel}` placeholders, `{x:.2}` for decimals.
    pub message: Spanned<String>,
    /// The readiness check the rule belongs to (`stock`, `credit`, ...), if any.
    #[serde(default)]
    pub check: Option<Spanned<String>>,
    #[serde(default)]
    pub on_error: OnError,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckDef {
    /// Sentence when every rule of the check passed.
    pub passed: Spanned<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CutoffsDef {
    #[serde(default, rename = "override")]
    pub overrides: Vec<CutoffOverride>,
    /// Warehouse code → dates (`YYYY-MM-DD`) on which nothing leaves.
    #[serde(default)]
    pub holidays: BTreeMap<Spanned<String>, Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CutoffOverride {
    pub warehouse: Spanned<String>,
    pub service_level: Spanned<String>,
    /// Local time `HH:MM`.
    pub time: Spanned<String>,
    /// IANA zone the time is in; the warehouse's zone when omitted.
    #[serde(default)]
    pub timezone: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityDef {
    #[serde(default = "default_max")]
    pub max: i32,
    /// Orders whose latest departure is within this many hours have time-dependent scores and
    /// are refreshed by the periodic sweep.
    #[serde(default = "default_horizon")]
    pub refresh_horizon_hours: u32,
    #[serde(default)]
    pub terms: Vec<TermDef>,
}

fn default_max() -> i32 {
    1000
}

fn default_horizon() -> u32 {
    72
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TermDef {
    pub id: Spanned<String>,
    pub expr: Spanned<String>,
    #[serde(default = "one")]
    pub weight: f64,
    /// Points are clamped to `[min, max]` after weighting.
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    /// Why the term scored what it did: a message template.
    #[serde(default)]
    pub why: Option<Spanned<String>>,
    #[serde(default)]
    pub description: String,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CarriersDef {
    /// Every carrier the matrix may name.
    #[serde(default)]
    pub known: Vec<Spanned<String>>,
    /// Hold with `carrier_unavailable` when no lane allows any carrier.
    #[serde(default)]
    pub hold_when_none: bool,
    /// Honour the order's `carrier_preference` when the lane allows it.
    #[serde(default = "yes")]
    pub honour_preference: bool,
    /// The booking worker may book a lane's fallback by itself when every allowed carrier is
    /// down; when false it requests a `route_override` approval instead. A lane may override.
    #[serde(default = "yes")]
    pub auto_fallback: bool,
    #[serde(default)]
    pub lanes: Vec<LaneDef>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaneDef {
    pub id: Spanned<String>,
    /// Destination countries (ISO codes), or `domestic`, `eu`, `export`, `*`.
    #[serde(default)]
    pub destinations: Vec<Spanned<String>>,
    /// Origin warehouses; all when empty.
    #[serde(default)]
    pub warehouses: Vec<Spanned<String>>,
    /// Transport modes; all when empty.
    #[serde(default)]
    pub modes: Vec<String>,
    #[serde(default)]
    pub max_weight_kg: Option<f64>,
    /// Whether the lane takes dangerous goods.
    #[serde(default = "yes")]
    pub hazmat: bool,
    /// Allowed carriers in order of preference.
    pub carriers: Vec<Spanned<String>>,
    /// Tried in order when every allowed carrier is unavailable.
    #[serde(default)]
    pub fallbacks: Vec<Spanned<String>>,
    /// Overrides `[carriers] auto_fallback` for this lane.
    #[serde(default)]
    pub auto_fallback: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionDef {
    pub title: String,
    pub text: String,
    /// Whether a person with `override_holds` may lift this hold without an approval; absent:
    /// `dispatch_core::overrides::default_overridable` (soft holds yes, hard blocks no).
    #[serde(default)]
    pub overridable: Option<bool>,
}
