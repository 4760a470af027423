//! The HTTP shell of dispatchd: axum routes over the store and the pure core. Handlers parse,
//! authorize, hand a pure decision to the store and render the committed result; they hold
//! no business logic of their own.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::IntoResponse;
use dispatch_core::Warehouses;
use dispatch_integrations::Carriers;
use dispatch_store::Store;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub mod approvals;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod console;
pub mod extract;
pub mod identity;
pub mod intel;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod policy;
pub mod problem;
pub mod routes;

use clock::Clock;
use problem::Problem;
use routes::Access;

/// Everything a request handler may use.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub warehouses: Arc<Warehouses>,
    pub clock: Arc<dyn Clock>,
    pub tokens: auth::TokenCache,
    pub metrics: PrometheusHandle,
    /// The dispatch policy in force; decisions take it from here.
    pub policy: policy::PolicyState,
    /// Configured carriers: webhook secrets, status mappings (and the adapters the workers use).
    pub carriers: Arc<Carriers>,
    /// Abuse limits, cookie and sign-in settings.
    pub security: limits::SecurityConfig,
    pub limiters: limits::Limiters,
    /// Failed console sign-ins per user name (temporary lockout).
    pub logins: console::LoginGuard,
    /// The Odoo connector, when `[odoo]` is configured (set once at start).
    pub odoo: std::sync::OnceLock<Arc<dispatch_odoo::Connector>>,
    /// The active late-departure risk model (cached by version).
    pub intel: Arc<intel::ActiveModel>,
    /// The master key ring that seals webhook signing secrets; `None` when no key is
    /// configured (then endpoints cannot be created: a 503 says how to set one).
    pub vault: Option<Arc<dispatch_integrations::Vault>>,
}

impl AppState {
    /// A server with the embedded default policy.
    pub fn new(store: Arc<dyn Store>, warehouses: Warehouses, clock: Arc<dyn Clock>) -> Arc<Self> {
        Self::with_policy(store, warehouses, clock.clone(), Self::embedded_policy(clock.as_ref()))
    }

    fn embedded_policy(clock: &dyn Clock) -> policy::PolicyState {
        policy::PolicyState::new(dispatch_policy::Policy::default_policy(), "embedded", None, clock.now())
    }

    /// A server with this policy and no carriers configured.
    pub fn with_policy(
        store: Arc<dyn Store>,
        warehouses: Warehouses,
        clock: Arc<dyn Clock>,
        policy: policy::PolicyState,
    ) -> Arc<Self> {
        Self::with_parts(store, warehouses, clock, policy, Arc::new(Carriers::empty()))
    }

    /// A server with the embedded default policy and these carriers.
    pub fn with_carriers(
        store: Arc<dyn Store>,
        warehouses: Warehouses,
        clock: Arc<dyn Clock>,
        carriers: Arc<Carriers>,
    ) -> Arc<Self> {
        let policy = Self::embedded_policy(clock.as_ref());
        Self::with_parts(store, warehouses, clock, policy, carriers)
    }

    pub fn with_parts(
        store: Arc<dyn Store>,
        warehouses: Warehouses,
        clock: Arc<dyn Clock>,
        policy: policy::PolicyState,
        carriers: Arc<Carriers>,
    ) -> Arc<Self> {
        Self::with_security(store, warehouses, clock, policy, carriers, limits::SecurityConfig::default())
    }

    pub fn with_security(
        store: Arc<dyn Store>,
        warehouses: Warehouses,
        clock: Arc<dyn Clock>,
        policy: policy::PolicyState,
        carriers: Arc<Carriers>,
        security: limits::SecurityConfig,
    ) -> Arc<Self> {
        Arc::new(AppState {
            limiters: limits::Limiters::new(&security),
            logins: console::LoginGuard::default(),
            security,
            store,
            warehouses: Arc::new(warehouses),
            clock,
            tokens: auth::TokenCache::default(),
            metrics: metrics::handle(),
            policy,
            carriers,
            odoo: std::sync::OnceLock::new(),
            intel: Arc::default(),
            vault: load_vault(),
        })
    }
}

/// The vault from `DISPATCHD_MASTER_KEY` / `DISPATCHD_MASTER_KEY_FILE`. A malformed key is
/// logged (never its value) and treated as absent.
pub fn load_vault() -> Option<Arc<dispatch_integrations::Vault>> {
    match dispatch_integrations::Vault::from_env() {
        Ok(v) => v.map(Arc::new),
        Err(e) => {
            tracing::error!(error = %e, "master key unusable: webhook endpoints cannot be created");
            None
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let mut router: Router<Arc<AppState>> = Router::new();
    for (spec, handler) in routes::table() {
        let handler = match spec.access {
            // Signed routes check the sender's signature in the handler (it needs the body).
            Access::Public | Access::Signed | Access::Form => handler,
            Access::Requires(p) => handler
                .route_layer(from_fn_with_state(p, auth::require_permission))
                .route_layer(from_fn_with_state(state.clone(), auth::require_token)),
            Access::Console(permission) | Access::ConsoleForm(permission) => {
                let gate = console::Gate {
                    app: state.clone(),
                    permission,
                    form: matches!(spec.access, Access::ConsoleForm(_)),
                };
                handler.route_layer(from_fn_with_state(gate, console::gate))
            }
        };
        router = router.route(spec.path, handler);
    }
    router
        .fallback(|| async { Problem::not_found("this path").into_response() })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "this path does not take that method; see /api/openapi.json",
            )
        })
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .layer(from_fn_with_state(state.clone(), limits::guard))
        .layer(from_fn(metrics::track_requests))
        .layer(PropagateRequestIdLayer::x_request_id())
        // Spans name the path only: a query string may carry a webhook secret (`?token=`).
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<axum::body::Body>| {
            tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then finishes in-flight requests and closes the store
/// (so every acknowledged write is committed).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let store = state.store.clone();
    // The risk model active in the store scores from the first request on.
    if let Err(e) = state.intel.refresh(store.as_ref(), state.clock.now()).await {
        tracing::warn!(error = %e, "the active risk model could not be read; scoring starts at the next sweep");
    }
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    store.close().await;
    result
}
