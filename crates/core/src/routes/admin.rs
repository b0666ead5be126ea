//! Operators' endpoints.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use hub_http::ApiJson;
use serde::Deserialize;
use uuid::Uuid;

use super::credits::{RefundBody, refund_as};
use super::extract::{IdempotencyKey, RequestId, held_now, respond};
use crate::AppState;
use crate::caller::{Caller, Permissions, Scope};
use crate::error::CoreError;
use crate::ledger::admin::{Adjust, AdjustOutcome, AuditEntry, validate_adjustment};
use crate::ledger::grants::GrantTerms;
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
    /// When what is left of the grant expires (RFC 3339, in the future, at most 100 years
    /// ahead); never when absent.
    #[serde(default)]
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Where it stands in the spending order: 0 to 100, lower spent first (default 50, as plain
    /// grants and top-ups).
    #[schema(minimum = 0, maximum = 100)]
    #[serde(default)]
    priority: Option<i64>,
}

/// `POST /api/admin/credits/grant`: for callers with `credits:grant`.
#[utoipa::path(
    post,
    path = "/api/admin/credits/grant",
    operation_id = "grantCredits",
    tag = "admin",
    summary = "Add credits to a user's balance",
    description = "Adds credits to a user's balance (a purchase, a gift). With expires_at or priority, promotional credits: spent by priority (lower first), then earliest end date, then oldest; what is left expires. For credits:grant.",
    request_body = GrantBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters; repeats within 24 hours replay the first answer.", min_length = 1, max_length = 255, pattern = r"^[\x21-\x7E]{1,255}$")),
    responses(
        (status = 200, description = "The grant's transaction.", body = crate::ledger::Transaction),
        (status = 404, description = "No such user.", body = super::api::ErrorBody),
        (status = 409, description = "The balance would pass its maximum of 10^15 credits.", body = super::api::ErrorBody),
        (status = 422, description = "A field is not valid (invalid_expires_at: not in the future or over 100 years ahead), or the Idempotency-Key was used with another request.", body = super::api::ErrorBody),
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
    let terms = GrantTerms::parse(body.expires_at, body.priority, chrono::Utc::now())?;
    let claim = key.map(|key| {
        let mut input =
            serde_json::json!({ "user_id": body.user_id, "amount": amount, "reason": reason });
        if !terms.is_base() {
            input["terms"] = serde_json::json!(terms);
        }
        IdempotencyClaim::new(caller.idempotency_scope(), key, "grant", &input)
    });
    let audit = AuditEntry::on_user(&caller.actor(), "credits.grant", body.user_id)
        .because(Some(&reason))
        .in_request(request_id.as_deref());
    let grant = Grant {
        user_id: body.user_id,
        amount,
        reason,
        request_id,
        terms,
    };
    respond(
        state
            .store
            .grant_audited(&grant, claim.as_ref(), &audit)
            .await?,
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

/// `POST /api/admin/credits/refund`: an operator's refund, recorded in the audit log.
#[utoipa::path(
    post,
    path = "/api/admin/credits/refund",
    operation_id = "adminRefundCredits",
    tag = "admin",
    summary = "Refund a debit (operators)",
    description = "Returns all or part of one debit to its user, with a reason, and records it in the audit log in the same transaction. For operators with credits:refund (support, finance, admin) and service keys with credits:refund; nobody refunds their own debit.",
    request_body = RefundBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters; repeats within 24 hours replay the first answer.", min_length = 1, max_length = 255, pattern = r"^[\x21-\x7E]{1,255}$")),
    responses(
        (status = 200, description = "Refunded.", body = super::credits::RefundOk),
        (status = 403, description = "The caller lacks credits:refund, or the debit is their own.", body = super::api::ErrorBody),
        (status = 404, description = "No such transaction.", body = super::api::ErrorBody),
        (status = 409, description = "Not a debit, already refunded in full, more asked than remains, or the balance would pass its maximum.", body = super::api::ErrorBody),
        (status = 422, description = "A field is not valid, or the Idempotency-Key was used with another request.", body = super::api::ErrorBody),
    ),
    security(("serviceKey" = []), ("bearerJwt" = []))
)]
pub async fn refund(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(request_id): RequestId,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<RefundBody>,
) -> Result<Response, CoreError> {
    refund_as(&state, &caller, request_id, key, body, true).await
}

/// A correction of a balance.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustBody {
    /// The user whose balance it corrects.
    user_id: Uuid,
    /// The signed change, -10^12 to 10^12, not 0; down never past the available balance.
    #[schema(minimum = -1_000_000_000_000_i64, maximum = 1_000_000_000_000_i64)]
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

/// `POST /api/admin/credits/adjust`: for callers with `credits:grant`.
#[utoipa::path(
    post,
    path = "/api/admin/credits/adjust",
    operation_id = "adjustCredits",
    tag = "admin",
    summary = "Correct a balance",
    description = "Corrects a user's balance up or down (an adjustment transaction) with a reason, recorded in the audit log in the same transaction; down never past the available balance. For operators with credits:grant (finance, admin) and service keys with credits:grant.",
    request_body = AdjustBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters; repeats within 24 hours replay the first answer.", min_length = 1, max_length = 255, pattern = r"^[\x21-\x7E]{1,255}$")),
    responses(
        (status = 200, description = "The adjustment's transaction.", body = crate::ledger::Transaction),
        (status = 402, description = "A correction down by more than is available.", body = super::api::InsufficientCredits),
        (status = 403, description = "The caller lacks credits:grant.", body = super::api::ErrorBody),
        (status = 404, description = "No such user.", body = super::api::ErrorBody),
        (status = 409, description = "The balance would pass its maximum of 10^15 credits.", body = super::api::ErrorBody),
        (status = 422, description = "A field is not valid, or the Idempotency-Key was used with another request.", body = super::api::ErrorBody),
    ),
    security(("serviceKey" = []), ("bearerJwt" = []))
)]
pub async fn adjust(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(request_id): RequestId,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<AdjustBody>,
) -> Result<Response, CoreError> {
    caller.authorize(&state, Scope::Grant).await?;
    let amount = validate_adjustment(body.amount)?;
    let reason = validate_reason(&body.reason)?;
    let claim = key.map(|key| {
        let input =
            serde_json::json!({ "user_id": body.user_id, "amount": amount, "reason": reason });
        IdempotencyClaim::new(caller.idempotency_scope(), key, "adjust", &input)
    });
    let audit = AuditEntry::on_user(&caller.actor(), "credits.adjust", body.user_id)
        .because(Some(&reason))
        .in_request(request_id.as_deref());
    let adjust = Adjust {
        user_id: body.user_id,
        amount,
        reason,
        request_id,
    };
    let outcome = state
        .store
        .adjust_audited(&adjust, claim.as_ref(), &audit)
        .await?;
    let held = match outcome.outcome() {
        Some(AdjustOutcome::Insufficient { .. }) => held_now(&state, body.user_id).await,
        _ => 0,
    };
    respond(outcome, |outcome| render_adjust(outcome, held, amount))
}

fn render_adjust(outcome: AdjustOutcome, held: i64, amount: i64) -> Response {
    match outcome {
        AdjustOutcome::Adjusted { transaction } => Json(transaction).into_response(),
        AdjustOutcome::Insufficient { available } => {
            crate::error::insufficient(available, held, -amount)
                .with_field("available_balance", available)
                .into_response()
        }
        AdjustOutcome::UnknownUser => CoreError::UnknownUser.into_response(),
        AdjustOutcome::BalanceLimit => CoreError::BalanceLimit.into_response(),
    }
}
