//! MS-SIPAE in the SIP core: the NTLM handshake of [`vienna_sipae::NtlmServer`] over the core's
//! connections, one security association per TCP or TLS connection, the check of every later request
//! (crand, cnum, response) and the signing of every final response and every request the server sends on
//! that connection (`Authentication-Info`).
//!
//! Signing happens on the bytes the transaction layer hands out ([`NtlmAuth::sign_transmit`]), so nothing
//! the core sends on an authenticated connection leaves unsigned: responses it makes, responses it
//! forwards, NOTIFY and BENOTIFY, requests routed to the client. Provisional responses stay unsigned, as
//! Microsoft servers send them and clients accept them.

use std::collections::HashMap;

use vienna_sip::transaction::{Peer, Transmit};
use vienna_sip::{HeaderName, Limits, Message, Request};
use vienna_sipae::{AssociationConfig, NtlmAccount, NtlmParams, NtlmServer, Refusal, Step};

/// Counters of MS-SIPAE authentication.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NtlmCounters {
    /// 401/407 answers carrying an NTLM CHALLENGE.
    pub challenges: u64,
    /// Security associations established.
    pub established: u64,
    /// Requests whose signature verified.
    pub verified: u64,
    /// Requests refused: malformed header or token.
    pub refused_malformed: u64,
    /// Refused: unknown user or disabled account.
    pub refused_unknown_user: u64,
    /// Refused: wrong password.
    pub refused_password: u64,
    /// Refused: bad or missing signature.
    pub refused_signature: u64,
    /// Refused: a message number seen before.
    pub refused_replay: u64,
    /// Refused: association of another connection, unknown or expired association, clock skew.
    pub refused_association: u64,
    /// Messages the server signed.
    pub signed: u64,
}

/// What the NTLM check made of a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    /// No NTLM credentials: the usual (Digest) processing applies.
    NotNtlm,
    /// Answer with this status (401 or 407) and challenge header value.
    Challenge {
        /// 401 (Authorization) or 407 (Proxy-Authorization).
        status: u16,
        /// The `WWW-Authenticate`/`Proxy-Authenticate` value.
        header: String,
    },
    /// The sender proved it is this address of record.
    Authenticated(String),
    /// Refused: answer `status` with a fresh offer and `reason`.
    Refused {
        /// 401 or 407 (400 for a header that does not parse).
        status: u16,
        /// Reason phrase.
        reason: &'static str,
    },
}

/// The MS-SIPAE server of one core.
pub struct NtlmAuth {
    server: NtlmServer<Peer>,
    /// Connection → (association opaque, address of record).
    by_peer: HashMap<Peer, (String, String)>,
    counters: NtlmCounters,
}

impl NtlmAuth {
    /// An NTLM server for SIP domain `domain`, the server's name `host` (the `targetname`).
    pub fn new(domain: &str, host: &str, secret: [u8; 32]) -> Self {
        NtlmAuth {
            server: NtlmServer::new(AssociationConfig::new(domain, host), secret),
            by_peer: HashMap::new(),
            counters: NtlmCounters::default(),
        }
    }

    /// Counters.
    pub fn counters(&self) -> &NtlmCounters {
        &self.counters
    }

    /// Established associations.
    pub fn associations(&self) -> usize {
        self.by_peer.len()
    }

    /// The first challenge, offered beside Digest on TCP and TLS.
    pub fn offer(&self) -> String {
        self.server.offer()
    }

    /// The address of record authenticated on connection `peer`, if any.
    pub fn identity(&self, peer: &Peer) -> Option<&str> {
        self.by_peer.get(peer).map(|(_, aor)| aor.as_str())
    }

    /// Checks the NTLM credentials of `req` from `peer` at Unix time `unix`; `lookup(user, domain)` finds
    /// the account of an NTLM user name.
    pub fn check(
        &mut self,
        unix: u64,
        peer: Peer,
        req: &Request,
        lookup: impl FnOnce(&str, &str) -> Option<NtlmAccount>,
    ) -> Checked {
        let (value, status) = match ntlm_header(req, &HeaderName::Authorization) {
            Some(v) => (v, 401),
            None => match ntlm_header(req, &HeaderName::ProxyAuthorization) {
                Some(v) => (v, 407),
                None => return Checked::NotNtlm,
            },
        };
        if !peer.transport.is_reliable() {
            // Associations belong to connections; over UDP only Digest is offered.
            return Checked::NotNtlm;
        }
        let params = match NtlmParams::parse(value) {
            Ok(p) => p,
            Err(e) => {
                self.counters.refused_malformed += 1;
                tracing::info!(peer = %peer.addr, error = %e, "ntlm: malformed credentials refused");
                return Checked::Refused { status: 400, reason: "Bad Request (malformed NTLM credentials)" };
            }
        };
        let message = Message::Request(req.clone());
        match self.server.authorize(unix, &peer, &params, &message, lookup) {
            Step::Challenge(header) => {
                self.counters.challenges += 1;
                Checked::Challenge { status, header }
            }
            Step::Established { aor, opaque } => {
                self.counters.established += 1;
                if let Some((old, _)) = self.by_peer.insert(peer, (opaque.clone(), aor.clone()))
                    && old != opaque
                {
                    self.server.remove(&old);
                }
                tracing::debug!(peer = %peer.addr, aor = %aor, "ntlm: security association established");
                Checked::Authenticated(aor)
            }
            Step::Verified { aor } => {
                self.counters.verified += 1;
                Checked::Authenticated(aor)
            }
            Step::Refused(r) => {
                let reason = match r {
                    Refusal::Malformed(_) => {
                        self.counters.refused_malformed += 1;
                        "Unauthorized (malformed NTLM token)"
                    }
                    Refusal::UnknownUser => {
                        self.counters.refused_unknown_user += 1;
                        "Unauthorized (unknown user)"
                    }
                    Refusal::WrongPassword => {
                        self.counters.refused_password += 1;
                        "Unauthorized (wrong password)"
                    }
                    Refusal::BadSignature => {
                        self.counters.refused_signature += 1;
                        "Unauthorized (bad message signature)"
                    }
                    Refusal::Replay => {
                        self.counters.refused_replay += 1;
                        "Unauthorized (replayed message)"
                    }
                    Refusal::UnknownAssociation | Refusal::WrongConnection | Refusal::ClockSkew => {
                        self.counters.refused_association += 1;
                        "Unauthorized (no such security association on this connection)"
                    }
                };
                tracing::info!(peer = %peer.addr, refusal = ?r, "ntlm: request refused");
                Checked::Refused { status, reason }
            }
        }
    }

    /// Signs `t` when it goes to a connection with a security association and is a final response or a
    /// request: inserts `Authentication-Info` before the end of the header.
    pub fn sign_transmit(&mut self, unix: u64, t: &mut Transmit) {
        let Some((opaque, _)) = self.by_peer.get(&t.peer) else { return };
        let limits = Limits { max_message: usize::MAX, max_headers: 4096, max_header_len: usize::MAX };
        let Ok(message) = Message::parse_with(&t.bytes, &limits, vienna_sip::Framing::Stream) else { return };
        if let Message::Response(r) = &message
            && r.status < 200
        {
            return;
        }
        let Some(value) = self.server.sign(unix, opaque, &message) else { return };
        let Some(end) = t.bytes.windows(4).position(|w| w == b"\r\n\r\n") else { return };
        let line = format!("Authentication-Info: {value}\r\n");
        t.bytes.splice(end + 2..end + 2, line.into_bytes());
        self.counters.signed += 1;
    }

    /// Forgets the association of a closed connection.
    pub fn connection_closed(&mut self, peer: &Peer) {
        self.by_peer.remove(peer);
        self.server.connection_closed(peer);
    }

    /// Drops expired associations and challenges.
    pub fn expire(&mut self, unix: u64) {
        self.server.expire(unix);
        let server = &self.server;
        self.by_peer.retain(|_, (opaque, _)| server.is_live(opaque));
    }
}

/// The first NTLM value of header `name`, if any.
fn ntlm_header<'r>(req: &'r Request, name: &'r HeaderName) -> Option<&'r str> {
    req.headers.get_all(name).find(|v| NtlmParams::is_ntlm(v))
}

/// The address of record an NTLM user name means in `domain`: a UPN (`alice@example.com`) names the
/// user of that domain; `DOMAIN\alice` or `alice` with a NetBIOS domain names `alice` of the SIP domain
/// when the NetBIOS domain is the first label of the SIP domain (or empty).
pub fn ntlm_aor(user: &str, ntlm_domain: &str, domain: &str) -> Option<String> {
    let user = user.trim();
    if user.is_empty() || user.len() > 256 || user.contains(|c: char| c.is_whitespace() || c == ':' || c == '<') {
        return None;
    }
    if let Some((name, host)) = user.split_once('@') {
        if name.is_empty() || host.is_empty() || !host.eq_ignore_ascii_case(domain) {
            return None;
        }
        return Some(format!("sip:{}@{}", name.to_ascii_lowercase(), domain));
    }
    let (nb, name) = match user.split_once('\\') {
        Some((d, n)) => (d, n),
        None => (ntlm_domain, user),
    };
    let label = domain.split('.').next().unwrap_or(domain);
    if !(nb.is_empty() || nb.eq_ignore_ascii_case(label) || nb.eq_ignore_ascii_case(domain)) || name.is_empty() {
        return None;
    }
    Some(format!("sip:{}@{}", name.to_ascii_lowercase(), domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_map_to_addresses_of_record() {
        let d = "example.test";
        assert_eq!(ntlm_aor("alice@example.test", "", d).as_deref(), Some("sip:alice@example.test"));
        assert_eq!(ntlm_aor("Alice@EXAMPLE.test", "", d).as_deref(), Some("sip:alice@example.test"));
        assert_eq!(ntlm_aor("alice", "EXAMPLE", d).as_deref(), Some("sip:alice@example.test"));
        assert_eq!(ntlm_aor("EXAMPLE\\alice", "", d).as_deref(), Some("sip:alice@example.test"));
        assert_eq!(ntlm_aor("alice", "", d).as_deref(), Some("sip:alice@example.test"));
        assert_eq!(ntlm_aor("alice@other.test", "", d), None);
        assert_eq!(ntlm_aor("alice", "OTHER", d), None);
        assert_eq!(ntlm_aor("", "", d), None);
        assert_eq!(ntlm_aor("a b", "", d), None);
    }
}
