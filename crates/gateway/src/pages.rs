//! `GET /privacy`: the privacy policy a published GPT with actions must link. The built-in page
//! says what the hub stores, for how long and how to delete it; an operator replaces it with their
//! own HTML file (`PRIVACY_POLICY_PATH`), served as it is.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use hub_http::ApiError;

use crate::AppState;

#[derive(Template)]
#[template(path = "privacy.html")]
struct PrivacyPage<'a> {
    base_url: &'a str,
    style_nonce: &'a str,
}

/// `GET /privacy`.
#[utoipa::path(
    get,
    path = "/privacy",
    operation_id = "getPrivacyPolicy",
    tag = "operations",
    summary = "The privacy policy",
    description = "The privacy policy page (HTML) to link from a published GPT: what the hub stores, for how long, and how to delete it.",
    responses((status = 200, description = "The page.", content_type = "text/html", body = String)),
    security(())
)]
pub async fn privacy(State(state): State<AppState>) -> Response {
    let mut nonce = [0u8; 16];
    let _ = getrandom::fill(&mut nonce);
    let nonce = hex::encode(nonce);
    let html = match &state.config.privacy_policy_path {
        Some(path) => match tokio::fs::read_to_string(path).await {
            Ok(html) => html,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "PRIVACY_POLICY_PATH cannot be read");
                return ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "The privacy policy cannot be shown right now.",
                )
                .into_response();
            }
        },
        None => {
            let page = PrivacyPage {
                base_url: &state.config.public_base_url,
                style_nonce: &nonce,
            };
            match page.render() {
                Ok(html) => html,
                Err(e) => return ApiError::internal(&e).into_response(),
            }
        }
    };
    let mut response = Html(html).into_response();
    let headers = response.headers_mut();
    let policy = if state.config.privacy_policy_path.is_some() {
        // The operator's page may bring its own styles and images.
        "frame-ancestors 'none'".to_owned()
    } else {
        format!("default-src 'none'; style-src 'nonce-{nonce}'; frame-ancestors 'none'")
    };
    if let Ok(value) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}
