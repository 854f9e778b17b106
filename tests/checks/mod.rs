//! The properties checked on attacker-controlled input, shared by the fuzz targets
//! (`fuzz/fuzz_targets/`, which include this file) and by `tests/properties.rs`, which
//! runs them on stable with a deterministic byte source and replays the seed corpus.
//!
//! Each `check_*` function takes an input built by [`arbitrary`] and panics when a
//! property fails; returning is a pass.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use arbitrary::Arbitrary;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Extensions, HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::Full;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};
use tower::{Layer, ServiceExt};
use tower_api_key::budget::UnknownKeyBudget;
use tower_api_key::client::{partition, ClientIp};
use tower_api_key::credentials::KeySources;
use tower_api_key::key::{Digest, KeyFormat, KeyId, Presented, TagKey};
use tower_api_key::parts::{AuthenticateLayer, KeyVerifier};
use tower_api_key::rate_limit::{QuotaPeriod, QuotaPolicy, RatePolicy};
use tower_api_key::rejection::{is_valid_request_id, Rejection, MAX_REQUEST_ID_LEN};
use tower_api_key::require_scopes::RequireScopesLayer;
use tower_api_key::store::{CachedStore, ManagedKeyStore, MemoryStore};
use tower_api_key::{KeyRecord, Owner, RejectionKind, ScopeModel};

// ---------------------------------------------------------------------------------------
// Credentials in the request head, and in a JSON body, through the real layer.
// ---------------------------------------------------------------------------------------

/// In fuzz input, stands for the one native key the store holds.
pub const NATIVE_MARK: &[u8] = b"$K";
/// In fuzz input, stands for the one imported key the store holds.
pub const IMPORTED_MARK: &[u8] = b"$I";

/// A layer over a store holding one native and one imported key, and a runtime to
/// call it on.
pub struct Harness {
    runtime: tokio::runtime::Runtime,
    head: AuthenticateLayer<MemoryStore>,
    body: AuthenticateLayer<MemoryStore>,
    native: String,
    imported: String,
}

fn format() -> KeyFormat {
    KeyFormat::new("pb")
        .and_then(|f| f.with_environments(["live", "test"]))
        .and_then(|f| f.with_imported_prefix("ext_"))
        .expect("a valid format")
}

impl Harness {
    /// The process-wide harness, built on first use.
    pub fn get() -> &'static Self {
        static HARNESS: OnceLock<Harness> = OnceLock::new();
        HARNESS.get_or_init(Self::new)
    }

    fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        let imported = "ext_Imported-key_0123456789abcdef".to_owned();
        let (head, body, native) = runtime.block_on(async {
            let store = MemoryStore::new();
            let minted = format().generate(Some("live")).expect("a key");
            let now = OffsetDateTime::now_utc();
            let owner = Owner::organization("acme");
            store
                .insert(&KeyRecord::new(
                    &minted,
                    "native",
                    owner.clone(),
                    vec![],
                    now,
                ))
                .await
                .expect("inserted");
            let id = KeyId::generate().expect("an id");
            let record = KeyRecord::imported(
                id,
                Digest::of(&imported),
                "ext_Imp".to_owned(),
                "imported",
                owner,
                vec![],
                now,
            );
            store.insert(&record).await.expect("inserted");
            let cached = CachedStore::builder(store).build().expect("a cache");
            // Parsing is under test, not the budget: without it every forged key is a
            // plain 401 however many came before.
            let verifier = KeyVerifier::new(cached, format()).without_unknown_key_budget();
            let sources = KeySources::bearer_or_header()
                .with_query("api_key")
                .expect("a query source");
            let head = AuthenticateLayer::new(verifier.clone()).with_sources(sources);
            let body = AuthenticateLayer::new(verifier).with_sources(KeySources::json_body());
            (head, body, minted.key.expose_secret().to_owned())
        });
        Self {
            runtime,
            head,
            body,
            native,
            imported,
        }
    }

    /// `input` with the marks replaced by the keys.
    fn substitute(&self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len() + 64);
        let mut i = 0;
        while i < input.len() {
            let rest = &input[i..];
            if rest.starts_with(NATIVE_MARK) {
                out.extend_from_slice(self.native.as_bytes());
                i += NATIVE_MARK.len();
            } else if rest.starts_with(IMPORTED_MARK) {
                out.extend_from_slice(self.imported.as_bytes());
                i += IMPORTED_MARK.len();
            } else {
                out.push(input[i]);
                i += 1;
            }
        }
        out
    }

    fn is_key(&self, bytes: &[u8]) -> bool {
        bytes == self.native.as_bytes() || bytes == self.imported.as_bytes()
    }

    fn call(
        &self,
        layer: &AuthenticateLayer<MemoryStore>,
        request: Request<Full<Bytes>>,
    ) -> (StatusCode, Option<Rejection>) {
        let service = layer.layer(tower::service_fn(|_: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }));
        let response = self
            .runtime
            .block_on(service.oneshot(request))
            .unwrap_or_else(|never| match never {});
        let rejection = response.extensions().get::<Rejection>().cloned();
        (response.status(), rejection)
    }
}

/// Which header a fuzzed header goes in.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum HeadHeader {
    Authorization,
    XApiKey,
    XRequestId,
    XForwardedFor,
    Other,
}

impl HeadHeader {
    fn name(self) -> HeaderName {
        HeaderName::from_static(match self {
            Self::Authorization => "authorization",
            Self::XApiKey => "x-api-key",
            Self::XRequestId => "x-request-id",
            Self::XForwardedFor => "x-forwarded-for",
            Self::Other => "x-other",
        })
    }
}

/// A request head: headers and a query string, with the key marks in them.
#[derive(Debug, Arbitrary)]
pub struct HeadInput {
    pub headers: Vec<(HeadHeader, Vec<u8>)>,
    pub query: Vec<u8>,
}

/// The layer never fails (no 500), admits a request only when one of its credentials
/// is exactly a stored key, admits one that presents a stored key in exactly one
/// canonical way, and echoes `X-Request-Id` on a refusal only when it is valid.
pub fn check_head(input: &HeadInput) {
    let harness = Harness::get();
    let mut request = Request::new(Full::new(Bytes::new()));
    let query = harness.substitute(&input.query);
    let uri = [b"/p?".as_slice(), &query].concat();
    *request.uri_mut() = Uri::try_from(uri).unwrap_or_else(|_| Uri::from_static("/p"));
    for (header, value) in &input.headers {
        if let Ok(value) = HeaderValue::from_bytes(&harness.substitute(value)) {
            request.headers_mut().append(header.name(), value);
        }
    }

    // What the request presents, read independently of the crate.
    let headers = request.headers().clone();
    let bearer_token = |value: &HeaderValue| {
        let bytes = value.as_bytes();
        let scheme = b"bearer ";
        (bytes.len() >= scheme.len() && bytes[..scheme.len()].eq_ignore_ascii_case(scheme)).then(
            || {
                let token = &bytes[scheme.len()..];
                let start = token.iter().position(|&b| b != b' ').unwrap_or(token.len());
                token[start..].to_vec()
            },
        )
    };
    let authorizations: Vec<&HeaderValue> = headers.get_all("authorization").iter().collect();
    let named: Vec<&HeaderValue> = headers.get_all("x-api-key").iter().collect();
    let params: Vec<&str> = request
        .uri()
        .query()
        .map(|q| {
            q.split('&')
                .filter_map(|pair| {
                    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (name == "api_key").then_some(value)
                })
                .collect()
        })
        .unwrap_or_default();
    let presents_key = authorizations
        .iter()
        .any(|v| bearer_token(v).is_some_and(|t| harness.is_key(&t)))
        || named.iter().any(|v| harness.is_key(v.as_bytes()))
        || params.iter().any(|p| harness.is_key(p.as_bytes()));
    let canonical_once = authorizations.len() + named.len() + params.len() == 1 && presents_key;
    let request_id = headers.get("x-request-id").cloned();

    let (status, rejection) = harness.call(&harness.head, request);
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{input:?}");
    match &rejection {
        None => {
            assert_eq!(status, StatusCode::OK, "{input:?}");
            assert!(presents_key, "admitted without a stored key: {input:?}");
        }
        Some(rejection) => {
            assert!(
                !canonical_once,
                "a stored key refused: {rejection:?} {input:?}"
            );
            assert_eq!(rejection.status(), status);
            let valid_id = request_id.as_ref().filter(|v| is_valid_request_id(v));
            assert_eq!(
                rejection.request_id().map(str::as_bytes),
                valid_id.map(HeaderValue::as_bytes),
                "{input:?}"
            );
        }
    }
    if canonical_once {
        assert_eq!(status, StatusCode::OK, "{input:?}");
    }
}

/// The top-level fields of a JSON object, in order, duplicates kept.
struct Fields(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    fields.push(entry);
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(V)
    }
}

/// The JSON-body scanner agrees with serde_json on every document serde_json accepts:
/// the same key, or the same refusal. On other bytes it only must not fail.
pub fn check_json_body(body: &[u8]) {
    let harness = Harness::get();
    let body = harness.substitute(body);
    let mut request = Request::new(Full::new(Bytes::from(body.clone())));
    *request.uri_mut() = Uri::from_static("/p");
    request.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let (status, rejection) = harness.call(&harness.body, request);
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let kind = rejection.as_ref().map(Rejection::kind);
    let shown = String::from_utf8_lossy(&body);

    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        // Not JSON to serde_json (or beyond what it represents): never admitted
        // unless the scanner found a stored key in it.
        return;
    };
    let invalid = matches!(kind, Some(RejectionKind::InvalidRequest { .. }));
    if !value.is_object() {
        assert!(invalid, "not an object, yet {kind:?}: {shown}");
        return;
    }
    let fields = serde_json::from_slice::<Fields>(&body)
        .expect("an object serde_json parsed as a Value")
        .0;
    let mut named = fields.iter().filter(|(name, _)| name == "api_key");
    let (first, second) = (named.next(), named.next());
    match (first, second) {
        (Some(_), Some(_)) => assert!(invalid, "a duplicate key field, yet {kind:?}: {shown}"),
        (None, _) => assert_eq!(kind, Some(&RejectionKind::Missing), "{shown}"),
        (Some((_, Value::String(key))), None) if harness.is_key(key.as_bytes()) => {
            assert_eq!(status, StatusCode::OK, "{kind:?}: {shown}");
        }
        (Some((_, Value::String(_))), None) => assert!(
            matches!(
                kind,
                Some(RejectionKind::Malformed | RejectionKind::Unknown)
            ),
            "an unknown key, yet {kind:?}: {shown}"
        ),
        (Some(_), None) => assert_eq!(kind, Some(&RejectionKind::Malformed), "{shown}"),
    }
}

// ---------------------------------------------------------------------------------------
// Key parsing and checksums.
// ---------------------------------------------------------------------------------------

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn base62(mut value: u64, width: usize) -> String {
    let mut digits = vec![b'0'; width];
    for digit in digits.iter_mut().rev() {
        *digit = BASE62[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8(digits).expect("ASCII")
}

fn base62_value(text: &[u8]) -> Option<u128> {
    text.iter().try_fold(0_u128, |acc, &b| {
        let digit = BASE62.iter().position(|&d| d == b)?;
        acc.checked_mul(62)?.checked_add(digit as u128)
    })
}

/// A key built from fuzz bytes: the environment, the id and secret characters, an
/// optional tag, then one mutation to try on it.
#[derive(Debug, Arbitrary)]
pub struct KeyInput {
    pub raw: Vec<u8>,
    pub test_environment: bool,
    pub body: [u8; 33],
    pub tag: Option<(u8, [u8; 11])>,
    pub mutate_at: u16,
    pub mutate_to: u8,
}

/// Whatever the input, `parse` does not fail; what it accepts as native has a valid
/// checksum, the configured shape and the id it carries; a key built with a valid
/// checksum parses to its id and environment; one changed, dropped or added character
/// makes it malformed.
pub fn check_key(input: &KeyInput) {
    let format = format();
    let raw = String::from_utf8_lossy(&input.raw);
    check_parsed(&format, &raw);
    let bare = KeyFormat::new("pbo").expect("a valid format");
    check_parsed(&bare, &raw);

    let environment = if input.test_environment {
        "test"
    } else {
        "live"
    };
    let mut text = format!("pb_{environment}_");
    let prefix_len = text.len();
    text.extend(
        input
            .body
            .iter()
            .map(|b| char::from(BASE62[usize::from(*b) % 62])),
    );
    if let Some((id, value)) = &input.tag {
        text.push(char::from(BASE62[usize::from(*id) % 62]));
        text.extend(
            value
                .iter()
                .map(|b| char::from(BASE62[usize::from(*b) % 62])),
        );
    }
    let checksum = crc32fast::hash(text.as_bytes());
    text.push_str(&base62(u64::from(checksum), 6));

    let Some(Presented::Native(parsed)) = format.parse(&text) else {
        panic!("a key with a valid checksum is refused: {text}");
    };
    assert_eq!(parsed.id().as_str(), &text[prefix_len..prefix_len + 11]);
    assert_eq!(
        parsed.environment().map(|e| e.as_str().to_owned()),
        Some(environment.to_owned())
    );
    assert_eq!(parsed.is_tagged(), input.tag.is_some());
    let tag_key = TagKey::new('a', &[7; 32]).expect("a tag key");
    assert!(
        !parsed.tag_verifies(&tag_key),
        "a forged tag verifies: {text}"
    );

    let mut mutated = text.clone().into_bytes();
    let at = usize::from(input.mutate_at) % mutated.len();
    mutated[at] = input.mutate_to & 0x7f;
    if mutated != text.as_bytes() {
        let mutated = String::from_utf8(mutated).expect("ASCII");
        assert_eq!(
            format.parse(&mutated),
            None,
            "one character changed: {mutated}"
        );
    }
    assert_eq!(format.parse(&text[..text.len() - 1]), None);
    assert_eq!(format.parse(&format!("{text}0")), None);
}

fn check_parsed(format: &KeyFormat, input: &str) {
    match format.parse(input) {
        None => {}
        Some(Presented::Native(parsed)) => {
            let prefix = format!("{}_", format.product());
            assert!(input.starts_with(&prefix), "{input:?}");
            let rest = &input[prefix.len()..];
            let body = match parsed.environment() {
                None => {
                    assert!(format.environments().is_empty());
                    rest
                }
                Some(env) => {
                    assert!(format.environments().contains(&env));
                    rest.strip_prefix(env.as_str())
                        .and_then(|r| r.strip_prefix('_'))
                        .expect("the environment follows the product")
                }
            };
            assert!(body.len() == 39 || body.len() == 51, "{input:?}");
            assert!(body.bytes().all(|b| b.is_ascii_alphanumeric()), "{input:?}");
            assert_eq!(parsed.is_tagged(), body.len() == 51);
            assert_eq!(parsed.id().as_str(), &body[..11]);
            let (signed, checksum) = input.split_at(input.len() - 6);
            assert_eq!(
                base62_value(checksum.as_bytes()),
                Some(u128::from(crc32fast::hash(signed.as_bytes()))),
                "{input:?}"
            );
            assert_eq!(parsed.digest(), parsed.digest());
        }
        Some(Presented::Imported(key)) => {
            assert_eq!(key, input);
            assert!(input.starts_with("ext_") && input.len() > 4, "{input:?}");
            assert!(input.len() <= tower_api_key::key::MAX_KEY_LEN);
            assert!(input
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
            for env in format.environments() {
                assert!(
                    !input.starts_with(&format!("{}_{env}_", format.product())),
                    "a native-looking key taken for an imported one: {input:?}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Forwarding headers.
// ---------------------------------------------------------------------------------------

/// Forwarding headers and how many proxies are trusted.
#[derive(Debug, Arbitrary)]
pub struct ClientInput {
    pub forwarded: bool,
    pub hops: u8,
    pub with_peer: bool,
    pub headers: Vec<(bool, Vec<u8>)>,
}

const PEER: &str = "10.9.8.7:4000";

/// Every address a header value could be said to hold, read generously.
fn addresses_in(value: &[u8]) -> Vec<IpAddr> {
    let text = String::from_utf8_lossy(value);
    let mut found = Vec::new();
    for token in text.split(|c: char| matches!(c, ',' | ';' | '=' | '"') || c.is_whitespace()) {
        if let Ok(ip) = token.parse::<IpAddr>() {
            found.push(ip);
        }
        if let Ok(addr) = token.parse::<SocketAddr>() {
            found.push(addr.ip());
        }
        if let Some(ip) = token
            .strip_prefix('[')
            .and_then(|rest| rest.split_once(']'))
            .and_then(|(ip, _)| ip.parse().ok())
        {
            found.push(ip);
        }
    }
    found
}

/// The client is the peer or an address written in the header that was asked for,
/// never anything else, and its partition is stable.
pub fn check_client(input: &ClientInput) {
    let hops = usize::from(input.hops % 8);
    let rule = if input.forwarded {
        ClientIp::forwarded(hops)
    } else {
        ClientIp::x_forwarded_for(hops)
    };
    let Ok(rule) = rule else {
        assert_eq!(hops, 0);
        return;
    };
    let mut headers = HeaderMap::new();
    let mut written = Vec::new();
    for (is_forwarded, value) in &input.headers {
        let Ok(value) = HeaderValue::from_bytes(value) else {
            continue;
        };
        let name = if *is_forwarded {
            "forwarded"
        } else {
            "x-forwarded-for"
        };
        if *is_forwarded == input.forwarded {
            written.extend(addresses_in(value.as_bytes()));
        }
        headers.append(name, value);
    }
    let mut extensions = Extensions::new();
    let peer: SocketAddr = PEER.parse().expect("an address");
    if input.with_peer {
        extensions.insert(ConnectInfo(peer));
    }
    let client = rule.client(&headers, &extensions);
    if input.with_peer {
        assert!(client.is_some(), "the peer is the fallback: {input:?}");
    }
    if let Some(ip) = client {
        assert!(
            written.contains(&ip) || (input.with_peer && ip == peer.ip()),
            "{ip} is in no header: {input:?}"
        );
        let counted = partition(ip);
        assert_eq!(partition(counted), counted);
        if ip.is_ipv4() {
            assert_eq!(counted, ip);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Scope expressions.
// ---------------------------------------------------------------------------------------

/// The model requirements are parsed against: 33 scopes, so a requirement can need
/// more than one 64-bit word's worth of alternatives.
pub fn scope_model() -> &'static ScopeModel {
    static MODEL: OnceLock<ScopeModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let actions = ["read", "write", "list", "delete"];
        let mut builder = ScopeModel::builder();
        for resource in ["a", "b", "c", "d", "e", "f", "g", "h"] {
            builder = builder.resource(resource, actions);
        }
        builder
            .scope("admin")
            .action_implies("write", "read")
            .build()
            .expect("a valid model")
    })
}

/// One token of a requirement expression.
#[derive(Debug, Clone, Arbitrary)]
pub enum ScopeToken {
    Scope(u8),
    And,
    Or,
    Open,
    Close,
    Space,
    Raw(String),
}

/// A requirement expression and the scopes a key holds.
#[derive(Debug, Arbitrary)]
pub struct ScopeInput {
    pub tokens: Vec<ScopeToken>,
    pub held: Vec<u8>,
}

impl ScopeInput {
    /// The expression as text.
    pub fn expression(&self) -> String {
        let names: Vec<&str> = scope_model().scopes().collect();
        let mut text = String::new();
        for token in &self.tokens {
            match token {
                ScopeToken::Scope(i) => text.push_str(names[usize::from(*i) % names.len()]),
                ScopeToken::And => text.push_str(" AND "),
                ScopeToken::Or => text.push_str(" OR "),
                ScopeToken::Open => text.push('('),
                ScopeToken::Close => text.push(')'),
                ScopeToken::Space => text.push(' '),
                ScopeToken::Raw(raw) => text.push_str(raw),
            }
        }
        text
    }
}

/// Parsing is deterministic and agrees with `RequireScopesLayer::new`; the normalized
/// `Display` parses back to the same requirement; a requirement is satisfied exactly
/// when nothing is missing, and adding what is missing satisfies it.
pub fn check_scope(input: &ScopeInput) {
    let model = scope_model();
    let expression = input.expression();
    let first = model.requirement(&expression);
    let second = model.requirement(&expression);
    let layer = RequireScopesLayer::new(model, &expression);
    assert_eq!(first.is_ok(), layer.is_ok(), "{expression:?}");
    let (first, second) = match (first, second) {
        (Ok(first), Ok(second)) => (first, second),
        (Err(a), Err(b)) => {
            assert_eq!(a.message(), b.message());
            return;
        }
        (a, b) => panic!("parsed twice differently: {a:?} {b:?}"),
    };
    let shown = first.to_string();
    assert_eq!(shown, second.to_string());
    let again = model
        .requirement(&shown)
        .unwrap_or_else(|e| panic!("{shown:?} (from {expression:?}) does not parse: {e}"));
    assert_eq!(again.to_string(), shown, "{expression:?}");
    let alternatives: Vec<Vec<&str>> = first.alternatives().collect();
    assert_eq!(again.alternatives().collect::<Vec<_>>(), alternatives);
    for scope in first.scopes() {
        assert!(model.contains(scope), "{scope}");
    }

    let names: Vec<&str> = model.scopes().collect();
    let held: Vec<&str> = input
        .held
        .iter()
        .map(|i| names[usize::from(*i) % names.len()])
        .collect();
    let grants = model.grants(held.iter().copied());
    let missing = first.missing(&grants);
    assert_eq!(first.is_satisfied_by(&grants), missing.is_empty());
    let completed = model.grants(
        held.iter()
            .copied()
            .chain(missing.iter().map(String::as_str)),
    );
    assert!(first.is_satisfied_by(&completed), "{expression:?} {held:?}");
}

// ---------------------------------------------------------------------------------------
// Rate, budget and quota specifications, and request ids.
// ---------------------------------------------------------------------------------------

/// One specification to parse or build.
#[derive(Debug, Arbitrary)]
pub enum Spec {
    Rate(String),
    Budget(String),
    RequestId(Vec<u8>),
    RateNew {
        name: String,
        quota: u32,
        window_secs: u64,
        burst: u32,
    },
    Quota {
        limit: u64,
        monthly: bool,
        unix_seconds: i64,
        nanos: u32,
        offset_seconds: i32,
    },
}

fn unit_text(window: Duration) -> &'static str {
    match window.as_secs() {
        1 => "s",
        60 => "min",
        3600 => "h",
        86_400 => "day",
        other => panic!("a parsed window of {other} s"),
    }
}

/// Specifications parse or are refused without failing, and what parses means what
/// its text says.
pub fn check_spec(spec: &Spec) {
    match spec {
        Spec::Rate(text) => {
            if let Ok(policy) = text.parse::<RatePolicy>() {
                assert_eq!(policy.name(), "default");
                assert!(policy.quota() >= 1);
                assert_eq!(policy.burst(), policy.quota());
                let canonical = format!("{}/{}", policy.quota(), unit_text(policy.window()));
                assert_eq!(canonical.parse::<RatePolicy>().ok(), Some(policy.clone()));
                assert!(policy.refill_time() <= policy.window() + Duration::from_nanos(1));
            }
        }
        Spec::Budget(text) => {
            if let Ok(budget) = text.parse::<UnknownKeyBudget>() {
                assert!(budget.lookups() >= 1);
                let canonical = format!("{}/{}", budget.lookups(), unit_text(budget.per()));
                assert_eq!(canonical.parse::<UnknownKeyBudget>().ok(), Some(budget));
                assert_eq!(
                    budget.to_string().parse::<UnknownKeyBudget>().ok(),
                    Some(budget),
                    "Display does not parse back"
                );
            }
        }
        Spec::RequestId(bytes) => {
            if let Ok(value) = HeaderValue::from_bytes(bytes) {
                let expected = !bytes.is_empty()
                    && bytes.len() <= MAX_REQUEST_ID_LEN
                    && bytes.iter().all(|b| (b'!'..=b'~').contains(b));
                assert_eq!(is_valid_request_id(&value), expected, "{bytes:?}");
            }
        }
        Spec::RateNew {
            name,
            quota,
            window_secs,
            burst,
        } => {
            let window = Duration::from_secs(*window_secs);
            if let Ok(policy) = RatePolicy::new(name, *quota, window) {
                assert_eq!(policy.interval(), window / *quota);
                if let Ok(policy) = policy.with_burst(*burst) {
                    assert_eq!(policy.refill_time(), policy.interval() * *burst);
                }
            }
        }
        Spec::Quota {
            limit,
            monthly,
            unix_seconds,
            nanos,
            offset_seconds,
        } => {
            let period = if *monthly {
                QuotaPeriod::Month
            } else {
                QuotaPeriod::Day
            };
            let policy = QuotaPolicy::new(*limit, period);
            assert_eq!(policy.is_ok(), *limit > 0);
            // Every second the calendar holds, whatever the fuzzer chose.
            let (first, last) = (
                PrimitiveDateTime::MIN.assume_utc().unix_timestamp(),
                PrimitiveDateTime::MAX.assume_utc().unix_timestamp(),
            );
            let seconds = first + unix_seconds.rem_euclid(last - first + 1);
            let Ok(utc) = OffsetDateTime::from_unix_timestamp(seconds) else {
                return;
            };
            let Ok(local) = utc.replace_nanosecond(nanos % 1_000_000_000) else {
                return;
            };
            let Ok(offset) = UtcOffset::from_whole_seconds(offset_seconds % 86_400) else {
                return;
            };
            // The same wall-clock reading in another offset: near the ends of the
            // calendar, an instant UTC cannot represent.
            let now = PrimitiveDateTime::new(local.date(), local.time()).assume_offset(offset);
            let (start, end) = period.bounds(now);
            let far = PrimitiveDateTime::MAX.assume_utc();
            // Past either end of the calendar, bounds count from that end.
            let first_instant = PrimitiveDateTime::MIN.assume_utc();
            assert!(
                start <= now || start == far || start == first_instant,
                "{start} > {now}"
            );
            assert!(now < end || end == far, "{now} >= {end}");
            assert!(start <= end);
        }
    }
}
