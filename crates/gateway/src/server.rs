//! The gateway's own servers: plain HTTP on hyper's connections (on one runtime or on a thread
//! per core, as nginx's workers), and HTTPS through [`crate::tls`]. A forwarded request goes
//! straight to the proxy; the gateway's own routes, and every request when CORS is configured,
//! go through the router and its layers.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use tokio::net::{TcpListener, TcpStream};

use crate::{AppState, admission, proxy, router, routes, tls};

/// Serves (HTTPS when TLS files are configured) until `shutdown` resolves, then finishes the
/// requests in flight (see [`crate::App::run_until`]).
pub(crate) async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = state.config.tls.clone();
    let threads = state.config.threads;
    match tls {
        None if threads > 1 => serve_on_threads(listener, &state, threads, shutdown).await,
        None => serve_plain(listener, state, shutdown).await,
        Some(files) => {
            let limits = tls::Limits {
                header_read_timeout: state.config.header_read_timeout,
                connections: state.connections.clone(),
            };
            let app = router::router(state).into_make_service_with_connect_info::<SocketAddr>();
            tls::serve(listener, &files, app, limits, shutdown).await
        }
    }
}

/// Plain HTTP on the caller's runtime: hyper's HTTP/1 connections (upgrades allowed), each
/// request to the proxy directly or, for the gateway's own routes and whenever CORS is configured,
/// through the router and its layers. When `shutdown` resolves it stops accepting, lets every
/// connection finish the request in flight, and returns once all have.
async fn serve_plain(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router::router(state.clone());
    let header_read_timeout = state.config.header_read_timeout;
    let (stop, stopping) = tokio::sync::watch::channel(());
    let (open, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = accept(&listener) => accepted,
            () = &mut shutdown => break,
        };
        let Some(slot) = state.connections.admit() else {
            state.metrics.connections_refused.inc();
            tokio::spawn(admission::refuse(tcp));
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (state, router) = (state.clone(), router.clone());
        let service =
            hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let (state, router) = (state.clone(), router.clone());
                async move {
                    let request = request.map(Body::new);
                    Ok::<_, std::convert::Infallible>(answer(state, router, peer, request).await)
                }
            });
        // Every connection holds a sender until it has finished.
        let open = open.clone();
        let mut stopping = stopping.clone();
        // A client that is slow to send a request's head loses the connection (slow-header
        // attacks hold connections open that way).
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
            .with_upgrades();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended");
            }
            drop(slot);
            drop(open);
        });
    }
    drop(listener);
    let _ = stop.send(());
    drop(open);
    // Every connection holds a sender; `None` once the last one has finished.
    let _ = all_closed.recv().await;
    Ok(())
}

/// The next connection; a client that gave up before it was accepted is passed over, and a
/// failure such as running out of file descriptors waits a second instead of spinning.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(pair) => return pair,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionRefused
                ) => {}
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// One request of a plain HTTP connection: to the proxy directly when it is forwarded and no
/// CORS is configured, else through the router.
async fn answer(
    state: AppState,
    router: axum::Router,
    peer: SocketAddr,
    mut request: http::Request<Body>,
) -> Response {
    if state.config.cors_allowed_origins.is_empty() {
        let route = routes::find(request.uri().path());
        if !route.is_some_and(routes::Route::is_own) {
            // Boxed: the proxy's future is large, and would otherwise be moved whole into
            // hyper's slot for the request's future.
            return Box::pin(proxy::forward_direct(state, peer, route, request)).await;
        }
    }
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    match tower::ServiceExt::oneshot(router, request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Plain HTTP on `threads` threads with a current-thread runtime each; when `shutdown` resolves
/// (or this future is dropped) every thread drains its requests in flight, and this returns once
/// all have.
async fn serve_on_threads(
    listener: TcpListener,
    state: &AppState,
    threads: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener.into_std()?;
    let (stop, stopped) = tokio::sync::watch::channel(());
    let mut finished = Vec::with_capacity(threads);
    for n in 0..threads {
        let listener = listener.try_clone()?;
        let state = state.clone();
        let mut stopped = stopped.clone();
        let (done, finished_one) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("gateway-{n}"))
            .spawn(move || {
                let served = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|runtime| {
                        runtime.block_on(async move {
                            let listener = TcpListener::from_std(listener)?;
                            let state = state.for_this_thread().await;
                            // A dropped sender counts as the signal too.
                            let signal = async move {
                                let _ = stopped.changed().await;
                            };
                            serve_plain(listener, state, signal).await
                        })
                    });
                let _ = done.send(served);
            })?;
        finished.push(finished_one);
    }
    shutdown.await;
    let _ = stop.send(());
    for finished_one in finished {
        match finished_one.await {
            Ok(served) => served?,
            Err(_) => return Err(std::io::Error::other("a serving thread panicked")),
        }
    }
    Ok(())
}
