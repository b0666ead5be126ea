//! The credit endpoints of the original request (check and deduct) and the refund beside them;
//! the balance and history are in [`super::statement`].

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use hub_http::ApiJson;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::api::{ErrorBody, InsufficientCredits};

use super::extract::{IdempotencyKey, RequestId, held_now, respond};
use crate::AppState;
use crate::caller::{Caller, Permissions, Principal, Scope};
use crate::error::{CoreError, insufficient};
use crate::ledger::admin::AuditEntry;
use crate::ledger::{
    Debit, DebitOutcome, IdempotencyClaim, Refund, RefundOutcome, ServiceName, validate_amount,
    validate_metadata, validate_reason, validate_transaction_id,
};

/// What a call would cost.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    /// The service asking, e.g. `sora2`: 1 to 64 of a-z, 0-9, `-`, `_`, `.`.
    #[schema(
        example = "sora2",
        min_length = 1,
        max_length = 64,
        pattern = r"^[a-z0-9._-]{1,64}$"
    )]
    service: String,
    /// Credits the call would cost, 0 to 10^12 (0 just reads the balance).
    #[schema(example = 30, minimum = 0, maximum = 1_000_000_000_000_i64)]
    #[serde(deserialize_with = "super::whole::required")]
    cost: i64,
}

/// The balance covers the cost.
#[derive(Serialize, ToSchema)]
pub struct CheckOk {
    /// Always `true` here (a shortfall is a 402).
    pub sufficient: bool,
    /// What the user may spend: their balance less credits held for calls in progress.
    pub balance: i64,
}

/// `POST /api/mcp/v1/credits/check`: does the balance cover `cost`?
#[utoipa::path(
    post,
    path = "/api/mcp/v1/credits/check",
    operation_id = "checkCredits",
    tag = "credits",
    summary = "Check whether the user's balance covers a cost",
    description = "Answers whether the user's credit balance covers `cost` and what the balance is, without changing it. Server-side callers name the user in X-User-ID with a service key; a GPT sends the user's session_token in the body.",
    request_body = CheckBody,
    params(("X-User-ID" = Option<Uuid>, Header, description = "The user a service key acts for. End users act only as themselves.")),
    responses(
        (status = 200, description = "The balance covers the cost.", body = CheckOk),
        (status = 402, description = "The balance does not cover the cost.", body = InsufficientCredits),
        (status = 403, description = "The account is disabled (account_disabled), or the caller lacks the permission.", body = ErrorBody),
        (status = 404, description = "No such user.", body = ErrorBody),
    ),
    security(("sessionToken" = []), ("serviceKey" = []), ("bearerJwt" = []))
)]
pub async fn check(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CheckBody>,
) -> Result<Response, CoreError> {
    let user_id = caller.acting_user(Scope::Check)?;
    ServiceName::parse(&body.service)?;
    let cost = validate_amount("cost", body.cost, 0)?;
    // What may be spent: the balance less live holds.
    let holdings = super::live_holdings(&state, user_id).await?;
    let balance = holdings.available();
    if balance >= cost {
        return Ok(Json(CheckOk {
            sufficient: true,
            balance,
        })
        .into_response());
    }
    let error = insufficient(balance, holdings.held, cost).with_field("sufficient", false);
    Ok(error.into_response())
}

/// A debit.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeductBody {
    /// The service spending, e.g. `sora2`: 1 to 64 of a-z, 0-9, `-`, `_`, `.`.
    #[schema(
        example = "sora2",
        min_length = 1,
        max_length = 64,
        pattern = r"^[a-z0-9._-]{1,64}$"
    )]
    service: String,
    /// Credits to take, 1 to 10^12.
    #[schema(example = 30, minimum = 1, maximum = 1_000_000_000_000_i64)]
    #[serde(deserialize_with = "super::whole::required")]
    cost: i64,
    /// What the credits paid for (a JSON object of at most 16 KiB, without U+0000), kept with the transaction.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    metadata: Option<Map<String, Value>>,
}

/// The debit was made.
#[derive(Serialize, ToSchema)]
pub struct DeductOk {
    /// `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
    /// The balance after the debit.
    pub new_balance: i64,
    /// The debit's id, for a refund.
    pub transaction_id: String,
}

/// `POST /api/mcp/v1/credits/deduct`: debit `cost` if the balance covers it.
#[utoipa::path(
    post,
    path = "/api/mcp/v1/credits/deduct",
    operation_id = "deductCredits",
    tag = "credits",
    summary = "Spend credits",
    description = "Takes `cost` credits from the user's balance in one atomic step, or nothing if the balance is short (402). Send an Idempotency-Key to retry safely: a repeat answers the first outcome again.",
    request_body = DeductBody,
    params(
        ("X-User-ID" = Option<Uuid>, Header, description = "The user a service key acts for. End users act only as themselves."),
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters; repeats within 24 hours replay the first answer.", min_length = 1, max_length = 255, pattern = r"^[\x21-\x7E]{1,255}$"),
    ),
    responses(
        (status = 200, description = "Debited.", body = DeductOk),
        (status = 402, description = "The balance does not cover the cost; nothing was taken.", body = InsufficientCredits),
        (status = 403, description = "The account is disabled (account_disabled), or the caller lacks the permission.", body = ErrorBody),
        (status = 404, description = "No such user.", body = ErrorBody),
        (status = 422, description = "A field is missing or not valid, or the Idempotency-Key was used with another request.", body = ErrorBody),
    ),
    security(("sessionToken" = []), ("serviceKey" = []), ("bearerJwt" = []))
)]
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
        app_grant: caller.grant.clone(),
    };
    let outcome = state.store.debit(&debit, claim.as_ref()).await?;
    let held = match outcome.outcome() {
        Some(DebitOutcome::Insufficient { .. }) => held_now(&state, user_id).await,
        _ => 0,
    };
    respond(outcome, |outcome| render_debit(outcome, held, cost))
}

fn render_debit(outcome: DebitOutcome, held: i64, cost: i64) -> Response {
    match outcome {
        DebitOutcome::Debited { transaction } => Json(DeductOk {
            status: "ok",
            new_balance: transaction.balance_after,
            transaction_id: transaction.id,
        })
        .into_response(),
        DebitOutcome::Insufficient { balance } => insufficient(balance, held, cost).into_response(),
        DebitOutcome::AppCapReached(cap) => CoreError::AppCap(cap).into_response(),
        DebitOutcome::AccountDisabled => CoreError::AccountDisabled.into_response(),
        DebitOutcome::UnknownUser => CoreError::UnknownUser.into_response(),
    }
}

/// A refund of one debit.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    /// The debit to reverse (`txn_…`): 1 to 64 of A-Z, a-z, 0-9, `_`, `-`.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    transaction_id: String,
    /// How much to return, 1 to 10^12 (default: all that is left of the debit).
    #[serde(default, deserialize_with = "super::whole::optional")]
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    amount: Option<i64>,
    /// Why: 1 to 500 characters, not all blank, without control characters.
    #[schema(
        example = "video generation failed",
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    reason: String,
}

/// The refund was made.
#[derive(Serialize, ToSchema)]
pub struct RefundOk {
    /// `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
    /// The refund's own transaction id.
    pub transaction_id: String,
    /// The debit it reverses.
    pub refund_of: Option<String>,
    /// Credits returned.
    pub refunded: i64,
    /// The balance after the refund.
    pub new_balance: i64,
    /// What of the debit may still be refunded.
    pub remaining_refundable: i64,
}

/// `POST /api/mcp/v1/credits/refund`: reverse all or part of one debit. For trusted callers:
/// service keys with `credits:refund` and operators, never the user whose debit it was.
#[utoipa::path(
    post,
    path = "/api/mcp/v1/credits/refund",
    operation_id = "refundCredits",
    tag = "credits",
    summary = "Return credits of a debit",
    description = "Returns all or part of one debit to the user. For service keys with credits:refund and operators; never open to end users. Refunds of one debit never add up to more than it.",
    request_body = RefundBody,
    params(
        ("X-User-ID" = Option<Uuid>, Header, description = "The user whose debit it is, when a service key acts for them."),
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters; repeats within 24 hours replay the first answer.", min_length = 1, max_length = 255, pattern = r"^[\x21-\x7E]{1,255}$"),
    ),
    responses(
        (status = 200, description = "Refunded.", body = RefundOk),
        (status = 404, description = "No such transaction.", body = ErrorBody),
        (status = 409, description = "Not a debit, already refunded in full, more asked than remains, or the balance would pass its maximum of 10^15 credits.", body = ErrorBody),
        (status = 422, description = "A field is not valid, or the Idempotency-Key was used with another request.", body = ErrorBody),
    ),
    security(("serviceKey" = []))
)]
pub async fn refund(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(request_id): RequestId,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<RefundBody>,
) -> Result<Response, CoreError> {
    refund_as(&state, &caller, request_id, key, body, false).await
}

/// A refund by `caller`; an operator's (`audited`) is recorded in the audit log with it.
pub(super) async fn refund_as(
    state: &AppState,
    caller: &Caller,
    request_id: Option<String>,
    key: Option<String>,
    body: RefundBody,
    audited: bool,
) -> Result<Response, CoreError> {
    caller.authorize(state, Scope::Refund).await?;
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
    let audit = audited.then(|| AuditEntry {
        actor: caller.actor(),
        action: "credits.refund",
        target: format!("transaction:{}", body.transaction_id),
        before: None,
        after: None,
        reason: Some(reason.clone()),
        request_id: request_id.clone(),
    });
    let refund = Refund {
        transaction_id: body.transaction_id,
        amount,
        reason,
        request_id,
        owner_must_be,
        owner_must_not_be,
    };
    let outcome = match audit {
        Some(audit) => {
            state
                .store
                .refund_audited(&refund, claim.as_ref(), &audit)
                .await?
        }
        None => state.store.refund(&refund, claim.as_ref()).await?,
    };
    respond(outcome, render_refund)
}

fn render_refund(outcome: RefundOutcome) -> Response {
    match outcome {
        RefundOutcome::Refunded {
            transaction,
            remaining,
        } => Json(RefundOk {
            status: "ok",
            transaction_id: transaction.id,
            refund_of: transaction.refund_of,
            refunded: transaction.amount,
            new_balance: transaction.balance_after,
            remaining_refundable: remaining,
        })
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
