//! Decoding an AdmissionReview body into what the decision needs, with a specific error for
//! every way it can be wrong.
//!
//! Pure: no I/O. It lives at the service edge because it speaks kube's admission types.

use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, Operation};
use serde_json::Value;

/// Deepest JSON nesting accepted: pods are shallow; deeper input is an attack or a bug.
pub const MAX_DEPTH: usize = 64;

/// A request whose body could not be turned into an AdmissionReview with a uid.
/// Without a uid no valid response can be built, so these become HTTP 400s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body is not UTF-8 JSON.
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    /// JSON nested deeper than [`MAX_DEPTH`].
    #[error("body JSON is nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// Not `admission.k8s.io/v1` `AdmissionReview`.
    #[error(
        "expected apiVersion admission.k8s.io/v1 kind AdmissionReview, got apiVersion {api_version:?} kind {kind:?}"
    )]
    WrongVersion {
        /// apiVersion found.
        api_version: String,
        /// kind found.
        kind: String,
    },
    /// No `request` object.
    #[error("AdmissionReview has no request")]
    MissingRequest,
    /// No `request.uid`.
    #[error("AdmissionReview request has no uid")]
    MissingUid,
}

impl DecodeError {
    /// Bounded metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::NotJson(_) => "not_json",
            DecodeError::TooDeep => "too_deep",
            DecodeError::WrongVersion { .. } => "wrong_version",
            DecodeError::MissingRequest => "missing_request",
            DecodeError::MissingUid => "missing_uid",
        }
    }
}

/// What the request asks about, once the uid is known.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// A Pod CREATE with a decodable pod.
    PodCreate(Box<Pod>),
    /// Not something stepcache acts on (other operation, resource); allowed silently.
    Ignored(String),
    /// Something stepcache should act on but cannot read; allowed with this warning.
    Unreadable(String),
}

/// A decoded AdmissionReview.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The request uid, echoed in the response.
    pub uid: String,
    /// `request.namespace`.
    pub namespace: Option<String>,
    /// `request.name`.
    pub name: Option<String>,
    /// `request.dryRun`: side effects must be skipped.
    pub dry_run: bool,
    /// `request.userInfo`: who the API server authenticated as creating the object. Only the
    /// Argo controller's pods are decided ([`stepcache_core::trust`]).
    pub requester: stepcache_core::trust::Requester,
    /// What to decide about.
    pub subject: Subject,
}

fn depth_ok(bytes: &[u8]) -> bool {
    // Counts bracket depth outside strings; cheap pre-check before serde recursion.
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    for &b in bytes {
        if in_str {
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

/// Decodes a body; any error is specific.
///
/// A well-formed pod CREATE (every request the API server sends for a pod) is parsed once,
/// straight into kube's typed `AdmissionRequest<Pod>`. Anything else (another kind or operation,
/// a missing field, an object that is not a valid Pod) is read again as plain JSON, so each way
/// it can be wrong gets its own error or warning instead of one parse error.
pub fn decode(body: &[u8]) -> Result<Decoded, DecodeError> {
    if !depth_ok(body) {
        return Err(DecodeError::TooDeep);
    }
    if let Some(d) = serde_json::from_slice::<Envelope>(body).ok().and_then(typed_pod_create) {
        return Ok(d);
    }
    decode_untyped(body)
}

/// kube's `AdmissionReview` minus its `#[serde(flatten)]` type meta: flattening makes serde
/// buffer the whole request (every string copied once more) before reading it, which tripled the
/// decode of a 64 KiB template (docs/performance.md). The request itself is kube's type.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    request: Option<AdmissionRequest<Pod>>,
}

/// The decoded form of a typed review when it is a pod CREATE with a uid and an object; `None`
/// sends the body to [`decode_untyped`].
fn typed_pod_create(review: Envelope) -> Option<Decoded> {
    if review.api_version != "admission.k8s.io/v1" || review.kind != "AdmissionReview" {
        return None;
    }
    let req: AdmissionRequest<Pod> = review.request?;
    let is_pod = req.kind.kind == "Pod" && req.kind.group.is_empty();
    if req.uid.is_empty() || !is_pod || req.operation != Operation::Create {
        return None;
    }
    let pod = req.object?;
    let requester = stepcache_core::trust::Requester {
        username: req.user_info.username.unwrap_or_default(),
        groups: req.user_info.groups.unwrap_or_default(),
    };
    Some(Decoded {
        uid: req.uid,
        namespace: req.namespace.filter(|n| !n.is_empty()),
        name: Some(req.name).filter(|n| !n.is_empty()),
        dry_run: req.dry_run,
        requester,
        subject: Subject::PodCreate(Box::new(pod)),
    })
}

/// Reads a body that is not a well-formed pod CREATE as plain JSON, naming what is wrong.
fn decode_untyped(body: &[u8]) -> Result<Decoded, DecodeError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let api_version = str_at(&v, &["apiVersion"]).unwrap_or_default();
    let kind = str_at(&v, &["kind"]).unwrap_or_default();
    if api_version != "admission.k8s.io/v1" || kind != "AdmissionReview" {
        return Err(DecodeError::WrongVersion { api_version: api_version.into(), kind: kind.into() });
    }
    let req = v.get("request").filter(|r| r.is_object()).ok_or(DecodeError::MissingRequest)?;
    let uid = str_at(req, &["uid"]).filter(|u| !u.is_empty()).ok_or(DecodeError::MissingUid)?;
    let namespace = str_at(req, &["namespace"]).filter(|n| !n.is_empty()).map(str::to_owned);
    let name = str_at(req, &["name"]).filter(|n| !n.is_empty()).map(str::to_owned);
    let dry_run = req.get("dryRun").and_then(Value::as_bool).unwrap_or(false);
    let requester = stepcache_core::trust::Requester {
        username: str_at(req, &["userInfo", "username"]).unwrap_or_default().to_owned(),
        groups: req
            .pointer("/userInfo/groups")
            .and_then(Value::as_array)
            .map(|g| g.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default(),
    };
    let operation = str_at(req, &["operation"]).unwrap_or_default();
    let group = str_at(req, &["kind", "group"]).unwrap_or_default();
    let req_kind = str_at(req, &["kind", "kind"]).unwrap_or_default();
    let subject = if req_kind != "Pod" || !group.is_empty() {
        Subject::Ignored(format!("stepcache only acts on pods, not {group}/{req_kind}"))
    } else if operation != "CREATE" {
        Subject::Ignored(format!("stepcache only acts on CREATE, not {operation}"))
    } else {
        match req.get("object") {
            None | Some(Value::Null) => {
                Subject::Unreadable("stepcache: request has no object; pod admitted unchanged".into())
            }
            Some(obj) if str_at(obj, &["kind"]).is_some_and(|k| k != "Pod") => Subject::Unreadable(format!(
                "stepcache: object is a {}, not a Pod; admitted unchanged",
                str_at(obj, &["kind"]).unwrap_or_default()
            )),
            Some(obj) => match serde_json::from_value::<Pod>(obj.clone()) {
                Ok(pod) => Subject::PodCreate(Box::new(pod)),
                Err(e) => {
                    Subject::Unreadable(format!("stepcache: object is not a valid Pod ({e}); admitted unchanged"))
                }
            },
        }
    };
    Ok(Decoded { uid: uid.to_owned(), namespace, name, dry_run, requester, subject })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn review(req: Value) -> Vec<u8> {
        serde_json::to_vec(
            &serde_json::json!({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":req}),
        )
        .unwrap()
    }

    #[test]
    fn typed_and_untyped_decoding_agree_on_every_captured_pod_create() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/argo");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if !path.to_string_lossy().ends_with(".admission.json") {
                continue;
            }
            let body = std::fs::read(&path).unwrap();
            let review: Envelope = serde_json::from_slice(&body).unwrap();
            let typed = typed_pod_create(review).unwrap_or_else(|| panic!("{path:?} is not a typed pod create"));
            assert_eq!(Some(typed), decode_untyped(&body).ok(), "{path:?}");
            seen += 1;
        }
        assert!(seen >= 10, "only {seen} fixtures");
    }

    #[test]
    fn a_pod_with_a_64_kib_template_takes_the_typed_path() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/argo/v3.7-script.admission.json");
        let mut review: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let source = "print('x')\n".repeat(64 * 1024 / 11);
        for e in review["request"]["object"]["spec"]["initContainers"][0]["env"].as_array_mut().unwrap() {
            if e["name"] == "ARGO_TEMPLATE" {
                let mut t: Value = serde_json::from_str(e["value"].as_str().unwrap()).unwrap();
                t["script"]["source"] = Value::String(source.clone());
                e["value"] = Value::String(t.to_string());
            }
        }
        let body = serde_json::to_vec(&review).unwrap();
        let envelope = serde_json::from_slice::<Envelope>(&body);
        assert!(envelope.is_ok(), "{:?}", envelope.err());
        assert!(envelope.ok().and_then(typed_pod_create).is_some());
    }

    #[test]
    fn the_requester_is_read_from_user_info_on_both_paths() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/argo/kfp-v1-staleness.admission.json");
        let body = std::fs::read(path).unwrap();
        let d = decode(&body).unwrap();
        assert_eq!(d.requester.username, "system:serviceaccount:kubeflow:argo");
        assert!(d.requester.groups.iter().any(|g| g == "system:serviceaccounts:kubeflow"));
        let u = decode_untyped(&body).unwrap();
        assert_eq!(u.requester, d.requester);
        let none = decode(&review(
            serde_json::json!({"uid":"u","operation":"CREATE","kind":{"group":"","version":"v1","kind":"Pod"}}),
        ))
        .unwrap();
        assert_eq!(none.requester, stepcache_core::trust::Requester::default());
    }

    #[test]
    fn non_json_body_is_rejected_with_the_parse_error() {
        assert!(matches!(decode(b"{not json"), Err(DecodeError::NotJson(_))));
        assert!(matches!(decode(&[0xff, 0xfe, b'{']), Err(DecodeError::NotJson(_))));
    }

    #[test]
    fn wrong_version_is_named_in_the_error() {
        let b = br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u"}}"#;
        match decode(b) {
            Err(DecodeError::WrongVersion { api_version, .. }) => assert_eq!(api_version, "admission.k8s.io/v1beta1"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_uid_is_rejected() {
        assert_eq!(decode(&review(serde_json::json!({"operation":"CREATE"}))), Err(DecodeError::MissingUid));
        assert_eq!(
            decode(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#),
            Err(DecodeError::MissingRequest)
        );
    }

    #[test]
    fn deep_nesting_is_rejected_before_parsing() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(decode(deep.as_bytes()), Err(DecodeError::TooDeep));
    }

    #[test]
    fn non_pod_and_non_create_are_ignored() {
        let d = decode(&review(serde_json::json!({"uid":"u","operation":"CREATE","kind":{"group":"apps","version":"v1","kind":"Deployment"}}))).unwrap();
        assert!(matches!(d.subject, Subject::Ignored(_)));
        let d = decode(&review(
            serde_json::json!({"uid":"u","operation":"UPDATE","kind":{"group":"","version":"v1","kind":"Pod"}}),
        ))
        .unwrap();
        assert!(matches!(d.subject, Subject::Ignored(_)));
    }

    #[test]
    fn object_of_wrong_shape_is_unreadable_not_fatal() {
        let d = decode(&review(
            serde_json::json!({"uid":"u","operation":"CREATE","kind":{"group":"","version":"v1","kind":"Pod"},
            "object":{"kind":"Pod","spec":{"containers":"nope"}}}),
        ))
        .unwrap();
        assert!(matches!(d.subject, Subject::Unreadable(_)));
        let d = decode(&review(
            serde_json::json!({"uid":"u","operation":"CREATE","kind":{"group":"","version":"v1","kind":"Pod"},
            "object":{"kind":"Secret"}}),
        ))
        .unwrap();
        assert!(matches!(d.subject, Subject::Unreadable(ref w) if w.contains("Secret")));
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[a-zA-Z]{1,10}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decode_never_panics_on_arbitrary_objects(obj in arb_json(), op in "(CREATE|UPDATE|x)") {
            let body = review(serde_json::json!({"uid":"u","operation":op,"kind":{"group":"","version":"v1","kind":"Pod"},"object":obj}));
            let d = decode(&body);
            proptest::prop_assert!(d.is_ok());
        }
    }
}
