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
        Self::start_with_env(args, &[], log).await
    }

    pub async fn start_with_env(args: &[&str], env: &[(String, String)], log: &Path) -> Proc {
        Self::start_on(free_port(), args, env, log).await
    }

    pub async fn start_on(port: u16, args: &[&str], env: &[(String, String)], log: &Path) -> Proc {
        let listen = format!("127.0.0.1:{port}");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let child = Command::new(BIN)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
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

/// The `mock-carrier` binary next to this test's `dispatchd` (built by `cargo test
/// --workspace`; built here when only this package's tests run).
pub fn mock_bin() -> std::path::PathBuf {
    let dir = Path::new(BIN).parent().unwrap().to_path_buf();
    let bin = dir.join(format!("mock-carrier{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "mock-carrier", "--bin", "mock-carrier"]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().unwrap();
        assert!(status.success() && bin.exists(), "could not build mock-carrier at {}", bin.display());
    }
    bin
}

/// A real `mock-carrier` process.
pub struct MockCarrier {
    pub child: Child,
    pub url: String,
    pub client: reqwest::Client,
}

impl MockCarrier {
    pub async fn start(args: &[&str], log: &Path) -> MockCarrier {
        let port = free_port();
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new(mock_bin())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let m = MockCarrier { child, url: format!("http://127.0.0.1:{port}"), client: reqwest::Client::new() };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if m.client.get(format!("{}/healthz", m.url)).send().await.is_ok_and(|r| r.status() == 200) {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        panic!("mock-carrier did not start at {}", m.url);
    }

    pub async fn get(&self, path: &str) -> serde_json::Value {
        self.client.get(format!("{}{path}", self.url)).send().await.unwrap().json().await.unwrap()
    }

    pub async fn bookings(&self) -> serde_json::Value {
        self.get("/admin/bookings").await
    }

    pub async fn stats(&self) -> serde_json::Value {
        self.get("/admin/stats").await
    }

    pub async fn set_faults(&self, faults: serde_json::Value) {
        let r = self.client.put(format!("{}/admin/faults", self.url)).json(&faults).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
}

impl Drop for MockCarrier {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it returns `Some`, or panics after `secs` with `what`.
pub async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn get_json(url: &str, token: &str) -> serde_json::Value {
    reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap().json().await.unwrap()
}

/// `--data-dir DIR`, for tests that keep their configuration in the data directory.
pub fn data_dir_args(dir: &Path) -> Vec<String> {
    vec!["--data-dir".into(), dir.display().to_string()]
}
