//! `GET /api/mcp/v1/videos/{video_id}/content`: a video's file (or its thumbnail) for whoever
//! holds a link the hub signed for its owner (see [`crate::video_links`]). No headers are needed,
//! so a click in a chat window opens it. The hub fetches the file from the provider with the
//! operator's key and streams it on as it comes, never whole in memory; `Range` passes through
//! both ways, so a player can seek.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use hub_http::ApiError;
use serde::Deserialize;
use uuid::Uuid;

use crate::Shared;
use crate::video_links::{Refusal, unix_now};

/// How long the provider may take to start answering.
const PROVIDER_ANSWER: Duration = Duration::from_secs(30);
/// How long the provider's file may stall before the download is ended.
const PROVIDER_STALL: Duration = Duration::from_secs(60);

/// The link's query: its signature, and which file.
#[derive(Debug, Deserialize)]
pub struct LinkQuery {
    user: Option<String>,
    expires: Option<String>,
    signature: Option<String>,
    variant: Option<String>,
}

/// The files of a video the provider keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Video,
    Thumbnail,
    Spritesheet,
}

impl Variant {
    fn parse(name: Option<&str>) -> Option<Self> {
        match name {
            None | Some("video") => Some(Self::Video),
            Some("thumbnail") => Some(Self::Thumbnail),
            Some("spritesheet") => Some(Self::Spritesheet),
            Some(_) => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Video => "video",
            Self::Thumbnail => "thumbnail",
            Self::Spritesheet => "spritesheet",
        }
    }

    /// The type and file extension when the provider names none.
    fn default_type(self) -> (&'static str, &'static str) {
        match self {
            Self::Video => ("video/mp4", "mp4"),
            Self::Thumbnail => ("image/webp", "webp"),
            Self::Spritesheet => ("image/jpeg", "jpg"),
        }
    }
}

fn forged() -> Response {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "invalid_link",
        "This link is not one the hub made for this video: ask get_video_status for a new one.",
    )
    .into_response()
}

/// The handler.
pub async fn serve(
    State(shared): State<Arc<Shared>>,
    Path(video_id): Path<String>,
    Query(link): Query<LinkQuery>,
    headers: HeaderMap,
) -> Response {
    let (Some(user), Some(expires), Some(signature)) = (
        link.user.as_deref().and_then(|u| u.parse::<Uuid>().ok()),
        link.expires.as_deref().and_then(|e| e.parse::<u64>().ok()),
        link.signature.as_deref(),
    ) else {
        return forged();
    };
    match shared
        .video_links
        .check(&video_id, user, expires, signature, unix_now())
    {
        Ok(()) => {}
        Err(Refusal::Forged) => return forged(),
        Err(Refusal::Expired) => {
            return ApiError::new(
                StatusCode::GONE,
                "link_expired",
                "This link has expired: ask get_video_status for a new one.",
            )
            .into_response();
        }
    }
    // Signed links are only made for ids that open for their user; checked again all the same.
    let Some(provider_id) = shared.video_ids.open(user, &video_id) else {
        return forged();
    };
    let Some(variant) = Variant::parse(link.variant.as_deref()) else {
        return ApiError::bad_request(
            "invalid_variant",
            "variant is video (the default), thumbnail or spritesheet.",
        )
        .into_response();
    };
    fetch(&shared, provider_id, variant, &headers).await
}

/// Streams the provider's file on, with the headers a player needs.
async fn fetch(
    shared: &Shared,
    provider_id: &str,
    variant: Variant,
    asked: &HeaderMap,
) -> Response {
    match ask_provider(shared, provider_id, variant, asked).await {
        Ok(answer) => stream_on(answer, provider_id, variant),
        Err(refused) => refused,
    }
}

/// Asks the provider for the file, passing `Range` on: its answer when it is the file (or the
/// part asked for), else the response that tells the client why not.
async fn ask_provider(
    shared: &Shared,
    provider_id: &str,
    variant: Variant,
    asked: &HeaderMap,
) -> Result<reqwest::Response, Response> {
    let mut request = shared.openai(
        reqwest::Method::GET,
        &format!("/videos/{provider_id}/content"),
    );
    if variant != Variant::Video {
        request = request.query(&[("variant", variant.name())]);
    }
    for name in [header::RANGE, header::IF_RANGE] {
        if let Some(value) = asked.get(&name) {
            request = request.header(name, value);
        }
    }
    let answer = match tokio::time::timeout(PROVIDER_ANSWER, request.send()).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            tracing::warn!(video = provider_id, error = %e, "the video service is not answering");
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "provider_unavailable",
                "The video service is not answering; try again shortly.",
            )
            .into_response());
        }
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "provider_timeout",
                "The video service took too long to answer; try again shortly.",
            )
            .into_response());
        }
    };
    match answer.status() {
        reqwest::StatusCode::OK | reqwest::StatusCode::PARTIAL_CONTENT => Ok(answer),
        reqwest::StatusCode::RANGE_NOT_SATISFIABLE => {
            let mut refused = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                "The range asked for is not in the file.",
            )
            .into_response();
            copy(
                answer.headers(),
                refused.headers_mut(),
                &[header::CONTENT_RANGE],
            );
            Err(refused)
        }
        reqwest::StatusCode::NOT_FOUND | reqwest::StatusCode::GONE => Err(ApiError::new(
            StatusCode::GONE,
            "video_gone",
            "The video service no longer has this video: it keeps videos for a limited time.",
        )
        .into_response()),
        other => {
            tracing::warn!(video = provider_id, status = %other, "the video service refused a download");
            Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "provider_failed",
                "The video service could not give this file; try again shortly.",
            )
            .into_response())
        }
    }
}

/// The provider's file streamed on as it comes, with its headers (and defaults for those it
/// left out).
fn stream_on(answer: reqwest::Response, provider_id: &str, variant: Variant) -> Response {
    let (default_type, extension) = variant.default_type();
    let status = answer.status();
    let provided = answer.headers().clone();
    let mut response = Response::new(Body::from_stream(stalls_end(Box::pin(
        answer.bytes_stream(),
    ))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    copy(
        &provided,
        headers,
        &[
            header::CONTENT_TYPE,
            header::CONTENT_LENGTH,
            header::CONTENT_RANGE,
            header::ACCEPT_RANGES,
            header::ETAG,
            header::LAST_MODIFIED,
        ],
    );
    if !headers.contains_key(header::CONTENT_TYPE) {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(default_type));
    }
    if !headers.contains_key(header::ACCEPT_RANGES) {
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    if let Ok(disposition) =
        HeaderValue::from_str(&format!("inline; filename=\"{provider_id}.{extension}\""))
    {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    // The link is the credential: kept by no shared cache, and sent to no other site.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn copy(from: &reqwest::header::HeaderMap, to: &mut HeaderMap, names: &[header::HeaderName]) {
    for name in names {
        if let Some(value) = from.get(name) {
            to.insert(name.clone(), value.clone());
        }
    }
}

/// The provider's bytes as they come; a stall longer than [`PROVIDER_STALL`] ends the download
/// with an error (the client sees a cut transfer, not a finished one).
fn stalls_end(
    bytes: impl Stream<Item = reqwest::Result<Bytes>> + Send + Unpin + 'static,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
    futures_util::stream::unfold(Some(bytes), |state| async move {
        let mut bytes = state?;
        match tokio::time::timeout(PROVIDER_STALL, bytes.next()).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(bytes))),
            Ok(None) => None,
            Ok(Some(Err(e))) => Some((Err(std::io::Error::other(e)), None)),
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the video service stalled",
                )),
                None,
            )),
        }
    })
}
