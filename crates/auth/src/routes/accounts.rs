//! Email and password accounts: registering, signing in (throttled), the account of an access
//! token, and the keys that verify access tokens. The token pairs are in [`super::token_pairs`].

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hub_http::{ApiError, ApiJson};
use serde::Deserialize;
use uuid::Uuid;

use super::api::{Account, ErrorBody, JwkSet, Me, Tokens};
use super::token_pairs::{issue, new_family};
use crate::AppState;
use crate::passwords;
use crate::routes::unavailable;
use crate::sessions::token_hash;

/// Failed sign-ins allowed per account from one client address in [`FAILURE_WINDOW`]: someone
/// guessing from one address throttles that pair only, never the owner signing in from theirs.
pub const MAX_FAILURES: u64 = 5;
/// Failed sign-ins allowed per account from all addresses together in [`FAILURE_WINDOW`]: the
/// ceiling against guessing spread over many addresses.
pub const MAX_ACCOUNT_FAILURES: u64 = 50;
/// Failed sign-ins allowed per client address over all accounts in [`FAILURE_WINDOW`]: the
/// ceiling against one address trying many accounts.
pub const MAX_ADDRESS_FAILURES: u64 = 20;
/// The window failed sign-ins are counted in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Registrations allowed per client address in [`REGISTRATION_WINDOW`].
pub const MAX_REGISTRATIONS: u64 = 10;
/// The window registrations are counted in.
pub const REGISTRATION_WINDOW: Duration = Duration::from_secs(3600);

/// A store's failure as the caller's answer: 503 while it is unreachable, else 500.
pub(crate) fn store_error(e: &hub_ledger::StoreError) -> ApiError {
    if e.is_unavailable() {
        unavailable(e)
    } else {
        ApiError::internal(e)
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
/// A new account's email, password and name.
pub struct RegisterBody {
    /// The email to sign in with.
    #[schema(format = Email, max_length = 254)]
    email: String,
    /// 8 to 128 characters.
    #[schema(min_length = 8, max_length = 128)]
    password: String,
    /// A display name: 1 to 200 characters, not all blank, without control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    name: String,
}

/// `POST /api/auth/register`.
#[utoipa::path(
    post,
    path = "/api/auth/register",
    operation_id = "register",
    tag = "accounts",
    summary = "Create an account with email and password",
    description = "Creates an account with email and password and signs it in. It starts with 0 credits and an unverified address: a verification link is mailed, and following it (`POST /api/auth/email/verify`) grants the new-user credits. An unverified account can sign in.",
    request_body = RegisterBody,
    responses(
        (status = 201, description = "Created and signed in.", body = Tokens),
        (status = 409, description = "An account with this email exists.", body = ErrorBody),
        (status = 422, description = "The email, password or name is not acceptable.", body = ErrorBody),
    ),
    security(())
)]
pub async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<Response, ApiError> {
    // Each registration costs an argon2id hash: a few per address and hour are plenty.
    let now = state.sessions.clock().now();
    let key = format!(
        "register:address:{}",
        client_address(&state, peer, &headers)
    );
    let store = state.sessions.store();
    if store.hit(&key, REGISTRATION_WINDOW, now).await? > MAX_REGISTRATIONS {
        let (_, left) = store.count(&key, now).await?;
        return Err(too_many(left));
    }
    if !passwords::acceptable(&body.password) {
        return Err(ApiError::unprocessable(
            "invalid_password",
            "password must be 8 to 128 characters",
        ));
    }
    // No credits for an address nobody has verified: the new-user credits come when the link
    // mailed now is followed (or with a Google sign-in, which proves the address too).
    let new =
        hub_ledger::users::NewUser::new(&body.email, &body.name, 0, hub_ledger::users::Role::User)
            .map_err(|e| ApiError::unprocessable(e.code, e.message))?
            .unverified();
    let hash = passwords::hash(body.password)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let created = state
        .users
        .create_user(&new.with_password_hash(hash))
        .await
        .map_err(|e| store_error(&e))?
        // The same answer for every existing account, Google-only or not.
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "email_taken",
                "An account with this email exists.",
            )
        })?;
    super::email::send_link(&state, created.user.id, &created.user.email).await?;
    let tokens = issue(&state, &created.user, &new_family()?).await?;
    Ok((StatusCode::CREATED, Json(tokens)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
/// An email and password to sign in with.
pub struct LoginBody {
    /// The account's email.
    email: String,
    /// Its password.
    password: String,
}

/// The client's address as the per-address throttles count it (an IPv6 client by its /64).
pub(crate) fn client_address(state: &AppState, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    hub_http::address_for_limits(hub_http::client_address(
        peer,
        headers,
        &state.config.trusted_proxies,
    ))
}

/// 429 with how long to wait.
pub(super) fn too_many(left: Duration) -> ApiError {
    let mut error = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        "Too many failed sign-in attempts; try again later.",
    )
    .with_field("limit", "sign_in_attempts");
    error.retry_after = Some(left.as_secs().max(1));
    error
}

/// Checks an email and password, throttled as `POST /api/auth/login` describes: the account, or
/// 401 `invalid_credentials`, or 429 `too_many_attempts`. The API login and the browser sign-in
/// of the authorization server both sign in through this.
pub(crate) async fn check_password(
    state: &AppState,
    address: IpAddr,
    email: &str,
    password: String,
) -> Result<hub_ledger::users::User, ApiError> {
    let email = email.trim().to_lowercase();
    let now = state.sessions.clock().now();
    let account = token_hash(&email);
    let keys = [
        (format!("login-fail:pair:{account}:{address}"), MAX_FAILURES),
        (
            format!("login-fail:account:{account}"),
            MAX_ACCOUNT_FAILURES,
        ),
        (
            format!("login-fail:address:{address}"),
            MAX_ADDRESS_FAILURES,
        ),
    ];
    let store = state.sessions.store();
    // Each attempt is counted before the password is checked, atomically, so that attempts sent
    // all at once cannot slip under the limit together; a success gives its count back.
    for (key, limit) in &keys {
        if store.hit(key, FAILURE_WINDOW, now).await? > *limit {
            let (_, left) = store.count(key, now).await?;
            return Err(too_many(left));
        }
    }
    let wrong = || {
        ApiError::unauthenticated("The email or password is wrong.")
            .with_code("invalid_credentials")
    };
    // Text no account can have never reaches the database.
    if email.chars().any(char::is_control) || email.len() > 254 {
        return Err(wrong());
    }
    let found = state
        .users
        .find_credentials(&email)
        .await
        .map_err(|e| store_error(&e))?;
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), hash),
        None => (None, None),
    };
    if !passwords::verify(password, hash).await {
        return Err(wrong());
    }
    let user = user.ok_or_else(wrong)?;
    for (key, _) in &keys {
        store.unhit(key).await?;
    }
    crate::admin::refuse_disabled(state, user.id).await?;
    Ok(user)
}

/// `POST /api/auth/login`.
#[utoipa::path(
    post,
    path = "/api/auth/login",
    operation_id = "login",
    tag = "accounts",
    summary = "Sign in with email and password",
    description = "Signs in with email and password: an access token (15 minutes) and a refresh token. Failed attempts are throttled for 15 minutes after 5 on one account from one client address, 50 on one account from all addresses, or 20 from one client address over all accounts.",
    request_body = LoginBody,
    responses(
        (status = 200, description = "Signed in.", body = Tokens),
        (status = 401, description = "The email or password is wrong.", body = ErrorBody),
        (status = 403, description = "An operator disabled this account (account_disabled).", body = ErrorBody),
        (status = 429, description = "Too many failed attempts; retry after Retry-After seconds.", body = ErrorBody),
    ),
    security(())
)]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Json<Tokens>, ApiError> {
    let address = client_address(&state, peer, &headers);
    let user = check_password(&state, address, &body.email, body.password).await?;
    Ok(Json(issue(&state, &user, &new_family()?).await?))
}

/// `GET /api/auth/me`, with `Authorization: Bearer <access token>`.
#[utoipa::path(
    get,
    path = "/api/auth/me",
    operation_id = "getMe",
    tag = "accounts",
    summary = "The account of an access token",
    description = "The account an access token belongs to.",
    responses(
        (status = 200, description = "The account.", body = Me),
        (status = 401, description = "The access token is missing, invalid or expired.", body = ErrorBody),
        (status = 404, description = "The token's user no longer exists.", body = ErrorBody),
    ),
    security(("bearerJwt" = []))
)]
pub async fn me(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Me>, ApiError> {
    let invalid = || {
        ApiError::unauthenticated("The access token is missing, invalid or expired.")
            .with_code("invalid_token")
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(invalid)?;
    let claims = state
        .jwt
        .verify(token.trim(), state.sessions.clock().now())
        .ok_or_else(invalid)?;
    let id: Uuid = claims.sub.parse().map_err(|_| invalid())?;
    if !state.sessions.epoch_is_current(id, &claims.epoch).await? {
        return Err(invalid());
    }
    let user = state
        .users
        .find_user(id)
        .await
        .map_err(|e| store_error(&e))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_user",
                "The user of this token no longer exists.",
            )
        })?;
    let roles = state.users.roles(id).await.map_err(|e| store_error(&e))?;
    Ok(Json(Me {
        user: Account {
            id: user.id,
            email: user.email,
            name: user.name,
            roles,
        },
    }))
}

/// `GET /.well-known/jwks.json`: the public keys of access tokens.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    operation_id = "getJwks",
    tag = "accounts",
    summary = "The public keys of access tokens",
    description = "The Ed25519 public keys that verify access tokens, by key id.",
    responses((status = 200, description = "The key set.", body = JwkSet)),
    security(())
)]
pub async fn jwks(State(state): State<AppState>) -> Response {
    let mut response = Json(state.jwt.jwks()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("public, max-age=300"),
    );
    response
}
