//! A real kube-apiserver + etcd for the cluster tests (the `../shared/envtest` kit: no kubelet,
//! no controllers; a test plays the kubelet and the Argo controller by creating pods and
//! patching their status), and the real `stepcache serve` registered against it as a
//! MutatingWebhookConfiguration.
//!
//! Where the kit comes from: its scripts in `../shared/envtest` next to this repository (or
//! `STEPCACHE_ENVTEST_KIT`); the binaries are unpacked by its `setup.sh` into
//! `STEPCACHE_ENVTEST_DIR` when set (already-unpacked binaries are only verified), else into
//! `target/tmp/envtest`. Without the kit, [`shared`] returns `None` after one visible
//! `SKIPPED` line; with `CI` set it fails instead. A kit that is present but does not start
//! always fails.
//!
//! One instance per test-binary run ([`shared`]), started on first use with a fresh state
//! directory and free ports; tests run in parallel, each in its own namespaces ([`Kit::namespace`])
//! with its own `stepcache serve` and webhook configuration scoped to them. A watchdog process
//! stops the instance (and any `stepcache serve` left running) once the test process has exited,
//! however it exits. Tests that must disturb the API server (restarts) start a private
//! instance with [`Kit::start`].
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{json, Value};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// ServiceAccounts every test namespace gets (the ServiceAccount admission plugin rejects pods
/// whose account is missing, and no controller creates `default`): those the fixtures name.
pub const SERVICE_ACCOUNTS: &[&str] = &["default", "pipeline-runner", "default-editor"];

/// A running etcd + kube-apiserver.
pub struct Kit {
    /// The kit's scripts (`up.sh`, `down.sh`, ...).
    pub scripts: PathBuf,
    /// This instance's state directory (`pki/`, logs, pid files, kubeconfig).
    pub run: PathBuf,
    /// Environment every script call gets (RUN, ports, binaries directory).
    env: Vec<(String, String)>,
    /// Admin kubeconfig (user `envtest-admin`, group `system:masters`).
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    /// PEM of the CA that signed the API server's and the spare webhook's certificates.
    pub ca_pem: String,
    /// Whether dropping this value stops the instance (private instances do; the shared one is
    /// left to its watchdog, since statics are never dropped).
    owned: bool,
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the kit's scripts are, or why there are none.
fn locate_scripts() -> Result<PathBuf, String> {
    let dir = match std::env::var_os("STEPCACHE_ENVTEST_KIT") {
        Some(d) => PathBuf::from(d),
        None => manifest_dir().join("..").join("shared").join("envtest"),
    };
    if dir.join("up.sh").is_file() {
        Ok(dir)
    } else {
        Err(format!("no envtest kit at {} (set STEPCACHE_ENVTEST_KIT to its directory)", dir.display()))
    }
}

/// Where the kit's binaries are unpacked.
fn binaries_dir() -> PathBuf {
    std::env::var_os("STEPCACHE_ENVTEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("envtest"))
}

/// Skips visibly ([`crate::skip`]): one line per run and the count at exit; under `CI` fails.
fn skip(reason: &str) {
    crate::skip::skip("envtest", &format!("cluster tests (real kube-apiserver): {reason}"));
}

/// The instance shared by every test of this binary, started on first use; `None` (after one
/// visible `SKIPPED` line) when the kit is absent outside CI.
pub fn shared() -> Option<&'static Kit> {
    // (absent: skip; present but not started: fail every test, without trying again for each)
    static KIT: OnceLock<Result<Kit, Result<String, String>>> = OnceLock::new();
    match KIT.get_or_init(|| Kit::launch(locate_scripts().map_err(Ok)?, &[], false).map_err(Err)) {
        Ok(k) => Some(k),
        Err(Ok(absent)) => {
            skip(absent);
            None
        }
        Err(Err(broken)) => panic!("envtest kit present but not started: {broken}"),
    }
}

/// A free TCP port on 127.0.0.1 (the listener is closed again; a tiny race is accepted).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn unique_dir(prefix: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    std::env::temp_dir().join(format!("{prefix}-{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)))
}

/// Stops what a test process left behind once it has exited: `stepcache serve` processes whose
/// pid files are in `$RUN` (checked to still name `$RUN`), then the instance (`down.sh --rm`).
const WATCHDOG: &str = r#"
while kill -0 "$1" 2>/dev/null; do sleep 0.5; done
for f in "$RUN"/serve-*.pid; do
  [ -f "$f" ] || continue
  p=$(cat "$f")
  if tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$RUN/"; then kill -9 "$p" 2>/dev/null; fi
done
exec "$KIT/down.sh" --rm
"#;

impl Kit {
    /// Starts a private instance (its own state and ports), stopped when the value is dropped
    /// (and by the watchdog if the test process dies first). `extra_flags` go to kube-apiserver.
    /// `None` when the kit is absent outside CI.
    pub fn start(extra_flags: &[&str]) -> Option<Kit> {
        match locate_scripts() {
            Ok(scripts) => Some(Kit::launch(scripts, extra_flags, true).unwrap()),
            Err(reason) => {
                skip(&reason);
                None
            }
        }
    }

    fn launch(scripts: PathBuf, extra_flags: &[&str], owned: bool) -> Result<Kit, String> {
        let mut last = String::new();
        // Free ports are picked, then bound by etcd and kube-apiserver: retry on a lost race.
        for _ in 0..3 {
            let run = unique_dir("stepcache-envtest");
            let env = vec![
                ("RUN".to_owned(), run.display().to_string()),
                ("STEPCACHE_ENVTEST_DIR".to_owned(), binaries_dir().display().to_string()),
                ("ETCD_PORT".to_owned(), free_port().to_string()),
                ("PEER_PORT".to_owned(), free_port().to_string()),
                ("API_PORT".to_owned(), free_port().to_string()),
                ("EXTRA_APISERVER_FLAGS".to_owned(), extra_flags.join(" ")),
            ];
            std::fs::create_dir_all(&run).map_err(|e| format!("creating {}: {e}", run.display()))?;
            // Armed before anything starts, so nothing outlives the test process.
            Command::new("bash")
                .arg("-c")
                .arg(WATCHDOG)
                .arg("envtest-watchdog")
                .arg(std::process::id().to_string())
                .envs(env.iter().map(|(k, v)| (k, v)))
                .env("KIT", &scripts)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .map_err(|e| format!("starting the watchdog: {e}"))?;
            let started = Instant::now();
            let out = Command::new(scripts.join("up.sh"))
                .arg("--crds")
                .envs(env.iter().map(|(k, v)| (k, v)))
                .process_group(0)
                .output()
                .map_err(|e| format!("running up.sh: {e}"))?;
            if !out.status.success() {
                last = format!("up.sh failed: {}", String::from_utf8_lossy(&out.stderr));
                continue;
            }
            let stdout = String::from_utf8_lossy(&out.stdout);
            let kubeconfig = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
            let port = env.iter().find(|(k, _)| k == "API_PORT").unwrap().1.clone();
            let ca_pem = std::fs::read_to_string(run.join("pki/ca.crt")).map_err(|e| e.to_string())?;
            let _ = writeln!(
                std::io::stderr(),
                "envtest: kube-apiserver https://127.0.0.1:{port} up with the Argo CRDs in {:.1}s (state {})",
                started.elapsed().as_secs_f64(),
                run.display()
            );
            return Ok(Kit {
                scripts,
                run,
                env,
                kubeconfig,
                server: format!("https://127.0.0.1:{port}"),
                ca_pem,
                owned,
            });
        }
        Err(last)
    }

    fn script(&self, name: &str, args: &[&str]) -> std::process::Output {
        let out = Command::new(self.scripts.join(name))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .process_group(0)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    /// Stops the API server gracefully (`down.sh apiserver`; etcd and every object stay). It waits
    /// on open watches, so this can take the script's 10 s bound; [`Kit::kill_apiserver`] is a crash.
    pub fn stop_apiserver(&self) {
        self.script("down.sh", &["apiserver"]);
    }

    /// Kills the API server (SIGKILL, as a crash; a graceful stop waits on open watches) by its
    /// saved pid, checked to still name this instance; etcd and every object stay.
    pub fn kill_apiserver(&self) {
        let pid_file = self.run.join("apiserver.pid");
        let pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_owned();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            String::from_utf8_lossy(&cmdline).contains(&format!("{}/", self.run.display())),
            "pid {pid} is not this instance's kube-apiserver"
        );
        let status = Command::new("kill").args(["-9", &pid]).status().unwrap();
        assert!(status.success());
        let t = Instant::now();
        while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z ")) {
            assert!(t.elapsed() < Duration::from_secs(10), "kube-apiserver {pid} survived SIGKILL");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::remove_file(pid_file).unwrap();
    }

    /// Writes a throwaway key straight to etcd and compacts its history up to that write (etcd's
    /// v3 JSON gateway on its client port): a watch resuming from any earlier resourceVersion
    /// then gets 410 Gone, whatever the API server's compaction timer says.
    pub fn compact_etcd(&self) {
        let port = self.env.iter().find(|(k, _)| k == "ETCD_PORT").map(|(_, v)| v.clone()).unwrap();
        let post = |path: &str, body: &str| {
            let out = Command::new("curl")
                .args(["-sf", "-X", "POST", &format!("http://127.0.0.1:{port}/v3/{path}"), "-d", body])
                .output()
                .unwrap();
            assert!(out.status.success(), "etcd {path}: {}", String::from_utf8_lossy(&out.stderr));
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
        };
        // key "stepcache-compact", value "x", base64 as the gateway wants them.
        let put = post("kv/put", r#"{"key":"c3RlcGNhY2hlLWNvbXBhY3Q=","value":"eA=="}"#);
        let revision = put["header"]["revision"].as_str().unwrap().to_owned();
        post("kv/compaction", &format!(r#"{{"revision":"{revision}","physical":true}}"#));
    }

    /// Starts the API server again on the same etcd, port and certificates, and waits for it.
    pub fn start_apiserver(&self) {
        self.script("up.sh", &[]);
    }

    /// Stops the instance and removes its state now (a private instance done with early).
    pub fn stop(&self) {
        self.script("down.sh", &["--rm"]);
    }

    /// A client as the admin. Built per test: a client belongs to the runtime that made it.
    pub async fn client(&self) -> kube::Client {
        client_from(&self.kubeconfig).await
    }

    /// Writes a kubeconfig for this server that authenticates with `token`.
    pub fn kubeconfig_with_token(&self, path: &Path, token: &str) {
        let admin = std::fs::read_to_string(&self.kubeconfig).unwrap();
        let mut out = String::new();
        for line in admin.lines() {
            if line.trim_start().starts_with("token:") {
                out.push_str(&format!("    token: {token}\n"));
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        std::fs::write(path, out).unwrap();
    }

    /// The spare serving certificate and key (IP SAN 127.0.0.1, signed by [`Kit::ca_pem`]).
    pub fn webhook_cert(&self) -> (PathBuf, PathBuf) {
        (self.run.join("pki/webhook.crt"), self.run.join("pki/webhook.key"))
    }

    /// A fresh namespace named `<prefix>-<n>` with [`SERVICE_ACCOUNTS`], and `labels`.
    pub async fn namespace(&self, client: &kube::Client, prefix: &str, labels: &[(&str, &str)]) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed));
        let mut ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {}}});
        for (k, v) in labels {
            ns["metadata"]["labels"][*k] = json!(v);
        }
        let ns: Namespace = serde_json::from_value(ns).unwrap();
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.unwrap();
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
        for sa in SERVICE_ACCOUNTS {
            let o: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": sa}})).unwrap();
            sas.create(&PostParams::default(), &o).await.unwrap();
        }
        name
    }
}

impl Drop for Kit {
    fn drop(&mut self) {
        if self.owned {
            let _ = Command::new(self.scripts.join("down.sh"))
                .arg("--rm")
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .output();
        }
    }
}

/// The kit's admin user (`tokens.csv`): the identity tests create pods with, playing the Argo
/// controller.
pub const ADMIN_USER: &str = "envtest-admin";

/// A client from a kubeconfig file.
pub async fn client_from(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
    kube::Client::try_from(cfg).unwrap()
}

// ---------------------------------------------------------------------------------------------
// stepcache serve

/// How to run `stepcache serve`.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// Kubeconfig it uses (default: the admin's).
    pub kubeconfig: Option<PathBuf>,
    /// `--watch-namespaces` (the recorder's scope).
    pub watch_namespaces: Vec<String>,
    /// Further flags.
    pub args: Vec<String>,
}

/// The real `stepcache serve` binary, pointed at a [`Kit`]; killed on drop.
pub struct Serve {
    child: Option<Child>,
    /// Its working directory (SQLite store, signing key, log), inside the kit's state directory.
    pub dir: PathBuf,
    /// Webhook port (HTTPS).
    pub port: u16,
    /// Metrics port (HTTP).
    pub metrics_port: u16,
    pid_file: PathBuf,
    command: Vec<String>,
    kubeconfig: PathBuf,
}

impl Serve {
    /// Starts `stepcache serve` with a fresh store and waits until it accepts connections.
    pub async fn start(kit: &Kit, opts: ServeOptions) -> Serve {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = kit.run.join(format!("serve-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = kit.webhook_cert();
        let port = free_port();
        let metrics_port = free_port();
        let mut command: Vec<String> = vec![
            "serve".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--metrics-listen".into(),
            format!("127.0.0.1:{metrics_port}"),
            "--tls-cert".into(),
            cert.display().to_string(),
            "--tls-key".into(),
            key.display().to_string(),
            "--kube".into(),
            "on".into(),
            "--database-url".into(),
            format!("sqlite://{}", dir.join("stepcache.db").display()),
            "--signing-key".into(),
            // Per instance: a serve must not accept another test's marks as its own.
            format!("envtest-signing-key-{n:06}-0123456789abcdef"),
        ];
        if !opts.watch_namespaces.is_empty() {
            command.push("--watch-namespaces".into());
            command.push(opts.watch_namespaces.join(","));
        }
        if !opts.args.iter().any(|a| a == "--controller-users") {
            // The test plays the Argo controller with the kit's admin identity.
            command.push("--controller-users".into());
            command.push(ADMIN_USER.into());
        }
        command.extend(opts.args.iter().cloned());
        let mut s = Serve {
            child: None,
            pid_file: kit.run.join(format!("serve-{n}.pid")),
            dir,
            port,
            metrics_port,
            command,
            kubeconfig: opts.kubeconfig.clone().unwrap_or_else(|| kit.kubeconfig.clone()),
        };
        s.spawn_fresh().await;
        s
    }

    /// Starts the process; panics unless it listens.
    async fn spawn(&mut self) {
        if let Err(e) = self.try_spawn().await {
            panic!("{e}");
        }
    }

    /// Starts the process the first time: a port another process took between [`free_port`] and
    /// the bind (the race that function accepts) gets new ports and another try.
    async fn spawn_fresh(&mut self) {
        for _ in 0..3 {
            match self.try_spawn().await {
                Ok(()) => return,
                Err(e) if e.contains("in use") => {
                    let (port, metrics_port) = (free_port(), free_port());
                    for arg in self.command.iter_mut() {
                        if *arg == format!("127.0.0.1:{}", self.port) {
                            *arg = format!("127.0.0.1:{port}");
                        } else if *arg == format!("127.0.0.1:{}", self.metrics_port) {
                            *arg = format!("127.0.0.1:{metrics_port}");
                        }
                    }
                    (self.port, self.metrics_port) = (port, metrics_port);
                }
                Err(e) => panic!("{e}"),
            }
        }
        self.spawn().await
    }

    async fn try_spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_stepcache"))
            .args(&self.command)
            .current_dir(&self.dir)
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .env("STEPCACHE_LOG", "info,stepcache=debug")
            .env("HOSTNAME", "stepcache-envtest")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        std::fs::write(&self.pid_file, child.id().to_string()).unwrap();
        self.child = Some(child);
        let t = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Err(format!("stepcache serve exited ({status}) before listening:\n{}", self.logs()));
            }
            assert!(t.elapsed() < Duration::from_secs(30), "stepcache serve not listening after 30s:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `https://127.0.0.1:PORT/mutate`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/mutate", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("serve.log")
    }

    /// Everything it logged so far (across restarts).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Its `/metrics` text.
    pub async fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        reqwest::get(&url).await.unwrap().text().await.unwrap()
    }

    /// SIGKILL: no graceful shutdown, nothing flushed.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.pid_file);
    }

    /// Starts it again with the same flags, store and ports.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// Waits until its log contains `needle`, returning the log.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        let t = Instant::now();
        loop {
            let logs = self.logs();
            if logs.contains(needle) {
                return logs;
            }
            assert!(t.elapsed() < timeout, "no {needle:?} in the log after {timeout:?}:\n{logs}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// Webhook registration

/// The webhook entry as the chart configures it (rules, Ignore, NoneOnDryRun, Never, the
/// Argo-step objectSelector), called by URL and limited to `namespaces`.
pub fn webhook_entry(namespaces: &[&str]) -> Value {
    json!({
        "name": "pods.stepcache.dev",
        "admissionReviewVersions": ["v1"],
        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"}],
        "matchPolicy": "Equivalent",
        "failurePolicy": "Ignore",
        "timeoutSeconds": 5,
        "sideEffects": "NoneOnDryRun",
        "reinvocationPolicy": "Never",
        "namespaceSelector": {"matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": namespaces}]},
        "objectSelector": {"matchExpressions": [
            {"key": "workflows.argoproj.io/workflow", "operator": "Exists"},
            {"key": "workflows.argoproj.io/component", "operator": "DoesNotExist"},
            {"key": "stepcache.dev/enabled", "operator": "NotIn", "values": ["false"]}]},
    })
}

/// Registers `entry` (its `clientConfig` set to `serve`'s URL and the kit's CA) as the
/// MutatingWebhookConfiguration `name`.
pub async fn register(client: &kube::Client, kit: &Kit, name: &str, mut entry: Value, url: &str) {
    use base64::Engine;
    entry["clientConfig"] =
        json!({"url": url, "caBundle": base64::engine::general_purpose::STANDARD.encode(kit.ca_pem.as_bytes())});
    let cfg: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name}, "webhooks": [entry]}))
    .unwrap();
    Api::<MutatingWebhookConfiguration>::all(client.clone()).create(&PostParams::default(), &cfg).await.unwrap();
}

/// Deletes the MutatingWebhookConfiguration `name`.
pub async fn unregister(client: &kube::Client, name: &str) {
    let _ = Api::<MutatingWebhookConfiguration>::all(client.clone()).delete(name, &DeleteParams::default()).await;
}

/// Polls `?dryRun=All` creates of `pod` until the webhook has answered (the pod comes back with
/// a `stepcache.dev/decision` label): a new configuration takes effect only after a moment.
pub async fn wait_effective(client: &kube::Client, ns: &str, pod: &Value) {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut probe = pod.clone();
    probe["metadata"]["namespace"] = json!(ns);
    let probe: Pod = serde_json::from_value(probe).unwrap();
    let pp = PostParams { dry_run: true, ..Default::default() };
    let t = Instant::now();
    loop {
        let got = api.create(&pp, &probe).await.unwrap();
        if got.metadata.labels.as_ref().is_some_and(|l| l.contains_key("stepcache.dev/decision")) {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "webhook not called after 30s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The pod of an admission fixture (`request.object`) as the Argo controller would create it in
/// `ns`: without the status and server-set metadata.
pub fn pod_object(review: &Value, ns: &str) -> Value {
    let mut pod = review.pointer("/request/object").cloned().unwrap_or_else(|| review.clone());
    if let Some(o) = pod.as_object_mut() {
        o.remove("status");
    }
    if let Some(m) = pod["metadata"].as_object_mut() {
        for k in ["uid", "resourceVersion", "creationTimestamp", "managedFields", "generateName"] {
            m.remove(k);
        }
    }
    pod["metadata"]["namespace"] = json!(ns);
    pod
}

/// Sum of `stepcache_admission_requests_total` over every decision: how often it was called.
pub fn admissions(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("stepcache_admission_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// [`wait_effective`] for a server whose answer leaves no trace on the pod (`serve --noop`):
/// polls `?dryRun=All` creates until its admission count moves.
pub async fn wait_called(client: &kube::Client, ns: &str, pod: &Value, serve: &Serve) {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut probe = pod.clone();
    probe["metadata"]["namespace"] = json!(ns);
    let probe: Pod = serde_json::from_value(probe).unwrap();
    let pp = PostParams { dry_run: true, ..Default::default() };
    let before = admissions(&serve.metrics().await);
    let t = Instant::now();
    loop {
        api.create(&pp, &probe).await.unwrap();
        if admissions(&serve.metrics().await) > before {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "webhook not called after 30s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
