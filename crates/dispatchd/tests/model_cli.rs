//! `dispatchd history` and `dispatchd model`: import errors name the line and write nothing;
//! the first trained model becomes active; a worse candidate leaves the active model in place;
//! promote and rollback move the active model.

mod common;

use std::process::{Command, Output};

use common::*;

fn run(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(BIN).args(args).arg("--data-dir").arg(dir).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn active(dir: &std::path::Path) -> String {
    let out = run(dir, &["model", "list"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("active"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_bad_csv_is_refused_with_its_line_and_nothing_is_imported() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("h.csv");
    let header = "order_id,warehouse,carrier,product_family,region,service_level,transport_mode,released_at,release_local,hours_to_cutoff,backlog_at_release,carrier_failures_6h,lines,weight_kg,hazmat,order_value,departed_at,departed_late,shipped_after_promise,hours_late";
    let good = "A/1,AMS,dhl,pumps,NL,next_day,parcel,2026-10-01T08:00:00Z,2026-10-01T10:00:00,7,80,0,2,12.5,false,300,2026-10-01T14:00:00Z,false,false,0";
    let bad = "A/2,AMS,dhl,pumps,NL,next_day,parcel,2026-10-01T08:05:00Z,2026-10-01T10:05:00,7,80,0,two,12.5,false,300,,false,false,0";
    std::fs::write(&csv, format!("{header}\n{good}\n{bad}\n")).unwrap();
    let out = run(dir.path(), &["history", "import", csv.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("line 3: column `lines`"), "{}", text(&out));
    // Not even the good row: training finds no history.
    let out = run(dir.path(), &["model", "train"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("too little history to train"), "{}", text(&out));

    std::fs::write(&csv, format!("{header}\n{good}\n")).unwrap();
    let out = run(dir.path(), &["history", "import", csv.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("imported 1 dispatch records"), "{}", text(&out));
}

#[test]
fn train_promote_and_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["history", "generate", "--scale", "0.05", "--seed", "5"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(dir.path(), &["model", "train"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("is now the active model (no model was active)"), "{}", text(&out));
    assert!(text(&out).contains("warehouse AMS"), "{}", text(&out));
    let first = active(dir.path());
    assert!(first.starts_with("risk-"), "{first}");

    // One boosting round is far worse: refused, the first model stays.
    let out = run(dir.path(), &["model", "train", "--iterations", "1"]);
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(msg.contains("is worse than the active model") && msg.contains("stays active"), "{msg}");
    assert_eq!(active(dir.path()), first);

    // The weak candidate is listed and can still be promoted by hand; rollback undoes that.
    let list = String::from_utf8_lossy(&run(dir.path(), &["model", "list"]).stdout).to_string();
    let candidate = list
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("candidate"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let out = run(dir.path(), &["model", "promote", &candidate]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(active(dir.path()), candidate);
    let out = run(dir.path(), &["model", "rollback"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(active(dir.path()), first);
    let out = run(dir.path(), &["model", "promote", "risk-nope"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("no model risk-nope"), "{}", text(&out));
}
