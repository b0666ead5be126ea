//! The end user's account page, `/account`: balance and held credits, promotional grants with
//! their end dates, history with filters, a usage chart, live sessions and connected apps, credit
//! packs to buy and the payments made, with forms to sign sessions out, to disconnect apps and to
//! buy credits. Signing in is the hub's own browser sign-in (the `hub_browser` cookie of
//! [`crate::oauth`]: Google, or email and password), which comes back here.
//!
//! HTML pages, kept out of the OpenAPI document: the routes are a plain router.

mod alerts;
mod buy;
mod forms;
mod history;
mod page;
mod promotions;
mod words;

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};

use crate::AppState;
use crate::oauth::pages::Lang;

/// The account page's path.
pub const PATH: &str = "/account";

/// The account page's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(PATH, get(page::show))
        .route("/account/sessions/revoke", post(forms::end_session))
        .route("/account/sessions/end-all", post(forms::end_everything))
        .route("/account/apps/disconnect", post(forms::disconnect_app))
        .route("/account/sign-out", post(forms::sign_out))
        .route("/account/buy", post(buy::buy))
        .route("/account/alerts", post(alerts::save))
}

/// A store did not answer: a page that says to try again.
pub(crate) fn unavailable(lang: Lang, error: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %error, "the account page's stores are unavailable");
    let words = words::Words::of(lang);
    crate::pages::error(
        StatusCode::SERVICE_UNAVAILABLE,
        words.error_title,
        words.unavailable,
        "",
        None,
    )
}
