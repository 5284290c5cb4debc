//! Stateless nonces (RFC 8489 §9.2): `v1` + 16 hex digits of the Unix issue time + 24 hex
//! digits of HMAC-SHA256(secret, time ‖ client IP). Nothing is stored; a nonce is valid for the
//! client IP it was issued to until `nonce_lifetime` has passed, then the relay answers 438 with
//! a fresh one. After a restart with a new random secret old nonces fail the MAC and are also
//! answered with 438 (the client retries), which is safe. The RFC 8489 nonce cookie
//! ("obMatJos2", security feature bits) is not used: PASSWORD-ALGORITHMS is not offered.

use std::net::IpAddr;

use vienna_stun::integrity::{ct_eq, hmac_sha256};

/// Result of checking a nonce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceCheck {
    /// Issued by us, for this IP, not expired.
    Valid,
    /// Expired, malformed, or not ours: answer 438 with a fresh nonce.
    Stale,
}

fn mac(secret: &[u8; 32], ts: u64, ip: IpAddr) -> [u8; 12] {
    let ipb: Vec<u8> = match ip {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    };
    let full = hmac_sha256(secret, &[&ts.to_be_bytes(), &ipb]);
    let mut out = [0u8; 12];
    out.copy_from_slice(&full[..12]);
    out
}

/// Issue a nonce for `ip` at Unix time `unix_now`.
pub fn issue(secret: &[u8; 32], unix_now: u64, ip: IpAddr) -> String {
    let mut s = String::with_capacity(42);
    s.push_str("v1");
    s.push_str(&hex::encode(unix_now.to_be_bytes()));
    s.push_str(&hex::encode(mac(secret, unix_now, ip)));
    s
}

/// Check a nonce presented by `ip` at Unix time `unix_now`.
pub fn check(secret: &[u8; 32], nonce: &str, unix_now: u64, ip: IpAddr, lifetime_secs: u64) -> NonceCheck {
    let Some(rest) = nonce.strip_prefix("v1") else {
        return NonceCheck::Stale;
    };
    if rest.len() != 40 || !rest.is_ascii() {
        return NonceCheck::Stale;
    }
    let mut ts = [0u8; 8];
    let mut tag = [0u8; 12];
    if hex::decode_to_slice(&rest[..16], &mut ts).is_err() || hex::decode_to_slice(&rest[16..], &mut tag).is_err() {
        return NonceCheck::Stale;
    }
    let ts = u64::from_be_bytes(ts);
    if !ct_eq(&tag, &mac(secret, ts, ip)) {
        return NonceCheck::Stale;
    }
    if ts > unix_now.saturating_add(5) || unix_now - ts.min(unix_now) >= lifetime_secs {
        return NonceCheck::Stale;
    }
    NonceCheck::Valid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_lifecycle() {
        let s = [7u8; 32];
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let n = issue(&s, 1000, ip);
        assert_eq!(n.len(), 42);
        assert_eq!(check(&s, &n, 1000, ip, 600), NonceCheck::Valid);
        assert_eq!(check(&s, &n, 1599, ip, 600), NonceCheck::Valid);
        assert_eq!(check(&s, &n, 1600, ip, 600), NonceCheck::Stale);
        assert_eq!(check(&s, &n, 1000, "192.0.2.2".parse().unwrap(), 600), NonceCheck::Stale);
        assert_eq!(check(&[8; 32], &n, 1000, ip, 600), NonceCheck::Stale);
        assert_eq!(check(&s, "v1zz", 1000, ip, 600), NonceCheck::Stale);
        assert_eq!(check(&s, "", 1000, ip, 600), NonceCheck::Stale);
        assert_eq!(check(&s, &n.replace('v', "w"), 1000, ip, 600), NonceCheck::Stale);
    }
}
