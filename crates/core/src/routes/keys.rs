//! Service keys for operators: create (the key shown once), list with their last use, revoke.
//! Each change is recorded in the audit log with it. For callers with `keys:manage` (admin).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hub_http::ApiJson;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::api::ErrorBody;
use super::extract::RequestId;
use crate::AppState;
use crate::caller::{Caller, Permissions, Scope};
use crate::error::CoreError;
use crate::ledger::admin::AuditEntry;
use crate::service_keys::{ServiceKey, new_key};

/// A service key as operators see it (never the key itself).
#[derive(Serialize, ToSchema)]
pub struct KeyInfo {
    /// Public id (`sk_…`).
    pub id: String,
    /// What the operator called it.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<String>,
    /// When it was made.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When it was last presented, to within the gateway's key cache interval.
    pub last_used_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<ServiceKey> for KeyInfo {
    fn from(key: ServiceKey) -> Self {
        Self {
            id: key.id,
            name: key.name,
            scopes: key.scopes,
            created_at: key.created_at,
            revoked_at: key.revoked_at,
            last_used_at: key.last_used_at,
        }
    }
}

/// Every key, newest first.
#[derive(Serialize, ToSchema)]
pub struct KeyList {
    /// The keys.
    pub keys: Vec<KeyInfo>,
}

/// A key just made: the only time the key itself is shown.
#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    /// `hub_sk_…`: keep it now; the hub keeps only its hash.
    pub key: String,
    /// The stored part.
    #[serde(flatten)]
    pub info: KeyInfo,
}

/// A key to make.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKeyBody {
    /// What to call it: 1 to 100 characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    name: String,
    /// What it may do: one or more of the scopes listed in the description.
    #[schema(min_items = 1, max_items = 11)]
    scopes: Vec<String>,
}

fn audit(caller: &Caller, action: &'static str, id: &str, request_id: Option<&str>) -> AuditEntry {
    AuditEntry {
        actor: caller.actor(),
        action,
        target: format!("key:{id}"),
        before: None,
        after: None,
        reason: None,
        request_id: request_id.map(str::to_owned),
    }
}

/// `GET /api/admin/service-keys`.
#[utoipa::path(
    get,
    path = "/api/admin/service-keys",
    operation_id = "listServiceKeys",
    tag = "admin",
    summary = "Service keys",
    description = "Every service key, newest first, with its scopes and last use (never the key). For operators with keys:manage (admin).",
    responses(
        (status = 200, description = "The keys.", body = KeyList),
        (status = 403, description = "The caller lacks keys:manage.", body = ErrorBody),
    ),
    security(("bearerJwt" = []), ("serviceKey" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<KeyList>, CoreError> {
    caller.authorize(&state, Scope::KeysManage).await?;
    let keys = state.store.list_service_keys().await?;
    Ok(Json(KeyList {
        keys: keys.into_iter().map(KeyInfo::from).collect(),
    }))
}

/// `POST /api/admin/service-keys`.
#[utoipa::path(
    post,
    path = "/api/admin/service-keys",
    operation_id = "createServiceKey",
    tag = "admin",
    summary = "Make a service key",
    description = "Makes a service key (shown only in this answer). Scopes: credits:check, credits:deduct, credits:refund, credits:grant, users:read, users:manage, keys:manage, sessions:revoke, usage:read, audit:read, gpt. Recorded in the audit log. For operators with keys:manage.",
    request_body = NewKeyBody,
    responses(
        (status = 201, description = "Made; keep the key now.", body = CreatedKey),
        (status = 403, description = "The caller lacks keys:manage.", body = ErrorBody),
        (status = 422, description = "The name or a scope is not valid.", body = ErrorBody),
    ),
    security(("bearerJwt" = []), ("serviceKey" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(request_id): RequestId,
    ApiJson(body): ApiJson<NewKeyBody>,
) -> Result<Response, CoreError> {
    caller.authorize(&state, Scope::KeysManage).await?;
    let made = new_key(&body.name, &body.scopes)?;
    let mut entry = audit(
        &caller,
        "key.create",
        &made.record.id,
        request_id.as_deref(),
    );
    entry.after =
        Some(serde_json::json!({ "name": made.record.name, "scopes": made.record.scopes }));
    state
        .store
        .insert_service_key_audited(&made, &entry)
        .await?;
    let created = CreatedKey {
        key: made.key,
        info: made.record.into(),
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `DELETE /api/admin/service-keys/{id}`.
#[utoipa::path(
    delete,
    path = "/api/admin/service-keys/{id}",
    operation_id = "revokeServiceKey",
    tag = "admin",
    summary = "Revoke a service key",
    description = "Revokes a key: the gateway refuses it within its key cache interval (SERVICE_KEY_CACHE_SECONDS). Recorded in the audit log. For operators with keys:manage (admin).",
    params(("id" = String, Path, description = "The key's id (sk_…).", max_length = 64)),
    responses(
        (status = 204, description = "Revoked."),
        (status = 403, description = "The caller lacks keys:manage.", body = ErrorBody),
        (status = 404, description = "No live key has this id.", body = ErrorBody),
    ),
    security(("bearerJwt" = []), ("serviceKey" = []))
)]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(request_id): RequestId,
    Path(id): Path<String>,
) -> Result<Response, CoreError> {
    caller.authorize(&state, Scope::KeysManage).await?;
    let entry = audit(&caller, "key.revoke", &id, request_id.as_deref());
    let well_formed = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if well_formed && state.store.revoke_service_key_audited(&id, &entry).await? {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(hub_http::ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_key",
        "No live service key has this id.",
    )
    .into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_lists_every_scope() {
        let described = "credits:check, credits:deduct, credits:refund, credits:grant, users:read, users:manage, keys:manage, sessions:revoke, usage:read, audit:read, gpt";
        for scope in crate::service_keys::SCOPES {
            assert!(described.contains(scope), "{scope}");
        }
    }
}
