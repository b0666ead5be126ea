//! The reverse proxy: pooled upstream connections, bodies streamed both ways, the full path and
//! query kept, hop-by-hop headers removed, `X-Forwarded-*` set, and an upstream that is down or
//! slow answered quickly with 502 or 504 in the shared error shape. A request walks through the
//! [`phases`], whichever server path it came in on.

mod base;
mod body;
mod headers;
mod limit;
mod phases;
mod pool;
mod upgrade;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hub_http::ApiError;
use serde_json::json;

use crate::AppState;
use crate::routes::{self, Route};

pub(crate) use base::Bases;

/// A serving thread's connections to the services.
pub type Client = pool::Client;

/// A new pool of connections to the services.
pub fn client() -> Client {
    Client::default()
}

/// Everything that is not the gateway's own: to its service (the router's fallback).
pub async fn forward(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let route = routes::forwarded(request.uri().path());
    let class = class_of(route);
    let mut response = forward_to_service(&state, peer, route, request).await;
    response
        .extensions_mut()
        .insert(hub_telemetry::RouteLabel(class));
    response
}

/// The same as [`forward`] inside the gateway's layers, for a request the gateway's server hands
/// straight to the proxy (not one of the gateway's own routes, no CORS configured): the request
/// id, its span and the shared error shape, the security headers and the request metrics, without
/// a router and a middleware stack around every forwarded request. `route` is the request's
/// forwarded route, if it has one.
pub(crate) async fn forward_direct(
    state: AppState,
    peer: SocketAddr,
    route: Option<&'static Route>,
    mut request: Request,
) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let class = class_of(route);
    let (request_id, span) = hub_http::begin_request(&mut request);
    let mut response =
        tracing::Instrument::instrument(forward_to_service(&state, peer, route, request), span)
            .await;
    crate::router::security_headers(response.headers_mut());
    let response = hub_http::finish_response(response, &request_id);
    state
        .metrics
        .http
        .record_request(class, &method, response.status().as_u16(), started);
    response
}

/// The label a forwarded request's metrics carry: its route's class, `unknown` without one.
fn class_of(route: Option<&Route>) -> &'static str {
    route.map_or("unknown", |route| route.class)
}

/// A forwarded request, through every phase; a path with no route is answered 404.
async fn forward_to_service(
    state: &AppState,
    peer: SocketAddr,
    route: Option<&'static Route>,
    request: Request,
) -> Response {
    let Some((route, upstream)) = route.and_then(|route| Some((route, route.upstream()?))) else {
        return ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such endpoint.")
            .into_response();
    };
    match walk(state, peer, route, upstream, request).await {
        Ok(response) | Err(response) => response,
    }
}

/// The phases in order; the first that refuses the request answers it.
async fn walk(
    state: &AppState,
    peer: SocketAddr,
    route: &'static Route,
    upstream: routes::Upstream,
    mut request: Request,
) -> Result<Response, Response> {
    let visit = phases::admit(state, peer, route, upstream, &mut request).await?;
    let caller = phases::identify(state, &visit, &mut request).await?;
    let limited = phases::limit(state, &visit, caller.as_ref(), request.headers()).await?;
    let joining = phases::rewrite_request(state, peer, &visit, caller.as_ref(), &mut request)
        .map_err(IntoResponse::into_response)?;
    let response = phases::send(state, &visit, request).await?;
    Ok(phases::rewrite_response(state, &visit, limited, joining, response).await)
}

/// `GET /ready`: every service answers its own `/ready`.
#[utoipa::path(
    get,
    path = "/ready",
    operation_id = "ready",
    tag = "operations",
    summary = "Whether the services behind the gateway are ready",
    description = "200 when the auth, core and mcp services are ready, else 503 with which is not.",
    responses(
        (status = 200, description = "Ready.", body = Object),
        (status = 503, description = "A service is not ready.", body = Object),
    ),
    security(())
)]
pub async fn ready(State(state): State<AppState>) -> Response {
    let mut report = serde_json::Map::new();
    let mut all = true;
    for (name, base) in [
        ("auth", &state.config.auth_url),
        ("core", &state.config.core_url),
        ("mcp", &state.config.mcp_url),
    ] {
        let ok = match format!("{base}/ready").parse::<Uri>() {
            Ok(uri) => {
                let request = http::Request::get(uri).body(Body::empty());
                match request {
                    Ok(request) => matches!(
                        tokio::time::timeout(Duration::from_secs(2), state.client.request(request)).await,
                        Ok(Ok(response)) if response.status().is_success()
                    ),
                    Err(_) => false,
                }
            }
            Err(_) => false,
        };
        all &= ok;
        report.insert(
            name.to_owned(),
            json!(if ok { "ready" } else { "unavailable" }),
        );
    }
    let status = if all {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    report.insert(
        "status".into(),
        json!(if all { "ready" } else { "unavailable" }),
    );
    (status, axum::Json(serde_json::Value::Object(report))).into_response()
}
