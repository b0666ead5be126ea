//! Operators' view of users: `GET /api/admin/users` (search) and `GET /api/admin/users/{id}`
//! (balance, holds, roles, sign-in methods, recent history), for callers with `users:read`.

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use hub_http::ApiQuery;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::api::ErrorBody;
use crate::AppState;
use crate::caller::{Caller, Permissions, Scope};
use crate::error::CoreError;
use crate::ledger::{InvalidInput, Transaction};

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

impl From<crate::users::User> for UserSummary {
    fn from(user: crate::users::User) -> Self {
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
    caller: Caller,
    ApiQuery(query): ApiQuery<UserQuery>,
) -> Result<Json<UserList>, CoreError> {
    caller.authorize(&state, Scope::UsersRead).await?;
    let q = query.q.unwrap_or_default();
    let q = q.trim();
    if q.chars().count() > 200 || q.chars().any(char::is_control) {
        return Err(InvalidInput {
            code: "invalid_query",
            message: "q is at most 200 characters, without control characters".into(),
            too_large: false,
        }
        .into());
    }
    let mut users = state.store.search_users(q, query.cursor, PAGE + 1).await?;
    let more = users.len() > PAGE as usize;
    users.truncate(PAGE as usize);
    let next_cursor = more.then(|| users.last().map(|u| u.id)).flatten();
    Ok(Json(UserList {
        users: users.into_iter().map(UserSummary::from).collect(),
        next_cursor,
    }))
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
    description = "A user's balance and holds, roles, sign-in methods and last ten transactions. For operators with users:read and service keys with users:read.",
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
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<UserDetail>, CoreError> {
    caller.authorize(&state, Scope::UsersRead).await?;
    let user = state
        .store
        .find_user(id)
        .await?
        .ok_or(CoreError::UnknownUser)?;
    let holdings = state
        .store
        .holdings(id)
        .await?
        .ok_or(CoreError::UnknownUser)?;
    let page = state
        .store
        .transactions(id, RECENT, None)
        .await?
        .ok_or(CoreError::UnknownUser)?;
    Ok(Json(UserDetail {
        user: user.into(),
        balance: holdings.balance,
        held: holdings.held,
        roles: state.store.roles(id).await?,
        sign_in_methods: state.store.sign_in_methods(id).await?.unwrap_or_default(),
        recent_transactions: page.transactions,
    }))
}
