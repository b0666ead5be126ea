//! The credit endpoints of the original request, and the refund, balance and history beside them.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hub_error::{ApiError, ApiJson, ApiQuery};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::extract::{IdempotencyKey, RequestId, respond};
use crate::AppState;
use crate::caller::{Caller, Principal, Scope};
use crate::error::CoreError;
use crate::ledger::{
    Debit, DebitOutcome, IdempotencyClaim, InvalidInput, MAX_PAGE, Refund, RefundOutcome,
    ServiceName, validate_amount, validate_metadata, validate_reason, validate_transaction_id,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    service: String,
    cost: i64,
}

/// `POST /api/mcp/v1/credits/check`: does the balance cover `cost`?
pub async fn check(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CheckBody>,
) -> Result<Response, CoreError> {
    let user_id = caller.acting_user(Scope::Check)?;
    ServiceName::parse(&body.service)?;
    let cost = validate_amount("cost", body.cost, 0)?;
    let balance = state
        .store
        .balance(user_id)
        .await?
        .ok_or(CoreError::UnknownUser)?;
    if balance >= cost {
        return Ok(Json(json!({ "sufficient": true, "balance": balance })).into_response());
    }
    let error = ApiError::from(CoreError::Insufficient { balance }).with_field("sufficient", false);
    Ok(error.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeductBody {
    service: String,
    cost: i64,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

/// `POST /api/mcp/v1/credits/deduct`: debit `cost` if the balance covers it.
pub async fn deduct(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(request_id): RequestId,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<DeductBody>,
) -> Result<Response, CoreError> {
    let user_id = caller.acting_user(Scope::Deduct)?;
    let service = ServiceName::parse(&body.service)?;
    let cost = validate_amount("cost", body.cost, 1)?;
    let metadata = validate_metadata(body.metadata)?;
    let claim = key.map(|key| {
        let input = json!({ "user_id": user_id, "service": service.as_str(), "cost": cost, "metadata": metadata });
        IdempotencyClaim::new(caller.idempotency_scope(), key, "deduct", &input)
    });
    let debit = Debit {
        user_id,
        service,
        cost,
        metadata,
        request_id,
    };
    respond(
        state.store.debit(&debit, claim.as_ref()).await?,
        render_debit,
    )
}

fn render_debit(outcome: DebitOutcome) -> Response {
    match outcome {
        DebitOutcome::Debited { transaction } => Json(json!({
            "status": "ok",
            "new_balance": transaction.balance_after,
            "transaction_id": transaction.id,
        }))
        .into_response(),
        DebitOutcome::Insufficient { balance } => {
            CoreError::Insufficient { balance }.into_response()
        }
        DebitOutcome::UnknownUser => CoreError::UnknownUser.into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    transaction_id: String,
    #[serde(default)]
    amount: Option<i64>,
    reason: String,
}

/// `POST /api/mcp/v1/credits/refund`: reverse all or part of one debit. For trusted callers:
/// service keys with `credits:refund` and operators, never the user whose debit it was.
pub async fn refund(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(request_id): RequestId,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<RefundBody>,
) -> Result<Response, CoreError> {
    caller.authorize(&state, Scope::Refund).await?;
    validate_transaction_id(&body.transaction_id)?;
    let amount = body
        .amount
        .map(|a| validate_amount("amount", a, 1))
        .transpose()?;
    let reason = validate_reason(&body.reason)?;
    let (owner_must_be, owner_must_not_be) = match &caller.principal {
        Principal::User(id) => (None, Some(*id)),
        Principal::ServiceKey { .. } | Principal::System => (caller.user_id, None),
    };
    let claim = key.map(|key| {
        let input =
            json!({ "transaction_id": body.transaction_id, "amount": amount, "reason": reason });
        IdempotencyClaim::new(caller.idempotency_scope(), key, "refund", &input)
    });
    let refund = Refund {
        transaction_id: body.transaction_id,
        amount,
        reason,
        request_id,
        owner_must_be,
        owner_must_not_be,
    };
    respond(
        state.store.refund(&refund, claim.as_ref()).await?,
        render_refund,
    )
}

fn render_refund(outcome: RefundOutcome) -> Response {
    match outcome {
        RefundOutcome::Refunded {
            transaction,
            remaining,
        } => Json(json!({
            "status": "ok",
            "transaction_id": transaction.id,
            "refund_of": transaction.refund_of,
            "refunded": transaction.amount,
            "new_balance": transaction.balance_after,
            "remaining_refundable": remaining,
        }))
        .into_response(),
        RefundOutcome::UnknownTransaction => CoreError::UnknownTransaction.into_response(),
        RefundOutcome::NotADebit => CoreError::NotADebit.into_response(),
        RefundOutcome::AlreadyRefunded => CoreError::AlreadyRefunded.into_response(),
        RefundOutcome::ExceedsRemaining { remaining } => {
            CoreError::RefundExceedsRemaining { remaining }.into_response()
        }
        RefundOutcome::BalanceLimit => CoreError::BalanceLimit.into_response(),
        RefundOutcome::OwnDebit => {
            CoreError::Forbidden("Nobody refunds their own debit.".into()).into_response()
        }
    }
}

/// `GET /api/mcp/v1/credits/balance`.
pub async fn balance(State(state): State<AppState>, caller: Caller) -> Result<Response, CoreError> {
    let user_id = caller.acting_user(Scope::Check)?;
    let balance = state
        .store
        .balance(user_id)
        .await?
        .ok_or(CoreError::UnknownUser)?;
    Ok(Json(json!({ "user_id": user_id, "balance": balance })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    cursor: Option<String>,
}

/// `GET /api/mcp/v1/credits/transactions?limit=&cursor=`: newest first.
pub async fn transactions(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Response, CoreError> {
    let user_id = caller.acting_user(Scope::Check)?;
    let limit = query.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE {
        return Err(CoreError::Invalid(InvalidInput {
            code: "invalid_limit",
            message: format!("limit must be 1 to {MAX_PAGE}"),
            too_large: false,
        }));
    }
    let cursor = query.cursor.filter(|c| !c.is_empty());
    if let Some(cursor) = &cursor {
        validate_transaction_id(cursor)?;
    }
    let page = state
        .store
        .transactions(user_id, limit, cursor.as_deref())
        .await?
        .ok_or(CoreError::UnknownUser)?;
    Ok((StatusCode::OK, Json(page)).into_response())
}
