//! Arbitrary bytes into vienna-srtp: as `a=crypto` / `a=cryptoscale` lines (parse, format, re-parse, and the
//! answerer's choice), and as SRTP/SRTCP packets to unprotect with every suite, with and without MKI, and
//! as plaintext to protect. Nothing may panic and no arbitrary packet may authenticate.
#![no_main]

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use vienna_srtp::negotiate::{Offer, TransportProfile, answer, crypto_attributes, random_key};
use vienna_srtp::{CryptoAttribute, LocalPolicy, MasterKey, Mki, ReceiverOptions, SrtpReceiver, SrtpSender, Suite};

fuzz_target!(|data: &[u8]| {
    sdes(data);
    packets(data);
});

fn sdes(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        if let Ok(a) = CryptoAttribute::parse_line(line) {
            let again = CryptoAttribute::parse_line(&a.to_string()).expect("formatted line parses");
            assert_eq!(again, a);
        }
    }
    let crypto = crypto_attributes(text.lines().filter_map(|l| l.strip_prefix("a=")).filter_map(|l| l.split_once(':')));
    if crypto.is_empty() {
        return;
    }
    for profile in [TransportProfile::Avp, TransportProfile::Savp] {
        let offer = Offer { profile, crypto: &crypto, encryption: None };
        let policy = LocalPolicy { scale: data.first().is_some_and(|b| b & 1 == 1), ..LocalPolicy::default() };
        if let Ok(vienna_srtp::Answer::Srtp(a)) = answer(&offer, &policy, random_key) {
            let _ = (a.sender(), a.receiver());
        }
    }
}

fn key(suite: Suite) -> MasterKey {
    MasterKey::new(suite, &[0x42; 30][..suite.master_len()]).unwrap()
}

fn packets(data: &[u8]) {
    // Receivers live across inputs (creating libsrtp contexts would dominate); replay state carries over,
    // which only makes authenticating harder.
    static RECEIVERS: OnceLock<Mutex<Vec<(SrtpReceiver, bool)>>> = OnceLock::new();
    let mut receivers = RECEIVERS
        .get_or_init(|| {
            let mut all = Vec::new();
            for suite in Suite::ALL {
                for mki in [None, Some(Mki::new(1, 1).unwrap())] {
                    let rx = SrtpReceiver::new(&key(suite), mki, None, ReceiverOptions::default()).unwrap();
                    // A 32-bit tag can be hit by chance (2^-32 per input): only the long tags are asserted.
                    all.push((rx, suite == Suite::AesCm128HmacSha1_32));
                }
            }
            Mutex::new(all)
        })
        .lock()
        .unwrap();
    for (rx, forgeable) in receivers.iter_mut() {
        let mut buf = data.to_vec();
        assert!(rx.unprotect_rtp(&mut buf).is_err() || *forgeable, "an arbitrary packet authenticated");
        let mut buf = data.to_vec();
        assert!(rx.unprotect_rtcp(&mut buf).is_err(), "an arbitrary packet authenticated");
    }

    // As plaintext: what protects must unprotect to the same bytes.
    let mut buf = data.to_vec();
    buf.resize(data.len() + vienna_srtp::TRAILER_ROOM + 8, 0);
    for suite in Suite::ALL {
        let mki = data.last().is_some_and(|b| b & 1 == 1).then(|| Mki::new(1, 1).unwrap());
        let mut tx = SrtpSender::new(&key(suite), mki, None).unwrap();
        buf[..data.len()].copy_from_slice(data);
        if let Ok(n) = tx.protect_rtp(&mut buf, data.len()) {
            let mut rx = SrtpReceiver::new(&key(suite), mki, None, ReceiverOptions::default()).unwrap();
            let m = rx.unprotect_rtp(&mut buf[..n]).expect("own packet unprotects");
            assert_eq!(&buf[..m], data);
        }
    }
}
