//! Security through the real binary: every log line of a full run (CLI commands and the
//! server, `RUST_LOG=trace`) is captured and searched for every secret value used in it
//! (API token, console password, stored webhook secret and carrier key, master key); stored
//! secrets are sealed and wired into carriers; `audit verify` names a tampered entry.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// Runs `dispatchd args` with trace logging, `stdin` piped in; returns (stdout, stderr).
fn run<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(&str, &str)], stdin: Option<&str>) -> (String, String, bool) {
    let mut child = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "trace")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into(), out.status.success())
}

fn config(data: &Path) {
    std::fs::write(
        data.join("dispatchd.toml"),
        "[booking]\nenabled = false\n\n[carriers.beta]\nkind = \"easypost\"\nbase_url = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
}

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

#[tokio::test]
async fn no_secret_appears_in_any_log_of_a_full_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    config(dir.path());
    let store = ["--data-dir", data.as_str()];
    let mut logs = String::new();
    let with = |args: &[&str]| -> Vec<String> { args.iter().chain(store.iter()).map(|s| s.to_string()).collect() };

    let (key, _, ok) = run(&["key", "generate", "--key-version", "1"], &[], None);
    assert!(ok);
    let key = key.trim().to_string();
    let key_material = key.split_once(':').unwrap().1.to_string();
    let env = [("DISPATCHD_MASTER_KEY", key.as_str())];

    let password = "tr0ub4dor-and-3-more-words";
    let webhook_secret = "whsec-5f1b0c3e9d7a4c21b8e6";
    let api_key = "ak-live-0d9e8f7a6b5c4d3e";

    let (out, err, ok) =
        run(&with(&["user", "create", "ana", "--roles", "dispatcher", "--password-stdin"]), &env, Some(password));
    assert!(ok, "{err}");
    logs.push_str(&out);
    logs.push_str(&err);
    let (token, err, ok) = run(&with(&["token", "create", "--name", "ops", "--roles", "admin,auditor"]), &env, None);
    assert!(ok, "{err}");
    let token = token.trim().to_string();
    logs.push_str(&err);
    for (name, value) in
        [("DISPATCHD_CARRIER_BETA_WEBHOOK_SECRET", webhook_secret), ("DISPATCHD_CARRIER_BETA_API_KEY", api_key)]
    {
        let (out, err, ok) = run(&with(&["secret", "set", name]), &env, Some(value));
        assert!(ok, "{err}");
        logs.push_str(&out);
        logs.push_str(&err);
    }
    let (out, err, ok) = run(&with(&["secret", "list"]), &env, None);
    assert!(ok, "{err}");
    assert!(out.contains("DISPATCHD_CARRIER_BETA_API_KEY") && out.contains("\"key_version\":1"), "{out}");
    logs.push_str(&out);
    logs.push_str(&err);

    // The database holds the secrets sealed, never in clear.
    let db = std::fs::read(dir.path().join("dispatchd.db")).unwrap();
    let wal = std::fs::read(dir.path().join("dispatchd.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        let text = String::from_utf8_lossy(bytes);
        for secret in [webhook_secret, api_key, password, token.as_str()] {
            assert!(!text.contains(secret), "a secret is stored in clear");
        }
    }

    // The server, with trace logs, through sign-in, writes, a signed webhook and the audit API.
    let log_file = dir.path().join("serve.log");
    let server_env: Vec<(String, String)> =
        vec![("DISPATCHD_MASTER_KEY".into(), key.clone()), ("RUST_LOG".into(), "trace".into())];
    let serve_args = with(&["serve", "--log-format", "json"]);
    let serve_args: Vec<&str> = serve_args.iter().map(String::as_str).collect();
    let mut server = Proc::start_with_env(&serve_args, &server_env, &log_file).await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/api/v1/orders", server.url))
        .bearer_auth(&token)
        .json(&order("SEC/1", 4))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = client
        .post(format!("{}/api/v1/orders", server.url))
        .bearer_auth(format!("{token}x"))
        .json(&order("SEC/2", 4))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let page = client.get(format!("{}/console/login", server.url)).send().await.unwrap();
    let csrf = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .find_map(|v| v.to_str().ok()?.strip_prefix("dsp_csrf=").map(|s| s.split(';').next().unwrap().to_string()))
        .unwrap();
    for attempt in ["not-the-password-at-all", password] {
        let r = client
            .post(format!("{}/console/login", server.url))
            .header("cookie", format!("dsp_csrf={csrf}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&[("csrf", csrf.as_str()), ("username", "ana"), ("password", attempt)]))
            .send()
            .await
            .unwrap();
        assert!(r.status() == 401 || r.status().is_success() || r.status().is_redirection(), "{}", r.status());
    }
    // The webhook secret came from the sealed store: a body signed with it is accepted, one
    // signed with anything else is not.
    let body = br#"{"id":"evt_1","object":"Event","description":"tracker.updated","created_at":"2026-11-24T08:00:00Z","result":{"tracking_code":"NOPE","status":"in_transit"}}"#;
    let scheme = dispatch_integrations::webhook::SignatureScheme::default();
    let sign = |secret: &str| {
        dispatch_integrations::webhook::signature_header(
            &scheme,
            &dispatch_integrations::Secret::new(secret),
            body,
            None,
        )
    };
    let hook = |sig: String| {
        client
            .post(format!("{}/webhooks/carriers/beta", server.url))
            .header(scheme.header.as_str(), sig)
            .body(body.to_vec())
            .send()
    };
    assert_eq!(hook(sign("wrong-secret")).await.unwrap().status(), 401);
    assert_ne!(hook(sign(webhook_secret)).await.unwrap().status(), 401);
    let audit =
        client.get(format!("{}/api/v1/audit?format=jsonl", server.url)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(audit.status(), 200);
    let audit = audit.text().await.unwrap();
    server.terminate();
    logs.push_str(&std::fs::read_to_string(&log_file).unwrap());
    logs.push_str(&audit);

    // The capture is real: trace-level lines of the server and the requests are in it.
    assert!(logs.contains("dispatchd serving"), "no server start in the logs");
    assert!(logs.contains("TRACE") || logs.contains("\"level\":\"TRACE\""), "no trace-level lines captured");
    assert!(logs.contains("/api/v1/orders"));
    let secret_part = token.rsplit('_').next().unwrap();
    for (what, secret) in [
        ("API token", token.as_str()),
        ("API token secret", secret_part),
        ("password", password),
        ("webhook secret", webhook_secret),
        ("carrier API key", api_key),
        ("master key", key_material.as_str()),
    ] {
        assert!(!logs.contains(secret), "the {what} appears in the logs");
    }
}

#[tokio::test]
async fn audit_verify_names_a_tampered_entry_and_users_tokens_are_managed_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let store = ["--data-dir", data.as_str()];
    let with = |args: &[&str]| -> Vec<String> { args.iter().chain(store.iter()).map(|s| s.to_string()).collect() };
    let (_, err, ok) = run(&with(&["user", "create", "Bob", "--roles", "dispatcher,supervisor"]), &[], None);
    assert!(ok, "{err}");
    let (_, err, ok) =
        run(&with(&["token", "create", "--name", "bob", "--roles", "admin", "--user", "bob"]), &[], None);
    assert!(!ok && err.contains("does not hold the role(s) admin"), "{err}");
    let (token, err, ok) =
        run(&with(&["token", "create", "--name", "bob-cli", "--roles", "dispatcher", "--user", "bob"]), &[], None);
    assert!(ok, "{err}");
    let prefix = token.trim().split('_').nth(1).unwrap().to_string();
    let (list, _, _) = run(&with(&["token", "list"]), &[], None);
    assert!(list.contains(&prefix) && list.contains("\"user\":\"bob\""), "{list}");
    assert!(!list.contains(token.trim().rsplit('_').next().unwrap()), "token list shows a secret");
    let (_, err, ok) = run(&with(&["token", "revoke", &prefix]), &[], None);
    assert!(ok && err.contains("revoked"), "{err}");
    let (_, _, ok) = run(&with(&["user", "disable", "bob"]), &[], None);
    assert!(ok);
    let (users, _, _) = run(&with(&["user", "list"]), &[], None);
    assert!(users.contains("\"disabled_at\":\"") && !users.contains("argon2"), "{users}");

    let (out, _, ok) = run(&with(&["audit", "verify"]), &[], None);
    assert!(ok, "{out}");
    assert!(out.starts_with("audit chain intact: 4 entries"), "{out}");
    // Change the second entry behind dispatchd's back.
    let loc = dispatch_store::testing::Location::Sqlite(dir.path().join("dispatchd.db"));
    loc.exec("UPDATE audit_log SET after = '{\"roles\":[\"admin\"]}' WHERE seq = 2").await.unwrap();
    let (out, _, ok) = run(&with(&["audit", "verify"]), &[], None);
    assert!(!ok, "verify passed a tampered chain: {out}");
    assert!(out.contains("entry 2 was modified"), "{out}");
    let (json, _, _) = run(&with(&["audit", "verify", "--json"]), &[], None);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["head_seq"], 1);

    let (md, _, ok) = run(&["permissions", "--markdown"], &[], None);
    assert!(ok && md.starts_with("| permission |"), "{md}");
}
