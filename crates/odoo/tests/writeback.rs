//! Write-back through the outbox against the Odoo double: the tracking number, the status
//! field and the chatter note arrive once, even when Odoo's answers are lost and the job is
//! retried; fields Odoo owns are never written; typed errors name the model.

mod common;

use std::sync::Arc;

use common::*;
use dispatch_core::{Command, Ctx, OrderState, decide};
use dispatch_odoo::writeback::Worker;
use dispatch_odoo::{Api, OdooError};
use dispatch_store::{OrderWrite, Target, WriteMeta};
use serde_json::{Map, Value, json};

fn worker(e: &Env, id: &str) -> Worker {
    let clock = e.clock.clone();
    let settings = dispatch_odoo::WritebackSettings { backoff_base_ms: 1000, ..Default::default() };
    Worker {
        id: id.into(),
        client: Arc::new(dispatch_odoo::Client::new(e.connector.cfg.connection(&secrets())).unwrap()),
        store: e.store.clone(),
        settings,
        now: Arc::new(move || *clock.lock().unwrap()),
    }
}

/// Runs rounds (moving the clock past any backoff) until no job is left.
async fn drain(e: &Env, w: &Worker) -> usize {
    let mut claimed = 0;
    for _ in 0..20 {
        let n = w.round().await.unwrap();
        claimed += n;
        e.advance(600);
        if n == 0 && w.round().await.unwrap() == 0 {
            break;
        }
    }
    claimed
}

fn notes(e: &Env, picking: i64) -> Vec<String> {
    e.double().messages("stock.picking", picking).iter().map(|m| m["body"].as_str().unwrap_or("").to_string()).collect()
}

async fn book(e: &Env, name: &str, tracking: &str) {
    let o = e.store.order_by_key("odoo", name).await.unwrap().unwrap();
    let now = e.now();
    let whs = warehouses();
    let cmd = Command::RecordBooking { carrier: "dhl".into(), tracking_number: tracking.into(), service: None };
    e.store
        .execute(OrderWrite {
            target: Target::Id(o.id),
            meta: WriteMeta { actor: "system:booking".into(), roles: vec![], request_id: None, at: now },
            idempotency: None,
            decide: Box::new(move |cur| decide(cur, cmd.clone(), &Ctx::new(now, &whs))),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn tracking_status_and_note_arrive_once_even_after_retries() {
    let e = env_with(Api::JsonRpc, 100, 120).await;
    let held = seed_picking(e.double(), 1, 1.0); // short: on hold
    let ok = seed_picking(e.double(), 2, 4.0); // released
    e.connector.sync_once(&|_| {}).await.unwrap();
    book(&e, "WH/OUT/00002", "TRK-0002").await;

    // Odoo applies the write and the post but the answers never arrive, twice each.
    e.double().lose_answers("write", 2);
    e.double().lose_answers("message_post", 2);
    let w = worker(&e, "w1");
    let claimed = drain(&e, &w).await;
    assert!(claimed > 3, "the lost answers made jobs run again ({claimed} claims)");

    let p = e.double().record("stock.picking", ok).unwrap();
    assert_eq!(p["carrier_tracking_ref"], "TRK-0002");
    assert_eq!(p["x_dispatch_status"], "booked");
    let n = notes(&e, ok);
    assert_eq!(n.iter().filter(|b| b.contains("booked with dhl, tracking number TRK-0002")).count(), 1, "{n:?}");

    let h = e.double().record("stock.picking", held).unwrap();
    assert_eq!(h["x_dispatch_status"], "on_hold");
    assert_eq!(h["carrier_tracking_ref"], json!(false));
    let n = notes(&e, held);
    assert_eq!(n.len(), 1, "{n:?}");
    assert!(n[0].contains("on hold (stock_short)"), "{n:?}");

    // Every job is done; a second worker finds nothing to do and posts nothing.
    let counts = e.store.job_counts().await.unwrap();
    assert!(counts.iter().all(|(k, s, _)| k != "odoo_writeback" || s == "done"), "{counts:?}");
    assert_eq!(drain(&e, &worker(&e, "w2")).await, 0);
    assert_eq!(notes(&e, ok).len(), 1);
}

#[tokio::test]
async fn a_job_retried_after_its_lease_does_not_post_twice() {
    // The worker posted, then died before marking the job done: after the lease another
    // worker runs it again and finds the note in the chatter.
    let e = env_with(Api::Json2, 100, 120).await;
    let held = seed_picking(e.double(), 1, 0.0);
    e.connector.sync_once(&|_| {}).await.unwrap();
    let w = worker(&e, "w1");
    let lease = chrono::Duration::seconds(60);
    let jobs = e.store.claim_jobs("dead-worker", &["odoo_writeback"], 10, e.now(), lease).await.unwrap();
    assert_eq!(jobs.len(), 1);
    // What the dead worker managed before dying: the note is in the chatter.
    let job: dispatch_odoo::writeback::WritebackJob = serde_json::from_value(jobs[0].payload.clone()).unwrap();
    let current = e.store.order(&job.order_id).await.unwrap();
    let plan = dispatch_odoo::writeback::plan(&job, current.as_ref(), &w.settings, &jobs[0].dedupe_key);
    dispatch_odoo::writeback::apply(&w.client, &job.external_id, &plan).await.unwrap();
    assert_eq!(notes(&e, held).len(), 1);
    e.advance(61);
    assert_eq!(w.round().await.unwrap(), 1, "taken over after the lease");
    assert_eq!(notes(&e, held).len(), 1, "not posted twice");
}

#[tokio::test]
async fn odoo_errors_are_typed_and_name_the_model() {
    let e = env_with(Api::JsonRpc, 100, 120).await;
    let p = seed_picking(e.double(), 1, 4.0);
    // A bot without write access on stock.picking.
    let mut rights = std::collections::HashMap::new();
    for m in ["stock.picking", "sale.order", "res.partner", "stock.move", "mail.message", "res.users"] {
        rights.insert(m.to_string(), odoo_double::models::Rights::READ);
    }
    e.double().add_user(odoo_double::models::User {
        id: 6,
        login: odoo_double::BOT_LOGIN.into(),
        name: "dispatchd bot".into(),
        password: None,
        api_keys: vec![odoo_double::BOT_API_KEY.into()],
        rights,
    });
    for api in [Api::JsonRpc, Api::Json2] {
        let cfg = config(&e.odoo.url(), api, 100, 120);
        let client = dispatch_odoo::Client::new(cfg.connection(&secrets())).unwrap();
        let mut vals = Map::new();
        vals.insert("carrier_tracking_ref".into(), Value::from("X"));
        let err = client.write("stock.picking", &[p], vals).await.unwrap_err();
        assert_eq!(err.exception(), Some("odoo.exceptions.AccessError"), "{api:?}: {err}");
        let text = err.to_string();
        assert!(text.contains("stock.picking.write") && text.contains("give the bot user's group"), "{text}");
        let missing = client.read("stock.picking", &[999], &["name".to_string()]).await.unwrap();
        assert!(missing.is_empty(), "a deleted record reads as absent");
        let unknown =
            client.search_read("stock.picking", json!([["no_such_field", "=", 1]]), &[], None, None).await.unwrap_err();
        assert_eq!(unknown.exception(), Some("builtins.ValueError"), "{unknown}");
        let wrong = dispatch_odoo::Client::new(dispatch_odoo::Connection {
            key: dispatch_integrations::Secret::new("wrong"),
            ..cfg.connection(&secrets())
        })
        .unwrap();
        let auth = wrong.search("stock.picking", json!([])).await.unwrap_err();
        assert!(matches!(auth, OdooError::Auth { .. }), "{api:?}: {auth}");
        assert!(!auth.to_string().contains("wrong"), "the key is never printed");
    }
    // Odoo unreachable is retryable and says where.
    e.double().set_down(true);
    let cfg = config(&e.odoo.url(), Api::JsonRpc, 100, 120);
    let client = dispatch_odoo::Client::new(cfg.connection(&secrets())).unwrap();
    let down = client.version().await.unwrap_err();
    assert!(down.is_retryable(), "{down}");
}

#[tokio::test]
async fn check_reports_version_user_and_access() {
    let e = env_with(Api::JsonRpc, 100, 120).await;
    let r = e.connector.check().await.unwrap();
    assert_eq!(r.version.major, 17);
    assert!(r.user.as_deref().unwrap().contains("dispatchd-bot"), "{:?}", r.user);
    assert!(r.ok(), "{r:?}");
    let e19 = env_with(Api::Json2, 100, 120).await;
    let r = e19.connector.check().await.unwrap();
    assert_eq!(r.version.major, 19);
    assert_eq!(r.uid, 6);
    assert_eq!(r.access.len(), 6);
    let _ = OrderState::Booked;
}
