//! `generate_video` and `get_video_status`: a video is held at its price, submitted to the
//! provider, followed while it renders, and charged only when it is made.

use rmcp::model::{CallToolResult, ContentBlock, ProgressNotificationParam};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::held::Held;
use super::{McpServer, figure};
use crate::identity::Identity;
use crate::prices::VideoPrice;
use crate::results::{VideoMade, VideoStatus, done, failed};
use crate::video_ids::plain_provider_id;

/// How long a video's hold lives: as long as a hold may.
const VIDEO_HOLD_SECONDS: i64 = 3600;

/// `generate_video`'s input.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct VideoRequest {
    /// What the video shows.
    pub prompt: String,
    /// Length in seconds (the provider's choice when absent).
    #[serde(default)]
    pub seconds: Option<u32>,
    /// Size, e.g. `1280x720` (the provider's choice when absent).
    #[serde(default)]
    pub size: Option<String>,
}

/// `get_video_status`'s input.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct VideoStatusRequest {
    /// The id `generate_video` returned.
    pub video_id: String,
}

impl McpServer {
    /// Fresh links to a video (a hub video id) for its owner.
    fn links(&self, video_id: &str, user: Uuid) -> crate::results::VideoLinks {
        let now = crate::video_links::unix_now();
        let (download_url, expires) = self.shared.video_links.link(video_id, user, now);
        let expires_at = i64::try_from(expires)
            .ok()
            .and_then(|seconds| chrono::DateTime::from_timestamp(seconds, 0))
            .unwrap_or_default();
        crate::results::VideoLinks {
            thumbnail_url: format!("{download_url}&variant=thumbnail"),
            download_url,
            download_expires_at: expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }

    /// The priced video a request names (the table's first when it names no size or length),
    /// or -32602 before anything is held.
    fn video_price(&self, request: &VideoRequest) -> Result<VideoPrice, ErrorData> {
        let prices = &self.shared.config.video_prices;
        let default = prices
            .first()
            .ok_or_else(|| ErrorData::internal_error("no videos are priced", None))?;
        let seconds = request.seconds.unwrap_or(default.seconds);
        let size = request.size.as_deref().unwrap_or(&default.size);
        prices
            .iter()
            .find(|p| p.seconds == seconds && p.size == size)
            .cloned()
            .ok_or_else(|| {
                let offered: Vec<String> = prices
                    .iter()
                    .map(|p| format!("{} {}s", p.size, p.seconds))
                    .collect();
                ErrorData::invalid_params(
                    format!(
                        "no {size} video of {seconds} seconds is offered; choose one of: {}",
                        offered.join(", ")
                    ),
                    None,
                )
            })
    }

    /// `generate_video`: holds the price, submits the job and follows it to its end.
    pub(super) async fn make_video(
        &self,
        request: VideoRequest,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let identity = self.caller(&ctx)?;
        let _permit = match self.permit() {
            Ok(permit) => permit,
            Err(busy) => return Ok(busy),
        };
        if request.prompt.trim().is_empty() {
            return Err(ErrorData::invalid_params("prompt must not be empty", None));
        }
        let video = self.video_price(&request)?;
        let user = identity.user_id;
        let mut held = match self.hold_video(identity, &request, &video).await {
            Ok(held) => held,
            Err(short) => return Ok(short),
        };
        let id = match self.submit_video(&request, &video).await {
            Ok(id) => id,
            Err(failure) => {
                held.release().await;
                return Ok(failure);
            }
        };
        // The provider accepted the work: it is charged when it is made, whatever the client does.
        held.follow_if_dropped(&id);
        let video_id = self.shared.video_ids.issue(user, &id);
        Ok(self.await_video(held, id, &video_id, user, &ctx).await)
    }

    /// Holds a video's price, or the tool error that says why not.
    async fn hold_video(
        &self,
        identity: Identity,
        request: &VideoRequest,
        video: &VideoPrice,
    ) -> Result<Held, CallToolResult> {
        let price = video.credits;
        self.hold(
            identity,
            "sora2",
            price,
            VIDEO_HOLD_SECONDS,
            json!({ "tool": "generate_video", "prompt": request.prompt,
                    "size": video.size, "seconds": video.seconds }),
            |available| {
                format!(
                    "Not enough credits: this video costs {price}, and {available} are available."
                )
            },
        )
        .await
    }

    /// Submits the job to the provider: its (plain) id, or the tool error that says why not.
    async fn submit_video(
        &self,
        request: &VideoRequest,
        video: &VideoPrice,
    ) -> Result<String, CallToolResult> {
        let job = json!({
            "model": "sora-2",
            "prompt": request.prompt,
            "seconds": video.seconds.to_string(),
            "size": video.size,
        });
        let submitted = self
            .shared
            .openai(reqwest::Method::POST, "/videos")
            .json(&job)
            .timeout(std::time::Duration::from_secs(30))
            .send()
            .await;
        let answer: Value = match submitted {
            Ok(response) if response.status().is_success() => {
                response.json().await.unwrap_or(Value::Null)
            }
            Ok(response) => {
                return Err(failed(
                    "provider_failed",
                    format!(
                        "The video service refused the job ({}); nothing was charged.",
                        response.status()
                    ),
                ));
            }
            Err(e) => {
                return Err(failed(
                    "provider_unavailable",
                    format!("The video service is not answering ({e}); nothing was charged."),
                ));
            }
        };
        answer["id"]
            .as_str()
            .filter(|id| plain_provider_id(id))
            .map(str::to_owned)
            .ok_or_else(|| {
                failed(
                    "provider_failed",
                    "The video service gave no usable job id; nothing was charged.",
                )
            })
    }

    /// Polls the provider's video `id` until it is made, fails, is cancelled or runs out of
    /// time, reporting progress, and settles the hold as it ends.
    async fn await_video(
        &self,
        held: Held,
        id: String,
        video_id: &str,
        user: Uuid,
        ctx: &RequestContext<RoleServer>,
    ) -> CallToolResult {
        let deadline = tokio::time::Instant::now() + self.shared.config.video_deadline;
        loop {
            tokio::select! {
                () = ctx.ct.cancelled() => {
                    let said = self.stop_video(held, id).await;
                    return failed("cancelled", format!("Cancelled. {said}"));
                }
                () = tokio::time::sleep(self.shared.config.video_poll) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                let said = self.stop_video(held, id).await;
                return failed("timed_out", format!("The video took too long. {said}"));
            }
            let status = match self.shared.video(&id).await {
                Ok(status) => status,
                Err(e) => {
                    tracing::warn!(video = %id, error = %e, "polling a video failed; trying again");
                    continue;
                }
            };
            let state = status["status"].as_str().unwrap_or("unknown").to_owned();
            report_progress(ctx, &status, video_id, &state).await;
            match state.as_str() {
                "completed" => return self.video_completed(held, video_id, user).await,
                "failed" | "cancelled" | "expired" => {
                    held.release().await;
                    let reason = status["error"]["message"].as_str().unwrap_or(&state);
                    return failed(
                        "provider_failed",
                        format!("The video failed ({reason}); nothing was charged."),
                    );
                }
                _ => {}
            }
        }
    }

    /// A video the provider made: its hold is captured, and its result carries its links.
    async fn video_completed(&self, held: Held, video_id: &str, user: Uuid) -> CallToolResult {
        match held.capture(None).await {
            Ok(settled) => self.video_made(VideoMade {
                links: self.links(video_id, user),
                video_id: video_id.to_owned(),
                status: "completed".into(),
                credits_charged: figure(&settled, "captured"),
                available_balance: figure(&settled, "available_balance"),
            }),
            Err(e) => failed(
                "charge_failed",
                format!("The video is ready but could not be charged: {e}"),
            ),
        }
    }

    /// Stops a video the provider accepted: released if the provider confirms it stopped;
    /// otherwise followed to its end and charged when it is made. What became of it, in words.
    async fn stop_video(&self, held: Held, id: String) -> &'static str {
        if self.shared.cancel_video(&id).await {
            held.release().await;
            "Stopped at the video service; nothing was charged."
        } else {
            held.follow(id);
            "The video service did not confirm it stopped the video: it is charged when it is made, and released if it fails."
        }
    }

    /// A made video's result, with a link to it as a resource a client can show.
    fn video_made(&self, made: VideoMade) -> CallToolResult {
        let link = rmcp::model::Resource::new(
            made.links.download_url.clone(),
            format!("{}.mp4", made.video_id),
        )
        .with_title("Your video")
        .with_description(format!(
            "The video, streamed by the hub; the link opens until {}.",
            made.links.download_expires_at
        ))
        .with_mime_type("video/mp4");
        let mut result = done(&made);
        result.content.push(ContentBlock::resource_link(link));
        result
    }

    /// `get_video_status`: where one of the caller's videos stands.
    pub(super) async fn video_status(
        &self,
        request: VideoStatusRequest,
        identity: &Identity,
    ) -> CallToolResult {
        let Some(video) = self
            .shared
            .video_ids
            .open(identity.user_id, &request.video_id)
        else {
            return failed(
                "video_not_found",
                "No video of yours has this id: use the video_id generate_video gave you.",
            );
        };
        match self.shared.video(video).await {
            Ok(status) => {
                let state = status["status"].as_str().unwrap_or("unknown").to_owned();
                let links =
                    (state == "completed").then(|| self.links(&request.video_id, identity.user_id));
                done(&VideoStatus {
                    video_id: request.video_id,
                    status: state,
                    progress: status["progress"].as_f64(),
                    links,
                })
            }
            Err(e) => failed("provider_unavailable", e),
        }
    }
}

/// Tells the client how far the video has come, when it asked for progress.
async fn report_progress(
    ctx: &RequestContext<RoleServer>,
    status: &Value,
    video_id: &str,
    state: &str,
) {
    let Some(token) = ctx.meta.get_progress_token() else {
        return;
    };
    let progress = status["progress"].as_f64().unwrap_or(0.0);
    let _ = ctx
        .peer
        .notify_progress(
            ProgressNotificationParam::new(token, progress)
                .with_total(100.0)
                .with_message(format!("video {video_id}: {state}")),
        )
        .await;
}
