//! The client of Odoo's external API, in its two forms:
//!
//! - **JSON-RPC** (`POST /jsonrpc`, Odoo 16–18; deprecated in 19): `common.version`,
//!   `common.authenticate(db, login, password, {})` → uid, then
//!   `object.execute_kw(db, uid, password, model, method, args, kwargs)`. The password may be
//!   an API key. Errors come as HTTP 200 with `error.data.{name, message}`.
//! - **JSON-2** (`POST /json/2/<model>/<method>`, Odoo 19+): `Authorization: bearer <API key>`,
//!   `X-Odoo-Database`, named parameters (`ids`, `domain`, `fields`, ...) in the body; the
//!   result is the body; errors are 4xx/5xx with `{name, message, ...}`.
//!
//! Every call here is made with named parameters, which both forms accept (JSON-RPC takes the
//! record ids as the one positional argument and the rest as `kwargs`).

use std::time::Duration;

use dispatch_integrations::Secret;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::OdooError;

/// Which of Odoo's external APIs to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Api {
    /// `/jsonrpc` with login + password or API key (Odoo 16, 17, 18).
    #[default]
    #[serde(rename = "json-rpc")]
    JsonRpc,
    /// `/json/2` with a bearer API key (Odoo 19+).
    #[serde(rename = "json-2")]
    Json2,
}

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct Connection {
    pub url: String,
    pub database: String,
    pub api: Api,
    /// The bot user's login (JSON-RPC authenticates with it; JSON-2 does not need it).
    pub login: String,
    /// Its password or, better, an API key.
    pub key: Secret,
    pub timeout: Duration,
}

/// What `common.version` (or `/web/version`) says.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerVersion {
    pub version: String,
    pub major: u32,
}

pub struct Client {
    http: reqwest::Client,
    conn: Connection,
    uid: tokio::sync::Mutex<Option<i64>>,
}

/// Methods that run on records: their ids go first (JSON-RPC) or in `ids` (JSON-2).
fn on_records(method: &str) -> bool {
    matches!(method, "read" | "write" | "unlink" | "message_post")
}

impl Client {
    pub fn new(conn: Connection) -> Result<Client, OdooError> {
        let http = reqwest::Client::builder()
            .timeout(conn.timeout)
            .user_agent(concat!("dispatchd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OdooError::Protocol { what: "the HTTP client".into(), detail: e.to_string() })?;
        Ok(Client {
            http,
            conn: Connection { url: conn.url.trim_end_matches('/').to_string(), ..conn },
            uid: Default::default(),
        })
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn unavailable(&self, detail: impl std::fmt::Display) -> OdooError {
        OdooError::Unavailable { url: self.conn.url.clone(), detail: detail.to_string() }
    }

    async fn post(&self, path: &str, body: &Value, bearer: bool) -> Result<(u16, Value), OdooError> {
        let mut req = self.http.post(format!("{}{path}", self.conn.url)).json(body);
        if bearer {
            req = req
                .header("Authorization", format!("bearer {}", self.conn.key.expose()))
                .header("X-Odoo-Database", &self.conn.database);
        }
        let resp = req.send().await.map_err(|e| self.unavailable(without_url(&e)))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| self.unavailable(without_url(&e)))?;
        match serde_json::from_str::<Value>(&text) {
            Ok(v) => Ok((status, v)),
            // A proxy's error page or a stopped worker: Odoo itself always answers JSON here.
            Err(_) if status >= 500 || status == 404 || status == 429 => {
                Err(self.unavailable(format!("HTTP {status} without an Odoo answer")))
            }
            Err(_) => Err(OdooError::Protocol {
                what: path.to_string(),
                detail: format!("HTTP {status}, not JSON: {}", text.chars().take(120).collect::<String>()),
            }),
        }
    }

    /// One JSON-RPC call; returns `result` or Odoo's error as [`OdooError::Server`].
    async fn rpc(&self, service: &str, method: &str, args: Vec<Value>, model: &str) -> Result<Value, OdooError> {
        let id = uuid::Uuid::now_v7().as_u128() as u32;
        let body = json!({"jsonrpc": "2.0", "method": "call", "params": {"service": service, "method": method, "args": args}, "id": id});
        let (status, v) = self.post("/jsonrpc", &body, false).await?;
        if let Some(err) = v.get("error") {
            let data = err.get("data").cloned().unwrap_or(Value::Null);
            let name = data.get("name").and_then(Value::as_str).unwrap_or("odoo.exceptions.UserError").to_string();
            let message = data
                .get("message")
                .and_then(Value::as_str)
                .or_else(|| err.get("message").and_then(Value::as_str))
                .unwrap_or("")
                .to_string();
            if name == "odoo.exceptions.AccessDenied" {
                return Err(self.auth_error());
            }
            return Err(OdooError::Server {
                model: model.into(),
                method: method_label(service, method, &args),
                name,
                message,
            });
        }
        match v.get("result") {
            Some(r) => Ok(r.clone()),
            None => Err(OdooError::Protocol {
                what: format!("{service}.{method}"),
                detail: format!("HTTP {status}: no `result` and no `error`"),
            }),
        }
    }

    fn auth_error(&self) -> OdooError {
        OdooError::Auth { login: self.conn.login.clone(), database: self.conn.database.clone() }
    }

    pub async fn version(&self) -> Result<ServerVersion, OdooError> {
        let v = match self.conn.api {
            Api::JsonRpc => self.rpc("common", "version", vec![], "common").await?,
            Api::Json2 => {
                let resp = self
                    .http
                    .get(format!("{}/web/version", self.conn.url))
                    .send()
                    .await
                    .map_err(|e| self.unavailable(without_url(&e)))?;
                if resp.status().is_server_error() {
                    return Err(self.unavailable(format!("HTTP {}", resp.status().as_u16())));
                }
                let v: Value = resp
                    .json()
                    .await
                    .map_err(|e| OdooError::Protocol { what: "/web/version".into(), detail: e.to_string() })?;
                json!({"server_version": v.get("version"), "server_version_info": v.get("version_info")})
            }
        };
        let version = v.get("server_version").and_then(Value::as_str).unwrap_or("").to_string();
        let major = v
            .get("server_version_info")
            .and_then(|i| i.get(0))
            .and_then(Value::as_u64)
            .map(|m| m as u32)
            .or_else(|| version.split('.').next().and_then(|m| m.trim_start_matches("saas~").parse().ok()))
            .ok_or_else(|| OdooError::Protocol {
                what: "version".into(),
                detail: format!("no server version in {v}"),
            })?;
        Ok(ServerVersion { version, major })
    }

    /// The bot user's id: `common.authenticate` (JSON-RPC, cached) or `res.users.context_get`
    /// (JSON-2, where the API key names the user).
    pub async fn uid(&self) -> Result<i64, OdooError> {
        let mut cached = self.uid.lock().await;
        if let Some(uid) = *cached {
            return Ok(uid);
        }
        let uid = match self.conn.api {
            Api::JsonRpc => {
                let args =
                    vec![json!(self.conn.database), json!(self.conn.login), json!(self.conn.key.expose()), json!({})];
                match self.rpc("common", "authenticate", args, "common").await? {
                    Value::Number(n) => n.as_i64().ok_or_else(|| self.auth_error())?,
                    _ => return Err(self.auth_error()),
                }
            }
            Api::Json2 => {
                let ctx = self.call_json2("res.users", "context_get", None, Map::new()).await?;
                ctx.get("uid").and_then(Value::as_i64).unwrap_or(0)
            }
        };
        *cached = Some(uid);
        Ok(uid)
    }

    /// Calls `model.method` with named parameters (and the record ids for record methods).
    pub async fn call(
        &self,
        model: &str,
        method: &str,
        ids: Option<&[i64]>,
        params: Map<String, Value>,
    ) -> Result<Value, OdooError> {
        match self.conn.api {
            Api::JsonRpc => {
                let uid = self.uid().await?;
                let positional = match ids {
                    Some(ids) if on_records(method) => vec![json!(ids)],
                    _ => vec![],
                };
                let args = vec![
                    json!(self.conn.database),
                    json!(uid),
                    json!(self.conn.key.expose()),
                    json!(model),
                    json!(method),
                    Value::Array(positional),
                    Value::Object(params),
                ];
                self.rpc("object", "execute_kw", args, model).await.map_err(|e| match e {
                    OdooError::Server { name, message, .. } => {
                        OdooError::Server { model: model.into(), method: method.into(), name, message }
                    }
                    other => other,
                })
            }
            Api::Json2 => self.call_json2(model, method, ids, params).await,
        }
    }

    async fn call_json2(
        &self,
        model: &str,
        method: &str,
        ids: Option<&[i64]>,
        params: Map<String, Value>,
    ) -> Result<Value, OdooError> {
        let mut body = params;
        if let Some(ids) = ids {
            body.insert("ids".into(), json!(ids));
        }
        let (status, v) = self.post(&format!("/json/2/{model}/{method}"), &Value::Object(body), true).await?;
        match status {
            200..=299 => Ok(v),
            401 => Err(self.auth_error()),
            _ => {
                let name = v.get("name").and_then(Value::as_str);
                match name {
                    Some(name) => Err(OdooError::Server {
                        model: model.into(),
                        method: method.into(),
                        name: name.to_string(),
                        message: v.get("message").and_then(Value::as_str).unwrap_or("").to_string(),
                    }),
                    None if status >= 500 => Err(self.unavailable(format!("HTTP {status}"))),
                    None => Err(OdooError::Protocol {
                        what: format!("{model}.{method}"),
                        detail: format!("HTTP {status}: {v}"),
                    }),
                }
            }
        }
    }

    pub async fn search_read(
        &self,
        model: &str,
        domain: Value,
        fields: &[String],
        order: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<Map<String, Value>>, OdooError> {
        let mut p = Map::new();
        p.insert("domain".into(), domain);
        p.insert("fields".into(), json!(fields));
        if let Some(o) = order {
            p.insert("order".into(), json!(o));
        }
        if let Some(l) = limit {
            p.insert("limit".into(), json!(l));
        }
        records(self.call(model, "search_read", None, p).await?, model, "search_read")
    }

    pub async fn search(&self, model: &str, domain: Value) -> Result<Vec<i64>, OdooError> {
        let mut p = Map::new();
        p.insert("domain".into(), domain);
        let v = self.call(model, "search", None, p).await?;
        v.as_array().map(|a| a.iter().filter_map(Value::as_i64).collect()).ok_or_else(|| OdooError::Protocol {
            what: format!("{model}.search"),
            detail: format!("expected a list of ids, got {v}"),
        })
    }

    /// `read` of these ids; ids that no longer exist are left out (Odoo raises MissingError
    /// for the whole call, so the ids are checked with `search` first).
    pub async fn read(
        &self,
        model: &str,
        ids: &[i64],
        fields: &[String],
    ) -> Result<Vec<Map<String, Value>>, OdooError> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let mut p = Map::new();
        p.insert("fields".into(), json!(fields));
        match self.call(model, "read", Some(ids), p).await {
            Ok(v) => records(v, model, "read"),
            Err(e) if e.is_missing() => {
                let existing = self.search(model, json!([["id", "in", ids]])).await?;
                if existing.is_empty() {
                    return Ok(vec![]);
                }
                let mut p = Map::new();
                p.insert("fields".into(), json!(fields));
                records(self.call(model, "read", Some(&existing), p).await?, model, "read")
            }
            Err(e) => Err(e),
        }
    }

    pub async fn write(&self, model: &str, ids: &[i64], vals: Map<String, Value>) -> Result<(), OdooError> {
        let mut p = Map::new();
        p.insert("vals".into(), Value::Object(vals));
        self.call(model, "write", Some(ids), p).await.map(|_| ())
    }

    pub async fn search_count(&self, model: &str, domain: Value) -> Result<u64, OdooError> {
        let mut p = Map::new();
        p.insert("domain".into(), domain);
        let v = self.call(model, "search_count", None, p).await?;
        v.as_u64().ok_or_else(|| OdooError::Protocol {
            what: format!("{model}.search_count"),
            detail: format!("expected a number, got {v}"),
        })
    }

    /// Posts a note on a record's chatter (`mail.thread.message_post`); returns the message id.
    pub async fn message_post(&self, model: &str, id: i64, body: &str) -> Result<i64, OdooError> {
        let mut p = Map::new();
        p.insert("body".into(), json!(body));
        p.insert("message_type".into(), json!("comment"));
        p.insert("subtype_xmlid".into(), json!("mail.mt_note"));
        let v = self.call(model, "message_post", Some(&[id]), p).await?;
        // Odoo returns the new mail.message's id (a recordset id over RPC).
        Ok(v.as_i64().or_else(|| v.get(0).and_then(Value::as_i64)).unwrap_or(0))
    }

    /// `check_access_rights(operation, raise_exception=False)`.
    pub async fn check_access_rights(&self, model: &str, operation: &str) -> Result<bool, OdooError> {
        let mut p = Map::new();
        p.insert("operation".into(), json!(operation));
        p.insert("raise_exception".into(), json!(false));
        Ok(self.call(model, "check_access_rights", None, p).await?.as_bool().unwrap_or(false))
    }
}

fn method_label(service: &str, method: &str, args: &[Value]) -> String {
    if service == "object" {
        args.get(4).and_then(Value::as_str).unwrap_or(method).to_string()
    } else {
        format!("{service}.{method}")
    }
}

fn records(v: Value, model: &str, method: &str) -> Result<Vec<Map<String, Value>>, OdooError> {
    match v {
        Value::Array(items) => {
            Ok(items.into_iter().filter_map(|i| if let Value::Object(o) = i { Some(o) } else { None }).collect())
        }
        other => Err(OdooError::Protocol {
            what: format!("{model}.{method}"),
            detail: format!("expected a list of records, got {other}"),
        }),
    }
}

/// reqwest's errors print the URL; ours name it once, and never a query string.
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection refused or failed"
    } else {
        "request failed"
    };
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut last = String::new();
    while let Some(s) = src {
        last = s.to_string();
        src = s.source();
    }
    if last.is_empty() { kind.to_string() } else { format!("{kind}: {last}") }
}
