//! What the Argo controller counts as a Succeeded step, version by version. Pure.
//!
//! The pod phase is not the node phase: any container exiting non-zero makes the pod `Failed`,
//! yet Argo marks the node Succeeded when only user sidecars (or user initContainers) died of
//! the SIGKILL/SIGTERM it sends them at the end of the step (exit 137 or 143). The recorder
//! records what Argo calls Succeeded and never what it calls Failed or Error, so this module
//! re-implements the controller's verdict: `assessNodeStatus` and `inferFailedReason` in
//! `AW workflow/controller/operator.go`, read at every tag where they change (v2.12.13,
//! v3.0.10, v3.1.15, v3.3.9/v3.3.10, v3.4.3/v3.4.4, v3.5.15, v3.6.10/v3.6.11, v3.6.15/v3.6.16,
//! v3.7.0, v3.7.6/v3.7.7, v4.0.0, v4.1.2).
//!
//! A pod does not say which controller version made it, only its layout (a range of versions),
//! so [`succeeded_in_every`] asks every rule set the range spans and accepts only a pod that all
//! of them call Succeeded. Imports only `argo::labels`.

use super::labels;
use k8s_openapi::api::core::v1::{ContainerStatus, PodStatus};

/// An Argo Workflows release, `major.minor.patch`; ordered like releases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ArgoVersion {
    /// Major version.
    pub major: u16,
    /// Minor version.
    pub minor: u16,
    /// Patch version.
    pub patch: u16,
}

impl ArgoVersion {
    /// A version from its three numbers.
    pub const fn new(major: u16, minor: u16, patch: u16) -> ArgoVersion {
        ArgoVersion { major, minor, patch }
    }

    /// True for `lo <= self < hi`.
    fn within(self, lo: ArgoVersion, hi: ArgoVersion) -> bool {
        lo <= self && self < hi
    }

    /// v2.12: its own `inferFailedReason` (messages keyed by container, every init container a
    /// load failure, a sidecar with a termination message or OOMKilled fails whatever its code).
    fn legacy(self) -> bool {
        self < ArgoVersion::new(3, 0, 0)
    }

    /// v3.1+: main containers are the template's (`IsMainContainerName`: every container-set
    /// member), not only the one literally named `main`.
    fn template_mains(self) -> bool {
        self >= ArgoVersion::new(3, 1, 0)
    }

    /// v3.3.10 and v3.4.4–v3.6.10: after the phase switch, any init container (Argo's or the
    /// user's) terminated non-zero marks the node Failed (removed by AW PR #14510/#14582).
    fn init_nonzero_fails(self) -> bool {
        self.within(ArgoVersion::new(3, 3, 10), ArgoVersion::new(3, 4, 0))
            || self.within(ArgoVersion::new(3, 4, 4), ArgoVersion::new(3, 6, 11))
    }

    /// v3.6.16+ on 3.6, v3.7.7+ and every 4.x: a Failed pod is Succeeded only when a main
    /// container and the wait (v4.1: or supervisor) container both exited 0.
    fn requires_main_and_wait(self) -> bool {
        self.within(ArgoVersion::new(3, 6, 16), ArgoVersion::new(3, 7, 0)) || self >= ArgoVersion::new(3, 7, 7)
    }

    /// v4.1+: the init-less `supervisor` is ranked and judged like `wait`.
    fn supervisor_is_wait(self) -> bool {
        self >= ArgoVersion::new(4, 1, 0)
    }
}

impl std::fmt::Display for ArgoVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The first release of each set of rules above (and of each layout): between two neighbours
/// the verdict for a given pod cannot change, so asking each of them covers a whole range.
pub const RULE_CHANGES: [ArgoVersion; 13] = [
    ArgoVersion::new(2, 12, 0),
    ArgoVersion::new(3, 0, 0),
    ArgoVersion::new(3, 1, 0),
    ArgoVersion::new(3, 3, 10),
    ArgoVersion::new(3, 4, 0),
    ArgoVersion::new(3, 4, 4),
    ArgoVersion::new(3, 6, 0),
    ArgoVersion::new(3, 6, 11),
    ArgoVersion::new(3, 6, 16),
    ArgoVersion::new(3, 7, 0),
    ArgoVersion::new(3, 7, 7),
    ArgoVersion::new(4, 0, 0),
    ArgoVersion::new(4, 1, 0),
];

/// The node phase Argo gives a step from its pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeVerdict {
    /// The pod is not finished (`Pending`, `Running`, unknown): no verdict yet.
    Unfinished(String),
    /// Node Succeeded.
    Succeeded,
    /// Node Failed, with Argo's reason.
    Failed(String),
    /// Node Error (an Argo container failed, or a container never started), with the reason.
    Error(String),
}

/// What a pod is judged with: its status, and which containers are the step's main ones.
#[derive(Clone, Copy, Debug)]
pub struct Judged<'a> {
    /// The pod's status.
    pub status: &'a PodStatus,
    /// The template's main containers (container-set members, else `main`); v2.12–v3.0 only
    /// ever consider `main`.
    pub mains: &'a [&'a str],
}

fn exit_reason(t: &k8s_openapi::api::core::v1::ContainerStateTerminated) -> String {
    format!("{} (exit code {})", t.reason.as_deref().unwrap_or(""), t.exit_code)
}

/// The node phase `version` of the controller gives a (non-daemon) step with this pod.
pub fn node_verdict(version: ArgoVersion, pod: Judged<'_>) -> NodeVerdict {
    let status = pod.status;
    let is_main = |name: &str| {
        if version.template_mains() {
            pod.mains.contains(&name)
        } else {
            name == labels::MAIN_CONTAINER
        }
    };
    let verdict = match status.phase.as_deref() {
        Some("Succeeded") => NodeVerdict::Succeeded,
        Some("Failed") if version.legacy() => legacy_infer_failed(status),
        Some("Failed") => infer_failed(version, status, &is_main),
        other => return NodeVerdict::Unfinished(format!("pod phase {}", other.unwrap_or("unknown"))),
    };
    if version.init_nonzero_fails() {
        let failed_init = status.init_container_statuses.iter().flatten().find(|c| terminated_non_zero(c));
        if let Some(c) = failed_init {
            return NodeVerdict::Failed(format!("init container {} exited non-zero", c.name));
        }
    }
    verdict
}

fn terminated_non_zero(c: &ContainerStatus) -> bool {
    c.state.as_ref().and_then(|s| s.terminated.as_ref()).is_some_and(|t| t.exit_code != 0)
}

/// Exit codes of a container Argo itself stopped at the end of the step (SIGKILL, SIGTERM).
fn killed_by_argo(code: i32) -> bool {
    code == 137 || code == 143
}

/// `inferFailedReason` of v3.0–v4.1.
fn infer_failed(version: ArgoVersion, status: &PodStatus, is_main: &dyn Fn(&str) -> bool) -> NodeVerdict {
    if let Some(m) = status.message.as_deref().filter(|m| !m.is_empty()) {
        return NodeVerdict::Failed(m.to_owned());
    }
    let is_wait = |name: &str| {
        name == labels::WAIT_CONTAINER || (version.supervisor_is_wait() && name == labels::SUPERVISOR_CONTAINER)
    };
    // Argo's order of preference: init containers, main, wait, the rest (a stable sort).
    let rank = |c: &&ContainerStatus| match c.name.as_str() {
        n if is_main(n) => 1,
        n if is_wait(n) => 2,
        _ => 3,
    };
    let mut containers: Vec<&ContainerStatus> = status.container_statuses.iter().flatten().collect();
    containers.sort_by_key(rank);
    let mut main_ok = false;
    let mut wait_ok = false;
    for c in status.init_container_statuses.iter().flatten().chain(containers) {
        let state = c.state.as_ref();
        if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
            let why = w.reason.as_deref().unwrap_or("");
            return NodeVerdict::Error(format!("pod failed before {} container starts ({why})", c.name));
        }
        let Some(t) = state.and_then(|s| s.terminated.as_ref()) else { continue };
        if t.exit_code == 0 {
            main_ok |= is_main(&c.name);
            wait_ok |= !is_main(&c.name) && is_wait(&c.name);
            continue;
        }
        let msg = format!("{}: {}", c.name, exit_reason(t));
        match c.name.as_str() {
            labels::INIT_CONTAINER => return NodeVerdict::Error(msg),
            n if is_main(n) => return NodeVerdict::Failed(msg),
            n if is_wait(n) => return NodeVerdict::Error(msg),
            _ if killed_by_argo(t.exit_code) => {}
            _ => return NodeVerdict::Failed(msg),
        }
    }
    if !version.requires_main_and_wait() || (main_ok && wait_ok) {
        return NodeVerdict::Succeeded;
    }
    NodeVerdict::Failed(
        match (main_ok, wait_ok) {
            (true, _) => "pod failed: wait container did not complete successfully",
            (false, true) => "pod failed: main container did not complete successfully",
            (false, false) => "pod failed: neither main nor wait container completed successfully",
        }
        .to_owned(),
    )
}

/// `inferFailedReason` of v2.12.
fn legacy_infer_failed(status: &PodStatus) -> NodeVerdict {
    if let Some(m) = status.message.as_deref().filter(|m| !m.is_empty()) {
        return NodeVerdict::Failed(m.to_owned());
    }
    for c in status.init_container_statuses.iter().flatten() {
        let state = c.state.as_ref();
        if state.and_then(|s| s.waiting.as_ref()).is_some() {
            return NodeVerdict::Error(format!("pod failed before {} container starts", c.name));
        }
        if let Some(t) = state.and_then(|s| s.terminated.as_ref()).filter(|t| t.exit_code != 0) {
            return NodeVerdict::Error(format!("failed to load artifacts: {}: {}", c.name, exit_reason(t)));
        }
    }
    let mut failed: Vec<(bool, bool, String)> = Vec::new(); // (main?, wait?, message)
    for c in status.container_statuses.iter().flatten() {
        let state = c.state.as_ref();
        if state.and_then(|s| s.waiting.as_ref()).is_some() {
            return NodeVerdict::Error(format!("pod failed before {} container starts", c.name));
        }
        let Some(t) = state.and_then(|s| s.terminated.as_ref()).filter(|t| t.exit_code != 0) else { continue };
        let (main, wait) = (c.name == labels::MAIN_CONTAINER, c.name == labels::WAIT_CONTAINER);
        let has_message = t.message.as_deref().is_some_and(|m| !m.is_empty());
        let oom = t.reason.as_deref() == Some("OOMKilled");
        // Only a sidecar without a termination message that was not OOM-killed may be excused.
        if !main && !wait && !has_message && !oom && killed_by_argo(t.exit_code) {
            continue;
        }
        failed.push((main, wait, format!("{}: {}", c.name, exit_reason(t))));
    }
    if let Some((_, _, m)) = failed.iter().find(|f| f.0) {
        return NodeVerdict::Failed(m.clone());
    }
    if let Some((_, _, m)) = failed.iter().find(|f| f.1) {
        return NodeVerdict::Error(m.clone());
    }
    match failed.into_iter().next() {
        Some((_, _, m)) => NodeVerdict::Failed(m),
        None => NodeVerdict::Succeeded,
    }
}

/// The verdict every controller version in `lo..=hi` agrees on: `Succeeded` only when each
/// rule set in the range says so, otherwise the first other verdict, naming its version.
pub fn succeeded_in_every(lo: ArgoVersion, hi: ArgoVersion, pod: Judged<'_>) -> NodeVerdict {
    let probes = std::iter::once(lo).chain(RULE_CHANGES.iter().copied().filter(|v| lo < *v && *v <= hi));
    for v in probes {
        match node_verdict(v, pod) {
            NodeVerdict::Succeeded => {}
            NodeVerdict::Failed(m) => return NodeVerdict::Failed(format!("Argo {v} fails the node: {m}")),
            NodeVerdict::Error(m) => return NodeVerdict::Error(format!("Argo {v} errors the node: {m}")),
            u @ NodeVerdict::Unfinished(_) => return u,
        }
    }
    NodeVerdict::Succeeded
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    const MAIN: &[&str] = &["main"];

    fn v(s: &str) -> ArgoVersion {
        let n: Vec<u16> = s.trim_start_matches('v').split('.').map(|p| p.parse().unwrap()).collect();
        ArgoVersion::new(n[0], n[1], n[2])
    }

    fn term(name: &str, code: i32) -> serde_json::Value {
        json!({"name": name, "ready": false, "restartCount": 0, "image": "i", "imageID": "",
               "state": {"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }}}})
    }

    fn status(phase: &str, inits: &[(&str, i32)], containers: &[(&str, i32)]) -> PodStatus {
        serde_json::from_value(json!({
            "phase": phase,
            "initContainerStatuses": inits.iter().map(|(n, c)| term(n, *c)).collect::<Vec<_>>(),
            "containerStatuses": containers.iter().map(|(n, c)| term(n, *c)).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    fn verdict(version: &str, s: &PodStatus) -> NodeVerdict {
        node_verdict(v(version), Judged { status: s, mains: MAIN })
    }

    fn ok(version: &str, s: &PodStatus) -> bool {
        verdict(version, s) == NodeVerdict::Succeeded
    }

    const EVERY_TAG: [&str; 16] = [
        "v2.12.13", "v3.0.10", "v3.1.15", "v3.2.11", "v3.3.10", "v3.4.3", "v3.4.18", "v3.5.15", "v3.6.10", "v3.6.15",
        "v3.6.19", "v3.7.6", "v3.7.18", "v4.0.10", "v4.1.0", "v4.1.2",
    ];

    #[test]
    fn a_sidecar_argo_killed_with_137_or_143_fails_the_pod_but_not_the_node_in_every_version() {
        for code in [137, 143] {
            let s = status("Failed", &[("init", 0)], &[("wait", 0), ("main", 0), ("proxy", code)]);
            for t in EVERY_TAG {
                assert!(ok(t, &s), "{t} with a sidecar exiting {code}: {:?}", verdict(t, &s));
            }
        }
    }

    #[test]
    fn a_failing_main_wait_or_init_is_never_a_success() {
        for t in EVERY_TAG {
            let main = status("Failed", &[("init", 0)], &[("wait", 0), ("main", 1), ("proxy", 137)]);
            assert!(matches!(verdict(t, &main), NodeVerdict::Failed(_)), "{t}");
            let wait = status("Failed", &[("init", 0)], &[("wait", 2), ("main", 0)]);
            assert!(matches!(verdict(t, &wait), NodeVerdict::Error(_)), "{t}");
            let init = status("Failed", &[("init", 1)], &[("wait", 0), ("main", 0)]);
            assert!(!ok(t, &init), "{t}");
            // Argo excuses 137/143 for sidecars only: main killed is a failure.
            let killed = status("Failed", &[], &[("wait", 0), ("main", 137)]);
            assert!(matches!(verdict(t, &killed), NodeVerdict::Failed(_)), "{t}");
        }
    }

    #[test]
    fn a_sidecar_failing_with_another_code_fails_the_node() {
        for t in EVERY_TAG {
            let s = status("Failed", &[], &[("wait", 0), ("main", 0), ("proxy", 1)]);
            assert!(matches!(verdict(t, &s), NodeVerdict::Failed(_)), "{t}");
        }
    }

    #[test]
    fn a_pod_message_such_as_an_eviction_fails_the_node() {
        let mut s = status("Failed", &[], &[("wait", 0), ("main", 0)]);
        s.message = Some("The node was low on resource: memory.".into());
        for t in EVERY_TAG {
            assert!(matches!(verdict(t, &s), NodeVerdict::Failed(_)), "{t}");
        }
    }

    #[test]
    fn from_v3_6_16_and_v3_7_7_a_failed_pod_needs_main_and_wait_at_exit_zero() {
        // The wait container has no terminated state (virtual kubelet, node loss).
        let mut s = status("Failed", &[], &[("main", 0), ("proxy", 137)]);
        let running = json!({"name": "wait", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
                             "state": {"running": {}}});
        s.container_statuses.as_mut().unwrap().push(serde_json::from_value(running).unwrap());
        for (t, want) in [
            ("v3.6.15", true),
            ("v3.6.16", false),
            ("v3.6.19", false),
            ("v3.7.0", true),
            ("v3.7.6", true),
            ("v3.7.7", false),
            ("v4.0.0", false),
            ("v4.1.2", false),
        ] {
            assert_eq!(ok(t, &s), want, "{t}: {:?}", verdict(t, &s));
        }
    }

    #[test]
    fn v4_1_judges_the_supervisor_like_wait() {
        let s = status("Failed", &[], &[("supervisor", 0), ("main", 0), ("proxy", 143)]);
        assert!(ok("v4.1.0", &s));
        assert!(!ok("v4.0.10", &s), "before v4.1 a supervisor is just a sidecar and wait is missing");
        let bad = status("Failed", &[], &[("supervisor", 1), ("main", 0)]);
        assert!(matches!(verdict("v4.1.2", &bad), NodeVerdict::Error(_)));
    }

    #[test]
    fn a_user_init_container_killed_with_137_fails_the_node_only_where_argo_checks_init_exits() {
        let s = status("Failed", &[("init", 0), ("setup", 137)], &[("wait", 0), ("main", 0)]);
        for (t, want) in [
            ("v3.3.9", true),
            ("v3.3.10", false),
            ("v3.4.3", true),
            ("v3.4.4", false),
            ("v3.5.15", false),
            ("v3.6.10", false),
            ("v3.6.11", true),
            ("v3.7.0", true),
            ("v2.12.13", false),
        ] {
            assert_eq!(ok(t, &s), want, "{t}: {:?}", verdict(t, &s));
        }
    }

    #[test]
    fn v2_12_does_not_excuse_a_sidecar_that_left_a_message_or_was_oom_killed() {
        let mut s = status("Failed", &[], &[("wait", 0), ("main", 0), ("proxy", 137)]);
        assert!(ok("v2.12.13", &s));
        let t = s.container_statuses.as_mut().unwrap()[2].state.as_mut().unwrap().terminated.as_mut().unwrap();
        t.reason = Some("OOMKilled".into());
        assert!(!ok("v2.12.13", &s));
        assert!(ok("v3.0.10", &s), "v3.0+ look at the exit code only");
    }

    #[test]
    fn container_set_members_count_as_main_from_v3_1() {
        let s = status("Failed", &[], &[("wait", 0), ("a", 1), ("b", 0)]);
        let j = Judged { status: &s, mains: &["a", "b"] };
        assert!(matches!(node_verdict(v("v3.1.15"), j), NodeVerdict::Failed(_)));
        let killed = status("Failed", &[], &[("wait", 0), ("a", 0), ("b", 143)]);
        let j = Judged { status: &killed, mains: &["a", "b"] };
        assert!(matches!(node_verdict(v("v3.6.19"), j), NodeVerdict::Failed(_)), "a member is main, not a sidecar");
    }

    #[test]
    fn unfinished_pods_have_no_verdict() {
        let s = status("Running", &[], &[("wait", 0), ("main", 0)]);
        assert!(matches!(verdict("v3.6.19", &s), NodeVerdict::Unfinished(_)));
    }

    #[test]
    fn a_range_succeeds_only_when_every_rule_set_in_it_agrees() {
        let s = status("Failed", &[("init", 0), ("setup", 143)], &[("wait", 0), ("main", 0)]);
        let j = Judged { status: &s, mains: MAIN };
        // v3.6.0–v3.6.10 check init exits; v3.6.11+ do not.
        assert!(matches!(succeeded_in_every(v("v3.6.0"), v("v4.99.0"), j), NodeVerdict::Failed(_)));
        assert_eq!(succeeded_in_every(v("v3.7.0"), v("v4.99.0"), j), NodeVerdict::Succeeded);
        let sidecar = status("Failed", &[("init", 0)], &[("wait", 0), ("main", 0), ("proxy", 137)]);
        let j = Judged { status: &sidecar, mains: MAIN };
        assert_eq!(succeeded_in_every(v("v2.12.0"), v("v4.99.0"), j), NodeVerdict::Succeeded);
    }
}
