//! The intelligence tables: dispatch history and risk models (migration 0060).

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row, Sqlite};

use crate::time::{from_micros, to_micros};
use crate::{HistoryRow, ModelRow, StoreError};

type Pool = sqlx::SqlitePool;

pub(super) async fn insert_history(pool: &Pool, rows: &[HistoryRow]) -> Result<u64, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut n = 0;
    for chunk in rows.chunks(1000) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO dispatch_history (order_id, warehouse, released_at, departed_late, record) ",
        );
        q.push_values(chunk, |mut b, r| {
            b.push_bind(&r.order_id)
                .push_bind(&r.warehouse)
                .push_bind(to_micros(r.released_at))
                .push_bind(r.departed_late)
                .push_bind(&r.record);
        });
        q.push(
            " ON CONFLICT (order_id) DO UPDATE SET warehouse = excluded.warehouse, released_at = excluded.released_at, \
             departed_late = excluded.departed_late, record = excluded.record",
        );
        n += q.build().execute(&mut *tx).await?.rows_affected();
    }
    tx.commit().await?;
    Ok(n)
}

pub(super) async fn history(pool: &Pool, from: Option<DateTime<Utc>>) -> Result<Vec<String>, StoreError> {
    let rows =
        sqlx::query("SELECT record FROM dispatch_history WHERE released_at >= ?1 ORDER BY released_at, order_id")
            .bind(from.map_or(i64::MIN, to_micros))
            .fetch_all(pool)
            .await?;
    rows.iter().map(|r| r.try_get::<String, _>("record").map_err(StoreError::from)).collect()
}

pub(super) async fn history_count(pool: &Pool) -> Result<i64, StoreError> {
    Ok(sqlx::query("SELECT COUNT(*) AS n FROM dispatch_history").fetch_one(pool).await?.try_get("n")?)
}

pub(super) async fn insert_model(pool: &Pool, m: &ModelRow, artifact: &[u8]) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO risk_models (version, created_at, status, activated_at, summary, artifact) \
         VALUES (?1, ?2, 'candidate', NULL, ?3, ?4)",
    )
    .bind(&m.version)
    .bind(to_micros(m.created_at))
    .bind(&m.summary)
    .bind(artifact)
    .execute(pool)
    .await?;
    Ok(())
}

fn model_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<ModelRow, StoreError> {
    Ok(ModelRow {
        version: r.try_get("version")?,
        created_at: from_micros(r.try_get("created_at")?),
        status: r.try_get("status")?,
        activated_at: r.try_get::<Option<i64>, _>("activated_at")?.map(from_micros),
        summary: r.try_get("summary")?,
    })
}

pub(super) async fn models(pool: &Pool) -> Result<Vec<ModelRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT version, created_at, status, activated_at, summary FROM risk_models ORDER BY created_at DESC, version DESC",
    )
    .fetch_all(pool)
    .await?;
    rows.iter().map(model_from_row).collect()
}

pub(super) async fn model_artifact(pool: &Pool, version: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let row =
        sqlx::query("SELECT artifact FROM risk_models WHERE version = ?1").bind(version).fetch_optional(pool).await?;
    Ok(row.map(|r| r.try_get::<Vec<u8>, _>("artifact")).transpose()?)
}

pub(super) async fn activate_model(pool: &Pool, version: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let exists = sqlx::query("SELECT 1 AS one FROM risk_models WHERE version = ?1")
        .bind(version)
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_none() {
        return Ok(false);
    }
    sqlx::query("UPDATE risk_models SET status = 'retired' WHERE status = 'active' AND version <> ?1")
        .bind(version)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE risk_models SET status = 'active', activated_at = ?2 WHERE version = ?1")
        .bind(version)
        .bind(to_micros(now))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

pub(super) async fn active_model(pool: &Pool) -> Result<Option<(ModelRow, Vec<u8>)>, StoreError> {
    let row = sqlx::query("SELECT * FROM risk_models WHERE status = 'active'").fetch_optional(pool).await?;
    match row {
        Some(r) => Ok(Some((model_from_row(&r)?, r.try_get("artifact")?))),
        None => Ok(None),
    }
}
