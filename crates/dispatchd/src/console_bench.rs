//! `dispatchd console-bench`: loads open orders (the demo's generator, through the real write
//! path) into a SQLite database, starts the real server in this process, signs in to the
//! console and times its pages over loopback HTTP. The numbers of BENCHMARKS.md § Console.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use dispatch_core::{OrderState, Role, Warehouses};
use dispatch_server::AppState;
use dispatch_server::clock::Clock;
use dispatch_server::limits::SecurityConfig;
use dispatch_server::policy::PolicyState;
use dispatch_store::{OrderQuery, OrderSort, SqliteOptions, SqliteStore, Store};

pub struct Args {
    pub orders: usize,
    pub data_dir: Option<PathBuf>,
    pub requests: usize,
    pub seed: u64,
}

/// Latency summary of one page, milliseconds.
struct Timing {
    page: String,
    p50: f64,
    p95: f64,
    max: f64,
    bytes: usize,
}

fn summarize(page: &str, mut ms: Vec<f64>, bytes: usize) -> Timing {
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    Timing { page: page.to_string(), p50: at(0.5), p95: at(0.95), max: at(1.0), bytes }
}

pub async fn run(args: Args, clock: Arc<dyn Clock>) -> Result<()> {
    if args.orders == 0 || args.requests == 0 {
        bail!("--orders and --requests must be at least 1");
    }
    let dir =
        args.data_dir.unwrap_or_else(|| std::env::temp_dir().join(format!("dispatchd-console-bench-{}", args.orders)));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut opts = SqliteOptions::new(dir.join("dispatchd.db"));
    opts.durability = dispatch_store::sqlite::Durability::Normal;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(opts).await?);
    let warehouses = Arc::new(Warehouses::new(crate::config::example_warehouses()?)?);
    let policy = dispatch_policy::Policy::default_policy();
    let existing = store.order_count().await? as usize;
    if existing < args.orders {
        let facts = crate::demo::orders(args.seed, args.orders, clock.now(), &warehouses);
        let facts: Vec<_> = facts.into_iter().skip(existing).collect();
        eprintln!("loading {} orders into {} …", facts.len(), dir.display());
        let started = Instant::now();
        let bar = crate::app::progress(facts.len() as u64, "loading orders");
        crate::app::load_orders(&store, &warehouses, &policy, &clock, facts, "bench", || bar.inc(1)).await?;
        bar.finish_and_clear();
        eprintln!("loaded in {:.1}s", started.elapsed().as_secs_f64());
    }
    let counts = store.counts().await?;
    let open: i64 = counts
        .by_state_warehouse
        .iter()
        .filter(|(s, _, _)| OrderState::from_code(s).is_some_and(|s| s.is_open()))
        .map(|(_, _, n)| n)
        .sum();
    let total = store.order_count().await?;

    let security = SecurityConfig { secure_cookies: false, login_attempts_per_minute: 1000.0, ..Default::default() };
    let state = AppState::with_security(
        store.clone(),
        (*warehouses).clone(),
        clock.clone(),
        PolicyState::new(policy, "embedded", None, clock.now()),
        Arc::new(dispatch_integrations::Carriers::empty()),
        security,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dispatch_server::serve(listener, state, async {
        let _ = rx.await;
    }));

    // A supervisor's session, signed in through the form.
    let password = "console bench password";
    if store.user_by_name("bench").await?.is_none() {
        dispatch_server::identity::create_user(
            store.as_ref(),
            "bench",
            "bench",
            &[Role::Supervisor],
            Some(password),
            clock.now(),
        )
        .await?;
    } else {
        dispatch_server::identity::set_password(store.as_ref(), "bench", "bench", password).await?;
    }
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let r = client.get(format!("{url}/console/login")).send().await?;
    let pre = cookie(&r, "dsp_csrf").context("no CSRF cookie on the sign-in page")?;
    let r = client
        .post(format!("{url}/console/login"))
        .header("cookie", format!("dsp_csrf={pre}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={pre}&username=bench&password=console+bench+password"))
        .send()
        .await?;
    let session = cookie(&r, "dsp_session").context("sign-in failed")?;

    // Order pages: orders from the head of the released queue and from the holds.
    let mut ids = Vec::new();
    for state in [OrderState::Released, OrderState::OnHold, OrderState::AwaitingApproval] {
        let q = OrderQuery { states: vec![state], sort: OrderSort::Priority, limit: 50, ..Default::default() };
        ids.extend(store.list_orders(&q).await?.items.into_iter().map(|o| (o.id, o.facts.external_id)));
    }
    if ids.is_empty() {
        bail!("no open orders to time");
    }
    let search = ids[ids.len() / 2].1.clone();
    let mut pages: Vec<(String, Vec<String>)> = vec![
        ("board /console".into(), vec!["/console".into()]),
        ("board fragment /console/board".into(), vec!["/console/board".into()]),
        ("board, AMS next_day".into(), vec!["/console/board?warehouse=AMS&service_level=next_day".into()]),
        ("board, on_hold credit_hold".into(), vec!["/console/board?reason=credit_hold".into()]),
        ("board, search by order number".into(), vec![format!("/console/board?q={}", search.replace('/', "%2F"))]),
        ("order page".into(), ids.iter().map(|(id, _)| format!("/console/orders/{id}")).collect()),
        ("exceptions".into(), vec!["/console/exceptions".into()]),
        ("approvals inbox".into(), vec!["/console/approvals".into()]),
        // Every order of the window, from the projection's KPI columns (migration 0100).
        ("KPIs, 14 days".into(), vec!["/console/kpis".into()]),
        ("KPIs, 90 days".into(), vec!["/console/kpis?days=90".into()]),
        ("board, risk high".into(), vec!["/console/board?risk=high".into()]),
    ];
    let mut out = Vec::new();
    for (name, paths) in pages.drain(..) {
        // One warm-up request, then the timed ones.
        let get = |p: &str| client.get(format!("{url}{p}")).header("cookie", format!("dsp_session={session}")).send();
        get(&paths[0]).await?.bytes().await?;
        let mut ms = Vec::with_capacity(args.requests);
        let mut bytes = 0;
        for i in 0..args.requests {
            let p = &paths[i % paths.len()];
            let t = Instant::now();
            let r = get(p).await?;
            let status = r.status();
            let body = r.bytes().await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            if !status.is_success() {
                bail!("{p}: {status}");
            }
            bytes = body.len();
        }
        out.push(summarize(&name, ms, bytes));
    }
    let _ = tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;

    println!("console-bench: {total} orders ({open} open) in {}", dir.display());
    println!("{} requests per page, one at a time, over loopback HTTP with a supervisor's session", args.requests);
    println!();
    println!("| page | p50 ms | p95 ms | max ms | bytes |");
    println!("|---|---:|---:|---:|---:|");
    for t in &out {
        println!("| {} | {:.1} | {:.1} | {:.1} | {} |", t.page, t.p50, t.p95, t.max, t.bytes);
    }
    Ok(())
}

fn cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(|h| {
        let (kv, _) = h.split_once(';').unwrap_or((h, ""));
        let (k, v) = kv.split_once('=')?;
        (k == name && !v.is_empty()).then(|| v.to_string())
    })
}
