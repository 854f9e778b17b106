//! Who is asking: the client address that the unknown-key budget is counted against.
//!
//! By default the client is the peer address of the connection, as axum records it in
//! [`ConnectInfo`] when the router is served with
//! `into_make_service_with_connect_info::<SocketAddr>()`. Behind a reverse proxy every
//! request comes from the proxy, so tell the layer how many proxies to trust and it
//! reads the address they forwarded. Forwarding headers are never read unless asked
//! for: anyone can send them.
//!
//! IPv6 clients are counted per /64 network, the smallest block a host is usually
//! given: a single machine can pick any address in its /64.
//!
//! ```
//! use std::net::{IpAddr, SocketAddr};
//! use axum::extract::ConnectInfo;
//! use http::{Extensions, HeaderMap};
//! use tower_api_key::client::ClientIp;
//!
//! let mut extensions = Extensions::new();
//! extensions.insert(ConnectInfo("10.0.0.2:50000".parse::<SocketAddr>().unwrap()));
//! let mut headers = HeaderMap::new();
//! headers.insert("x-forwarded-for", "198.51.100.7, 203.0.113.9".parse().unwrap());
//!
//! // The peer address, headers ignored.
//! let peer = ClientIp::peer();
//! assert_eq!(peer.client(&headers, &extensions), Some("10.0.0.2".parse::<IpAddr>().unwrap()));
//! // One trusted proxy in front: the address it saw, the last in the list.
//! let proxied = ClientIp::x_forwarded_for(1)?;
//! assert_eq!(proxied.client(&headers, &extensions), Some("203.0.113.9".parse().unwrap()));
//! # Ok::<(), tower_api_key::ConfigError>(())
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::ConnectInfo;
use http::{Extensions, HeaderMap};

use crate::error::ConfigError;

/// How the layer identifies the client of a request. See the [module docs](self).
#[derive(Clone)]
pub struct ClientIp {
    source: Source,
}

type Custom = Arc<dyn Fn(&HeaderMap, &Extensions) -> Option<IpAddr> + Send + Sync>;

#[derive(Clone)]
enum Source {
    Peer,
    XForwardedFor(usize),
    Forwarded(usize),
    Custom(Custom),
}

impl ClientIp {
    /// The peer address of the connection (axum's [`ConnectInfo<SocketAddr>`]). The
    /// default.
    pub fn peer() -> Self {
        Self {
            source: Source::Peer,
        }
    }

    /// The address in `X-Forwarded-For` added by the outermost of `trusted_proxies`
    /// proxies in front of this server: the `trusted_proxies`-th entry from the right.
    /// A request with fewer entries (it did not come through the proxies) is counted
    /// by its peer address.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `trusted_proxies` is zero (use [`ClientIp::peer`]).
    pub fn x_forwarded_for(trusted_proxies: usize) -> Result<Self, ConfigError> {
        Ok(Self {
            source: Source::XForwardedFor(check_proxies(trusted_proxies)?),
        })
    }

    /// As [`ClientIp::x_forwarded_for`], from the `for=` parameters of the RFC 7239
    /// `Forwarded` header.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `trusted_proxies` is zero (use [`ClientIp::peer`]).
    pub fn forwarded(trusted_proxies: usize) -> Result<Self, ConfigError> {
        Ok(Self {
            source: Source::Forwarded(check_proxies(trusted_proxies)?),
        })
    }

    /// Your own rule, for example a header set by a CDN. Return `None` when the client
    /// cannot be told: such requests share one budget.
    pub fn custom<F>(identify: F) -> Self
    where
        F: Fn(&HeaderMap, &Extensions) -> Option<IpAddr> + Send + Sync + 'static,
    {
        Self {
            source: Source::Custom(Arc::new(identify)),
        }
    }

    /// The client of a request with these headers and extensions, or `None` when it
    /// cannot be told (no `ConnectInfo`: the router was not served with connect info).
    pub fn client(&self, headers: &HeaderMap, extensions: &Extensions) -> Option<IpAddr> {
        let peer = || {
            extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip())
        };
        match &self.source {
            Source::Peer => peer(),
            Source::XForwardedFor(hops) => {
                nth_from_right(x_forwarded_for(headers), *hops).or_else(peer)
            }
            Source::Forwarded(hops) => nth_from_right(forwarded_for(headers), *hops).or_else(peer),
            Source::Custom(identify) => identify(headers, extensions),
        }
    }
}

impl Default for ClientIp {
    /// [`ClientIp::peer`].
    fn default() -> Self {
        Self::peer()
    }
}

impl fmt::Debug for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Peer => f.write_str("ClientIp::Peer"),
            Source::XForwardedFor(n) => write!(f, "ClientIp::XForwardedFor({n})"),
            Source::Forwarded(n) => write!(f, "ClientIp::Forwarded({n})"),
            Source::Custom(_) => f.write_str("ClientIp::Custom"),
        }
    }
}

fn check_proxies(trusted_proxies: usize) -> Result<usize, ConfigError> {
    if trusted_proxies == 0 {
        return Err(ConfigError::new(
            "trusting forwarding headers needs at least one trusted proxy; use ClientIp::peer()",
        ));
    }
    Ok(trusted_proxies)
}

/// The partition a client is counted in, by the unknown-key budget and by anything else
/// that counts clients: an IPv4 address as it is, an IPv6 address as its /64 network (a
/// host can pick any address in its /64), an IPv4-mapped IPv6 address as the IPv4
/// address.
///
/// ```
/// use std::net::IpAddr;
/// use tower_api_key::client::partition;
///
/// let ip = |s: &str| s.parse::<IpAddr>().unwrap();
/// assert_eq!(partition(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
/// assert_eq!(partition(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
/// assert_eq!(partition(ip("192.0.2.1")), ip("192.0.2.1"));
/// ```
pub fn partition(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mask = !0u128 << 64;
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        },
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// The `hops`-th entry from the right, parsed; `None` when there are fewer entries or
/// that entry is not an address.
fn nth_from_right<'a>(entries: impl Iterator<Item = &'a str>, hops: usize) -> Option<IpAddr> {
    let entries: Vec<&str> = entries.collect();
    let at = entries.len().checked_sub(hops)?;
    parse_node(entries[at])
}

fn x_forwarded_for(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

fn forwarded_for(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(http::header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(name, _)| name.eq_ignore_ascii_case("for"))
                .map_or("", |(_, value)| value.trim().trim_matches('"'))
        })
}

/// An address as forwarding headers write it: `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`
/// or `[2001:db8::1]:80`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    node.strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(ip, _)| ip.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn peer(addr: &str) -> Extensions {
        let mut extensions = Extensions::new();
        extensions.insert(ConnectInfo(addr.parse::<SocketAddr>().unwrap()));
        extensions
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn headers_are_ignored_unless_trusted() {
        let h = headers(&[("x-forwarded-for", "1.1.1.1"), ("forwarded", "for=2.2.2.2")]);
        assert_eq!(
            ClientIp::peer().client(&h, &peer("10.0.0.1:1")),
            ip("10.0.0.1")
        );
        assert_eq!(ClientIp::peer().client(&h, &Extensions::new()), None);
    }

    #[test]
    fn x_forwarded_for_counts_trusted_hops_from_the_right() {
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
        ]);
        let ext = peer("10.0.0.1:1");
        let hop = |n| ClientIp::x_forwarded_for(n).unwrap().client(&h, &ext);
        assert_eq!(hop(1), ip("2.2.2.2"));
        assert_eq!(hop(2), ip("1.1.1.1"));
        assert_eq!(hop(3), ip("6.6.6.6"));
        // Fewer entries than proxies: the request did not come through them.
        assert_eq!(hop(4), ip("10.0.0.1"));
        assert!(ClientIp::x_forwarded_for(0).is_err());
        // Garbage in the trusted position falls back to the peer.
        let bad = headers(&[("x-forwarded-for", "not-an-ip")]);
        assert_eq!(
            ClientIp::x_forwarded_for(1).unwrap().client(&bad, &ext),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn forwarded_reads_for_parameters() {
        let h = headers(&[(
            "forwarded",
            r#"for=192.0.2.60;proto=http;by=203.0.113.43, For="[2001:db8:cafe::17]:4711""#,
        )]);
        let ext = peer("10.0.0.1:1");
        let hop = |n| ClientIp::forwarded(n).unwrap().client(&h, &ext);
        assert_eq!(hop(1), ip("2001:db8:cafe::17"));
        assert_eq!(hop(2), ip("192.0.2.60"));
        assert_eq!(hop(3), ip("10.0.0.1"));
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        assert_eq!(
            partition("2001:db8:1:2:aaaa::1".parse().unwrap()),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            partition("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            partition("192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn a_custom_rule_decides_alone() {
        let rule = ClientIp::custom(|headers, _| {
            headers
                .get("cf-connecting-ip")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
        });
        let h = headers(&[("cf-connecting-ip", "9.9.9.9")]);
        assert_eq!(rule.client(&h, &peer("10.0.0.1:1")), ip("9.9.9.9"));
        assert_eq!(rule.client(&HeaderMap::new(), &peer("10.0.0.1:1")), None);
    }
}
