//! Verifying an address: the mailed link grants credits once (also under concurrency and beside
//! Google), links expire after 24 hours, and without SMTP the mail lands in the outbox.

use super::*;

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
