//! Resetting a password: asking tells nothing about who has an account and is limited per address;
//! the reset sets the password and signs out everywhere, also from the reset page form.

use super::*;

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
