//! The end user's account page, `/account`, through the gateway on every engine: signing in with
//! the hub's own sign-in and coming back, balance, history with filters, the usage chart, signing
//! sessions out with the page's CSRF token (and the refusals without it), connected apps, Thai.
//! `Person` is a browser at the page (cookies kept, redirects looked at, not followed).

mod alerts;
mod journey;
mod promotions;
mod purchases;
mod refusals;

use hub_test_support::fake_google::FakeAccount;
use hub_test_support::{SpawnedHub, browser};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::oauth_flow::{attribute, location};

/// A browser at a hub's account page.
pub(crate) struct Person<'a> {
    pub hub: &'a SpawnedHub,
    pub client: reqwest::Client,
    pub lang: &'static str,
}

impl<'a> Person<'a> {
    pub(crate) fn new(hub: &'a SpawnedHub) -> Self {
        Self {
            hub,
            client: browser(),
            lang: "en",
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
            .header("accept-language", self.lang)
            .send()
            .await
            .expect("the gateway answers")
    }

    /// The page's text, which must be a 200.
    pub(crate) async fn page(&self, path: &str) -> String {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    }

    /// Signs in with Google from the sign-in page `/account` showed, and comes back to it.
    pub(crate) async fn sign_in_with_google(&self) -> String {
        let sign_in = self.page("/account").await;
        assert!(sign_in.contains("action=\"/oauth/sign-in\""), "{sign_in}");
        let start = attribute(&sign_in, "id=\"google\"", "href").expect("a Google link");
        assert!(start.contains("continue=%2Faccount"), "{start}");
        let to_google = self.get(&start).await;
        assert_eq!(to_google.status(), StatusCode::FOUND);
        let at_google = self.get(&location(&to_google)).await;
        assert_eq!(at_google.status(), StatusCode::SEE_OTHER);
        let callback = self.get(&location(&at_google)).await;
        assert_eq!(callback.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&callback), "/account", "back to the account page");
        let cookie = callback
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with("hub_browser="))
            .expect("the browser's sign-in cookie")
            .to_owned();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
            "{cookie}"
        );
        self.page("/account").await
    }

    /// Posts a form of the page.
    pub(crate) async fn post(&self, action: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(self.url(action))
            .header("accept-language", self.lang)
            .form(form)
            .send()
            .await
            .expect("the form posts")
    }
}

/// The page's CSRF token.
pub(crate) fn csrf(page: &str) -> String {
    attribute(page, "name=\"csrf_token\"", "value").expect("a CSRF token on the page")
}

/// How many times `needle` is on the page.
pub(crate) fn count(page: &str, needle: &str) -> usize {
    page.matches(needle).count()
}

/// The fake Google signs in `email` next.
pub(crate) fn google_account(email: &str, name: &str) -> FakeAccount {
    FakeAccount {
        subject: format!("sub-{email}"),
        email: email.to_owned(),
        email_verified: true,
        name: name.to_owned(),
    }
}

/// The id of the session behind `code`, from the sessions API.
pub(crate) async fn session_id_of(hub: &SpawnedHub, code: &str) -> String {
    let r = hub
        .call(
            Method::GET,
            "/api/auth/sessions",
            &[("x-session-token", code)],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    r.json["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .and_then(|s| s["id"].as_str())
        .expect("the code's session")
        .to_owned()
}

/// Whether `code` still works at verify-session: its status there.
pub(crate) async fn verify(hub: &SpawnedHub, code: &str) -> StatusCode {
    hub.call(
        Method::GET,
        "/api/auth/verify-session",
        &[("x-session-token", code)],
        None,
    )
    .await
    .status
}

/// Spends `cost` on `service` for `user` as a GPT with a service key does.
pub(crate) async fn spend(hub: &SpawnedHub, key: &str, user: &str, service: &str, cost: i64) {
    let bearer = format!("Bearer {key}");
    let r = hub
        .call(
            Method::POST,
            "/api/mcp/v1/credits/deduct",
            &[("authorization", bearer.as_str()), ("x-user-id", user)],
            Some(&json!({ "service": service, "cost": cost, "metadata": {} })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
}
