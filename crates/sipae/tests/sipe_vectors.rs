//! The NTLM sign-in of a real client, SIPE 1.25 (pidgin-sipe), captured byte for byte
//! (testvectors/sipe/): its AUTHENTICATE for alice@example.test with password `secret`, answering the
//! CHALLENGE with server challenge 0123456789abcdef, verified here, and the signature of that REGISTER.

use base64::Engine as _;
use md4::{Digest, Md4};
use vienna_sip::{HeaderName, Message};
use vienna_sipae::ntlm::{self, Authenticate, SIPAE_SEQUENCE};
use vienna_sipae::{NtlmParams, SignedBy, signing_text};

fn vector(name: &str) -> Vec<u8> {
    let path = format!("{}/../../testvectors/sipe/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let hex: String = text.lines().filter(|l| !l.starts_with('#')).collect();
    hex::decode(hex.trim()).unwrap()
}

fn nt_hash(password: &str) -> [u8; 16] {
    let utf16: Vec<u8> = password.encode_utf16().flat_map(u16::to_le_bytes).collect();
    Md4::digest(&utf16).into()
}

fn authorization(message: &Message) -> NtlmParams {
    let Message::Request(r) = message else { panic!("a request") };
    NtlmParams::parse(r.headers.get(&HeaderName::Authorization).unwrap()).unwrap()
}

const CHALLENGE: [u8; 8] = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];

#[test]
fn sipe_authenticate_verifies_with_the_right_password_only() {
    let register = Message::parse(&vector("sipe-tcp-register-3-ntlm-authenticate.txt")).unwrap();
    let params = authorization(&register);
    let token = base64::engine::general_purpose::STANDARD.decode(params.gssapi_data.unwrap()).unwrap();
    let auth = Authenticate::parse(&token).unwrap();
    assert_eq!(auth.user, "alice@example.test");
    assert_eq!(auth.domain, "");
    assert_eq!(auth.workstation, "VM");
    assert_eq!(auth.flags, 0x6298_8255);
    assert!(ntlm::verify(&auth, &nt_hash("secret"), &CHALLENGE).is_ok());
    assert_eq!(ntlm::verify(&auth, &nt_hash("Secret"), &CHALLENGE), Err(vienna_sipae::NtlmError::WrongPassword));
    let mut other = CHALLENGE;
    other[0] ^= 1;
    assert!(ntlm::verify(&auth, &nt_hash("secret"), &other).is_err(), "bound to the server challenge");
}

#[test]
fn sipe_register_signature_verifies() {
    let register = Message::parse(&vector("sipe-tcp-register-3-ntlm-authenticate.txt")).unwrap();
    let params = authorization(&register);
    let token = base64::engine::general_purpose::STANDARD.decode(params.gssapi_data.as_ref().unwrap()).unwrap();
    let keys = ntlm::verify(&Authenticate::parse(&token).unwrap(), &nt_hash("secret"), &CHALLENGE).unwrap();
    let cnum = params.cnum.unwrap().to_string();
    let by = SignedBy {
        scheme: "NTLM",
        rand: params.crand.as_deref().unwrap(),
        num: &cnum,
        realm: params.realm.as_deref().unwrap(),
        targetname: params.targetname.as_deref().unwrap(),
        version: params.version.unwrap(),
    };
    let text = signing_text(&by, &register);
    assert_eq!(
        text,
        "<NTLM><0c449822><1><SIP Communications Service><sip.example.test><EB5CgA83Da92E5i7D21mB978t1166bC5EDxBF03x>\
         <3><REGISTER><sip:alice@example.test><4955950348><sip:alice@example.test><><><><>"
    );
    let sig = ntlm::signature(keys.flags, &keys.client_sign, &keys.client_seal, SIPAE_SEQUENCE, text.as_bytes());
    assert_eq!(hex::encode_upper(sig), params.response.unwrap());
}
