//! Security associations (MS-SIPAE §3.3): the server half of the NTLM handshake over SIP and the checking
//! and signing of every message once a client is authenticated. Sans-IO: time is an argument, randomness
//! comes from a secret given at construction, accounts are looked up through a closure.
//!
//! The handshake (connectionless NTLM, MS-SIPAE §4.1):
//! 1. a request without credentials gets 401 with [`NtlmServer::offer`];
//! 2. `Authorization: NTLM ... gssapi-data=""` gets 401 with a CHALLENGE and an `opaque` naming the
//!    pending association ([`Step::Challenge`]);
//! 3. `Authorization: NTLM opaque=..., gssapi-data="<AUTHENTICATE>"` is checked against the account's NT
//!    hash; the association is established for that connection ([`Step::Established`]); with version 4
//!    the same request is already signed, and the signature is checked too.
//!
//! Afterwards every request carries `crand`, `cnum` and `response` ([`NtlmServer::verify`]) and every
//! response and server request gets `Authentication-Info: NTLM rspauth=...` ([`NtlmServer::sign`]).
//! Message numbers are checked against a window of 64, so a replayed message is refused. An
//! association lives [`AssociationConfig::lifetime_secs`] (8 hours, as clients re-authenticate before
//! that) and belongs to one connection.

use std::collections::HashMap;
use std::hash::Hash;

use base64::Engine as _;
use vienna_sip::Message;

use crate::auth_header::NtlmParams;
use crate::error::NtlmError;
use crate::ntlm::{self, Authenticate, SIPAE_SEQUENCE, ServerIdentity, SessionKeys};
use crate::signing::{SignedBy, signing_text};

/// Settings of an [`NtlmServer`].
#[derive(Clone, Debug)]
pub struct AssociationConfig {
    /// `realm` of the challenges.
    pub realm: String,
    /// `targetname`: the server's FQDN.
    pub targetname: String,
    /// MS-SIPAE version offered (3 or 4).
    pub version: u32,
    /// Names in the CHALLENGE's target information.
    pub identity: ServerIdentity,
    /// Seconds a challenge may be answered.
    pub challenge_lifetime_secs: u64,
    /// Seconds an established association lasts.
    pub lifetime_secs: u64,
    /// Most pending challenges and most associations (older ones are dropped beyond).
    pub max_entries: usize,
    /// Largest difference between the client's NTLMv2 timestamp and the server's clock, seconds.
    pub max_clock_skew_secs: u64,
}

impl AssociationConfig {
    /// Defaults for a server `host` of SIP domain `domain`.
    pub fn new(domain: &str, host: &str) -> Self {
        AssociationConfig {
            realm: crate::auth_header::DEFAULT_REALM.to_owned(),
            targetname: host.to_owned(),
            version: 4,
            identity: ServerIdentity::for_domain(domain, host),
            challenge_lifetime_secs: 60,
            lifetime_secs: 8 * 3600,
            max_entries: 100_000,
            max_clock_skew_secs: 36 * 3600,
        }
    }
}

/// What the NTLM user of an AUTHENTICATE maps to: the account and the NT hash of its password.
#[derive(Clone)]
pub struct NtlmAccount {
    /// Address of record (`sip:alice@example.test`).
    pub aor: String,
    /// MD4 of the UTF-16LE password.
    pub nt_hash: [u8; 16],
}

/// The outcome of an `Authorization: NTLM` header handed to [`NtlmServer::authorize`].
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Answer 401 (407 for a proxy) with this `WWW-Authenticate` value.
    Challenge(String),
    /// The client is authenticated as `aor` on this connection; association `opaque`.
    Established {
        /// Address of record of the account.
        aor: String,
        /// Names the association in later headers.
        opaque: String,
    },
    /// A request of an established association whose signature is right.
    Verified {
        /// Address of record of the account.
        aor: String,
    },
    /// Refused; answer 401 with a fresh [`NtlmServer::offer`] (or drop ACK and CANCEL).
    Refused(Refusal),
}

/// Why a request was not authenticated (counted by the caller).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The header or token is malformed.
    Malformed(String),
    /// No such user, or a disabled account.
    UnknownUser,
    /// The NTLMv2 response is wrong.
    WrongPassword,
    /// The `opaque` names no pending challenge or association (expired, or another server's).
    UnknownAssociation,
    /// The association belongs to another connection.
    WrongConnection,
    /// The message signature is missing or wrong.
    BadSignature,
    /// A message number seen before.
    Replay,
    /// The NTLMv2 timestamp is too far from the server's clock.
    ClockSkew,
}

struct Pending<C> {
    challenge: [u8; 8],
    created: u64,
    connection: C,
}

struct Association<C> {
    aor: String,
    keys: SessionKeys,
    connection: C,
    expires: u64,
    /// Highest client message number seen and a bitmap of the 64 below it.
    highest_cnum: u32,
    seen: u64,
    snum: u32,
}

/// The server side of MS-SIPAE NTLM for one SIP core: pending challenges and established associations,
/// keyed by `opaque`; `C` identifies a transport connection.
pub struct NtlmServer<C> {
    config: AssociationConfig,
    secret: [u8; 32],
    counter: u64,
    pending: HashMap<String, Pending<C>>,
    associations: HashMap<String, Association<C>>,
}

impl<C: Clone + Eq + Hash> NtlmServer<C> {
    /// A server whose challenges, `opaque` values and `srand` values are derived from `secret` (random,
    /// per process).
    pub fn new(config: AssociationConfig, secret: [u8; 32]) -> Self {
        NtlmServer { config, secret, counter: 0, pending: HashMap::new(), associations: HashMap::new() }
    }

    /// The settings.
    pub fn config(&self) -> &AssociationConfig {
        &self.config
    }

    /// The first challenge: `NTLM realm="...", targetname="...", version=4`.
    pub fn offer(&self) -> String {
        NtlmParams {
            realm: Some(self.config.realm.clone()),
            targetname: Some(self.config.targetname.clone()),
            version: Some(self.config.version),
            ..NtlmParams::default()
        }
        .to_header()
    }

    /// Established associations.
    pub fn associations(&self) -> usize {
        self.associations.len()
    }

    fn random(&mut self, now: u64) -> [u8; 16] {
        self.counter += 1;
        let out =
            vienna_crypto::hmac_sha256(&self.secret, &[b"sipae", &self.counter.to_le_bytes(), &now.to_le_bytes()]);
        out[..16].try_into().expect("32-byte MAC")
    }

    /// Handles the `Authorization` (or `Proxy-Authorization`) NTLM header `params` of `request`, received
    /// on `connection` at `now` (Unix seconds). `lookup(user, domain)` finds the account of an NTLM user.
    pub fn authorize(
        &mut self,
        now: u64,
        connection: &C,
        params: &NtlmParams,
        request: &Message,
        lookup: impl FnOnce(&str, &str) -> Option<NtlmAccount>,
    ) -> Step {
        self.expire(now);
        let Some(opaque) = params.opaque.as_deref() else {
            return self.challenge(now, connection);
        };
        if let Some(token) = params.gssapi_data.as_deref().filter(|t| !t.is_empty()) {
            return self.finish(now, connection, opaque, token, params, request, lookup);
        }
        if params.gssapi_data.is_some() {
            // An empty token with an opaque: the client starts again.
            return self.challenge(now, connection);
        }
        match self.verify(now, connection, params, request) {
            Ok(aor) => Step::Verified { aor },
            Err(r) => Step::Refused(r),
        }
    }

    fn challenge(&mut self, now: u64, connection: &C) -> Step {
        let r = self.random(now);
        let challenge: [u8; 8] = r[..8].try_into().expect("16 random bytes");
        let opaque = hex::encode_upper(&r[8..12]);
        if self.pending.len() >= self.config.max_entries {
            self.pending.clear();
        }
        self.pending.insert(opaque.clone(), Pending { challenge, created: now, connection: connection.clone() });
        let token = ntlm::challenge_message(&self.config.identity, challenge, now);
        let header = NtlmParams {
            opaque: Some(opaque),
            gssapi_data: Some(base64::engine::general_purpose::STANDARD.encode(token)),
            targetname: Some(self.config.targetname.clone()),
            realm: Some(self.config.realm.clone()),
            version: Some(self.config.version),
            ..NtlmParams::default()
        };
        Step::Challenge(header.to_header())
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        now: u64,
        connection: &C,
        opaque: &str,
        token: &str,
        params: &NtlmParams,
        request: &Message,
        lookup: impl FnOnce(&str, &str) -> Option<NtlmAccount>,
    ) -> Step {
        // A challenge is answered once, right or wrong.
        let Some(pending) = self.pending.remove(opaque) else {
            return Step::Refused(Refusal::UnknownAssociation);
        };
        if pending.connection != *connection {
            return Step::Refused(Refusal::WrongConnection);
        }
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(token) else {
            return Step::Refused(Refusal::Malformed("gssapi-data is not base64".into()));
        };
        let auth = match Authenticate::parse(&bytes) {
            Ok(a) => a,
            Err(e) => return Step::Refused(Refusal::Malformed(e.to_string())),
        };
        if let Some(ts) = auth.client_timestamp() {
            let server = ntlm::filetime(now);
            let skew = server.abs_diff(ts) / 10_000_000;
            if skew > self.config.max_clock_skew_secs {
                return Step::Refused(Refusal::ClockSkew);
            }
        }
        let Some(account) = lookup(&auth.user, &auth.domain) else {
            return Step::Refused(Refusal::UnknownUser);
        };
        let keys = match ntlm::verify(&auth, &account.nt_hash, &pending.challenge) {
            Ok(k) => k,
            Err(NtlmError::WrongPassword) => return Step::Refused(Refusal::WrongPassword),
            Err(e) => return Step::Refused(Refusal::Malformed(e.to_string())),
        };
        if self.associations.len() >= self.config.max_entries {
            self.associations.clear();
        }
        self.associations.insert(
            opaque.to_owned(),
            Association {
                aor: account.aor.clone(),
                keys,
                connection: connection.clone(),
                expires: now + self.config.lifetime_secs,
                highest_cnum: 0,
                seen: 0,
                snum: 0,
            },
        );
        // Version 4 clients sign the request that carries the AUTHENTICATE.
        if params.response.is_some()
            && let Err(r) = self.verify(now, connection, params, request)
        {
            self.associations.remove(opaque);
            return Step::Refused(r);
        }
        Step::Established { aor: account.aor, opaque: opaque.to_owned() }
    }

    /// Checks the signature of `message` (a request of an established association, with `crand`, `cnum`
    /// and `response` in `params`); returns the association's address of record.
    pub fn verify(
        &mut self,
        now: u64,
        connection: &C,
        params: &NtlmParams,
        message: &Message,
    ) -> Result<String, Refusal> {
        let opaque = params.opaque.as_deref().ok_or(Refusal::UnknownAssociation)?;
        let version = self.config.version;
        let (realm, target) = (self.config.realm.clone(), self.config.targetname.clone());
        let sa = self.associations.get_mut(opaque).ok_or(Refusal::UnknownAssociation)?;
        if sa.expires <= now {
            return Err(Refusal::UnknownAssociation);
        }
        if sa.connection != *connection {
            return Err(Refusal::WrongConnection);
        }
        let (Some(crand), Some(cnum), Some(response)) = (&params.crand, params.cnum, &params.response) else {
            return Err(Refusal::BadSignature);
        };
        let cnum_text = cnum.to_string();
        let by = SignedBy {
            scheme: "NTLM",
            rand: crand,
            num: &cnum_text,
            realm: params.realm.as_deref().unwrap_or(&realm),
            targetname: params.targetname.as_deref().unwrap_or(&target),
            version: params.version.unwrap_or(version),
        };
        let text = signing_text(&by, message);
        let expected =
            ntlm::signature(sa.keys.flags, &sa.keys.client_sign, &sa.keys.client_seal, SIPAE_SEQUENCE, text.as_bytes());
        let Ok(given) = hex::decode(response) else { return Err(Refusal::BadSignature) };
        if !vienna_crypto::ct_eq(&expected, &given) {
            return Err(Refusal::BadSignature);
        }
        // Replay window over cnum (messages may be reordered on datagram transports).
        if cnum > sa.highest_cnum {
            let shift = cnum - sa.highest_cnum;
            sa.seen = if shift >= 64 { 0 } else { sa.seen << shift };
            sa.seen |= 1;
            sa.highest_cnum = cnum;
        } else {
            let back = sa.highest_cnum - cnum;
            if back >= 64 || sa.seen & (1 << back) != 0 {
                return Err(Refusal::Replay);
            }
            sa.seen |= 1 << back;
        }
        Ok(sa.aor.clone())
    }

    /// The `Authentication-Info` value that signs `message` (a response or a request the server sends)
    /// for association `opaque`; `None` when the association is gone.
    pub fn sign(&mut self, now: u64, opaque: &str, message: &Message) -> Option<String> {
        let srand = hex::encode_upper(&self.random(now)[..4]);
        let (realm, target, version) = (self.config.realm.clone(), self.config.targetname.clone(), self.config.version);
        let sa = self.associations.get_mut(opaque).filter(|sa| sa.expires > now)?;
        sa.snum += 1;
        let snum = sa.snum.to_string();
        let by = SignedBy { scheme: "NTLM", rand: &srand, num: &snum, realm: &realm, targetname: &target, version };
        let text = signing_text(&by, message);
        let sig =
            ntlm::signature(sa.keys.flags, &sa.keys.server_sign, &sa.keys.server_seal, SIPAE_SEQUENCE, text.as_bytes());
        Some(
            NtlmParams {
                rspauth: Some(hex::encode_upper(sig)),
                srand: Some(srand),
                snum: Some(sa.snum),
                opaque: Some(opaque.to_owned()),
                qop: Some("auth".into()),
                targetname: Some(target),
                realm: Some(realm),
                ..NtlmParams::default()
            }
            .to_header(),
        )
    }

    /// The association of `connection`, if it has one (to sign what the server sends on it).
    pub fn opaque_of(&self, connection: &C) -> Option<&str> {
        self.associations.iter().find(|(_, sa)| sa.connection == *connection).map(|(o, _)| o.as_str())
    }

    /// Whether association `opaque` exists (and has not been dropped as expired).
    pub fn is_live(&self, opaque: &str) -> bool {
        self.associations.contains_key(opaque)
    }

    /// Forgets association `opaque` (replaced by a new handshake on the same connection).
    pub fn remove(&mut self, opaque: &str) {
        self.associations.remove(opaque);
    }

    /// Forgets every association and pending challenge of a closed connection.
    pub fn connection_closed(&mut self, connection: &C) {
        self.pending.retain(|_, p| p.connection != *connection);
        self.associations.retain(|_, sa| sa.connection != *connection);
    }

    /// Drops expired challenges and associations.
    pub fn expire(&mut self, now: u64) {
        let lifetime = self.config.challenge_lifetime_secs;
        self.pending.retain(|_, p| p.created + lifetime > now);
        self.associations.retain(|_, sa| sa.expires > now);
    }
}

#[cfg(test)]
mod tests {
    use md4::{Digest, Md4};

    use super::*;
    use crate::ntlm::Challenge;

    const DOMAIN: &str = "example.test";

    fn nt_hash(password: &str) -> [u8; 16] {
        let utf16: Vec<u8> = password.encode_utf16().flat_map(u16::to_le_bytes).collect();
        Md4::digest(&utf16).into()
    }

    fn lookup(user: &str, _domain: &str) -> Option<NtlmAccount> {
        (user == "alice@example.test")
            .then(|| NtlmAccount { aor: "sip:alice@example.test".into(), nt_hash: nt_hash("secret") })
    }

    fn server() -> NtlmServer<u32> {
        NtlmServer::new(AssociationConfig::new(DOMAIN, "sip.example.test"), [7; 32])
    }

    fn request(cseq: u32, auth: &str) -> Message {
        Message::parse(
            format!(
                "REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5000;branch=z9hG4bK{cseq}\r\n\
                 From: <sip:alice@example.test>;tag=f1;epid=e1\r\nTo: <sip:alice@example.test>\r\nCall-ID: c1\r\n\
                 CSeq: {cseq} REGISTER\r\nMax-Forwards: 70\r\nAuthorization: {auth}\r\nContent-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap()
    }

    /// A client that signs its requests the way SIPE does.
    struct Client {
        keys: SessionKeys,
        opaque: String,
        cnum: u32,
    }

    impl Client {
        fn signed(&mut self, cseq: u32, gssapi_data: Option<String>) -> (Message, NtlmParams) {
            self.cnum += 1;
            let mut params = NtlmParams {
                gssapi_data,
                qop: Some("auth".into()),
                opaque: Some(self.opaque.clone()),
                realm: Some(crate::DEFAULT_REALM.into()),
                targetname: Some("sip.example.test".into()),
                crand: Some("0c449822".into()),
                cnum: Some(self.cnum),
                version: Some(4),
                ..NtlmParams::default()
            };
            let unsigned = request(cseq, &params.to_header());
            let cnum = self.cnum.to_string();
            let by = SignedBy {
                scheme: "NTLM",
                rand: "0c449822",
                num: &cnum,
                realm: crate::DEFAULT_REALM,
                targetname: "sip.example.test",
                version: 4,
            };
            let sig = ntlm::signature(
                self.keys.flags,
                &self.keys.client_sign,
                &self.keys.client_seal,
                SIPAE_SEQUENCE,
                signing_text(&by, &unsigned).as_bytes(),
            );
            params.response = Some(hex::encode_upper(sig));
            (request(cseq, &params.to_header()), params)
        }
    }

    /// Runs the handshake for `password` on connection 1; returns the client on success.
    fn handshake(s: &mut NtlmServer<u32>, password: &str) -> Result<Client, Step> {
        let first = NtlmParams::parse(&format!("{}, gssapi-data=\"\"", s.offer())).unwrap();
        let Step::Challenge(header) = s.authorize(1000, &1, &first, &request(1, "NTLM"), lookup) else {
            panic!("expected a challenge")
        };
        let challenged = NtlmParams::parse(&header).unwrap();
        let token = base64::engine::general_purpose::STANDARD.decode(challenged.gssapi_data.unwrap()).unwrap();
        let challenge = Challenge::parse(&token).unwrap();
        let (auth, keys) = ntlm::authenticate_message(
            &challenge,
            "alice@example.test",
            "",
            &nt_hash(password),
            [9; 8],
            ntlm::filetime(1000),
            [5; 16],
        );
        let opaque = challenged.opaque.unwrap();
        let mut client = Client { keys, opaque: opaque.clone(), cnum: 0 };
        let (msg, params) = client.signed(2, Some(base64::engine::general_purpose::STANDARD.encode(auth)));
        match s.authorize(1001, &1, &params, &msg, lookup) {
            Step::Established { aor, opaque: o } => {
                assert_eq!(aor, "sip:alice@example.test");
                assert_eq!(o, opaque);
                Ok(client)
            }
            other => Err(other),
        }
    }

    #[test]
    fn handshake_then_signed_requests_and_signed_responses() {
        let mut s = server();
        let mut client = handshake(&mut s, "secret").expect("established");
        assert_eq!(s.associations(), 1);
        let (msg, params) = client.signed(3, None);
        assert_eq!(
            s.authorize(1002, &1, &params, &msg, lookup),
            Step::Verified { aor: "sip:alice@example.test".into() }
        );
        // The same message again: a replay.
        assert_eq!(s.authorize(1002, &1, &params, &msg, lookup), Step::Refused(Refusal::Replay));
        // Tampered: the signature covers the CSeq.
        let (_, params) = client.signed(4, None);
        let other = request(5, &params.to_header());
        assert_eq!(s.authorize(1002, &1, &params, &other, lookup), Step::Refused(Refusal::BadSignature));
        // Another connection may not use the association.
        let (msg, params) = client.signed(6, None);
        assert_eq!(s.authorize(1002, &2, &params, &msg, lookup), Step::Refused(Refusal::WrongConnection));

        // The server signs a response; the client checks it with the server-to-client keys.
        let response = Message::parse(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS 127.0.0.1:5000;branch=z9hG4bK3\r\nFrom: <sip:alice@example.test>;tag=f1\r\n\
              To: <sip:alice@example.test>;tag=t9\r\nCall-ID: c1\r\nCSeq: 3 REGISTER\r\nExpires: 7200\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        let info = NtlmParams::parse(&s.sign(1003, &client.opaque, &response).unwrap()).unwrap();
        let snum = info.snum.unwrap().to_string();
        let by = SignedBy {
            scheme: "NTLM",
            rand: info.srand.as_deref().unwrap(),
            num: &snum,
            realm: info.realm.as_deref().unwrap(),
            targetname: info.targetname.as_deref().unwrap(),
            version: 4,
        };
        let expected = ntlm::signature(
            client.keys.flags,
            &client.keys.server_sign,
            &client.keys.server_seal,
            SIPAE_SEQUENCE,
            signing_text(&by, &response).as_bytes(),
        );
        assert_eq!(info.rspauth.unwrap(), hex::encode_upper(expected));
        assert_eq!(s.opaque_of(&1), Some(client.opaque.as_str()));
        s.connection_closed(&1);
        assert_eq!(s.associations(), 0);
    }

    #[test]
    fn wrong_password_unknown_user_and_expired_challenge() {
        let mut s = server();
        assert!(matches!(handshake(&mut s, "wrong"), Err(Step::Refused(Refusal::WrongPassword))));
        assert_eq!(s.associations(), 0);
        // A challenge answered after its lifetime.
        let first = NtlmParams::parse(&format!("{}, gssapi-data=\"\"", s.offer())).unwrap();
        let Step::Challenge(header) = s.authorize(1000, &1, &first, &request(1, "NTLM"), lookup) else { panic!() };
        let mut late = NtlmParams::parse(&header).unwrap();
        late.gssapi_data = Some("TlRMTVNTUAADAAAA".into());
        assert_eq!(
            s.authorize(2000, &1, &late, &request(2, "NTLM"), lookup),
            Step::Refused(Refusal::UnknownAssociation)
        );
        // Garbage tokens.
        let Step::Challenge(header) = s.authorize(3000, &1, &first, &request(1, "NTLM"), lookup) else { panic!() };
        let mut bad = NtlmParams::parse(&header).unwrap();
        bad.gssapi_data = Some("%%%".into());
        assert!(matches!(
            s.authorize(3001, &1, &bad, &request(2, "NTLM"), lookup),
            Step::Refused(Refusal::Malformed(_))
        ));
        // Unknown opaque without a token: no association.
        let stray = NtlmParams { opaque: Some("FFFFFFFF".into()), ..NtlmParams::default() };
        assert_eq!(
            s.authorize(3002, &1, &stray, &request(3, "NTLM"), lookup),
            Step::Refused(Refusal::UnknownAssociation)
        );
        // An association expires.
        let mut s = server();
        let mut client = handshake(&mut s, "secret").unwrap();
        let (msg, params) = client.signed(3, None);
        assert_eq!(s.authorize(1001 + 8 * 3600, &1, &params, &msg, lookup), Step::Refused(Refusal::UnknownAssociation));
    }
}
