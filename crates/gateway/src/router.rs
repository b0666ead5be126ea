//! The gateway's router: its own health, documents and pages, everything else through the proxy,
//! and the layers around all of it (CORS, security headers, request ids, metrics).

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::{AppState, openapi, pages, proxy, resource};

/// The security headers of every answer: `nosniff`, and `X-Frame-Options: DENY` unless a page
/// set its own framing rule (the router's layer and the direct proxy path both use this).
pub(crate) fn security_headers(headers: &mut http::HeaderMap) {
    headers.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !headers.contains_key(http::header::X_FRAME_OPTIONS) {
        headers.insert(
            http::header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        );
    }
}

/// The gateway's routes: its own health, documents and pages, and everything else through the
/// proxy; then CORS, the security headers, request ids and metrics around all of it.
/// Its own paths are the route table's (`routes`), `/metrics` among them.
pub fn router(state: AppState) -> axum::Router {
    use axum::routing::get;
    let metrics = state.metrics.http.clone();
    let cors = cors_layer(&state.config.cors_allowed_origins);
    let hsts = state.config.tls.is_some();
    let routes = axum::Router::new()
        .route("/health", get(openapi::health))
        .route("/ready", get(proxy::ready))
        .route("/openapi.json", get(openapi::full))
        .route("/openapi.gpt.json", get(openapi::gpt))
        .route("/privacy", get(pages::privacy))
        .route(
            "/.well-known/oauth-protected-resource",
            get(resource::api_metadata),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(resource::mcp_metadata),
        )
        .fallback(proxy::forward)
        .with_state(state)
        // The same headers the direct proxy path sets; pages that set their own framing rules
        // keep them.
        .layer(axum::middleware::map_response(
            |mut response: axum::response::Response| async move {
                security_headers(response.headers_mut());
                response
            },
        ));
    let routes = if hsts {
        routes.layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("strict-transport-security"),
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        ))
    } else {
        routes
    };
    let routes = match cors {
        Some(cors) => routes.layer(cors),
        None => routes,
    };
    hub_telemetry::with_metrics(hub_http::with_request_ids_and_errors(routes), metrics)
}

/// CORS for the origins configured: with credentials for a list, without for `*`.
fn cors_layer(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let base = CorsLayer::new()
        .allow_methods([
            http::Method::GET,
            http::Method::POST,
            http::Method::DELETE,
            http::Method::OPTIONS,
        ])
        .allow_headers([
            http::header::AUTHORIZATION,
            http::header::CONTENT_TYPE,
            crate::identity::X_SESSION_TOKEN,
            crate::identity::X_API_KEY,
            HeaderName::from_static("x-user-id"),
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("retry-after"),
            HeaderName::from_static("ratelimit-limit"),
            HeaderName::from_static("ratelimit-remaining"),
            HeaderName::from_static("ratelimit-reset"),
            HeaderName::from_static("idempotent-replayed"),
        ])
        .max_age(Duration::from_secs(600));
    if origins.iter().any(|o| o == "*") {
        // A wildcard never goes with credentials.
        return Some(base.allow_origin(AllowOrigin::any()));
    }
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        base.allow_origin(AllowOrigin::list(list))
            .allow_credentials(true),
    )
}
