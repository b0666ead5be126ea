//! The GPT Action's document, cut from the whole public API: the operations a GPT calls, the
//! schemas they reach, and one security scheme.

use serde_json::{Map, Value, json};

use super::BODY_TOKEN_SCHEMAS;
use crate::Config;

/// The operations a GPT uses, by path and method.
const GPT_OPERATIONS: [(&str, &str); 3] = [
    ("/api/auth/verify-session", "post"),
    ("/api/mcp/v1/credits/check", "post"),
    ("/api/mcp/v1/credits/deduct", "post"),
];

/// The GPT Action's document (the three operations, the code in the body, one service key), cut
/// from the whole document.
///
/// With `oauth` (an OAuth client for a GPT exists), the document is the OAuth form instead: check
/// and deduct under the hub's authorization server, the user named by their access token.
pub fn gpt_document(config: &Config, full: &Value, oauth: bool) -> Value {
    let base_url = config.public_base_url.as_str();
    let mut paths = Map::new();
    let security = if oauth {
        json!([{ "oauth": ["credits:read", "credits:spend"] }])
    } else {
        json!([{ "serviceKey": [] }])
    };
    let operations = GPT_OPERATIONS
        .iter()
        .filter(|(path, _)| !oauth || *path != "/api/auth/verify-session");
    for &(path, method) in operations {
        let mut operation = full["paths"][path][method].clone();
        // The GPT names users only through their codes (or its token): no X-User-ID, no
        // Idempotency-Key.
        if let Some(object) = operation.as_object_mut() {
            object.remove("parameters");
            object.insert("security".into(), security.clone());
        }
        let mut item = Map::new();
        item.insert(method.to_owned(), operation);
        paths.insert(path.to_owned(), Value::Object(item));
    }
    let mut schemas = Map::new();
    let mut wanted: Vec<String> = Vec::new();
    collect_refs(&Value::Object(paths.clone()), &mut wanted);
    while let Some(name) = wanted.pop() {
        if schemas.contains_key(&name) {
            continue;
        }
        let mut schema = full["components"]["schemas"][&name].clone();
        if !oauth && (BODY_TOKEN_SCHEMAS.contains(&name.as_str()) || name == "VerifyBody") {
            // In the GPT form the code is how the user is named: required.
            if let Some(required) = schema["required"].as_array_mut()
                && !required.contains(&json!("session_token"))
            {
                required.push(json!("session_token"));
            }
        }
        collect_refs(&schema, &mut wanted);
        schemas.insert(name, schema);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Smart AI Hub for GPTs",
            "version": env!("CARGO_PKG_VERSION"),
            "description": if oauth {
                "Check and spend the credits of the user who connected this GPT (OAuth: the user signs in to the hub and consents once)."
            } else {
                "Verify the code a user pasted after signing in with Google, then check and spend their credits. Send the user's code as session_token in every call."
            },
        },
        "servers": [{ "url": base_url }],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": if oauth {
                json!({ "oauth": full["components"]["securitySchemes"]["oauth"].clone() })
            } else {
                json!({ "serviceKey": full["components"]["securitySchemes"]["serviceKey"].clone() })
            },
        },
    })
}

fn collect_refs(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key == "$ref"
                    && let Some(name) = inner
                        .as_str()
                        .and_then(|r| r.strip_prefix("#/components/schemas/"))
                {
                    into.push(name.to_owned());
                } else {
                    collect_refs(inner, into);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, into)),
        _ => {}
    }
}
