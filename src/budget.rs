//! The per-client budget of store lookups that end in "unknown key".
//!
//! **Tagged keys never reach it.** A native key minted under a tag secret carries a
//! keyed tag ([`TagKey`](crate::key::TagKey)) that is checked on a cache miss before
//! any lookup: a forged one is refused (401) without a lookup and without a charge, and
//! a genuine one is looked up without a charge. So forged tagged keys cost the store
//! nothing, from one address or from ten thousand, and a valid tagged key is never
//! refused because someone else at its address sent garbage: not after a restart, not
//! on an instance that has never seen it.
//!
//! The budget is for what a tag cannot vouch for: untagged native keys (minted before
//! tags, or for a store with no tag secret) and imported keys (looked up by digest).
//! Anyone can mint well-formed ones (the checksum is public); each distinct one misses
//! the cache and costs a store lookup. The budget bounds that cost per client (see
//! [`ClientIp`](crate::client::ClientIp)): past it, further uncached keys from the
//! client are answered 429 with `Retry-After`, without a lookup. What does not count:
//!
//! - malformed keys and checksum failures, which never reach the cache or the store;
//! - keys answered from the cache (a known key keeps working for the client, whatever
//!   its budget says), and lookups of keys this instance's store has found a record
//!   for (a 64-bit fingerprint per key is remembered, through invalidations of the
//!   cache); this memory lives in one process, so after a restart an untagged key is
//!   charged until it is found once: rotate untagged keys (the successor is tagged),
//!   then refuse untagged native keys altogether
//!   ([`KeyVerifier::refusing_untagged_keys`](crate::parts::KeyVerifier::refusing_untagged_keys));
//! - lookups that found the key (the secret matched) or failed (a store outage).
//!
//! The exemption for known ids has a bounded cost of its own: someone who knows K real
//! key ids (ids are public: they appear in key lists and logs) can cause at most K
//! lookups per cache TTL beyond the budget, since each such lookup caches the record
//! and forged secrets for it are then refused from the cache.
//!
//! Failures are counted per client, never per key id: knowing a key's id does not let
//! anyone lock its owner out.
//!
//! ```
//! use std::time::Duration;
//! use tower_api_key::budget::UnknownKeyBudget;
//!
//! let budget: UnknownKeyBudget = "100/min".parse()?;
//! assert_eq!(budget, UnknownKeyBudget::new(100, Duration::from_secs(60))?);
//! assert_eq!(budget, UnknownKeyBudget::default());
//! # Ok::<(), tower_api_key::ConfigError>(())
//! ```

use std::collections::HashSet;
use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use moka::policy::EvictionPolicy;

use crate::client::partition;
use crate::error::ConfigError;

/// How many lookups ending in "unknown key" a client may cause per period, as a GCRA
/// bucket: up to `lookups` at once, then one every `per / lookups`. The default is
/// 100 per minute, for at most 100,000 clients tracked at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownKeyBudget {
    lookups: u32,
    per: Duration,
    max_clients: u64,
}

impl UnknownKeyBudget {
    /// `lookups` per `per`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `lookups` is zero or `per` is not between one second and
    /// one day.
    pub fn new(lookups: u32, per: Duration) -> Result<Self, ConfigError> {
        if lookups == 0 {
            return Err(ConfigError::new(
                "an unknown-key budget of zero would refuse every new key",
            ));
        }
        if per < Duration::from_secs(1) || per > Duration::from_secs(86_400) {
            return Err(ConfigError::new(format!(
                "unknown-key budget period {per:?} must be between 1 s and one day"
            )));
        }
        Ok(Self {
            lookups,
            per,
            max_clients: 100_000,
        })
    }

    /// The most clients tracked at once (default 100,000). Past it the least recently
    /// seen client's state is dropped, which gives it a fresh budget: size it above the
    /// number of clients that send unknown keys at once.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `clients` is zero.
    pub fn with_max_clients(mut self, clients: u64) -> Result<Self, ConfigError> {
        if clients == 0 {
            return Err(ConfigError::new(
                "the unknown-key budget needs max_clients > 0",
            ));
        }
        self.max_clients = clients;
        Ok(self)
    }

    /// The lookups allowed per period.
    pub fn lookups(&self) -> u32 {
        self.lookups
    }

    /// The period.
    pub fn per(&self) -> Duration {
        self.per
    }
}

impl Default for UnknownKeyBudget {
    /// 100 per minute.
    fn default() -> Self {
        Self {
            lookups: 100,
            per: Duration::from_secs(60),
            max_clients: 100_000,
        }
    }
}

impl FromStr for UnknownKeyBudget {
    type Err = ConfigError;

    /// `<count>/<unit>`, the unit one of `s`, `min`, `h` or `day` (`100/min`).
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid =
            |why: &str| ConfigError::new(format!("invalid unknown-key budget {input:?}: {why}"));
        let (count, unit) = input
            .trim()
            .split_once('/')
            .ok_or_else(|| invalid("expected <count>/<unit>, such as 100/min"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| invalid("the count must be a positive whole number"))?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => 1,
            "min" | "minute" => 60,
            "h" | "hour" => 3_600,
            "d" | "day" => 86_400,
            _ => return Err(invalid("the unit must be s, min, h or day")),
        };
        Self::new(count, Duration::from_secs(per))
    }
}

/// The text [`FromStr`] reads (`100/min`) when the period is a second, a minute, an
/// hour or a day, so every parsed budget is written back as it can be parsed; any other
/// period in whole seconds (`100/90s`).
impl fmt::Display for UnknownKeyBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match (self.per.as_secs(), self.per.subsec_nanos()) {
            (1, 0) => "s",
            (60, 0) => "min",
            (3_600, 0) => "h",
            (86_400, 0) => "day",
            (secs, _) => return write!(f, "{}/{secs}s", self.lookups),
        };
        write!(f, "{}/{unit}", self.lookups)
    }
}

/// The keys the store has found: a lookup for one of them refreshes a real key (its
/// owner's request) rather than probing, so the budget does not apply to it.
///
/// Policy, not caching: kept here as 64-bit fingerprints (about 10 to 20 bytes a key,
/// at most [`KnownKeys::MAX`]), through every invalidation of the cache, and dropped
/// when the store no longer finds the key. Never used to accept or refuse a key. It
/// lives in one process, so after a restart, or on an instance that never looked a key
/// up, an untagged key is charged like any other until found once: tagged keys (see
/// [`TagKey`](crate::key::TagKey)) never are, which is what keeps a valid key from
/// sharing a fate with a flood from its address.
pub(crate) struct KnownKeys {
    fingerprints: Mutex<HashSet<u64, ahash::RandomState>>,
    hasher: ahash::RandomState,
}

impl KnownKeys {
    /// The most keys remembered.
    pub(crate) const MAX: usize = 1_000_000;

    fn new() -> Self {
        Self {
            fingerprints: Mutex::new(HashSet::default()),
            hasher: ahash::RandomState::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashSet<u64, ahash::RandomState>> {
        // Inserting into or removing from a set cannot leave it half-updated.
        self.fingerprints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the store has found `key`.
    pub(crate) fn contains<K: Hash>(&self, key: &K) -> bool {
        self.lock().contains(&self.hasher.hash_one(key))
    }

    /// Remembers that the store found `key`.
    pub(crate) fn remember<K: Hash>(&self, key: &K) {
        let fingerprint = self.hasher.hash_one(key);
        let mut known = self.lock();
        if known.len() < Self::MAX {
            known.insert(fingerprint);
        }
    }

    /// Forgets `key`: the store no longer finds it.
    pub(crate) fn forget<K: Hash>(&self, key: &K) {
        let fingerprint = self.hasher.hash_one(key);
        self.lock().remove(&fingerprint);
    }
}

/// The budgets of every client, shared by the clones of an authenticator.
pub(crate) struct Budgets {
    /// The keys whose lookups are not charged.
    pub(crate) known: KnownKeys,
    /// Nanoseconds between two lookups once the burst is spent.
    interval: i64,
    /// The whole period, in nanoseconds: how far ahead of now a client's theoretical
    /// arrival time may run.
    tolerance: i64,
    /// Each client's theoretical arrival time (GCRA), in nanoseconds since the Unix
    /// epoch on the authenticator's clock. `None` is every request whose client could
    /// not be told: they share one budget.
    clients: moka::sync::Cache<Option<IpAddr>, Arc<AtomicI64>, ahash::RandomState>,
}

/// One lookup charged to a client's budget. Dropping it gives the lookup back;
/// [`Reservation::keep`] keeps it charged, when the lookup ended in "unknown key".
pub(crate) struct Reservation {
    state: Arc<AtomicI64>,
    /// What to give back on drop: the interval, or zero once kept.
    refund: i64,
}

impl Reservation {
    pub(crate) fn keep(mut self) {
        self.refund = 0;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.refund != 0 {
            self.state.fetch_sub(self.refund, Ordering::AcqRel);
        }
    }
}

impl Budgets {
    pub(crate) fn new(budget: UnknownKeyBudget) -> Self {
        let tolerance = i64::try_from(budget.per.as_nanos()).unwrap_or(i64::MAX);
        let interval = (tolerance / i64::from(budget.lookups)).max(1);
        Self {
            known: KnownKeys::new(),
            interval,
            tolerance,
            // A state idle for the whole period is back to a full budget, so dropping
            // it then loses nothing. Least-recently-used, so a flooding client is never
            // the one evicted in favour of a newcomer.
            clients: moka::sync::Cache::builder()
                .max_capacity(budget.max_clients)
                .time_to_idle(budget.per + Duration::from_secs(1))
                .eviction_policy(EvictionPolicy::lru())
                .build_with_hasher(ahash::RandomState::new()),
        }
    }

    /// Charges one lookup to `client` at `now` (nanoseconds since the Unix epoch), or
    /// says how long until one is allowed.
    pub(crate) fn reserve(
        &self,
        client: Option<IpAddr>,
        now: i128,
    ) -> Result<Reservation, Duration> {
        let now = i64::try_from(now).unwrap_or(if now < 0 { i64::MIN } else { i64::MAX });
        let state = self
            .clients
            .get_with(client.map(partition), || Arc::new(AtomicI64::new(i64::MIN)));
        let mut tat = state.load(Ordering::Acquire);
        loop {
            let next = tat.max(now).saturating_add(self.interval);
            let ahead = next.saturating_sub(now);
            if ahead > self.tolerance {
                let wait = u64::try_from(ahead - self.tolerance).unwrap_or(0);
                return Err(Duration::from_nanos(wait));
            }
            match state.compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    return Ok(Reservation {
                        state,
                        refund: self.interval,
                    })
                }
                Err(current) => tat = current,
            }
        }
    }
}

impl fmt::Debug for Budgets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budgets")
            .field("interval_nanos", &self.interval)
            .field("tolerance_nanos", &self.tolerance)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i128 = 1_000_000_000;

    #[test]
    fn parses_and_validates() {
        assert_eq!(
            "5/s".parse::<UnknownKeyBudget>().unwrap(),
            UnknownKeyBudget::new(5, Duration::from_secs(1)).unwrap()
        );
        for bad in ["", "0/min", "x/min", "5/week", "5", "-1/s"] {
            assert!(bad.parse::<UnknownKeyBudget>().is_err(), "{bad}");
        }
        assert!(UnknownKeyBudget::new(1, Duration::from_millis(10)).is_err());
        assert!(UnknownKeyBudget::default().with_max_clients(0).is_err());
    }

    #[test]
    fn a_client_gets_its_burst_then_one_per_interval() {
        let budgets = Budgets::new("10/min".parse().unwrap());
        let me = Some("192.0.2.1".parse().unwrap());
        let now = 1_000 * SEC;
        for _ in 0..10 {
            budgets.reserve(me, now).unwrap().keep();
        }
        let wait = budgets.reserve(me, now).err().unwrap();
        assert_eq!(wait, Duration::from_secs(6));
        // Another client, and the unidentified ones, have budgets of their own.
        assert!(budgets
            .reserve(Some("192.0.2.2".parse().unwrap()), now)
            .is_ok());
        assert!(budgets.reserve(None, now).is_ok());
        // Six seconds later, one more.
        budgets.reserve(me, now + 6 * SEC).unwrap().keep();
        assert!(budgets.reserve(me, now + 6 * SEC).is_err());
    }

    #[test]
    fn a_refund_gives_the_lookup_back() {
        let budgets = Budgets::new("2/min".parse().unwrap());
        let me = Some("192.0.2.1".parse().unwrap());
        for _ in 0..100 {
            drop(budgets.reserve(me, SEC).unwrap());
        }
        budgets.reserve(me, SEC).unwrap().keep();
        budgets.reserve(me, SEC).unwrap().keep();
        assert!(budgets.reserve(me, SEC).is_err());
    }

    #[test]
    fn known_keys_are_remembered_until_forgotten() {
        let known = KnownKeys::new();
        assert!(!known.contains(&"key-1"));
        known.remember(&"key-1");
        assert!(known.contains(&"key-1"));
        assert!(!known.contains(&"key-2"));
        known.forget(&"key-1");
        assert!(!known.contains(&"key-1"));
    }

    #[test]
    fn ipv6_neighbours_share_a_budget() {
        let budgets = Budgets::new("1/min".parse().unwrap());
        budgets
            .reserve(Some("2001:db8::1".parse().unwrap()), SEC)
            .unwrap()
            .keep();
        assert!(budgets
            .reserve(Some("2001:db8::2".parse().unwrap()), SEC)
            .is_err());
        assert!(budgets
            .reserve(Some("2001:db8:0:1::1".parse().unwrap()), SEC)
            .is_ok());
    }

    /// Found by the property tests: `Display` wrote `100/60s`, which `FromStr` refuses.
    #[test]
    fn display_parses_back() {
        for text in ["7/s", "100/min", "1/h", "10000/day"] {
            let budget: UnknownKeyBudget = text.parse().unwrap();
            assert_eq!(budget.to_string(), text);
            assert_eq!(
                budget.to_string().parse::<UnknownKeyBudget>().unwrap(),
                budget
            );
        }
        let odd = UnknownKeyBudget::new(5, Duration::from_secs(90)).unwrap();
        assert_eq!(odd.to_string(), "5/90s");
    }
}
