//! The pull sync against the Odoo double: initial load, incremental changes, records changed
//! during a sync (the overlap window), cancellation and deletion in Odoo, Odoo going down in
//! the middle of a run, duplicate hints — on JSON-RPC and on JSON-2.

mod common;

use common::*;
use dispatch_core::OrderState;
use dispatch_odoo::Api;
use dispatch_odoo::plan::Cursor;
use dispatch_odoo::sync::CURSOR;
use dispatch_store::OrderQuery;
use serde_json::json;

async fn order_count(e: &Env) -> i64 {
    e.store.order_count().await.unwrap()
}

async fn state_of(e: &Env, name: &str) -> OrderState {
    e.store.order_by_key("odoo", name).await.unwrap().unwrap_or_else(|| panic!("no order {name}")).state
}

async fn initial_load_then_incremental(api: Api) {
    let e = env_with(api, 100, 120).await;
    for n in 1..=250 {
        seed_picking(e.double(), n, 4.0);
    }
    // Noise the sync must leave alone: a receipt and a validated delivery.
    e.double()
        .seed("stock.picking", json!({"name": "WH/IN/00001", "state": "assigned", "picking_type_code": "incoming"}));
    let r = e.connector.sync_once(&|_| {}).await.unwrap();
    assert_eq!((r.read, r.created, r.pages), (250, 250, 3), "{r:?}");
    assert!(r.rejected.is_empty(), "{:?}", r.rejected);
    assert_eq!(order_count(&e).await, 250);
    let o = e.store.order_by_key("odoo", "WH/OUT/00007").await.unwrap().unwrap();
    assert_eq!(o.state, OrderState::Released);
    assert_eq!(o.facts.customer.id, "C-7");
    assert_eq!(o.facts.carrier_preference.as_deref(), Some("dhl"));
    let cursor = Cursor::parse(&e.store.sync_cursor(CURSOR).await.unwrap().unwrap()).unwrap();

    // Nothing changed: a second run writes nothing.
    e.advance(60);
    e.double().set_now(Some(e.now()));
    let again = e.connector.sync_once(&|_| {}).await.unwrap();
    assert_eq!(again.created + again.updated, 0, "{again:?}");

    // A picking loses its reservation in Odoo: the order is held.
    e.advance(60);
    e.double().set_now(Some(e.now()));
    // Each model numbers its records from 1: picking n has id n and its one move id n.
    let pid = 7;
    assert_eq!(e.double().record("stock.move", 7).unwrap()["picking_id"], json!(pid));
    e.double().modify("stock.move", 7, json!({"quantity": 1.0}));
    e.double().modify("stock.picking", pid, json!({"state": "confirmed"}));
    let inc = e.connector.sync_once(&|_| {}).await.unwrap();
    // The overlap window re-reads the records near the cursor; only the changed one is written.
    assert_eq!((inc.created, inc.updated, inc.unchanged + 1), (0, 1, inc.read), "{inc:?}");
    let o = e.store.order_by_key("odoo", "WH/OUT/00007").await.unwrap().unwrap();
    assert_eq!(o.state, OrderState::OnHold);
    assert_eq!(o.facts.lines[0].qty_allocated, 1);
    let after = Cursor::parse(&e.store.sync_cursor(CURSOR).await.unwrap().unwrap()).unwrap();
    assert!(after > cursor);
}

#[tokio::test]
async fn initial_load_then_incremental_changes_json_rpc() {
    initial_load_then_incremental(Api::JsonRpc).await;
}

#[tokio::test]
async fn initial_load_then_incremental_changes_json_2() {
    initial_load_then_incremental(Api::Json2).await;
}

#[tokio::test]
async fn a_change_committed_during_a_sync_is_caught_by_the_overlap_window() {
    let e = env_with(Api::JsonRpc, 50, 120).await;
    for n in 1..=20 {
        seed_picking(e.double(), n, 4.0);
    }
    e.connector.sync_once(&|_| {}).await.unwrap();
    let cursor = Cursor::parse(&e.store.sync_cursor(CURSOR).await.unwrap().unwrap()).unwrap();
    // A transaction that started 30 s before the last run read (so Odoo stamps that time)
    // commits after it: its write_date is older than the cursor.
    e.advance(10);
    let started = (e.now() - chrono::Duration::seconds(40)).format("%Y-%m-%d %H:%M:%S").to_string();
    assert!(started < cursor.write_date);
    e.double().modify("stock.picking", 3, json!({"priority": "1", "write_date": started}));
    let r = e.connector.sync_once(&|_| {}).await.unwrap();
    assert!(r.updated >= 1, "{r:?}");
    let o = e.store.order_by_key("odoo", "WH/OUT/00003").await.unwrap().unwrap();
    assert_eq!(o.facts.service_level, dispatch_core::ServiceLevel::Express, "the late change arrived");

    // Without the overlap the same late commit is lost: the window is what catches it.
    let blind = env_with(Api::JsonRpc, 50, 0).await;
    for n in 1..=20 {
        seed_picking(blind.double(), n, 4.0);
    }
    blind.connector.sync_once(&|_| {}).await.unwrap();
    blind.advance(10);
    let started = (blind.now() - chrono::Duration::seconds(40)).format("%Y-%m-%d %H:%M:%S").to_string();
    blind.double().modify("stock.picking", 3, json!({"priority": "1", "write_date": started}));
    blind.connector.sync_once(&|_| {}).await.unwrap();
    let o = blind.store.order_by_key("odoo", "WH/OUT/00003").await.unwrap().unwrap();
    assert_eq!(o.facts.service_level, dispatch_core::ServiceLevel::Standard);
}

#[tokio::test]
async fn cancelled_and_deleted_pickings_cancel_their_orders() {
    let e = env_with(Api::JsonRpc, 100, 120).await;
    let a = seed_picking(e.double(), 1, 4.0);
    let b = seed_picking(e.double(), 2, 4.0);
    seed_picking(e.double(), 3, 4.0);
    e.connector.sync_once(&|_| {}).await.unwrap();
    assert_eq!(order_count(&e).await, 3);
    e.advance(30);
    e.double().set_now(Some(e.now()));
    e.double().modify("stock.picking", a, json!({"state": "cancel"}));
    assert!(e.double().delete("stock.picking", b));
    let r = e.connector.sync_once(&|_| {}).await.unwrap();
    assert_eq!(r.cancelled, 2, "{r:?}");
    assert_eq!(state_of(&e, "WH/OUT/00001").await, OrderState::Cancelled);
    let deleted = e.store.order_by_key("odoo", "WH/OUT/00002").await.unwrap().unwrap();
    assert_eq!(deleted.state, OrderState::Cancelled);
    assert_eq!(deleted.status_note.as_deref(), Some("deleted in Odoo"));
    assert_eq!(state_of(&e, "WH/OUT/00003").await, OrderState::Released);
    // Running again changes nothing.
    let again = e.connector.sync_once(&|_| {}).await.unwrap();
    assert_eq!(again.cancelled, 0);
}

#[tokio::test]
async fn odoo_down_mid_sync_keeps_committed_pages_and_loses_nothing() {
    let e = env_with(Api::JsonRpc, 100, 120).await;
    for n in 1..=250 {
        seed_picking(e.double(), n, 4.0);
    }
    // Page 1 takes 4 calls (pickings, sales, partners, moves) after authenticate; the
    // double goes down in the middle of page 2.
    e.double().down_after(7);
    let err = e.connector.sync_once(&|_| {}).await.unwrap_err();
    assert!(matches!(err, dispatch_odoo::sync::SyncError::Odoo(dispatch_odoo::OdooError::Unavailable { .. })), "{err}");
    assert_eq!(order_count(&e).await, 100, "page 1 committed, page 2 not");
    let cursor = Cursor::parse(&e.store.sync_cursor(CURSOR).await.unwrap().unwrap()).unwrap();
    assert_eq!(cursor.id, 100, "the cursor stands after the last committed page");
    // Still down: the next run fails without moving anything.
    assert!(e.connector.sync_once(&|_| {}).await.is_err());
    assert_eq!(e.store.sync_cursor(CURSOR).await.unwrap().unwrap(), cursor.to_string());

    e.double().set_down(false);
    let r = e.connector.sync_once(&|_| {}).await.unwrap();
    assert_eq!(r.created, 150, "{r:?}");
    assert_eq!(order_count(&e).await, 250);
    // Each order exactly once, each with its first two events only.
    let all = e.store.list_orders(&OrderQuery { limit: 500, ..Default::default() }).await.unwrap();
    assert!(all.items.iter().all(|o| o.version == 2), "no order written twice");
}

#[tokio::test]
async fn duplicate_hints_are_harmless_and_the_record_is_fetched_from_odoo() {
    let e = env_with(Api::JsonRpc, 100, 120).await;
    let p = seed_picking(e.double(), 1, 4.0);
    let first = e.connector.hint("stock.picking", p, None).await.unwrap();
    assert_eq!((first.report.created, first.pickings.clone()), (1, vec![p]));
    let dup = e.connector.hint("stock.picking", p, None).await.unwrap();
    assert_eq!((dup.report.created, dup.report.updated, dup.report.unchanged), (0, 0, 1));
    let o = e.store.order_by_key("odoo", "WH/OUT/00001").await.unwrap().unwrap();
    assert_eq!(o.version, 2);
    // A hint about the sale order reaches its picking.
    let sale = e.double().record("stock.picking", p).unwrap()["sale_id"].as_i64().unwrap();
    e.double().modify("sale.order", sale, json!({"x_dispatch_service_level": "next_day"}));
    let via_sale = e.connector.hint("sale.order", sale, None).await.unwrap();
    assert_eq!((via_sale.report.updated, via_sale.pickings.clone()), (1, vec![p]));
    // A hint about a deleted picking cancels its order only because Odoo confirms it is gone.
    e.double().delete("stock.picking", p);
    let gone = e.connector.hint("stock.picking", p, Some("WH/OUT/00001")).await.unwrap();
    assert_eq!(gone.report.cancelled, 1);
    assert_eq!(state_of(&e, "WH/OUT/00001").await, OrderState::Cancelled);
}

#[tokio::test]
async fn pickings_that_cannot_map_are_named_and_skipped() {
    let e = env_with(Api::JsonRpc, 100, 120).await;
    seed_picking(e.double(), 1, 4.0);
    let bad = seed_picking(e.double(), 2, 4.0);
    e.double().modify("stock.picking", bad, json!({"name": "ZZ/OUT/00002"}));
    let r = e.connector.sync_once(&|_| {}).await.unwrap();
    assert_eq!(r.created, 1);
    assert_eq!(r.rejected.len(), 1);
    assert!(
        r.rejected[0].contains("ZZ/OUT/00002") && r.rejected[0].contains("[odoo.mapping.warehouses]"),
        "{:?}",
        r.rejected
    );
}
