//! A carrier simulator: an EasyPost-shaped API (shipments, rates, buy, refund, trackers) that
//! sends signed `tracker.updated` webhooks as its shipments move, with faults injected by
//! flags or at run time. It counts what it accepted, so tests can prove that dispatchd never
//! booked an order twice.
//!
//! API (EasyPost's paths and shapes, Basic auth with the API key as user name):
//! - `POST /v2/shipments` — create; with `service` set, bought at once (one-call buy).
//!   The same `Idempotency-Key` returns the same shipment and buys nothing new.
//! - `POST /v2/shipments/{id}/buy` (`{"rate":{"id":...}}`), `POST /v2/shipments/{id}/refund`,
//!   `GET /v2/shipments/{id}`, `GET /v2/trackers?tracking_code=...`
//!
//! Admin (no auth; loopback tool):
//! - `GET /admin/bookings` — purchases per reference (order) and requests per idempotency key
//! - `GET /admin/faults`, `PUT /admin/faults` (a [`Faults`] document; absent fields = no fault)
//! - `GET /admin/stats` — requests, injected faults, webhooks sent and failed

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use dispatch_integrations::Secret;
use dispatch_integrations::webhook::{SignatureScheme, signature_header};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// An interval of milliseconds since the mock started.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub from_ms: u64,
    pub to_ms: u64,
}

/// What goes wrong, and how often. Every field defaults to "nothing goes wrong".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added latency, uniform in `[min, max]` milliseconds.
    pub latency_min_ms: u64,
    pub latency_max_ms: u64,
    /// Share of API requests answered with an error from `error_statuses`.
    pub error_rate: f64,
    /// Which errors (default 500, 503, 429).
    pub error_statuses: Vec<u16>,
    /// `Retry-After` seconds sent with 429 and 503.
    pub retry_after_secs: Option<u64>,
    /// Share of requests processed and then left hanging for `timeout_ms` (the client times
    /// out although the booking happened: the case idempotency keys exist for).
    pub timeout_rate: f64,
    pub timeout_ms: u64,
    /// Share of requests refused as invalid (422): not retryable.
    pub reject_rate: f64,
    /// Down right now: every API request gets a 503.
    pub down: bool,
    /// Outage windows relative to the mock's start.
    pub outages: Vec<Window>,
    /// Share of webhooks delivered twice.
    pub duplicate_rate: f64,
    /// Share of webhooks delivered after the next one.
    pub out_of_order_rate: f64,
    /// Share of scans followed by an extra event with a status code outside the vocabulary.
    pub unknown_status_rate: f64,
}

impl Faults {
    fn in_outage(&self, since_start: Duration) -> bool {
        let ms = since_start.as_millis() as u64;
        self.down || self.outages.iter().any(|w| ms >= w.from_ms && ms < w.to_ms)
    }
}

/// Applies one `--fault KEY=VALUE` flag.
pub fn parse_fault(spec: &str, f: &mut Faults) -> Result<(), String> {
    let (key, value) = spec.split_once('=').ok_or_else(|| format!("`{spec}`: expected KEY=VALUE"))?;
    let num = |v: &str| v.trim().parse::<f64>().map_err(|_| format!("`{spec}`: `{v}` is not a number"));
    let int = |v: &str| v.trim().parse::<u64>().map_err(|_| format!("`{spec}`: `{v}` is not a whole number"));
    let range = |v: &str| -> Result<(u64, u64), String> {
        match v.split_once("..") {
            Some((a, b)) => Ok((int(a)?, int(b)?)),
            None => int(v).map(|x| (x, x)),
        }
    };
    let rate = |v: &str| {
        num(v).and_then(|x| if (0.0..=1.0).contains(&x) { Ok(x) } else { Err(format!("`{spec}`: a rate is 0..1")) })
    };
    match key.trim() {
        "latency" => (f.latency_min_ms, f.latency_max_ms) = range(value)?,
        "error-rate" => f.error_rate = rate(value)?,
        "errors" => {
            f.error_statuses = value.split(',').map(|s| int(s).map(|x| x as u16)).collect::<Result<_, _>>()?;
        }
        "retry-after" => f.retry_after_secs = Some(int(value)?),
        "timeout-rate" => f.timeout_rate = rate(value)?,
        "timeout" => f.timeout_ms = int(value)?,
        "reject-rate" => f.reject_rate = rate(value)?,
        "down" => f.down = value.trim() == "true",
        "outage" => {
            let (from_ms, to_ms) = range(value)?;
            f.outages.push(Window { from_ms, to_ms });
        }
        "duplicate-rate" => f.duplicate_rate = rate(value)?,
        "out-of-order-rate" => f.out_of_order_rate = rate(value)?,
        "unknown-status-rate" => f.unknown_status_rate = rate(value)?,
        other => {
            return Err(format!(
                "unknown fault `{other}`; use latency=MIN..MAX, error-rate=R, errors=500,503,429, retry-after=S, \
                 timeout-rate=R, timeout=MS, reject-rate=R, down=true, outage=FROM..TO, duplicate-rate=R, \
                 out-of-order-rate=R, unknown-status-rate=R"
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Carrier name shown in trackers.
    pub carrier: String,
    /// Required API key (Basic auth user); `None` accepts any non-empty key.
    pub api_key: Option<Secret>,
    /// Where tracking webhooks go; none are sent without it.
    pub webhook_url: Option<String>,
    pub webhook_secret: Secret,
    /// Real time per simulated scan interval of ten minutes: 0.002 → a scan every 1.2 s.
    pub time_scale: f64,
    pub faults: Faults,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            carrier: "MockPost".into(),
            api_key: None,
            webhook_url: None,
            webhook_secret: Secret::new("mock-webhook-secret"),
            time_scale: 0.002,
            faults: Faults::default(),
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub requests: u64,
    pub injected_errors: u64,
    pub injected_timeouts: u64,
    pub injected_rejects: u64,
    pub outage_refusals: u64,
    pub webhooks_sent: u64,
    pub webhooks_failed: u64,
    pub webhook_retries: u64,
}

#[derive(Default)]
struct Ledger {
    shipments: HashMap<String, Value>,
    by_key: HashMap<String, String>,
    by_tracking: HashMap<String, String>,
    requests_by_key: BTreeMap<String, u64>,
    purchases_by_reference: BTreeMap<String, u64>,
    refunds: u64,
}

struct Mock {
    cfg: MockConfig,
    faults: RwLock<Faults>,
    started: Instant,
    ledger: Mutex<Ledger>,
    stats: Mutex<Stats>,
    seq: AtomicU64,
    client: reqwest::Client,
}

impl Mock {
    fn next_id(&self, prefix: &str) -> String {
        format!(
            "{prefix}_{:012x}{:06}",
            self.started.elapsed().as_nanos() as u64 & 0xffff_ffff_ffff,
            self.seq.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn faults(&self) -> Faults {
        self.faults.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn stat(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut self.stats.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// A running mock carrier.
pub struct MockServer {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl MockServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Serves the mock on `listener` until stopped.
pub async fn start(cfg: MockConfig, listener: tokio::net::TcpListener) -> std::io::Result<MockServer> {
    let addr = listener.local_addr()?;
    let mut faults = cfg.faults.clone();
    if faults.error_statuses.is_empty() {
        faults.error_statuses = vec![500, 503, 429];
    }
    let mock = Arc::new(Mock {
        faults: RwLock::new(faults),
        cfg,
        started: Instant::now(),
        ledger: Mutex::default(),
        stats: Mutex::default(),
        seq: AtomicU64::new(1),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            .build()
            .unwrap_or_default(),
    });
    let app = Router::new()
        .route("/v2/shipments", post(create_shipment))
        .route("/v2/shipments/{id}", get(get_shipment))
        .route("/v2/shipments/{id}/buy", post(buy))
        .route("/v2/shipments/{id}/refund", post(refund))
        .route("/v2/trackers", get(trackers))
        .route("/admin/bookings", get(admin_bookings))
        .route("/admin/faults", get(get_faults).put(put_faults))
        .route("/admin/stats", get(admin_stats))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(mock);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Ok(MockServer { addr, shutdown: Some(tx), handle: Some(handle) })
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message, "errors": []}}))).into_response()
}

fn authorized(mock: &Mock, headers: &HeaderMap) -> bool {
    use base64::Engine;
    let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else { return false };
    let Some(b64) = v.strip_prefix("Basic ") else { return false };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else { return false };
    let user = String::from_utf8_lossy(&decoded);
    let key = user.split(':').next().unwrap_or("");
    match &mock.cfg.api_key {
        Some(k) => key == k.expose(),
        None => !key.is_empty(),
    }
}

/// What happens to a request before (and, for timeouts, after) it is processed.
enum Gate {
    Refuse(Response),
    Proceed { hang_after: Option<Duration> },
}

async fn gate(mock: &Mock, headers: &HeaderMap) -> Gate {
    mock.stat(|s| s.requests += 1);
    if !authorized(mock, headers) {
        return Gate::Refuse(error(StatusCode::UNAUTHORIZED, "APIKEY.INVALID", "invalid or missing API key"));
    }
    let f = mock.faults();
    if f.in_outage(mock.started.elapsed()) {
        mock.stat(|s| s.outage_refusals += 1);
        return Gate::Refuse(error(StatusCode::SERVICE_UNAVAILABLE, "SERVICE.UNAVAILABLE", "carrier outage"));
    }
    let (latency, roll_error, roll_reject, roll_timeout, pick) = {
        let mut rng = rand::rng();
        let latency = if f.latency_max_ms > 0 {
            rng.random_range(f.latency_min_ms.min(f.latency_max_ms)..=f.latency_max_ms)
        } else {
            0
        };
        (
            latency,
            rng.random::<f64>(),
            rng.random::<f64>(),
            rng.random::<f64>(),
            rng.random_range(0..f.error_statuses.len().max(1)),
        )
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if roll_error < f.error_rate {
        mock.stat(|s| s.injected_errors += 1);
        let status = f.error_statuses.get(pick).copied().unwrap_or(503);
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut resp = error(code, "INJECTED.FAULT", "injected fault");
        if let Some(ra) = f.retry_after_secs.filter(|_| matches!(status, 429 | 503))
            && let Ok(v) = HeaderValue::from_str(&ra.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Gate::Refuse(resp);
    }
    if roll_reject < f.reject_rate {
        mock.stat(|s| s.injected_rejects += 1);
        return Gate::Refuse(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "SHIPMENT.INVALID",
            "injected rejection: address not serviceable",
        ));
    }
    let hang_after = (roll_timeout < f.timeout_rate).then(|| Duration::from_millis(f.timeout_ms.max(1)));
    Gate::Proceed { hang_after }
}

async fn finish(mock: &Mock, hang_after: Option<Duration>, resp: Response) -> Response {
    if let Some(d) = hang_after {
        mock.stat(|s| s.injected_timeouts += 1);
        tokio::time::sleep(d).await;
        return error(StatusCode::GATEWAY_TIMEOUT, "TIMEOUT", "injected timeout");
    }
    resp
}

fn rates(mock: &Mock, shipment_id: &str) -> Vec<Value> {
    [("Ground", "7.58"), ("Priority", "10.10"), ("Express", "15.20")]
        .iter()
        .map(|(service, rate)| {
            json!({"id": mock.next_id("rate"), "object": "Rate", "carrier": mock.cfg.carrier, "service": service,
                   "rate": rate, "currency": "EUR", "shipment_id": shipment_id})
        })
        .collect()
}

fn now_str() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Buys `rate` for the shipment in the ledger; counts it against the shipment's reference.
fn purchase(mock: &Arc<Mock>, ledger: &mut Ledger, id: &str, rate: Value) -> Option<Value> {
    let tracking = format!("MP{}", mock.next_id("").trim_start_matches('_').to_uppercase());
    let s = ledger.shipments.get_mut(id)?;
    let reference = s.get("reference").and_then(|r| r.as_str()).unwrap_or("").to_string();
    let now = now_str();
    s["selected_rate"] = rate;
    s["tracking_code"] = json!(tracking);
    s["status"] = json!("unknown");
    s["postage_label"] = json!({"id": mock.next_id("pl"), "object": "PostageLabel",
        "label_url": format!("http://{}/labels/{id}.pdf", "mock-carrier.invalid"), "label_file_type": "application/pdf"});
    s["tracker"] = json!({"id": mock.next_id("trk"), "object": "Tracker", "tracking_code": tracking,
        "status": "pre_transit", "carrier": mock.cfg.carrier, "shipment_id": id, "created_at": now, "updated_at": now,
        "tracking_details": []});
    s["updated_at"] = json!(now);
    let bought = s.clone();
    *ledger.purchases_by_reference.entry(reference).or_default() += 1;
    ledger.by_tracking.insert(tracking, id.to_string());
    if let Some(url) = mock.cfg.webhook_url.clone() {
        tokio::spawn(move_shipment(mock.clone(), url, bought.clone()));
    }
    Some(bought)
}

async fn create_shipment(State(mock): State<Arc<Mock>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let hang_after = match gate(&mock, &headers).await {
        Gate::Refuse(r) => return r,
        Gate::Proceed { hang_after } => hang_after,
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "PARAMETER.INVALID", "body is not JSON");
    };
    let Some(req) = v.get("shipment").filter(|s| s.is_object()) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "PARAMETER.REQUIRED", "`shipment` is required");
    };
    let key = headers.get("idempotency-key").and_then(|k| k.to_str().ok()).map(str::to_string);
    let resp = {
        let mut ledger = mock.ledger.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = &key {
            *ledger.requests_by_key.entry(k.clone()).or_default() += 1;
        }
        let existing = key.as_ref().and_then(|k| ledger.by_key.get(k)).and_then(|id| ledger.shipments.get(id)).cloned();
        if let Some(existing) = existing {
            (StatusCode::OK, Json(existing)).into_response()
        } else {
            let id = mock.next_id("shp");
            let now = now_str();
            let shipment = json!({
                "id": id, "object": "Shipment", "mode": "test", "reference": req.get("reference").cloned().unwrap_or(Value::Null),
                "to_address": req.get("to_address").cloned().unwrap_or(Value::Null),
                "from_address": req.get("from_address").cloned().unwrap_or(Value::Null),
                "parcel": req.get("parcel").cloned().unwrap_or(Value::Null),
                "rates": rates(&mock, &id), "selected_rate": null, "postage_label": null, "tracking_code": null,
                "tracker": null, "refund_status": null, "created_at": now, "updated_at": now,
            });
            ledger.shipments.insert(id.clone(), shipment.clone());
            if let Some(k) = key {
                ledger.by_key.insert(k, id.clone());
            }
            // One-call buy: a service names the rate to buy now.
            let service = req.get("service").and_then(|s| s.as_str());
            match service {
                Some(svc) => {
                    let rate = shipment["rates"]
                        .as_array()
                        .and_then(|r| {
                            r.iter().find(|r| r["service"].as_str().is_some_and(|s| s.eq_ignore_ascii_case(svc)))
                        })
                        .cloned();
                    match rate.and_then(|r| purchase(&mock, &mut ledger, &id, r)) {
                        Some(bought) => (StatusCode::CREATED, Json(bought)).into_response(),
                        None => error(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "SHIPMENT.RATE.UNAVAILABLE",
                            "no rate for that service",
                        ),
                    }
                }
                None => (StatusCode::CREATED, Json(shipment)).into_response(),
            }
        }
    };
    finish(&mock, hang_after, resp).await
}

async fn buy(
    State(mock): State<Arc<Mock>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let hang_after = match gate(&mock, &headers).await {
        Gate::Refuse(r) => return r,
        Gate::Proceed { hang_after } => hang_after,
    };
    let rate_id =
        serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.pointer("/rate/id")?.as_str().map(str::to_string));
    let Some(rate_id) = rate_id else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "PARAMETER.REQUIRED", "`rate.id` is required");
    };
    let resp = {
        let mut ledger = mock.ledger.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = headers.get("idempotency-key").and_then(|k| k.to_str().ok()) {
            *ledger.requests_by_key.entry(format!("{k}#buy")).or_default() += 1;
        }
        match ledger.shipments.get(&id).cloned() {
            None => error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such shipment"),
            // Already bought (a retry): the same purchase again, nothing new.
            Some(s) if s["tracking_code"].is_string() => (StatusCode::OK, Json(s)).into_response(),
            Some(s) => {
                let rate = s["rates"].as_array().and_then(|r| r.iter().find(|r| r["id"] == rate_id.as_str())).cloned();
                match rate.and_then(|r| purchase(&mock, &mut ledger, &id, r)) {
                    Some(bought) => (StatusCode::OK, Json(bought)).into_response(),
                    None => error(StatusCode::UNPROCESSABLE_ENTITY, "SHIPMENT.RATE.INVALID", "unknown rate"),
                }
            }
        }
    };
    finish(&mock, hang_after, resp).await
}

async fn refund(State(mock): State<Arc<Mock>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Gate::Refuse(r) = gate(&mock, &headers).await {
        return r;
    }
    let mut ledger = mock.ledger.lock().unwrap_or_else(|p| p.into_inner());
    let Some(s) = ledger.shipments.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such shipment");
    };
    s["refund_status"] = json!("submitted");
    let out = s.clone();
    ledger.refunds += 1;
    (StatusCode::OK, Json(out)).into_response()
}

async fn get_shipment(State(mock): State<Arc<Mock>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if !authorized(&mock, &headers) {
        return error(StatusCode::UNAUTHORIZED, "APIKEY.INVALID", "invalid or missing API key");
    }
    let ledger = mock.ledger.lock().unwrap_or_else(|p| p.into_inner());
    match ledger.shipments.get(&id) {
        Some(s) => Json(s.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such shipment"),
    }
}

#[derive(Deserialize)]
struct TrackerQuery {
    tracking_code: Option<String>,
}

async fn trackers(State(mock): State<Arc<Mock>>, headers: HeaderMap, Query(q): Query<TrackerQuery>) -> Response {
    if !authorized(&mock, &headers) {
        return error(StatusCode::UNAUTHORIZED, "APIKEY.INVALID", "invalid or missing API key");
    }
    let ledger = mock.ledger.lock().unwrap_or_else(|p| p.into_inner());
    let found: Vec<Value> = q
        .tracking_code
        .and_then(|t| ledger.by_tracking.get(&t))
        .and_then(|id| ledger.shipments.get(id))
        .map(|s| s["tracker"].clone())
        .into_iter()
        .collect();
    Json(json!({"trackers": found, "has_more": false})).into_response()
}

#[derive(Serialize)]
struct Bookings {
    /// Shipments bought, in total.
    purchases: u64,
    /// Purchases per shipment reference (dispatchd sends the order id): more than 1 is a
    /// double booking.
    purchases_by_reference: BTreeMap<String, u64>,
    double_booked: Vec<String>,
    /// Requests per idempotency key (retries show here, not as purchases).
    requests_by_key: BTreeMap<String, u64>,
    refunds: u64,
}

async fn admin_bookings(State(mock): State<Arc<Mock>>) -> Json<Value> {
    let ledger = mock.ledger.lock().unwrap_or_else(|p| p.into_inner());
    let b = Bookings {
        purchases: ledger.purchases_by_reference.values().sum(),
        purchases_by_reference: ledger.purchases_by_reference.clone(),
        double_booked: ledger.purchases_by_reference.iter().filter(|(_, n)| **n > 1).map(|(k, _)| k.clone()).collect(),
        requests_by_key: ledger.requests_by_key.clone(),
        refunds: ledger.refunds,
    };
    Json(serde_json::to_value(b).unwrap_or_default())
}

async fn get_faults(State(mock): State<Arc<Mock>>) -> Json<Faults> {
    Json(mock.faults())
}

async fn put_faults(State(mock): State<Arc<Mock>>, Json(mut f): Json<Faults>) -> Json<Faults> {
    if f.error_statuses.is_empty() {
        f.error_statuses = vec![500, 503, 429];
    }
    *mock.faults.write().unwrap_or_else(|p| p.into_inner()) = f.clone();
    Json(f)
}

async fn admin_stats(State(mock): State<Arc<Mock>>) -> Json<Value> {
    let s = mock.stats.lock().unwrap_or_else(|p| p.into_inner());
    Json(serde_json::to_value(&*s).unwrap_or_default())
}

/// The scans of a shipment's life, in order.
const SCANS: &[(&str, &str, &str)] = &[
    ("pre_transit", "label_created", "Shipping label created"),
    ("in_transit", "departed_facility", "Departed the sender's facility"),
    ("out_for_delivery", "out_for_delivery", "Out for delivery"),
    ("delivered", "delivered", "Delivered, signed for"),
];

fn event_body(mock: &Mock, shipment: &Value, tracker: &Value, previous: &str) -> Vec<u8> {
    let now = now_str();
    let event = json!({
        "id": mock.next_id("evt"), "object": "Event", "mode": "test", "description": "tracker.updated",
        "previous_attributes": {"status": previous}, "pending_urls": [], "status": "pending",
        "created_at": now, "updated_at": now,
        "result": tracker,
        "user_id": "user_mock", "shipment_id": shipment["id"],
    });
    serde_json::to_vec(&event).unwrap_or_default()
}

/// Walks a bought shipment through its scans, sending a signed webhook for each, with the
/// configured duplicates, reorderings and unknown codes.
async fn move_shipment(mock: Arc<Mock>, url: String, shipment: Value) {
    let step = Duration::from_secs_f64((600.0 * mock.cfg.time_scale).clamp(0.0, 3600.0));
    let mut tracker = shipment["tracker"].clone();
    let mut details: Vec<Value> = Vec::new();
    let mut previous = "unknown".to_string();
    let mut held: Option<Vec<Vec<u8>>> = None;
    for (i, (status, detail, message)) in SCANS.iter().enumerate() {
        tokio::time::sleep(if i == 0 { step / 2 } else { step }).await;
        let f = mock.faults();
        let (dup, reorder, unknown) = {
            let mut rng = rand::rng();
            (
                rng.random::<f64>() < f.duplicate_rate,
                rng.random::<f64>() < f.out_of_order_rate,
                rng.random::<f64>() < f.unknown_status_rate,
            )
        };
        let at = now_str();
        details.push(json!({"object": "TrackingDetail", "status": status, "status_detail": detail, "message": message,
            "datetime": at, "source": mock.cfg.carrier, "tracking_location": {"city": "Amsterdam", "country": "NL"}}));
        tracker["status"] = json!(status);
        tracker["status_detail"] = json!(detail);
        tracker["updated_at"] = json!(at);
        tracker["tracking_details"] = json!(details);
        if let Some(id) = shipment["id"].as_str() {
            let mut ledger = mock.ledger.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = ledger.shipments.get_mut(id) {
                s["tracker"] = tracker.clone();
            }
        }
        let mut batch = vec![event_body(&mock, &shipment, &tracker, &previous)];
        if dup && let Some(first) = batch.first() {
            batch.push(first.clone());
        }
        if unknown {
            let mut odd = tracker.clone();
            let code = format!("mystery_scan_{}", i);
            odd["status"] = json!(code);
            let mut d = details.clone();
            d.push(json!({"object": "TrackingDetail", "status": code, "message": "Unrecognised scan", "datetime": now_str()}));
            odd["tracking_details"] = json!(d);
            batch.push(event_body(&mock, &shipment, &odd, status));
        }
        previous = status.to_string();
        // Out of order: hold this scan's events back until after the next scan's.
        let last = i + 1 == SCANS.len();
        if reorder && !last && held.is_none() {
            held = Some(batch);
            continue;
        }
        for body in batch.into_iter().chain(held.take().into_iter().flatten()) {
            send(&mock, &url, body).await;
        }
    }
    for body in held.take().into_iter().flatten() {
        send(&mock, &url, body).await;
    }
}

/// Delivers one webhook, retrying like a carrier does until dispatchd acknowledges it.
async fn send(mock: &Mock, url: &str, body: Vec<u8>) {
    let sig = signature_header(&SignatureScheme::default(), &mock.cfg.webhook_secret, &body, None);
    let mut delay = Duration::from_millis(100);
    for attempt in 0..10 {
        let r = mock
            .client
            .post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header("X-Hmac-Signature", &sig)
            .body(body.clone())
            .send()
            .await;
        match r {
            Ok(resp) if resp.status().is_success() => {
                mock.stat(|s| s.webhooks_sent += 1);
                return;
            }
            Ok(resp) if resp.status().is_client_error() && !matches!(resp.status().as_u16(), 404 | 408 | 409 | 429) => {
                // Refused for good (bad signature, malformed): retrying cannot help.
                mock.stat(|s| s.webhooks_failed += 1);
                return;
            }
            _ => {}
        }
        if attempt > 0 {
            mock.stat(|s| s.webhook_retries += 1);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    mock.stat(|s| s.webhooks_failed += 1);
}

/// The time of a tracker's latest scan (for tests).
pub fn latest_scan(tracker: &Value) -> Option<DateTime<Utc>> {
    tracker["tracking_details"]
        .as_array()?
        .iter()
        .filter_map(|d| d["datetime"].as_str().and_then(dispatch_integrations::webhook::parse_time))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_flags_parse() {
        let mut f = Faults::default();
        for spec in
            ["latency=5..50", "error-rate=0.2", "errors=429", "retry-after=2", "outage=0..5000", "duplicate-rate=1"]
        {
            parse_fault(spec, &mut f).unwrap();
        }
        assert_eq!((f.latency_min_ms, f.latency_max_ms), (5, 50));
        assert_eq!(f.error_statuses, vec![429]);
        assert_eq!(f.outages, vec![Window { from_ms: 0, to_ms: 5000 }]);
        assert!(f.in_outage(Duration::from_millis(10)));
        assert!(!f.in_outage(Duration::from_millis(6000)));
        assert!(parse_fault("error-rate=2", &mut f).is_err());
        assert!(parse_fault("colour=red", &mut f).is_err());
    }
}
