//! Direct store measurements: the synthetic fill (with progress) and lookup latency after it.

use crate::args::BenchArgs;
use crate::report::percentile;
use anyhow::{anyhow, bail};
use std::time::{Duration, Instant};
use stepcache::store::{Store, StoreOptions};

/// Rows per fill statement when reporting progress: large enough that the per-statement cost
/// is noise, small enough for a line every few seconds.
const FILL_CHUNK: u64 = 100_000;

/// [`Store::fill_synthetic`] in chunks, reporting progress (keys stay distinct and numbered on
/// across chunks, since each chunk starts after the namespace's existing rows).
pub async fn fill_with_progress(store: &Store, n: u64, ns: &str) -> anyhow::Result<u64> {
    let mut progress = stepcache::cli::progress::Reporter::new("fill", "rows", Some(n));
    let mut done = 0u64;
    while done < n {
        done += store.fill_synthetic(FILL_CHUNK.min(n - done), ns, true, jiff::Timestamp::now()).await?;
        progress.update(done);
    }
    progress.finish(done);
    Ok(done)
}

/// Direct store lookup latency after the fill: (p50 ms, p99 ms, lookups).
pub async fn measure_lookups(args: &BenchArgs, n: usize) -> anyhow::Result<serde_json::Value> {
    let db = args.database_url.clone().ok_or_else(|| anyhow!("--store-lookups needs --database-url"))?;
    let store = Store::connect(&db, StoreOptions { timeout: Duration::from_secs(3600), max_connections: 4 }).await?;
    store.migrate().await?;
    let ns = "bench-lookup";
    let t = Instant::now();
    if !args.no_fill && args.fill > 0 {
        fill_with_progress(&store, args.fill, ns).await?;
    }
    let fill_s = t.elapsed().as_secs_f64();
    let now = jiff::Timestamp::now();
    let mut lat = Vec::with_capacity(n);
    let total = args.fill.max(1);
    // Warm the pool and the statement cache.
    for i in 0..50u64 {
        store
            .lookup(&stepcache::store::synthetic_key(ns, i % total), stepcache::types::Staleness::Unbounded, now)
            .await?;
    }
    // A new key sequence per run (from the clock, reported), so a second run does not find the
    // first run's pages already cached.
    let seed = (now.as_nanosecond() as u64) | 1;
    let mut x = seed;
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = stepcache::store::synthetic_key(ns, x % total);
        let t = Instant::now();
        // The webhook's own query: the candidate and the key's newest entry in one round trip.
        let hit = store.lookup_explained(&key, stepcache::types::Staleness::Unbounded, now).await?.candidate;
        lat.push(t.elapsed());
        if hit.is_none() {
            bail!("synthetic key {key} not found: was the fill done with this namespace?");
        }
    }
    lat.sort();
    Ok(serde_json::json!({
        "backend": format!("{:?}", store.backend()),
        "rows_filled": args.fill,
        "fill_seconds": fill_s,
        "lookups": n,
        "seed": seed,
        "query": "lookup_explained",
        "p50_ms": percentile(&lat, 50.0),
        "p99_ms": percentile(&lat, 99.0),
        "p999_ms": percentile(&lat, 99.9),
    }))
}
