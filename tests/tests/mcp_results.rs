//! What the MCP tools give a person and a program: a video link on the hub that opens in a
//! browser for its owner alone (no headers, Range for seeking, a thumbnail, refused when changed,
//! expired or someone else's, and never the operator's key), structured results that match each
//! tool's declared output schema on both transports, error codes a program can act on, and a
//! Streamable HTTP session that ends with 204.

use std::time::Duration;

use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::fake_openai::FakeOpenAi;
use hub_test_support::{Engine, SpawnedHub};
use reqwest::StatusCode;
use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock, Tool};
use serde_json::{Value, json};

use crate::mcp_tools::{Client, Transport, balance, connect};

/// A tool call's whole result.
async fn call_tool(client: &Client, tool: &str, arguments: Value) -> CallToolResult {
    let mut params = CallToolRequestParams::new(tool.to_owned());
    if let Value::Object(arguments) = arguments {
        params = params.with_arguments(arguments);
    }
    client.call_tool(params).await.unwrap()
}

/// A made video's id and link, for `user`.
async fn video_for(hub: &SpawnedHub, key: &str, user: &str) -> (String, String) {
    let client = connect(hub, Transport::Http, key, user).await;
    let result = call_tool(&client, "generate_video", json!({ "prompt": "a fox" })).await;
    client.cancel().await.unwrap();
    let body = result.structured_content.expect("structured content");
    assert_eq!(result.is_error, Some(false), "{body}");
    (
        body["video_id"].as_str().unwrap().to_owned(),
        body["download_url"].as_str().unwrap().to_owned(),
    )
}

/// A plain HTTP client: no credentials, no cookies, as a browser tab opening a link.
async fn open(url: &str, range: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    if let Some(range) = range {
        request = request.header("range", range);
    }
    request.send().await.unwrap()
}

async fn refused(url: &str) -> (StatusCode, String) {
    let response = open(url, None).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

/// The provider's id inside a hub video id.
fn provider_id(video_id: &str) -> &str {
    video_id.rsplit_once('.').unwrap().0
}

fn query_value<'a>(url: &'a str, name: &str) -> &'a str {
    url.split_once('?')
        .unwrap()
        .1
        .split('&')
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
        .unwrap()
}

#[tokio::test]
async fn a_video_link_opens_for_whoever_holds_it_and_for_nothing_else() {
    let google = FakeGoogle::start().await;
    let openai = FakeOpenAi::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .openai(&openai)
        .start()
        .await;
    let key = hub.service_key(&["credits:check", "credits:deduct"]).await;
    let alice = hub.user_with(100).await.to_string();
    let bob = hub.user_with(100).await.to_string();
    let (video, link) = video_for(&hub, &key, &alice).await;
    let (bobs_video, bobs_link) = video_for(&hub, &key, &bob).await;

    // The hub's address, nothing of the operator's key or the provider's.
    assert!(
        link.starts_with(&format!(
            "{}/api/mcp/v1/videos/{video}/content?",
            hub.gateway_url
        )),
        "{link}"
    );
    assert!(
        !link.contains("sk-fake") && !link.contains(&openai.base_url),
        "{link}"
    );

    // The whole file, without a credential.
    let whole = FakeOpenAi::file(provider_id(&video), "video");
    let response = open(&link, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "video/mp4");
    assert_eq!(headers["accept-ranges"], "bytes");
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("inline; filename="),
        "{disposition}"
    );
    assert_eq!(response.bytes().await.unwrap(), whole);

    // Two ranges that join to the whole, as a player seeking.
    let first = open(&link, Some("bytes=0-99999")).await;
    assert_eq!(first.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        first.headers()["content-range"],
        format!("bytes 0-99999/{}", whole.len()).as_str()
    );
    let second = open(&link, Some("bytes=100000-")).await;
    assert_eq!(second.status(), StatusCode::PARTIAL_CONTENT);
    let mut joined = first.bytes().await.unwrap().to_vec();
    joined.extend_from_slice(&second.bytes().await.unwrap());
    assert_eq!(joined, whole, "the two ranges join to the whole");
    let (status, _) = refused(&link).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a link opens as often as its owner likes"
    );
    let beyond = open(&link, Some("bytes=900000-")).await;
    assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE);

    // The thumbnail, the same way.
    let thumbnail = open(&format!("{link}&variant=thumbnail"), None).await;
    assert_eq!(thumbnail.status(), StatusCode::OK);
    assert_eq!(thumbnail.headers()["content-type"], "image/webp");
    assert_eq!(
        thumbnail.bytes().await.unwrap(),
        FakeOpenAi::file(provider_id(&video), "thumbnail")
    );
    let (status, code) = refused(&format!("{link}&variant=poster")).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_variant")
    );

    // Changed in any part, or someone else's: refused, with the error shape.
    let signature = query_value(&link, "signature");
    let mut flipped = signature.to_owned().into_bytes();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let expires: u64 = query_value(&link, "expires").parse().unwrap();
    let forged = [
        link.replace(signature, std::str::from_utf8(&flipped).unwrap()),
        link.replace(
            &format!("expires={expires}"),
            &format!("expires={}", expires + 86_400),
        ),
        link.replace(&alice, &bob),
        // Alice's signature on Bob's video; Bob's link with Alice named.
        link.replace(&video, &bobs_video),
        bobs_link.replace(&bob, &alice),
        link.replace(&format!("&signature={signature}"), ""),
    ];
    for url in &forged {
        let (status, code) = refused(url).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::FORBIDDEN, "invalid_link"),
            "{url}"
        );
    }
    // Bob's own link still opens his.
    assert_eq!(open(&bobs_link, None).await.status(), StatusCode::OK);

    // Gone at the provider: a clear 410.
    openai.forget(provider_id(&video));
    let (status, code) = refused(&link).await;
    assert_eq!((status, code.as_str()), (StatusCode::GONE, "video_gone"));
    assert_eq!(
        balance(&hub, &alice).await,
        json!({ "balance": 70, "held": 0 })
    );
}

#[tokio::test]
async fn a_video_link_expires_and_get_video_status_gives_a_fresh_one() {
    let google = FakeGoogle::start().await;
    let openai = FakeOpenAi::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .openai(&openai)
        .mcp(|config| {
            config.video_link_ttl_seconds = 3;
        })
        .start()
        .await;
    let key = hub.service_key(&["credits:check", "credits:deduct"]).await;
    let user = hub.user_with(100).await.to_string();
    let (video, link) = video_for(&hub, &key, &user).await;
    let expires: u64 = query_value(&link, "expires").parse().unwrap();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    tokio::time::sleep(Duration::from_secs(expires.saturating_sub(now()) + 1)).await;
    let (status, code) = refused(&link).await;
    assert_eq!((status, code.as_str()), (StatusCode::GONE, "link_expired"));

    let client = connect(&hub, Transport::WebSocket, &key, &user).await;
    let status = call_tool(&client, "get_video_status", json!({ "video_id": video })).await;
    let fresh = status.structured_content.unwrap()["download_url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(open(&fresh, None).await.status(), StatusCode::OK);
    client.cancel().await.unwrap();
}

/// Checks a result against the tool's declared output schema.
fn conforms(tool: &Tool, result: &CallToolResult, what: &str) -> Value {
    let schema = Value::Object(
        tool.output_schema
            .as_deref()
            .unwrap_or_else(|| panic!("{what}: {} declares an output schema", tool.name))
            .clone(),
    );
    assert_eq!(schema["type"], "object", "{what}: {}", tool.name);
    let structured = result
        .structured_content
        .clone()
        .unwrap_or_else(|| panic!("{what}: {} answers structuredContent", tool.name));
    let validator = jsonschema::validator_for(&schema).unwrap();
    if let Err(error) = validator.validate(&structured) {
        panic!(
            "{what}: {} answered {structured} against {schema}: {error}",
            tool.name
        );
    }
    structured
}

#[tokio::test]
async fn every_result_matches_its_declared_output_schema_on_both_transports() {
    let google = FakeGoogle::start().await;
    let openai = FakeOpenAi::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .openai(&openai)
        .start()
        .await;
    let key = hub.service_key(&["credits:check", "credits:deduct"]).await;
    for transport in [Transport::WebSocket, Transport::Http] {
        let what = format!("{transport:?}");
        let user = hub.user_with(100).await.to_string();
        let client = connect(&hub, transport, &key, &user).await;
        let tools = client.list_all_tools().await.unwrap();
        let tool = |name: &str| tools.iter().find(|t| t.name == name).unwrap().clone();

        let result = call_tool(&client, "get_balance", json!({})).await;
        let body = conforms(&tool("get_balance"), &result, &what);
        assert_eq!(body["available_balance"], 100, "{what}");
        assert_eq!(body["user_id"], user.as_str(), "{what}");

        let result = call_tool(&client, "generate_video", json!({ "prompt": "a cat" })).await;
        let body = conforms(&tool("generate_video"), &result, &what);
        assert_eq!(body["credits_charged"], 30, "{what}");
        // The same JSON as text, for older clients, and the video as a resource link.
        let text = result.content[0].as_text().unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text.text).unwrap(), body);
        let link = result
            .content
            .iter()
            .find_map(|c| match c {
                ContentBlock::ResourceLink(link) => Some(link.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{what}: a resource_link in {:?}", result.content));
        assert_eq!(link.uri, body["download_url"].as_str().unwrap());
        assert_eq!(link.mime_type.as_deref(), Some("video/mp4"));
        let video = body["video_id"].as_str().unwrap().to_owned();

        let result = call_tool(&client, "get_video_status", json!({ "video_id": video })).await;
        let body = conforms(&tool("get_video_status"), &result, &what);
        assert_eq!(body["status"], "completed", "{what}");
        assert!(
            body["thumbnail_url"]
                .as_str()
                .unwrap()
                .ends_with("&variant=thumbnail")
        );

        let result = call_tool(
            &client,
            "chat",
            json!({ "messages": [{ "role": "user", "content": "hello" }] }),
        )
        .await;
        let body = conforms(&tool("chat"), &result, &what);
        assert_eq!(body["content"], "Hello there!", "{what}");

        // Failures: the schema still holds, and a program reads the code.
        let failures = [
            (
                "generate_video",
                json!({ "prompt": "please fail" }),
                "provider_failed",
            ),
            (
                "get_video_status",
                json!({ "video_id": "video_9.AAAAAAAAAAAAAAAAAAAAAA" }),
                "video_not_found",
            ),
            (
                "chat",
                json!({ "messages": [{ "role": "user", "content": "fail" }] }),
                "provider_failed",
            ),
            (
                "generate_video",
                json!({ "prompt": "a long one", "seconds": 12 }),
                "insufficient_credits",
            ),
        ];
        for (name, arguments, code) in failures {
            let result = call_tool(&client, name, arguments).await;
            assert_eq!(result.is_error, Some(true), "{what}: {name}");
            let body = conforms(&tool(name), &result, &what);
            assert_eq!(body["error"]["code"], code, "{what}: {name}: {body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        }
        client.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn ending_a_streamable_http_session_answers_204() {
    let google = FakeGoogle::start().await;
    let openai = FakeOpenAi::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .openai(&openai)
        .start()
        .await;
    let key = hub.service_key(&["credits:check"]).await;
    let user = hub.user_with(10).await.to_string();
    let http = reqwest::Client::new();
    let url = format!("{}/mcp", hub.gateway_url);
    let send = |method: reqwest::Method, session: Option<&str>, body: Option<Value>| {
        let mut request = http
            .request(method, &url)
            .bearer_auth(&key)
            .header("x-user-id", &user)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18");
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };
    let started = send(
        reqwest::Method::POST,
        None,
        Some(
            json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": { "name": "raw", "version": "1" } } }),
        ),
    )
    .await
    .unwrap();
    assert_eq!(started.status(), StatusCode::OK);
    let session = started.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let ended = send(reqwest::Method::DELETE, Some(&session), None)
        .await
        .unwrap();
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);
    assert!(ended.bytes().await.unwrap().is_empty());
    // It is over: the session is not there any more.
    let after = send(
        reqwest::Method::POST,
        Some(&session),
        Some(json!({ "jsonrpc": "2.0", "id": 2, "method": "ping" })),
    )
    .await
    .unwrap();
    assert_eq!(after.status(), StatusCode::NOT_FOUND);
}
