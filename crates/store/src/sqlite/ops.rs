//! Live-operations counts and carrier attempts (migration 0110): the functions of
//! `crate::ops_sql::ops_store`, over SQLite.

type Pool = sqlx::SqlitePool;

fn sql(text: &'static str) -> &'static str {
    text
}

crate::ops_sql::ops_store!();
