//! Usage per key on every store: buckets added to and never replaced, read by hour
//! range, pruned past the retention. PostgreSQL cases run when
//! `TOWER_API_KEY_TEST_POSTGRES_URL` is set.

mod support;

use std::future::Future;
use std::pin::Pin;

use time::macros::datetime;
use time::OffsetDateTime;
use tower_api_key::key::KeyId;
use tower_api_key::store::{ManagedKeyStore, MemoryStore, UsageBucket, UsageCounts};

type Reopen<S> = Box<dyn Fn() -> Pin<Box<dyn Future<Output = S> + Send>> + Send + Sync>;

fn counts(admitted: u64, scope: u64, rate: u64, quota: u64) -> UsageCounts {
    UsageCounts {
        admitted,
        refused_scope: scope,
        refused_rate_limit: rate,
        refused_quota: quota,
    }
}

mod cases {
    use super::*;

    /// The store's side: buckets are added to, never replaced; a range `[from, to)`
    /// holds the buckets whose hour starts in it; pruning drops what starts before.
    pub(crate) async fn stores_add_read_and_prune_buckets<S: ManagedKeyStore>(
        store: S,
        reopen: Reopen<S>,
    ) {
        let key = KeyId::new("usage_key_1").unwrap();
        let other = KeyId::new("usage_key_2").unwrap();
        let hour = |h: i64| datetime!(2026-03-10 00:00 UTC) + time::Duration::hours(h);
        let bucket = |id: KeyId, h: i64, c: UsageCounts| UsageBucket {
            key_id: id,
            hour: hour(h),
            counts: c,
        };
        store
            .add_usage(&[
                bucket(key, 10, counts(3, 1, 2, 0)),
                bucket(key, 11, counts(5, 0, 0, 1)),
                bucket(other, 10, counts(1, 0, 0, 0)),
            ])
            .await
            .unwrap();
        store
            .add_usage(&[bucket(key, 11, counts(1, 1, 1, 1))])
            .await
            .unwrap();
        store.add_usage(&[]).await.unwrap();
        let read = |store: S, from: OffsetDateTime, to: OffsetDateTime| async move {
            store
                .usage(&key, from, to)
                .await
                .unwrap()
                .into_iter()
                .map(|b| (b.key_id, b.hour, b.counts))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            read(store.clone(), hour(0), hour(24)).await,
            vec![
                (key, hour(10), counts(3, 1, 2, 0)),
                (key, hour(11), counts(6, 1, 1, 2)),
            ]
        );
        // A bucket belongs to a range when its hour starts in it.
        let half = time::Duration::minutes(30);
        assert_eq!(
            read(store.clone(), hour(10) + half, hour(24)).await.len(),
            1
        );
        assert_eq!(read(store.clone(), hour(10), hour(11)).await.len(), 1);
        assert_eq!(
            read(store.clone(), hour(10), hour(11) + half).await.len(),
            2
        );
        assert_eq!(read(store.clone(), hour(11), hour(10)).await, Vec::new());
        // What another instance reads is what was written.
        let again = reopen().await;
        assert_eq!(read(again, hour(0), hour(24)).await.len(), 2);
        // Pruning drops the buckets that start before the instant, of every key.
        assert_eq!(store.prune_usage(hour(10) + half).await.unwrap(), 2);
        assert_eq!(
            read(store.clone(), hour(0), hour(24)).await,
            vec![(key, hour(11), counts(6, 1, 1, 2))]
        );
        assert!(store
            .usage(&other, hour(0), hour(24))
            .await
            .unwrap()
            .is_empty());
    }
}

macro_rules! suite {
    ($module:ident, $open:expr) => {
        suite!(@cases $module, $open,
            stores_add_read_and_prune_buckets,
        );
    };
    (@cases $module:ident, $open:expr, $($case:ident),* $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    // `_guard` keeps the database until the case ends.
                    let Some((store, reopen, _guard)) = ($open) else { return };
                    super::cases::$case(store, reopen).await;
                }
            )*
        }
    };
}

suite!(memory, {
    let store = MemoryStore::new();
    let same = store.clone();
    // A memory store lives in the process: a restart is the same store seen afresh.
    let reopen: Reopen<MemoryStore> = Box::new(move || {
        let same = same.clone();
        Box::pin(async move { same })
    });
    Some((store, reopen, ()))
});

#[cfg(feature = "sqlite")]
suite!(sqlite, {
    let db = support::stores::TempDb::new().await;
    let url = support::stores::url(&db.path);
    let reopen: Reopen<tower_api_key::store::sql::SqliteStore> = Box::new(move || {
        let url = url.clone();
        Box::pin(async move {
            tower_api_key::store::sql::SqliteStore::connect(&url)
                .await
                .unwrap()
        })
    });
    Some((db.store.clone(), reopen, db))
});

#[cfg(feature = "postgres")]
suite!(postgres, {
    match support::stores::TestSchema::new().await {
        None => None,
        Some(db) => {
            let db = std::sync::Arc::new(db);
            let again = std::sync::Arc::clone(&db);
            let reopen: Reopen<tower_api_key::store::sql::PostgresStore> = Box::new(move || {
                let again = std::sync::Arc::clone(&again);
                Box::pin(async move { again.connect().await })
            });
            Some((db.store.clone(), reopen, db))
        }
    }
});
