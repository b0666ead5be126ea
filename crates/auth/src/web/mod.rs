//! What the hub's signed-in browser pages share (the account page and the operator console): the
//! CSRF token of their forms, the sign-in they fall back to, and the inline-SVG usage chart. The
//! page headers and the strict CSP are [`crate::pages::secure`]; the sign-in cookie is
//! [`crate::oauth`]'s `hub_browser`.

pub(crate) mod chart;
pub(crate) mod csrf;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use hub_sessions::SessionRecord;

use crate::AppState;
use crate::oauth::pages::{self, Lang};
use crate::oauth::signed_in;

/// Why a browser page cannot be shown to this browser yet.
pub(crate) enum NotSignedIn {
    /// The hub's sign-in page, continuing to the page asked for.
    SignIn(Response),
    /// A store did not answer.
    Unavailable(hub_sessions::SessionError),
}

/// The browser's session, or the sign-in page that comes back to `continue_to` (a path the
/// sign-in allows, see [`crate::oauth::continue_allowed`]).
pub(crate) async fn session_or_sign_in(
    state: &AppState,
    headers: &HeaderMap,
    continue_to: &str,
) -> Result<SessionRecord, NotSignedIn> {
    match signed_in(state, headers).await {
        Ok(Some(session)) => Ok(session),
        Ok(None) => Err(NotSignedIn::SignIn(sign_in_page(
            state,
            headers,
            continue_to,
        ))),
        Err(e) => Err(NotSignedIn::Unavailable(e)),
    }
}

/// The hub's sign-in page (email and password, or Google), continuing to `continue_to`.
pub(crate) fn sign_in_page(state: &AppState, headers: &HeaderMap, continue_to: &str) -> Response {
    pages::sign_in(state, Lang::of(headers), continue_to, None, StatusCode::OK)
}
