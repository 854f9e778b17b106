//! Fixtures for the SQL stores: a migrated SQLite file, and a PostgreSQL schema of
//! its own when `TOWER_API_KEY_TEST_POSTGRES_URL` is set.
#![allow(unused_imports)]

/// A unique name for a temporary file or schema.
pub fn unique(prefix: &str) -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{}_{hex}", std::process::id())
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::path::PathBuf;

    use tower_api_key::store::sql::SqliteStore;

    use super::unique;

    /// A migrated store in a fresh file under the temporary directory, removed on drop.
    pub struct TempDb {
        pub path: PathBuf,
        pub store: SqliteStore,
    }

    impl TempDb {
        pub async fn new() -> Self {
            let path = temp_path();
            let store = SqliteStore::connect(&url(&path)).await.unwrap();
            store.migrate().await.unwrap();
            Self { path, store }
        }
    }

    impl std::ops::Deref for TempDb {
        type Target = SqliteStore;
        fn deref(&self) -> &SqliteStore {
            &self.store
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            remove_db(&self.path);
        }
    }

    pub fn temp_path() -> PathBuf {
        std::env::temp_dir().join(format!("{}.db", unique("tower-api-key-test-")))
    }

    pub fn url(path: &std::path::Path) -> String {
        format!("sqlite://{}", path.display())
    }

    pub fn remove_db(path: &std::path::Path) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
    }
}

#[cfg(feature = "sqlite")]
pub use self::sqlite::{remove_db, temp_path, url, TempDb};

#[cfg(feature = "postgres")]
mod postgres {
    use std::net::SocketAddr;
    use std::str::FromStr;

    use sqlx::postgres::PgConnectOptions;
    use sqlx::{AssertSqlSafe, Connection, PgConnection};
    use tower_api_key::store::sql::PostgresStore;

    use super::unique;

    const URL_ENV: &str = "TOWER_API_KEY_TEST_POSTGRES_URL";

    fn server_url() -> Option<String> {
        let url = std::env::var(URL_ENV).ok().filter(|u| !u.is_empty());
        if url.is_none() {
            #[allow(clippy::print_stderr)]
            {
                eprintln!(
                    "skipped: {URL_ENV} is not set, so there is no PostgreSQL server to test \
                     against (e.g. {URL_ENV}=postgres://postgres@127.0.0.1:5432/test)"
                );
            }
        }
        url
    }

    /// A fresh schema (and table prefix) of its own, dropped at the end, even after a
    /// failure.
    pub struct TestSchema {
        pub url: String,
        pub schema: String,
        pub prefix: String,
        pub store: PostgresStore,
    }

    impl TestSchema {
        /// `None` (after saying so) when no server is configured.
        pub async fn new() -> Option<Self> {
            let url = server_url()?;
            let schema = unique("tak_test_");
            let mut admin = PgConnection::connect(&url).await.unwrap();
            sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
                .execute(&mut admin)
                .await
                .unwrap();
            let prefix = format!("{}_", unique("t"));
            let store = connect(&options(&url, &schema, None), &prefix).await;
            store.migrate().await.unwrap();
            Some(Self {
                url,
                schema,
                prefix,
                store,
            })
        }

        /// Options reaching this schema, through `addr` if given.
        pub fn options(&self, addr: Option<SocketAddr>) -> PgConnectOptions {
            options(&self.url, &self.schema, addr)
        }

        /// Another store on the same tables, with a pool of its own: another instance.
        pub async fn connect(&self) -> PostgresStore {
            connect(&self.options(None), &self.prefix).await
        }

        pub async fn admin(&self) -> PgConnection {
            PgConnection::connect_with(&self.options(None))
                .await
                .unwrap()
        }
    }

    fn options(url: &str, schema: &str, addr: Option<SocketAddr>) -> PgConnectOptions {
        let options = PgConnectOptions::from_str(url)
            .unwrap()
            .options([("search_path", schema)]);
        match addr {
            Some(addr) => options.host(&addr.ip().to_string()).port(addr.port()),
            None => options,
        }
    }

    async fn connect(options: &PgConnectOptions, prefix: &str) -> PostgresStore {
        PostgresStore::connect_with(options.clone())
            .await
            .unwrap()
            .with_table_prefix(prefix)
            .unwrap()
    }

    impl std::ops::Deref for TestSchema {
        type Target = PostgresStore;
        fn deref(&self) -> &PostgresStore {
            &self.store
        }
    }

    impl Drop for TestSchema {
        fn drop(&mut self) {
            let (url, schema) = (self.url.clone(), self.schema.clone());
            // A runtime of its own: this may run while the test's runtime unwinds.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    if let Ok(mut admin) = PgConnection::connect(&url).await {
                        let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                        let _ = sqlx::raw_sql(AssertSqlSafe(drop)).execute(&mut admin).await;
                    }
                });
            })
            .join();
        }
    }
}

#[cfg(feature = "postgres")]
pub use self::postgres::TestSchema;
