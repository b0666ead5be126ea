//! `/console/keys`: service keys with their scopes, creation, last use and revocation; a form to
//! make one (the key shown once, on the page that answers it) and one to revoke each (confirmed).
//! For operators with `keys:manage`; each change is audited with it, as the JSON API does.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use hub_ledger::admin::AuditEntry;
use hub_ledger::service_keys::{SCOPES, ServiceKey, new_key};
use hub_ledger::users::Permission;

use super::actions::request_id;
use super::operator::Operator;
use super::view::{self, Frame};
use crate::AppState;
use crate::pages::minute;

const PATH: &str = "/console/keys";

struct KeyRow {
    id: String,
    name: String,
    scopes: String,
    created: String,
    last_used: String,
    revoked: Option<String>,
}

#[derive(Template)]
#[template(path = "console_keys.html")]
struct KeysPage {
    frame: Frame,
    keys: Vec<KeyRow>,
    scopes: &'static [&'static str],
    created_key: Option<String>,
    revoked: bool,
}

fn key_row(key: ServiceKey) -> KeyRow {
    KeyRow {
        scopes: key.scopes.join(" "),
        created: minute(key.created_at),
        last_used: key.last_used_at.map_or_else(|| "never".to_owned(), minute),
        revoked: key.revoked_at.map(minute),
        id: key.id,
        name: key.name,
    }
}

async fn page(
    state: &AppState,
    operator: &Operator,
    created_key: Option<String>,
    revoked: bool,
) -> Response {
    let keys = match state.users.list_service_keys().await {
        Ok(keys) => keys,
        Err(e) => return view::unavailable(&e),
    };
    let page = KeysPage {
        frame: Frame::of(operator, "Service keys"),
        keys: keys.into_iter().map(key_row).collect(),
        scopes: &SCOPES,
        created_key,
        revoked,
    };
    view::send(StatusCode::OK, &page.frame, page.render())
}

/// `GET /console/keys`.
pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    match Operator::for_page(&state, &headers, PATH, Some(Permission::KeysManage)).await {
        Ok(operator) => page(&state, &operator, None, uri.query() == Some("revoked=1")).await,
        Err(page) => page,
    }
}

/// The forms' fields (`scope` repeats, one per box ticked); missing ones are empty.
#[derive(Default)]
struct KeyForm {
    csrf: String,
    name: String,
    scopes: Vec<String>,
    id: String,
    confirm: String,
}

impl KeyForm {
    fn parse(body: &str) -> Self {
        let mut form = Self::default();
        for (field, value) in url::form_urlencoded::parse(body.as_bytes()) {
            let value = value.into_owned();
            match &*field {
                "csrf_token" => form.csrf = value,
                "name" => form.name = value,
                "scope" => form.scopes.push(value),
                "id" => form.id = value,
                "confirm" => form.confirm = value,
                _ => {}
            }
        }
        form
    }
}

/// `POST /console/keys`: makes a key and shows it, once.
pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let KeyForm {
        csrf, name, scopes, ..
    } = KeyForm::parse(&body);
    let operator = match Operator::for_post(&state, &headers, &csrf, Permission::KeysManage).await {
        Ok(operator) => operator,
        Err(refused) => return refused,
    };
    let made = match new_key(name.trim(), &scopes) {
        Ok(made) => made,
        Err(e) => {
            return view::message_with_back(
                &operator,
                StatusCode::UNPROCESSABLE_ENTITY,
                "Not made",
                &e.message,
                Some(PATH),
            );
        }
    };
    let audit = AuditEntry {
        actor: operator.actor(),
        action: "key.create",
        target: format!("key:{}", made.record.id),
        before: None,
        after: Some(serde_json::json!({ "name": made.record.name, "scopes": made.record.scopes })),
        reason: None,
        request_id: request_id(&headers),
    };
    if let Err(e) = state.users.insert_service_key_audited(&made, &audit).await {
        return view::unavailable(&e);
    }
    page(&state, &operator, Some(made.key), false).await
}

/// `POST /console/keys/revoke`: revokes a live key (confirmed).
pub(crate) async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let KeyForm {
        csrf, id, confirm, ..
    } = KeyForm::parse(&body);
    let operator = match Operator::for_post(&state, &headers, &csrf, Permission::KeysManage).await {
        Ok(operator) => operator,
        Err(refused) => return refused,
    };
    let refused = |status, text: &str| {
        view::message_with_back(&operator, status, "Not revoked", text, Some(PATH))
    };
    if confirm != "yes" {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Tick the confirmation box to revoke the key.",
        );
    }
    let audit = AuditEntry {
        actor: operator.actor(),
        action: "key.revoke",
        target: format!("key:{id}"),
        before: None,
        after: None,
        reason: None,
        request_id: request_id(&headers),
    };
    let well_formed = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !well_formed {
        return refused(StatusCode::NOT_FOUND, "No live service key has this id.");
    }
    match state.users.revoke_service_key_audited(&id, &audit).await {
        Ok(true) => Redirect::to("/console/keys?revoked=1").into_response(),
        Ok(false) => refused(StatusCode::NOT_FOUND, "No live service key has this id."),
        Err(e) => view::unavailable(&e),
    }
}
