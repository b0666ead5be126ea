//! The shared error shape: `{"error": {"code", "message", "request_id"}}`, with an endpoint's own
//! fields beside `error` where its contract names them.
//!
//! Handlers return [`ApiError`]; the [`request_context`] middleware fills in the request id and turns
//! every other error response (unknown route, wrong method, body too large) into the same shape.
#![forbid(unsafe_code)]

mod address;
pub mod caller;
mod extract;
mod request;
mod shutdown;

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

pub use address::{address_for_limits, client_address, is_trusted};
pub use extract::{ApiJson, ApiQuery};
pub use request::{
    begin_request, finish_response, new_request_id, request_context, with_request_ids_and_errors,
};
pub use shutdown::shutdown_signal;

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

    /// 403 `account_disabled`: an operator disabled the account the request acts for.
    pub fn account_disabled() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "account_disabled",
            "This account is disabled; its owner should contact the operator.",
        )
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
pub(crate) struct PendingError(pub(crate) ApiError);

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

pub(crate) fn render(response: Response, error: &ApiError, request_id: &str) -> Response {
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = error.body(request_id).to_string();
    Response::from_parts(parts, axum::body::Body::from(body))
}

pub(crate) fn generic_error(status: StatusCode) -> ApiError {
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
}
