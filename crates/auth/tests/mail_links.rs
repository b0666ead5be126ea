//! The links sent by mail, through a real SMTP server (aiosmtpd in a child process) and through
//! the outbox: verifying an address (and its credits, once), resetting a password (and signing
//! out everywhere), and asking for a reset without learning who has an account.

use std::net::IpAddr;

use hub_test_support::fake_google::{FakeAccount, FakeGoogle};
use hub_test_support::smtp::{SmtpServer, token_in};
use hub_test_support::{
    SessionBackend, SpawnedAuth, browser, session_backends, spawn_auth, spawn_auth_configured,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

const VERIFY: &str = "/api/auth/email/verify";
const FORGOT: &str = "/api/auth/password/forgot";
const RESET: &str = "/api/auth/password/reset";
const PASSWORD: &str = "correct horse battery";

async fn post(auth: &SpawnedAuth, path: &str, body: Value) -> (StatusCode, Value) {
    post_from(auth, "203.0.113.1", path, body).await
}

/// A request as the gateway forwards it for a client at `client` (the test is a trusted proxy).
async fn post_from(
    auth: &SpawnedAuth,
    client: &str,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let r = auth
        .http
        .post(format!("{}{path}", auth.base_url))
        .header("x-forwarded-for", client)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn with_smtp(backend: SessionBackend, smtp: &SmtpServer) -> SpawnedAuth {
    let url = smtp.url.clone();
    spawn_auth_configured(backend, None, move |config| {
        config.mail.smtp_url = Some(url.into());
        config.mail.from = "Hub Test <hub@example.org>".into();
        config.public_base_url = "https://hub.example".into();
    })
    .await
}

async fn register(auth: &SpawnedAuth, email: &str) -> (Uuid, Value) {
    let (status, tokens) = post(
        auth,
        "/api/auth/register",
        json!({ "email": email, "password": PASSWORD, "name": "Malee" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{tokens}");
    let id = tokens["user"]["id"].as_str().unwrap().parse().unwrap();
    (id, tokens)
}

async fn login(auth: &SpawnedAuth, email: &str, password: &str) -> (StatusCode, Value) {
    post(
        auth,
        "/api/auth/login",
        json!({ "email": email, "password": password }),
    )
    .await
}

#[tokio::test]
async fn asking_for_a_reset_tells_nothing_about_who_has_an_account() {
    let smtp = SmtpServer::start();
    let auth = with_smtp(SessionBackend::Sqlite, &smtp).await;
    register(&auth, "known@example.com").await;
    smtp.wait_for("known@example.com", 1).await;

    let (known_status, known) = post(&auth, FORGOT, json!({ "email": "Known@Example.com" })).await;
    let (unknown_status, unknown) =
        post(&auth, FORGOT, json!({ "email": "nobody@example.com" })).await;
    assert_eq!(known_status, StatusCode::ACCEPTED, "{known}");
    assert_eq!(unknown_status, StatusCode::ACCEPTED, "{unknown}");
    assert_eq!(known, unknown, "the same body either way");
    assert_eq!(known["status"], "accepted");

    // Only the real account gets mail; the unknown address gets none.
    let mails = smtp.wait_for("known@example.com", 2).await;
    assert_eq!(mails[1].subject, "Reset your password");
    assert!(
        smtp.mails().iter().all(|m| m.to != ["nobody@example.com"]),
        "no mail to an address without an account"
    );

    // Past 3 mails an hour for one address, the answer stays the same and no more mail goes.
    for _ in 0..4 {
        let (status, again) = post(&auth, FORGOT, json!({ "email": "known@example.com" })).await;
        assert_eq!((status, &again), (StatusCode::ACCEPTED, &known));
    }
    let resets = smtp.wait_for("known@example.com", 4).await;
    let (status, _) = post(&auth, FORGOT, json!({ "email": "nobody@example.com" })).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(resets.len(), 4, "1 verification + 3 resets: {resets:?}");

    // Not an address at all: 422, alike for everyone.
    let (status, body) = post(&auth, FORGOT, json!({ "email": "not an address" })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_email");
}

#[tokio::test]
async fn one_client_address_is_limited_to_20_reset_requests_an_hour() {
    let auth = spawn_auth(SessionBackend::Sqlite, None).await;
    for i in 0..20 {
        let (status, _) = post_from(
            &auth,
            "198.51.100.9",
            FORGOT,
            json!({ "email": format!("n{i}@example.com") }),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let (status, body) = post_from(
        &auth,
        "198.51.100.9",
        FORGOT,
        json!({ "email": "n21@example.com" }),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let (status, _) = post_from(
        &auth,
        "198.51.100.10",
        FORGOT,
        json!({ "email": "n21@example.com" }),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "another client is not affected"
    );
}

#[tokio::test]
async fn registration_mails_a_link_that_verifies_the_address_and_grants_credits_once() {
    for backend in session_backends() {
        let smtp = SmtpServer::start();
        let auth = with_smtp(backend, &smtp).await;
        let (id, _) = register(&auth, "Malee@Example.com").await;
        assert_eq!(auth.users.balance(id).await.unwrap(), Some(0));
        assert_eq!(auth.users.email_verified(id).await.unwrap(), Some(false));

        let mail = smtp.wait_for("malee@example.com", 1).await.remove(0);
        assert_eq!(mail.subject, "Verify your email address", "{backend:?}");
        assert_eq!(mail.from, "hub@example.org");
        assert!(
            mail.from_header.contains("Hub Test"),
            "{}",
            mail.from_header
        );
        assert!(
            mail.body
                .contains("https://hub.example/auth/verify-email?token="),
            "{}",
            mail.body
        );
        let token = mail.token_for("/auth/verify-email");
        assert_eq!(token.len(), 43);

        // Unverified, the account signs in all the same.
        assert_eq!(
            login(&auth, "malee@example.com", PASSWORD).await.0,
            StatusCode::OK
        );

        // Opening the link shows a button; it does not spend the token (mail scanners open links).
        let page = auth
            .http
            .get(format!("{}/auth/verify-email?token={token}", auth.base_url))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let csp = page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("form-action 'self'"), "{csp}");
        let html = page.text().await.unwrap();
        assert!(html.contains("action=\"/auth/verify-email\""), "{html}");
        assert!(html.contains(&token));
        assert_eq!(auth.users.balance(id).await.unwrap(), Some(0));

        let (status, body) = post(&auth, VERIFY, json!({ "token": token })).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, json!({ "status": "verified", "credits_granted": 10 }));
        assert_eq!(auth.users.balance(id).await.unwrap(), Some(10));
        assert_eq!(auth.users.email_verified(id).await.unwrap(), Some(true));

        let (status, body) = post(&auth, VERIFY, json!({ "token": token })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "single use: {body}");
        assert_eq!(body["error"]["code"], "invalid_link");
        let (status, _) = post(&auth, VERIFY, json!({ "token": "x".repeat(43) })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            auth.users.balance(id).await.unwrap(),
            Some(10),
            "granted once"
        );
    }
}

#[tokio::test]
async fn concurrent_verifications_grant_once_and_links_expire_after_24_hours() {
    let smtp = SmtpServer::start();
    let auth = with_smtp(SessionBackend::Sqlite, &smtp).await;
    let (id, _) = register(&auth, "race@example.com").await;
    let token = smtp.wait_for("race@example.com", 1).await[0].token_for("/auth/verify-email");
    let calls = (0..10).map(|_| post(&auth, VERIFY, json!({ "token": token })));
    let statuses: Vec<StatusCode> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|(status, _)| status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::BAD_REQUEST)
    );
    assert_eq!(auth.users.balance(id).await.unwrap(), Some(10));

    let (late, _) = register(&auth, "late@example.com").await;
    let token = smtp.wait_for("late@example.com", 1).await[0].token_for("/auth/verify-email");
    auth.clock.advance(chrono::Duration::hours(24));
    let (status, body) = post(&auth, VERIFY, json!({ "token": token })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "expired: {body}");
    assert_eq!(auth.users.balance(late).await.unwrap(), Some(0));
    assert_eq!(auth.users.email_verified(late).await.unwrap(), Some(false));
}

#[tokio::test]
async fn google_and_the_mailed_link_never_grant_twice() {
    let google = FakeGoogle::start().await;
    let smtp = SmtpServer::start();
    let url = smtp.url.clone();
    let auth = spawn_auth_configured(SessionBackend::Sqlite, Some(&google), move |config| {
        config.mail.smtp_url = Some(url.into());
    })
    .await;
    let start = "session=conv-1&return_to=chatgpt";

    // Registered, then signed in with Google before following the link: Google proves the
    // address, so the credits come then; the link afterwards verifies with nothing more.
    let (first, _) = register(&auth, "somchai@example.com").await;
    let token = smtp.wait_for("somchai@example.com", 1).await[0].token_for("/auth/verify-email");
    let code = auth.sign_in(&browser(), start).await.code().unwrap();
    assert_eq!(
        auth.verify(&code).await.json["user"]["id"],
        first.to_string()
    );
    assert_eq!(auth.users.balance(first).await.unwrap(), Some(10));
    assert_eq!(auth.users.email_verified(first).await.unwrap(), Some(true));
    let (status, body) = post(&auth, VERIFY, json!({ "token": token })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["credits_granted"], 0);
    assert_eq!(auth.users.balance(first).await.unwrap(), Some(10));

    // Verified by its link first, then linked by Google: still one grant.
    let (second, _) = register(&auth, "malee@example.com").await;
    let token = smtp.wait_for("malee@example.com", 1).await[0].token_for("/auth/verify-email");
    assert_eq!(
        post(&auth, VERIFY, json!({ "token": token })).await.0,
        StatusCode::OK
    );
    assert_eq!(auth.users.balance(second).await.unwrap(), Some(10));
    google.sign_in_as(FakeAccount {
        subject: "google-malee".into(),
        email: "malee@example.com".into(),
        email_verified: true,
        name: "Malee".into(),
    });
    let code = auth.sign_in(&browser(), start).await.code().unwrap();
    assert_eq!(
        auth.verify(&code).await.json["user"]["id"],
        second.to_string()
    );
    assert_eq!(auth.users.balance(second).await.unwrap(), Some(10));
}

#[tokio::test]
async fn a_reset_sets_the_password_and_signs_out_everywhere() {
    for backend in session_backends() {
        let google = FakeGoogle::start().await;
        let smtp = SmtpServer::start();
        let url = smtp.url.clone();
        let auth = spawn_auth_configured(backend, Some(&google), move |config| {
            config.mail.smtp_url = Some(url.into());
        })
        .await;
        // A Google account (it has a session code) that also gets a password, then a reset.
        let code = auth
            .sign_in(&browser(), "session=conv-1&return_to=chatgpt")
            .await
            .code()
            .unwrap();
        assert_eq!(auth.verify(&code).await.status, StatusCode::OK);
        let email = "somchai@example.com";
        assert_eq!(
            post(&auth, FORGOT, json!({ "email": email })).await.0,
            StatusCode::ACCEPTED
        );
        let token = smtp.wait_for(email, 1).await[0].token_for("/auth/reset-password");
        let (status, body) = post(
            &auth,
            RESET,
            json!({ "token": token, "password": "first password" }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{backend:?} {body}");
        assert_eq!(
            auth.verify(&code).await.status,
            StatusCode::UNAUTHORIZED,
            "the session code is revoked"
        );
        let (status, tokens) = login(&auth, email, "first password").await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();

        // The page of the link: a form with a password field, posting back to itself.
        assert_eq!(
            post(&auth, FORGOT, json!({ "email": email })).await.0,
            StatusCode::ACCEPTED
        );
        let token = smtp.wait_for(email, 2).await[1].token_for("/auth/reset-password");
        let html = auth
            .http
            .get(format!(
                "{}/auth/reset-password?token={token}",
                auth.base_url
            ))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(html.contains("type=\"password\""), "{html}");
        assert!(html.contains("action=\"/auth/reset-password\""), "{html}");

        // Too short: refused, and the link is not spent.
        let (status, body) =
            post(&auth, RESET, json!({ "token": token, "password": "short" })).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["code"], "invalid_password");
        let (status, body) = post(
            &auth,
            RESET,
            json!({ "token": token, "password": "second password" }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");

        // Everything from before is refused; only the new password works; the link is spent.
        let (status, body) = post(
            &auth,
            "/api/auth/refresh",
            json!({ "refresh_token": refresh }),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "old refresh token: {body}"
        );
        assert_eq!(
            login(&auth, email, "first password").await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            login(&auth, email, "second password").await.0,
            StatusCode::OK
        );
        let (status, body) = post(
            &auth,
            RESET,
            json!({ "token": token, "password": "third password" }),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "single use: {body}");
        assert_eq!(body["error"]["code"], "invalid_link");

        // A link is good for 30 minutes.
        assert_eq!(
            post(&auth, FORGOT, json!({ "email": email })).await.0,
            StatusCode::ACCEPTED
        );
        let token = smtp.wait_for(email, 3).await[2].token_for("/auth/reset-password");
        auth.clock.advance(chrono::Duration::minutes(30));
        let (status, _) = post(
            &auth,
            RESET,
            json!({ "token": token, "password": "third password" }),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "expired");
        assert_eq!(
            login(&auth, email, "second password").await.0,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn the_reset_page_form_sets_the_password() {
    let smtp = SmtpServer::start();
    let auth = with_smtp(SessionBackend::Sqlite, &smtp).await;
    register(&auth, "form@example.com").await;
    // The verification mail first, so that the reset mail is the second to arrive.
    smtp.wait_for("form@example.com", 1).await;
    post(&auth, FORGOT, json!({ "email": "form@example.com" })).await;
    let token = smtp.wait_for("form@example.com", 2).await[1].token_for("/auth/reset-password");
    let r = auth
        .http
        .post(format!("{}/auth/reset-password", auth.base_url))
        .form(&[
            ("token", token.as_str()),
            ("password", "from the form page"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("Password changed"));
    assert_eq!(
        login(&auth, "form@example.com", "from the form page")
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        login(&auth, "form@example.com", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn without_smtp_the_mail_is_an_eml_file_in_the_outbox() {
    let auth = spawn_auth(SessionBackend::Sqlite, None).await;
    let (id, _) = register(&auth, "outbox@example.com").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let eml = loop {
        let found = std::fs::read_dir(&auth.outbox).ok().and_then(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .find(|p| p.extension().is_some_and(|e| e == "eml"))
        });
        if let Some(path) = found {
            break std::fs::read_to_string(path).unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no .eml in {:?}",
            auth.outbox
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(eml.contains("To: outbox@example.com"), "{eml}");
    assert!(eml.contains("Subject: Verify your email address"), "{eml}");
    // The body may be quoted-printable: undo its soft line breaks and `=3D`.
    let text = eml.replace("=\r\n", "").replace("=3D", "=");
    let token = token_in(&text, "/auth/verify-email").expect("a link in the mail");
    assert!(
        text.contains(&format!("{}/auth/verify-email?token=", auth.base_url)),
        "{text}"
    );
    let (status, body) = post(&auth, VERIFY, json!({ "token": token })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(auth.users.balance(id).await.unwrap(), Some(10));
}

#[tokio::test]
async fn wrong_passwords_from_one_address_do_not_lock_the_owner_out_of_theirs() {
    for backend in session_backends() {
        let auth = spawn_auth(backend, None).await;
        register(&auth, "owner@example.com").await;
        let attacker: IpAddr = "198.51.100.66".parse().unwrap();
        let wrong = json!({ "email": "owner@example.com", "password": "not the password" });
        let right = json!({ "email": "owner@example.com", "password": PASSWORD });
        for _ in 0..5 {
            let (status, _) = post_from(
                &auth,
                &attacker.to_string(),
                "/api/auth/login",
                wrong.clone(),
            )
            .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{backend:?}");
        }
        let (status, body) = post_from(
            &auth,
            &attacker.to_string(),
            "/api/auth/login",
            wrong.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the sixth: {body}");
        // The attacker's address is throttled on this account even with the right password...
        let (status, _) = post_from(
            &auth,
            &attacker.to_string(),
            "/api/auth/login",
            right.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        // ...the owner, from theirs, is not.
        let (status, body) = post_from(&auth, "192.0.2.7", "/api/auth/login", right.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

#[tokio::test]
async fn failures_have_ceilings_per_account_and_per_address() {
    let auth = spawn_auth(SessionBackend::Sqlite, None).await;
    register(&auth, "target@example.com").await;
    // Many addresses guessing one account (5 each, under the pair limit): 50 failures in all,
    // then 429 from anywhere, the owner's address too.
    let wrong = json!({ "email": "target@example.com", "password": "nope nope" });
    for i in 0..50 {
        let client = format!("192.0.2.{}", 10 + i / 5);
        assert_eq!(
            post_from(&auth, &client, "/api/auth/login", wrong.clone())
                .await
                .0,
            StatusCode::UNAUTHORIZED,
            "attempt {i}"
        );
    }
    let right = json!({ "email": "target@example.com", "password": PASSWORD });
    let (status, body) = post_from(&auth, "203.0.113.200", "/api/auth/login", right).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");

    // One address trying many accounts: 20 failures, then 429 for any account.
    for i in 0..20 {
        let body = json!({ "email": format!("guess{i}@example.com"), "password": "nope nope" });
        assert_eq!(
            post_from(&auth, "198.51.100.1", "/api/auth/login", body)
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
    }
    let body = json!({ "email": "guess-next@example.com", "password": "nope nope" });
    assert_eq!(
        post_from(&auth, "198.51.100.1", "/api/auth/login", body.clone())
            .await
            .0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        post_from(&auth, "198.51.100.2", "/api/auth/login", body)
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "another address is not affected"
    );
}
