//! HTTPS edge: `POST /mutate`, `GET /healthz`, `GET /readyz` over rustls (HTTP/1.1 and HTTP/2),
//! and `GET /metrics` on a separate plain-HTTP port. Body limit, content-type check,
//! per-request deadline with a fail-open answer, graceful shutdown.

use crate::admission::decode::{decode, DecodeError};
use crate::admission::{respond, Admitter};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;
use std::time::Duration;

/// Largest AdmissionReview accepted (the API server's own limit for objects is ~3 MiB in etcd;
/// a pod with an inline 128 KiB template stays far below this).
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// Shared state of the HTTPS router.
#[derive(Clone)]
pub struct AppState {
    /// The decision service.
    pub admitter: Admitter,
    /// Answer within this bound, failing open.
    pub deadline: Duration,
}

/// Router for the webhook port.
pub fn router(state: AppState, body_limit: usize) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/latch", get(latch))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(Arc::new(state))
}

/// Router for the metrics port.
pub fn metrics_router(metrics: Arc<crate::metrics::Metrics>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            async move {
                ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], m.encode())
            }
        }),
    )
}

fn bad_request(status: StatusCode, kind: &str, message: String) -> Response {
    tracing::warn!(kind, %message, "admission request rejected");
    (status, Json(serde_json::json!({"error": kind, "message": message}))).into_response()
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.admitter.store.ready().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("store not ready: {e}")).into_response(),
    }
}

async fn mutate(State(state): State<Arc<AppState>>, request: axum::extract::Request) -> Response {
    // The deadline starts when the headers are in: reading the body, decoding and deciding all
    // count against it, so a client trickling its body cannot hold a request past it.
    let deadline = tokio::time::Instant::now() + state.deadline;
    let headers = request.headers().clone();
    let body = match tokio::time::timeout_at(deadline, Bytes::from_request(request, &())).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            state.admitter.metrics.decision(crate::decision::Decision::Error);
            let status = e.status();
            return bad_request(status, "body", format!("request body rejected: {}", e.body_text()));
        }
        Err(_) => {
            state.admitter.metrics.decision(crate::decision::Decision::Error);
            return bad_request(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("request body not received within {:?}", state.deadline),
            );
        }
    };
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("application/json") {
        state.admitter.metrics.decision(crate::decision::Decision::Error);
        return bad_request(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_type",
            format!("expected Content-Type application/json, got {ct:?}"),
        );
    }
    let decoded = match decode(&body) {
        Ok(d) => d,
        Err(e) => {
            state.admitter.metrics.decision(crate::decision::Decision::Error);
            return bad_request(StatusCode::BAD_REQUEST, e.kind(), decode_message(&e));
        }
    };
    let now = jiff::Timestamp::now();
    let review = match tokio::time::timeout_at(deadline, state.admitter.admit(&decoded, now)).await {
        Ok(outcome) => outcome.review,
        Err(_) => {
            state.admitter.metrics.decision(crate::decision::Decision::Error);
            tracing::warn!(uid = %decoded.uid, deadline_ms = state.deadline.as_millis() as u64, "admission deadline exceeded; allowing unchanged");
            respond::allow(
                &decoded.uid,
                &[],
                &[format!("stepcache: no decision within {:?}; pod admitted unchanged", state.deadline)],
            )
        }
    };
    Json(review).into_response()
}

/// Query of `GET /latch`.
#[derive(serde::Deserialize)]
struct LatchQuery {
    token: String,
}

async fn latch(State(state): State<Arc<AppState>>, q: axum::extract::Query<LatchQuery>) -> Response {
    match state.admitter.poll_latch(&q.token, jiff::Timestamp::now()).await {
        Ok(a) => Json(a).into_response(),
        Err(e @ crate::admission::latch::LatchError::Disabled) => {
            bad_request(StatusCode::NOT_FOUND, e.kind(), e.to_string())
        }
        Err(e) => bad_request(StatusCode::FORBIDDEN, e.kind(), e.to_string()),
    }
}

fn decode_message(e: &DecodeError) -> String {
    e.to_string()
}

/// Waits for SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
