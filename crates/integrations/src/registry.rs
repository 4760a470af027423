//! Carriers as configured: adapters, webhook verification, status mappings and fallbacks.
//! Credentials come from the environment only (`DISPATCHD_CARRIER_<NAME>_API_KEY`,
//! `DISPATCHD_CARRIER_<NAME>_WEBHOOK_SECRETS` — comma-separated, so an old and a new secret
//! can both be active during a rotation), never from the configuration file.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dispatch_core::StatusMap;
use serde::{Deserialize, Serialize};

use crate::carrier::CarrierAdapter;
use crate::easypost::EasyPostAdapter;
use crate::http_json::{HttpJsonAdapter, HttpJsonConfig};
use crate::resilience::BreakerConfig;
use crate::secret::Secret;
use crate::webhook::{SignatureScheme, WebhookFormat};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CarrierKind {
    Easypost,
    HttpJson,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookConfig {
    #[serde(default)]
    pub signature: SignatureScheme,
    #[serde(flatten)]
    pub format: WebhookFormat,
}

/// One `[carriers.<name>]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarrierConfig {
    pub kind: CarrierKind,
    pub base_url: String,
    /// EasyPost: the service to buy in one call (`Ground`, `Express`, ...); without one the
    /// cheapest offered rate is bought.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Carriers to try, in order, when this one is down.
    #[serde(default)]
    pub fallback: Vec<String>,
    /// Carrier status code → tracking status, over the kind's default mapping.
    #[serde(default)]
    pub status_map: StatusMap,
    /// How this carrier signs and shapes tracking webhooks (EasyPost's by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_json: Option<HttpJsonConfig>,
    /// Per-request timeout in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub breaker: BreakerConfig,
}

fn default_timeout_ms() -> u64 {
    10_000
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("carrier `{carrier}`: {message}")]
    Invalid { carrier: String, message: String },
    #[error("the default carrier `{0}` is not configured")]
    UnknownDefault(String),
}

/// One configured carrier, ready to use.
pub struct Carrier {
    pub name: String,
    pub adapter: Arc<dyn CarrierAdapter>,
    pub signature: SignatureScheme,
    pub webhook_secrets: Vec<Secret>,
    pub format: WebhookFormat,
    pub status_map: StatusMap,
    pub fallback: Vec<String>,
    pub breaker: BreakerConfig,
}

impl std::fmt::Debug for Carrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Carrier")
            .field("name", &self.name)
            .field("webhook_secrets", &self.webhook_secrets)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

/// Every configured carrier, by name.
#[derive(Debug, Default)]
pub struct Carriers {
    by_name: BTreeMap<String, Arc<Carrier>>,
    default: Option<String>,
}

/// `DISPATCHD_CARRIER_<NAME>_<WHAT>`.
pub fn env_name(carrier: &str, what: &str) -> String {
    let name: String =
        carrier.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("DISPATCHD_CARRIER_{name}_{what}")
}

/// Credentials of one carrier.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub api_key: Option<Secret>,
    pub webhook_secrets: Vec<Secret>,
}

impl Credentials {
    /// Reads `..._API_KEY` and `..._WEBHOOK_SECRETS` (or `..._WEBHOOK_SECRET`) through `env`.
    pub fn from_env(carrier: &str, env: &dyn Fn(&str) -> Option<String>) -> Self {
        let api_key = env(&env_name(carrier, "API_KEY")).filter(|k| !k.is_empty()).map(Secret::new);
        let secrets = env(&env_name(carrier, "WEBHOOK_SECRETS")).or_else(|| env(&env_name(carrier, "WEBHOOK_SECRET")));
        let webhook_secrets = secrets
            .map(|s| s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Secret::new).collect())
            .unwrap_or_default();
        Credentials { api_key, webhook_secrets }
    }
}

impl Carriers {
    pub fn empty() -> Self {
        Carriers::default()
    }

    /// Builds every carrier of the configuration with credentials from `creds`.
    pub fn build(
        configs: &BTreeMap<String, CarrierConfig>,
        default: Option<&str>,
        creds: &dyn Fn(&str) -> Credentials,
    ) -> Result<Carriers, ConfigError> {
        let mut by_name = BTreeMap::new();
        for (name, cfg) in configs {
            let invalid = |message: String| ConfigError::Invalid { carrier: name.clone(), message };
            for f in &cfg.fallback {
                if !configs.contains_key(f) || f == name {
                    return Err(invalid(format!("fallback `{f}` is not another configured carrier")));
                }
            }
            if !(cfg.base_url.starts_with("http://") || cfg.base_url.starts_with("https://")) {
                return Err(invalid(format!("base_url `{}` must be an http(s) URL", cfg.base_url)));
            }
            let c = creds(name);
            let client = reqwest::Client::builder()
                .timeout(Duration::from_millis(cfg.timeout_ms.max(1)))
                .connect_timeout(Duration::from_millis(cfg.timeout_ms.clamp(1, 5_000)))
                .pool_max_idle_per_host(512)
                .build()
                .map_err(|e| invalid(format!("cannot build its HTTP client: {e}")))?;
            let mut status_map = match cfg.kind {
                CarrierKind::Easypost => StatusMap::easypost(),
                CarrierKind::HttpJson => StatusMap::default(),
            };
            status_map.extend(&cfg.status_map);
            let adapter: Arc<dyn CarrierAdapter> = match cfg.kind {
                CarrierKind::Easypost => {
                    let key = c.api_key.clone().ok_or_else(|| {
                        invalid(format!("no API key; set {} in the environment", env_name(name, "API_KEY")))
                    })?;
                    Arc::new(EasyPostAdapter::new(
                        name,
                        &cfg.base_url,
                        key,
                        cfg.service.clone(),
                        status_map.clone(),
                        client,
                    ))
                }
                CarrierKind::HttpJson => {
                    let hj = cfg.http_json.clone().ok_or_else(|| {
                        invalid("kind `http-json` needs a [carriers.<name>.http_json] mapping".into())
                    })?;
                    Arc::new(
                        HttpJsonAdapter::new(name, &cfg.base_url, c.api_key.clone(), hj, status_map.clone(), client)
                            .map_err(|e| invalid(e.to_string()))?,
                    )
                }
            };
            let webhook = cfg
                .webhook
                .clone()
                .unwrap_or(WebhookConfig { signature: SignatureScheme::default(), format: WebhookFormat::Easypost });
            if c.webhook_secrets.is_empty() {
                tracing::warn!(
                    carrier = %name,
                    "no webhook secret configured ({}); this carrier's tracking webhooks will be refused",
                    env_name(name, "WEBHOOK_SECRETS")
                );
            }
            by_name.insert(
                name.clone(),
                Arc::new(Carrier {
                    name: name.clone(),
                    adapter,
                    signature: webhook.signature,
                    webhook_secrets: c.webhook_secrets,
                    format: webhook.format,
                    status_map,
                    fallback: cfg.fallback.clone(),
                    breaker: cfg.breaker,
                }),
            );
        }
        let default = match default {
            Some(d) if !by_name.contains_key(d) => return Err(ConfigError::UnknownDefault(d.to_string())),
            Some(d) => Some(d.to_string()),
            None => by_name.keys().next().cloned(),
        };
        Ok(Carriers { by_name, default })
    }

    /// Adds a carrier built elsewhere (tests, the demo).
    pub fn insert(&mut self, carrier: Carrier) {
        if self.default.is_none() {
            self.default = Some(carrier.name.clone());
        }
        self.by_name.insert(carrier.name.clone(), Arc::new(carrier));
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Carrier>> {
        self.by_name.get(name)
    }

    pub fn default_carrier(&self) -> Option<&str> {
        self.default.as_deref()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(toml_like: serde_json::Value) -> CarrierConfig {
        serde_json::from_value(toml_like).unwrap()
    }

    #[test]
    fn carriers_build_from_config_with_env_credentials() {
        let mut configs = BTreeMap::new();
        configs.insert(
            "dhl".to_string(),
            cfg(serde_json::json!({"kind": "easypost", "base_url": "http://127.0.0.1:1", "fallback": ["ups"]})),
        );
        configs
            .insert("ups".to_string(), cfg(serde_json::json!({"kind": "easypost", "base_url": "http://127.0.0.1:2"})));
        let env = |k: &str| match k {
            "DISPATCHD_CARRIER_DHL_API_KEY" | "DISPATCHD_CARRIER_UPS_API_KEY" => Some("key".to_string()),
            "DISPATCHD_CARRIER_DHL_WEBHOOK_SECRETS" => Some("new, old".to_string()),
            _ => None,
        };
        let creds = |n: &str| Credentials::from_env(n, &env);
        let carriers = Carriers::build(&configs, Some("dhl"), &creds).unwrap();
        let dhl = carriers.get("dhl").unwrap();
        assert_eq!(dhl.webhook_secrets.len(), 2);
        assert_eq!(dhl.fallback, vec!["ups".to_string()]);
        assert!(!format!("{dhl:?}").contains("new"), "secrets never print");
        assert_eq!(carriers.default_carrier(), Some("dhl"));

        configs.get_mut("dhl").unwrap().fallback = vec!["fedex".into()];
        assert!(Carriers::build(&configs, None, &creds).is_err());
        configs.get_mut("dhl").unwrap().fallback = vec![];
        assert!(matches!(Carriers::build(&configs, Some("tnt"), &creds), Err(ConfigError::UnknownDefault(_))));
        let no_keys = |n: &str| Credentials::from_env(n, &|_: &str| None);
        assert!(Carriers::build(&configs, None, &no_keys).is_err(), "easypost needs an API key");
        assert_eq!(env_name("my-post", "API_KEY"), "DISPATCHD_CARRIER_MY_POST_API_KEY");
    }
}
