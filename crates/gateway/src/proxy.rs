//! The reverse proxy: pooled upstream connections, bodies streamed both ways, the full path and
//! query kept, hop-by-hop headers removed, `X-Forwarded-*` set, and an upstream that is down or
//! slow answered quickly with 502 or 504 in the shared error shape.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hub_error::ApiError;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

use crate::AppState;
use crate::limits::{Decision, PerMinute};
use crate::{admission, identity};
use sha2::{Digest, Sha256};

/// The pooled HTTP/1.1 client to the services.
pub type Client = hyper_util::client::legacy::Client<HttpConnector, Body>;

pub fn client() -> Client {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    connector.set_nodelay(true);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(connector)
}

/// Which service a path belongs to, and whether the gateway must vouch for a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upstream {
    Auth,
    Core,
    Mcp,
}

impl Upstream {
    fn name(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Core => "core",
            Self::Mcp => "mcp",
        }
    }
}

/// Where the MCP service's signed video links live.
const VIDEO_LINKS: &str = "/api/mcp/v1/videos/";

fn route(path: &str) -> Option<(Upstream, bool)> {
    if path.starts_with("/api/auth/")
        || path == "/auth/google"
        || path == "/auth/google/callback"
        || path == "/auth/verify-email"
        || path == "/auth/reset-password"
        || path == "/.well-known/jwks.json"
    {
        return Some((Upstream::Auth, false));
    }
    if path.starts_with("/api/mcp/v1/credits/") || path.starts_with("/api/admin/") {
        return Some((Upstream::Core, true));
    }
    if path == "/api/mcp/ws" || path == "/mcp" || path.starts_with("/mcp/") {
        return Some((Upstream::Mcp, true));
    }
    // A video link carries its own signature: whoever holds it may open it, without headers.
    if path.starts_with(VIDEO_LINKS) {
        return Some((Upstream::Mcp, false));
    }
    None
}

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes the headers meant for this hop only: the standard ones and those the `Connection`
/// header names, except the two the gateway has made its own by now (the request id and the
/// body's length). Run before the gateway writes its own headers, so that naming them in
/// `Connection` cannot take them off.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::try_from(name.trim()).ok())
            .filter(|name| {
                name.as_str() != hub_error::REQUEST_ID_HEADER && name != header::CONTENT_LENGTH
            })
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The label a request's metrics carry: its route class.
pub fn route_class(path: &str) -> &'static str {
    match path {
        "/auth/google" | "/auth/google/callback" => "google",
        "/auth/verify-email" | "/auth/reset-password" => "auth",
        "/api/auth/verify-session" => "verify_session",
        "/.well-known/jwks.json" => "jwks",
        _ if path.starts_with("/api/auth/") => "auth",
        _ if path.starts_with("/api/mcp/v1/credits/") => "credits",
        _ if path.starts_with("/api/admin/") => "admin",
        "/api/mcp/ws" => "mcp_ws",
        _ if path == "/mcp" || path.starts_with("/mcp/") => "mcp",
        _ if path.starts_with(VIDEO_LINKS) => "video_content",
        _ => "unknown",
    }
}

/// Everything that is not the gateway's own: to its service.
pub async fn forward(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let class = route_class(request.uri().path());
    let mut response = forward_to_service(state, peer, class, request).await;
    response
        .extensions_mut()
        .insert(hub_telemetry::RouteLabel(class));
    response
}

/// The same as [`forward`] inside the gateway's layers, for a request the gateway's server hands
/// straight to the proxy (not one of the gateway's own routes, no CORS configured): the request
/// id, its span and the shared error shape, the security headers and the request metrics, without
/// a router and a middleware stack around every forwarded request.
pub(crate) async fn forward_direct(
    state: AppState,
    peer: SocketAddr,
    mut request: Request,
) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let class = route_class(request.uri().path());
    let (request_id, span) = hub_error::begin_request(&mut request);
    let mut response = tracing::Instrument::instrument(
        forward_to_service(state.clone(), peer, class, request),
        span,
    )
    .await;
    crate::security_headers(response.headers_mut());
    let response = hub_error::finish_response(response, &request_id);
    state
        .metrics
        .http
        .record_request(class, &method, response.status().as_u16(), started);
    response
}

async fn forward_to_service(
    state: AppState,
    peer: SocketAddr,
    class: &'static str,
    mut request: Request,
) -> Response {
    let Some((upstream, vouched)) = route(request.uri().path()) else {
        return ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such endpoint.")
            .into_response();
    };
    let too_large = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|length| length > state.config.max_body_bytes);
    if too_large {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "The request body is too large.",
        )
        .into_response();
    }
    let claimed_user = request
        .headers()
        .get(hub_core::caller::USER_ID_HEADER)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let client = client_address(&state, peer, request.headers());
    // A WebSocket (or other) upgrade passes through: the client's half and the service's half are
    // joined once the service agrees (101).
    let upgrade = request
        .headers()
        .get(header::UPGRADE)
        .cloned()
        .filter(|_| wants_upgrade(request.headers()));
    if vouched && upgrade.is_some() {
        credential_from_subprotocol(request.headers_mut());
    }
    let limits = state.config.limits;

    // Admit, before the body is read and before any credential is looked up: a request with
    // credentials is held to its failed-credential budget, one without to its address's budget.
    let with_credential = identity::presents_credential(request.headers());
    let (mut subject, key_to_read) =
        match admission::failure_subject(&state, request.headers(), client).await {
            Ok(found) => found,
            Err(error) => return error.into_response(),
        };
    let has_body =
        upgrade.is_none() && axum::body::HttpBody::size_hint(request.body()).upper() != Some(0);
    // A live key the gateway remembers, alone, needs no lookup: no budget to ask (the hot path
    // of service callers stays one limiter call).
    let gated = with_credential
        && (!matches!(subject, admission::Subject::Key(_))
            || identity::presents_more_than_a_key(request.headers()));
    let mut spent_before_body = None;
    if gated {
        if let Some(refused) = failures_spent(&state, &subject).await {
            return refused;
        }
    } else if !with_credential && has_body {
        let key = format!("address:{client}");
        let decision = state.limiter.check(&key, limits.default, true).await;
        if !decision.allowed {
            state.metrics.rate_limited(class);
            return limited(limits.default, decision);
        }
        spent_before_body = Some((key, decision));
    }

    let body_token = if has_body {
        match take_body_token(&state, &mut request, vouched).await {
            Ok(token) => token,
            Err(response) => return response,
        }
    } else {
        None
    };
    if !gated
        && body_token.is_some()
        && let Some(refused) = failures_spent(&state, &subject).await
    {
        return refused;
    }
    let with_credential = with_credential || body_token.is_some();
    if with_credential && key_to_read {
        subject = match admission::read_key_now(&state, request.headers(), subject).await {
            Ok(subject) => subject,
            Err(error) => return error.into_response(),
        };
    }
    if let Some(token) = body_token.as_deref().filter(|_| vouched) {
        // A code in the body counts as one in the header, with the same rules.
        match HeaderValue::from_str(token) {
            Ok(value) => request.headers_mut().insert("x-session-token", value),
            Err(_) => {
                spend_failure(&state, &subject).await;
                return ApiError::unauthenticated("The session_token is not valid.")
                    .into_response();
            }
        };
    }
    // Identify: only the services behind it learn who calls, from the gateway: sign-in and
    // verify-session are open to anyone and check their own credentials.
    let caller = if vouched {
        match identity::resolve(&state, request.headers()).await {
            Ok(caller) => caller,
            Err(refused) => {
                if refused.counts {
                    spend_failure(&state, &subject).await;
                }
                return refused.error.into_response();
            }
        }
    } else {
        None
    };
    // Limit: keyed by the caller wherever there is one, by the client address only where there
    // is none (many ChatGPT users share a few addresses).
    let path = request.uri().path().to_owned();
    let (key, limit) = limit_for(
        &state,
        &path,
        caller.as_ref(),
        claimed_user.as_deref(),
        request.headers(),
        body_token.as_deref(),
        client,
    );
    let decision = match spent_before_body {
        // Spent already, before the body was read.
        Some((spent, decision)) if spent == key => decision,
        _ => state.limiter.check(&key, limit, true).await,
    };
    if !decision.allowed {
        state.metrics.rate_limited(class);
        return limited(limit, decision);
    }

    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut request));
    // A joined connection keeps its credential, to be checked again while it lasts.
    let watch = (vouched && upgrade.is_some())
        .then(|| crate::ws_watch::Watch::new(&state, request.headers()));

    // Rewrite: what was addressed to the gateway alone goes first, then everything a client may
    // not say for itself, then the gateway's own headers.
    let headers = request.headers_mut();
    remove_hop_by_hop(headers);
    identity::strip_client_identity(headers);
    if vouched {
        // The services learn who calls from the gateway's headers; credentials stop here.
        for credential in ["x-session-token", "x-api-key", "authorization"] {
            headers.remove(credential);
        }
    }
    if vouched
        && let Err(error) =
            identity::vouch(&state, caller.as_ref(), claimed_user.as_deref(), headers)
    {
        return error.into_response();
    }
    if let Some(protocol) = &upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol.clone());
    }
    forwarded_for(&state, peer, headers);

    let base = match upstream {
        Upstream::Auth => &state.config.auth_url,
        Upstream::Core => &state.config.core_url,
        Upstream::Mcp => &state.config.mcp_url,
    };
    let path_and_query = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let Ok(uri) = format!("{base}{path_and_query}").parse::<Uri>() else {
        return ApiError::bad_request("bad_request", "The request path cannot be forwarded.")
            .into_response();
    };
    if let Some(authority) = uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        request.headers_mut().insert(header::HOST, authority);
    }
    *request.uri_mut() = uri;
    *request.version_mut() = http::Version::HTTP_11;
    let body_limit = usize::try_from(state.config.max_body_bytes).unwrap_or(usize::MAX);
    let request = request.map(|body| Body::new(http_body_util::Limited::new(body, body_limit)));

    let started = std::time::Instant::now();
    // The timeout covers the wait for the response's headers only: a streamed body or a joined
    // WebSocket runs as long as both ends want.
    let sent =
        tokio::time::timeout(state.config.upstream_timeout, state.client.request(request)).await;
    state.metrics.upstream_latency(upstream.name(), started);
    match sent {
        Ok(Ok(mut response)) => {
            let joined = match (client_upgrade, &upgrade) {
                (Some(client_half), Some(protocol))
                    if response.status() == StatusCode::SWITCHING_PROTOCOLS =>
                {
                    let service_half = hyper::upgrade::on(&mut response);
                    tokio::spawn(join_upgraded(client_half, service_half, watch));
                    Some(protocol.clone())
                }
                _ => None,
            };
            let mut response = response.map(Body::new);
            remove_hop_by_hop(response.headers_mut());
            if let Some(protocol) = joined {
                let headers = response.headers_mut();
                headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                headers.insert(header::UPGRADE, protocol);
            }
            // The service turned the credentials down (verify-session, the auth endpoints).
            if with_credential && response.status() == StatusCode::UNAUTHORIZED {
                spend_failure(&state, &subject).await;
            }
            rate_limit_headers(response.headers_mut(), limit, decision);
            response
        }
        Ok(Err(e)) if body_too_large(&e) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "The request body is too large.",
        )
        .into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, service = ?upstream, "upstream unreachable");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                "The service behind this endpoint is not answering.",
            )
            .into_response()
        }
        Err(_) => {
            tracing::warn!(service = ?upstream, "upstream timed out");
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "The service behind this endpoint took too long.",
            )
            .into_response()
        }
    }
}

/// 429 when `subject` has spent its failed-credential budget (asked, not spent).
async fn failures_spent(state: &AppState, subject: &admission::Subject) -> Option<Response> {
    let limit = state.config.limits.verify_failures;
    let decision = state
        .limiter
        .check(&subject.budget_key(), limit, false)
        .await;
    if decision.allowed {
        return None;
    }
    state.metrics.rate_limited("verify_failures");
    Some(limited(limit, decision))
}

/// Counts one failed credential against `subject`.
async fn spend_failure(state: &AppState, subject: &admission::Subject) {
    let limit = state.config.limits.verify_failures;
    state
        .limiter
        .check(&subject.budget_key(), limit, true)
        .await;
}

/// A browser cannot set headers on a WebSocket, so it may offer its credential as a subprotocol
/// entry `bearer.<session code or access token>` beside `mcp`. Without a credential header, that
/// entry becomes `Authorization: Bearer …` and is taken out of the list the service sees.
fn credential_from_subprotocol(headers: &mut HeaderMap) {
    let has_credential = ["authorization", "x-session-token", "x-api-key"]
        .iter()
        .any(|name| headers.contains_key(*name));
    if has_credential {
        return;
    }
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    let Some(token) = offered
        .iter()
        .find_map(|p| p.strip_prefix("bearer."))
        .map(str::to_owned)
    else {
        return;
    };
    if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
        headers.insert(header::AUTHORIZATION, value);
    }
    let rest: Vec<&str> = offered
        .iter()
        .map(String::as_str)
        .filter(|p| !p.starts_with("bearer."))
        .collect();
    headers.remove(header::SEC_WEBSOCKET_PROTOCOL);
    if let Ok(value) = HeaderValue::from_str(&rest.join(", "))
        && !rest.is_empty()
    {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, value);
    }
}

/// Whether the client asked to switch protocols (`Connection: upgrade` with `Upgrade`).
fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// Copies bytes both ways between the client's and the service's upgraded connections until
/// either end closes (or, when watched, until the credential is no longer good).
async fn join_upgraded(
    client: hyper::upgrade::OnUpgrade,
    service: hyper::upgrade::OnUpgrade,
    watch: Option<crate::ws_watch::Watch>,
) {
    match tokio::try_join!(client, service) {
        Ok((client, service)) => match watch {
            Some(watch) => crate::ws_watch::join(client, service, watch).await,
            None => {
                let mut client = hyper_util::rt::TokioIo::new(client);
                let mut service = hyper_util::rt::TokioIo::new(service);
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut service).await {
                    tracing::debug!(error = %e, "upgraded connection ended");
                }
            }
        },
        Err(e) => tracing::warn!(error = %e, "could not join an upgraded connection"),
    }
}

/// Whether a failed upstream call failed because the client's (streamed) body passed the limit.
fn body_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The client's address as the rate limits count it (an IPv6 client by its /64).
fn client_address(state: &AppState, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    hub_error::address_for_limits(hub_error::client_address(
        peer,
        headers,
        &state.config.trusted_proxies,
    ))
}

fn digest(credential: &str) -> String {
    hex::encode(&Sha256::digest(credential.as_bytes())[..16])
}

/// The rate-limit key and limit of a request.
fn limit_for(
    state: &AppState,
    path: &str,
    caller: Option<&identity::Caller>,
    claimed_user: Option<&str>,
    headers: &HeaderMap,
    body_token: Option<&str>,
    client: IpAddr,
) -> (String, PerMinute) {
    let limits = state.config.limits;
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let presented = text("x-session-token")
        .or_else(|| text("authorization"))
        .or_else(|| text("x-api-key"));
    if path == "/auth/google" {
        return (format!("google:{client}"), limits.google);
    }
    if path == "/api/auth/verify-session" {
        // The GPT form sends its service key as the bearer and the user's code in the body.
        let token = text("x-session-token")
            .or_else(|| {
                text("authorization")
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .filter(|v| !v.starts_with(hub_core::service_keys::KEY_PREFIX))
            })
            .or(body_token);
        return match token {
            Some(token) => (format!("verify:{}", digest(token)), limits.verify),
            None => (format!("verify:anonymous:{client}"), limits.verify),
        };
    }
    let class = if path.starts_with("/api/mcp/v1/credits/") || path.starts_with("/api/admin/") {
        limits.credits
    } else {
        limits.default
    };
    match caller {
        Some(identity::Caller::User(id)) => (format!("caller:user:{id}"), class),
        // One key may serve every ChatGPT user: each user it acts for has a budget of their own.
        Some(identity::Caller::ServiceKey { id, .. }) => (
            format!("caller:key:{id}:{}", claimed_user.unwrap_or("-")),
            class,
        ),
        None => match presented {
            Some(credential) => (format!("caller:{}", digest(credential)), limits.default),
            None => (format!("address:{client}"), limits.default),
        },
    }
}

fn rate_limit_headers(headers: &mut HeaderMap, limit: PerMinute, decision: Decision) {
    let reset = decision.reset.as_secs() + u64::from(decision.reset.subsec_nanos() > 0);
    headers.insert("ratelimit-limit", HeaderValue::from(limit.0));
    headers.insert("ratelimit-remaining", HeaderValue::from(decision.remaining));
    headers.insert("ratelimit-reset", HeaderValue::from(reset));
}

/// 429 with `Retry-After` and the `RateLimit-*` headers.
fn limited(limit: PerMinute, decision: Decision) -> Response {
    let mut error = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "Too many requests; slow down and try again after Retry-After seconds.",
    );
    let wait = decision.reset.as_secs() + u64::from(decision.reset.subsec_nanos() > 0);
    error.retry_after = Some(wait.max(1));
    let mut response = error.into_response();
    rate_limit_headers(response.headers_mut(), limit, decision);
    response
}

/// Reads the request body whole, and takes the user's code out of it where it may be. A GPT
/// Action cannot set per-user headers, so the operations it uses take the user's code as a
/// declared body field, `session_token`: on `POST` verify-session it keys the limit by the code,
/// and on credit calls it names the caller and is taken out before the ledger sees the body.
async fn take_body_token(
    state: &AppState,
    request: &mut Request,
    vouched: bool,
) -> Result<Option<String>, Response> {
    // Request bodies (at most MAX_BODY_BYTES) are read whole before they are passed on, as
    // nginx does by default: an oversized one is a 413 here whether or not it has a length, and
    // a service that answers before reading all of a body cannot turn it into a 502. The whole
    // body has BODY_READ_TIMEOUT_SECONDS to arrive: one that trickles in holds a connection and
    // a buffer as long as one that stalls.
    let limit = usize::try_from(state.config.max_body_bytes).unwrap_or(usize::MAX);
    let body = std::mem::take(request.body_mut());
    let read = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, limit));
    let bytes = match tokio::time::timeout(state.config.body_read_timeout, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(_)) => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "The request body is too large.",
            )
            .into_response());
        }
        Err(_) => {
            let mut response = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "The request body did not arrive in time.",
            )
            .into_response();
            // What is left of the body is not read: the connection ends with this answer.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Err(response);
        }
    };
    let path = request.uri().path();
    let wanted = request.method() == http::Method::POST
        && (path == "/api/auth/verify-session" || path.starts_with("/api/mcp/v1/credits/"));
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let mut forwarded = bytes.clone();
    let mut token = None;
    // Most bodies carry no code: only those that mention it are parsed.
    let mentions_token = wanted && json && bytes.windows(13).any(|w| w == b"session_token");
    if mentions_token
        && let Ok(serde_json::Value::Object(mut fields)) =
            serde_json::from_slice::<serde_json::Value>(&bytes)
        && let Some(serde_json::Value::String(found)) = fields.get("session_token")
    {
        token = Some(found.trim().to_owned());
        if vouched {
            fields.remove("session_token");
            forwarded = serde_json::to_vec(&fields)
                .map_err(|e| ApiError::internal(&e).into_response())?
                .into();
        }
    }
    let headers = request.headers_mut();
    headers.remove(header::TRANSFER_ENCODING);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(forwarded.len()));
    *request.body_mut() = Body::from(forwarded);
    Ok(token)
}

/// `X-Forwarded-For`: the client's address, appended to what a trusted proxy in front said.
fn forwarded_for(state: &AppState, peer: SocketAddr, headers: &mut HeaderMap) {
    let trusted = hub_error::is_trusted(&state.config.trusted_proxies, peer.ip());
    let mut before = String::new();
    if trusted {
        // Every line, in order, as one list.
        for line in headers.get_all("x-forwarded-for") {
            if let Ok(line) = line.to_str() {
                before.push_str(line);
                before.push_str(", ");
            }
        }
    }
    let value = if before.is_empty() {
        peer.ip().to_string()
    } else {
        format!("{before}{}", peer.ip())
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert("x-forwarded-for", value);
    }
    let proto = if state.config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let kept_proto = headers
        .get("x-forwarded-proto")
        .filter(|_| trusted)
        .cloned();
    headers.insert(
        "x-forwarded-proto",
        kept_proto.unwrap_or(HeaderValue::from_static(proto)),
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_go_to_their_services() {
        assert_eq!(
            route("/api/auth/verify-session"),
            Some((Upstream::Auth, false))
        );
        assert_eq!(route("/auth/google"), Some((Upstream::Auth, false)));
        assert_eq!(
            route("/auth/google/callback"),
            Some((Upstream::Auth, false))
        );
        assert_eq!(
            route("/.well-known/jwks.json"),
            Some((Upstream::Auth, false))
        );
        assert_eq!(
            route("/api/mcp/v1/credits/deduct"),
            Some((Upstream::Core, true))
        );
        assert_eq!(
            route("/api/admin/credits/grant"),
            Some((Upstream::Core, true))
        );
        assert_eq!(route("/mcp"), Some((Upstream::Mcp, true)));
        assert_eq!(route("/auth/verify-email"), Some((Upstream::Auth, false)));
        assert_eq!(route("/auth/reset-password"), Some((Upstream::Auth, false)));
        assert_eq!(route("/auth/googlex"), None);
        assert_eq!(route("/api/mcp/v1/credit"), None);
        assert_eq!(
            route("/api/mcp/v1/videos/video_1.sig/content"),
            Some((Upstream::Mcp, false))
        );
        assert_eq!(route("/"), None);
    }
}
