//! The MCP service (port 3003): AI models as Model Context Protocol tools, billed in credits with
//! holds. It speaks MCP's JSON-RPC (the official `rmcp` SDK) over two transports, both behind the
//! gateway: WebSocket at `/api/mcp/ws` (one message per text frame; the adapter is ours) and
//! Streamable HTTP at `/mcp` (rmcp's). The gateway authenticates the caller and vouches for them
//! with the internal credential; this service trusts nothing else.
#![forbid(unsafe_code)]

mod config;
mod content;
mod core_client;
mod identity;
pub mod prices;
mod results;
mod tools;
mod video_ids;
mod video_links;
mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hub_config::ExposeSecret;
use tokio::net::TcpListener;

pub use config::Config;
pub use identity::Identity;
pub use tools::McpServer;

/// What every connection shares.
pub struct Shared {
    config: Config,
    /// The digest of the internal credential, which the gateway presents.
    credential: [u8; 32],
    core: core_client::Core,
    http: reqwest::Client,
    metrics: McpMetrics,
    video_ids: video_ids::VideoIds,
    video_links: video_links::VideoLinks,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct CallLabels {
    tool: &'static str,
    outcome: &'static str,
}

/// `/metrics`: the HTTP metrics every service has, tool calls by tool and outcome, and the
/// credits captured.
struct McpMetrics {
    http: Arc<hub_telemetry::Metrics>,
    calls: prometheus_client::metrics::family::Family<
        CallLabels,
        prometheus_client::metrics::counter::Counter,
    >,
    captured: prometheus_client::metrics::counter::Counter,
}

impl McpMetrics {
    fn new() -> Self {
        let mut http = hub_telemetry::Metrics::new("mcp");
        let calls = prometheus_client::metrics::family::Family::default();
        let captured = prometheus_client::metrics::counter::Counter::default();
        let registry = http.registry_mut();
        registry.register(
            "mcp_tool_calls",
            "Tool calls by tool and outcome (ok, tool_error, protocol_error)",
            calls.clone(),
        );
        registry.register(
            "mcp_credits_captured",
            "Credits captured from holds by tool calls",
            captured.clone(),
        );
        Self {
            http: Arc::new(http),
            calls,
            captured,
        }
    }

    pub(crate) fn call(&self, tool: &'static str, outcome: &'static str) {
        self.calls
            .get_or_create(&CallLabels { tool, outcome })
            .inc();
    }

    pub(crate) fn captured(&self, credits: u64) {
        self.captured.inc_by(credits);
    }
}

/// The service, bound and ready to serve.
pub struct App {
    listener: TcpListener,
    shared: Arc<Shared>,
}

/// What the MCP service runs on besides its configuration.
pub struct Deps {
    /// A listener bound beforehand; without one, `App::build` binds `MCP_ADDR`.
    pub listener: Option<TcpListener>,
    /// Core's routes when core runs in this process (`hub up`): tool calls reach the ledger
    /// through them instead of over HTTP at `CORE_URL`.
    pub core: Option<axum::Router>,
}

impl Deps {
    /// Nothing to open: the listener is bound by `App::build`.
    pub async fn open(_config: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            listener: None,
            core: None,
        })
    }
}

impl App {
    /// Binds the listener (unless `deps` brings one).
    pub async fn build(config: Config, deps: Deps) -> anyhow::Result<Self> {
        let listener = match deps.listener {
            Some(listener) => listener,
            None => TcpListener::bind(config.addr)
                .await
                .map_err(|e| anyhow::anyhow!("MCP_ADDR {}: cannot listen: {e}", config.addr))?,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        let shared = Arc::new(Shared {
            metrics: McpMetrics::new(),
            video_ids: video_ids::VideoIds::new(config.internal_token.expose_secret()),
            video_links: video_links::VideoLinks::new(
                config.internal_token.expose_secret(),
                &config.public_base_url,
                config.video_link_ttl_seconds,
            ),
            credential: hub_http::caller::credential_digest(config.internal_token.expose_secret()),
            core: match deps.core {
                Some(router) => core_client::Core::local(router),
                None => core_client::Core::new(http.clone(), &config.core_url),
            },
            http,
            config,
        });
        Ok(Self { listener, shared })
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
        let listener = axum::serve::ListenerExt::tap_io(self.listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, router(self.shared))
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// The routes: the two transports, health, readiness and metrics.
pub fn router(shared: Arc<Shared>) -> axum::Router {
    use axum::routing::get;
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };

    let factory = shared.clone();
    let http = StreamableHttpService::new(
        move || Ok(McpServer::new(factory.clone(), None)),
        Arc::new(LocalSessionManager::default()),
        // The gateway sets Host to this service's address and has checked the caller.
        StreamableHttpServerConfig::default()
            .disable_allowed_hosts()
            .with_max_request_body_bytes(shared.config.max_message_bytes),
    );
    let vouched = shared.clone();
    let metrics = shared.metrics.http.clone();
    let routes = axum::Router::new()
        .route("/api/mcp/ws", get(ws::upgrade))
        .nest_service("/mcp", http)
        .layer(axum::middleware::from_fn(session_end_is_no_content))
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let shared = vouched.clone();
                async move {
                    // Nobody reaches the transports without the gateway's word for who they are.
                    match identity::identify(request.headers(), &shared.credential) {
                        Ok(_) => next.run(request).await,
                        Err(error) => axum::response::IntoResponse::into_response(error),
                    }
                }
            },
        ))
        // The signed video links: the link is the credential, so no gateway vouching.
        .route("/api/mcp/v1/videos/{video_id}/content", get(content::serve))
        .route(
            "/health",
            get(|| async { axum::Json(serde_json::json!({ "status": "ok", "service": "mcp" })) }),
        )
        .route("/ready", get(ready))
        .with_state(shared);
    hub_telemetry::with_metrics(hub_http::with_request_ids_and_errors(routes), metrics)
}

/// `DELETE /mcp` ends a Streamable HTTP session; rmcp answers 202, which clients (the official
/// Python SDK) take for a failure: it is 204, as the transport's specification allows.
async fn session_end_is_no_content(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let ending = request.method() == http::Method::DELETE;
    let mut response = next.run(request).await;
    if ending && response.status() == http::StatusCode::ACCEPTED {
        *response.status_mut() = http::StatusCode::NO_CONTENT;
        response.headers_mut().remove(http::header::CONTENT_LENGTH);
        response.headers_mut().remove(http::header::CONTENT_TYPE);
        *response.body_mut() = axum::body::Body::empty();
    }
    response
}

/// Ready when core answers.
async fn ready(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let ok = shared.core.ready().await;
    let status = if ok {
        http::StatusCode::OK
    } else {
        http::StatusCode::SERVICE_UNAVAILABLE
    };
    let word = if ok { "ready" } else { "unavailable" };
    (
        status,
        axum::Json(serde_json::json!({ "status": word, "core": word })),
    )
        .into_response()
}
