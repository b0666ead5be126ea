//! Admission: what the gateway decides before it spends work on a connection or a request. Open
//! connections are capped across every serving thread (`MAX_CONNECTIONS`), and one over the cap
//! is answered 503 and closed rather than left waiting in the backlog; failed credentials are
//! counted per client address, or per service key when one the gateway knows is presented, and
//! once that budget is spent, requests with credentials are refused before any lookup.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use hub_http::ApiError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::AppState;
use crate::identity::{self, KnownKey, Recognised};

/// The open connections of every serving thread, against one cap: an atomic counter.
#[derive(Debug)]
pub struct Connections {
    open: AtomicUsize,
    max: usize,
}

impl Connections {
    /// At most `max` connections open at once.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            max,
        })
    }

    /// A place for one more connection, held until it closes; `None` when every place is taken.
    pub fn admit(self: &Arc<Self>) -> Option<Slot> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(self.clone()))
    }
}

/// One open connection's place under the cap; given back when dropped.
#[derive(Debug)]
pub struct Slot(Arc<Connections>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long a refused connection is given to take its answer.
const REFUSAL_GRACE: Duration = Duration::from_secs(2);

/// Answers a connection over the cap with 503, `Retry-After: 1` and the shared error shape,
/// without parsing its request, and closes it. The answer waits for the request's first bytes (a
/// client that has sent nothing takes an answer for a protocol error), and what the client sends
/// is read and dropped until it closes, so that closing does not reset the connection before it
/// reads the answer; all of it within a moment.
pub async fn refuse(mut stream: TcpStream) {
    let request_id = hub_http::new_request_id();
    let body = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_connections",
        "The gateway has as many connections open as it serves; try again in a moment.",
    )
    .body(request_id.to_str().unwrap_or_default())
    .to_string();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nx-request-id: {}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        request_id.to_str().unwrap_or_default(),
        body.len()
    );
    let answer = async {
        let mut sink = [0u8; 4096];
        if stream.read(&mut sink).await? == 0 {
            return Ok(());
        }
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await?;
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(REFUSAL_GRACE, answer).await;
}

/// Whose failed credentials a request's count against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A service key the gateway knows is live (the GPT form: one key for every ChatGPT user,
    /// who share OpenAI's few addresses with everyone else's GPTs).
    Key(String),
    /// The client address (an IPv6 client's /64).
    Address(IpAddr),
}

impl Subject {
    /// The rate-limit key of its failed-credential budget.
    pub fn budget_key(&self) -> String {
        match self {
            Self::Key(id) => format!("verify-failures:key:{id}"),
            Self::Address(address) => format!("verify-failures:address:{address}"),
        }
    }
}

/// The subject of a request's failed credentials as far as the gateway knows without asking the
/// database, and whether a presented service key is still to be read (after the budget allows).
/// A key that was live when last read is read again at once: no one can make up such a key, and
/// a shared address's spent budget must not stop it.
pub async fn failure_subject(
    state: &AppState,
    headers: &HeaderMap,
    client: IpAddr,
) -> Result<(Subject, bool), ApiError> {
    let Some(key) = identity::presented_key(headers) else {
        return Ok((Subject::Address(client), false));
    };
    Ok(match identity::known_key(state, key) {
        KnownKey::Live(caller) => (subject_of(caller, client), false),
        KnownKey::WasLive => (
            identity::look_up_key(state, key)
                .await?
                .map_or(Subject::Address(client), |caller| {
                    subject_of(caller, client)
                }),
            false,
        ),
        KnownKey::Unknown => (Subject::Address(client), false),
        KnownKey::NotSeen => (Subject::Address(client), true),
    })
}

fn subject_of(caller: Recognised, client: IpAddr) -> Subject {
    match caller {
        Recognised::ServiceKey { id, .. } => Subject::Key(id),
        Recognised::User(_) | Recognised::App { .. } => Subject::Address(client),
    }
}

/// After the budget allowed it: reads a presented key not seen lately, and the subject becomes
/// the key if it is live.
pub async fn read_key_now(
    state: &AppState,
    headers: &HeaderMap,
    subject: Subject,
) -> Result<Subject, ApiError> {
    let Some(key) = identity::presented_key(headers) else {
        return Ok(subject);
    };
    Ok(match identity::look_up_key(state, key).await? {
        Some(Recognised::ServiceKey { id, .. }) => Subject::Key(id),
        _ => subject,
    })
}
