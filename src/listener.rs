//! Accepting connections: the webhook's HTTPS accept loop and the metrics port's listener.
//!
//! Owns what a connection may cost the server before and around a request: `TCP_NODELAY` on
//! every accepted socket (without it, Nagle holds a small TLS record until the peer's delayed
//! ACK, ~40 ms, on a few percent of admissions), a bound on open connections, a timeout on the
//! TLS handshake and on request headers, an idle timeout for connections with no request in
//! flight (which also ends an HTTP/2 client that never finishes its headers), HTTP/2 stream and
//! header-list limits, and graceful shutdown. The TLS configuration is read per connection, so
//! certificate reloads (`tls::reload_loop`) apply to new connections without a restart.

use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// What one client may hold. Defaults suit an API server on a cluster network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bound on the TLS handshake and on reading a request's headers (HTTP/1.1).
    pub header_timeout: Duration,
    /// A connection with no request in flight and none started for this long is closed.
    pub idle_timeout: Duration,
    /// Open connections at most; further connections wait in the listen backlog.
    pub max_connections: usize,
    /// HTTP/2 streams in flight per connection.
    pub http2_max_streams: u32,
    /// Largest request header list (HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`; HTTP/1.1 read buffer).
    pub max_header_list_size: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(90),
            max_connections: 512,
            http2_max_streams: 256,
            max_header_list_size: 64 * 1024,
        }
    }
}

/// Smallest HTTP/1.1 read buffer hyper accepts.
const MIN_H1_BUFFER: usize = 8192;
/// Time given to open connections to finish after an idle close was asked for.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Accepts one connection and prepares its socket: `TCP_NODELAY`, so a response's last TLS
/// record leaves at once instead of waiting for the peer's delayed ACK.
pub async fn accept(listener: &TcpListener) -> std::io::Result<(TcpStream, SocketAddr)> {
    let (stream, addr) = listener.accept().await?;
    stream.set_nodelay(true)?;
    Ok((stream, addr))
}

/// Accepts, retrying transient errors (out of file descriptors, a connection reset before
/// accept) after a short pause instead of ending the server.
async fn accept_retrying(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match accept(listener).await {
            Ok(c) => return c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A plain-TCP listener for `axum::serve` whose accepted sockets get [`accept`]'s options
/// (the metrics port).
pub struct NoDelayListener(pub TcpListener);

impl axum::serve::Listener for NoDelayListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        accept_retrying(&self.0).await
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// Requests in flight on one connection and when the last one started (ms since `opened`).
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        self.last_ms.store(self.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let since = self.opened.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)));
        Some(since)
    }
}

/// Serves `app` over TLS on `listener` until `shutdown` completes, then lets open connections
/// finish for up to `grace`.
pub async fn serve_https(
    listener: TcpListener,
    tls: RustlsConfig,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size((limits.max_header_list_size as usize).max(MIN_H1_BUFFER));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_streams)
        .max_header_list_size(limits.max_header_list_size)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            c = accept_retrying(&listener) => c,
        };
        let conn = Connection {
            tls: tls.get_inner(),
            app: app.clone(),
            builder: builder.clone(),
            limits,
            stop: stop_rx.clone(),
        };
        tokio::spawn(async move {
            conn.run(tcp, peer).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let all = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    if tokio::time::timeout(grace, slots.acquire_many(all)).await.is_err() {
        tracing::warn!(grace_ms = grace.as_millis() as u64, "connections still open after the shutdown grace");
    }
}

/// One accepted connection's settings.
struct Connection {
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: Limits,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn run(mut self, tcp: TcpStream, peer: SocketAddr) {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls.clone());
        let stream = match tokio::time::timeout(self.limits.header_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        };
        let activity =
            Arc::new(Activity { opened: Instant::now(), in_flight: AtomicUsize::new(0), last_ms: AtomicU64::new(0) });
        let act = activity.clone();
        let app = self.app.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            use tower::Service as _;
            let mut app = app.clone();
            let act = act.clone();
            act.in_flight.fetch_add(1, Ordering::Relaxed);
            act.touch();
            async move {
                let r = app.call(req.map(axum::body::Body::new)).await;
                act.touch();
                act.in_flight.fetch_sub(1, Ordering::Relaxed);
                r
            }
        });
        let conn = self.builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        let idle = self.limits.idle_timeout;
        let check_every = (idle / 4).max(Duration::from_millis(10));
        let closing = loop {
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = self.stop.wait_for(|s| *s) => break None,
                _ = tokio::time::sleep(check_every) => {
                    if activity.idle_for().is_some_and(|d| d >= idle) {
                        tracing::debug!(%peer, "closing idle connection");
                        break Some(IDLE_CLOSE_GRACE);
                    }
                }
            }
        };
        conn.as_mut().graceful_shutdown();
        match closing {
            // Shutdown: the server-wide grace bounds the wait.
            None => {
                let _ = conn.await;
            }
            Some(g) => {
                let _ = tokio::time::timeout(g, conn).await;
            }
        }
    }
}
