//! The pages a person sees: the Thai success page with the verification code, and error pages in
//! the same style. Every page is `no-store`, sends no referrer and runs only its own script.

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

fn nonce() -> String {
    let mut bytes = [0u8; 16];
    // A page without a fresh nonce would still be safe (nothing inline would run), just inert.
    let _ = getrandom::fill(&mut bytes);
    hex::encode(bytes)
}

fn secure(
    status: StatusCode,
    html: String,
    script_nonce: Option<&str>,
    style_nonce: &str,
) -> Response {
    let script = script_nonce.map_or_else(|| "'none'".to_owned(), |n| format!("'nonce-{n}'"));
    let policy = format!(
        "default-src 'none'; script-src {script}; style-src 'nonce-{style_nonce}'; img-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
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

/// The success page showing the verification code.
pub fn success(
    name: &str,
    code: &str,
    valid_days: i64,
    expires_at: chrono::DateTime<chrono::Utc>,
) -> Response {
    let (script_nonce, style_nonce) = (nonce(), nonce());
    let expires_at = expires_at.format("%Y-%m-%d %H:%M UTC").to_string();
    let page = SuccessPage {
        name,
        code,
        valid_days,
        expires_at: &expires_at,
        script_nonce: &script_nonce,
        style_nonce: &style_nonce,
    };
    match page.render() {
        Ok(html) => secure(StatusCode::OK, html, Some(&script_nonce), &style_nonce),
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
        Ok(html) => secure(status, html, None, &style_nonce),
        Err(e) => {
            tracing::error!(error = %e, "rendering an error page");
            status.into_response()
        }
    }
}
