//! What the authentication layer leaves in a request's extensions for the guards
//! behind it, and how they render a refusal with it.

use std::sync::Arc;

use bytes::Bytes;
use http::{Extensions, HeaderMap, Response};

use crate::principal::Principal;
use crate::rejection::{request_id, Rejection, RejectionKind, RejectionResponse, Renderer};
use crate::scope::ScopeModel;

/// The request-scoped context of the authentication layer that handled a request:
/// inserted into the extensions of every request it lets through (authenticated or
/// anonymous), next to the [`Principal`]. Its presence is how a guard knows a layer
/// ran at all; without it, a guard answers the misconfiguration 500.
#[derive(Debug)]
pub(crate) struct RequestContext {
    /// How refusals are rendered: the layer's style, realm and headers.
    pub(crate) renderer: Arc<Renderer>,
    /// The scope model typed guards check against, when the layer was given one.
    pub(crate) scope_model: Option<ScopeModel>,
}

impl RequestContext {
    /// The context of the layer that handled a request with these extensions.
    pub(crate) fn of(extensions: &Extensions) -> Option<&Self> {
        extensions.get::<Arc<Self>>().map(|c| &**c)
    }

    /// Whether a request with these extensions was let through by the layer whose
    /// context is `context` (that layer or a clone of it): only a layer that let the
    /// request through puts its context in, so this very context means the same
    /// configuration already decided, with a [`Principal`] or, for an optional layer,
    /// anonymously. The second of two stacked guards of one `ApiKeyAuth` finds its
    /// request so. One extensions lookup, on every request.
    pub(crate) fn authenticated_by(extensions: &Extensions, context: &Arc<Self>) -> bool {
        extensions
            .get::<Arc<Self>>()
            .is_some_and(|seen| Arc::ptr_eq(seen, context))
    }
}

/// Renders `outcome` for a request with these extensions and headers, in the style of
/// the authentication layer that handled it, or as the misconfiguration 500 without one.
pub(crate) fn render_for(
    extensions: &Extensions,
    headers: &HeaderMap,
    outcome: RejectionKind,
) -> Response<Bytes> {
    let Some(context) = RequestContext::of(extensions) else {
        return RejectionResponse::misconfigured().into_response();
    };
    let key_id = extensions.get::<Principal>().map(|p| *p.key_id());
    let rejection = Rejection::new(outcome)
        .with_key_id(key_id)
        .with_request_id(request_id(headers).cloned());
    context.renderer.render(rejection)
}
