//! The serving loop shared by the ingest server and the test service.
//!
//! ```text
//!   bind(): socket → listen(accept_backlog)            (kernel queue, bounded)
//!   server task (owned by ServerHandle, never detached):
//!     loop {
//!       accept only while the table has a free slot or an evictable connection
//!         (and no accepted connection is pending);
//!       (stream, peer) ← listener.accept()
//!       peer at max_connections_per_peer?  evict that peer's oldest idle/slow connection,
//!                                          else refuse: 503 + Retry-After, close
//!       table full?                        evict the oldest idle/slow connection; if all
//!                                          turned busy meanwhile, the connection is pending
//!                                          until one ends or becomes evictable
//!       header deadline ← shrink(header_read_timeout, by the table's fill)
//!       connections.spawn(serve(stream))   (JoinSet owned by this task; the table keys on
//!                                           its task id, so the table never outgrows it)
//!       reap finished connection tasks
//!     } until the shutdown signal
//!     drop the listener (new clients are refused),
//!     ask each connection to finish its in-flight request and close (hyper graceful shutdown),
//!     wait up to shutdown_grace, abort whatever is left.
//!   drop(ServerHandle): signal + abort the server task; aborting it drops the JoinSet,
//!     which aborts every connection task.
//! ```
//!
//! # Fairness under connection floods
//!
//! A connection is *busy* while a request is in the handler (its body being read, the
//! admission deciding) and *evictable* otherwise: waiting for a request head (a new connection,
//! a slowloris trickling its head) or idle between keep-alive requests. Only the accept loop
//! touches the table; a connection's task flips its `busy` flag and notes when it last changed,
//! and notifies the loop when it becomes evictable.
//!
//! * **Per-peer limit.** One peer (an IPv4 address, or an IPv6 /64) holds at most
//!   `max_connections_per_peer` connections. A peer at its limit that opens another gives up
//!   its own oldest evictable connection; if it has none, the new one is answered `503` with
//!   `Retry-After` and closed at once. With the limit below `max_connections` (the default is
//!   a quarter), one peer can never fill the table, whatever it sends or withholds.
//! * **Room for newcomers.** When the table holds `max_connections`, a new connection takes
//!   the place of the oldest evictable one (closed without a word: it had no request in the
//!   handler). Only when every connection is busy do newcomers wait, in the kernel's accept
//!   queue, as before: work in progress is never cut short for a newcomer.
//! * **Deadlines shrink under pressure.** A connection must send its request head within
//!   `header_read_timeout` while the table is at most half full; past that the deadline a new
//!   connection gets falls linearly to `min_read_timeout` at a full table. The ingest server
//!   shrinks its body deadline the same way.
//!
//! Bounds: at most `max_connections` connections are served at once (plus, for an instant,
//! those being evicted). A connection's read buffer is capped at `max(max_head_bytes, 8 KiB)`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::{JoinHandle, JoinSet};

/// hyper's smallest allowed read-buffer cap.
const MIN_READ_BUFFER: usize = 8 << 10;

/// Connection-level limits of an HTTP server in this module.
#[derive(Debug, Clone)]
pub struct ServeLimits {
    /// Connections served at once. When all are taken, a newcomer replaces the oldest
    /// connection with no request in progress; when every one is busy, newcomers wait in the
    /// accept queue.
    pub max_connections: NonZeroUsize,
    /// Connections one peer (an IPv4 address or an IPv6 /64) may hold at once; past it the
    /// peer's own oldest idle or slow connection gives way, or the newcomer is answered `503` +
    /// `Retry-After` and closed.
    pub max_connections_per_peer: NonZeroUsize,
    /// Length of the kernel's accept queue (`listen(2)` backlog); the kernel may cap it at
    /// `net.core.somaxconn`.
    pub accept_backlog: u32,
    /// Time a client has to send a full request head, counted from the connection's start or
    /// from the previous response. Past it the connection is closed. Shrinks towards
    /// `min_read_timeout` as the connection table fills past half.
    pub header_read_timeout: Duration,
    /// The header (and the ingest server's body) deadline given at a full connection table.
    pub min_read_timeout: Duration,
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
            max_connections_per_peer: NonZeroUsize::new(64).expect("64 is not zero"),
            accept_backlog: 128,
            header_read_timeout: Duration::from_secs(10),
            min_read_timeout: Duration::from_secs(1),
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
    /// Connections in the table (not counting those being evicted), and its size.
    held: AtomicUsize,
    capacity: AtomicUsize,
    refused: AtomicU64,
    evicted: AtomicU64,
}

impl ConnectionStats {
    /// Connections refused at once because their peer held its limit of busy ones.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
    /// Idle or slow connections closed to make room for new ones.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
    /// How full the connection table is, from 0 to 1.
    pub(crate) fn fill(&self) -> f64 {
        let capacity = self.capacity.load(Ordering::Relaxed).max(1);
        self.held.load(Ordering::Relaxed) as f64 / capacity as f64
    }
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

/// A running server with bounded connections ([`ServeLimits`]): owns its task; dropping the
/// handle stops it and aborts open connections.
///
/// The ingest server runs on it; so can other loopback services (the workloads crate's
/// overloadable test service does).
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    stats: Arc<ConnectionStats>,
}

impl ServerHandle {
    /// Binds `addr` and serves `router` on it with `limits`, on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`BindError::NoRuntime`] outside a tokio runtime; [`BindError::Listen`] when the address
    /// cannot be bound.
    pub fn bind(addr: SocketAddr, limits: &ServeLimits, router: Router) -> Result<Self, BindError> {
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
        stats
            .capacity
            .store(limits.max_connections.get(), Ordering::Relaxed);
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
    pub fn local_addr(&self) -> SocketAddr {
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
    ///
    /// # Errors
    ///
    /// [`ShutdownError::Panicked`] if the server task panicked.
    pub async fn shutdown(mut self) -> Result<(), ShutdownError> {
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

/// The deadline for a connection admitted when the table is `fill` full: `base` up to half
/// full, then falling linearly to `min` at a full table.
pub(crate) fn shrink(base: Duration, min: Duration, fill: f64) -> Duration {
    let min = min.min(base);
    let pressure = ((fill - 0.5) * 2.0).clamp(0.0, 1.0);
    base - (base - min).mul_f64(pressure)
}

/// The peer a connection counts against: its IPv4 address, or the /64 prefix of its IPv6
/// address (one host usually holds a whole /64).
fn peer_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

/// One live connection, as the accept loop sees it.
#[derive(Debug)]
struct Slot {
    peer: IpAddr,
    /// A request is in the handler: not evictable.
    busy: AtomicBool,
    /// When the connection last became evictable (nanoseconds after the table's base).
    since_ns: AtomicU64,
    /// Notified to close the connection.
    evict: Notify,
}

/// The live connections, owned by the accept loop.
struct Table {
    base: Instant,
    slots: HashMap<tokio::task::Id, Arc<Slot>>,
    per_peer: HashMap<IpAddr, usize>,
    stats: Arc<ConnectionStats>,
}

impl Table {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    fn peer_count(&self, peer: IpAddr) -> usize {
        self.per_peer.get(&peer).copied().unwrap_or(0)
    }

    fn has_evictable(&self) -> bool {
        self.slots.values().any(|s| !s.busy.load(Ordering::Relaxed))
    }

    fn insert(&mut self, id: tokio::task::Id, slot: Arc<Slot>) {
        *self.per_peer.entry(slot.peer).or_insert(0) += 1;
        self.slots.insert(id, slot);
        self.stats.held.store(self.slots.len(), Ordering::Relaxed);
    }

    fn remove(&mut self, id: tokio::task::Id) -> Option<Arc<Slot>> {
        let slot = self.slots.remove(&id)?;
        if let Some(n) = self.per_peer.get_mut(&slot.peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&slot.peer);
            }
        }
        self.stats.held.store(self.slots.len(), Ordering::Relaxed);
        Some(slot)
    }

    /// Closes the connection (of `peer`, if given) that has been evictable longest; false if
    /// there is none.
    fn evict_oldest(&mut self, peer: Option<IpAddr>) -> bool {
        let oldest = self
            .slots
            .iter()
            .filter(|(_, s)| peer.is_none_or(|p| s.peer == p) && !s.busy.load(Ordering::Relaxed))
            .min_by_key(|(_, s)| s.since_ns.load(Ordering::Relaxed))
            .map(|(id, _)| *id);
        match oldest.and_then(|id| self.remove(id)) {
            Some(slot) => {
                slot.evict.notify_one();
                self.stats.evicted.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}

/// Marks a connection busy while a request is in the handler; evictable again when dropped.
struct Busy {
    slot: Arc<Slot>,
    base: Instant,
    evictable: Arc<Notify>,
}

impl Busy {
    fn new(slot: Arc<Slot>, base: Instant, evictable: Arc<Notify>) -> Self {
        slot.busy.store(true, Ordering::Relaxed);
        Self {
            slot,
            base,
            evictable,
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let ns = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.slot.since_ns.store(ns, Ordering::Relaxed);
        self.slot.busy.store(false, Ordering::Relaxed);
        self.evictable.notify_one();
    }
}

/// Refuses a connection: a `503` with a retry hint if the socket takes it at once, then close.
fn refuse(stream: TcpStream) {
    const BODY: &str = r#"{"error":"too many connections from this address"}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    // A fresh socket's send buffer is empty: the answer fits without waiting.
    let _ = stream.try_write(answer.as_bytes());
    drop(stream);
}

/// What a connection task needs, shared by every connection of a server.
struct Spawner {
    http: http1::Builder,
    service: TowerToHyperService<Router>,
    limits: ServeLimits,
    stats: Arc<ConnectionStats>,
    evictable: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
}

impl Spawner {
    /// Serves `stream` on a task of `connections` and enters it in `table`, which has room.
    fn spawn(
        &self,
        table: &mut Table,
        connections: &mut JoinSet<()>,
        stream: TcpStream,
        peer: SocketAddr,
    ) {
        // Nagle would hold small responses back behind the client's delayed ACK.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "could not set TCP_NODELAY");
        }
        let limits = &self.limits;
        let fill = table.len() as f64 / limits.max_connections.get() as f64;
        let mut http = self.http.clone();
        http.header_read_timeout(shrink(
            limits.header_read_timeout,
            limits.min_read_timeout,
            fill,
        ));
        let slot = Arc::new(Slot {
            peer: peer_key(peer.ip()),
            busy: AtomicBool::new(false),
            since_ns: AtomicU64::new(table.now_ns()),
            evict: Notify::new(),
        });
        let tracked = {
            let (slot, base, evictable) =
                (Arc::clone(&slot), table.base, Arc::clone(&self.evictable));
            let service = self.service.clone();
            hyper::service::service_fn(move |request| {
                let busy = Busy::new(Arc::clone(&slot), base, Arc::clone(&evictable));
                let answer = service.call(request);
                async move {
                    let answer = answer.await;
                    drop(busy);
                    answer
                }
            })
        };
        let guard = ActiveGuard::new(Arc::clone(&self.stats));
        let conn = http.serve_connection(TokioIo::new(stream), tracked);
        let mut stop = self.shutdown.clone();
        let own = Arc::clone(&slot);
        let task = connections.spawn(async move {
            let _guard = guard;
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                // Evicted: no request is in the handler; close at once.
                () = own.evict.notified() => return,
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
        table.insert(task.id(), slot);
    }
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    mut shutdown: watch::Receiver<bool>,
    stats: Arc<ConnectionStats>,
) {
    let max = limits.max_connections.get();
    let per_peer = limits.max_connections_per_peer.get();
    let mut table = Table {
        base: Instant::now(),
        slots: HashMap::new(),
        per_peer: HashMap::new(),
        stats: Arc::clone(&stats),
    };
    let mut connections = JoinSet::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        .max_header_size(limits.max_head_bytes)
        // hyper's read buffer may not be smaller than its initial 8 KiB.
        .max_buf_size(limits.max_head_bytes.max(MIN_READ_BUFFER));
    let spawner = Spawner {
        http,
        service: TowerToHyperService::new(router),
        limits: limits.clone(),
        stats: Arc::clone(&stats),
        evictable: Arc::new(Notify::new()),
        shutdown: shutdown.clone(),
    };
    // A connection accepted while the table was full, waiting for a slot (at most one: no
    // other is accepted meanwhile, so the rest wait in the kernel's queue).
    let mut pending: Option<(TcpStream, SocketAddr)> = None;

    loop {
        if let Some((stream, peer)) = pending.take() {
            if table.len() < max || table.evict_oldest(None) {
                spawner.spawn(&mut table, &mut connections, stream, peer);
            } else {
                pending = Some((stream, peer));
            }
        }
        // A full table of busy connections admits no one until a connection ends or becomes
        // evictable.
        let can_accept = pending.is_none() && (table.len() < max || table.has_evictable());
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            Some(ended) = connections.join_next_with_id(), if !connections.is_empty() => {
                let id = match &ended {
                    Ok((id, ())) => *id,
                    Err(e) => e.id(),
                };
                table.remove(id);
                log_connection_end(ended.map(|_| ()));
            }
            () = spawner.evictable.notified(), if !can_accept => {}
            accepted = listener.accept(), if can_accept => match accepted {
                Ok((stream, peer)) => {
                    let ip = peer_key(peer.ip());
                    if table.peer_count(ip) >= per_peer && !table.evict_oldest(Some(ip)) {
                        stats.refused.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, "connection refused: the peer holds its limit of busy connections");
                        refuse(stream);
                        continue;
                    }
                    // Admitted at the top of the loop, now or once a slot frees.
                    pending = Some((stream, peer));
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
///
/// # Errors
///
/// The answer to send back (see above) when the body cannot be read whole.
pub async fn read_body(
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
pub fn error_response(status: StatusCode, message: &str) -> Response {
    let mut response = (status, Json(serde_json::json!({ "error": message }))).into_response();
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_shrink_from_half_full_to_the_minimum_at_full() {
        let (base, min) = (Duration::from_secs(10), Duration::from_secs(1));
        assert_eq!(shrink(base, min, 0.0), base);
        assert_eq!(shrink(base, min, 0.5), base);
        assert_eq!(shrink(base, min, 0.75), Duration::from_millis(5500));
        assert_eq!(shrink(base, min, 1.0), min);
        assert_eq!(shrink(base, min, 1.5), min);
        // A minimum above the base never lengthens the deadline.
        assert_eq!(shrink(min, base, 1.0), min);
    }

    #[test]
    fn a_peer_is_an_ipv4_address_or_an_ipv6_slash_64() {
        let v4: IpAddr = "192.0.2.7".parse().expect("an address");
        assert_eq!(peer_key(v4), v4);
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("an address");
        assert_eq!(peer_key(mapped), v4);
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("an address");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("an address");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("an address");
        assert_eq!(peer_key(a), peer_key(b));
        assert_ne!(peer_key(a), peer_key(other));
        assert_eq!(
            peer_key(a),
            "2001:db8:1:2::".parse::<IpAddr>().expect("an address")
        );
    }
}
