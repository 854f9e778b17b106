use std::str::FromStr;
use std::time::Duration;

use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite};
use time::OffsetDateTime;

use super::core::{impl_sql_store, Columns, Dialect, SqlCore, Value};
use super::schema::{self, Migration, CURRENT_VERSION};
use super::{corrupt, map_error, ConnectError, TablePrefix};
use crate::error::ConfigError;
use crate::store::StoreError;

/// How long a lookup waits for a free connection before failing with
/// [`StoreError::Unavailable`].
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`KeyStore`](crate::store::KeyStore) and [`AuditSink`](crate::audit::AuditSink) in
/// a SQLite database: the durable default for a single machine. Clones share one
/// connection pool.
///
/// [`SqliteStore::connect`] opens (and creates) the database file in WAL mode with
/// `synchronous=FULL`: a write is on disk before it is acknowledged, so it survives the
/// process being killed (`kill -9`) or the machine losing power. Readers never wait for
/// the writer.
///
/// Several processes may share the file, but each keeps its own cache and nothing
/// tells them of each other's changes: they see a revocation within their cache TTL.
/// For several server instances use `PostgresStore` (feature `postgres`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_api_key::store::sql::SqliteStore;
///
/// let path = std::env::temp_dir().join(format!("doc-keys-{}.db", std::process::id()));
/// let store = SqliteStore::connect(&format!("sqlite://{}", path.display()))
///     .await?
///     .with_table_prefix("auth_")?;
/// store.migrate().await?;
/// assert_eq!(store.table_prefix(), "auth_");
/// # drop(store);
/// # let _ = std::fs::remove_file(&path);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    core: SqlCore<Sqlite>,
}

impl_sql_store!(SqliteStore);

/// Whether `error` is SQLite's `SQLITE_BUSY` (any extended form): another connection
/// holds a lock this one could not wait for.
fn is_busy(error: &sqlx::Error) -> bool {
    const SQLITE_BUSY: i32 = 5;
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| code & 0xff == SQLITE_BUSY),
        _ => false,
    }
}

impl SqliteStore {
    /// Opens the database at `url`, creating the file if it is missing, in WAL mode with
    /// `synchronous=FULL`. Tables use the default prefix, `tower_api_key_`.
    ///
    /// `sqlite://keys.db` is relative to the working directory, `sqlite:///var/lib/app/keys.db`
    /// is absolute, and `sqlite::memory:` is an in-memory database (gone when the store
    /// is dropped). The directory must exist.
    ///
    /// Several processes may open a new file at the same moment: switching it to WAL
    /// mode needs a lock that SQLite's busy timeout does not wait for, so an opener that
    /// finds the file locked tries again, for up to 5 seconds.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] naming the file when it cannot be opened or created,
    /// or stays locked by another connection for 5 seconds.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| ConnectError::store_error(format!("SQLite database {url:?}"), e))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        Self::connect_with(options).await
    }

    /// Opens the database with sqlx's `options`, as given (see [`SqliteStore::connect`]
    /// for the durable settings it adds), in a pool that never recycles connections.
    /// Like `connect`, it tries again for up to 5 seconds while the file is locked.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] naming the file when it cannot be opened.
    pub async fn connect_with(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let target = format!("SQLite database {}", options.get_filename().display());
        let pool_options = SqlitePoolOptions::new()
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // Local connections need no recycling, and an in-memory database lives only
            // as long as one of its connections.
            .idle_timeout(None)
            .max_lifetime(None);
        // Switching a file into WAL mode takes an exclusive lock that SQLite's busy
        // timeout does not wait for: when several processes open a new file at once,
        // all but one may get SQLITE_BUSY. They try again until the file has switched.
        let deadline = tokio::time::Instant::now() + ACQUIRE_TIMEOUT;
        let mut delay = Duration::from_millis(2);
        loop {
            match pool_options.clone().connect_with(options.clone()).await {
                Ok(pool) => return Ok(Self::from_pool(pool)),
                Err(error) if is_busy(&error) && tokio::time::Instant::now() < deadline => {
                    tracing::debug!(
                        database = %target,
                        retry_in = ?delay,
                        "the database is locked by another connection; trying again"
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(100));
                }
                Err(error) => return Err(ConnectError::store_error(target, error)),
            }
        }
    }

    /// Uses an existing pool, for example the application's own.
    pub fn from_pool(pool: SqlitePool) -> Self {
        Self {
            core: SqlCore::new(pool, TablePrefix::default()),
        }
    }

    /// Names the tables `<prefix>keys`, `<prefix>audit` and `<prefix>schema_version`
    /// (the default prefix is `tower_api_key_`).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] unless the prefix is at most 40 characters of `[a-z0-9_]`, not
    /// starting with a digit.
    pub fn with_table_prefix(self, prefix: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            core: self.core.with_prefix(TablePrefix::new(prefix)?),
        })
    }

    /// The table prefix.
    pub fn table_prefix(&self) -> &str {
        self.core.prefix().as_str()
    }

    /// The connection pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.core.pool
    }

    /// Creates the tables, or brings them up to this version of the crate. Idempotent;
    /// concurrent calls from several processes are serialized by SQLite's write lock.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] when the database was migrated by a newer version of this
    /// crate; [`StoreError::Unavailable`] when it cannot be written.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        if let Some(from) = self.core.migrate().await? {
            tracing::info!(
                prefix = self.table_prefix(),
                from,
                to = CURRENT_VERSION,
                "migrated the SQLite key store"
            );
        }
        Ok(())
    }

    /// Checks, without changing anything, that the tables are at exactly the schema
    /// version this crate needs.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] naming the versions when the schema is older (call
    /// [`SqliteStore::migrate`]) or newer (upgrade the crate).
    pub async fn check_schema(&self) -> Result<(), StoreError> {
        self.core.check_schema().await
    }
}

/// Microseconds since the Unix epoch, the encoding of every time in the SQLite tables.
fn micros(t: OffsetDateTime) -> i64 {
    // Microseconds since the epoch, rounded down; `OffsetDateTime`'s range fits.
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000)).unwrap_or(i64::MAX)
}

/// The time `m` microseconds after the Unix epoch.
fn from_micros(m: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(m) * 1_000)
        .map_err(|e| corrupt("timestamp", e))
}

/// `value` as JSON text, for a `TEXT` column.
fn json_text<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| corrupt("JSON value", e))
}

/// Times are microseconds since the epoch in an `INTEGER`, scopes a JSON array and
/// metadata a JSON object in `TEXT`. `BEGIN IMMEDIATE` takes the write lock when a write
/// transaction starts, so a row read in it cannot change and needs no lock of its own.
impl Dialect for Sqlite {
    const BEGIN: Option<&'static str> = Some("BEGIN IMMEDIATE");
    const LOCK_ROW: &'static str = "";
    const NOT_DISTINCT: &'static str = "IS";
    const BINARY_ORDER: &'static str = "";
    const TEXT_PARAM: &'static str = "";
    const AUDIT_CHUNK: usize = 500;
    const MIGRATIONS: &'static [Migration] = schema::SQLITE;
    const VERSION_TABLE: &'static str = "CREATE TABLE IF NOT EXISTS {prefix}schema_version (\
        singleton INTEGER NOT NULL PRIMARY KEY CHECK (singleton = 1), \
        version INTEGER NOT NULL, \
        migrated_at INTEGER NOT NULL) STRICT";
    const SET_VERSION: &'static str =
        "INSERT INTO {prefix}schema_version (singleton, version, migrated_at) VALUES (1, ?1, ?2) \
         ON CONFLICT (singleton) DO UPDATE SET version = excluded.version, \
         migrated_at = excluded.migrated_at";
    const TABLE_EXISTS: &'static str = "SELECT count(*) > 0 AS present FROM sqlite_master \
        WHERE type = 'table' AND name = ?1";

    /// `$n` becomes `?n`: SQLite would number `$n` parameters by first appearance.
    fn numbered(statement: &str) -> String {
        statement.replace('$', "?")
    }

    /// As JSON values, so that spacing does not matter.
    fn scopes_equal(column: &str, parameter: &str) -> String {
        format!("json({column}) = json({parameter})")
    }

    /// The batch is one JSON array of `[id, micros]` pairs.
    fn touch(keys: &str) -> String {
        format!(
            "UPDATE {keys} SET last_used_at = batch.at \
             FROM (SELECT json_extract(value, '$[0]') AS id, \
                          max(json_extract(value, '$[1]')) AS at \
                   FROM json_each(?1) GROUP BY 1) AS batch \
             WHERE {keys}.id = batch.id \
               AND ({keys}.last_used_at IS NULL OR {keys}.last_used_at < batch.at)"
        )
    }

    /// The batch is one JSON array of `[id, hour, admitted, scope, rate, quota]`.
    /// (`WHERE true` keeps SQLite from reading `ON CONFLICT` as part of the join.)
    fn add_usage(usage: &str) -> String {
        format!(
            "INSERT INTO {usage} \
                 (key_id, hour, admitted, refused_scope, refused_rate_limit, refused_quota) \
             SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), \
                    json_extract(value, '$[2]'), json_extract(value, '$[3]'), \
                    json_extract(value, '$[4]'), json_extract(value, '$[5]') \
             FROM json_each(?1) WHERE true \
             ON CONFLICT (key_id, hour) DO UPDATE SET \
                 admitted = admitted + excluded.admitted, \
                 refused_scope = refused_scope + excluded.refused_scope, \
                 refused_rate_limit = refused_rate_limit + excluded.refused_rate_limit, \
                 refused_quota = refused_quota + excluded.refused_quota"
        )
    }

    fn rows_affected(result: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    fn version_stamp() -> Vec<Value<'static>> {
        vec![Value::Time(OffsetDateTime::now_utc())]
    }

    fn bind<'q>(
        query: Query<'q, Self, SqliteArguments>,
        value: Value<'_>,
    ) -> Result<Query<'q, Self, SqliteArguments>, StoreError> {
        Ok(match value {
            Value::Text(v) => query.bind(v),
            Value::OptText(v) => query.bind(v),
            Value::Bytes(v) => query.bind(v),
            Value::Bool(v) => query.bind(v),
            Value::Int(v) => query.bind(v),
            Value::Status(v) => query.bind(v.map(i64::from)),
            Value::Time(v) => query.bind(micros(v)),
            Value::OptTime(v) => query.bind(v.map(micros)),
            Value::Scopes(v) => query.bind(json_text(&v)?),
            Value::Metadata(v) => query.bind(json_text(v)?),
            Value::Batch(batch) => {
                let pairs: Vec<(&str, i64)> = batch
                    .iter()
                    .map(|(id, at)| (id.as_str(), micros(*at)))
                    .collect();
                query.bind(json_text(&pairs)?)
            }
            Value::Usage(batch) => {
                let rows: Vec<(&str, i64, i64, i64, i64, i64)> = batch
                    .iter()
                    .map(|b| {
                        let [a, s, r, q] = b
                            .counts
                            .as_array()
                            .map(|n| i64::try_from(n).unwrap_or(i64::MAX));
                        (b.key_id.as_str(), b.hour_number(), a, s, r, q)
                    })
                    .collect();
                query.bind(json_text(&rows)?)
            }
        })
    }

    /// Nothing to do: `BEGIN IMMEDIATE` already serializes migrations.
    async fn lock_migrations(
        _: &mut sqlx::SqliteConnection,
        _: &TablePrefix,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}

impl Columns for SqliteRow {
    fn text(&self, column: &str) -> Result<String, StoreError> {
        self.try_get(column).map_err(map_error)
    }

    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        self.try_get(column).map_err(map_error)
    }

    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError> {
        self.try_get(column).map_err(map_error)
    }

    fn flag(&self, column: &str) -> Result<bool, StoreError> {
        self.try_get(column).map_err(map_error)
    }

    fn int(&self, column: &str) -> Result<i64, StoreError> {
        self.try_get(column).map_err(map_error)
    }

    fn status(&self, column: &str) -> Result<Option<i64>, StoreError> {
        self.try_get(column).map_err(map_error)
    }

    fn time(&self, column: &str) -> Result<OffsetDateTime, StoreError> {
        from_micros(self.int(column)?)
    }

    fn opt_time(&self, column: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        let micros: Option<i64> = self.try_get(column).map_err(map_error)?;
        micros.map(from_micros).transpose()
    }

    fn scopes(&self, column: &str) -> Result<Vec<String>, StoreError> {
        serde_json::from_str(&self.text(column)?).map_err(|e| corrupt(column, e))
    }

    fn json(&self, column: &str) -> Result<serde_json::Value, StoreError> {
        serde_json::from_str(&self.text(column)?).map_err(|e| corrupt(column, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyId;
    use crate::store::KeyStore;

    #[test]
    fn microseconds_round_trip_and_round_down() {
        let t = time::macros::datetime!(2026-03-01 12:34:56.123456789 UTC);
        let back = from_micros(micros(t)).unwrap();
        assert_eq!(
            back,
            time::macros::datetime!(2026-03-01 12:34:56.123456 UTC)
        );
        let before_epoch = time::macros::datetime!(1969-12-31 23:59:59.9999995 UTC);
        assert_eq!(
            from_micros(micros(before_epoch)).unwrap(),
            time::macros::datetime!(1969-12-31 23:59:59.999999 UTC)
        );
    }

    #[tokio::test]
    async fn a_missing_directory_is_an_error_naming_the_file() {
        let err = SqliteStore::connect("sqlite:///nonexistent-dir-for-tower-api-key/keys.db")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)));
        let message = err.to_string();
        assert!(
            message.contains("/nonexistent-dir-for-tower-api-key/keys.db"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn lookups_before_migrate_say_so() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        let err = store.get(&KeyId::new("abc").unwrap()).await.unwrap_err();
        let StoreError::Corrupt(message) = err else {
            panic!("expected Corrupt, got {err:?}");
        };
        assert!(message.contains("migrate()"), "{message}");
        assert!(store.check_schema().await.is_err());
        store.migrate().await.unwrap();
        store.check_schema().await.unwrap();
    }
}
