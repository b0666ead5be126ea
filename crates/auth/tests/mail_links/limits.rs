//! Failed logins: one address cannot lock the owner out, and failures have ceilings per account
//! and per address.

use super::*;

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
