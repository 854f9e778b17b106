//! Revocation always wins over stale-if-error, on every store: one suite, written once
//! and run against the memory store, SQLite, and PostgreSQL when
//! `TOWER_API_KEY_TEST_POSTGRES_URL` is set.
//!
//! While the store is down, `CachedStore` answers from records past their TTL for the
//! stale-if-error window (300 s). A record this instance has seen changed (revoked,
//! re-scoped, rotated with no grace) must never answer again from that window, for a
//! native key (looked up by id) and an imported one (looked up by digest), whichever
//! way each was cached, and whichever way the change was heard: made through the
//! cache, or made elsewhere and reported by `invalidate(id)` (as the PostgreSQL
//! store's NOTIFY does), `invalidate_digest` or `invalidate_record`.
//!
//! Every scenario runs under two TTLs. The default 30 s, moved past with the injected
//! clock. And 1 ns, the case of the report: the id→digest index used to expire with
//! the TTL while the records live for the TTL plus the window, and then
//! `invalidate(id)` missed the digest entry and the outage brought the old record
//! back. moka measures expiry in real time and purges expired entries in its
//! housekeeping (run every 64 writes), so with a 1 ns TTL each key is followed by
//! enough index writes of another key ([`World::churn`]) for an index that expired
//! with the TTL to be gone before the key changes.

mod support;

use std::time::Duration;

use support::{pb_format, ProbeStore};
use time::macros::datetime;
use time::OffsetDateTime;
use tower_api_key::clock::{Clock, ManualClock};
use tower_api_key::key::{Digest, KeyFormat, KeyId};
use tower_api_key::parts::KeyVerifier;
use tower_api_key::store::{
    Applied, CachedStore, Change, KeyRecord, KeyStore, ManagedKeyStore, MemoryStore, Owner,
};
use tower_api_key::RejectionKind;

/// A start with nanoseconds below the microsecond, which the SQL stores truncate.
const START: OffsetDateTime = datetime!(2026-03-01 09:30:00.123456789 UTC);

/// The stale-if-error window (the default).
const WINDOW: Duration = Duration::from_secs(300);

/// The TTLs every scenario runs under: the default, and one that real time passes at
/// once (see the module docs).
const TTLS: [Duration; 2] = [Duration::from_secs(30), Duration::from_nanos(1)];

const WIDE: [&str; 2] = ["reports:read", "reports:write"];
const NARROW: [&str; 1] = ["reports:read"];

fn format() -> KeyFormat {
    pb_format().with_imported_prefix("legacy_").unwrap()
}

fn owned(scopes: &[&str]) -> Vec<String> {
    scopes.iter().map(|s| (*s).to_owned()).collect()
}

/// One cache (and a verifier over it) in front of a store that can be switched off.
struct World<S: ManagedKeyStore> {
    clock: ManualClock,
    probe: ProbeStore<S>,
    cache: CachedStore<ProbeStore<S>>,
    auth: KeyVerifier<ProbeStore<S>>,
    ttl: Duration,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Minted by this crate, looked up by id.
    Native,
    /// Minted elsewhere, looked up by digest.
    Imported,
}

/// How the change reaches the cache.
#[derive(Clone, Copy, Debug)]
enum Heard {
    /// Made through the cache (`ManagedKeyStore::apply` on `CachedStore`).
    Through,
    /// Made behind the cache, then `invalidate(id)`, as NOTIFY does.
    Invalidate,
    /// Made behind the cache, then `invalidate_digest`.
    InvalidateDigest,
    /// Made behind the cache, then `invalidate_record` with the record as stored.
    InvalidateRecord,
}

const HEARD: [Heard; 4] = [
    Heard::Through,
    Heard::Invalidate,
    Heard::InvalidateDigest,
    Heard::InvalidateRecord,
];

/// A key and its secret.
struct Key {
    secret: String,
    record: KeyRecord,
}

impl Key {
    fn id(&self) -> &KeyId {
        &self.record.id
    }

    fn digest(&self) -> &Digest {
        &self.record.digest
    }
}

impl<S: ManagedKeyStore> World<S> {
    fn new(store: S, ttl: Duration) -> Self {
        let clock = ManualClock::new(START);
        let probe = ProbeStore::wrapping(store);
        let cache = CachedStore::builder(probe.clone())
            .with_clock(clock.clone())
            .with_ttl(ttl)
            .with_negative_ttl(ttl)
            .with_stale_if_error(WINDOW)
            .build()
            .unwrap();
        let auth = KeyVerifier::new(cache.clone(), format());
        Self {
            clock,
            probe,
            cache,
            auth,
            ttl,
        }
    }

    /// A key with the `WIDE` scopes, created through the cache, then looked up every
    /// way (so cached by id and by digest) while the store is up.
    async fn key(&self, kind: Kind) -> Key {
        let now = self.clock.now();
        let key = match kind {
            Kind::Native => {
                let minted = format().generate(Some("live")).unwrap();
                Key {
                    secret: minted.key.expose_secret().to_owned(),
                    record: support::record(&minted, &WIDE, now),
                }
            }
            Kind::Imported => {
                let id = KeyId::generate().unwrap();
                let secret = format!("legacy_{id}{}", KeyId::generate().unwrap());
                let record = KeyRecord::imported(
                    id,
                    Digest::of(&secret),
                    "legacy_",
                    "imported key",
                    Owner::organization("acme"),
                    owned(&WIDE),
                    now,
                );
                Key { secret, record }
            }
        };
        self.cache.insert(&key.record).await.unwrap();
        self.warm(&key).await;
        self.churn().await;
        key
    }

    /// With a TTL under a microsecond (which real time passes at once): 200 lookups by
    /// digest of another imported key, each refilling its index entry, so that moka's
    /// housekeeping has run on the index and purged what has expired. No effect on
    /// what any assertion expects.
    async fn churn(&self) {
        if self.ttl >= Duration::from_micros(1) {
            return;
        }
        let secret = format!("legacy_{}", KeyId::generate().unwrap());
        let filler = KeyRecord::imported(
            KeyId::generate().unwrap(),
            Digest::of(&secret),
            "legacy_",
            "filler",
            Owner::organization("acme"),
            vec![],
            self.clock.now(),
        );
        self.cache.insert(&filler).await.unwrap();
        for _ in 0..200 {
            self.clock.advance(self.ttl);
            let found = self.cache.get_by_digest(&filler.digest).await.unwrap();
            assert_eq!(found.map(|r| r.id), Some(filler.id));
        }
    }

    /// Looks `key` up through the verifier, by id and by digest, while the store is up.
    async fn warm(&self, key: &Key) {
        self.auth.authenticate(&key.secret).await.unwrap();
        assert!(self.cache.get(key.id()).await.unwrap().is_some());
        assert!(self
            .cache
            .get_by_digest(key.digest())
            .await
            .unwrap()
            .is_some());
    }

    /// Makes `change` to `key`, heard as `heard` says.
    async fn change(&self, key: &Key, change: Change<'_>, heard: Heard) {
        let applied = match heard {
            Heard::Through => self.cache.apply(change, &[]).await,
            _ => self.probe.inner.apply(change, &[]).await,
        };
        assert!(
            matches!(applied, Ok(Applied::Done(_))),
            "{change:?}: {applied:?}"
        );
        match heard {
            Heard::Through => {}
            Heard::Invalidate => self.cache.invalidate(key.id()),
            Heard::InvalidateDigest => self.cache.invalidate_digest(key.digest()),
            Heard::InvalidateRecord => {
                let stored = self.probe.inner.get(key.id()).await.unwrap().unwrap();
                self.cache.invalidate_record(&stored);
            }
        }
    }

    /// Every answer the cache gives for `key`, each way it can be asked, at the
    /// injected clock's time: the verifier's, by id, and by digest. None may be an old
    /// record (`current` says which records are not), and the verifier's answer for a
    /// key that must be refused is never a principal.
    async fn assert_never_old(
        &self,
        key: &Key,
        refused: bool,
        current: impl Fn(&KeyRecord) -> bool,
        context: &str,
    ) {
        match self.auth.authenticate(&key.secret).await {
            Ok(principal) => {
                assert!(!refused, "{context}: the verifier let the key in");
                assert!(
                    current(&principal.record()),
                    "{context}: the verifier answered from an old record: {:?}",
                    principal.record()
                );
            }
            Err(kind) => assert!(
                refused || kind == RejectionKind::StoreUnavailable,
                "{context}: {kind:?}"
            ),
        }
        for (way, answer) in [
            ("by id", self.cache.get(key.id()).await),
            ("by digest", self.cache.get_by_digest(key.digest()).await),
        ] {
            if let Ok(Some(record)) = answer {
                assert!(
                    current(&record),
                    "{context}: the cache answered {way} with an old record: {record:?}"
                );
            }
        }
    }

    /// With the store down: now, just past the TTL, and at the end of the stale window.
    async fn assert_never_old_through_the_outage(
        &self,
        key: &Key,
        refused: bool,
        current: impl Fn(&KeyRecord) -> bool,
        context: &str,
    ) {
        self.probe.set_failing(true);
        let moments = [
            Duration::ZERO,
            self.ttl + Duration::from_secs(1),
            self.ttl + WINDOW - Duration::from_secs(1),
        ];
        let mut elapsed = Duration::ZERO;
        for at in moments {
            self.clock.advance(at - elapsed);
            elapsed = at;
            let context = format!("{context}, {at:?} later with the store down");
            self.assert_never_old(key, refused, &current, &context)
                .await;
        }
        self.probe.set_failing(false);
    }
}

mod cases {
    use super::*;

    /// Revoked, the key is refused through the outage, however it was cached.
    pub(crate) async fn revoked_keys_never_come_back_from_stale<S: ManagedKeyStore>(store: S) {
        for ttl in TTLS {
            for kind in [Kind::Native, Kind::Imported] {
                for heard in HEARD {
                    let world = World::new(store.clone(), ttl);
                    let key = world.key(kind).await;
                    let at = world.clock.now();
                    let revoke = Change::Revoke {
                        id: key.id(),
                        at,
                        actor: None,
                        scopes: None,
                    };
                    world.change(&key, revoke, heard).await;
                    world
                        .assert_never_old_through_the_outage(
                            &key,
                            true,
                            |r| r.revoked_at.is_some(),
                            &format!("{kind:?} key revoked, {heard:?}, TTL {ttl:?}"),
                        )
                        .await;
                }
            }
        }
    }

    /// Re-scoped, the key never gets its old, wider scopes back. Once the store has
    /// been read again, the new record is what the stale window serves.
    pub(crate) async fn reduced_scopes_never_come_back_from_stale<S: ManagedKeyStore>(store: S) {
        let (wide, narrow) = (owned(&WIDE), owned(&NARROW));
        for ttl in TTLS {
            for kind in [Kind::Native, Kind::Imported] {
                for heard in HEARD {
                    let world = World::new(store.clone(), ttl);
                    let key = world.key(kind).await;
                    let set = Change::SetScopes {
                        id: key.id(),
                        from: &wide,
                        to: &narrow,
                        actor: None,
                    };
                    world.change(&key, set, heard).await;
                    let context = format!("{kind:?} key re-scoped, {heard:?}, TTL {ttl:?}");
                    world
                        .assert_never_old_through_the_outage(
                            &key,
                            false,
                            |r| r.scopes == narrow,
                            &context,
                        )
                        .await;

                    // Read again while the store is up: the narrow record answers
                    // through the next outage, whatever else is invalidated meanwhile.
                    world.warm(&key).await;
                    world.cache.invalidate(&KeyId::generate().unwrap());
                    world.probe.set_failing(true);
                    world.clock.advance(ttl + Duration::from_secs(1));
                    let principal = world.auth.authenticate(&key.secret).await;
                    assert_eq!(
                        principal.map(|p| p.scopes().to_vec()),
                        Ok(narrow.clone()),
                        "{context}: the record read after the change is served stale"
                    );
                    world.probe.set_failing(false);
                }
            }
        }
    }

    /// Rotated with no grace, the old key is refused through the outage.
    pub(crate) async fn grace_0_rotations_never_come_back_from_stale<S: ManagedKeyStore>(store: S) {
        for ttl in TTLS {
            for kind in [Kind::Native, Kind::Imported] {
                for heard in HEARD {
                    let world = World::new(store.clone(), ttl);
                    let key = world.key(kind).await;
                    let at = world.clock.now();
                    let minted = format().generate(Some("live")).unwrap();
                    let successor = support::record(&minted, &WIDE, at);
                    let rotate = Change::Rotate {
                        id: key.id(),
                        successor: &successor,
                        valid_until: at,
                        at,
                        actor: None,
                    };
                    world.change(&key, rotate, heard).await;
                    world
                        .assert_never_old_through_the_outage(
                            &key,
                            true,
                            |r| r.rotation.is_some(),
                            &format!("{kind:?} key rotated, {heard:?}, TTL {ttl:?}"),
                        )
                        .await;
                }
            }
        }
    }

    /// The positive control: a key nobody changed is still served through the outage,
    /// to the end of the stale window, by id and by digest, while other keys of the
    /// same cache are revoked around it.
    pub(crate) async fn untouched_keys_are_still_served_stale<S: ManagedKeyStore>(store: S) {
        for ttl in TTLS {
            for kind in [Kind::Native, Kind::Imported] {
                let world = World::new(store.clone(), ttl);
                let untouched = world.key(kind).await;
                let before = world.key(kind).await;
                let at = world.clock.now();
                world.cache.revoke(before.id(), at).await.unwrap();
                world.probe.set_failing(true);
                let context = format!("untouched {kind:?} key, TTL {ttl:?}");
                let mut elapsed = Duration::ZERO;
                for at in [
                    Duration::ZERO,
                    ttl + Duration::from_secs(1),
                    ttl + WINDOW - Duration::from_secs(1),
                ] {
                    world.clock.advance(at - elapsed);
                    elapsed = at;
                    let principal = world.auth.authenticate(&untouched.secret).await;
                    assert_eq!(
                        principal.map(|p| *p.key_id()),
                        Ok(*untouched.id()),
                        "{context}, {at:?} later"
                    );
                    let by_id = world.cache.get(untouched.id()).await.unwrap();
                    let by_digest = world.cache.get_by_digest(untouched.digest()).await;
                    let served = by_id.as_ref().map(|r| (r.id, r.scopes.clone()));
                    assert_eq!(served, Some((*untouched.id(), owned(&WIDE))), "{context}");
                    assert_eq!(by_digest.unwrap(), by_id, "{context}, {at:?}");
                    // Another key revoked meanwhile does not take the window away.
                    world.cache.invalidate(&KeyId::generate().unwrap());
                }
                world.clock.advance(Duration::from_secs(2));
                assert_eq!(
                    world
                        .auth
                        .authenticate(&untouched.secret)
                        .await
                        .unwrap_err(),
                    RejectionKind::StoreUnavailable,
                    "{context}: past the window"
                );
            }
        }
    }
}

macro_rules! suite {
    ($module:ident, $open:expr) => {
        suite!(@cases $module, $open,
            revoked_keys_never_come_back_from_stale,
            reduced_scopes_never_come_back_from_stale,
            grace_0_rotations_never_come_back_from_stale,
            untouched_keys_are_still_served_stale,
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
                    let Some((store, _guard)) = ($open) else { return };
                    super::cases::$case(store).await;
                }
            )*
        }
    };
}

suite!(memory, Some((MemoryStore::new(), ())));

#[cfg(feature = "sqlite")]
suite!(sqlite, {
    let db = support::stores::TempDb::new().await;
    Some((db.store.clone(), db))
});

#[cfg(feature = "postgres")]
suite!(
    postgres,
    support::stores::TestSchema::new()
        .await
        .map(|db| (db.store.clone(), db))
);
