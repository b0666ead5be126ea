//! What the tools answer. Each tool's result is a type here, and its JSON Schema is the tool's
//! `outputSchema`: either the result or a [`ToolFailure`], both objects. A result goes out as
//! `structuredContent` and, for clients that read only text, as the same JSON in a text item; a
//! failure's text item is its message, for a person, and its `structuredContent` carries a code,
//! for a program.

use std::sync::Arc;

use rmcp::model::{CallToolResult, ContentBlock, JsonObject};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `get_balance`: the caller's credits.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Balance {
    /// The user whose credits these are.
    pub user_id: String,
    /// Their balance in credits.
    pub balance: i64,
    /// Credits held for calls in progress.
    pub held: i64,
    /// What they may spend now: `balance - held`.
    pub available_balance: i64,
}

/// Where a finished video can be opened: links on the hub that need no headers, for its owner,
/// until they expire.
#[derive(Debug, Serialize, JsonSchema)]
pub struct VideoLinks {
    /// The video (MP4), streamed by the hub; `Range` requests work, so players can seek.
    pub download_url: String,
    /// Its thumbnail image.
    pub thumbnail_url: String,
    /// When both links stop opening (RFC 3339); `get_video_status` gives fresh ones.
    #[schemars(extend("format" = "date-time"))]
    pub download_expires_at: String,
}

/// `generate_video`: a finished, charged video.
#[derive(Debug, Serialize, JsonSchema)]
pub struct VideoMade {
    /// The video's id, for `get_video_status`.
    pub video_id: String,
    /// Always `completed`.
    pub status: String,
    /// Where to open it.
    #[serde(flatten)]
    pub links: VideoLinks,
    /// Credits this video cost.
    pub credits_charged: i64,
    /// What the caller may spend now.
    pub available_balance: i64,
}

/// `get_video_status`: where a video stands.
#[derive(Debug, Serialize, JsonSchema)]
pub struct VideoStatus {
    /// The video's id.
    pub video_id: String,
    /// `queued`, `in_progress`, `completed`, `failed`, `cancelled` or `expired`.
    pub status: String,
    /// Percent done, when the provider says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    /// Where to open it, once it is completed.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub links: Option<VideoLinks>,
}

/// `chat`: the model's whole answer and what it cost.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ChatAnswer {
    /// The answer.
    pub content: String,
    /// The model that answered.
    pub model: String,
    /// Tokens charged for: prompt and answer.
    pub total_tokens: u64,
    /// Whether the count is the provider's (else the hub's estimate).
    pub usage_reported: bool,
    /// Credits this chat cost.
    pub credits_charged: i64,
    /// What the caller may spend now.
    pub available_balance: i64,
}

/// A tool call that did not do its work.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ToolFailure {
    /// What went wrong.
    pub error: Failure,
}

/// What went wrong, for a program and for a person.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Failure {
    /// A stable, machine-readable code: `insufficient_credits`, `app_spending_cap` or another
    /// refusal of the ledger's (its error code, as it gave it), `provider_failed`,
    /// `provider_unavailable`, `cancelled`, `timed_out`, `charge_failed`, `video_not_found`,
    /// `too_many_calls`, `ledger_unavailable`.
    pub code: String,
    /// What happened, for a person.
    pub message: String,
    /// Credits charged all the same (a chat cancelled after the model started).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits_charged: Option<i64>,
    /// What the caller may spend now, where it explains the failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_balance: Option<i64>,
}

/// Either, as an output schema says (only its schema is used).
#[allow(dead_code)]
#[derive(Serialize, JsonSchema)]
#[serde(untagged)]
enum Outcome<T> {
    Done(T),
    Failed(ToolFailure),
}

/// The output schema of a tool answering `T`: `T` or a [`ToolFailure`], an object either way.
pub fn output_schema<T: JsonSchema>() -> Arc<JsonObject> {
    let generator = schemars::generate::SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator();
    let schema = generator.into_root_schema_for::<Outcome<T>>();
    let mut object = match serde_json::to_value(schema) {
        Ok(Value::Object(object)) => object,
        _ => JsonObject::new(),
    };
    object.remove("title");
    object.insert("type".into(), Value::String("object".into()));
    Arc::new(object)
}

/// A tool's result: structured, and the same JSON as text.
pub fn done<T: Serialize>(result: &T) -> CallToolResult {
    CallToolResult::structured(serde_json::to_value(result).unwrap_or(Value::Null))
}

/// A tool's failure: the message as text, the code and the message structured.
pub fn failed(code: impl Into<String>, message: impl Into<String>) -> CallToolResult {
    failed_with(Failure {
        code: code.into(),
        message: message.into(),
        credits_charged: None,
        available_balance: None,
    })
}

/// As [`failed`], with the figures that explain it.
pub fn failed_with(failure: Failure) -> CallToolResult {
    let text = ContentBlock::text(failure.message.clone());
    let structured = serde_json::to_value(ToolFailure { error: failure }).unwrap_or(Value::Null);
    let mut result = CallToolResult::error(vec![text]);
    result.structured_content = Some(structured);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure_code(result: &CallToolResult) -> Option<&str> {
        result.structured_content.as_ref()?["error"]["code"].as_str()
    }

    #[test]
    fn output_schemas_are_objects_that_admit_a_result_or_a_failure() {
        let schema = output_schema::<VideoStatus>();
        assert_eq!(schema["type"], "object");
        let either = schema["anyOf"].as_array().expect("anyOf");
        assert_eq!(either.len(), 2, "{schema:?}");
        let failed = failed("cancelled", "Cancelled.");
        assert_eq!(failure_code(&failed), Some("cancelled"));
        assert_eq!(failed.is_error, Some(true));
        assert_eq!(
            failed.content[0].as_text().map(|t| t.text.as_str()),
            Some("Cancelled.")
        );
    }
}
