//! The hub as an OAuth 2.1 authorization server, through the gateway, on every engine: a
//! GPT-Action-shaped confidential client (no PKCE; `client_secret_post`, then
//! `client_secret_basic`) that checks and deducts with only `Authorization: Bearer`, remembered
//! consent, refresh rotation with reuse detection, and a disconnected grant whose tokens stop at
//! once. `OAuthBrowser` walks a person through sign-in and consent as a browser would.

mod daily_cap;
mod gpt_action;

use hub_ledger::oauth::{Registration, new_client};
use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{Engine, SpawnedHub, browser, engines};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub(crate) const GPT_CALLBACK: &str = "https://chat.openai.com/aip/g-0123456789/oauth/callback";

/// A browser (cookies kept, redirects looked at, not followed) at a hub's authorization server.
pub(crate) struct OAuthBrowser<'a> {
    pub hub: &'a SpawnedHub,
    pub client: reqwest::Client,
}

/// Where the authorization ended: the app's redirect URI with its query.
#[derive(Debug)]
pub(crate) struct Redirected {
    pub location: String,
    pub query: std::collections::HashMap<String, String>,
}

pub(crate) fn html_unescape(text: &str) -> String {
    text.replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&amp;", "&")
        .replace("&#38;", "&")
}

/// The value of the attribute `attribute` of the first tag that contains `marker`.
pub(crate) fn attribute(page: &str, marker: &str, attribute: &str) -> Option<String> {
    let at = page.find(marker)?;
    let tag_start = page[..at].rfind('<')?;
    let tag_end = at + page[at..].find('>')?;
    let tag = &page[tag_start..tag_end];
    let start = tag.find(&format!("{attribute}=\""))? + attribute.len() + 2;
    let end = start + tag[start..].find('"')?;
    Some(html_unescape(&tag[start..end]))
}

impl<'a> OAuthBrowser<'a> {
    pub(crate) fn new(hub: &'a SpawnedHub) -> Self {
        Self {
            hub,
            client: browser(),
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.hub.gateway_url)
        }
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header("accept-language", "en")
            .send()
            .await
            .expect("the gateway answers")
    }

    /// Signs in with Google from the sign-in page the authorization request showed, and comes back
    /// to the request signed in: the page it then shows.
    pub(crate) async fn sign_in_with_google(&self, sign_in_page: &str) -> reqwest::Response {
        let start = attribute(sign_in_page, "id=\"google\"", "href").expect("a Google link");
        assert!(start.starts_with("/auth/google?"), "{start}");
        let to_google = self.get(&start).await;
        assert_eq!(to_google.status(), StatusCode::FOUND);
        let at_google = self.get(&location(&to_google)).await;
        assert_eq!(at_google.status(), StatusCode::SEE_OTHER);
        let callback = self.get(&location(&at_google)).await;
        assert_eq!(
            callback.status(),
            StatusCode::SEE_OTHER,
            "back to the request"
        );
        let back = location(&callback);
        assert!(back.starts_with("/oauth/authorize?"), "{back}");
        self.get(&back).await
    }

    /// The consent page's form, answered with `decision` (and a daily cap, if given).
    pub(crate) async fn decide(
        &self,
        consent_page: &str,
        decision: &str,
        daily_cap: Option<i64>,
    ) -> reqwest::Response {
        let csrf = attribute(consent_page, "name=\"csrf_token\"", "value").expect("a CSRF token");
        let cap = daily_cap.map(|c| c.to_string()).unwrap_or_default();
        self.client
            .post(self.url("/oauth/authorize"))
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("decision", decision),
                ("daily_cap", cap.as_str()),
            ])
            .send()
            .await
            .expect("the consent form posts")
    }

    /// Authorizes `query` end to end: sign in (with Google, if the browser is not yet signed
    /// in), consent if asked, and the redirect back to the app.
    pub(crate) async fn authorize(&self, query: &str, daily_cap: Option<i64>) -> Redirected {
        self.authorize_at(&format!("/oauth/authorize?{query}"), daily_cap)
            .await
    }

    /// As [`OAuthBrowser::authorize`], from an authorization URL a client library made.
    pub(crate) async fn authorize_at(&self, url: &str, daily_cap: Option<i64>) -> Redirected {
        let mut page = self.get(url).await;
        for _ in 0..2 {
            if page.status() != StatusCode::OK {
                break;
            }
            let text = page.text().await.unwrap();
            page = if text.contains("action=\"/oauth/sign-in\"") {
                self.sign_in_with_google(&text).await
            } else {
                assert!(text.contains("name=\"decision\""), "a consent page: {text}");
                self.decide(&text, "allow", daily_cap).await
            };
        }
        assert_eq!(
            page.status(),
            StatusCode::SEE_OTHER,
            "a redirect to the app"
        );
        redirected(&page)
    }
}

pub(crate) fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .expect("a Location")
        .to_owned()
}

pub(crate) fn redirected(response: &reqwest::Response) -> Redirected {
    let location = location(response);
    let url = reqwest::Url::parse(&location).expect("an absolute redirect");
    Redirected {
        query: url.query_pairs().into_owned().collect(),
        location,
    }
}

/// A client the operator registered, as `hub oauth-client create` makes it: its id and secret.
pub(crate) async fn operator_client(
    hub: &SpawnedHub,
    redirect_uri: &str,
    confidential: bool,
    scopes: &[&str],
) -> (String, Option<String>) {
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    let client = new_client(
        "Sora2 Video Generator",
        &[redirect_uri.to_owned()],
        confidential,
        &scopes,
        Registration::Operator,
    )
    .unwrap();
    hub.store.insert_oauth_client(&client).await.unwrap();
    (client.record.id, client.secret)
}

/// `POST /oauth/token` with a form, and Basic credentials if given.
pub(crate) async fn token(
    hub: &SpawnedHub,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (StatusCode, Value) {
    let mut request = hub
        .http
        .post(format!("{}/oauth/token", hub.gateway_url))
        .form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    (status, response.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn with_bearer(
    hub: &SpawnedHub,
    method: Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> hub_test_support::Reply {
    let bearer = format!("Bearer {token}");
    hub.call(method, path, &[("authorization", &bearer)], body)
        .await
}

pub(crate) fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
