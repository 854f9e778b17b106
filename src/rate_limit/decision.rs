//! What a rate-limit check decided, with everything the response fields need.

use std::sync::Arc;
use std::time::Duration;

use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::rejection::RejectionKind;

/// The `RateLimit` response field (draft-ietf-httpapi-ratelimit-headers, -08 and later).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The `RateLimit-Policy` response field (draft-ietf-httpapi-ratelimit-headers, -08 and
/// later).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// The verdict on one request.
///
/// A refused request (every variant but [`Allowed`](Self::Allowed)) spent nothing: no
/// rate-limit units and no quota.
///
/// ```
/// use std::time::Duration;
/// use tower_api_key::rate_limit::{Decision, RateStatus};
/// use tower_api_key::RejectionKind;
///
/// let status = RateStatus {
///     policy: "default".into(),
///     quota: 5,
///     window_secs: 60,
///     remaining: 0,
///     reset_secs: 12,
///     retry_after: Some(Duration::from_millis(11_200)),
/// };
/// let decision = Decision::Limited(status);
/// assert!(!decision.is_allowed());
/// assert_eq!(
///     decision.kind(),
///     Some(RejectionKind::RateLimited { retry_after: Duration::from_secs(12) })
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The request may proceed; its cost has been spent.
    Allowed(RateStatus),
    /// Over the rate limit: answer 429 with `Retry-After`.
    /// [`RateStatus::retry_after`] is set.
    Limited(RateStatus),
    /// The owner's daily or monthly quota is spent: answer 403 `quota_exceeded` (by
    /// default).
    QuotaExceeded(QuotaStatus),
    /// The request costs more units than the policy's burst, so it could never be
    /// allowed however long the client waited. This is a configuration mistake (a
    /// route weight too large for a policy); find it when the router is built with
    /// [`Limits::validate_cost`](super::Limits::validate_cost).
    CostExceedsBurst {
        /// The policy that was chosen for the key.
        policy: Arc<str>,
        /// The request's cost.
        cost: u32,
        /// The policy's burst.
        burst: u32,
    },
}

impl Decision {
    /// `true` for [`Decision::Allowed`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed(_))
    }

    /// The refusal to answer with, or `None` when the request is allowed.
    ///
    /// [`Decision::Limited`] becomes [`RejectionKind::RateLimited`] with the wait rounded up
    /// to whole seconds (never zero), [`Decision::QuotaExceeded`] becomes
    /// [`RejectionKind::QuotaExceeded`], and [`Decision::CostExceedsBurst`] becomes
    /// [`RejectionKind::InvalidRequest`] (400): waiting would never help, so a 429 would make
    /// a well-behaved client retry forever.
    pub fn kind(&self) -> Option<RejectionKind> {
        match self {
            Self::Allowed(_) => None,
            Self::Limited(status) => Some(RejectionKind::RateLimited {
                retry_after: Duration::from_secs(status.retry_after_secs().unwrap_or(1)),
            }),
            Self::QuotaExceeded(_) => Some(RejectionKind::QuotaExceeded),
            Self::CostExceedsBurst { .. } => Some(RejectionKind::InvalidRequest {
                reason: "the request costs more than the key's rate limit allows at once",
            }),
        }
    }

    /// The rate-limit state, for [`Allowed`](Self::Allowed) and
    /// [`Limited`](Self::Limited).
    pub fn rate_limit_status(&self) -> Option<&RateStatus> {
        match self {
            Self::Allowed(status) | Self::Limited(status) => Some(status),
            Self::QuotaExceeded(_) | Self::CostExceedsBurst { .. } => None,
        }
    }
}

/// The state of a rate-limit bucket after a check, in the terms of the `RateLimit`
/// fields.
///
/// ```
/// use tower_api_key::rate_limit::RateStatus;
///
/// let status = RateStatus {
///     policy: "default".into(),
///     quota: 100,
///     window_secs: 60,
///     remaining: 50,
///     reset_secs: 30,
///     retry_after: None,
/// };
/// assert_eq!(status.ratelimit_header(), "\"default\";r=50;t=30");
/// assert_eq!(status.policy_header(), "\"default\";q=100;w=60");
/// assert_eq!(status.retry_after_secs(), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateStatus {
    /// The policy's name.
    pub policy: Arc<str>,
    /// The policy's requests per window.
    pub quota: u32,
    /// The policy's window, in seconds.
    pub window_secs: u64,
    /// Units that could be spent right now.
    pub remaining: u32,
    /// Whole seconds (rounded up) until the bucket is full again, for an allowed
    /// request. For a limited one, the same as [`retry_after_secs`](Self::retry_after_secs),
    /// so `RateLimit` never promises capacity earlier than `Retry-After`.
    pub reset_secs: u64,
    /// For a limited request: how long until a request of the same cost would be
    /// allowed.
    pub retry_after: Option<Duration>,
}

impl RateStatus {
    /// The `RateLimit` field: `"<policy>";r=<remaining>;t=<reset_secs>`.
    pub fn ratelimit_header(&self) -> HeaderValue {
        field(
            &self.policy,
            [("r", u64::from(self.remaining)), ("t", self.reset_secs)],
        )
    }

    /// The `RateLimit-Policy` field: `"<policy>";q=<quota>;w=<window_secs>`.
    pub fn policy_header(&self) -> HeaderValue {
        field(
            &self.policy,
            [("q", u64::from(self.quota)), ("w", self.window_secs)],
        )
    }

    /// The `Retry-After` delay in whole seconds: rounded up, and at least 1, so a
    /// client never retries at once into another refusal.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(whole_secs_at_least_one)
    }

    /// Sets `RateLimit`, `RateLimit-Policy` and, for a limited request, `Retry-After`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::HeaderMap;
    /// use tower_api_key::rate_limit::RateStatus;
    ///
    /// let status = RateStatus {
    ///     policy: "default".into(),
    ///     quota: 5,
    ///     window_secs: 60,
    ///     remaining: 0,
    ///     reset_secs: 1,
    ///     retry_after: Some(Duration::from_millis(1)),
    /// };
    /// let mut headers = HeaderMap::new();
    /// status.insert_headers(&mut headers);
    /// assert_eq!(headers["retry-after"], "1");
    /// assert_eq!(headers["ratelimit"], "\"default\";r=0;t=1");
    /// assert_eq!(headers["ratelimit-policy"], "\"default\";q=5;w=60");
    /// ```
    pub fn insert_headers(&self, headers: &mut HeaderMap) {
        headers.insert(RATELIMIT, self.ratelimit_header());
        headers.insert(RATELIMIT_POLICY, self.policy_header());
        if let Some(secs) = self.retry_after_secs() {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
    }
}

/// The state of an owner's quota when it refused a request.
///
/// ```
/// use tower_api_key::rate_limit::QuotaStatus;
///
/// let status = QuotaStatus {
///     policy: "daily",
///     limit: 1000,
///     used: 1000,
///     window_secs: 86_400,
///     reset_secs: 3600,
/// };
/// assert_eq!(status.remaining(), 0);
/// assert_eq!(status.ratelimit_header(), "\"daily\";r=0;t=3600");
/// assert_eq!(status.policy_header(), "\"daily\";q=1000;w=86400");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaStatus {
    /// `daily` or `monthly`.
    pub policy: &'static str,
    /// Units allowed per period.
    pub limit: u64,
    /// Units spent in the current period.
    pub used: u64,
    /// The length of the current period, in seconds (a month's varies).
    pub window_secs: u64,
    /// Whole seconds (rounded up, at least 1) until the next period starts.
    pub reset_secs: u64,
}

impl QuotaStatus {
    /// Units left in the current period.
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }

    /// The `RateLimit` field: `"<policy>";r=<remaining>;t=<reset_secs>`.
    pub fn ratelimit_header(&self) -> HeaderValue {
        header_value(format!(
            "\"{}\";r={};t={}",
            self.policy,
            self.remaining(),
            self.reset_secs
        ))
    }

    /// The `RateLimit-Policy` field: `"<policy>";q=<limit>;w=<window_secs>`.
    pub fn policy_header(&self) -> HeaderValue {
        header_value(format!(
            "\"{}\";q={};w={}",
            self.policy, self.limit, self.window_secs
        ))
    }

    /// Seconds until the quota resets: at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        self.reset_secs.max(1)
    }

    /// Sets `RateLimit` and `RateLimit-Policy` (not `Retry-After`: a quota refusal is
    /// not a 429 by default).
    pub fn insert_headers(&self, headers: &mut HeaderMap) {
        headers.insert(RATELIMIT, self.ratelimit_header());
        headers.insert(RATELIMIT_POLICY, self.policy_header());
    }
}

/// Rounds up to whole seconds, and never below 1.
pub(crate) fn whole_secs_at_least_one(d: Duration) -> u64 {
    whole_secs(d).max(1)
}

/// Rounds up to whole seconds.
pub(crate) fn whole_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn header_value(text: String) -> HeaderValue {
    // Policy names are checked to be `[A-Za-z0-9_.-]` when built, and the rest is
    // digits and punctuation, so this never fails; fall back to an empty value anyway.
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `"<policy>";a=1;b=2`, built without the `fmt` machinery (it runs per response).
fn field(policy: &str, params: [(&str, u64); 2]) -> HeaderValue {
    let mut out = String::with_capacity(policy.len() + 32);
    out.push('"');
    out.push_str(policy);
    out.push('"');
    for (name, value) in params {
        out.push(';');
        out.push_str(name);
        out.push('=');
        push_u64(&mut out, value);
    }
    header_value(out)
}

/// Appends the decimal digits of `n`.
fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(char::from(d));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limited(retry_after: Duration) -> RateStatus {
        RateStatus {
            policy: "dev".into(),
            quota: 5,
            window_secs: 60,
            remaining: 0,
            reset_secs: whole_secs_at_least_one(retry_after),
            retry_after: Some(retry_after),
        }
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        for (wait, secs) in [
            (Duration::ZERO, 1),
            (Duration::from_nanos(1), 1),
            (Duration::from_millis(999), 1),
            (Duration::from_secs(1), 1),
            (Duration::from_millis(1001), 2),
            (Duration::from_secs(12), 12),
            (Duration::from_nanos(11_999_999_999), 12),
        ] {
            assert_eq!(limited(wait).retry_after_secs(), Some(secs), "{wait:?}");
        }
    }

    #[test]
    fn headers_have_the_draft_syntax() {
        let status = limited(Duration::from_millis(11_500));
        assert_eq!(status.ratelimit_header(), "\"dev\";r=0;t=12");
        assert_eq!(status.policy_header(), "\"dev\";q=5;w=60");

        let mut headers = HeaderMap::new();
        status.insert_headers(&mut headers);
        assert_eq!(headers.len(), 3);
        assert_eq!(headers[RETRY_AFTER], "12");

        let allowed = RateStatus {
            retry_after: None,
            remaining: 4,
            ..status
        };
        let mut headers = HeaderMap::new();
        allowed.insert_headers(&mut headers);
        assert_eq!(headers.len(), 2);
        assert!(headers.get(RETRY_AFTER).is_none());
        assert_eq!(headers[RATELIMIT], "\"dev\";r=4;t=12");
    }

    #[test]
    fn quota_headers_and_remaining() {
        let status = QuotaStatus {
            policy: "monthly",
            limit: 10,
            used: 12,
            window_secs: 2_678_400,
            reset_secs: 0,
        };
        assert_eq!(status.remaining(), 0);
        assert_eq!(status.retry_after_secs(), 1);
        assert_eq!(status.ratelimit_header(), "\"monthly\";r=0;t=0");
        assert_eq!(status.policy_header(), "\"monthly\";q=10;w=2678400");
        let mut headers = HeaderMap::new();
        status.insert_headers(&mut headers);
        assert_eq!(headers.len(), 2);
    }

    #[test]
    fn outcomes() {
        let allowed = Decision::Allowed(RateStatus {
            retry_after: None,
            ..limited(Duration::ZERO)
        });
        assert!(allowed.is_allowed());
        assert_eq!(allowed.kind(), None);
        assert!(allowed.rate_limit_status().is_some());

        let limited = Decision::Limited(limited(Duration::from_millis(200)));
        assert_eq!(
            limited.kind(),
            Some(RejectionKind::RateLimited {
                retry_after: Duration::from_secs(1)
            })
        );

        let quota = Decision::QuotaExceeded(QuotaStatus {
            policy: "daily",
            limit: 1,
            used: 1,
            window_secs: 86_400,
            reset_secs: 5,
        });
        assert_eq!(quota.kind(), Some(RejectionKind::QuotaExceeded));
        assert_eq!(quota.kind().unwrap().status(), http::StatusCode::FORBIDDEN);
        assert!(quota.rate_limit_status().is_none());

        let too_big = Decision::CostExceedsBurst {
            policy: "dev".into(),
            cost: 10,
            burst: 5,
        };
        let outcome = too_big.kind().unwrap();
        assert_eq!(outcome.status(), http::StatusCode::BAD_REQUEST);
        assert!(!too_big.is_allowed());
    }
}
