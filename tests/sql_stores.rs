//! The key stores against one contract, and what only the SQL stores promise:
//! durability across `kill -9` (SQLite), revocation reaching other instances within a
//! second, a listener that survives losing its connection, and outages that answer 503
//! and heal by themselves (PostgreSQL).
//!
//! The PostgreSQL tests run against a real server when `TOWER_API_KEY_TEST_POSTGRES_URL`
//! is set (for example `postgres://postgres@127.0.0.1:5432/test`), each in a fresh
//! schema of its own; otherwise they say they were skipped and pass.

mod support;

use std::collections::HashSet;

use support::pb_format;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use tower_api_key::audit::{AuditAction, AuditActor, AuditEntry, AuditQuery, AuditSink, Auditor};
use tower_api_key::key::Environment;
use tower_api_key::key::{Digest, KeyId, Presented, TagKey};
use tower_api_key::store::{
    ActingKey, Applied, Change, KeyQuery, KeyRecord, KeyState, KeyStore, ManagedKeyStore,
    MemoryStore, Owner, Rotation, StoreError,
};

/// A time with whole microseconds: SQL stores keep microsecond precision.
const T0: OffsetDateTime = datetime!(2026-01-02 03:04:05.123456 UTC);

fn new_key(owner: Owner, created_at: OffsetDateTime) -> KeyRecord {
    let minted = pb_format().generate(Some("live")).unwrap();
    KeyRecord::new(
        &minted,
        "test key",
        owner,
        vec!["employees:read".into()],
        created_at,
    )
}

fn acme() -> Owner {
    Owner::organization("acme")
}

/// Whether a key tagged under `minting` verifies under `verifying`.
fn tagged_verifies(minting: &TagKey, verifying: &TagKey) -> bool {
    let minted = pb_format().generate_tagged(Some("live"), minting).unwrap();
    match pb_format().parse(minted.key.expose_secret()) {
        Some(Presented::Native(parsed)) => parsed.tag_verifies(verifying),
        _ => panic!("a minted key parses"),
    }
}

/// One shared suite: every [`KeyStore`] must pass it.
mod cases {
    use super::*;

    /// A record with every field set, including the ones only the store changes.
    fn full_record() -> KeyRecord {
        let mut r = new_key(acme(), T0)
            .with_created_by("user_42")
            .with_expires_at(Some(T0 + Duration::days(90)));
        r.scopes = vec![
            "employees:read".into(),
            "payroll:write".into(),
            "ünï".into(),
        ];
        r.revoked_at = Some(T0 + Duration::hours(1));
        r.rotation = Some(Rotation {
            superseded_by: KeyId::new("successor01").unwrap(),
            valid_until: T0 + Duration::days(7),
        });
        r.family = KeyId::new("family00001").unwrap();
        r.last_used_at = Some(T0 + Duration::minutes(5));
        r.rate_limit_policy = Some("gold".into());
        r.metadata = serde_json::json!({
            "team": "payroll",
            "nested": {"list": [1, 2.5, "three", null, true], "empty": {}},
            "unicode": "日本語 ✓",
            "big": 9_007_199_254_740_991_i64,
        })
        .as_object()
        .unwrap()
        .clone();
        r
    }

    pub(crate) async fn every_field_round_trips<S: ManagedKeyStore>(store: &S) {
        let full = full_record();
        let minimal = {
            let mut r = new_key(Owner::user("u_1"), T0);
            r.environment = None;
            r.scopes.clear();
            r
        };
        let foreign = "sk_live_0123456789abcdefghijklmnopqrstuvwxyz";
        let imported = KeyRecord::imported(
            KeyId::generate().unwrap(),
            Digest::of(foreign),
            "sk_live_0123",
            "imported",
            acme(),
            vec!["public_api".into()],
            T0,
        )
        .with_environment(Some(tower_api_key::key::Environment::live()));
        for record in [&full, &minimal, &imported] {
            store.insert(record).await.unwrap();
            let by_id = store.get(&record.id).await.unwrap().expect("inserted");
            assert!(by_id == *record, "by id:\n{by_id:#?}\n!=\n{record:#?}");
            assert_eq!(by_id.metadata, record.metadata);
            assert_eq!(by_id.family, record.family);
            assert_eq!(by_id.created_by, record.created_by);
            assert_eq!(by_id.rate_limit_policy, record.rate_limit_policy);
            assert_eq!(by_id.imported, record.imported);
            let by_digest = store.get_by_digest(&record.digest).await.unwrap();
            assert!(by_digest.as_ref() == Some(record), "by digest");
        }
        assert!(imported.imported && !full.imported);
        let found = store.get_by_digest(&Digest::of(foreign)).await.unwrap();
        assert_eq!(found.unwrap().id, imported.id);
    }

    /// One tag secret, the same on every read: a key tagged under the first read
    /// verifies under the second (as it would on another instance).
    pub(crate) async fn the_tag_secret_is_one_and_stable<S: ManagedKeyStore>(store: &S) {
        let first = store.tag_keys().await.unwrap();
        let again = store.tag_keys().await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(again.len(), 1);
        assert_eq!(first[0].id(), '0');
        assert!(tagged_verifies(&first[0], &again[0]));
    }

    pub(crate) async fn unknown_ids_and_digests_are_none<S: ManagedKeyStore>(store: &S) {
        store.insert(&new_key(acme(), T0)).await.unwrap();
        assert!(store
            .get(&KeyId::new("nobody").unwrap())
            .await
            .unwrap()
            .is_none());
        assert!(store
            .get_by_digest(&Digest::of("nothing"))
            .await
            .unwrap()
            .is_none());
    }

    pub(crate) async fn duplicate_ids_and_digests_conflict<S: ManagedKeyStore>(store: &S) {
        let original = new_key(acme(), T0);
        store.insert(&original).await.unwrap();

        let mut same_id = new_key(acme(), T0);
        same_id.id = original.id;
        same_id.name = "intruder".into();
        assert!(matches!(
            store.insert(&same_id).await,
            Err(StoreError::Conflict)
        ));

        let mut same_digest = new_key(acme(), T0);
        same_digest.digest = original.digest;
        assert!(matches!(
            store.insert(&same_digest).await,
            Err(StoreError::Conflict)
        ));
        assert!(store.get(&same_digest.id).await.unwrap().is_none());
        assert_eq!(store.get(&original.id).await.unwrap().unwrap(), original);
    }

    pub(crate) async fn update_replaces_only_editable_fields<S: ManagedKeyStore>(store: &S) {
        let original = new_key(acme(), T0);
        store.insert(&original).await.unwrap();
        rotate(store, &original, T0 + Duration::days(1)).await;
        store
            .touch_last_used(&[(original.id, T0 + Duration::minutes(3))])
            .await
            .unwrap();
        let revoked_at = T0 + Duration::hours(2);
        store.revoke(&original.id, revoked_at).await.unwrap();
        let before = store.get(&original.id).await.unwrap().unwrap();

        // A stale copy, edited: the non-editable fields it carries must be ignored.
        let mut edit = original.clone();
        edit.name = "renamed".into();
        edit.scopes = vec!["a:read".into(), "b:write".into()];
        edit.expires_at = Some(T0 + Duration::days(30));
        edit.rate_limit_policy = Some("bronze".into());
        edit.metadata
            .insert("k".into(), serde_json::json!({"v": [1, 2]}));
        edit.revoked_at = None;
        edit.rotation = None;
        edit.last_used_at = None;
        edit.created_at = T0 + Duration::days(400);
        edit.prefix = "pb_live_other".into();
        edit.owner = Owner::organization("evil");
        edit.created_by = Some("someone".into());
        store.update(&edit).await.unwrap();

        let after = store.get(&original.id).await.unwrap().unwrap();
        assert_eq!(after.name, "renamed");
        assert_eq!(after.scopes, edit.scopes);
        assert_eq!(after.expires_at, edit.expires_at);
        assert_eq!(after.rate_limit_policy, edit.rate_limit_policy);
        assert_eq!(after.metadata, edit.metadata);
        // Untouched:
        assert_eq!(after.revoked_at, Some(revoked_at));
        assert_eq!(after.rotation, before.rotation);
        assert_eq!(after.last_used_at, before.last_used_at);
        assert_eq!(after.created_at, before.created_at);
        assert_eq!(after.prefix, before.prefix);
        assert_eq!(after.owner, before.owner);
        assert_eq!(after.created_by, before.created_by);
        assert_eq!(after.digest, before.digest);
        assert_eq!(after.family, before.family);

        let unknown = new_key(acme(), T0);
        assert!(matches!(
            store.update(&unknown).await,
            Err(StoreError::NotFound)
        ));
    }

    pub(crate) async fn revoke_is_idempotent_and_keeps_the_first_time<S: ManagedKeyStore>(
        store: &S,
    ) {
        let key = new_key(acme(), T0);
        store.insert(&key).await.unwrap();
        let first = T0 + Duration::minutes(1);
        let revoked = store.revoke(&key.id, first).await.unwrap().unwrap();
        assert_eq!(revoked.revoked_at, Some(first));
        assert_eq!(revoked.id, key.id);

        let again = store
            .revoke(&key.id, T0 + Duration::minutes(9))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.revoked_at, Some(first), "the first revocation stands");
        let earlier = store.revoke(&key.id, T0).await.unwrap().unwrap();
        assert_eq!(earlier.revoked_at, Some(first));
        assert_eq!(
            store.get(&key.id).await.unwrap().unwrap().revoked_at,
            Some(first)
        );
        assert!(store
            .revoke(&KeyId::new("nobody").unwrap(), T0)
            .await
            .unwrap()
            .is_none());
    }

    /// A successor for `key` that a rotation accepts: same owner, scopes and expiry.
    fn successor_of(key: &KeyRecord) -> KeyRecord {
        let mut next = new_key(key.owner.clone(), T0);
        next.scopes.clone_from(&key.scopes);
        next.expires_at = key.expires_at;
        next.family = key.family;
        next
    }

    /// Rotates `key` (unaudited), which must succeed; returns the successor.
    async fn rotate<S: ManagedKeyStore>(
        store: &S,
        key: &KeyRecord,
        until: OffsetDateTime,
    ) -> KeyRecord {
        let next = successor_of(key);
        let change = Change::Rotate {
            id: &key.id,
            successor: &next,
            valid_until: until,
            at: T0,
            actor: None,
        };
        let applied = store.apply(change, &[]).await.unwrap();
        assert!(matches!(applied, Applied::Done(_)), "{applied:?}");
        next
    }

    fn audit(action: AuditAction, key: &KeyRecord, at: OffsetDateTime) -> AuditEntry {
        AuditEntry::about(action, key, AuditActor::System("contract".into()), at)
    }

    async fn audited<S: ManagedKeyStore>(store: &S, key: &KeyRecord) -> Vec<AuditAction> {
        let query = AuditQuery::new(key.owner.clone()).for_key(key.id);
        let mut actions: Vec<AuditAction> = store
            .audit_log(&query)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        actions.reverse();
        actions
    }

    pub(crate) async fn rotation_is_conditional_and_both_or_neither<S: ManagedKeyStore>(store: &S) {
        let key = new_key(acme(), T0).with_expires_at(Some(T0 + Duration::days(30)));
        store.insert(&key).await.unwrap();
        let until = T0 + Duration::days(1);
        let next = successor_of(&key);
        let entry = audit(AuditAction::KeyRotated, &key, T0);
        let rotate = |next: &KeyRecord, at| {
            let next = next.clone();
            let key = key.id;
            let entry = entry.clone();
            let store = store.clone();
            async move {
                let change = Change::Rotate {
                    id: &key,
                    successor: &next,
                    valid_until: until,
                    at,
                    actor: None,
                };
                store.apply(change, &[entry]).await
            }
        };

        // A successor whose scopes or expiry differ from the key's as stored (the key
        // changed after the caller read it) is refused, and nothing is written.
        let mut wider = successor_of(&key);
        wider.scopes.push("employees:write".into());
        let mut longer = successor_of(&key);
        longer.expires_at = None;
        for stale in [&wider, &longer] {
            assert!(matches!(
                rotate(stale, T0).await.unwrap(),
                Applied::Refused(_)
            ));
            assert!(store.get(&stale.id).await.unwrap().is_none());
        }
        // Past its expiry, a key cannot be rotated.
        assert!(matches!(
            rotate(&next, T0 + Duration::days(30)).await.unwrap(),
            Applied::Refused(_)
        ));
        // A successor whose id is taken: an error, and the old key is untouched.
        let mut taken = successor_of(&key);
        taken.id = key.id;
        assert!(matches!(
            rotate(&taken, T0).await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(store.get(&key.id).await.unwrap().unwrap().rotation, None);
        assert!(audited(store, &key).await.is_empty(), "nothing audited yet");

        let Applied::Done(rotated) = rotate(&next, T0).await.unwrap() else {
            panic!("the rotation was refused");
        };
        let rotation = Rotation {
            superseded_by: next.id,
            valid_until: until,
        };
        assert_eq!(rotated.rotation, Some(rotation));
        assert_eq!(store.get(&next.id).await.unwrap().unwrap(), next);
        assert_eq!(audited(store, &key).await, [AuditAction::KeyRotated]);
        // In grace until `until`, then superseded: rotation state round-trips.
        let stored = store.get(&key.id).await.unwrap().unwrap();
        assert_eq!(
            stored.status_at(T0),
            tower_api_key::store::KeyStatus::InGrace(until)
        );
        assert_eq!(
            stored.status_at(until),
            tower_api_key::store::KeyStatus::Superseded
        );

        // Superseded once: a second rotation is refused, its successor not stored.
        let second = successor_of(&key);
        assert!(matches!(
            rotate(&second, T0).await.unwrap(),
            Applied::Refused(_)
        ));
        assert!(store.get(&second.id).await.unwrap().is_none());

        // A revoked key is never rotated, and the refusal changes nothing.
        let other = new_key(acme(), T0);
        store.insert(&other).await.unwrap();
        store.revoke(&other.id, T0).await.unwrap();
        let change = Change::Rotate {
            id: &other.id,
            successor: &successor_of(&other),
            valid_until: until,
            at: T0,
            actor: None,
        };
        let Applied::Refused(stored) = store.apply(change, &[]).await.unwrap() else {
            panic!("a revoked key was rotated");
        };
        assert_eq!(stored.rotation, None);
        assert_eq!(stored.revoked_at, Some(T0));
        assert_eq!(audited(store, &key).await, [AuditAction::KeyRotated]);

        let nobody = KeyId::new("nobody").unwrap();
        let change = Change::Rotate {
            id: &nobody,
            successor: &successor_of(&other),
            valid_until: until,
            at: T0,
            actor: None,
        };
        assert_eq!(store.apply(change, &[]).await.unwrap(), Applied::NotFound);
    }

    /// Whether a call revoked the key is the store's answer, and only that call's audit
    /// entry is written.
    pub(crate) async fn revocation_and_scope_changes_are_decided_by_the_store<
        S: ManagedKeyStore,
    >(
        store: &S,
    ) {
        let key = new_key(acme(), T0);
        store.insert(&key).await.unwrap();
        let revoke = |at| Change::Revoke {
            id: &key.id,
            at,
            scopes: None,
            actor: None,
        };
        // The scopes the caller judged the key by changed since: not revoked.
        let judged = vec!["employees:write".to_owned()];
        let change = Change::Revoke {
            id: &key.id,
            at: T0,
            scopes: Some(&judged),
            actor: None,
        };
        let entry = audit(AuditAction::KeyRevoked, &key, T0);
        assert!(matches!(
            store.apply(change, &[entry]).await.unwrap(),
            Applied::Refused(ref r) if r.revoked_at.is_none()
        ));
        assert!(audited(store, &key).await.is_empty());
        let first = store
            .apply(revoke(T0), &[audit(AuditAction::KeyRevoked, &key, T0)])
            .await
            .unwrap();
        assert!(matches!(first, Applied::Done(ref r) if r.revoked_at == Some(T0)));
        let later = T0 + Duration::seconds(1);
        let second = store
            .apply(
                revoke(later),
                &[audit(AuditAction::KeyRevoked, &key, later)],
            )
            .await
            .unwrap();
        assert!(matches!(second, Applied::Refused(ref r) if r.revoked_at == Some(T0)));
        assert_eq!(audited(store, &key).await, [AuditAction::KeyRevoked]);

        // Scopes: compare-and-set against what the caller saw.
        let other = new_key(acme(), T0);
        store.insert(&other).await.unwrap();
        let wanted = vec!["employees:write".to_owned()];
        let stale = vec!["nothing:read".to_owned()];
        let entry = audit(AuditAction::KeyScopesChanged, &other, T0);
        let set = |from: &[String]| {
            let (from, to, id, entry) = (from.to_vec(), wanted.clone(), other.id, entry.clone());
            let store = store.clone();
            async move {
                let change = Change::SetScopes {
                    id: &id,
                    from: &from,
                    to: &to,
                    actor: None,
                };
                store.apply(change, &[entry]).await.unwrap()
            }
        };
        assert!(matches!(set(&stale).await, Applied::Refused(_)));
        assert!(audited(store, &other).await.is_empty());
        let Applied::Done(changed) = set(&other.scopes).await else {
            panic!("the scope change was refused");
        };
        assert_eq!(changed.scopes, wanted);
        assert_eq!(store.get(&other.id).await.unwrap().unwrap().scopes, wanted);
        assert_eq!(
            audited(store, &other).await,
            [AuditAction::KeyScopesChanged]
        );
        // Not on a revoked key.
        store.revoke(&other.id, T0).await.unwrap();
        assert!(matches!(set(&wanted).await, Applied::Refused(_)));
        let nobody = KeyId::new("nobody").unwrap();
        let change = Change::SetScopes {
            id: &nobody,
            from: &[],
            to: &[],
            actor: None,
        };
        assert_eq!(store.apply(change, &[]).await.unwrap(), Applied::NotFound);
        // An insert that conflicts writes no entry either.
        let entry = audit(AuditAction::KeyCreated, &key, T0);
        assert!(matches!(
            store
                .apply(
                    Change::Insert {
                        record: &key,
                        actor: None
                    },
                    &[entry]
                )
                .await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(audited(store, &key).await, [AuditAction::KeyRevoked]);
    }

    /// A change made by a key carries that key as the manager judged it, and the store
    /// checks it in the change's own transaction: an actor revoked, re-scoped, re-dated,
    /// rotated away (even in its grace period), expired or gone since it was judged
    /// changes nothing, whatever the change, and writes no audit entry.
    pub(crate) async fn a_change_by_an_actor_changed_since_it_was_judged_is_refused<
        S: ManagedKeyStore,
    >(
        store: &S,
    ) {
        let target = new_key(acme(), T0);
        store.insert(&target).await.unwrap();
        let actor = |scopes: &[&str]| {
            let mut key = new_key(acme(), T0).with_expires_at(Some(T0 + Duration::days(1)));
            key.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
            key
        };
        // Every kind of change, made by `judged`: none may be made.
        let refused = |judged: KeyRecord, at: OffsetDateTime| {
            let (store, target) = (store.clone(), target.clone());
            async move {
                let acting = Some(ActingKey::new(&judged, at));
                let created = new_key(acme(), T0);
                let next = successor_of(&target);
                let wanted = vec!["employees:write".to_owned()];
                let entry = |action| audit(action, &target, at);
                let changes = [
                    Change::Insert {
                        record: &created,
                        actor: acting,
                    },
                    Change::Revoke {
                        id: &target.id,
                        at,
                        scopes: Some(&target.scopes),
                        actor: acting,
                    },
                    Change::SetScopes {
                        id: &target.id,
                        from: &target.scopes,
                        to: &wanted,
                        actor: acting,
                    },
                    Change::Rename {
                        id: &target.id,
                        name: "renamed",
                        actor: acting,
                    },
                    Change::Rotate {
                        id: &target.id,
                        successor: &next,
                        valid_until: at,
                        at,
                        actor: acting,
                    },
                ];
                for change in changes {
                    let applied = store
                        .apply(change, &[entry(AuditAction::KeyRevoked)])
                        .await
                        .unwrap();
                    assert_eq!(applied, Applied::ActorChanged, "{change:?}");
                }
                assert!(store.get(&created.id).await.unwrap().is_none());
                assert!(store.get(&next.id).await.unwrap().is_none());
                assert_eq!(store.get(&target.id).await.unwrap().unwrap(), target);
                assert!(audited(&store, &target).await.is_empty(), "audited anyway");
            }
        };

        // Revoked between the judgement and the write.
        let revoked = actor(&["api_keys:write"]);
        store.insert(&revoked).await.unwrap();
        store.revoke(&revoked.id, T0).await.unwrap();
        refused(revoked, T0).await;

        // Re-scoped: narrowed (or widened: what was judged is not what is stored).
        let rescoped = actor(&["api_keys:write"]);
        store.insert(&rescoped).await.unwrap();
        let narrowed = vec!["api_keys:read".to_owned()];
        let change = Change::SetScopes {
            id: &rescoped.id,
            from: &rescoped.scopes,
            to: &narrowed,
            actor: None,
        };
        assert!(matches!(
            store.apply(change, &[]).await.unwrap(),
            Applied::Done(_)
        ));
        refused(rescoped.clone(), T0).await;

        // Re-dated: given a later expiry, or none.
        let redated = actor(&["api_keys:write"]);
        store.insert(&redated).await.unwrap();
        store
            .update(&redated.clone().with_expires_at(None))
            .await
            .unwrap();
        refused(redated, T0).await;

        // Rotated away, and still in its grace period.
        let rotated = actor(&["api_keys:write"]);
        store.insert(&rotated).await.unwrap();
        rotate(store, &rotated, T0 + Duration::hours(1)).await;
        refused(rotated, T0).await;

        // Expired at the time of the change, and a key that does not exist.
        let expiring = actor(&["api_keys:write"]);
        store.insert(&expiring).await.unwrap();
        refused(expiring.clone(), T0 + Duration::days(1)).await;
        refused(actor(&["api_keys:write"]), T0).await;

        // The actor is judged before the target: a missing target is not revealed.
        let nobody = KeyId::new("nobody").unwrap();
        let change = Change::Revoke {
            id: &nobody,
            at: T0,
            scopes: None,
            actor: Some(ActingKey::new(&expiring, T0 + Duration::days(2))),
        };
        assert_eq!(
            store.apply(change, &[]).await.unwrap(),
            Applied::ActorChanged
        );

        // Positive controls: judged as stored, the changes are made, the actor acting on
        // itself included.
        let current = store.get(&rescoped.id).await.unwrap().unwrap();
        let acting = Some(ActingKey::new(&current, T0));
        let wanted = vec!["employees:write".to_owned()];
        let change = Change::SetScopes {
            id: &target.id,
            from: &target.scopes,
            to: &wanted,
            actor: acting,
        };
        let entry = audit(AuditAction::KeyScopesChanged, &target, T0);
        assert!(matches!(
            store.apply(change, &[entry]).await.unwrap(),
            Applied::Done(ref r) if r.scopes == wanted
        ));
        assert_eq!(
            audited(store, &target).await,
            [AuditAction::KeyScopesChanged]
        );
        let created = new_key(acme(), T0);
        let change = Change::Insert {
            record: &created,
            actor: acting,
        };
        assert!(matches!(
            store.apply(change, &[]).await.unwrap(),
            Applied::Done(_)
        ));
        let next = successor_of(&current);
        let change = Change::Rotate {
            id: &current.id,
            successor: &next,
            valid_until: T0,
            at: T0,
            actor: acting,
        };
        assert!(matches!(
            store.apply(change, &[]).await.unwrap(),
            Applied::Done(_)
        ));
        // Rotated away by itself: it acts no more.
        let change = Change::Revoke {
            id: &created.id,
            at: T0,
            scopes: None,
            actor: acting,
        };
        assert_eq!(
            store.apply(change, &[]).await.unwrap(),
            Applied::ActorChanged
        );
    }

    /// Sixteen tasks rotate one key at once: exactly one wins, one successor exists,
    /// and one rotation is audited.
    /// A rename changes the name alone, of a key that is not revoked, with its audit
    /// entry; a revoked key keeps its name, and a missing one is `NotFound`.
    pub(crate) async fn renames_change_only_the_name_of_keys_not_revoked<S: ManagedKeyStore>(
        store: &S,
    ) {
        let key = new_key(acme(), T0);
        store.insert(&key).await.unwrap();
        let change = Change::Rename {
            id: &key.id,
            name: "Nightly export",
            actor: None,
        };
        let entry = audit(AuditAction::KeyRenamed, &key, T0);
        let Applied::Done(renamed) = store.apply(change, &[entry]).await.unwrap() else {
            panic!("a rename of a key not revoked is made")
        };
        let mut expected = key.clone();
        expected.name = "Nightly export".to_owned();
        assert_eq!(renamed, expected);
        assert_eq!(store.get(&key.id).await.unwrap(), Some(expected.clone()));
        let log = store
            .audit_log(&AuditQuery::new(acme()).for_key(key.id))
            .await
            .unwrap();
        assert!(log.iter().any(|e| e.action == AuditAction::KeyRenamed));

        store.revoke(&key.id, T0).await.unwrap();
        let change = Change::Rename {
            id: &key.id,
            name: "after revocation",
            actor: None,
        };
        assert!(matches!(
            store.apply(change, &[]).await.unwrap(),
            Applied::Refused(r) if r.name == "Nightly export"
        ));
        let nobody = KeyId::new("nobody").unwrap();
        let change = Change::Rename {
            id: &nobody,
            name: "x",
            actor: None,
        };
        assert!(matches!(
            store.apply(change, &[]).await.unwrap(),
            Applied::NotFound
        ));
    }

    /// A store's pages (the SQL stores read them with a range query) list exactly what
    /// the reference does (`KeyQuery::page_of` over all the owner's keys), for every
    /// filter and page size, walking every page by its cursor: keys of one instant
    /// included (ordered by id), every state, two environments, another owner's keys.
    pub(crate) async fn pages_agree_with_the_reference<S: ManagedKeyStore>(store: &S) {
        let format = pb_format();
        let at = T0 + Duration::hours(1);
        for i in 0..30_i64 {
            let environment = if i % 3 == 0 { "test" } else { "live" };
            let minted = format.generate(Some(environment)).unwrap();
            let name = if i % 2 == 0 {
                format!("ci-{i}")
            } else {
                format!("prod {i}")
            };
            // Three keys per instant, so that ties are broken by id.
            let created_at = T0 + Duration::seconds(i / 3);
            let mut record = KeyRecord::new(&minted, name, acme(), Vec::new(), created_at);
            match i % 5 {
                1 => record.revoked_at = Some(created_at),
                2 => record.expires_at = Some(T0 + Duration::minutes(30)),
                3 => {
                    record.rotation = Some(Rotation {
                        superseded_by: KeyId::new("successor").unwrap(),
                        valid_until: at + Duration::hours(1),
                    })
                }
                _ => {}
            }
            store.insert(&record).await.unwrap();
            let other = KeyRecord::new(
                &format.generate(Some("live")).unwrap(),
                "ci-other",
                Owner::organization("globex"),
                Vec::new(),
                created_at,
            );
            store.insert(&other).await.unwrap();
        }
        let all = store.list_by_owner(&acme()).await.unwrap();
        assert_eq!(all.len(), 30);
        let walk = |query: KeyQuery, reference: bool| {
            let (store, all) = (store.clone(), all.clone());
            async move {
                let mut listed = Vec::new();
                let mut query = query;
                loop {
                    let page = if reference {
                        query.page_of(all.clone())
                    } else {
                        store.list_page(&query).await.unwrap()
                    };
                    listed.extend(page.items.iter().map(|r| r.id));
                    match page.next {
                        Some(next) => query = query.after(next),
                        None => return listed,
                    }
                }
            }
        };
        let mut compared = 0;
        for environment in [None, Some(Environment::live()), Some(Environment::test())] {
            for state in [
                None,
                Some(KeyState::Active),
                Some(KeyState::Revoked),
                Some(KeyState::Expired),
                Some(KeyState::InGrace),
            ] {
                for prefix in [None, Some("ci-")] {
                    for limit in [1, 4, 100] {
                        let mut query = KeyQuery::new(acme(), at).with_limit(limit);
                        if let Some(environment) = environment {
                            query = query.in_environment(environment);
                        }
                        if let Some(state) = state {
                            query = query.in_state(state);
                        }
                        if let Some(prefix) = prefix {
                            query = query.with_name_prefix(prefix);
                        }
                        let expected = walk(query.clone(), true).await;
                        assert_eq!(walk(query.clone(), false).await, expected, "{query:?}");
                        compared += usize::from(!expected.is_empty());
                    }
                }
            }
        }
        assert!(compared > 60, "most filters select something: {compared}");
    }

    pub(crate) async fn racing_rotations_have_exactly_one_winner<S: ManagedKeyStore>(store: &S) {
        const N: usize = 16;
        let key = new_key(acme(), T0);
        store.insert(&key).await.unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..N {
            let (store, key) = (store.clone(), key.clone());
            tasks.spawn(async move {
                let next = successor_of(&key);
                let change = Change::Rotate {
                    id: &key.id,
                    successor: &next,
                    valid_until: T0 + Duration::hours(1),
                    at: T0,
                    actor: None,
                };
                let entry = audit(AuditAction::KeyRotated, &key, T0);
                let applied = store.apply(change, &[entry]).await.unwrap();
                (applied, next.id)
            });
        }
        let mut winners = Vec::new();
        let mut losers = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined.unwrap() {
                (Applied::Done(_), id) => winners.push(id),
                (Applied::Refused(_), id) => losers.push(id),
                (other, _) => panic!("unexpected: {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one rotation wins");
        let stored = store.get(&key.id).await.unwrap().unwrap();
        assert_eq!(stored.rotation.unwrap().superseded_by, winners[0]);
        assert!(store.get(&winners[0]).await.unwrap().is_some());
        for id in &losers {
            assert!(
                store.get(id).await.unwrap().is_none(),
                "a loser's key exists"
            );
        }
        assert_eq!(audited(store, &key).await, [AuditAction::KeyRotated]);
    }

    pub(crate) async fn list_by_owner_is_newest_first_and_only_that_owner<S: ManagedKeyStore>(
        store: &S,
    ) {
        let oldest = new_key(acme(), T0);
        let middle = new_key(acme(), T0 + Duration::seconds(1));
        let newest = new_key(acme(), T0 + Duration::seconds(2));
        // Inserted out of order, one of them revoked.
        for key in [&middle, &newest, &oldest] {
            store.insert(key).await.unwrap();
        }
        store.revoke(&middle.id, T0).await.unwrap();
        // Same id, other kind; and another organization.
        let personal = new_key(Owner::user("acme"), T0 + Duration::seconds(5));
        let other = new_key(Owner::organization("globex"), T0 + Duration::seconds(6));
        store.insert(&personal).await.unwrap();
        store.insert(&other).await.unwrap();

        let listed: Vec<KeyId> = store
            .list_by_owner(&acme())
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(listed, [newest.id, middle.id, oldest.id]);
        let users = store.list_by_owner(&Owner::user("acme")).await.unwrap();
        assert_eq!(users.len(), 1);
        assert_eq!(users[0], personal);
        assert!(store
            .list_by_owner(&Owner::organization("initech"))
            .await
            .unwrap()
            .is_empty());
    }

    pub(crate) async fn touch_never_moves_backwards_and_ignores_unknown_ids<S: ManagedKeyStore>(
        store: &S,
    ) {
        let a = new_key(acme(), T0);
        let b = new_key(acme(), T0);
        let untouched = new_key(acme(), T0);
        for key in [&a, &b, &untouched] {
            store.insert(key).await.unwrap();
        }
        let (t1, t2, t3) = (
            T0 + Duration::seconds(1),
            T0 + Duration::seconds(2),
            T0 + Duration::seconds(3),
        );
        let unknown = KeyId::new("nobody").unwrap();
        store
            .touch_last_used(&[(a.id, t2), (unknown, t3), (b.id, t1)])
            .await
            .unwrap();
        let last = |id| async move { store.get(&id).await.unwrap().unwrap().last_used_at };
        assert_eq!(last(a.id).await, Some(t2));
        assert_eq!(last(b.id).await, Some(t1));
        assert_eq!(last(untouched.id).await, None);
        assert!(store.get(&unknown).await.unwrap().is_none());

        store.touch_last_used(&[(a.id, t1)]).await.unwrap();
        assert_eq!(last(a.id).await, Some(t2), "moved backwards");
        // The same key twice in one batch: the latest wins, whatever the order.
        store
            .touch_last_used(&[(b.id, t3), (b.id, t2)])
            .await
            .unwrap();
        assert_eq!(last(b.id).await, Some(t3));
        store.touch_last_used(&[]).await.unwrap();
        // Touching is not an edit: the revocation stays.
        store.revoke(&a.id, T0).await.unwrap();
        store.touch_last_used(&[(a.id, t3)]).await.unwrap();
        let a_now = store.get(&a.id).await.unwrap().unwrap();
        assert_eq!((a_now.last_used_at, a_now.revoked_at), (Some(t3), Some(T0)));
    }

    pub(crate) async fn expiry_and_imported_keys_behave_after_a_round_trip<S: ManagedKeyStore>(
        store: &S,
    ) {
        let expiring = new_key(acme(), T0).with_expires_at(Some(T0 + Duration::seconds(60)));
        store.insert(&expiring).await.unwrap();
        let stored = store.get(&expiring.id).await.unwrap().unwrap();
        assert_eq!(
            stored.status_at(T0 + Duration::seconds(59)),
            tower_api_key::store::KeyStatus::Active
        );
        assert_eq!(
            stored.status_at(T0 + Duration::seconds(60)),
            tower_api_key::store::KeyStatus::Expired
        );

        let imported = KeyRecord::imported(
            KeyId::generate().unwrap(),
            Digest::of("legacy-key-123"),
            "legacy",
            "old system",
            acme(),
            vec![],
            T0,
        );
        store.insert(&imported).await.unwrap();
        let found = store
            .get_by_digest(&Digest::of("legacy-key-123"))
            .await
            .unwrap()
            .unwrap();
        assert!(found.imported);
        assert_eq!(found.environment, None);
        store.revoke(&imported.id, T0).await.unwrap();
        let found = store
            .get_by_digest(&imported.digest)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.revoked_at, Some(T0));
    }

    /// Creates and revokes race each other: nothing inserted is lost, and nothing
    /// revoked comes back.
    pub(crate) async fn racing_creates_and_revokes_lose_nothing<S: ManagedKeyStore>(store: &S) {
        const N: usize = 40;
        let keys: Vec<KeyRecord> = (0..N).map(|_| new_key(acme(), T0)).collect();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, key) in keys.iter().enumerate() {
            // Each key is inserted once, and revoked by three racing tasks (two of them
            // started before the insert).
            for offset in [0, 1] {
                let (store, id) = (store.clone(), key.id);
                tasks.spawn(async move {
                    let at = T0 + Duration::seconds(offset);
                    (
                        id,
                        "revoke",
                        store.revoke(&id, at).await.map(|r| r.is_some()),
                    )
                });
            }
            let (s, k) = (store.clone(), key.clone());
            tasks.spawn(async move { (k.id, "insert", s.insert(&k).await.map(|()| true)) });
            if i % 2 == 0 {
                let (store, id) = (store.clone(), key.id);
                tasks.spawn(async move {
                    let at = T0 + Duration::seconds(2);
                    (
                        id,
                        "revoke",
                        store.revoke(&id, at).await.map(|r| r.is_some()),
                    )
                });
            }
            // The same id inserted twice at once: exactly one wins.
            let (s, k) = (store.clone(), key.clone());
            tasks.spawn(async move {
                let mut dup = new_key(acme(), T0);
                dup.id = k.id;
                (k.id, "duplicate", s.insert(&dup).await.map(|()| true))
            });
        }
        let mut revoked_seen = HashSet::new();
        let mut inserted = HashSet::new();
        while let Some(joined) = tasks.join_next().await {
            let (id, what, result) = joined.unwrap();
            match (what, result) {
                ("revoke", Ok(true)) => {
                    revoked_seen.insert(id);
                }
                ("revoke", Ok(false)) => {}
                ("insert" | "duplicate", Ok(_)) => assert!(inserted.insert(id), "{id} twice"),
                ("insert" | "duplicate", Err(StoreError::Conflict)) => {}
                (what, Err(e)) => panic!("{what} of {id} failed: {e}"),
                _ => unreachable!(),
            }
        }
        assert_eq!(inserted.len(), N, "every id was inserted exactly once");
        for key in &keys {
            let stored = store
                .get(&key.id)
                .await
                .unwrap()
                .expect("an insert was lost");
            if revoked_seen.contains(&key.id) {
                assert!(stored.revoked_at.is_some(), "{} came back", key.id);
            }
            // A revoke that found the key keeps the earliest time it was given; one that
            // ran before the insert found nothing.
            let again = store.revoke(&key.id, T0 + Duration::days(1)).await.unwrap();
            let again = again.unwrap().revoked_at.unwrap();
            assert!(again <= T0 + Duration::days(1));
            if revoked_seen.contains(&key.id) {
                assert!(again <= T0 + Duration::seconds(2));
            }
        }
    }

    /// With the audit table gone, a change fails and is not made: no key inserted, none
    /// revoked, none rotated. `break_audit` makes audit writes fail.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) async fn a_change_whose_entry_cannot_be_written_is_not_made<S, F, Fut>(
        store: &S,
        break_audit: F,
    ) where
        S: ManagedKeyStore,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let kept = new_key(acme(), T0);
        store.insert(&kept).await.unwrap();
        break_audit().await;
        let fresh = new_key(acme(), T0);
        let created = audit(AuditAction::KeyCreated, &fresh, T0);
        assert!(store
            .apply(
                Change::Insert {
                    record: &fresh,
                    actor: None,
                },
                &[created],
            )
            .await
            .is_err());
        assert!(
            store.get(&fresh.id).await.unwrap().is_none(),
            "inserted anyway"
        );
        let revoked = audit(AuditAction::KeyRevoked, &kept, T0);
        let change = Change::Revoke {
            id: &kept.id,
            at: T0,
            scopes: None,
            actor: None,
        };
        assert!(store.apply(change, &[revoked]).await.is_err());
        let next = successor_of(&kept);
        let rotated = audit(AuditAction::KeyRotated, &kept, T0);
        let change = Change::Rotate {
            id: &kept.id,
            successor: &next,
            valid_until: T0,
            at: T0,
            actor: None,
        };
        assert!(store.apply(change, &[rotated]).await.is_err());
        let stored = store.get(&kept.id).await.unwrap().unwrap();
        assert_eq!(stored.revoked_at, None, "revoked anyway");
        assert_eq!(stored.rotation, None, "rotated anyway");
        assert!(store.get(&next.id).await.unwrap().is_none());
        // Without entries to write, the store still works.
        store.revoke(&kept.id, T0).await.unwrap();
    }

    /// Rows written by schema version 1 into `audit`: a request entry (no actor), a
    /// creation by a key (`key00000002`, which exists), and a revocation by a system
    /// actor named `ops`. Their `(occurred_at, action, api_key_id, actor_key_id)`.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) const V1_ROWS: [(i64, &str, &str, Option<&str>); 3] = [
        (1, "request", "key00000001", None),
        (2, "api_key.created", "key00000001", Some("key00000002")),
        (3, "api_key.revoked", "key00000001", Some("ops")),
    ];

    /// After the upgrade to version 2, each V1 row names its actor and its key's prefix.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) async fn v1_rows_read_back_after_the_upgrade<S: ManagedKeyStore>(store: &S) {
        assert_eq!(
            store.tag_keys().await.unwrap().len(),
            1,
            "the upgrade adds a tag secret"
        );
        let mut entries = store.audit_log(&AuditQuery::new(acme())).await.unwrap();
        entries.reverse();
        let actors: Vec<AuditActor> = entries.iter().map(|e| e.actor.clone()).collect();
        let k1 = KeyId::new("key00000001").unwrap();
        assert_eq!(
            actors,
            [
                AuditActor::Key(k1),
                AuditActor::Key(KeyId::new("key00000002").unwrap()),
                AuditActor::System("ops".into()),
            ]
        );
        assert!(entries
            .iter()
            .all(|e| e.prefix.as_deref() == Some("pb_live_key00000001")));
    }

    fn without_id(mut entries: Vec<AuditEntry>) -> Vec<AuditEntry> {
        for e in &mut entries {
            assert!(e.id > 0, "the sink assigns ids");
            e.id = 0;
        }
        entries
    }

    /// Request entries written through an [`Auditor`] read back with the lifecycle
    /// ones, newest first.
    pub(crate) async fn audit_entries_round_trip_newest_first<L: ManagedKeyStore + AuditSink>(
        log: &L,
    ) {
        let k1 = KeyId::new("key00000001").unwrap();
        let k2 = KeyId::new("key00000002").unwrap();
        let mut created = AuditEntry::new(AuditAction::KeyCreated, k1, acme(), T0);
        created.actor = AuditActor::System("user_42".into());
        created.prefix = Some("pb_live_key00000001".into());
        created.environment = Some(tower_api_key::key::Environment::live());
        created.scopes = vec!["employees:read".into(), "ünï".into()];
        let mut request =
            AuditEntry::new(AuditAction::Request, k1, acme(), T0 + Duration::seconds(1));
        request.method = Some("POST".into());
        request.path = Some("/v1/employees".into());
        request.route = Some("/v1/employees".into());
        request.status = Some(201);
        request.request_id = Some("req_1".into());
        let mut rotated = AuditEntry::new(
            AuditAction::KeyRotated,
            k1,
            acme(),
            T0 + Duration::seconds(2),
        );
        rotated.successor_key_id = Some(k2);
        rotated.actor = AuditActor::Key(k2);
        let personal = AuditEntry::new(
            AuditAction::KeyRevoked,
            k1,
            Owner::user("acme"),
            T0 + Duration::seconds(3),
        );
        let other_key = AuditEntry::new(
            AuditAction::KeyCreated,
            k2,
            acme(),
            T0 + Duration::seconds(4),
        );

        // Through the auditor, as the layer writes them.
        let auditor = Auditor::spawn(log.clone(), 64);
        for e in [&created, &request, &rotated, &personal, &other_key] {
            auditor.record(e.clone());
        }
        auditor.flush().await;
        assert_eq!(auditor.failed_batches(), 0);

        let all = log.audit_log(&AuditQuery::new(acme())).await.unwrap();
        assert_eq!(
            without_id(all.clone()),
            [
                other_key.clone(),
                rotated.clone(),
                request.clone(),
                created.clone()
            ]
        );
        assert!(all.windows(2).all(|w| w[0].id > w[1].id));
        assert_eq!(
            without_id(
                log.audit_log(&AuditQuery::new(acme()).for_key(k1))
                    .await
                    .unwrap()
            ),
            [rotated.clone(), request, created]
        );
        assert_eq!(
            without_id(
                log.audit_log(&AuditQuery::new(acme()).with_limit(2))
                    .await
                    .unwrap()
            ),
            [other_key, rotated]
        );
        assert_eq!(
            without_id(
                log.audit_log(&AuditQuery::new(Owner::user("acme")))
                    .await
                    .unwrap()
            ),
            [personal]
        );

        // A batch larger than one INSERT holds, in one call.
        let bulk_owner = Owner::organization("bulk");
        let bulk: Vec<AuditEntry> = (0..1_200)
            .map(|i| {
                AuditEntry::new(
                    AuditAction::Request,
                    k2,
                    bulk_owner.clone(),
                    T0 + Duration::milliseconds(i),
                )
            })
            .collect();
        log.write(bulk).await.unwrap();
        let read = log
            .audit_log(&AuditQuery::new(bulk_owner.clone()).with_limit(5_000))
            .await
            .unwrap();
        assert_eq!(read.len(), 1_000, "capped at AuditQuery::MAX_LIMIT");
        assert_eq!(read[0].occurred_at, T0 + Duration::milliseconds(1_199));
        // Filtered by environment: only the entry that has one.
        let live = AuditQuery::new(acme()).in_environment(tower_api_key::key::Environment::live());
        assert_eq!(without_id(log.audit_log(&live).await.unwrap()).len(), 1);
        log.write(Vec::new()).await.unwrap();
    }
}

/// Runs every case of the contract against one kind of store. `$open` is an async
/// expression giving `Option<fixture>` (`None`: skipped), the fixture dereferencing to
/// the store.
macro_rules! contract {
    ($module:ident, $open:expr) => {
        contract!(@cases $module, $open,
            every_field_round_trips,
            unknown_ids_and_digests_are_none,
            duplicate_ids_and_digests_conflict,
            update_replaces_only_editable_fields,
            revoke_is_idempotent_and_keeps_the_first_time,
            rotation_is_conditional_and_both_or_neither,
            revocation_and_scope_changes_are_decided_by_the_store,
            a_change_by_an_actor_changed_since_it_was_judged_is_refused,
            renames_change_only_the_name_of_keys_not_revoked,
            pages_agree_with_the_reference,
            racing_rotations_have_exactly_one_winner,
            audit_entries_round_trip_newest_first,
            list_by_owner_is_newest_first_and_only_that_owner,
            touch_never_moves_backwards_and_ignores_unknown_ids,
            expiry_and_imported_keys_behave_after_a_round_trip,
            racing_creates_and_revokes_lose_nothing,
            the_tag_secret_is_one_and_stable,
        );
    };
    (@cases $module:ident, $open:expr, $($case:ident),* $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(fixture) = $open else { return };
                    super::cases::$case(&*fixture).await;
                }
            )*
        }
    };
}

/// The in-memory store as a fixture.
struct Memory(MemoryStore);

impl std::ops::Deref for Memory {
    type Target = MemoryStore;
    fn deref(&self) -> &MemoryStore {
        &self.0
    }
}

contract!(memory_contract, Some(Memory(MemoryStore::new())));

#[cfg(feature = "sqlite")]
contract!(sqlite_contract, Some(support::stores::TempDb::new().await));

#[cfg(feature = "postgres")]
contract!(postgres_contract, support::stores::TestSchema::new().await);

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::io::{BufRead, BufReader, Write};
    use std::path::PathBuf;
    use std::process::{Command, Stdio};
    use std::sync::Arc;

    use tower_api_key::store::sql::SqliteStore;

    use super::*;
    use crate::support::stores::{remove_db, temp_path, url, TempDb};

    #[tokio::test]
    async fn relative_and_absolute_urls_create_the_file() {
        let absolute = temp_path();
        assert!(absolute.is_absolute());
        let store = SqliteStore::connect(&format!("sqlite://{}", absolute.display()))
            .await
            .unwrap();
        assert!(url(&absolute).starts_with("sqlite:///"));
        store.migrate().await.unwrap();
        assert!(absolute.exists());

        // The same kind of file, named relative to the working directory.
        let relative_target = temp_path();
        let cwd = std::env::current_dir().unwrap();
        let ups = "../".repeat(cwd.components().count() - 1);
        let relative = format!(
            "{ups}{}",
            relative_target
                .display()
                .to_string()
                .trim_start_matches('/')
        );
        assert!(!relative.starts_with('/'));
        let other = SqliteStore::connect(&format!("sqlite://{relative}"))
            .await
            .unwrap();
        other.migrate().await.unwrap();
        assert!(relative_target.exists(), "{relative} was not created");
        drop((store, other));
        remove_db(&absolute);
        remove_db(&relative_target);
    }

    #[tokio::test]
    async fn files_are_in_wal_mode_with_full_sync() {
        let db = TempDb::new().await;
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
    }

    #[tokio::test]
    async fn only_the_digest_is_stored_never_the_key() {
        let db = TempDb::new().await;
        let minted = pb_format().generate(Some("live")).unwrap();
        let record = KeyRecord::new(&minted, "n", acme(), vec![], T0);
        db.insert(&record).await.unwrap();
        let stored: Vec<u8> =
            sqlx::query_scalar("SELECT digest FROM tower_api_key_keys WHERE id = ?1")
                .bind(minted.id.as_str())
                .fetch_one(db.pool())
                .await
                .unwrap();
        assert_eq!(stored, minted.digest.as_bytes());
        // Nowhere in the files: not the key, not its secret part.
        let secret = minted.key.expose_secret();
        let secret_part = &secret[minted.prefix.len()..];
        for suffix in ["", "-wal"] {
            let mut p = db.path.as_os_str().to_owned();
            p.push(suffix);
            let bytes = std::fs::read(PathBuf::from(p)).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(secret_part),
                "the secret is in the file{suffix}"
            );
        }
    }

    #[tokio::test]
    async fn table_prefixes_keep_stores_apart_in_one_file() {
        let db = TempDb::new().await;
        let other = db.store.clone().with_table_prefix("auth_").unwrap();
        other.migrate().await.unwrap();
        let key = new_key(acme(), T0);
        other.insert(&key).await.unwrap();
        assert!(other.get(&key.id).await.unwrap().is_some());
        assert!(db.get(&key.id).await.unwrap().is_none());
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'auth%' ORDER BY name",
        )
        .fetch_all(db.pool())
        .await
        .unwrap();
        assert_eq!(
            tables,
            [
                "auth_audit",
                "auth_key_usage",
                "auth_keys",
                "auth_schema_version",
                "auth_tag_secrets"
            ]
        );
        assert!(db
            .store
            .clone()
            .with_table_prefix("Robert'); DROP")
            .is_err());
    }

    #[tokio::test]
    async fn migrate_is_idempotent_and_safe_from_several_processes_at_once() {
        // Several rounds on new files: opening a new file switches it to WAL mode, and
        // the openers race for that (failing now and then with "database is locked"
        // before `connect` retried; `opening_waits_for_a_writer_...` shows it for sure).
        for _ in 0..4 {
            let path = temp_path();
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..8 {
                let url = url(&path);
                tasks.spawn(async move {
                    // Separate pools, as separate processes would have.
                    let store = SqliteStore::connect(&url).await.unwrap();
                    store.migrate().await.unwrap();
                    store.migrate().await.unwrap();
                    store.check_schema().await.unwrap();
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.unwrap();
            }
            remove_db(&path);
        }
    }

    /// Eight processes migrating one new file at once agree on one tag secret, and a
    /// rotation adds a second one beside it, both read back by every process.
    #[tokio::test]
    async fn processes_migrating_at_once_share_one_tag_secret_and_rotate_it() {
        let path = temp_path();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let url = url(&path);
            tasks.spawn(async move {
                let store = SqliteStore::connect(&url).await.unwrap();
                store.migrate().await.unwrap();
                store
            });
        }
        let mut stores = Vec::new();
        while let Some(done) = tasks.join_next().await {
            stores.push(done.unwrap());
        }
        let first = stores[0].tag_keys().await.unwrap();
        assert_eq!(first.len(), 1);
        for store in &stores {
            let keys = store.tag_keys().await.unwrap();
            assert_eq!(keys.len(), 1);
            assert!(tagged_verifies(&first[0], &keys[0]));
        }
        assert_eq!(stores[3].rotate_tag_key().await.unwrap(), '1');
        stores[5].migrate().await.unwrap();
        let keys = stores[0].tag_keys().await.unwrap();
        assert_eq!(keys.iter().map(TagKey::id).collect::<Vec<_>>(), ['0', '1']);
        assert!(
            tagged_verifies(&first[0], &keys[0]),
            "the old secret is kept"
        );
        assert!(!tagged_verifies(&first[0], &keys[1]));
        drop(stores);
        remove_db(&path);
    }

    /// Notifies on every tracing event of this crate's SQLite store (sqlx's own events
    /// do not count): while connecting, the only one is the retry's.
    struct NotifyOnEvent(Arc<tokio::sync::Notify>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for NotifyOnEvent {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if event.metadata().target() == "tower_api_key::store::sql::sqlite" {
                self.0.notify_one();
            }
        }
    }

    #[tokio::test]
    async fn opening_waits_for_a_writer_that_blocks_the_switch_to_wal() {
        use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
        use sqlx::{Connection, Executor};
        use tracing_subscriber::layer::SubscriberExt;

        // A file in the default rollback-journal mode, with another connection holding
        // its write lock: SQLite fails the switch to WAL at once, without the busy
        // timeout (as when several processes open a new file together).
        let path = temp_path();
        let mut writer = sqlx::SqliteConnection::connect_with(
            &SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Delete),
        )
        .await
        .unwrap();
        writer.execute("CREATE TABLE t (x)").await.unwrap();
        writer.execute("BEGIN IMMEDIATE").await.unwrap();

        let retried = Arc::new(tokio::sync::Notify::new());
        let subscriber = tracing_subscriber::registry().with(NotifyOnEvent(Arc::clone(&retried)));
        let _guard = tracing::subscriber::set_default(subscriber);
        let url = url(&path);
        let mut connect = std::pin::pin!(SqliteStore::connect(&url));
        tokio::select! {
            result = &mut connect => panic!("finished while the file was locked: {result:?}"),
            () = retried.notified() => {}
        }
        // The writer finishes; the waiting open now switches the file and succeeds.
        writer.execute("ROLLBACK").await.unwrap();
        let store = connect.await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        drop((store, writer));
        remove_db(&path);
    }

    #[tokio::test]
    async fn a_schema_from_a_newer_version_is_refused() {
        let db = TempDb::new().await;
        sqlx::query("UPDATE tower_api_key_schema_version SET version = 999")
            .execute(db.pool())
            .await
            .unwrap();
        for err in [
            db.migrate().await.unwrap_err(),
            db.check_schema().await.unwrap_err(),
        ] {
            let StoreError::Corrupt(message) = err else {
                panic!("expected Corrupt, got {err:?}");
            };
            assert!(message.contains("version 999"), "{message}");
            assert!(message.contains("newer"), "{message}");
        }
        // The refused migration rolled back its `BEGIN IMMEDIATE` before returning:
        // another instance can write at once. (Left open on a pooled connection, the
        // write lock would make this insert wait and fail with "database is locked".)
        let other = SqliteStore::connect(&url(&db.path)).await.unwrap();
        sqlx::query("UPDATE tower_api_key_schema_version SET version = 999")
            .execute(other.pool())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_version_1_database_is_upgraded_with_its_audit_rows() {
        let path = temp_path();
        let store = SqliteStore::connect(&url(&path)).await.unwrap();
        let v1 = include_str!("../src/store/sql/migrations/sqlite/0001_create.sql")
            .replace("{prefix}", "tower_api_key_");
        let pool = store.pool().clone();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "{v1}; CREATE TABLE tower_api_key_schema_version (singleton INTEGER NOT NULL \
             PRIMARY KEY, version INTEGER NOT NULL, migrated_at INTEGER NOT NULL) STRICT; \
             INSERT INTO tower_api_key_schema_version VALUES (1, 1, 0);"
        )))
        .execute(&pool)
        .await
        .unwrap();
        for id in ["key00000001", "key00000002"] {
            sqlx::query(
                "INSERT INTO tower_api_key_keys (id, digest, prefix, name, owner_kind, owner_id, \
                 created_at, family) VALUES (?1, randomblob(32), 'pb_live_' || ?1, 'k', \
                 'organization', 'acme', 0, ?1)",
            )
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
        }
        for (at, action, key, actor) in super::cases::V1_ROWS {
            sqlx::query(
                "INSERT INTO tower_api_key_audit (occurred_at, action, api_key_id, actor_key_id, \
                 owner_kind, owner_id) VALUES (?1, ?2, ?3, ?4, 'organization', 'acme')",
            )
            .bind(at)
            .bind(action)
            .bind(key)
            .bind(actor)
            .execute(&pool)
            .await
            .unwrap();
        }
        assert!(store.check_schema().await.is_err(), "version 1 is outdated");
        store.migrate().await.unwrap();
        store.check_schema().await.unwrap();
        super::cases::v1_rows_read_back_after_the_upgrade(&store).await;
        drop(store);
        remove_db(&path);
    }

    #[tokio::test]
    async fn a_change_whose_entry_cannot_be_written_is_not_made() {
        let db = TempDb::new().await;
        let pool = db.store.pool().clone();
        super::cases::a_change_whose_entry_cannot_be_written_is_not_made(&*db, || async move {
            sqlx::query("DROP TABLE tower_api_key_audit")
                .execute(&pool)
                .await
                .unwrap();
        })
        .await;
    }

    const WRITER_ENV: &str = "TOWER_API_KEY_TEST_SQLITE_WRITER";

    /// The child process of `acknowledged_writes_survive_kill_9`. Does nothing unless
    /// the environment names a database: then it inserts keys until killed, printing
    /// `ACK <id>` after each insert returns.
    #[test]
    fn durability_writer_child() {
        let Ok(url) = std::env::var(WRITER_ENV) else {
            return;
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let store = SqliteStore::connect(&url).await.unwrap();
            let mut out = std::io::stdout().lock();
            for _ in 0..1_000_000 {
                let key = new_key(acme(), T0);
                store.insert(&key).await.unwrap();
                writeln!(out, "ACK {}", key.id).unwrap();
                out.flush().unwrap();
            }
        });
    }

    /// Every insert acknowledged before a `kill -9` is in the file afterwards.
    #[test]
    fn acknowledged_writes_survive_kill_9() {
        let path = temp_path();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let store = SqliteStore::connect(&url(&path)).await.unwrap();
            store.migrate().await.unwrap();
        });

        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sqlite::durability_writer_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(WRITER_ENV, url(&path))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acked = Vec::new();
        for line in lines.by_ref() {
            if let Some(id) = line.unwrap().strip_prefix("ACK ") {
                acked.push(id.to_owned());
                if acked.len() == 300 {
                    // SIGKILL, mid-stream: the child is inserting the next keys.
                    child.kill().unwrap();
                    break;
                }
            }
        }
        let status = child.wait().unwrap();
        assert!(!status.success(), "the writer was meant to be killed");
        // Printed before the kill but not read yet: acknowledged all the same.
        for line in lines.map_while(Result::ok) {
            if let Some(id) = line.strip_prefix("ACK ") {
                acked.push(id.to_owned());
            }
        }
        assert!(acked.len() >= 300, "only {} acknowledgements", acked.len());

        runtime.block_on(async {
            let store = SqliteStore::connect(&url(&path)).await.unwrap();
            store.check_schema().await.unwrap();
            for id in &acked {
                let id = KeyId::new(id).unwrap();
                assert!(
                    store.get(&id).await.unwrap().is_some(),
                    "acknowledged key {id} was lost"
                );
            }
            let count: i64 = sqlx::query_scalar("SELECT count(*) FROM tower_api_key_keys")
                .fetch_one(store.pool())
                .await
                .unwrap();
            assert!(count as usize >= acked.len());
        });
        remove_db(&path);
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::net::SocketAddr;
    use std::str::FromStr;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration as StdDuration, Instant};

    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use http::{Request, StatusCode};
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    use sqlx::AssertSqlSafe;
    use tokio::net::{TcpListener, TcpStream};
    use tower::ServiceExt;
    use tower_api_key::key::MintedKey;
    use tower_api_key::parts::{AuthenticateLayer, KeyVerifier};
    use tower_api_key::store::sql::{ListenerHandle, PostgresStore};
    use tower_api_key::store::CachedStore;
    use tower_api_key::RejectionKind;

    use super::*;
    use crate::support::stores::TestSchema;

    /// One server instance: its own pool, cache and listener.
    struct Instance {
        store: PostgresStore,
        cache: CachedStore<PostgresStore>,
        auth: KeyVerifier<PostgresStore>,
        listener: ListenerHandle,
    }

    impl Instance {
        async fn start(store: PostgresStore) -> Self {
            // A TTL far longer than any test: only notifications can refresh the cache.
            let cache = CachedStore::builder(store.clone())
                .with_ttl(StdDuration::from_secs(3_600))
                .with_negative_ttl(StdDuration::from_secs(3_600))
                .build()
                .unwrap();
            let listener = store.spawn_invalidation_listener(cache.clone());
            tokio::time::timeout(StdDuration::from_secs(10), listener.ready())
                .await
                .expect("the listener never connected");
            let auth = KeyVerifier::new(cache.clone(), pb_format());
            Self {
                store,
                cache,
                auth,
                listener,
            }
        }
    }

    /// Inserts a fresh key through `store`, and waits until every listener in
    /// `heard_by` has heard of it (a lookup made before that may be invalidated by the
    /// insert's own notification).
    async fn insert_minted(
        store: &impl ManagedKeyStore,
        heard_by: &[&ListenerHandle],
    ) -> MintedKey {
        let before: Vec<u64> = heard_by.iter().map(|l| l.notifications()).collect();
        let minted = pb_format().generate(Some("live")).unwrap();
        let record = KeyRecord::new(&minted, "k", acme(), vec![], OffsetDateTime::now_utc());
        store.insert(&record).await.unwrap();
        for (listener, before) in heard_by.iter().zip(before) {
            wait_until(StdDuration::from_secs(5), "the insert heard", || async {
                listener.notifications() > before
            })
            .await;
        }
        minted
    }

    /// Polls `check` every 10 ms until it holds; the time it took, or a panic after
    /// `deadline`.
    async fn wait_until<F, Fut>(deadline: StdDuration, what: &str, mut check: F) -> StdDuration
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = Instant::now();
        loop {
            if check().await {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < deadline,
                "{what}: not within {deadline:?}"
            );
            tokio::time::sleep(StdDuration::from_millis(10)).await;
        }
    }

    #[allow(clippy::print_stderr)]
    fn report(what: &str, took: StdDuration) {
        eprintln!("{what}: {took:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_revocation_reaches_another_instance_within_a_second() {
        let Some(db) = TestSchema::new().await else {
            return;
        };
        let a = Instance::start(db.connect().await).await;
        let b = Instance::start(db.connect().await).await;

        let minted = insert_minted(&a.cache, &[&a.listener, &b.listener]).await;
        let key = minted.key.expose_secret();
        b.auth.authenticate(key).await.unwrap();
        assert!(b.cache.entry_count() >= 1, "B has the key cached");

        a.cache
            .revoke(&minted.id, OffsetDateTime::now_utc())
            .await
            .unwrap();
        let took = wait_until(StdDuration::from_secs(5), "B refuses the key", || async {
            b.auth.authenticate(key).await.err() == Some(RejectionKind::Revoked)
        })
        .await;
        report(
            "revocation through instance A seen by instance B after",
            took,
        );
        assert!(took < StdDuration::from_secs(1), "took {took:?}");

        // An operator's UPDATE in psql reaches the caches just the same.
        let minted = insert_minted(&a.store, &[&a.listener, &b.listener]).await;
        let key = minted.key.expose_secret();
        a.auth.authenticate(key).await.unwrap();
        b.auth.authenticate(key).await.unwrap();
        let mut admin = db.admin().await;
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {}keys SET revoked_at = now() WHERE id = $1",
            db.prefix
        )))
        .bind(minted.id.as_str())
        .execute(&mut admin)
        .await
        .unwrap();
        let took = wait_until(StdDuration::from_secs(5), "both refuse the key", || async {
            a.auth.authenticate(key).await.err() == Some(RejectionKind::Revoked)
                && b.auth.authenticate(key).await.err() == Some(RejectionKind::Revoked)
        })
        .await;
        report("revocation by SQL seen by both instances after", took);
        assert!(took < StdDuration::from_secs(1), "took {took:?}");

        // An imported key that B remembered as unknown (by digest) works on B at once.
        let foreign = "pb_rcbcKubT0rEilFd9haG5JoPaMwIEx6G9nRjNdTYXSIM";
        let b_auth = KeyVerifier::new(
            b.cache.clone(),
            pb_format().with_imported_prefix("pb_").unwrap(),
        );
        assert_eq!(
            b_auth.authenticate(foreign).await.unwrap_err(),
            RejectionKind::Unknown
        );
        let imported = KeyRecord::imported(
            KeyId::generate().unwrap(),
            Digest::of(foreign),
            "pb_rcbcK",
            "imported",
            acme(),
            vec![],
            OffsetDateTime::now_utc(),
        );
        a.cache.insert(&imported).await.unwrap();
        let took = wait_until(
            StdDuration::from_secs(5),
            "B accepts the import",
            || async { b_auth.authenticate(foreign).await.is_ok() },
        )
        .await;
        assert!(took < StdDuration::from_secs(1), "took {took:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn touching_last_used_notifies_nobody() {
        let Some(db) = TestSchema::new().await else {
            return;
        };
        let a = Instance::start(db.connect().await).await;
        let k1 = insert_minted(&a.store, &[]).await;
        let k2 = insert_minted(&a.store, &[]).await;
        wait_until(StdDuration::from_secs(5), "two inserts heard", || async {
            a.listener.notifications() == 2
        })
        .await;
        a.store
            .touch_last_used(&[(k1.id, OffsetDateTime::now_utc())])
            .await
            .unwrap();
        a.store
            .revoke(&k2.id, OffsetDateTime::now_utc())
            .await
            .unwrap();
        // Notifications arrive in commit order: the revoke's comes after the touch's
        // would have.
        wait_until(StdDuration::from_secs(5), "the revoke heard", || async {
            a.listener.notifications() >= 3
        })
        .await;
        assert_eq!(
            a.listener.notifications(),
            3,
            "the touch sent a notification"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_listener_reconnects_clears_the_cache_and_hears_again() {
        let Some(db) = TestSchema::new().await else {
            return;
        };
        let a = Instance::start(db.connect().await).await;
        let b = Instance::start(db.connect().await).await;
        let k1 = insert_minted(&a.store, &[&a.listener]).await;
        a.auth.authenticate(k1.key.expose_secret()).await.unwrap();
        assert!(a.cache.entry_count() >= 1);

        let pid = a.listener.backend_pid().expect("listening");
        let mut admin = db.admin().await;
        let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert!(killed);
        let took = wait_until(StdDuration::from_secs(10), "reconnected", || async {
            a.listener.reconnects() == 1 && a.listener.is_listening()
        })
        .await;
        report("listener reconnected after", took);
        assert_ne!(a.listener.backend_pid(), Some(pid));
        assert_eq!(a.cache.entry_count(), 0, "the cache was not cleared");

        // And it hears new notifications.
        let k2 = insert_minted(&b.store, &[&a.listener, &b.listener]).await;
        let key = k2.key.expose_secret();
        a.auth.authenticate(key).await.unwrap();
        b.cache
            .revoke(&k2.id, OffsetDateTime::now_utc())
            .await
            .unwrap();
        let took = wait_until(StdDuration::from_secs(5), "A refuses the key", || async {
            a.auth.authenticate(key).await.err() == Some(RejectionKind::Revoked)
        })
        .await;
        assert!(took < StdDuration::from_secs(1), "took {took:?}");
    }

    /// A TCP proxy to the server that can be taken down (every connection cut, new
    /// ones closed at once) and brought back.
    struct Proxy {
        addr: SocketAddr,
        up: Arc<AtomicBool>,
        connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
        accept: tokio::task::JoinHandle<()>,
    }

    impl Proxy {
        async fn start(target: SocketAddr) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let up = Arc::new(AtomicBool::new(true));
            let connections = Arc::new(Mutex::new(Vec::new()));
            let accept = tokio::spawn({
                let (up, connections) = (Arc::clone(&up), Arc::clone(&connections));
                async move {
                    while let Ok((mut inbound, _)) = listener.accept().await {
                        if !up.load(Ordering::SeqCst) {
                            drop(inbound);
                            continue;
                        }
                        let task = tokio::spawn(async move {
                            if let Ok(mut outbound) = TcpStream::connect(target).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
                                    .await;
                            }
                        });
                        connections.lock().unwrap().push(task.abort_handle());
                    }
                }
            });
            Self {
                addr,
                up,
                connections,
                accept,
            }
        }

        fn down(&self) {
            self.up.store(false, Ordering::SeqCst);
            for connection in self.connections.lock().unwrap().drain(..) {
                connection.abort();
            }
        }

        fn up(&self) {
            self.up.store(true, Ordering::SeqCst);
        }
    }

    impl Drop for Proxy {
        fn drop(&mut self) {
            self.down();
            self.accept.abort();
        }
    }

    async fn server_addr(url: &str) -> SocketAddr {
        let options = PgConnectOptions::from_str(url).unwrap();
        let mut found = tokio::net::lookup_host((options.get_host(), options.get_port()))
            .await
            .unwrap();
        found.next().unwrap()
    }

    /// A store on `db`'s tables whose connections go through `proxy` (1 s to get one).
    fn through_proxy(db: &TestSchema, proxy: &Proxy) -> PostgresStore {
        let pool = PgPoolOptions::new()
            .acquire_timeout(StdDuration::from_secs(1))
            .connect_lazy_with(db.options(Some(proxy.addr)));
        PostgresStore::from_pool(pool)
            .with_table_prefix(&db.prefix)
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_outage_is_503_keeps_cached_keys_and_heals_by_itself() {
        let Some(db) = TestSchema::new().await else {
            return;
        };
        let proxy = Proxy::start(server_addr(&db.url).await).await;
        let store = through_proxy(&db, &proxy);
        let instance = Instance::start(store).await;
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(AuthenticateLayer::new(instance.auth.clone()));
        let call = |key: String| {
            let app = app.clone();
            async move {
                let request = Request::get("/")
                    .header("authorization", format!("Bearer {key}"))
                    .body(Body::empty())
                    .unwrap();
                app.oneshot(request).await.unwrap().status()
            }
        };
        let cached = insert_minted(&instance.store, &[&instance.listener]).await;
        let uncached = insert_minted(&instance.store, &[&instance.listener]).await;
        let cached_key = cached.key.expose_secret().to_owned();
        let uncached_key = uncached.key.expose_secret().to_owned();
        assert_eq!(call(cached_key.clone()).await, StatusCode::OK);

        proxy.down();
        assert_eq!(
            call(cached_key.clone()).await,
            StatusCode::OK,
            "a cached key keeps working during the outage"
        );
        let start = Instant::now();
        assert_eq!(
            call(uncached_key.clone()).await,
            StatusCode::SERVICE_UNAVAILABLE,
            "an uncached key is 503 during the outage, never 401"
        );
        report("503 during the outage answered after", start.elapsed());
        assert!(start.elapsed() < StdDuration::from_secs(5));
        assert!(matches!(
            instance.store.get(&uncached.id).await,
            Err(StoreError::Unavailable(_))
        ));

        proxy.up();
        // The same router, store and pool: nothing is rebuilt.
        let took = wait_until(StdDuration::from_secs(10), "recovered", || {
            let call = call(uncached_key.clone());
            async move { call.await == StatusCode::OK }
        })
        .await;
        report("recovered after the database came back, in", took);
        assert_eq!(call(cached_key).await, StatusCode::OK);
        // The listener is back too, and cleared the cache on the way.
        wait_until(StdDuration::from_secs(15), "listener back", || async {
            instance.listener.reconnects() >= 1 && instance.listener.is_listening()
        })
        .await;
        let k3 = insert_minted(&db.store, &[&instance.listener]).await;
        let key = k3.key.expose_secret();
        instance.auth.authenticate(key).await.unwrap();
        db.store
            .revoke(&k3.id, OffsetDateTime::now_utc())
            .await
            .unwrap();
        wait_until(StdDuration::from_secs(5), "revocation heard", || async {
            instance.auth.authenticate(key).await.err() == Some(RejectionKind::Revoked)
        })
        .await;
    }

    /// Stale-if-error against PostgreSQL cut off through a proxy: a key used within the
    /// TTL plus five minutes keeps answering 200 after its TTL ran out, others get 503
    /// with `Retry-After`, and everything heals when the database is back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn through_an_outage_a_recently_used_key_answers_past_its_ttl() {
        use tower_api_key::clock::{Clock, ManualClock};
        let Some(db) = TestSchema::new().await else {
            return;
        };
        let proxy = Proxy::start(server_addr(&db.url).await).await;
        let store = through_proxy(&db, &proxy);
        let clock = ManualClock::new(OffsetDateTime::now_utc());
        // The defaults: 30 s TTL, 300 s stale-if-error.
        let cache = CachedStore::builder(store.clone())
            .with_clock(clock.clone())
            .build()
            .unwrap();
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(AuthenticateLayer::new(KeyVerifier::new(
                cache.clone(),
                pb_format(),
            )));
        let call = |key: String| {
            let app = app.clone();
            async move {
                let request = Request::get("/")
                    .header("authorization", format!("Bearer {key}"))
                    .body(Body::empty())
                    .unwrap();
                app.oneshot(request).await.unwrap()
            }
        };
        let used = pb_format().generate(Some("live")).unwrap();
        let unused = pb_format().generate(Some("live")).unwrap();
        for minted in [&used, &unused] {
            let record = KeyRecord::new(minted, "k", acme(), vec![], clock.now());
            store.insert(&record).await.unwrap();
        }
        let used_key = used.key.expose_secret().to_owned();
        let unused_key = unused.key.expose_secret().to_owned();
        assert_eq!(call(used_key.clone()).await.status(), StatusCode::OK);
        let fetched = clock.now();

        proxy.down();
        for after in [31, 120, 329] {
            clock.set(fetched + StdDuration::from_secs(after));
            assert_eq!(
                call(used_key.clone()).await.status(),
                StatusCode::OK,
                "{after} s after the last fetch"
            );
        }
        let forged = pb_format().generate(Some("live")).unwrap();
        for key in [unused_key.clone(), forged.key.expose_secret().to_owned()] {
            let response = call(key).await;
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(response.headers().contains_key("retry-after"));
        }
        clock.set(fetched + StdDuration::from_secs(331));
        assert_eq!(
            call(used_key.clone()).await.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "past the stale window"
        );

        proxy.up();
        let took = wait_until(StdDuration::from_secs(10), "recovered", || {
            let call = call(unused_key.clone());
            async move { call.await.status() == StatusCode::OK }
        })
        .await;
        report(
            "stale-if-error: recovered after the database came back, in",
            took,
        );
        assert_eq!(call(used_key).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_schema_from_a_newer_version_is_refused() {
        let Some(db) = TestSchema::new().await else {
            return;
        };
        db.check_schema().await.unwrap();
        db.migrate().await.unwrap();
        let mut admin = db.admin().await;
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {}schema_version SET version = 999",
            db.prefix
        )))
        .execute(&mut admin)
        .await
        .unwrap();
        for err in [
            db.migrate().await.unwrap_err(),
            db.check_schema().await.unwrap_err(),
        ] {
            let StoreError::Corrupt(message) = err else {
                panic!("expected Corrupt, got {err:?}");
            };
            assert!(message.contains("version 999"), "{message}");
        }
        // The refused migration released its lock before returning: its transaction
        // was rolled back, not left open on a pooled connection (which would make
        // every later migrator, and dropping the schema, wait forever).
        let free: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_xact_lock(hashtext(coalesce(current_schema(), '') || '.' || $1))",
        )
        .bind(format!("{}schema_version", db.prefix))
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert!(free, "the migration lock is still held");
    }

    #[tokio::test]
    async fn migrate_from_several_instances_at_once() {
        let Some(db) = TestSchema::new().await else {
            return;
        };
        let fresh = format!("{}x_", db.prefix);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let store = db.connect().await.with_table_prefix(&fresh).unwrap();
            tasks.spawn(async move { store.migrate().await });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap().unwrap();
        }
        let store = db.connect().await.with_table_prefix(&fresh).unwrap();
        store.check_schema().await.unwrap();
        // One tag secret for all of them, and a rotation adds a second beside it.
        let first = store.tag_keys().await.unwrap();
        assert_eq!(first.len(), 1);
        let other = db.connect().await.with_table_prefix(&fresh).unwrap();
        assert!(tagged_verifies(
            &first[0],
            &other.tag_keys().await.unwrap()[0]
        ));
        assert_eq!(other.rotate_tag_key().await.unwrap(), '1');
        other.migrate().await.unwrap();
        let keys = store.tag_keys().await.unwrap();
        assert_eq!(keys.iter().map(TagKey::id).collect::<Vec<_>>(), ['0', '1']);
        assert!(
            tagged_verifies(&first[0], &keys[0]),
            "the old secret is kept"
        );
    }

    #[tokio::test]
    async fn only_the_digest_is_stored() {
        let Some(db) = TestSchema::new().await else {
            return;
        };
        let minted = insert_minted(&db.store, &[]).await;
        let mut admin = db.admin().await;
        let row: (Vec<u8>, String) = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT digest, row_to_json(k)::text FROM {}keys k WHERE id = $1",
            db.prefix
        )))
        .bind(minted.id.as_str())
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert_eq!(row.0, minted.digest.as_bytes());
        let secret = minted.key.expose_secret();
        assert!(!row.1.contains(&secret[minted.prefix.len()..]));
    }

    /// The acting key's row is read `FOR UPDATE` in the change's transaction: a change
    /// made by a key whose revocation is in flight waits for that revocation, then is
    /// refused (it does not read the row as it was and slip in before the commit).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_change_waits_for_a_concurrent_change_of_its_actor() {
        let Some(db) = TestSchema::new().await else {
            return;
        };
        let actor = new_key(acme(), T0);
        db.insert(&actor).await.unwrap();
        let mut admin = db.admin().await;
        sqlx::raw_sql("BEGIN").execute(&mut admin).await.unwrap();
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {}keys SET revoked_at = $2 WHERE id = $1",
            db.prefix
        )))
        .bind(actor.id.as_str())
        .bind(T0)
        .execute(&mut admin)
        .await
        .unwrap();

        let created = new_key(acme(), T0);
        let task = {
            let (store, actor, created) = (db.store.clone(), actor.clone(), created.clone());
            tokio::spawn(async move {
                let change = Change::Insert {
                    record: &created,
                    actor: Some(ActingKey::new(&actor, T0)),
                };
                store.apply(change, &[]).await
            })
        };
        // Until the change waits for a row lock on this test's table, or finishes.
        let probe = db.store.pool().clone();
        let pattern = format!("%{}keys%FOR UPDATE%", db.prefix);
        wait_until(StdDuration::from_secs(10), "the change to wait", || {
            let (probe, pattern) = (probe.clone(), pattern.clone());
            let finished = task.is_finished();
            async move {
                let waiting: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE wait_event_type = 'Lock' AND query LIKE $1",
                )
                .bind(pattern)
                .fetch_one(&probe)
                .await
                .unwrap();
                finished || waiting > 0
            }
        })
        .await;
        assert!(
            !task.is_finished(),
            "the change did not wait for its actor's row: {:?}",
            task.await
        );
        sqlx::raw_sql("COMMIT").execute(&mut admin).await.unwrap();
        assert_eq!(task.await.unwrap().unwrap(), Applied::ActorChanged);
        assert!(db.get(&created.id).await.unwrap().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_change_whose_entry_cannot_be_written_is_not_made() {
        let Some(db) = TestSchema::new().await else {
            return;
        };
        let mut admin = db.admin().await;
        let audit_table = format!("{}audit", db.prefix);
        super::cases::a_change_whose_entry_cannot_be_written_is_not_made(&*db, || async move {
            sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE {audit_table}")))
                .execute(&mut admin)
                .await
                .unwrap();
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_version_1_database_is_upgraded_with_its_audit_rows() {
        let Some(db) = TestSchema::new().await else {
            return;
        };
        // A second prefix in the same schema, set up at version 1 by hand.
        let prefix = format!("{}v1_", db.prefix);
        let mut admin = db.admin().await;
        let v1 = include_str!("../src/store/sql/migrations/postgres/0001_create.sql")
            .replace("{prefix}", &prefix)
            .replace("{channel}", &format!("{prefix}changes"));
        sqlx::raw_sql(AssertSqlSafe(format!(
            "{v1}; CREATE TABLE {prefix}schema_version (singleton integer NOT NULL PRIMARY KEY, \
             version bigint NOT NULL, migrated_at timestamptz NOT NULL DEFAULT now()); \
             INSERT INTO {prefix}schema_version (singleton, version) VALUES (1, 1);"
        )))
        .execute(&mut admin)
        .await
        .unwrap();
        for id in ["key00000001", "key00000002"] {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {prefix}keys (id, digest, prefix, name, owner_kind, owner_id, \
                 created_at, family) VALUES ($1, sha256($1::bytea), 'pb_live_' || $1, 'k', \
                 'organization', 'acme', now(), $1)"
            )))
            .bind(id)
            .execute(&mut admin)
            .await
            .unwrap();
        }
        for (at, action, key, actor) in super::cases::V1_ROWS {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {prefix}audit (occurred_at, action, api_key_id, actor_key_id, \
                 owner_kind, owner_id) VALUES (to_timestamp($1), $2, $3, $4, 'organization', 'acme')"
            )))
            .bind(at as f64)
            .bind(action)
            .bind(key)
            .bind(actor)
            .execute(&mut admin)
            .await
            .unwrap();
        }
        let store = db.connect().await.with_table_prefix(&prefix).unwrap();
        assert!(store.check_schema().await.is_err(), "version 1 is outdated");
        store.migrate().await.unwrap();
        store.check_schema().await.unwrap();
        super::cases::v1_rows_read_back_after_the_upgrade(&store).await;
    }
}
