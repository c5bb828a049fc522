//! I/O tests in one binary: TLS webhook, stores, CLI, recorder, faults, chart.
mod architecture;
mod bad_input;
mod bench_smoke;
mod chart;
mod cli;
mod faults;
mod harness;
mod hitpath;
mod hostile;
mod k8s;
mod latch;
mod pg;
mod recorder;
mod store;
mod support;
mod watch;
mod webhook;
