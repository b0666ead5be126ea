//! The MCP service through the gateway, with the official rmcp client over both transports
//! (WebSocket at /api/mcp/ws, Streamable HTTP at /mcp), on every engine: tools listed, each tool's
//! success, an upstream failure (hold released, balance unchanged), cancellation mid-call and a
//! dropped connection (released), a user without enough credits (tool error, nothing held), and
//! concurrent calls that together exceed the balance (never below zero).

mod access;
mod billing;
mod chat;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

async fn wait_until(hub: &SpawnedHub, user: &str, expected: Value) {
    for _ in 0..100 {
        if balance(hub, user).await == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{user}: {} is not {expected}", balance(hub, user).await);
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
