//! Operators' endpoints.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use hub_error::ApiJson;
use serde::Deserialize;
use uuid::Uuid;

use super::extract::{IdempotencyKey, RequestId, respond};
use crate::AppState;
use crate::caller::{Caller, Scope};
use crate::error::CoreError;
use crate::ledger::{Grant, GrantOutcome, IdempotencyClaim, validate_amount, validate_reason};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    user_id: Uuid,
    amount: i64,
    reason: String,
}

/// `POST /api/admin/credits/grant`: for callers with `credits:grant`.
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
