//! Shared test helpers: a store wrapper that counts calls, can hold a lookup open and
//! can fail on demand.
#![allow(dead_code, unreachable_pub)]

#[cfg(feature = "redis")]
pub mod redis_server;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod stores;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use tokio::sync::oneshot;
use tower_api_key::audit::{AuditEntry, AuditQuery};
use tower_api_key::key::{Digest, KeyFormat, KeyId, MintedKey};
use tower_api_key::store::{
    Applied, Change, KeyRecord, KeyStore, ManagedKeyStore, MemoryStore, Owner, StoreError,
    UsageBucket,
};

type HoldSlot = (oneshot::Sender<()>, oneshot::Receiver<()>);

/// Wraps a store (a [`MemoryStore`] unless told), counting lookups.
#[derive(Clone, Default)]
pub struct ProbeStore<S = MemoryStore> {
    pub inner: S,
    gets: Arc<AtomicUsize>,
    writes: Arc<AtomicUsize>,
    fail: Arc<AtomicBool>,
    delay: Arc<Mutex<Option<std::time::Duration>>>,
    hold: Arc<Mutex<Option<HoldSlot>>>,
}

/// A lookup held open by [`ProbeStore::hold_next_get`].
pub struct Held {
    started: oneshot::Receiver<()>,
    release: oneshot::Sender<()>,
}

impl Held {
    /// Waits until the held lookup has read the store.
    pub async fn started(&mut self) {
        (&mut self.started)
            .await
            .expect("held lookup never started");
    }

    /// Lets the held lookup return what it read.
    pub fn release(self) {
        let _ = self.release.send(());
    }
}

impl ProbeStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> ProbeStore<S> {
    /// Wraps `inner`.
    pub fn wrapping(inner: S) -> Self {
        Self {
            inner,
            gets: Arc::default(),
            writes: Arc::default(),
            fail: Arc::default(),
            delay: Arc::default(),
            hold: Arc::default(),
        }
    }

    /// Store lookups made so far (by id or digest).
    pub fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }

    /// Store writes made so far (changes and last-used touches).
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    /// Makes every call fail with `StoreError::Unavailable` until called with `false`.
    pub fn set_failing(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
    }

    /// Every lookup waits this long (with paused tokio time, instantly but only once
    /// every task is idle).
    pub fn set_delay(&self, delay: Option<std::time::Duration>) {
        *self.delay.lock().unwrap() = delay;
    }

    /// The next lookup reads the store, then waits until released before returning.
    pub fn hold_next_get(&self) -> Held {
        let (started_tx, started) = oneshot::channel();
        let (release, release_rx) = oneshot::channel();
        *self.hold.lock().unwrap() = Some((started_tx, release_rx));
        Held { started, release }
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            Err(StoreError::unavailable(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "database down",
            )))
        } else {
            Ok(())
        }
    }

    async fn after_read(&self) {
        let delay = *self.delay.lock().unwrap();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let hold = self.hold.lock().unwrap().take();
        if let Some((started, release)) = hold {
            let _ = started.send(());
            let _ = release.await;
        }
    }
}

impl<S: KeyStore> KeyStore for ProbeStore<S> {
    async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        let found = self.inner.get(id).await;
        self.after_read().await;
        found
    }

    async fn get_by_digest(&self, digest: &Digest) -> Result<Option<KeyRecord>, StoreError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        let found = self.inner.get_by_digest(digest).await;
        self.after_read().await;
        found
    }

    fn instance_id(&self) -> Option<usize> {
        self.inner.instance_id()
    }

    /// Not counted as a lookup: read once per cache, not per key.
    async fn tag_keys(&self) -> Result<Vec<tower_api_key::key::TagKey>, StoreError> {
        self.check()?;
        self.inner.tag_keys().await
    }
}

impl<S: ManagedKeyStore> ManagedKeyStore for ProbeStore<S> {
    async fn apply(&self, change: Change<'_>, audit: &[AuditEntry]) -> Result<Applied, StoreError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.apply(change, audit).await
    }

    async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.check()?;
        self.inner.audit_log(query).await
    }

    async fn list_by_owner(&self, owner: &Owner) -> Result<Vec<KeyRecord>, StoreError> {
        self.check()?;
        self.inner.list_by_owner(owner).await
    }

    async fn touch_last_used(&self, batch: &[(KeyId, OffsetDateTime)]) -> Result<(), StoreError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.touch_last_used(batch).await
    }

    async fn add_usage(&self, batch: &[UsageBucket]) -> Result<(), StoreError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.add_usage(batch).await
    }

    async fn usage(
        &self,
        key: &KeyId,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<UsageBucket>, StoreError> {
        self.check()?;
        self.inner.usage(key, from, to).await
    }

    async fn prune_usage(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.prune_usage(before).await
    }
}

/// `pb` with `live` and `test`, as in Performance Blocks.
pub fn pb_format() -> KeyFormat {
    KeyFormat::new("pb")
        .unwrap()
        .with_environments(["live", "test"])
        .unwrap()
}

/// A record for `minted`, owned by `acme`, with the given scopes.
pub fn record(minted: &MintedKey, scopes: &[&str], now: OffsetDateTime) -> KeyRecord {
    KeyRecord::new(
        minted,
        "test key",
        Owner::organization("acme"),
        scopes.iter().map(|s| (*s).to_owned()).collect(),
        now,
    )
}

/// The demo binary that `cargo test` built next to the test executables.
pub fn demo_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let bin = profile_dir
        .join("examples")
        .join(format!("demo{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "demo binary not built at {}", bin.display());
    bin
}

/// A running demo binary; killed when dropped.
pub struct DemoProcess {
    pub child: std::process::Child,
    pub base: String,
    pub admin_keys: Vec<(String, String)>,
}

impl DemoProcess {
    /// Starts the demo on 127.0.0.1:0 with `args`, reading its startup lines.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_keys(args, 2)
    }

    /// Like [`DemoProcess::start`], expecting `keys` admin key lines (none on a
    /// database that already holds keys).
    pub fn start_with_keys(args: &[&str], keys: usize) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(demo_binary())
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the demo");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let first = lines.next().expect("a first line").expect("utf-8");
        let base = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        let mut admin_keys = Vec::new();
        for _ in 0..keys {
            let line = lines.next().expect("an admin key line").expect("utf-8");
            let (org, key) = line
                .strip_prefix("admin key for ")
                .and_then(|rest| rest.split_once(" (shown once): "))
                .unwrap_or_else(|| panic!("unexpected line {line:?}"));
            admin_keys.push((org.to_owned(), key.to_owned()));
        }
        Self {
            child,
            base,
            admin_keys,
        }
    }

    pub fn key(&self, org: &str) -> &str {
        &self
            .admin_keys
            .iter()
            .find(|(o, _)| o == org)
            .expect("org")
            .1
    }
}

impl DemoProcess {
    /// Sends SIGTERM and waits (up to 10 s) for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the demo did not exit after SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A log writer for `tracing_subscriber::fmt().with_writer(…)` whose text tests read.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Installs, for the whole test binary (the recorder and the subscriber are
    /// global, so a binary that uses this holds one test), a `metrics` recorder and a
    /// subscriber writing every event at `INFO` and above here; returns the recorder's
    /// snapshotter and the log.
    #[allow(dead_code)]
    pub fn install() -> (metrics_util::debugging::Snapshotter, Self) {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().unwrap();
        let captured = Self::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        (snapshotter, captured)
    }
}

impl Captured {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
