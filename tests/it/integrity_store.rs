//! The store side of the integrity checks on both backends: withdrawing a dangling entry takes
//! its original and adopting copies and nothing else; the tag map keeps the newest observation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::support::{each_backend, TestStore};
use jiff::{SignedDuration, Timestamp};
use std::collections::BTreeMap;
use stepcache::store::{Execution, Recorded};
use stepcache::types::{CacheKey, Namespace, Staleness, StepOutputs};

fn t0() -> Timestamp {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

fn entry(key: u8, pod: &str) -> Execution {
    Execution {
        namespace: Namespace::parse("team-a").unwrap(),
        key: CacheKey::from_digest(&[key; 32]),
        seed: Default::default(),
        staleness: Staleness::Unbounded,
        outputs: StepOutputs::default(),
        material: serde_json::json!({}),
        template_name: "train".into(),
        workflow_name: "wf".into(),
        workflow_uid: "wf-uid".into(),
        node_id: format!("node-{pod}"),
        pod_name: pod.into(),
        pod_uid: pod.into(),
        image_digests: BTreeMap::new(),
        images: BTreeMap::new(),
        started_at: t0(),
        finished_at: t0(),
        expires_at: None,
    }
}

async fn withdrawing_a_dangling_entry_takes_its_copies_and_nothing_else(t: TestStore) {
    let Recorded::Inserted(original) = t.record(&entry(1, "p1"), t0()).await.unwrap() else { panic!() };
    let Recorded::Inserted(other) = t.record(&entry(2, "p2"), t0()).await.unwrap() else { panic!() };
    let copy = t.adopt(&original, Staleness::Seconds(3600), t0()).await.unwrap();
    // Found dangling through the copy: the original goes too (they share the artifacts).
    let n = t.mark_dangling(&copy, "artifact-gone", t0() + SignedDuration::from_secs(5)).await.unwrap();
    assert_eq!(n, 2);
    for id in [original.id, copy.id] {
        assert!(t.get(id).await.unwrap().unwrap().invalidated_at.is_some());
    }
    assert!(t.get(other.id).await.unwrap().unwrap().invalidated_at.is_none());
    assert!(t.lookup(&original.run.key, Staleness::Unbounded, t0()).await.unwrap().is_none(), "never served again");
    assert_eq!(t.mark_dangling(&original, "artifact-gone", t0()).await.unwrap(), 0, "idempotent");
}

async fn the_tag_map_keeps_the_newest_observation(t: TestStore) {
    let tag = "docker.io/library/python:3.7";
    let refs = [tag.to_owned(), "docker.io/library/never:seen".to_owned()];
    assert!(t.tag_digests(&refs).await.unwrap().is_empty());
    t.observe_tag(tag, "sha256:aa", t0()).await.unwrap();
    t.observe_tag(tag, "sha256:bb", t0() + SignedDuration::from_secs(10)).await.unwrap();
    t.observe_tag(tag, "sha256:cc", t0() + SignedDuration::from_secs(5)).await.unwrap();
    let got = t.tag_digests(&refs).await.unwrap();
    assert_eq!(got, BTreeMap::from([(tag.to_owned(), "sha256:bb".to_owned())]));
    assert_eq!(t.prune_tags(t0() + SignedDuration::from_secs(11)).await.unwrap(), 1);
    assert!(t.tag_digests(&refs).await.unwrap().is_empty());
}

each_backend!(withdrawing_a_dangling_entry_takes_its_copies_and_nothing_else, the_tag_map_keeps_the_newest_observation);
