//! Who may create the pods stepcache decides, records and serves: the Argo controller, named by
//! the identity the API server authenticated (`AdmissionReview.request.userInfo`), never by
//! anything on the pod. Labels, annotations, owner references and node ids are the pod author's
//! to set; a user who may create pods could otherwise dress a pod as another workflow's node and
//! have stepcache serve it, record it, or write that node's WorkflowTaskResult with rights the
//! user lacks (a confused deputy).
//!
//! Pure; imports only `argo::labels`.

use crate::argo::labels;
use json_patch::jsonptr::PointerBuf;
use json_patch::{PatchOperation, RemoveOperation};
use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeMap;
use std::fmt;

/// The controller identities of the supported installs (`docs/cache-key.md`, threat model):
/// Argo's cluster-install and quick-start (`argo` in `argo`), argo-helm's default release
/// (`argo-workflows-workflow-controller` in `argo`) and Kubeflow Pipelines (`argo` in `kubeflow`).
/// Every other install names its own with `--controller-users`.
pub const DEFAULT_CONTROLLER_USERS: &[&str] = &[
    "system:serviceaccount:argo:argo",
    "system:serviceaccount:argo:argo-workflows-workflow-controller",
    "system:serviceaccount:kubeflow:argo",
];

/// The identity the API server authenticated for one request (`userInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requester {
    /// `userInfo.username` (empty when the request carried none).
    pub username: String,
    /// `userInfo.groups`.
    pub groups: Vec<String>,
}

/// Which requesters count as the Argo controller. Exact names only: a pattern or a namespace's
/// service-account group would also match the workflows' own service accounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerIdentities {
    /// Usernames (`system:serviceaccount:<namespace>:<name>` for a service account).
    pub users: Vec<String>,
    /// Groups every member of which is the controller (default none).
    pub groups: Vec<String>,
}

impl Default for ControllerIdentities {
    fn default() -> Self {
        ControllerIdentities {
            users: DEFAULT_CONTROLLER_USERS.iter().map(|s| (*s).to_owned()).collect(),
            groups: vec![],
        }
    }
}

/// Why a requester is not the controller: what the log, the decision log and `why` say.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct NotController {
    /// The requester's username (`<none>` when empty).
    pub username: String,
}

impl fmt::Display for NotController {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "created by {}, not by an Argo controller identity (--controller-users, --controller-groups): \
             stepcache neither serves nor records it",
            self.username
        )
    }
}

impl ControllerIdentities {
    /// `Ok` when `r` is one of the controller identities.
    pub fn check(&self, r: &Requester) -> Result<(), NotController> {
        let by_name = !r.username.is_empty() && self.users.contains(&r.username);
        let by_group = r.groups.iter().any(|g| self.groups.contains(g));
        if by_name || by_group {
            Ok(())
        } else {
            let username = if r.username.is_empty() { "<none>".to_owned() } else { r.username.clone() };
            Err(NotController { username })
        }
    }
}

/// True for the labels and annotations only stepcache writes (its decision, mark, key, served
/// provenance); the author's settings (`stepcache.dev/enabled`, `max-cache-staleness`,
/// `cache-seed`, `latch`) are not among them.
pub fn is_stepcache_written(name: &str) -> bool {
    name.starts_with(labels::STEPCACHE_PREFIX) && !labels::AUTHOR_NAMES.contains(&name)
}

/// Removes every stepcache-written label and annotation a pod arrives with. A pod stepcache did
/// not decide must not carry a decision, a mark or a served entry that looks like stepcache's:
/// copied from another pod, a mark would let the recorder take the copy for the original.
pub fn strip_stepcache_metadata(pod: &Pod) -> Vec<PatchOperation> {
    let mut ops = Vec::new();
    for (map, values) in [("labels", &pod.metadata.labels), ("annotations", &pod.metadata.annotations)] {
        for name in values.iter().flat_map(BTreeMap::keys).filter(|k| is_stepcache_written(k)) {
            ops.push(PatchOperation::Remove(RemoveOperation {
                path: PointerBuf::from_tokens(["metadata", map, name.as_str()]),
            }));
        }
    }
    ops
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn requester(user: &str, groups: &[&str]) -> Requester {
        Requester { username: user.into(), groups: groups.iter().map(|g| (*g).to_owned()).collect() }
    }

    #[test]
    fn the_default_trusts_the_supported_installs_controllers_and_nobody_else() {
        let ids = ControllerIdentities::default();
        for u in DEFAULT_CONTROLLER_USERS {
            assert_eq!(ids.check(&requester(u, &[])), Ok(()), "{u}");
        }
        // A workflow's own service account in the controller's namespace shares its groups.
        let sa = requester(
            "system:serviceaccount:argo:default",
            &["system:serviceaccounts", "system:serviceaccounts:argo", "system:authenticated"],
        );
        assert!(ids.check(&sa).is_err());
        assert!(ids.check(&requester("alice", &["system:masters"])).is_err());
        assert!(ids.check(&requester("", &[])).is_err());
    }

    #[test]
    fn a_name_that_only_resembles_the_controllers_is_not_trusted() {
        let ids = ControllerIdentities::default();
        for u in
            ["system:serviceaccount:argo:argo ", "system:serviceaccount:argo:argo2", "System:serviceaccount:argo:argo"]
        {
            assert!(ids.check(&requester(u, &[])).is_err(), "{u:?}");
        }
    }

    #[test]
    fn a_configured_group_trusts_its_members() {
        let ids = ControllerIdentities { users: vec![], groups: vec!["argo-controllers".into()] };
        assert_eq!(ids.check(&requester("x", &["a", "argo-controllers"])), Ok(()));
        assert!(ids.check(&requester("system:serviceaccount:argo:argo", &[])).is_err());
    }

    #[test]
    fn the_refusal_names_the_requester() {
        let e = ControllerIdentities::default().check(&requester("mallory", &[])).unwrap_err();
        assert!(e.to_string().starts_with("created by mallory, not by an Argo controller identity"), "{e}");
        let e = ControllerIdentities::default().check(&Requester::default()).unwrap_err();
        assert!(e.to_string().contains("<none>"), "{e}");
    }

    #[test]
    fn stripping_removes_stepcache_written_metadata_and_keeps_the_authors_settings() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {
                "labels": {"stepcache.dev/record": "true", "stepcache.dev/decision": "miss", "stepcache.dev/enabled": "true", "app": "x"},
                "annotations": {"stepcache.dev/mark": "m", "stepcache.dev/key": "v2:ab", "stepcache.dev/cache-seed": "s",
                                "stepcache.dev/max-cache-staleness": "P1D", "a/b~c": "keep"}
            }
        }))
        .unwrap();
        let ops = strip_stepcache_metadata(&pod);
        let paths: Vec<String> = ops
            .iter()
            .map(|o| match o {
                PatchOperation::Remove(r) => r.path.to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            paths,
            [
                "/metadata/labels/stepcache.dev~1decision",
                "/metadata/labels/stepcache.dev~1record",
                "/metadata/annotations/stepcache.dev~1key",
                "/metadata/annotations/stepcache.dev~1mark",
            ]
        );
        let mut v = serde_json::to_value(&pod).unwrap();
        json_patch::patch(&mut v, &ops).unwrap();
        assert_eq!(v["metadata"]["labels"], serde_json::json!({"stepcache.dev/enabled": "true", "app": "x"}));
        assert_eq!(v["metadata"]["annotations"]["stepcache.dev/cache-seed"], "s");
        assert!(strip_stepcache_metadata(&Pod::default()).is_empty());
    }
}
