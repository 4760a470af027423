//! Outbound webhook endpoints, fan-out jobs and notifications (SQLite). Generated alike for
//! both backends; only the placeholders and the pool type differ.

use chrono::{DateTime, Utc};

use crate::StoreError;
use crate::outbound_rows::{
    self, ENDPOINT_COLUMNS, EndpointSecret, NOTIFICATION_COLUMNS, NotificationRecord, WebhookEndpointRow,
};
use crate::time::to_micros;

type Pool = sqlx::Pool<sqlx::Sqlite>;

pub(crate) async fn insert_endpoint(pool: &Pool, e: &WebhookEndpointRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, url, description, event_types, secrets, status, disabled_reason, \
         failing_since, last_success_at, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .bind(&e.id)
    .bind(&e.url)
    .bind(&e.description)
    .bind(serde_json::to_string(&e.event_types)?)
    .bind(serde_json::to_string(&e.secrets)?)
    .bind(&e.status)
    .bind(&e.disabled_reason)
    .bind(e.failing_since.map(to_micros))
    .bind(e.last_success_at.map(to_micros))
    .bind(to_micros(e.created_at))
    .bind(to_micros(e.updated_at))
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn endpoints(pool: &Pool) -> Result<Vec<WebhookEndpointRow>, StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY created_at, id"
    )))
    .fetch_all(pool)
    .await?;
    rows.iter().map(outbound_rows::endpoint).collect()
}

pub(crate) async fn endpoint(pool: &Pool, id: &str) -> Result<Option<WebhookEndpointRow>, StoreError> {
    let row =
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ?1")))
            .bind(id)
            .fetch_optional(pool)
            .await?;
    row.as_ref().map(outbound_rows::endpoint).transpose()
}

pub(crate) async fn set_secrets(
    pool: &Pool,
    id: &str,
    secrets: &[EndpointSecret],
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let r = sqlx::query("UPDATE webhook_endpoints SET secrets = ?2, updated_at = ?3 WHERE id = ?1")
        .bind(id)
        .bind(serde_json::to_string(secrets)?)
        .bind(to_micros(now))
        .execute(pool)
        .await?;
    Ok(r.rows_affected() == 1)
}

pub(crate) async fn set_status(
    pool: &Pool,
    id: &str,
    status: &str,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    // Enabling again starts a fresh failure clock.
    let r = sqlx::query(
        "UPDATE webhook_endpoints SET status = ?2, disabled_reason = ?3, updated_at = ?4, \
         failing_since = CASE WHEN ?2 = 'active' THEN NULL ELSE failing_since END WHERE id = ?1",
    )
    .bind(id)
    .bind(status)
    .bind(reason)
    .bind(to_micros(now))
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub(crate) async fn delete_endpoint(pool: &Pool, id: &str) -> Result<bool, StoreError> {
    let r = sqlx::query("DELETE FROM webhook_endpoints WHERE id = ?1").bind(id).execute(pool).await?;
    Ok(r.rows_affected() == 1)
}

pub(crate) async fn record_result(
    pool: &Pool,
    id: &str,
    ok: bool,
    now: DateTime<Utc>,
) -> Result<Option<WebhookEndpointRow>, StoreError> {
    let sql = if ok {
        format!(
            "UPDATE webhook_endpoints SET failing_since = NULL, last_success_at = ?2, updated_at = ?2 WHERE id = ?1 \
             RETURNING {ENDPOINT_COLUMNS}"
        )
    } else {
        format!(
            "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, ?2), updated_at = ?2 WHERE id = ?1 \
             RETURNING {ENDPOINT_COLUMNS}"
        )
    };
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(to_micros(now)).fetch_optional(pool).await?;
    row.as_ref().map(outbound_rows::endpoint).transpose()
}

pub(crate) async fn insert_notification(pool: &Pool, n: &NotificationRecord) -> Result<Option<i64>, StoreError> {
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO notifications (order_id, kind, channel, recipient, locale, subject, status, attempts, last_error, \
         dedupe_key, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
         ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
    )
    .bind(&n.order_id)
    .bind(&n.kind)
    .bind(&n.channel)
    .bind(&n.recipient)
    .bind(&n.locale)
    .bind(&n.subject)
    .bind(&n.status)
    .bind(n.attempts)
    .bind(&n.last_error)
    .bind(&n.dedupe_key)
    .bind(to_micros(n.created_at))
    .bind(to_micros(n.updated_at))
    .fetch_optional(pool)
    .await?;
    Ok(id)
}

pub(crate) async fn update_notification(
    pool: &Pool,
    id: i64,
    status: &str,
    attempts: i64,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE notifications SET status = ?2, attempts = ?3, last_error = ?4, updated_at = ?5 WHERE id = ?1")
        .bind(id)
        .bind(status)
        .bind(attempts)
        .bind(error)
        .bind(to_micros(now))
        .execute(pool)
        .await?;
    Ok(())
}

pub(crate) async fn notifications(pool: &Pool, order_id: &str) -> Result<Vec<NotificationRecord>, StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE order_id = ?1 ORDER BY created_at, id"
    )))
    .bind(order_id)
    .fetch_all(pool)
    .await?;
    rows.iter().map(outbound_rows::notification).collect()
}

pub(crate) async fn last_notification_at(
    pool: &Pool,
    order_id: &str,
    kind: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let at: Option<i64> = sqlx::query_scalar(
        "SELECT max(created_at) FROM notifications WHERE order_id = ?1 AND kind = ?2 AND status <> 'suppressed'",
    )
    .bind(order_id)
    .bind(kind)
    .fetch_one(pool)
    .await?;
    Ok(at.map(crate::time::from_micros))
}

/// Finished jobs past retention (the partial index `jobs_done` holds just these).
pub(crate) const PURGE_DONE_JOBS: &str = "DELETE FROM jobs WHERE status = 'done' AND updated_at < ?1";

/// Deletes operational rows older than `before` (never events or orders): finished jobs,
/// finished schedule runs, idempotency answers and notifications. Rows deleted.
pub(crate) async fn purge(pool: &Pool, before: DateTime<Utc>) -> Result<u64, StoreError> {
    let at = to_micros(before);
    let mut n = 0;
    for sql in [
        PURGE_DONE_JOBS,
        "DELETE FROM schedule_runs WHERE finished_at IS NOT NULL AND finished_at < ?1",
        "DELETE FROM idempotency_keys WHERE created_at < ?1",
        "DELETE FROM notifications WHERE created_at < ?1 AND status IN ('sent', 'suppressed', 'failed')",
        "DELETE FROM carrier_attempts WHERE at < ?1",
    ] {
        n += sqlx::query(sql).bind(at).execute(pool).await?.rows_affected();
    }
    Ok(n)
}
