//! The gateway as an OAuth 2.1 resource server: the hub's two resources (the REST credit API at
//! `PUBLIC_BASE_URL`, the MCP server at `PUBLIC_BASE_URL/mcp`), their RFC 9728 metadata, the
//! scope each route needs, and the `WWW-Authenticate` challenge that points a client to the
//! metadata.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hub_http::ApiError;
use hub_ledger::oauth::{SCOPE_CREDITS_READ, SCOPE_CREDITS_SPEND, SCOPE_MCP_TOOLS};
use serde_json::{Value, json};

use crate::AppState;

/// One of the hub's protected resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resource {
    /// The REST credit API.
    Api,
    /// The MCP server (Streamable HTTP and WebSocket).
    Mcp,
}

impl Resource {
    /// The resource identifier: the `aud` of its access tokens.
    pub(crate) fn identifier(self, state: &AppState) -> String {
        let base = state.config.public_base_url.trim_end_matches('/');
        match self {
            Self::Api => base.to_owned(),
            Self::Mcp => format!("{base}/mcp"),
        }
    }

    /// Where its metadata is.
    pub(crate) fn metadata_url(self, state: &AppState) -> String {
        let base = state.config.public_base_url.trim_end_matches('/');
        match self {
            Self::Api => format!("{base}/.well-known/oauth-protected-resource"),
            Self::Mcp => format!("{base}/.well-known/oauth-protected-resource/mcp"),
        }
    }

    fn scopes(self) -> &'static [&'static str] {
        match self {
            Self::Api => &[SCOPE_CREDITS_READ, SCOPE_CREDITS_SPEND],
            Self::Mcp => &[SCOPE_MCP_TOOLS],
        }
    }

    fn metadata(self, state: &AppState) -> Value {
        let base = state.config.public_base_url.trim_end_matches('/');
        json!({
            "resource": self.identifier(state),
            "authorization_servers": [base],
            "scopes_supported": self.scopes(),
            "bearer_methods_supported": ["header"],
            "resource_name": match self {
                Self::Api => "Smart AI Hub credit API",
                Self::Mcp => "Smart AI Hub MCP server",
            },
            "resource_documentation": format!("{base}/openapi.json"),
        })
    }
}

/// The resource a path belongs to and the scope an app's token needs there; `None` for paths an
/// app's token never opens (refunds, grants, the admin API, the auth service's own endpoints).
pub(crate) fn requirement(path: &str) -> Option<(Resource, &'static str)> {
    if path == "/mcp" || path.starts_with("/mcp/") || path == "/api/mcp/ws" {
        return Some((Resource::Mcp, SCOPE_MCP_TOOLS));
    }
    let operation = path.strip_prefix("/api/mcp/v1/credits/")?;
    match operation {
        "check" | "balance" | "transactions" | "grants" => {
            Some((Resource::Api, SCOPE_CREDITS_READ))
        }
        "deduct" | "reserve" => Some((Resource::Api, SCOPE_CREDITS_SPEND)),
        _ if operation.starts_with("reservations/") => Some((Resource::Api, SCOPE_CREDITS_SPEND)),
        _ => None,
    }
}

/// `GET /.well-known/oauth-protected-resource` (the REST API).
pub async fn api_metadata(State(state): State<AppState>) -> Json<Value> {
    Json(Resource::Api.metadata(&state))
}

/// `GET /.well-known/oauth-protected-resource/mcp` (the MCP server).
pub async fn mcp_metadata(State(state): State<AppState>) -> Json<Value> {
    Json(Resource::Mcp.metadata(&state))
}

/// A 401 or 403 with its RFC 6750 challenge naming the resource's metadata (and, for a scope too
/// narrow, the scope needed).
pub(crate) fn challenge(
    state: &AppState,
    resource: Resource,
    mut error: ApiError,
    insufficient: Option<&str>,
) -> Response {
    let mut value = format!(
        "Bearer resource_metadata=\"{}\"",
        resource.metadata_url(state)
    );
    if let Some(scope) = insufficient {
        error = ApiError::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("This app's access does not include the scope {scope}."),
        );
        value.push_str(&format!(
            ", error=\"insufficient_scope\", scope=\"{scope}\""
        ));
    } else if error.status == StatusCode::UNAUTHORIZED && error.code != "unauthenticated" {
        value.push_str(", error=\"invalid_token\"");
    }
    let mut response = error.into_response();
    if let Ok(value) = HeaderValue::from_str(&value) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}
