//! End users' JWT access tokens, verified here against the auth service's published keys
//! (`/.well-known/jwks.json`), fetched once and again when a token names a key id not seen yet.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};
use uuid::Uuid;

/// How often, at most, an unknown key id makes the gateway ask the auth service again: a flood of
/// made-up key ids must not become a flood of requests to it.
const REFRESH_AT_MOST_EVERY: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
struct Claims {
    sub: String,
    typ: String,
    aud: String,
    #[serde(default)]
    epoch: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    grant: String,
}

/// The user of a valid access token, and the user's token epoch when it was issued.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// The user.
    pub user: Uuid,
    /// Good only while it is still the user's epoch.
    pub epoch: String,
    /// For a token issued to an OAuth app: the app's access.
    pub app: Option<AppAccess>,
}

/// What an OAuth app's access token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppAccess {
    /// The resource it was issued for (its `aud`).
    pub audience: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// The user's grant to the app.
    pub grant: String,
}

/// Why a token was not accepted.
#[derive(Debug)]
pub enum Rejected {
    /// Forged, for someone else, or not an access token.
    Invalid,
    /// Signed by the auth service but past its expiry: a token once issued, not a guess.
    Expired,
    /// The keys could not be fetched.
    KeysUnavailable(String),
}

/// The verifier: keys by id, the issuer and audience to expect.
pub struct JwtVerifier {
    jwks_url: String,
    issuer: String,
    audience: String,
    keys: RwLock<HashMap<String, DecodingKey>>,
    last_fetch: Mutex<Option<Instant>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("jwks_url", &self.jwks_url)
            .finish_non_exhaustive()
    }
}

/// Whether a bearer credential is shaped like a JWT (three base64url parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.split('.').count() == 3
}

impl JwtVerifier {
    /// Keys from `{auth_url}/.well-known/jwks.json`; tokens must name this issuer and audience.
    pub fn new(auth_url: &str, issuer: &str, audience: &str) -> Arc<Self> {
        Arc::new(Self {
            jwks_url: format!("{auth_url}/.well-known/jwks.json"),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            keys: RwLock::new(HashMap::new()),
            last_fetch: Mutex::new(None),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()
                .unwrap_or_default(),
        })
    }

    /// The user a valid access token belongs to.
    pub async fn verify(&self, token: &str) -> Result<AccessToken, Rejected> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Rejected::Invalid)?;
        if header.alg != Algorithm::EdDSA {
            return Err(Rejected::Invalid);
        }
        let kid = header.kid.ok_or(Rejected::Invalid)?;
        // The read guard must be gone before a refresh takes the write lock.
        let known = self.keys.read().await.get(&kid).cloned();
        let key = match known {
            Some(key) => key,
            None => {
                self.refresh().await?;
                self.keys
                    .read()
                    .await
                    .get(&kid)
                    .cloned()
                    .ok_or(Rejected::Invalid)?
            }
        };
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.issuer]);
        // The hub's own tokens name its audience; an app's name the resource it is for, which
        // the caller compares with the route (below, and in `identity`).
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 5;
        // The signature is checked before the expiry: an expired token was really issued.
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => Rejected::Expired,
                _ => Rejected::Invalid,
            })?
            .claims;
        if claims.typ != "access" {
            return Err(Rejected::Invalid);
        }
        let user = Uuid::parse_str(&claims.sub).map_err(|_| Rejected::Invalid)?;
        let app = if claims.client_id.is_empty() {
            if claims.aud != self.audience {
                return Err(Rejected::Invalid);
            }
            None
        } else {
            if claims.grant.is_empty() {
                return Err(Rejected::Invalid);
            }
            Some(AppAccess {
                audience: claims.aud,
                scopes: claims.scope.split_whitespace().map(str::to_owned).collect(),
                grant: claims.grant,
            })
        };
        Ok(AccessToken {
            user,
            epoch: claims.epoch,
            app,
        })
    }

    /// Fetches the key set again, unless that was done a moment ago.
    async fn refresh(&self) -> Result<(), Rejected> {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < REFRESH_AT_MOST_EVERY) {
            return Ok(());
        }
        let fetched: Result<JwkSet, String> = async {
            let response = self
                .http
                .get(&self.jwks_url)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("{} answered {}", self.jwks_url, response.status()));
            }
            response.json().await.map_err(|e| e.to_string())
        }
        .await;
        let set = fetched.map_err(Rejected::KeysUnavailable)?;
        *last = Some(Instant::now());
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            if let (Some(kid), Ok(key)) = (jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk)) {
                keys.insert(kid, key);
            }
        }
        tracing::info!(keys = keys.len(), "fetched the auth service's signing keys");
        *self.keys.write().await = keys;
        Ok(())
    }
}
