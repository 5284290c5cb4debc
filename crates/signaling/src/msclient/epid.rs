//! Endpoint identity of Microsoft clients (MS-SIPRE §3.2.4.1, §4.2): the `epid` From parameter, the
//! `+sip.instance` UUID derived from it, and the gruu-10 GRUU of one endpoint
//! (`sip:alice@example.com;opaque=user:epid:<token>;gruu`).

use base64::Engine as _;
use sha1::{Digest, Sha1};

/// The namespace UUID of MS-SIPRE §4.2 (`fcacfb03-8a73-46ef-91b1-e5ebeeaba4fe`), in the byte order the
/// hash takes it (first three fields little-endian).
const NAMESPACE: [u8; 16] =
    [0x03, 0xfb, 0xac, 0xfc, 0x73, 0x8a, 0xef, 0x46, 0x91, 0xb1, 0xe5, 0xeb, 0xee, 0xab, 0xa4, 0xfe];

/// The instance UUID (`xxxxxxxx-xxxx-5xxx-yxxx-xxxxxxxxxxxx`) of endpoint `epid` (MS-SIPRE §4.2): SHA-1
/// over the namespace and the epid, version 5, RFC 4122 variant, the first three fields printed
/// little-endian.
pub fn instance_from_epid(epid: &str) -> String {
    let mut h = Sha1::new();
    h.update(NAMESPACE);
    h.update(epid.as_bytes());
    let d = h.finalize();
    let mut u = [0u8; 16];
    u.copy_from_slice(&d[..16]);
    // Version 5 in the high nibble of time_hi (little-endian: byte 7), variant in byte 8.
    u[7] = (u[7] & 0x0f) | 0x50;
    u[8] = (u[8] & 0x3f) | 0x80;
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{}-{}",
        u[3],
        u[2],
        u[1],
        u[0],
        u[5],
        u[4],
        u[7],
        u[6],
        hex::encode(&u[8..10]),
        hex::encode(&u[10..16])
    )
}

/// The `epid` parameter of a From or To value, if any.
pub fn epid_of(name_addr: &str) -> Option<&str> {
    let params = name_addr.rfind('>').map_or(name_addr, |close| &name_addr[close + 1..]);
    params
        .split(';')
        .filter_map(|p| p.split_once('='))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("epid"))
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty() && v.len() <= 64)
}

/// The 16 bytes of an instance URN (`<urn:uuid:...>`, brackets and quotes optional).
fn uuid_bytes(instance: &str) -> Option<[u8; 16]> {
    let s = instance.trim_matches(|c| c == '"' || c == '<' || c == '>');
    let s = s.strip_prefix("urn:uuid:").unwrap_or(s);
    let hexs: String = s.chars().filter(|c| *c != '-').collect();
    let b = hex::decode(hexs).ok()?;
    b.try_into().ok()
}

/// The `opaque` value of the gruu-10 GRUU of `instance` (`user:epid:<base64url of the UUID>`).
pub fn gruu_opaque(instance: &str) -> Option<String> {
    let b = uuid_bytes(instance)?;
    Some(format!("user:epid:{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)))
}

/// The GRUU a Microsoft client uses as its Contact: `<aor>;opaque=user:epid:<token>;gruu`.
pub fn gruu(aor: &str, instance: &str) -> Option<String> {
    Some(format!("{aor};opaque={};gruu", gruu_opaque(instance)?))
}

/// The instance URN (`<urn:uuid:...>`) a `user:epid:` opaque value stands for.
pub fn instance_of_opaque(opaque: &str) -> Option<String> {
    let token = opaque.strip_prefix("user:epid:")?;
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).ok()?;
    let u: [u8; 16] = b.try_into().ok()?;
    let h = hex::encode(u);
    Some(format!("<urn:uuid:{}-{}-{}-{}-{}>", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ms_sipre_worked_example() {
        // MS-SIPRE §4.2: epid 01010101.
        assert_eq!(instance_from_epid("01010101"), "4b1682a8-f968-5701-83fc-7c6741dc6697");
    }

    #[test]
    fn sipe_derives_the_same_instance() {
        // testvectors/sipe/sipe-tcp-register-1.txt: From ...;epid=b34afb6ebb23 and
        // +sip.instance="<urn:uuid:085e0bd8-031c-5a0d-8d9a-f149aae6954a>".
        assert_eq!(instance_from_epid("b34afb6ebb23"), "085e0bd8-031c-5a0d-8d9a-f149aae6954a");
    }

    #[test]
    fn gruu_round_trip_and_epid_parameter() {
        let instance = "<urn:uuid:085e0bd8-031c-5a0d-8d9a-f149aae6954a>";
        let g = gruu("sip:alice@example.test", instance).unwrap();
        assert!(g.starts_with("sip:alice@example.test;opaque=user:epid:") && g.ends_with(";gruu"));
        let opaque = gruu_opaque(instance).unwrap();
        assert_eq!(instance_of_opaque(&opaque).as_deref(), Some(instance));
        assert_eq!(instance_of_opaque("user:epid:!!"), None);
        assert_eq!(instance_of_opaque("app:conf:focusfactory"), None);
        assert_eq!(epid_of("<sip:alice@example.test>;tag=1;epid=b34afb6ebb23"), Some("b34afb6ebb23"));
        assert_eq!(epid_of("<sip:a@b;epid=x>"), None);
    }
}
