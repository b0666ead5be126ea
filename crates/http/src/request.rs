//! Request ids and the error shape, as a middleware and in two halves for the gateway's own
//! server.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::{PendingError, REQUEST_ID_HEADER, generic_error, render};

/// [`REQUEST_ID_HEADER`] as a name made once (a name given as text is parsed at every look).
const REQUEST_ID: HeaderName = HeaderName::from_static(REQUEST_ID_HEADER);

/// Middleware: gives the request an id (keeping a sane one from upstream, the gateway), returns
/// it in `X-Request-Id`, and writes every error response in the shared shape with that id.
pub async fn request_context(mut request: Request, next: Next) -> Response {
    let (request_id, span) = begin_request(&mut request);
    let response = tracing::Instrument::instrument(next.run(request), span).await;
    finish_response(response, &request_id)
}

/// [`request_context`]'s first half, for a server that calls its handler without a middleware
/// stack (the gateway's proxy path): the request's id (kept from upstream when sane, else new and
/// set on the request) and the span every line logged while serving it belongs to.
pub fn begin_request<B>(request: &mut http::Request<B>) -> (HeaderValue, tracing::Span) {
    let request_id = match request.headers().get(&REQUEST_ID) {
        Some(value) if is_sane_request_id(value.as_bytes()) => value.clone(),
        _ => {
            let value = new_request_id();
            request.headers_mut().insert(REQUEST_ID, value.clone());
            value
        }
    };
    // Every line logged while the request is served carries its id.
    let span = tracing::info_span!(
        "request",
        request_id = %String::from_utf8_lossy(request_id.as_bytes()),
        method = %request.method(),
        path = %request.uri().path(),
    );
    (request_id, span)
}

/// [`request_context`]'s second half: the id in `X-Request-Id`, and an error response written in
/// the shared shape with it.
pub fn finish_response(mut response: Response, request_id: &HeaderValue) -> Response {
    response
        .headers_mut()
        .insert(REQUEST_ID, request_id.clone());
    let request_id = request_id.to_str().unwrap_or_default();
    if let Some(PendingError(error)) = response.extensions_mut().remove::<PendingError>() {
        return render(response, &error, request_id);
    }
    let status = response.status();
    // Bare or plain-text errors come from the framework (no route, wrong method, body too
    // large); a page or JSON a handler wrote is left as it is.
    let framework_made = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if (status.is_client_error() || status.is_server_error()) && framework_made {
        let error = generic_error(status);
        return render(response, &error, request_id);
    }
    response
}

/// A new request id: this process's random prefix and a counter, unique without a system call
/// per request (`3f9c0d2a7b41e865-00000000002a`). Written as hex into a fixed buffer: it is made for
/// every request the gateway forwards, and the formatting machinery cost more than the rest of it.
pub fn new_request_id() -> HeaderValue {
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u128() as u64);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut id = [b'-'; 29];
    // The prefix's 8 bytes and the counter's last 6 as lowercase hex; the slices are exactly
    // twice as long as the bytes, so neither call can fail.
    let _ = hex::encode_to_slice(prefix.to_be_bytes(), &mut id[..16]);
    let _ = hex::encode_to_slice(&n.to_be_bytes()[2..], &mut id[17..]);
    HeaderValue::from_bytes(&id).unwrap_or(HeaderValue::from_static("unknown"))
}

/// Request ids that may go into logs unchanged: short, and only `[A-Za-z0-9-_.:]`.
fn is_sane_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
}

/// Applies the request-context layer (request ids and the error shape) every service uses.
pub fn with_request_ids_and_errors(router: axum::Router) -> axum::Router {
    router.layer(axum::middleware::from_fn(request_context))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_one_prefix_and_a_counter_in_hex() {
        let (first, second) = (new_request_id(), new_request_id());
        let (first, second) = (first.to_str().unwrap(), second.to_str().unwrap());
        for id in [first, second] {
            let (prefix, counter) = id.split_once('-').unwrap();
            assert_eq!((prefix.len(), counter.len()), (16, 12), "{id}");
            assert!(
                id.bytes()
                    .all(|c| c == b'-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
            assert!(is_sane_request_id(id.as_bytes()));
        }
        assert_eq!(first[..16], second[..16], "one prefix per process");
        let counter = |id: &str| u64::from_str_radix(&id[17..], 16).unwrap();
        assert!(counter(second) > counter(first), "{first} then {second}");
    }
}
