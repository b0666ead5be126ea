//! JWT access tokens (EdDSA, 15 minutes, with a `kid`) and their public keys as JWKS; opaque
//! refresh tokens that rotate on every use.

use std::path::Path;

use base64::Engine;
use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// How long an access token lives.
pub const ACCESS_TTL: chrono::Duration = chrono::Duration::minutes(15);
/// How long a refresh token lives.
pub const REFRESH_TTL: chrono::Duration = chrono::Duration::days(30);
/// The prefix of refresh tokens.
pub const REFRESH_PREFIX: &str = "hub_rt_";

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user's id.
    pub sub: String,
    /// Their email.
    pub email: String,
    /// Their roles.
    pub roles: Vec<String>,
    /// This hub.
    pub iss: String,
    /// This hub's services.
    pub aud: String,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Issue time.
    pub iat: i64,
    /// The user's token epoch when it was issued (see `Sessions::end_everything`): the token
    /// is good only while it is still the user's epoch. Empty before the user's first.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub epoch: String,
    /// A unique id.
    pub jti: String,
    /// `access`, so that no other kind of token passes for one.
    pub typ: String,
    /// For a token issued to an OAuth app: what it may do (space-separated).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    /// For a token issued to an OAuth app: the app's client id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_id: String,
    /// For a token issued to an OAuth app: the user's grant to it (disconnecting it ends the
    /// token at once).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub grant: String,
}

/// What an access token for an OAuth app says beyond its user.
#[derive(Debug, Clone, Copy)]
pub struct AppAccess<'a> {
    /// The resource it is for (`aud`): the REST API or the MCP server.
    pub resource: &'a str,
    /// Its scopes, space-separated.
    pub scope: &'a str,
    /// The app.
    pub client_id: &'a str,
    /// The user's grant to the app.
    pub grant: &'a str,
}

/// The signing key and what verifiers need.
pub struct JwtKeys {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwks: JwkSet,
    issuer: String,
    audience: String,
    /// Keys the browser pages' form tokens (see [`JwtKeys::page_secret`]).
    page_secret: [u8; 32],
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl JwtKeys {
    /// The key in the PKCS#8 PEM file at `path`; when there is none, a new key is made and kept
    /// there (mode 0600).
    pub fn load_or_create(path: &Path, issuer: &str, audience: &str) -> anyhow::Result<Self> {
        if path.exists() {
            let pem = std::fs::read_to_string(path)?;
            return Self::from_pem(&pem, issuer, audience)
                .map_err(|e| anyhow::anyhow!("JWT key {}: {e}", path.display()));
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("OS random source: {e}"))?;
        let pem = SigningKey::from_bytes(&seed)
            .to_pkcs8_pem(LineEnding::LF)?
            .to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        write_private(path, &pem)?;
        Self::from_pem(&pem, issuer, audience)
    }

    /// From an Ed25519 key in PKCS#8 PEM.
    pub fn from_pem(pem: &str, issuer: &str, audience: &str) -> anyhow::Result<Self> {
        let signing = SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| anyhow::anyhow!("not an Ed25519 PKCS#8 key: {e}"))?;
        let public = signing.verifying_key().to_bytes();
        let kid = hex::encode(&Sha256::digest(public)[..8]);
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public);
        let jwk = Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(KeyAlgorithm::EdDSA),
                key_id: Some(kid.clone()),
                ..Default::default()
            },
            algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x,
            }),
        };
        let decoding = DecodingKey::from_jwk(&jwk)?;
        Ok(Self {
            kid,
            encoding: EncodingKey::from_ed_pem(pem.as_bytes())?,
            decoding,
            jwks: JwkSet { keys: vec![jwk] },
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            page_secret: Sha256::new()
                .chain_update(b"smart-ai-hub browser page forms v1\0")
                .chain_update(signing.to_bytes())
                .finalize()
                .into(),
        })
    }

    /// A secret for the browser pages' CSRF tokens, derived from the signing key (one way): every
    /// replica that signs with the same key computes the same secret, and no new setting is needed.
    pub(crate) fn page_secret(&self) -> &[u8; 32] {
        &self.page_secret
    }

    /// The public keys, as served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// A new access token.
    pub fn issue(
        &self,
        user_id: Uuid,
        email: &str,
        roles: Vec<String>,
        epoch: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<String> {
        self.sign(AccessClaims {
            sub: user_id.to_string(),
            email: email.to_owned(),
            roles,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            exp: (now + ACCESS_TTL).timestamp(),
            iat: now.timestamp(),
            epoch: epoch.to_owned(),
            jti: Uuid::new_v4().to_string(),
            typ: "access".into(),
            scope: String::new(),
            client_id: String::new(),
            grant: String::new(),
        })
    }

    /// A new access token for an OAuth app: its audience is the resource, and it carries the
    /// scopes, the app and the grant. It names no roles: an app acts only within its scopes.
    pub fn issue_for_app(
        &self,
        user_id: Uuid,
        epoch: &str,
        app: AppAccess<'_>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<String> {
        self.sign(AccessClaims {
            sub: user_id.to_string(),
            email: String::new(),
            roles: Vec::new(),
            iss: self.issuer.clone(),
            aud: app.resource.to_owned(),
            exp: (now + ACCESS_TTL).timestamp(),
            iat: now.timestamp(),
            epoch: epoch.to_owned(),
            jti: Uuid::new_v4().to_string(),
            typ: "access".into(),
            scope: app.scope.to_owned(),
            client_id: app.client_id.to_owned(),
            grant: app.grant.to_owned(),
        })
    }

    fn sign(&self, claims: AccessClaims) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, &claims, &self.encoding)?)
    }

    /// Checks an access token's signature, key id, issuer, audience, type and expiry (against
    /// `now`, the service's clock).
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Option<AccessClaims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::EdDSA || header.kid.as_deref() != Some(self.kid.as_str()) {
            return None;
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        // Expiry is checked below against the service's clock, which tests can move.
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &validation)
            .ok()?
            .claims;
        (claims.typ == "access" && claims.exp > now.timestamp()).then_some(claims)
    }
}

/// A new opaque refresh token.
pub fn new_refresh_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("OS random source: {e}"))?;
    Ok(format!("{REFRESH_PREFIX}{}", hex::encode(bytes)))
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_until_they_expire_and_only_with_our_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys = JwtKeys::load_or_create(&dir.path().join("jwt.pem"), "hub", "hub-api").unwrap();
        let again = JwtKeys::load_or_create(&dir.path().join("jwt.pem"), "hub", "hub-api").unwrap();
        assert_eq!(keys.kid, again.kid, "the kept key is reused");
        let now = Utc::now();
        let user = Uuid::now_v7();
        let token = keys
            .issue(user, "a@example.com", vec!["user".into()], "", now)
            .unwrap();
        let claims = again.verify(&token, now).unwrap();
        assert_eq!(claims.sub, user.to_string());
        assert_eq!(claims.roles, ["user"]);
        assert!(
            keys.verify(&token, now + ACCESS_TTL).is_none(),
            "expired after 15 minutes"
        );
        let other =
            JwtKeys::load_or_create(&dir.path().join("other.pem"), "hub", "hub-api").unwrap();
        assert!(other.verify(&token, now).is_none(), "another key");
        let elsewhere =
            JwtKeys::load_or_create(&dir.path().join("jwt.pem"), "hub", "elsewhere").unwrap();
        assert!(elsewhere.verify(&token, now).is_none(), "another audience");
        let jwks = serde_json::to_value(keys.jwks()).unwrap();
        assert_eq!(jwks["keys"][0]["kty"], "OKP");
        assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
        assert_eq!(jwks["keys"][0]["kid"], keys.kid.as_str());
    }
}
