//! Outbound webhooks and notifications end to end, in process: the real HTTP server on a
//! random port, a real SQLite (or PostgreSQL) store, the outbound worker with a moved clock,
//! subscriber endpoints served by axum, signatures verified by the official
//! `standardwebhooks` library and mail received by a real SMTP server (`aiosmtpd`), both
//! installed from PyPI into a venv under `target/` by the tests themselves.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, TimeZone, Utc};
use dispatch_integrations::Vault;
use dispatch_server::AppState;
use dispatch_server::clock::{Clock, ManualClock};
use dispatch_store::Store;
use dispatch_store::testing::Location;
use serde_json::{Value, json};

use crate::notify::{NotificationsConfig, Notifier, SmtpConfig};
use crate::outbound::{OutboundWorker, WebhooksConfig};

// ---------------------------------------------------------------------------------------------
// Python tools from PyPI, installed once per run into target/test-tools/pyenv.

static PY: Mutex<Option<PathBuf>> = Mutex::new(None);

fn python() -> PathBuf {
    let mut g = PY.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = g.as_ref() {
        return p.clone();
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let venv = target.join("test-tools/pyenv");
    let py = venv.join("bin/python");
    let ready = py.exists()
        && std::process::Command::new(&py)
            .args(["-c", "import standardwebhooks, aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
    if !ready {
        let ok = std::process::Command::new("python3").args(["-m", "venv"]).arg(&venv).status().unwrap();
        assert!(ok.success(), "python3 -m venv failed (Debian: apt-get install python3-venv)");
        let ok = std::process::Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "standardwebhooks==1.1.0", "aiosmtpd==1.4.6"])
            .status()
            .unwrap();
        assert!(ok.success(), "pip install standardwebhooks aiosmtpd failed");
    }
    *g = Some(py.clone());
    py
}

/// Verifies each delivery with the official library; returns one bool per check.
fn standardwebhooks_verify(checks: &[(String, HeaderMap, Vec<u8>)]) -> Vec<bool> {
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
out = []
for c in json.load(sys.stdin):
    try:
        Webhook(c["secret"]).verify(c["body"].encode(), c["headers"])
        out.append(True)
    except Exception as e:
        print("verify failed:", type(e).__name__, e, file=sys.stderr)
        out.append(False)
print(json.dumps(out))
"#;
    let input: Vec<Value> = checks
        .iter()
        .map(|(secret, h, body)| {
            let headers: serde_json::Map<String, Value> = ["webhook-id", "webhook-timestamp", "webhook-signature"]
                .iter()
                .map(|k| (k.to_string(), json!(h.get(*k).and_then(|v| v.to_str().ok()).unwrap_or(""))))
                .collect();
            json!({"secret": secret, "headers": headers, "body": String::from_utf8_lossy(body)})
        })
        .collect();
    let mut child = std::process::Command::new(python())
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(serde_json::to_string(&input).unwrap().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

// ---------------------------------------------------------------------------------------------
// A subscriber: records every request, answers as told.

#[derive(Clone, Copy, Debug)]
enum Answer {
    Status(u16),
    /// Answer 200, but only after this long (a timeout for dispatchd).
    Slow(u64),
}

/// Requests received: headers and raw body.
type Got = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

#[derive(Clone)]
struct Receiver {
    url: String,
    got: Got,
    answer: Arc<Mutex<Answer>>,
}

impl Receiver {
    async fn start(answer: Answer) -> Receiver {
        let got: Got = Arc::default();
        let answer = Arc::new(Mutex::new(answer));
        let (g, a) = (got.clone(), answer.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let (g, a) = (g.clone(), a.clone());
                async move {
                    g.lock().unwrap().push((headers, body.to_vec()));
                    let answer = *a.lock().unwrap();
                    match answer {
                        Answer::Status(s) => StatusCode::from_u16(s).unwrap(),
                        Answer::Slow(ms) => {
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                            StatusCode::OK
                        }
                    }
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        Receiver { url, got, answer }
    }

    fn set(&self, a: Answer) {
        *self.answer.lock().unwrap() = a;
    }

    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    fn all(&self) -> Vec<(HeaderMap, Vec<u8>)> {
        self.got.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------------------------
// dispatchd in process.

struct Harness {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    url: String,
    token: String,
    worker: Arc<OutboundWorker>,
    http: reqwest::Client,
    state: Arc<AppState>,
}

impl Harness {
    async fn start(
        now: DateTime<Utc>,
        webhooks: WebhooksConfig,
        notifications: Option<NotificationsConfig>,
    ) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = Location::fresh(dir.path()).await.open().await;
        let clock = Arc::new(ManualClock::new(now));
        let warehouses = dispatch_core::Warehouses::new(crate::config::example_warehouses().unwrap()).unwrap();
        let mut state = AppState::new(store.clone(), warehouses, clock.clone());
        let vault = Arc::new(Vault::parse(&Vault::generate_entry(1)).unwrap());
        Arc::get_mut(&mut state).expect("fresh state").vault = Some(vault.clone());
        let token = dispatch_server::auth::create_token(store.as_ref(), "it", &[dispatch_core::Role::Admin], now)
            .await
            .unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let s = state.clone();
        tokio::spawn(async move { dispatch_server::serve(l, s, std::future::pending()).await });
        let notifier = notifications.map(|c| Arc::new(Notifier::new(c).unwrap()));
        let worker = OutboundWorker::new(store.clone(), clock.clone(), Some(vault), notifier, webhooks);
        Harness { _dir: dir, store, clock, url, token, worker, http: reqwest::Client::new(), state }
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r =
            self.http.post(format!("{}{path}", self.url)).bearer_auth(&self.token).json(&body).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        let r = self.http.get(format!("{}{path}", self.url)).bearer_auth(&self.token).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.json().await.unwrap()
    }

    /// Runs the worker until nothing is due at the current (moved) clock.
    async fn drain(&self) -> usize {
        let mut total = 0;
        for _ in 0..50 {
            let n = self.worker.run_due().await.unwrap();
            if n == 0 {
                return total;
            }
            total += n;
        }
        panic!("the outbound worker never ran dry");
    }

    async fn endpoint(&self, url: &str, types: &[&str]) -> (String, String) {
        let (s, b) = self.post("/api/v1/webhook-endpoints", json!({"url": url, "event_types": types})).await;
        assert_eq!(s, 201, "{b}");
        (b["id"].as_str().unwrap().to_string(), b["secret"].as_str().unwrap().to_string())
    }

    async fn order(&self, external_id: &str, customer: Value, allocated: u32) -> Value {
        let (s, b) = self.post("/api/v1/orders", order_body(external_id, customer, allocated)).await;
        assert!(s == 201 || s == 200, "{s} {b}");
        b
    }

    async fn command(&self, order_id: &str, cmd: dispatch_core::Command) {
        let now = self.clock.now();
        let ws = Arc::new(dispatch_core::Warehouses::new(crate::config::example_warehouses().unwrap()).unwrap());
        self.store
            .execute(dispatch_store::OrderWrite {
                target: dispatch_store::Target::Id(order_id.to_string()),
                meta: dispatch_store::WriteMeta { actor: "test".into(), roles: vec![], request_id: None, at: now },
                idempotency: None,
                decide: Box::new(move |cur| {
                    dispatch_core::decide(cur, cmd.clone(), &dispatch_core::Ctx::new(now, &ws))
                }),
            })
            .await
            .unwrap();
    }
}

fn order_body(external_id: &str, customer: Value, allocated: u32) -> Value {
    let promised = (Utc::now() + chrono::Duration::days(30)).date_naive();
    json!({"source": "odoo", "external_id": external_id, "warehouse": "AMS", "channel": "ecommerce",
        "customer": customer, "service_level": "standard", "promised_date": promised.to_string(),
        "ship_to": {"name": "Acme BV", "street": "Damrak 1", "city": "Amsterdam", "postcode": "1012 LG", "country": "NL"},
        "lines": [{"sku": "P-1", "qty": 4, "qty_allocated": allocated, "unit_value": 120.0, "weight_kg": 3.5}],
        "payment": {"terms": "net30", "status": "ok"}, "documents": [], "transport_mode": "parcel"})
}

fn acme() -> Value {
    json!({"id": "C-100", "name": "Acme BV", "tier": "gold", "credit_status": "ok"})
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap()
}

fn fast() -> WebhooksConfig {
    WebhooksConfig { timeout_ms: 300, ..WebhooksConfig::default() }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn deliveries_verify_with_the_standardwebhooks_library_also_during_rotation() {
    // The library checks the timestamp against the real time: run at the real time.
    let h = Harness::start(Utc::now(), fast(), None).await;
    let rx = Receiver::start(Answer::Status(204)).await;

    // Refused input writes nothing.
    let (s, b) = h.post("/api/v1/webhook-endpoints", json!({"url": "ftp://x", "event_types": ["order.shipped"]})).await;
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["errors"].as_array().unwrap().len(), 2, "{b}");
    assert_eq!(b["type"], "urn:dispatchd:problem:validation-failed");
    let (s, _) = h.post("/api/v1/webhook-endpoints", json!({"url": rx.url, "colour": "red"})).await;
    assert_eq!(s, 422);
    assert!(h.get("/api/v1/webhook-endpoints").await["items"].as_array().unwrap().is_empty());

    let (id, secret1) = h.endpoint(&rx.url, &["order.released", "order.held"]).await;
    assert!(secret1.starts_with("whsec_"));
    let listed = h.get("/api/v1/webhook-endpoints").await;
    assert!(!listed.to_string().contains(&secret1[6..]), "the secret is shown once only");
    let stored = h.store.webhook_endpoint(&id).await.unwrap().unwrap();
    assert!(!stored.secrets[0].sealed.contains(&secret1[6..]), "stored sealed, not in clear");

    let o = h.order("WH1/OUT/1", acme(), 4).await;
    h.drain().await;
    assert_eq!(rx.count(), 1);
    let (headers, body) = rx.all()[0].clone();
    let sent: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(sent["data"]["order"]["order_id"], o["id"]);
    assert!(matches!(sent["type"].as_str(), Some("order.released" | "order.held")), "{sent}");
    assert_eq!(headers["webhook-signature"].to_str().unwrap().split(' ').count(), 1);

    let (s, rotated) = h.post(&format!("/api/v1/webhook-endpoints/{id}/rotate-secret"), json!({})).await;
    assert_eq!(s, 200, "{rotated}");
    let secret2 = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(secret1, secret2);
    h.order("WH1/OUT/2", acme(), 0).await; // held: stock_short
    h.drain().await;
    assert_eq!(rx.count(), 2);
    let (h2, b2) = rx.all()[1].clone();
    assert_eq!(h2["webhook-signature"].to_str().unwrap().split(' ').count(), 2, "old and new secret sign");

    let mut tampered = b2.clone();
    tampered.extend_from_slice(b" ");
    let wrong = "whsec_".to_string() + &"A".repeat(43) + "=";
    let results = standardwebhooks_verify(&[
        (secret1.clone(), headers.clone(), body.clone()),
        (secret1.clone(), h2.clone(), b2.clone()),
        (secret2.clone(), h2.clone(), b2.clone()),
        (secret2.clone(), h2.clone(), tampered),
        (wrong, h2.clone(), b2.clone()),
    ]);
    assert_eq!(results, vec![true, true, true, false, false]);
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_on_schedule_then_dead_lettered_and_replayed() {
    let h = Harness::start(t0(), fast(), None).await;
    let rx = Receiver::start(Answer::Status(500)).await;
    let (id, _) = h.endpoint(&rx.url, &[]).await;
    h.order("WH1/OUT/9", acme(), 4).await;
    h.drain().await;
    assert_eq!(rx.count(), 1, "attempt 1 is immediate");
    // Nothing before the next step of the schedule; one attempt at each step.
    let steps = [5i64, 300, 1800, 7200, 18000, 36000, 36000];
    for (i, secs) in steps.iter().enumerate() {
        h.clock.advance(chrono::Duration::seconds(secs - 1));
        h.drain().await;
        assert_eq!(rx.count(), i + 1, "not before {secs}s");
        h.clock.advance(chrono::Duration::seconds(1));
        h.drain().await;
        assert_eq!(rx.count(), i + 2, "attempt {} after {secs}s", i + 2);
    }
    h.clock.advance(chrono::Duration::days(1));
    h.drain().await;
    assert_eq!(rx.count(), 8, "8 attempts, then a dead letter");
    let ids: std::collections::BTreeSet<String> =
        rx.all().iter().map(|(hd, _)| hd["webhook-id"].to_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 1, "one webhook-id on every attempt");

    let dead = h.get("/api/v1/dead-letters").await;
    let d = dead["items"].as_array().unwrap().iter().find(|d| d["kind"] == "deliver_webhook").expect("dead letter");
    assert!(d["last_error"].as_str().unwrap().contains("HTTP 500"), "{d}");
    let ep = h.get(&format!("/api/v1/webhook-endpoints/{id}")).await;
    assert_eq!(ep["status"], "active", "27 h of failures is not yet days");
    assert!(ep["failing_since"].is_string());

    // The subscriber is fixed; a manual replay delivers the same message.
    rx.set(Answer::Status(200));
    let (s, _) = h.post(&format!("/api/v1/dead-letters/{}/retry", d["id"]), json!({})).await;
    assert_eq!(s, 202);
    h.drain().await;
    assert_eq!(rx.count(), 9);
    assert_eq!(rx.all()[8].0["webhook-id"], rx.all()[0].0["webhook-id"]);
    let ep = h.get(&format!("/api/v1/webhook-endpoints/{id}")).await;
    assert!(ep["failing_since"].is_null() && ep["last_success_at"].is_string(), "{ep}");
}

#[tokio::test]
async fn gone_disables_at_once_and_days_of_timeouts_disable_with_an_alert() {
    let h = Harness::start(t0(), WebhooksConfig { disable_after_days: 5, ..fast() }, None).await;
    let gone = Receiver::start(Answer::Status(410)).await;
    let slow = Receiver::start(Answer::Slow(2_000)).await;
    let (gone_id, _) = h.endpoint(&gone.url, &[]).await;
    let (slow_id, _) = h.endpoint(&slow.url, &[]).await;
    let watcher = Receiver::start(Answer::Status(204)).await;
    h.endpoint(&watcher.url, &["alert.raised"]).await;

    h.order("WH1/OUT/20", acme(), 4).await;
    h.drain().await;
    assert_eq!((gone.count(), slow.count()), (1, 1));
    let ep = h.get(&format!("/api/v1/webhook-endpoints/{gone_id}")).await;
    assert_eq!(ep["status"], "disabled");
    assert!(ep["disabled_reason"].as_str().unwrap().contains("410"), "{ep}");
    let ep = h.get(&format!("/api/v1/webhook-endpoints/{slow_id}")).await;
    assert_eq!(ep["status"], "active");

    // Six days later the timed-out delivery is tried again, fails, and the endpoint has had
    // no success for more than five days: disabled.
    h.clock.advance(chrono::Duration::days(6));
    h.drain().await;
    assert_eq!(slow.count(), 2);
    let ep = h.get(&format!("/api/v1/webhook-endpoints/{slow_id}")).await;
    assert_eq!(ep["status"], "disabled", "{ep}");
    assert!(ep["disabled_reason"].as_str().unwrap().contains("5 days"), "{ep}");
    // The alert reaches the subscribers that are still active.
    let alert: Value = serde_json::from_slice(&watcher.all().last().unwrap().1).unwrap();
    assert_eq!(alert["type"], "alert.raised");
    assert!(alert["data"]["message"].as_str().unwrap().contains(&slow_id), "{alert}");

    // A disabled endpoint gets nothing new.
    h.order("WH1/OUT/21", acme(), 4).await;
    h.drain().await;
    assert_eq!((gone.count(), slow.count()), (1, 2));

    // Enabled again and fixed: its dead letter is replayed and delivered.
    slow.set(Answer::Status(204));
    let (s, _) = h.post(&format!("/api/v1/webhook-endpoints/{slow_id}/enable"), json!({})).await;
    assert_eq!(s, 200);
    let dead = h.get("/api/v1/dead-letters").await;
    let d = dead["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "deliver_webhook" && d["payload"]["endpoint_id"] == slow_id)
        .expect("dead letter of the slow endpoint")
        .clone();
    assert!(d["last_error"].as_str().unwrap().contains("no answer within"), "{d}");
    let (s, _) = h.post(&format!("/api/v1/dead-letters/{}/retry", d["id"]), json!({})).await;
    assert_eq!(s, 202);
    h.drain().await;
    assert_eq!(slow.count(), 3);
    assert_eq!(h.get(&format!("/api/v1/webhook-endpoints/{slow_id}")).await["status"], "active");
}

#[tokio::test]
async fn the_catalogue_is_in_the_openapi_webhooks() {
    let h = Harness::start(t0(), fast(), None).await;
    let doc: Value = h.http.get(format!("{}/api/openapi.json", h.url)).send().await.unwrap().json().await.unwrap();
    for t in dispatch_core::outbound::EventType::ALL {
        let op = &doc["webhooks"][t.code()]["post"];
        let schema = &op["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(schema["properties"]["type"]["enum"][0], t.code(), "{}", t.code());
        let r = schema["properties"]["data"]["$ref"].as_str().unwrap();
        let name = r.rsplit('/').next().unwrap();
        assert!(doc["components"]["schemas"][name].is_object(), "{name} is defined");
    }
    assert!(doc["paths"]["/api/v1/webhook-endpoints"]["post"].is_object());
}

// ---------------------------------------------------------------------------------------------
// Notifications against a real SMTP server.

struct Smtp {
    child: std::process::Child,
    maildir: PathBuf,
}

impl Smtp {
    fn start(port: u16, maildir: &Path) -> Smtp {
        let mut child = std::process::Command::new(python())
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Smtp { child, maildir: maildir.to_path_buf() };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("aiosmtpd did not start");
    }

    /// Every received mail, decoded by Python's email package: to, subject, language, body.
    fn mails(&self) -> Vec<Value> {
        let script = r#"
import json, mailbox, sys
out = []
for m in mailbox.Maildir(sys.argv[1], factory=None, create=False):
    from email import policy, message_from_bytes
    e = message_from_bytes(m.as_bytes(), policy=policy.default)
    out.append({"to": str(e["To"]), "subject": str(e["Subject"]), "language": str(e["Content-Language"]),
                "body": e.get_content()})
print(json.dumps(out))
"#;
        let out = std::process::Command::new(python()).args(["-c", script]).arg(&self.maildir).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn mail_config(port: u16) -> NotificationsConfig {
    NotificationsConfig {
        enabled: true,
        from: "Dispatch <dispatch@warehouse.example>".into(),
        internal_recipients: vec!["ops@warehouse.example".into()],
        smtp: Some(SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            tls: "none".into(),
            username: None,
            timeout_ms: 2_000,
        }),
        ..NotificationsConfig::default()
    }
}

fn tracking(tn: &str, id: &str, status: &str, at: DateTime<Utc>) -> dispatch_core::Command {
    dispatch_core::Command::RecordTracking {
        update: serde_json::from_value(json!({"carrier": "dhl", "event_id": id, "tracking_number": tn,
            "carrier_status": status, "status": status, "event_time": at}))
        .unwrap(),
    }
}

#[tokio::test]
async fn notices_reach_a_real_smtp_server_in_the_customers_language() {
    let port = free_port();
    let mail = tempfile::tempdir().unwrap();
    let maildir = mail.path().join("Maildir");
    let h = Harness::start(t0(), fast(), Some(mail_config(port))).await;

    // SMTP is down when the first notice is due: the order is booked all the same, the notice
    // is recorded as retrying with the error.
    let nl = json!({"id": "C-1", "name": "Bakkerij De Vries", "email": "inkoop@devries.example", "locale": "nl-NL"});
    let o = h.order("WH1/OUT/30", nl, 4).await;
    let id = o["id"].as_str().unwrap().to_string();
    h.command(
        &id,
        dispatch_core::Command::RecordBooking { carrier: "dhl".into(), tracking_number: "JD1".into(), service: None },
    )
    .await;
    h.drain().await;
    let order = h.get(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(order["state"], "booked", "a mail outage never blocks dispatch");
    let tl = h.get(&format!("/api/v1/orders/{id}/timeline")).await;
    let n = &tl["notifications"][0];
    assert_eq!((n["kind"].as_str(), n["status"].as_str()), (Some("dispatch_confirmation"), Some("retrying")), "{tl}");
    assert!(n["last_error"].as_str().unwrap().contains("SMTP"), "{n}");

    let smtp = Smtp::start(port, &maildir);
    h.clock.advance(chrono::Duration::seconds(5));
    h.drain().await;
    let tl = h.get(&format!("/api/v1/orders/{id}/timeline")).await;
    assert_eq!(tl["notifications"][0]["status"], "sent", "{tl}");
    assert_eq!(tl["notifications"][0]["attempts"], 2);

    // Departure and delivery: proof of dispatch and of delivery, in Dutch.
    let at = h.clock.now();
    h.command(&id, tracking("JD1", "e1", "picked_up", at)).await;
    h.command(&id, tracking("JD1", "e2", "delivered", at + chrono::Duration::hours(20))).await;
    h.drain().await;

    // A German customer held for stock: a delay notice; the hold flaps (released, held again)
    // within the window: still one notice.
    let de = json!({"id": "C-2", "name": "Müller GmbH", "email": "lager@mueller.example", "locale": "de"});
    let held = h.order("WH1/OUT/31", de.clone(), 0).await;
    assert_eq!(held["state"], "on_hold");
    h.drain().await;
    h.clock.advance(chrono::Duration::minutes(10));
    h.order("WH1/OUT/31", de.clone(), 4).await;
    h.drain().await;
    h.clock.advance(chrono::Duration::minutes(10));
    h.order("WH1/OUT/31", de, 0).await;
    h.drain().await;
    let held_id = held["id"].as_str().unwrap();
    let tl = h.get(&format!("/api/v1/orders/{held_id}/timeline")).await;
    let statuses: Vec<&str> = tl["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "delay_notice")
        .map(|n| n["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["sent", "suppressed"], "{tl}");

    // A customer who opted out gets nothing; the timeline says why.
    let out = json!({"id": "C-3", "name": "Quiet BV", "email": "no@quiet.example", "locale": "en", "notifications_opt_out": true});
    let q = h.order("WH1/OUT/32", out, 0).await;
    h.drain().await;
    let tl = h.get(&format!("/api/v1/orders/{}/timeline", q["id"].as_str().unwrap())).await;
    assert_eq!(tl["notifications"][0]["status"], "suppressed");
    assert!(tl["notifications"][0]["last_error"].as_str().unwrap().contains("opted out"));

    // An exception goes to the internal team, in the default language.
    let x = h.order("WH1/OUT/33", acme(), 4).await;
    assert_eq!(x["state"], "released");
    let x_id = x["id"].as_str().unwrap().to_string();
    h.command(&x_id, dispatch_core::Command::RaiseException { reason: "pallet damaged".into() }).await;
    h.drain().await;

    let mails = smtp.mails();
    let find = |to: &str, subject: &str| {
        mails
            .iter()
            .find(|m| m["to"] == to && m["subject"].as_str().unwrap().contains(subject))
            .unwrap_or_else(|| panic!("no mail to {to} about `{subject}` in {mails:#?}"))
    };
    let m = find("inkoop@devries.example", "is geboekt voor verzending");
    assert_eq!(m["language"], "nl");
    assert!(m["body"].as_str().unwrap().contains("Beste Bakkerij De Vries"), "{m}");
    assert!(m["body"].as_str().unwrap().contains("trackingnummer JD1"), "{m}");
    assert_eq!(find("inkoop@devries.example", "heeft ons magazijn verlaten")["language"], "nl");
    assert_eq!(find("inkoop@devries.example", "is afgeleverd")["language"], "nl");
    let m = find("lager@mueller.example", "verzögert sich");
    assert_eq!(m["language"], "de");
    assert!(m["body"].as_str().unwrap().contains("stock_unallocated"), "{m}");
    let m = find("ops@warehouse.example", "order.exception");
    assert!(m["body"].as_str().unwrap().contains("pallet damaged"), "{m}");
    assert_eq!(m["language"], "en");
    assert!(!mails.iter().any(|m| m["to"] == "no@quiet.example"), "opted out");
    let to_mueller = mails.iter().filter(|m| m["to"] == "lager@mueller.example").count();
    assert_eq!(to_mueller, 1, "one delay notice per window");
}

// ---------------------------------------------------------------------------------------------
// Scheduled monitors with a moved clock.

#[tokio::test]
async fn monitors_alert_on_stalled_and_aging_orders_once_a_day_and_retention_purges() {
    use crate::scheduler::ScheduledAction;
    let h = Harness::start(t0(), fast(), None).await;
    let rx = Receiver::start(Answer::Status(204)).await;
    h.endpoint(&rx.url, &["alert.raised"]).await;
    let alerts = |rx: &Receiver| -> Vec<Value> {
        rx.all().iter().map(|(_, b)| serde_json::from_slice::<Value>(b).unwrap()["data"].clone()).collect()
    };

    let released = h.order("WH1/OUT/40", acme(), 4).await;
    assert_eq!(released["state"], "released");
    let held = h.order("WH1/OUT/41", acme(), 0).await;
    assert_eq!(held["state"], "on_hold");
    let stalled = crate::monitors::StalledRecords { app: h.state.clone() };
    let aging = crate::monitors::QueueAging { app: h.state.clone() };
    assert_eq!(stalled.run().await.unwrap(), "0 not booked, 0 not departed");
    assert_eq!(aging.run().await.unwrap(), "no aged queues");

    // 31 minutes without a booking: stalled (threshold 30 in the default policy).
    h.clock.advance(chrono::Duration::minutes(31));
    assert_eq!(stalled.run().await.unwrap(), "1 not booked, 0 not departed");
    h.drain().await;
    let a = alerts(&rx);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["alert"], "stalled_not_booked");
    assert_eq!(a[0]["order_ids"], json!([released["id"]]));
    // The same stalled order on the same day: no second alert.
    h.clock.advance(chrono::Duration::minutes(5));
    stalled.run().await.unwrap();
    h.drain().await;
    assert_eq!(alerts(&rx).len(), 1);

    // Held for more than 4 hours: the queue-aging monitor.
    h.clock.advance(chrono::Duration::minutes(210));
    assert_eq!(aging.run().await.unwrap(), "aged: 1 on_hold");
    h.drain().await;
    let a = alerts(&rx);
    assert_eq!(a.len(), 2);
    assert_eq!(a[1]["alert"], "queue_aging_on_hold");
    assert_eq!(a[1]["order_ids"], json!([held["id"]]));

    // Booked, and the latest departure passes without a departure scan: past the grace, critical.
    let id = released["id"].as_str().unwrap().to_string();
    h.command(
        &id,
        dispatch_core::Command::RecordBooking { carrier: "dhl".into(), tracking_number: "T9".into(), service: None },
    )
    .await;
    let order = h.get(&format!("/api/v1/orders/{id}")).await;
    let departure: DateTime<Utc> = serde_json::from_value(order["latest_departure"].clone()).unwrap();
    h.clock.set(departure + chrono::Duration::minutes(29));
    assert_eq!(stalled.run().await.unwrap(), "0 not booked, 0 not departed");
    h.clock.set(departure + chrono::Duration::minutes(31));
    assert_eq!(stalled.run().await.unwrap(), "0 not booked, 1 not departed");
    h.drain().await;
    let a = alerts(&rx);
    assert_eq!(a.last().unwrap()["alert"], "stalled_not_departed");
    assert_eq!(a.last().unwrap()["severity"], "critical");

    // Retention: finished jobs older than 90 days go; the orders and their events stay.
    let done = |c: Vec<(String, String, i64)>| c.iter().filter(|(_, s, _)| s == "done").map(|(_, _, n)| n).sum::<i64>();
    assert!(done(h.store.job_counts().await.unwrap()) > 0);
    let retention = crate::monitors::Retention { app: h.state.clone() };
    assert_eq!(retention.run().await.unwrap(), "0 row(s) older than 90 days deleted");
    h.clock.advance(chrono::Duration::days(91));
    assert!(retention.run().await.unwrap() != "0 row(s) older than 90 days deleted");
    assert_eq!(done(h.store.job_counts().await.unwrap()), 0);
    assert!(!h.store.events(&id).await.unwrap().is_empty());
}
