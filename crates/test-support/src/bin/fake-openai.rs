//! The fake OpenAI-compatible API of the tests as a program, to try the MCP tools against
//! `hub up` without an OpenAI account:
//!
//! ```sh
//! cargo run -p hub-test-support --bin fake-openai -- 127.0.0.1:39400
//! OPENAI_BASE_URL=http://127.0.0.1:39400/v1 OPENAI_API_KEY=fake cargo run --release -p hub -- up
//! ```
//!
//! A video whose prompt contains `fail` fails, `hang` never finishes, anything else is ready on
//! its second poll; chat answers with a fixed completion and reports 15 tokens of usage.
#![forbid(unsafe_code)]

#[tokio::main]
async fn main() {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:39400".to_owned());
    let fake = hub_test_support::fake_openai::FakeOpenAi::start_on(&address).await;
    println!("fake OpenAI API at {} (Ctrl-C stops it)", fake.base_url);
    let _ = tokio::signal::ctrl_c().await;
}
