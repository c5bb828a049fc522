//! The read-only status page on the metrics listener (`GET /status`, `GET /` redirects there):
//! hit ratio and time saved over the last hour and day and the top templates (from the
//! decision log, so every replica's decisions count), recent misses with their reasons, and the
//! health of the store and the recorder. Edge layer: gathers (each store call bounded by the
//! store timeout, failures shown on the page), then hands the data to the pure [`page`].
//!
//! Owns: `StatusState`, `router`.

pub mod exposition;
pub mod page;

use crate::metrics::Metrics;
use crate::store::Store;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use page::{Health, RecorderHealth, StatusData, Window};
use std::sync::Arc;
use std::time::Instant;

/// Rows of the top-templates and recent-misses tables.
const TABLE_ROWS: i64 = 20;

/// What the status page reads.
#[derive(Clone)]
pub struct StatusState {
    /// The execution store (decision log, readiness).
    pub store: Store,
    /// This process's metrics (fail-open and recorder counters).
    pub metrics: Arc<Metrics>,
    /// Whether this process runs the recorder.
    pub recorder: bool,
}

/// Routes `/status` and `/` (a redirect), to be merged into the metrics router.
pub fn router(state: StatusState) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/status") }))
        .route("/status", get(status))
        .with_state(Arc::new(state))
}

async fn status(State(s): State<Arc<StatusState>>) -> Response {
    let html = page::render(&gather(&s, jiff::Timestamp::now()).await);
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], html).into_response()
}

/// Collects the page's data; a store failure empties only the parts that needed it.
pub async fn gather(s: &StatusState, now: jiff::Timestamp) -> StatusData {
    let ago = |secs: i64| now.checked_sub(jiff::SignedDuration::from_secs(secs)).unwrap_or(now);
    let t = Instant::now();
    let store = match s.store.ready().await {
        Ok(()) => Health {
            ok: true,
            detail: format!(
                "{:?} reachable and migrated ({:.1} ms)",
                s.store.backend(),
                t.elapsed().as_secs_f64() * 1000.0
            ),
        },
        Err(e) => Health { ok: false, detail: e.to_string() },
    };
    let mut windows = Vec::new();
    for (id, title, secs) in [("hour", "Last hour", 3600), ("day", "Last day", 86_400)] {
        let counts = if store.ok { s.store.decision_counts(ago(secs)).await.ok() } else { None };
        windows.push(Window { id: id.into(), title: title.into(), counts });
    }
    let top_templates = if store.ok { s.store.top_templates(ago(86_400), TABLE_ROWS).await.ok() } else { None };
    let recent_misses = if store.ok { s.store.recent_decisions("miss", TABLE_ROWS).await.ok() } else { None };
    let m = exposition::parse(&s.metrics.encode());
    let lag_count = m.sum("stepcache_recorder_lag_seconds_count", &[]);
    StatusData {
        generated_at: now,
        windows,
        top_templates,
        recent_misses,
        store,
        fail_open: m.sum("stepcache_admission_requests_total", &[("decision", "error")]),
        store_errors: m.sum("stepcache_store_errors_total", &[]),
        recorder: RecorderHealth {
            running: s.recorder,
            recorded: m.sum("stepcache_recorder_recorded_total", &[]),
            skipped: m
                .by_label("stepcache_recorder_skipped_total", "reason")
                .into_iter()
                .filter(|(_, n)| *n > 0.0)
                .collect(),
            store_failures: m.sum("stepcache_store_errors_total", &[("op", "record")]),
            watch_errors: m.sum("stepcache_recorder_watch_errors_total", &[]),
            mean_lag_seconds: (lag_count > 0.0).then(|| m.sum("stepcache_recorder_lag_seconds_sum", &[]) / lag_count),
        },
        dropped_decisions: s.store.dropped_decisions(),
    }
}
