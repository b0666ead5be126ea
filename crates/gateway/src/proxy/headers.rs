//! The headers the proxy rewrites: those meant for one hop, `X-Forwarded-*`, the `RateLimit-*`
//! answer headers, and the client's address as the limits count it.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::AppState;
use crate::limits::{Decision, PerMinute};

/// The standard hop-by-hop headers, as names made once: a name compared with text is compared
/// letter by letter, ignoring case, and every header of every message is looked at.
pub(super) const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes the headers meant for this hop only: the standard ones and those the `Connection`
/// header names, except the two the gateway has made its own by now (the request id and the
/// body's length). Run before the gateway writes its own headers, so that naming them in
/// `Connection` cannot take them off.
pub(super) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one look at each name instead of a removal of each of nine.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::try_from(name.trim()).ok())
            .filter(|name| {
                name.as_str() != hub_http::REQUEST_ID_HEADER && name != header::CONTENT_LENGTH
            })
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Whether `name` is one of [`HOP_BY_HOP`].
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// `X-Forwarded-For`: the client's address, appended to what a trusted proxy in front said.
pub(super) fn forwarded_for(state: &AppState, peer: SocketAddr, headers: &mut HeaderMap) {
    let trusted = hub_http::is_trusted(&state.config.trusted_proxies, peer.ip());
    let mut before = String::new();
    if trusted {
        // Every line, in order, as one list.
        for line in headers.get_all(&X_FORWARDED_FOR) {
            if let Ok(line) = line.to_str() {
                before.push_str(line);
                before.push_str(", ");
            }
        }
    }
    let mut value = before;
    value.reserve(39);
    push_ip(&mut value, peer.ip());
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    let proto = if state.config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let kept_proto = headers.get(&X_FORWARDED_PROTO).filter(|_| trusted).cloned();
    headers.insert(
        X_FORWARDED_PROTO,
        kept_proto.unwrap_or(HeaderValue::from_static(proto)),
    );
}

/// The key of a client address's own rate limit (requests without a caller).
pub(super) fn address_key(client: IpAddr) -> String {
    let mut key = String::with_capacity(48);
    key.push_str("address:");
    push_ip(&mut key, client);
    key
}

/// Appends `ip` as its `Display` writes it, an IPv4 address digit by digit: two are written for
/// every forwarded request (its `X-Forwarded-For` and its limit key), and the formatting
/// machinery cost more than the rest of either.
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(_) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{ip}");
        }
    }
}

/// The client's address as the rate limits count it (an IPv6 client by its /64).
pub(super) fn client_address(state: &AppState, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    hub_http::address_for_limits(hub_http::client_address(
        peer,
        headers,
        &state.config.trusted_proxies,
    ))
}

/// `RateLimit-Limit`, `-Remaining` and `-Reset` of a decision.
pub(super) fn rate_limit_headers(headers: &mut HeaderMap, limit: PerMinute, decision: Decision) {
    let reset = decision.reset.as_secs() + u64::from(decision.reset.subsec_nanos() > 0);
    headers.insert(RATELIMIT_LIMIT, HeaderValue::from(limit.0));
    headers.insert(RATELIMIT_REMAINING, HeaderValue::from(decision.remaining));
    headers.insert(RATELIMIT_RESET, HeaderValue::from(reset));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_their_display_writes_them() {
        let addresses = [
            "0.0.0.0",
            "127.0.0.1",
            "255.255.255.255",
            "10.0.100.9",
            "192.168.1.20",
            "1.99.100.101",
            "::1",
            "2001:db8::",
            "::ffff:10.0.0.1",
        ];
        for text in addresses {
            let ip: IpAddr = text.parse().unwrap();
            let mut written = String::from("x");
            push_ip(&mut written, ip);
            assert_eq!(written, format!("x{ip}"));
        }
        assert_eq!(
            address_key("10.0.100.9".parse().unwrap()),
            "address:10.0.100.9"
        );
    }
}
