use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{ConnectOptions, Connection, Postgres, Row};
use time::OffsetDateTime;

use super::core::{impl_sql_store, Columns, Dialect, SqlCore, Value};
use super::listener::{self, ListenerHandle};
use super::schema::{self, Migration, CURRENT_VERSION};
use super::{map_error, ConnectError, TablePrefix};
use crate::error::ConfigError;
use crate::store::{CachedStore, KeyStore, StoreError, UsageBucket};

/// How long [`PostgresStore::connect`] waits for the server to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a lookup waits for a connection before failing with
/// [`StoreError::Unavailable`] (the layer's 503). While the server is down, new
/// connections are retried until then.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// A [`KeyStore`] and [`AuditSink`](crate::audit::AuditSink) in PostgreSQL, shared by every server instance.
/// Clones share one connection pool.
///
/// # Revocation across instances
///
/// Each instance keeps its own [`CachedStore`]. Every change to a key row (an insert,
/// update, revocation or rotation made through any instance, or an `UPDATE` typed into
/// `psql`) sends a notification on the channel [`PostgresStore::channel`] from a
/// trigger, in the same transaction as the write: it is delivered when, and only if,
/// the write commits. Changes to `last_used_at` alone notify nobody.
///
/// [`PostgresStore::spawn_invalidation_listener`] listens on that channel and drops
/// each changed key from one instance's cache. The guarantee, per instance:
///
/// - **while its listener is connected**, a key revoked anywhere is refused by that
///   instance within one second (in practice, a few milliseconds after the commit);
/// - **in the worst case** (the listener's connection is down, or the database is),
///   within the cache TTL ([`CachedStoreBuilder::with_ttl`](crate::store::CachedStoreBuilder::with_ttl),
///   30 s by default), or, while this instance cannot reach the database either, the
///   TTL plus the stale-if-error window
///   ([`CachedStoreBuilder::with_stale_if_error`](crate::store::CachedStoreBuilder::with_stale_if_error),
///   300 s by default) after the record's last fetch. When the listener reconnects it
///   clears the whole cache, since a notification may have been missed.
///
/// Notifications are database-wide: deployments that share one database through
/// different schemas should use different table prefixes, or they will invalidate each
/// other's caches (harmless, but wasted lookups).
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_api_key::store::sql::PostgresStore;
/// use tower_api_key::store::CachedStore;
///
/// let store = PostgresStore::connect("postgres://app@db.internal/app")
///     .await?
///     .with_table_prefix("auth_")?;
/// store.migrate().await?;
/// let cache = CachedStore::builder(store.clone()).build()?;
/// let listener = store.spawn_invalidation_listener(cache.clone());
/// listener.ready().await;
/// // Hand `cache` to an `KeyVerifier`.
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    core: SqlCore<Postgres>,
}

impl_sql_store!(PostgresStore);

/// Where `options` point, for error messages: host, port and database, never the
/// password.
fn describe(options: &PgConnectOptions) -> String {
    let place = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    match options.get_database() {
        Some(db) => format!("PostgreSQL at {place} (database {db:?})"),
        None => format!("PostgreSQL at {place}"),
    }
}

impl PostgresStore {
    /// Connects to the server at `url` (`postgres://user:password@host:5432/database`),
    /// with a pool of up to 10 connections. Tables use the default prefix,
    /// `tower_api_key_`.
    ///
    /// One connection is opened at once, so a wrong host, port, database or password is
    /// reported here; the pool opens the others when needed, and opens new ones by
    /// itself after the server has been away.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] naming the host, port and database (never the
    /// password) when the URL is invalid or the server cannot be reached within 10 s.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| ConnectError::store_error("PostgreSQL (invalid connection URL)", e))?;
        Self::connect_with(options).await
    }

    /// Connects with sqlx's `options` (to set a `search_path`, TLS, or an application
    /// name), as [`PostgresStore::connect`] does.
    ///
    /// # Errors
    ///
    /// As [`PostgresStore::connect`].
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self, StoreError> {
        let target = describe(&options);
        let probe = tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
            .await
            .map_err(|_| ConnectError::store_error(&*target, "no answer within 10 s"))?
            .map_err(|e| ConnectError::store_error(&*target, e))?;
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        Ok(Self::from_pool(pool))
    }

    /// Uses an existing pool, for example the application's own. Its acquire timeout,
    /// or the cache's lookup timeout if shorter (3 s by default), is how long a lookup
    /// waits while the database is down before the layer answers 503. Keep the cache's
    /// cap on concurrent lookups (8 by default) under the pool's size.
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            core: SqlCore::new(pool, TablePrefix::default()),
        }
    }

    /// Names the tables `<prefix>keys`, `<prefix>audit` and `<prefix>schema_version`,
    /// and the notification channel `<prefix>changes` (the default prefix is
    /// `tower_api_key_`). Tables are created in the connection's `search_path`.
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

    /// The notification channel that carries key changes: `<prefix>changes`. Each
    /// notification's payload is `<key id> <hex digest>`, or `*` after a `TRUNCATE`.
    pub fn channel(&self) -> String {
        self.core.prefix().channel()
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.core.pool
    }

    /// Creates the tables, indexes and the notification trigger, or brings them up to
    /// this version of the crate. Idempotent; concurrent calls from several instances
    /// are serialized by an advisory lock.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] when the database was migrated by a newer version of this
    /// crate; [`StoreError::Unavailable`] when it cannot be reached or written.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        if let Some(from) = self.core.migrate().await? {
            tracing::info!(
                prefix = self.table_prefix(),
                from,
                to = CURRENT_VERSION,
                "migrated the PostgreSQL key store"
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
    /// [`PostgresStore::migrate`]) or newer (upgrade the crate).
    pub async fn check_schema(&self) -> Result<(), StoreError> {
        self.core.check_schema().await
    }

    /// Starts a background task that listens on [`PostgresStore::channel`] over its own
    /// connection and drops every changed key from `cache`.
    ///
    /// When the connection drops, the task logs a warning and reconnects, at once and
    /// then with exponential backoff (100 ms doubling up to 10 s); once listening again
    /// it clears the whole cache, since a notification may have been missed. It clears
    /// it on the first connection too, for the same reason.
    ///
    /// Dropping the handle leaves the task running for the life of the runtime; stop it
    /// with [`ListenerHandle::abort`].
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn_invalidation_listener<S: KeyStore>(
        &self,
        cache: CachedStore<S>,
    ) -> ListenerHandle {
        let options = (*self.core.pool.connect_options()).clone();
        listener::spawn(options, self.channel(), cache)
    }
}

/// Times are `timestamptz`, scopes `text[]` and metadata `jsonb`. A key row read inside
/// `apply` is locked `FOR UPDATE`; an advisory lock serializes migrations.
impl Dialect for Postgres {
    const BEGIN: Option<&'static str> = None;
    const LOCK_ROW: &'static str = " FOR UPDATE";
    const NOT_DISTINCT: &'static str = "IS NOT DISTINCT FROM";
    const BINARY_ORDER: &'static str = " COLLATE \"C\"";
    const TEXT_PARAM: &'static str = "::text";
    /// 16 parameters a row, well under PostgreSQL's 65,535.
    const AUDIT_CHUNK: usize = 1_000;
    const MIGRATIONS: &'static [Migration] = schema::POSTGRES;
    const VERSION_TABLE: &'static str = "CREATE TABLE IF NOT EXISTS {prefix}schema_version (\
        singleton integer NOT NULL PRIMARY KEY CHECK (singleton = 1), \
        version bigint NOT NULL, \
        migrated_at timestamptz NOT NULL DEFAULT now())";
    const SET_VERSION: &'static str =
        "INSERT INTO {prefix}schema_version (singleton, version) VALUES (1, $1) \
         ON CONFLICT (singleton) DO UPDATE SET version = excluded.version, \
         migrated_at = now()";
    const TABLE_EXISTS: &'static str = "SELECT to_regclass($1) IS NOT NULL AS present";

    fn numbered(statement: &str) -> String {
        statement.to_owned()
    }

    fn scopes_equal(column: &str, parameter: &str) -> String {
        format!("{column} = {parameter}")
    }

    /// The batch is two arrays, of ids and of times. Changing `last_used_at` alone
    /// sends no notification.
    fn touch(keys: &str) -> String {
        format!(
            "UPDATE {keys} AS k SET last_used_at = batch.at \
             FROM (SELECT id, max(at) AS at \
                   FROM UNNEST($1::text[], $2::timestamptz[]) AS t(id, at) \
                   GROUP BY id) AS batch \
             WHERE k.id = batch.id AND (k.last_used_at IS NULL OR k.last_used_at < batch.at)"
        )
    }

    /// The batch is six arrays: ids, hour numbers and the four counts.
    fn add_usage(usage: &str) -> String {
        format!(
            "INSERT INTO {usage} AS u \
                 (key_id, hour, admitted, refused_scope, refused_rate_limit, refused_quota) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], \
                                  $5::bigint[], $6::bigint[]) \
             ON CONFLICT (key_id, hour) DO UPDATE SET \
                 admitted = u.admitted + EXCLUDED.admitted, \
                 refused_scope = u.refused_scope + EXCLUDED.refused_scope, \
                 refused_rate_limit = u.refused_rate_limit + EXCLUDED.refused_rate_limit, \
                 refused_quota = u.refused_quota + EXCLUDED.refused_quota"
        )
    }

    /// None: the table stamps the version with `now()`.
    fn rows_affected(result: &sqlx::postgres::PgQueryResult) -> u64 {
        result.rows_affected()
    }

    fn version_stamp() -> Vec<Value<'static>> {
        Vec::new()
    }

    fn bind<'q>(
        query: Query<'q, Self, PgArguments>,
        value: Value<'_>,
    ) -> Result<Query<'q, Self, PgArguments>, StoreError> {
        Ok(match value {
            Value::Text(v) => query.bind(v),
            Value::OptText(v) => query.bind(v),
            Value::Bytes(v) => query.bind(v),
            Value::Bool(v) => query.bind(v),
            Value::Int(v) => query.bind(v),
            Value::Status(v) => query.bind(v.map(i32::from)),
            Value::Time(v) => query.bind(v),
            Value::OptTime(v) => query.bind(v),
            Value::Scopes(v) => query.bind(v),
            Value::Metadata(v) => query.bind(Json(v)),
            Value::Batch(batch) => {
                let (ids, times): (Vec<&str>, Vec<OffsetDateTime>) =
                    batch.iter().map(|(id, at)| (id.as_str(), *at)).unzip();
                query.bind(ids).bind(times)
            }
            Value::Usage(batch) => {
                let ids: Vec<&str> = batch.iter().map(|b| b.key_id.as_str()).collect();
                let hours: Vec<i64> = batch.iter().map(UsageBucket::hour_number).collect();
                let column = |i: usize| -> Vec<i64> {
                    batch
                        .iter()
                        .map(|b| i64::try_from(b.counts.as_array()[i]).unwrap_or(i64::MAX))
                        .collect()
                };
                query
                    .bind(ids)
                    .bind(hours)
                    .bind(column(0))
                    .bind(column(1))
                    .bind(column(2))
                    .bind(column(3))
            }
        })
    }

    /// One migrator at a time per schema and prefix; the lock ends with the
    /// transaction.
    async fn lock_migrations(
        conn: &mut sqlx::PgConnection,
        prefix: &TablePrefix,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtext(coalesce(current_schema(), '') || '.' || $1))",
        )
        .bind(prefix.schema_version())
        .execute(&mut *conn)
        .await
        .map_err(map_error)?;
        Ok(())
    }
}

impl Columns for PgRow {
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
        let status: Option<i32> = self.try_get(column).map_err(map_error)?;
        Ok(status.map(i64::from))
    }

    fn time(&self, column: &str) -> Result<OffsetDateTime, StoreError> {
        self.try_get(column).map_err(map_error)
    }

    fn opt_time(&self, column: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        self.try_get(column).map_err(map_error)
    }

    fn scopes(&self, column: &str) -> Result<Vec<String>, StoreError> {
        self.try_get(column).map_err(map_error)
    }

    fn json(&self, column: &str) -> Result<serde_json::Value, StoreError> {
        let Json(value) = self.try_get(column).map_err(map_error)?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_the_host_and_never_the_password() {
        let options =
            PgConnectOptions::from_str("postgres://app:hunter2@db.internal:6543/keys").unwrap();
        let shown = describe(&options);
        assert_eq!(shown, "PostgreSQL at db.internal:6543 (database \"keys\")");
        assert!(!shown.contains("hunter2"));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_an_error_naming_the_host() {
        // Port 1 on the loopback refuses at once; no server is needed.
        let err = PostgresStore::connect("postgres://app:hunter2@127.0.0.1:1/keys")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)));
        let message = err.to_string();
        assert!(message.contains("127.0.0.1:1"), "{message}");
        assert!(message.contains("could not connect"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[tokio::test]
    async fn an_invalid_url_is_an_error_not_a_panic() {
        let err = PostgresStore::connect("postgres://[::1/x")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("invalid connection URL"), "{err}");
    }
}
