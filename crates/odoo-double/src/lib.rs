//! A faithful Odoo test double (no Odoo server can be installed where dispatchd is tested).
//!
//! It speaks both external APIs the way Odoo does:
//! - JSON-RPC at `POST /jsonrpc` (`common.version`, `common.login`, `common.authenticate`,
//!   `object.execute`, `object.execute_kw`; Odoo 16–18), answering HTTP 200 with either
//!   `result` or Odoo's error envelope `error: {code: 200, message: "Odoo Server Error",
//!   data: {name, message, arguments, context, debug}}`; plus `/web/webclient/version_info`
//!   (what odoorpc calls first) and `GET /web/version`.
//! - JSON-2 at `POST /json/2/<model>/<method>` (Odoo 19+): `Authorization: bearer <api key>`,
//!   named parameters in the body, the method's result as the body on 200, and the error
//!   object `{name, message, arguments, context, debug}` with 401/403/404/422/500.
//!
//! Records carry the real field names of `stock.picking`, `sale.order`, `res.partner`,
//! `stock.move`, `mail.message` and `res.users` ([`models`]); domains are evaluated in Polish
//! notation ([`domain`]). `/admin/*` lets tests seed, change and delete records, take the
//! server down and up, lose answers and read the chatter.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub mod domain;
pub mod models;

use models::{Call, Db, Exception, Rights, User};

/// How the double starts.
#[derive(Debug, Clone)]
pub struct DoubleConfig {
    /// The database name clients must use.
    pub db: String,
    /// Major version reported by `common.version` (16, 17, 18, 19).
    pub major: u32,
}

impl Default for DoubleConfig {
    fn default() -> Self {
        DoubleConfig { db: "odoo".into(), major: 17 }
    }
}

/// Default users: `admin`/`admin` (every right) and the integration bot `dispatchd-bot`
/// with password `bot-password` and API key `bot-api-key`.
pub const BOT_LOGIN: &str = "dispatchd-bot";
pub const BOT_PASSWORD: &str = "bot-password";
pub const BOT_API_KEY: &str = "bot-api-key";

#[derive(Debug, Clone)]
enum Fault {
    /// Apply the next `remaining` calls of `method`, then answer 502 (the answer is lost).
    LoseAnswer { method: String, remaining: u32 },
    /// Go down after this many more RPC calls.
    DownAfter { calls: u32 },
}

struct Shared {
    cfg: DoubleConfig,
    db: Mutex<Db>,
    down: AtomicBool,
    faults: Mutex<Vec<Fault>>,
    /// The clock of `write_date`; the system time when unset.
    now: Mutex<Option<DateTime<Utc>>>,
    calls: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A handle on the double's state, for tests in the same process.
#[derive(Clone)]
pub struct Double {
    shared: Arc<Shared>,
}

impl Double {
    pub fn new(cfg: DoubleConfig) -> Double {
        let mut db = Db::default();
        let every: std::collections::HashMap<String, Rights> =
            models::MODELS.iter().map(|m| (m.name.to_string(), Rights::ALL)).collect();
        db.users.push(User {
            id: 2,
            login: "admin".into(),
            name: "Mitchell Admin".into(),
            password: Some("admin".into()),
            api_keys: vec![],
            rights: every.clone(),
        });
        db.users.push(User {
            id: 6,
            login: BOT_LOGIN.into(),
            name: "dispatchd bot".into(),
            password: Some(BOT_PASSWORD.into()),
            api_keys: vec![BOT_API_KEY.into()],
            rights: every,
        });
        // Users are records too (`res.users.read` is how clients learn who they are).
        let now = Utc::now();
        for (id, login, name) in [(2, "admin", "Mitchell Admin"), (6, BOT_LOGIN, "dispatchd bot")] {
            db.seed(
                "res.users",
                json!({"id": id, "login": login, "name": name}).as_object().cloned().unwrap_or_default(),
                now,
            );
        }
        Double {
            shared: Arc::new(Shared {
                cfg,
                db: Mutex::new(db),
                down: AtomicBool::new(false),
                faults: Mutex::new(vec![]),
                now: Mutex::new(None),
                calls: Mutex::new(vec![]),
            }),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        lock(&self.shared.now).unwrap_or_else(Utc::now)
    }

    /// Fixes the clock that stamps `write_date` (None: the system time).
    pub fn set_now(&self, now: Option<DateTime<Utc>>) {
        *lock(&self.shared.now) = now;
    }

    /// Adds (or replaces) a user.
    pub fn add_user(&self, user: User) {
        let mut db = lock(&self.shared.db);
        let vals = json!({"id": user.id, "login": user.login, "name": user.name});
        db.seed("res.users", vals.as_object().cloned().unwrap_or_default(), self.now());
        db.users.retain(|u| u.id != user.id);
        db.users.push(user);
    }

    /// Creates a record without access checks; `write_date` is the double's now unless given.
    pub fn seed(&self, model: &str, vals: Value) -> i64 {
        let now = self.now();
        lock(&self.shared.db).seed(model, vals.as_object().cloned().unwrap_or_default(), now)
    }

    /// Changes a record as an Odoo user would; `write_date` becomes now unless `vals` sets it
    /// (to simulate a transaction that started earlier and committed late). `false` when
    /// there is no such record.
    pub fn modify(&self, model: &str, id: i64, vals: Value) -> bool {
        let now = self.now();
        let mut db = lock(&self.shared.db);
        let Some(rec) = db.records.get_mut(model).and_then(|r| r.get_mut(&id)) else { return false };
        rec.insert("write_date".into(), json!(now.format("%Y-%m-%d %H:%M:%S").to_string()));
        if let Some(o) = vals.as_object() {
            for (k, v) in o {
                rec.insert(k.clone(), v.clone());
            }
        }
        true
    }

    pub fn delete(&self, model: &str, id: i64) -> bool {
        lock(&self.shared.db).records.get_mut(model).is_some_and(|r| r.remove(&id).is_some())
    }

    pub fn record(&self, model: &str, id: i64) -> Option<Map<String, Value>> {
        lock(&self.shared.db).records.get(model).and_then(|r| r.get(&id)).cloned()
    }

    /// Chatter messages posted on one document.
    pub fn messages(&self, model: &str, res_id: i64) -> Vec<Map<String, Value>> {
        lock(&self.shared.db)
            .records
            .get("mail.message")
            .map(|r| {
                r.values()
                    .filter(|m| {
                        m.get("model").and_then(Value::as_str) == Some(model)
                            && m.get("res_id").and_then(Value::as_i64) == Some(res_id)
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// The next `count` calls of `method` are applied but answered with 502.
    pub fn lose_answers(&self, method: &str, count: u32) {
        lock(&self.shared.faults).push(Fault::LoseAnswer { method: method.into(), remaining: count });
    }

    /// The double goes down after `calls` more RPC calls.
    pub fn down_after(&self, calls: u32) {
        lock(&self.shared.faults).push(Fault::DownAfter { calls });
    }

    /// `model.method` of every RPC call answered so far.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.shared.calls).clone()
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/jsonrpc", post(jsonrpc))
            .route("/web/webclient/version_info", post(version_info_route))
            .route("/web/version", get(web_version))
            .route("/json/2/{model}/{method}", post(json2))
            .route("/admin/records/{model}", post(admin_seed).get(admin_list))
            .route("/admin/records/{model}/{id}", axum::routing::patch(admin_modify).delete(admin_delete))
            .route("/admin/down", post(admin_down))
            .route("/admin/up", post(admin_up))
            .route("/admin/faults", post(admin_faults))
            .route("/admin/clock", post(admin_clock))
            .route("/admin/calls", get(admin_calls))
            .route("/admin/messages", get(admin_messages))
            .with_state(self.clone())
    }

    fn version_info(&self) -> Value {
        let m = self.shared.cfg.major;
        json!({
            "server_version": format!("{m}.0"),
            "server_version_info": [m, 0, 0, "final", 0, ""],
            "server_serie": format!("{m}.0"),
            "protocol_version": 1,
        })
    }

    /// Is the double reachable for this call? Applies `DownAfter` faults.
    fn gate(&self) -> bool {
        let mut faults = lock(&self.shared.faults);
        let mut trip = false;
        faults.retain_mut(|f| match f {
            Fault::DownAfter { calls: 0 } => {
                trip = true;
                false
            }
            Fault::DownAfter { calls } => {
                *calls -= 1;
                true
            }
            Fault::LoseAnswer { .. } => true,
        });
        if trip {
            self.shared.down.store(true, Ordering::SeqCst);
        }
        !self.shared.down.load(Ordering::SeqCst)
    }

    fn answer_lost(&self, method: &str) -> bool {
        let mut faults = lock(&self.shared.faults);
        let mut lost = false;
        for f in faults.iter_mut() {
            if let Fault::LoseAnswer { method: m, remaining } = f
                && m == method
                && *remaining > 0
            {
                *remaining -= 1;
                lost = true;
                break;
            }
        }
        faults.retain(|f| !matches!(f, Fault::LoseAnswer { remaining: 0, .. }));
        lost
    }

    fn run(
        &self,
        uid: i64,
        model: &str,
        method: &str,
        ids: Option<Vec<i64>>,
        params: Map<String, Value>,
    ) -> Result<Value, Exception> {
        lock(&self.shared.calls).push(format!("{model}.{method}"));
        let now = self.now();
        lock(&self.shared.db).call(Call { uid, model, method, ids, params, now })
    }

    fn auth_password(&self, db: &str, login_or_uid: Result<&str, i64>, password: &str) -> Result<i64, Exception> {
        if db != self.shared.cfg.db {
            return Err(Exception::new(
                "psycopg2.OperationalError",
                format!("connection to server failed: FATAL:  database \"{db}\" does not exist"),
            ));
        }
        let db = lock(&self.shared.db);
        let user = db.users.iter().find(|u| match login_or_uid {
            Ok(login) => u.login == login,
            Err(uid) => u.id == uid,
        });
        // An API key is accepted wherever a password is (Odoo 14+ for RPC).
        match user {
            Some(u) if u.password.as_deref() == Some(password) && !password.is_empty() => Ok(u.id),
            Some(u) if u.api_keys.iter().any(|k| k == password) => Ok(u.id),
            _ => Err(Exception::denied()),
        }
    }
}

/// A running double on a TCP port.
pub struct Running {
    pub double: Double,
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn stop(self) {
        self.task.abort();
    }
}

pub async fn start(cfg: DoubleConfig, listener: tokio::net::TcpListener) -> std::io::Result<Running> {
    let double = Double::new(cfg);
    let addr = listener.local_addr()?;
    let app = double.router();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Running { double, addr, task })
}

fn unavailable() -> Response {
    // What a reverse proxy in front of a stopped Odoo answers.
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [("content-type", "text/html")],
        "<html><body><h1>503 Service Unavailable</h1></body></html>",
    )
        .into_response()
}

fn bad_gateway() -> Response {
    (StatusCode::BAD_GATEWAY, [("content-type", "text/html")], "<html><body><h1>502 Bad Gateway</h1></body></html>")
        .into_response()
}

fn debug_of(e: &Exception) -> String {
    format!(
        "Traceback (most recent call last):\n  File \"/opt/odoo/odoo/http.py\", line 1787, in _serve_db\n    return service_model.retrying(self._serve_ir_http, self.env)\n{}: {}\n",
        e.name, e.message
    )
}

fn rpc_error(id: &Value, e: &Exception) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": 200,
            "message": "Odoo Server Error",
            "data": {
                "name": e.name,
                "debug": debug_of(e),
                "message": e.message,
                "arguments": [e.message],
                "context": {},
            },
        },
    })
}

fn rpc_result(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn as_ids(v: &Value) -> Option<Vec<i64>> {
    match v {
        Value::Number(n) => n.as_i64().map(|i| vec![i]),
        Value::Array(a) => a.iter().map(Value::as_i64).collect(),
        _ => None,
    }
}

/// A call's record ids (for record methods) and named parameters.
type Bound = (Option<Vec<i64>>, Map<String, Value>);

/// Positional arguments and keyword arguments to (ids, named params), by Odoo's signatures.
fn bind(method: &str, args: &[Value], kwargs: &Map<String, Value>) -> Result<Bound, Exception> {
    let (record, names) = models::signature(method);
    let mut params = Map::new();
    let mut rest = args;
    let ids = if record {
        let Some((first, tail)) = args.split_first() else {
            return Err(Exception::new("builtins.TypeError", format!("{method}() missing the record ids")));
        };
        rest = tail;
        Some(as_ids(first).ok_or_else(|| Exception::value(format!("Invalid ids {first}")))?)
    } else {
        None
    };
    if rest.len() > names.len() && method != "message_post" {
        return Err(Exception::new(
            "builtins.TypeError",
            format!("{method}() takes {} positional arguments but {} were given", names.len() + 1, rest.len() + 1),
        ));
    }
    for (n, v) in names.iter().zip(rest) {
        params.insert((*n).to_string(), v.clone());
    }
    for (k, v) in kwargs {
        if k != "context" {
            params.insert(k.clone(), v.clone());
        }
    }
    Ok((ids, params))
}

async fn jsonrpc(State(d): State<Double>, body: Bytes) -> Response {
    if !d.gate() {
        return unavailable();
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        let e = Exception::new("werkzeug.exceptions.BadRequest", "400 Bad Request: Invalid JSON data");
        return Json(rpc_error(&Value::Null, &e)).into_response();
    };
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let params = req.get("params").cloned().unwrap_or(Value::Null);
    let service = params.get("service").and_then(Value::as_str).unwrap_or("");
    let method = params.get("method").and_then(Value::as_str).unwrap_or("");
    let args: Vec<Value> = params.get("args").and_then(Value::as_array).cloned().unwrap_or_default();
    let s = |i: usize| args.get(i).and_then(Value::as_str).unwrap_or("");
    let outcome: Result<Value, Exception> = match (service, method) {
        ("common", "version") => Ok(d.version_info()),
        ("common", "login" | "authenticate") => match d.auth_password(s(0), Ok(s(1)), s(2)) {
            Ok(uid) => Ok(json!(uid)),
            Err(e) if e.name == "odoo.exceptions.AccessDenied" => Ok(Value::Bool(false)),
            Err(e) => Err(e),
        },
        ("object", "execute" | "execute_kw") => {
            let uid = args.get(1).and_then(Value::as_i64).unwrap_or(0);
            match d.auth_password(s(0), Err(uid), s(2)) {
                Err(e) => Err(e),
                Ok(uid) => {
                    let model = s(3).to_string();
                    let m = s(4).to_string();
                    let (pos, kw): (Vec<Value>, Map<String, Value>) = if method == "execute_kw" {
                        (
                            args.get(5).and_then(Value::as_array).cloned().unwrap_or_default(),
                            args.get(6).and_then(Value::as_object).cloned().unwrap_or_default(),
                        )
                    } else {
                        (args.iter().skip(5).cloned().collect(), Map::new())
                    };
                    bind(&m, &pos, &kw).and_then(|(ids, p)| {
                        let r = d.run(uid, &model, &m, ids, p);
                        if r.is_ok() && d.answer_lost(&m) { Err(Exception::new("lost", "")) } else { r }
                    })
                }
            }
        }
        _ => Err(Exception::new("builtins.NameError", format!("service {service:?} or method {method:?} not found"))),
    };
    match outcome {
        Ok(r) => Json(rpc_result(&id, r)).into_response(),
        Err(e) if e.name == "lost" => bad_gateway(),
        Err(e) => Json(rpc_error(&id, &e)).into_response(),
    }
}

async fn version_info_route(State(d): State<Double>, body: Bytes) -> Response {
    if !d.gate() {
        return unavailable();
    }
    let id = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.get("id").cloned()).unwrap_or(Value::Null);
    Json(rpc_result(&id, d.version_info())).into_response()
}

async fn web_version(State(d): State<Double>) -> Response {
    if !d.gate() {
        return unavailable();
    }
    let v = d.version_info();
    Json(json!({"version_info": v["server_version_info"], "version": v["server_version"]})).into_response()
}

fn json2_error(status: StatusCode, e: &Exception) -> Response {
    (status, Json(json!({"name": e.name, "message": e.message, "arguments": [e.message, status.as_u16()], "context": {}, "debug": debug_of(e)})))
        .into_response()
}

async fn json2(
    State(d): State<Double>,
    Path((model, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !d.gate() {
        return unavailable();
    }
    let key = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| {
        v.split_once(' ').filter(|(s, _)| s.eq_ignore_ascii_case("bearer")).map(|(_, k)| k.trim().to_string())
    });
    let uid = {
        let db = lock(&d.shared.db);
        key.and_then(|k| db.users.iter().find(|u| u.api_keys.contains(&k)).map(|u| u.id))
    };
    let Some(uid) = uid else {
        return json2_error(
            StatusCode::UNAUTHORIZED,
            &Exception::new("werkzeug.exceptions.Unauthorized", "Invalid apikey"),
        );
    };
    if let Some(db) = headers.get("x-odoo-database").and_then(|v| v.to_str().ok())
        && db != d.shared.cfg.db
    {
        return json2_error(
            StatusCode::NOT_FOUND,
            &Exception::new("werkzeug.exceptions.NotFound", format!("database {db:?} not found")),
        );
    }
    let Ok(Value::Object(mut params)) = serde_json::from_slice::<Value>(&body) else {
        return json2_error(
            StatusCode::BAD_REQUEST,
            &Exception::new("werkzeug.exceptions.BadRequest", "the body must be a JSON object"),
        );
    };
    if models::model(&model).is_none() {
        return json2_error(
            StatusCode::NOT_FOUND,
            &Exception::new("werkzeug.exceptions.NotFound", format!("the model {model:?} does not exist")),
        );
    }
    let ids = params.remove("ids").as_ref().and_then(as_ids);
    params.remove("context");
    let (record, names) = models::signature(&method);
    if method != "message_post"
        && let Some(k) = params.keys().find(|k| !names.contains(&k.as_str()))
    {
        return json2_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &Exception::new(
                "builtins.TypeError",
                format!("{model}.{method}() got an unexpected keyword argument '{k}'"),
            ),
        );
    }
    let ids = if record { Some(ids.unwrap_or_default()) } else { ids };
    match d.run(uid, &model, &method, ids, params) {
        Ok(_) if d.answer_lost(&method) => bad_gateway(),
        Ok(v) => Json(v).into_response(),
        Err(e) => {
            let status = match e.name {
                "odoo.exceptions.AccessError" | "odoo.exceptions.AccessDenied" => StatusCode::FORBIDDEN,
                "odoo.exceptions.MissingError" => StatusCode::NOT_FOUND,
                "builtins.AttributeError" => StatusCode::NOT_FOUND,
                "odoo.exceptions.ValidationError"
                | "odoo.exceptions.UserError"
                | "builtins.ValueError"
                | "builtins.TypeError" => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            json2_error(status, &e)
        }
    }
}

async fn admin_seed(State(d): State<Double>, Path(model): Path<String>, Json(vals): Json<Value>) -> Response {
    if models::model(&model).is_none() {
        return (StatusCode::NOT_FOUND, format!("unknown model {model}")).into_response();
    }
    Json(json!({"id": d.seed(&model, vals)})).into_response()
}

async fn admin_list(State(d): State<Double>, Path(model): Path<String>) -> Response {
    let db = lock(&d.shared.db);
    let recs: Vec<Value> =
        db.records.get(&model).map(|r| r.values().cloned().map(Value::Object).collect()).unwrap_or_default();
    Json(recs).into_response()
}

async fn admin_modify(
    State(d): State<Double>,
    Path((model, id)): Path<(String, i64)>,
    Json(vals): Json<Value>,
) -> StatusCode {
    if d.modify(&model, id, vals) { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
}

async fn admin_delete(State(d): State<Double>, Path((model, id)): Path<(String, i64)>) -> StatusCode {
    if d.delete(&model, id) { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
}

async fn admin_down(State(d): State<Double>) -> StatusCode {
    d.set_down(true);
    StatusCode::NO_CONTENT
}

async fn admin_up(State(d): State<Double>) -> StatusCode {
    d.set_down(false);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct FaultBody {
    #[serde(default)]
    lose_answer: Option<LoseBody>,
    #[serde(default)]
    down_after_calls: Option<u32>,
}

#[derive(Deserialize)]
struct LoseBody {
    method: String,
    count: u32,
}

async fn admin_faults(State(d): State<Double>, Json(f): Json<FaultBody>) -> StatusCode {
    if let Some(l) = f.lose_answer {
        d.lose_answers(&l.method, l.count);
    }
    if let Some(n) = f.down_after_calls {
        d.down_after(n);
    }
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct ClockBody {
    now: Option<DateTime<Utc>>,
}

async fn admin_clock(State(d): State<Double>, Json(c): Json<ClockBody>) -> StatusCode {
    d.set_now(c.now);
    StatusCode::NO_CONTENT
}

async fn admin_calls(State(d): State<Double>) -> Json<Vec<String>> {
    Json(d.calls())
}

#[derive(Deserialize)]
struct MessagesQuery {
    model: String,
    res_id: i64,
}

async fn admin_messages(State(d): State<Double>, Query(q): Query<MessagesQuery>) -> Json<Vec<Map<String, Value>>> {
    Json(d.messages(&q.model, q.res_id))
}
