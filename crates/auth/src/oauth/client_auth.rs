//! How a client proves who it is at the token and revocation endpoints: a secret (a Basic header
//! or in the body) for a confidential client, nothing for a public one.

use axum::http::{HeaderMap, header};
use base64::Engine;
use subtle::ConstantTimeEq;

use super::OAuthError;
use super::clients::{Client, find};
use crate::AppState;

/// The client credentials a token or revocation request presents.
pub(crate) struct Presented {
    pub client_id: String,
    pub secret: Option<String>,
}

/// Reads `Authorization: Basic` (RFC 6749 §2.3.1: both parts form-urlencoded) or
/// `client_id` / `client_secret` in the body; both at once is an error.
pub(crate) fn presented(
    headers: &HeaderMap,
    client_id: Option<&str>,
    client_secret: Option<&str>,
) -> Result<Presented, OAuthError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        });
    let invalid = || OAuthError::new("invalid_client", "Client authentication failed.");
    match basic {
        Some(_) if client_secret.is_some() => Err(OAuthError::new(
            "invalid_request",
            "Authenticate the client one way only.",
        )),
        Some(encoded) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| invalid())?;
            let decoded = String::from_utf8(decoded).map_err(|_| invalid())?;
            let (id, secret) = decoded.split_once(':').ok_or_else(invalid)?;
            let id = form_decode(id);
            if client_id.is_some_and(|c| c != id) {
                return Err(invalid());
            }
            Ok(Presented {
                client_id: id,
                secret: Some(form_decode(secret)),
            })
        }
        None => Ok(Presented {
            client_id: client_id.ok_or_else(invalid)?.to_owned(),
            secret: client_secret.map(str::to_owned),
        }),
    }
}

fn form_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The client, authenticated: a confidential client by its secret (compared as hashes, in
/// constant time), a public client by presenting no secret.
pub(crate) async fn authenticate(
    state: &AppState,
    presented: &Presented,
) -> Result<Client, OAuthError> {
    let invalid = || OAuthError::new("invalid_client", "Client authentication failed.");
    let client = find(state, &presented.client_id)
        .await?
        .ok_or_else(invalid)?;
    match (&client.secret_hash, &presented.secret) {
        (None, None) => Ok(client),
        (Some(stored), Some(secret)) => {
            let given = hub_ledger::oauth::secret_hash(secret);
            if bool::from(given.as_bytes().ct_eq(stored.as_bytes())) {
                Ok(client)
            } else {
                Err(invalid())
            }
        }
        _ => Err(invalid()),
    }
}
