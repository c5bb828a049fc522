//! Every admission runs in one `admission` span with its declared fields recorded: uid,
//! namespace, pod, key, decision and the time spent in the store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::harness::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use stepcache::admission::Ports;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// Field name → rendered value.
#[derive(Clone, Default, Debug)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
}

/// Collects, per `admission` span, the declared field names and the fields recorded so far
/// (a span may outlive its admission: pooled store connections can keep a handle to it).
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<BTreeMap<u64, SpanSeen>>>);

/// Declared field names and recorded fields of one span.
type SpanSeen = (Vec<String>, Fields);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _ctx: Context<'_, S>) {
        if attrs.metadata().name() != "admission" {
            return;
        }
        let declared: Vec<String> = attrs.metadata().fields().iter().map(|f| f.name().to_owned()).collect();
        let mut f = Fields::default();
        attrs.record(&mut f);
        self.0.lock().unwrap().insert(id.into_u64(), (declared, f));
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        if let Some((_, f)) = self.0.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(f);
        }
    }
}

#[tokio::test]
async fn each_admission_has_one_span_with_its_declared_fields_recorded() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let dir = tempfile::tempdir().unwrap();
    let a = admitter(sqlite_store(dir.path()).await, config(), Ports::default());
    let review = fixture("v3.3-container-params.admission.json");
    // Another test's thread may have registered the span's callsite while this subscriber was
    // being installed (and cached "no interest"): recompute interests with it in place.
    tracing::callsite::rebuild_interest_cache();
    let (_, explain) = admit(&a, &review, jiff::Timestamp::now()).await;

    let spans: Vec<_> = capture.0.lock().unwrap().values().cloned().collect();
    assert_eq!(spans.len(), 1, "one span per admission");
    let (declared, Fields(f)) = &spans[0];
    for name in ["uid", "namespace", "pod", "key", "decision", "store_ms"] {
        assert!(declared.iter().any(|d| d == name), "{name} declared: {declared:?}");
    }
    assert_eq!(f["uid"], review["request"]["uid"].as_str().unwrap());
    assert_eq!(f["namespace"], review["request"]["namespace"].as_str().unwrap());
    assert_eq!(f["pod"], review["request"]["name"].as_str().unwrap());
    assert_eq!(f["key"], explain["key"].as_str().unwrap());
    assert_eq!(f["decision"], "miss");
    let store_ms: f64 = f["store_ms"].parse().unwrap();
    assert!(store_ms > 0.0, "the lookup's time is counted: {store_ms}");
}
