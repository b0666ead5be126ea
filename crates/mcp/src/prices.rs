//! The operator's price table: what each video (by size and length) and each chat model (per
//! 1,000 tokens) costs in credits. A tool call names only what the table prices; anything else
//! is refused before a credit is held. Cost arithmetic saturates instead of overflowing.

/// The default `MCP_VIDEO_PRICES`: Sora 2's sizes and lengths, 30 credits per 4 seconds.
pub const DEFAULT_VIDEO_PRICES: &str =
    "720x1280:4:30,1280x720:4:30,720x1280:8:60,1280x720:8:60,720x1280:12:90,1280x720:12:90";
/// The default `MCP_CHAT_MODELS`.
pub const DEFAULT_CHAT_MODELS: &str = "gpt-4o-mini:2";

/// One video the hub offers, and its price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoPrice {
    /// `WIDTHxHEIGHT`, as the provider names it.
    pub size: String,
    /// Length in seconds.
    pub seconds: u32,
    /// Credits.
    pub credits: i64,
}

/// One chat model the hub offers, and its price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatModel {
    /// The provider's model name.
    pub name: String,
    /// Credits per 1,000 tokens, prompt and completion alike.
    pub credits_per_1k: i64,
}

/// The most one call may cost: the ledger's own ceiling for an amount.
const MAX_PRICE: i64 = 1_000_000_000_000;

fn price(text: &str, what: &str) -> Result<i64, String> {
    let credits: i64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{what}: {text:?} is not a whole number of credits"))?;
    if !(1..=MAX_PRICE).contains(&credits) {
        return Err(format!(
            "{what}: {credits} credits is out of range (1 to 10^12)"
        ));
    }
    Ok(credits)
}

fn entries(table: &str) -> impl Iterator<Item = &str> {
    table.split(',').map(str::trim).filter(|e| !e.is_empty())
}

/// Parses `SIZE:SECONDS:CREDITS,...`.
pub fn parse_video_prices(table: &str) -> Result<Vec<VideoPrice>, String> {
    let mut prices: Vec<VideoPrice> = Vec::new();
    for entry in entries(table) {
        let parts: Vec<&str> = entry.split(':').map(str::trim).collect();
        let [size, seconds, credits] = parts[..] else {
            return Err(format!("{entry:?} is not SIZE:SECONDS:CREDITS"));
        };
        let well_formed = size.split_once('x').is_some_and(|(w, h)| {
            [w, h]
                .iter()
                .all(|n| !n.is_empty() && n.len() <= 5 && n.bytes().all(|b| b.is_ascii_digit()))
        });
        if !well_formed {
            return Err(format!("{entry:?}: the size is not WIDTHxHEIGHT"));
        }
        let seconds: u32 = seconds
            .parse()
            .ok()
            .filter(|s| (1..=600).contains(s))
            .ok_or_else(|| format!("{entry:?}: seconds must be 1 to 600"))?;
        if prices
            .iter()
            .any(|p| p.size == size && p.seconds == seconds)
        {
            return Err(format!("{entry:?} is priced twice"));
        }
        prices.push(VideoPrice {
            size: size.to_owned(),
            seconds,
            credits: price(credits, entry)?,
        });
    }
    if prices.is_empty() {
        return Err("no videos are priced".into());
    }
    Ok(prices)
}

/// Parses `MODEL:CREDITS_PER_1K_TOKENS,...`.
pub fn parse_chat_models(table: &str) -> Result<Vec<ChatModel>, String> {
    let mut models: Vec<ChatModel> = Vec::new();
    for entry in entries(table) {
        let Some((name, credits)) = entry.rsplit_once(':') else {
            return Err(format!("{entry:?} is not MODEL:CREDITS_PER_1K_TOKENS"));
        };
        let name = name.trim();
        let plain = !name.is_empty()
            && name.len() <= 100
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b));
        if !plain {
            return Err(format!("{entry:?}: the model name is not plain"));
        }
        if models.iter().any(|m| m.name == name) {
            return Err(format!("{name} is priced twice"));
        }
        models.push(ChatModel {
            name: name.to_owned(),
            credits_per_1k: price(credits, entry)?,
        });
    }
    if models.is_empty() {
        return Err("no chat models are priced".into());
    }
    Ok(models)
}

/// Credits for `tokens` at `per_1k` credits per 1,000 tokens: rounded up, at least 1, and never
/// more than the ledger's ceiling, however large the numbers.
pub fn chat_cost(tokens: u64, per_1k: i64) -> i64 {
    let per_1k = u64::try_from(per_1k.max(1)).unwrap_or(1);
    let credits = tokens.saturating_mul(per_1k).div_ceil(1000);
    i64::try_from(credits)
        .unwrap_or(i64::MAX)
        .clamp(1, MAX_PRICE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_parse_and_bad_ones_say_why() {
        let videos = parse_video_prices(DEFAULT_VIDEO_PRICES).unwrap();
        assert_eq!(videos.len(), 6);
        assert_eq!(
            videos[0],
            VideoPrice {
                size: "720x1280".into(),
                seconds: 4,
                credits: 30
            }
        );
        let models = parse_chat_models("gpt-4o-mini:2, gpt-4o:10").unwrap();
        assert_eq!(models[1].name, "gpt-4o");
        assert_eq!(models[1].credits_per_1k, 10);
        for bad in [
            "",
            "720x1280:4",
            "720:4:30",
            "720x1280:0:30",
            "720x1280:4:0",
            "720x1280:4:-5",
            "720x1280:4:30,720x1280:4:40",
            "720x1280:4:99999999999999999999",
        ] {
            assert!(parse_video_prices(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "gpt-4o", "gpt 4o:2", ":2", "a:1,a:2", "gpt-4o:1.5"] {
            assert!(parse_chat_models(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn chat_costs_round_up_and_cannot_overflow() {
        assert_eq!(chat_cost(0, 2), 1);
        assert_eq!(chat_cost(1, 2), 1);
        assert_eq!(chat_cost(500, 2), 1);
        assert_eq!(chat_cost(501, 2), 2);
        assert_eq!(chat_cost(1500, 10), 15);
        assert_eq!(chat_cost(u64::MAX, i64::MAX), MAX_PRICE);
    }
}
