//! Wiring of the integrity checks for `serve`: the artifact checker from its flags, with
//! credentials read from Secrets when the Kubernetes API is available.

use crate::config::IntegrityArgs;
use crate::integrity::check::{ArtifactChecker, CheckConfig, Credentials, HttpArtifacts};
use crate::k8s::secrets::SecretReader;
use crate::metrics::Metrics;
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;

/// The artifact checker `--verify-artifacts` asks for, or `None`.
pub fn artifact_checker(
    args: &IntegrityArgs,
    client: Option<kube::Client>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Option<ArtifactChecker>> {
    if !args.verify_artifacts {
        return Ok(None);
    }
    let ca = args
        .artifact_ca_file
        .as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading --artifact-ca-file {}", p.display())))
        .transpose()?;
    let budget = args.artifact_check_budget.max(Duration::from_millis(1));
    let credentials: Option<Arc<dyn Credentials>> = match client {
        Some(c) => Some(Arc::new(SecretReader::new(c, args.artifact_check_cache_ttl, budget))),
        None => {
            tracing::warn!("--verify-artifacts without the Kubernetes API: repositories that name credentials cannot be checked, their hits miss");
            None
        }
    };
    let store = HttpArtifacts::new(credentials, budget, ca.as_deref())?;
    Ok(Some(ArtifactChecker::new(
        Arc::new(store),
        CheckConfig { budget, cache_ttl: args.artifact_check_cache_ttl },
        metrics,
    )))
}
