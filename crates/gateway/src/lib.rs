//! The gateway: the one public door (port 3000). It routes each request to its service, removes
//! every identity header a client sent, works out who the caller is (a session code or a service
//! key), enforces who may act for whom, and tells the services in headers they trust only beside
//! the internal credential. The proxying is hyper's pooled client, with bodies streamed both ways.
#![forbid(unsafe_code)]

pub mod identity;
pub mod limits;
mod proxy;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hub_config::{ConfigError, Env, ExposeSecret, SecretString};
use hub_core::Store;
use hub_storage::{Database, DatabaseConfig};
use tokio::net::TcpListener;

/// The default listen address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:3000";

/// The gateway's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `GATEWAY_ADDR`, default `127.0.0.1:3000`.
    pub addr: SocketAddr,
    /// `AUTH_URL`, default `http://127.0.0.1:3001`.
    pub auth_url: String,
    /// `CORE_URL`, default `http://127.0.0.1:3002`.
    pub core_url: String,
    /// `MCP_URL`, default `http://127.0.0.1:3003`.
    pub mcp_url: String,
    /// `HUB_INTERNAL_TOKEN`: presented to the services.
    pub internal_token: SecretString,
    /// Service keys live in the hub's database.
    pub database: DatabaseConfig,
    /// `REDIS_URL`: sessions (else the SQLite file).
    pub redis_url: Option<String>,
    /// `REDIS_KEY_PREFIX`.
    pub redis_prefix: String,
    /// `MAX_BODY_BYTES`, default 1 MiB.
    pub max_body_bytes: u64,
    /// `UPSTREAM_TIMEOUT_SECONDS`, default 30: how long to wait for a service's response headers.
    pub upstream_timeout: Duration,
    /// `TRUSTED_PROXIES`: addresses whose `X-Forwarded-For` is kept (default none).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The rate limits.
    pub limits: Limits,
}

/// Requests per minute, by class (`RATE_LIMIT_*_PER_MINUTE`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Starting a Google sign-in, per client address (`RATE_LIMIT_GOOGLE_PER_MINUTE`, 10).
    pub google: limits::PerMinute,
    /// `verify-session`, per code (`RATE_LIMIT_VERIFY_PER_MINUTE`, 120).
    pub verify: limits::PerMinute,
    /// Failed `verify-session` calls, per client address (`RATE_LIMIT_VERIFY_FAILURES_PER_MINUTE`, 30).
    pub verify_failures: limits::PerMinute,
    /// Credit endpoints, per caller (`RATE_LIMIT_CREDITS_PER_MINUTE`, 600).
    pub credits: limits::PerMinute,
    /// Everything else, per caller or client address (`RATE_LIMIT_DEFAULT_PER_MINUTE`, 300).
    pub default: limits::PerMinute,
}

impl Default for Limits {
    fn default() -> Self {
        use limits::PerMinute;
        Self {
            google: PerMinute(10),
            verify: PerMinute(120),
            verify_failures: PerMinute(30),
            credits: PerMinute(600),
            default: PerMinute(300),
        }
    }
}

impl Config {
    /// Reads the variables above, with the internal credential given (`hub up` makes one).
    pub fn from_env_with_token(
        env: &Env,
        internal_token: SecretString,
    ) -> Result<Self, ConfigError> {
        let url = |name: &str, default: &str| -> Result<String, ConfigError> {
            let value = env.string_or(name, default);
            if value.starts_with("http://") {
                Ok(value.trim_end_matches('/').to_owned())
            } else {
                Err(ConfigError {
                    name: name.into(),
                    problem: format!("{value:?} is not an http:// URL"),
                    expected: "http://host:port of the service".into(),
                })
            }
        };
        let trusted_proxies = env.ip_list("TRUSTED_PROXIES", "")?;
        let per_minute = |name: &str, default: u64| -> Result<limits::PerMinute, ConfigError> {
            let value: u64 = env.parse_or(name, default, "requests per minute, 1 or more")?;
            if value == 0 {
                return Err(ConfigError {
                    name: name.into(),
                    problem: "0 would refuse everything".into(),
                    expected: "requests per minute, 1 or more".into(),
                });
            }
            Ok(limits::PerMinute(value))
        };
        let limits = Limits {
            google: per_minute("RATE_LIMIT_GOOGLE_PER_MINUTE", 10)?,
            verify: per_minute("RATE_LIMIT_VERIFY_PER_MINUTE", 120)?,
            verify_failures: per_minute("RATE_LIMIT_VERIFY_FAILURES_PER_MINUTE", 30)?,
            credits: per_minute("RATE_LIMIT_CREDITS_PER_MINUTE", 600)?,
            default: per_minute("RATE_LIMIT_DEFAULT_PER_MINUTE", 300)?,
        };
        Ok(Self {
            limits,
            addr: env.parse_or(
                "GATEWAY_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 3000)),
                "host:port",
            )?,
            auth_url: url("AUTH_URL", "http://127.0.0.1:3001")?,
            core_url: url("CORE_URL", "http://127.0.0.1:3002")?,
            mcp_url: url("MCP_URL", "http://127.0.0.1:3003")?,
            internal_token,
            database: hub_core::database_config(env)?,
            redis_url: env.raw("REDIS_URL"),
            redis_prefix: env.string_or(
                "REDIS_KEY_PREFIX",
                hub_auth::sessions::redis::DEFAULT_PREFIX,
            ),
            max_body_bytes: env.parse_or("MAX_BODY_BYTES", 1024 * 1024, "a number of bytes")?,
            upstream_timeout: Duration::from_secs(env.parse_or(
                "UPSTREAM_TIMEOUT_SECONDS",
                30,
                "seconds",
            )?),
            trusted_proxies,
        })
    }

    /// As above, with `HUB_INTERNAL_TOKEN` required.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let token = env
            .secret_min_len("HUB_INTERNAL_TOKEN", 32)?
            .ok_or_else(|| ConfigError {
                name: "HUB_INTERNAL_TOKEN".into(),
                problem: "not set".into(),
                expected: "the secret the services trust, at least 32 characters".into(),
            })?;
        Self::from_env_with_token(env, token)
    }
}

/// The state every request shares.
#[derive(Clone)]
pub struct AppState {
    /// Sessions, to recognise end users by their codes.
    pub sessions: hub_auth::sessions::Sessions,
    /// Service keys.
    pub store: Arc<dyn Store>,
    /// The credential presented to the services.
    pub internal_token: String,
    /// The configuration.
    pub config: Arc<Config>,
    /// Rate limits, shared through Redis when there is one.
    pub limiter: Arc<limits::Limiter>,
    client: proxy::Client,
}

/// The gateway, bound and ready to serve.
pub struct App {
    listener: TcpListener,
    state: AppState,
}

impl App {
    /// Opens the stores and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let database = Database::connect(&config.database).await?;
        database.migrate().await?;
        let store = hub_core::ledger::store::open(database.clone());
        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|e| anyhow::anyhow!("GATEWAY_ADDR {}: cannot listen: {e}", config.addr))?;
        Self::build_on(listener, config, database, store).await
    }

    /// On a bound listener, over an open database and its store (`hub up`, tests).
    pub async fn build_on(
        listener: TcpListener,
        config: Config,
        database: Database,
        store: Arc<dyn Store>,
    ) -> anyhow::Result<Self> {
        let session_store =
            hub_auth::sessions::open(config.redis_url.as_deref(), &config.redis_prefix, &database)
                .await?;
        // The gateway only verifies sessions; lifetime and cap matter to the auth service alone.
        let sessions = hub_auth::sessions::Sessions::new(
            session_store,
            Arc::new(hub_auth::clock::SystemClock),
            chrono_days(7),
            10,
        );
        let limiter = match &config.redis_url {
            Some(url) => {
                let connection =
                    hub_auth::sessions::redis::connect(url, Duration::from_millis(800)).await?;
                limits::Limiter::new(Some((connection, config.redis_prefix.clone())))
            }
            None => limits::Limiter::new(None),
        };
        let state = AppState {
            limiter: Arc::new(limiter),
            sessions,
            store,
            internal_token: config.internal_token.expose_secret().to_owned(),
            client: proxy::client(),
            config: Arc::new(config),
        };
        Ok(Self { listener, state })
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(
            self.listener,
            router(self.state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
    }
}

fn chrono_days(days: i64) -> chrono::Duration {
    chrono::Duration::days(days)
}

/// The gateway's routes: its own health, and everything else through the proxy.
pub fn router(state: AppState) -> axum::Router {
    use axum::routing::get;
    let routes = axum::Router::new()
        .route(
            "/health",
            get(|| async {
                axum::Json(serde_json::json!({ "status": "ok", "service": "gateway" }))
            }),
        )
        .route("/ready", get(proxy::ready))
        .fallback(proxy::forward)
        .with_state(state);
    hub_error::with_request_ids_and_errors(routes)
}
