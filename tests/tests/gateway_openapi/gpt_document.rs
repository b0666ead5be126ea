//! The GPT document: just what a GPT needs, and the OAuth form once an OAuth client for a GPT exists.

use super::*;

#[tokio::test]
async fn the_gpt_document_has_just_what_a_gpt_needs() {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google).start().await;
    let doc = document(&hub, "/openapi.gpt.json").await;
    validate("openapi.gpt.json", &doc);
    check_gpt_limits(&doc);
    let ids: BTreeSet<String> = operations(&doc)
        .into_iter()
        .map(|(_, _, op)| op["operationId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids,
        ["checkCredits", "deductCredits", "verifySessionCode"]
            .map(str::to_owned)
            .into()
    );
    for (path, method, operation) in operations(&doc) {
        assert_eq!(method, "post", "{path}");
        assert!(
            operation.get("parameters").is_none(),
            "{path}: no X-User-ID"
        );
        assert_eq!(
            operation["security"],
            serde_json::json!([{ "serviceKey": [] }])
        );
        let schema = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned();
        let body = &doc["components"]["schemas"][&schema];
        assert!(
            body["required"]
                .as_array()
                .unwrap()
                .contains(&"session_token".into()),
            "{path}: the user's code is a required body field"
        );
        assert!(body["properties"].get("user_id").is_none());
    }
    assert_eq!(
        doc["paths"]["/api/mcp/v1/credits/deduct"]["post"]["x-openai-isConsequential"],
        true
    );
    let size = serde_json::to_vec(&doc).unwrap().len();
    assert!(size < 16 * 1024, "{size} bytes is too much to paste");
}

#[tokio::test]
async fn with_an_oauth_client_for_a_gpt_the_gpt_document_is_the_oauth_form() {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google).start().await;
    // Anyone can register a client with a GPT's callback: that changes nothing here.
    let registered = hub
        .http
        .post(format!("{}/oauth/register", hub.gateway_url))
        .json(&serde_json::json!({"redirect_uris": ["https://chat.openai.com/aip/g-2/oauth/callback"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), reqwest::StatusCode::CREATED);
    let doc = document(&hub, "/openapi.gpt.json").await;
    assert!(
        doc["paths"].get("/api/auth/verify-session").is_some(),
        "still the pasted-code form"
    );
    let client = hub_ledger::oauth::new_client(
        "Sora2 GPT",
        &["https://chat.openai.com/aip/g-1/oauth/callback".to_owned()],
        true,
        &[],
        hub_ledger::oauth::Registration::Operator,
    )
    .unwrap();
    hub.store.insert_oauth_client(&client).await.unwrap();
    let doc = document(&hub, "/openapi.gpt.json").await;
    validate("openapi.gpt.json", &doc);
    check_gpt_limits(&doc);
    let ids: BTreeSet<String> = operations(&doc)
        .into_iter()
        .map(|(_, _, op)| op["operationId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids,
        ["checkCredits", "deductCredits"].map(str::to_owned).into()
    );
    let flow = &doc["components"]["securitySchemes"]["oauth"]["flows"]["authorizationCode"];
    assert_eq!(
        flow["authorizationUrl"],
        format!("{}/oauth/authorize", hub.gateway_url)
    );
    assert_eq!(flow["tokenUrl"], format!("{}/oauth/token", hub.gateway_url));
    assert!(flow["scopes"].get("credits:spend").is_some());
    for (path, _, operation) in operations(&doc) {
        assert_eq!(
            operation["security"],
            serde_json::json!([{ "oauth": ["credits:read", "credits:spend"] }]),
            "{path}"
        );
    }
    let body = &doc["components"]["schemas"]["DeductBody"];
    assert!(
        !body["required"]
            .as_array()
            .unwrap()
            .contains(&"session_token".into()),
        "the user is named by the token"
    );
}
