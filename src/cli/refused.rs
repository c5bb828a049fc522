//! `stepcache refused`: the keys blocked by refused hits (a hit pod the API server refused after
//! stepcache answered it), listed and cleared by operators once the cause is fixed. Owns its
//! clap arguments and its run function.

use crate::config::Output;
use crate::store::Store;
use clap::Subcommand;

/// `refused` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum RefusedCommand {
    /// List the blocked keys, oldest refusal first, with the cause.
    List {
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Serve a key again (in one namespace, or everywhere), or every key of a namespace; prints
    /// how many blocks were cleared. Replicas pick the clear up within `--refused-hit-refresh`.
    Clear {
        /// The cache key (`stepcache refused list` shows it).
        #[arg(long, required_unless_present = "namespace")]
        key: Option<String>,
        /// The namespace.
        #[arg(long)]
        namespace: Option<String>,
    },
}

/// Runs a `refused` subcommand.
pub async fn run(store: &Store, cmd: &RefusedCommand) -> anyhow::Result<()> {
    match cmd {
        RefusedCommand::List { output } => {
            let rows = store.refused_hits().await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                Output::Table => {
                    let mut lines =
                        vec![["REFUSED", "NAMESPACE", "POD", "ENTRY", "KEY", "CAUSE"].map(String::from).to_vec()];
                    for r in &rows {
                        lines.push(vec![
                            r.refused_at.to_string(),
                            r.namespace.clone(),
                            r.pod_name.clone(),
                            r.entry_id.to_string(),
                            r.key.clone(),
                            r.cause.clone(),
                        ]);
                    }
                    print!("{}", super::entries::render(&lines));
                }
            }
        }
        RefusedCommand::Clear { key, namespace } => {
            let n = store.clear_refused(key.as_deref(), namespace.as_deref()).await?;
            println!("{n}");
        }
    }
    Ok(())
}
