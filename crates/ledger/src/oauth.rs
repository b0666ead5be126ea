//! OAuth 2.1 clients and grants: the apps that may ask users for access (registered by an
//! operator or dynamically), and the access each user gave each app, with its scopes and an
//! optional daily spending cap. The hub is the authorization server for its own APIs.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::{InvalidInput, StoreError};

/// Read balances and history, and check a cost.
pub const SCOPE_CREDITS_READ: &str = "credits:read";
/// Spend credits: deduct, and hold then capture or release.
pub const SCOPE_CREDITS_SPEND: &str = "credits:spend";
/// Call the MCP server's tools (each paid tool spends credits).
pub const SCOPE_MCP_TOOLS: &str = "mcp:tools";
/// Every scope an app may be given.
pub const SCOPES: [&str; 3] = [SCOPE_CREDITS_READ, SCOPE_CREDITS_SPEND, SCOPE_MCP_TOOLS];

/// The prefix of a client secret.
pub const SECRET_PREFIX: &str = "hub_cs_";

/// How a client came to be known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Registration {
    /// `hub oauth-client create`.
    Operator,
    /// `POST /oauth/register` (RFC 7591).
    Dynamic,
}

impl Registration {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Dynamic => "dynamic",
        }
    }

    /// From the stored form.
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "operator" => Ok(Self::Operator),
            "dynamic" => Ok(Self::Dynamic),
            other => Err(StoreError::Corrupt(format!("registration {other:?}"))),
        }
    }
}

/// A client as stored (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OAuthClient {
    /// `oc_…`.
    pub id: String,
    /// The app's name, shown on the consent page.
    pub name: String,
    /// The exact redirect URIs it may use.
    pub redirect_uris: Vec<String>,
    /// Whether it has a secret (a confidential client); public clients must use PKCE.
    pub confidential: bool,
    /// The scopes it may ask for.
    pub scopes: Vec<String>,
    /// How it was registered.
    pub registration: Registration,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A client just made: the only time its secret exists outside its holder.
#[derive(Debug, Clone)]
pub struct NewOAuthClient {
    /// The stored part.
    pub record: OAuthClient,
    /// The secret of a confidential client.
    pub secret: Option<String>,
}

impl NewOAuthClient {
    /// The hash under which the secret is kept.
    pub fn secret_hash(&self) -> Option<String> {
        self.secret.as_deref().map(secret_hash)
    }
}

/// The hex SHA-256 of a client secret (256 random bits: a fast hash is enough), as service keys
/// are kept.
pub use crate::service_keys::key_hash as secret_hash;

fn invalid(code: &'static str, message: String) -> InvalidInput {
    InvalidInput {
        code,
        message,
        too_large: false,
    }
}

fn random_hex<const N: usize>() -> Result<String, InvalidInput> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|e| invalid("no_randomness", format!("the OS random source failed: {e}")))?;
    Ok(hex::encode(bytes))
}

/// Whether a redirect URI may be registered: https, or http on a loopback host (native apps,
/// RFC 8252), absolute, without a fragment.
pub fn redirect_uri_allowed(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or("", |(address, _)| address),
        None => host.split(':').next().unwrap_or_default(),
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback());
    !host.is_empty()
        && !uri.contains('#')
        && uri.len() <= 2000
        && uri.chars().all(|c| c.is_ascii_graphic())
        && (scheme == "https" || (scheme == "http" && loopback))
}

/// Checks a scope list against [`SCOPES`]; sorted, without repeats.
pub fn parse_scopes(text: &str) -> Result<Vec<String>, InvalidInput> {
    let mut scopes: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    if let Some(unknown) = scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
        return Err(invalid(
            "invalid_scope",
            format!(
                "unknown scope {unknown:?}; scopes are {}",
                SCOPES.join(", ")
            ),
        ));
    }
    scopes.sort();
    scopes.dedup();
    Ok(scopes)
}

/// Checks a client's name, redirect URIs and scopes, and makes its id (and secret, for a
/// confidential client).
pub fn new_client(
    name: &str,
    redirect_uris: &[String],
    confidential: bool,
    scopes: &[String],
    registration: Registration,
) -> Result<NewOAuthClient, InvalidInput> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(invalid(
            "invalid_client_metadata",
            "a client's name must be 1 to 100 characters".into(),
        ));
    }
    if redirect_uris.is_empty() || redirect_uris.len() > 10 {
        return Err(invalid(
            "invalid_redirect_uri",
            "give 1 to 10 redirect URIs".into(),
        ));
    }
    if let Some(bad) = redirect_uris.iter().find(|u| !redirect_uri_allowed(u)) {
        return Err(invalid(
            "invalid_redirect_uri",
            format!(
                "{bad:?} is not an https URL (or http on a loopback address) without a fragment"
            ),
        ));
    }
    let scopes = if scopes.is_empty() {
        SCOPES.iter().map(|s| (*s).to_owned()).collect()
    } else {
        parse_scopes(&scopes.join(" "))?
    };
    let secret = if confidential {
        Some(format!("{SECRET_PREFIX}{}", random_hex::<32>()?))
    } else {
        None
    };
    Ok(NewOAuthClient {
        record: OAuthClient {
            id: format!("oc_{}", random_hex::<12>()?),
            name: name.to_owned(),
            redirect_uris: redirect_uris.to_vec(),
            confidential,
            scopes,
            registration,
            created_at: Utc::now(),
            revoked_at: None,
        },
        secret,
    })
}

/// A user's consent to one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OAuthGrant {
    /// `gr_…`.
    pub id: String,
    /// Whose.
    pub user_id: Uuid,
    /// The app's client id (an `oc_…` id or a metadata document's URL).
    pub client_id: String,
    /// The app's name when consent was given.
    pub client_name: String,
    /// What the app may do.
    pub scopes: Vec<String>,
    /// The most credits the app may spend a UTC day; `None`: no cap beyond the balance.
    pub daily_cap: Option<i64>,
    /// When consent was given.
    pub created_at: DateTime<Utc>,
    /// When a token of this grant was last issued or refreshed.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Consent about to be recorded.
#[derive(Debug, Clone)]
pub struct NewGrant {
    /// Whose.
    pub user_id: Uuid,
    /// The app.
    pub client_id: String,
    /// Its name, for the user's list.
    pub client_name: String,
    /// What it may do.
    pub scopes: Vec<String>,
    /// The daily cap, if the user set one.
    pub daily_cap: Option<i64>,
}

/// A new grant id.
pub fn new_grant_id() -> Result<String, InvalidInput> {
    Ok(format!("gr_{}", random_hex::<12>()?))
}

/// Storage of clients and grants.
#[async_trait]
pub trait OAuthStore: Send + Sync {
    /// Keeps a new client (its secret's hash).
    async fn insert_oauth_client(&self, client: &NewOAuthClient) -> Result<(), StoreError>;
    /// The live client with this id, and its secret's hash.
    async fn find_oauth_client(
        &self,
        id: &str,
    ) -> Result<Option<(OAuthClient, Option<String>)>, StoreError>;
    /// Every client, newest first.
    async fn list_oauth_clients(&self) -> Result<Vec<OAuthClient>, StoreError>;
    /// Revokes a client and every grant to it; `false` if there is no live client with this id.
    async fn revoke_oauth_client(&self, id: &str) -> Result<bool, StoreError>;
    /// Records consent: the user's live grant to the client is replaced by this one (its scopes
    /// and cap), keeping its id; else a new grant. Returns the live grant.
    async fn upsert_grant(&self, grant: &NewGrant) -> Result<OAuthGrant, StoreError>;
    /// The live grant with this id.
    async fn find_grant(&self, id: &str) -> Result<Option<OAuthGrant>, StoreError>;
    /// The user's live grant to the client.
    async fn live_grant(
        &self,
        user_id: Uuid,
        client_id: &str,
    ) -> Result<Option<OAuthGrant>, StoreError>;
    /// The user's live grants, newest first.
    async fn list_grants(&self, user_id: Uuid) -> Result<Vec<OAuthGrant>, StoreError>;
    /// Ends one of the user's grants; `false` if they have no live grant with this id.
    async fn revoke_grant(&self, user_id: Uuid, id: &str) -> Result<bool, StoreError>;
    /// Notes that a token of the grant was issued now.
    async fn touch_grant(&self, id: &str, now: DateTime<Utc>) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_are_https_or_loopback_http() {
        for good in [
            "https://chat.openai.com/aip/g-abc/oauth/callback",
            "https://claude.ai/api/mcp/auth_callback",
            "http://127.0.0.1:8123/callback",
            "http://localhost/cb",
            "http://[::1]:9000/cb",
        ] {
            assert!(redirect_uri_allowed(good), "{good}");
        }
        for bad in [
            "http://example.com/cb",
            "https://example.com/cb#frag",
            "javascript:alert(1)",
            "https:///nohost",
            "http://localhost.evil.com/cb",
            "http://user@evil.com/cb",
            "https://example.com/a b",
        ] {
            assert!(!redirect_uri_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn clients_get_ids_secrets_and_known_scopes_only() {
        let uris = vec!["https://app.example/cb".to_owned()];
        let client = new_client("App", &uris, true, &[], Registration::Operator).unwrap();
        assert!(client.record.id.starts_with("oc_"));
        assert!(client.secret.as_deref().unwrap().starts_with(SECRET_PREFIX));
        assert_eq!(client.record.scopes.len(), SCOPES.len());
        let public = new_client("App", &uris, false, &[], Registration::Dynamic).unwrap();
        assert!(public.secret.is_none());
        let err = new_client(
            "App",
            &uris,
            false,
            &["admin".into()],
            Registration::Dynamic,
        )
        .unwrap_err();
        assert_eq!(err.code, "invalid_scope");
        assert_eq!(
            parse_scopes("mcp:tools credits:read mcp:tools").unwrap(),
            ["credits:read", "mcp:tools"]
        );
    }
}
