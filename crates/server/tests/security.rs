//! Security over HTTP: users and their tokens (a disabled user or a removed role takes effect
//! on the next write), the audit API (filters, pages, JSONL/CSV, request ids, actor and roles),
//! rate limits, header limits, and the console sign-in (CSRF, uniform failures, lockout,
//! cookie attributes, sign-out).

mod common;

use common::*;
use dispatch_core::Role;
use dispatch_server::identity;
use dispatch_server::limits::SecurityConfig;
use serde_json::Value;

/// `application/x-www-form-urlencoded` body of these fields.
fn form_body(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    fields.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

async fn audit(app: &TestApp, query: &str) -> Value {
    let r = app.get(&format!("/api/v1/audit{query}"), app.token(Role::Auditor)).await;
    assert_eq!(r.status(), 200, "audit{query}");
    r.json().await.unwrap()
}

#[tokio::test]
async fn a_removed_role_or_a_disabled_user_takes_effect_on_the_next_write() {
    let app = TestApp::spawn().await;
    let s = app.store.as_ref();
    identity::create_user(s, "cli:test", "ana", &[Role::Dispatcher, Role::Supervisor], None, start_time())
        .await
        .unwrap();
    let token = identity::create_token(
        s,
        "cli:test",
        "ana-laptop",
        Some("ana"),
        &[Role::Dispatcher, Role::Supervisor],
        start_time(),
        None,
    )
    .await
    .unwrap();
    // A token cannot hold more than its user.
    let too_much = identity::create_token(s, "cli:test", "x", Some("ana"), &[Role::Admin], start_time(), None).await;
    assert!(matches!(too_much, Err(identity::IdentityError::RolesExceedUser { .. })), "{too_much:?}");

    let retry = || app.client.post(format!("{}/api/v1/dead-letters/999/retry", app.url)).bearer_auth(&token).send();
    // Supervisor may reprocess (the dead letter does not exist: 404, not 403).
    assert_eq!(retry().await.unwrap().status(), 404);
    let r = app.post("/api/v1/orders", &order("ANA/1"), &token).await;
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();

    identity::set_roles(s, "cli:test", "ana", &[Role::Dispatcher]).await.unwrap();
    let (status, body) = problem(retry().await.unwrap()).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(app.post("/api/v1/orders", &order("ANA/2"), &token).await.status(), 201);

    identity::set_disabled(s, "cli:test", "ana", true, start_time()).await.unwrap();
    let (status, _) = problem(app.post("/api/v1/orders", &order("ANA/3"), &token).await).await;
    assert_eq!(status, 401);
    identity::set_disabled(s, "cli:test", "ana", false, start_time()).await.unwrap();
    assert_eq!(app.post("/api/v1/orders", &order("ANA/3"), &token).await.status(), 201);

    // The user's writes are recorded as the user, with the roles in force at the time.
    let entries = audit(&app, &format!("?subject=order:{}@*", created["id"].as_str().unwrap())).await;
    let first = &entries["items"][0];
    assert_eq!(first["actor"], "user:ana");
    assert_eq!(first["roles"], serde_json::json!(["dispatcher", "supervisor"]));
    let later = audit(&app, "?action=order.received&actor=user:ana").await;
    assert_eq!(later["items"].as_array().unwrap().len(), 3);
    assert_eq!(later["items"][2]["roles"], serde_json::json!(["dispatcher"]));
    // The identity changes themselves are in the log, with before and after.
    let roles = audit(&app, "?action=user.roles_changed").await;
    assert_eq!(roles["items"][0]["before"], r#"{"roles":["dispatcher","supervisor"]}"#);
    assert_eq!(roles["items"][0]["after"], r#"{"roles":["dispatcher"]}"#);

    identity::revoke_token(s, "cli:test", token.split('_').nth(1).unwrap(), start_time()).await.unwrap();
    assert_eq!(app.post("/api/v1/orders", &order("ANA/4"), &token).await.status(), 401);
}

#[tokio::test]
async fn the_audit_log_records_request_ids_and_serves_pages_and_exports() {
    let app = TestApp::spawn().await;
    let r = app
        .client
        .post(format!("{}/api/v1/orders", app.url))
        .bearer_auth(app.token(Role::Dispatcher))
        .header("x-request-id", "req-audit-1")
        .json(&order("AUD/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-request-id"], "req-audit-1");
    // Without one, the server makes one, answers with it and records it.
    let r = app.post("/api/v1/orders", &order("AUD/2"), app.token(Role::Dispatcher)).await;
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(!generated.is_empty());
    let put = app
        .client
        .put(format!("{}/api/v1/policy", app.url))
        .bearer_auth(app.admin())
        .header("content-type", "application/toml")
        .body(dispatch_policy::DEFAULT_POLICY)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);

    let mine = audit(&app, "?request_id=req-audit-1").await;
    let items = mine["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{mine}");
    assert_eq!(items[0]["action"], "order.received");
    assert_eq!(items[0]["actor"], "token:test-dispatcher");
    assert_eq!(items[0]["roles"], serde_json::json!(["dispatcher"]));
    assert_eq!(items[1]["prev_hash"], items[0]["hash"]);
    assert_eq!(audit(&app, &format!("?request_id={generated}")).await["items"].as_array().unwrap().len(), 2);
    let p = audit(&app, "?action=policy.changed").await;
    assert_eq!(p["items"][0]["actor"], "token:test-admin");
    assert_eq!(p["items"][0]["subject"], "policy");
    assert!(p["items"][0]["before"].as_str().unwrap().contains("\"hash\""));

    // Keyset pages cover everything once.
    let page1 = audit(&app, "?limit=3").await;
    let cursor = page1["next_cursor"].as_str().unwrap().to_string();
    let page2 = audit(&app, &format!("?limit=3&cursor={cursor}")).await;
    assert_eq!(page1["items"][2]["seq"].as_i64().unwrap() + 1, page2["items"][0]["seq"].as_i64().unwrap());

    let all = audit(&app, "?limit=1000").await["items"].as_array().unwrap().len();
    let jsonl = app.get("/api/v1/audit?format=jsonl", app.token(Role::Auditor)).await;
    assert_eq!(jsonl.headers()["content-type"], "application/jsonl");
    let text = jsonl.text().await.unwrap();
    assert_eq!(text.lines().count(), all);
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["seq"], 1);
    let csv = app.get("/api/v1/audit?format=csv&action=order.received", app.token(Role::Admin)).await;
    assert!(csv.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let csv = csv.text().await.unwrap();
    assert!(csv.starts_with("seq,at,actor,roles,request_id,action,subject,"));
    assert_eq!(csv.lines().count(), 1 + 2);

    // Only auditors and admins read it; bad filters are precise 400s.
    assert_eq!(app.get("/api/v1/audit", app.token(Role::Dispatcher)).await.status(), 403);
    let (status, body) = problem(app.get("/api/v1/audit?limit=0", app.admin()).await).await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["field"], "limit");
    let (status, body) = problem(app.get("/api/v1/audit?actr=x", app.admin()).await).await;
    assert_eq!((status, body["errors"][0]["field"].as_str()), (400, Some("actr")));
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let security = SecurityConfig { per_token_rps: 0.5, per_token_burst: 2.0, ..Default::default() };
    let app = TestApp::spawn_with(dispatch_integrations::Carriers::empty(), security).await;
    let t = app.token(Role::Dispatcher);
    for _ in 0..2 {
        assert_eq!(app.get("/api/v1/orders", t).await.status(), 200);
    }
    let r = app.get("/api/v1/orders", t).await;
    assert_eq!(r.headers()["retry-after"], "2");
    let (status, body) = problem(r).await;
    assert_eq!(status, 429, "{body}");
    // Another token has its own budget.
    assert_eq!(app.get("/api/v1/orders", app.token(Role::Auditor)).await.status(), 200);

    let security = SecurityConfig { per_ip_rps: 0.1, per_ip_burst: 3.0, ..Default::default() };
    let app = TestApp::spawn_with(dispatch_integrations::Carriers::empty(), security).await;
    for _ in 0..3 {
        // Without a token: 401, but it still counts against the address.
        assert_eq!(app.client.get(format!("{}/api/v1/orders", app.url)).send().await.unwrap().status(), 401);
    }
    let r = app.client.post(format!("{}/webhooks/carriers/dhl", app.url)).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "10");
    // Probes are not limited.
    assert_eq!(app.client.get(format!("{}/healthz", app.url)).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let app = TestApp::spawn().await;
    let r = app
        .client
        .get(format!("{}/api/v1/orders", app.url))
        .bearer_auth(app.admin())
        .header("x-filler", "a".repeat(20_000))
        .send()
        .await
        .unwrap();
    let (status, _) = problem(r).await;
    assert_eq!(status, 431);
}

/// The value of `name` among a response's `Set-Cookie` headers, and the whole header.
fn set_cookie(r: &reqwest::Response, name: &str) -> Option<(String, String)> {
    r.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(|h| {
        let (kv, _) = h.split_once(';').unwrap_or((h, ""));
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| (v.to_string(), h.to_string()))
    })
}

fn hidden_csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_string()
}

struct Form {
    csrf: String,
}

async fn login_form(app: &TestApp) -> Form {
    let r = app.client.get(format!("{}/console/login", app.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (cookie, header) = set_cookie(&r, "dsp_csrf").unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(header.contains(attr), "{header}");
    }
    let html = r.text().await.unwrap();
    assert_eq!(hidden_csrf(&html), cookie);
    Form { csrf: cookie }
}

async fn sign_in(app: &TestApp, f: &Form, user: &str, password: &str, field_csrf: &str) -> reqwest::Response {
    app.client
        .post(format!("{}/console/login", app.url))
        .header("cookie", format!("dsp_csrf={}", f.csrf))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("csrf", field_csrf), ("username", user), ("password", password)]))
        .send()
        .await
        .unwrap()
}

const PASSWORD: &str = "correct horse battery staple";

#[tokio::test]
async fn console_sign_in_checks_csrf_answers_failures_alike_and_locks_out() {
    let security = SecurityConfig { login_failures_before_lockout: 2, ..Default::default() };
    let app = TestApp::spawn_with(dispatch_integrations::Carriers::empty(), security).await;
    identity::create_user(app.store.as_ref(), "cli:test", "ana", &[Role::Dispatcher], Some(PASSWORD), start_time())
        .await
        .unwrap();
    let f = login_form(&app).await;

    // CSRF: a missing or different token is refused before any password is looked at.
    assert_eq!(sign_in(&app, &f, "ana", PASSWORD, "").await.status(), 403);
    assert_eq!(sign_in(&app, &f, "ana", PASSWORD, &"0".repeat(64)).await.status(), 403);
    let no_cookie = app
        .client
        .post(format!("{}/console/login", app.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("csrf", f.csrf.as_str()), ("username", "ana"), ("password", PASSWORD)]))
        .send()
        .await
        .unwrap();
    assert_eq!(no_cookie.status(), 403);

    // Unknown user and wrong password: the same status and the same page.
    let strip = |html: String| html.replace(&hidden_csrf(&html), "");
    let wrong = sign_in(&app, &f, "ana", "wrong password!!", &f.csrf).await;
    assert_eq!(wrong.status(), 401);
    let wrong = strip(wrong.text().await.unwrap());
    let unknown = sign_in(&app, &f, "nobody", "wrong password!!", &f.csrf).await;
    assert_eq!(unknown.status(), 401);
    assert_eq!(strip(unknown.text().await.unwrap()), wrong);
    assert!(wrong.contains("unknown user or wrong password"));

    // A second failure for `ana` locks her out: even the right password is refused for now.
    assert_eq!(sign_in(&app, &f, "ana", "wrong again!!!!", &f.csrf).await.status(), 401);
    let locked = sign_in(&app, &f, "ana", PASSWORD, &f.csrf).await;
    assert_eq!(locked.status(), 429);
    assert!(set_cookie(&locked, "dsp_session").is_none());
    // A name that does not exist locks out the same way (a lockout reveals nothing).
    for _ in 0..2 {
        sign_in(&app, &f, "nobody", "x-wrong-password", &f.csrf).await;
    }
    let ghost = sign_in(&app, &f, "nobody", "x-wrong-password", &f.csrf).await;
    assert_eq!(ghost.status(), 429);
    let locked_audit = app
        .store
        .audit_entries(&dispatch_store::AuditQuery {
            action: Some("console.locked_out".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(locked_audit.len(), 2);
}

#[tokio::test]
async fn console_session_cookie_and_sign_out() {
    let app = TestApp::spawn().await;
    identity::create_user(app.store.as_ref(), "cli:test", "ana", &[Role::Dispatcher], Some(PASSWORD), start_time())
        .await
        .unwrap();
    let f = login_form(&app).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = client
        .post(format!("{}/console/login", app.url))
        .header("cookie", format!("dsp_csrf={}", f.csrf))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("csrf", f.csrf.as_str()), ("username", "Ana"), ("password", PASSWORD)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let (session, header) = set_cookie(&r, "dsp_session").unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/", "Max-Age="] {
        assert!(header.contains(attr), "{header}");
    }
    // Only a hash of the session id is stored.
    let page = client
        .get(format!("{}/console/login", app.url))
        .header("cookie", format!("dsp_session={session}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Signed in as <strong>ana</strong>"), "{page}");
    let session_csrf = hidden_csrf(&page);
    // The session reads the API (GET) but cannot write through it.
    let with_cookie = |m: reqwest::Method, path: &str| {
        client.request(m, format!("{}{path}", app.url)).header("cookie", format!("dsp_session={session}"))
    };
    assert_eq!(with_cookie(reqwest::Method::GET, "/api/v1/orders").send().await.unwrap().status(), 200);
    assert_eq!(with_cookie(reqwest::Method::GET, "/api/v1/audit").send().await.unwrap().status(), 403);
    let post = with_cookie(reqwest::Method::POST, "/api/v1/orders").json(&order("S/1")).send().await.unwrap();
    assert_eq!(post.status(), 401);

    let logout = |csrf: String| {
        client
            .post(format!("{}/console/logout", app.url))
            .header("cookie", format!("dsp_session={session}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&[("csrf", csrf.as_str())]))
            .send()
    };
    // The pre-sign-in token is not the session's: refused.
    assert_eq!(logout(f.csrf.clone()).await.unwrap().status(), 403);
    assert_eq!(logout(session_csrf.clone()).await.unwrap().status(), 303);
    let after = client
        .get(format!("{}/console/login", app.url))
        .header("cookie", format!("dsp_session={session}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(after.contains("<h1>Sign in</h1>"), "{after}");
    assert_eq!(with_cookie(reqwest::Method::GET, "/api/v1/orders").send().await.unwrap().status(), 401);
    let actions: Vec<String> = app
        .store
        .audit_entries(&dispatch_store::AuditQuery { actor: Some("user:ana".into()), limit: 10, ..Default::default() })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.draft.action)
        .collect();
    assert_eq!(actions, ["console.signed_in", "console.signed_out"]);
}

#[tokio::test]
async fn a_misspelt_replay_parameter_is_refused_not_ignored() {
    let app = TestApp::spawn().await;
    let r = app
        .client
        .post(format!("{}/api/v1/policy/replay?sinse=2026-11-01", app.url))
        .bearer_auth(app.admin())
        .header("content-type", "application/toml")
        .body(dispatch_policy::DEFAULT_POLICY)
        .send()
        .await
        .unwrap();
    let (status, body) = problem(r).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("sinse"), "{body}");
}
