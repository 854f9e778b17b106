//! The extractors of what the authentication layer leaves in a request.

use http::request::Parts;

use super::{render_for, RequestContext};
use crate::principal::Principal;
use crate::rejection::{RejectionKind, RejectionResponse};

impl RejectionResponse {
    /// Renders `outcome` in the style of the authentication layer that handled this
    /// request. Without such a layer in front (a wiring mistake), the answer is a 500
    /// and an error is logged: a guard never lets a request through unauthenticated.
    pub fn from_parts(parts: &Parts, outcome: RejectionKind) -> Self {
        Self::from_response(render_for(&parts.extensions, &parts.headers, outcome))
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Principal {
    type Rejection = RejectionResponse;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Self>() {
            Some(principal) => Ok(principal.clone()),
            None => Err(RejectionResponse::from_parts(parts, RejectionKind::Missing)),
        }
    }
}

impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for Principal {
    type Rejection = RejectionResponse;

    /// `None` for an anonymous request admitted by an optional layer; a 500 when no
    /// authentication layer ran at all (a wiring mistake must not look like anonymity).
    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        if let Some(principal) = parts.extensions.get::<Self>() {
            return Ok(Some(principal.clone()));
        }
        if RequestContext::of(&parts.extensions).is_some() {
            Ok(None)
        } else {
            Err(RejectionResponse::misconfigured())
        }
    }
}
