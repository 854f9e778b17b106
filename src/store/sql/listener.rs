use std::fmt;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::key::{Digest, KeyId};
use crate::store::{CachedStore, KeyStore};

/// The first wait after a failed reconnection; it doubles after each failure.
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The handle of a listener started by
/// [`PostgresStore::spawn_invalidation_listener`](super::PostgresStore::spawn_invalidation_listener).
///
/// Dropping it leaves the listener running; [`ListenerHandle::abort`] stops it.
#[derive(Debug)]
pub struct ListenerHandle {
    task: JoinHandle<()>,
    state: watch::Receiver<State>,
}

#[derive(Debug, Clone, Copy, Default)]
struct State {
    listening: bool,
    connections: u64,
    notifications: u64,
    backend_pid: Option<i32>,
}

impl ListenerHandle {
    /// Waits until the listener is connected and listening (at once if it is). Once it
    /// returns, every change committed from then on reaches the cache.
    pub async fn ready(&self) {
        let mut state = self.state.clone();
        // An error means the task has stopped: nothing more to wait for.
        let _ = state.wait_for(|s| s.listening).await;
    }

    /// `true` while the listener's connection is up and listening.
    pub fn is_listening(&self) -> bool {
        self.state.borrow().listening
    }

    /// How many times the listener connected again after losing its connection. Each
    /// time, it cleared the cache.
    pub fn reconnects(&self) -> u64 {
        self.state.borrow().connections.saturating_sub(1)
    }

    /// Notifications received so far.
    pub fn notifications(&self) -> u64 {
        self.state.borrow().notifications
    }

    /// The PostgreSQL process id serving the listener's connection while it is
    /// connected (as in `pg_stat_activity.pid`).
    pub fn backend_pid(&self) -> Option<i32> {
        self.state.borrow().backend_pid
    }

    /// Stops the listener. The cache stays as it is, and from then on learns of other
    /// instances' changes only through its TTL.
    pub fn abort(&self) {
        self.task.abort();
    }

    /// `true` once the listener has stopped.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

pub(super) fn spawn<S: KeyStore>(
    options: PgConnectOptions,
    channel: String,
    cache: CachedStore<S>,
) -> ListenerHandle {
    // A pool of one connection of its own, so the listener never takes a connection
    // from the store's pool, and the store's pool never hands out the listener's.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        // A connection handed back after an error may be dead: check it first.
        .test_before_acquire(true)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_lazy_with(options);
    let (tx, state) = watch::channel(State::default());
    let task = tokio::spawn(run(pool, channel, cache, tx));
    ListenerHandle { task, state }
}

async fn run<S: KeyStore>(
    pool: PgPool,
    channel: String,
    cache: CachedStore<S>,
    state: watch::Sender<State>,
) {
    let mut failures: u32 = 0;
    loop {
        match listen(&pool, &channel).await {
            Ok((mut listener, pid)) => {
                // Anything may have changed while nobody was listening.
                cache.invalidate_all();
                let first = state.borrow().connections == 0;
                state.send_modify(|s| {
                    s.listening = true;
                    s.connections += 1;
                    s.backend_pid = Some(pid);
                });
                if first {
                    tracing::debug!(channel, pid, "key invalidation listener started");
                } else {
                    tracing::warn!(
                        channel,
                        pid,
                        after_failures = failures,
                        "key invalidation listener reconnected; the key cache was cleared"
                    );
                }
                failures = 0;
                let reason = receive(&mut listener, &cache, &state).await;
                state.send_modify(|s| {
                    s.listening = false;
                    s.backend_pid = None;
                });
                tracing::warn!(
                    channel,
                    reason = %reason,
                    "key invalidation listener lost its connection; reconnecting. Until it \
                     is back, other instances' revocations reach this one within the cache TTL"
                );
                drop(listener);
            }
            Err(error) => {
                let delay = backoff(failures);
                failures = failures.saturating_add(1);
                tracing::warn!(
                    channel,
                    %error,
                    retry_in = ?delay,
                    "key invalidation listener could not connect"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// `INITIAL_BACKOFF` doubled per earlier failure, capped at `MAX_BACKOFF`.
fn backoff(failures: u32) -> Duration {
    INITIAL_BACKOFF
        .saturating_mul(1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX))
        .min(MAX_BACKOFF)
}

async fn listen(pool: &PgPool, channel: &str) -> Result<(PgListener, i32), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // Losing the connection ends `try_recv` with `Ok(None)`; reconnecting is ours to do,
    // with backoff, and followed by clearing the cache.
    listener.eager_reconnect(false);
    listener.listen(channel).await?;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut listener)
        .await?;
    Ok((listener, pid))
}

/// Applies notifications until the connection is lost; returns why.
async fn receive<S: KeyStore>(
    listener: &mut PgListener,
    cache: &CachedStore<S>,
    state: &watch::Sender<State>,
) -> String {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                apply(cache, notification.payload());
                state.send_modify(|s| s.notifications += 1);
            }
            Ok(None) => return "the connection was closed".to_owned(),
            Err(error) => return error.to_string(),
        }
    }
}

/// What a notification asks for.
#[derive(Debug, PartialEq)]
enum Invalidation {
    Key(KeyId, Option<Digest>),
    All,
}

fn parse(payload: &str) -> Invalidation {
    if payload == "*" {
        return Invalidation::All;
    }
    let (id, digest) = match payload.split_once(' ') {
        Some((id, hex)) => match Digest::from_hex(hex) {
            Ok(digest) => (id, Some(digest)),
            Err(_) => return Invalidation::All,
        },
        None => (payload, None),
    };
    match KeyId::new(id) {
        Ok(id) => Invalidation::Key(id, digest),
        // Not a payload this crate sends: clear everything rather than guess.
        Err(_) => Invalidation::All,
    }
}

fn apply<S: KeyStore>(cache: &CachedStore<S>, payload: &str) {
    match parse(payload) {
        Invalidation::Key(id, digest) => {
            cache.invalidate(&id);
            if let Some(digest) = digest {
                cache.invalidate_digest(&digest);
            }
        }
        Invalidation::All => {
            if payload != "*" {
                tracing::warn!(
                    payload = %Truncated(payload),
                    "unexpected key invalidation payload; clearing the key cache"
                );
            }
            cache.invalidate_all();
        }
    }
}

struct Truncated<'a>(&'a str);

impl fmt::Display for Truncated<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(80) {
            Some((end, _)) => write!(f, "{}…", &self.0[..end]),
            None => f.write_str(self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let waits: Vec<u128> = (0..10).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(
            waits,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
        );
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn payloads_name_a_key_and_its_digest_or_everything() {
        let digest = Digest::of("k");
        let id = KeyId::new("abc").unwrap();
        assert_eq!(
            parse(&format!("abc {}", digest.to_hex())),
            Invalidation::Key(id, Some(digest))
        );
        assert_eq!(parse("abc"), Invalidation::Key(id, None));
        assert_eq!(parse("*"), Invalidation::All);
        assert_eq!(parse("not an id!"), Invalidation::All);
        assert_eq!(parse("abc 12"), Invalidation::All);
        assert_eq!(parse(""), Invalidation::All);
    }

    #[test]
    fn long_payloads_are_cut_in_logs() {
        let long = "x".repeat(200);
        assert_eq!(Truncated(&long).to_string().chars().count(), 81);
        assert_eq!(Truncated("short").to_string(), "short");
    }
}
