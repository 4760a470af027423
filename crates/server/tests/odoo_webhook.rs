//! `POST /webhooks/odoo` over HTTP, with the Odoo double behind the connector: the secret,
//! bad bodies, unknown models, duplicates, Odoo down — and nothing written when refused.

mod common;

use std::sync::Arc;

use common::{TestApp, start_time, warehouses};
use dispatch_core::Evaluator;
use dispatch_integrations::Secret;
use dispatch_odoo::{Connector, Ingest, OdooConfig, OdooSecrets};
use odoo_double::{BOT_API_KEY, BOT_LOGIN, DoubleConfig, Running};
use serde_json::{Value, json};

const SECRET: &str = "whsec-odoo-test";

async fn setup() -> (TestApp, Running, i64) {
    let app = TestApp::spawn().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let odoo = odoo_double::start(DoubleConfig::default(), listener).await.unwrap();
    let d = &odoo.double;
    d.set_now(Some(start_time()));
    let customer = d.seed("res.partner", json!({"name": "Acme BV", "ref": "C-1", "credit": 0.0, "credit_limit": 0.0}));
    let ship_to = d.seed(
        "res.partner",
        json!({"name": "Acme BV", "street": "Damrak 1", "city": "Amsterdam", "zip": "1012 LG", "country_code": "NL"}),
    );
    let sale = d.seed(
        "sale.order",
        json!({"name": "S00001", "partner_id": customer, "commitment_date": "2026-11-27 10:00:00"}),
    );
    let picking = d.seed(
        "stock.picking",
        json!({"name": "WH/OUT/00001", "state": "assigned", "picking_type_code": "outgoing",
        "partner_id": ship_to, "sale_id": sale, "priority": "0", "scheduled_date": "2026-11-24 09:00:00"}),
    );
    d.seed("stock.move", json!({"picking_id": picking, "product_id": [1, "[P-1] Pump"], "product_uom_qty": 2.0, "quantity": 2.0, "state": "assigned", "price_unit": 50.0}));

    let mut cfg: OdooConfig =
        serde_json::from_value(json!({"url": odoo.url(), "database": "odoo", "login": BOT_LOGIN})).unwrap();
    cfg.mapping.warehouses.insert("WH".into(), "AMS".into());
    let secrets = OdooSecrets {
        api_key: Some(Secret::new(BOT_API_KEY)),
        webhook_secrets: vec![Secret::new("old-secret"), Secret::new(SECRET)],
    };
    let state = app.state.clone();
    let clock = app.clock.clone();
    let ingest = Ingest {
        store: app.store.clone(),
        warehouses: Arc::new(warehouses()),
        rules: Arc::new(move || Arc::new(dispatch_server::policy::Active(state.policy.policy())) as Arc<dyn Evaluator>),
        now: Arc::new(move || dispatch_server::clock::Clock::now(clock.as_ref())),
    };
    let connector = Connector::new(cfg, secrets, ingest).unwrap();
    assert!(app.state.odoo.set(Arc::new(connector)).is_ok());
    (app, odoo, picking)
}

async fn post(app: &TestApp, query: &str, secret: Option<&str>, body: &str) -> (u16, Value, Option<String>) {
    let mut req = app
        .client
        .post(format!("{}/webhooks/odoo{query}", app.url))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(s) = secret {
        req = req.header("X-Dispatchd-Secret", s);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ctype = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
    (status, resp.json().await.unwrap_or(Value::Null), ctype)
}

fn payload(model: &str, id: i64) -> String {
    json!({"_action": "Send Webhook Notification(#31)", "_model": model, "_id": id, "id": id, "name": "WH/OUT/00001", "state": "assigned"}).to_string()
}

#[tokio::test]
async fn a_hint_is_fetched_from_odoo_applied_once_and_duplicates_change_nothing() {
    let (app, odoo, picking) = setup().await;
    let (status, body, _) = post(&app, "", Some(SECRET), &payload("stock.picking", picking)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["created"], 1);
    assert_eq!(body["pickings"], json!([picking]));
    assert!(odoo.double.calls().contains(&"stock.picking.search_read".to_string()), "the record was fetched from Odoo");
    // Odoo repeats the webhook; the token may come in the URL (Odoo's action sets no headers).
    let (status, body, _) = post(&app, &format!("?token={SECRET}"), None, &payload("stock.picking", picking)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["created"].as_u64(), body["unchanged"].as_u64()), (Some(0), Some(1)));
    let o = app.store.order_by_key("odoo", "WH/OUT/00001").await.unwrap().unwrap();
    assert_eq!(o.version, 2, "the duplicate wrote nothing");
    // The old secret still works during a rotation.
    let (status, _, _) = post(&app, "", Some("old-secret"), &payload("stock.picking", picking)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn bad_input_is_refused_precisely_and_writes_nothing() {
    let (app, odoo, picking) = setup().await;
    let cases: Vec<(Option<&str>, String, u16, &str)> = vec![
        (None, payload("stock.picking", picking), 401, "unauthorized"),
        (Some("wrong"), payload("stock.picking", picking), 401, "unauthorized"),
        (Some(SECRET), "{not json".into(), 400, "malformed-webhook"),
        (Some(SECRET), "[1, 2]".into(), 400, "malformed-webhook"),
        (Some(SECRET), json!({"_id": picking}).to_string(), 400, "malformed-webhook"),
        (Some(SECRET), json!({"_model": "stock.picking", "_id": "abc"}).to_string(), 400, "malformed-webhook"),
        (Some(SECRET), payload("account.move", 3), 422, "unknown-model"),
    ];
    for (secret, body, want, slug) in cases {
        let (status, problem, ctype) = post(&app, "", secret, &body).await;
        assert_eq!(status, want, "{body}: {problem}");
        assert_eq!(ctype.as_deref(), Some("application/problem+json"));
        assert_eq!(problem["type"], format!("urn:dispatchd:problem:{slug}"), "{problem}");
        assert!(!problem["detail"].as_str().unwrap_or("").contains(SECRET));
    }
    let (_, problem, _) = post(&app, "", Some(SECRET), &payload("account.move", 3)).await;
    assert!(problem["detail"].as_str().unwrap().contains("stock.picking"), "says which models are synced: {problem}");
    assert_eq!(app.store.order_count().await.unwrap(), 0, "nothing written");
    assert!(odoo.double.calls().is_empty(), "nothing was fetched for a refused hint");
}

#[tokio::test]
async fn odoo_down_answers_503_and_writes_nothing() {
    let (app, odoo, picking) = setup().await;
    odoo.double.set_down(true);
    let (status, problem, _) = post(&app, "", Some(SECRET), &payload("stock.picking", picking)).await;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(problem["type"], "urn:dispatchd:problem:odoo-unavailable");
    assert!(problem["detail"].as_str().unwrap().contains("periodic sync"), "{problem}");
    assert_eq!(app.store.order_count().await.unwrap(), 0);
}
