//! The account page's forms: sign one session out, sign out everywhere, disconnect an app, sign
//! this browser out. Each is a `POST` that carries the page's CSRF token ([`crate::web::csrf`]);
//! a form without a valid one is refused with 403 and changes nothing. Done, each goes back to the
//! page (303).

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use hub_sessions::SessionRecord;
use serde::Deserialize;

use super::words::Words;
use super::{PATH, unavailable};
use crate::AppState;
use crate::oauth::pages::Lang;
use crate::oauth::{signed_in, signed_out_cookie};
use crate::web::csrf;

/// A form's fields; missing ones are empty, so that a form without a token is a 403, not a 422.
#[derive(Deserialize)]
pub(crate) struct AccountForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    pub(super) id: String,
    /// The credit pack to buy, by its credits (`/account/buy`).
    #[serde(default)]
    pub(super) pack: String,
}

/// The browser's session, if it is signed in and the form carries its token; else the answer.
pub(super) async fn authorized(
    state: &AppState,
    headers: &HeaderMap,
    form: &AccountForm,
) -> Result<SessionRecord, Response> {
    let lang = Lang::of(headers);
    match signed_in(state, headers).await {
        Ok(Some(session)) if csrf::valid(state, &session.id, &form.csrf_token) => Ok(session),
        Ok(_) => Err(refused(
            lang,
            StatusCode::FORBIDDEN,
            Words::of(lang).forbidden,
        )),
        Err(e) => Err(unavailable(lang, &e)),
    }
}

pub(super) fn refused(lang: Lang, status: StatusCode, message: &str) -> Response {
    let words = Words::of(lang);
    crate::pages::error(status, words.error_title, message, "", None)
}

/// Back to the page; signed out in this browser too when `sign_out`.
pub(super) fn back(state: &AppState, sign_out: bool) -> Response {
    let mut response = Redirect::to(PATH).into_response();
    if sign_out {
        response
            .headers_mut()
            .insert(header::SET_COOKIE, signed_out_cookie(state));
    }
    response
}

/// `POST /account/sessions/revoke`: signs one of the user's own sessions out, by its id.
pub(crate) async fn end_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<AccountForm>,
) -> Response {
    let current = match authorized(&state, &headers, &form).await {
        Ok(session) => session,
        Err(refusal) => return refusal,
    };
    let lang = Lang::of(&headers);
    // Scoped to the user: another user's session id finds nothing.
    match state
        .sessions
        .store()
        .revoke_by_id(current.user_id, &form.id)
        .await
    {
        Ok(true) => {
            tracing::info!(user_id = %current.user_id, "a session was signed out from the account page");
            back(&state, form.id == current.id)
        }
        Ok(false) => refused(lang, StatusCode::NOT_FOUND, Words::of(lang).unknown_session),
        Err(e) => unavailable(lang, &e),
    }
}

/// `POST /account/sessions/end-all`: every session code, access token and refresh token of the
/// user, this browser's sign-in included.
pub(crate) async fn end_everything(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<AccountForm>,
) -> Response {
    let current = match authorized(&state, &headers, &form).await {
        Ok(session) => session,
        Err(refusal) => return refusal,
    };
    match state.sessions.end_everything(current.user_id).await {
        Ok(ended) => {
            tracing::info!(user_id = %current.user_id, ended, "signed out everywhere from the account page");
            back(&state, true)
        }
        Err(e) => unavailable(Lang::of(&headers), &e),
    }
}

/// `POST /account/apps/disconnect`: ends the user's grant to an app (its tokens stop at once).
pub(crate) async fn disconnect_app(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<AccountForm>,
) -> Response {
    let current = match authorized(&state, &headers, &form).await {
        Ok(session) => session,
        Err(refusal) => return refusal,
    };
    let lang = Lang::of(&headers);
    let owned = if form.id.is_empty() || form.id.len() > 64 {
        Ok(false)
    } else {
        state
            .users
            .find_grant(&form.id)
            .await
            .map(|g| g.is_some_and(|g| g.user_id == current.user_id))
    };
    let ended = match owned {
        Ok(true) => crate::oauth::grants::end_grant(&state, current.user_id, &form.id).await,
        Ok(false) => Ok(false),
        Err(e) => return unavailable(lang, &e),
    };
    match ended {
        Ok(true) => back(&state, false),
        Ok(false) => refused(lang, StatusCode::NOT_FOUND, Words::of(lang).unknown_app),
        Err(_) => unavailable(lang, &"the grant store"),
    }
}

/// `POST /account/sign-out`: signs this browser out.
pub(crate) async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<AccountForm>,
) -> Response {
    let current = match authorized(&state, &headers, &form).await {
        Ok(session) => session,
        Err(refusal) => return refusal,
    };
    match state
        .sessions
        .store()
        .revoke_by_id(current.user_id, &current.id)
        .await
    {
        Ok(_) => back(&state, true),
        Err(e) => unavailable(Lang::of(&headers), &e),
    }
}
