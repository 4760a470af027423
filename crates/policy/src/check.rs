//! Static checks of a parsed CEL expression against the context schema, so that a policy with
//! an unknown variable or field, an unknown function or an operator applied to the wrong
//! types is refused at load instead of failing order by order. CEL itself is dynamically
//! typed; where a type cannot be known (inside `dyn`, map literals) the check lets it pass and
//! the rule's `on_error` covers the run time.

use cel::IdedExpr;
use cel::common::ast::{EntryExpr, Expr, LiteralValue};

use crate::error::suggest;
use crate::schema::{self, Field, FieldTy, ROOTS};

/// Longest expression accepted, in bytes.
pub const MAX_EXPR_BYTES: usize = 2000;
/// Most AST nodes in one expression (after macro expansion).
pub const MAX_NODES: usize = 400;

#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    Int,
    Double,
    Str,
    Bool,
    Time,
    Duration,
    Null,
    List(Box<Ty>),
    Obj(&'static [Field]),
    Map(Box<Ty>),
    Dyn,
}

impl Ty {
    pub fn from_field(t: FieldTy) -> Ty {
        match t {
            FieldTy::Int => Ty::Int,
            FieldTy::Double => Ty::Double,
            FieldTy::Str => Ty::Str,
            FieldTy::Bool => Ty::Bool,
            FieldTy::Timestamp => Ty::Time,
            FieldTy::StrList => Ty::List(Box::new(Ty::Str)),
            FieldTy::Obj(f) => Ty::Obj(f),
            FieldTy::ObjList(f) => Ty::List(Box::new(Ty::Obj(f))),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Ty::Int => "int".into(),
            Ty::Double => "double".into(),
            Ty::Str => "string".into(),
            Ty::Bool => "bool".into(),
            Ty::Time => "timestamp".into(),
            Ty::Duration => "duration".into(),
            Ty::Null => "null".into(),
            Ty::List(t) => format!("list({})", t.name()),
            Ty::Obj(_) => "map".into(),
            Ty::Map(t) => format!("map(string, {})", t.name()),
            Ty::Dyn => "dyn".into(),
        }
    }

    fn numeric(&self) -> bool {
        matches!(self, Ty::Int | Ty::Double | Ty::Dyn)
    }

    fn is(&self, other: &Ty) -> bool {
        *self == Ty::Dyn || *other == Ty::Dyn || self == other
    }
}

/// A problem at an AST node.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub node: u64,
    pub kind: &'static str,
    pub message: String,
}

/// What the checker learnt about an expression.
#[derive(Debug, Default)]
pub struct Checked {
    pub findings: Vec<Finding>,
    /// Context paths the expression reads, e.g. `order.units_allocated`, sorted.
    pub reads: Vec<String>,
    /// Whether it reads `now` (its value can change with time alone).
    pub time_dependent: bool,
    pub nodes: usize,
}

struct Checker {
    scope: Vec<(String, Ty)>,
    out: Checked,
}

/// Checks `expr`; returns the result type and what was found.
pub fn check(expr: &IdedExpr) -> (Ty, Checked) {
    let mut c = Checker { scope: Vec::new(), out: Checked::default() };
    let ty = c.expr(expr);
    // Reads are kept at full depth: `order.ship_to.country`, not also `order.ship_to`.
    let all = std::mem::take(&mut c.out.reads);
    let mut reads: Vec<String> = all
        .iter()
        .filter(|r| {
            !all.iter().any(|o| o.len() > r.len() && o.starts_with(r.as_str()) && o[r.len()..].starts_with('.'))
        })
        .cloned()
        .collect();
    reads.sort();
    reads.dedup();
    c.out.reads = reads;
    (ty, c.out)
}

impl Checker {
    fn err(&mut self, node: u64, kind: &'static str, message: String) {
        // One finding per node is enough; a mistake deep down would repeat on every parent.
        if !self.out.findings.iter().any(|f| f.node == node) {
            self.out.findings.push(Finding { node, kind, message });
        }
    }

    fn local(&self, name: &str) -> Option<Ty> {
        self.scope.iter().rev().find(|(n, _)| n == name).map(|(_, t)| t.clone())
    }

    /// `order.ship_to.country` as segments, when the expression is such a path on a context root.
    fn context_path<'e>(&self, e: &'e IdedExpr) -> Option<Vec<&'e str>> {
        let mut segs = Vec::new();
        let mut cur = e;
        loop {
            match &cur.expr {
                Expr::Ident(name) => {
                    if self.local(name).is_some() {
                        return None;
                    }
                    segs.push(name.as_str());
                    segs.reverse();
                    return Some(segs);
                }
                Expr::Select(s) if !s.test => {
                    segs.push(s.field.as_str());
                    cur = &s.operand;
                }
                _ => return None,
            }
        }
    }

    fn expr(&mut self, e: &IdedExpr) -> Ty {
        self.out.nodes += 1;
        match &e.expr {
            Expr::Unspecified => Ty::Dyn,
            Expr::Literal(l) => match l {
                LiteralValue::Boolean(_) => Ty::Bool,
                LiteralValue::Bytes(_) => Ty::Dyn,
                LiteralValue::Double(_) => Ty::Double,
                LiteralValue::Int(_) | LiteralValue::UInt(_) => Ty::Int,
                LiteralValue::Null => Ty::Null,
                LiteralValue::String(_) => Ty::Str,
            },
            Expr::Ident(name) => {
                if let Some(t) = self.local(name) {
                    return t;
                }
                if let Some(root) = ROOTS.iter().find(|r| r.name == name) {
                    self.out.reads.push(name.clone());
                    if name == "now" {
                        self.out.time_dependent = true;
                    }
                    return Ty::from_field(root.ty);
                }
                let hint = suggest(name, ROOTS.iter().map(|r| r.name))
                    .map(|s| format!(" Did you mean `{s}`?"))
                    .unwrap_or_default();
                self.err(
                    e.id,
                    "unknown_field",
                    format!(
                        "unknown variable `{name}`; expressions can use order, customer, lines, warehouse, now and risk.{hint}"
                    ),
                );
                Ty::Dyn
            }
            Expr::Select(s) => {
                let operand = self.expr(&s.operand);
                let ty = match &operand {
                    Ty::Obj(fields) => match fields.iter().find(|f| f.name == s.field) {
                        Some(f) => Ty::from_field(f.ty),
                        None => {
                            let what = self
                                .context_path(&s.operand)
                                .map(|p| format!("`{}`", p.join(".")))
                                .unwrap_or_else(|| "this value".into());
                            let hint = suggest(&s.field, fields.iter().map(|f| f.name))
                                .map(|x| format!(" Did you mean `{x}`?"))
                                .unwrap_or_else(|| {
                                    let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
                                    format!(" Its fields are: {}.", names.join(", "))
                                });
                            self.err(e.id, "unknown_field", format!("{what} has no field `{}`.{hint}", s.field));
                            Ty::Dyn
                        }
                    },
                    Ty::Map(v) => (**v).clone(),
                    Ty::Dyn => Ty::Dyn,
                    other => {
                        self.err(e.id, "type", format!("cannot read field `{}` of a {}", s.field, other.name()));
                        Ty::Dyn
                    }
                };
                if let Some(path) = self.context_path(e)
                    && schema::lookup(&path).is_some()
                {
                    self.out.reads.push(path.join("."));
                }
                if s.test { Ty::Bool } else { ty }
            }
            Expr::List(l) => {
                let mut elem: Option<Ty> = None;
                for x in &l.elements {
                    let t = self.expr(x);
                    elem = Some(match elem {
                        None => t,
                        Some(p) if p == t => p,
                        Some(_) => Ty::Dyn,
                    });
                }
                Ty::List(Box::new(elem.unwrap_or(Ty::Dyn)))
            }
            Expr::Map(m) => {
                let mut val: Option<Ty> = None;
                for entry in &m.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        self.expr(&me.key);
                        let t = self.expr(&me.value);
                        val = Some(match val {
                            None => t,
                            Some(p) if p == t => p,
                            Some(_) => Ty::Dyn,
                        });
                    }
                }
                Ty::Map(Box::new(val.unwrap_or(Ty::Dyn)))
            }
            Expr::Struct(st) => {
                self.err(
                    e.id,
                    "type",
                    format!("message construction (`{}{{...}}`) is not available in policies", st.type_name),
                );
                Ty::Dyn
            }
            Expr::Comprehension(c) => {
                let range = self.expr(&c.iter_range);
                let elem = match &range {
                    Ty::List(t) => (**t).clone(),
                    Ty::Map(_) | Ty::Obj(_) => Ty::Str,
                    Ty::Dyn => Ty::Dyn,
                    other => {
                        self.err(c.iter_range.id, "type", format!("cannot iterate over a {}", other.name()));
                        Ty::Dyn
                    }
                };
                let accu = self.expr(&c.accu_init);
                let accu = if matches!(accu, Ty::List(_)) { Ty::List(Box::new(Ty::Dyn)) } else { accu };
                let depth = self.scope.len();
                self.scope.push((c.iter_var.clone(), elem));
                if let Some(v2) = &c.iter_var2 {
                    self.scope.push((v2.clone(), Ty::Dyn));
                }
                self.scope.push((c.accu_var.clone(), accu));
                self.expr(&c.loop_cond);
                self.expr(&c.loop_step);
                let r = self.expr(&c.result);
                self.scope.truncate(depth);
                r
            }
            Expr::Call(call) => self.call(e.id, &call.func_name, call.target.as_deref(), &call.args),
        }
    }

    fn call(&mut self, id: u64, name: &str, target: Option<&IdedExpr>, args: &[IdedExpr]) -> Ty {
        let t = target.map(|t| self.expr(t));
        let a: Vec<Ty> = args.iter().map(|x| self.expr(x)).collect();
        let bin = |a: &[Ty]| -> Option<(Ty, Ty)> {
            match a {
                [x, y] => Some((x.clone(), y.clone())),
                _ => None,
            }
        };
        match name {
            "_&&_" | "_||_" => {
                for (i, ty) in a.iter().enumerate() {
                    if !ty.is(&Ty::Bool) {
                        let op = if name == "_&&_" { "&&" } else { "||" };
                        self.err(args[i].id, "type", format!("`{op}` needs bool operands, this is a {}", ty.name()));
                    }
                }
                Ty::Bool
            }
            "!_" | "@not_strictly_false" => {
                if let Some(ty) = a.first()
                    && !ty.is(&Ty::Bool)
                {
                    self.err(args[0].id, "type", format!("`!` needs a bool, this is a {}", ty.name()));
                }
                Ty::Bool
            }
            "_?_:_" => {
                if let Some(c) = a.first()
                    && !c.is(&Ty::Bool)
                {
                    self.err(args[0].id, "type", format!("the condition of `? :` must be a bool, not a {}", c.name()));
                }
                match (a.get(1), a.get(2)) {
                    (Some(x), Some(y)) if x == y => x.clone(),
                    _ => Ty::Dyn,
                }
            }
            "_==_" | "_!=_" => {
                if let Some((x, y)) = bin(&a)
                    && !(x.is(&y) || (x.numeric() && y.numeric()) || x == Ty::Null || y == Ty::Null)
                {
                    self.err(id, "type", format!("compares a {} with a {}: they are never equal", x.name(), y.name()));
                }
                Ty::Bool
            }
            "_<_" | "_<=_" | "_>_" | "_>=_" => {
                if let Some((x, y)) = bin(&a) {
                    let ok = (x.numeric() && y.numeric())
                        || (x.is(&Ty::Str) && y.is(&Ty::Str))
                        || (x.is(&Ty::Time) && y.is(&Ty::Time))
                        || (x.is(&Ty::Duration) && y.is(&Ty::Duration));
                    if !ok {
                        self.err(id, "type", format!("cannot order a {} against a {}", x.name(), y.name()));
                    }
                }
                Ty::Bool
            }
            "_+_" | "_-_" | "_*_" | "_/_" | "_%_" => {
                let Some((x, y)) = bin(&a) else { return Ty::Dyn };
                let op = &name[1..2];
                match (&x, &y) {
                    (Ty::Dyn, o) | (o, Ty::Dyn) => {
                        if matches!(o, Ty::Bool | Ty::Null | Ty::Obj(_)) {
                            self.err(id, "type", format!("`{op}` does not apply to a {}", o.name()));
                        }
                        Ty::Dyn
                    }
                    (Ty::Int, Ty::Int) => Ty::Int,
                    (Ty::Double, Ty::Double) if op != "%" => Ty::Double,
                    (Ty::Int, Ty::Double) | (Ty::Double, Ty::Int) => {
                        self.err(
                            id,
                            "type",
                            format!(
                                "`{op}` mixes an int and a double; CEL does not convert implicitly: write double(x) or int(x)"
                            ),
                        );
                        Ty::Dyn
                    }
                    (Ty::Str, Ty::Str) if op == "+" => Ty::Str,
                    (Ty::List(_), Ty::List(_)) if op == "+" => x.clone(),
                    (Ty::Time, Ty::Duration) if op == "+" || op == "-" => Ty::Time,
                    (Ty::Duration, Ty::Time) if op == "+" => Ty::Time,
                    (Ty::Time, Ty::Time) if op == "-" => Ty::Duration,
                    (Ty::Duration, Ty::Duration) if op == "+" || op == "-" => Ty::Duration,
                    _ => {
                        self.err(id, "type", format!("`{op}` does not apply to a {} and a {}", x.name(), y.name()));
                        Ty::Dyn
                    }
                }
            }
            "-_" => {
                if let Some(x) = a.first()
                    && !(x.numeric() || *x == Ty::Duration)
                {
                    self.err(id, "type", format!("cannot negate a {}", x.name()));
                }
                a.first().cloned().unwrap_or(Ty::Dyn)
            }
            "_[_]" => {
                let Some((c, k)) = bin(&a) else { return Ty::Dyn };
                match c {
                    Ty::List(t) => {
                        if !k.is(&Ty::Int) {
                            self.err(id, "type", format!("a list is indexed by an int, not a {}", k.name()));
                        }
                        *t
                    }
                    Ty::Map(v) => *v,
                    Ty::Obj(fields) => {
                        if let Some(Expr::Literal(LiteralValue::String(s))) = args.get(1).map(|x| &x.expr) {
                            let key: &str = s.as_ref();
                            match fields.iter().find(|f| f.name == key) {
                                Some(f) => Ty::from_field(f.ty),
                                None => {
                                    self.err(id, "unknown_field", format!("no field `{key}` here"));
                                    Ty::Dyn
                                }
                            }
                        } else {
                            Ty::Dyn
                        }
                    }
                    Ty::Dyn => Ty::Dyn,
                    other => {
                        self.err(id, "type", format!("cannot index a {}", other.name()));
                        Ty::Dyn
                    }
                }
            }
            "@in" => {
                if let Some((_, c)) = bin(&a)
                    && !matches!(c, Ty::List(_) | Ty::Map(_) | Ty::Obj(_) | Ty::Dyn)
                {
                    self.err(id, "type", format!("`in` needs a list or a map on its right, not a {}", c.name()));
                }
                Ty::Bool
            }
            "size" => Ty::Int,
            "int" => Ty::Int,
            "uint" => Ty::Int,
            "double" => Ty::Double,
            "string" => Ty::Str,
            "bool" => Ty::Bool,
            "timestamp" => Ty::Time,
            "duration" => Ty::Duration,
            "dyn" | "type" => Ty::Dyn,
            "matches" | "contains" | "startsWith" | "endsWith" | "math.isInf" | "math.isNaN" | "math.isFinite" => {
                Ty::Bool
            }
            "lowerAscii" | "upperAscii" | "trim" | "replace" | "substring" | "join" | "format" | "charAt"
            | "reverse" | "quote" => {
                if name == "join" && matches!(&t, Some(Ty::List(e)) if !e.is(&Ty::Str)) {
                    self.err(id, "type", "join() needs a list of strings".into());
                }
                if t.is_none() || t.as_ref().is_some_and(|t| t.is(&Ty::Str)) || name == "join" {
                    Ty::Str
                } else {
                    Ty::Dyn
                }
            }
            "split" => Ty::List(Box::new(Ty::Str)),
            "indexOf" | "lastIndexOf" | "getFullYear" | "getMonth" | "getDate" | "getDayOfMonth" | "getDayOfWeek"
            | "getDayOfYear" | "getHours" | "getMinutes" | "getSeconds" | "getMilliseconds" | "math.bitAnd"
            | "math.bitOr" | "math.bitXor" | "math.bitNot" | "math.bitShiftLeft" | "math.bitShiftRight" => Ty::Int,
            "math.ceil" | "math.floor" | "math.round" | "math.trunc" | "math.sqrt" => Ty::Double,
            "math.abs" | "math.sign" => a.first().cloned().unwrap_or(Ty::Dyn),
            "math.@max" | "math.@min" => {
                let all: Vec<Ty> = match a.as_slice() {
                    [Ty::List(e)] => vec![(**e).clone()],
                    _ => a.clone(),
                };
                if let Some(bad) = all.iter().find(|x| !x.numeric()) {
                    self.err(id, "type", format!("math.greatest/least take numbers, not a {}", bad.name()));
                }
                match all.as_slice() {
                    [first, rest @ ..] if rest.iter().all(|r| r == first) => first.clone(),
                    _ => Ty::Dyn,
                }
            }
            "distinct" | "flatten" | "sort" | "slice" | "lists.range" => Ty::List(Box::new(Ty::Dyn)),
            other => {
                let known = ["size", "int", "double", "string", "contains", "startsWith", "matches", "join"];
                let hint = suggest(other, known).map(|s| format!(" Did you mean `{s}`?")).unwrap_or_default();
                self.err(id, "type", format!("unknown function `{other}`.{hint}"));
                Ty::Dyn
            }
        }
    }
}
