//! HTTPS, served by the gateway itself (rustls with the ring provider) when `TLS_CERT_PATH` and
//! `TLS_KEY_PATH` name a PEM certificate chain and key.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::connect_info::IntoMakeServiceWithConnectInfo;
use axum_server::accept::Accept;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::TlsFiles;
use crate::admission::{Connections, Slot};

/// How long requests in flight may take to finish once shutdown begins.
const DRAIN: Duration = Duration::from_secs(30);

/// The server configuration from the PEM files: TLS 1.2 and 1.3, HTTP/1.1.
pub fn server_config(files: &TlsFiles) -> std::io::Result<rustls::ServerConfig> {
    let invalid = |what: &str, e: &dyn std::fmt::Display| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{what}: {e}"))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert_path)
        .map_err(|e| invalid(&format!("TLS_CERT_PATH {}", files.cert_path.display()), &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(&format!("TLS_CERT_PATH {}", files.cert_path.display()), &e))?;
    let key = PrivateKeyDer::from_pem_file(&files.key_path)
        .map_err(|e| invalid(&format!("TLS_KEY_PATH {}", files.key_path.display()), &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid("TLS certificate and key", &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// What the HTTPS server holds its clients to, as the plain one does.
pub struct Limits {
    /// `HEADER_READ_TIMEOUT_SECONDS`.
    pub header_read_timeout: Duration,
    /// The open connections, under `MAX_CONNECTIONS` with the plain server's.
    pub connections: Arc<Connections>,
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    files: &TlsFiles,
    app: IntoMakeServiceWithConnectInfo<axum::Router, SocketAddr>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = RustlsConfig::from_config(Arc::new(server_config(files)?));
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(DRAIN));
    });
    let listener = listener.into_std()?;
    // The cap is taken before the handshake, the costly part: a connection over it is closed at
    // once (an answer in HTTP would need the handshake first).
    let acceptor = RustlsAcceptor::new(config).acceptor(Capped(limits.connections));
    let mut server = axum_server::from_tcp(listener)?.acceptor(acceptor);
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    server.handle(handle).serve(app).await
}

/// Takes a place under the connection cap for each accepted connection, or closes it.
#[derive(Clone)]
struct Capped(Arc<Connections>);

impl<S> Accept<TcpStream, S> for Capped {
    type Stream = Counted;
    type Service = S;
    type Future = std::future::Ready<std::io::Result<(Counted, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        std::future::ready(match self.0.admit() {
            Some(slot) => Ok((
                Counted {
                    stream,
                    _slot: slot,
                },
                service,
            )),
            None => Err(std::io::Error::other(
                "MAX_CONNECTIONS connections are open",
            )),
        })
    }
}

/// A connection that holds its place under the cap while it is open.
struct Counted {
    stream: TcpStream,
    _slot: Slot,
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
