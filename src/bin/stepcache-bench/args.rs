//! The load generator's flags: what to send, how fast, against which store.

use clap::Args;
use std::path::PathBuf;

/// Load generator flags.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Requests per second per phase (open loop: sent on schedule, latency measured from the
    /// scheduled send time); 0 = closed loop at max throughput with `--concurrency` workers.
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// Workers in closed-loop mode; in-flight cap in open-loop mode.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Requests per server (split over the phases).
    #[arg(long, default_value_t = 10_000)]
    pub requests: usize,
    /// Phases per server (baseline and subject alternate).
    #[arg(long, default_value_t = 4)]
    pub phases: usize,
    /// Store of the subject server (`sqlite://...` or `postgres://...`); default: a temp SQLite file.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Synthetic entries to load before measuring.
    #[arg(long, default_value_t = 10_000)]
    pub fill: u64,
    /// Traffic mix: `miss` (fresh keys), `hit` (pre-recorded keys) or `mixed` (half each).
    #[arg(long, default_value = "mixed")]
    pub mix: String,
    /// The baseline server: `noop` (`serve --noop`: TLS, HTTP and JSON only) or `floor`
    /// (`serve --noop --noop-lookup`: the no-op plus one store lookup per request, the floor of a
    /// webhook that must ask its store).
    #[arg(long, default_value = "noop", value_parser = ["noop", "floor"])]
    pub baseline: String,
    /// Skip the store fill (reuse a filled database).
    #[arg(long)]
    pub no_fill: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The stepcache binary to start the servers from (default: `stepcache` next to this
    /// executable).
    #[arg(long)]
    pub server_binary: Option<PathBuf>,
    /// Instead of the HTTP comparison: time this many direct store lookups of existing keys
    /// (after the fill), reporting p50/p99.
    #[arg(long)]
    pub store_lookups: Option<usize>,
    /// With `--store-lookups`: a second, already filled store (e.g. 10k entries against 10M) to
    /// look up in turn with the first, one lookup each alternately, so machine noise hits both
    /// equally; the report gives both sides and the ratio of the first to this one.
    #[arg(long, requires = "store_lookups")]
    pub versus_database_url: Option<String>,
    /// Rows the `--versus-database-url` store was filled with (its synthetic keys are numbered
    /// below this).
    #[arg(long, default_value_t = 10_000)]
    pub versus_fill: u64,
    /// Instead of the HTTP comparison: record this many succeeded step pods through the
    /// recorder (16 at a time) and report completions per second.
    #[arg(long)]
    pub record: Option<usize>,
}

impl BenchArgs {
    /// The binary the servers start from: `--server-binary`, else the `stepcache` executable
    /// installed next to this one (both come out of the same `cargo build`).
    pub fn server_binary(&self) -> anyhow::Result<PathBuf> {
        if let Some(p) = &self.server_binary {
            return Ok(p.clone());
        }
        let me = std::env::current_exe()?;
        let dir = me.parent().ok_or_else(|| anyhow::anyhow!("{} has no directory", me.display()))?;
        Ok(dir.join(format!("stepcache{}", std::env::consts::EXE_SUFFIX)))
    }
}
