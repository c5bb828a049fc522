//! What Argo itself puts into a step pod, per layout and version: the containers, env names and
//! volume mounts that are Argo's plumbing rather than the step's computation.
//!
//! Owns: `ArgoFacts`, `is_injected_env`, `is_argo_mount`. Pure: no I/O, no clock. Must not
//! import tokio, sqlx, axum or kube::Client.
//!
//! Source: `shared/design/argo-pod-contract.md` §1.3, §1.8 and the env table §1.10 (read from
//! `workflowpod.go`/`common.go` at v3.6.19, v3.7.18, v4.0.10, v4.1.2). Everything here is an
//! exact name (never a prefix), so a user's own variable that merely shares Argo's prefix stays
//! in the key: only what the controller of the detected generation writes is left out.

use crate::argo::labels;
use crate::argo::template::ArgoLayout;
use k8s_openapi::api::core::v1::VolumeMount;
use std::collections::BTreeSet;

/// Env names the controller writes on **every** container of a step pod, user containers
/// included, in every emissary-era version (§1.10 "all").
const ALL_CONTAINERS_ENV: &[&str] = &[
    "ARGO_CONTAINER_NAME",
    "ARGO_NODE_ID",
    labels::ARGO_INCLUDE_SCRIPT_OUTPUT_ENV,
    "ARGO_DEADLINE",
    "ARGO_PROGRESS_FILE",
    "ARGO_PROGRESS_PATCH_TICK_DURATION",
    "ARGO_PROGRESS_FILE_TICK_DURATION",
];

/// v4.1 (both layouts) adds these to every container; all change on every run (AW PR #15585).
const V41_ENV: &[&str] = &["ARGO_WORKFLOW_NAME", labels::TRACEPARENT_ENV, "TRACESTATE"];

/// What classification learned about the Argo generation that built the pod, beyond its layout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArgoFacts {
    /// v4.1+: Argo's executor container (`init`, `wait` or `supervisor`) carries `TRACEPARENT`.
    pub v41: bool,
    /// Names of Argo's artifact-plugin containers (`init-artifact-<p>`, `artifact-plugin-<p>`)
    /// for the plugins the template's artifacts use.
    pub plugin_containers: BTreeSet<String>,
    /// The template declares input artifacts, so Argo added the `input-artifacts` volume.
    pub has_input_artifacts: bool,
}

/// Where a container sits in the pod, which decides what Argo injects into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A regular container of the user (main, container-set members, sidecars).
    User,
    /// A user init container (template `initContainers`).
    UserInit,
}

/// True when Argo, in the detected layout and version, writes env var `name` on a user
/// container of role `role`. Argo appends its variables after the user's, and the kubelet
/// lets the last duplicate win, so a user value under such a name never reaches the process.
pub fn is_injected_env(name: &str, layout: ArgoLayout, facts: &ArgoFacts, role: Role) -> bool {
    if layout == ArgoLayout::TemplateAnnotation {
        // v2.12–v3.1: the docker/pns executors inject nothing into user containers; the v3.1
        // emissary injects the shared list.
        return ALL_CONTAINERS_ENV.contains(&name);
    }
    if ALL_CONTAINERS_ENV.contains(&name) || name == labels::ARGO_CONTAINER_ARGS_FILE_ENV {
        return true;
    }
    if facts.v41 && V41_ENV.contains(&name) {
        return true;
    }
    match name {
        // v3.2–v3.5: on every container; v3.6+: on init containers; v4.1 init-less: supervisor and
        // user init containers. Classification rejects pods whose copies disagree.
        labels::ARGO_TEMPLATE_ENV => match layout {
            ArgoLayout::TemplateEnvAllContainers => true,
            ArgoLayout::TemplateEnvInitOnly | ArgoLayout::TemplateEnvSupervisor => role == Role::UserInit,
            ArgoLayout::TemplateAnnotation => false,
        },
        // v3.6+: every regular container when the pod sets a grace period (≤3.5: `wait` only).
        "ARGO_TERMINATION_GRACE_PERIOD_SECONDS" => role == Role::User && layout != ArgoLayout::TemplateEnvAllContainers,
        // v4.1 init-less: wrapped user containers wait for the supervisor.
        "ARGO_WAIT_FOR_READY" => layout == ArgoLayout::TemplateEnvSupervisor && role == Role::User,
        _ => false,
    }
}

/// True when a mount on a user container is one Argo adds: the exact (volume, path) pairs of
/// §1.3/§1.8, and the `input-artifacts` volume when the template has input artifacts (its
/// content is keyed through the artifacts' identity). A user volume that merely shares a name
/// with one of Argo's (`docker-sock`, `kubeconfig`, ...) is not Argo's and stays in the key.
pub fn is_argo_mount(m: &VolumeMount, layout: ArgoLayout, facts: &ArgoFacts) -> bool {
    let at = |(name, path): (&str, &str)| m.name == name && m.mount_path == path;
    if at(labels::VAR_RUN_ARGO)
        || at(labels::TMP_DIR_ARGO)
        || at(labels::ARGO_STAGING)
        || at(labels::ARGO_ENV_CONFIG)
        || (layout == ArgoLayout::TemplateAnnotation && at(labels::PODMETADATA))
        || (layout == ArgoLayout::TemplateEnvSupervisor && at(labels::ARGOEXEC_BIN))
    {
        return true;
    }
    facts.has_input_artifacts && m.name == labels::INPUT_ARTIFACTS_VOLUME
}

/// Env names the controller writes on its own executor containers (`init`, `wait`, v4.1
/// `supervisor`) in every emissary-era version: `createEnvVars`, the shared list, the template and
/// the plugin lists (§1.3, §1.10). Every value is per run (pod, workflow, node, trace) or per
/// pod shape (template, plugins, grace period); none is the author's.
const EXECUTOR_ENV: &[&str] = &[
    "ARGO_POD_NAME",
    "ARGO_POD_UID",
    "ARGO_WORKFLOW_NAME",
    "ARGO_WORKFLOW_UID",
    "ARGO_INSTANCE_ID",
    labels::ARGO_TEMPLATE_ENV,
    "ARGO_TERMINATION_GRACE_PERIOD_SECONDS",
    labels::ARGO_ARTIFACT_PLUGIN_NAMES_ENV,
    "ARGO_INPUT_ARTIFACT_PLUGIN_NAMES",
    "ARGO_INITLESS_POD",
];

/// v2.12's executor (template-annotation layout) also sets `GODEBUG=x509ignoreCN=0` on `wait`
/// (seen in the v2.12 capture; not read in upstream source).
const V212_EXECUTOR_ENV: &[&str] = &["GODEBUG"];

/// True when the controller writes env var `name` on one of its own executor containers in the
/// detected layout and version. Anything else on those containers came from the admin's
/// `executor.env` or from a workflow `podSpecPatch`, and is keyed.
pub fn is_executor_env(name: &str, layout: ArgoLayout, facts: &ArgoFacts) -> bool {
    EXECUTOR_ENV.contains(&name)
        || ALL_CONTAINERS_ENV.contains(&name)
        || (facts.v41 && V41_ENV.contains(&name))
        || (layout == ArgoLayout::TemplateAnnotation && V212_EXECUTOR_ENV.contains(&name))
}

/// True when a mount on one of Argo's executor containers is one the controller adds there: the
/// Argo mounts of user containers ([`is_argo_mount`]), a credential secret at
/// `/argo/secret/<volume>`, v2.12's `docker-sock`, and a mirror `/mainctrfs<path>` of a mount a
/// user container has (same volume, path and subPath; `wait` reads outputs through these).
/// `user_mounts` holds `(volume, path, subPath)` of every user container's mounts.
pub fn is_executor_mount(
    m: &VolumeMount,
    layout: ArgoLayout,
    facts: &ArgoFacts,
    user_mounts: &BTreeSet<(String, String, String)>,
) -> bool {
    if is_argo_mount(m, layout, facts) {
        return true;
    }
    if m.mount_path.strip_prefix(labels::ARGO_SECRET_MOUNT_PREFIX) == Some(m.name.as_str()) {
        return true;
    }
    if layout == ArgoLayout::TemplateAnnotation && m.name == DOCKER_SOCK.0 && m.mount_path == DOCKER_SOCK.1 {
        return true;
    }
    match m.mount_path.strip_prefix(MAIN_CONTAINER_FS) {
        Some(path) if path.starts_with('/') => {
            let sub = m.sub_path.clone().unwrap_or_default();
            user_mounts.contains(&(m.name.clone(), path.to_owned(), sub))
        }
        _ => false,
    }
}

/// Where `wait`/`supervisor` (and `init`, for input artifacts) see the user containers' mounts.
const MAIN_CONTAINER_FS: &str = "/mainctrfs";

/// v2.12 docker executor: the host's docker socket on `wait`.
const DOCKER_SOCK: (&str, &str) = ("docker-sock", "/var/run/docker.sock");

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn mount(name: &str, path: &str) -> VolumeMount {
        VolumeMount { name: name.into(), mount_path: path.into(), ..Default::default() }
    }

    #[test]
    fn user_env_that_shares_argos_prefix_is_not_injected() {
        let f = ArgoFacts::default();
        for layout in [ArgoLayout::TemplateEnvAllContainers, ArgoLayout::TemplateEnvInitOnly] {
            for name in ["ARGO_MODE", "ARGO_SERVER", "ARGO_", "ARGO_WORKFLOW_NAME", "TRACEPARENT"] {
                assert!(!is_injected_env(name, layout, &f, Role::User), "{name}");
            }
            assert!(is_injected_env("ARGO_NODE_ID", layout, &f, Role::User));
        }
    }

    #[test]
    fn v41_trace_and_workflow_name_are_injected_only_on_v41() {
        let v41 = ArgoFacts { v41: true, ..Default::default() };
        for name in ["ARGO_WORKFLOW_NAME", "TRACEPARENT", "TRACESTATE"] {
            assert!(is_injected_env(name, ArgoLayout::TemplateEnvInitOnly, &v41, Role::User));
            assert!(is_injected_env(name, ArgoLayout::TemplateEnvSupervisor, &v41, Role::UserInit));
            assert!(!is_injected_env(name, ArgoLayout::TemplateEnvInitOnly, &ArgoFacts::default(), Role::User));
        }
    }

    #[test]
    fn template_env_is_argos_only_where_the_layout_puts_it() {
        let f = ArgoFacts::default();
        assert!(is_injected_env("ARGO_TEMPLATE", ArgoLayout::TemplateEnvAllContainers, &f, Role::User));
        assert!(!is_injected_env("ARGO_TEMPLATE", ArgoLayout::TemplateEnvInitOnly, &f, Role::User));
        assert!(is_injected_env("ARGO_TEMPLATE", ArgoLayout::TemplateEnvInitOnly, &f, Role::UserInit));
        assert!(!is_injected_env("ARGO_TEMPLATE", ArgoLayout::TemplateAnnotation, &f, Role::User));
        assert!(is_injected_env("ARGO_WAIT_FOR_READY", ArgoLayout::TemplateEnvSupervisor, &f, Role::User));
        assert!(!is_injected_env("ARGO_WAIT_FOR_READY", ArgoLayout::TemplateEnvInitOnly, &f, Role::User));
    }

    #[test]
    fn argo_mounts_are_matched_by_name_and_path() {
        let f = ArgoFacts::default();
        let l = ArgoLayout::TemplateEnvInitOnly;
        assert!(is_argo_mount(&mount("var-run-argo", "/var/run/argo"), l, &f));
        assert!(!is_argo_mount(&mount("var-run-argo", "/data"), l, &f));
        assert!(!is_argo_mount(&mount("kubeconfig", "/root/.kube"), l, &f));
        assert!(!is_argo_mount(&mount("docker-sock", "/var/run/docker.sock"), l, &f));
        assert!(!is_argo_mount(&mount("input-artifacts", "/data/raw.csv"), l, &f));
        let with_inputs = ArgoFacts { has_input_artifacts: true, ..Default::default() };
        assert!(is_argo_mount(&mount("input-artifacts", "/data/raw.csv"), l, &with_inputs));
        assert!(!is_argo_mount(&mount("argoexec-bin", "/argo-bin"), l, &f));
        assert!(is_argo_mount(&mount("argoexec-bin", "/argo-bin"), ArgoLayout::TemplateEnvSupervisor, &f));
    }
}
