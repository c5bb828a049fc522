//! stepcache: step-level execution caching for Argo Workflows, as a mutating admission webhook.
//!
//! Layers (imports only point down):
//! 0 `types`, `duration` → 1 (pure) `argo`, `key`, `policy`, `mark`, `rewrite` → 2 `store` →
//! 3 `admission`, `recorder` → 4 `server`, `listener`, `tls`, `k8s`, `metrics`, `config`, `cli`.
//! The load generator is its own binary, `stepcache-bench` (src/bin), on top of this library.
#![forbid(unsafe_code)]

pub mod admission;
pub mod cli;
pub mod config;
pub mod integrity;
pub mod k8s;
pub mod listener;
pub mod metrics;
pub mod progress;
pub mod recorder;
pub mod server;
pub mod status;
pub mod store;
pub mod supervise;
pub mod telemetry;
pub mod tls;
pub mod why;

pub use stepcache_core::{argo, assess, decision, duration, execution, key, mark, policy, rewrite, types};
