//! Rate limits by GCRA (the generic cell rate algorithm): each key keeps one number, its
//! theoretical arrival time (TAT). With a limit of L per minute, the emission interval is
//! T = 60 s / L and the tolerance τ = 60 s − T, so a key may spend its whole minute at once and
//! then one request every T. A request at `now` is allowed when TAT − now ≤ τ; allowing it moves
//! TAT to max(TAT, now) + T.
//!
//! Every gateway replica shares the counters through Redis, where one Lua script reads Redis's
//! own clock and updates the key atomically; without Redis (the embedded mode, or while Redis is
//! unreachable) the same algorithm runs in process. It is written out here rather than taken
//! from a crate so that both backends decide identically and can be asked without spending
//! (failed verifications are counted only after they fail).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hub_storage::redis_connection::RedisConnection;
use redis::Script;

const MINUTE_US: u64 = 60_000_000;

/// The highest limit the limiter measures: one request per microsecond.
pub const MAX_PER_MINUTE: u64 = MINUTE_US;

/// A limit: so many requests per minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerMinute(pub u64);

impl PerMinute {
    fn interval_us(self) -> u64 {
        // At most one request per microsecond: the clock's resolution.
        (MINUTE_US / self.0.max(1)).max(1)
    }
    fn tolerance_us(self) -> u64 {
        MINUTE_US - self.interval_us()
    }
}

/// Requests per minute, by class (`RATE_LIMIT_*_PER_MINUTE`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Starting a Google sign-in, per client address (`RATE_LIMIT_GOOGLE_PER_MINUTE`, 10).
    pub google: PerMinute,
    /// `verify-session`, per code (`RATE_LIMIT_VERIFY_PER_MINUTE`, 120).
    pub verify: PerMinute,
    /// Failed credentials, per client address or per live service key sent with them
    /// (`RATE_LIMIT_VERIFY_FAILURES_PER_MINUTE`, 30).
    pub verify_failures: PerMinute,
    /// Credit endpoints, per caller (`RATE_LIMIT_CREDITS_PER_MINUTE`, 600).
    pub credits: PerMinute,
    /// Everything else, per caller or client address (`RATE_LIMIT_DEFAULT_PER_MINUTE`, 300).
    pub default: PerMinute,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            google: PerMinute(10),
            verify: PerMinute(120),
            verify_failures: PerMinute(30),
            credits: PerMinute(600),
            default: PerMinute(300),
        }
    }
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether it may go on.
    pub allowed: bool,
    /// Requests left right now.
    pub remaining: u64,
    /// When it may try again (refused), or when the key is whole again (allowed).
    pub reset: Duration,
}

fn decide(tat_us: u64, now_us: u64, limit: PerMinute, spend: bool) -> (Decision, Option<u64>) {
    let (interval, tolerance) = (limit.interval_us(), limit.tolerance_us());
    let tat = tat_us.max(now_us);
    if tat - now_us > tolerance {
        let wait = tat - now_us - tolerance;
        return (
            Decision {
                allowed: false,
                remaining: 0,
                reset: Duration::from_micros(wait),
            },
            None,
        );
    }
    let new_tat = if spend { tat + interval } else { tat };
    let used = new_tat - now_us;
    let remaining = if used > tolerance + interval {
        0
    } else {
        (tolerance + interval - used) / interval
    };
    let decision = Decision {
        allowed: true,
        remaining,
        reset: Duration::from_micros(used),
    };
    (decision, spend.then_some(new_tat))
}

/// The in-process backend.
#[derive(Debug, Default)]
pub struct Local {
    started: Option<Instant>,
    keys: Mutex<HashMap<String, u64>>,
}

impl Local {
    /// A fresh limiter.
    pub fn new() -> Self {
        Self {
            started: Some(Instant::now()),
            keys: Mutex::new(HashMap::new()),
        }
    }

    fn now_us(&self) -> u64 {
        // Offset by a minute, so that a key never seen (TAT 0) is whole.
        let since = self.started.map_or(Duration::ZERO, |s| s.elapsed());
        u64::try_from(since.as_micros()).unwrap_or(u64::MAX) + MINUTE_US
    }

    /// Decides for `key` at `now_us` (tests pass their own clock).
    pub fn check_at(&self, key: &str, limit: PerMinute, spend: bool, now_us: u64) -> Decision {
        let Ok(mut keys) = self.keys.lock() else {
            return Decision {
                allowed: true,
                remaining: 0,
                reset: Duration::ZERO,
            };
        };
        if keys.len() > 200_000 {
            // Keys whose TAT has passed are whole again: forgetting them changes nothing.
            keys.retain(|_, tat| *tat > now_us);
        }
        let tat = keys.get(key).copied().unwrap_or(0);
        let (decision, new_tat) = decide(tat, now_us, limit, spend);
        if let Some(new_tat) = new_tat {
            // A key seen before is updated in place, without a copy of it.
            match keys.get_mut(key) {
                Some(kept) => *kept = new_tat,
                None => {
                    keys.insert(key.to_owned(), new_tat);
                }
            }
        }
        decision
    }

    /// Decides for `key` now.
    pub fn check(&self, key: &str, limit: PerMinute, spend: bool) -> Decision {
        self.check_at(key, limit, spend, self.now_us())
    }
}

/// The script: the same decision, on Redis's clock, atomically.
const GCRA: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local spend = ARGV[3] == '1'
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if tat - now > tolerance then
    return {0, 0, tat - now - tolerance}
end
local new_tat = tat
if spend then
    new_tat = tat + interval
    redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
end
local used = new_tat - now
local remaining = 0
if used <= tolerance + interval then remaining = math.floor((tolerance + interval - used) / interval) end
return {1, remaining, used}
";

/// The limiter the gateway uses: Redis when configured and reachable, else in process.
pub struct Limiter {
    redis: Option<(RedisConnection, String)>,
    script: Script,
    local: Arc<Local>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("redis", &self.redis.is_some())
            .finish_non_exhaustive()
    }
}

impl Limiter {
    /// Shared through Redis (keys under `prefix`), or in process when `redis` is `None`.
    pub fn new(redis: Option<(RedisConnection, String)>) -> Self {
        Self {
            redis,
            script: Script::new(GCRA),
            local: Arc::new(Local::new()),
        }
    }

    /// The same limits (the same Redis keys, the same in-process fallback) through another
    /// connection: a serving thread's own, so that its calls to Redis stay on its runtime.
    pub fn through(&self, connection: RedisConnection) -> Self {
        Self {
            redis: self
                .redis
                .as_ref()
                .map(|(_, prefix)| (connection, prefix.clone())),
            script: self.script.clone(),
            local: self.local.clone(),
        }
    }

    /// Whether the limits are kept in Redis.
    pub fn uses_redis(&self) -> bool {
        self.redis.is_some()
    }

    /// Decides for `key`; `spend: false` only asks.
    pub async fn check(&self, key: &str, limit: PerMinute, spend: bool) -> Decision {
        if let Some((connection, prefix)) = &self.redis {
            let mut connection = connection.clone();
            let mut invocation = self.script.key(format!("{prefix}ratelimit:{key}"));
            invocation
                .arg(limit.interval_us())
                .arg(limit.tolerance_us())
                .arg(if spend { "1" } else { "0" });
            let answer = tokio::time::timeout(
                Duration::from_millis(300),
                invocation.invoke_async::<(i64, i64, i64)>(&mut connection),
            )
            .await;
            match answer {
                Ok(Ok((allowed, remaining, micros))) => {
                    return Decision {
                        allowed: allowed == 1,
                        remaining: u64::try_from(remaining).unwrap_or(0),
                        reset: Duration::from_micros(u64::try_from(micros).unwrap_or(0)),
                    };
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "rate limits fall back to this process: Redis failed")
                }
                Err(_) => {
                    tracing::warn!("rate limits fall back to this process: Redis did not answer")
                }
            }
        }
        self.local.check(key, limit, spend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_spends_its_minute_at_once_then_one_per_interval() {
        let local = Local::new();
        let limit = PerMinute(10); // one per 6 s
        let start = 10 * MINUTE_US;
        for i in 0..10 {
            let d = local.check_at("k", limit, true, start);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 9 - i);
        }
        let refused = local.check_at("k", limit, true, start);
        assert!(!refused.allowed);
        assert_eq!(
            refused.reset,
            Duration::from_secs(6),
            "one interval to wait"
        );
        assert!(!local.check_at("k", limit, true, start + 5_999_999).allowed);
        assert!(local.check_at("k", limit, true, start + 6_000_000).allowed);
        assert!(
            local.check_at("other", limit, true, start).allowed,
            "keys are apart"
        );
    }

    #[test]
    fn the_highest_limit_never_divides_by_zero() {
        let local = Local::new();
        for limit in [MAX_PER_MINUTE, MAX_PER_MINUTE + 1, u64::MAX] {
            let d = local.check_at("k", PerMinute(limit), true, MINUTE_US);
            assert!(d.allowed, "{limit}");
        }
    }

    #[test]
    fn asking_does_not_spend() {
        let local = Local::new();
        let limit = PerMinute(2);
        for _ in 0..5 {
            assert!(local.check_at("k", limit, false, MINUTE_US).allowed);
        }
        assert!(local.check_at("k", limit, true, MINUTE_US).allowed);
        assert!(local.check_at("k", limit, true, MINUTE_US).allowed);
        assert!(
            !local.check_at("k", limit, false, MINUTE_US).allowed,
            "two spent: asking says no"
        );
    }
}
