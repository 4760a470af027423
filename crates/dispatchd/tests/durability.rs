//! Nothing acknowledged is ever lost: thousands of upserts, `kill -9` mid-stream, restart,
//! and every acknowledged order is there at (at least) its acknowledged version, with a
//! complete event stream whose fold is exactly the stored projection.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use dispatch_core::{Event, Order};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // SQLite in `data`, or a fresh PostgreSQL database when the suite runs against one.
    let store = dispatch_store::testing::Location::fresh(&data).await.cli_args();
    let token = token(&store, "integration");
    let serve: Vec<&str> = std::iter::once("serve").chain(store.iter().map(String::as_str)).collect();
    let mut server = Proc::start(&serve, &dir.path().join("first.log")).await;

    let acked: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut writers = Vec::new();
    for w in 0..16 {
        let (client, url, token, acked) = (client.clone(), server.url.clone(), token.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for n in 0..2000u32 {
                // New orders, and updates of this writer's earlier ones (a new version each).
                let ext = if n % 4 == 3 { format!("DUR/{w}/{}", n / 2) } else { format!("DUR/{w}/{n}") };
                let body = order(&ext, n % 5);
                let Ok(r) = client.post(format!("{url}/api/v1/orders")).bearer_auth(&token).json(&body).send().await
                else {
                    return; // the server is gone
                };
                if !r.status().is_success() {
                    continue;
                }
                let Ok(o) = r.json::<serde_json::Value>().await else { return };
                let version = o["version"].as_u64().unwrap();
                let mut a = acked.lock().unwrap();
                let v = a.entry(ext).or_insert(0);
                *v = (*v).max(version);
            }
        }));
    }
    // Let a few thousand writes be acknowledged, then pull the plug.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 2500 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill9();
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 2500, "only {} writes were acknowledged before the deadline", acked.len());

    let server = Proc::start(&serve, &dir.path().join("second.log")).await;
    let orders = all_orders(&server.url, &token).await;
    let by_ext: HashMap<String, &serde_json::Value> =
        orders.iter().map(|o| (o["external_id"].as_str().unwrap().to_string(), o)).collect();
    for (ext, version) in &acked {
        let o = by_ext.get(ext).unwrap_or_else(|| panic!("acknowledged order {ext} is lost"));
        assert!(o["version"].as_u64().unwrap() >= *version, "{ext} went back from version {version}");
    }
    // No half-written order: every stream is complete and folds to its projection.
    let client = reqwest::Client::new();
    for o in &orders {
        let id = o["id"].as_str().unwrap();
        let t: serde_json::Value = client
            .get(format!("{}/api/v1/orders/{id}/timeline", server.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let events: Vec<Event> =
            t["items"].as_array().unwrap().iter().map(|e| serde_json::from_value(e.clone()).unwrap()).collect();
        let rebuilt = dispatch_core::replay(&events).unwrap().unwrap();
        let stored: Order = serde_json::from_value(o.clone()).unwrap();
        assert_eq!(rebuilt, stored, "{id}: projection and event log disagree");
        assert_ne!(stored.state, dispatch_core::OrderState::Received, "{id}: received but never evaluated");
    }
}
