//! The layer over real axum routers: sources, outcomes, styles and headers.

mod support;

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::routing::{get, post};
use axum::Router;
use http::{header, HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use support::{pb_format, record, ProbeStore};
use tower::ServiceExt;
use tower_api_key::clock::{Clock, ManualClock};
use tower_api_key::credentials::KeySources;
use tower_api_key::key::MintedKey;
use tower_api_key::parts::{AuthenticateLayer, KeyVerifier};
use tower_api_key::rejection::{ErrorStyle, Rejection};
use tower_api_key::store::{Applied, CachedStore, Change, ManagedKeyStore};
use tower_api_key::{Principal, RejectionKind};

const GENERIC_401: &str =
    r#"{"error":{"code":"authentication_required","message":"API key is missing or invalid"}}"#;

struct World {
    probe: ProbeStore,
    store: CachedStore<ProbeStore>,
    clock: ManualClock,
    live: MintedKey,
    test: MintedKey,
}

impl World {
    async fn new() -> Self {
        let clock = ManualClock::default();
        let probe = ProbeStore::new();
        let store = CachedStore::builder(probe.clone())
            .with_clock(clock.clone())
            .build()
            .unwrap();
        let live = pb_format().generate(Some("live")).unwrap();
        let test = pb_format().generate(Some("test")).unwrap();
        for key in [&live, &test] {
            store
                .insert(&record(key, &["session:read"], clock.now()))
                .await
                .unwrap();
        }
        Self {
            probe,
            store,
            clock,
            live,
            test,
        }
    }

    fn auth(&self) -> KeyVerifier<ProbeStore> {
        KeyVerifier::new(self.store.clone(), pb_format())
    }

    fn layer(&self) -> AuthenticateLayer<ProbeStore> {
        AuthenticateLayer::new(self.auth())
    }

    fn key(&self) -> &str {
        self.live.key.expose_secret()
    }
}

async fn whoami(principal: Principal) -> String {
    format!("{}:{}", principal.key_id(), principal.owner().id())
}

async fn maybe(principal: Option<Principal>) -> String {
    principal.map_or_else(|| "anonymous".to_owned(), |p| p.key_id().to_string())
}

fn router(layer: AuthenticateLayer<ProbeStore>) -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/maybe", get(maybe))
        .route(
            "/echo",
            post(|headers: HeaderMap, body: Bytes| async move {
                let auth = headers.contains_key(header::AUTHORIZATION)
                    || headers.contains_key("x-api-key");
                let marker = if auth {
                    "credential-visible"
                } else {
                    "credential-hidden"
                };
                format!("{marker}{}", String::from_utf8_lossy(&body))
            }),
        )
        .layer(layer)
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    rejection: Option<Rejection>,
}

impl Reply {
    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let response = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
        rejection: parts.extensions.get::<Rejection>().cloned(),
    }
}

fn get_with(path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut req = Request::get(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Body::empty()).unwrap()
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

#[tokio::test]
async fn bearer_and_x_api_key_both_authenticate() {
    let world = World::new().await;
    let app = router(world.layer());
    let expected = format!("{}:acme", world.live.id);

    let by_bearer = send(
        &app,
        get_with("/whoami", &[("authorization", &bearer(world.key()))]),
    )
    .await;
    assert_eq!(
        (by_bearer.status, by_bearer.text()),
        (StatusCode::OK, expected.as_str())
    );
    let by_header = send(&app, get_with("/whoami", &[("x-api-key", world.key())])).await;
    assert_eq!(
        (by_header.status, by_header.text()),
        (StatusCode::OK, expected.as_str())
    );
    // First request missed the cache (async path), the second hit it (sync path).
    assert_eq!(world.probe.gets(), 1);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let world = World::new().await;
    let app = router(world.layer());
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let value = format!("{scheme} {}", world.key());
        let reply = send(&app, get_with("/whoami", &[("authorization", &value)])).await;
        assert_eq!(reply.status, StatusCode::OK, "{scheme}");
    }
}

#[tokio::test]
async fn a_refusal_names_the_presented_key_id_from_the_store_and_from_the_cache() {
    let world = World::new().await;
    let revoked = pb_format().generate(Some("live")).unwrap();
    world
        .store
        .insert(&record(&revoked, &[], world.clock.now()))
        .await
        .unwrap();
    world
        .store
        .revoke(&revoked.id, world.clock.now())
        .await
        .unwrap();
    let unknown = pb_format().generate(Some("live")).unwrap();
    let app = router(world.layer());

    // The first request of each key misses the cache, the second hits it (a record,
    // or a negative entry): both name the key's public id, never more.
    for (key, outcome) in [
        (&revoked, RejectionKind::Revoked),
        (&unknown, RejectionKind::Unknown),
    ] {
        for _ in 0..2 {
            let reply = send(
                &app,
                get_with(
                    "/whoami",
                    &[("authorization", &bearer(key.key.expose_secret()))],
                ),
            )
            .await;
            let rejection = reply.rejection.expect("a rejection");
            assert_eq!(rejection.kind(), &outcome);
            assert_eq!(rejection.key_id(), Some(&key.id));
        }
    }
    assert_eq!(world.probe.gets(), 2);

    // A key that fails its checksum has no id to name.
    let mut typo = world.key().to_owned();
    typo.pop();
    typo.push(if world.key().ends_with('A') { 'B' } else { 'A' });
    let reply = send(
        &app,
        get_with("/whoami", &[("authorization", &bearer(&typo))]),
    )
    .await;
    let rejection = reply.rejection.expect("a rejection");
    assert_eq!(rejection.kind(), &RejectionKind::Malformed);
    assert_eq!(rejection.key_id(), None);
}

#[tokio::test]
async fn every_401_has_the_same_body_and_a_challenge() {
    let world = World::new().await;
    let revoked = pb_format().generate(Some("live")).unwrap();
    let expired = pb_format().generate(Some("live")).unwrap();
    let now = world.clock.now();
    world
        .store
        .insert(&record(&revoked, &[], now))
        .await
        .unwrap();
    world.store.revoke(&revoked.id, now).await.unwrap();
    world
        .store
        .insert(&record(&expired, &[], now).with_expires_at(Some(now)))
        .await
        .unwrap();
    let unknown = pb_format().generate(Some("live")).unwrap();
    let app = router(world.layer());

    let missing = send(&app, get_with("/whoami", &[])).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.text(), GENERIC_401);
    assert_eq!(
        missing.header("www-authenticate"),
        Some(r#"Bearer realm="api""#)
    );
    assert_eq!(missing.rejection.unwrap().kind(), &RejectionKind::Missing);

    let malformed = format!("{}x", world.key());
    let cases = [
        (malformed.as_str(), RejectionKind::Malformed),
        (unknown.key.expose_secret(), RejectionKind::Unknown),
        (revoked.key.expose_secret(), RejectionKind::Revoked),
        (expired.key.expose_secret(), RejectionKind::Expired),
    ];
    for (key, outcome) in cases {
        let reply = send(
            &app,
            get_with("/whoami", &[("authorization", &bearer(key))]),
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{outcome:?}");
        assert_eq!(reply.text(), GENERIC_401, "{outcome:?}");
        assert_eq!(
            reply.header("www-authenticate"),
            Some(r#"Bearer realm="api", error="invalid_token""#)
        );
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(reply.rejection.unwrap().kind(), &outcome);
    }
}

#[tokio::test]
async fn other_schemes_empty_tokens_and_bad_bytes_are_401() {
    let world = World::new().await;
    let app = router(world.layer());
    let token = format!("Token {}", world.key());
    let apikey = format!("ApiKey {}", world.key());
    for value in [
        token.as_str(),
        apikey.as_str(),
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer pb_live_a b",
        "Bearer pb_live_\"quoted\"",
        "Bearer pb_live_abc==",
    ] {
        let reply = send(&app, get_with("/whoami", &[("authorization", value)])).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{value}");
        assert_eq!(reply.text(), GENERIC_401);
    }
    let req = Request::get("/whoami")
        .header(
            "authorization",
            http::HeaderValue::from_bytes(b"Bearer pb_live_\xff\xfe").unwrap(),
        )
        .body(Body::empty())
        .unwrap();
    let reply = send(&app, req).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(world.probe.gets(), 0);
}

#[tokio::test]
async fn a_key_sent_twice_is_an_invalid_request() {
    let world = World::new().await;
    let app = router(world.layer());
    let both = send(
        &app,
        get_with(
            "/whoami",
            &[
                ("authorization", &bearer(world.key())),
                ("x-api-key", world.key()),
            ],
        ),
    )
    .await;
    assert_eq!(both.status, StatusCode::BAD_REQUEST);
    assert_eq!(both.json()["error"]["code"], "invalid_request");
    assert_eq!(
        both.header("www-authenticate"),
        Some(r#"Bearer realm="api", error="invalid_request""#)
    );
    let twice = send(
        &app,
        get_with(
            "/whoami",
            &[
                ("authorization", &bearer(world.key())),
                ("authorization", &bearer(world.key())),
            ],
        ),
    )
    .await;
    assert_eq!(twice.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_store_outage_is_503_with_retry_after() {
    let world = World::new().await;
    let app = router(world.layer());
    world.probe.set_failing(true);
    let reply = send(
        &app,
        get_with("/whoami", &[("authorization", &bearer(world.key()))]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.header("retry-after"), Some("5"));
    assert_eq!(reply.json()["error"]["code"], "service_unavailable");
    assert!(reply.header("www-authenticate").is_none());
}

#[tokio::test]
async fn test_keys_are_refused_on_a_live_only_layer() {
    let world = World::new().await;
    let auth = world.auth().with_environments(["live"]).unwrap();
    let app = router(AuthenticateLayer::new(auth));
    let reply = send(
        &app,
        get_with(
            "/whoami",
            &[("authorization", &bearer(world.test.key.expose_secret()))],
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.json()["error"]["code"], "permission_denied");
    let ok = send(
        &app,
        get_with("/whoami", &[("authorization", &bearer(world.key()))]),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
}

#[tokio::test]
async fn errors_carry_the_request_id() {
    let world = World::new().await;
    let app = router(
        world
            .layer()
            .with_responder(ErrorStyle::envelope().with_request_id_in_body(true)),
    );
    let reply = send(&app, get_with("/whoami", &[("x-request-id", "req-123")])).await;
    assert_eq!(reply.header("x-request-id"), Some("req-123"));
    assert_eq!(reply.json()["error"]["request_id"], "req-123");
    assert_eq!(reply.json()["error"]["code"], "authentication_required");
}

#[tokio::test]
async fn prompt_floe_style_reveals_expiry_only_after_the_secret_matched() {
    let world = World::new().await;
    let now = world.clock.now();
    world.clock.advance(Duration::from_secs(10));
    let expired = pb_format().generate(Some("live")).unwrap();
    world
        .store
        .insert(&record(&expired, &[], now).with_expires_at(Some(now)))
        .await
        .unwrap();
    let app = router(
        world
            .layer()
            .with_responder(tower_api_key::presets::promptfloe::error_style()),
    );

    let reply = send(
        &app,
        get_with(
            "/whoami",
            &[("authorization", &bearer(expired.key.expose_secret()))],
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.json()["error"]["code"], "expired_key");

    // Same id, wrong secret: the record exists and is expired, but nothing says so.
    let forged = pb_format().generate(Some("live")).unwrap();
    let forged_text =
        forged
            .key
            .expose_secret()
            .replacen(forged.id.as_str(), expired.id.as_str(), 1);
    let checksum_fixed = recompute_checksum(&forged_text);
    let reply = send(
        &app,
        get_with("/whoami", &[("authorization", &bearer(&checksum_fixed))]),
    )
    .await;
    assert_eq!(reply.json()["error"]["code"], "invalid_key");
    assert_eq!(reply.rejection.unwrap().kind(), &RejectionKind::Unknown);
}

/// Re-signs a key body with a valid checksum (what an attacker can always do).
fn recompute_checksum(key: &str) -> String {
    let signed = &key[..key.len() - 6];
    let crc = crc32fast::hash(signed.as_bytes());
    let digits = base62::encode(crc);
    format!("{signed}{digits:0>6}")
}

#[tokio::test]
async fn product_bridge_style_has_one_generic_401() {
    let world = World::new().await;
    let app = router(
        world
            .layer()
            .with_responder(tower_api_key::presets::product_bridge::error_style()),
    );
    let reply = send(&app, get_with("/whoami", &[])).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.text(),
        r#"{"error":{"code":"authentication_required","message":"invalid api_key"}}"#
    );
}

#[tokio::test]
async fn problem_json_style() {
    let world = World::new().await;
    let app = router(world.layer().with_responder(ErrorStyle::problem_json()));
    let reply = send(&app, get_with("/whoami", &[])).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json")
    );
    let doc = reply.json();
    assert_eq!(doc["status"], 401);
    assert_eq!(doc["type"], "urn:tower-api-key:problem:missing");
    assert_eq!(doc["title"], "Unauthorized");
}

#[tokio::test]
async fn a_custom_responder_replaces_the_body_but_keeps_the_challenge() {
    let world = World::new().await;
    let app = router(world.layer().with_responder(|r: &Rejection| {
        let mut resp = http::Response::new(Bytes::from(format!("nope: {}", r.kind().code())));
        *resp.status_mut() = r.kind().status();
        resp
    }));
    let reply = send(&app, get_with("/whoami", &[])).await;
    assert_eq!(
        (reply.status, reply.text()),
        (StatusCode::UNAUTHORIZED, "nope: missing")
    );
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"Bearer realm="api""#)
    );
}

#[tokio::test]
async fn route_layer_leaves_unknown_routes_as_404() {
    let world = World::new().await;
    let app = Router::new()
        .route("/whoami", get(whoami))
        .route_layer(world.layer());
    let reply = send(&app, get_with("/nowhere", &[])).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = send(&app, get_with("/whoami", &[])).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn optional_mode_admits_anonymous_requests_but_not_bad_keys() {
    let world = World::new().await;
    let app = router(world.layer().with_optional(true));
    let anonymous = send(&app, get_with("/maybe", &[])).await;
    assert_eq!(
        (anonymous.status, anonymous.text()),
        (StatusCode::OK, "anonymous")
    );
    let known = send(&app, get_with("/maybe", &[("x-api-key", world.key())])).await;
    assert_eq!(known.text(), world.live.id.as_str());
    let bad = send(&app, get_with("/maybe", &[("x-api-key", "pb_live_bogus")])).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    // A handler that requires a principal still refuses an anonymous request.
    let required = send(&app, get_with("/whoami", &[])).await;
    assert_eq!(required.status, StatusCode::UNAUTHORIZED);
    assert_eq!(required.text(), GENERIC_401);
}

#[tokio::test]
async fn an_extractor_without_the_layer_fails_closed() {
    let app = Router::new()
        .route("/whoami", get(whoami))
        .route("/maybe", get(maybe));
    let reply = send(&app, get_with("/whoami", &[])).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    let reply = send(&app, get_with("/maybe", &[])).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn hide_credentials_removes_the_header() {
    let world = World::new().await;
    let post = |hidden: bool, key: &str| {
        let _ = hidden;
        Request::post("/echo")
            .header("x-api-key", key)
            .body(Body::from("payload"))
            .unwrap()
    };
    let shown = send(&router(world.layer()), post(false, world.key())).await;
    assert_eq!(shown.text(), "credential-visiblepayload");
    let hidden = send(
        &router(world.layer().with_hide_credentials(true)),
        post(true, world.key()),
    )
    .await;
    assert_eq!(hidden.text(), "credential-hiddenpayload");
}

#[tokio::test]
async fn a_key_in_rotation_grace_carries_a_sunset_header_then_expires() {
    let world = World::new().await;
    let until = world.clock.now() + time::Duration::hours(24);
    let minted = pb_format().generate(Some("live")).unwrap();
    let successor = record(&minted, &["session:read"], world.clock.now());
    let rotate = Change::Rotate {
        id: &world.live.id,
        successor: &successor,
        valid_until: until,
        at: world.clock.now(),
        actor: None,
    };
    let applied = world.store.apply(rotate, &[]).await.unwrap();
    assert!(matches!(applied, Applied::Done(_)), "{applied:?}");
    let app = router(world.layer());
    let reply = send(
        &app,
        get_with("/whoami", &[("authorization", &bearer(world.key()))]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("sunset"),
        Some("Fri, 02 Jan 2026 00:00:00 GMT")
    );

    world.clock.advance(Duration::from_secs(24 * 3600));
    let reply = send(
        &app,
        get_with("/whoami", &[("authorization", &bearer(world.key()))]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.rejection.unwrap().kind(), &RejectionKind::Expired);
}

#[tokio::test]
async fn invalid_realms_are_refused_when_built() {
    let world = World::new().await;
    assert!(world.layer().with_realm("a\"b").is_err());
    let app = router(world.layer().with_realm("Performance Blocks").unwrap());
    let reply = send(&app, get_with("/whoami", &[])).await;
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"Bearer realm="Performance Blocks""#)
    );
}

// ---- JSON-body keys (ProductBridge) ----

fn body_router(world: &World, sources: KeySources, hide: bool) -> Router {
    let layer = world
        .layer()
        .with_sources(sources)
        .with_responder(tower_api_key::presets::product_bridge::error_style())
        .with_hide_credentials(hide);
    Router::new()
        .route(
            "/list",
            post(|p: Principal, body: Bytes| async move {
                let mut out = p.key_id().to_string().into_bytes();
                out.push(b'|');
                out.extend_from_slice(&body);
                out
            }),
        )
        .layer(layer)
}

fn post_json(body: impl Into<Body>) -> Request<Body> {
    Request::post("/list")
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

#[tokio::test]
async fn a_json_body_key_reaches_the_handler_byte_for_byte() {
    let world = World::new().await;
    let app = body_router(&world, KeySources::json_body(), false);
    // Odd spacing, unicode and a nested api_key must all survive untouched.
    let body = format!(
        "{{ \"limit\" : 25,\n \"nested\": {{\"api_key\": 1}}, \"title\": \"caf\\u00e9 ☕\", \"api_key\": \"{}\" }}",
        world.key()
    );
    let reply = send(&app, post_json(body.clone())).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.text(), format!("{}|{body}", world.live.id));
}

#[tokio::test]
async fn body_routers_ignore_headers_and_queries() {
    let world = World::new().await;
    let app = body_router(&world, KeySources::json_body(), false);
    let req = Request::post(format!("/list?api_key={}", world.key()))
        .header("content-type", "application/json")
        .header("authorization", bearer(world.key()))
        .header("x-api-key", world.key())
        .body(Body::from(r#"{"limit":25}"#))
        .unwrap();
    let reply = send(&app, req).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.text(),
        r#"{"error":{"code":"authentication_required","message":"invalid api_key"}}"#
    );
    assert_eq!(reply.rejection.unwrap().kind(), &RejectionKind::Missing);
}

#[tokio::test]
async fn bad_json_bodies_get_clear_errors() {
    let world = World::new().await;
    let app = body_router(&world, KeySources::json_body(), false);
    let key = world.key();
    let truncated = format!(r#"{{"api_key":"{key}""#);
    let cases: Vec<(Request<Body>, StatusCode)> = vec![
        (post_json(truncated), StatusCode::BAD_REQUEST),
        (post_json("not json"), StatusCode::BAD_REQUEST),
        (post_json("[1,2]"), StatusCode::BAD_REQUEST),
        (post_json(r#"{"api_key":42}"#), StatusCode::UNAUTHORIZED),
        (post_json(r#"{"limit":25}"#), StatusCode::UNAUTHORIZED),
        (post_json(""), StatusCode::UNAUTHORIZED),
        (
            Request::post("/list")
                .header("content-type", "text/plain")
                .body(Body::from(format!(r#"{{"api_key":"{key}"}}"#)))
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (req, status) in cases {
        let reply = send(&app, req).await;
        assert_eq!(reply.status, status, "{}", reply.text());
        assert_ne!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert_eq!(world.probe.gets(), 0);
}

#[tokio::test]
async fn over_limit_bodies_are_413_with_or_without_a_content_length() {
    let world = World::new().await;
    let app = body_router(
        &world,
        KeySources::json_body().with_body_limit(64).unwrap(),
        false,
    );
    let big = format!(
        r#"{{"api_key":"{}","pad":"{}"}}"#,
        world.key(),
        "x".repeat(100)
    );
    let declared = send(&app, post_json(big.clone())).await;
    assert_eq!(declared.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(declared.json()["error"]["code"], "payload_too_large");

    // Streamed in chunks with no Content-Length.
    let chunks: Vec<Result<Bytes, std::io::Error>> = big
        .as_bytes()
        .chunks(16)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let streamed = Body::from_stream(futures_util::stream::iter(chunks));
    let reply = send(&app, post_json(streamed)).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn hide_credentials_strips_the_body_field() {
    let world = World::new().await;
    let app = body_router(&world, KeySources::json_body(), true);
    let body = format!(r#"{{"api_key":"{}","limit":25}}"#, world.key());
    let reply = send(&app, post_json(body)).await;
    assert_eq!(reply.text(), format!(r#"{}|{{"limit":25}}"#, world.live.id));
}

// ---- plain tower ----

#[tokio::test]
async fn works_on_a_plain_tower_service() {
    use http_body_util::Full;
    let world = World::new().await;
    let svc = tower::ServiceBuilder::new()
        .layer(world.layer())
        .service(tower::service_fn(|req: Request<Full<Bytes>>| async move {
            let id = req
                .extensions()
                .get::<Principal>()
                .map(|p| p.key_id().to_string());
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(
                id.unwrap_or_default(),
            ))))
        }));
    let req = Request::get("/")
        .header("authorization", bearer(world.key()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, world.live.id.as_str());
    let response = svc
        .oneshot(Request::get("/").body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}
