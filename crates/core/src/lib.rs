//! The core service: users, roles and the credit ledger.
//!
//! `Deps::open(&config)` opens the database and runs its migrations; `App::build(config, deps)`
//! binds the listener (port 0 in tests); `router(state)` is the HTTP surface. The `core` binary,
//! the all-in-one `hub up` (which shares one `Deps` database between its services) and the tests
//! all start the service through these.
#![forbid(unsafe_code)]

pub mod caller;
pub mod error;
pub mod payments;
pub mod routes;
pub mod webhooks;

pub use hub_ledger as ledger;
pub use hub_ledger::{service_keys, users};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hub_config::{ConfigError, Env, ExposeSecret, SecretString};
use hub_storage::{Database, DatabaseConfig};
use tokio::net::TcpListener;

pub use hub_ledger::{LedgerStore, Store, StoreError};

/// The core service's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (`CORE_ADDR`, default `127.0.0.1:3002`).
    pub addr: SocketAddr,
    /// Where the data lives (`DATABASE_URL`, else `HUB_DATA_DIR/hub.db`).
    pub database: DatabaseConfig,
    /// The credential the gateway presents (`HUB_INTERNAL_TOKEN`).
    pub internal_token: SecretString,
    /// Paid top-ups (`CREDIT_PACKS`, `STRIPE_*`, `CHECKOUT_*_URL`); none by default.
    pub payments: payments::PaymentsConfig,
    /// Webhook delivery and low-balance alerts (`LOW_BALANCE_PERCENT`, `WEBHOOK_*`).
    pub webhooks: webhooks::WebhookConfig,
}

/// The default listen address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:3002";

impl Config {
    /// Reads `CORE_ADDR`, `DATABASE_URL`, `DATABASE_MAX_CONNECTIONS`, `HUB_DATA_DIR` and
    /// `HUB_INTERNAL_TOKEN`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Self::from_env_with_token(env, env.internal_token()?)
    }

    /// As [`Config::from_env`], with the internal credential given (as `hub up` does).
    pub fn from_env_with_token(
        env: &Env,
        internal_token: SecretString,
    ) -> Result<Self, ConfigError> {
        let addr = env.parse_or(
            "CORE_ADDR",
            parse_addr(DEFAULT_ADDR),
            "host:port, e.g. 127.0.0.1:3002",
        )?;
        Ok(Self {
            addr,
            database: hub_storage::database_config(env)?,
            internal_token,
            payments: payments::PaymentsConfig::from_env(env)?,
            webhooks: webhooks::WebhookConfig::from_env(env)?,
        })
    }
}

fn parse_addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 3002)))
}

/// The state every handler shares; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Users and the ledger.
    pub store: Arc<dyn Store>,
    /// SHA-256 of the internal credential.
    pub credential: [u8; 32],
    /// Paid top-ups.
    pub payments: payments::Payments,
}

impl AppState {
    /// State over a store, trusting callers that present `internal_token`.
    pub fn new(store: Arc<dyn Store>, internal_token: &SecretString) -> Self {
        Self {
            store,
            credential: hub_http::caller::credential_digest(internal_token.expose_secret()),
            payments: payments::Payments::new(payments::PaymentsConfig::default()),
        }
    }
}

/// The core service, bound and ready to serve.
pub struct App {
    listener: TcpListener,
    state: AppState,
    /// Its routes, built once: served on the listener and handed to services in the same process.
    router: axum::Router,
    database: Database,
    webhooks: webhooks::WebhookConfig,
}

/// What the core runs on besides its configuration: what `hub up` shares between its services.
pub struct Deps {
    /// The open, migrated database.
    pub database: Database,
    /// Users and the ledger on it (`hub up`: one SQLite writer for every service).
    pub store: Arc<dyn Store>,
    /// A listener bound beforehand; without one, `App::build` binds `CORE_ADDR`.
    pub listener: Option<TcpListener>,
}

impl Deps {
    /// Opens and migrates the configured database and the store on it.
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        let database = Database::connect(&config.database).await?;
        database.migrate().await?;
        Ok(Self {
            store: ledger::store::open(database.clone()),
            database,
            listener: None,
        })
    }
}

impl App {
    /// Binds the listener (unless `deps` brings one) over the database and store in `deps`.
    pub async fn build(config: Config, deps: Deps) -> anyhow::Result<Self> {
        let listener = match deps.listener {
            Some(listener) => listener,
            None => TcpListener::bind(config.addr)
                .await
                .map_err(|e| anyhow::anyhow!("CORE_ADDR {}: cannot listen: {e}", config.addr))?,
        };
        let state = AppState {
            payments: payments::Payments::new(config.payments.clone()),
            ..AppState::new(deps.store, &config.internal_token)
        };
        Ok(Self {
            listener,
            router: router(state.clone()),
            state,
            database: deps.database,
            webhooks: config.webhooks,
        })
    }

    /// The bound address (the real port when 0 was asked for).
    pub fn address(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The shared state, for tools that run beside the server.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Its routes with their layers (request ids, errors, metrics), for a service in the same
    /// process to call without a socket; the caller's headers are checked as on the listener.
    pub fn routes(&self) -> axum::Router {
        self.router.clone()
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let sweeper = tokio::spawn(sweep_idempotency_keys(self.state.store.clone()));
        let holds = tokio::spawn(expire_holds(self.state.store.clone()));
        let hooks = tokio::spawn(webhooks::dispatch(self.state.store.clone(), self.webhooks));
        let result = axum::serve(
            axum::serve::ListenerExt::tap_io(self.listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            }),
            self.router,
        )
        .with_graceful_shutdown(shutdown)
        .await;
        sweeper.abort();
        holds.abort();
        hooks.abort();
        self.database.close().await;
        result
    }
}

/// Forgets idempotency keys past their retention, once an hour.
async fn sweep_idempotency_keys(store: Arc<dyn Store>) {
    let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every_hour.tick().await;
        let cutoff =
            chrono::Utc::now() - chrono::Duration::hours(ledger::IDEMPOTENCY_RETENTION_HOURS);
        match store.purge_idempotency_keys(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "forgot expired idempotency keys"),
            Err(e) => tracing::warn!(error = %e, "could not purge idempotency keys"),
        }
    }
}

/// Frees holds that expired unsettled, then expires grants past their end date, every 10
/// seconds. (Reads never count an expired hold or grant, and a debit or reservation that finds
/// one in its way settles it at once; this writes the rest down promptly.)
async fn expire_holds(store: Arc<dyn Store>) {
    let mut every = tokio::time::interval(Duration::from_secs(10));
    loop {
        every.tick().await;
        match store.expire_holds().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(accounts = n, "freed expired credit holds"),
            Err(e) => tracing::warn!(error = %e, "could not free expired credit holds"),
        }
        match store.expire_grants().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(accounts = n, "expired credit grants past their end date"),
            Err(e) => tracing::warn!(error = %e, "could not expire credit grants"),
        }
    }
}

/// The core service's routes.
pub fn router(state: AppState) -> axum::Router {
    hub_telemetry::with_metrics(
        hub_http::with_request_ids_and_errors(routes::router(state)),
        std::sync::Arc::new(hub_telemetry::Metrics::new("core")),
    )
}
