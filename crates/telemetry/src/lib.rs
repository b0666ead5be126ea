//! Logging and metrics shared by every service.
//!
//! Logs: human-readable lines in a terminal, JSON lines otherwise (containers, files); `LOG_FORMAT`
//! (`json` or `text`) decides instead when set, and `RUST_LOG` filters. Every line written while
//! a request is served carries its request id (the `request` span that `hub-http` opens).
//!
//! Metrics: [`Metrics`] counts requests by route and status and times them; `GET /metrics` serves
//! them in the Prometheus text format.
#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls (tests, `hub up`) are no-ops.
pub fn init(log_format: Option<&str>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let json = match log_format.map(str::to_ascii_lowercase).as_deref() {
        Some("json") => true,
        Some("text") => false,
        _ => !std::io::stdout().is_terminal(),
    };
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
    // Already installed: keep the first.
    let _ = result;
}

/// A route label: the matched route, or what the service says the request was.
#[derive(Debug, Clone, Copy)]
pub struct RouteLabel(pub &'static str);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Cow<'static, str>,
    method: Cow<'static, str>,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteOnly {
    route: Cow<'static, str>,
}

/// The method as a label, without an allocation for the usual ones.
fn method_label(method: &axum::http::Method) -> Cow<'static, str> {
    use axum::http::Method;
    let name = match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => return Cow::Owned(method.as_str().to_owned()),
    };
    Cow::Borrowed(name)
}

/// Latency buckets, in seconds: 0.5 ms to 10 s.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
    ]
    .into_iter()
}

/// A service's metrics: its own registry, with the HTTP request metrics in it.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteOnly, Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// The registry for `service` (`hub_` prefix), with `http_requests_total` and
    /// `http_request_duration_seconds`.
    pub fn new(service: &str) -> Self {
        let mut registry = Registry::with_prefix_and_labels(
            "hub",
            [("service".into(), service.to_owned().into())].into_iter(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "Requests answered, by route, method and status",
            requests.clone(),
        );
        let duration = Family::<RouteOnly, Histogram>::new_with_constructor(
            (|| Histogram::new(latency_buckets())) as fn() -> Histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to the response's headers, by route",
            duration.clone(),
        );
        Self {
            registry,
            requests,
            duration,
        }
    }

    /// Where a service registers metrics of its own, before it starts serving.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts one answered request of a route class, for a server that answers without the
    /// [`with_metrics`] layer (the gateway's proxy path).
    pub fn record_request(
        &self,
        route: &'static str,
        method: &axum::http::Method,
        status: u16,
        started: Instant,
    ) {
        self.record(
            Cow::Borrowed(route),
            method_label(method),
            status,
            started.elapsed().as_secs_f64(),
        );
    }

    fn record(
        &self,
        route: Cow<'static, str>,
        method: Cow<'static, str>,
        status: u16,
        seconds: f64,
    ) {
        self.duration
            .get_or_create(&RouteOnly {
                route: route.clone(),
            })
            .observe(seconds);
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status,
            })
            .inc();
    }
}

/// Adds `GET /metrics` and the request metrics to a router (outermost, so that every answer,
/// errors included, is counted).
pub fn with_metrics(router: axum::Router, metrics: Arc<Metrics>) -> axum::Router {
    router
        .route(
            "/metrics",
            axum::routing::get(serve_metrics).with_state(metrics.clone()),
        )
        .layer(axum::middleware::from_fn_with_state(metrics, observe))
}

async fn serve_metrics(State(metrics): State<Arc<Metrics>>) -> Response {
    let mut response = metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn observe(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let method = method_label(request.method());
    let response = next.run(request).await;
    let route = match (response.extensions().get::<RouteLabel>(), matched) {
        (Some(label), _) => Cow::Borrowed(label.0),
        (None, Some(matched)) => Cow::Owned(matched.as_str().to_owned()),
        (None, None) => Cow::Borrowed("unmatched"),
    };
    metrics.record(
        route,
        method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn requests_are_counted_by_route_and_status() {
        let metrics = Arc::new(Metrics::new("test"));
        let app = with_metrics(
            axum::Router::new().route("/x/{id}", axum::routing::get(|| async { "ok" })),
            metrics.clone(),
        );
        for path in ["/x/1", "/x/2", "/nothing"] {
            let request = axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap();
            app.clone().oneshot(request).await.unwrap();
        }
        let text = metrics.render();
        assert!(
            text.contains(
                r#"hub_http_requests_total{service="test",route="/x/{id}",method="GET",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"route="unmatched",method="GET",status="404"} 1"#),
            "{text}"
        );
        assert!(text.contains("hub_http_request_duration_seconds_bucket"));
    }
}
