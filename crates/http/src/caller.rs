//! The internal caller contract: who is calling, as the gateway vouches for it.
//!
//! A service trusts identity headers only beside the internal credential (`X-Hub-Internal`),
//! which only the gateway and the hub's own tools hold. Beside it:
//! - `X-Hub-Caller`: `user` (an end user acting as themselves), `service` (a service key) or
//!   `system` (the operator's tools, every permission);
//! - `X-User-ID`: the user acted for (for `user`, the caller themselves);
//! - for `service`: `X-Hub-Service-Key` (the key's id, never its secret) and `X-Hub-Scopes`
//!   (space- or comma-separated scopes);
//! - `X-Hub-Via`: the hub service a call comes through (`mcp` for the MCP service's tools).
//!
//! The gateway writes these headers ([`Principal`] is what it recognised), core and mcp read them
//! with [`Caller::from_headers`]; what a caller may then do is each service's own rule.

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::ApiError;

/// The internal credential's header.
pub const INTERNAL_HEADER: &str = "x-hub-internal";
/// The caller kind's header.
pub const CALLER_HEADER: &str = "x-hub-caller";
/// The service key id's header.
pub const SERVICE_KEY_HEADER: &str = "x-hub-service-key";
/// The service key scopes' header.
pub const SCOPES_HEADER: &str = "x-hub-scopes";
/// The acted-for user's header.
pub const USER_ID_HEADER: &str = "x-user-id";
/// The OAuth grant an app's call comes under (beside `user`): its daily spending cap applies.
pub const GRANT_HEADER: &str = "x-hub-grant";
/// The hub service a call comes through, beside the caller it acts for (`mcp` for the MCP
/// service's tools); part of the principal that places and settles holds.
pub const VIA_HEADER: &str = "x-hub-via";

/// The principal behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An end user, acting as themselves.
    User(Uuid),
    /// A service key with its scopes.
    ServiceKey {
        /// The key's id.
        id: String,
        /// Its scopes.
        scopes: Vec<String>,
    },
    /// The operator's tools.
    System,
}

/// A caller the gateway vouched for, and the user it acts for.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// For whom (`X-User-ID`).
    pub user_id: Option<Uuid>,
    /// The hub service the call came through (`X-Hub-Via`), if any.
    pub via: Option<String>,
    /// The OAuth grant an app's call comes under (`X-Hub-Grant`, beside an end user): its daily
    /// spending cap applies to what the call spends.
    pub grant: Option<String>,
}

/// SHA-256 of the internal credential, compared in constant time.
pub fn credential_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn bad_user_id(message: &'static str) -> ApiError {
    ApiError::bad_request("invalid_user_id", message)
}

impl Caller {
    /// Reads the caller from the headers, given the digest of the internal credential: 401 without
    /// the credential or a caller, 400 `invalid_user_id` for an `X-User-ID` that is not a UUID.
    pub fn from_headers(headers: &HeaderMap, credential: &[u8; 32]) -> Result<Self, ApiError> {
        let presented = headers.get(INTERNAL_HEADER).ok_or_else(|| {
            ApiError::unauthenticated("This service is internal: call it through the gateway.")
        })?;
        let digest = credential_digest(presented.to_str().unwrap_or_default());
        if !bool::from(digest.ct_eq(credential)) {
            return Err(ApiError::unauthenticated(
                "The internal credential is not valid.",
            ));
        }
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let user_id = match text(USER_ID_HEADER) {
            None if headers.contains_key(USER_ID_HEADER) => {
                return Err(bad_user_id("X-User-ID must be a UUID."));
            }
            None | Some("") => None,
            Some(raw) => {
                Some(Uuid::parse_str(raw).map_err(|_| bad_user_id("X-User-ID must be a UUID."))?)
            }
        };
        let principal = match text(CALLER_HEADER) {
            Some("user") => Principal::User(
                user_id.ok_or_else(|| bad_user_id("X-User-ID is required for an end user."))?,
            ),
            Some("service") => Principal::ServiceKey {
                id: text(SERVICE_KEY_HEADER)
                    .filter(|id| !id.is_empty())
                    .ok_or_else(|| ApiError::unauthenticated("A service caller needs its key id."))?
                    .to_owned(),
                scopes: text(SCOPES_HEADER)
                    .unwrap_or_default()
                    .split([' ', ','])
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            },
            Some("system") => Principal::System,
            _ => return Err(ApiError::unauthenticated("The caller is not identified.")),
        };
        let via = text(VIA_HEADER)
            .filter(|via| !via.is_empty() && via.len() <= 32)
            .map(str::to_owned);
        let grant = text(GRANT_HEADER)
            .filter(|grant| !grant.is_empty() && grant.len() <= 64)
            .filter(|_| matches!(principal, Principal::User(_)))
            .map(str::to_owned);
        Ok(Self {
            principal,
            user_id,
            via,
            grant,
        })
    }

    /// Keys of different callers, or of one service key acting for different users, never meet.
    pub fn idempotency_scope(&self) -> String {
        let acted_for = self.user_id.map(|u| u.to_string()).unwrap_or_default();
        match &self.principal {
            Principal::User(id) => format!("user:{id}"),
            Principal::ServiceKey { id, .. } => format!("key:{id}:{acted_for}"),
            Principal::System => format!("system:{acted_for}"),
        }
    }

    /// Who acts, as the audit log names them: `user:<id>`, `key:<id>` or `system`.
    pub fn actor(&self) -> String {
        match &self.principal {
            Principal::User(id) => format!("user:{id}"),
            Principal::ServiceKey { id, .. } => format!("key:{id}"),
            Principal::System => "system".to_owned(),
        }
    }

    /// Who places a hold, and so who alone may settle it: the principal (a user, a service key,
    /// the operator's tools) and the hub service it came through. A user cannot release the hold
    /// the MCP service placed for their video while the video renders, and one service key
    /// cannot settle another's holds.
    pub fn principal_key(&self) -> String {
        let who = self.actor();
        match &self.via {
            Some(via) => format!("{via}/{who}"),
            None => who,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, StatusCode};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn without_the_internal_credential_nobody_is_trusted() {
        let digest = credential_digest(TOKEN);
        let user = Uuid::now_v7().to_string();
        let err = Caller::from_headers(
            &headers(&[("x-hub-caller", "system"), ("x-user-id", &user)]),
            &digest,
        )
        .unwrap_err();
        assert_eq!(err.status, StatusCode::UNAUTHORIZED);
        let err = Caller::from_headers(
            &headers(&[("x-hub-internal", "wrong"), ("x-hub-caller", "system")]),
            &digest,
        )
        .unwrap_err();
        assert_eq!(err.status, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn a_service_caller_carries_its_key_scopes_and_user() {
        let digest = credential_digest(TOKEN);
        let user = Uuid::now_v7();
        let caller = Caller::from_headers(
            &headers(&[
                ("x-hub-internal", TOKEN),
                ("x-hub-caller", "service"),
                ("x-hub-service-key", "k1"),
                ("x-hub-scopes", "credits:check,credits:deduct"),
                ("x-user-id", &user.to_string()),
                ("x-hub-via", "mcp"),
            ]),
            &digest,
        )
        .unwrap();
        assert_eq!(
            caller.principal,
            Principal::ServiceKey {
                id: "k1".into(),
                scopes: vec!["credits:check".into(), "credits:deduct".into()]
            }
        );
        assert_eq!(caller.user_id, Some(user));
        assert_eq!(caller.principal_key(), "mcp/key:k1");
        assert_eq!(caller.idempotency_scope(), format!("key:k1:{user}"));
    }

    #[test]
    fn a_malformed_user_id_is_a_bad_request() {
        let digest = credential_digest(TOKEN);
        let err = Caller::from_headers(
            &headers(&[
                ("x-hub-internal", TOKEN),
                ("x-hub-caller", "system"),
                ("x-user-id", "42"),
            ]),
            &digest,
        )
        .unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.code, "invalid_user_id");
    }
}
