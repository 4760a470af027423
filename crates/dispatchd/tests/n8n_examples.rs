//! The n8n examples are importable and their signature check works: the workflow JSON parses,
//! its nodes are the n8n node types it claims, every connection joins existing nodes, and the
//! Code node's verification script (run by Node.js with the Code node's `$input`, `$env` and
//! `this.helpers`) accepts dispatchd's signatures, also during a secret rotation, and refuses a
//! tampered body, a wrong secret and an old timestamp.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use dispatch_integrations::Secret;
use dispatch_integrations::outbound::{generate_secret, signature};
use serde_json::{Value, json};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/n8n")
}

fn workflow() -> Value {
    let text = std::fs::read_to_string(examples().join("approval-requested-to-chat.json")).unwrap();
    serde_json::from_str(&text).expect("the workflow is JSON")
}

#[test]
fn workflow_nodes_and_connections_are_consistent() {
    let wf = workflow();
    let nodes = wf["nodes"].as_array().unwrap();
    let by_name = |n: &str| nodes.iter().find(|x| x["name"] == n).unwrap_or_else(|| panic!("no node {n}"));
    let types: Vec<&str> = nodes.iter().map(|n| n["type"].as_str().unwrap()).collect();
    for t in ["n8n-nodes-base.webhook", "n8n-nodes-base.code", "n8n-nodes-base.httpRequest"] {
        assert!(types.contains(&t), "{t} missing");
    }
    let hook = nodes.iter().find(|n| n["type"] == "n8n-nodes-base.webhook").unwrap();
    assert_eq!(hook["parameters"]["httpMethod"], "POST");
    assert_eq!(hook["parameters"]["options"]["rawBody"], true, "the signature covers the raw body");
    for n in nodes {
        assert!(n["id"].is_string() && n["typeVersion"].is_number() && n["position"].is_array(), "{n}");
    }
    // Every connection leads from and to an existing node, and the chain runs from the
    // Webhook through the verification to a dispatchd API call.
    let conns = wf["connections"].as_object().unwrap();
    for (from, c) in conns {
        by_name(from);
        for outputs in c["main"].as_array().unwrap() {
            for link in outputs.as_array().unwrap() {
                by_name(link["node"].as_str().unwrap());
            }
        }
    }
    let next = |n: &str| conns[n]["main"][0][0]["node"].as_str().unwrap().to_string();
    let verify = next(hook["name"].as_str().unwrap());
    assert_eq!(by_name(&verify)["type"], "n8n-nodes-base.code");
    let check = next(&verify);
    let api = next(&check);
    assert_eq!(by_name(&api)["type"], "n8n-nodes-base.httpRequest");
    assert!(by_name(&api)["parameters"]["url"].as_str().unwrap().contains("/api/v1/orders/"));
    // The script in the workflow is the one kept (and tested) beside it.
    let script = std::fs::read_to_string(examples().join("verify-signature.js")).unwrap();
    assert_eq!(by_name(&verify)["parameters"]["jsCode"].as_str().unwrap(), script);
}

/// Runs the Code node's script with Node.js; `Ok(items)` or `Err(message)`.
fn run_code_node(secret: &str, headers: Value, body: &[u8]) -> Result<Value, String> {
    let script = std::fs::read_to_string(examples().join("verify-signature.js")).unwrap();
    let harness = format!(
        r#"
const input = JSON.parse(process.argv[1]);
const items = [{{ json: {{ headers: input.headers, body: {{}} }}, binary: {{ data: {{ data: input.raw }} }} }}];
const $input = {{ all: () => items, first: () => items[0] }};
const $env = {{ DISPATCHD_WEBHOOK_SECRET: input.secret }};
const ctx = {{ helpers: {{ getBinaryDataBuffer: async (i, p) => Buffer.from(items[i].binary[p].data, 'base64') }} }};
(async function($input, $env) {{
{script}
}}).call(ctx, $input, $env).then(
  (out) => {{ console.log(JSON.stringify(out)); }},
  (e) => {{ console.log(JSON.stringify({{ error: e.message }})); }});
"#
    );
    let input = json!({
        "secret": secret,
        "headers": headers,
        "raw": base64::engine::general_purpose::STANDARD.encode(body),
    });
    let out = Command::new("node")
        .arg("-e")
        .arg(&harness)
        .arg(input.to_string())
        .output()
        .expect("Node.js is installed (scripts/test installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    match v.get("error") {
        Some(e) => Err(e.as_str().unwrap().to_string()),
        None => Ok(v),
    }
}

#[test]
fn the_code_node_verifies_dispatchd_signatures() {
    let old = generate_secret();
    let new = generate_secret();
    let body = br#"{"type":"approval.requested","timestamp":"2026-11-27T10:00:00Z","data":{"approval_id":"apr_1"}}"#;
    let now = chrono::Utc::now().timestamp();
    let headers = |secrets: &[Secret], ts: i64| {
        json!({"webhook-id": "msg_ord_1_v4", "webhook-timestamp": ts.to_string(),
               "webhook-signature": signature(secrets, "msg_ord_1_v4", ts, body).unwrap()})
    };
    let ok = run_code_node(old.expose(), headers(std::slice::from_ref(&old), now), body).unwrap();
    assert_eq!(ok[0]["json"]["type"], "approval.requested");
    assert_eq!(ok[0]["json"]["webhook_id"], "msg_ord_1_v4");
    // During a rotation both secrets sign; a subscriber with either verifies.
    let both = [new.clone(), old.clone()];
    assert!(run_code_node(old.expose(), headers(&both, now), body).is_ok());
    assert!(run_code_node(new.expose(), headers(&both, now), body).is_ok());
    // Refused: another secret, a changed body, an old timestamp, no headers.
    let other = generate_secret();
    assert_eq!(run_code_node(other.expose(), headers(&both, now), body).unwrap_err(), "invalid webhook signature");
    let mut tampered = body.to_vec();
    tampered.push(b' ');
    assert!(run_code_node(old.expose(), headers(&both, now), &tampered).is_err());
    let stale = now - 3600;
    assert!(run_code_node(old.expose(), headers(&both, stale), body).unwrap_err().contains("too old"));
    assert!(run_code_node(old.expose(), json!({}), body).unwrap_err().contains("missing"));
}
