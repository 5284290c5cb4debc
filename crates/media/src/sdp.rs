//! SDP (RFC 8866) parsing and the MCU's answer (RFC 3264 offer/answer) for one audio stream.
//!
//! The parser reads what an audio answer needs: `c=`, `m=`, `a=rtpmap`, `a=fmtp`, `a=ptime`,
//! `a=rtcp-mux` (RFC 5761), `a=rtcp` (RFC 3605), the direction attributes, `a=ice-ufrag`, `a=ice-pwd`,
//! `a=ice-lite`, `a=candidate` (RFC 8839), `a=crypto` and `a=cryptoscale` (RFC 4568, MS-SDPEXT; kept as
//! text for the SRTP negotiation of `vienna-srtp`), MS-SDP's `a=encryption` and `a=ssrc` (RFC 5576); other
//! lines are kept out. It is bounded ([`MAX_SDP`] bytes, [`MAX_MEDIA`] m-lines) and never panics.
//!
//! The answer accepts the first audio m-line with RTP (`RTP/AVP`, `RTP/AVPF`, `RTP/SAVP`, `RTP/SAVPF`;
//! an SRTP profile only when the caller negotiated a key and hands its `a=crypto` line in
//! [`AnswerConfig::crypto`]; Microsoft's optional form, `RTP/AVP` with `a=crypto`, is answered in the
//! profile offered, with or without the key line): it takes the
//! first offered codec it has (Opus `opus/48000/2`, RFC 7587; PCMU; PCMA; map by name, static
//! payload types 0 and 8 also without rtpmap), telephone-event (RFC 4733) at that codec's clock rate,
//! asks for 20 ms packets, mirrors the direction, takes rtcp-mux when offered (and otherwise names the
//! same port with `a=rtcp`, since the MCU has one port), and with ICE in the offer answers `a=ice-lite`
//! with credentials and one host candidate. Every other m-line is refused with port 0.
//!
//! Left out: DTLS-SRTP (`UDP/TLS/RTP/SAVPF` is refused), G.722 (offered G.722 is skipped), IPv6 candidates and
//! MS-SDPEXT attributes (`a=x-ssrc-range`, `a=x-candidate-ipv6`, ...), which are ignored.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

use crate::Error;
use crate::codec::CodecKind;
use crate::ice::IceCredentials;

/// Largest SDP body accepted.
pub const MAX_SDP: usize = 64 * 1024;
/// Most m-lines accepted.
pub const MAX_MEDIA: usize = 16;
/// Most `a=crypto`/`a=cryptoscale` lines kept per m-line.
pub const MAX_CRYPTO: usize = 16;

/// Media direction (RFC 8866 §6.7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Direction {
    /// Send and receive.
    #[default]
    SendRecv,
    /// Send only.
    SendOnly,
    /// Receive only.
    RecvOnly,
    /// Neither.
    Inactive,
}

impl Direction {
    /// The answer's direction for an offer with this one.
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Whether the side with this direction sends.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the side with this direction receives.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// One `a=rtpmap`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpMap {
    /// Payload type.
    pub payload_type: u8,
    /// Encoding name as written.
    pub name: String,
    /// Clock rate.
    pub clock_rate: u32,
    /// Channels (1 if absent).
    pub channels: u8,
}

/// One `a=candidate` (the parts an ICE-lite answerer uses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Component (1 RTP, 2 RTCP).
    pub component: u16,
    /// Transport as written (`UDP`, `TCP-ACT`, ...).
    pub transport: String,
    /// Priority.
    pub priority: u32,
    /// Address.
    pub address: SocketAddr,
    /// Type (`host`, `srflx`, `relay`, ...).
    pub typ: String,
}

/// One m-line with its attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MediaDescription {
    /// `audio`, `video`, ...
    pub media: String,
    /// Port (0: refused/disabled).
    pub port: u16,
    /// Transport protocol (`RTP/AVP`, ...).
    pub proto: String,
    /// Formats (payload types for RTP).
    pub formats: Vec<u8>,
    /// Media-level `c=` address.
    pub connection: Option<IpAddr>,
    /// `a=rtpmap` lines.
    pub rtpmaps: Vec<RtpMap>,
    /// `a=fmtp` lines: payload type and parameters.
    pub fmtps: Vec<(u8, String)>,
    /// `a=ptime`.
    pub ptime: Option<u32>,
    /// `a=rtcp-mux`.
    pub rtcp_mux: bool,
    /// `a=rtcp` port.
    pub rtcp_port: Option<u16>,
    /// Direction (session-level default applied).
    pub direction: Option<Direction>,
    /// Media-level ice-ufrag.
    pub ice_ufrag: Option<String>,
    /// Media-level ice-pwd.
    pub ice_pwd: Option<String>,
    /// Candidates.
    pub candidates: Vec<Candidate>,
    /// `a=crypto` and `a=cryptoscale` lines as `(name, value)`, in offer order (at most [`MAX_CRYPTO`]).
    pub crypto: Vec<(String, String)>,
    /// MS-SDP `a=encryption:` value (`required`, `optional`, `rejected`), media level.
    pub encryption: Option<String>,
    /// First `a=ssrc` SSRC.
    pub ssrc: Option<u32>,
}

/// A parsed session description.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionDescription {
    /// Session-level `c=` address.
    pub connection: Option<IpAddr>,
    /// Session-level ice-ufrag.
    pub ice_ufrag: Option<String>,
    /// Session-level ice-pwd.
    pub ice_pwd: Option<String>,
    /// `a=ice-lite`.
    pub ice_lite: bool,
    /// Session-level direction.
    pub direction: Option<Direction>,
    /// Session-level MS-SDP `a=encryption:` value.
    pub encryption: Option<String>,
    /// m-lines in order.
    pub media: Vec<MediaDescription>,
}

fn bad(what: &'static str) -> Error {
    Error::Sdp(what)
}

fn parse_connection(v: &str) -> Result<Option<IpAddr>, Error> {
    let mut f = v.split_ascii_whitespace();
    let (Some("IN"), Some(_family), Some(addr)) = (f.next(), f.next(), f.next()) else {
        return Err(bad("malformed c= line"));
    };
    // multicast TTL suffixes ("/127") are cut off; a name that is not an address is not usable here
    Ok(addr.split('/').next().and_then(|a| a.parse().ok()))
}

impl SessionDescription {
    /// Parses an SDP body.
    pub fn parse(text: &str) -> Result<SessionDescription, Error> {
        if text.len() > MAX_SDP {
            return Err(bad("SDP too large"));
        }
        let mut sdp = SessionDescription::default();
        let mut saw_version = false;
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(bad("line without '='"));
            };
            if key.len() != 1 {
                return Err(bad("bad line type"));
            }
            match (key, sdp.media.last_mut()) {
                ("v", _) => {
                    if value != "0" {
                        return Err(bad("unsupported SDP version"));
                    }
                    saw_version = true;
                }
                ("m", _) => {
                    if sdp.media.len() >= MAX_MEDIA {
                        return Err(bad("too many m-lines"));
                    }
                    let mut f = value.split_ascii_whitespace();
                    let media = f.next().ok_or(bad("malformed m= line"))?.to_owned();
                    let port = f.next().and_then(|p| p.split('/').next()).and_then(|p| p.parse().ok());
                    let port = port.ok_or(bad("bad m= port"))?;
                    let proto = f.next().ok_or(bad("malformed m= line"))?.to_owned();
                    let formats = f.filter_map(|p| p.parse::<u8>().ok()).filter(|p| *p < 128).collect();
                    sdp.media.push(MediaDescription { media, port, proto, formats, ..Default::default() });
                }
                ("c", None) => sdp.connection = parse_connection(value)?,
                ("c", Some(m)) => m.connection = parse_connection(value)?,
                ("a", Some(m)) => media_attribute(m, value),
                ("a", None) => sdp.session_attribute(value),
                _ => {}
            }
        }
        if !saw_version {
            return Err(bad("no v= line"));
        }
        Ok(sdp)
    }

    fn session_attribute(&mut self, value: &str) {
        let (name, arg) = value.split_once(':').unwrap_or((value, ""));
        match name {
            "ice-ufrag" => self.ice_ufrag = Some(arg.to_owned()),
            "ice-pwd" => self.ice_pwd = Some(arg.to_owned()),
            "ice-lite" => self.ice_lite = true,
            "encryption" => self.encryption = Some(arg.trim().to_owned()),
            _ => {
                if let Some(d) = direction_of(name) {
                    self.direction = Some(d);
                }
            }
        }
    }
}

fn direction_of(name: &str) -> Option<Direction> {
    match name {
        "sendrecv" => Some(Direction::SendRecv),
        "sendonly" => Some(Direction::SendOnly),
        "recvonly" => Some(Direction::RecvOnly),
        "inactive" => Some(Direction::Inactive),
        _ => None,
    }
}

fn media_attribute(m: &mut MediaDescription, value: &str) {
    let (name, arg) = value.split_once(':').unwrap_or((value, ""));
    if let Some(d) = direction_of(name) {
        m.direction = Some(d);
        return;
    }
    match name {
        "rtpmap" => {
            let Some((pt, enc)) = arg.split_once(' ') else { return };
            let Ok(payload_type) = pt.parse::<u8>() else { return };
            let mut parts = enc.trim().split('/');
            let name = parts.next().unwrap_or("").to_owned();
            let Some(clock_rate) = parts.next().and_then(|c| c.parse().ok()) else { return };
            let channels = parts.next().and_then(|c| c.parse().ok()).unwrap_or(1);
            if m.rtpmaps.len() < 128 {
                m.rtpmaps.push(RtpMap { payload_type, name, clock_rate, channels });
            }
        }
        "fmtp" => {
            if let Some((pt, params)) = arg.split_once(' ')
                && let Ok(pt) = pt.parse()
                && m.fmtps.len() < 128
            {
                m.fmtps.push((pt, params.trim().to_owned()));
            }
        }
        "ptime" => m.ptime = arg.trim().parse().ok(),
        "rtcp-mux" => m.rtcp_mux = true,
        "rtcp" => m.rtcp_port = arg.split_ascii_whitespace().next().and_then(|p| p.parse().ok()),
        "ice-ufrag" => m.ice_ufrag = Some(arg.to_owned()),
        "ice-pwd" => m.ice_pwd = Some(arg.to_owned()),
        "crypto" | "cryptoscale" if m.crypto.len() < MAX_CRYPTO => m.crypto.push((name.to_owned(), arg.to_owned())),
        "encryption" => m.encryption = Some(arg.trim().to_owned()),
        "ssrc" if m.ssrc.is_none() => {
            m.ssrc = arg.split_ascii_whitespace().next().and_then(|s| s.parse().ok());
        }
        "candidate" => {
            if m.candidates.len() < 64
                && let Some(c) = parse_candidate(arg)
            {
                m.candidates.push(c);
            }
        }
        _ => {}
    }
}

fn parse_candidate(arg: &str) -> Option<Candidate> {
    let f: Vec<&str> = arg.split_ascii_whitespace().take(8).collect();
    if f.len() < 8 || f[6] != "typ" {
        return None;
    }
    let ip: IpAddr = f[4].parse().ok()?;
    let port: u16 = f[5].parse().ok()?;
    Some(Candidate {
        component: f[1].parse().ok()?,
        transport: f[2].to_owned(),
        priority: f[3].parse().ok()?,
        address: SocketAddr::new(ip, port),
        typ: f[7].to_owned(),
    })
}

/// What the MCU puts in its answer about itself.
#[derive(Clone, Debug)]
pub struct AnswerConfig {
    /// Address of the MCU's media socket (for `c=`, `o=` and the candidate).
    pub address: IpAddr,
    /// Its port.
    pub port: u16,
    /// ICE credentials to answer with when the offer has ICE.
    pub ice: IceCredentials,
    /// `o=` session id.
    pub session_id: u64,
    /// Opus `maxaveragebitrate` to announce.
    pub opus_bitrate: u32,
    /// The value of the answer's `a=crypto:` line (`<tag> <suite> inline:...`) when SRTP was agreed; `None`
    /// answers plain RTP (refused when the offer's profile is `RTP/SAVP`).
    pub crypto: Option<String>,
    /// Our SSRC and CNAME, announced with `a=ssrc` (RFC 5576) so the offerer knows the stream before it
    /// comes (an SRTP receiver keyed per SSRC needs it).
    pub ssrc: Option<(u32, String)>,
}

/// What the answer agreed on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// Index of the audio m-line.
    pub mline: usize,
    /// Codec.
    pub codec: CodecKind,
    /// Its payload type (the offerer's number).
    pub payload_type: u8,
    /// telephone-event payload type, if agreed.
    pub telephone_event: Option<u8>,
    /// Where the offer says to send RTP (`c=` and port), if it says.
    pub remote: Option<SocketAddr>,
    /// Where the offer says to send RTCP (rtcp-mux: the RTP address).
    pub remote_rtcp: Option<SocketAddr>,
    /// rtcp-mux agreed.
    pub rtcp_mux: bool,
    /// The offerer does ICE: its ufrag and pwd.
    pub remote_ice: Option<(String, String)>,
    /// The offerer's candidates for component 1.
    pub remote_candidates: Vec<SocketAddr>,
    /// Our direction.
    pub direction: Direction,
    /// The offerer announced this SSRC.
    pub remote_ssrc: Option<u32>,
}

/// The codec an m-line format stands for, if we have it.
fn codec_of(m: &MediaDescription, pt: u8) -> Option<CodecKind> {
    match m.rtpmaps.iter().find(|r| r.payload_type == pt) {
        Some(r) if r.name.eq_ignore_ascii_case("opus") && r.clock_rate == 48_000 => Some(CodecKind::Opus),
        Some(r) if r.name.eq_ignore_ascii_case("PCMU") && r.clock_rate == 8_000 => Some(CodecKind::Pcmu),
        Some(r) if r.name.eq_ignore_ascii_case("PCMA") && r.clock_rate == 8_000 => Some(CodecKind::Pcma),
        Some(r) if r.name.eq_ignore_ascii_case("G722") && r.clock_rate == 8_000 => Some(CodecKind::G722),
        Some(_) => None,
        None => [CodecKind::Pcmu, CodecKind::Pcma, CodecKind::G722]
            .into_iter()
            .find(|k| k.static_payload_type() == Some(pt)),
    }
}

/// The index of the audio m-line the answer takes: the first audio m-line with a port.
pub fn audio_mline(offer: &SessionDescription) -> Result<usize, Error> {
    offer.media.iter().position(|m| m.media == "audio" && m.port != 0).ok_or(bad("no audio m-line in the offer"))
}

/// Builds the answer to `offer`; returns its text and what was agreed.
pub fn answer(offer: &SessionDescription, config: &AnswerConfig) -> Result<(String, Negotiated), Error> {
    let mline = audio_mline(offer)?;
    let m = &offer.media[mline];
    match (m.proto.as_str(), &config.crypto) {
        ("RTP/AVP" | "RTP/AVPF", _) => {}
        ("RTP/SAVP" | "RTP/SAVPF", Some(_)) => {}
        ("RTP/SAVP" | "RTP/SAVPF", None) => return Err(bad("the offer requires SRTP and no key was agreed")),
        _ => return Err(bad("unsupported transport (RTP/AVP, RTP/AVPF, RTP/SAVP, RTP/SAVPF)")),
    }
    let (payload_type, codec) = m
        .formats
        .iter()
        .find_map(|&pt| codec_of(m, pt).map(|c| (pt, c)))
        .ok_or(bad("no common codec (opus, G722, PCMU, PCMA)"))?;
    let telephone_event = m
        .rtpmaps
        .iter()
        .find(|r| {
            r.name.eq_ignore_ascii_case("telephone-event")
                && r.clock_rate == codec.clock_rate()
                && m.formats.contains(&r.payload_type)
        })
        .map(|r| r.payload_type);
    let direction = m.direction.or(offer.direction).unwrap_or_default().answer();
    let connection = m.connection.or(offer.connection);
    let remote = connection.filter(|ip| !ip.is_unspecified()).map(|ip| SocketAddr::new(ip, m.port));
    let remote_rtcp = match (m.rtcp_mux, remote) {
        (true, r) => r,
        (false, Some(r)) => Some(SocketAddr::new(r.ip(), m.rtcp_port.unwrap_or(r.port().wrapping_add(1)))),
        (false, None) => None,
    };
    let ufrag = m.ice_ufrag.clone().or_else(|| offer.ice_ufrag.clone());
    let pwd = m.ice_pwd.clone().or_else(|| offer.ice_pwd.clone());
    let remote_ice = ufrag.zip(pwd);
    let remote_candidates = m
        .candidates
        .iter()
        .filter(|c| c.component == 1 && c.transport.eq_ignore_ascii_case("udp"))
        .map(|c| c.address)
        .collect();

    let ip = config.address;
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let mut s = String::with_capacity(768);
    let _ = write!(
        s,
        "v=0\r\no=vienna {0} {0} IN {family} {ip}\r\ns=vienna\r\nc=IN {family} {ip}\r\nt=0 0\r\n",
        config.session_id
    );
    if remote_ice.is_some() {
        s.push_str("a=ice-lite\r\n");
    }
    for (i, other) in offer.media.iter().enumerate() {
        if i != mline {
            let fmt = other.formats.first().copied().unwrap_or(0);
            let _ = write!(s, "m={} 0 {} {fmt}\r\n", other.media, other.proto);
            continue;
        }
        let _ = write!(s, "m=audio {} {} {payload_type}", config.port, m.proto);
        if let Some(te) = telephone_event {
            let _ = write!(s, " {te}");
        }
        s.push_str("\r\n");
        match codec {
            CodecKind::Opus => {
                let _ = write!(
                    s,
                    "a=rtpmap:{payload_type} opus/48000/2\r\na=fmtp:{payload_type} useinbandfec=1;minptime=20;maxaveragebitrate={}\r\n",
                    config.opus_bitrate
                );
            }
            other => {
                let _ = write!(s, "a=rtpmap:{payload_type} {}/8000\r\n", other.name());
            }
        }
        if let Some(te) = telephone_event {
            let _ = write!(s, "a=rtpmap:{te} telephone-event/{}\r\na=fmtp:{te} 0-16\r\n", codec.clock_rate());
        }
        let _ = write!(s, "a=ptime:20\r\na={}\r\n", direction.name());
        if let Some(crypto) = &config.crypto {
            let _ = write!(s, "a=crypto:{crypto}\r\n");
        }
        if let Some((ssrc, cname)) = &config.ssrc {
            let _ = write!(s, "a=ssrc:{ssrc} cname:{cname}\r\n");
        }
        if m.rtcp_mux {
            s.push_str("a=rtcp-mux\r\n");
        } else {
            let _ = write!(s, "a=rtcp:{} IN {family} {ip}\r\n", config.port);
        }
        if remote_ice.is_some() {
            let _ = write!(s, "a=ice-ufrag:{}\r\na=ice-pwd:{}\r\n", config.ice.ufrag, config.ice.pwd);
            let _ = write!(s, "a=candidate:1 1 UDP 2130706431 {ip} {} typ host\r\n", config.port);
            if !m.rtcp_mux {
                let _ = write!(s, "a=candidate:1 2 UDP 2130706430 {ip} {} typ host\r\n", config.port);
            }
            s.push_str("a=end-of-candidates\r\n");
        }
    }
    let negotiated = Negotiated {
        mline,
        codec,
        payload_type,
        telephone_event,
        remote,
        remote_rtcp,
        rtcp_mux: m.rtcp_mux,
        remote_ice,
        remote_candidates,
        direction,
        remote_ssrc: m.ssrc,
    };
    Ok((s, negotiated))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GSTREAMER_LIKE: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
        m=audio 5004 RTP/AVP 96\r\na=rtpmap:96 OPUS/48000/2\r\na=sendrecv\r\n";

    const WEBRTC_LIKE: &str = "v=0\r\no=- 4611 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n\
        m=audio 9 RTP/AVPF 111 9 0 8 126\r\nc=IN IP4 0.0.0.0\r\n\
        a=rtcp:9 IN IP4 0.0.0.0\r\n\
        a=candidate:1 1 udp 2122260223 192.0.2.10 54400 typ host generation 0\r\n\
        a=candidate:2 1 tcp 1518280447 192.0.2.10 9 typ host tcptype active\r\n\
        a=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n\
        a=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:126 telephone-event/8000\r\n\
        a=ssrc:3735928559 cname:x\r\n\
        m=video 9 RTP/AVPF 96\r\na=rtpmap:96 VP8/90000\r\n";

    fn config() -> AnswerConfig {
        AnswerConfig {
            address: "127.0.0.1".parse().unwrap(),
            port: 40000,
            ice: IceCredentials { ufrag: "mcuf".into(), pwd: "abcdefghijklmnopqrstuvwx".into() },
            session_id: 77,
            opus_bitrate: 32000,
            crypto: None,
            ssrc: Some((1234, "mcu@test".into())),
        }
    }

    #[test]
    fn answers_a_plain_opus_offer_without_ice() {
        let offer = SessionDescription::parse(GSTREAMER_LIKE).unwrap();
        let (text, n) = answer(&offer, &config()).unwrap();
        assert_eq!((n.codec, n.payload_type, n.telephone_event), (CodecKind::Opus, 96, None));
        assert_eq!(n.remote, Some("127.0.0.1:5004".parse().unwrap()));
        assert_eq!(n.remote_rtcp, Some("127.0.0.1:5005".parse().unwrap()));
        assert!(!n.rtcp_mux && n.remote_ice.is_none());
        assert!(text.contains("m=audio 40000 RTP/AVP 96\r\n"));
        assert!(text.contains("a=rtpmap:96 opus/48000/2\r\n"));
        assert!(text.contains("a=rtcp:40000 IN IP4 127.0.0.1\r\n"));
        assert!(text.contains("a=ssrc:1234 cname:mcu@test\r\n"));
        assert!(!text.contains("ice-lite") && !text.contains("candidate"));
        // the answer parses back
        let back = SessionDescription::parse(&text).unwrap();
        assert_eq!(back.media[0].port, 40000);
    }

    #[test]
    fn answers_an_ice_offer_with_ice_lite_and_rejects_video() {
        let offer = SessionDescription::parse(WEBRTC_LIKE).unwrap();
        let (text, n) = answer(&offer, &config()).unwrap();
        assert_eq!((n.codec, n.payload_type), (CodecKind::Opus, 111));
        assert_eq!(n.telephone_event, None, "telephone-event/8000 does not go with opus/48000");
        assert_eq!(n.remote, None, "c=0.0.0.0: the address comes from ICE");
        assert_eq!(n.remote_ice, Some(("EsAw".into(), "P2uYro0UCOQ4zxjKXaWCBui1".into())));
        assert_eq!(n.remote_candidates, vec!["192.0.2.10:54400".parse().unwrap()]);
        assert_eq!(n.remote_ssrc, Some(3_735_928_559));
        assert!(n.rtcp_mux);
        for needle in [
            "a=ice-lite\r\n",
            "a=ice-ufrag:mcuf\r\n",
            "a=ice-pwd:abcdefghijklmnopqrstuvwx\r\n",
            "a=candidate:1 1 UDP 2130706431 127.0.0.1 40000 typ host\r\n",
            "a=rtcp-mux\r\n",
            "m=video 0 RTP/AVPF 96\r\n",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from\n{text}");
        }
    }

    #[test]
    fn picks_g711_with_its_telephone_event_and_mirrors_direction() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\na=sendonly\r\n\
            m=audio 7078 RTP/AVP 18 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
        let (text, n) = answer(&SessionDescription::parse(sdp).unwrap(), &config()).unwrap();
        assert_eq!((n.codec, n.payload_type, n.telephone_event), (CodecKind::Pcma, 8, Some(101)), "G.729 (18) skipped");
        assert_eq!(n.direction, Direction::RecvOnly);
        assert!(text.contains("m=audio 40000 RTP/AVP 8 101\r\n") && text.contains("a=recvonly\r\n"));
        assert!(text.contains("a=fmtp:101 0-16\r\n"));
    }

    #[test]
    fn picks_g722_by_its_static_type_or_its_rtpmap() {
        let base = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n";
        let sdp = format!("{base}m=audio 7078 RTP/AVP 9 0 101\r\na=rtpmap:101 telephone-event/8000\r\n");
        let (text, n) = answer(&SessionDescription::parse(&sdp).unwrap(), &config()).unwrap();
        assert_eq!((n.codec, n.payload_type, n.telephone_event), (CodecKind::G722, 9, Some(101)));
        assert!(text.contains("m=audio 40000 RTP/AVP 9 101\r\na=rtpmap:9 G722/8000\r\n"), "{text}");
        // baresip's order: a dynamic number for G722 is taken by its rtpmap; G722/16000 is not G.722's.
        let sdp = format!("{base}m=audio 7078 RTP/AVP 97 98 0\r\na=rtpmap:97 G722/16000\r\na=rtpmap:98 g722/8000\r\n");
        let (_, n) = answer(&SessionDescription::parse(&sdp).unwrap(), &config()).unwrap();
        assert_eq!((n.codec, n.payload_type), (CodecKind::G722, 98));
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        let err = |sdp: &str| answer(&SessionDescription::parse(sdp).unwrap(), &config()).unwrap_err();
        let base = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n";
        assert!(matches!(err(&format!("{base}m=audio 1 RTP/SAVP 0\r\n")), Error::Sdp(m) if m.contains("SRTP")));
        assert!(matches!(err(&format!("{base}m=audio 1 UDP/TLS/RTP/SAVPF 0\r\n")), Error::Sdp(_)));
        assert!(matches!(err(&format!("{base}m=audio 1 RTP/AVP 18\r\n")), Error::Sdp(m) if m.contains("codec")));
        assert!(matches!(err(&format!("{base}m=video 1 RTP/AVP 96\r\n")), Error::Sdp(_)));
        assert!(SessionDescription::parse("m=audio 1 RTP/AVP 0\r\n").is_err(), "no v= line");
        assert!(SessionDescription::parse("v=0\r\nm=audio x RTP/AVP 0\r\n").is_err());
        assert!(SessionDescription::parse("v=0\r\ngarbage\r\n").is_err());
        assert!(SessionDescription::parse(&"v=0\r\n".repeat(20_000)).is_err(), "too large");
    }

    #[test]
    fn keeps_crypto_lines_and_answers_srtp_in_the_offered_profile() {
        let key = "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^31";
        let base = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\na=encryption:optional\r\n";
        for proto in ["RTP/SAVP", "RTP/AVP"] {
            let sdp = format!(
                "{base}m=audio 7078 {proto} 0\r\na=cryptoscale:1 client AES_CM_128_HMAC_SHA1_80 {key}|1:1\r\n\
                 a=crypto:2 AES_CM_128_HMAC_SHA1_80 {key}|1:1\r\na=crypto:3 AES_CM_128_HMAC_SHA1_80 {key}\r\n"
            );
            let offer = SessionDescription::parse(&sdp).unwrap();
            assert_eq!(offer.encryption.as_deref(), Some("optional"));
            let m = &offer.media[0];
            assert_eq!(m.crypto.len(), 3);
            assert_eq!(m.crypto[0].0, "cryptoscale");
            assert_eq!(m.crypto[2], ("crypto".into(), format!("3 AES_CM_128_HMAC_SHA1_80 {key}")));
            let mut c = config();
            c.crypto = Some("3 AES_CM_128_HMAC_SHA1_80 inline:AAAA|2^31".into());
            let (text, _) = answer(&offer, &c).unwrap();
            assert!(text.contains(&format!("m=audio 40000 {proto} 0\r\n")), "{text}");
            assert!(text.contains("a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:AAAA|2^31\r\n"), "{text}");
            // without a key: plain for the optional form, refused for RTP/SAVP
            let plain = answer(&offer, &config());
            assert_eq!(plain.is_ok(), proto == "RTP/AVP", "{proto}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(text in "(v=0\r\n)?([a-z]=[ -~]{0,40}\r\n){0,12}") {
            if let Ok(sdp) = SessionDescription::parse(&text) {
                let _ = answer(&sdp, &config());
            }
        }
    }
}
