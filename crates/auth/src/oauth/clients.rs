//! Who an OAuth client is: one the operator registered or one registered dynamically (stored),
//! or one whose client id is the https URL of its Client ID Metadata Document (fetched, checked
//! and cached by the document's caching headers).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::OAuthError;
use crate::AppState;

/// A client as the authorization server sees it.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    /// The secret's hash, for a confidential client.
    pub secret_hash: Option<String>,
    pub scopes: Vec<String>,
}

impl Client {
    pub(crate) fn is_public(&self) -> bool {
        self.secret_hash.is_none()
    }
}

/// The largest metadata document read.
const MAX_DOCUMENT: usize = 64 * 1024;
/// How long a document is kept when it says nothing, and at most.
const DEFAULT_KEEP: Duration = Duration::from_secs(300);
const MAX_KEEP: Duration = Duration::from_secs(24 * 3600);
/// Documents kept at once.
const MAX_DOCUMENTS: usize = 1000;

/// Metadata documents fetched lately, by client id.
#[derive(Debug, Default)]
pub struct MetadataCache(Mutex<HashMap<String, (Client, Instant)>>);

impl MetadataCache {
    fn get(&self, id: &str) -> Option<Client> {
        let documents = self.0.lock().ok()?;
        let (client, until) = documents.get(id)?;
        (Instant::now() < *until).then(|| client.clone())
    }

    fn put(&self, client: Client, keep: Duration) {
        if keep.is_zero() {
            return;
        }
        if let Ok(mut documents) = self.0.lock() {
            if documents.len() >= MAX_DOCUMENTS {
                let now = Instant::now();
                documents.retain(|_, (_, until)| *until > now);
            }
            if documents.len() < MAX_DOCUMENTS {
                documents.insert(client.id.clone(), (client, Instant::now() + keep));
            }
        }
    }
}

/// The client with this id, if there is one.
pub(crate) async fn find(state: &AppState, id: &str) -> Result<Option<Client>, OAuthError> {
    if id.starts_with("https://") || id.starts_with("http://") {
        return metadata_document(state, id).await;
    }
    if id.is_empty() || id.len() > 64 {
        return Ok(None);
    }
    Ok(state
        .users
        .find_oauth_client(id)
        .await?
        .map(|(client, secret_hash)| Client {
            id: client.id,
            name: client.name,
            redirect_uris: client.redirect_uris,
            secret_hash,
            scopes: client.scopes,
        }))
}

/// A Client ID Metadata Document, as far as the hub reads it.
#[derive(Deserialize)]
struct Document {
    client_id: String,
    client_name: Option<String>,
    redirect_uris: Vec<String>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

async fn metadata_document(state: &AppState, id: &str) -> Result<Option<Client>, OAuthError> {
    let insecure = state.config.oauth.allow_insecure_client_metadata;
    let Some(url) = document_url(id, insecure) else {
        return Ok(None);
    };
    if let Some(client) = state.oauth_metadata.get(id) {
        return Ok(Some(client));
    }
    let Some((body, keep)) = fetch_document(&url, insecure).await? else {
        return Ok(None);
    };
    let Some(client) = client_of(&url, id, &body) else {
        return Ok(None);
    };
    state.oauth_metadata.put(client.clone(), keep);
    Ok(Some(client))
}

/// The client id as a document's URL, if it may be one: https (or http in tests), a path, no
/// fragment or user.
fn document_url(id: &str, insecure: bool) -> Option<url::Url> {
    let url = url::Url::parse(id).ok()?;
    let refused = (url.scheme() != "https" && !insecure)
        || url.path() == "/"
        || url.fragment().is_some()
        || !url.username().is_empty()
        || id.len() > 2000;
    (!refused).then_some(url)
}

/// The document's bytes and how long they may be kept; `None` when it cannot be had. Every
/// address the name has must be public (unless tests allow otherwise), and the fetch goes to the
/// one checked, so a second answer of the name cannot point elsewhere.
async fn fetch_document(
    url: &url::Url,
    insecure: bool,
) -> Result<Option<(Vec<u8>, Duration)>, OAuthError> {
    let Some(host) = url.host_str() else {
        return Ok(None);
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let addresses: Vec<IpAddr> = match tokio::net::lookup_host((host, port)).await {
        Ok(found) => found.map(|a| a.ip()).collect(),
        Err(_) => return Ok(None),
    };
    let Some(address) = addresses.first().copied() else {
        return Ok(None);
    };
    if !insecure && !addresses.iter().all(|a| is_public(*a)) {
        tracing::warn!(client_id = %url, "a client metadata document on a private address");
        return Ok(None);
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .resolve(host, std::net::SocketAddr::new(address, port))
        // Tests serve their documents with a certificate of their own (never in production).
        .danger_accept_invalid_certs(insecure)
        .build()
        .map_err(|e| OAuthError::new("server_error", e.to_string()))?;
    let Ok(response) = client.get(url.clone()).send().await else {
        return Ok(None);
    };
    if !response.status().is_success() {
        return Ok(None);
    }
    let keep = keep_for(response.headers());
    Ok(read_limited(response).await.map(|body| (body, keep)))
}

/// The client a document describes, if it names itself by its URL, is public and lists only
/// redirect URIs the hub accepts.
fn client_of(url: &url::Url, id: &str, body: &[u8]) -> Option<Client> {
    let document = serde_json::from_slice::<Document>(body).ok()?;
    let method = document
        .token_endpoint_auth_method
        .as_deref()
        .unwrap_or("none");
    if document.client_id != id
        || method != "none"
        || document.redirect_uris.is_empty()
        || !document
            .redirect_uris
            .iter()
            .all(|u| hub_ledger::oauth::redirect_uri_allowed(u))
    {
        return None;
    }
    let scopes = match document.scope.as_deref() {
        Some(scope) => hub_ledger::oauth::parse_scopes(scope).unwrap_or_else(|_| all_scopes()),
        None => all_scopes(),
    };
    let name = document
        .client_name
        .filter(|n| !n.trim().is_empty() && n.chars().count() <= 100)
        .unwrap_or_else(|| url.host_str().unwrap_or(id).to_owned());
    Some(Client {
        id: id.to_owned(),
        name,
        redirect_uris: document.redirect_uris,
        secret_hash: None,
        scopes,
    })
}

fn all_scopes() -> Vec<String> {
    hub_ledger::oauth::SCOPES
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

async fn read_limited(mut response: reqwest::Response) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    Some(body)
}

/// How long the document may be kept: its `Cache-Control: max-age`, none for `no-store` or
/// `no-cache`, five minutes when it says nothing; a day at most.
fn keep_for(headers: &reqwest::header::HeaderMap) -> Duration {
    let Some(control) = headers
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
    else {
        return DEFAULT_KEEP;
    };
    let mut keep = DEFAULT_KEEP;
    for directive in control.split(',').map(str::trim) {
        if directive.eq_ignore_ascii_case("no-store") || directive.eq_ignore_ascii_case("no-cache")
        {
            return Duration::ZERO;
        }
        if let Some(seconds) = directive
            .strip_prefix("max-age=")
            .and_then(|s| s.parse::<u64>().ok())
        {
            keep = Duration::from_secs(seconds);
        }
    }
    keep.min(MAX_KEEP)
}

/// Whether an address is on the public internet (not loopback, private, link-local, shared,
/// unique-local, multicast or unspecified).
pub(crate) fn is_public(address: IpAddr) -> bool {
    match address.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_loopback_addresses_are_not_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn caching_follows_the_document() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(keep_for(&headers), DEFAULT_KEEP);
        headers.insert(
            reqwest::header::CACHE_CONTROL,
            "public, max-age=60".parse().unwrap(),
        );
        assert_eq!(keep_for(&headers), Duration::from_secs(60));
        headers.insert(
            reqwest::header::CACHE_CONTROL,
            "max-age=999999".parse().unwrap(),
        );
        assert_eq!(keep_for(&headers), MAX_KEEP);
        headers.insert(reqwest::header::CACHE_CONTROL, "no-store".parse().unwrap());
        assert_eq!(keep_for(&headers), Duration::ZERO);
    }
}
