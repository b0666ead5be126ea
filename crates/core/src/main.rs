//! The core service on its own: `core` (port 3002 by default).
#![forbid(unsafe_code)]

/// mimalloc: fewer cycles per request than the system allocator under many small allocations.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use hub_config::Env;
use hub_core::{App, Config, Deps};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hub_config::load_dotenv();
    let env = Env::process();
    hub_telemetry::init(env.raw("LOG_FORMAT").as_deref());
    let config = Config::from_env(&env)?;
    let deps = Deps::open(&config).await?;
    let app = App::build(config, deps).await?;
    tracing::info!(address = %app.address(), "core listening");
    app.run_until(hub_http::shutdown_signal()).await?;
    Ok(())
}
