//! An ICE-lite responder (RFC 8445 §2.5, §6.1.1, §7.3) for one participant's audio stream.
//!
//! The MCU has host candidates only and never sends checks: the peer (a full agent, always
//! controlling against a lite agent) sends Binding requests, we answer them. For each request:
//!
//! * USERNAME must be `<our ufrag>:<their ufrag>` (their part is checked when the offer gave it),
//!   MESSAGE-INTEGRITY must verify with our password as the short-term key (RFC 8489 §9.1), and
//!   PRIORITY must be present (RFC 8445 §7.1.1). Missing attributes get 400, bad credentials 401
//!   (RFC 8489 §9.1.3), a bad FINGERPRINT is dropped silently.
//! * ICE-CONTROLLED in a request means the peer also thinks it is controlled: we are lite and cannot
//!   take the controlling role, so it gets 487 Role Conflict (§7.3.1.1) and must switch.
//! * The success response carries XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY and FINGERPRINT (§7.3.1.4).
//! * USE-CANDIDATE with ICE-CONTROLLING nominates the pair (§7.3.1.5); among nominated pairs the one
//!   whose check had the highest PRIORITY is selected, and media goes to its remote address.
//!
//! MS-ICE2 (Lync): its checks are RFC 5389 STUN with short-term credentials too, so the same answers
//! work; research/media-protocols.md §1.12 reports (from libnice only, not confirmed against a capture) a
//! MESSAGE-INTEGRITY variant computed over a zero-padded message, which is **not** implemented, and
//! checks without FINGERPRINT, which are accepted. Left out: consent freshness timers (RFC 7675: a
//! participant that stops sending is removed by the conference's media timeout instead), IPv6 and
//! TCP candidates, ICE restarts (a new offer replaces the participant).

use std::net::SocketAddr;

use vienna_stun::attributes as attr;
use vienna_stun::{Attribute, Class, ErrorCode, Message, MessageBuilder, Method};

/// Our ICE credentials for one stream (RFC 8445 §5.3: ufrag ≥ 4 characters, pwd ≥ 22).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IceCredentials {
    /// ice-ufrag.
    pub ufrag: String,
    /// ice-pwd.
    pub pwd: String,
}

impl IceCredentials {
    /// Credentials from the caller's random bytes: an 8-character ufrag from 6 bytes and a
    /// 24-character password from 18 others (ice-char alphabet, RFC 8839 §5.4). The two share no bytes,
    /// so the ufrag, which every check carries, says nothing about the password.
    pub fn from_random(ufrag: [u8; 6], pwd: [u8; 18]) -> IceCredentials {
        IceCredentials { ufrag: ice_chars(&ufrag), pwd: ice_chars(&pwd) }
    }
}

/// Base64-like encoding of `bytes` (a multiple of 3) with the ice-char alphabet.
fn ice_chars(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len() / 3 * 4);
    for chunk in bytes.chunks_exact(3) {
        let v = (u32::from(chunk[0]) << 16) | (u32::from(chunk[1]) << 8) | u32::from(chunk[2]);
        for shift in [18, 12, 6, 0] {
            out.push(ALPHABET[((v >> shift) & 63) as usize] as char);
        }
    }
    out
}

/// What a Binding request did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IceVerdict {
    /// A valid check; `nominated` when it also nominated the pair.
    Valid {
        /// The check carried USE-CANDIDATE.
        nominated: bool,
    },
    /// Refused with this error code (the response is in [`IceAnswer::response`]).
    Refused(u16),
    /// Dropped without an answer (not a request, bad FINGERPRINT).
    Dropped,
}

/// The answer to one Binding request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IceAnswer {
    /// What the request was.
    pub verdict: IceVerdict,
    /// The response to send back to where the request came from.
    pub response: Option<Vec<u8>>,
}

/// The ICE-lite state of one stream.
#[derive(Clone, Debug)]
pub struct IceLite {
    local: IceCredentials,
    remote_ufrag: Option<String>,
    selected: Option<(SocketAddr, u32)>,
    last_valid: Option<SocketAddr>,
    /// Checks answered with success.
    pub checks: u64,
}

impl IceLite {
    /// A responder with our credentials and, if the offer had one, the peer's ufrag.
    pub fn new(local: IceCredentials, remote_ufrag: Option<String>) -> IceLite {
        IceLite { local, remote_ufrag, selected: None, last_valid: None, checks: 0 }
    }

    /// Our credentials.
    pub fn local(&self) -> &IceCredentials {
        &self.local
    }

    /// Where media should go: the selected (nominated) pair's remote address, else the source of the
    /// last valid check.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.selected.map(|s| s.0).or(self.last_valid)
    }

    /// The remote address of the nominated pair, if one was nominated.
    pub fn selected(&self) -> Option<SocketAddr> {
        self.selected.map(|s| s.0)
    }

    /// The USERNAME's first part (our ufrag), which tells the conference which stream a check is for.
    pub fn local_ufrag_of(msg: &Message<'_>) -> Option<String> {
        match msg.get(attr::USERNAME) {
            Some(Ok(Attribute::Username(u))) => u.split(':').next().map(str::to_owned),
            _ => None,
        }
    }

    /// Answers one STUN message that arrived from `from`.
    pub fn handle(&mut self, msg: &Message<'_>, from: SocketAddr) -> IceAnswer {
        if msg.method() != Method::BINDING || msg.class() != Class::Request {
            return IceAnswer { verdict: IceVerdict::Dropped, response: None };
        }
        if msg.check_fingerprint() == Some(false) {
            return IceAnswer { verdict: IceVerdict::Dropped, response: None };
        }
        let username = match msg.get(attr::USERNAME) {
            Some(Ok(Attribute::Username(u))) => Some(u),
            _ => None,
        };
        let (Some(username), true) = (username, msg.has_integrity()) else {
            return self.refuse(msg, 400, "Bad Request", false);
        };
        let mut parts = username.splitn(2, ':');
        let ours = parts.next().unwrap_or("");
        let theirs = parts.next();
        let theirs_ok = match (&self.remote_ufrag, theirs) {
            (Some(expected), Some(t)) => expected == t,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        if ours != self.local.ufrag || !theirs_ok || msg.verify_integrity(self.local.pwd.as_bytes()).is_none() {
            return self.refuse(msg, 401, "Unauthorized", false);
        }
        let Some(Ok(Attribute::Priority(priority))) = msg.get(attr::PRIORITY) else {
            return self.refuse(msg, 400, "Bad Request", true);
        };
        if msg.get_raw(attr::ICE_CONTROLLED).is_some() {
            return self.refuse(msg, 487, "Role Conflict", true);
        }
        let controlling = msg.get_raw(attr::ICE_CONTROLLING).is_some();
        let nominated = controlling && msg.get_raw(attr::USE_CANDIDATE).is_some();
        self.checks += 1;
        self.last_valid = Some(from);
        if nominated {
            match self.selected {
                Some((_, p)) if p > priority => {}
                _ => self.selected = Some((from, priority)),
            }
        }
        let mut b = MessageBuilder::new(Class::Success, Method::BINDING, msg.transaction_id());
        let _ = b.add(&Attribute::XorMappedAddress(from));
        b.add_message_integrity(self.local.pwd.as_bytes());
        b.add_fingerprint();
        IceAnswer { verdict: IceVerdict::Valid { nominated }, response: Some(b.finish()) }
    }

    fn refuse(&self, msg: &Message<'_>, code: u16, reason: &'static str, integrity: bool) -> IceAnswer {
        let mut b = MessageBuilder::new(Class::Error, Method::BINDING, msg.transaction_id());
        let _ = b.add(&Attribute::ErrorCode(ErrorCode { code, reason: reason.into() }));
        if integrity {
            b.add_message_integrity(self.local.pwd.as_bytes());
        }
        b.add_fingerprint();
        IceAnswer { verdict: IceVerdict::Refused(code), response: Some(b.finish()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vienna_stun::TransactionId;

    fn creds() -> IceCredentials {
        IceCredentials { ufrag: "mcu1".into(), pwd: "0123456789abcdefghijkl".into() }
    }

    struct Check<'a> {
        user: Option<&'a str>,
        pwd: Option<&'a str>,
        priority: Option<u32>,
        controlling: bool,
        controlled: bool,
        use_candidate: bool,
    }

    fn check(c: Check<'_>) -> Vec<u8> {
        let mut b = MessageBuilder::new(Class::Request, Method::BINDING, TransactionId([9; 12]));
        if let Some(u) = c.user {
            b.add(&Attribute::Username(u)).unwrap();
        }
        if let Some(p) = c.priority {
            b.add(&Attribute::Priority(p)).unwrap();
        }
        if c.controlling {
            b.add(&Attribute::IceControlling(42)).unwrap();
        }
        if c.controlled {
            b.add(&Attribute::IceControlled(42)).unwrap();
        }
        if c.use_candidate {
            b.add(&Attribute::UseCandidate).unwrap();
        }
        if let Some(p) = c.pwd {
            b.add_message_integrity(p.as_bytes());
        }
        b.add_fingerprint();
        b.finish()
    }

    fn good() -> Check<'static> {
        Check {
            user: Some("mcu1:peer"),
            pwd: Some("0123456789abcdefghijkl"),
            priority: Some(100),
            controlling: true,
            controlled: false,
            use_candidate: false,
        }
    }

    fn answer(ice: &mut IceLite, bytes: &[u8], from: &str) -> IceAnswer {
        ice.handle(&Message::decode(bytes).unwrap(), from.parse().unwrap())
    }

    #[test]
    fn valid_check_is_answered_with_integrity_and_mapped_address() {
        let mut ice = IceLite::new(creds(), Some("peer".into()));
        let a = answer(&mut ice, &check(good()), "127.0.0.1:5000");
        assert_eq!(a.verdict, IceVerdict::Valid { nominated: false });
        let resp = a.response.unwrap();
        let m = Message::decode(&resp).unwrap();
        assert_eq!(m.class(), Class::Success);
        assert_eq!(m.transaction_id(), TransactionId([9; 12]));
        assert_eq!(m.check_fingerprint(), Some(true));
        assert!(m.verify_integrity(b"0123456789abcdefghijkl").is_some());
        assert_eq!(
            m.get(attr::XOR_MAPPED_ADDRESS).unwrap().unwrap(),
            Attribute::XorMappedAddress("127.0.0.1:5000".parse().unwrap())
        );
        assert_eq!(ice.remote(), Some("127.0.0.1:5000".parse().unwrap()));
        assert_eq!(ice.selected(), None);
    }

    #[test]
    fn use_candidate_nominates_the_highest_priority_pair() {
        let mut ice = IceLite::new(creds(), None);
        let a = answer(&mut ice, &check(Check { use_candidate: true, priority: Some(50), ..good() }), "10.0.0.1:1");
        assert_eq!(a.verdict, IceVerdict::Valid { nominated: true });
        answer(&mut ice, &check(Check { use_candidate: true, priority: Some(10), ..good() }), "10.0.0.2:2");
        assert_eq!(ice.selected(), Some("10.0.0.1:1".parse().unwrap()));
        answer(&mut ice, &check(Check { use_candidate: true, priority: Some(90), ..good() }), "10.0.0.3:3");
        assert_eq!(ice.selected(), Some("10.0.0.3:3".parse().unwrap()));
        // USE-CANDIDATE from an agent that does not claim the controlling role nominates nothing
        let mut ice = IceLite::new(creds(), None);
        answer(&mut ice, &check(Check { use_candidate: true, controlling: false, ..good() }), "10.0.0.1:1");
        assert_eq!(ice.selected(), None);
    }

    #[test]
    fn bad_checks_get_the_rfc_errors() {
        let mut ice = IceLite::new(creds(), Some("peer".into()));
        let code = |a: IceAnswer| match a.verdict {
            IceVerdict::Refused(c) => c,
            v => panic!("{v:?}"),
        };
        assert_eq!(code(answer(&mut ice, &check(Check { user: None, ..good() }), "1.1.1.1:1")), 400);
        assert_eq!(code(answer(&mut ice, &check(Check { pwd: None, ..good() }), "1.1.1.1:1")), 400);
        assert_eq!(
            code(answer(&mut ice, &check(Check { pwd: Some("wrong-password-xxxxxx"), ..good() }), "1.1.1.1:1")),
            401
        );
        assert_eq!(code(answer(&mut ice, &check(Check { user: Some("other:peer"), ..good() }), "1.1.1.1:1")), 401);
        assert_eq!(code(answer(&mut ice, &check(Check { user: Some("mcu1:intruder"), ..good() }), "1.1.1.1:1")), 401);
        assert_eq!(code(answer(&mut ice, &check(Check { priority: None, ..good() }), "1.1.1.1:1")), 400);
        let conflict = answer(&mut ice, &check(Check { controlling: false, controlled: true, ..good() }), "1.1.1.1:1");
        let resp = conflict.response.clone().unwrap();
        assert_eq!(code(conflict), 487);
        assert!(Message::decode(&resp).unwrap().verify_integrity(b"0123456789abcdefghijkl").is_some());
        assert_eq!(ice.remote(), None, "no refused check sets the media address");
        // a corrupted fingerprint is dropped without an answer
        let mut bytes = check(good());
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        assert_eq!(answer(&mut ice, &bytes, "1.1.1.1:1").verdict, IceVerdict::Dropped);
    }

    #[test]
    fn random_credentials_are_long_enough() {
        let c = IceCredentials::from_random([9; 6], [7; 18]);
        assert_eq!((c.ufrag.len(), c.pwd.len()), (8, 24));
        assert!(!c.pwd.contains(&c.ufrag));
        assert!(c.pwd.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '+' || ch == '/'));
    }
}
