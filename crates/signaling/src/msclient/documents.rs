//! The documents Vienna sends Microsoft clients, written with [`vienna_xml::Writer`] (every value escaped):
//! in-band provisioning (MS-SIPREGE §2.2.2.5), the roaming contact list and its deltas (MS-SIP §2.2.4.1),
//! the roaming self view (MS-PRES §4.4.3), presence categories (MS-PRES, `msrtc-event-categories`),
//! legacy LCS 2005 presence (`text/xml+msrtc.pidf`, MS-SIP §2.2.1), publication faults and SOAP
//! responses.
//!
//! URI conventions follow what SIPE reads: the full contact list and roaming-self subscribers carry URIs
//! without `sip:`; deltas, categories and RLMI carry them with it.

use std::collections::BTreeMap;

use vienna_presence::PresenceState;
use vienna_store::ContactList;
use vienna_xml::Writer;

/// Content type of provisioning-v2 documents.
pub const PROVISIONING_V2: &str = "application/vnd-microsoft-roaming-provisioning-v2+xml";
/// Content type of LCS 2005 provisioning.
pub const PROVISIONING: &str = "application/vnd-microsoft-roaming-provisioning+xml";
/// Content type of roaming contacts.
pub const ROAMING_CONTACTS: &str = "application/vnd-microsoft-roaming-contacts+xml";
/// Content type of roaming self.
pub const ROAMING_SELF: &str = "application/vnd-microsoft-roaming-self+xml";
/// Content type of roaming ACLs (LCS 2005).
pub const ROAMING_ACLS: &str = "application/vnd-microsoft-roaming-acls+xml";
/// Content type of pending watchers (LCS 2005).
pub const WPENDING: &str = "text/xml+msrtc.wpending";
/// Content type of category documents.
pub const CATEGORIES: &str = "application/msrtc-event-categories+xml";
/// Content type of legacy presence.
pub const MSRTC_PIDF: &str = "text/xml+msrtc.pidf";
/// Content type of publication faults.
pub const FAULT: &str = "application/msrtc-fault+xml";

const NS_CATEGORIES: &str = "http://schemas.microsoft.com/2006/09/sip/categories";
const NS_STATE: &str = "http://schemas.microsoft.com/2006/09/sip/state";
const NS_NOTE: &str = "http://schemas.microsoft.com/2006/09/sip/note";
const NS_CONTACTCARD: &str = "http://schemas.microsoft.com/2006/09/sip/contactcard";
const NS_XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// What provisioning tells a client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Provisioning {
    /// The media relay authentication service (`mras.uri`).
    pub mras_uri: Option<String>,
    /// The user's focus factory (`sip:<aor>;gruu;opaque=app:conf:focusfactory`).
    pub focus_factory_uri: String,
    /// Organization name.
    pub organization: String,
    /// The server's pool URI.
    pub pool_uri: String,
}

/// `text` without a leading `sip:`.
pub fn no_sip(uri: &str) -> &str {
    uri.strip_prefix("sip:").unwrap_or(uri)
}

/// The provisioning-v2 answer (MS-SIPREGE §2.2.2.5): ServerConfiguration with the focus factory and MRAS
/// URIs and defaults for the rest, an empty meeting policy, persistent chat off, and an empty UC policy.
pub fn provisioning_v2(p: &Provisioning) -> String {
    let mut w = Writer::new();
    w.start("provisionGroupList")
        .attr("xmlns", "http://schemas.microsoft.com/2006/09/sip/provisiongrouplist-notification");
    w.start("provisionGroup").attr("name", "ServerConfiguration");
    w.leaf("focusFactoryUri", &p.focus_factory_uri);
    if let Some(m) = &p.mras_uri {
        w.leaf("mrasUri", m);
    }
    for (name, value) in [
        ("absWebServiceEnabled", "false"),
        ("dlxEnabled", "false"),
        ("organization", p.organization.as_str()),
        ("poolUri", p.pool_uri.as_str()),
        ("ucPortRangeEnabled", "false"),
        ("ucPC2PCAVEncryption", "SupportEncryption"),
        ("qosEnabled", "false"),
        ("enableInCallQoS", "false"),
        ("ucEnableSIPSecurityMode", "High"),
        ("ucEnforcePinLock", "false"),
        ("enableBWPolicyCheck", "false"),
    ] {
        w.leaf(name, value);
    }
    w.end();
    w.start("provisionGroup").attr("name", "meetingPolicy").end();
    w.start("provisionGroup").attr("name", "persistentChatConfiguration");
    w.start("propertyEntryList");
    w.start("property").attr("name", "EnablePersistentChat").text("false").end();
    w.end().end();
    w.start("provisionGroup").attr("name", "ucPolicy").end();
    w.finish()
}

/// The LCS 2005 provisioning answer: the user, no phone line.
pub fn provisioning_2005(aor: &str) -> String {
    let mut w = Writer::new();
    w.start("provision").attr("xmlns", "http://schemas.microsoft.com/2002/09/sip/provisioning");
    w.start("user").attr("uri", no_sip(aor)).end();
    w.finish()
}

/// The full contact list (`contactList`, MS-SIP §2.2.4.1): groups, then contacts (URIs without `sip:`);
/// a list with no group gets the default group `~` (id 1), to which groupless contacts belong.
pub fn contact_list(list: &ContactList) -> String {
    let mut w = Writer::new();
    w.start("contactList").attr("deltaNum", &delta_num(list).to_string());
    let default = default_group(list);
    if list.groups.is_empty() {
        w.start("group").attr("id", "1").attr("name", "~").attr("externalURI", "").end();
    }
    for g in &list.groups {
        w.start("group").attr("id", &g.id.to_string()).attr("name", &g.name).attr("externalURI", "").end();
    }
    for c in &list.contacts {
        w.start("contact")
            .attr("uri", no_sip(&c.uri))
            .attr("name", &c.display_name)
            .attr("groups", &groups_of(c, default))
            .attr("subscribed", if c.subscribed { "true" } else { "false" })
            .attr("externalURI", "")
            .end();
    }
    w.finish()
}

/// `deltaNum`: the list's version, never zero (MS-SIP: deltaNum MUST be non-zero).
pub fn delta_num(list: &ContactList) -> u64 {
    list.version.max(1)
}

fn default_group(list: &ContactList) -> u32 {
    list.groups.first().map_or(1, |g| g.id)
}

fn groups_of(c: &vienna_store::ContactEntry, default: u32) -> String {
    if c.groups.is_empty() {
        return default.to_string();
    }
    c.groups.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
}

/// The difference between two versions of a list (`contactDelta`), or `None` when nothing differs.
pub fn contact_delta(old: &ContactList, new: &ContactList) -> Option<String> {
    let mut w = Writer::new();
    w.start("contactDelta").attr("deltaNum", &delta_num(new).to_string());
    let mut any = false;
    let old_groups: BTreeMap<u32, &str> = old.groups.iter().map(|g| (g.id, g.name.as_str())).collect();
    let new_groups: BTreeMap<u32, &str> = new.groups.iter().map(|g| (g.id, g.name.as_str())).collect();
    for (id, name) in &new_groups {
        match old_groups.get(id) {
            None => {
                w.start("addedGroup").attr("id", &id.to_string()).attr("name", name).end();
                any = true;
            }
            Some(n) if n != name => {
                w.start("modifiedGroup").attr("id", &id.to_string()).attr("name", name).end();
                any = true;
            }
            _ => {}
        }
    }
    let default = default_group(new);
    for c in &new.contacts {
        let tag = match old.contacts.iter().find(|o| o.uri == c.uri) {
            None => "addedContact",
            Some(o) if o != c => "modifiedContact",
            _ => continue,
        };
        let uri = if c.uri.starts_with("sip:") { c.uri.clone() } else { format!("sip:{}", c.uri) };
        w.start(tag)
            .attr("uri", &uri)
            .attr("name", &c.display_name)
            .attr("groups", &groups_of(c, default))
            .attr("subscribed", if c.subscribed { "true" } else { "false" })
            .attr("externalURI", "")
            .end();
        any = true;
    }
    for o in old.contacts.iter().filter(|o| !new.contacts.iter().any(|c| c.uri == o.uri)) {
        let uri = if o.uri.starts_with("sip:") { o.uri.clone() } else { format!("sip:{}", o.uri) };
        w.start("deletedContact").attr("uri", &uri).end();
        any = true;
    }
    for id in old_groups.keys().filter(|id| !new_groups.contains_key(id)) {
        w.start("deletedGroup").attr("id", &id.to_string()).end();
        any = true;
    }
    any.then(|| w.finish())
}

/// One published category instance (MS-PRES §2.2.2): its key, version, expiry type and the XML value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Category {
    /// `name`.
    pub name: String,
    /// `instance`.
    pub instance: u32,
    /// `container`.
    pub container: u32,
    /// `version`.
    pub version: u32,
    /// `expireType`.
    pub expire_type: String,
    /// `publishTime` (UTC, `YYYY-MM-DDTHH:MM:SSZ`).
    pub publish_time: String,
    /// The value element as published (re-serialized).
    pub value: String,
}

/// A container (ACL bucket) and its members (type, value).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Container {
    /// `id`.
    pub id: u32,
    /// `version`.
    pub version: u32,
    /// (`type`, `value`) members.
    pub members: Vec<(String, Option<String>)>,
}

/// A subscriber in the self view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscriber {
    /// Address of record.
    pub uri: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Whether the user has seen it.
    pub acknowledged: bool,
}

/// The self view (`roamingData`, MS-PRES §4.4.3): every category instance the user published plus the
/// server's aggregate state in container 2, the containers, and the subscribers.
pub fn roaming_self(
    aor: &str,
    aggregate: &PresenceState,
    publish_time: &str,
    categories: &[Category],
    containers: &[Container],
    subscribers: &[Subscriber],
) -> String {
    let mut w = Writer::new();
    w.start("roamingData")
        .attr("xmlns", "http://schemas.microsoft.com/2006/09/sip/roaming-self")
        .attr("xmlns:xsi", NS_XSI);
    w.start("categories").attr("xmlns", NS_CATEGORIES).attr("uri", aor);
    for c in categories {
        w.start("category")
            .attr("name", &c.name)
            .attr("instance", &c.instance.to_string())
            .attr("publishTime", &c.publish_time)
            .attr("container", &c.container.to_string())
            .attr("version", &c.version.to_string())
            .attr("expireType", &c.expire_type)
            .raw(&c.value)
            .end();
    }
    w.start("category")
        .attr("name", "state")
        .attr("instance", "0")
        .attr("publishTime", publish_time)
        .attr("container", "2")
        .attr("version", "1")
        .attr("expireType", "user");
    state_element(&mut w, aggregate, "aggregateState");
    w.end();
    w.end();
    w.start("containers").attr("xmlns", "http://schemas.microsoft.com/2006/09/sip/containers");
    for c in containers {
        w.start("container").attr("id", &c.id.to_string()).attr("version", &c.version.to_string());
        for (t, v) in &c.members {
            w.start("member").attr("type", t);
            if let Some(v) = v {
                w.attr("value", no_sip(v));
            }
            w.end();
        }
        w.end();
    }
    w.end();
    w.start("subscribers").attr("xmlns", "http://schemas.microsoft.com/2006/09/sip/presence-subscribers");
    for s in subscribers {
        w.start("subscriber").attr("user", no_sip(&s.uri));
        if let Some(d) = &s.display_name {
            w.attr("displayName", d);
        }
        w.attr("acknowledged", if s.acknowledged { "true" } else { "false" }).attr("type", "sameEnterprise").end();
    }
    w.end();
    w.finish()
}

fn state_element(w: &mut Writer, s: &PresenceState, kind: &str) {
    w.start("state").attr("xmlns", NS_STATE).attr("xmlns:xsi", NS_XSI).attr("xsi:type", kind);
    w.leaf("availability", &s.availability.to_string());
    if let Some(a) = &s.activity {
        w.start("activity").attr("token", a).end();
    }
    w.end();
}

/// The categories a watcher sees of `uri` (MS-PRES `msrtc-event-categories`): the aggregate `state`, the
/// `note` (an empty `note` category clears it) and a `contactCard` with the display name.
pub fn categories(uri: &str, state: &PresenceState, display_name: Option<&str>, publish_time: &str) -> String {
    let mut w = Writer::new();
    w.start("categories").attr("xmlns", NS_CATEGORIES).attr("uri", uri);
    w.start("category").attr("name", "state").attr("instance", "0").attr("publishTime", publish_time);
    state_element(&mut w, state, "aggregateState");
    w.end();
    match &state.note {
        Some(n) => {
            w.start("category").attr("name", "note").attr("instance", "0").attr("publishTime", publish_time);
            w.start("note").attr("xmlns", NS_NOTE);
            w.start("body").attr("type", "personal").attr("uri", "").text(n).end();
            w.end().end();
        }
        None => {
            w.start("category").attr("name", "note").end();
        }
    }
    if let Some(d) = display_name {
        w.start("category").attr("name", "contactCard").attr("instance", "0").attr("publishTime", publish_time);
        w.start("contactCard").attr("xmlns", NS_CONTACTCARD);
        w.start("identity").start("name").leaf("displayName", d).end().end();
        w.end().end();
    }
    w.finish()
}

/// LCS 2005 aggregate numbers (MS-SIP §2.2.1) for an availability: (availability, activity).
pub fn legacy_numbers(availability: u32) -> (u32, u32) {
    match availability {
        0..=4499 => (300, 400),
        4500..=5999 => (300, 200),
        6000..=11999 => (300, 600),
        12000..=14999 => (300, 300),
        15000..=17999 => (300, 100),
        _ => (0, 0),
    }
}

/// A legacy presence document (`text/xml+msrtc.pidf`) for LCS 2005 watchers: aggregate availability
/// and activity, display name, the 2007 number as the user state, and the note.
pub fn msrtc_pidf(uri: &str, state: &PresenceState, display_name: Option<&str>) -> String {
    let (avail, act) = legacy_numbers(state.availability);
    let mut w = Writer::new();
    w.start("presentity").attr("uri", no_sip(uri)).attr("xmlns", "http://schemas.microsoft.com/2002/09/sip/presence");
    w.start("availability").attr("aggregate", &avail.to_string()).attr("description", "").end();
    w.start("activity").attr("aggregate", &act.to_string()).attr("description", "").end();
    if let Some(d) = display_name {
        w.start("displayName").attr("displayName", d).end();
    }
    w.start("userInfo").attr("xmlns:xsi", NS_XSI);
    w.start("states").start("state").attr("avail", &state.availability.to_string()).attr("xsi:type", "userState");
    w.end().end();
    if let Some(n) = &state.note {
        w.leaf("note", n);
    }
    w.end();
    w.finish()
}

/// The fault of a publication whose version is stale (409, MS-PRES): the 1-based index of each
/// conflicting publication and the version the server holds.
pub fn version_fault(conflicts: &[(usize, u32)]) -> String {
    let mut w = Writer::new();
    w.start("Fault").attr("xmlns", "http://schemas.microsoft.com/2006/09/sip/error-fault");
    w.leaf("Faultcode", "Client.BadCall.WrongDelta");
    w.leaf("Reason", "The publication's version is not the current one");
    w.start("details");
    for (index, cur) in conflicts {
        w.start("operation").attr("index", &index.to_string()).attr("curVersion", &cur.to_string()).end();
    }
    w.end();
    w.finish()
}

/// A SOAP response to a contact-list operation (`<m:op>` with optional child elements).
pub fn soap_response(op: &str, children: &[(&str, String)]) -> String {
    let mut w = Writer::new();
    w.start("SOAP-ENV:Envelope").attr("xmlns:SOAP-ENV", "http://schemas.xmlsoap.org/soap/envelope/");
    w.start("SOAP-ENV:Body");
    w.start(&format!("m:{op}")).attr("xmlns:m", "http://schemas.microsoft.com/winrtc/2002/11/sip");
    for (name, value) in children {
        w.leaf(&format!("m:{name}"), value);
    }
    w.finish()
}

/// Watchers waiting for a decision (LCS 2005 `presence.wpending`).
pub fn wpending(watchers: &[(String, Option<String>)]) -> String {
    let mut w = Writer::new();
    w.start("watchers");
    for (uri, d) in watchers {
        w.start("watcher").attr("uri", uri);
        if let Some(d) = d {
            w.attr("displayName", d);
        }
        w.end();
    }
    w.finish()
}

/// The LCS 2005 roaming ACL (`vnd-microsoft-roaming-ACL`): every access control entry.
pub fn roaming_acls(delta: u64, aces: &[vienna_store::Ace]) -> String {
    use vienna_store::{AccessLevel, AceScope};
    let mut w = Writer::new();
    w.start("acls").attr("deltaNum", &delta.max(1).to_string());
    for a in aces {
        let (t, mask) = match &a.scope {
            AceScope::User(u) => ("USER", no_sip(u).to_owned()),
            AceScope::Domain(d) => ("DOMAIN", d.clone()),
            AceScope::Everyone => ("ALL", String::new()),
        };
        let rights = if a.level == AccessLevel::Allow { "AA" } else { "BD" };
        w.start("acl").attr("type", t).attr("mask", &mask).attr("rights", rights).end();
    }
    w.finish()
}

/// A `multipart/related` body for Microsoft clients: the RLMI root part, then one part per resource
/// (Content-ID, Content-Type, body). Unlike the SIMPLE one it names no `Content-Transfer-Encoding`
/// (libpurple's MIME reader, which SIPE uses, knows no `binary`), and every part ends with an empty line
/// before the next delimiter: libpurple cuts four bytes before a delimiter, so a part ending in a single
/// CRLF would lose its last two characters. Returns the body and its Content-Type.
pub fn multipart(boundary: &str, root_cid: &str, rlmi: &str, parts: &[(String, &str, String)]) -> (Vec<u8>, String) {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(rlmi.len() + parts.iter().map(|p| p.2.len() + 96).sum::<usize>() + 96);
    let _ = write!(
        out,
        "--{boundary}\r\nContent-Type: application/rlmi+xml\r\nContent-ID: <{root_cid}>\r\n\r\n{rlmi}\r\n\r\n"
    );
    for (cid, ctype, body) in parts {
        let _ = write!(out, "--{boundary}\r\nContent-Type: {ctype}\r\nContent-ID: <{cid}>\r\n\r\n{body}\r\n\r\n");
    }
    let _ = write!(out, "--{boundary}--\r\n");
    let ctype =
        format!("multipart/related;type=\"application/rlmi+xml\";start=\"<{root_cid}>\";boundary=\"{boundary}\"");
    (out.into_bytes(), ctype)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time.
pub fn utc(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use vienna_store::{ContactEntry, Group};
    use vienna_xml as xml;

    use super::*;

    fn parse(s: &str) -> xml::Element {
        xml::parse(s.as_bytes(), xml::Limits::default()).unwrap()
    }

    fn list(version: u64) -> ContactList {
        ContactList {
            version,
            groups: vec![Group { id: 1, name: "~".into() }, Group { id: 2, name: "Team".into() }],
            contacts: vec![ContactEntry {
                uri: "sip:bob@example.test".into(),
                display_name: "Bob".into(),
                groups: vec![2],
                subscribed: true,
            }],
        }
    }

    #[test]
    fn contact_list_and_deltas() {
        let doc = parse(&contact_list(&list(0)));
        let root = &doc;
        assert_eq!((root.name.as_str(), root.attr("deltaNum")), ("contactList", Some("1")));
        let c = root.children.iter().find(|c| c.name == "contact").unwrap();
        assert_eq!((c.attr("uri"), c.attr("groups")), (Some("bob@example.test"), Some("2")));
        let mut new = list(5);
        new.groups.push(Group { id: 3, name: "Friends".into() });
        new.contacts[0].groups = vec![2, 3];
        new.contacts.push(ContactEntry {
            uri: "sip:carol@example.test".into(),
            display_name: String::new(),
            groups: vec![],
            subscribed: true,
        });
        let delta = parse(&contact_delta(&list(4), &new).unwrap());
        let names: Vec<&str> = delta.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["addedGroup", "modifiedContact", "addedContact"]);
        assert_eq!(delta.children[2].attr("uri"), Some("sip:carol@example.test"));
        assert_eq!(contact_delta(&list(4), &list(4)), None);
        let mut gone = list(6);
        gone.contacts.clear();
        gone.groups.pop();
        let delta = parse(&contact_delta(&list(5), &gone).unwrap());
        let names: Vec<&str> = delta.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["deletedContact", "deletedGroup"]);
    }

    #[test]
    fn self_view_categories_and_legacy() {
        let busy = PresenceState { availability: 6500, activity: None, note: Some("lunch & more".into()) };
        let cat = Category {
            name: "note".into(),
            instance: 0,
            container: 200,
            version: 3,
            expire_type: "static".into(),
            publish_time: utc(0),
            value:
                "<note xmlns=\"http://schemas.microsoft.com/2006/09/sip/note\"><body type=\"personal\">x</body></note>"
                    .into(),
        };
        let containers = [Container { id: 200, version: 1, members: vec![("sameEnterprise".into(), None)] }];
        let subs = [Subscriber { uri: "sip:bob@x".into(), display_name: Some("Bob".into()), acknowledged: false }];
        let doc = parse(&roaming_self("sip:alice@x", &busy, &utc(0), &[cat], &containers, &subs));
        let root = &doc;
        let cats = root.child(NS_CATEGORIES, "categories").unwrap();
        assert_eq!(cats.children.len(), 2);
        let agg = &cats.children[1];
        let state = agg.child(NS_STATE, "state").unwrap();
        assert_eq!(
            (state.attr("type"), state.child(NS_STATE, "availability").unwrap().text.as_str()),
            (Some("aggregateState"), "6500")
        );
        let sub = &root.children[2].children[0];
        assert_eq!((sub.attr("user"), sub.attr("acknowledged")), (Some("bob@x"), Some("false")));

        let doc = parse(&categories("sip:bob@x", &busy, Some("Bob"), &utc(0)));
        let names: Vec<&str> = doc.children.iter().filter_map(|c| c.attr("name")).collect();
        assert_eq!(names, ["state", "note", "contactCard"]);
        let doc = parse(&msrtc_pidf("sip:bob@x", &busy, Some("Bob")));
        let root = &doc;
        assert_eq!(root.attr("uri"), Some("bob@x"));
        assert_eq!(root.children[1].attr("aggregate"), Some("600"));
        assert!(parse(&version_fault(&[(1, 4)])).name == "Fault");
        assert!(parse(&provisioning_v2(&Provisioning::default())).children.len() == 4);
    }

    #[test]
    fn utc_times() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
    }
}
