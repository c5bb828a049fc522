//! The decision core stays pure, and the compiler keeps it so: `crates/stepcache-core` has no
//! async runtime, database, HTTP, CLI, logging or Kubernetes client in its dependency tree (what
//! `cargo tree` shows is the fact checked here), and none of its code reads the clock, the
//! environment or files — which is what lets `stepcache key` and `stepcache review --now`
//! explain any decision offline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Crate families (the crate and its `-`/`_` companions) the core must never depend on.
const FORBIDDEN_FAMILIES: &[&str] = &["tokio", "sqlx", "axum", "hyper", "clap", "reqwest", "tracing"];
/// The Kubernetes client crates (the types in `kube-core` and `k8s-openapi` are allowed).
const FORBIDDEN_CRATES: &[&str] = &["kube", "kube-client", "kube-runtime"];

/// What the compiler cannot see: reading the clock, the environment or files.
const FORBIDDEN_CALLS: &[&str] = &["Timestamp::now", "SystemTime::now", "Instant::now", "std::env", "std::fs"];

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Crate names in the core's normal and build dependency tree, from `cargo tree`.
fn core_dependency_names() -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace())
        .args(["tree", "--locked", "--offline", "-p", "stepcache-core", "-e", "normal,build", "--prefix", "none"])
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut names: Vec<String> = text.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect();
    names.sort();
    names.dedup();
    names
}

fn is_forbidden(name: &str) -> bool {
    FORBIDDEN_CRATES.contains(&name)
        || FORBIDDEN_FAMILIES
            .iter()
            .any(|f| name == *f || name.starts_with(&format!("{f}-")) || name.starts_with(&format!("{f}_")))
}

#[test]
fn the_core_crate_depends_on_no_runtime_database_http_cli_logging_or_kubernetes_client() {
    let names = core_dependency_names();
    assert!(names.iter().any(|n| n == "stepcache-core"), "cargo tree did not list the core: {names:?}");
    assert!(names.iter().any(|n| n == "k8s-openapi"), "the core's Kubernetes types are missing: {names:?}");
    let bad: Vec<&String> = names.iter().filter(|n| is_forbidden(n)).collect();
    assert!(bad.is_empty(), "the core depends on {bad:?}");
}

#[test]
fn the_forbidden_list_recognises_what_it_forbids() {
    for n in ["tokio", "tokio-util", "sqlx-core", "hyper-util", "tracing-core", "kube-client", "clap_builder"] {
        assert!(is_forbidden(n), "{n}");
    }
    for n in ["k8s-openapi", "serde_json", "sha2", "kube-core", "jiff"] {
        assert!(!is_forbidden(n), "{n}");
    }
}

fn rust_files(dir: PathBuf) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn the_core_reads_no_clock_environment_or_files() {
    let files = rust_files(workspace().join("crates/stepcache-core/src"));
    assert!(files.len() >= 15, "core sources not found: {files:?}");
    for f in files {
        let src = std::fs::read_to_string(&f).unwrap();
        // Only production code counts: cut the unit-test module.
        let prod = src.split("#[cfg(test)]").next().unwrap_or("");
        for line in prod.lines().map(str::trim).filter(|l| !l.starts_with("//")) {
            for bad in FORBIDDEN_CALLS {
                assert!(!line.contains(bad), "{} uses {bad}: {line}", f.display());
            }
        }
    }
}

#[test]
fn every_module_says_what_it_owns() {
    for root in ["src", "crates/stepcache-core/src"] {
        for p in rust_files(workspace().join(root)) {
            if p.file_name().is_some_and(|n| n == "main.rs") {
                continue;
            }
            let src = std::fs::read_to_string(&p).unwrap();
            assert!(src.trim_start().starts_with("//!"), "{} lacks a //! module doc", p.display());
        }
    }
}
