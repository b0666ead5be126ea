//! One-time links sent by mail: verifying an address, resetting a password.
//!
//! - The token is 32 bytes from the operating system's random source, base64url (43 characters,
//!   256 bits).
//! - Only its SHA-256 hash is stored, in the session store's one-time values (Redis in
//!   production, the SQLite file embedded), with the user and when it ends.
//! - Redeeming takes it: the first call gets it, every later one nothing.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::sessions::{SessionError, Sessions, token_hash};

/// How many characters a link token has.
pub const TOKEN_LENGTH: usize = 43;

/// What a link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Proves the address of a new password account (valid 24 hours).
    VerifyEmail,
    /// Sets a new password (valid 30 minutes).
    ResetPassword,
}

impl Purpose {
    /// How long a link stays good.
    pub fn lifetime(self) -> chrono::Duration {
        match self {
            Self::VerifyEmail => chrono::Duration::hours(24),
            Self::ResetPassword => chrono::Duration::minutes(30),
        }
    }

    /// The page the link opens.
    pub fn page(self) -> &'static str {
        match self {
            Self::VerifyEmail => "/auth/verify-email",
            Self::ResetPassword => "/auth/reset-password",
        }
    }

    fn key(self, token: &str) -> String {
        let kind = match self {
            Self::VerifyEmail => "email-verify",
            Self::ResetPassword => "password-reset",
        };
        format!("{kind}:{}", token_hash(token))
    }
}

/// What a link token stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRecord {
    /// The user it was sent to.
    pub user_id: Uuid,
    /// The address it was sent to.
    pub email: String,
    /// When it stops being good.
    pub expires_at: DateTime<Utc>,
}

/// Whether a string has the shape of a link token (checked before any lookup).
pub fn looks_like_token(token: &str) -> bool {
    token.len() == TOKEN_LENGTH
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn new_token() -> Result<String, SessionError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| SessionError::Unavailable(format!("OS random source: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Makes a link token for `purpose` and stores its hash; returns the token (never stored).
pub async fn issue(
    sessions: &Sessions,
    purpose: Purpose,
    user_id: Uuid,
    email: &str,
) -> Result<String, SessionError> {
    let token = new_token()?;
    let now = sessions.clock().now();
    let record = LinkRecord {
        user_id,
        email: email.to_owned(),
        expires_at: now + purpose.lifetime(),
    };
    let keep = purpose
        .lifetime()
        .to_std()
        .unwrap_or(Duration::from_secs(24 * 3600));
    sessions
        .store()
        .put_once(
            &purpose.key(&token),
            &serde_json::to_string(&record)?,
            keep,
            now,
        )
        .await?;
    Ok(token)
}

/// Spends a link token: the record if it is good (known, unspent, unexpired), once.
pub async fn redeem(
    sessions: &Sessions,
    purpose: Purpose,
    token: &str,
) -> Result<Option<LinkRecord>, SessionError> {
    if !looks_like_token(token) {
        return Ok(None);
    }
    let now = sessions.clock().now();
    let Some(record) = sessions.store().take_once(&purpose.key(token), now).await? else {
        return Ok(None);
    };
    let record: LinkRecord = serde_json::from_str(&record)?;
    Ok((record.expires_at > now).then_some(record))
}

/// Puts back a token spent by a request that then failed (a store was unavailable), so that the
/// person's link still works when they retry.
pub async fn restore(
    sessions: &Sessions,
    purpose: Purpose,
    token: &str,
    record: &LinkRecord,
) -> Result<(), SessionError> {
    let now = sessions.clock().now();
    let Ok(left) = (record.expires_at - now).to_std() else {
        return Ok(());
    };
    sessions
        .store()
        .put_once(
            &purpose.key(token),
            &serde_json::to_string(record)?,
            left,
            now,
        )
        .await
}

/// The address of the page a link opens.
pub fn url(public_base_url: &str, purpose: Purpose, token: &str) -> String {
    format!(
        "{}{}?token={token}",
        public_base_url.trim_end_matches('/'),
        purpose.page()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_43_base64url_characters_and_differ() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert!(looks_like_token(&a), "{a}");
        assert_ne!(a, b);
        assert!(!looks_like_token(&a[1..]));
        assert!(!looks_like_token(&format!("{}=", &a[1..])));
    }

    #[test]
    fn urls_point_at_the_pages() {
        assert_eq!(
            url("https://hub.example/", Purpose::ResetPassword, "abc"),
            "https://hub.example/auth/reset-password?token=abc"
        );
        assert_eq!(
            url("http://localhost:3000", Purpose::VerifyEmail, "abc"),
            "http://localhost:3000/auth/verify-email?token=abc"
        );
    }
}
