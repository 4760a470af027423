//! Wiring: open the store, bind, serve until a signal, and the demo's setup.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use dispatch_core::{Command, OrderFacts, Warehouses};
use dispatch_policy::Policy;
use dispatch_server::AppState;
use dispatch_server::clock::Clock;
use dispatch_server::policy::{Active, PolicyState};
use dispatch_store::{
    OrderWrite, PgOptions, PgStore, PublishEvents, SqliteOptions, SqliteStore, Store, Target, WriteMeta, decision,
};
use futures::StreamExt;

use dispatch_integrations::Carriers;
use dispatch_integrations::registry::{CarrierConfig, Credentials};

use crate::config::{self, BookingConfig, Config, Database, Overrides};
use crate::scheduler::{
    ApprovalsSweep, Heartbeat, ReevaluateOpen, RefreshPriorities, ScheduleConfig, ScheduledAction, Scheduler,
};
use crate::workers::BookingWorker;

pub async fn open_store(cfg: &Config) -> Result<Arc<dyn Store>> {
    // Write-back jobs only when a connector will take them; publish jobs only when someone
    // listens: notification rules hear every change, webhook endpoints only while one is active.
    let follow_ups = dispatch_core::effects::FollowUpConfig {
        odoo_writeback: cfg.odoo.is_some(),
        publish_events: true,
        dispatch_history: true,
    };
    let publish = if cfg.notifications.enabled {
        PublishEvents::Always
    } else if cfg.webhooks.enabled {
        PublishEvents::WhileSubscribed
    } else {
        PublishEvents::Never
    };
    match cfg.database()? {
        Database::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create data directory {}", dir.display()))?;
            }
            let mut opts = SqliteOptions::new(&path);
            opts.durability = cfg.durability;
            opts.follow_ups = follow_ups;
            opts.publish = publish;
            let store =
                SqliteStore::open(opts).await.with_context(|| format!("cannot open database {}", path.display()))?;
            Ok(Arc::new(store))
        }
        Database::Postgres(url) => {
            let shown = Database::Postgres(url.clone()).to_string();
            let mut opts = PgOptions::new(url);
            opts.follow_ups = follow_ups;
            opts.publish = publish;
            let store = PgStore::open(opts)
                .await
                .with_context(|| format!("cannot open database {shown}; is PostgreSQL running and the URL right?"))?;
            Ok(Arc::new(store))
        }
    }
}

pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}; is another process using it? Choose another with --listen"))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// Serves the API and runs the booking workers until a signal; then the workers stop
/// claiming, calls in flight finish, the server drains and the store closes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Arc<dyn Store>,
    cfg: &Config,
    clock: Arc<dyn Clock>,
    carriers: Arc<Carriers>,
    booking: BookingConfig,
) -> Result<()> {
    let state = state_with(cfg, store.clone(), clock.clone(), carriers.clone())?;
    let odoo = crate::odoo::attach(cfg, &state)?;
    let reload = tokio::spawn(reload_on_sighup(state.clone()));
    let densities = tokio::spawn(refresh_route_densities(state.clone()));
    let mut schedules = cfg.schedules.clone();
    schedules.extend(crate::odoo::schedule(cfg).filter(|s| !schedules.iter().any(|c| c.name == s.name)));
    let scheduler = scheduler(state.clone(), &schedules)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let odoo_writeback = match &odoo {
        Some(c) => crate::odoo::writeback_worker(c, &state)?.map(|w| w.spawn(stop_rx.clone())),
        None => None,
    };
    let scheduler = tokio::spawn(scheduler.run(std::time::Duration::from_secs(1), stop_rx.clone()));
    let remainders = dispatch_server::approvals::spawn_remainder_worker(state.clone(), stop_rx.clone());
    let history = dispatch_server::intel::spawn_history_worker(state.clone(), stop_rx.clone());
    let worker = if booking.enabled && !carriers.is_empty() {
        tracing::info!(carriers = carriers.len(), concurrency = booking.concurrency, "booking workers started");
        let app = state.clone();
        let policy: crate::workers::PolicySource = Arc::new(move || app.policy.policy());
        Some(
            BookingWorker::new(store, carriers, clock, state.warehouses.clone(), policy, booking)
                .spawn(stop_rx.clone()),
        )
    } else {
        if carriers.is_empty() {
            tracing::warn!("no carriers configured: released orders wait for booking");
        }
        None
    };
    let outbound = outbound_worker(&state, cfg)?.map(|w| w.spawn(stop_rx.clone()));
    // On a signal: stop scheduling and booking first, then drain HTTP, then close the store.
    let shutdown = async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
        let _ = scheduler.await;
        let _ = remainders.await;
        let _ = history.await;
        if let Some(w) = worker {
            let _ = w.await;
        }
        if let Some(w) = odoo_writeback {
            let _ = w.await;
        }
        if let Some(w) = outbound {
            let _ = w.await;
        }
    };
    let result = dispatch_server::serve(listener, state, shutdown).await.context("server failed");
    reload.abort();
    densities.abort();
    result
}

/// Every node keeps its policy's route-density table fresh (when the policy reads `route.*`):
/// at start and every 30 s, one indexed read. The leader's priority sweep also refreshes it
/// and re-evaluates the orders of waves that changed.
async fn refresh_route_densities(app: Arc<AppState>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
    loop {
        tick.tick().await;
        if let Err(e) = dispatch_server::policy::refresh_route_densities(&app).await {
            tracing::warn!(error = %e, "could not count route densities");
        }
    }
}

/// The server state for this configuration: warehouses, the policy in force, carriers.
pub fn state_with(
    cfg: &Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    carriers: Arc<Carriers>,
) -> Result<Arc<AppState>> {
    let warehouses = cfg.warehouses()?;
    let (policy, origin) = cfg.policy()?;
    tracing::info!(policy = %policy.name, hash = %policy.hash, origin, "dispatch policy loaded");
    let policy_state = PolicyState::new(policy, origin, cfg.policy_file.clone(), clock.now());
    Ok(AppState::with_security(store, warehouses, clock, policy_state, carriers, cfg.security.clone()))
}

/// The state for a one-shot command (no carriers).
pub fn state(cfg: &Config, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Result<Arc<AppState>> {
    state_with(cfg, store, clock, Arc::new(Carriers::empty()))
}

/// The outbound worker (webhook deliveries and notifications). Invalid
/// notification rules or templates stop the start with every error listed.
pub fn outbound_worker(state: &Arc<AppState>, cfg: &Config) -> Result<Option<Arc<crate::outbound::OutboundWorker>>> {
    let notifier = if cfg.notifications.enabled {
        let n = crate::notify::Notifier::new(cfg.notifications.clone())
            .map_err(|errs| anyhow::anyhow!("notifications are misconfigured:\n  {}", errs.join("\n  ")))?;
        Some(Arc::new(n))
    } else {
        None
    };
    // Always run: published events are fanned out (and marked done) even when neither
    // webhooks nor notifications are enabled, so the outbox does not fill up.
    if state.vault.is_none() {
        tracing::warn!("no master key (DISPATCHD_MASTER_KEY): webhook endpoints cannot be created or signed");
    }
    Ok(Some(crate::outbound::OutboundWorker::new(
        state.store.clone(),
        state.clock.clone(),
        state.vault.clone(),
        notifier,
        cfg.webhooks.clone(),
    )))
}

/// The scheduler with the built-in actions; an unknown action name is a configuration error.
pub fn scheduler(app: Arc<AppState>, schedules: &[ScheduleConfig]) -> Result<Scheduler> {
    let mut s = Scheduler::new(app.store.clone(), app.clock.clone(), crate::scheduler::node_name());
    for cfg in schedules {
        let action: Arc<dyn ScheduledAction> = match cfg.action.as_str() {
            "heartbeat" => Arc::new(Heartbeat { clock: app.clock.clone() }),
            "reevaluate_open" => Arc::new(ReevaluateOpen { app: app.clone() }),
            "refresh_priorities" => Arc::new(RefreshPriorities { app: app.clone() }),
            crate::odoo::ACTION => match app.odoo.get() {
                Some(c) => Arc::new(crate::odoo::OdooSync { connector: c.clone() }),
                None => anyhow::bail!("schedule `{}`: action `odoo_sync` needs an [odoo] section", cfg.name),
            },
            "queue_aging" => Arc::new(crate::monitors::QueueAging { app: app.clone() }),
            "stalled_records" => Arc::new(crate::monitors::StalledRecords { app: app.clone() }),
            "cutoff_risk" => Arc::new(crate::monitors::CutoffRisk { app: app.clone() }),
            "retention" => Arc::new(crate::monitors::Retention { app: app.clone() }),
            "approvals_sweep" => Arc::new(ApprovalsSweep { app: app.clone() }),
            other => anyhow::bail!(
                "schedule `{}`: unknown action `{other}`; known: heartbeat, reevaluate_open, refresh_priorities, \
                 approvals_sweep, odoo_sync, queue_aging, stalled_records, cutoff_risk, retention",
                cfg.name
            ),
        };
        s.add(cfg.clone(), action)?;
    }
    Ok(s)
}

/// Reloads `policy_file` on SIGHUP. An invalid file is refused with every error logged; the
/// running policy stays.
async fn reload_on_sighup(state: Arc<AppState>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
        while hup.recv().await.is_some() {
            reload_policy(&state).await;
        }
    }
    #[cfg(not(unix))]
    let _ = state;
}

pub async fn reload_policy(state: &AppState) {
    let Some(path) = state.policy.file.clone() else {
        tracing::warn!("SIGHUP: no policy_file is configured, nothing to reload");
        return;
    };
    let codes: Vec<String> = state.warehouses.iter().map(|w| w.code.clone()).collect();
    let policy = match config::load_policy(&path, Some(&codes)) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            metrics::counter!("dispatchd_policy_refused_total", "via" => "reload").increment(1);
            tracing::error!(error = %format!("{e:#}"), "policy reload refused; the running policy stays");
            return;
        }
    };
    let _guard = state.policy.change.lock().await;
    if policy.hash == state.policy.policy().hash {
        tracing::info!(hash = %policy.hash, "policy file unchanged");
        return;
    }
    state.policy.swap(policy.clone(), "file", state.clock.now());
    metrics::counter!("dispatchd_policy_changes_total", "via" => "reload").increment(1);
    tracing::info!(hash = %policy.hash, name = %policy.name, "policy reloaded");
    match dispatch_server::policy::reevaluate_held(state, "system:policy-reload").await {
        Ok(p) => tracing::info!(checked = p.checked, changed = p.changed, "held orders re-evaluated"),
        Err(e) => tracing::error!(error = %e, "re-evaluating held orders failed"),
    }
}

/// Writes orders through the same path as the API (decide in the write transaction), many at
/// a time so the store groups them into few commits.
pub async fn load_orders(
    store: &Arc<dyn Store>,
    warehouses: &Arc<Warehouses>,
    policy: &Arc<Policy>,
    clock: &Arc<dyn Clock>,
    orders: Vec<OrderFacts>,
    actor: &str,
    on_done: impl Fn(),
) -> Result<()> {
    let writes = orders.into_iter().map(|facts| {
        let now = clock.now();
        let warehouses = warehouses.clone();
        let policy = policy.clone();
        let store = store.clone();
        let target = Target::NaturalKey { source: facts.source.clone(), external_id: facts.external_id.clone() };
        let meta = WriteMeta { actor: actor.to_string(), roles: vec![], request_id: None, at: now };
        async move {
            store
                .execute(OrderWrite {
                    target,
                    meta,
                    idempotency: None,
                    decide: decision(
                        Command::Upsert { facts: Box::new(facts), expected_version: None },
                        now,
                        warehouses,
                        Arc::new(Active(policy)),
                    ),
                })
                .await
        }
    });
    let mut results = futures::stream::iter(writes).buffer_unordered(256);
    while let Some(r) = results.next().await {
        r.context("loading demo orders")?;
        on_done();
    }
    Ok(())
}

pub struct DemoArgs {
    pub data_dir: Option<PathBuf>,
    pub listen: SocketAddr,
    pub seed: u64,
    pub orders: usize,
}

pub async fn demo(args: DemoArgs, clock: Arc<dyn Clock>) -> Result<()> {
    let data_dir = match args.data_dir {
        Some(d) => d,
        None => {
            std::env::temp_dir().join(format!("dispatchd-demo-{}-{}", args.seed, clock.now().format("%Y%m%d-%H%M%S")))
        }
    };
    std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    // The demo's configuration lives with its data, so `serve --data-dir` finds it again.
    let cfg_file = data_dir.join(config::DATA_DIR_CONFIG);
    if !cfg_file.exists() {
        let text = config::EXAMPLE
            .replace("data_dir = \"./dispatchd-data\"", &format!("data_dir = {:?}", data_dir.display().to_string()));
        std::fs::write(&cfg_file, text).with_context(|| format!("cannot write {}", cfg_file.display()))?;
    }
    let mut cfg = Config::load(
        Some(&cfg_file),
        &Overrides { listen: Some(args.listen), data_dir: Some(data_dir.clone()), ..Default::default() },
    )?;
    // The demo serves plain http: on loopback the console's cookies cannot be `Secure`.
    if args.listen.ip().is_loopback() {
        cfg.security.secure_cookies = false;
    }
    let warehouses = Arc::new(cfg.warehouses()?);
    let store = open_store(&cfg).await?;
    let existing = store.order_count().await?;
    let generated = if existing == 0 {
        let facts = crate::demo::orders(args.seed, args.orders, clock.now(), &warehouses);
        let bar = progress(facts.len() as u64, "loading demo orders");
        let (policy, _) = cfg.policy()?;
        load_orders(&store, &warehouses, &policy, &clock, facts, "demo", || bar.inc(1)).await?;
        bar.finish_and_clear();
        // Two years of dispatch history with planted effects, and a risk model trained on it.
        let spec = dispatch_intel::HistorySpec {
            seed: args.seed,
            end: clock.now().date_naive() - chrono::Duration::days(1),
            scale: 0.1,
            ..Default::default()
        };
        crate::model_cli::generate(store.as_ref(), &spec).await?;
        if let Err(e) = crate::model_cli::train_and_maybe_activate(
            store.as_ref(),
            &dispatch_intel::TrainOptions::default(),
            clock.now(),
        )
        .await
        {
            tracing::warn!(error = %e, "the demo's risk model was not trained");
        }
        true
    } else {
        false
    };
    let token =
        dispatch_server::auth::create_token(store.as_ref(), "demo-admin", &[dispatch_core::Role::Admin], clock.now())
            .await?;
    let people = demo_people(store.as_ref(), clock.now()).await?;
    let listener = bind(cfg.listen).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (carriers, mocks) = demo_carriers(&url).await?;
    let total = store.order_count().await?;
    let counts = store.counts().await?;
    let mut by_state = std::collections::BTreeMap::<String, i64>::new();
    for (s, _, n) in &counts.by_state_warehouse {
        *by_state.entry(s.clone()).or_default() += n;
    }
    let states: Vec<String> = by_state.iter().map(|(s, n)| format!("{n} {s}")).collect();
    println!("dispatchd demo is running");
    println!();
    println!(
        "  data      {} ({})",
        data_dir.display(),
        if generated { "new scenario" } else { "existing data, nothing generated" }
    );
    println!("  orders    {total} in {} warehouses: {}", warehouses.len(), states.join(", "));
    println!("  API       {url}/api/v1/orders");
    println!("  API doc   {url}/api/openapi.json");
    println!("  metrics   {url}/metrics");
    if let Ok(Some((model, _))) = store.active_model().await {
        println!(
            "  risk      model {model} over {} dispatches of history:",
            store.history_count().await.unwrap_or(0),
            model = model.version
        );
        println!("            {url}/api/v1/insights/hotspots, {url}/api/v1/orders/ID/risk");
    }
    println!("  token     {token}   (role admin, shown once)");
    println!("  console   {url}/console   sign in as (passwords shown once):");
    for (name, role, password) in &people {
        println!("            {name:<11} {password}   ({role})");
    }
    for (name, m) in &mocks {
        println!("  carrier   {name}: mock carrier at {} (bookings: {}/admin/bookings)", m.url(), m.url());
    }
    println!();
    println!("Try:");
    println!("  export TOKEN={token}");
    println!("  curl -s -H \"Authorization: Bearer $TOKEN\" '{url}/api/v1/orders?state=on_hold&limit=5'");
    println!(
        "  curl -s -H \"Authorization: Bearer $TOKEN\" '{url}/api/v1/orders?state=on_hold&reason=docs_missing&warehouse=MAN&limit=1'"
    );
    println!("  curl -s -H \"Authorization: Bearer $TOKEN\" {url}/api/v1/orders/<id>/timeline");
    println!("  curl -s -H \"Authorization: Bearer $TOKEN\" '{url}/api/v1/orders?state=dispatched&limit=5'");
    println!("  curl -s -H \"Authorization: Bearer $TOKEN\" {url}/api/v1/dead-letters");
    println!();
    println!("Stop with Ctrl-C. `dispatchd serve --data-dir {}` serves the same data again.", data_dir.display());
    let booking = BookingConfig { default_carrier: Some("mockpost".into()), ..cfg.booking.clone() };
    let result = serve(listener, store, &cfg, clock, carriers, booking).await;
    for (_, m) in mocks {
        m.stop().await;
    }
    result
}

/// Console users of the demo, one per kind of work, each with a fresh password (set again on
/// every start, so the printed one always works).
async fn demo_people(
    store: &dyn Store,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<(&'static str, &'static str, String)>> {
    use dispatch_core::Role;
    let mut out = Vec::new();
    for (name, role) in [
        ("supervisor", Role::Supervisor),
        ("dispatcher", Role::Dispatcher),
        ("finance", Role::Finance),
        ("ops", Role::OpsManager),
        ("auditor", Role::Auditor),
    ] {
        let password = random_hex();
        if store.user_by_name(name).await?.is_some() {
            dispatch_server::identity::set_password(store, "demo", name, &password).await?;
        } else {
            dispatch_server::identity::create_user(store, "demo", name, &[role], Some(&password), now).await?;
        }
        out.push((name, role.code(), password));
    }
    Ok(out)
}

/// Two mock carriers in this process, so the demo's released orders get booked and move:
/// `mockpost` (falls back to `mockfreight`) and `mockfreight`, with a little latency, the odd
/// error, duplicate and late webhooks. Keys and webhook secrets are random per run.
async fn demo_carriers(dispatchd_url: &str) -> Result<(Arc<Carriers>, Vec<(String, mock_carrier::MockServer)>)> {
    use dispatch_integrations::Secret;
    let mut configs = std::collections::BTreeMap::new();
    let mut creds = std::collections::HashMap::new();
    let mut mocks = Vec::new();
    for (name, fallback) in [("mockpost", Some("mockfreight")), ("mockfreight", None)] {
        let key = random_hex();
        let secret = random_hex();
        let mut faults = mock_carrier::Faults::default();
        for f in [
            "latency=2..30",
            "error-rate=0.02",
            "retry-after=1",
            "duplicate-rate=0.05",
            "out-of-order-rate=0.05",
            "unknown-status-rate=0.02",
        ] {
            mock_carrier::parse_fault(f, &mut faults).map_err(anyhow::Error::msg)?;
        }
        let mock = mock_carrier::start(
            mock_carrier::MockConfig {
                carrier: name.to_string(),
                api_key: Some(Secret::new(key.clone())),
                webhook_url: Some(format!("{dispatchd_url}/webhooks/carriers/{name}")),
                webhook_secret: Secret::new(secret.clone()),
                time_scale: 0.01,
                faults,
            },
            tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot start the demo's mock carrier")?,
        )
        .await?;
        let cfg: CarrierConfig = serde_json::from_value(serde_json::json!({
            "kind": "easypost", "base_url": mock.url(), "service": "Ground",
            "fallback": fallback.into_iter().collect::<Vec<_>>(),
        }))?;
        configs.insert(name.to_string(), cfg);
        creds.insert(
            name.to_string(),
            Credentials { api_key: Some(Secret::new(key)), webhook_secrets: vec![Secret::new(secret)] },
        );
        mocks.push((name.to_string(), mock));
    }
    let carriers = Carriers::build(&configs, Some("mockpost"), &|n: &str| creds.get(n).cloned().unwrap_or_default())?;
    Ok((Arc::new(carriers), mocks))
}

fn random_hex() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// A progress bar on a terminal; nothing in pipes and CI.
pub fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() || std::env::var_os("CI").is_some() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}
