//! Abuse resistance over real axum routers: the unknown-key budget, the cap and
//! timeout on store lookups, negatives that never evict known keys, stale-if-error
//! through an outage, slow JSON bodies and unbounded request ids.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use support::{pb_format, record, ProbeStore};
use tower::ServiceExt;
use tower_api_key::budget::UnknownKeyBudget;
use tower_api_key::client::ClientIp;
use tower_api_key::clock::{Clock, ManualClock};
use tower_api_key::credentials::KeySources;
use tower_api_key::key::MintedKey;
use tower_api_key::parts::{AuthenticateLayer, KeyVerifier};
use tower_api_key::rejection::Rejection;
use tower_api_key::store::{CachedStore, CachedStoreBuilder, ManagedKeyStore};
use tower_api_key::RejectionKind;

const ATTACKER: &str = "203.0.113.66:40000";
const NEIGHBOUR: &str = "198.51.100.7:40000";

struct World {
    probe: ProbeStore,
    store: CachedStore<ProbeStore>,
    clock: ManualClock,
    valid: MintedKey,
}

impl World {
    async fn new() -> Self {
        Self::with(|b| b).await
    }

    async fn with(
        configure: impl FnOnce(CachedStoreBuilder<ProbeStore>) -> CachedStoreBuilder<ProbeStore>,
    ) -> Self {
        let clock = ManualClock::default();
        let probe = ProbeStore::new();
        let store = configure(CachedStore::builder(probe.clone()).with_clock(clock.clone()))
            .build()
            .unwrap();
        let valid = pb_format().generate(Some("live")).unwrap();
        store
            .insert(&record(&valid, &[], clock.now()))
            .await
            .unwrap();
        Self {
            probe,
            store,
            clock,
            valid,
        }
    }

    fn auth(&self) -> KeyVerifier<ProbeStore> {
        KeyVerifier::new(self.store.clone(), pb_format())
    }

    fn router(&self) -> Router {
        Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(AuthenticateLayer::new(self.auth()))
    }
}

fn forged() -> String {
    pb_format()
        .generate(Some("live"))
        .unwrap()
        .key
        .expose_secret()
        .to_owned()
}

fn from(peer: &str, key: &str) -> Request<Body> {
    let mut req = Request::get("/")
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    req
}

async fn send(router: &Router, req: Request<Body>) -> http::Response<Body> {
    router.clone().oneshot(req).await.unwrap()
}

fn outcome(response: &http::Response<Body>) -> Option<RejectionKind> {
    response
        .extensions()
        .get::<Rejection>()
        .map(|r| r.kind().clone())
}

#[tokio::test]
async fn two_thousand_forged_keys_cost_at_most_two_hundred_lookups_and_a_valid_key_keeps_working() {
    let world = World::new().await;
    let router = world.router();
    let valid = world.valid.key.expose_secret().to_owned();
    // The valid key has been used before: it is cached.
    assert_eq!(send(&router, from(ATTACKER, &valid)).await.status(), 200);
    let before = world.probe.gets();

    let (mut unknown, mut throttled, mut valid_ok) = (0, 0, 0);
    for i in 0..2_000 {
        let response = send(&router, from(ATTACKER, &forged())).await;
        match response.status() {
            StatusCode::UNAUTHORIZED => unknown += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(matches!(
                    outcome(&response),
                    Some(RejectionKind::TooManyUnknownKeys { .. })
                ));
                let retry: u64 = response.headers()[header::RETRY_AFTER]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=60).contains(&retry), "Retry-After {retry}");
                let body = response.into_body().collect().await.unwrap().to_bytes();
                let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(body["error"]["code"], "rate_limited");
                throttled += 1;
            }
            other => panic!("forged key answered {other}"),
        }
        // Interleaved, from the same address: the valid key always succeeds.
        if i % 10 == 0 {
            let response = send(&router, from(ATTACKER, &valid)).await;
            assert_eq!(response.status(), 200, "request {i}");
            valid_ok += 1;
        }
    }
    let lookups = world.probe.gets() - before;
    assert!(lookups <= 200, "{lookups} lookups");
    // The default budget is 100 a minute, and the clock did not move.
    assert_eq!(lookups, 100);
    assert_eq!((unknown, throttled, valid_ok), (100, 1_900, 200));

    // Another address has its own budget.
    let response = send(&router, from(NEIGHBOUR, &forged())).await;
    assert_eq!(response.status(), 401);
    // A minute later the attacker may try again.
    world.clock.advance(Duration::from_secs(60));
    assert_eq!(send(&router, from(ATTACKER, &forged())).await.status(), 401);
}

#[tokio::test]
async fn malformed_keys_and_checksum_failures_never_reach_the_store_nor_spend_the_budget() {
    let world = World::new().await;
    let router = world.router();
    let before = world.probe.gets();
    for _ in 0..500 {
        let mut key = forged();
        // A changed last character fails the checksum.
        let last = key.pop().unwrap();
        key.push(if last == 'a' { 'b' } else { 'a' });
        let response = send(&router, from(ATTACKER, &key)).await;
        assert_eq!(outcome(&response), Some(RejectionKind::Malformed));
        let response = send(&router, from(ATTACKER, "pb_live_short")).await;
        assert_eq!(outcome(&response), Some(RejectionKind::Malformed));
    }
    assert_eq!(world.probe.gets(), before);
    // The whole budget is still there.
    for _ in 0..100 {
        let response = send(&router, from(ATTACKER, &forged())).await;
        assert_eq!(outcome(&response), Some(RejectionKind::Unknown));
    }
    let response = send(&router, from(ATTACKER, &forged())).await;
    assert!(matches!(
        outcome(&response),
        Some(RejectionKind::TooManyUnknownKeys { .. })
    ));
}

#[tokio::test]
async fn knowing_a_key_id_does_not_lock_its_owner_out() {
    let world = World::new().await;
    let router = world.router();
    let valid = world.valid.key.expose_secret().to_owned();
    // The attacker knows the id (it is public: logs, key lists) and guesses secrets.
    let id_prefix = &valid[..valid.len() - 28];
    let guesses = (0..300).map(|i| {
        let guess = format!("{id_prefix}{i:0>22}");
        // Give the guess a valid checksum so it reaches the cache.
        let checksum = base62_checksum(&guess);
        format!("{guess}{checksum}")
    });
    let before = world.probe.gets();
    for guess in guesses {
        let response = send(&router, from(ATTACKER, &guess)).await;
        let refused = outcome(&response).unwrap();
        assert!(
            matches!(
                refused,
                RejectionKind::Unknown | RejectionKind::TooManyUnknownKeys { .. }
            ),
            "{refused:?}"
        );
    }
    // One lookup: the record is cached after it, and every other guess is refused
    // from the cache.
    assert_eq!(world.probe.gets(), before + 1);
    // The owner, from its own address, is unaffected; even once the record ages out
    // of the cache and must be fetched again.
    world.clock.advance(Duration::from_secs(31));
    assert_eq!(send(&router, from(NEIGHBOUR, &valid)).await.status(), 200);
    // And so is the owner sending from the attacker's address (a shared NAT): the
    // record is cached, so no budget is involved.
    assert_eq!(send(&router, from(ATTACKER, &valid)).await.status(), 200);
}

/// The key format's checksum: CRC32 of everything before it, base62, 6 characters.
fn base62_checksum(signed: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut n = u64::from(crc32fast_hash(signed.as_bytes()));
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out.to_vec()).unwrap()
}

fn crc32fast_hash(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test]
async fn a_known_key_whose_record_expired_is_refreshed_past_the_budget() {
    let world = World::new().await;
    let router = world.router();
    let valid = world.valid.key.expose_secret().to_owned();
    assert_eq!(send(&router, from(ATTACKER, &valid)).await.status(), 200);
    for _ in 0..150 {
        send(&router, from(ATTACKER, &forged())).await;
    }
    // The record's TTL runs out while the attacker's budget is spent: the refresh is
    // not a probe (the id is known), so it is not refused.
    world.clock.advance(Duration::from_secs(31));
    let before = world.probe.gets();
    assert_eq!(send(&router, from(ATTACKER, &valid)).await.status(), 200);
    assert_eq!(world.probe.gets(), before + 1, "refreshed from the store");
}

#[tokio::test]
async fn a_cleared_cache_does_not_lock_a_known_key_out_of_a_throttled_address() {
    let world = World::new().await;
    let router = world.router();
    let valid = world.valid.key.expose_secret().to_owned();
    assert_eq!(send(&router, from(ATTACKER, &valid)).await.status(), 200);
    for _ in 0..150 {
        send(&router, from(ATTACKER, &forged())).await;
    }
    // The invalidation listener reconnected (the whole cache is cleared), or another
    // instance changed the key (NOTIFY): the record must be fetched again, and is.
    world.store.invalidate_all();
    assert_eq!(send(&router, from(ATTACKER, &valid)).await.status(), 200);
    world.store.invalidate(&world.valid.id);
    assert_eq!(send(&router, from(ATTACKER, &valid)).await.status(), 200);
    // Forged keys are still refused without a lookup.
    let before = world.probe.gets();
    assert_eq!(send(&router, from(ATTACKER, &forged())).await.status(), 429);
    assert_eq!(world.probe.gets(), before);
}

#[tokio::test]
async fn a_configured_budget_and_a_trusted_proxy_header_are_honoured() {
    let world = World::new().await;
    let auth = world
        .auth()
        .with_unknown_key_budget("3/min".parse::<UnknownKeyBudget>().unwrap());
    let router = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(AuthenticateLayer::new(auth).with_client_ip(ClientIp::x_forwarded_for(1).unwrap()));
    let via_proxy = |client: &str| {
        let mut req = from("10.0.0.1:443", &forged());
        req.headers_mut()
            .insert("x-forwarded-for", client.parse().unwrap());
        req
    };
    for _ in 0..3 {
        assert_eq!(send(&router, via_proxy("192.0.2.1")).await.status(), 401);
    }
    assert_eq!(send(&router, via_proxy("192.0.2.1")).await.status(), 429);
    // Another client behind the same proxy is not affected.
    assert_eq!(send(&router, via_proxy("192.0.2.2")).await.status(), 401);
}

#[tokio::test]
async fn without_connect_info_every_request_shares_one_budget() {
    let world = World::new().await;
    let router = world.router();
    let anonymous = |key: &str| {
        Request::get("/")
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap()
    };
    for _ in 0..100 {
        assert_eq!(send(&router, anonymous(&forged())).await.status(), 401);
    }
    assert_eq!(send(&router, anonymous(&forged())).await.status(), 429);
    // The budget can be switched off.
    let unlimited = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(AuthenticateLayer::new(
            world.auth().without_unknown_key_budget(),
        ));
    for _ in 0..300 {
        assert_eq!(send(&unlimited, anonymous(&forged())).await.status(), 401);
    }
}

#[tokio::test]
async fn a_typo_of_a_native_key_with_an_imported_prefix_is_malformed_without_a_lookup() {
    let world = World::new().await;
    let format = pb_format().with_imported_prefix("pb_").unwrap();
    let auth = KeyVerifier::new(world.store.clone(), format);
    let valid = world.valid.key.expose_secret();
    let before = world.probe.gets();
    // A changed last character (never the one already there), a dropped one, an added one.
    let (head, last) = valid.split_at(valid.len() - 1);
    let changed = format!("{head}{}", if last == "X" { "Y" } else { "X" });
    for typo in [head, &format!("{valid}x"), &changed] {
        assert_eq!(
            auth.authenticate(typo).await.unwrap_err(),
            RejectionKind::Malformed,
            "{typo}"
        );
    }
    assert_eq!(world.probe.gets(), before);
    // A foreign key with the prefix still takes the import path (one lookup by digest).
    let foreign = "pb_rcbcKubT0rEilFd9haG5JoPaMwIEx6G9nRjNdTYXSIM";
    assert_eq!(
        auth.authenticate(foreign).await.unwrap_err(),
        RejectionKind::Unknown
    );
    assert_eq!(world.probe.gets(), before + 1);
}

#[tokio::test(start_paused = true)]
async fn past_the_lookup_cap_a_miss_is_answered_503_at_once() {
    let world = World::with(|b| b.with_max_concurrent_lookups(2)).await;
    let auth = world.auth().without_unknown_key_budget();
    let router = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(AuthenticateLayer::new(auth));
    world.probe.set_delay(Some(Duration::from_secs(1)));
    let slow: Vec<_> = (0..2)
        .map(|_| tokio::spawn(send_owned(router.clone(), from(ATTACKER, &forged()))))
        .collect();
    while world.store.lookups_in_flight() < 2 {
        tokio::task::yield_now().await;
    }
    let started = tokio::time::Instant::now();
    let response = send(&router, from(NEIGHBOUR, &forged())).await;
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "answered without waiting"
    );
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    assert_eq!(outcome(&response), Some(RejectionKind::StoreUnavailable));
    for task in slow {
        assert_eq!(task.await.unwrap().status(), 401);
    }
    assert_eq!(world.store.lookups_in_flight(), 0);
    // With the permits back, misses are looked up again.
    world.probe.set_delay(None);
    assert_eq!(
        send(&router, from(NEIGHBOUR, &forged())).await.status(),
        401
    );
}

async fn send_owned(router: Router, req: Request<Body>) -> http::Response<Body> {
    router.oneshot(req).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_lookup_that_hangs_times_out_with_503() {
    let world = World::with(|b| b.with_lookup_timeout(Duration::from_secs(2))).await;
    let router = world.router();
    world.probe.set_delay(Some(Duration::from_secs(3_600)));
    let started = tokio::time::Instant::now();
    let response = send(&router, from(ATTACKER, &forged())).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(world.store.lookups_in_flight(), 0, "the permit came back");
    // A timed-out lookup is not charged: the whole budget is still there.
    world.probe.set_delay(None);
    for _ in 0..100 {
        assert_eq!(send(&router, from(ATTACKER, &forged())).await.status(), 401);
    }
}

#[tokio::test]
async fn a_flood_of_unknown_ids_never_evicts_a_known_record() {
    let world = World::with(|b| b.with_max_entries(100).with_max_negative_entries(50)).await;
    let auth = world.auth().without_unknown_key_budget();
    let key = world.valid.key.expose_secret();
    auth.authenticate(key).await.unwrap();
    for _ in 0..2_000 {
        assert_eq!(
            auth.authenticate(&forged()).await.unwrap_err(),
            RejectionKind::Unknown
        );
    }
    assert!(world.store.negative_entry_count() <= 50);
    let before = world.probe.gets();
    auth.authenticate(key).await.unwrap();
    assert_eq!(world.probe.gets(), before, "still cached");
}

#[tokio::test]
async fn through_an_outage_recent_keys_answer_and_others_get_503_until_it_ends() {
    let world = World::new().await;
    let router = world.router();
    let valid = world.valid.key.expose_secret().to_owned();
    let other = pb_format().generate(Some("live")).unwrap();
    world
        .store
        .insert(&record(&other, &[], world.clock.now()))
        .await
        .unwrap();
    assert_eq!(send(&router, from(NEIGHBOUR, &valid)).await.status(), 200);
    let fetched = world.clock.now();

    world.probe.set_failing(true);
    // Within the TTL, past it, and up to five minutes past it: the key answers.
    for at in [10, 31, 120, 329] {
        world.clock.set(fetched + Duration::from_secs(at));
        let response = send(&router, from(NEIGHBOUR, &valid)).await;
        assert_eq!(response.status(), 200, "{at} s after the last fetch");
    }
    // A key never used here, and an unknown one: 503 with Retry-After, not 401.
    for key in [other.key.expose_secret(), &forged()] {
        let response = send(&router, from(NEIGHBOUR, key)).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
    }
    // Past the TTL and the stale window: 503.
    world.clock.set(fetched + Duration::from_secs(331));
    let response = send(&router, from(NEIGHBOUR, &valid)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);

    // The store comes back: everything recovers without a restart.
    world.probe.set_failing(false);
    assert_eq!(send(&router, from(NEIGHBOUR, &valid)).await.status(), 200);
    assert_eq!(
        send(&router, from(NEIGHBOUR, other.key.expose_secret()))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn an_invalidation_or_a_revocation_ends_the_stale_window_at_once() {
    let world = World::new().await;
    let auth = world.auth();
    let key = world.valid.key.expose_secret();
    auth.authenticate(key).await.unwrap();
    world.clock.advance(Duration::from_secs(60));
    world.probe.set_failing(true);
    auth.authenticate(key).await.unwrap();
    // Another instance revoked it and said so (PostgreSQL NOTIFY).
    world.store.invalidate(&world.valid.id);
    assert_eq!(
        auth.authenticate(key).await.unwrap_err(),
        RejectionKind::StoreUnavailable
    );

    // Revoked through this instance: refused at once, never served stale.
    world.probe.set_failing(false);
    auth.authenticate(key).await.unwrap();
    world
        .store
        .revoke(&world.valid.id, world.clock.now())
        .await
        .unwrap();
    world.probe.set_failing(true);
    world.clock.advance(Duration::from_secs(60));
    assert_eq!(
        auth.authenticate(key).await.unwrap_err(),
        RejectionKind::StoreUnavailable
    );
    world.probe.set_failing(false);
    assert_eq!(
        auth.authenticate(key).await.unwrap_err(),
        RejectionKind::Revoked
    );
}

#[tokio::test]
async fn stale_if_error_can_be_switched_off() {
    let world = World::with(|b| b.with_stale_if_error(Duration::ZERO)).await;
    let auth = world.auth();
    let key = world.valid.key.expose_secret();
    auth.authenticate(key).await.unwrap();
    world.probe.set_failing(true);
    world.clock.advance(Duration::from_secs(29));
    auth.authenticate(key).await.unwrap();
    world.clock.advance(Duration::from_secs(2));
    assert_eq!(
        auth.authenticate(key).await.unwrap_err(),
        RejectionKind::StoreUnavailable
    );
}

#[tokio::test(start_paused = true)]
async fn past_the_cap_a_stale_record_answers() {
    let world = World::with(|b| b.with_max_concurrent_lookups(1)).await;
    let auth = world.auth().without_unknown_key_budget();
    let key = world.valid.key.expose_secret().to_owned();
    auth.authenticate(&key).await.unwrap();
    world.clock.advance(Duration::from_secs(31));
    world.probe.set_delay(Some(Duration::from_secs(1)));
    let blocker = {
        let auth = auth.clone();
        tokio::spawn(async move { auth.authenticate(&forged()).await })
    };
    while world.store.lookups_in_flight() < 1 {
        tokio::task::yield_now().await;
    }
    let principal = auth.authenticate(&key).await.unwrap();
    assert_eq!(principal.key_id(), &world.valid.id);
    assert_eq!(blocker.await.unwrap().unwrap_err(), RejectionKind::Unknown);
}

#[tokio::test(start_paused = true)]
async fn a_json_body_that_stops_arriving_is_refused_with_408_after_the_timeout() {
    let world = World::new().await;
    let auth = world.auth();
    let router = Router::new()
        .route("/items", post(|| async { "ok" }))
        .layer(
            AuthenticateLayer::new(auth)
                .with_sources(
                    KeySources::json_body()
                        .with_body_timeout(Duration::from_secs(5))
                        .unwrap(),
                )
                .with_responder(tower_api_key::presets::product_bridge::error_style()),
        );
    // One chunk, then nothing, for ever.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    tx.send(Ok(Bytes::from_static(b"{\"api_key\": \"pb_li")))
        .await
        .unwrap();
    let body = Body::from_stream(tokio_stream_from(rx));
    let req = Request::post("/items")
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap();
    let started = tokio::time::Instant::now();
    let response = router.oneshot(req).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(outcome(&response), Some(RejectionKind::RequestTimeout));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "request_timeout");
    drop(tx);
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn an_oversized_or_invisible_request_id_is_never_echoed() {
    let world = World::new().await;
    let router = world.router();
    let long = "r".repeat(129);
    for bad in [long.as_str(), "two words", "tab\there"] {
        let mut req = from(NEIGHBOUR, &forged());
        req.headers_mut()
            .insert("x-request-id", http::HeaderValue::from_str(bad).unwrap());
        let response = send(&router, req).await;
        assert_eq!(response.status(), 401);
        assert!(
            !response.headers().contains_key("x-request-id"),
            "{bad:?} was echoed"
        );
        assert_eq!(
            response
                .extensions()
                .get::<Rejection>()
                .unwrap()
                .request_id(),
            None
        );
    }
    let ok = "r".repeat(128);
    let mut req = from(NEIGHBOUR, &forged());
    req.headers_mut()
        .insert("x-request-id", http::HeaderValue::from_str(&ok).unwrap());
    let response = send(&router, req).await;
    assert_eq!(response.headers()["x-request-id"], ok.as_str());
}

#[tokio::test]
async fn imported_keys_take_the_same_budget() {
    let world = World::new().await;
    let auth = KeyVerifier::new(
        world.store.clone(),
        pb_format().with_imported_prefix("pb_").unwrap(),
    )
    .with_unknown_key_budget("2/min".parse().unwrap());
    let client = Some("192.0.2.9".parse().unwrap());
    let foreign = |n: u32| format!("pb_rcbcKubT0rEilFd9haG5JoPaMwIEx6G9nRjNdTY{n:04}");
    let before = world.probe.gets();
    for n in 0..2 {
        assert_eq!(
            auth.authenticate_from(client, &foreign(n))
                .await
                .unwrap_err(),
            RejectionKind::Unknown
        );
    }
    assert!(matches!(
        auth.authenticate_from(client, &foreign(2))
            .await
            .unwrap_err(),
        RejectionKind::TooManyUnknownKeys { .. }
    ));
    assert_eq!(world.probe.gets(), before + 2);
}
