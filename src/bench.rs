//! `stepcache bench`: an open-loop load generator for `/mutate` over real TLS.
//!
//! It starts two servers from this same binary on loopback — the no-op baseline (`serve --noop`:
//! same TLS, HTTP and JSON path, always "allow, no patch") and the real decision path against
//! the chosen store — fills the store, then alternates short phases between them so machine
//! noise hits both, and reports every figure as a ratio to the baseline.

use crate::argo::template::{classify, Classification};
use crate::store::{Execution, Store, StoreOptions};
use crate::types::{OutputParameter, StepOutputs};
use anyhow::{anyhow, bail, Context};
use clap::Args;
use serde::Serialize;
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Load generator flags.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Requests per second per phase (open loop: sent on schedule, latency measured from the
    /// scheduled send time); 0 = closed loop at max throughput with `--concurrency` workers.
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// Workers in closed-loop mode; in-flight cap in open-loop mode.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Requests per server (split over the phases).
    #[arg(long, default_value_t = 10_000)]
    pub requests: usize,
    /// Phases per server (baseline and subject alternate).
    #[arg(long, default_value_t = 4)]
    pub phases: usize,
    /// Store of the subject server (`sqlite://...` or `postgres://...`); default: a temp SQLite file.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Synthetic entries to load before measuring.
    #[arg(long, default_value_t = 10_000)]
    pub fill: u64,
    /// Traffic mix: `miss` (fresh keys), `hit` (pre-recorded keys) or `mixed` (half each).
    #[arg(long, default_value = "mixed")]
    pub mix: String,
    /// Skip the store fill (reuse a filled database).
    #[arg(long)]
    pub no_fill: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The stepcache binary to start the servers from (default: this executable).
    #[arg(long)]
    pub server_binary: Option<std::path::PathBuf>,
    /// Instead of the HTTP comparison: time this many direct store lookups of existing keys
    /// (after the fill), reporting p50/p99.
    #[arg(long)]
    pub store_lookups: Option<usize>,
    /// Instead of the HTTP comparison: record this many succeeded step pods through the
    /// recorder (16 at a time) and report completions per second.
    #[arg(long)]
    pub record: Option<usize>,
}

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
    /// The no-op baseline.
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

const FIXTURE: &str = include_str!("../tests/fixtures/argo/v3.3-container-params.admission.json");

/// Builds `n` distinct admission bodies (distinct uids and keys) from a real Argo 3.3 fixture.
pub fn bodies(n: usize, prefix: &str) -> anyhow::Result<Vec<Value>> {
    let base: Value = serde_json::from_str(FIXTURE)?;
    (0..n)
        .map(|i| {
            let mut v = base.clone();
            let uid = format!("{prefix}-{i}");
            *v.pointer_mut("/request/uid").ok_or_else(|| anyhow!("fixture has no uid"))? = Value::String(uid);
            let containers = v
                .pointer_mut("/request/object/spec/containers")
                .and_then(Value::as_array_mut)
                .ok_or_else(|| anyhow!("fixture has no containers"))?;
            for c in containers.iter_mut() {
                if c.get("name").and_then(Value::as_str) == Some("main") {
                    if let Some(args) = c.get_mut("args").and_then(Value::as_array_mut) {
                        args.push(Value::String(format!("--bench-variant={prefix}-{i}")));
                    }
                }
            }
            Ok(v)
        })
        .collect()
}

/// Records an entry for each body so that admitting it again is a hit.
pub async fn record_hits(store: &Store, bodies: &[Value], now: jiff::Timestamp) -> anyhow::Result<()> {
    for (i, b) in bodies.iter().enumerate() {
        let pod = crate::cli::pod_from_json(&serde_json::to_vec(b)?)?;
        let Classification::Step(step) = classify(&pod) else { bail!("fixture is not a step pod") };
        let km = crate::key::derive_key(&pod, &step, &Default::default(), crate::key::Scope::Namespace)
            .map_err(|e| anyhow!("{e}"))?;
        let declared = step.template.declared_outputs();
        let outputs = StepOutputs {
            parameters: declared
                .parameters
                .iter()
                .map(|p| OutputParameter { name: p.clone(), value: Some("42".into()), rest: Default::default() })
                .collect(),
            ..Default::default()
        };
        let finished = now.checked_sub(jiff::SignedDuration::from_secs(60)).unwrap_or(now);
        store
            .record(
                &Execution {
                    namespace: step.namespace.clone(),
                    key: km.key,
                    seed: Default::default(),
                    staleness: crate::types::Staleness::Unbounded,
                    outputs,
                    material: km.material,
                    template_name: step.template.name().to_owned(),
                    workflow_name: step.workflow_name.clone(),
                    workflow_uid: step.workflow_uid.clone().unwrap_or_default(),
                    node_id: step.node_id.clone(),
                    pod_name: format!("bench-{i}"),
                    pod_uid: format!("bench-hit-{i}"),
                    image_digests: Default::default(),
                    images: Default::default(),
                    started_at: finished.checked_sub(jiff::SignedDuration::from_secs(120)).unwrap_or(finished),
                    finished_at: finished,
                    expires_at: None,
                },
                now,
            )
            .await?;
    }
    Ok(())
}

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

async fn spawn_server(exe: &Path, certs: &Path, db: &str, noop: bool, key_file: &Path) -> anyhow::Result<Child> {
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
    if noop {
        cmd.arg("--noop");
    }
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

/// An HTTPS client that trusts the bench CA.
pub fn client(certs: &Path) -> anyhow::Result<reqwest::Client> {
    let ca = std::fs::read(certs.join("ca.crt"))?;
    Ok(reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(10))
        .build()?)
}

#[derive(Default)]
struct PhaseResult {
    latencies: Vec<Duration>,
    errors: usize,
    patched: usize,
    elapsed: Duration,
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

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted.get(idx.min(sorted.len() - 1)).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
}

fn side(results: &[PhaseResult], rss: f64) -> Side {
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

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        (a / b * 100.0).round() / 100.0
    } else {
        0.0
    }
}

/// Runs the benchmark and returns the report (also used by the smoke test).
pub async fn measure(args: &BenchArgs, workdir: &Path) -> anyhow::Result<Report> {
    crate::cli::serve::install_crypto();
    let certs = workdir.join("certs");
    crate::tls::generate(&certs, &["127.0.0.1".into(), "localhost".into()])?;
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
    let exe = match &args.server_binary {
        Some(p) => p.clone(),
        None => std::env::current_exe()?,
    };
    let baseline = spawn_server(&exe, &certs, &db, true, &key_file).await?;
    let subject = spawn_server(&exe, &certs, &db, false, &key_file).await?;
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
        ratio_p50: ratio(s.p50_ms, b.p50_ms),
        ratio_p99: ratio(s.p99_ms, b.p99_ms),
        ratio_throughput: ratio(s.throughput_rps, b.throughput_rps),
        baseline: b,
        subject: s,
    })
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
    out.push_str(&crate::cli::entries::render(&[
        ["server", "requests", "errors", "patched", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "rps", "RSS MiB"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        row("baseline (noop)", &r.baseline),
        row("stepcache", &r.subject),
    ]));
    out.push_str(&format!(
        "ratios vs baseline: p50 {:.2}x  p99 {:.2}x  throughput {:.2}x\n",
        r.ratio_p50, r.ratio_p99, r.ratio_throughput
    ));
    out
}

/// Rows per fill statement when reporting progress: large enough that the per-statement cost
/// is noise, small enough for a line every few seconds.
const FILL_CHUNK: u64 = 100_000;

/// [`Store::fill_synthetic`] in chunks, reporting progress (keys stay distinct and numbered on
/// across chunks, since each chunk starts after the namespace's existing rows).
pub async fn fill_with_progress(store: &Store, n: u64, ns: &str) -> anyhow::Result<u64> {
    let mut progress = crate::cli::progress::Reporter::new("fill", "rows", Some(n));
    let mut done = 0u64;
    while done < n {
        done += store.fill_synthetic(FILL_CHUNK.min(n - done), ns, true, jiff::Timestamp::now()).await?;
        progress.update(done);
    }
    progress.finish(done);
    Ok(done)
}

/// Direct store lookup latency after the fill: (p50 ms, p99 ms, lookups).
pub async fn measure_lookups(args: &BenchArgs, n: usize) -> anyhow::Result<serde_json::Value> {
    let db = args.database_url.clone().ok_or_else(|| anyhow!("--store-lookups needs --database-url"))?;
    let store = Store::connect(&db, StoreOptions { timeout: Duration::from_secs(3600), max_connections: 4 }).await?;
    store.migrate().await?;
    let ns = "bench-lookup";
    let t = Instant::now();
    if !args.no_fill && args.fill > 0 {
        fill_with_progress(&store, args.fill, ns).await?;
    }
    let fill_s = t.elapsed().as_secs_f64();
    let now = jiff::Timestamp::now();
    let mut lat = Vec::with_capacity(n);
    let total = args.fill.max(1);
    // Warm the pool and the statement cache.
    for i in 0..50u64 {
        store.lookup(&crate::store::synthetic_key(ns, i % total), crate::types::Staleness::Unbounded, now).await?;
    }
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = crate::store::synthetic_key(ns, x % total);
        let t = Instant::now();
        let hit = store.lookup(&key, crate::types::Staleness::Unbounded, now).await?;
        lat.push(t.elapsed());
        if hit.is_none() {
            bail!("synthetic key {key} not found: was the fill done with this namespace?");
        }
    }
    lat.sort();
    Ok(serde_json::json!({
        "backend": format!("{:?}", store.backend()),
        "rows_filled": args.fill,
        "fill_seconds": fill_s,
        "lookups": n,
        "p50_ms": percentile(&lat, 50.0),
        "p99_ms": percentile(&lat, 99.0),
        "p999_ms": percentile(&lat, 99.9),
    }))
}

/// Recorder throughput: `n` distinct succeeded, marked pods recorded 16 at a time.
pub async fn measure_recording(args: &BenchArgs, n: usize) -> anyhow::Result<serde_json::Value> {
    use crate::recorder::assess::{OutputSources, RecordSettings};
    use crate::recorder::{Attempt, Recorder};
    let db = args.database_url.clone().ok_or_else(|| anyhow!("--record needs --database-url"))?;
    let store = Store::connect(&db, StoreOptions { timeout: Duration::from_secs(60), max_connections: 16 }).await?;
    store.migrate().await?;
    let signer = crate::mark::Signer::new(b"bench-signing-key-0123456789abcdef").map_err(|e| anyhow!("{e}"))?;
    let policy = crate::policy::AdminPolicy::default();
    let admitter = crate::admission::Admitter {
        config: Arc::new(crate::admission::AdmitConfig { admin: policy, ..Default::default() }),
        store: store.clone(),
        signer: signer.clone(),
        ports: crate::admission::Ports::offline(),
        metrics: Arc::new(crate::metrics::Metrics::new()),
    };
    // Admit (miss → marked pod), then turn each into the pod and task result of a success.
    let prefix = format!("rec{}", jiff::Timestamp::now().as_millisecond());
    let mut work = Vec::with_capacity(n);
    for (i, b) in bodies(n, &prefix)?.into_iter().enumerate() {
        let d = crate::admission::decode::decode(&serde_json::to_vec(&b)?).map_err(|e| anyhow!("{e}"))?;
        let out = admitter.admit(&d, jiff::Timestamp::now()).await;
        let mut pod = b.pointer("/request/object").cloned().unwrap_or_default();
        let patch: Vec<json_patch::PatchOperation> = serde_json::from_value(serde_json::to_value(&out.explain.patch)?)?;
        json_patch::patch(&mut pod, &patch)?;
        let names: Vec<String> = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .map(|cs| cs.iter().filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_owned)).collect())
            .unwrap_or_default();
        let statuses: Vec<Value> = names.iter().map(|c| serde_json::json!({"name": c, "ready": false, "restartCount": 0, "image": "i",
            "imageID": "docker.io/i@sha256:00", "state": {"terminated": {"exitCode": 0, "startedAt": "2026-11-01T10:00:00Z", "finishedAt": "2026-11-01T10:01:00Z"}}})).collect();
        if let Some(o) = pod.as_object_mut() {
            o.insert("status".into(), serde_json::json!({"phase": "Succeeded", "startTime": "2026-11-01T10:00:00Z", "containerStatuses": statuses}));
        }
        if let Some(m) = pod.pointer_mut("/metadata").and_then(Value::as_object_mut) {
            m.insert("uid".into(), Value::String(format!("{prefix}-uid-{i}")));
        }
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(pod)?;
        let Classification::Step(step) = classify(&pod) else { bail!("fixture is not a step pod") };
        let declared = step.template.declared_outputs();
        let params: Vec<Value> =
            declared.parameters.iter().map(|p| serde_json::json!({"name": p, "value": i.to_string()})).collect();
        let arts: Vec<Value> = declared
            .artifacts
            .iter()
            .map(|(a, _)| serde_json::json!({"name": a, "s3": {"key": format!("{prefix}/{i}/{a}.tgz")}}))
            .collect();
        let outputs = serde_json::json!({"parameters": params, "artifacts": arts});
        work.push((pod, outputs));
    }
    let recorder = Recorder {
        store,
        signer,
        settings: Arc::new(RecordSettings { scope: Default::default(), default_expiry: None }),
        metrics: Arc::new(crate::metrics::Metrics::new()),
        tags: Default::default(),
    };
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (pod, outputs) in work {
        let r = recorder.clone();
        let permit = sem.clone().acquire_owned().await?;
        tasks.spawn(async move {
            let node = pod.metadata.annotations.as_ref().and_then(|a| a.get(crate::argo::labels::NODE_ID_ANNOTATION).cloned()).unwrap_or_default();
            let wf = pod.metadata.labels.as_ref().and_then(|l| l.get(crate::argo::labels::WORKFLOW_LABEL).cloned()).unwrap_or_default();
            let owners: Vec<Value> = pod.metadata.owner_references.iter().flatten().map(|o| serde_json::json!({"apiVersion": o.api_version, "kind": o.kind, "name": o.name, "uid": o.uid})).collect();
            let tr = serde_json::json!({"metadata": {"name": node, "namespace": pod.metadata.namespace, "ownerReferences": owners,
                "labels": {crate::argo::labels::REPORT_OUTPUTS_COMPLETED: "true", crate::argo::labels::WORKFLOW_LABEL: wf}}, "outputs": outputs});
            let a = r.record(&pod, &OutputSources { task_result: Some(&tr), workflow: None }, jiff::Timestamp::now()).await;
            drop(permit);
            matches!(a, Attempt::Recorded(_))
        });
    }
    let mut ok = 0usize;
    while let Some(j) = tasks.join_next().await {
        if matches!(j, Ok(true)) {
            ok += 1;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    Ok(serde_json::json!({"recorded": ok, "attempted": n, "seconds": secs, "per_second": ok as f64 / secs}))
}

/// Runs the benchmark from the command line.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(n) = args.store_lookups {
        println!("{}", serde_json::to_string_pretty(&measure_lookups(&args, n).await?)?);
        return Ok(());
    }
    if let Some(n) = args.record {
        println!("{}", serde_json::to_string_pretty(&measure_recording(&args, n).await?)?);
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("stepcache-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let report = measure(&args, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}
