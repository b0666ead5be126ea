//! `GET /auth/google` and `GET /auth/google/callback`: the browser's side of the sign-in.

mod pending;

pub(crate) use pending::cookie_value;
mod users;

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use self::pending::{PendingSignIn, valid_session_param};
use self::users::{Found, Refusal, find_or_create_user};
use crate::AppState;
use crate::google::Google;
use crate::pages;

/// The link that starts the same sign-in again.
fn retry_link(session: &str, return_to: &str) -> String {
    format!("/auth/google?session={session}&return_to={return_to}")
}

/// A 400 page with a way to try again, when there is one.
fn bad_request(title: &str, message: &str, retry: Option<&str>) -> Response {
    pages::error(
        StatusCode::BAD_REQUEST,
        title,
        message,
        "ถ้าปัญหายังอยู่ ให้กลับไปที่ ChatGPT แล้วขอลิงก์เข้าสู่ระบบใหม่",
        retry,
    )
}

/// A 503 page: a store is briefly unavailable.
fn unavailable() -> Response {
    let mut response = pages::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "ระบบไม่พร้อมใช้งานชั่วคราว",
        "Sign-in is briefly unavailable. Please try again in a moment.",
        "กรุณาลองใหม่อีกครั้งในอีกสักครู่",
        None,
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// Starts a sign-in: 302 to Google with state, nonce and PKCE.
#[utoipa::path(
    get,
    path = "/auth/google",
    operation_id = "startGoogleSignIn",
    tag = "sign-in",
    summary = "Start signing in with Google (a link for the user)",
    description = "The sign-in link a GPT gives the user: redirects the browser to Google. After sign-in the user sees a page with their verification code (VERIFIED-…) to paste back into the chat.",
    params(
        ("session" = String, Query, description = "An id of the chat or client, 1 to 128 of A-Z, a-z, 0-9, '.', '_', '-'.", min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9._-]{1,128}$"),
        ("return_to" = Option<String>, Query, description = "Where the user returns, from the operator's allow-list (default `chatgpt`)."),
        ("continue" = Option<String>, Query, description = "For the hub's own sign-in page: the authorization request (`/oauth/authorize?…`) the account page (`/account`) or an operator's page (`/console…`) to go back to, signed in, instead of the page with the code.", pattern = r"^(/oauth/authorize\?[^\x00-\x1F\x7F-\x9F\\]{0,4000}|/account(\?[^\x00-\x1F\x7F-\x9F\\]{0,4000})?|/console([/?][^\x00-\x1F\x7F-\x9F\\]{0,4000})?)$"),
    ),
    responses(
        (status = 302, description = "To Google's consent page."),
        (status = 400, description = "The link is incomplete, or names a return target this hub does not know (an HTML page).", body = String, content_type = "text/html"),
        (status = 503, description = "Google sign-in is not configured on this hub, or a store is briefly unavailable (an HTML page).", body = String, content_type = "text/html"),
    ),
    security(())
)]
pub async fn start(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (session, return_to, continue_to) = match start_params(&state, &query) {
        Ok(params) => params,
        Err(wrong) => return bad_request("ลิงก์ไม่ถูกต้อง", wrong, None),
    };
    let Some(google) = &state.google else {
        return pages::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ยังไม่ได้ตั้งค่า Google sign-in",
            "Google sign-in is not configured on this hub.",
            "The operator sets GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET and GOOGLE_CALLBACK_URL (see the README).",
            None,
        );
    };
    let authorization = google.authorize();
    let cookie =
        match pending::remember(&state, &authorization, session, return_to, continue_to).await {
            Ok(cookie) => cookie,
            Err(refused) => return refused,
        };
    let mut response = StatusCode::FOUND.into_response();
    let response_headers = response.headers_mut();
    match HeaderValue::from_str(&authorization.url) {
        Ok(location) => response_headers.insert(header::LOCATION, location),
        Err(_) => return unavailable(),
    };
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        response_headers.insert(header::SET_COOKIE, cookie);
    }
    response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response_headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// A sign-in link's `session`, `return_to` (`chatgpt` when absent) and `continue` (an
/// authorization request on this hub), checked; else what is wrong with the link.
fn start_params<'q>(
    state: &AppState,
    query: &'q HashMap<String, String>,
) -> Result<(&'q str, &'q str, Option<String>), &'static str> {
    let session = query.get("session").map(String::as_str).unwrap_or_default();
    if !valid_session_param(session) {
        return Err(
            "The sign-in link is incomplete: `session` must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' or '-'.",
        );
    }
    let return_to = query.get("return_to").map_or("chatgpt", String::as_str);
    if !state
        .config
        .return_to_allowlist
        .iter()
        .any(|allowed| allowed == return_to)
    {
        return Err("The sign-in link names a return target this hub does not know.");
    }
    let continue_to = query.get("continue").cloned();
    if continue_to
        .as_deref()
        .is_some_and(|c| !crate::oauth::continue_allowed(c))
    {
        return Err(
            "The sign-in link's `continue` is not an authorization request, the account page or the console on this hub.",
        );
    }
    Ok((session, return_to, continue_to))
}

/// Finishes a sign-in and shows the verification code.
#[utoipa::path(
    get,
    path = "/auth/google/callback",
    operation_id = "googleCallback",
    tag = "sign-in",
    summary = "Google returns the browser here",
    description = "Where Google sends the browser back. Shows the success page with the verification code, or an error page.",
    params(
        ("state" = String, Query, description = "The sign-in's state, from Google.", min_length = 1, max_length = 512),
        ("code" = String, Query, description = "The authorization code, from Google."),
    ),
    responses(
        (status = 200, description = "The success page (HTML) with the verification code.", body = String, content_type = "text/html"),
        (status = 400, description = "The sign-in failed, expired or was never started, or Google sign-in is not configured (an HTML page).", body = String, content_type = "text/html"),
        (status = 503, description = "A store is briefly unavailable (an HTML page).", body = String, content_type = "text/html"),
    ),
    security(())
)]
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(google) = &state.google else {
        return bad_request(
            "ยังไม่ได้ตั้งค่า Google sign-in",
            "Google sign-in is not configured on this hub.",
            None,
        );
    };
    let (pending, cookie) = match pending::take(&state, &headers, &query).await {
        Ok(taken) => taken,
        Err(refused) => return refused,
    };
    let retry = retry_link(&pending.session, &pending.return_to);
    let account = match verified_account(google, &query, &pending, &retry).await {
        Ok(account) => account,
        Err(refused) => return refused,
    };
    let user = match signed_in_user(&state, &account).await {
        Ok(user) => user,
        Err(refused) => return refused,
    };
    let spent = format!(
        "{}=; Path={}; Max-Age=0; HttpOnly; SameSite=Lax",
        cookie.name, cookie.path
    );
    if let Some(continue_to) = &pending.continue_to {
        return continue_signed_in(&state, &user, continue_to, &spent).await;
    }
    show_code(&state, &user, &pending, &spent).await
}

/// A Google account whose answer was verified, with its verified email address.
struct Account {
    subject: String,
    email: String,
    name: String,
}

/// Google's word on the sign-in, verified, with a verified email address; else the page that
/// says why the sign-in failed.
async fn verified_account(
    google: &Google,
    query: &HashMap<String, String>,
    pending: &PendingSignIn,
    retry: &str,
) -> Result<Account, Response> {
    if let Some(error) = query.get("error") {
        let message = if error == "access_denied" {
            "The sign-in was cancelled at Google."
        } else {
            "Google could not complete the sign-in."
        };
        return Err(bad_request("เข้าสู่ระบบไม่สำเร็จ", message, Some(retry)));
    }
    let Some(code) = query
        .get("code")
        .filter(|c| !c.is_empty() && c.len() <= 2048)
    else {
        return Err(bad_request(
            "เข้าสู่ระบบไม่สำเร็จ",
            "Google sent no authorization code.",
            Some(retry),
        ));
    };
    let identity = match google
        .finish(code, &pending.pkce_verifier, &pending.nonce)
        .await
    {
        Ok(identity) => identity,
        Err(e) => {
            tracing::warn!(error = %e, "sign-in failed at the provider step");
            return Err(bad_request(
                "เข้าสู่ระบบไม่สำเร็จ",
                "Google's answer could not be verified.",
                Some(retry),
            ));
        }
    };
    let Some(email) = identity.email.filter(|_| identity.email_verified) else {
        return Err(bad_request(
            "อีเมลยังไม่ได้ยืนยัน",
            "Your Google account's email address is not verified.",
            Some(retry),
        ));
    };
    Ok(Account {
        subject: identity.subject,
        email,
        name: identity.name.unwrap_or_default(),
    })
}

/// The user the verified Google account signs in as; else the page that says why not.
async fn signed_in_user(
    state: &AppState,
    account: &Account,
) -> Result<hub_ledger::users::User, Response> {
    match find_or_create_user(state, &account.subject, &account.email, &account.name).await {
        Ok(Ok(Found { user, linked })) => {
            if linked {
                tracing::info!(user_id = %user.id, "a Google account took over its address's account; earlier tokens ended");
            }
            match crate::admin::is_disabled(state, user.id).await {
                Ok(false) => Ok(user),
                Ok(true) => Err(bad_request(
                    "บัญชีนี้ถูกระงับ",
                    "This account is disabled (account_disabled); contact the operator.",
                    None,
                )),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the account's standing");
                    Err(unavailable())
                }
            }
        }
        Ok(Err(Refusal(why))) => Err(bad_request("เข้าสู่ระบบไม่สำเร็จ", why, None)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot find or create the user");
            Err(unavailable())
        }
    }
}

/// Makes the user's session and shows its verification code, clearing the sign-in's cookie
/// (`spent_binding`).
async fn show_code(
    state: &AppState,
    user: &hub_ledger::users::User,
    pending: &PendingSignIn,
    spent_binding: &str,
) -> Response {
    let made = match state
        .sessions
        .create(
            user.id,
            &user.email,
            &user.name,
            Some(&pending.session),
            Some(&pending.return_to),
        )
        .await
    {
        Ok(made) => made,
        Err(e) => {
            tracing::warn!(error = %e, "cannot create a session");
            return unavailable();
        }
    };
    tracing::info!(user_id = %user.id, session_id = %made.record.id, "signed in with Google");
    let mut page = pages::success(
        &user.name,
        &made.token,
        state.sessions.lifetime().num_days(),
        made.record.expires_at,
    );
    if let Ok(spent) = HeaderValue::from_str(spent_binding) {
        page.headers_mut().insert(header::SET_COOKIE, spent);
    }
    page
}

/// Back to an authorization request, signed in in this browser.
async fn continue_signed_in(
    state: &AppState,
    user: &hub_ledger::users::User,
    continue_to: &str,
    spent_binding: &str,
) -> Response {
    let signed_in = match crate::oauth::sign_in_browser(state, user).await {
        Ok(cookie) => cookie,
        Err(e) => {
            tracing::warn!(error = %e, "cannot sign a browser in");
            return unavailable();
        }
    };
    tracing::info!(user_id = %user.id, "signed in with Google for an authorization request");
    let mut response = axum::response::Redirect::to(continue_to).into_response();
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, signed_in);
    if let Ok(spent) = HeaderValue::from_str(spent_binding) {
        headers.append(header::SET_COOKIE, spent);
    }
    response
}
