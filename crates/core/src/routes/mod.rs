//! HTTP to ledger calls and back.

mod admin;
mod api;
mod audit;
mod credits;
mod grants;
mod health;
mod holds;
mod keys;
mod statement;
mod usage;
mod whole;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

/// The largest request body any endpoint takes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What an account holds, if it exists and an operator has not disabled it: the first step of
/// every read of a user's credits.
async fn live_holdings(
    state: &AppState,
    user_id: uuid::Uuid,
) -> Result<crate::ledger::Holdings, crate::error::CoreError> {
    let holdings = state
        .store
        .holdings(user_id)
        .await?
        .ok_or(crate::error::CoreError::UnknownUser)?;
    if holdings.frozen {
        return Err(crate::error::CoreError::AccountDisabled);
    }
    Ok(holdings)
}

/// The public API: each route registered with its OpenAPI operation, so the two cannot differ.
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(credits::check))
        .routes(routes!(credits::deduct))
        .routes(routes!(credits::refund))
        .routes(routes!(statement::balance))
        .routes(routes!(statement::transactions))
        .routes(routes!(grants::list))
        .routes(routes!(holds::reserve))
        .routes(routes!(holds::capture))
        .routes(routes!(holds::release))
        .routes(routes!(crate::payments::routes::checkout))
        .routes(routes!(admin::grant))
        .routes(routes!(admin::refund))
        .routes(routes!(admin::adjust))
        .routes(routes!(audit::list))
        .routes(routes!(keys::list, keys::create))
        .routes(routes!(keys::revoke))
        .routes(routes!(usage::report))
        .routes(routes!(crate::webhooks::routes::deliveries))
}

/// Every route of the core service; `GET /openapi.json` answers the paths and schemas of its public
/// API, which the gateway merges into the whole document.
pub fn router(state: AppState) -> Router {
    let (public, document) = api().split_for_parts();
    public
        .route(
            "/openapi.json",
            get(move || std::future::ready(axum::Json(document))),
        )
        .route("/webhooks/stripe", post(crate::payments::webhook))
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

mod extract {
    //! Header extractors shared by the credit routes.

    use axum::extract::FromRequestParts;
    use axum::http::HeaderValue;
    use axum::http::request::Parts;
    use axum::response::Response;

    use crate::error::CoreError;
    use crate::ledger::{Idempotent, InvalidInput};

    /// The `Idempotency-Key` header: 1–255 visible ASCII characters, if present.
    pub struct IdempotencyKey(pub Option<String>);

    impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
        type Rejection = CoreError;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
            let Some(value) = parts.headers.get("idempotency-key") else {
                return Ok(Self(None));
            };
            let bytes = value.as_bytes();
            if bytes.is_empty() || bytes.len() > 255 || !bytes.iter().all(|b| b.is_ascii_graphic())
            {
                return Err(CoreError::Invalid(InvalidInput {
                    code: "invalid_idempotency_key",
                    message: "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
                    too_large: false,
                }));
            }
            Ok(Self(Some(String::from_utf8_lossy(bytes).into_owned())))
        }
    }

    /// The request's id, as the request-id layer set it.
    pub struct RequestId(pub Option<String>);

    impl<S: Send + Sync> FromRequestParts<S> for RequestId {
        type Rejection = std::convert::Infallible;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
            Ok(Self(
                parts
                    .headers
                    .get(hub_http::REQUEST_ID_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            ))
        }
    }

    /// What live holds of the user set aside now, for a 402 that names them (0 if unknown).
    pub async fn held_now(state: &crate::AppState, user_id: uuid::Uuid) -> i64 {
        match state.store.holdings(user_id).await {
            Ok(Some(holdings)) => holdings.held,
            _ => 0,
        }
    }

    /// Renders a possibly replayed outcome; a replay is marked `Idempotent-Replayed: true`.
    pub fn respond<T>(
        result: Idempotent<T>,
        render: impl FnOnce(T) -> Response,
    ) -> Result<Response, CoreError> {
        match result {
            Idempotent::Fresh(outcome) => Ok(render(outcome)),
            Idempotent::Replayed(outcome) => {
                let mut response = render(outcome);
                response
                    .headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
                Ok(response)
            }
            Idempotent::KeyReused => Err(CoreError::IdempotencyKeyReused),
        }
    }
}
