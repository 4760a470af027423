//! Several `dispatchd` nodes against one PostgreSQL database, as in production behind a load
//! balancer: three nodes on loopback take upserts and book shipments at the mock carrier while
//! the scheduler leader is `kill -9`ed under load. Every acknowledged order is booked exactly
//! once by the carrier's own count, and every schedule tick runs once, on one node at a time.
//!
//! Needs PostgreSQL: runs when `TEST_POSTGRES_URL` is set (`scripts/with-postgres` does that,
//! and `scripts/test` runs this suite under it); without it, it says so and passes.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use dispatch_store::testing::{fresh_postgres_database, postgres_url};
use serde_json::Value;

const ORDERS: usize = 900;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_one_killed_under_load_book_every_order_once_and_tick_once() {
    let Some(server) = postgres_url() else {
        eprintln!("skipped: set TEST_POSTGRES_URL (scripts/with-postgres) to run the multi-node test");
        return;
    };
    let db = fresh_postgres_database(&server).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mock = MockCarrier::start(
        &["--api-key", "k", "--fault", "latency=5..30", "--fault", "error-rate=0.03", "--fault", "errors=500,503"],
        &dir.path().join("mock.log"),
    )
    .await;
    let config = data.join("dispatchd.toml");
    std::fs::write(
        &config,
        format!(
            "[booking]\nconcurrency = 4\nbatch = 8\nlease_secs = 3\nbackoff_base_ms = 50\nbackoff_cap_ms = 500\n\
             max_attempts = 100\npoll_ms = 50\n\n\
             [carriers.ko]\nkind = \"easypost\"\nbase_url = {:?}\nservice = \"Ground\"\ntimeout_ms = 2000\n\
             [carriers.ko.breaker]\nfailure_threshold = 10000\nopen_for = 60000\n\n\
             [[schedules]]\nname = \"tick\"\ncadence = \"every 1s\"\naction = \"heartbeat\"\n",
            mock.url
        ),
    )
    .unwrap();
    let store_args = vec!["--config".to_string(), config.display().to_string(), "--database-url".into(), db.clone()];
    let token = token(&store_args, "admin");
    let envs = vec![
        ("DISPATCHD_CARRIER_KO_API_KEY".to_string(), "k".to_string()),
        ("DISPATCHD_CARRIER_KO_WEBHOOK_SECRETS".to_string(), "whsec-ko".to_string()),
    ];
    let args: Vec<&str> = store_args.iter().map(String::as_str).collect();
    let mut serve = vec!["serve"];
    serve.extend(&args);
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(Proc::start_with_env(&serve, &envs, &dir.path().join(format!("node{i}.log"))).await);
    }
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();

    // The scheduler leader, found from its run records (node names carry the process id).
    let leader_pid = wait_for(60, "a first scheduled run", || async {
        let runs = get_json(&format!("{}/api/v1/schedules/tick/runs?limit=1", urls[0]), &token).await;
        runs["items"][0]["node"].as_str().and_then(pid_of)
    })
    .await;
    let victim = nodes.iter().position(|n| n.child.id() == leader_pid).expect("the leader is one of our nodes");

    // Load: 8 clients spread upserts over the three nodes; a refused connection (the killed
    // node) is retried on the next node, which is safe because upserts are idempotent by
    // (source, external_id). Only 201/200 answers count as acknowledged.
    let acked: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let killed = Arc::new(AtomicBool::new(false));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (urls, token, acked, killed, next) =
            (urls.clone(), token.clone(), acked.clone(), killed.clone(), next.clone());
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ORDERS {
                    return;
                }
                let ext = format!("MN/{i}");
                let mut target = i % urls.len();
                for _attempt in 0..6 {
                    if killed.load(Ordering::Relaxed) && target == victim {
                        target = (target + 1) % urls.len();
                    }
                    let sent = http
                        .post(format!("{}/api/v1/orders", urls[target]))
                        .bearer_auth(&token)
                        .json(&order(&ext, 4))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => {
                            let o: Value = r.json().await.unwrap();
                            acked.lock().unwrap().insert(ext.clone(), o["id"].as_str().unwrap().to_string());
                            break;
                        }
                        Ok(r) if r.status().is_server_error() => {}
                        Ok(r) => panic!("upsert {ext}: {}", r.status()),
                        Err(_) => {} // connection refused or reset: the node is gone
                    }
                    target = (target + 1) % urls.len();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }

    // Kill the leader once bookings are under way and upserts still flowing.
    wait_for(120, "150 bookings", || async {
        let n = mock.bookings().await["purchases"].as_u64().unwrap_or(0);
        (n >= 150).then_some(())
    })
    .await;
    let in_flight = next.load(Ordering::Relaxed);
    killed.store(true, Ordering::Relaxed);
    nodes[victim].kill9();
    let killed_at = chrono::Utc::now();
    for c in clients {
        c.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), ORDERS, "every upsert was acknowledged by some node");
    assert!(in_flight < ORDERS, "the kill came after the last upsert ({in_flight}): not under load");

    let live = &urls[(victim + 1) % urls.len()];
    wait_for(240, "every acknowledged order booked", || async {
        let orders = all_orders(live, &token).await;
        let booked = orders.iter().filter(|o| o["state"] == "booked").count();
        (booked == ORDERS).then_some(())
    })
    .await;
    let orders = all_orders(live, &token).await;
    let stored: BTreeSet<&str> = orders.iter().filter_map(|o| o["id"].as_str()).collect();
    for (ext, id) in &acked {
        assert!(stored.contains(id.as_str()), "acknowledged order {ext} ({id}) is missing");
    }
    assert_eq!(orders.len(), ORDERS, "no order was created twice");

    let b = mock.bookings().await;
    assert_eq!(b["purchases"], ORDERS as u64, "the carrier booked each order once");
    assert!(b["double_booked"].as_array().unwrap().is_empty(), "{}", b["double_booked"]);
    let by_ref = b["purchases_by_reference"].as_object().unwrap();
    for id in acked.values() {
        assert_eq!(by_ref.get(id).and_then(Value::as_u64), Some(1), "{id}");
    }

    // Another node took over the schedule; each tick ran once.
    let new_leader = wait_for(60, "a run on a new leader", || async {
        let runs = get_json(&format!("{live}/api/v1/schedules/tick/runs?limit=5"), &token).await;
        runs["items"].as_array()?.iter().find_map(|r| {
            let started: chrono::DateTime<chrono::Utc> = r["started_at"].as_str()?.parse().ok()?;
            let pid = r["node"].as_str().and_then(pid_of)?;
            (started > killed_at && pid != leader_pid).then_some(pid)
        })
    })
    .await;
    assert_ne!(new_leader, leader_pid);
    let runs = get_json(&format!("{live}/api/v1/schedules/tick/runs?limit=1000"), &token).await;
    let runs = runs["items"].as_array().unwrap();
    let mut ticks = BTreeSet::new();
    for r in runs {
        assert!(ticks.insert(r["scheduled_for"].as_str().unwrap().to_string()), "tick ran twice: {r}");
    }
    let finished: Vec<&Value> = runs.iter().filter(|r| r["outcome"] != "running").collect();
    assert!(finished.iter().all(|r| r["outcome"] == "ok"), "{runs:?}");
    assert!(finished.len() >= 5, "the schedule kept running: {} runs", finished.len());
    eprintln!(
        "killed leader pid {leader_pid} (node {victim}) after {in_flight} upserts were handed out; \
         pid {new_leader} took over; {} ticks ran; mock stats: {}",
        ticks.len(),
        mock.stats().await
    );
}

/// The process id in a node name `<host>-<pid>-<suffix>`.
fn pid_of(node: &str) -> Option<u32> {
    let mut parts = node.rsplitn(3, '-');
    parts.next()?;
    parts.next()?.parse().ok()
}
