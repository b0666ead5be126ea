//! The whole hub on port 0, started as `hub up` starts it (one [`hub_compose::Hub`]), with the
//! fake Google and, when a test asks, the fake OpenAI.

use std::sync::Arc;

use hub_compose::{Configs, Listeners};
use hub_config::SecretString;
use hub_core::Store;
use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

use crate::clients::{Reply, read, user_with};
use crate::databases::{Engine, SessionBackend, TestDatabase, engines, redis_cluster_configured};
use crate::fake_google::FakeGoogle;
use crate::fake_openai::FakeOpenAi;
use crate::services::{auth_config, random_token};

/// The whole hub, as `hub up` runs it, behind its gateway: the four services on port 0 over one
/// database (and Redis for sessions when the engine is PostgreSQL), with the fake Google.
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
    /// The services; dropped, they stop.
    _running: hub_compose::Running,
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

/// A configuration change a test asks for.
type Configure<'a, T> = Box<dyn FnOnce(&mut T) + 'a>;

/// How a test's hub starts: [`SpawnedHub::builder`], then what the test changes, then
/// [`HubBuilder::start`].
pub struct HubBuilder<'a> {
    backends: HubBackends,
    google: &'a FakeGoogle,
    openai: Option<&'a FakeOpenAi>,
    gateway: Configure<'a, hub_gateway::Config>,
    mcp: Configure<'a, hub_mcp::Config>,
    auth: Configure<'a, hub_auth::Config>,
    core: Configure<'a, hub_core::Config>,
    mcp_core_over_http: bool,
}

impl SpawnedHub {
    /// A hub on `backends` (an [`Engine`]: sessions in Redis with PostgreSQL, in the file with
    /// SQLite), signing in with `google`.
    pub fn builder(backends: impl Into<HubBackends>, google: &FakeGoogle) -> HubBuilder<'_> {
        HubBuilder {
            backends: backends.into(),
            google,
            openai: None,
            gateway: Box::new(|_| {}),
            mcp: Box::new(|_| {}),
            auth: Box::new(|_| {}),
            core: Box::new(|_| {}),
            mcp_core_over_http: false,
        }
    }
}

impl<'a> HubBuilder<'a> {
    /// The MCP service's video API the fake one (without it, nothing listens there).
    #[must_use]
    pub fn openai(mut self, openai: &'a FakeOpenAi) -> Self {
        self.openai = Some(openai);
        self
    }

    /// The gateway's configuration changed by `configure` (an MCP upstream, TLS, CORS, limits).
    /// With TLS the gateway's URL is `https://localhost:PORT`.
    #[must_use]
    pub fn gateway(mut self, configure: impl FnOnce(&mut hub_gateway::Config) + 'a) -> Self {
        self.gateway = Box::new(configure);
        self
    }

    /// The MCP service's configuration changed by `configure`.
    #[must_use]
    pub fn mcp(mut self, configure: impl FnOnce(&mut hub_mcp::Config) + 'a) -> Self {
        self.mcp = Box::new(configure);
        self
    }

    /// The MCP service reaching core over HTTP, as when they run apart, instead of through
    /// core's routes in the same process as `hub up` does.
    #[must_use]
    pub fn mcp_core_over_http(mut self, over_http: bool) -> Self {
        self.mcp_core_over_http = over_http;
        self
    }

    /// The auth service's configuration changed by `configure` (the authorization server's
    /// settings, for one).
    #[must_use]
    pub fn auth(mut self, configure: impl FnOnce(&mut hub_auth::Config) + 'a) -> Self {
        self.auth = Box::new(configure);
        self
    }

    /// The core service's configuration changed by `configure` (payments, for one).
    #[must_use]
    pub fn core(mut self, configure: impl FnOnce(&mut hub_core::Config) + 'a) -> Self {
        self.core = Box::new(configure);
        self
    }

    /// Starts the four services on a fresh database, as `hub up` does.
    pub async fn start(self) -> SpawnedHub {
        let db = TestDatabase::new(self.backends.engine).await;
        let listeners = bind_listeners().await;
        let urls = Urls::of(&listeners);
        let keys = tempfile::tempdir().expect("temporary directory");
        let over_http = self.mcp_core_over_http;
        let configs = self.configs(&db, &keys, &urls);
        let gateway_url = match configs.gateway.tls {
            Some(_) => urls
                .gateway
                .replace("http://127.0.0.1", "https://localhost"),
            None => urls.gateway,
        };
        let mut hub = hub_compose::Hub::builder(configs)
            .database(db.database.clone())
            .listeners(listeners);
        if over_http {
            hub = hub.mcp_core_over_http();
        }
        let hub = hub.build().await.expect("start the hub");
        SpawnedHub {
            gateway_url,
            core_url: urls.core,
            mcp_url: urls.mcp,
            store: hub.store(),
            http: reqwest::Client::new(),
            _running: hub.start(),
            _keys: keys,
            db,
        }
    }

    /// The four configurations, with the test's changes made.
    fn configs(self, db: &TestDatabase, keys: &tempfile::TempDir, urls: &Urls) -> Configs {
        let token = random_token();
        let redis = self.backends.sessions.redis();
        let redis_prefix = format!("hub-test-{}:", Uuid::new_v4().simple());
        let mut core = hub_core::Config {
            addr: "127.0.0.1:0".parse().expect("address"),
            database: db.config.clone(),
            internal_token: SecretString::from(token.clone()),
            payments: Default::default(),
            webhooks: Default::default(),
        };
        (self.core)(&mut core);
        let mut auth = auth_config(
            keys,
            db,
            redis.clone(),
            redis_prefix.clone(),
            Some(self.google),
            &urls.gateway,
        );
        auth.internal_token = Some(SecretString::from(token.clone()));
        (self.auth)(&mut auth);
        let mut mcp = mcp_config(urls, &token, self.openai);
        (self.mcp)(&mut mcp);
        let (redis_url, redis_cluster) = redis.map_or((None, false), |(url, c)| (Some(url), c));
        let mut gateway = hub_gateway::Config {
            redis_url,
            redis_cluster,
            redis_prefix,
            // Generous: the whole suite runs in parallel on two cores, and a sign-in may queue.
            upstream_timeout: std::time::Duration::from_secs(15),
            public_base_url: urls.gateway.clone(),
            ..hub_gateway::Config::defaults_for(
                urls.auth.clone(),
                urls.core.clone(),
                urls.mcp.clone(),
                SecretString::from(token),
                db.config.clone(),
            )
        };
        (self.gateway)(&mut gateway);
        Configs {
            core,
            auth,
            mcp,
            gateway,
        }
    }
}

/// The MCP service's configuration in tests: its video API the fake one when the test has one
/// (else nothing listens), quick polls.
fn mcp_config(urls: &Urls, token: &str, openai: Option<&FakeOpenAi>) -> hub_mcp::Config {
    let mut config =
        hub_mcp::Config::defaults_for(urls.core.clone(), SecretString::from(token.to_owned()));
    config.openai_base_url = openai.map_or_else(
        || "http://127.0.0.1:9/v1".to_owned(),
        |openai| openai.base_url.clone(),
    );
    config.openai_api_key = Some(SecretString::from("sk-fake".to_owned()));
    config.video_poll = std::time::Duration::from_millis(50);
    config.public_base_url = urls.gateway.clone();
    config
}

async fn bind_listeners() -> Listeners {
    let bind = || async {
        tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
    };
    Listeners {
        gateway: bind().await,
        auth: bind().await,
        core: bind().await,
        mcp: bind().await,
    }
}

/// The services' `http://127.0.0.1:PORT` URLs, known before they start.
struct Urls {
    gateway: String,
    auth: String,
    core: String,
    mcp: String,
}

impl Urls {
    fn of(listeners: &Listeners) -> Self {
        let url = |listener: &tokio::net::TcpListener| {
            format!("http://{}", listener.local_addr().expect("address"))
        };
        Self {
            gateway: url(&listeners.gateway),
            auth: url(&listeners.auth),
            core: url(&listeners.core),
            mcp: url(&listeners.mcp),
        }
    }
}

impl SpawnedHub {
    /// Creates a user with `credits` through the store, as `hub user create` does.
    pub async fn user_with(&self, credits: i64) -> Uuid {
        user_with(&self.store, credits).await
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
