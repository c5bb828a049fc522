//! Slow, idle and oversized clients against the webhook port: `TCP_NODELAY` on accepted
//! sockets, a client trickling its headers or never starting TLS is dropped within the header
//! timeout while real admissions succeed, a trickled body is answered within the request
//! deadline, connections beyond the bound wait for a free slot, and a miss on a pod with 20,000
//! env entries is explained within the deadline over HTTPS and through `stepcache review`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::harness::*;
use crate::webhook::start_with_limits;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stepcache::admission::Ports;
use stepcache::listener::{Limits, NoDelayListener};
use stepcache::server::DEFAULT_BODY_LIMIT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn accepted_sockets_have_tcp_nodelay_on_the_webhook_and_metrics_listeners() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let _client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (webhook_side, _) = stepcache::listener::accept(&l).await.unwrap();
    assert!(webhook_side.nodelay().unwrap(), "the webhook's accepted socket has TCP_NODELAY");

    let mut metrics = NoDelayListener(TcpListener::bind("127.0.0.1:0").await.unwrap());
    let _client = TcpStream::connect(metrics.0.local_addr().unwrap()).await.unwrap();
    let (metrics_side, _) = axum::serve::Listener::accept(&mut metrics).await;
    assert!(metrics_side.nodelay().unwrap(), "the metrics listener's accepted socket has TCP_NODELAY");
}

/// A TLS client connection trusting the test CA in `certs`.
async fn tls_connect(addr: SocketAddr, certs: &Path) -> tokio_rustls::client::TlsStream<TcpStream> {
    tls_connect_alpn(addr, certs, b"http/1.1").await
}

/// A TLS client connection offering one ALPN protocol.
async fn tls_connect_alpn(addr: SocketAddr, certs: &Path, alpn: &[u8]) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(certs.join("ca.crt")).unwrap();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector.connect("127.0.0.1".try_into().unwrap(), tcp).await.unwrap()
}

/// Writes `head`, then one byte of `drip` (if any) every 100 ms until the server closes the connection;
/// returns what the server sent and how long it held the connection (None: still open after 10 s).
async fn trickle<S>(mut s: S, head: &[u8], drip: Option<u8>) -> Option<(String, Duration)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let t = Instant::now();
    s.write_all(head).await.unwrap();
    s.flush().await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while t.elapsed() < Duration::from_secs(10) {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => return Some((String::from_utf8_lossy(&got).into_owned(), t.elapsed())),
                Ok(n) => got.extend_from_slice(&buf[..n]),
            },
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                if let Some(b) = drip {
                    if s.write_all(&[b]).await.is_ok() {
                        let _ = s.flush().await;
                    }
                }
            }
        }
    }
    None
}

/// Reads until the peer closes; returns how long that took (None: still open after 10 s).
async fn closed_within(mut s: TcpStream) -> Option<Duration> {
    let t = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(t.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_and_silent_clients_are_dropped_within_the_header_timeout_while_admissions_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let a = admitter(sqlite_store(dir.path()).await, config(), Ports::default());
    let limits = Limits { header_timeout: Duration::from_millis(500), ..Limits::default() };
    let s = start_with_limits(a, dir.path(), Duration::from_secs(4), DEFAULT_BODY_LIMIT, limits).await;

    // Finishes TLS, then sends its headers one byte every 100 ms, forever.
    let slow = tls_connect(s.addr, &dir.path().join("certs")).await;
    let slow =
        tokio::spawn(async move { trickle(slow, b"POST /mutate HTTP/1.1\r\nhost: x\r\nx-slow: ", Some(b'x')).await });
    // Connects and never starts TLS.
    let silent = tokio::spawn(closed_within(TcpStream::connect(s.addr).await.unwrap()));

    let t = Instant::now();
    let (status, body) = s.post(&fixture("v3.3-container-params.admission.json")).await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["allowed"], true);
    assert!(t.elapsed() < Duration::from_secs(2), "the admission was not held up: {:?}", t.elapsed());

    let (_, held) = slow.await.unwrap().expect("the slow-header client was disconnected");
    assert!(held < Duration::from_secs(3), "slow-header client held for {held:?}");
    let held = silent.await.unwrap().expect("the silent client was disconnected");
    assert!(held < Duration::from_secs(3), "silent client held for {held:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_never_finishes_its_headers_is_closed_at_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let a = admitter(sqlite_store(dir.path()).await, config(), Ports::default());
    let limits = Limits { idle_timeout: Duration::from_millis(500), ..Limits::default() };
    let s = start_with_limits(a, dir.path(), Duration::from_secs(4), DEFAULT_BODY_LIMIT, limits).await;
    let c = tls_connect_alpn(s.addr, &dir.path().join("certs"), b"h2").await;
    assert_eq!(c.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    // Preface, empty SETTINGS, then a HEADERS frame on stream 1 without END_HEADERS
    // (`:method: GET`); the CONTINUATION that would finish it never comes.
    let mut head = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    head.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    head.extend_from_slice(&[0, 0, 1, 0x1, 0x0, 0, 0, 0, 1, 0x82]);
    let ping = tokio::spawn(async move { trickle(c, &head, None).await });
    let (_, held) = ping.await.unwrap().expect("the half-open stream's connection was closed");
    assert!(held < Duration::from_secs(4), "held for {held:?} with a 500 ms idle timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_answered_within_the_request_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let a = admitter(sqlite_store(dir.path()).await, config(), Ports::default());
    let s = start_with_limits(a, dir.path(), Duration::from_secs(1), DEFAULT_BODY_LIMIT, Limits::default()).await;
    let c = tls_connect(s.addr, &dir.path().join("certs")).await;
    let head = b"POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{";
    let (answer, held) = trickle(c, head, Some(b' ')).await.expect("the server answered and closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(held < Duration::from_secs(3), "held for {held:?} with a 1 s deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_bound_wait_for_a_free_slot_and_are_then_served() {
    let dir = tempfile::tempdir().unwrap();
    let a = admitter(sqlite_store(dir.path()).await, config(), Ports::default());
    let limits = Limits { max_connections: 2, header_timeout: Duration::from_secs(1), ..Limits::default() };
    let s = start_with_limits(a, dir.path(), Duration::from_secs(4), DEFAULT_BODY_LIMIT, limits).await;

    // Two idle connections take both slots.
    let hogs = [TcpStream::connect(s.addr).await.unwrap(), TcpStream::connect(s.addr).await.unwrap()];
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    let (status, body) = s.post(&fixture("v3.3-container-params.admission.json")).await;
    let waited = t.elapsed();
    assert_eq!(status, 200);
    assert_eq!(body["response"]["allowed"], true);
    assert!(waited >= Duration::from_millis(500), "served only once a slot was free, after {waited:?}");
    assert!(waited < Duration::from_secs(4), "the hogs were dropped at the header timeout: {waited:?}");
    for h in hogs {
        assert!(closed_within(h).await.is_some(), "an idle connection was closed");
    }
    // With slots free, admissions are served at once.
    let t = Instant::now();
    let (status, _) = s.post(&fixture("v3.3-container-params.admission.json")).await;
    assert_eq!(status, 200);
    assert!(t.elapsed() < Duration::from_millis(900), "{:?}", t.elapsed());
}

/// The Argo 3.3 fixture with 20,000 extra env entries (a ~0.9 MB review, the shape that took
/// tens of seconds to explain when the diff was quadratic); `variant` changes every value.
fn review_with_big_env(uid: &str, variant: char) -> Value {
    let mut v = fixture("v3.3-container-params.admission.json");
    v["request"]["uid"] = json!(uid);
    let containers = v.pointer_mut("/request/object/spec/containers").unwrap().as_array_mut().unwrap();
    let main = containers.iter_mut().find(|c| c["name"] == "main").unwrap();
    if main.get("env").is_none() {
        main["env"] = json!([]);
    }
    let env = main["env"].as_array_mut().unwrap();
    let tail: String = std::iter::repeat_n(variant, 10).collect();
    env.extend((0..20_000).map(|i| json!({"name": format!("BIG_{i:05}"), "value": format!("{i:05}{tail}")})));
    v
}

/// A store holding an entry for the `a` variant, so admitting the `b` variant is a miss whose
/// explanation compares 20,000 entries against the nearest entry.
async fn store_with_big_entry(dir: &Path) -> stepcache::store::Store {
    let store = sqlite_store(dir).await;
    crate::client::record_hits(&store, &[review_with_big_env("old", 'a')], jiff::Timestamp::now()).await;
    store
}

fn miss_reason(review: &Value, response: &Value) -> String {
    let pod = patched_pod(review, response);
    pod.pointer("/metadata/annotations/stepcache.dev~1miss-reason").and_then(Value::as_str).unwrap_or("").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_on_a_pod_with_twenty_thousand_env_entries_is_explained_within_the_deadline_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let deadline = Duration::from_secs(4);
    let a = admitter(store_with_big_entry(dir.path()).await, config(), Ports::default());
    let s = start_with_limits(a, dir.path(), deadline, DEFAULT_BODY_LIMIT, Limits::default()).await;
    let review = review_with_big_env("new", 'b');
    let body = review.to_string();
    assert!(body.len() > 800_000 && body.len() < DEFAULT_BODY_LIMIT, "{} bytes", body.len());
    let t = Instant::now();
    let r = s.client.post(s.url("/mutate")).header("content-type", "application/json").body(body).send().await.unwrap();
    let took = t.elapsed();
    assert_eq!(r.status(), 200);
    let response: Value = r.json().await.unwrap();
    // The server answers by its deadline, failing open past it (the warning checked below); the
    // upload and a debug build on a shared machine add to what the client sees.
    assert!(took < deadline + Duration::from_secs(2), "answered in {took:?}");
    let warnings = response["response"]["warnings"].to_string();
    assert!(!warnings.contains("no decision within"), "decided, not cut off by the deadline: {warnings}");
    let reason = miss_reason(&review, &response);
    assert!(reason.contains("differs: containers[main].env.BIG_00000"), "{reason}");
    eprintln!("20,000-entry miss explained over HTTPS in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_on_a_pod_with_twenty_thousand_env_entries_is_explained_quickly_by_review() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_big_entry(dir.path()).await;
    store.close().await;
    let review = review_with_big_env("new", 'b');
    let input = dir.path().join("review.json");
    std::fs::write(&input, review.to_string()).unwrap();
    let t = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stepcache"))
        .current_dir(dir.path())
        .args(["review", "--explain", "--database-url"])
        .arg(format!("sqlite://{}", dir.path().join("stepcache.db").display()))
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    let took = t.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Debug build, sharing the machine with the other tests: the release build takes a fraction
    // of this; the quadratic explanation took 26 s in release.
    assert!(took < Duration::from_secs(8), "review took {took:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let diffs = v["explain"]["nearest"]["differences"].as_array().unwrap();
    let first = diffs[0].as_str().unwrap();
    assert_eq!(first, r#"containers[main].env.BIG_00000: "00000aaaaaaaaaa" → "00000bbbbbbbbbb""#);
    // Bounded: at most the first lines, then how many more (or where the comparison stopped).
    let last = diffs.last().unwrap().as_str().unwrap();
    assert!(last.starts_with("… and 19960 more") || last.starts_with("… comparison stopped after"), "{diffs:?}");
    assert!(diffs.len() <= stepcache::key::MAX_DIFF_LINES + 1, "{}", diffs.len());
    eprintln!("20,000-entry miss explained by review in {took:?}");
}
