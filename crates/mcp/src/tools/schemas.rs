//! What the tool list tells a client beyond the input types: each tool's output schema, and
//! the choices the operator's price table offers.

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use serde_json::{Value, json};

use super::McpServer;
use crate::results::{Balance, ChatAnswer, VideoMade, VideoStatus, output_schema};

/// Each tool's output schema: its result type, or a failure with a code.
pub(super) fn declare_outputs(router: &mut ToolRouter<McpServer>) {
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
pub(super) fn priced_schemas(router: &mut ToolRouter<McpServer>, config: &crate::Config) {
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
