//! The Grafana dashboard cannot rot: every PromQL query in `charts/stepcache/dashboards/
//! stepcache.json` names series a running `stepcache serve` really exports, and every label it
//! selects or groups by is on those series (checked against a scrape after real hits and misses).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::status::Running;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use stepcache::status::exposition::{parse, Exposition};

fn dashboard() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/stepcache/dashboards/stepcache.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

/// Every PromQL expression: panel targets and query variables.
fn queries(d: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().map(Vec::as_slice).unwrap_or_default() {
            out.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    for v in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"]["query"].as_str() {
            out.push(q.to_owned());
        }
    }
    out
}

fn ident_at(s: &str, i: usize) -> &str {
    let rest = &s[i..];
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
    &rest[..end]
}

/// (metric, labels in its selector) for each `stepcache_...` series in `expr`, plus the labels
/// of `by (...)` clauses and `label_values(..., label)`.
fn parse_query(expr: &str) -> (Vec<(String, BTreeSet<String>)>, BTreeSet<String>) {
    let mut metrics = Vec::new();
    let mut grouping = BTreeSet::new();
    let mut i = 0;
    while let Some(off) = expr[i..].find("stepcache_") {
        let at = i + off;
        let name = ident_at(expr, at).to_owned();
        let mut labels = BTreeSet::new();
        let after = at + name.len();
        if expr[after..].starts_with('{') {
            let close = after + expr[after..].find('}').unwrap();
            for m in expr[after + 1..close].split(',') {
                let key = m.split(['=', '!']).next().unwrap().trim();
                if !key.is_empty() {
                    labels.insert(key.to_owned());
                }
            }
        }
        metrics.push((name, labels));
        i = after;
    }
    for kw in ["by (", "label_values("] {
        let mut j = 0;
        while let Some(off) = expr[j..].find(kw) {
            let open = j + off + kw.len();
            let close = open + expr[open..].find(')').unwrap();
            let inner = &expr[open..close];
            let names: Vec<&str> = inner.split(',').map(str::trim).collect();
            let names = if kw == "label_values(" { &names[names.len() - 1..] } else { &names[..] };
            grouping.extend(names.iter().map(|s| (*s).to_owned()));
            j = close;
        }
    }
    (metrics, grouping)
}

fn labels_of(scrape: &Exposition, metric: &str) -> BTreeSet<String> {
    scrape.samples.iter().filter(|s| s.name == metric).flat_map(|s| s.labels.keys().cloned()).collect()
}

#[test]
fn the_query_parser_finds_series_selector_labels_and_grouping() {
    let (m, g) = parse_query(
        "sum by (le, op) (rate(stepcache_x_bucket{namespace=~\"$namespace\",decision!=\"a\"}[5m])) / stepcache_y",
    );
    assert_eq!(m[0].0, "stepcache_x_bucket");
    assert_eq!(m[0].1, BTreeSet::from(["namespace".to_owned(), "decision".to_owned()]));
    assert_eq!((m[1].0.as_str(), m[1].1.len()), ("stepcache_y", 0));
    assert_eq!(g, BTreeSet::from(["le".to_owned(), "op".to_owned()]));
}

#[tokio::test]
async fn every_dashboard_query_names_series_and_labels_a_running_serve_exports() {
    let running = Running::start().await;
    let scrape = parse(&running.get("/metrics").await);
    assert!(!scrape.samples.is_empty(), "empty scrape");
    let d = dashboard();
    let qs = queries(&d);
    assert!(qs.len() >= 12, "the dashboard has its queries: {qs:?}");
    let mut used = BTreeSet::new();
    for q in &qs {
        let (metrics, grouping) = parse_query(q);
        assert!(!metrics.is_empty(), "query names no stepcache series: {q}");
        for (name, selector) in &metrics {
            used.insert(name.clone());
            let have = labels_of(&scrape, name);
            assert!(
                scrape.samples.iter().any(|s| &s.name == name),
                "{name} is not exported (query: {q}); exported: {:?}",
                scrape.samples.iter().map(|s| &s.name).collect::<BTreeSet<_>>()
            );
            for l in selector.iter().chain(&grouping) {
                assert!(have.contains(l), "{name} has no label {l:?} (query: {q}); it has {have:?}");
            }
        }
    }
    // The panels the operator guide promises.
    let titles: Vec<&str> = d["panels"].as_array().unwrap().iter().filter_map(|p| p["title"].as_str()).collect();
    for want in ["Decisions by type", "Hit ratio", "Compute time saved", "Recorder lag (p50, p99)"] {
        assert!(titles.contains(&want), "no panel {want:?}: {titles:?}");
    }
    for family in ["stepcache_namespace_decisions_total", "stepcache_namespace_time_saved_seconds_total"] {
        assert!(used.contains(family), "{family} is charted");
    }
}
