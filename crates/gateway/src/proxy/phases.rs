//! The phases a forwarded request walks through, in order: admit, identify, limit, rewrite the
//! request, send, rewrite the response. Each reads and adds to one [`Visit`]; a phase that
//! refuses the request answers with `Err`, and the walk stops there.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hub_http::ApiError;

use super::body::{body_too_large, payload_too_large, take_body_token};
use super::headers::{
    address_key, client_address, forwarded_for, rate_limit_headers, remove_hop_by_hop,
};
use super::limit::{failures_spent, limit_for, limited, spend_failure};
use super::upgrade::{credential_from_subprotocol, join_upgraded, wants_upgrade};
use crate::limits::{Decision, PerMinute};
use crate::routes::{Route, Upstream};
use crate::{AppState, admission, identity, ws_watch};

/// The header a service key names the user it acts for in.
const X_USER_ID: HeaderName = HeaderName::from_static(hub_http::caller::USER_ID_HEADER);

/// What the phases learn about one forwarded request.
pub(super) struct Visit {
    /// Its row of the route table.
    pub(super) route: &'static Route,
    /// The service it goes to.
    pub(super) upstream: Upstream,
    /// The client's address as the rate limits count it.
    pub(super) client: std::net::IpAddr,
    /// `X-User-ID` as the client sent it.
    pub(super) claimed_user: Option<String>,
    /// The protocol the client asked to switch to (a WebSocket).
    pub(super) upgrade: Option<HeaderValue>,
    /// Who a failed credential counts against.
    subject: admission::Subject,
    /// Whether the request presents a credential, in its headers or its body.
    with_credential: bool,
    /// The user's code, taken from the body.
    pub(super) body_token: Option<String>,
    /// The client address's limit, spent before the body was read.
    spent_before_body: Option<(String, Decision)>,
}

/// The client's half of an upgrade, to be joined to the service's once it agrees.
pub(super) struct Joining {
    client_half: hyper::upgrade::OnUpgrade,
    /// A joined connection keeps its credential, to be checked again while it lasts.
    watch: Option<ws_watch::Watch>,
}

/// Admit, before the body is read and before any credential is looked up: a request with
/// credentials is held to its failed-credential budget, one without to its address's budget.
/// Then the body is read whole (see [`take_body_token`]).
pub(super) async fn admit(
    state: &AppState,
    peer: SocketAddr,
    route: &'static Route,
    upstream: Upstream,
    request: &mut Request,
) -> Result<Visit, Response> {
    if super::body::declared_too_large(state, request.headers()) {
        return Err(payload_too_large());
    }
    let claimed_user = request
        .headers()
        .get(&X_USER_ID)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let client = client_address(state, peer, request.headers());
    // A WebSocket (or other) upgrade passes through: the client's half and the service's half are
    // joined once the service agrees (101).
    let upgrade = request
        .headers()
        .get(header::UPGRADE)
        .cloned()
        .filter(|_| wants_upgrade(request.headers()));
    if route.vouched() && upgrade.is_some() {
        credential_from_subprotocol(request.headers_mut());
    }
    let with_credential = identity::presents_credential(request.headers());
    let (subject, key_to_read) = admission::failure_subject(state, request.headers(), client)
        .await
        .map_err(IntoResponse::into_response)?;
    let has_body =
        upgrade.is_none() && axum::body::HttpBody::size_hint(request.body()).upper() != Some(0);
    // A live key the gateway remembers, alone, needs no lookup: no budget to ask (the hot path
    // of service callers stays one limiter call).
    let gated = with_credential
        && (!matches!(subject, admission::Subject::Key(_))
            || identity::presents_more_than_a_key(request.headers()));
    let mut spent_before_body = None;
    if gated {
        if let Some(refused) = failures_spent(state, &subject).await {
            return Err(refused);
        }
    } else if !with_credential && has_body {
        spent_before_body = Some(spend_address(state, route, client).await?);
    }
    let mut visit = Visit {
        route,
        upstream,
        client,
        claimed_user,
        upgrade,
        subject,
        with_credential,
        body_token: None,
        spent_before_body,
    };
    if has_body {
        read_body(state, &mut visit, gated, request).await?;
    }
    if visit.with_credential && key_to_read {
        visit.subject = admission::read_key_now(state, request.headers(), visit.subject)
            .await
            .map_err(IntoResponse::into_response)?;
    }
    Ok(visit)
}

/// Spends one request of the client address's limit, before a body without credentials is read.
async fn spend_address(
    state: &AppState,
    route: &Route,
    client: std::net::IpAddr,
) -> Result<(String, Decision), Response> {
    let limit = state.config.limits.default;
    let key = address_key(client);
    let decision = state.limiter.check(&key, limit, true).await;
    if !decision.allowed {
        state.metrics.rate_limited(route.class);
        return Err(limited(limit, decision, "address"));
    }
    Ok((key, decision))
}

/// Reads the body; a code found in it is a credential, held to the failed-credential budget.
async fn read_body(
    state: &AppState,
    visit: &mut Visit,
    gated: bool,
    request: &mut Request,
) -> Result<(), Response> {
    visit.body_token = take_body_token(state, request, visit.route).await?;
    if visit.body_token.is_some() {
        if !gated && let Some(refused) = failures_spent(state, &visit.subject).await {
            return Err(refused);
        }
        visit.with_credential = true;
    }
    Ok(())
}

/// Identify: only the services behind it learn who calls, from the gateway: sign-in and
/// verify-session are open to anyone and check their own credentials.
pub(super) async fn identify(
    state: &AppState,
    visit: &Visit,
    request: &mut Request,
) -> Result<Option<identity::Recognised>, Response> {
    if !visit.route.vouched() {
        return Ok(None);
    }
    if let Some(token) = visit.body_token.as_deref() {
        // A code in the body counts as one in the header, with the same rules; it is taken
        // exactly as sent (the field's pattern), never trimmed as a header value would be.
        let value = HeaderValue::from_str(token)
            .ok()
            .filter(|_| hub_sessions::looks_like_token(token));
        let Some(value) = value else {
            spend_failure(state, &visit.subject).await;
            return Err(
                ApiError::unauthenticated("The session_token is not valid.").into_response()
            );
        };
        request
            .headers_mut()
            .insert(identity::X_SESSION_TOKEN, value);
    }
    let requirement = crate::resource::requirement(request.uri().path());
    match identity::resolve(state, request.headers()).await {
        Ok(Some(identity::Recognised::App { user, access })) => {
            let Some((resource, scope)) = requirement else {
                return Err(ApiError::forbidden(
                    "An app's access token opens the credit and MCP endpoints its scopes name, nothing else.",
                )
                .into_response());
            };
            if access.audience != resource.identifier(state) {
                // A token for one resource is refused at the other (RFC 8707).
                let error =
                    ApiError::unauthenticated("This access token was issued for another resource.")
                        .with_code("invalid_token");
                return Err(crate::resource::challenge(state, resource, error, None));
            }
            if !access.scopes.iter().any(|s| s == scope) {
                let error = ApiError::forbidden("insufficient scope");
                return Err(crate::resource::challenge(
                    state,
                    resource,
                    error,
                    Some(scope),
                ));
            }
            Ok(Some(identity::Recognised::App { user, access }))
        }
        Ok(None) => match requirement {
            // An MCP client learns where to sign in from the challenge (RFC 9728).
            Some((resource, _)) => Err(crate::resource::challenge(
                state,
                resource,
                ApiError::unauthenticated(
                    "Authenticate with an access token (Authorization: Bearer …), a session code or a service key.",
                ),
                None,
            )),
            None => Ok(None),
        },
        Ok(caller) => Ok(caller),
        Err(refused) => {
            if refused.counts {
                spend_failure(state, &visit.subject).await;
            }
            Err(match requirement {
                Some((resource, _)) if refused.error.status == StatusCode::UNAUTHORIZED => {
                    crate::resource::challenge(state, resource, refused.error, None)
                }
                _ => refused.error.into_response(),
            })
        }
    }
}

/// Limit: the request's limit (see [`limit_for`]), unless it was spent before the body was read.
pub(super) async fn limit(
    state: &AppState,
    visit: &Visit,
    caller: Option<&identity::Recognised>,
    headers: &HeaderMap,
) -> Result<(PerMinute, Decision), Response> {
    let (key, limit) = limit_for(state, visit, caller, headers);
    let decision = match &visit.spent_before_body {
        Some((spent, decision)) if *spent == key => *decision,
        _ => state.limiter.check(&key, limit, true).await,
    };
    if !decision.allowed {
        state.metrics.rate_limited(visit.route.class);
        let which = match key.split(':').next() {
            Some("google") => "sign_in",
            Some("verify") => "verify_session",
            Some("address") => "address",
            _ => "caller",
        };
        return Err(limited(limit, decision, which));
    }
    Ok((limit, decision))
}

/// Rewrite the request: what was addressed to the gateway alone goes first, then everything a
/// client may not say for itself, then the gateway's own headers; and the service's address.
pub(super) fn rewrite_request(
    state: &AppState,
    peer: SocketAddr,
    visit: &Visit,
    caller: Option<&identity::Recognised>,
    request: &mut Request,
) -> Result<Option<Joining>, ApiError> {
    let vouched = visit.route.vouched();
    let joining = visit.upgrade.as_ref().map(|_| Joining {
        client_half: hyper::upgrade::on(&mut *request),
        watch: vouched.then(|| ws_watch::Watch::new(state, request.headers())),
    });
    let headers = request.headers_mut();
    remove_hop_by_hop(headers);
    identity::strip_client_identity(headers);
    if vouched {
        // The services learn who calls from the gateway's headers; credentials stop here.
        for credential in &identity::CREDENTIAL_HEADERS {
            headers.remove(credential);
        }
        identity::vouch(state, caller, visit.claimed_user.as_deref(), headers)?;
    }
    if let Some(protocol) = &visit.upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol.clone());
    }
    forwarded_for(state, peer, headers);
    let target = state
        .bases
        .target(visit.upstream, request.uri().path_and_query());
    let Some(uri) = target else {
        return Err(ApiError::bad_request(
            "bad_request",
            "The request path cannot be forwarded.",
        ));
    };
    *request.uri_mut() = uri;
    *request.version_mut() = http::Version::HTTP_11;
    Ok(joining)
}

/// Send: to the service over the pooled client, the body held to `MAX_BODY_BYTES` as it
/// streams. The timeout covers the wait for the response's headers only: a streamed body or a
/// joined WebSocket runs as long as both ends want.
pub(super) async fn send(
    state: &AppState,
    visit: &Visit,
    request: Request,
) -> Result<http::Response<hyper::body::Incoming>, Response> {
    let body_limit = usize::try_from(state.config.max_body_bytes).unwrap_or(usize::MAX);
    // A request with no body (hyper knows: no length and no chunks) has nothing to hold back.
    let request = request.map(|body| {
        if axum::body::HttpBody::is_end_stream(&body) {
            body
        } else {
            Body::new(http_body_util::Limited::new(body, body_limit))
        }
    });
    let started = std::time::Instant::now();
    let sent =
        tokio::time::timeout(state.config.upstream_timeout, state.client.request(request)).await;
    state
        .metrics
        .upstream_latency(visit.upstream.name(), started);
    let upstream = visit.upstream;
    match sent {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) if body_too_large(&e) => Err(payload_too_large()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, service = ?upstream, "upstream unreachable");
            Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                "The service behind this endpoint is not answering.",
            )
            .into_response())
        }
        Err(_) => {
            tracing::warn!(service = ?upstream, "upstream timed out");
            Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "The service behind this endpoint took too long.",
            )
            .into_response())
        }
    }
}

/// Rewrite the response: an agreed upgrade joined, the hop's own headers removed, a credential
/// the service turned down counted, and the `RateLimit-*` headers added.
pub(super) async fn rewrite_response(
    state: &AppState,
    visit: &Visit,
    (limit, decision): (PerMinute, Decision),
    joining: Option<Joining>,
    mut response: http::Response<hyper::body::Incoming>,
) -> Response {
    let joined = match (joining, &visit.upgrade) {
        (Some(joining), Some(protocol)) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
            let service_half = hyper::upgrade::on(&mut response);
            tokio::spawn(join_upgraded(
                joining.client_half,
                service_half,
                joining.watch,
            ));
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
    if visit.with_credential && response.status() == StatusCode::UNAUTHORIZED {
        spend_failure(state, &visit.subject).await;
    }
    rate_limit_headers(response.headers_mut(), limit, decision);
    response
}
