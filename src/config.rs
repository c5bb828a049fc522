//! Command-line flags (each with a `STEPCACHE_*` environment fallback), grouped by concern and
//! validated once into typed settings.

use crate::key::Scope;
use crate::policy::AdminPolicy;
use crate::rewrite::RewriteConfig;
use crate::types::Staleness;
use clap::{Args, Parser, Subcommand, ValueEnum};
use k8s_openapi::api::core::v1::SecurityContext;
use std::path::PathBuf;
use std::time::Duration;
use stepcache_core::hitpod::{Milli, NoopResources};
use stepcache_core::moving::MovingArtifacts;

/// Default embedded store.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://stepcache.db";

/// stepcache: step-level execution caching for Argo Workflows (mutating admission webhook).
#[derive(Debug, Parser)]
#[command(name = "stepcache", version, about, long_about = None)]
pub struct Cli {
    /// Command to run.
    #[command(subcommand)]
    pub command: Command,
    /// Logging options.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// Log output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Telemetry flags.
#[derive(Debug, Clone, Args)]
pub struct TelemetryArgs {
    /// Log format.
    #[arg(long, global = true, env = "STEPCACHE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `stepcache=debug`.
    #[arg(long, global = true, env = "STEPCACHE_LOG", default_value = "info")]
    pub log: String,
}

/// Store flags.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Execution store: `sqlite://PATH` (embedded, created on start) or `postgres://...`.
    /// Global: accepted before or after a subcommand (`entries list --database-url URL`).
    #[arg(long, global = true, env = "STEPCACHE_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Bound on every store call; past it the webhook fails open.
    #[arg(long, global = true, env = "STEPCACHE_STORE_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub store_timeout: Duration,
    /// Store connection pool size.
    #[arg(long, global = true, env = "STEPCACHE_STORE_POOL", default_value_t = 16)]
    pub store_pool: u32,
}

/// Mark-signing flags.
#[derive(Debug, Clone, Args)]
pub struct SigningArgs {
    /// Per-install HMAC secret for pod marks (at least 16 bytes).
    #[arg(long, env = "STEPCACHE_SIGNING_KEY", hide_env_values = true)]
    pub signing_key: Option<String>,
    /// File holding the HMAC secret; generated on first use when neither flag is given.
    #[arg(long, env = "STEPCACHE_SIGNING_KEY_FILE", default_value = "certs/signing.key")]
    pub signing_key_file: PathBuf,
}

/// Caching-policy flags (the admin's controls).
#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// Staleness for steps that set none (ISO-8601 `P7D` or Go `168h`); unset = unbounded.
    #[arg(long, env = "STEPCACHE_DEFAULT_STALENESS", value_parser = parse_staleness)]
    pub default_staleness: Option<Staleness>,
    /// Cap on any step's staleness.
    #[arg(long, env = "STEPCACHE_MAX_STALENESS", value_parser = parse_staleness)]
    pub max_staleness: Option<Staleness>,
    /// How long recorded entries are kept (distinct from staleness); unset = forever.
    #[arg(long, env = "STEPCACHE_DEFAULT_EXPIRY", value_parser = parse_duration)]
    pub default_expiry: Option<Duration>,
    /// Cache scope: `namespace` (default) or `cluster` (entries shared across namespaces).
    #[arg(long, env = "STEPCACHE_SCOPE", value_parser = scope_parser(), default_value_t = Scope::Namespace)]
    pub scope: Scope,
    /// Only act on these namespaces (comma-separated; empty = all).
    #[arg(long, env = "STEPCACHE_INCLUDE_NAMESPACES", value_delimiter = ',')]
    pub include_namespaces: Vec<String>,
    /// Never act on these namespaces (comma-separated).
    #[arg(long, env = "STEPCACHE_EXCLUDE_NAMESPACES", value_delimiter = ',')]
    pub exclude_namespaces: Vec<String>,
    /// With `--scope cluster`: only these namespaces share one cache (comma-separated; empty =
    /// every covered namespace); steps of other namespaces keep namespace-private entries.
    #[arg(long, env = "STEPCACHE_SHARE_NAMESPACES", value_delimiter = ',')]
    pub share_namespaces: Vec<String>,
    /// Serve entries even when an image tag the step runs has since been seen at another digest
    /// (turns the `image-moved` miss off).
    #[arg(long, env = "STEPCACHE_IGNORE_MOVED_IMAGES", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub ignore_moved_images: bool,
    /// Steps reading input artifacts that can move under one name (a git branch or tag, an http
    /// URL): `miss` (default) never serves them; `cache` keys them by reference and serves them,
    /// so a changed upstream can be handed the previous run's outputs.
    #[arg(long, env = "STEPCACHE_MOVING_ARTIFACTS", value_parser = moving_parser(), default_value_t = MovingArtifacts::Miss)]
    pub moving_artifacts: MovingArtifacts,
    /// Shadow mode: decide and record, count would-be hits, never rewrite a pod.
    #[arg(long, env = "STEPCACHE_SHADOW", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub shadow: bool,
    /// The Argo controller's identities: only pods these users created (AdmissionReview
    /// `userInfo.username`, comma-separated) are decided, recorded and served. The default names
    /// the controllers of Argo's cluster install, argo-helm's default release and Kubeflow
    /// Pipelines; set it to your controller's `system:serviceaccount:<namespace>:<name>`.
    #[arg(
        long,
        env = "STEPCACHE_CONTROLLER_USERS",
        value_delimiter = ',',
        default_value = "system:serviceaccount:argo:argo,system:serviceaccount:argo:argo-workflows-workflow-controller,system:serviceaccount:kubeflow:argo"
    )]
    pub controller_users: Vec<String>,
    /// Groups whose members count as the Argo controller (comma-separated; default none). Never a
    /// namespace's service-account group: it holds the workflows' own service accounts too.
    #[arg(long, env = "STEPCACHE_CONTROLLER_GROUPS", value_delimiter = ',')]
    pub controller_groups: Vec<String>,
    /// Key what a step reads from a Secret by its contents (a keyed digest: an HMAC with the
    /// signing key, never the value), not only by the Secret's name and key. Needs list/watch on
    /// Secrets (chart `policy.keySecretContents`); a step whose Secret cannot be seen is then not
    /// cached (`secret-unknown`). `stepcache review` has no cluster and keys Secrets by reference.
    #[arg(long, env = "STEPCACHE_KEY_SECRET_CONTENTS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub key_secret_contents: bool,
    /// Allow execution latching for steps annotated `stepcache.dev/latch: "true"`.
    #[arg(long, env = "STEPCACHE_LATCH", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub latch: bool,
    /// URL latched waiters poll (the webhook Service's `/latch`).
    #[arg(long, env = "STEPCACHE_LATCH_URL", default_value = "https://stepcache.stepcache.svc/latch")]
    pub latch_url: String,
    /// CA bundle (PEM file) waiters trust for `--latch-url`; default: `certs/ca.crt` when present.
    #[arg(long, env = "STEPCACHE_LATCH_CA_FILE")]
    pub latch_ca_file: Option<PathBuf>,
    /// A running leader admitted longer ago than this no longer latches new arrivals.
    #[arg(long, env = "STEPCACHE_LATCH_WINDOW", default_value = "1h", value_parser = parse_duration)]
    pub latch_window: Duration,
    /// A leader running longer than this is treated as failed: one waiter takes over.
    #[arg(long, env = "STEPCACHE_LATCH_TIMEOUT", default_value = "6h", value_parser = parse_duration)]
    pub latch_timeout: Duration,
    /// Image of the no-op container of hit pods.
    #[arg(long, env = "STEPCACHE_NOOP_IMAGE")]
    pub noop_image: Option<String>,
    /// Command of the no-op container (space-separated).
    #[arg(long, env = "STEPCACHE_NOOP_COMMAND", default_value = "/stepcache noop")]
    pub noop_command: String,
    /// Image of the no-op container of Windows hit pods (`spec.os.name: windows` or a
    /// `kubernetes.io/os: windows` node selector); it must run on your Windows nodes' version.
    #[arg(long, env = "STEPCACHE_NOOP_WINDOWS_IMAGE", default_value = crate::rewrite::DEFAULT_WINDOWS_NOOP_IMAGE)]
    pub noop_windows_image: String,
    /// Command of the Windows no-op container (space-separated).
    #[arg(long, env = "STEPCACHE_NOOP_WINDOWS_COMMAND", default_value = "cmd.exe /c exit 0")]
    pub noop_windows_command: String,
    /// Requests of each no-op container (`name=quantity`, comma-separated), before the
    /// namespace's LimitRanges raise them and the original pod's requests cap them.
    #[arg(long, env = "STEPCACHE_NOOP_REQUESTS", default_value = "cpu=10m,memory=16Mi", value_parser = parse_amounts)]
    pub noop_requests: Amounts,
    /// Limits of each no-op container (`name=quantity`, comma-separated), shaped like the requests.
    #[arg(long, env = "STEPCACHE_NOOP_LIMITS", default_value = "cpu=100m,memory=32Mi", value_parser = parse_amounts)]
    pub noop_limits: Amounts,
    /// Security context of the Linux no-op container (JSON); default: runAsNonRoot, no
    /// privilege escalation, all capabilities dropped, RuntimeDefault seccomp, read-only root,
    /// no fixed uid (Pod Security `restricted` and OpenShift `restricted-v2`).
    #[arg(long, env = "STEPCACHE_NOOP_SECURITY_CONTEXT", value_parser = parse_security_context)]
    pub noop_security_context: Option<SecurityContext>,
    /// Security context of the Windows no-op container (JSON); Linux-only fields are dropped.
    /// Default: runAsNonRoot as `ContainerUser`.
    #[arg(long, env = "STEPCACHE_NOOP_WINDOWS_SECURITY_CONTEXT", value_parser = parse_security_context)]
    pub noop_windows_security_context: Option<SecurityContext>,
    /// Keep `nodeSelector`, `affinity` and `runtimeClassName` on hit pods.
    #[arg(long, env = "STEPCACHE_KEEP_NODE_RESTRICTIONS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub keep_node_restrictions: bool,
    /// On a miss, compare with the nearest earlier entry and annotate the pod with why it missed.
    #[arg(long, env = "STEPCACHE_EXPLAIN_MISSES", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub explain_misses: bool,
}

impl ServeArgs {
    /// The no-op baseline these flags ask for, if any (`--noop-lookup` only refines `--noop`).
    pub fn noop_baseline(&self) -> Option<crate::admission::Noop> {
        use crate::admission::Noop;
        self.noop.then_some(if self.noop_lookup { Noop::AfterLookup } else { Noop::Answer })
    }

    /// The connection limits these flags describe.
    pub fn limits(&self) -> crate::listener::Limits {
        crate::listener::Limits {
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            http2_max_streams: self.http2_max_streams,
            max_header_list_size: self.max_header_bytes,
        }
    }
}

impl PolicyArgs {
    /// The admin policy these flags describe.
    pub fn admin(&self) -> AdminPolicy {
        AdminPolicy {
            default_staleness: self.default_staleness,
            max_staleness: self.max_staleness,
            include_namespaces: self.include_namespaces.iter().filter(|s| !s.is_empty()).cloned().collect(),
            exclude_namespaces: self.exclude_namespaces.iter().filter(|s| !s.is_empty()).cloned().collect(),
            share_namespaces: self.share_namespaces.iter().filter(|s| !s.is_empty()).cloned().collect(),
            shadow: self.shadow,
            latch: self.latch,
            controllers: stepcache_core::trust::ControllerIdentities {
                users: self.controller_users.iter().filter(|s| !s.is_empty()).cloned().collect(),
                groups: self.controller_groups.iter().filter(|s| !s.is_empty()).cloned().collect(),
            },
            moving_artifacts: self.moving_artifacts,
        }
    }

    /// Latching settings, when `--latch` is on (reads the CA bundle file).
    pub fn latch_config(&self) -> std::io::Result<Option<crate::admission::latch::LatchConfig>> {
        if !self.latch {
            return Ok(None);
        }
        let ca_file = self.latch_ca_file.clone().or_else(|| {
            let p = PathBuf::from("certs/ca.crt");
            p.exists().then_some(p)
        });
        let ca_bundle = ca_file.map(std::fs::read_to_string).transpose()?;
        Ok(Some(crate::admission::latch::LatchConfig {
            url: self.latch_url.clone(),
            ca_bundle,
            window: self.latch_window,
            timeout: self.latch_timeout,
        }))
    }

    /// The hit-pod shape these flags describe.
    pub fn rewrite(&self) -> RewriteConfig {
        let mut r = RewriteConfig::default();
        if let Some(i) = &self.noop_image {
            r.noop_image = i.clone();
        }
        let cmd: Vec<String> = self.noop_command.split_whitespace().map(str::to_owned).collect();
        if !cmd.is_empty() {
            r.noop_command = cmd;
        }
        let cmd: Vec<String> = self.noop_windows_command.split_whitespace().map(str::to_owned).collect();
        if !cmd.is_empty() {
            r.windows_noop_command = cmd;
        }
        r.windows_noop_image = self.noop_windows_image.clone();
        r.noop_resources = NoopResources(stepcache_core::hitpod::Amounts {
            requests: self.noop_requests.0.clone(),
            limits: self.noop_limits.0.clone(),
        });
        if let Some(sc) = &self.noop_security_context {
            r.noop_security_context = sc.clone();
        }
        if let Some(sc) = &self.noop_windows_security_context {
            r.windows_noop_security_context = sc.clone();
        }
        r.keep_node_restrictions = self.keep_node_restrictions;
        r
    }
}

/// Whether to talk to the Kubernetes API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum KubeMode {
    /// Use it when a kubeconfig or in-cluster config is found.
    #[default]
    Auto,
    /// Require it.
    On,
    /// Never use it (hits on Argo ≥ 3.6 then degrade to misses).
    Off,
}

/// Flags of `serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// HTTPS listen address of the webhook.
    #[arg(long, env = "STEPCACHE_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: std::net::SocketAddr,
    /// Plain-HTTP listen address of `/metrics`; empty disables it.
    #[arg(long, env = "STEPCACHE_METRICS_LISTEN", default_value = "127.0.0.1:9090")]
    pub metrics_listen: String,
    /// Serving certificate (PEM). Default: `certs/tls.crt`, generated with a development CA if absent.
    #[arg(long, env = "STEPCACHE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Serving key (PEM). Default: `certs/tls.key`.
    #[arg(long, env = "STEPCACHE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// How often the certificate files are re-read for rotation.
    #[arg(long, env = "STEPCACHE_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub tls_reload_interval: Duration,
    /// Answer every admission within this bound (keep below the webhook's timeoutSeconds).
    #[arg(long, env = "STEPCACHE_REQUEST_DEADLINE", default_value = "4s", value_parser = parse_duration)]
    pub request_deadline: Duration,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "STEPCACHE_BODY_LIMIT", default_value_t = crate::server::DEFAULT_BODY_LIMIT)]
    pub body_limit: usize,
    /// Bound on a client's TLS handshake and on reading its request headers.
    #[arg(long, env = "STEPCACHE_HEADER_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    #[arg(long, env = "STEPCACHE_IDLE_TIMEOUT", default_value = "90s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Open webhook connections at most; more wait in the listen backlog.
    #[arg(long, env = "STEPCACHE_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,
    /// HTTP/2 streams in flight per connection.
    #[arg(long, env = "STEPCACHE_HTTP2_MAX_STREAMS", default_value_t = 256)]
    pub http2_max_streams: u32,
    /// Largest request header list, in bytes.
    #[arg(long, env = "STEPCACHE_MAX_HEADER_BYTES", default_value_t = 65536)]
    pub max_header_bytes: u32,
    /// Grace period for in-flight requests on SIGTERM.
    #[arg(long, env = "STEPCACHE_SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Use the Kubernetes API (task results, events, recorder).
    #[arg(long, env = "STEPCACHE_KUBE", value_enum, default_value_t = KubeMode::Auto)]
    pub kube: KubeMode,
    /// Run the recorder in this process (needs the Kubernetes API).
    #[arg(long, env = "STEPCACHE_RECORDER", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub recorder: bool,
    /// Namespaces the recorder watches (comma-separated; empty = all).
    #[arg(long, env = "STEPCACHE_WATCH_NAMESPACES", value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,
    /// How often expired entries are deleted.
    #[arg(long, env = "STEPCACHE_GC_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub gc_interval: Duration,
    /// How long after answering a hit its pod is looked for; a hit pod that never appeared was
    /// refused (a policy, another webhook) and its key is not served in that namespace again
    /// until `stepcache refused clear` (needs the Kubernetes API).
    #[arg(long, env = "STEPCACHE_REFUSED_HIT_CHECK_AFTER", default_value = "30s", value_parser = parse_duration)]
    pub refused_hit_check_after: Duration,
    /// How often the keys blocked by refused hits are re-read from the store (blocks found by
    /// other replicas, clears made by operators).
    #[arg(long, env = "STEPCACHE_REFUSED_HIT_REFRESH", default_value = "10s", value_parser = parse_duration)]
    pub refused_hit_refresh: Duration,
    /// Benchmark baseline: same TLS/HTTP/JSON path, always "allow, no patch", no store lookups.
    #[arg(long, env = "STEPCACHE_NOOP_BASELINE", default_value_t = false)]
    pub noop: bool,
    /// With `--noop`: also make one store lookup per admission (the real lookup query, for a key
    /// no step has), so the baseline is the floor a deciding webhook cannot go below — the
    /// no-op plus one store round trip.
    #[arg(long, env = "STEPCACHE_NOOP_LOOKUP", default_value_t = false, requires = "noop")]
    pub noop_lookup: bool,
    /// Store flags.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Signing flags.
    #[command(flatten)]
    pub signing: SigningArgs,
    /// Policy flags.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Artifact verification flags.
    #[command(flatten)]
    pub integrity: IntegrityArgs,
}

/// Flags of the artifact check before a hit (`serve`).
#[derive(Debug, Clone, Args)]
pub struct IntegrityArgs {
    /// Check that a hit's output artifacts still exist (S3-compatible HEAD, HTTP HEAD) before
    /// serving it; needs `get` on Secrets for the artifact repository's credentials.
    #[arg(long, env = "STEPCACHE_VERIFY_ARTIFACTS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub verify_artifacts: bool,
    /// Bound on a hit's artifact checks (they run concurrently); past it the hit is a miss
    /// (`artifact-unverified`). Keep well below `--request-deadline`.
    #[arg(long, env = "STEPCACHE_ARTIFACT_CHECK_BUDGET", default_value = "500ms", value_parser = parse_duration)]
    pub artifact_check_budget: Duration,
    /// How long an artifact found present (or gone) is not asked about again; also how long a
    /// Secret read for credentials is reused.
    #[arg(long, env = "STEPCACHE_ARTIFACT_CHECK_CACHE_TTL", default_value = "30s", value_parser = parse_duration)]
    pub artifact_check_cache_ttl: Duration,
    /// Extra CA bundle (PEM file) trusted for HTTPS object stores, besides the system roots.
    #[arg(long, env = "STEPCACHE_ARTIFACT_CA_FILE")]
    pub artifact_ca_file: Option<PathBuf>,
}

/// Output format of listing commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// Aligned table.
    #[default]
    Table,
    /// JSON.
    Json,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTPS admission webhook (and, with a cluster, the recorder).
    Serve(Box<ServeArgs>),
    /// Generate a CA and serving certificate; prints the base64 caBundle.
    Certs {
        /// Output directory (ca.crt, tls.crt, tls.key).
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// DNS names (or IPs) of the serving certificate, e.g. stepcache.stepcache.svc.
        #[arg(long = "dns", required = true, num_args = 1..)]
        dns: Vec<String>,
    },
    /// Apply the store migrations.
    Migrate {
        /// Store flags.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Read one AdmissionReview on stdin and print the response /mutate would return.
    Review {
        /// Also print a JSON explanation (decision, reason, key, layout, patch, created objects).
        #[arg(long)]
        explain: bool,
        /// Decide as of this instant (RFC 3339).
        #[arg(long)]
        now: Option<jiff::Timestamp>,
        /// Store flags.
        #[command(flatten)]
        store: StoreArgs,
        /// Signing flags.
        #[command(flatten)]
        signing: SigningArgs,
        /// Policy flags.
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Read an AdmissionReview or a Pod on stdin and print its cache key and key material.
    Key {
        /// Cache scope.
        #[arg(long, env = "STEPCACHE_SCOPE", value_parser = scope_parser(), default_value_t = Scope::Namespace)]
        scope: Scope,
    },
    /// Record a succeeded, marked step pod from files and print the stored entry.
    Record {
        /// The pod (JSON), as the API server returns it after success.
        #[arg(long)]
        pod: PathBuf,
        /// Its WorkflowTaskResult (JSON), for Argo ≥ 3.3.
        #[arg(long)]
        task_result: Option<PathBuf>,
        /// Its Workflow (JSON), to read node outputs when the task result is gone.
        #[arg(long)]
        workflow: Option<PathBuf>,
        /// Record as of this instant (RFC 3339).
        #[arg(long)]
        now: Option<jiff::Timestamp>,
        /// Store flags.
        #[command(flatten)]
        store: StoreArgs,
        /// Signing flags.
        #[command(flatten)]
        signing: SigningArgs,
        /// Policy flags (scope, expiry).
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Run only the recorder (watch marked pods and task results) against the cluster.
    RecordController {
        /// Namespaces to watch (comma-separated; empty = all).
        #[arg(long, env = "STEPCACHE_WATCH_NAMESPACES", value_delimiter = ',')]
        watch_namespaces: Vec<String>,
        /// Store flags.
        #[command(flatten)]
        store: StoreArgs,
        /// Signing flags.
        #[command(flatten)]
        signing: SigningArgs,
        /// Policy flags.
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Inspect and invalidate cache entries.
    Entries {
        /// Subcommand.
        #[command(subcommand)]
        command: EntriesCommand,
        /// Store flags.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Keys blocked by refused hits: list them, or clear one once its cause is fixed.
    Refused {
        /// Subcommand.
        #[command(subcommand)]
        command: crate::cli::refused::RefusedCommand,
        /// Store flags.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete expired and invalidated entries in batches.
    Gc {
        /// Rows per delete statement.
        #[arg(long, default_value_t = 1000)]
        batch: i64,
        /// Collect as of this instant (RFC 3339).
        #[arg(long)]
        now: Option<jiff::Timestamp>,
        /// Store flags.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Hits, entries, adopting copies, bytes and compute time saved, overall and per namespace.
    Stats {
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
        /// Store flags.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Explain one step: decision, key, staleness, seed, the entry served (hit) or the nearest
    /// entry and the key-material differences (miss). Falls back to the decision log or the
    /// recorded entry when the pod is gone.
    Why {
        /// `POD` (or `pod/POD`), or `WORKFLOW/NODE` (node id, name or display name).
        target: String,
        /// Namespace (default: the kubeconfig context's).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Output format (`table` is the short human form).
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
        /// Cache scope the webhook runs with (to re-derive a miss's key material).
        #[arg(long, env = "STEPCACHE_SCOPE", value_parser = scope_parser(), default_value_t = Scope::Namespace)]
        scope: Scope,
        /// Store flags.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// The command of hit pods' no-op container: exits 0 at once.
    Noop,
    /// The command of latched waiter pods: polls stepcache until the leader's outputs are
    /// delivered (exit 0) or this pod is promoted to run the step (exit 75).
    Wait {
        /// `https://<service>/latch`.
        #[arg(long)]
        url: String,
        /// Signed poll token.
        #[arg(long)]
        token: String,
        /// CA bundle (PEM) to trust; default: the `STEPCACHE_CA_BUNDLE` environment variable.
        #[arg(long, env = "STEPCACHE_CA_BUNDLE", hide_env_values = true)]
        ca_bundle: Option<String>,
        /// Poll interval.
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        interval: Duration,
        /// Give up (exit 1) after this long.
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        timeout: Duration,
    },
}

/// `entries` subcommands.
#[derive(Debug, Subcommand)]
pub enum EntriesCommand {
    /// List entries, newest first.
    List {
        /// Filters.
        #[command(flatten)]
        filter: FilterArgs,
        /// Most rows shown.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Show one entry as JSON.
    Show {
        /// Entry id.
        id: i64,
    },
    /// Invalidate entries (never served again); prints how many.
    Invalidate {
        /// Filters (at least one).
        #[command(flatten)]
        filter: FilterArgs,
        /// Invalidate as of this instant (RFC 3339).
        #[arg(long)]
        now: Option<jiff::Timestamp>,
    },
}

/// Entry filters.
#[derive(Debug, Clone, Args, Default)]
pub struct FilterArgs {
    /// Entry id.
    #[arg(long)]
    pub id: Option<i64>,
    /// Namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Cache key.
    #[arg(long)]
    pub key: Option<String>,
    /// Workflow name.
    #[arg(long)]
    pub workflow: Option<String>,
    /// Image (tag as written, or digest that ran).
    #[arg(long)]
    pub image: Option<String>,
    /// Entries older than this duration (e.g. `P30D`, `720h`).
    #[arg(long, value_parser = parse_duration)]
    pub older_than: Option<Duration>,
}

/// Parses ISO-8601 or Go durations for flags; whole milliseconds (`200ms`) are kept exactly.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if let Some(ms) = t.strip_suffix("ms") {
        if let Ok(v) = ms.parse::<u64>() {
            return Ok(Duration::from_millis(v));
        }
    }
    crate::duration::parse_seconds(t).map(Duration::from_secs).map_err(|e| e.to_string())
}

/// Parses a staleness flag (`0` = never reuse, `unbounded` = no bound).
pub fn parse_staleness(s: &str) -> Result<Staleness, String> {
    if s.trim().eq_ignore_ascii_case("unbounded") {
        return Ok(Staleness::Unbounded);
    }
    let d = crate::duration::parse_exact(s).map_err(|e| e.to_string())?;
    if d.as_secs() == 0 && !d.is_zero() {
        // Staleness counts whole seconds: this would silently mean "never reuse" everywhere.
        return Err(format!("{s:?} is under one second; staleness counts whole seconds (use 0 to never reuse)"));
    }
    Ok(Staleness::Seconds(d.as_secs()))
}

/// Parses `--scope`, listing the possible values in `--help` and in errors.
fn scope_parser() -> impl clap::builder::TypedValueParser<Value = Scope> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(Scope::ALL.map(Scope::as_str)).try_map(|s| s.parse::<Scope>())
}

/// `--moving-artifacts`: one of the policy's names, listed in `--help`.
fn moving_parser() -> impl clap::builder::TypedValueParser<Value = MovingArtifacts> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(MovingArtifacts::ALL.map(MovingArtifacts::as_str))
        .try_map(|s| s.parse::<MovingArtifacts>())
}

/// Resource amounts by name, as `--noop-requests`/`--noop-limits` take them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Amounts(pub std::collections::BTreeMap<String, Milli>);

/// Parses `cpu=10m,memory=16Mi` (empty = none).
pub fn parse_amounts(s: &str) -> Result<Amounts, String> {
    let mut out = std::collections::BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, q) = part.split_once('=').ok_or_else(|| format!("`{part}` is not name=quantity"))?;
        let v = Milli::parse(q).filter(|v| v.0 >= 0).ok_or_else(|| format!("`{q}` is not a quantity"))?;
        out.insert(name.trim().to_owned(), v);
    }
    Ok(Amounts(out))
}

/// Parses a container security context given as JSON.
pub fn parse_security_context(s: &str) -> Result<SecurityContext, String> {
    serde_json::from_str(s).map_err(|e| format!("not a container securityContext: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn policy_of(args: &[&str]) -> AdminPolicy {
        let cli = Cli::try_parse_from(["stepcache", "review"].iter().chain(args)).unwrap();
        match cli.command {
            Command::Review { policy, .. } => policy.admin(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_controller_identities_default_to_the_supported_installs_and_are_configurable() {
        let default = policy_of(&[]).controllers;
        assert_eq!(default, stepcache_core::trust::ControllerIdentities::default());
        let set = policy_of(&["--controller-users", "system:serviceaccount:wf:ctl,ops", "--controller-groups", "g"]);
        assert_eq!(set.controllers.users, ["system:serviceaccount:wf:ctl", "ops"]);
        assert_eq!(set.controllers.groups, ["g"]);
    }

    #[test]
    fn moving_artifacts_default_to_miss_and_accept_cache() {
        assert_eq!(policy_of(&[]).moving_artifacts, MovingArtifacts::Miss);
        assert_eq!(policy_of(&["--moving-artifacts", "cache"]).moving_artifacts, MovingArtifacts::Cache);
        let bad = Cli::try_parse_from(["stepcache", "review", "--moving-artifacts", "serve"]);
        assert!(bad.is_err());
    }
}
