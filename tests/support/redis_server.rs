//! A private `redis-server` on a free loopback port, started and stopped by the test
//! (never the shared server on 6379). Tests that need one are skipped, saying so, when
//! `redis-server` is not installed.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// A fresh server, or `None` (after saying so) without `redis-server`.
    pub fn start() -> Option<Self> {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut server = Self { port, child: None };
        if !server.spawn() {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("skipped: redis-server is not installed");
            }
            return None;
        }
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server; connections to it are refused until [`RedisServer::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty).
    pub fn restart(&mut self) {
        self.stop();
        assert!(self.spawn(), "redis-server could not be started again");
    }

    fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            return false;
        };
        self.child = Some(child);
        // Ready once it accepts connections (bounded: a few seconds at most).
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
