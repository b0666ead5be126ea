//! The tools, each with an input schema and a price: a call holds its price in credits first,
//! captures it when the work is done and releases it when the work fails, is cancelled, or the
//! client goes away.

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock,
    ProgressNotificationParam, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::Shared;
use crate::identity::{Identity, identify};

/// How long a video's hold lives: as long as a hold may.
const VIDEO_HOLD_SECONDS: i64 = 3600;

/// One MCP session (a WebSocket connection, or a Streamable HTTP session).
#[derive(Clone)]
pub struct McpServer {
    shared: Arc<Shared>,
    /// Fixed for a WebSocket connection; read from each request over Streamable HTTP.
    identity: Option<Identity>,
    calls: Arc<Semaphore>,
    tool_router: ToolRouter<Self>,
}

/// `generate_video`'s input.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct VideoRequest {
    /// What the video shows.
    pub prompt: String,
    /// Length in seconds (the provider's choice when absent).
    #[serde(default)]
    pub seconds: Option<u32>,
    /// Size, e.g. `1280x720` (the provider's choice when absent).
    #[serde(default)]
    pub size: Option<String>,
}

/// One message of a chat.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// `chat`'s input.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ChatRequest {
    /// The conversation so far, oldest first.
    pub messages: Vec<ChatMessage>,
    /// The model (the operator's default when absent).
    #[serde(default)]
    pub model: Option<String>,
    /// The most tokens the answer may have (the operator's default when absent).
    #[serde(default)]
    pub max_tokens: Option<u32>,
}

/// `get_video_status`'s input.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct VideoStatusRequest {
    /// The id `generate_video` returned.
    pub video_id: String,
}

fn tool_error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

fn tool_json(value: &Value) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(value.to_string())])
}

/// A hold that releases itself if it is dropped unsettled (the client went away mid-call).
struct Held {
    shared: Arc<Shared>,
    identity: Identity,
    id: String,
    settled: bool,
}

impl Held {
    async fn capture(mut self, amount: Option<i64>) -> Result<Value, String> {
        self.settled = true;
        let answer = self
            .shared
            .core
            .capture(&self.identity, &self.id, amount)
            .await?;
        if answer.status.is_success() {
            Ok(answer.body)
        } else {
            Err(answer.message())
        }
    }

    async fn release(mut self) {
        self.settled = true;
        release(&self.shared, &self.identity, &self.id).await;
    }
}

async fn release(shared: &Shared, identity: &Identity, id: &str) {
    match shared.core.release(identity, id).await {
        Ok(answer) if answer.status.is_success() => {}
        Ok(answer) => tracing::warn!(reservation = id, status = %answer.status, "release refused"),
        Err(e) => {
            tracing::warn!(reservation = id, error = %e, "could not release; the hold expires")
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (shared, identity, id) = (
            self.shared.clone(),
            self.identity.clone(),
            std::mem::take(&mut self.id),
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { release(&shared, &identity, &id).await });
        }
    }
}

impl McpServer {
    /// A session; `identity` is fixed for a WebSocket connection.
    pub fn new(shared: Arc<Shared>, identity: Option<Identity>) -> Self {
        let calls = Arc::new(Semaphore::new(shared.config.max_concurrent_calls));
        Self {
            shared,
            identity,
            calls,
            tool_router: Self::tool_router(),
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

    fn openai(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.shared.http.request(
            method,
            format!("{}{path}", self.shared.config.openai_base_url),
        );
        match &self.shared.config.openai_api_key {
            Some(key) => request.bearer_auth(hub_config::ExposeSecret::expose_secret(key)),
            None => request,
        }
    }

    async fn video(&self, id: &str) -> Result<Value, String> {
        let response = self
            .openai(reqwest::Method::GET, &format!("/videos/{id}"))
            .timeout(std::time::Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| format!("the video service is not answering: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("the video service answered {}", response.status()));
        }
        response.json().await.map_err(|e| e.to_string())
    }

    /// A slot for one more call on this connection, or the tool error that says it is full.
    fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, CallToolResult> {
        self.calls.clone().try_acquire_owned().map_err(|_| {
            tool_error("Too many calls in flight on this connection; wait for one to finish.")
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
            .map_err(tool_error)?;
        if answer.status == reqwest::StatusCode::PAYMENT_REQUIRED {
            return Err(tool_error(short(&answer.body["available_balance"])));
        }
        if !answer.status.is_success() {
            return Err(tool_error(answer.message()));
        }
        Ok(Held {
            shared: self.shared.clone(),
            identity,
            id: answer.body["reservation_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            settled: false,
        })
    }

    fn count(&self, tool: &'static str, result: &Result<CallToolResult, ErrorData>) {
        let outcome = match result {
            Ok(r) if r.is_error == Some(true) => "tool_error",
            Ok(_) => "ok",
            Err(_) => "protocol_error",
        };
        self.shared.metrics.call(tool, outcome);
    }

    fn download_url(&self, id: &str) -> String {
        format!("{}/videos/{id}/content", self.shared.config.openai_base_url)
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
            Ok(answer) if answer.status.is_success() => Ok(tool_json(&answer.body)),
            Ok(answer) => Ok(tool_error(answer.message())),
            Err(e) => Ok(tool_error(e)),
        };
        self.count("get_balance", &result);
        result
    }

    /// Generates a video with Sora 2.
    #[tool(
        description = "Generate a video with Sora 2 from a prompt. Costs the video price in credits (30 unless the operator set another), charged only when the video is ready; reports progress while it renders."
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
        description = "Ask a chat model. The answer streams as progress notifications and comes back whole; costs credits per 1,000 tokens used (prompt and answer), held up front from max_tokens and charged from the provider's reported usage."
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
        description = "The status of a video started with generate_video: queued, in_progress, completed (with its download URL) or failed. Free."
    )]
    async fn get_video_status(
        &self,
        Parameters(request): Parameters<VideoStatusRequest>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.caller(&ctx)?;
        let result = match self.video(&request.video_id).await {
            Ok(status) => {
                let mut answer = json!({
                    "video_id": request.video_id,
                    "status": status["status"],
                    "progress": status["progress"],
                });
                if status["status"] == "completed" {
                    answer["download_url"] = json!(self.download_url(&request.video_id));
                }
                Ok(tool_json(&answer))
            }
            Err(e) => Ok(tool_error(e)),
        };
        self.count("get_video_status", &result);
        result
    }
}

/// Credits for `tokens` at `per_1k` credits per 1,000 tokens, rounded up, at least 1.
fn chat_cost(tokens: u64, per_1k: i64) -> i64 {
    let per_1k = u64::try_from(per_1k).unwrap_or(1);
    i64::try_from((tokens * per_1k).div_ceil(1000))
        .unwrap_or(i64::MAX)
        .max(1)
}

impl McpServer {
    async fn do_chat(
        &self,
        request: ChatRequest,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let identity = self.caller(&ctx)?;
        let _permit = match self.permit() {
            Ok(permit) => permit,
            Err(busy) => return Ok(busy),
        };
        if request.messages.is_empty() {
            return Err(ErrorData::invalid_params(
                "messages must not be empty",
                None,
            ));
        }
        let config = &self.shared.config;
        let max_tokens = request.max_tokens.unwrap_or(config.chat_max_tokens).max(1);
        // The hold: the prompt (about four characters a token) and the longest answer.
        let prompt_chars: usize = request.messages.iter().map(|m| m.content.len()).sum();
        let estimate =
            u64::try_from(prompt_chars / 4 + 1).unwrap_or(u64::MAX) + u64::from(max_tokens);
        let hold = chat_cost(estimate, config.chat_price_per_1k_tokens);
        let model = request.model.unwrap_or_else(|| config.chat_model.clone());
        let held = match self
            .hold(
                identity,
                "chat",
                hold,
                900,
                json!({ "tool": "chat", "model": model }),
                |available| {
                    format!(
                        "Not enough credits: this chat may cost up to {hold}, and {available} are available."
                    )
                },
            )
            .await
        {
            Ok(held) => held,
            Err(short) => return Ok(short),
        };
        let messages: Vec<Value> = request
            .messages
            .iter()
            .map(|m| json!({ "role": m.role, "content": m.content }))
            .collect();
        let body = json!({
            "model": model,
            "messages": messages,
            "max_tokens": max_tokens,
            "stream": true,
            "stream_options": { "include_usage": true },
        });
        let sent = tokio::select! {
            () = ctx.ct.cancelled() => {
                held.release().await;
                return Ok(tool_error("Cancelled; nothing was charged."));
            }
            sent = self.openai(reqwest::Method::POST, "/chat/completions").json(&body).send() => sent,
        };
        let mut response = match sent {
            Ok(response) if response.status().is_success() => response,
            Ok(response) => {
                held.release().await;
                return Ok(tool_error(format!(
                    "The chat service refused ({}); nothing was charged.",
                    response.status()
                )));
            }
            Err(e) => {
                held.release().await;
                return Ok(tool_error(format!(
                    "The chat service is not answering ({e}); nothing was charged."
                )));
            }
        };
        // Server-sent events: `data: {chunk}` lines, then `data: [DONE]`.
        let progress_token = ctx.meta.get_progress_token();
        let mut pending = String::new();
        let mut answer = String::new();
        let mut usage: Option<u64> = None;
        let mut finished = false;
        let mut step = 0.0;
        while !finished {
            let chunk = tokio::select! {
                () = ctx.ct.cancelled() => {
                    held.release().await;
                    return Ok(tool_error("Cancelled; nothing was charged."));
                }
                chunk = response.chunk() => chunk,
            };
            let bytes = match chunk {
                Ok(Some(bytes)) => bytes,
                Ok(None) => break,
                Err(e) => {
                    held.release().await;
                    return Ok(tool_error(format!(
                        "The chat stream broke ({e}); nothing was charged."
                    )));
                }
            };
            pending.push_str(&String::from_utf8_lossy(&bytes));
            while let Some(end) = pending.find('\n') {
                let line = pending[..end].trim().to_owned();
                pending.drain(..=end);
                let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                    continue;
                };
                if data == "[DONE]" {
                    finished = true;
                    break;
                }
                let Ok(event) = serde_json::from_str::<Value>(data) else {
                    continue;
                };
                if let Some(tokens) = event["usage"]["total_tokens"].as_u64() {
                    usage = Some(tokens);
                }
                if let Some(delta) = event["choices"][0]["delta"]["content"].as_str()
                    && !delta.is_empty()
                {
                    answer.push_str(delta);
                    if let Some(token) = &progress_token {
                        step += 1.0;
                        let _ = ctx
                            .peer
                            .notify_progress(
                                ProgressNotificationParam::new(token.clone(), step)
                                    .with_message(delta.to_owned()),
                            )
                            .await;
                    }
                }
            }
        }
        // The provider's count when it gave one; else an estimate, never more than was held.
        let tokens = usage.unwrap_or_else(|| {
            u64::try_from((prompt_chars + answer.len()) / 4 + 1).unwrap_or(u64::MAX)
        });
        let cost = chat_cost(tokens, config.chat_price_per_1k_tokens).min(hold);
        match held.capture(Some(cost)).await {
            Ok(settled) => {
                self.shared
                    .metrics
                    .captured(settled["captured"].as_u64().unwrap_or(0));
                Ok(tool_json(&json!({
                    "content": answer,
                    "model": model,
                    "total_tokens": tokens,
                    "usage_reported": usage.is_some(),
                    "credits_charged": settled["captured"],
                    "available_balance": settled["available_balance"],
                })))
            }
            Err(e) => Ok(tool_error(format!(
                "The answer came but could not be charged: {e}"
            ))),
        }
    }

    async fn make_video(
        &self,
        request: VideoRequest,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let identity = self.caller(&ctx)?;
        let _permit = match self.permit() {
            Ok(permit) => permit,
            Err(busy) => return Ok(busy),
        };
        if request.prompt.trim().is_empty() {
            return Err(ErrorData::invalid_params("prompt must not be empty", None));
        }
        let price = self.shared.config.video_price;
        let held = match self
            .hold(
                identity,
                "sora2",
                price,
                VIDEO_HOLD_SECONDS,
                json!({ "tool": "generate_video", "prompt": request.prompt }),
                |available| {
                    format!(
                        "Not enough credits: a video costs {price}, and {available} are available."
                    )
                },
            )
            .await
        {
            Ok(held) => held,
            Err(short) => return Ok(short),
        };

        let mut job = json!({ "model": "sora-2", "prompt": request.prompt });
        if let Some(seconds) = request.seconds {
            job["seconds"] = json!(seconds.to_string());
        }
        if let Some(size) = &request.size {
            job["size"] = json!(size);
        }
        let submitted = self
            .openai(reqwest::Method::POST, "/videos")
            .json(&job)
            .timeout(std::time::Duration::from_secs(30))
            .send()
            .await;
        let video: Value = match submitted {
            Ok(response) if response.status().is_success() => {
                response.json().await.unwrap_or(Value::Null)
            }
            Ok(response) => {
                held.release().await;
                return Ok(tool_error(format!(
                    "The video service refused the job ({}); nothing was charged.",
                    response.status()
                )));
            }
            Err(e) => {
                held.release().await;
                return Ok(tool_error(format!(
                    "The video service is not answering ({e}); nothing was charged."
                )));
            }
        };
        let Some(id) = video["id"].as_str().map(str::to_owned) else {
            held.release().await;
            return Ok(tool_error(
                "The video service gave no job id; nothing was charged.",
            ));
        };
        let progress_token = ctx.meta.get_progress_token();
        loop {
            tokio::select! {
                () = ctx.ct.cancelled() => {
                    held.release().await;
                    let _ = self.openai(reqwest::Method::DELETE, &format!("/videos/{id}")).send().await;
                    return Ok(tool_error("Cancelled; nothing was charged."));
                }
                () = tokio::time::sleep(self.shared.config.video_poll) => {}
            }
            let status = match self.video(&id).await {
                Ok(status) => status,
                Err(e) => {
                    tracing::warn!(video = %id, error = %e, "polling a video failed; trying again");
                    continue;
                }
            };
            let state = status["status"].as_str().unwrap_or("unknown").to_owned();
            if let Some(token) = &progress_token {
                let progress = status["progress"].as_f64().unwrap_or(0.0);
                let _ = ctx
                    .peer
                    .notify_progress(
                        ProgressNotificationParam::new(token.clone(), progress)
                            .with_total(100.0)
                            .with_message(format!("video {id}: {state}")),
                    )
                    .await;
            }
            match state.as_str() {
                "completed" => {
                    return match held.capture(None).await {
                        Ok(settled) => {
                            self.shared
                                .metrics
                                .captured(settled["captured"].as_u64().unwrap_or(0));
                            Ok(tool_json(&json!({
                            "video_id": id,
                            "status": "completed",
                            "download_url": self.download_url(&id),
                            "credits_charged": settled["captured"],
                            "available_balance": settled["available_balance"],
                            })))
                        }
                        Err(e) => Ok(tool_error(format!(
                            "The video is ready but could not be charged: {e}"
                        ))),
                    };
                }
                "failed" | "cancelled" | "expired" => {
                    held.release().await;
                    let reason = status["error"]["message"]
                        .as_str()
                        .unwrap_or(&state)
                        .to_owned();
                    return Ok(tool_error(format!(
                        "The video failed ({reason}); nothing was charged."
                    )));
                }
                _ => {}
            }
        }
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
