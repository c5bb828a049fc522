//! What to check before serving a hit whose outputs carry artifacts (pure): turns the stored
//! artifact references, completed with the admitted step's artifact repository
//! (`archiveLocation`), into existence checks; and combines their results into a verdict.
//!
//! Argo resolves a reference that is not complete on its own (usually just `s3.key`) against
//! the consuming workflow's artifact repository, which is the `archiveLocation` of the admitted
//! pod's template (`ArtifactLocation.Relocate`: the repository with the reference's key); a
//! complete reference is used as stored. The key material pins that repository
//! (`outputArtifactRepository`), so on a hit it is the one the recording run wrote to.

use crate::types::StepOutputs;
use serde_json::{Map, Value};

/// A key of a Kubernetes Secret holding a credential (`{name, key}` as Argo writes it).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretKey {
    /// Secret name, in the step's namespace.
    pub name: String,
    /// Key inside the Secret's data.
    pub key: String,
}

/// One object in an S3-compatible bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Object {
    /// `host[:port]`, without scheme.
    pub endpoint: String,
    /// Bucket (addressed path-style, which every S3-compatible server accepts).
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Plain HTTP instead of HTTPS.
    pub insecure: bool,
    /// Signing region (`us-east-1` when unset, as Argo does).
    pub region: String,
    /// Access key id, when the repository names one.
    pub access_key: Option<SecretKey>,
    /// Secret access key, when the repository names one.
    pub secret_key: Option<SecretKey>,
}

impl S3Object {
    /// Identity of the object for the result cache.
    pub fn cache_key(&self) -> String {
        format!("s3://{}/{}/{}", self.endpoint, self.bucket, self.key)
    }
}

/// One existence check to perform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// HEAD an S3-compatible object.
    S3(S3Object),
    /// HEAD a plain HTTP(S) artifact URL.
    Http {
        /// The artifact's URL.
        url: String,
    },
    /// A location stepcache cannot check (GCS, Azure, HDFS, ...), or an S3 reference whose
    /// repository is not known: served without a check and counted.
    Unchecked {
        /// Bounded label: the artifact kind.
        kind: &'static str,
    },
}

/// Artifact kinds Argo knows, as bounded labels.
const KINDS: &[&str] = &["gcs", "azure", "hdfs", "oss", "artifactory", "git", "http", "s3", "raw", "huggingface"];

fn text(m: &Map<String, Value>, k: &str) -> Option<String> {
    m.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
}

fn secret(m: &Map<String, Value>, k: &str) -> Option<SecretKey> {
    let s = m.get(k)?.as_object()?;
    Some(SecretKey { name: text(s, "name")?, key: text(s, "key")? })
}

/// True when an S3 reference is complete on its own (Argo's `S3Artifact.HasLocation`:
/// endpoint, bucket and key all set).
fn s3_complete(own: &Map<String, Value>) -> bool {
    ["endpoint", "bucket", "key"].iter().all(|k| text(own, k).is_some())
}

/// Where an S3 reference points, as Argo's `ArtifactLocation.Relocate` resolves it: a complete
/// reference as stored; otherwise the repository (`archiveLocation.s3`) with the reference's key,
/// every other stored field (a lone `bucket`, `region`, ...) discarded exactly as Argo discards it.
fn s3_check(own: &Map<String, Value>, repo: Option<&Map<String, Value>>) -> Check {
    let Some(key) = text(own, "key") else { return Check::Unchecked { kind: "s3" } };
    let loc = if s3_complete(own) {
        own
    } else {
        match repo {
            Some(r) => r,
            None => return Check::Unchecked { kind: "s3" },
        }
    };
    match (text(loc, "endpoint"), text(loc, "bucket")) {
        (Some(endpoint), Some(bucket)) => Check::S3(S3Object {
            endpoint,
            bucket,
            key,
            insecure: loc.get("insecure").and_then(Value::as_bool).unwrap_or(false),
            region: text(loc, "region").unwrap_or_else(|| "us-east-1".to_owned()),
            access_key: secret(loc, "accessKeySecret"),
            secret_key: secret(loc, "secretKeySecret"),
        }),
        _ => Check::Unchecked { kind: "s3" },
    }
}

/// The checks a hit with `outputs` needs, given the admitted template's `archiveLocation`.
/// Inline (`raw`) artifacts and artifacts without any location (optional ones that were not
/// produced) need none.
pub fn plan(outputs: &StepOutputs, archive_location: Option<&Map<String, Value>>) -> Vec<Check> {
    let repo_s3 = archive_location.and_then(|a| a.get("s3")).and_then(Value::as_object);
    outputs
        .artifacts
        .iter()
        .filter_map(|a| {
            let (kind, loc) = KINDS.iter().find_map(|k| a.rest.get(*k).map(|v| (*k, v)))?;
            match (kind, loc.as_object()) {
                ("raw", _) => None,
                ("s3", Some(own)) => Some(s3_check(own, repo_s3)),
                ("http", Some(own)) => match text(own, "url") {
                    Some(url) => Some(Check::Http { url }),
                    None => Some(Check::Unchecked { kind: "http" }),
                },
                _ => Some(Check::Unchecked { kind }),
            }
        })
        .collect()
}

/// The result of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// The object exists.
    Present,
    /// The server says it does not (404).
    Gone,
    /// No answer could be had (timeout, refused, denied, missing credentials): unknown.
    Unknown(String),
    /// Not checkable; served without a check.
    Unchecked,
}

/// What the hit may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every checkable artifact exists: serve.
    Serve,
    /// An artifact is gone: miss (`artifact-gone`) and withdraw the entry.
    Gone(String),
    /// A check did not complete: miss (`artifact-unverified`); the entry is kept.
    Unverified(String),
}

/// Combines the results, in plan order, with the checks' descriptions: any `Gone` wins (the
/// entry is withdrawn even if another check failed), then any `Unknown`.
pub fn verdict(results: &[(String, Found)]) -> Verdict {
    if let Some((what, _)) = results.iter().find(|(_, f)| *f == Found::Gone) {
        return Verdict::Gone(format!("output artifact {what} no longer exists"));
    }
    if let Some((what, Found::Unknown(why))) = results.iter().find(|(_, f)| matches!(f, Found::Unknown(_))) {
        return Verdict::Unverified(format!("could not verify output artifact {what}: {why}"));
    }
    Verdict::Serve
}

/// Human description of a check for reasons.
pub fn describe(c: &Check) -> String {
    match c {
        Check::S3(o) => o.cache_key(),
        Check::Http { url } => url.clone(),
        Check::Unchecked { kind } => format!("({kind}, not checked)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn outputs(artifacts: Value) -> StepOutputs {
        serde_json::from_value(json!({ "artifacts": artifacts })).unwrap_or_default()
    }

    fn repo() -> Value {
        json!({"s3": {"endpoint": "minio:9000", "bucket": "b", "insecure": true,
            "accessKeySecret": {"name": "cred", "key": "accesskey"},
            "secretKeySecret": {"name": "cred", "key": "secretkey"}, "key": "wf/node"}})
    }

    #[test]
    fn a_key_only_reference_is_completed_from_the_repository() {
        let o = outputs(json!([{"name": "f", "path": "/x", "s3": {"key": "wf/node/f.tgz"}}]));
        let checks = plan(&o, repo().as_object());
        let Some(Check::S3(s3)) = checks.first() else { panic!("{checks:?}") };
        assert_eq!((s3.endpoint.as_str(), s3.bucket.as_str(), s3.key.as_str()), ("minio:9000", "b", "wf/node/f.tgz"));
        assert!(s3.insecure);
        assert_eq!(s3.region, "us-east-1");
        assert_eq!(s3.access_key, Some(SecretKey { name: "cred".into(), key: "accesskey".into() }));
    }

    #[test]
    fn a_complete_stored_location_is_checked_where_it_is() {
        let o = outputs(json!([{"name": "f", "s3": {"key": "k", "bucket": "other", "endpoint": "s3.example:443",
            "region": "eu-west-1"}}]));
        let checks = plan(&o, repo().as_object());
        let Some(Check::S3(s3)) = checks.first() else { panic!("{checks:?}") };
        assert_eq!(
            (s3.endpoint.as_str(), s3.bucket.as_str(), s3.region.as_str()),
            ("s3.example:443", "other", "eu-west-1")
        );
        assert!(!s3.insecure, "nothing is taken from the repository");
        assert_eq!(s3.access_key, None);
    }

    #[test]
    fn a_partial_stored_location_is_replaced_by_the_repository_as_argo_does() {
        // `Relocate` keeps only the key of a reference without endpoint, bucket and key.
        let o = outputs(json!([{"name": "f", "s3": {"key": "k", "bucket": "other", "region": "eu-west-1"}}]));
        let checks = plan(&o, repo().as_object());
        let Some(Check::S3(s3)) = checks.first() else { panic!("{checks:?}") };
        assert_eq!((s3.bucket.as_str(), s3.region.as_str(), s3.key.as_str()), ("b", "us-east-1", "k"));
    }

    #[test]
    fn other_kinds_pass_through_counted_and_inline_ones_need_nothing() {
        let o = outputs(json!([
            {"name": "a", "gcs": {"bucket": "g", "key": "k"}},
            {"name": "b", "raw": {"data": "hello"}},
            {"name": "c", "http": {"url": "http://h/x"}},
            {"name": "d", "path": "/optional/not/produced"},
            {"name": "e", "s3": {"key": "k"}}
        ]));
        let checks = plan(&o, None);
        assert_eq!(
            checks,
            vec![
                Check::Unchecked { kind: "gcs" },
                Check::Http { url: "http://h/x".into() },
                Check::Unchecked { kind: "s3" }
            ]
        );
    }

    #[test]
    fn gone_wins_over_unknown_and_unknown_over_present() {
        let p = ("a".to_owned(), Found::Present);
        let u = ("b".to_owned(), Found::Unknown("timeout".into()));
        let g = ("c".to_owned(), Found::Gone);
        let n = ("d".to_owned(), Found::Unchecked);
        assert_eq!(verdict(&[p.clone(), n.clone()]), Verdict::Serve);
        assert!(matches!(verdict(&[p.clone(), u.clone()]), Verdict::Unverified(_)));
        assert!(matches!(verdict(&[u, g, p]), Verdict::Gone(w) if w.contains('c')));
        assert_eq!(verdict(&[]), Verdict::Serve);
    }
}
