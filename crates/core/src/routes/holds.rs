//! Credit holds over HTTP: reserve credits before a call whose cost is not known yet, then
//! capture what it really cost (or release it all). A hold that is not settled in time frees
//! itself.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use hub_http::{ApiError, ApiJson};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::api::{ErrorBody, InsufficientCredits};
use super::extract::{IdempotencyKey, RequestId, held_now, respond};
use crate::AppState;
use crate::caller::{Caller, Permissions, Scope};
use crate::error::{CoreError, insufficient};
use crate::ledger::{
    Hold, IdempotencyClaim, Reserve, ReserveOutcome, ServiceName, Settle, SettleOutcome,
    validate_amount, validate_hold_seconds, validate_metadata, validate_reservation_id,
};

/// Credits to set aside.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveBody {
    /// The service the credits are held for, e.g. `sora2`: 1 to 64 of a-z, 0-9, `-`, `_`, `.`.
    #[schema(
        example = "sora2",
        min_length = 1,
        max_length = 64,
        pattern = r"^[a-z0-9._-]{1,64}$"
    )]
    service: String,
    /// Credits to hold, 1 to 10^12.
    #[schema(example = 30, minimum = 1, maximum = 1_000_000_000_000_i64)]
    #[serde(deserialize_with = "super::whole::required")]
    cost: i64,
    /// How long the hold lives unless settled, 1 to 3600 seconds (default 900).
    #[serde(default, deserialize_with = "super::whole::optional")]
    #[schema(minimum = 1, maximum = 3600)]
    ttl_seconds: Option<i64>,
    /// What the credits are for (a JSON object of at most 16 KiB, without U+0000), kept with the hold and its debit.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    metadata: Option<Map<String, Value>>,
}

/// The credits are set aside.
#[derive(Serialize, ToSchema)]
pub struct ReserveOk {
    /// The hold's id, for capture or release.
    pub reservation_id: String,
    /// Credits held.
    pub held: i64,
    /// What the user may spend now, this hold taken out.
    pub available_balance: i64,
    /// When the hold frees itself unless settled.
    pub expires_at: DateTime<Utc>,
}

/// `POST /api/mcp/v1/credits/reserve`.
#[utoipa::path(
    post,
    path = "/api/mcp/v1/credits/reserve",
    operation_id = "reserveCredits",
    tag = "credits",
    summary = "Hold credits for a call in progress",
    description = "Sets credits aside before a call whose final cost is not known yet, if the available balance (balance less live holds) covers them. Capture the real cost or release the hold; unsettled, it frees itself at expires_at.",
    request_body = ReserveBody,
    params(
        ("X-User-ID" = Option<Uuid>, Header, description = "The user a service key acts for. End users act only as themselves."),
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters; repeats within 24 hours replay the first answer.", min_length = 1, max_length = 255, pattern = r"^[\x21-\x7E]{1,255}$"),
    ),
    responses(
        (status = 200, description = "Held.", body = ReserveOk),
        (status = 402, description = "The available balance does not cover the cost; nothing was held.", body = InsufficientCredits),
        (status = 403, description = "The account is disabled (account_disabled), or the caller lacks the permission.", body = ErrorBody),
        (status = 404, description = "No such user.", body = ErrorBody),
        (status = 422, description = "A field is missing or not valid, or the Idempotency-Key was used with another request.", body = ErrorBody),
    ),
    security(("sessionToken" = []), ("serviceKey" = []), ("bearerJwt" = []))
)]
pub async fn reserve(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(request_id): RequestId,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<ReserveBody>,
) -> Result<Response, CoreError> {
    let user_id = caller.acting_user(Scope::Deduct)?;
    let service = ServiceName::parse(&body.service)?;
    let cost = validate_amount("cost", body.cost, 1)?;
    let ttl_seconds = validate_hold_seconds(body.ttl_seconds)?;
    let metadata = validate_metadata(body.metadata)?;
    let claim = key.map(|key| {
        let input = json!({ "user_id": user_id, "service": service.as_str(), "cost": cost,
                            "ttl_seconds": ttl_seconds, "metadata": metadata });
        IdempotencyClaim::new(caller.idempotency_scope(), key, "reserve", &input)
    });
    let reserve = Reserve {
        user_id,
        service,
        cost,
        ttl_seconds,
        metadata,
        request_id,
        placed_by: caller.principal_key(),
        app_grant: caller.grant.clone(),
    };
    let outcome = state.store.reserve(&reserve, claim.as_ref()).await?;
    let held = match outcome.outcome() {
        Some(ReserveOutcome::Insufficient { .. }) => held_now(&state, user_id).await,
        _ => 0,
    };
    respond(outcome, |outcome| render_reserve(outcome, held, cost))
}

fn render_reserve(outcome: ReserveOutcome, held: i64, cost: i64) -> Response {
    match outcome {
        ReserveOutcome::Held { hold, available } => Json(ReserveOk {
            reservation_id: hold.id,
            held: hold.amount,
            available_balance: available,
            expires_at: hold.expires_at,
        })
        .into_response(),
        ReserveOutcome::Insufficient { available } => insufficient(available, held, cost)
            .with_field("available_balance", available)
            .into_response(),
        ReserveOutcome::AppCapReached(cap) => CoreError::AppCap(cap).into_response(),
        ReserveOutcome::AccountDisabled => CoreError::AccountDisabled.into_response(),
        ReserveOutcome::UnknownUser => CoreError::UnknownUser.into_response(),
    }
}

/// How much of a hold to capture.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CaptureBody {
    /// Credits to debit, 0 up to the amount held (default: all of it); the rest is freed.
    #[serde(default, deserialize_with = "super::whole::optional")]
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    amount: Option<i64>,
}

/// The hold is settled.
#[derive(Serialize, ToSchema)]
pub struct SettledOk {
    /// `captured` or `released`.
    #[schema(example = "captured")]
    pub status: &'static str,
    /// The hold.
    pub reservation_id: String,
    /// Credits debited (0 for a release).
    pub captured: i64,
    /// Credits freed.
    pub released: i64,
    /// The debit written (a capture of more than 0).
    pub transaction_id: Option<String>,
    /// The balance after it.
    pub new_balance: i64,
    /// What the user may spend now.
    pub available_balance: i64,
}

/// `POST /api/mcp/v1/credits/reservations/{id}/capture`.
#[utoipa::path(
    post,
    path = "/api/mcp/v1/credits/reservations/{id}/capture",
    operation_id = "captureReservation",
    tag = "credits",
    summary = "Debit what a held call really cost",
    description = "Turns a hold, or less of it, into a debit and frees the rest. Each hold is settled exactly once: after a capture or release, 409; after it expired, 410.",
    request_body(content = Option<CaptureBody>, description = "Optional; without it the whole hold is captured."),
    params(
        ("id" = String, Path, description = "The reservation_id from reserveCredits: `res_` and 32 hex digits.", pattern = r"^res_[0-9a-fA-F]{32}$"),
        ("X-User-ID" = Option<Uuid>, Header, description = "The user a service key acts for. End users act only as themselves."),
    ),
    responses(
        (status = 200, description = "Captured.", body = SettledOk),
        (status = 403, description = "The account is disabled (account_disabled): nothing is captured.", body = ErrorBody),
        (status = 404, description = "No such hold for this user.", body = ErrorBody),
        (status = 409, description = "Settled before, or amount is more than the credits held.", body = ErrorBody),
        (status = 410, description = "It expired; its credits are free again.", body = ErrorBody),
    ),
    security(("sessionToken" = []), ("serviceKey" = []), ("bearerJwt" = []))
)]
pub async fn capture(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(request_id): RequestId,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, CoreError> {
    // The body is optional: none, `null` or `{}` captures the whole hold.
    let body: CaptureBody = if body.iter().all(u8::is_ascii_whitespace) {
        CaptureBody::default()
    } else {
        match serde_json::from_slice::<Option<CaptureBody>>(&body) {
            Ok(body) => body.unwrap_or_default(),
            Err(e) if e.is_data() => {
                return Ok(ApiError::unprocessable("invalid_field", e.to_string()).into_response());
            }
            Err(e) => {
                return Ok(ApiError::bad_request("malformed_json", e.to_string()).into_response());
            }
        }
    };
    let amount = body
        .amount
        .map(|a| validate_amount("amount", a, 0))
        .transpose()?;
    settle(&state, &caller, id, Some(amount), request_id).await
}

/// `POST /api/mcp/v1/credits/reservations/{id}/release`.
#[utoipa::path(
    post,
    path = "/api/mcp/v1/credits/reservations/{id}/release",
    operation_id = "releaseReservation",
    tag = "credits",
    summary = "Free a hold whole",
    description = "Frees all the credits of a hold (the call failed or was cancelled). Each hold is settled exactly once: after a capture or release, 409; after it expired, 410.",
    params(
        ("id" = String, Path, description = "The reservation_id from reserveCredits: `res_` and 32 hex digits.", pattern = r"^res_[0-9a-fA-F]{32}$"),
        ("X-User-ID" = Option<Uuid>, Header, description = "The user a service key acts for. End users act only as themselves."),
    ),
    responses(
        (status = 200, description = "Released.", body = SettledOk),
        (status = 404, description = "No such hold for this user.", body = ErrorBody),
        (status = 409, description = "Settled before.", body = ErrorBody),
        (status = 410, description = "It expired; its credits are free again.", body = ErrorBody),
    ),
    security(("sessionToken" = []), ("serviceKey" = []), ("bearerJwt" = []))
)]
pub async fn release(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(request_id): RequestId,
    Path(id): Path<String>,
) -> Result<Response, CoreError> {
    settle(&state, &caller, id, None, request_id).await
}

async fn settle(
    state: &AppState,
    caller: &Caller,
    id: String,
    capture: Option<Option<i64>>,
    request_id: Option<String>,
) -> Result<Response, CoreError> {
    let user_id = caller.acting_user(Scope::Deduct)?;
    validate_reservation_id(&id)?;
    let settle = Settle {
        reservation_id: id,
        capture,
        owner_must_be: Some(user_id),
        principal_must_be: Some(caller.principal_key()),
        request_id,
    };
    let describe = |hold: &Hold| serde_json::to_value(hold).unwrap_or(Value::Null);
    Ok(match state.store.settle(&settle).await? {
        SettleOutcome::Settled {
            hold,
            transaction,
            balance,
            available,
        } => {
            let captured = hold.captured.unwrap_or(0);
            Json(SettledOk {
                status: if settle.capture.is_some() {
                    "captured"
                } else {
                    "released"
                },
                reservation_id: hold.id,
                captured,
                released: hold.amount - captured,
                transaction_id: transaction.map(|t| t.id),
                new_balance: balance,
                available_balance: available,
            })
            .into_response()
        }
        SettleOutcome::AccountDisabled => CoreError::AccountDisabled.into_response(),
        SettleOutcome::UnknownReservation => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_reservation",
            "There is no such hold for this user.",
        )
        .into_response(),
        SettleOutcome::AlreadySettled { hold } => ApiError::new(
            StatusCode::CONFLICT,
            "already_settled",
            format!("This hold was {} before.", hold.status.as_str()),
        )
        .with_field("reservation", describe(&hold))
        .into_response(),
        SettleOutcome::Expired { hold } => ApiError::new(
            StatusCode::GONE,
            "reservation_expired",
            "This hold expired before it was settled; its credits are free again.",
        )
        .with_field("reservation", describe(&hold))
        .into_response(),
        // Like a refund of more than remains: the hold's state refuses it.
        SettleOutcome::ExceedsHold { held } => ApiError::new(
            StatusCode::CONFLICT,
            "exceeds_hold",
            format!("amount must be 0 to {held}, the credits held"),
        )
        .with_field("held", held)
        .into_response(),
    })
}
