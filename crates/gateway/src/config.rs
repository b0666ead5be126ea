//! The gateway's configuration: typed, read once at start from the environment, with the
//! defaults the embedded mode (`hub up`, tests) runs on.

use std::net::SocketAddr;
use std::time::Duration;

use http::HeaderValue;
use hub_config::{ConfigError, Env, SecretString};
use hub_storage::DatabaseConfig;

use crate::limits::{self, Limits, PerMinute};

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
            redis_prefix: hub_sessions::redis::DEFAULT_PREFIX.to_owned(),
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

impl Config {
    /// Reads the variables above, with the internal credential given (`hub up` makes one).
    pub fn from_env_with_token(
        env: &Env,
        internal_token: SecretString,
    ) -> Result<Self, ConfigError> {
        let trusted_proxies = env.net_list("TRUSTED_PROXIES", "")?;
        let limits = read_limits(env)?;
        let tls = read_tls(env)?;
        let public_base_url = env.public_base_url()?;
        let cors_allowed_origins = read_cors_origins(env)?;
        // One source of defaults: `defaults_for`; each variable overrides its field.
        let mut config = Self::defaults_for(
            service_url(env, "AUTH_URL", "http://127.0.0.1:3001")?,
            service_url(env, "CORE_URL", "http://127.0.0.1:3002")?,
            service_url(env, "MCP_URL", "http://127.0.0.1:3003")?,
            internal_token,
            hub_storage::database_config(env)?,
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
        read_connection_limits(env, &mut config)?;
        Ok(config)
    }

    /// As above, with `HUB_INTERNAL_TOKEN` required.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Self::from_env_with_token(env, env.internal_token()?)
    }
}

/// A service's `http://` base URL, without a trailing `/`.
fn service_url(env: &Env, name: &str, default: &str) -> Result<String, ConfigError> {
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
}

/// A number that must not be 0, with what 0 would do.
fn at_least_one(
    env: &Env,
    name: &str,
    default: u64,
    expected: &str,
    zero_would: &str,
) -> Result<u64, ConfigError> {
    let value: u64 = env.parse_or(name, default, expected)?;
    if value == 0 {
        return Err(ConfigError {
            name: name.into(),
            problem: format!("0 would {zero_would}"),
            expected: expected.into(),
        });
    }
    Ok(value)
}

/// A rate limit: 1 to what the limiter measures.
fn per_minute(env: &Env, name: &str, default: PerMinute) -> Result<PerMinute, ConfigError> {
    let value = at_least_one(
        env,
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
    Ok(PerMinute(value))
}

/// `RATE_LIMIT_*_PER_MINUTE`.
fn read_limits(env: &Env) -> Result<Limits, ConfigError> {
    let defaults = Limits::default();
    Ok(Limits {
        google: per_minute(env, "RATE_LIMIT_GOOGLE_PER_MINUTE", defaults.google)?,
        verify: per_minute(env, "RATE_LIMIT_VERIFY_PER_MINUTE", defaults.verify)?,
        verify_failures: per_minute(
            env,
            "RATE_LIMIT_VERIFY_FAILURES_PER_MINUTE",
            defaults.verify_failures,
        )?,
        credits: per_minute(env, "RATE_LIMIT_CREDITS_PER_MINUTE", defaults.credits)?,
        default: per_minute(env, "RATE_LIMIT_DEFAULT_PER_MINUTE", defaults.default)?,
    })
}

/// `TLS_CERT_PATH` and `TLS_KEY_PATH`: both or neither.
fn read_tls(env: &Env) -> Result<Option<TlsFiles>, ConfigError> {
    match (env.raw("TLS_CERT_PATH"), env.raw("TLS_KEY_PATH")) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert_path: cert.into(),
            key_path: key.into(),
        })),
        (None, None) => Ok(None),
        (Some(_), None) | (None, Some(_)) => Err(ConfigError {
            name: "TLS_CERT_PATH".into(),
            problem: "only one of TLS_CERT_PATH and TLS_KEY_PATH is set".into(),
            expected: "both (PEM files) to serve HTTPS, or neither".into(),
        }),
    }
}

/// `CORS_ALLOWED_ORIGINS`: origins, or `*`.
fn read_cors_origins(env: &Env) -> Result<Vec<String>, ConfigError> {
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
    Ok(cors_allowed_origins)
}

/// The timeouts and caps on client connections, and the serving threads.
fn read_connection_limits(env: &Env, config: &mut Config) -> Result<(), ConfigError> {
    config.header_read_timeout = Duration::from_secs(at_least_one(
        env,
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
        env,
        "BODY_READ_TIMEOUT_SECONDS",
        config.body_read_timeout.as_secs(),
        "seconds, 1 or more",
        "refuse every request with a body",
    )?);
    config.max_connections = usize::try_from(at_least_one(
        env,
        "MAX_CONNECTIONS",
        u64::try_from(config.max_connections).unwrap_or(u64::MAX),
        "open connections, 1 or more",
        "refuse every connection",
    )?)
    .unwrap_or(usize::MAX);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    config.threads = usize::try_from(at_least_one(
        env,
        "GATEWAY_THREADS",
        u64::try_from(cores).unwrap_or(1),
        "serving threads, 1 or more",
        "serve nothing",
    )?)
    .unwrap_or(cores);
    Ok(())
}
