//! Configuration: built-in defaults < TOML file < `DISPATCHD_*` environment < flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;

use dispatch_core::{Warehouse, Warehouses};
use dispatch_integrations::Carriers;
use dispatch_integrations::registry::{CarrierConfig, Credentials};
use dispatch_store::sqlite::Durability;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The example configuration shipped in the repository; its warehouses are the default.
pub const EXAMPLE: &str = include_str!("../../../examples/dispatchd.toml");

/// Name of the config file inside a data directory (the demo writes one there).
pub const DATA_DIR_CONFIG: &str = "dispatchd.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(default)]
    pub log_format: LogFormat,
    pub durability: Durability,
    /// The dispatch policy file (TOML); the embedded default policy when unset. Reloaded on
    /// SIGHUP; `PUT /api/v1/policy` writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_file: Option<PathBuf>,
    #[serde(default)]
    pub warehouses: Vec<Warehouse>,
    /// Scheduled actions; the defaults when none are configured.
    #[serde(default = "crate::scheduler::default_schedules")]
    pub schedules: Vec<crate::scheduler::ScheduleConfig>,
    /// `[carriers.<name>]`: carrier adapters; credentials come from the environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub carriers: BTreeMap<String, CarrierConfig>,
    #[serde(default)]
    pub booking: BookingConfig,
    /// `[security]`: rate limits, header size, console cookies and sign-in lockout.
    #[serde(default)]
    pub security: dispatch_server::limits::SecurityConfig,
    /// `[odoo]`: the Odoo connector; credentials come from the environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odoo: Option<dispatch_odoo::OdooConfig>,
    /// `[webhooks]`: outbound webhook deliveries.
    #[serde(default)]
    pub webhooks: crate::outbound::WebhooksConfig,
    /// `[notifications]`: customer notices and internal alerts.
    #[serde(default)]
    pub notifications: crate::notify::NotificationsConfig,
}

/// `[booking]`: how released orders are booked with carriers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BookingConfig {
    /// Run the booking workers (with `serve` and `demo`).
    pub enabled: bool,
    /// Carrier for orders without a (configured) carrier preference; the first configured
    /// carrier when unset.
    pub default_carrier: Option<String>,
    /// Carrier calls in flight at once.
    pub concurrency: usize,
    /// Jobs claimed per round trip to the database.
    pub batch: u32,
    /// How long a claimed job is ours before another worker may take it over.
    pub lease_secs: u64,
    /// Attempts before a job becomes a dead letter.
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_cap_ms: u64,
    /// How often an idle worker looks for jobs that came due (a retry); new jobs wake it at once.
    pub poll_ms: u64,
}

impl Default for BookingConfig {
    fn default() -> Self {
        BookingConfig {
            enabled: true,
            default_carrier: None,
            concurrency: 128,
            batch: 128,
            lease_secs: 60,
            max_attempts: 8,
            backoff_base_ms: 500,
            backoff_cap_ms: 60_000,
            poll_ms: 100,
        }
    }
}

/// Values given on the command line; `None` leaves the layer below in force.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

#[derive(Serialize)]
struct Defaults {
    listen: &'static str,
    data_dir: &'static str,
    durability: Durability,
}

impl Config {
    /// Loads the layers. Without `--config`, a `dispatchd.toml` in the data directory is used
    /// when present, so `serve --data-dir DIR` on a demo's directory serves the demo's setup.
    pub fn load(file: Option<&Path>, flags: &Overrides) -> Result<Config> {
        // The master key ring, carrier credentials (`DISPATCHD_CARRIER_<NAME>_*`), Odoo's
        // (`DISPATCHD_ODOO_*`) and the SMTP password are secrets read where they are used (the
        // vault, the carrier registry, the connector, the mailer), not configuration keys.
        let env = || {
            Env::prefixed("DISPATCHD_").ignore(&["config", "master_key", "master_key_file", "smtp_password"]).filter(
                |k| {
                    let k = k.as_str().to_ascii_lowercase();
                    !k.starts_with("carrier_") && !k.starts_with("odoo_")
                },
            )
        };
        let base = Figment::from(Serialized::defaults(Defaults {
            listen: "127.0.0.1:8080",
            data_dir: "./dispatchd-data",
            durability: Durability::Full,
        }));
        let file = match file {
            Some(f) => {
                if !f.exists() {
                    bail!("config file {} does not exist; copy examples/dispatchd.toml to start one", f.display());
                }
                Some(f.to_path_buf())
            }
            None => {
                // Find the data dir first (flags, env, default) to look for its config file.
                let probe: Config = base
                    .clone()
                    .merge(env())
                    .merge(Serialized::defaults(flags.clone()))
                    .extract()
                    .context("reading configuration from the environment")?;
                let candidate = probe.data_dir.join(DATA_DIR_CONFIG);
                candidate.exists().then_some(candidate)
            }
        };
        let mut fig = base;
        if let Some(f) = &file {
            fig = fig.merge(Toml::file(f));
        }
        let mut cfg: Config =
            fig.merge(env()).merge(Serialized::defaults(flags.clone())).extract().with_context(|| match &file {
                Some(f) => format!("configuration in {} is invalid", f.display()),
                None => "configuration is invalid".to_string(),
            })?;
        if cfg.warehouses.is_empty() {
            cfg.warehouses = example_warehouses()?;
        }
        Ok(cfg)
    }

    /// The policy in force at start: the configured file, or the embedded default.
    pub fn policy(&self) -> Result<(std::sync::Arc<dispatch_policy::Policy>, &'static str)> {
        match &self.policy_file {
            None => Ok((dispatch_policy::Policy::default_policy(), "embedded")),
            Some(path) => {
                let codes: Vec<String> = self.warehouses.iter().map(|w| w.code.clone()).collect();
                Ok((std::sync::Arc::new(load_policy(path, Some(&codes))?), "file"))
            }
        }
    }

    pub fn warehouses(&self) -> Result<Warehouses> {
        Warehouses::new(self.warehouses.clone()).context("warehouse configuration is invalid")
    }

    /// The configured carriers, with credentials from the process environment.
    /// Carriers with credentials from the environment, else from `stored` (sealed secrets).
    pub fn carriers_with(&self, stored: &dyn Fn(&str) -> Option<String>) -> Result<Carriers> {
        let env = |k: &str| std::env::var(k).ok().or_else(|| stored(k));
        Carriers::build(&self.carriers, self.booking.default_carrier.as_deref(), &|name: &str| {
            Credentials::from_env(name, &env)
        })
        .context("carrier configuration is invalid")
    }

    /// Where the data lives: the embedded SQLite file, or a PostgreSQL server.
    pub fn database(&self) -> Result<Database> {
        match &self.database_url {
            None => Ok(Database::Sqlite(self.data_dir.join("dispatchd.db"))),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Database::Postgres(url.clone()))
            }
            Some(url) => match url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
                Some(path) => Ok(Database::Sqlite(PathBuf::from(path))),
                None => bail!(
                    "database URL is not understood; use postgres://USER@HOST/DB, sqlite://PATH or --data-dir DIR"
                ),
            },
        }
    }
}

#[derive(Debug, Clone)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(p) => write!(f, "{}", p.display()),
            // Never print credentials: only the host part.
            Database::Postgres(url) => {
                let host = url.rsplit_once('@').map_or(url.as_str(), |(_, h)| h);
                write!(f, "postgres://…@{host}")
            }
        }
    }
}

/// Reads and compiles a policy file; the error lists every problem as `file:line:col: message`.
pub fn load_policy(path: &Path, warehouses: Option<&[String]>) -> Result<dispatch_policy::Policy> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read policy file {}", path.display()))?;
    dispatch_policy::Policy::compile(&text, &path.display().to_string(), warehouses)
        .map_err(|e| anyhow::anyhow!("policy {} is invalid:\n{e}", path.display()))
}

pub fn example_warehouses() -> Result<Vec<Warehouse>> {
    #[derive(Deserialize)]
    struct Only {
        warehouses: Vec<Warehouse>,
    }
    let only: Only = toml::from_str(EXAMPLE).context("the built-in example configuration is invalid")?;
    Ok(only.warehouses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_loads_with_three_warehouses() {
        let w = example_warehouses().unwrap();
        assert_eq!(w.len(), 3);
        Warehouses::new(w).unwrap();
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\ndata_dir = \"/tmp/x\"\n").unwrap();
        let c = Config::load(Some(&file), &Overrides::default()).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.warehouses.len(), 3, "no warehouses configured: the example ones");
        let flags = Overrides { listen: Some("127.0.0.1:9100".parse().unwrap()), ..Default::default() };
        assert_eq!(Config::load(Some(&file), &flags).unwrap().listen.port(), 9100);
    }

    #[test]
    fn security_settings_load_from_the_file_and_a_typo_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.toml");
        std::fs::write(&file, "[security]\nper_token_rps = 5.0\nsecure_cookies = false\n").unwrap();
        let c = Config::load(Some(&file), &Overrides::default()).unwrap();
        assert_eq!(c.security.per_token_rps, 5.0);
        assert!(!c.security.secure_cookies);
        assert_eq!(c.security.lockout_secs, dispatch_server::limits::SecurityConfig::default().lockout_secs);
        std::fs::write(&file, "[security]\nper_tokn_rps = 5.0\n").unwrap();
        let e = Config::load(Some(&file), &Overrides::default()).unwrap_err();
        assert!(format!("{e:#}").contains("per_tokn_rps"), "{e:#}");
    }

    #[test]
    fn carriers_and_booking_load_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            r#"
[booking]
default_carrier = "dhl"
max_attempts = 3

[carriers.dhl]
kind = "easypost"
base_url = "http://127.0.0.1:9100"
service = "Ground"
fallback = ["acme"]
[carriers.dhl.breaker]
failure_threshold = 2
open_for = 5000
[carriers.dhl.status_map]
"ARRIVED_AT_HUB" = "in_transit"

[carriers.acme]
kind = "http-json"
base_url = "http://127.0.0.1:9200"
[carriers.acme.http_json]
book = { path = "/shipments" }
track = { method = "GET", path = "/shipments/{tracking_number}/events" }
[carriers.acme.http_json.request]
"/reference" = "order_id"
"/product" = "=EXPRESS"
[carriers.acme.http_json.response]
tracking_number = "/data/awb"
[carriers.acme.http_json.tracking]
events = "/events"
event_id = "/id"
status = "/code"
event_time = "/at"
[carriers.acme.webhook]
signature = { header = "X-Signature", prefix = "v1=", timestamp_header = "X-Timestamp" }
format = "json"
event_id = "/id"
tracking_number = "/awb"
status = "/code"
event_time = "/at"
"#,
        )
        .unwrap();
        let c = Config::load(Some(&file), &Overrides::default()).unwrap();
        assert_eq!(c.booking.max_attempts, 3);
        assert_eq!(c.booking.concurrency, BookingConfig::default().concurrency);
        let creds = |name: &str| Credentials {
            api_key: Some(dispatch_integrations::Secret::new(format!("key-{name}"))),
            webhook_secrets: vec![],
        };
        let carriers = Carriers::build(&c.carriers, c.booking.default_carrier.as_deref(), &creds).unwrap();
        assert_eq!(carriers.len(), 2);
        let dhl = carriers.get("dhl").unwrap();
        assert_eq!(dhl.status_map.normalize("arrived_at_hub"), dispatch_core::TrackingStatus::InTransit);
        assert_eq!(dhl.breaker.failure_threshold, 2);
        let acme = carriers.get("acme").unwrap();
        assert_eq!(acme.signature.timestamp_header.as_deref(), Some("X-Timestamp"));
        assert!(matches!(acme.format, dispatch_integrations::webhook::WebhookFormat::Json { .. }));
    }

    #[test]
    fn the_odoo_section_loads_and_its_secrets_stay_out_of_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        // The example's commented section, uncommented.
        let example: String = EXAMPLE
            .lines()
            .skip_while(|l| !l.starts_with("# [odoo]"))
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&file, example).unwrap();
        let c = Config::load(Some(&file), &Overrides::default()).unwrap();
        let odoo = c.odoo.expect("[odoo] loaded");
        assert_eq!(odoo.login.as_deref(), Some("dispatchd-bot"));
        assert_eq!(odoo.mapping.warehouses.get("WH").map(String::as_str), Some("AMS"));
        assert_eq!(odoo.sync.overlap_secs, 120);
        let codes: Vec<String> = c.warehouses.iter().map(|w| w.code.clone()).collect();
        let none = dispatch_odoo::OdooSecrets::default();
        let err = odoo.validate(&none, &codes).unwrap_err().to_string();
        assert!(err.contains("DISPATCHD_ODOO_API_KEY"), "{err}");
        let key = dispatch_odoo::OdooSecrets {
            api_key: Some(dispatch_integrations::Secret::new("k")),
            webhook_secrets: vec![],
        };
        odoo.validate(&key, &codes).unwrap();
        assert!(format!("{key:?}").contains("Secret(***)"), "the key never prints");
    }

    #[test]
    fn unknown_keys_and_missing_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:9000\"\n").unwrap();
        let err = format!("{:#}", Config::load(Some(&file), &Overrides::default()).unwrap_err());
        assert!(err.contains("lisen"), "{err}");
        assert!(Config::load(Some(&dir.path().join("nope.toml")), &Overrides::default()).is_err());
    }
}
