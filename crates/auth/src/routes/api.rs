//! The response bodies of the auth service's public API, as the OpenAPI document names them.

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

pub use hub_http::ErrorBody;

/// Whom a verification code belongs to.
#[derive(Serialize, ToSchema)]
pub struct Verified {
    /// The signed-in user.
    pub user: SessionUser,
}

/// A user as their session knows them.
#[derive(Serialize, ToSchema)]
pub struct SessionUser {
    /// The user's id: what server-side callers send as X-User-ID.
    pub id: Uuid,
    /// Their email, from Google.
    pub email: String,
    /// Their name, from Google.
    pub name: String,
}

/// One of the caller's live sessions (never its code).
#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    /// The session's public id, for `DELETE /api/auth/sessions/{id}`.
    pub id: String,
    /// When it was made.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it expires.
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// The `session` parameter of the sign-in link, if any.
    pub session: Option<String>,
    /// Where the user was sent back to, e.g. `chatgpt`.
    pub return_to: Option<String>,
    /// Whether this is the session of the code in the request.
    pub current: bool,
}

/// The caller's live sessions.
#[derive(Serialize, ToSchema)]
pub struct SessionList {
    /// Newest first.
    pub sessions: Vec<SessionInfo>,
}

/// How many sessions were signed out.
#[derive(Serialize, ToSchema)]
pub struct Revoked {
    /// The count.
    pub revoked: u64,
}

/// `ok`.
#[derive(Serialize, ToSchema)]
pub struct StatusOk {
    /// `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// An account as its tokens describe it.
#[derive(Serialize, ToSchema)]
pub struct Account {
    /// The user's id.
    pub id: Uuid,
    /// Their email.
    pub email: String,
    /// Their name.
    pub name: String,
    /// Their roles, e.g. `user`, `admin`.
    pub roles: Vec<String>,
}

/// A new access token and refresh token.
#[derive(Serialize, ToSchema)]
pub struct Tokens {
    /// An EdDSA JWT for `Authorization: Bearer`, valid for 15 minutes.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Single use: trade it at `/api/auth/refresh` for a new pair.
    pub refresh_token: String,
    /// The account.
    pub user: Account,
}

/// The caller's account.
#[derive(Serialize, ToSchema)]
pub struct Me {
    /// The account.
    pub user: Account,
}

/// The public keys of access tokens (RFC 7517).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct JwkSet {
    /// Ed25519 keys (`kty` `OKP`), each with its `kid`.
    #[schema(value_type = Vec<Object>)]
    keys: Vec<()>,
}

/// An address just verified.
#[derive(Serialize, ToSchema)]
pub struct EmailVerified {
    /// `verified`.
    #[schema(example = "verified")]
    pub status: &'static str,
    /// The new-user credits this verification granted: `NEW_USER_CREDITS` the first time the
    /// address is proven, 0 when it was proven before (for example by a Google sign-in).
    #[schema(minimum = 0)]
    pub credits_granted: i64,
}

/// A request taken; what it leads to is not told.
#[derive(Serialize, ToSchema)]
pub struct Accepted {
    /// `accepted`.
    #[schema(example = "accepted")]
    pub status: &'static str,
    /// The same sentence whether or not an account has the address.
    pub message: &'static str,
}
