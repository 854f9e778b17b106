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
//!   keys) responses.
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
//! assert_eq!(get["responses"]["403"]["content"]["application/json"]["examples"]
//!     ["insufficient_scope"]["value"]["error"]["message"], "Required scope: invoices:read");
//! assert_eq!(json["components"]["securitySchemes"]["api_key"]["name"], "x-api-key");
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
use utoipa::openapi::{Components, Content, Header, OpenApi, Paths, RefOr, Required, Response};
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
            .finish_non_exhaustive()
    }
}

impl ApiKeyDoc {
    /// The description of `layer`: its key sources and its responder.
    pub fn new<K>(layer: &AuthenticateLayer<K>) -> Self {
        let sources = layer.sources();
        Self {
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
    /// the refusal responses with their bodies, schemas and headers. A status the
    /// operation already documents keeps its own content too (`anyOf`).
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
            _ => line,
        });
        if let Some(field) = &self.body_field {
            add_body_field(operation, field);
        }
        let required: Vec<String> = alternatives
            .first()
            .map(|a| a.iter().map(|s| (*s).to_owned()).collect())
            .unwrap_or_default();
        for (status, samples) in self.refusals(required) {
            let response = self.response(status, &samples);
            merge_response(operation, status, response);
        }
    }

    /// Documents `outcomes` on `operation`, rendered by this layer's responder and
    /// grouped by status, each status described by `describe` (for the
    /// key-management router's own refusals: bad input, 404, 409, …).
    pub(crate) fn document_outcomes(
        &self,
        operation: &mut Operation,
        outcomes: Vec<RejectionKind>,
        describe: impl Fn(StatusCode) -> String,
    ) {
        for (status, samples) in self.render(outcomes) {
            let mut response = self.response(status, &samples);
            response.description = describe(status);
            merge_response(operation, status, response);
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

    /// The outcomes this layer (and its guards) can refuse with, rendered by its own
    /// responder, grouped by status.
    fn refusals(&self, required: Vec<String>) -> Vec<(StatusCode, Vec<Sample>)> {
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
        self.render(outcomes)
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
        let mut codes: Vec<&str> = samples.iter().map(|s| s.code).collect();
        codes.dedup();
        let mut response = Response::new(format!(
            "Refused by the API-key guard ({}).",
            codes.join(", ")
        ));
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
                infer(&bodies)
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
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Components::new);
        for (name, scheme) in self.security_schemes() {
            components.add_security_scheme(name, scheme);
        }
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
    /// The OpenAPI description of the authentication layer every guard starts with:
    /// apply it to the document ([`utoipa::Modify`]) for the security schemes.
    pub fn openapi(&self) -> ApiKeyDoc
    where
        K: crate::KeyStore,
        R: Clone,
    {
        ApiKeyDoc::new(&self.layer())
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

/// Puts `response` under `status`, keeping what the operation documents there already.
fn merge_response(operation: &mut Operation, status: StatusCode, response: Response) {
    let key = status.as_str().to_owned();
    let Some(existing) = operation.responses.responses.get_mut(&key) else {
        operation
            .responses
            .responses
            .insert(key, RefOr::T(response));
        return;
    };
    // A response by reference is kept as the operation wrote it.
    let RefOr::T(existing) = existing else { return };
    existing.description = format!("{}\n\n{}", existing.description, response.description);
    for (name, header) in response.headers {
        existing.headers.entry(name).or_insert(header);
    }
    for (content_type, content) in response.content {
        match existing.content.get_mut(&content_type) {
            None => {
                existing.content.insert(content_type, content);
            }
            Some(theirs) => {
                theirs.schema = match (theirs.schema.take(), content.schema) {
                    (Some(a), Some(b)) if a != b => Some(RefOr::T(Schema::AnyOf(
                        AnyOfBuilder::new().item(a).item(b).build(),
                    ))),
                    (a, b) => a.or(b),
                };
                for (name, example) in content.examples {
                    theirs.examples.entry(name).or_insert(example);
                }
            }
        }
    }
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

    fn documented(doc: &ApiKeyDoc, expression: &str) -> Value {
        let model = crate::presets::performance_blocks::scope_model();
        let mut operation = Operation::new();
        doc.document(&mut operation, &model.requirement(expression).unwrap());
        serde_json::to_value(&operation).unwrap()
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
        // The 403 example names what the first alternative needs.
        assert_eq!(
            op["responses"]["403"]["content"]["application/json"]["examples"]["insufficient_scope"]
                ["value"]["error"]["message"],
            "Required scopes: employees:read, webhooks:write"
        );
        // Header keys: no body field, no body-only refusals.
        assert!(op.get("requestBody").is_none());
        assert!(op["responses"].get("413").is_none());
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
    fn a_status_the_operation_documents_keeps_its_own_content() {
        let doc = ApiKeyDoc::new(&layer(KeySources::bearer(), ErrorStyle::envelope()));
        let mut operation = Operation::new();
        let mut own = Response::new("The body is invalid");
        own.content.insert(
            "application/json".into(),
            Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                "ErrorBody",
            )))),
        );
        operation
            .responses
            .responses
            .insert("400".into(), RefOr::T(own));
        let model = crate::presets::performance_blocks::scope_model();
        doc.document(&mut operation, &model.requirement("session:read").unwrap());
        let op = serde_json::to_value(&operation).unwrap();
        let bad = &op["responses"]["400"];
        assert_eq!(
            bad["description"],
            "The body is invalid\n\nRefused by the API-key guard (invalid_request)."
        );
        let any_of = bad["content"]["application/json"]["schema"]["anyOf"]
            .as_array()
            .unwrap();
        assert_eq!(
            any_of[0],
            json!({ "$ref": "#/components/schemas/ErrorBody" })
        );
        assert_eq!(any_of[1]["type"], "object");
        assert!(bad["headers"]["www-authenticate"].is_object());
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
