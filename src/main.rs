//! The `stepcache` binary: parses flags and dispatches to the commands.
#![forbid(unsafe_code)]

use stepcache::cli;

/// mimalloc instead of glibc's malloc: an admission allocates and frees many small objects on
/// whichever worker thread runs it, and glibc's per-arena locking and consolidation showed as
/// the largest user-space cost in a profile of `serve` under load (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use stepcache::config::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = parse_args();
    if matches!(args.command, Command::Noop) {
        return std::process::ExitCode::SUCCESS;
    }
    stepcache::telemetry::init(&args.telemetry);
    match run(args.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: operators script against this.
            eprintln!("stepcache: {}", format!("{e:#}").replace('\n', " "));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Parses the command line; installed as `kubectl-stepcache`, the binary is the kubectl plugin
/// `kubectl stepcache ...` and says so in its help.
fn parse_args() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let mut cmd = Cli::command();
    if stepcache::cli::invoked_as_kubectl_plugin(std::path::Path::new(&argv0)) {
        cmd = cmd.bin_name("kubectl stepcache");
    }
    let matches = cmd.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(s) => cli::serve::serve(*s).await,
        Command::Certs { out, dns } => cli::certs(&out, &dns),
        Command::Migrate { store } => {
            cli::migrate(&store).await?;
            println!("migrations applied to {}", cli::redact(&store.database_url));
            Ok(())
        }
        Command::Review { explain, now, store, signing, policy } => {
            cli::review(explain, now, &store, &signing, &policy).await
        }
        Command::Key { scope } => cli::key(scope),
        Command::Record { pod, task_result, workflow, now, store, signing, policy } => {
            cli::record(&pod, task_result.as_deref(), workflow.as_deref(), now, &store, &signing, &policy).await
        }
        Command::RecordController { watch_namespaces, store, signing, policy } => {
            cli::serve::record_controller(watch_namespaces, &store, &signing, &policy).await
        }
        Command::Entries { command, store } => {
            let s = cli::open_store(&store).await?;
            cli::entries::run(&s, &command).await
        }
        Command::Refused { command, store } => cli::refused::run(&cli::open_store(&store).await?, &command).await,
        Command::Gc { batch, now, store } => cli::entries::gc(&cli::open_store(&store).await?, batch, now).await,
        Command::Stats { output, store } => cli::entries::stats(&cli::open_store(&store).await?, output).await,
        Command::Why { target, namespace, output, scope, store } => {
            cli::why::why(&target, namespace, output, scope, &cli::open_store(&store).await?).await
        }
        Command::Noop => Ok(()),
        Command::Wait { url, token, ca_bundle, interval, timeout } => {
            match cli::wait::wait(&url, &token, ca_bundle.as_deref(), interval, timeout).await? {
                cli::wait::WaitOutcome::Done => Ok(()),
                cli::wait::WaitOutcome::Run => {
                    eprintln!("stepcache: latch leader failed; this step must run (exit 75 so Argo retries it)");
                    std::process::exit(75)
                }
            }
        }
    }
}
