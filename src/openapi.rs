//! OpenAPI documents that describe this crate's security from the values that enforce
//! it (the `utoipa` feature, for [utoipa] 5 and [utoipa-axum]).
//!
//! - [`ApiKeyDoc`] describes one [`AuthenticateLayer`]: its security schemes (HTTP bearer, an
//!   `apiKey` header or query scheme, or the JSON-body field), and its refusals, rendered
//!   by the layer's own responder, so each documented body, schema and header is the one
//!   the layer answers with.
//! - [`ApiKeyDoc::document`] adds to one operation the security requirements of a route's
//!   [`Requirement`] (its alternatives become OpenAPI's alternatives), an
//!   `x-required-scopes` extension with the same alternatives, the JSON-body key field
//!   when keys are read from the body, and the 400/401/403/429/503 (and 408/413 for body
//!   keys) responses, each a `$ref` to the surface's shared response
//!   ([`ApiKeyDoc::components`], added by its [`utoipa::Modify`]): one error schema and
//!   one response per status per surface, so a generated client has one error type per
//!   surface.
//! - A [`Guard`] documents itself ([`Guard::document`]), and [`Guard::routes`] guards a
//!   handler and documents its utoipa-axum route in one call: the requirement that is
//!   enforced is the one that is published.
//!
//! ```
//! use tower_api_key::prelude::*;
//! use utoipa::openapi::path::{HttpMethod, Operation};
//! use utoipa::openapi::{OpenApi, PathItem, Paths};
//! use utoipa::Modify;
//!
//! # fn main() -> Result<(), tower_api_key::ConfigError> {
//! let scopes = ScopeModel::builder()
//!     .resource("invoices", ["read", "write"])
//!     .build()?;
//! let auth = ApiKeyAuth::builder(MemoryStore::new())
//!     .format(KeyFormat::new("inv")?)
//!     .scopes(scopes)
//!     .build()?;
//! let guard = auth.guard("invoices:read")?;
//!
//! // The operation of `GET /invoices`, documented by the guard that protects it.
//! let mut operation = Operation::new();
//! guard.document(&mut operation);
//! let mut openapi = OpenApi::new(
//!     utoipa::openapi::Info::new("Invoices", "1.0.0"),
//!     Paths::new(),
//! );
//! openapi.paths.paths.insert("/invoices".into(), PathItem::new(HttpMethod::Get, operation));
//! // The security schemes, once per document.
//! auth.openapi().modify(&mut openapi);
//!
//! let json = serde_json::to_value(&openapi).unwrap();
//! let get = &json["paths"]["/invoices"]["get"];
//! assert_eq!(
//!     get["security"],
//!     serde_json::json!([{ "bearer": ["invoices:read"] }, { "api_key": ["invoices:read"] }])
//! );
//! // Each refusal is a reference to the surface's shared response (its realm, `api`,
//! // names it); the reference says which outcomes apply here and the route's scopes.
//! assert_eq!(get["responses"]["403"]["$ref"], "#/components/responses/ApiForbidden");
//! assert!(get["responses"]["403"]["description"]
//!     .as_str().unwrap().ends_with("Required scopes: `invoices:read`."));
//! assert_eq!(json["components"]["securitySchemes"]["api_key"]["name"], "x-api-key");
//! // One error schema for the surface, referenced by every shared response.
//! assert_eq!(
//!     json["components"]["responses"]["ApiForbidden"]["content"]["application/json"]["schema"]
//!         ["$ref"],
//!     "#/components/schemas/ApiError"
//! );
//! # Ok(())
//! # }
//! ```
//!
//! [utoipa]: https://docs.rs/utoipa/5
//! [utoipa-axum]: https://docs.rs/utoipa-axum

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::handler::{Handler, HandlerService};
use axum::response::IntoResponse;
use axum::routing::{MethodFilter, MethodRouter};
use http::header;
use http::{HeaderValue, StatusCode};
use tower_layer::{Identity, Layer};
use tower_service::Service;
use utoipa::openapi::example::Example;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::schema::{
    AllOfBuilder, AnyOfBuilder, ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    Components, Content, Header, OpenApi, Paths, Ref, RefOr, Required, Response,
};
use utoipa_axum::router::UtoipaMethodRouter;

use crate::auth::{ApiKeyAuth, Guard};
use crate::authenticate::AuthenticateLayer;
use crate::error::ConfigError;
use crate::rate_limit::{RateLimitLayer, RATELIMIT, RATELIMIT_POLICY};
use crate::rejection::{Rejection, RejectionKind, Renderer, X_REQUEST_ID};
use crate::scope::Requirement;

/// The name of the HTTP bearer security scheme.
pub const BEARER_SCHEME: &str = "bearer";

/// The name of the `apiKey` security scheme for a header (`X-API-Key` by default).
pub const HEADER_SCHEME: &str = "api_key";

/// The name of the `apiKey` security scheme for a query parameter.
pub const QUERY_SCHEME: &str = "api_key_query";

/// The operation extension that lists a route's scope alternatives, as
/// `[["a", "b"], ["c"]]` for `a AND b OR c`: also on operations whose key is read
/// from the JSON body, which OpenAPI has no security scheme for.
pub const SCOPES_EXTENSION: &str = "x-required-scopes";

/// The request id shown in documented refusals.
const SAMPLE_REQUEST_ID: &str = "req_8f14e45fceea167a";

/// The scope a shared scope refusal names: each operation names its own
/// (`x-required-scopes`, and the description of its reference).
const SAMPLE_SCOPE: &str = "<scope>";

/// The refusals an application answers in its surface's style, documented in every
/// surface's shared responses: the key-management router's (through
/// [`ApiKeyAuth::respond`]), and an application's own in the same envelope.
fn application_outcomes() -> Vec<RejectionKind> {
    let refusal = |status, code, message: &str| RejectionKind::KeyManagement {
        status,
        code,
        message: message.to_owned(),
    };
    vec![
        refusal(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Invalid JSON body: missing field `scopes` at line 1 column 2",
        ),
        refusal(
            StatusCode::FORBIDDEN,
            "permission_denied",
            "The acting key was replaced by a rotation: it works until its grace period \
             ends, but only its successor manages keys",
        ),
        refusal(StatusCode::NOT_FOUND, "not_found", "No such key"),
        refusal(
            StatusCode::CONFLICT,
            "conflict",
            "The key is revoked, expired or already rotated",
        ),
        refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Request body is larger than 16384 bytes",
        ),
        refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Expected Content-Type: application/json",
        ),
    ]
}

/// A realm as a component name prefix: its ASCII letters and digits in
/// UpperCamelCase, `ApiKey` when it has none.
fn component_prefix(realm: &str) -> String {
    let mut prefix = String::new();
    for word in realm.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            prefix.push(first.to_ascii_uppercase());
            prefix.extend(chars);
        }
    }
    if prefix.is_empty() {
        prefix.push_str("ApiKey");
    }
    prefix
}

/// The OpenAPI description of one [`AuthenticateLayer`]: where it reads keys from and how it
/// refuses. Built from the layer itself ([`ApiKeyDoc::new`], [`ApiKeyAuth::openapi`]),
/// so it cannot describe another configuration than the one that runs.
///
/// As a [`utoipa::Modify`] it adds the security schemes to a document's components;
/// [`document`](Self::document) describes one operation. Cheap to clone.
///
/// Schemes are named by source ([`BEARER_SCHEME`], [`HEADER_SCHEME`],
/// [`QUERY_SCHEME`]), so layers reading the same sources share them in one document.
/// Quota refusals are documented at the rate limiter's default status (403).
///
/// ```
/// use tower_api_key::credentials::KeySources;
/// use tower_api_key::key::KeyFormat;
/// use tower_api_key::openapi::ApiKeyDoc;
/// use tower_api_key::store::{CachedStore, MemoryStore};
/// use tower_api_key::parts::{AuthenticateLayer, KeyVerifier};
/// use utoipa::openapi::path::Operation;
///
/// # fn main() -> Result<(), tower_api_key::ConfigError> {
/// let store = CachedStore::builder(MemoryStore::new()).build()?;
/// let layer = AuthenticateLayer::new(KeyVerifier::new(store, KeyFormat::new("pf")?))
///     .with_sources(KeySources::json_body());
/// let doc = ApiKeyDoc::new(&layer);
///
/// let model = tower_api_key::presets::workspace::scope_model();
/// let mut operation = Operation::new();
/// doc.document(&mut operation, &model.requirement("read:all")?);
/// let json = serde_json::to_value(&operation).unwrap();
/// // No OpenAPI scheme reads a body: the field is in the request schema, the scopes
/// // in the extension.
/// assert_eq!(
///     json["requestBody"]["content"]["application/json"]["schema"]["required"],
///     serde_json::json!(["api_key"])
/// );
/// assert_eq!(json["x-required-scopes"], serde_json::json!([["read:all"]]));
/// assert!(json["responses"]["413"].is_object());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ApiKeyDoc {
    renderer: Arc<Renderer>,
    prefix: String,
    bearer: bool,
    header: Option<String>,
    query: Option<String>,
    body_field: Option<String>,
    rate_limited: bool,
}

impl fmt::Debug for ApiKeyDoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyDoc")
            .field("bearer", &self.bearer)
            .field("header", &self.header)
            .field("query", &self.query)
            .field("body_field", &self.body_field)
            .field("rate_limited", &self.rate_limited)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl ApiKeyDoc {
    /// The description of `layer`: its key sources and its responder.
    pub fn new<K>(layer: &AuthenticateLayer<K>) -> Self {
        let sources = layer.sources();
        Self {
            prefix: component_prefix(layer.renderer().realm()),
            renderer: Arc::clone(layer.renderer()),
            bearer: sources.bearer,
            header: sources.header.as_ref().map(|h| h.as_str().to_owned()),
            query: sources.query.clone(),
            body_field: sources.body.as_ref().map(|b| b.field.clone()),
            rate_limited: false,
        }
    }

    /// Whether the operations are also rate limited (a [`RateLimitLayer`] behind the
    /// scope guard): their 429 then carries `RateLimit` and `RateLimit-Policy`, and a
    /// spent quota is documented as well (at the default quota status, 403).
    #[must_use]
    pub fn with_rate_limit(mut self, rate_limited: bool) -> Self {
        self.rate_limited = rate_limited;
        self
    }

    /// The security schemes, by name: [`BEARER_SCHEME`], [`HEADER_SCHEME`] and
    /// [`QUERY_SCHEME`] for the sources the layer reads. Empty for a JSON-body source.
    pub fn security_schemes(&self) -> Vec<(&'static str, SecurityScheme)> {
        let mut schemes = Vec::new();
        if self.bearer {
            schemes.push((
                BEARER_SCHEME,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("API key")
                        .description(Some(
                            "The API key as a Bearer token: `Authorization: Bearer <key>` \
                             (RFC 6750). Send the key by one method only.",
                        ))
                        .build(),
                ),
            ));
        }
        if let Some(name) = &self.header {
            schemes.push((
                HEADER_SCHEME,
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    name.clone(),
                    format!("The API key in the `{name}` header. Send the key by one method only."),
                ))),
            ));
        }
        if let Some(name) = &self.query {
            schemes.push((
                QUERY_SCHEME,
                SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                    name.clone(),
                    format!("The API key in the `{name}` query parameter."),
                ))),
            ));
        }
        schemes
    }

    /// Documents `operation` as guarded by this layer and `requirement`: the security
    /// requirements (one alternative per scheme and per alternative of the requirement),
    /// the [`SCOPES_EXTENSION`], a line in the description, the JSON-body key field, and
    /// the refusal responses.
    ///
    /// Each refusal response is a `$ref` to this surface's shared response for its
    /// status (`#/components/responses/PerformanceBlocksForbidden`, see
    /// [`components`](Self::components)), so a generated client has one error type per
    /// surface; the reference's own `description` says which outcomes this operation
    /// can answer there, and names the route's scopes on the status that refuses a
    /// missing scope. A status the operation documents inline at a status the surface
    /// has a shared response for (an application's own 400, 404, 409, 413 or 415)
    /// becomes the same reference, keeping its description: an application's refusals
    /// answer in its surface's style. A `$ref` the operation wrote itself is kept.
    pub fn document(&self, operation: &mut Operation, requirement: &Requirement) {
        let alternatives: Vec<Vec<&str>> = requirement.alternatives().collect();
        let schemes = self.security_schemes();
        if !schemes.is_empty() {
            let security = operation.security.get_or_insert_with(Vec::new);
            for alternative in &alternatives {
                for (name, _) in &schemes {
                    security.push(SecurityRequirement::new(*name, alternative.iter().copied()));
                }
            }
        }
        let extension = serde_json::json!(alternatives);
        let extensions = operation.extensions.get_or_insert_with(Default::default);
        extensions.merge(
            ExtensionsBuilder::new()
                .add(SCOPES_EXTENSION, extension)
                .build(),
        );
        let line = format!("Required scopes: `{requirement}`.");
        operation.description = Some(match operation.description.take() {
            Some(text) if !text.is_empty() => format!("{text}\n\n{line}"),
            _ => line.clone(),
        });
        if let Some(field) = &self.body_field {
            add_body_field(operation, field);
        }
        for (status, samples) in self.render(self.guard_outcomes(vec![SAMPLE_SCOPE.to_owned()])) {
            let mut codes: Vec<&str> = samples.iter().map(|s| s.code).collect();
            codes.dedup();
            let mut description = format!("Refused by the API-key guard ({}).", codes.join(", "));
            if codes.contains(&"insufficient_scope") {
                description = format!("{description} {line}");
            }
            self.refer(operation, status, description);
        }
        // The operation's own refusals at a status the surface documents.
        let shared: Vec<StatusCode> = self.shared().into_iter().map(|(s, _)| s).collect();
        for status in shared {
            let key = status.as_str();
            if let Some(RefOr::T(own)) = operation.responses.responses.get(key) {
                let description = own.description.clone();
                operation.responses.responses.remove(key);
                self.refer(operation, status, description);
            }
        }
    }

    /// Documents the application's own refusals at `statuses` on `operation` (for the
    /// key-management router's: bad input, 404, 409, …): each a reference to the
    /// surface's shared response, described by `describe`.
    pub(crate) fn document_outcomes(
        &self,
        operation: &mut Operation,
        statuses: &[StatusCode],
        describe: impl Fn(StatusCode) -> String,
    ) {
        for status in statuses {
            self.refer(operation, *status, describe(*status));
        }
    }

    /// Documents every operation of `paths` (as [`document`](Self::document)).
    pub fn document_paths(&self, paths: &mut Paths, requirement: &Requirement) {
        for item in paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ]
            .into_iter()
            .flatten()
            {
                self.document(operation, requirement);
            }
        }
    }

    /// The prefix of this surface's component names: its realm in UpperCamelCase
    /// (`PerformanceBlocks` for the realm `Performance Blocks`, `Api` for the default
    /// `api`). Give each surface its own realm, so each has its own components.
    pub fn component_prefix(&self) -> &str {
        &self.prefix
    }

    /// The name of this surface's error schema: `{prefix}Error`, the schema of every
    /// JSON refusal body it answers with.
    pub fn error_schema_name(&self) -> String {
        format!("{}Error", self.prefix)
    }

    /// The name of this surface's shared response for `status`:
    /// `{prefix}{reason}`, as `PerformanceBlocksTooManyRequests`.
    pub fn response_name(&self, status: StatusCode) -> String {
        let reason: String = status
            .canonical_reason()
            .map(|r| r.split(|c: char| !c.is_ascii_alphanumeric()).collect())
            .unwrap_or_else(|| format!("Status{}", status.as_u16()));
        format!("{}{reason}", self.prefix)
    }

    /// What the operations of this surface reference: its error schema
    /// ([`error_schema_name`](Self::error_schema_name)) and one response per refusal
    /// status ([`response_name`](Self::response_name)), each with the headers the
    /// layer sends and one example per distinct body, for every outcome the guards and
    /// the application answer with at that status (`insufficient_scope` with a
    /// placeholder scope: the operation names its own). The [`utoipa::Modify`] impl
    /// adds them to a document.
    pub fn components(&self) -> Components {
        let mut components = Components::new();
        let shared = self.shared();
        let bodies: Vec<&serde_json::Value> = shared
            .iter()
            .flat_map(|(_, samples)| samples.iter().filter_map(|s| s.body.as_ref()))
            .collect();
        if !bodies.is_empty() {
            components
                .schemas
                .insert(self.error_schema_name(), infer(&bodies));
        }
        for (status, samples) in &shared {
            components.responses.insert(
                self.response_name(*status),
                RefOr::T(self.response(*status, samples)),
            );
        }
        components
    }

    /// A reference to the shared response for `status` under `status`, with
    /// `description`; appended to the description of a reference already there.
    fn refer(&self, operation: &mut Operation, status: StatusCode, description: String) {
        let location = format!("#/components/responses/{}", self.response_name(status));
        let key = status.as_str().to_owned();
        match operation.responses.responses.get_mut(&key) {
            // Ours (the guard's and the application's refusals at one status): one
            // description for both.
            Some(RefOr::Ref(existing)) if existing.ref_location == location => {
                existing.description = if existing.description.is_empty() {
                    description
                } else {
                    format!("{}\n\n{description}", existing.description)
                };
            }
            // A reference the operation wrote itself is kept as it is.
            Some(RefOr::Ref(_)) => {}
            Some(RefOr::T(own)) => {
                let mut reference = Ref::new(location);
                reference.description = format!("{}\n\n{description}", own.description);
                operation
                    .responses
                    .responses
                    .insert(key, RefOr::Ref(reference));
            }
            None => {
                let mut reference = Ref::new(location);
                reference.description = description;
                operation
                    .responses
                    .responses
                    .insert(key, RefOr::Ref(reference));
            }
        }
    }

    /// Every outcome this surface's shared responses document, rendered and grouped
    /// by status: its guards' and the application's.
    fn shared(&self) -> Vec<(StatusCode, Vec<Sample>)> {
        let mut outcomes = self.guard_outcomes(vec![SAMPLE_SCOPE.to_owned()]);
        outcomes.extend(application_outcomes());
        self.render(outcomes)
    }

    /// The outcomes this layer (and its guards) can refuse with.
    fn guard_outcomes(&self, required: Vec<String>) -> Vec<RejectionKind> {
        let retry = Duration::from_secs(12);
        let mut outcomes = vec![
            RejectionKind::Missing,
            RejectionKind::Malformed,
            RejectionKind::Unknown,
            RejectionKind::Revoked,
            RejectionKind::Expired,
            RejectionKind::WrongEnvironment,
            RejectionKind::InsufficientScope { required },
            RejectionKind::InvalidRequest {
                reason: if self.body_field.is_some() {
                    "the request body is not valid JSON"
                } else {
                    "the API key was sent by more than one method"
                },
            },
            RejectionKind::TooManyUnknownKeys { retry_after: retry },
            RejectionKind::StoreUnavailable,
        ];
        if self.body_field.is_some() {
            outcomes.push(RejectionKind::PayloadTooLarge);
            outcomes.push(RejectionKind::RequestTimeout);
        }
        if self.rate_limited {
            outcomes.push(RejectionKind::RateLimited { retry_after: retry });
            outcomes.push(RejectionKind::QuotaExceeded);
        }
        outcomes
    }

    /// `outcomes` rendered by the responder, with and without a request id, grouped by
    /// status.
    fn render(&self, outcomes: Vec<RejectionKind>) -> Vec<(StatusCode, Vec<Sample>)> {
        let mut grouped: Vec<(StatusCode, Vec<Sample>)> = Vec::new();
        for outcome in outcomes {
            // With and without a request id: a member present only with one is optional.
            for request_id in [None, Some(SAMPLE_REQUEST_ID)] {
                let rejection = Rejection::new(outcome.clone())
                    .with_request_id(request_id.map(HeaderValue::from_static));
                let sample = Sample::render(&self.renderer, &rejection);
                match grouped.iter_mut().find(|(s, _)| *s == sample.status) {
                    Some((_, samples)) => samples.push(sample),
                    None => grouped.push((sample.status, vec![sample])),
                }
            }
        }
        grouped.sort_by_key(|(status, _)| *status);
        grouped
    }

    fn response(&self, status: StatusCode, samples: &[Sample]) -> Response {
        let mut codes: Vec<&str> = Vec::new();
        for sample in samples {
            if !codes.contains(&sample.code) {
                codes.push(sample.code);
            }
        }
        let mut response = Response::new(format!("Refused ({}).", codes.join(", ")));
        for sample in samples {
            for (name, value) in &sample.headers {
                if response.headers.contains_key(name.as_str()) {
                    continue;
                }
                response
                    .headers
                    .insert(name.clone(), describe_header(name, value));
            }
        }
        if status == StatusCode::TOO_MANY_REQUESTS && self.rate_limited {
            for (name, text) in [
                (
                    RATELIMIT.as_str(),
                    "The key's remaining quota and reset, e.g. `\"default\";r=0;t=12` \
                     (draft-ietf-httpapi-ratelimit-headers); absent when the client's \
                     unknown-key budget refused the request.",
                ),
                (
                    RATELIMIT_POLICY.as_str(),
                    "The policy, e.g. `\"default\";q=100;w=1`; absent when the client's \
                     unknown-key budget refused the request.",
                ),
            ] {
                let mut header = Header::new(string_schema());
                header.description = Some(text.to_owned());
                response.headers.insert(name.to_owned(), header);
            }
        }
        let mut types: Vec<&str> = samples.iter().map(|s| s.content_type.as_str()).collect();
        types.sort_unstable();
        types.dedup();
        for content_type in types {
            let of_type: Vec<&Sample> = samples
                .iter()
                .filter(|s| s.content_type == content_type)
                .collect();
            let bodies: Vec<&serde_json::Value> =
                of_type.iter().filter_map(|s| s.body.as_ref()).collect();
            let schema = if bodies.is_empty() {
                string_schema().into()
            } else {
                RefOr::Ref(Ref::from_schema_name(self.error_schema_name()))
            };
            let mut content = Content::new(Some(schema));
            // One example per distinct body, named after its first outcome; its summary
            // lists every outcome answered with that body.
            let mut distinct: Vec<(String, &serde_json::Value, Vec<&str>)> = Vec::new();
            for sample in of_type {
                let Some(body) = &sample.body else { continue };
                if let Some((_, _, codes)) = distinct.iter_mut().find(|(_, b, _)| *b == body) {
                    if !codes.contains(&sample.code) {
                        codes.push(sample.code);
                    }
                    continue;
                }
                let name = if distinct.iter().any(|(name, _, _)| name == sample.code) {
                    format!("{}_with_request_id", sample.code)
                } else {
                    sample.code.to_owned()
                };
                distinct.push((name, body, vec![sample.code]));
            }
            for (name, body, codes) in distinct {
                let mut example = Example::new();
                example.summary = format!("Outcomes: {}", codes.join(", "));
                example.value = Some(body.clone());
                content.examples.insert(name, RefOr::T(example));
            }
            response.content.insert(content_type.to_owned(), content);
        }
        response
    }
}

impl utoipa::Modify for ApiKeyDoc {
    /// Adds the security schemes to the document's components.
    /// Adds the security schemes and the shared refusal responses and error schema
    /// ([`components`](ApiKeyDoc::components)) to the document's components.
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Components::new);
        for (name, scheme) in self.security_schemes() {
            components.add_security_scheme(name, scheme);
        }
        let shared = self.components();
        components.schemas.extend(shared.schemas);
        components.responses.extend(shared.responses);
    }
}

/// Whether a guard's last layer is a rate limit, for its OpenAPI fragment. Sealed:
/// implemented by [`Identity`] (none), [`RateLimitLayer`] and `Either` of the two, the
/// last layers an [`ApiKeyAuth`]'s guards can have.
pub trait DocumentRate: sealed::Sealed {
    /// `true` when requests can be refused with 429 `rate_limited`.
    fn is_rate_limited(&self) -> bool;
}

mod sealed {
    pub trait Sealed {}

    impl Sealed for tower_layer::Identity {}
    impl<L> Sealed for crate::rate_limit::RateLimitLayer<L> {}
    impl<A, B> Sealed for tower::util::Either<A, B> {}
}

impl DocumentRate for Identity {
    fn is_rate_limited(&self) -> bool {
        false
    }
}

impl<L> DocumentRate for RateLimitLayer<L> {
    fn is_rate_limited(&self) -> bool {
        true
    }
}

/// Rate limits decided when the server starts (`Option<Limits<_>>` given to
/// [`rate_limits`](crate::auth::ApiKeyAuthBuilder::rate_limits)).
impl<A: DocumentRate, B: DocumentRate> DocumentRate for tower::util::Either<A, B> {
    fn is_rate_limited(&self) -> bool {
        match self {
            Self::Left(a) => a.is_rate_limited(),
            Self::Right(b) => b.is_rate_limited(),
        }
    }
}

impl<K, R> ApiKeyAuth<K, R> {
    /// The OpenAPI description of this surface's guards (its authentication layer and
    /// rate limit): apply it to the document ([`utoipa::Modify`]) for the security
    /// schemes and the shared refusal responses its operations reference, once per
    /// surface (`auth.surface(name)?.openapi()` for a named one).
    pub fn openapi(&self) -> ApiKeyDoc
    where
        K: crate::KeyStore,
        R: Clone + DocumentRate,
    {
        ApiKeyDoc::new(&self.layer()).with_rate_limit(self.rate().is_rate_limited())
    }
}

impl<K, R: DocumentRate> Guard<K, R> {
    /// The description of this guard's authentication layer and rate limit.
    pub fn openapi(&self) -> ApiKeyDoc {
        let (auth, rate) = self.parts();
        ApiKeyDoc::new(auth).with_rate_limit(rate.is_rate_limited())
    }

    /// Documents `operation` as guarded by this guard: its requirement, its key sources
    /// and its refusals ([`ApiKeyDoc::document`]).
    pub fn document(&self, operation: &mut Operation) {
        self.openapi().document(operation, self.requirement());
    }

    /// Guards `handler` and documents its operation with the same requirement, in one
    /// call: `router.routes(auth.guard("invoices:read")?.routes(routes!(list), list)?)`.
    ///
    /// `documented` is utoipa-axum's `routes!` of that one handler: its path, method
    /// and operation. The method router `routes!` built around the bare handler is
    /// dropped; the handler is routed again on the documented method(s) with this guard
    /// as its own layer (`handler.layer(guard)`), as a guard always is, so it covers
    /// exactly that handler's methods. Pass the same handler to `routes!` and here.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `documented` holds no operation, or the operations of more
    /// than one handler (`routes!(list, create)`): give each handler its own guard.
    ///
    /// ```
    /// use tower_api_key::prelude::*;
    /// use utoipa_axum::router::OpenApiRouter;
    /// use utoipa_axum::routes;
    ///
    /// /// The invoices.
    /// #[utoipa::path(get, path = "/invoices", responses((status = 200, body = String)))]
    /// async fn list() -> &'static str { "the invoices" }
    ///
    /// /// Creates an invoice.
    /// #[utoipa::path(post, path = "/invoices", responses((status = 201, body = String)))]
    /// async fn create() -> &'static str { "created" }
    ///
    /// # fn main() -> Result<(), tower_api_key::ConfigError> {
    /// let auth = ApiKeyAuth::builder(MemoryStore::new())
    ///     .format(KeyFormat::new("inv")?)
    ///     .scopes(ScopeModel::builder().resource("invoices", ["read", "write"]).build()?)
    ///     .build()?;
    /// let (router, mut openapi) = OpenApiRouter::new()
    ///     .routes(auth.guard("invoices:read")?.routes(routes!(list), list)?)
    ///     .routes(auth.guard("invoices:write")?.routes(routes!(create), create)?)
    ///     .split_for_parts();
    /// utoipa::Modify::modify(&auth.openapi(), &mut openapi);
    /// let json = serde_json::to_value(&openapi).unwrap();
    /// assert_eq!(json["paths"]["/invoices"]["get"]["x-required-scopes"][0][0], "invoices:read");
    /// assert_eq!(json["paths"]["/invoices"]["post"]["x-required-scopes"][0][0], "invoices:write");
    ///
    /// // Two handlers under one guard would be one guard over two methods: refused.
    /// let both = auth.guard("invoices:read")?.routes::<_, _, ()>(routes!(list, create), list);
    /// assert!(both.is_err());
    /// # let _: axum::Router = router;
    /// # Ok(())
    /// # }
    /// ```
    pub fn routes<H, T, S>(
        &self,
        documented: UtoipaMethodRouter<S>,
        handler: H,
    ) -> Result<UtoipaMethodRouter<S>, ConfigError>
    where
        H: Handler<T, S>,
        T: 'static,
        S: Clone + Send + Sync + 'static,
        Self: Layer<HandlerService<H, T, S>> + Clone + Send + Sync + 'static,
        <Self as Layer<HandlerService<H, T, S>>>::Service:
            Service<axum::extract::Request, Error = Infallible> + Clone + Send + Sync + 'static,
        <<Self as Layer<HandlerService<H, T, S>>>::Service as Service<axum::extract::Request>>::Response:
            IntoResponse + 'static,
        <<Self as Layer<HandlerService<H, T, S>>>::Service as Service<axum::extract::Request>>::Future:
            Send + 'static,
    {
        // `routes!` also routed the bare handler: that method router is dropped.
        let (schemas, mut paths, _unguarded) = documented;
        let methods = one_handlers_methods(&paths)?;
        self.openapi()
            .document_paths(&mut paths, self.requirement());
        let router = MethodRouter::new().on(methods, handler.layer(self.clone()));
        Ok((schemas, paths, router))
    }
}

/// The methods of the one handler `paths` documents (`routes!(handler)`), or why there
/// is not exactly one: one path, and the same operation under each of its methods (a
/// handler documented for `get, head` has two).
fn one_handlers_methods(paths: &Paths) -> Result<MethodFilter, ConfigError> {
    let mut found: Option<(MethodFilter, &Operation)> = None;
    for item in paths.paths.values() {
        for (filter, operation) in [
            (MethodFilter::GET, &item.get),
            (MethodFilter::PUT, &item.put),
            (MethodFilter::POST, &item.post),
            (MethodFilter::DELETE, &item.delete),
            (MethodFilter::OPTIONS, &item.options),
            (MethodFilter::HEAD, &item.head),
            (MethodFilter::PATCH, &item.patch),
            (MethodFilter::TRACE, &item.trace),
        ] {
            let Some(operation) = operation else {
                continue;
            };
            found = match found {
                None => Some((filter, operation)),
                Some((methods, first)) if first == operation && paths.paths.len() == 1 => {
                    Some((methods.or(filter), first))
                }
                Some(_) => {
                    return Err(ConfigError::new(
                        "Guard::routes takes `routes!` of one handler: a guard goes on one \
                         handler, so give each handler its own guard and its own `routes!`",
                    ))
                }
            };
        }
    }
    found.map(|(methods, _)| methods).ok_or_else(|| {
        ConfigError::new("Guard::routes was given no operation: pass `routes!(handler)`")
    })
}

/// One rendered refusal.
struct Sample {
    status: StatusCode,
    code: &'static str,
    content_type: String,
    headers: Vec<(String, String)>,
    body: Option<serde_json::Value>,
}

impl Sample {
    fn render(renderer: &Renderer, rejection: &Rejection) -> Self {
        let response = renderer.sample(rejection);
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let headers = response
            .headers()
            .iter()
            .filter(|(name, _)| *name != header::CONTENT_TYPE && *name != header::CONTENT_LENGTH)
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        let body = serde_json::from_slice(response.body()).ok();
        Self {
            status: response.status(),
            code: rejection.kind().code(),
            content_type,
            headers,
            body,
        }
    }
}

fn string_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .build()
        .into()
}

fn describe_header(name: &str, value: &str) -> Header {
    let (schema, text): (Schema, String) = if name == header::WWW_AUTHENTICATE {
        (
            string_schema(),
            format!("The RFC 6750 challenge, e.g. `{value}`."),
        )
    } else if name == header::RETRY_AFTER {
        (
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .build()
                .into(),
            "Seconds to wait before retrying (whole seconds, at least 1).".to_owned(),
        )
    } else if name == X_REQUEST_ID {
        (
            string_schema(),
            "The request's `X-Request-Id`, when it had a valid one (tower-http's \
             `SetRequestIdLayer` in front of the layer sets one)."
                .to_owned(),
        )
    } else if name == header::CACHE_CONTROL {
        (
            string_schema(),
            format!("`{value}`: refusals are never cached."),
        )
    } else {
        (string_schema(), format!("e.g. `{value}`"))
    };
    let mut header = Header::new(schema);
    header.description = Some(text);
    header
}

/// A schema that every one of `values` satisfies: types, object members (required
/// when present in all) and array items. Values are never turned into enums, so a
/// message that varies (a scope name, a number of seconds) stays valid.
fn infer(values: &[&serde_json::Value]) -> RefOr<Schema> {
    use serde_json::Value;
    let objects: Vec<&serde_json::Map<String, Value>> =
        values.iter().filter_map(|v| v.as_object()).collect();
    let arrays: Vec<&Vec<Value>> = values.iter().filter_map(|v| v.as_array()).collect();
    let mut scalar_types: Vec<Type> = Vec::new();
    for value in values {
        let kind = match value {
            Value::Null => Type::Null,
            Value::Bool(_) => Type::Boolean,
            Value::Number(n) if n.is_i64() || n.is_u64() => Type::Integer,
            Value::Number(_) => Type::Number,
            Value::String(_) => Type::String,
            Value::Array(_) | Value::Object(_) => continue,
        };
        if !scalar_types.contains(&kind) {
            scalar_types.push(kind);
        }
    }
    if scalar_types.contains(&Type::Number) {
        scalar_types.retain(|t| *t != Type::Integer);
    }
    let mut alternatives: Vec<RefOr<Schema>> = Vec::new();
    if !objects.is_empty() {
        let mut object = ObjectBuilder::new().schema_type(Type::Object);
        let mut names: Vec<&String> = Vec::new();
        for map in &objects {
            for name in map.keys() {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        for name in names {
            let present: Vec<&Value> = objects.iter().filter_map(|m| m.get(name)).collect();
            object = object.property(name.clone(), infer(&present));
            if present.len() == objects.len() {
                object = object.required(name.clone());
            }
        }
        alternatives.push(object.build().into());
    }
    if !arrays.is_empty() {
        let items: Vec<&Value> = arrays.iter().flat_map(|a| a.iter()).collect();
        let array = if items.is_empty() {
            ArrayBuilder::new()
        } else {
            ArrayBuilder::new().items(infer(&items))
        };
        alternatives.push(Schema::Array(array.build()).into());
    }
    match scalar_types.len() {
        0 => {}
        1 => alternatives.push(
            ObjectBuilder::new()
                .schema_type(scalar_types[0].clone())
                .build()
                .into(),
        ),
        _ => alternatives.push(
            ObjectBuilder::new()
                .schema_type(SchemaType::Array(scalar_types))
                .build()
                .into(),
        ),
    }
    match alternatives.len() {
        0 => ObjectBuilder::new()
            .schema_type(SchemaType::AnyValue)
            .build()
            .into(),
        1 => alternatives.remove(0),
        _ => {
            let mut any = AnyOfBuilder::new();
            for alternative in alternatives {
                any = any.item(alternative);
            }
            RefOr::T(Schema::AnyOf(any.build()))
        }
    }
}

/// Adds the key field to the operation's JSON request body: into an inline object
/// schema, or next to any other schema with `allOf`.
fn add_body_field(operation: &mut Operation, field: &str) {
    let property: RefOr<Schema> = ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "The API key. Read by the authentication layer before the handler runs.",
        ))
        .build()
        .into();
    let key_object = || {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(field, property.clone())
            .required(field)
    };
    let body = operation.request_body.get_or_insert_with(|| {
        let mut body = RequestBody::new();
        body.required = Some(Required::True);
        body
    });
    body.required = Some(Required::True);
    let content = body
        .content
        .entry("application/json".to_owned())
        .or_insert_with(|| Content::new(None::<RefOr<Schema>>));
    content.schema = Some(match content.schema.take() {
        None => key_object().build().into(),
        Some(RefOr::T(Schema::Object(mut object))) => {
            if !object.properties.contains_key(field) {
                object.properties.insert(field.to_owned(), property.clone());
            }
            if !object.required.iter().any(|r| r == field) {
                object.required.push(field.to_owned());
            }
            RefOr::T(Schema::Object(object))
        }
        Some(other) => RefOr::T(Schema::AllOf(
            AllOfBuilder::new().item(other).item(key_object()).build(),
        )),
    });
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use utoipa::openapi::path::Operation;
    use utoipa::openapi::{Content, RefOr, Response};

    use super::*;
    use crate::authenticate::KeyVerifier;
    use crate::credentials::KeySources;
    use crate::key::KeyFormat;
    use crate::rejection::ErrorStyle;
    use crate::store::{CachedStore, MemoryStore};

    fn layer(sources: KeySources, style: ErrorStyle) -> AuthenticateLayer<MemoryStore> {
        let store = CachedStore::builder(MemoryStore::new()).build().unwrap();
        AuthenticateLayer::new(KeyVerifier::new(store, KeyFormat::new("pb").unwrap()))
            .with_sources(sources)
            .with_responder(style)
    }

    /// The operation as written: its refusals are references.
    fn raw(doc: &ApiKeyDoc, expression: &str) -> Value {
        let model = crate::presets::performance_blocks::scope_model();
        let mut operation = Operation::new();
        doc.document(&mut operation, &model.requirement(expression).unwrap());
        serde_json::to_value(&operation).unwrap()
    }

    /// The operation as a reader of the whole document sees it: every `$ref` replaced
    /// by the surface's component it names, the reference's own description kept.
    fn documented(doc: &ApiKeyDoc, expression: &str) -> Value {
        let components = serde_json::to_value(doc.components()).unwrap();
        resolve(&components, raw(doc, expression))
    }

    fn resolve(components: &Value, value: Value) -> Value {
        match value {
            Value::Object(mut map) => {
                if let Some(Value::String(location)) = map.remove("$ref") {
                    let path = location.trim_start_matches("#/components");
                    let mut target = components
                        .pointer(path)
                        .unwrap_or_else(|| panic!("{location} is in the components"))
                        .clone();
                    if let Some(description) = map.remove("description") {
                        target["description"] = description;
                    }
                    return resolve(components, target);
                }
                Value::Object(
                    map.into_iter()
                        .map(|(k, v)| (k, resolve(components, v)))
                        .collect(),
                )
            }
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| resolve(components, v)).collect())
            }
            other => other,
        }
    }

    #[test]
    fn each_alternative_of_the_requirement_is_offered_on_each_scheme() {
        let doc = ApiKeyDoc::new(&layer(
            KeySources::bearer_or_header(),
            ErrorStyle::envelope(),
        ));
        let op = documented(&doc, "employees:read AND webhooks:write OR summaries:read");
        assert_eq!(
            op["security"],
            json!([
                { "bearer": ["employees:read", "webhooks:write"] },
                { "api_key": ["employees:read", "webhooks:write"] },
                { "bearer": ["summaries:read"] },
                { "api_key": ["summaries:read"] },
            ])
        );
        assert_eq!(
            op["x-required-scopes"],
            json!([["employees:read", "webhooks:write"], ["summaries:read"]])
        );
        // The shared 403 names a placeholder; the operation's reference names the
        // route's own requirement.
        assert_eq!(
            op["responses"]["403"]["content"]["application/json"]["examples"]["insufficient_scope"]
                ["value"]["error"]["message"],
            "Required scope: <scope>"
        );
        let reference =
            &raw(&doc, "employees:read AND webhooks:write OR summaries:read")["responses"]["403"];
        assert_eq!(
            reference["$ref"], "#/components/responses/ApiForbidden",
            "{reference}"
        );
        assert_eq!(
            reference["description"],
            "Refused by the API-key guard (wrong_environment, insufficient_scope). Required \
             scopes: `(employees:read AND webhooks:write) OR summaries:read`."
        );
        // Header keys: no body field, no body-only refusals on the operation.
        assert!(op.get("requestBody").is_none());
        assert!(op["responses"].get("413").is_none());
        assert!(op["responses"].get("408").is_none());
    }

    #[test]
    fn a_query_source_is_its_own_scheme_and_bearer_alone_has_one() {
        let sources = KeySources::bearer().with_query("key").unwrap();
        let doc = ApiKeyDoc::new(&layer(sources, ErrorStyle::envelope()));
        let names: Vec<&str> = doc.security_schemes().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, [BEARER_SCHEME, QUERY_SCHEME]);
        let op = documented(&doc, "session:read");
        assert_eq!(
            op["security"],
            json!([{ "bearer": ["session:read"] }, { "api_key_query": ["session:read"] }])
        );
    }

    #[test]
    fn product_bridge_refuses_a_missing_scope_with_its_generic_401() {
        let doc = ApiKeyDoc::new(&layer(
            KeySources::json_body(),
            crate::presets::product_bridge::error_style(),
        ));
        let op = documented(&doc, "observations:read");
        let unauthorized = &op["responses"]["401"]["content"]["application/json"]["examples"];
        // One body for every refusal that the style answers with 401.
        assert_eq!(unauthorized.as_object().unwrap().len(), 1);
        assert_eq!(
            unauthorized["missing"]["summary"],
            "Outcomes: missing, malformed, unknown, revoked, expired, wrong_environment, insufficient_scope"
        );
        assert_eq!(
            unauthorized["missing"]["value"],
            json!({ "error": { "code": "authentication_required", "message": "invalid api_key" } })
        );
        assert!(op["responses"].get("403").is_none(), "{}", op["responses"]);
        for status in ["400", "408", "413", "429", "503"] {
            assert!(op["responses"][status].is_object(), "documents {status}");
        }
        assert_eq!(
            op["requestBody"]["content"]["application/json"]["schema"]["required"],
            json!(["api_key"])
        );
    }

    #[test]
    fn problem_documents_are_documented_as_such_with_their_optional_members() {
        let doc = ApiKeyDoc::new(&layer(
            KeySources::bearer(),
            ErrorStyle::problem_json().with_request_id_in_body(true),
        ))
        .with_rate_limit(true);
        let op = documented(&doc, "session:read");
        let forbidden = &op["responses"]["403"]["content"];
        assert!(forbidden.get("application/json").is_none());
        let schema = &forbidden["application/problem+json"]["schema"];
        assert_eq!(
            schema["required"],
            json!(["code", "detail", "status", "title", "type"])
        );
        assert_eq!(schema["properties"]["status"]["type"], "integer");
        // Only a scope refusal names the scopes, only a request with an id has one.
        assert_eq!(schema["properties"]["required_scopes"]["type"], "array");
        assert_eq!(schema["properties"]["request_id"]["type"], "string");
        let too_many = &op["responses"]["429"]["headers"];
        for header in [
            "retry-after",
            "ratelimit",
            "ratelimit-policy",
            "cache-control",
        ] {
            assert!(too_many[header].is_object(), "429 documents {header}");
        }
        assert_eq!(too_many["retry-after"]["schema"]["minimum"], 1);
    }

    #[test]
    fn without_a_rate_limit_429_is_the_unknown_key_budget_alone() {
        let doc = ApiKeyDoc::new(&layer(KeySources::bearer(), ErrorStyle::envelope()));
        let op = documented(&doc, "session:read");
        let too_many = &op["responses"]["429"];
        assert!(too_many["headers"]["retry-after"].is_object());
        assert!(too_many["headers"].get("ratelimit").is_none());
        assert_eq!(
            too_many["description"],
            "Refused by the API-key guard (too_many_unknown_keys)."
        );
    }

    #[test]
    fn an_operations_own_refusal_becomes_the_shared_response_with_its_description() {
        let doc = ApiKeyDoc::new(&layer(KeySources::bearer(), ErrorStyle::envelope()));
        let mut operation = Operation::new();
        for (status, text) in [("400", "The body is invalid"), ("415", "Not JSON")] {
            let mut own = Response::new(text);
            own.content.insert(
                "application/json".into(),
                Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    "ErrorBody",
                )))),
            );
            operation
                .responses
                .responses
                .insert(status.into(), RefOr::T(own));
        }
        // A reference the operation wrote itself stays as it is.
        operation.responses.responses.insert(
            "503".into(),
            RefOr::Ref(utoipa::openapi::Ref::new("#/components/responses/Mine")),
        );
        let model = crate::presets::performance_blocks::scope_model();
        doc.document(&mut operation, &model.requirement("session:read").unwrap());
        let op = serde_json::to_value(&operation).unwrap();
        assert_eq!(
            op["responses"]["400"],
            json!({
                "$ref": "#/components/responses/ApiBadRequest",
                "description": "The body is invalid\n\nRefused by the API-key guard (invalid_request).",
            })
        );
        // Not a status the guard refuses with, but one the surface documents.
        assert_eq!(
            op["responses"]["415"],
            json!({
                "$ref": "#/components/responses/ApiUnsupportedMediaType",
                "description": "Not JSON",
            })
        );
        assert_eq!(
            op["responses"]["503"],
            json!({ "$ref": "#/components/responses/Mine" })
        );
        let components = serde_json::to_value(doc.components()).unwrap();
        let bad = &components["responses"]["ApiBadRequest"];
        assert_eq!(
            bad["content"]["application/json"]["schema"],
            json!({ "$ref": "#/components/schemas/ApiError" })
        );
        assert!(bad["headers"]["www-authenticate"].is_object());
    }

    #[test]
    fn a_surface_has_one_error_schema_and_one_response_per_status() {
        let doc = ApiKeyDoc::new(&layer(
            KeySources::bearer(),
            ErrorStyle::envelope().with_request_id_in_body(true),
        ))
        .with_rate_limit(true);
        let components = serde_json::to_value(doc.components()).unwrap();
        let schemas: Vec<&String> = components["schemas"].as_object().unwrap().keys().collect();
        assert_eq!(schemas, ["ApiError"]);
        let error = &components["schemas"]["ApiError"]["properties"]["error"];
        assert_eq!(error["required"], json!(["code", "message"]));
        assert_eq!(error["properties"]["request_id"]["type"], "string");
        let responses: Vec<&String> = components["responses"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(
            responses,
            [
                "ApiBadRequest",
                "ApiConflict",
                "ApiForbidden",
                "ApiNotFound",
                "ApiPayloadTooLarge",
                "ApiServiceUnavailable",
                "ApiTooManyRequests",
                "ApiUnauthorized",
                "ApiUnsupportedMediaType",
            ]
        );
        for (name, response) in components["responses"].as_object().unwrap() {
            assert_eq!(
                response["content"]["application/json"]["schema"],
                json!({ "$ref": "#/components/schemas/ApiError" }),
                "{name}"
            );
        }
        // The guards' and the application's outcomes at one status, in one response.
        assert_eq!(
            components["responses"]["ApiForbidden"]["description"],
            "Refused (wrong_environment, insufficient_scope, quota_exceeded, permission_denied)."
        );
        // Every operation of the surface references the same components.
        let a = raw(&doc, "session:read");
        let b = raw(&doc, "employees:write");
        for status in ["400", "401", "403", "429", "503"] {
            assert_eq!(
                a["responses"][status]["$ref"],
                b["responses"][status]["$ref"]
            );
            assert!(a["responses"][status]["$ref"].is_string(), "{status}");
        }
    }

    #[test]
    fn a_realm_names_the_components() {
        assert_eq!(component_prefix("Performance Blocks"), "PerformanceBlocks");
        assert_eq!(component_prefix("api"), "Api");
        assert_eq!(component_prefix("my-api v2"), "MyApiV2");
        assert_eq!(component_prefix("!!"), "ApiKey");
        let doc = ApiKeyDoc::new(&layer(KeySources::bearer(), ErrorStyle::envelope()));
        assert_eq!(
            doc.response_name(StatusCode::TOO_MANY_REQUESTS),
            "ApiTooManyRequests"
        );
    }

    #[test]
    fn inferred_schemas_require_only_what_every_sample_has() {
        let samples = [
            json!({ "a": 1, "b": "x", "c": [1, 2] }),
            json!({ "a": 2.5, "c": [], "d": null }),
        ];
        let refs: Vec<&Value> = samples.iter().collect();
        let schema = serde_json::to_value(infer(&refs)).unwrap();
        assert_eq!(schema["required"], json!(["a", "c"]));
        assert_eq!(schema["properties"]["a"]["type"], "number");
        assert_eq!(schema["properties"]["b"]["type"], "string");
        assert_eq!(schema["properties"]["c"]["items"]["type"], "integer");
        assert_eq!(schema["properties"]["d"]["type"], "null");
        let mixed = [json!("x"), json!(null)];
        let refs: Vec<&Value> = mixed.iter().collect();
        assert_eq!(
            serde_json::to_value(infer(&refs)).unwrap()["type"],
            json!(["string", "null"])
        );
    }
}
