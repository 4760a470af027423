//! `/api/v1/dead-letters`: jobs that failed for good, and their manual reprocessing.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use dispatch_store::DeadLetter;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Principal;
use crate::problem::Problem;

#[derive(Serialize, ToSchema)]
pub struct DeadLetterView {
    pub id: i64,
    /// Job kind, e.g. `book_shipment`.
    pub kind: String,
    pub order_id: Option<String>,
    /// The job's idempotency key (also sent to the carrier).
    pub dedupe_key: String,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub failed_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

impl From<DeadLetter> for DeadLetterView {
    fn from(d: DeadLetter) -> Self {
        DeadLetterView {
            id: d.id,
            kind: d.kind,
            order_id: d.order_id,
            dedupe_key: d.dedupe_key,
            payload: d.payload,
            attempts: d.attempts,
            last_error: d.last_error,
            failed_at: d.failed_at,
            created_at: d.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeadLetterList {
    pub items: Vec<DeadLetterView>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterParams {
    /// Page size, 1–1000 (default 100).
    pub limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct RetryAccepted {
    pub id: i64,
    /// `pending`: queued for a new attempt now, with a fresh attempt budget.
    pub status: &'static str,
    pub order_id: Option<String>,
}

/// Jobs that failed for good (non-retryable error or attempts exhausted), newest first.
#[utoipa::path(get, path = "/api/v1/dead-letters", tag = "carriers", params(DeadLetterParams),
    responses((status = 200, body = DeadLetterList)),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<Arc<AppState>>,
    params: Result<Query<DeadLetterParams>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<DeadLetterList>, Problem> {
    let Query(params) = params.map_err(|e| Problem::bad_request("bad-query", e.body_text()))?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::bad_request("bad-query", "limit must be a number from 1 to 1000"));
    }
    let items = app.store.dead_letters(limit).await?.into_iter().map(DeadLetterView::from).collect();
    Ok(axum::Json(DeadLetterList { items }))
}

/// Queue a dead letter again (a manual reprocess): it runs now with a fresh attempt budget and
/// the same idempotency key, so it cannot book twice.
#[utoipa::path(post, path = "/api/v1/dead-letters/{id}/retry", tag = "carriers",
    params(("id" = i64, Path, description = "Dead letter (job) id")),
    responses((status = 202, body = RetryAccepted),
        (status = 404, body = crate::problem::Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn retry(
    State(app): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, axum::Json<RetryAccepted>), Problem> {
    let r = retry_as(&app, &principal, &headers, &id).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(r)))
}

/// Reprocesses a dead letter as `principal` (the API's and the console's shared path).
pub(crate) async fn retry_as(
    app: &AppState,
    principal: &Principal,
    headers: &axum::http::HeaderMap,
    id: &str,
) -> Result<RetryAccepted, Problem> {
    let not_found = || Problem::not_found(&format!("dead letter `{id}`"));
    let job_id: i64 = id.parse().map_err(|_| not_found())?;
    let d = app.store.retry_dead_letter(job_id, app.clock.now()).await?.ok_or_else(not_found)?;
    let entry = crate::audit::by(
        principal,
        headers,
        app.clock.now(),
        "dead_letter.reprocessed",
        format!("job:{}", d.id),
        Some(serde_json::json!({"status": "dead", "attempts": d.attempts}).to_string()),
        Some(serde_json::json!({"status": "pending", "order": d.order_id}).to_string()),
    );
    app.store.append_audit(vec![entry]).await?;
    tracing::info!(job = d.id, kind = %d.kind, order = ?d.order_id, actor = %principal.actor(), "dead letter reprocessed");
    metrics::counter!("dispatchd_dead_letters_reprocessed_total", "kind" => d.kind.clone()).increment(1);
    Ok(RetryAccepted { id: d.id, status: "pending", order_id: d.order_id })
}
