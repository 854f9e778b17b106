use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::config::Config;
use super::{Authenticate, KeyVerifier};
use crate::audit::Auditor;
use crate::client::ClientIp;
use crate::credentials::KeySources;
use crate::error::ConfigError;
use crate::pipeline::RequestContext;
use crate::rejection::{validate_realm, ErrorStyle, Renderer, Responder};
use crate::scope::ScopeModel;
use crate::store::LastUsed;
use crate::usage::Usage;

/// Authenticates every request with an API key. See [`parts`](crate::parts).
///
/// Defaults: keys from `Authorization: Bearer` or `X-API-Key`, the Performance Blocks
/// error envelope, realm `api`, authentication required, credentials passed on to the
/// inner service.
///
/// A request that this layer, or a clone of it, already authenticated further out
/// passes straight through with the principal it has: stacked, the layer (and the
/// guards of one [`ApiKeyAuth`](crate::auth::ApiKeyAuth), which share it) authenticates,
/// audits and records last-used once per request.
#[must_use]
pub struct AuthenticateLayer<K> {
    config: Arc<Config<K>>,
}

impl<K> AuthenticateLayer<K> {
    /// A layer that authenticates with `authenticator`.
    pub fn new(authenticator: KeyVerifier<K>) -> Self {
        let responder: Arc<dyn Responder> = Arc::new(ErrorStyle::envelope());
        let realm: Arc<str> = Arc::from("api");
        Self {
            config: Arc::new(Config {
                authenticator,
                sources: KeySources::default(),
                context: Arc::new(RequestContext {
                    renderer: Arc::new(Renderer::new(Arc::clone(&responder), Arc::clone(&realm))),
                    scope_model: None,
                }),
                optional: false,
                hide_credentials: false,
                last_used: None,
                usage: None,
                auditor: None,
                client_ip: ClientIp::peer(),
                scope_model: None,
                responder,
                realm,
            }),
        }
    }

    fn update(mut self, f: impl FnOnce(&mut Config<K>)) -> Self {
        let config = Arc::make_mut(&mut self.config);
        f(config);
        config.context = Arc::new(RequestContext {
            renderer: Arc::new(Renderer::new(
                Arc::clone(&config.responder),
                Arc::clone(&config.realm),
            )),
            scope_model: config.scope_model.clone(),
        });
        self
    }

    /// Where keys are read from.
    pub fn with_sources(self, sources: KeySources) -> Self {
        self.update(|c| c.sources = sources)
    }

    /// How refusals are answered: a built-in [`ErrorStyle`] or your own
    /// [`Responder`]. Scope guards behind this layer answer in the same style.
    pub fn with_responder(self, responder: impl Responder) -> Self {
        self.update(|c| c.responder = Arc::new(responder))
    }

    /// The realm of `WWW-Authenticate` challenges (`api` by default).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for an empty realm or one with quotes, backslashes or control
    /// characters.
    pub fn with_realm(self, realm: &str) -> Result<Self, ConfigError> {
        validate_realm(realm)?;
        Ok(self.update(|c| c.realm = Arc::from(realm)))
    }

    /// Optional authentication (Kong's `anonymous`): a request with no credential
    /// passes with no [`Principal`](crate::Principal); a credential that is presented
    /// must still be valid.
    pub fn with_optional(self, optional: bool) -> Self {
        self.update(|c| c.optional = optional)
    }

    /// Removes the credential (the header, query parameter or JSON field) before the
    /// inner service sees the request (Kong's `hide_credentials`). For a JSON body this
    /// re-serialises the document, so the body is no longer byte-identical.
    pub fn with_hide_credentials(self, hide: bool) -> Self {
        self.update(|c| c.hide_credentials = hide)
    }

    /// Records `last_used_at` for every authenticated request, through a write-behind
    /// buffer (no store write per request).
    pub fn with_last_used(self, last_used: LastUsed) -> Self {
        self.update(|c| c.last_used = Some(last_used))
    }

    /// Counts every request authenticated by a key, by key, hour and outcome, and
    /// writes the counts behind (see [`usage`](crate::usage)).
    pub fn with_usage(self, usage: Usage) -> Self {
        self.update(|c| c.usage = Some(usage))
    }

    /// Audits every state-changing request (any method but `GET`, `HEAD` and
    /// `OPTIONS`) made with a key that reached the inner service, whatever it answered:
    /// key id, owner, method, path, matched route, status and request id. Reads are
    /// never audited.
    pub fn with_auditor(self, auditor: Auditor) -> Self {
        self.update(|c| c.auditor = Some(auditor))
    }

    /// How the client of a request is identified, for the authenticator's
    /// [unknown-key budget](crate::budget): the peer address by default (serve the
    /// router with `into_make_service_with_connect_info::<SocketAddr>()`, or every
    /// request shares one budget). Behind a reverse proxy, trust its forwarding header
    /// with [`ClientIp::x_forwarded_for`] or [`ClientIp::forwarded`].
    pub fn with_client_ip(self, client_ip: ClientIp) -> Self {
        self.update(|c| c.client_ip = client_ip)
    }

    /// The scope model that typed guards ([`Scoped`](crate::require_scopes::Scoped))
    /// behind this layer check against.
    pub fn with_scope_model(self, model: ScopeModel) -> Self {
        self.update(|c| c.scope_model = Some(model))
    }

    /// The usage counters, when set.
    pub(crate) fn usage(&self) -> Option<&Usage> {
        self.config.usage.as_ref()
    }

    /// The last-used buffer, when set.
    pub(crate) fn last_used_buffer(&self) -> Option<&LastUsed> {
        self.config.last_used.as_ref()
    }

    /// The request auditor, when set.
    pub(crate) fn request_auditor(&self) -> Option<&Auditor> {
        self.config.auditor.as_ref()
    }

    /// The authenticator.
    pub fn authenticator(&self) -> &KeyVerifier<K> {
        &self.config.authenticator
    }

    /// How this layer renders refusals.
    pub(crate) fn renderer(&self) -> &Arc<Renderer> {
        &self.config.context.renderer
    }

    /// Where this layer reads keys from (for its OpenAPI description).
    #[cfg(feature = "utoipa")]
    pub(crate) fn sources(&self) -> &KeySources {
        &self.config.sources
    }
}

impl<K> Clone for AuthenticateLayer<K> {
    fn clone(&self) -> Self {
        Self {
            config: Arc::clone(&self.config),
        }
    }
}

impl<S, K> Layer<S> for AuthenticateLayer<K> {
    type Service = Authenticate<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate::new(inner, Arc::clone(&self.config))
    }
}

impl<K: fmt::Debug> fmt::Debug for AuthenticateLayer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticateLayer")
            .field("authenticator", &self.config.authenticator)
            .field("sources", &self.config.sources)
            .field("realm", &self.config.realm)
            .field("optional", &self.config.optional)
            .field("hide_credentials", &self.config.hide_credentials)
            .field("client_ip", &self.config.client_ip)
            .finish_non_exhaustive()
    }
}
