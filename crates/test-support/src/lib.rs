//! What the tests share: a fresh database on every engine, the real services started on port 0,
//! and an HTTP client that speaks to them as the gateway does.
//!
//! PostgreSQL runs are switched on by `HUB_TEST_DATABASE_URL` (a URL of a database on the server
//! to use; each test gets a database of its own there, dropped afterwards);
//! `HUB_TEST_REQUIRE_SERVICES=1` turns a missing URL into a failure instead of a skip.
#![forbid(unsafe_code)]
#![allow(clippy::missing_panics_doc)]

pub mod fake_google;
pub mod fake_openai;
pub mod proxy;
pub mod smtp;

use std::sync::Arc;

use hub_config::SecretString;
use hub_core::Store;
use hub_storage::{Database, DatabaseConfig};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;
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

/// A random internal credential.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("OS random source");
    hex::encode(bytes)
}

/// The core service running on port 0 over a database of its own.
pub struct SpawnedCore {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// The internal credential it trusts.
    pub token: String,
    /// Its store, for setting up and checking data directly.
    pub store: Arc<dyn Store>,
    /// The HTTP client.
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    /// The database; kept last so the server stops before it is dropped.
    pub db: TestDatabase,
}

/// Starts the core service exactly as production does, on a fresh database.
pub async fn spawn_core(engine: Engine) -> SpawnedCore {
    let db = TestDatabase::new(engine).await;
    let token = random_token();
    let config = hub_core::Config {
        addr: "127.0.0.1:0".parse().expect("address"),
        database: db.config.clone(),
        internal_token: SecretString::from(token.clone()),
    };
    let app = hub_core::App::build_with_database(config, db.database.clone())
        .await
        .expect("start core");
    let base_url = format!("http://{}", app.address());
    let store = app.state().store.clone();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .build()
        .expect("http client");
    SpawnedCore {
        base_url,
        token,
        store,
        http,
        shutdown: Some(tx),
        db,
    }
}

/// The auth service running on port 0, with a clock the test moves.
pub struct SpawnedAuth {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// Users (and the ledger) in its database.
    pub users: Arc<dyn Store>,
    /// Its clock.
    pub clock: Arc<hub_auth::clock::ManualClock>,
    /// A plain client.
    pub http: reqwest::Client,
    /// Where its mail goes without `SMTP_URL` (the outbox, in a temporary directory).
    pub outbox: std::path::PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    _keys: tempfile::TempDir,
    /// The database; kept last so the server stops before it is dropped.
    pub db: TestDatabase,
}

/// Starts the auth service as production does, with sessions on `backend` and, if given, the
/// fake Google as its provider.
pub async fn spawn_auth(
    backend: SessionBackend,
    google: Option<&fake_google::FakeGoogle>,
) -> SpawnedAuth {
    spawn_auth_full(backend.redis(), google, |_| {}).await
}

/// As [`spawn_auth`], with the configuration changed by `configure` before the start (for
/// example `SMTP_URL`).
pub async fn spawn_auth_configured(
    backend: SessionBackend,
    google: Option<&fake_google::FakeGoogle>,
    configure: impl FnOnce(&mut hub_auth::Config),
) -> SpawnedAuth {
    spawn_auth_full(backend.redis(), google, configure).await
}

/// As [`spawn_auth`], with sessions in the Redis at `redis_url` (or the SQLite file if `None`).
pub async fn spawn_auth_with_redis(
    redis_url: Option<String>,
    google: Option<&fake_google::FakeGoogle>,
) -> SpawnedAuth {
    spawn_auth_full(redis_url.map(|url| (url, false)), google, |_| {}).await
}

async fn spawn_auth_full(
    redis: Option<(String, bool)>,
    google: Option<&fake_google::FakeGoogle>,
    configure: impl FnOnce(&mut hub_auth::Config),
) -> SpawnedAuth {
    let db = TestDatabase::new(Engine::Sqlite).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind auth");
    let base_url = format!("http://{}", listener.local_addr().expect("address"));
    let keys = tempfile::tempdir().expect("temporary directory");
    let mut config = auth_config(
        &keys,
        &db,
        redis,
        format!("hub-test-{}:", Uuid::new_v4().simple()),
        google,
        &base_url,
    );
    configure(&mut config);
    let outbox = config.mail.outbox_dir.clone();
    let users = db.store();
    let clock = Arc::new(hub_auth::clock::ManualClock::new());
    let app = hub_auth::App::build_on(
        listener,
        config,
        db.database.clone(),
        users.clone(),
        clock.clone(),
    )
    .await
    .expect("start auth");
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    SpawnedAuth {
        base_url,
        users,
        clock,
        http: reqwest::Client::new(),
        outbox,
        shutdown: Some(tx),
        _keys: keys,
        db,
    }
}

/// The auth service's configuration in tests.
fn auth_config(
    keys: &tempfile::TempDir,
    db: &TestDatabase,
    redis: Option<(String, bool)>,
    redis_prefix: String,
    google: Option<&fake_google::FakeGoogle>,
    public_base_url: &str,
) -> hub_auth::Config {
    let (redis_url, redis_cluster) = redis.map_or((None, false), |(url, c)| (Some(url), c));
    let callback_url = format!("{public_base_url}/auth/google/callback");
    hub_auth::Config {
        public_base_url: public_base_url.to_owned(),
        mail: hub_auth::mail::MailConfig {
            smtp_url: None,
            from: hub_auth::mail::DEFAULT_FROM.to_owned(),
            outbox_dir: keys.path().join("outbox"),
        },
        jwt_key_path: keys.path().join("jwt.pem"),
        jwt_issuer: "smart-ai-hub".into(),
        redis_prefix,
        jwt_audience: "smart-ai-hub".into(),
        trusted_proxies: vec!["127.0.0.1/32".parse().expect("address")],
        addr: "127.0.0.1:0".parse().expect("address"),
        database: db.config.clone(),
        redis_url,
        redis_cluster,
        session_days: 7,
        max_sessions_per_user: 10,
        new_user_credits: 10,
        return_to_allowlist: vec!["chatgpt".into()],
        google: google.map(|g| hub_auth::GoogleConfig {
            client_id: g.client_id.clone(),
            client_secret: SecretString::from(g.client_secret.clone()),
            callback_url: callback_url.clone(),
            issuer_url: g.issuer.clone(),
        }),
        oauth: hub_auth::oauth::OAuthConfig::default(),
    }
}

/// The whole hub, as `hub up` runs it, behind its gateway: auth, core and gateway on port 0 over
/// one database (and Redis for sessions when the engine is PostgreSQL), with the fake Google.
pub struct SpawnedHub {
    /// The gateway: `http://127.0.0.1:PORT`. Tests go through it only.
    pub gateway_url: String,
    /// The core service, for the tests that show what reaching it directly gets you.
    pub core_url: String,
    /// The MCP service (its `/metrics`).
    pub mcp_url: String,
    /// Users, the ledger and service keys.
    pub store: Arc<dyn Store>,
    /// A plain client.
    pub http: reqwest::Client,
    shutdown: Vec<oneshot::Sender<()>>,
    _keys: tempfile::TempDir,
    /// The database; kept last so the servers stop before it is dropped.
    pub db: TestDatabase,
}

/// What a whole hub runs on: its database engine and where its sessions, one-time states and
/// rate limits live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubBackends {
    /// The database.
    pub engine: Engine,
    /// Sessions: the SQLite file with SQLite, Redis (one server or a cluster) with PostgreSQL.
    pub sessions: SessionBackend,
}

impl From<Engine> for HubBackends {
    /// The engine with its usual sessions: the file with SQLite, the one Redis with PostgreSQL.
    fn from(engine: Engine) -> Self {
        let sessions = match engine {
            Engine::Sqlite => SessionBackend::Sqlite,
            Engine::Postgres => SessionBackend::Redis,
        };
        Self { engine, sessions }
    }
}

/// The hubs to run a test of sessions, sign-in or rate limits on: every engine of [`engines`],
/// and PostgreSQL with a Redis Cluster when one is configured.
pub fn hub_backends() -> Vec<HubBackends> {
    let mut backends: Vec<HubBackends> = engines().into_iter().map(HubBackends::from).collect();
    if backends.iter().any(|b| b.engine == Engine::Postgres) && redis_cluster_configured() {
        backends.push(HubBackends {
            engine: Engine::Postgres,
            sessions: SessionBackend::RedisCluster,
        });
    }
    backends
}

/// Starts the hub on `backends` (an [`Engine`]: sessions in Redis with PostgreSQL, in the file
/// with SQLite).
pub async fn spawn_hub(
    backends: impl Into<HubBackends>,
    google: &fake_google::FakeGoogle,
) -> SpawnedHub {
    spawn_hub_with(backends, google, hub_gateway::Limits::default()).await
}

/// As [`spawn_hub`], with the gateway's rate limits given.
pub async fn spawn_hub_with(
    backends: impl Into<HubBackends>,
    google: &fake_google::FakeGoogle,
    limits: hub_gateway::Limits,
) -> SpawnedHub {
    spawn_hub_configured(backends, google, |config| config.limits = limits).await
}

/// As [`spawn_hub`], with the MCP service too, its video API the fake one.
pub async fn spawn_hub_with_mcp(
    engine: Engine,
    google: &fake_google::FakeGoogle,
    openai: &fake_openai::FakeOpenAi,
) -> SpawnedHub {
    spawn_hub_full(engine.into(), google, Some(openai), |_| {}, |_| {}).await
}

/// As [`spawn_hub_with_mcp`], with the MCP service's configuration changed by `configure`.
pub async fn spawn_hub_with_mcp_config(
    engine: Engine,
    google: &fake_google::FakeGoogle,
    openai: &fake_openai::FakeOpenAi,
    configure: impl FnOnce(&mut hub_mcp::Config),
) -> SpawnedHub {
    spawn_hub_full(engine.into(), google, Some(openai), |_| {}, configure).await
}

/// As [`spawn_hub_with_mcp`], with the gateway's configuration changed by `configure`.
pub async fn spawn_hub_with_mcp_configured(
    engine: Engine,
    google: &fake_google::FakeGoogle,
    openai: &fake_openai::FakeOpenAi,
    configure: impl FnOnce(&mut hub_gateway::Config),
) -> SpawnedHub {
    spawn_hub_full(engine.into(), google, Some(openai), configure, |_| {}).await
}

/// As [`spawn_hub`], with the gateway's configuration changed by `configure` (an MCP upstream,
/// TLS, CORS, limits). With TLS the gateway's URL is `https://localhost:PORT`.
pub async fn spawn_hub_configured(
    backends: impl Into<HubBackends>,
    google: &fake_google::FakeGoogle,
    configure: impl FnOnce(&mut hub_gateway::Config),
) -> SpawnedHub {
    spawn_hub_full(backends.into(), google, None, configure, |_| {}).await
}

async fn spawn_hub_full(
    backends: HubBackends,
    google: &fake_google::FakeGoogle,
    openai: Option<&fake_openai::FakeOpenAi>,
    configure: impl FnOnce(&mut hub_gateway::Config),
    configure_mcp: impl FnOnce(&mut hub_mcp::Config),
) -> SpawnedHub {
    let db = TestDatabase::new(backends.engine).await;
    let store = db.store();
    let token = random_token();
    let redis = backends.sessions.redis();
    let redis_prefix = format!("hub-test-{}:", Uuid::new_v4().simple());
    let bind = || async {
        tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
    };
    let (gateway_listener, auth_listener) = (bind().await, bind().await);
    let gateway_url = format!("http://{}", gateway_listener.local_addr().expect("address"));
    let auth_url = format!("http://{}", auth_listener.local_addr().expect("address"));
    let mut shutdown = Vec::new();
    let mut stopper = || {
        let (tx, rx) = oneshot::channel::<()>();
        shutdown.push(tx);
        async move {
            let _ = rx.await;
        }
    };

    let core_config = hub_core::Config {
        addr: "127.0.0.1:0".parse().expect("address"),
        database: db.config.clone(),
        internal_token: SecretString::from(token.clone()),
    };
    let core = hub_core::App::build_with_store(core_config, db.database.clone(), store.clone())
        .await
        .expect("start core");
    let core_url = format!("http://{}", core.address());
    tokio::spawn(core.run_until(stopper()));

    let keys = tempfile::tempdir().expect("temporary directory");
    let config = auth_config(
        &keys,
        &db,
        redis.clone(),
        redis_prefix.clone(),
        Some(google),
        &gateway_url,
    );
    let clock = Arc::new(hub_auth::clock::SystemClock);
    let auth = hub_auth::App::build_on(
        auth_listener,
        config,
        db.database.clone(),
        store.clone(),
        clock,
    )
    .await
    .expect("start auth");
    tokio::spawn(auth.run_until(stopper()));

    // The MCP service, its video API the fake one when the test has one (else nothing listens).
    let mcp_url = {
        let mut config =
            hub_mcp::Config::defaults_for(core_url.clone(), SecretString::from(token.clone()));
        config.openai_base_url = openai.map_or_else(
            || "http://127.0.0.1:9/v1".to_owned(),
            |openai| openai.base_url.clone(),
        );
        config.openai_api_key = Some(SecretString::from("sk-fake".to_owned()));
        config.video_poll = std::time::Duration::from_millis(50);
        config.public_base_url = gateway_url.clone();
        configure_mcp(&mut config);
        let mcp = hub_mcp::App::build_on(bind().await, config);
        let url = format!("http://{}", mcp.address());
        tokio::spawn(mcp.run_until(stopper()));
        url
    };
    let (redis_url, redis_cluster) = redis.map_or((None, false), |(url, c)| (Some(url), c));
    let mut gateway_config = hub_gateway::Config {
        redis_url,
        redis_cluster,
        redis_prefix,
        // Generous: the whole suite runs in parallel on two cores, and a sign-in may queue.
        upstream_timeout: std::time::Duration::from_secs(15),
        public_base_url: gateway_url.clone(),
        ..hub_gateway::Config::defaults_for(
            auth_url,
            core_url.clone(),
            mcp_url.clone(),
            SecretString::from(token),
            db.config.clone(),
        )
    };
    configure(&mut gateway_config);
    let gateway_url = match gateway_config.tls {
        Some(_) => gateway_url.replace("http://127.0.0.1", "https://localhost"),
        None => gateway_url,
    };
    let gateway = hub_gateway::App::build_on(
        gateway_listener,
        gateway_config,
        db.database.clone(),
        store.clone(),
    )
    .await
    .expect("start gateway");
    tokio::spawn(gateway.run_until(stopper()));

    SpawnedHub {
        gateway_url,
        core_url,
        mcp_url,
        store,
        http: reqwest::Client::new(),
        shutdown,
        _keys: keys,
        db,
    }
}

impl SpawnedHub {
    /// A user signed in with the fake Google through the gateway, verified: their code and id.
    pub async fn signed_in_user(&self) -> (String, String) {
        let page = self
            .sign_in(&browser(), "session=conv-9&return_to=chatgpt")
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.page);
        let code = page.code().expect("a code on the success page");
        let r = self
            .call(
                Method::GET,
                "/api/auth/verify-session",
                &[("x-session-token", &code)],
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
        let id = r.json["user"]["id"].as_str().expect("user id").to_owned();
        (code, id)
    }

    /// Creates a user with `credits` through the store, as `hub user create` does.
    pub async fn user_with(&self, credits: i64) -> Uuid {
        user_with(&self.store, credits).await
    }

    /// Signs a browser in with Google through the gateway.
    pub async fn sign_in(&self, browser: &reqwest::Client, query: &str) -> SignIn {
        sign_in_at(&self.gateway_url, browser, query).await
    }

    /// A service key with these scopes, as `hub service-key create` makes it.
    pub async fn service_key(&self, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        let key = hub_core::service_keys::new_key("test", &scopes).expect("key");
        self.store.insert_service_key(&key).await.expect("keep key");
        key.key
    }

    /// A request through the gateway with these headers and, if given, a JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Reply {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.gateway_url));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        read(request.send().await.expect("request reaches the gateway")).await
    }
}

impl Drop for SpawnedHub {
    fn drop(&mut self) {
        for tx in self.shutdown.drain(..) {
            let _ = tx.send(());
        }
    }
}

/// Creates a user with `credits` through the store, as `hub user create` does.
pub async fn user_with(store: &Arc<dyn Store>, credits: i64) -> Uuid {
    let email = format!("{}@example.com", Uuid::new_v4().simple());
    let new =
        hub_core::users::NewUser::new(&email, "Test User", credits, hub_core::users::Role::User)
            .expect("valid user");
    store
        .create_user(&new)
        .await
        .expect("create user")
        .expect("new email")
        .user
        .id
}

/// A browser: keeps cookies, does not follow redirects (the test follows them, and looks).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("browser client")
}

/// What a sign-in ended with.
#[derive(Debug)]
pub struct SignIn {
    /// The last page's status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: reqwest::header::HeaderMap,
    /// Its HTML.
    pub page: String,
    /// The callback URL the provider sent the browser to (with code and state).
    pub callback: Option<String>,
}

impl SignIn {
    /// The `VERIFIED-…` code on the page, if there is one.
    pub fn code(&self) -> Option<String> {
        let start = self.page.find("VERIFIED-")?;
        let code: String = self.page[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        Some(code)
    }
}

/// Walks a browser through `GET {base_url}/auth/google?{query}`, the provider, and the callback.
pub async fn sign_in_at(base_url: &str, browser: &reqwest::Client, query: &str) -> SignIn {
    let start = browser
        .get(format!("{base_url}/auth/google?{query}"))
        .send()
        .await
        .expect("start sign-in");
    if start.status() != StatusCode::FOUND {
        return finish(start, None).await;
    }
    let to_provider = location(&start);
    let at_provider = browser
        .get(&to_provider)
        .send()
        .await
        .expect("reach the provider");
    assert_eq!(
        at_provider.status(),
        StatusCode::SEE_OTHER,
        "the provider redirects back"
    );
    let callback = location(&at_provider);
    let back = browser.get(&callback).send().await.expect("callback");
    finish(back, Some(callback)).await
}

impl SpawnedAuth {
    /// Walks a browser through `GET /auth/google?{query}`, the provider, and the callback.
    pub async fn sign_in(&self, browser: &reqwest::Client, query: &str) -> SignIn {
        sign_in_at(&self.base_url, browser, query).await
    }

    /// The sign-in's start only: the provider URL it redirects to.
    pub async fn start_sign_in(&self, browser: &reqwest::Client, query: &str) -> String {
        let start = browser
            .get(format!("{}/auth/google?{query}", self.base_url))
            .send()
            .await
            .expect("start sign-in");
        assert_eq!(start.status(), StatusCode::FOUND);
        location(&start)
    }

    /// `GET /api/auth/verify-session` with the code in `X-Session-Token`.
    pub async fn verify(&self, code: &str) -> Reply {
        let response = self
            .http
            .get(format!("{}/api/auth/verify-session", self.base_url))
            .header("x-session-token", code)
            .send()
            .await
            .expect("verify-session");
        read(response).await
    }

    /// A request with the session code as `X-Session-Token`.
    pub async fn with_code(&self, method: Method, path: &str, code: &str) -> Reply {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .header("x-session-token", code)
            .send()
            .await
            .expect("request reaches auth");
        read(response).await
    }
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .expect("a Location header")
        .to_owned()
}

async fn finish(response: reqwest::Response, callback: Option<String>) -> SignIn {
    let status = response.status();
    let headers = response.headers().clone();
    let page = response.text().await.unwrap_or_default();
    SignIn {
        status,
        headers,
        page,
        callback,
    }
}

async fn read(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("response body");
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        json,
    }
}

impl Drop for SpawnedAuth {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// How a test calls the core: which caller the gateway would vouch for.
#[derive(Debug, Clone)]
pub enum As {
    /// The operator's tools acting for a user.
    System(Option<Uuid>),
    /// An end user acting as themselves.
    User(Uuid),
    /// A service key with scopes, acting for a user.
    Service {
        /// Its scopes.
        scopes: &'static str,
        /// The user acted for.
        user: Option<Uuid>,
    },
    /// No identity headers at all.
    Nobody,
}

/// How many of `replies` answered `status` (concurrent calls racing for one balance or limit).
pub fn count(replies: &[Reply], status: StatusCode) -> usize {
    replies.iter().filter(|r| r.status == status).count()
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body as JSON (`Null` if it was not JSON).
    pub json: Value,
}

impl SpawnedCore {
    /// Sends a request as `caller`, with optional JSON body and extra headers.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        caller: &As,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url));
        let internal = || ("x-hub-internal", self.token.clone());
        request = match caller {
            As::Nobody => request,
            As::System(user) => {
                let r = request
                    .header(internal().0, internal().1)
                    .header("x-hub-caller", "system");
                match user {
                    Some(u) => r.header("x-user-id", u.to_string()),
                    None => r,
                }
            }
            As::User(user) => request
                .header(internal().0, internal().1)
                .header("x-hub-caller", "user")
                .header("x-user-id", user.to_string()),
            As::Service { scopes, user } => {
                let r = request
                    .header(internal().0, internal().1)
                    .header("x-hub-caller", "service")
                    .header("x-hub-service-key", "test-key")
                    .header("x-hub-scopes", *scopes);
                match user {
                    Some(u) => r.header("x-user-id", u.to_string()),
                    None => r,
                }
            }
        };
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request reaches the core");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("response body");
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            json,
        }
    }

    /// `POST path` as `caller` with a JSON body.
    pub async fn post(&self, path: &str, caller: &As, body: Value) -> Reply {
        self.call(Method::POST, path, caller, Some(&body), &[])
            .await
    }

    /// `GET path` as `caller`.
    pub async fn get(&self, path: &str, caller: &As) -> Reply {
        self.call(Method::GET, path, caller, None, &[]).await
    }

    /// Creates a user with `credits` through the store, as `hub user create` does.
    pub async fn user_with(&self, credits: i64) -> Uuid {
        user_with(&self.store, credits).await
    }
}

impl Drop for SpawnedCore {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
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
