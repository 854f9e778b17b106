//! Durable key stores on SQL databases, through [sqlx]: `SqliteStore` (feature
//! `sqlite`) and `PostgresStore` (feature `postgres`).
//!
//! Both implement [`KeyStore`](crate::store::KeyStore) and
//! [`AuditSink`](crate::audit::AuditSink), and keep the same tables:
//!
//! | table | holds |
//! |---|---|
//! | `<prefix>keys` | one row per key: its id, its SHA-256 digest (never the key), owner, scopes, timestamps, rotation, metadata |
//! | `<prefix>audit` | the audit log, newest entries found by owner or by key through two indexes |
//! | `<prefix>schema_version` | one row: the schema version the tables are at |
//!
//! The prefix is `tower_api_key_` unless changed with `with_table_prefix`, so the tables
//! can live in an application's own database next to its tables.
//!
//! ```
//! # #[cfg(feature = "sqlite")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tower_api_key::key::KeyFormat;
//! use tower_api_key::store::sql::SqliteStore;
//! use tower_api_key::store::{CachedStore, KeyRecord, KeyStore, Owner};
//!
//! // A file path works the same: `sqlite://keys.db` or `sqlite:///var/lib/app/keys.db`.
//! let store = SqliteStore::connect("sqlite::memory:").await?;
//! store.migrate().await?;
//! let store = CachedStore::builder(store).build()?;
//!
//! let minted = KeyFormat::new("pb")?.generate(None)?;
//! let now = time::OffsetDateTime::now_utc();
//! store.insert(&KeyRecord::new(&minted, "ci", Owner::organization("acme"), vec![], now)).await?;
//! assert!(store.lookup_id(&minted.id).await?.is_some());
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "sqlite"))]
//! # fn main() {}
//! ```
//!
//! # Migrations
//!
//! Call `migrate()` once at start-up; it is idempotent and safe to run from several
//! instances at once (it holds a lock while it works). The SQL is embedded in the crate
//! and versioned in `<prefix>schema_version`. A database whose schema is newer than this
//! build of the crate knows is refused with [`StoreError::Corrupt`] naming both versions,
//! rather than being written with an older understanding of it.
//!
//! `sqlx::migrate!` is not used, for two reasons. Its SQL is fixed at compile time, so it
//! cannot name tables after a prefix chosen at run time. And it records what it applied
//! in a single `_sqlx_migrations` table per database: in an application that runs its
//! own sqlx migrations there, this crate's entries would make the application's
//! migrator fail ("migration was previously applied but is missing"). A small runner
//! with its own version table avoids both.
//!
//! # Errors
//!
//! | what happened | [`StoreError`] |
//! |---|---|
//! | no such row | `Ok(None)` (or [`StoreError::NotFound`] for `update`) |
//! | a duplicate id or digest | [`StoreError::Conflict`] |
//! | connection refused or lost, pool timed out, database shutting down, lock timeout | [`StoreError::Unavailable`] (the layer answers 503, never 401) |
//! | a row that cannot be decoded, missing tables, a newer schema | [`StoreError::Corrupt`] |
//!
//! A database that goes away is not fatal: lookups fail with `Unavailable` while it is
//! gone (keys in a [`CachedStore`](crate::store::CachedStore) keep working until their
//! TTL), and the pool opens new connections when it is back. Nothing needs a restart.
//!
//! # Timestamps
//!
//! Times are stored with microsecond precision (PostgreSQL's `timestamptz`; SQLite
//! keeps microseconds since the Unix epoch in an `INTEGER`), so a record read back
//! has its times truncated to the microsecond.

mod schema;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "postgres")]
mod listener;
#[cfg(feature = "postgres")]
mod postgres;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use time::OffsetDateTime;

#[cfg(feature = "postgres")]
pub use self::listener::ListenerHandle;
#[cfg(feature = "postgres")]
pub use self::postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use self::sqlite::SqliteStore;
use super::{Applied, Change, KeyRecord, Owner, Rotation, StoreError};
use crate::audit::{AuditAction, AuditActor, AuditEntry};
use crate::key::{Digest, Environment, KeyId};
use crate::ConfigError;

/// The key table's columns, in the order both stores bind and read them.
pub(crate) const COLUMNS: &str =
    "id, digest, prefix, name, owner_kind, owner_id, environment, scopes, \
    created_at, created_by, expires_at, revoked_at, superseded_by, rotation_valid_until, \
    family, last_used_at, rate_limit_policy, metadata, imported";

/// The audit table's columns (without the generated id).
pub(crate) const AUDIT_COLUMNS: &str =
    "occurred_at, action, api_key_id, prefix, actor_kind, actor_id, owner_kind, \
    owner_id, environment, scopes, method, path, route, status, request_id, successor_key_id";

/// A statement built from trusted text.
pub(crate) fn sql(text: String) -> sqlx::SqlStr {
    // Only validated prefixes are ever interpolated (see `TablePrefix::new`); every value
    // is a bind parameter.
    use sqlx::SqlSafeStr as _;
    sqlx::AssertSqlSafe(Arc::<str>::from(text)).into_sql_str()
}

/// The table prefix used unless another is set.
pub const DEFAULT_TABLE_PREFIX: &str = "tower_api_key_";

/// The longest table prefix accepted. PostgreSQL identifiers stop at 63 bytes, and the
/// longest name built from the prefix adds 20.
const MAX_PREFIX_LEN: usize = 40;

/// A validated table prefix, and the names built from it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TablePrefix(Arc<str>);

impl TablePrefix {
    /// Checks `prefix`: at most 40 characters of `[a-z0-9_]`, not starting with a digit.
    /// Only such prefixes are ever put into SQL text.
    pub(crate) fn new(prefix: &str) -> Result<Self, ConfigError> {
        let valid = prefix.len() <= MAX_PREFIX_LEN
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !prefix.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(ConfigError::new(format!(
                "invalid table prefix {prefix:?}: expected at most {MAX_PREFIX_LEN} characters \
                 of [a-z0-9_], not starting with a digit"
            )));
        }
        Ok(Self(prefix.into()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn keys(&self) -> String {
        format!("{}keys", self.0)
    }

    pub(crate) fn audit(&self) -> String {
        format!("{}audit", self.0)
    }

    pub(crate) fn schema_version(&self) -> String {
        format!("{}schema_version", self.0)
    }

    /// The PostgreSQL notification channel that carries key changes.
    pub(crate) fn channel(&self) -> String {
        format!("{}changes", self.0)
    }

    /// Replaces `{prefix}` and `{channel}` in a SQL template.
    pub(crate) fn render(&self, template: &str) -> String {
        template
            .replace("{prefix}", self.as_str())
            .replace("{channel}", &self.channel())
    }
}

impl Default for TablePrefix {
    fn default() -> Self {
        Self(DEFAULT_TABLE_PREFIX.into())
    }
}

impl fmt::Debug for TablePrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// A failure to reach the database at start-up, naming where it was looked for (never
/// the password).
#[derive(Debug)]
pub(crate) struct ConnectError {
    target: String,
    reason: String,
}

impl ConnectError {
    pub(crate) fn store_error(target: impl Into<String>, reason: impl fmt::Display) -> StoreError {
        StoreError::unavailable(Self {
            target: target.into(),
            reason: reason.to_string(),
        })
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not connect to {}: {}", self.target, self.reason)
    }
}

impl std::error::Error for ConnectError {}

/// Commits `tx` when `result` is `Ok`; otherwise rolls it back before returning the
/// error. Rolling back here rather than leaving it to the connection's next use
/// matters: until then an open transaction keeps its locks (PostgreSQL's advisory
/// migration lock, SQLite's write lock) on a connection sitting in the pool.
pub(crate) async fn settle<DB: sqlx::Database, T>(
    tx: sqlx::Transaction<'_, DB>,
    result: Result<T, StoreError>,
) -> Result<T, StoreError> {
    match result {
        Ok(value) => tx.commit().await.map_err(map_error).map(|()| value),
        Err(error) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %rollback, "rolling back a failed transaction failed");
            }
            Err(error)
        }
    }
}

/// Maps a sqlx error to a [`StoreError`]: unique violations are conflicts, decoding
/// problems and missing tables are corruption, everything else (connections, pool,
/// locks, a database shutting down) is unavailability.
pub(crate) fn map_error(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                return StoreError::Conflict;
            }
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let message = db.message().to_owned();
            // PostgreSQL class 42 (undefined table or column, syntax) and SQLite's
            // "no such table" mean the schema is not what this crate expects.
            let schema_mismatch = code.starts_with("42")
                || message.contains("no such table")
                || message.contains("no such column");
            // Class 23 other than uniqueness: a row that breaks the schema's checks.
            let invalid_row = code.starts_with("23")
                || matches!(
                    db.kind(),
                    sqlx::error::ErrorKind::CheckViolation
                        | sqlx::error::ErrorKind::NotNullViolation
                        | sqlx::error::ErrorKind::ForeignKeyViolation
                );
            if schema_mismatch {
                StoreError::Corrupt(format!(
                    "the key store's tables are missing or differ from what this version of \
                     tower-api-key expects (did `migrate()` run?): {message}"
                ))
            } else if invalid_row {
                StoreError::Corrupt(format!("a row was refused by the schema: {message}"))
            } else {
                StoreError::unavailable(sqlx::Error::Database(db))
            }
        }
        sqlx::Error::RowNotFound => StoreError::NotFound,
        e @ (sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. }) => StoreError::Corrupt(e.to_string()),
        other => StoreError::unavailable(other),
    }
}

fn corrupt(what: &str, detail: impl fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("invalid {what} in the key store: {detail}"))
}

/// A key row, decoded column by column but not yet checked.
pub(crate) struct RawRecord {
    pub(crate) id: String,
    pub(crate) digest: Vec<u8>,
    pub(crate) prefix: String,
    pub(crate) name: String,
    pub(crate) owner_kind: String,
    pub(crate) owner_id: String,
    pub(crate) environment: Option<String>,
    pub(crate) scopes: Vec<String>,
    pub(crate) created_at: OffsetDateTime,
    pub(crate) created_by: Option<String>,
    pub(crate) expires_at: Option<OffsetDateTime>,
    pub(crate) revoked_at: Option<OffsetDateTime>,
    pub(crate) superseded_by: Option<String>,
    pub(crate) rotation_valid_until: Option<OffsetDateTime>,
    pub(crate) family: String,
    pub(crate) last_used_at: Option<OffsetDateTime>,
    pub(crate) rate_limit_policy: Option<String>,
    pub(crate) metadata: serde_json::Value,
    pub(crate) imported: bool,
}

impl RawRecord {
    pub(crate) fn into_record(self) -> Result<KeyRecord, StoreError> {
        let id = key_id(&self.id)?;
        let digest: [u8; 32] = self
            .digest
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("digest", format!("{} bytes", self.digest.len())))?;
        let rotation = match (self.superseded_by, self.rotation_valid_until) {
            (Some(successor), Some(valid_until)) => Some(Rotation {
                superseded_by: key_id(&successor)?,
                valid_until,
            }),
            (None, None) => None,
            _ => return Err(corrupt("rotation", "half of it is missing")),
        };
        let serde_json::Value::Object(metadata) = self.metadata else {
            return Err(corrupt("metadata", "not a JSON object"));
        };
        Ok(KeyRecord {
            id,
            digest: Digest::from_bytes(digest),
            prefix: self.prefix,
            name: self.name,
            owner: owner(&self.owner_kind, self.owner_id)?,
            environment: environment(self.environment.as_deref())?,
            scopes: self.scopes,
            created_at: self.created_at,
            created_by: self.created_by,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            rotation,
            family: key_id(&self.family)?,
            last_used_at: self.last_used_at,
            rate_limit_policy: self.rate_limit_policy,
            metadata,
            imported: self.imported,
        })
    }
}

/// An audit row, decoded column by column but not yet checked.
pub(crate) struct RawAudit {
    pub(crate) id: i64,
    pub(crate) occurred_at: OffsetDateTime,
    pub(crate) action: String,
    pub(crate) api_key_id: String,
    pub(crate) prefix: Option<String>,
    pub(crate) actor_kind: String,
    pub(crate) actor_id: Option<String>,
    pub(crate) owner_kind: String,
    pub(crate) owner_id: String,
    pub(crate) environment: Option<String>,
    pub(crate) scopes: Vec<String>,
    pub(crate) method: Option<String>,
    pub(crate) path: Option<String>,
    pub(crate) route: Option<String>,
    pub(crate) status: Option<i64>,
    pub(crate) request_id: Option<String>,
    pub(crate) successor_key_id: Option<String>,
}

impl RawAudit {
    pub(crate) fn into_entry(self) -> Result<AuditEntry, StoreError> {
        Ok(AuditEntry {
            id: u64::try_from(self.id).map_err(|_| corrupt("audit id", self.id))?,
            occurred_at: self.occurred_at,
            action: audit_action(&self.action)?,
            api_key_id: key_id(&self.api_key_id)?,
            prefix: self.prefix,
            actor: actor(&self.actor_kind, self.actor_id)?,
            owner: owner(&self.owner_kind, self.owner_id)?,
            environment: environment(self.environment.as_deref())?,
            scopes: self.scopes,
            method: self.method,
            path: self.path,
            route: self.route,
            status: self
                .status
                .map(|s| u16::try_from(s).map_err(|_| corrupt("audit status", s)))
                .transpose()?,
            request_id: self.request_id,
            successor_key_id: self.successor_key_id.as_deref().map(key_id).transpose()?,
        })
    }
}

fn key_id(id: &str) -> Result<KeyId, StoreError> {
    KeyId::new(id).map_err(|e| corrupt("key id", e))
}

fn environment(env: Option<&str>) -> Result<Option<Environment>, StoreError> {
    env.map(|e| Environment::new(e).map_err(|e| corrupt("environment", e)))
        .transpose()
}

fn owner(kind: &str, id: String) -> Result<Owner, StoreError> {
    match kind {
        "organization" => Ok(Owner::organization(id)),
        "user" => Ok(Owner::user(id)),
        other => Err(corrupt("owner kind", format!("{other:?}"))),
    }
}

fn audit_action(action: &str) -> Result<AuditAction, StoreError> {
    AuditAction::ALL
        .into_iter()
        .find(|a| a.as_str() == action)
        .ok_or_else(|| corrupt("audit action", format!("{action:?}")))
}

fn actor(kind: &str, id: Option<String>) -> Result<AuditActor, StoreError> {
    let Some(id) = id else {
        return Err(corrupt("audit actor", "it is missing"));
    };
    match kind {
        "key" => Ok(AuditActor::Key(key_id(&id)?)),
        "system" => Ok(AuditActor::System(id)),
        other => Err(corrupt("audit actor kind", format!("{other:?}"))),
    }
}

/// What one database provides for [`apply_in`], inside a transaction.
pub(crate) trait Backend: Sync {
    type Conn: Send;

    /// The key's row, read so that it cannot change before the transaction ends (a row
    /// lock on PostgreSQL; SQLite's `BEGIN IMMEDIATE` already holds the write lock).
    fn read_locked(
        &self,
        conn: &mut Self::Conn,
        id: &KeyId,
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send;

    /// Inserts a key row.
    fn insert(
        &self,
        conn: &mut Self::Conn,
        record: &KeyRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The conditional `UPDATE … RETURNING` of a change other than an insert: the row
    /// afterwards when the condition held, `None` otherwise.
    fn write(
        &self,
        conn: &mut Self::Conn,
        change: Change<'_>,
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send;

    /// Inserts audit entries.
    fn write_audit(
        &self,
        conn: &mut Self::Conn,
        entries: &[AuditEntry],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// [`KeyStore::apply`](crate::store::KeyStore::apply) for both databases, inside the
/// transaction the caller holds and settles.
///
/// The row is read (and locked) first: a key inserted after that read did not exist for
/// this change, and one that was found cannot change before the conditional write
/// decides. Audit entries are written only when the change was made.
pub(crate) async fn apply_in<B: Backend>(
    backend: &B,
    conn: &mut B::Conn,
    change: Change<'_>,
    audit: &[AuditEntry],
) -> Result<Applied, StoreError> {
    if let Change::Insert(record) = change {
        backend.insert(conn, record).await?;
        backend.write_audit(conn, audit).await?;
        return Ok(Applied::Done(record.clone()));
    }
    let Some(current) = backend.read_locked(conn, change.id()).await? else {
        return Ok(Applied::NotFound);
    };
    let Some(changed) = backend.write(conn, change).await? else {
        return Ok(Applied::Refused(current));
    };
    if let Change::Rotate { successor, .. } = change {
        backend.insert(conn, successor).await?;
    }
    backend.write_audit(conn, audit).await?;
    Ok(Applied::Done(changed))
}

/// How an audit entry's actor is stored: `(actor_kind, actor_id)`.
pub(crate) fn actor_columns(actor: &AuditActor) -> (&'static str, String) {
    match actor {
        AuditActor::Key(id) => ("key", id.as_str().to_owned()),
        AuditActor::System(name) => ("system", name.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_checked_before_they_reach_sql() {
        for ok in ["", "auth_", "tower_api_key_", "_x", "a1"] {
            assert!(TablePrefix::new(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "Auth_",
            "1x_",
            "a-b",
            "a b",
            "x\"; DROP TABLE users; --",
            "é",
            &"a".repeat(41),
        ] {
            let err = TablePrefix::new(bad).unwrap_err();
            assert!(err.message().contains("table prefix"), "{bad:?}");
        }
    }

    #[test]
    fn names_follow_the_prefix() {
        let p = TablePrefix::new("auth_").unwrap();
        assert_eq!(p.keys(), "auth_keys");
        assert_eq!(p.audit(), "auth_audit");
        assert_eq!(p.schema_version(), "auth_schema_version");
        assert_eq!(p.channel(), "auth_changes");
        assert_eq!(
            p.render("SELECT '{channel}' FROM {prefix}keys WHERE x = '{}'"),
            "SELECT 'auth_changes' FROM auth_keys WHERE x = '{}'"
        );
        assert_eq!(TablePrefix::default().keys(), "tower_api_key_keys");
    }

    #[test]
    fn every_audit_action_reads_back() {
        for action in AuditAction::ALL {
            assert_eq!(audit_action(action.as_str()).unwrap(), action);
        }
        assert!(matches!(
            audit_action("api_key.exploded"),
            Err(StoreError::Corrupt(_))
        ));
    }

    fn raw() -> RawRecord {
        RawRecord {
            id: "abc".into(),
            digest: vec![7; 32],
            prefix: "pb_abc".into(),
            name: "n".into(),
            owner_kind: "organization".into(),
            owner_id: "acme".into(),
            environment: Some("live".into()),
            scopes: vec!["a:read".into()],
            created_at: OffsetDateTime::UNIX_EPOCH,
            created_by: None,
            expires_at: None,
            revoked_at: None,
            superseded_by: None,
            rotation_valid_until: None,
            family: "abc".into(),
            last_used_at: None,
            rate_limit_policy: None,
            metadata: serde_json::json!({}),
            imported: false,
        }
    }

    #[test]
    fn corrupt_rows_are_refused_not_guessed() {
        assert!(raw().into_record().is_ok());
        let cases: [fn(&mut RawRecord); 6] = [
            |r| r.digest.truncate(31),
            |r| r.owner_kind = "robot".into(),
            |r| r.id = "not an id".into(),
            |r| r.environment = Some("LIVE".into()),
            |r| r.superseded_by = Some("next".into()),
            |r| r.metadata = serde_json::json!([1, 2]),
        ];
        for (i, break_it) in cases.into_iter().enumerate() {
            let mut r = raw();
            break_it(&mut r);
            assert!(
                matches!(r.into_record(), Err(StoreError::Corrupt(_))),
                "case {i}"
            );
        }
    }

    #[test]
    fn decode_errors_are_corruption_and_pool_errors_unavailability() {
        assert!(matches!(
            map_error(sqlx::Error::ColumnNotFound("digest".into())),
            StoreError::Corrupt(_)
        ));
        assert!(matches!(
            map_error(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            map_error(sqlx::Error::Io(
                std::io::ErrorKind::ConnectionRefused.into()
            )),
            StoreError::Unavailable(_)
        ));
    }
}
