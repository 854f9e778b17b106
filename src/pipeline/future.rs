use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::ResponseBody;
use crate::audit::{AuditEntry, Auditor};
use crate::rejection::{Rejection, RejectionKind};
use crate::usage::{KeyUsage, UsageOutcome};

/// What admitting a request leaves for the way out. Usually nothing: then it is two
/// null pointers in the response future, which every layer moves several times.
#[derive(Default)]
pub(crate) struct Admitted {
    additions: Option<Box<Additions>>,
    /// The key's usage counters, when this layer counts the request.
    usage: Option<Arc<KeyUsage>>,
}

/// What to add to a successful response.
struct Additions {
    /// Headers to add (`Sunset` during a rotation grace, the `RateLimit` fields).
    headers: HeaderMap,
    /// The audit entry to complete with the status, unless the request was refused
    /// further in.
    audit: Option<(Auditor, AuditEntry)>,
}

impl Admitted {
    /// Adds `headers` to the response and records `audit` once its status is known.
    /// `None` and `None` cost nothing: most requests add neither.
    pub(crate) fn new(headers: Option<HeaderMap>, audit: Option<(Auditor, AuditEntry)>) -> Self {
        if headers.is_none() && audit.is_none() {
            return Self::default();
        }
        Self {
            additions: Some(Box::new(Additions {
                headers: headers.unwrap_or_default(),
                audit,
            })),
            usage: None,
        }
    }

    /// Counts the request in `usage` once its response says how it ended.
    pub(crate) fn counting(mut self, usage: Option<Arc<KeyUsage>>) -> Self {
        self.usage = usage;
        self
    }
}

/// How a request ended, from its response: refused by a guard or a limit behind the
/// counting layer, or admitted (whatever the handler answered).
fn outcome<B>(response: &Response<B>) -> UsageOutcome {
    match response
        .extensions()
        .get::<Rejection>()
        .map(Rejection::kind)
    {
        Some(RejectionKind::InsufficientScope { .. }) => UsageOutcome::RefusedScope,
        Some(RejectionKind::RateLimited { .. }) => UsageOutcome::RefusedRateLimit,
        Some(RejectionKind::QuotaExceeded) => UsageOutcome::RefusedQuota,
        _ => UsageOutcome::Admitted,
    }
}

/// How a middleware's responses carry their body: the authentication layer wraps any
/// inner body in [`ResponseBody`]; the guards behind it answer in their inner body
/// type, so that a stack wraps bodies once.
pub trait Wrap<B> {
    /// The body of the middleware's responses.
    type Body;

    /// The inner service's body.
    fn inner(body: B) -> Self::Body;

    /// A refusal rendered by the crate.
    fn rejection(bytes: Bytes) -> Self::Body;
}

/// Responses carry [`ResponseBody<B>`]: the authentication layer, which accepts any body.
#[derive(Debug)]
pub struct Wrapped;

impl<B> Wrap<B> for Wrapped {
    type Body = ResponseBody<B>;

    fn inner(body: B) -> Self::Body {
        ResponseBody::inner(body)
    }

    fn rejection(bytes: Bytes) -> Self::Body {
        ResponseBody::rejection(bytes)
    }
}

/// Responses carry the inner body itself, a refusal made with `B::from(bytes)`: the
/// scope guards and the rate limiter.
#[derive(Debug)]
pub struct Bare;

impl<B: From<Bytes>> Wrap<B> for Bare {
    type Body = B;

    fn inner(body: B) -> B {
        body
    }

    fn rejection(bytes: Bytes) -> B {
        B::from(bytes)
    }
}

/// What the asynchronous part of a middleware decided.
// Built once per request and moved straight into the next state: boxing the larger
// variant would cost an allocation on the request path to save a memcpy.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Verdict<B> {
    /// Call the inner service with this request.
    Pass(Request<B>, Admitted),
    /// Answer with this refusal.
    Refuse(Response<Bytes>),
}

type Deciding<B> = Pin<Box<dyn Future<Output = Verdict<B>> + Send>>;

pin_project! {
    /// The response future of the authentication service, the scope guards and the
    /// rate limiter.
    ///
    /// Most requests are decided before it exists (a cache hit, a malformed key, a
    /// scope check, an in-process rate limit); only a cache miss, a JSON-body key or a
    /// shared rate-limit backend goes through the boxed deciding state. `W` says how
    /// the responses carry their body ([`ResponseBody`] for the authentication layer,
    /// the inner body for the guards behind it).
    pub struct ResponseFuture<S, B, W = Wrapped>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
        wrap: PhantomData<fn() -> W>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Deciding {
            fut: Deciding<B>,
            inner: Option<S>,
        },
        Calling {
            #[pin]
            fut: S::Future,
            admitted: Admitted,
        },
        // Boxed: a response is larger than most inner futures, and every layer's
        // future (moved several times per request) would be as large as this variant.
        Refused {
            response: Option<Box<Response<Bytes>>>,
        },
    }
}

impl<S, B, W> ResponseFuture<S, B, W>
where
    S: Service<Request<B>>,
{
    fn new(state: State<S, B>) -> Self {
        Self {
            state,
            wrap: PhantomData,
        }
    }

    /// Calls the inner service; `admitted` is applied to its response.
    pub(crate) fn call(fut: S::Future, admitted: Admitted) -> Self {
        Self::new(State::Calling { fut, admitted })
    }

    /// Answers with a refusal.
    pub(crate) fn reject(response: Response<Bytes>) -> Self {
        Self::new(State::Refused {
            response: Some(Box::new(response)),
        })
    }

    /// Decides asynchronously, then calls the service that was driven to readiness or
    /// refuses. The ready service is taken from `inner`, leaving a clone in its place:
    /// see tower's "Be careful when cloning inner services" note,
    /// <https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services>.
    pub(crate) fn deciding(fut: Deciding<B>, inner: &mut S) -> Self
    where
        S: Clone,
    {
        let clone = inner.clone();
        Self::new(State::Deciding {
            fut,
            inner: Some(std::mem::replace(inner, clone)),
        })
    }
}

impl<S, B, W, ResBody> Future for ResponseFuture<S, B, W>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    W: Wrap<ResBody>,
{
    type Output = Result<Response<W::Body>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Deciding { fut, inner } => {
                    let next = match ready!(fut.as_mut().poll(cx)) {
                        Verdict::Pass(req, admitted) => {
                            let mut svc = inner.take().expect("polled after completion");
                            State::Calling {
                                fut: svc.call(req),
                                admitted,
                            }
                        }
                        Verdict::Refuse(response) => State::Refused {
                            response: Some(Box::new(response)),
                        },
                    };
                    this.state.set(next);
                }
                StateProj::Calling { fut, admitted } => {
                    let mut response = ready!(fut.poll(cx))?.map(W::inner);
                    if let Some(usage) = admitted.usage.take() {
                        usage.add(outcome(&response));
                    }
                    let Some(additions) = admitted.additions.take() else {
                        return Poll::Ready(Ok(response));
                    };
                    let Additions { headers, audit } = *additions;
                    response.headers_mut().extend(headers);
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
                    return Poll::Ready(Ok((*response).map(W::rejection)));
                }
            }
        }
    }
}
