//! Who the client is, behind trusted proxies, and how rate limits count it.

/// Whether `address` is one of the `trusted` proxies (single addresses or CIDR ranges).
pub fn is_trusted(trusted: &[ipnet::IpNet], address: std::net::IpAddr) -> bool {
    let address = address.to_canonical();
    trusted.iter().any(|net| net.contains(&address))
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the address that proxy
/// names. Every `X-Forwarded-For` line counts, as one list (a proxy may add a line rather than
/// extend the last one); it is walked from the right, past trusted proxies, to the first address
/// that is not one. A hop that does not parse ends the walk: what lies to its left cannot be
/// told apart from what the client wrote, so the last trusted hop stands for the client.
pub fn client_address(
    peer: std::net::SocketAddr,
    headers: &http::HeaderMap,
    trusted: &[ipnet::IpNet],
) -> std::net::IpAddr {
    let mut client = peer.ip().to_canonical();
    if trusted.is_empty() {
        return client;
    }
    for hop in hops_in_order(headers) {
        if !is_trusted(trusted, client) {
            break;
        }
        match hop {
            Some(address) => client = address,
            None => break,
        }
    }
    client
}

/// The hops of every `X-Forwarded-For` line, rightmost first; `None` for one that does not parse
/// (a line that is not text counts as one such hop).
fn hops_in_order(headers: &http::HeaderMap) -> impl Iterator<Item = Option<std::net::IpAddr>> + '_ {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .rev()
        .flat_map(|line| {
            let (text, not_text) = match line.to_str() {
                Ok(text) => (Some(text.rsplit(',').map(parse_hop)), None),
                Err(_) => (None, Some(None)),
            };
            text.into_iter().flatten().chain(not_text)
        })
}

/// One hop: an address, possibly with a port (`203.0.113.7:4711`, `[2001:db8::1]:443`).
fn parse_hop(hop: &str) -> Option<std::net::IpAddr> {
    let hop = hop.trim();
    hop.parse::<std::net::IpAddr>()
        .or_else(|_| hop.parse::<std::net::SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|address| address.to_canonical())
}

/// The address a rate limit counts a client by: an IPv4 address as it is, an IPv6 one by its
/// /64 (one subscriber's network: a client can pick any address within it).
pub fn address_for_limits(address: std::net::IpAddr) -> std::net::IpAddr {
    match address.to_canonical() {
        std::net::IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            std::net::IpAddr::V6(std::net::Ipv6Addr::from(network))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn forwarded(lines: &[&str]) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        for line in lines {
            headers.append("x-forwarded-for", HeaderValue::from_str(line).unwrap());
        }
        headers
    }

    fn address(s: &str) -> std::net::IpAddr {
        s.parse().unwrap()
    }

    fn peer(s: &str) -> std::net::SocketAddr {
        std::net::SocketAddr::new(address(s), 40000)
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = nets(&["10.0.0.0/8"]);
        let headers = forwarded(&["1.1.1.1"]);
        assert_eq!(
            client_address(peer("203.0.113.9"), &headers, &trusted),
            address("203.0.113.9")
        );
        assert_eq!(
            client_address(peer("10.0.0.1"), &headers, &[]),
            address("10.0.0.1"),
            "nothing trusted: the peer"
        );
    }

    #[test]
    fn the_walk_goes_from_the_right_past_trusted_proxies_in_ranges() {
        let trusted = nets(&["10.0.0.0/8", "fd00::/8", "198.51.100.4/32"]);
        // The client wrote a made-up hop; two proxies of ours appended what they saw.
        let headers = forwarded(&["6.6.6.6, 203.0.113.7, 10.1.2.3"]);
        assert_eq!(
            client_address(peer("198.51.100.4"), &headers, &trusted),
            address("203.0.113.7")
        );
        let headers = forwarded(&["2001:db8::1, fd12::5"]);
        assert_eq!(
            client_address(peer("fd00::1"), &headers, &trusted),
            address("2001:db8::1")
        );
        // Every hop trusted: the leftmost.
        let headers = forwarded(&["10.9.9.9"]);
        assert_eq!(
            client_address(peer("10.0.0.1"), &headers, &trusted),
            address("10.9.9.9")
        );
        // An IPv4 peer on a dual-stack socket is trusted as its IPv4 self.
        assert_eq!(
            client_address(
                peer("::ffff:10.0.0.1"),
                &forwarded(&["192.0.2.1"]),
                &trusted
            ),
            address("192.0.2.1")
        );
    }

    #[test]
    fn every_forwarded_for_line_counts_the_last_one_rightmost() {
        let trusted = nets(&["10.0.0.0/8"]);
        // A proxy that adds a line of its own instead of extending the client's.
        let headers = forwarded(&["6.6.6.6", "203.0.113.7"]);
        assert_eq!(
            client_address(peer("10.0.0.1"), &headers, &trusted),
            address("203.0.113.7")
        );
        let headers = forwarded(&["203.0.113.7", "10.0.0.2, 10.0.0.3"]);
        assert_eq!(
            client_address(peer("10.0.0.1"), &headers, &trusted),
            address("203.0.113.7"),
            "the walk crosses lines"
        );
    }

    #[test]
    fn a_hop_that_does_not_parse_ends_the_walk() {
        let trusted = nets(&["10.0.0.0/8"]);
        let headers = forwarded(&["1.1.1.1, unknown, 10.0.0.3"]);
        assert_eq!(
            client_address(peer("10.0.0.1"), &headers, &trusted),
            address("10.0.0.3"),
            "not 1.1.1.1, which anyone could have written"
        );
        let headers = forwarded(&["1.1.1.1", ""]);
        assert_eq!(
            client_address(peer("10.0.0.1"), &headers, &trusted),
            address("10.0.0.1")
        );
        let mut headers = forwarded(&["1.1.1.1"]);
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(
            client_address(peer("10.0.0.1"), &headers, &trusted),
            address("10.0.0.1"),
            "a line that is not text is a hop that does not parse"
        );
        // Ports are allowed.
        let headers = forwarded(&["[2001:db8::7]:443, 203.0.113.7:4711"]);
        assert_eq!(
            client_address(peer("10.0.0.1"), &headers, &trusted),
            address("203.0.113.7")
        );
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64() {
        assert_eq!(
            address_for_limits(address("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            address("2001:db8:1:2::")
        );
        assert_eq!(
            address_for_limits(address("2001:db8:1:2::1")),
            address_for_limits(address("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            address_for_limits(address("2001:db8:1:2::1")),
            address_for_limits(address("2001:db8:1:3::1"))
        );
        assert_eq!(
            address_for_limits(address("203.0.113.7")),
            address("203.0.113.7")
        );
        assert_eq!(
            address_for_limits(address("::ffff:203.0.113.7")),
            address("203.0.113.7")
        );
    }
}
