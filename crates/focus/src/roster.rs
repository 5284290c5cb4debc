//! The roster of a conference and its documents: RFC 4575 conference-info with the Microsoft extensions
//! clients read (MS-CONFBAS §2.2.2.2; what SIPE keys on is listed in research §5.5), as a full document
//! (`state="full"`) or a partial one naming only the users that changed (`state="partial"`, users
//! `state="full"` or `state="deleted"`), each with the version of its subscription.
//!
//! The dominant speaker (the loudest talker the mixer puts first in its CSRC lists, MS-RTP) has no
//! element in RFC 4575 or in what we know of Microsoft's extensions (research §6: clients read it from the
//! media plane and map the CSRC through `src-id`); it is carried here as a Vienna extension in
//! `conference-state`, `<v:dominant-speaker entity="..." src-id="..."/>` in [`NS_VIENNA`], which clients
//! that do not know it ignore (RFC 4575 §5 allows other namespaces).

use vienna_xml::Writer;

use crate::c3p::{NS_CI, NS_MSCI};

/// Vienna's conference-info extensions (the dominant speaker).
pub const NS_VIENNA: &str = "urn:x-vienna:conference-info";
use crate::uri::{ConfKind, ConfUri};

/// A role in a conference (RFC 4575 `roles/entry`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// May lock, eject, mute others and promote (the organizer is one).
    Presenter,
    /// Takes part.
    Attendee,
}

impl Role {
    /// The XML value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Presenter => "presenter",
            Role::Attendee => "attendee",
        }
    }

    /// Parses `presenter` / `attendee`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "presenter" => Some(Role::Presenter),
            "attendee" => Some(Role::Attendee),
            _ => None,
        }
    }
}

/// Which session of a user an endpoint is (`endpoint@session-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionType {
    /// The user's dialog with the focus.
    Focus,
    /// The user's audio (and video) with the MCU.
    AudioVideo,
}

impl SessionType {
    fn as_str(self) -> &'static str {
        match self {
            SessionType::Focus => "focus",
            SessionType::AudioVideo => "audio-video",
        }
    }
}

/// One medium of an endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Media {
    /// `media@id`, referenced by modifyEndpointMedia.
    pub id: u32,
    /// `audio`.
    pub kind: &'static str,
    /// `sendrecv`, or `recvonly` when muted.
    pub status: &'static str,
    /// The participant's SSRC (`src-id`), for mapping the dominant-speaker CSRC to the user.
    pub src_id: Option<u32>,
}

impl Media {
    /// Whether the user's audio is blocked from the mix.
    pub fn muted(&self) -> bool {
        self.status != "sendrecv"
    }
}

/// One endpoint of a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `endpoint@entity` (the client's GUID for the focus session; ours for the AV session).
    pub entity: String,
    /// Which session.
    pub session_type: SessionType,
    /// When it connected (Unix seconds).
    pub joined_at: u64,
    /// Its media (AV sessions).
    pub media: Vec<Media>,
}

/// A participant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The user's URI.
    pub entity: String,
    /// Display name.
    pub display_text: String,
    /// Granted role.
    pub role: Role,
    /// Connected endpoints.
    pub endpoints: Vec<Endpoint>,
}

impl User {
    /// The audio/video endpoint, if the user is in the call.
    pub fn av(&self) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.session_type == SessionType::AudioVideo)
    }
}

/// A conference as the focus keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conference {
    /// The conference id.
    pub id: String,
    /// Organizer's address of record.
    pub organizer: String,
    /// Subject.
    pub subject: String,
    /// Whether new users are refused.
    pub locked: bool,
    /// `msci:admission-policy`.
    pub admission_policy: String,
    /// Most users at once, if limited.
    pub max_participants: Option<u32>,
    /// Created at (Unix seconds).
    pub created_at: u64,
    /// Expires at (Unix seconds), if ever.
    pub expires_at: Option<u64>,
    /// Users in join order.
    pub users: Vec<User>,
    /// The URI standard SIP clients dial (`sip:conf-<id>@domain`), listed in `conf-uris`.
    pub dial_in: Option<String>,
    /// The user whose audio dominates the mix now, if anyone speaks.
    pub dominant: Option<String>,
}

/// How a user changed, for a partial document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserChange {
    /// Joined or changed: the user's whole element is sent.
    Updated(String),
    /// Left or ejected.
    Deleted(String),
}

impl Conference {
    /// The focus URI.
    pub fn focus_uri(&self) -> ConfUri {
        ConfUri::of(&self.organizer, ConfKind::Focus, &self.id)
    }

    /// A user by URI.
    pub fn user(&self, entity: &str) -> Option<&User> {
        self.users.iter().find(|u| u.entity.eq_ignore_ascii_case(entity))
    }

    /// A user by URI, to change it.
    pub fn user_mut(&mut self, entity: &str) -> Option<&mut User> {
        self.users.iter_mut().find(|u| u.entity.eq_ignore_ascii_case(entity))
    }

    /// The whole roster, `state="full"`.
    pub fn full_document(&self, version: u32) -> String {
        let mut w = self.root("full", version);
        self.description(&mut w);
        self.state(&mut w);
        self.view(&mut w);
        w.start("users");
        for u in &self.users {
            user(&mut w, u);
        }
        w.end();
        w.finish()
    }

    /// What changed, `state="partial"`: the conference state and the users named in `changes`.
    pub fn partial_document(&self, changes: &[UserChange], version: u32) -> String {
        let mut w = self.root("partial", version);
        self.state(&mut w);
        w.start("users").attr("state", "partial");
        for change in changes {
            match change {
                UserChange::Updated(entity) => match self.user(entity) {
                    Some(u) => user(&mut w, u),
                    None => {
                        w.start("user").attr("entity", entity).attr("state", "deleted").end();
                    }
                },
                UserChange::Deleted(entity) => {
                    w.start("user").attr("entity", entity).attr("state", "deleted").end();
                }
            }
        }
        w.end();
        w.finish()
    }

    fn root(&self, state: &str, version: u32) -> Writer {
        let mut w = Writer::new();
        w.start("conference-info")
            .attr("xmlns", NS_CI)
            .attr("xmlns:msci", NS_MSCI)
            .attr("xmlns:v", NS_VIENNA)
            .attr("entity", &self.focus_uri().to_string())
            .attr("state", state)
            .attr("version", &version.to_string());
        w
    }

    /// The conference-description (also the content of addConference and getConference answers).
    fn description(&self, w: &mut Writer) {
        let focus = self.focus_uri();
        w.start("conference-description");
        w.leaf("subject", &self.subject);
        w.start("organizer").leaf("uri", &self.organizer).end();
        // The MCUs of this conference: audio only (no IM or sharing MCU yet).
        let av = ConfKind::AudioVideo;
        w.start("conf-uris").start("entry");
        w.leaf("uri", &focus.with_kind(av.clone()).to_string());
        w.leaf("display-text", av.token()).leaf("purpose", av.token());
        w.end();
        if let Some(dial_in) = &self.dial_in {
            // RFC 4575 §5.3.1: a URI to join by (INVITE with SDP, any SIP client).
            w.start("entry").leaf("uri", dial_in).leaf("display-text", "dial-in").leaf("purpose", "participation");
            w.end();
        }
        w.end();
        w.leaf("msci:conference-id", &self.id);
        if let Some(at) = self.expires_at {
            w.leaf("msci:expiry-time", &rfc3339(at));
        }
        w.leaf("msci:admission-policy", &self.admission_policy);
        w.end();
    }

    fn state(&self, w: &mut Writer) {
        w.start("conference-state");
        w.leaf("active", if self.users.is_empty() { "false" } else { "true" });
        w.leaf("locked", if self.locked { "true" } else { "false" });
        w.leaf("user-count", &self.users.len().to_string());
        if let Some(entity) = &self.dominant {
            w.start("v:dominant-speaker").attr("entity", entity);
            let ssrc = self.user(entity).and_then(User::av).and_then(|e| e.media.first()).and_then(|m| m.src_id);
            if let Some(ssrc) = ssrc {
                w.attr("src-id", &ssrc.to_string());
            }
            w.end();
        }
        w.end();
    }

    fn view(&self, w: &mut Writer) {
        let av = self.focus_uri().with_kind(ConfKind::AudioVideo).to_string();
        w.start("msci:conference-view");
        w.start("msci:entity-view").attr("entity", &av);
        w.start("msci:entity-state");
        w.leaf("msci:locked", if self.locked { "true" } else { "false" });
        w.start("msci:media").start("msci:entry").attr("label", "main-audio");
        w.leaf("msci:type", "audio").leaf("msci:status", "sendrecv");
        w.end().end();
        w.end().end().end();
    }

    /// The content of an addConference/getConference success: `<conference-info>` without roster.
    pub fn info_fragment(&self) -> String {
        let mut w = Writer::fragment();
        w.start("conference-info").attr("xmlns", NS_CI).attr("entity", &self.focus_uri().to_string());
        self.description(&mut w);
        w.end();
        w.finish()
    }
}

fn user(w: &mut Writer, u: &User) {
    w.start("user").attr("entity", &u.entity).attr("state", "full");
    if !u.display_text.is_empty() {
        w.leaf("display-text", &u.display_text);
    }
    w.start("roles").leaf("entry", u.role.as_str()).end();
    for e in &u.endpoints {
        w.start("endpoint").attr("entity", &e.entity).attr("session-type", e.session_type.as_str());
        w.leaf("status", "connected");
        w.leaf("joining-method", "dialed-in");
        w.start("joining-info").leaf("when", &rfc3339(e.joined_at)).end();
        for m in &e.media {
            w.start("media").attr("id", &m.id.to_string());
            w.leaf("type", m.kind).leaf("label", "main-audio").leaf("status", m.status);
            w.leaf("msci:media-state", "connected");
            w.leaf("msci:media-ingress-filter", if m.muted() { "block" } else { "unblock" });
            if let Some(ssrc) = m.src_id {
                w.leaf("src-id", &ssrc.to_string());
            }
            w.end();
        }
        w.end();
    }
    w.end();
}

/// A Unix time as RFC 3339 UTC (`2016-10-12T12:30:54Z`).
pub fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Parses RFC 3339 UTC (`2009-07-13T17:57:09Z`, fractions and offsets other than `Z` refused) to Unix
/// seconds.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z'
    {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d, hh, mm, ss) = (n(0..4)?, n(5..7)?, n(8..10)?, n(11..13)?, n(14..16)?, n(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

#[cfg(test)]
mod tests {
    use vienna_xml::Limits;

    use super::*;

    fn conference() -> Conference {
        Conference {
            id: "ABCD1234".into(),
            organizer: "sip:alice@contoso.com".into(),
            subject: "Weekly <sync>".into(),
            locked: false,
            admission_policy: "openAuthenticated".into(),
            max_participants: None,
            created_at: 1_476_275_454,
            expires_at: Some(1_476_300_000),
            users: vec![User {
                entity: "sip:bob@contoso.com".into(),
                display_text: "Bob".into(),
                role: Role::Attendee,
                endpoints: vec![
                    Endpoint {
                        entity: "{GUID}".into(),
                        session_type: SessionType::Focus,
                        joined_at: 1_476_275_454,
                        media: vec![],
                    },
                    Endpoint {
                        entity: "av-1".into(),
                        session_type: SessionType::AudioVideo,
                        joined_at: 1_476_275_460,
                        media: vec![Media { id: 1, kind: "audio", status: "recvonly", src_id: Some(12345) }],
                    },
                ],
            }],
            dial_in: Some("sip:conf-ABCD1234@contoso.com".into()),
            dominant: Some("sip:bob@contoso.com".into()),
        }
    }

    #[test]
    fn full_document_holds_what_clients_read() {
        let doc = conference().full_document(1);
        let root = vienna_xml::parse(doc.as_bytes(), Limits::default()).unwrap();
        assert_eq!(root.attr("entity"), Some("sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:ABCD1234"));
        assert_eq!((root.attr("state"), root.attr("version")), (Some("full"), Some("1")));
        let desc = root.child(NS_CI, "conference-description").unwrap();
        assert_eq!(desc.child(NS_CI, "subject").unwrap().text, "Weekly <sync>");
        let entry = desc.child(NS_CI, "conf-uris").unwrap().child(NS_CI, "entry").unwrap();
        assert_eq!(entry.child(NS_CI, "purpose").unwrap().text, "audio-video");
        assert_eq!(desc.child(NS_MSCI, "conference-id").unwrap().text, "ABCD1234");
        assert_eq!(desc.child(NS_MSCI, "expiry-time").unwrap().text, "2016-10-12T19:20:00Z");
        let user = root.child(NS_CI, "users").unwrap().child(NS_CI, "user").unwrap();
        assert_eq!(user.attr("entity"), Some("sip:bob@contoso.com"));
        let av =
            user.children_named(NS_CI, "endpoint").find(|e| e.attr("session-type") == Some("audio-video")).unwrap();
        let media = av.child(NS_CI, "media").unwrap();
        assert_eq!(media.attr("id"), Some("1"));
        assert_eq!(media.child(NS_CI, "status").unwrap().text, "recvonly");
        assert_eq!(media.child(NS_MSCI, "media-ingress-filter").unwrap().text, "block");
        assert_eq!(media.child(NS_CI, "src-id").unwrap().text, "12345");
        let state = root.child(NS_CI, "conference-state").unwrap();
        assert_eq!(state.child(NS_CI, "user-count").unwrap().text, "1");
        let dominant = state.child(NS_VIENNA, "dominant-speaker").unwrap();
        assert_eq!((dominant.attr("entity"), dominant.attr("src-id")), (Some("sip:bob@contoso.com"), Some("12345")));
        let uris: Vec<_> = desc.child(NS_CI, "conf-uris").unwrap().children_named(NS_CI, "entry").collect();
        assert_eq!(uris[1].child(NS_CI, "uri").unwrap().text, "sip:conf-ABCD1234@contoso.com");
        assert_eq!(uris[1].child(NS_CI, "purpose").unwrap().text, "participation");
    }

    #[test]
    fn partial_document_names_changed_and_deleted_users() {
        let c = conference();
        let doc = c.partial_document(
            &[UserChange::Updated("sip:bob@contoso.com".into()), UserChange::Deleted("sip:carol@contoso.com".into())],
            7,
        );
        let root = vienna_xml::parse(doc.as_bytes(), Limits::default()).unwrap();
        assert_eq!((root.attr("state"), root.attr("version")), (Some("partial"), Some("7")));
        let users: Vec<_> = root.child(NS_CI, "users").unwrap().children_named(NS_CI, "user").collect();
        assert_eq!(users[0].attr("state"), Some("full"));
        assert_eq!((users[1].attr("entity"), users[1].attr("state")), (Some("sip:carol@contoso.com"), Some("deleted")));
        assert!(root.child(NS_CI, "conference-description").is_none());
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_476_275_454), "2016-10-12T12:30:54Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        for t in [0, 951_782_400, 1_247_507_829, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
        assert_eq!(parse_rfc3339("2009-07-13T17:57:09Z"), Some(1_247_507_829));
        for bad in
            ["", "2009-07-13 17:57:09Z", "2009-13-13T17:57:09Z", "2009-07-13T17:57:09+01:00", "abcd-07-13T17:57:09Z"]
        {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
