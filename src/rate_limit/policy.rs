//! Rate-limit and quota policies, and how keys are grouped into buckets.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use crate::error::ConfigError;

/// The longest a policy may take to refill from empty: 2^62 ns, about 146 years. It keeps
/// every instant the limiter computes inside `u64` nanoseconds since 1970.
const MAX_REFILL_NANOS: u128 = 1 << 62;

/// The longest policy name.
const MAX_NAME_LEN: usize = 64;

/// A named rate: `quota` requests per `window`, enforced with GCRA (a token bucket
/// without timers).
///
/// Units are spent smoothly: a `5/min` policy gives back one unit every 12 seconds, and
/// at most `burst` units (the quota, unless set with [`with_burst`](Self::with_burst))
/// can be spent at once.
///
/// The name is what the `RateLimit` and `RateLimit-Policy` response fields show, and
/// what [`KeyRecord::rate_limit_policy`](crate::KeyRecord::rate_limit_policy) refers
/// to.
///
/// ```
/// use std::time::Duration;
/// use tower_api_key::rate_limit::RatePolicy;
///
/// let policy = RatePolicy::new("dev", 5, Duration::from_secs(60))?.with_burst(2)?;
/// assert_eq!(policy.name(), "dev");
/// assert_eq!(policy.quota(), 5);
/// assert_eq!(policy.window(), Duration::from_secs(60));
/// assert_eq!(policy.burst(), 2);
///
/// // The command-line syntax names the policy `default`.
/// let parsed: RatePolicy = "100/s".parse()?;
/// assert_eq!((parsed.name(), parsed.quota()), ("default", 100));
/// # Ok::<(), tower_api_key::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RatePolicy {
    name: Arc<str>,
    quota: u32,
    window: Duration,
    burst: u32,
    gcra: governor::Quota,
    /// `rl:<name>:<quota>:<window>:<burst>:`, the start of every bucket id of this
    /// policy, built once instead of per request.
    bucket_prefix: Arc<str>,
}

impl RatePolicy {
    /// `quota` requests per `window`, with a burst of `quota`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the policy when the name is not 1 to 64 characters of
    /// `[A-Za-z0-9_.-]`, the quota is zero, the window is zero or not a whole number of
    /// seconds (the `RateLimit-Policy` field has no sub-second windows), or the rate is
    /// faster than one unit per nanosecond.
    pub fn new(name: &str, quota: u32, window: Duration) -> Result<Self, ConfigError> {
        validate_name(name)?;
        if quota == 0 {
            return Err(ConfigError::new(format!(
                "rate-limit policy {name:?}: the quota must be at least 1 request per window"
            )));
        }
        if window.is_zero() || window.subsec_nanos() != 0 {
            return Err(ConfigError::new(format!(
                "rate-limit policy {name:?}: the window must be a non-zero whole number of \
                 seconds, got {window:?}"
            )));
        }
        Self::build(Arc::from(name), quota, window, quota)
    }

    /// Sets how many units may be spent at once, from a full bucket.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the policy when `burst` is zero, or so large that the
    /// bucket would take more than a century to refill.
    pub fn with_burst(self, burst: u32) -> Result<Self, ConfigError> {
        Self::build(self.name, self.quota, self.window, burst)
    }

    fn build(
        name: Arc<str>,
        quota: u32,
        window: Duration,
        burst: u32,
    ) -> Result<Self, ConfigError> {
        let Some(max_burst) = NonZeroU32::new(burst) else {
            return Err(ConfigError::new(format!(
                "rate-limit policy {name:?}: the burst must be at least 1"
            )));
        };
        let interval = window / quota;
        if window.as_nanos() > MAX_REFILL_NANOS
            || interval.as_nanos() * u128::from(burst) > MAX_REFILL_NANOS
        {
            return Err(ConfigError::new(format!(
                "rate-limit policy {name:?}: {quota} per {window:?} with a burst of {burst} \
                 takes more than a century to refill"
            )));
        }
        let Some(gcra) = governor::Quota::with_period(interval) else {
            return Err(ConfigError::new(format!(
                "rate-limit policy {name:?}: {quota} per {window:?} is faster than one \
                 request per nanosecond"
            )));
        };
        let bucket_prefix = format!("rl:{name}:{quota}:{}:{burst}:", window.as_secs()).into();
        Ok(Self {
            name,
            quota,
            window,
            burst,
            gcra: gcra.allow_burst(max_burst),
            bucket_prefix,
        })
    }

    pub(crate) fn bucket_prefix(&self) -> &str {
        &self.bucket_prefix
    }

    /// [`bucket_prefix`](Self::bucket_prefix), shared.
    pub(crate) fn shared_bucket_prefix(&self) -> &Arc<str> {
        &self.bucket_prefix
    }

    /// The name shown in the `RateLimit` fields.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Requests per window.
    pub fn quota(&self) -> u32 {
        self.quota
    }

    /// The window the quota is counted over.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The most units that can be spent at once.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// How long a spent unit takes to come back: `window / quota`.
    pub fn interval(&self) -> Duration {
        self.gcra.replenish_interval()
    }

    /// How long an empty bucket takes to fill: `interval * burst`.
    pub fn refill_time(&self) -> Duration {
        self.interval() * self.burst
    }

    pub(crate) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    pub(crate) fn gcra(&self) -> governor::Quota {
        self.gcra
    }
}

impl fmt::Debug for RatePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RatePolicy")
            .field("name", &self.name)
            .field("quota", &self.quota)
            .field("window", &self.window)
            .field("burst", &self.burst)
            .finish()
    }
}

/// Parses the command-line syntax `<count>/<unit>` into a policy named `default`.
///
/// Units: `s` (`sec`, `second`), `min` (`minute`), `h` (`hr`, `hour`) and `d` (`day`),
/// in any case. The count is a positive whole number.
///
/// ```
/// use std::time::Duration;
/// use tower_api_key::rate_limit::RatePolicy;
///
/// let policy: RatePolicy = "5/min".parse()?;
/// assert_eq!(policy.window(), Duration::from_secs(60));
///
/// let err = "10/fortnight".parse::<RatePolicy>().unwrap_err();
/// assert!(err.message().contains("unknown unit \"fortnight\""));
/// # Ok::<(), tower_api_key::ConfigError>(())
/// ```
impl FromStr for RatePolicy {
    type Err = ConfigError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = |why: &str| ConfigError::new(format!("invalid rate limit {input:?}: {why}"));
        let Some((count, unit)) = input.trim().split_once('/') else {
            return Err(invalid(
                "expected <count>/<unit>, such as 100/s, 5/min, 1000/h or 10000/day",
            ));
        };
        let count = count.trim();
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("the count must be a positive whole number"));
        }
        let count: u32 = count
            .parse()
            .map_err(|_| invalid("the count is too large"))?;
        if count == 0 {
            return Err(invalid("the count must be at least 1"));
        }
        let unit = unit.trim();
        let seconds = match unit.to_ascii_lowercase().as_str() {
            "s" | "sec" | "second" => 1,
            "min" | "minute" => 60,
            "h" | "hr" | "hour" => 3600,
            "d" | "day" => 86_400,
            _ => {
                return Err(invalid(&format!(
                    "unknown unit {unit:?} (use s, min, h or day)"
                )))
            }
        };
        Self::new("default", count, Duration::from_secs(seconds)).map_err(|e| invalid(e.message()))
    }
}

fn validate_name(name: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(ConfigError::new(format!(
            "invalid rate-limit policy name {name:?}: expected 1 to {MAX_NAME_LEN} characters \
             of [A-Za-z0-9_.-]"
        )))
    }
}

/// Which keys share a rate-limit bucket.
///
/// Whatever the partition, keys under different policies never share a bucket.
///
/// ```
/// use tower_api_key::rate_limit::Partition;
///
/// assert_eq!(Partition::default(), Partition::Family);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Partition {
    /// Every key has its own bucket, and a rotated key starts with a full one.
    Key,
    /// The keys of one rotation family (a key and the keys that replaced it, which
    /// share [`KeyRecord::family`](crate::KeyRecord::family)) share a bucket, so a
    /// rotation neither resets nor doubles the limit. The default.
    #[default]
    Family,
    /// All keys of one owner (organization or user) share a bucket.
    Owner,
}

/// The calendar period of a [`QuotaPolicy`], in UTC.
///
/// ```
/// use time::macros::datetime;
/// use tower_api_key::rate_limit::QuotaPeriod;
///
/// let (start, end) = QuotaPeriod::Month.bounds(datetime!(2026-02-14 9:30 UTC));
/// assert_eq!(start, datetime!(2026-02-01 0:00 UTC));
/// assert_eq!(end, datetime!(2026-03-01 0:00 UTC));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaPeriod {
    /// A calendar day, from 00:00:00 UTC.
    Day,
    /// A calendar month, from the first day at 00:00:00 UTC.
    Month,
}

impl QuotaPeriod {
    /// The start (inclusive) and end (exclusive) of the period holding `now`.
    ///
    /// A reading whose UTC instant lies past either end of the calendar (such as
    /// 9999-12-31 23:00 at -05:00) counts as that end.
    pub fn bounds(self, now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
        let far = PrimitiveDateTime::MAX.assume_utc();
        let now = now
            .checked_to_offset(UtcOffset::UTC)
            .unwrap_or(if now > far {
                far
            } else {
                PrimitiveDateTime::MIN.assume_utc()
            });
        match self {
            Self::Day => {
                let start = now.replace_time(Time::MIDNIGHT);
                (start, start.checked_add(time::Duration::DAY).unwrap_or(far))
            }
            Self::Month => {
                let first = now.replace_time(Time::MIDNIGHT).replace_day(1);
                let start = first.unwrap_or(now);
                let (year, month) = match now.month() {
                    time::Month::December => (now.year() + 1, time::Month::January),
                    month => (now.year(), month.next()),
                };
                let end = Date::from_calendar_date(year, month, 1)
                    .map_or(far, |date| date.midnight().assume_utc());
                (start, end)
            }
        }
    }

    /// `daily` or `monthly`: the policy name in the `RateLimit` fields.
    pub fn name(self) -> &'static str {
        match self {
            Self::Day => "daily",
            Self::Month => "monthly",
        }
    }
}

/// A cap on the units an owner may spend per calendar day or month (UTC), across all of
/// its keys.
///
/// Quotas count the same units as rate limits: a request of cost 3 spends 3.
///
/// ```
/// use tower_api_key::rate_limit::{QuotaPeriod, QuotaPolicy};
///
/// let quota = QuotaPolicy::daily(10_000)?;
/// assert_eq!(quota.limit(), 10_000);
/// assert_eq!(quota.period(), QuotaPeriod::Day);
/// assert_eq!(quota.name(), "daily");
/// assert!(QuotaPolicy::monthly(0).is_err());
/// # Ok::<(), tower_api_key::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuotaPolicy {
    limit: u64,
    period: QuotaPeriod,
}

impl QuotaPolicy {
    /// `limit` units per period.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `limit` is zero.
    pub fn new(limit: u64, period: QuotaPeriod) -> Result<Self, ConfigError> {
        if limit == 0 {
            return Err(ConfigError::new(format!(
                "{} quota: the limit must be at least 1",
                period.name()
            )));
        }
        Ok(Self { limit, period })
    }

    /// `limit` units per UTC calendar day.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `limit` is zero.
    pub fn daily(limit: u64) -> Result<Self, ConfigError> {
        Self::new(limit, QuotaPeriod::Day)
    }

    /// `limit` units per UTC calendar month.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `limit` is zero.
    pub fn monthly(limit: u64) -> Result<Self, ConfigError> {
        Self::new(limit, QuotaPeriod::Month)
    }

    /// Units per period.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The period.
    pub fn period(&self) -> QuotaPeriod {
        self.period
    }

    /// `daily` or `monthly`.
    pub fn name(&self) -> &'static str {
        self.period.name()
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn parse_err(input: &str) -> String {
        input
            .parse::<RatePolicy>()
            .expect_err(input)
            .message()
            .to_owned()
    }

    #[test]
    fn parses_every_unit() {
        for (input, quota, secs) in [
            ("100/s", 100, 1),
            ("5/min", 5, 60),
            ("1000/h", 1000, 3600),
            ("10000/day", 10_000, 86_400),
            (" 7 / Hour ", 7, 3600),
            ("3/d", 3, 86_400),
        ] {
            let policy: RatePolicy = input.parse().unwrap();
            assert_eq!(policy.name(), "default", "{input}");
            assert_eq!(policy.quota(), quota, "{input}");
            assert_eq!(policy.window(), Duration::from_secs(secs), "{input}");
            assert_eq!(policy.burst(), quota, "{input}");
        }
    }

    #[test]
    fn malformed_text_is_refused_with_a_reason() {
        assert_eq!(
            parse_err("0/s"),
            "invalid rate limit \"0/s\": the count must be at least 1"
        );
        assert_eq!(
            parse_err("abc"),
            "invalid rate limit \"abc\": expected <count>/<unit>, such as 100/s, 5/min, \
             1000/h or 10000/day"
        );
        assert_eq!(
            parse_err("10/fortnight"),
            "invalid rate limit \"10/fortnight\": unknown unit \"fortnight\" (use s, min, h or day)"
        );
        assert_eq!(
            parse_err("-1/s"),
            "invalid rate limit \"-1/s\": the count must be a positive whole number"
        );
        assert!(parse_err("+1/s").contains("positive whole number"));
        assert!(parse_err("/s").contains("positive whole number"));
        assert!(parse_err("1.5/s").contains("positive whole number"));
        assert!(parse_err("99999999999/s").contains("too large"));
        assert!(parse_err("5/").contains("unknown unit"));
    }

    #[test]
    fn zero_quota_window_or_burst_is_refused_naming_the_policy() {
        let err = RatePolicy::new("dev", 0, Duration::from_secs(60)).unwrap_err();
        assert!(
            err.message().starts_with("rate-limit policy \"dev\""),
            "{err}"
        );
        assert!(err.message().contains("quota"), "{err}");

        let err = RatePolicy::new("live", 5, Duration::ZERO).unwrap_err();
        assert!(
            err.message().starts_with("rate-limit policy \"live\""),
            "{err}"
        );
        assert!(err.message().contains("window"), "{err}");

        let err = RatePolicy::new("x", 5, Duration::from_millis(1500)).unwrap_err();
        assert!(err.message().contains("whole number of seconds"), "{err}");

        let policy = RatePolicy::new("x", 5, Duration::from_secs(1)).unwrap();
        let err = policy.with_burst(0).unwrap_err();
        assert!(err.message().contains("burst must be at least 1"), "{err}");
    }

    #[test]
    fn absurd_rates_are_refused() {
        let too_fast = RatePolicy::new("fast", u32::MAX, Duration::from_secs(1));
        assert!(too_fast.unwrap_err().message().contains("nanosecond"));
        let too_slow = RatePolicy::new("slow", 1, Duration::from_secs(86_400 * 365))
            .unwrap()
            .with_burst(1000);
        assert!(too_slow.unwrap_err().message().contains("century"));
    }

    #[test]
    fn names_must_be_header_safe() {
        for bad in [
            "",
            "with space",
            "quote\"d",
            "back\\slash",
            "é",
            &"x".repeat(65),
        ] {
            assert!(
                RatePolicy::new(bad, 1, Duration::from_secs(1)).is_err(),
                "{bad:?}"
            );
        }
        assert!(RatePolicy::new("tier-1.free_v2", 1, Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn interval_and_refill_time() {
        let policy = RatePolicy::new("p", 5, Duration::from_secs(60)).unwrap();
        assert_eq!(policy.interval(), Duration::from_secs(12));
        assert_eq!(policy.refill_time(), Duration::from_secs(60));
        let policy = policy.with_burst(2).unwrap();
        assert_eq!(policy.refill_time(), Duration::from_secs(24));
        assert_eq!(policy.quota(), 5);
    }

    #[test]
    fn day_bounds_are_utc_midnights() {
        let (start, end) = QuotaPeriod::Day.bounds(datetime!(2026-03-10 23:59:59 UTC));
        assert_eq!(start, datetime!(2026-03-10 0:00 UTC));
        assert_eq!(end, datetime!(2026-03-11 0:00 UTC));
        // An offset clock reading is converted to UTC first.
        let (start, _) = QuotaPeriod::Day.bounds(datetime!(2026-03-11 01:00 +02:00));
        assert_eq!(start, datetime!(2026-03-10 0:00 UTC));
    }

    /// Found by the property tests: converting such a reading to UTC panicked.
    #[test]
    fn bounds_past_the_ends_of_the_calendar_are_clamped() {
        let far = PrimitiveDateTime::MAX.assume_utc();
        let late = datetime!(9999-12-31 23:00 -05:00);
        for period in [QuotaPeriod::Day, QuotaPeriod::Month] {
            let (start, end) = period.bounds(late);
            assert!(start <= far && start <= late, "{period:?}");
            assert_eq!(end, far, "{period:?}");
        }
        let early = datetime!(-9999-01-01 00:30 +01:00);
        let (start, end) = QuotaPeriod::Day.bounds(early);
        assert_eq!(start, PrimitiveDateTime::MIN.assume_utc());
        assert_eq!(end, datetime!(-9999-01-02 0:00 UTC));
    }

    #[test]
    fn month_bounds_roll_over_the_year() {
        let (start, end) = QuotaPeriod::Month.bounds(datetime!(2026-12-31 12:00 UTC));
        assert_eq!(start, datetime!(2026-12-01 0:00 UTC));
        assert_eq!(end, datetime!(2027-01-01 0:00 UTC));
        let (start, end) = QuotaPeriod::Month.bounds(datetime!(2028-02-29 0:00 UTC));
        assert_eq!(start, datetime!(2028-02-01 0:00 UTC));
        assert_eq!(end, datetime!(2028-03-01 0:00 UTC));
    }
}
