//! MCP over WebSocket: one JSON-RPC message per text frame. rmcp has no WebSocket transport, so
//! this adapter turns the socket into the sink and stream rmcp serves on. Malformed frames are
//! answered with JSON-RPC's parse error and the connection stays up; pings keep it alive.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use rmcp::ServiceExt;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use tokio::sync::mpsc;

use crate::identity::{Identity, identify};
use crate::{McpServer, Shared};

/// How much one read from the connection takes at most. tungstenite zero-fills this much of its
/// buffer before every read (readiness polls that find nothing included); at its default of
/// 128 KiB that was more than half of the instructions of a `get_balance` call. MCP messages are
/// a few hundred bytes; a larger one takes more reads.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// How often the server pings an idle connection.
const PING_EVERY: Duration = Duration::from_secs(20);

/// `GET /api/mcp/ws`: refused before the upgrade unless the gateway vouched for the caller.
pub async fn upgrade(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let identity = match identify(&headers, &shared.credential) {
        Ok(identity) => identity,
        Err(error) => return error.into_response(),
    };
    let limit = shared.config.max_message_bytes;
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(READ_BUFFER_BYTES)
        .protocols(["mcp"])
        .on_upgrade(move |socket| serve(shared, identity, socket))
}

/// Why a message could not go out.
#[derive(Debug)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the WebSocket connection is closed")
    }
}

impl std::error::Error for Closed {}

async fn serve(shared: Arc<Shared>, identity: Identity, socket: WebSocket) {
    let (mut socket_tx, mut socket_rx) = socket.split();
    // One writer: rmcp's answers, parse errors and pings all go through this channel.
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(message) = out_rx.recv().await {
            if socket_tx.send(message).await.is_err() {
                break;
            }
        }
        let _ = socket_tx.close().await;
    });
    let (in_tx, mut in_rx) = mpsc::channel::<ClientJsonRpcMessage>(64);
    let errors = out_tx.clone();
    let reader = tokio::spawn(async move {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                frame = socket_rx.next() => {
                    let Some(Ok(frame)) = frame else { break };
                    match frame {
                        Message::Text(text) => match serde_json::from_str::<ClientJsonRpcMessage>(text.as_str()) {
                            Ok(message) => {
                                if in_tx.send(message).await.is_err() {
                                    break;
                                }
                            }
                            Err(e) => {
                                let answer = json_rpc_error(text.as_str(), &e);
                                if errors.send(Message::text(answer)).await.is_err() {
                                    break;
                                }
                            }
                        },
                        Message::Close(_) => break,
                        // Pongs are answered by the library; binary frames are not MCP.
                        _ => {}
                    }
                }
                _ = ping.tick() => {
                    if errors.send(Message::Ping(Vec::new().into())).await.is_err() {
                        break;
                    }
                }
            }
        }
    });

    let sink =
        futures_util::sink::unfold(out_tx, |out_tx, message: ServerJsonRpcMessage| async move {
            let text = serde_json::to_string(&message).map_err(|_| Closed)?;
            out_tx.send(Message::text(text)).await.map_err(|_| Closed)?;
            Ok::<_, Closed>(out_tx)
        });
    let stream = futures_util::stream::poll_fn(move |cx| in_rx.poll_recv(cx));
    let server = McpServer::new(shared, Some(identity));
    match server.serve((Box::pin(sink), stream)).await {
        Ok(running) => {
            let _ = running.waiting().await;
        }
        Err(e) => tracing::debug!(error = %e, "an MCP session over WebSocket did not start"),
    }
    reader.abort();
    writer.abort();
}

/// A frame that is not a JSON-RPC message: -32700 when it is not JSON at all, -32600 when it is
/// JSON but not a request, notification or response MCP knows (with its id, when it has one).
fn json_rpc_error(text: &str, error: &serde_json::Error) -> String {
    let (code, message, id) = match serde_json::from_str::<serde_json::Value>(text) {
        Err(_) => (-32700, "Parse error".to_owned(), serde_json::Value::Null),
        Ok(value) => (
            -32600,
            format!("Invalid request: {error}"),
            value.get("id").cloned().unwrap_or(serde_json::Value::Null),
        ),
    };
    serde_json::json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
        .to_string()
}
