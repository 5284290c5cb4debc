//! The request bodies Microsoft clients send, read with the bounded reader of `vienna-xml` (no DTDs, no
//! entity expansion): category publications (MS-PRES `msrtc-category-publish`), container membership
//! (`msrtc-setcontainermembers`), subscriber acknowledgements (`msrtc-presence-setsubscriber`), the SOAP
//! contact-list operations of MS-SIP §3.7 (setContact, deleteContact, addGroup, modifyGroup, deleteGroup,
//! setACE) and the resource lists of batched SUBSCRIBEs (`adrl`, `msrtc-adrl-categorylist`).
//!
//! Element names are matched by local name: clients differ in prefixes and SIPE in namespaces.

use vienna_xml::{self as xml, Element};

/// Largest body accepted.
pub const MAX_BODY: usize = 65_536;

/// Content type of category publications.
pub const CATEGORY_PUBLISH: &str = "application/msrtc-category-publish+xml";
/// Content type of container membership changes.
pub const SET_CONTAINER_MEMBERS: &str = "application/msrtc-setcontainermembers+xml";
/// Content type of subscriber acknowledgements.
pub const SET_SUBSCRIBER: &str = "application/msrtc-presence-setsubscriber+xml";
/// Content type of SOAP operations.
pub const SOAP: &str = "application/SOAP+xml";
/// Content type of a 2007 batched subscription.
pub const ADRL_CATEGORYLIST: &str = "application/msrtc-adrl-categorylist+xml";
/// Content type of a 2005 batched subscription.
pub const ADRL: &str = "application/adrl+xml";

/// Why a body was refused (answered 400, or 413 for size).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyError(pub String);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad(s: impl Into<String>) -> BodyError {
    BodyError(s.into())
}

fn limits() -> xml::Limits {
    xml::Limits { max_depth: 24, max_elements: 4096, max_attributes: 32, max_text: 16_384 }
}

/// Parses `body` and returns its root element.
pub fn root(body: &[u8]) -> Result<Element, BodyError> {
    if body.len() > MAX_BODY {
        return Err(bad("body too large"));
    }
    xml::parse(body, limits()).map_err(|e| bad(e.to_string()))
}

fn children<'a>(e: &'a Element, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
    e.children.iter().filter(move |c| c.name == name)
}

fn child<'a>(e: &'a Element, name: &str) -> Option<&'a Element> {
    e.children.iter().find(|c| c.name == name)
}

fn number(e: &Element, name: &str) -> Result<Option<u32>, BodyError> {
    e.attr(name).map(|v| v.trim().parse().map_err(|_| bad(format!("{name} is not a number")))).transpose()
}

/// Writes `e` back as markup: the element with its namespace as default `xmlns` (re-declared where a
/// child's namespace differs), attributes (`type` on `state` as `xsi:type`) and text.
pub fn serialize(e: &Element) -> String {
    let mut w = xml::Writer::fragment();
    write_element(&mut w, e, "");
    w.finish()
}

fn write_element(w: &mut xml::Writer, e: &Element, parent_ns: &str) {
    w.start(&e.name);
    if e.ns != parent_ns {
        w.attr("xmlns", &e.ns);
    }
    let mut xsi = false;
    for (n, v) in &e.attrs {
        if n == "type" && e.name == "state" {
            if !xsi {
                w.attr("xmlns:xsi", "http://www.w3.org/2001/XMLSchema-instance");
                xsi = true;
            }
            w.attr("xsi:type", v);
        } else if !n.starts_with("xmlns") {
            w.attr(n, v);
        }
    }
    if !e.text.trim().is_empty() {
        w.text(&e.text);
    }
    for c in &e.children {
        write_element(w, c, &e.ns);
    }
    w.end();
}

/// One publication of a category-publish request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publication {
    /// `categoryName`.
    pub name: String,
    /// `instance`.
    pub instance: u32,
    /// `container`.
    pub container: u32,
    /// `version` the client last saw (0: new).
    pub version: u32,
    /// `expireType` (`static`, `user`, `endpoint`, `time`).
    pub expire_type: String,
    /// `expires="0"`: a removal.
    pub remove: bool,
    /// The value element, re-serialized (empty for a removal).
    pub value: String,
    /// For `state`: the `xsi:type`, `manual`, availability and activity token.
    pub state: Option<StateValue>,
    /// For `note`: the body text (None for an empty note).
    pub note: Option<String>,
}

/// What a published `state` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateValue {
    /// `userState`, `machineState`, `phoneState`, `calendarState`...
    pub kind: String,
    /// Availability number, if any.
    pub availability: Option<u32>,
    /// Activity token, if any.
    pub activity: Option<String>,
}

/// Parses an `msrtc-category-publish` body (MS-PRES §2.2.1.1): `publish/publications/publication`.
pub fn parse_publish(body: &[u8]) -> Result<(Option<String>, Vec<Publication>), BodyError> {
    let root = root(body)?;
    if root.name != "publish" {
        return Err(bad("not a publish document"));
    }
    let pubs = child(&root, "publications").ok_or_else(|| bad("no publications"))?;
    let uri = pubs.attr("uri").map(str::to_owned);
    let mut out = Vec::new();
    for p in children(pubs, "publication") {
        let name = p.attr("categoryName").ok_or_else(|| bad("publication without categoryName"))?.to_owned();
        if name.is_empty() || name.len() > 64 {
            return Err(bad("bad categoryName"));
        }
        let value_el = p.children.first();
        let remove = p.attr("expires").is_some_and(|e| e.trim() == "0");
        let state = value_el.filter(|v| v.name == "state").map(|v| StateValue {
            kind: v.attr("type").unwrap_or_default().to_owned(),
            availability: child(v, "availability").and_then(|a| a.text.trim().parse().ok()),
            activity: child(v, "activity").and_then(|a| a.attr("token")).filter(|t| !t.is_empty()).map(str::to_owned),
        });
        let note = value_el
            .filter(|v| v.name == "note")
            .and_then(|v| child(v, "body"))
            .map(|b| b.text.trim().to_owned())
            .filter(|t| !t.is_empty());
        out.push(Publication {
            name,
            instance: number(p, "instance")?.unwrap_or(0),
            container: number(p, "container")?.ok_or_else(|| bad("publication without container"))?,
            version: number(p, "version")?.unwrap_or(0),
            expire_type: p.attr("expireType").unwrap_or("static").to_owned(),
            remove,
            value: if remove { String::new() } else { value_el.map(serialize).unwrap_or_default() },
            state,
            note,
        });
    }
    if out.is_empty() {
        return Err(bad("no publication"));
    }
    Ok((uri, out))
}

/// A change of one container's membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerChange {
    /// Container id.
    pub id: u32,
    /// Version the client last saw.
    pub version: u32,
    /// (`add`|`remove`, type, value).
    pub members: Vec<(String, String, Option<String>)>,
}

/// Parses `setContainerMembers`.
pub fn parse_container_members(body: &[u8]) -> Result<Vec<ContainerChange>, BodyError> {
    let root = root(body)?;
    if root.name != "setContainerMembers" {
        return Err(bad("not a setContainerMembers document"));
    }
    children(&root, "container")
        .map(|c| {
            Ok(ContainerChange {
                id: number(c, "id")?.ok_or_else(|| bad("container without id"))?,
                version: number(c, "version")?.unwrap_or(0),
                members: children(c, "member")
                    .map(|m| {
                        (
                            m.attr("action").unwrap_or("add").to_owned(),
                            m.attr("type").unwrap_or("user").to_owned(),
                            m.attr("value").map(str::to_owned),
                        )
                    })
                    .collect(),
            })
        })
        .collect()
}

/// Parses `setSubscribers`: (user, acknowledged).
pub fn parse_set_subscribers(body: &[u8]) -> Result<Vec<(String, bool)>, BodyError> {
    let root = root(body)?;
    if root.name != "setSubscribers" {
        return Err(bad("not a setSubscribers document"));
    }
    Ok(children(&root, "subscriber")
        .filter_map(|s| Some((s.attr("user")?.to_owned(), s.attr("acknowledged") == Some("true"))))
        .collect())
}

/// A SOAP contact-list operation (MS-SIP §3.7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SoapOp {
    /// Adds or changes a contact.
    SetContact {
        /// `URI`.
        uri: String,
        /// `displayName`.
        display_name: String,
        /// `groups`.
        groups: Vec<u32>,
        /// `subscribed`.
        subscribed: bool,
    },
    /// Removes a contact.
    DeleteContact {
        /// `URI`.
        uri: String,
    },
    /// Adds a group.
    AddGroup {
        /// `name`.
        name: String,
    },
    /// Renames a group.
    ModifyGroup {
        /// `groupID`.
        id: u32,
        /// `name`.
        name: String,
    },
    /// Removes a group.
    DeleteGroup {
        /// `groupID`.
        id: u32,
    },
    /// An LCS 2005 access control entry: `type` (USER, DOMAIN, ALL), `mask`, `rights` (AA allow, BD block).
    SetAce {
        /// `type`.
        kind: String,
        /// `mask`.
        mask: String,
        /// Allow (true) or block.
        allow: bool,
    },
    /// LCS 2005 `setPresence`: aggregate availability and activity numbers, and the note.
    SetPresence {
        /// `availability aggregate`.
        availability: u32,
        /// `activity aggregate`.
        activity: u32,
        /// userInfo state `avail` (a 2007 number), if any.
        user_avail: Option<u32>,
        /// Note.
        note: Option<String>,
    },
}

/// Parses a SOAP body: `Envelope/Body/<operation>`; returns the operation and its `deltaNum`.
pub fn parse_soap(body: &[u8]) -> Result<(SoapOp, Option<u64>), BodyError> {
    let root = root(body)?;
    if root.name != "Envelope" {
        return Err(bad("not a SOAP envelope"));
    }
    let op = child(&root, "Body").and_then(|b| b.children.first()).ok_or_else(|| bad("empty SOAP body"))?;
    let text = |name: &str| child(op, name).map(|c| c.text.trim().to_owned());
    let required = |name: &str| text(name).filter(|t| !t.is_empty()).ok_or_else(|| bad(format!("{name} missing")));
    let id = |name: &str| -> Result<u32, BodyError> {
        required(name)?.parse().map_err(|_| bad(format!("{name} is not a number")))
    };
    let delta = text("deltaNum").and_then(|d| d.parse().ok());
    let parsed = match op.name.as_str() {
        "setContact" => SoapOp::SetContact {
            uri: required("URI")?,
            display_name: text("displayName").unwrap_or_default(),
            groups: text("groups")
                .unwrap_or_default()
                .split_whitespace()
                .map(|g| g.parse().map_err(|_| bad("groups holds a non-number")))
                .collect::<Result<_, _>>()?,
            subscribed: text("subscribed").is_none_or(|s| s.eq_ignore_ascii_case("true")),
        },
        "deleteContact" => SoapOp::DeleteContact { uri: required("URI")? },
        "addGroup" => SoapOp::AddGroup { name: required("name")? },
        "modifyGroup" => SoapOp::ModifyGroup { id: id("groupID")?, name: required("name")? },
        "deleteGroup" => SoapOp::DeleteGroup { id: id("groupID")? },
        "setACE" => {
            let ace = child(op, "ace").unwrap_or(op);
            let get = |n: &str| child(ace, n).map(|c| c.text.trim().to_owned()).unwrap_or_default();
            SoapOp::SetAce { kind: get("type"), mask: get("mask"), allow: get("rights").eq_ignore_ascii_case("AA") }
        }
        "setPresence" => {
            let p = child(op, "presentity").ok_or_else(|| bad("presentity missing"))?;
            let agg = |n: &str| child(p, n).and_then(|e| e.attr("aggregate")).and_then(|v| v.parse().ok());
            let info = child(p, "userInfo");
            SoapOp::SetPresence {
                availability: agg("availability").unwrap_or(300),
                activity: agg("activity").unwrap_or(400),
                user_avail: info
                    .and_then(|i| child(i, "states"))
                    .and_then(|s| child(s, "state"))
                    .and_then(|s| s.attr("avail"))
                    .and_then(|v| v.parse().ok()),
                note: info.and_then(|i| child(i, "note")).map(|n| n.text.trim().to_owned()).filter(|n| !n.is_empty()),
            }
        }
        other => return Err(bad(format!("unknown SOAP operation {other}"))),
    };
    Ok((parsed, delta))
}

/// The resources of a batched SUBSCRIBE (`batchSub/action/adhocList/resource` or
/// `adhoclist/create/resource`), at most `max`.
pub fn parse_batch(body: &[u8], max: usize) -> Result<Vec<String>, BodyError> {
    let root = root(body)?;
    let mut out = Vec::new();
    let mut push = |e: &Element| {
        for r in children(e, "resource") {
            if let Some(u) = r.attr("uri")
                && out.len() < max
                && !out.iter().any(|o: &String| o == u)
            {
                out.push(u.to_owned());
            }
        }
    };
    match root.name.as_str() {
        "batchSub" => {
            for a in children(&root, "action") {
                if let Some(l) = child(a, "adhocList") {
                    push(l);
                }
            }
        }
        "adhoclist" => {
            for c in children(&root, "create") {
                push(c);
            }
        }
        _ => return Err(bad("not a batched subscription")),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sipe_publication_parses() {
        let body = br#"<publish xmlns="http://schemas.microsoft.com/2006/09/sip/rich-presence"><publications uri="sip:alice@example.test"><publication categoryName="state" instance="536870912" container="2" version="3" expireType="static"><state xmlns="http://schemas.microsoft.com/2006/09/sip/state" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" manual="true" xsi:type="userState"><availability>6500</availability><endpointLocation></endpointLocation></state></publication><publication categoryName="note" instance="0" container="400" version="2" expireType="static" expires="0"/></publications></publish>"#;
        let (uri, pubs) = parse_publish(body).unwrap();
        assert_eq!(uri.as_deref(), Some("sip:alice@example.test"));
        assert_eq!(pubs.len(), 2);
        let s = pubs[0].state.as_ref().unwrap();
        assert_eq!((s.kind.as_str(), s.availability), ("userState", Some(6500)));
        assert_eq!((pubs[0].instance, pubs[0].container, pubs[0].version), (536_870_912, 2, 3));
        assert!(pubs[0].value.contains("xsi:type=\"userState\""));
        assert!(pubs[1].remove);
        // The value round-trips through the reader.
        let again = root(pubs[0].value.as_bytes()).unwrap();
        assert_eq!(again.attr("type"), Some("userState"));
    }

    fn vector(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/../../testvectors/sipe/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn sipe_bodies_as_captured() {
        let (_, pubs) = parse_publish(&vector("sipe-publish-initial.xml")).unwrap();
        let keys: Vec<(&str, u32, u32, &str)> =
            pubs.iter().map(|p| (p.name.as_str(), p.instance, p.container, p.expire_type.as_str())).collect();
        assert_eq!(
            keys,
            [
                ("device", 3_008_035_694, 2, "endpoint"),
                ("state", 993_308_598, 2, "endpoint"),
                ("state", 993_308_598, 3, "endpoint"),
                ("state", 536_870_912, 2, "static"),
                ("state", 536_870_912, 3, "static"),
            ]
        );
        assert!(pubs.iter().all(|p| p.version == 0 && !p.remove));
        let kinds: Vec<&str> = pubs.iter().filter_map(|p| p.state.as_ref()).map(|s| s.kind.as_str()).collect();
        assert_eq!(kinds, ["machineState", "machineState", "userState", "userState"]);
        // Every value reads back after re-serialization (it goes into the self view).
        for p in &pubs {
            let again = root(p.value.as_bytes()).unwrap();
            assert_eq!(again.name, p.name);
        }
        let (_, busy) = parse_publish(&vector("sipe-publish-busy.xml")).unwrap();
        assert!(busy.iter().all(|p| p.version == 1 && p.state.as_ref().unwrap().availability == Some(6500)));
        let members = parse_container_members(&vector("sipe-setcontainermembers.xml")).unwrap();
        assert_eq!(
            members,
            [
                ContainerChange { id: 200, version: 0, members: vec![("add".into(), "sameEnterprise".into(), None)] },
                ContainerChange { id: 100, version: 0, members: vec![("add".into(), "federated".into(), None)] },
            ]
        );
        assert_eq!(parse_batch(&vector("sipe-batch-subscribe.xml"), 10).unwrap(), ["sip:bob@example.test"]);
    }

    #[test]
    fn soap_operations_round_trip() {
        let soap = |op: &str| {
            format!(
                "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:m=\"http://schemas.microsoft.com/winrtc/2002/11/sip\"><s:Body>{op}</s:Body></s:Envelope>"
            )
        };
        let (op, delta) = parse_soap(
            soap("<m:setContact><m:displayName>Bob</m:displayName><m:groups>1 3</m:groups><m:subscribed>true</m:subscribed><m:URI>sip:bob@x</m:URI><m:externalURI/><m:deltaNum>17</m:deltaNum></m:setContact>").as_bytes(),
        )
        .unwrap();
        assert_eq!(
            op,
            SoapOp::SetContact {
                uri: "sip:bob@x".into(),
                display_name: "Bob".into(),
                groups: vec![1, 3],
                subscribed: true
            }
        );
        assert_eq!(delta, Some(17));
        for (body, want) in [
            (
                "<m:deleteContact><m:URI>sip:bob@x</m:URI></m:deleteContact>",
                SoapOp::DeleteContact { uri: "sip:bob@x".into() },
            ),
            (
                "<m:addGroup><m:name>Team</m:name><m:externalURI/></m:addGroup>",
                SoapOp::AddGroup { name: "Team".into() },
            ),
            (
                "<m:modifyGroup><m:groupID>3</m:groupID><m:name>T</m:name></m:modifyGroup>",
                SoapOp::ModifyGroup { id: 3, name: "T".into() },
            ),
            ("<m:deleteGroup><m:groupID>3</m:groupID></m:deleteGroup>", SoapOp::DeleteGroup { id: 3 }),
            (
                "<m:setACE><m:ace><m:type>USER</m:type><m:mask>sip:bob@x</m:mask><m:rights>BD</m:rights></m:ace></m:setACE>",
                SoapOp::SetAce { kind: "USER".into(), mask: "sip:bob@x".into(), allow: false },
            ),
        ] {
            assert_eq!(parse_soap(soap(body).as_bytes()).unwrap().0, want, "{body}");
        }
        let (op, _) = parse_soap(
            soap("<m:setPresence><m:presentity m:uri=\"sip:a@x\"><m:availability m:aggregate=\"300\"/><m:activity m:aggregate=\"600\"/><userInfo><states><state avail=\"9500\"/></states><note>meeting</note></userInfo></m:presentity></m:setPresence>").as_bytes(),
        )
        .unwrap();
        assert_eq!(
            op,
            SoapOp::SetPresence {
                availability: 300,
                activity: 600,
                user_avail: Some(9500),
                note: Some("meeting".into())
            }
        );
        assert!(parse_soap(soap("<m:nothing/>").as_bytes()).is_err());
        assert!(parse_soap(soap("<m:deleteGroup><m:groupID>x</m:groupID></m:deleteGroup>").as_bytes()).is_err());
    }

    #[test]
    fn hostile_bodies_are_refused() {
        assert!(root(b"<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>").is_err(), "no entity expansion");
        assert!(root(&vec![b' '; MAX_BODY + 1]).is_err());
        assert!(parse_publish(b"<publish><publications/></publish>").is_err());
        assert!(parse_publish(b"<publish><publications><publication categoryName=\"state\" container=\"x\"/></publications></publish>").is_err());
        assert!(parse_batch(b"<other/>", 10).is_err());
        let deep = "<a>".repeat(100);
        assert!(root(deep.as_bytes()).is_err());
    }

    #[test]
    fn batch_lists_and_membership() {
        let b = br#"<batchSub xmlns="http://schemas.microsoft.com/2006/01/sip/batch-subscribe" uri="sip:alice@x" name=""><action name="subscribe" id="63792024"><adhocList><resource uri="sip:bob@x"/><resource uri="sip:carol@x"><context/></resource><resource uri="sip:bob@x"/></adhocList></action></batchSub>"#;
        assert_eq!(parse_batch(b, 10).unwrap(), ["sip:bob@x", "sip:carol@x"]);
        assert_eq!(parse_batch(b, 1).unwrap(), ["sip:bob@x"]);
        let m = br#"<setContainerMembers xmlns="http://schemas.microsoft.com/2006/09/sip/container-management"><container id="32000" version="4"><member action="add" type="user" value="mallory@x"/></container></setContainerMembers>"#;
        let c = parse_container_members(m).unwrap();
        assert_eq!((c[0].id, c[0].version), (32000, 4));
        assert_eq!(c[0].members[0], ("add".into(), "user".into(), Some("mallory@x".into())));
        let s = br#"<setSubscribers xmlns="http://schemas.microsoft.com/2006/09/sip/presence-subscribers"><subscriber user="bob@x" acknowledged="true"/></setSubscribers>"#;
        assert_eq!(parse_set_subscribers(s).unwrap(), [("bob@x".to_owned(), true)]);
    }
}
