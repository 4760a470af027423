//! Scheduled actions as operators see them: what runs when, how the last run went, and the
//! record of every run (a failing schedule is visible here and alerts, never silent).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::problem::Problem;

#[derive(Serialize, ToSchema)]
pub struct ScheduleView {
    pub name: String,
    /// Cron expression (UTC) or `every 5m`.
    pub cadence: String,
    pub action: String,
    pub enabled: bool,
    pub next_run_at: DateTime<Utc>,
    /// Set while a run is in progress.
    pub running_since: Option<DateTime<Utc>>,
    pub running_node: Option<String>,
    pub consecutive_failures: u32,
    /// True from the third failure in a row.
    pub alerting: bool,
    pub last_outcome: Option<String>,
    pub last_error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ScheduleList {
    pub items: Vec<ScheduleView>,
}

#[derive(Serialize, ToSchema)]
pub struct RunView {
    pub id: i64,
    pub scheduled_for: DateTime<Utc>,
    pub node: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `running`, `ok` or `failed`.
    pub outcome: String,
    pub duration_ms: Option<i64>,
    pub summary: Option<String>,
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RunList {
    pub schedule: String,
    pub items: Vec<RunView>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunsParams {
    /// How many of the latest runs, 1–1000 (default 50).
    limit: Option<u32>,
}

/// Every schedule with its next run and the outcome of its last one.
#[utoipa::path(get, path = "/api/v1/schedules", tag = "config", responses((status = 200, body = ScheduleList)),
    security(("bearer" = [])))]
pub async fn list(State(app): State<Arc<AppState>>) -> Result<axum::Json<ScheduleList>, Problem> {
    let items = app
        .store
        .schedules()
        .await?
        .into_iter()
        .map(|s| ScheduleView {
            alerting: s.consecutive_failures >= dispatch_core::schedule::ALERT_AFTER_FAILURES,
            name: s.name,
            cadence: s.cadence,
            action: s.action,
            enabled: s.enabled,
            next_run_at: s.next_run_at,
            running_since: s.running_since,
            running_node: s.running_node,
            consecutive_failures: s.consecutive_failures,
            last_outcome: s.last_outcome,
            last_error: s.last_error,
        })
        .collect();
    Ok(axum::Json(ScheduleList { items }))
}

/// The latest runs of one schedule, newest first.
#[utoipa::path(get, path = "/api/v1/schedules/{name}/runs", tag = "config",
    params(("name" = String, Path, description = "Schedule name"), RunsParams),
    responses((status = 200, body = RunList), (status = 404, body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn runs(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(params): Query<RunsParams>,
) -> Result<axum::Json<RunList>, Problem> {
    let limit = params.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::bad_request("bad-query", "limit must be from 1 to 1000"));
    }
    if !app.store.schedules().await?.iter().any(|s| s.name == name) {
        return Err(Problem::not_found(&format!("schedule `{name}`")));
    }
    let items = app
        .store
        .schedule_runs(&name, limit)
        .await?
        .into_iter()
        .map(|r| RunView {
            id: r.id,
            scheduled_for: r.scheduled_for,
            node: r.node,
            started_at: r.started_at,
            duration_ms: r.finished_at.map(|f| (f - r.started_at).num_milliseconds()),
            finished_at: r.finished_at,
            outcome: r.outcome,
            summary: r.summary,
            error: r.error,
        })
        .collect();
    Ok(axum::Json(RunList { schedule: name, items }))
}
