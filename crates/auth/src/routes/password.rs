//! Password reset: a mailed link (single use, valid 30 minutes) sets a new password and signs
//! the account out everywhere.
//!
//! Asking for the link never tells whether an account has the address: the answer is the same
//! 202 with the same body either way, the lookup is made either way, and the mail goes out in
//! the background so its time is not in the answer.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hub_http::{ApiError, ApiJson};
use serde::Deserialize;
use uuid::Uuid;

use super::accounts::{client_address, store_error, too_many};
use super::api::{Accepted, ErrorBody, StatusOk};
use crate::links::{self, LinkRecord, Purpose};
use crate::mail::{self, Mail};
use crate::sessions::token_hash;
use crate::{AppState, pages, passwords};

/// Reset requests allowed per client address in [`FORGOT_WINDOW`] (more: 429).
pub const MAX_FORGOT_PER_CLIENT: u64 = 20;
/// Reset mails sent per account address in [`FORGOT_WINDOW`]; more requests are answered alike
/// and send nothing, so that nobody can flood an inbox.
pub const MAX_FORGOT_PER_ACCOUNT: u64 = 3;
/// The window reset requests are counted in.
pub const FORGOT_WINDOW: Duration = Duration::from_secs(3600);

const ACCEPTED: &str = "If an account has this address, a link to reset its password is on its way; it works once, for 30 minutes.";

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotBody {
    /// The account's email.
    #[schema(format = "email", min_length = 3, max_length = 254)]
    email: String,
}

/// `POST /api/auth/password/forgot`.
#[utoipa::path(
    post,
    path = "/api/auth/password/forgot",
    operation_id = "forgotPassword",
    tag = "accounts",
    summary = "Mail a password-reset link",
    description = "Mails a link to reset the password (single use, valid 30 minutes) if an account has this address. The answer is the same 202 whether or not one does. At most 3 mails per address and hour are sent (further requests are answered alike), and 20 requests per client address and hour are taken.",
    request_body = ForgotBody,
    responses(
        (status = 202, description = "Taken; a mail goes out if an account has the address.", body = Accepted),
        (status = 400, description = "The body is not JSON.", body = ErrorBody),
        (status = 415, description = "The body is not sent as application/json.", body = ErrorBody),
        (status = 422, description = "The email is missing or not an address (`invalid_email`).", body = ErrorBody),
        (status = 429, description = "Too many requests from this client address; retry after Retry-After seconds.", body = ErrorBody),
        (status = 503, description = "A store is briefly unavailable; retry after Retry-After seconds.", body = ErrorBody),
    ),
    security(())
)]
pub async fn forgot(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ForgotBody>,
) -> Result<Response, ApiError> {
    let email = hub_ledger::users::normalize_email(&body.email)
        .map_err(|e| ApiError::unprocessable(e.code, e.message))?;
    let now = state.sessions.clock().now();
    let store = state.sessions.store();
    let client = format!("forgot:address:{}", client_address(&state, peer, &headers));
    if store.hit(&client, FORGOT_WINDOW, now).await? > MAX_FORGOT_PER_CLIENT {
        let (_, left) = store.count(&client, now).await?;
        return Err(too_many(left));
    }
    let account = format!("forgot:account:{}", token_hash(&email));
    let within_limit = store.hit(&account, FORGOT_WINDOW, now).await? <= MAX_FORGOT_PER_ACCOUNT;
    let user = state
        .users
        .find_user_by_email(&email)
        .await
        .map_err(|e| store_error(&e))?;
    match user {
        Some(user) if within_limit => send_link(&state, user.id, &user.email).await?,
        other => {
            if other.is_some() {
                tracing::info!("password reset asked too often for one account: no mail");
            }
            // The same store write as a real link, for an account nobody has: the answer takes
            // as long either way (only the mail, sent in the background, differs).
            links::issue(&state.sessions, Purpose::ResetPassword, Uuid::nil(), "").await?;
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            status: "accepted",
            message: ACCEPTED,
        }),
    )
        .into_response())
}

async fn send_link(state: &AppState, user_id: Uuid, email: &str) -> Result<(), ApiError> {
    let token = links::issue(&state.sessions, Purpose::ResetPassword, user_id, email).await?;
    let link = links::url(
        &state.config.public_base_url,
        Purpose::ResetPassword,
        &token,
    );
    let text = format!(
        "Someone asked to reset the password of your Smart AI Hub account.\n\n\
         To choose a new password, open this link within 30 minutes:\n\n\
         {link}\n\n\
         Setting it signs your account out everywhere. If you did not ask, ignore this mail: \
         your password stays as it is.\n"
    );
    mail::send_in_background(
        &state.mailer,
        Mail {
            to: email.to_owned(),
            subject: "Reset your password".into(),
            text,
            link,
        },
    );
    Ok(())
}

fn invalid_link() -> ApiError {
    ApiError::bad_request(
        "invalid_link",
        "The link is invalid, expired or already used.",
    )
}

fn invalid_password() -> ApiError {
    ApiError::unprocessable("invalid_password", "password must be 8 to 128 characters")
}

/// Spends a reset token: sets the password, then ends every session and token of the account.
async fn reset(state: &AppState, token: &str, password: String) -> Result<(), ApiError> {
    if !passwords::acceptable(&password) {
        return Err(invalid_password());
    }
    let record = links::redeem(&state.sessions, Purpose::ResetPassword, token)
        .await?
        .ok_or_else(invalid_link)?;
    match set_and_sign_out(state, &record, password).await {
        Ok(()) => {
            tracing::info!(user_id = %record.user_id, "password reset; signed out everywhere");
            Ok(())
        }
        Err(e) => {
            // The link stays good for a retry unless the account is gone.
            if e.code != "invalid_link"
                && let Err(again) =
                    links::restore(&state.sessions, Purpose::ResetPassword, token, &record).await
            {
                tracing::warn!(error = %again, "a spent reset link could not be put back");
            }
            Err(e)
        }
    }
}

async fn set_and_sign_out(
    state: &AppState,
    record: &LinkRecord,
    password: String,
) -> Result<(), ApiError> {
    let hash = passwords::hash(password)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let set = state
        .users
        .set_password_hash(record.user_id, &hash)
        .await
        .map_err(|e| store_error(&e))?;
    if !set {
        return Err(invalid_link());
    }
    // Every session code, refresh family and access token issued before now.
    state.sessions.end_everything(record.user_id).await?;
    Ok(())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    /// The `token` of the link in the reset mail.
    #[schema(min_length = 43, max_length = 43, pattern = "^[A-Za-z0-9_-]{43}$")]
    token: String,
    /// The new password: 8 to 128 characters.
    #[schema(min_length = 8, max_length = 128)]
    password: String,
}

/// `POST /api/auth/password/reset`.
#[utoipa::path(
    post,
    path = "/api/auth/password/reset",
    operation_id = "resetPassword",
    tag = "accounts",
    summary = "Set a new password with a mailed link",
    description = "Spends the token of a password-reset link (single use, valid 30 minutes): sets the new password and signs the account out everywhere (every session code, refresh token and access token issued before).",
    request_body = ResetBody,
    responses(
        (status = 200, description = "The password is set; sign in with it.", body = StatusOk),
        (status = 400, description = "The link is invalid, expired or already used (`invalid_link`), or the body is not JSON.", body = ErrorBody),
        (status = 415, description = "The body is not sent as application/json.", body = ErrorBody),
        (status = 422, description = "The password is not 8 to 128 characters (`invalid_password`; the link is not spent), or a field is missing.", body = ErrorBody),
        (status = 503, description = "A store is briefly unavailable; retry after Retry-After seconds.", body = ErrorBody),
    ),
    security(())
)]
pub async fn reset_password(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ResetBody>,
) -> Result<Json<StatusOk>, ApiError> {
    reset(&state, &body.token, body.password).await?;
    Ok(Json(StatusOk { status: "ok" }))
}

/// A link's `?token=`.
#[derive(Deserialize)]
pub(super) struct TokenQuery {
    #[serde(default)]
    token: String,
}

/// The reset page's form.
#[derive(Deserialize)]
pub(super) struct ResetForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
}

fn form(token: &str, message: &str) -> Response {
    pages::link_form(pages::LinkForm {
        title: "Choose a new password",
        message,
        action: Purpose::ResetPassword.page(),
        token,
        ask_password: true,
        button: "Set the new password",
    })
}

/// `GET /auth/reset-password?token=`: the page of the mailed link, a form for the new password.
pub(super) async fn page(Query(query): Query<TokenQuery>) -> Response {
    if !links::looks_like_token(&query.token) {
        return pages::link_done(
            StatusCode::BAD_REQUEST,
            "Link not valid",
            "This reset link is incomplete. Open the link from the mail again.",
        );
    }
    form(
        &query.token,
        "Setting it signs your account out everywhere.",
    )
}

/// `POST /auth/reset-password` (the page's form).
pub(super) async fn page_posted(
    State(state): State<AppState>,
    axum::Form(posted): axum::Form<ResetForm>,
) -> Response {
    match reset(&state, &posted.token, posted.password).await {
        Ok(()) => pages::link_done(
            StatusCode::OK,
            "Password changed",
            "Your new password is set, and your account is signed out everywhere. Sign in again with the new password.",
        ),
        Err(e) if e.code == "invalid_password" => form(
            &posted.token,
            "The password must be 8 to 128 characters; choose another.",
        ),
        Err(e) if e.status == StatusCode::BAD_REQUEST => pages::link_done(
            StatusCode::BAD_REQUEST,
            "Link not valid",
            "This reset link is invalid, expired or already used. Ask for a new one.",
        ),
        Err(e) => pages::link_done(
            e.status,
            "Try again",
            "The hub is briefly unavailable; go back and try again in a moment.",
        ),
    }
}
