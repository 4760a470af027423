//! Live-operations counts and carrier attempts (migration 0110): the functions of
//! `crate::ops_sql::ops_store`, over PostgreSQL (placeholders rewritten by `ops_sql::pg`).

type Pool = sqlx::PgPool;

fn sql(text: &'static str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(crate::ops_sql::pg(text))
}

crate::ops_sql::ops_store!();
