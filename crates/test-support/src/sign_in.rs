//! Signing a browser in with the fake Google, straight at the auth service or through the gateway.

use reqwest::{Method, StatusCode};

use crate::clients::{Reply, browser, read};
use crate::hub::SpawnedHub;
use crate::services::SpawnedAuth;

/// What a sign-in ended with.
#[derive(Debug)]
pub struct SignIn {
    /// The last page's status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: reqwest::header::HeaderMap,
    /// Its HTML.
    pub page: String,
    /// The callback URL the provider sent the browser to (with code and state).
    pub callback: Option<String>,
}

impl SignIn {
    /// The `VERIFIED-…` code on the page, if there is one.
    pub fn code(&self) -> Option<String> {
        let start = self.page.find("VERIFIED-")?;
        let code: String = self.page[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        Some(code)
    }
}

/// Walks a browser through `GET {base_url}/auth/google?{query}`, the provider, and the callback.
pub async fn sign_in_at(base_url: &str, browser: &reqwest::Client, query: &str) -> SignIn {
    let start = browser
        .get(format!("{base_url}/auth/google?{query}"))
        .send()
        .await
        .expect("start sign-in");
    if start.status() != StatusCode::FOUND {
        return finish(start, None).await;
    }
    let to_provider = location(&start);
    let at_provider = browser
        .get(&to_provider)
        .send()
        .await
        .expect("reach the provider");
    assert_eq!(
        at_provider.status(),
        StatusCode::SEE_OTHER,
        "the provider redirects back"
    );
    let callback = location(&at_provider);
    let back = browser.get(&callback).send().await.expect("callback");
    finish(back, Some(callback)).await
}

impl SpawnedAuth {
    /// Walks a browser through `GET /auth/google?{query}`, the provider, and the callback.
    pub async fn sign_in(&self, browser: &reqwest::Client, query: &str) -> SignIn {
        sign_in_at(&self.base_url, browser, query).await
    }

    /// The sign-in's start only: the provider URL it redirects to.
    pub async fn start_sign_in(&self, browser: &reqwest::Client, query: &str) -> String {
        let start = browser
            .get(format!("{}/auth/google?{query}", self.base_url))
            .send()
            .await
            .expect("start sign-in");
        assert_eq!(start.status(), StatusCode::FOUND);
        location(&start)
    }

    /// `GET /api/auth/verify-session` with the code in `X-Session-Token`.
    pub async fn verify(&self, code: &str) -> Reply {
        let response = self
            .http
            .get(format!("{}/api/auth/verify-session", self.base_url))
            .header("x-session-token", code)
            .send()
            .await
            .expect("verify-session");
        read(response).await
    }

    /// A request with the session code as `X-Session-Token`.
    pub async fn with_code(&self, method: Method, path: &str, code: &str) -> Reply {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .header("x-session-token", code)
            .send()
            .await
            .expect("request reaches auth");
        read(response).await
    }
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .expect("a Location header")
        .to_owned()
}

async fn finish(response: reqwest::Response, callback: Option<String>) -> SignIn {
    let status = response.status();
    let headers = response.headers().clone();
    let page = response.text().await.unwrap_or_default();
    SignIn {
        status,
        headers,
        page,
        callback,
    }
}

/// The password [`SpawnedHub::operator`] gives its users.
pub const OPERATOR_PASSWORD: &str = "a long enough password";

impl SpawnedHub {
    /// A user signed in with the fake Google through the gateway, verified: their code and id.
    pub async fn signed_in_user(&self) -> (String, String) {
        let page = self
            .sign_in(&browser(), "session=conv-9&return_to=chatgpt")
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.page);
        let code = page.code().expect("a code on the success page");
        let r = self
            .call(
                Method::GET,
                "/api/auth/verify-session",
                &[("x-session-token", &code)],
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
        let id = r.json["user"]["id"].as_str().expect("user id").to_owned();
        (code, id)
    }

    /// A user with `role` and the password [`OPERATOR_PASSWORD`], signed in with it through
    /// the gateway: their id, e-mail address and access token.
    pub async fn operator(&self, role: hub_core::users::Role) -> (uuid::Uuid, String, String) {
        let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
        let new = hub_core::users::NewUser::new(&email, "Operator", 0, role).expect("user");
        let id = self
            .store
            .create_user(&new)
            .await
            .expect("store")
            .expect("new address")
            .user
            .id;
        let hash = hub_auth::passwords::hash(OPERATOR_PASSWORD.into())
            .await
            .expect("hash");
        assert!(
            self.store
                .set_password_hash(id, &hash)
                .await
                .expect("store")
        );
        let login = self
            .call(
                Method::POST,
                "/api/auth/login",
                &[],
                Some(&serde_json::json!({ "email": email, "password": OPERATOR_PASSWORD })),
            )
            .await;
        assert_eq!(login.status, StatusCode::OK, "{:?}", login.json);
        let token = login.json["access_token"]
            .as_str()
            .expect("token")
            .to_owned();
        (id, email, token)
    }

    /// Signs a browser in with Google through the gateway.
    pub async fn sign_in(&self, browser: &reqwest::Client, query: &str) -> SignIn {
        sign_in_at(&self.gateway_url, browser, query).await
    }
}
