//! Arbitrary bytes into vienna-srtp: as `a=crypto` / `a=cryptoscale` lines (parse, format, re-parse, and the
//! answerer's choice), and as SRTP/SRTCP packets to unprotect with every suite, with and without MKI, and
//! as plaintext to protect. Nothing may panic and no arbitrary packet may authenticate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vienna_srtp::negotiate::{Offer, TransportProfile, answer, crypto_attributes, random_key};
use vienna_srtp::{CryptoAttribute, LocalPolicy, MasterKey, Mki, ReceiverOptions, SrtpReceiver, SrtpSender, Suite};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        if let Ok(a) = CryptoAttribute::parse_line(line) {
            let again = CryptoAttribute::parse_line(&a.to_string()).expect("formatted line parses");
            assert_eq!(again, a);
        }
    }
    let crypto = crypto_attributes(text.lines().filter_map(|l| l.strip_prefix("a=")).filter_map(|l| l.split_once(':')));
    for profile in [TransportProfile::Avp, TransportProfile::Savp] {
        let offer = Offer { profile, crypto: &crypto, encryption: None };
        let policy = LocalPolicy { scale: data.first().is_some_and(|b| b & 1 == 1), ..LocalPolicy::default() };
        if let Ok(vienna_srtp::Answer::Srtp(a)) = answer(&offer, &policy, random_key) {
            let _ = (a.sender(), a.receiver());
        }
    }

    for suite in Suite::ALL {
        let key = MasterKey::new(suite, &[0x42; 30][..suite.master_len()]).unwrap();
        for mki in [None, Some(Mki::new(1, 1).unwrap())] {
            let mut rx = SrtpReceiver::new(&key, mki, None, ReceiverOptions::default()).unwrap();
            // A 32-bit tag can be hit by chance (2^-32 per input), so only the long tags are asserted.
            let forgeable = suite == Suite::AesCm128HmacSha1_32;
            let mut buf = data.to_vec();
            assert!(rx.unprotect_rtp(&mut buf).is_err() || forgeable, "an arbitrary packet authenticated");
            let mut buf = data.to_vec();
            assert!(rx.unprotect_rtcp(&mut buf).is_err(), "an arbitrary packet authenticated");
            let mut tx = SrtpSender::new(&key, mki, None).unwrap();
            let mut buf = data.to_vec();
            buf.resize(data.len() + vienna_srtp::TRAILER_ROOM + 8, 0);
            if let Ok(n) = tx.protect_rtp(&mut buf, data.len()) {
                let mut rx = SrtpReceiver::new(&key, mki, None, ReceiverOptions::default()).unwrap();
                let m = rx.unprotect_rtp(&mut buf[..n]).expect("own packet unprotects");
                assert_eq!(&buf[..m], data);
            }
        }
    }
});
