//! The operator console, `/console`: server-rendered pages for operators (dashboard, users and
//! their credits, service keys, the audit log), signed in with the hub's own browser sign-in
//! (the `hub_browser` cookie, Google or email and password) and allowed by the permissions of
//! their roles. Every page and every form post checks its permission with the store (a page or
//! post the operator lacks it for is a 403 that names it), every form carries the browser's CSRF
//! token ([`crate::web::csrf`]), and the pages run no script.
//!
//! HTML pages, kept out of the OpenAPI document: the routes are a plain router.

mod actions;
mod audit;
mod dashboard;
mod keys;
mod operator;
mod spending;
mod standing;
mod users;
mod view;
mod webhooks;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::AppState;
use operator::Operator;

/// The console's path.
pub const PATH: &str = "/console";

/// The console's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(PATH, get(home))
        .route("/console/", get(home))
        .route("/console/dashboard", get(dashboard::show))
        .route("/console/users", get(users::search))
        .route("/console/users/{id}", get(users::detail))
        .route("/console/users/{id}/grant", post(actions::grant))
        .route("/console/users/{id}/refund", post(actions::refund))
        .route("/console/users/{id}/adjust", post(actions::adjust))
        .route("/console/users/{id}/disable", post(standing::disable))
        .route("/console/users/{id}/enable", post(standing::enable))
        .route("/console/users/{id}/delete", post(standing::delete))
        .route("/console/users/{id}/sign-out", post(standing::end_sessions))
        .route("/console/keys", get(keys::list).post(keys::create))
        .route("/console/keys/revoke", post(keys::revoke))
        .route(
            "/console/webhooks",
            get(webhooks::list).post(webhooks::create),
        )
        .route("/console/webhooks/delete", post(webhooks::delete))
        .route("/console/audit", get(audit::show))
        .route("/console/audit.csv", get(audit::csv))
        .route("/console/sign-out", post(operator::sign_out))
}

/// `GET /console`: the first page the operator may see (the dashboard for most).
async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match Operator::for_page(&state, &headers, PATH, None).await {
        Ok(operator) => match operator.nav().first() {
            Some(first) => Redirect::to(first.href).into_response(),
            None => operator::no_operator_role(&operator),
        },
        Err(page) => page,
    }
}
