//! The MCP service through the gateway, with the official rmcp client over both transports
//! (WebSocket at /api/mcp/ws, Streamable HTTP at /mcp), on every engine: tools listed, each tool's
//! success, an upstream failure (hold released, balance unchanged), cancellation mid-call and a
//! dropped connection (released), a user without enough credits (tool error, nothing held), and
//! concurrent calls that together exceed the balance (never below zero).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::fake_openai::FakeOpenAi;
use hub_test_support::{Engine, SpawnedHub, engines};
use reqwest::{Method, StatusCode};
use rmcp::model::{CallToolRequestParams, ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub(crate) type Client = RunningService<RoleClient, ()>;

#[derive(Debug, Clone, Copy)]
pub(crate) enum Transport {
    WebSocket,
    Http,
}

/// An rmcp client through the gateway, as a service key acting for `user`.
pub(crate) async fn connect(
    hub: &SpawnedHub,
    transport: Transport,
    key: &str,
    user: &str,
) -> Client {
    match transport {
        Transport::WebSocket => {
            over_socket(open_socket(hub, &[("x-api-key", key), ("x-user-id", user)]).await).await
        }
        Transport::Http => {
            let mut headers = std::collections::HashMap::new();
            headers.insert(
                http::HeaderName::from_static("x-user-id"),
                http::HeaderValue::from_str(user).unwrap(),
            );
            let config =
                StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", hub.gateway_url))
                    .auth_header(key)
                    .custom_headers(headers);
            ().serve(StreamableHttpClientTransport::from_config(config))
                .await
                .unwrap()
        }
    }
}

/// An rmcp client over an open WebSocket.
pub(crate) async fn over_socket(socket: Socket) -> Client {
    let (sink, stream) = socket.split();
    let sink = sink.with(|message: ClientJsonRpcMessage| async move {
        Ok::<_, tokio_tungstenite::tungstenite::Error>(Message::text(
            serde_json::to_string(&message).unwrap(),
        ))
    });
    let stream = stream.filter_map(|frame| async move {
        match frame {
            Ok(Message::Text(text)) => {
                serde_json::from_str::<ServerJsonRpcMessage>(text.as_str()).ok()
            }
            _ => None,
        }
    });
    ().serve((Box::pin(sink), Box::pin(stream))).await.unwrap()
}

pub(crate) async fn call(client: &Client, tool: &str, arguments: Value) -> (bool, Value) {
    let mut params = CallToolRequestParams::new(tool.to_owned());
    if let Value::Object(arguments) = arguments {
        params = params.with_arguments(arguments);
    }
    let result = client.call_tool(params).await.unwrap();
    let text = result
        .content
        .iter()
        .find_map(|c| c.as_text().map(|t| t.text.clone()))
        .unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (result.is_error.unwrap_or(false), body)
}

pub(crate) async fn balance(hub: &SpawnedHub, user: &str) -> Value {
    hub.store
        .holdings(user.parse().unwrap())
        .await
        .unwrap()
        .map(|h| json!({ "balance": h.balance, "held": h.held }))
        .unwrap()
}

#[tokio::test]
async fn tools_over_both_transports_bill_with_holds() {
    for engine in engines() {
        for transport in [Transport::WebSocket, Transport::Http] {
            let google = FakeGoogle::start().await;
            let openai = FakeOpenAi::start().await;
            let hub = SpawnedHub::builder(engine, &google)
                .openai(&openai)
                .start()
                .await;
            let user = hub.user_with(100).await.to_string();
            let key = hub.service_key(&["credits:check", "credits:deduct"]).await;
            let client = connect(&hub, transport, &key, &user).await;
            let what = format!("{engine:?} over {transport:?}");

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

async fn wait_until(hub: &SpawnedHub, user: &str, expected: Value) {
    for _ in 0..100 {
        if balance(hub, user).await == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{user}: {} is not {expected}", balance(hub, user).await);
}

#[tokio::test]
async fn nobody_reaches_mcp_without_a_credential() {
    let google = FakeGoogle::start().await;
    let openai = FakeOpenAi::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .openai(&openai)
        .start()
        .await;
    let url = hub.gateway_url.replace("http://", "ws://") + "/api/mcp/ws";
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED)
        }
        other => panic!("refused before the upgrade, got {other:?}"),
    }
    let r = hub
        .call(
            Method::POST,
            "/mcp",
            &[],
            Some(&json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Malformed frames get JSON-RPC errors over an open socket, and it stays open.
    let user = hub.user_with(10).await.to_string();
    let key = hub.service_key(&["credits:check"]).await;
    let mut request = url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("x-api-key", key.parse().unwrap());
    request
        .headers_mut()
        .insert("x-user-id", user.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    socket.send(Message::text("{not json")).await.unwrap();
    let reply = next_text(&mut socket).await;
    assert_eq!(reply["error"]["code"], -32700, "{reply}");
    socket
        .send(Message::text(r#"{"jsonrpc":"2.0","id":7,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#))
        .await
        .unwrap();
    let reply = next_text(&mut socket).await;
    assert_eq!(reply["id"], 7, "{reply}");
    assert!(reply["result"]["serverInfo"].is_object(), "{reply}");
}

async fn next_text(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                return serde_json::from_str(text.as_str()).unwrap();
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("no reply: {other:?}"),
        }
    }
}

#[tokio::test]
async fn chat_holds_an_estimate_and_charges_the_reported_usage() {
    for engine in engines() {
        for transport in [Transport::WebSocket, Transport::Http] {
            let google = FakeGoogle::start().await;
            let openai = FakeOpenAi::start().await;
            let hub = SpawnedHub::builder(engine, &google)
                .openai(&openai)
                .start()
                .await;
            let user = hub.user_with(100).await.to_string();
            let key = hub.service_key(&["credits:check", "credits:deduct"]).await;
            let client = connect(&hub, transport, &key, &user).await;
            let what = format!("{engine:?} over {transport:?}");
            let ask = |text: &str, max_tokens: u32| json!({ "messages": [{ "role": "user", "content": text }], "max_tokens": max_tokens });

            // 15 tokens reported at 2 credits per 1,000: 1 credit (rounded up).
            let (error, body) = call(&client, "chat", ask("hi", 4000)).await;
            assert!(!error, "{what}: {body}");
            assert_eq!(body["content"], "Hello there!", "{what}");
            assert_eq!(body["total_tokens"], 15);
            assert_eq!(body["usage_reported"], true);
            assert_eq!(body["credits_charged"], 1);
            assert_eq!(
                balance(&hub, &user).await,
                json!({ "balance": 99, "held": 0 }),
                "{what}"
            );

            // Without usage in the stream: an estimate, never more than was held.
            let (error, body) = call(&client, "chat", ask("nousage please", 100)).await;
            assert!(!error, "{what}: {body}");
            assert_eq!(body["usage_reported"], false);
            assert_eq!(body["credits_charged"], 1);

            // The model fails: released, nothing charged.
            let (error, body) = call(&client, "chat", ask("please fail", 100)).await;
            assert!(error, "{what}: {body}");
            assert_eq!(
                balance(&hub, &user).await,
                json!({ "balance": 98, "held": 0 }),
                "{what}"
            );

            // More than the balance could ever pay for: refused before the model is asked.
            let (error, body) = call(&client, "chat", ask("hi", 100_000_000)).await;
            assert!(
                error && body.as_str().unwrap().contains("Not enough credits"),
                "{what}: {body}"
            );
            client.cancel().await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_chat_cancelled_mid_stream_is_charged_for_what_was_used() {
    let google = FakeGoogle::start().await;
    let openai = FakeOpenAi::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .openai(&openai)
        .start()
        .await;
    let key = hub.service_key(&["credits:check", "credits:deduct"]).await;
    let user = hub.user_with(100).await.to_string();
    let mut socket = raw_session(
        &hub,
        &[("x-api-key", key.as_str()), ("x-user-id", user.as_str())],
    )
    .await;
    let call = json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "chat", "_meta": { "progressToken": "p" },
        "arguments": { "messages": [{ "role": "user", "content": "hang on" }], "max_tokens": 1000 } } });
    socket.send(Message::text(call.to_string())).await.unwrap();
    // 1,000 tokens and the prompt at 2 per 1,000: 3 credits held while the answer streams.
    wait_until(&hub, &user, json!({ "balance": 100, "held": 3 })).await;
    // The first part of the answer has streamed: the model has started.
    while next_text(&mut socket).await["method"] != "notifications/progress" {}
    let cancel = json!({ "jsonrpc": "2.0", "method": "notifications/cancelled",
                          "params": { "requestId": 7, "reason": "enough" } });
    socket
        .send(Message::text(cancel.to_string()))
        .await
        .unwrap();
    // The prompt and the streamed part are charged (at least 1 credit), the rest freed.
    wait_until(&hub, &user, json!({ "balance": 99, "held": 0 })).await;
}

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket to the MCP service through the gateway, with `headers` on the upgrade.
pub(crate) async fn open_socket(hub: &SpawnedHub, headers: &[(&'static str, &str)]) -> Socket {
    let url = hub.gateway_url.replace("http://", "ws://") + "/api/mcp/ws";
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

/// A raw MCP session over the WebSocket, initialized, with `headers` on the upgrade.
async fn raw_session(hub: &SpawnedHub, headers: &[(&'static str, &str)]) -> Socket {
    let mut socket = open_socket(hub, headers).await;
    socket
        .send(Message::text(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#))
        .await
        .unwrap();
    assert_eq!(next_text(&mut socket).await["id"], 1);
    socket
        .send(Message::text(
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        ))
        .await
        .unwrap();
    socket
}

/// The attack: read the streamed deltas, then cancel (or hang up), again and again. Each time
/// the prompt and the tokens streamed are charged.
#[tokio::test]
async fn reading_a_streamed_chat_then_cancelling_or_hanging_up_is_not_free() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let openai = FakeOpenAi::start().await;
        let hub = SpawnedHub::builder(engine, &google)
            .openai(&openai)
            .start()
            .await;
        let key = hub.service_key(&["credits:check", "credits:deduct"]).await;
        let user = hub.user_with(100).await.to_string();
        for (round, hang_up) in [(0, false), (1, true)] {
            let mut socket = raw_session(
                &hub,
                &[("x-api-key", key.as_str()), ("x-user-id", user.as_str())],
            )
            .await;
            let call = json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
                "name": "chat", "_meta": { "progressToken": "p" },
                "arguments": { "messages": [{ "role": "user", "content": "deltas:1500" }], "max_tokens": 4000 } } });
            socket.send(Message::text(call.to_string())).await.unwrap();
            let mut seen = 0;
            while seen < 1500 {
                let message = next_text(&mut socket).await;
                if message["method"] == "notifications/progress" {
                    seen += 1;
                }
            }
            if hang_up {
                drop(socket);
            } else {
                let cancel = json!({ "jsonrpc": "2.0", "method": "notifications/cancelled",
                                      "params": { "requestId": 7, "reason": "got what I wanted" } });
                socket
                    .send(Message::text(cancel.to_string()))
                    .await
                    .unwrap();
            }
            // 9 credits held (the prompt and 4,000 tokens at 2 per 1,000); the prompt (11
            // characters: 3 tokens) and 1,500 streamed tokens charged: 4 credits.
            let expected = 100 - 4 * (round + 1);
            wait_until(&hub, &user, json!({ "balance": expected, "held": 0 })).await;
        }
        let report = hub.store.audit().await.unwrap();
        assert!(report.discrepancies.is_empty(), "{engine:?}: {report:?}");
    }
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

#[tokio::test]
async fn a_browser_offers_its_code_as_a_websocket_subprotocol() {
    let google = FakeGoogle::start().await;
    let openai = FakeOpenAi::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .openai(&openai)
        .start()
        .await;
    let (code, user_id) = hub.signed_in_user().await;
    let url = hub.gateway_url.replace("http://", "ws://") + "/api/mcp/ws";
    let mut request = url.as_str().into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("mcp, bearer.{code}").parse().unwrap(),
    );
    let (mut socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "mcp",
        "the service picks mcp; the code never comes back"
    );
    socket
        .send(Message::text(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"browser","version":"1"}}}"#))
        .await
        .unwrap();
    next_text(&mut socket).await;
    socket
        .send(Message::text(
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        ))
        .await
        .unwrap();
    socket
        .send(Message::text(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_balance","arguments":{}}}"#))
        .await
        .unwrap();
    let reply = next_text(&mut socket).await;
    let text = reply["result"]["content"][0]["text"].as_str().unwrap();
    let balance: Value = serde_json::from_str(text).unwrap();
    assert_eq!(balance["user_id"], user_id.as_str(), "the code's own user");

    // A made-up code in the subprotocol is refused before the upgrade.
    let mut request = url.as_str().into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "mcp, bearer.VERIFIED-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            .parse()
            .unwrap(),
    );
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED)
        }
        other => panic!("refused, got {other:?}"),
    }
}

/// A WebSocket opened with a session code ends, with a close frame that says why, within the
/// recheck interval of the code being revoked ("sign out everywhere" here), on every engine.
#[tokio::test]
async fn a_websocket_outlives_no_revocation_of_its_credential() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let openai = FakeOpenAi::start().await;
        let hub = SpawnedHub::builder(engine, &google)
            .openai(&openai)
            .gateway(|config| {
                config.websocket_recheck = Duration::from_secs(1);
            })
            .start()
            .await;
        let (code, _) = hub.signed_in_user().await;
        let mut socket = raw_session(&hub, &[("x-session-token", code.as_str())]).await;
        // Still good after a few checks.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        socket
            .send(Message::text(r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#))
            .await
            .unwrap();
        assert_eq!(next_text(&mut socket).await["id"], 2, "{engine:?}");

        let r = hub
            .call(
                Method::DELETE,
                "/api/auth/sessions",
                &[("x-session-token", code.as_str())],
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
        let revoked = std::time::Instant::now();
        let close = loop {
            match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => break frame,
                Ok(Some(Ok(_))) => continue,
                other => panic!("{engine:?}: a close frame, got {other:?}"),
            }
        };
        let close = close.expect("a code and reason");
        assert_eq!(u16::from(close.code), 1008, "{engine:?}");
        assert!(close.reason.contains("revoked"), "{}", close.reason);
        assert!(
            revoked.elapsed() < Duration::from_secs(3),
            "{engine:?}: closed {:?} after the revocation",
            revoked.elapsed()
        );
    }
}

/// Whatever the periodic check's interval, a call sent more than a second after the credential
/// was revoked never reaches the MCP service: the gateway checks before it passes it on.
#[tokio::test]
async fn a_call_after_a_revocation_is_not_passed_on() {
    let google = FakeGoogle::start().await;
    let openai = FakeOpenAi::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .openai(&openai)
        .start()
        .await;
    let (code, user) = hub.signed_in_user().await;
    let mut socket = raw_session(&hub, &[("x-session-token", code.as_str())]).await;
    let r = hub
        .call(
            Method::DELETE,
            "/api/auth/sessions",
            &[("x-session-token", code.as_str())],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    // Past the second within which a check is trusted (the periodic one is a minute away).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = balance(&hub, &user).await;
    let call = json!({ "jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
        "name": "generate_video", "arguments": { "prompt": "a cat" } } });
    socket.send(Message::text(call.to_string())).await.unwrap();
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(Message::Text(text)))) => panic!("the call went through: {text}"),
            Ok(Some(Ok(_))) => continue,
            other => panic!("a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.expect("a code").code), 1008);
    assert_eq!(balance(&hub, &user).await, before, "nothing held or spent");
    assert_eq!(openai.submitted(), 0, "nothing reached the provider");
}
