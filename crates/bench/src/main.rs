//! `hub-bench`: the benchmarks' own tools. The HTTP loads are measured with `wrk` (bench/*.sh);
//! this binary makes what they spend from (accounts, sessions, the pgbench script, a fixed
//! upstream) and drives the loads `wrk` cannot: MCP calls over WebSocket, and the in-process
//! comparisons the older scripts use.
#![forbid(unsafe_code)]

mod bare_proxy;
mod load;
mod mcp;

/// mimalloc, as the services use it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use hub_config::Env;

#[derive(Parser)]
#[command(
    name = "hub-bench",
    version,
    about = "Smart AI Hub's benchmark tools: setup and the loads wrk cannot drive"
)]
struct Cli {
    #[command(subcommand)]
    command: load::BenchCommand,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hub_config::load_dotenv();
    let env = Env::process();
    load::run(&env, Cli::parse().command).await
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
