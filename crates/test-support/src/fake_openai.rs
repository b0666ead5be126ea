//! A fake OpenAI-compatible API, so the MCP tests never reach OpenAI.
//!
//! Videos (`/v1/videos`): a job's fate is in its prompt: `fail` fails after its first poll,
//! `hang` never finishes, anything else completes on its second poll. `nocancel` jobs refuse to
//! be cancelled (409) and go on. A completed job's file (`/v1/videos/{id}/content`, and
//! `?variant=thumbnail`) is [`FakeOpenAi::file`], served only with a bearer key (the operator's),
//! honouring `Range` (`206`, `416`); a job [`FakeOpenAi::forget`]s is gone (404).
//!
//! Chat completions (`/v1/chat/completions`), streamed or not: the answer is `Hello there!`
//! with usage 10 + 5 = 15 tokens. The last message decides the rest: `fail` is a 500, `hang`
//! streams one chunk and then nothing, `nousage` leaves the usage out, `deltas:N` streams N
//! one-token chunks (` tok`) and then nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

#[derive(Default)]
struct Jobs {
    next: u64,
    jobs: HashMap<String, (String, u32)>,
}

/// The fake, listening on port 0 until dropped with the test's runtime.
pub struct FakeOpenAi {
    /// `http://127.0.0.1:PORT/v1`: what `OPENAI_BASE_URL` should be.
    pub base_url: String,
    jobs: Arc<Mutex<Jobs>>,
}

impl FakeOpenAi {
    /// Starts it on a free port.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0").await
    }

    /// Starts it on `address` (`fake-openai`, to try the MCP tools against `hub up`).
    pub async fn start_on(address: &str) -> Self {
        let jobs = Arc::new(Mutex::new(Jobs::default()));
        let app = Router::new()
            .route("/v1/videos", post(create))
            .route("/v1/videos/{id}", get(status).delete(cancel))
            .route("/v1/videos/{id}/content", get(content))
            .route("/v1/chat/completions", post(chat))
            .with_state(jobs.clone());
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .unwrap_or_else(|e| panic!("cannot listen on {address}: {e}"));
        let base_url = format!("http://{}/v1", listener.local_addr().expect("address"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base_url, jobs }
    }

    /// How many jobs were submitted.
    pub fn submitted(&self) -> u64 {
        self.jobs.lock().expect("jobs").next
    }

    /// The bytes of a video's file (`variant` `video` or `thumbnail`) as the fake serves them:
    /// 200,000 bytes for a video, so that it comes in many pieces.
    pub fn file(id: &str, variant: &str) -> Vec<u8> {
        let size = if variant == "video" { 200_000 } else { 5_000 };
        format!("{variant} of {id}|")
            .into_bytes()
            .into_iter()
            .cycle()
            .take(size)
            .collect()
    }

    /// Forgets a job, as the provider does when it no longer keeps a video.
    pub fn forget(&self, id: &str) {
        self.jobs.lock().expect("jobs").jobs.remove(id);
    }

    /// How many jobs were cancelled (deleted) by the client.
    pub fn cancelled(&self) -> usize {
        let jobs = self.jobs.lock().expect("jobs");
        jobs.jobs
            .values()
            .filter(|(prompt, _)| prompt == "<cancelled>")
            .count()
    }
}

async fn create(State(jobs): State<Arc<Mutex<Jobs>>>, Json(body): Json<Value>) -> Json<Value> {
    let mut jobs = jobs.lock().expect("jobs");
    jobs.next += 1;
    let id = format!("video_{}", jobs.next);
    let prompt = body["prompt"].as_str().unwrap_or_default().to_owned();
    jobs.jobs.insert(id.clone(), (prompt, 0));
    Json(
        json!({ "id": id, "object": "video", "model": body["model"], "status": "queued", "progress": 0 }),
    )
}

async fn status(
    State(jobs): State<Arc<Mutex<Jobs>>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, StatusCode> {
    let mut jobs = jobs.lock().expect("jobs");
    let (prompt, polls) = jobs.jobs.get_mut(&id).ok_or(StatusCode::NOT_FOUND)?;
    *polls += 1;
    let answer = if prompt == "<cancelled>" {
        json!({ "id": id, "status": "cancelled", "progress": 0 })
    } else if prompt.contains("fail") {
        json!({ "id": id, "status": "failed", "progress": 0,
                "error": { "code": "moderation_blocked", "message": "the prompt was refused" } })
    } else if prompt.contains("hang") || *polls < 2 {
        json!({ "id": id, "status": "in_progress", "progress": 50 })
    } else {
        json!({ "id": id, "status": "completed", "progress": 100 })
    };
    Ok(Json(answer))
}

async fn cancel(State(jobs): State<Arc<Mutex<Jobs>>>, Path(id): Path<String>) -> StatusCode {
    let mut jobs = jobs.lock().expect("jobs");
    match jobs.jobs.get_mut(&id) {
        Some(job) if job.0.contains("nocancel") => StatusCode::CONFLICT,
        Some(job) => {
            job.0 = "<cancelled>".into();
            StatusCode::OK
        }
        None => StatusCode::NOT_FOUND,
    }
}

async fn content(
    State(jobs): State<Arc<Mutex<Jobs>>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !bearer.is_some_and(|b| b.len() > "Bearer ".len() && b.starts_with("Bearer ")) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if !jobs.lock().expect("jobs").jobs.contains_key(&id) {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": { "message": "no such video" } })),
        )
            .into_response();
    }
    let variant = query.get("variant").map_or("video", String::as_str);
    let (kind, file) = match variant {
        "video" => ("video/mp4", FakeOpenAi::file(&id, "video")),
        "thumbnail" => ("image/webp", FakeOpenAi::file(&id, "thumbnail")),
        _ => return StatusCode::BAD_REQUEST.into_response(),
    };
    let total = file.len();
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split_once('-'));
    let Some((from, to)) = range else {
        return (
            [
                (header::CONTENT_TYPE, kind),
                (header::ACCEPT_RANGES, "bytes"),
            ],
            file,
        )
            .into_response();
    };
    let (start, end) = match (from.parse::<usize>().ok(), to.parse::<usize>().ok()) {
        (Some(start), Some(end)) => (start, end.min(total - 1)),
        (Some(start), None) => (start, total - 1),
        (None, Some(last)) => (total.saturating_sub(last), total - 1),
        (None, None) => (total, 0),
    };
    if start > end || start >= total {
        return (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{total}"))],
        )
            .into_response();
    }
    (
        StatusCode::PARTIAL_CONTENT,
        [
            (header::CONTENT_TYPE, kind.to_owned()),
            (
                header::CONTENT_RANGE,
                format!("bytes {start}-{end}/{total}"),
            ),
        ],
        file[start..=end].to_vec(),
    )
        .into_response()
}

async fn chat(Json(body): Json<Value>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let last = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned();
    if last.contains("fail") {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": { "message": "the model is down" } })),
        )
            .into_response();
    }
    let usage = json!({ "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15 });
    if body["stream"] != true {
        return Json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": "Hello there!" }, "finish_reason": "stop" }],
            "usage": usage,
        }))
        .into_response();
    }
    let chunk = |content: &str| {
        let event = json!({ "id": "chatcmpl-1", "object": "chat.completion.chunk",
            "choices": [{ "index": 0, "delta": { "content": content } }] });
        format!("data: {event}\n\n")
    };
    let streamed: Option<usize> = last
        .strip_prefix("deltas:")
        .and_then(|n| n.trim().parse().ok());
    let mut events = match streamed {
        Some(n) => vec![chunk(" tok"); n],
        None => vec![chunk("Hello")],
    };
    let hang = last.contains("hang") || streamed.is_some();
    if !hang {
        events.push(chunk(" there"));
        events.push(chunk("!"));
        if !last.contains("nousage") && body["stream_options"]["include_usage"] == true {
            let event = json!({ "id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": usage });
            events.push(format!("data: {event}\n\n"));
        }
        events.push("data: [DONE]\n\n".to_owned());
    }
    let stream = futures_util::stream::iter(
        events
            .into_iter()
            .map(|e| Ok::<_, std::io::Error>(bytes::Bytes::from(e))),
    );
    let body = if hang {
        axum::body::Body::from_stream(futures_util::StreamExt::chain(
            stream,
            futures_util::stream::pending(),
        ))
    } else {
        axum::body::Body::from_stream(stream)
    };
    (
        [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
        body,
    )
        .into_response()
}
