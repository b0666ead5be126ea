//! The forms of a user's page: grant, refund, adjust (the ledger's audited operations, with the
//! form's idempotency key, so a double submit acts once), disable, enable, delete and sign out
//! everywhere (the account's change and its audit entry together, then the user's sessions and
//! tokens end). The same rules as the JSON admin API: the same validation, the same permissions,
//! no operator disables or deletes their own account, nobody refunds their own debit. Each
//! destructive form needs its confirmation box ticked. Done, each goes back to the user's page
//! (303); refused, the page says why (402 with the limit, 403, 404, 409, 422).

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use hub_ledger::admin::{Adjust, AdjustOutcome, AuditEntry, validate_adjustment};
use hub_ledger::grants::GrantTerms;
use hub_ledger::users::Permission;
use hub_ledger::{
    Grant, GrantOutcome, IdempotencyClaim, Idempotent, InvalidInput, Refund, RefundOutcome,
    validate_amount, validate_reason, validate_transaction_id,
};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::operator::Operator;
use super::view;
use crate::AppState;

/// A form's fields; missing ones are empty, so that a form without a token is a 403, not a 422.
#[derive(Deserialize)]
pub(crate) struct ActionForm {
    #[serde(default)]
    pub(super) csrf_token: String,
    #[serde(default)]
    idempotency_key: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    transaction_id: String,
    #[serde(default)]
    confirm: String,
    /// A grant's end date (`2026-12-31T23:59`, UTC, as a `datetime-local` field sends it, or
    /// RFC 3339); empty: never.
    #[serde(default)]
    expires_at: String,
    /// A grant's priority (lower is spent first); empty: the default.
    #[serde(default)]
    priority: String,
}

/// A refusal to show on the operator's page.
pub(super) struct Refusal(pub(super) StatusCode, pub(super) String);

impl From<InvalidInput> for Refusal {
    fn from(e: InvalidInput) -> Self {
        Refusal(StatusCode::UNPROCESSABLE_ENTITY, e.message)
    }
}

impl From<hub_ledger::StoreError> for Refusal {
    fn from(e: hub_ledger::StoreError) -> Self {
        tracing::warn!(error = %e, "a console action's store is unavailable");
        Refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "A store of the hub did not answer; nothing may have changed. Try again.".into(),
        )
    }
}

pub(super) fn refusal(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal(status, message.into())
}

/// The operator allowed to post this form, and the user it is about; else the answer.
pub(super) async fn authorized(
    state: &AppState,
    headers: &HeaderMap,
    form: &ActionForm,
    id: &str,
    permission: Permission,
) -> Result<(Operator, Uuid), Response> {
    let operator = Operator::for_post(state, headers, &form.csrf_token, permission).await?;
    match id.parse::<Uuid>() {
        Ok(id) => Ok((operator, id)),
        Err(_) => Err(view::message(
            &operator,
            StatusCode::NOT_FOUND,
            "No such user",
            "No user has this id.",
        )),
    }
}

/// Carries the action out and answers: back to the user's page, or the refusal.
pub(super) fn answer(
    operator: &Operator,
    id: Uuid,
    action: &str,
    done: Result<(), Refusal>,
) -> Response {
    let page = format!("/console/users/{id}");
    match done {
        Ok(()) => Redirect::to(&format!("{page}?done={action}")).into_response(),
        Err(Refusal(status, message)) => {
            view::message_with_back(operator, status, "Not done", &message, Some(&page))
        }
    }
}

pub(super) fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get(hub_http::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

pub(super) fn confirmed(form: &ActionForm) -> Result<(), Refusal> {
    if form.confirm == "yes" {
        return Ok(());
    }
    Err(refusal(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Tick the confirmation box to do this.",
    ))
}

/// The form's idempotency key as a claim of this operator's, over the operation and its input.
fn claim(
    operator: &Operator,
    form: &ActionForm,
    operation: &str,
    input: &serde_json::Value,
) -> Result<Option<IdempotencyClaim>, Refusal> {
    let key = form.idempotency_key.as_str();
    if key.is_empty() {
        return Ok(None);
    }
    if key.len() > 255 || !key.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            "The form's idempotency key is not valid; open the page again.",
        ));
    }
    let scope = format!("console:{}", operator.actor());
    Ok(Some(IdempotencyClaim::new(
        scope,
        key.to_owned(),
        operation,
        input,
    )))
}

fn whole(field: &str, text: &str) -> Result<i64, Refusal> {
    text.trim().parse::<i64>().map_err(|_| {
        refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{field} must be a whole number of credits"),
        )
    })
}

/// The outcome of an idempotent operation: a key sent before with other values is refused.
fn fresh<T>(outcome: Idempotent<T>) -> Result<T, Refusal> {
    match outcome {
        Idempotent::Fresh(outcome) | Idempotent::Replayed(outcome) => Ok(outcome),
        Idempotent::KeyReused => Err(refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            "This form was already sent with other values; open the page again.",
        )),
    }
}

/// `POST /console/users/{id}/grant`: for operators with `credits:grant`.
pub(crate) async fn grant(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    let (operator, id) = match authorized(&state, &headers, &form, &id, Permission::Grant).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let done = granted(&state, &headers, &operator, id, &form).await;
    answer(&operator, id, "grant", done)
}

async fn granted(
    state: &AppState,
    headers: &HeaderMap,
    operator: &Operator,
    user_id: Uuid,
    form: &ActionForm,
) -> Result<(), Refusal> {
    let amount = validate_amount("amount", whole("amount", &form.amount)?, 1)?;
    let reason = validate_reason(&form.reason)?;
    let terms = grant_terms(form)?;
    let input = json!({
        "user_id": user_id, "amount": amount, "reason": reason,
        "expires_at": terms.expires_at, "priority": terms.priority,
    });
    let claim = claim(operator, form, "grant", &input)?;
    let request_id = request_id(headers);
    let audit = AuditEntry::on_user(&operator.actor(), "credits.grant", user_id)
        .because(Some(&reason))
        .in_request(request_id.as_deref());
    let grant = Grant {
        user_id,
        amount,
        reason,
        request_id,
        terms,
    };
    match fresh(
        state
            .users
            .grant_audited(&grant, claim.as_ref(), &audit)
            .await?,
    )? {
        GrantOutcome::Granted { .. } => Ok(()),
        GrantOutcome::UnknownUser => Err(refusal(StatusCode::NOT_FOUND, "No user has this id.")),
        GrantOutcome::BalanceLimit => Err(balance_limit()),
    }
}

/// The grant form's end date and priority, checked as the admin API checks them.
fn grant_terms(form: &ActionForm) -> Result<GrantTerms, Refusal> {
    let expires_at = match form.expires_at.trim() {
        "" => None,
        given => Some(
            chrono::DateTime::parse_from_rfc3339(given)
                .map(|at| at.with_timezone(&chrono::Utc))
                .or_else(|_| {
                    chrono::NaiveDateTime::parse_from_str(given, "%Y-%m-%dT%H:%M")
                        .map(|at| at.and_utc())
                })
                .map_err(|_| {
                    refusal(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "The end date must be a date and time (UTC), e.g. 2026-12-31T23:59.",
                    )
                })?,
        ),
    };
    let priority = match form.priority.trim() {
        "" => None,
        given => Some(given.parse::<i64>().map_err(|_| {
            refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                "The priority must be a whole number.",
            )
        })?),
    };
    Ok(GrantTerms::parse(expires_at, priority, chrono::Utc::now())?)
}

fn balance_limit() -> Refusal {
    refusal(
        StatusCode::CONFLICT,
        "The balance would pass its maximum of 10^15 credits; nothing changed.",
    )
}

/// `POST /console/users/{id}/refund`: for operators with `credits:refund`.
pub(crate) async fn refund(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    let (operator, id) = match authorized(&state, &headers, &form, &id, Permission::Refund).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let done = refunded(&state, &headers, &operator, id, &form).await;
    answer(&operator, id, "refund", done)
}

async fn refunded(
    state: &AppState,
    headers: &HeaderMap,
    operator: &Operator,
    user_id: Uuid,
    form: &ActionForm,
) -> Result<(), Refusal> {
    confirmed(form)?;
    let transaction_id = validate_transaction_id(form.transaction_id.trim())?.to_owned();
    let amount = match form.amount.trim() {
        "" => None,
        given => Some(validate_amount("amount", whole("amount", given)?, 1)?),
    };
    let reason = validate_reason(&form.reason)?;
    let input = json!({ "transaction_id": transaction_id, "amount": amount, "reason": reason });
    let claim = claim(operator, form, "refund", &input)?;
    let request_id = request_id(headers);
    let audit = AuditEntry {
        actor: operator.actor(),
        action: "credits.refund",
        target: format!("transaction:{transaction_id}"),
        before: None,
        after: None,
        reason: Some(reason.clone()),
        request_id: request_id.clone(),
    };
    // Only this user's debits, and never the operator's own.
    let refund = Refund {
        transaction_id,
        amount,
        reason,
        request_id,
        owner_must_be: Some(user_id),
        owner_must_not_be: Some(operator.session.user_id),
    };
    let status = match fresh(
        state
            .users
            .refund_audited(&refund, claim.as_ref(), &audit)
            .await?,
    )? {
        RefundOutcome::Refunded { .. } => return Ok(()),
        RefundOutcome::UnknownTransaction => (
            StatusCode::NOT_FOUND,
            "This user has no transaction with this id.".to_owned(),
        ),
        RefundOutcome::NotADebit => (
            StatusCode::CONFLICT,
            "Only a debit can be refunded.".to_owned(),
        ),
        RefundOutcome::AlreadyRefunded => (
            StatusCode::CONFLICT,
            "This debit was already refunded in full.".to_owned(),
        ),
        RefundOutcome::ExceedsRemaining { remaining } => (
            StatusCode::CONFLICT,
            format!("Only {remaining} credits of this debit remain to refund."),
        ),
        RefundOutcome::BalanceLimit => return Err(balance_limit()),
        RefundOutcome::OwnDebit => (
            StatusCode::FORBIDDEN,
            "Nobody refunds their own debit.".to_owned(),
        ),
    };
    Err(Refusal(status.0, status.1))
}

/// `POST /console/users/{id}/adjust`: for operators with `credits:grant`.
pub(crate) async fn adjust(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    let (operator, id) = match authorized(&state, &headers, &form, &id, Permission::Grant).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let done = adjusted(&state, &headers, &operator, id, &form).await;
    answer(&operator, id, "adjust", done)
}

async fn adjusted(
    state: &AppState,
    headers: &HeaderMap,
    operator: &Operator,
    user_id: Uuid,
    form: &ActionForm,
) -> Result<(), Refusal> {
    confirmed(form)?;
    let amount = validate_adjustment(whole("amount", &form.amount)?)?;
    let reason = validate_reason(&form.reason)?;
    let input = json!({ "user_id": user_id, "amount": amount, "reason": reason });
    let claim = claim(operator, form, "adjust", &input)?;
    let request_id = request_id(headers);
    let audit = AuditEntry::on_user(&operator.actor(), "credits.adjust", user_id)
        .because(Some(&reason))
        .in_request(request_id.as_deref());
    let adjust = Adjust {
        user_id,
        amount,
        reason,
        request_id,
    };
    match fresh(
        state
            .users
            .adjust_audited(&adjust, claim.as_ref(), &audit)
            .await?,
    )? {
        AdjustOutcome::Adjusted { .. } => Ok(()),
        AdjustOutcome::Insufficient { available } => {
            let held = state.users.holdings(user_id).await?.map_or(0, |h| h.held);
            Err(insufficient(available, held, -amount))
        }
        AdjustOutcome::BalanceLimit => Err(balance_limit()),
        AdjustOutcome::UnknownUser => Err(refusal(StatusCode::NOT_FOUND, "No user has this id.")),
    }
}

/// 402 that names the limit, as the API does: the credits held for work in progress, or the
/// balance.
fn insufficient(available: i64, held: i64, cost: i64) -> Refusal {
    let message = if held > 0 && available + held >= cost {
        format!(
            "Limit: held. {held} credits are held for work in progress; the {available} available do not cover taking off {cost}."
        )
    } else {
        format!(
            "Limit: balance. The balance of {available} credits does not cover taking off {cost}."
        )
    };
    Refusal(StatusCode::PAYMENT_REQUIRED, message)
}
