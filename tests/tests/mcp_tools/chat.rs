//! Chat: held at an estimate, charged by the reported usage, and charged for what was used
//! when it is cancelled or hung up on mid-stream.

use super::*;

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
