//! Reads of the operations console: the dispatch board's counts and aging, the KPIs' events.

use chrono::{DateTime, Utc};
use dispatch_core::{Event, EventData};
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

    pub(super) async fn kpi_events(&self, from: DateTime<Utc>, max_orders: u32) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(
            "SELECT order_id, version, at, actor, request_id, data FROM events WHERE order_id IN \
             (SELECT id FROM orders WHERE created_at >= $1 ORDER BY created_at DESC LIMIT $2) \
             ORDER BY order_id, version",
        )
        .bind(to_micros(from))
        .bind(i64::from(max_orders))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let data: String = r.try_get("data")?;
                Ok(Event {
                    order_id: r.try_get("order_id")?,
                    version: r.try_get::<i64, _>("version")? as u64,
                    at: from_micros(r.try_get("at")?),
                    actor: r.try_get("actor")?,
                    request_id: r.try_get("request_id")?,
                    data: serde_json::from_str::<EventData>(&data)?,
                })
            })
            .collect()
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
