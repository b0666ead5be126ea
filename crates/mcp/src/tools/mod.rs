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
use crate::prices::{VideoPrice, chat_cost};
use crate::results::{
    Balance, ChatAnswer, Failure, VideoMade, VideoStatus, done, failed, failed_with, output_schema,
};
use crate::video_ids::plain_provider_id;

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

/// What becomes of a hold whose call ends without settling it (the client cancelled or went
/// away, and the handler was dropped).
enum Unsettled {
    /// Nothing was produced: free it.
    Release,
    /// The provider accepted the work: charge what was used so far.
    Capture(i64),
    /// A video the provider accepted: follow it to its end and settle then.
    FollowVideo(String),
}

/// A hold for one call; dropped unsettled, it settles itself as `on_drop` says (a dropped video
/// is first asked to stop at the provider, and released if it did).
struct Held {
    shared: Arc<Shared>,
    identity: Identity,
    id: String,
    settled: bool,
    on_drop: Unsettled,
}

impl Held {
    /// From now on, a call that ends unsettled is charged `amount`.
    fn charge_if_dropped(&mut self, amount: i64) {
        self.on_drop = Unsettled::Capture(amount);
    }

    /// From now on, a call that ends unsettled follows the provider's video to its end.
    fn follow_if_dropped(&mut self, video: &str) {
        self.on_drop = Unsettled::FollowVideo(video.to_owned());
    }

    async fn capture(mut self, amount: Option<i64>) -> Result<Value, String> {
        self.settled = true;
        capture(&self.shared, &self.identity, &self.id, amount).await
    }

    async fn release(mut self) {
        self.settled = true;
        release(&self.shared, &self.identity, &self.id).await;
    }

    /// Gives the hold to a task that follows the video to its end and settles it then.
    fn follow(mut self, video: String) {
        self.settled = true;
        let (shared, identity, id) = (
            self.shared.clone(),
            self.identity.clone(),
            std::mem::take(&mut self.id),
        );
        let deadline = tokio::time::Instant::now() + shared.config.video_deadline;
        tokio::spawn(async move { follow_video(&shared, &identity, &id, &video, deadline).await });
    }
}

async fn capture(
    shared: &Shared,
    identity: &Identity,
    id: &str,
    amount: Option<i64>,
) -> Result<Value, String> {
    let answer = shared.core.capture(identity, id, amount).await?;
    if answer.status.is_success() {
        shared
            .metrics
            .captured(answer.body["captured"].as_u64().unwrap_or(0));
        Ok(answer.body)
    } else {
        Err(answer.message())
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

/// Captures in the background what a call that ended early used.
async fn capture_used(shared: &Shared, identity: &Identity, id: &str, amount: i64) {
    if let Err(e) = capture(shared, identity, id, Some(amount)).await {
        tracing::warn!(reservation = id, error = %e, "could not charge an ended call");
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
        let on_drop = std::mem::replace(&mut self.on_drop, Unsettled::Release);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            match on_drop {
                Unsettled::Release => release(&shared, &identity, &id).await,
                Unsettled::Capture(amount) => capture_used(&shared, &identity, &id, amount).await,
                // The client went away: as a cancellation, stopped if the provider can stop it.
                Unsettled::FollowVideo(video) if shared.cancel_video(&video).await => {
                    release(&shared, &identity, &id).await;
                }
                Unsettled::FollowVideo(video) => {
                    let deadline = tokio::time::Instant::now() + shared.config.video_deadline;
                    follow_video(&shared, &identity, &id, &video, deadline).await;
                }
            }
        });
    }
}

impl Shared {
    pub(crate) fn openai(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, format!("{}{path}", self.config.openai_base_url));
        match &self.config.openai_api_key {
            Some(key) => request.bearer_auth(hub_config::ExposeSecret::expose_secret(key)),
            None => request,
        }
    }

    /// The provider's word on a video (`id` is plain: checked when it came in).
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

    /// Asks the provider to stop a video; whether it confirmed it did.
    async fn cancel_video(&self, id: &str) -> bool {
        let answer = self
            .openai(reqwest::Method::DELETE, &format!("/videos/{id}"))
            .timeout(std::time::Duration::from_secs(30))
            .send()
            .await;
        match answer {
            Ok(response) if response.status().is_success() => true,
            Ok(response) => {
                tracing::info!(video = id, status = %response.status(), "the provider did not cancel a video");
                false
            }
            Err(e) => {
                tracing::warn!(video = id, error = %e, "cannot reach the provider to cancel a video");
                false
            }
        }
    }
}

/// How a video the provider accepted ends for its hold: captured when it is made, released when
/// it fails or the provider confirms it was cancelled. Past `deadline` the hub asks the provider
/// to stop it, and charges it unless the provider confirms.
async fn follow_video(
    shared: &Shared,
    identity: &Identity,
    hold: &str,
    video: &str,
    deadline: tokio::time::Instant,
) {
    loop {
        if tokio::time::Instant::now() >= deadline {
            if shared.cancel_video(video).await {
                release(shared, identity, hold).await;
            } else if let Err(e) = capture(shared, identity, hold, None).await {
                tracing::warn!(reservation = hold, error = %e, "could not charge an abandoned video");
            }
            return;
        }
        tokio::time::sleep(shared.config.video_poll).await;
        let Ok(status) = shared.video(video).await else {
            continue;
        };
        match status["status"].as_str().unwrap_or_default() {
            "completed" => {
                if let Err(e) = capture(shared, identity, hold, None).await {
                    tracing::warn!(reservation = hold, error = %e, "could not charge a finished video");
                }
                return;
            }
            "failed" | "cancelled" | "expired" => {
                release(shared, identity, hold).await;
                return;
            }
            _ => {}
        }
    }
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
        Ok(Held {
            shared: self.shared.clone(),
            identity,
            id: answer.body["reservation_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            settled: false,
            on_drop: Unsettled::Release,
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

    /// Fresh links to a video (a hub video id) for its owner.
    fn links(&self, video_id: &str, user: uuid::Uuid) -> crate::results::VideoLinks {
        let now = crate::video_links::unix_now();
        let (download_url, expires) = self.shared.video_links.link(video_id, user, now);
        let expires_at = i64::try_from(expires)
            .ok()
            .and_then(|seconds| chrono::DateTime::from_timestamp(seconds, 0))
            .unwrap_or_default();
        crate::results::VideoLinks {
            thumbnail_url: format!("{download_url}&variant=thumbnail"),
            download_url,
            download_expires_at: expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }

    /// The priced video a request names (the table's first when it names no size or length),
    /// or -32602 before anything is held.
    fn video_price(&self, request: &VideoRequest) -> Result<VideoPrice, ErrorData> {
        let prices = &self.shared.config.video_prices;
        let default = prices
            .first()
            .ok_or_else(|| ErrorData::internal_error("no videos are priced", None))?;
        let seconds = request.seconds.unwrap_or(default.seconds);
        let size = request.size.as_deref().unwrap_or(&default.size);
        prices
            .iter()
            .find(|p| p.seconds == seconds && p.size == size)
            .cloned()
            .ok_or_else(|| {
                let offered: Vec<String> = prices
                    .iter()
                    .map(|p| format!("{} {}s", p.size, p.seconds))
                    .collect();
                ErrorData::invalid_params(
                    format!(
                        "no {size} video of {seconds} seconds is offered; choose one of: {}",
                        offered.join(", ")
                    ),
                    None,
                )
            })
    }
}

/// Each tool's output schema: its result type, or a failure with a code.
fn declare_outputs(router: &mut ToolRouter<McpServer>) {
    let outputs = [
        ("get_balance", output_schema::<Balance>()),
        ("generate_video", output_schema::<VideoMade>()),
        ("get_video_status", output_schema::<VideoStatus>()),
        ("chat", output_schema::<ChatAnswer>()),
    ];
    for (tool, schema) in outputs {
        if let Some(route) = router.map.get_mut(tool) {
            route.attr.output_schema = Some(schema);
        }
    }
}

/// The tools' input schemas list what the price table offers, so a client sees the choices.
fn priced_schemas(router: &mut ToolRouter<McpServer>, config: &crate::Config) {
    let constrain =
        |router: &mut ToolRouter<McpServer>, tool: &str, field: &str, values: Vec<Value>| {
            let Some(route) = router.map.get_mut(tool) else {
                return;
            };
            let mut schema = (*route.attr.input_schema).clone();
            if let Some(property) = schema
                .get_mut("properties")
                .and_then(|p| p.get_mut(field))
                .and_then(Value::as_object_mut)
            {
                let mut values = values;
                values.dedup();
                // An optional field may still be left out or sent as null.
                values.push(Value::Null);
                property.insert("enum".into(), Value::Array(values));
            }
            route.attr.input_schema = Arc::new(schema);
        };
    let models = config.chat_models.iter().map(|m| json!(m.name)).collect();
    constrain(router, "chat", "model", models);
    let mut sizes: Vec<&str> = config
        .video_prices
        .iter()
        .map(|p| p.size.as_str())
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut seconds: Vec<u32> = config.video_prices.iter().map(|p| p.seconds).collect();
    seconds.sort_unstable();
    seconds.dedup();
    constrain(
        router,
        "generate_video",
        "size",
        sizes.into_iter().map(|s| json!(s)).collect(),
    );
    constrain(
        router,
        "generate_video",
        "seconds",
        seconds.into_iter().map(|s| json!(s)).collect(),
    );
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
        let Some(video) = self
            .shared
            .video_ids
            .open(identity.user_id, &request.video_id)
        else {
            let result = Ok(failed(
                "video_not_found",
                "No video of yours has this id: use the video_id generate_video gave you.",
            ));
            self.count("get_video_status", &result);
            return result;
        };
        let result = match self.shared.video(video).await {
            Ok(status) => {
                let state = status["status"].as_str().unwrap_or("unknown").to_owned();
                let links =
                    (state == "completed").then(|| self.links(&request.video_id, identity.user_id));
                Ok(done(&VideoStatus {
                    video_id: request.video_id,
                    status: state,
                    progress: status["progress"].as_f64(),
                    links,
                }))
            }
            Err(e) => Ok(failed("provider_unavailable", e)),
        };
        self.count("get_video_status", &result);
        result
    }
}

/// Tokens in `chars` characters of text, roughly (four characters a token), at least 1.
fn tokens_in(chars: usize) -> u64 {
    u64::try_from(chars / 4 + 1).unwrap_or(u64::MAX)
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
        if let Some(bad) = request
            .messages
            .iter()
            .find(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant"))
        {
            return Err(ErrorData::invalid_params(
                format!("role {:?} is not system, user or assistant", bad.role),
                None,
            ));
        }
        let config = &self.shared.config;
        let model_name = request.model.unwrap_or_else(|| config.chat_model.clone());
        let Some(model) = config.chat_models.iter().find(|m| m.name == model_name) else {
            let offered: Vec<&str> = config.chat_models.iter().map(|m| m.name.as_str()).collect();
            return Err(ErrorData::invalid_params(
                format!(
                    "model {model_name:?} is not offered; choose one of: {}",
                    offered.join(", ")
                ),
                None,
            ));
        };
        let per_1k = model.credits_per_1k;
        let max_tokens = request.max_tokens.unwrap_or(config.chat_max_tokens).max(1);
        // The hold: the prompt (about four characters a token) and the longest answer.
        let prompt_chars = request
            .messages
            .iter()
            .fold(0usize, |sum, m| sum.saturating_add(m.content.len()));
        let prompt_tokens = tokens_in(prompt_chars);
        let hold = chat_cost(prompt_tokens.saturating_add(u64::from(max_tokens)), per_1k);
        let mut held = match self
            .hold(
                identity,
                "chat",
                hold,
                900,
                json!({ "tool": "chat", "model": model_name }),
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
            "model": model_name,
            "messages": messages,
            "max_tokens": max_tokens,
            "stream": true,
            "stream_options": { "include_usage": true },
        });
        let sent = tokio::select! {
            () = ctx.ct.cancelled() => {
                held.release().await;
                return Ok(failed("cancelled", "Cancelled before the model answered; nothing was charged."));
            }
            sent = self.shared.openai(reqwest::Method::POST, "/chat/completions").json(&body).send() => sent,
        };
        let mut response = match sent {
            Ok(response) if response.status().is_success() => response,
            Ok(response) => {
                held.release().await;
                return Ok(failed(
                    "provider_failed",
                    format!(
                        "The chat service refused ({}); nothing was charged.",
                        response.status()
                    ),
                ));
            }
            Err(e) => {
                held.release().await;
                return Ok(failed(
                    "provider_unavailable",
                    format!("The chat service is not answering ({e}); nothing was charged."),
                ));
            }
        };
        // The provider accepted the work: from here on the prompt is charged, and every token
        // streamed with it, whether the call finishes, breaks, is cancelled or is dropped.
        let mut used = chat_cost(prompt_tokens, per_1k).min(hold);
        held.charge_if_dropped(used);
        // Server-sent events: `data: {chunk}` lines, then `data: [DONE]`.
        let progress_token = ctx.meta.get_progress_token();
        let mut pending = String::new();
        let mut answer = String::new();
        let mut deltas: u64 = 0;
        let mut usage: Option<u64> = None;
        let mut finished = false;
        while !finished {
            let chunk = tokio::select! {
                () = ctx.ct.cancelled() => {
                    return Ok(self.end_chat_early(held, used, deltas, ("cancelled", "Cancelled")).await);
                }
                chunk = response.chunk() => chunk,
            };
            let bytes = match chunk {
                Ok(Some(bytes)) => bytes,
                Ok(None) => break,
                Err(e) => {
                    let why = format!("The chat stream broke ({e})");
                    return Ok(self
                        .end_chat_early(held, used, deltas, ("provider_failed", &why))
                        .await);
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
                    deltas += 1;
                    // Each delta is at least one token; long ones count by their length.
                    let streamed = deltas.max(tokens_in(answer.len()));
                    used = chat_cost(prompt_tokens.saturating_add(streamed), per_1k).min(hold);
                    held.charge_if_dropped(used);
                    if let Some(token) = &progress_token {
                        #[allow(clippy::cast_precision_loss)]
                        let step = deltas as f64;
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
            tokens_in(prompt_chars.saturating_add(answer.len())).max(prompt_tokens + deltas)
        });
        let cost = chat_cost(tokens, per_1k).min(hold);
        match held.capture(Some(cost)).await {
            Ok(settled) => Ok(done(&ChatAnswer {
                content: answer,
                model: model_name,
                total_tokens: tokens,
                usage_reported: usage.is_some(),
                credits_charged: figure(&settled, "captured"),
                available_balance: figure(&settled, "available_balance"),
            })),
            Err(e) => Ok(failed(
                "charge_failed",
                format!("The answer came but could not be charged: {e}"),
            )),
        }
    }

    /// A chat the model had started ends before its answer did: what was used is charged.
    async fn end_chat_early(
        &self,
        held: Held,
        used: i64,
        deltas: u64,
        (code, why): (&str, &str),
    ) -> CallToolResult {
        match held.capture(Some(used)).await {
            Ok(settled) => {
                let charged = figure(&settled, "captured");
                failed_with(Failure {
                    code: code.into(),
                    message: format!(
                        "{why} after {deltas} streamed parts; {charged} credits were charged for the prompt and the answer so far."
                    ),
                    credits_charged: Some(charged),
                    available_balance: settled["available_balance"].as_i64(),
                })
            }
            Err(e) => failed(
                "charge_failed",
                format!("{why}; charging what was used failed: {e}"),
            ),
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
        let video = self.video_price(&request)?;
        let price = video.credits;
        let user = identity.user_id;
        let mut held = match self
            .hold(
                identity,
                "sora2",
                price,
                VIDEO_HOLD_SECONDS,
                json!({ "tool": "generate_video", "prompt": request.prompt,
                        "size": video.size, "seconds": video.seconds }),
                |available| {
                    format!(
                        "Not enough credits: this video costs {price}, and {available} are available."
                    )
                },
            )
            .await
        {
            Ok(held) => held,
            Err(short) => return Ok(short),
        };

        let job = json!({
            "model": "sora-2",
            "prompt": request.prompt,
            "seconds": video.seconds.to_string(),
            "size": video.size,
        });
        let submitted = self
            .shared
            .openai(reqwest::Method::POST, "/videos")
            .json(&job)
            .timeout(std::time::Duration::from_secs(30))
            .send()
            .await;
        let answer: Value = match submitted {
            Ok(response) if response.status().is_success() => {
                response.json().await.unwrap_or(Value::Null)
            }
            Ok(response) => {
                held.release().await;
                return Ok(failed(
                    "provider_failed",
                    format!(
                        "The video service refused the job ({}); nothing was charged.",
                        response.status()
                    ),
                ));
            }
            Err(e) => {
                held.release().await;
                return Ok(failed(
                    "provider_unavailable",
                    format!("The video service is not answering ({e}); nothing was charged."),
                ));
            }
        };
        let Some(id) = answer["id"]
            .as_str()
            .filter(|id| plain_provider_id(id))
            .map(str::to_owned)
        else {
            held.release().await;
            return Ok(failed(
                "provider_failed",
                "The video service gave no usable job id; nothing was charged.",
            ));
        };
        // The provider accepted the work: it is charged when it is made, whatever the client does.
        held.follow_if_dropped(&id);
        let video_id = self.shared.video_ids.issue(user, &id);
        let progress_token = ctx.meta.get_progress_token();
        let deadline = tokio::time::Instant::now() + self.shared.config.video_deadline;
        loop {
            tokio::select! {
                () = ctx.ct.cancelled() => {
                    let said = self.stop_video(held, id).await;
                    return Ok(failed("cancelled", format!("Cancelled. {said}")));
                }
                () = tokio::time::sleep(self.shared.config.video_poll) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                let said = self.stop_video(held, id).await;
                return Ok(failed(
                    "timed_out",
                    format!("The video took too long. {said}"),
                ));
            }
            let status = match self.shared.video(&id).await {
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
                            .with_message(format!("video {video_id}: {state}")),
                    )
                    .await;
            }
            match state.as_str() {
                "completed" => {
                    return match held.capture(None).await {
                        Ok(settled) => Ok(self.video_made(VideoMade {
                            links: self.links(&video_id, user),
                            video_id,
                            status: "completed".into(),
                            credits_charged: figure(&settled, "captured"),
                            available_balance: figure(&settled, "available_balance"),
                        })),
                        Err(e) => Ok(failed(
                            "charge_failed",
                            format!("The video is ready but could not be charged: {e}"),
                        )),
                    };
                }
                "failed" | "cancelled" | "expired" => {
                    held.release().await;
                    let reason = status["error"]["message"]
                        .as_str()
                        .unwrap_or(&state)
                        .to_owned();
                    return Ok(failed(
                        "provider_failed",
                        format!("The video failed ({reason}); nothing was charged."),
                    ));
                }
                _ => {}
            }
        }
    }

    /// Stops a video the provider accepted: released if the provider confirms it stopped;
    /// otherwise followed to its end and charged when it is made. What became of it, in words.
    async fn stop_video(&self, held: Held, id: String) -> &'static str {
        if self.shared.cancel_video(&id).await {
            held.release().await;
            "Stopped at the video service; nothing was charged."
        } else {
            held.follow(id);
            "The video service did not confirm it stopped the video: it is charged when it is made, and released if it fails."
        }
    }

    /// A made video's result, with a link to it as a resource a client can show.
    fn video_made(&self, made: VideoMade) -> CallToolResult {
        let link = rmcp::model::Resource::new(
            made.links.download_url.clone(),
            format!("{}.mp4", made.video_id),
        )
        .with_title("Your video")
        .with_description(format!(
            "The video, streamed by the hub; the link opens until {}.",
            made.links.download_expires_at
        ))
        .with_mime_type("video/mp4");
        let mut result = done(&made);
        result.content.push(ContentBlock::resource_link(link));
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
