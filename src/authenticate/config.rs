//! What an authentication layer and its services share: the layer's settings.

use std::sync::Arc;

use super::KeyVerifier;
use crate::audit::Auditor;
use crate::client::ClientIp;
use crate::credentials::KeySources;
use crate::pipeline::RequestContext;
use crate::rejection::Responder;
use crate::scope::ScopeModel;
use crate::store::LastUsed;
use crate::usage::Usage;

/// The settings of an [`AuthenticateLayer`](super::AuthenticateLayer), shared by its
/// services behind one `Arc`.
pub(crate) struct Config<K> {
    pub(crate) authenticator: KeyVerifier<K>,
    pub(crate) sources: KeySources,
    /// What every request let through carries for the guards behind.
    pub(crate) context: Arc<RequestContext>,
    pub(crate) optional: bool,
    pub(crate) hide_credentials: bool,
    pub(crate) last_used: Option<LastUsed>,
    pub(crate) usage: Option<Usage>,
    pub(crate) auditor: Option<Auditor>,
    pub(crate) client_ip: ClientIp,
    pub(crate) scope_model: Option<ScopeModel>,
    pub(crate) responder: Arc<dyn Responder>,
    pub(crate) realm: Arc<str>,
}

impl<K> Clone for Config<K> {
    fn clone(&self) -> Self {
        Self {
            authenticator: self.authenticator.clone(),
            sources: self.sources.clone(),
            context: Arc::clone(&self.context),
            optional: self.optional,
            hide_credentials: self.hide_credentials,
            last_used: self.last_used.clone(),
            usage: self.usage.clone(),
            auditor: self.auditor.clone(),
            client_ip: self.client_ip.clone(),
            scope_model: self.scope_model.clone(),
            responder: Arc::clone(&self.responder),
            realm: Arc::clone(&self.realm),
        }
    }
}
