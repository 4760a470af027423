//! The console in a real browser: headless Chromium (Debian's `chromium`) driven by
//! `playwright-core` from npm, installed by this test under `target/console-e2e/`. The server
//! is the real one on a random port with a temporary database; the data is made through the
//! API and the store as a worker would. Screenshots go to `target/console-screenshots/`.
//!
//! Without Chromium (or node/npm) the test skips with a message, unless
//! `CONSOLE_E2E_REQUIRE_BROWSER=1` (set by `scripts/test`), where it fails.

mod common;
mod console_support;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use chrono::Duration;
use common::*;
use console_support::*;
use dispatch_core::Role;
use dispatch_server::clock::Clock;
use dispatch_server::limits::SecurityConfig;
use dispatch_store::JobStatus;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|n| std::env::split_paths(&path).map(|d| d.join(n)).find(|p| p.is_file()))
}

/// Skips (or, when the browser is required, fails) with a reason.
fn unavailable(why: &str) {
    if std::env::var("CONSOLE_E2E_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
        panic!("{why} (CONSOLE_E2E_REQUIRE_BROWSER=1: the browser tests must run; scripts/test installs chromium)");
    }
    eprintln!("SKIPPED console browser test: {why}. Install Debian's `chromium` and node/npm, or run scripts/test.");
}

/// `playwright-core` installed into `target/console-e2e` by npm (once per target dir).
fn playwright_core(npm: &Path) -> Result<PathBuf, String> {
    let dir = target_dir().join("console-e2e");
    let module = dir.join("node_modules/playwright-core");
    if module.join("package.json").is_file() {
        return Ok(module);
    }
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let out = std::process::Command::new(npm)
        .args(["install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"])
        .arg(&dir)
        .arg("playwright-core@1")
        // Never download a browser: Debian's chromium is used.
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .output()
        .map_err(|e| format!("npm: {e}"))?;
    if !out.status.success() || !module.is_dir() {
        return Err(format!("npm install playwright-core failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(module)
}

#[tokio::test]
async fn console_scenarios_in_headless_chromium() {
    let Some(chromium) = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| which(&["chromium", "chromium-browser", "google-chrome"]))
    else {
        return unavailable("no chromium on PATH");
    };
    let (Some(node), Some(npm)) = (which(&["node", "nodejs"]), which(&["npm"])) else {
        return unavailable("no node/npm on PATH");
    };
    let module = match playwright_core(&npm) {
        Ok(m) => m,
        Err(e) => return unavailable(&e),
    };
    let shots = target_dir().join("console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    // Plain http on loopback: cookies without `Secure`.
    let security = SecurityConfig { secure_cookies: false, ..Default::default() };
    let app = TestApp::spawn_with(dispatch_integrations::Carriers::empty(), security).await;
    for (name, role) in
        [("sup", Role::Supervisor), ("sup2", Role::Supervisor), ("disp", Role::Dispatcher), ("disp2", Role::Dispatcher)]
    {
        user(&app, name, &[role]).await;
    }
    let dl_order = app.create(&order("E2E/DL")).await;
    let jobs = app.store.claim_jobs("w", &["book_shipment"], 10, app.clock.now(), Duration::seconds(30)).await.unwrap();
    assert_eq!(jobs.len(), 1);
    app.store.finish_job(jobs[0].id, "w", JobStatus::Dead, Some("mockpost: rejected (422 address)")).await.unwrap();
    let (fin_id, _) = credit_hold_request(&app, "E2E/FIN").await;
    let exp_id = held_after_cutoff(&app, "E2E/EXP").await;
    request_expedite(&app, &exp_id).await;
    let ovr_id = held_after_cutoff(&app, "E2E/OVR").await;

    let mut child = tokio::process::Command::new(node)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console_e2e.js"))
        .env("PLAYWRIGHT_CORE", &module)
        .env("CHROMIUM", &chromium)
        .env("BASE_URL", &app.url)
        .env("SCREENSHOTS", &shots)
        .env("PASSWORD", PASSWORD)
        .env("EXPEDITE", json!({"order_id": exp_id, "external_id": "E2E/EXP"}).to_string())
        .env("FINANCE", json!({"order_id": fin_id, "external_id": "E2E/FIN"}).to_string())
        .env("DEAD", json!({"job_id": jobs[0].id, "order_id": dl_order["id"]}).to_string())
        .env("LATE_ORDER", "E2E/LATE")
        .env("OVERRIDE", json!({"order_id": ovr_id, "external_id": "E2E/OVR"}).to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut out = Vec::new();
    let run = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line == "CREATE_LATE_ORDER" {
                app.create(&order("E2E/LATE")).await;
            }
            println!("{line}");
            out.push(line);
        }
        child.wait().await.unwrap()
    };
    let status =
        tokio::time::timeout(std::time::Duration::from_secs(300), run).await.expect("browser scenarios finish");
    assert!(status.success(), "browser scenarios failed:\n{}", out.join("\n"));
    assert_eq!(out.iter().filter(|l| l.starts_with("PASS ")).count(), 6, "{out:?}");

    // What the browser did is what the server recorded.
    let o = app.get_json(&format!("/api/v1/orders/{exp_id}")).await;
    assert_eq!(o["state"], "released");
    let dl = app.get_json("/api/v1/dead-letters").await;
    assert!(dl["items"].as_array().unwrap().is_empty(), "{dl}");
    let fin = app.get_json(&format!("/api/v1/orders/{fin_id}")).await;
    assert_eq!(fin["state"], "awaiting_approval", "the dispatcher changed nothing");
    let ovr = app.get_json(&format!("/api/v1/orders/{ovr_id}")).await;
    assert_eq!(ovr["state"], "released", "{ovr}");
    assert_eq!(ovr["overrides"][0]["by"], "user:sup2");
    for name in [
        "1-inbox",
        "1-order-timeline",
        "2-dispatcher-inbox",
        "3-integrations-after",
        "4-board-refreshed",
        "5-dispatcher-exceptions",
        "6-override-timeline",
    ] {
        assert!(shots.join(format!("{name}.png")).is_file(), "screenshot {name}");
    }
}
