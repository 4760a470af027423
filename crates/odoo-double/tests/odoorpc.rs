//! The double is faithful enough for Odoo's own Python client: `odoorpc` (installed from the
//! package index into a venv under target/ by this test) logs in, reads with `search_read`
//! and a Polish-notation domain, writes, and gets Odoo's error envelope as its RPCError.

use std::path::PathBuf;
use std::process::Command;

use odoo_double::{BOT_LOGIN, BOT_PASSWORD, DoubleConfig};
use serde_json::json;

/// A venv with odoorpc, created (once per target dir) by this test itself.
fn venv_python() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("odoorpc-venv");
    let python = dir.join("bin").join("python");
    let ready = python.exists()
        && Command::new(&python).args(["-c", "import odoorpc"]).status().map(|s| s.success()).unwrap_or(false);
    if !ready {
        let st = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .expect("python3 is needed (apt-get install python3 python3-venv)");
        assert!(st.success(), "python3 -m venv failed; install python3-venv");
        let st = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "odoorpc==0.10.1"])
            .status()
            .expect("pip");
        assert!(st.success(), "pip install odoorpc failed (is the package index reachable?)");
    }
    python
}

const SCRIPT: &str = r#"
import json, sys, odoorpc
port = int(sys.argv[1])
odoo = odoorpc.ODOO('127.0.0.1', port=port)
out = {"version": odoo.version}
odoo.login('odoo', sys.argv[2], sys.argv[3])
out["uid"] = odoo.env.uid
Picking = odoo.env['stock.picking']
rows = Picking.search_read(
    ['|', ('state', '=', 'assigned'), '&', ('state', '=', 'confirmed'), ('priority', '=', '1'),
     ('picking_type_code', '=', 'outgoing'), ('name', 'ilike', 'out')],
    ['name', 'state', 'partner_id'], order='name asc')
out["read"] = rows
odoo.execute_kw('stock.picking', 'write', [[rows[0]['id']], {'carrier_tracking_ref': 'TRK-PY-1'}])
out["after_write"] = odoo.execute_kw('stock.picking', 'read', [[rows[0]['id']]], {'fields': ['carrier_tracking_ref']})
out["count"] = Picking.search_count([('carrier_tracking_ref', '!=', False)])
try:
    odoo.execute_kw('stock.picking', 'read', [[9999]], {'fields': ['name']})
except odoorpc.error.RPCError as e:
    out["error"] = {"name": e.info["data"]["name"], "message": str(e)}
try:
    odoorpc.ODOO('127.0.0.1', port=port).login('odoo', sys.argv[2], 'wrong')
    out["bad_login"] = "accepted"
except odoorpc.error.RPCError as e:
    out["bad_login"] = str(e)
print(json.dumps(out))
"#;

#[tokio::test]
async fn odoorpc_logs_in_reads_and_writes() {
    let python = tokio::task::spawn_blocking(venv_python).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let odoo = odoo_double::start(DoubleConfig::default(), listener).await.unwrap();
    let d = &odoo.double;
    let partner = d.seed("res.partner", json!({"name": "Acme BV"}));
    for (name, state, prio, code) in [
        ("WH/OUT/00001", "assigned", "0", "outgoing"),
        ("WH/OUT/00002", "confirmed", "1", "outgoing"),
        ("WH/OUT/00003", "confirmed", "0", "outgoing"),
        ("WH/IN/00001", "assigned", "0", "incoming"),
    ] {
        d.seed(
            "stock.picking",
            json!({"name": name, "state": state, "priority": prio, "picking_type_code": code, "partner_id": partner}),
        );
    }
    let port = odoo.addr.port().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python).args(["-c", SCRIPT, &port, BOT_LOGIN, BOT_PASSWORD]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "odoorpc failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], "17.0");
    assert_eq!(v["uid"], 6);
    let names: Vec<&str> = v["read"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["WH/OUT/00001", "WH/OUT/00002"],
        "the domain selects assigned, or confirmed and starred, outgoing"
    );
    assert_eq!(v["read"][0]["partner_id"], json!([partner, "Acme BV"]), "many2one reads as [id, name]");
    assert_eq!(v["after_write"][0]["carrier_tracking_ref"], "TRK-PY-1");
    assert_eq!(v["count"], 1);
    assert_eq!(v["error"]["name"], "odoo.exceptions.MissingError");
    assert!(v["error"]["message"].as_str().unwrap().contains("Record does not exist"), "{}", v["error"]);
    assert_eq!(v["bad_login"], "Wrong login ID or password");
    assert_eq!(d.record("stock.picking", 1).unwrap()["carrier_tracking_ref"], "TRK-PY-1");
    odoo.stop();
}
