//! The HTTP comparison: the no-op baseline and the real decision path started from the
//! `stepcache` binary on loopback, the same requests sent to both in alternating phases.

use crate::args::BenchArgs;
use crate::report::{ratio, side, Report};
use crate::reviews::{bodies, record_hits};
use crate::store::fill_with_progress;
use anyhow::{bail, Context};
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stepcache::store::{Store, StoreOptions};

struct Child {
    proc: tokio::process::Child,
    addr: String,
}

impl Child {
    fn rss_mib(&self) -> f64 {
        let Some(pid) = self.proc.id() else { return 0.0 };
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn spawn_server(exe: &Path, certs: &Path, db: &str, baseline: &[&str], key_file: &Path) -> anyhow::Result<Child> {
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("serve")
        .args(["--listen", &addr, "--metrics-listen", ""])
        .arg("--tls-cert")
        .arg(certs.join("tls.crt"))
        .arg("--tls-key")
        .arg(certs.join("tls.key"))
        .args(["--database-url", db, "--kube", "off", "--recorder", "false", "--log", "warn"])
        .arg("--signing-key-file")
        .arg(key_file)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    cmd.args(baseline);
    let proc = cmd.spawn().context("starting server")?;
    let child = Child { proc, addr };
    let client = client(certs)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("https://{}/healthz", child.addr)).send().await {
            if r.status().is_success() {
                return Ok(child);
            }
        }
        if Instant::now() > deadline {
            bail!("server on {} did not become healthy", child.addr);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An HTTPS client that trusts the CA the servers' certificate was generated with.
pub fn client(certs: &Path) -> anyhow::Result<reqwest::Client> {
    let ca = std::fs::read(certs.join("ca.crt"))?;
    Ok(reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(10))
        .build()?)
}

/// What one phase against one server saw.
#[derive(Default)]
pub struct PhaseResult {
    pub latencies: Vec<Duration>,
    pub errors: usize,
    pub patched: usize,
    pub elapsed: Duration,
}

/// Sends `bodies` to `url`, open loop at `rate` (or closed loop when 0).
async fn phase(
    client: &reqwest::Client,
    url: &str,
    bodies: Vec<Vec<u8>>,
    rate: u32,
    concurrency: usize,
) -> PhaseResult {
    let start = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1) * if rate > 0 { 16 } else { 1 }));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, body) in bodies.into_iter().enumerate() {
        let scheduled = if rate > 0 {
            let at = start + Duration::from_secs_f64(i as f64 / f64::from(rate));
            tokio::time::sleep_until(at.into()).await;
            at
        } else {
            Instant::now()
        };
        let Ok(permit) = sem.clone().acquire_owned().await else { break };
        let client = client.clone();
        let url = url.to_owned();
        tasks.spawn(async move {
            let sent = if rate > 0 { scheduled } else { Instant::now() };
            let r = client.post(&url).header("content-type", "application/json").body(body).send().await;
            let out = match r {
                Ok(resp) if resp.status().is_success() => match resp.json::<Value>().await {
                    Ok(v) => Ok(v.pointer("/response/patch").is_some()),
                    Err(_) => Err(()),
                },
                _ => Err(()),
            };
            drop(permit);
            (sent.elapsed(), out)
        });
    }
    let mut res = PhaseResult::default();
    while let Some(j) = tasks.join_next().await {
        match j {
            Ok((lat, Ok(patched))) => {
                res.latencies.push(lat);
                if patched {
                    res.patched += 1;
                }
            }
            _ => res.errors += 1,
        }
    }
    res.elapsed = start.elapsed();
    res
}

/// Runs the comparison in `workdir` (certificates, signing key, default SQLite store) and
/// returns the report.
pub async fn measure(args: &BenchArgs, workdir: &Path) -> anyhow::Result<Report> {
    stepcache::cli::serve::install_crypto();
    let certs = workdir.join("certs");
    stepcache::tls::generate(&certs, &["127.0.0.1".into(), "localhost".into()])?;
    let key_file = workdir.join("signing.key");
    std::fs::write(&key_file, "bench-signing-key-0123456789abcdef")?;
    let db = args.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", workdir.join("bench.db").display()));
    let store = Store::connect(&db, StoreOptions { timeout: Duration::from_secs(600), max_connections: 4 }).await?;
    store.migrate().await?;
    let per_phase = (args.requests / args.phases.max(1)).max(1);
    let hits_needed = match args.mix.as_str() {
        "miss" => 0,
        "hit" => per_phase,
        "mixed" => per_phase / 2,
        other => bail!("--mix must be miss, hit or mixed, not {other:?}"),
    };
    let hit_bodies = bodies(hits_needed, "hit")?;
    if !args.no_fill {
        if args.fill > 0 {
            fill_with_progress(&store, args.fill, "bench").await?;
        }
        record_hits(&store, &hit_bodies, jiff::Timestamp::now()).await?;
    }
    drop(store);
    let exe = args.server_binary()?;
    let baseline_flags: &[&str] = if args.baseline == "floor" { &["--noop", "--noop-lookup"] } else { &["--noop"] };
    let baseline = spawn_server(&exe, &certs, &db, baseline_flags, &key_file).await?;
    let subject = spawn_server(&exe, &certs, &db, &[], &key_file).await?;
    let client = client(&certs)?;
    let mut base_res = Vec::new();
    let mut subj_res = Vec::new();
    // Warm both up (connections, statement caches) before measuring.
    for c in [&baseline, &subject] {
        let warm: Vec<Vec<u8>> =
            bodies(50, "warm")?.iter().map(|b| serde_json::to_vec(b).unwrap_or_default()).collect();
        phase(&client, &format!("https://{}/mutate", c.addr), warm, 0, 8).await;
    }
    for p in 0..args.phases.max(1) {
        let mut set: Vec<Value> = bodies(per_phase - hits_needed.min(per_phase), &format!("miss-{p}"))?;
        set.extend(hit_bodies.iter().cloned());
        // Interleave hits and misses.
        set.sort_by_key(|v| v.pointer("/request/uid").and_then(Value::as_str).map(|s| s.len() % 7).unwrap_or(0));
        let enc: Vec<Vec<u8>> = set.iter().map(|b| serde_json::to_vec(b).unwrap_or_default()).collect();
        let order: [(&Child, &mut Vec<PhaseResult>); 2] = if p % 2 == 0 {
            [(&baseline, &mut base_res), (&subject, &mut subj_res)]
        } else {
            [(&subject, &mut subj_res), (&baseline, &mut base_res)]
        };
        for (c, out) in order {
            out.push(
                phase(&client, &format!("https://{}/mutate", c.addr), enc.clone(), args.rate, args.concurrency).await,
            );
        }
    }
    let b = side(&base_res, baseline.rss_mib());
    let s = side(&subj_res, subject.rss_mib());
    Ok(Report {
        rate: args.rate,
        entries: args.fill + hits_needed as u64,
        mix: args.mix.clone(),
        baseline_kind: args.baseline.clone(),
        ratio_p50: ratio(s.p50_ms, b.p50_ms),
        ratio_p99: ratio(s.p99_ms, b.p99_ms),
        ratio_throughput: ratio(s.throughput_rps, b.throughput_rps),
        baseline: b,
        subject: s,
    })
}
