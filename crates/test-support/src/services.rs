//! The core and the auth service, each started alone on port 0 as its binary starts it.

use std::sync::Arc;

use hub_config::SecretString;
use hub_core::Store;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::databases::{Engine, SessionBackend, TestDatabase};
use crate::fake_google;

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
        payments: Default::default(),
        webhooks: Default::default(),
    };
    let deps = hub_core::Deps {
        database: db.database.clone(),
        store: db.store(),
        listener: None,
    };
    let app = hub_core::App::build(config, deps)
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
    let deps = hub_auth::Deps {
        database: db.database.clone(),
        users: users.clone(),
        clock: clock.clone(),
        listener: Some(listener),
    };
    let app = hub_auth::App::build(config, deps)
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
pub(crate) fn auth_config(
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
        payments: Default::default(),
        internal_token: None,
    }
}

impl Drop for SpawnedAuth {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for SpawnedCore {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
