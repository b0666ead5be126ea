//! Connections under abuse: bodies that stall or trickle, the cap on open connections over every
//! serving thread, the header deadline over HTTPS, and `Connection` names that cannot take the
//! gateway's own headers off.

use super::*;

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
