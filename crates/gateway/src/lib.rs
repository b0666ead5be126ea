//! The gateway: the one public door (port 3000). It routes each request to its service, removes
//! every identity header a client sent, works out who the caller is (a session code or a service
//! key), enforces who may act for whom, and tells the services in headers they trust only beside
//! the internal credential. The proxying is hyper's pooled client, with bodies streamed both ways.
#![forbid(unsafe_code)]

mod admission;
pub mod identity;
pub mod jwt;
pub mod limits;
pub mod openapi;
mod pages;
mod proxy;
mod tls;
mod ws_watch;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use hub_config::{ConfigError, Env, ExposeSecret, SecretString};
use hub_core::Store;
use hub_storage::{Database, DatabaseConfig, redis_connection};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use tokio::net::TcpListener;
use tower_http::set_header::SetResponseHeaderLayer;

/// Where clients reach the gateway unless `PUBLIC_BASE_URL` says otherwise.
const DEFAULT_PUBLIC_BASE_URL: &str = "http://localhost:3000";

/// `MAX_CONNECTIONS` unless set: well under the open-file limits containers get (2^20), far
/// over what one machine's gateway serves at once in the benchmarks.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

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
    /// `REDIS_CLUSTER` (default off): `REDIS_URL` lists seed nodes of a Redis Cluster.
    pub redis_cluster: bool,
    /// `REDIS_KEY_PREFIX`.
    pub redis_prefix: String,
    /// `MAX_BODY_BYTES`, default 1 MiB.
    pub max_body_bytes: u64,
    /// `UPSTREAM_TIMEOUT_SECONDS`, default 30: how long to wait for a service's response headers.
    pub upstream_timeout: Duration,
    /// `TRUSTED_PROXIES`: addresses and CIDR ranges whose `X-Forwarded-For` is kept (default
    /// none).
    pub trusted_proxies: Vec<hub_config::IpNet>,
    /// The rate limits.
    pub limits: Limits,
    /// `PUBLIC_BASE_URL`, default `http://localhost:3000`: the address clients use, named in the
    /// OpenAPI document's `servers` and the privacy page.
    pub public_base_url: String,
    /// `CORS_ALLOWED_ORIGINS`: browser origins allowed to call the API (default none; `*` allows
    /// any origin, without credentials).
    pub cors_allowed_origins: Vec<String>,
    /// `TLS_CERT_PATH` and `TLS_KEY_PATH` (PEM): serve HTTPS.
    pub tls: Option<TlsFiles>,
    /// `PRIVACY_POLICY_PATH`: an HTML file that replaces the built-in privacy page.
    pub privacy_policy_path: Option<std::path::PathBuf>,
    /// `JWT_ISSUER` and `JWT_AUDIENCE` (default `smart-ai-hub`), as the auth service signs them.
    pub jwt_issuer: String,
    /// `SERVICE_KEY_CACHE_SECONDS`, default 5: how long a looked-up service key is trusted
    /// before it is read again (a revoked key stops working within this; 0 reads every time).
    pub service_key_cache: Duration,
    /// See `jwt_issuer`.
    pub jwt_audience: String,
    /// `HEADER_READ_TIMEOUT_SECONDS`, default 30: how long a client may take to send a request's
    /// head, or leave a connection idle between requests, before the gateway closes it (plain
    /// HTTP and HTTPS).
    pub header_read_timeout: Duration,
    /// `WEBSOCKET_RECHECK_SECONDS`, default 60 (1 to 60): how often a joined WebSocket's
    /// credential is checked again; a revoked or expired one ends the connection.
    pub websocket_recheck: Duration,
    /// `BODY_READ_TIMEOUT_SECONDS`, default 30: how long a client may take to send a request's
    /// body, from the end of its head; after that it is answered 408 and the connection closed
    /// (a body that trickles in is as slow as one that stalls).
    pub body_read_timeout: Duration,
    /// `MAX_CONNECTIONS`, default 10000: connections open at once, over every serving thread;
    /// one more is answered 503 with `Retry-After` and closed (over HTTPS: closed).
    pub max_connections: usize,
    /// `GATEWAY_THREADS`, default the number of cores: serving threads, each with its own
    /// runtime, share of the connections and pool of connections to the services (as nginx's
    /// worker processes); 1 serves on the caller's runtime.
    pub threads: usize,
    /// `RETURN_TO_ALLOWLIST`, default `chatgpt`: the sign-in link's `return_to` values, as the
    /// auth service reads them; the OpenAPI document lists them.
    pub return_to_allowlist: Vec<String>,
}

/// The certificate chain and private key the gateway serves HTTPS with.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert_path: std::path::PathBuf,
    /// PEM private key.
    pub key_path: std::path::PathBuf,
}

impl Config {
    /// The defaults of everything but the addresses and the credential (tests, `hub up`).
    pub fn defaults_for(
        auth_url: String,
        core_url: String,
        mcp_url: String,
        internal_token: SecretString,
        database: DatabaseConfig,
    ) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            auth_url,
            core_url,
            mcp_url,
            internal_token,
            database,
            redis_url: None,
            redis_cluster: false,
            redis_prefix: hub_auth::sessions::redis::DEFAULT_PREFIX.to_owned(),
            max_body_bytes: 1024 * 1024,
            upstream_timeout: Duration::from_secs(30),
            trusted_proxies: Vec::new(),
            limits: Limits::default(),
            public_base_url: DEFAULT_PUBLIC_BASE_URL.to_owned(),
            cors_allowed_origins: Vec::new(),
            tls: None,
            privacy_policy_path: None,
            jwt_issuer: "smart-ai-hub".to_owned(),
            jwt_audience: "smart-ai-hub".to_owned(),
            service_key_cache: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(30),
            websocket_recheck: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(30),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            threads: 1,
            return_to_allowlist: vec!["chatgpt".to_owned()],
        }
    }
}

/// Requests per minute, by class (`RATE_LIMIT_*_PER_MINUTE`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Starting a Google sign-in, per client address (`RATE_LIMIT_GOOGLE_PER_MINUTE`, 10).
    pub google: limits::PerMinute,
    /// `verify-session`, per code (`RATE_LIMIT_VERIFY_PER_MINUTE`, 120).
    pub verify: limits::PerMinute,
    /// Failed credentials, per client address or per live service key sent with them
    /// (`RATE_LIMIT_VERIFY_FAILURES_PER_MINUTE`, 30).
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
        let trusted_proxies = env.net_list("TRUSTED_PROXIES", "")?;
        // A number that must not be 0, with what 0 would do.
        let at_least_one = |name: &str,
                            default: u64,
                            expected: &str,
                            zero_would: &str|
         -> Result<u64, ConfigError> {
            let value: u64 = env.parse_or(name, default, expected)?;
            if value == 0 {
                return Err(ConfigError {
                    name: name.into(),
                    problem: format!("0 would {zero_would}"),
                    expected: expected.into(),
                });
            }
            Ok(value)
        };
        let per_minute =
            |name: &str, default: limits::PerMinute| -> Result<limits::PerMinute, ConfigError> {
                let value = at_least_one(
                    name,
                    default.0,
                    "requests per minute, 1 or more",
                    "refuse everything",
                )?;
                if value > limits::MAX_PER_MINUTE {
                    return Err(ConfigError {
                        name: name.into(),
                        problem: format!("{value} is more than the limiter measures"),
                        expected: format!("requests per minute, 1 to {}", limits::MAX_PER_MINUTE),
                    });
                }
                Ok(limits::PerMinute(value))
            };
        let defaults = Limits::default();
        let limits = Limits {
            google: per_minute("RATE_LIMIT_GOOGLE_PER_MINUTE", defaults.google)?,
            verify: per_minute("RATE_LIMIT_VERIFY_PER_MINUTE", defaults.verify)?,
            verify_failures: per_minute(
                "RATE_LIMIT_VERIFY_FAILURES_PER_MINUTE",
                defaults.verify_failures,
            )?,
            credits: per_minute("RATE_LIMIT_CREDITS_PER_MINUTE", defaults.credits)?,
            default: per_minute("RATE_LIMIT_DEFAULT_PER_MINUTE", defaults.default)?,
        };
        let tls = match (env.raw("TLS_CERT_PATH"), env.raw("TLS_KEY_PATH")) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert_path: cert.into(),
                key_path: key.into(),
            }),
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError {
                    name: "TLS_CERT_PATH".into(),
                    problem: "only one of TLS_CERT_PATH and TLS_KEY_PATH is set".into(),
                    expected: "both (PEM files) to serve HTTPS, or neither".into(),
                });
            }
        };
        let public_base_url = env
            .string_or("PUBLIC_BASE_URL", DEFAULT_PUBLIC_BASE_URL)
            .trim_end_matches('/')
            .to_owned();
        if !(public_base_url.starts_with("http://") || public_base_url.starts_with("https://")) {
            return Err(ConfigError {
                name: "PUBLIC_BASE_URL".into(),
                problem: format!("{public_base_url:?} is not an http(s) URL"),
                expected: "the address clients reach the gateway at, e.g. https://hub.example.com"
                    .into(),
            });
        }
        let cors_allowed_origins: Vec<String> = env
            .string_or("CORS_ALLOWED_ORIGINS", "")
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        if let Some(bad) = cors_allowed_origins.iter().find(|o| {
            o.as_str() != "*"
                && (!(o.starts_with("http://") || o.starts_with("https://"))
                    || HeaderValue::from_str(o).is_err())
        }) {
            return Err(ConfigError {
                name: "CORS_ALLOWED_ORIGINS".into(),
                problem: format!("{bad:?} is not an origin"),
                expected: "comma-separated origins like https://app.example.com, or *".into(),
            });
        }
        // One source of defaults: `defaults_for`; each variable overrides its field.
        let mut config = Self::defaults_for(
            url("AUTH_URL", "http://127.0.0.1:3001")?,
            url("CORE_URL", "http://127.0.0.1:3002")?,
            url("MCP_URL", "http://127.0.0.1:3003")?,
            internal_token,
            hub_core::database_config(env)?,
        );
        config.addr = env.parse_or(
            "GATEWAY_ADDR",
            SocketAddr::from(([127, 0, 0, 1], 3000)),
            "host:port",
        )?;
        config.public_base_url = public_base_url;
        config.cors_allowed_origins = cors_allowed_origins;
        config.tls = tls;
        config.privacy_policy_path = env.raw("PRIVACY_POLICY_PATH").map(Into::into);
        config.return_to_allowlist = env
            .string_or("RETURN_TO_ALLOWLIST", "chatgpt")
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        config.jwt_issuer = env.string_or("JWT_ISSUER", &config.jwt_issuer);
        config.jwt_audience = env.string_or("JWT_AUDIENCE", &config.jwt_audience);
        config.service_key_cache = Duration::from_secs(env.parse_or(
            "SERVICE_KEY_CACHE_SECONDS",
            config.service_key_cache.as_secs(),
            "seconds, 0 or more",
        )?);
        config.limits = limits;
        config.redis_url = env.raw("REDIS_URL");
        config.redis_cluster = env.flag("REDIS_CLUSTER")?;
        config.redis_prefix = env.string_or("REDIS_KEY_PREFIX", &config.redis_prefix);
        config.max_body_bytes =
            env.parse_or("MAX_BODY_BYTES", config.max_body_bytes, "a number of bytes")?;
        config.upstream_timeout = Duration::from_secs(env.parse_or(
            "UPSTREAM_TIMEOUT_SECONDS",
            config.upstream_timeout.as_secs(),
            "seconds",
        )?);
        config.trusted_proxies = trusted_proxies;
        config.header_read_timeout = Duration::from_secs(at_least_one(
            "HEADER_READ_TIMEOUT_SECONDS",
            config.header_read_timeout.as_secs(),
            "seconds, 1 or more",
            "close every connection at once",
        )?);
        let recheck = env.parse_or(
            "WEBSOCKET_RECHECK_SECONDS",
            config.websocket_recheck.as_secs(),
            "seconds, 1 to 60",
        )?;
        if !(1..=60).contains(&recheck) {
            return Err(ConfigError {
                name: "WEBSOCKET_RECHECK_SECONDS".into(),
                problem: format!("{recheck} is out of range"),
                expected: "seconds, 1 to 60 (a revoked credential ends its WebSocket within this)"
                    .into(),
            });
        }
        config.websocket_recheck = Duration::from_secs(recheck);
        config.body_read_timeout = Duration::from_secs(at_least_one(
            "BODY_READ_TIMEOUT_SECONDS",
            config.body_read_timeout.as_secs(),
            "seconds, 1 or more",
            "refuse every request with a body",
        )?);
        config.max_connections = usize::try_from(at_least_one(
            "MAX_CONNECTIONS",
            u64::try_from(config.max_connections).unwrap_or(u64::MAX),
            "open connections, 1 or more",
            "refuse every connection",
        )?)
        .unwrap_or(usize::MAX);
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        config.threads = usize::try_from(at_least_one(
            "GATEWAY_THREADS",
            u64::try_from(cores).unwrap_or(1),
            "serving threads, 1 or more",
            "serve nothing",
        )?)
        .unwrap_or(cores);
        Ok(config)
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

/// The state every request shares (one pointer, cheap to clone per request), and the serving
/// thread's own pool of connections to the services.
#[derive(Clone)]
pub struct AppState {
    shared: Arc<Shared>,
    client: Arc<proxy::Client>,
    /// Rate limits, shared through Redis when there is one (over this thread's connection).
    limiter: Arc<limits::Limiter>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl AppState {
    /// The same shared state for a serving thread, on its runtime: a pool of connections to the
    /// services of its own, and a Redis connection of its own for the rate limits (if Redis
    /// cannot be reached now, the thread shares the main runtime's).
    async fn for_this_thread(&self) -> Self {
        let mut limiter = self.limiter.clone();
        if let Some(url) = &self.config.redis_url
            && self.limiter.uses_redis()
        {
            let cluster = self.config.redis_cluster;
            match redis_connection::connect(url, cluster, Duration::from_millis(800)).await {
                Ok(connection) => limiter = Arc::new(self.limiter.through(connection)),
                Err(e) => tracing::warn!(
                    error = %e,
                    "a serving thread shares the main Redis connection for rate limits"
                ),
            }
        }
        Self {
            shared: self.shared.clone(),
            client: Arc::new(proxy::client()),
            limiter,
        }
    }
}

/// What [`AppState`] points to.
pub struct Shared {
    /// Sessions, to recognise end users by their codes.
    pub sessions: hub_auth::sessions::Sessions,
    /// Service keys.
    pub store: Arc<dyn Store>,
    /// The credential presented to the services.
    pub internal_token: String,
    /// The configuration.
    pub config: Arc<Config>,
    /// End users' access tokens, checked against the auth service's keys.
    pub jwt: Arc<jwt::JwtVerifier>,
    /// Service keys recently looked up.
    pub key_cache: identity::KeyCache,
    /// What `/metrics` reports.
    pub metrics: Arc<GatewayMetrics>,
    /// Open connections, over every serving thread (`MAX_CONNECTIONS`).
    connections: Arc<admission::Connections>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    upstream: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabel {
    class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabel {
    store: &'static str,
}

/// The gateway's metrics: the requests every service counts, plus the time the services take to
/// answer, the requests refused by a rate limit, the credentials looked up in a store and the
/// connections refused over the cap.
#[derive(Debug)]
pub struct GatewayMetrics {
    http: Arc<hub_telemetry::Metrics>,
    upstream: Family<ServiceLabel, Histogram>,
    rate_limited: Family<ClassLabel, Counter>,
    credential_lookups: Family<StoreLabel, Counter>,
    connections_refused: Counter,
}

impl GatewayMetrics {
    fn new() -> Self {
        let mut http = hub_telemetry::Metrics::new("gateway");
        let upstream = Family::<ServiceLabel, Histogram>::new_with_constructor(
            (|| Histogram::new(hub_telemetry::latency_buckets())) as fn() -> Histogram,
        );
        let rate_limited = Family::<ClassLabel, Counter>::default();
        let credential_lookups = Family::<StoreLabel, Counter>::default();
        let connections_refused = Counter::default();
        let registry = http.registry_mut();
        registry.register(
            "upstream_response_seconds",
            "Time from forwarding a request to the service's response headers",
            upstream.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused with 429, by route class",
            rate_limited.clone(),
        );
        registry.register(
            "credential_lookups",
            "Credentials the gateway looked up in a store, by store (session, service_key)",
            credential_lookups.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections answered 503 and closed because MAX_CONNECTIONS were open",
            connections_refused.clone(),
        );
        Self {
            http: Arc::new(http),
            upstream,
            rate_limited,
            credential_lookups,
            connections_refused,
        }
    }

    pub(crate) fn upstream_latency(&self, service: &'static str, started: std::time::Instant) {
        self.upstream
            .get_or_create(&ServiceLabel { upstream: service })
            .observe(started.elapsed().as_secs_f64());
    }

    pub(crate) fn rate_limited(&self, class: &'static str) {
        self.rate_limited.get_or_create(&ClassLabel { class }).inc();
    }

    pub(crate) fn credential_lookup(&self, store: &'static str) {
        self.credential_lookups
            .get_or_create(&StoreLabel { store })
            .inc();
    }
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
        let session_store = hub_auth::sessions::open(
            config.redis_url.as_deref(),
            config.redis_cluster,
            &config.redis_prefix,
            &database,
        )
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
                let connection = redis_connection::connect(
                    url,
                    config.redis_cluster,
                    Duration::from_millis(800),
                )
                .await?;
                limits::Limiter::new(Some((connection, config.redis_prefix.clone())))
            }
            None => limits::Limiter::new(None),
        };
        let shared = Arc::new(Shared {
            jwt: jwt::JwtVerifier::new(&config.auth_url, &config.jwt_issuer, &config.jwt_audience),
            metrics: Arc::new(GatewayMetrics::new()),
            key_cache: identity::KeyCache::new(config.service_key_cache),
            connections: admission::Connections::new(config.max_connections),
            sessions,
            store,
            internal_token: config.internal_token.expose_secret().to_owned(),
            config: Arc::new(config),
        });
        let state = AppState {
            shared,
            client: Arc::new(proxy::client()),
            limiter: Arc::new(limiter),
        };
        Ok(Self { listener, state })
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The scheme clients use: `https` with TLS files configured.
    pub fn scheme(&self) -> &'static str {
        if self.state.config.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Serves (HTTPS when TLS files are configured) until `shutdown` resolves, then finishes the
    /// requests in flight. Plain HTTP is served by `GATEWAY_THREADS` threads, each accepting on
    /// the one listening socket and running its connections, and their calls to the services,
    /// on a runtime of its own: a request never waits for another thread (as nginx's workers).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let tls = self.state.config.tls.clone();
        let threads = self.state.config.threads;
        match tls {
            None if threads > 1 => {
                serve_on_threads(self.listener, &self.state, threads, shutdown).await
            }
            None => serve_plain(self.listener, self.state, shutdown).await,
            Some(files) => {
                let limits = tls::Limits {
                    header_read_timeout: self.state.config.header_read_timeout,
                    connections: self.state.connections.clone(),
                };
                let app = router(self.state).into_make_service_with_connect_info::<SocketAddr>();
                tls::serve(self.listener, &files, app, limits, shutdown).await
            }
        }
    }
}

/// Plain HTTP on the caller's runtime: hyper's HTTP/1 connections (upgrades allowed), each
/// request to the proxy directly or, for the gateway's own routes and whenever CORS is configured,
/// through the router and its layers. When `shutdown` resolves it stops accepting, lets every
/// connection finish the request in flight, and returns once all have.
async fn serve_plain(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router(state.clone());
    let direct = state.config.cors_allowed_origins.is_empty();
    let header_read_timeout = state.config.header_read_timeout;
    let (stop, stopping) = tokio::sync::watch::channel(());
    let (open, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                // A client that gave up before it was accepted.
                Err(e) if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionRefused
                ) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = state.connections.admit() else {
            state.metrics.connections_refused.inc();
            tokio::spawn(admission::refuse(tcp));
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (state, router) = (state.clone(), router.clone());
        let service =
            hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let request = request.map(axum::body::Body::new);
                let (state, router) = (state.clone(), router.clone());
                async move {
                    Ok::<_, std::convert::Infallible>(
                        if direct && !is_own_path(request.uri().path()) {
                            proxy::forward_direct(state, peer, request).await
                        } else {
                            let mut request = request;
                            request
                                .extensions_mut()
                                .insert(axum::extract::ConnectInfo(peer));
                            match tower::ServiceExt::oneshot(router, request).await {
                                Ok(response) => response,
                                Err(never) => match never {},
                            }
                        },
                    )
                }
            });
        // A client that is slow to send a request's head loses the connection (slow-header
        // attacks hold connections open that way).
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
            .with_upgrades();
        let mut stopping = stopping.clone();
        let open = open.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended");
            }
            drop(slot);
            drop(open);
        });
    }
    drop(listener);
    let _ = stop.send(());
    drop(open);
    // Every connection holds a sender; `None` once the last one has finished.
    let _ = all_closed.recv().await;
    Ok(())
}

/// Plain HTTP on `threads` threads with a current-thread runtime each; when `shutdown` resolves
/// (or this future is dropped) every thread drains its requests in flight, and this returns once
/// all have.
async fn serve_on_threads(
    listener: TcpListener,
    state: &AppState,
    threads: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener.into_std()?;
    let (stop, stopped) = tokio::sync::watch::channel(());
    let mut finished = Vec::with_capacity(threads);
    for n in 0..threads {
        let listener = listener.try_clone()?;
        let state = state.clone();
        let mut stopped = stopped.clone();
        let (done, finished_one) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("gateway-{n}"))
            .spawn(move || {
                let served = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|runtime| {
                        runtime.block_on(async move {
                            let listener = TcpListener::from_std(listener)?;
                            let state = state.for_this_thread().await;
                            // A dropped sender counts as the signal too.
                            let signal = async move {
                                let _ = stopped.changed().await;
                            };
                            serve_plain(listener, state, signal).await
                        })
                    });
                let _ = done.send(served);
            })?;
        finished.push(finished_one);
    }
    shutdown.await;
    let _ = stop.send(());
    for finished_one in finished {
        match finished_one.await {
            Ok(served) => served?,
            Err(_) => return Err(std::io::Error::other("a serving thread panicked")),
        }
    }
    Ok(())
}

fn chrono_days(days: i64) -> chrono::Duration {
    chrono::Duration::days(days)
}

/// The paths the gateway answers itself (see [`router`]); everything else is forwarded.
const OWN_PATHS: [&str; 6] = [
    "/health",
    "/ready",
    "/openapi.json",
    "/openapi.gpt.json",
    "/privacy",
    "/metrics",
];

fn is_own_path(path: &str) -> bool {
    OWN_PATHS.contains(&path)
}

/// The security headers of every answer: `nosniff`, and `X-Frame-Options: DENY` unless a page
/// set its own framing rule (the router's layer and the direct proxy path both use this).
fn security_headers(headers: &mut http::HeaderMap) {
    headers.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !headers.contains_key(http::header::X_FRAME_OPTIONS) {
        headers.insert(
            http::header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        );
    }
}

/// The gateway's routes: its own health, documents and pages, and everything else through the
/// proxy; then CORS, the security headers, request ids and metrics around all of it.
pub fn router(state: AppState) -> axum::Router {
    use axum::routing::get;
    let metrics = state.metrics.http.clone();
    let cors = cors_layer(&state.config.cors_allowed_origins);
    let hsts = state.config.tls.is_some();
    let routes = axum::Router::new()
        .route("/health", get(openapi::health))
        .route("/ready", get(proxy::ready))
        .route("/openapi.json", get(openapi::full))
        .route("/openapi.gpt.json", get(openapi::gpt))
        .route("/privacy", get(pages::privacy))
        .fallback(proxy::forward)
        .with_state(state)
        // The same headers the direct proxy path sets; pages that set their own framing rules
        // keep them.
        .layer(axum::middleware::map_response(
            |mut response: axum::response::Response| async move {
                security_headers(response.headers_mut());
                response
            },
        ));
    let routes = if hsts {
        routes.layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("strict-transport-security"),
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        ))
    } else {
        routes
    };
    let routes = match cors {
        Some(cors) => routes.layer(cors),
        None => routes,
    };
    hub_telemetry::with_metrics(hub_error::with_request_ids_and_errors(routes), metrics)
}

/// CORS for the origins configured: with credentials for a list, without for `*`.
fn cors_layer(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let base = CorsLayer::new()
        .allow_methods([
            http::Method::GET,
            http::Method::POST,
            http::Method::DELETE,
            http::Method::OPTIONS,
        ])
        .allow_headers([
            http::header::AUTHORIZATION,
            http::header::CONTENT_TYPE,
            HeaderName::from_static("x-session-token"),
            HeaderName::from_static("x-api-key"),
            HeaderName::from_static("x-user-id"),
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("retry-after"),
            HeaderName::from_static("ratelimit-limit"),
            HeaderName::from_static("ratelimit-remaining"),
            HeaderName::from_static("ratelimit-reset"),
            HeaderName::from_static("idempotent-replayed"),
        ])
        .max_age(Duration::from_secs(600));
    if origins.iter().any(|o| o == "*") {
        // A wildcard never goes with credentials.
        return Some(base.allow_origin(AllowOrigin::any()));
    }
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        base.allow_origin(AllowOrigin::list(list))
            .allow_credentials(true),
    )
}
