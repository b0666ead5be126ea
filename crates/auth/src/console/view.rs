//! The console's frame (title, who is signed in, the pages they may open, the sign-out form) and
//! its message page, for refusals and errors; every console page is sent with the hub's page
//! headers and strict CSP ([`crate::pages::secure`]).

use askama::Template;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::operator::Operator;

/// A page the operator may open.
pub(crate) struct NavLink {
    pub label: &'static str,
    pub href: &'static str,
}

/// What every console page shows around its content.
pub(crate) struct Frame {
    pub title: String,
    pub style_nonce: String,
    pub csrf: String,
    pub who: String,
    pub nav: Vec<NavLink>,
}

impl Frame {
    /// The frame of a page shown to `operator`.
    pub(crate) fn of(operator: &Operator, title: &str) -> Self {
        Self {
            title: title.to_owned(),
            style_nonce: crate::pages::nonce(),
            csrf: operator.csrf.clone(),
            who: operator.session.email.clone(),
            nav: operator.nav(),
        }
    }

    /// The frame of a page shown to nobody signed in.
    fn bare(title: &str) -> Self {
        Self {
            title: title.to_owned(),
            style_nonce: crate::pages::nonce(),
            csrf: String::new(),
            who: String::new(),
            nav: Vec::new(),
        }
    }
}

/// Sends a rendered console page.
pub(crate) fn send(
    status: StatusCode,
    frame: &Frame,
    rendered: askama::Result<String>,
) -> Response {
    match rendered {
        Ok(html) => crate::pages::secure(status, html, None, &frame.style_nonce, "'self'"),
        Err(e) => {
            tracing::error!(error = %e, "rendering a console page");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "console_message.html")]
struct MessagePage<'a> {
    frame: Frame,
    message: &'a str,
    back: Option<&'a str>,
}

/// A page that says why something was refused or failed, in the console's frame.
pub(crate) fn message(
    operator: &Operator,
    status: StatusCode,
    title: &str,
    text: &str,
) -> Response {
    message_with_back(operator, status, title, text, None)
}

/// The same, with a link back to the page the form was on.
pub(crate) fn message_with_back(
    operator: &Operator,
    status: StatusCode,
    title: &str,
    text: &str,
    back: Option<&str>,
) -> Response {
    let page = MessagePage {
        frame: Frame::of(operator, title),
        message: text,
        back,
    };
    send(status, &page.frame, page.render())
}

/// The message page for a browser that is not (validly) signed in.
pub(crate) fn bare_message(status: StatusCode, title: &str, text: &str) -> Response {
    let page = MessagePage {
        frame: Frame::bare(title),
        message: text,
        back: Some(super::PATH),
    };
    send(status, &page.frame, page.render())
}

/// A store did not answer: a page that says to try again.
pub(crate) fn unavailable(error: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %error, "the console's stores are unavailable");
    bare_message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Briefly unavailable",
        "A store of the hub did not answer; try again in a moment.",
    )
}

/// A fresh idempotency key for a form: a double submit of the same form acts once.
pub(crate) fn form_key() -> String {
    format!("form-{}", crate::pages::nonce())
}
