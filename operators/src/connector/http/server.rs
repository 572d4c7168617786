//! The serving loop shared by the ingest server and the test service.
//!
//! ```text
//!   bind(): socket → listen(accept_backlog)            (kernel queue, bounded)
//!   server task (owned by ServerHandle, never detached):
//!     loop {
//!       permit ← semaphore(max_connections)           (a live connection holds one)
//!       (stream, peer) ← listener.accept()
//!       connections.spawn(serve(stream, permit))      (JoinSet owned by this task)
//!       reap finished connection tasks                (the JoinSet never grows past the bound)
//!     } until the shutdown signal
//!     drop the listener (new clients are refused),
//!     ask each connection to finish its in-flight request and close (hyper graceful shutdown),
//!     wait up to shutdown_grace, abort whatever is left.
//!   drop(ServerHandle): signal + abort the server task; aborting it drops the JoinSet,
//!     which aborts every connection task.
//! ```
//!
//! Bounds: at most `max_connections` connections are served at once. Further clients complete
//! the TCP handshake in the kernel and wait in the accept queue (at most `accept_backlog`;
//! past that Linux drops their SYNs and the client's connect retries or times out). A client
//! must send a complete request head within `header_read_timeout` of the connection opening or
//! of the previous response (hyper re-arms the timer for keep-alive), so an idle or slowloris
//! connection gives its permit back within that time. A connection's read buffer is capped at
//! `max(max_head_bytes, 8 KiB)`.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

/// hyper's smallest allowed read-buffer cap.
const MIN_READ_BUFFER: usize = 8 << 10;

/// Connection-level limits of an HTTP server in this module.
#[derive(Debug, Clone)]
pub struct ServeLimits {
    /// Connections served at once; further clients wait in the accept queue.
    pub max_connections: NonZeroUsize,
    /// Length of the kernel's accept queue (`listen(2)` backlog); the kernel may cap it at
    /// `net.core.somaxconn`.
    pub accept_backlog: u32,
    /// Time a client has to send a full request head, counted from the connection's start or
    /// from the previous response. Past it the connection is closed.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers); larger ones get `431` and the
    /// connection is closed. It also caps each connection's read buffer (at least 8 KiB).
    pub max_head_bytes: usize,
    /// On shutdown, time granted to in-flight requests before their connections are aborted.
    pub shutdown_grace: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_connections: NonZeroUsize::new(256).expect("256 is not zero"),
            accept_backlog: 128,
            header_read_timeout: Duration::from_secs(10),
            max_head_bytes: 16 << 10,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Error binding a server to its address.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Called outside a tokio runtime; the server's tasks need one.
    #[error(
        "no tokio runtime: bind the server from within a tokio runtime (with IO and time enabled)"
    )]
    NoRuntime,
    /// The socket could not be created, bound or put into listening state.
    #[error("could not listen on {addr}: {source} (is the address in use or not local?)")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// Error while shutting a server down.
#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    /// The server task panicked; this is a bug in weir.
    #[error("the HTTP server task panicked: {0}")]
    Panicked(String),
}

/// Connection counters shared between the server task and its handle.
#[derive(Debug, Default)]
pub(crate) struct ConnectionStats {
    accepted: AtomicU64,
    active: AtomicUsize,
    peak: AtomicUsize,
}

impl ConnectionStats {
    /// Connections accepted since bind.
    pub(crate) fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
    /// Connections being served now.
    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
    /// Most connections served at once since bind.
    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
}

/// Decrements the active count when a connection task ends, however it ends.
struct ActiveGuard(Arc<ConnectionStats>);

impl ActiveGuard {
    fn new(stats: Arc<ConnectionStats>) -> Self {
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let now = stats.active.fetch_add(1, Ordering::Relaxed) + 1;
        stats.peak.fetch_max(now, Ordering::Relaxed);
        Self(stats)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A running server: owns its task; dropping the handle stops it.
#[derive(Debug)]
pub(crate) struct ServerHandle {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    stats: Arc<ConnectionStats>,
}

impl ServerHandle {
    /// Binds `addr` and serves `router` on it with `limits`.
    pub(crate) fn bind(
        addr: SocketAddr,
        limits: &ServeLimits,
        router: Router,
    ) -> Result<Self, BindError> {
        tokio::runtime::Handle::try_current().map_err(|_| BindError::NoRuntime)?;
        let listener = listen_std(addr, limits.accept_backlog)
            .map_err(|source| BindError::Listen { addr, source })?;
        Self::serve(listener, limits, router)
    }

    /// Serves `router` on an already listening socket with `limits`.
    pub(crate) fn serve(
        listener: std::net::TcpListener,
        limits: &ServeLimits,
        router: Router,
    ) -> Result<Self, BindError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BindError::NoRuntime)?;
        let local_addr = listener.local_addr().map_err(|source| BindError::Listen {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
        let listener = {
            // Registering the socket needs the runtime's reactor.
            let _entered = runtime.enter();
            listener
                .set_nonblocking(true)
                .and_then(|()| TcpListener::from_std(listener))
                .map_err(|source| BindError::Listen {
                    addr: local_addr,
                    source,
                })?
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let stats = Arc::new(ConnectionStats::default());
        let task = runtime.spawn(accept_loop(
            listener,
            router,
            limits.clone(),
            shutdown_rx,
            Arc::clone(&stats),
        ));
        Ok(Self {
            local_addr,
            shutdown,
            task: Some(task),
            stats,
        })
    }

    /// The address the server listens on (with the real port when bound to port 0).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connection counters.
    pub(crate) fn stats(&self) -> &ConnectionStats {
        &self.stats
    }

    /// Connection counters, shared.
    pub(crate) fn stats_arc(&self) -> Arc<ConnectionStats> {
        Arc::clone(&self.stats)
    }

    /// Stops accepting, lets in-flight requests finish (up to the grace period) and joins the
    /// server task.
    pub(crate) async fn shutdown(mut self) -> Result<(), ShutdownError> {
        self.shutdown.send_replace(true);
        match self.task.take() {
            Some(task) => task
                .await
                .map_err(|e| ShutdownError::Panicked(e.to_string())),
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            // Aborting the server task drops its JoinSet, which aborts every connection task.
            task.abort();
        }
    }
}

/// Binds `addr` and listens with an accept queue of `backlog`, without a runtime: connections
/// made before the server starts wait in the kernel's queue.
pub(crate) fn listen_std(addr: SocketAddr, backlog: u32) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    mut shutdown: watch::Receiver<bool>,
    stats: Arc<ConnectionStats>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.get()));
    let mut connections = JoinSet::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        .max_header_size(limits.max_head_bytes)
        // hyper's read buffer may not be smaller than its initial 8 KiB.
        .max_buf_size(limits.max_head_bytes.max(MIN_READ_BUFFER));
    let service = TowerToHyperService::new(router);

    loop {
        let next = async {
            let permit = Arc::clone(&permits)
                .acquire_owned()
                .await
                .expect("the connection semaphore is never closed");
            (permit, listener.accept().await)
        };
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            Some(ended) = connections.join_next(), if !connections.is_empty() => log_connection_end(ended),
            (permit, accepted) = next => match accepted {
                Ok((stream, peer)) => {
                    // Nagle would hold small responses back behind the client's delayed ACK.
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(%peer, error = %e, "could not set TCP_NODELAY");
                    }
                    let guard = ActiveGuard::new(Arc::clone(&stats));
                    let conn = http.serve_connection(TokioIo::new(stream), service.clone());
                    let mut stop = shutdown.clone();
                    connections.spawn(async move {
                        let _permit = permit;
                        let _guard = guard;
                        tokio::pin!(conn);
                        let result = tokio::select! {
                            result = conn.as_mut() => result,
                            _ = stop.changed() => {
                                conn.as_mut().graceful_shutdown();
                                conn.await
                            }
                        };
                        if let Err(e) = result {
                            // Timeouts and resets by clients are routine at an edge.
                            tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    if is_resource_exhaustion(&e) {
                        // Out of file descriptors or memory: back off instead of spinning on the
                        // same error. This waits for a resource, not for data.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            },
        }
    }

    drop(listener);
    let drain = async {
        while let Some(ended) = connections.join_next().await {
            log_connection_end(ended);
        }
    };
    if tokio::time::timeout(limits.shutdown_grace, drain)
        .await
        .is_err()
    {
        tracing::debug!(
            left = connections.len(),
            "shutdown grace elapsed; aborting connections"
        );
        connections.shutdown().await;
    }
}

fn log_connection_end(ended: Result<(), tokio::task::JoinError>) {
    if let Err(e) = ended {
        if e.is_panic() {
            tracing::error!(error = %e, "an HTTP connection task panicked");
        }
    }
}

fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    // EMFILE / ENFILE / ENOBUFS / ENOMEM on Linux.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// Reads a whole request body of at most `limit` bytes within `timeout`, answering the
/// failures itself: `413` when the body is (declared or found) too large, `408` when it is too
/// slow, `400` when the client broke it off or sent broken framing.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, Response> {
    let too_large = || {
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("body exceeds {limit} bytes"),
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_elapsed) => Err(error_response(
            StatusCode::REQUEST_TIMEOUT,
            "body not received within the body read timeout",
        )),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => Err(error_response(
            StatusCode::BAD_REQUEST,
            &format!("could not read the body: {e}"),
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// A JSON error answer, `{"error": message}`. The connection is closed after it, since the
/// request body may be partly unread.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response {
    let mut response = (status, Json(serde_json::json!({ "error": message }))).into_response();
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}
