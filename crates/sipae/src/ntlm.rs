//! The server side of connectionless NTLMv2 (MS-NLMP), as MS-SIPAE uses it to authenticate SIP clients.
//!
//! Implemented: the CHALLENGE_MESSAGE (§2.2.1.2) with the flags a datagram client needs and the target
//! information (§2.2.2.1), parsing of the AUTHENTICATE_MESSAGE (§2.2.1.3), verification of the NTLMv2
//! response against the account's NT hash (§3.3.2), the session keys (§3.4.5: KXKEY, SIGNKEY, SEALKEY
//! with extended session security and 128-bit keys), and message signatures (§3.4.4.2, extended session
//! security, RC4-sealed checksum when the key is exchanged). Left out: NTLMv1 and LM responses (refused),
//! sealing (SIP messages are signed, not encrypted), the NEGOTIATE_MESSAGE (datagram mode has none), MIC
//! checking (datagram clients send none).

use md5::{Digest, Md5};
use vienna_crypto::{ct_eq, hmac_md5};

use crate::error::NtlmError;
use crate::rc4::Rc4;

/// NegotiateFlags bits (MS-NLMP §2.2.2.5).
pub mod flags {
    /// Strings are UTF-16LE.
    pub const UNICODE: u32 = 0x0000_0001;
    /// The server's target name is requested.
    pub const REQUEST_TARGET: u32 = 0x0000_0004;
    /// Messages are signed.
    pub const SIGN: u32 = 0x0000_0010;
    /// Messages may be sealed.
    pub const SEAL: u32 = 0x0000_0020;
    /// Connectionless (datagram) NTLM.
    pub const DATAGRAM: u32 = 0x0000_0040;
    /// NTLM authentication.
    pub const NTLM: u32 = 0x0000_0200;
    /// Sign even when not requested.
    pub const ALWAYS_SIGN: u32 = 0x0000_8000;
    /// The target name is a domain.
    pub const TARGET_TYPE_DOMAIN: u32 = 0x0001_0000;
    /// NTLM2 (extended) session security.
    pub const EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
    /// Identify-level token.
    pub const IDENTIFY: u32 = 0x0010_0000;
    /// Target information is present.
    pub const TARGET_INFO: u32 = 0x0080_0000;
    /// A version field is present.
    pub const VERSION: u32 = 0x0200_0000;
    /// 128-bit session keys.
    pub const N128: u32 = 0x2000_0000;
    /// The session key is exchanged (encrypted with the key-exchange key).
    pub const KEY_EXCH: u32 = 0x4000_0000;
    /// 56-bit encryption.
    pub const N56: u32 = 0x8000_0000;

    /// What the server offers to a connectionless SIP client. SIPE refuses a challenge that lacks any of
    /// UNICODE, NTLM, ALWAYS_SIGN, EXTENDED_SESSIONSECURITY, TARGET_INFO, SIGN, DATAGRAM, IDENTIFY and
    /// KEY_EXCH.
    pub const SERVER_DATAGRAM: u32 = UNICODE
        | REQUEST_TARGET
        | SIGN
        | SEAL
        | DATAGRAM
        | NTLM
        | ALWAYS_SIGN
        | TARGET_TYPE_DOMAIN
        | EXTENDED_SESSIONSECURITY
        | IDENTIFY
        | TARGET_INFO
        | VERSION
        | N128
        | KEY_EXCH
        | N56;

    /// Flags the client must accept for the association to be signed as MS-SIPAE requires.
    pub const REQUIRED: u32 = UNICODE | NTLM | SIGN | DATAGRAM | EXTENDED_SESSIONSECURITY;
}

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";
/// Largest AUTHENTICATE_MESSAGE accepted (real ones are a few hundred bytes).
pub const MAX_MESSAGE: usize = 4096;
/// The sequence number MS-SIPAE uses in every signature (SIPE and Lync clients use 100).
pub const SIPAE_SEQUENCE: u32 = 100;

/// Who the server says it is in the CHALLENGE's target information.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerIdentity {
    /// NetBIOS domain name (upper case by convention), e.g. `EXAMPLE`.
    pub netbios_domain: String,
    /// NetBIOS computer name, e.g. `SIP`.
    pub netbios_computer: String,
    /// DNS domain name, e.g. `example.test`.
    pub dns_domain: String,
    /// DNS name of the server, e.g. `sip.example.test`.
    pub dns_computer: String,
}

impl ServerIdentity {
    /// An identity derived from the SIP domain and the server's host name.
    pub fn for_domain(domain: &str, host: &str) -> ServerIdentity {
        let label = |s: &str| s.split('.').next().unwrap_or(s).to_ascii_uppercase();
        ServerIdentity {
            netbios_domain: truncate(&label(domain), 15),
            netbios_computer: truncate(&label(host), 15),
            dns_domain: domain.to_owned(),
            dns_computer: host.to_owned(),
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// Microseconds-of-1601 FILETIME for a Unix time in seconds.
pub fn filetime(unix_secs: u64) -> u64 {
    (unix_secs + 11_644_473_600) * 10_000_000
}

/// A CHALLENGE_MESSAGE for `challenge`, issued at `unix_secs` (its MsvAvTimestamp).
pub fn challenge_message(identity: &ServerIdentity, challenge: [u8; 8], unix_secs: u64) -> Vec<u8> {
    let target = utf16(&identity.netbios_domain);
    let mut info = Vec::new();
    let mut av = |id: u16, value: &[u8]| {
        info.extend_from_slice(&id.to_le_bytes());
        info.extend_from_slice(&(value.len() as u16).to_le_bytes());
        info.extend_from_slice(value);
    };
    av(2, &utf16(&identity.netbios_domain)); // MsvAvNbDomainName
    av(1, &utf16(&identity.netbios_computer)); // MsvAvNbComputerName
    av(4, &utf16(&identity.dns_domain)); // MsvAvDnsDomainName
    av(3, &utf16(&identity.dns_computer)); // MsvAvDnsComputerName
    av(7, &filetime(unix_secs).to_le_bytes()); // MsvAvTimestamp
    av(0, &[]); // MsvAvEOL
    const HEADER: usize = 56;
    let mut m = Vec::with_capacity(HEADER + target.len() + info.len());
    m.extend_from_slice(SIGNATURE);
    m.extend_from_slice(&2u32.to_le_bytes());
    m.extend_from_slice(&(target.len() as u16).to_le_bytes());
    m.extend_from_slice(&(target.len() as u16).to_le_bytes());
    m.extend_from_slice(&(HEADER as u32).to_le_bytes());
    m.extend_from_slice(&flags::SERVER_DATAGRAM.to_le_bytes());
    m.extend_from_slice(&challenge);
    m.extend_from_slice(&[0; 8]);
    m.extend_from_slice(&(info.len() as u16).to_le_bytes());
    m.extend_from_slice(&(info.len() as u16).to_le_bytes());
    m.extend_from_slice(&((HEADER + target.len()) as u32).to_le_bytes());
    // Version: 6.1 build 7601, NTLM revision 15.
    m.extend_from_slice(&[6, 1, 0xb1, 0x1d, 0, 0, 0, 15]);
    m.extend_from_slice(&target);
    m.extend_from_slice(&info);
    m
}

/// The fields of an AUTHENTICATE_MESSAGE the server uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticate {
    /// NegotiateFlags the client chose.
    pub flags: u32,
    /// User name as sent (`alice@example.test` in UPN form, or `alice` with a domain).
    pub user: String,
    /// Domain name as sent (empty with a UPN).
    pub domain: String,
    /// Workstation name.
    pub workstation: String,
    /// NtChallengeResponse: NTProofStr (16 bytes) followed by the client's blob.
    pub nt_response: Vec<u8>,
    /// EncryptedRandomSessionKey (16 bytes with KEY_EXCH, else empty).
    pub encrypted_session_key: Vec<u8>,
}

impl Authenticate {
    /// Parses an AUTHENTICATE_MESSAGE; every field is bounds-checked.
    pub fn parse(m: &[u8]) -> Result<Authenticate, NtlmError> {
        if m.len() > MAX_MESSAGE {
            return Err(NtlmError::Malformed("message too large"));
        }
        if m.len() < 64 || &m[..8] != SIGNATURE {
            return Err(NtlmError::Malformed("not an NTLMSSP message"));
        }
        if u32_at(m, 8) != 3 {
            return Err(NtlmError::Malformed("not an AUTHENTICATE message"));
        }
        let field = |at: usize| -> Result<&[u8], NtlmError> {
            let len = usize::from(u16::from_le_bytes([m[at], m[at + 1]]));
            let offset = u32_at(m, at + 4) as usize;
            m.get(offset..offset.checked_add(len).ok_or(NtlmError::Malformed("field offset"))?)
                .ok_or(NtlmError::Malformed("field outside the message"))
        };
        let flags = u32_at(m, 60);
        if flags & flags::UNICODE == 0 {
            return Err(NtlmError::Unsupported("OEM strings"));
        }
        let text = |at: usize| -> Result<String, NtlmError> {
            let b = field(at)?;
            if b.len() % 2 != 0 {
                return Err(NtlmError::Malformed("odd-length UTF-16 string"));
            }
            let units: Vec<u16> = b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
            String::from_utf16(&units).map_err(|_| NtlmError::Malformed("invalid UTF-16 string"))
        };
        Ok(Authenticate {
            flags,
            nt_response: field(20)?.to_vec(),
            domain: text(28)?,
            user: text(36)?,
            workstation: text(44)?,
            encrypted_session_key: field(52)?.to_vec(),
        })
    }

    /// The FILETIME timestamp in the client's NTLMv2 blob, if the response has one.
    pub fn client_timestamp(&self) -> Option<u64> {
        let blob = self.nt_response.get(16..)?;
        Some(u64::from_le_bytes(blob.get(8..16)?.try_into().ok()?))
    }
}

fn u32_at(m: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([m[at], m[at + 1], m[at + 2], m[at + 3]])
}

/// The keys of an established NTLM session (MS-NLMP §3.4.5), from the server's point of view.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    /// Flags both sides agreed on.
    pub flags: u32,
    /// Key of the client's signatures (client-to-server signing key).
    pub client_sign: [u8; 16],
    /// Key that seals the client's checksums.
    pub client_seal: [u8; 16],
    /// Key of the server's signatures.
    pub server_sign: [u8; 16],
    /// Key that seals the server's checksums.
    pub server_seal: [u8; 16],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys are secrets: never in logs.
        f.debug_struct("SessionKeys").field("flags", &format_args!("{:#010x}", self.flags)).finish_non_exhaustive()
    }
}

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// NTOWFv2 (MS-NLMP §3.3.2): the NTLMv2 response key of `user` in `domain`, from the NT hash.
pub fn ntowf_v2(nt_hash: &[u8; 16], user: &str, domain: &str) -> [u8; 16] {
    let who = utf16(&format!("{}{domain}", user.to_uppercase()));
    hmac_md5(nt_hash, &[&who])
}

/// Checks the NTLMv2 response in `auth` against `nt_hash` and the server `challenge`, and derives the
/// session keys. The caller checks freshness of `auth`'s timestamp and that the challenge is used once.
pub fn verify(auth: &Authenticate, nt_hash: &[u8; 16], challenge: &[u8; 8]) -> Result<SessionKeys, NtlmError> {
    if auth.flags & flags::REQUIRED != flags::REQUIRED {
        return Err(NtlmError::Unsupported("the client refused signing, datagram mode or NTLM2 session security"));
    }
    if auth.nt_response.len() < 16 + 28 {
        // 24 bytes would be an NTLMv1 response: refused.
        return Err(NtlmError::Unsupported("NTLMv1 or LM responses"));
    }
    let (proof, blob) = auth.nt_response.split_at(16);
    let key = ntowf_v2(nt_hash, &auth.user, &auth.domain);
    let expected = hmac_md5(&key, &[challenge, blob]);
    if !ct_eq(&expected, proof) {
        return Err(NtlmError::WrongPassword);
    }
    let session_base = hmac_md5(&key, &[proof]);
    let exported = if auth.flags & flags::KEY_EXCH != 0 {
        let mut k: [u8; 16] = auth
            .encrypted_session_key
            .as_slice()
            .try_into()
            .map_err(|_| NtlmError::Malformed("EncryptedRandomSessionKey is not 16 bytes"))?;
        Rc4::new(&session_base).apply(&mut k);
        k
    } else {
        session_base
    };
    Ok(session_keys(auth.flags, &exported))
}

/// SIGNKEY and SEALKEY in both directions (MS-NLMP §3.4.5.2, §3.4.5.3, extended session security) from
/// the exported session key.
fn session_keys(flags: u32, exported: &[u8; 16]) -> SessionKeys {
    let seal_base: &[u8] = if flags & flags::N128 != 0 {
        exported
    } else if flags & flags::N56 != 0 {
        &exported[..7]
    } else {
        &exported[..5]
    };
    SessionKeys {
        flags,
        client_sign: md5(&[exported, b"session key to client-to-server signing key magic constant\0"]),
        client_seal: md5(&[seal_base, b"session key to client-to-server sealing key magic constant\0"]),
        server_sign: md5(&[exported, b"session key to server-to-client signing key magic constant\0"]),
        server_seal: md5(&[seal_base, b"session key to server-to-client sealing key magic constant\0"]),
    }
}

/// The fields of a CHALLENGE_MESSAGE a client needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// NegotiateFlags the server offers.
    pub flags: u32,
    /// The server challenge.
    pub server_challenge: [u8; 8],
    /// The target information (AV pairs), echoed in the NTLMv2 blob.
    pub target_info: Vec<u8>,
}

impl Challenge {
    /// Parses a CHALLENGE_MESSAGE.
    pub fn parse(m: &[u8]) -> Result<Challenge, NtlmError> {
        if m.len() > MAX_MESSAGE || m.len() < 48 || &m[..8] != SIGNATURE || u32_at(m, 8) != 2 {
            return Err(NtlmError::Malformed("not an NTLM CHALLENGE message"));
        }
        let len = usize::from(u16::from_le_bytes([m[40], m[41]]));
        let offset = u32_at(m, 44) as usize;
        let target_info = m
            .get(offset..offset.saturating_add(len))
            .ok_or(NtlmError::Malformed("target information outside the message"))?
            .to_vec();
        Ok(Challenge { flags: u32_at(m, 20), server_challenge: m[24..32].try_into().expect("8 bytes"), target_info })
    }
}

/// The client side of connectionless NTLMv2, for Vienna's tests and load tools: the AUTHENTICATE_MESSAGE
/// answering `challenge` as `user` of `domain` (a UPN user with an empty domain also works) with the NT
/// hash of the password, and the session keys both sides then share. `client_challenge`, `timestamp`
/// (FILETIME) and `session_key` are the client's random choices.
pub fn authenticate_message(
    challenge: &Challenge,
    user: &str,
    domain: &str,
    nt_hash: &[u8; 16],
    client_challenge: [u8; 8],
    timestamp: u64,
    session_key: [u8; 16],
) -> (Vec<u8>, SessionKeys) {
    let flags = challenge.flags & flags::SERVER_DATAGRAM & !flags::TARGET_TYPE_DOMAIN;
    let key = ntowf_v2(nt_hash, user, domain);
    let mut blob = vec![1, 1, 0, 0, 0, 0, 0, 0];
    blob.extend_from_slice(&timestamp.to_le_bytes());
    blob.extend_from_slice(&client_challenge);
    blob.extend_from_slice(&[0; 4]);
    blob.extend_from_slice(&challenge.target_info);
    blob.extend_from_slice(&[0; 4]);
    let proof = hmac_md5(&key, &[&challenge.server_challenge, &blob]);
    let mut nt_response = proof.to_vec();
    nt_response.extend_from_slice(&blob);
    let mut lm_response = hmac_md5(&key, &[&challenge.server_challenge, &client_challenge]).to_vec();
    lm_response.extend_from_slice(&client_challenge);
    let session_base = hmac_md5(&key, &[&proof]);
    let mut encrypted_key = session_key;
    Rc4::new(&session_base).apply(&mut encrypted_key);
    let fields: [Vec<u8>; 6] =
        [lm_response, nt_response, utf16(domain), utf16(user), utf16("VIENNA"), encrypted_key.to_vec()];
    const HEADER: usize = 72;
    let mut m = Vec::with_capacity(HEADER + fields.iter().map(Vec::len).sum::<usize>());
    m.extend_from_slice(SIGNATURE);
    m.extend_from_slice(&3u32.to_le_bytes());
    let mut offset = HEADER;
    for f in &fields {
        m.extend_from_slice(&(f.len() as u16).to_le_bytes());
        m.extend_from_slice(&(f.len() as u16).to_le_bytes());
        m.extend_from_slice(&(offset as u32).to_le_bytes());
        offset += f.len();
    }
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&[6, 1, 0xb1, 0x1d, 0, 0, 0, 15]);
    for f in &fields {
        m.extend_from_slice(f);
    }
    (m, session_keys(flags, &session_key))
}

/// An NTLM message signature (MS-NLMP §2.2.2.9.1, extended session security): version 1, the first eight
/// bytes of HMAC-MD5 over the sequence number and the message, the sequence number. When the session key
/// was exchanged the checksum is RC4-sealed; connectionless, so each message has its own RC4 key,
/// MD5(sealing key, sequence number) (§3.4.3), which is what SIPE and Lync clients compute.
pub fn signature(flags: u32, sign_key: &[u8; 16], seal_key: &[u8; 16], seq: u32, message: &[u8]) -> [u8; 16] {
    let seq_bytes = seq.to_le_bytes();
    let mac = hmac_md5(sign_key, &[&seq_bytes, message]);
    let mut checksum: [u8; 8] = mac[..8].try_into().expect("16-byte MAC");
    if flags & flags::KEY_EXCH != 0 {
        Rc4::new(&md5(&[seal_key, &seq_bytes])).apply(&mut checksum);
    }
    let mut sig = [0u8; 16];
    sig[..4].copy_from_slice(&1u32.to_le_bytes());
    sig[4..12].copy_from_slice(&checksum);
    sig[12..].copy_from_slice(&seq.to_le_bytes());
    sig
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ms_nlmp_ntowf_v2() {
        // MS-NLMP §4.2.4.1.1: User "User", UserDom "Domain", Passwd "Password".
        let nt_hash: [u8; 16] = hex::decode("a4f49c406510bdcab6824ee7c30fd852").unwrap().try_into().unwrap();
        assert_eq!(hex::encode(ntowf_v2(&nt_hash, "User", "Domain")), "0c868a403bfd7a93a3001ef22ef02e3f");
    }

    #[test]
    fn ms_nlmp_ntlmv2_response_session_key_and_derived_keys() {
        // MS-NLMP §4.2.4: User/Domain/Password, server challenge 0123456789abcdef, client challenge aa..aa,
        // time 0, target information NetBIOS domain "Domain" then NetBIOS server "Server", random session
        // key 55..55 exchanged with KEY_EXCH.
        let nt_hash: [u8; 16] = hex::decode("a4f49c406510bdcab6824ee7c30fd852").unwrap().try_into().unwrap();
        let mut target = Vec::new();
        for (id, name) in [(2u16, "Domain"), (1, "Server")] {
            target.extend_from_slice(&id.to_le_bytes());
            target.extend_from_slice(&((name.len() * 2) as u16).to_le_bytes());
            target.extend_from_slice(&utf16(name));
        }
        target.extend_from_slice(&[0; 4]);
        let mut temp = vec![1, 1, 0, 0, 0, 0, 0, 0];
        temp.extend_from_slice(&[0; 8]);
        temp.extend_from_slice(&[0xaa; 8]);
        temp.extend_from_slice(&[0; 4]);
        temp.extend_from_slice(&target);
        temp.extend_from_slice(&[0; 4]);
        let key = ntowf_v2(&nt_hash, "User", "Domain");
        let challenge = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
        let proof = hmac_md5(&key, &[&challenge, &temp]);
        assert_eq!(hex::encode(proof), "68cd0ab851e51c96aabc927bebef6a1c", "NTProofStr");
        let session_base = hmac_md5(&key, &[&proof]);
        assert_eq!(hex::encode(session_base), "8de40ccadbc14a82f15cb0ad0de95ca3", "SessionBaseKey");
        let mut encrypted = [0x55u8; 16];
        Rc4::new(&session_base).apply(&mut encrypted);
        assert_eq!(hex::encode(encrypted), "c5dad2544fc9799094ce1ce90bc9d03e", "EncryptedRandomSessionKey");
        let mut nt_response = proof.to_vec();
        nt_response.extend_from_slice(&temp);
        let f = flags::REQUIRED | flags::KEY_EXCH | flags::N128 | flags::N56 | flags::SEAL | flags::ALWAYS_SIGN;
        let auth = Authenticate {
            flags: f,
            user: "User".into(),
            domain: "Domain".into(),
            workstation: "COMPUTER".into(),
            nt_response,
            encrypted_session_key: encrypted.to_vec(),
        };
        let keys = verify(&auth, &nt_hash, &challenge).unwrap();
        assert_eq!(hex::encode(keys.client_sign), "4788dc861b4782f35d43fd98fe1a2d39", "client SignKey");
        assert_eq!(hex::encode(keys.client_seal), "59f600973cc4960a25480a7c196e4c58", "client SealKey");
    }

    #[test]
    fn challenge_has_the_flags_sipe_requires_and_round_trips_its_fields() {
        let id = ServerIdentity::for_domain("example.test", "sip.example.test");
        assert_eq!((id.netbios_domain.as_str(), id.netbios_computer.as_str()), ("EXAMPLE", "SIP"));
        let m = challenge_message(&id, [1, 2, 3, 4, 5, 6, 7, 8], 1_700_000_000);
        assert_eq!(&m[..8], SIGNATURE);
        assert_eq!(u32_at(&m, 8), 2);
        let f = u32_at(&m, 20);
        for needed in [
            flags::UNICODE,
            flags::NTLM,
            flags::ALWAYS_SIGN,
            flags::EXTENDED_SESSIONSECURITY,
            flags::TARGET_INFO,
            flags::SIGN,
            flags::DATAGRAM,
            flags::IDENTIFY,
            flags::KEY_EXCH,
        ] {
            assert_eq!(f & needed, needed, "{needed:#x}");
        }
        assert_eq!(&m[24..32], &[1, 2, 3, 4, 5, 6, 7, 8]);
        let info_len = usize::from(u16::from_le_bytes([m[40], m[41]]));
        let info_off = u32_at(&m, 44) as usize;
        assert_eq!(info_off + info_len, m.len());
    }

    #[test]
    fn garbage_is_refused_without_panic() {
        assert!(Authenticate::parse(b"").is_err());
        assert!(Authenticate::parse(&[0u8; 100]).is_err());
        let mut m = vec![0u8; 64];
        m[..8].copy_from_slice(SIGNATURE);
        m[8] = 3;
        m[60] = 1;
        // Every field empty at offset 0: parses, then fails verification as NTLMv1.
        let auth = Authenticate::parse(&m).unwrap();
        assert!(verify(&auth, &[0; 16], &[0; 8]).is_err());
        // A field pointing outside.
        m[20] = 200;
        m[24] = 10;
        assert!(Authenticate::parse(&m).is_err());
    }
}
