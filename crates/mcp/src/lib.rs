//! The MCP service (port 3003): AI models as Model Context Protocol tools, billed in credits with
//! holds. It speaks MCP's JSON-RPC (the official `rmcp` SDK) over two transports, both behind the
//! gateway: WebSocket at `/api/mcp/ws` (one message per text frame; the adapter is ours) and
//! Streamable HTTP at `/mcp` (rmcp's). The gateway authenticates the caller and vouches for them
//! with the internal credential; this service trusts nothing else.
#![forbid(unsafe_code)]

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

use hub_config::{ConfigError, Env, ExposeSecret, SecretString};
use tokio::net::TcpListener;

pub use identity::Identity;
pub use tools::McpServer;

/// The MCP service's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `MCP_ADDR`, default `127.0.0.1:3003`.
    pub addr: SocketAddr,
    /// `CORE_URL`, default `http://127.0.0.1:3002`: the ledger, for balances and holds.
    pub core_url: String,
    /// `HUB_INTERNAL_TOKEN`: what the gateway presents, and what this service presents to core.
    pub internal_token: SecretString,
    /// `OPENAI_BASE_URL`, default `https://api.openai.com/v1`: an OpenAI-compatible API.
    pub openai_base_url: String,
    /// `OPENAI_API_KEY`.
    pub openai_api_key: Option<SecretString>,
    /// `MCP_VIDEO_PRICES`: the videos `generate_video` makes and what each costs, as
    /// `SIZE:SECONDS:CREDITS` entries; the first is the video made when the caller names no size
    /// or length. Default: 720x1280 and 1280x720 at 4, 8 and 12 seconds for 30, 60 and 90.
    pub video_prices: Vec<prices::VideoPrice>,
    /// `MCP_VIDEO_POLL_MILLISECONDS`, default 2000: how often a video job is asked how it goes.
    pub video_poll: Duration,
    /// `MCP_VIDEO_DEADLINE_SECONDS`, default 1800: how long a video may take before the hub gives
    /// up on it (cancels it at the provider; charged unless the provider confirms the cancel).
    pub video_deadline: Duration,
    /// `MCP_CHAT_MODELS`, default `gpt-4o-mini:2`: the models `chat` offers, each with its price
    /// in credits per 1,000 tokens (prompt and completion), rounded up per call.
    pub chat_models: Vec<prices::ChatModel>,
    /// `MCP_CHAT_MODEL`, default the first of `MCP_CHAT_MODELS`: the model `chat` uses unless
    /// asked for another.
    pub chat_model: String,
    /// `MCP_CHAT_MAX_TOKENS`, default 1024: the completion limit when the caller sets none.
    pub chat_max_tokens: u32,
    /// `MCP_MAX_CONCURRENT_CALLS`, default 4: tool calls in flight per connection.
    pub max_concurrent_calls: usize,
    /// `MCP_MAX_MESSAGE_BYTES`, default 1 MiB: the largest message a client may send.
    pub max_message_bytes: usize,
    /// `PUBLIC_BASE_URL`, default `http://localhost:3000` (the gateway): where the video links
    /// the tools answer point.
    pub public_base_url: String,
    /// `VIDEO_LINK_TTL_SECONDS`, default 3600 (1 to 604800): how long a video link opens.
    pub video_link_ttl_seconds: u64,
}

impl Config {
    /// The defaults, with the addresses and credential given (tests, `hub up`).
    pub fn defaults_for(core_url: String, internal_token: SecretString) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 3003)),
            core_url,
            internal_token,
            openai_base_url: "https://api.openai.com/v1".into(),
            openai_api_key: None,
            video_prices: prices::parse_video_prices(prices::DEFAULT_VIDEO_PRICES)
                .unwrap_or_default(),
            video_poll: Duration::from_secs(2),
            video_deadline: Duration::from_secs(1800),
            chat_models: prices::parse_chat_models(prices::DEFAULT_CHAT_MODELS).unwrap_or_default(),
            chat_model: "gpt-4o-mini".into(),
            chat_max_tokens: 1024,
            max_concurrent_calls: 4,
            max_message_bytes: 1024 * 1024,
            public_base_url: "http://localhost:3000".into(),
            video_link_ttl_seconds: 3600,
        }
    }

    /// Reads the variables above, with the internal credential given (`hub up` makes one).
    pub fn from_env_with_token(
        env: &Env,
        internal_token: SecretString,
    ) -> Result<Self, ConfigError> {
        let core_url = env
            .string_or("CORE_URL", "http://127.0.0.1:3002")
            .trim_end_matches('/')
            .to_owned();
        let mut config = Self::defaults_for(core_url, internal_token);
        config.addr = env.parse_or("MCP_ADDR", config.addr, "host:port")?;
        config.openai_base_url = env
            .string_or("OPENAI_BASE_URL", &config.openai_base_url)
            .trim_end_matches('/')
            .to_owned();
        config.openai_api_key = env.secret("OPENAI_API_KEY");
        if let Some(table) = env.raw("MCP_VIDEO_PRICES") {
            config.video_prices =
                prices::parse_video_prices(&table).map_err(|problem| ConfigError {
                    name: "MCP_VIDEO_PRICES".into(),
                    problem,
                    expected: "SIZE:SECONDS:CREDITS entries, e.g. 720x1280:4:30,1280x720:8:60"
                        .into(),
                })?;
        }
        config.video_poll = Duration::from_millis(env.parse_or(
            "MCP_VIDEO_POLL_MILLISECONDS",
            u64::try_from(config.video_poll.as_millis()).unwrap_or(u64::MAX),
            "milliseconds",
        )?);
        let deadline = env.parse_or(
            "MCP_VIDEO_DEADLINE_SECONDS",
            config.video_deadline.as_secs(),
            "seconds, 60 to 3300",
        )?;
        if !(60..=3300).contains(&deadline) {
            return Err(ConfigError {
                name: "MCP_VIDEO_DEADLINE_SECONDS".into(),
                problem: format!("{deadline} is out of range"),
                expected: "seconds, 60 to 3300 (a video's hold lives an hour)".into(),
            });
        }
        config.video_deadline = Duration::from_secs(deadline);
        if let Some(table) = env.raw("MCP_CHAT_MODELS") {
            config.chat_models =
                prices::parse_chat_models(&table).map_err(|problem| ConfigError {
                    name: "MCP_CHAT_MODELS".into(),
                    problem,
                    expected: "MODEL:CREDITS_PER_1K_TOKENS entries, e.g. gpt-4o-mini:2,gpt-4o:10"
                        .into(),
                })?;
        }
        config.chat_model = env.string_or(
            "MCP_CHAT_MODEL",
            config
                .chat_models
                .first()
                .map_or("gpt-4o-mini", |m| m.name.as_str()),
        );
        if !config
            .chat_models
            .iter()
            .any(|m| m.name == config.chat_model)
        {
            return Err(ConfigError {
                name: "MCP_CHAT_MODEL".into(),
                problem: format!("{} is not in MCP_CHAT_MODELS", config.chat_model),
                expected: "one of the models MCP_CHAT_MODELS prices".into(),
            });
        }
        config.chat_max_tokens =
            env.parse_or("MCP_CHAT_MAX_TOKENS", config.chat_max_tokens, "tokens")?;
        config.max_concurrent_calls = env
            .parse_or(
                "MCP_MAX_CONCURRENT_CALLS",
                config.max_concurrent_calls,
                "calls, 1 or more",
            )?
            .max(1);
        config.max_message_bytes = env.parse_or(
            "MCP_MAX_MESSAGE_BYTES",
            config.max_message_bytes,
            "a number of bytes",
        )?;
        config.public_base_url = env.public_base_url()?;
        config.video_link_ttl_seconds = env.parse_or(
            "VIDEO_LINK_TTL_SECONDS",
            config.video_link_ttl_seconds,
            "seconds, 1 to 604800",
        )?;
        if !(1..=604_800).contains(&config.video_link_ttl_seconds) {
            return Err(ConfigError {
                name: "VIDEO_LINK_TTL_SECONDS".into(),
                problem: format!("{} is out of range", config.video_link_ttl_seconds),
                expected: "seconds, 1 to 604800 (a week)".into(),
            });
        }
        Ok(config)
    }

    /// As above, with `HUB_INTERNAL_TOKEN` required.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Self::from_env_with_token(env, env.internal_token()?)
    }
}

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

/// What the MCP service runs on besides its configuration. It shares nothing in `hub up`: it
/// reaches the core over HTTP.
pub struct Deps {
    /// A listener bound beforehand; without one, `App::build` binds `MCP_ADDR`.
    pub listener: Option<TcpListener>,
}

impl Deps {
    /// Nothing to open: the listener is bound by `App::build`.
    pub async fn open(_config: &Config) -> anyhow::Result<Self> {
        Ok(Self { listener: None })
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
            core: core_client::Core::new(http.clone(), &config.core_url),
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
