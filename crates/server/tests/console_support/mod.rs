//! Console sessions for tests: users with passwords signed in through the real form.

#![allow(dead_code)]

use chrono::Duration;
use dispatch_core::Role;
use dispatch_server::identity;
use serde_json::{Value, json};

use crate::common::{TestApp, order, start_time};

pub const PASSWORD: &str = "correct horse battery staple";

/// A signed-in console user: the session cookie and the session's CSRF token.
pub struct Session {
    pub name: String,
    pub cookie: String,
    pub csrf: String,
    client: reqwest::Client,
    url: String,
}

fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(|h| {
        let (kv, _) = h.split_once(';').unwrap_or((h, ""));
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

pub fn hidden_csrf(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().map(str::to_string)
}

pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Creates `name` with `roles` and a password (as `dispatchd user create` does).
pub async fn user(app: &TestApp, name: &str, roles: &[Role]) {
    identity::create_user(app.store.as_ref(), "cli:test", name, roles, Some(PASSWORD), start_time()).await.unwrap();
}

/// Creates the user and signs in through `GET/POST /console/login`.
pub async fn sign_in(app: &TestApp, name: &str, roles: &[Role]) -> Session {
    user(app, name, roles).await;
    let client = no_redirects();
    let r = client.get(format!("{}/console/login", app.url)).send().await.unwrap();
    let pre = set_cookie(&r, "dsp_csrf").expect("csrf cookie");
    let body =
        serde_urlencoded::to_string([("csrf", pre.as_str()), ("username", name), ("password", PASSWORD)]).unwrap();
    let r = client
        .post(format!("{}/console/login", app.url))
        .header("cookie", format!("dsp_csrf={pre}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "sign-in of {name}");
    assert_eq!(r.headers()["location"], "/console");
    let cookie = set_cookie(&r, "dsp_session").expect("session cookie");
    let mut s = Session { name: name.into(), cookie, csrf: String::new(), client, url: app.url.clone() };
    let (status, html) = s.get("/console").await;
    assert_eq!(status, 200, "{html}");
    s.csrf = hidden_csrf(&html).expect("a form with the session's token");
    s
}

impl Session {
    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.url))
            .header("cookie", format!("dsp_session={}", self.cookie))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// A console form POST; `with_csrf` adds the session's token.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)], with_csrf: bool) -> reqwest::Response {
        let mut f: Vec<(&str, &str)> = fields.to_vec();
        if with_csrf {
            f.push(("csrf", &self.csrf));
        }
        self.client
            .post(format!("{}{path}", self.url))
            .header("cookie", format!("dsp_session={}", self.cookie))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(&f).unwrap())
            .send()
            .await
            .unwrap()
    }
}

/// An order held past the cut-off (17:30 Amsterdam for a next-day promise).
pub async fn held_after_cutoff(app: &TestApp, ext: &str) -> String {
    app.clock.set(start_time() + Duration::hours(8) + Duration::minutes(30));
    let mut body = order(ext);
    body["promised_date"] = json!("2026-11-25");
    let held = app.create(&body).await;
    assert_eq!(held["hold_reasons"], json!(["cutoff_missed"]), "{held}");
    held["id"].as_str().unwrap().to_string()
}

/// Requests expedited freight for a held order through the API (as a dispatcher's token).
pub async fn request_expedite(app: &TestApp, id: &str) -> Value {
    let r = app
        .post(
            &format!("/api/v1/orders/{id}/approval-requests"),
            &json!({"kind": "expedited_freight", "service": "same_day", "amount": 182.5, "currency": "EUR",
                    "reason": "Customer line down", "cost_center": "CC-4100"}),
            app.token(Role::Dispatcher),
        )
        .await;
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

/// An order on credit hold with a finance-only release request.
pub async fn credit_hold_request(app: &TestApp, ext: &str) -> (String, Value) {
    let mut body = order(ext);
    body["customer"]["credit_status"] = json!("hold");
    let held = app.create(&body).await;
    assert!(held["hold_reasons"].as_array().unwrap().contains(&json!("credit_hold")), "{held}");
    let id = held["id"].as_str().unwrap().to_string();
    let r = app
        .post(
            &format!("/api/v1/orders/{id}/approval-requests"),
            &json!({"kind": "credit_hold_release", "reason": "Paid by wire today", "amount": 480.0, "currency": "EUR", "cost_center": "CC-9"}),
            app.token(Role::Dispatcher),
        )
        .await;
    assert_eq!(r.status(), 201);
    (id, r.json().await.unwrap())
}
