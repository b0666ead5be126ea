//! `POST /oauth/token` (authorization code and refresh token grants) and `POST /oauth/revoke`
//! (RFC 7009).

use std::collections::HashMap;

use axum::Form;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::codes::{self, CodeRecord, RefreshRecord};
use super::{OAuthError, client_auth, clients, no_store, random_hex};
use crate::AppState;
use crate::routes::keep_for;
use crate::tokens::{ACCESS_TTL, AppAccess, REFRESH_TTL};

fn invalid_grant(description: &str) -> OAuthError {
    OAuthError::new("invalid_grant", description)
}

/// `POST /oauth/token`.
pub(crate) async fn exchange(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let field = |name: &str| form.get(name).map(String::as_str);
    let result = async {
        let presented =
            client_auth::presented(&headers, field("client_id"), field("client_secret"))?;
        let client = client_auth::authenticate(&state, &presented).await?;
        match field("grant_type") {
            Some("authorization_code") => redeem_code(&state, &client, &form).await,
            Some("refresh_token") => refresh(&state, &client, &form).await,
            _ => Err(OAuthError::new(
                "unsupported_grant_type",
                "grant_type must be authorization_code or refresh_token.",
            )),
        }
    }
    .await;
    match result {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn redeem_code(
    state: &AppState,
    client: &clients::Client,
    form: &HashMap<String, String>,
) -> Result<Response, OAuthError> {
    let code = form
        .get("code")
        .filter(|c| c.len() == 64)
        .ok_or_else(|| invalid_grant("The code is invalid, expired or used."))?;
    let store = state.sessions.store();
    let now = state.sessions.clock().now();
    let taken = store
        .take_and_keep(
            &codes::code_key(code),
            &codes::spent_code_key(code),
            codes::SPENT_CODE_KEPT,
            now,
        )
        .await?;
    let Some(record) = taken else {
        // A code used a second time: whoever holds it is not to be trusted, and neither are
        // the tokens the first use produced (RFC 6749 §4.1.2). The grant ends.
        if let Some(spent) = store.peek_once(&codes::spent_code_key(code), now).await?
            && let Ok(spent) = serde_json::from_str::<CodeRecord>(&spent)
        {
            tracing::warn!(grant = %spent.grant_id, "an authorization code came back: ending its grant");
            super::grants::end_grant(state, spent.user_id, &spent.grant_id).await?;
        }
        return Err(invalid_grant("The code is invalid, expired or used."));
    };
    let record: CodeRecord = serde_json::from_str(&record)
        .map_err(|_| OAuthError::new("server_error", "an unreadable code"))?;
    let request = &record.request;
    if record.expires_at <= now {
        return Err(invalid_grant("The code has expired."));
    }
    if request.client_id != client.id {
        return Err(invalid_grant("The code was issued to another client."));
    }
    if form
        .get("redirect_uri")
        .is_some_and(|u| *u != request.redirect_uri)
    {
        return Err(invalid_grant(
            "The redirect_uri differs from the authorization request's.",
        ));
    }
    match (&request.code_challenge, form.get("code_verifier")) {
        (Some(challenge), Some(verifier))
            if codes::verifier_well_formed(verifier) && codes::s256(verifier) == *challenge => {}
        (None, None) => {}
        _ => {
            return Err(invalid_grant(
                "The code_verifier does not match the code_challenge.",
            ));
        }
    }
    if crate::admin::is_disabled(state, record.user_id).await? {
        return Err(invalid_grant("The account is disabled (account_disabled)."));
    }
    let family = random_hex::<16>()?;
    let epoch = state.sessions.token_epoch(record.user_id).await?;
    let binding = RefreshRecord {
        family,
        user_id: record.user_id,
        client_id: client.id.clone(),
        grant_id: record.grant_id.clone(),
        resource: request.resource.clone(),
        scopes: request.scopes.clone(),
        epoch,
        expires_at: now + REFRESH_TTL,
    };
    issue(state, binding).await
}

async fn refresh(
    state: &AppState,
    client: &clients::Client,
    form: &HashMap<String, String>,
) -> Result<Response, OAuthError> {
    let invalid = || invalid_grant("The refresh token is invalid, expired or revoked.");
    let token = form
        .get("refresh_token")
        .filter(|t| t.len() <= 128)
        .ok_or_else(invalid)?;
    let store = state.sessions.store();
    let now = state.sessions.clock().now();
    let spent = codes::spent_refresh_key(token);
    let taken = store
        .take_and_keep(
            &codes::refresh_key(token),
            &spent,
            keep_for(REFRESH_TTL),
            now,
        )
        .await?;
    let Some(record) = taken else {
        if let Some(reused) = store.peek_once(&spent, now).await?
            && let Ok(reused) = serde_json::from_str::<RefreshRecord>(&reused)
        {
            tracing::warn!(family = %reused.family, "a spent OAuth refresh token came back: revoking its family");
            store
                .put_once(
                    &codes::family_revoked_key(&reused.family),
                    "1",
                    keep_for(REFRESH_TTL),
                    now,
                )
                .await?;
        }
        return Err(invalid());
    };
    let record: RefreshRecord = serde_json::from_str(&record)
        .map_err(|_| OAuthError::new("server_error", "an unreadable refresh token"))?;
    if record.client_id != client.id
        || record.expires_at <= now
        || store
            .peek_once(&codes::family_revoked_key(&record.family), now)
            .await?
            .is_some()
        || !state
            .sessions
            .epoch_is_current(record.user_id, &record.epoch)
            .await?
    {
        return Err(invalid());
    }
    issue(state, record).await
}

/// Checks the grant is still live, and answers a new access token and a refresh token in the
/// binding's family.
async fn issue(state: &AppState, binding: RefreshRecord) -> Result<Response, OAuthError> {
    let grant = state
        .users
        .find_grant(&binding.grant_id)
        .await?
        .filter(|g| g.user_id == binding.user_id)
        .ok_or_else(|| invalid_grant("The user disconnected this app."))?;
    let now = state.sessions.clock().now();
    let scope = binding.scopes.join(" ");
    let access = state
        .jwt
        .issue_for_app(
            binding.user_id,
            &binding.epoch,
            AppAccess {
                resource: &binding.resource,
                scope: &scope,
                client_id: &binding.client_id,
                grant: &grant.id,
            },
            now,
        )
        .map_err(|e| OAuthError::new("server_error", e.to_string()))?;
    let refresh = format!("hub_ort_{}", random_hex::<32>()?);
    let record = serde_json::to_string(&binding)
        .map_err(|e| OAuthError::new("server_error", e.to_string()))?;
    state
        .sessions
        .store()
        .put_once(
            &codes::refresh_key(&refresh),
            &record,
            keep_for(REFRESH_TTL),
            now,
        )
        .await?;
    state.users.touch_grant(&grant.id, now).await?;
    let mut response = axum::Json(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ACCESS_TTL.num_seconds(),
        "refresh_token": refresh,
        "scope": scope,
    }))
    .into_response();
    no_store(&mut response);
    Ok(response)
}

/// `POST /oauth/revoke`: a refresh token ends with its whole family. An access token lives out
/// its 15 minutes (disconnecting the app ends it at once). Unknown tokens are answered 200 too.
pub(crate) async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let field = |name: &str| form.get(name).map(String::as_str);
    let result = async {
        let presented =
            client_auth::presented(&headers, field("client_id"), field("client_secret"))?;
        let client = client_auth::authenticate(&state, &presented).await?;
        let token = field("token").unwrap_or_default();
        let store = state.sessions.store();
        let now = state.sessions.clock().now();
        if let Some(record) = store.peek_once(&codes::refresh_key(token), now).await?
            && let Ok(record) = serde_json::from_str::<RefreshRecord>(&record)
            && record.client_id == client.id
        {
            store.take_once(&codes::refresh_key(token), now).await?;
            store
                .put_once(
                    &codes::family_revoked_key(&record.family),
                    "1",
                    keep_for(REFRESH_TTL),
                    now,
                )
                .await?;
        }
        Ok::<_, OAuthError>(())
    }
    .await;
    match result {
        Ok(()) => {
            let mut response = axum::http::StatusCode::OK.into_response();
            no_store(&mut response);
            response
        }
        Err(error) => error.into_response(),
    }
}
