//! Whole numbers of credits (and seconds) as JSON sends them: `30`, and also `30.0`, which JSON
//! Schema's `integer` (the API document's type) counts as the same integer. `30.5`, strings and
//! anything outside `i64` are refused (422).

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

/// For a required field: `#[serde(deserialize_with = "whole::required")]`.
pub fn required<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    deserializer.deserialize_any(WholeVisitor)
}

/// For an optional field: `#[serde(default, deserialize_with = "whole::optional")]`.
pub fn optional<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    deserializer.deserialize_option(OptionalVisitor)
}

struct WholeVisitor;

impl Visitor<'_> for WholeVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a whole number")
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<i64, E> {
        Ok(value)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<i64, E> {
        i64::try_from(value).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(value), &self))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<i64, E> {
        // 2^63 is exactly representable; every whole f64 below it fits in an i64.
        const LIMIT: f64 = 9_223_372_036_854_775_808.0;
        if value.fract() == 0.0 && (-LIMIT..LIMIT).contains(&value) {
            #[allow(clippy::cast_possible_truncation)]
            Ok(value as i64)
        } else {
            Err(E::invalid_value(de::Unexpected::Float(value), &self))
        }
    }
}

struct OptionalVisitor;

impl<'de> Visitor<'de> for OptionalVisitor {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a whole number or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<i64>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<i64>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<i64>, D::Error> {
        required(deserializer).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Body {
        #[serde(deserialize_with = "super::required")]
        cost: i64,
        #[serde(default, deserialize_with = "super::optional")]
        amount: Option<i64>,
    }

    fn parse(json: &str) -> Result<(i64, Option<i64>), String> {
        serde_json::from_str::<Body>(json)
            .map(|b| (b.cost, b.amount))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn whole_numbers_are_taken_in_either_spelling() {
        assert_eq!(parse(r#"{"cost": 30}"#), Ok((30, None)));
        assert_eq!(parse(r#"{"cost": 30.0, "amount": 2.0}"#), Ok((30, Some(2))));
        assert_eq!(parse(r#"{"cost": -1, "amount": null}"#), Ok((-1, None)));
        assert_eq!(parse(r#"{"cost": 1e3}"#), Ok((1000, None)));
    }

    #[test]
    fn fractions_strings_and_huge_numbers_are_refused() {
        for body in [
            r#"{"cost": 1.5}"#,
            r#"{"cost": "30"}"#,
            r#"{"cost": 1e19}"#,
            r#"{"cost": 18446744073709551615}"#,
            r#"{"cost": 1, "amount": 0.5}"#,
        ] {
            let error = parse(body).unwrap_err();
            assert!(error.contains("whole number"), "{body}: {error}");
        }
    }
}
