//! Direct store measurements: the synthetic fill (with progress) and lookup latency after it.

use crate::args::BenchArgs;
use crate::report::percentile;
use anyhow::{anyhow, bail};
use std::time::{Duration, Instant};
use stepcache::store::{Store, StoreOptions};
use stepcache::types::Staleness;

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

/// Direct store lookup latency after the fill; with `--versus-database-url`, interleaved with
/// lookups in a second store, and the ratio of the two.
pub async fn measure_lookups(args: &BenchArgs, n: usize) -> anyhow::Result<serde_json::Value> {
    let db = args.database_url.clone().ok_or_else(|| anyhow!("--store-lookups needs --database-url"))?;
    let ns = "bench-lookup";
    let store = open(&db).await?;
    let t = Instant::now();
    if !args.no_fill && args.fill > 0 {
        fill_with_progress(&store, args.fill, ns).await?;
    }
    let fill_s = t.elapsed().as_secs_f64();
    let mut sides = vec![Side { store, rows: args.fill.max(1), lat: Vec::with_capacity(n) }];
    if let Some(url) = &args.versus_database_url {
        sides.push(Side { store: open(url).await?, rows: args.versus_fill.max(1), lat: Vec::with_capacity(n) });
    }
    let now = jiff::Timestamp::now();
    // Warm the pools and the statement caches.
    for side in &sides {
        for i in 0..50u64 {
            side.store.lookup(&stepcache::store::synthetic_key(ns, i % side.rows), Staleness::Unbounded, now).await?;
        }
    }
    // A new key sequence per run (from the clock, reported), so a second run does not find the
    // first run's pages already cached.
    let seed = (now.as_nanosecond() as u64) | 1;
    let mut x = seed;
    for _ in 0..n {
        for side in &mut sides {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = stepcache::store::synthetic_key(ns, x % side.rows);
            let t = Instant::now();
            // The webhook's own query: the candidate and the key's newest entry in one round trip.
            let hit = side.store.lookup_explained(&key, Staleness::Unbounded, now).await?.candidate;
            side.lat.push(t.elapsed());
            if hit.is_none() {
                bail!("synthetic key {key} not found: was the store filled with {} rows?", side.rows);
            }
        }
    }
    let backend = sides.first().map(|s| format!("{:?}", s.store.backend())).unwrap_or_default();
    let mut measured = sides.iter_mut().map(|side| {
        side.lat.sort();
        Measured {
            rows: side.rows,
            p50_ms: percentile(&side.lat, 50.0),
            p99_ms: percentile(&side.lat, 99.0),
            p999_ms: percentile(&side.lat, 99.9),
        }
    });
    let first = measured.next().ok_or_else(|| anyhow!("no store measured"))?;
    let versus = measured.next();
    let mut out = serde_json::json!({
        "backend": backend,
        "rows_filled": args.fill,
        "fill_seconds": fill_s,
        "lookups": n,
        "seed": seed,
        "query": "lookup_explained",
        "p50_ms": first.p50_ms,
        "p99_ms": first.p99_ms,
        "p999_ms": first.p999_ms,
    });
    if let (Some(v), Some(obj)) = (versus, out.as_object_mut()) {
        obj.insert("ratio_p50".into(), (first.p50_ms / v.p50_ms).into());
        obj.insert("ratio_p99".into(), (first.p99_ms / v.p99_ms).into());
        obj.insert("versus".into(), serde_json::to_value(&v)?);
    }
    Ok(out)
}

/// Latency percentiles of one store's lookups.
#[derive(serde::Serialize)]
struct Measured {
    rows: u64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
}

/// One store of a lookup measurement and what was measured on it.
struct Side {
    store: Store,
    rows: u64,
    lat: Vec<Duration>,
}

async fn open(url: &str) -> anyhow::Result<Store> {
    let store = Store::connect(url, StoreOptions { timeout: Duration::from_secs(3600), max_connections: 4 }).await?;
    store.migrate().await?;
    Ok(store)
}
