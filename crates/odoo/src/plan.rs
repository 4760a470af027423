//! The sync planner, pure: which pickings to ask Odoo for next, and how far the cursor may
//! move once a page's upserts committed.
//!
//! The cursor is `(write_date, id)` of the last record applied. Odoo stamps `write_date` with
//! its transaction's start time (second precision), so a transaction that started before our
//! last read but committed after it carries an *older* `write_date` than records we have
//! already seen. Each run therefore starts `overlap` before the cursor and re-reads that
//! window (upserts are idempotent: unchanged records write nothing); within a run pages are
//! keyed by `(write_date, id)` so equal timestamps never lose or repeat a record.

use chrono::{Duration, NaiveDateTime};
use serde_json::{Value, json};

pub const ODOO_DATETIME: &str = "%Y-%m-%d %H:%M:%S";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    /// Odoo's `write_date`, `YYYY-MM-DD HH:MM:SS` (UTC): sorts as text.
    pub write_date: String,
    pub id: i64,
}

impl Cursor {
    /// Parses the stored form `write_date|id`.
    pub fn parse(s: &str) -> Option<Cursor> {
        let (wd, id) = s.rsplit_once('|')?;
        NaiveDateTime::parse_from_str(wd, ODOO_DATETIME).ok()?;
        Some(Cursor { write_date: wd.to_string(), id: id.parse().ok()? })
    }

    /// The cursor of a record read from Odoo.
    pub fn of(rec: &serde_json::Map<String, Value>) -> Option<Cursor> {
        let wd = rec.get("write_date")?.as_str()?;
        NaiveDateTime::parse_from_str(wd, ODOO_DATETIME).ok()?;
        Some(Cursor { write_date: wd.to_string(), id: rec.get("id")?.as_i64()? })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}|{}", self.write_date, self.id)
    }
}

/// Where a run starts reading: `overlap` before the stored cursor; everything when none.
pub fn start_of(stored: Option<&Cursor>, overlap: Duration) -> Option<String> {
    let c = stored?;
    let t = NaiveDateTime::parse_from_str(&c.write_date, ODOO_DATETIME).ok()?;
    Some((t - overlap).format(ODOO_DATETIME).to_string())
}

/// The domain of the next page: outgoing pickings from `start`, after the last one read.
pub fn page_domain(start: Option<&str>, after: Option<&Cursor>) -> Value {
    let mut d = vec![json!(["picking_type_code", "=", "outgoing"])];
    match (after, start) {
        (Some(a), _) => {
            d.push(json!("|"));
            d.push(json!(["write_date", ">", a.write_date]));
            d.push(json!("&"));
            d.push(json!(["write_date", "=", a.write_date]));
            d.push(json!(["id", ">", a.id]));
        }
        (None, Some(s)) => d.push(json!(["write_date", ">=", s])),
        (None, None) => {}
    }
    Value::Array(d)
}

/// The order of pages; must match the keyset of [`page_domain`].
pub const PAGE_ORDER: &str = "write_date asc, id asc";

/// The cursor after a committed page: never backwards (the overlap window re-reads older
/// records).
pub fn advance(current: Option<&Cursor>, page_last: &Cursor) -> Cursor {
    match current {
        Some(c) if c >= page_last => c.clone(),
        _ => page_last.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(wd: &str, id: i64) -> Cursor {
        Cursor { write_date: wd.into(), id }
    }

    #[test]
    fn cursor_round_trips_and_orders_by_time_then_id() {
        let x = c("2026-11-27 10:00:00", 42);
        assert_eq!(Cursor::parse(&x.to_string()), Some(x.clone()));
        assert!(Cursor::parse("yesterday|1").is_none());
        assert!(c("2026-11-27 10:00:00", 43) > x);
        assert!(c("2026-11-27 10:00:01", 1) > x);
    }

    #[test]
    fn runs_start_an_overlap_before_the_cursor() {
        assert_eq!(start_of(None, Duration::seconds(60)), None);
        let x = c("2026-11-27 10:00:00", 42);
        assert_eq!(start_of(Some(&x), Duration::seconds(90)).as_deref(), Some("2026-11-27 09:58:30"));
    }

    #[test]
    fn pages_are_keyed_by_write_date_then_id() {
        assert_eq!(page_domain(None, None), json!([["picking_type_code", "=", "outgoing"]]));
        assert_eq!(
            page_domain(Some("2026-11-27 09:58:30"), None),
            json!([["picking_type_code", "=", "outgoing"], ["write_date", ">=", "2026-11-27 09:58:30"]])
        );
        let d = page_domain(Some("x"), Some(&c("2026-11-27 10:00:00", 42)));
        assert_eq!(d[1], json!("|"));
        assert_eq!(d[5], json!(["id", ">", 42]));
    }

    #[test]
    fn the_cursor_never_moves_back() {
        let x = c("2026-11-27 10:00:00", 42);
        assert_eq!(advance(Some(&x), &c("2026-11-27 09:59:00", 50)), x);
        assert_eq!(advance(Some(&x), &c("2026-11-27 10:00:00", 43)).id, 43);
        assert_eq!(advance(None, &x), x);
    }
}
