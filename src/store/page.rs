//! One page of an owner's keys: the [`KeyQuery`] (filters, a limit and the
//! [`KeyCursor`] of the page before), and the [`KeyPage`] that
//! [`ManagedKeyStore::list_page`](super::ManagedKeyStore::list_page) answers.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;

use super::record::{KeyRecord, KeyStatus, Owner};
use crate::error::ConfigError;
use crate::key::{Environment, KeyId};

/// The most keys one page holds.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// What [`KeyQuery`] lists unless told: 50 keys a page.
pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// Where a key stands, as a list filters it: [`KeyStatus`] with a superseded key whose
/// grace period is over counted as [`KeyState::Expired`] (it is refused as expired).
///
/// ```
/// use tower_api_key::store::KeyState;
///
/// let state: KeyState = "in_grace".parse().unwrap();
/// assert_eq!(state, KeyState::InGrace);
/// assert_eq!(state.as_str(), "in_grace");
/// assert!("superseded".parse::<KeyState>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyState {
    /// Usable, and not replaced by a rotation.
    Active,
    /// Replaced by a rotation, still usable until its grace period ends.
    InGrace,
    /// Past its expiry, or replaced and past its grace period.
    Expired,
    /// Revoked.
    Revoked,
}

impl KeyState {
    /// Every state, in the order above.
    pub const ALL: [Self; 4] = [Self::Active, Self::InGrace, Self::Expired, Self::Revoked];

    /// The state of a key whose status is `status`.
    pub fn of(status: KeyStatus) -> Self {
        match status {
            KeyStatus::Active => Self::Active,
            KeyStatus::InGrace(_) => Self::InGrace,
            KeyStatus::Superseded | KeyStatus::Expired => Self::Expired,
            KeyStatus::Revoked => Self::Revoked,
        }
    }

    /// `active`, `in_grace`, `expired` or `revoked`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::InGrace => "in_grace",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyState {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                ConfigError::new("a key state is one of active, in_grace, expired, revoked")
            })
    }
}

/// Where a page of keys ends: the creation time and id of its last key. Lists are
/// ordered newest first, by `(created_at, id)` descending, and the next page starts
/// strictly after the cursor, so keys created while a client pages through a list
/// (newer than every key it has seen) never shift a page: no key is listed twice or
/// skipped.
///
/// Its text form ([`Display`](fmt::Display), [`FromStr`]) is opaque to clients: send
/// it back as it came.
///
/// ```
/// use tower_api_key::store::KeyCursor;
///
/// assert!("not a cursor".parse::<KeyCursor>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyCursor {
    created_at: OffsetDateTime,
    id: KeyId,
}

impl KeyCursor {
    /// The cursor just after `record`.
    pub fn after(record: &KeyRecord) -> Self {
        Self {
            created_at: record.created_at,
            id: record.id,
        }
    }

    /// The creation time of the last key of the page before.
    pub fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }

    /// The id of the last key of the page before.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// Whether `record` comes after this cursor in a list (is older, or as old with a
    /// smaller id).
    pub fn precedes(&self, record: &KeyRecord) -> bool {
        newest_first(&self.created_at, &self.id, &record.created_at, &record.id) == Ordering::Less
    }
}

/// The order of lists: newest first, then by id descending (as strings).
fn newest_first(
    a_at: &OffsetDateTime,
    a_id: &KeyId,
    b_at: &OffsetDateTime,
    b_id: &KeyId,
) -> Ordering {
    b_at.cmp(a_at)
        .then_with(|| b_id.as_str().cmp(a_id.as_str()))
}

/// Lists `records` in the order of pages: newest first, then by id descending.
pub(crate) fn sort_newest_first(records: &mut [KeyRecord]) {
    records.sort_by(|a, b| newest_first(&a.created_at, &a.id, &b.created_at, &b.id));
}

impl fmt::Debug for KeyCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCursor")
            .field("created_at", &self.created_at)
            .field("id", &self.id)
            .finish()
    }
}

/// 16 hex digits of the creation time (nanoseconds since 1677-09-21, the range of an
/// `i64` of nanoseconds around the Unix epoch) followed by the id: URL-safe, and every
/// text of that shape ([`KeyCursor::PATTERN`]) is a cursor.
impl fmt::Display for KeyCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.created_at.unix_timestamp_nanos();
        let nanos = i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX });
        // Shifted to unsigned, so that the text sorts as the time does.
        let shifted = u64::from_ne_bytes(nanos.to_ne_bytes()) ^ (1 << 63);
        write!(f, "{shifted:016x}{}", self.id)
    }
}

impl KeyCursor {
    /// What every cursor's text matches (and every text that matches is a cursor):
    /// for an OpenAPI schema.
    pub const PATTERN: &'static str = "^[0-9a-f]{16}[A-Za-z0-9_-]{1,23}$";
}

impl FromStr for KeyCursor {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let invalid = || ConfigError::new("the cursor is not one this API returned");
        let (time, id) = s.split_at_checked(16).ok_or_else(invalid)?;
        if !time.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(invalid());
        }
        let shifted = u64::from_str_radix(time, 16).map_err(|_| invalid())?;
        let nanos = i64::from_ne_bytes((shifted ^ (1 << 63)).to_ne_bytes());
        let created_at =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).map_err(|_| invalid())?;
        let id = KeyId::new(id).map_err(|_| invalid())?;
        Ok(Self { created_at, id })
    }
}

/// Which keys of one owner a page lists: filters by environment, state and name
/// prefix, at most [`limit`](Self::with_limit) keys, after a [`KeyCursor`].
///
/// ```
/// use tower_api_key::key::Environment;
/// use tower_api_key::store::{KeyQuery, KeyState, Owner};
///
/// let query = KeyQuery::new(Owner::organization("acme"), time::OffsetDateTime::now_utc())
///     .in_environment(Environment::live())
///     .in_state(KeyState::Active)
///     .with_name_prefix("ci-")
///     .with_limit(20);
/// assert_eq!(query.limit(), 20);
/// ```
#[derive(Debug, Clone)]
pub struct KeyQuery {
    owner: Owner,
    at: OffsetDateTime,
    environment: Option<Environment>,
    state: Option<KeyState>,
    name_prefix: Option<String>,
    after: Option<KeyCursor>,
    limit: u32,
}

impl KeyQuery {
    /// The first [`DEFAULT_PAGE_SIZE`] keys of `owner`, newest first, judging each
    /// key's state at `at`.
    pub fn new(owner: Owner, at: OffsetDateTime) -> Self {
        Self {
            owner,
            at,
            environment: None,
            state: None,
            name_prefix: None,
            after: None,
            limit: DEFAULT_PAGE_SIZE,
        }
    }

    /// Only keys of `environment`.
    #[must_use]
    pub fn in_environment(mut self, environment: Environment) -> Self {
        self.environment = Some(environment);
        self
    }

    /// Only keys in `state` at the query's time.
    #[must_use]
    pub fn in_state(mut self, state: KeyState) -> Self {
        self.state = Some(state);
        self
    }

    /// Only keys whose name starts with `prefix` (case-sensitive).
    #[must_use]
    pub fn with_name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.name_prefix = Some(prefix.into());
        self
    }

    /// The page after `cursor` (the previous page's [`KeyPage::next`]).
    #[must_use]
    pub fn after(mut self, cursor: KeyCursor) -> Self {
        self.after = Some(cursor);
        self
    }

    /// At most `limit` keys, between 1 and [`MAX_PAGE_SIZE`] (clamped).
    #[must_use]
    pub fn with_limit(mut self, limit: u32) -> Self {
        self.limit = limit.clamp(1, MAX_PAGE_SIZE);
        self
    }

    /// The owner whose keys are listed.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// The time each key's state is judged at.
    pub fn at(&self) -> OffsetDateTime {
        self.at
    }

    /// The environment filter.
    pub fn environment(&self) -> Option<Environment> {
        self.environment
    }

    /// The state filter.
    pub fn state(&self) -> Option<KeyState> {
        self.state
    }

    /// The name prefix filter.
    pub fn name_prefix(&self) -> Option<&str> {
        self.name_prefix.as_deref()
    }

    /// The cursor the page starts after.
    pub fn cursor(&self) -> Option<&KeyCursor> {
        self.after.as_ref()
    }

    /// The most keys the page holds.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Whether `record` passes the filters and comes after the cursor (the owner is
    /// not checked: a store lists one owner's keys).
    pub fn matches(&self, record: &KeyRecord) -> bool {
        self.environment
            .is_none_or(|env| record.environment == Some(env))
            && self
                .state
                .is_none_or(|state| KeyState::of(record.status_at(self.at)) == state)
            && self
                .name_prefix
                .as_deref()
                .is_none_or(|prefix| record.name.starts_with(prefix))
            && self.after.is_none_or(|cursor| cursor.precedes(record))
    }

    /// The page of `records` (all of the owner's keys, in any order) this query selects:
    /// what [`ManagedKeyStore::list_page`](super::ManagedKeyStore::list_page) does by
    /// default, for a store that overrides it only in part.
    pub fn page_of(&self, mut records: Vec<KeyRecord>) -> KeyPage {
        records.retain(|record| self.matches(record));
        sort_newest_first(&mut records);
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let next = (records.len() > limit).then(|| KeyCursor::after(&records[limit - 1]));
        records.truncate(limit);
        KeyPage {
            items: records,
            next,
        }
    }
}

/// One page of keys, newest first, and the cursor of the next page when there is one.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct KeyPage {
    /// The keys, newest first (by creation time, then id, descending).
    pub items: Vec<KeyRecord>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<KeyCursor>,
}

impl KeyPage {
    /// A page of `items`, followed by the page after `next`.
    pub fn new(items: Vec<KeyRecord>, next: Option<KeyCursor>) -> Self {
        Self { items, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyFormat;

    fn record(name: &str, created_at: OffsetDateTime, env: &str) -> KeyRecord {
        let format = KeyFormat::new("pb")
            .unwrap()
            .with_environments(["live", "test"])
            .unwrap();
        let minted = format.generate(Some(env)).unwrap();
        KeyRecord::new(
            &minted,
            name,
            Owner::organization("acme"),
            Vec::new(),
            created_at,
        )
    }

    #[test]
    fn a_cursor_round_trips_and_garbage_is_refused() {
        let at = time::macros::datetime!(2026-03-01 09:32:00.123456 UTC);
        let cursor = KeyCursor::after(&record("a", at, "live"));
        let text = cursor.to_string();
        assert_eq!(text.parse::<KeyCursor>().unwrap(), cursor);
        let pattern = |t: &str| {
            t.len() > 16
                && t.len() <= 39
                && t[..16]
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                && t[16..]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        assert!(pattern(&text), "{text}");
        // Every text of the pattern is a cursor, the extremes included.
        for good in ["0000000000000000A", "ffffffffffffffff_-zZ9"] {
            assert!(good.parse::<KeyCursor>().is_ok(), "{good:?}");
        }
        // And the text sorts as the time does.
        let later = KeyCursor::after(&record("b", at + time::Duration::nanoseconds(1), "live"));
        assert!(later.to_string()[..16] > text[..16]);
        for bad in [
            "",
            "zz",
            "0000000000000000",
            "000000000000000g1",
            "0000000000000000a.b",
            "é",
        ] {
            assert!(bad.parse::<KeyCursor>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pages_are_newest_first_and_continue_after_the_cursor() {
        let t0 = time::macros::datetime!(2026-03-01 00:00 UTC);
        // Three keys at the same instant: the id breaks the tie.
        let mut records: Vec<KeyRecord> = (0..5)
            .map(|i| {
                record(
                    &format!("k{i}"),
                    t0 + time::Duration::seconds(i.min(2)),
                    "live",
                )
            })
            .collect();
        records.push(record("other", t0, "test"));
        let query = KeyQuery::new(Owner::organization("acme"), t0)
            .in_environment(Environment::live())
            .with_limit(2);
        let mut seen = Vec::new();
        let mut page = query.page_of(records.clone());
        loop {
            assert!(page.items.len() <= 2);
            seen.extend(page.items.iter().map(|r| r.name.clone()));
            let Some(next) = page.next else { break };
            page = query.clone().after(next).page_of(records.clone());
        }
        let mut expected = records[..5].to_vec();
        sort_newest_first(&mut expected);
        let expected: Vec<String> = expected.into_iter().map(|r| r.name).collect();
        assert_eq!(seen, expected);
        assert_eq!(seen.len(), 5);
        assert!(seen[..3]
            .iter()
            .all(|n| ["k2", "k3", "k4"].contains(&n.as_str())));
    }

    #[test]
    fn filters_by_state_and_name_prefix() {
        let t0 = time::macros::datetime!(2026-03-01 00:00 UTC);
        let mut revoked = record("ci-revoked", t0, "live");
        revoked.revoked_at = Some(t0);
        let expired = record("ci-expired", t0, "live").with_expires_at(Some(t0));
        let active = record("prod", t0, "live");
        let all = vec![revoked, expired, active];
        let names = |query: KeyQuery| -> Vec<String> {
            query
                .page_of(all.clone())
                .items
                .into_iter()
                .map(|r| r.name)
                .collect()
        };
        let query = KeyQuery::new(Owner::organization("acme"), t0);
        assert_eq!(
            names(query.clone().in_state(KeyState::Revoked)),
            ["ci-revoked"]
        );
        assert_eq!(
            names(query.clone().in_state(KeyState::Expired)),
            ["ci-expired"]
        );
        assert_eq!(names(query.clone().in_state(KeyState::Active)), ["prod"]);
        assert_eq!(names(query.clone().with_name_prefix("ci-")).len(), 2);
        assert_eq!(query.with_limit(0).limit(), 1);
    }
}
