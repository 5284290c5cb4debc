//! The MS-TURN messages libnice 0.1.21 sent in its OC2007/OC2007R2 modes (testvectors/msturn/),
//! decoded with the MS-TURN codec.

use std::path::PathBuf;

use vienna_stun::msturn::{self, Message, attr, types};

fn vector(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testvectors/msturn").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let hex: String = text.lines().filter(|l| !l.starts_with('#')).flat_map(|l| l.trim().chars()).collect();
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

/// base64-decode of "secret" as libnice does it: the 4 characters "secr" (3 bytes), "et" dropped.
const PASSWORD: [u8; 3] = [0xb1, 0xe7, 0x2b];

#[test]
fn first_allocate_of_both_modes() {
    for mode in ["oc2007", "oc2007r2"] {
        let m = vector(&format!("libnice-{mode}-udp-allocate-1.hex"));
        assert!(msturn::is_msturn(&m));
        let d = Message::decode(&m).unwrap();
        assert_eq!(d.msg_type(), types::ALLOCATE_REQUEST);
        assert_eq!(d.get_u32(attr::MS_VERSION), Some(Ok(1)));
        assert_eq!(d.integrity(), None);
        assert_eq!(d.attributes().count(), 1);
    }
}

#[test]
fn authenticated_allocate_verifies_with_realm_from_0x0015() {
    for mode in ["oc2007", "oc2007r2"] {
        let m = vector(&format!("libnice-{mode}-udp-allocate-2-auth.hex"));
        let d = Message::decode(&m).unwrap();
        assert_eq!(d.msg_type(), types::ALLOCATE_REQUEST);
        let username = d.get(attr::USERNAME).unwrap();
        assert_eq!(username, [0x6a, 0x58, 0x9c, 0x79, 0xec, 0x5a, 0x9a, 0x99, 0x5e, 0xb5, 0xeb, 0x2d]);
        let realm = d.get(attr::REALM).unwrap();
        let nonce = d.get(attr::NONCE).unwrap();
        assert_eq!(realm, b"0123456789abcdef0123456789abcdef", "the listener put this at 0x0015");
        assert_eq!(nonce, b"example.test", "the listener put this at 0x0014");
        assert_eq!(d.integrity(), Some(msturn::Hash::Sha1));
        assert!(d.verify(&msturn::key_v1(username, realm, &PASSWORD)), "{mode}: realm = value of 0x0015");
        assert!(!d.verify(&msturn::key_v1(username, nonce, &PASSWORD)), "not the value of 0x0014");
    }
}

#[test]
fn tcp_frames_and_the_pseudo_tls_hello() {
    for mode in ["oc2007", "oc2007r2"] {
        for (file, len) in [("tcp-allocate-1-framed-02", 36), ("tcp-allocate-2-auth-framed-02", 128)] {
            let f = vector(&format!("libnice-{mode}-{file}.hex"));
            assert!(msturn::starts_tcp_framing(&f));
            assert_eq!(msturn::tcp_frame(&f), Ok(Some((msturn::FRAME_CONTROL, 4 + len))));
            assert_eq!(f.len(), 4 + len);
            assert!(Message::decode(&f[4..]).is_ok());
        }
        // The quirky second connection: `03 00` and no length; read as a frame it is garbage, which
        // the relay drops (no allocation has an active destination for it).
        let q = vector(&format!("libnice-{mode}-tcp-allocate-1-pt03-nolength.hex"));
        assert_eq!(msturn::tcp_frame(&q), Ok(Some((msturn::FRAME_DATA, 4 + 3))));
        let hello = vector(&format!("libnice-{mode}-tls-pseudotls-clienthello.hex"));
        assert_eq!(msturn::pseudo_tls_client_hello(&hello), Some(true));
    }
    let r = vector("listener-msturn-401-tcp-framed.hex");
    assert_eq!(msturn::tcp_frame(&r), Ok(Some((msturn::FRAME_CONTROL, r.len()))));
    let d = Message::decode(&r[4..]).unwrap();
    assert_eq!(d.error_code().unwrap().unwrap().0, 401);
}
