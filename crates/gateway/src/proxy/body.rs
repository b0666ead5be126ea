//! Request bodies: read whole (at most `MAX_BODY_BYTES`, within `BODY_READ_TIMEOUT_SECONDS`)
//! before they are passed on, with the user's code taken out where it may be.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hub_http::ApiError;

use crate::AppState;
use crate::routes::Route;

/// 413 in the shared error shape.
pub(super) fn payload_too_large() -> Response {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "The request body is too large.",
    )
    .into_response()
}

/// Whether the declared `Content-Length` is over `MAX_BODY_BYTES`.
pub(super) fn declared_too_large(state: &AppState, headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|length| length > state.config.max_body_bytes)
}

/// Reads the request body whole, and takes the user's code out of it where it may be. A GPT
/// Action cannot set per-user headers, so the operations it uses take the user's code as a
/// declared body field, `session_token`: on `POST` verify-session it keys the limit by the code,
/// and on credit calls it names the caller and is taken out before the ledger sees the body.
pub(super) async fn take_body_token(
    state: &AppState,
    request: &mut Request,
    route: &Route,
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
        Ok(Err(_)) => return Err(payload_too_large()),
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
    let wanted = route.body_token && request.method() == http::Method::POST;
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
        // Exactly as the contract's pattern says: a code with spaces around it is not one.
        token = Some(found.clone());
        if route.vouched() {
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

/// Whether a failed upstream call failed because the client's (streamed) body passed the limit.
pub(super) fn body_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = e.source();
    }
    false
}
