//! The GCRA arithmetic every backend shares, so that they report alike: a bucket's
//! state in `RateLimit` terms, a quota's refusal, and the time conversions they count
//! in.

use std::time::Duration;

use time::OffsetDateTime;

use super::backend::QuotaRequest;
use super::decision::{whole_secs, whole_secs_at_least_one, QuotaStatus, RateStatus};
use super::RatePolicy;

/// A GCRA bucket's state in `RateLimit` terms: `interval` is the policy's emission
/// interval, `tat` the theoretical arrival time, all in nanoseconds since 1970.
pub(super) fn bucket_status(
    policy: &RatePolicy,
    interval: u64,
    now: u64,
    tat: Option<u64>,
    retry_after: Option<Duration>,
) -> RateStatus {
    let interval = interval.max(1);
    let burst = u64::from(policy.burst());
    // As governor's `StateSnapshot::remaining_burst_capacity`.
    let (remaining, full_in) = match tat {
        None => (burst, 0),
        Some(tat) => {
            let room = (now + interval * burst).saturating_sub(tat);
            ((room / interval).min(burst), tat.saturating_sub(now))
        }
    };
    let reset_secs = match retry_after {
        Some(wait) => whole_secs_at_least_one(wait),
        None => whole_secs(Duration::from_nanos(full_in)),
    };
    RateStatus {
        policy: policy.shared_name().clone(),
        quota: policy.quota(),
        window_secs: policy.window().as_secs(),
        remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        reset_secs,
        retry_after,
    }
}

/// The refusal of a quota with `used` units spent in its current period.
pub(super) fn quota_status(quota: &QuotaRequest, used: u64, now: OffsetDateTime) -> QuotaStatus {
    QuotaStatus {
        policy: quota.policy.name(),
        limit: quota.policy.limit(),
        used,
        window_secs: whole_secs(duration_between(quota.period_start, quota.period_end)),
        reset_secs: whole_secs_at_least_one(duration_between(now, quota.period_end)),
    }
}

/// `t` in nanoseconds since 1970; 0 before it.
pub(super) fn nanos_since_epoch(t: OffsetDateTime) -> u64 {
    u64::try_from(t.unix_timestamp_nanos()).unwrap_or(0)
}

/// `d` in nanoseconds, saturating.
pub(super) fn nanos_u64(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// From `from` to `to`; zero when `to` is earlier.
pub(super) fn duration_between(from: OffsetDateTime, to: OffsetDateTime) -> Duration {
    Duration::try_from(to - from).unwrap_or(Duration::ZERO)
}
