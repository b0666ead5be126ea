//! The hub as an OAuth 2.1 authorization server for its own APIs (the REST credit API and the
//! MCP server), so that GPT Actions, ChatGPT apps and Claude connectors connect users the
//! standard way: RFC 8414 metadata, the authorization code flow with PKCE (S256), RFC 8707
//! resources, RFC 7591 dynamic registration, Client ID Metadata Documents, RFC 7009 revocation.
//!
//! A person proves who they are with the hub's own sign-in (Google, or email and password), which
//! leaves a browser sign-in cookie; consent is remembered as a grant (`hub_ledger::oauth`).

mod authorize;
mod browser;
mod client_auth;
mod clients;
mod codes;
pub mod grants;
mod metadata;
pub(crate) mod pages;
mod register;
mod token;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hub_config::{ConfigError, Env};
use serde_json::json;

pub use browser::BROWSER_COOKIE;
pub(crate) use browser::{continue_allowed, sign_in_browser, signed_in, signed_out_cookie};
pub use clients::MetadataCache;

use crate::AppState;

/// The authorization server's settings.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// `OAUTH_DYNAMIC_REGISTRATION` (default on): `POST /oauth/register` takes new public clients.
    pub dynamic_registration: bool,
    /// `OAUTH_ALLOW_INSECURE_CLIENT_METADATA` (default off; tests only): a Client ID Metadata
    /// Document may be fetched over http and from private or loopback addresses.
    pub allow_insecure_client_metadata: bool,
}

impl OAuthConfig {
    /// Reads the variables above.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            dynamic_registration: env.flag_or("OAUTH_DYNAMIC_REGISTRATION", true)?,
            allow_insecure_client_metadata: env.flag("OAUTH_ALLOW_INSECURE_CLIENT_METADATA")?,
        })
    }
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            dynamic_registration: true,
            allow_insecure_client_metadata: false,
        }
    }
}

/// The issuer: the hub's public address.
pub(crate) fn issuer(state: &AppState) -> &str {
    state.config.public_base_url.trim_end_matches('/')
}

/// The resources the hub serves: the REST API at the issuer, the MCP server below it.
pub(crate) fn resources(state: &AppState) -> [String; 2] {
    let issuer = issuer(state);
    [issuer.to_owned(), format!("{issuer}/mcp")]
}

/// The authorization server's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(metadata::document),
        )
        .route("/.well-known/openid-configuration", get(metadata::document))
        .route(
            "/oauth/authorize",
            get(authorize::start).post(authorize::decide),
        )
        .route("/oauth/sign-in", post(browser::sign_in))
        .route("/oauth/token", post(token::exchange))
        .route("/oauth/revoke", post(token::revoke))
        .route("/oauth/register", post(register::register))
}

/// The users' side of it, in the public API: their connected apps.
pub(crate) fn api() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(grants::list))
        .routes(utoipa_axum::routes!(grants::disconnect))
}

/// An RFC 6749 error: `{"error", "error_description"}`, never cached.
pub(crate) struct OAuthError {
    status: StatusCode,
    code: &'static str,
    description: String,
}

impl OAuthError {
    pub(crate) fn new(code: &'static str, description: impl Into<String>) -> Self {
        let status = match code {
            "invalid_client" => StatusCode::UNAUTHORIZED,
            "temporarily_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
            "too_many_requests" => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        };
        Self {
            status,
            code,
            description: description.into(),
        }
    }

    /// A store that did not answer.
    pub(crate) fn unavailable(error: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %error, "the authorization server's store is unavailable");
        Self::new("temporarily_unavailable", "Try again in a moment.")
    }
}

impl From<hub_sessions::SessionError> for OAuthError {
    fn from(error: hub_sessions::SessionError) -> Self {
        Self::unavailable(&error)
    }
}

impl From<hub_ledger::StoreError> for OAuthError {
    fn from(error: hub_ledger::StoreError) -> Self {
        if error.is_unavailable() {
            Self::unavailable(&error)
        } else {
            tracing::error!(error = %error, "the authorization server's store failed");
            Self::new("server_error", "Something went wrong on our side.")
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            axum::Json(json!({ "error": self.code, "error_description": self.description })),
        )
            .into_response();
        no_store(&mut response);
        if self.status == StatusCode::UNAUTHORIZED
            && let Ok(value) = HeaderValue::from_str("Basic realm=\"oauth\"")
        {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// Marks a response `Cache-Control: no-store` (tokens and errors about them).
pub(crate) fn no_store(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// Random bytes as hex.
pub(crate) fn random_hex<const N: usize>() -> Result<String, OAuthError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|e| OAuthError::new("server_error", format!("the OS random source: {e}")))?;
    Ok(hex::encode(bytes))
}
