//! The operations of the key-management router: each reads its request, acts through
//! the [`KeyManager`] with the request's [`Principal`] as the actor, and answers JSON,
//! or a refusal rendered by the surface's responder.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Request};
use axum::response::Response;
use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tower::util::BoxCloneSyncService;

use crate::audit::Auditor;
use crate::key::{Environment, KeyId};
use crate::manage::{Actor, CreatedKey, Expiry, KeyManager, ManageError, NewKey, MAX_NAME_LEN};
use crate::principal::Principal;
use crate::rejection::{request_id, Rejection, RejectionKind, Renderer};
use crate::store::audit_entry::{AuditEntry, AuditQuery};
use crate::store::{KeyCursor, KeyQuery, KeyRecord, KeyState, ManagedKeyStore, UsageBucket};

/// The largest request body read, in bytes: a name, a few scopes and a date fit many
/// times over.
pub(crate) const MAX_BODY: usize = 16 * 1024;

/// The most keys one page of the list holds, and the default.
pub(crate) const MAX_LIMIT: u32 = 100;
pub(crate) const DEFAULT_LIMIT: u32 = 50;

/// The longest grace period of a rotation: a year.
pub(crate) const MAX_GRACE_SECONDS: u64 = 365 * 86_400;

/// One route's service before its guard: what the guard's layers wrap.
pub(crate) type Route = BoxCloneSyncService<Request, Response, Infallible>;

/// What every operation shares: the manager that acts, the surface's renderer, and the
/// request auditor the audit log flushes before reading.
pub(crate) struct Shared<K> {
    pub(crate) manager: KeyManager<K>,
    pub(crate) renderer: Arc<Renderer>,
    pub(crate) auditor: Option<Auditor>,
}

/// The operations, one per route and method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Create,
    List,
    Get,
    Update,
    Rotate,
    Revoke,
    Usage,
    Audit,
}

/// The service of `operation`.
pub(crate) fn route<K: ManagedKeyStore>(shared: &Arc<Shared<K>>, operation: Operation) -> Route {
    let shared = Arc::clone(shared);
    BoxCloneSyncService::new(tower::service_fn(move |req: Request| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(handle(&shared, operation, req).await) }
    }))
}

/// Why an operation was refused.
enum Refusal {
    Manage(ManageError),
    /// The request itself: its body, its query, its content type.
    Input {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    /// No principal: the router runs without its guards (a wiring mistake).
    Unauthenticated,
}

impl From<ManageError> for Refusal {
    fn from(error: ManageError) -> Self {
        Self::Manage(error)
    }
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::Input {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_request",
        message: message.into(),
    }
}

async fn handle<K: ManagedKeyStore>(
    shared: &Shared<K>,
    operation: Operation,
    req: Request,
) -> Response {
    let (mut parts, body) = req.into_parts();
    let request_id = request_id(&parts.headers).cloned();
    let answer = match parts.extensions.get::<Principal>().cloned() {
        None => Err(Refusal::Unauthenticated),
        Some(principal) => {
            let id = match operation {
                Operation::Get
                | Operation::Update
                | Operation::Rotate
                | Operation::Revoke
                | Operation::Usage => path_id(&mut parts).await,
                _ => None,
            };
            let query = parts.uri.query().unwrap_or_default();
            let content_type = parts.headers.get(header::CONTENT_TYPE).cloned();
            let input = Input {
                principal: &principal,
                body,
                content_type,
            };
            match (operation, id) {
                (Operation::Create, _) => create(shared, input).await,
                (Operation::List, _) => list(shared, &principal, query).await,
                (Operation::Audit, _) => audit(shared, &principal, query).await,
                (Operation::Get, Some(id)) => get(shared, &principal, id).await,
                (Operation::Update, Some(id)) => update(shared, input, id).await,
                (Operation::Rotate, Some(id)) => rotate(shared, input, id).await,
                (Operation::Revoke, Some(id)) => revoke(shared, &principal, id).await,
                (Operation::Usage, Some(id)) => usage(shared, &principal, id, query).await,
                (_, None) => Err(ManageError::NotFound.into()),
            }
        }
    };
    match answer {
        Ok(response) => response,
        Err(refusal) => refuse(&shared.renderer, refusal, request_id),
    }
}

/// The refusal, in the surface's style, with the request's id.
fn refuse(renderer: &Renderer, refusal: Refusal, request_id: Option<HeaderValue>) -> Response {
    let rejection = match refusal {
        Refusal::Manage(error) => {
            if let ManageError::Store(store) = &error {
                tracing::warn!(target: "tower_api_key", error = %store, "key management failed in the store");
            }
            error.rejection()
        }
        Refusal::Input {
            status,
            code,
            message,
        } => Rejection::new(RejectionKind::KeyManagement {
            status,
            code,
            message,
        }),
        Refusal::Unauthenticated => Rejection::new(RejectionKind::Misconfigured),
    };
    renderer
        .render(rejection.with_request_id(request_id))
        .map(Body::from)
}

/// The `{id}` of the path. An id that is not one names no key: `None`, answered as a
/// missing key is (404), so the answer reveals nothing about ids.
async fn path_id(parts: &mut http::request::Parts) -> Option<KeyId> {
    let Path(id) = Path::<String>::from_request_parts(parts, &()).await.ok()?;
    KeyId::new(&id).ok()
}

/// What an operation with a body reads.
struct Input<'a> {
    principal: &'a Principal,
    body: Body,
    content_type: Option<HeaderValue>,
}

impl Input<'_> {
    /// The body, at most [`MAX_BODY`] bytes; empty when none was sent.
    async fn bytes(&mut self) -> Result<Bytes, Refusal> {
        let body = std::mem::take(&mut self.body);
        match Limited::new(body, MAX_BODY).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(error) if error.is::<LengthLimitError>() => Err(Refusal::Input {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "payload_too_large",
                message: format!("Request body is larger than {MAX_BODY} bytes"),
            }),
            Err(_) => Err(invalid("The request body could not be read")),
        }
    }

    /// The body as `T`, which must be sent as JSON; `None` when no body was sent and
    /// `optional`.
    async fn json<T: for<'de> Deserialize<'de>>(
        &mut self,
        optional: bool,
    ) -> Result<Option<T>, Refusal> {
        let bytes = self.bytes().await?;
        if optional && bytes.is_empty() {
            return Ok(None);
        }
        if !self.content_type.as_ref().is_some_and(is_json) {
            return Err(Refusal::Input {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code: "unsupported_media_type",
                message: "Expected Content-Type: application/json".to_owned(),
            });
        }
        serde_json::from_slice::<Option<T>>(&bytes)
            .map_err(|error| invalid(format!("Invalid JSON body: {error}")))
            .and_then(|value| match value {
                Some(value) => Ok(Some(value)),
                None if optional => Ok(None),
                None => Err(invalid("Invalid JSON body: expected an object, found null")),
            })
    }
}

/// `application/json`, or any `application/…+json`, with any parameters.
fn is_json(value: &HeaderValue) -> bool {
    let Ok(text) = value.to_str() else {
        return false;
    };
    let essence = text.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// A JSON response.
fn json(status: StatusCode, value: &impl Serialize) -> Result<Response, Refusal> {
    let body = serde_json::to_vec(value).map_err(|_| {
        ManageError::Store(crate::store::StoreError::Corrupt(
            "a record could not be written as JSON".to_owned(),
        ))
    })?;
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}

/// A key as the API shows it: never a secret.
#[derive(Serialize)]
pub(crate) struct KeyView {
    id: KeyId,
    name: String,
    prefix: String,
    environment: Option<Environment>,
    scopes: Vec<String>,
    /// `active`, `in_grace`, `expired` or `revoked`, at the time of the request.
    status: &'static str,
    created_at: String,
    expires_at: Option<String>,
    last_used_at: Option<String>,
    created_by: Option<String>,
    revoked_at: Option<String>,
    superseded_by: Option<KeyId>,
    /// The end of the grace period of a key replaced by a rotation.
    grace_ends_at: Option<String>,
}

impl KeyView {
    fn new(record: KeyRecord, now: OffsetDateTime) -> Self {
        Self {
            status: KeyState::of(record.status_at(now)).as_str(),
            id: record.id,
            name: record.name,
            prefix: record.prefix,
            environment: record.environment,
            scopes: record.scopes,
            created_at: rfc3339(record.created_at),
            expires_at: record.expires_at.map(rfc3339),
            last_used_at: record.last_used_at.map(rfc3339),
            created_by: record.created_by,
            revoked_at: record.revoked_at.map(rfc3339),
            superseded_by: record.rotation.map(|r| r.superseded_by),
            grace_ends_at: record.rotation.map(|r| rfc3339(r.valid_until)),
        }
    }
}

/// A key just made: its view and the full key, shown this once.
#[derive(Serialize)]
struct CreatedView {
    #[serde(flatten)]
    view: KeyView,
    key: String,
}

fn created(made: CreatedKey, now: OffsetDateTime) -> Result<Response, Refusal> {
    let key = made.key.expose_secret().to_owned();
    json(
        StatusCode::CREATED,
        &CreatedView {
            view: KeyView::new(made.record, now),
            key,
        },
    )
}

fn now<K: ManagedKeyStore>(shared: &Shared<K>) -> OffsetDateTime {
    shared.manager.store().clock().now()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    #[serde(default, deserialize_with = "not_null")]
    environment: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    scopes: Option<Vec<String>>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
}

/// A field that may be left out but, as its schema says, is not `null` when given.
fn not_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

async fn create<K: ManagedKeyStore>(
    shared: &Shared<K>,
    mut input: Input<'_>,
) -> Result<Response, Refusal> {
    let body: CreateBody = input
        .json(false)
        .await?
        .ok_or_else(|| invalid("Invalid JSON body: expected an object"))?;
    let principal = input.principal;
    let mut new = NewKey::new(body.name, principal.owner().clone());
    // The caller's own environment unless another is named; whether it may name
    // another is the manager's rule.
    if let Some(environment) = body
        .environment
        .or_else(|| principal.environment().map(|e| e.as_str().to_owned()))
    {
        new = new.with_environment(environment);
    }
    if let Some(scopes) = body.scopes {
        new = new.with_scopes(scopes);
    }
    if let Some(at) = body.expires_at {
        new = new.with_expiry(Expiry::At(at));
    }
    let made = shared.manager.create(new, Actor::Key(principal)).await?;
    created(made, now(shared))
}

/// The query string as `(name, value)` pairs, percent-decoded (`+` is a space). A name
/// given twice, or text that does not decode, is refused.
fn query_pairs<'a>(query: &str, known: &[&'a str]) -> Result<Vec<(&'a str, String)>, Refusal> {
    let mut pairs: Vec<(&'a str, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(name)?;
        let Some(known) = known.iter().find(|k| **k == name) else {
            // Parameters this API does not define are ignored, as they are elsewhere.
            continue;
        };
        if pairs.iter().any(|(n, _)| n == known) {
            return Err(invalid(format!(
                "The query parameter {known} is given twice"
            )));
        }
        pairs.push((known, decode(value)?));
    }
    Ok(pairs)
}

fn decode(text: &str) -> Result<String, Refusal> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let byte = text
                    .get(i + 1..i + 3)
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .ok_or_else(|| invalid("The query string is not valid percent-encoding"))?;
                out.push(byte);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| invalid("The query string is not UTF-8"))
}

fn parse_limit(value: &str, max: u32) -> Result<u32, Refusal> {
    match value.parse::<u32>() {
        Ok(limit) if (1..=max).contains(&limit) => Ok(limit),
        _ => Err(invalid(format!(
            "limit must be a whole number from 1 to {max}"
        ))),
    }
}

/// A page of keys.
#[derive(Serialize)]
struct KeyList {
    items: Vec<KeyView>,
    /// The cursor of the next page; `null` on the last page.
    next_cursor: Option<String>,
}

async fn list<K: ManagedKeyStore>(
    shared: &Shared<K>,
    principal: &Principal,
    query: &str,
) -> Result<Response, Refusal> {
    let now = now(shared);
    let mut keys = KeyQuery::new(principal.owner().clone(), now).with_limit(DEFAULT_LIMIT);
    for (name, value) in query_pairs(
        query,
        &["environment", "status", "name_prefix", "limit", "cursor"],
    )? {
        keys = match name {
            "environment" => {
                let known = shared.manager.format().environments();
                match known.iter().find(|env| env.as_str() == value) {
                    Some(env) => keys.in_environment(*env),
                    None => {
                        let names: Vec<&str> = known.iter().map(Environment::as_str).collect();
                        return Err(invalid(format!(
                            "environment must be one of: {}",
                            names.join(", ")
                        )));
                    }
                }
            }
            "status" => keys.in_state(value.parse().map_err(|_| {
                invalid("status must be one of active, in_grace, expired, revoked")
            })?),
            "name_prefix" if value.chars().count() > MAX_NAME_LEN => {
                return Err(invalid(format!(
                    "name_prefix is longer than a name ({MAX_NAME_LEN} characters)"
                )))
            }
            "name_prefix" => keys.with_name_prefix(value),
            "limit" => keys.with_limit(parse_limit(&value, MAX_LIMIT)?),
            _ => keys.after(
                value
                    .parse::<KeyCursor>()
                    .map_err(|_| invalid("cursor is not one this API returned"))?,
            ),
        };
    }
    let page = shared
        .manager
        .list_page(keys, Actor::Key(principal))
        .await?;
    json(
        StatusCode::OK,
        &KeyList {
            items: page
                .items
                .into_iter()
                .map(|record| KeyView::new(record, now))
                .collect(),
            next_cursor: page.next.map(|cursor| cursor.to_string()),
        },
    )
}

async fn get<K: ManagedKeyStore>(
    shared: &Shared<K>,
    principal: &Principal,
    id: KeyId,
) -> Result<Response, Refusal> {
    let record = shared
        .manager
        .get(principal.owner(), &id, Actor::Key(principal))
        .await?;
    // DELETE revoked it: the resource is gone (the list and the audit log keep it).
    if record.revoked_at.is_some() {
        return Err(Refusal::Input {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: "The key was revoked".to_owned(),
        });
    }
    json(StatusCode::OK, &KeyView::new(record, now(shared)))
}

/// Exactly one change: `name` or `scopes` (neither may be `null`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    #[serde(default, deserialize_with = "present")]
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    scopes: Option<Vec<String>>,
}

/// A field that, when present, is not `null`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

async fn update<K: ManagedKeyStore>(
    shared: &Shared<K>,
    mut input: Input<'_>,
    id: KeyId,
) -> Result<Response, Refusal> {
    let body: UpdateBody = input
        .json(false)
        .await?
        .ok_or_else(|| invalid("Invalid JSON body: expected an object"))?;
    let principal = input.principal;
    let (owner, actor) = (principal.owner(), Actor::Key(principal));
    let record = match (body.name, body.scopes) {
        (Some(name), None) => shared.manager.rename(owner, &id, &name, actor).await?,
        (None, Some(scopes)) => shared.manager.set_scopes(owner, &id, scopes, actor).await?,
        (None, None) => return Err(invalid("Give the key's new `name` or its new `scopes`")),
        (Some(_), Some(_)) => {
            return Err(invalid(
                "Change the name and the scopes in separate requests",
            ))
        }
    };
    json(StatusCode::OK, &KeyView::new(record, now(shared)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    #[serde(default, deserialize_with = "whole_number")]
    grace_seconds: u64,
}

/// A whole number as JSON Schema counts it: `12` and `12.0` alike.
fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    use serde::de::Error;
    let number = serde_json::Number::deserialize(deserializer)?;
    if let Some(n) = number.as_u64() {
        return Ok(n);
    }
    match number.as_f64() {
        // A whole number below 2^53 is exactly representable.
        Some(f) if (0.0..9_007_199_254_740_992.0).contains(&f) && f.fract() == 0.0 =>
        {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Ok(f as u64)
        }
        _ => Err(D::Error::custom(format!(
            "expected a whole number of at least 0, found {number}"
        ))),
    }
}

async fn rotate<K: ManagedKeyStore>(
    shared: &Shared<K>,
    mut input: Input<'_>,
    id: KeyId,
) -> Result<Response, Refusal> {
    // No body, or `null`, is a grace of 0.
    let grace = input
        .json::<RotateBody>(true)
        .await?
        .map_or(0, |body| body.grace_seconds);
    if grace > MAX_GRACE_SECONDS {
        return Err(invalid("grace_seconds must be at most one year (31536000)"));
    }
    let principal = input.principal;
    let made = shared
        .manager
        .rotate(
            principal.owner(),
            &id,
            Duration::from_secs(grace),
            Actor::Key(principal),
        )
        .await?;
    created(made, now(shared))
}

async fn revoke<K: ManagedKeyStore>(
    shared: &Shared<K>,
    principal: &Principal,
    id: KeyId,
) -> Result<Response, Refusal> {
    shared
        .manager
        .revoke(principal.owner(), &id, Actor::Key(principal))
        .await?;
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

/// Audit entries, newest first.
#[derive(Serialize)]
struct AuditLog {
    items: Vec<AuditEntry>,
}

async fn audit<K: ManagedKeyStore>(
    shared: &Shared<K>,
    principal: &Principal,
    query: &str,
) -> Result<Response, Refusal> {
    let mut audit = AuditQuery::new(principal.owner().clone());
    for (name, value) in query_pairs(query, &["api_key_id", "limit"])? {
        audit = match name {
            "api_key_id" => audit
                .for_key(KeyId::new(&value).map_err(|_| invalid("api_key_id is not a key id"))?),
            _ => audit.with_limit(parse_limit(&value, AuditQuery::MAX_LIMIT)?),
        };
    }
    // Request entries are written behind: this caller's own are in before it reads.
    if let Some(auditor) = &shared.auditor {
        auditor.flush().await;
    }
    let items = shared
        .manager
        .audit_log(audit, Actor::Key(principal))
        .await?;
    json(StatusCode::OK, &AuditLog { items })
}

/// A page of a key's hourly usage.
#[derive(Serialize)]
struct UsageList {
    items: Vec<UsageBucket>,
    /// Where the next page starts (the `from` to ask with), when the range asked for
    /// is longer than a page; `null` otherwise.
    #[serde(with = "time::serde::rfc3339::option")]
    next_from: Option<OffsetDateTime>,
}

/// An RFC 3339 instant of the query.
fn instant(name: &str, value: &str) -> Result<OffsetDateTime, Refusal> {
    OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map_err(|_| invalid(format!("{name} must be an RFC 3339 date-time")))
}

async fn usage<K: ManagedKeyStore>(
    shared: &Shared<K>,
    principal: &Principal,
    id: KeyId,
    query: &str,
) -> Result<Response, Refusal> {
    let (mut from, mut to) = (None, None);
    for (name, value) in query_pairs(query, &["from", "to"])? {
        match name {
            "from" => from = Some(instant(name, &value)?),
            _ => to = Some(instant(name, &value)?),
        }
    }
    let to = to.unwrap_or_else(|| now(shared));
    let from = from.unwrap_or_else(|| to.saturating_sub(time::Duration::DAY));
    // A reversed range holds no hour; a long one is paged, 31 days at a time.
    let page_end = from.saturating_add(KeyManager::<K>::MAX_USAGE_RANGE);
    let (end, next_from) = if to > page_end {
        (page_end, Some(page_end))
    } else {
        (to.max(from), None)
    };
    let items = shared
        .manager
        .usage(principal.owner(), &id, from, end, Actor::Key(principal))
        .await?;
    json(StatusCode::OK, &UsageList { items, next_from })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        for yes in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            assert!(is_json(&HeaderValue::from_static(yes)), "{yes}");
        }
        for no in [
            "text/json",
            "application/jsonx",
            "application/+jso",
            "json",
            "",
        ] {
            assert!(!is_json(&HeaderValue::from_static(no)), "{no}");
        }
    }

    #[test]
    fn query_strings_decode_and_repeat_nothing() {
        let pairs = query_pairs(
            "name_prefix=ci%2D+x&other=1&limit=3",
            &["name_prefix", "limit"],
        )
        .ok()
        .unwrap();
        assert_eq!(
            pairs,
            [
                ("name_prefix", "ci- x".to_owned()),
                ("limit", "3".to_owned())
            ]
        );
        for bad in ["limit=1&limit=2", "limit=%zz", "limit=%C3", "limit=%"] {
            assert!(query_pairs(bad, &["limit"]).is_err(), "{bad}");
        }
        assert!(parse_limit("0", 100).is_err());
        assert!(parse_limit("101", 100).is_err());
        assert!(parse_limit("-1", 100).is_err());
        assert_eq!(parse_limit("100", 100).ok(), Some(100));
    }

    #[test]
    fn grace_is_a_whole_number() {
        let grace = |text: &str| {
            serde_json::from_str::<RotateBody>(text)
                .map(|b| b.grace_seconds)
                .ok()
        };
        assert_eq!(grace(r#"{"grace_seconds": 12}"#), Some(12));
        assert_eq!(grace(r#"{"grace_seconds": 12.0}"#), Some(12));
        assert_eq!(grace("{}"), Some(0));
        for bad in [
            r#"{"grace_seconds": 1.5}"#,
            r#"{"grace_seconds": -1}"#,
            r#"{"x": 1}"#,
        ] {
            assert_eq!(grace(bad), None, "{bad}");
        }
    }
}
