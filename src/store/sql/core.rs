//! The SQL store core that `SqliteStore` and `PostgresStore` share: the statements, the
//! binding of records and audit entries, the row mapping, the migration runner and the
//! transactional write path.
//!
//! Each database supplies only what differs, through [`Dialect`] (value encodings, the
//! few SQL fragments that are spelled differently, how a write transaction begins and
//! how a row is locked) and [`Columns`] (reading a column in its encoding).

use std::future::Future;
use std::sync::Arc;

use sqlx::query::Query;
use sqlx::{Executor, IntoArguments, Pool, SqlStr};
use time::OffsetDateTime;

use super::schema::{self, Migration, CURRENT_VERSION};
use super::{corrupt, map_error, settle, sql, TablePrefix};
use crate::key::{tag_key_id, Digest, Environment, KeyId, TagKey, TAG_KEY_IDS};
use crate::store::audit_entry::{AuditAction, AuditActor, AuditEntry, AuditQuery};
use crate::store::usage::{first_hour_from, hours_in, UsageBucket, UsageCounts};
use crate::store::{Applied, Change, KeyPage, KeyQuery, KeyRecord, Owner, Rotation, StoreError};

/// The key table's columns, in the order the statements bind and read them.
const COLUMNS: &str = "id, digest, prefix, name, owner_kind, owner_id, environment, scopes, \
    created_at, created_by, expires_at, revoked_at, superseded_by, rotation_valid_until, \
    family, last_used_at, rate_limit_policy, metadata, imported";

/// The audit table's columns (without the generated id), in the order they are bound.
const AUDIT_COLUMNS: &str =
    "occurred_at, action, api_key_id, prefix, actor_kind, actor_id, owner_kind, \
    owner_id, environment, scopes, method, path, route, status, request_id, successor_key_id";

/// A value to bind, named by what it is rather than by how a database stores it: each
/// [`Dialect::bind`] encodes it its own way.
#[derive(Clone, Copy)]
pub(crate) enum Value<'a> {
    /// A `text` column.
    Text(&'a str),
    /// A nullable `text` column.
    OptText(Option<&'a str>),
    /// A key digest.
    Bytes(&'a [u8]),
    /// A boolean.
    Bool(bool),
    /// A 64-bit integer.
    Int(i64),
    /// An HTTP status (PostgreSQL's column is an `integer`).
    Status(Option<u16>),
    /// A time.
    Time(OffsetDateTime),
    /// A nullable time.
    OptTime(Option<OffsetDateTime>),
    /// A list of scopes.
    Scopes(&'a [String]),
    /// A key's metadata, a JSON object.
    Metadata(&'a serde_json::Map<String, serde_json::Value>),
    /// The `(id, time)` pairs of a last-used batch, as the dialect's `touch` statement
    /// expects them.
    Batch(&'a [(KeyId, OffsetDateTime)]),
    /// A batch of usage buckets, as the dialect's `add_usage` statement expects them.
    Usage(&'a [UsageBucket]),
}

/// Reading a column of a row, in one database's encoding. Decoding failures are
/// [`StoreError::Corrupt`].
pub(crate) trait Columns {
    /// A `text` column.
    fn text(&self, column: &str) -> Result<String, StoreError>;
    /// A nullable `text` column.
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    /// A `bytea`/`BLOB` column.
    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError>;
    /// A boolean (an `INTEGER` 0 or 1 on SQLite).
    fn flag(&self, column: &str) -> Result<bool, StoreError>;
    /// A 64-bit integer.
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    /// A nullable HTTP status (PostgreSQL's column is an `integer`).
    fn status(&self, column: &str) -> Result<Option<i64>, StoreError>;
    /// A time.
    fn time(&self, column: &str) -> Result<OffsetDateTime, StoreError>;
    /// A nullable time.
    fn opt_time(&self, column: &str) -> Result<Option<OffsetDateTime>, StoreError>;
    /// A list of scopes.
    fn scopes(&self, column: &str) -> Result<Vec<String>, StoreError>;
    /// A JSON value.
    fn json(&self, column: &str) -> Result<serde_json::Value, StoreError>;
}

/// What one SQL database supplies to the shared core: its encodings, the SQL it spells
/// differently, and how it begins and locks. Implemented by sqlx's database types.
///
/// Shared statements are written with PostgreSQL's `$n` parameters and passed through
/// [`Dialect::numbered`].
pub(crate) trait Dialect:
    sqlx::Database<Row: Columns, Arguments: IntoArguments<Self>>
{
    /// The statement that begins a write transaction; `None` for sqlx's plain `BEGIN`.
    const BEGIN: Option<&'static str>;
    /// What a read of a key row inside [`SqlCore::apply`] adds so that the row cannot
    /// change before the transaction ends.
    const LOCK_ROW: &'static str;
    /// `IS NOT DISTINCT FROM`: equality in which two NULLs are equal.
    const NOT_DISTINCT: &'static str;
    /// What makes an `ORDER BY` on a text column compare bytes, as SQLite always does.
    const BINARY_ORDER: &'static str;
    /// The cast that gives a text parameter tested only with `IS NULL` its type.
    const TEXT_PARAM: &'static str;
    /// Audit rows per `INSERT`, well under the database's limit on bind parameters
    /// (16 per row).
    const AUDIT_CHUNK: usize;
    /// The schema's steps.
    const MIGRATIONS: &'static [Migration];
    /// Creates the version table, `{prefix}schema_version`, if it is missing.
    const VERSION_TABLE: &'static str;
    /// Records the version `$1` in `{prefix}schema_version`, with the parameters of
    /// [`Dialect::version_stamp`] after it.
    const SET_VERSION: &'static str;
    /// Whether the table `$1` exists, as a boolean column `present`.
    const TABLE_EXISTS: &'static str;

    /// A shared statement with its `$n` parameters in this database's spelling.
    fn numbered(statement: &str) -> String;

    /// Compares a scopes column with a scopes parameter.
    fn scopes_equal(column: &str, parameter: &str) -> String;

    /// The statement that writes a batch of last-used times to `keys` from one
    /// [`Value::Batch`]: duplicate ids keep their latest time, and a time never moves
    /// backwards.
    fn touch(keys: &str) -> String;

    /// The statement that adds a batch of usage buckets to `usage` from one
    /// [`Value::Usage`]: an existing bucket's counts are added to, never replaced.
    fn add_usage(usage: &str) -> String;

    /// The number of rows a statement changed.
    fn rows_affected(result: &<Self as sqlx::Database>::QueryResult) -> u64;

    /// The parameters of [`Dialect::SET_VERSION`] after the version.
    fn version_stamp() -> Vec<Value<'static>>;

    /// Appends `value` to `query`'s parameters, in this database's encoding.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] when a value cannot be encoded.
    fn bind<'q>(
        query: Query<'q, Self, Self::Arguments>,
        value: Value<'_>,
    ) -> Result<Query<'q, Self, Self::Arguments>, StoreError>;

    /// Serializes concurrent migrations, inside the migration's transaction.
    fn lock_migrations(
        conn: &mut Self::Connection,
        prefix: &TablePrefix,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The statements, rendered once for a table prefix. Each is named for the operation
/// that runs it.
struct Statements {
    prefix: TablePrefix,
    get: SqlStr,
    get_by_digest: SqlStr,
    /// `get`, with the row locked for the rest of the transaction where the database
    /// needs it.
    get_locked: SqlStr,
    insert: SqlStr,
    update: SqlStr,
    revoke: SqlStr,
    set_scopes: SqlStr,
    rename: SqlStr,
    rotate: SqlStr,
    list_by_owner: SqlStr,
    list_after: SqlStr,
    touch: SqlStr,
    usage_add: SqlStr,
    usage_read: SqlStr,
    usage_prune: SqlStr,
    audit_by_owner: SqlStr,
    audit_by_key: SqlStr,
    /// `INSERT INTO … (…) VALUES `, to which each batch appends its rows.
    audit_insert: String,
}

impl Statements {
    /// Renders every statement for `prefix`, in `DB`'s dialect.
    fn new<DB: Dialect>(prefix: TablePrefix) -> Self {
        let keys = prefix.keys();
        let audit = prefix.audit();
        let select = format!("SELECT {COLUMNS} FROM {keys}");
        let shared = |text: String| sql(DB::numbered(&text));
        let params = (1..=19).map(|n| format!("${n}")).collect::<Vec<_>>();
        Self {
            get: shared(format!("{select} WHERE id = $1")),
            get_by_digest: shared(format!("{select} WHERE digest = $1")),
            get_locked: shared(format!("{select} WHERE id = $1{}", DB::LOCK_ROW)),
            insert: shared(format!(
                "INSERT INTO {keys} ({COLUMNS}) VALUES ({})",
                params.join(", ")
            )),
            update: shared(format!(
                "UPDATE {keys} SET name = $2, scopes = $3, expires_at = $4, \
                 rate_limit_policy = $5, metadata = $6 WHERE id = $1 RETURNING {COLUMNS}"
            )),
            // Each lifecycle change checks its condition in its own `WHERE`: the store,
            // not the caller, decides whether it happened. On PostgreSQL a concurrent
            // writer of the same row waits for the row lock and then re-checks the
            // condition against the committed row (READ COMMITTED), so only one of them
            // matches; SQLite runs one writer at a time.
            // `$3` is true when the caller judged no scopes (`$4` is then empty).
            revoke: shared(format!(
                "UPDATE {keys} SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL \
                 AND ($3 OR {}) RETURNING {COLUMNS}",
                DB::scopes_equal("scopes", "$4")
            )),
            set_scopes: shared(format!(
                "UPDATE {keys} SET scopes = $3 WHERE id = $1 AND {} \
                 AND revoked_at IS NULL RETURNING {COLUMNS}",
                DB::scopes_equal("scopes", "$2")
            )),
            rename: shared(format!(
                "UPDATE {keys} SET name = $2 WHERE id = $1 AND revoked_at IS NULL \
                 RETURNING {COLUMNS}"
            )),
            rotate: shared(format!(
                "UPDATE {keys} SET superseded_by = $2, rotation_valid_until = $3 \
                 WHERE id = $1 AND revoked_at IS NULL AND superseded_by IS NULL \
                 AND (expires_at IS NULL OR expires_at > $4) \
                 AND {} AND expires_at {} $6 RETURNING {COLUMNS}",
                DB::scopes_equal("scopes", "$5"),
                DB::NOT_DISTINCT
            )),
            list_by_owner: shared(format!(
                "{select} WHERE owner_kind = $1 AND owner_id = $2 \
                 ORDER BY created_at DESC, length(id), id{}",
                DB::BINARY_ORDER
            )),
            // One owner's keys after a (created_at, id) position, newest first, in the
            // order of `KeyCursor` (ids compared as bytes), optionally of one environment.
            list_after: shared(format!(
                "{select} WHERE owner_kind = $1 AND owner_id = $2 \
                 AND ($3{text} IS NULL OR environment = $3) \
                 AND (created_at < $4 OR (created_at = $4 AND id{binary} < $5)) \
                 ORDER BY created_at DESC, id{binary} DESC LIMIT $6",
                text = DB::TEXT_PARAM,
                binary = DB::BINARY_ORDER,
            )),
            touch: sql(DB::touch(&keys)),
            usage_add: sql(DB::add_usage(&prefix.key_usage())),
            usage_read: shared(format!(
                "SELECT key_id, hour, admitted, refused_scope, refused_rate_limit, refused_quota \
                 FROM {} WHERE key_id = $1 AND hour >= $2 AND hour < $3 ORDER BY hour",
                prefix.key_usage()
            )),
            usage_prune: shared(format!(
                "DELETE FROM {} WHERE hour < $1",
                prefix.key_usage()
            )),
            audit_by_owner: shared(format!(
                "SELECT id, {AUDIT_COLUMNS} FROM {audit} WHERE owner_kind = $1 AND owner_id = $2 \
                 AND ($3{} IS NULL OR environment = $3) \
                 ORDER BY occurred_at DESC, id DESC LIMIT $4",
                DB::TEXT_PARAM
            )),
            audit_by_key: shared(format!(
                "SELECT id, {AUDIT_COLUMNS} FROM {audit} WHERE api_key_id = $5 \
                 AND owner_kind = $1 AND owner_id = $2 AND ($3{} IS NULL OR environment = $3) \
                 ORDER BY occurred_at DESC, id DESC LIMIT $4",
                DB::TEXT_PARAM
            )),
            audit_insert: format!("INSERT INTO {audit} ({AUDIT_COLUMNS}) VALUES "),
            prefix,
        }
    }

    /// The `INSERT` of `rows` audit entries.
    fn audit_insert<DB: Dialect>(&self, rows: usize) -> SqlStr {
        const WIDTH: usize = 16;
        let values = (0..rows)
            .map(|row| {
                let params = (1..=WIDTH)
                    .map(|n| format!("${}", row * WIDTH + n))
                    .collect::<Vec<_>>();
                format!("({})", params.join(", "))
            })
            .collect::<Vec<_>>();
        sql(DB::numbered(&format!(
            "{}{}",
            self.audit_insert,
            values.join(", ")
        )))
    }
}

/// The pool and statements of one SQL store, and everything it does that does not
/// depend on the database.
pub(crate) struct SqlCore<DB: sqlx::Database> {
    /// The connection pool.
    pub(crate) pool: Pool<DB>,
    sql: Arc<Statements>,
}

impl<DB: sqlx::Database> Clone for SqlCore<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            sql: Arc::clone(&self.sql),
        }
    }
}

impl<DB: Dialect> SqlCore<DB> {
    /// Uses `pool`, with tables named after `prefix`.
    pub(crate) fn new(pool: Pool<DB>, prefix: TablePrefix) -> Self {
        Self {
            pool,
            sql: Arc::new(Statements::new::<DB>(prefix)),
        }
    }

    /// The address of the statements, which clones share and another prefix does not.
    pub(crate) fn instance_id(&self) -> usize {
        Arc::as_ptr(&self.sql) as usize
    }

    /// The table prefix.
    pub(crate) fn prefix(&self) -> &TablePrefix {
        &self.sql.prefix
    }

    /// The same pool, with tables named after `prefix`.
    pub(crate) fn with_prefix(self, prefix: TablePrefix) -> Self {
        Self::new(self.pool, prefix)
    }
}

/// 32 bytes from the operating system's CSPRNG, for a new tag secret.
fn random_tag_secret() -> Result<[u8; 32], StoreError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|_| StoreError::unavailable(crate::key::KeyError::Randomness))?;
    Ok(secret)
}

/// A statement with its parameters bound.
fn bound<'v, DB: Dialect>(
    statement: SqlStr,
    values: impl IntoIterator<Item = Value<'v>>,
) -> Result<Query<'static, DB, DB::Arguments>, StoreError> {
    values
        .into_iter()
        .try_fold(sqlx::query(statement), DB::bind)
}

// sqlx implements `Executor` for each database's connection separately, so generic code
// has to ask for it.
impl<DB> SqlCore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    /// Begins a write transaction.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, DB>, StoreError> {
        match DB::BEGIN {
            Some(statement) => self.pool.begin_with(statement).await,
            None => self.pool.begin().await,
        }
        .map_err(map_error)
    }

    /// Creates the tables, or brings them up to [`CURRENT_VERSION`], in one write
    /// transaction. Returns the version it migrated from, if it changed anything.
    pub(crate) async fn migrate(&self) -> Result<Option<i64>, StoreError> {
        let mut tx = self.begin().await?;
        let result = self.migrate_in(&mut tx).await;
        settle(tx, result).await
    }

    /// The migration's statements, inside the transaction `migrate` holds.
    async fn migrate_in(&self, conn: &mut DB::Connection) -> Result<Option<i64>, StoreError> {
        let prefix = &self.sql.prefix;
        let version_table = prefix.schema_version();
        DB::lock_migrations(conn, prefix).await?;
        sqlx::raw_sql(sql(prefix.render(DB::VERSION_TABLE)))
            .execute(&mut *conn)
            .await
            .map_err(map_error)?;
        let found = sqlx::query(sql(format!(
            "SELECT version FROM {version_table} WHERE singleton = 1"
        )))
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_error)?;
        let found = found.map(|row| row.int("version")).transpose()?;
        let found = found.unwrap_or(0);
        let mut applied = false;
        for migration in schema::pending(DB::MIGRATIONS, found, prefix)? {
            sqlx::raw_sql(sql(prefix.render(migration.sql)))
                .execute(&mut *conn)
                .await
                .map_err(map_error)?;
            applied = true;
        }
        self.ensure_tag_secret_in(&mut *conn).await?;
        if !applied {
            return Ok(None);
        }
        let version = [Value::Int(CURRENT_VERSION)];
        bound::<DB>(
            sql(prefix.render(DB::SET_VERSION)),
            version.into_iter().chain(DB::version_stamp()),
        )?
        .execute(&mut *conn)
        .await
        .map_err(map_error)?;
        Ok(Some(found))
    }

    /// Adds the first tag secret when there is none, under the migration lock, so that
    /// instances migrating at once agree on one.
    async fn ensure_tag_secret_in(&self, conn: &mut DB::Connection) -> Result<(), StoreError> {
        let table = self.sql.prefix.tag_secrets();
        let secret = random_tag_secret()?;
        let first = tag_key_id(1).unwrap_or('0').to_string();
        bound::<DB>(
            sql(DB::numbered(&format!(
                "INSERT INTO {table} (generation, id, secret) SELECT 1, $1, $2 \
                 WHERE NOT EXISTS (SELECT 1 FROM {table})"
            ))),
            [Value::Text(&first), Value::Bytes(&secret)],
        )?
        .execute(&mut *conn)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    /// [`KeyStore::tag_keys`](crate::store::KeyStore::tag_keys): every tag secret,
    /// oldest first.
    pub(crate) async fn tag_keys(&self) -> Result<Vec<TagKey>, StoreError> {
        let table = self.sql.prefix.tag_secrets();
        let rows = sqlx::query(sql(format!(
            "SELECT id, secret FROM {table} ORDER BY generation"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(map_error)?;
        rows.iter()
            .map(|row| {
                let id = row.text("id")?;
                let mut chars = id.chars();
                let (Some(id), None) = (chars.next(), chars.next()) else {
                    return Err(corrupt("tag secret id", "not one character"));
                };
                TagKey::new(id, &row.bytes("secret")?).map_err(|e| corrupt("tag secret", e))
            })
            .collect()
    }

    /// Adds a tag secret that tags new keys from now on; the older ones still verify
    /// the keys they tagged. Returns its id.
    pub(crate) async fn rotate_tag_key(&self) -> Result<char, StoreError> {
        let table = self.sql.prefix.tag_secrets();
        let mut tx = self.begin().await?;
        let result = async {
            DB::lock_migrations(&mut tx, &self.sql.prefix).await?;
            let newest = sqlx::query(sql(format!(
                "SELECT coalesce(max(generation), 0) AS generation FROM {table}"
            )))
            .fetch_one(&mut *tx)
            .await
            .map_err(map_error)?
            .int("generation")?;
            let generation = newest + 1;
            let id = tag_key_id(generation).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "all {TAG_KEY_IDS} tag secret ids are in use (table {table})"
                ))
            })?;
            let secret = random_tag_secret()?;
            bound::<DB>(
                sql(DB::numbered(&format!(
                    "INSERT INTO {table} (generation, id, secret) VALUES ($1, $2, $3)"
                ))),
                [
                    Value::Int(generation),
                    Value::Text(&id.to_string()),
                    Value::Bytes(&secret),
                ],
            )?
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
            Ok(id)
        }
        .await;
        settle(tx, result).await
    }

    /// Checks, without changing anything, that the tables are at exactly
    /// [`CURRENT_VERSION`].
    pub(crate) async fn check_schema(&self) -> Result<(), StoreError> {
        let prefix = &self.sql.prefix;
        let version_table = prefix.schema_version();
        let exists = bound::<DB>(
            sql(DB::TABLE_EXISTS.to_owned()),
            [Value::Text(&version_table)],
        )?
        .fetch_one(&self.pool)
        .await
        .map_err(map_error)?
        .flag("present")?;
        let found = if exists {
            sqlx::query(sql(format!(
                "SELECT coalesce(max(version), 0) AS version FROM {version_table}"
            )))
            .fetch_one(&self.pool)
            .await
            .map_err(map_error)?
            .int("version")?
        } else {
            0
        };
        schema::check(found, prefix)?;
        if found < CURRENT_VERSION {
            return Err(schema::outdated(found, prefix));
        }
        Ok(())
    }

    /// [`KeyStore::get`](crate::store::KeyStore::get).
    pub(crate) async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        let get = bound(self.sql.get.clone(), [Value::Text(id.as_str())])?;
        fetch_record(&self.pool, get).await
    }

    /// [`KeyStore::get_by_digest`](crate::store::KeyStore::get_by_digest).
    pub(crate) async fn get_by_digest(
        &self,
        digest: &Digest,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let statement = self.sql.get_by_digest.clone();
        let get = bound(statement, [Value::Bytes(digest.as_bytes())])?;
        fetch_record(&self.pool, get).await
    }

    /// [`ManagedKeyStore::list_by_owner`](crate::store::ManagedKeyStore::list_by_owner).
    pub(crate) async fn list_by_owner(&self, owner: &Owner) -> Result<Vec<KeyRecord>, StoreError> {
        let values = [Value::Text(owner.kind()), Value::Text(owner.id())];
        let rows = bound::<DB>(self.sql.list_by_owner.clone(), values)?
            .fetch_all(&self.pool)
            .await
            .map_err(map_error)?;
        rows.iter().map(record_from_row).collect()
    }

    /// [`ManagedKeyStore::list_page`](crate::store::ManagedKeyStore::list_page): the
    /// owner, environment and cursor in the statement (a range of the owner's keys in
    /// page order), the state and name prefix checked here, in batches until the page
    /// and one more key are found or the keys run out.
    pub(crate) async fn list_page(&self, query: &KeyQuery) -> Result<KeyPage, StoreError> {
        let want = usize::try_from(query.limit())
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        let batch = want.saturating_mul(2).clamp(16, 1000);
        let (mut at, mut after) = match query.cursor() {
            Some(cursor) => (cursor.created_at(), cursor.id().as_str().to_owned()),
            // Later than any key: every key comes after it.
            None => (time::macros::datetime!(9999-12-31 0:00 UTC), String::new()),
        };
        let environment = query.environment();
        let mut found = Vec::new();
        loop {
            let values = [
                Value::Text(query.owner().kind()),
                Value::Text(query.owner().id()),
                Value::OptText(environment.as_ref().map(Environment::as_str)),
                Value::Time(at),
                Value::Text(&after),
                Value::Int(i64::try_from(batch).unwrap_or(i64::MAX)),
            ];
            let rows = bound::<DB>(self.sql.list_after.clone(), values)?
                .fetch_all(&self.pool)
                .await
                .map_err(map_error)?;
            let fetched = rows.len();
            for row in &rows {
                let record = record_from_row(row)?;
                at = record.created_at;
                after = record.id.as_str().to_owned();
                if query.matches(&record) {
                    found.push(record);
                    if found.len() == want {
                        return Ok(query.page_of(found));
                    }
                }
            }
            if fetched < batch {
                return Ok(query.page_of(found));
            }
        }
    }

    /// [`ManagedKeyStore::touch_last_used`](crate::store::ManagedKeyStore::touch_last_used): one
    /// statement for the whole batch.
    pub(crate) async fn touch_last_used(
        &self,
        batch: &[(KeyId, OffsetDateTime)],
    ) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        bound::<DB>(self.sql.touch.clone(), [Value::Batch(batch)])?
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    /// [`ManagedKeyStore::add_usage`](crate::store::ManagedKeyStore::add_usage): one
    /// statement for the whole batch.
    pub(crate) async fn add_usage(&self, batch: &[UsageBucket]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        bound::<DB>(self.sql.usage_add.clone(), [Value::Usage(batch)])?
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    /// [`ManagedKeyStore::usage`](crate::store::ManagedKeyStore::usage).
    pub(crate) async fn usage(
        &self,
        key: &KeyId,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<UsageBucket>, StoreError> {
        let Some((from, to)) = hours_in(from, to) else {
            return Ok(Vec::new());
        };
        let values = [Value::Text(key.as_str()), Value::Int(from), Value::Int(to)];
        let rows = bound::<DB>(self.sql.usage_read.clone(), values)?
            .fetch_all(&self.pool)
            .await
            .map_err(map_error)?;
        rows.iter()
            .map(|row| {
                let count = |column: &str| {
                    row.int(column)
                        .and_then(|n| u64::try_from(n).map_err(|_| corrupt("usage count", n)))
                };
                Ok(UsageBucket::at_hour(
                    *key,
                    row.int("hour")?,
                    UsageCounts {
                        admitted: count("admitted")?,
                        refused_scope: count("refused_scope")?,
                        refused_rate_limit: count("refused_rate_limit")?,
                        refused_quota: count("refused_quota")?,
                    },
                ))
            })
            .collect()
    }

    /// [`ManagedKeyStore::prune_usage`](crate::store::ManagedKeyStore::prune_usage).
    pub(crate) async fn prune_usage(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let result = bound::<DB>(
            self.sql.usage_prune.clone(),
            [Value::Int(first_hour_from(before))],
        )?
        .execute(&self.pool)
        .await
        .map_err(map_error)?;
        Ok(DB::rows_affected(&result))
    }

    /// [`ManagedKeyStore::audit_log`](crate::store::ManagedKeyStore::audit_log).
    pub(crate) async fn audit_log(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let statement = match q.key() {
            None => self.sql.audit_by_owner.clone(),
            Some(_) => self.sql.audit_by_key.clone(),
        };
        let environment = q.environment();
        let values = [
            Value::Text(q.owner().kind()),
            Value::Text(q.owner().id()),
            Value::OptText(environment.as_ref().map(Environment::as_str)),
            Value::Int(i64::from(q.limit())),
            Value::OptText(q.key().map(KeyId::as_str)),
        ];
        let rows = bound::<DB>(statement, values)?
            .fetch_all(&self.pool)
            .await
            .map_err(map_error)?;
        rows.iter().map(audit_from_row).collect()
    }

    /// [`ManagedKeyStore::apply`](crate::store::ManagedKeyStore::apply): one write transaction, with
    /// the conditional write and the audit entries when it took effect.
    pub(crate) async fn apply(
        &self,
        change: Change<'_>,
        audit: &[AuditEntry],
    ) -> Result<Applied, StoreError> {
        let mut tx = self.begin().await?;
        let result = self.apply_in(&mut tx, change, audit).await;
        settle(tx, result).await
    }

    /// [`AuditSink::write`](crate::audit::AuditSink::write): the batch in one write
    /// transaction, one multi-row `INSERT` per [`Dialect::AUDIT_CHUNK`] entries.
    pub(crate) async fn write_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        let result = self.write_audit_in(&mut tx, entries).await;
        settle(tx, result).await
    }

    /// `apply` inside the transaction it holds and settles.
    ///
    /// The acting key's row and the changed key's row are read (and locked) first, in
    /// id order, so that two keys acting on each other at once cannot deadlock: a key
    /// inserted after that read did not exist for this change, and a row that was found
    /// cannot change before the change decides. The acting key is judged first
    /// ([`ActingKey::holds`](crate::store::ActingKey::holds)), then the change's own
    /// condition in its conditional write. Audit entries are written only when the
    /// change was made.
    async fn apply_in(
        &self,
        conn: &mut DB::Connection,
        change: Change<'_>,
        audit: &[AuditEntry],
    ) -> Result<Applied, StoreError> {
        let actor = change.actor();
        let target = match change {
            Change::Insert { .. } => None,
            _ => Some(change.id()),
        };
        let mut ids: Vec<&KeyId> = actor.map(|a| a.id).into_iter().chain(target).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut rows = Vec::with_capacity(ids.len());
        for id in ids {
            let read = bound(self.sql.get_locked.clone(), [Value::Text(id.as_str())])?;
            rows.push((id, fetch_record(&mut *conn, read).await?));
        }
        let row = |id: &KeyId| {
            rows.iter()
                .find(|(read, _)| *read == id)
                .and_then(|(_, row)| row.as_ref())
        };
        if actor.is_some_and(|actor| !actor.holds(row(actor.id))) {
            return Ok(Applied::ActorChanged);
        }
        if let Change::Insert { record, .. } = change {
            self.insert_in(conn, record).await?;
            self.write_audit_in(conn, audit).await?;
            return Ok(Applied::Done(record.clone()));
        }
        let Some(current) = row(change.id()).cloned() else {
            return Ok(Applied::NotFound);
        };
        let changed = match self.conditional_write(change)? {
            Some(write) => fetch_record(&mut *conn, write).await?,
            None => None,
        };
        let Some(changed) = changed else {
            return Ok(Applied::Refused(current));
        };
        if let Change::Rotate { successor, .. } = change {
            self.insert_in(conn, successor).await?;
        }
        self.write_audit_in(conn, audit).await?;
        Ok(Applied::Done(changed))
    }

    /// The conditional `UPDATE … RETURNING` of a change other than an insert (`None`
    /// for an insert, which has no condition): it returns the row afterwards when the
    /// condition held, nothing otherwise.
    fn conditional_write(
        &self,
        change: Change<'_>,
    ) -> Result<Option<Query<'static, DB, DB::Arguments>>, StoreError> {
        let id = Value::Text(change.id().as_str());
        let write = match change {
            Change::Insert { .. } => return Ok(None),
            Change::Update(r) => bound(
                self.sql.update.clone(),
                [
                    id,
                    Value::Text(&r.name),
                    Value::Scopes(&r.scopes),
                    Value::OptTime(r.expires_at),
                    Value::OptText(r.rate_limit_policy.as_deref()),
                    Value::Metadata(&r.metadata),
                ],
            ),
            Change::Revoke { at, scopes, .. } => bound(
                self.sql.revoke.clone(),
                [
                    id,
                    Value::Time(at),
                    Value::Bool(scopes.is_none()),
                    Value::Scopes(scopes.unwrap_or_default()),
                ],
            ),
            Change::SetScopes { from, to, .. } => bound(
                self.sql.set_scopes.clone(),
                [id, Value::Scopes(from), Value::Scopes(to)],
            ),
            Change::Rename { name, .. } => bound(self.sql.rename.clone(), [id, Value::Text(name)]),
            Change::Rotate {
                successor,
                valid_until,
                at,
                ..
            } => bound(
                self.sql.rotate.clone(),
                [
                    id,
                    Value::Text(successor.id.as_str()),
                    Value::Time(valid_until),
                    Value::Time(at),
                    Value::Scopes(&successor.scopes),
                    Value::OptTime(successor.expires_at),
                ],
            ),
        };
        write.map(Some)
    }

    /// Inserts a key row.
    async fn insert_in(&self, conn: &mut DB::Connection, r: &KeyRecord) -> Result<(), StoreError> {
        let rotation = r.rotation.as_ref();
        let values = [
            Value::Text(r.id.as_str()),
            Value::Bytes(r.digest.as_bytes()),
            Value::Text(&r.prefix),
            Value::Text(&r.name),
            Value::Text(r.owner.kind()),
            Value::Text(r.owner.id()),
            Value::OptText(r.environment.as_ref().map(Environment::as_str)),
            Value::Scopes(&r.scopes),
            Value::Time(r.created_at),
            Value::OptText(r.created_by.as_deref()),
            Value::OptTime(r.expires_at),
            Value::OptTime(r.revoked_at),
            Value::OptText(rotation.map(|r| r.superseded_by.as_str())),
            Value::OptTime(rotation.map(|r| r.valid_until)),
            Value::Text(r.family.as_str()),
            Value::OptTime(r.last_used_at),
            Value::OptText(r.rate_limit_policy.as_deref()),
            Value::Metadata(&r.metadata),
            Value::Bool(r.imported),
        ];
        bound::<DB>(self.sql.insert.clone(), values)?
            .execute(&mut *conn)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    /// Inserts audit entries, one multi-row `INSERT` per [`Dialect::AUDIT_CHUNK`].
    async fn write_audit_in(
        &self,
        conn: &mut DB::Connection,
        entries: &[AuditEntry],
    ) -> Result<(), StoreError> {
        for chunk in entries.chunks(DB::AUDIT_CHUNK) {
            let statement = self.sql.audit_insert::<DB>(chunk.len());
            bound::<DB>(statement, chunk.iter().flat_map(audit_values))?
                .execute(&mut *conn)
                .await
                .map_err(map_error)?;
        }
        Ok(())
    }
}

/// Implements [`KeyStore`](crate::store::KeyStore),
/// [`AuditSink`](crate::audit::AuditSink) and `Debug` for a public store type whose
/// `core` field is a [`SqlCore`], by handing every call to the core.
macro_rules! impl_sql_store {
    ($store:ident) => {
        impl $crate::store::KeyStore for $store {
            async fn get(
                &self,
                id: &$crate::key::KeyId,
            ) -> Result<Option<$crate::store::KeyRecord>, $crate::store::StoreError> {
                self.core.get(id).await
            }

            async fn get_by_digest(
                &self,
                digest: &$crate::key::Digest,
            ) -> Result<Option<$crate::store::KeyRecord>, $crate::store::StoreError> {
                self.core.get_by_digest(digest).await
            }

            /// The tag secrets in the store's `tag_secrets` table, oldest first; the
            /// first one is created by `migrate()`.
            async fn tag_keys(
                &self,
            ) -> Result<Vec<$crate::key::TagKey>, $crate::store::StoreError> {
                self.core.tag_keys().await
            }

            /// Shared by clones with the same table prefix.
            fn instance_id(&self) -> Option<usize> {
                Some(self.core.instance_id())
            }
        }

        impl $store {
            /// Adds a tag secret, which tags the keys minted from now on (by each
            /// instance once it has reloaded the secrets:
            /// [`CachedStore::reload_tag_keys`](crate::store::CachedStore::reload_tag_keys),
            /// or by itself when a key tagged under it first misses its cache). The
            /// older secrets stay and still verify the keys they tagged. Rotate it when
            /// it may have leaked: a leaked tag secret lets anyone make the store look up
            /// forged keys again (never authenticate one). Returns the new secret's id.
            ///
            /// # Errors
            ///
            /// [`StoreError::Corrupt`] once all 62 ids are in use, or the database's
            /// failure.
            pub async fn rotate_tag_key(&self) -> Result<char, $crate::store::StoreError> {
                self.core.rotate_tag_key().await
            }
        }

        impl $crate::store::ManagedKeyStore for $store {
            /// One write transaction: the key row is read and locked, the conditional
            /// write made, and the audit entries written when it took effect.
            async fn apply(
                &self,
                change: $crate::store::Change<'_>,
                audit: &[$crate::store::audit_entry::AuditEntry],
            ) -> Result<$crate::store::Applied, $crate::store::StoreError> {
                self.core.apply(change, audit).await
            }

            async fn list_by_owner(
                &self,
                owner: &$crate::store::Owner,
            ) -> Result<Vec<$crate::store::KeyRecord>, $crate::store::StoreError> {
                self.core.list_by_owner(owner).await
            }

            /// One `UPDATE` statement for the whole batch.
            async fn list_page(
                &self,
                query: &$crate::store::KeyQuery,
            ) -> Result<$crate::store::KeyPage, $crate::store::StoreError> {
                self.core.list_page(query).await
            }

            async fn touch_last_used(
                &self,
                batch: &[($crate::key::KeyId, ::time::OffsetDateTime)],
            ) -> Result<(), $crate::store::StoreError> {
                self.core.touch_last_used(batch).await
            }

            async fn audit_log(
                &self,
                query: &$crate::store::audit_entry::AuditQuery,
            ) -> Result<Vec<$crate::store::audit_entry::AuditEntry>, $crate::store::StoreError>
            {
                self.core.audit_log(query).await
            }

            async fn add_usage(
                &self,
                batch: &[$crate::store::UsageBucket],
            ) -> Result<(), $crate::store::StoreError> {
                self.core.add_usage(batch).await
            }

            async fn usage(
                &self,
                key: &$crate::key::KeyId,
                from: ::time::OffsetDateTime,
                to: ::time::OffsetDateTime,
            ) -> Result<Vec<$crate::store::UsageBucket>, $crate::store::StoreError> {
                self.core.usage(key, from, to).await
            }

            async fn prune_usage(
                &self,
                before: ::time::OffsetDateTime,
            ) -> Result<u64, $crate::store::StoreError> {
                self.core.prune_usage(before).await
            }
        }

        impl $crate::store::audit_entry::AuditSink for $store {
            /// Writes the batch in one transaction, in multi-row `INSERT`s.
            async fn write(
                &self,
                entries: Vec<$crate::store::audit_entry::AuditEntry>,
            ) -> Result<(), $crate::store::StoreError> {
                self.core.write_audit(&entries).await
            }
        }

        impl ::std::fmt::Debug for $store {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($store))
                    .field("table_prefix", self.core.prefix())
                    .field("connections", &self.core.pool.size())
                    .finish_non_exhaustive()
            }
        }
    };
}
pub(crate) use impl_sql_store;

/// Runs a statement that returns at most one key row.
async fn fetch_record<'c, DB: Dialect>(
    executor: impl Executor<'c, Database = DB>,
    query: Query<'static, DB, DB::Arguments>,
) -> Result<Option<KeyRecord>, StoreError> {
    let row = query.fetch_optional(executor).await.map_err(map_error)?;
    row.as_ref().map(record_from_row).transpose()
}

/// An audit entry's values, in [`AUDIT_COLUMNS`] order.
fn audit_values(e: &AuditEntry) -> [Value<'_>; 16] {
    let (actor_kind, actor_id) = match &e.actor {
        AuditActor::Key(id) => ("key", id.as_str()),
        AuditActor::System(name) => ("system", name.as_str()),
    };
    [
        Value::Time(e.occurred_at),
        Value::Text(e.action.as_str()),
        Value::Text(e.api_key_id.as_str()),
        Value::OptText(e.prefix.as_deref()),
        Value::Text(actor_kind),
        Value::Text(actor_id),
        Value::Text(e.owner.kind()),
        Value::Text(e.owner.id()),
        Value::OptText(e.environment.as_ref().map(Environment::as_str)),
        Value::Scopes(&e.scopes),
        Value::OptText(e.method.as_deref()),
        Value::OptText(e.path.as_deref()),
        Value::OptText(e.route.as_deref()),
        Value::Status(e.status),
        Value::OptText(e.request_id.as_deref()),
        Value::OptText(e.successor_key_id.as_ref().map(KeyId::as_str)),
    ]
}

/// Reads a key row.
fn record_from_row(row: &impl Columns) -> Result<KeyRecord, StoreError> {
    RawRecord {
        id: row.text("id")?,
        digest: row.bytes("digest")?,
        prefix: row.text("prefix")?,
        name: row.text("name")?,
        owner_kind: row.text("owner_kind")?,
        owner_id: row.text("owner_id")?,
        environment: row.opt_text("environment")?,
        scopes: row.scopes("scopes")?,
        created_at: row.time("created_at")?,
        created_by: row.opt_text("created_by")?,
        expires_at: row.opt_time("expires_at")?,
        revoked_at: row.opt_time("revoked_at")?,
        superseded_by: row.opt_text("superseded_by")?,
        rotation_valid_until: row.opt_time("rotation_valid_until")?,
        family: row.text("family")?,
        last_used_at: row.opt_time("last_used_at")?,
        rate_limit_policy: row.opt_text("rate_limit_policy")?,
        metadata: row.json("metadata")?,
        imported: row.flag("imported")?,
    }
    .into_record()
}

/// Reads an audit row.
fn audit_from_row(row: &impl Columns) -> Result<AuditEntry, StoreError> {
    RawAudit {
        id: row.int("id")?,
        occurred_at: row.time("occurred_at")?,
        action: row.text("action")?,
        api_key_id: row.text("api_key_id")?,
        prefix: row.opt_text("prefix")?,
        actor_kind: row.text("actor_kind")?,
        actor_id: row.opt_text("actor_id")?,
        owner_kind: row.text("owner_kind")?,
        owner_id: row.text("owner_id")?,
        environment: row.opt_text("environment")?,
        scopes: row.scopes("scopes")?,
        method: row.opt_text("method")?,
        path: row.opt_text("path")?,
        route: row.opt_text("route")?,
        status: row.status("status")?,
        request_id: row.opt_text("request_id")?,
        successor_key_id: row.opt_text("successor_key_id")?,
    }
    .into_entry()
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_statements_number_their_parameters() {
        let sql = Statements::new::<sqlx::Sqlite>(TablePrefix::default());
        assert!(sql.get_locked.as_str().ends_with("WHERE id = ?1"));
        assert!(sql.set_scopes.as_str().contains("json(scopes) = json(?2)"));
        assert!(sql.rotate.as_str().contains("expires_at IS ?6"));
        assert!(sql
            .revoke
            .as_str()
            .contains("revoked_at IS NULL AND (?3 OR json(scopes) = json(?4))"));
        let two_rows = sql.audit_insert::<sqlx::Sqlite>(2);
        assert!(two_rows.as_str().ends_with(
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
             ?10, ?11, ?12, ?13, ?14, ?15, ?16), (?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, \
             ?26, ?27, ?28, ?29, ?30, ?31, ?32)"
        ));
        // The JSON paths of the last-used batch are not parameters.
        assert!(sql.touch.as_str().contains("'$[0]'"));
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn postgres_statements_lock_the_row_they_read_for_a_change() {
        let sql = Statements::new::<sqlx::Postgres>(TablePrefix::default());
        assert!(sql
            .get_locked
            .as_str()
            .ends_with("WHERE id = $1 FOR UPDATE"));
        assert!(!sql.get.as_str().contains("FOR UPDATE"));
        assert!(sql
            .revoke
            .as_str()
            .contains("revoked_at IS NULL AND ($3 OR scopes = $4)"));
        assert!(sql
            .rotate
            .as_str()
            .contains("expires_at IS NOT DISTINCT FROM $6"));
        assert!(sql.list_by_owner.as_str().ends_with("id COLLATE \"C\""));
    }
}
