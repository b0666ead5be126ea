//! The core service's errors, as its callers see them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hub_http::ApiError;

use crate::ledger::{InvalidInput, StoreError};

/// Everything a core endpoint can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// No internal credential, or no caller.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// `X-User-ID` is missing or not a UUID.
    #[error("{0}")]
    BadUserId(&'static str),
    /// A field breaks a rule.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// No such user.
    #[error("unknown user")]
    UnknownUser,
    /// The app's daily spending cap does not cover the cost.
    #[error("app spending cap")]
    AppCap(crate::ledger::AppCap),
    /// An operator disabled the account.
    #[error("account disabled")]
    AccountDisabled,
    /// No such transaction.
    #[error("unknown transaction")]
    UnknownTransaction,
    /// The transaction is not a debit.
    #[error("not a debit")]
    NotADebit,
    /// Nothing left to refund.
    #[error("already refunded")]
    AlreadyRefunded,
    /// More asked than remains.
    #[error("refund exceeds remaining")]
    RefundExceedsRemaining {
        /// What remains.
        remaining: i64,
    },
    /// The balance would pass its maximum.
    #[error("balance limit")]
    BalanceLimit,
    /// The idempotency key was used for another request.
    #[error("idempotency key reused")]
    IdempotencyKeyReused,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<CoreError> for ApiError {
    fn from(error: CoreError) -> Self {
        use CoreError::*;
        match error {
            Unauthenticated(message) => ApiError::unauthenticated(message),
            Forbidden(message) => ApiError::forbidden(message),
            BadUserId(message) => ApiError::bad_request("invalid_user_id", message),
            Invalid(e) if e.too_large => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.code, e.message)
            }
            Invalid(e) => ApiError::unprocessable(e.code, e.message),
            UnknownUser => ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_user",
                "No user has this id.",
            ),
            AppCap(cap) => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "app_spending_cap",
                format!(
                    "This app's daily spending cap of {} credits is reached ({} spent today, UTC); the user can change it by disconnecting the app and connecting it again.",
                    cap.cap, cap.spent
                ),
            )
            .with_field("limit", "app_daily_cap")
            .with_field("daily_cap", cap.cap)
            .with_field("spent_today", cap.spent),
            AccountDisabled => ApiError::account_disabled(),
            UnknownTransaction => ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_transaction",
                "No transaction has this id.",
            ),
            // The request is well formed; the ledger's state refuses it (as for a debit
            // refunded in full): 409, so that 422 always means the request itself is wrong.
            NotADebit => ApiError::new(
                StatusCode::CONFLICT,
                "not_a_debit",
                "Only a debit can be refunded.",
            ),
            AlreadyRefunded => ApiError::new(
                StatusCode::CONFLICT,
                "already_refunded",
                "This debit has been refunded in full.",
            ),
            RefundExceedsRemaining { remaining } => ApiError::new(
                StatusCode::CONFLICT,
                "refund_exceeds_remaining",
                format!("Only {remaining} credits of this debit are left to refund."),
            )
            .with_field("remaining", remaining),
            BalanceLimit => ApiError::new(
                StatusCode::CONFLICT,
                "balance_limit",
                "The balance would pass its maximum of 10^15 credits.",
            ),
            IdempotencyKeyReused => ApiError::unprocessable(
                "idempotency_key_reused",
                "This Idempotency-Key was used for a different request.",
            ),
            Store(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, "database unavailable");
                let mut error = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "The ledger is busy or its database is unreachable; try again shortly.",
                );
                error.retry_after = Some(1);
                error
            }
            Store(e) => ApiError::internal(&e),
        }
    }
}

/// 402 `insufficient_credits`, naming what refused it (`limit`): the `balance` itself, or the
/// credits live holds set aside (`held`) when the balance alone would have covered `cost`.
/// `balance` is what was available (the balance less holds), as every 402 has always said.
pub fn insufficient(available: i64, held: i64, cost: i64) -> ApiError {
    let (limit, message) = if held > 0 && available + held >= cost {
        (
            "held",
            format!(
                "{held} credits are held for work in progress; the {available} available do not cover the cost of {cost}."
            ),
        )
    } else {
        (
            "balance",
            format!("The balance of {available} credits does not cover the cost of {cost}."),
        )
    };
    ApiError::new(
        StatusCode::PAYMENT_REQUIRED,
        "insufficient_credits",
        message,
    )
    .with_field("balance", available)
    .with_field("held", held)
    .with_field("cost", cost)
    .with_field("limit", limit)
}

impl IntoResponse for CoreError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}
