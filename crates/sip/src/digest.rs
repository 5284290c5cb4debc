//! HTTP Digest authentication for SIP: RFC 3261 §22, RFC 7616 (algorithms, `qop=auth`, nonce count) and
//! RFC 8760 (SHA-256 for SIP; a server offers SHA-256 first, then MD5).
//!
//! Server side ([`DigestServer`]): challenges carry realm, a stateless nonce (Unix time + truncated
//! HMAC-SHA-256 of it under a server secret), `qop="auth"`, `algorithm`, `opaque`, and `stale=true` when a
//! correct response used an expired nonce. Verification works from the stored HA1 (`H(user:realm:password)`,
//! as `vienna-store` keeps it), compares in constant time, and refuses a nonce count that is not higher than
//! the highest seen for that nonce (a bounded table; a nonce that fell out of the table is answered as stale
//! unless its count is 1). Nothing here logs or formats a secret.
//!
//! Client side: [`respond`] computes `Authorization` credentials for a challenge (tests, load tool).
//!
//! Left out: `-sess` algorithms, `qop=auth-int`, `userhash`, SHA-512-256, `Authentication-Info`.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use md5::Md5;
use sha2::{Digest as _, Sha256};

use crate::header::{HeaderName, is_token, quote, quoted_len, unquote};

/// Digest algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// MD5 (RFC 2617; the default when `algorithm` is absent).
    Md5,
    /// SHA-256 (RFC 7616, RFC 8760).
    Sha256,
}

impl Algorithm {
    /// The token used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Parses an algorithm token (case-insensitive); `-sess` variants are not supported.
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if s.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// Lower-case hex of the hash of `parts` joined by `:`.
    pub fn hash_hex(self, parts: &[&[u8]]) -> String {
        fn run<D: sha2::Digest>(mut d: D, parts: &[&[u8]]) -> Vec<u8> {
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p);
            }
            d.finalize().to_vec()
        }
        let out = match self {
            Algorithm::Md5 => run(Md5::new(), parts),
            Algorithm::Sha256 => run(Sha256::new(), parts),
        };
        hex::encode(&out)
    }
}

pub use vienna_crypto::ct_eq;
use vienna_crypto::hmac_sha256;

/// The stored secrets of one user for one realm: `H(username:realm:password)` for each algorithm.
/// `Debug` shows nothing secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Ha1 {
    /// MD5 HA1.
    pub md5: [u8; 16],
    /// SHA-256 HA1.
    pub sha256: [u8; 32],
}

impl Ha1 {
    /// Derives both HA1 values from a password.
    pub fn derive(username: &str, realm: &str, password: &str) -> Self {
        let a1 = [username.as_bytes(), realm.as_bytes(), password.as_bytes()];
        let mut md5 = [0; 16];
        let mut sha256 = [0; 32];
        let _ = hex::decode_to_slice(Algorithm::Md5.hash_hex(&a1), &mut md5);
        let _ = hex::decode_to_slice(Algorithm::Sha256.hash_hex(&a1), &mut sha256);
        Ha1 { md5, sha256 }
    }

    fn hex(&self, alg: Algorithm) -> String {
        match alg {
            Algorithm::Md5 => hex::encode(self.md5),
            Algorithm::Sha256 => hex::encode(self.sha256),
        }
    }
}

impl fmt::Debug for Ha1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ha1(..)")
    }
}

/// Authentication parameters, names in lower case, values unquoted, in order.
pub type AuthParams = Vec<(String, String)>;

/// Parses an authentication header value (`Digest a=b, c="d"`, `NTLM qop="auth", ...`: RFC 3261 §25.1
/// `challenge`/`credentials`) into the scheme and its parameters. Every scheme of SIP (Digest, and the
/// MS-SIPAE NTLM/Kerberos/TLS-DSK headers) shares this grammar.
pub fn parse_auth(value: &str) -> Result<(&str, AuthParams), &'static str> {
    let value = value.trim();
    let end = value.find(|c: char| c.is_ascii_whitespace()).unwrap_or(value.len());
    let scheme = &value[..end];
    if !is_token(scheme) {
        return Err("bad auth scheme");
    }
    let mut rest = value[end..].trim_start();
    let mut params = Vec::new();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or("auth parameter without =")?;
        let name = rest[..eq].trim();
        if !is_token(name) {
            return Err("bad auth parameter name");
        }
        let r = rest[eq + 1..].trim_start();
        let vlen = if r.starts_with('"') {
            quoted_len(r).ok_or("unterminated quoted string")?
        } else {
            r.find([',', ' ', '\t']).unwrap_or(r.len())
        };
        params.push((name.to_ascii_lowercase(), unquote(&r[..vlen]).into_owned()));
        rest = r[vlen..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return Err("expected , between auth parameters");
        }
    }
    Ok((scheme, params))
}

/// The value of parameter `name` (lower case) in `p`.
pub fn get<'a>(p: &'a [(String, String)], name: &str) -> Option<&'a str> {
    p.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// A Digest challenge (WWW-Authenticate or Proxy-Authenticate value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// Realm.
    pub realm: String,
    /// Nonce.
    pub nonce: String,
    /// Opaque value the client must echo.
    pub opaque: Option<String>,
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Offered qop values (`auth`, `auth-int`); empty for RFC 2069 style.
    pub qop: Vec<String>,
    /// `stale=true`.
    pub stale: bool,
}

impl Challenge {
    /// Parses a challenge; `Err` for other schemes or missing realm/nonce.
    pub fn parse(value: &str) -> Result<Self, &'static str> {
        let (scheme, p) = parse_auth(value)?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err("not Digest");
        }
        Ok(Challenge {
            realm: get(&p, "realm").ok_or("missing realm")?.to_owned(),
            nonce: get(&p, "nonce").ok_or("missing nonce")?.to_owned(),
            opaque: get(&p, "opaque").map(str::to_owned),
            algorithm: match get(&p, "algorithm") {
                Some(a) => Algorithm::parse(a).ok_or("unsupported algorithm")?,
                None => Algorithm::Md5,
            },
            qop: get(&p, "qop").map(|q| q.split(',').map(|s| s.trim().to_owned()).collect()).unwrap_or_default(),
            stale: get(&p, "stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest realm={}, nonce={}", quote(&self.realm), quote(&self.nonce))?;
        if let Some(o) = &self.opaque {
            write!(f, ", opaque={}", quote(o))?;
        }
        write!(f, ", algorithm={}", self.algorithm.as_str())?;
        if !self.qop.is_empty() {
            write!(f, ", qop={}", quote(&self.qop.join(",")))?;
        }
        if self.stale {
            f.write_str(", stale=true")?;
        }
        Ok(())
    }
}

/// Digest credentials (Authorization or Proxy-Authorization value).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Realm.
    pub realm: String,
    /// Nonce from the challenge.
    pub nonce: String,
    /// digest-uri (should equal the Request-URI).
    pub uri: String,
    /// Response digest, hex.
    pub response: String,
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Client nonce.
    pub cnonce: Option<String>,
    /// Nonce count.
    pub nc: Option<u32>,
    /// Chosen qop.
    pub qop: Option<String>,
    /// Echoed opaque.
    pub opaque: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("realm", &self.realm)
            .field("algorithm", &self.algorithm)
            .field("nc", &self.nc)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Parses credentials. `Err` for other schemes (RFC 4475 §3.3.7: treat as absent and challenge).
    pub fn parse(value: &str) -> Result<Self, &'static str> {
        let (scheme, p) = parse_auth(value)?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err("not Digest");
        }
        let nc = match get(&p, "nc") {
            Some(v) if v.len() == 8 => Some(u32::from_str_radix(v, 16).map_err(|_| "bad nc")?),
            Some(_) => return Err("bad nc"),
            None => None,
        };
        Ok(Credentials {
            username: get(&p, "username").ok_or("missing username")?.to_owned(),
            realm: get(&p, "realm").ok_or("missing realm")?.to_owned(),
            nonce: get(&p, "nonce").ok_or("missing nonce")?.to_owned(),
            uri: get(&p, "uri").ok_or("missing uri")?.to_owned(),
            response: get(&p, "response").ok_or("missing response")?.to_owned(),
            algorithm: match get(&p, "algorithm") {
                Some(a) => Algorithm::parse(a).ok_or("unsupported algorithm")?,
                None => Algorithm::Md5,
            },
            cnonce: get(&p, "cnonce").map(str::to_owned),
            nc,
            qop: get(&p, "qop").map(str::to_owned),
            opaque: get(&p, "opaque").map(str::to_owned),
        })
    }

    /// Whether `uri` (the digest-uri) names the same resource as the Request-URI (RFC 3261 §22.4 asks servers to
    /// check it): same scheme, user (unescaped), host (case-insensitive) and port; other schemes compare as text.
    pub fn uri_matches(&self, request_uri: &crate::Uri) -> bool {
        match (crate::Uri::parse(&self.uri), request_uri) {
            (Ok(crate::Uri::Sip(a)), crate::Uri::Sip(b)) => {
                a.secure == b.secure
                    && a.user_unescaped() == b.user_unescaped()
                    && a.host.eq_ignore_ascii_case(&b.host)
                    && a.port == b.port
            }
            (Ok(a), b) => a.to_string() == b.to_string(),
            (Err(_), _) => false,
        }
    }

    /// Finds the credentials for `realm` in the Authorization (or, with `proxy`, Proxy-Authorization)
    /// headers; other schemes and realms are skipped.
    pub fn find(headers: &crate::Headers, proxy: bool, realm: &str) -> Option<Self> {
        let name = if proxy { HeaderName::ProxyAuthorization } else { HeaderName::Authorization };
        headers.get_all(&name).filter_map(|v| Credentials::parse(v).ok()).find(|c| c.realm == realm)
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Digest username={}, realm={}, nonce={}, uri={}, response={}, algorithm={}",
            quote(&self.username),
            quote(&self.realm),
            quote(&self.nonce),
            quote(&self.uri),
            quote(&self.response),
            self.algorithm.as_str()
        )?;
        if let Some(c) = &self.cnonce {
            write!(f, ", cnonce={}", quote(c))?;
        }
        if let Some(q) = &self.qop {
            write!(f, ", qop={q}")?;
        }
        if let Some(nc) = self.nc {
            write!(f, ", nc={nc:08x}")?;
        }
        if let Some(o) = &self.opaque {
            write!(f, ", opaque={}", quote(o))?;
        }
        Ok(())
    }
}

/// The response digest (RFC 7616 §3.4.1): `KD(HA1, nonce:nc:cnonce:qop:HA2)` with `qop`, else
/// `KD(HA1, nonce:HA2)`, where `HA2 = H(method:uri)`.
pub fn response_digest(
    alg: Algorithm,
    ha1_hex: &str,
    nonce: &str,
    qop: Option<(&str, u32, &str)>,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = alg.hash_hex(&[method.as_bytes(), uri.as_bytes()]);
    match qop {
        Some((qop, nc, cnonce)) => {
            let nc = format!("{nc:08x}");
            alg.hash_hex(&[
                ha1_hex.as_bytes(),
                nonce.as_bytes(),
                nc.as_bytes(),
                cnonce.as_bytes(),
                qop.as_bytes(),
                ha2.as_bytes(),
            ])
        }
        None => alg.hash_hex(&[ha1_hex.as_bytes(), nonce.as_bytes(), ha2.as_bytes()]),
    }
}

/// Client side: the credentials answering `challenge` for `method` and `uri` with `qop=auth` when offered.
pub fn respond(
    challenge: &Challenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> Credentials {
    let ha1 = challenge.algorithm.hash_hex(&[username.as_bytes(), challenge.realm.as_bytes(), password.as_bytes()]);
    let auth = challenge.qop.iter().any(|q| q.eq_ignore_ascii_case("auth"));
    let qop = auth.then_some(("auth", nc, cnonce));
    Credentials {
        username: username.to_owned(),
        realm: challenge.realm.clone(),
        nonce: challenge.nonce.clone(),
        uri: uri.to_owned(),
        response: response_digest(challenge.algorithm, &ha1, &challenge.nonce, qop, method, uri),
        algorithm: challenge.algorithm,
        cnonce: auth.then(|| cnonce.to_owned()),
        nc: auth.then_some(nc),
        qop: auth.then(|| "auth".to_owned()),
        opaque: challenge.opaque.clone(),
    }
}

/// Outcome of [`DigestServer::verify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Authenticated.
    Ok,
    /// Correct credentials but the nonce expired (or fell out of the nonce-count table): challenge again with
    /// `stale=true`.
    Stale,
    /// The nonce count was already used: a replay. Challenge again (without `stale`).
    Replay,
    /// Wrong password, foreign nonce, wrong realm, missing qop...: challenge again or refuse (403).
    Rejected(&'static str),
}

/// Server-side Digest state: the nonce secret, the realm, and the nonce-count table.
pub struct DigestServer {
    secret: [u8; 32],
    realm: String,
    opaque: String,
    nonce_lifetime_secs: u64,
    nc: HashMap<String, u32>,
    order: VecDeque<String>,
    nc_capacity: usize,
    /// Makes every nonce unique, also within one second.
    issued: u32,
    /// Algorithms offered, in the order of the challenges.
    algorithms: Vec<Algorithm>,
}

impl fmt::Debug for DigestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestServer")
            .field("realm", &self.realm)
            .field("nonces", &self.nc.len())
            .finish_non_exhaustive()
    }
}

impl DigestServer {
    /// A server for `realm`. `secret` must be random (nonces are forged with it); `nonce_lifetime_secs` bounds
    /// how long a nonce is accepted; `nc_capacity` bounds the nonce-count table.
    pub fn new(secret: [u8; 32], realm: &str, nonce_lifetime_secs: u64, nc_capacity: usize) -> Self {
        let opaque = hex::encode(&hmac_sha256(&secret, &[b"opaque", realm.as_bytes()])[..8]);
        DigestServer {
            secret,
            realm: realm.to_owned(),
            opaque,
            nonce_lifetime_secs,
            nc: HashMap::new(),
            order: VecDeque::new(),
            nc_capacity: nc_capacity.max(1),
            issued: 0,
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
        }
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// A fresh nonce, unique: 16 hex digits of the Unix time, 8 of a sequence number, then 32 of
    /// HMAC-SHA-256(secret, time ‖ sequence ‖ realm). Two clients challenged in the same second get
    /// different nonces, so one's nonce count never looks like a replay of the other's.
    pub fn nonce(&mut self, unix_now: u64) -> String {
        self.issued = self.issued.wrapping_add(1);
        let mut stamp = [0u8; 12];
        stamp[..8].copy_from_slice(&unix_now.to_be_bytes());
        stamp[8..].copy_from_slice(&self.issued.to_be_bytes());
        let mut s = hex::encode(stamp);
        s.push_str(&hex::encode(&hmac_sha256(&self.secret, &[&stamp, self.realm.as_bytes()])[..16]));
        s
    }

    /// The nonce's issue time if it is ours.
    fn nonce_time(&self, nonce: &str) -> Option<u64> {
        if nonce.len() != 56 {
            return None;
        }
        let mut stamp = [0u8; 12];
        let mut tag = [0u8; 16];
        hex::decode_to_slice(&nonce[..24], &mut stamp).ok()?;
        hex::decode_to_slice(&nonce[24..], &mut tag).ok()?;
        let mac = hmac_sha256(&self.secret, &[&stamp, self.realm.as_bytes()]);
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&stamp[..8]);
        ct_eq(&tag, &mac[..16]).then(|| u64::from_be_bytes(ts))
    }

    /// Offers `algorithms`, in this order (default: SHA-256 then MD5, RFC 8760 §2.4). Clients that read
    /// only the first challenge (SIPp, older phones) need MD5 first or alone. Credentials with an algorithm
    /// not offered are refused. An empty list keeps the current one.
    pub fn set_algorithms(&mut self, algorithms: &[Algorithm]) {
        if !algorithms.is_empty() {
            self.algorithms = algorithms.to_vec();
        }
    }

    /// The challenges to send, one per algorithm offered, sharing one fresh nonce.
    pub fn challenges(&mut self, unix_now: u64, stale: bool) -> Vec<Challenge> {
        let nonce = self.nonce(unix_now);
        self.algorithms
            .iter()
            .map(|&algorithm| Challenge {
                realm: self.realm.clone(),
                nonce: nonce.clone(),
                opaque: Some(self.opaque.clone()),
                algorithm,
                qop: vec!["auth".to_owned()],
                stale,
            })
            .collect()
    }

    /// Adds the challenge headers to a 401 (`WWW-Authenticate`) or, with `proxy`, 407 (`Proxy-Authenticate`).
    pub fn add_challenge(&mut self, response: &mut crate::Response, unix_now: u64, stale: bool, proxy: bool) {
        let name = if proxy { HeaderName::ProxyAuthenticate } else { HeaderName::WwwAuthenticate };
        for c in self.challenges(unix_now, stale) {
            response.headers.push(name.clone(), c.to_string());
        }
    }

    /// Verifies credentials for a request with `method` against the user's stored HA1 (from the store's
    /// `Secrets`: `Ha1 { md5: s.ha1_md5, sha256: s.ha1_sha256 }`). The caller has looked the user up by
    /// `creds.username` in `creds.realm` (which must be ours), and should check
    /// [`Credentials::uri_matches`] against the Request-URI.
    pub fn verify(&mut self, unix_now: u64, method: &str, creds: &Credentials, ha1: &Ha1) -> Verdict {
        if creds.realm != self.realm {
            return Verdict::Rejected("realm");
        }
        if !self.algorithms.contains(&creds.algorithm) {
            return Verdict::Rejected("algorithm not offered");
        }
        let (Some(qop), Some(nc), Some(cnonce)) = (creds.qop.as_deref(), creds.nc, creds.cnonce.as_deref()) else {
            return Verdict::Rejected("qop=auth required");
        };
        if !qop.eq_ignore_ascii_case("auth") {
            return Verdict::Rejected("qop=auth required");
        }
        let Some(issued) = self.nonce_time(&creds.nonce) else {
            return Verdict::Rejected("unknown nonce");
        };
        if creds.opaque.as_deref().is_some_and(|o| o != self.opaque) {
            return Verdict::Rejected("opaque");
        }
        let expected = response_digest(
            creds.algorithm,
            &ha1.hex(creds.algorithm),
            &creds.nonce,
            Some(("auth", nc, cnonce)),
            method,
            &creds.uri,
        );
        if !ct_eq(expected.as_bytes(), creds.response.to_ascii_lowercase().as_bytes()) {
            return Verdict::Rejected("wrong response");
        }
        if issued > unix_now.saturating_add(5) || unix_now.saturating_sub(issued) >= self.nonce_lifetime_secs {
            return Verdict::Stale;
        }
        match self.nc.get_mut(&creds.nonce) {
            Some(highest) if nc <= *highest => Verdict::Replay,
            Some(highest) => {
                *highest = nc;
                Verdict::Ok
            }
            None if nc != 1 => Verdict::Stale,
            None => {
                if self.order.len() >= self.nc_capacity
                    && let Some(old) = self.order.pop_front()
                {
                    self.nc.remove(&old);
                }
                self.order.push_back(creds.nonce.clone());
                self.nc.insert(creds.nonce.clone(), nc);
                Verdict::Ok
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_example() {
        let ha1 = Algorithm::Md5.hash_hex(&[b"Mufasa", b"testrealm@host.com", b"Circle Of Life"]);
        let r = response_digest(
            Algorithm::Md5,
            &ha1,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            Some(("auth", 1, "0a4f113b")),
            "GET",
            "/dir/index.html",
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn rfc7616_examples() {
        let ch = |alg: &str| {
            Challenge::parse(&format!(
                "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm={alg}, \
                 nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
            ))
            .unwrap()
        };
        let cn = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let md5 = respond(&ch("MD5"), "Mufasa", "Circle of Life", "GET", "/dir/index.html", cn, 1);
        assert_eq!(md5.response, "8ca523f5e9506fed4657c9700eebdbec");
        let sha = respond(&ch("SHA-256"), "Mufasa", "Circle of Life", "GET", "/dir/index.html", cn, 1);
        assert_eq!(sha.response, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1");
        let back = Credentials::parse(&sha.to_string()).unwrap();
        assert_eq!(back, sha);
    }

    fn server() -> DigestServer {
        DigestServer::new([7; 32], "example.com", 300, 2)
    }

    #[test]
    fn verify_replay_stale_and_wrong_password() {
        let mut s = server();
        let ha1 = Ha1::derive("alice", "example.com", "secret");
        let [sha, md5] = <[Challenge; 2]>::try_from(s.challenges(1000, false)).unwrap();
        assert_eq!(sha.algorithm, Algorithm::Sha256);
        assert_eq!(md5.algorithm, Algorithm::Md5);
        for ch in [&sha, &md5] {
            let c = Challenge::parse(&ch.to_string()).unwrap();
            assert_eq!(&c, ch);
        }
        let c1 = respond(&sha, "alice", "secret", "REGISTER", "sip:example.com", "abc", 1);
        assert_eq!(s.verify(1001, "REGISTER", &c1, &ha1), Verdict::Ok);
        assert_eq!(s.verify(1002, "REGISTER", &c1, &ha1), Verdict::Replay);
        let c2 = respond(&sha, "alice", "secret", "REGISTER", "sip:example.com", "abc", 2);
        assert_eq!(s.verify(1002, "REGISTER", &c2, &ha1), Verdict::Ok);
        let m1 = respond(&md5, "alice", "secret", "REGISTER", "sip:example.com", "x", 1);
        // Same nonce, count 1 again: replay even with the other algorithm.
        assert_eq!(s.verify(1002, "REGISTER", &m1, &ha1), Verdict::Replay);
        let bad = respond(&md5, "alice", "wrong", "REGISTER", "sip:example.com", "x", 3);
        assert_eq!(s.verify(1002, "REGISTER", &bad, &ha1), Verdict::Rejected("wrong response"));
        let c3 = respond(&sha, "alice", "secret", "REGISTER", "sip:example.com", "abc", 3);
        assert_eq!(s.verify(1300, "REGISTER", &c3, &ha1), Verdict::Stale);
        let bad = respond(&sha, "alice", "wrong", "REGISTER", "sip:example.com", "abc", 4);
        assert_eq!(s.verify(1300, "REGISTER", &bad, &ha1), Verdict::Rejected("wrong response"));
        let mut resp =
            crate::Response { status: 401, reason: "Unauthorized".into(), headers: Default::default(), body: vec![] };
        s.add_challenge(&mut resp, 1300, true, false);
        let hs: Vec<_> = resp.headers.get_all(&HeaderName::WwwAuthenticate).collect();
        assert_eq!(hs.len(), 2);
        assert!(hs[0].contains("SHA-256") && hs[0].ends_with("stale=true"));
    }

    #[test]
    fn md5_alone_when_configured_and_sha256_then_refused() {
        let mut s = server();
        s.set_algorithms(&[Algorithm::Md5]);
        let ha1 = Ha1::derive("alice", "example.com", "secret");
        let chs = s.challenges(1000, false);
        assert_eq!(chs.len(), 1);
        assert_eq!(chs[0].algorithm, Algorithm::Md5);
        let mut sha = chs[0].clone();
        sha.algorithm = Algorithm::Sha256;
        let c = respond(&sha, "alice", "secret", "REGISTER", "sip:example.com", "abc", 1);
        assert_eq!(s.verify(1000, "REGISTER", &c, &ha1), Verdict::Rejected("algorithm not offered"));
        let c = respond(&chs[0], "alice", "secret", "REGISTER", "sip:example.com", "abc", 1);
        assert_eq!(s.verify(1000, "REGISTER", &c, &ha1), Verdict::Ok);
    }

    #[test]
    fn two_clients_challenged_in_one_second_both_pass() {
        let mut s = server();
        let ha1 = Ha1::derive("alice", "example.com", "secret");
        let a = s.challenges(1000, false).remove(0);
        let b = s.challenges(1000, false).remove(0);
        assert_ne!(a.nonce, b.nonce);
        for ch in [a, b] {
            let c = respond(&ch, "alice", "secret", "REGISTER", "sip:example.com", "abc", 1);
            assert_eq!(s.verify(1000, "REGISTER", &c, &ha1), Verdict::Ok);
        }
    }

    #[test]
    fn foreign_nonce_and_table_eviction() {
        let mut s = server();
        let ha1 = Ha1::derive("alice", "example.com", "secret");
        let mut other = DigestServer::new([8; 32], "example.com", 300, 2);
        let ch = other.challenges(1000, false).remove(0);
        let c = respond(&ch, "alice", "secret", "REGISTER", "sip:example.com", "abc", 1);
        assert_eq!(s.verify(1000, "REGISTER", &c, &ha1), Verdict::Rejected("unknown nonce"));
        let chs: Vec<_> = (0..3).map(|i| s.challenges(1000 + i, false)[0].clone()).collect();
        for ch in &chs {
            let c = respond(ch, "alice", "secret", "REGISTER", "sip:example.com", "abc", 1);
            assert_eq!(s.verify(1003, "REGISTER", &c, &ha1), Verdict::Ok);
        }
        // The first nonce was evicted: count 2 on it is answered stale, count 1 again would be accepted as new.
        let c = respond(&chs[0], "alice", "secret", "REGISTER", "sip:example.com", "abc", 2);
        assert_eq!(s.verify(1003, "REGISTER", &c, &ha1), Verdict::Stale);
        assert!(Credentials::parse("NoOneKnowsThisScheme opaque-data=here").is_err());
        let c = respond(&chs[1], "alice", "secret", "REGISTER", "sip:%61lice@Example.COM", "abc", 1);
        assert!(c.uri_matches(&crate::Uri::parse("sip:alice@example.com").unwrap()));
        assert!(!c.uri_matches(&crate::Uri::parse("sip:alice@example.com:5070").unwrap()));
        assert!(!c.uri_matches(&crate::Uri::parse("sips:alice@example.com").unwrap()));
        assert!(!format!("{:?}", ha1).contains(&hex::encode(ha1.md5)));
    }
}
