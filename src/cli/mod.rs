//! Command implementations. Edge layer: may use `anyhow` and print to stdout/stderr.

pub mod entries;
pub mod integrity;
pub mod progress;
pub mod refused;
pub mod serve;
pub mod wait;
pub mod why;

use crate::admission::decode::{decode, Subject};
use crate::admission::{AdmitConfig, Admitter, Ports};
use crate::config::{PolicyArgs, SigningArgs, StoreArgs};
use crate::mark::Signer;
use crate::metrics::Metrics;
use crate::recorder::assess::RecordSettings;
use crate::recorder::{Attempt, Recorder};
use crate::store::{Store, StoreOptions};
use anyhow::{anyhow, bail, Context};
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// The file name kubectl looks for to run `kubectl stepcache ...`.
pub const KUBECTL_PLUGIN_NAME: &str = "kubectl-stepcache";

/// True when the binary was started under its kubectl plugin name (a copy or symlink named
/// `kubectl-stepcache` on `PATH`): it then behaves exactly as `stepcache`.
pub fn invoked_as_kubectl_plugin(argv0: &Path) -> bool {
    argv0.file_name().and_then(|n| n.to_str()).is_some_and(|n| n == KUBECTL_PLUGIN_NAME)
}

/// Opens the store and applies migrations.
pub async fn open_store(args: &StoreArgs) -> anyhow::Result<Store> {
    let opts = StoreOptions { timeout: args.store_timeout, max_connections: args.store_pool };
    let store = Store::connect(&args.database_url, opts)
        .await
        .with_context(|| format!("opening store {}", redact(&args.database_url)))?;
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}

/// `stepcache migrate`: applies pending migrations, reporting progress (a line at the start,
/// periodic lines while a long migration runs, and the total).
pub async fn migrate(args: &StoreArgs) -> anyhow::Result<()> {
    let opts = StoreOptions { timeout: args.store_timeout, max_connections: args.store_pool };
    let store = Store::connect(&args.database_url, opts)
        .await
        .with_context(|| format!("opening store {}", redact(&args.database_url)))?;
    let pending = store.pending_migrations().await.context("reading applied migrations")?;
    let mut progress = progress::Reporter::new("migrate", "migrations", Some(pending));
    progress.update(0);
    let run = store.migrate();
    tokio::pin!(run);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    let result = loop {
        tokio::select! {
            r = &mut run => break r,
            _ = tick.tick() => progress.update(0),
        }
    };
    result.context("applying migrations")?;
    progress.finish(pending);
    Ok(())
}

/// Hides a password in a database URL for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let Some((creds, host)) = rest.rsplit_once('@') else { return url.to_owned() };
    match creds.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// Resolves the mark-signing secret: flag/env, else the key file (generated on first use).
pub fn signer(args: &SigningArgs) -> anyhow::Result<Signer> {
    if let Some(k) = &args.signing_key {
        return Signer::new(k.trim().as_bytes()).map_err(|e| anyhow!("STEPCACHE_SIGNING_KEY: {e}"));
    }
    let path = &args.signing_key_file;
    if !path.exists() {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let secret: [u8; 32] = rand::random();
        std::fs::write(path, hex::encode(secret)).with_context(|| format!("writing {}", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        eprintln!("stepcache: generated a signing key in {}", path.display());
    }
    let raw = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Signer::new(raw.trim().as_bytes()).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Builds the admission service for offline use (`review`).
pub fn offline_admitter(store: Store, signer: Signer, policy: &PolicyArgs) -> Admitter {
    Admitter {
        config: Arc::new(AdmitConfig {
            admin: policy.admin(),
            scope: policy.scope,
            rewrite: policy.rewrite(),
            explain_misses: policy.explain_misses,
            noop: None,
            latch: policy.latch_config().unwrap_or_default(),
            ignore_moved_images: policy.ignore_moved_images,
        }),
        store,
        signer,
        ports: Ports::offline(),
        metrics: Arc::new(Metrics::new()),
    }
}

fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin().read_to_end(&mut buf).context("reading stdin")?;
    Ok(buf)
}

/// `stepcache review`: one AdmissionReview on stdin → the response `/mutate` would return.
pub async fn review(
    explain: bool,
    now: Option<jiff::Timestamp>,
    store: &StoreArgs,
    signing: &SigningArgs,
    policy: &PolicyArgs,
) -> anyhow::Result<()> {
    let body = read_stdin()?;
    let decoded = decode(&body).map_err(|e| anyhow!("{e}"))?;
    let store = open_store(store).await?;
    let admitter = offline_admitter(store, signer(signing)?, policy);
    let outcome = admitter.admit(&decoded, now.unwrap_or_else(jiff::Timestamp::now)).await;
    for note in &outcome.explain.offline_assumed {
        eprintln!("stepcache review: offline difference from /mutate: {note}");
    }
    let out = if explain {
        serde_json::json!({"review": outcome.review, "explain": outcome.explain})
    } else {
        serde_json::to_value(&outcome.review)?
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// Extracts a pod from an AdmissionReview or a bare Pod document.
pub fn pod_from_json(body: &[u8]) -> anyhow::Result<Pod> {
    let v: Value = serde_json::from_slice(body).context("input is not JSON")?;
    if v.get("kind").and_then(Value::as_str) == Some("AdmissionReview") {
        let d = decode(body).map_err(|e| anyhow!("{e}"))?;
        return match d.subject {
            Subject::PodCreate(mut p) => {
                if p.metadata.namespace.is_none() {
                    p.metadata.namespace = d.namespace;
                }
                Ok(*p)
            }
            Subject::Ignored(r) | Subject::Unreadable(r) => bail!("{r}"),
        };
    }
    serde_json::from_value(v).context("input is neither an AdmissionReview nor a Pod")
}

/// `stepcache key`: prints the key and canonical material of a step pod.
pub fn key(scope: crate::key::Scope) -> anyhow::Result<()> {
    use crate::argo::template::{classify, Classification};
    let pod = pod_from_json(&read_stdin()?)?;
    let step = match classify(&pod) {
        Classification::Step(s) => s,
        Classification::Skip(r) => bail!("not cacheable: {r}"),
        Classification::NotArgo => bail!("not an Argo step pod: no {} label", crate::argo::labels::WORKFLOW_LABEL),
    };
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let ann = pod.metadata.annotations.clone().unwrap_or_default();
    let seed = match crate::policy::plan(&labels, &ann, &Default::default()) {
        crate::policy::Plan::Lookup(s) => s.seed,
        crate::policy::Plan::Invalid { warnings } => bail!("{}", warnings.join("; ")),
        crate::policy::Plan::OptedOut { .. } => Default::default(),
    };
    let km = crate::key::derive_key(&pod, &step, &seed, scope).map_err(|e| anyhow!("{e}"))?;
    println!("{}", serde_json::to_string_pretty(&km)?);
    Ok(())
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&raw).with_context(|| format!("{} is not JSON", path.display()))
}

/// `stepcache record`: records a succeeded, marked pod from files; prints the stored entry.
#[allow(clippy::too_many_arguments)]
pub async fn record(
    pod: &Path,
    task_result: Option<&Path>,
    workflow: Option<&Path>,
    now: Option<jiff::Timestamp>,
    store: &StoreArgs,
    signing: &SigningArgs,
    policy: &PolicyArgs,
) -> anyhow::Result<()> {
    let pod_doc = std::fs::read(pod).with_context(|| format!("reading {}", pod.display()))?;
    let pod = pod_from_json(&pod_doc)?;
    let tr = task_result.map(read_json).transpose()?;
    let wf = workflow.map(read_json).transpose()?;
    let recorder = Recorder {
        store: open_store(store).await?,
        signer: signer(signing)?,
        settings: Arc::new(RecordSettings { scope: policy.scope, default_expiry: policy.default_expiry }),
        metrics: Arc::new(Metrics::new()),
        tags: Default::default(),
        configmaps: None,
        secret_digests: None,
    };
    let src = crate::recorder::assess::OutputSources { task_result: tr.as_ref(), workflow: wf.as_ref() };
    match recorder.record(&pod, &src, now.unwrap_or_else(jiff::Timestamp::now)).await {
        Attempt::Recorded(e) | Attempt::AlreadyRecorded(e) => {
            println!("{}", serde_json::to_string_pretty(&e)?);
            Ok(())
        }
        Attempt::Skipped(r) => bail!("not recorded: {r}"),
        Attempt::Withdrawn(uid) => {
            bail!("not recorded: pod {uid} was recorded before and its entry has been withdrawn (recorded once, ever)")
        }
        Attempt::Failed(e) => bail!("store error: {e}"),
    }
}

/// `stepcache certs`.
pub fn certs(out: &Path, dns: &[String]) -> anyhow::Result<()> {
    let g = crate::tls::generate(out, dns)?;
    eprintln!("CA certificate:      {}", g.ca_cert.display());
    eprintln!("serving certificate: {}", g.cert.display());
    eprintln!("serving key:         {}", g.key.display());
    eprintln!("caBundle for the MutatingWebhookConfiguration (stdout):");
    println!("{}", g.ca_bundle_b64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubectl_plugin_name_is_recognised_through_any_path() {
        assert!(invoked_as_kubectl_plugin(Path::new("/usr/local/bin/kubectl-stepcache")));
        assert!(invoked_as_kubectl_plugin(Path::new("kubectl-stepcache")));
        assert!(!invoked_as_kubectl_plugin(Path::new("/usr/local/bin/stepcache")));
        assert!(!invoked_as_kubectl_plugin(Path::new("kubectl-stepcache-old")));
    }
}
