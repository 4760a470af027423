//! Request-level validation of order facts: things the sender must fix before dispatchd can
//! even hold the order (as opposed to readiness problems, which hold it).

use chrono::Datelike;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::order::OrderFacts;
use crate::warehouse::Warehouses;

/// One invalid field, named by its JSON path (`lines[2].qty`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

pub const MAX_LINES: usize = 1000;
const MAX_ID_LEN: usize = 128;

/// Every field error at once, so the sender fixes them in one round trip.
pub fn validate(f: &OrderFacts, warehouses: &Warehouses) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut text = |field: &str, value: &str, max: usize| {
        if value.trim().is_empty() {
            errs.push(FieldError::new(field, "must not be empty"));
        } else if value.len() > max {
            errs.push(FieldError::new(field, format!("must be at most {max} characters")));
        }
    };
    text("source", &f.source, 64);
    text("external_id", &f.external_id, MAX_ID_LEN);
    text("customer.id", &f.customer.id, MAX_ID_LEN);
    if !f.warehouse.trim().is_empty() && warehouses.get(&f.warehouse).is_none() {
        let known: Vec<&str> = warehouses.iter().map(|w| w.code.as_str()).collect();
        errs.push(FieldError::new(
            "warehouse",
            format!("unknown warehouse `{}`; known: {}", f.warehouse, known.join(", ")),
        ));
    } else if f.warehouse.trim().is_empty() {
        errs.push(FieldError::new("warehouse", "must not be empty"));
    }
    if !(2000..=2100).contains(&f.promised_date.year()) {
        errs.push(FieldError::new("promised_date", "must be a date between 2000 and 2100"));
    }
    if f.lines.is_empty() {
        errs.push(FieldError::new("lines", "an order needs at least one line"));
    } else if f.lines.len() > MAX_LINES {
        errs.push(FieldError::new("lines", format!("at most {MAX_LINES} lines per order")));
    }
    for (i, l) in f.lines.iter().enumerate().take(MAX_LINES) {
        if l.sku.trim().is_empty() {
            errs.push(FieldError::new(format!("lines[{i}].sku"), "must not be empty"));
        }
        if l.qty == 0 {
            errs.push(FieldError::new(format!("lines[{i}].qty"), "must be at least 1"));
        }
        if !(l.unit_value.is_finite() && l.unit_value >= 0.0) {
            errs.push(FieldError::new(format!("lines[{i}].unit_value"), "must be a non-negative number"));
        }
        for (name, v) in [("unit_cost", l.unit_cost), ("weight_kg", l.weight_kg)] {
            if let Some(v) = v
                && !(v.is_finite() && v >= 0.0)
            {
                errs.push(FieldError::new(format!("lines[{i}].{name}"), "must be a non-negative number"));
            }
        }
    }
    for (i, d) in f.documents.iter().enumerate() {
        if d.trim().is_empty() {
            errs.push(FieldError::new(format!("documents[{i}]"), "must not be empty"));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readiness::tests::{facts, warehouse};

    fn whs() -> Warehouses {
        Warehouses::new(vec![warehouse("AMS", "NL", "Europe/Amsterdam")]).unwrap()
    }

    #[test]
    fn a_good_order_has_no_errors() {
        assert!(validate(&facts(), &whs()).is_empty());
    }

    #[test]
    fn every_error_names_its_field() {
        let mut f = facts();
        f.source = " ".into();
        f.warehouse = "XXX".into();
        f.lines[0].qty = 0;
        f.lines[0].unit_value = f64::NAN;
        f.lines[0].weight_kg = Some(-1.0);
        let fields: Vec<String> = validate(&f, &whs()).into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["source", "warehouse", "lines[0].qty", "lines[0].unit_value", "lines[0].weight_kg"]);
        let mut g = facts();
        g.lines.clear();
        assert_eq!(validate(&g, &whs())[0].field, "lines");
    }
}
