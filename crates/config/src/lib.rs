//! Typed configuration read once from the environment (and an optional `.env` file).
//!
//! Every service reads its variables through [`Env`], so a missing or malformed variable stops
//! the start with a message that names the variable and what it expects.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fmt::Display;
use std::path::PathBuf;
use std::str::FromStr;

pub use ipnet::IpNet;
pub use secrecy::{ExposeSecret, SecretString};

/// A variable that is present but cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}: {problem} (expected {expected})")]
pub struct ConfigError {
    /// The variable's name.
    pub name: String,
    /// What is wrong with it.
    pub problem: String,
    /// What it should hold.
    pub expected: String,
}

/// Loads `.env` from the working directory if there is one; variables already set win.
pub fn load_dotenv() {
    // A missing .env is the normal case; a malformed one is reported by the variable readers.
    let _ = dotenvy::dotenv();
}

/// A source of configuration variables: the process environment, or a map in tests.
#[derive(Debug, Clone, Default)]
pub struct Env {
    overrides: Option<HashMap<String, String>>,
}

impl Env {
    /// Reads from the process environment.
    pub fn process() -> Self {
        Self { overrides: None }
    }

    /// Reads only from the given pairs (for tests and for `hub up`).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            overrides: Some(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    /// The raw value of a variable; empty values count as unset.
    pub fn raw(&self, name: &str) -> Option<String> {
        let value = match &self.overrides {
            Some(map) => map.get(name).cloned(),
            None => std::env::var(name).ok(),
        };
        value.filter(|v| !v.trim().is_empty())
    }

    /// A parsed variable, or `default` when unset.
    pub fn parse_or<T>(&self, name: &str, default: T, expected: &str) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        Ok(self.parse(name, expected)?.unwrap_or(default))
    }

    /// A parsed variable, or `None` when unset.
    pub fn parse<T>(&self, name: &str, expected: &str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.raw(name) {
            None => Ok(None),
            Some(raw) => raw
                .trim()
                .parse()
                .map(Some)
                .map_err(|e: T::Err| ConfigError {
                    name: name.to_owned(),
                    problem: format!("cannot parse {raw:?}: {e}"),
                    expected: expected.to_owned(),
                }),
        }
    }

    /// A string variable, or `default` when unset.
    pub fn string_or(&self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or_else(|| default.to_owned())
    }

    /// `HUB_INTERNAL_TOKEN`, required: the secret the gateway presents to the services and they
    /// trust, at least 32 characters (`hub up` makes one for you).
    pub fn internal_token(&self) -> Result<SecretString, ConfigError> {
        self.secret_min_len("HUB_INTERNAL_TOKEN", 32)?
            .ok_or_else(|| ConfigError {
                name: "HUB_INTERNAL_TOKEN".into(),
                problem: "not set".into(),
                expected: "a random secret of at least 32 characters shared by the services \
                           (`hub up` makes one for you)"
                    .into(),
            })
    }

    /// `PUBLIC_BASE_URL`, the address people and clients reach the hub at (the gateway), with
    /// no trailing slash: default `http://localhost:3000`; anything but an http(s) URL is refused.
    /// Every service that names the hub in what it answers (links, documents) reads it here.
    pub fn public_base_url(&self) -> Result<String, ConfigError> {
        let url = self.string_or("PUBLIC_BASE_URL", "http://localhost:3000");
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError {
                name: "PUBLIC_BASE_URL".into(),
                problem: format!("{url:?} is not an http(s) URL"),
                expected: "the address people reach the hub at, e.g. https://hub.example.com"
                    .into(),
            });
        }
        Ok(url.trim_end_matches('/').to_owned())
    }

    /// A switch: `1`, `true`, `yes` or `on` is on, `0`, `false`, `no` or `off` off; unset is off.
    pub fn flag(&self, name: &str) -> Result<bool, ConfigError> {
        self.flag_or(name, false)
    }

    /// A switch as [`Env::flag`], `default` when unset.
    pub fn flag_or(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self
            .raw(name)
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None => Ok(default),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some(other) => Err(ConfigError {
                name: name.to_owned(),
                problem: format!("cannot read {other:?} as on or off"),
                expected: "1 or 0".to_owned(),
            }),
        }
    }

    /// A secret variable; it never prints.
    pub fn secret(&self, name: &str) -> Option<SecretString> {
        self.raw(name).map(SecretString::from)
    }

    /// A secret that must be at least `min_len` characters long when set.
    pub fn secret_min_len(
        &self,
        name: &str,
        min_len: usize,
    ) -> Result<Option<SecretString>, ConfigError> {
        match self.raw(name) {
            None => Ok(None),
            Some(value) if value.len() >= min_len => Ok(Some(SecretString::from(value))),
            Some(_) => Err(ConfigError {
                name: name.to_owned(),
                problem: "too short".to_owned(),
                expected: format!("a secret of at least {min_len} characters"),
            }),
        }
    }

    /// A comma-separated list of IP addresses and CIDR ranges (`10.0.0.0/8`, `fd00::/8`), or
    /// `default` when unset; a single address is a range of one.
    pub fn net_list(&self, name: &str, default: &str) -> Result<Vec<IpNet>, ConfigError> {
        self.string_or(name, default)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .map(|net| net.trunc())
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| ConfigError {
                        name: name.to_owned(),
                        problem: format!("{s:?} is neither an IP address nor a CIDR range"),
                        expected: "comma-separated IP addresses or CIDR ranges, e.g. 10.0.0.0/8,fd00::/8,203.0.113.7"
                            .to_owned(),
                    })
            })
            .collect()
    }

    /// The data directory of the embedded mode (`HUB_DATA_DIR`, default `./data`).
    pub fn data_dir(&self) -> PathBuf {
        PathBuf::from(self.string_or("HUB_DATA_DIR", "./data"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_variable_names_itself_and_what_it_expects() {
        let env = Env::from_pairs([("CORE_ADDR", "not an address")]);
        let err = env
            .parse::<std::net::SocketAddr>("CORE_ADDR", "host:port, e.g. 127.0.0.1:3002")
            .unwrap_err()
            .to_string();
        assert!(err.contains("CORE_ADDR"), "{err}");
        assert!(err.contains("host:port"), "{err}");
    }

    #[test]
    fn empty_values_count_as_unset() {
        let env = Env::from_pairs([("X", "  ")]);
        assert_eq!(env.parse_or::<u16>("X", 7, "a port").unwrap(), 7);
        assert!(env.secret("X").is_none());
    }

    #[test]
    fn address_lists_take_single_addresses_and_cidr_ranges() {
        let env = Env::from_pairs([("P", " 10.0.0.0/8, 203.0.113.7,fd00::/8 ,::1")]);
        let nets = env.net_list("P", "").unwrap();
        let shown: Vec<String> = nets.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["10.0.0.0/8", "203.0.113.7/32", "fd00::/8", "::1/128"]
        );
        // A range written with host bits set means its network.
        let env = Env::from_pairs([("P", "10.1.2.3/8")]);
        assert_eq!(env.net_list("P", "").unwrap()[0].to_string(), "10.0.0.0/8");
        let env = Env::from_pairs([("P", "10.0.0.0/33")]);
        let err = env.net_list("P", "").unwrap_err().to_string();
        assert!(err.contains('P') && err.contains("CIDR"), "{err}");
        assert!(env.net_list("UNSET", "").unwrap().is_empty());
    }

    #[test]
    fn short_secrets_are_refused() {
        let env = Env::from_pairs([("HUB_INTERNAL_TOKEN", "short")]);
        assert!(env.secret_min_len("HUB_INTERNAL_TOKEN", 32).is_err());
    }

    #[test]
    fn switches_are_off_unless_turned_on_and_nonsense_is_named() {
        let env = Env::from_pairs([("A", "1"), ("B", "off"), ("C", "TRUE"), ("D", "maybe")]);
        assert!(env.flag("A").unwrap());
        assert!(!env.flag("B").unwrap());
        assert!(env.flag("C").unwrap());
        assert!(!env.flag("UNSET").unwrap());
        assert!(env.flag("D").unwrap_err().to_string().contains("D"));
    }
}
