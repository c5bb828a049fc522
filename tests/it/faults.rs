//! Fault behaviour with the real parts: a Postgres outage through a proxy we control, lost
//! recordings, certificate rotation under load, SIGTERM with requests in flight.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::harness::*;
use crate::hitpath::recorder;
use crate::webhook::start;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stepcache::admission::Ports;
use stepcache::recorder::watch::{process, Tracker};
use stepcache::store::{EntryFilter, Store, StoreOptions};
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy to Postgres that can be cut (connections dropped, new ones black-holed).
pub struct Proxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    pub async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let paused = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (u, c, pz) = (up.clone(), conns.clone(), paused.clone());
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else { return };
                let u = u.clone();
                let pz = pz.clone();
                let target = target.clone();
                let h = tokio::spawn(async move {
                    if !u.load(Ordering::SeqCst) {
                        // Black hole: hold the socket, never answer.
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        return;
                    }
                    if let Ok(out) = TcpStream::connect(&target).await {
                        let (ri, wi) = inbound.into_split();
                        let (ro, wo) = out.into_split();
                        // Not spawned: aborting this task must close both directions.
                        tokio::join!(pump(ri, wo, pz.clone()), pump(ro, wi, pz));
                    }
                });
                c.lock().unwrap().push(h.abort_handle());
            }
        });
        Proxy { port, up, paused, conns }
    }

    /// Keeps every connection open but stops moving bytes: calls hang instead of failing.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    /// Moves bytes again.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    /// Cuts every connection and black-holes new ones.
    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Copies one direction, holding data back while `paused`.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    paused: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while paused.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

fn via_proxy(url: &str, port: u16) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (auth_host, path) = rest.split_once('/').unwrap();
    let auth = auth_host.rsplit_once('@').map(|(a, _)| format!("{a}@")).unwrap_or_default();
    format!("{scheme}://{auth}127.0.0.1:{port}/{path}")
}

fn pg_target() -> String {
    let url = crate::pg::admin_url();
    let rest = url.split_once("://").unwrap().1;
    let host = rest.split_once('/').unwrap().0;
    let host = host.rsplit_once('@').map(|(_, h)| h).unwrap_or(host);
    if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    }
}

#[tokio::test]
async fn a_postgres_outage_fails_open_within_the_deadline_and_service_resumes() {
    let Some(db) = crate::pg::database().await else { return };
    let proxy = Proxy::start(pg_target()).await;
    let url = via_proxy(&db.url, proxy.port);
    let store =
        Store::connect(&url, StoreOptions { timeout: Duration::from_millis(500), max_connections: 4 }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let deadline = Duration::from_secs(2);
    let s = start(admitter(store, config(), Ports::default()), dir.path(), deadline, 1 << 22).await;
    let review = fixture("v3.6-container-params.admission.json");
    let (st, body) = s.post(&review).await;
    assert_eq!(st, 200);
    assert!(body["response"]["patch"].is_string(), "healthy store: marked miss");

    proxy.down();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let c = s.client.clone();
        let url = s.url("/mutate");
        let r = rerun(&review, &format!("out{i}")).to_string();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let resp = c.post(url).header("content-type", "application/json").body(r).send().await.unwrap();
            (t.elapsed(), resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }));
    }
    let mut worst = Duration::ZERO;
    for t in tasks {
        let (elapsed, status, body) = t.await.unwrap();
        worst = worst.max(elapsed);
        assert_eq!(status, 200);
        assert_eq!(body["response"]["allowed"], true);
        assert!(body["response"].get("patch").is_none(), "allowed unchanged during the outage");
        let w = body["response"]["warnings"][0].as_str().unwrap_or_default().to_owned();
        assert!(w.contains("cache unavailable") || w.contains("no decision within"), "{w}");
    }
    assert!(worst < deadline + Duration::from_millis(500), "answered within the deadline: worst {worst:?}");
    eprintln!("outage: 20 admissions answered allowed-unchanged, worst latency {worst:?} (deadline {deadline:?})");
    let ready = s.client.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let m = s.metrics().await;
    assert!(m.contains("stepcache_store_errors_total{op=\"lookup\""), "{m}");
    assert!(m.contains("stepcache_admission_requests_total{decision=\"error\"}"), "{m}");

    proxy.restore();
    let t = Instant::now();
    loop {
        let (st, body) = s.post(&rerun(&review, "back")).await;
        if st == 200 && body["response"]["patch"].is_string() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "service did not resume: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(s.client.get(s.url("/readyz")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn completions_during_a_store_outage_are_recorded_exactly_once_afterwards() {
    let Some(db) = crate::pg::database().await else { return };
    let proxy = Proxy::start(pg_target()).await;
    let store = Store::connect(
        &via_proxy(&db.url, proxy.port),
        StoreOptions { timeout: Duration::from_millis(500), max_connections: 4 },
    )
    .await
    .unwrap();
    let a = admitter(store.clone(), config(), Ports::offline());
    let r = recorder(store.clone());
    let review = fixture("v3.6-container-params.admission.json");
    let mut tracker = Tracker::default();
    let n = 30;
    // Admit n distinct steps while the store is up (each a marked miss).
    let mut done_pods = Vec::new();
    for i in 0..n {
        let mut run = rerun(&review, &format!("c{i}"));
        for c in run["request"]["object"]["spec"]["containers"].as_array_mut().unwrap() {
            if c["name"] == "main" {
                c["args"].as_array_mut().unwrap().push(serde_json::json!(format!("--shard={i}")));
            }
        }
        let (resp, ex) = admit(&a, &run, ts("2026-11-01T10:00:00Z")).await;
        assert_eq!(ex["decision"], "miss");
        done_pods.push(succeeded(
            &patched_pod(&run, &resp),
            &format!("uid-{i}"),
            "2026-11-01T10:00:00Z",
            "2026-11-01T10:01:00Z",
        ));
    }
    // Completions stream in; the store goes down a third of the way through.
    for (i, done) in done_pods.into_iter().enumerate() {
        if i == n / 3 {
            proxy.down();
        }
        tracker.on_task_result(task_result_for(&done, &i.to_string()));
        let p: Pod = serde_json::from_value(done).unwrap();
        let uid = tracker.on_pod(p, i % 2 == 0).unwrap();
        process(&mut tracker, &r, None, &uid, false).await;
    }
    assert!(!tracker.is_empty(), "completions during the outage stay pending");
    proxy.restore();
    let t = Instant::now();
    while !tracker.is_empty() {
        let (live, _) = tracker.pending(Duration::from_secs(3600));
        for uid in live {
            process(&mut tracker, &r, None, &uid, false).await;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "pending never drained");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = db.store.list(&EntryFilter::default(), 1000).await.unwrap();
    assert_eq!(rows.len(), n, "every completion recorded exactly once");
    let mut seen: Vec<String> = rows.iter().map(|e| e.run.pod_uid.clone()).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), n);
    eprintln!("store outage during {n} completions: {} recorded, 0 lost, 0 duplicated", rows.len());
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_restart_and_without_failed_requests() {
    let dir = tempfile::tempdir().unwrap();
    stepcache::cli::serve::install_crypto();
    let live = dir.path().join("certs");
    stepcache::tls::generate(&live, &["127.0.0.1".into()]).unwrap();
    let next = stepcache::tls::generate(&dir.path().join("next"), &["127.0.0.1".into()]).unwrap();
    let a = admitter(sqlite_store(dir.path()).await, config(), Ports::default());
    let metrics = a.metrics.clone();
    let tls = stepcache::tls::load(&live.join("tls.crt"), &live.join("tls.key")).await.unwrap();
    tokio::spawn(stepcache::tls::reload_loop(
        tls.clone(),
        live.join("tls.crt"),
        live.join("tls.key"),
        Duration::from_millis(100),
        metrics.clone(),
    ));
    let app = stepcache::server::router(
        stepcache::server::AppState { admitter: a, deadline: Duration::from_secs(4) },
        1 << 22,
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let s2 = listener.local_addr().unwrap();
    let limits = stepcache::listener::Limits::default();
    tokio::spawn(stepcache::listener::serve_https(listener, tls, app, limits, std::future::pending(), Duration::ZERO));
    let both = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(live.join("ca.crt")).unwrap()).unwrap())
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&next.ca_cert).unwrap()).unwrap())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let only_new = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&next.ca_cert).unwrap()).unwrap())
        .build()
        .unwrap();
    let url = format!("https://{s2}/mutate");
    assert!(only_new.get(format!("https://{s2}/healthz")).send().await.is_err(), "new CA not trusted yet");
    let body = fixture("v3.3-container-params.admission.json").to_string();
    let load = {
        let (c, url, body) = (both.clone(), url.clone(), body.clone());
        tokio::spawn(async move {
            let mut failed = 0;
            let mut ok = 0;
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(2) {
                match c.post(&url).header("content-type", "application/json").body(body.clone()).send().await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    _ => failed += 1,
                }
            }
            (ok, failed)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Swap files the way a Secret update lands: write aside, then rename over.
    for f in ["tls.key", "tls.crt"] {
        std::fs::copy(next.cert.parent().unwrap().join(f), live.join(format!("{f}.tmp"))).unwrap();
        std::fs::rename(live.join(format!("{f}.tmp")), live.join(f)).unwrap();
    }
    let (ok, failed) = load.await.unwrap();
    assert_eq!(failed, 0, "no failed requests during rotation ({ok} ok)");
    eprintln!("certificate rotation under load: {ok} requests, {failed} failed");
    assert!(ok > 20);
    let r = only_new.get(format!("https://{s2}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "the rotated certificate is served");
    assert!(metrics.encode().contains("stepcache_cert_reloads_total{reason=\"ok\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish() {
    // A black-holed Postgres holds the admission in flight (up to the 3 s store timeout)
    // while SIGTERM arrives; the request must still be answered and the process exit 0.
    let Some(db) = crate::pg::database().await else { return };
    let proxy = Proxy::start(pg_target()).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let certs = stepcache::tls::generate(&d.join("certs"), &["127.0.0.1".into()]).unwrap();
    let (mut child, client, base) = start_serve(
        d,
        &certs,
        &["--store-timeout", "3s", "--request-deadline", "4s", "--database-url", &via_proxy(&db.url, proxy.port)],
    )
    .await;
    proxy.pause();
    let req = {
        let c = client.clone();
        let url = format!("{base}/mutate");
        let body = fixture("v3.6-container-params.admission.json").to_string();
        tokio::spawn(async move {
            let t = Instant::now();
            let r = c.post(url).header("content-type", "application/json").body(body).send().await;
            (t.elapsed(), r)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let (elapsed, resp) = req.await.unwrap();
    let resp = resp.expect("the in-flight request is answered");
    assert_eq!(resp.status(), 200);
    assert!(elapsed > Duration::from_secs(1), "the request really was in flight during SIGTERM ({elapsed:?})");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["response"]["allowed"], true);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
    eprintln!("SIGTERM with a request in flight for {elapsed:?}: answered 200, exit {status}");
    proxy.resume();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hit_counts_are_flushed_on_sigterm() {
    // Hit counts are batched every 5 s; SIGTERM right after a hit must still write it.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let certs = stepcache::tls::generate(&d.join("certs"), &["127.0.0.1".into()]).unwrap();
    let body = crate::client::reviews(1, "flush").remove(0);
    let url = format!("sqlite://{}", d.join("stepcache.db").display());
    {
        let store = sqlite_store(d).await;
        crate::client::record_hits(&store, std::slice::from_ref(&body), jiff::Timestamp::now()).await;
        store.close().await;
    }
    let (mut child, client, base) = start_serve(d, &certs, &["--database-url", &url, "--recorder", "false"]).await;
    let r = client.post(format!("{base}/mutate")).header("content-type", "application/json").body(body.to_string());
    let review: Value = r.send().await.unwrap().json().await.unwrap();
    let pod = patched_pod(&body, &review);
    assert_eq!(pod["metadata"]["labels"]["stepcache.dev/decision"], "hit", "{review}");
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
    let store = sqlite_store(d).await;
    let hits: i64 = store.list(&EntryFilter::default(), 10).await.unwrap().iter().map(|e| e.hit_count).sum();
    assert_eq!(hits, 1, "the hit counted before SIGTERM was written");
}

/// Starts the real `stepcache serve` in `d` with the generated `certs` and `extra` flags (no
/// metrics listener, no Kubernetes API) and waits until `/readyz` answers 200.
async fn start_serve(
    d: &std::path::Path,
    certs: &stepcache::tls::GeneratedCerts,
    extra: &[&str],
) -> (tokio::process::Child, reqwest::Client, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_stepcache"))
        .current_dir(d)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--metrics-listen", "", "--kube", "off"])
        .args(extra)
        .arg("--tls-cert")
        .arg(&certs.cert)
        .arg("--tls-key")
        .arg(&certs.key)
        .env("STEPCACHE_LOG", "warn")
        .spawn()
        .unwrap();
    let client = crate::client::https_client(&d.join("certs"));
    let base = format!("https://127.0.0.1:{port}");
    let t = Instant::now();
    while client.get(format!("{base}/readyz")).send().await.map(|r| r.status() != 200).unwrap_or(true) {
        assert!(t.elapsed() < Duration::from_secs(30), "server did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, client, base)
}
