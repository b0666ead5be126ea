//! The browser's sign-in at the hub: a session code kept in an `HttpOnly` cookie, made by the
//! email-and-password form here or by Google sign-in, so that an authorization request finds the
//! person already signed in. The cookie is one of the user's sessions (listed and revoked as
//! any other).

use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use hub_sessions::{SessionRecord, Verified, looks_like_token};
use serde::Deserialize;

use super::pages::{self, Lang};
use crate::AppState;
use crate::routes::cookie_value;

/// The cookie's name over plain http (tests, a developer's machine); over https it is
/// `__Host-hub_browser` (Secure, whole host, no Domain).
pub const BROWSER_COOKIE: &str = "hub_browser";

fn secure(state: &AppState) -> bool {
    state.config.public_base_url.starts_with("https://")
}

fn cookie_name(state: &AppState) -> String {
    if secure(state) {
        format!("__Host-{BROWSER_COOKIE}")
    } else {
        BROWSER_COOKIE.to_owned()
    }
}

/// The person signed in in this browser, if any.
pub(crate) async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<SessionRecord>, hub_sessions::SessionError> {
    let Some(token) = cookie_value(headers, &cookie_name(state)).filter(|t| looks_like_token(t))
    else {
        return Ok(None);
    };
    Ok(match state.sessions.verify(token).await? {
        Verified::Live(record) => Some(record),
        Verified::Invalid => None,
    })
}

/// Signs `user` in in this browser: a new session, and the `Set-Cookie` that keeps it.
pub(crate) async fn sign_in_browser(
    state: &AppState,
    user: &hub_ledger::users::User,
) -> Result<HeaderValue, hub_sessions::SessionError> {
    let made = state
        .sessions
        .create(user.id, &user.email, &user.name, Some("browser"), None)
        .await?;
    let max_age = state.sessions.lifetime().num_seconds();
    let attributes = if secure(state) { "; Secure" } else { "" };
    let cookie = format!(
        "{}={}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{attributes}",
        cookie_name(state),
        made.token
    );
    HeaderValue::from_str(&cookie)
        .map_err(|e| hub_sessions::SessionError::Corrupt(format!("cookie: {e}")))
}

/// Where a sign-in may continue: an authorization request, the account page or a page of the
/// operator console on this hub, nothing else (a path of this site, never another one: no open
/// redirect).
pub(crate) fn continue_allowed(path: &str) -> bool {
    let account = path == crate::account::PATH
        || path
            .strip_prefix(crate::account::PATH)
            .is_some_and(|rest| rest.starts_with('?'));
    let console = path
        .strip_prefix(crate::console::PATH)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']));
    (path.starts_with("/oauth/authorize?") || account || console)
        && !path.chars().any(|c| c.is_control() || c == '\\')
        && path.chars().count() <= 4096
}

/// The `Set-Cookie` that signs this browser out (its session is ended separately).
pub(crate) fn signed_out_cookie(state: &AppState) -> HeaderValue {
    let attributes = if secure(state) { "; Secure" } else { "" };
    let cookie = format!(
        "{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{attributes}",
        cookie_name(state)
    );
    HeaderValue::from_str(&cookie).unwrap_or(HeaderValue::from_static(""))
}

/// The sign-in form's fields.
#[derive(Deserialize)]
pub(crate) struct SignInForm {
    email: String,
    password: String,
    /// The authorization request to go back to.
    #[serde(rename = "continue")]
    continue_to: String,
}

/// `POST /oauth/sign-in`: email and password, then back to the authorization request.
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let lang = Lang::of(&headers);
    if !continue_allowed(&form.continue_to) {
        return pages::error(StatusCode::BAD_REQUEST, lang, lang.words().bad_request);
    }
    let address = crate::routes::accounts::client_address(&state, peer, &headers);
    let user =
        match crate::routes::accounts::check_password(&state, address, &form.email, form.password)
            .await
        {
            Ok(user) => user,
            Err(error) => {
                let words = lang.words();
                let message = match error.status {
                    StatusCode::TOO_MANY_REQUESTS => words.too_many_attempts,
                    StatusCode::UNAUTHORIZED => words.wrong_password,
                    StatusCode::FORBIDDEN => words.account_disabled,
                    _ => words.unavailable,
                };
                return pages::sign_in(
                    &state,
                    lang,
                    &form.continue_to,
                    Some(message),
                    error.status,
                );
            }
        };
    match sign_in_browser(&state, &user).await {
        Ok(cookie) => {
            let mut response = Redirect::to(&form.continue_to).into_response();
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            response
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot sign a browser in");
            pages::error(
                StatusCode::SERVICE_UNAVAILABLE,
                lang,
                lang.words().unavailable,
            )
        }
    }
}
