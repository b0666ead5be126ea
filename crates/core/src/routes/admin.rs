//! Operators' endpoints.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use hub_http::ApiJson;
use serde::Deserialize;
use uuid::Uuid;

use super::extract::{IdempotencyKey, RequestId, respond};
use crate::AppState;
use crate::caller::{Caller, Permissions, Scope};
use crate::error::CoreError;
use crate::ledger::{Grant, GrantOutcome, IdempotencyClaim, validate_amount, validate_reason};

/// A grant of credits.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    /// The user to credit.
    user_id: Uuid,
    /// Credits to add, 1 to 10^12.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    #[serde(deserialize_with = "super::whole::required")]
    amount: i64,
    /// Why: 1 to 500 characters, not all blank, without control characters.
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    reason: String,
}

/// `POST /api/admin/credits/grant`: for callers with `credits:grant`.
#[utoipa::path(
    post,
    path = "/api/admin/credits/grant",
    operation_id = "grantCredits",
    tag = "admin",
    summary = "Add credits to a user's balance",
    description = "Adds credits to a user's balance (a purchase, a gift). For service keys with credits:grant and operators.",
    request_body = GrantBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters; repeats within 24 hours replay the first answer.", min_length = 1, max_length = 255, pattern = r"^[\x21-\x7E]{1,255}$")),
    responses(
        (status = 200, description = "The grant's transaction.", body = crate::ledger::Transaction),
        (status = 404, description = "No such user.", body = super::api::ErrorBody),
        (status = 409, description = "The balance would pass its maximum of 10^15 credits.", body = super::api::ErrorBody),
        (status = 422, description = "A field is not valid, or the Idempotency-Key was used with another request.", body = super::api::ErrorBody),
    ),
    security(("serviceKey" = []), ("bearerJwt" = []))
)]
pub async fn grant(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(request_id): RequestId,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<GrantBody>,
) -> Result<Response, CoreError> {
    caller.authorize(&state, Scope::Grant).await?;
    let amount = validate_amount("amount", body.amount, 1)?;
    let reason = validate_reason(&body.reason)?;
    let claim = key.map(|key| {
        let input =
            serde_json::json!({ "user_id": body.user_id, "amount": amount, "reason": reason });
        IdempotencyClaim::new(caller.idempotency_scope(), key, "grant", &input)
    });
    let grant = Grant {
        user_id: body.user_id,
        amount,
        reason,
        request_id,
    };
    respond(
        state.store.grant(&grant, claim.as_ref()).await?,
        render_grant,
    )
}

fn render_grant(outcome: GrantOutcome) -> Response {
    match outcome {
        GrantOutcome::Granted { transaction } => Json(transaction).into_response(),
        GrantOutcome::UnknownUser => CoreError::UnknownUser.into_response(),
        GrantOutcome::BalanceLimit => CoreError::BalanceLimit.into_response(),
    }
}
