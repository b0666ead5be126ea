//! The gateway: the one public door (port 3000). It routes each request to its service, removes
//! every identity header a client sent, works out who the caller is (a session code or a service
//! key), enforces who may act for whom, and tells the services in headers they trust only beside
//! the internal credential. The proxying is hyper's pooled client, with bodies streamed both ways.
//!
//! The rooms: `config` reads the configuration, `state` holds what every request shares,
//! `routes` is the one route table, `router` the gateway's own routes and layers, `server` the
//! hand-written servers, and `proxy` walks a forwarded request through its phases.
#![forbid(unsafe_code)]

mod admission;
mod config;
pub mod identity;
pub mod jwt;
pub mod limits;
pub mod openapi;
mod pages;
mod proxy;
mod resource;
mod router;
mod routes;
mod server;
mod state;
mod tls;
mod ws_watch;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hub_config::ExposeSecret;
use hub_ledger::Store;
use hub_storage::{Database, redis_connection};
use tokio::net::TcpListener;

pub use config::{Config, DEFAULT_ADDR, DEFAULT_MAX_CONNECTIONS, TlsFiles};
pub use limits::Limits;
pub use router::router;
pub use state::{AppState, GatewayMetrics, Shared};

/// The gateway, bound and ready to serve.
pub struct App {
    listener: TcpListener,
    state: AppState,
}

/// What the gateway runs on besides its configuration: what `hub up` shares between its services.
pub struct Deps {
    /// The open, migrated database (sessions live in it without Redis).
    pub database: Database,
    /// Service keys (and users) on it.
    pub store: Arc<dyn Store>,
    /// A listener bound beforehand; without one, `App::build` binds `GATEWAY_ADDR`.
    pub listener: Option<TcpListener>,
}

impl Deps {
    /// Opens and migrates the configured database and the store on it.
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        let database = Database::connect(&config.database).await?;
        database.migrate().await?;
        Ok(Self {
            store: hub_ledger::store::open(database.clone()),
            database,
            listener: None,
        })
    }
}

impl App {
    /// Opens the session store and the rate limiter's connection, and binds the listener (unless
    /// `deps` brings one).
    pub async fn build(config: Config, deps: Deps) -> anyhow::Result<Self> {
        let Deps {
            database,
            store,
            listener,
        } = deps;
        let listener = match listener {
            Some(listener) => listener,
            None => TcpListener::bind(config.addr)
                .await
                .map_err(|e| anyhow::anyhow!("GATEWAY_ADDR {}: cannot listen: {e}", config.addr))?,
        };
        let session_store = hub_sessions::open(
            config.redis_url.as_deref(),
            config.redis_cluster,
            &config.redis_prefix,
            &database,
        )
        .await?;
        // The gateway only verifies sessions; lifetime and cap matter to the auth service alone.
        let sessions = hub_sessions::Sessions::new(
            session_store,
            Arc::new(hub_sessions::clock::SystemClock),
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
            documents: tokio::sync::OnceCell::new(),
            bases: proxy::Bases::new(&config),
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
        server::serve(self.listener, self.state, shutdown).await
    }
}

fn chrono_days(days: i64) -> chrono::Duration {
    chrono::Duration::days(days)
}
