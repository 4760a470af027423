//! The command-line contract: token creation, demo, serving a demo's data again, migrate.

mod common;

use std::process::Command;

use common::*;

#[test]
fn version_and_help() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("dispatchd "));
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["serve", "demo", "token", "migrate"] {
        assert!(help.contains(cmd), "{help}");
    }
}

#[test]
fn token_create_prints_only_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["token", "create", "--name", "ci", "--roles", "dispatcher,supervisor", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert!(lines[0].starts_with("dsp_") && lines[0].len() > 40);

    let out = Command::new(BIN)
        .args(["token", "create", "--name", "ci", "--roles", "root", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown role `root`") && err.contains("dispatcher"), "{err}");
}

#[test]
fn migrate_creates_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN).args(["migrate", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("dispatchd.db").exists());
    // Twice is fine.
    assert!(Command::new(BIN).args(["migrate", "--data-dir"]).arg(dir.path()).output().unwrap().status.success());
}

#[test]
fn a_bad_config_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[[warehouses]]\ncode = \"X\"\ncountry = \"NL\"\ntimezone = \"Mars/Olympus\"\n").unwrap();
    let out = Command::new(BIN).args(["migrate", "--config"]).arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Mars/Olympus") || err.contains("timezone"), "{err}");
}

#[tokio::test]
async fn demo_then_serve_the_same_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let data_arg = data.to_str().unwrap().to_string();
    let mut demo =
        Proc::start(&["demo", "--data-dir", &data_arg, "--seed", "3", "--orders", "300"], &dir.path().join("demo.log"))
            .await;
    let printed = std::fs::read_to_string(dir.path().join("demo.log")).unwrap();
    assert!(printed.contains("dispatchd demo is running"), "{printed}");
    assert!(printed.contains("curl"), "{printed}");
    assert!(printed.contains("mock carrier at"), "{printed}");
    let token = printed.lines().find_map(|l| l.trim().strip_prefix("export TOKEN=")).expect("the demo prints a token");
    // The console's address and its demo users: the printed supervisor password signs in.
    assert!(printed.contains(&format!("{}/console", demo.url)), "{printed}");
    let password = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("supervisor ").and_then(|r| r.split_whitespace().next()))
        .expect("the demo prints a supervisor's password");
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = browser.get(format!("{}/console/login", demo.url)).send().await.unwrap();
    let csrf = page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    assert!(!page.headers()["set-cookie"].to_str().unwrap().contains("Secure"), "plain http on loopback");
    let signed_in = browser
        .post(format!("{}/console/login", demo.url))
        .header("cookie", &csrf)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={}&username=supervisor&password={password}", csrf.trim_start_matches("dsp_csrf=")))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    assert_eq!(signed_in.headers()["location"], "/console");
    // The demo's mock carriers book released orders and move them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let orders = all_orders(&demo.url, token).await;
        let moved = orders.iter().filter(|o| o["state"] == "dispatched" || o["state"] == "delivered").count();
        if moved > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no demo order was booked and dispatched");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    demo.terminate();

    let server = Proc::start(&["serve", "--data-dir", &data_arg], &dir.path().join("serve.log")).await;
    let orders = all_orders(&server.url, token).await;
    assert_eq!(orders.len(), 300, "serve on a demo's data dir serves it without generating more");
    let client = reqwest::Client::new();
    let w: serde_json::Value = client
        .get(format!("{}/api/v1/warehouses", server.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(w["items"].as_array().unwrap().len(), 3);
    let held = orders.iter().filter(|o| o["state"] == "on_hold").count();
    // Released orders are booked by the demo's carriers and move on.
    let released = orders
        .iter()
        .filter(|o| {
            ["released", "booked", "dispatched", "delivered", "exception"].contains(&o["state"].as_str().unwrap())
        })
        .count();
    assert_eq!(held + released, 300);
    // The mix depends on the time of day (after the cut-offs more orders miss them).
    assert!(held > 20 && released > 30, "held {held}, released {released}");
}

#[test]
fn policy_check_exits_1_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, dispatch_policy::DEFAULT_POLICY).unwrap();
    let out = Command::new(BIN).args(["policy", "check"]).arg(&good).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));

    let bad = dir.path().join("bad.toml");
    let text = dispatch_policy::DEFAULT_POLICY.replace("reason = \"docs_missing\"", "reason = \"docs_mising\"");
    std::fs::write(&bad, &text).unwrap();
    let out = Command::new(BIN).args(["policy", "check"]).arg(&bad).env("CI", "1").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let line = text[..text.find("docs_mising").unwrap()].matches('\n').count() + 1;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{}:{line}:", bad.display())), "{stderr}");
    assert!(stderr.contains("Did you mean `docs_missing`"), "{stderr}");
}

#[test]
fn policy_replay_and_explain_read_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A demo's data, loaded and left.
    let mut p = std::process::Command::new(BIN)
        .args(["demo", "--orders", "150", "--listen", &format!("127.0.0.1:{}", free_port()), "--data-dir"])
        .arg(&data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = String::new();
    {
        use std::io::{BufRead, BufReader};
        let mut r = BufReader::new(p.stdout.take().unwrap());
        while !out.contains("token") {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap() == 0 {
                break;
            }
            out.push_str(&line);
        }
    }
    let _ = p.kill();
    let _ = p.wait();
    let cand = dir.path().join("cand.toml");
    std::fs::write(
        &cand,
        dispatch_policy::DEFAULT_POLICY
            .replace(r#"["hold", "blocked", "over_limit"]"#, r#"["hold", "blocked", "over_limit", "watch"]"#),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["policy", "replay"])
        .arg(&cand)
        .arg("--json")
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["decisions"], 150);
    let example = report["examples"][0]["order_id"].as_str().map(str::to_string);
    if let Some(id) = example {
        let out = Command::new(BIN).args(["policy", "explain", &id, "--data-dir"]).arg(&data).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("priority") && text.contains("carrier"), "{text}");
    }
}

#[tokio::test]
async fn sighup_reloads_the_policy_file_and_refuses_an_invalid_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, dispatch_policy::DEFAULT_POLICY).unwrap();
    let cfg = dir.path().join("dispatchd.toml");
    std::fs::write(
        &cfg,
        format!("data_dir = {:?}\npolicy_file = {:?}\n", data.display().to_string(), policy.display().to_string()),
    )
    .unwrap();
    let token = token(&data_dir_args(&data), "admin");
    let cfg_arg = cfg.display().to_string();
    let server = Proc::start(&["serve", "--config", &cfg_arg], &dir.path().join("serve.log")).await;
    let client = reqwest::Client::new();
    let get = || async {
        let v: serde_json::Value = client
            .get(format!("{}/api/v1/policy", server.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v
    };
    let first = get().await;
    assert_eq!(first["origin"], "file");
    let hup = || {
        let _ = Command::new("kill").args(["-HUP", &server.child.id().to_string()]).status();
    };
    let wait_for = |want_change: bool, old: String| async move {
        for _ in 0..100 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let now = get().await;
            if (now["hash"].as_str().unwrap() != old) == want_change && want_change {
                return now;
            }
        }
        get().await
    };
    // An invalid file: refused, the running policy stays.
    std::fs::write(&policy, dispatch_policy::DEFAULT_POLICY.replace("max = 1000", "max = oops")).unwrap();
    hup();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(get().await["hash"], first["hash"]);
    // A valid change: active after the signal.
    std::fs::write(&policy, dispatch_policy::DEFAULT_POLICY.replace("name = \"default\"", "name = \"tuesday\""))
        .unwrap();
    hup();
    let changed = wait_for(true, first["hash"].as_str().unwrap().to_string()).await;
    assert_eq!(changed["name"], "tuesday");
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(log.contains("policy reload refused"), "{log}");
}
