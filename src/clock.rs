//! An injectable clock.
//!
//! Expiry, rotation grace, cache freshness and rate windows are all read from a
//! [`Clock`], so tests move time with a [`ManualClock`] instead of sleeping.
//!
//! ```
//! use std::time::Duration;
//! use tower_api_key::clock::{Clock, ManualClock};
//!
//! let clock = ManualClock::new(time::macros::datetime!(2026-01-01 0:00 UTC));
//! let before = clock.now();
//! clock.advance(Duration::from_secs(90));
//! assert_eq!(clock.now() - before, time::Duration::seconds(90));
//! ```

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// The current time, in UTC.
    fn now(&self) -> OffsetDateTime;

    /// The current time as nanoseconds since the Unix epoch (negative before it): the
    /// same instant as [`Clock::now`].
    ///
    /// The request path reads this rather than [`Clock::now`], because comparing two
    /// integers is much cheaper than building and comparing calendar dates. The
    /// default converts [`Clock::now`]; override it when the clock can answer
    /// directly (both clocks of this module do).
    ///
    /// ```
    /// use tower_api_key::clock::{Clock, ManualClock};
    ///
    /// let clock = ManualClock::default();
    /// assert_eq!(clock.now_unix_nanos(), clock.now().unix_timestamp_nanos());
    /// ```
    fn now_unix_nanos(&self) -> i128 {
        self.now().unix_timestamp_nanos()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> OffsetDateTime {
        (**self).now()
    }

    fn now_unix_nanos(&self) -> i128 {
        (**self).now_unix_nanos()
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn now_unix_nanos(&self) -> i128 {
        let nanos = |d: Duration| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX);
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(since) => nanos(since),
            Err(before) => -nanos(before.duration()),
        }
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Clone)]
pub struct ManualClock {
    nanos: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: OffsetDateTime) -> Self {
        Self {
            nanos: Arc::new(AtomicI64::new(to_nanos(start))),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        self.nanos.fetch_add(by, Ordering::SeqCst);
    }

    /// Sets the clock.
    pub fn set(&self, to: OffsetDateTime) {
        self.nanos.store(to_nanos(to), Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    /// A clock at 2026-01-01T00:00:00Z.
    fn default() -> Self {
        Self::new(time::macros::datetime!(2026-01-01 0:00 UTC))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        from_unix_nanos(self.now_unix_nanos())
    }

    fn now_unix_nanos(&self) -> i128 {
        i128::from(self.nanos.load(Ordering::SeqCst))
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ManualClock").field(&self.now()).finish()
    }
}

/// The instant `nanos` after the Unix epoch, saturating at the first and last
/// representable dates.
pub(crate) fn from_unix_nanos(nanos: i128) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or_else(|_| {
        if nanos < 0 {
            time::PrimitiveDateTime::MIN.assume_utc()
        } else {
            time::PrimitiveDateTime::MAX.assume_utc()
        }
    })
}

/// `t` rounded down to the whole microsecond, the precision the SQL stores keep: key
/// lifecycle times and audit times are cut to it everywhere, so a record or entry reads
/// back exactly as it was written, whatever the store.
pub(crate) fn whole_micros(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap_or(t)
}

fn to_nanos(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

/// A shared, type-erased clock.
pub(crate) type SharedClock = Arc<dyn Clock>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_reads_the_same_instant_both_ways() {
        let clock = SystemClock;
        let before = clock.now_unix_nanos();
        let date = clock.now().unix_timestamp_nanos();
        let after = clock.now_unix_nanos();
        assert!(before <= date && date <= after, "{before} {date} {after}");
        // Within a day of the date the system reports (the two readings are the same
        // clock; the bound only rules out a unit error).
        assert!(after - before < 86_400_000_000_000);
    }

    #[test]
    fn the_manual_clock_reads_the_same_instant_both_ways() {
        let clock = ManualClock::new(time::macros::datetime!(2030-06-01 12:00:00.123456789 UTC));
        assert_eq!(clock.now_unix_nanos(), clock.now().unix_timestamp_nanos());
        clock.advance(Duration::from_nanos(1));
        assert_eq!(clock.now_unix_nanos(), clock.now().unix_timestamp_nanos());
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        assert_eq!(shared.now_unix_nanos(), clock.now_unix_nanos());
        assert_eq!(shared.now(), clock.now());
    }

    #[test]
    fn out_of_range_instants_saturate() {
        assert_eq!(
            from_unix_nanos(i128::MAX),
            time::PrimitiveDateTime::MAX.assume_utc()
        );
        assert_eq!(
            from_unix_nanos(i128::MIN),
            time::PrimitiveDateTime::MIN.assume_utc()
        );
    }
}
