//! HTTPS, served by the gateway itself (rustls with the ring provider) when `TLS_CERT_PATH` and
//! `TLS_KEY_PATH` name a PEM certificate chain and key.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::IntoMakeServiceWithConnectInfo;
use axum_server::tls_rustls::RustlsConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

use crate::TlsFiles;

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

/// Serves `app` over TLS on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    files: &TlsFiles,
    app: IntoMakeServiceWithConnectInfo<axum::Router, SocketAddr>,
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
    axum_server::from_tcp_rustls(listener, config)?
        .handle(handle)
        .serve(app)
        .await
}
