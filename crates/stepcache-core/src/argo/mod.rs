//! Argo's pod contract, version by version: labels, template extraction, outputs.
//!
//! Pure: must not import tokio, sqlx, axum or kube::Client.

pub mod contract;
pub mod exclusion;
pub mod labels;
pub mod offload;
pub mod outputs;
pub mod success;
pub mod template;
