//! The tools, each with an input schema and a price: a call holds its price in credits first,
//! captures it when the work is done and releases it when the work fails, is cancelled, or the
//! client goes away.

mod chat;
mod held;
mod provider;
mod schemas;
mod video;

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde_json::Value;
use tokio::sync::Semaphore;

use self::chat::ChatRequest;
use self::held::Held;
use self::schemas::{declare_outputs, priced_schemas};
use self::video::{VideoRequest, VideoStatusRequest};
use crate::Shared;
use crate::identity::{Identity, identify};
use crate::results::{Balance, Failure, done, failed, failed_with};

/// One MCP session (a WebSocket connection, or a Streamable HTTP session).
#[derive(Clone)]
pub struct McpServer {
    shared: Arc<Shared>,
    /// Fixed for a WebSocket connection; read from each request over Streamable HTTP.
    identity: Option<Identity>,
    calls: Arc<Semaphore>,
    tool_router: ToolRouter<Self>,
}

/// A number in a ledger answer.
fn figure(body: &Value, field: &str) -> i64 {
    body[field].as_i64().unwrap_or(0)
}

/// The ledger's refusal as a tool failure: its own error code, or `ledger_refused`.
fn refused_by_ledger(answer: &crate::core_client::Answer) -> CallToolResult {
    let code = answer.body["error"]["code"]
        .as_str()
        .unwrap_or("ledger_refused");
    failed(code, answer.message())
}

impl McpServer {
    /// A session; `identity` is fixed for a WebSocket connection.
    pub fn new(shared: Arc<Shared>, identity: Option<Identity>) -> Self {
        let calls = Arc::new(Semaphore::new(shared.config.max_concurrent_calls));
        let mut tool_router = Self::tool_router();
        priced_schemas(&mut tool_router, &shared.config);
        declare_outputs(&mut tool_router);
        Self {
            shared,
            identity,
            calls,
            tool_router,
        }
    }

    fn caller(&self, ctx: &RequestContext<RoleServer>) -> Result<Identity, ErrorData> {
        if let Some(identity) = &self.identity {
            return Ok(identity.clone());
        }
        let parts = ctx
            .extensions
            .get::<http::request::Parts>()
            .ok_or_else(|| ErrorData::internal_error("no caller for this request", None))?;
        identify(&parts.headers, &self.shared.credential)
            .map_err(|e| ErrorData::invalid_request(e.message, None))
    }

    /// A slot for one more call on this connection, or the tool error that says it is full.
    fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, CallToolResult> {
        self.calls.clone().try_acquire_owned().map_err(|_| {
            failed(
                "too_many_calls",
                "Too many calls in flight on this connection; wait for one to finish.",
            )
        })
    }

    /// Holds `cost` credits for a call, or the tool error that says why not (`short` words the
    /// shortfall, given the available balance).
    async fn hold(
        &self,
        identity: Identity,
        service: &str,
        cost: i64,
        ttl_seconds: i64,
        metadata: Value,
        short: impl FnOnce(&Value) -> String,
    ) -> Result<Held, CallToolResult> {
        let answer = self
            .shared
            .core
            .reserve(&identity, service, cost, ttl_seconds, metadata)
            .await
            .map_err(|e| failed("ledger_unavailable", e))?;
        if answer.status == reqwest::StatusCode::PAYMENT_REQUIRED {
            return Err(failed_with(Failure {
                code: "insufficient_credits".into(),
                message: short(&answer.body["available_balance"]),
                credits_charged: None,
                available_balance: answer.body["available_balance"].as_i64(),
            }));
        }
        if !answer.status.is_success() {
            return Err(refused_by_ledger(&answer));
        }
        let id = answer.body["reservation_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Ok(Held::new(self.shared.clone(), identity, id))
    }

    /// Counts a finished call of `tool` by its outcome.
    fn count(&self, tool: &'static str, result: &Result<CallToolResult, ErrorData>) {
        let outcome = match result {
            Ok(r) if r.is_error == Some(true) => "tool_error",
            Ok(_) => "ok",
            Err(_) => "protocol_error",
        };
        self.shared.metrics.call(tool, outcome);
    }
}

#[tool_router]
impl McpServer {
    /// Your credit balance.
    #[tool(
        description = "Your credit balance: balance, credits held for calls in progress, and what you may spend now. Free."
    )]
    async fn get_balance(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let identity = self.caller(&ctx)?;
        let result = match self.shared.core.balance(&identity).await {
            Ok(answer) if answer.status.is_success() => {
                match serde_json::from_value::<Balance>(answer.body) {
                    Ok(balance) => Ok(done(&balance)),
                    Err(e) => Ok(failed("ledger_unavailable", e.to_string())),
                }
            }
            Ok(answer) => Ok(refused_by_ledger(&answer)),
            Err(e) => Ok(failed("ledger_unavailable", e)),
        };
        self.count("get_balance", &result);
        result
    }

    /// Generates a video with Sora 2.
    #[tool(
        description = "Generate a video with Sora 2 from a prompt. Its price depends on its size and length (the operator's table; the input schema lists what is offered), charged only when the video is ready; reports progress while it renders. Cancelled, it is stopped at the provider and charged only if the provider cannot stop it."
    )]
    async fn generate_video(
        &self,
        Parameters(request): Parameters<VideoRequest>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let result = self.make_video(request, ctx).await;
        self.count("generate_video", &result);
        result
    }

    /// A chat completion, streamed as progress notifications.
    #[tool(
        description = "Ask a chat model. The answer streams as progress notifications and comes back whole; costs the model's price per 1,000 tokens used (prompt and answer), held up front from max_tokens and charged from the provider's reported usage. Once the model has started, a cancelled or broken call is charged for what was used (at least 1 credit)."
    )]
    async fn chat(
        &self,
        Parameters(request): Parameters<ChatRequest>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let result = self.do_chat(request, ctx).await;
        self.count("chat", &result);
        result
    }

    /// Where a video job stands.
    #[tool(
        description = "The status of one of your videos started with generate_video: queued, in_progress, completed (with its download URL) or failed. Free."
    )]
    async fn get_video_status(
        &self,
        Parameters(request): Parameters<VideoStatusRequest>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let identity = self.caller(&ctx)?;
        let result = Ok(self.video_status(request, &identity).await);
        self.count("get_video_status", &result);
        result
    }
}

/// How rmcp words a tool call whose arguments do not fit the tool's input type.
const BAD_ARGUMENTS: &str = "failed to deserialize parameters:";

#[tool_handler(router = self.tool_router)]
impl ServerHandler for McpServer {
    /// Arguments that do not fit a tool's input schema are the caller's mistake in the request,
    /// so they are answered with JSON-RPC -32602 (Invalid params) before anything is held; rmcp
    /// alone would answer them as a tool error. Failures of the work itself stay tool errors.
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let response = self
            .tool_router
            .call(ToolCallContext::new(self, request, context))
            .await?;
        if let CallToolResponse::Complete(result) = &response
            && result.is_error == Some(true)
            && let Some(text) = result.content.first().and_then(ContentBlock::as_text)
            && text.text.starts_with(BAD_ARGUMENTS)
        {
            return Err(ErrorData::invalid_params(text.text.clone(), None));
        }
        Ok(response)
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(rmcp::model::Implementation::new(
                "smart-ai-hub",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Smart AI Hub: AI models billed in prepaid credits. get_balance is free; generate_video holds its price and charges it only when the video is ready.",
            )
    }
}
