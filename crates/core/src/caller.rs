//! What a vouched-for caller may do with credits. Who the caller is comes from the internal
//! caller contract (`hub_http::caller`); the rules here are the ledger service's own.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use hub_http::ApiError;
pub use hub_http::caller::{Caller, Principal, credential_digest};
use uuid::Uuid;

use crate::AppState;
use crate::error::CoreError;

/// A permission over credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Read balances and history; check a cost.
    Check,
    /// Debit.
    Deduct,
    /// Refund a debit.
    Refund,
    /// Grant credits.
    Grant,
    /// Read users, their balances and history (operators).
    UsersRead,
    /// Read usage reports (operators).
    UsageRead,
}

impl Scope {
    /// The scope's name, as in service keys and the `permissions` table.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Check => "credits:check",
            Self::Deduct => "credits:deduct",
            Self::Refund => "credits:refund",
            Self::Grant => "credits:grant",
            Self::UsersRead => "users:read",
            Self::UsageRead => "usage:read",
        }
    }
}

/// The credit permissions of a caller.
pub trait Permissions {
    /// The user a credit operation acts for, if the caller may do `scope` for them.
    fn acting_user(&self, scope: Scope) -> Result<Uuid, CoreError>;
    /// Checks a permission for an operator's operation (refund, grant).
    fn authorize(
        &self,
        state: &AppState,
        scope: Scope,
    ) -> impl std::future::Future<Output = Result<(), CoreError>> + Send;
}

impl Permissions for Caller {
    /// The user a credit operation acts for, if the caller may do `scope` for them.
    ///
    /// End users may check and spend their own credits; service keys need the scope.
    fn acting_user(&self, scope: Scope) -> Result<Uuid, CoreError> {
        match &self.principal {
            Principal::User(id) => match scope {
                Scope::Check | Scope::Deduct => Ok(*id),
                Scope::Refund | Scope::Grant | Scope::UsersRead | Scope::UsageRead => {
                    Err(missing(scope))
                }
            },
            Principal::ServiceKey { scopes, .. } => {
                if !scopes.iter().any(|s| s == scope.as_str()) {
                    return Err(missing(scope));
                }
                self.user_id.ok_or(CoreError::BadUserId(
                    "X-User-ID is required: name the user acted for.",
                ))
            }
            Principal::System => self.user_id.ok_or(CoreError::BadUserId(
                "X-User-ID is required: name the user acted for.",
            )),
        }
    }

    /// Checks a permission for an operator's operation (refund, grant): service keys by scope,
    /// end users by the permissions of their roles.
    async fn authorize(&self, state: &AppState, scope: Scope) -> Result<(), CoreError> {
        let allowed = match &self.principal {
            Principal::System => true,
            Principal::ServiceKey { scopes, .. } => scopes.iter().any(|s| s == scope.as_str()),
            Principal::User(id) => state
                .store
                .permissions(*id)
                .await?
                .iter()
                .any(|p| p == scope.as_str()),
        };
        if allowed { Ok(()) } else { Err(missing(scope)) }
    }
}

fn missing(scope: Scope) -> CoreError {
    CoreError::Forbidden(format!(
        "This caller lacks the permission {}.",
        scope.as_str()
    ))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Caller::from_headers(&parts.headers, &state.credential)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn service_keys_need_the_scope_and_a_user() {
        let digest = credential_digest(TOKEN);
        let user = Uuid::now_v7();
        let caller = Caller::from_headers(
            &headers(&[
                ("x-hub-internal", TOKEN),
                ("x-hub-caller", "service"),
                ("x-hub-service-key", "k1"),
                ("x-hub-scopes", "credits:check,credits:deduct"),
                ("x-user-id", &user.to_string()),
            ]),
            &digest,
        )
        .unwrap();
        assert_eq!(caller.acting_user(Scope::Deduct).unwrap(), user);
        assert!(matches!(
            caller.acting_user(Scope::Refund),
            Err(CoreError::Forbidden(_))
        ));
    }

    #[test]
    fn end_users_cannot_refund_or_grant_by_default() {
        let digest = credential_digest(TOKEN);
        let user = Uuid::now_v7();
        let caller = Caller::from_headers(
            &headers(&[
                ("x-hub-internal", TOKEN),
                ("x-hub-caller", "user"),
                ("x-user-id", &user.to_string()),
            ]),
            &digest,
        )
        .unwrap();
        assert_eq!(caller.acting_user(Scope::Check).unwrap(), user);
        assert!(caller.acting_user(Scope::Grant).is_err());
    }
}
