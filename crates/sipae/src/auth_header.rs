//! The MS-SIPAE authentication headers (MS-SIPAE §2.2): `WWW-Authenticate`/`Proxy-Authenticate`
//! challenges, `Authorization`/`Proxy-Authorization` credentials and signatures, and
//! `Authentication-Info`/`Proxy-Authentication-Info` server signatures, for the NTLM scheme.
//!
//! The grammar is SIP's `challenge`/`credentials` (parsed by [`vienna_sip::digest::parse_auth`]); the
//! parameters are `realm`, `targetname`, `version`, `opaque`, `gssapi-data`, `qop`, `crand`, `cnum`,
//! `response` (client) and `rspauth`, `srand`, `snum` (server). Kerberos and TLS-DSK are not offered.

use vienna_sip::digest::{get, parse_auth};
use vienna_sip::header::quote;

use crate::error::HeaderError;

/// The realm every Microsoft server uses (MS-SIPAE §3.2.1 examples; clients treat it as opaque).
pub const DEFAULT_REALM: &str = "SIP Communications Service";

/// The parameters of one NTLM authentication header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NtlmParams {
    /// `realm`.
    pub realm: Option<String>,
    /// `targetname` (the server's FQDN for NTLM).
    pub targetname: Option<String>,
    /// `version` (3 or 4; absent for the LCS 2005 form).
    pub version: Option<u32>,
    /// `opaque`: names the security association.
    pub opaque: Option<String>,
    /// `gssapi-data`: the base64 NTLM token (empty in the first Authorization of datagram NTLM).
    pub gssapi_data: Option<String>,
    /// `qop`.
    pub qop: Option<String>,
    /// `crand`: the client's random for its signature.
    pub crand: Option<String>,
    /// `cnum`: the client's message number.
    pub cnum: Option<u32>,
    /// `response`: the client's signature (32 hex digits).
    pub response: Option<String>,
    /// `rspauth`: the server's signature.
    pub rspauth: Option<String>,
    /// `srand`: the server's random.
    pub srand: Option<String>,
    /// `snum`: the server's message number.
    pub snum: Option<u32>,
}

impl NtlmParams {
    /// Parses a header value whose scheme must be `NTLM`.
    pub fn parse(value: &str) -> Result<NtlmParams, HeaderError> {
        let (scheme, p) = parse_auth(value).map_err(HeaderError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("NTLM") {
            return Err(HeaderError::Scheme(scheme.to_owned()));
        }
        let text = |n: &str| get(&p, n).map(str::to_owned);
        let number = |n: &str| -> Result<Option<u32>, HeaderError> {
            get(&p, n)
                .map(|v| v.parse().map_err(|_| HeaderError::Malformed("a number parameter is not a number")))
                .transpose()
        };
        Ok(NtlmParams {
            realm: text("realm"),
            targetname: text("targetname"),
            version: number("version")?,
            opaque: text("opaque"),
            gssapi_data: text("gssapi-data"),
            qop: text("qop"),
            crand: text("crand"),
            cnum: number("cnum")?,
            response: text("response"),
            rspauth: text("rspauth"),
            srand: text("srand"),
            snum: number("snum")?,
        })
    }

    /// Whether `value` is an NTLM header (any other scheme, e.g. Digest, is not).
    pub fn is_ntlm(value: &str) -> bool {
        value.trim_start().get(..4).is_some_and(|s| s.eq_ignore_ascii_case("NTLM"))
            && value.trim_start()[4..].starts_with([' ', '\t'])
    }

    /// The header value, `NTLM name="value", ...`, parameters in the order Microsoft servers send them.
    pub fn to_header(&self) -> String {
        let mut out = String::from("NTLM");
        let mut sep = " ";
        let mut push = |name: &str, value: String| {
            out.push_str(sep);
            out.push_str(name);
            out.push('=');
            out.push_str(&value);
            sep = ", ";
        };
        let q = |v: &Option<String>| v.as_deref().map(quote);
        for (name, value) in [
            ("rspauth", q(&self.rspauth)),
            ("srand", q(&self.srand)),
            ("snum", self.snum.map(|n| quote(&n.to_string()))),
            ("opaque", q(&self.opaque)),
            ("qop", q(&self.qop)),
            ("crand", q(&self.crand)),
            ("cnum", self.cnum.map(|n| quote(&n.to_string()))),
            ("response", q(&self.response)),
            ("gssapi-data", q(&self.gssapi_data)),
            ("targetname", q(&self.targetname)),
            ("realm", q(&self.realm)),
            ("version", self.version.map(|v| v.to_string())),
        ] {
            if let Some(v) = value {
                push(name, v);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sipe_authorization_parses() {
        let v = r#"NTLM qop="auth", opaque="ABCDEF01", realm="SIP Communications Service", targetname="sip.example.test", gssapi-data="TlRMTVNTUAAD", version=4, crand="0c449822", cnum="1", response="01000000DB4C25D9E0D07DB464000000""#;
        assert!(NtlmParams::is_ntlm(v));
        let p = NtlmParams::parse(v).unwrap();
        assert_eq!(p.opaque.as_deref(), Some("ABCDEF01"));
        assert_eq!(p.realm.as_deref(), Some(DEFAULT_REALM));
        assert_eq!(p.version, Some(4));
        assert_eq!(p.cnum, Some(1));
        assert_eq!(p.crand.as_deref(), Some("0c449822"));
        assert_eq!(p.gssapi_data.as_deref(), Some("TlRMTVNTUAAD"));
        let again = NtlmParams::parse(&p.to_header()).unwrap();
        assert_eq!(again, p);
    }

    #[test]
    fn other_schemes_and_garbage_are_errors() {
        assert!(!NtlmParams::is_ntlm(r#"Digest realm="x""#));
        assert!(!NtlmParams::is_ntlm("NTLMv2 a=b"));
        assert!(matches!(NtlmParams::parse(r#"Digest realm="x""#), Err(HeaderError::Scheme(_))));
        assert!(NtlmParams::parse(r#"NTLM realm="x"#).is_err());
        assert!(NtlmParams::parse("NTLM cnum=abc").is_err());
        assert_eq!(NtlmParams::parse("NTLM").unwrap(), NtlmParams::default());
    }
}
