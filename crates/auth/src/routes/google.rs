//! `GET /auth/google` and `GET /auth/google/callback`: the browser's side of the sign-in.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::pages;

/// How long a started sign-in may take.
const SIGN_IN_TTL: Duration = Duration::from_secs(600);
/// The cookie that binds one sign-in to the browser that started it.
struct BindingCookie {
    name: String,
    path: &'static str,
    secure: bool,
}

/// Named after the sign-in's state; over TLS a `__Host-` cookie (Secure, whole host, no Domain).
fn binding_cookie(state: &AppState, state_param: &str) -> BindingCookie {
    let secure = state
        .config
        .google
        .as_ref()
        .is_some_and(|g| g.callback_url.starts_with("https://"));
    let id = &sha256_hex(state_param)[..16];
    if secure {
        BindingCookie {
            name: format!("__Host-hub_signin_{id}"),
            path: "/",
            secure,
        }
    } else {
        BindingCookie {
            name: format!("hub_signin_{id}"),
            path: "/auth/google",
            secure,
        }
    }
}

/// What is kept server-side between the redirect to Google and the callback, used once.
#[derive(Serialize, Deserialize)]
struct PendingSignIn {
    binding_hash: String,
    nonce: String,
    pkce_verifier: String,
    session: String,
    return_to: String,
    expires_at: DateTime<Utc>,
    /// An authorization request to go back to, signed in, instead of the success page.
    #[serde(default)]
    continue_to: Option<String>,
}

fn valid_session_param(session: &str) -> bool {
    (1..=128).contains(&session.len())
        && session
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn retry_link(session: &str, return_to: &str) -> String {
    format!("/auth/google?session={session}&return_to={return_to}")
}

fn bad_request(title: &str, message: &str, retry: Option<&str>) -> Response {
    pages::error(
        StatusCode::BAD_REQUEST,
        title,
        message,
        "ถ้าปัญหายังอยู่ ให้กลับไปที่ ChatGPT แล้วขอลิงก์เข้าสู่ระบบใหม่",
        retry,
    )
}

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
        ("continue" = Option<String>, Query, description = "For the hub's own sign-in page: the authorization request (`/oauth/authorize?…`) to go back to, signed in, instead of the page with the code."),
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
    let session = query.get("session").map(String::as_str).unwrap_or_default();
    if !valid_session_param(session) {
        return bad_request(
            "ลิงก์ไม่ถูกต้อง",
            "The sign-in link is incomplete: `session` must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' or '-'.",
            None,
        );
    }
    let return_to = query.get("return_to").map_or("chatgpt", String::as_str);
    if !state
        .config
        .return_to_allowlist
        .iter()
        .any(|allowed| allowed == return_to)
    {
        return bad_request(
            "ลิงก์ไม่ถูกต้อง",
            "The sign-in link names a return target this hub does not know.",
            None,
        );
    }
    let continue_to = query.get("continue").cloned();
    if continue_to
        .as_deref()
        .is_some_and(|c| !crate::oauth::continue_allowed(c))
    {
        return bad_request(
            "ลิงก์ไม่ถูกต้อง",
            "The sign-in link's `continue` is not an authorization request on this hub.",
            None,
        );
    }
    let Some(google) = &state.google else {
        return pages::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ยังไม่ได้ตั้งค่า Google sign-in",
            "Google sign-in is not configured on this hub.",
            "The operator sets GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET and GOOGLE_CALLBACK_URL (see the README).",
            None,
        );
    };
    // A fresh binding for every sign-in, in a cookie of its own: nobody can fix its value in
    // advance, and several sign-ins in one browser do not disturb each other.
    let mut bytes = [0u8; 32];
    if getrandom::fill(&mut bytes).is_err() {
        return unavailable();
    }
    let binding = hex::encode(bytes);
    let authorization = google.authorize();
    let now = state.sessions.clock().now();
    let pending = PendingSignIn {
        binding_hash: sha256_hex(&binding),
        nonce: authorization.nonce,
        pkce_verifier: authorization.pkce_verifier,
        session: session.to_owned(),
        return_to: return_to.to_owned(),
        expires_at: now
            + chrono::Duration::from_std(SIGN_IN_TTL).unwrap_or(chrono::Duration::minutes(10)),
        continue_to,
    };
    let Ok(payload) = serde_json::to_string(&pending) else {
        return unavailable();
    };
    let key = format!("signin:{}", sha256_hex(&authorization.state));
    if let Err(e) = state
        .sessions
        .store()
        .put_once(&key, &payload, SIGN_IN_TTL, now)
        .await
    {
        tracing::warn!(error = %e, "cannot keep a sign-in state");
        return unavailable();
    }
    let cookie = binding_cookie(&state, &authorization.state);
    let cookie = format!(
        "{}={binding}; Path={}; Max-Age={}; HttpOnly; SameSite=Lax{}",
        cookie.name,
        cookie.path,
        SIGN_IN_TTL.as_secs(),
        if cookie.secure { "; Secure" } else { "" }
    );
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
    let Some(state_param) = query
        .get("state")
        .filter(|s| !s.is_empty() && s.len() <= 512)
    else {
        return bad_request(
            "ลิงก์ไม่ถูกต้อง",
            "The sign-in came back without its state.",
            None,
        );
    };
    let now = state.sessions.clock().now();
    // Taken once, whatever happens next: a state is never good for a second try.
    let taken = match state
        .sessions
        .store()
        .take_once(&format!("signin:{}", sha256_hex(state_param)), now)
        .await
    {
        Ok(taken) => taken,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a sign-in state");
            return unavailable();
        }
    };
    let Some(pending) = taken.and_then(|p| serde_json::from_str::<PendingSignIn>(&p).ok()) else {
        return bad_request(
            "ลิงก์หมดอายุหรือถูกใช้แล้ว",
            "This sign-in has expired or was already used.",
            None,
        );
    };
    let retry = retry_link(&pending.session, &pending.return_to);
    if pending.expires_at <= now {
        return bad_request(
            "ลิงก์หมดอายุหรือถูกใช้แล้ว",
            "This sign-in has expired.",
            Some(&retry),
        );
    }
    let cookie = binding_cookie(&state, state_param);
    let same_browser =
        cookie_value(&headers, &cookie.name).is_some_and(|b| sha256_hex(b) == pending.binding_hash);
    if !same_browser {
        return bad_request(
            "เข้าสู่ระบบไม่สำเร็จ",
            "This sign-in was started in another browser. Start it again here.",
            Some(&retry),
        );
    }
    if let Some(error) = query.get("error") {
        let message = if error == "access_denied" {
            "The sign-in was cancelled at Google."
        } else {
            "Google could not complete the sign-in."
        };
        return bad_request("เข้าสู่ระบบไม่สำเร็จ", message, Some(&retry));
    }
    let Some(code) = query
        .get("code")
        .filter(|c| !c.is_empty() && c.len() <= 2048)
    else {
        return bad_request(
            "เข้าสู่ระบบไม่สำเร็จ",
            "Google sent no authorization code.",
            Some(&retry),
        );
    };
    let identity = match google
        .finish(code, &pending.pkce_verifier, &pending.nonce)
        .await
    {
        Ok(identity) => identity,
        Err(e) => {
            tracing::warn!(error = %e, "sign-in failed at the provider step");
            return bad_request(
                "เข้าสู่ระบบไม่สำเร็จ",
                "Google's answer could not be verified.",
                Some(&retry),
            );
        }
    };
    let Some(email) = identity
        .email
        .as_deref()
        .filter(|_| identity.email_verified)
    else {
        return bad_request(
            "อีเมลยังไม่ได้ยืนยัน",
            "Your Google account's email address is not verified.",
            Some(&retry),
        );
    };
    let name = identity.name.clone().unwrap_or_default();
    let user = match find_or_create_user(&state, &identity.subject, email, &name).await {
        Ok(Ok(Found { user, linked })) => {
            if linked {
                tracing::info!(user_id = %user.id, "a Google account took over its address's account; earlier tokens ended");
            }
            user
        }
        Ok(Err(Refusal(why))) => return bad_request("เข้าสู่ระบบไม่สำเร็จ", why, None),
        Err(e) => {
            tracing::warn!(error = %e, "cannot find or create the user");
            return unavailable();
        }
    };
    let spent = format!(
        "{}=; Path={}; Max-Age=0; HttpOnly; SameSite=Lax",
        cookie.name, cookie.path
    );
    if let Some(continue_to) = &pending.continue_to {
        return continue_signed_in(&state, &user, continue_to, &spent).await;
    }
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
    if let Ok(spent) = HeaderValue::from_str(&spent) {
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

/// The user a Google account signs in as.
struct Found {
    user: hub_ledger::users::User,
    /// The Google account was linked just now to an account found by its email.
    linked: bool,
}

/// Why a verified Google account cannot be signed in; shown to the person, never retried.
struct Refusal(&'static str);

/// The user of a Google account: found by its subject, else linked by its verified email (when
/// that user has no Google account yet; an unverified password account then gets the new-user
/// credits it was owed), else created with the new-user credits.
async fn find_or_create_user(
    state: &AppState,
    subject: &str,
    email: &str,
    name: &str,
) -> anyhow::Result<Result<Found, Refusal>> {
    // Display names are free text at Google: keep them printable and of a sane length.
    let name: String = name.chars().filter(|c| !c.is_control()).take(200).collect();
    let name = if name.trim().is_empty() {
        email.split('@').next().unwrap_or("user").to_owned()
    } else {
        name
    };
    let Ok(new) = hub_ledger::users::NewUser::new(
        email,
        &name,
        state.config.new_user_credits,
        hub_ledger::users::Role::User,
    ) else {
        return Ok(Err(Refusal(
            "Google gave an email address this hub cannot use.",
        )));
    };
    let users = &state.users;
    for _ in 0..3 {
        if let Some(user) = users.find_user_by_google_subject(subject).await? {
            return Ok(Ok(Found {
                user,
                linked: false,
            }));
        }
        if let Some(user) = users.find_user_by_email(email).await? {
            // Whoever registered this address with a password before its owner proved it may
            // hold tokens: everything issued to the account ends before the link, so that
            // nothing issued before it can outlive it, even if this step is interrupted. (An
            // account without a password had no way to be signed in by anyone else.)
            let has_password = users
                .find_credentials(email)
                .await?
                .is_some_and(|(_, hash)| hash.is_some());
            if has_password {
                state.sessions.end_everything(user.id).await?;
            }
            // Google has just proved the address: a password account that never proved it gets
            // its new-user credits now (once: a proven address is never granted again).
            users
                .verify_email(user.id, state.config.new_user_credits)
                .await?;
            if users.link_google_subject(user.id, subject).await? {
                return Ok(Ok(Found { user, linked: true }));
            }
            if users.find_user_by_google_subject(subject).await?.is_none() {
                // The address's account belongs to another Google account: never re-point it.
                return Ok(Err(Refusal(
                    "This email address belongs to an account linked to another Google account.",
                )));
            }
            continue;
        }
        if let Some(created) = users
            .create_user(&new.clone().with_google_subject(subject))
            .await?
        {
            return Ok(Ok(Found {
                user: created.user,
                linked: false,
            }));
        }
        // A concurrent sign-in created the user first: look again.
    }
    anyhow::bail!("the user changed under three attempts")
}
