//! docs/policy.md documents every field of the expression context.

#[test]
fn every_context_field_is_documented() {
    let doc = include_str!("../../../docs/policy.md");
    for (path, field) in dispatch_policy::schema::all_paths() {
        let needle = format!("`{path}`");
        assert!(doc.contains(&needle), "docs/policy.md does not document {path} ({})", field.doc);
    }
}
