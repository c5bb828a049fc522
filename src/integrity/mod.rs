//! Integrity of what a hit serves: output artifacts that still exist, and image tags that have
//! not moved since the entry ran.
//!
//! Owns: the pure decisions (`artifacts`, `images`, `sigv4`) and the bounded I/O that feeds
//! them (`check`: HEAD requests with credentials from Secrets, under a per-hit budget).

pub mod check;

pub use stepcache_core::integrity::{artifacts, images, sigv4};
