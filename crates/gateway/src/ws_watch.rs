//! A joined WebSocket outlives no revocation of the credential it was opened with: the gateway
//! keeps the credential, checks it again every `WEBSOCKET_RECHECK_SECONDS` (at most 60) and
//! before passing on anything the client sends once the last check is a second old (so a paid
//! tool call is never sent under a credential revoked more than a second before), and when
//! it is no longer good (a revoked session code or service key, an access token of an ended
//! epoch or past its expiry) ends the connection with a WebSocket close frame that says why.
//!
//! The close frame goes to the client between two of the service's frames, never inside one: the
//! service-to-client bytes are followed frame by frame (RFC 6455 §5.2 headers) while they are
//! copied. The service's side is then dropped, so the MCP session behind it ends too.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::AppState;
use crate::identity;

/// WebSocket close code 1008: policy violation.
const POLICY_VIOLATION: u16 = 1008;
/// How old the last check may be when the client sends something; older, it is checked first.
const CHECK_BEFORE_SENDING_AFTER: Duration = Duration::from_secs(1);

/// The credential an upgraded connection was opened with, and how often to check it.
pub(crate) struct Watch {
    state: AppState,
    credentials: HeaderMap,
    every: Duration,
}

impl Watch {
    /// Keeps the request's credential headers (before they are taken off for the service).
    pub(crate) fn new(state: &AppState, headers: &HeaderMap) -> Self {
        let mut credentials = HeaderMap::new();
        for name in &identity::CREDENTIAL_HEADERS {
            if let Some(value) = headers.get(name) {
                credentials.insert(name, value.clone());
            }
        }
        Self {
            every: state.config.websocket_recheck,
            state: state.clone(),
            credentials,
        }
    }

    /// Whether the credential still names a caller. A store that does not answer is not a
    /// revocation: the connection goes on, and the next check asks again.
    async fn still_good(&self) -> bool {
        match identity::resolve(&self.state, &self.credentials).await {
            Ok(caller) => caller.is_some(),
            Err(refused) => refused.error.status == StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Where the service-to-client byte stream stands in its frames.
#[derive(Debug, Default)]
struct Frames {
    header: [u8; 14],
    have: usize,
    remaining: u64,
}

impl Frames {
    /// Between two frames.
    fn at_boundary(&self) -> bool {
        self.have == 0 && self.remaining == 0
    }

    /// The payload length, once the header in `header[..have]` is whole.
    fn header_done(&self) -> Option<u64> {
        if self.have < 2 {
            return None;
        }
        let short = self.header[1] & 0x7f;
        let extended = match short {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.header[1] & 0x80 == 0 { 0 } else { 4 };
        if self.have < 2 + extended + mask {
            return None;
        }
        Some(match extended {
            2 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
            8 => {
                let mut length = [0u8; 8];
                length.copy_from_slice(&self.header[2..10]);
                u64::from_be_bytes(length)
            }
            _ => u64::from(short),
        })
    }

    /// Takes bytes from the start of `bytes` up to the end of the current frame or of `bytes`,
    /// whichever comes first; returns how many.
    fn advance(&mut self, bytes: &[u8]) -> usize {
        let mut used = 0;
        loop {
            if self.remaining > 0 {
                let left = u64::try_from(bytes.len() - used).unwrap_or(u64::MAX);
                let take = self.remaining.min(left);
                self.remaining -= take;
                return used + usize::try_from(take).unwrap_or(0);
            }
            if used == bytes.len() {
                return used;
            }
            self.header[self.have] = bytes[used];
            self.have += 1;
            used += 1;
            if let Some(payload) = self.header_done() {
                self.have = 0;
                self.remaining = payload;
                if payload == 0 {
                    return used;
                }
            }
        }
    }
}

/// A close frame from the server (unmasked) with `code` and `reason` (at most 123 bytes).
fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let reason = &reason.as_bytes()[..reason.len().min(123)];
    let mut frame = vec![0x88, u8::try_from(2 + reason.len()).unwrap_or(125)];
    frame.extend_from_slice(&code.to_be_bytes());
    frame.extend_from_slice(reason);
    frame
}

/// Copies bytes both ways until either end closes, or until the watched credential is no longer
/// good; then the client gets a close frame saying so.
pub(crate) async fn join(client: Upgraded, service: Upgraded, watch: Watch) {
    let (mut client_in, mut client_out) = tokio::io::split(TokioIo::new(client));
    let (mut service_in, mut service_out) = tokio::io::split(TokioIo::new(service));
    let mut from_client = vec![0u8; 16 * 1024];
    let mut from_service = vec![0u8; 16 * 1024];
    let mut frames = Frames::default();
    let mut check = tokio::time::interval(watch.every);
    check.tick().await;
    let mut revoked = false;
    let mut last_checked = tokio::time::Instant::now();
    // A service stalled mid-frame does not keep a revoked connection open.
    let mut give_up = tokio::time::Instant::now() + Duration::from_secs(3600);
    loop {
        if revoked && frames.at_boundary() {
            let close = close_frame(
                POLICY_VIOLATION,
                "credential revoked or expired: sign in again",
            );
            let _ = client_out.write_all(&close).await;
            let _ = client_out.shutdown().await;
            tracing::info!("closed a WebSocket whose credential is no longer good");
            return;
        }
        tokio::select! {
            read = client_in.read(&mut from_client), if !revoked => {
                let n = match read {
                    Ok(n) if n > 0 => n,
                    _ => return,
                };
                // What the client sends (a paid tool call among it) goes on only under a
                // credential checked within the last second: a revoked one gets nothing more
                // through, whatever the periodic check's interval.
                if last_checked.elapsed() >= CHECK_BEFORE_SENDING_AFTER {
                    last_checked = tokio::time::Instant::now();
                    if !watch.still_good().await {
                        revoked = true;
                        give_up = tokio::time::Instant::now() + Duration::from_secs(5);
                        continue;
                    }
                }
                if service_out.write_all(&from_client[..n]).await.is_err() {
                    return;
                }
            }
            read = service_in.read(&mut from_service) => {
                let n = match read {
                    Ok(n) if n > 0 => n,
                    _ => return,
                };
                let mut chunk = &from_service[..n];
                while !chunk.is_empty() {
                    let step = frames.advance(chunk);
                    if client_out.write_all(&chunk[..step]).await.is_err() {
                        return;
                    }
                    chunk = &chunk[step..];
                    // A revocation waits for the end of the frame under way, and no longer.
                    if revoked && frames.at_boundary() {
                        break;
                    }
                }
            }
            _ = check.tick(), if !revoked => {
                last_checked = tokio::time::Instant::now();
                revoked = !watch.still_good().await;
                give_up = tokio::time::Instant::now() + Duration::from_secs(5);
            }
            () = tokio::time::sleep_until(give_up), if revoked => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: usize) -> Vec<u8> {
        let mut frame = vec![0x81];
        match payload {
            0..=125 => frame.push(u8::try_from(payload).unwrap()),
            126..=65535 => {
                frame.push(126);
                frame.extend_from_slice(&u16::try_from(payload).unwrap().to_be_bytes());
            }
            _ => {
                frame.push(127);
                frame.extend_from_slice(&u64::try_from(payload).unwrap().to_be_bytes());
            }
        }
        frame.extend(std::iter::repeat_n(b'x', payload));
        frame
    }

    #[test]
    fn frame_boundaries_are_found_whatever_the_chunks() {
        let stream: Vec<u8> = [frame(5), frame(0), frame(300), frame(70_000), frame(1)].concat();
        let ends = [7, 9, 9 + 304, 9 + 304 + 70_010, 9 + 304 + 70_010 + 3];
        for chunk in [1, 2, 3, 7, 100, 4096, stream.len()] {
            let mut frames = Frames::default();
            let mut at = 0;
            let mut seen = Vec::new();
            for piece in stream.chunks(chunk) {
                let mut piece = piece;
                while !piece.is_empty() {
                    let step = frames.advance(piece);
                    at += step;
                    piece = &piece[step..];
                    if frames.at_boundary() {
                        seen.push(at);
                    }
                }
            }
            seen.dedup();
            assert_eq!(seen, ends, "chunks of {chunk}");
        }
    }

    #[test]
    fn the_close_frame_is_well_formed() {
        let frame = close_frame(1008, "revoked");
        assert_eq!(frame[0], 0x88);
        assert_eq!(usize::from(frame[1]), frame.len() - 2);
        assert_eq!(u16::from_be_bytes([frame[2], frame[3]]), 1008);
        assert_eq!(&frame[4..], b"revoked");
    }
}
