//! The booking worker's carriers come from the policy's carrier matrix, against real
//! `dispatchd serve` and `mock-carrier` processes: an outage of the preferred carrier → retries
//! → the lane's fallback, recorded on the timeline; a lane that allows no automatic fallback
//! → one `route_override` approval and no booking until a person approves it.

mod common;

use std::path::Path;

use common::*;
use serde_json::{Value, json};

const DEFAULT_POLICY: &str = include_str!("../../policy/policies/default.toml");

/// The default policy with its carrier matrix replaced by `matrix`.
fn policy_with(matrix: &str) -> String {
    let start = DEFAULT_POLICY.find("[carriers]\n").unwrap();
    let end = DEFAULT_POLICY.find("# --- Reason codes").unwrap();
    format!("{}{matrix}\n{}", &DEFAULT_POLICY[..start], &DEFAULT_POLICY[end..])
}

/// `carriers`: (name, url, configured fallback list).
fn write_config(data: &Path, policy: &str, carriers: &[(&str, &str, &str)]) {
    let policy_file = data.join("policy.toml");
    std::fs::write(&policy_file, policy).unwrap();
    let mut toml = format!(
        "policy_file = {:?}\n\n[booking]\ndefault_carrier = \"alpha\"\nbackoff_base_ms = 100\nbackoff_cap_ms = 300\npoll_ms = 20\n",
        policy_file.display().to_string()
    );
    for (name, url, fallback) in carriers {
        toml.push_str(&format!(
            "\n[carriers.{name}]\nkind = \"easypost\"\nbase_url = {url:?}\nservice = \"Ground\"\nfallback = [{fallback}]\n\
             timeout_ms = 2000\n[carriers.{name}.breaker]\nfailure_threshold = 2\nopen_for = 60000\n"
        ));
    }
    std::fs::write(data.join("dispatchd.toml"), toml).unwrap();
}

fn env(names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .flat_map(|n| {
            let u = n.to_uppercase();
            [
                (format!("DISPATCHD_CARRIER_{u}_API_KEY"), format!("k{n}")),
                (format!("DISPATCHD_CARRIER_{u}_WEBHOOK_SECRETS"), format!("whsec-{n}")),
            ]
        })
        .collect()
}

async fn create(url: &str, token: &str, external_id: &str) -> String {
    let r = reqwest::Client::new()
        .post(format!("{url}/api/v1/orders"))
        .bearer_auth(token)
        .json(&order(external_id, 4))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let o: Value = r.json().await.unwrap();
    assert_eq!(o["state"], "released", "{o}");
    o["id"].as_str().unwrap().to_string()
}

async fn timeline(url: &str, token: &str, id: &str) -> Vec<Value> {
    get_json(&format!("{url}/api/v1/orders/{id}/timeline"), token).await["items"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_of_the_preferred_carrier_falls_back_to_the_policy_lanes_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // alpha is in an outage window for the whole test; beta is up.
    let alpha =
        MockCarrier::start(&["--api-key", "kalpha", "--fault", "outage=0..600000"], &dir.path().join("alpha.log"))
            .await;
    let beta = MockCarrier::start(&["--api-key", "kbeta"], &dir.path().join("beta.log")).await;
    let gamma = MockCarrier::start(&["--api-key", "kgamma"], &dir.path().join("gamma.log")).await;
    // The configuration alone would fall back to gamma; the policy's lane says beta.
    let policy = policy_with(
        "[carriers]\nknown = [\"alpha\", \"beta\", \"gamma\"]\n\n[[carriers.lanes]]\nid = \"eu-road\"\n\
         destinations = [\"eu\"]\ncarriers = [\"alpha\"]\nfallbacks = [\"beta\"]\n",
    );
    write_config(
        &data,
        &policy,
        &[("alpha", &alpha.url, "\"gamma\""), ("beta", &beta.url, ""), ("gamma", &gamma.url, "")],
    );
    let token = token(&data_dir_args(&data), "admin");
    let data_arg = data.to_str().unwrap().to_string();
    let server = Proc::start_with_env(
        &["serve", "--data-dir", &data_arg],
        &env(&["alpha", "beta", "gamma"]),
        &dir.path().join("dispatchd.log"),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(create(&server.url, &token, &format!("MX/{i}")).await);
    }
    for id in &ids {
        let o = wait_for(60, &format!("{id} booked"), || async {
            let o = get_json(&format!("{}/api/v1/orders/{id}", server.url), &token).await;
            (o["state"] == "booked").then_some(o)
        })
        .await;
        assert_eq!(o["shipment"]["carrier"], "beta", "the lane's fallback, not the configured one: {o}");
        let booked: Vec<Value> =
            timeline(&server.url, &token, id).await.into_iter().filter(|e| e["type"] == "shipment.booked").collect();
        assert_eq!(booked.len(), 1);
        let b = &booked[0];
        assert_eq!(b["fallback"]["preferred"], "alpha", "{b}");
        assert_eq!(b["fallback"]["down"], json!(["alpha"]), "{b}");
        assert_eq!(b["fallback"]["lane"], "eu-road", "{b}");
        assert_eq!(b["fallback"]["why"], "circuit open", "{b}");
        let summary = b["summary"].as_str().unwrap_or_default();
        assert!(summary.contains("fallback") && summary.contains("alpha"), "{b}");
    }
    let a = alpha.stats().await;
    assert!(a["outage_refusals"].as_u64().unwrap() >= 2, "alpha was tried, and retried, first: {a}");
    assert_eq!(alpha.bookings().await["purchases"], 0);
    assert_eq!(gamma.stats().await["requests"], 0, "the configuration's fallback is not used when a lane matches");
    let b = beta.bookings().await;
    assert_eq!(b["purchases"], 4, "{b}");
    for id in &ids {
        assert_eq!(b["purchases_by_reference"][id], 1, "{b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lane_without_fallback_requests_one_route_override_and_books_nothing_until_approved() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let alpha =
        MockCarrier::start(&["--api-key", "kalpha", "--fault", "down=true"], &dir.path().join("alpha.log")).await;
    let gamma = MockCarrier::start(&["--api-key", "kgamma"], &dir.path().join("gamma.log")).await;
    // The lane has no fallback; gamma is configured (and the configuration names it as alpha's
    // fallback) but the policy does not allow it for this lane.
    let policy = policy_with(
        "[carriers]\nknown = [\"alpha\", \"gamma\"]\n\n[[carriers.lanes]]\nid = \"eu-road\"\n\
         destinations = [\"eu\"]\ncarriers = [\"alpha\"]\n",
    );
    write_config(&data, &policy, &[("alpha", &alpha.url, "\"gamma\""), ("gamma", &gamma.url, "")]);
    let admin = token(&data_dir_args(&data), "admin");
    let supervisor = token(&data_dir_args(&data), "supervisor");
    let data_arg = data.to_str().unwrap().to_string();
    let server = Proc::start_with_env(
        &["serve", "--data-dir", &data_arg],
        &env(&["alpha", "gamma"]),
        &dir.path().join("dispatchd.log"),
    )
    .await;
    let id = create(&server.url, &admin, "NF/1").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let o = loop {
        let o = get_json(&format!("{}/api/v1/orders/{id}", server.url), &admin).await;
        if o["state"] == "awaiting_approval" {
            break o;
        }
        if std::time::Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.path().join("dispatchd.log")).unwrap_or_default();
            let tail: String = log.lines().rev().take(30).collect::<Vec<_>>().join("\n");
            panic!("no route override requested: {o}\n{tail}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let approvals = o["approvals"].as_array().unwrap();
    assert_eq!(approvals.len(), 1, "{o}");
    let a = &approvals[0];
    assert_eq!(a["kind"], "route_override");
    assert_eq!(a["status"], "pending");
    assert_eq!(a["carrier"], "gamma", "a configured carrier that is up is proposed");
    assert_eq!(a["requester"], "system:booking");
    assert_eq!(a["routing"]["rule"], "route-override", "gamma is not in the lane: a person decides");
    assert!(a["reason"].as_str().unwrap().contains("alpha"), "{a}");

    // The worker keeps polling; nothing is booked and no second request is made.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let o = get_json(&format!("{}/api/v1/orders/{id}", server.url), &admin).await;
    assert_eq!(o["state"], "awaiting_approval");
    assert_eq!(o["approvals"].as_array().unwrap().len(), 1, "one request per order, not per retry: {o}");
    let requested =
        timeline(&server.url, &admin, &id).await.into_iter().filter(|e| e["type"] == "approval.requested").count();
    assert_eq!(requested, 1);
    assert_eq!(alpha.bookings().await["purchases"], 0);
    assert_eq!(gamma.bookings().await["purchases"], 0, "no fallback without the approval");
    assert_eq!(gamma.stats().await["requests"], 0);

    // A supervisor approves: the order is booked once, with the approved carrier.
    let aid = a["id"].as_str().unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/approvals/{aid}/decisions", server.url))
        .bearer_auth(&supervisor)
        .json(&json!({"decision": "approve"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let o = wait_for(60, "booked after the approval", || async {
        let o = get_json(&format!("{}/api/v1/orders/{id}", server.url), &admin).await;
        (o["state"] == "booked").then_some(o)
    })
    .await;
    assert_eq!(o["shipment"]["carrier"], "gamma");
    let g = gamma.bookings().await;
    assert_eq!(g["purchases"], 1, "{g}");
    assert_eq!(g["purchases_by_reference"][&id], 1);
    assert!(g["double_booked"].as_array().unwrap().is_empty());
    assert_eq!(alpha.bookings().await["purchases"], 0);
}
