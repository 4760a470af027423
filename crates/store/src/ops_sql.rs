//! The live-operations aggregates behind [`crate::Store::ops_counts`] and the carrier
//! attempts (migration 0110), written once for both backends: `?N` placeholders, turned into
//! `$N` for PostgreSQL by [`pg`].
//!
//! Hold decisions are found through the partial index `events_holds`, whose predicate is
//! repeated literally here (both planners use a partial index only when the query states its
//! predicate). It tests the first bytes of the event's JSON: serde writes the tag first and
//! then `outcome`, the first field of an evaluation, so a held evaluation starts with
//! [`HOLD_PREFIX`]. A prefix costs the writer nothing like parsing every evaluation's JSON
//! would; the store tests plant real events, so a change of that layout fails them.

/// How a held evaluation's JSON starts.
pub const HOLD_PREFIX: &str = r#"{"type":"order.evaluated","outcome":"on_hold""#;

/// Microseconds in an hour: buckets are `at - at % HOUR`.
pub const HOUR_US: i64 = 3_600_000_000;

macro_rules! hold {
    ($alias:literal) => {
        concat!(
            "(",
            $alias,
            ".kind = 'order.exception' OR substr(",
            $alias,
            ".data, 1, 45) = '{\"type\":\"order.evaluated\",\"outcome\":\"on_hold\"')"
        )
    };
}

/// The hold is an entry: an exception, or a held evaluation whose previous evaluation (or
/// exception) of the order was not a held evaluation — re-holding for other reasons is not a
/// new hold.
macro_rules! entering {
    () => {
        "(e.kind = 'order.exception' OR COALESCE((SELECT substr(p.data, 1, 45) FROM events p \
         WHERE p.order_id = e.order_id AND p.version < e.version \
         AND p.kind IN ('order.evaluated', 'order.exception') ORDER BY p.version DESC LIMIT 1), '') \
         <> '{\"type\":\"order.evaluated\",\"outcome\":\"on_hold\"')"
    };
}

/// Holds and exceptions entered per hour and warehouse: `?1 <= at < ?2`.
pub const HOLDS_ENTERED: &str = concat!(
    "SELECT (e.at / 3600000000) * 3600000000 AS hour, o.warehouse AS warehouse, COUNT(*) AS n \
     FROM events e JOIN orders o ON o.id = e.order_id WHERE ",
    hold!("e"),
    " AND e.at >= ?1 AND e.at < ?2 AND ",
    entering!(),
    " GROUP BY 1, 2"
);

/// Holds (not exceptions) entered in `?1 <= at < ?2` with nothing resolving them within
/// `?3` µs — a release, cancellation, booking, split or an approved approval — counted in
/// the hour they reached that age. The caller passes the range shifted back by the age.
pub const HOLDS_AGED: &str = concat!(
    "SELECT ((e.at + ?3) / 3600000000) * 3600000000 AS hour, o.warehouse AS warehouse, COUNT(*) AS n \
     FROM events e JOIN orders o ON o.id = e.order_id WHERE ",
    hold!("e"),
    " AND e.kind = 'order.evaluated' AND e.at >= ?1 AND e.at < ?2 AND ",
    entering!(),
    " AND NOT EXISTS (SELECT 1 FROM events n WHERE n.order_id = e.order_id AND n.version > e.version \
     AND n.at < e.at + ?3 AND (n.kind IN ('order.cancelled', 'shipment.booked', 'order.split') \
     OR (n.kind = 'order.evaluated' AND substr(n.data, 1, 45) <> '{\"type\":\"order.evaluated\",\"outcome\":\"on_hold\"') \
     OR (n.kind = 'approval.closed' AND n.data LIKE '%\"status\":\"approved\"%'))) \
     GROUP BY 1, 2"
);

/// Failed carrier bookings per hour, warehouse and carrier: `?1 <= at < ?2`.
pub const BOOKING_FAILURES: &str = "SELECT (at / 3600000000) * 3600000000 AS hour, warehouse, carrier, COUNT(*) AS n \
     FROM carrier_attempts WHERE at >= ?1 AND at < ?2 AND outcome <> 'booked' GROUP BY 1, 2, 3";

/// Attempts and failures per carrier: `?1 <= at < ?2`.
pub const ATTEMPT_TOTALS: &str = "SELECT carrier, COUNT(*) AS attempts, \
     SUM(CASE WHEN outcome <> 'booked' THEN 1 ELSE 0 END) AS failures \
     FROM carrier_attempts WHERE at >= ?1 AND at < ?2 GROUP BY carrier ORDER BY carrier";

pub const INSERT_ATTEMPT: &str =
    "INSERT INTO carrier_attempts (at, carrier, warehouse, order_id, outcome) VALUES (?1, ?2, ?3, ?4, ?5)";

/// The same statement with PostgreSQL's `$N` placeholders (of constant SQL: safe to run as is).
pub fn pg(sql: &str) -> String {
    sql.replace('?', "$")
}

/// The live-operations store functions, written once: each backend's `ops` module defines
/// `Pool` and `sql` (the SQL text as its driver takes it) and expands this.
macro_rules! ops_store {
    () => {
        use chrono::{DateTime, Utc};
        use sqlx::Row;

        use crate::ops_sql;
        use crate::time::{from_micros, to_micros};
        use crate::{CarrierAttemptTotal, OpsCount, OpsCounter, StoreError};

        pub(super) async fn ops_counts(
            pool: &Pool,
            from: DateTime<Utc>,
            to: DateTime<Utc>,
            hold_age: chrono::Duration,
        ) -> Result<Vec<OpsCount>, StoreError> {
            let (from, to) = (to_micros(from), to_micros(to));
            let age = hold_age.num_microseconds().unwrap_or(i64::MAX / 4).max(0);
            let mut out = Vec::new();
            let entered = sqlx::query(sql(ops_sql::HOLDS_ENTERED)).bind(from).bind(to).fetch_all(pool).await?;
            let aged = sqlx::query(sql(ops_sql::HOLDS_AGED))
                .bind(from.saturating_sub(age))
                .bind(to.saturating_sub(age))
                .bind(age)
                .fetch_all(pool)
                .await?;
            for (counter, rows) in [(OpsCounter::HoldsEntered, entered), (OpsCounter::HoldsAged, aged)] {
                for r in rows {
                    out.push(OpsCount {
                        counter,
                        hour: from_micros(r.try_get("hour")?),
                        warehouse: r.try_get("warehouse")?,
                        carrier: None,
                        count: r.try_get("n")?,
                    });
                }
            }
            for r in sqlx::query(sql(ops_sql::BOOKING_FAILURES)).bind(from).bind(to).fetch_all(pool).await? {
                out.push(OpsCount {
                    counter: OpsCounter::BookingFailures,
                    hour: from_micros(r.try_get("hour")?),
                    warehouse: r.try_get("warehouse")?,
                    carrier: Some(r.try_get("carrier")?),
                    count: r.try_get("n")?,
                });
            }
            Ok(out)
        }

        pub(super) async fn carrier_attempt_totals(
            pool: &Pool,
            from: DateTime<Utc>,
            to: DateTime<Utc>,
        ) -> Result<Vec<CarrierAttemptTotal>, StoreError> {
            let rows = sqlx::query(sql(ops_sql::ATTEMPT_TOTALS))
                .bind(to_micros(from))
                .bind(to_micros(to))
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(CarrierAttemptTotal {
                        carrier: r.try_get("carrier")?,
                        attempts: r.try_get("attempts")?,
                        failures: r.try_get("failures")?,
                    })
                })
                .collect()
        }
    };
}
pub(crate) use ops_store;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hold_predicate_tests_exactly_the_prefix_of_a_held_evaluation() {
        assert_eq!(HOLD_PREFIX.len(), 45);
        assert!(hold!("e").contains(HOLD_PREFIX));
        assert!(HOLDS_AGED.contains(HOLD_PREFIX) && HOLDS_ENTERED.contains(HOLD_PREFIX));
        assert!(!HOLDS_AGED.contains('$'), "placeholders are ?N until pg()");
    }
}
