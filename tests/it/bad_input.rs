//! A table of bad inputs, each with its exact expected answer: nothing panics, nothing hangs,
//! nothing is written to the store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::harness::*;
use serde_json::{json, Value};
use stepcache::admission::decode::{decode, DecodeError};
use stepcache::admission::Ports;
use stepcache::store::EntryFilter;

#[derive(Debug)]
enum Expect {
    /// The body is rejected before a uid is known (HTTP 400 with this kind).
    Rejected(&'static str),
    /// Allowed, no patch, no warning; decision label.
    Silent(&'static str),
    /// Allowed, no patch, a warning containing this text; decision label.
    Warned(&'static str, &'static str),
}

fn review_with(obj: Value) -> Value {
    let mut r = fixture("v3.6-container-params.admission.json");
    r["request"]["object"] = obj;
    r
}

fn set_template(raw: &str) -> Value {
    let mut r = fixture("v3.6-container-params.admission.json");
    for e in r["request"]["object"]["spec"]["initContainers"][0]["env"].as_array_mut().unwrap() {
        if e["name"] == "ARGO_TEMPLATE" {
            e["value"] = json!(raw);
        }
    }
    r
}

fn cases() -> Vec<(&'static str, Vec<u8>, Expect)> {
    let good = fixture("v3.6-container-params.admission.json");
    let enc = |v: &Value| v.to_string().into_bytes();
    let mut no_template = good.clone();
    for e in no_template["request"]["object"]["spec"]["initContainers"][0]["env"].as_array_mut().unwrap() {
        if e["name"] == "ARGO_TEMPLATE" {
            e["name"] = json!("NOT_THE_TEMPLATE");
        }
    }
    let truncated = {
        let s = good.to_string();
        s.as_bytes()[..s.len() / 2].to_vec()
    };
    let mut delete = good.clone();
    delete["request"]["operation"] = json!("DELETE");
    let mut deployment = good.clone();
    deployment["request"]["kind"] = json!({"group":"apps","version":"v1","kind":"Deployment"});
    let mut no_object = good.clone();
    no_object["request"].as_object_mut().unwrap().remove("object");
    let mut empty_uid = good.clone();
    empty_uid["request"]["uid"] = json!("");
    let mut numeric_uid = good.clone();
    numeric_uid["request"]["uid"] = json!(5);
    let mut bad_ns = good.clone();
    bad_ns["request"]["object"]["metadata"]["namespace"] = json!("Not_A_Namespace");
    let dup = {
        let s = good.to_string();
        s.replacen("\"uid\":", "\"uid\":\"first\",\"uid\":", 1).into_bytes()
    };
    vec![
        ("truncated JSON", truncated, Expect::Rejected("not_json")),
        ("empty body", Vec::new(), Expect::Rejected("not_json")),
        ("invalid UTF-8", vec![b'{', 0xff, 0xfe, b'}'], Expect::Rejected("not_json")),
        (
            "deeply nested JSON",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
            Expect::Rejected("too_deep"),
        ),
        ("JSON array", b"[]".to_vec(), Expect::Rejected("wrong_version")),
        ("JSON null", b"null".to_vec(), Expect::Rejected("wrong_version")),
        (
            "v1beta1 review",
            br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u"}}"#.to_vec(),
            Expect::Rejected("wrong_version"),
        ),
        (
            "request is a string",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":"x"}"#.to_vec(),
            Expect::Rejected("missing_request"),
        ),
        ("empty uid", enc(&empty_uid), Expect::Rejected("missing_uid")),
        ("numeric uid", enc(&numeric_uid), Expect::Rejected("missing_uid")),
        ("duplicate keys: the last uid wins", dup, Expect::Silent("miss")),
        ("DELETE operation", enc(&delete), Expect::Silent("skipped-not-argo")),
        ("a Deployment", enc(&deployment), Expect::Silent("skipped-not-argo")),
        ("no object", enc(&no_object), Expect::Warned("no object", "invalid")),
        ("object is an array", enc(&review_with(json!([]))), Expect::Warned("not a valid Pod", "invalid")),
        (
            "metadata is a number",
            enc(&review_with(json!({"kind":"Pod","metadata":5}))),
            Expect::Warned("not a valid Pod", "invalid"),
        ),
        (
            "containers is an object",
            enc(&review_with(json!({"kind":"Pod","spec":{"containers":{}}}))),
            Expect::Warned("not a valid Pod", "invalid"),
        ),
        (
            "label value is a number",
            enc(&review_with(json!({"kind":"Pod","metadata":{"labels":{"a":1}}}))),
            Expect::Warned("not a valid Pod", "invalid"),
        ),
        ("template is not JSON", enc(&set_template("{\"name\":")), Expect::Warned("malformed", "invalid")),
        (
            "template container is a number",
            enc(&set_template(r#"{"name":"x","container":5}"#)),
            Expect::Warned("malformed", "invalid"),
        ),
        ("template is a JSON string", enc(&set_template(r#""hello""#)), Expect::Warned("malformed", "invalid")),
        ("no template at all", enc(&no_template), Expect::Silent("skipped")),
        (
            "no template but staleness asked",
            enc(&with_annotation(&no_template, "stepcache.dev/max-cache-staleness", "P1D")),
            Expect::Warned("no resolved Argo template", "skipped"),
        ),
        (
            "staleness P-1D",
            enc(&with_annotation(&good, "stepcache.dev/max-cache-staleness", "P-1D")),
            Expect::Warned("negative", "invalid"),
        ),
        (
            "staleness forever",
            enc(&with_annotation(&good, "stepcache.dev/max-cache-staleness", "forever")),
            Expect::Warned("not a duration", "invalid"),
        ),
        (
            "staleness 9999999999999h",
            enc(&with_annotation(&good, "stepcache.dev/max-cache-staleness", "9999999999999h")),
            Expect::Warned("exceeds 100 years", "invalid"),
        ),
        (
            "KFP staleness garbage",
            enc(&with_annotation(&good, "pipelines.kubeflow.org/max_cache_staleness", "P1X")),
            Expect::Warned("pipelines.kubeflow.org/max_cache_staleness", "invalid"),
        ),
        (
            "seed of 1 MiB",
            enc(&with_annotation(&good, "stepcache.dev/cache-seed", &"s".repeat(1 << 20))),
            Expect::Warned("cache seed is invalid", "invalid"),
        ),
        ("namespace not a DNS label", enc(&bad_ns), Expect::Warned("namespace", "invalid")),
        (
            "latch not a boolean",
            enc(&with_annotation(&good, "stepcache.dev/latch", "sometimes")),
            Expect::Warned("not true/false", "miss"),
        ),
    ]
}

#[tokio::test]
async fn every_bad_input_gets_its_exact_answer_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let a = admitter(store.clone(), config(), Ports::default());
    let cases = cases();
    assert!(cases.len() >= 20);
    for (name, body, expect) in cases {
        let decoded = decode(&body);
        match (&expect, decoded) {
            (Expect::Rejected(kind), Err(e)) => assert_eq!(e.kind(), *kind, "{name}: {e}"),
            (Expect::Rejected(kind), Ok(_)) => panic!("{name}: expected rejection {kind}"),
            (_, Err(e)) => panic!("{name}: unexpected rejection {e:?}"),
            (Expect::Silent(detail), Ok(d)) => {
                let o =
                    tokio::time::timeout(std::time::Duration::from_secs(5), a.admit(&d, ts("2026-11-01T10:00:00Z")))
                        .await
                        .expect("hung");
                assert_eq!(o.explain.detail.as_str(), *detail, "{name}: {:?}", o.explain);
                assert!(o.review.response.allowed);
                assert!(o.review.response.warnings.is_empty(), "{name}: {:?}", o.review);
            }
            (Expect::Warned(text, detail), Ok(d)) => {
                let o =
                    tokio::time::timeout(std::time::Duration::from_secs(5), a.admit(&d, ts("2026-11-01T10:00:00Z")))
                        .await
                        .expect("hung");
                assert_eq!(o.explain.detail.as_str(), *detail, "{name}: {:?}", o.explain);
                assert!(o.review.response.allowed);
                let w = o.review.response.warnings.join("\n");
                assert!(w.contains(text), "{name}: warnings {w}");
                if *detail != "miss" {
                    assert!(o.review.response.patch.is_none(), "{name}");
                }
            }
        }
    }
    assert!(store.list(&EntryFilter::default(), 10).await.unwrap().is_empty(), "nothing written");
    let _ = DecodeError::MissingUid;
}

#[tokio::test]
async fn a_ten_mib_body_is_refused_with_413() {
    let dir = tempfile::tempdir().unwrap();
    let a = admitter(sqlite_store(dir.path()).await, config(), Ports::default());
    let s =
        crate::webhook::start(a, dir.path(), std::time::Duration::from_secs(4), stepcache::server::DEFAULT_BODY_LIMIT)
            .await;
    let mut big = fixture("v3.6-container-params.admission.json");
    big["request"]["object"]["metadata"]["annotations"]["pad"] = json!("x".repeat(10 << 20));
    let r = s
        .client
        .post(s.url("/mutate"))
        .header("content-type", "application/json")
        .body(big.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}
