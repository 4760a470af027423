//! Every class of invalid policy is refused as a whole, with the file, line and column of the
//! mistake (inside a CEL expression too) and a message that says what to do.

use dispatch_policy::{DEFAULT_POLICY, Policy, PolicyError};

fn refuse(src: &str) -> Vec<PolicyError> {
    match Policy::compile(src, "p.toml", Some(&["AMS".into(), "DUS".into(), "MAN".into()])) {
        Ok(_) => panic!("accepted:\n{src}"),
        Err(e) => e.errors,
    }
}

/// The default policy with `from` replaced by `to` (which must occur once).
fn edit(from: &str, to: &str) -> String {
    assert_eq!(DEFAULT_POLICY.matches(from).count(), 1, "{from}");
    DEFAULT_POLICY.replace(from, to)
}

/// Line and column of the first occurrence of `needle` in `src`.
fn at(src: &str, needle: &str) -> (usize, usize) {
    let i = src.find(needle).unwrap_or_else(|| panic!("{needle} not in source"));
    let line = src[..i].matches('\n').count() + 1;
    let col = src[..i].rfind('\n').map_or(i, |n| i - n - 1) + 1;
    (line, col)
}

fn one(src: &str, kind: &str) -> PolicyError {
    let errs = refuse(src);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].kind, kind, "{errs:#?}");
    assert_eq!(errs[0].file, "p.toml");
    errs[0].clone()
}

#[test]
fn the_default_policy_compiles() {
    let p = Policy::compile(DEFAULT_POLICY, "default.toml", Some(&["AMS".into()])).unwrap();
    assert!(p.hash.starts_with("sha256:") && p.hash.len() == 71);
    assert!(p.time_dependent_priority());
    let (fast, total) = p.fast_path_coverage();
    assert_eq!(fast, total, "every expression of the default policy runs on the fast path");
    assert!(total > 25);
}

#[test]
fn toml_errors_point_at_the_line() {
    let src = edit("max = 1000", "max = 1000 1000");
    let e = one(&src, "toml");
    assert_eq!(e.line, at(&src, "max = 1000 1000").0);
    let src = edit("honour_preference = true", "honor_preference = true");
    let e = one(&src, "toml");
    assert!(e.message.contains("honor_preference"), "{e}");
    assert_eq!(e.line, at(&src, "honor_preference").0);
}

#[test]
fn a_cel_syntax_error_is_located_inside_the_expression() {
    let src = edit("when = 'size(order.address_problems) > 0'", "when = 'size(order.address_problems) > > 0'");
    let e = one(&src, "syntax");
    let (line, col) = at(&src, "> > 0");
    assert_eq!((e.line, e.column), (line, col + 2), "{e}");
    assert!(e.message.contains("hold rule `address`"), "{e}");
}

#[test]
fn an_unknown_field_is_named_with_a_suggestion() {
    let src = edit("order.units_allocated > 0 &&", "order.units_alocated > 0 &&");
    let e = one(&src, "unknown_field");
    let (line, col) = at(&src, "order.units_alocated");
    assert_eq!(e.line, line);
    // CEL places a field selection at its dot.
    assert_eq!(e.column, col + "order".len(), "{e}");
    assert!(e.message.contains("`order` has no field `units_alocated`"), "{e}");
    assert!(e.message.contains("Did you mean `units_allocated`"), "{e}");
    // Unknown variables, and unknown fields of the model's `risk`.
    let e = one(&edit("customer.credit_status in", "client.credit_status in"), "unknown_field");
    assert!(e.message.contains("unknown variable `client`"), "{e}");
    let e = one(&edit("size(order.missing_documents) > 0", "risk.score > 0.5"), "unknown_field");
    assert!(e.message.contains("`risk` has no field `score`"), "{e}");
}

#[test]
fn type_errors_are_refused() {
    // int + double without conversion
    let e = one(&edit("expr = 'order.value / 50.0'", "expr = 'order.value / 50'"), "type");
    assert!(e.message.contains("mixes an int and a double"), "{e}");
    // a condition that is not a bool
    let e = one(&edit("when = 'size(order.missing_documents) > 0'", "when = 'size(order.missing_documents)'"), "type");
    assert!(e.message.contains("must give a bool"), "{e}");
    // comparing a string with a number
    let e = one(&edit("order.payment.status == \"overdue\"", "order.payment.status == 3"), "type");
    assert!(e.message.contains("compares a string with a int"), "{e}");
    // an unknown function
    let e = one(&edit("size(order.address_problems) > 0", "count(order.address_problems) > 0"), "type");
    assert!(e.message.contains("unknown function `count`"), "{e}");
}

#[test]
fn unknown_reason_codes_and_carriers_are_refused() {
    let src = edit("reason = \"docs_missing\"", "reason = \"docs_mising\"");
    let e = one(&src, "unknown_reason");
    assert_eq!((e.line, e.column), at(&src, "\"docs_mising\""));
    assert!(e.message.contains("Did you mean `docs_missing`"), "{e}");
    let src = edit("carriers = [\"ups\", \"dhl\"]", "carriers = [\"ups\", \"dhll\"]");
    let e = one(&src, "unknown_carrier");
    assert_eq!((e.line, e.column), at(&src, "\"dhll\""));
    assert!(e.message.contains("Did you mean `dhl`"), "{e}");
}

#[test]
fn oversize_expressions_are_refused() {
    let long = format!("when = '{}'", vec!["order.hazmat"; 200].join(" || "));
    let e = one(&edit("when = 'size(order.address_problems) > 0'", &long), "too_large");
    assert!(e.message.contains("over the limit"), "{e}");
    let many = format!("when = 'size([{}]) > 0'", vec!["1"; 500].join(","));
    let e = one(&edit("when = 'size(order.address_problems) > 0'", &many), "too_large");
    assert!(e.message.contains("parts"), "{e}");
}

#[test]
fn several_mistakes_are_all_reported_in_file_order() {
    let src = edit("reason = \"docs_missing\"", "reason = \"nope\"").replace("max = 1000\n", "max = -1\n");
    let src = src.replace("'customer.tier in [", "'custmer.tier in [");
    let errs = refuse(&src);
    assert!(errs.len() >= 3, "{errs:#?}");
    assert!(errs.windows(2).all(|w| (w[0].line, w[0].column) <= (w[1].line, w[1].column)));
    let text = dispatch_policy::PolicyErrors { errors: errs }.to_string();
    assert!(text.lines().all(|l| l.starts_with("p.toml:")), "{text}");
}

#[test]
fn structure_errors() {
    let e = one(&edit("id = \"credit\"", "id = \"stock_short\""), "invalid");
    assert!(e.message.contains("used twice"), "{e}");
    let e = one(&edit("check = \"address\"", "check = \"adress\""), "invalid");
    assert!(e.message.contains("unknown check"), "{e}");
    let src = edit(
        "[cutoffs]\n",
        "[cutoffs]\n[[cutoffs.override]]\nwarehouse = \"XYZ\"\nservice_level = \"same_day\"\ntime = \"25:00\"\n",
    );
    let errs = refuse(&src);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs[0].message.contains("unknown warehouse `XYZ`"));
    assert!(errs[1].message.contains("HH:MM"));
    let e = one(
        &edit("message = 'missing: {order.missing_documents.join(\", \")}'", "message = 'missing: {order.missing}'"),
        "unknown_field",
    );
    let (line, _) = at(
        &edit("message = 'missing: {order.missing_documents.join(\", \")}'", "message = 'missing: {order.missing}'"),
        "{order.missing}",
    );
    assert_eq!(e.line, line);
}

#[test]
fn monitor_thresholds_are_read_and_an_unknown_state_is_refused() {
    let p = Policy::compile(DEFAULT_POLICY, "default.toml", Some(&["AMS".into()])).unwrap();
    assert_eq!(p.monitors, dispatch_core::monitor::Thresholds::default(), "defaults without [monitors]");
    let src =
        format!("{DEFAULT_POLICY}\n[monitors]\nbooking_within_minutes = 45\nqueue_age_minutes = {{ on_hold = 60 }}\n");
    let p = Policy::compile(&src, "p.toml", Some(&["AMS".into(), "DUS".into(), "MAN".into()])).unwrap();
    assert_eq!(p.monitors.booking_within_minutes, 45);
    assert_eq!(p.monitors.queue_age(dispatch_core::OrderState::OnHold), Some(chrono::Duration::minutes(60)));
    let bad = format!("{DEFAULT_POLICY}\n[monitors]\nqueue_age_minutes = {{ waiting = 60 }}\n");
    let e = one(&bad, "invalid");
    assert!(e.message.contains("waiting"), "{e:?}");
}
