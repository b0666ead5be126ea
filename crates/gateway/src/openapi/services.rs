//! The services' own documents, fetched once from each (`GET {service}/openapi.json`) and kept:
//! the gateway describes the API without linking the services' code, and a document always
//! matches the service that answers.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use hub_http::ApiError;
use serde_json::Value;

use crate::AppState;

/// The whole document, made once the services have described themselves (`GET /openapi.gpt.json`
/// is cut from it on each request: whether a GPT has an OAuth client can change).
pub(crate) struct Documents {
    /// `GET /openapi.json`.
    pub full: Value,
}

/// Whether an OAuth client for a GPT Action exists: a live client the operator registered whose
/// redirect URI is a GPT's callback (`https://chat.openai.com/aip/…` or
/// `https://chatgpt.com/aip/…`). Dynamically registered clients do not count: anyone can register
/// one, and it must not change what the operator's GPT imports.
pub(crate) async fn gpt_has_oauth_client(state: &AppState) -> bool {
    match state.store.list_oauth_clients().await {
        Ok(clients) => clients.iter().any(|c| {
            c.revoked_at.is_none()
                && c.registration == hub_ledger::oauth::Registration::Operator
                && c.redirect_uris.iter().any(|u| {
                    u.starts_with("https://chat.openai.com/aip/")
                        || u.starts_with("https://chatgpt.com/aip/")
                })
        }),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list OAuth clients for the GPT document");
            false
        }
    }
}

/// The documents, fetching the services' parts on first use. A service that cannot answer yet
/// is a 503 now and is asked again on the next request.
pub(crate) async fn documents(state: &AppState) -> Result<&Documents, ApiError> {
    state
        .documents
        .get_or_try_init(|| async {
            let mut services = Vec::new();
            for (name, base) in [
                ("auth", &state.config.auth_url),
                ("core", &state.config.core_url),
            ] {
                services.push(fetch(state, name, base).await?);
            }
            let full = super::document(&state.config, services);
            Ok(Documents { full })
        })
        .await
}

async fn fetch(
    state: &AppState,
    name: &str,
    base: &str,
) -> Result<utoipa::openapi::OpenApi, ApiError> {
    let unavailable = |problem: String| {
        tracing::warn!(service = name, %problem, "cannot fetch the service's API document");
        let mut error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream_unavailable",
            format!("The {name} service has not described its API yet; try again shortly."),
        );
        error.retry_after = Some(1);
        error
    };
    let request = Request::get(format!("{}/openapi.json", base.trim_end_matches('/')))
        .body(Body::empty())
        .map_err(|e| unavailable(e.to_string()))?;
    let response =
        tokio::time::timeout(state.config.upstream_timeout, state.client.request(request))
            .await
            .map_err(|_| unavailable("timed out".into()))?
            .map_err(|e| unavailable(e.to_string()))?;
    if !response.status().is_success() {
        return Err(unavailable(format!("answered {}", response.status())));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| unavailable(e.to_string()))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| unavailable(e.to_string()))
}
