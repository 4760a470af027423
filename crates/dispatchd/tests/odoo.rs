//! The Odoo connector in the binary: `dispatchd odoo check`, `dispatchd odoo sync --once`,
//! and `dispatchd serve` with `[odoo]` — the scheduled sync, the write-back worker and
//! `POST /webhooks/odoo` — against the Odoo double on a random port.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, Proc};
use odoo_double::{BOT_API_KEY, BOT_LOGIN, Double, DoubleConfig, Running};
use serde_json::json;

async fn double() -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    odoo_double::start(DoubleConfig::default(), listener).await.unwrap()
}

/// An outgoing picking with `reserved` of 4 units reserved; returns its id.
fn seed(d: &Double, n: u32, reserved: f64) -> i64 {
    let customer = d.seed(
        "res.partner",
        json!({"name": format!("Customer {n}"), "ref": format!("C-{n}"), "credit": 0.0, "credit_limit": 0.0}),
    );
    let ship_to = d.seed(
        "res.partner",
        json!({"name": "Receiving", "street": "Damrak 1", "city": "Amsterdam", "zip": "1012 LG", "country_code": "NL"}),
    );
    let promised = (chrono::Utc::now() + chrono::Duration::days(6)).format("%Y-%m-%d 10:00:00").to_string();
    let sale =
        d.seed("sale.order", json!({"name": format!("S{n:05}"), "partner_id": customer, "commitment_date": promised}));
    let p = d.seed("stock.picking", json!({"name": format!("WH/OUT/{n:05}"), "state": "assigned", "picking_type_code": "outgoing",
        "partner_id": ship_to, "sale_id": sale, "priority": "0", "x_dispatch_status": false, "carrier_tracking_ref": false}));
    d.seed("stock.move", json!({"picking_id": p, "product_id": [1, "[P-1] Pump"], "product_uom_qty": 4.0, "quantity": reserved, "state": "assigned", "price_unit": 10.0}));
    p
}

fn config(dir: &std::path::Path, url: &str, cadence: &str) -> std::path::PathBuf {
    let file = dir.join("dispatchd.toml");
    std::fs::write(
        &file,
        format!(
            "[odoo]\nurl = \"{url}\"\ndatabase = \"odoo\"\nlogin = \"{BOT_LOGIN}\"\n[odoo.sync]\ncadence = \"{cadence}\"\n\
             [odoo.writeback]\npoll_ms = 50\n[odoo.mapping.warehouses]\nWH = \"AMS\"\n"
        ),
    )
    .unwrap();
    file
}

/// Runs the binary off the async runtime (the double answers on it meanwhile).
async fn run(args: Vec<String>, key: &str) -> (bool, String, String) {
    let key = key.to_string();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(BIN)
            .args(&args)
            .env("DISPATCHD_ODOO_API_KEY", key)
            .env("DISPATCHD_ODOO_WEBHOOK_SECRET", "hook")
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn check_and_sync_once_from_the_command_line() {
    let odoo = double().await;
    for n in 1..=3 {
        seed(&odoo.double, n, 4.0);
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &odoo.url(), "every 1m");
    let data = dir.path().join("data");
    let args = |cmd: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        v.extend(["--config".into(), cfg.display().to_string(), "--data-dir".into(), data.display().to_string()]);
        v
    };
    let (ok, out, err) = run(args(&["odoo", "check"]), BOT_API_KEY).await;
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("server 17.0")
            && out.contains("dispatchd-bot")
            && out.contains("stock.picking  write  ok")
            && out.ends_with("ready\n"),
        "{out}"
    );

    let (ok, out, err) = run(args(&["odoo", "check"]), "wrong-key").await;
    assert!(!ok, "{out}");
    assert!(err.contains("refused the credentials of `dispatchd-bot`") && !err.contains("wrong-key"), "{err}");

    let (ok, out, err) = run(args(&["odoo", "sync", "--once"]), BOT_API_KEY).await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("3 pickings read in 1 pages: 3 created"), "{out}");
    assert!(out.contains("cursor    "), "{out}");

    // Odoo down: the command fails and says the committed pages are kept.
    odoo.double.set_down(true);
    let (ok, _, err) = run(args(&["odoo", "sync", "--once"]), BOT_API_KEY).await;
    assert!(!ok);
    assert!(err.contains("unreachable") && err.contains("next run continues"), "{err}");
}

#[tokio::test]
async fn serve_syncs_on_schedule_writes_back_and_takes_webhooks() {
    let odoo = double().await;
    let held = seed(&odoo.double, 1, 1.0);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &odoo.url(), "every 1s");
    let data = dir.path().join("data");
    let env = vec![
        ("DISPATCHD_ODOO_API_KEY".to_string(), BOT_API_KEY.to_string()),
        ("DISPATCHD_ODOO_WEBHOOK_SECRET".to_string(), "hook".to_string()),
    ];
    let log = dir.path().join("serve.log");
    let cfg_s = cfg.display().to_string();
    let data_s = data.display().to_string();
    let server = Proc::start_with_env(&["serve", "--config", &cfg_s, "--data-dir", &data_s], &env, &log).await;

    // The scheduled sync picks the picking up; the write-back puts the hold on the picking.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rec = odoo.double.record("stock.picking", held).unwrap();
        if rec["x_dispatch_status"] == "on_hold" && !odoo.double.messages("stock.picking", held).is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no write-back; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let notes = odoo.double.messages("stock.picking", held);
    assert_eq!(notes.len(), 1);
    assert!(notes[0]["body"].as_str().unwrap().contains("on hold"), "{notes:?}");

    // A webhook for a new picking is applied at once.
    let fresh = seed(&odoo.double, 2, 4.0);
    let client = reqwest::Client::new();
    let body = json!({"_model": "stock.picking", "_id": fresh, "_action": "Send Webhook Notification(#1)"});
    let r = client.post(format!("{}/webhooks/odoo?token=hook", server.url)).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = client.post(format!("{}/webhooks/odoo?token=nope", server.url)).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let metrics = client.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("dispatchd_odoo_up 1"), "sync status is in the metrics");
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!log_text.contains("token=hook"), "the webhook secret is never logged");
    assert!(!log_text.contains(BOT_API_KEY), "the API key is never logged");
}
