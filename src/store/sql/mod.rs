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
//! use tower_api_key::store::{CachedStore, KeyRecord, KeyStore, ManagedKeyStore, Owner};
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

mod core;
mod schema;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "postgres")]
mod listener;
#[cfg(feature = "postgres")]
mod postgres;

use std::fmt;
use std::sync::Arc;

#[cfg(feature = "postgres")]
pub use self::listener::ListenerHandle;
#[cfg(feature = "postgres")]
pub use self::postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use self::sqlite::SqliteStore;
use super::StoreError;
use crate::error::ConfigError;

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

    pub(crate) fn key_usage(&self) -> String {
        format!("{}key_usage", self.0)
    }

    pub(crate) fn tag_secrets(&self) -> String {
        format!("{}tag_secrets", self.0)
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

/// A value read from the key store that this crate cannot make sense of.
pub(crate) fn corrupt(what: &str, detail: impl fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("invalid {what} in the key store: {detail}"))
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
