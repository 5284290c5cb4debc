use super::*;
use crate::reference::{self, SessionKeys, vectors};

const CM: &str = include_str!("../../../../testvectors/srtp/libsrtp-aes-cm-128-hmac-sha1-80.txt");
const GCM: &str = include_str!("../../../../testvectors/srtp/libsrtp-aead-aes-128-gcm.txt");

fn key(suite: Suite, v: &std::collections::HashMap<String, Vec<u8>>) -> MasterKey {
    MasterKey::new(suite, &v["master-key-salt"]).unwrap()
}

/// Protects `plain` into a fresh buffer with room; returns the protected bytes.
fn protect(s: &mut SrtpSender, plain: &[u8], rtcp: bool) -> Vec<u8> {
    let mut buf = vec![0u8; plain.len() + TRAILER_ROOM + MAX_MKI_LEN];
    buf[..plain.len()].copy_from_slice(plain);
    let n = if rtcp { s.protect_rtcp(&mut buf, plain.len()) } else { s.protect_rtp(&mut buf, plain.len()) }.unwrap();
    buf.truncate(n);
    buf
}

fn unprotect(r: &mut SrtpReceiver, packet: &[u8], rtcp: bool) -> Result<Vec<u8>> {
    let mut buf = packet.to_vec();
    let n = if rtcp { r.unprotect_rtcp(&mut buf) } else { r.unprotect_rtp(&mut buf) }?;
    buf.truncate(n);
    Ok(buf)
}

fn rx(k: &MasterKey, mki: Option<Mki>) -> SrtpReceiver {
    SrtpReceiver::new(k, mki, None, ReceiverOptions::default()).unwrap()
}

fn rtp(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 0x60];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&u32::from(seq).wrapping_mul(160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn rejected(r: Result<Vec<u8>>) -> RejectReason {
    match r {
        Err(Error::Rejected(reason)) => reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn libsrtp_reference_packets_aes_cm() {
    let v = vectors(CM);
    let k = key(Suite::AesCm128HmacSha1_80, &v);
    let mut s = SrtpSender::new(&k, None, None).unwrap();
    assert_eq!(protect(&mut s, &v["rtp"], false), v["srtp"]);
    assert_eq!(protect(&mut s, &v["rtcp"], true), v["srtcp"], "first SRTCP index is 1");
    let mut r = rx(&k, None);
    assert_eq!(unprotect(&mut r, &v["srtp"], false).unwrap(), v["rtp"]);
    assert_eq!(unprotect(&mut r, &v["srtcp"], true).unwrap(), v["rtcp"]);
    assert_eq!(r.accepted(), (1, 1));

    let k32 = MasterKey::new(Suite::AesCm128HmacSha1_32, &v["master-key-salt"]).unwrap();
    let mut s = SrtpSender::new(&k32, None, None).unwrap();
    assert_eq!(protect(&mut s, &v["rtp"], false), v["srtp-32"]);
    assert_eq!(protect(&mut s, &v["rtcp"], true), v["srtcp"], "_32 keeps the 80-bit SRTCP tag");
    assert_eq!(unprotect(&mut rx(&k32, None), &v["srtp-32"], false).unwrap(), v["rtp"]);
}

#[test]
fn libsrtp_reference_packets_gcm() {
    let v = vectors(GCM);
    let k = key(Suite::AeadAes128Gcm, &v);
    let mut s = SrtpSender::new(&k, None, None).unwrap();
    assert_eq!(protect(&mut s, &v["rtp"], false), v["srtp"]);
    assert_eq!(protect(&mut s, &v["rtcp"], true), v["srtcp"]);
    let mut r = rx(&k, None);
    assert_eq!(unprotect(&mut r, &v["srtp"], false).unwrap(), v["rtp"]);
    assert_eq!(unprotect(&mut r, &v["srtcp"], true).unwrap(), v["rtcp"]);
}

#[test]
fn mki_sits_before_the_tag_for_aes_cm_and_after_it_for_gcm() {
    let mki = Some(Mki::new(1, 1).unwrap());
    for (text, suite) in [(CM, Suite::AesCm128HmacSha1_80), (GCM, Suite::AeadAes128Gcm)] {
        let v = vectors(text);
        let k = key(suite, &v);
        let mut s = SrtpSender::new(&k, mki, None).unwrap();
        let with_mki = |reference: &[u8], tag: usize| {
            let mut p = reference.to_vec();
            let at = if suite.is_aead() { p.len() } else { p.len() - tag };
            p.insert(at, 0x01);
            p
        };
        let srtp = protect(&mut s, &v["rtp"], false);
        assert_eq!(srtp, with_mki(&v["srtp"], suite.rtp_tag_len()), "{suite}");
        let srtcp = protect(&mut s, &v["rtcp"], true);
        assert_eq!(srtcp, with_mki(&v["srtcp"], suite.rtcp_tag_len()), "{suite}");
        let mut r = rx(&k, mki);
        assert_eq!(unprotect(&mut r, &srtp, false).unwrap(), v["rtp"]);
        assert_eq!(unprotect(&mut r, &srtcp, true).unwrap(), v["rtcp"]);
        // A packet naming another MKI is a wrong key, whatever its tag.
        let mut other = with_mki(&v["srtp"], suite.rtp_tag_len());
        let at = if suite.is_aead() { other.len() - 1 } else { other.len() - suite.rtp_tag_len() - 1 };
        other[at] = 2;
        assert_eq!(rejected(unprotect(&mut r, &other, false)), RejectReason::WrongKey);
    }
}

#[test]
fn replay_tamper_wrong_key_malformed_are_counted() {
    let k = MasterKey::random(Suite::AesCm128HmacSha1_80).unwrap();
    let mut s = SrtpSender::new(&k, None, None).unwrap();
    let mut r = rx(&k, None);
    let first = protect(&mut s, &rtp(1, 7, &[1; 160]), false);

    // A stranger's key: the SSRC never authenticated, so this is a wrong key.
    let stranger = MasterKey::random(Suite::AesCm128HmacSha1_80).unwrap();
    let mut other = SrtpSender::new(&stranger, None, None).unwrap();
    let foreign = protect(&mut other, &rtp(1, 7, &[1; 160]), false);
    assert_eq!(rejected(unprotect(&mut r, &foreign, false)), RejectReason::WrongKey);

    assert!(unprotect(&mut r, &first, false).is_ok());
    assert_eq!(rejected(unprotect(&mut r, &first, false)), RejectReason::Replayed);

    let mut tampered = protect(&mut s, &rtp(2, 7, &[2; 160]), false);
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    assert_eq!(rejected(unprotect(&mut r, &tampered, false)), RejectReason::AuthFailed);
    let mut body = protect(&mut s, &rtp(3, 7, &[3; 160]), false);
    body[20] ^= 0x80;
    assert_eq!(rejected(unprotect(&mut r, &body, false)), RejectReason::AuthFailed, "tampered payload");

    // Far ahead, then something older than the 128-packet window.
    let ahead = protect(&mut s, &rtp(400, 7, &[4; 10]), false);
    assert!(unprotect(&mut r, &ahead, false).is_ok());
    // (libsrtp's sender refuses to go back, so a second sender with the same key makes the old packet.)
    let old = protect(&mut SrtpSender::new(&k, None, None).unwrap(), &rtp(100, 7, &[5; 10]), false);
    assert_eq!(rejected(unprotect(&mut r, &old, false)), RejectReason::TooOld);

    for junk in
        [&[][..], &[0x80; 11], &[0x40; 40], &[0x8f; 30], &[0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]]
    {
        assert_eq!(rejected(unprotect(&mut r, junk, false)), RejectReason::Malformed, "{junk:?}");
    }
    assert_eq!(rejected(unprotect(&mut r, &[0x81, 0xc8, 0, 1, 0, 0, 0, 7, 1, 2], true)), RejectReason::Malformed);

    let c = r.rejected();
    assert_eq!(c.get(RejectReason::WrongKey), 1);
    assert_eq!(c.get(RejectReason::Replayed), 1);
    assert_eq!(c.get(RejectReason::AuthFailed), 2);
    assert_eq!(c.get(RejectReason::TooOld), 1);
    assert_eq!(c.get(RejectReason::Malformed), 6);
    assert_eq!(c.total(), 11);
    assert_eq!(r.accepted(), (2, 0));
    assert_eq!(c.iter().map(|(reason, _)| reason.as_str()).collect::<Vec<_>>().len(), 7);
}

#[test]
fn srtcp_replay_and_tamper() {
    let k = MasterKey::random(Suite::AesCm128HmacSha1_32).unwrap();
    let mut s = SrtpSender::new(&k, None, None).unwrap();
    let mut r = rx(&k, None);
    let sr =
        [0x80, 0xc8, 0x00, 0x06, 0, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20];
    let p = protect(&mut s, &sr, true);
    assert_eq!(p.len(), sr.len() + 4 + 10);
    assert_eq!(unprotect(&mut r, &p, true).unwrap(), sr);
    assert_eq!(rejected(unprotect(&mut r, &p, true)), RejectReason::Replayed);
    let mut t = protect(&mut s, &sr, true);
    t[10] ^= 1;
    assert_eq!(rejected(unprotect(&mut r, &t, true)), RejectReason::AuthFailed);
}

/// 70,000 packets from sequence 65,000: the sender's ROC goes to 1 and then 2 at the wraps, the receiver
/// follows, and the packets agree byte for byte with the reference transform at that ROC.
#[test]
fn rollover_at_65535() {
    let v = vectors(CM);
    let k = key(Suite::AesCm128HmacSha1_80, &v);
    let keys = SessionKeys::derive(k.key().try_into().unwrap(), k.salt().try_into().unwrap(), false).unwrap();
    let mut s = SrtpSender::new(&k, None, None).unwrap();
    let mut r = rx(&k, None);
    let mut buf = vec![0u8; 200 + TRAILER_ROOM];
    for i in 0..70_000u32 {
        let seq = (65_000 + i) as u16;
        let plain = rtp(seq, 0xdecafbad, &i.to_be_bytes());
        buf[..plain.len()].copy_from_slice(&plain);
        let n = s.protect_rtp(&mut buf, plain.len()).unwrap();
        let roc = (65_000 + i) >> 16;
        if i % 5_000 == 0 || (530..545).contains(&i) || (66_066..66_080).contains(&i) {
            assert_eq!(buf[..n], reference::protect_rtp(&keys, roc, &plain, 10).unwrap()[..], "packet {i}, ROC {roc}");
        }
        let m = r.unprotect_rtp(&mut buf[..n]).unwrap_or_else(|e| panic!("packet {i} (seq {seq}): {e}"));
        assert_eq!(&buf[..m], &plain[..]);
    }
    assert_eq!(s.roc(0xdecafbad), Some(2));
    assert_eq!(r.accepted().0, 70_000);
    assert_eq!(r.rejected().total(), 0);
}

#[test]
fn late_receiver_told_the_roc() {
    let k = MasterKey::random(Suite::AesCm128HmacSha1_80).unwrap();
    let mut s = SrtpSender::new(&k, None, None).unwrap();
    for seq in 65_530..=65_535u16 {
        protect(&mut s, &rtp(seq, 5, &[0; 8]), false);
    }
    let after_wrap = protect(&mut s, &rtp(3, 5, &[0; 8]), false);
    // A receiver starting now guesses ROC 0 and cannot authenticate...
    let mut guess = rx(&k, None);
    assert_eq!(rejected(unprotect(&mut guess, &after_wrap, false)), RejectReason::WrongKey);
    // ...one told ROC 1 (by signaling) can.
    let mut told = rx(&k, None);
    told.set_roc(5, 1).unwrap();
    assert!(unprotect(&mut told, &after_wrap, false).is_ok());
}

#[test]
fn lifetime_and_soft_limit() {
    let k = MasterKey::random(Suite::AesCm128HmacSha1_80).unwrap();
    let mut s = SrtpSender::new(&k, None, Some(32)).unwrap();
    let mut r = SrtpReceiver::new(&k, None, Some(31), ReceiverOptions::default()).unwrap();
    let mut packets = Vec::new();
    for seq in 0..32u16 {
        assert_eq!(s.needs_rekey(), seq >= 30, "soft limit at 15/16 of 32");
        packets.push(protect(&mut s, &rtp(seq, 1, &[0; 4]), false));
    }
    let mut buf = vec![0u8; 16 + TRAILER_ROOM];
    buf[..16].copy_from_slice(&rtp(33, 1, &[0; 4]));
    assert_eq!(s.protect_rtp(&mut buf, 16), Err(Error::KeyExpired));
    for p in &packets[..31] {
        assert!(unprotect(&mut r, p, false).is_ok());
    }
    assert_eq!(rejected(unprotect(&mut r, &packets[31], false)), RejectReason::KeyExpired);
    // A new key resets the count.
    let k2 = MasterKey::random(Suite::AesCm128HmacSha1_80).unwrap();
    s.rekey(&k2, None, Some(32), false).unwrap();
    assert_eq!(s.protected(), (0, 0));
    assert!(s.protect_rtp(&mut buf, 16).is_ok());
}

#[test]
fn rekey_without_mki_accepts_packets_in_flight() {
    for suite in [Suite::AesCm128HmacSha1_80, Suite::AeadAes128Gcm] {
        let old = MasterKey::random(suite).unwrap();
        let new = MasterKey::random(suite).unwrap();
        let mut s_old = SrtpSender::new(&old, None, None).unwrap();
        let mut s_new = SrtpSender::new(&new, None, None).unwrap();
        let mut r = rx(&old, None);
        assert!(unprotect(&mut r, &protect(&mut s_old, &rtp(1, 9, &[1; 50]), false), false).is_ok());
        r.add_key(&new, None, None).unwrap();
        assert_eq!(r.keys(), 2);
        let late = protect(&mut s_old, &rtp(2, 9, &[2; 50]), false);
        let fresh = protect(&mut s_new, &rtp(3, 9, &[3; 50]), false);
        assert_eq!(unprotect(&mut r, &fresh, false).unwrap(), rtp(3, 9, &[3; 50]), "{suite}");
        assert_eq!(unprotect(&mut r, &late, false).unwrap(), rtp(2, 9, &[2; 50]), "{suite}: in flight");
        r.retire_old_keys();
        let later = protect(&mut s_old, &rtp(4, 9, &[4; 50]), false);
        assert_eq!(rejected(unprotect(&mut r, &later, false)), RejectReason::AuthFailed, "{suite}");
    }
}

/// What the no-MKI fallback relies on: a failed AES-CM unprotect leaves the packet as it was.
#[test]
fn failed_aes_cm_unprotect_leaves_the_buffer_alone() {
    let k = MasterKey::random(Suite::AesCm128HmacSha1_80).unwrap();
    let p = protect(&mut SrtpSender::new(&k, None, None).unwrap(), &rtp(1, 1, &[7; 100]), false);
    let mut r = rx(&MasterKey::random(Suite::AesCm128HmacSha1_80).unwrap(), None);
    let mut buf = p.clone();
    assert!(r.unprotect_rtp(&mut buf).is_err());
    assert_eq!(buf, p);
}

#[test]
fn rekey_with_mki_keeps_both_keys() {
    let suite = Suite::AesCm128HmacSha1_80;
    let (k1, k2) = (MasterKey::random(suite).unwrap(), MasterKey::random(suite).unwrap());
    let (m1, m2) = (Mki::new(1, 1).unwrap(), Mki::new(2, 1).unwrap());
    let mut s = SrtpSender::new(&k1, Some(m1), None).unwrap();
    let mut r = rx(&k1, Some(m1));
    assert!(r.add_key(&k2, None, None).is_err(), "MKI length must match");
    r.add_key(&k2, Some(m2), None).unwrap();
    let a = protect(&mut s, &rtp(1, 3, &[1; 20]), false);
    s.rekey(&k2, Some(m2), None, true).unwrap();
    let b = protect(&mut s, &rtp(2, 3, &[2; 20]), false);
    assert_eq!(unprotect(&mut r, &b, false).unwrap(), rtp(2, 3, &[2; 20]));
    assert_eq!(unprotect(&mut r, &a, false).unwrap(), rtp(1, 3, &[1; 20]));
    assert!(r.remove_key(m1));
    assert_eq!(rejected(unprotect(&mut r, &a, false)), RejectReason::WrongKey);
    assert!(!r.remove_key(m2), "the last key stays");
}

#[test]
fn rekey_keeping_the_roc() {
    let suite = Suite::AesCm128HmacSha1_80;
    let (k1, k2) = (MasterKey::random(suite).unwrap(), MasterKey::random(suite).unwrap());
    let mut s = SrtpSender::new(&k1, None, None).unwrap();
    for seq in [65_534u16, 65_535, 0, 1] {
        protect(&mut s, &rtp(seq, 4, &[0; 8]), false);
    }
    s.rekey(&k2, None, None, true).unwrap();
    assert_eq!(s.roc(4), Some(1));
    let p = protect(&mut s, &rtp(2, 4, &[0; 8]), false);
    let mut r = rx(&k2, None);
    r.set_roc(4, 1).unwrap();
    assert!(unprotect(&mut r, &p, false).is_ok());
    // Without keeping it, the new context starts at ROC 0, as a fresh receiver expects.
    s.rekey(&k1, None, None, false).unwrap();
    let p = protect(&mut s, &rtp(3, 4, &[0; 8]), false);
    assert!(unprotect(&mut rx(&k1, None), &p, false).is_ok());
}

#[test]
fn caller_errors() {
    let k = MasterKey::random(Suite::AesCm128HmacSha1_80).unwrap();
    let mut s = SrtpSender::new(&k, None, None).unwrap();
    let p = rtp(1, 1, &[0; 100]);
    let mut small = p.clone();
    assert!(matches!(s.protect_rtp(&mut small, p.len()), Err(Error::BufferTooSmall { .. })));
    assert!(matches!(s.protect_rtp(&mut small, p.len() + 1), Err(Error::BadPacket(_))));
    let mut buf = vec![0u8; 300];
    assert!(matches!(s.protect_rtp(&mut buf, 12), Err(Error::BadPacket(_))), "version 0");
    assert!(SrtpSender::new(&k, Some(Mki::new(1, 9).unwrap()), None).is_err());
    let gcm = MasterKey::random(Suite::AeadAes128Gcm).unwrap();
    assert!(s.rekey(&gcm, None, None, false).is_err());
    assert_eq!(s.rtp_overhead(), 10);
    assert_eq!(s.rtcp_overhead(), 14);
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
                                   mki in proptest::bool::ANY, rtcp in proptest::bool::ANY) {
        for suite in Suite::ALL {
            let k = MasterKey::new(suite, &[3; 30][..suite.master_len()]).unwrap();
            let mut r = rx(&k, mki.then(|| Mki::new(1, 1).unwrap()));
            let _ = unprotect(&mut r, &bytes, rtcp);
            // Also as a packet whose header looks right.
            let mut b = bytes.clone();
            if let Some(first) = b.first_mut() { *first = 0x80 | (*first & 0x3f); }
            let _ = unprotect(&mut r, &b, rtcp);
            proptest::prop_assert_eq!(r.accepted(), (0, 0));
        }
    }

    #[test]
    fn round_trip(payload in proptest::collection::vec(proptest::num::u8::ANY, 0..1200), seq in proptest::num::u16::ANY,
                  suite in proptest::sample::select(Suite::ALL.to_vec()), mki in proptest::option::of(1u64..4)) {
        let k = MasterKey::random(suite).unwrap();
        let mki = mki.map(|v| Mki::new(v, 2).unwrap());
        let mut s = SrtpSender::new(&k, mki, None).unwrap();
        let mut r = rx(&k, mki);
        let plain = rtp(seq, 77, &payload);
        let p = protect(&mut s, &plain, false);
        proptest::prop_assert_eq!(p.len(), plain.len() + s.rtp_overhead());
        proptest::prop_assert_eq!(unprotect(&mut r, &p, false).unwrap(), plain);
    }
}
