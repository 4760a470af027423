//! Odoo's search domains: a list in Polish (prefix) notation of leaves `[field, operator,
//! value]` and the operators `&`, `|` (binary) and `!` (unary). Leaves written one after the
//! other are joined by an implicit `&`, exactly as `odoo.osv.expression.normalize_domain` does.

use serde_json::Value;

/// A domain that Odoo would refuse, with Odoo's own wording where it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainError(pub String);

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    Leaf { field: String, op: Op, value: Value },
    True,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    In,
    NotIn,
    Ilike,
    NotIlike,
    Like,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "=" | "==" => Op::Eq,
            "!=" | "<>" => Op::Ne,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "<" => Op::Lt,
            "<=" => Op::Le,
            "in" => Op::In,
            "not in" => Op::NotIn,
            "ilike" => Op::Ilike,
            "not ilike" => Op::NotIlike,
            "like" => Op::Like,
            _ => return None,
        })
    }
}

enum Token {
    And,
    Or,
    Not,
    Leaf(Node),
}

/// Parses a domain (a JSON array). An empty domain matches everything.
pub fn parse(domain: &Value) -> Result<Node, DomainError> {
    let items = match domain {
        Value::Null | Value::Bool(false) => return Ok(Node::True),
        Value::Array(a) => a,
        other => return Err(DomainError(format!("Invalid domain: {other}"))),
    };
    let mut tokens = Vec::with_capacity(items.len());
    for item in items {
        tokens.push(match item {
            Value::String(s) if s == "&" => Token::And,
            Value::String(s) if s == "|" => Token::Or,
            Value::String(s) if s == "!" => Token::Not,
            Value::Array(leaf) => Token::Leaf(parse_leaf(leaf)?),
            other => return Err(DomainError(format!("Invalid domain term {other}"))),
        });
    }
    // Normalize: implicit `&` between consecutive top-level expressions.
    let mut expected = 1i64;
    let mut normalized: Vec<Token> = Vec::with_capacity(tokens.len() * 2);
    for t in tokens {
        if expected == 0 {
            normalized.insert(0, Token::And);
            expected = 1;
        }
        expected += match t {
            Token::And | Token::Or => 1,
            Token::Not => 0,
            Token::Leaf(_) => -1,
        };
        normalized.push(t);
    }
    if normalized.is_empty() {
        return Ok(Node::True);
    }
    if expected != 0 {
        return Err(DomainError("Invalid domain: an operator is missing an operand".into()));
    }
    // Evaluate the prefix expression from the right with a stack.
    let mut stack: Vec<Node> = Vec::new();
    for t in normalized.into_iter().rev() {
        match t {
            Token::Leaf(n) => stack.push(n),
            Token::Not => {
                let a = stack.pop().ok_or_else(|| DomainError("Invalid domain: `!` without operand".into()))?;
                stack.push(Node::Not(Box::new(a)));
            }
            Token::And | Token::Or => {
                let a = stack.pop().ok_or_else(|| DomainError("Invalid domain: missing operand".into()))?;
                let b = stack.pop().ok_or_else(|| DomainError("Invalid domain: missing operand".into()))?;
                stack.push(if matches!(t, Token::And) {
                    Node::And(Box::new(a), Box::new(b))
                } else {
                    Node::Or(Box::new(a), Box::new(b))
                });
            }
        }
    }
    match (stack.pop(), stack.is_empty()) {
        (Some(n), true) => Ok(n),
        _ => Err(DomainError("Invalid domain".into())),
    }
}

fn parse_leaf(leaf: &[Value]) -> Result<Node, DomainError> {
    // Odoo's TRUE_LEAF / FALSE_LEAF.
    if leaf == [Value::from(1), Value::from("="), Value::from(1)] {
        return Ok(Node::True);
    }
    if leaf == [Value::from(0), Value::from("="), Value::from(1)] {
        return Ok(Node::Not(Box::new(Node::True)));
    }
    let [field, op, value] = leaf else {
        return Err(DomainError(format!("Invalid leaf {}", Value::Array(leaf.to_vec()))));
    };
    let (Some(field), Some(op_s)) = (field.as_str(), op.as_str()) else {
        return Err(DomainError(format!("Invalid leaf {}", Value::Array(leaf.to_vec()))));
    };
    let op = Op::parse(&op_s.to_ascii_lowercase()).ok_or_else(|| {
        DomainError(format!("Invalid leaf {}: unknown operator {op_s:?}", Value::Array(leaf.to_vec())))
    })?;
    if matches!(op, Op::In | Op::NotIn) && !value.is_array() {
        // Odoo accepts a scalar for `in` and wraps it.
        return Ok(Node::Leaf { field: field.to_string(), op, value: Value::Array(vec![value.clone()]) });
    }
    Ok(Node::Leaf { field: field.to_string(), op, value: value.clone() })
}

/// The fields a domain reads (to refuse unknown ones the way Odoo does).
pub fn fields(node: &Node, out: &mut Vec<String>) {
    match node {
        Node::And(a, b) | Node::Or(a, b) => {
            fields(a, out);
            fields(b, out);
        }
        Node::Not(a) => fields(a, out),
        Node::Leaf { field, .. } => out.push(field.clone()),
        Node::True => {}
    }
}

/// Evaluates against a record. `get` returns a field's comparable value: for a many2one the
/// pair `[id, display_name]`, for x2many the list of ids, otherwise the stored value.
pub fn matches(node: &Node, get: &dyn Fn(&str) -> Value) -> bool {
    match node {
        Node::True => true,
        Node::And(a, b) => matches(a, get) && matches(b, get),
        Node::Or(a, b) => matches(a, get) || matches(b, get),
        Node::Not(a) => !matches(a, get),
        Node::Leaf { field, op, value } => leaf(&get(field), *op, value),
    }
}

fn is_falsy(v: &Value) -> bool {
    matches!(v, Value::Null | Value::Bool(false)) || v.as_array().is_some_and(|a| a.is_empty())
}

/// Compares scalars the way PostgreSQL would for Odoo's column types.
fn cmp(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn ilike(hay: &Value, needle: &Value) -> bool {
    let (Some(h), Some(n)) = (hay.as_str(), needle.as_str()) else { return false };
    // Odoo wraps the value in `%…%`; `%` and `_` inside are wildcards too. A plain substring
    // test covers the values integrators send.
    let n = n.trim_matches('%').to_lowercase();
    h.to_lowercase().contains(&n)
}

fn leaf(actual: &Value, op: Op, value: &Value) -> bool {
    // many2one: compare the id with numbers, the display name with strings.
    if let Some(pair) = actual.as_array().filter(|a| a.len() == 2 && a[0].is_i64() && a[1].is_string()) {
        let by_name = value.is_string() || value.as_array().is_some_and(|l| l.iter().any(Value::is_string));
        let side = if by_name { &pair[1] } else { &pair[0] };
        return scalar_leaf(side, op, value);
    }
    // x2many: the leaf holds when any related id matches (Odoo's semantics for `in`/`=`).
    if let Some(ids) = actual.as_array() {
        return match op {
            Op::Eq | Op::In => {
                if is_falsy(value) {
                    ids.is_empty()
                } else {
                    ids.iter().any(|id| scalar_leaf(id, Op::In, &as_list(value)))
                }
            }
            Op::Ne | Op::NotIn => {
                if is_falsy(value) {
                    !ids.is_empty()
                } else {
                    !ids.iter().any(|id| scalar_leaf(id, Op::In, &as_list(value)))
                }
            }
            _ => ids.iter().any(|id| scalar_leaf(id, op, value)),
        };
    }
    scalar_leaf(actual, op, value)
}

fn as_list(v: &Value) -> Value {
    if v.is_array() { v.clone() } else { Value::Array(vec![v.clone()]) }
}

fn scalar_leaf(actual: &Value, op: Op, value: &Value) -> bool {
    match op {
        Op::Eq => {
            // `= False` is `IS NULL` (or false for booleans).
            if matches!(value, Value::Bool(false) | Value::Null) {
                return is_falsy(actual);
            }
            cmp(actual, value) == Some(std::cmp::Ordering::Equal)
        }
        Op::Ne => !scalar_leaf(actual, Op::Eq, value),
        Op::Gt => cmp(actual, value) == Some(std::cmp::Ordering::Greater),
        Op::Ge => matches!(cmp(actual, value), Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)),
        Op::Lt => cmp(actual, value) == Some(std::cmp::Ordering::Less),
        Op::Le => matches!(cmp(actual, value), Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)),
        Op::In => value.as_array().is_some_and(|l| {
            l.iter().any(|v| {
                if matches!(v, Value::Bool(false)) {
                    is_falsy(actual)
                } else {
                    cmp(actual, v) == Some(std::cmp::Ordering::Equal)
                }
            })
        }),
        Op::NotIn => !scalar_leaf(actual, Op::In, value),
        Op::Ilike => ilike(actual, value),
        Op::NotIlike => !ilike(actual, value),
        Op::Like => match (actual.as_str(), value.as_str()) {
            (Some(h), Some(n)) => h.contains(n.trim_matches('%')),
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(domain: Value, rec: Value) -> bool {
        let n = parse(&domain).unwrap();
        matches(&n, &|f| rec.get(f).cloned().unwrap_or(Value::Bool(false)))
    }

    #[test]
    fn implicit_and_prefix_or_and_not() {
        let r =
            json!({"state": "assigned", "picking_type_code": "outgoing", "id": 7, "write_date": "2026-11-27 10:00:00"});
        assert!(eval(json!([["state", "=", "assigned"], ["picking_type_code", "=", "outgoing"]]), r.clone()));
        assert!(!eval(json!([["state", "=", "assigned"], ["picking_type_code", "=", "incoming"]]), r.clone()));
        assert!(eval(json!(["|", ["state", "=", "done"], ["id", ">", 5]]), r.clone()));
        assert!(!eval(json!(["!", ["id", "in", [7, 8]]]), r.clone()));
        assert!(eval(
            json!([
                "&",
                ["id", ">=", 7],
                "|",
                ["write_date", ">", "2026-11-27 10:00:00"],
                "&",
                ["write_date", "=", "2026-11-27 10:00:00"],
                ["id", ">", 6]
            ]),
            r.clone()
        ));
        assert!(eval(
            json!([["state", "not in", ["cancel", "done"]], ["id", "<=", 7], ["id", "<", 8], ["id", "!=", 3]]),
            r.clone()
        ));
        assert!(eval(json!([]), r));
    }

    #[test]
    fn many2one_ilike_and_falsy() {
        let r = json!({"partner_id": [3, "Acme BV"], "carrier_tracking_ref": false, "move_ids": [4, 5]});
        assert!(eval(json!([["partner_id", "=", 3]]), r.clone()));
        assert!(eval(json!([["partner_id", "ilike", "acme"]]), r.clone()));
        assert!(eval(json!([["carrier_tracking_ref", "=", false]]), r.clone()));
        assert!(eval(json!([["move_ids", "in", [5]]]), r.clone()));
        assert!(!eval(json!([["partner_id", "in", [1, 2]]]), r));
    }

    #[test]
    fn malformed_domains_are_refused() {
        assert!(parse(&json!(["|", ["a", "=", 1]])).is_err());
        assert!(parse(&json!([["a", "~", 1]])).is_err());
        assert!(parse(&json!("nope")).is_err());
        assert!(parse(&json!([["a", "="]])).is_err());
    }
}
