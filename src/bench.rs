//! `stepcache bench`: an open-loop load generator for `/mutate` over real TLS, reporting
//! latency percentiles and throughput as ratios against a no-op baseline measured in the same run.

use clap::Args;

/// Load generator flags.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Requests per second (open loop); 0 = as fast as possible (closed loop).
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
}

/// Runs the benchmark.
pub async fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("bench: not built yet")
}
