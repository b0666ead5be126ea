//! The hub as an OAuth 2.1 authorization server, through the gateway, on every engine: a
//! GPT-Action-shaped confidential client (no PKCE; `client_secret_post`, then
//! `client_secret_basic`) that checks and deducts with only `Authorization: Bearer`, remembered
//! consent, refresh rotation with reuse detection, and a disconnected grant whose tokens stop at
//! once. `OAuthBrowser` walks a person through sign-in and consent as a browser would.

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

#[tokio::test]
async fn a_gpt_action_connects_with_a_confidential_client_and_spends_with_its_bearer_token() {
    for engine in engines() {
        gpt_action_flow(engine).await;
    }
}

async fn gpt_action_flow(engine: Engine) {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(engine, &google).start().await;
    let (client_id, secret) =
        operator_client(&hub, GPT_CALLBACK, true, &["credits:read", "credits:spend"]).await;
    let secret = secret.expect("a confidential client's secret");
    let person = OAuthBrowser::new(&hub);
    let query = format!(
        "response_type=code&client_id={client_id}&redirect_uri={}&state=st-1&scope=credits%3Aread%20credits%3Aspend",
        urlencode(GPT_CALLBACK)
    );
    let back = person.authorize(&query, None).await;
    assert!(back.location.starts_with(GPT_CALLBACK), "{back:?}");
    assert_eq!(back.query["state"], "st-1");
    assert_eq!(back.query["iss"], hub.gateway_url);
    let code = back.query["code"].clone();
    assert!(code.len() >= 32, "at least 128 random bits");

    // Token exchange "Default (POST request)": the secret in the body.
    let (status, tokens) = token(
        &hub,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", GPT_CALLBACK),
            ("client_id", &client_id),
            ("client_secret", &secret),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], "credits:read credits:spend");
    assert!(tokens["expires_in"].as_i64().unwrap() > 0);
    let access = tokens["access_token"].as_str().unwrap().to_owned();

    // Check and deduct with nothing but the bearer token.
    let check = with_bearer(
        &hub,
        Method::POST,
        "/api/mcp/v1/credits/check",
        &access,
        Some(&json!({"service": "sora2-video-generation", "cost": 1})),
    )
    .await;
    assert_eq!(check.status, StatusCode::OK, "{:?}", check.json);
    let before = check.json["balance"].as_i64().unwrap();
    let deduct = with_bearer(
        &hub,
        Method::POST,
        "/api/mcp/v1/credits/deduct",
        &access,
        Some(&json!({"service": "sora2-video-generation", "cost": 3})),
    )
    .await;
    assert_eq!(deduct.status, StatusCode::OK, "{:?}", deduct.json);
    assert_eq!(
        deduct.json["new_balance"].as_i64(),
        Some(before - 3),
        "{:?}",
        deduct.json
    );

    // An app's token never opens a refund, nor the admin API.
    let refund = with_bearer(
        &hub,
        Method::POST,
        "/api/mcp/v1/credits/refund",
        &access,
        Some(&json!({"transaction_id": "txn_x"})),
    )
    .await;
    assert_eq!(refund.status, StatusCode::FORBIDDEN);

    // Consent is remembered: the next authorization goes straight back with a code, which the
    // "Basic authorization header" exchange redeems.
    let again = person.authorize(&query, None).await;
    let (status, second) = token(
        &hub,
        &[
            ("grant_type", "authorization_code"),
            ("code", &again.query["code"]),
            ("redirect_uri", GPT_CALLBACK),
        ],
        Some((&client_id, &secret)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{second}");

    // A wrong secret is invalid_client, 401.
    let (status, refused) = token(
        &hub,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", second["refresh_token"].as_str().unwrap()),
        ],
        Some((&client_id, "hub_cs_wrong")),
    )
    .await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );

    // Refresh rotates; the spent refresh token presented again revokes its family.
    let first_refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let refresh = |token: String| {
        let (hub, client_id, secret) = (&hub, client_id.clone(), secret.clone());
        async move {
            self::token(
                hub,
                &[("grant_type", "refresh_token"), ("refresh_token", &token)],
                Some((&client_id, &secret)),
            )
            .await
        }
    };
    let (status, rotated) = refresh(first_refresh.clone()).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let (status, reused) = refresh(first_refresh).await;
    assert_eq!(
        (status, reused["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (status, _) = refresh(rotated["refresh_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the family is revoked");

    // The user disconnects the app (with their own session code): its tokens stop at once.
    let (session_code, _) = hub.signed_in_user().await;
    let apps = hub
        .call(
            Method::GET,
            "/api/auth/grants",
            &[("x-session-token", &session_code)],
            None,
        )
        .await;
    assert_eq!(apps.status, StatusCode::OK, "{:?}", apps.json);
    let app = &apps.json["apps"][0];
    assert_eq!(app["client_id"], client_id.as_str());
    assert_eq!(app["name"], "Sora2 Video Generator");
    assert_eq!(app["scopes"], json!(["credits:read", "credits:spend"]));
    assert!(app["last_used_at"].is_string());
    let grant = app["id"].as_str().unwrap();
    let gone = hub
        .call(
            Method::DELETE,
            &format!("/api/auth/grants/{grant}"),
            &[("x-session-token", &session_code)],
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let after = with_bearer(
        &hub,
        Method::POST,
        "/api/mcp/v1/credits/check",
        &access,
        Some(&json!({"service": "sora2-video-generation", "cost": 1})),
    )
    .await;
    assert_eq!(
        after.status,
        StatusCode::UNAUTHORIZED,
        "{engine:?}: a disconnected app's token stops"
    );
    let (status, _) = token(
        &hub,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", second["refresh_token"].as_str().unwrap()),
        ],
        Some((&client_id, &secret)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "and its refresh tokens");
}

pub(crate) fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn an_apps_daily_cap_refuses_with_its_own_code() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        let (client_id, secret) =
            operator_client(&hub, GPT_CALLBACK, true, &["credits:read", "credits:spend"]).await;
        let secret = secret.unwrap();
        let person = OAuthBrowser::new(&hub);
        let query = format!(
            "response_type=code&client_id={client_id}&redirect_uri={}&state=cap",
            urlencode(GPT_CALLBACK)
        );
        let back = person.authorize(&query, Some(4)).await;
        let (status, tokens) = token(
            &hub,
            &[
                ("grant_type", "authorization_code"),
                ("code", &back.query["code"]),
            ],
            Some((&client_id, &secret)),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        let access = tokens["access_token"].as_str().unwrap();
        let hub = &hub;
        let deduct = |cost: i64| {
            let body = json!({"service": "sora2-video-generation", "cost": cost});
            async move {
                with_bearer(
                    hub,
                    Method::POST,
                    "/api/mcp/v1/credits/deduct",
                    access,
                    Some(&body),
                )
                .await
            }
        };
        assert_eq!(deduct(3).await.status, StatusCode::OK);
        let refused = deduct(2).await;
        assert_eq!(refused.status, StatusCode::PAYMENT_REQUIRED, "{engine:?}");
        assert_eq!(refused.json["error"]["code"], "app_spending_cap");
        assert_eq!(refused.json["daily_cap"], 4);
        assert_eq!(refused.json["spent_today"], 3);
        assert_eq!(
            deduct(1).await.status,
            StatusCode::OK,
            "what is left of the cap"
        );
        let (session_code, _) = hub.signed_in_user().await;
        let apps = hub
            .call(
                Method::GET,
                "/api/auth/grants",
                &[("x-session-token", &session_code)],
                None,
            )
            .await;
        assert_eq!(apps.json["apps"][0]["daily_cap"], 4);
    }
}
