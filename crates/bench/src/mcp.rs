//! `hub-bench mcp`: `get_balance` tool calls over open WebSocket connections, one call in flight
//! per connection, as raw JSON-RPC text frames (the cheapest client, so the figure is the
//! server's): throughput and latency percentiles as JSON, like the HTTP load generators.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(url: &str, headers: &[(String, String)]) -> anyhow::Result<Socket> {
    let mut request = url.into_client_request()?;
    for (name, value) in headers {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes())?,
            http::HeaderValue::from_str(value)?,
        );
    }
    // As the server does (crates/mcp/src/ws.rs): tungstenite zero-fills its whole read buffer
    // before every read, 128 KiB by default, which cost this client a third of its CPU per call
    // on the machine it shares with the hub. And no Nagle, as the HTTP generators.
    let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
        .await
        .with_context(|| format!("cannot open {url}"))?;
    let hello = json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": { "name": "hub-bench", "version": env!("CARGO_PKG_VERSION") } } });
    socket.send(Message::text(hello.to_string())).await?;
    answer(&mut socket, 0).await?;
    let ready = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    socket.send(Message::text(ready.to_string())).await?;
    Ok(socket)
}

/// Reads until the response to `id` (skipping pings and notifications).
async fn answer(socket: &mut Socket, id: u64) -> anyhow::Result<Value> {
    loop {
        let frame = socket.next().await.context("the connection closed")??;
        if let Message::Text(text) = frame {
            let value: Value = serde_json::from_str(text.as_str())?;
            if value["id"] == id {
                anyhow::ensure!(value.get("error").is_none(), "error: {value}");
                return Ok(value);
            }
        }
    }
}

pub async fn run(
    url: &str,
    headers: &[(String, String)],
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<()> {
    let mut sockets = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        sockets.push(open(url, headers).await?);
    }
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = tokio::task::JoinSet::new();
    for mut socket in sockets {
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut id = 1u64;
            while Instant::now() < deadline {
                let call = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call",
                                   "params": { "name": "get_balance", "arguments": {} } });
                let sent = Instant::now();
                let ok = match socket.send(Message::text(call.to_string())).await {
                    Ok(()) => answer(&mut socket, id)
                        .await
                        .is_ok_and(|v| v["result"]["isError"] != true),
                    Err(_) => false,
                };
                latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                if !ok {
                    errors += 1;
                }
                id += 1;
            }
            (latencies, errors)
        });
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some(done) = workers.join_next().await {
        let (mine, failed) = done?;
        latencies.extend(mine);
        errors += failed;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        f64::from(latencies[index]) / 1000.0
    };
    println!(
        "{}",
        json!({
            "requests": latencies.len(),
            "seconds": elapsed,
            "requests_per_second": latencies.len() as f64 / elapsed,
            "p50_ms": percentile(0.50),
            "p99_ms": percentile(0.99),
            "errors": errors,
            "concurrency": concurrency,
            "url": url,
        })
    );
    anyhow::ensure!(errors == 0, "{errors} calls failed");
    Ok(())
}
