//! Live-operations counts and carrier attempts (migration 0110); the SQL is shared with the
//! other backend in `crate::ops_sql`.

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::ops_sql;
use crate::time::{from_micros, to_micros};
use crate::{CarrierAttempt, CarrierAttemptTotal, OpsCount, OpsCounter, StoreError};

type Pool = sqlx::SqlitePool;

pub(super) async fn ops_counts(
    pool: &Pool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    hold_age: chrono::Duration,
) -> Result<Vec<OpsCount>, StoreError> {
    let (from, to) = (to_micros(from), to_micros(to));
    let age = hold_age.num_microseconds().unwrap_or(i64::MAX / 4).max(0);
    let mut out = Vec::new();
    let entered = sqlx::query(ops_sql::HOLDS_ENTERED).bind(from).bind(to).fetch_all(pool).await?;
    let aged = sqlx::query(ops_sql::HOLDS_AGED)
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
    for r in sqlx::query(ops_sql::BOOKING_FAILURES).bind(from).bind(to).fetch_all(pool).await? {
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

pub(super) async fn record_carrier_attempt(pool: &Pool, a: &CarrierAttempt) -> Result<(), StoreError> {
    sqlx::query(ops_sql::INSERT_ATTEMPT)
        .bind(to_micros(a.at))
        .bind(&a.carrier)
        .bind(&a.warehouse)
        .bind(&a.order_id)
        .bind(&a.outcome)
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn carrier_attempt_totals(
    pool: &Pool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<CarrierAttemptTotal>, StoreError> {
    let rows = sqlx::query(ops_sql::ATTEMPT_TOTALS).bind(to_micros(from)).bind(to_micros(to)).fetch_all(pool).await?;
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
