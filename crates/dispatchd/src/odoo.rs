//! Wiring of the Odoo connector: from `[odoo]` and the environment to a connector on the
//! server state, the `odoo-sync` scheduled action, the write-back worker, and the
//! `dispatchd odoo check` / `odoo sync --once` commands.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use dispatch_core::Evaluator;
use dispatch_odoo::writeback::Worker;
use dispatch_odoo::{Connector, Ingest, OdooConfig, OdooSecrets};
use dispatch_server::AppState;

use crate::config::Config;
use crate::scheduler::{ScheduleConfig, ScheduledAction};

pub const SCHEDULE: &str = "odoo-sync";
pub const ACTION: &str = "odoo_sync";

pub fn secrets() -> OdooSecrets {
    OdooSecrets::from_env(&|k| std::env::var(k).ok())
}

/// The connector for this configuration (validated), writing through the server's state.
pub fn connector(cfg: &OdooConfig, secrets: OdooSecrets, state: &Arc<AppState>) -> Result<Arc<Connector>> {
    let codes: Vec<String> = state.warehouses.iter().map(|w| w.code.clone()).collect();
    cfg.validate(&secrets, &codes)?;
    let policy_state = state.clone();
    let clock = state.clock.clone();
    let ingest = Ingest {
        store: state.store.clone(),
        warehouses: state.warehouses.clone(),
        rules: Arc::new(move || {
            Arc::new(dispatch_server::policy::Scored::new(&policy_state, policy_state.policy.policy()))
                as Arc<dyn Evaluator>
        }),
        now: Arc::new(move || clock.now()),
    };
    Ok(Arc::new(Connector::new(cfg.clone(), secrets, ingest)?))
}

/// Attaches the connector to the state when `[odoo]` is configured.
pub fn attach(cfg: &Config, state: &Arc<AppState>) -> Result<Option<Arc<Connector>>> {
    let Some(odoo) = &cfg.odoo else { return Ok(None) };
    let c = connector(odoo, secrets(), state)?;
    let _ = state.odoo.set(c.clone());
    tracing::info!(url = %odoo.url, database = %odoo.database, api = ?odoo.api, "Odoo connector configured");
    Ok(Some(c))
}

/// The schedule of the pull sync, when enabled.
pub fn schedule(cfg: &Config) -> Option<ScheduleConfig> {
    let odoo = cfg.odoo.as_ref()?;
    odoo.sync.enabled.then(|| ScheduleConfig {
        name: SCHEDULE.into(),
        cadence: odoo.sync.cadence.clone(),
        action: ACTION.into(),
    })
}

/// The scheduled pull sync. A failed run is retried by the scheduler with backoff; the
/// cursor only covers committed pages, so nothing is lost meanwhile.
pub struct OdooSync {
    pub connector: Arc<Connector>,
}

#[async_trait]
impl ScheduledAction for OdooSync {
    async fn run(&self) -> Result<String, String> {
        self.connector.sync_once(&|_| {}).await.map(|r| r.summary()).map_err(|e| e.to_string())
    }
}

/// The write-back worker, when enabled.
pub fn writeback_worker(c: &Arc<Connector>, state: &Arc<AppState>) -> Result<Option<Arc<Worker>>> {
    if !c.cfg.writeback.enabled {
        return Ok(None);
    }
    let client = dispatch_odoo::Client::new(c.cfg.connection(&c.secrets))?;
    let clock = state.clock.clone();
    Ok(Some(Arc::new(Worker {
        id: format!("odoo-writeback-{}", uuid::Uuid::now_v7().simple()),
        client: Arc::new(client),
        store: state.store.clone(),
        settings: c.cfg.writeback.clone(),
        now: Arc::new(move || clock.now()),
    })))
}

fn require(cfg: &Config) -> Result<&OdooConfig> {
    match &cfg.odoo {
        Some(o) => Ok(o),
        None => bail!("no [odoo] section in the configuration; see examples/dispatchd.toml and docs/odoo.md"),
    }
}

/// `dispatchd odoo check`: connects and prints version, user and access rights.
pub async fn check(cfg: &Config, state: &Arc<AppState>) -> Result<bool> {
    let odoo = require(cfg)?;
    let c = connector(odoo, secrets(), state)?;
    let r = c.check().await.with_context(|| format!("cannot check Odoo at {}", odoo.url))?;
    println!(
        "Odoo      {} (server {}, {} API)",
        odoo.url,
        r.version.version,
        match odoo.api {
            dispatch_odoo::Api::JsonRpc => "JSON-RPC",
            dispatch_odoo::Api::Json2 => "JSON-2",
        }
    );
    println!("database  {}", odoo.database);
    println!("user      {}", r.user.clone().unwrap_or_else(|| format!("id {}", r.uid)));
    for a in &r.access {
        let verdict = match &a.result {
            Ok(true) => "ok".to_string(),
            Ok(false) => "MISSING: give the bot user's group this access right".to_string(),
            Err(e) => format!("ERROR: {e}"),
        };
        println!("access    {:<14} {:<6} {verdict}", a.model, a.operation);
    }
    for f in &r.missing_fields {
        println!(
            "field     stock.picking.{f} MISSING: add it in Odoo (Settings → Technical → Fields) or change [odoo.writeback]"
        );
    }
    if (odoo.api == dispatch_odoo::Api::JsonRpc) && r.version.major >= 19 {
        println!("note      Odoo {} deprecates /jsonrpc; set api = \"json-2\"", r.version.version);
    }
    println!("{}", if r.ok() { "ready" } else { "NOT READY: fix the lines above" });
    Ok(r.ok())
}

/// `dispatchd odoo sync --once`.
pub async fn sync_once(cfg: &Config, state: &Arc<AppState>) -> Result<()> {
    let odoo = require(cfg)?;
    let c = connector(odoo, secrets(), state)?;
    let bar = crate::app::progress(0, "syncing pickings from Odoo");
    let on_page = |n: u64| {
        bar.set_length(n);
        bar.set_position(n);
    };
    let result = c.sync_once(&on_page).await;
    bar.finish_and_clear();
    let r = result.with_context(|| {
        format!(
            "sync from Odoo at {} stopped; pages before the failure are kept and the next run continues from there",
            odoo.url
        )
    })?;
    println!("{}", r.summary());
    for line in &r.rejected {
        println!("rejected  {line}");
    }
    if let Some(cur) = &r.cursor {
        println!("cursor    {cur}");
    }
    Ok(())
}
