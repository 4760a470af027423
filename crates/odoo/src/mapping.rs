//! Which Odoo field fills which dispatchd field: a configurable, documented mapping from an
//! outgoing `stock.picking` with its `sale.order`, its partners (`res.partner`: the delivery
//! address and the customer) and its `stock.move`s to a dispatch order. Pure.
//!
//! Paths are rooted at the picking: `name` is `stock.picking.name`, `sale_id.commitment_date`
//! is the sale order's field, `partner_id.zip` the delivery address', `sale_id.partner_id.ref`
//! the customer's. Line paths are `stock.move` fields. A list means "the first that is set".

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use dispatch_core::{Address, CreditStatus, Customer, Line, OrderFacts, Payment, PaymentStatus, ServiceLevel};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The source name of orders that come from Odoo: (`odoo`, picking name) is their key.
pub const SOURCE: &str = "odoo";

pub const PICKING: &str = "stock.picking";
pub const SALE: &str = "sale.order";
pub const PARTNER: &str = "res.partner";
pub const MOVE: &str = "stock.move";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mapping {
    /// The order's `external_id` (its key together with source `odoo`).
    pub external_id: String,
    /// Where the warehouse comes from; the part before the first `/` (Odoo's warehouse short
    /// code in a picking name like `WH/OUT/00042`) is looked up in `warehouses`.
    pub warehouse: String,
    /// Odoo warehouse short code → dispatchd warehouse code.
    pub warehouses: BTreeMap<String, String>,
    pub customer_id: Vec<String>,
    pub customer_name: Vec<String>,
    /// A text field holding `standard`, `silver`, `gold`, `platinum` or `key_account`.
    pub customer_tier: Vec<String>,
    pub account_owner: Vec<String>,
    /// The customer's receivable and credit limit: over the limit → `over_limit`.
    pub credit: String,
    pub credit_limit: String,
    /// Sales team (or any field) → channel through `channels`.
    pub channel: Vec<String>,
    pub channels: BTreeMap<String, String>,
    /// A text field holding a service level code; else `urgent_service_level` for pickings of
    /// priority `1` (starred), else `default_service_level`.
    pub service_level: Vec<String>,
    pub default_service_level: ServiceLevel,
    pub urgent_service_level: ServiceLevel,
    /// The promised delivery date (its calendar date, UTC).
    pub promised_date: Vec<String>,
    pub ship_to_name: Vec<String>,
    pub ship_to_street: Vec<String>,
    pub ship_to_street2: Vec<String>,
    pub ship_to_city: Vec<String>,
    pub ship_to_postcode: Vec<String>,
    pub ship_to_country: Vec<String>,
    pub payment_terms: Vec<String>,
    /// Odoo carrier name → dispatchd carrier name (unmapped carriers: no preference).
    pub carrier: String,
    pub carriers: BTreeMap<String, String>,
    /// `stock.move` fields of each line.
    pub line_product: String,
    pub line_qty: String,
    /// Reserved quantity: `quantity` on Odoo 17+, `reserved_availability` on 16.
    pub line_qty_allocated: String,
    pub line_unit_value: String,
    /// The move's total weight (kg); divided by the quantity for the per-unit weight.
    pub line_weight: String,
}

fn v(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl Default for Mapping {
    fn default() -> Self {
        Mapping {
            external_id: "name".into(),
            warehouse: "name".into(),
            warehouses: BTreeMap::new(),
            customer_id: v(&["sale_id.partner_id.ref", "sale_id.partner_id.id", "partner_id.id"]),
            customer_name: v(&["sale_id.partner_id.name", "partner_id.name"]),
            customer_tier: v(&["sale_id.partner_id.x_dispatch_tier"]),
            account_owner: v(&["sale_id.user_id", "sale_id.partner_id.user_id"]),
            credit: "sale_id.partner_id.credit".into(),
            credit_limit: "sale_id.partner_id.credit_limit".into(),
            channel: v(&["sale_id.team_id"]),
            channels: BTreeMap::new(),
            service_level: v(&["sale_id.x_dispatch_service_level"]),
            default_service_level: ServiceLevel::Standard,
            urgent_service_level: ServiceLevel::Express,
            promised_date: v(&["sale_id.commitment_date", "date_deadline", "scheduled_date"]),
            ship_to_name: v(&["partner_id.name"]),
            ship_to_street: v(&["partner_id.street"]),
            ship_to_street2: v(&["partner_id.street2"]),
            ship_to_city: v(&["partner_id.city"]),
            ship_to_postcode: v(&["partner_id.zip"]),
            ship_to_country: v(&["partner_id.country_code"]),
            payment_terms: v(&["sale_id.payment_term_id"]),
            carrier: "carrier_id".into(),
            carriers: BTreeMap::new(),
            line_product: "product_id".into(),
            line_qty: "product_uom_qty".into(),
            line_qty_allocated: "quantity".into(),
            line_unit_value: "price_unit".into(),
            line_weight: "weight".into(),
        }
    }
}

/// Fields the sync itself needs besides the mapping's.
const PICKING_FIELDS: &[&str] =
    &["id", "name", "state", "picking_type_code", "write_date", "sale_id", "partner_id", "move_ids", "priority"];
const SALE_FIELDS: &[&str] = &["id", "name", "partner_id"];
const PARTNER_FIELDS: &[&str] = &["id", "name"];
const MOVE_FIELDS: &[&str] = &["id", "picking_id", "state"];

/// The fields to read of each model, derived from the mapping.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSets {
    pub picking: Vec<String>,
    pub sale: Vec<String>,
    pub ship_to: Vec<String>,
    pub customer: Vec<String>,
    pub moves: Vec<String>,
}

impl Mapping {
    fn picking_paths(&self) -> Vec<&str> {
        let mut all: Vec<&str> =
            vec![&self.external_id, &self.warehouse, &self.credit, &self.credit_limit, &self.carrier];
        for list in [
            &self.customer_id,
            &self.customer_name,
            &self.customer_tier,
            &self.account_owner,
            &self.channel,
            &self.service_level,
            &self.promised_date,
            &self.ship_to_name,
            &self.ship_to_street,
            &self.ship_to_street2,
            &self.ship_to_city,
            &self.ship_to_postcode,
            &self.ship_to_country,
            &self.payment_terms,
        ] {
            all.extend(list.iter().map(String::as_str));
        }
        all
    }

    pub fn field_sets(&self) -> FieldSets {
        let mut picking: BTreeSet<String> = PICKING_FIELDS.iter().map(|s| s.to_string()).collect();
        let mut sale: BTreeSet<String> = SALE_FIELDS.iter().map(|s| s.to_string()).collect();
        let mut ship_to: BTreeSet<String> = PARTNER_FIELDS.iter().map(|s| s.to_string()).collect();
        let mut customer = ship_to.clone();
        for p in self.picking_paths() {
            match p.split('.').collect::<Vec<_>>().as_slice() {
                ["sale_id", "partner_id", f] => {
                    customer.insert(f.to_string());
                }
                ["sale_id", f] => {
                    sale.insert(f.to_string());
                }
                ["partner_id", f] => {
                    ship_to.insert(f.to_string());
                }
                [f] => {
                    picking.insert(f.to_string());
                }
                _ => {}
            }
        }
        let mut moves: BTreeSet<String> = MOVE_FIELDS.iter().map(|s| s.to_string()).collect();
        for f in
            [&self.line_product, &self.line_qty, &self.line_qty_allocated, &self.line_unit_value, &self.line_weight]
        {
            moves.insert(f.clone());
        }
        FieldSets {
            picking: picking.into_iter().collect(),
            sale: sale.into_iter().collect(),
            ship_to: ship_to.into_iter().collect(),
            customer: customer.into_iter().collect(),
            moves: moves.into_iter().collect(),
        }
    }

    /// Paths the mapping cannot resolve (checked at start, so a typo is named early).
    pub fn check(&self) -> Vec<String> {
        self.picking_paths()
            .into_iter()
            .filter(|p| {
                let parts: Vec<&str> = p.split('.').collect();
                !matches!(parts.as_slice(), [_] | ["sale_id", _] | ["partner_id", _] | ["sale_id", "partner_id", _])
            })
            .map(|p| {
                format!("`{p}`: paths are `field`, `sale_id.field`, `partner_id.field` or `sale_id.partner_id.field`")
            })
            .collect()
    }
}

/// One picking with what it refers to, as read from Odoo.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bundle {
    pub picking: Map<String, Value>,
    pub sale: Option<Map<String, Value>>,
    pub ship_to: Option<Map<String, Value>>,
    pub customer: Option<Map<String, Value>>,
    pub moves: Vec<Map<String, Value>>,
}

/// What a picking means for dispatchd.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    Upsert(Box<OrderFacts>),
    /// Cancelled in Odoo.
    Cancel {
        external_id: String,
        reason: String,
    },
    /// Not an open outgoing delivery dispatchd decides on (validated, or not outgoing).
    Ignore {
        external_id: String,
        why: String,
    },
}

/// A picking that cannot become an order, naming the Odoo field and what to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("stock.picking {picking}: {field} {problem}")]
pub struct MappingError {
    pub picking: String,
    /// `model.field` in Odoo.
    pub field: String,
    pub problem: String,
}

/// Odoo's "not set" is `false`.
fn is_set(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

/// Text of a value: a many2one's display name, a number's digits.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(a) if a.len() == 2 => a[1].as_str().map(|s| s.trim().to_string()),
        Value::Bool(true) => Some("true".into()),
        _ => None,
    }
}

fn number(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn m2o_id(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::Array(a) => a.first().and_then(Value::as_i64),
        _ => None,
    }
}

impl Bundle {
    pub fn picking_name(&self) -> String {
        self.picking.get("name").and_then(Value::as_str).unwrap_or("?").to_string()
    }
    pub fn picking_id(&self) -> i64 {
        self.picking.get("id").and_then(Value::as_i64).unwrap_or(0)
    }
    pub fn sale_id(&self) -> Option<i64> {
        m2o_id(self.picking.get("sale_id"))
    }
    pub fn ship_to_id(&self) -> Option<i64> {
        m2o_id(self.picking.get("partner_id"))
    }
    pub fn customer_id(&self) -> Option<i64> {
        self.sale.as_ref().and_then(|s| m2o_id(s.get("partner_id")))
    }
    pub fn move_ids(&self) -> Vec<i64> {
        self.picking
            .get("move_ids")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default()
    }

    /// The value at a path and the `model.field` it names (for messages).
    fn at(&self, path: &str) -> (Value, String) {
        let parts: Vec<&str> = path.split('.').collect();
        let (rec, model, field) = match parts.as_slice() {
            ["sale_id", "partner_id", f] => (self.customer.as_ref(), PARTNER, *f),
            ["sale_id", f] => (self.sale.as_ref(), SALE, *f),
            ["partner_id", f] => (self.ship_to.as_ref(), PARTNER, *f),
            [f] => (Some(&self.picking), PICKING, *f),
            _ => (None, PICKING, path),
        };
        let value = rec.and_then(|r| r.get(field)).cloned().unwrap_or(Value::Bool(false));
        // Ids of related records are set whenever the record is there.
        (value, format!("{model}.{field}"))
    }

    fn first(&self, paths: &[String]) -> Option<Value> {
        paths.iter().map(|p| self.at(p).0).find(is_set)
    }

    fn first_text(&self, paths: &[String]) -> Option<String> {
        self.first(paths).and_then(|v| text(&v)).filter(|s| !s.is_empty())
    }
}

/// Maps one picking. Pure: the same bundle and mapping give the same result.
pub fn map_picking(b: &Bundle, m: &Mapping) -> Result<Mapped, MappingError> {
    let name = b.picking_name();
    let err = |field: String, problem: String| MappingError { picking: name.clone(), field, problem };
    let (ext, ext_field) = b.at(&m.external_id);
    let external_id = text(&ext)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| err(ext_field, "is empty; it is the order's external_id".into()))?;
    let state = b.picking.get("state").and_then(Value::as_str).unwrap_or("");
    if state == "cancel" {
        return Ok(Mapped::Cancel { external_id, reason: "cancelled in Odoo".into() });
    }
    if b.picking.get("picking_type_code").and_then(Value::as_str).is_some_and(|c| c != "outgoing") {
        return Ok(Mapped::Ignore { external_id, why: "not an outgoing transfer".into() });
    }
    if state == "done" {
        return Ok(Mapped::Ignore { external_id, why: "validated (done) in Odoo".into() });
    }

    let (wh_value, wh_field) = b.at(&m.warehouse);
    let wh_text = text(&wh_value).unwrap_or_default();
    let short = wh_text.split('/').next().unwrap_or("").trim().to_string();
    let warehouse = m.warehouses.get(&short).cloned().ok_or_else(|| {
        err(wh_field.clone(), format!("gives warehouse `{short}`, which [odoo.mapping.warehouses] does not map; add `{short} = \"<dispatchd warehouse code>\"`"))
    })?;

    let promised = b.first(&m.promised_date).and_then(|v| text(&v)).ok_or_else(|| {
        err(
            m.promised_date.join(" / "),
            "are all empty; set the sale order's delivery date (commitment_date) or the picking's deadline".into(),
        )
    })?;
    let promised_date = NaiveDate::parse_from_str(promised.get(..10).unwrap_or(&promised), "%Y-%m-%d")
        .map_err(|_| err(m.promised_date.join(" / "), format!("holds `{promised}`, not a date")))?;

    let service_level = match b.first_text(&m.service_level) {
        Some(code) => ServiceLevel::from_code(&code.to_ascii_lowercase()).ok_or_else(|| {
            err(
                m.service_level.join(" / "),
                format!("holds `{code}`; use one of same_day, next_day, express, standard, economy"),
            )
        })?,
        None if b.picking.get("priority").and_then(Value::as_str) == Some("1") => m.urgent_service_level,
        None => m.default_service_level,
    };

    let credit_status = match (b.at(&m.credit).0, b.at(&m.credit_limit).0) {
        (c, l) if number(&l).is_some_and(|l| l > 0.0) && number(&c).is_some_and(|c| c > number(&l).unwrap_or(0.0)) => {
            CreditStatus::OverLimit
        }
        _ => CreditStatus::Ok,
    };
    let customer_id = b
        .first(&m.customer_id)
        .and_then(|v| text(&v))
        .map(|t| if t.chars().all(|c| c.is_ascii_digit()) { format!("res.partner/{t}") } else { t });
    let customer_id = customer_id
        .ok_or_else(|| err(format!("{PICKING}.partner_id"), "is empty; the picking needs a customer".into()))?;
    let tier = b.first_text(&m.customer_tier).map(|t| t.to_ascii_lowercase()).unwrap_or_else(|| "standard".into());

    let street = match (b.first_text(&m.ship_to_street), b.first_text(&m.ship_to_street2)) {
        (Some(a), Some(b2)) => format!("{a}, {b2}"),
        (Some(a), None) => a,
        (None, Some(b2)) => b2,
        (None, None) => String::new(),
    };
    let ship_to = Address {
        name: b.first_text(&m.ship_to_name).unwrap_or_default(),
        street,
        city: b.first_text(&m.ship_to_city).unwrap_or_default(),
        postcode: b.first_text(&m.ship_to_postcode).unwrap_or_default(),
        country: b.first_text(&m.ship_to_country).unwrap_or_default().to_ascii_uppercase(),
    };

    let mut lines = Vec::new();
    for mv in &b.moves {
        if mv.get("state").and_then(Value::as_str) == Some("cancel") {
            continue;
        }
        let get = |f: &str| mv.get(f).cloned().unwrap_or(Value::Bool(false));
        let product = get(&m.line_product);
        let sku = sku_of(&product).ok_or_else(|| {
            err(
                format!("{MOVE}.{}", m.line_product),
                format!("of move {} is empty", mv.get("id").unwrap_or(&Value::Null)),
            )
        })?;
        let qty_f = number(&get(&m.line_qty)).unwrap_or(0.0);
        let qty = qty_f.ceil().max(0.0) as u32;
        let allocated = number(&get(&m.line_qty_allocated)).unwrap_or(0.0).floor().clamp(0.0, f64::from(qty)) as u32;
        let weight = number(&get(&m.line_weight)).filter(|w| *w > 0.0 && qty_f > 0.0).map(|w| w / qty_f);
        lines.push(Line {
            sku,
            product_family: None,
            qty,
            qty_allocated: allocated,
            unit_value: number(&get(&m.line_unit_value)).unwrap_or(0.0),
            unit_cost: None,
            weight_kg: weight,
            hazmat: false,
        });
    }
    if lines.is_empty() {
        return Err(err(format!("{PICKING}.move_ids"), "has no open stock moves; add products to the delivery".into()));
    }

    let channel = b.first_text(&m.channel).map(|c| m.channels.get(&c).cloned().unwrap_or_else(|| slug(&c)));
    let carrier_preference = text(&b.at(&m.carrier).0).and_then(|c| m.carriers.get(&c).cloned());
    Ok(Mapped::Upsert(Box::new(OrderFacts {
        source: SOURCE.into(),
        external_id,
        warehouse,
        channel,
        customer: Customer {
            id: customer_id,
            name: b.first_text(&m.customer_name).unwrap_or_default(),
            tier,
            credit_status,
            account_owner: b.first_text(&m.account_owner),
            // Not mapped yet: customer notices for Odoo orders need the partner's `email` and
            // `lang` in the fetched fields (docs/odoo.md, gaps).
            email: None,
            locale: None,
            notifications_opt_out: false,
        },
        service_level,
        promised_date,
        ship_to,
        lines,
        payment: Payment {
            terms: b.first_text(&m.payment_terms).map(|t| slug(&t)).unwrap_or_else(|| "net30".into()),
            status: PaymentStatus::Ok,
        },
        documents: vec![],
        transport_mode: None,
        carrier_preference,
    })))
}

/// `[P-100] Pump` → `P-100`; a product without internal reference → `product.product/<id>`.
fn sku_of(product: &Value) -> Option<String> {
    let name = text(product)?;
    if let Some(rest) = name.strip_prefix('[')
        && let Some((code, _)) = rest.split_once(']')
        && !code.trim().is_empty()
    {
        return Some(code.trim().to_string());
    }
    match m2o_id(Some(product)) {
        Some(id) => Some(format!("product.product/{id}")),
        None => Some(name),
    }
}

fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    pub(crate) fn bundle() -> Bundle {
        Bundle {
            picking: obj(json!({"id": 7, "name": "WH/OUT/00042", "state": "assigned", "picking_type_code": "outgoing",
                "partner_id": [11, "Acme BV, Receiving"], "sale_id": [3, "S00042"], "priority": "0",
                "scheduled_date": "2026-11-27 08:00:00", "date_deadline": false, "carrier_id": [1, "DHL Express"], "move_ids": [21, 22]})),
            sale: Some(obj(
                json!({"id": 3, "name": "S00042", "partner_id": [10, "Acme BV"], "commitment_date": "2026-11-28 10:00:00",
                "team_id": [2, "Website"], "user_id": [7, "Marc Demo"], "payment_term_id": [4, "30 Days"], "x_dispatch_service_level": false}),
            )),
            ship_to: Some(obj(
                json!({"id": 11, "name": "Acme BV, Receiving", "street": "Damrak 1", "street2": false, "city": "Amsterdam", "zip": "1012 LG", "country_code": "NL"}),
            )),
            customer: Some(obj(
                json!({"id": 10, "name": "Acme BV", "ref": "C-100", "credit": 900.0, "credit_limit": 1000.0, "x_dispatch_tier": "gold", "user_id": false}),
            )),
            moves: vec![
                obj(
                    json!({"id": 21, "product_id": [5, "[P-1] Pump"], "product_uom_qty": 4.0, "quantity": 4.0, "price_unit": 120.0, "weight": 14.0, "state": "assigned"}),
                ),
                obj(
                    json!({"id": 22, "product_id": [6, "Seal kit"], "product_uom_qty": 2.0, "quantity": 1.0, "price_unit": 5.0, "weight": 0.0, "state": "partially_available"}),
                ),
            ],
        }
    }

    fn mapping() -> Mapping {
        let mut m = Mapping::default();
        m.warehouses.insert("WH".into(), "AMS".into());
        m.carriers.insert("DHL Express".into(), "dhl".into());
        m.channels.insert("Website".into(), "ecommerce".into());
        m
    }

    #[test]
    fn maps_the_default_fields() {
        let Mapped::Upsert(f) = map_picking(&bundle(), &mapping()).unwrap() else { panic!() };
        assert_eq!(f.source, "odoo");
        assert_eq!(f.external_id, "WH/OUT/00042");
        assert_eq!(f.warehouse, "AMS");
        assert_eq!(f.customer.id, "C-100");
        assert_eq!(f.customer.tier, "gold");
        assert_eq!(f.customer.account_owner.as_deref(), Some("Marc Demo"));
        assert_eq!(f.customer.credit_status, CreditStatus::Ok);
        assert_eq!(f.channel.as_deref(), Some("ecommerce"));
        assert_eq!(f.promised_date.to_string(), "2026-11-28");
        assert_eq!(f.service_level, ServiceLevel::Standard);
        assert_eq!(f.ship_to.postcode, "1012 LG");
        assert_eq!(f.payment.terms, "30_days");
        assert_eq!(f.carrier_preference.as_deref(), Some("dhl"));
        assert_eq!(f.lines.len(), 2);
        assert_eq!((f.lines[0].sku.as_str(), f.lines[0].qty, f.lines[0].qty_allocated), ("P-1", 4, 4));
        assert_eq!(f.lines[0].weight_kg, Some(3.5));
        assert_eq!((f.lines[1].sku.as_str(), f.lines[1].qty_allocated), ("product.product/6", 1));
    }

    #[test]
    fn credit_over_limit_urgent_and_fallback_dates() {
        let mut b = bundle();
        b.customer.as_mut().unwrap().insert("credit".into(), json!(1500.0));
        b.sale.as_mut().unwrap().insert("commitment_date".into(), json!(false));
        b.picking.insert("date_deadline".into(), json!("2026-12-01 12:00:00"));
        b.picking.insert("priority".into(), json!("1"));
        let Mapped::Upsert(f) = map_picking(&b, &mapping()).unwrap() else { panic!() };
        assert_eq!(f.customer.credit_status, CreditStatus::OverLimit);
        assert_eq!(f.promised_date.to_string(), "2026-12-01");
        assert_eq!(f.service_level, ServiceLevel::Express);
    }

    #[test]
    fn cancelled_and_done_pickings() {
        let mut b = bundle();
        b.picking.insert("state".into(), json!("cancel"));
        assert!(matches!(map_picking(&b, &mapping()).unwrap(), Mapped::Cancel { .. }));
        b.picking.insert("state".into(), json!("done"));
        assert!(matches!(map_picking(&b, &mapping()).unwrap(), Mapped::Ignore { .. }));
    }

    #[test]
    fn errors_name_the_odoo_field_and_the_fix() {
        let mut b = bundle();
        b.picking.insert("name".into(), json!("XX/OUT/1"));
        let e = map_picking(&b, &mapping()).unwrap_err();
        assert_eq!(e.field, "stock.picking.name");
        assert!(e.to_string().contains("[odoo.mapping.warehouses]"), "{e}");
        let mut b = bundle();
        b.sale.as_mut().unwrap().insert("x_dispatch_service_level".into(), json!("warp"));
        let e = map_picking(&b, &mapping()).unwrap_err();
        assert!(e.to_string().contains("sale_id.x_dispatch_service_level"), "{e}");
        let mut b = bundle();
        b.moves.clear();
        assert_eq!(map_picking(&b, &mapping()).unwrap_err().field, "stock.picking.move_ids");
    }

    #[test]
    fn field_sets_follow_the_mapping() {
        let s = mapping().field_sets();
        assert!(s.customer.contains(&"credit_limit".to_string()));
        assert!(s.sale.contains(&"commitment_date".to_string()));
        assert!(s.picking.contains(&"write_date".to_string()));
        assert!(s.moves.contains(&"quantity".to_string()));
        let mut m = mapping();
        m.promised_date = vec!["a.b.c.d".into()];
        assert_eq!(m.check().len(), 1);
    }
}
