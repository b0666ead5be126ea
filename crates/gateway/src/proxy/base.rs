//! The services' base URLs (`AUTH_URL`, `CORE_URL`, `MCP_URL`), parsed once: where a forwarded
//! request goes is the base's scheme and address with the request's own path and query, put
//! together from parts without formatting and parsing a URI per request.

use http::Uri;
use http::uri::{Authority, Parts, PathAndQuery, Scheme};

use crate::Config;
use crate::routes::Upstream;

/// One service's base URL.
struct Base {
    /// As configured.
    url: String,
    /// Its scheme and address, when it has no path of its own.
    bare: Option<(Scheme, Authority)>,
}

impl Base {
    fn new(url: &str) -> Self {
        let bare = url.parse::<Uri>().ok().and_then(|uri| {
            let parts = uri.into_parts();
            let no_path = parts.path_and_query.as_ref().is_none_or(|pq| {
                pq.as_str().is_empty() || (pq.as_str() == "/" && !url.ends_with('/'))
            });
            match (parts.scheme, parts.authority) {
                (Some(scheme), Some(authority)) if no_path => Some((scheme, authority)),
                _ => None,
            }
        });
        Self {
            url: url.to_owned(),
            bare,
        }
    }

    /// The base followed by `path_and_query`; `None` when that is not a URI.
    fn join(&self, path_and_query: Option<&PathAndQuery>) -> Option<Uri> {
        match &self.bare {
            Some((scheme, authority)) => {
                let mut parts = Parts::default();
                parts.scheme = Some(scheme.clone());
                parts.authority = Some(authority.clone());
                parts.path_and_query = Some(
                    path_and_query
                        .cloned()
                        .unwrap_or(PathAndQuery::from_static("/")),
                );
                Uri::from_parts(parts).ok()
            }
            None => {
                let path_and_query = path_and_query.map_or("/", PathAndQuery::as_str);
                format!("{}{path_and_query}", self.url).parse().ok()
            }
        }
    }
}

/// The three services' base URLs.
pub struct Bases {
    auth: Base,
    core: Base,
    mcp: Base,
}

impl Bases {
    /// From the configuration's URLs.
    pub fn new(config: &Config) -> Self {
        Self {
            auth: Base::new(&config.auth_url),
            core: Base::new(&config.core_url),
            mcp: Base::new(&config.mcp_url),
        }
    }

    /// Where a request for `upstream` with `path_and_query` goes; `None` when that is not a URI.
    pub(crate) fn target(
        &self,
        upstream: Upstream,
        path_and_query: Option<&PathAndQuery>,
    ) -> Option<Uri> {
        let base = match upstream {
            Upstream::Auth => &self.auth,
            Upstream::Core => &self.core,
            Upstream::Mcp => &self.mcp,
        };
        base.join(path_and_query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_base_and_a_base_with_a_path_join_as_text_would() {
        let pq = PathAndQuery::from_static("/api/x?y=1");
        for base in [
            "http://127.0.0.1:3002",
            "http://core:3002",
            "http://[::1]:3002",
            "http://core:3002/",
            "http://core:3002/prefix",
        ] {
            let joined = Base::new(base).join(Some(&pq)).unwrap();
            assert_eq!(joined.to_string(), format!("{base}/api/x?y=1"), "{base}");
            assert_eq!(
                Base::new(base).join(None).unwrap().to_string(),
                format!("{base}/"),
                "{base}"
            );
        }
    }
}
