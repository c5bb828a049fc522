//! The comparison's report: per-server latency, throughput and memory, and the subject's
//! ratios to the baseline, as JSON or a table.

use serde::Serialize;
use std::time::Duration;

/// Latency and throughput of one server over all its phases.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Side {
    /// Requests sent.
    pub requests: usize,
    /// Non-2xx or transport errors.
    pub errors: usize,
    /// Responses that carried a patch.
    pub patched: usize,
    /// Percentiles in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Completed requests per second of phase time.
    pub throughput_rps: f64,
    /// Peak resident memory of the server process, MiB.
    pub rss_mib: f64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// Settings echoed.
    pub rate: u32,
    /// Entries in the subject store.
    pub entries: u64,
    /// Traffic mix.
    pub mix: String,
    /// Which baseline: `noop` or `floor` (the no-op plus one store lookup).
    pub baseline_kind: String,
    /// The baseline server.
    pub baseline: Side,
    /// The real decision path.
    pub subject: Side,
    /// subject / baseline.
    pub ratio_p50: f64,
    /// subject / baseline.
    pub ratio_p99: f64,
    /// subject / baseline.
    pub ratio_throughput: f64,
}

/// The `p`th percentile of sorted latencies, in milliseconds (0 when there are none).
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted.get(idx.min(sorted.len() - 1)).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
}

/// One server's figures over all its phases.
pub fn side(results: &[crate::compare::PhaseResult], rss: f64) -> Side {
    let mut lat: Vec<Duration> = results.iter().flat_map(|r| r.latencies.iter().copied()).collect();
    lat.sort();
    let elapsed: f64 = results.iter().map(|r| r.elapsed.as_secs_f64()).sum();
    Side {
        requests: lat.len() + results.iter().map(|r| r.errors).sum::<usize>(),
        errors: results.iter().map(|r| r.errors).sum(),
        patched: results.iter().map(|r| r.patched).sum(),
        p50_ms: percentile(&lat, 50.0),
        p90_ms: percentile(&lat, 90.0),
        p99_ms: percentile(&lat, 99.0),
        p999_ms: percentile(&lat, 99.9),
        throughput_rps: if elapsed > 0.0 { lat.len() as f64 / elapsed } else { 0.0 },
        rss_mib: rss,
    }
}

/// `a / b` to two decimals (0 when `b` is 0).
pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        (a / b * 100.0).round() / 100.0
    } else {
        0.0
    }
}

/// Renders a report as text.
pub fn render(r: &Report) -> String {
    let row = |name: &str, s: &Side| {
        vec![
            name.to_owned(),
            s.requests.to_string(),
            s.errors.to_string(),
            s.patched.to_string(),
            format!("{:.3}", s.p50_ms),
            format!("{:.3}", s.p90_ms),
            format!("{:.3}", s.p99_ms),
            format!("{:.3}", s.p999_ms),
            format!("{:.0}", s.throughput_rps),
            format!("{:.1}", s.rss_mib),
        ]
    };
    let mut out = format!("rate={} rps/phase  entries={}  mix={}\n", r.rate, r.entries, r.mix);
    out.push_str(&stepcache::cli::entries::render(&[
        ["server", "requests", "errors", "patched", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "rps", "RSS MiB"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        row(&format!("baseline ({})", r.baseline_kind), &r.baseline),
        row("stepcache", &r.subject),
    ]));
    out.push_str(&format!(
        "ratios vs baseline: p50 {:.2}x  p99 {:.2}x  throughput {:.2}x\n",
        r.ratio_p50, r.ratio_p99, r.ratio_throughput
    ));
    out
}
