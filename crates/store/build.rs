// `sqlx::migrate!` embeds the migrations when the crate compiles: rebuild it when one is added
// or changed, or a new migration would be missing from an incremental build.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
