//! Probes, metrics, the API document and configuration reads.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use dispatch_core::Warehouse;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::AppState;
use crate::problem::Problem;

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, body = Health)))]
pub async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok", version: env!("CARGO_PKG_VERSION") })
}

/// Readiness: the database answers, so requests can be served.
#[utoipa::path(get, path = "/readyz", tag = "system",
    responses((status = 200, body = Health), (status = 503, body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn readyz(State(app): State<Arc<AppState>>) -> Result<axum::Json<Health>, Problem> {
    app.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "not ready: database does not answer");
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", "Not ready", "the database does not answer")
    })?;
    Ok(axum::Json(Health { status: "ready", version: env!("CARGO_PKG_VERSION") }))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "system", responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::scrape(&app).await).into_response()
}

/// This API's OpenAPI 3.1 document, generated from the code.
#[utoipa::path(get, path = "/api/openapi.json", tag = "system", responses((status = 200, content_type = "application/json", body = Object)))]
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::ApiDoc::openapi().to_pretty_json().unwrap_or_default(),
    )
        .into_response()
}

#[derive(Serialize, ToSchema)]
pub struct WarehouseList {
    pub items: Vec<Warehouse>,
}

/// The configured warehouses: country, IANA zone, cut-offs per service level.
#[utoipa::path(get, path = "/api/v1/warehouses", tag = "config", responses((status = 200, body = WarehouseList)),
    security(("bearer" = [])))]
pub async fn warehouses(State(app): State<Arc<AppState>>) -> axum::Json<WarehouseList> {
    axum::Json(WarehouseList { items: app.warehouses.iter().cloned().collect() })
}
