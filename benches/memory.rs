//! Bytes of memory per cached key: fills a `CachedStore` with 1,000,000 records and
//! reads the resident set size (`/proc/self/statm`) before and after.
//!
//! `cached_store` gives every key the same owner, name and scopes and leaves the
//! optional fields empty; `cached_store_varied` is closer to a real population: an
//! owner per ten keys, a name per key, one of eight scope lists, a creator and a
//! last-used time on every key, metadata on one in ten.
//!
//! Then, for comparison, measures moka's own cost per entry the same way.
//!
//! Run with `cargo bench --bench memory` (Linux only; prints the figures).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::Duration;

use tower_api_key::key::KeyFormat;
use tower_api_key::store::{CachedStore, KeyRecord, ManagedKeyStore, MemoryStore, Owner};

const KEYS: usize = 1_000_000;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm (Linux)");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Selects one measurement in a child process: freed memory stays with the allocator,
/// so each measurement runs in a fresh process of its own.
const PHASE: &str = "TOWER_API_KEY_MEMORY_PHASE";

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    match std::env::var(PHASE).as_deref() {
        Ok("cached_store") => cached_store(false),
        Ok("cached_store_varied") => cached_store(true),
        Ok("moka_plain") => moka_plain(),
        Ok("moka_configured") => moka_configured(),
        _ => {
            let exe = std::env::current_exe().expect("the bench's own path");
            for phase in [
                "cached_store",
                "cached_store_varied",
                "moka_plain",
                "moka_configured",
            ] {
                let status = std::process::Command::new(&exe)
                    .env(PHASE, phase)
                    .status()
                    .expect("run a measurement");
                assert!(status.success(), "measurement {phase} failed");
            }
        }
    }
}

fn cached_store(varied: bool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let format = KeyFormat::new("pb")
            .unwrap()
            .with_environments(["live", "test"])
            .unwrap();
        let memory = MemoryStore::new();
        let now = time::OffsetDateTime::now_utc();
        let scopes: Vec<String> = ["session:read", "employees:read", "observations:write"]
            .map(String::from)
            .to_vec();
        let mut ids = Vec::with_capacity(KEYS);
        let lists: Vec<Vec<String>> = (0..8)
            .map(|i| {
                let mut list = scopes.clone();
                list.truncate(1 + i % 3);
                list.push(format!("reports{i}:read"));
                list
            })
            .collect();
        for i in 0..KEYS {
            let minted = format.generate(Some("live")).unwrap();
            let record = if varied {
                let mut record = KeyRecord::new(
                    &minted,
                    format!("integration key {i}"),
                    Owner::organization(format!("org_{:08}", i / 10)),
                    lists[i % lists.len()].clone(),
                    now,
                )
                .with_created_by(format!("key_{:019}", i / 10));
                record.last_used_at = Some(now);
                if i % 10 == 0 {
                    record.metadata.insert("team".into(), "data".into());
                }
                record
            } else {
                KeyRecord::new(
                    &minted,
                    "integration key",
                    Owner::organization("acme"),
                    scopes.clone(),
                    now,
                )
            };
            memory.insert(&record).await.unwrap();
            ids.push(minted.id);
        }
        let cache = CachedStore::builder(memory)
            .with_ttl(Duration::from_secs(3600))
            .with_max_entries(2 * KEYS as u64)
            .with_max_bytes(8 * 1024 * 1024 * 1024)
            .build()
            .unwrap();
        let before = resident_bytes();
        for id in &ids {
            cache.lookup_id(id).await.unwrap();
        }
        let entries = cache.entry_count();
        let after = resident_bytes();
        let per_key = (after - before) as f64 / entries as f64;
        println!(
            "{} records, cached entries: {entries}",
            if varied { "varied" } else { "uniform" }
        );
        println!(
            "resident before: {} MiB, after: {} MiB",
            before >> 20,
            after >> 20
        );
        println!("bytes per cached key: {per_key:.0}");
    });
}
/// moka's own cost per entry, for comparison: the same number of entries with nothing
/// of ours in them, with a key and value of the sizes `CachedStore` uses (a 33-byte
/// key, a 32-byte value), a weigher and one time-to-live, as `CachedStore` configures
/// it. [`moka_plain`] is the same as `u64 -> u64` with no expiry.
fn moka_plain() {
    let before = resident_bytes();
    let plain: moka::sync::Cache<u64, u64> = moka::sync::Cache::new(2 * KEYS as u64);
    for i in 0..KEYS as u64 {
        plain.insert(i, i);
    }
    plain.run_pending_tasks();
    let per_entry = (resident_bytes() - before) as f64 / plain.entry_count() as f64;
    println!("moka alone, u64 -> u64: {per_entry:.0} bytes per entry");
}

fn moka_configured() {
    #[derive(Clone, Copy, PartialEq, Eq, Hash)]
    enum Key {
        Id([u8; 24]),
        // Never built: it gives the key `CachedStore`'s size (33 bytes).
        #[allow(dead_code)]
        Digest([u8; 32]),
    }
    #[derive(Clone)]
    struct Value {
        _record: Option<std::sync::Arc<u64>>,
        _fetched_at: i64,
    }

    let before = resident_bytes();
    let configured = moka::sync::Cache::builder()
        .max_capacity(8 * 1024 * 1024 * 1024)
        .weigher(|_: &Key, _: &Value| 400)
        .time_to_live(Duration::from_secs(3600))
        .build_with_hasher(ahash::RandomState::new());
    for i in 0..KEYS as u64 {
        let mut id = [0_u8; 24];
        id[..8].copy_from_slice(&i.to_le_bytes());
        let value = Value {
            _record: None,
            _fetched_at: 0,
        };
        configured.insert(Key::Id(id), value);
    }
    configured.run_pending_tasks();
    let per_entry = (resident_bytes() - before) as f64 / configured.entry_count() as f64;
    println!("moka alone, configured as CachedStore, empty values: {per_entry:.0} bytes per entry");
}
