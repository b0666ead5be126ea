//! Email and password accounts, JWT access tokens and rotating refresh tokens, through HTTP.

use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{SessionBackend, SpawnedAuth, browser, session_backends, spawn_auth};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn post(
    auth: &SpawnedAuth,
    path: &str,
    body: Value,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let r = auth
        .http
        .post(format!("{}{path}", auth.base_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

async fn me(auth: &SpawnedAuth, access: &str) -> (StatusCode, Value) {
    let r = auth
        .http
        .get(format!("{}/api/auth/me", auth.base_url))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

fn register_body(email: &str) -> Value {
    json!({ "email": email, "password": "correct horse battery", "name": "Malee" })
}

#[tokio::test]
async fn register_login_and_me() {
    for backend in session_backends() {
        let auth = spawn_auth(backend, None).await;
        let (status, _, tokens) = post(
            &auth,
            "/api/auth/register",
            register_body("Malee@Example.com"),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{backend:?} {tokens}");
        assert_eq!(tokens["token_type"], "Bearer");
        assert_eq!(tokens["expires_in"], 900);
        assert_eq!(tokens["user"]["email"], "malee@example.com");
        assert!(
            tokens["refresh_token"]
                .as_str()
                .unwrap()
                .starts_with("hub_rt_")
        );

        let (status, _, again) = post(
            &auth,
            "/api/auth/register",
            register_body("malee@example.com"),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(again["error"]["code"], "email_taken");

        let (status, _, login) = post(
            &auth,
            "/api/auth/login",
            json!({ "email": "MALEE@example.com", "password": "correct horse battery" }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{login}");
        let access = login["access_token"].as_str().unwrap();
        let (status, body) = me(&auth, access).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["user"]["email"], "malee@example.com");
        assert_eq!(body["user"]["roles"], json!(["user"]));

        // The token's kid is in the JWKS, and the token passes for no one after 15 minutes.
        let jwks: Value = auth
            .http
            .get(format!("{}/.well-known/jwks.json", auth.base_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let header: Value = {
            use base64::Engine;
            let part = access.split('.').next().unwrap();
            serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(part)
                    .unwrap(),
            )
            .unwrap()
        };
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
        auth.clock.advance(chrono::Duration::minutes(15));
        assert_eq!(me(&auth, access).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(me(&auth, "not.a.token").await.0, StatusCode::UNAUTHORIZED);
        let user_id = tokens["user"]["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            auth.users.balance(user_id).await.unwrap(),
            Some(0),
            "no credits for an address nobody verified"
        );
    }
}

#[tokio::test]
async fn bad_registrations_are_422() {
    let auth = spawn_auth(SessionBackend::Sqlite, None).await;
    for (body, code) in [
        (
            json!({ "email": "a@example.com", "password": "short", "name": "A" }),
            "invalid_password",
        ),
        (
            json!({ "email": "a@example.com", "password": "x".repeat(129), "name": "A" }),
            "invalid_password",
        ),
        (
            json!({ "email": "not-an-email", "password": "long enough", "name": "A" }),
            "invalid_email",
        ),
        (
            json!({ "email": "a@example.com", "password": "long enough", "name": "" }),
            "invalid_name",
        ),
    ] {
        let (status, _, reply) = post(&auth, "/api/auth/register", body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(reply["error"]["code"], code);
    }
}

#[tokio::test]
async fn a_google_account_email_is_taken_without_saying_so() {
    let google = FakeGoogle::start().await;
    let auth = spawn_auth(SessionBackend::Sqlite, Some(&google)).await;
    assert_eq!(
        auth.sign_in(&browser(), "session=s1").await.status,
        StatusCode::OK
    );
    let (status, _, body) = post(
        &auth,
        "/api/auth/register",
        register_body("somchai@example.com"),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body["error"]["message"],
        "An account with this email exists."
    );
    let (status, _, body) = post(
        &auth,
        "/api/auth/login",
        json!({ "email": "somchai@example.com", "password": "anything long" }),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a Google-only account has no password"
    );
    assert_eq!(body["error"]["code"], "invalid_credentials");
}

#[tokio::test]
async fn failed_logins_are_throttled_alike_for_real_and_unknown_accounts() {
    for backend in session_backends() {
        let auth = spawn_auth(backend, None).await;
        post(
            &auth,
            "/api/auth/register",
            register_body("real@example.com"),
        )
        .await;
        let wrong = json!({ "email": "real@example.com", "password": "wrong password" });
        let (_, _, first) = post(&auth, "/api/auth/login", wrong.clone()).await;
        let (_, _, unknown) = post(
            &auth,
            "/api/auth/login",
            json!({ "email": "ghost@example.com", "password": "wrong password" }),
        )
        .await;
        assert_eq!(
            first["error"]["code"], unknown["error"]["code"],
            "{backend:?}"
        );
        assert_eq!(first["error"]["message"], unknown["error"]["message"]);
        for _ in 0..4 {
            assert_eq!(
                post(&auth, "/api/auth/login", wrong.clone()).await.0,
                StatusCode::UNAUTHORIZED
            );
        }
        // Five failures on the account from this address: this address is now throttled on it,
        // even with the right password (the owner's own address is not: see mail_links/limits.rs).
        let right = json!({ "email": "real@example.com", "password": "correct horse battery" });
        let (status, headers, body) = post(&auth, "/api/auth/login", right.clone()).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(body["error"]["code"], "too_many_attempts");
        let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=900).contains(&retry), "{retry}");
        // An unknown account is throttled alike after as many failures.
        let ghost = json!({ "email": "ghost@example.com", "password": "x" });
        for _ in 0..4 {
            assert_eq!(
                post(&auth, "/api/auth/login", ghost.clone()).await.0,
                StatusCode::UNAUTHORIZED
            );
        }
        let (status, _, ghost_body) = post(&auth, "/api/auth/login", ghost).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(ghost_body["error"]["code"], body["error"]["code"]);
    }
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_its_family() {
    for backend in session_backends() {
        let auth = spawn_auth(backend, None).await;
        let (_, _, first) = post(
            &auth,
            "/api/auth/register",
            register_body("rotate@example.com"),
        )
        .await;
        let r1 = first["refresh_token"].as_str().unwrap().to_owned();

        let (status, _, second) =
            post(&auth, "/api/auth/refresh", json!({ "refresh_token": r1 })).await;
        assert_eq!(status, StatusCode::OK, "{backend:?} {second}");
        let r2 = second["refresh_token"].as_str().unwrap().to_owned();
        assert_ne!(r1, r2, "rotated");
        assert_eq!(
            me(&auth, second["access_token"].as_str().unwrap()).await.0,
            StatusCode::OK
        );

        // r1 again: stolen or replayed. It fails, and so does r2, its family's live token.
        let (status, _, body) =
            post(&auth, "/api/auth/refresh", json!({ "refresh_token": r1 })).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"]["code"], "invalid_refresh_token");
        assert_eq!(
            post(&auth, "/api/auth/refresh", json!({ "refresh_token": r2 }))
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );

        // Logout revokes a family too; other families are untouched.
        let login = json!({ "email": "rotate@example.com", "password": "correct horse battery" });
        let (_, _, a) = post(&auth, "/api/auth/login", login.clone()).await;
        let (_, _, b) = post(&auth, "/api/auth/login", login).await;
        post(
            &auth,
            "/api/auth/logout",
            json!({ "refresh_token": a["refresh_token"] }),
        )
        .await;
        assert_eq!(
            post(
                &auth,
                "/api/auth/refresh",
                json!({ "refresh_token": a["refresh_token"] })
            )
            .await
            .0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            post(
                &auth,
                "/api/auth/refresh",
                json!({ "refresh_token": b["refresh_token"] })
            )
            .await
            .0,
            StatusCode::OK
        );
        assert_eq!(
            post(
                &auth,
                "/api/auth/refresh",
                json!({ "refresh_token": "hub_rt_nonsense" })
            )
            .await
            .0,
            StatusCode::UNAUTHORIZED
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guesses_sent_all_at_once_get_five_tries_only() {
    let auth = spawn_auth(SessionBackend::Sqlite, None).await;
    post(
        &auth,
        "/api/auth/register",
        register_body("target@example.com"),
    )
    .await;
    let guesses = (0..40).map(|i| {
        let body =
            json!({ "email": "target@example.com", "password": format!("guess number {i}") });
        let http = auth.http.clone();
        let url = format!("{}/api/auth/login", auth.base_url);
        tokio::spawn(async move { http.post(url).json(&body).send().await.unwrap().status() })
    });
    let statuses: Vec<StatusCode> = futures_util::future::join_all(guesses)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let tried = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((tried, refused), (5, 35), "{statuses:?}");
}

#[tokio::test]
async fn text_no_account_can_have_is_a_clean_answer() {
    let auth = spawn_auth(SessionBackend::Sqlite, None).await;
    let (status, _, _) = post(
        &auth,
        "/api/auth/login",
        json!({ "email": "a\u{0}b@example.com", "password": "whatever it is" }),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = post(
        &auth,
        "/api/auth/register",
        json!({ "email": "nul@example.com", "password": "long enough", "name": "a\u{0}b" }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}
