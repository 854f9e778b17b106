//! The key lifecycle as an attacker tries it, on every store: one suite, written once
//! and run against the memory store, SQLite, and PostgreSQL when
//! `TOWER_API_KEY_TEST_POSTGRES_URL` is set.
//!
//! Each case drives a [`KeyManager`] with keys authenticated through the same cache,
//! under a clock whose readings have sub-microsecond nanoseconds (the SQL stores keep
//! microseconds). The last case is a seeded random walk checked against a small
//! reference model after every step.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use support::pb_format;
use time::macros::datetime;
use time::OffsetDateTime;
use tower_api_key::audit::{AuditAction, AuditActor, AuditEntry, AuditQuery};
use tower_api_key::clock::{Clock, ManualClock};
use tower_api_key::key::{Environment, KeyId};
use tower_api_key::manage::{Actor, CreatedKey, Denied, Expiry, KeyManager, ManageError, NewKey};
use tower_api_key::parts::KeyVerifier;
use tower_api_key::store::{CachedStore, ManagedKeyStore, MemoryStore};
use tower_api_key::{Owner, Principal, RejectionKind, ScopeModel};

/// A start with nanoseconds below the microsecond, which the SQL stores truncate.
const START: OffsetDateTime = datetime!(2026-03-01 09:30:00.123456789 UTC);

const ALL_SCOPES: [&str; 5] = [
    "employees:read",
    "employees:write",
    "api_keys:read",
    "api_keys:write",
    "audit_log:read",
];

fn model() -> ScopeModel {
    ScopeModel::builder()
        .resource("employees", ["read", "write"])
        .resource("api_keys", ["read", "write"])
        .resource("audit_log", ["read"])
        .scope("session:read")
        .action_implies("write", "read")
        .granted_to_all(["session:read"])
        .creation_defaults(["session:read"])
        .build()
        .unwrap()
}

fn acme() -> Owner {
    Owner::organization("acme")
}

fn globex() -> Owner {
    Owner::organization("globex")
}

/// A manager and an authenticator over one cache, and the clock they read.
pub(crate) struct World<S: ManagedKeyStore> {
    clock: ManualClock,
    manager: KeyManager<S>,
    auth: KeyVerifier<S>,
}

impl<S: ManagedKeyStore> World<S> {
    fn new(store: S) -> Self {
        let clock = ManualClock::new(START);
        let cache = CachedStore::builder(store)
            .with_clock(clock.clone())
            .build()
            .unwrap();
        let manager = KeyManager::new(cache.clone(), pb_format(), model());
        let auth = KeyVerifier::new(cache, pb_format());
        Self {
            clock,
            manager,
            auth,
        }
    }

    /// A key made by the system.
    async fn make(&self, owner: Owner, env: &str, scopes: &[&str]) -> CreatedKey {
        self.manager
            .create(
                NewKey::new("k", owner)
                    .with_environment(env)
                    .with_scopes(scopes.iter().copied()),
                Actor::System("bootstrap"),
            )
            .await
            .unwrap()
    }

    async fn principal(&self, key: &CreatedKey) -> Principal {
        self.auth
            .authenticate(key.key.expose_secret())
            .await
            .expect("the key authenticates")
    }

    async fn status(&self, key: &CreatedKey) -> Result<(), RejectionKind> {
        self.auth
            .authenticate(key.key.expose_secret())
            .await
            .map(drop)
    }

    /// A key of acme, as stored.
    async fn stored(&self, id: &KeyId) -> tower_api_key::KeyRecord {
        self.manager
            .get(&acme(), id, Actor::System("check"))
            .await
            .unwrap()
    }

    /// Every key of `owner`, as the system sees it.
    async fn keys(&self, owner: &Owner) -> Vec<tower_api_key::KeyRecord> {
        self.manager
            .list(owner, Actor::System("check"))
            .await
            .unwrap()
    }

    async fn audit(&self, owner: &Owner) -> Vec<AuditEntry> {
        self.manager
            .audit_log(AuditQuery::new(owner.clone()), Actor::System("check"))
            .await
            .unwrap()
    }

    async fn actions_about(&self, owner: &Owner, id: &KeyId) -> Vec<AuditAction> {
        let mut actions: Vec<AuditAction> = self
            .manager
            .audit_log(
                AuditQuery::new(owner.clone()).for_key(*id),
                Actor::System("check"),
            )
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        actions.reverse();
        actions
    }
}

fn denied(result: Result<impl std::fmt::Debug, ManageError>) -> Denied {
    match result {
        Err(ManageError::PermissionDenied(denied)) => denied,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

mod cases {
    use super::*;

    /// Every attack from the issue, through the crate API: refused, and nothing
    /// changed (no key, no audit entry, the target still works as before).
    pub(crate) async fn escalations_are_refused_and_change_nothing<S: ManagedKeyStore>(
        w: World<S>,
    ) {
        let admin = w.make(acme(), "live", &ALL_SCOPES).await;
        let writer = w.make(acme(), "live", &["api_keys:write"]).await;
        let tester = w
            .make(acme(), "test", &["api_keys:write", "employees:write"])
            .await;
        let outsider = w.make(globex(), "live", &ALL_SCOPES).await;
        let keys_before = w.keys(&acme()).await;
        let audit_before = w.audit(&acme()).await;
        let globex_before = w.keys(&globex()).await;

        let writer_p = w.principal(&writer).await;
        let as_writer = Actor::Key(&writer_p);
        // A key with only api_keys:write cannot rotate the admin key into a new admin
        // key, revoke it, or change its scopes.
        let grace = Duration::from_secs(31_536_000);
        assert_eq!(
            denied(
                w.manager
                    .rotate(&acme(), &admin.record.id, grace, as_writer)
                    .await
            ),
            Denied::TargetNotHeld("employees:read".into())
        );
        assert!(matches!(
            denied(w.manager.revoke(&acme(), &admin.record.id, as_writer).await),
            Denied::TargetNotHeld(_)
        ));
        assert!(matches!(
            denied(
                w.manager
                    .set_scopes(&acme(), &admin.record.id, ["api_keys:read"], as_writer)
                    .await
            ),
            Denied::TargetNotHeld(_)
        ));
        // Nor grant what it does not hold, to a new key or to itself.
        let new = NewKey::new("sneaky", acme())
            .with_environment("live")
            .with_scopes(["api_keys:read", "employees:write"]);
        assert_eq!(
            denied(w.manager.create(new, as_writer).await),
            Denied::GrantNotHeld("employees:write".into())
        );
        assert_eq!(
            denied(
                w.manager
                    .set_scopes(
                        &acme(),
                        &writer.record.id,
                        ["api_keys:write", "audit_log:read"],
                        as_writer,
                    )
                    .await
            ),
            Denied::GrantNotHeld("audit_log:read".into())
        );

        // A test key reaches no live key: it cannot create one, and a live key is not
        // found, exactly like a missing one, whether it reads, rotates, revokes or
        // changes it.
        let tester_p = w.principal(&tester).await;
        let as_tester = Actor::Key(&tester_p);
        let test_env = Some(Environment::test());
        let environment = Denied::Environment {
            acting: test_env,
            target: Some(Environment::live()),
        };
        let live = NewKey::new("live", acme())
            .with_environment("live")
            .with_scopes(["employees:read"]);
        assert_eq!(denied(w.manager.create(live, as_tester).await), environment);
        let nobody = KeyId::new("nobody").unwrap();
        for target in [&writer.record.id, &nobody] {
            let m = &w.manager;
            for result in [
                m.rotate(&acme(), target, Duration::ZERO, as_tester)
                    .await
                    .map(drop),
                m.revoke(&acme(), target, as_tester).await.map(drop),
                m.get(&acme(), target, as_tester).await.map(drop),
                m.set_scopes(&acme(), target, ["api_keys:read"], as_tester)
                    .await
                    .map(drop),
            ] {
                assert!(
                    matches!(result, Err(ManageError::NotFound)),
                    "{target}: {result:?}"
                );
            }
        }
        assert_eq!(
            environment.to_string(),
            "a test key can only act on test keys"
        );
        let seen = w.manager.list(&acme(), as_tester).await.unwrap();
        assert_eq!(
            seen.iter().map(|r| r.id).collect::<Vec<_>>(),
            [tester.record.id],
            "a test key lists only test keys"
        );
        let seen = w
            .manager
            .audit_log(AuditQuery::new(acme()), as_tester)
            .await
            .unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].api_key_id, tester.record.id);

        // A key of another organization: the other owner's keys are not found,
        // exactly like missing ones, whichever owner it names; creating, listing or
        // reading the audit log for the other owner is refused.
        let outsider_p = w.principal(&outsider).await;
        let as_outsider = Actor::Key(&outsider_p);
        for owner in [acme(), globex()] {
            for target in [&admin.record.id, &nobody] {
                let m = &w.manager;
                for result in [
                    m.revoke(&owner, target, as_outsider).await.map(drop),
                    m.rotate(&owner, target, Duration::ZERO, as_outsider)
                        .await
                        .map(drop),
                    m.get(&owner, target, as_outsider).await.map(drop),
                    m.set_scopes(&owner, target, ["employees:read"], as_outsider)
                        .await
                        .map(drop),
                ] {
                    assert!(
                        matches!(result, Err(ManageError::NotFound)),
                        "{owner:?} {target}: {result:?}"
                    );
                }
            }
        }
        for result in [
            w.manager.list(&acme(), as_outsider).await.map(drop),
            w.manager
                .audit_log(AuditQuery::new(acme()), as_outsider)
                .await
                .map(drop),
            w.manager
                .create(
                    NewKey::new("x", acme()).with_environment("live"),
                    as_outsider,
                )
                .await
                .map(drop),
        ] {
            assert_eq!(denied(result), Denied::OtherOwner("organization"));
        }

        // Nothing changed anywhere.
        assert_eq!(w.keys(&acme()).await, keys_before);
        assert_eq!(w.keys(&globex()).await, globex_before);
        assert_eq!(w.audit(&acme()).await, audit_before);
        assert_eq!(w.status(&admin).await, Ok(()));
        let admin_now = w.principal(&admin).await;
        assert!(admin_now.rotation().is_none());
    }

    /// What the rules allow: rotating a key whose scopes one holds, granting implied
    /// scopes, the admin rotating any key of its organization (live or test), a test
    /// key managing test keys, a key rotating itself.
    pub(crate) async fn positive_controls_are_allowed<S: ManagedKeyStore>(w: World<S>) {
        let admin = w.make(acme(), "live", &ALL_SCOPES).await;
        let writer = w.make(acme(), "live", &["api_keys:write"]).await;
        let reader = w.make(acme(), "live", &["api_keys:read"]).await;
        let tester = w.make(acme(), "test", &["api_keys:write"]).await;
        let admin_p = w.principal(&admin).await;
        let writer_p = w.principal(&writer).await;
        let tester_p = w.principal(&tester).await;

        // write implies read: the writer may grant api_keys:read and rotate a reader.
        let made = w
            .manager
            .create(
                NewKey::new("reader", acme())
                    .with_environment("live")
                    .with_scopes(["api_keys:read"]),
                Actor::Key(&writer_p),
            )
            .await
            .unwrap();
        assert_eq!(
            made.record.created_by.as_deref(),
            Some(writer.record.id.as_str())
        );
        let rotated = w
            .manager
            .rotate(
                &acme(),
                &reader.record.id,
                Duration::ZERO,
                Actor::Key(&writer_p),
            )
            .await
            .unwrap();
        assert_eq!(rotated.record.scopes, ["api_keys:read"]);
        assert_eq!(w.status(&rotated).await, Ok(()));

        // The admin rotates any key of its organization, in either environment.
        let spare = w.make(acme(), "test", &["employees:read"]).await;
        for key in [&writer, &spare] {
            let next = w
                .manager
                .rotate(
                    &acme(),
                    &key.record.id,
                    Duration::from_secs(60),
                    Actor::Key(&admin_p),
                )
                .await
                .unwrap();
            assert_eq!(next.record.environment, key.record.environment);
            assert_eq!(next.record.scopes, key.record.scopes);
        }

        // A test key creates, narrows and revokes test keys.
        let test_key = w
            .manager
            .create(
                NewKey::new("t", acme())
                    .with_environment("test")
                    .with_scopes(["api_keys:write"]),
                Actor::Key(&tester_p),
            )
            .await
            .unwrap();
        assert_eq!(test_key.record.environment, Some(Environment::test()));
        let narrowed = w
            .manager
            .set_scopes(
                &acme(),
                &test_key.record.id,
                ["api_keys:read"],
                Actor::Key(&tester_p),
            )
            .await
            .unwrap();
        assert_eq!(narrowed.scopes, ["api_keys:read"]);
        w.manager
            .revoke(&acme(), &test_key.record.id, Actor::Key(&tester_p))
            .await
            .unwrap();
        assert_eq!(w.status(&test_key).await, Err(RejectionKind::Revoked));

        // A key rotates itself.
        let me = w.make(acme(), "live", &["employees:write"]).await;
        let me_p = w.principal(&me).await;
        let next = w
            .manager
            .rotate(&acme(), &me.record.id, Duration::ZERO, Actor::Key(&me_p))
            .await
            .unwrap();
        assert_eq!(w.status(&next).await, Ok(()));
        assert_eq!(w.status(&me).await, Err(RejectionKind::Expired));
    }

    /// Rotation keeps the expiry; a revoked, expired or superseded key is a conflict;
    /// a grace past the calendar's end is a validation error, never a panic.
    pub(crate) async fn rotation_rules_hold<S: ManagedKeyStore>(w: World<S>) {
        let system = Actor::System("ops");
        let expiring = w
            .manager
            .create(
                NewKey::new("x", acme())
                    .with_environment("live")
                    .with_expiry(Expiry::Days30),
                system,
            )
            .await
            .unwrap();
        let before = w.keys(&acme()).await.len();
        for grace in [Duration::MAX, Duration::from_secs(400_000 * 86_400 * 365)] {
            assert!(matches!(
                w.manager
                    .rotate(&acme(), &expiring.record.id, grace, system)
                    .await,
                Err(ManageError::InvalidGrace)
            ));
        }
        assert_eq!(w.keys(&acme()).await.len(), before, "nothing stored");
        let next = w
            .manager
            .rotate(
                &acme(),
                &expiring.record.id,
                Duration::from_secs(3600),
                system,
            )
            .await
            .unwrap();
        let stored = w.stored(&next.record.id).await;
        assert_eq!(
            stored.expires_at,
            w.stored(&expiring.record.id).await.expires_at
        );
        assert!(stored.expires_at.is_some());
        // Already superseded.
        assert!(matches!(
            w.manager
                .rotate(&acme(), &expiring.record.id, Duration::ZERO, system)
                .await,
            Err(ManageError::Conflict)
        ));
        // Revoked.
        let revoked = w.make(acme(), "live", &[]).await;
        w.manager
            .revoke(&acme(), &revoked.record.id, system)
            .await
            .unwrap();
        assert!(matches!(
            w.manager
                .rotate(&acme(), &revoked.record.id, Duration::ZERO, system)
                .await,
            Err(ManageError::Conflict)
        ));
        // Expired.
        w.clock.advance(Duration::from_secs(31 * 86_400));
        assert!(matches!(
            w.manager
                .rotate(&acme(), &next.record.id, Duration::ZERO, system)
                .await,
            Err(ManageError::Conflict)
        ));
        assert_eq!(w.keys(&acme()).await.len(), before + 2);
    }

    /// A key rotated away still authenticates during its grace period, but manages no
    /// keys: every operation is refused ([`Denied::Superseded`]) and changes nothing.
    /// Its successor manages keys.
    pub(crate) async fn a_replaced_key_manages_nothing<S: ManagedKeyStore>(w: World<S>) {
        let admin = w.make(acme(), "live", &ALL_SCOPES).await;
        let old = w.make(acme(), "live", &ALL_SCOPES).await;
        let admin_p = w.principal(&admin).await;
        let grace = Duration::from_secs(3_600);
        let next = w
            .manager
            .rotate(&acme(), &old.record.id, grace, Actor::Key(&admin_p))
            .await
            .unwrap();
        let old_p = w.principal(&old).await;
        assert!(old_p.rotation().is_some(), "in its grace period");
        let by = Actor::Key(&old_p);
        let keys_before = w.keys(&acme()).await;
        let audit_before = w.audit(&acme()).await;

        let id = &next.record.id;
        let new = || {
            NewKey::new("minted by the old key", acme())
                .with_environment("live")
                .with_scopes(["employees:read"])
        };
        let m = &w.manager;
        for result in [
            m.create(new(), by).await.map(drop),
            m.ensure_key(new(), by).await.map(drop),
            m.rotate(&acme(), id, Duration::ZERO, by).await.map(drop),
            m.revoke(&acme(), id, by).await.map(drop),
            m.set_scopes(&acme(), id, ["employees:read"], by)
                .await
                .map(drop),
            m.get(&acme(), id, by).await.map(drop),
            m.list(&acme(), by).await.map(drop),
            m.audit_log(AuditQuery::new(acme()), by).await.map(drop),
            // Not even on itself, nor on a key that does not exist.
            m.revoke(&acme(), &old.record.id, by).await.map(drop),
            m.get(&acme(), &KeyId::new("nobody").unwrap(), by)
                .await
                .map(drop),
        ] {
            assert_eq!(denied(result), Denied::Superseded);
        }
        assert_eq!(
            Denied::Superseded.to_string(),
            "the acting key was replaced by a rotation: it works until its grace period \
             ends, but only its successor manages keys"
        );
        assert_eq!(w.keys(&acme()).await, keys_before, "nothing changed");
        assert_eq!(w.audit(&acme()).await, audit_before, "nothing audited");

        // The old key still authenticates; its successor works and manages keys.
        assert_eq!(w.status(&old).await, Ok(()));
        let next_p = w.principal(&next).await;
        w.manager
            .create(new(), Actor::Key(&next_p))
            .await
            .expect("the successor manages keys");
        w.clock.advance(grace);
        assert_eq!(w.status(&old).await, Err(RejectionKind::Expired));
        assert_eq!(w.status(&next).await, Ok(()));
    }

    /// Rule 6: a key never obtains a credential that outlives it. A key expiring in two
    /// minutes cannot create a key without an expiry or with a later one, nor rotate a
    /// key that expires later than itself (the rotation would hand it the successor's
    /// secret, which keeps the old key's expiry). What expires no later is allowed; a
    /// key without an expiry is not bound.
    pub(crate) async fn no_key_outlives_its_maker<S: ManagedKeyStore>(w: World<S>) {
        let system = Actor::System("ops");
        let scopes = ["api_keys:write", "employees:read"];
        let limit_at = START + time::Duration::minutes(2);
        let short = w
            .manager
            .create(
                NewKey::new("two minutes", acme())
                    .with_environment("live")
                    .with_scopes(scopes)
                    .with_expiry(Expiry::At(limit_at)),
                system,
            )
            .await
            .unwrap();
        let limit = short.record.expires_at.unwrap();
        let permanent = w.make(acme(), "live", &["employees:read"]).await;
        let later = w
            .manager
            .create(
                NewKey::new("a month", acme())
                    .with_environment("live")
                    .with_scopes(["employees:read"])
                    .with_expiry(Expiry::Days30),
                system,
            )
            .await
            .unwrap();
        let keys_before = w.keys(&acme()).await;
        let audit_before = w.audit(&acme()).await;

        let short_p = w.principal(&short).await;
        let by = Actor::Key(&short_p);
        let new = |expiry| {
            NewKey::new("child", acme())
                .with_environment("live")
                .with_scopes(["employees:read"])
                .with_expiry(expiry)
        };
        let outlives = Denied::Outlives(limit);
        for expiry in [
            Expiry::Never,
            Expiry::Days365,
            Expiry::At(limit + time::Duration::microseconds(1)),
        ] {
            assert_eq!(denied(w.manager.create(new(expiry), by).await), outlives);
        }
        assert_eq!(
            denied(w.manager.ensure_key(new(Expiry::Never), by).await),
            outlives
        );
        // The rotation gap: rotating a longer-lived key hands over a longer-lived secret.
        for target in [&permanent, &later] {
            assert_eq!(
                denied(
                    w.manager
                        .rotate(&acme(), &target.record.id, Duration::ZERO, by)
                        .await
                ),
                outlives
            );
        }
        assert_eq!(
            outlives.to_string(),
            "the new key would outlive the acting key (which expires \
             2026-03-01T09:32:00.123456Z)"
        );
        assert_eq!(w.keys(&acme()).await, keys_before, "nothing changed");
        assert_eq!(w.audit(&acme()).await, audit_before, "nothing audited");
        assert_eq!(w.status(&permanent).await, Ok(()));

        // What expires no later than the acting key is allowed, itself included.
        for at in [limit, limit - time::Duration::minutes(1)] {
            let child = w.manager.create(new(Expiry::At(at)), by).await.unwrap();
            assert_eq!(child.record.expires_at, Some(at));
            let next = w
                .manager
                .rotate(&acme(), &child.record.id, Duration::ZERO, by)
                .await
                .unwrap();
            assert_eq!(
                next.record.expires_at,
                Some(at),
                "rotation keeps the expiry"
            );
        }
        let next = w
            .manager
            .rotate(&acme(), &short.record.id, Duration::ZERO, by)
            .await
            .unwrap();
        assert_eq!(next.record.expires_at, Some(limit));
        // A key without an expiry is not bound by the rule.
        let admin = w.make(acme(), "live", &ALL_SCOPES).await;
        let admin_p = w.principal(&admin).await;
        let forever = w
            .manager
            .create(new(Expiry::Never), Actor::Key(&admin_p))
            .await
            .unwrap();
        assert_eq!(forever.record.expires_at, None);
        w.manager
            .rotate(
                &acme(),
                &later.record.id,
                Duration::ZERO,
                Actor::Key(&admin_p),
            )
            .await
            .unwrap();
    }

    /// A request's key, authenticated just before its scopes were narrowed, or before
    /// it was revoked: the manager judges the key as the request saw it, and the store,
    /// which checks the acting key again in the change's own transaction, refuses every
    /// change (403 [`Denied::ActorChanged`]). Nothing is created, changed or audited.
    pub(crate) async fn an_actor_changed_after_it_was_judged_changes_nothing<S: ManagedKeyStore>(
        w: World<S>,
    ) {
        let writer = w
            .make(acme(), "live", &["api_keys:write", "employees:write"])
            .await;
        let target = w.make(acme(), "live", &["employees:read"]).await;
        let system = Actor::System("ops");
        let attempts = |principal: Principal| {
            let (manager, id) = (w.manager.clone(), target.record.id);
            async move {
                let by = Actor::Key(&principal);
                let new = NewKey::new("late", acme())
                    .with_environment("live")
                    .with_scopes(["employees:write"]);
                [
                    manager.create(new, by).await.map(drop),
                    manager
                        .rotate(&acme(), &id, Duration::ZERO, by)
                        .await
                        .map(drop),
                    manager
                        .set_scopes(&acme(), &id, ["employees:write"], by)
                        .await
                        .map(drop),
                    manager.revoke(&acme(), &id, by).await.map(drop),
                ]
            }
        };

        let keys_before = w.keys(&acme()).await;
        let audit_before = w.audit(&acme()).await.len();
        // Narrowed to reading after the request authenticated.
        let narrowed = w.principal(&writer).await;
        w.manager
            .set_scopes(&acme(), &writer.record.id, ["employees:read"], system)
            .await
            .unwrap();
        for result in attempts(narrowed).await {
            assert_eq!(denied(result), Denied::ActorChanged);
        }
        // Revoked after the request authenticated.
        let other = w
            .make(acme(), "live", &["api_keys:write", "employees:write"])
            .await;
        let revoked = w.principal(&other).await;
        w.manager
            .revoke(&acme(), &other.record.id, system)
            .await
            .unwrap();
        for result in attempts(revoked).await {
            assert_eq!(denied(result), Denied::ActorChanged);
        }
        let keys_after: Vec<_> = w
            .keys(&acme())
            .await
            .into_iter()
            .filter(|k| k.id != other.record.id && k.id != writer.record.id)
            .collect();
        let keys_before: Vec<_> = keys_before
            .into_iter()
            .filter(|k| k.id != writer.record.id)
            .collect();
        assert_eq!(keys_after, keys_before, "nothing created or changed");
        // Three entries: the narrowing, and the creation and revocation of `other`.
        assert_eq!(w.audit(&acme()).await.len(), audit_before + 3);
        assert_eq!(
            Denied::ActorChanged.to_string(),
            "the acting key was revoked, rotated, changed or expired while the operation \
             ran; nothing was changed"
        );
    }

    /// Eight pairs of keys, each key rotating the other at the same moment: in every
    /// pair exactly one rotation wins, and the other finds its own key replaced
    /// (403 [`Denied::ActorChanged`]). No pair deadlocks (the SQL stores lock the two
    /// rows in id order) or ends with both keys replaced.
    pub(crate) async fn keys_rotating_each_other_have_one_winner<S: ManagedKeyStore>(w: World<S>) {
        // Every request authenticated before any rotation starts.
        let mut attempts = Vec::new();
        for pair in 0..8 {
            let a = w.make(acme(), "live", &["api_keys:write"]).await;
            let b = w.make(acme(), "live", &["api_keys:write"]).await;
            for (actor, target) in [(&a, &b), (&b, &a)] {
                attempts.push((pair, w.principal(actor).await, target.record.id));
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (pair, principal, id) in attempts {
            let manager = w.manager.clone();
            tasks.spawn(async move {
                let by = Actor::Key(&principal);
                let result = manager.rotate(&acme(), &id, Duration::ZERO, by).await;
                (pair, result.map(drop))
            });
        }
        let mut winners = [0; 8];
        while let Some(joined) = tasks.join_next().await {
            match joined.unwrap() {
                (pair, Ok(())) => winners[pair] += 1,
                (_, Err(ManageError::PermissionDenied(Denied::ActorChanged))) => {}
                (_, Err(other)) => panic!("unexpected: {other}"),
            }
        }
        assert_eq!(winners, [1; 8]);
        let superseded = w
            .keys(&acme())
            .await
            .iter()
            .filter(|k| k.rotation.is_some())
            .count();
        assert_eq!(superseded, 8, "one key replaced per pair");
    }

    /// Sixteen tasks rotate one key at once through the manager: one succeeds, fifteen
    /// get 409, one successor exists, one rotation is audited.
    pub(crate) async fn racing_rotations_have_one_winner<S: ManagedKeyStore>(w: World<S>) {
        let key = w.make(acme(), "live", &["employees:read"]).await;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let manager = w.manager.clone();
            let id = key.record.id;
            tasks.spawn(async move {
                manager
                    .rotate(&acme(), &id, Duration::from_secs(60), Actor::System("race"))
                    .await
            });
        }
        let mut winners = Vec::new();
        let mut conflicts = 0;
        while let Some(joined) = tasks.join_next().await {
            match joined.unwrap() {
                Ok(created) => winners.push(created),
                Err(ManageError::Conflict) => conflicts += 1,
                Err(other) => panic!("unexpected error: {other}"),
            }
        }
        assert_eq!((winners.len(), conflicts), (1, 15));
        assert_eq!(w.status(&winners[0]).await, Ok(()));
        assert_eq!(w.keys(&acme()).await.len(), 2, "one successor, no forks");
        assert_eq!(
            w.actions_about(&acme(), &key.record.id).await,
            [AuditAction::KeyCreated, AuditAction::KeyRotated]
        );
    }

    /// A record returned by an operation equals the record read back, on every store,
    /// whatever the nanoseconds of the clock or of a given expiry (the SQL stores keep
    /// microseconds).
    pub(crate) async fn returned_records_equal_stored_ones<S: ManagedKeyStore>(w: World<S>) {
        let system = Actor::System("ops");
        let at = START + time::Duration::days(3) + time::Duration::nanoseconds(987);
        let created = w
            .manager
            .create(
                NewKey::new("x", acme())
                    .with_environment("live")
                    .with_expiry(Expiry::At(at)),
                system,
            )
            .await
            .unwrap();
        let stored = w.stored(&created.record.id).await;
        assert_eq!(stored, created.record);
        let next = w
            .manager
            .rotate(
                &acme(),
                &created.record.id,
                Duration::from_nanos(1_500),
                system,
            )
            .await
            .unwrap();
        let stored = w.stored(&next.record.id).await;
        assert_eq!(stored, next.record);
    }

    /// Sixteen tasks revoke one key at once: all succeed (revocation is idempotent), the
    /// key keeps one revocation time, and exactly one revocation is audited.
    pub(crate) async fn racing_revocations_are_audited_once<S: ManagedKeyStore>(w: World<S>) {
        let key = w.make(acme(), "live", &["employees:read"]).await;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let manager = w.manager.clone();
            let id = key.record.id;
            tasks.spawn(async move { manager.revoke(&acme(), &id, Actor::System("race")).await });
        }
        let mut times = std::collections::BTreeSet::new();
        while let Some(joined) = tasks.join_next().await {
            let record = joined.unwrap().expect("a revocation never fails on a race");
            times.insert(record.revoked_at.expect("revoked"));
        }
        assert_eq!(times.len(), 1, "one revocation time: {times:?}");
        assert_eq!(w.status(&key).await, Err(RejectionKind::Revoked));
        assert_eq!(
            w.actions_about(&acme(), &key.record.id).await,
            [AuditAction::KeyCreated, AuditAction::KeyRevoked]
        );
    }

    /// Every revocation is in the audit log once, whatever the clock's precision, and
    /// the next request is refused.
    pub(crate) async fn revocations_are_audited_once<S: ManagedKeyStore>(w: World<S>) {
        assert_ne!(
            w.clock.now().nanosecond() % 1_000,
            0,
            "sub-microsecond clock"
        );
        let mut keys = Vec::new();
        for _ in 0..5 {
            keys.push(w.make(acme(), "live", &[]).await);
        }
        for key in &keys {
            assert_eq!(w.status(key).await, Ok(()));
            w.manager
                .revoke(&acme(), &key.record.id, Actor::System("ops"))
                .await
                .unwrap();
            assert_eq!(w.status(key).await, Err(RejectionKind::Revoked));
            // Idempotent, and audited once.
            w.clock.advance(Duration::from_nanos(1_234));
            let again = w
                .manager
                .revoke(&acme(), &key.record.id, Actor::System("ops"))
                .await
                .unwrap();
            assert!(again.revoked_at.is_some());
        }
        let revocations = w
            .audit(&acme())
            .await
            .into_iter()
            .filter(|e| e.action == AuditAction::KeyRevoked)
            .count();
        assert_eq!(revocations, 5);
    }

    /// Entries carry the key's prefix and environment and the actor, a system actor
    /// named as such.
    pub(crate) async fn audit_entries_say_who_did_what<S: ManagedKeyStore>(w: World<S>) {
        let admin = w.make(acme(), "live", &ALL_SCOPES).await;
        let admin_p = w.principal(&admin).await;
        let test = w
            .manager
            .create(
                NewKey::new("t", acme())
                    .with_environment("test")
                    .with_scopes(["employees:read"]),
                Actor::Key(&admin_p),
            )
            .await
            .unwrap();
        let next = w
            .manager
            .rotate(
                &acme(),
                &test.record.id,
                Duration::ZERO,
                Actor::Key(&admin_p),
            )
            .await
            .unwrap();
        w.manager
            .set_scopes(
                &acme(),
                &next.record.id,
                ["employees:write"],
                Actor::Key(&admin_p),
            )
            .await
            .unwrap();
        w.manager
            .revoke(&acme(), &next.record.id, Actor::System("ops"))
            .await
            .unwrap();

        let mut log = w.audit(&acme()).await;
        log.reverse();
        let summary: Vec<(AuditAction, KeyId, AuditActor)> = log
            .iter()
            .map(|e| (e.action, e.api_key_id, e.actor.clone()))
            .collect();
        let by_admin = AuditActor::Key(admin.record.id);
        assert_eq!(
            summary,
            [
                (
                    AuditAction::KeyCreated,
                    admin.record.id,
                    AuditActor::System("bootstrap".into())
                ),
                (AuditAction::KeyCreated, test.record.id, by_admin.clone()),
                (AuditAction::KeyRotated, test.record.id, by_admin.clone()),
                (AuditAction::KeyCreated, next.record.id, by_admin.clone()),
                (AuditAction::KeyScopesChanged, next.record.id, by_admin),
                (
                    AuditAction::KeyRevoked,
                    next.record.id,
                    AuditActor::System("ops".into())
                ),
            ]
        );
        for entry in &log {
            let prefix = entry.prefix.as_deref().expect("every entry has the prefix");
            assert!(prefix.starts_with("pb_"), "{prefix}");
            assert!(entry.environment.is_some());
            assert!(entry.occurred_at >= START - time::Duration::microseconds(1));
        }
        assert!(log[1].prefix.as_deref().unwrap().starts_with("pb_test_"));
        assert_eq!(log[1].environment, Some(Environment::test()));
        assert_eq!(log[2].successor_key_id, Some(next.record.id));
        assert_eq!(log[4].scopes, ["employees:write"]);
        let json = serde_json::to_value(&log[5]).unwrap();
        assert_eq!(
            json["actor"],
            serde_json::json!({"kind": "system", "id": "ops"})
        );
        assert_eq!(json["environment"], "test");
        // No secret anywhere.
        let text = format!("{log:?}{}", serde_json::to_string(&log).unwrap());
        for key in [&admin, &test, &next] {
            let secret = key.key.expose_secret();
            assert!(!text.contains(&secret[key.record.prefix.len()..]));
        }
    }

    /// The random walk, 10,000 steps on the memory store, 1,000 on the SQL stores.
    pub(crate) async fn random_walk_keeps_every_invariant<S: ManagedKeyStore>(w: World<S>) {
        let steps = if std::any::type_name::<S>().contains("MemoryStore") {
            10_000
        } else {
            1_000
        };
        super::walk::run(&w, 0x5eed_1234_abcd_0001, steps).await;
    }
}

/// The model-based random walk: create, rotate, revoke, change scopes, get, list and
/// read the audit log, by random actors of two organizations and both environments,
/// with expiries, rotation grace periods and a clock that moves, each result predicted
/// by a reference model of the authority rules (down to which rule refuses), and the
/// store compared with the model after every step.
///
/// Actors are the system, keys that authenticate now (in a rotation's grace period
/// too), and principals held from earlier steps whatever their key became since (the
/// compare-and-set on the acting key: what the manager judged on the principal, the
/// store checks against the key as it stands).
mod walk {
    use super::*;

    /// A small deterministic generator (xorshift64*), so a failure replays.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn chance(&mut self, percent: u64) -> bool {
            self.next() % 100 < percent
        }

        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[self.below(items.len())]
        }
    }

    /// What the model knows of one key.
    #[derive(Clone)]
    struct Model {
        created: CreatedKey,
        owner: Owner,
        env: Environment,
        scopes: Vec<String>,
        revoked: bool,
        successor: Option<KeyId>,
        /// End of the grace period once superseded.
        valid_until: Option<OffsetDateTime>,
        expires_at: Option<OffsetDateTime>,
        /// The scopes (with implications) of the key that made this one, if a key did.
        maker_grants: Option<BTreeSet<String>>,
        /// The expiry of the key that made this one (or rotated it in), if it had one.
        maker_expiry: Option<OffsetDateTime>,
        /// Whether a test key is in this key's ancestry.
        test_lineage: bool,
    }

    impl Model {
        fn active(&self, now: OffsetDateTime) -> bool {
            !self.revoked
                && self.expires_at.is_none_or(|t| t > now)
                && self.valid_until.is_none_or(|t| t > now)
        }

        /// `ActingKey::holds` as the model sees it: whether this key, as it stands, is
        /// still the key `judged` was at authentication, usable at `at`.
        fn holds(&self, judged: &Self, at: OffsetDateTime) -> bool {
            !self.revoked
                && self.successor.is_none()
                && self.scopes == judged.scopes
                && self.expires_at == judged.expires_at
                && self.expires_at.is_none_or(|t| t > at)
        }
    }

    /// Which rule refuses.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum Rule {
        OtherOwner,
        Environment,
        GrantNotHeld,
        TargetNotHeld,
        Superseded,
        Outlives,
        ActorChanged,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum Expect {
        Ok,
        Denied(Rule),
        NotFound,
        Conflict,
    }

    fn kind<T>(result: &Result<T, ManageError>) -> Expect {
        let rule = match result {
            Ok(_) => return Expect::Ok,
            Err(ManageError::NotFound) => return Expect::NotFound,
            Err(ManageError::Conflict) => return Expect::Conflict,
            Err(ManageError::PermissionDenied(denied)) => denied,
            Err(other) => panic!("unexpected error: {other}"),
        };
        Expect::Denied(match rule {
            Denied::OtherOwner(_) => Rule::OtherOwner,
            Denied::Environment { .. } => Rule::Environment,
            Denied::GrantNotHeld(_) => Rule::GrantNotHeld,
            Denied::TargetNotHeld(_) => Rule::TargetNotHeld,
            Denied::Superseded => Rule::Superseded,
            Denied::Outlives(_) => Rule::Outlives,
            Denied::ActorChanged => Rule::ActorChanged,
            other => panic!("unexpected refusal: {other}"),
        })
    }

    /// Rule 6: whether a key expiring at `expires_at` would outlive `actor`.
    fn outlives(expires_at: Option<OffsetDateTime>, actor: &Model) -> bool {
        actor
            .expires_at
            .is_some_and(|limit| expires_at.is_none_or(|at| at > limit))
    }

    /// `t` cut to the whole microsecond, as the manager cuts its clock.
    fn whole_micros(t: OffsetDateTime) -> OffsetDateTime {
        t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
            .unwrap()
    }

    fn grants(scopes: &[String]) -> BTreeSet<String> {
        let model = super::model();
        let grants = model.grants(scopes);
        grants.iter().map(str::to_owned).collect()
    }

    /// The verdict unless `refusal` holds.
    fn unless(expect: Expect, refusal: bool, then: Expect) -> Expect {
        if expect == Expect::Ok && refusal {
            then
        } else {
            expect
        }
    }

    /// The acting key of a step: its index, the key as its principal shows it (as the
    /// manager judges it), and the principal.
    type Acting = (usize, Model, Principal);

    struct Walk<'w, S: ManagedKeyStore> {
        w: &'w World<S>,
        rng: Rng,
        keys: Vec<Model>,
        /// Principals of earlier steps, kept across later changes of their keys.
        held: Vec<Acting>,
        /// Audit entries the current step should have written, per owner.
        audited: HashMap<String, usize>,
        /// The newest audit entry id seen, per owner.
        last_entry: HashMap<String, u64>,
        /// How often each operation had each outcome.
        seen: BTreeSet<(&'static str, Expect)>,
    }

    pub(super) async fn run<S: ManagedKeyStore>(w: &World<S>, seed: u64, steps: usize) {
        let mut walk = Walk {
            w,
            rng: Rng(seed),
            keys: Vec::new(),
            held: Vec::new(),
            audited: HashMap::new(),
            last_entry: HashMap::new(),
            seen: BTreeSet::new(),
        };
        // Each organization starts with a live and a test admin that never expire.
        for owner in [acme(), globex()] {
            for env in ["live", "test"] {
                let created = w.make(owner.clone(), env, &ALL_SCOPES).await;
                walk.adopt(created, None, None, false);
                *walk.audited.entry(owner.id().to_owned()).or_default() += 1;
            }
        }
        walk.check(0).await;
        for step in 1..=steps {
            walk.step(step).await;
            walk.check(step).await;
        }
        // The walk reached every rule and every outcome, so the model was tested on
        // each of them.
        let outcomes: BTreeSet<Expect> = walk.seen.iter().map(|(_, e)| *e).collect();
        let rules = [
            Rule::OtherOwner,
            Rule::Environment,
            Rule::GrantNotHeld,
            Rule::TargetNotHeld,
            Rule::Superseded,
            Rule::Outlives,
            Rule::ActorChanged,
        ];
        for expect in rules.map(Expect::Denied).into_iter().chain([
            Expect::Ok,
            Expect::NotFound,
            Expect::Conflict,
        ]) {
            assert!(
                outcomes.contains(&expect),
                "never {expect:?}: {:?}",
                walk.seen
            );
        }
        // The long walk also reached each way a change meets the acting key: refused
        // by the manager for a rotated-away key, and by the store for a key that
        // changed after it was judged.
        let operations = if steps >= 10_000 {
            &["create", "rotate", "revoke", "set_scopes"][..]
        } else {
            &[]
        };
        for &operation in operations {
            for expect in [Rule::Superseded, Rule::ActorChanged].map(Expect::Denied) {
                assert!(
                    walk.seen.contains(&(operation, expect)),
                    "{operation} never {expect:?}: {:?}",
                    walk.seen
                );
            }
        }
    }

    impl<S: ManagedKeyStore> Walk<'_, S> {
        fn adopt(
            &mut self,
            created: CreatedKey,
            maker: Option<&Model>,
            maker_expiry: Option<OffsetDateTime>,
            lineage: bool,
        ) {
            let record = &created.record;
            self.keys.push(Model {
                owner: record.owner.clone(),
                env: record.environment.unwrap(),
                scopes: record.scopes.clone(),
                revoked: false,
                successor: None,
                valid_until: None,
                expires_at: record.expires_at,
                maker_grants: maker.map(|m| grants(&m.scopes)),
                maker_expiry,
                test_lineage: lineage
                    || maker.is_some_and(|m| m.test_lineage || m.env == Environment::test()),
                created,
            });
        }

        fn random_scopes(&mut self) -> Vec<String> {
            ALL_SCOPES
                .iter()
                .filter(|_| self.rng.chance(35))
                .map(|s| (*s).to_owned())
                .collect()
        }

        /// The model's verdict on `actor` acting on `target` as the manager judges it,
        /// before the store (rules 1, 2, 4 and 5).
        fn may_change(actor: Option<&Model>, owner: &Owner, target: &Model) -> Expect {
            let Some(actor) = actor else {
                return if &target.owner == owner {
                    Expect::Ok
                } else {
                    Expect::NotFound
                };
            };
            if actor.successor.is_some() {
                return Expect::Denied(Rule::Superseded);
            }
            // Another owner's key, or one out of the actor's environment, is missing.
            if &actor.owner != owner
                || &target.owner != owner
                || (actor.env != Environment::live() && actor.env != target.env)
            {
                return Expect::NotFound;
            }
            let held = grants(&actor.scopes);
            if target.scopes.iter().any(|s| !held.contains(s)) {
                return Expect::Denied(Rule::TargetNotHeld);
            }
            Expect::Ok
        }

        /// The actor of a step: the system, a principal held from an earlier step
        /// (whatever its key became since), or a key that authenticates now, which is
        /// then held for later steps.
        async fn actor(&mut self, now: OffsetDateTime) -> Option<Acting> {
            if self.rng.chance(10) {
                return None;
            }
            if !self.held.is_empty() && self.rng.chance(15) {
                let i = self.rng.below(self.held.len());
                return Some(self.held[i].clone());
            }
            let active: Vec<usize> = (0..self.keys.len())
                .filter(|&i| self.keys[i].active(now))
                .collect();
            if active.is_empty() {
                return None;
            }
            let index = active[self.rng.below(active.len())];
            let principal = self.w.principal(&self.keys[index].created).await;
            let acting = (index, self.keys[index].clone(), principal);
            if self.held.len() == 16 {
                self.held.remove(self.rng.below(16));
            }
            self.held.push(acting.clone());
            Some(acting)
        }

        async fn step(&mut self, step: usize) {
            let now = self.w.clock.now();
            // Time passes: keys expire, grace periods end.
            if self.rng.chance(12) {
                let secs = self.rng.pick(&[1, 30, 300, 3_600, 86_400]);
                self.w.clock.advance(Duration::from_secs(secs));
                return;
            }
            if self.rng.chance(2) {
                self.w.clock.advance(Duration::from_secs(7 * 86_400 + 1));
                return;
            }
            let at = whole_micros(now);
            let acting = self.actor(now).await;
            let judged = acting.as_ref().map(|(_, m, _)| m.clone());
            let judged = judged.as_ref();
            // Whether the store still finds the acting key as it was judged.
            let holds = acting
                .as_ref()
                .is_none_or(|(i, m, _)| self.keys[*i].holds(m, at));
            let actor = match &acting {
                Some((_, _, p)) => Actor::Key(p),
                None => Actor::System("walk"),
            };
            let superseded = judged.is_some_and(|a| a.successor.is_some());
            // Mostly the actor's own organization, sometimes the other one.
            let owner = match (judged, self.rng.chance(15)) {
                (Some(m), false) => m.owner.clone(),
                _ => [acme(), globex()][self.rng.below(2)].clone(),
            };
            // Any key; more often one that still works, or the key of a held principal
            // (so that held principals' keys change under them).
            let active: Vec<usize> = (0..self.keys.len())
                .filter(|&i| self.keys[i].active(now))
                .collect();
            let target_index = match self.rng.below(10) {
                0..=2 if !self.held.is_empty() => self.held[self.rng.below(self.held.len())].0,
                3..=5 if !active.is_empty() => active[self.rng.below(active.len())],
                _ => self.rng.below(self.keys.len()),
            };
            let target = self.keys[target_index].clone();
            let target_id = target.created.record.id;
            let manager = &self.w.manager;
            let org = owner.id().to_owned();

            let (operation, outcome) = match self.rng.below(7) {
                0 => {
                    let env = if self.rng.chance(50) { "live" } else { "test" };
                    let scopes = self.random_scopes();
                    let limit = judged.and_then(|a| a.expires_at).filter(|&t| t > at);
                    let expiry = match (self.rng.below(10), limit) {
                        (0..=2, _) => Expiry::Never,
                        (3, _) => Expiry::Days30,
                        (4..=6, _) | (_, None) => {
                            let secs = self.rng.pick(&[1, 30, 300, 3_600, 3 * 86_400]);
                            Expiry::At(now + time::Duration::seconds(secs))
                        }
                        (_, Some(limit)) => Expiry::At(limit),
                    };
                    let expires_at = match expiry {
                        Expiry::Never => None,
                        Expiry::Days30 => Some(at + time::Duration::days(30)),
                        Expiry::At(t) => Some(whole_micros(t)),
                        _ => unreachable!(),
                    };
                    let expect = match judged {
                        None => Expect::Ok,
                        Some(_) if superseded => Expect::Denied(Rule::Superseded),
                        Some(a) if a.owner != owner => Expect::Denied(Rule::OtherOwner),
                        Some(a) if a.env != Environment::live() && a.env.as_str() != env => {
                            Expect::Denied(Rule::Environment)
                        }
                        Some(a) => {
                            let held = grants(&a.scopes);
                            let expect = unless(
                                Expect::Ok,
                                scopes.iter().any(|s| !held.contains(s)),
                                Expect::Denied(Rule::GrantNotHeld),
                            );
                            let expect = unless(
                                expect,
                                outlives(expires_at, a),
                                Expect::Denied(Rule::Outlives),
                            );
                            unless(expect, !holds, Expect::Denied(Rule::ActorChanged))
                        }
                    };
                    let new = NewKey::new("walk", owner.clone())
                        .with_environment(env)
                        .with_scopes(scopes.clone())
                        .with_expiry(expiry);
                    let result = manager.create(new, actor).await;
                    let outcome = kind(&result);
                    assert_eq!(outcome, expect, "step {step}: create");
                    if let Ok(created) = result {
                        assert_eq!(created.record.scopes, scopes);
                        assert_eq!(created.record.expires_at, expires_at, "step {step}");
                        let maker_expiry = judged.and_then(|a| a.expires_at);
                        self.adopt(created, judged, maker_expiry, false);
                        *self.audited.entry(org).or_default() += 1;
                    }
                    ("create", outcome)
                }
                1 => {
                    let grace = self.rng.pick(&[0, 1, 60, 3_600, 86_400]);
                    let expect = Self::may_change(judged, &owner, &target);
                    // Rule 6: the successor keeps the target's expiry, and the actor
                    // receives its secret.
                    let expect = unless(
                        expect,
                        judged.is_some_and(|a| outlives(target.expires_at, a)),
                        Expect::Denied(Rule::Outlives),
                    );
                    let expect = unless(
                        expect,
                        target.revoked
                            || target.successor.is_some()
                            || target.expires_at.is_some_and(|t| t <= at),
                        Expect::Conflict,
                    );
                    let expect = unless(expect, !holds, Expect::Denied(Rule::ActorChanged));
                    let result = manager
                        .rotate(&owner, &target_id, Duration::from_secs(grace), actor)
                        .await;
                    let outcome = kind(&result);
                    assert_eq!(outcome, expect, "step {step}: rotate");
                    if let Ok(created) = result {
                        assert_eq!(created.record.scopes, target.scopes);
                        assert_eq!(created.record.environment, Some(target.env));
                        assert_eq!(created.record.expires_at, target.expires_at);
                        let lineage = target.test_lineage
                            || judged.is_some_and(|a| a.env == Environment::test());
                        let successor = created.record.id;
                        let t = &mut self.keys[target_index];
                        t.successor = Some(successor);
                        t.valid_until = Some(at + time::Duration::seconds(grace as i64));
                        let maker = judged.cloned().unwrap_or_else(|| target.clone());
                        let maker_expiry = judged.and_then(|a| a.expires_at);
                        self.adopt(created, Some(&maker), maker_expiry, lineage);
                        *self.audited.entry(org).or_default() += 2;
                    }
                    ("rotate", outcome)
                }
                2 => {
                    let expect = Self::may_change(judged, &owner, &target);
                    // Revoking a revoked key changes nothing and asks the store nothing.
                    let expect = unless(
                        expect,
                        !target.revoked && !holds,
                        Expect::Denied(Rule::ActorChanged),
                    );
                    let result = manager.revoke(&owner, &target_id, actor).await;
                    let outcome = kind(&result);
                    assert_eq!(outcome, expect, "step {step}: revoke");
                    if result.is_ok() && !target.revoked {
                        self.keys[target_index].revoked = true;
                        *self.audited.entry(org).or_default() += 1;
                    }
                    ("revoke", outcome)
                }
                3 => {
                    let scopes = self.random_scopes();
                    let expect = Self::may_change(judged, &owner, &target);
                    let expect = unless(
                        expect,
                        judged.is_some_and(|a| {
                            let held = grants(&a.scopes);
                            scopes.iter().any(|s| !held.contains(s))
                        }),
                        Expect::Denied(Rule::GrantNotHeld),
                    );
                    let expect = unless(expect, target.revoked, Expect::Conflict);
                    let expect = unless(expect, !holds, Expect::Denied(Rule::ActorChanged));
                    let result = manager
                        .set_scopes(&owner, &target_id, scopes.clone(), actor)
                        .await;
                    let outcome = kind(&result);
                    assert_eq!(outcome, expect, "step {step}: set_scopes");
                    if result.is_ok() {
                        let t = &mut self.keys[target_index];
                        t.scopes = scopes;
                        // The system is exempt; a key grants only what it holds.
                        t.maker_grants = judged.map(|a| grants(&a.scopes));
                        if let Some(a) = judged {
                            t.test_lineage |= a.env == Environment::test();
                        }
                        *self.audited.entry(org).or_default() += 1;
                    }
                    ("set_scopes", outcome)
                }
                4 => {
                    // A read is judged on the request's key as it authenticated.
                    let expect = match judged {
                        Some(_) if superseded => Expect::Denied(Rule::Superseded),
                        Some(a) if a.owner != owner => Expect::NotFound,
                        _ if target.owner != owner => Expect::NotFound,
                        Some(a) if a.env != Environment::live() && a.env != target.env => {
                            Expect::NotFound
                        }
                        _ => Expect::Ok,
                    };
                    let result = manager.get(&owner, &target_id, actor).await;
                    let outcome = kind(&result);
                    assert_eq!(outcome, expect, "step {step}: get");
                    ("get", outcome)
                }
                5 => {
                    let result = manager.list(&owner, actor).await;
                    let outcome = kind(&result);
                    match judged {
                        Some(_) if superseded => {
                            assert_eq!(outcome, Expect::Denied(Rule::Superseded), "step {step}");
                        }
                        Some(a) if a.owner != owner => {
                            assert_eq!(outcome, Expect::Denied(Rule::OtherOwner), "step {step}");
                        }
                        _ => {
                            let listed = result.unwrap();
                            let visible = |m: &Model| {
                                m.owner == owner
                                    && judged.is_none_or(|a| {
                                        a.env == Environment::live() || a.env == m.env
                                    })
                            };
                            let expected = self.keys.iter().filter(|m| visible(m)).count();
                            assert_eq!(listed.len(), expected, "step {step}: list");
                        }
                    }
                    ("list", outcome)
                }
                _ => {
                    let query = AuditQuery::new(owner.clone());
                    let result = manager.audit_log(query, actor).await;
                    let outcome = kind(&result);
                    match judged {
                        Some(_) if superseded => {
                            assert_eq!(outcome, Expect::Denied(Rule::Superseded), "step {step}");
                        }
                        Some(a) if a.owner != owner => {
                            assert_eq!(outcome, Expect::Denied(Rule::OtherOwner), "step {step}");
                        }
                        _ => {
                            let entries = result.unwrap();
                            assert!(!entries.is_empty(), "step {step}: audit log");
                            let reaches = |e: &AuditEntry| {
                                judged.is_none_or(|a| {
                                    a.env == Environment::live() || e.environment == Some(a.env)
                                })
                            };
                            assert!(entries.iter().all(reaches), "step {step}: audit log");
                        }
                    }
                    ("audit_log", outcome)
                }
            };
            self.seen.insert((operation, outcome));
        }

        /// The store against the model, and the invariants.
        async fn check(&mut self, step: usize) {
            for owner in [acme(), globex()] {
                let stored = self.w.keys(&owner).await;
                let modeled: Vec<&Model> = self.keys.iter().filter(|m| m.owner == owner).collect();
                assert_eq!(
                    stored.len(),
                    modeled.len(),
                    "step {step}: keys of {owner:?}"
                );
                let mut successors = BTreeSet::new();
                for record in &stored {
                    let m = modeled
                        .iter()
                        .find(|m| m.created.record.id == record.id)
                        .unwrap_or_else(|| panic!("step {step}: unknown key {}", record.id));
                    assert_eq!(record.scopes, m.scopes, "step {step}: scopes");
                    assert_eq!(
                        record.revoked_at.is_some(),
                        m.revoked,
                        "step {step}: revoked"
                    );
                    assert_eq!(
                        record.rotation.map(|r| (r.superseded_by, r.valid_until)),
                        m.successor.zip(m.valid_until),
                        "step {step}: rotation"
                    );
                    assert_eq!(record.expires_at, m.expires_at, "step {step}: expiry");
                    // No key holds a scope outside what its maker held.
                    if let Some(maker) = &m.maker_grants {
                        assert!(
                            record.scopes.iter().all(|s| maker.contains(s)),
                            "step {step}: {} holds more than its maker",
                            record.id
                        );
                    }
                    // No key outlives the expiring key that made it or rotated it in.
                    if let Some(limit) = m.maker_expiry {
                        assert!(
                            record.expires_at.is_some_and(|t| t <= limit),
                            "step {step}: {} outlives its maker",
                            record.id
                        );
                    }
                    // No test key led to a live key.
                    if m.test_lineage {
                        assert_eq!(
                            record.environment,
                            Some(Environment::test()),
                            "step {step}: a test key led to a live key"
                        );
                    }
                    // At most one successor per key.
                    if let Some(r) = record.rotation {
                        assert!(successors.insert(r.superseded_by), "step {step}: a fork");
                    }
                }
                // Every successful operation is audited exactly once: the step wrote
                // exactly the entries it should have, no more (read one extra).
                let expected = self.audited.remove(owner.id()).unwrap_or(0);
                let query = AuditQuery::new(owner.clone()).with_limit(expected as u32 + 1);
                let entries = self
                    .w
                    .manager
                    .audit_log(query, Actor::System("check"))
                    .await
                    .unwrap();
                let last = self.last_entry.get(owner.id()).copied().unwrap_or(0);
                let new = entries.iter().filter(|e| e.id > last).count();
                assert_eq!(new, expected, "step {step}: audit entries of {owner:?}");
                if let Some(newest) = entries.first() {
                    self.last_entry
                        .insert(owner.id().to_owned(), newest.id.max(last));
                }
            }
        }
    }
}

/// Runs every case against one kind of store. `$open` gives `Option<(store, guard)>`
/// (`None`: skipped); the guard keeps the database alive until the case ends.
macro_rules! suite {
    ($module:ident, $open:expr) => {
        suite!(@cases $module, $open,
            escalations_are_refused_and_change_nothing,
            positive_controls_are_allowed,
            a_replaced_key_manages_nothing,
            no_key_outlives_its_maker,
            an_actor_changed_after_it_was_judged_changes_nothing,
            rotation_rules_hold,
            racing_rotations_have_one_winner,
            keys_rotating_each_other_have_one_winner,
            racing_revocations_are_audited_once,
            returned_records_equal_stored_ones,
            revocations_are_audited_once,
            audit_entries_say_who_did_what,
            random_walk_keeps_every_invariant,
        );
    };
    (@cases $module:ident, $open:expr, $($case:ident),* $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    // `_guard` keeps the database until the case ends.
                    let Some((store, _guard)) = ($open) else { return };
                    super::cases::$case(World::new(store)).await;
                }
            )*
        }
    };
}

suite!(memory, Some((MemoryStore::new(), ())));

#[cfg(feature = "sqlite")]
suite!(sqlite, {
    let db = support::stores::TempDb::new().await;
    Some((db.store.clone(), db))
});

#[cfg(feature = "postgres")]
suite!(
    postgres,
    support::stores::TestSchema::new()
        .await
        .map(|db| (db.store.clone(), db))
);
