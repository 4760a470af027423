//! The fast path: a checked CEL expression compiled to a tree evaluated directly over the
//! order's values, without boxing or overload lookup. It covers what policies use (field reads,
//! logic, comparison, arithmetic, `in`, `size`, conversions, `join`, `math.greatest/least`,
//! map and list literals, the comprehension macros over lists). Anything else, and any error
//! at run time, falls back to the CEL interpreter for that expression, so results are exactly
//! CEL's: the native tree only answers where it gives the same value.

use std::cmp::Ordering;

use cel::IdedExpr;
use cel::common::ast::{EntryExpr, Expr, LiteralValue};
use chrono::{DateTime, Utc};
use dispatch_core::Line;

/// Context fields the fast path reads, in slot order. `lines` is the line list itself.
pub const SLOTS: &[&str] = &[
    "order.source",
    "order.external_id",
    "order.warehouse",
    "order.channel",
    "order.service_level",
    "order.transit_days",
    "order.promised_date",
    "order.ship_to.name",
    "order.ship_to.street",
    "order.ship_to.city",
    "order.ship_to.postcode",
    "order.ship_to.country",
    "order.ship_to.postcode_area",
    "order.payment.terms",
    "order.payment.status",
    "order.documents",
    "order.transport_mode",
    "order.carrier_preference",
    "order.line_count",
    "order.units_demanded",
    "order.units_allocated",
    "order.short_lines",
    "order.value",
    "order.margin",
    "order.weight_kg",
    "order.hazmat",
    "order.customs",
    "order.required_documents",
    "order.missing_documents",
    "order.address_problems",
    "order.ship_by",
    "order.cutoff",
    "order.latest_departure",
    "order.latest_departure_local",
    "customer.id",
    "customer.name",
    "customer.tier",
    "customer.credit_status",
    "customer.account_owner",
    "lines",
    "warehouse.code",
    "warehouse.name",
    "warehouse.country",
    "warehouse.timezone",
    "warehouse.ship_days",
    "now.time",
    "now.local_date",
    "now.local_time",
    "now.weekday",
    "now.is_holiday",
    "now.minutes_to_cutoff",
    "now.hours_to_cutoff",
    "now.cutoff_passed",
    "now.time_to_cutoff",
    "now.time_past_cutoff",
    "now.days_to_promised",
    "risk.late_departure",
    "risk.model_version",
];

pub fn slot_of(path: &str) -> Option<usize> {
    SLOTS.iter().position(|s| *s == path)
}

/// A value during native evaluation; strings and lists borrow from the order.
#[derive(Debug, Clone, PartialEq)]
pub enum V<'a> {
    Null,
    /// An optional field the order does not carry.
    Absent,
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(&'a str),
    Own(String),
    Time(DateTime<Utc>),
    StrList(&'a [String]),
    Lines(&'a [Line]),
    Line(&'a Line),
    List(Vec<V<'a>>),
}

impl V<'_> {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            V::Str(s) => Some(s),
            V::Own(s) => Some(s.as_str()),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LineField {
    Sku,
    ProductFamily,
    Qty,
    QtyAllocated,
    UnitValue,
    UnitCost,
    WeightKg,
    Hazmat,
}

impl LineField {
    fn parse(s: &str) -> Option<LineField> {
        Some(match s {
            "sku" => LineField::Sku,
            "product_family" => LineField::ProductFamily,
            "qty" => LineField::Qty,
            "qty_allocated" => LineField::QtyAllocated,
            "unit_value" => LineField::UnitValue,
            "unit_cost" => LineField::UnitCost,
            "weight_kg" => LineField::WeightKg,
            "hazmat" => LineField::Hazmat,
            _ => return None,
        })
    }

    fn get<'a>(self, l: &'a Line) -> V<'a> {
        match self {
            LineField::Sku => V::Str(&l.sku),
            LineField::ProductFamily => l.product_family.as_deref().map_or(V::Absent, V::Str),
            LineField::Qty => V::Int(i64::from(l.qty)),
            LineField::QtyAllocated => V::Int(i64::from(l.qty_allocated)),
            LineField::UnitValue => V::Double(l.unit_value),
            LineField::UnitCost => l.unit_cost.map_or(V::Absent, V::Double),
            LineField::WeightKg => l.weight_kg.map_or(V::Absent, V::Double),
            LineField::Hazmat => V::Bool(l.hazmat),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(String),
    Slot(usize),
    Has(usize),
    Var(usize),
    VarField(usize, LineField),
    HasVarField(usize, LineField),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    NotStrictlyFalse(Box<Node>),
    Cond(Box<Node>, Box<Node>, Box<Node>),
    Bin(Op, Box<Node>, Box<Node>),
    Neg(Box<Node>),
    In(Box<Node>, Box<Node>),
    Index(Box<Node>, Box<Node>),
    List(Vec<Node>),
    Map(Vec<(Node, Node)>),
    Size(Box<Node>),
    ToDouble(Box<Node>),
    ToInt(Box<Node>),
    Join(Box<Node>, Option<Box<Node>>),
    Max(Vec<Node>),
    Min(Vec<Node>),
    Comp { range: Box<Node>, depth: usize, init: Box<Node>, cond: Box<Node>, step: Box<Node>, result: Box<Node> },
}

#[derive(Clone, Copy, PartialEq)]
enum VarKind {
    Line,
    Other,
}

struct Compiler {
    scope: Vec<(String, VarKind)>,
}

/// Compiles a checked expression; `None` when it uses something the fast path does not cover.
pub fn compile(e: &IdedExpr) -> Option<Node> {
    Compiler { scope: Vec::new() }.node(e)
}

fn path_of(e: &IdedExpr) -> Option<String> {
    match &e.expr {
        Expr::Ident(n) => Some(n.clone()),
        Expr::Select(s) if !s.test => path_of(&s.operand).map(|p| format!("{p}.{}", s.field)),
        _ => None,
    }
}

impl Compiler {
    fn local(&self, name: &str) -> Option<(usize, VarKind)> {
        self.scope.iter().rposition(|(n, _)| n == name).map(|i| (i, self.scope[i].1))
    }

    fn b(&mut self, e: &IdedExpr) -> Option<Box<Node>> {
        self.node(e).map(Box::new)
    }

    fn node(&mut self, e: &IdedExpr) -> Option<Node> {
        Some(match &e.expr {
            Expr::Literal(l) => match l {
                LiteralValue::Boolean(b) => Node::Bool(*b.inner()),
                LiteralValue::Int(i) => Node::Int(*i.inner()),
                LiteralValue::Double(d) => Node::Double(*d.inner()),
                LiteralValue::String(s) => Node::Str(s.inner().to_string()),
                LiteralValue::Null => Node::Null,
                _ => return None,
            },
            Expr::Ident(name) => match self.local(name) {
                Some((i, _)) => Node::Var(i),
                None => Node::Slot(slot_of(name)?),
            },
            Expr::Select(s) => {
                if let Expr::Ident(v) = &s.operand.expr
                    && let Some((i, kind)) = self.local(v)
                {
                    if kind != VarKind::Line {
                        return None;
                    }
                    let f = LineField::parse(&s.field)?;
                    return Some(if s.test { Node::HasVarField(i, f) } else { Node::VarField(i, f) });
                }
                let base = path_of(&s.operand)?;
                if self.local(base.split('.').next().unwrap_or("")).is_some() {
                    return None;
                }
                let slot = slot_of(&format!("{base}.{}", s.field))?;
                if s.test { Node::Has(slot) } else { Node::Slot(slot) }
            }
            Expr::List(l) => {
                if !l.optional_indices.is_empty() {
                    return None;
                }
                Node::List(l.elements.iter().map(|x| self.node(x)).collect::<Option<_>>()?)
            }
            Expr::Map(m) => {
                let mut entries = Vec::new();
                for en in &m.entries {
                    let EntryExpr::MapEntry(me) = &en.expr else { return None };
                    if me.optional {
                        return None;
                    }
                    entries.push((self.node(&me.key)?, self.node(&me.value)?));
                }
                Node::Map(entries)
            }
            Expr::Comprehension(c) => {
                if c.iter_var2.is_some() {
                    return None;
                }
                let range = self.b(&c.iter_range)?;
                let kind =
                    if matches!(*range, Node::Slot(s) if SLOTS[s] == "lines") { VarKind::Line } else { VarKind::Other };
                let init = self.b(&c.accu_init)?;
                let depth = self.scope.len();
                self.scope.push((c.iter_var.clone(), kind));
                self.scope.push((c.accu_var.clone(), VarKind::Other));
                let cond = self.b(&c.loop_cond);
                let step = self.b(&c.loop_step);
                let result = self.b(&c.result);
                self.scope.truncate(depth);
                Node::Comp { range, depth, init, cond: cond?, step: step?, result: result? }
            }
            Expr::Call(call) => {
                let a = &call.args;
                let one = |c: &mut Self| -> Option<Box<Node>> { if a.len() == 1 { c.b(&a[0]) } else { None } };
                let two = |c: &mut Self| -> Option<(Box<Node>, Box<Node>)> {
                    if a.len() == 2 { Some((c.b(&a[0])?, c.b(&a[1])?)) } else { None }
                };
                let bin = |c: &mut Self, op: Op| two(c).map(|(x, y)| Node::Bin(op, x, y));
                match (call.func_name.as_str(), &call.target) {
                    ("_&&_", None) => two(self).map(|(x, y)| Node::And(x, y))?,
                    ("_||_", None) => two(self).map(|(x, y)| Node::Or(x, y))?,
                    ("!_", None) => Node::Not(one(self)?),
                    ("@not_strictly_false", None) => Node::NotStrictlyFalse(one(self)?),
                    ("-_", None) => Node::Neg(one(self)?),
                    ("_?_:_", None) if a.len() == 3 => Node::Cond(self.b(&a[0])?, self.b(&a[1])?, self.b(&a[2])?),
                    ("_==_", None) => bin(self, Op::Eq)?,
                    ("_!=_", None) => bin(self, Op::Ne)?,
                    ("_<_", None) => bin(self, Op::Lt)?,
                    ("_<=_", None) => bin(self, Op::Le)?,
                    ("_>_", None) => bin(self, Op::Gt)?,
                    ("_>=_", None) => bin(self, Op::Ge)?,
                    ("_+_", None) => bin(self, Op::Add)?,
                    ("_-_", None) => bin(self, Op::Sub)?,
                    ("_*_", None) => bin(self, Op::Mul)?,
                    ("_/_", None) => bin(self, Op::Div)?,
                    ("_%_", None) => bin(self, Op::Rem)?,
                    ("@in", None) => two(self).map(|(x, y)| Node::In(x, y))?,
                    ("_[_]", None) => two(self).map(|(x, y)| Node::Index(x, y))?,
                    ("size", None) => Node::Size(one(self)?),
                    ("size", Some(t)) if a.is_empty() => Node::Size(self.b(t)?),
                    ("double", None) => Node::ToDouble(one(self)?),
                    ("int", None) => Node::ToInt(one(self)?),
                    ("join", Some(t)) if a.len() <= 1 => {
                        let sep = if a.is_empty() { None } else { Some(self.b(&a[0])?) };
                        Node::Join(self.b(t)?, sep)
                    }
                    ("math.@max", None) => Node::Max(a.iter().map(|x| self.node(x)).collect::<Option<_>>()?),
                    ("math.@min", None) => Node::Min(a.iter().map(|x| self.node(x)).collect::<Option<_>>()?),
                    _ => return None,
                }
            }
            _ => return None,
        })
    }
}

/// Evaluation failed or left the fast path: use the interpreter.
pub struct Fallback;

type R<'a> = Result<V<'a>, Fallback>;

fn bool_of(v: V<'_>) -> Result<bool, Fallback> {
    match v {
        V::Bool(b) => Ok(b),
        _ => Err(Fallback),
    }
}

fn cmp<'a>(x: &V<'a>, y: &V<'a>) -> Result<Ordering, Fallback> {
    match (x, y) {
        (V::Int(a), V::Int(b)) => Ok(a.cmp(b)),
        (V::Double(a), V::Double(b)) => a.partial_cmp(b).ok_or(Fallback),
        (V::Time(a), V::Time(b)) => Ok(a.cmp(b)),
        (V::Bool(a), V::Bool(b)) => Ok(a.cmp(b)),
        _ => match (x.as_str(), y.as_str()) {
            (Some(a), Some(b)) => Ok(a.cmp(b)),
            _ => Err(Fallback),
        },
    }
}

fn eq<'a>(x: &V<'a>, y: &V<'a>) -> Result<bool, Fallback> {
    match (x, y) {
        (V::Null, V::Null) => Ok(true),
        (V::Double(a), V::Double(b)) => Ok(a == b),
        _ => cmp(x, y).map(|o| o == Ordering::Equal),
    }
}

/// Evaluates `n` over `slots`, with local variables in `env`.
pub fn eval<'a>(n: &'a Node, slots: &'a [V<'a>], env: &mut Vec<V<'a>>) -> R<'a> {
    Ok(match n {
        Node::Null => V::Null,
        Node::Bool(b) => V::Bool(*b),
        Node::Int(i) => V::Int(*i),
        Node::Double(d) => V::Double(*d),
        Node::Str(s) => V::Str(s),
        Node::Slot(i) => match slots.get(*i).ok_or(Fallback)? {
            V::Absent => return Err(Fallback),
            V::Own(s) => V::Str(s),
            v => v.clone(),
        },
        Node::Has(i) => V::Bool(!matches!(slots.get(*i), Some(V::Absent) | None)),
        Node::Var(i) => env.get(*i).cloned().ok_or(Fallback)?,
        Node::VarField(i, f) => match env.get(*i) {
            Some(V::Line(l)) => match f.get(l) {
                V::Absent => return Err(Fallback),
                v => v,
            },
            _ => return Err(Fallback),
        },
        Node::HasVarField(i, f) => match env.get(*i) {
            Some(V::Line(l)) => V::Bool(!matches!(f.get(l), V::Absent)),
            _ => return Err(Fallback),
        },
        Node::And(x, y) => V::Bool(bool_of(eval(x, slots, env)?)? && bool_of(eval(y, slots, env)?)?),
        Node::Or(x, y) => V::Bool(bool_of(eval(x, slots, env)?)? || bool_of(eval(y, slots, env)?)?),
        Node::Not(x) => V::Bool(!bool_of(eval(x, slots, env)?)?),
        Node::NotStrictlyFalse(x) => V::Bool(bool_of(eval(x, slots, env)?)?),
        Node::Cond(c, a, b) => {
            if bool_of(eval(c, slots, env)?)? {
                eval(a, slots, env)?
            } else {
                eval(b, slots, env)?
            }
        }
        Node::Neg(x) => match eval(x, slots, env)? {
            V::Int(i) => V::Int(i.checked_neg().ok_or(Fallback)?),
            V::Double(d) => V::Double(-d),
            _ => return Err(Fallback),
        },
        Node::Bin(op, x, y) => {
            let a = eval(x, slots, env)?;
            let b = eval(y, slots, env)?;
            match op {
                Op::Eq => V::Bool(eq(&a, &b)?),
                Op::Ne => V::Bool(!eq(&a, &b)?),
                Op::Lt => V::Bool(cmp(&a, &b)? == Ordering::Less),
                Op::Le => V::Bool(cmp(&a, &b)? != Ordering::Greater),
                Op::Gt => V::Bool(cmp(&a, &b)? == Ordering::Greater),
                Op::Ge => V::Bool(cmp(&a, &b)? != Ordering::Less),
                _ => arith(*op, a, b)?,
            }
        }
        Node::In(x, y) => {
            let a = eval(x, slots, env)?;
            let found = match eval(y, slots, env)? {
                V::StrList(l) => {
                    let s = a.as_str().ok_or(Fallback)?;
                    l.iter().any(|e| e == s)
                }
                V::List(l) => {
                    let mut f = false;
                    for e in &l {
                        if eq(&a, e)? {
                            f = true;
                            break;
                        }
                    }
                    f
                }
                _ => return Err(Fallback),
            };
            V::Bool(found)
        }
        Node::Index(c, k) => match &**c {
            Node::Map(entries) => {
                let key = eval(k, slots, env)?;
                for (ek, ev) in entries {
                    let kk = eval(ek, slots, env)?;
                    if eq(&kk, &key)? {
                        return eval(ev, slots, env);
                    }
                }
                return Err(Fallback);
            }
            _ => {
                let i = match eval(k, slots, env)? {
                    V::Int(i) => usize::try_from(i).map_err(|_| Fallback)?,
                    _ => return Err(Fallback),
                };
                match eval(c, slots, env)? {
                    V::StrList(l) => V::Str(l.get(i).ok_or(Fallback)?),
                    V::Lines(l) => V::Line(l.get(i).ok_or(Fallback)?),
                    V::List(l) => l.into_iter().nth(i).ok_or(Fallback)?,
                    _ => return Err(Fallback),
                }
            }
        },
        Node::List(items) => V::List(items.iter().map(|x| eval(x, slots, env)).collect::<Result<_, _>>()?),
        Node::Map(_) => return Err(Fallback),
        Node::Size(x) => V::Int(match eval(x, slots, env)? {
            V::StrList(l) => l.len() as i64,
            V::Lines(l) => l.len() as i64,
            V::List(l) => l.len() as i64,
            v => v.as_str().ok_or(Fallback)?.chars().count() as i64,
        }),
        Node::ToDouble(x) => match eval(x, slots, env)? {
            V::Int(i) => V::Double(i as f64),
            V::Double(d) => V::Double(d),
            _ => return Err(Fallback),
        },
        Node::ToInt(x) => match eval(x, slots, env)? {
            V::Int(i) => V::Int(i),
            _ => return Err(Fallback),
        },
        Node::Join(l, sep) => {
            let sep = match sep {
                Some(s) => eval(s, slots, env)?,
                None => V::Str(""),
            };
            let sep = sep.as_str().ok_or(Fallback)?;
            match eval(l, slots, env)? {
                V::StrList(l) => V::Own(l.join(sep)),
                V::List(l) => {
                    let parts: Vec<&str> = l.iter().map(|x| x.as_str().ok_or(Fallback)).collect::<Result<_, _>>()?;
                    V::Own(parts.join(sep))
                }
                _ => return Err(Fallback),
            }
        }
        Node::Max(xs) | Node::Min(xs) => {
            let max = matches!(n, Node::Max(_));
            let mut best: Option<V<'a>> = None;
            for x in xs {
                let v = eval(x, slots, env)?;
                if matches!(v, V::Double(d) if d.is_nan()) || !matches!(v, V::Int(_) | V::Double(_)) {
                    return Err(Fallback);
                }
                best = Some(match best {
                    None => v,
                    Some(b) => {
                        let o = cmp(&v, &b)?;
                        if (max && o == Ordering::Greater) || (!max && o == Ordering::Less) { v } else { b }
                    }
                });
            }
            best.ok_or(Fallback)?
        }
        Node::Comp { range, depth, init, cond, step, result } => {
            let range = eval(range, slots, env)?;
            let mut accu = eval(init, slots, env)?;
            let items: Vec<V<'a>> = match range {
                V::StrList(l) => l.iter().map(|s| V::Str(s)).collect(),
                V::Lines(l) => l.iter().map(V::Line).collect(),
                V::List(l) => l,
                _ => return Err(Fallback),
            };
            env.truncate(*depth);
            for item in items {
                env.truncate(*depth);
                env.push(item);
                env.push(accu);
                if !bool_of(eval(cond, slots, env)?)? {
                    accu = env.pop().ok_or(Fallback)?;
                    break;
                }
                let next = eval(step, slots, env)?;
                env.pop();
                accu = next;
            }
            env.truncate(*depth);
            env.push(V::Null);
            env.push(accu);
            let r = eval(result, slots, env);
            env.truncate(*depth);
            r?
        }
    })
}

fn arith<'a>(op: Op, a: V<'a>, b: V<'a>) -> R<'a> {
    Ok(match (a, b) {
        (V::Int(x), V::Int(y)) => V::Int(
            match op {
                Op::Add => x.checked_add(y),
                Op::Sub => x.checked_sub(y),
                Op::Mul => x.checked_mul(y),
                Op::Div => x.checked_div(y),
                Op::Rem => x.checked_rem(y),
                _ => None,
            }
            .ok_or(Fallback)?,
        ),
        (V::Double(x), V::Double(y)) => V::Double(match op {
            Op::Add => x + y,
            Op::Sub => x - y,
            Op::Mul => x * y,
            // Division by zero is left to the interpreter, whatever it makes of it.
            Op::Div if y != 0.0 => x / y,
            _ => return Err(Fallback),
        }),
        (V::List(mut x), V::List(y)) if op == Op::Add => {
            x.extend(y);
            V::List(x)
        }
        (x, y) if op == Op::Add => match (x.as_str(), y.as_str()) {
            (Some(p), Some(q)) => V::Own(format!("{p}{q}")),
            _ => return Err(Fallback),
        },
        _ => return Err(Fallback),
    })
}

/// Formats a value as a template placeholder does (the same text as the interpreter's).
pub fn format(out: &mut String, v: &V<'_>, decimals: Option<usize>) -> Result<(), Fallback> {
    match (v, decimals) {
        (V::Double(f), Some(n)) => out.push_str(&format!("{f:.n$}")),
        (V::Int(i), Some(n)) => out.push_str(&format!("{:.n$}", *i as f64)),
        (V::Int(i), None) => out.push_str(&i.to_string()),
        (V::Double(f), None) => out.push_str(&f.to_string()),
        (V::Bool(b), _) => out.push_str(if *b { "true" } else { "false" }),
        (V::Null, _) => out.push_str("null"),
        (V::StrList(l), _) => {
            for (i, s) in l.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(s);
            }
        }
        (v, _) => out.push_str(v.as_str().ok_or(Fallback)?),
    }
    Ok(())
}

/// A value as JSON for the explanation; `None` when only the interpreter can say.
pub fn to_json(v: &V<'_>) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    Some(match v {
        V::Null | V::Absent => J::Null,
        V::Bool(b) => J::Bool(*b),
        V::Int(i) => J::from(*i),
        V::Double(d) => serde_json::Number::from_f64(*d).map_or(J::Null, J::Number),
        V::Str(s) => J::String((*s).to_string()),
        V::Own(s) => J::String(s.clone()),
        V::Time(t) => J::String(t.with_timezone(&chrono::Offset::fix(&Utc)).to_rfc3339()),
        V::StrList(l) => J::Array(l.iter().map(|s| J::String(s.clone())).collect()),
        _ => return None,
    })
}

/// The slot values of one order, in [`SLOTS`] order.
pub fn slots<'a>(
    facts: &'a dispatch_core::OrderFacts,
    wh: &'a dispatch_core::Warehouse,
    d: &'a crate::schema::Derived,
    sc: &'a crate::schema::Scratch,
    c: &'a crate::schema::Computed,
    risk: Option<&'a crate::risk::RiskVals>,
) -> Vec<V<'a>> {
    let opt = |o: &'a Option<String>| o.as_deref().map_or(V::Absent, V::Str);
    let a = &facts.ship_to;
    vec![
        V::Str(&facts.source),
        V::Str(&facts.external_id),
        V::Str(&facts.warehouse),
        opt(&facts.channel),
        V::Str(facts.service_level.code()),
        V::Int(facts.service_level.transit_days()),
        V::Str(&c.promised_date),
        V::Str(&a.name),
        V::Str(&a.street),
        V::Str(&a.city),
        V::Str(&a.postcode),
        V::Str(&a.country),
        V::Str(&c.postcode_area),
        V::Str(&facts.payment.terms),
        V::Str(facts.payment.status.code()),
        V::StrList(&facts.documents),
        opt(&facts.transport_mode),
        opt(&facts.carrier_preference),
        V::Int(facts.lines.len() as i64),
        V::Int(c.demanded),
        V::Int(c.allocated),
        V::Str(&c.short_lines),
        V::Double(c.value),
        V::Double(c.margin),
        V::Double(c.weight_kg),
        V::Bool(c.hazmat),
        V::Str(crate::schema::customs_code(d.customs)),
        V::StrList(&d.required_documents),
        V::StrList(&sc.missing_documents),
        V::StrList(&sc.address_problems),
        V::Str(&c.ship_by),
        V::Str(&c.cutoff),
        V::Time(d.latest_departure),
        V::Str(&c.latest_departure_local),
        V::Str(&facts.customer.id),
        V::Str(&facts.customer.name),
        V::Str(&facts.customer.tier),
        V::Str(facts.customer.credit_status.code()),
        opt(&facts.customer.account_owner),
        V::Lines(&facts.lines),
        V::Str(&wh.code),
        V::Str(&wh.name),
        V::Str(&wh.country),
        V::Str(wh.timezone.name()),
        V::StrList(&sc.ship_days),
        V::Time(c.now),
        V::Str(&c.local_date),
        V::Str(&c.local_time),
        V::Str(&c.weekday),
        V::Bool(d.is_holiday),
        V::Int(c.minutes_to_cutoff),
        V::Double(c.minutes_to_cutoff as f64 / 60.0),
        V::Bool(c.cutoff_passed),
        V::Str(&c.time_to_cutoff),
        V::Str(&c.time_past_cutoff),
        V::Int(c.days_to_promised),
        risk.map_or(V::Absent, |r| V::Double(r.late_departure)),
        risk.map_or(V::Absent, |r| V::Str(&r.model_version)),
    ]
}
