//! Moving inputs: input artifacts whose reference can name different bytes tomorrow under the
//! same text (a git branch or tag, an http URL). The key sees the reference, not the bytes, so
//! an entry recorded yesterday would be served after the upstream changed: a false hit. The
//! admin decides (`--moving-artifacts`): `miss` (default) never serves such a step, `cache`
//! keys it by reference as before.
//!
//! Owns: `MovingArtifacts`, `MovingInput`, `Moving`, `moving_inputs`. Pure: takes the
//! template's resolved `inputs.artifacts` and returns values; imports nothing internal.
//!
//! Not moving (keyed by location as today): `raw` (inline content, in the key itself); S3, GCS,
//! OSS, Azure, HDFS and Artifactory objects. Those are repository objects named by a key that
//! Argo writes per run (`<wf>/<pod>/...`), so a location names one run's output; a fixed key an
//! author overwrites in place is the author's "external state" (docs/cache-key.md). Argo's
//! artifact types carry no checksum or digest field, so no kind can be pinned by content.

use serde_json::{Map, Value};
use std::fmt;

/// What the admin chose for steps with moving inputs (`--moving-artifacts`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MovingArtifacts {
    /// Key them by reference and serve them (the old behaviour; a changed upstream is served
    /// the previous run's outputs until the entry is stale or invalidated).
    Cache,
    /// Never serve them: the lookup is skipped and the step runs (the safe default).
    #[default]
    Miss,
}

impl MovingArtifacts {
    /// Every choice, in the order flags list them.
    pub const ALL: [MovingArtifacts; 2] = [MovingArtifacts::Cache, MovingArtifacts::Miss];

    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            MovingArtifacts::Cache => "cache",
            MovingArtifacts::Miss => "miss",
        }
    }
}

impl fmt::Display for MovingArtifacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for MovingArtifacts {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s.trim())
            .ok_or_else(|| format!("{s:?} is not a moving-artifacts policy (cache, miss)"))
    }
}

/// Why one input artifact's reference can move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Moving {
    /// A git artifact at a branch, tag or abbreviated commit (`None`: no revision, the
    /// repository's default branch).
    GitRevision(Option<String>),
    /// An http artifact: a URL names whatever the server returns today.
    Http(String),
}

/// One input artifact whose reference can move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MovingInput {
    /// The artifact's name in the template.
    pub artifact: String,
    /// Why it moves.
    pub moving: Moving,
}

impl fmt::Display for MovingInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.moving {
            Moving::GitRevision(Some(r)) => write!(f, "git artifact {} at revision {r}", self.artifact),
            Moving::GitRevision(None) => {
                write!(f, "git artifact {} at no revision (the default branch)", self.artifact)
            }
            Moving::Http(url) => write!(f, "http artifact {} at {url}", self.artifact),
        }
    }
}

/// True for a full commit name: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits. Anything else
/// (a branch, a tag, `HEAD`, an abbreviated SHA that a new commit can make ambiguous or a branch
/// can shadow) can name another commit tomorrow.
fn is_full_commit(rev: &str) -> bool {
    matches!(rev.len(), 40 | 64) && rev.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn text<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The template's input artifacts (resolved, as `Template::input_artifacts` returns them) whose
/// reference can move, in template order. Artifacts without a location (optional, not given)
/// read nothing and are not listed.
pub fn moving_inputs(artifacts: &[&Map<String, Value>]) -> Vec<MovingInput> {
    artifacts
        .iter()
        .filter_map(|a| {
            let artifact = text(a, "name").unwrap_or("").to_owned();
            let moving = if let Some(git) = a.get("git").and_then(Value::as_object) {
                match text(git, "revision").map(str::trim) {
                    Some(r) if is_full_commit(r) => return None,
                    Some(r) => Moving::GitRevision(Some(r.to_owned())),
                    None => Moving::GitRevision(None),
                }
            } else if let Some(http) = a.get("http").and_then(Value::as_object) {
                Moving::Http(text(http, "url").unwrap_or("").to_owned())
            } else {
                return None;
            };
            Some(MovingInput { artifact, moving })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    fn found(v: Value) -> Vec<MovingInput> {
        let list: Vec<Map<String, Value>> =
            v.as_array().unwrap().iter().map(|a| a.as_object().unwrap().clone()).collect();
        moving_inputs(&list.iter().collect::<Vec<_>>())
    }

    fn git(rev: Option<&str>) -> Value {
        let mut g = json!({"repo": "https://github.com/example/p.git"});
        if let Some(r) = rev {
            g["revision"] = json!(r);
        }
        json!([{"name": "src", "path": "/src", "git": g}])
    }

    #[test]
    fn a_git_artifact_at_a_branch_or_tag_moves_and_says_which_revision() {
        for rev in ["main", "v1", "refs/heads/release", "HEAD"] {
            let m = found(git(Some(rev)));
            assert_eq!(m.len(), 1, "{rev}");
            assert_eq!(m[0].to_string(), format!("git artifact src at revision {rev}"));
        }
    }

    #[test]
    fn a_git_artifact_without_a_revision_moves_with_the_default_branch() {
        let m = found(git(None));
        assert_eq!(m, vec![MovingInput { artifact: "src".into(), moving: Moving::GitRevision(None) }]);
        assert!(m[0].to_string().contains("default branch"));
        assert_eq!(found(git(Some(""))).len(), 1, "an empty revision is no revision");
    }

    #[test]
    fn a_git_artifact_pinned_to_a_full_commit_does_not_move() {
        assert!(found(git(Some("0123456789abcdef0123456789abcdef01234567"))).is_empty());
        assert!(found(git(Some(&"a".repeat(64)))).is_empty(), "sha-256 object name");
    }

    #[test]
    fn an_abbreviated_or_uppercase_or_odd_length_sha_is_treated_as_moving() {
        for rev in ["0123456", "0123456789ABCDEF0123456789ABCDEF01234567", "0123456789abcdef0123456789abcdef0123456"] {
            assert_eq!(found(git(Some(rev))).len(), 1, "{rev}");
        }
    }

    #[test]
    fn an_http_artifact_always_moves_and_names_its_url() {
        let m = found(
            json!([{"name": "data", "http": {"url": "https://h/x.csv", "headers": [{"name": "A", "value": "b"}]}}]),
        );
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].to_string(), "http artifact data at https://h/x.csv");
    }

    #[test]
    fn raw_and_repository_objects_do_not_move() {
        let m = found(json!([
            {"name": "r", "raw": {"data": "hello"}},
            {"name": "s", "s3": {"key": "wf/pod/out.tgz"}},
            {"name": "g", "gcs": {"bucket": "b", "key": "k"}},
            {"name": "a", "artifactory": {"url": "https://art/repo/x.tgz"}},
            {"name": "o", "oss": {"key": "k"}},
            {"name": "z", "azure": {"blob": "k"}},
            {"name": "h", "hdfs": {"path": "/p"}},
            {"name": "none", "path": "/x", "optional": true}
        ]));
        assert!(m.is_empty(), "{m:?}");
    }

    #[test]
    fn every_moving_artifact_is_listed_in_template_order() {
        let m = found(json!([
            {"name": "b", "http": {"url": "https://h/b"}},
            {"name": "pinned", "git": {"repo": "r", "revision": "0123456789abcdef0123456789abcdef01234567"}},
            {"name": "a", "git": {"repo": "r", "revision": "v2"}}
        ]));
        let names: Vec<&str> = m.iter().map(|i| i.artifact.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
    }

    #[test]
    fn the_policy_parses_its_two_values_and_defaults_to_miss() {
        assert_eq!("cache".parse::<MovingArtifacts>(), Ok(MovingArtifacts::Cache));
        assert_eq!("miss".parse::<MovingArtifacts>(), Ok(MovingArtifacts::Miss));
        assert!("serve".parse::<MovingArtifacts>().is_err());
        assert_eq!(MovingArtifacts::default(), MovingArtifacts::Miss);
    }
}
