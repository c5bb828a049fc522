//! Cache-key derivation: canonical key material from a step pod, hashed into a versioned key.
//!
//! Owns: `derive_key`, `KeyMaterial`, `Scope`, the canonical JSON form and `diff_material`.
//! Specification (what is in the material, what is not, and why): `docs/cache-key.md`.
//! Pure: no I/O, no clock. Must not import tokio, sqlx, axum or kube::Client.
//!
//! The key is computed from what reaches the containers (the pod spec after Argo's
//! substitution), not from the template's parameter list, because Argo 3.6+ strips
//! `inputs.parameters` from the carried template while ≤3.5 keeps them; keys must not depend on
//! the controller version. Changing anything here that changes a key is a key-format bump:
//! the golden vectors in `tests/key_vectors/` fail until they are deliberately regenerated.

use crate::argo::contract::{self, Role};
use crate::argo::labels;
use crate::argo::template::{StepPod, TemplateKind};
use crate::types::{CacheKey, CacheSeed, KEY_FORMAT};
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, PodSpec, VolumeMount};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fmt::Write as _;

pub mod configmaps;
pub mod env;

use configmaps::ConfigMaps;

/// Which pods may share entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Entries are shared only within a namespace (default).
    #[default]
    Namespace,
    /// Entries are shared across namespaces (explicit admin opt-in).
    Cluster,
}

impl Scope {
    /// Every scope, in the order flags list them.
    pub const ALL: [Scope; 2] = [Scope::Namespace, Scope::Cluster];

    /// The flag and configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Namespace => "namespace",
            Scope::Cluster => "cluster",
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| format!("unknown scope {s:?}: expected namespace or cluster"))
    }
}

/// The canonical key material and the key derived from it.
///
/// The material is stored with each entry so a later miss can be explained by
/// [`diff_material`] instead of by guessing.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct KeyMaterial {
    /// `v1:<sha256 hex of canonical_json(material)>`.
    pub key: CacheKey,
    /// The material, already pruned (no nulls, no empty arrays/objects).
    pub material: Value,
}

/// Errors deriving a key.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KeyError {
    /// Every container is Argo's (`wait`): nothing user-defined to key on.
    #[error("pod has no user container to key on")]
    NoUserContainer,
    /// The pod has no `spec` at all.
    #[error("pod has no spec")]
    NoPodSpec,
    /// A template field the key reads has the wrong type (normally caught by `classify`).
    #[error("malformed template: {0}")]
    Malformed(String),
    /// A pod field could not be turned into JSON.
    #[error("cannot encode {0} as JSON")]
    Encode(String),
    /// The step reads a ConfigMap whose contents the caller cannot see (watch cache not synced,
    /// ConfigMap missing, no cluster): keying it by name alone could serve a run that read
    /// other contents, so the step is not keyed.
    #[error("configmap-unknown: {0}")]
    ConfigMapUnknown(String),
    /// Secret contents are keyed (`--key-secret-contents`) and the step reads a Secret the
    /// caller cannot see: not keyed, for the same reason.
    #[error("secret-unknown: {0}")]
    SecretUnknown(String),
}

impl KeyError {
    /// Bounded metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            KeyError::NoUserContainer => "no_user_container",
            KeyError::NoPodSpec => "no_pod_spec",
            KeyError::Malformed(_) => "malformed_template",
            KeyError::Encode(_) => "encode",
            KeyError::ConfigMapUnknown(_) => "configmap_unknown",
            KeyError::SecretUnknown(_) => "secret_unknown",
        }
    }
}

/// Names of the top-level fields of the key material (also the vocabulary of `diff_material`).
pub mod field {
    /// Key format version (`v1`).
    pub const FORMAT: &str = "format";
    /// Namespace, present only for namespace scope.
    pub const NAMESPACE: &str = "namespace";
    /// The author's cache seed.
    pub const SEED: &str = "seed";
    /// User containers, sorted by name.
    pub const CONTAINERS: &str = "containers";
    /// User init containers, in pod order (they run sequentially).
    pub const INIT_CONTAINERS: &str = "initContainers";
    /// Volumes referenced by kept mounts: name → source.
    pub const VOLUMES: &str = "volumes";
    /// `script.source` of script templates.
    pub const SCRIPT_SOURCE: &str = "scriptSource";
    /// Container-set dependency graph: container name → sorted dependencies.
    pub const CONTAINER_SET: &str = "containerSetDependencies";
    /// `inputs.artifacts`, sorted by name.
    pub const INPUT_ARTIFACTS: &str = "inputArtifacts";
    /// Declared outputs (`parameters`, `artifacts`), sorted by name.
    pub const OUTPUTS: &str = "outputs";
    /// The artifact repository (`archiveLocation` without its per-run key) that completes
    /// key-only input artifacts.
    pub const INPUT_ARTIFACT_REPOSITORY: &str = "inputArtifactRepository";
    /// The artifact repository (`archiveLocation` without its per-run key) that key-only
    /// output artifacts (and archived logs) are written to and resolved against: an entry's
    /// stored references are only meaningful in that repository.
    pub const OUTPUT_ARTIFACT_REPOSITORY: &str = "outputArtifactRepository";
    /// Pod `hostAliases` (entries of `/etc/hosts`), in order.
    pub const HOST_ALIASES: &str = "hostAliases";
    /// The template's `podSpecPatch`, which can rewrite any container, Argo's included.
    pub const POD_SPEC_PATCH: &str = "podSpecPatch";
    /// What differs in Argo's own containers (`init`, `wait`, `supervisor`, the `argoexec-bin`
    /// image, artifact plugins) from what the controller builds: a workflow-level
    /// `podSpecPatch` rewrites them after the template is serialised. Absent for honest pods.
    pub const ARGO_CONTAINERS: &str = "argoContainers";
    /// The runtime class and the OS/architecture the pod pins (`nodeSelector`, required node
    /// affinity, `spec.os`): the same image tag can be another build, or another sandbox.
    pub const PLATFORM: &str = "platform";
    /// ConfigMap name → content digest for every ConfigMap the step reads (user containers'
    /// `envFrom`/`configMapKeyRef`, configMap volumes and projected sources): the references
    /// elsewhere in the material are names, and a name says nothing about the contents.
    pub const CONFIG_MAPS: &str = "configMaps";
    /// Secret name → keyed content digest, only with `--key-secret-contents`.
    pub const SECRETS: &str = "secrets";
}

/// Derives the key of a step from the pod Argo built and the step's seed, seeing no ConfigMap:
/// the view of callers without a cluster (`stepcache key`, `review`, tools). A step that reads a
/// ConfigMap is not keyed ([`KeyError::ConfigMapUnknown`]); use [`derive_key_with`] where the
/// contents are known.
pub fn derive_key(pod: &Pod, step: &StepPod, seed: &CacheSeed, scope: Scope) -> Result<KeyMaterial, KeyError> {
    derive_key_with(pod, step, seed, scope, &configmaps::NoConfigMaps)
}

/// Derives the key of a step from the pod Argo built, the step's seed and the contents of the
/// ConfigMaps it reads (digests through `configmaps`, looked up in the step's namespace).
///
/// See `docs/cache-key.md` for the exact material. Errors when the pod has nothing to key on,
/// the template has fields of the wrong type, or a ConfigMap the step reads is not known; the
/// caller then lets the pod run uncached.
pub fn derive_key_with(
    pod: &Pod,
    step: &StepPod,
    seed: &CacheSeed,
    scope: Scope,
    configmaps: &dyn ConfigMaps,
) -> Result<KeyMaterial, KeyError> {
    let spec = pod.spec.as_ref().ok_or(KeyError::NoPodSpec)?;
    step.template.validate(step.kind).map_err(|e| KeyError::Malformed(e.to_string()))?;

    let mut m = Map::new();
    m.insert(field::FORMAT.into(), Value::String(KEY_FORMAT.into()));
    if scope == Scope::Namespace {
        m.insert(field::NAMESPACE.into(), Value::String(step.namespace.as_str().into()));
    }
    m.insert(field::SEED.into(), Value::String(seed.as_str().into()));

    let mut user: Vec<&Container> = spec.containers.iter().filter(|c| is_user_container(step, c, false)).collect();
    if user.is_empty() {
        return Err(KeyError::NoUserContainer);
    }
    user.sort_by(|a, b| a.name.cmp(&b.name));
    let user_init: Vec<&Container> =
        spec.init_containers.iter().flatten().filter(|c| is_user_container(step, c, true)).collect();

    let mut referenced = BTreeSet::new();
    let containers = user
        .iter()
        .map(|c| container_material(pod, step, c, Role::User, &mut referenced))
        .collect::<Result<Vec<_>, _>>()?;
    let inits = user_init
        .iter()
        .map(|c| container_material(pod, step, c, Role::UserInit, &mut referenced))
        .collect::<Result<Vec<_>, _>>()?;
    m.insert(field::CONTAINERS.into(), Value::Array(containers));
    m.insert(field::INIT_CONTAINERS.into(), Value::Array(inits));
    let aliases =
        spec.host_aliases.iter().flatten().map(|h| encode("hostAliases", h)).collect::<Result<Vec<_>, _>>()?;
    m.insert(field::HOST_ALIASES.into(), Value::Array(aliases));
    if let Some(p) = step.template.pod_spec_patch() {
        m.insert(field::POD_SPEC_PATCH.into(), Value::String(p.into()));
    }
    m.insert(field::ARGO_CONTAINERS.into(), argo_containers_material(step, spec, &mut referenced)?);
    m.insert(field::VOLUMES.into(), volumes_material(pod, spec, &referenced)?);
    m.insert(field::PLATFORM.into(), platform_material(spec)?);
    m.insert(field::CONFIG_MAPS.into(), configmaps_material(step, spec, &user, &user_init, &referenced, configmaps)?);
    m.insert(field::SECRETS.into(), secrets_material(step, spec, &user, &user_init, &referenced, configmaps)?);

    if step.kind == TemplateKind::Script {
        if let Some(src) = step.template.script_source() {
            m.insert(field::SCRIPT_SOURCE.into(), Value::String(src.into()));
        }
    }
    if step.kind == TemplateKind::ContainerSet {
        let mut deps = Map::new();
        for (name, d) in step.template.container_set_dependencies() {
            let mut d: Vec<&str> = d;
            d.sort_unstable();
            d.dedup();
            deps.insert(name.into(), Value::Array(d.into_iter().map(|s| Value::String(s.into())).collect()));
        }
        m.insert(field::CONTAINER_SET.into(), Value::Object(deps));
    }

    let mut inputs: Vec<Value> =
        step.template.input_artifacts().into_iter().map(|a| Value::Object(a.clone())).collect();
    inputs.sort_by(|a, b| name_of(a).cmp(name_of(b)));
    if let Some(repo) = step.template.archive_location() {
        if !inputs.is_empty() {
            m.insert(field::INPUT_ARTIFACT_REPOSITORY.into(), repository_material(repo));
        }
        if writes_to_repository(step, repo) {
            m.insert(field::OUTPUT_ARTIFACT_REPOSITORY.into(), repository_material(repo));
        }
    }
    m.insert(field::INPUT_ARTIFACTS.into(), Value::Array(inputs));
    m.insert(field::OUTPUTS.into(), outputs_material(step));

    let material = prune(Value::Object(m)).unwrap_or_else(|| Value::Object(Map::new()));
    let digest = Sha256::digest(canonical_json(&material).as_bytes());
    Ok(KeyMaterial { key: CacheKey::from_digest(&digest), material })
}

/// Names of the objects (ConfigMaps or Secrets) the step reads: through the env of its user
/// containers (`container_refs`) and through the volumes kept in `volumes` (`volume_refs`).
fn read_objects(
    spec: &PodSpec,
    user: &[&Container],
    user_init: &[&Container],
    referenced: &BTreeSet<String>,
    container_refs: fn(&Container, &mut BTreeSet<String>),
    volume_refs: fn(&k8s_openapi::api::core::v1::Volume, &mut BTreeSet<String>),
) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for c in user.iter().chain(user_init) {
        container_refs(c, &mut names);
    }
    for v in spec.volumes.iter().flatten().filter(|v| referenced.contains(&v.name)) {
        volume_refs(v, &mut names);
    }
    names
}

/// Name → content digest of every ConfigMap the step reads: user containers' env references
/// and the configMap (or projected configMap) volumes kept in `volumes`. The first unknown one
/// stops the derivation.
fn configmaps_material(
    step: &StepPod,
    spec: &PodSpec,
    user: &[&Container],
    user_init: &[&Container],
    referenced: &BTreeSet<String>,
    known: &dyn ConfigMaps,
) -> Result<Value, KeyError> {
    let names = read_objects(spec, user, user_init, referenced, configmaps::container_refs, configmaps::volume_refs);
    let mut out = Map::new();
    for name in names {
        let d = known.digest(step.namespace.as_str(), &name).ok_or_else(|| KeyError::ConfigMapUnknown(name.clone()))?;
        out.insert(name, Value::String(d));
    }
    Ok(Value::Object(out))
}

/// Name → keyed content digest of every Secret the step reads, when the admin keys Secret
/// contents (`--key-secret-contents`); empty (pruned) otherwise, the references being keyed
/// where they stand. The first Secret that is keyed but not visible stops the derivation.
fn secrets_material(
    step: &StepPod,
    spec: &PodSpec,
    user: &[&Container],
    user_init: &[&Container],
    referenced: &BTreeSet<String>,
    known: &dyn ConfigMaps,
) -> Result<Value, KeyError> {
    let names = read_objects(
        spec,
        user,
        user_init,
        referenced,
        configmaps::container_secret_refs,
        configmaps::volume_secret_refs,
    );
    let mut out = Map::new();
    for name in names {
        match known.secret(step.namespace.as_str(), &name) {
            configmaps::SecretContents::ByReference => {}
            configmaps::SecretContents::Known(d) => {
                out.insert(name, Value::String(d));
            }
            configmaps::SecretContents::Unknown => return Err(KeyError::SecretUnknown(name)),
        }
    }
    Ok(Value::Object(out))
}

fn name_of(v: &Value) -> &str {
    v.get("name").and_then(Value::as_str).unwrap_or("")
}

fn encode<T: serde::Serialize>(what: &str, v: &T) -> Result<Value, KeyError> {
    serde_json::to_value(v).map_err(|e| KeyError::Encode(format!("{what}: {e}")))
}

/// The command the user's process runs: the emissary wrapper
/// (`/var/run/argo/argoexec emissary [log options] -- <command…>`) removed.
pub fn user_command(command: &[String]) -> &[String] {
    match command {
        [bin, sub, rest @ ..] if bin.ends_with(labels::ARGOEXEC_BINARY) && sub == labels::EMISSARY_SUBCOMMAND => rest
            .iter()
            .position(|a| a == labels::EMISSARY_SEPARATOR)
            .and_then(|i| rest.get(i + 1..))
            .unwrap_or_default(),
        _ => command,
    }
}

/// True for the user's containers: everything except Argo's for the detected layout — the
/// output collector (`wait`, or `supervisor` in the v4.1 init-less layout), the `init`
/// container, and the artifact-plugin containers of the plugins the template uses (v4.0+).
fn is_user_container(step: &StepPod, c: &Container, init: bool) -> bool {
    let argo =
        if init { Some(c.name.as_str()) == step.layout.argo_init() } else { c.name == step.layout.output_collector() };
    !argo && !step.argo.plugin_containers.contains(&c.name)
}

/// True for mounts Argo or the API server add: Argo's volumes where Argo mounts them
/// (`argo::contract::is_argo_mount`), the projected token volume and the service-account mount
/// path. They are identical for every run (or random per pod).
fn is_infrastructure_mount(step: &StepPod, m: &VolumeMount) -> bool {
    contract::is_argo_mount(m, step.layout, &step.argo)
        || m.name.starts_with(labels::KUBE_API_ACCESS_PREFIX)
        || m.mount_path == labels::SERVICE_ACCOUNT_MOUNT_PATH
}

/// True when the step's outputs can reference the artifact repository: it declares output
/// artifacts (Argo's executor stores one without a complete location of its own under the
/// repository and reports only its key, `saveArtifactFromFile`) or archives its logs (the
/// `main-logs` artifact, likewise key-only). Such a reference means nothing outside that
/// repository, so an entry may only be served to a step writing to the same one.
fn writes_to_repository(step: &StepPod, repo: &Map<String, Value>) -> bool {
    let archives_logs = repo.get("archiveLogs").and_then(Value::as_bool) == Some(true);
    archives_logs || !step.template.output_artifacts().is_empty()
}

/// The artifact repository without what is per run: every location's `key` (S3, GCS, OSS,
/// Artifactory URL path, HDFS path, Azure blob) and `archiveLogs`. What is left — bucket,
/// endpoint, region, credentials' secret names — says where a key-only input artifact is read.
fn repository_material(repo: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    for (kind, loc) in repo {
        if kind == "archiveLogs" {
            continue;
        }
        let mut loc = loc.clone();
        if let Some(o) = loc.as_object_mut() {
            for per_run in ["key", "blob", "path", "url"] {
                o.remove(per_run);
            }
        }
        out.insert(kind.clone(), loc);
    }
    Value::Object(out)
}

fn container_material(
    pod: &Pod,
    step: &StepPod,
    c: &Container,
    role: Role,
    referenced: &mut BTreeSet<String>,
) -> Result<Value, KeyError> {
    let mut o = Map::new();
    o.insert("name".into(), Value::String(c.name.clone()));
    if let Some(image) = &c.image {
        o.insert("image".into(), Value::String(image.clone()));
    }
    let command = user_command(c.command.as_deref().unwrap_or_default());
    o.insert("command".into(), strings(command));
    let args = match &step.offloaded_args {
        Some(off) if off.container == c.name => off.args.as_slice(),
        _ => c.args.as_deref().unwrap_or_default(),
    };
    o.insert("args".into(), strings(args));
    if let Some(wd) = c.working_dir.as_ref().filter(|w| !w.is_empty()) {
        o.insert("workingDir".into(), Value::String(wd.clone()));
    }

    // What the process sees (env::effective_env): declared order, `$(VAR)` expansion, the last
    // duplicate winning, Argo's appended block left out by position, downward-API values.
    o.insert("env".into(), env::effective_env(pod, c, step.layout, &step.argo, role));
    // Order kept: later sources override earlier ones.
    let env_from = c.env_from.iter().flatten().map(|e| encode("envFrom", e)).collect::<Result<Vec<_>, _>>()?;
    o.insert("envFrom".into(), Value::Array(env_from));

    let mut mounts: Vec<&VolumeMount> =
        c.volume_mounts.iter().flatten().filter(|m| !is_infrastructure_mount(step, m)).collect();
    mounts.sort_by(|a, b| a.mount_path.cmp(&b.mount_path));
    let mounts = mounts
        .into_iter()
        .map(|m| {
            referenced.insert(m.name.clone());
            mount_material(m)
        })
        .collect();
    o.insert("volumeMounts".into(), Value::Array(mounts));
    // Raw block devices: a PVC used only this way is still input to the step.
    let mut devices: Vec<(&str, &str)> =
        c.volume_devices.iter().flatten().map(|d| (d.device_path.as_str(), d.name.as_str())).collect();
    devices.sort_unstable();
    let devices = devices
        .into_iter()
        .map(|(path, name)| {
            referenced.insert(name.to_owned());
            let mut v = Map::new();
            v.insert("name".into(), Value::String(name.into()));
            v.insert("devicePath".into(), Value::String(path.into()));
            Value::Object(v)
        })
        .collect();
    o.insert("volumeDevices".into(), Value::Array(devices));
    Ok(Value::Object(o))
}

/// Repositories of the upstream Argo executor image (`argoexec`), any tag or digest. A genuine
/// upstream executor of any version is taken to report what the step produced, as the
/// cross-version equality of keys already assumes; any other image is keyed as written.
const UPSTREAM_EXECUTOR_REPOSITORIES: &[&str] =
    &["quay.io/argoproj/argoexec", "argoproj/argoexec", "docker.io/argoproj/argoexec"];

/// The executor's log options (`getExecutorLogOpts`): they differ per Argo version and
/// controller configuration, never per step.
const EXECUTOR_LOG_OPTIONS: &[&str] = &["--loglevel", "--log-format", "--gloglevel"];

/// True when `image` is the upstream executor (`quay.io/argoproj/argoexec:<tag>`,
/// `argoproj/argoexec@sha256:…`): the repository is what remains after the digest, and after a
/// tag that follows the last `/` (a registry port is not a tag).
fn is_upstream_executor(image: &str) -> bool {
    let repo = image.split('@').next().unwrap_or(image);
    let repo = match repo.rfind(':') {
        Some(i) if !repo.get(i..).unwrap_or_default().contains('/') => repo.get(..i).unwrap_or(repo),
        _ => repo,
    };
    UPSTREAM_EXECUTOR_REPOSITORIES.contains(&repo)
}

/// True when `command` is what the controller gives its executor container `name`:
/// `argoexec <name> [log options]` (binary as `argoexec` or an absolute path to it).
fn is_executor_command(command: &[String], name: &str) -> bool {
    let [bin, sub, opts @ ..] = command else {
        return false;
    };
    if !(bin == labels::ARGOEXEC_BINARY || bin.ends_with(&format!("/{}", labels::ARGOEXEC_BINARY))) || sub != name {
        return false;
    }
    let mut rest = opts.iter();
    while let Some(opt) = rest.next() {
        match opt.split_once('=') {
            Some((flag, _)) if EXECUTOR_LOG_OPTIONS.contains(&flag) => {}
            None if EXECUTOR_LOG_OPTIONS.contains(&opt.as_str()) => {
                if rest.next().is_none() {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

/// Argo's own containers as far as they differ from what the controller builds (§1.3, §1.8,
/// §1.11): the controller serialises `ARGO_TEMPLATE` before it applies the **workflow**
/// `podSpecPatch`, which can replace any of them — and `wait`/`supervisor` report the outputs
/// that get recorded, `init` (or the `argoexec-bin` image) supplies the emissary that runs the
/// user's command. Per executor container: `image` unless upstream, `command` unless
/// `argoexec <name> [log options]`, `args`, `workingDir`, `envFrom`, `lifecycle`, probes,
/// `volumeDevices`, env but the contract's names, mounts but the controller's. Artifact-plugin
/// containers: the distinct `{image, command, args}` (names and count differ per layout).
/// An honest pod yields nothing (pruned away), so honest keys do not depend on the layout or on
/// the executor version.
fn argo_containers_material(
    step: &StepPod,
    spec: &PodSpec,
    referenced: &mut BTreeSet<String>,
) -> Result<Value, KeyError> {
    let all = || spec.init_containers.iter().flatten().chain(spec.containers.iter());
    let executor =
        |c: &Container| Some(c.name.as_str()) == step.layout.argo_init() || c.name == step.layout.output_collector();
    let user_mounts: BTreeSet<(String, String, String)> = all()
        .filter(|c| !executor(c) && !step.argo.plugin_containers.contains(&c.name))
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .map(|m| (m.name.clone(), m.mount_path.clone(), m.sub_path.clone().unwrap_or_default()))
        .collect();

    let mut out = Map::new();
    for c in all().filter(|c| executor(c)) {
        let mut o = Map::new();
        if let Some(image) = c.image.as_ref().filter(|i| !is_upstream_executor(i)) {
            o.insert("image".into(), Value::String(image.clone()));
        }
        let command = c.command.as_deref().unwrap_or_default();
        if !is_executor_command(command, &c.name) {
            o.insert("command".into(), strings(command));
        }
        o.insert("args".into(), strings(c.args.as_deref().unwrap_or_default()));
        if let Some(wd) = c.working_dir.as_ref().filter(|w| !w.is_empty()) {
            o.insert("workingDir".into(), Value::String(wd.clone()));
        }
        let mut env: Vec<&EnvVar> =
            c.env.iter().flatten().filter(|e| !contract::is_executor_env(&e.name, step.layout, &step.argo)).collect();
        env.sort_by(|a, b| a.name.cmp(&b.name));
        let env = env.into_iter().map(|e| encode("env", e).map(normalize_env)).collect::<Result<Vec<_>, _>>()?;
        o.insert("env".into(), Value::Array(env));
        let env_from = c.env_from.iter().flatten().map(|e| encode("envFrom", e)).collect::<Result<Vec<_>, _>>()?;
        o.insert("envFrom".into(), Value::Array(env_from));
        for (name, v) in [
            ("lifecycle", c.lifecycle.as_ref().map(|x| encode("lifecycle", x)).transpose()?),
            ("startupProbe", c.startup_probe.as_ref().map(|x| encode("startupProbe", x)).transpose()?),
            ("livenessProbe", c.liveness_probe.as_ref().map(|x| encode("livenessProbe", x)).transpose()?),
            ("readinessProbe", c.readiness_probe.as_ref().map(|x| encode("readinessProbe", x)).transpose()?),
        ] {
            if let Some(v) = v {
                o.insert(name.into(), v);
            }
        }
        let mut mounts: Vec<&VolumeMount> = c
            .volume_mounts
            .iter()
            .flatten()
            .filter(|m| {
                !contract::is_executor_mount(m, step.layout, &step.argo, &user_mounts)
                    && !m.name.starts_with(labels::KUBE_API_ACCESS_PREFIX)
                    && m.mount_path != labels::SERVICE_ACCOUNT_MOUNT_PATH
            })
            .collect();
        mounts.sort_by(|a, b| a.mount_path.cmp(&b.mount_path));
        let mounts = mounts
            .into_iter()
            .map(|m| {
                referenced.insert(m.name.clone());
                mount_material(m)
            })
            .collect();
        o.insert("volumeMounts".into(), Value::Array(mounts));
        let devices = c
            .volume_devices
            .iter()
            .flatten()
            .map(|d| {
                referenced.insert(d.name.clone());
                encode("volumeDevices", d)
            })
            .collect::<Result<Vec<_>, _>>()?;
        o.insert("volumeDevices".into(), Value::Array(devices));
        if let Some(record) = prune(Value::Object(o)) {
            out.insert(c.name.clone(), record);
        }
    }
    if step.layout == crate::argo::template::ArgoLayout::TemplateEnvSupervisor {
        let bin = spec.volumes.iter().flatten().find(|v| v.name == labels::ARGOEXEC_BIN.0);
        if let Some(reference) = bin.and_then(|v| v.image.as_ref()).and_then(|i| i.reference.as_ref()) {
            if !is_upstream_executor(reference) {
                out.insert(labels::ARGOEXEC_BIN.0.into(), serde_json::json!({ "image": reference }));
            }
        }
    }
    // Argo's own scratch volumes are plain emptyDirs (contract §1.3); a source a patch gave
    // them instead (a hostPath holding a prepared `argoexec`, a PVC) is keyed.
    for name in [labels::VAR_RUN_ARGO.0, labels::TMP_DIR_ARGO.0, labels::ARGO_STAGING.0, labels::INPUT_ARTIFACTS_VOLUME]
    {
        if let Some(v) = spec.volumes.iter().flatten().find(|v| v.name == name) {
            let plain_empty_dir =
                v.empty_dir.as_ref().is_some_and(|e| e.medium.as_deref().unwrap_or_default().is_empty())
                    && v.host_path.is_none()
                    && v.persistent_volume_claim.is_none();
            if !plain_empty_dir {
                let mut source = encode("volume", v)?;
                if let Some(o) = source.as_object_mut() {
                    o.remove("name");
                }
                out.insert(format!("volume:{name}"), source);
            }
        }
    }
    let mut plugins: Vec<Value> = all()
        .filter(|c| step.argo.plugin_containers.contains(&c.name))
        .map(|c| {
            let mut o = Map::new();
            if let Some(image) = &c.image {
                o.insert("image".into(), Value::String(image.clone()));
            }
            o.insert("command".into(), strings(c.command.as_deref().unwrap_or_default()));
            o.insert("args".into(), strings(c.args.as_deref().unwrap_or_default()));
            Value::Object(o)
        })
        .collect();
    plugins.sort_by_cached_key(canonical_json);
    plugins.dedup();
    out.insert("plugins".into(), Value::Array(plugins));
    Ok(Value::Object(out))
}

/// Node labels that say which OS and CPU architecture a node runs (current and deprecated).
const PLATFORM_LABELS: &[&str] =
    &["kubernetes.io/arch", "kubernetes.io/os", "beta.kubernetes.io/arch", "beta.kubernetes.io/os"];

/// The runtime class and the OS/architecture the pod pins: `runtimeClassName` (a sandboxed
/// runtime such as gVisor or Kata is another kernel), `spec.os.name`, the `nodeSelector`
/// entries on [`PLATFORM_LABELS`], and the required node-affinity terms restricted to those
/// labels (terms are alternatives: each is a sorted list of its platform expressions, `"*"`
/// for a term that does not pin the platform; the terms sorted and deduplicated).
/// One image tag can name different builds per architecture (a multi-arch index), so the same
/// step on arm64 and amd64 nodes is not assumed to compute the same thing when the pod says which.
fn platform_material(spec: &PodSpec) -> Result<Value, KeyError> {
    let mut o = Map::new();
    if let Some(rc) = spec.runtime_class_name.as_ref().filter(|r| !r.is_empty()) {
        o.insert("runtimeClassName".into(), Value::String(rc.clone()));
    }
    if let Some(os) = spec.os.as_ref().filter(|os| !os.name.is_empty()) {
        o.insert("os".into(), Value::String(os.name.clone()));
    }
    let selector: Map<String, Value> = spec
        .node_selector
        .iter()
        .flatten()
        .filter(|(k, _)| PLATFORM_LABELS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    o.insert("nodeSelector".into(), Value::Object(selector));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
    if let Some(required) = required {
        let mut terms = Vec::new();
        for term in &required.node_selector_terms {
            let mut exprs = Vec::new();
            for e in term.match_expressions.iter().flatten().filter(|e| PLATFORM_LABELS.contains(&e.key.as_str())) {
                let mut values = e.values.clone().unwrap_or_default();
                values.sort_unstable();
                values.dedup();
                exprs.push(serde_json::json!({"key": e.key, "operator": e.operator, "values": values}));
            }
            exprs.sort_by_cached_key(canonical_json);
            terms.push(if exprs.is_empty() { Value::String("*".into()) } else { Value::Array(exprs) });
        }
        terms.sort_by_cached_key(canonical_json);
        terms.dedup();
        // Only a pin when every alternative pins: one unpinned term lets it run anywhere.
        if terms.iter().any(|t| t.is_array()) {
            o.insert("requiredNodeAffinity".into(), Value::Array(terms));
        }
    }
    Ok(Value::Object(o))
}

/// One mount as keyed: `{name, mountPath, subPath, subPathExpr, readOnly}` (`readOnly` only when true).
fn mount_material(m: &VolumeMount) -> Value {
    let mut v = Map::new();
    v.insert("name".into(), Value::String(m.name.clone()));
    v.insert("mountPath".into(), Value::String(m.mount_path.clone()));
    if let Some(s) = m.sub_path.as_ref().filter(|s| !s.is_empty()) {
        v.insert("subPath".into(), Value::String(s.clone()));
    }
    if let Some(s) = m.sub_path_expr.as_ref().filter(|s| !s.is_empty()) {
        v.insert("subPathExpr".into(), Value::String(s.clone()));
    }
    if m.read_only == Some(true) {
        v.insert("readOnly".into(), Value::Bool(true));
    }
    Value::Object(v)
}

fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| Value::String(s.clone())).collect())
}

/// Removes what the API server fills in by default from an env entry of Argo's executor
/// containers (keyed as entries, not as a process environment): `value: ""` (same as absent),
/// `fieldRef.apiVersion: v1`, `resourceFieldRef.divisor: "0"`.
fn normalize_env(mut e: Value) -> Value {
    if let Some(o) = e.as_object_mut() {
        if o.get("value").and_then(Value::as_str) == Some("") {
            o.remove("value");
        }
        if let Some(from) = o.get_mut("valueFrom").and_then(Value::as_object_mut) {
            if let Some(f) = from.get_mut("fieldRef").and_then(Value::as_object_mut) {
                if f.get("apiVersion").and_then(Value::as_str) == Some("v1") {
                    f.remove("apiVersion");
                }
            }
            if let Some(f) = from.get_mut("resourceFieldRef").and_then(Value::as_object_mut) {
                if f.get("divisor").and_then(Value::as_str) == Some("0") {
                    f.remove("divisor");
                }
            }
        }
    }
    e
}

/// The default file mode the API server writes into configMap/secret/projected/downwardAPI
/// volumes (0644).
const DEFAULT_VOLUME_MODE: u64 = 0o644;

fn volumes_material(pod: &Pod, spec: &PodSpec, referenced: &BTreeSet<String>) -> Result<Value, KeyError> {
    let mut out = Map::new();
    for v in spec.volumes.iter().flatten() {
        if !referenced.contains(&v.name) || out.contains_key(&v.name) {
            continue;
        }
        let mut source = encode("volume", v)?;
        if let Some(o) = source.as_object_mut() {
            o.remove("name");
            for kind in ["configMap", "secret", "projected", "downwardAPI"] {
                if let Some(s) = o.get_mut(kind).and_then(Value::as_object_mut) {
                    if s.get("defaultMode").and_then(Value::as_u64) == Some(DEFAULT_VOLUME_MODE) {
                        s.remove("defaultMode");
                    }
                }
            }
            // What a downwardAPI volume (or projected source) writes: the values, where they are
            // the same for every run of the step.
            if let Some(d) = o.get_mut("downwardAPI") {
                resolve_downward_items(pod, d);
            }
            if let Some(sources) =
                o.get_mut("projected").and_then(|p| p.get_mut("sources")).and_then(Value::as_array_mut)
            {
                for src in sources {
                    if let Some(d) = src.get_mut("downwardAPI") {
                        resolve_downward_items(pod, d);
                    }
                }
            }
            if let Some(h) = o.get_mut("hostPath").and_then(Value::as_object_mut) {
                if h.get("type").and_then(Value::as_str) == Some("") {
                    h.remove("type");
                }
            }
        }
        out.insert(v.name.clone(), source);
    }
    Ok(Value::Object(out))
}

/// Adds each downward-API item's value (`value`) next to its reference: a label or annotation
/// (or the whole map, stepcache's and Argo's outputs left out as in [`env::visible`]), the
/// namespace, the service account, a container's resource amount. Per-run identity fields keep
/// only their reference.
fn resolve_downward_items(pod: &Pod, d: &mut Value) {
    let Some(items) = d.get_mut("items").and_then(Value::as_array_mut) else {
        return;
    };
    for item in items {
        let value = if let Some(path) = item.pointer("/fieldRef/fieldPath").and_then(Value::as_str) {
            match path {
                "metadata.labels" => Some(downward_map(pod.metadata.labels.as_ref())),
                "metadata.annotations" => Some(downward_map(pod.metadata.annotations.as_ref())),
                p => env::downward_field(pod, p).map(Value::String),
            }
        } else if let Some(r) = item.get("resourceFieldRef") {
            let resource = r.get("resource").and_then(Value::as_str).unwrap_or_default();
            let container = r.get("containerName").and_then(Value::as_str).unwrap_or_default();
            let (kind, name) = resource.split_once('.').unwrap_or_default();
            pod.spec
                .as_ref()
                .and_then(|s| {
                    s.containers.iter().chain(s.init_containers.iter().flatten()).find(|c| c.name == container)
                })
                .and_then(|c| c.resources.as_ref())
                .and_then(|res| if kind == "limits" { res.limits.as_ref() } else { res.requests.as_ref() })
                .and_then(|m| m.get(name))
                .map(|q| Value::String(q.0.clone()))
        } else {
            None
        };
        if let (Some(v), Some(o)) = (value, item.as_object_mut()) {
            o.insert("value".into(), v);
        }
    }
}

fn downward_map(map: Option<&std::collections::BTreeMap<String, String>>) -> Value {
    Value::Object(env::visible(map).into_iter().map(|(k, v)| (k.to_owned(), Value::String(v))).collect())
}

/// Declared outputs: what a served entry must provide and where the run reads it from.
/// Locations (`archiveLocation`, per-artifact `s3`/`gcs`/... keys) are per run and excluded.
fn outputs_material(step: &StepPod) -> Value {
    const ARTIFACT_FIELDS: [&str; 6] = ["name", "path", "archive", "mode", "recurseMode", "globalName"];
    let mut params: Vec<Value> = step
        .template
        .output_parameters()
        .into_iter()
        .map(|p| {
            let mut o = Map::new();
            // `globalName` exports the value as a workflow-global: it changes what Argo does with it.
            for f in ["name", "valueFrom", "globalName"] {
                if let Some(v) = p.get(f) {
                    o.insert(f.into(), v.clone());
                }
            }
            Value::Object(o)
        })
        .collect();
    params.sort_by(|a, b| name_of(a).cmp(name_of(b)));
    let mut arts: Vec<Value> = step
        .template
        .output_artifacts()
        .into_iter()
        .map(|a| {
            let mut o = Map::new();
            for f in ARTIFACT_FIELDS {
                if let Some(v) = a.get(f) {
                    o.insert(f.into(), v.clone());
                }
            }
            if a.get("optional").and_then(Value::as_bool) == Some(true) {
                o.insert("optional".into(), Value::Bool(true));
            }
            Value::Object(o)
        })
        .collect();
    arts.sort_by(|a, b| name_of(a).cmp(name_of(b)));
    let mut o = Map::new();
    o.insert("parameters".into(), Value::Array(params));
    o.insert("artifacts".into(), Value::Array(arts));
    Value::Object(o)
}

/// True for values the canonical form drops: null, `[]`, `{}`.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Drops nulls and empty arrays/objects, bottom-up (a container that only held empties is
/// itself empty), in objects and arrays alike. `None` when nothing is left.
pub fn prune(v: Value) -> Option<Value> {
    let v = match v {
        Value::Array(a) => Value::Array(a.into_iter().filter_map(prune).collect()),
        Value::Object(o) => Value::Object(o.into_iter().filter_map(|(k, v)| prune(v).map(|v| (k, v))).collect()),
        other => other,
    };
    (!is_empty(&v)).then_some(v)
}

/// The canonical text of a JSON value: object keys sorted by UTF-8 bytes, no whitespace,
/// nulls and empty arrays/objects dropped everywhere (as [`prune`] does), strings escaped
/// minimally (`"`, `\`, control characters), numbers as serde_json prints them.
/// A value that prunes away entirely gives the empty string (key material never does: it always
/// holds `format`).
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

/// Writes `v` in canonical form; returns false (and writes nothing) when `v` prunes away.
fn write_canonical(v: &Value, out: &mut String) -> bool {
    let start = out.len();
    match v {
        Value::Null => return false,
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            let mut any = false;
            for item in items {
                let mark = out.len();
                if any {
                    out.push(',');
                }
                if write_canonical(item, out) {
                    any = true;
                } else {
                    out.truncate(mark);
                }
            }
            if !any {
                out.truncate(start);
                return false;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            let mut any = false;
            for k in keys {
                let Some(val) = map.get(k) else { continue };
                let mark = out.len();
                if any {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                if write_canonical(val, out) {
                    any = true;
                } else {
                    out.truncate(mark);
                }
            }
            if !any {
                out.truncate(start);
                return false;
            }
            out.push('}');
        }
    }
    true
}

fn write_string(s: &str, out: &mut String) {
    out.reserve(s.len() + 2);
    out.push('"');
    // Copy unescaped runs in bulk; only `"`, `\` and control characters (all ASCII, so every
    // split point is a char boundary) are escaped. Eight bytes are tested at once (a word
    // without any byte to escape is skipped whole); only a word holding one is read byte by
    // byte, so text with a newline per line is scanned near memory speed.
    let bytes = s.as_bytes();
    let mut copied = 0;
    let mut base = 0;
    let mut words = bytes.chunks_exact(8);
    let mut escape_each = |chunk: &[u8], base: usize| {
        for (off, &b) in chunk.iter().enumerate() {
            if needs_escape(b) {
                copied = push_escaped(s, copied, base + off, out);
            }
        }
    };
    for word in words.by_ref() {
        if word_needs_escape(u64::from_le_bytes(word.try_into().unwrap_or([b'"'; 8]))) {
            escape_each(word, base);
        }
        base += 8;
    }
    escape_each(words.remainder(), base);
    out.push_str(s.get(copied..).unwrap_or_default());
    out.push('"');
}

/// Writes `s[copied..i]` and the escape of byte `i`; returns where the next run starts.
fn push_escaped(s: &str, copied: usize, i: usize, out: &mut String) -> usize {
    out.push_str(s.get(copied..i).unwrap_or_default());
    match s.as_bytes().get(i).copied().unwrap_or_default() {
        b'"' => out.push_str("\\\""),
        b'\\' => out.push_str("\\\\"),
        b'\n' => out.push_str("\\n"),
        b'\r' => out.push_str("\\r"),
        b'\t' => out.push_str("\\t"),
        0x08 => out.push_str("\\b"),
        0x0c => out.push_str("\\f"),
        b => {
            let _ = write!(out, "\\u{b:04x}");
        }
    }
    i + 1
}

/// True for the bytes JSON requires escaped.
#[inline(always)]
fn needs_escape(b: u8) -> bool {
    (b < 0x20) | (b == b'"') | (b == b'\\')
}

/// True when any of the eight bytes of `w` needs escaping: a byte below 0x20, `"` or `\\`.
/// Exact (the classic "has a byte less than n" and "has a zero byte" word tests), so a clean
/// word is skipped without looking at its bytes.
#[inline(always)]
fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    let quote = has_zero(w ^ (ONES * u64::from(b'"')));
    let backslash = has_zero(w ^ (ONES * u64::from(b'\\')));
    (control | quote | backslash) != 0
}

/// Most lines [`diff_material`] returns; the rest are summarised in one last line.
pub const MAX_DIFF_LINES: usize = 40;
/// Most nodes of the two materials [`diff_material`] compares; past it the explanation says it
/// stopped. Keeps the explanation of a miss bounded for any admission under the body limit.
pub const MAX_DIFF_NODES: usize = 50_000;
/// Strings longer than this are shown as a window around their first difference.
const MAX_SHOWN_CHARS: usize = 60;

/// Explains why two key materials give different keys, one line per differing leaf, e.g.
/// `containers[main].args[3]: "16" → "32"` or `containers[main].image: "x:2.3.1" → "x:2.3.2"`.
///
/// Lists of objects are matched by `mountPath` (volume mounts) or by `name` (containers, env,
/// artifacts, parameters) when those are unique in both lists, otherwise by position. Missing sides
/// show as `(absent)`; long strings show a window around the first difference. Empty when
/// the materials are equal. Linear in the materials' size and bounded: at most
/// [`MAX_DIFF_LINES`] lines are rendered and at most [`MAX_DIFF_NODES`] nodes compared.
pub fn diff_material(old: &Value, new: &Value) -> Vec<String> {
    let mut d = Differ { lines: Vec::new(), found: 0, budget: MAX_DIFF_NODES, stopped: false };
    d.diff_at("", Some(old), Some(new));
    let mut lines = d.lines;
    if d.found > MAX_DIFF_LINES {
        lines.push(format!("… and {} more differences", d.found - MAX_DIFF_LINES));
    }
    if d.stopped {
        lines.push(format!("… comparison stopped after {MAX_DIFF_NODES} items"));
    }
    lines
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The identity field by which two arrays' elements can be matched, if any.
fn identity_field(a: &[Value], b: &[Value]) -> Option<&'static str> {
    ["mountPath", "name"].into_iter().find(|f| {
        [a, b].iter().all(|items| {
            let mut seen = std::collections::HashSet::with_capacity(items.len());
            items.iter().all(|i| i.get(*f).and_then(Value::as_str).is_some_and(|id| seen.insert(id)))
        })
    })
}

/// The diff walk: rendered lines, differences found, and the node budget left.
struct Differ {
    lines: Vec<String>,
    found: usize,
    budget: usize,
    stopped: bool,
}

impl Differ {
    /// Records one differing leaf; renders it only while under [`MAX_DIFF_LINES`].
    fn push(&mut self, path: &str, old: Option<&Value>, new: Option<&Value>) {
        self.found += 1;
        if self.lines.len() < MAX_DIFF_LINES {
            self.lines.push(line(path, old, new));
        }
    }

    fn diff_at(&mut self, path: &str, old: Option<&Value>, new: Option<&Value>) {
        if self.budget == 0 {
            self.stopped = true;
            return;
        }
        self.budget -= 1;
        if old == new {
            return;
        }
        match (old, new) {
            (Some(Value::Object(a)), Some(Value::Object(b))) => {
                let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                for k in keys {
                    self.diff_at(&join(path, k), a.get(k), b.get(k));
                }
            }
            (Some(Value::Array(a)), Some(Value::Array(b))) => match identity_field(a, b) {
                Some(f) => self.diff_by_identity(path, f, a, b),
                None => {
                    for i in 0..a.len().max(b.len()) {
                        self.diff_at(&format!("{path}[{i}]"), a.get(i), b.get(i));
                    }
                }
            },
            _ => self.push(path, old, new),
        }
    }

    /// Matches elements by their unique `field`: old order first, then elements only in `b`.
    fn diff_by_identity(&mut self, path: &str, field: &str, a: &[Value], b: &[Value]) {
        fn id<'v>(v: &'v Value, field: &str) -> Option<&'v str> {
            v.get(field).and_then(Value::as_str)
        }
        let id = |v| id(v, field);
        let in_a: std::collections::HashMap<&str, &Value> = a.iter().filter_map(|v| Some((id(v)?, v))).collect();
        let in_b: std::collections::HashMap<&str, &Value> = b.iter().filter_map(|v| Some((id(v)?, v))).collect();
        let only_b = b.iter().filter_map(id).filter(|i| !in_a.contains_key(i));
        let ids: Vec<&str> = a.iter().filter_map(id).chain(only_b).collect();
        for i in ids {
            if self.budget == 0 {
                self.stopped = true;
                return;
            }
            let (x, y) = (in_a.get(i).copied(), in_b.get(i).copied());
            let p = format!("{path}[{i}]");
            if x.is_none() || y.is_none() {
                // Added or removed as a whole: keep it to one line.
                self.budget -= 1;
                self.push(&p, x, y);
            } else {
                self.diff_at(&p, x, y);
            }
        }
    }
}

fn line(path: &str, old: Option<&Value>, new: Option<&Value>) -> String {
    let path = if path.is_empty() { "(material)" } else { path };
    if let (Some(Value::String(a)), Some(Value::String(b))) = (old, new) {
        if a.chars().count() > MAX_SHOWN_CHARS || b.chars().count() > MAX_SHOWN_CHARS {
            let at = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
            return format!(
                "{path}: differs at character {at}: {} → {} ({} → {} characters)",
                window(a, at),
                window(b, at),
                a.chars().count(),
                b.chars().count()
            );
        }
    }
    format!("{path}: {} → {}", render(old), render(new))
}

/// Up to [`MAX_SHOWN_CHARS`] characters of `s` starting a little before `at`, quoted.
fn window(s: &str, at: usize) -> String {
    let from = at.saturating_sub(10);
    let total = s.chars().count();
    let shown: String = s.chars().skip(from).take(MAX_SHOWN_CHARS).collect();
    let mut q = String::new();
    write_string(&shown, &mut q);
    let pre = if from > 0 { "…" } else { "" };
    let post = if from + MAX_SHOWN_CHARS < total { "…" } else { "" };
    format!("{pre}{q}{post}")
}

fn render(v: Option<&Value>) -> String {
    let Some(v) = v else {
        return "(absent)".into();
    };
    let text = if is_empty(v) { v.to_string() } else { canonical_json(v) };
    if text.chars().count() > MAX_SHOWN_CHARS * 2 {
        let cut: String = text.chars().take(MAX_SHOWN_CHARS * 2).collect();
        format!("{cut}… ({} characters)", text.chars().count())
    } else {
        text
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::argo::template::{classify, ArgoLayout, Classification};
    use serde_json::json;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn emissary_wrapper_is_removed_up_to_the_separator() {
        let wrapped = s(&["/var/run/argo/argoexec", "emissary", "--loglevel", "info", "--", "python", "--", "x"]);
        assert_eq!(user_command(&wrapped), s(&["python", "--", "x"]).as_slice());
        let v33 = s(&["/var/run/argo/argoexec", "emissary", "--", "sh", "-c"]);
        assert_eq!(user_command(&v33), s(&["sh", "-c"]).as_slice());
    }

    #[test]
    fn commands_without_the_wrapper_are_kept() {
        for cmd in [s(&["python", "train.py"]), s(&["argoexec", "wait"]), s(&["emissary", "--", "x"]), s(&[])] {
            assert_eq!(user_command(&cmd), cmd.as_slice());
        }
    }

    #[test]
    fn wrapper_without_separator_leaves_no_command() {
        let w = s(&["/var/run/argo/argoexec", "emissary", "--loglevel", "info"]);
        assert!(user_command(&w).is_empty());
    }

    #[test]
    fn canonical_json_sorts_keys_and_drops_empties() {
        let v = json!({"b":[1,null,{}],"a":{"z":null,"y":[]},"c":"x\"\n\u{1}","d":false,"e":{"f":{}}});
        assert_eq!(canonical_json(&v), r#"{"b":[1],"c":"x\"\n\u0001","d":false}"#);
    }

    #[test]
    fn canonical_json_agrees_with_prune_and_is_valid_json() {
        let v = json!({"k":[{"a":null},{"b":"é","a":1.5}],"x":{"y":{"z":[[]]}},"n":-3});
        let pruned = prune(v.clone()).unwrap();
        assert_eq!(canonical_json(&v), canonical_json(&pruned));
        let back: Value = serde_json::from_str(&canonical_json(&v)).unwrap();
        assert_eq!(back, pruned);
        assert_eq!(prune(json!({"a":[null,{}]})), None);
    }

    proptest::proptest! {
        #[test]
        fn canonical_strings_round_trip_and_escape_like_serde_json(text in "(?s).{0,64}") {
            let c = canonical_json(&Value::String(text.clone()));
            proptest::prop_assert_eq!(serde_json::from_str::<Value>(&c).ok(), Some(Value::String(text.clone())));
            proptest::prop_assert_eq!(Some(c), serde_json::to_string(&text).ok());
        }

        #[test]
        fn long_text_with_escapes_at_every_offset_escapes_like_serde_json(
            text in "[a-z \"\\\\\n\t\u{1}\u{1f}é€😀]{0,300}"
        ) {
            proptest::prop_assert_eq!(Some(canonical_json(&Value::String(text.clone()))), serde_json::to_string(&text).ok());
        }
    }

    #[test]
    fn the_word_test_finds_each_escaped_byte_in_every_position_and_nothing_else() {
        for b in 0u8..=255 {
            for pos in 0..8 {
                let mut word = [b'a'; 8];
                word[pos] = b;
                assert_eq!(word_needs_escape(u64::from_le_bytes(word)), needs_escape(b), "byte {b:#x} at {pos}");
            }
        }
    }

    #[test]
    fn canonical_json_escapes_every_control_character() {
        let all: String = (0u8..0x20).map(char::from).chain("\"\\\u{7f}é".chars()).collect();
        let c = canonical_json(&Value::String(all.clone()));
        assert_eq!(serde_json::from_str::<Value>(&c).unwrap(), Value::String(all.clone()));
        assert_eq!(c, serde_json::to_string(&all).unwrap());
    }

    #[test]
    fn canonical_json_is_independent_of_key_insertion_order() {
        let a: Value = serde_json::from_str(r#"{"x":1,"y":{"b":2,"a":3}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"y":{"a":3,"b":2},"x":1}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
    }

    #[test]
    fn diff_names_the_changed_arg_by_container_and_index() {
        let old = json!({"containers":[{"name":"main","args":["--epochs","10","--lr","16"]}]});
        let new = json!({"containers":[{"name":"main","args":["--epochs","10","--lr","32"]}]});
        assert_eq!(diff_material(&old, &new), vec![r#"containers[main].args[3]: "16" → "32""#]);
    }

    #[test]
    fn diff_shows_image_changes() {
        let old = json!({"containers":[{"name":"main","image":"x:2.3.1"}]});
        let new = json!({"containers":[{"name":"main","image":"x:2.3.2"}]});
        assert_eq!(diff_material(&old, &new), vec![r#"containers[main].image: "x:2.3.1" → "x:2.3.2""#]);
    }

    #[test]
    fn diff_matches_env_by_name_and_reports_added_and_removed_entries() {
        let old = json!({"containers":[{"name":"main","env":[{"name":"A","value":"1"},{"name":"B","value":"2"}]}]});
        let new = json!({"containers":[{"name":"main","env":[{"name":"B","value":"3"},{"name":"C","value":"4"}]}]});
        assert_eq!(
            diff_material(&old, &new),
            vec![
                r#"containers[main].env[A]: {"name":"A","value":"1"} → (absent)"#,
                r#"containers[main].env[B].value: "2" → "3""#,
                r#"containers[main].env[C]: (absent) → {"name":"C","value":"4"}"#,
            ]
        );
    }

    #[test]
    fn diff_matches_mounts_by_path_and_covers_top_level_fields() {
        let old = json!({"seed":"","namespace":"a","containers":[{"name":"main","volumeMounts":[{"name":"v","mountPath":"/data"}]}]});
        let new = json!({"seed":"2","containers":[{"name":"main","volumeMounts":[{"name":"w","mountPath":"/data"}]}]});
        assert_eq!(
            diff_material(&old, &new),
            vec![
                r#"containers[main].volumeMounts[/data].name: "v" → "w""#,
                r#"namespace: "a" → (absent)"#,
                r#"seed: "" → "2""#,
            ]
        );
    }

    #[test]
    fn diff_of_long_strings_shows_a_window_at_the_first_difference() {
        let a = format!("{}print(1)\n", "# header\n".repeat(20));
        let b = format!("{}print(2)\n", "# header\n".repeat(20));
        let d = diff_material(&json!({"scriptSource": a}), &json!({"scriptSource": b}));
        assert_eq!(d.len(), 1);
        assert!(d[0].starts_with("scriptSource: differs at character 186:"), "{}", d[0]);
        assert!(d[0].contains("print(1)") && d[0].contains("print(2)"), "{}", d[0]);
        assert!(d[0].len() < 300);
    }

    #[test]
    fn diff_of_equal_materials_is_empty_and_long_diffs_are_capped() {
        let v = json!({"a":[1,2,3]});
        assert!(diff_material(&v, &v).is_empty());
        let old = json!({"containers":[{"name":"main","args":(0..100).map(|i| i.to_string()).collect::<Vec<_>>()}]});
        let new = json!({"containers":[{"name":"main","args":(0..100).map(|i| format!("x{i}")).collect::<Vec<_>>()}]});
        let d = diff_material(&old, &new);
        assert_eq!(d.len(), MAX_DIFF_LINES + 1);
        assert_eq!(d[MAX_DIFF_LINES], "… and 60 more differences");
    }

    fn env_material(n: usize, value: &str) -> Value {
        let env: Vec<Value> =
            (0..n).map(|i| json!({"name": format!("V{i}"), "value": format!("{value}{i}")})).collect();
        json!({"containers":[{"name":"main","env": env}]})
    }

    #[test]
    fn diff_of_twenty_thousand_named_entries_is_linear_and_bounded() {
        let (old, new) = (env_material(20_000, "a"), env_material(20_000, "b"));
        let t = std::time::Instant::now();
        let d = diff_material(&old, &new);
        // Quadratic matching took tens of seconds here; the linear walk takes milliseconds.
        assert!(t.elapsed() < std::time::Duration::from_secs(2), "took {:?}", t.elapsed());
        assert_eq!(d.len(), MAX_DIFF_LINES + 2, "{d:?}");
        assert_eq!(d[0], r#"containers[main].env[V0].value: "a0" → "b0""#);
        assert!(d[MAX_DIFF_LINES].starts_with("… and ") && d[MAX_DIFF_LINES].ends_with(" more differences"));
        assert_eq!(d[MAX_DIFF_LINES + 1], format!("… comparison stopped after {MAX_DIFF_NODES} items"));
    }

    #[test]
    fn diff_matches_named_entries_regardless_of_order_and_reports_added_and_removed() {
        let old = json!({"env":[{"name":"A","value":"1"},{"name":"B","value":"2"},{"name":"C","value":"3"}]});
        let new = json!({"env":[{"name":"D","value":"4"},{"name":"B","value":"9"},{"name":"A","value":"1"}]});
        assert_eq!(
            diff_material(&old, &new),
            vec![
                r#"env[B].value: "2" → "9""#,
                r#"env[C]: {"name":"C","value":"3"} → (absent)"#,
                r#"env[D]: (absent) → {"name":"D","value":"4"}"#
            ]
        );
    }

    #[test]
    fn diff_falls_back_to_positions_when_names_repeat() {
        let old = json!({"env":[{"name":"A","value":"1"},{"name":"A","value":"2"}]});
        let new = json!({"env":[{"name":"A","value":"1"},{"name":"A","value":"3"}]});
        assert_eq!(diff_material(&old, &new), vec![r#"env[1].value: "2" → "3""#]);
    }

    fn v36_pod() -> Pod {
        let text = std::fs::read_to_string(format!(
            "{}/tests/fixtures/argo/v3.6-container-params.admission.json",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../..")
        ))
        .unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        serde_json::from_value(v["request"]["object"].clone()).unwrap()
    }

    #[test]
    fn v36_material_holds_exactly_what_reaches_the_container() {
        let pod = v36_pod();
        let Classification::Step(step) = classify(&pod) else { panic!() };
        let km = derive_key(&pod, &step, &CacheSeed::default(), Scope::Namespace).unwrap();
        assert_eq!(
            km.material,
            json!({
                "format": "v3",
                "namespace": "ml-team",
                "seed": "",
                "containers": [{
                    "name": "main",
                    "image": "ghcr.io/example/preprocess@sha256:4f1c2d9e0a7b3c5d6e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d",
                    "command": ["python", "/app/preprocess.py"],
                    "args": ["--dataset", "s3://datasets/iris-v3.csv", "--sample-rate", "0.25", "--out", "/tmp/row_count.txt"],
                    "env": {"LOG_LEVEL": "debug"}
                }],
                "outputs": {"parameters": [{"name": "row-count", "valueFrom": {"path": "/tmp/row_count.txt"}}]}
            })
        );
        assert_eq!(km.key.as_str(), format!("v3:{}", hex::encode(Sha256::digest(canonical_json(&km.material)))));
    }

    #[test]
    fn cluster_scope_omits_the_namespace() {
        let pod = v36_pod();
        let Classification::Step(step) = classify(&pod) else { panic!() };
        let ns = derive_key(&pod, &step, &CacheSeed::default(), Scope::Namespace).unwrap();
        let cl = derive_key(&pod, &step, &CacheSeed::default(), Scope::Cluster).unwrap();
        assert!(cl.material.get("namespace").is_none());
        assert_ne!(ns.key, cl.key);
    }

    #[test]
    fn pod_with_only_argo_containers_has_no_key() {
        let mut pod = v36_pod();
        let Classification::Step(step) = classify(&pod) else { panic!() };
        if let Some(spec) = pod.spec.as_mut() {
            spec.containers.retain(|c| c.name == "wait");
        }
        assert_eq!(derive_key(&pod, &step, &CacheSeed::default(), Scope::Namespace), Err(KeyError::NoUserContainer));
        pod.spec = None;
        assert_eq!(derive_key(&pod, &step, &CacheSeed::default(), Scope::Namespace).unwrap_err().kind(), "no_pod_spec");
    }

    #[test]
    fn api_server_defaults_in_env_and_volumes_do_not_change_the_material() {
        let env = |e: Value| {
            let pod: Pod =
                serde_json::from_value(json!({"spec": {"containers": [{"name": "main", "env": [e]}]}})).unwrap();
            let c = pod.spec.as_ref().unwrap().containers[0].clone();
            env::effective_env(&pod, &c, ArgoLayout::TemplateEnvInitOnly, &Default::default(), Role::User)
        };
        assert_eq!(
            env(json!({"name":"P","valueFrom":{"resourceFieldRef":{"resource":"limits.cpu","divisor":"0"}}})),
            env(json!({"name":"P","valueFrom":{"resourceFieldRef":{"resource":"limits.cpu"}}}))
        );
        assert_eq!(
            env(json!({"name":"P","valueFrom":{"fieldRef":{"apiVersion":"v1","fieldPath":"metadata.uid"}}})),
            env(json!({"name":"P","valueFrom":{"fieldRef":{"fieldPath":"metadata.uid"}}}))
        );
        assert_eq!(env(json!({"name":"E","value":""})), env(json!({"name":"E"})));
        let spec: PodSpec = serde_json::from_value(json!({"containers":[],"volumes":[
            {"name":"c","configMap":{"name":"cm","defaultMode":420}},
            {"name":"s","secret":{"secretName":"s","defaultMode":256}},
            {"name":"h","hostPath":{"path":"/x","type":""}},
            {"name":"unused","emptyDir":{}}
        ]}))
        .unwrap();
        let refs: BTreeSet<String> = ["c", "s", "h"].iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(
            volumes_material(&Pod::default(), &spec, &refs).unwrap(),
            json!({"c":{"configMap":{"name":"cm"}},"s":{"secret":{"secretName":"s","defaultMode":256}},"h":{"hostPath":{"path":"/x"}}})
        );
    }

    /// The v3.6 pod with a user ConfigMap mounted, one read through `envFrom` and one key of a
    /// third as an env variable.
    fn pod_reading_configmaps() -> Pod {
        let mut pod = v36_pod();
        let spec = pod.spec.as_mut().unwrap();
        let main = spec.containers.iter_mut().find(|c| c.name == "main").unwrap();
        let extra: Container = serde_json::from_value(json!({
            "name": "main",
            "envFrom": [{"configMapRef": {"name": "settings"}}],
            "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "modes", "key": "mode"}}}],
            "volumeMounts": [{"name": "conf", "mountPath": "/conf"}]
        }))
        .unwrap();
        main.env_from = extra.env_from;
        main.env.get_or_insert_with(Vec::new).splice(0..0, extra.env.unwrap());
        main.volume_mounts.get_or_insert_with(Vec::new).extend(extra.volume_mounts.unwrap());
        spec.volumes
            .get_or_insert_with(Vec::new)
            .push(serde_json::from_value(json!({"name": "conf", "configMap": {"name": "pipeline-config"}})).unwrap());
        pod
    }

    fn configmap(data: &[(&str, &str)]) -> String {
        let cm: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "x"},
            "data": data.iter().map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned()))).collect::<Map<_, _>>()
        }))
        .unwrap();
        configmaps::digest(&cm)
    }

    fn contents(conf: &str) -> std::collections::BTreeMap<(String, String), String> {
        [
            ("settings", configmap(&[("A", "1")])),
            ("modes", configmap(&[("mode", "fast")])),
            ("pipeline-config", configmap(&[("rate", conf)])),
        ]
        .into_iter()
        .map(|(n, d)| (("ml-team".to_owned(), n.to_owned()), d))
        .collect()
    }

    #[test]
    fn one_configmap_name_with_different_contents_keys_differently_and_equal_contents_alike() {
        let pod = pod_reading_configmaps();
        let Classification::Step(step) = classify(&pod) else { panic!() };
        let key =
            |c: &dyn ConfigMaps| derive_key_with(&pod, &step, &CacheSeed::default(), Scope::Namespace, c).unwrap();
        let a = key(&contents("0.25"));
        let b = key(&contents("0.50"));
        let a_again = key(&contents("0.25"));
        assert_ne!(a.key, b.key, "changed ConfigMap contents must not share a key");
        assert_eq!(a.key, a_again.key, "unchanged ConfigMap contents must keep the key");
        assert_eq!(
            a.material["configMaps"].as_object().unwrap().keys().collect::<Vec<_>>(),
            ["modes", "pipeline-config", "settings"]
        );
    }

    #[test]
    fn a_configmap_admission_cannot_see_leaves_the_step_unkeyed_and_says_which() {
        let pod = pod_reading_configmaps();
        let Classification::Step(step) = classify(&pod) else { panic!() };
        let mut known = contents("0.25");
        known.remove(&("ml-team".to_owned(), "pipeline-config".to_owned()));
        let err = derive_key_with(&pod, &step, &CacheSeed::default(), Scope::Namespace, &known).unwrap_err();
        assert_eq!(err.to_string(), "configmap-unknown: pipeline-config");
        // Without a cluster nothing is known: never guessed.
        let offline = derive_key(&pod, &step, &CacheSeed::default(), Scope::Namespace).unwrap_err();
        assert_eq!(offline.kind(), "configmap_unknown");
        // Another namespace's ConfigMap of that name is not this one.
        let elsewhere: std::collections::BTreeMap<(String, String), String> =
            contents("0.25").into_iter().map(|((_, n), d)| (("other".to_owned(), n), d)).collect();
        assert!(derive_key_with(&pod, &step, &CacheSeed::default(), Scope::Namespace, &elsewhere).is_err());
    }

    /// Every Secret known with digest `d`, or keyed but unseen (`None`).
    struct SecretView(Option<&'static str>);

    impl ConfigMaps for SecretView {
        fn digest(&self, _namespace: &str, _name: &str) -> Option<String> {
            None
        }
        fn secret(&self, _namespace: &str, _name: &str) -> configmaps::SecretContents {
            match self.0 {
                Some(d) => configmaps::SecretContents::Known(d.into()),
                None => configmaps::SecretContents::Unknown,
            }
        }
    }

    #[test]
    fn secret_contents_are_keyed_only_when_the_admin_asks_and_never_guessed() {
        let mut pod = v36_pod();
        if let Some(spec) = pod.spec.as_mut() {
            let main = spec.containers.iter_mut().find(|c| c.name == "main").unwrap();
            main.env_from = Some(vec![serde_json::from_value(json!({"secretRef": {"name": "db"}})).unwrap()]);
        }
        let Classification::Step(step) = classify(&pod) else { panic!() };
        let by_ref = derive_key(&pod, &step, &CacheSeed::default(), Scope::Namespace).unwrap();
        assert!(by_ref.material.get("secrets").is_none(), "by reference by default");
        let with = |d| derive_key_with(&pod, &step, &CacheSeed::default(), Scope::Namespace, &SecretView(d));
        let (a, b) = (with(Some("hmac:a")).unwrap(), with(Some("hmac:b")).unwrap());
        assert_ne!(a.key, b.key, "changed Secret contents change the key");
        assert_eq!(a.material["secrets"], json!({"db": "hmac:a"}));
        assert_ne!(a.key, by_ref.key);
        assert_eq!(with(None).unwrap_err(), KeyError::SecretUnknown("db".into()));
    }

    #[test]
    fn steps_reading_no_configmap_keep_their_key_without_a_cluster() {
        let pod = v36_pod();
        let Classification::Step(step) = classify(&pod) else { panic!() };
        let offline = derive_key(&pod, &step, &CacheSeed::default(), Scope::Namespace).unwrap();
        let live = derive_key_with(&pod, &step, &CacheSeed::default(), Scope::Namespace, &contents("1")).unwrap();
        assert_eq!(offline, live);
        assert!(offline.material.get("configMaps").is_none());
    }

    #[test]
    fn configmap_digest_covers_data_and_binary_data_but_not_metadata() {
        let cm = |v: Value| configmaps::digest(&serde_json::from_value(v).unwrap());
        let base = cm(json!({"metadata": {"name": "a"}, "data": {"k": "v"}}));
        assert_eq!(
            base,
            cm(json!({"metadata": {"name": "a", "resourceVersion": "9", "labels": {"x": "y"}}, "data": {"k": "v"}}))
        );
        assert_ne!(base, cm(json!({"metadata": {"name": "a"}, "data": {"k": "w"}})));
        assert_ne!(base, cm(json!({"metadata": {"name": "a"}, "data": {"k": "v"}, "binaryData": {"b": "AAE="}})));
        assert!(base.starts_with("sha256:"));
    }

    #[test]
    fn key_error_kinds_are_bounded_labels() {
        for (e, k) in [
            (KeyError::NoUserContainer, "no_user_container"),
            (KeyError::NoPodSpec, "no_pod_spec"),
            (KeyError::Malformed("x".into()), "malformed_template"),
            (KeyError::Encode("x".into()), "encode"),
            (KeyError::ConfigMapUnknown("x".into()), "configmap_unknown"),
        ] {
            assert_eq!(e.kind(), k);
        }
    }
}
