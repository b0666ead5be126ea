//! A TCP proxy a test can cut and restore, to play a dependency that goes away and comes back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards connections to a target while up; while cut, drops every connection at once.
pub struct ToggleProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    cuts: watch::Sender<u64>,
}

impl ToggleProxy {
    /// Starts forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let up = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0u64);
        let accepting = up.clone();
        let cut_signal = cuts.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !accepting.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cut = cut_signal.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { addr, up, cuts }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl ToggleProxy {
    /// A proxy in front of the Redis at `HUB_TEST_REDIS_URL`, or `None` when that is not set
    /// (a failure instead with `HUB_TEST_REQUIRE_SERVICES=1`). Returns the proxy and the
    /// `redis://` URL that goes through it.
    pub async fn in_front_of_test_redis(what: &str) -> Option<(Self, String)> {
        if !crate::service_configured("HUB_TEST_REDIS_URL", what) {
            return None;
        }
        let url = std::env::var("HUB_TEST_REDIS_URL").expect("HUB_TEST_REDIS_URL");
        let host = url
            .trim_start_matches("redis://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let target = tokio::net::lookup_host(host)
            .await
            .expect("resolve HUB_TEST_REDIS_URL")
            .next()
            .expect("an address for HUB_TEST_REDIS_URL");
        let proxy = Self::start(target).await;
        let through = format!("redis://{}", proxy.addr);
        Some((proxy, through))
    }
}
