//! `chat`: a chat completion held at its most (the prompt and the longest answer), streamed
//! back as progress notifications, and charged for what it used.

use rmcp::model::{CallToolResult, ProgressNotificationParam, ProgressToken};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::held::Held;
use super::{McpServer, figure};
use crate::prices::chat_cost;
use crate::results::{ChatAnswer, Failure, done, failed, failed_with};

/// How long a chat's hold lives.
const CHAT_HOLD_SECONDS: i64 = 900;

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

/// Tokens in `chars` characters of text, roughly (four characters a token), at least 1.
fn tokens_in(chars: usize) -> u64 {
    u64::try_from(chars / 4 + 1).unwrap_or(u64::MAX)
}

/// A chat checked and priced before anything is held.
struct ChatPlan {
    model: String,
    per_1k: i64,
    prompt_chars: usize,
    prompt_tokens: u64,
    /// The most it may cost: the prompt (about four characters a token) and the longest answer.
    hold: i64,
    /// What the provider is sent.
    body: Value,
}

impl ChatPlan {
    /// Credits for the prompt and `answer_tokens` more, never more than was held.
    fn cost(&self, answer_tokens: u64) -> i64 {
        chat_cost(
            self.prompt_tokens.saturating_add(answer_tokens),
            self.per_1k,
        )
        .min(self.hold)
    }
}

/// What a chat has streamed so far.
#[derive(Default)]
struct Streamed {
    answer: String,
    deltas: u64,
    /// The provider's count of tokens, when it gave one.
    usage: Option<u64>,
}

/// One server-sent line of the provider's stream.
enum Line {
    /// `data: [DONE]`.
    Done,
    /// A piece of the answer.
    Delta(String),
    /// Anything else (usage, an empty delta, a comment).
    Other,
}

impl Streamed {
    /// Reads one line (`data: {chunk}`), keeping its usage and its piece of the answer.
    fn read(&mut self, line: &str) -> Line {
        let Some(data) = line.strip_prefix("data:").map(str::trim) else {
            return Line::Other;
        };
        if data == "[DONE]" {
            return Line::Done;
        }
        let Ok(event) = serde_json::from_str::<Value>(data) else {
            return Line::Other;
        };
        if let Some(tokens) = event["usage"]["total_tokens"].as_u64() {
            self.usage = Some(tokens);
        }
        match event["choices"][0]["delta"]["content"].as_str() {
            Some(delta) if !delta.is_empty() => {
                self.answer.push_str(delta);
                self.deltas += 1;
                Line::Delta(delta.to_owned())
            }
            _ => Line::Other,
        }
    }

    /// What the chat has used so far: the prompt, and the answer streamed with it (each delta
    /// is at least one token; long ones count by their length).
    fn used(&self, plan: &ChatPlan) -> i64 {
        if self.deltas == 0 {
            return plan.cost(0);
        }
        plan.cost(self.deltas.max(tokens_in(self.answer.len())))
    }
}

impl McpServer {
    /// `chat`: holds the most it may cost, streams the answer and charges what it used.
    pub(super) async fn do_chat(
        &self,
        request: ChatRequest,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let identity = self.caller(&ctx)?;
        let _permit = match self.permit() {
            Ok(permit) => permit,
            Err(busy) => return Ok(busy),
        };
        let plan = self.plan_chat(request)?;
        let hold = plan.hold;
        let held = self
            .hold(
                identity,
                "chat",
                hold,
                CHAT_HOLD_SECONDS,
                json!({ "tool": "chat", "model": plan.model }),
                |available| {
                    format!(
                        "Not enough credits: this chat may cost up to {hold}, and {available} are available."
                    )
                },
            )
            .await;
        let mut held = match held {
            Ok(held) => held,
            Err(short) => return Ok(short),
        };
        let mut response = match self.send_chat(&plan, &ctx).await {
            Ok(response) => response,
            Err(failure) => {
                held.release().await;
                return Ok(failure);
            }
        };
        // The provider accepted the work: from here on the prompt is charged, and every token
        // streamed with it, whether the call finishes, breaks, is cancelled or is dropped.
        let mut streamed = Streamed::default();
        held.charge_if_dropped(streamed.used(&plan));
        let stream = self.stream_answer(&mut held, &mut response, &plan, &mut streamed, &ctx);
        if let Err((code, why)) = stream.await {
            let used = streamed.used(&plan);
            return Ok(end_chat_early(held, used, streamed.deltas, (code, &why)).await);
        }
        Ok(finish_chat(held, plan, streamed).await)
    }

    /// Checks a chat's messages and model and prices it, or -32602 before anything is held.
    fn plan_chat(&self, request: ChatRequest) -> Result<ChatPlan, ErrorData> {
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
        let prompt_chars = request
            .messages
            .iter()
            .fold(0usize, |sum, m| sum.saturating_add(m.content.len()));
        let prompt_tokens = tokens_in(prompt_chars);
        let hold = chat_cost(prompt_tokens.saturating_add(u64::from(max_tokens)), per_1k);
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
        Ok(ChatPlan {
            model: model_name,
            per_1k,
            prompt_chars,
            prompt_tokens,
            hold,
            body,
        })
    }

    /// Sends the chat to the provider: its streaming answer, or the tool error that says why
    /// not (nothing is charged then; the caller releases the hold).
    async fn send_chat(
        &self,
        plan: &ChatPlan,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<reqwest::Response, CallToolResult> {
        let request = self
            .shared
            .openai(reqwest::Method::POST, "/chat/completions")
            .json(&plan.body);
        let sent = tokio::select! {
            () = ctx.ct.cancelled() => {
                return Err(failed("cancelled", "Cancelled before the model answered; nothing was charged."));
            }
            sent = request.send() => sent,
        };
        match sent {
            Ok(response) if response.status().is_success() => Ok(response),
            Ok(response) => Err(failed(
                "provider_failed",
                format!(
                    "The chat service refused ({}); nothing was charged.",
                    response.status()
                ),
            )),
            Err(e) => Err(failed(
                "provider_unavailable",
                format!("The chat service is not answering ({e}); nothing was charged."),
            )),
        }
    }

    /// Reads the provider's server-sent events (`data: {chunk}` lines, then `data: [DONE]`)
    /// into `streamed`, passing each piece on as progress and keeping the hold's charge-if-
    /// dropped up to date. A cancelled or broken stream ends with its code and words.
    async fn stream_answer(
        &self,
        held: &mut Held,
        response: &mut reqwest::Response,
        plan: &ChatPlan,
        streamed: &mut Streamed,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<(), (&'static str, String)> {
        let progress_token = ctx.meta.get_progress_token();
        let mut pending = String::new();
        loop {
            let chunk = tokio::select! {
                () = ctx.ct.cancelled() => return Err(("cancelled", "Cancelled".to_owned())),
                chunk = response.chunk() => chunk,
            };
            let bytes = match chunk {
                Ok(Some(bytes)) => bytes,
                Ok(None) => return Ok(()),
                Err(e) => return Err(("provider_failed", format!("The chat stream broke ({e})"))),
            };
            pending.push_str(&String::from_utf8_lossy(&bytes));
            while let Some(end) = pending.find('\n') {
                let line = pending[..end].trim().to_owned();
                pending.drain(..=end);
                match streamed.read(&line) {
                    Line::Done => return Ok(()),
                    Line::Delta(delta) => {
                        held.charge_if_dropped(streamed.used(plan));
                        if let Some(token) = &progress_token {
                            report_delta(ctx, token, streamed.deltas, delta).await;
                        }
                    }
                    Line::Other => {}
                }
            }
        }
    }
}

/// Passes one piece of the answer on to the client as a progress notification.
async fn report_delta(
    ctx: &RequestContext<RoleServer>,
    token: &ProgressToken,
    deltas: u64,
    delta: String,
) {
    #[allow(clippy::cast_precision_loss)]
    let step = deltas as f64;
    let _ = ctx
        .peer
        .notify_progress(ProgressNotificationParam::new(token.clone(), step).with_message(delta))
        .await;
}

/// A chat the model finished: charged by the provider's count when it gave one, else by an
/// estimate, never more than was held.
async fn finish_chat(held: Held, plan: ChatPlan, streamed: Streamed) -> CallToolResult {
    let tokens = streamed.usage.unwrap_or_else(|| {
        tokens_in(plan.prompt_chars.saturating_add(streamed.answer.len()))
            .max(plan.prompt_tokens + streamed.deltas)
    });
    let cost = chat_cost(tokens, plan.per_1k).min(plan.hold);
    match held.capture(Some(cost)).await {
        Ok(settled) => done(&ChatAnswer {
            content: streamed.answer,
            model: plan.model,
            total_tokens: tokens,
            usage_reported: streamed.usage.is_some(),
            credits_charged: figure(&settled, "captured"),
            available_balance: figure(&settled, "available_balance"),
        }),
        Err(e) => failed(
            "charge_failed",
            format!("The answer came but could not be charged: {e}"),
        ),
    }
}

/// A chat the model had started ends before its answer did: what was used is charged.
async fn end_chat_early(
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
