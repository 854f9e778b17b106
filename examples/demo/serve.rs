//! Serving the router with bounds: hyper's HTTP/1 connection builder with a
//! header-read timeout, an idle timeout on the socket, a cap on connections and on
//! connections per peer, idle connections closed first when the slots run short, and a
//! graceful-shutdown deadline (axum's `serve` has none of them).
//!
//! - **Per peer**: a peer address (an IPv6 /64, as [`partition`] counts clients) holds at
//!   most `max_connections_per_peer` connections. One more is closed as soon as it is
//!   accepted, without a response and without taking one of the `max_connections`
//!   slots, so one client cannot hold them all.
//! - **Nearly full**: from nine tenths of `max_connections` (rounded down) on, each
//!   accepted connection makes room: the connections idle the longest (between requests,
//!   or open and silent) are closed with hyper's graceful shutdown until fewer than nine
//!   tenths remain open, so many clients holding idle connections cannot starve a new
//!   one. A connection in the middle of a request is not chosen, and graceful shutdown
//!   never cuts a response short.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;
use tower_api_key::client::partition;

/// The server's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// At most `max_connections` (a larger value is that).
    pub max_connections_per_peer: usize,
    pub shutdown_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets in-flight
/// requests finish for at most `limits.shutdown_timeout`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let connections = Connections::new(limits.max_connections, limits.max_connections_per_peer);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // `true` once the server shuts down; every connection holds a receiver, so the
    // sender sees when the last one has ended.
    let (stopping, _) = watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut unused: Option<OwnedSemaphorePermit> = None;
    loop {
        // Past the cap, wait for a connection to end before accepting another.
        let permit = match unused.take() {
            Some(permit) => permit,
            None => tokio::select! {
                permit = Arc::clone(&permits).acquire_owned() => permit.expect("never closed"),
                () = &mut shutdown => break,
            },
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off, do not spin.
                    tracing::warn!(%error, "accept failed");
                    unused = Some(permit);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let registered = match connections.register(peer.ip(), permit) {
            Ok(registered) => registered,
            Err(permit) => {
                // Closed at once; the slot stays free for the next connection.
                tracing::debug!(%peer, "over the per-peer connection cap; closed");
                drop(stream);
                unused = Some(permit);
                continue;
            }
        };
        connections.make_room(registered.id);
        let _ = stream.set_nodelay(true);
        let conn = &registered.conn;
        let stream = Tracked::new(stream, Arc::clone(&conn.activity));
        let idle = Arc::clone(&conn.activity);
        let (started, finished) = (Arc::clone(conn), Arc::clone(conn));
        let service = router
            .clone()
            .map_request(move |mut req: http::Request<Incoming>| {
                started.busy.store(true, Ordering::Relaxed);
                req.extensions_mut().insert(ConnectInfo(peer));
                req.map(axum::body::Body::new)
            })
            .map_response(move |response| {
                finished.busy.store(false, Ordering::Relaxed);
                response
            });
        // No upgrades: the demo has no WebSocket routes.
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let idle_timeout = limits.idle_timeout;
        let mut stopping = stopping.subscribe();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let mut expired = std::pin::pin!(idle.expired(idle_timeout));
            let mut closing = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(error) = result {
                            tracing::debug!(%peer, %error, "connection ended with an error");
                        }
                        break;
                    }
                    () = &mut expired => {
                        tracing::debug!(%peer, "connection idle too long; closed");
                        break;
                    }
                    // Closes it now if it is between requests, else after the response.
                    () = registered.conn.close.notified(), if !closing => {
                        tracing::debug!(%peer, "slots nearly full: idle connection closed");
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    _ = stopping.changed(), if !closing => {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            // Forgotten, and its slot free for the next connection.
            drop(registered);
        });
    }
    drop(listener);
    tracing::info!("shutting down: finishing in-flight requests");
    stopping.send_replace(true);
    if tokio::time::timeout(limits.shutdown_timeout, stopping.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            timeout = ?limits.shutdown_timeout,
            "connections still open at the shutdown deadline; closing them"
        );
    }
}

/// The open connections: how many each peer holds, and which to close when the slots
/// run short.
struct Connections {
    registry: Mutex<Registry>,
    per_peer: usize,
    /// Nine tenths of the cap: from this many open connections on, idle ones are closed.
    crowded: usize,
    /// When [`Activity`] times start.
    epoch: Instant,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    open: HashMap<u64, Arc<Conn>>,
    per_peer: HashMap<IpAddr, usize>,
    /// Open connections told to close that have not ended yet.
    closing: usize,
}

/// One open connection, as the registry sees it.
struct Conn {
    /// Its peer's partition.
    peer: IpAddr,
    activity: Arc<Activity>,
    /// A request is being served.
    busy: AtomicBool,
    /// Told to close (under the registry's lock).
    closing: AtomicBool,
    close: Notify,
}

/// A connection's place in the registry and its slot, given up when dropped: the
/// registry forgets it first, so the connection accepted into the freed slot never finds
/// this one still counted against its peer.
struct Registered {
    id: u64,
    conn: Arc<Conn>,
    connections: Arc<Connections>,
    /// Dropped after [`Registered::drop`] has run.
    _slot: OwnedSemaphorePermit,
}

impl Connections {
    fn new(max_connections: usize, per_peer: usize) -> Arc<Self> {
        Arc::new(Self {
            registry: Mutex::default(),
            per_peer: per_peer.clamp(1, max_connections.max(1)),
            crowded: (max_connections - max_connections.div_ceil(10)).max(1),
            epoch: Instant::now(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a connection from `ip` in `slot`, or hands the slot back when its peer
    /// is at the cap.
    fn register(
        self: &Arc<Self>,
        ip: IpAddr,
        slot: OwnedSemaphorePermit,
    ) -> Result<Registered, OwnedSemaphorePermit> {
        let peer = partition(ip);
        let mut registry = self.lock();
        let held = registry.per_peer.entry(peer).or_insert(0);
        if *held >= self.per_peer {
            return Err(slot);
        }
        *held += 1;
        let id = registry.next_id;
        registry.next_id += 1;
        let conn = Arc::new(Conn {
            peer,
            activity: Arc::new(Activity::new(self.epoch)),
            busy: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            close: Notify::new(),
        });
        registry.open.insert(id, Arc::clone(&conn));
        Ok(Registered {
            id,
            conn,
            connections: Arc::clone(self),
            _slot: slot,
        })
    }

    /// When the slots are nearly full, tells the connections idle the longest (but not
    /// `newest`, just accepted) to close, until fewer than nine tenths stay open.
    fn make_room(&self, newest: u64) {
        let mut registry = self.lock();
        let staying = registry.open.len() - registry.closing;
        if staying < self.crowded {
            return;
        }
        let mut idle: Vec<(u64, u64, &Arc<Conn>)> = registry
            .open
            .iter()
            .filter(|(id, conn)| {
                **id != newest
                    && !conn.busy.load(Ordering::Relaxed)
                    && !conn.closing.load(Ordering::Relaxed)
            })
            .map(|(id, conn)| (conn.activity.last.load(Ordering::Relaxed), *id, conn))
            .collect();
        idle.sort_unstable_by_key(|(last, id, _)| (*last, *id));
        let mut told = 0;
        for (.., conn) in idle.into_iter().take(staying + 1 - self.crowded) {
            conn.closing.store(true, Ordering::Relaxed);
            conn.close.notify_one();
            told += 1;
        }
        registry.closing += told;
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut registry = self.connections.lock();
        registry.open.remove(&self.id);
        if self.conn.closing.load(Ordering::Relaxed) {
            registry.closing -= 1;
        }
        if let Some(held) = registry.per_peer.get_mut(&self.conn.peer) {
            *held -= 1;
            if *held == 0 {
                registry.per_peer.remove(&self.conn.peer);
            }
        }
    }
}

/// A socket that remembers when a byte last moved either way.
struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
}

/// When a byte last moved (or the connection was accepted), in milliseconds since
/// `start`, the server's epoch: comparable across connections.
struct Activity {
    start: Instant,
    last: AtomicU64,
}

impl Activity {
    fn new(start: Instant) -> Self {
        let activity = Self {
            start,
            last: AtomicU64::new(0),
        };
        activity.touch();
        activity
    }

    fn touch(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    /// Resolves once nothing moved for `timeout`.
    async fn expired(self: Arc<Self>, timeout: Duration) {
        loop {
            let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
            let deadline = self.start + last + timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

impl Tracked {
    fn new(stream: TcpStream, activity: Arc<Activity>) -> Self {
        Self { stream, activity }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The address a listener is bound to, for the startup line.
pub fn local_addr(listener: &TcpListener, fallback: SocketAddr) -> String {
    listener
        .local_addr()
        .map_or_else(|_| fallback.to_string(), |a| a.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn slot() -> OwnedSemaphorePermit {
        Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap()
    }

    #[test]
    fn nine_tenths_rounded_down_is_crowded() {
        let crowded = |max| Connections::new(max, 64).crowded;
        assert_eq!(crowded(1_024), 921);
        assert_eq!(crowded(10), 9);
        assert_eq!(crowded(8), 7);
        assert_eq!(crowded(1), 1);
        // The per-peer cap is at most the cap.
        assert_eq!(Connections::new(8, 64).per_peer, 8);
    }

    #[tokio::test]
    async fn peers_are_counted_per_partition_until_their_connections_end() {
        let connections = Connections::new(100, 2);
        let first = connections.register(ip("2001:db8:1:2::1"), slot()).unwrap();
        // Another address in the same /64 is the same peer.
        let _second = connections
            .register(ip("2001:db8:1:2:ffff::9"), slot())
            .unwrap();
        assert!(connections.register(ip("2001:db8:1:2::3"), slot()).is_err());
        // Another /64 is another peer; IPv4 and its mapped form are one peer.
        let _other = connections.register(ip("2001:db8:1:3::1"), slot()).unwrap();
        let v4 = connections.register(ip("192.0.2.1"), slot()).unwrap();
        let _mapped = connections
            .register(ip("::ffff:192.0.2.1"), slot())
            .unwrap();
        assert!(connections.register(ip("192.0.2.1"), slot()).is_err());
        // A connection that ends frees its place.
        drop(first);
        let _third = connections.register(ip("2001:db8:1:2::3"), slot()).unwrap();
        drop(v4);
        let registry = connections.lock();
        assert_eq!(registry.open.len(), 4);
        assert_eq!(registry.per_peer[&ip("2001:db8:1:2::")], 2);
        assert_eq!(registry.per_peer[&ip("192.0.2.1")], 1);
    }

    #[tokio::test]
    async fn room_is_made_from_the_longest_idle_never_the_busy_or_the_newest() {
        // 10 slots: crowded from 9 open on.
        let connections = Connections::new(10, 10);
        let open: Vec<Registered> = (1..=9u8)
            .map(|i| {
                connections
                    .register(IpAddr::from([192, 0, 2, i]), slot())
                    .unwrap()
            })
            .collect();
        // Last active at 900, 800, … 100 ms; the one idle the longest is busy.
        for (i, registered) in open.iter().enumerate() {
            let last = 900 - 100 * i as u64;
            registered.conn.activity.last.store(last, Ordering::Relaxed);
        }
        open[8].conn.busy.store(true, Ordering::Relaxed);
        let told = || {
            open.iter()
                .map(|r| r.conn.closing.load(Ordering::Relaxed))
                .collect::<Vec<_>>()
        };
        // 9 open: one is told to close, the longest idle that is not busy.
        connections.make_room(open[0].id);
        let mut expected = [false; 9];
        expected[7] = true;
        assert_eq!(told(), expected);
        // Still 8 staying: nothing more to do.
        connections.make_room(open[0].id);
        assert_eq!(told(), expected);
        // A tenth: the next longest idle, not the newest.
        // The newest, however long its peer was silent, is never told.
        let newest = connections.register(ip("192.0.2.100"), slot()).unwrap();
        newest.conn.activity.last.store(0, Ordering::Relaxed);
        connections.make_room(newest.id);
        expected[6] = true;
        assert_eq!(told(), expected);
        assert!(!newest.conn.closing.load(Ordering::Relaxed));
        // Those told end; the count of closing connections follows.
        drop(open);
        assert_eq!(connections.lock().closing, 0);
    }
}
