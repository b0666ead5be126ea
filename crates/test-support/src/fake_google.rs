//! A fake Google: a small OpenID provider with real discovery, JWKS, an authorize endpoint that
//! redirects back with a code, and a token endpoint that checks the client, the single use of the
//! code and the PKCE verifier, and returns an RS256-signed ID token carrying the nonce.
//!
//! Knobs on [`FakeGoogle`] make it misbehave the ways a real provider (or an attacker) can.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openidconnect::core::{
    CoreIdToken, CoreIdTokenClaims, CoreIdTokenFields, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreResponseType, CoreRsaPrivateSigningKey, CoreSubjectIdentifierType,
    CoreTokenResponse, CoreTokenType,
};
use openidconnect::{
    AccessToken, Audience, AuthUrl, EmptyAdditionalClaims, EmptyAdditionalProviderMetadata,
    EmptyExtraTokenFields, EndUserEmail, EndUserName, IssuerUrl, JsonWebKeyId, JsonWebKeySetUrl,
    LocalizedClaim, Nonce, PkceCodeChallenge, PkceCodeVerifier, PrivateSigningKey, ResponseTypes,
    StandardClaims, SubjectIdentifier, TokenUrl,
};
use serde::Deserialize;
use tokio::sync::oneshot;

/// The account the fake signs in next.
#[derive(Debug, Clone)]
pub struct FakeAccount {
    /// Google's subject.
    pub subject: String,
    /// E-mail address.
    pub email: String,
    /// Whether it is verified.
    pub email_verified: bool,
    /// Display name.
    pub name: String,
}

/// Ways to misbehave.
#[derive(Debug, Clone, Default)]
pub struct Misbehaviour {
    /// Redirect back with `error=access_denied`.
    pub deny_consent: bool,
    /// Put another nonce in the ID token.
    pub wrong_nonce: bool,
    /// Put another audience in the ID token.
    pub wrong_audience: bool,
    /// Issue an ID token that expired a minute ago.
    pub expired: bool,
    /// Forget the PKCE challenge it was sent, so the verifier never matches.
    pub pkce_mismatch: bool,
    /// Sign with a key that is not in the JWKS.
    pub foreign_key: bool,
}

struct Grant {
    nonce: String,
    challenge: String,
    account: FakeAccount,
}

struct Provider {
    issuer: String,
    client_id: String,
    client_secret: String,
    key: CoreRsaPrivateSigningKey,
    codes: Mutex<HashMap<String, Grant>>,
    account: Mutex<FakeAccount>,
    misbehaviour: Mutex<Misbehaviour>,
}

/// A running fake Google.
pub struct FakeGoogle {
    /// Its issuer URL (`http://127.0.0.1:PORT`).
    pub issuer: String,
    /// The client id it accepts.
    pub client_id: String,
    /// The client secret it accepts.
    pub client_secret: String,
    provider: Arc<Provider>,
    _shutdown: oneshot::Sender<()>,
}

fn rsa_pem(seed: u8) -> String {
    // Key generation is the slow part; two keys serve every test of a process.
    static KEYS: OnceLock<Vec<String>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
        (0..2)
            .map(|_| {
                let key =
                    rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key");
                key.to_pkcs1_pem(LineEnding::LF).expect("PEM").to_string()
            })
            .collect()
    });
    keys[usize::from(seed) % keys.len()].clone()
}

fn signing_key(seed: u8) -> CoreRsaPrivateSigningKey {
    CoreRsaPrivateSigningKey::from_pem(
        &rsa_pem(seed),
        Some(JsonWebKeyId::new(format!("fake-{seed}"))),
    )
    .expect("signing key")
}

impl FakeGoogle {
    /// Starts the provider on port 0.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake google");
        let issuer = format!("http://{}", listener.local_addr().expect("address"));
        let provider = Arc::new(Provider {
            issuer: issuer.clone(),
            client_id: "hub-test.apps.googleusercontent.com".into(),
            client_secret: "fake-google-secret".into(),
            key: signing_key(0),
            codes: Mutex::new(HashMap::new()),
            account: Mutex::new(FakeAccount {
                subject: "google-sub-1".into(),
                email: "somchai@example.com".into(),
                email_verified: true,
                name: "Somchai Jaidee".into(),
            }),
            misbehaviour: Mutex::new(Misbehaviour::default()),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .with_state(provider.clone());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Self {
            issuer,
            client_id: provider.client_id.clone(),
            client_secret: provider.client_secret.clone(),
            provider,
            _shutdown: tx,
        }
    }

    /// The account signed in next.
    pub fn sign_in_as(&self, account: FakeAccount) {
        if let Ok(mut current) = self.provider.account.lock() {
            *current = account;
        }
    }

    /// How the provider misbehaves from now on.
    pub fn misbehave(&self, misbehaviour: Misbehaviour) {
        if let Ok(mut current) = self.provider.misbehaviour.lock() {
            *current = misbehaviour;
        }
    }
}

async fn discovery(State(provider): State<Arc<Provider>>) -> Response {
    let issuer = &provider.issuer;
    let metadata = CoreProviderMetadata::new(
        IssuerUrl::new(issuer.clone()).expect("issuer"),
        AuthUrl::new(format!("{issuer}/authorize")).expect("auth url"),
        JsonWebKeySetUrl::new(format!("{issuer}/jwks")).expect("jwks url"),
        vec![ResponseTypes::new(vec![CoreResponseType::Code])],
        vec![CoreSubjectIdentifierType::Public],
        vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256],
        EmptyAdditionalProviderMetadata {},
    )
    .set_token_endpoint(Some(
        TokenUrl::new(format!("{issuer}/token")).expect("token url"),
    ));
    Json(metadata).into_response()
}

async fn jwks(State(provider): State<Arc<Provider>>) -> Response {
    Json(CoreJsonWebKeySet::new(vec![
        provider.key.as_verification_key(),
    ]))
    .into_response()
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    client_id: String,
    redirect_uri: String,
    state: String,
    nonce: String,
    code_challenge: String,
    code_challenge_method: String,
}

async fn authorize(
    State(provider): State<Arc<Provider>>,
    Query(query): Query<AuthorizeQuery>,
) -> Response {
    if query.client_id != provider.client_id || query.code_challenge_method != "S256" {
        return (StatusCode::BAD_REQUEST, "unknown client or no PKCE").into_response();
    }
    let misbehaviour = provider
        .misbehaviour
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    let separator = if query.redirect_uri.contains('?') {
        '&'
    } else {
        '?'
    };
    if misbehaviour.deny_consent {
        return Redirect::to(&format!(
            "{}{separator}error=access_denied&state={}",
            query.redirect_uri, query.state
        ))
        .into_response();
    }
    let code = format!("code-{}", uuid::Uuid::new_v4().simple());
    let account = provider.account.lock().map(|a| a.clone()).expect("account");
    let challenge = if misbehaviour.pkce_mismatch {
        "not-the-challenge".into()
    } else {
        query.code_challenge
    };
    if let Ok(mut codes) = provider.codes.lock() {
        codes.insert(
            code.clone(),
            Grant {
                nonce: query.nonce,
                challenge,
                account,
            },
        );
    }
    Redirect::to(&format!(
        "{}{separator}code={code}&state={}",
        query.redirect_uri, query.state
    ))
    .into_response()
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    code: String,
    code_verifier: Option<String>,
}

fn invalid_grant(why: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({ "error": "invalid_grant", "error_description": why })),
    )
        .into_response()
}

async fn token(
    State(provider): State<Arc<Provider>>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    if !client_authenticated(&provider, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({ "error": "invalid_client" })),
        )
            .into_response();
    }
    let grant = match redeem_code(&provider, form) {
        Ok(grant) => grant,
        Err(why) => return invalid_grant(why),
    };
    let misbehaviour = provider
        .misbehaviour
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    let claims = id_token_claims(&provider, grant, &misbehaviour);
    signed_token_response(claims, &misbehaviour)
}

/// Whether the request carries the client's ID and secret as HTTP Basic credentials.
fn client_authenticated(provider: &Provider, headers: &HeaderMap) -> bool {
    let expected = format!("{}:{}", provider.client_id, provider.client_secret);
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(decode_basic);
    presented.as_deref() == Some(expected.as_str())
}

/// Takes the code's grant (once), after checking the grant type and the PKCE verifier; the
/// error says why the grant is invalid.
fn redeem_code(provider: &Provider, form: TokenForm) -> Result<Grant, &'static str> {
    if form.grant_type != "authorization_code" {
        return Err("grant type");
    }
    let Some(grant) = provider
        .codes
        .lock()
        .ok()
        .and_then(|mut codes| codes.remove(&form.code))
    else {
        return Err("unknown or used code");
    };
    let verifier = PkceCodeVerifier::new(form.code_verifier.unwrap_or_default());
    if PkceCodeChallenge::from_code_verifier_sha256(&verifier).as_str() != grant.challenge {
        return Err("PKCE verifier does not match");
    }
    Ok(grant)
}

/// The ID token's claims for the grant's account, bent as the misbehaviour asks.
fn id_token_claims(
    provider: &Provider,
    grant: Grant,
    misbehaviour: &Misbehaviour,
) -> CoreIdTokenClaims {
    let now = chrono::Utc::now();
    let (issued, expires) = if misbehaviour.expired {
        (
            now - chrono::Duration::minutes(10),
            now - chrono::Duration::minutes(1),
        )
    } else {
        (now, now + chrono::Duration::minutes(5))
    };
    let audience = if misbehaviour.wrong_audience {
        "someone-else".to_owned()
    } else {
        provider.client_id.clone()
    };
    let nonce = if misbehaviour.wrong_nonce {
        "not-the-nonce".to_owned()
    } else {
        grant.nonce
    };
    let account = grant.account;
    CoreIdTokenClaims::new(
        IssuerUrl::new(provider.issuer.clone()).expect("issuer"),
        vec![Audience::new(audience)],
        expires,
        issued,
        StandardClaims::new(SubjectIdentifier::new(account.subject))
            .set_email(Some(EndUserEmail::new(account.email)))
            .set_email_verified(Some(account.email_verified))
            .set_name(Some(LocalizedClaim::from(EndUserName::new(account.name)))),
        EmptyAdditionalClaims {},
    )
    .set_nonce(Some(Nonce::new(nonce)))
}

/// Signs the claims (with the foreign key when asked) and answers them with a new access token.
fn signed_token_response(claims: CoreIdTokenClaims, misbehaviour: &Misbehaviour) -> Response {
    let access = AccessToken::new(format!("at-{}", uuid::Uuid::new_v4().simple()));
    let key = if misbehaviour.foreign_key {
        signing_key(1)
    } else {
        signing_key(0)
    };
    let Ok(id_token) = CoreIdToken::new(
        claims,
        &key,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        Some(&access),
        None,
    ) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "signing failed").into_response();
    };
    let body = CoreTokenResponse::new(
        access,
        CoreTokenType::Bearer,
        CoreIdTokenFields::new(Some(id_token), EmptyExtraTokenFields {}),
    );
    Json(body).into_response()
}

fn decode_basic(b64: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(bytes).ok()
}
