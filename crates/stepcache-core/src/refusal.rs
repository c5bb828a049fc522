//! Whether a hit was refused after stepcache answered it. The API server can still refuse the
//! rewritten pod (a validating policy, an image allow-list, another webhook, a quota); Argo then
//! fails the node, and every retry would be the same hit refused again. So a while after each
//! hit, the service looks for the pod and the Workflow's node, and this module judges what it
//! found: a refused hit blocks its key in its namespace until an operator clears it, and the
//! retry runs the step.
//!
//! Pure; imports nothing internal.

/// What the Workflow says about the hit's node (`status.nodes[<node id>]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    /// `phase` (`Pending`, `Running`, `Succeeded`, `Failed`, `Error`, ...).
    pub phase: String,
    /// `message` (where the controller writes a refused create's error).
    pub message: String,
}

/// What the service found once the hit's confirmation bound passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// The hit pod exists: it was admitted.
    Pod,
    /// No such pod; the Workflow was read.
    NoPod {
        /// The node's status, when the Workflow has that node.
        node: Option<NodeView>,
        /// False when the Workflow itself was not found.
        workflow_found: bool,
    },
}

/// The judgement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The hit pod was created (it exists, or its node succeeded and the pod was collected).
    Delivered,
    /// The hit pod never appeared: the key must not be served in that namespace again until
    /// cleared. The cause is the controller's message where it left one.
    Refused {
        /// Why, as far as known.
        cause: String,
    },
    /// The controller is retrying the same pod after a transient error (429, timeouts): the
    /// retry is decided again, so nothing is blocked.
    Retrying,
}

/// Judges a hit from what was found after the bound.
///
/// A missing pod whose node succeeded was delivered (pod GC collected it); a missing pod whose
/// node is `Error`/`Failed`, or whose Workflow or node cannot be found, was refused: blocking a
/// key that was in fact fine costs misses until cleared, while serving a refused hit again fails
/// the node again. A `Pending` node with a message is the controller retrying a transient error.
pub fn judge(found: &Found) -> Verdict {
    match found {
        Found::Pod => Verdict::Delivered,
        Found::NoPod { node: Some(n), .. } if n.phase == "Succeeded" => Verdict::Delivered,
        Found::NoPod { node: Some(n), .. } if n.phase == "Pending" && !n.message.is_empty() => Verdict::Retrying,
        Found::NoPod { node: Some(n), .. } if !n.message.is_empty() => Verdict::Refused { cause: n.message.clone() },
        Found::NoPod { node: Some(n), .. } => Verdict::Refused {
            cause: format!(
                "the hit pod never appeared (its node is {})",
                if n.phase.is_empty() { "without a phase" } else { &n.phase }
            ),
        },
        Found::NoPod { node: None, workflow_found: true } => {
            Verdict::Refused { cause: "the hit pod never appeared (its Workflow has no such node)".into() }
        }
        Found::NoPod { node: None, workflow_found: false } => {
            Verdict::Refused { cause: "the hit pod never appeared (cause unknown: its Workflow was not found)".into() }
        }
    }
}

/// The miss reason of a step whose key is blocked by an earlier refused hit: says what happened
/// and how to clear it.
pub fn blocked_reason(key: &str, namespace: &str, refused_at: &str, cause: &str) -> String {
    format!(
        "hit-refused: a hit for this key in {namespace} was refused at {refused_at} ({cause}); \
         not served until `stepcache refused clear --key {key} --namespace {namespace}`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_pod(phase: &str, message: &str) -> Found {
        Found::NoPod { node: Some(NodeView { phase: phase.into(), message: message.into() }), workflow_found: true }
    }

    #[test]
    fn a_pod_that_exists_or_a_node_that_succeeded_was_delivered() {
        assert_eq!(judge(&Found::Pod), Verdict::Delivered);
        assert_eq!(judge(&no_pod("Succeeded", "")), Verdict::Delivered);
    }

    #[test]
    fn an_error_node_names_the_cause_the_controller_wrote() {
        let msg = "pods \"wf-1\" is forbidden: minimum cpu usage per Container is 50m, but request is 10m";
        assert_eq!(judge(&no_pod("Error", msg)), Verdict::Refused { cause: msg.into() });
        assert_eq!(judge(&no_pod("Failed", "x")), Verdict::Refused { cause: "x".into() });
    }

    #[test]
    fn a_pending_node_with_a_message_is_a_transient_retry_and_blocks_nothing() {
        assert_eq!(judge(&no_pod("Pending", "etcdserver: request timed out")), Verdict::Retrying);
    }

    #[test]
    fn a_pod_that_never_appeared_without_an_explanation_is_refused_all_the_same() {
        assert!(matches!(judge(&no_pod("Running", "")), Verdict::Refused { cause } if cause.contains("Running")));
        assert!(matches!(
            judge(&Found::NoPod { node: None, workflow_found: true }),
            Verdict::Refused { cause } if cause.contains("no such node")
        ));
        assert!(matches!(
            judge(&Found::NoPod { node: None, workflow_found: false }),
            Verdict::Refused { cause } if cause.contains("not found")
        ));
    }

    #[test]
    fn the_blocked_reason_says_how_to_clear_it() {
        let r = blocked_reason("v2:ab", "ml", "2026-01-01T00:00:00Z", "denied");
        assert!(r.starts_with("hit-refused: "), "{r}");
        assert!(r.contains("stepcache refused clear --key v2:ab --namespace ml"), "{r}");
    }
}
