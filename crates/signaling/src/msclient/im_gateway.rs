//! The IM-session gateway between Microsoft clients and standard SIP clients: its pure parts and its state.
//!
//! Microsoft clients (Communicator, Lync, SIPE) start every instant-message conversation with an INVITE
//! whose SDP offers only `m=message <port> sip null` (`m=x-ms-message` for LCS 2005), carry the first
//! message in the INVITE's `ms-text-format` header (`text/plain; charset=UTF-8;msgr=...;ms-body=<base64>`)
//! and send the later ones as MESSAGE requests in the dialog; `Supported: ms-text-format` in the 200 OK
//! tells them the first message was taken (they would send it again otherwise). Standard clients (baresip
//! 1.0) answer such an INVITE 488, and speak page-mode MESSAGE (RFC 3428) instead.
//!
//! When every branch of such an INVITE failed and the answer upstream would be 488, 415 or 606, the core
//! ([`crate::Core`], `core/imgw.rs`) takes the session itself: it delivers the first message as a
//! page-mode MESSAGE (`text/plain`, From the caller's address of record, to every contact of the callee)
//! and answers the INVITE 200 OK (SDP answer with `m=message`, its own Contact, `Supported:
//! ms-text-format`) once one contact took it, or with the delivery's failure otherwise; every MESSAGE in
//! that dialog becomes a page-mode MESSAGE the same way and is answered with the callee's outcome; BYE ends
//! it. Replies come back as page-mode MESSAGEs to the caller, which Microsoft clients show in the same
//! conversation.
//!
//! Left out on purpose: other bodies than `text/plain` (HTML, RTF, `multipart/alternative`, file transfer
//! invitations get 415), typing notifications (INFO is answered 200 and goes nowhere), multiparty
//! sessions, re-INVITEs (488), and IMDN. This is not a standard: the format of `ms-text-format` is
//! taken from SIPE (UNCONFIRMED against Lync).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use vienna_sip::transaction::{Peer, TransactionId};
use vienna_sip::{Request, Response, Uri};

/// The URI parameter of the gateway's Contact: in-dialog requests carrying it are the gateway's (481 when
/// the session is gone).
pub const CONTACT_PARAM: &str = "ms-imgw";
/// The one body type delivered.
pub const TEXT_PLAIN: &str = "text/plain; charset=UTF-8";
/// Most bytes of one message delivered (larger ones get 413).
pub const MAX_TEXT: usize = 64 * 1024;

/// Whether an INVITE body offers an IM session only: an SDP whose every media line (at least one) is
/// `message` or `x-ms-message` over the `sip` protocol (Microsoft's session IM; RFC 4975 MSRP, with
/// `TCP/MSRP`, is not this).
pub fn is_im_offer(content_type: Option<&str>, body: &[u8]) -> bool {
    let ctype = content_type.unwrap_or("").split(';').next().unwrap_or("").trim();
    if !ctype.eq_ignore_ascii_case("application/sdp") {
        return false;
    }
    let Ok(text) = std::str::from_utf8(body) else { return false };
    let mut media = 0;
    for line in text.lines() {
        let Some(m) = line.trim_end().strip_prefix("m=") else { continue };
        media += 1;
        let mut fields = m.split_ascii_whitespace();
        let kind = fields.next().unwrap_or("");
        let _port = fields.next();
        let proto = fields.next().unwrap_or("");
        let im = kind.eq_ignore_ascii_case("message") || kind.eq_ignore_ascii_case("x-ms-message");
        if !(im && proto.eq_ignore_ascii_case("sip")) {
            return false;
        }
    }
    media > 0
}

/// The first message of an `ms-text-format` header value, when it is plain text: the `ms-body` parameter
/// decoded from base64 (padding optional) as UTF-8. `None` for other types (HTML, file transfer
/// invitations), a missing or undecodable body, or one over [`MAX_TEXT`].
pub fn first_message(ms_text_format: &str) -> Option<String> {
    let mut parts = ms_text_format.split(';');
    let mime = parts.next()?.trim();
    if !mime.eq_ignore_ascii_case("text/plain") {
        return None;
    }
    let b64 = parts.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim().eq_ignore_ascii_case("ms-body").then(|| value.trim().trim_matches('"'))
    })?;
    if b64.len() > MAX_TEXT * 4 / 3 + 4 {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64.trim_end_matches('=')))
        .ok()?;
    String::from_utf8(bytes).ok().filter(|t| !t.is_empty())
}

/// Whether a MESSAGE's Content-Type is one the gateway delivers (`text/plain`, any parameters: SIPE adds
/// `msgr=` with its font settings, which a standard client does not know and is dropped).
pub fn deliverable(content_type: Option<&str>) -> bool {
    content_type.unwrap_or("text/plain").split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("text/plain")
}

/// The SDP answer of the gateway's 200 OK: one `m=message` line naming `callee`, on our address.
pub fn sdp_answer(addr: std::net::SocketAddr, callee: &str, legacy: bool) -> String {
    let (family, ip) = match addr.ip() {
        std::net::IpAddr::V4(ip) => ("IP4", ip.to_string()),
        std::net::IpAddr::V6(ip) => ("IP6", ip.to_string()),
    };
    let kind = if legacy { "x-ms-message" } else { "message" };
    format!(
        "v=0\r\no=- 0 0 IN {family} {ip}\r\ns=session\r\nc=IN {family} {ip}\r\nt=0 0\r\nm={kind} {} sip {callee}\r\n\
         a=accept-types:text/plain\r\n",
        addr.port()
    )
}

/// Settings of the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImGatewayConfig {
    /// Take IM sessions standard clients refuse.
    pub enabled: bool,
    /// Most sessions at once; beyond, the caller gets the refusal as before.
    pub max_sessions: usize,
    /// A session with no request for this long is ended (BYE to the caller).
    pub idle: Duration,
}

impl Default for ImGatewayConfig {
    fn default() -> Self {
        ImGatewayConfig { enabled: true, max_sessions: 10_000, idle: Duration::from_secs(15 * 60) }
    }
}

/// Counters of the gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImGatewayCounters {
    /// IM sessions taken by the gateway (answered 200).
    pub sessions: u64,
    /// Refused INVITEs left to their refusal because the session table was full.
    pub sessions_refused_full: u64,
    /// Messages delivered as page-mode MESSAGE (a contact answered 2xx), the first ones included.
    pub delivered: u64,
    /// Messages no contact took (the caller got the failure).
    pub delivery_failures: u64,
    /// In-dialog requests refused: no such session (481), another connection (403), a body type other
    /// than `text/plain` (415), other methods (405, 488 for re-INVITE).
    pub refused: u64,
    /// Sessions ended by the caller's BYE.
    pub byes: u64,
    /// Sessions ended for idleness (BYE sent) or a 2xx never acknowledged.
    pub expired: u64,
    /// Sessions alive now (a gauge, filled in when counters are read).
    pub live: u64,
}

/// The dialog of one gateway session, from the gateway's (UAS) side.
#[derive(Clone, Debug)]
pub struct Session {
    /// The caller (address of record).
    pub caller: String,
    /// The callee (address of record).
    pub callee: String,
    /// From of our requests (the INVITE's To, with our tag).
    pub local: String,
    /// To of our requests (the INVITE's From).
    pub remote: String,
    /// Request-URI of our requests (the caller's Contact).
    pub remote_target: Uri,
    /// Route set of our requests (the INVITE's Record-Route, in order).
    pub route: Vec<String>,
    /// Where the caller is (its connection on TCP and TLS); in-dialog requests come from there.
    pub peer: Peer,
    /// Our CSeq for requests in the dialog.
    pub cseq: u32,
    /// The caller's latest request (idle expiry counts from it).
    pub last_active: Instant,
}

/// A 2xx kept for retransmission until its ACK (unreliable transports, RFC 3261 §13.3.1.4).
#[derive(Clone, Debug)]
pub struct Unacked {
    /// The INVITE's server transaction.
    pub tx: TransactionId,
    /// The 2xx.
    pub response: Response,
    /// Next retransmission.
    pub at: Instant,
    /// Current interval (doubles up to T2).
    pub interval: Duration,
    /// When the session is dropped for want of an ACK.
    pub give_up: Instant,
}

/// Who is waiting for the outcome of a delivery.
#[derive(Debug)]
pub enum Waiting {
    /// The INVITE (its first message): answered 200 and the session opens on success.
    Invite {
        /// Server transaction of the INVITE.
        server: TransactionId,
        /// The INVITE.
        request: Box<Request>,
        /// Our tag for the dialog.
        tag: String,
        /// The caller (address of record).
        caller: String,
        /// The callee.
        callee: String,
        /// The caller's connection.
        peer: Peer,
    },
    /// The INVITE was cancelled while its first message was on its way: the INVITE got 487 and the
    /// outcome goes nowhere (a message already sent cannot be recalled).
    Cancelled,
    /// A MESSAGE in session `key`.
    Message {
        /// Server transaction of the MESSAGE.
        server: TransactionId,
        /// The MESSAGE.
        request: Box<Request>,
    },
}

/// One message on its way to the callee's contacts.
#[derive(Debug)]
pub struct Delivery {
    /// Who gets the outcome.
    pub waiting: Waiting,
    /// Branches without a final response.
    pub pending: usize,
    /// Best failure so far (lowest status, 408/480/503 only when nothing else came).
    pub best: Option<u16>,
}

/// Key of a session: (Call-ID, our tag).
pub type SessionKey = (String, String);

/// The gateway's state in the core.
#[derive(Debug, Default)]
pub struct ImGateway {
    /// Settings.
    pub config: ImGatewayConfig,
    /// Open sessions.
    pub sessions: HashMap<SessionKey, Session>,
    /// 2xx waiting for their ACK.
    pub unacked: HashMap<SessionKey, Unacked>,
    /// Deliveries in flight by id.
    pub deliveries: HashMap<u64, Delivery>,
    /// Client transaction of a page-mode MESSAGE → its delivery.
    pub branches: HashMap<TransactionId, u64>,
    /// Next delivery id.
    pub next: u64,
    /// When idle sessions are next looked for.
    pub next_idle_check: Option<Instant>,
    /// Counters.
    pub counters: ImGatewayCounters,
}

impl ImGateway {
    /// A gateway with `config`.
    pub fn new(config: ImGatewayConfig) -> Self {
        ImGateway { config, ..Default::default() }
    }

    /// Counters with the live gauge filled in.
    pub fn counters(&self) -> ImGatewayCounters {
        let mut c = self.counters.clone();
        c.live = self.sessions.len() as u64;
        c
    }

    /// Whether a new session fits (sessions and deliveries waiting to open one).
    pub fn has_room(&self) -> bool {
        let opening = self.deliveries.values().filter(|d| matches!(d.waiting, Waiting::Invite { .. })).count();
        self.sessions.len() + opening < self.config.max_sessions
    }

    /// Records a failure `status` of a branch of delivery `id`; `Some(best)` when it was the last branch
    /// (a delivery leaves the table once answered, so later branches find nothing).
    pub fn branch_failed(&mut self, id: u64, status: u16) -> Option<u16> {
        fn rank(s: u16) -> u32 {
            match s {
                408 | 480 | 503 => 10_000 + u32::from(s),
                s => u32::from(s),
            }
        }
        let d = self.deliveries.get_mut(&id)?;
        d.pending = d.pending.saturating_sub(1);
        d.best = Some(match d.best {
            Some(b) if rank(b) <= rank(status) => b,
            _ => status,
        });
        (d.pending == 0).then(|| d.best.unwrap_or(480))
    }

    /// The next time the gateway needs the core's timer: 2xx retransmissions and ACK deadlines.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.unacked.values().map(|u| u.at.min(u.give_up)).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn im_offers_are_message_over_sip_only() {
        let sipe = b"v=0\r\no=- 0 0 IN IP4 10.0.0.5\r\ns=session\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
m=message 5061 sip null\r\na=accept-types:text/plain\r\n";
        assert!(is_im_offer(Some("application/sdp"), sipe));
        assert!(is_im_offer(Some("Application/SDP; charset=x"), b"m=x-ms-message 5060 sip null\n"));
        assert!(!is_im_offer(Some("application/sdp"), b"m=message 5060 TCP/MSRP *\n"));
        assert!(!is_im_offer(Some("application/sdp"), b"m=message 5060 sip null\nm=audio 4000 RTP/AVP 0\n"));
        assert!(!is_im_offer(Some("application/sdp"), b"v=0\n"));
        assert!(!is_im_offer(Some("text/plain"), b"m=message 5060 sip null\n"));
        assert!(!is_im_offer(None, &[0xff, 0xfe]));
    }

    #[test]
    fn the_first_message_is_the_decoded_ms_body() {
        // As SIPE writes it: type, charset, msgr (font), ms-body.
        let h = "text/plain; charset=UTF-8;msgr=WAAtAE0ATQBTAC0ASQBNAC0ARgBvAHIAbQBhAHQAOgAgAEYATgA9AA;ms-body=aGVsbG8gY2Fyb2wg4pi6";
        assert_eq!(first_message(h).as_deref(), Some("hello carol \u{263a}"));
        assert_eq!(first_message("text/plain;ms-body=aGk").as_deref(), Some("hi"), "padding is optional");
        assert_eq!(first_message("text/html; ms-body=aGk="), None);
        assert_eq!(first_message("text/plain; charset=UTF-8"), None);
        assert_eq!(first_message("text/plain; ms-body=!!!"), None);
        assert_eq!(first_message("text/plain; ms-body=//79"), None, "not UTF-8");
        assert_eq!(first_message(""), None);
    }

    #[test]
    fn plain_text_is_deliverable_and_the_answer_names_the_callee() {
        assert!(deliverable(Some("text/plain; charset=UTF-8;msgr=WAAt")));
        assert!(deliverable(None));
        assert!(!deliverable(Some("text/html")));
        assert!(!deliverable(Some("application/im-iscomposing+xml")));
        let sdp = sdp_answer("127.0.0.1:5061".parse().unwrap(), "sip:carol@example.com", false);
        assert!(sdp.contains("m=message 5061 sip sip:carol@example.com\r\n"), "{sdp}");
        assert!(is_im_offer(Some("application/sdp"), sdp.as_bytes()));
    }

    #[test]
    fn the_best_failure_prefers_a_telling_status() {
        let mut g = ImGateway::new(ImGatewayConfig::default());
        let waiting = Waiting::Message {
            server: TransactionId(1),
            request: Box::new(Request::new(vienna_sip::Method::Message, Uri::parse("sip:a@b").unwrap())),
        };
        g.deliveries.insert(1, Delivery { waiting, pending: 2, best: None });
        assert_eq!(g.branch_failed(1, 408), None);
        assert_eq!(g.branch_failed(1, 486), Some(486));
        assert_eq!(g.branch_failed(2, 486), None, "unknown delivery");
    }
}
