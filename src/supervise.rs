//! Supervision of `serve`'s background loops (hit-count flush, gc, certificate reload): a loop
//! that ends or panics is logged, counted in `stepcache_background_restarts_total{task}` and
//! started again after a pause, so one bad iteration cannot silently stop gc or hit counting.

use crate::metrics::{Metrics, TaskLabel};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Runs `make()`'s loop in its own task and restarts it, after `pause`, whenever it stops.
/// Only aborting the returned handle ends the supervision.
pub fn supervise<F, Fut>(task: &'static str, metrics: Arc<Metrics>, pause: Duration, make: F) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let run = tokio::spawn(make());
            let why = match run.await {
                Ok(()) => "ended",
                Err(e) if e.is_panic() => "panicked",
                Err(_) => "was cancelled",
            };
            tracing::error!(task, "background loop {why}; restarting in {pause:?}");
            metrics.background_restarts.get_or_create(&TaskLabel { task: task.into() }).inc();
            tokio::time::sleep(pause).await;
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_loop_that_panics_is_counted_and_restarted() {
        let metrics = Arc::new(Metrics::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let h = supervise("test_loop", metrics.clone(), Duration::from_millis(10), move || {
            let r = r.clone();
            async move {
                if r.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("first iteration fails");
                }
                std::future::pending::<()>().await;
            }
        });
        tokio::time::timeout(Duration::from_secs(5), async {
            while runs.load(Ordering::SeqCst) < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the loop was restarted");
        h.abort();
        let text = metrics.encode();
        assert!(text.contains(r#"stepcache_background_restarts_total{task="test_loop"} 1"#), "{text}");
    }
}
