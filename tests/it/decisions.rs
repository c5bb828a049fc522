//! The decision log on both backends: buffered decisions are written by a flush, found by pod
//! and by node, counted and summed per window, ranked by time saved, and pruned by age.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::support::TestStore;
use stepcache::store::decisions::{LoggedDecision, DECISION_RETENTION};
use stepcache::store::Store;

fn at(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn decision(pod: &str, kind: &str, template: &str, saved: f64, when: &str) -> LoggedDecision {
    LoggedDecision {
        decided_at: at(when),
        namespace: "ml".into(),
        pod_name: pod.into(),
        workflow_name: format!("wf-{pod}"),
        node_id: format!("node-{pod}"),
        template_name: template.into(),
        decision: kind.into(),
        reason: format!("{kind} because \"quoted\" <reason>"),
        key: "v1:00".into(),
        staleness: -1,
        seed: "s".into(),
        entry_id: (kind == "hit").then_some(7),
        nearest_id: (kind == "miss").then_some(3),
        differences: if kind == "miss" { vec!["args[0]: \"a\" → \"b\"".into()] } else { vec![] },
        saved_seconds: saved,
        ..Default::default()
    }
}

async fn the_log_round_trips(store: &Store) {
    store.log_decision(decision("p1", "hit", "train", 252.0, "2026-11-01T10:00:00Z"));
    store.log_decision(decision("p2", "miss", "train", 0.0, "2026-11-01T10:30:00Z"));
    store.log_decision(decision("p3", "hit", "prep", 10.5, "2026-11-01T10:40:00Z"));
    store.log_decision(decision("old", "miss", "prep", 0.0, "2026-10-01T00:00:00Z"));
    assert_eq!(store.flush_decisions().await.unwrap(), 4);
    assert_eq!(store.flush_decisions().await.unwrap(), 0, "written once");

    let d = store.decision_for_pod("ml", "p2").await.unwrap().unwrap();
    assert!(d.id > 0);
    assert_eq!(
        (d.decision.as_str(), d.nearest_id, d.differences.clone()),
        ("miss", Some(3), vec!["args[0]: \"a\" → \"b\"".to_owned()])
    );
    assert_eq!(d.reason, "miss because \"quoted\" <reason>");
    assert_eq!(d.decided_at, at("2026-11-01T10:30:00Z"));
    assert!(store.decision_for_pod("other", "p2").await.unwrap().is_none());
    let n = store.decision_for_node("ml", "wf-p1", "node-p1").await.unwrap().unwrap();
    assert_eq!((n.pod_name.as_str(), n.entry_id, n.saved_seconds), ("p1", Some(7), 252.0));

    let counts = store.decision_counts(at("2026-11-01T00:00:00Z")).await.unwrap();
    let hits = counts.iter().find(|c| c.decision == "hit").unwrap();
    assert_eq!((hits.count, hits.saved_seconds), (2, 262.5));
    assert_eq!(counts.iter().find(|c| c.decision == "miss").unwrap().count, 1, "the old miss is outside the window");

    let top = store.top_templates(at("2026-11-01T00:00:00Z"), 10).await.unwrap();
    assert_eq!(top.iter().map(|t| t.template.as_str()).collect::<Vec<_>>(), ["train", "prep"]);
    let misses = store.recent_decisions("miss", 10).await.unwrap();
    assert_eq!(misses.iter().map(|m| m.pod_name.as_str()).collect::<Vec<_>>(), ["old", "p2"], "newest logged first");

    // Pruning: only what is older than the retention goes.
    let now = at("2026-11-01T11:00:00Z");
    let pruned = store.prune_decisions(now, 1).await.unwrap();
    assert_eq!(pruned, 1);
    assert!(store.decision_for_pod("ml", "old").await.unwrap().is_none());
    assert!(store.decision_for_pod("ml", "p1").await.unwrap().is_some());
    let later = now.checked_add(jiff::SignedDuration::try_from(DECISION_RETENTION).unwrap()).unwrap();
    assert_eq!(store.prune_decisions(later, 2).await.unwrap(), 3, "in batches until none are left");
    // Many decisions: several multi-row inserts.
    for i in 0..450 {
        store.log_decision(decision(&format!("bulk-{i}"), "miss", "bulk", 0.0, "2026-11-01T12:00:00Z"));
    }
    assert_eq!(store.flush_decisions().await.unwrap(), 450);
    assert!(store.decision_for_pod("ml", "bulk-449").await.unwrap().is_some());
    assert_eq!(store.dropped_decisions(), 0);
}

#[tokio::test]
async fn the_decision_log_round_trips_on_sqlite() {
    let t = TestStore::sqlite().await;
    the_log_round_trips(&t.store).await;
}

#[tokio::test]
async fn the_decision_log_round_trips_on_postgres() {
    let Some(t) = TestStore::postgres().await else { return };
    the_log_round_trips(&t.store).await;
}
