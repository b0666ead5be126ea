//! The OpenAPI 3.1 documents of the public API.
//!
//! The paths and schemas come from the services' own routers (`utoipa-axum` registers each route
//! with its operation, so a service cannot serve a route its document lacks), which each service
//! answers at its own `GET /openapi.json` and the gateway fetches once ([`services`]); it adds
//! its own routes, the servers, the security schemes, the errors it answers itself (401, 403, 413,
//! 429, 502, 503, 504), the GPT-callable `session_token` fields and the `x-openai-*` markers.
//!
//! `GET /openapi.json` is the whole public API. `GET /openapi.gpt.json` is what a ChatGPT GPT
//! Action needs and nothing else: verify a pasted code, check and deduct credits with the code in
//! the body, under one static service key.

mod gpt;
mod services;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use utoipa::OpenApi;

pub use gpt::gpt_document;
pub(crate) use services::Documents;

use crate::{AppState, Config};

/// A session code as the auth service makes it (`looks_like_token`): anything else is refused.
const SESSION_TOKEN_PATTERN: &str = "^VERIFIED-[A-Za-z0-9]{32}$";

/// Operations that spend, hold or return credits: ChatGPT asks the user before it calls them.
const CONSEQUENTIAL: [&str; 5] = [
    "deductCredits",
    "refundCredits",
    "grantCredits",
    "reserveCredits",
    "captureReservation",
];

/// Operations whose bodies may carry the user's code as `session_token` (the GPT-callable form).
const BODY_TOKEN_SCHEMAS: [&str; 3] = ["CheckBody", "DeductBody", "ReserveBody"];

#[derive(OpenApi)]
#[openapi(paths(health, crate::proxy::ready, full, gpt, crate::pages::privacy))]
struct GatewayApi;

/// `GET /health`: the gateway is up.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "operations",
    summary = "Whether the gateway is up",
    description = "Answers 200 while the gateway process runs.",
    responses((status = 200, description = "Up.", body = Object)),
    security(())
)]
pub async fn health() -> axum::Json<Value> {
    axum::Json(json!({ "status": "ok", "service": "gateway" }))
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "getOpenApi",
    tag = "operations",
    summary = "This document",
    description = "The OpenAPI 3.1 document of the whole public API.",
    responses((status = 200, description = "The document.", body = Object)),
    security(())
)]
pub async fn full(State(state): State<AppState>) -> Response {
    match services::documents(&state).await {
        Ok(documents) => axum::Json(&documents.full).into_response(),
        Err(error) => error.into_response(),
    }
}

/// `GET /openapi.gpt.json`.
#[utoipa::path(
    get,
    path = "/openapi.gpt.json",
    operation_id = "getGptOpenApi",
    tag = "operations",
    summary = "The document for a ChatGPT GPT Action",
    description = "The operations a GPT needs, in the form a GPT Action can call: the user's code in the body, one static service key. Paste it into the GPT editor.",
    responses((status = 200, description = "The document.", body = Object)),
    security(())
)]
pub async fn gpt(State(state): State<AppState>) -> Response {
    match services::documents(&state).await {
        Ok(documents) => {
            let oauth = services::gpt_has_oauth_client(&state).await;
            axum::Json(gpt_document(&state.config, &documents.full, oauth)).into_response()
        }
        Err(error) => error.into_response(),
    }
}

/// The whole public API, as this gateway serves it over the services' own documents.
pub fn document(config: &Config, services: Vec<utoipa::openapi::OpenApi>) -> Value {
    let mut api = GatewayApi::openapi();
    for service in services {
        api.merge(service);
    }
    let mut doc = serde_json::to_value(&api).unwrap_or_else(|_| json!({}));
    doc["openapi"] = json!("3.1.0");
    doc["info"] = json!({
        "title": "Smart AI Hub",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "Sign-in with Google and prepaid credits for AI services. Users sign in through /auth/google and paste the code from the success page; services verify it, check and deduct credits.",
    });
    doc["servers"] = json!([{ "url": config.public_base_url }]);
    add_metrics_path(&mut doc);
    add_video_content_path(&mut doc);
    add_security_schemes(&mut doc, &config.public_base_url);
    add_gateway_errors(&mut doc);
    add_body_tokens(&mut doc);
    add_return_targets(&mut doc, &config.return_to_allowlist);
    doc
}

/// `/metrics` is added to every service by the telemetry crate, outside the routers above.
fn add_metrics_path(doc: &mut Value) {
    doc["paths"]["/metrics"] = json!({
        "get": {
            "tags": ["operations"],
            "operationId": "getMetrics",
            "summary": "Prometheus metrics",
            "description": "Requests by route class and status, upstream latency and rate-limit rejections, in the Prometheus text format.",
            "responses": { "200": {
                "description": "The metrics.",
                "content": { "text/plain": { "schema": { "type": "string" } } }
            } },
            "security": [{}]
        }
    });
}

/// The MCP service's signed video links (it has no router of its own in this document).
fn add_video_content_path(doc: &mut Value) {
    let query = |name: &str, description: &str, schema: Value| json!({ "name": name, "in": "query", "required": true, "description": description, "schema": schema });
    let file = |description: &str| {
        json!({
            "description": description,
            "headers": {
                "Content-Disposition": { "schema": { "type": "string" }, "description": "inline, with the file's name." },
                "Accept-Ranges": { "schema": { "type": "string" }, "description": "bytes" }
            },
            "content": {
                "video/mp4": { "schema": { "type": "string", "format": "binary" } },
                "image/webp": { "schema": { "type": "string", "format": "binary" } },
                "image/jpeg": { "schema": { "type": "string", "format": "binary" } }
            }
        })
    };
    doc["paths"]["/api/mcp/v1/videos/{video_id}/content"] = json!({
        "get": {
            "tags": ["mcp"],
            "operationId": "getVideoContent",
            "summary": "Open a video made with the MCP tools",
            "description": "The download_url of generate_video and get_video_status: no headers needed; opens only the video and owner it was signed for, until it expires. The hub streams the provider's file, Range included. variant=thumbnail gives the thumbnail.",
            "parameters": [
                {
                    "name": "video_id", "in": "path", "required": true, "description": "The video_id the tool gave.",
                    "schema": { "type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}\\.[A-Za-z0-9_-]{22}$" }
                },
                query("user", "The video's owner, as the link names them.", json!({ "type": "string", "format": "uuid" })),
                query("expires", "When the link stops opening (Unix seconds).", json!({ "type": "integer", "minimum": 0 })),
                query(
                    "signature",
                    "The hub's signature over the video, the user and the expiry.",
                    json!({ "type": "string", "pattern": "^[A-Za-z0-9_-]{22}$" }),
                ),
                { "name": "variant", "in": "query", "required": false, "description": "video (the default), thumbnail or spritesheet.",
                  "schema": { "type": "string", "enum": ["video", "thumbnail", "spritesheet"] } },
                { "name": "Range", "in": "header", "required": false, "description": "A byte range, e.g. bytes=0-1023.", "schema": { "type": "string" } }
            ],
            "responses": {
                "200": file("The file."),
                "206": file("The range asked for."),
                "400": error_response("variant is not one of video, thumbnail, spritesheet."),
                "403": error_response("Not a link the hub made for this video and user (invalid_link)."),
                "410": error_response("The link has expired (link_expired), or the provider no longer has the video (video_gone)."),
                "404": error_response("Not a video link's address."),
                "416": error_response("The range is not in the file.")
            },
            "security": [{}]
        }
    });
}

/// The OAuth 2.1 authorization code flow, as a GPT Action's "OAuth" authentication reads it.
fn oauth_scheme(base_url: &str) -> Value {
    json!({
        "type": "oauth2",
        "description": "The hub's own authorization server: the user signs in (Google, or email and password) and consents; the app then sends Authorization: Bearer <access token>.",
        "flows": { "authorizationCode": {
            "authorizationUrl": format!("{base_url}/oauth/authorize"),
            "tokenUrl": format!("{base_url}/oauth/token"),
            "refreshUrl": format!("{base_url}/oauth/token"),
            "scopes": {
                "credits:read": "See the user's credit balance and history",
                "credits:spend": "Spend the user's credits",
                "mcp:tools": "Use the hub's AI tools (paid tools spend credits)",
            }
        }}
    })
}

fn add_security_schemes(doc: &mut Value, base_url: &str) {
    doc["components"]["securitySchemes"] = json!({
        "oauth": oauth_scheme(base_url),
        "sessionToken": {
            "type": "apiKey", "in": "header", "name": "X-Session-Token",
            "description": "An end user's verification code (VERIFIED-…), from the sign-in success page. Also accepted as Authorization: Bearer VERIFIED-…."
        },
        "serviceKey": {
            "type": "http", "scheme": "bearer", "bearerFormat": "hub_sk_…",
            "description": "A service key from `hub service-key create` (also accepted as X-API-Key). It acts for the user in X-User-ID within its scopes; a key with the gpt scope acts only through the user's session_token."
        },
        "bearerJwt": {
            "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "An end user's access token from /api/auth/login or /api/auth/refresh."
        }
    });
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } }
    })
}

/// The answers the gateway gives itself, on every operation where they can happen.
fn add_gateway_errors(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let route = crate::routes::forwarded(path);
        let proxied = route.is_some();
        let vouched = route.is_some_and(crate::routes::Route::vouched);
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for operation in item.values_mut() {
            let Some(operation) = operation.as_object_mut() else {
                continue;
            };
            let id = operation
                .get("operationId")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            operation.insert(
                "x-openai-isConsequential".into(),
                json!(CONSEQUENTIAL.contains(&id.as_str())),
            );
            let has_body = operation.contains_key("requestBody");
            // Query and path parameters the services check (limit, cursor, a reservation id).
            let checked_parameters = operation
                .get("parameters")
                .and_then(Value::as_array)
                .is_some_and(|all| all.iter().any(|p| p["in"] == "query" || p["in"] == "path"));
            let responses = operation
                .entry("responses")
                .or_insert_with(|| json!({}))
                .as_object_mut();
            let Some(responses) = responses else { continue };
            let mut add = |status: &str, description: &str| {
                responses
                    .entry(status.to_owned())
                    .or_insert_with(|| error_response(description));
            };
            match (has_body, vouched) {
                (true, true) => add("400", "The body is not JSON, or X-User-ID is not a UUID."),
                (true, false) => add("400", "The body is not JSON."),
                (false, true) => add("400", "X-User-ID is not a UUID."),
                (false, false) => {}
            }
            if has_body {
                add("413", "The body is larger than the limit.");
                add("415", "The body is not sent as application/json.");
                add("422", "A field is missing or not valid.");
            } else if checked_parameters && vouched {
                add("422", "A parameter is not valid.");
            }
            if vouched {
                add("401", "No credential, or one that is not valid.");
                add("403", "The caller may not do this, or not for this user.");
            }
            if proxied {
                add("429", "Too many requests; retry after Retry-After seconds.");
                add("502", "The service behind the gateway is not answering.");
                add(
                    "503",
                    "A store the hub needs is unavailable; retry after Retry-After seconds.",
                );
                add("504", "The service behind the gateway took too long.");
            }
        }
    }
}

/// The GPT-callable form: check and deduct also take the user's code as `session_token`.
fn add_body_tokens(doc: &mut Value) {
    for name in BODY_TOKEN_SCHEMAS {
        let schema = &mut doc["components"]["schemas"][name];
        if let Some(properties) = schema["properties"].as_object_mut() {
            properties.insert(
                "session_token".into(),
                json!({
                    "type": "string",
                    "pattern": SESSION_TOKEN_PATTERN,
                    "description": "The user's verification code (VERIFIED-…) that they pasted into the chat. The call then acts for that user only. The gateway takes it out before the ledger sees the body.",
                    "examples": ["VERIFIED-AbCdEfGhIjKlMnOpQrStUvWxYz012345"]
                }),
            );
        }
    }
}

/// `return_to` of the Google sign-in link takes only the operator's allow-list
/// (`RETURN_TO_ALLOWLIST`, which the auth service reads too).
fn add_return_targets(doc: &mut Value, allowed: &[String]) {
    let Some(parameters) = doc["paths"]["/auth/google"]["get"]["parameters"].as_array_mut() else {
        return;
    };
    for parameter in parameters {
        if parameter["name"] == "return_to" && !allowed.is_empty() {
            parameter["schema"]["enum"] = json!(allowed);
        }
    }
}
