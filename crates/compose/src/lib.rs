//! The composition root: the four services in one process, over one database and one store (one
//! SQLite writer for everyone). `hub up` and the tests start the hub through [`Hub::builder`];
//! each service is built as its own binary builds it, `App::build(config, deps)`, with the
//! shared parts of `deps` handed round instead of opened four times.
#![forbid(unsafe_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use hub_auth::clock::{Clock, SystemClock};
use hub_config::{ConfigError, Env, SecretString};
use hub_ledger::Store;
use hub_storage::{Database, DatabaseConfig};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinSet;

/// The four services' configurations.
#[derive(Debug, Clone)]
pub struct Configs {
    /// The core's; its database is the one every service shares.
    pub core: hub_core::Config,
    /// The auth service's.
    pub auth: hub_auth::Config,
    /// The MCP service's.
    pub mcp: hub_mcp::Config,
    /// The gateway's.
    pub gateway: hub_gateway::Config,
}

impl Configs {
    /// Every service's configuration from the environment, all trusting `token`.
    pub fn from_env_with_token(env: &Env, token: &SecretString) -> Result<Self, ConfigError> {
        Ok(Self {
            core: hub_core::Config::from_env_with_token(env, token.clone())?,
            auth: hub_auth::Config {
                internal_token: Some(token.clone()),
                ..hub_auth::Config::from_env(env)?
            },
            mcp: hub_mcp::Config::from_env_with_token(env, token.clone())?,
            gateway: hub_gateway::Config::from_env_with_token(env, token.clone())?,
        })
    }
}

/// Listeners bound beforehand (tests bind port 0 first, so that each configuration can name the
/// others' URLs).
#[derive(Debug)]
pub struct Listeners {
    /// The gateway's.
    pub gateway: TcpListener,
    /// The auth service's.
    pub auth: TcpListener,
    /// The core's.
    pub core: TcpListener,
    /// The MCP service's.
    pub mcp: TcpListener,
}

/// How to build a [`Hub`]: the configurations, and what to use instead of opening it.
pub struct HubBuilder {
    configs: Configs,
    database: Option<Database>,
    clock: Arc<dyn Clock>,
    listeners: Option<Listeners>,
    mcp_core_over_http: bool,
}

impl HubBuilder {
    /// Over this open, migrated database instead of opening the core's configured one.
    #[must_use]
    pub fn database(mut self, database: Database) -> Self {
        self.database = Some(database);
        self
    }

    /// The MCP service reaching core over HTTP at its `CORE_URL`, as when they run apart,
    /// instead of through core's routes in this process.
    #[must_use]
    pub fn mcp_core_over_http(mut self) -> Self {
        self.mcp_core_over_http = true;
        self
    }

    /// With this clock for sessions instead of the system's.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// On these listeners instead of each configuration's address.
    #[must_use]
    pub fn listeners(mut self, listeners: Listeners) -> Self {
        self.listeners = Some(listeners);
        self
    }

    /// Opens the database (unless given) and builds the four services, bound and ready to serve.
    pub async fn build(self) -> anyhow::Result<Hub> {
        let Configs {
            core,
            auth,
            mcp,
            gateway,
        } = self.configs;
        let database = match self.database {
            Some(database) => database,
            None => open_database(&core.database).await?,
        };
        let store = hub_ledger::store::open(database.clone());
        let (gateway_listener, auth_listener, core_listener, mcp_listener) = match self.listeners {
            Some(l) => (Some(l.gateway), Some(l.auth), Some(l.core), Some(l.mcp)),
            None => (None, None, None, None),
        };
        let core_deps = hub_core::Deps {
            database: database.clone(),
            store: store.clone(),
            listener: core_listener,
        };
        let core = hub_core::App::build(core, core_deps).await?;
        let auth_deps = hub_auth::Deps {
            database: database.clone(),
            users: store.clone(),
            clock: self.clock,
            listener: auth_listener,
        };
        let auth = hub_auth::App::build(auth, auth_deps).await?;
        // The MCP service reaches the ledger through core's routes in this process.
        let mcp_deps = hub_mcp::Deps {
            listener: mcp_listener,
            core: (!self.mcp_core_over_http).then(|| core.routes()),
        };
        let mcp = hub_mcp::App::build(mcp, mcp_deps).await?;
        let gateway_deps = hub_gateway::Deps {
            database,
            store: store.clone(),
            listener: gateway_listener,
        };
        let gateway = hub_gateway::App::build(gateway, gateway_deps).await?;
        Ok(Hub {
            core,
            auth,
            mcp,
            gateway,
            store,
        })
    }
}

async fn open_database(config: &DatabaseConfig) -> anyhow::Result<Database> {
    let database = Database::connect(config)
        .await
        .with_context(|| format!("opening {}", config.describe()))?;
    database.migrate().await.context("migrating")?;
    Ok(database)
}

/// Where the four services listen.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    /// The gateway: the public door.
    pub gateway: SocketAddr,
    /// The auth service.
    pub auth: SocketAddr,
    /// The core.
    pub core: SocketAddr,
    /// The MCP service.
    pub mcp: SocketAddr,
}

/// The four services, bound and ready to serve.
pub struct Hub {
    core: hub_core::App,
    auth: hub_auth::App,
    mcp: hub_mcp::App,
    gateway: hub_gateway::App,
    store: Arc<dyn Store>,
}

impl Hub {
    /// A hub of these configurations.
    pub fn builder(configs: Configs) -> HubBuilder {
        HubBuilder {
            configs,
            database: None,
            clock: Arc::new(SystemClock),
            listeners: None,
            mcp_core_over_http: false,
        }
    }

    /// Where the services listen.
    pub fn addresses(&self) -> Addresses {
        Addresses {
            gateway: self.gateway.address(),
            auth: self.auth.address(),
            core: self.core.address(),
            mcp: self.mcp.address(),
        }
    }

    /// The store every service shares: users, the ledger, service keys.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Starts serving, each service on a task of its own.
    pub fn start(self) -> Running {
        let (stop, _) = broadcast::channel::<()>(1);
        let until_stopped = || {
            let mut on_stop = stop.subscribe();
            async move {
                let _ = on_stop.recv().await;
            }
        };
        let mut services = JoinSet::new();
        services.spawn(self.core.run_until(until_stopped()));
        services.spawn(self.auth.run_until(until_stopped()));
        services.spawn(self.mcp.run_until(until_stopped()));
        services.spawn(self.gateway.run_until(until_stopped()));
        Running { stop, services }
    }
}

/// The services, serving. Dropped, it tells them to stop and lets them finish in the background.
pub struct Running {
    stop: broadcast::Sender<()>,
    services: JoinSet<std::io::Result<()>>,
}

impl Running {
    /// Serves until `shutdown` resolves, then lets every service finish the requests in flight.
    /// If a service stops on its own, stops the others and fails.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        tokio::select! {
            () = shutdown => {
                let _ = self.stop.send(());
            }
            Some(result) = self.services.join_next() => {
                let _ = self.stop.send(());
                result??;
                bail!("a service stopped unexpectedly");
            }
        }
        while let Some(result) = self.services.join_next().await {
            result??;
        }
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        self.services.detach_all();
    }
}
