//! `GET /console/users` (search by e-mail address, name or id) and `GET /console/users/{id}`
//! (balance, held, roles, sign-in methods, standing, live sessions, recent history, and the forms
//! of the actions the operator may take). For operators with `users:read`.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use hub_ledger::Holdings;
use hub_ledger::admin::AccountState;
use hub_ledger::users::{Permission, User};
use uuid::Uuid;

use super::operator::Operator;
use super::view::{self, Frame};
use crate::AppState;
use crate::pages::minute;

/// Users on one page of results.
const PAGE: u32 = 50;
/// Transactions in a user's recent history.
const RECENT: u32 = 20;

/// A user in the results.
struct Found {
    id: Uuid,
    email: String,
    name: String,
    created: String,
}

#[derive(Template)]
#[template(path = "console_users.html")]
struct SearchPage {
    frame: Frame,
    q: String,
    users: Vec<Found>,
    next_link: Option<String>,
}

/// `GET /console/users?q=&cursor=`.
pub(crate) async fn search(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let path = "/console/users";
    let operator =
        match Operator::for_page(&state, &headers, path, Some(Permission::UsersRead)).await {
            Ok(operator) => operator,
            Err(page) => return page,
        };
    let q: String = query
        .get("q")
        .map(|q| {
            q.trim()
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect()
        })
        .unwrap_or_default();
    let cursor = query.get("cursor").and_then(|c| c.parse::<Uuid>().ok());
    let mut users = match state.users.search_users(&q, cursor, PAGE + 1).await {
        Ok(users) => users,
        Err(e) => return view::unavailable(&e),
    };
    let more = users.len() > PAGE as usize;
    users.truncate(PAGE as usize);
    let next_link = more.then(|| users.last().map(|u| next(&q, u.id))).flatten();
    let page = SearchPage {
        frame: Frame::of(&operator, "Users"),
        q,
        users: users.into_iter().map(found).collect(),
        next_link,
    };
    view::send(StatusCode::OK, &page.frame, page.render())
}

fn found(user: User) -> Found {
    Found {
        id: user.id,
        email: user.email,
        name: user.name,
        created: minute(user.created_at),
    }
}

fn next(q: &str, after: Uuid) -> String {
    url::form_urlencoded::Serializer::new(String::from("/console/users?"))
        .append_pair("q", q)
        .append_pair("cursor", &after.to_string())
        .finish()
}

/// A transaction in the recent history.
struct Row {
    id: String,
    kind: &'static str,
    service: String,
    amount: String,
    balance_after: i64,
    reason: String,
    when: String,
}

/// A live session.
struct SessionRow {
    kind: &'static str,
    started: String,
    ends: String,
}

/// What the operator may do here.
struct Allowed {
    grant: bool,
    refund: bool,
    manage: bool,
    end_sessions: bool,
}

#[derive(Template)]
#[template(path = "console_user.html")]
struct DetailPage {
    frame: Frame,
    user: Found,
    holdings: Holdings,
    available: i64,
    disabled: bool,
    deleted: bool,
    standing: String,
    roles: Vec<String>,
    methods: Vec<String>,
    sessions: Vec<SessionRow>,
    rows: Vec<Row>,
    allowed: Allowed,
    oneself: bool,
    notice: Option<&'static str>,
    form_key: String,
}

/// Everything the detail page reads.
struct Read {
    user: User,
    holdings: Holdings,
    standing: AccountState,
    roles: Vec<String>,
    methods: Vec<String>,
    history: Vec<hub_ledger::Transaction>,
}

async fn read(state: &AppState, id: Uuid) -> Result<Option<Read>, hub_ledger::StoreError> {
    let store = &state.users;
    let (Some(user), Some(holdings), Some(standing), Some(history)) = (
        store.find_user(id).await?,
        store.holdings(id).await?,
        store.account_state(id).await?,
        store.transactions(id, RECENT, None).await?,
    ) else {
        return Ok(None);
    };
    Ok(Some(Read {
        user,
        holdings,
        standing,
        roles: store.roles(id).await?,
        methods: store.sign_in_methods(id).await?.unwrap_or_default(),
        history: history.transactions,
    }))
}

/// `GET /console/users/{id}`.
pub(crate) async fn detail(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let path = format!("/console/users/{id}");
    let operator =
        match Operator::for_page(&state, &headers, &path, Some(Permission::UsersRead)).await {
            Ok(operator) => operator,
            Err(page) => return page,
        };
    let not_found = || {
        view::message(
            &operator,
            StatusCode::NOT_FOUND,
            "No such user",
            "No user has this id.",
        )
    };
    let Ok(id) = id.parse::<Uuid>() else {
        return not_found();
    };
    let read = match read(&state, id).await {
        Ok(Some(read)) => read,
        Ok(None) => return not_found(),
        Err(e) => return view::unavailable(&e),
    };
    let sessions = match state.sessions.list(id).await {
        Ok(sessions) => sessions,
        Err(e) => return view::unavailable(&e),
    };
    let notice = query.get("done").and_then(|done| done_notice(done));
    render(&operator, read, sessions, notice)
}

fn render(
    operator: &Operator,
    read: Read,
    sessions: Vec<hub_sessions::SessionRecord>,
    notice: Option<&'static str>,
) -> Response {
    let standing = match (read.standing.deleted_at, read.standing.disabled_at) {
        (Some(at), _) => format!("deleted {}", minute(at)),
        (None, Some(at)) => format!("disabled {}", minute(at)),
        (None, None) => "active".to_owned(),
    };
    let page = DetailPage {
        frame: Frame::of(operator, &format!("User {}", read.user.email)),
        oneself: read.user.id == operator.session.user_id,
        available: read.holdings.available(),
        holdings: read.holdings,
        disabled: read.standing.disabled_at.is_some(),
        deleted: read.standing.deleted_at.is_some(),
        standing,
        user: found(read.user),
        roles: read.roles,
        methods: read.methods,
        sessions: sessions.iter().rev().map(session_row).collect(),
        rows: read.history.into_iter().map(row).collect(),
        allowed: Allowed {
            grant: operator.may(Permission::Grant),
            refund: operator.may(Permission::Refund),
            manage: operator.may(Permission::UsersManage),
            end_sessions: operator.may(Permission::SessionsRevoke),
        },
        notice,
        form_key: view::form_key(),
    };
    view::send(StatusCode::OK, &page.frame, page.render())
}

fn session_row(s: &hub_sessions::SessionRecord) -> SessionRow {
    SessionRow {
        kind: if s.session_param.as_deref() == Some("browser") {
            "browser sign-in"
        } else {
            "session code"
        },
        started: minute(s.created_at),
        ends: minute(s.expires_at),
    }
}

fn row(t: hub_ledger::Transaction) -> Row {
    Row {
        kind: t.kind.as_str(),
        service: t.service.unwrap_or_default(),
        amount: format!("{:+}", t.amount),
        balance_after: t.balance_after,
        reason: t.reason.unwrap_or_default(),
        when: minute(t.created_at),
        id: t.id,
    }
}

/// What a finished action says on the page it comes back to.
fn done_notice(done: &str) -> Option<&'static str> {
    Some(match done {
        "grant" => "Credits granted.",
        "refund" => "Refunded.",
        "adjust" => "Balance adjusted.",
        "disable" => "The user is disabled; their sessions and tokens have ended.",
        "enable" => "The user is enabled again.",
        "delete" => "The user is deleted; their ledger rows stay.",
        "sign-out" => "The user is signed out everywhere.",
        _ => return None,
    })
}
