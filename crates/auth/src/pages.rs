//! The pages a person sees: the Thai success page with the verification code, error pages in
//! the same style, and the pages the links in mail open. Every page is `no-store`, sends no
//! referrer and runs only its own script (the link pages none: they are plain forms).

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

#[derive(Template)]
#[template(path = "success.html")]
struct SuccessPage<'a> {
    name: &'a str,
    code: &'a str,
    valid_days: i64,
    expires_at: &'a str,
    script_nonce: &'a str,
    style_nonce: &'a str,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
    detail: &'a str,
    retry_link: Option<&'a str>,
    style_nonce: &'a str,
}

#[derive(Template)]
#[template(path = "link.html")]
struct LinkPage<'a> {
    title: &'a str,
    message: &'a str,
    action: Option<&'a str>,
    token: &'a str,
    ask_password: bool,
    button: &'a str,
    note: &'a str,
    style_nonce: String,
}

/// A form that posts a mailed link's token back to `action` (with a new password when
/// `ask_password`); the link itself does nothing on `GET`, so mail scanners that open links
/// cannot spend it.
#[derive(Debug, Clone, Copy)]
pub struct LinkForm<'a> {
    /// The heading.
    pub title: &'a str,
    /// What pressing the button does.
    pub message: &'a str,
    /// Where the form posts.
    pub action: &'a str,
    /// The link's token.
    pub token: &'a str,
    /// Whether the form asks for a new password.
    pub ask_password: bool,
    /// The button's label.
    pub button: &'a str,
}

/// The page of a mailed link: its form.
pub fn link_form(form: LinkForm<'_>) -> Response {
    link_page(
        StatusCode::OK,
        LinkPage {
            title: form.title,
            message: form.message,
            action: Some(form.action),
            token: form.token,
            ask_password: form.ask_password,
            button: form.button,
            note: "This link works once and expires; if it no longer works, ask for a new one.",
            style_nonce: nonce(),
        },
    )
}

/// What following a mailed link did.
pub fn link_done(status: StatusCode, title: &str, message: &str) -> Response {
    link_page(
        status,
        LinkPage {
            title,
            message,
            action: None,
            token: "",
            ask_password: false,
            button: "",
            note: "You can close this page.",
            style_nonce: nonce(),
        },
    )
}

fn link_page(status: StatusCode, page: LinkPage<'_>) -> Response {
    let style_nonce = page.style_nonce.clone();
    match page.render() {
        Ok(html) => secure(status, html, None, &style_nonce, "'self'"),
        Err(e) => {
            tracing::error!(error = %e, "rendering a link page");
            status.into_response()
        }
    }
}

pub(crate) fn nonce() -> String {
    let mut bytes = [0u8; 16];
    // A page without a fresh nonce would still be safe (nothing inline would run), just inert.
    let _ = getrandom::fill(&mut bytes);
    hex::encode(bytes)
}

/// A page with the hub's headers: `no-store`, no referrer, no framing, and a CSP that runs only
/// the page's own nonce-marked script and style and lets its forms post to `form_action`.
pub(crate) fn secure(
    status: StatusCode,
    html: String,
    script_nonce: Option<&str>,
    style_nonce: &str,
    form_action: &str,
) -> Response {
    let script = script_nonce.map_or_else(|| "'none'".to_owned(), |n| format!("'nonce-{n}'"));
    let policy = format!(
        "default-src 'none'; script-src {script}; style-src 'nonce-{style_nonce}'; img-src 'self'; \
         base-uri 'none'; form-action {form_action}; frame-ancestors 'none'"
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if let Ok(value) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

/// A moment as every page of the hub shows it: UTC, to the minute.
pub(crate) fn minute(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The success page showing the verification code.
pub fn success(
    name: &str,
    code: &str,
    valid_days: i64,
    expires_at: chrono::DateTime<chrono::Utc>,
) -> Response {
    let (script_nonce, style_nonce) = (nonce(), nonce());
    let expires_at = minute(expires_at);
    let page = SuccessPage {
        name,
        code,
        valid_days,
        expires_at: &expires_at,
        script_nonce: &script_nonce,
        style_nonce: &style_nonce,
    };
    match page.render() {
        Ok(html) => secure(
            StatusCode::OK,
            html,
            Some(&script_nonce),
            &style_nonce,
            "'none'",
        ),
        Err(e) => {
            tracing::error!(error = %e, "rendering the success page");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// An error page with a way to try again.
pub fn error(
    status: StatusCode,
    title: &str,
    message: &str,
    detail: &str,
    retry_link: Option<&str>,
) -> Response {
    let style_nonce = nonce();
    let page = ErrorPage {
        title,
        message,
        detail,
        retry_link,
        style_nonce: &style_nonce,
    };
    match page.render() {
        Ok(html) => secure(status, html, None, &style_nonce, "'none'"),
        Err(e) => {
            tracing::error!(error = %e, "rendering an error page");
            status.into_response()
        }
    }
}
