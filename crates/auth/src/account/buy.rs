//! `POST /account/buy`: the "buy" button of a credit pack. With the page's CSRF token, it starts a
//! Stripe Checkout for the signed-in user (the same [`hub_payments::Payments::start_checkout`] as
//! `POST /api/mcp/v1/credits/checkout`) and sends the browser to Stripe's payment page (303). The
//! credits come later, from Stripe's signed webhook, once per payment; this form grants nothing.

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use hub_payments::CheckoutRefusal;

use super::forms::{AccountForm, authorized, refused};
use super::words::Words;
use crate::AppState;
use crate::oauth::pages::Lang;

/// `POST /account/buy` with `pack` (the pack's credits, e.g. `100`).
pub(crate) async fn buy(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<AccountForm>,
) -> Response {
    let current = match authorized(&state, &headers, &form).await {
        Ok(session) => session,
        Err(refusal) => return refusal,
    };
    let lang = Lang::of(&headers);
    let words = Words::of(lang);
    match state
        .payments
        .start_checkout(current.user_id, &form.pack)
        .await
    {
        Ok(started) => {
            tracing::info!(
                user_id = %current.user_id,
                session = %started.session.id,
                credits = started.pack.credits,
                "a purchase started from the account page"
            );
            Redirect::to(&started.session.url).into_response()
        }
        Err(CheckoutRefusal::UnknownPack(_)) => {
            refused(lang, StatusCode::NOT_FOUND, words.unknown_pack)
        }
        Err(CheckoutRefusal::NotConfigured) => refused(
            lang,
            StatusCode::SERVICE_UNAVAILABLE,
            words.payments_unavailable,
        ),
        Err(CheckoutRefusal::Provider) => {
            refused(lang, StatusCode::BAD_GATEWAY, words.payments_unavailable)
        }
    }
}
