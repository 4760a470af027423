//! The context a policy's expressions see, declared once: the static checker reads it to
//! refuse unknown fields and type errors at load, [`Facts::build`] fills it for an order,
//! and `docs/policy.md` documents it (a test keeps the three in step).

use std::collections::HashMap;

use cel::Context;
use cel::common::types::{CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelString, CelTimestamp};
use cel::common::value::Val;
use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime, Utc};
use dispatch_core::readiness::{Customs, human_duration};
use dispatch_core::{OrderFacts, Warehouse};

/// The type of a context field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldTy {
    Int,
    Double,
    Str,
    Bool,
    Timestamp,
    StrList,
    Obj(&'static [Field]),
    ObjList(&'static [Field]),
}

impl FieldTy {
    pub fn name(&self) -> &'static str {
        match self {
            FieldTy::Int => "int",
            FieldTy::Double => "double",
            FieldTy::Str => "string",
            FieldTy::Bool => "bool",
            FieldTy::Timestamp => "timestamp",
            FieldTy::StrList => "list(string)",
            FieldTy::Obj(_) => "map",
            FieldTy::ObjList(_) => "list(map)",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Field {
    pub name: &'static str,
    pub ty: FieldTy,
    /// Absent when the order does not carry it: test with `has(x.field)` before use.
    pub optional: bool,
    pub doc: &'static str,
}

const fn f(name: &'static str, ty: FieldTy, doc: &'static str) -> Field {
    Field { name, ty, optional: false, doc }
}

const fn opt(name: &'static str, ty: FieldTy, doc: &'static str) -> Field {
    Field { name, ty, optional: true, doc }
}

use FieldTy::*;

pub const SHIP_TO: &[Field] = &[
    f("name", Str, "recipient name"),
    f("street", Str, "street and number"),
    f("city", Str, "city"),
    f("postcode", Str, "postcode as sent"),
    f("country", Str, "ISO 3166-1 alpha-2 country code"),
    f(
        "postcode_area",
        Str,
        "country and the postcode's leading characters, e.g. `NL-10`, `GB-SW`: the same as `route.area`",
    ),
];

pub const PAYMENT: &[Field] = &[
    f("terms", Str, "payment terms, e.g. `net30`, `prepaid`"),
    f("status", Str, "`ok`, `paid`, `authorized`, `pending`, `unpaid`, `failed`, `overdue`"),
];

pub const ORDER: &[Field] = &[
    f("source", Str, "system the order comes from, e.g. `odoo`"),
    f("external_id", Str, "the order's id in that system"),
    f("warehouse", Str, "warehouse code"),
    opt("channel", Str, "sales channel: `sales`, `ecommerce`, `key_account`, ..."),
    f("service_level", Str, "`same_day`, `next_day`, `express`, `standard`, `economy`"),
    f("transit_days", Int, "calendar days between departure and promised delivery for the service level"),
    f("promised_date", Str, "promised delivery date, `YYYY-MM-DD`"),
    f("ship_to", Obj(SHIP_TO), "ship-to address"),
    f("payment", Obj(PAYMENT), "payment terms and status"),
    f("documents", StrList, "codes of the documents present"),
    opt("transport_mode", Str, "`parcel`, `ltl`, `ftl`, `courier`, `own_fleet`, ..."),
    opt("carrier_preference", Str, "carrier the ERP asked for"),
    f("line_count", Int, "number of lines"),
    f("units_demanded", Int, "sum of `qty` over the lines"),
    f("units_allocated", Int, "sum over the lines of `qty_allocated`, at most `qty` per line"),
    f("short_lines", Str, "lines not fully allocated, e.g. `P-1 2/4, V-7 0/1`; empty when none"),
    f("value", Double, "goods value: sum of `qty × unit_value`"),
    f("margin", Double, "sum of `qty × (unit_value − unit_cost)` over lines with a cost"),
    f("weight_kg", Double, "total weight: sum of `qty × weight_kg` (lines without weight count 0)"),
    f("hazmat", Bool, "any line is dangerous goods"),
    f("customs", Str, "`domestic`, `eu_internal` or `export` (from warehouse and ship-to country)"),
    f("required_documents", StrList, "documents the built-in customs and hazmat rules require"),
    f("missing_documents", StrList, "required documents that are not present"),
    f("address_problems", StrList, "every problem of the ship-to address as a sentence; empty when deliverable"),
    f("ship_by", Str, "last ship day that meets the promise (holidays and ship days applied), `YYYY-MM-DD`"),
    f("cutoff", Str, "local cut-off that applies, `HH:MM` (policy override or warehouse configuration)"),
    f("latest_departure", Timestamp, "the cut-off on the ship-by date as an instant"),
    f("latest_departure_local", Str, "the same in the warehouse's zone, `YYYY-MM-DD HH:MM`"),
];

pub const CUSTOMER: &[Field] = &[
    f("id", Str, "customer id in the ERP"),
    f("name", Str, "customer name"),
    f("tier", Str, "`standard`, `silver`, `gold`, `platinum`, `key_account`"),
    f("credit_status", Str, "`ok`, `watch`, `hold`, `blocked`, `over_limit`"),
    opt("account_owner", Str, "user id of the account owner"),
];

pub const LINE: &[Field] = &[
    f("sku", Str, "article number"),
    opt("product_family", Str, "product family, e.g. `pumps`"),
    f("qty", Int, "quantity ordered"),
    f("qty_allocated", Int, "quantity reserved in stock"),
    f("unit_value", Double, "value per unit"),
    opt("unit_cost", Double, "cost per unit"),
    opt("weight_kg", Double, "weight per unit in kg"),
    f("hazmat", Bool, "dangerous goods"),
];

pub const WAREHOUSE: &[Field] = &[
    f("code", Str, "warehouse code"),
    f("name", Str, "warehouse name"),
    f("country", Str, "ISO country code"),
    f("timezone", Str, "IANA zone, e.g. `Europe/Amsterdam`"),
    f("ship_days", StrList, "days trucks leave, `Mon` … `Sun`"),
];

pub const NOW: &[Field] = &[
    f("time", Timestamp, "the evaluation instant (the injected clock), UTC"),
    f("local_date", Str, "today in the warehouse's zone, `YYYY-MM-DD`"),
    f("local_time", Str, "the time of day in the warehouse's zone, `HH:MM`"),
    f("weekday", Str, "today in the warehouse's zone, `Mon` … `Sun`"),
    f("is_holiday", Bool, "today is a holiday of the warehouse in this policy"),
    f("minutes_to_cutoff", Int, "whole minutes until `order.latest_departure`; negative once passed"),
    f("hours_to_cutoff", Double, "`minutes_to_cutoff / 60.0`"),
    f("cutoff_passed", Bool, "the instant is after `order.latest_departure`"),
    f("time_to_cutoff", Str, "time left until the latest departure, e.g. `3h 12m`, `2d 4h`; `0m` once passed"),
    f("time_past_cutoff", Str, "how long ago the latest departure passed, e.g. `45m`; `0m` before it"),
    f("days_to_promised", Int, "calendar days from the local date to the promised date"),
];

/// Route density: orders to the same postcode area in the same wave (see `dispatch_core::route`).
pub const ROUTE: &[Field] = &[
    f("area", Str, "postcode area: country and the postcode's leading characters, e.g. `NL-10`, `GB-SW`"),
    f(
        "wave",
        Str,
        "warehouse and latest departure (the cut-off slot on the ship-by date), e.g. `AMS@2026-11-30T17:00Z`",
    ),
    f("density", Int, "orders of this area and wave that are released or booked, this order included (at least 1)"),
];

/// The approval request being routed: only `[[approvals.route]]` conditions may read it.
pub const REQUEST: &[Field] = &[
    f("kind", Str, "approval kind, e.g. `expedited_freight`"),
    f("reason", Str, "the requester's reason; empty when none"),
    f("amount", Double, "the amount to approve (e.g. the premium freight quote); 0.0 when none"),
    f("currency", Str, "ISO 4217 currency of `amount`; empty when none"),
    f("cost_center", Str, "cost center to book the exception on; empty when none"),
    f("carrier", Str, "`route_override`: the carrier asked for; empty otherwise"),
    f("service", Str, "`expedited_freight`: the faster service asked for; empty otherwise"),
    f("carrier_in_matrix", Bool, "the carrier asked for is allowed for this order by the carrier matrix"),
    f("shipped_value", Double, "`partial_shipment`: goods value of the units that leave now; 0.0 otherwise"),
    f("remainder_value", Double, "`partial_shipment`: goods value of the backorder remainder; 0.0 otherwise"),
    f("by_policy", Bool, "the policy asked for it (a mapped hold), not a person"),
    f("requester_roles", StrList, "roles of the person who asked"),
];

pub const RISK_FACTOR: &[Field] = &[
    f("feature", Str, "the feature, e.g. `route` (product family × region × carrier), `backlog_at_release`"),
    f("contribution", Double, "the model's contribution in log-odds; positive raises the risk"),
    f("text", Str, "the factor in plain language, with the late rate observed in the last 90 days"),
];

pub const RISK: &[Field] = &[
    f("late_departure", Double, "probability (0–1) that the order departs after its cut-off"),
    f("factors", ObjList(RISK_FACTOR), "the strongest factors of that probability, strongest first (at most 3)"),
    f("model_version", Str, "the active model's version"),
];

/// The variables of the context.
pub const ROOTS: &[Field] = &[
    f("order", Obj(ORDER), "the delivery order and what dispatchd derives from it"),
    f("customer", Obj(CUSTOMER), "the ordering customer"),
    f("lines", ObjList(LINE), "the order lines"),
    f("warehouse", Obj(WAREHOUSE), "the warehouse the order leaves from"),
    f("now", Obj(NOW), "the evaluation time with warehouse-local helpers"),
    f("route", Obj(ROUTE), "postcode area, wave and route density"),
    f("request", Obj(REQUEST), "the approval request being routed (approval routes only)"),
    f(
        "risk",
        Obj(RISK),
        "the active late-departure model's score of the order; without an active model an expression reading it is skipped (see below)",
    ),
];

/// The values of `request` for one routing.
#[derive(Debug, Clone, Default)]
pub struct RequestVals {
    pub kind: String,
    pub reason: String,
    pub amount: f64,
    pub currency: String,
    pub cost_center: String,
    pub carrier: String,
    pub service: String,
    pub carrier_in_matrix: bool,
    pub shipped_value: f64,
    pub remainder_value: f64,
    pub by_policy: bool,
    pub requester_roles: Vec<String>,
}

/// Binds `request` for an approval route's condition.
pub fn bind_request<'v>(ctx: &mut Context<'_, 'v>, r: &'v RequestVals) {
    ctx.add_variable_as_val(
        "request",
        obj(vec![
            ("kind", sb(&r.kind)),
            ("reason", sb(&r.reason)),
            ("amount", dv(r.amount)),
            ("currency", sb(&r.currency)),
            ("cost_center", sb(&r.cost_center)),
            ("carrier", sb(&r.carrier)),
            ("service", sb(&r.service)),
            ("carrier_in_matrix", bv(r.carrier_in_matrix)),
            ("shipped_value", dv(r.shipped_value)),
            ("remainder_value", dv(r.remainder_value)),
            ("by_policy", bv(r.by_policy)),
            ("requester_roles", strs(&r.requester_roles)),
        ]),
    );
}

/// What an evaluation derives before any rule runs: the inputs recorded on the event.
#[derive(Debug, Clone)]
pub struct Derived {
    pub customs: Customs,
    pub required_documents: Vec<String>,
    pub ship_by: NaiveDate,
    pub cutoff: NaiveTime,
    pub latest_departure: DateTime<Utc>,
    pub local_now: DateTime<chrono_tz::Tz>,
    pub is_holiday: bool,
}

type BoxVal<'v> = Box<dyn Val + 'v>;

fn sb<'v>(v: &'v str) -> BoxVal<'v> {
    Box::new(CelString::from(v))
}

fn iv<'v>(v: i64) -> BoxVal<'v> {
    Box::new(CelInt::from(v))
}

fn dv<'v>(v: f64) -> BoxVal<'v> {
    Box::new(CelDouble::from(v))
}

fn bv<'v>(v: bool) -> BoxVal<'v> {
    Box::new(CelBool::from(v))
}

fn tv<'v>(v: DateTime<Utc>) -> BoxVal<'v> {
    Box::new(CelTimestamp::from(v.with_timezone(&utc0())))
}

fn strs<'v>(v: &'v [String]) -> BoxVal<'v> {
    Box::new(CelList::from(v.iter().map(|x| sb(x)).collect::<Vec<_>>()))
}

fn obj<'v>(entries: Vec<(&'static str, BoxVal<'v>)>) -> BoxVal<'v> {
    let mut m: HashMap<CelMapKey<'v>, BoxVal<'v>> = HashMap::with_capacity(entries.len());
    for (k, v) in entries {
        m.insert(CelMapKey::from(k), v);
    }
    Box::new(CelMap::from(m))
}

/// Values computed for one order that the context borrows.
pub struct Scratch {
    pub missing_documents: Vec<String>,
    pub address_problems: Vec<String>,
    pub ship_days: Vec<String>,
}

impl Scratch {
    pub fn new(facts: &OrderFacts, wh: &Warehouse, d: &Derived, n: &Needs) -> Scratch {
        Scratch {
            missing_documents: if n.missing_documents {
                d.required_documents.iter().filter(|r| !facts.documents.iter().any(|h| h == *r)).cloned().collect()
            } else {
                Vec::new()
            },
            address_problems: if n.address_problems {
                dispatch_core::address::problems(&facts.ship_to)
            } else {
                Vec::new()
            },
            ship_days: if n.ship_days { wh.ship_days.iter().map(|d| d.to_string()).collect() } else { Vec::new() },
        }
    }
}

/// Which of the costlier derived values any expression of the policy reads; the others are
/// left empty (no expression can observe them: reads are known when the policy is compiled).
#[derive(Debug, Clone, Default)]
pub struct Needs {
    pub short_lines: bool,
    pub postcode_area: bool,
    pub promised_date: bool,
    pub ship_by: bool,
    pub cutoff: bool,
    pub latest_departure_local: bool,
    pub local_date: bool,
    pub local_time: bool,
    pub weekday: bool,
    pub time_to_cutoff: bool,
    pub time_past_cutoff: bool,
    pub ship_days: bool,
    pub address_problems: bool,
    pub missing_documents: bool,
    /// Some expression reads `risk` (the model is asked for a score).
    pub risk: bool,
    /// Some expression reads `risk.factors` (the model is asked for explanations).
    pub risk_factors: bool,
    /// Any `route.*` read: the route key is computed and the density looked up.
    pub route: bool,
}

impl Needs {
    /// Everything: for a context whose reads are not known.
    pub fn all() -> Needs {
        Needs {
            short_lines: true,
            postcode_area: true,
            promised_date: true,
            ship_by: true,
            cutoff: true,
            latest_departure_local: true,
            local_date: true,
            local_time: true,
            weekday: true,
            time_to_cutoff: true,
            time_past_cutoff: true,
            ship_days: true,
            address_problems: true,
            missing_documents: true,
            risk: true,
            risk_factors: true,
            route: true,
        }
    }

    /// From the context paths a policy's expressions read (`order`, `order.ship_to.city`, ...).
    pub fn from_reads<'a>(reads: impl IntoIterator<Item = &'a str>) -> Needs {
        let reads: Vec<&str> = reads.into_iter().collect();
        // A read of `order` or `order.ship_to` reads everything under it.
        let r =
            |path: &str| reads.iter().any(|x| *x == path || (path.starts_with(*x) && path[x.len()..].starts_with('.')));
        Needs {
            short_lines: r("order.short_lines"),
            postcode_area: r("order.ship_to.postcode_area"),
            promised_date: r("order.promised_date"),
            ship_by: r("order.ship_by"),
            cutoff: r("order.cutoff"),
            latest_departure_local: r("order.latest_departure_local"),
            local_date: r("now.local_date"),
            local_time: r("now.local_time"),
            weekday: r("now.weekday"),
            time_to_cutoff: r("now.time_to_cutoff"),
            time_past_cutoff: r("now.time_past_cutoff"),
            ship_days: r("warehouse.ship_days"),
            address_problems: r("order.address_problems"),
            missing_documents: r("order.missing_documents"),
            risk: reads.iter().any(|x| crate::risk::is_risk_path(x)),
            risk_factors: r("risk.factors"),
            route: reads.iter().any(|x| *x == "route" || x.starts_with("route.")),
        }
    }
}

/// Everything derived from an order once per evaluation, shared by the fast path and the
/// interpreter's context so both see the same values.
pub struct Computed {
    pub now: DateTime<Utc>,
    pub demanded: i64,
    pub allocated: i64,
    pub short_lines: String,
    pub value: f64,
    pub margin: f64,
    pub weight_kg: f64,
    pub hazmat: bool,
    pub postcode_area: String,
    pub promised_date: String,
    pub ship_by: String,
    pub cutoff: String,
    pub latest_departure_local: String,
    pub local_date: String,
    pub local_time: String,
    pub weekday: String,
    pub minutes_to_cutoff: i64,
    pub cutoff_passed: bool,
    pub time_to_cutoff: String,
    pub time_past_cutoff: String,
    pub days_to_promised: i64,
    /// `route.*`, filled by the evaluation when the policy reads it.
    pub route_area: String,
    pub route_wave: String,
    pub route_density: i64,
}

impl Computed {
    pub fn new(facts: &OrderFacts, wh: &Warehouse, now: DateTime<Utc>, d: &Derived, n: &Needs) -> Computed {
        use std::fmt::Write;
        let mut demanded: i64 = 0;
        let mut allocated: i64 = 0;
        let mut short = String::new();
        let mut margin = 0.0;
        for l in &facts.lines {
            demanded += i64::from(l.qty);
            allocated += i64::from(l.qty_allocated.min(l.qty));
            if n.short_lines && l.qty_allocated < l.qty {
                if !short.is_empty() {
                    short.push_str(", ");
                }
                let _ = write!(short, "{} {}/{}", l.sku, l.qty_allocated, l.qty);
            }
            if let Some(c) = l.unit_cost {
                margin += f64::from(l.qty) * (l.unit_value - c);
            }
        }
        let a = &facts.ship_to;
        let today = d.local_now.date_naive();
        let when = |need: bool, f: &dyn Fn() -> String| if need { f() } else { String::new() };
        Computed {
            now,
            demanded,
            allocated,
            short_lines: short,
            value: facts.order_value(),
            margin,
            weight_kg: facts.total_weight_kg(),
            hazmat: facts.has_hazmat(),
            postcode_area: when(n.postcode_area, &|| dispatch_core::route::postcode_area(&a.country, &a.postcode)),
            promised_date: when(n.promised_date, &|| facts.promised_date.to_string()),
            ship_by: when(n.ship_by, &|| d.ship_by.to_string()),
            cutoff: when(n.cutoff, &|| d.cutoff.format("%H:%M").to_string()),
            latest_departure_local: when(n.latest_departure_local, &|| {
                d.latest_departure.with_timezone(&wh.timezone).format("%Y-%m-%d %H:%M").to_string()
            }),
            local_date: when(n.local_date, &|| today.to_string()),
            local_time: when(n.local_time, &|| d.local_now.format("%H:%M").to_string()),
            weekday: when(n.weekday, &|| today.weekday().to_string()),
            minutes_to_cutoff: (d.latest_departure - now).num_minutes(),
            cutoff_passed: now > d.latest_departure,
            time_to_cutoff: when(n.time_to_cutoff, &|| human_duration(d.latest_departure - now)),
            time_past_cutoff: when(n.time_past_cutoff, &|| human_duration(now - d.latest_departure)),
            days_to_promised: (facts.promised_date - today).num_days(),
            route_area: String::new(),
            route_wave: String::new(),
            route_density: 1,
        }
    }
}

/// Binds `order`, `customer`, `lines`, `warehouse`, `now` and `route` for the interpreter.
pub fn bind<'v>(
    ctx: &mut Context<'_, 'v>,
    facts: &'v OrderFacts,
    wh: &'v Warehouse,
    d: &'v Derived,
    scratch: &'v Scratch,
    c: &'v Computed,
) {
    let a = &facts.ship_to;
    let ship_to = obj(vec![
        ("name", sb(&a.name)),
        ("street", sb(&a.street)),
        ("city", sb(&a.city)),
        ("postcode", sb(&a.postcode)),
        ("country", sb(&a.country)),
        ("postcode_area", sb(&c.postcode_area)),
    ]);
    let payment = obj(vec![("terms", sb(&facts.payment.terms)), ("status", sb(facts.payment.status.code()))]);
    let mut order = vec![
        ("source", sb(&facts.source)),
        ("external_id", sb(&facts.external_id)),
        ("warehouse", sb(&facts.warehouse)),
        ("service_level", sb(facts.service_level.code())),
        ("transit_days", iv(facts.service_level.transit_days())),
        ("promised_date", sb(&c.promised_date)),
        ("ship_to", ship_to),
        ("payment", payment),
        ("documents", strs(&facts.documents)),
        ("line_count", iv(facts.lines.len() as i64)),
        ("units_demanded", iv(c.demanded)),
        ("units_allocated", iv(c.allocated)),
        ("short_lines", sb(&c.short_lines)),
        ("value", dv(c.value)),
        ("margin", dv(c.margin)),
        ("weight_kg", dv(c.weight_kg)),
        ("hazmat", bv(c.hazmat)),
        ("customs", sb(customs_code(d.customs))),
        ("required_documents", strs(&d.required_documents)),
        ("missing_documents", strs(&scratch.missing_documents)),
        ("address_problems", strs(&scratch.address_problems)),
        ("ship_by", sb(&c.ship_by)),
        ("cutoff", sb(&c.cutoff)),
        ("latest_departure", tv(d.latest_departure)),
        ("latest_departure_local", sb(&c.latest_departure_local)),
    ];
    if let Some(x) = &facts.channel {
        order.push(("channel", sb(x)));
    }
    if let Some(m) = &facts.transport_mode {
        order.push(("transport_mode", sb(m)));
    }
    if let Some(x) = &facts.carrier_preference {
        order.push(("carrier_preference", sb(x)));
    }
    let cu = &facts.customer;
    let mut customer = vec![
        ("id", sb(&cu.id)),
        ("name", sb(&cu.name)),
        ("tier", sb(&cu.tier)),
        ("credit_status", sb(cu.credit_status.code())),
    ];
    if let Some(o) = &cu.account_owner {
        customer.push(("account_owner", sb(o)));
    }
    let lines: Vec<BoxVal<'v>> = facts
        .lines
        .iter()
        .map(|l| {
            let mut e = vec![
                ("sku", sb(&l.sku)),
                ("qty", iv(i64::from(l.qty))),
                ("qty_allocated", iv(i64::from(l.qty_allocated))),
                ("unit_value", dv(l.unit_value)),
                ("hazmat", bv(l.hazmat)),
            ];
            if let Some(p) = &l.product_family {
                e.push(("product_family", sb(p)));
            }
            if let Some(x) = l.unit_cost {
                e.push(("unit_cost", dv(x)));
            }
            if let Some(w) = l.weight_kg {
                e.push(("weight_kg", dv(w)));
            }
            obj(e)
        })
        .collect();
    let warehouse = obj(vec![
        ("code", sb(&wh.code)),
        ("name", sb(&wh.name)),
        ("country", sb(&wh.country)),
        ("timezone", sb(wh.timezone.name())),
        ("ship_days", strs(&scratch.ship_days)),
    ]);
    let now_v = obj(vec![
        ("time", tv(c.now)),
        ("local_date", sb(&c.local_date)),
        ("local_time", sb(&c.local_time)),
        ("weekday", sb(&c.weekday)),
        ("is_holiday", bv(d.is_holiday)),
        ("minutes_to_cutoff", iv(c.minutes_to_cutoff)),
        ("hours_to_cutoff", dv(c.minutes_to_cutoff as f64 / 60.0)),
        ("cutoff_passed", bv(c.cutoff_passed)),
        ("time_to_cutoff", sb(&c.time_to_cutoff)),
        ("time_past_cutoff", sb(&c.time_past_cutoff)),
        ("days_to_promised", iv(c.days_to_promised)),
    ]);
    ctx.add_variable_as_val("order", obj(order));
    ctx.add_variable_as_val("customer", obj(customer));
    ctx.add_variable_as_val("lines", Box::new(CelList::from(lines)));
    ctx.add_variable_as_val("warehouse", warehouse);
    ctx.add_variable_as_val("now", now_v);
    ctx.add_variable_as_val(
        "route",
        obj(vec![("area", sb(&c.route_area)), ("wave", sb(&c.route_wave)), ("density", iv(c.route_density))]),
    );
}

fn utc0() -> FixedOffset {
    chrono::Offset::fix(&Utc)
}

pub fn customs_code(c: Customs) -> &'static str {
    match c {
        Customs::Domestic => "domestic",
        Customs::EuInternal => "eu_internal",
        Customs::Export => "export",
    }
}

/// Looks a dotted path (`order.ship_to.country`) up in the schema.
pub fn lookup(path: &[&str]) -> Option<&'static Field> {
    let (first, rest) = path.split_first()?;
    let mut field = ROOTS.iter().find(|f| f.name == *first)?;
    for seg in rest {
        let FieldTy::Obj(fields) = field.ty else { return None };
        field = fields.iter().find(|f| f.name == *seg)?;
    }
    Some(field)
}

/// Every documented path with its type, for `docs/policy.md` and its test.
pub fn all_paths() -> Vec<(String, &'static Field)> {
    fn walk(prefix: &str, fields: &'static [Field], out: &mut Vec<(String, &'static Field)>) {
        for f in fields {
            let p = if prefix.is_empty() { f.name.to_string() } else { format!("{prefix}.{}", f.name) };
            out.push((p.clone(), f));
            match f.ty {
                FieldTy::Obj(sub) => walk(&p, sub, out),
                FieldTy::ObjList(sub) => walk(&format!("{p}[]"), sub, out),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk("", ROOTS, &mut out);
    out
}

/// Binds `risk` for the interpreter (only when a model scored the order).
pub fn bind_risk<'v>(ctx: &mut Context<'_, 'v>, r: &'v crate::risk::RiskVals) {
    let factors: Vec<BoxVal<'v>> = r
        .factors
        .iter()
        .map(|x| obj(vec![("feature", sb(&x.feature)), ("contribution", dv(x.contribution)), ("text", sb(&x.text))]))
        .collect();
    let factors: BoxVal<'v> = Box::new(CelList::from(factors));
    ctx.add_variable_as_val(
        "risk",
        obj(vec![
            ("late_departure", dv(r.late_departure)),
            ("factors", factors),
            ("model_version", sb(&r.model_version)),
        ]),
    );
}
