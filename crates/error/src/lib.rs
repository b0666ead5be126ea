//! The shared error shape: `{"error": {"code", "message", "request_id"}}`, with an endpoint's own
//! fields beside `error` where its contract names them.
//!
//! Handlers return [`ApiError`]; the [`request_context`] middleware fills in the request id and turns
//! every other error response (unknown route, wrong method, body too large) into the same shape.
#![forbid(unsafe_code)]

use std::borrow::Cow;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

/// The header that carries the request id between the gateway, the services and the caller.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// An error answered to a caller: status, a stable snake_case code, a message for humans, and
/// optional fields that sit beside `error` in the body.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable machine-readable code.
    pub code: Cow<'static, str>,
    /// A sentence for the human reading the response.
    pub message: String,
    /// Fields placed beside `error` at the top level of the body.
    pub fields: Map<String, Value>,
    /// Seconds to put in `Retry-After`, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with no extra fields.
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            fields: Map::new(),
            retry_after: None,
        }
    }

    /// The same error with another code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Cow::Borrowed(code);
        self
    }

    /// Adds a field beside `error`.
    pub fn with_field(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(name.to_owned(), value.into());
        self
    }

    /// 400 with the given code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 422 with the given code.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 401 `unauthenticated`.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// An opaque 500; the cause is logged, never sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Something went wrong on our side. The request id identifies it in our logs.",
        )
    }

    /// The JSON body for the given request id.
    pub fn body(&self, request_id: &str) -> Value {
        let mut body = self.fields.clone();
        body.insert(
            "error".to_owned(),
            json!({ "code": self.code, "message": self.message, "request_id": request_id }),
        );
        Value::Object(body)
    }
}

/// The shape of every error body, for API documents.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    /// What went wrong.
    error: ErrorDetail,
}

/// The `error` object of an error body.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// A stable snake_case code, e.g. `insufficient_credits`.
    code: String,
    /// A sentence for the human reading the response.
    message: String,
    /// The request's id, also in the `X-Request-Id` header and in our logs.
    request_id: String,
}

/// Marks an error response whose body [`request_context`] writes once it knows the request id.
#[derive(Debug, Clone)]
struct PendingError(ApiError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(PendingError(self));
        response
    }
}

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
    let request_id = match request.headers().get(REQUEST_ID_HEADER) {
        Some(value) if is_sane_request_id(value.as_bytes()) => value.clone(),
        _ => {
            let value = new_request_id();
            request
                .headers_mut()
                .insert(REQUEST_ID_HEADER, value.clone());
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
        .insert(REQUEST_ID_HEADER, request_id.clone());
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
/// per request (`3f9c0d2a7b41e865-00000000002a`).
pub fn new_request_id() -> HeaderValue {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let random = uuid::Uuid::new_v4().as_u128() as u64;
        format!("{random:016x}")
    });
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    HeaderValue::from_str(&format!("{prefix}-{n:012x}"))
        .unwrap_or(HeaderValue::from_static("unknown"))
}

/// Request ids that may go into logs unchanged: short, and only `[A-Za-z0-9-_.:]`.
fn is_sane_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
}

fn render(response: Response, error: &ApiError, request_id: &str) -> Response {
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = error.body(request_id).to_string();
    Response::from_parts(parts, axum::body::Body::from(body))
}

fn generic_error(status: StatusCode) -> ApiError {
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "No such endpoint."),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "This endpoint does not accept that method.",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "The request body is too large."),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "Send the body as application/json.",
        ),
        StatusCode::REQUEST_TIMEOUT => ("request_timeout", "The request took too long."),
        s if s.is_server_error() => ("internal_error", "Something went wrong on our side."),
        _ => ("bad_request", "The request could not be understood."),
    };
    ApiError::new(status, code, message)
}

/// A JSON body extractor whose rejections keep to the shared shape: malformed JSON is a 400,
/// well-formed JSON with wrong fields or values a 422, an oversized body a 413.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            ApiError::unprocessable("invalid_field", clean_serde_message(&e.body_text()))
        }
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::bad_request("malformed_json", clean_serde_message(&e.body_text()))
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send the body as JSON with Content-Type: application/json.",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "The request body is too large.",
            )
        }
        other => ApiError::bad_request("bad_request", other.body_text()),
    }
}

/// Axum's messages start with its own preamble; callers need only serde's sentence.
fn clean_serde_message(text: &str) -> String {
    text.split_once(": ")
        .map(|(_, rest)| rest)
        .unwrap_or(text)
        .to_owned()
}

/// A query-string extractor whose rejections keep to the shared shape (422).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::unprocessable(
                "invalid_query",
                clean_serde_message(&e.body_text()),
            )),
            Err(other) => Err(ApiError::bad_request("invalid_query", other.body_text())),
        }
    }
}

/// Whether `address` is one of the `trusted` proxies (single addresses or CIDR ranges).
pub fn is_trusted(trusted: &[ipnet::IpNet], address: std::net::IpAddr) -> bool {
    let address = address.to_canonical();
    trusted.iter().any(|net| net.contains(&address))
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the address that proxy
/// names. Every `X-Forwarded-For` line counts, as one list (a proxy may add a line rather than
/// extend the last one); it is walked from the right, past trusted proxies, to the first address
/// that is not one. A hop that does not parse ends the walk: what lies to its left cannot be
/// told apart from what the client wrote, so the last trusted hop stands for the client.
pub fn client_address(
    peer: std::net::SocketAddr,
    headers: &http::HeaderMap,
    trusted: &[ipnet::IpNet],
) -> std::net::IpAddr {
    let mut client = peer.ip().to_canonical();
    if trusted.is_empty() {
        return client;
    }
    for hop in hops_in_order(headers) {
        if !is_trusted(trusted, client) {
            break;
        }
        match hop {
            Some(address) => client = address,
            None => break,
        }
    }
    client
}

/// The hops of every `X-Forwarded-For` line, rightmost first; `None` for one that does not parse
/// (a line that is not text counts as one such hop).
fn hops_in_order(headers: &http::HeaderMap) -> impl Iterator<Item = Option<std::net::IpAddr>> + '_ {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .rev()
        .flat_map(|line| {
            let (text, not_text) = match line.to_str() {
                Ok(text) => (Some(text.rsplit(',').map(parse_hop)), None),
                Err(_) => (None, Some(None)),
            };
            text.into_iter().flatten().chain(not_text)
        })
}

/// One hop: an address, possibly with a port (`203.0.113.7:4711`, `[2001:db8::1]:443`).
fn parse_hop(hop: &str) -> Option<std::net::IpAddr> {
    let hop = hop.trim();
    hop.parse::<std::net::IpAddr>()
        .or_else(|_| hop.parse::<std::net::SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|address| address.to_canonical())
}

/// The address a rate limit counts a client by: an IPv4 address as it is, an IPv6 one by its
/// /64 (one subscriber's network: a client can pick any address within it).
pub fn address_for_limits(address: std::net::IpAddr) -> std::net::IpAddr {
    match address.to_canonical() {
        std::net::IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            std::net::IpAddr::V6(std::net::Ipv6Addr::from(network))
        }
        v4 => v4,
    }
}

/// Applies the request-context layer (request ids and the error shape) every service uses.
pub fn with_request_ids_and_errors(router: axum::Router) -> axum::Router {
    router.layer(axum::middleware::from_fn(request_context))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        cost: i64,
    }

    async fn call(body: &str) -> (StatusCode, Value, Option<String>) {
        let app = with_request_ids_and_errors(axum::Router::new().route(
            "/x",
            post(|ApiJson(b): ApiJson<Body>| async move { b.cost.to_string() }),
        ));
        let response = app
            .oneshot(
                http::Request::post("/x")
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(body.to_owned()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let id = response
            .headers()
            .get(REQUEST_ID_HEADER)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            id,
        )
    }

    #[tokio::test]
    async fn malformed_json_is_400_and_wrong_types_are_422_in_the_shared_shape() {
        let (status, body, id) = call("{not json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "malformed_json");
        assert_eq!(body["error"]["request_id"].as_str(), id.as_deref());

        let (status, body, _) = call(r#"{"cost": 1.5}"#).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["error"]["code"], "invalid_field");
        assert!(body["error"]["message"].as_str().unwrap().contains("cost"));
    }

    #[tokio::test]
    async fn a_sane_upstream_request_id_is_kept_and_an_odd_one_replaced() {
        let app = with_request_ids_and_errors(axum::Router::new());
        for (sent, kept) in [("gw-123", true), ("bad id\u{7f}", false), ("", false)] {
            let mut request = http::Request::get("/nowhere");
            if let Ok(value) = HeaderValue::from_str(sent) {
                request = request.header(REQUEST_ID_HEADER, value);
            }
            let response = app
                .clone()
                .oneshot(request.body(axum::body::Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::NOT_FOUND);
            let id = response.headers()[REQUEST_ID_HEADER]
                .to_str()
                .unwrap()
                .to_owned();
            assert_eq!(id == sent, kept, "{sent:?} -> {id:?}");
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(body["error"]["code"], "not_found");
            assert_eq!(body["error"]["request_id"], id.as_str());
        }
    }

    #[tokio::test]
    async fn extra_fields_sit_beside_error() {
        let err = ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_credits",
            "short",
        )
        .with_field("balance", 5);
        let body = err.body("rid");
        assert_eq!(body["balance"], 5);
        assert_eq!(body["error"]["request_id"], "rid");
    }

    fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn forwarded(lines: &[&str]) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        for line in lines {
            headers.append("x-forwarded-for", HeaderValue::from_str(line).unwrap());
        }
        headers
    }

    fn address(s: &str) -> std::net::IpAddr {
        s.parse().unwrap()
    }

    fn peer(s: &str) -> std::net::SocketAddr {
        std::net::SocketAddr::new(address(s), 40000)
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = nets(&["10.0.0.0/8"]);
        let headers = forwarded(&["1.1.1.1"]);
        assert_eq!(
            client_address(peer("203.0.113.9"), &headers, &trusted),
            address("203.0.113.9")
        );
        assert_eq!(
            client_address(peer("10.0.0.1"), &headers, &[]),
            address("10.0.0.1"),
            "nothing trusted: the peer"
        );
    }

    #[test]
    fn the_walk_goes_from_the_right_past_trusted_proxies_in_ranges() {
        let trusted = nets(&["10.0.0.0/8", "fd00::/8", "198.51.100.4/32"]);
        // The client wrote a made-up hop; two proxies of ours appended what they saw.
        let headers = forwarded(&["6.6.6.6, 203.0.113.7, 10.1.2.3"]);
        assert_eq!(
            client_address(peer("198.51.100.4"), &headers, &trusted),
            address("203.0.113.7")
        );
        let headers = forwarded(&["2001:db8::1, fd12::5"]);
        assert_eq!(
            client_address(peer("fd00::1"), &headers, &trusted),
            address("2001:db8::1")
        );
        // Every hop trusted: the leftmost.
        let headers = forwarded(&["10.9.9.9"]);
        assert_eq!(
            client_address(peer("10.0.0.1"), &headers, &trusted),
            address("10.9.9.9")
        );
        // An IPv4 peer on a dual-stack socket is trusted as its IPv4 self.
        assert_eq!(
            client_address(
                peer("::ffff:10.0.0.1"),
                &forwarded(&["192.0.2.1"]),
                &trusted
            ),
            address("192.0.2.1")
        );
    }

    #[test]
    fn every_forwarded_for_line_counts_the_last_one_rightmost() {
        let trusted = nets(&["10.0.0.0/8"]);
        // A proxy that adds a line of its own instead of extending the client's.
        let headers = forwarded(&["6.6.6.6", "203.0.113.7"]);
        assert_eq!(
            client_address(peer("10.0.0.1"), &headers, &trusted),
            address("203.0.113.7")
        );
        let headers = forwarded(&["203.0.113.7", "10.0.0.2, 10.0.0.3"]);
        assert_eq!(
            client_address(peer("10.0.0.1"), &headers, &trusted),
            address("203.0.113.7"),
            "the walk crosses lines"
        );
    }

    #[test]
    fn a_hop_that_does_not_parse_ends_the_walk() {
        let trusted = nets(&["10.0.0.0/8"]);
        let headers = forwarded(&["1.1.1.1, unknown, 10.0.0.3"]);
        assert_eq!(
            client_address(peer("10.0.0.1"), &headers, &trusted),
            address("10.0.0.3"),
            "not 1.1.1.1, which anyone could have written"
        );
        let headers = forwarded(&["1.1.1.1", ""]);
        assert_eq!(
            client_address(peer("10.0.0.1"), &headers, &trusted),
            address("10.0.0.1")
        );
        let mut headers = forwarded(&["1.1.1.1"]);
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(
            client_address(peer("10.0.0.1"), &headers, &trusted),
            address("10.0.0.1"),
            "a line that is not text is a hop that does not parse"
        );
        // Ports are allowed.
        let headers = forwarded(&["[2001:db8::7]:443, 203.0.113.7:4711"]);
        assert_eq!(
            client_address(peer("10.0.0.1"), &headers, &trusted),
            address("203.0.113.7")
        );
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64() {
        assert_eq!(
            address_for_limits(address("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            address("2001:db8:1:2::")
        );
        assert_eq!(
            address_for_limits(address("2001:db8:1:2::1")),
            address_for_limits(address("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            address_for_limits(address("2001:db8:1:2::1")),
            address_for_limits(address("2001:db8:1:3::1"))
        );
        assert_eq!(
            address_for_limits(address("203.0.113.7")),
            address("203.0.113.7")
        );
        assert_eq!(
            address_for_limits(address("::ffff:203.0.113.7")),
            address("203.0.113.7")
        );
    }
}
