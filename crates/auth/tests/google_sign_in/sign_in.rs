//! A user signs in and the GPT verifies the code; verified emails link to existing users; sessions
//! expire after seven days; invalid codes all get the same 401.

use super::*;

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
