//! Who reaches the MCP service: no credential, a browser's code as a subprotocol, revocations
//! that end a WebSocket and stop the calls after them, and a key's scopes held by core.

use super::*;

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

#[tokio::test]
async fn a_key_that_may_only_look_gets_no_video_however_mcp_reaches_core() {
    // Core's scope check is what stops it, whether MCP calls core's routes in process (`hub up`)
    // or over HTTP: the key's scopes travel with the gateway's vouching either way.
    for core_over_http in [false, true] {
        let google = FakeGoogle::start().await;
        let openai = FakeOpenAi::start().await;
        let hub = SpawnedHub::builder(Engine::Sqlite, &google)
            .openai(&openai)
            .mcp_core_over_http(core_over_http)
            .start()
            .await;
        let user = hub.user_with(100).await.to_string();
        let key = hub.service_key(&["credits:check"]).await;
        let client = connect(&hub, Transport::WebSocket, &key, &user).await;
        let what = format!("core over HTTP: {core_over_http}");

        let (error, body) = call(&client, "get_balance", json!({})).await;
        assert!(!error, "{what}: looking is allowed: {body}");
        let (error, body) = call(&client, "generate_video", json!({ "prompt": "free" })).await;
        assert!(error, "{what}: {body}");
        assert!(
            body.as_str().is_some_and(|m| m.contains("credits:deduct")),
            "{what}: refused for the missing scope: {body}"
        );
        assert_eq!(openai.submitted(), 0, "{what}: no job reached the provider");
        assert_eq!(
            balance(&hub, &user).await,
            json!({ "balance": 100, "held": 0 }),
            "{what}: nothing held or spent"
        );
        client.cancel().await.unwrap();
    }
}

/// The MCP service reads at most 8 KiB from a WebSocket at a time: a message of 200 KiB (a tool
/// call padded with JSON whitespace) arrives whole over many reads, and is answered.
#[tokio::test]
async fn a_message_larger_than_one_read_arrives_whole() {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google).start().await;
    let key = hub.service_key(&["credits:check"]).await;
    let user = hub.user_with(42).await.to_string();
    let mut socket = raw_session(
        &hub,
        &[("x-api-key", key.as_str()), ("x-user-id", user.as_str())],
    )
    .await;
    let padding = " ".repeat(200 * 1024);
    let call = format!(
        r#"{{"jsonrpc":"2.0","id":5,{padding}"method":"tools/call","params":{{"name":"get_balance","arguments":{{}}}}}}"#
    );
    socket.send(Message::text(call)).await.unwrap();
    let reply = next_text(&mut socket).await;
    assert_eq!(reply["id"], 5, "{reply}");
    assert_ne!(reply["result"]["isError"], true, "{reply}");
    assert!(reply["result"].to_string().contains("42"), "{reply}");
}
