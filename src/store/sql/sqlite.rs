use super::{sql, AUDIT_COLUMNS, COLUMNS};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, SqlStr};
use time::OffsetDateTime;

use super::schema::{self, CURRENT_VERSION};
use super::{
    actor_columns, apply_in, corrupt, map_error, settle, Backend, ConnectError, RawAudit,
    RawRecord, TablePrefix,
};
use crate::audit::{AuditEntry, AuditQuery, AuditSink};
use crate::key::{Digest, KeyId};
use crate::store::{Applied, Change, KeyRecord, KeyStore, Owner, StoreError};
use crate::ConfigError;

/// How long a lookup waits for a free connection before failing with
/// [`StoreError::Unavailable`].
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`KeyStore`] and [`AuditSink`] in a SQLite database: the durable default for a
/// single machine. Clones share one connection pool.
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
    pool: SqlitePool,
    sql: Arc<Statements>,
}

struct Statements {
    prefix: TablePrefix,
    get: SqlStr,
    get_by_digest: SqlStr,
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
            get: sql(format!("{select} WHERE id = ?1")),
            get_by_digest: sql(format!("{select} WHERE digest = ?1")),
            insert: sql(format!(
                "INSERT INTO {keys} ({COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
            )),
            update: sql(format!(
                "UPDATE {keys} SET name = ?2, scopes = ?3, expires_at = ?4, \
                 rate_limit_policy = ?5, metadata = ?6 WHERE id = ?1 RETURNING {COLUMNS}"
            )),
            // Each lifecycle change checks its condition in its own `WHERE`: the store,
            // not the caller, decides whether it happened.
            revoke: sql(format!(
                "UPDATE {keys} SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL \
                 RETURNING {COLUMNS}"
            )),
            set_scopes: sql(format!(
                "UPDATE {keys} SET scopes = ?3 WHERE id = ?1 AND json(scopes) = json(?2) \
                 AND revoked_at IS NULL RETURNING {COLUMNS}"
            )),
            rotate: sql(format!(
                "UPDATE {keys} SET superseded_by = ?2, rotation_valid_until = ?3 \
                 WHERE id = ?1 AND revoked_at IS NULL AND superseded_by IS NULL \
                 AND (expires_at IS NULL OR expires_at > ?4) \
                 AND json(scopes) = json(?5) AND expires_at IS ?6 RETURNING {COLUMNS}"
            )),
            list_by_owner: sql(format!(
                "{select} WHERE owner_kind = ?1 AND owner_id = ?2 \
                 ORDER BY created_at DESC, length(id), id"
            )),
            // One statement per batch: the batch is a JSON array of [id, micros] pairs.
            // Duplicate ids keep their latest time, and a time never moves backwards.
            touch: sql(format!(
                "UPDATE {keys} SET last_used_at = batch.at \
                 FROM (SELECT json_extract(value, '$[0]') AS id, \
                              max(json_extract(value, '$[1]')) AS at \
                       FROM json_each(?1) GROUP BY 1) AS batch \
                 WHERE {keys}.id = batch.id \
                   AND ({keys}.last_used_at IS NULL OR {keys}.last_used_at < batch.at)"
            )),
            audit_insert: format!("INSERT INTO {audit} ({AUDIT_COLUMNS}) "),
            audit_by_owner: sql(format!(
                "SELECT id, {AUDIT_COLUMNS} FROM {audit} WHERE owner_kind = ?1 AND owner_id = ?2 \
                 AND (?3 IS NULL OR environment = ?3) \
                 ORDER BY occurred_at DESC, id DESC LIMIT ?4"
            )),
            audit_by_key: sql(format!(
                "SELECT id, {AUDIT_COLUMNS} FROM {audit} WHERE api_key_id = ?5 \
                 AND owner_kind = ?1 AND owner_id = ?2 AND (?3 IS NULL OR environment = ?3) \
                 ORDER BY occurred_at DESC, id DESC LIMIT ?4"
            )),
            prefix,
        }
    }
}

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
            pool,
            sql: Arc::new(Statements::new(TablePrefix::default())),
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
            pool: self.pool,
            sql: Arc::new(Statements::new(TablePrefix::new(prefix)?)),
        })
    }

    /// The table prefix.
    pub fn table_prefix(&self) -> &str {
        self.sql.prefix.as_str()
    }

    /// The connection pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Creates the tables, or brings them up to this version of the crate. Idempotent;
    /// concurrent calls from several processes are serialized by SQLite's write lock.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] when the database was migrated by a newer version of this
    /// crate; [`StoreError::Unavailable`] when it cannot be written.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(map_error)?;
        let result = self.migrate_in(&mut tx).await;
        settle(tx, result).await
    }

    /// The migration's statements, inside the transaction `migrate` holds.
    async fn migrate_in(&self, conn: &mut sqlx::SqliteConnection) -> Result<(), StoreError> {
        let prefix = &self.sql.prefix;
        let version_table = prefix.schema_version();
        sqlx::raw_sql(sql(format!(
            "CREATE TABLE IF NOT EXISTS {version_table} (\
                 singleton INTEGER NOT NULL PRIMARY KEY CHECK (singleton = 1), \
                 version INTEGER NOT NULL, \
                 migrated_at INTEGER NOT NULL) STRICT"
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
        for migration in schema::pending(schema::SQLITE, found, prefix)? {
            sqlx::raw_sql(sql(prefix.render(migration.sql)))
                .execute(&mut *conn)
                .await
                .map_err(map_error)?;
            applied = true;
        }
        if applied {
            sqlx::query(sql(format!(
                "INSERT INTO {version_table} (singleton, version, migrated_at) VALUES (1, ?1, ?2) \
                 ON CONFLICT (singleton) DO UPDATE SET version = excluded.version, \
                 migrated_at = excluded.migrated_at"
            )))
            .bind(CURRENT_VERSION)
            .bind(micros(OffsetDateTime::now_utc()))
            .execute(&mut *conn)
            .await
            .map_err(map_error)?;
            tracing::info!(
                prefix = prefix.as_str(),
                from = found,
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
        let prefix = &self.sql.prefix;
        let exists: bool = sqlx::query_scalar(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        )
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
}

fn micros(t: OffsetDateTime) -> i64 {
    // Microseconds since the epoch, rounded down; `OffsetDateTime`'s range fits.
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000)).unwrap_or(i64::MAX)
}

fn from_micros(m: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(m) * 1_000)
        .map_err(|e| corrupt("timestamp", e))
}

fn opt_from_micros(m: Option<i64>) -> Result<Option<OffsetDateTime>, StoreError> {
    m.map(from_micros).transpose()
}

fn json_text<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| corrupt("JSON value", e))
}

fn record_from_row(row: &SqliteRow) -> Result<KeyRecord, StoreError> {
    fn get<'r, T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>>(
        row: &'r SqliteRow,
        column: &str,
    ) -> Result<T, StoreError> {
        row.try_get(column).map_err(map_error)
    }
    let scopes: String = get(row, "scopes")?;
    let metadata: String = get(row, "metadata")?;
    RawRecord {
        id: get(row, "id")?,
        digest: get(row, "digest")?,
        prefix: get(row, "prefix")?,
        name: get(row, "name")?,
        owner_kind: get(row, "owner_kind")?,
        owner_id: get(row, "owner_id")?,
        environment: get(row, "environment")?,
        scopes: serde_json::from_str(&scopes).map_err(|e| corrupt("scopes", e))?,
        created_at: from_micros(get(row, "created_at")?)?,
        created_by: get(row, "created_by")?,
        expires_at: opt_from_micros(get(row, "expires_at")?)?,
        revoked_at: opt_from_micros(get(row, "revoked_at")?)?,
        superseded_by: get(row, "superseded_by")?,
        rotation_valid_until: opt_from_micros(get(row, "rotation_valid_until")?)?,
        family: get(row, "family")?,
        last_used_at: opt_from_micros(get(row, "last_used_at")?)?,
        rate_limit_policy: get(row, "rate_limit_policy")?,
        metadata: serde_json::from_str(&metadata).map_err(|e| corrupt("metadata", e))?,
        imported: get(row, "imported")?,
    }
    .into_record()
}

fn audit_from_row(row: &SqliteRow) -> Result<AuditEntry, StoreError> {
    fn get<'r, T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>>(
        row: &'r SqliteRow,
        column: &str,
    ) -> Result<T, StoreError> {
        row.try_get(column).map_err(map_error)
    }
    let scopes: String = get(row, "scopes")?;
    RawAudit {
        id: get(row, "id")?,
        occurred_at: from_micros(get(row, "occurred_at")?)?,
        action: get(row, "action")?,
        api_key_id: get(row, "api_key_id")?,
        prefix: get(row, "prefix")?,
        actor_kind: get(row, "actor_kind")?,
        actor_id: get(row, "actor_id")?,
        owner_kind: get(row, "owner_kind")?,
        owner_id: get(row, "owner_id")?,
        environment: get(row, "environment")?,
        scopes: serde_json::from_str(&scopes).map_err(|e| corrupt("audit scopes", e))?,
        method: get(row, "method")?,
        path: get(row, "path")?,
        route: get(row, "route")?,
        status: get(row, "status")?,
        request_id: get(row, "request_id")?,
        successor_key_id: get(row, "successor_key_id")?,
    }
    .into_entry()
}

impl KeyStore for SqliteStore {
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

    /// One `BEGIN IMMEDIATE` transaction: the conditional write, and the audit entries
    /// when it took effect.
    async fn apply(&self, change: Change<'_>, audit: &[AuditEntry]) -> Result<Applied, StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(map_error)?;
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

    /// One `UPDATE … FROM json_each(?)` statement for the whole batch.
    async fn touch_last_used(&self, batch: &[(KeyId, OffsetDateTime)]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let pairs: Vec<(&str, i64)> = batch
            .iter()
            .map(|(id, at)| (id.as_str(), micros(*at)))
            .collect();
        sqlx::query(self.sql.touch.clone())
            .bind(json_text(&pairs)?)
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(())
    }
}

/// Rows per `INSERT` (16 parameters each), well under SQLite's limit on bind
/// parameters.
const AUDIT_CHUNK: usize = 500;

impl AuditSink for SqliteStore {
    /// Writes the batch in one transaction (one multi-row `INSERT` per 500 entries).
    async fn write(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(map_error)?;
        let result = self.write_audit_in(&mut tx, &entries).await;
        settle(tx, result).await
    }
}

impl SqliteStore {
    /// Runs a statement that returns at most one key row.
    async fn fetch_in(
        &self,
        conn: &mut sqlx::SqliteConnection,
        query: sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let row = query.fetch_optional(&mut *conn).await.map_err(map_error)?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// The audit batch's inserts, inside the transaction `write` holds.
    async fn write_audit_in(
        &self,
        conn: &mut sqlx::SqliteConnection,
        entries: &[AuditEntry],
    ) -> Result<(), StoreError> {
        for chunk in entries.chunks(AUDIT_CHUNK) {
            let mut insert = QueryBuilder::<sqlx::Sqlite>::new(self.sql.audit_insert.clone());
            let mut scopes = Vec::with_capacity(chunk.len());
            for e in chunk {
                scopes.push(json_text(&e.scopes)?);
            }
            insert.push_values(chunk.iter().zip(scopes), |mut row, (e, scopes)| {
                let (actor_kind, actor_id) = actor_columns(&e.actor);
                row.push_bind(micros(e.occurred_at))
                    .push_bind(e.action.as_str())
                    .push_bind(e.api_key_id.as_str().to_owned())
                    .push_bind(e.prefix.clone())
                    .push_bind(actor_kind)
                    .push_bind(actor_id)
                    .push_bind(e.owner.kind())
                    .push_bind(e.owner.id().to_owned())
                    .push_bind(e.environment.map(|v| v.as_str().to_owned()))
                    .push_bind(scopes)
                    .push_bind(e.method.clone())
                    .push_bind(e.path.clone())
                    .push_bind(e.route.clone())
                    .push_bind(e.status.map(i64::from))
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

impl Backend for SqliteStore {
    type Conn = sqlx::SqliteConnection;

    async fn read_locked(
        &self,
        conn: &mut Self::Conn,
        id: &KeyId,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let query = sqlx::query(self.sql.get.clone()).bind(id.as_str().to_owned());
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
            .bind(json_text(&r.scopes)?)
            .bind(micros(r.created_at))
            .bind(r.created_by.clone())
            .bind(r.expires_at.map(micros))
            .bind(r.revoked_at.map(micros))
            .bind(rotation.map(|r| r.superseded_by.as_str().to_owned()))
            .bind(rotation.map(|r| micros(r.valid_until)))
            .bind(r.family.as_str().to_owned())
            .bind(r.last_used_at.map(micros))
            .bind(r.rate_limit_policy.clone())
            .bind(json_text(&r.metadata)?)
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
                        .bind(json_text(&r.scopes)?)
                        .bind(r.expires_at.map(micros))
                        .bind(r.rate_limit_policy.clone())
                        .bind(json_text(&r.metadata)?),
                )
                .await
            }
            Change::Revoke { at, .. } => {
                self.fetch_in(
                    conn,
                    sqlx::query(self.sql.revoke.clone())
                        .bind(id.clone())
                        .bind(micros(at)),
                )
                .await
            }
            Change::SetScopes { from, to, .. } => {
                self.fetch_in(
                    conn,
                    sqlx::query(self.sql.set_scopes.clone())
                        .bind(id.clone())
                        .bind(json_text(&from)?)
                        .bind(json_text(&to)?),
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
                        .bind(micros(valid_until))
                        .bind(micros(at))
                        .bind(json_text(&successor.scopes)?)
                        .bind(successor.expires_at.map(micros)),
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

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("table_prefix", &self.sql.prefix)
            .field("connections", &self.pool.size())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
