//! The KPI aggregate both backends run over the projection's KPI columns (migration 0100):
//! counts and sums per warehouse and UTC day in SQL, and cycle times as a histogram at
//! [`CYCLE_RESOLUTION_SECS`], so a window of 100,000 orders comes back as a few hundred rows
//! (reading every order's row through the driver took seconds).

use chrono::{Duration, NaiveDate};
use dispatch_core::kpi::{KpiBucket, Kpis};

/// Cycle times are counted to this many seconds (0.1 h, the precision the page shows).
pub const CYCLE_RESOLUTION_SECS: i64 = 360;

const DAY_US: i64 = 86_400_000_000;

/// Counts and sums per warehouse and day (placeholder `{from}` is the backend's first bind).
pub(crate) fn totals_sql(from: &str) -> String {
    format!(
        "SELECT warehouse, created_at / {DAY_US} AS day, count(*) AS received, \
         sum(CASE WHEN released_at IS NOT NULL THEN 1 ELSE 0 END) AS released, \
         sum(CASE WHEN released_at IS NOT NULL AND released_on_time THEN 1 ELSE 0 END) AS on_time, \
         sum(CASE WHEN dispatched_at IS NOT NULL THEN 1 ELSE 0 END) AS dispatched, \
         sum(CASE WHEN dispatched_at IS NOT NULL AND NOT touched THEN 1 ELSE 0 END) AS touchless, \
         coalesce(sum(expedite_requested), 0.0) AS requested, coalesce(sum(expedite_approved), 0.0) AS approved \
         FROM orders WHERE created_at >= {from} GROUP BY warehouse, created_at / {DAY_US}"
    )
}

/// Dispatched orders per warehouse, day and cycle-time bucket.
pub(crate) fn cycles_sql(from: &str) -> String {
    let res = CYCLE_RESOLUTION_SECS * 1_000_000;
    format!(
        "SELECT warehouse, created_at / {DAY_US} AS day, \
         CASE WHEN dispatched_at > created_at THEN (dispatched_at - created_at) / {res} ELSE 0 END AS bucket, \
         count(*) AS n FROM orders WHERE created_at >= {from} AND dispatched_at IS NOT NULL \
         GROUP BY warehouse, created_at / {DAY_US}, \
         CASE WHEN dispatched_at > created_at THEN (dispatched_at - created_at) / {res} ELSE 0 END"
    )
}

pub(crate) fn day(n: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default() + Duration::days(n)
}

/// One row of [`totals_sql`].
#[derive(sqlx::FromRow)]
pub(crate) struct Totals {
    pub warehouse: String,
    pub day: i64,
    pub received: i64,
    pub released: i64,
    pub on_time: i64,
    pub dispatched: i64,
    pub touchless: i64,
    pub requested: f64,
    pub approved: f64,
}

pub(crate) fn assemble(totals: Vec<Totals>, cycles: Vec<(String, i64, i64, i64)>) -> Kpis {
    let mut k = Kpis::default();
    for t in totals {
        let b = k.daily.entry((t.warehouse, day(t.day))).or_insert_with(KpiBucket::default);
        b.received += t.received.max(0) as u64;
        b.released += t.released.max(0) as u64;
        b.released_on_time += t.on_time.max(0) as u64;
        b.dispatched += t.dispatched.max(0) as u64;
        b.dispatched_touchless += t.touchless.max(0) as u64;
        b.expedite_requested += t.requested;
        b.expedite_approved += t.approved;
    }
    for (w, d, bucket, n) in cycles {
        if let Some(b) = k.daily.get_mut(&(w, day(d))) {
            b.cycle_secs.extend(std::iter::repeat_n(bucket * CYCLE_RESOLUTION_SECS, n.max(0) as usize));
        }
    }
    k.finish()
}
