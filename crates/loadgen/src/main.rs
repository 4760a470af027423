//! `loadgen`: drives a dispatchd server over HTTP on the loopback interface and reports
//! throughput, latency percentiles, cold-start time and memory (RSS) of the server process.
//!
//! Every run is bounded in count and in time, and traffic only ever goes to 127.0.0.0/8 or
//! [::1]. Without `--url`, loadgen starts `dispatchd serve` itself on a free loopback port
//! with a fresh temporary data directory, creates an `integration` token with
//! `dispatchd token create`, and stops the server at the end.
//!
//! ```text
//! loadgen upserts --connections 64 --duration 30            # closed loop: max throughput
//! loadgen upserts --rate 2000 --duration 30                 # open loop at 2,000 orders/s
//! loadgen upserts --total 100000 --list-pages 20            # RSS after 100k orders and a list
//! loadgen cold-start --runs 10                              # spawn → first 200 on /readyz
//! loadgen suite                                             # all of the above, as in BENCHMARKS.md
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Hard upper bounds, whatever the flags say.
const MAX_DURATION: Duration = Duration::from_secs(900);
const MAX_TOTAL: u64 = 2_000_000;
const MAX_CONNECTIONS: usize = 1024;
const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Parser)]
#[command(name = "loadgen", about = "Load generator and benchmark driver for dispatchd (loopback only)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// POST distinct realistic orders to /api/v1/orders and report throughput and latency.
    Upserts {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        load: Load,
        /// After the load, GET this many pages of /api/v1/orders and report RSS again.
        #[arg(long, default_value_t = 0)]
        list_pages: u32,
        /// Page size of those GETs (the server accepts 1..=500).
        #[arg(long, default_value_t = 500)]
        page_limit: u32,
    },
    /// Time from spawning `dispatchd serve` to the first 200 on /readyz.
    ColdStart {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, default_value_t = 10)]
        runs: u32,
    },
    /// Every foundation measurement in one go: cold start (empty and with the 100k-order
    /// database), closed loop, open loop at a fixed rate, and RSS with 100k orders.
    Suite {
        #[command(flatten)]
        server: ServerArgs,
        /// Seconds of each throughput / latency run.
        #[arg(long, default_value_t = 30)]
        duration: u64,
        /// Connections of the closed-loop run.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Rate of the open-loop run (orders/s).
        #[arg(long, default_value_t = 2000)]
        rate: u64,
        /// Orders stored before RSS is read.
        #[arg(long, default_value_t = 100_000)]
        rss_orders: u64,
        #[arg(long, default_value_t = 10)]
        cold_runs: u32,
    },
}

#[derive(Args, Clone)]
struct ServerArgs {
    /// The dispatchd binary started when no --url is given.
    #[arg(long, default_value = "target/release/dispatchd")]
    bin: PathBuf,
    /// Data directory of a started server; a new temporary one (removed at the end) when absent.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct Target {
    /// Base URL of a running server (loopback only), e.g. http://127.0.0.1:8080.
    /// When absent, loadgen starts one (see --bin).
    #[arg(long)]
    url: Option<String>,
    /// Bearer token for --url (created automatically when loadgen starts the server).
    #[arg(long, env = "DISPATCHD_TOKEN")]
    token: Option<String>,
    /// PID of the --url server, to report its RSS.
    #[arg(long)]
    pid: Option<u32>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Args, Clone)]
struct Load {
    /// Concurrent keep-alive HTTP/1.1 connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Stop after this many seconds (at most 900).
    #[arg(long)]
    duration: Option<u64>,
    /// Stop after this many requests (at most 2,000,000).
    #[arg(long)]
    total: Option<u64>,
    /// Open loop: send at this fixed rate (requests/s) and measure latency from each request's
    /// scheduled send time, so a stall is charged to every request it delayed. Closed loop
    /// (each connection sends as soon as its previous answer arrived) when absent.
    #[arg(long)]
    rate: Option<u64>,
    /// Seed of the generated orders.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Prefix of external ids, so reruns against one database create new orders; defaults
    /// to the current time.
    #[arg(long)]
    run_id: Option<String>,
    /// Print progress (completions/s and the worst latency) on stderr every this many ms.
    #[arg(long, default_value_t = 5000)]
    progress_ms: u64,
}

#[tokio::main]
async fn main() {
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Upserts { target, load, list_pages, page_limit } => {
            let (conn, _server) = connect_target(&target).await?;
            let report = upserts(&conn, &load).await?;
            report.print();
            after_load(&conn, list_pages, page_limit).await?;
            Ok(())
        }
        Cmd::ColdStart { server, runs } => {
            let tmp = tempfile::tempdir()?;
            cold_start(&server, runs, tmp.path()).await?.print("cold start");
            Ok(())
        }
        Cmd::Suite { server, duration, connections, rate, rss_orders, cold_runs } => {
            suite(&server, duration, connections, rate, rss_orders, cold_runs).await
        }
    }
}

// ---------------------------------------------------------------------------------------
// Server process

/// A `dispatchd serve` that loadgen started; stopped (SIGTERM, then SIGKILL) when dropped.
struct Server {
    child: Option<Child>,
    pid: u32,
    addr: SocketAddr,
    _tmp: Option<tempfile::TempDir>,
    data_dir: PathBuf,
}

impl Server {
    async fn start(args: &ServerArgs) -> Result<(Server, Duration)> {
        let (tmp, data_dir) = match &args.data_dir {
            Some(d) => (None, d.clone()),
            None => {
                let t = tempfile::Builder::new().prefix("dispatchd-load-").tempdir()?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        std::fs::create_dir_all(&data_dir)?;
        let (child, addr, ready) = spawn_ready(&args.bin, &data_dir).await?;
        let pid = child.id().ok_or_else(|| anyhow!("server exited"))?;
        Ok((Server { child: Some(child), pid, addr, _tmp: tmp, data_dir }, ready))
    }

    async fn create_token(&self, bin: &Path) -> Result<String> {
        let out = Command::new(bin)
            .args(["token", "create", "--name", "load", "--roles", "integration", "--data-dir"])
            .arg(&self.data_dir)
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("cannot run {}", bin.display()))?;
        if !out.status.success() {
            bail!("`dispatchd token create` failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let token = String::from_utf8(out.stdout)?.trim().to_string();
        if token.is_empty() || token.contains(char::is_whitespace) {
            bail!("`dispatchd token create` printed `{token}`, not one token");
        }
        Ok(token)
    }

    async fn stop(mut self) -> Result<()> {
        if let Some(child) = self.child.take() {
            terminate(child).await?;
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
    }
}

async fn terminate(mut child: Child) -> Result<()> {
    if let Some(pid) = child.id() {
        // SAFETY: plain kill(2) on the PID of a child we own and have not reaped yet.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
        Ok(r) => {
            r?;
        }
        Err(_) => {
            child.kill().await?;
        }
    }
    Ok(())
}

fn free_port() -> Result<SocketAddr> {
    let l = StdListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

/// Spawns `dispatchd serve` and waits for the first 200 on /readyz; returns how long that took.
async fn spawn_ready(bin: &Path, data_dir: &Path) -> Result<(Child, SocketAddr, Duration)> {
    let addr = free_port()?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(data_dir.join("server.log"))?;
    let t0 = Instant::now();
    let mut child = Command::new(bin)
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen")
        .arg(addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!("cannot start {}; build it with `cargo build --release -p dispatchd`", bin.display())
        })?;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("dispatchd exited with {status} before it was ready; see {}/server.log", data_dir.display());
        }
        if probe_ready(addr).await {
            return Ok((child, addr, t0.elapsed()));
        }
        if t0.elapsed() > READY_TIMEOUT {
            let _ = child.kill().await;
            bail!("dispatchd was not ready within {READY_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

async fn probe_ready(addr: SocketAddr) -> bool {
    let attempt = async {
        let mut c = Conn::open(addr).await?;
        let (status, _) = c.get(addr, "/readyz", None).await?;
        Ok::<_, anyhow::Error>(status == StatusCode::OK)
    };
    matches!(tokio::time::timeout(Duration::from_secs(2), attempt).await, Ok(Ok(true)))
}

/// Where the load goes, and how to read the server's memory.
struct TargetConn {
    addr: SocketAddr,
    token: Arc<str>,
    pid: Option<u32>,
}

async fn connect_target(t: &Target) -> Result<(TargetConn, Option<Server>)> {
    match &t.url {
        Some(url) => {
            let addr = parse_loopback(url)?;
            let token = t.token.clone().ok_or_else(|| anyhow!("--url needs --token (or DISPATCHD_TOKEN)"))?;
            Ok((TargetConn { addr, token: token.into(), pid: t.pid }, None))
        }
        None => {
            let (server, ready) = Server::start(&t.server).await?;
            let token = server.create_token(&t.server.bin).await?;
            eprintln!(
                "started dispatchd (pid {}) on {} with data in {}; ready after {:.1} ms",
                server.pid,
                server.addr,
                server.data_dir.display(),
                ms(ready)
            );
            Ok((TargetConn { addr: server.addr, token: token.into(), pid: Some(server.pid) }, Some(server)))
        }
    }
}

/// Accepts only loopback targets: this tool must never send load anywhere else.
fn parse_loopback(url: &str) -> Result<SocketAddr> {
    let rest = url.strip_prefix("http://").ok_or_else(|| anyhow!("--url must start with http://"))?;
    let hostport = rest.split('/').next().unwrap_or_default();
    let hostport = hostport.replace("localhost", "127.0.0.1");
    let addr: SocketAddr =
        hostport.parse().with_context(|| format!("--url needs an IP and a port, not `{hostport}`"))?;
    let loopback = match addr.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => ip.is_loopback(),
    };
    if !loopback {
        bail!("loadgen only sends traffic to the loopback interface (127.0.0.0/8 or [::1]), not {addr}");
    }
    Ok(addr)
}

// ---------------------------------------------------------------------------------------
// HTTP

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    send: SendRequest<Full<Bytes>>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { send })
    }

    async fn request(&mut self, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes)> {
        self.send.ready().await?;
        let resp = self.send.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    async fn get(&mut self, addr: SocketAddr, path: &str, token: Option<&str>) -> Result<(StatusCode, Bytes)> {
        let mut b = Request::builder().method(Method::GET).uri(path).header(hyper::header::HOST, addr.to_string());
        if let Some(t) = token {
            b = b.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        self.request(b.body(Full::new(Bytes::new()))?).await
    }
}

// ---------------------------------------------------------------------------------------
// Orders

/// splitmix64: small, deterministic, good enough to vary test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

/// Order number `i` of a run: the body of design.md, varied like real traffic (three
/// warehouses, mostly domestic and ready; some cross-border, short, on credit hold, unpaid).
fn order_body(run_id: &str, seed: u64, i: u64, today: chrono::NaiveDate) -> Bytes {
    let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ i);
    let (wh, home) = rng.pick(&[("AMS", "NL"), ("DUS", "DE"), ("MAN", "GB")]);
    let dest = if rng.chance(85) { home } else { rng.pick(&["NL", "DE", "GB"]) };
    let (street, city, postcode) = match dest {
        "NL" => ("Damrak 1", "Amsterdam", "1012 LG"),
        "DE" => ("Invalidenstraße 116", "Berlin", "10115"),
        _ => ("1 Piccadilly", "Manchester", "M1 1AE"),
    };
    let service = rng.pick(&["same_day", "next_day", "next_day", "express", "standard", "standard", "economy"]);
    let tier = rng.pick(&["standard", "standard", "silver", "gold", "platinum", "key_account"]);
    let credit = if rng.chance(92) { "ok" } else { rng.pick(&["watch", "hold", "blocked", "over_limit"]) };
    let pay = if rng.chance(88) { "ok" } else { rng.pick(&["paid", "authorized", "pending", "unpaid", "overdue"]) };
    let families = ["pumps", "valves", "seals", "motors", "filters"];
    let lines: Vec<_> = (0..1 + rng.below(4))
        .map(|_| {
            let qty = 1 + rng.below(12);
            let allocated = if rng.chance(93) { qty } else { rng.below(qty) };
            json!({"sku": format!("P-{}", 1 + rng.below(5000)), "product_family": rng.pick(&families),
                   "qty": qty, "qty_allocated": allocated,
                   "unit_value": 5.0 + (rng.below(50_000) as f64) / 100.0,
                   "unit_cost": 3.0 + (rng.below(30_000) as f64) / 100.0,
                   "weight_kg": 0.2 + (rng.below(200) as f64) / 10.0})
        })
        .collect();
    let mut documents = vec![];
    if rng.chance(75) {
        documents.push("commercial_invoice");
    }
    if dest != home && rng.chance(60) {
        documents.push("export_declaration");
    }
    let promised = today + chrono::Duration::days(2 + rng.below(5) as i64);
    let customer = 100 + rng.below(900);
    let v = json!({
        "source": "odoo", "external_id": format!("{run_id}/OUT/{i:07}"), "warehouse": wh,
        "channel": rng.pick(&["ecommerce", "sales", "key_account"]),
        "customer": {"id": format!("C-{customer}"), "name": format!("Customer {customer} BV"), "tier": tier,
                     "credit_status": credit, "account_owner": format!("u-{}", customer % 17)},
        "service_level": service, "promised_date": promised.to_string(),
        "ship_to": {"name": format!("Customer {customer} BV"), "street": street, "city": city,
                    "postcode": postcode, "country": dest},
        "lines": lines,
        "payment": {"terms": rng.pick(&["net30", "net14", "prepaid"]), "status": pay},
        "documents": documents,
        "transport_mode": "parcel", "carrier_preference": rng.pick(&["dhl", "ups", "dpd", "postnl"]),
    });
    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
}

// ---------------------------------------------------------------------------------------
// Load

struct Report {
    mode: String,
    elapsed: Duration,
    ok: u64,
    hist: Histogram<u64>,
    statuses: BTreeMap<String, u64>,
    rss_kib: Option<(u64, u64)>,
    cpu: Option<CpuDelta>,
}

impl Report {
    fn sent(&self) -> u64 {
        self.statuses.values().sum()
    }
    fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
    fn pct_ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
    fn print(&self) {
        println!("== {}", self.mode);
        println!(
            "requests {}  ok(2xx) {}  in {:.2} s  → {:.0} ok/s",
            self.sent(),
            self.ok,
            self.elapsed.as_secs_f64(),
            self.throughput()
        );
        println!(
            "latency ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            self.pct_ms(0.50),
            self.pct_ms(0.90),
            self.pct_ms(0.99),
            self.pct_ms(0.999),
            self.hist.max() as f64 / 1000.0
        );
        let by: Vec<String> = self.statuses.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        println!("responses by status  {}", by.join(", "));
        if let Some((rss, hwm)) = self.rss_kib {
            println!("server RSS after the run  {:.1} MiB (peak {:.1} MiB)", rss as f64 / 1024.0, hwm as f64 / 1024.0);
        }
        if let Some(c) = &self.cpu {
            c.print(self.sent(), self.elapsed);
        }
    }
}

async fn upserts(t: &TargetConn, load: &Load) -> Result<Report> {
    let connections = load.connections.clamp(1, MAX_CONNECTIONS);
    let duration = load.duration.map(Duration::from_secs).unwrap_or(MAX_DURATION).min(MAX_DURATION);
    let total = load.total.unwrap_or(MAX_TOTAL).min(MAX_TOTAL);
    if load.duration.is_none() && load.total.is_none() {
        bail!("give --duration SECONDS or --total N (or both)");
    }
    let run_id: Arc<str> =
        load.run_id.clone().unwrap_or_else(|| format!("LG{}", chrono::Utc::now().format("%y%m%d%H%M%S"))).into();
    let today = chrono::Utc::now().date_naive();
    let mode = match load.rate {
        Some(r) => format!("upserts, open loop at {r}/s, {connections} connections"),
        None => format!("upserts, closed loop, {connections} connections"),
    };
    let interval_ns = load.rate.map(|r| 1e9 / r.max(1) as f64);

    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Opening the connections is not part of the measurement.
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(Conn::open(t.addr).await.context("cannot connect to the server")?);
    }
    let cpu0 = CpuSnapshot::take(t.pid);
    let start = tokio::time::Instant::now();
    let end = start + duration;
    // Worst latency (µs) completed since the last progress line.
    let peak = Arc::new(AtomicU64::new(0));
    let progress = {
        let (done, stop, peak) = (done.clone(), stop.clone(), peak.clone());
        let every = Duration::from_millis(load.progress_ms.max(100));
        tokio::spawn(async move {
            let mut last = 0;
            let mut tick = tokio::time::interval_at(start + every, every);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let now = done.load(Ordering::Relaxed);
                eprintln!(
                    "  {:>7.1} s  {:>9} done  {:>7.0}/s  worst {:>7.1} ms",
                    start.elapsed().as_secs_f64(),
                    now,
                    (now - last) as f64 / every.as_secs_f64(),
                    peak.swap(0, Ordering::Relaxed) as f64 / 1000.0
                );
                last = now;
            }
        })
    };
    let mut workers = Vec::with_capacity(connections);
    for mut conn in conns {
        let (next, done, token, run_id) = (next.clone(), done.clone(), t.token.clone(), run_id.clone());
        let peak = peak.clone();
        let (addr, seed) = (t.addr, load.seed);
        workers.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds");
            let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
            let mut ok = 0u64;
            let mut last_done = start;
            let auth = format!("Bearer {token}");
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let scheduled = match interval_ns {
                    Some(ns) => start + Duration::from_nanos((i as f64 * ns) as u64),
                    None => tokio::time::Instant::now(),
                };
                if scheduled >= end || tokio::time::Instant::now() >= end {
                    break;
                }
                // Body generation happens before the scheduled time (open loop) or is charged
                // to the client (closed loop); it is a few microseconds either way.
                let body = order_body(&run_id, seed, i, today);
                if interval_ns.is_some() {
                    tokio::time::sleep_until(scheduled).await;
                }
                let req = Request::builder()
                    .method(Method::POST)
                    .uri("/api/v1/orders")
                    .header(hyper::header::HOST, addr.to_string())
                    .header(hyper::header::AUTHORIZATION, &auth)
                    .header(hyper::header::CONTENT_TYPE, "application/json")
                    .body(Full::new(body))
                    .expect("request");
                let res = conn.request(req).await;
                let now = tokio::time::Instant::now();
                let latency = now.saturating_duration_since(scheduled);
                let micros = latency.as_micros().max(1) as u64;
                hist.saturating_record(micros);
                peak.fetch_max(micros, Ordering::Relaxed);
                last_done = now;
                done.fetch_add(1, Ordering::Relaxed);
                match res {
                    Ok((status, _)) => {
                        if status.is_success() {
                            ok += 1;
                        }
                        *statuses.entry(status.as_u16().to_string()).or_default() += 1;
                    }
                    Err(e) => {
                        *statuses.entry(format!("transport error ({e})")).or_default() += 1;
                        // Reconnect and go on; a dead server ends the run through the errors.
                        match Conn::open(addr).await {
                            Ok(c) => conn = c,
                            Err(_) => break,
                        }
                    }
                }
            }
            (hist, statuses, ok, last_done)
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let mut statuses = BTreeMap::new();
    let mut ok = 0;
    let mut last = start;
    for w in workers {
        let (h, s, o, l) = w.await?;
        hist.add(h)?;
        for (k, v) in s {
            *statuses.entry(k).or_default() += v;
        }
        ok += o;
        last = last.max(l);
    }
    let cpu = cpu0.and_then(|c0| CpuSnapshot::take(t.pid).map(|c1| c1.since(&c0)));
    stop.store(true, Ordering::Relaxed);
    progress.abort();
    let elapsed = last.saturating_duration_since(start).max(Duration::from_millis(1));
    let rss_kib = t.pid.and_then(rss_of);
    Ok(Report { mode, elapsed, ok, hist, statuses, rss_kib, cpu })
}

/// After a load: RSS, then a few pages of the order list, then RSS again.
async fn after_load(t: &TargetConn, pages: u32, limit: u32) -> Result<()> {
    if pages == 0 {
        return Ok(());
    }
    let mut c = Conn::open(t.addr).await?;
    let mut cursor: Option<String> = None;
    let mut items = 0usize;
    let t0 = Instant::now();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    for _ in 0..pages.min(10_000) {
        let path = match &cursor {
            Some(cur) => format!("/api/v1/orders?limit={limit}&cursor={cur}"),
            None => format!("/api/v1/orders?limit={limit}"),
        };
        let s = Instant::now();
        let (status, body) = c.get(t.addr, &path, Some(&t.token)).await?;
        hist.saturating_record(s.elapsed().as_micros().max(1) as u64);
        if status != StatusCode::OK {
            bail!("GET {path} answered {status}: {}", String::from_utf8_lossy(&body));
        }
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        items += v["items"].as_array().map_or(0, Vec::len);
        match v["next_cursor"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => break,
        }
    }
    println!(
        "listed {items} orders in pages of {limit} in {:.0} ms (per page p50 {:.1} ms, max {:.1} ms)",
        ms(t0.elapsed()),
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.max() as f64 / 1000.0
    );
    if let Some((rss, hwm)) = t.pid.and_then(rss_of) {
        println!("server RSS after listing  {:.1} MiB (peak {:.1} MiB)", rss as f64 / 1024.0, hwm as f64 / 1024.0);
    }
    Ok(())
}

/// (VmRSS, VmHWM) of a process in KiB.
fn rss_of(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

// ---------------------------------------------------------------------------------------
// CPU accounting: where the cores went during a run (server threads by name, loadgen
// itself, everything else on the machine, I/O wait), read from /proc.

#[derive(Clone)]
struct CpuSnapshot {
    /// Clock ticks per server thread name (e.g. `tokio-runtime-w`, `sqlx-sqlite-wor`).
    threads: BTreeMap<String, u64>,
    server: u64,
    me: u64,
    busy: u64,
    iowait: u64,
    /// Context switches of all server threads (voluntary + involuntary).
    switches: u64,
}

struct CpuDelta(CpuSnapshot);

fn ticks_of_stat(stat: &str) -> Option<u64> {
    // Fields after the `(comm)`: state is #3, utime #14 and stime #15 of the whole line.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

impl CpuSnapshot {
    fn take(pid: Option<u32>) -> Option<CpuSnapshot> {
        let pid = pid?;
        let mut threads = BTreeMap::new();
        let mut switches = 0;
        for e in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
            let (Some(a), Some(b)) = (stat.find('('), stat.rfind(')')) else { continue };
            let name = stat[a + 1..b].trim_end_matches(|c: char| c.is_ascii_digit()).to_string();
            *threads.entry(name).or_default() += ticks_of_stat(&stat).unwrap_or(0);
            let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
            switches += status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
        let server = ticks_of_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
        let me = ticks_of_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
        let all = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = all.lines().next()?.split_whitespace().skip(1).filter_map(|n| n.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal ...
        let total: u64 = cpu.iter().take(8).sum();
        let (idle, iowait) = (*cpu.get(3)?, *cpu.get(4)?);
        Some(CpuSnapshot { threads, server, me, busy: total - idle - iowait, iowait, switches })
    }

    fn since(&self, before: &CpuSnapshot) -> CpuDelta {
        let threads = self
            .threads
            .iter()
            .map(|(k, v)| (k.clone(), v.saturating_sub(*before.threads.get(k).unwrap_or(&0))))
            .filter(|(_, v)| *v > 0)
            .collect();
        CpuDelta(CpuSnapshot {
            threads,
            server: self.server - before.server,
            me: self.me - before.me,
            busy: self.busy - before.busy,
            iowait: self.iowait - before.iowait,
            switches: self.switches.saturating_sub(before.switches),
        })
    }
}

impl CpuDelta {
    fn print(&self, requests: u64, elapsed: Duration) {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let secs = elapsed.as_secs_f64();
        let cores = |ticks: u64| ticks as f64 / hz / secs;
        let d = &self.0;
        let other = d.busy.saturating_sub(d.server + d.me);
        println!(
            "cpu (cores busy on average)  server {:.2}  loadgen {:.2}  other processes {:.2}  iowait {:.2}",
            cores(d.server),
            cores(d.me),
            cores(other),
            cores(d.iowait)
        );
        if requests > 0 {
            println!(
                "server cpu per request  {:.0} µs;  context switches per request  {:.1}",
                d.server as f64 / hz * 1e6 / requests as f64,
                d.switches as f64 / requests as f64
            );
        }
        let by: Vec<String> = d.threads.iter().map(|(k, v)| format!("{k} {:.2}", cores(*v))).collect();
        println!("server threads (cores)  {}", by.join(", "));
    }
}

// ---------------------------------------------------------------------------------------
// Cold start

struct Samples(Vec<Duration>);

impl Samples {
    fn print(&self, what: &str) {
        let mut v = self.0.clone();
        v.sort();
        let list: Vec<String> = v.iter().map(|d| format!("{:.1}", ms(*d))).collect();
        println!("== {what}: {} runs", v.len());
        println!(
            "spawn → first 200 on /readyz  median {:.1} ms  min {:.1} ms  max {:.1} ms   (all: {})",
            ms(v[v.len() / 2]),
            ms(v[0]),
            ms(v[v.len() - 1]),
            list.join(" ")
        );
    }
}

/// Starts and stops the server `runs` times. Without --data-dir every run gets a new, empty
/// data directory under `scratch` (so the schema is created each time).
async fn cold_start(args: &ServerArgs, runs: u32, scratch: &Path) -> Result<Samples> {
    let mut out = vec![];
    for n in 0..runs.clamp(1, 100) {
        let dir = match &args.data_dir {
            Some(d) => d.clone(),
            None => scratch.join(format!("cold-{n}")),
        };
        std::fs::create_dir_all(&dir)?;
        let (child, _, ready) = spawn_ready(&args.bin, &dir).await?;
        out.push(ready);
        terminate(child).await?;
    }
    Ok(Samples(out))
}

// ---------------------------------------------------------------------------------------
// Suite

async fn suite(
    args: &ServerArgs,
    duration: u64,
    connections: usize,
    rate: u64,
    rss_orders: u64,
    cold_runs: u32,
) -> Result<()> {
    let scratch = tempfile::Builder::new().prefix("dispatchd-suite-").tempdir()?;
    println!(
        "loadgen suite  {}  cores: {}  (load generator and server share these cores)",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    cold_start(&ServerArgs { bin: args.bin.clone(), data_dir: None }, cold_runs, scratch.path())
        .await?
        .print("cold start, empty data directory");

    let fresh = |name: &str| ServerArgs { bin: args.bin.clone(), data_dir: Some(scratch.path().join(name)) };
    let load = |connections, duration: Option<u64>, total: Option<u64>, rate| Load {
        connections,
        duration,
        total,
        rate,
        seed: 1,
        run_id: None,
        progress_ms: 5000,
    };

    for (name, l) in [
        ("closed", load(connections, Some(duration), None, None)),
        ("open", load(connections.max(rate as usize / 20), Some(duration), None, Some(rate))),
    ] {
        let sargs = fresh(name);
        let (server, _) = Server::start(&sargs).await?;
        let token = server.create_token(&args.bin).await?;
        let t = TargetConn { addr: server.addr, token: token.into(), pid: Some(server.pid) };
        upserts(&t, &l).await?.print();
        server.stop().await?;
    }

    let sargs = fresh("rss");
    let (server, _) = Server::start(&sargs).await?;
    let token = server.create_token(&args.bin).await?;
    let t = TargetConn { addr: server.addr, token: token.into(), pid: Some(server.pid) };
    if let Some((rss, _)) = rss_of(server.pid) {
        println!("== RSS with {rss_orders} orders\nserver RSS when ready (empty)  {:.1} MiB", rss as f64 / 1024.0);
    }
    let r = upserts(&t, &load(connections, Some(900), Some(rss_orders), None)).await?;
    r.print();
    after_load(&t, 20, 500).await?;
    let db_bytes: u64 = std::fs::read_dir(&server.data_dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("dispatchd.db"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!("database files {:.1} MiB", db_bytes as f64 / (1024.0 * 1024.0));
    server.stop().await?;

    cold_start(&sargs, cold_runs, scratch.path()).await?.print(&format!("cold start, {rss_orders} orders stored"));
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
