//! Bytes of memory per cached key: fills a `CachedStore` with 1,000,000 records and
//! reads the resident set size (`/proc/self/statm`) before and after.
//!
//! Run with `cargo bench --bench memory` (Linux only; prints the figure).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::Duration;

use tower_api_key::key::KeyFormat;
use tower_api_key::store::{CachedStore, KeyRecord, KeyStore, MemoryStore, Owner};

const KEYS: usize = 1_000_000;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm (Linux)");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
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
        for _ in 0..KEYS {
            let minted = format.generate(Some("live")).unwrap();
            let record = KeyRecord::new(
                &minted,
                "integration key",
                Owner::organization("acme"),
                scopes.clone(),
                now,
            );
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
        println!("cached entries: {entries}");
        println!(
            "resident before: {} MiB, after: {} MiB",
            before >> 20,
            after >> 20
        );
        println!("bytes per cached key: {per_key:.0}");
    });
}
