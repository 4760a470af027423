//! Test support: the Odoo double in this process on a random port, a fresh store (SQLite, or
//! PostgreSQL with TEST_POSTGRES_URL), and a connector between them.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use dispatch_core::{BuiltinRules, Evaluator, Warehouse, Warehouses};
use dispatch_integrations::Secret;
use dispatch_odoo::{Api, Connector, Ingest, OdooConfig, OdooSecrets};
use dispatch_store::Store;
use odoo_double::{BOT_API_KEY, BOT_LOGIN, Double, DoubleConfig, Running};
use serde_json::json;

pub fn warehouses() -> Arc<Warehouses> {
    let w: Warehouse = serde_json::from_value(json!({
        "code": "AMS", "country": "NL", "timezone": "Europe/Amsterdam",
        "cutoffs": {"same_day": "12:00", "next_day": "17:00", "express": "17:00", "standard": "17:00", "economy": "17:00"}
    }))
    .unwrap();
    Arc::new(Warehouses::new(vec![w]).unwrap())
}

pub struct Env {
    pub odoo: Running,
    pub store: Arc<dyn Store>,
    pub connector: Arc<Connector>,
    pub clock: Arc<Mutex<DateTime<Utc>>>,
    _dir: tempfile::TempDir,
}

impl Env {
    pub fn double(&self) -> &Double {
        &self.odoo.double
    }
    pub fn now(&self) -> DateTime<Utc> {
        *self.clock.lock().unwrap()
    }
    pub fn advance(&self, secs: i64) {
        *self.clock.lock().unwrap() += chrono::Duration::seconds(secs);
    }
}

pub fn config(url: &str, api: Api, batch: u32, overlap_secs: i64) -> OdooConfig {
    let mut cfg: OdooConfig = serde_json::from_value(json!({
        "url": url, "database": "odoo", "api": if api == Api::Json2 { "json-2" } else { "json-rpc" },
        "login": BOT_LOGIN,
    }))
    .unwrap();
    cfg.sync.batch = batch;
    cfg.sync.overlap_secs = overlap_secs;
    cfg.mapping.warehouses.insert("WH".into(), "AMS".into());
    cfg.mapping.carriers.insert("DHL Express".into(), "dhl".into());
    cfg
}

pub fn secrets() -> OdooSecrets {
    OdooSecrets { api_key: Some(Secret::new(BOT_API_KEY)), webhook_secrets: vec![Secret::new("hook-secret")] }
}

pub async fn env_with(api: Api, batch: u32, overlap_secs: i64) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = dispatch_store::testing::Location::fresh(dir.path())
        .await
        .open_with(dispatch_core::effects::FollowUpConfig { odoo_writeback: true, ..Default::default() })
        .await;
    let major = if api == Api::Json2 { 19 } else { 17 };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let odoo = odoo_double::start(DoubleConfig { db: "odoo".into(), major }, listener).await.unwrap();
    // The double and dispatchd share a clock the test moves (Odoo stamps write_date with it).
    let clock = Arc::new(Mutex::new(Utc::now()));
    odoo.double.set_now(Some(*clock.lock().unwrap()));
    let c = clock.clone();
    let ingest = Ingest {
        store: store.clone(),
        warehouses: warehouses(),
        rules: Arc::new(|| Arc::new(BuiltinRules) as Arc<dyn Evaluator>),
        now: Arc::new(move || *c.lock().unwrap()),
    };
    let connector = Arc::new(Connector::new(config(&odoo.url(), api, batch, overlap_secs), secrets(), ingest).unwrap());
    Env { odoo, store, connector, clock, _dir: dir }
}

/// Seeds a customer, a delivery address, a sale order, an outgoing picking and its moves;
/// returns the picking id. `reserved` of 4 units are reserved.
pub fn seed_picking(d: &Double, n: u32, reserved: f64) -> i64 {
    let customer = d.seed(
        "res.partner",
        json!({"name": format!("Customer {n}"), "ref": format!("C-{n}"), "is_company": true,
        "credit": 100.0, "credit_limit": 5000.0, "x_dispatch_tier": "gold"}),
    );
    let ship_to = d.seed(
        "res.partner",
        json!({"name": format!("Customer {n}, Receiving"), "street": "Damrak 1", "city": "Amsterdam",
        "zip": "1012 LG", "country_id": [165, "Netherlands"], "country_code": "NL"}),
    );
    let promised = (d.now() + chrono::Duration::days(5)).format("%Y-%m-%d 10:00:00").to_string();
    let sale = d.seed("sale.order", json!({"name": format!("S{n:05}"), "state": "sale", "partner_id": customer,
        "partner_shipping_id": ship_to, "commitment_date": promised, "team_id": [1, "Website"], "payment_term_id": [2, "30 Days"]}));
    let picking = d.seed(
        "stock.picking",
        json!({"name": format!("WH/OUT/{n:05}"), "state": "assigned", "picking_type_code": "outgoing",
        "picking_type_id": [2, "WH: Delivery Orders"], "partner_id": ship_to, "sale_id": sale, "priority": "0",
        "scheduled_date": d.now().format("%Y-%m-%d %H:%M:%S").to_string(), "carrier_id": [1, "DHL Express"],
        "carrier_tracking_ref": false, "x_dispatch_status": false}),
    );
    d.seed(
        "stock.move",
        json!({"name": "Pump", "picking_id": picking, "product_id": [10, "[P-1] Pump"], "product_uom_qty": 4.0,
        "quantity": reserved, "state": "assigned", "price_unit": 120.0, "weight": 14.0}),
    );
    picking
}
