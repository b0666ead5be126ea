//! Who is calling, as the gateway vouched for them: the internal credential beside the identity
//! headers. The same headers go on to core when a tool reads or holds the caller's credits, so
//! core applies its own rules (scopes, who may act for whom) to every call.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use hub_http::ApiError;
use hub_http::caller::{
    CALLER_HEADER, Caller, GRANT_HEADER, INTERNAL_HEADER, SCOPES_HEADER, SERVICE_KEY_HEADER,
    USER_ID_HEADER, VIA_HEADER,
};
use uuid::Uuid;

/// A caller the gateway vouched for, acting for one user.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The user whose credits the calls spend.
    pub user_id: Uuid,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Identity {
    /// The headers that carry this identity to core.
    pub fn headers(&self) -> impl Iterator<Item = &(HeaderName, HeaderValue)> {
        self.headers.iter()
    }
}

/// The identity in `headers`, if the internal credential is there (checked as core checks it,
/// against `credential`, the credential's digest) and names a user.
pub fn identify(headers: &HeaderMap, credential: &[u8; 32]) -> Result<Identity, ApiError> {
    let caller = Caller::from_headers(headers, credential)?;
    let user_id = caller.user_id.ok_or_else(|| {
        ApiError::bad_request(
            "invalid_user_id",
            "MCP calls act for one user: a service key names them in X-User-ID.",
        )
    })?;
    let forwarded = [
        INTERNAL_HEADER,
        CALLER_HEADER,
        USER_ID_HEADER,
        SERVICE_KEY_HEADER,
        SCOPES_HEADER,
        GRANT_HEADER,
    ];
    let mut headers: Vec<_> = forwarded
        .iter()
        .filter_map(|name| {
            let value = headers.get(*name)?.clone();
            Some((HeaderName::from_static(name), value))
        })
        .collect();
    // The holds this service places are its own: the caller cannot settle them around it.
    headers.push((
        HeaderName::from_static(VIA_HEADER),
        HeaderValue::from_static("mcp"),
    ));
    Ok(Identity { user_id, headers })
}
