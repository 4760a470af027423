//! Approval workflows end to end over HTTP: each row of the brief's table with realistic
//! orders, the negative paths (wrong role, own request, missing reason, compliance-only
//! release), parallel decisions, escalation with a moved clock across a restart, and the
//! partial shipment's backorder remainder.

mod common;

use std::sync::Arc;

use chrono::Duration;
use common::{TestApp, order, problem, start_time, warehouses};
use dispatch_core::Role;
use dispatch_server::AppState;
use dispatch_server::clock::ManualClock;
use serde_json::{Value, json};

/// Another person with these roles (tokens are people here: `token:<name>` is the identity).
async fn person(app: &TestApp, name: &str, roles: &[Role]) -> String {
    dispatch_server::auth::create_token(app.store.as_ref(), name, roles, start_time()).await.unwrap()
}

async fn request(app: &TestApp, order_id: &str, body: Value, token: &str) -> reqwest::Response {
    app.post(&format!("/api/v1/orders/{order_id}/approval-requests"), &body, token).await
}

async fn decide(app: &TestApp, id: &str, decision: &str, comment: Option<&str>, token: &str) -> reqwest::Response {
    let mut body = json!({"decision": decision});
    if let Some(c) = comment {
        body["comment"] = json!(c);
    }
    app.post(&format!("/api/v1/approvals/{id}/decisions"), &body, token).await
}

async fn ok(r: reqwest::Response, status: u16) -> Value {
    let s = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    assert_eq!(s, status, "{v}");
    v
}

async fn order_json(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/api/v1/orders/{id}")).await
}

async fn events(app: &TestApp, id: &str) -> Vec<Value> {
    app.get_json(&format!("/api/v1/orders/{id}/timeline")).await["items"].as_array().unwrap().clone()
}

fn kinds(evs: &[Value]) -> Vec<String> {
    evs.iter().map(|e| e["type"].as_str().unwrap().to_string()).collect()
}

/// Every approval event carries actor, time and the policy hash; decisions also the role.
fn audited(evs: &[Value], policy: &str) {
    for e in evs.iter().filter(|e| e["type"].as_str().unwrap().starts_with("approval.")) {
        assert!(!e["actor"].as_str().unwrap().is_empty(), "{e}");
        assert!(e["at"].is_string(), "{e}");
        let hash = if e["type"] == "approval.requested" { &e["request"]["routing"]["policy"] } else { &e["policy"] };
        assert_eq!(hash, policy, "{e}");
        if e["type"] == "approval.decided" {
            assert!(e["role"].is_string(), "{e}");
        }
    }
}

fn policy_hash(app: &TestApp) -> String {
    app.state.policy.policy().hash.clone()
}

/// Row 1: a partial shipment above the threshold needs the warehouse lead and the account
/// owner; the approved split ships the allocated units and the remainder becomes its own
/// order, linked back, with the right lines.
#[tokio::test]
async fn partial_shipment_over_threshold_needs_lead_and_account_owner_then_splits() {
    let app = TestApp::spawn().await;
    let mut body = order("WH1/OUT/PS-1");
    body["lines"] = json!([
        {"sku": "P-1", "product_family": "pumps", "qty": 10, "qty_allocated": 6, "unit_value": 600.0, "weight_kg": 3.5},
        {"sku": "V-2", "product_family": "valves", "qty": 2, "qty_allocated": 2, "unit_value": 40.0, "weight_kg": 0.4}
    ]);
    let held = app.create(&body).await;
    assert_eq!(held["hold_reasons"], json!(["stock_short"]));
    let id = held["id"].as_str().unwrap();

    // Only allocated units can leave.
    let bad = request(
        &app,
        id,
        json!({"kind": "partial_shipment", "reason": "x", "lines": [{"sku": "P-1", "qty": 7}]}),
        app.token(Role::Dispatcher),
    )
    .await;
    let (s, p) = problem(bad).await;
    assert_eq!((s, p["errors"][0]["field"].as_str()), (422, Some("lines[0].qty")));

    let r = request(
        &app,
        id,
        json!({"kind": "partial_shipment", "reason": "customer needs the valves for Friday's commissioning",
               "lines": [{"sku": "P-1", "qty": 6}, {"sku": "V-2", "qty": 2}]}),
        app.token(Role::Dispatcher),
    )
    .await;
    let a = ok(r, 201).await;
    let aid = a["id"].as_str().unwrap().to_string();
    assert_eq!(a["status"], "pending");
    assert_eq!(a["routing"]["rule"], "partial-high-value");
    assert_eq!(a["waiting_for"], json!(["warehouse_lead", "account_owner"]));
    assert_eq!(a["order"]["state"], "awaiting_approval");
    assert_eq!(order_json(&app, id).await["state"], "awaiting_approval");

    // Finance is not on this route; a dispatcher may not decide approvals at all.
    let (s, p) = problem(decide(&app, &aid, "approve", None, app.token(Role::Finance)).await).await;
    assert_eq!(s, 403);
    assert!(p["detail"].as_str().unwrap().contains("warehouse_lead or account_owner"), "{p}");
    assert_eq!(problem(decide(&app, &aid, "approve", None, app.token(Role::Dispatcher)).await).await.0, 403);

    let lead =
        ok(decide(&app, &aid, "approve", Some("stock of valves confirmed"), app.token(Role::WarehouseLead)).await, 200)
            .await;
    assert_eq!(lead["status"], "pending");
    assert_eq!(lead["waiting_for"], json!(["account_owner"]));
    let done = ok(decide(&app, &aid, "approve", None, app.token(Role::AccountOwner)).await, 200).await;
    assert_eq!(done["status"], "approved");
    let metrics = app.client.get(format!("{}/metrics", app.url)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("dispatchd_approval_decision_seconds_count{kind=\"partial_shipment\",step=\"1\"}"),
        "{metrics}"
    );

    let parent = order_json(&app, id).await;
    assert_eq!(parent["state"], "released");
    assert_eq!(parent["lines"].as_array().unwrap().len(), 2);
    assert_eq!((parent["lines"][0]["qty"].as_u64(), parent["lines"][0]["qty_allocated"].as_u64()), (Some(6), Some(6)));
    assert_eq!(parent["remainders"][0]["external_id"], "WH1/OUT/PS-1-BO1");
    let evs = events(&app, id).await;
    assert_eq!(
        kinds(&evs)[2..],
        [
            "approval.requested",
            "approval.decided",
            "approval.decided",
            "approval.closed",
            "order.split",
            "order.evaluated"
        ]
    );
    audited(&evs, &policy_hash(&app));
    assert_eq!(evs[3]["actor"], "token:test-warehouse_lead");
    assert_eq!(evs[3]["role"], "warehouse_lead");

    // The remainder is created from the outbox by the worker the binary runs.
    let made = dispatch_server::approvals::create_remainders(&app.state, "test-worker").await.unwrap();
    assert_eq!(made, 1);
    assert_eq!(dispatch_server::approvals::create_remainders(&app.state, "test-worker").await.unwrap(), 0);
    let rest = app.store.order_by_key("odoo", "WH1/OUT/PS-1-BO1").await.unwrap().expect("remainder order");
    assert_eq!(rest.facts.lines.len(), 1, "V-2 shipped in full");
    assert_eq!(
        (rest.facts.lines[0].sku.as_str(), rest.facts.lines[0].qty, rest.facts.lines[0].qty_allocated),
        ("P-1", 4, 0)
    );
    let link = rest.split_from.as_ref().unwrap();
    assert_eq!((link.order_id.as_str(), link.approval_id.as_str()), (id, aid.as_str()));
    assert_eq!(rest.state.code(), "on_hold", "the remainder waits for stock in its own lifecycle");
    let rest_tl = events(&app, &rest.id).await;
    assert_eq!(kinds(&rest_tl), ["order.received", "order.split_from", "order.evaluated"]);
    assert_eq!(rest_tl[1]["actor"], "system:approvals");
    // Its history is its own: a cancellation of the remainder leaves the parent alone.
    let c = app.post(&format!("/api/v1/orders/{}/cancel", rest.id), &json!({}), app.admin()).await;
    assert_eq!(c.status(), 200);
    assert_eq!(order_json(&app, id).await["state"], "released");

    // Below the threshold the warehouse lead alone decides.
    let mut small = order("WH1/OUT/PS-2");
    small["lines"][0]["qty_allocated"] = json!(3);
    let small = app.create(&small).await;
    let r = request(
        &app,
        small["id"].as_str().unwrap(),
        json!({"kind": "partial_shipment", "lines": [{"sku": "P-1", "qty": 3}]}),
        app.token(Role::Dispatcher),
    )
    .await;
    let a = ok(r, 201).await;
    assert_eq!((a["routing"]["rule"].as_str(), &a["waiting_for"]), (Some("partial"), &json!(["warehouse_lead"])));
}

/// Held past the cut-off at 17:30 Amsterdam time for a next-day promise.
async fn after_cutoff(app: &TestApp, ext: &str) -> String {
    app.clock.set(start_time() + Duration::hours(8) + Duration::minutes(30));
    let mut body = order(ext);
    body["promised_date"] = json!("2026-11-25");
    let held = app.create(&body).await;
    assert_eq!(held["hold_reasons"], json!(["cutoff_missed"]), "{held}");
    held["id"].as_str().unwrap().to_string()
}

/// Row 2: expedited freight after the cut-off: a supervisor, with cost center and reason.
#[tokio::test]
async fn expedited_freight_needs_reason_cost_center_and_another_supervisor() {
    let app = TestApp::spawn().await;
    let id = after_cutoff(&app, "WH1/OUT/EX-1").await;
    let sup_a = person(&app, "sup-anna", &[Role::Supervisor]).await;
    let sup_b = person(&app, "sup-ben", &[Role::Supervisor]).await;
    let before = order_json(&app, &id).await["version"].clone();

    let (s, p) = problem(
        request(
            &app,
            &id,
            json!({"kind": "expedited_freight", "service": "same_day", "amount": 182.5, "currency": "EUR"}),
            &sup_a,
        )
        .await,
    )
    .await;
    assert_eq!(s, 422);
    let fields: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["reason", "cost_center"]);
    assert_eq!(order_json(&app, &id).await["version"], before, "a refused request writes nothing");

    let a = ok(
        request(
            &app,
            &id,
            json!({"kind": "expedited_freight", "service": "same_day", "amount": 182.5, "currency": "EUR",
                   "cost_center": "CC-4100", "reason": "line-down at the customer; courier tonight"}),
            &sup_a,
        )
        .await,
        201,
    )
    .await;
    let aid = a["id"].as_str().unwrap().to_string();
    assert_eq!(a["waiting_for"], json!(["supervisor"]));
    assert_eq!(a["you_may_decide"], false, "never your own request");

    // Segregation of duties: the requesting supervisor cannot approve.
    let (s, p) = problem(decide(&app, &aid, "approve", None, &sup_a).await).await;
    assert_eq!(s, 403);
    assert!(p["detail"].as_str().unwrap().contains("segregation of duties"), "{p}");
    let inbox = app.get("/api/v1/approvals?inbox=me", &sup_b).await.json::<Value>().await.unwrap();
    assert_eq!(inbox["items"][0]["id"], aid.as_str());
    let mine = app.get("/api/v1/approvals?inbox=me", &sup_a).await.json::<Value>().await.unwrap();
    assert_eq!(mine["items"], json!([]));

    let done = ok(decide(&app, &aid, "approve", Some("cost accepted"), &sup_b).await, 200).await;
    assert_eq!(done["status"], "approved");
    let o = order_json(&app, &id).await;
    assert_eq!(o["state"], "released");
    assert_eq!(o["hold_reasons"], json!(["cutoff_missed"]), "still failing, but waived");
    assert_eq!(o["waived"], json!(["cutoff_missed"]));
    assert_eq!(o["booking_override"]["service"], "same_day");
    // Deciding again: the request moved on.
    assert_eq!(problem(decide(&app, &aid, "approve", None, app.token(Role::Supervisor)).await).await.0, 409);
    audited(&events(&app, &id).await, &policy_hash(&app));
}

/// Row 3: a customer on credit hold: finance, always; a rejection needs a comment and keeps
/// the order held; cancelling the order cancels its request.
#[tokio::test]
async fn credit_hold_release_is_for_finance_only() {
    let app = TestApp::spawn().await;
    let mut body = order("WH1/OUT/CR-1");
    body["customer"]["credit_status"] = json!("over_limit");
    let id = app.create(&body).await["id"].as_str().unwrap().to_string();
    let a = ok(
        request(
            &app,
            &id,
            json!({"kind": "credit_hold_release", "reason": "paid by wire today"}),
            app.token(Role::Supervisor),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(a["routing"]["auto_approve"], false);
    let aid = a["id"].as_str().unwrap().to_string();
    for r in [Role::OpsManager, Role::Admin, Role::WarehouseLead, Role::AccountOwner] {
        assert_eq!(problem(decide(&app, &aid, "approve", None, app.token(r)).await).await.0, 403, "{r}");
    }
    let (s, p) = problem(decide(&app, &aid, "reject", None, app.token(Role::Finance)).await).await;
    assert_eq!((s, p["errors"][0]["field"].as_str()), (422, Some("comment")));
    let rej =
        ok(decide(&app, &aid, "reject", Some("no payment received yet"), app.token(Role::Finance)).await, 200).await;
    assert_eq!(rej["status"], "rejected");
    assert_eq!(order_json(&app, &id).await["state"], "on_hold");
    let fin = app.get("/api/v1/approvals?inbox=me", app.token(Role::Finance)).await.json::<Value>().await.unwrap();
    assert_eq!(fin["items"], json!([]));

    // Asked again, then the order is cancelled: the request is cancelled with it.
    let again = ok(
        request(
            &app,
            &id,
            json!({"kind": "credit_hold_release", "reason": "payment arrived"}),
            app.token(Role::Supervisor),
        )
        .await,
        201,
    )
    .await;
    let id2 = again["id"].as_str().unwrap().to_string();
    assert_ne!(id2, aid);
    let c =
        app.post(&format!("/api/v1/orders/{id}/cancel"), &json!({"reason": "customer cancelled"}), app.admin()).await;
    assert_eq!(c.status(), 200);
    let v = app.get_json(&format!("/api/v1/approvals/{id2}")).await;
    assert_eq!(v["status"], "cancelled");
    assert_eq!(problem(decide(&app, &id2, "approve", None, app.token(Role::Finance)).await).await.0, 409);
    let closed = app.get_json(&format!("/api/v1/approvals?order={id}&status=rejected")).await;
    assert_eq!(closed["items"][0]["id"], aid.as_str());
}

/// Row 4: a route override is auto-approved when the carrier is in the approved matrix
/// (recorded as decided by the policy rule), otherwise a supervisor decides.
#[tokio::test]
async fn route_override_is_auto_within_the_matrix_else_supervisor() {
    let app = TestApp::spawn().await;
    let id = app.create(&order("WH1/OUT/RO-1")).await["id"].as_str().unwrap().to_string();
    let a = ok(
        request(
            &app,
            &id,
            json!({"kind": "route_override", "carrier": "dpd", "reason": "DHL hub strike"}),
            app.token(Role::Dispatcher),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(a["status"], "approved");
    assert_eq!(a["closed_by"], "policy:route-override-in-matrix");
    let o = order_json(&app, &id).await;
    assert_eq!((o["state"].as_str(), o["booking_override"]["carrier"].as_str()), (Some("released"), Some("dpd")));
    let evs = events(&app, &id).await;
    assert_eq!(kinds(&evs)[2..], ["approval.requested", "approval.closed"]);
    assert_eq!(evs[3]["by"], "policy:route-override-in-matrix");
    audited(&evs, &policy_hash(&app));

    let id = app.create(&order("WH1/OUT/RO-2")).await["id"].as_str().unwrap().to_string();
    let a = ok(
        request(
            &app,
            &id,
            json!({"kind": "route_override", "carrier": "own_fleet", "reason": "DHL hub strike"}),
            app.token(Role::Dispatcher),
        )
        .await,
        201,
    )
    .await;
    assert_eq!((a["status"].as_str(), &a["waiting_for"]), (Some("pending"), &json!(["supervisor"])));
    let (s, p) =
        problem(request(&app, &id, json!({"kind": "route_override"}), app.token(Role::Dispatcher)).await).await;
    assert_eq!(s, 409, "one pending request per kind: {p}");
    let (s, p) = problem(request(&app, &id, json!({"kind": "teleport"}), app.token(Role::Dispatcher)).await).await;
    assert_eq!((s, p["errors"][0]["field"].as_str()), (422, Some("kind")));
    assert_eq!(
        problem(request(&app, &id, json!({"kind": "route_override"}), app.token(Role::Finance)).await).await.0,
        403
    );

    let metrics = app.client.get(format!("{}/metrics", app.url)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("dispatchd_approvals_requested_total{kind=\"route_override\",route=\"auto\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("dispatchd_approvals_requested_total{kind=\"route_override\",route=\"people\"}"));
    // The gauge is process-wide and other tests scrape too: its presence, not its value.
    assert!(metrics.contains("dispatchd_approvals_pending{kind=\"route_override\"}"), "{metrics}");
    assert!(metrics.contains("dispatchd_approvals_closed_total{kind=\"route_override\",status=\"approved\"}"));
}

/// Row 5: a missing export document blocks dispatch until compliance approves; no other role
/// can release it. With the policy mapping the hold, the request is made by the policy and
/// withdrawn when the documents arrive.
#[tokio::test]
async fn compliance_release_only_by_compliance() {
    let app = TestApp::spawn().await;
    let mut body = order("WH1/OUT/CO-1");
    body["ship_to"] =
        json!({"name": "Acme Inc", "street": "1 Main St", "city": "Boston", "postcode": "02108", "country": "US"});
    let held = app.create(&body).await;
    assert_eq!(held["hold_reasons"], json!(["docs_missing"]));
    let id = held["id"].as_str().unwrap().to_string();
    let a = ok(
        request(
            &app,
            &id,
            json!({"kind": "compliance_release", "reason": "declaration filed by the forwarder"}),
            app.token(Role::Dispatcher),
        )
        .await,
        201,
    )
    .await;
    let aid = a["id"].as_str().unwrap().to_string();
    for r in [Role::Supervisor, Role::OpsManager, Role::Admin, Role::Finance, Role::WarehouseLead] {
        let (s, p) = problem(decide(&app, &aid, "approve", None, app.token(r)).await).await;
        assert_eq!(s, 403, "{r}: {p}");
    }
    assert_eq!(order_json(&app, &id).await["state"], "awaiting_approval");
    ok(decide(&app, &aid, "approve", Some("MRN checked"), app.token(Role::Compliance)).await, 200).await;
    let o = order_json(&app, &id).await;
    assert_eq!((o["state"].as_str(), &o["waived"]), (Some("released"), &json!(["docs_missing"])));

    // The policy asks by itself when it maps the hold.
    let current = app.get_json("/api/v1/policy").await;
    let src =
        format!("{}\n[approvals.holds]\ndocs_missing = \"compliance_release\"\n", current["source"].as_str().unwrap());
    let r = app
        .client
        .put(format!("{}/api/v1/policy", app.url))
        .bearer_auth(app.admin())
        .header("content-type", "application/toml")
        .body(src)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let mut body = body.clone();
    body["external_id"] = json!("WH1/OUT/CO-2");
    let o = app.create(&body).await;
    assert_eq!(o["state"], "awaiting_approval");
    assert_eq!(o["approvals"][0]["requester"], "policy");
    assert_eq!(o["approvals"][0]["id"], format!("apr_{}_1", o["id"].as_str().unwrap().trim_start_matches("ord_")));
    let inbox = app.get("/api/v1/approvals?inbox=me", app.token(Role::Compliance)).await.json::<Value>().await.unwrap();
    assert_eq!(inbox["items"].as_array().unwrap().len(), 1);
    body["documents"] = json!(["commercial_invoice", "export_declaration"]);
    let o = app.create(&body).await;
    assert_eq!(o["state"], "released");
    assert_eq!(o["approvals"][0]["status"], "withdrawn");
}

/// Two approvers decide the same step at once: exactly one decision is applied, the other
/// gets a 409 and nothing is written for it.
#[tokio::test]
async fn parallel_decisions_apply_exactly_one() {
    let app = TestApp::spawn().await;
    let f1 = person(&app, "fin-1", &[Role::Finance]).await;
    let f2 = person(&app, "fin-2", &[Role::Finance]).await;
    for i in 0..8 {
        let mut body = order(&format!("WH1/OUT/PAR-{i}"));
        body["customer"]["credit_status"] = json!("hold");
        let id = app.create(&body).await["id"].as_str().unwrap().to_string();
        let a = ok(
            request(&app, &id, json!({"kind": "credit_hold_release", "reason": "r"}), app.token(Role::Supervisor))
                .await,
            201,
        )
        .await;
        let aid = a["id"].as_str().unwrap().to_string();
        let verdict2 = if i % 2 == 0 { "approve" } else { "reject" };
        let (r1, r2) =
            tokio::join!(decide(&app, &aid, "approve", None, &f1), decide(&app, &aid, verdict2, Some("no"), &f2));
        let mut statuses = [r1.status().as_u16(), r2.status().as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 409], "round {i}");
        let v = app.get_json(&format!("/api/v1/approvals/{aid}")).await;
        assert_eq!(v["steps"][0]["decisions"].as_array().unwrap().len(), 1, "{v}");
        let decided = v["history"].as_array().unwrap().iter().filter(|e| e["type"] == "approval.decided").count();
        assert_eq!(decided, 1);
    }
}

/// A stale `If-Match` on a decision is a 409 and records nothing.
#[tokio::test]
async fn a_decision_on_a_stale_version_is_refused() {
    let app = TestApp::spawn().await;
    let mut body = order("WH1/OUT/IFM-1");
    body["customer"]["credit_status"] = json!("hold");
    let id = app.create(&body).await["id"].as_str().unwrap().to_string();
    let a = ok(
        request(&app, &id, json!({"kind": "credit_hold_release", "reason": "r"}), app.token(Role::Supervisor)).await,
        201,
    )
    .await;
    let aid = a["id"].as_str().unwrap();
    let r = app
        .client
        .post(format!("{}/api/v1/approvals/{aid}/decisions", app.url))
        .bearer_auth(app.token(Role::Finance))
        .header("if-match", "\"2\"")
        .json(&json!({"decision": "approve"}))
        .send()
        .await
        .unwrap();
    let (s, p) = problem(r).await;
    assert_eq!((s, p["type"].as_str()), (409, Some("urn:dispatchd:problem:version-conflict")));
    assert_eq!(app.get_json(&format!("/api/v1/approvals/{aid}")).await["status"], "pending");
    let (s, _) = problem(
        app.post(
            &format!("/api/v1/approvals/{aid}/decisions"),
            &json!({"decision": "maybe"}),
            app.token(Role::Finance),
        )
        .await,
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(problem(app.get("/api/v1/approvals/apr_nope_1", app.admin()).await).await.0, 404);
    assert_eq!(problem(app.get("/api/v1/approvals?inbox=you", app.admin()).await).await.0, 400);
}

/// One node of a restartable server on a store that outlives it.
struct Node {
    url: String,
    state: Arc<AppState>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn node(loc: &dispatch_store::testing::Location, clock: Arc<ManualClock>) -> Node {
    let store = loc.open().await;
    let state = AppState::new(store, warehouses(), clock);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dispatch_server::serve(listener, state.clone(), async {
        let _ = rx.await;
    }));
    Node { url, state, stop, server }
}

impl Node {
    async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
    }
}

/// A step undecided past its SLA escalates to the next role; the due time is stored, so the
/// escalation happens after a restart, at the injected clock's time, and not before it.
#[tokio::test]
async fn escalation_follows_the_moved_clock_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let loc = dispatch_store::testing::Location::fresh(dir.path()).await;
    let t0 = start_time() + Duration::hours(8) + Duration::minutes(30);
    let clock = Arc::new(ManualClock::new(t0));
    let n1 = node(&loc, clock.clone()).await;
    let store = n1.state.store.clone();
    let tok = |name: &'static str, role: Role| {
        let store = store.clone();
        async move { dispatch_server::auth::create_token(store.as_ref(), name, &[role], t0).await.unwrap() }
    };
    let dispatcher = tok("disp", Role::Dispatcher).await;
    let ops = tok("ops", Role::OpsManager).await;
    let c = reqwest::Client::new();
    let mut body = order("WH1/OUT/ESC-1");
    body["promised_date"] = json!("2026-11-25");
    let o: Value = c
        .post(format!("{}/api/v1/orders", n1.url))
        .bearer_auth(&dispatcher)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = o["id"].as_str().unwrap().to_string();
    let a: Value = c
        .post(format!("{}/api/v1/orders/{id}/approval-requests", n1.url))
        .bearer_auth(&dispatcher)
        .json(
            &json!({"kind": "expedited_freight", "service": "same_day", "reason": "line down", "cost_center": "CC-1"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let aid = a["id"].as_str().unwrap().to_string();
    assert_eq!(a["due_at"], json!((t0 + Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)));

    // 59 minutes: nothing is due.
    clock.set(t0 + Duration::minutes(59));
    let s = dispatch_server::approvals::sweep(&n1.state, "system:scheduler").await.unwrap();
    assert_eq!(s, dispatch_server::approvals::Sweep::default());
    n1.shutdown().await;

    // Restart two hours later, as after an outage.
    let later = Arc::new(ManualClock::new(t0 + Duration::hours(2)));
    let n2 = node(&loc, later.clone()).await;
    let inbox: Value = c
        .get(format!("{}/api/v1/approvals?inbox=me", n2.url))
        .bearer_auth(&ops)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(inbox["items"], json!([]), "ops leadership only sees it once escalated");
    let s = dispatch_server::approvals::sweep(&n2.state, "system:scheduler").await.unwrap();
    assert_eq!(s.escalated, 1);
    assert_eq!(
        dispatch_server::approvals::sweep(&n2.state, "system:scheduler").await.unwrap().escalated,
        0,
        "escalates once"
    );
    let v: Value = c
        .get(format!("{}/api/v1/approvals/{aid}", n2.url))
        .bearer_auth(&ops)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["waiting_for"], json!(["supervisor", "ops_manager"]));
    assert_eq!(v["you_may_decide"], true);
    let esc = v["history"].as_array().unwrap().iter().find(|e| e["type"] == "approval.escalated").unwrap().clone();
    assert_eq!(esc["at"], json!((t0 + Duration::hours(2)).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)));
    assert_eq!(esc["actor"], "system:scheduler");
    assert_eq!(esc["to"], json!(["ops_manager"]));
    let r = c
        .post(format!("{}/api/v1/approvals/{aid}/decisions", n2.url))
        .bearer_auth(&ops)
        .json(&json!({"decision": "approve", "comment": "approved on escalation"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let d: Value = r.json().await.unwrap();
    assert_eq!(
        (d["status"].as_str(), d["steps"][0]["decisions"][0]["role"].as_str()),
        (Some("approved"), Some("ops_manager"))
    );

    // Expiry: a request nobody decides closes after its deadline (1 day for expedited freight).
    let mut body = order("WH1/OUT/ESC-2");
    body["promised_date"] = json!("2026-11-25");
    let o: Value = c
        .post(format!("{}/api/v1/orders", n2.url))
        .bearer_auth(&dispatcher)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id2 = o["id"].as_str().unwrap().to_string();
    let a: Value = c
        .post(format!("{}/api/v1/orders/{id2}/approval-requests", n2.url))
        .bearer_auth(&dispatcher)
        .json(
            &json!({"kind": "expedited_freight", "service": "same_day", "reason": "line down", "cost_center": "CC-1"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    later.advance(Duration::days(1));
    let s = dispatch_server::approvals::sweep(&n2.state, "system:scheduler").await.unwrap();
    assert_eq!(s.expired, 1);
    let v: Value = c
        .get(format!("{}/api/v1/approvals/{}", n2.url, a["id"].as_str().unwrap()))
        .bearer_auth(&ops)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "expired");
    let o: Value =
        c.get(format!("{}/api/v1/orders/{id2}", n2.url)).bearer_auth(&ops).send().await.unwrap().json().await.unwrap();
    assert_eq!(o["state"], "on_hold");
    n2.shutdown().await;
}
