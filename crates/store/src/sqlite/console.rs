//! Reads of the operations console: the dispatch board's counts and aging, the KPIs.

use chrono::{DateTime, Utc};
use dispatch_core::kpi::{Kpis, OrderKpi};
use futures::TryStreamExt;
use sqlx::Row;

use super::SqliteStore;
use crate::time::{from_micros, to_micros};
use crate::{BoardCell, StoreError};

impl SqliteStore {
    /// One pass over the `orders_board` index (state, warehouse, state_since) for the states
    /// that are not final: it covers the query, so the table is not read, and delivered or
    /// cancelled orders (which only grow) cost nothing.
    pub(super) async fn board_cells(&self, aged_before: DateTime<Utc>) -> Result<Vec<BoardCell>, StoreError> {
        let rows = sqlx::query(
            "SELECT warehouse, state, count(*) AS n, min(state_since) AS oldest, \
             sum(CASE WHEN state_since < ?1 THEN 1 ELSE 0 END) AS aged \
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

    /// Every order received at or after `from`, folded into the KPIs one narrow row at a
    /// time from the `orders_kpi` covering index (migration 0100): no event is read and memory
    /// does not grow with the window beyond one cycle time per dispatched order.
    pub(super) async fn kpi_fold(&self, from: DateTime<Utc>) -> Result<Kpis, StoreError> {
        let mut rows = sqlx::query(
            "SELECT warehouse, created_at, released_at, released_on_time, dispatched_at, touched, \
             expedite_requested, expedite_approved FROM orders WHERE created_at >= ?1",
        )
        .bind(to_micros(from))
        .fetch(&self.pool);
        let mut k = Kpis::default();
        while let Some(r) = rows.try_next().await? {
            k.add(&OrderKpi {
                warehouse: r.try_get("warehouse")?,
                received_at: from_micros(r.try_get("created_at")?),
                released_at: r.try_get::<Option<i64>, _>("released_at")?.map(from_micros),
                released_on_time: r.try_get("released_on_time")?,
                dispatched_at: r.try_get::<Option<i64>, _>("dispatched_at")?.map(from_micros),
                touched: r.try_get("touched")?,
                expedite_requested: r.try_get("expedite_requested")?,
                expedite_approved: r.try_get("expedite_approved")?,
            });
        }
        Ok(k.finish())
    }

    /// Held orders per hold reason: the distinct reason lists of the on-hold orders from the
    /// `orders_state_holds` index, split here (the same counts as expanding every order's list
    /// in SQL, without reading each held order's row).
    pub(super) async fn holds_by_reason(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT hold_reasons, count(*) FROM orders WHERE state = 'on_hold' GROUP BY hold_reasons")
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
