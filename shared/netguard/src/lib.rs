//! # captcha-netguard
//!
//! The outbound network policy: which addresses the service may reach when it
//! delivers a callback, loads a page in the browser or fetches a proof-of-work
//! challenge. URLs a client sends are untrusted, so by default only public
//! unicast addresses are allowed; private, loopback, link-local, CGNAT,
//! metadata and other special ranges are refused unless an operator allows a
//! range explicitly (`--allow-private-network 127.0.0.0/8`, tests do that).
//!
//! - [`Cidr`]: an address range, parsed from `10.0.0.0/8`, `::1/128` or a bare address.
//! - [`NetPolicy`]: the allow-list and the checks ([`NetPolicy::check_url`],
//!   [`NetPolicy::check_ip`], [`NetPolicy::resolve`]).
//! - [`GuardedClient`]: a `reqwest` client that checks every URL before a
//!   request, resolves names through the policy (so DNS cannot point it at a
//!   refused address, also not on a second lookup) and never follows redirects.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

pub use url::Url;

/// Why a URL or address may not be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("not a valid absolute URL")]
    BadUrl,
    #[error("only http and https URLs are allowed")]
    BadScheme,
    #[error("address {0} is in a refused range (private, loopback, link-local or special)")]
    Refused(IpAddr),
    #[error("host {0} did not resolve")]
    Unresolved(String),
}

/// An IPv4 or IPv6 address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(self.prefix)) };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| format!("{s:?} is not an address range"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| format!("{s:?}: bad prefix length"))?,
            None => max,
        };
        Cidr::new(addr, prefix).ok_or_else(|| format!("{s:?}: prefix longer than {max}"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Whether an address is anything but plain public unicast: private (RFC 1918,
/// IPv6 ULA), loopback, link-local (incl. the 169.254.169.254 metadata
/// service), CGNAT, unspecified, multicast, broadcast, documentation,
/// benchmarking and reserved ranges; IPv4-mapped/NAT64 IPv6 forms are judged
/// by the IPv4 address inside.
pub fn is_special(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_special_v4(v4),
        IpAddr::V6(v6) => is_special_v6(v6),
    }
}

fn is_special_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0                                   // "this network"
        || (a == 100 && (64..128).contains(&b))      // CGNAT 100.64/10
        || (a == 192 && b == 0 && c == 0)            // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19))        // benchmarking 198.18/15
        || a >= 240 // reserved
}

fn is_special_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_special_v4(v4);
    }
    let seg = ip.segments();
    // NAT64 well-known prefix 64:ff9b::/96 carries an IPv4 address.
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
        let [a, b] = seg[6].to_be_bytes();
        let [c, d] = seg[7].to_be_bytes();
        return is_special_v4(Ipv4Addr::new(a, b, c, d));
    }
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (seg[0] & 0xfe00) == 0xfc00   // unique local fc00::/7
        || (seg[0] & 0xffc0) == 0xfe80   // link-local fe80::/10
        || (seg[0] & 0xffc0) == 0xfec0   // site-local (deprecated) fec0::/10
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
        || seg[0] == 0 // other ::/16 forms (IPv4-compatible, discard prefix…)
}

/// Which outbound addresses are allowed: every public address, plus the
/// special ranges an operator listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetPolicy {
    allowed: Vec<Cidr>,
}

impl NetPolicy {
    /// Public addresses only.
    pub fn strict() -> NetPolicy {
        NetPolicy::default()
    }

    /// Public addresses plus these ranges.
    pub fn allowing(ranges: impl IntoIterator<Item = Cidr>) -> NetPolicy {
        NetPolicy { allowed: ranges.into_iter().collect() }
    }

    /// Parses a comma- or space-separated list such as `127.0.0.0/8, ::1`
    /// (the form of an environment variable).
    pub fn parse_list(s: &str) -> Result<NetPolicy, String> {
        let ranges = s
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|p| !p.is_empty())
            .map(Cidr::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NetPolicy::allowing(ranges))
    }

    pub fn allowed(&self) -> &[Cidr] {
        &self.allowed
    }

    pub fn check_ip(&self, ip: IpAddr) -> Result<(), NetError> {
        if !is_special(ip) || self.allowed.iter().any(|c| c.contains(ip)) {
            Ok(())
        } else {
            Err(NetError::Refused(ip))
        }
    }

    /// Parses and checks a URL without touching the network: absolute,
    /// `http`/`https`, a host, and if the host is an address literal it must
    /// be allowed. Names are checked when they are resolved.
    pub fn check_url(&self, url: &str) -> Result<Url, NetError> {
        let url = Url::parse(url.trim()).map_err(|_| NetError::BadUrl)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(NetError::BadScheme);
        }
        match url.host() {
            None => return Err(NetError::BadUrl),
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip))?,
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip))?,
            Some(url::Host::Domain("")) => return Err(NetError::BadUrl),
            Some(url::Host::Domain(_)) => {}
        }
        Ok(url)
    }

    /// [`NetPolicy::check_url`], then resolves the host and checks every
    /// address it resolves to (one refused address refuses the URL).
    pub async fn resolve(&self, url: &str) -> Result<(Url, Vec<SocketAddr>), NetError> {
        let url = self.check_url(url)?;
        let host = url.host_str().ok_or(NetError::BadUrl)?.trim_start_matches('[').trim_end_matches(']');
        let port = url.port_or_known_default().ok_or(NetError::BadUrl)?;
        let addrs = self.lookup(host, port).await?;
        Ok((url, addrs))
    }

    async fn lookup(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, NetError> {
        let addrs: Vec<SocketAddr> =
            tokio::net::lookup_host((host, port)).await.map_err(|_| NetError::Unresolved(host.to_string()))?.collect();
        if addrs.is_empty() {
            return Err(NetError::Unresolved(host.to_string()));
        }
        for a in &addrs {
            self.check_ip(a.ip())?;
        }
        Ok(addrs)
    }
}

/// Resolves names for `reqwest` through the policy: a name that resolves to a
/// refused address fails the connection (checked on every lookup, so a
/// rebinding DNS answer cannot slip through between check and connect).
struct GuardedResolver(Arc<NetPolicy>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs =
                policy.lookup(&host, 0).await.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// An HTTP client that only reaches what the policy allows and never follows
/// redirects. Build it once per process and share it.
#[derive(Clone)]
pub struct GuardedClient {
    client: reqwest::Client,
    policy: Arc<NetPolicy>,
}

impl GuardedClient {
    /// A client with a whole-request `timeout`.
    pub fn new(policy: NetPolicy, timeout: Duration, user_agent: &str) -> Result<GuardedClient, reqwest::Error> {
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(user_agent)
            .dns_resolver(Arc::new(GuardedResolver(policy.clone())))
            .build()?;
        Ok(GuardedClient { client, policy })
    }

    pub fn policy(&self) -> &NetPolicy {
        &self.policy
    }

    /// A request to `url` if the URL passes [`NetPolicy::check_url`]
    /// (address literals are checked here; names when they are resolved).
    pub fn request(&self, method: reqwest::Method, url: &str) -> Result<reqwest::RequestBuilder, NetError> {
        let url = self.policy.check_url(url)?;
        Ok(self.client.request(method, url))
    }

    pub fn get(&self, url: &str) -> Result<reqwest::RequestBuilder, NetError> {
        self.request(reqwest::Method::GET, url)
    }

    pub fn post(&self, url: &str) -> Result<reqwest::RequestBuilder, NetError> {
        self.request(reqwest::Method::POST, url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn special_ranges_are_recognised() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "fd00:ec2::254",
        ] {
            assert!(is_special(ip(s)), "{s} should be special");
        }
        for s in ["1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8", "100.128.0.1"] {
            assert!(!is_special(ip(s)), "{s} should be public");
        }
    }

    #[test]
    fn cidrs_parse_and_match() {
        let c: Cidr = "127.0.0.0/8".parse().expect("cidr");
        assert!(c.contains(ip("127.9.9.9")));
        assert!(!c.contains(ip("128.0.0.1")));
        assert!(!c.contains(ip("::1")));
        let one: Cidr = "::1".parse().expect("cidr");
        assert!(one.contains(ip("::1")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
        assert_eq!(NetPolicy::parse_list("127.0.0.0/8, ::1").expect("list").allowed().len(), 2);
    }

    #[test]
    fn strict_policy_refuses_special_literals_and_bad_schemes() {
        let p = NetPolicy::strict();
        assert_eq!(p.check_url("http://127.0.0.1:8080/x").err(), Some(NetError::Refused(ip("127.0.0.1"))));
        assert!(matches!(p.check_url("http://[::1]/"), Err(NetError::Refused(_))));
        assert!(matches!(p.check_url("http://169.254.169.254/latest/meta-data"), Err(NetError::Refused(_))));
        assert!(matches!(p.check_url("http://[::ffff:7f00:1]/"), Err(NetError::Refused(_))));
        assert_eq!(p.check_url("file:///etc/passwd").err(), Some(NetError::BadScheme));
        assert_eq!(p.check_url("gopher://example.com/").err(), Some(NetError::BadScheme));
        assert_eq!(p.check_url("not a url").err(), Some(NetError::BadUrl));
        assert!(p.check_url("https://example.com/cb").is_ok());
        let loopback = NetPolicy::parse_list("127.0.0.0/8").expect("list");
        assert!(loopback.check_url("http://127.0.0.1:8080/x").is_ok());
        assert!(matches!(loopback.check_url("http://10.0.0.1/"), Err(NetError::Refused(_))));
    }

    #[tokio::test]
    async fn names_are_checked_after_resolution() {
        // `localhost` resolves to loopback: refused by the strict policy.
        let strict = NetPolicy::strict();
        assert!(matches!(strict.resolve("http://localhost:9/").await, Err(NetError::Refused(_))));
        let allow = NetPolicy::parse_list("127.0.0.0/8 ::1").expect("list");
        let (_, addrs) = allow.resolve("http://localhost:9/").await.expect("allowed");
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 9));
    }

    async fn serve_redirect() -> SocketAddr {
        use axum::{response::Redirect, routing::get, Router};
        let app = Router::new()
            .route("/ok", get(|| async { "fine" }))
            .route("/hop", get(|| async { Redirect::temporary("http://127.0.0.1:9/elsewhere") }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    #[tokio::test]
    async fn guarded_client_refuses_loopback_unless_allowed_and_never_redirects() {
        let addr = serve_redirect().await;
        let strict = GuardedClient::new(NetPolicy::strict(), Duration::from_secs(2), "t").expect("client");
        assert!(matches!(strict.get(&format!("http://{addr}/ok")), Err(NetError::Refused(_))));
        // A name that resolves to loopback is refused at connect time.
        let by_name =
            strict.get(&format!("http://localhost:{}/ok", addr.port())).expect("name passes the literal check");
        assert!(by_name.send().await.is_err());

        let allowed =
            GuardedClient::new(NetPolicy::parse_list("127.0.0.0/8").expect("list"), Duration::from_secs(2), "t")
                .expect("client");
        let body = allowed.get(&format!("http://{addr}/ok")).expect("allowed").send().await.expect("send");
        assert_eq!(body.text().await.expect("text"), "fine");
        let hop = allowed.get(&format!("http://{addr}/hop")).expect("allowed").send().await.expect("send");
        assert_eq!(hop.status(), 307, "redirects are returned, not followed");
    }
}
