//! `GET /oauth/authorize` and the consent form's `POST /oauth/authorize`.
//!
//! A request is checked in two stages. Until the client and its redirect URI are known good,
//! every problem is an error page and nothing redirects (an attacker must not make the hub send
//! a browser anywhere). After that, problems go back to the app as `error=` on its redirect URI,
//! with `state` and `iss`.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use hub_ledger::oauth::{NewGrant, OAuthGrant};
use serde::Deserialize;

use super::codes::{self, CodeRecord, PendingConsent, Request};
use super::pages::{self, Consent, Lang};
use super::{browser, clients, issuer, random_hex, resources};
use crate::AppState;

/// A redirect back to the app, with `iss` (RFC 9207) and the request's `state`.
fn back_to_app(state: &AppState, request: &Request, pairs: &[(&str, &str)]) -> Response {
    let mut url = request.redirect_uri.clone();
    url.push(if url.contains('?') { '&' } else { '?' });
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        query.append_pair(name, value);
    }
    if let Some(s) = &request.state {
        query.append_pair("state", s);
    }
    query.append_pair("iss", issuer(state));
    url.push_str(&query.finish());
    Redirect::to(&url).into_response()
}

fn refuse(state: &AppState, request: &Request, error: &str, description: &str) -> Response {
    back_to_app(
        state,
        request,
        &[("error", error), ("error_description", description)],
    )
}

/// Why a request was refused before it could be trusted to redirect.
fn error_page(headers: &HeaderMap, message: &str) -> Response {
    pages::error(StatusCode::BAD_REQUEST, Lang::of(headers), message)
}

/// The first stage: the client and the exact redirect URI. Either the app's request, not yet
/// checked further, or an error page.
async fn client_and_redirect(
    state: &AppState,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<(clients::Client, Request), Response> {
    let client_id = query
        .get("client_id")
        .map(String::as_str)
        .unwrap_or_default();
    let client = match clients::find(state, client_id).await {
        Ok(Some(client)) => client,
        Ok(None) => {
            return Err(error_page(
                headers,
                "The app (client_id) is not known to this hub.",
            ));
        }
        Err(e) => return Err(e.into_response()),
    };
    let redirect_uri = match query.get("redirect_uri") {
        Some(uri) if client.redirect_uris.iter().any(|r| r == uri) => uri.clone(),
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        _ => {
            return Err(error_page(
                headers,
                "The redirect_uri is not one this app registered.",
            ));
        }
    };
    let request = Request {
        client_id: client.id.clone(),
        client_name: client.name.clone(),
        redirect_uri,
        state: query.get("state").filter(|s| s.len() <= 1024).cloned(),
        code_challenge: None,
        resource: String::new(),
        scopes: Vec::new(),
    };
    Ok((client, request))
}

/// What the app is told when its request is refused: an error code and a description.
type Refusal = (&'static str, &'static str);

/// The second stage: what is asked, checked against the client and written into `request`; an
/// error for the app if not.
fn check_request(
    state: &AppState,
    client: &clients::Client,
    request: &mut Request,
    query: &HashMap<String, String>,
) -> Result<(), Refusal> {
    if query.get("response_type").map(String::as_str) != Some("code") {
        return Err(("unsupported_response_type", "response_type must be code."));
    }
    match (
        query.get("code_challenge"),
        query.get("code_challenge_method").map(String::as_str),
    ) {
        (Some(challenge), Some("S256")) if challenge.len() == 43 => {
            request.code_challenge = Some(challenge.clone());
        }
        (Some(_), _) => {
            return Err((
                "invalid_request",
                "PKCE must use code_challenge_method=S256.",
            ));
        }
        (None, _) if client.is_public() => {
            return Err(("invalid_request", "A public client must use PKCE (S256)."));
        }
        (None, _) => {}
    }
    let [api, mcp] = resources(state);
    request.resource = match query.get("resource").map(|r| r.trim_end_matches('/')) {
        None => api,
        Some(r) if r == api || r == mcp => r.to_owned(),
        Some(_) => {
            return Err(("invalid_target", "The resource is not one this hub serves."));
        }
    };
    let asked = match query.get("scope") {
        None => client.scopes.clone(),
        Some(scope) => match hub_ledger::oauth::parse_scopes(scope) {
            Ok(scopes) => scopes,
            Err(_) => return Err(("invalid_scope", "A scope is not one this hub has.")),
        },
    };
    if asked.is_empty() || !asked.iter().all(|s| client.scopes.contains(s)) {
        return Err((
            "invalid_scope",
            "A scope is beyond what this app may ask for.",
        ));
    }
    request.scopes = asked;
    Ok(())
}

/// `GET /oauth/authorize`.
pub(crate) async fn start(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (client, mut request) = match client_and_redirect(&state, &headers, &query).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    if let Err((error, description)) = check_request(&state, &client, &mut request, &query) {
        return refuse(&state, &request, error, description);
    }
    let lang = Lang::of(&headers);
    let user = match browser::signed_in(&state, &headers).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            let here = uri
                .path_and_query()
                .map_or("/oauth/authorize", |p| p.as_str());
            return pages::sign_in(&state, lang, here, None, StatusCode::OK);
        }
        Err(e) => return super::OAuthError::from(e).into_response(),
    };
    // Consent given before for these scopes is remembered.
    match state
        .users
        .live_grant(user.user_id, &request.client_id)
        .await
    {
        Ok(Some(grant)) if request.scopes.iter().all(|s| grant.scopes.contains(s)) => {
            return issue_code(&state, request, user.user_id, &grant).await;
        }
        Ok(_) => {}
        Err(e) => return super::OAuthError::from(e).into_response(),
    }
    let csrf_token = match random_hex::<32>() {
        Ok(token) => token,
        Err(e) => return e.into_response(),
    };
    let pending = PendingConsent {
        request,
        user_id: user.user_id,
    };
    let Ok(record) = serde_json::to_string(&pending) else {
        return super::OAuthError::new("server_error", "cannot keep the consent").into_response();
    };
    let store = state.sessions.store();
    let now = state.sessions.clock().now();
    if let Err(e) = store
        .put_once(
            &codes::consent_key(&csrf_token),
            &record,
            codes::CONSENT_TTL,
            now,
        )
        .await
    {
        return super::OAuthError::from(e).into_response();
    }
    pages::consent(
        lang,
        &Consent {
            app_name: &pending.request.client_name,
            redirect_uri: &pending.request.redirect_uri,
            email: &user.email,
            scopes: &pending.request.scopes,
            csrf_token: &csrf_token,
        },
    )
}

/// The consent form.
#[derive(Deserialize)]
pub(crate) struct Decision {
    #[serde(default)]
    csrf_token: String,
    decision: String,
    #[serde(default)]
    daily_cap: String,
}

/// `POST /oauth/authorize`: the person's decision on the consent page.
pub(crate) async fn decide(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Decision>,
) -> Response {
    let lang = Lang::of(&headers);
    let refused = || {
        error_page(
            &headers,
            "This consent form has expired or was not sent from the hub's page. Start again from the app.",
        )
    };
    if form.csrf_token.len() != 64 {
        return refused();
    }
    let now = state.sessions.clock().now();
    let taken = match state
        .sessions
        .store()
        .take_once(&codes::consent_key(&form.csrf_token), now)
        .await
    {
        Ok(taken) => taken,
        Err(e) => return super::OAuthError::from(e).into_response(),
    };
    let Some(pending) = taken.and_then(|t| serde_json::from_str::<PendingConsent>(&t).ok()) else {
        return refused();
    };
    // The form must come from the browser the page was shown to, still signed in as that user.
    match browser::signed_in(&state, &headers).await {
        Ok(Some(user)) if user.user_id == pending.user_id => {}
        Ok(_) => return refused(),
        Err(e) => return super::OAuthError::from(e).into_response(),
    }
    if form.decision != "allow" {
        return refuse(
            &state,
            &pending.request,
            "access_denied",
            "The user denied access.",
        );
    }
    let daily_cap = match form.daily_cap.trim() {
        "" => None,
        cap => match cap.parse::<i64>() {
            Ok(cap) if (0..=hub_ledger::MAX_AMOUNT).contains(&cap) => Some(cap),
            _ => {
                return pages::error(
                    StatusCode::BAD_REQUEST,
                    lang,
                    "The daily cap must be a whole number of credits.",
                );
            }
        },
    };
    let grant = NewGrant {
        user_id: pending.user_id,
        client_id: pending.request.client_id.clone(),
        client_name: pending.request.client_name.clone(),
        scopes: pending.request.scopes.clone(),
        daily_cap,
    };
    match state.users.upsert_grant(&grant).await {
        Ok(grant) => issue_code(&state, pending.request, pending.user_id, &grant).await,
        Err(e) => super::OAuthError::from(e).into_response(),
    }
}

/// A new code for a granted request, and the redirect that hands it to the app.
async fn issue_code(
    state: &AppState,
    request: Request,
    user_id: uuid::Uuid,
    grant: &OAuthGrant,
) -> Response {
    let code = match random_hex::<32>() {
        Ok(code) => code,
        Err(e) => return e.into_response(),
    };
    let now = state.sessions.clock().now();
    let record = CodeRecord {
        request,
        user_id,
        grant_id: grant.id.clone(),
        expires_at: now + chrono::Duration::seconds(codes::CODE_TTL.as_secs() as i64),
    };
    let Ok(value) = serde_json::to_string(&record) else {
        return super::OAuthError::new("server_error", "cannot keep the code").into_response();
    };
    if let Err(e) = state
        .sessions
        .store()
        .put_once(&codes::code_key(&code), &value, codes::CODE_TTL, now)
        .await
    {
        return super::OAuthError::from(e).into_response();
    }
    back_to_app(state, &record.request, &[("code", &code)])
}
