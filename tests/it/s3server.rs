//! A real S3-compatible server for the artifact checks: `moto_server` (moto, from PyPI), run on
//! a free port for the test binary. Where it comes from: a virtualenv under
//! `$STEPCACHE_TOOLS_DIR` (default `~/.cache/stepcache/tools`)/`moto-venv`, created and filled
//! with `pip install moto[server]` on first use (announced on stderr). Without Python or the
//! package index the tests skip visibly ([`crate::skip`]); under `CI` they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The moto version installed when none is present.
const MOTO: &str = "moto[server]==5.1.22";

fn tools_dir() -> PathBuf {
    std::env::var_os("STEPCACHE_TOOLS_DIR").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into())).join(".cache/stepcache/tools")
    })
}

/// The `moto_server` executable, installing it once when missing; `Err` says why it is not there.
fn moto_server() -> Result<PathBuf, String> {
    static BIN: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let venv = tools_dir().join("moto-venv");
        let bin = venv.join("bin").join("moto_server");
        if bin.is_file() {
            return Ok(bin);
        }
        let _ = writeln!(
            std::io::stderr(),
            "\n*** installing {MOTO} into {} (S3-compatible test server) ***",
            venv.display()
        );
        std::fs::create_dir_all(tools_dir()).map_err(|e| e.to_string())?;
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .map_err(|e| format!("python3 not runnable: {e}"))?
            .success()
            && Command::new(venv.join("bin").join("pip"))
                .args(["install", "--quiet", MOTO])
                .status()
                .map_err(|e| format!("pip not runnable: {e}"))?
                .success();
        if ok && bin.is_file() {
            Ok(bin)
        } else {
            Err(format!("could not install {MOTO} into {}", venv.display()))
        }
    })
    .clone()
}

/// A running moto server; killed on drop.
pub struct S3Server {
    child: Option<Child>,
    /// `127.0.0.1:PORT`.
    pub endpoint: String,
    http: reqwest::Client,
}

impl S3Server {
    /// Starts a server, or returns `None` after a visible skip.
    pub async fn start() -> Option<S3Server> {
        let bin = match moto_server() {
            Ok(b) => b,
            Err(reason) => {
                crate::skip::skip("s3", &format!("artifact checks against a real S3 server: {reason}"));
                return None;
            }
        };
        let port = crate::kit::free_port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let s = S3Server { child: Some(child), endpoint: format!("127.0.0.1:{port}"), http: reqwest::Client::new() };
        let t = Instant::now();
        while s.http.get(s.url("")).send().await.is_err() {
            assert!(t.elapsed() < Duration::from_secs(30), "moto_server not answering after 30s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(s)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.endpoint)
    }

    /// A request signed like a real client's (moto refuses some unsigned operations).
    fn signed(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        use stepcache::integrity::sigv4;
        let path = sigv4::encode_path(&format!("/{path}"));
        let amz_date = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string();
        let auth = sigv4::authorization(
            &sigv4::Request {
                method: method.as_str(),
                path: &path,
                headers: &[
                    ("host", self.endpoint.as_str()),
                    ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
                    ("x-amz-date", &amz_date),
                ],
                amz_date: &amz_date,
                region: "us-east-1",
                service: "s3",
            },
            "testing-access",
            "testing-secret",
        );
        self.http
            .request(method, format!("http://{}{path}", self.endpoint))
            .header("x-amz-date", amz_date)
            .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
            .header("authorization", auth)
    }

    /// Creates a bucket.
    pub async fn bucket(&self, name: &str) {
        let r = self.signed(reqwest::Method::PUT, name).send().await.unwrap();
        assert!(r.status().is_success(), "create bucket: {}", r.status());
    }

    /// Stores an object.
    pub async fn put(&self, bucket: &str, key: &str, body: &str) {
        let r =
            self.signed(reqwest::Method::PUT, &format!("{bucket}/{key}")).body(body.to_owned()).send().await.unwrap();
        assert!(r.status().is_success(), "put object: {}", r.status());
    }

    /// Deletes an object.
    pub async fn delete(&self, bucket: &str, key: &str) {
        let r = self.signed(reqwest::Method::DELETE, &format!("{bucket}/{key}")).send().await.unwrap();
        assert!(r.status().is_success(), "delete object: {}", r.status());
    }

    /// Stops the server (the endpoint then refuses connections).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
