//! `stepcache serve` and `stepcache record-controller`: wiring the webhook, metrics port,
//! certificate reload, periodic gc and the recorder.

use crate::admission::{AdmitConfig, Admitter, HitCounter, Ports, SideEffects, TaskResults};
use crate::config::{KubeMode, ServeArgs};
use crate::k8s::events::EventPoster;
use crate::k8s::taskresult::TaskResultWriter;
use crate::metrics::Metrics;
use crate::recorder::assess::RecordSettings;
use crate::recorder::watch::{self, WatchConfig};
use crate::recorder::Recorder;
use crate::server::{self, AppState};
use crate::store::{Store, StoreOptions};
use crate::supervise::supervise;
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How often hit counts are written in a batch.
const HIT_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// Bound on the last hit-count flush at shutdown.
const SHUTDOWN_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before a stopped background loop is started again.
const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// Installs the process-wide rustls crypto provider (ring) once.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Connects to the Kubernetes API according to `mode`, and says on stderr which cluster and
/// context it will act on: with `auto`, a developer's current kube context is picked up, and
/// nobody should find the recorder and the hit writer working there by surprise.
pub async fn kube_client(mode: KubeMode) -> anyhow::Result<Option<kube::Client>> {
    let client = match mode {
        KubeMode::Off => return Ok(None),
        KubeMode::On => connect().await.context("connecting to the Kubernetes API")?,
        KubeMode::Auto => match tokio::time::timeout(Duration::from_secs(5), connect()).await {
            Ok(Ok(c)) => c,
            _ => {
                eprintln!("stepcache: no Kubernetes configuration found: running without the Kubernetes API (no task results, events or recorder)");
                return Ok(None);
            }
        },
    };
    let (config, source) = client;
    let url = config.cluster_url.clone();
    eprintln!(
        "stepcache: using the Kubernetes API at {url} ({source}); the recorder watches pods and task results there, and hits write task results and Events there (--kube off to run without it)"
    );
    tracing::info!(cluster = %url, source = %source, "using the Kubernetes API");
    Ok(Some(kube::Client::try_from(config).context("building the Kubernetes client")?))
}

/// The inferred configuration, with where it came from (kubeconfig context or in-cluster).
async fn connect() -> anyhow::Result<(kube::Config, String)> {
    let config = kube::Config::infer().await?;
    let source = match kube::config::Kubeconfig::read() {
        Ok(k) => match (std::env::var_os("KUBECONFIG"), k.current_context) {
            (Some(path), Some(ctx)) => format!("context {ctx} of {}", path.to_string_lossy()),
            (None, Some(ctx)) => format!("context {ctx} of ~/.kube/config"),
            (_, None) => "kubeconfig without a current context".to_owned(),
        },
        Err(_) => "in-cluster ServiceAccount".to_owned(),
    };
    Ok((config, source))
}

/// Resolves the serving certificate, generating a development CA and certificate when none exists.
pub fn resolve_certs(cert: Option<PathBuf>, key: Option<PathBuf>) -> anyhow::Result<(PathBuf, PathBuf)> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok((c, k)),
        (None, None) => {
            let dir = PathBuf::from("certs");
            let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
            if !(c.exists() && k.exists()) {
                let g = crate::tls::generate(&dir, &["localhost".into(), "127.0.0.1".into(), "::1".into()])?;
                eprintln!(
                    "stepcache: generated a development CA and serving certificate in {}/ (CA bundle: {})",
                    dir.display(),
                    g.ca_cert.display()
                );
            }
            Ok((c, k))
        }
        _ => bail!("--tls-cert and --tls-key must be given together"),
    }
}

/// Opens the store; when it is unreachable at start, keeps serving (fail open) and retries.
async fn store_with_retry(args: &ServeArgs) -> anyhow::Result<Store> {
    let opts = StoreOptions { timeout: args.store.store_timeout, max_connections: args.store.store_pool };
    let store = Store::connect(&args.store.database_url, opts)
        .await
        .with_context(|| format!("opening store {}", super::redact(&args.store.database_url)))?;
    if let Err(e) = store.migrate().await {
        tracing::error!(error = %e, "store not migrated yet; serving fail-open and retrying");
        let s = store.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(500);
            loop {
                tokio::time::sleep(delay).await;
                match s.migrate().await {
                    Ok(()) => {
                        tracing::info!("store migrated");
                        break;
                    }
                    Err(e) => tracing::warn!(error = %e, "store migration retry failed"),
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        });
    }
    Ok(store)
}

/// Runs the webhook until SIGTERM.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    install_crypto();
    let metrics = Arc::new(Metrics::new());
    let store = store_with_retry(&args).await?;
    let signer = super::signer(&args.signing)?;
    let client = if args.noop { None } else { kube_client(args.kube).await? };
    let mut ports = serving_ports(&args, client.clone(), &signer, metrics.clone())?;
    if !args.noop {
        ports.refusals = start_refusals(&args, client.clone(), &store, &metrics).await;
    }
    let hits = ports.effects.hit_counter().cloned().unwrap_or_default();
    let configmaps = ports.configmaps.clone();
    let secret_digests = ports.secret_digests.clone();
    let admitter = Admitter {
        config: Arc::new(AdmitConfig {
            admin: args.policy.admin(),
            scope: args.policy.scope,
            rewrite: args.policy.rewrite(),
            explain_misses: args.policy.explain_misses,
            noop: args.noop_baseline(),
            latch: args.policy.latch_config().context("reading --latch-ca-file")?,
            ignore_moved_images: args.policy.ignore_moved_images,
        }),
        store: store.clone(),
        signer: signer.clone(),
        ports,
        metrics: metrics.clone(),
    };
    let (cert, key) = resolve_certs(args.tls_cert.clone(), args.tls_key.clone())?;
    let tls = crate::tls::load(&cert, &key).await?;
    let (reload_tls, reload_metrics, every) = (tls.clone(), metrics.clone(), args.tls_reload_interval);
    supervise("cert_reload", metrics.clone(), RESTART_PAUSE, move || {
        crate::tls::reload_loop(reload_tls.clone(), cert.clone(), key.clone(), every, reload_metrics.clone())
    });
    if !args.metrics_listen.trim().is_empty() {
        let recorder = client.is_some() && args.recorder && !args.noop;
        serve_metrics(&args.metrics_listen, store.clone(), metrics.clone(), recorder).await?;
    }
    if !args.noop {
        start_store_loops(&store, &hits, &metrics, args.gc_interval);
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let (Some(c), true, false) = (client, args.recorder, args.noop) {
        let caches = (configmaps, secret_digests);
        start_recorder(c, &args, store.clone(), signer, metrics.clone(), caches, stop_rx.clone());
    }

    let app = server::router(AppState { admitter, deadline: args.request_deadline }, args.body_limit);
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let shutdown = async move {
        server::shutdown_signal().await;
        tracing::info!("SIGTERM: finishing in-flight requests");
        let _ = stop_tx.send(true);
    };
    tracing::info!(addr = %args.listen, store = %super::redact(&args.store.database_url), noop = args.noop, "stepcache webhook listening on https://{}/mutate", args.listen);
    crate::listener::serve_https(listener, tls, app, args.limits(), shutdown, args.shutdown_grace).await;
    drop(stop_rx);
    // Hits counted since the last periodic flush are written before exiting.
    match tokio::time::timeout(SHUTDOWN_FLUSH_TIMEOUT, hits.flush(&store)).await {
        Ok(Ok(n)) => tracing::info!(entries = n, "hit counts flushed"),
        Ok(Err(e)) => tracing::warn!(error = %e, "hit counts not flushed on shutdown"),
        Err(_) => tracing::warn!("hit counts not flushed within {SHUTDOWN_FLUSH_TIMEOUT:?} on shutdown"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// The ports of a serving webhook: the Kubernetes API when there is one, bookkeeping off the
/// response path.
fn serving_ports(
    args: &ServeArgs,
    client: Option<kube::Client>,
    signer: &crate::mark::Signer,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Ports> {
    Ok(Ports {
        task_results: match &client {
            Some(c) => TaskResults::Api(TaskResultWriter::new(c.clone(), Duration::from_secs(2), signer.clone())),
            None => TaskResults::Unavailable,
        },
        events: client.clone().map(|c| {
            EventPoster::new(
                c,
                Duration::from_secs(2),
                std::env::var("HOSTNAME").unwrap_or_else(|_| "stepcache".into()),
            )
        }),
        offload: client.clone().map(|c| {
            Arc::new(crate::k8s::offload::ConfigMapReader::new(c, Duration::from_secs(1)))
                as Arc<dyn crate::k8s::offload::OffloadSource>
        }),
        // Hit pods must meet each namespace's LimitRanges: read them from a watch cache.
        limits: client.clone().map(crate::k8s::limits::LimitRangeCache::start),
        // ConfigMap contents are keyed: read them from a watch cache (shared with the recorder).
        configmaps: client.clone().map(crate::k8s::configmaps::ConfigMapCache::start),
        secret_digests: client
            .clone()
            .filter(|_| args.policy.key_secret_contents)
            .map(|c| crate::k8s::secret_digests::SecretDigestCache::start(c, signer.clone())),
        artifacts: super::integrity::artifact_checker(&args.integrity, client, metrics)?,
        effects: SideEffects::background(),
        refusals: Default::default(),
    })
}

/// Refused-hit detection: the blocked keys (read from the store now and every
/// `--refused-hit-refresh`) and, with a Kubernetes API, the loop that confirms answered hits.
async fn start_refusals(
    args: &ServeArgs,
    client: Option<kube::Client>,
    store: &Store,
    metrics: &Arc<Metrics>,
) -> crate::refusal::Refusals {
    use crate::refusal::{confirm_loop, refresh_loop, Refusals, RefusedSet};
    let set = RefusedSet::default();
    match store.refused_hits().await {
        Ok(rows) => {
            set.replace(rows, jiff::Timestamp::now());
            metrics.refused_keys.set(i64::try_from(set.len()).unwrap_or(i64::MAX));
        }
        Err(e) => tracing::warn!(error = %e, "refused hits not read at start; the refresh loop retries"),
    }
    let (r_store, r_set, r_metrics, every) = (store.clone(), set.clone(), metrics.clone(), args.refused_hit_refresh);
    supervise("refused_hit_refresh", metrics.clone(), RESTART_PAUSE, move || {
        refresh_loop(r_store.clone(), r_set.clone(), r_metrics.clone(), every)
    });
    let Some(client) = client else {
        return Refusals::unconfirmed(set);
    };
    let (refusals, rx) = Refusals::confirmed(set.clone());
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let (c_store, c_metrics, after) = (store.clone(), metrics.clone(), args.refused_hit_check_after);
    supervise("refused_hit_confirm", metrics.clone(), RESTART_PAUSE, move || {
        confirm_loop(client.clone(), c_store.clone(), set.clone(), c_metrics.clone(), rx.clone(), after)
    });
    refusals
}

/// `/metrics` and `/status` on their own plain-HTTP listener.
async fn serve_metrics(listen: &str, store: Store, metrics: Arc<Metrics>, recorder: bool) -> anyhow::Result<()> {
    let addr: std::net::SocketAddr = listen.parse().context("--metrics-listen")?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding metrics {addr}"))?;
    let status = crate::status::StatusState { store, metrics: metrics.clone(), recorder };
    let router = server::metrics_router(metrics).merge(crate::status::router(status));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(crate::listener::NoDelayListener(listener), router).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    tracing::info!(%addr, "metrics on http://{addr}/metrics");
    Ok(())
}

/// The supervised store loops: batched hit counts and decision log every few seconds, and gc
/// (expired entries, old decisions, forgotten image tags, the entry gauge) every `gc_every`.
fn start_store_loops(store: &Store, hits: &HitCounter, metrics: &Arc<Metrics>, gc_every: Duration) {
    let (hits, hit_store) = (hits.clone(), store.clone());
    supervise("hit_flush", metrics.clone(), RESTART_PAUSE, move || {
        let (hits, hit_store) = (hits.clone(), hit_store.clone());
        async move {
            let mut tick = tokio::time::interval(HIT_FLUSH_INTERVAL);
            loop {
                tick.tick().await;
                let started = std::time::Instant::now();
                if let Err(e) = hits.flush(&hit_store).await {
                    tracing::debug!(error = %e, "hit counts kept for the next flush");
                }
                match hit_store.flush_decisions().await {
                    Ok(n) => tracing::debug!(
                        decisions = n,
                        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                        "hit counts and decision log flushed"
                    ),
                    Err(e) => tracing::debug!(error = %e, "decision log kept for the next flush"),
                }
            }
        }
    });
    let (gc_store, gc_metrics) = (store.clone(), metrics.clone());
    supervise("gc", metrics.clone(), RESTART_PAUSE, move || {
        let (gc_store, gc_metrics) = (gc_store.clone(), gc_metrics.clone());
        async move {
            let mut tick = tokio::time::interval(gc_every);
            loop {
                tick.tick().await;
                gc_once(&gc_store, &gc_metrics).await;
            }
        }
    });
}

/// One gc pass; each part logs its own failure and the others still run.
async fn gc_once(store: &Store, metrics: &Metrics) {
    match store.gc(jiff::Timestamp::now(), 1000).await {
        Ok(n) if n > 0 => tracing::info!(deleted = n, "gc removed expired entries"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "gc failed"),
    }
    if let Err(e) = store.prune_decisions(jiff::Timestamp::now(), 1000).await {
        tracing::warn!(error = %e, "decision log pruning failed");
    }
    let forget = jiff::Timestamp::now() - crate::integrity::images::TAG_MEMORY;
    if let Err(e) = store.prune_tags(forget).await {
        tracing::warn!(error = %e, "image tag map not pruned");
    }
    if let Ok(n) = store.estimate_entries().await {
        metrics.entries.set(n);
    }
}

/// The recorder's watch, stopped when `stop` turns true.
fn start_recorder(
    client: kube::Client,
    args: &ServeArgs,
    store: Store,
    signer: crate::mark::Signer,
    metrics: Arc<Metrics>,
    (configmaps, secret_digests): (
        Option<crate::k8s::configmaps::ConfigMapCache>,
        Option<crate::k8s::secret_digests::SecretDigestCache>,
    ),
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let recorder = Recorder {
        store,
        signer,
        settings: Arc::new(RecordSettings { scope: args.policy.scope, default_expiry: args.policy.default_expiry }),
        metrics,
        tags: Default::default(),
        configmaps,
        secret_digests,
    };
    let cfg = WatchConfig {
        namespaces: args.watch_namespaces.iter().filter(|s| !s.is_empty()).cloned().collect(),
        ..Default::default()
    };
    tokio::spawn(watch::run(client, recorder, cfg, async move {
        let _ = stop.wait_for(|v| *v).await;
    }));
    tracing::info!("recorder running");
}

/// Runs only the recorder.
pub async fn record_controller(
    namespaces: Vec<String>,
    store: &crate::config::StoreArgs,
    signing: &crate::config::SigningArgs,
    policy: &crate::config::PolicyArgs,
) -> anyhow::Result<()> {
    install_crypto();
    let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
    let signer = super::signer(signing)?;
    let recorder = Recorder {
        store: super::open_store(store).await?,
        signer: signer.clone(),
        settings: Arc::new(RecordSettings { scope: policy.scope, default_expiry: policy.default_expiry }),
        metrics: Arc::new(Metrics::new()),
        tags: Default::default(),
        configmaps: Some(crate::k8s::configmaps::ConfigMapCache::start(client.clone())),
        secret_digests: policy
            .key_secret_contents
            .then(|| crate::k8s::secret_digests::SecretDigestCache::start(client.clone(), signer.clone())),
    };
    let cfg =
        WatchConfig { namespaces: namespaces.into_iter().filter(|s| !s.is_empty()).collect(), ..Default::default() };
    watch::run(client, recorder, cfg, server::shutdown_signal()).await;
    Ok(())
}
