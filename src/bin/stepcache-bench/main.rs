//! `stepcache-bench`: an open-loop load generator for `/mutate` over real TLS, kept out of the
//! `stepcache` binary and library so the product ships no load tool.
//!
//! It starts two servers from the `stepcache` binary next to this executable (or
//! `--server-binary`) on loopback — the no-op baseline (`serve --noop`: same TLS, HTTP and JSON
//! path, always "allow, no patch") and the real decision path against the chosen store — fills
//! the store, then alternates short phases between them so machine noise hits both, and reports
//! every figure as a ratio to the baseline. `--store-lookups` and `--record` time the store and
//! the recorder directly instead.
#![forbid(unsafe_code)]

mod args;
mod compare;
mod record;
mod report;
mod reviews;
mod store;

use args::BenchArgs;
use clap::Parser;
use stepcache::config::TelemetryArgs;

/// The command line: the load generator's flags and the same logging flags as `stepcache`.
#[derive(Debug, Parser)]
#[command(
    name = "stepcache-bench",
    version,
    about = "Load generator: drive /mutate over TLS and compare against the no-op baseline"
)]
struct Cli {
    /// Load generator flags.
    #[command(flatten)]
    bench: BenchArgs,
    /// Logging options.
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    stepcache::telemetry::init(&cli.telemetry);
    match run(cli.bench).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stepcache-bench: {}", format!("{e:#}").replace('\n', " "));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the chosen measurement and prints its report.
async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(n) = args.store_lookups {
        println!("{}", serde_json::to_string_pretty(&store::measure_lookups(&args, n).await?)?);
        return Ok(());
    }
    if let Some(n) = args.record {
        println!("{}", serde_json::to_string_pretty(&record::measure_recording(&args, n).await?)?);
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("stepcache-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let report = compare::measure(&args, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report::render(&report));
    }
    Ok(())
}
