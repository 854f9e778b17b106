use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::ResponseBody;
use crate::audit::{AuditEntry, Auditor};
use crate::rate_limit::RateLimitStatus;
use crate::rejection::Rejection;

/// What admitting a request leaves for the way out. Usually nothing: then it is one
/// null pointer in the response future, which every layer moves several times.
#[derive(Default)]
pub(crate) struct Admitted(Option<Box<Additions>>);

/// What to add to a successful response.
pub(crate) struct Additions {
    /// The `Sunset` header while the key is in rotation grace.
    sunset: Option<HeaderValue>,
    /// The audit entry to complete with the status and record.
    audit: Option<(Auditor, AuditEntry)>,
    /// The `RateLimit` fields for a successful response.
    rate_limit: Option<RateLimitStatus>,
}

impl Admitted {
    pub(crate) fn new(
        sunset: Option<HeaderValue>,
        audit: Option<(Auditor, AuditEntry)>,
        rate_limit: Option<RateLimitStatus>,
    ) -> Self {
        if sunset.is_none() && audit.is_none() && rate_limit.is_none() {
            return Self(None);
        }
        Self(Some(Box::new(Additions {
            sunset,
            audit,
            rate_limit,
        })))
    }
}

/// What the asynchronous part of authentication decided.
// Built once per request and moved straight into the next state: boxing the larger
// variant would cost an allocation on the request path to save a memcpy.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Authorized<B> {
    /// Call the inner service with this request.
    Pass(Request<B>, Admitted),
    /// Answer with this refusal.
    Refuse(Response<Bytes>),
}

type AuthFuture<B> = Pin<Box<dyn Future<Output = Authorized<B>> + Send>>;

pin_project! {
    /// The response future of [`ApiKeyService`](super::ApiKeyService).
    ///
    /// A cache hit or a malformed key is decided before this future exists; only a
    /// cache miss or a JSON-body key goes through the boxed authentication state.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Authenticating {
            fut: AuthFuture<B>,
            inner: Option<S>,
        },
        Calling {
            #[pin]
            fut: S::Future,
            admitted: Admitted,
        },
        Refused {
            response: Option<Response<Bytes>>,
        },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn call(fut: S::Future, admitted: Admitted) -> Self {
        Self {
            state: State::Calling { fut, admitted },
        }
    }

    pub(crate) fn reject(response: Response<Bytes>) -> Self {
        Self {
            state: State::Refused {
                response: Some(response),
            },
        }
    }

    pub(crate) fn authenticating(fut: AuthFuture<B>, inner: S) -> Self {
        Self {
            state: State::Authenticating {
                fut,
                inner: Some(inner),
            },
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Authenticating { fut, inner } => {
                    let next = match ready!(fut.as_mut().poll(cx)) {
                        Authorized::Pass(req, admitted) => {
                            let mut svc = inner.take().expect("polled after completion");
                            State::Calling {
                                fut: svc.call(req),
                                admitted,
                            }
                        }
                        Authorized::Refuse(response) => State::Refused {
                            response: Some(response),
                        },
                    };
                    this.state.set(next);
                }
                StateProj::Calling { fut, admitted } => {
                    let mut response = ready!(fut.poll(cx))?.map(ResponseBody::inner);
                    let Some(additions) = admitted.0.take() else {
                        return Poll::Ready(Ok(response));
                    };
                    let Additions {
                        sunset,
                        audit,
                        rate_limit,
                    } = *additions;
                    if let Some(sunset) = sunset {
                        response.headers_mut().insert("sunset", sunset);
                    }
                    if let Some(status) = rate_limit {
                        status.insert_headers(response.headers_mut());
                    }
                    // A request refused further in (a scope guard, a rate limit) never
                    // reached its handler: it is not audited as a request.
                    if let Some((auditor, mut entry)) = audit {
                        if response.extensions().get::<Rejection>().is_none() {
                            entry.status = Some(response.status().as_u16());
                            auditor.record(entry);
                        }
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Refused { response } => {
                    let response = response.take().expect("polled after completion");
                    return Poll::Ready(Ok(response.map(ResponseBody::rejection)));
                }
            }
        }
    }
}
