//! PIDF (RFC 3863) with the RPID extensions (RFC 4480) and the data model (RFC 4479), mapped both ways to
//! [`PresenceState`].
//!
//! Reading ([`parse`]): the root must be `presence` in `urn:ietf:params:xml:ns:pidf`. A document with a
//! tuple whose `<basic>` is `open` (or with no basic status at all) is open; one whose tuples are all
//! `closed` is Offline (a `<basic>` with another value counts as none). RPID activities anywhere in it (person, tuple or device) refine an open document:
//!
//! | RPID | state | activity token |
//! |---|---|---|
//! | none | Online (4500 with `<rpid:user-input>idle</rpid:user-input>`) | |
//! | `busy` | Busy | |
//! | `on-the-phone` | Busy | `on-the-phone` |
//! | `meeting`, `appointment` | In a meeting (6500) | `in-a-meeting` |
//! | `busy` + `<rpid:other>Do not disturb</rpid:other>` (or `dnd`) | Do not disturb | |
//! | `presentation` | Do not disturb | `in-presentation` |
//! | `away` + `<rpid:other>Be right back</rpid:other>` (or `brb`) | Be right back | |
//! | `away`, `permanent-absence`, `meal`, `breakfast`, `dinner`, `sleeping`, `travel`, `in-transit`, `steering` | Away | |
//! | `vacation`, `holiday` | Away | `out-of-office` |
//!
//! When several apply, the least available wins. A document with a recognised activity is a **manual**
//! state (the user chose it); open without activity, idle, and closed are automatic (see
//! [`crate::presentity`]). The note is the first non-empty `<note>` (PIDF) or `<dm:note>` (data model).
//!
//! Writing ([`render`]) produces the same vocabulary, so a Vienna NOTIFY read back gives the state that was
//! published. Left out: timed status (`<timestamp>`, `from`/`until`), CIPID, device elements, and the
//! RPID elements that do not bear on the LCS states (mood, place-type, privacy, sphere...).

use crate::availability::{
    AWAY, BE_RIGHT_BACK, BUSY, DO_NOT_DISTURB, IN_A_MEETING, IN_PRESENTATION, OFFLINE, ON_THE_PHONE, ONLINE,
    ONLINE_IDLE, OUT_OF_OFFICE, PresenceState, State,
};
use crate::error::BodyError;
use vienna_xml::{self as xml, Element, escape};

/// PIDF namespace.
pub const NS_PIDF: &str = "urn:ietf:params:xml:ns:pidf";
/// RPID namespace.
pub const NS_RPID: &str = "urn:ietf:params:xml:ns:pidf:rpid";
/// Data model namespace.
pub const NS_DM: &str = "urn:ietf:params:xml:ns:pidf:data-model";
/// Content type of PIDF documents.
pub const CONTENT_TYPE: &str = "application/pidf+xml";

/// Largest note kept (longer notes are cut at a character boundary).
const MAX_NOTE: usize = 1024;

/// What one PIDF document says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// The `entity` attribute of the root.
    pub entity: String,
    /// The state it maps to.
    pub state: PresenceState,
    /// Whether the user chose it (a recognised RPID activity) rather than the client computing it.
    pub manual: bool,
    /// Whether the document says anything: a basic status of open or closed, idle, or a recognised
    /// activity. One that does not (baresip 1.0 publishes `<basic>unknown</basic>` before its user
    /// chose) is kept but left out of aggregation.
    pub informative: bool,
    /// The `id`s of the document's tuples (RFC 3863 §4.1.2: one per service of the presentity). A new
    /// publication carrying a tuple id of an older one is that service's newer state.
    pub tuples: Vec<String>,
}

fn walk<'a>(e: &'a Element, out: &mut Vec<&'a Element>) {
    out.push(e);
    for c in &e.children {
        walk(c, out);
    }
}

/// Parses a PIDF document (bounded by `xml::Limits::default()`; the caller bounds the body size).
pub fn parse(body: &[u8]) -> Result<Published, BodyError> {
    let root = xml::parse(body, xml::Limits::default())?;
    if root.ns != NS_PIDF || root.name != "presence" {
        return Err(BodyError::NotPidf("root is not presence in urn:ietf:params:xml:ns:pidf"));
    }
    let entity = root.attr("entity").unwrap_or_default().to_owned();
    let mut all = Vec::new();
    walk(&root, &mut all);
    let tuples: Vec<String> = root
        .children
        .iter()
        .filter(|t| t.ns == NS_PIDF && t.name == "tuple")
        .filter_map(|t| t.attr("id"))
        .map(str::to_owned)
        .collect();

    let mut open = None::<bool>;
    let mut idle = false;
    let mut note = None::<String>;
    let mut activities: Vec<(&str, String)> = Vec::new();
    for e in &all {
        match (e.ns.as_str(), e.name.as_str()) {
            (NS_PIDF, "basic") => {
                let v = e.text.trim();
                if v.eq_ignore_ascii_case("open") {
                    open = Some(true);
                } else if v.eq_ignore_ascii_case("closed") {
                    open = Some(open.unwrap_or(false));
                }
                // Anything else (baresip 1.0 publishes "unkown" before its user chose) says nothing.
            }
            (NS_RPID, "user-input") => idle |= e.text.trim().eq_ignore_ascii_case("idle"),
            (NS_PIDF, "note") | (NS_DM, "note") => {
                let t = e.text.trim();
                if note.is_none() && !t.is_empty() {
                    note = Some(cut(t, MAX_NOTE).to_owned());
                }
            }
            (NS_RPID, "activities") => {
                for a in e.children.iter().filter(|a| a.ns == NS_RPID) {
                    activities.push((a.name.as_str(), a.text.trim().to_ascii_lowercase()));
                }
            }
            _ => {}
        }
    }
    let informative = open.is_some() || idle;
    let open = open.unwrap_or(true);
    if !open {
        let state = PresenceState { availability: OFFLINE, activity: None, note };
        return Ok(Published { entity, state, manual: false, informative, tuples });
    }
    let others: Vec<&str> = activities.iter().filter(|(n, _)| *n == "other").map(|(_, t)| t.as_str()).collect();
    let mut best: Option<(u32, Option<&str>)> = None;
    let mut consider = |availability: u32, token: Option<&'static str>| {
        if best.is_none_or(|(a, _)| availability > a) {
            best = Some((availability, token));
        }
    };
    for (name, _) in &activities {
        match *name {
            "busy" => consider(BUSY, None),
            "on-the-phone" => consider(BUSY, Some(ON_THE_PHONE)),
            "meeting" | "appointment" => consider(BUSY, Some(IN_A_MEETING)),
            "presentation" => consider(DO_NOT_DISTURB, Some(IN_PRESENTATION)),
            "away" | "permanent-absence" | "meal" | "breakfast" | "dinner" | "sleeping" | "travel" | "in-transit"
            | "steering" => consider(AWAY, None),
            "vacation" | "holiday" => consider(AWAY, Some(OUT_OF_OFFICE)),
            _ => {}
        }
    }
    for text in others {
        match text {
            "do not disturb" | "do-not-disturb" | "dnd" => consider(DO_NOT_DISTURB, None),
            "be right back" | "be-right-back" | "brb" => consider(BE_RIGHT_BACK, None),
            _ => {}
        }
    }
    // "Be right back" is written as away + other: the other refines the away it goes with.
    if let Some((AWAY, None)) = best
        && activities
            .iter()
            .any(|(n, t)| *n == "other" && matches!(t.as_str(), "be right back" | "be-right-back" | "brb"))
    {
        best = Some((BE_RIGHT_BACK, None));
    }
    let state = match best {
        Some((availability, token)) => {
            let availability = if idle && availability == BUSY { availability + 1000 } else { availability };
            return Ok(Published {
                entity,
                state: PresenceState { availability, activity: token.map(str::to_owned), note },
                manual: true,
                informative: true,
                tuples,
            });
        }
        None => PresenceState { availability: if idle { ONLINE_IDLE } else { ONLINE }, activity: None, note },
    };
    Ok(Published { entity, state, manual: false, informative, tuples })
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Writes the PIDF document for `entity` in `state` (the inverse of [`parse`]).
pub fn render(entity: &str, state: &PresenceState) -> String {
    let mut out = String::with_capacity(512);
    render_into(&mut out, entity, state);
    out
}

/// [`render`] into a buffer.
pub fn render_into(out: &mut String, entity: &str, state: &PresenceState) {
    let st = state.state();
    let basic = if st == State::Offline { "closed" } else { "open" };
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"");
    out.push_str(NS_PIDF);
    out.push_str("\" xmlns:dm=\"");
    out.push_str(NS_DM);
    out.push_str("\" xmlns:rpid=\"");
    out.push_str(NS_RPID);
    out.push_str("\" entity=\"");
    out.push_str(&escape(entity));
    out.push_str("\">\n<tuple id=\"t1\"><status><basic>");
    out.push_str(basic);
    out.push_str("</basic></status></tuple>\n");
    if let Some(note) = &state.note {
        out.push_str("<note>");
        out.push_str(&escape(note));
        out.push_str("</note>\n");
    }
    let token = state.activity.as_deref();
    let activities: &[&str] = match st {
        State::Offline | State::Online => &[],
        State::Busy if token == Some(ON_THE_PHONE) => &["<rpid:on-the-phone/>"],
        State::Busy => &["<rpid:busy/>"],
        State::InAMeeting => &["<rpid:meeting/>"],
        State::DoNotDisturb if token == Some(IN_PRESENTATION) => &["<rpid:presentation/>"],
        State::DoNotDisturb => &["<rpid:busy/>", "<rpid:other>Do not disturb</rpid:other>"],
        State::BeRightBack => &["<rpid:away/>", "<rpid:other>Be right back</rpid:other>"],
        State::Away if token == Some(OUT_OF_OFFICE) => &["<rpid:vacation/>"],
        State::Away => &["<rpid:away/>"],
    };
    let idle = st != State::Offline && state.idle();
    if !activities.is_empty() || idle || state.note.is_some() {
        out.push_str("<dm:person id=\"p1\">");
        if !activities.is_empty() {
            out.push_str("<rpid:activities>");
            for a in activities {
                out.push_str(a);
            }
            out.push_str("</rpid:activities>");
        }
        if idle {
            out.push_str("<rpid:user-input>idle</rpid:user-input>");
        }
        if let Some(note) = &state.note {
            out.push_str("<dm:note>");
            out.push_str(&escape(note));
            out.push_str("</dm:note>");
        }
        out.push_str("</dm:person>\n");
    }
    out.push_str("</presence>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips() {
        for s in State::ALL {
            let mut state = PresenceState::of(s);
            state.note = Some("back at <3> & \"soon\"".into());
            let doc = render("sip:alice@example.com", &state);
            let back = parse(doc.as_bytes()).unwrap();
            assert_eq!(back.state, state, "{s}: {doc}");
            assert_eq!(back.entity, "sip:alice@example.com");
            assert_eq!(back.manual, !matches!(s, State::Online | State::Offline), "{s}");
        }
        for (availability, activity) in [
            (ONLINE_IDLE, None),
            (BUSY, Some(ON_THE_PHONE)),
            (DO_NOT_DISTURB, Some(IN_PRESENTATION)),
            (AWAY, Some(OUT_OF_OFFICE)),
        ] {
            let state = PresenceState { availability, activity: activity.map(str::to_owned), note: None };
            assert_eq!(parse(render("sip:a@b", &state).as_bytes()).unwrap().state, state);
        }
    }

    #[test]
    fn other_clients_documents() {
        // baresip's PUBLISH (presence module), prefixes of its own.
        let baresip = br#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
    xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
    xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
    entity="sip:bob@127.0.0.1">
  <dm:person id="p4159"><rpid:activities><rpid:away/></rpid:activities></dm:person>
  <tuple id="t4109"><status><basic>open</basic></status><contact>sip:bob@127.0.0.1:5064</contact></tuple>
</presence>"#;
        let p = parse(baresip).unwrap();
        assert_eq!(p.state.state(), State::Away);
        assert!(p.manual);
        // RFC 3863 §3.4 example: plain open with a note, other prefixes.
        let rfc = br#"<?xml version="1.0" encoding="UTF-8"?>
<impp:presence xmlns:impp="urn:ietf:params:xml:ns:pidf" entity="pres:someone@example.com">
  <impp:tuple id="sg89ae"><impp:status><impp:basic>open</impp:basic></impp:status>
  <impp:contact priority="0.8">tel:+09012345678</impp:contact></impp:tuple>
  <impp:note xml:lang="en">Don't Disturb Please!</impp:note>
</impp:presence>"#;
        let p = parse(rfc).unwrap();
        assert_eq!(p.state.state(), State::Online);
        assert_eq!(p.state.note.as_deref(), Some("Don't Disturb Please!"));
        let closed = br#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"><tuple id="x"><status><basic>closed</basic></status></tuple></presence>"#;
        assert_eq!(parse(closed).unwrap().state.state(), State::Offline);
        let idle_busy = br#"<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:r="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:a@b"><tuple id="x"><status><basic>open</basic></status><r:user-input>idle</r:user-input></tuple><r:activities><r:busy/></r:activities></presence>"#;
        assert_eq!(parse(idle_busy).unwrap().state.availability, 7500);
    }

    #[test]
    fn bad_documents() {
        assert!(matches!(parse(b"<presence/>"), Err(BodyError::NotPidf(_))));
        assert!(matches!(parse(b"<x xmlns='urn:ietf:params:xml:ns:pidf'/>"), Err(BodyError::NotPidf(_))));
        let odd_basic = br#"<presence xmlns="urn:ietf:params:xml:ns:pidf"><tuple id="x"><status><basic>unkown</basic></status></tuple></presence>"#;
        assert!(!parse(odd_basic).unwrap().informative, "an unknown basic says nothing");
        assert!(parse(b"not xml").is_err());
    }
}
