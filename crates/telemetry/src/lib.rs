//! Logging: human-readable lines by default, JSON with `LOG_FORMAT=json`; `RUST_LOG` filters.
#![forbid(unsafe_code)]

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls (tests, `hub up`) are no-ops.
pub fn init(log_format: Option<&str>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = if log_format.is_some_and(|f| f.eq_ignore_ascii_case("json")) {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.try_init()
    };
    // Already installed: keep the first.
    let _ = result;
}
