//! The auth service: Google sign-in that ends in a verification code, and the sessions behind it.
//!
//! `Deps::open(&config)` opens the database; `App::build(config, deps)` opens the session store
//! and binds the listener (port 0 in tests); `router(state)` is the HTTP surface. The `auth`
//! binary, `hub up` and the tests start it through these.
#![forbid(unsafe_code)]

pub mod account;
mod admin;
pub mod alerts;
pub mod console;
pub mod google;
pub mod links;
pub mod mail;
pub mod oauth;
pub mod pages;
pub mod passwords;
pub mod routes;
pub mod tokens;
mod web;

pub use hub_sessions as sessions;
pub use hub_sessions::clock;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use hub_config::{ConfigError, Env, SecretString};
use hub_ledger::Store;
use hub_storage::{Database, DatabaseConfig};
use tokio::net::TcpListener;

use crate::clock::{Clock, SystemClock};
use crate::sessions::Sessions;

/// The default listen address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:3001";

/// Google sign-in settings; absent when `GOOGLE_CLIENT_ID` is unset.
#[derive(Debug, Clone)]
pub struct GoogleConfig {
    /// `GOOGLE_CLIENT_ID`.
    pub client_id: String,
    /// `GOOGLE_CLIENT_SECRET`.
    pub client_secret: SecretString,
    /// `GOOGLE_CALLBACK_URL`: where Google sends the browser back.
    pub callback_url: String,
    /// `GOOGLE_ISSUER_URL`: where discovery starts.
    pub issuer_url: String,
}

impl GoogleConfig {
    /// Reads the `GOOGLE_*` variables; none when `GOOGLE_CLIENT_ID` is unset.
    fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let Some(client_id) = env.raw("GOOGLE_CLIENT_ID") else {
            return Ok(None);
        };
        let client_secret = env
            .secret("GOOGLE_CLIENT_SECRET")
            .ok_or_else(|| ConfigError {
                name: "GOOGLE_CLIENT_SECRET".into(),
                problem: "not set while GOOGLE_CLIENT_ID is".into(),
                expected: "the OAuth client's secret from the Google Cloud console".into(),
            })?;
        Ok(Some(Self {
            client_id,
            client_secret,
            callback_url: env.string_or(
                "GOOGLE_CALLBACK_URL",
                "http://localhost:3000/auth/google/callback",
            ),
            issuer_url: env.string_or("GOOGLE_ISSUER_URL", "https://accounts.google.com"),
        }))
    }
}

/// The auth service's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `AUTH_ADDR`, default `127.0.0.1:3001`.
    pub addr: SocketAddr,
    /// Users live in the hub's database (`DATABASE_URL`).
    pub database: DatabaseConfig,
    /// `REDIS_URL`: sessions and sign-in states; unset, they live in the SQLite file.
    pub redis_url: Option<String>,
    /// `REDIS_CLUSTER` (default off): `REDIS_URL` lists seed nodes of a Redis Cluster, by commas.
    pub redis_cluster: bool,
    /// `REDIS_KEY_PREFIX` (default `hub:`): every key this hub keeps in Redis starts with it.
    pub redis_prefix: String,
    /// `SESSION_EXPIRY_DAYS`, default 7.
    pub session_days: i64,
    /// `MAX_SESSIONS_PER_USER`, default 10.
    pub max_sessions_per_user: usize,
    /// `NEW_USER_CREDITS`, default 10: granted to a user created by a sign-in.
    pub new_user_credits: i64,
    /// `RETURN_TO_ALLOWLIST`, default `chatgpt`.
    pub return_to_allowlist: Vec<String>,
    /// Google sign-in, when configured.
    pub google: Option<GoogleConfig>,
    /// `JWT_PRIVATE_KEY_PATH`: the Ed25519 key (PKCS#8 PEM) that signs access tokens; made
    /// once if missing. Default `HUB_DATA_DIR/jwt-ed25519.pem`.
    pub jwt_key_path: std::path::PathBuf,
    /// `JWT_ISSUER` (default `smart-ai-hub`).
    pub jwt_issuer: String,
    /// `JWT_AUDIENCE` (default `smart-ai-hub`).
    pub jwt_audience: String,
    /// `AUTH_TRUSTED_PROXIES`: addresses and CIDR ranges whose `X-Forwarded-For` is believed
    /// (default loopback: the gateway).
    pub trusted_proxies: Vec<hub_config::IpNet>,
    /// `PUBLIC_BASE_URL` (default `http://localhost:3000`, the gateway): where the links in mail
    /// point.
    pub public_base_url: String,
    /// `SMTP_URL`, `MAIL_FROM`, and the outbox under `HUB_DATA_DIR` without SMTP.
    pub mail: mail::MailConfig,
    /// The credit packs and Stripe, for the account page's "buy credits" (`CREDIT_PACKS`,
    /// `STRIPE_SECRET_KEY`, …; the same variables as the core service's).
    pub payments: hub_payments::PaymentsConfig,
    /// The authorization server's settings (`OAUTH_*`).
    pub oauth: oauth::OAuthConfig,
    /// `HUB_INTERNAL_TOKEN`: the gateway's credential, beside which the operators' endpoints
    /// (`/api/admin/users…`) believe who the gateway says is calling. Unset, they refuse everyone.
    pub internal_token: Option<hub_config::SecretString>,
}

impl Config {
    /// Reads the variables above.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let addr = env.parse_or(
            "AUTH_ADDR",
            SocketAddr::from(([127, 0, 0, 1], 3001)),
            "host:port, e.g. 127.0.0.1:3001",
        )?;
        let database = hub_storage::database_config(env)?;
        let redis_url = env.raw("REDIS_URL");
        if redis_url.is_none() && matches!(database, DatabaseConfig::Postgres { .. }) {
            return Err(ConfigError {
                name: "REDIS_URL".into(),
                problem: "not set while DATABASE_URL is PostgreSQL".into(),
                expected: "redis://host:6379 (sessions live in Redis in production)".into(),
            });
        }
        let (session_days, max_sessions_per_user) = session_limits(env)?;
        let new_user_credits =
            env.parse_or("NEW_USER_CREDITS", 10i64, "whole credits, 0 or more")?;
        hub_ledger::validate_amount("NEW_USER_CREDITS", new_user_credits, 0).map_err(|e| {
            ConfigError {
                name: "NEW_USER_CREDITS".into(),
                problem: e.message,
                expected: "whole credits, 0 to 10^12".into(),
            }
        })?;
        let return_to_allowlist = env
            .string_or("RETURN_TO_ALLOWLIST", "chatgpt")
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        let google = GoogleConfig::from_env(env)?;
        let trusted_proxies = env.net_list("AUTH_TRUSTED_PROXIES", "127.0.0.1,::1")?;
        let internal_token = match env.raw("HUB_INTERNAL_TOKEN") {
            Some(_) => Some(env.internal_token()?),
            None => None,
        };
        Ok(Self {
            internal_token,
            public_base_url: env.public_base_url()?,
            mail: mail::MailConfig::from_env(env)?,
            payments: hub_payments::PaymentsConfig::from_env(env)?,
            oauth: oauth::OAuthConfig::from_env(env)?,
            jwt_key_path: env.raw("JWT_PRIVATE_KEY_PATH").map_or_else(
                || env.data_dir().join("jwt-ed25519.pem"),
                std::path::PathBuf::from,
            ),
            jwt_issuer: env.string_or("JWT_ISSUER", "smart-ai-hub"),
            redis_prefix: env.string_or("REDIS_KEY_PREFIX", sessions::redis::DEFAULT_PREFIX),
            jwt_audience: env.string_or("JWT_AUDIENCE", "smart-ai-hub"),
            trusted_proxies,
            addr,
            database,
            redis_url,
            redis_cluster: env.flag("REDIS_CLUSTER")?,
            session_days,
            max_sessions_per_user,
            new_user_credits,
            return_to_allowlist,
            google,
        })
    }
}

/// `SESSION_EXPIRY_DAYS` (1 to 365) and `MAX_SESSIONS_PER_USER` (at least 1).
fn session_limits(env: &Env) -> Result<(i64, usize), ConfigError> {
    let session_days = env.parse_or("SESSION_EXPIRY_DAYS", 7i64, "a number of days, 1 to 365")?;
    if !(1..=365).contains(&session_days) {
        return Err(ConfigError {
            name: "SESSION_EXPIRY_DAYS".into(),
            problem: format!("{session_days} is out of range"),
            expected: "a number of days, 1 to 365".into(),
        });
    }
    let max_sessions_per_user = env
        .parse_or("MAX_SESSIONS_PER_USER", 10usize, "a number such as 10")?
        .max(1);
    Ok((session_days, max_sessions_per_user))
}

/// The state every handler shares; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Sessions and their rules.
    pub sessions: Sessions,
    /// Users (and the ledger, for the credits of new users).
    pub users: Arc<dyn Store>,
    /// Google sign-in, when configured.
    pub google: Option<Arc<google::Google>>,
    /// The configuration.
    pub config: Arc<Config>,
    /// The access tokens' keys.
    pub jwt: Arc<tokens::JwtKeys>,
    /// Which users exist, remembered briefly so that verifying a session costs one lookup.
    pub known_users: Arc<routes::KnownUsers>,
    /// Where the verification and password-reset links go out.
    pub mailer: Arc<dyn mail::Mailer>,
    /// Client ID Metadata Documents fetched lately.
    pub oauth_metadata: Arc<oauth::MetadataCache>,
    /// Credit packs and Stripe Checkout, for the account page.
    pub payments: hub_payments::Payments,
    /// SHA-256 of the internal credential, when there is one (see [`Config::internal_token`]).
    pub credential: Option<[u8; 32]>,
}

/// The auth service, bound and ready to serve.
pub struct App {
    listener: TcpListener,
    state: AppState,
}

/// What the auth service runs on besides its configuration: what `hub up` shares between its
/// services, and the clock (tests move it).
pub struct Deps {
    /// The open, migrated database (sessions live in it without Redis).
    pub database: Database,
    /// Users (and the ledger, for the credits of new users) on it.
    pub users: Arc<dyn Store>,
    /// The clock sessions expire by.
    pub clock: Arc<dyn Clock>,
    /// A listener bound beforehand (tests bind first, to know the callback URL before Google is
    /// configured); without one, `App::build` binds `AUTH_ADDR`.
    pub listener: Option<TcpListener>,
}

impl Deps {
    /// Opens and migrates the configured database and the store on it, with the system clock.
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        let database = Database::connect(&config.database).await?;
        database.migrate().await?;
        Ok(Self {
            users: hub_ledger::store::open(database.clone()),
            database,
            clock: Arc::new(SystemClock),
            listener: None,
        })
    }
}

impl App {
    /// Opens the session store and the signing keys, discovers Google when configured, and binds
    /// the listener (unless `deps` brings one).
    pub async fn build(config: Config, deps: Deps) -> anyhow::Result<Self> {
        let Deps {
            database,
            users,
            clock,
            listener,
        } = deps;
        let listener = match listener {
            Some(listener) => listener,
            None => TcpListener::bind(config.addr)
                .await
                .map_err(|e| anyhow::anyhow!("AUTH_ADDR {}: cannot listen: {e}", config.addr))?,
        };
        let store = sessions::open(
            config.redis_url.as_deref(),
            config.redis_cluster,
            &config.redis_prefix,
            &database,
        )
        .await?;
        let sessions = Sessions::new(
            store,
            clock,
            chrono::Duration::days(config.session_days),
            config.max_sessions_per_user,
        );
        let google = match &config.google {
            Some(google) => Some(Arc::new(google::Google::discover(google).await?)),
            None => None,
        };
        let jwt = Arc::new(tokens::JwtKeys::load_or_create(
            &config.jwt_key_path,
            &config.jwt_issuer,
            &config.jwt_audience,
        )?);
        let state = AppState {
            mailer: mail::open(&config.mail)?,
            payments: hub_payments::Payments::new(config.payments.clone()),
            jwt,
            sessions,
            users,
            google,
            known_users: Arc::new(routes::KnownUsers::default()),
            oauth_metadata: Arc::new(oauth::MetadataCache::default()),
            credential: config.internal_token.as_ref().map(|token| {
                hub_http::caller::credential_digest(hub_config::ExposeSecret::expose_secret(token))
            }),
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

    /// The shared state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let alerts = tokio::spawn(alerts::send_alerts(
            self.state.users.clone(),
            self.state.mailer.clone(),
            format!("{}/account", self.state.config.public_base_url),
        ));
        let served = axum::serve(
            axum::serve::ListenerExt::tap_io(self.listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            }),
            router(self.state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        alerts.abort();
        served
    }
}

/// The auth service's routes.
pub fn router(state: AppState) -> axum::Router {
    hub_telemetry::with_metrics(
        hub_http::with_request_ids_and_errors(routes::router(state)),
        std::sync::Arc::new(hub_telemetry::Metrics::new("auth")),
    )
}
