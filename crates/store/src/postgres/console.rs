//! Reads of the operations console: the dispatch board's counts and aging, the KPIs.

use chrono::{DateTime, Utc};
use dispatch_core::kpi::Kpis;
use sqlx::Row;

use super::PgStore;
use crate::time::{from_micros, to_micros};
use crate::{BoardCell, StoreError};

impl PgStore {
    /// One pass over the `orders_board` index (state, warehouse, state_since) for the states
    /// that are not final: it covers the query, so the table is not read, and delivered or
    /// cancelled orders (which only grow) cost nothing.
    pub(super) async fn board_cells(&self, aged_before: DateTime<Utc>) -> Result<Vec<BoardCell>, StoreError> {
        let rows = sqlx::query(
            "SELECT warehouse, state, count(*) AS n, min(state_since) AS oldest, \
             sum(CASE WHEN state_since < $1 THEN 1 ELSE 0 END) AS aged \
             FROM orders GROUP BY warehouse, state ORDER BY warehouse, state",
        )
        .bind(to_micros(aged_before))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(BoardCell {
                    warehouse: r.try_get("warehouse")?,
                    state: r.try_get("state")?,
                    count: r.try_get("n")?,
                    oldest_since: r.try_get::<Option<i64>, _>("oldest")?.map(from_micros),
                    aged: r.try_get::<Option<i64>, _>("aged")?.unwrap_or(0),
                })
            })
            .collect()
    }

    /// The KPIs of every order received at or after `from`: two aggregates over the
    /// `orders_kpi` covering index (migration 0100), see `kpi_rows`.
    pub(super) async fn kpi_fold(&self, from: DateTime<Utc>) -> Result<Kpis, StoreError> {
        let totals: Vec<crate::kpi_rows::Totals> =
            sqlx::query_as(sqlx::AssertSqlSafe(crate::kpi_rows::totals_sql("$1")))
                .bind(to_micros(from))
                .fetch_all(&self.pool)
                .await?;
        let cycles: Vec<(String, i64, i64, i64)> =
            sqlx::query_as(sqlx::AssertSqlSafe(crate::kpi_rows::cycles_sql("$1")))
                .bind(to_micros(from))
                .fetch_all(&self.pool)
                .await?;
        Ok(crate::kpi_rows::assemble(totals, cycles))
    }

    /// Held orders per hold reason: the distinct reason lists of the on-hold orders from the
    /// `orders_state_holds` index, split here (the same counts as expanding every order's list
    /// in SQL, without reading each held order's row).
    pub(super) async fn holds_by_reason(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT hold_reasons::text, count(*) FROM orders WHERE state = 'on_hold' GROUP BY hold_reasons",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut by: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
        for (list, n) in rows {
            for r in serde_json::from_str::<Vec<String>>(&list)? {
                *by.entry(r).or_default() += n;
            }
        }
        Ok(by.into_iter().collect())
    }
}
