//! Each user's low-balance alert: a threshold in credits or in percent of the last grant or
//! top-up (the operator's `LOW_BALANCE_PERCENT` by default), and whether to send an email.

use serde::Serialize;

use crate::InvalidInput;

/// A user's low-balance threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Threshold {
    /// The operator's default percent of the last grant or top-up (`LOW_BALANCE_PERCENT`).
    Default,
    /// This percent (1–100) of the last grant or top-up.
    Percent(i64),
    /// This many credits.
    Credits(i64),
}

/// A user's low-balance alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AlertSetting {
    /// Whether to send an email when the balance runs low or out.
    pub email: bool,
    /// The threshold (also the one credits.low webhooks use for this user).
    pub threshold: Threshold,
}

/// A user's alert setting with the threshold it comes to now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AlertState {
    /// What the user chose.
    pub setting: AlertSetting,
    /// The threshold in credits now in force.
    pub low_at: i64,
}

/// Checks a threshold: a percent of 1 to 100, or 0 to 10^12 credits.
pub fn validate_threshold(threshold: Threshold) -> Result<Threshold, InvalidInput> {
    match threshold {
        Threshold::Percent(p) if !(1..=100).contains(&p) => Err(InvalidInput::new(
            "invalid_threshold",
            "a percent threshold is 1 to 100",
        )),
        Threshold::Credits(c) if !(0..=crate::MAX_AMOUNT).contains(&c) => Err(InvalidInput::new(
            "invalid_threshold",
            format!("a threshold in credits is 0 to {}", crate::MAX_AMOUNT),
        )),
        other => Ok(other),
    }
}

impl Threshold {
    /// The stored columns: (alert_credits, alert_percent).
    pub fn columns(self) -> (Option<i64>, Option<i64>) {
        match self {
            Self::Default => (None, None),
            Self::Percent(p) => (None, Some(p)),
            Self::Credits(c) => (Some(c), None),
        }
    }

    /// From the stored columns.
    pub fn from_columns(credits: Option<i64>, percent: Option<i64>) -> Self {
        match (credits, percent) {
            (Some(c), _) => Self::Credits(c),
            (None, Some(p)) => Self::Percent(p),
            (None, None) => Self::Default,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_bounded() {
        assert!(validate_threshold(Threshold::Percent(0)).is_err());
        assert!(validate_threshold(Threshold::Percent(101)).is_err());
        assert!(validate_threshold(Threshold::Credits(-1)).is_err());
        assert!(validate_threshold(Threshold::Credits(50)).is_ok());
        assert_eq!(
            Threshold::from_columns(None, Some(30)),
            Threshold::Percent(30)
        );
    }
}
