//! The calls to the AI provider that several tools and the hold settlement share.

use serde_json::Value;

use crate::Shared;

impl Shared {
    /// A request to the AI provider at `path`, with the operator's key when one is set.
    pub(crate) fn openai(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, format!("{}{path}", self.config.openai_base_url));
        match &self.config.openai_api_key {
            Some(key) => request.bearer_auth(hub_config::ExposeSecret::expose_secret(key)),
            None => request,
        }
    }

    /// The provider's word on a video (`id` is plain: checked when it came in).
    pub(super) async fn video(&self, id: &str) -> Result<Value, String> {
        let response = self
            .openai(reqwest::Method::GET, &format!("/videos/{id}"))
            .timeout(std::time::Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| format!("the video service is not answering: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("the video service answered {}", response.status()));
        }
        response.json().await.map_err(|e| e.to_string())
    }

    /// Asks the provider to stop a video; whether it confirmed it did.
    pub(super) async fn cancel_video(&self, id: &str) -> bool {
        let answer = self
            .openai(reqwest::Method::DELETE, &format!("/videos/{id}"))
            .timeout(std::time::Duration::from_secs(30))
            .send()
            .await;
        match answer {
            Ok(response) if response.status().is_success() => true,
            Ok(response) => {
                tracing::info!(video = id, status = %response.status(), "the provider did not cancel a video");
                false
            }
            Err(e) => {
                tracing::warn!(video = id, error = %e, "cannot reach the provider to cancel a video");
                false
            }
        }
    }
}
