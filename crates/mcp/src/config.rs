//! The MCP service's configuration, read once at start from the environment.

use std::net::SocketAddr;
use std::time::Duration;

use hub_config::{ConfigError, Env, SecretString};

use crate::prices;

/// The MCP service's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `MCP_ADDR`, default `127.0.0.1:3003`.
    pub addr: SocketAddr,
    /// `CORE_URL`, default `http://127.0.0.1:3002`: the ledger, for balances and holds.
    pub core_url: String,
    /// `HUB_INTERNAL_TOKEN`: what the gateway presents, and what this service presents to core.
    pub internal_token: SecretString,
    /// `OPENAI_BASE_URL`, default `https://api.openai.com/v1`: an OpenAI-compatible API.
    pub openai_base_url: String,
    /// `OPENAI_API_KEY`.
    pub openai_api_key: Option<SecretString>,
    /// `MCP_VIDEO_PRICES`: the videos `generate_video` makes and what each costs, as
    /// `SIZE:SECONDS:CREDITS` entries; the first is the video made when the caller names no size
    /// or length. Default: 720x1280 and 1280x720 at 4, 8 and 12 seconds for 30, 60 and 90.
    pub video_prices: Vec<prices::VideoPrice>,
    /// `MCP_VIDEO_POLL_MILLISECONDS`, default 2000: how often a video job is asked how it goes.
    pub video_poll: Duration,
    /// `MCP_VIDEO_DEADLINE_SECONDS`, default 1800: how long a video may take before the hub gives
    /// up on it (cancels it at the provider; charged unless the provider confirms the cancel).
    pub video_deadline: Duration,
    /// `MCP_CHAT_MODELS`, default `gpt-4o-mini:2`: the models `chat` offers, each with its price
    /// in credits per 1,000 tokens (prompt and completion), rounded up per call.
    pub chat_models: Vec<prices::ChatModel>,
    /// `MCP_CHAT_MODEL`, default the first of `MCP_CHAT_MODELS`: the model `chat` uses unless
    /// asked for another.
    pub chat_model: String,
    /// `MCP_CHAT_MAX_TOKENS`, default 1024: the completion limit when the caller sets none.
    pub chat_max_tokens: u32,
    /// `MCP_MAX_CONCURRENT_CALLS`, default 4: tool calls in flight per connection.
    pub max_concurrent_calls: usize,
    /// `MCP_MAX_MESSAGE_BYTES`, default 1 MiB: the largest message a client may send.
    pub max_message_bytes: usize,
    /// `PUBLIC_BASE_URL`, default `http://localhost:3000` (the gateway): where the video links
    /// the tools answer point.
    pub public_base_url: String,
    /// `VIDEO_LINK_TTL_SECONDS`, default 3600 (1 to 604800): how long a video link opens.
    pub video_link_ttl_seconds: u64,
}

impl Config {
    /// The defaults, with the addresses and credential given (tests, `hub up`).
    pub fn defaults_for(core_url: String, internal_token: SecretString) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 3003)),
            core_url,
            internal_token,
            openai_base_url: "https://api.openai.com/v1".into(),
            openai_api_key: None,
            video_prices: prices::parse_video_prices(prices::DEFAULT_VIDEO_PRICES)
                .unwrap_or_default(),
            video_poll: Duration::from_secs(2),
            video_deadline: Duration::from_secs(1800),
            chat_models: prices::parse_chat_models(prices::DEFAULT_CHAT_MODELS).unwrap_or_default(),
            chat_model: "gpt-4o-mini".into(),
            chat_max_tokens: 1024,
            max_concurrent_calls: 4,
            max_message_bytes: 1024 * 1024,
            public_base_url: "http://localhost:3000".into(),
            video_link_ttl_seconds: 3600,
        }
    }

    /// Reads the variables above, with the internal credential given (`hub up` makes one).
    pub fn from_env_with_token(
        env: &Env,
        internal_token: SecretString,
    ) -> Result<Self, ConfigError> {
        let core_url = env
            .string_or("CORE_URL", "http://127.0.0.1:3002")
            .trim_end_matches('/')
            .to_owned();
        let mut config = Self::defaults_for(core_url, internal_token);
        config.addr = env.parse_or("MCP_ADDR", config.addr, "host:port")?;
        config.read_openai_upstream(env);
        config.read_video(env)?;
        config.read_chat(env)?;
        config.read_limits(env)?;
        config.read_video_links(env)?;
        Ok(config)
    }

    /// As above, with `HUB_INTERNAL_TOKEN` required.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Self::from_env_with_token(env, env.internal_token()?)
    }

    /// `OPENAI_BASE_URL` and `OPENAI_API_KEY`.
    fn read_openai_upstream(&mut self, env: &Env) {
        self.openai_base_url = env
            .string_or("OPENAI_BASE_URL", &self.openai_base_url)
            .trim_end_matches('/')
            .to_owned();
        self.openai_api_key = env.secret("OPENAI_API_KEY");
    }

    /// `MCP_VIDEO_PRICES`, `MCP_VIDEO_POLL_MILLISECONDS` and `MCP_VIDEO_DEADLINE_SECONDS`.
    fn read_video(&mut self, env: &Env) -> Result<(), ConfigError> {
        if let Some(table) = env.raw("MCP_VIDEO_PRICES") {
            self.video_prices =
                prices::parse_video_prices(&table).map_err(|problem| ConfigError {
                    name: "MCP_VIDEO_PRICES".into(),
                    problem,
                    expected: "SIZE:SECONDS:CREDITS entries, e.g. 720x1280:4:30,1280x720:8:60"
                        .into(),
                })?;
        }
        self.video_poll = Duration::from_millis(env.parse_or(
            "MCP_VIDEO_POLL_MILLISECONDS",
            u64::try_from(self.video_poll.as_millis()).unwrap_or(u64::MAX),
            "milliseconds",
        )?);
        let deadline = env.parse_or(
            "MCP_VIDEO_DEADLINE_SECONDS",
            self.video_deadline.as_secs(),
            "seconds, 60 to 3300",
        )?;
        if !(60..=3300).contains(&deadline) {
            return Err(ConfigError {
                name: "MCP_VIDEO_DEADLINE_SECONDS".into(),
                problem: format!("{deadline} is out of range"),
                expected: "seconds, 60 to 3300 (a video's hold lives an hour)".into(),
            });
        }
        self.video_deadline = Duration::from_secs(deadline);
        Ok(())
    }

    /// `MCP_CHAT_MODELS`, `MCP_CHAT_MODEL` (one of them) and `MCP_CHAT_MAX_TOKENS`.
    fn read_chat(&mut self, env: &Env) -> Result<(), ConfigError> {
        if let Some(table) = env.raw("MCP_CHAT_MODELS") {
            self.chat_models =
                prices::parse_chat_models(&table).map_err(|problem| ConfigError {
                    name: "MCP_CHAT_MODELS".into(),
                    problem,
                    expected: "MODEL:CREDITS_PER_1K_TOKENS entries, e.g. gpt-4o-mini:2,gpt-4o:10"
                        .into(),
                })?;
        }
        self.chat_model = env.string_or(
            "MCP_CHAT_MODEL",
            self.chat_models
                .first()
                .map_or("gpt-4o-mini", |m| m.name.as_str()),
        );
        if !self.chat_models.iter().any(|m| m.name == self.chat_model) {
            return Err(ConfigError {
                name: "MCP_CHAT_MODEL".into(),
                problem: format!("{} is not in MCP_CHAT_MODELS", self.chat_model),
                expected: "one of the models MCP_CHAT_MODELS prices".into(),
            });
        }
        self.chat_max_tokens =
            env.parse_or("MCP_CHAT_MAX_TOKENS", self.chat_max_tokens, "tokens")?;
        Ok(())
    }

    /// `MCP_MAX_CONCURRENT_CALLS` (at least 1) and `MCP_MAX_MESSAGE_BYTES`.
    fn read_limits(&mut self, env: &Env) -> Result<(), ConfigError> {
        self.max_concurrent_calls = env
            .parse_or(
                "MCP_MAX_CONCURRENT_CALLS",
                self.max_concurrent_calls,
                "calls, 1 or more",
            )?
            .max(1);
        self.max_message_bytes = env.parse_or(
            "MCP_MAX_MESSAGE_BYTES",
            self.max_message_bytes,
            "a number of bytes",
        )?;
        Ok(())
    }

    /// `PUBLIC_BASE_URL` and `VIDEO_LINK_TTL_SECONDS` (1 to 604800): the links to videos.
    fn read_video_links(&mut self, env: &Env) -> Result<(), ConfigError> {
        self.public_base_url = env.public_base_url()?;
        self.video_link_ttl_seconds = env.parse_or(
            "VIDEO_LINK_TTL_SECONDS",
            self.video_link_ttl_seconds,
            "seconds, 1 to 604800",
        )?;
        if !(1..=604_800).contains(&self.video_link_ttl_seconds) {
            return Err(ConfigError {
                name: "VIDEO_LINK_TTL_SECONDS".into(),
                problem: format!("{} is out of range", self.video_link_ttl_seconds),
                expected: "seconds, 1 to 604800 (a week)".into(),
            });
        }
        Ok(())
    }
}
