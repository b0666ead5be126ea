//! When a failed delivery is tried again: Svix's schedule, scaled by the first delay, with jitter,
//! for up to three days.

use chrono::{DateTime, Utc};

/// The retry schedule, in multiples of the first delay (5 s by default): 5 s, 5 min, 30 min,
/// 2 h, 5 h, then every 10 h (after Svix's), each with ±10 % jitter, until three days (as many
/// first delays as three days are to 5 s) after the event; then the delivery has failed.
pub const RETRY_STEPS: [u32; 6] = [1, 60, 360, 1440, 3600, 7200];

/// How many first delays the retries go on for: three days of 5 s.
pub const RETRY_WINDOW_STEPS: u32 = 3 * 24 * 3600 / 5;

/// When to try again after failed attempt number `attempt` (1 for the first), or `None` when
/// that would pass the window (three days at the default `base` of 5 s). `jitter` is in
/// `[-1, 1]`; the delay moves by a tenth of that.
pub fn next_attempt(
    attempt: u32,
    event_at: DateTime<Utc>,
    now: DateTime<Utc>,
    base: std::time::Duration,
    jitter: f64,
) -> Option<DateTime<Utc>> {
    let index = (attempt.max(1) as usize - 1).min(RETRY_STEPS.len() - 1);
    let step = base.as_secs_f64() * f64::from(RETRY_STEPS[index]);
    let delay = step * (1.0 + 0.1 * jitter.clamp(-1.0, 1.0));
    let at = now + chrono::Duration::milliseconds((delay * 1000.0) as i64);
    let window = base.as_secs_f64() * f64::from(RETRY_WINDOW_STEPS);
    let deadline = event_at + chrono::Duration::milliseconds((window * 1000.0) as i64);
    (at <= deadline).then_some(at)
}

/// A jitter in `[-1, 1]` from the system's random source (0 if it fails).
pub fn random_jitter() -> f64 {
    let mut bytes = [0u8; 4];
    match getrandom::fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX) * 2.0 - 1.0,
        Err(_) => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_schedule_is_svixs_and_ends_after_three_days() {
        let start = Utc::now();
        let base = Duration::from_secs(5);
        let mut now = start;
        let mut delays = Vec::new();
        let mut attempt = 1;
        while let Some(at) = next_attempt(attempt, start, now, base, 0.0) {
            delays.push((at - now).num_seconds());
            now = at;
            attempt += 1;
        }
        assert_eq!(
            &delays[..7],
            &[5, 300, 1800, 7200, 18000, 36000, 36000],
            "5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h"
        );
        assert!(now - start <= chrono::Duration::days(3));
        assert!(now - start > chrono::Duration::days(3) - chrono::Duration::hours(10));
        assert_eq!(attempt, 12, "eleven retries after the first attempt");
    }

    #[test]
    fn jitter_moves_a_delay_by_at_most_a_tenth_and_the_base_scales_it_all() {
        let start = Utc::now();
        for jitter in [-1.0, -0.3, 0.0, 0.7, 1.0, 5.0] {
            let at = next_attempt(2, start, start, Duration::from_secs(5), jitter).unwrap();
            let secs = (at - start).num_milliseconds() as f64 / 1000.0;
            assert!((270.0..=330.0).contains(&secs), "{jitter}: {secs}");
        }
        let at = next_attempt(1, start, start, Duration::from_millis(100), 0.0).unwrap();
        assert_eq!((at - start).num_milliseconds(), 100);
        assert!(random_jitter().abs() <= 1.0);
    }
}
