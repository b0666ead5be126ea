//! The gateway under abuse: bodies that stall or trickle, anonymous work limited by address
//! before a body is read, a cap on open connections over every serving thread, the header
//! deadline over HTTPS, failed credentials refused before any lookup (and made-up keys
//! remembered as unknown), a shared address that cannot lock out ChatGPT's users, and
//! `Connection` names that cannot take the gateway's own headers off.

mod connections;
mod credentials;

use std::time::{Duration, Instant};

use hub_gateway::limits::PerMinute;
use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{Engine, SpawnedHub};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn address(hub: &hub_test_support::SpawnedHub) -> String {
    hub.gateway_url.trim_start_matches("http://").to_owned()
}

/// Reads until the end of a response's head.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let read = async {
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            head.push(byte[0]);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("a response head within 5 s");
    String::from_utf8_lossy(&head).into_owned()
}

/// Reads everything until the gateway closes the connection (within 5 s).
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut all))
        .await
        .expect("the gateway closes the connection")
        .expect("read");
    String::from_utf8_lossy(&all).into_owned()
}

/// The JSON body of a whole response read as text.
fn json_body(response: &str) -> Value {
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// The value of a counter on the gateway's `/metrics` (0 when it has no line yet); waits for a
/// place under the connection cap.
async fn counter(hub: &hub_test_support::SpawnedHub, line_start: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let r = hub
            .http
            .get(format!("{}/metrics", hub.gateway_url))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::OK {
            break r.text().await.unwrap();
        }
        assert!(Instant::now() < deadline, "/metrics: {}", r.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    text.lines()
        .find_map(|line| line.strip_prefix(line_start))
        .map_or(0, |value| value.trim().parse().unwrap())
}

const KEY_LOOKUPS: &str = r#"hub_credential_lookups_total{service="gateway",store="service_key"}"#;
const SESSION_LOOKUPS: &str = r#"hub_credential_lookups_total{service="gateway",store="session"}"#;
