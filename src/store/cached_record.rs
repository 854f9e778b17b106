//! The cache's own entry: a key record laid out for the request path and for memory.
//!
//! [`KeyRecord`] is what every store reads and writes; [`CachedRecord`] is what the
//! cache holds for as long as a key is in use. It keeps the same facts in about a third
//! of the space:
//!
//! - scope lists and owner ids are *interned*: every cached key with the same scopes
//!   shares one list (and the grants the request path derives from it, worked out once
//!   per list rather than once per key), and every key of one owner shares its id;
//! - the key's display texts (prefix, name, creator) are one allocation;
//! - what most keys never have (a revocation, a rotation, a family other than
//!   themselves, a named rate-limit policy, metadata) is boxed behind one pointer;
//! - the per-key state of the request path (the rate limiter's bucket) is allocated
//!   on first use, behind one pointer.

use std::any::Any;
use std::borrow::Borrow;
use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use time::OffsetDateTime;

use super::record::{status_of, ActiveUntil, KeyFacts};
use super::{KeyRecord, KeyStatus, Owner, Rotation};
use crate::key::{Digest, Environment, KeyId};

/// A key record as the cache holds it, with what is derived from it once per fill
/// rather than once per request.
///
/// The fields of [`KeyRecord`] are read through methods of the same names;
/// [`CachedRecord::to_record`] builds the whole record.
pub struct CachedRecord {
    id: KeyId,
    digest: Digest,
    /// Shared by every cached key of the environment.
    environment: Option<Arc<Environment>>,
    imported: bool,
    /// Whether `text` ends with the creator.
    has_created_by: bool,
    /// `text[..prefix_end]` is the prefix, `text[prefix_end..name_end]` the name and
    /// the rest the creator.
    prefix_end: u32,
    name_end: u32,
    /// When the record stops being plainly active (see [`ActiveUntil`]).
    active_until: ActiveUntil,
    owner: Owner,
    scopes: Arc<ScopeList>,
    text: Box<str>,
    created_at: OffsetDateTime,
    expires_at: Option<OffsetDateTime>,
    last_used_at: Option<OffsetDateTime>,
    /// What most keys never have.
    rare: Option<Box<Rare>>,
    /// Per-key state of the request path, allocated on first use.
    slots: OnceLock<Box<Slots>>,
    /// The invalidation epoch when the lookup that fetched the record started: an
    /// invalidation of its key with a later epoch supersedes it.
    pub(super) epoch: u64,
    /// The latest epoch at which the record was found not superseded.
    pub(super) checked: AtomicU64,
}

/// The fields most keys leave empty.
struct Rare {
    revoked_at: Option<OffsetDateTime>,
    rotation: Option<Rotation>,
    /// `None`: the key is its own family.
    family: Option<KeyId>,
    rate_limit_policy: Option<Arc<str>>,
    metadata: serde_json::Map<String, serde_json::Value>,
}

/// A scope list shared by every cached key that holds exactly these scopes, with what
/// the request path derives from it (the grants under the front door's scope model).
struct ScopeList {
    scopes: Box<[String]>,
    derived: OnceLock<Box<dyn Any + Send + Sync>>,
}

/// The kinds of per-key state kept in a cached entry's slots, one slot each. Each
/// lives exactly as long as the entry: its owner keeps whatever must survive a refill
/// (the rate limiter keeps its buckets in a registry and the slot points at one).
#[derive(Clone, Copy)]
pub(crate) enum SlotKind {
    /// The in-process rate limiter's bucket.
    RateLimit = 0,
    /// The key's usage counters.
    Usage = 1,
}

const SLOT_KINDS: usize = 2;

struct Slots([OnceLock<Box<dyn Any + Send + Sync>>; SLOT_KINDS]);

impl CachedRecord {
    /// The entry for `record`, its owner id, policy name and scope list taken from
    /// `interner` when another cached key holds the same (`None`: not shared).
    pub(crate) fn new(record: KeyRecord, interner: Option<&mut Interner>, epoch: u64) -> Self {
        let KeyRecord {
            id,
            digest,
            prefix,
            name,
            owner,
            environment,
            scopes,
            created_at,
            created_by,
            expires_at,
            revoked_at,
            rotation,
            family,
            last_used_at,
            rate_limit_policy,
            metadata,
            imported,
        } = record;
        let active_until = ActiveUntil::of(revoked_at, expires_at, rotation.as_ref());
        let (owner, environment, scopes, rate_limit_policy) = match interner {
            Some(interner) => interner.intern(owner, environment, scopes, rate_limit_policy),
            None => (
                owner,
                environment.map(Arc::new),
                ScopeList::new(scopes),
                rate_limit_policy.map(Arc::from),
            ),
        };
        let rare = (revoked_at.is_some()
            || rotation.is_some()
            || family != id
            || rate_limit_policy.is_some()
            || !metadata.is_empty())
        .then(|| {
            Box::new(Rare {
                revoked_at,
                rotation,
                family: (family != id).then_some(family),
                rate_limit_policy,
                metadata,
            })
        });
        let mut text = String::with_capacity(
            prefix.len() + name.len() + created_by.as_ref().map_or(0, String::len),
        );
        text.push_str(&prefix);
        let prefix_end = offset(&text);
        text.push_str(&name);
        let name_end = offset(&text);
        if let Some(created_by) = &created_by {
            text.push_str(created_by);
        }
        Self {
            id,
            digest,
            environment,
            imported,
            has_created_by: created_by.is_some(),
            prefix_end,
            name_end,
            active_until,
            owner,
            scopes,
            text: text.into_boxed_str(),
            created_at,
            expires_at,
            last_used_at,
            rare,
            slots: OnceLock::new(),
            epoch,
            checked: AtomicU64::new(epoch),
        }
    }

    /// The public id.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// SHA-256 of the full key.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The public display prefix.
    pub fn prefix(&self) -> &str {
        self.text(0, self.prefix_end)
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        self.text(self.prefix_end, self.name_end)
    }

    /// The organization or user the key acts for.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// The environment, for formats that have them.
    pub fn environment(&self) -> Option<Environment> {
        self.environment.as_deref().copied()
    }

    /// Granted scopes, as configured.
    pub fn scopes(&self) -> &[String] {
        &self.scopes.scopes
    }

    /// When the key was created.
    pub fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }

    /// Who created it.
    pub fn created_by(&self) -> Option<&str> {
        self.has_created_by
            .then(|| self.text(self.name_end, u32::MAX))
    }

    /// When it stops working, if ever.
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        self.expires_at
    }

    /// When it was revoked.
    pub fn revoked_at(&self) -> Option<OffsetDateTime> {
        self.rare.as_ref().and_then(|rare| rare.revoked_at)
    }

    /// The rotation state, once superseded.
    pub fn rotation(&self) -> Option<&Rotation> {
        self.rare.as_ref().and_then(|rare| rare.rotation.as_ref())
    }

    /// The first key of the rotation family.
    pub fn family(&self) -> &KeyId {
        self.rare
            .as_ref()
            .and_then(|rare| rare.family.as_ref())
            .unwrap_or(&self.id)
    }

    /// When the key was last used, as of the fetch.
    pub fn last_used_at(&self) -> Option<OffsetDateTime> {
        self.last_used_at
    }

    /// The name of the key's rate-limit policy, if it names one.
    pub fn rate_limit_policy(&self) -> Option<&str> {
        self.rare
            .as_ref()
            .and_then(|rare| rare.rate_limit_policy.as_deref())
    }

    /// Free-form application data.
    pub fn metadata(&self) -> &serde_json::Map<String, serde_json::Value> {
        static EMPTY: OnceLock<serde_json::Map<String, serde_json::Value>> = OnceLock::new();
        match &self.rare {
            Some(rare) => &rare.metadata,
            None => EMPTY.get_or_init(serde_json::Map::new),
        }
    }

    /// `true` for a key minted elsewhere and looked up by digest.
    pub fn imported(&self) -> bool {
        self.imported
    }

    /// The status of the key at `now`.
    pub fn status_at(&self, now: OffsetDateTime) -> KeyStatus {
        status_of(self.revoked_at(), self.expires_at, self.rotation(), now)
    }

    /// The whole record, built afresh (it allocates: prefer the accessors on the
    /// request path).
    pub fn to_record(&self) -> KeyRecord {
        let rare = self.rare.as_deref();
        KeyRecord {
            id: self.id,
            digest: self.digest,
            prefix: self.prefix().to_owned(),
            name: self.name().to_owned(),
            owner: self.owner.clone(),
            environment: self.environment(),
            scopes: self.scopes().to_vec(),
            created_at: self.created_at,
            created_by: self.created_by().map(str::to_owned),
            expires_at: self.expires_at,
            revoked_at: self.revoked_at(),
            rotation: self.rotation().copied(),
            family: *self.family(),
            last_used_at: self.last_used_at,
            rate_limit_policy: self.rate_limit_policy().map(str::to_owned),
            metadata: rare.map(|rare| rare.metadata.clone()).unwrap_or_default(),
            imported: self.imported,
        }
    }

    /// The record's status at `now` (nanoseconds since the Unix epoch), without
    /// building a date while the key is plainly active.
    pub(crate) fn status_at_unix_nanos(&self, now: i128) -> KeyStatus {
        if self.active_until.covers(now) {
            KeyStatus::Active
        } else {
            self.status_at(crate::clock::from_unix_nanos(now))
        }
    }

    /// `derive(scopes)`, worked out on first use and kept with the scope list (shared
    /// by every cached key with the same scopes); `None` when a value of another type
    /// was kept first (the caller then derives afresh).
    pub(crate) fn derived<T: Any + Send + Sync>(
        &self,
        derive: impl FnOnce(&[String]) -> T,
    ) -> Option<&T> {
        let list = &*self.scopes;
        list.derived
            .get_or_init(|| Box::new(derive(&list.scopes)))
            .downcast_ref()
    }

    /// The per-key slot of `kind`: `init()` on first use, kept with the entry until
    /// its next fill; `None` when a value of another type was kept first.
    pub(crate) fn slot<T: Any + Send + Sync>(
        &self,
        kind: SlotKind,
        init: impl FnOnce() -> T,
    ) -> Option<&T> {
        self.slots
            .get_or_init(|| Box::new(Slots(Default::default())))
            .0[kind as usize]
            .get_or_init(|| Box::new(init()))
            .downcast_ref()
    }

    /// A rough count of the bytes this entry occupies (its own and its heap data, the
    /// shared lists not counted), used to bound the cache by size.
    pub(crate) fn approx_size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.text.len()
            + self.rare.as_ref().map_or(0, |rare| {
                std::mem::size_of::<Rare>()
                    + if rare.metadata.is_empty() {
                        0
                    } else {
                        serde_json::to_string(&rare.metadata).map_or(0, |s| s.len() * 2)
                    }
            })
    }

    fn text(&self, from: u32, to: u32) -> &str {
        let to = usize::try_from(to).map_or(self.text.len(), |to| to.min(self.text.len()));
        usize::try_from(from)
            .ok()
            .and_then(|from| self.text.get(from..to))
            .unwrap_or("")
    }
}

/// The length of `text` so far as an offset. Names and prefixes are far shorter than
/// 4 GiB; a longer text would read as cut short, never out of bounds.
fn offset(text: &str) -> u32 {
    u32::try_from(text.len()).unwrap_or(u32::MAX)
}

impl KeyFacts for CachedRecord {
    fn fact_id(&self) -> &KeyId {
        Self::id(self)
    }

    fn fact_family(&self) -> &KeyId {
        Self::family(self)
    }

    fn fact_owner(&self) -> &Owner {
        Self::owner(self)
    }

    fn fact_environment(&self) -> Option<Environment> {
        Self::environment(self)
    }

    fn fact_policy(&self) -> Option<&str> {
        Self::rate_limit_policy(self)
    }
}

impl fmt::Debug for CachedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedRecord")
            .field("id", &self.id)
            .field("prefix", &self.prefix())
            .field("name", &self.name())
            .field("owner", &self.owner)
            .field("environment", &self.environment())
            .field("scopes", &self.scopes())
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at())
            .field("rotation", &self.rotation())
            .finish_non_exhaustive()
    }
}

impl ScopeList {
    fn new(scopes: Vec<String>) -> Arc<Self> {
        Arc::new(Self {
            scopes: scopes.into_boxed_slice(),
            derived: OnceLock::new(),
        })
    }
}

/// An interned scope list, found by its scopes.
struct ByScopes(Arc<ScopeList>);

impl Borrow<[String]> for ByScopes {
    fn borrow(&self) -> &[String] {
        &self.0.scopes
    }
}

impl PartialEq for ByScopes {
    fn eq(&self, other: &Self) -> bool {
        self.0.scopes == other.0.scopes
    }
}

impl Eq for ByScopes {}

impl Hash for ByScopes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `[String]` hashes, so that lookups by `&[String]` find it.
        self.0.scopes[..].hash(state);
    }
}

/// The owner ids, environments, policy names and scope lists of the cached keys, one
/// copy each.
///
/// Entries nobody else holds any more are swept when the tables have doubled since
/// the last sweep, so they stay within twice the number of distinct values in use.
#[derive(Default)]
pub(crate) struct Interner {
    strings: HashSet<Arc<str>, ahash::RandomState>,
    environments: HashSet<Arc<Environment>, ahash::RandomState>,
    scopes: HashSet<ByScopes, ahash::RandomState>,
    sweep_at: usize,
}

/// An owner, environment, scope list and policy name, as shared among cached records.
type Shared = (
    Owner,
    Option<Arc<Environment>>,
    Arc<ScopeList>,
    Option<Arc<str>>,
);

/// Tables smaller than this are never swept.
const MIN_SWEEP: usize = 1024;

impl Interner {
    fn intern(
        &mut self,
        owner: Owner,
        environment: Option<Environment>,
        scopes: Vec<String>,
        policy: Option<String>,
    ) -> Shared {
        if self.len() >= self.sweep_at.max(MIN_SWEEP) {
            self.sweep();
        }
        let owner = match owner {
            Owner::Organization(id) => Owner::Organization(self.string(id)),
            Owner::User(id) => Owner::User(self.string(id)),
        };
        let policy = policy.map(|policy| self.string(Arc::from(policy)));
        let environment =
            environment.map(|environment| match self.environments.get(&environment) {
                Some(shared) => Arc::clone(shared),
                None => {
                    let shared = Arc::new(environment);
                    self.environments.insert(Arc::clone(&shared));
                    shared
                }
            });
        let scopes = match self.scopes.get(&scopes[..]) {
            Some(list) => Arc::clone(&list.0),
            None => {
                let list = ScopeList::new(scopes);
                self.scopes.insert(ByScopes(Arc::clone(&list)));
                list
            }
        };
        (owner, environment, scopes, policy)
    }

    fn string(&mut self, text: Arc<str>) -> Arc<str> {
        match self.strings.get(&*text) {
            Some(shared) => Arc::clone(shared),
            None => {
                self.strings.insert(Arc::clone(&text));
                text
            }
        }
    }

    /// Drops what only the tables hold.
    fn sweep(&mut self) {
        self.strings.retain(|s| Arc::strong_count(s) > 1);
        self.environments.retain(|e| Arc::strong_count(e) > 1);
        self.scopes.retain(|list| Arc::strong_count(&list.0) > 1);
        self.sweep_at = 2 * self.len();
    }

    /// How many values the tables hold.
    fn len(&self) -> usize {
        self.strings.len() + self.environments.len() + self.scopes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyFormat;

    fn record(owner: &str, scopes: &[&str]) -> KeyRecord {
        let minted = KeyFormat::new("pb")
            .unwrap()
            .with_environments(["live"])
            .unwrap()
            .generate(Some("live"))
            .unwrap();
        KeyRecord::new(
            &minted,
            "sync",
            Owner::organization(owner),
            scopes.iter().map(|s| (*s).to_owned()).collect(),
            OffsetDateTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn every_field_survives_the_round_trip() {
        let mut full = record("acme", &["a:read", "b:write"])
            .with_created_by("key_creator")
            .with_expires_at(Some(OffsetDateTime::UNIX_EPOCH + time::Duration::days(3)));
        full.revoked_at = Some(OffsetDateTime::UNIX_EPOCH + time::Duration::days(2));
        full.rotation = Some(Rotation {
            superseded_by: KeyId::new("successor").unwrap(),
            valid_until: OffsetDateTime::UNIX_EPOCH + time::Duration::days(1),
        });
        full.family = KeyId::new("first").unwrap();
        full.last_used_at = Some(OffsetDateTime::UNIX_EPOCH + time::Duration::hours(5));
        full.rate_limit_policy = Some("gold".into());
        full.metadata
            .insert("team".into(), serde_json::json!("data"));
        full.name = "Ünïcode name 🦀".into();
        let plain = record("acme", &[]);
        let mut empty_creator = record("globex", &["x"]);
        empty_creator.created_by = Some(String::new());
        for original in [full, plain, empty_creator] {
            let mut interner = Interner::default();
            for cached in [
                CachedRecord::new(original.clone(), None, 0),
                CachedRecord::new(original.clone(), Some(&mut interner), 0),
            ] {
                assert_eq!(cached.to_record(), original);
                assert_eq!(cached.name(), original.name);
                assert_eq!(cached.prefix(), original.prefix);
                assert_eq!(cached.created_by(), original.created_by.as_deref());
                assert_eq!(cached.family(), &original.family);
            }
        }
    }

    #[test]
    fn equal_scope_lists_and_owners_are_shared_and_swept_when_unused() {
        let mut interner = Interner::default();
        let a = CachedRecord::new(record("acme", &["x", "y"]), Some(&mut interner), 0);
        let b = CachedRecord::new(record("acme", &["x", "y"]), Some(&mut interner), 0);
        let c = CachedRecord::new(record("acme", &["y", "x"]), Some(&mut interner), 0);
        assert!(Arc::ptr_eq(&a.scopes, &b.scopes));
        assert!(
            !Arc::ptr_eq(&a.scopes, &c.scopes),
            "order is part of the list"
        );
        let (Owner::Organization(oa), Owner::Organization(ob)) = (a.owner(), b.owner()) else {
            panic!("organization owners")
        };
        assert!(Arc::ptr_eq(oa, ob));
        assert!(Arc::ptr_eq(
            a.environment.as_ref().unwrap(),
            b.environment.as_ref().unwrap()
        ));
        // The grants derived for one list are derived once for every key holding it.
        let mut derivations = 0;
        a.derived(|scopes| {
            derivations += 1;
            scopes.len()
        });
        b.derived(|scopes| {
            derivations += 1;
            scopes.len()
        });
        assert_eq!(derivations, 1);
        drop((a, b, c));
        // Filling past the sweep threshold with other values drops the unused ones.
        let kept: Vec<_> = (0..MIN_SWEEP)
            .map(|i| CachedRecord::new(record(&format!("org{i}"), &[]), Some(&mut interner), 0))
            .collect();
        let _next = CachedRecord::new(record("late", &[]), Some(&mut interner), 0);
        assert!(
            !interner.strings.contains("acme"),
            "an unused owner id is kept"
        );
        assert!(!interner
            .scopes
            .contains(&["x".to_owned(), "y".to_owned()][..]));
        assert!(
            interner.len() <= kept.len() + 4,
            "{} values held",
            interner.len()
        );
    }

    #[test]
    fn an_entry_is_at_most_224_bytes_against_a_key_records_384() {
        // With `Arc`'s two counts, 240 bytes: one 256-byte allocation.
        assert!(
            std::mem::size_of::<CachedRecord>() <= 224,
            "{} bytes against {}",
            std::mem::size_of::<CachedRecord>(),
            std::mem::size_of::<KeyRecord>()
        );
    }
}
