//! What the authorization server keeps between steps, in the session store (Redis in
//! production), each under the SHA-256 of its secret:
//! - a pending consent (what the consent page's CSRF token stands for, ten minutes);
//! - an authorization code (60 seconds, single use; kept as spent for ten minutes so that a
//!   second use is recognised and ends the grant);
//! - an OAuth refresh token (30 days, rotated on every use; a spent one presented again ends its
//!   family).
//!
//! The hash is each key's hash tag, so that on a Redis Cluster a value and its spent marker share
//! a slot and spending one stays one atomic step.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hub_sessions::token_hash;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub(crate) use hub_sessions::grant_revoked_key;

/// How long a code may wait to be redeemed.
pub(crate) const CODE_TTL: Duration = Duration::from_secs(60);
/// How long a spent code is remembered.
pub(crate) const SPENT_CODE_KEPT: Duration = Duration::from_secs(600);
/// How long a consent page stays good.
pub(crate) const CONSENT_TTL: Duration = Duration::from_secs(600);

/// A checked authorization request: everything a code will be bound to, but the user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Request {
    pub client_id: String,
    pub client_name: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub resource: String,
    pub scopes: Vec<String>,
}

/// The consent page's pending decision, under its CSRF token.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PendingConsent {
    pub request: Request,
    /// The browser's signed-in user the page was shown to.
    pub user_id: Uuid,
}

pub(crate) fn consent_key(csrf_token: &str) -> String {
    format!("oauth-consent:{{{}}}", token_hash(csrf_token))
}

/// An authorization code's binding.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CodeRecord {
    pub request: Request,
    pub user_id: Uuid,
    pub grant_id: String,
    pub expires_at: DateTime<Utc>,
}

pub(crate) fn code_key(code: &str) -> String {
    format!("oauth-code:{{{}}}", token_hash(code))
}

pub(crate) fn spent_code_key(code: &str) -> String {
    format!("oauth-code-spent:{{{}}}", token_hash(code))
}

/// An OAuth refresh token's binding.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RefreshRecord {
    pub family: String,
    pub user_id: Uuid,
    pub client_id: String,
    pub grant_id: String,
    pub resource: String,
    pub scopes: Vec<String>,
    pub epoch: String,
    pub expires_at: DateTime<Utc>,
}

pub(crate) fn refresh_key(token: &str) -> String {
    format!("oauth-refresh:{{{}}}", token_hash(token))
}

pub(crate) fn spent_refresh_key(token: &str) -> String {
    format!("oauth-refresh-spent:{{{}}}", token_hash(token))
}

pub(crate) fn family_revoked_key(family: &str) -> String {
    format!("oauth-family-revoked:{family}")
}

/// The S256 code challenge of a verifier (RFC 7636): base64url of its SHA-256, unpadded.
pub(crate) fn s256(verifier: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether a PKCE verifier has the form RFC 7636 requires: 43 to 128 unreserved characters.
pub(crate) fn verifier_well_formed(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_s256_challenge_is_rfc_7636s_example() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(verifier_well_formed(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        ));
        assert!(!verifier_well_formed("short"));
    }
}
