//! Operators' view of users: `GET /api/admin/users` (search) and `GET /api/admin/users/{id}`
//! (balance, holds, roles, sign-in methods, standing, sessions, recent history), for callers
//! with `users:read`.

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use hub_http::{ApiError, ApiQuery};
use hub_ledger::Transaction;
use hub_ledger::users::{Permission, User};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Vouched, unknown_user};
use crate::AppState;
use crate::routes::accounts::store_error;
use crate::routes::api::ErrorBody;

/// Users on one page.
const PAGE: u32 = 50;
/// Transactions in a user's detail.
const RECENT: u32 = 10;

/// A user as an operator sees them in a list.
#[derive(Serialize, ToSchema)]
pub struct UserSummary {
    /// The user's id.
    pub id: Uuid,
    /// Their e-mail address.
    pub email: String,
    /// Their display name.
    pub name: String,
    /// When the account was made.
    pub created_at: DateTime<Utc>,
}

impl From<User> for UserSummary {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            email: user.email,
            name: user.name,
            created_at: user.created_at,
        }
    }
}

/// A page of users.
#[derive(Serialize, ToSchema)]
pub struct UserList {
    /// Newest first.
    pub users: Vec<UserSummary>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<Uuid>,
}

/// The search.
#[derive(Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UserQuery {
    /// Part of an e-mail address or name, or a user's id; every user when absent.
    #[param(max_length = 200)]
    q: Option<String>,
    /// The last user id of the previous page.
    cursor: Option<Uuid>,
}

/// `GET /api/admin/users`.
#[utoipa::path(
    get,
    path = "/api/admin/users",
    operation_id = "searchUsers",
    tag = "admin",
    summary = "Find users",
    description = "Users whose e-mail address or name contains q (case-insensitive), or whose id is q; newest first, 50 a page. For operators with users:read (the support, finance and admin roles) and service keys with users:read.",
    params(UserQuery),
    responses(
        (status = 200, description = "A page of users.", body = UserList),
        (status = 403, description = "The caller lacks users:read.", body = ErrorBody),
        (status = 422, description = "The query is not valid.", body = ErrorBody),
    ),
    security(("serviceKey" = []), ("bearerJwt" = []))
)]
pub async fn search(
    State(state): State<AppState>,
    caller: Vouched,
    ApiQuery(query): ApiQuery<UserQuery>,
) -> Result<Json<UserList>, ApiError> {
    caller.authorize(&state, Permission::UsersRead).await?;
    let q = query.q.unwrap_or_default();
    let q = q.trim();
    if q.chars().count() > 200 || q.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(
            "invalid_query",
            "q is at most 200 characters, without control characters",
        ));
    }
    let mut users = state
        .users
        .search_users(q, query.cursor, PAGE + 1)
        .await
        .map_err(|e| store_error(&e))?;
    let more = users.len() > PAGE as usize;
    users.truncate(PAGE as usize);
    let next_cursor = more.then(|| users.last().map(|u| u.id)).flatten();
    Ok(Json(UserList {
        users: users.into_iter().map(UserSummary::from).collect(),
        next_cursor,
    }))
}

/// One of a user's live sessions, as an operator sees it (never its code).
#[derive(Serialize, ToSchema)]
pub struct UserSession {
    /// The session's public id, for `DELETE /api/admin/users/{id}/sessions?session=`.
    pub id: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// Where the user was sent back to, e.g. `chatgpt`.
    pub return_to: Option<String>,
}

/// One user, as an operator sees them.
#[derive(Serialize, ToSchema)]
pub struct UserDetail {
    /// Who.
    pub user: UserSummary,
    /// Their balance.
    pub balance: i64,
    /// What live holds set aside.
    pub held: i64,
    /// Their roles.
    pub roles: Vec<String>,
    /// How they sign in: `google`, `password`.
    pub sign_in_methods: Vec<String>,
    /// When an operator disabled the account, if one did.
    pub disabled_at: Option<DateTime<Utc>>,
    /// When the account was deleted, if it was.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Their live sessions, newest first.
    pub sessions: Vec<UserSession>,
    /// Their last transactions, newest first.
    pub recent_transactions: Vec<Transaction>,
}

/// `GET /api/admin/users/{id}`.
#[utoipa::path(
    get,
    path = "/api/admin/users/{id}",
    operation_id = "getUser",
    tag = "admin",
    summary = "One user",
    description = "A user's balance and holds, roles, sign-in methods, standing (disabled, deleted), live sessions and last ten transactions. For operators with users:read and service keys with users:read.",
    params(("id" = Uuid, Path, description = "The user's id.")),
    responses(
        (status = 200, description = "The user.", body = UserDetail),
        (status = 403, description = "The caller lacks users:read.", body = ErrorBody),
        (status = 404, description = "No user has this id.", body = ErrorBody),
    ),
    security(("serviceKey" = []), ("bearerJwt" = []))
)]
pub async fn detail(
    State(state): State<AppState>,
    caller: Vouched,
    Path(id): Path<Uuid>,
) -> Result<Json<UserDetail>, ApiError> {
    caller.authorize(&state, Permission::UsersRead).await?;
    let stored = |e: hub_ledger::StoreError| store_error(&e);
    let user = state.users.find_user(id).await.map_err(stored)?;
    let (Some(user), Some(holdings), Some(standing), Some(page)) = (
        user,
        state.users.holdings(id).await.map_err(stored)?,
        state.users.account_state(id).await.map_err(stored)?,
        state
            .users
            .transactions(id, RECENT, None)
            .await
            .map_err(stored)?,
    ) else {
        return Err(unknown_user());
    };
    let mut sessions = state.sessions.list(id).await?;
    sessions.reverse();
    Ok(Json(UserDetail {
        user: user.into(),
        balance: holdings.balance,
        held: holdings.held,
        roles: state.users.roles(id).await.map_err(stored)?,
        sign_in_methods: state
            .users
            .sign_in_methods(id)
            .await
            .map_err(stored)?
            .unwrap_or_default(),
        disabled_at: standing.disabled_at,
        deleted_at: standing.deleted_at,
        sessions: sessions
            .into_iter()
            .map(|s| UserSession {
                id: s.id,
                created_at: s.created_at,
                expires_at: s.expires_at,
                return_to: s.return_to,
            })
            .collect(),
        recent_transactions: page.transactions,
    }))
}
