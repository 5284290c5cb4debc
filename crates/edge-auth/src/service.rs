//! The Media Relay Authentication Service (MS-AVEDGEA §2.2, §3.1; research notes §3.2, §3.3).
//!
//! A client sends a SIP SERVICE request to the MRAS URI with an
//! `application/msrtc-media-relay-auth+xml` body:
//!
//! ```xml
//! <request requestID="1" version="2.0" from="sip:alice@example.com" to="sip:mras@example.com"
//!          xmlns="http://schemas.microsoft.com/2006/09/sip/mrasp">
//!   <credentialsRequest credentialsRequestID="1">
//!     <identity>sip:alice@example.com</identity><location>internet</location><duration>480</duration>
//!   </credentialsRequest>
//! </request>
//! ```
//!
//! and gets a `<response reasonPhrase="OK">` with, per credentialsRequest, a token (base64
//! username and password, duration in minutes) and the media relay list (host, UDP and TCP port
//! per location). [`CredentialService::handle_mras_request`] does that with no I/O.
//!
//! Refusals answer with a reasonPhrase and no credentialsResponse, as the schema defines:
//! `Request Malformed` (missing or bad elements), `Version Mismatch` (not 1.0/2.0), `Request Too
//! Large` (more than 100 credentialsRequests), `Forbidden` (an identity other than the
//! authenticated requester's). Only a body that is not such XML at all is an `Err` (the SIP layer
//! answers 400). The request's `route` attribute and v2 `directIPAddress`/`realm` elements are not
//! used.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use vienna_xml::{Limits, Writer};

use crate::Error;
use crate::mras::MrasKeys;
use crate::rest::{self, RestCredential};

/// The MRAS XML namespace.
pub const NAMESPACE: &str = "http://schemas.microsoft.com/2006/09/sip/mrasp";
/// The SIP Content-Type of requests and responses.
pub const CONTENT_TYPE: &str = "application/msrtc-media-relay-auth+xml";
/// Most credentialsRequests in one request (the schema's limit).
pub const MAX_CREDENTIAL_REQUESTS: usize = 100;

/// Where a relay is reachable from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// From the Internet (the Edge's outside address).
    Internet,
    /// From the internal network.
    Intranet,
}

impl Location {
    /// The schema's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Location::Internet => "internet",
            Location::Intranet => "intranet",
        }
    }
    /// From the schema's name.
    pub fn parse(s: &str) -> Option<Location> {
        match s.trim().to_ascii_lowercase().as_str() {
            "internet" => Some(Location::Internet),
            "intranet" => Some(Location::Intranet),
            _ => None,
        }
    }
}

/// One entry of the media relay list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaRelay {
    /// Which side it serves.
    pub location: Location,
    /// Host name or IP address.
    pub host_name: String,
    /// UDP port.
    pub udp_port: u16,
    /// TCP port (443 on a Microsoft Edge: pseudo-TLS first).
    pub tcp_port: u16,
}

/// MRAS credentials as the XML carries them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// base64 of the username bytes.
    pub username: String,
    /// base64 of the password bytes.
    pub password: String,
    /// Validity in minutes.
    pub duration_minutes: u32,
}

/// The credential service: mints MRAS and TURN REST credentials.
#[derive(Clone, Debug)]
pub struct CredentialService {
    keys: MrasKeys,
    relays: Vec<MediaRelay>,
    max_duration_minutes: u32,
    rest_secret: Option<Vec<u8>>,
}

/// One parsed credentialsRequest.
#[derive(Debug, Default)]
struct CredentialsRequest {
    id: String,
    identity: Option<String>,
    location: Option<String>,
    duration: Option<String>,
}

/// A parsed request.
#[derive(Debug, Default)]
struct Request {
    id: String,
    version: String,
    from: String,
    to: String,
    credentials: Vec<CredentialsRequest>,
    too_many: bool,
}

fn parse(body: &str) -> Result<Request, Error> {
    let root = vienna_xml::parse(body.as_bytes(), Limits::default()).map_err(|e| Error::Malformed(e.to_string()))?;
    if root.name != "request" {
        return Err(Error::Malformed(format!("root element {:?}", root.name)));
    }
    let attr = |n: &str| root.attr(n).unwrap_or_default().to_string();
    let mut req = Request {
        id: attr("requestID"),
        version: attr("version"),
        from: attr("from"),
        to: attr("to"),
        credentials: Vec::new(),
        too_many: false,
    };
    // Elements are matched by local name: clients send them in the mrasp namespace, or in none.
    for c in root.children.iter().filter(|c| c.name == "credentialsRequest") {
        if req.credentials.len() >= MAX_CREDENTIAL_REQUESTS {
            req.too_many = true;
            break;
        }
        let text = |n: &str| c.children.iter().find(|e| e.name == n).map(|e| e.text.trim().to_string());
        req.credentials.push(CredentialsRequest {
            id: c.attr("credentialsRequestID").unwrap_or_default().to_string(),
            identity: text("identity"),
            location: text("location"),
            duration: text("duration"),
        });
    }
    Ok(req)
}

/// Same SIP identity: scheme and host case-insensitive, a missing `sip:` tolerated.
fn same_identity(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        let s = s.trim().trim_start_matches('<').trim_end_matches('>');
        let s = s.strip_prefix("sip:").or_else(|| s.strip_prefix("SIP:")).unwrap_or(s);
        match s.split_once('@') {
            Some((user, host)) => format!("{user}@{}", host.to_ascii_lowercase()),
            None => s.to_ascii_lowercase(),
        }
    };
    norm(a) == norm(b)
}

impl CredentialService {
    /// A service minting with `keys` and advertising `relays`; tokens last at most 480 minutes
    /// (the Lync and OfficeSIP default) until [`CredentialService::with_max_duration`].
    pub fn new(keys: MrasKeys, relays: Vec<MediaRelay>) -> CredentialService {
        CredentialService { keys, relays, max_duration_minutes: 480, rest_secret: None }
    }

    /// Cap token lifetimes at `minutes` (at least 1).
    pub fn with_max_duration(mut self, minutes: u32) -> CredentialService {
        self.max_duration_minutes = minutes.max(1);
        self
    }

    /// Also mint TURN REST credentials with `secret` (the relay's current `rest_secrets` entry).
    pub fn with_rest_secret(mut self, secret: Vec<u8>) -> CredentialService {
        self.rest_secret = Some(secret);
        self
    }

    /// The keys.
    pub fn keys(&self) -> &MrasKeys {
        &self.keys
    }

    /// The media relay list.
    pub fn relays(&self) -> &[MediaRelay] {
        &self.relays
    }

    /// Mint MRAS credentials for `identity`, valid `duration_minutes` (capped) from `now_unix`.
    pub fn mint(&self, identity: &str, duration_minutes: u32, now_unix: u64) -> Credentials {
        let minutes = duration_minutes.clamp(1, self.max_duration_minutes);
        let token = self.keys.mint(identity, now_unix + u64::from(minutes) * 60);
        Credentials {
            username: STANDARD.encode(&token.username),
            password: STANDARD.encode(token.password),
            duration_minutes: minutes,
        }
    }

    /// Mint a TURN REST credential for `user`, valid `ttl_secs`; `None` without a REST secret.
    pub fn rest_credential(&self, user: &str, now_unix: u64, ttl_secs: u64) -> Option<RestCredential> {
        let secret = self.rest_secret.as_ref()?;
        Some(rest::mint(secret, user, now_unix, ttl_secs.min(u64::from(self.max_duration_minutes) * 60)))
    }

    /// Answer an MRAS request body sent by the authenticated `requester_aor` at `now_unix`: the XML
    /// response body (OK or a refusal's reasonPhrase). `Err` only when the body is not an MRAS
    /// request at all.
    pub fn handle_mras_request(&self, xml_body: &str, requester_aor: &str, now_unix: u64) -> Result<String, Error> {
        let req = parse(xml_body)?;
        let reason = if req.version != "1.0" && req.version != "2.0" {
            Some("Version Mismatch")
        } else if req.too_many {
            Some("Request Too Large")
        } else if req.credentials.is_empty()
            || req.credentials.iter().any(|c| c.identity.as_deref().is_none_or(str::is_empty))
            || req.credentials.iter().any(|c| c.location.as_deref().is_some_and(|l| Location::parse(l).is_none()))
            || req.credentials.iter().any(|c| c.duration.as_deref().is_some_and(|d| d.parse::<u32>().is_err()))
        {
            Some("Request Malformed")
        } else if req.credentials.iter().any(|c| !same_identity(c.identity.as_deref().unwrap_or(""), requester_aor)) {
            Some("Forbidden")
        } else {
            None
        };
        let version = if req.version == "1.0" { "1.0" } else { "2.0" };
        let mut w = Writer::new();
        w.start("response")
            .attr("xmlns", NAMESPACE)
            .attr("requestID", &req.id)
            .attr("version", version)
            .attr("serverVersion", version)
            .attr("to", &req.to)
            .attr("from", &req.from)
            .attr("reasonPhrase", reason.unwrap_or("OK"));
        if reason.is_none() {
            for c in &req.credentials {
                let identity = c.identity.as_deref().unwrap_or_default();
                let minutes = c.duration.as_deref().and_then(|d| d.parse().ok()).unwrap_or(self.max_duration_minutes);
                let creds = self.mint(identity, minutes, now_unix);
                let location = c.location.as_deref().and_then(Location::parse);
                w.start("credentialsResponse").attr("credentialsRequestID", &c.id);
                w.start("credentials")
                    .leaf("username", &creds.username)
                    .leaf("password", &creds.password)
                    .leaf("duration", &creds.duration_minutes.to_string())
                    .end();
                w.start("mediaRelayList");
                for r in self.relays.iter().filter(|r| location.is_none_or(|l| l == r.location)) {
                    w.start("mediaRelay")
                        .leaf("location", r.location.as_str())
                        .leaf("hostName", &r.host_name)
                        .leaf("udpPort", &r.udp_port.to_string())
                        .leaf("tcpPort", &r.tcp_port.to_string())
                        .end();
                }
                w.end().end();
            }
        }
        Ok(w.finish())
    }
}

/// What a client reads from an MRAS response (as SIPE does): reasonPhrase, and per
/// credentialsResponse the credentials and relays. For tests and tools.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedResponse {
    /// reasonPhrase.
    pub reason: String,
    /// (username, password, duration) per credentialsResponse.
    pub credentials: Vec<(String, String, u32)>,
    /// (location, hostName, udpPort, tcpPort) of every mediaRelay.
    pub relays: Vec<(String, String, u16, u16)>,
}

/// Parse an MRAS response body.
pub fn parse_response(body: &str) -> Result<ParsedResponse, Error> {
    let root = vienna_xml::parse(body.as_bytes(), Limits::default()).map_err(|e| Error::Malformed(e.to_string()))?;
    let named =
        |e: &vienna_xml::Element, n: &str| e.children.iter().find(|c| c.name == n).map(|c| c.text.trim().to_string());
    let mut out =
        ParsedResponse { reason: root.attr("reasonPhrase").unwrap_or_default().to_string(), ..Default::default() };
    for cr in root.children.iter().filter(|c| c.name == "credentialsResponse") {
        for c in cr.children.iter().filter(|c| c.name == "credentials") {
            let duration = named(c, "duration").and_then(|d| d.parse().ok()).unwrap_or(0);
            out.credentials.push((
                named(c, "username").unwrap_or_default(),
                named(c, "password").unwrap_or_default(),
                duration,
            ));
        }
        for list in cr.children.iter().filter(|c| c.name == "mediaRelayList") {
            for r in list.children.iter().filter(|c| c.name == "mediaRelay") {
                let port = |n: &str| named(r, n).and_then(|p| p.parse().ok()).unwrap_or(0);
                out.relays.push((
                    named(r, "location").unwrap_or_default(),
                    named(r, "hostName").unwrap_or_default(),
                    port("udpPort"),
                    port("tcpPort"),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> CredentialService {
        CredentialService::new(
            MrasKeys::derive(b"secret"),
            vec![
                MediaRelay {
                    location: Location::Internet,
                    host_name: "av.example.com".into(),
                    udp_port: 3478,
                    tcp_port: 443,
                },
                MediaRelay {
                    location: Location::Intranet,
                    host_name: "10.0.0.5".into(),
                    udp_port: 3478,
                    tcp_port: 443,
                },
            ],
        )
    }

    /// The request SIPE sends (research notes §3.2).
    const SIPE_REQUEST: &str = r#"<request requestID="12345" from="sip:alice@example.com" version="1.0"
         to="sip:MRASLoc.pool.example.com@example.com"
         xmlns="http://schemas.microsoft.com/2006/09/sip/mrasp"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <credentialsRequest credentialsRequestID="12345">
    <identity>sip:alice@example.com</identity>
    <location>internet</location>
    <duration>480</duration>
  </credentialsRequest>
</request>"#;

    #[test]
    fn answers_the_sipe_request() {
        let s = service();
        let now = 1_800_000_000;
        let xml = s.handle_mras_request(SIPE_REQUEST, "sip:alice@EXAMPLE.com", now).unwrap();
        assert!(xml.contains(r#"requestID="12345""#) && xml.contains(r#"version="1.0""#), "{xml}");
        assert!(xml.contains(r#"to="sip:MRASLoc.pool.example.com@example.com" from="sip:alice@example.com""#));
        let r = parse_response(&xml).unwrap();
        assert_eq!(r.reason, "OK");
        assert_eq!(r.relays, [("internet".to_string(), "av.example.com".to_string(), 3478, 443)]);
        let (user, pass, minutes) = &r.credentials[0];
        assert_eq!(*minutes, 480);
        assert!(user.starts_with("AgAAJ"), "{user}");
        let username = STANDARD.decode(user).unwrap();
        let token = s.keys().validate(&username, now).unwrap();
        assert_eq!(STANDARD.encode(token.password), *pass);
        assert!(token.expires_unix <= now + 480 * 60 && token.expires_unix > now + 479 * 60);
        assert_eq!(s.keys().validate(&username, now + 480 * 60), Err(crate::TokenError::Expired));
        assert_eq!(token.client_id, s.keys().client_id("sip:alice@example.com"));
    }

    #[test]
    fn durations_locations_and_refusals() {
        let s = service().with_max_duration(60);
        let now = 1_800_000_000;
        let both = SIPE_REQUEST.replace("<location>internet</location>", "").replace("480", "5");
        let r = parse_response(&s.handle_mras_request(&both, "sip:alice@example.com", now).unwrap()).unwrap();
        assert_eq!((r.reason.as_str(), r.relays.len(), r.credentials[0].2), ("OK", 2, 5));
        let capped = parse_response(
            &service().with_max_duration(60).handle_mras_request(SIPE_REQUEST, "sip:alice@example.com", now).unwrap(),
        )
        .unwrap();
        assert_eq!(capped.credentials[0].2, 60);
        for (body, requester, reason) in [
            (SIPE_REQUEST.replace(r#"version="1.0""#, r#"version="3.0""#), "sip:alice@example.com", "Version Mismatch"),
            (SIPE_REQUEST.to_string(), "sip:mallory@example.com", "Forbidden"),
            (
                SIPE_REQUEST.replace("<identity>sip:alice@example.com</identity>", ""),
                "sip:alice@example.com",
                "Request Malformed",
            ),
            (SIPE_REQUEST.replace("480", "many"), "sip:alice@example.com", "Request Malformed"),
            (SIPE_REQUEST.replace("internet", "moon"), "sip:alice@example.com", "Request Malformed"),
        ] {
            let xml = s.handle_mras_request(&body, requester, now).unwrap();
            let r = parse_response(&xml).unwrap();
            assert_eq!(r.reason, reason, "{xml}");
            assert!(r.credentials.is_empty() && !xml.contains("credentialsResponse"));
        }
        let many = format!(
            r#"<request requestID="1" version="2.0" from="a" to="b">{}</request>"#,
            "<credentialsRequest credentialsRequestID=\"1\"><identity>sip:a@b</identity></credentialsRequest>"
                .repeat(101)
        );
        assert!(s.handle_mras_request(&many, "sip:a@b", now).unwrap().contains("Request Too Large"));
        assert!(s.handle_mras_request("not xml <", "sip:a@b", now).is_err());
        assert!(s.handle_mras_request("<other/>", "sip:a@b", now).is_err());
        assert!(s.handle_mras_request("", "sip:a@b", now).is_err());
    }

    #[test]
    fn rest_credentials_from_the_same_service() {
        assert_eq!(service().rest_credential("alice", 1, 60), None);
        let s = service().with_rest_secret(b"north".to_vec());
        let c = s.rest_credential("alice", 1_699_999_000, 1000).unwrap();
        assert_eq!(c.username, "1700000000:alice");
        assert_eq!(c.password, rest::rest_password(b"north", "1700000000:alice"));
    }
}
