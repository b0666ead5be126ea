//! The gateway under abuse: bodies that stall or trickle, anonymous work limited by address
//! before a body is read, a cap on open connections over every serving thread, the header
//! deadline over HTTPS, failed credentials refused before any lookup (and made-up keys
//! remembered as unknown), a shared address that cannot lock out ChatGPT's users, and
//! `Connection` names that cannot take the gateway's own headers off.

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

#[tokio::test]
async fn a_body_that_stalls_or_trickles_is_408_and_the_connection_closes() {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .gateway(|config| {
            config.body_read_timeout = Duration::from_millis(400);
        })
        .start()
        .await;
    // Headers, a little of the body, then nothing.
    let mut stalled = TcpStream::connect(address(&hub)).await.unwrap();
    stalled
        .write_all(b"POST /api/auth/register HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\"")
        .await
        .unwrap();
    let started = Instant::now();
    let answer = read_to_close(&mut stalled).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(350));
    let body = json_body(&answer);
    assert_eq!(body["error"]["code"], "request_timeout", "{answer}");
    assert!(body["error"]["request_id"].is_string(), "{answer}");

    // A byte every 50 ms keeps the body moving, but not past its deadline.
    let trickling = TcpStream::connect(address(&hub)).await.unwrap();
    let (mut reader, mut writer) = trickling.into_split();
    writer
        .write_all(b"POST /api/mcp/v1/credits/check HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        for _ in 0..200 {
            if writer.write_all(b"1\r\n \r\n").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut answer))
        .await
        .expect("the gateway closes a trickling connection")
        .ok();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the deadline covers the whole body"
    );
    trickle.abort();

    // A prompt client is served as ever.
    let r = hub
        .call(
            Method::POST,
            "/api/auth/login",
            &[],
            Some(&json!({ "email": "nobody@example.com", "password": "wrong password" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.json);
}

#[tokio::test]
async fn an_address_without_credentials_is_limited_before_its_body_is_read() {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .gateway(|config| {
            config.limits.default = PerMinute(2);
        })
        .start()
        .await;
    for _ in 0..2 {
        let r = hub
            .call(
                Method::POST,
                "/api/auth/login",
                &[],
                Some(&json!({ "email": "nobody@example.com", "password": "wrong password" })),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.json);
    }
    // The third announces a body and never sends it: it is refused at once, not read.
    let mut stream = TcpStream::connect(address(&hub)).await.unwrap();
    stream
        .write_all(b"POST /api/auth/login HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    assert!(head.to_lowercase().contains("retry-after:"), "{head}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_of_every_thread_together_get_503_and_are_closed() {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .gateway(|config| {
            config.threads = 3;
            config.max_connections = 3;
        })
        .start()
        .await;
    let request = b"GET /health HTTP/1.1\r\nHost: hub\r\n\r\n";
    // Three connections, served (so accepted), and kept open: whichever threads took them, the
    // cap of three counts them all.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(address(&hub)).await.unwrap();
        stream.write_all(request).await.unwrap();
        let head = read_head(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        held.push(stream);
    }
    for _ in 0..3 {
        let mut refused = TcpStream::connect(address(&hub)).await.unwrap();
        refused.write_all(request).await.unwrap();
        let answer = read_to_close(&mut refused).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("retry-after: 1"), "{answer}");
        let body = json_body(&answer);
        assert_eq!(body["error"]["code"], "too_many_connections", "{answer}");
        assert!(body["error"]["request_id"].is_string());
    }
    // A closed connection gives its place back.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut stream = TcpStream::connect(address(&hub)).await.unwrap();
        stream.write_all(request).await.unwrap();
        let head = read_head(&mut stream).await;
        if head.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the place was never given back: {head}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
    let refused = counter(&hub, r#"hub_connections_refused_total{service="gateway"}"#).await;
    assert!(refused >= 3, "{refused}");
}

#[tokio::test]
async fn https_has_the_header_deadline_and_the_connection_cap_too() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .gateway(|config| {
            config.tls = Some(hub_gateway::TlsFiles {
                cert_path: cert_path.clone(),
                key_path: key_path.clone(),
            });
            config.header_read_timeout = Duration::from_millis(300);
            config.max_connections = 1;
        })
        .start()
        .await;
    let port: u16 = hub.gateway_url.rsplit(':').next().unwrap().parse().unwrap();
    let der = certified.cert.der().clone();
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut tls = rustls::ClientConnection::new(
            std::sync::Arc::new(config),
            "localhost".try_into().unwrap(),
        )
        .unwrap();
        while tls.is_handshaking() {
            tls.complete_io(&mut tcp).unwrap();
        }
        // The only place under the cap is taken: one more connection is closed at once, before
        // its handshake (the server would otherwise wait 10 s for a ClientHello).
        let mut other = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        other
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut sink = [0u8; 64];
        let read = other.read(&mut sink);
        let closed = match &read {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        };
        assert!(closed, "a connection over the cap is closed: {read:?}");

        // A head that never ends loses the connection.
        let mut stream = rustls::Stream::new(&mut tls, &mut tcp);
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            .unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        let ended = stream.read_to_end(&mut answer);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "closed by the header deadline, not the test's read timeout: {ended:?}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn naming_the_gateways_headers_in_connection_does_not_take_them_off() {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google).start().await;
    let user = hub.user_with(25).await.to_string();
    let key = hub.service_key(&["credits:check"]).await;
    let body = r#"{"service":"sora2-video-generation","cost":5}"#;
    let request = format!(
        "POST /api/mcp/v1/credits/check HTTP/1.1\r\nHost: hub\r\nX-API-Key: {key}\r\nX-User-ID: {user}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close, X-Hub-Internal, X-User-ID, X-Hub-Caller, X-Hub-Scopes, X-Hub-Service-Key, X-Request-Id\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(address(&hub)).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(
        json_body(&answer),
        json!({ "sufficient": true, "balance": 25 })
    );
}

#[tokio::test]
async fn failed_credentials_from_one_address_are_refused_before_any_lookup() {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .gateway(|config| {
            config.limits.verify_failures = PerMinute(3);
        })
        .start()
        .await;
    let check = json!({ "service": "sora2", "cost": 1 });
    for i in 0..3 {
        let junk = format!("hub_sk_made_up_{i}");
        let r = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/check",
                &[("x-api-key", &junk)],
                Some(&check),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.json);
    }
    assert_eq!(counter(&hub, KEY_LOOKUPS).await, 3);
    let junk_code = format!("VERIFIED-{}", "A".repeat(32));
    let junk_jwt = "Bearer eyJhbGciOiJFZERTQSIsImtpZCI6Im5vcGUifQ.e30.c2ln".to_owned();
    let junk_key = "Bearer hub_sk_made_up_again".to_owned();
    let attempts: [(&str, &str); 4] = [
        ("x-api-key", "hub_sk_made_up_9"),
        ("x-session-token", &junk_code),
        ("authorization", &junk_jwt),
        ("authorization", &junk_key),
    ];
    for (name, value) in attempts {
        let r = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/check",
                &[(name, value)],
                Some(&check),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{name}: {:?}",
            r.json
        );
        assert!(r.headers.contains_key("retry-after"), "{name}");
        assert_eq!(r.json["error"]["code"], "rate_limited");
    }
    assert_eq!(counter(&hub, KEY_LOOKUPS).await, 3, "no key was read");
    assert_eq!(
        counter(&hub, SESSION_LOOKUPS).await,
        0,
        "no session was read"
    );
}

#[tokio::test]
async fn a_made_up_key_is_remembered_as_unknown() {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google).start().await;
    let check = json!({ "service": "sora2", "cost": 1 });
    for _ in 0..5 {
        let r = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/check",
                &[("authorization", "Bearer hub_sk_made_up")],
                Some(&check),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.json);
    }
    assert_eq!(
        counter(&hub, KEY_LOOKUPS).await,
        1,
        "the database was asked once"
    );
}

#[tokio::test]
async fn one_abuser_behind_a_shared_address_does_not_lock_out_chatgpt_users() {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .gateway(|config| {
            config.limits.verify_failures = PerMinute(3);
        })
        .start()
        .await;
    let (code, _) = hub.signed_in_user().await;
    let gpt = format!("Bearer {}", hub.service_key(&["gpt"]).await);
    let gpt_headers = [("authorization", gpt.as_str())];
    let verify = |token: &str| json!({ "session_token": token });
    let r = hub
        .call(
            Method::POST,
            "/api/auth/verify-session",
            &gpt_headers,
            Some(&verify(&code)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);

    // Someone else at the same address (OpenAI's, for every GPT) guesses codes until refused.
    for i in 0..3 {
        let guess = format!("VERIFIED-{i:032}");
        let r = hub
            .call(
                Method::GET,
                "/api/auth/verify-session",
                &[("x-session-token", &guess)],
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let guess = format!("VERIFIED-{:032}", 7);
    let r = hub
        .call(
            Method::GET,
            "/api/auth/verify-session",
            &[("x-session-token", &guess)],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);

    // The GPT's users go on: its failures are counted by its key.
    let r = hub
        .call(
            Method::POST,
            "/api/auth/verify-session",
            &gpt_headers,
            Some(&verify(&code)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    let r = hub
        .call(
            Method::POST,
            "/api/mcp/v1/credits/check",
            &gpt_headers,
            Some(&json!({ "service": "sora2", "cost": 1, "session_token": code })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);

    // And the key has a budget of its own.
    for i in 0..3 {
        let guess = format!("VERIFIED-{i:032}");
        let r = hub
            .call(
                Method::POST,
                "/api/auth/verify-session",
                &gpt_headers,
                Some(&verify(&guess)),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.json);
    }
    let r = hub
        .call(
            Method::POST,
            "/api/auth/verify-session",
            &gpt_headers,
            Some(&verify(&code)),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
}
