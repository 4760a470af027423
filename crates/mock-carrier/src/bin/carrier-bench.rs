//! `carrier-bench`: the load generator behind BENCHMARKS-carriers.md.
//!
//! - `carrier-bench webhooks --url URL --token T --carrier NAME --secret S [--rate R]
//!   [--concurrency C] [--seconds D]`: sends signed EasyPost-shaped `tracker.updated` events
//!   for the booked orders of a running dispatchd. `--rate 0` is a closed loop (as fast as
//!   `C` connections go); a rate is an open loop whose latencies are measured from each
//!   request's scheduled time (no coordinated omission).
//! - `carrier-bench bookings --url URL --token T --mock MOCK_URL --orders N`: waits until the
//!   mock carrier has bought N shipments and reports bookings per second.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use dispatch_integrations::Secret;
use dispatch_integrations::webhook::{SignatureScheme, signature_header};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(name = "carrier-bench", about = "Load generator for dispatchd's carrier paths")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Webhooks {
        #[arg(long)]
        url: String,
        #[arg(long)]
        token: String,
        #[arg(long)]
        carrier: String,
        #[arg(long)]
        secret: String,
        /// Requests per second; 0 = as fast as possible (closed loop).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Creates N clean (released) orders through the API.
    Orders {
        #[arg(long)]
        url: String,
        #[arg(long)]
        token: String,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    Bookings {
        #[arg(long)]
        mock: String,
        #[arg(long)]
        orders: u64,
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Webhooks { url, token, carrier, secret, rate, concurrency, seconds } => {
            webhooks(url, token, carrier, Secret::new(secret), rate, concurrency, seconds).await
        }
        Cmd::Bookings { mock, orders, timeout_secs } => bookings(mock, orders, timeout_secs).await,
        Cmd::Orders { url, token, count, concurrency } => orders(url, token, count, concurrency).await,
    }
}

async fn orders(url: String, token: String, count: usize, concurrency: usize) -> Result<()> {
    let client = reqwest::Client::new();
    let run = format!("{:x}", chrono::Utc::now().timestamp_micros());
    let promised = (chrono::Utc::now() + chrono::Duration::days(6)).date_naive().to_string();
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (client, url, token, run, promised, next, failed) =
            (client.clone(), url.clone(), token.clone(), run.clone(), promised.clone(), next.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return;
                }
                let body = json!({
                    "source": "bench", "external_id": format!("B/{run}/{i}"), "warehouse": "AMS", "channel": "sales",
                    "customer": {"id": "C-1", "name": "Acme BV", "tier": "silver", "credit_status": "ok"},
                    "service_level": "standard", "promised_date": promised,
                    "ship_to": {"name": "Acme BV", "street": "Damrak 1", "city": "Amsterdam", "postcode": "1012 LG", "country": "NL"},
                    "lines": [{"sku": "P-1", "qty": 4, "qty_allocated": 4, "unit_value": 10.0, "weight_kg": 1.5}],
                    "documents": ["commercial_invoice"]
                });
                let ok = client
                    .post(format!("{url}/api/v1/orders"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    println!("orders: {count} in {:.2} s ({} failed)", started.elapsed().as_secs_f64(), failed.load(Ordering::Relaxed));
    Ok(())
}

async fn bookings(mock: String, orders: u64, timeout_secs: u64) -> Result<()> {
    let client = reqwest::Client::new();
    let count = || async {
        let v: Value = client.get(format!("{mock}/admin/bookings")).send().await?.json().await?;
        Ok::<u64, anyhow::Error>(v["purchases"].as_u64().unwrap_or(0))
    };
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    // Start the clock at the first booking.
    let mut start = None;
    let mut first_n = 0;
    loop {
        let n = count().await?;
        if start.is_none() && n > 0 {
            start = Some(Instant::now());
            first_n = n;
        }
        if n >= orders {
            let s = start.map(|s| s.elapsed()).unwrap_or_default().as_secs_f64().max(1e-3);
            let v: Value = client.get(format!("{mock}/admin/bookings")).send().await?.json().await?;
            println!(
                "bookings: {n} in {s:.2} s = {:.0} bookings/s; double-booked: {}",
                (n - first_n) as f64 / s,
                v["double_booked"].as_array().map_or(0, |a| a.len())
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {n} of {orders} bookings before the timeout");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn tracking_numbers(client: &reqwest::Client, url: &str, token: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = format!("{url}/api/v1/orders?state=booked,dispatched,delivered&limit=500");
        if let Some(c) = &cursor {
            q.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client.get(&q).bearer_auth(token).send().await?.json().await?;
        for o in page["items"].as_array().context("no items")? {
            if let Some(t) = o["shipment"]["tracking_number"].as_str() {
                out.push(t.to_string());
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return Ok(out),
        }
    }
}

const STATUSES: &[&str] = &["pre_transit", "in_transit", "out_for_delivery", "delivered"];

fn event(run: &str, k: u64, tracking: &[String]) -> Vec<u8> {
    let n = tracking.len() as u64;
    let t = &tracking[(k % n) as usize];
    let status = STATUSES[((k / n) % STATUSES.len() as u64) as usize];
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    json!({
        "id": format!("evt_{run}_{k}"), "object": "Event", "description": "tracker.updated", "created_at": now,
        "result": {"id": format!("trk_{t}"), "object": "Tracker", "tracking_code": t, "status": status, "updated_at": now,
            "tracking_details": [{"object": "TrackingDetail", "status": status, "datetime": now, "message": "bench scan"}]}
    })
    .to_string()
    .into_bytes()
}

#[allow(clippy::too_many_arguments)]
async fn webhooks(
    url: String,
    token: String,
    carrier: String,
    secret: Secret,
    rate: u64,
    concurrency: usize,
    seconds: u64,
) -> Result<()> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency.max(1) * 2).build()?;
    let tracking = Arc::new(tracking_numbers(&client, &url, &token).await?);
    if tracking.is_empty() {
        bail!("no booked orders to send tracking for");
    }
    let endpoint = Arc::new(format!("{url}/webhooks/carriers/{carrier}"));
    let run = format!("{:x}", chrono::Utc::now().timestamp_micros());
    let scheme = Arc::new(SignatureScheme::default());
    let secret = Arc::new(secret);
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let statuses = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<u16, u64>::new()));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<f64>::with_capacity(200_000)));
    let total = Duration::from_secs(seconds);
    let started = Instant::now();

    let send = {
        let (client, endpoint, scheme, secret, tracking, run) =
            (client.clone(), endpoint.clone(), scheme.clone(), secret.clone(), tracking.clone(), run.clone());
        let (errors, statuses, latencies) = (errors.clone(), statuses.clone(), latencies.clone());
        move |k: u64, scheduled: Instant| {
            let body = event(&run, k, &tracking);
            let sig = signature_header(&scheme, &secret, &body, None);
            let (client, endpoint, errors, statuses, latencies) =
                (client.clone(), endpoint.clone(), errors.clone(), statuses.clone(), latencies.clone());
            async move {
                let r = client
                    .post(endpoint.as_str())
                    .header("content-type", "application/json")
                    .header("X-Hmac-Signature", sig)
                    .body(body)
                    .send()
                    .await;
                let ms = scheduled.elapsed().as_secs_f64() * 1000.0;
                match r {
                    Ok(resp) => {
                        let code = resp.status().as_u16();
                        let _ = resp.bytes().await;
                        *statuses.lock().unwrap_or_else(|p| p.into_inner()).entry(code).or_default() += 1;
                        if (200..300).contains(&code) {
                            latencies.lock().unwrap_or_else(|p| p.into_inner()).push(ms);
                        }
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    };

    if rate == 0 {
        let mut tasks = Vec::new();
        for _ in 0..concurrency.max(1) {
            let (send, next) = (send.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                while started.elapsed() < total {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    send(k, Instant::now()).await;
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
    } else {
        // Open loop: requests are due at fixed times; each runs on its own task, bounded by a
        // semaphore so a stalled server cannot exhaust the generator.
        let slots = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        let mut k = 0u64;
        while started.elapsed() < total {
            let due = started + interval.mul_f64(k as f64);
            let now = Instant::now();
            if due > now {
                tokio::time::sleep(due - now).await;
            }
            let permit = slots.clone().acquire_owned().await?;
            let fut = send(k, due);
            tokio::spawn(async move {
                fut.await;
                drop(permit);
            });
            k += 1;
        }
        let _ = slots.acquire_many(concurrency.max(1) as u32).await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut l = latencies.lock().unwrap_or_else(|p| p.into_inner()).clone();
    l.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| if l.is_empty() { 0.0 } else { l[((l.len() as f64 * p) as usize).min(l.len() - 1)] };
    println!(
        "webhooks: {} ok in {elapsed:.2} s = {:.0}/s (target {}); latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}; \
         statuses {:?}; transport errors {}; {} shipments",
        l.len(),
        l.len() as f64 / elapsed,
        if rate == 0 { "max".to_string() } else { rate.to_string() },
        pct(0.5),
        pct(0.9),
        pct(0.99),
        l.last().copied().unwrap_or(0.0),
        statuses.lock().unwrap_or_else(|p| p.into_inner()),
        errors.load(Ordering::Relaxed),
        tracking.len()
    );
    Ok(())
}
