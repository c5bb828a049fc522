//! The load tool end to end, small: a few hundred requests over TLS against the no-op baseline
//! and the real path, asserting zero errors and that hits were served. No timing assertions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use stepcache::bench::{measure, BenchArgs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_smoke_runs_with_zero_errors() {
    let dir = tempfile::tempdir().unwrap();
    let args = BenchArgs {
        rate: 200,
        concurrency: 16,
        requests: 200,
        phases: 2,
        database_url: None,
        fill: 500,
        mix: "mixed".into(),
        no_fill: false,
        json: true,
        server_binary: Some(env!("CARGO_BIN_EXE_stepcache").into()),
        store_lookups: None,
        record: None,
    };
    let r = measure(&args, dir.path()).await.unwrap();
    assert_eq!(r.baseline.errors, 0, "{r:?}");
    assert_eq!(r.subject.errors, 0, "{r:?}");
    assert_eq!(r.baseline.requests, 200);
    assert_eq!(r.subject.requests, 200);
    assert_eq!(r.baseline.patched, 0, "the baseline never patches");
    assert!(r.subject.patched >= 100, "misses are marked and hits rewritten: {r:?}");
    assert!(r.subject.rss_mib > 0.0);
}
