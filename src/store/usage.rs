//! What the stores keep of usage per key: verifications counted by key, hour and
//! outcome (see [`Usage`](crate::usage::Usage) for how they are counted).

use serde::Serialize;
use time::OffsetDateTime;

use crate::key::KeyId;

/// Seconds in an hour: buckets start on whole hours since the Unix epoch.
pub(crate) const HOUR_SECONDS: i64 = 3600;

/// How a verified request ended, as far as the front door decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UsageOutcome {
    /// Authenticated and let through every guard and limit (what the handler answered
    /// is the application's business).
    Admitted,
    /// Refused for missing scopes (403).
    RefusedScope,
    /// Refused by the rate limit (429).
    RefusedRateLimit,
    /// Refused by the quota.
    RefusedQuota,
}

impl UsageOutcome {
    /// Every outcome, in the order of [`UsageCounts`]'s fields.
    pub const ALL: [Self; 4] = [
        Self::Admitted,
        Self::RefusedScope,
        Self::RefusedRateLimit,
        Self::RefusedQuota,
    ];

    pub(crate) fn index(self) -> usize {
        match self {
            Self::Admitted => 0,
            Self::RefusedScope => 1,
            Self::RefusedRateLimit => 2,
            Self::RefusedQuota => 3,
        }
    }
}

/// Verifications of one key in one hour, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct UsageCounts {
    /// Let through.
    pub admitted: u64,
    /// Refused for missing scopes.
    pub refused_scope: u64,
    /// Refused by the rate limit.
    pub refused_rate_limit: u64,
    /// Refused by the quota.
    pub refused_quota: u64,
}

impl UsageCounts {
    /// The count of `outcome`.
    pub fn get(&self, outcome: UsageOutcome) -> u64 {
        self.as_array()[outcome.index()]
    }

    /// Every verification, whatever its outcome.
    pub fn total(&self) -> u64 {
        self.as_array()
            .iter()
            .fold(0, |sum, n| sum.saturating_add(*n))
    }

    /// The counts in the order of [`UsageOutcome::ALL`].
    pub(crate) fn as_array(&self) -> [u64; 4] {
        [
            self.admitted,
            self.refused_scope,
            self.refused_rate_limit,
            self.refused_quota,
        ]
    }

    pub(crate) fn from_array(
        [admitted, refused_scope, refused_rate_limit, refused_quota]: [u64; 4],
    ) -> Self {
        Self {
            admitted,
            refused_scope,
            refused_rate_limit,
            refused_quota,
        }
    }

    /// Adds `other`'s counts to these (saturating).
    pub fn add(&mut self, other: &Self) {
        let (mine, theirs) = (self.as_array(), other.as_array());
        *self = Self::from_array(std::array::from_fn(|i| mine[i].saturating_add(theirs[i])));
    }

    /// Whether every count is zero.
    pub fn is_empty(&self) -> bool {
        self.as_array() == [0; 4]
    }
}

/// One key's verifications in one hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct UsageBucket {
    /// The key.
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub key_id: KeyId,
    /// The start of the hour (UTC).
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "utoipa", schema(value_type = String, format = DateTime))]
    pub hour: OffsetDateTime,
    /// The verifications in that hour, by outcome.
    #[serde(flatten)]
    pub counts: UsageCounts,
}

impl UsageBucket {
    /// The bucket of `key_id` for the hour `hour` (seconds since the Unix epoch of the
    /// hour's start).
    pub(crate) fn at_hour(key_id: KeyId, hour: i64, counts: UsageCounts) -> Self {
        Self {
            key_id,
            hour: hour_start(hour),
            counts,
        }
    }

    /// The hour as a number of hours since the Unix epoch.
    pub(crate) fn hour_number(&self) -> i64 {
        self.hour.unix_timestamp().div_euclid(HOUR_SECONDS)
    }
}

/// The start of the hour number `hour` (hours since the Unix epoch), clamped to the
/// dates `time` can represent.
pub(crate) fn hour_start(hour: i64) -> OffsetDateTime {
    crate::clock::from_unix_nanos(i128::from(hour) * i128::from(HOUR_SECONDS) * 1_000_000_000)
}

/// The first hour number whose start is at or after `at`: a range of instants
/// `[from, to)` holds the buckets of hours `first_hour_from(from)..first_hour_from(to)`.
pub(crate) fn first_hour_from(at: OffsetDateTime) -> i64 {
    let hour = hour_of(at);
    if hour_start(hour) < at {
        hour.saturating_add(1)
    } else {
        hour
    }
}

/// The hour numbers whose buckets a range of instants `[from, to)` holds; `None` when
/// it holds none.
pub(crate) fn hours_in(from: OffsetDateTime, to: OffsetDateTime) -> Option<(i64, i64)> {
    let (from, to) = (first_hour_from(from), first_hour_from(to));
    (from < to).then_some((from, to))
}

/// The hour number (hours since the Unix epoch) of `at`.
pub(crate) fn hour_of(at: OffsetDateTime) -> i64 {
    at.unix_timestamp().div_euclid(HOUR_SECONDS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_total_and_index_agree() {
        let mut counts = UsageCounts::from_array([1, 2, 3, 4]);
        for (i, outcome) in UsageOutcome::ALL.into_iter().enumerate() {
            assert_eq!(outcome.index(), i);
            assert_eq!(counts.get(outcome), i as u64 + 1);
        }
        counts.add(&UsageCounts::from_array([u64::MAX, 0, 0, 1]));
        assert_eq!(counts.as_array(), [u64::MAX, 2, 3, 5]);
        assert_eq!(counts.total(), u64::MAX);
        assert!(UsageCounts::default().is_empty());
    }

    #[test]
    fn hours_start_on_the_hour_before_and_after_1970() {
        let at = OffsetDateTime::from_unix_timestamp(7_199).unwrap();
        assert_eq!(hour_of(at), 1);
        assert_eq!(
            hour_of(OffsetDateTime::from_unix_timestamp(-1).unwrap()),
            -1
        );
        let bucket = UsageBucket::at_hour(KeyId::new("k").unwrap(), 1, UsageCounts::default());
        assert_eq!(bucket.hour.unix_timestamp(), 3600);
        assert_eq!(bucket.hour_number(), 1);
    }
}
