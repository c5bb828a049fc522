//! stepcache: step-level execution caching for Argo Workflows, as a mutating admission webhook.
//!
//! The service crate: the decision core (`stepcache-core`, re-exported here under its own module
//! names) with the I/O around it. Layers (imports only point down): core → 3 ports `store`,
//! `k8s`, `integrity::check` → 4 services `admission`, `recorder` → 5 edges `server`,
//! `listener`, `tls`, `metrics`, `telemetry`, `status`, `why`, `supervise`, `config`, `cli`.
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
pub mod refusal;
pub mod server;
pub mod status;
pub mod store;
pub mod supervise;
pub mod telemetry;
pub mod tls;
pub mod why;

pub use stepcache_core::{argo, assess, decision, duration, execution, key, mark, policy, rewrite, types};
