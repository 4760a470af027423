//! Test harness: the real server on a random port with a temporary database, talked to over
//! HTTP (in the manner of zero2prod's test suite).

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use dispatch_core::{Role, Warehouse, Warehouses};
use dispatch_server::AppState;
use dispatch_server::clock::ManualClock;
use dispatch_store::Store;
use serde_json::{Value, json};

pub struct TestApp {
    pub url: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub clock: Arc<ManualClock>,
    pub tokens: HashMap<Role, String>,
    pub state: Arc<AppState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// Tuesday 24 November 2026, 09:00 in Amsterdam.
pub fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap()
}

pub fn warehouses() -> Warehouses {
    let list: Vec<Warehouse> = serde_json::from_value(json!([
        {"code": "AMS", "name": "Amsterdam DC", "country": "NL", "timezone": "Europe/Amsterdam",
         "cutoffs": {"same_day": "12:00", "next_day": "17:00", "standard": "18:00"}},
        {"code": "DUS", "name": "Düsseldorf DC", "country": "DE", "timezone": "Europe/Berlin",
         "cutoffs": {"same_day": "11:30", "next_day": "17:30"}},
        {"code": "MAN", "name": "Manchester DC", "country": "GB", "timezone": "Europe/London",
         "cutoffs": {"same_day": "11:00", "next_day": "16:30"}}
    ]))
    .unwrap();
    Warehouses::new(list).unwrap()
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with_carriers(dispatch_integrations::Carriers::empty()).await
    }

    pub async fn spawn_with_carriers(carriers: dispatch_integrations::Carriers) -> TestApp {
        Self::spawn_with(carriers, dispatch_server::limits::SecurityConfig::default()).await
    }

    pub async fn spawn_with(
        carriers: dispatch_integrations::Carriers,
        security: dispatch_server::limits::SecurityConfig,
    ) -> TestApp {
        Self::spawn_full(carriers, security, Default::default()).await
    }

    /// With these follow-ups enabled in the store (e.g. the dispatch history jobs).
    pub async fn spawn_full(
        carriers: dispatch_integrations::Carriers,
        security: dispatch_server::limits::SecurityConfig,
        follow_ups: dispatch_core::effects::FollowUpConfig,
    ) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        // SQLite, or PostgreSQL when TEST_POSTGRES_URL says so.
        let store = dispatch_store::testing::Location::fresh(dir.path()).await.open_with(follow_ups).await;
        let clock = Arc::new(ManualClock::new(start_time()));
        let mut tokens = HashMap::new();
        for role in Role::ALL {
            let t =
                dispatch_server::auth::create_token(store.as_ref(), &format!("test-{role}"), &[*role], start_time())
                    .await
                    .unwrap();
            tokens.insert(*role, t);
        }
        let policy = dispatch_server::policy::PolicyState::new(
            dispatch_policy::Policy::default_policy(),
            "embedded",
            None,
            start_time(),
        );
        let state =
            AppState::with_security(store.clone(), warehouses(), clock.clone(), policy, Arc::new(carriers), security);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(dispatch_server::serve(listener, state.clone(), async {
            let _ = rx.await;
        }));
        TestApp {
            url,
            client: reqwest::Client::new(),
            store,
            clock,
            tokens,
            state,
            shutdown: Some(tx),
            server: Some(server),
            _dir: dir,
        }
    }

    pub fn token(&self, role: Role) -> &str {
        &self.tokens[&role]
    }

    pub fn admin(&self) -> &str {
        self.token(Role::Admin)
    }

    pub async fn post(&self, path: &str, body: &Value, token: &str) -> reqwest::Response {
        self.client.post(format!("{}{path}", self.url)).bearer_auth(token).json(body).send().await.unwrap()
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>, ctype: &str) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.url))
            .bearer_auth(self.admin())
            .header("content-type", ctype)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.url)).bearer_auth(token).send().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path, self.admin()).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    pub async fn create(&self, body: &Value) -> Value {
        let r = self.post("/api/v1/orders", body, self.admin()).await;
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert!(status == 201 || status == 200, "{status}: {v}");
        v
    }

    pub async fn order_count(&self) -> i64 {
        self.store.order_count().await.unwrap()
    }

    /// Stops the server the way a signal would: in-flight requests finish, the store closes.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.server.take() {
            let _ = s.await;
        }
    }
}

/// A clean order, released under [`start_time`], that tests vary.
pub fn order(external_id: &str) -> Value {
    json!({
        "source": "odoo", "external_id": external_id, "warehouse": "AMS", "channel": "ecommerce",
        "customer": {"id": "C-100", "name": "Acme BV", "tier": "gold", "credit_status": "ok", "account_owner": "u-7"},
        "service_level": "next_day", "promised_date": "2026-11-27",
        "ship_to": {"name": "Acme BV", "street": "Damrak 1", "city": "Amsterdam", "postcode": "1012 LG", "country": "NL"},
        "lines": [{"sku": "P-1", "product_family": "pumps", "qty": 4, "qty_allocated": 4, "unit_value": 120.0, "unit_cost": 80.0, "weight_kg": 3.5}],
        "payment": {"terms": "net30", "status": "ok"},
        "documents": ["commercial_invoice"],
        "transport_mode": "parcel", "carrier_preference": "dhl"
    })
}

pub async fn problem(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let ctype = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    assert_eq!(ctype, "application/problem+json", "status {status}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], status, "{body}");
    assert!(body["type"].as_str().unwrap().starts_with("urn:dispatchd:problem:"), "{body}");
    assert!(!body["detail"].as_str().unwrap().is_empty());
    (status, body)
}
