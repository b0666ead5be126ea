//! `GET /.well-known/oauth-authorization-server` (RFC 8414), also served as
//! `/.well-known/openid-configuration` for clients that look there first.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::issuer;
use crate::AppState;

/// The authorization server's metadata.
pub(crate) async fn document(State(state): State<AppState>) -> Json<Value> {
    let issuer = issuer(&state);
    let mut document = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oauth/authorize"),
        "token_endpoint": format!("{issuer}/oauth/token"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "scopes_supported": hub_ledger::oauth::SCOPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "client_id_metadata_document_supported": true,
        "authorization_response_iss_parameter_supported": true,
        "service_documentation": format!("{issuer}/openapi.json"),
    });
    if state.config.oauth.dynamic_registration {
        document["registration_endpoint"] = json!(format!("{issuer}/oauth/register"));
    }
    Json(document)
}
