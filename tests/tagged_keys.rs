//! Tagged keys: a forged native key costs no store lookup, from one address or from ten
//! thousand, and a valid key is never refused because someone at its address sent
//! garbage — not after a restart, not on an instance that has never seen it.

mod support;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use http::{header, Request, StatusCode};
use support::{pb_format, record, ProbeStore};
use tower::ServiceExt;
use tower_api_key::clock::{Clock, ManualClock};
use tower_api_key::key::{KeyFormat, MintedKey, TagKey, TAGGED_BODY_LEN};
use tower_api_key::manage::{Actor, KeyManager, NewKey};
use tower_api_key::parts::{AuthenticateLayer, KeyVerifier};
use tower_api_key::store::{CachedStore, KeyStore, ManagedKeyStore, MemoryStore};
use tower_api_key::Owner;

const ATTACKER: &str = "203.0.113.66:40000";

/// One instance: its own cache (and so its own budgets and memory of known keys) over
/// the shared store. A second `Instance` over the same store is a restart, or another
/// server of the fleet.
struct Instance {
    cache: CachedStore<ProbeStore>,
    router: Router,
}

impl Instance {
    fn new(probe: &ProbeStore, clock: &ManualClock) -> Self {
        Self::with(probe, clock, |v| v)
    }

    fn with(
        probe: &ProbeStore,
        clock: &ManualClock,
        configure: impl FnOnce(KeyVerifier<ProbeStore>) -> KeyVerifier<ProbeStore>,
    ) -> Self {
        let cache = CachedStore::builder(probe.clone())
            .with_clock(clock.clone())
            .build()
            .unwrap();
        let verifier = configure(KeyVerifier::new(cache.clone(), pb_format()));
        let router = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(AuthenticateLayer::new(verifier));
        Self { cache, router }
    }

    fn manager(&self) -> KeyManager<ProbeStore> {
        KeyManager::new(
            self.cache.clone(),
            pb_format(),
            tower_api_key::presets::performance_blocks::scope_model(),
        )
    }

    async fn status(&self, peer: &str, key: &str) -> StatusCode {
        let mut req = Request::get("/")
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        self.router.clone().oneshot(req).await.unwrap().status()
    }
}

/// A key minted by the manager, so tagged under the store's secret.
async fn create(instance: &Instance) -> String {
    let created = instance
        .manager()
        .create(
            NewKey::new("ci", Owner::organization("acme")).with_environment("live"),
            Actor::System("test"),
        )
        .await
        .unwrap();
    created.key.expose_secret().to_owned()
}

/// What an attacker can make: well-formed, checksum-valid, tagged under a secret of
/// its own with the id the server's keys carry (so the tag is really computed and
/// compared, not refused for its id).
fn forged(secret_id: char) -> String {
    let attacker = TagKey::new(secret_id, &attacker_secret()).unwrap();
    pb_format()
        .generate_tagged(Some("live"), &attacker)
        .unwrap()
        .key
        .expose_secret()
        .to_owned()
}

fn attacker_secret() -> [u8; 32] {
    let mut secret = [0u8; 32];
    for (i, b) in secret.iter_mut().enumerate() {
        *b = u8::try_from(i).unwrap() ^ 0xa5;
    }
    secret
}

/// The id of the secret a tagged key names.
fn secret_id(key: &str) -> char {
    let body = &key[key.len() - TAGGED_BODY_LEN..];
    char::from(body.as_bytes()[11 + 22])
}

#[tokio::test]
async fn manager_keys_are_tagged_under_the_store_secret() {
    let probe = ProbeStore::new();
    let clock = ManualClock::default();
    let instance = Instance::new(&probe, &clock);
    let key = create(&instance).await;
    assert_eq!(key.len(), "pb_live_".len() + TAGGED_BODY_LEN);
    let secrets = probe.tag_keys().await.unwrap();
    assert_eq!(secrets.len(), 1);
    assert_eq!(secret_id(&key), secrets[0].id());
    assert_eq!(instance.status(ATTACKER, &key).await, StatusCode::OK);
}

#[tokio::test]
async fn ten_thousand_forged_keys_from_ten_thousand_addresses_cost_no_lookup() {
    let probe = ProbeStore::new();
    let clock = ManualClock::default();
    let instance = Instance::new(&probe, &clock);
    let valid = create(&instance).await;
    let id = secret_id(&valid);
    // Load the secrets once (the first miss would).
    assert_eq!(instance.status(ATTACKER, &valid).await, StatusCode::OK);
    let before = probe.gets();
    for n in 0..10_000u32 {
        let [a, b, c, d] = n.to_be_bytes();
        let peer = format!("10.{b}.{c}.{d}:{}", 1000 + u16::from(a));
        let status = instance.status(&peer, &forged(id)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "forged key {n}");
    }
    // And from one address, far past any budget: still 401, never 429.
    for n in 0..500 {
        let status = instance.status(ATTACKER, &forged(id)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "forged key {n}");
    }
    assert_eq!(
        probe.gets() - before,
        0,
        "forged tagged keys reached the store"
    );
    assert_eq!(instance.cache.negative_entry_count(), 0);
}

#[tokio::test]
async fn after_a_flood_a_restarted_instance_admits_a_valid_key_it_has_never_seen() {
    let probe = ProbeStore::new();
    let clock = ManualClock::default();
    let first = Instance::new(&probe, &clock);
    let valid = create(&first).await;
    let id = secret_id(&valid);
    for _ in 0..300 {
        assert_eq!(
            first.status(ATTACKER, &forged(id)).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(first.status(ATTACKER, &valid).await, StatusCode::OK);

    // The restart: nothing of the first instance's memory survives. The flood goes
    // on first, then the owner's first request, from the same address.
    let restarted = Instance::new(&probe, &clock);
    let before = probe.gets();
    for _ in 0..300 {
        assert_eq!(
            restarted.status(ATTACKER, &forged(id)).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(restarted.status(ATTACKER, &valid).await, StatusCode::OK);
    assert_eq!(probe.gets() - before, 1, "only the valid key was looked up");
}

/// The contrast that shows the tag is what protects a valid key: an untagged key (minted
/// before tags) is charged like any unknown key on an instance that has never found it.
#[tokio::test]
async fn an_untagged_key_still_goes_through_the_budget_and_can_be_refused_outright() {
    let probe = ProbeStore::new();
    let clock = ManualClock::default();
    let untagged = pb_format().generate(Some("live")).unwrap();
    probe
        .insert(&record(&untagged, &[], clock.now()))
        .await
        .unwrap();
    let untagged = untagged.key.expose_secret().to_owned();
    let instance = Instance::new(&probe, &clock);
    let forged_untagged = || {
        pb_format()
            .generate(Some("live"))
            .unwrap()
            .key
            .expose_secret()
            .to_owned()
    };
    for _ in 0..100 {
        assert_eq!(
            instance.status(ATTACKER, &forged_untagged()).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        instance.status(ATTACKER, &untagged).await,
        StatusCode::TOO_MANY_REQUESTS,
        "an untagged key the instance has never found shares the address's budget"
    );
    // From elsewhere it works, and rotating it gives a tagged successor.
    assert_eq!(
        instance.status("198.51.100.7:1", &untagged).await,
        StatusCode::OK
    );

    // Once every key is tagged, untagged native keys are refused without a lookup.
    let strict = Instance::with(&probe, &clock, KeyVerifier::refusing_untagged_keys);
    let before = probe.gets();
    assert_eq!(
        strict.status(ATTACKER, &untagged).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        strict.status(ATTACKER, &forged_untagged()).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(probe.gets(), before);
    let tagged = create(&strict).await;
    assert_eq!(strict.status(ATTACKER, &tagged).await, StatusCode::OK);
}

#[tokio::test]
async fn rotating_an_untagged_key_yields_a_tagged_one() {
    let probe = ProbeStore::new();
    let clock = ManualClock::default();
    let instance = Instance::new(&probe, &clock);
    let untagged: MintedKey = pb_format().generate(Some("live")).unwrap();
    probe
        .insert(&record(&untagged, &[], clock.now()))
        .await
        .unwrap();
    let rotated = instance
        .manager()
        .rotate(
            &Owner::organization("acme"),
            &untagged.id,
            std::time::Duration::ZERO,
            Actor::System("test"),
        )
        .await
        .unwrap();
    let key = rotated.key.expose_secret();
    assert_eq!(key.len(), "pb_live_".len() + TAGGED_BODY_LEN);
    assert_eq!(instance.status(ATTACKER, key).await, StatusCode::OK);
}

/// A rotation of the tag secret: new keys carry the new id, keys tagged under the old
/// one keep working, and an instance that read the secrets before the rotation learns
/// the new one from the first key that names it (one read, not one per key).
#[tokio::test]
async fn a_rotated_tag_secret_is_learnt_by_other_instances_and_the_old_one_still_verifies() {
    let probe = ProbeStore::new();
    let clock = ManualClock::default();
    let a = Instance::new(&probe, &clock);
    let b = Instance::new(&probe, &clock);
    let old = create(&a).await;
    assert_eq!(b.status(ATTACKER, &old).await, StatusCode::OK);

    let new_id = probe.inner.rotate_tag_key().unwrap();
    a.cache.reload_tag_keys().await.unwrap();
    let new = create(&a).await;
    assert_eq!(secret_id(&new), new_id);
    assert_ne!(secret_id(&old), new_id);

    // `b` has not reloaded: a key naming the new id makes it read the secrets again,
    // at most once a second.
    clock.advance(std::time::Duration::from_secs(2));
    assert_eq!(b.status(ATTACKER, &new).await, StatusCode::OK);
    assert_eq!(b.status(ATTACKER, &old).await, StatusCode::OK);
    // Forged keys naming a secret id nobody has are refused without a lookup.
    let before = probe.gets();
    for _ in 0..100 {
        assert_eq!(
            b.status(ATTACKER, &forged('z')).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(probe.gets(), before);
}

/// A store of the application's own (no `tag_keys`) gets its secret from the builder;
/// without one, keys are minted untagged, as before.
#[tokio::test]
async fn a_configured_tag_key_serves_a_store_without_secrets() {
    #[derive(Clone)]
    struct Plain(MemoryStore);
    impl KeyStore for Plain {
        async fn get(
            &self,
            id: &tower_api_key::key::KeyId,
        ) -> Result<Option<tower_api_key::KeyRecord>, tower_api_key::store::StoreError> {
            self.0.get(id).await
        }
    }
    let plain = Plain(MemoryStore::new());
    let untagged = CachedStore::builder(plain.clone()).build().unwrap();
    assert!(untagged.minting_tag_key().await.unwrap().is_none());

    let tag_key = TagKey::new('k', &[42; 32]).unwrap();
    let cache = CachedStore::builder(plain.clone())
        .with_tag_key(tag_key.clone())
        .build()
        .unwrap();
    assert_eq!(cache.minting_tag_key().await.unwrap().unwrap().id(), 'k');
    let format: KeyFormat = pb_format();
    let minted = format.generate_tagged(Some("live"), &tag_key).unwrap();
    plain
        .0
        .insert(&record(&minted, &[], time::OffsetDateTime::now_utc()))
        .await
        .unwrap();
    let verifier = KeyVerifier::new(cache, format);
    assert!(verifier
        .authenticate(minted.key.expose_secret())
        .await
        .is_ok());
    assert_eq!(
        verifier.authenticate(&forged('k')).await.unwrap_err(),
        tower_api_key::RejectionKind::Unknown
    );
}
