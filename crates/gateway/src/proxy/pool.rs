//! The connections to the services: HTTP/1.1 over TCP, kept open and reused, one pool per
//! serving thread (as nginx's `upstream { keepalive }` is per worker). A request takes the most
//! recently used connection that is ready for one, or opens a new one; the connection goes back
//! as soon as the service's response headers arrive, and hyper marks it ready again once that
//! response's body has been read. A request that could not be written on a reused connection
//! (the service closed it meanwhile) is sent once more on a new one.
//!
//! It is built on hyper's own client connections. hyper-util's pooled client did the same with
//! more per request: a pool shared across threads behind a lock, a key hashed per request, the
//! URI rewritten and a task spawned per request to put the connection back.

use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderValue, Request, Response, Uri, header};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Idle connections kept per service and serving thread; more are closed when they come back.
const MAX_IDLE_PER_SERVICE: usize = 256;

/// How long opening a connection to a service may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a request did not get its response.
#[derive(Debug)]
pub enum SendError {
    /// The request's URI names no service (`http://host:port`).
    NoService,
    /// The service could not be reached.
    Connect(std::io::Error),
    /// The exchange failed (the body's own error, a limit passed, among them, is its source).
    Http(hyper::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoService => f.write_str("the request names no http service"),
            Self::Connect(e) => write!(f, "cannot connect: {e}"),
            Self::Http(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::NoService => None,
            Self::Connect(e) => Some(e),
            Self::Http(e) => Some(e),
        }
    }
}

/// A serving thread's connections, by service.
#[derive(Default)]
pub struct Client {
    services: Mutex<Vec<Service>>,
}

/// One service's address, its `Host` header (made once), and its idle connections.
struct Service {
    authority: Authority,
    host: Option<HeaderValue>,
    idle: Vec<SendRequest<Body>>,
}

impl Client {
    /// Sends `request`, whose URI is absolute (`http://service:port/path?query`), to that
    /// service: the request line carries the path and query, `Host` the service's address.
    pub async fn request(
        &self,
        mut request: Request<Body>,
    ) -> Result<Response<Incoming>, SendError> {
        let uri = std::mem::take(request.uri_mut());
        let mut parts = uri.into_parts();
        let authority = match (&parts.scheme, parts.authority.take()) {
            (Some(scheme), Some(authority)) if *scheme == http::uri::Scheme::HTTP => authority,
            _ => return Err(SendError::NoService),
        };
        let path = parts
            .path_and_query
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *request.uri_mut() = Uri::from(path);
        let (idle, host) = self.checkout(&authority);
        if let Some(host) = host {
            request.headers_mut().insert(header::HOST, host);
        }
        let reused = match idle {
            Some(mut sender) => match sender.try_send_request(request).await {
                Ok(response) => {
                    self.put_back(&authority, sender);
                    return Ok(response);
                }
                Err(mut failed) => match failed.take_message() {
                    // Not written: the connection had closed; once more on a new one.
                    Some(unsent) => unsent,
                    None => return Err(SendError::Http(failed.into_error())),
                },
            },
            None => request,
        };
        let mut sender = connect(&authority).await?;
        let response = sender.send_request(reused).await.map_err(SendError::Http)?;
        self.put_back(&authority, sender);
        Ok(response)
    }

    /// The most recently used connection to `authority` that is ready for a request (closed
    /// ones met on the way are dropped), and the service's `Host`.
    fn checkout(&self, authority: &Authority) -> (Option<SendRequest<Body>>, Option<HeaderValue>) {
        let Ok(mut services) = self.services.lock() else {
            return (None, HeaderValue::from_str(authority.as_str()).ok());
        };
        let service = match services.iter().position(|s| s.is(authority)) {
            Some(at) => &mut services[at],
            None => {
                services.push(Service {
                    authority: authority.clone(),
                    host: HeaderValue::from_str(authority.as_str()).ok(),
                    idle: Vec::new(),
                });
                services.last_mut().expect("just pushed")
            }
        };
        let idle = &mut service.idle;
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            if idle[i].is_closed() {
                idle.swap_remove(i);
            } else if idle[i].is_ready() {
                return (Some(idle.swap_remove(i)), service.host.clone());
            }
        }
        (None, service.host.clone())
    }

    /// Keeps `sender` for the next request to `authority` (it becomes ready when the response
    /// in flight on it has been read), unless the pool is full or the connection ends.
    fn put_back(&self, authority: &Authority, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let Ok(mut services) = self.services.lock() else {
            return;
        };
        if let Some(service) = services.iter_mut().find(|s| s.is(authority))
            && service.idle.len() < MAX_IDLE_PER_SERVICE
        {
            service.idle.push(sender);
        }
    }
}

impl Service {
    /// Whether this is the service at `authority` (the same text: every request to a service
    /// is addressed from its one configured URL, so no case folding is needed).
    fn is(&self, authority: &Authority) -> bool {
        self.authority.as_str() == authority.as_str()
    }
}

/// A new connection to `authority`, driven by its own task (upgrades allowed: a WebSocket
/// joined through the gateway continues on it).
async fn connect(authority: &Authority) -> Result<SendRequest<Body>, SendError> {
    let address = (
        authority.host().trim_matches(['[', ']']),
        authority.port_u16().unwrap_or(80),
    );
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| SendError::Connect(std::io::ErrorKind::TimedOut.into()))?
        .map_err(SendError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(SendError::Http)?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "connection to a service ended");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A service that answers `ok` to every request on a connection, or to the first only and
    /// then closes it without a word (as a service restarting does); it counts connections and
    /// keeps each request's head.
    async fn service(
        one_per_connection: bool,
    ) -> (String, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (accepted, heads) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(vec![])));
        let (counted, kept) = (accepted.clone(), heads.clone());
        tokio::spawn(async move {
            loop {
                let (mut tcp, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, Ordering::SeqCst);
                let kept = kept.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0; 4096];
                    while let Ok(n) = tcp.read(&mut buffer).await {
                        if n == 0 {
                            return;
                        }
                        let head = String::from_utf8_lossy(&buffer[..n]).into_owned();
                        kept.lock().unwrap().push(head);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if tcp.write_all(answer).await.is_err() || one_per_connection {
                            return;
                        }
                    }
                });
            }
        });
        (base, accepted, heads)
    }

    async fn get(client: &Client, url: &str) -> Result<String, SendError> {
        let request = Request::get(url).body(Body::empty()).unwrap();
        let response = client.request(request).await?;
        let body = http_body_util::BodyExt::collect(response.into_body()).await;
        Ok(String::from_utf8_lossy(&body.map_err(SendError::Http)?.to_bytes()).into_owned())
    }

    #[tokio::test]
    async fn one_connection_serves_requests_in_turn_with_the_path_and_the_services_host() {
        let (base, accepted, heads) = service(false).await;
        let client = Client::default();
        for n in 0..5 {
            assert_eq!(
                get(&client, &format!("{base}/thing?n={n}")).await.unwrap(),
                "ok"
            );
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "the connection is reused"
        );
        let heads = heads.lock().unwrap();
        let authority = base.trim_start_matches("http://");
        assert!(
            heads[4].starts_with("GET /thing?n=4 HTTP/1.1\r\n"),
            "{}",
            heads[4]
        );
        assert!(
            heads[4]
                .to_ascii_lowercase()
                .contains(&format!("host: {authority}\r\n")),
            "{}",
            heads[4]
        );
    }

    #[tokio::test]
    async fn a_connection_the_service_closed_is_never_a_failed_request() {
        let (base, accepted, _) = service(true).await;
        let client = Client::default();
        for _ in 0..5 {
            assert_eq!(get(&client, &format!("{base}/")).await.unwrap(), "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn concurrent_requests_each_get_a_connection_and_leave_it_for_the_next() {
        let (base, accepted, _) = service(false).await;
        let client = Arc::new(Client::default());
        for _ in 0..3 {
            let calls: Vec<_> = (0..8)
                .map(|_| {
                    let (client, url) = (client.clone(), format!("{base}/"));
                    tokio::spawn(async move { get(&client, &url).await.unwrap() })
                })
                .collect();
            for call in calls {
                assert_eq!(call.await.unwrap(), "ok");
            }
        }
        let opened = accepted.load(Ordering::SeqCst);
        assert!(
            (1..=8).contains(&opened),
            "{opened} connections for 8 at a time"
        );
    }

    #[tokio::test]
    async fn a_service_that_is_not_there_is_a_connect_error_and_a_relative_uri_none() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let client = Client::default();
        assert!(matches!(
            get(&client, &url).await,
            Err(SendError::Connect(_))
        ));
        assert!(matches!(
            get(&client, "/relative").await,
            Err(SendError::NoService)
        ));
    }
}
