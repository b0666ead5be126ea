//! The state every request shares, and the gateway's metrics.

use std::sync::Arc;
use std::time::Duration;

use hub_ledger::Store;
use hub_storage::redis_connection;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use crate::{Config, admission, identity, jwt, limits, proxy};

/// The state every request shares (one pointer, cheap to clone per request), and the serving
/// thread's own pool of connections to the services.
#[derive(Clone)]
pub struct AppState {
    pub(crate) shared: Arc<Shared>,
    /// This serving thread's pool of connections to the services.
    pub(crate) client: Arc<proxy::Client>,
    /// Rate limits, shared through Redis when there is one (over this thread's connection).
    pub(crate) limiter: Arc<limits::Limiter>,
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
    pub(crate) async fn for_this_thread(&self) -> Self {
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
    pub sessions: hub_sessions::Sessions,
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
    pub(crate) connections: Arc<admission::Connections>,
    /// The API documents, once the services have described themselves.
    pub(crate) documents: tokio::sync::OnceCell<crate::openapi::Documents>,
    /// The services' base URLs, parsed once.
    pub(crate) bases: proxy::Bases,
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
    /// The requests every service counts.
    pub(crate) http: Arc<hub_telemetry::Metrics>,
    upstream: Family<ServiceLabel, Histogram>,
    rate_limited: Family<ClassLabel, Counter>,
    credential_lookups: Family<StoreLabel, Counter>,
    /// Connections refused over `MAX_CONNECTIONS`.
    pub(crate) connections_refused: Counter,
}

impl GatewayMetrics {
    /// Registers every metric beside the shared request metrics.
    pub(crate) fn new() -> Self {
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

    /// How long `service` took to answer with its response's headers.
    pub(crate) fn upstream_latency(&self, service: &'static str, started: std::time::Instant) {
        self.upstream
            .get_or_create(&ServiceLabel { upstream: service })
            .observe(started.elapsed().as_secs_f64());
    }

    /// One request of `class` refused with 429.
    pub(crate) fn rate_limited(&self, class: &'static str) {
        self.rate_limited.get_or_create(&ClassLabel { class }).inc();
    }

    /// One credential looked up in `store`.
    pub(crate) fn credential_lookup(&self, store: &'static str) {
        self.credential_lookups
            .get_or_create(&StoreLabel { store })
            .inc();
    }
}
