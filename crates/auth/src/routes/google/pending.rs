//! A sign-in between the redirect to Google and the callback: what the hub keeps about it (used
//! once), and the cookie that binds it to the browser that started it.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{HeaderMap, header};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{bad_request, retry_link, unavailable};
use crate::AppState;
use crate::google::Authorization;

/// How long a started sign-in may take.
pub(super) const SIGN_IN_TTL: Duration = Duration::from_secs(600);

/// The cookie that binds one sign-in to the browser that started it.
pub(super) struct BindingCookie {
    pub(super) name: String,
    pub(super) path: &'static str,
    pub(super) secure: bool,
}

/// Named after the sign-in's state; over TLS a `__Host-` cookie (Secure, whole host, no Domain).
pub(super) fn binding_cookie(state: &AppState, state_param: &str) -> BindingCookie {
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
pub(super) struct PendingSignIn {
    binding_hash: String,
    pub(super) nonce: String,
    pub(super) pkce_verifier: String,
    pub(super) session: String,
    pub(super) return_to: String,
    expires_at: DateTime<Utc>,
    /// An authorization request to go back to, signed in, instead of the success page.
    #[serde(default)]
    pub(super) continue_to: Option<String>,
}

/// Whether a GPT's `session` parameter has the promised shape.
pub(super) fn valid_session_param(session: &str) -> bool {
    (1..=128).contains(&session.len())
        && session
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// The value of the cookie `name` the request carries, if any.
pub(crate) fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The store's key for a sign-in's state.
fn pending_key(state_param: &str) -> String {
    format!("signin:{}", sha256_hex(state_param))
}

/// Keeps a new sign-in for its callback (with the authorization request to go back to, if any),
/// bound to a fresh value; the `Set-Cookie` that gives
/// the browser that value, or the page that says the hub cannot start it now.
pub(super) async fn remember(
    state: &AppState,
    authorization: &Authorization,
    session: &str,
    return_to: &str,
    continue_to: Option<String>,
) -> Result<String, Response> {
    // A fresh binding for every sign-in, in a cookie of its own: nobody can fix its value in
    // advance, and several sign-ins in one browser do not disturb each other.
    let mut bytes = [0u8; 32];
    if getrandom::fill(&mut bytes).is_err() {
        return Err(unavailable());
    }
    let binding = hex::encode(bytes);
    let now = state.sessions.clock().now();
    let pending = PendingSignIn {
        binding_hash: sha256_hex(&binding),
        nonce: authorization.nonce.clone(),
        pkce_verifier: authorization.pkce_verifier.clone(),
        session: session.to_owned(),
        return_to: return_to.to_owned(),
        expires_at: now
            + chrono::Duration::from_std(SIGN_IN_TTL).unwrap_or(chrono::Duration::minutes(10)),
        continue_to,
    };
    let Ok(payload) = serde_json::to_string(&pending) else {
        return Err(unavailable());
    };
    if let Err(e) = state
        .sessions
        .store()
        .put_once(
            &pending_key(&authorization.state),
            &payload,
            SIGN_IN_TTL,
            now,
        )
        .await
    {
        tracing::warn!(error = %e, "cannot keep a sign-in state");
        return Err(unavailable());
    }
    let cookie = binding_cookie(state, &authorization.state);
    Ok(format!(
        "{}={binding}; Path={}; Max-Age={}; HttpOnly; SameSite=Lax{}",
        cookie.name,
        cookie.path,
        SIGN_IN_TTL.as_secs(),
        if cookie.secure { "; Secure" } else { "" }
    ))
}

/// The sign-in a callback finishes, taken once whatever happens next (a state is never good for
/// a second try) and checked: not expired, and back in the browser that started it. With it,
/// the cookie to clear; else the page that says why not.
pub(super) async fn take(
    state: &AppState,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<(PendingSignIn, BindingCookie), Response> {
    let Some(state_param) = query
        .get("state")
        .filter(|s| !s.is_empty() && s.len() <= 512)
    else {
        return Err(bad_request(
            "ลิงก์ไม่ถูกต้อง",
            "The sign-in came back without its state.",
            None,
        ));
    };
    let now = state.sessions.clock().now();
    let taken = match state
        .sessions
        .store()
        .take_once(&pending_key(state_param), now)
        .await
    {
        Ok(taken) => taken,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a sign-in state");
            return Err(unavailable());
        }
    };
    let Some(pending) = taken.and_then(|p| serde_json::from_str::<PendingSignIn>(&p).ok()) else {
        return Err(bad_request(
            "ลิงก์หมดอายุหรือถูกใช้แล้ว",
            "This sign-in has expired or was already used.",
            None,
        ));
    };
    let retry = retry_link(&pending.session, &pending.return_to);
    if pending.expires_at <= now {
        return Err(bad_request(
            "ลิงก์หมดอายุหรือถูกใช้แล้ว",
            "This sign-in has expired.",
            Some(&retry),
        ));
    }
    let cookie = binding_cookie(state, state_param);
    let same_browser =
        cookie_value(headers, &cookie.name).is_some_and(|b| sha256_hex(b) == pending.binding_hash);
    if !same_browser {
        return Err(bad_request(
            "เข้าสู่ระบบไม่สำเร็จ",
            "This sign-in was started in another browser. Start it again here.",
            Some(&retry),
        ));
    }
    Ok((pending, cookie))
}
