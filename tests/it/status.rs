//! The status page of a running `stepcache serve`, rendered by real headless Chromium: DOM
//! assertions on `--dump-dom` (no JavaScript runs: the page has none) and a screenshot in
//! `target/test-output/`. Also the running server every operator-facing test scrapes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::harness::{admitter, config, fixture, rerun, sqlite_store, ts, SECRET};
use crate::hitpath::run_and_record;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use stepcache::admission::Ports;

/// A fixture whose hits need no Kubernetes API (outputs travel in the pod annotation).
pub const FIXTURE: &str = "v3.3-container-params.admission.json";

/// A `stepcache serve` (no Kubernetes API, SQLite) that has answered one hit and one miss whose
/// decisions are in its decision log; killed on drop.
pub struct Running {
    child: Child,
    _dir: tempfile::TempDir,
    /// Metrics listener port (`/metrics`, `/status`).
    pub metrics_port: u16,
    /// The pod name of the logged miss.
    pub miss_pod: String,
    /// The template of the logged hit.
    pub template: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn changed(review: &Value, run: &str) -> Value {
    let mut v = rerun(review, run);
    let main = v["request"]["object"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["name"] == "main")
        .unwrap();
    let args = main["args"].as_array_mut().unwrap();
    let last = args.len() - 1;
    args[last] = json!("echo changed | tee /tmp/echo.txt");
    v
}

impl Running {
    /// Records one run, starts `serve` on that store, sends it a hit and a changed step (a
    /// miss), and waits until both decisions are in the log.
    pub async fn start() -> Running {
        let dir = tempfile::tempdir().unwrap();
        let review = fixture(FIXTURE);
        {
            let store = sqlite_store(dir.path()).await;
            let a = admitter(store.clone(), config(), Ports::offline());
            run_and_record(&a, &review, "pod-1", "1", ts("2026-11-01T10:05:00Z")).await;
            store.close().await;
        }
        let certs = dir.path().join("certs");
        stepcache::tls::generate(&certs, &["localhost".into(), "127.0.0.1".into()]).unwrap();
        let (port, metrics_port) = (free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_stepcache"))
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .arg("--tls-cert")
            .arg(certs.join("tls.crt"))
            .arg("--tls-key")
            .arg(certs.join("tls.key"))
            .args(["--kube", "off", "--signing-key", std::str::from_utf8(SECRET).unwrap()])
            .arg("--database-url")
            .arg(format!("sqlite://{}", dir.path().join("stepcache.db").display()))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut running = Running { child, _dir: dir, metrics_port, miss_pod: String::new(), template: String::new() };
        let client = crate::client::https_client(&certs);
        let url = format!("https://127.0.0.1:{port}/mutate");
        let t = Instant::now();
        let post = |body: Value| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let r = client.post(&url).json(&body).send().await.ok()?;
                r.json::<Value>().await.ok()
            }
        };
        let hit = loop {
            if let Some(r) = post(rerun(&review, "hit")).await {
                break r;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "serve did not answer");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(hit["response"]["patch"].is_string(), "{hit}");
        let miss_review = changed(&review, "miss");
        post(miss_review.clone()).await.unwrap();
        running.miss_pod = miss_review["request"]["object"]["metadata"]["name"].as_str().unwrap().to_owned();
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(review["request"]["object"].clone()).unwrap();
        running.template = match stepcache::argo::template::classify(&pod) {
            stepcache::argo::template::Classification::Step(s) => s.template.name().to_owned(),
            _ => panic!("{FIXTURE} is a step pod"),
        };
        // The decision log is flushed every few seconds.
        let t = Instant::now();
        while !running.get("/status").await.contains(&running.miss_pod) {
            assert!(t.elapsed() < Duration::from_secs(30), "miss not on the status page");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        running
    }

    /// `GET http://127.0.0.1:<metrics>/<path>` as text.
    pub async fn get(&self, path: &str) -> String {
        let url = format!("http://127.0.0.1:{}{path}", self.metrics_port);
        match reqwest::get(&url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }
}

/// `target/test-output/`, created.
pub fn output_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("test-output");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The Chromium binary, or `None` after a visible SKIPPED line (a failure when `CI` is set).
fn chromium() -> Option<PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].iter().map(PathBuf::from).find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is not installed (CI is set, so the browser test fails): apt-get install -y chromium"
        );
        eprintln!("\n*** SKIPPED: status page browser test: /usr/bin/chromium not installed (apt-get install -y chromium) ***\n");
    }
    found
}

fn headless(bin: &Path, profile: &Path, extra: &[String], url: &str) -> std::process::Output {
    Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-proxy-server",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_status_page_renders_in_a_real_browser_without_javascript() {
    let Some(bin) = chromium() else { return };
    let running = Running::start().await;
    let profile = tempfile::tempdir().unwrap();
    // `/` redirects to `/status`. The page carries no script at all (asserted below), so what
    // the browser shows is what works without JavaScript. (`--dump-dom` itself needs
    // JavaScript enabled in the browser, so it is not switched off.)
    let root = format!("http://127.0.0.1:{}/", running.metrics_port);
    let out = headless(&bin, profile.path(), &["--dump-dom".into()], &root);
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    std::fs::write(output_dir().join("status.html"), &dom).unwrap();
    assert!(
        dom.contains("<title>stepcache status</title>"),
        "no page: {dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dom.contains("<script"), "the page must need no script");
    // One hit and one miss in the last hour and day: 50%; the hit saved the recorded 4m12s.
    for w in ["hour", "day"] {
        assert!(dom.contains(&format!("id=\"hit-ratio-{w}\">50.0%")), "{w}: {dom}");
        assert!(dom.contains(&format!("id=\"saved-{w}\">4m12s")), "{w}: {dom}");
    }
    let top = dom.split("id=\"top-templates\"").nth(1).unwrap_or_default();
    assert!(top.contains(&format!("<td>{}</td>", running.template)), "{dom}");
    let misses = dom.split("id=\"recent-misses\"").nth(1).unwrap_or_default();
    assert!(misses.contains(&running.miss_pod), "{dom}");
    assert!(misses.contains("echo changed"), "the miss reason names the difference: {dom}");
    assert!(dom.contains("id=\"store-health\"><div>Store</div><div class=\"big ok\">healthy"), "{dom}");
    assert!(dom.contains("id=\"recorder-health\""), "{dom}");
    assert!(dom.contains(">0 admissions answered fail-open, 0 store errors"), "{dom}");

    let shot = output_dir().join("status.png");
    let _ = std::fs::remove_file(&shot);
    let out = headless(
        &bin,
        profile.path(),
        &[format!("--screenshot={}", shot.display()), "--window-size=1280,1100".into()],
        &format!("http://127.0.0.1:{}/status", running.metrics_port),
    );
    let png = std::fs::read(&shot)
        .unwrap_or_else(|e| panic!("no screenshot ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "screenshot is {} bytes", png.len());
    eprintln!("status page screenshot: {}", shot.display());
}
