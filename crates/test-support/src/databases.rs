//! Test databases on every engine, and session stores on every backend, each test's own.

use std::sync::Arc;

use hub_core::Store;
use hub_storage::{Database, DatabaseConfig};
use uuid::Uuid;

/// A storage engine the hub runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The embedded SQLite file.
    Sqlite,
    /// PostgreSQL at `HUB_TEST_DATABASE_URL`.
    Postgres,
}

/// Whether the service at `variable` is configured for this run; with
/// `HUB_TEST_REQUIRE_SERVICES=1` a missing one is a failure, not a skip.
pub fn service_configured(variable: &str, what: &str) -> bool {
    if std::env::var(variable).is_ok_and(|url| !url.is_empty()) {
        return true;
    }
    assert_ne!(
        std::env::var("HUB_TEST_REQUIRE_SERVICES").as_deref(),
        Ok("1"),
        "HUB_TEST_REQUIRE_SERVICES=1 but {variable} is not set"
    );
    eprintln!("note: {variable} is not set; the {what} run is skipped");
    false
}

/// The engines to run a contract test on: SQLite always, PostgreSQL when configured.
pub fn engines() -> Vec<Engine> {
    let mut engines = vec![Engine::Sqlite];
    if service_configured("HUB_TEST_DATABASE_URL", "PostgreSQL") {
        engines.push(Engine::Postgres);
    }
    engines
}

/// Where sessions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionBackend {
    /// The embedded SQLite file.
    Sqlite,
    /// Redis at `HUB_TEST_REDIS_URL`.
    Redis,
    /// A Redis Cluster at `HUB_TEST_REDIS_CLUSTER_URL` (its seed nodes, comma-separated).
    RedisCluster,
}

/// Whether a Redis Cluster is configured for this run (`HUB_TEST_REDIS_CLUSTER_URL`). Optional
/// even with `HUB_TEST_REQUIRE_SERVICES=1`; once set, a cluster that cannot be reached fails the
/// tests that use it.
pub fn redis_cluster_configured() -> bool {
    if std::env::var("HUB_TEST_REDIS_CLUSTER_URL").is_ok_and(|url| !url.is_empty()) {
        return true;
    }
    eprintln!("note: HUB_TEST_REDIS_CLUSTER_URL is not set; the Redis Cluster run is skipped");
    false
}

/// The session backends to run a contract test on: SQLite always, Redis and a Redis Cluster
/// when configured.
pub fn session_backends() -> Vec<SessionBackend> {
    let mut backends = vec![SessionBackend::Sqlite];
    if service_configured("HUB_TEST_REDIS_URL", "Redis") {
        backends.push(SessionBackend::Redis);
    }
    if redis_cluster_configured() {
        backends.push(SessionBackend::RedisCluster);
    }
    backends
}

impl SessionBackend {
    /// Its `REDIS_URL` and `REDIS_CLUSTER`, or `None` for the SQLite file.
    pub fn redis(self) -> Option<(String, bool)> {
        let url = |variable: &str| std::env::var(variable).unwrap_or_else(|_| panic!("{variable}"));
        match self {
            Self::Sqlite => None,
            Self::Redis => Some((url("HUB_TEST_REDIS_URL"), false)),
            Self::RedisCluster => Some((url("HUB_TEST_REDIS_CLUSTER_URL"), true)),
        }
    }
}

/// A session store on `backend`, with the SQLite database it needs kept alive beside it.
pub async fn session_store(
    backend: SessionBackend,
) -> (Arc<dyn hub_auth::sessions::SessionStore>, TestDatabase) {
    let db = TestDatabase::new(Engine::Sqlite).await;
    let store: Arc<dyn hub_auth::sessions::SessionStore> = match backend.redis() {
        None => {
            let Database::Sqlite { writer, reader, .. } = &db.database else {
                unreachable!("a SQLite test database")
            };
            Arc::new(hub_auth::sessions::sqlite::SqliteSessions::new(
                writer.clone(),
                reader.clone(),
            ))
        }
        Some((url, cluster)) => {
            let connection = hub_auth::sessions::redis::connect(
                &url,
                cluster,
                std::time::Duration::from_secs(1),
            )
            .await
            .unwrap_or_else(|e| panic!("connect to the {backend:?} at {url}: {e}"));
            Arc::new(hub_auth::sessions::redis::RedisSessions::new(connection))
        }
    };
    (store, db)
}

/// A database of its own for one test, migrated; removed when dropped.
pub struct TestDatabase {
    /// The open database.
    pub database: Database,
    /// How to reach it.
    pub config: DatabaseConfig,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

impl TestDatabase {
    /// A fresh, migrated database on `engine`.
    pub async fn new(engine: Engine) -> Self {
        match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let config = DatabaseConfig::Sqlite {
                    path: dir.path().join("hub.db"),
                };
                let database = Database::connect(&config).await.expect("open sqlite");
                database.migrate().await.expect("migrate sqlite");
                Self {
                    database,
                    config,
                    _dir: Some(dir),
                    postgres: None,
                }
            }
            Engine::Postgres => {
                let server = std::env::var("HUB_TEST_DATABASE_URL").expect("HUB_TEST_DATABASE_URL");
                let name = format!("hub_test_{}", Uuid::new_v4().simple());
                let admin = sqlx::PgPool::connect(&server)
                    .await
                    .expect("connect to HUB_TEST_DATABASE_URL");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .expect("create test database");
                admin.close().await;
                let url = replace_database(&server, &name);
                let config = DatabaseConfig::Postgres {
                    url,
                    max_connections: 24,
                };
                let database = Database::connect(&config)
                    .await
                    .expect("open test database");
                database.migrate().await.expect("migrate postgres");
                Self {
                    database,
                    config,
                    _dir: None,
                    postgres: Some((server, name)),
                }
            }
        }
    }

    /// The ledger and user store over this database.
    pub fn store(&self) -> Arc<dyn Store> {
        hub_core::ledger::store::open(self.database.clone())
    }

    /// The store over this database, deciding grant expiry by `clock` (tests move it).
    pub fn store_with_clock(
        &self,
        clock: Arc<dyn hub_core::ledger::grants::Clock>,
    ) -> Arc<dyn Store> {
        hub_core::ledger::store::open_with_clock(self.database.clone(), clock)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((server, name)) = self.postgres.take() else {
            return;
        };
        // Drop runs outside async; a thread with its own runtime removes the database.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(admin) = sqlx::PgPool::connect(&server).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&admin)
                        .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

/// The URL with its database name replaced.
pub fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::replace_database;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            replace_database("postgres://u@h:5432/test", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            replace_database("postgres://u@h:5432", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            replace_database("postgres://u@h/test?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }
}
