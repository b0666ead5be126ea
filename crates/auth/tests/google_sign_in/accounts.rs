//! Accounts across sign-in methods: addresses never repointed to another Google account, a Google
//! sign-in that takes over an unverified registration, and signing out everywhere.

use super::*;

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
