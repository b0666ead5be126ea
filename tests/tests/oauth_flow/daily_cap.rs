//! An app's daily spending cap, refused with its own code.

use super::*;

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
