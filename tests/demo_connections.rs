//! The demo server's connection edges, in process: the demo's `serve` module serving a
//! one-route router on 127.0.0.1:0, driven by raw keep-alive connections bound to
//! different loopback source addresses (127.0.0.0/8 is all local), so that each stands
//! for another peer. Timeouts are far above the test's run time; nothing sleeps, and each
//! wait has a guard against a hang, not a clock assertion.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/demo/serve.rs"]
mod serve;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// How long a step may take before the test calls it a hang.
const GUARD: Duration = Duration::from_secs(10);

/// Serves the demo's way on a free port, with `max` connections, `per_peer` of them per
/// peer, and header and idle timeouts no test waits for.
async fn start(max: usize, per_peer: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new().route("/healthz", get(|| async { "ok" }));
    let limits = serve::Limits {
        header_timeout: Duration::from_secs(600),
        idle_timeout: Duration::from_secs(600),
        max_connections: max,
        max_connections_per_peer: per_peer,
        shutdown_timeout: Duration::from_secs(1),
    };
    tokio::spawn(serve::serve(
        listener,
        router,
        limits,
        std::future::pending(),
    ));
    addr
}

/// A connection to `server` from `127.0.0.<host>`.
async fn connect_from(host: u8, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, host), 0)))
        .unwrap();
    socket.connect(server).await.unwrap()
}

/// `GET /healthz` on a kept-alive connection: the body of a 200, or `None` when the
/// server closed the connection instead of answering.
async fn get_healthz(stream: &mut TcpStream) -> Option<String> {
    let exchange = async {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: demo\r\n\r\n")
            .await
            .ok()?;
        let mut received = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let text = String::from_utf8_lossy(&received).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .expect("a content-length")
                    .parse()
                    .unwrap();
                if body.len() >= length {
                    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                    return Some(body.to_owned());
                }
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(GUARD, exchange)
        .await
        .expect("neither answered nor closed: the connection waits for a slot")
}

/// `true` when the server closes `stream` (end of file or reset) without sending.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(GUARD, stream.read(&mut buf)).await {
        Ok(Ok(0) | Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_) => panic!("the connection stayed open"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_past_its_cap_is_closed_at_once_while_another_peer_is_served() {
    let server = start(64, 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = connect_from(2, server).await;
        assert_eq!(get_healthz(&mut stream).await.as_deref(), Some("ok"));
        held.push(stream);
    }
    // A fourth from 127.0.0.2 is closed without an answer.
    let mut over = connect_from(2, server).await;
    assert_eq!(get_healthz(&mut over).await, None, "served past the cap");
    // Another peer is served, and so are the three idle connections.
    let mut other = connect_from(3, server).await;
    assert_eq!(get_healthz(&mut other).await.as_deref(), Some("ok"));
    for stream in &mut held {
        assert_eq!(get_healthz(stream).await.as_deref(), Some("ok"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_slots_run_short_the_longest_idle_connections_make_room() {
    // 8 slots; from 7 open on, idle connections are closed to make room.
    let server = start(8, 6).await;
    // Every slot taken by an idle keep-alive connection, from three peers, each well
    // under its own cap.
    let mut idle = Vec::new();
    for host in [2, 2, 2, 3, 3, 3, 4, 4] {
        let mut stream = connect_from(host, server).await;
        assert_eq!(get_healthz(&mut stream).await.as_deref(), Some("ok"));
        idle.push(stream);
    }
    // A new client is served (without room made, it would wait in the backlog).
    let mut newcomer = connect_from(5, server).await;
    assert_eq!(get_healthz(&mut newcomer).await.as_deref(), Some("ok"));
    // Each of the last three connections accepted closed the one idle the longest:
    // the first three see the end of the stream.
    for (i, stream) in idle.iter_mut().enumerate().take(3) {
        assert!(closed_by_server(stream).await, "connection {i}");
    }
    // The others stayed open and still serve requests.
    for stream in &mut idle[3..] {
        assert_eq!(get_healthz(stream).await.as_deref(), Some("ok"));
    }
    assert_eq!(get_healthz(&mut newcomer).await.as_deref(), Some("ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_freed_by_a_peer_serves_that_peer_again() {
    // One slot, one connection per peer: each connection must find the previous one,
    // ended, no longer counted against the peer.
    let server = start(1, 1).await;
    for i in 0..50 {
        let mut stream = connect_from(2, server).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        let read = tokio::time::timeout(GUARD, stream.read_to_string(&mut answer))
            .await
            .expect("neither answered nor closed");
        assert!(
            read.is_ok() && answer.starts_with("HTTP/1.1 200"),
            "connection {i}: {read:?} {answer:?}"
        );
    }
}
