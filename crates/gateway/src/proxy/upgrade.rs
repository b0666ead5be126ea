//! Upgraded connections (WebSockets): the credential a browser offers as a subprotocol, and the
//! two halves joined once the service agrees.

use axum::http::{HeaderMap, HeaderValue, header};

/// A browser cannot set headers on a WebSocket, so it may offer its credential as a subprotocol
/// entry `bearer.<session code or access token>` beside `mcp`. Without a credential header, that
/// entry becomes `Authorization: Bearer …` and is taken out of the list the service sees.
pub(super) fn credential_from_subprotocol(headers: &mut HeaderMap) {
    if crate::identity::presents_credential(headers) {
        return;
    }
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    let Some(token) = offered
        .iter()
        .find_map(|p| p.strip_prefix("bearer."))
        .map(str::to_owned)
    else {
        return;
    };
    if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
        headers.insert(header::AUTHORIZATION, value);
    }
    let rest: Vec<&str> = offered
        .iter()
        .map(String::as_str)
        .filter(|p| !p.starts_with("bearer."))
        .collect();
    headers.remove(header::SEC_WEBSOCKET_PROTOCOL);
    if let Ok(value) = HeaderValue::from_str(&rest.join(", "))
        && !rest.is_empty()
    {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, value);
    }
}

/// Whether the client asked to switch protocols (`Connection: upgrade` with `Upgrade`).
pub(super) fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// Copies bytes both ways between the client's and the service's upgraded connections until
/// either end closes (or, when watched, until the credential is no longer good).
pub(super) async fn join_upgraded(
    client: hyper::upgrade::OnUpgrade,
    service: hyper::upgrade::OnUpgrade,
    watch: Option<crate::ws_watch::Watch>,
) {
    match tokio::try_join!(client, service) {
        Ok((client, service)) => match watch {
            Some(watch) => crate::ws_watch::join(client, service, watch).await,
            None => {
                let mut client = hyper_util::rt::TokioIo::new(client);
                let mut service = hyper_util::rt::TokioIo::new(service);
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut service).await {
                    tracing::debug!(error = %e, "upgraded connection ended");
                }
            }
        },
        Err(e) => tracing::warn!(error = %e, "could not join an upgraded connection"),
    }
}
