//! Verifying the address of a password account: registration mails a link (valid 24 hours);
//! following it verifies the address and grants the new-user credits, once.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use hub_http::{ApiError, ApiJson};
use hub_ledger::users::EmailVerification;
use serde::Deserialize;
use uuid::Uuid;

use super::accounts::store_error;
use super::api::{EmailVerified, ErrorBody};
use crate::links::{self, Purpose};
use crate::mail::{self, Mail};
use crate::{AppState, pages};

/// Mails a verification link to a new account's address (in the background).
pub(super) async fn send_link(
    state: &AppState,
    user_id: Uuid,
    email: &str,
) -> Result<(), ApiError> {
    let token = links::issue(&state.sessions, Purpose::VerifyEmail, user_id, email).await?;
    let link = links::url(&state.config.public_base_url, Purpose::VerifyEmail, &token);
    let credits = match state.config.new_user_credits {
        0 => String::new(),
        n => format!("Verifying it adds your {n} free credits. "),
    };
    let text = format!(
        "Welcome to Smart AI Hub.\n\n\
         To verify your email address, open this link within 24 hours:\n\n\
         {link}\n\n\
         {credits}If you did not create an account, ignore this mail.\n"
    );
    mail::send_in_background(
        &state.mailer,
        Mail {
            to: email.to_owned(),
            subject: "Verify your email address".into(),
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

/// Spends a verification token: verifies the address and grants what is owed.
async fn verify(state: &AppState, token: &str) -> Result<EmailVerified, ApiError> {
    let record = links::redeem(&state.sessions, Purpose::VerifyEmail, token)
        .await?
        .ok_or_else(invalid_link)?;
    let outcome = match state
        .users
        .verify_email(record.user_id, state.config.new_user_credits)
        .await
    {
        Ok(outcome) => outcome,
        Err(e) => {
            if let Err(again) =
                links::restore(&state.sessions, Purpose::VerifyEmail, token, &record).await
            {
                tracing::warn!(error = %again, "a spent verification link could not be put back");
            }
            return Err(store_error(&e));
        }
    };
    let credits_granted = match outcome {
        EmailVerification::Verified { grant } => grant.map_or(0, |g| g.amount),
        EmailVerification::AlreadyVerified => 0,
        EmailVerification::UnknownUser => return Err(invalid_link()),
    };
    tracing::info!(user_id = %record.user_id, credits_granted, "email verified");
    Ok(EmailVerified {
        status: "verified",
        credits_granted,
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyEmailBody {
    /// The `token` of the link in the verification mail.
    #[schema(min_length = 43, max_length = 43, pattern = "^[A-Za-z0-9_-]{43}$")]
    token: String,
}

/// `POST /api/auth/email/verify`.
#[utoipa::path(
    post,
    path = "/api/auth/email/verify",
    operation_id = "verifyEmail",
    tag = "accounts",
    summary = "Verify an account's email address",
    description = "Spends the token of the link mailed at registration (single use, valid 24 hours): the address is verified and, the first time an address is proven, the account receives the new-user credits. An address already proven (for example by a Google sign-in) is verified with 0 credits granted.",
    request_body = VerifyEmailBody,
    responses(
        (status = 200, description = "Verified.", body = EmailVerified),
        (status = 400, description = "The link is invalid, expired or already used (`invalid_link`), or the body is not JSON.", body = ErrorBody),
        (status = 415, description = "The body is not sent as application/json.", body = ErrorBody),
        (status = 422, description = "The token field is missing or not a string.", body = ErrorBody),
        (status = 503, description = "A store is briefly unavailable; retry after Retry-After seconds.", body = ErrorBody),
    ),
    security(())
)]
pub async fn verify_email(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<VerifyEmailBody>,
) -> Result<Json<EmailVerified>, ApiError> {
    Ok(Json(verify(&state, &body.token).await?))
}

/// A link's `?token=` (absent or odd: the page says the link is not good).
#[derive(Deserialize)]
pub(super) struct TokenQuery {
    #[serde(default)]
    token: String,
}

/// `GET /auth/verify-email?token=`: the page of the mailed link, a button that posts it.
pub(super) async fn page(Query(query): Query<TokenQuery>) -> Response {
    if !links::looks_like_token(&query.token) {
        return pages::link_done(
            StatusCode::BAD_REQUEST,
            "Link not valid",
            "This verification link is incomplete. Open the link from the mail again.",
        );
    }
    pages::link_form(pages::LinkForm {
        title: "Verify your email",
        message: "Confirm that this address is yours.",
        action: Purpose::VerifyEmail.page(),
        token: &query.token,
        ask_password: false,
        button: "Verify my email",
    })
}

/// `POST /auth/verify-email` (the page's form).
pub(super) async fn page_posted(
    State(state): State<AppState>,
    axum::Form(form): axum::Form<TokenQuery>,
) -> Response {
    match verify(&state, &form.token).await {
        Ok(done) => pages::link_done(
            StatusCode::OK,
            "Email verified",
            &if done.credits_granted > 0 {
                format!(
                    "Thank you: your address is verified and {} credits were added to your account.",
                    done.credits_granted
                )
            } else {
                "Thank you: your address is verified.".to_owned()
            },
        ),
        Err(e) if e.status == StatusCode::BAD_REQUEST => pages::link_done(
            StatusCode::BAD_REQUEST,
            "Link not valid",
            "This verification link is invalid, expired or already used.",
        ),
        Err(e) => pages::link_done(
            e.status,
            "Try again",
            "The hub is briefly unavailable; reload this page in a moment.",
        ),
    }
}
