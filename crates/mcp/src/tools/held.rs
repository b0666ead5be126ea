//! A call's hold on credits, and how it settles: captured when the work is done, released when
//! it fails, and settled by itself when the call ends early (dropped, cancelled, disconnected).

use std::sync::Arc;

use serde_json::Value;

use crate::Shared;
use crate::identity::Identity;

/// What becomes of a hold whose call ends without settling it (the client cancelled or went
/// away, and the handler was dropped).
enum Unsettled {
    /// Nothing was produced: free it.
    Release,
    /// The provider accepted the work: charge what was used so far.
    Capture(i64),
    /// A video the provider accepted: follow it to its end and settle then.
    FollowVideo(String),
}

/// A hold for one call; dropped unsettled, it settles itself as `on_drop` says (a dropped video
/// is first asked to stop at the provider, and released if it did).
pub(super) struct Held {
    shared: Arc<Shared>,
    identity: Identity,
    id: String,
    settled: bool,
    on_drop: Unsettled,
}

impl Held {
    /// The hold `id`, which the ledger made for `identity`; released if dropped unsettled.
    pub(super) fn new(shared: Arc<Shared>, identity: Identity, id: String) -> Self {
        Self {
            shared,
            identity,
            id,
            settled: false,
            on_drop: Unsettled::Release,
        }
    }

    /// From now on, a call that ends unsettled is charged `amount`.
    pub(super) fn charge_if_dropped(&mut self, amount: i64) {
        self.on_drop = Unsettled::Capture(amount);
    }

    /// From now on, a call that ends unsettled follows the provider's video to its end.
    pub(super) fn follow_if_dropped(&mut self, video: &str) {
        self.on_drop = Unsettled::FollowVideo(video.to_owned());
    }

    pub(super) async fn capture(mut self, amount: Option<i64>) -> Result<Value, String> {
        self.settled = true;
        capture(&self.shared, &self.identity, &self.id, amount).await
    }

    pub(super) async fn release(mut self) {
        self.settled = true;
        release(&self.shared, &self.identity, &self.id).await;
    }

    /// Gives the hold to a task that follows the video to its end and settles it then.
    pub(super) fn follow(mut self, video: String) {
        self.settled = true;
        let (shared, identity, id) = (
            self.shared.clone(),
            self.identity.clone(),
            std::mem::take(&mut self.id),
        );
        let deadline = tokio::time::Instant::now() + shared.config.video_deadline;
        tokio::spawn(async move { follow_video(&shared, &identity, &id, &video, deadline).await });
    }
}

async fn capture(
    shared: &Shared,
    identity: &Identity,
    id: &str,
    amount: Option<i64>,
) -> Result<Value, String> {
    let answer = shared.core.capture(identity, id, amount).await?;
    if answer.status.is_success() {
        shared
            .metrics
            .captured(answer.body["captured"].as_u64().unwrap_or(0));
        Ok(answer.body)
    } else {
        Err(answer.message())
    }
}

async fn release(shared: &Shared, identity: &Identity, id: &str) {
    match shared.core.release(identity, id).await {
        Ok(answer) if answer.status.is_success() => {}
        Ok(answer) => tracing::warn!(reservation = id, status = %answer.status, "release refused"),
        Err(e) => {
            tracing::warn!(reservation = id, error = %e, "could not release; the hold expires")
        }
    }
}

/// Captures in the background what a call that ended early used.
async fn capture_used(shared: &Shared, identity: &Identity, id: &str, amount: i64) {
    if let Err(e) = capture(shared, identity, id, Some(amount)).await {
        tracing::warn!(reservation = id, error = %e, "could not charge an ended call");
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (shared, identity, id) = (
            self.shared.clone(),
            self.identity.clone(),
            std::mem::take(&mut self.id),
        );
        let on_drop = std::mem::replace(&mut self.on_drop, Unsettled::Release);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            match on_drop {
                Unsettled::Release => release(&shared, &identity, &id).await,
                Unsettled::Capture(amount) => capture_used(&shared, &identity, &id, amount).await,
                // The client went away: as a cancellation, stopped if the provider can stop it.
                Unsettled::FollowVideo(video) if shared.cancel_video(&video).await => {
                    release(&shared, &identity, &id).await;
                }
                Unsettled::FollowVideo(video) => {
                    let deadline = tokio::time::Instant::now() + shared.config.video_deadline;
                    follow_video(&shared, &identity, &id, &video, deadline).await;
                }
            }
        });
    }
}

/// How a video the provider accepted ends for its hold: captured when it is made, released when
/// it fails or the provider confirms it was cancelled. Past `deadline` the hub asks the provider
/// to stop it, and charges it unless the provider confirms.
async fn follow_video(
    shared: &Shared,
    identity: &Identity,
    hold: &str,
    video: &str,
    deadline: tokio::time::Instant,
) {
    loop {
        if tokio::time::Instant::now() >= deadline {
            if shared.cancel_video(video).await {
                release(shared, identity, hold).await;
            } else if let Err(e) = capture(shared, identity, hold, None).await {
                tracing::warn!(reservation = hold, error = %e, "could not charge an abandoned video");
            }
            return;
        }
        tokio::time::sleep(shared.config.video_poll).await;
        let Ok(status) = shared.video(video).await else {
            continue;
        };
        match status["status"].as_str().unwrap_or_default() {
            "completed" => {
                if let Err(e) = capture(shared, identity, hold, None).await {
                    tracing::warn!(reservation = hold, error = %e, "could not charge a finished video");
                }
                return;
            }
            "failed" | "cancelled" | "expired" => {
                release(shared, identity, hold).await;
                return;
            }
            _ => {}
        }
    }
}
