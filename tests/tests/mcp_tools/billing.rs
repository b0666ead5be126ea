//! Billing with holds: each tool over both transports, short users, concurrent calls,
//! cancellation and dropped connections, the price table, and videos.

use super::*;

#[tokio::test]
async fn tools_over_both_transports_bill_with_holds() {
    for engine in engines() {
        for transport in [Transport::WebSocket, Transport::Http] {
            let google = FakeGoogle::start().await;
            let openai = FakeOpenAi::start().await;
            // MCP reaches core through its routes in process (`hub up`) on one transport and
            // over HTTP (the services apart) on the other.
            let core_over_http = transport == Transport::Http;
            let hub = SpawnedHub::builder(engine, &google)
                .openai(&openai)
                .mcp_core_over_http(core_over_http)
                .start()
                .await;
            let user = hub.user_with(100).await.to_string();
            let key = hub.service_key(&["credits:check", "credits:deduct"]).await;
            let client = connect(&hub, transport, &key, &user).await;
            let what = format!("{engine:?} over {transport:?}, core over HTTP: {core_over_http}");

            let tools = client.list_all_tools().await.unwrap();
            let mut names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
            names.sort();
            assert_eq!(
                names,
                ["chat", "generate_video", "get_balance", "get_video_status"],
                "{what}"
            );
            let video = tools.iter().find(|t| t.name == "generate_video").unwrap();
            assert!(
                video.input_schema.get("properties").is_some(),
                "{what}: an input schema"
            );

            let (error, body) = call(&client, "get_balance", json!({})).await;
            assert!(!error, "{what}: {body}");
            assert_eq!(body["available_balance"], 100, "{what}");

            // A video: 30 credits leave when it is ready.
            let (error, body) = call(
                &client,
                "generate_video",
                json!({ "prompt": "a cat on a skateboard" }),
            )
            .await;
            assert!(!error, "{what}: {body}");
            assert_eq!(body["status"], "completed");
            assert_eq!(body["credits_charged"], 30);
            let id = body["video_id"].as_str().unwrap().to_owned();
            // The hub's id: the provider's, signed for this user; the link is the hub's own.
            assert!(id.rsplit_once('.').is_some(), "{id}");
            let link = body["download_url"].as_str().unwrap();
            assert!(
                link.starts_with(&format!(
                    "{}/api/mcp/v1/videos/{id}/content?",
                    hub.gateway_url
                )),
                "{what}: {link}"
            );
            assert_eq!(
                balance(&hub, &user).await,
                json!({ "balance": 70, "held": 0 }),
                "{what}"
            );
            let (error, body) = call(&client, "get_video_status", json!({ "video_id": id })).await;
            assert!(!error && body["status"] == "completed", "{what}: {body}");

            // The upstream fails the job: released, nothing charged.
            let (error, body) = call(
                &client,
                "generate_video",
                json!({ "prompt": "please fail" }),
            )
            .await;
            assert!(error, "{what}: {body}");
            assert!(
                body.as_str().unwrap().contains("nothing was charged"),
                "{body}"
            );
            assert_eq!(
                balance(&hub, &user).await,
                json!({ "balance": 70, "held": 0 }),
                "{what}"
            );

            // Arguments that do not fit the tool's schema: JSON-RPC -32602, nothing held, and
            // the connection stays up.
            let params = CallToolRequestParams::new("generate_video")
                .with_arguments(json!({ "seconds": "nope" }).as_object().unwrap().clone());
            match client.call_tool(params).await {
                Err(rmcp::service::ServiceError::McpError(error)) => {
                    assert_eq!(error.code.0, -32602, "{what}: {error:?}");
                }
                other => panic!("{what}: bad params must be -32602, got {other:?}"),
            }
            assert_eq!(
                balance(&hub, &user).await,
                json!({ "balance": 70, "held": 0 }),
                "{what}"
            );
            let (error, _) = call(&client, "get_balance", json!({})).await;
            assert!(!error, "{what}: still connected");
            client.cancel().await.unwrap();

            // Calls by tool and outcome, and the credits captured.
            let metrics = reqwest::get(format!("{}/metrics", hub.mcp_url))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            for line in [
                r#"hub_mcp_tool_calls_total{service="mcp",tool="generate_video",outcome="ok"} 1"#,
                r#"hub_mcp_tool_calls_total{service="mcp",tool="generate_video",outcome="tool_error"} 1"#,
                r#"hub_mcp_credits_captured_total{service="mcp"} 30"#,
            ] {
                assert!(metrics.contains(line), "{what}: {line} in\n{metrics}");
            }
        }
    }
}

#[tokio::test]
async fn short_users_concurrent_calls_cancellation_and_disconnects() {
    let google = FakeGoogle::start().await;
    let openai = FakeOpenAi::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .openai(&openai)
        .start()
        .await;
    let key = hub.service_key(&["credits:check", "credits:deduct"]).await;

    // Not enough credits: a tool error, nothing held, nothing submitted.
    let poor = hub.user_with(29).await.to_string();
    let client = connect(&hub, Transport::WebSocket, &key, &poor).await;
    let submitted = openai.submitted();
    let (error, body) = call(&client, "generate_video", json!({ "prompt": "a cat" })).await;
    assert!(
        error && body.as_str().unwrap().contains("Not enough credits"),
        "{body}"
    );
    assert_eq!(
        balance(&hub, &poor).await,
        json!({ "balance": 29, "held": 0 })
    );
    assert_eq!(openai.submitted(), submitted, "nothing was submitted");
    client.cancel().await.unwrap();

    // Concurrent calls that together exceed the balance: never below zero.
    let user = hub.user_with(70).await.to_string();
    let clients = [
        connect(&hub, Transport::WebSocket, &key, &user).await,
        connect(&hub, Transport::Http, &key, &user).await,
        connect(&hub, Transport::WebSocket, &key, &user).await,
    ];
    let results = futures_util::future::join_all(
        clients
            .iter()
            .map(|c| call(c, "generate_video", json!({ "prompt": "a dog" }))),
    )
    .await;
    let made = results.iter().filter(|(error, _)| !error).count();
    assert_eq!(made, 2, "{results:?}");
    assert_eq!(
        balance(&hub, &user).await,
        json!({ "balance": 10, "held": 0 })
    );
    for client in clients {
        client.cancel().await.unwrap();
    }

    // Cancelled mid-call: the hold is released.
    let user = hub.user_with(30).await.to_string();
    let client = connect(&hub, Transport::WebSocket, &key, &user).await;
    let params = CallToolRequestParams::new("generate_video").with_arguments(
        json!({ "prompt": "hang forever" })
            .as_object()
            .unwrap()
            .clone(),
    );
    let handle = client
        .send_cancellable_request(
            rmcp::model::ClientRequest::CallToolRequest(rmcp::model::Request::new(params)),
            rmcp::service::PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    wait_until(&hub, &user, json!({ "balance": 30, "held": 30 })).await;
    handle
        .cancel(Some("the user changed their mind".into()))
        .await
        .unwrap();
    wait_until(&hub, &user, json!({ "balance": 30, "held": 0 })).await;
    client.cancel().await.unwrap();

    // The connection drops mid-call: released too.
    let client = connect(&hub, Transport::WebSocket, &key, &user).await;
    let params = CallToolRequestParams::new("generate_video").with_arguments(
        json!({ "prompt": "hang again" })
            .as_object()
            .unwrap()
            .clone(),
    );
    let peer = client.peer().clone();
    let call = tokio::spawn(async move { peer.call_tool(params).await });
    wait_until(&hub, &user, json!({ "balance": 30, "held": 30 })).await;
    drop(client);
    call.abort();
    wait_until(&hub, &user, json!({ "balance": 30, "held": 0 })).await;
}

#[tokio::test]
async fn prices_come_from_the_table_and_unpriced_choices_hold_nothing() {
    let google = FakeGoogle::start().await;
    let openai = FakeOpenAi::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .openai(&openai)
        .start()
        .await;
    let key = hub.service_key(&["credits:check", "credits:deduct"]).await;
    let user = hub.user_with(100).await.to_string();
    let client = connect(&hub, Transport::Http, &key, &user).await;

    let tools = client.list_all_tools().await.unwrap();
    let schema = |name: &str| {
        serde_json::to_value(&tools.iter().find(|t| t.name == name).unwrap().input_schema).unwrap()
    };
    assert_eq!(
        schema("chat")["properties"]["model"]["enum"],
        json!(["gpt-4o-mini", null])
    );
    assert_eq!(
        schema("generate_video")["properties"]["seconds"]["enum"],
        json!([4, 8, 12, null])
    );
    assert_eq!(
        schema("generate_video")["properties"]["size"]["enum"],
        json!(["1280x720", "720x1280", null])
    );

    let submitted = openai.submitted();
    for (tool, arguments) in [
        (
            "chat",
            json!({ "messages": [{ "role": "user", "content": "hi" }], "model": "gpt-5-free" }),
        ),
        (
            "chat",
            json!({ "messages": [{ "role": "robot", "content": "hi" }] }),
        ),
        ("generate_video", json!({ "prompt": "a cat", "seconds": 5 })),
        (
            "generate_video",
            json!({ "prompt": "a cat", "size": "99999x99999" }),
        ),
        (
            "generate_video",
            json!({ "prompt": "a cat", "seconds": 12, "size": "1x1" }),
        ),
    ] {
        let params =
            CallToolRequestParams::new(tool).with_arguments(arguments.as_object().unwrap().clone());
        match client.call_tool(params).await {
            Err(rmcp::service::ServiceError::McpError(error)) => {
                assert_eq!(error.code.0, -32602, "{arguments}: {error:?}");
            }
            other => panic!("{arguments}: must be -32602, got {other:?}"),
        }
        assert_eq!(
            balance(&hub, &user).await,
            json!({ "balance": 100, "held": 0 }),
            "{arguments}: nothing held"
        );
    }
    assert_eq!(openai.submitted(), submitted, "nothing was submitted");

    // An 8-second video costs what the table says.
    let (error, body) = call(
        &client,
        "generate_video",
        json!({ "prompt": "a cat", "seconds": 8, "size": "1280x720" }),
    )
    .await;
    assert!(!error, "{body}");
    assert_eq!(body["credits_charged"], 60);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn another_users_video_is_nobody_elses_business() {
    let google = FakeGoogle::start().await;
    let openai = FakeOpenAi::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .openai(&openai)
        .start()
        .await;
    let key = hub.service_key(&["credits:check", "credits:deduct"]).await;
    let alice = hub.user_with(100).await.to_string();
    let bob = hub.user_with(100).await.to_string();
    let as_alice = connect(&hub, Transport::Http, &key, &alice).await;
    let as_bob = connect(&hub, Transport::WebSocket, &key, &bob).await;
    let (error, body) = call(&as_alice, "generate_video", json!({ "prompt": "a cat" })).await;
    assert!(!error, "{body}");
    let id = body["video_id"].as_str().unwrap().to_owned();
    let (provider_id, _) = id.rsplit_once('.').unwrap();

    let (error, body) = call(&as_alice, "get_video_status", json!({ "video_id": id })).await;
    assert!(!error && body["status"] == "completed", "{body}");
    for guess in [
        id.clone(),
        provider_id.to_owned(),
        "video_2".to_owned(),
        format!("../videos/{provider_id}"),
        format!("{provider_id}%2F..%2F.AAAAAAAAAAAAAAAAAAAAAA"),
    ] {
        let (error, body) = call(&as_bob, "get_video_status", json!({ "video_id": guess })).await;
        assert!(error, "{guess}: {body}");
        assert!(
            body.as_str().unwrap().contains("No video of yours"),
            "{body}"
        );
    }
    as_alice.cancel().await.unwrap();
    as_bob.cancel().await.unwrap();
}

#[tokio::test]
async fn a_video_the_provider_will_not_stop_is_charged_when_it_is_made() {
    let google = FakeGoogle::start().await;
    let openai = FakeOpenAi::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .openai(&openai)
        .start()
        .await;
    let key = hub.service_key(&["credits:check", "credits:deduct"]).await;
    let user = hub.user_with(100).await.to_string();
    let client = connect(&hub, Transport::WebSocket, &key, &user).await;
    let params = CallToolRequestParams::new("generate_video").with_arguments(
        json!({ "prompt": "nocancel please" })
            .as_object()
            .unwrap()
            .clone(),
    );
    let handle = client
        .send_cancellable_request(
            rmcp::model::ClientRequest::CallToolRequest(rmcp::model::Request::new(params)),
            rmcp::service::PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    wait_until(&hub, &user, json!({ "balance": 100, "held": 30 })).await;
    handle.cancel(Some("never mind".into())).await.unwrap();
    // The provider refused to stop: the video is made, and charged.
    wait_until(&hub, &user, json!({ "balance": 70, "held": 0 })).await;
    client.cancel().await.unwrap();
}
