//! The decision core of stepcache: everything that decides, nothing that waits.
//!
//! Layers (imports only point down): 0 `types`, `duration` → 1 `argo` (Argo's pod contract per
//! version), `key`, `moving`, `policy`, `mark`, `hitpod`, `rewrite`, `trust`, `decision`, `execution`, `integrity` → 2
//! `assess` (whether a finished pod is recorded). Every function takes values and returns
//! values: no clock, no environment, no I/O, no logging. This crate's manifest has no async
//! runtime, database, Kubernetes client, HTTP or CLI dependency, so the compiler keeps it so.
#![forbid(unsafe_code)]

pub mod argo;
pub mod assess;
pub mod decision;
pub mod duration;
pub mod execution;
pub mod hitpod;
pub mod integrity;
pub mod key;
pub mod mark;
pub mod moving;
pub mod policy;
pub mod refusal;
pub mod rewrite;
pub mod trust;
pub mod types;
