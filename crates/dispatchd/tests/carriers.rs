//! Booking and tracking against real processes: `dispatchd serve` and `mock-carrier`, talking
//! HTTP on loopback. Outage → retries → fallback carrier; 429 with Retry-After honoured; dead
//! letter → manual retry; `kill -9` during 1,000 bookings → every order booked exactly once
//! by the carrier's own count.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

struct CarrierSpec<'a> {
    name: &'a str,
    url: &'a str,
    fallback: &'a [&'a str],
    failure_threshold: u32,
    timeout_ms: u64,
}

fn write_config(data: &Path, booking: &str, carriers: &[CarrierSpec<'_>]) {
    let mut toml = format!("[booking]\n{booking}\n");
    for c in carriers {
        let fallback: Vec<String> = c.fallback.iter().map(|f| format!("{f:?}")).collect();
        toml.push_str(&format!(
            "\n[carriers.{}]\nkind = \"easypost\"\nbase_url = {:?}\nservice = \"Ground\"\nfallback = [{}]\ntimeout_ms = {}\n\
             [carriers.{}.breaker]\nfailure_threshold = {}\nopen_for = 60000\n",
            c.name,
            c.url,
            fallback.join(", "),
            c.timeout_ms,
            c.name,
            c.failure_threshold
        ));
    }
    std::fs::write(data.join("dispatchd.toml"), toml).unwrap();
}

fn env(carriers: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, key) in carriers {
        let n = name.to_uppercase();
        out.push((format!("DISPATCHD_CARRIER_{n}_API_KEY"), key.to_string()));
        out.push((format!("DISPATCHD_CARRIER_{n}_WEBHOOK_SECRETS"), format!("whsec-{name}")));
    }
    out
}

/// Serves `data` with one carrier (API key "k"); returns the server and a token of `role`.
async fn serve_one_carrier(
    dir: &Path,
    data: &Path,
    booking: &str,
    carrier: CarrierSpec<'_>,
    role: &str,
) -> (Proc, String) {
    write_config(data, booking, std::slice::from_ref(&carrier));
    let token = token(&data_dir_args(data), role);
    let data_arg = data.to_str().unwrap().to_string();
    let server =
        Proc::start_with_env(&["serve", "--data-dir", &data_arg], &env(&[(carrier.name, "k")]), &dir.join("d.log"))
            .await;
    (server, token)
}

/// Waits until the order is booked.
async fn wait_booked(url: &str, token: &str, id: &str, what: &str) {
    wait_for(30, what, || async { (order_state(url, token, id).await["state"] == "booked").then_some(()) }).await;
}

async fn create_orders(url: &str, token: &str, prefix: &str, n: usize) -> Vec<String> {
    let client = reqwest::Client::new();
    let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (client, url, token, ids, next, prefix) =
            (client.clone(), url.to_string(), token.to_string(), ids.clone(), next.clone(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let r = client
                    .post(format!("{url}/api/v1/orders"))
                    .bearer_auth(&token)
                    .json(&order(&format!("{prefix}/{i}"), 4))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
                let o: Value = r.json().await.unwrap();
                assert_eq!(o["state"], "released", "{o}");
                ids.lock().unwrap().push(o["id"].as_str().unwrap().to_string());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    ids.lock().unwrap().clone()
}

async fn order_state(url: &str, token: &str, id: &str) -> Value {
    get_json(&format!("{url}/api/v1/orders/{id}"), token).await
}

async fn metrics(url: &str) -> String {
    reqwest::get(format!("{url}/metrics")).await.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outage_then_retries_then_fallback_and_tracking_moves_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let port = free_port();
    let alpha = MockCarrier::start(&["--api-key", "ka", "--fault", "down=true"], &dir.path().join("alpha.log")).await;
    let hook = format!("http://127.0.0.1:{port}/webhooks/carriers/beta");
    let beta = MockCarrier::start(
        &[
            "--api-key",
            "kb",
            "--webhook-url",
            &hook,
            "--webhook-secret",
            "whsec-beta",
            "--time-scale",
            "0.0005",
            "--fault",
            "duplicate-rate=0.5",
            "--fault",
            "out-of-order-rate=0.5",
            "--fault",
            "unknown-status-rate=0.3",
        ],
        &dir.path().join("beta.log"),
    )
    .await;
    write_config(
        &data,
        "default_carrier = \"alpha\"\nbackoff_base_ms = 100\nbackoff_cap_ms = 400\npoll_ms = 20",
        &[
            CarrierSpec { name: "alpha", url: &alpha.url, fallback: &["beta"], failure_threshold: 3, timeout_ms: 2000 },
            CarrierSpec { name: "beta", url: &beta.url, fallback: &[], failure_threshold: 3, timeout_ms: 2000 },
        ],
    );
    let token = token(&data_dir_args(&data), "admin");
    let data_arg = data.to_str().unwrap().to_string();
    let server = Proc::start_on(
        port,
        &["serve", "--data-dir", &data_arg],
        &env(&[("alpha", "ka"), ("beta", "kb")]),
        &dir.path().join("dispatchd.log"),
    )
    .await;
    let ids = create_orders(&server.url, &token, "FB", 5).await;

    for id in &ids {
        let o = wait_for(60, &format!("{id} delivered"), || async {
            let o = order_state(&server.url, &token, id).await;
            (o["state"] == "delivered").then_some(o)
        })
        .await;
        assert_eq!(o["shipment"]["carrier"], "beta");
        assert_eq!(o["shipment"]["tracking"]["status"], "delivered");
        let t = get_json(&format!("{}/api/v1/orders/{id}/timeline", server.url), &token).await;
        let kinds: Vec<&str> = t["items"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
        for k in ["shipment.booked", "shipment.dispatched", "order.delivered", "tracking.updated"] {
            assert!(kinds.contains(&k), "{id}: {kinds:?}");
        }
        let ids_in_timeline: Vec<&str> =
            t["items"].as_array().unwrap().iter().filter_map(|e| e["update"]["event_id"].as_str()).collect();
        let mut distinct = ids_in_timeline.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), ids_in_timeline.len(), "duplicates were recorded once: {ids_in_timeline:?}");
    }
    let a = alpha.stats().await;
    assert!(a["outage_refusals"].as_u64().unwrap() >= 3, "alpha was tried (and retried) first: {a}");
    assert_eq!(alpha.bookings().await["purchases"], 0);
    let b = beta.bookings().await;
    assert_eq!(b["purchases"], 5, "{b}");
    for id in &ids {
        assert_eq!(b["purchases_by_reference"][id], 1);
    }
    let m = metrics(&server.url).await;
    assert!(m.contains("dispatchd_carrier_fallbacks_total{from=\"alpha\",to=\"beta\"}"), "{m}");
    assert!(m.contains("dispatchd_carrier_circuit_state{carrier=\"alpha\"} 2"), "alpha's circuit is open");
    assert!(m.contains("dispatchd_carrier_bookings_total{carrier=\"alpha\",outcome=\"unavailable\"}"));
    assert!(m.contains("dispatchd_carrier_bookings_total{carrier=\"beta\",outcome=\"booked\"} 5"), "{m}");
    assert!(m.contains("dispatchd_tracking_events_total{carrier=\"beta\",status=\"delivered\"} 5"), "{m}");
    // Every carrier call is in the database for every node to read: alpha's refusals as
    // failures, beta's five bookings.
    drop(server);
    let store = dispatch_store::SqliteStore::open_path(data.join("dispatchd.db")).await.unwrap();
    let since = chrono::Utc::now() - chrono::Duration::hours(1);
    let totals = dispatch_store::Store::carrier_attempt_totals(&store, since, chrono::Utc::now()).await.unwrap();
    let alpha_t = totals.iter().find(|t| t.carrier == "alpha").expect("alpha's attempts");
    assert!(alpha_t.attempts >= 3 && alpha_t.failures == alpha_t.attempts, "{totals:?}");
    let beta_t = totals.iter().find(|t| t.carrier == "beta").expect("beta's attempts");
    assert_eq!((beta_t.attempts, beta_t.failures), (5, 0), "{totals:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limits_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mock = MockCarrier::start(
        &["--api-key", "k", "--fault", "error-rate=1", "--fault", "errors=429", "--fault", "retry-after=1"],
        &dir.path().join("mock.log"),
    )
    .await;
    let rl = CarrierSpec { name: "rl", url: &mock.url, fallback: &[], failure_threshold: 1000, timeout_ms: 2000 };
    let (server, token) =
        serve_one_carrier(dir.path(), &data, "backoff_base_ms = 10\nbackoff_cap_ms = 20\npoll_ms = 10", rl, "admin")
            .await;
    let ids = create_orders(&server.url, &token, "RL", 1).await;
    wait_for(30, "a first request", || async { (mock.stats().await["requests"].as_u64() >= Some(1)).then_some(()) })
        .await;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let during = mock.stats().await["requests"].as_u64().unwrap();
    // Backoff alone (10–20 ms) would have made ~100 requests; Retry-After: 1 s allows ~3.
    assert!(during <= 4, "{during} requests in {:?}: Retry-After was not honoured", started.elapsed());
    assert!(during >= 2, "it kept retrying");
    mock.set_faults(serde_json::json!({})).await;
    let id = &ids[0];
    wait_booked(&server.url, &token, id, "booked").await;
    assert_eq!(mock.bookings().await["purchases_by_reference"][id], 1);
    let m = metrics(&server.url).await;
    assert!(m.contains("dispatchd_carrier_bookings_total{carrier=\"rl\",outcome=\"rate_limited\"}"), "{m}");
}

/// A release wakes the booking worker at once; the poll interval only bounds the wait for
/// retries that come due. With a ten-minute poll, orders released after the worker's first
/// look are still booked within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_release_is_booked_at_once_whatever_the_poll_interval() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mock = MockCarrier::start(&["--api-key", "k"], &dir.path().join("mock.log")).await;
    let wake = CarrierSpec { name: "wake", url: &mock.url, fallback: &[], failure_threshold: 5, timeout_ms: 2000 };
    let (server, token) = serve_one_carrier(dir.path(), &data, "poll_ms = 600000", wake, "supervisor").await;
    // Let the worker make its first (empty) look, so only a wake-up can book what follows.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids = create_orders(&server.url, &token, "WAKE", 3).await;
    // (Within the 30-s wait, far below the ten-minute poll.)
    for id in &ids {
        wait_booked(&server.url, &token, id, "booked without waiting for the poll").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letter_then_manual_retry_books_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mock = MockCarrier::start(&["--api-key", "k", "--fault", "reject-rate=1"], &dir.path().join("mock.log")).await;
    let dl = CarrierSpec { name: "dl", url: &mock.url, fallback: &[], failure_threshold: 5, timeout_ms: 2000 };
    let (server, token) = serve_one_carrier(dir.path(), &data, "poll_ms = 20", dl, "supervisor").await;
    let data_arg = data.to_str().unwrap().to_string();
    let ids = create_orders(&server.url, &token, "DL", 1).await;
    let id = ids[0].clone();
    let dead = wait_for(30, "a dead letter", || async {
        let d = get_json(&format!("{}/api/v1/dead-letters", server.url), &token).await;
        d["items"].as_array().filter(|i| !i.is_empty()).map(|i| i[0].clone())
    })
    .await;
    assert_eq!(dead["order_id"], id.as_str());
    assert!(dead["last_error"].as_str().unwrap().contains("rejected"), "{dead}");
    let o = order_state(&server.url, &token, &id).await;
    assert_eq!(o["state"], "exception");
    assert!(o["status_note"].as_str().unwrap().starts_with("carrier booking failed"), "{o}");
    let m = metrics(&server.url).await;
    assert!(m.contains("dispatchd_dead_letters 1"), "{m}");
    assert!(m.contains("dispatchd_dead_letters_total{kind=\"book_shipment\"} 1"), "{m}");

    // The carrier is fixed; an operator reprocesses from the command line.
    mock.set_faults(serde_json::json!({})).await;
    let out = std::process::Command::new(BIN).args(["dead-letters", "list", "--data-dir", &data_arg]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(listed["id"], dead["id"]);
    let job = dead["id"].to_string();
    let out = std::process::Command::new(BIN)
        .args(["dead-letters", "retry", &job, "--data-dir", &data_arg])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_booked(&server.url, &token, &id, "booked after the retry").await;
    assert_eq!(mock.bookings().await["purchases_by_reference"][&id], 1);
    let d = get_json(&format!("{}/api/v1/dead-letters", server.url), &token).await;
    assert!(d["items"].as_array().unwrap().is_empty());
    let out = std::process::Command::new(BIN)
        .args(["dead-letters", "retry", &job, "--data-dir", &data_arg])
        .output()
        .unwrap();
    assert!(!out.status.success(), "no longer a dead letter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_1000_bookings_books_every_order_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // Slow, flaky and sometimes answering too late (after booking): the worst case for
    // exactly-once.
    let mock = MockCarrier::start(
        &[
            "--api-key",
            "k",
            "--fault",
            "latency=20..60",
            "--fault",
            "error-rate=0.05",
            "--fault",
            "errors=500,503",
            "--fault",
            "timeout-rate=0.02",
            "--fault",
            "timeout=1500",
        ],
        &dir.path().join("mock.log"),
    )
    .await;
    write_config(
        &data,
        "concurrency = 8\nbatch = 8\nlease_secs = 3\nbackoff_base_ms = 50\nbackoff_cap_ms = 500\nmax_attempts = 100\npoll_ms = 20",
        &[CarrierSpec { name: "ko", url: &mock.url, fallback: &[], failure_threshold: 10_000, timeout_ms: 1000 }],
    );
    let token = token(&data_dir_args(&data), "admin");
    let data_arg = data.to_str().unwrap().to_string();
    let envs = env(&[("ko", "k")]);
    let log = dir.path().join("d.log");
    let mut server = Proc::start_with_env(&["serve", "--data-dir", &data_arg], &envs, &log).await;
    let ids = create_orders(&server.url, &token, "K9", 1000).await;
    assert_eq!(ids.len(), 1000);
    let at_kill = wait_for(120, "300 bookings", || async {
        let n = mock.bookings().await["purchases"].as_u64().unwrap_or(0);
        (n >= 300).then_some(n)
    })
    .await;
    server.kill9();
    assert!(at_kill < 1000, "killed after every booking ({at_kill}): nothing was in flight");

    let server = Proc::start_with_env(&["serve", "--data-dir", &data_arg], &envs, &log).await;
    wait_for(240, "every order booked", || async {
        let orders = all_orders(&server.url, &token).await;
        let booked = orders.iter().filter(|o| o["state"] == "booked").count();
        (booked == 1000).then_some(())
    })
    .await;
    let b = mock.bookings().await;
    assert_eq!(b["purchases"], 1000, "the carrier booked exactly 1000 shipments");
    assert!(b["double_booked"].as_array().unwrap().is_empty(), "{}", b["double_booked"]);
    let by_ref = b["purchases_by_reference"].as_object().unwrap();
    assert_eq!(by_ref.len(), 1000);
    for id in &ids {
        assert_eq!(by_ref.get(id).and_then(|n| n.as_u64()), Some(1), "{id}");
    }
    let stats = mock.stats().await;
    eprintln!("killed at {at_kill} bookings; mock stats after: {stats}");
}
