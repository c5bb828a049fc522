#[path = "it/chart.rs"]
mod chart;
