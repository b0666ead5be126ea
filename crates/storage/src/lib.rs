//! Connections to the two engines the hub runs on, with their migrations embedded.
//!
//! - PostgreSQL when `DATABASE_URL` is a `postgres://` URL: one pool.
//! - SQLite otherwise, in one file under the data directory: a single writer connection (SQLite
//!   allows one writer at a time; queueing is cheaper than lock retries) and a pool of read-only
//!   connections that WAL mode lets run beside it.
//!
//! And the connection to Redis ([`redis_connection`]): one server, or a Redis Cluster.
#![forbid(unsafe_code)]

pub mod redis_connection;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

/// Migrations for PostgreSQL, embedded in the binary.
pub static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("../../migrations/postgres");
/// Migrations for SQLite, embedded in the binary.
pub static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// The database configuration every service shares: `DATABASE_URL`, `DATABASE_MAX_CONNECTIONS`
/// (default 16) and `HUB_DATA_DIR`.
pub fn database_config(env: &hub_config::Env) -> Result<DatabaseConfig, hub_config::ConfigError> {
    let max = env.parse_or("DATABASE_MAX_CONNECTIONS", 16u32, "a pool size such as 16")?;
    DatabaseConfig::from_url(env.raw("DATABASE_URL").as_deref(), &env.data_dir(), max).map_err(
        |e| hub_config::ConfigError {
            name: "DATABASE_URL".into(),
            problem: e.to_string(),
            expected: "postgres://user@host:5432/db, sqlite://path, or unset for ./data/hub.db"
                .into(),
        },
    )
}

/// Why the database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The URL or path is unusable.
    #[error("DATABASE_URL: {0}")]
    Config(String),
    /// The engine refused.
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// A migration failed.
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The data directory could not be made.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Where the data lives.
#[derive(Debug, Clone)]
pub enum DatabaseConfig {
    /// A PostgreSQL URL.
    Postgres {
        /// `postgres://…`
        url: String,
        /// Pool size.
        max_connections: u32,
    },
    /// The embedded SQLite file.
    Sqlite {
        /// The file.
        path: PathBuf,
    },
}

impl DatabaseConfig {
    /// From `DATABASE_URL` (`postgres://…`, `sqlite://path`) or, when unset, `<data_dir>/hub.db`.
    pub fn from_url(
        url: Option<&str>,
        data_dir: &Path,
        max_connections: u32,
    ) -> Result<Self, StorageError> {
        match url {
            None => Ok(Self::Sqlite {
                path: data_dir.join("hub.db"),
            }),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Self::Postgres {
                    url: url.to_owned(),
                    max_connections,
                })
            }
            Some(url) if url.starts_with("sqlite://") || url.starts_with("sqlite:") => {
                let path = url
                    .trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:");
                Ok(Self::Sqlite {
                    path: PathBuf::from(path),
                })
            }
            Some(_) => Err(StorageError::Config(
                "expected postgres://user@host/db or sqlite://path/to/file.db".to_owned(),
            )),
        }
    }

    /// A description safe to print: the engine and where, without credentials.
    pub fn describe(&self) -> String {
        match self {
            Self::Postgres { url, .. } => {
                let host = url
                    .rsplit_once('@')
                    .map(|(_, h)| h)
                    .unwrap_or_else(|| url.trim_start_matches("postgres://"));
                format!("postgres ({host})")
            }
            Self::Sqlite { path } => format!("sqlite ({})", path.display()),
        }
    }
}

/// An open database of either engine.
#[derive(Debug, Clone)]
pub enum Database {
    /// PostgreSQL.
    Postgres(PgPool),
    /// SQLite: the file, a writer for migrations and tools, and the readers.
    Sqlite {
        /// The file (the ledger's own writer thread opens it too).
        path: PathBuf,
        /// A single writer connection, for migrations and tools.
        writer: SqlitePool,
        /// Read-only connections.
        reader: SqlitePool,
    },
}

impl Database {
    /// Opens the database (creating the SQLite file and its directory if needed).
    pub async fn connect(config: &DatabaseConfig) -> Result<Self, StorageError> {
        match config {
            DatabaseConfig::Postgres {
                url,
                max_connections,
            } => {
                let options = PgConnectOptions::from_str(url)?.application_name("smart-ai-hub");
                let pool = PgPoolOptions::new()
                    .max_connections(*max_connections)
                    .min_connections(1)
                    .acquire_timeout(Duration::from_secs(5))
                    // A ping before each use costs a round trip per request; a broken connection
                    // fails its query instead, and the pool replaces it.
                    .test_before_acquire(false)
                    .connect_with(options)
                    .await?;
                Ok(Self::Postgres(pool))
            }
            DatabaseConfig::Sqlite { path } => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|source| StorageError::DataDir {
                        path: dir.to_owned(),
                        source,
                    })?;
                }
                let base = SqliteConnectOptions::new()
                    .filename(path)
                    .journal_mode(SqliteJournalMode::Wal)
                    // NORMAL in WAL mode survives a crash of the process; FULL would also survive
                    // a power cut, at one fsync per commit.
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10));
                let writer = SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(base.clone().create_if_missing(true))
                    .await?;
                let reader = SqlitePoolOptions::new()
                    .max_connections(4)
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(base.read_only(true))
                    .await?;
                Ok(Self::Sqlite {
                    path: path.clone(),
                    writer,
                    reader,
                })
            }
        }
    }

    /// Brings the schema up to date.
    pub async fn migrate(&self) -> Result<(), StorageError> {
        match self {
            Self::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
            Self::Sqlite { writer, .. } => SQLITE_MIGRATIONS.run(writer).await?,
        }
        Ok(())
    }

    /// Answers whether the database takes queries now.
    pub async fn ping(&self) -> Result<(), StorageError> {
        match self {
            Self::Postgres(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
            Self::Sqlite { reader, .. } => {
                sqlx::query("SELECT 1").execute(reader).await?;
            }
        }
        Ok(())
    }

    /// Closes every connection.
    pub async fn close(&self) {
        match self {
            Self::Postgres(pool) => pool.close().await,
            Self::Sqlite { writer, reader, .. } => {
                reader.close().await;
                writer.close().await;
            }
        }
    }
}
