//! The key format, digest-only storage and the cache in front of the store.

mod support;

use std::time::Duration;

use support::{pb_format, record, ProbeStore};
use tokio::task::JoinSet;
use tower_api_key::clock::{Clock, ManualClock};
use tower_api_key::key::{Digest, KeyFormat, KeyId, Presented, MAX_KEY_LEN};
use tower_api_key::parts::KeyVerifier;
use tower_api_key::store::{CachedStore, KeyRecord, ManagedKeyStore, MemoryStore, Owner};
use tower_api_key::RejectionKind;

fn cached(store: ProbeStore, clock: &ManualClock) -> CachedStore<ProbeStore> {
    CachedStore::builder(store)
        .with_clock(clock.clone())
        .build()
        .unwrap()
}

#[test]
fn format_round_trips() {
    let format = pb_format();
    for env in ["live", "test"] {
        let minted = format.generate(Some(env)).unwrap();
        let key = minted.key.expose_secret();
        let Some(Presented::Native(parsed)) = format.parse(key) else {
            panic!("generated key does not parse");
        };
        assert_eq!(parsed.id(), &minted.id);
        assert_eq!(parsed.environment().unwrap().as_str(), env);
        assert_eq!(parsed.digest(), minted.digest);
        assert_eq!(Digest::of(key), minted.digest);
        assert!(key.starts_with(&minted.prefix));
        assert_eq!(minted.key.public_prefix(), minted.prefix);
    }
}

#[tokio::test]
async fn every_single_character_change_is_refused_without_a_store_call() {
    let clock = ManualClock::default();
    let probe = ProbeStore::new();
    let store = cached(probe.clone(), &clock);
    let format = pb_format();
    let minted = format.generate(Some("live")).unwrap();
    store
        .insert(&record(&minted, &[], clock.now()))
        .await
        .unwrap();
    let auth = KeyVerifier::new(store, format);
    let key = minted.key.expose_secret().to_owned();

    let alphabet: Vec<char> = ('0'..='9')
        .chain('A'..='Z')
        .chain('a'..='z')
        .chain(['_', '-', ' ', '.', 'é'])
        .collect();
    let mut tried = 0;
    for (i, original) in key.char_indices() {
        for &c in &alphabet {
            if c == original {
                continue;
            }
            let mut typo = key.clone();
            typo.replace_range(i..i + 1, c.encode_utf8(&mut [0; 4]));
            assert_eq!(
                auth.authenticate(&typo).await.unwrap_err(),
                RejectionKind::Malformed,
                "position {i}, {original:?} -> {c:?}"
            );
            tried += 1;
        }
        // Deleting the character is refused too.
        let mut shorter = key.clone();
        shorter.remove(i);
        assert_eq!(
            auth.authenticate(&shorter).await.unwrap_err(),
            RejectionKind::Malformed
        );
    }
    assert!(tried > 3000);
    assert_eq!(probe.gets(), 0, "a malformed key reached the store");

    // The untouched key still works, with one lookup.
    auth.authenticate(&key).await.unwrap();
    assert_eq!(probe.gets(), 1);
}

#[tokio::test]
async fn bad_input_is_refused_without_a_store_call() {
    let clock = ManualClock::default();
    let probe = ProbeStore::new();
    let store = cached(probe.clone(), &clock);
    let format = pb_format();
    let minted = format.generate(Some("live")).unwrap();
    store
        .insert(&record(&minted, &[], clock.now()))
        .await
        .unwrap();
    let auth = KeyVerifier::new(store, format);
    let key = minted.key.expose_secret();

    let long = "a".repeat(MAX_KEY_LEN + 1);
    let padded = [
        format!(" {key}"),
        format!("{key} "),
        format!("{key}\n"),
        format!("\t{key}"),
    ];
    let others = [
        String::new(),
        long,
        format!("{key}{}", "0".repeat(MAX_KEY_LEN)),
        format!("{}é", &key[..key.len() - 1]),
        "pb_live_".to_owned(),
        "pb_prod_0000000000000000000000000000000000000".to_owned(),
        key.to_uppercase(),
    ];
    for input in padded.iter().chain(&others) {
        assert_eq!(
            auth.authenticate(input).await.unwrap_err(),
            RejectionKind::Malformed,
            "{input:?}"
        );
    }
    assert_eq!(probe.gets(), 0);
}

#[tokio::test]
async fn expiry_is_honoured_on_a_cache_hit() {
    let clock = ManualClock::default();
    let probe = ProbeStore::new();
    let store = CachedStore::builder(probe.clone())
        .with_clock(clock.clone())
        .with_ttl(Duration::from_secs(3600))
        .build()
        .unwrap();
    let format = pb_format();
    let minted = format.generate(Some("live")).unwrap();
    let expires = clock.now() + time::Duration::seconds(60);
    store
        .insert(&record(&minted, &[], clock.now()).with_expires_at(Some(expires)))
        .await
        .unwrap();
    let auth = KeyVerifier::new(store, format);
    let key = minted.key.expose_secret();

    auth.authenticate(key).await.unwrap();
    clock.advance(Duration::from_secs(59));
    auth.authenticate(key).await.unwrap();
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        auth.authenticate(key).await.unwrap_err(),
        RejectionKind::Expired
    );
    assert_eq!(
        probe.gets(),
        1,
        "the expired verdict must come from the cached record"
    );
}

#[tokio::test]
async fn a_revoke_is_seen_by_the_very_next_request() {
    let clock = ManualClock::default();
    let probe = ProbeStore::new();
    let store = cached(probe.clone(), &clock);
    let format = pb_format();
    let minted = format.generate(Some("live")).unwrap();
    store
        .insert(&record(&minted, &[], clock.now()))
        .await
        .unwrap();
    let auth = KeyVerifier::new(store.clone(), format);
    let key = minted.key.expose_secret();

    auth.authenticate(key).await.unwrap();
    auth.authenticate(key).await.unwrap();
    assert_eq!(probe.gets(), 1, "second request is a cache hit");
    store.revoke(&minted.id, clock.now()).await.unwrap();
    assert_eq!(
        auth.authenticate(key).await.unwrap_err(),
        RejectionKind::Revoked
    );
}

/// A lookup that read the record before the revoke, and is still in flight when the
/// revoke returns, must never bring the old record back: not into the cache, and not
/// to a request that starts after the revoke.
#[tokio::test(start_paused = true)]
async fn an_in_flight_lookup_never_resurrects_a_revoked_key() {
    let clock = ManualClock::default();
    let probe = ProbeStore::new();
    let store = cached(probe.clone(), &clock);
    let format = pb_format();
    let auth = KeyVerifier::new(store.clone(), format.clone());

    for round in 0..200 {
        let minted = format.generate(Some("live")).unwrap();
        store
            .insert(&record(&minted, &[], clock.now()))
            .await
            .unwrap();
        let key = minted.key.expose_secret().to_owned();

        let mut held = probe.hold_next_get();
        let before = tokio::spawn({
            let (auth, key) = (auth.clone(), key.clone());
            async move { auth.authenticate(&key).await }
        });
        held.started().await;
        store.revoke(&minted.id, clock.now()).await.unwrap();

        // A request that starts now must not join the old lookup.
        let after = tokio::time::timeout(Duration::from_secs(60), auth.authenticate(&key))
            .await
            .unwrap_or_else(|_| panic!("round {round}: a new request waited on the stale lookup"));
        assert_eq!(after.unwrap_err(), RejectionKind::Revoked, "round {round}");

        held.release();
        // The request that started before the revoke may see either answer.
        let _ = before.await.unwrap();
        for _ in 0..3 {
            assert_eq!(
                auth.authenticate(&key).await.unwrap_err(),
                RejectionKind::Revoked,
                "round {round}: the stale lookup was written back"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn concurrent_first_requests_make_exactly_one_lookup() {
    let clock = ManualClock::default();
    let probe = ProbeStore::new();
    probe.set_delay(Some(Duration::from_millis(50)));
    let store = cached(probe.clone(), &clock);
    let format = pb_format();
    let minted = format.generate(Some("live")).unwrap();
    store
        .insert(&record(&minted, &[], clock.now()))
        .await
        .unwrap();
    let auth = KeyVerifier::new(store, format);

    let mut tasks = JoinSet::new();
    for _ in 0..1000 {
        let (auth, key) = (auth.clone(), minted.key.expose_secret().to_owned());
        tasks.spawn(async move { auth.authenticate(&key).await.map(|p| *p.key_id()) });
    }
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.unwrap().unwrap(), minted.id);
    }
    assert_eq!(probe.gets(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_first_request_hands_the_lookup_over() {
    let clock = ManualClock::default();
    let probe = ProbeStore::new();
    let store = cached(probe.clone(), &clock);
    let format = pb_format();
    let minted = format.generate(Some("live")).unwrap();
    store
        .insert(&record(&minted, &[], clock.now()))
        .await
        .unwrap();
    let auth = KeyVerifier::new(store, format);
    let key = minted.key.expose_secret().to_owned();

    let mut held = probe.hold_next_get();
    let first = tokio::spawn({
        let (auth, key) = (auth.clone(), key.clone());
        async move { auth.authenticate(&key).await }
    });
    held.started().await;
    let second = tokio::spawn({
        let (auth, key) = (auth.clone(), key.clone());
        async move { auth.authenticate(&key).await }
    });
    tokio::task::yield_now().await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    drop(held);
    let principal = tokio::time::timeout(Duration::from_secs(60), second)
        .await
        .expect("the waiter was left hanging")
        .unwrap()
        .unwrap();
    assert_eq!(principal.key_id(), &minted.id);
}

#[tokio::test]
async fn creating_a_key_drops_its_negative_entry() {
    let clock = ManualClock::default();
    let probe = ProbeStore::new();
    let store = cached(probe.clone(), &clock);
    let format = pb_format();
    let minted = format.generate(Some("live")).unwrap();
    let auth = KeyVerifier::new(store.clone(), format);
    let key = minted.key.expose_secret();

    assert_eq!(
        auth.authenticate(key).await.unwrap_err(),
        RejectionKind::Unknown
    );
    assert_eq!(
        auth.authenticate(key).await.unwrap_err(),
        RejectionKind::Unknown
    );
    assert_eq!(
        probe.gets(),
        1,
        "the unknown id is cached as a negative entry"
    );

    store
        .insert(&record(&minted, &[], clock.now()))
        .await
        .unwrap();
    auth.authenticate(key).await.unwrap();
    assert_eq!(probe.gets(), 2);
}

#[tokio::test]
async fn ttls_follow_the_injected_clock() {
    let clock = ManualClock::default();
    let probe = ProbeStore::new();
    let store = CachedStore::builder(probe.clone())
        .with_clock(clock.clone())
        .with_ttl(Duration::from_secs(30))
        .with_negative_ttl(Duration::from_secs(5))
        .build()
        .unwrap();
    let format = pb_format();
    let known = format.generate(Some("live")).unwrap();
    let unknown = format.generate(Some("live")).unwrap();
    store
        .insert(&record(&known, &[], clock.now()))
        .await
        .unwrap();
    let auth = KeyVerifier::new(store, format);

    auth.authenticate(known.key.expose_secret()).await.unwrap();
    auth.authenticate(unknown.key.expose_secret())
        .await
        .unwrap_err();
    assert_eq!(probe.gets(), 2);

    clock.advance(Duration::from_secs(4));
    auth.authenticate(known.key.expose_secret()).await.unwrap();
    auth.authenticate(unknown.key.expose_secret())
        .await
        .unwrap_err();
    assert_eq!(probe.gets(), 2, "both entries still fresh");

    clock.advance(Duration::from_secs(1));
    auth.authenticate(unknown.key.expose_secret())
        .await
        .unwrap_err();
    auth.authenticate(known.key.expose_secret()).await.unwrap();
    assert_eq!(
        probe.gets(),
        3,
        "the negative entry aged out, the positive did not"
    );

    clock.advance(Duration::from_secs(25));
    auth.authenticate(known.key.expose_secret()).await.unwrap();
    assert_eq!(probe.gets(), 4, "the positive entry aged out");
}

#[tokio::test]
async fn a_store_outage_is_never_a_bad_key_and_is_not_cached() {
    let clock = ManualClock::default();
    let probe = ProbeStore::new();
    let store = cached(probe.clone(), &clock);
    let format = pb_format();
    let minted = format.generate(Some("live")).unwrap();
    store
        .insert(&record(&minted, &[], clock.now()))
        .await
        .unwrap();
    let auth = KeyVerifier::new(store, format);
    let key = minted.key.expose_secret();

    probe.set_failing(true);
    assert_eq!(
        auth.authenticate(key).await.unwrap_err(),
        RejectionKind::StoreUnavailable
    );
    probe.set_failing(false);
    auth.authenticate(key).await.unwrap();
    // Once cached, the key survives an outage until its TTL.
    probe.set_failing(true);
    auth.authenticate(key).await.unwrap();
}

#[tokio::test]
async fn the_cache_is_bounded_in_entries() {
    let clock = ManualClock::default();
    let probe = ProbeStore::new();
    let store = CachedStore::builder(probe.clone())
        .with_clock(clock.clone())
        .with_max_entries(100)
        .with_max_bytes(1024 * 1024)
        .build()
        .unwrap();
    for _ in 0..1000 {
        store.lookup_id(&KeyId::generate().unwrap()).await.unwrap();
    }
    assert!(
        store.entry_count() <= 100,
        "{} entries",
        store.entry_count()
    );
}

#[tokio::test]
async fn imported_keys_are_found_by_digest_and_revocable() {
    let clock = ManualClock::default();
    let probe = ProbeStore::new();
    let store = cached(probe.clone(), &clock);
    let format = pb_format().with_imported_prefix("pb_").unwrap();
    let foreign = "pb_rcbcKubT0rEilFd9haG5JoPaMwIEx6G9nRjNdTYXSIM";
    let imported = KeyRecord::imported(
        KeyId::generate().unwrap(),
        Digest::of(foreign),
        "pb_rcbcK",
        "ProductBridge key",
        Owner::organization("acme"),
        vec!["public_api".into()],
        clock.now(),
    );
    let auth = KeyVerifier::new(store.clone(), format);
    // Probed before import: a negative entry under the digest, dropped by the import.
    assert_eq!(
        auth.authenticate(foreign).await.unwrap_err(),
        RejectionKind::Unknown
    );
    store.insert(&imported).await.unwrap();
    let principal = auth.authenticate(foreign).await.unwrap();
    assert_eq!(principal.key_id(), &imported.id);
    assert_eq!(
        auth.authenticate("pb_rcbcKubT0rEilFd9haG5JoPaMwIEx6G9nRjNdTYXSIX")
            .await
            .unwrap_err(),
        RejectionKind::Unknown
    );
    // Revoking by id reaches the entry cached under the digest.
    store
        .get_ref()
        .revoke(&imported.id, clock.now())
        .await
        .unwrap();
    store.invalidate(&imported.id);
    assert_eq!(
        auth.authenticate(foreign).await.unwrap_err(),
        RejectionKind::Revoked
    );
}

#[tokio::test]
async fn no_debug_output_contains_a_full_key() {
    let clock = ManualClock::default();
    let store = CachedStore::builder(MemoryStore::new())
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let format = pb_format();
    let minted = format.generate(Some("live")).unwrap();
    let record = record(&minted, &["session:read"], clock.now());
    store.insert(&record).await.unwrap();
    let auth = KeyVerifier::new(store.clone(), format.clone());
    let secret = minted.key.expose_secret();
    let principal = auth.authenticate(secret).await.unwrap();
    let secret_part = &secret[minted.prefix.len()..];

    let outputs = [
        format!("{:?}", minted.key),
        format!("{:#?}", minted.key),
        format!("{}", minted.key),
        format!("{minted:?}"),
        format!("{record:?}"),
        format!("{principal:?}"),
        format!("{auth:?}"),
        format!("{store:?}"),
        format!("{:?}", format.parse(secret)),
    ];
    for shown in outputs {
        assert!(!shown.contains(secret_part), "secret leaked in {shown}");
    }
}

#[test]
fn invalid_cache_settings_are_refused_when_built() {
    let build = |ttl: u64, neg: u64| {
        CachedStore::builder(MemoryStore::new())
            .with_ttl(Duration::from_secs(ttl))
            .with_negative_ttl(Duration::from_secs(neg))
            .build()
            .map(|_| ())
    };
    assert!(build(30, 5).is_ok());
    assert!(build(0, 0).is_err());
    assert!(build(5, 30).is_err());
    assert!(build(100_000, 5).is_err());
    assert!(CachedStore::builder(MemoryStore::new())
        .with_max_entries(0)
        .build()
        .is_err());
}

#[test]
fn environment_less_formats_round_trip() {
    let format = KeyFormat::new("pbo").unwrap();
    let minted = format.generate(None).unwrap();
    assert!(minted.key.expose_secret().starts_with("pbo_"));
    assert!(matches!(
        format.parse(minted.key.expose_secret()),
        Some(Presented::Native(_))
    ));
}
