//! Live-operations counts and carrier attempts (migration 0110): the functions of
//! `crate::ops_sql::ops_store`, over PostgreSQL (placeholders rewritten by `ops_sql::pg`).

type Pool = sqlx::PgPool;

fn sql(text: &'static str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(crate::ops_sql::pg(text))
}

crate::ops_sql::ops_store!();

/// PostgreSQL only: the SQLite store writes attempts through its writer (`SqliteStore::on_writer`).
pub(super) async fn record_carrier_attempt(pool: &Pool, a: &crate::CarrierAttempt) -> Result<(), crate::StoreError> {
    sqlx::query(sql(crate::ops_sql::INSERT_ATTEMPT))
        .bind(crate::time::to_micros(a.at))
        .bind(&a.carrier)
        .bind(&a.warehouse)
        .bind(&a.order_id)
        .bind(&a.outcome)
        .execute(pool)
        .await?;
    Ok(())
}
