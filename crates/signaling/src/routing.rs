//! Addressing helpers of the proxy: which URIs mean this server, where a URI leads, our Via and
//! Record-Route values, and the loop-detection hash of RFC 3261 §16.6 step 8.

use std::net::{IpAddr, SocketAddr};

use vienna_crypto::hmac_sha256;
use vienna_sip::transaction::Peer;
use vienna_sip::{HeaderName, Request, SipUri, Transport};

use crate::config::{CoreConfig, LocalAddr};

/// Default port of a transport (RFC 3261 §19.1.2).
pub fn default_port(transport: Transport) -> u16 {
    if transport == Transport::Tls { 5061 } else { 5060 }
}

/// The transport a URI asks for: its `transport` parameter, TLS for `sips:`, else UDP.
pub fn uri_transport(uri: &SipUri) -> Option<Transport> {
    match uri.transport() {
        Some(t) => Transport::from_via(&t),
        None if uri.secure => Some(Transport::Tls),
        None => Some(Transport::Udp),
    }
}

/// Where a URI leads without DNS: an IP literal or `localhost`, its port or the transport's default.
/// `None` for other host names (DNS resolution per RFC 3263 is not done).
pub fn uri_peer(uri: &SipUri) -> Option<Peer> {
    let transport = uri_transport(uri)?;
    let host = uri.host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr =
        if host.eq_ignore_ascii_case("localhost") { IpAddr::from([127, 0, 0, 1]) } else { host.parse().ok()? };
    let port = uri.port.unwrap_or_else(|| default_port(transport));
    Some(Peer { transport, addr: SocketAddr::new(ip, port) })
}

impl CoreConfig {
    /// Whether `uri` names this server or its domain (RFC 3261 §16.4): the domain or an alias without a port
    /// or with one of our ports, or one of our listening addresses.
    pub fn is_local_uri(&self, uri: &SipUri) -> bool {
        let host = uri.host.trim_start_matches('[').trim_end_matches(']');
        let our_port = |port: Option<u16>| match port {
            None => true,
            Some(p) => self.local.iter().any(|l| l.addr.port() == p),
        };
        if host.eq_ignore_ascii_case(&self.domain) || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(host)) {
            return our_port(uri.port);
        }
        let Ok(ip) = host.parse::<IpAddr>() else { return false };
        self.local.iter().any(|l| {
            let port = uri.port.unwrap_or_else(|| default_port(l.transport));
            l.addr.port() == port && (l.addr.ip() == ip || (l.addr.ip().is_unspecified() && ip.is_loopback()))
        })
    }

    /// Whether `uri`'s host is the local domain (a user there is one of ours), whatever the port.
    pub fn is_local_domain(&self, uri: &SipUri) -> bool {
        let host = uri.host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case(&self.domain)
            || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(host))
            || (uri.user.is_some() && self.is_local_uri(uri))
    }

    /// The address of record a URI names: a user at one of our aliases or at our own address is the same
    /// user at our domain (`sip:bob@127.0.0.1:5060` is `sip:bob@example.com`).
    pub fn aor_of(&self, uri: &SipUri) -> String {
        match uri.user_unescaped() {
            Some(user) if self.is_local_domain(uri) => format!("sip:{user}@{}", self.domain),
            _ => uri.aor(),
        }
    }

    /// Our listener for `transport` (TLS falls back to nothing: each transport needs its own listener).
    pub fn listener(&self, transport: Transport) -> Option<LocalAddr> {
        self.local.iter().copied().find(|l| l.transport == transport)
    }

    /// Our Record-Route URI for the listener of `transport` (RFC 3261 §16.6 step 4).
    pub fn record_route(&self, transport: Transport) -> Option<String> {
        let l = self.listener(transport)?;
        let host = match l.addr.ip() {
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        let param = match transport {
            Transport::Udp => String::new(),
            t => format!(";transport={}", t.as_str().to_ascii_lowercase()),
        };
        Some(format!("<sip:{host}:{}{param};lr>", l.addr.port()))
    }

    /// Our Contact (`<sip:ip:port;transport=..>`) for dialogs this server is a party to (presence
    /// subscriptions), on the listener of `transport`.
    pub fn contact(&self, transport: Transport) -> Option<String> {
        let rr = self.record_route(transport)?;
        Some(rr.replace(";lr>", ">"))
    }

    /// Our Via for a request sent over `transport` with `branch`.
    pub fn via(&self, transport: Transport, branch: &str) -> Option<String> {
        let l = self.listener(transport)?;
        let host = match l.addr.ip() {
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        Some(format!("SIP/2.0/{} {host}:{};branch={branch};rport", transport.as_str(), l.addr.port()))
    }

    /// Whether a Via's sent-by is one of ours.
    pub fn is_own_via(&self, host: &str, port: Option<u16>) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let Ok(ip) = host.parse::<IpAddr>() else { return false };
        self.local.iter().any(|l| l.addr.ip() == ip && Some(l.addr.port()) == port)
    }
}

/// The loop-detection hash of a request (RFC 3261 §16.6 step 8): what a spiral changes and a loop does not.
pub fn loop_hash(req: &Request) -> String {
    let to_tag = req.headers.to().ok().and_then(|t| t.tag().map(str::to_owned)).unwrap_or_default();
    let from_tag = req.headers.from().ok().and_then(|t| t.tag().map(str::to_owned)).unwrap_or_default();
    let uri = req.uri.to_string();
    let call_id = req.headers.call_id().unwrap_or_default();
    let cseq = req.headers.cseq().map(|c| c.seq).unwrap_or_default().to_be_bytes();
    let mut parts: Vec<&[u8]> =
        vec![uri.as_bytes(), b"\0", from_tag.as_bytes(), b"\0", to_tag.as_bytes(), b"\0", call_id.as_bytes(), &cseq];
    const HASHED: [HeaderName; 3] = [HeaderName::ProxyRequire, HeaderName::ProxyAuthorization, HeaderName::Route];
    for name in &HASHED {
        for v in req.headers.get_all(name) {
            parts.push(b"\0");
            parts.push(v.as_bytes());
        }
    }
    hex::encode(&hmac_sha256(b"vienna-loop", &parts)[..6])
}
