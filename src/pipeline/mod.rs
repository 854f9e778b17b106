//! What the authentication layer, the scope guards and the rate limiter share, and
//! nothing else: the response future and body, and the request-scoped context the
//! first leaves for the others. Each middleware depends on this module and on
//! [`rejection`](crate::rejection), never on another middleware.

mod body;
mod context;
mod extract;
mod future;

pub use self::body::ResponseBody;
pub(crate) use self::context::{render_for, RequestContext};
pub use self::future::ResponseFuture;
pub(crate) use self::future::{Admitted, Bare, Verdict};
