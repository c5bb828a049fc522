//! The decision core stays pure: no file in it imports an async runtime, a database, an HTTP
//! server or a Kubernetes client, and none reads the clock — which is what lets `stepcache key`
//! and `stepcache review --now` explain any decision offline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

const CORE: &[&str] = &[
    "src/types.rs",
    "src/duration.rs",
    "src/argo/labels.rs",
    "src/argo/template.rs",
    "src/argo/outputs.rs",
    "src/key.rs",
    "src/policy.rs",
    "src/mark.rs",
    "src/rewrite.rs",
    "src/admission/decode.rs",
    "src/admission/respond.rs",
    "src/recorder/assess.rs",
    "src/why.rs",
    "src/status/page.rs",
    "src/status/exposition.rs",
    "src/integrity/artifacts.rs",
    "src/integrity/images.rs",
    "src/integrity/sigv4.rs",
];

const FORBIDDEN: &[&str] = &[
    "tokio",
    "sqlx",
    "axum",
    "kube::Client",
    "reqwest",
    "std::fs",
    "Timestamp::now",
    "SystemTime::now",
    "Instant::now",
    "std::env",
];

#[test]
fn the_decision_core_imports_no_io_and_reads_no_clock() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for f in CORE {
        let src = std::fs::read_to_string(root.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        // Only production code counts: cut the unit-test module.
        let prod = src.split("#[cfg(test)]").next().unwrap_or("");
        for line in prod.lines().map(str::trim).filter(|l| !l.starts_with("//")) {
            for bad in FORBIDDEN {
                assert!(!line.contains(bad), "{f} uses {bad}: {line}");
            }
        }
    }
}

#[test]
fn every_module_says_what_it_owns() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") && p.file_name().is_some_and(|n| n != "main.rs") {
                let src = std::fs::read_to_string(&p).unwrap();
                assert!(src.trim_start().starts_with("//!"), "{} lacks a //! module doc", p.display());
            }
        }
    }
}
