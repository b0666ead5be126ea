//! `hub-bench bare-proxy`: the least a proxy built on hyper can do, as a second baseline beside
//! nginx in the proxying benchmark. It forwards every request to one upstream and does nothing
//! else (no route, no limits, no headers of its own but `Host`, no metrics, no timeouts), with
//! the gateway's shape: a current-thread runtime per serving thread accepting on one socket, and
//! per thread a stack of hyper client connections to the upstream. Its ratio to nginx is what
//! hyper allows on the machine; the gateway's ratio to it is what the gateway's own work costs.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use http::{HeaderValue, Request, Response, header};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

type Idle = Arc<Mutex<Vec<SendRequest<Incoming>>>>;
type Error = Box<dyn std::error::Error + Send + Sync>;

/// Serves on `addr` with `threads` serving threads until the process is stopped.
pub fn serve(addr: SocketAddr, upstream: SocketAddr, threads: usize) -> anyhow::Result<()> {
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    listener.set_nonblocking(true)?;
    let host = HeaderValue::from_str(&upstream.to_string())?;
    let mut serving = Vec::new();
    for _ in 0..threads.max(1) {
        let (listener, host) = (listener.try_clone()?, host.clone());
        serving.push(std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(accept(listener, upstream, host))
        }));
    }
    for thread in serving {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("a serving thread panicked"))??;
    }
    Ok(())
}

/// One serving thread: every accepted connection served by hyper, every request forwarded.
async fn accept(
    listener: std::net::TcpListener,
    upstream: SocketAddr,
    host: HeaderValue,
) -> anyhow::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    let idle = Idle::default();
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let (idle, host) = (idle.clone(), host.clone());
        let service = hyper::service::service_fn(move |request| {
            forward(idle.clone(), upstream, host.clone(), request)
        });
        let connection =
            hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service);
        tokio::spawn(connection);
    }
}

/// Sends `request` on an idle connection that is ready, or on a new one, and keeps the
/// connection for the next request.
async fn forward(
    idle: Idle,
    upstream: SocketAddr,
    host: HeaderValue,
    mut request: Request<Incoming>,
) -> Result<Response<Incoming>, Error> {
    request.headers_mut().insert(header::HOST, host);
    let ready = {
        let mut idle = idle.lock().map_err(|_| "the pool's lock is poisoned")?;
        let mut found = None;
        let mut i = idle.len();
        while i > 0 && found.is_none() {
            i -= 1;
            if idle[i].is_closed() {
                idle.swap_remove(i);
            } else if idle[i].is_ready() {
                found = Some(idle.swap_remove(i));
            }
        }
        found
    };
    let mut sender = match ready {
        Some(sender) => sender,
        None => {
            let tcp = TcpStream::connect(upstream).await?;
            let _ = tcp.set_nodelay(true);
            let (sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(connection);
            sender
        }
    };
    let response = sender.send_request(request).await?;
    idle.lock()
        .map_err(|_| "the pool's lock is poisoned")?
        .push(sender);
    Ok(response)
}
