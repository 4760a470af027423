//! The Odoo connector of dispatchd. Odoo stays the system of record; dispatchd follows it:
//!
//! - [`client`]: Odoo's external API, JSON-RPC (16–18) or JSON-2 (19+), with Odoo's error
//!   envelope as typed [`OdooError`]s.
//! - [`mapping`]: the documented, configurable mapping of a `stock.picking` (+ `sale.order`,
//!   `res.partner`, `stock.move`) to a dispatch order. Pure.
//! - [`plan`]: the `(write_date, id)` cursor with an overlap window. Pure.
//! - [`sync`]: the pull sync and the webhook hints, writing through the store.
//! - [`writeback`]: what dispatchd writes back (tracking ref, a status field, chatter notes),
//!   the field-ownership table, and the worker that does it exactly once.

use std::collections::BTreeMap;

use dispatch_integrations::Secret;
use serde::{Deserialize, Serialize};

pub mod client;
pub mod error;
pub mod mapping;
pub mod plan;
pub mod sync;
pub mod writeback;

pub use client::{Api, Client, Connection, ServerVersion};
pub use error::OdooError;
pub use mapping::{Bundle, Mapped, Mapping, MappingError};
pub use sync::{Connector, HintOutcome, Ingest, SyncReport};
pub use writeback::{Owner, WritebackSettings};

/// `[odoo]` in dispatchd's configuration. Credentials are not here: they come from the
/// environment (`DISPATCHD_ODOO_API_KEY`, `DISPATCHD_ODOO_WEBHOOK_SECRET`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OdooConfig {
    /// Base URL of the Odoo server, e.g. `https://erp.example.com`.
    pub url: String,
    /// The Odoo database name.
    pub database: String,
    /// `json-rpc` (Odoo 16–18) or `json-2` (Odoo 19+).
    #[serde(default)]
    pub api: Api,
    /// The bot user's login (JSON-RPC authenticates with login + API key).
    #[serde(default)]
    pub login: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    #[serde(default)]
    pub sync: SyncSettings,
    #[serde(default)]
    pub writeback: WritebackSettings,
    #[serde(default)]
    pub mapping: Mapping,
}

fn default_timeout() -> u64 {
    30
}

/// `[odoo.sync]`: the pull sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncSettings {
    /// Run the sync as the scheduled action `odoo-sync`.
    pub enabled: bool,
    /// Its cadence (`every 1m` or a cron expression, UTC).
    pub cadence: String,
    /// Pickings per page (one `search_read`, then the related records in bulk).
    pub batch: u32,
    /// How far before the cursor each run starts reading again (see `plan`).
    pub overlap_secs: i64,
    /// Cancel open orders whose picking no longer exists in Odoo.
    pub reconcile_deleted: bool,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            enabled: true,
            cadence: "every 1m".into(),
            batch: 100,
            overlap_secs: 120,
            reconcile_deleted: true,
        }
    }
}

/// Credentials from the environment, never from a file.
#[derive(Debug, Clone, Default)]
pub struct OdooSecrets {
    /// The bot user's API key (or password, JSON-RPC only).
    pub api_key: Option<Secret>,
    /// Secrets accepted on `POST /webhooks/odoo` (several during a rotation).
    pub webhook_secrets: Vec<Secret>,
}

pub const ENV_API_KEY: &str = "DISPATCHD_ODOO_API_KEY";
pub const ENV_WEBHOOK_SECRET: &str = "DISPATCHD_ODOO_WEBHOOK_SECRET";

impl OdooSecrets {
    /// `DISPATCHD_ODOO_API_KEY`, `DISPATCHD_ODOO_WEBHOOK_SECRET` (comma-separated for rotation).
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> OdooSecrets {
        OdooSecrets {
            api_key: env(ENV_API_KEY).filter(|k| !k.is_empty()).map(Secret::new),
            webhook_secrets: env(ENV_WEBHOOK_SECRET)
                .map(|s| s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Secret::new).collect())
                .unwrap_or_default(),
        }
    }
}

/// A configuration that cannot work, with what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("[odoo] configuration: {0}")]
pub struct ConfigError(pub String);

impl OdooConfig {
    /// Checks what can be checked without Odoo; every problem is named.
    pub fn validate(&self, secrets: &OdooSecrets, warehouses: &[String]) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            problems.push(format!("url `{}` must start with http:// or https://", self.url));
        }
        if self.database.trim().is_empty() {
            problems.push("database is empty; set the Odoo database name".into());
        }
        if self.api == Api::JsonRpc && self.login.as_deref().is_none_or(str::is_empty) {
            problems.push("login is required with api = \"json-rpc\" (the bot user's login)".into());
        }
        if secrets.api_key.is_none() {
            problems.push(format!("{ENV_API_KEY} is not set; create an API key for the bot user in Odoo (Preferences → Account Security → New API Key)"));
        }
        if self.sync.batch == 0 || self.sync.batch > 1000 {
            problems.push(format!("sync.batch = {} must be 1–1000", self.sync.batch));
        }
        if self.sync.overlap_secs < 0 {
            problems.push("sync.overlap_secs must not be negative".into());
        }
        problems.extend(self.mapping.check());
        for (short, code) in &self.mapping.warehouses {
            if !warehouses.is_empty() && !warehouses.contains(code) {
                problems.push(format!(
                    "mapping.warehouses.{short} = \"{code}\" is not a configured warehouse ({})",
                    warehouses.join(", ")
                ));
            }
        }
        problems.extend(self.writeback.check());
        if problems.is_empty() { Ok(()) } else { Err(ConfigError(problems.join("; "))) }
    }

    pub fn connection(&self, secrets: &OdooSecrets) -> Connection {
        Connection {
            url: self.url.clone(),
            database: self.database.clone(),
            api: self.api,
            login: self.login.clone().unwrap_or_default(),
            key: secrets.api_key.clone().unwrap_or_else(|| Secret::new("")),
            timeout: std::time::Duration::from_secs(self.timeout_secs.max(1)),
        }
    }
}

/// The models the connector reads (`read`) and writes (`write`), for `dispatchd odoo check`.
pub fn needed_access() -> BTreeMap<&'static str, Vec<&'static str>> {
    let mut m = BTreeMap::new();
    m.insert(mapping::PICKING, vec!["read", "write"]);
    m.insert(mapping::SALE, vec!["read"]);
    m.insert(mapping::PARTNER, vec!["read"]);
    m.insert(mapping::MOVE, vec!["read"]);
    m.insert("mail.message", vec!["read"]);
    m
}
