//! Outbound webhook endpoints and notifications: the stored shapes and the row mapping shared
//! by both backends (the columns are the same).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::StoreError;
use crate::time::from_micros;

/// One signing secret of an endpoint, sealed by the vault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointSecret {
    pub sealed: String,
    pub created_at: DateTime<Utc>,
    /// After a rotation the old secret keeps signing (beside the new one) until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// An outbound webhook subscription as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEndpointRow {
    pub id: String,
    pub url: String,
    pub description: Option<String>,
    /// Event type codes; empty means every type.
    pub event_types: Vec<String>,
    /// Newest first.
    pub secrets: Vec<EndpointSecret>,
    /// `active` or `disabled`.
    pub status: String,
    pub disabled_reason: Option<String>,
    /// First failure since the last success; `None` while healthy.
    pub failing_since: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A job to put in the outbox outside an order write (fan-out of a published event).
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub kind: String,
    pub order_id: Option<String>,
    /// Enqueuing the same key twice is a no-op.
    pub dedupe_key: String,
    pub payload: serde_json::Value,
    pub run_at: DateTime<Utc>,
}

/// A notification as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotificationRecord {
    pub id: i64,
    pub order_id: Option<String>,
    /// `dispatch_confirmation`, `delay_notice`, `proof_of_dispatch`, `proof_of_delivery`,
    /// `exception_alert`.
    pub kind: String,
    /// `email` or `webhook`.
    pub channel: String,
    pub recipient: String,
    pub locale: String,
    pub subject: String,
    /// `queued`, `sent`, `retrying`, `failed`, `suppressed`.
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub dedupe_key: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub fn endpoint<R: Row>(r: &R) -> Result<WebhookEndpointRow, StoreError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database>,
{
    let types: String = r.try_get("event_types")?;
    let secrets: String = r.try_get("secrets")?;
    Ok(WebhookEndpointRow {
        id: r.try_get("id")?,
        url: r.try_get("url")?,
        description: r.try_get("description")?,
        event_types: serde_json::from_str(&types)?,
        secrets: serde_json::from_str(&secrets)?,
        status: r.try_get("status")?,
        disabled_reason: r.try_get("disabled_reason")?,
        failing_since: r.try_get::<Option<i64>, _>("failing_since")?.map(from_micros),
        last_success_at: r.try_get::<Option<i64>, _>("last_success_at")?.map(from_micros),
        created_at: from_micros(r.try_get("created_at")?),
        updated_at: from_micros(r.try_get("updated_at")?),
    })
}

pub fn notification<R: Row>(r: &R) -> Result<NotificationRecord, StoreError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(NotificationRecord {
        id: r.try_get("id")?,
        order_id: r.try_get("order_id")?,
        kind: r.try_get("kind")?,
        channel: r.try_get("channel")?,
        recipient: r.try_get("recipient")?,
        locale: r.try_get("locale")?,
        subject: r.try_get("subject")?,
        status: r.try_get("status")?,
        attempts: r.try_get("attempts")?,
        last_error: r.try_get("last_error")?,
        dedupe_key: r.try_get("dedupe_key")?,
        created_at: from_micros(r.try_get("created_at")?),
        updated_at: from_micros(r.try_get("updated_at")?),
    })
}

pub const ENDPOINT_COLUMNS: &str = "id, url, description, event_types, secrets, status, disabled_reason, failing_since, \
     last_success_at, created_at, updated_at";
pub const NOTIFICATION_COLUMNS: &str = "id, order_id, kind, channel, recipient, locale, subject, status, attempts, \
     last_error, dedupe_key, created_at, updated_at";
