//! Rebuilds when a migration is added: `sqlx::migrate!` embeds the files at compile time but
//! only notices edits to files it already knows.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
