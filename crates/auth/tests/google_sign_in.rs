//! The Google sign-in, driven like a browser against the fake provider, and what the GPT does
//! with the code afterwards.

use hub_test_support::fake_google::{FakeAccount, FakeGoogle, Misbehaviour};
use hub_test_support::{SessionBackend, SpawnedAuth, browser, session_backends, spawn_auth};
use reqwest::{Method, StatusCode};
use serde_json::json;

const START: &str = "session=conv-42.abc_DEF&return_to=chatgpt";

async fn user_count(auth: &SpawnedAuth) -> i64 {
    let hub_storage::Database::Sqlite { reader, .. } = &auth.db.database else {
        unreachable!()
    };
    sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(reader)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_user_signs_in_and_the_gpt_verifies_the_code() {
    for backend in session_backends() {
        let google = FakeGoogle::start().await;
        let auth = spawn_auth(backend, Some(&google)).await;
        let browser = browser();

        let provider_url = auth.start_sign_in(&browser, START).await;
        assert!(
            provider_url.starts_with(&format!("{}/authorize?", google.issuer)),
            "{provider_url}"
        );
        for parameter in [
            "state=",
            "nonce=",
            "code_challenge=",
            "code_challenge_method=S256",
            "scope=openid",
        ] {
            assert!(
                provider_url.contains(parameter),
                "{parameter} in {provider_url}"
            );
        }

        let signed_in = auth.sign_in(&browser, START).await;
        assert_eq!(
            signed_in.status,
            StatusCode::OK,
            "{backend:?}: {}",
            signed_in.page
        );
        let code = signed_in.code().expect("a code on the page");
        assert_eq!(code.len(), "VERIFIED-".len() + 32);
        assert!(signed_in.page.contains("Login สำเร็จ!"));
        assert!(signed_in.page.contains("📋 คัดลอกรหัส"));
        assert!(signed_in.page.contains("Somchai Jaidee"));
        assert!(signed_in.page.contains("7 วัน"));
        assert_eq!(signed_in.headers["cache-control"], "no-store");
        assert_eq!(signed_in.headers["referrer-policy"], "no-referrer");
        let csp = signed_in.headers["content-security-policy"]
            .to_str()
            .unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'nonce-"),
            "{csp}"
        );
        assert!(
            !signed_in.page.contains("http://") && !signed_in.page.contains("https://"),
            "no third-party assets"
        );

        let r = auth.verify(&code).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
        let user = &r.json["user"];
        assert_eq!(user["email"], "somchai@example.com");
        assert_eq!(user["name"], "Somchai Jaidee");
        let user_id: uuid::Uuid = user["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            auth.users.balance(user_id).await.unwrap(),
            Some(10),
            "NEW_USER_CREDITS as a grant"
        );
        let history = auth
            .users
            .transactions(user_id, 10, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            history.transactions[0].kind,
            hub_ledger::TransactionKind::Grant
        );

        // The same code also works as a bearer token; the sessions list knows the GPT conversation.
        let r = auth
            .http
            .get(format!("{}/api/auth/verify-session", auth.base_url))
            .bearer_auth(&code)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let r = auth
            .with_code(Method::GET, "/api/auth/sessions", &code)
            .await;
        assert_eq!(r.json["sessions"][0]["session"], "conv-42.abc_DEF");
        assert_eq!(r.json["sessions"][0]["current"], true);
        assert!(
            r.json.to_string().find("VERIFIED-").is_none(),
            "no tokens in the list"
        );

        // Signing in again finds the same user; revoking one code leaves the other.
        let again = auth.sign_in(&browser, START).await.code().unwrap();
        let r = auth.verify(&again).await;
        assert_eq!(r.json["user"]["id"], user["id"]);
        assert_eq!(user_count(&auth).await, 1);
        let r = auth
            .with_code(Method::DELETE, "/api/auth/sessions/current", &code)
            .await;
        assert_eq!(r.json, json!({ "revoked": 1 }));
        assert_eq!(
            auth.verify(&code).await.status,
            StatusCode::UNAUTHORIZED,
            "revoked"
        );
        assert_eq!(auth.verify(&again).await.status, StatusCode::OK);
        let r = auth
            .with_code(Method::DELETE, "/api/auth/sessions", &again)
            .await;
        assert_eq!(r.json, json!({ "revoked": 1 }));
        assert_eq!(
            auth.verify(&again).await.status,
            StatusCode::UNAUTHORIZED,
            "all revoked"
        );
    }
}

#[tokio::test]
async fn a_verified_email_links_to_an_existing_user() {
    let google = FakeGoogle::start().await;
    let auth = spawn_auth(SessionBackend::Sqlite, Some(&google)).await;
    let existing = hub_ledger::users::NewUser::new(
        "Somchai@Example.com",
        "S",
        100,
        hub_ledger::users::Role::User,
    )
    .unwrap();
    let existing = auth
        .users
        .create_user(&existing)
        .await
        .unwrap()
        .unwrap()
        .user;
    let code = auth.sign_in(&browser(), START).await.code().unwrap();
    let r = auth.verify(&code).await;
    assert_eq!(r.json["user"]["id"], existing.id.to_string());
    assert_eq!(
        auth.users.balance(existing.id).await.unwrap(),
        Some(100),
        "no second grant"
    );
    assert_eq!(user_count(&auth).await, 1);
}

#[tokio::test]
async fn sessions_expire_after_seven_days_and_deleted_users_are_404() {
    let google = FakeGoogle::start().await;
    let auth = spawn_auth(SessionBackend::Sqlite, Some(&google)).await;
    let code = auth.sign_in(&browser(), START).await.code().unwrap();
    auth.clock
        .advance(chrono::Duration::days(7) - chrono::Duration::minutes(1));
    assert_eq!(auth.verify(&code).await.status, StatusCode::OK);
    auth.clock.advance(chrono::Duration::minutes(1));
    let r = auth.verify(&code).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json["error"]["code"], "invalid_session");

    let code = auth.sign_in(&browser(), START).await.code().unwrap();
    let user_id = auth.verify(&code).await.json["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let hub_storage::Database::Sqlite { writer, .. } = &auth.db.database else {
        unreachable!()
    };
    sqlx::query("DELETE FROM users WHERE id = ?1")
        .bind(&user_id)
        .execute(writer)
        .await
        .unwrap();
    // Existence is remembered for a few seconds; wait for that condition, not a fixed time.
    let deadline = std::time::Instant::now()
        + hub_auth::routes::KnownUsers::FRESH_FOR
        + std::time::Duration::from_secs(3);
    loop {
        let r = auth.verify(&code).await;
        if r.status == StatusCode::NOT_FOUND {
            assert_eq!(r.json["error"]["code"], "unknown_user");
            break;
        }
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            std::time::Instant::now() < deadline,
            "a deleted user is noticed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn invalid_codes_all_get_the_same_401() {
    let auth = spawn_auth(SessionBackend::Sqlite, None).await;
    let mut messages = Vec::new();
    for code in [
        "",
        "VERIFIED-",
        "VERIFIED-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "nonsense",
        &"V".repeat(5000),
    ] {
        let r = auth.verify(code).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{code:?}");
        assert_eq!(r.json["error"]["code"], "invalid_session");
        messages.push(r.json["error"]["message"].clone());
    }
    let r = auth
        .http
        .get(format!("{}/api/auth/verify-session", auth.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    messages.dedup();
    assert_eq!(messages.len(), 1, "one message for every failure");
}

async fn failure(
    auth: &SpawnedAuth,
    google: &FakeGoogle,
    misbehaviour: Misbehaviour,
) -> hub_test_support::SignIn {
    google.misbehave(misbehaviour);
    let signed_in = auth.sign_in(&browser(), START).await;
    google.misbehave(Misbehaviour::default());
    signed_in
}

#[tokio::test]
async fn every_failed_sign_in_gets_an_error_page_and_changes_nothing() {
    let google = FakeGoogle::start().await;
    let auth = spawn_auth(SessionBackend::Sqlite, Some(&google)).await;
    let cases = [
        (
            "consent denied",
            Misbehaviour {
                deny_consent: true,
                ..Default::default()
            },
        ),
        (
            "wrong nonce",
            Misbehaviour {
                wrong_nonce: true,
                ..Default::default()
            },
        ),
        (
            "wrong audience",
            Misbehaviour {
                wrong_audience: true,
                ..Default::default()
            },
        ),
        (
            "expired ID token",
            Misbehaviour {
                expired: true,
                ..Default::default()
            },
        ),
        (
            "PKCE mismatch",
            Misbehaviour {
                pkce_mismatch: true,
                ..Default::default()
            },
        ),
        (
            "signed by another key",
            Misbehaviour {
                foreign_key: true,
                ..Default::default()
            },
        ),
    ];
    for (case, misbehaviour) in cases {
        let page = failure(&auth, &google, misbehaviour).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{case}: {}",
            page.page
        );
        assert!(page.code().is_none(), "{case}: no code");
        assert!(
            page.page
                .contains("href=\"/auth/google?session=conv-42.abc_DEF&amp;return_to=chatgpt\"")
                || page
                    .page
                    .contains("/auth/google?session=conv-42.abc_DEF&#38;return_to=chatgpt"),
            "{case}: a link to try again: {}",
            page.page
        );
        assert_eq!(page.headers["cache-control"], "no-store");
    }
    google.sign_in_as(FakeAccount {
        subject: "unverified".into(),
        email: "nobody@example.com".into(),
        email_verified: false,
        name: "Nobody".into(),
    });
    let page = auth.sign_in(&browser(), START).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "unverified email");
    assert!(page.page.contains("not verified"));
    assert_eq!(
        user_count(&auth).await,
        0,
        "no user was created by any failure"
    );
}

#[tokio::test]
async fn a_state_is_single_use_bound_to_its_browser_and_expires() {
    let google = FakeGoogle::start().await;
    let auth = spawn_auth(SessionBackend::Sqlite, Some(&google)).await;

    // Reused: the callback URL replayed after a successful sign-in.
    let alice = browser();
    let first = auth.sign_in(&alice, START).await;
    assert_eq!(first.status, StatusCode::OK);
    let replay = alice
        .get(first.callback.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST, "state reused");

    // From another browser: a callback link planted in someone else's browser.
    let provider_url = auth.start_sign_in(&alice, START).await;
    let at_provider = alice.get(&provider_url).send().await.unwrap();
    let callback = at_provider.headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    let mallory = browser();
    let planted = mallory.get(&callback).send().await.unwrap();
    assert_eq!(
        planted.status(),
        StatusCode::BAD_REQUEST,
        "state from another browser"
    );
    assert!(planted.text().await.unwrap().contains("another browser"));
    let after = alice.get(&callback).send().await.unwrap();
    assert_eq!(
        after.status(),
        StatusCode::BAD_REQUEST,
        "and the state is spent"
    );

    // Missing state, and an expired one.
    let r = alice
        .get(format!("{}/auth/google/callback?code=abc", auth.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "state missing");
    let provider_url = auth.start_sign_in(&alice, START).await;
    let at_provider = alice.get(&provider_url).send().await.unwrap();
    let callback = at_provider.headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    auth.clock.advance(chrono::Duration::minutes(10));
    let late = alice.get(&callback).send().await.unwrap();
    assert_eq!(
        late.status(),
        StatusCode::BAD_REQUEST,
        "state expired after 10 minutes"
    );
    assert_eq!(
        user_count(&auth).await,
        1,
        "only the first sign-in made a user"
    );
}

#[tokio::test]
async fn bad_sign_in_links_are_400_and_never_redirect() {
    let google = FakeGoogle::start().await;
    let auth = spawn_auth(SessionBackend::Sqlite, Some(&google)).await;
    let long = "a".repeat(129);
    for query in [
        "".to_owned(),
        "session=".to_owned(),
        format!("session={long}"),
        "session=has%20space".to_owned(),
        "session=%3Cscript%3E".to_owned(),
        "session=ok&return_to=https%3A%2F%2Fevil.example".to_owned(),
        "session=ok&return_to=somewhere".to_owned(),
    ] {
        let r = browser()
            .get(format!("{}/auth/google?{query}", auth.base_url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        assert!(r.headers().get("location").is_none());
        let page = r.text().await.unwrap();
        assert!(
            !page.contains("<script>"),
            "{query}: nothing reflected unescaped"
        );
    }
}

#[tokio::test]
async fn without_a_client_id_google_sign_in_says_what_to_set() {
    let auth = spawn_auth(SessionBackend::Sqlite, None).await;
    let r = browser()
        .get(format!("{}/auth/google?{START}", auth.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let page = r.text().await.unwrap();
    for variable in [
        "GOOGLE_CLIENT_ID",
        "GOOGLE_CLIENT_SECRET",
        "GOOGLE_CALLBACK_URL",
    ] {
        assert!(page.contains(variable), "{variable}");
    }
}

#[tokio::test]
async fn an_address_linked_to_another_google_account_is_never_repointed() {
    let google = FakeGoogle::start().await;
    let auth = spawn_auth(SessionBackend::Sqlite, Some(&google)).await;
    let first = auth.sign_in(&browser(), START).await.code().unwrap();
    let owner = auth.verify(&first).await.json["user"]["id"].clone();
    google.sign_in_as(FakeAccount {
        subject: "google-sub-2".into(),
        email: "somchai@example.com".into(),
        email_verified: true,
        name: "Someone Else".into(),
    });
    let page = auth.sign_in(&browser(), START).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.page);
    assert!(page.page.contains("another Google account"));
    assert_eq!(
        auth.verify(&first).await.json["user"]["id"],
        owner,
        "the first account keeps its user"
    );
    assert_eq!(user_count(&auth).await, 1);
}

#[tokio::test]
async fn a_google_sign_in_takes_over_an_unverified_registration_and_drops_its_password() {
    for backend in session_backends() {
        let google = FakeGoogle::start().await;
        let auth = spawn_auth(backend, Some(&google)).await;
        let post = |path: &'static str, body: serde_json::Value| {
            let request = auth
                .http
                .post(format!("{}{path}", auth.base_url))
                .json(&body);
            async move {
                let r = request.send().await.unwrap();
                let status = r.status();
                (
                    status,
                    r.json::<serde_json::Value>().await.unwrap_or_default(),
                )
            }
        };
        let register = json!({ "email": "somchai@example.com", "password": "set by a squatter", "name": "Squatter" });
        let (status, squatter) = post("/api/auth/register", register).await;
        assert_eq!(status, StatusCode::CREATED);
        let refresh = squatter["refresh_token"].as_str().unwrap().to_owned();
        let access = squatter["access_token"].as_str().unwrap().to_owned();
        // The squatter rotates once, so the family has a spent and a live member.
        let (status, rotated) =
            post("/api/auth/refresh", json!({ "refresh_token": refresh })).await;
        assert_eq!(status, StatusCode::OK);
        let refresh = rotated["refresh_token"].as_str().unwrap().to_owned();

        let code = auth.sign_in(&browser(), START).await.code().unwrap();
        assert_eq!(auth.verify(&code).await.status, StatusCode::OK);
        let login = json!({ "email": "somchai@example.com", "password": "set by a squatter" });
        assert_eq!(
            post("/api/auth/login", login).await.0,
            StatusCode::UNAUTHORIZED,
            "{backend:?}: the squatter's password is gone"
        );
        assert_eq!(
            post("/api/auth/refresh", json!({ "refresh_token": refresh }))
                .await
                .0,
            StatusCode::UNAUTHORIZED,
            "{backend:?}: the squatter's refresh family ended with the link"
        );
        let me = auth
            .http
            .get(format!("{}/api/auth/me", auth.base_url))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(
            me.status(),
            StatusCode::UNAUTHORIZED,
            "{backend:?}: the squatter's access token ended with the link"
        );
        // The owner's own code, made after the link, is unaffected.
        assert_eq!(auth.verify(&code).await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn signing_out_everywhere_ends_refresh_families_and_access_tokens_too() {
    for backend in session_backends() {
        let google = FakeGoogle::start().await;
        let auth = spawn_auth(backend, Some(&google)).await;
        let code = auth.sign_in(&browser(), START).await.code().unwrap();
        // The same person also has a password (as after a reset), and signs in with it too.
        let hash = hub_auth::passwords::hash("a password of theirs".into())
            .await
            .unwrap();
        let hub_storage::Database::Sqlite { writer, .. } = &auth.db.database else {
            unreachable!()
        };
        sqlx::query("UPDATE users SET password_hash = ?1")
            .bind(hash)
            .execute(writer)
            .await
            .unwrap();
        let login = json!({ "email": "somchai@example.com", "password": "a password of theirs" });
        let r = auth
            .http
            .post(format!("{}/api/auth/login", auth.base_url))
            .json(&login)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let tokens: serde_json::Value = r.json().await.unwrap();

        let r = auth
            .with_code(Method::DELETE, "/api/auth/sessions", &code)
            .await;
        assert_eq!(r.json, json!({ "revoked": 1 }));
        let r = auth
            .http
            .post(format!("{}/api/auth/refresh", auth.base_url))
            .json(&json!({ "refresh_token": tokens["refresh_token"] }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{backend:?}: refresh");
        let r = auth
            .http
            .get(format!("{}/api/auth/me", auth.base_url))
            .bearer_auth(tokens["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{backend:?}: access");
        // A new sign-in afterwards works as before.
        let r = auth
            .http
            .post(format!("{}/api/auth/login", auth.base_url))
            .json(&login)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let fresh: serde_json::Value = r.json().await.unwrap();
        let r = auth
            .http
            .get(format!("{}/api/auth/me", auth.base_url))
            .bearer_auth(fresh["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{backend:?}: a new token");
    }
}
