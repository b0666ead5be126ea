//! The gateway as a reverse proxy: unknown paths, bodies and query strings, a service that is
//! down, oversized bodies (with and without a length), WebSocket pass-through, TLS, CORS, the
//! security headers, request ids and metrics.

mod headers;
mod routing;
mod transport;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{Engine, SpawnedHub, count, engines};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A WebSocket upstream that echoes text frames, standing in for the MCP service.
async fn echo_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = socket.next().await {
                    if let Message::Text(text) = message {
                        let reply = format!("echo:{}", text.as_str());
                        if socket.send(Message::text(reply)).await.is_err() {
                            break;
                        }
                    }
                }
            });
        }
    });
    format!("http://{address}")
}
