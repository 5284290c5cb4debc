//! The text a message signature covers (MS-SIP §3.1.4.2 for version 2 and earlier, MS-SIPAE for version 3
//! and later): `<item>` after `<item>`, each value exactly as it appears in the message.
//!
//! Version 3 and later: scheme, rand, num, realm, targetname, Call-ID, CSeq number, CSeq method, From URI,
//! From tag, To URI, To tag, P-Asserted-Identity (else P-Preferred-Identity) SIP URI, its tel URI, Expires,
//! and for responses the status code. Before version 3: scheme, rand, num, realm, targetname, Call-ID,
//! CSeq number, CSeq method, From URI, From tag, To tag, Expires, and for responses the status code.
//! Absent values are `<>`.

use vienna_sip::header::split_comma;
use vienna_sip::{HeaderName, Headers, Message};

/// The security-association part of the signed text: who signs and with which numbers.
#[derive(Clone, Copy, Debug)]
pub struct SignedBy<'a> {
    /// `NTLM`.
    pub scheme: &'a str,
    /// `crand` (client) or `srand` (server), as written in the header.
    pub rand: &'a str,
    /// `cnum` or `snum`, as written in the header.
    pub num: &'a str,
    /// `realm`.
    pub realm: &'a str,
    /// `targetname`.
    pub targetname: &'a str,
    /// The association's `version` (absent: 2).
    pub version: u32,
}

/// The signed text of `message`.
pub fn signing_text(by: &SignedBy<'_>, message: &Message) -> String {
    let (headers, status) = match message {
        Message::Request(r) => (&r.headers, None),
        Message::Response(r) => (&r.headers, Some(r.status)),
    };
    let first = |name: &HeaderName| headers.get(name).map(str::trim).unwrap_or("");
    let (cseq_num, cseq_method) = first(&HeaderName::CSeq).split_once(char::is_whitespace).unwrap_or(("", ""));
    let from = first(&HeaderName::From);
    let to = first(&HeaderName::To);
    let mut items: Vec<&str> = vec![
        by.scheme,
        by.rand,
        by.num,
        by.realm,
        by.targetname,
        first(&HeaderName::CallId),
        cseq_num.trim(),
        cseq_method.trim(),
        addr_spec(from),
        tag(from),
    ];
    if by.version >= 3 {
        let (sip, tel) = asserted_identity(headers);
        items.extend([addr_spec(to), tag(to), sip, tel]);
    } else {
        items.push(tag(to));
    }
    items.push(first(&HeaderName::Expires));
    let code = status.map(|s| s.to_string());
    if let Some(code) = &code {
        items.push(code);
    }
    let mut out = String::with_capacity(items.iter().map(|i| i.len() + 2).sum());
    for item in items {
        out.push('<');
        out.push_str(item);
        out.push('>');
    }
    out
}

/// The addr-spec of a name-addr or addr-spec header value: what is inside `<>`, else up to the first `;`.
fn addr_spec(value: &str) -> &str {
    match (value.find('<'), value.find('>')) {
        (Some(open), Some(close)) if open < close => &value[open + 1..close],
        _ => value.split(';').next().unwrap_or("").trim(),
    }
}

/// The `tag` parameter of a From or To value (after the addr-spec), or empty.
fn tag(value: &str) -> &str {
    let params = value.rfind('>').map_or(value, |close| &value[close + 1..]);
    params
        .split(';')
        .filter_map(|p| p.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("tag"))
        .map_or("", |(_, v)| v.trim())
}

/// The SIP and the tel URI of P-Asserted-Identity, or if absent of P-Preferred-Identity.
fn asserted_identity(headers: &Headers) -> (&str, &str) {
    fn named<'h>(headers: &'h Headers, name: &'static str) -> impl Iterator<Item = &'h str> {
        headers.0.iter().filter(move |h| h.name.as_str().eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
    }
    let header = if named(headers, "P-Asserted-Identity").next().is_some() {
        "P-Asserted-Identity"
    } else {
        "P-Preferred-Identity"
    };
    let (mut sip, mut tel) = ("", "");
    for value in named(headers, header).flat_map(split_comma) {
        let uri = addr_spec(value);
        let scheme = uri.split(':').next().unwrap_or("");
        if sip.is_empty() && (scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
            sip = uri;
        } else if tel.is_empty() && scheme.eq_ignore_ascii_case("tel") {
            tel = uri;
        }
    }
    (sip, tel)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by(version: u32) -> SignedBy<'static> {
        SignedBy {
            scheme: "NTLM",
            rand: "3f2a1b0c",
            num: "5",
            realm: "SIP Communications Service",
            targetname: "fe01.contoso.com",
            version,
        }
    }

    #[test]
    fn request_and_response_layouts() {
        let req = Message::parse(
            b"SUBSCRIBE sip:alice@contoso.com SIP/2.0\r\nVia: SIP/2.0/TLS 10.0.0.5:1234;branch=z9hG4bK1\r\n\
              From: \"Alice\" <sip:alice@contoso.com>;tag=tag1;epid=01\r\nTo: <sip:alice@contoso.com>;tag=tag2\r\n\
              Call-ID: callid\r\nCSeq: 12 SUBSCRIBE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            signing_text(&by(4), &req),
            "<NTLM><3f2a1b0c><5><SIP Communications Service><fe01.contoso.com><callid><12><SUBSCRIBE>\
             <sip:alice@contoso.com><tag1><sip:alice@contoso.com><tag2><><><>"
        );
        assert_eq!(
            signing_text(&by(2), &req),
            "<NTLM><3f2a1b0c><5><SIP Communications Service><fe01.contoso.com><callid><12><SUBSCRIBE>\
             <sip:alice@contoso.com><tag1><tag2><>"
        );
        let resp = Message::parse(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS 10.0.0.5:1234;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=x\r\n\
              To: <sip:a@b>;tag=y\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nExpires: 7200\r\n\
              P-Asserted-Identity: \"A\" <sip:a@b>, <tel:+123>\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            signing_text(&by(3), &resp),
            "<NTLM><3f2a1b0c><5><SIP Communications Service><fe01.contoso.com><c><1><REGISTER><sip:a@b><x>\
             <sip:a@b><y><sip:a@b><tel:+123><7200><200>"
        );
    }

    #[test]
    fn value_pieces() {
        assert_eq!(addr_spec("sip:a@b;tag=1"), "sip:a@b");
        assert_eq!(addr_spec("\"A;B\" <sip:a@b;transport=tcp>;tag=1"), "sip:a@b;transport=tcp");
        assert_eq!(tag("<sip:a@b;tag=uri-param>;epid=1;tag=t1"), "t1");
        assert_eq!(tag("<sip:a@b>"), "");
        assert_eq!(tag(""), "");
    }
}
