//! Acting as someone else: an app's token naming another user in `X-User-ID`, and a GPT key
//! sending a user's code with spaces around it (against the field's pattern).

use super::*;

#[tokio::test]
async fn an_app_acts_only_for_the_user_who_connected_it() {
    let (_google, hub) = hub().await;
    let (client_id, _) = operator_client(
        &hub,
        APP_CALLBACK,
        false,
        &["credits:read", "credits:spend"],
    )
    .await;
    let person = OAuthBrowser::new(&hub);
    let (_, tokens) = public_tokens(&hub, &person, &client_id, "").await;
    let access = tokens["access_token"].as_str().unwrap();
    let victim = hub.user_with(100).await;
    let bearer = format!("Bearer {access}");
    let victim_id = victim.to_string();
    let spend = hub
        .call(
            Method::POST,
            "/api/mcp/v1/credits/deduct",
            &[("authorization", &bearer), ("x-user-id", &victim_id)],
            Some(&json!({"service": "sora2-video-generation", "cost": 10})),
        )
        .await;
    assert_eq!(spend.status, StatusCode::FORBIDDEN, "{:?}", spend.json);
    assert_eq!(hub.store.balance(victim).await.unwrap(), Some(100));
}

#[tokio::test]
async fn a_code_with_spaces_around_it_is_not_a_code() {
    let (_google, hub) = hub().await;
    let (code, user) = hub.signed_in_user().await;
    let key = hub.service_key(&["gpt"]).await;
    let bearer = format!("Bearer {key}");
    for padded in [format!(" {code}"), format!("{code}\n")] {
        let spend = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/deduct",
                &[("authorization", &bearer)],
                Some(&json!({"service": "sora2-video-generation", "cost": 1, "session_token": padded})),
            )
            .await;
        assert_eq!(
            spend.status,
            StatusCode::UNAUTHORIZED,
            "{padded:?}: {:?}",
            spend.json
        );
    }
    assert_eq!(
        hub.store.balance(user.parse().unwrap()).await.unwrap(),
        Some(10),
        "nothing spent"
    );
}
