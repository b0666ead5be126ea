//! `POST /oauth/register`: dynamic client registration (RFC 7591) of public clients, limited per
//! client address; `OAUTH_DYNAMIC_REGISTRATION=0` turns it off.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hub_ledger::oauth::{Registration, new_client};
use serde::Deserialize;
use serde_json::json;

use super::OAuthError;
use crate::AppState;

/// Registrations one client address may make in an hour.
const PER_ADDRESS_PER_HOUR: u64 = 20;

/// The metadata a client registers with (what the hub reads of it).
#[derive(Deserialize)]
pub(crate) struct Metadata {
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    grant_types: Option<Vec<String>>,
    #[serde(default)]
    response_types: Option<Vec<String>>,
    #[serde(default)]
    scope: Option<String>,
}

/// `POST /oauth/register`.
pub(crate) async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !state.config.oauth.dynamic_registration {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({
                "error": "invalid_request",
                "error_description": "Dynamic client registration is turned off on this hub.",
            })),
        )
            .into_response();
    }
    if let Err(refused) = throttle(&state, peer, &headers).await {
        return refused.into_response();
    }
    let client = match client_of(&body) {
        Ok(client) => client,
        Err(refused) => return refused.into_response(),
    };
    if let Err(e) = state.users.insert_oauth_client(&client).await {
        return OAuthError::from(e).into_response();
    }
    let record = &client.record;
    (
        StatusCode::CREATED,
        Json(json!({
            "client_id": record.id,
            "client_id_issued_at": record.created_at.timestamp(),
            "client_name": record.name,
            "redirect_uris": record.redirect_uris,
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "scope": record.scopes.join(" "),
        })),
    )
        .into_response()
}

/// Counts a registration against its client address's hourly allowance.
async fn throttle(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<(), OAuthError> {
    let address = crate::routes::accounts::client_address(state, peer, headers);
    let now = state.sessions.clock().now();
    let key = format!("oauth-register:{address}");
    let count = state
        .sessions
        .store()
        .hit(&key, Duration::from_secs(3600), now)
        .await?;
    if count > PER_ADDRESS_PER_HOUR {
        return Err(OAuthError::new(
            "too_many_requests",
            "Too many registrations from this address; try again later.",
        ));
    }
    Ok(())
}

/// The public client a registration asks for, checked.
fn client_of(body: &[u8]) -> Result<hub_ledger::oauth::NewOAuthClient, OAuthError> {
    let invalid = |description: &str| OAuthError::new("invalid_client_metadata", description);
    let metadata = serde_json::from_slice::<Metadata>(body)
        .map_err(|_| invalid("The body must be a JSON client metadata object."))?;
    if metadata
        .token_endpoint_auth_method
        .as_deref()
        .is_some_and(|m| m != "none")
    {
        return Err(invalid(
            "Dynamically registered clients are public: token_endpoint_auth_method must be none.",
        ));
    }
    let grants_ok = metadata.grant_types.as_ref().is_none_or(|g| {
        g.iter()
            .all(|t| t == "authorization_code" || t == "refresh_token")
    });
    let responses_ok = metadata
        .response_types
        .as_ref()
        .is_none_or(|r| r.iter().all(|t| t == "code"));
    if !grants_ok || !responses_ok {
        return Err(invalid(
            "Only the authorization code flow (with refresh tokens) is supported.",
        ));
    }
    let scopes: Vec<String> = metadata
        .scope
        .as_deref()
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let name = metadata.client_name.as_deref().unwrap_or("An MCP client");
    new_client(
        name,
        &metadata.redirect_uris,
        false,
        &scopes,
        Registration::Dynamic,
    )
    .map_err(|e| {
        if e.code == "invalid_redirect_uri" {
            OAuthError::new("invalid_redirect_uri", e.message)
        } else {
            OAuthError::new("invalid_client_metadata", e.message)
        }
    })
}
