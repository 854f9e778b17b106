//! Every outcome, in every built-in style: exact status, headers and body, rendered
//! through a real router (the same path scope guards and rate limiters use).

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use http::request::Parts;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use support::{pb_format, record, ProbeStore};
use tower::ServiceExt;
use tower_api_key::clock::{Clock, ManualClock};
use tower_api_key::parts::{AuthenticateLayer, KeyVerifier};
use tower_api_key::rejection::{ErrorStyle, RejectionResponse};
use tower_api_key::store::{CachedStore, ManagedKeyStore};
use tower_api_key::RejectionKind;

fn outcomes() -> Vec<RejectionKind> {
    vec![
        RejectionKind::InsufficientScope {
            required: vec!["observations:write".into()],
        },
        RejectionKind::InsufficientScope {
            required: vec!["employees:write".into(), "webhooks:write".into()],
        },
        RejectionKind::WrongEnvironment,
        RejectionKind::RateLimited {
            retry_after: Duration::from_millis(11_200),
        },
        RejectionKind::QuotaExceeded,
        RejectionKind::StoreUnavailable,
        RejectionKind::InvalidRequest {
            reason: "bad thing",
        },
        RejectionKind::PayloadTooLarge,
    ]
}

async fn refuse(Path(n): Path<usize>, parts: Parts) -> RejectionResponse {
    RejectionResponse::from_parts(&parts, outcomes()[n].clone())
}

struct Expect {
    status: u16,
    body: &'static str,
    challenge: Option<&'static str>,
    retry_after: Option<&'static str>,
}

const fn e(
    status: u16,
    body: &'static str,
    challenge: Option<&'static str>,
    retry_after: Option<&'static str>,
) -> Expect {
    Expect {
        status,
        body,
        challenge,
        retry_after,
    }
}

const SCOPE_ONE: &str =
    r#"Bearer realm="api", error="insufficient_scope", scope="observations:write""#;
const SCOPE_TWO: &str =
    r#"Bearer realm="api", error="insufficient_scope", scope="employees:write webhooks:write""#;
const INVALID_TOKEN: &str = r#"Bearer realm="api", error="invalid_token""#;
const INVALID_REQUEST: &str = r#"Bearer realm="api", error="invalid_request""#;

async fn check(style: ErrorStyle, expected: &[Expect]) {
    let clock = ManualClock::default();
    let store = CachedStore::builder(ProbeStore::new())
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let minted = pb_format().generate(Some("live")).unwrap();
    store
        .insert(&record(&minted, &[], clock.now()))
        .await
        .unwrap();
    let app = Router::new()
        .route("/refuse/{n}", get(refuse))
        .layer(AuthenticateLayer::new(KeyVerifier::new(store, pb_format())).with_responder(style));
    assert_eq!(expected.len(), outcomes().len());
    for (n, want) in expected.iter().enumerate() {
        let req = Request::get(format!("/refuse/{n}"))
            .header(
                "authorization",
                format!("Bearer {}", minted.key.expose_secret()),
            )
            .header("x-request-id", "req-9")
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(req).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let case = format!("outcome #{n} {:?}", outcomes()[n]);
        assert_eq!(
            parts.status,
            StatusCode::from_u16(want.status).unwrap(),
            "{case}"
        );
        assert_eq!(std::str::from_utf8(&body).unwrap(), want.body, "{case}");
        assert_eq!(
            header("www-authenticate").as_deref(),
            want.challenge,
            "{case}"
        );
        assert_eq!(header("retry-after").as_deref(), want.retry_after, "{case}");
        assert_eq!(header("x-request-id").as_deref(), Some("req-9"), "{case}");
        assert_eq!(
            header("cache-control").as_deref(),
            Some("no-store"),
            "{case}"
        );
    }
}

#[tokio::test]
async fn envelope_style() {
    check(
        ErrorStyle::envelope(),
        &[
            e(403, r#"{"error":{"code":"permission_denied","message":"Required scope: observations:write"}}"#, Some(SCOPE_ONE), None),
            e(403, r#"{"error":{"code":"permission_denied","message":"Required scopes: employees:write, webhooks:write"}}"#, Some(SCOPE_TWO), None),
            e(403, r#"{"error":{"code":"permission_denied","message":"API key environment is not allowed here"}}"#, None, None),
            e(429, r#"{"error":{"code":"rate_limited","message":"Rate limit exceeded; retry after 12 seconds"}}"#, None, Some("12")),
            e(403, r#"{"error":{"code":"quota_exceeded","message":"Quota exceeded; wait for the reset or raise the limit"}}"#, None, None),
            e(503, r#"{"error":{"code":"service_unavailable","message":"Authentication is temporarily unavailable; retry later"}}"#, None, Some("5")),
            e(400, r#"{"error":{"code":"invalid_request","message":"bad thing"}}"#, Some(INVALID_REQUEST), None),
            e(413, r#"{"error":{"code":"payload_too_large","message":"Request body is too large"}}"#, None, None),
        ],
    )
    .await;
}

#[tokio::test]
async fn envelope_style_with_request_id() {
    let style = ErrorStyle::envelope().with_request_id_in_body(true);
    check(
        style,
        &[
            e(403, r#"{"error":{"code":"permission_denied","message":"Required scope: observations:write","request_id":"req-9"}}"#, Some(SCOPE_ONE), None),
            e(403, r#"{"error":{"code":"permission_denied","message":"Required scopes: employees:write, webhooks:write","request_id":"req-9"}}"#, Some(SCOPE_TWO), None),
            e(403, r#"{"error":{"code":"permission_denied","message":"API key environment is not allowed here","request_id":"req-9"}}"#, None, None),
            e(429, r#"{"error":{"code":"rate_limited","message":"Rate limit exceeded; retry after 12 seconds","request_id":"req-9"}}"#, None, Some("12")),
            e(403, r#"{"error":{"code":"quota_exceeded","message":"Quota exceeded; wait for the reset or raise the limit","request_id":"req-9"}}"#, None, None),
            e(503, r#"{"error":{"code":"service_unavailable","message":"Authentication is temporarily unavailable; retry later","request_id":"req-9"}}"#, None, Some("5")),
            e(400, r#"{"error":{"code":"invalid_request","message":"bad thing","request_id":"req-9"}}"#, Some(INVALID_REQUEST), None),
            e(413, r#"{"error":{"code":"payload_too_large","message":"Request body is too large","request_id":"req-9"}}"#, None, None),
        ],
    )
    .await;
}

#[tokio::test]
async fn prompt_floe_style() {
    check(
        tower_api_key::presets::promptfloe::error_style(),
        &[
            e(403, r#"{"error":{"code":"missing_scope","message":"Required scope: observations:write"}}"#, Some(SCOPE_ONE), None),
            e(403, r#"{"error":{"code":"missing_scope","message":"Required scopes: employees:write, webhooks:write"}}"#, Some(SCOPE_TWO), None),
            e(403, r#"{"error":{"code":"wrong_environment","message":"API key environment is not allowed here"}}"#, None, None),
            e(429, r#"{"error":{"code":"rate_limited","message":"Rate limit exceeded; retry after 12 seconds"}}"#, None, Some("12")),
            e(403, r#"{"error":{"code":"quota_exceeded","message":"Quota exceeded; wait for the reset or raise the limit"}}"#, None, None),
            e(503, r#"{"error":{"code":"service_unavailable","message":"Authentication is temporarily unavailable; retry later"}}"#, None, Some("5")),
            e(400, r#"{"error":{"code":"invalid_request","message":"bad thing"}}"#, Some(INVALID_REQUEST), None),
            e(413, r#"{"error":{"code":"payload_too_large","message":"Request body is too large"}}"#, None, None),
        ],
    )
    .await;
}

#[tokio::test]
async fn product_bridge_style() {
    const GENERIC: &str =
        r#"{"error":{"code":"authentication_required","message":"invalid api_key"}}"#;
    check(
        tower_api_key::presets::product_bridge::error_style(),
        &[
            e(401, GENERIC, Some(INVALID_TOKEN), None),
            e(401, GENERIC, Some(INVALID_TOKEN), None),
            e(401, GENERIC, Some(INVALID_TOKEN), None),
            e(429, r#"{"error":{"code":"rate_limited","message":"Rate limit exceeded; retry after 12 seconds"}}"#, None, Some("12")),
            e(403, r#"{"error":{"code":"quota_exceeded","message":"Quota exceeded; wait for the reset or raise the limit"}}"#, None, None),
            e(503, r#"{"error":{"code":"service_unavailable","message":"Authentication is temporarily unavailable; retry later"}}"#, None, Some("5")),
            e(400, r#"{"error":{"code":"invalid_request","message":"bad thing"}}"#, Some(INVALID_REQUEST), None),
            e(413, r#"{"error":{"code":"payload_too_large","message":"Request body is too large"}}"#, None, None),
        ],
    )
    .await;
}

#[tokio::test]
async fn problem_json_style() {
    check(
        ErrorStyle::problem_json().with_request_id_in_body(true),
        &[
            e(403, r#"{"code":"permission_denied","detail":"Required scope: observations:write","request_id":"req-9","required_scopes":["observations:write"],"status":403,"title":"Forbidden","type":"urn:tower-api-key:problem:insufficient_scope"}"#, Some(SCOPE_ONE), None),
            e(403, r#"{"code":"permission_denied","detail":"Required scopes: employees:write, webhooks:write","request_id":"req-9","required_scopes":["employees:write","webhooks:write"],"status":403,"title":"Forbidden","type":"urn:tower-api-key:problem:insufficient_scope"}"#, Some(SCOPE_TWO), None),
            e(403, r#"{"code":"permission_denied","detail":"API key environment is not allowed here","request_id":"req-9","status":403,"title":"Forbidden","type":"urn:tower-api-key:problem:wrong_environment"}"#, None, None),
            e(429, r#"{"code":"rate_limited","detail":"Rate limit exceeded; retry after 12 seconds","request_id":"req-9","status":429,"title":"Too Many Requests","type":"urn:tower-api-key:problem:rate_limited"}"#, None, Some("12")),
            e(403, r#"{"code":"quota_exceeded","detail":"Quota exceeded; wait for the reset or raise the limit","request_id":"req-9","status":403,"title":"Forbidden","type":"urn:tower-api-key:problem:quota_exceeded"}"#, None, None),
            e(503, r#"{"code":"service_unavailable","detail":"Authentication is temporarily unavailable; retry later","request_id":"req-9","status":503,"title":"Service Unavailable","type":"urn:tower-api-key:problem:store_unavailable"}"#, None, Some("5")),
            e(400, r#"{"code":"invalid_request","detail":"bad thing","request_id":"req-9","status":400,"title":"Bad Request","type":"urn:tower-api-key:problem:invalid_request"}"#, Some(INVALID_REQUEST), None),
            e(413, r#"{"code":"payload_too_large","detail":"Request body is too large","request_id":"req-9","status":413,"title":"Payload Too Large","type":"urn:tower-api-key:problem:payload_too_large"}"#, None, None),
        ],
    )
    .await;
}
