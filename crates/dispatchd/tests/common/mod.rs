//! Runs the real `dispatchd` binary as a child process on a free loopback port.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_dispatchd");

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Proc {
    pub child: Child,
    pub url: String,
}

impl Proc {
    /// Starts `dispatchd <args> --listen 127.0.0.1:<port>` and waits for `/readyz`.
    pub async fn start(args: &[&str], log: &Path) -> Proc {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new(BIN)
            .args(args)
            .args(["--listen", &listen])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let p = Proc { child, url: format!("http://{listen}") };
        p.wait_ready().await;
        p
    }

    pub async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(r) = client.get(format!("{}/readyz", self.url)).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("dispatchd did not become ready at {}", self.url);
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL on Unix: no shutdown code runs
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates a token with the CLI; `store` is `--data-dir DIR` or `--database-url URL`.
pub fn token(store: &[String], roles: &str) -> String {
    let out =
        Command::new(BIN).args(["token", "create", "--name", "test", "--roles", roles]).args(store).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub fn order(external_id: &str, qty_allocated: u32) -> serde_json::Value {
    let promised = (chrono::Utc::now() + chrono::Duration::days(6)).date_naive().to_string();
    serde_json::json!({
        "source": "odoo", "external_id": external_id, "warehouse": "AMS", "channel": "sales",
        "customer": {"id": "C-1", "name": "Acme BV", "tier": "silver", "credit_status": "ok"},
        "service_level": "standard", "promised_date": promised,
        "ship_to": {"name": "Acme BV", "street": "Damrak 1", "city": "Amsterdam", "postcode": "1012 LG", "country": "NL"},
        "lines": [{"sku": "P-1", "qty": 4, "qty_allocated": qty_allocated, "unit_value": 10.0}],
        "documents": ["commercial_invoice"]
    })
}

/// Every order, through the list API's pages.
pub async fn all_orders(url: &str, token: &str) -> Vec<serde_json::Value> {
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = format!("{url}/api/v1/orders?limit=500");
        if let Some(c) = &cursor {
            q.push_str(&format!("&cursor={c}"));
        }
        let page: serde_json::Value = client.get(&q).bearer_auth(token).send().await.unwrap().json().await.unwrap();
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}
