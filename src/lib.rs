//! stepcache: step-level execution caching for Argo Workflows, as a mutating admission webhook.
//!
//! Layers (imports only point down):
//! 0 `types`, `duration` → 1 (pure) `argo`, `key`, `policy`, `mark`, `rewrite` → 2 `store` →
//! 3 `admission`, `recorder` → 4 `server`, `listener`, `tls`, `k8s`, `metrics`, `config`, `cli`, `bench`.
#![forbid(unsafe_code)]

pub mod admission;
pub mod argo;
pub mod bench;
pub mod cli;
pub mod config;
pub mod duration;
pub mod integrity;
pub mod k8s;
pub mod key;
pub mod listener;
pub mod mark;
pub mod metrics;
pub mod policy;
pub mod progress;
pub mod recorder;
pub mod rewrite;
pub mod server;
pub mod status;
pub mod store;
pub mod supervise;
pub mod telemetry;
pub mod tls;
pub mod types;
pub mod why;
