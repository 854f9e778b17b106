use super::{sql, AUDIT_COLUMNS, COLUMNS};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{ConnectOptions, Connection, QueryBuilder, Row, SqlStr};
use time::OffsetDateTime;

use super::listener::{self, ListenerHandle};
use super::schema::{self, CURRENT_VERSION};
use super::{
    actor_columns, apply_in, map_error, settle, Backend, ConnectError, RawAudit, RawRecord,
    TablePrefix,
};
use crate::audit::{AuditEntry, AuditQuery, AuditSink};
use crate::key::{Digest, KeyId};
use crate::store::{Applied, CachedStore, Change, KeyRecord, KeyStore, Owner, StoreError};
use crate::ConfigError;

/// How long [`PostgresStore::connect`] waits for the server to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a lookup waits for a connection before failing with
/// [`StoreError::Unavailable`] (the layer's 503). While the server is down, new
/// connections are retried until then.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// A [`KeyStore`] and [`AuditSink`] in PostgreSQL, shared by every server instance.
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
/// // Hand `cache` to an `Authenticator`.
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    sql: Arc<Statements>,
}

struct Statements {
    prefix: TablePrefix,
    get: SqlStr,
    get_by_digest: SqlStr,
    get_for_update: SqlStr,
    insert: SqlStr,
    update: SqlStr,
    revoke: SqlStr,
    set_scopes: SqlStr,
    rotate: SqlStr,
    list_by_owner: SqlStr,
    touch: SqlStr,
    audit_insert: String,
    audit_by_owner: SqlStr,
    audit_by_key: SqlStr,
}

impl Statements {
    fn new(prefix: TablePrefix) -> Self {
        let keys = prefix.keys();
        let audit = prefix.audit();
        let select = format!("SELECT {COLUMNS} FROM {keys}");
        Self {
            get: sql(format!("{select} WHERE id = $1")),
            get_by_digest: sql(format!("{select} WHERE digest = $1")),
            get_for_update: sql(format!("{select} WHERE id = $1 FOR UPDATE")),
            insert: sql(format!(
                "INSERT INTO {keys} ({COLUMNS}) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
            )),
            update: sql(format!(
                "UPDATE {keys} SET name = $2, scopes = $3, expires_at = $4, \
                 rate_limit_policy = $5, metadata = $6 WHERE id = $1 RETURNING {COLUMNS}"
            )),
            // Each lifecycle change checks its condition in its own `WHERE`: the store,
            // not the caller, decides whether it happened. A concurrent writer of the
            // same row waits for the row lock and then re-checks the condition against
            // the committed row (READ COMMITTED), so only one of them matches.
            revoke: sql(format!(
                "UPDATE {keys} SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL \
                 RETURNING {COLUMNS}"
            )),
            set_scopes: sql(format!(
                "UPDATE {keys} SET scopes = $3 WHERE id = $1 AND scopes = $2 \
                 AND revoked_at IS NULL RETURNING {COLUMNS}"
            )),
            rotate: sql(format!(
                "UPDATE {keys} SET superseded_by = $2, rotation_valid_until = $3 \
                 WHERE id = $1 AND revoked_at IS NULL AND superseded_by IS NULL \
                 AND (expires_at IS NULL OR expires_at > $4) \
                 AND scopes = $5 AND expires_at IS NOT DISTINCT FROM $6 RETURNING {COLUMNS}"
            )),
            list_by_owner: sql(format!(
                "{select} WHERE owner_kind = $1 AND owner_id = $2 \
                 ORDER BY created_at DESC, length(id), id COLLATE \"C\""
            )),
            // One statement per batch. Duplicate ids keep their latest time, and a time
            // never moves backwards.
            touch: sql(format!(
                "UPDATE {keys} AS k SET last_used_at = batch.at \
                 FROM (SELECT id, max(at) AS at \
                       FROM UNNEST($1::text[], $2::timestamptz[]) AS t(id, at) \
                       GROUP BY id) AS batch \
                 WHERE k.id = batch.id AND (k.last_used_at IS NULL OR k.last_used_at < batch.at)"
            )),
            audit_insert: format!("INSERT INTO {audit} ({AUDIT_COLUMNS}) "),
            audit_by_owner: sql(format!(
                "SELECT id, {AUDIT_COLUMNS} FROM {audit} WHERE owner_kind = $1 AND owner_id = $2 \
                 AND ($3::text IS NULL OR environment = $3) \
                 ORDER BY occurred_at DESC, id DESC LIMIT $4"
            )),
            audit_by_key: sql(format!(
                "SELECT id, {AUDIT_COLUMNS} FROM {audit} WHERE api_key_id = $5 \
                 AND owner_kind = $1 AND owner_id = $2 AND ($3::text IS NULL OR environment = $3) \
                 ORDER BY occurred_at DESC, id DESC LIMIT $4"
            )),
            prefix,
        }
    }
}

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
            pool,
            sql: Arc::new(Statements::new(TablePrefix::default())),
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
            pool: self.pool,
            sql: Arc::new(Statements::new(TablePrefix::new(prefix)?)),
        })
    }

    /// The table prefix.
    pub fn table_prefix(&self) -> &str {
        self.sql.prefix.as_str()
    }

    /// The notification channel that carries key changes: `<prefix>changes`. Each
    /// notification's payload is `<key id> <hex digest>`, or `*` after a `TRUNCATE`.
    pub fn channel(&self) -> String {
        self.sql.prefix.channel()
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
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
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let result = self.migrate_in(&mut tx).await;
        settle(tx, result).await
    }

    /// The migration's statements, inside the transaction `migrate` holds.
    async fn migrate_in(&self, conn: &mut sqlx::PgConnection) -> Result<(), StoreError> {
        let prefix = &self.sql.prefix;
        let version_table = prefix.schema_version();
        // One migrator at a time per schema and prefix; the lock ends with the
        // transaction.
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtext(coalesce(current_schema(), '') || '.' || $1))",
        )
        .bind(version_table.clone())
        .execute(&mut *conn)
        .await
        .map_err(map_error)?;
        sqlx::raw_sql(sql(format!(
            "CREATE TABLE IF NOT EXISTS {version_table} (\
                 singleton integer NOT NULL PRIMARY KEY CHECK (singleton = 1), \
                 version bigint NOT NULL, \
                 migrated_at timestamptz NOT NULL DEFAULT now())"
        )))
        .execute(&mut *conn)
        .await
        .map_err(map_error)?;
        let found: Option<i64> = sqlx::query_scalar(sql(format!(
            "SELECT version FROM {version_table} WHERE singleton = 1"
        )))
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_error)?;
        let found = found.unwrap_or(0);
        let mut applied = false;
        for migration in schema::pending(schema::POSTGRES, found, prefix)? {
            sqlx::raw_sql(sql(prefix.render(migration.sql)))
                .execute(&mut *conn)
                .await
                .map_err(map_error)?;
            applied = true;
        }
        if applied {
            sqlx::query(sql(format!(
                "INSERT INTO {version_table} (singleton, version) VALUES (1, $1) \
                 ON CONFLICT (singleton) DO UPDATE SET version = excluded.version, \
                 migrated_at = now()"
            )))
            .bind(CURRENT_VERSION)
            .execute(&mut *conn)
            .await
            .map_err(map_error)?;
            tracing::info!(
                prefix = prefix.as_str(),
                from = found,
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
        let prefix = &self.sql.prefix;
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(prefix.schema_version())
            .fetch_one(&self.pool)
            .await
            .map_err(map_error)?;
        let found: i64 = if exists {
            sqlx::query_scalar(sql(format!(
                "SELECT coalesce(max(version), 0) FROM {}",
                prefix.schema_version()
            )))
            .fetch_one(&self.pool)
            .await
            .map_err(map_error)?
        } else {
            0
        };
        schema::check(found, prefix)?;
        if found < CURRENT_VERSION {
            return Err(schema::outdated(found, prefix));
        }
        Ok(())
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
        let options = (*self.pool.connect_options()).clone();
        listener::spawn(options, self.channel(), cache)
    }
}

fn get<'r, T>(row: &'r PgRow, column: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column).map_err(map_error)
}

fn record_from_row(row: &PgRow) -> Result<KeyRecord, StoreError> {
    let metadata: Json<serde_json::Value> = get(row, "metadata")?;
    RawRecord {
        id: get(row, "id")?,
        digest: get(row, "digest")?,
        prefix: get(row, "prefix")?,
        name: get(row, "name")?,
        owner_kind: get(row, "owner_kind")?,
        owner_id: get(row, "owner_id")?,
        environment: get(row, "environment")?,
        scopes: get(row, "scopes")?,
        created_at: get(row, "created_at")?,
        created_by: get(row, "created_by")?,
        expires_at: get(row, "expires_at")?,
        revoked_at: get(row, "revoked_at")?,
        superseded_by: get(row, "superseded_by")?,
        rotation_valid_until: get(row, "rotation_valid_until")?,
        family: get(row, "family")?,
        last_used_at: get(row, "last_used_at")?,
        rate_limit_policy: get(row, "rate_limit_policy")?,
        metadata: metadata.0,
        imported: get(row, "imported")?,
    }
    .into_record()
}

fn audit_from_row(row: &PgRow) -> Result<AuditEntry, StoreError> {
    let status: Option<i32> = get(row, "status")?;
    RawAudit {
        id: get(row, "id")?,
        occurred_at: get(row, "occurred_at")?,
        action: get(row, "action")?,
        api_key_id: get(row, "api_key_id")?,
        prefix: get(row, "prefix")?,
        actor_kind: get(row, "actor_kind")?,
        actor_id: get(row, "actor_id")?,
        owner_kind: get(row, "owner_kind")?,
        owner_id: get(row, "owner_id")?,
        environment: get(row, "environment")?,
        scopes: get(row, "scopes")?,
        method: get(row, "method")?,
        path: get(row, "path")?,
        route: get(row, "route")?,
        status: status.map(i64::from),
        request_id: get(row, "request_id")?,
        successor_key_id: get(row, "successor_key_id")?,
    }
    .into_entry()
}

impl KeyStore for PostgresStore {
    async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        let row = sqlx::query(self.sql.get.clone())
            .bind(id.as_str().to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_error)?;
        row.as_ref().map(record_from_row).transpose()
    }

    async fn get_by_digest(&self, digest: &Digest) -> Result<Option<KeyRecord>, StoreError> {
        let row = sqlx::query(self.sql.get_by_digest.clone())
            .bind(digest.as_bytes().to_vec())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_error)?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// One transaction: the conditional write, and the audit entries when it took
    /// effect.
    async fn apply(&self, change: Change<'_>, audit: &[AuditEntry]) -> Result<Applied, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let result = apply_in(self, &mut tx, change, audit).await;
        settle(tx, result).await
    }

    async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let statement = match query.key() {
            None => self.sql.audit_by_owner.clone(),
            Some(_) => self.sql.audit_by_key.clone(),
        };
        let rows = sqlx::query(statement)
            .bind(query.owner().kind())
            .bind(query.owner().id().to_owned())
            .bind(query.environment().map(|e| e.as_str().to_owned()))
            .bind(i64::from(query.limit()))
            .bind(query.key().map(|k| k.as_str().to_owned()))
            .fetch_all(&self.pool)
            .await
            .map_err(map_error)?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn list_by_owner(&self, owner: &Owner) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = sqlx::query(self.sql.list_by_owner.clone())
            .bind(owner.kind())
            .bind(owner.id().to_owned())
            .fetch_all(&self.pool)
            .await
            .map_err(map_error)?;
        rows.iter().map(record_from_row).collect()
    }

    /// One `UPDATE … FROM UNNEST($1::text[], $2::timestamptz[])` statement for the whole
    /// batch. It sends no notification.
    async fn touch_last_used(&self, batch: &[(KeyId, OffsetDateTime)]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let (ids, times): (Vec<String>, Vec<OffsetDateTime>) = batch
            .iter()
            .map(|(id, at)| (id.as_str().to_owned(), *at))
            .unzip();
        sqlx::query(self.sql.touch.clone())
            .bind(ids)
            .bind(times)
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(())
    }
}

/// Rows per `INSERT`: 16 parameters each, well under PostgreSQL's 65,535.
const AUDIT_CHUNK: usize = 1_000;

impl AuditSink for PostgresStore {
    /// Writes the batch in one transaction (one multi-row `INSERT` per 1,000 entries).
    async fn write(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let result = self.write_audit_in(&mut tx, &entries).await;
        settle(tx, result).await
    }
}

impl PostgresStore {
    /// Runs a statement that returns at most one key row.
    async fn fetch_in(
        &self,
        conn: &mut sqlx::PgConnection,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let row = query.fetch_optional(&mut *conn).await.map_err(map_error)?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// The audit batch's inserts, inside the transaction `write` holds.
    async fn write_audit_in(
        &self,
        conn: &mut sqlx::PgConnection,
        entries: &[AuditEntry],
    ) -> Result<(), StoreError> {
        for chunk in entries.chunks(AUDIT_CHUNK) {
            let mut insert = QueryBuilder::<sqlx::Postgres>::new(self.sql.audit_insert.clone());
            insert.push_values(chunk, |mut row, e| {
                let (actor_kind, actor_id) = actor_columns(&e.actor);
                row.push_bind(e.occurred_at)
                    .push_bind(e.action.as_str())
                    .push_bind(e.api_key_id.as_str().to_owned())
                    .push_bind(e.prefix.clone())
                    .push_bind(actor_kind)
                    .push_bind(actor_id)
                    .push_bind(e.owner.kind())
                    .push_bind(e.owner.id().to_owned())
                    .push_bind(e.environment.map(|v| v.as_str().to_owned()))
                    .push_bind(e.scopes.clone())
                    .push_bind(e.method.clone())
                    .push_bind(e.path.clone())
                    .push_bind(e.route.clone())
                    .push_bind(e.status.map(i32::from))
                    .push_bind(e.request_id.clone())
                    .push_bind(e.successor_key_id.map(|k| k.as_str().to_owned()));
            });
            insert
                .build()
                .execute(&mut *conn)
                .await
                .map_err(map_error)?;
        }
        Ok(())
    }
}

impl Backend for PostgresStore {
    type Conn = sqlx::PgConnection;

    async fn read_locked(
        &self,
        conn: &mut Self::Conn,
        id: &KeyId,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let query = sqlx::query(self.sql.get_for_update.clone()).bind(id.as_str().to_owned());
        self.fetch_in(conn, query).await
    }

    async fn insert(&self, conn: &mut Self::Conn, r: &KeyRecord) -> Result<(), StoreError> {
        let rotation = r.rotation.as_ref();
        sqlx::query(self.sql.insert.clone())
            .bind(r.id.as_str().to_owned())
            .bind(r.digest.as_bytes().to_vec())
            .bind(r.prefix.clone())
            .bind(r.name.clone())
            .bind(r.owner.kind())
            .bind(r.owner.id().to_owned())
            .bind(r.environment.map(|e| e.as_str().to_owned()))
            .bind(r.scopes.clone())
            .bind(r.created_at)
            .bind(r.created_by.clone())
            .bind(r.expires_at)
            .bind(r.revoked_at)
            .bind(rotation.map(|r| r.superseded_by.as_str().to_owned()))
            .bind(rotation.map(|r| r.valid_until))
            .bind(r.family.as_str().to_owned())
            .bind(r.last_used_at)
            .bind(r.rate_limit_policy.clone())
            .bind(Json(r.metadata.clone()))
            .bind(r.imported)
            .execute(&mut *conn)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn write(
        &self,
        conn: &mut Self::Conn,
        change: Change<'_>,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let id = change.id().as_str().to_owned();
        match change {
            // Not a conditional write: `apply_in` inserts.
            Change::Insert(_) => Ok(None),
            Change::Update(r) => {
                self.fetch_in(
                    conn,
                    sqlx::query(self.sql.update.clone())
                        .bind(id.clone())
                        .bind(r.name.clone())
                        .bind(r.scopes.clone())
                        .bind(r.expires_at)
                        .bind(r.rate_limit_policy.clone())
                        .bind(Json(r.metadata.clone())),
                )
                .await
            }
            Change::Revoke { at, .. } => {
                self.fetch_in(
                    conn,
                    sqlx::query(self.sql.revoke.clone())
                        .bind(id.clone())
                        .bind(at),
                )
                .await
            }
            Change::SetScopes { from, to, .. } => {
                self.fetch_in(
                    conn,
                    sqlx::query(self.sql.set_scopes.clone())
                        .bind(id.clone())
                        .bind(from.to_vec())
                        .bind(to.to_vec()),
                )
                .await
            }
            Change::Rotate {
                successor,
                valid_until,
                at,
                ..
            } => {
                self.fetch_in(
                    conn,
                    sqlx::query(self.sql.rotate.clone())
                        .bind(id.clone())
                        .bind(successor.id.as_str().to_owned())
                        .bind(valid_until)
                        .bind(at)
                        .bind(successor.scopes.clone())
                        .bind(successor.expires_at),
                )
                .await
            }
        }
    }

    async fn write_audit(
        &self,
        conn: &mut Self::Conn,
        entries: &[AuditEntry],
    ) -> Result<(), StoreError> {
        self.write_audit_in(conn, entries).await
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("table_prefix", &self.sql.prefix)
            .field("connections", &self.pool.size())
            .finish_non_exhaustive()
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
