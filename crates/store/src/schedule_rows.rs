//! Row mapping shared by both backends (the columns are the same).

use sqlx::Row;

use crate::time::from_micros;
use crate::{DeadLetter, ScheduleRow, ScheduleRun, StoreError};

pub fn schedule<R: Row>(r: &R) -> Result<ScheduleRow, StoreError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database>,
    for<'a> bool: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i32: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(ScheduleRow {
        name: r.try_get("name")?,
        cadence: r.try_get("cadence")?,
        action: r.try_get("action")?,
        enabled: r.try_get("enabled")?,
        next_run_at: from_micros(r.try_get("next_run_at")?),
        running_since: r.try_get::<Option<i64>, _>("running_since")?.map(from_micros),
        running_node: r.try_get("running_node")?,
        consecutive_failures: r.try_get::<i32, _>("consecutive_failures")?.max(0) as u32,
        last_outcome: r.try_get("last_outcome")?,
        last_error: r.try_get("last_error")?,
    })
}

pub fn run<R: Row>(r: &R) -> Result<ScheduleRun, StoreError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database>,
{
    Ok(ScheduleRun {
        id: r.try_get("id")?,
        schedule: r.try_get("schedule")?,
        scheduled_for: from_micros(r.try_get("scheduled_for")?),
        node: r.try_get("node")?,
        started_at: from_micros(r.try_get("started_at")?),
        finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(from_micros),
        outcome: r.try_get("outcome")?,
        summary: r.try_get("summary")?,
        error: r.try_get("error")?,
    })
}

pub fn dead_letter<R: Row>(r: &R) -> Result<DeadLetter, StoreError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let payload: String = r.try_get("payload")?;
    Ok(DeadLetter {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        order_id: r.try_get("order_id")?,
        dedupe_key: r.try_get("dedupe_key")?,
        payload: serde_json::from_str(&payload)?,
        attempts: r.try_get("attempts")?,
        last_error: r.try_get("last_error")?,
        failed_at: from_micros(r.try_get("updated_at")?),
        created_at: from_micros(r.try_get("created_at")?),
    })
}
