//! Google sign-in over OpenID Connect, by the `openidconnect` crate: discovery, the
//! authorization URL with state, nonce and PKCE (S256), the code exchange and the ID token's
//! verification (signature against the provider's keys, issuer, audience, expiry, nonce).

use hub_config::ExposeSecret;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    TokenResponse,
};

use crate::GoogleConfig;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A configured, discovered provider.
pub struct Google {
    client: Client,
    http: openidconnect::reqwest::Client,
}

impl std::fmt::Debug for Google {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Google").finish_non_exhaustive()
    }
}

/// What the browser is sent to, and what must be kept to finish the sign-in.
#[derive(Debug)]
pub struct Authorization {
    /// Google's authorization URL with every parameter.
    pub url: String,
    /// The `state` parameter.
    pub state: String,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier for the code exchange.
    pub pkce_verifier: String,
}

/// Who signed in, as the verified ID token says.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The Google account's stable id.
    pub subject: String,
    /// Its e-mail address.
    pub email: Option<String>,
    /// Whether Google verified that address.
    pub email_verified: bool,
    /// The account's display name.
    pub name: Option<String>,
}

/// Why a sign-in could not be finished with the provider.
#[derive(Debug, thiserror::Error)]
pub enum GoogleError {
    /// Discovery or configuration failed.
    #[error("configuration: {0}")]
    Config(String),
    /// The code exchange failed.
    #[error("code exchange: {0}")]
    Exchange(String),
    /// The ID token did not verify.
    #[error("ID token: {0}")]
    IdToken(String),
}

impl Google {
    /// Discovers the provider at the configured issuer.
    pub async fn discover(config: &GoogleConfig) -> Result<Self, GoogleError> {
        // Following redirects would let a provider response steer us elsewhere (SSRF).
        let http = openidconnect::reqwest::ClientBuilder::new()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| GoogleError::Config(e.to_string()))?;
        let issuer = IssuerUrl::new(config.issuer_url.clone())
            .map_err(|e| GoogleError::Config(format!("GOOGLE_ISSUER_URL: {e}")))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &http)
            .await
            .map_err(|e| GoogleError::Config(format!("discovery at {}: {e}", config.issuer_url)))?;
        let redirect = RedirectUrl::new(config.callback_url.clone())
            .map_err(|e| GoogleError::Config(format!("GOOGLE_CALLBACK_URL: {e}")))?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(config.client_id.clone()),
            Some(ClientSecret::new(
                config.client_secret.expose_secret().to_owned(),
            )),
        )
        .set_redirect_uri(redirect);
        Ok(Self { client, http })
    }

    /// A new authorization request.
    pub fn authorize(&self) -> Authorization {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        Authorization {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        }
    }

    /// Exchanges the code and verifies the ID token against the expected nonce.
    pub async fn finish(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<Identity, GoogleError> {
        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| GoogleError::Config(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| GoogleError::Exchange(e.to_string()))?;
        let id_token = response
            .id_token()
            .ok_or_else(|| GoogleError::IdToken("the provider sent no ID token".into()))?;
        let claims = id_token
            .claims(
                &self.client.id_token_verifier(),
                &Nonce::new(nonce.to_owned()),
            )
            .map_err(|e| GoogleError::IdToken(e.to_string()))?;
        Ok(Identity {
            subject: claims.subject().as_str().to_owned(),
            email: claims.email().map(|e| e.as_str().to_owned()),
            email_verified: claims.email_verified().unwrap_or(false),
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_owned()),
        })
    }
}
