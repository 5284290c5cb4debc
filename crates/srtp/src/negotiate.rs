//! The answerer's side of SDES (RFC 4568 §7.1.2–§7.1.3, §6.3; MS-SDPEXT §3.1.5.1–2 and §3.1.5.8): given the
//! crypto lines of one offered media description and the local policy, choose the line to accept and build
//! the answer's line, or decide on plain RTP, or refuse (the caller answers 488).
//!
//! Encryption is *required* by the offer when the profile is `RTP/SAVP` (or `SAVPF`) or MS-SDP's
//! `a=encryption:required` is present; `RTP/AVP` with `a=crypto` lines is Microsoft's *optional* form;
//! `a=encryption:rejected` means no encryption. The local side says the same per endpoint with
//! [`EncryptionPolicy`].
//!
//! The first acceptable line in offer order wins (the offerer lists them in its order of preference). A
//! line is acceptable when its suite is in the local list, every key has the suite's length and a lifetime
//! of at most 2^48, several keys all carry distinct MKIs of one length, and its only session parameters are
//! `KDR=0` and `WSH` (libsrtp does no other KDR, and the `UNENCRYPTED_*`, `UNAUTHENTICATED_SRTP` and FEC
//! parameters are not supported, so RFC 4568 §6.3 has such a line rejected). `a=cryptoscale` lines are
//! considered only when [`LocalPolicy::scale`] is on; the answer then carries `a=cryptoscale:<tag> server`
//! with the group key, which is this crate's reading, **UNCONFIRMED** against a Microsoft MCU.
//!
//! The answer mirrors the chosen line's MKI length (value 1), because some Microsoft peers refuse an answer
//! without MKI once they offered one (seen by others, not confirmed here), and writes the local lifetime
//! (`2^31` by default, as Microsoft clients do).

use crate::context::{ReceiverOptions, SrtpReceiver, SrtpSender};
use crate::sdes::{CryptoAttribute, KeyParam, Lifetime, Mki, ScaleDirection, SessionParam};
use crate::suite::{MasterKey, Suite};
use crate::{Error, Result};

/// Whether an endpoint wants SRTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncryptionPolicy {
    /// SRTP or no call.
    Required,
    /// SRTP when the peer offers it, plain RTP otherwise.
    Optional,
    /// Plain RTP only.
    Rejected,
}

impl EncryptionPolicy {
    /// MS-SDP's `a=encryption:` value (`required`, `optional`, `rejected`).
    pub fn parse(value: &str) -> Option<EncryptionPolicy> {
        match value.trim() {
            "required" => Some(EncryptionPolicy::Required),
            "optional" => Some(EncryptionPolicy::Optional),
            "rejected" => Some(EncryptionPolicy::Rejected),
            _ => None,
        }
    }
}

/// The transport of an `m=` line, as far as encryption goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportProfile {
    /// `RTP/AVP` or `RTP/AVPF`.
    Avp,
    /// `RTP/SAVP` or `RTP/SAVPF`.
    Savp,
}

impl TransportProfile {
    /// From the `m=` line's proto field; `None` for anything that is not RTP.
    pub fn parse(proto: &str) -> Option<TransportProfile> {
        match proto {
            "RTP/AVP" | "RTP/AVPF" => Some(TransportProfile::Avp),
            "RTP/SAVP" | "RTP/SAVPF" => Some(TransportProfile::Savp),
            _ => None,
        }
    }
}

/// What the offer says about one media description.
#[derive(Debug, Clone, Copy)]
pub struct Offer<'a> {
    /// Its transport profile.
    pub profile: TransportProfile,
    /// Its `a=crypto` and `a=cryptoscale` lines (see [`crypto_attributes`]).
    pub crypto: &'a [CryptoAttribute],
    /// MS-SDP `a=encryption:`, if present.
    pub encryption: Option<EncryptionPolicy>,
}

/// The crypto lines among a media description's attributes, given as `(name, value)` pairs; lines that do
/// not parse are left out (they cannot be accepted anyway).
pub fn crypto_attributes<'a>(attributes: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<CryptoAttribute> {
    attributes
        .into_iter()
        .filter(|(name, _)| matches!(*name, "crypto" | "cryptoscale"))
        .filter_map(|(name, value)| CryptoAttribute::parse(name, value).ok())
        .collect()
}

/// Local policy for one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPolicy {
    /// Required, optional or no encryption.
    pub encryption: EncryptionPolicy,
    /// Suites accepted, in order of preference.
    pub suites: Vec<Suite>,
    /// Accept `a=cryptoscale` (Scale SRTP; its Microsoft semantics are UNCONFIRMED, so off by default).
    pub scale: bool,
    /// Lifetime written with the local key.
    pub lifetime: Option<Lifetime>,
}

impl Default for LocalPolicy {
    fn default() -> Self {
        LocalPolicy {
            encryption: EncryptionPolicy::Optional,
            suites: Suite::ALL.to_vec(),
            scale: false,
            lifetime: Some(Lifetime::PowerOfTwo(31)),
        }
    }
}

/// What the answerer needs to supply a key for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRequest {
    /// The chosen suite.
    pub suite: Suite,
    /// Whether the key is for a Scale SRTP group (then the group's key, shared, is the right answer).
    pub scale: bool,
    /// MKI length the answer must carry, if any.
    pub mki_length: Option<u8>,
}

/// A fresh random key, with MKI value 1 when an MKI is needed: what a per-receiver leg uses.
pub fn random_key(request: &KeyRequest) -> Result<(MasterKey, Option<Mki>)> {
    let mki = request.mki_length.map(|length| Mki::new(1, length)).transpose()?;
    Ok((MasterKey::random(request.suite)?, mki))
}

/// One key the remote side will send with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteKey {
    /// Its key material.
    pub key: MasterKey,
    /// Its MKI, if packets carry one.
    pub mki: Option<Mki>,
    /// Its lifetime in packets, if given.
    pub lifetime: Option<u64>,
}

/// The agreed SRTP parameters of one media description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    /// The accepted offer line's tag.
    pub tag: u32,
    /// The suite.
    pub suite: Suite,
    /// Whether the accepted line was `a=cryptoscale`.
    pub scale: bool,
    /// Keys the remote side sends with (receive with these).
    pub remote_keys: Vec<RemoteKey>,
    /// Replay window hint from `WSH` (0: default).
    pub window_size: u64,
    /// The local key (send with this).
    pub local_key: MasterKey,
    /// The local MKI.
    pub local_mki: Option<Mki>,
    /// The local key's lifetime.
    pub local_lifetime: Option<Lifetime>,
    /// The answer's line.
    pub attribute: CryptoAttribute,
}

impl Agreement {
    /// A sender for the local key.
    pub fn sender(&self) -> Result<SrtpSender> {
        SrtpSender::new(&self.local_key, self.local_mki, self.local_lifetime.map(Lifetime::packets))
    }

    /// A receiver for the remote keys.
    pub fn receiver(&self) -> Result<SrtpReceiver> {
        let options = ReceiverOptions { window_size: self.window_size };
        let mut keys = self.remote_keys.iter().rev();
        let first = keys.next().ok_or(Error::InvalidKey("no remote key"))?;
        let mut r = SrtpReceiver::new(&first.key, first.mki, first.lifetime, options)?;
        for k in keys {
            r.add_key(&k.key, k.mki, k.lifetime)?;
        }
        Ok(r)
    }
}

/// The outcome of negotiation for one media description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Plain RTP: answer with `RTP/AVP` and no crypto line.
    Plain,
    /// SRTP with these parameters.
    Srtp(Box<Agreement>),
}

/// Chooses the answer to `offer` under `policy`; `local_key` supplies the local key once the suite is known
/// ([`random_key`] for an ordinary leg, the group key for Scale SRTP). Errors mean "answer 488".
pub fn answer(
    offer: &Offer<'_>,
    policy: &LocalPolicy,
    mut local_key: impl FnMut(&KeyRequest) -> Result<(MasterKey, Option<Mki>)>,
) -> Result<Answer> {
    let offer_requires =
        offer.profile == TransportProfile::Savp || offer.encryption == Some(EncryptionPolicy::Required);
    let offered = if offer.encryption == Some(EncryptionPolicy::Rejected) { &[][..] } else { offer.crypto };
    match policy.encryption {
        EncryptionPolicy::Rejected => {
            return if offer_requires { Err(Error::EncryptionRefused) } else { Ok(Answer::Plain) };
        }
        EncryptionPolicy::Optional | EncryptionPolicy::Required => {}
    }
    let must = offer_requires || policy.encryption == EncryptionPolicy::Required;
    if offered.is_empty() {
        return match (offer_requires, policy.encryption) {
            (true, _) => Err(Error::NoAcceptableCrypto),
            (false, EncryptionPolicy::Required) => Err(Error::EncryptionRequired),
            _ => Ok(Answer::Plain),
        };
    }
    let chosen = offered.iter().find_map(|line| {
        let unique = offered.iter().filter(|l| l.tag == line.tag).count() == 1;
        if unique { acceptable(line, policy) } else { None }
    });
    let Some((line, suite, remote_keys, window_size)) = chosen else {
        return if must { Err(Error::NoAcceptableCrypto) } else { Ok(Answer::Plain) };
    };
    let scale = line.scale.is_some();
    let mki_length = remote_keys[0].mki.map(|m| m.length);
    let (key, mki) = local_key(&KeyRequest { suite, scale, mki_length })?;
    if key.suite() != suite {
        return Err(Error::InvalidKey("local key of another suite"));
    }
    let attribute = CryptoAttribute {
        tag: line.tag,
        scale: scale.then_some(ScaleDirection::Server),
        suite: suite.name().into(),
        keys: vec![KeyParam::new(&key, policy.lifetime, mki)],
        session_params: Vec::new(),
    };
    Ok(Answer::Srtp(Box::new(Agreement {
        tag: line.tag,
        suite,
        scale,
        remote_keys,
        window_size,
        local_key: key,
        local_mki: mki,
        local_lifetime: policy.lifetime,
        attribute,
    })))
}

/// `Some` when `line` can be accepted under `policy`.
fn acceptable<'a>(
    line: &'a CryptoAttribute,
    policy: &LocalPolicy,
) -> Option<(&'a CryptoAttribute, Suite, Vec<RemoteKey>, u64)> {
    let suite = line.known_suite().filter(|s| policy.suites.contains(s))?;
    if line.scale.is_some() && !policy.scale {
        return None;
    }
    let mut window_size = 0;
    for p in &line.session_params {
        match p {
            SessionParam::Kdr(0) => {}
            SessionParam::Wsh(n) => window_size = u64::from(*n),
            _ => return None,
        }
    }
    if line.keys.is_empty() {
        return None;
    }
    let mut keys = Vec::with_capacity(line.keys.len());
    for k in &line.keys {
        let key = k.master_key(suite).ok()?;
        let lifetime = k.lifetime.map(Lifetime::packets);
        if lifetime.is_some_and(|l| l > suite.max_lifetime() || l == 0) {
            return None;
        }
        if k.mki.is_some_and(|m| usize::from(m.length) > crate::context::MAX_MKI_LEN) {
            return None;
        }
        keys.push(RemoteKey { key, mki: k.mki, lifetime });
    }
    if keys.len() > 1 {
        let length = keys[0].mki.map(|m| m.length)?;
        for (i, k) in keys.iter().enumerate() {
            let m = k.mki?;
            if m.length != length || keys[..i].iter().any(|o| o.mki == Some(m)) {
                return None;
            }
        }
    }
    Some((line, suite, keys, window_size))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SFB_KEY: &str = "IQ+Q4YcN8irlbEovMTkF8LL/uMV0JIGFWrAxrrpY";

    fn sfb_offer() -> Vec<CryptoAttribute> {
        let scale = format!("1 client AES_CM_128_HMAC_SHA1_80 inline:{SFB_KEY}|2^31|1:1");
        let with_mki = format!("2 AES_CM_128_HMAC_SHA1_80 inline:{SFB_KEY}|2^31|1:1");
        let without = format!("3 AES_CM_128_HMAC_SHA1_80 inline:{SFB_KEY}|2^31");
        crypto_attributes([
            ("rtpmap", "0 PCMU/8000"),
            ("cryptoscale", scale.as_str()),
            ("crypto", with_mki.as_str()),
            ("crypto", without.as_str()),
        ])
    }

    fn agreed(a: Answer) -> Agreement {
        match a {
            Answer::Srtp(a) => *a,
            Answer::Plain => panic!("expected SRTP"),
        }
    }

    #[test]
    fn microsoft_offer_picks_the_mki_line() {
        let crypto = sfb_offer();
        assert_eq!(crypto.len(), 3);
        let offer = Offer { profile: TransportProfile::Savp, crypto: &crypto, encryption: None };
        let a = agreed(answer(&offer, &LocalPolicy::default(), random_key).unwrap());
        assert_eq!(a.tag, 2, "cryptoscale is off by default; the MKI form comes next");
        assert!(!a.scale);
        assert_eq!(a.local_mki, Some(Mki { value: 1, length: 1 }));
        assert_eq!(a.remote_keys[0].mki, Some(Mki { value: 1, length: 1 }));
        assert_eq!(a.remote_keys[0].lifetime, Some(1 << 31));
        let line = a.attribute.to_string();
        assert!(line.starts_with("a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:"), "{line}");
        assert!(line.ends_with("|2^31|1:1"), "{line}");
        // The answer line parses back to the local key.
        let back = CryptoAttribute::parse_line(&line).unwrap();
        assert_eq!(back.keys[0].master_key(a.suite).unwrap(), a.local_key);
        // And the agreement builds working contexts.
        a.sender().unwrap();
        a.receiver().unwrap();
    }

    #[test]
    fn scale_when_allowed() {
        let crypto = sfb_offer();
        let offer = Offer { profile: TransportProfile::Avp, crypto: &crypto, encryption: None };
        let policy = LocalPolicy { scale: true, ..LocalPolicy::default() };
        let group = MasterKey::random(Suite::AesCm128HmacSha1_80).unwrap();
        let mut asked = None;
        let a = agreed(
            answer(&offer, &policy, |r| {
                asked = Some(*r);
                Ok((group.clone(), Some(Mki::new(7, 1)?)))
            })
            .unwrap(),
        );
        assert_eq!(asked, Some(KeyRequest { suite: Suite::AesCm128HmacSha1_80, scale: true, mki_length: Some(1) }));
        assert_eq!(a.tag, 1);
        assert_eq!(a.local_key, group);
        assert!(a.attribute.to_string().starts_with("a=cryptoscale:1 server AES_CM_128_HMAC_SHA1_80 inline:"));
        assert!(a.attribute.to_string().ends_with("|2^31|7:1"));
    }

    #[test]
    fn policy_matrix() {
        let crypto = sfb_offer();
        let none: [CryptoAttribute; 0] = [];
        use EncryptionPolicy::*;
        let p = |encryption| LocalPolicy { encryption, ..LocalPolicy::default() };
        let savp = Offer { profile: TransportProfile::Savp, crypto: &crypto, encryption: None };
        let avp_crypto = Offer { profile: TransportProfile::Avp, crypto: &crypto, encryption: None };
        let avp_plain = Offer { profile: TransportProfile::Avp, crypto: &none, encryption: None };
        let avp_required_none = Offer { profile: TransportProfile::Avp, crypto: &none, encryption: Some(Required) };
        let avp_rejected = Offer { profile: TransportProfile::Avp, crypto: &crypto, encryption: Some(Rejected) };
        // Offer requires SRTP.
        assert!(matches!(answer(&savp, &p(Required), random_key), Ok(Answer::Srtp(_))));
        assert!(matches!(answer(&savp, &p(Optional), random_key), Ok(Answer::Srtp(_))));
        assert_eq!(answer(&savp, &p(Rejected), random_key), Err(Error::EncryptionRefused));
        assert_eq!(answer(&avp_required_none, &p(Optional), random_key), Err(Error::NoAcceptableCrypto));
        // Optional SRTP (RTP/AVP with crypto lines).
        assert!(matches!(answer(&avp_crypto, &p(Required), random_key), Ok(Answer::Srtp(_))));
        assert!(matches!(answer(&avp_crypto, &p(Optional), random_key), Ok(Answer::Srtp(_))));
        assert_eq!(answer(&avp_crypto, &p(Rejected), random_key), Ok(Answer::Plain));
        // No crypto offered.
        assert_eq!(answer(&avp_plain, &p(Required), random_key), Err(Error::EncryptionRequired));
        assert_eq!(answer(&avp_plain, &p(Optional), random_key), Ok(Answer::Plain));
        assert_eq!(answer(&avp_plain, &p(Rejected), random_key), Ok(Answer::Plain));
        assert_eq!(answer(&avp_rejected, &p(Optional), random_key), Ok(Answer::Plain));
        // Offered suites the policy refuses.
        let only_gcm = LocalPolicy { suites: vec![Suite::AeadAes128Gcm], ..LocalPolicy::default() };
        assert_eq!(answer(&savp, &only_gcm, random_key), Err(Error::NoAcceptableCrypto));
        assert_eq!(answer(&avp_crypto, &only_gcm, random_key), Ok(Answer::Plain));
    }

    #[test]
    fn skips_unacceptable_lines() {
        let k30 = crate::sdes::encode_key(&[1; 30]);
        let k28 = crate::sdes::encode_key(&[2; 28]);
        let lines = [
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k30} KDR=4"),
            format!("2 AES_CM_128_HMAC_SHA1_80 inline:{k30} UNENCRYPTED_SRTP"),
            format!("3 AES_CM_128_HMAC_SHA1_80 inline:{k28}"),
            format!("4 AES_CM_128_HMAC_SHA1_80 inline:{k30}|2^50"),
            format!("5 AES_256_CM_HMAC_SHA1_80 inline:{k30}"),
            format!("6 AES_CM_128_HMAC_SHA1_80 inline:{k30};inline:{k30}"),
            format!("7 AES_CM_128_HMAC_SHA1_80 inline:{k30}|1:1;inline:{k30}|1:1"),
            format!("9 AES_CM_128_HMAC_SHA1_80 inline:{k30}"),
            format!("9 AES_CM_128_HMAC_SHA1_80 inline:{k30}"),
            format!("10 AEAD_AES_128_GCM inline:{k28} KDR=0 WSH=256"),
        ];
        let crypto = crypto_attributes(lines.iter().map(|l| ("crypto", l.as_str())));
        let offer = Offer { profile: TransportProfile::Savp, crypto: &crypto, encryption: None };
        let a = agreed(answer(&offer, &LocalPolicy::default(), random_key).unwrap());
        assert_eq!(a.tag, 10);
        assert_eq!(a.suite, Suite::AeadAes128Gcm);
        assert_eq!(a.window_size, 256);
        assert_eq!(a.local_key.as_bytes().len(), 28);
        assert_eq!(a.local_mki, None);
        // Two keys with distinct MKIs are fine: the receiver holds both.
        let two = format!("8 AES_CM_128_HMAC_SHA1_32 inline:{k30}|2^20|1:2;inline:{k30}|2^20|2:2");
        let crypto = crypto_attributes([("crypto", two.as_str())]);
        let offer = Offer { profile: TransportProfile::Savp, crypto: &crypto, encryption: None };
        let a = agreed(answer(&offer, &LocalPolicy::default(), random_key).unwrap());
        assert_eq!(a.remote_keys.len(), 2);
        assert_eq!(a.local_mki, Some(Mki { value: 1, length: 2 }));
        assert_eq!(a.receiver().unwrap().keys(), 2);
    }

    #[test]
    fn parse_helpers() {
        assert_eq!(EncryptionPolicy::parse("required"), Some(EncryptionPolicy::Required));
        assert_eq!(EncryptionPolicy::parse("maybe"), None);
        assert_eq!(TransportProfile::parse("RTP/SAVPF"), Some(TransportProfile::Savp));
        assert_eq!(TransportProfile::parse("UDP/TLS/RTP/SAVPF"), None);
    }
}
