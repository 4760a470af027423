//! Test support: a fresh, empty store of the backend the test run asks for. With
//! `TEST_POSTGRES_URL=postgres://…` every call creates its own database on that
//! server, so the same integration suite runs against SQLite and PostgreSQL.

use std::path::Path;
use std::sync::Arc;

use sqlx::{Connection, PgConnection, SqliteConnection};

use crate::{PgOptions, PgStore, SqliteOptions, SqliteStore, Store, StoreError};

pub const ENV: &str = "TEST_POSTGRES_URL";

/// The PostgreSQL server to test against, if any.
pub fn postgres_url() -> Option<String> {
    std::env::var(ENV).ok().filter(|u| u.starts_with("postgres"))
}

/// Creates an empty database on the test server and returns its URL.
pub async fn fresh_postgres_database(server_url: &str) -> Result<String, StoreError> {
    let mut admin = PgConnection::connect(server_url).await?;
    let name = format!("t_{}", uuid::Uuid::now_v7().simple());
    // The name is ours (a UUID), never input: safe to splice.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&mut admin).await?;
    let _ = admin.close().await;
    let (base, query) = match server_url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (server_url, String::new()),
    };
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    Ok(format!("{base}/{name}{query}"))
}

/// Where a fresh store lives: an SQLite file in `dir`, or a new PostgreSQL database.
#[derive(Debug, Clone)]
pub enum Location {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Location {
    pub async fn fresh(dir: &Path) -> Location {
        match postgres_url() {
            Some(url) => Location::Postgres(fresh_postgres_database(&url).await.expect("create a test database")),
            None => Location::Sqlite(dir.join("test.db")),
        }
    }

    pub async fn open(&self) -> Arc<dyn Store> {
        self.open_with(Default::default()).await
    }

    /// Opens the store with these optional follow-ups (e.g. Odoo write-back jobs) enabled.
    pub async fn open_with(&self, follow_ups: dispatch_core::effects::FollowUpConfig) -> Arc<dyn Store> {
        self.open_publishing(follow_ups, crate::PublishEvents::Always).await
    }

    /// Opens the store with these follow-ups, publishing changes when `publish` says.
    pub async fn open_publishing(
        &self,
        follow_ups: dispatch_core::effects::FollowUpConfig,
        publish: crate::PublishEvents,
    ) -> Arc<dyn Store> {
        match self {
            Location::Sqlite(p) => {
                let mut o = SqliteOptions::new(p);
                o.follow_ups = follow_ups;
                o.publish = publish;
                Arc::new(SqliteStore::open(o).await.expect("open SQLite"))
            }
            Location::Postgres(url) => {
                let mut o = PgOptions::new(url);
                o.follow_ups = follow_ups;
                o.publish = publish;
                Arc::new(PgStore::open(o).await.expect("open PostgreSQL"))
            }
        }
    }

    /// Runs raw SQL on the database behind the store's back (tamper tests).
    pub async fn exec(&self, sql: &str) -> Result<(), StoreError> {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self {
            Location::Sqlite(p) => {
                let mut c = SqliteConnection::connect(&format!("sqlite://{}", p.display())).await?;
                sqlx::raw_sql(sql).execute(&mut c).await?;
                let _ = c.close().await;
            }
            Location::Postgres(url) => {
                let mut c = PgConnection::connect(url).await?;
                sqlx::raw_sql(sql).execute(&mut c).await?;
                let _ = c.close().await;
            }
        }
        Ok(())
    }

    /// Command-line arguments that point `dispatchd` at this store.
    pub fn cli_args(&self) -> Vec<String> {
        match self {
            Location::Sqlite(p) => vec!["--data-dir".into(), p.parent().unwrap_or(p).display().to_string()],
            Location::Postgres(url) => vec!["--database-url".into(), url.clone()],
        }
    }
}
