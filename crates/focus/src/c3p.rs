//! C3P, the Centralized Conference Control Protocol (`application/cccp+xml`, MS-CONFPRO §2.2.2–§2.2.3,
//! MS-CONFBAS §2.2.3): the request envelope and the commands a focus factory and a focus answer, and the
//! response envelope.
//!
//! Commands understood: addConference, getConference, deleteConference, getConferencingCapabilities
//! (focus factory); addUser, deleteUser, modifyEndpointMedia, modifyConferenceLock, modifyUserRoles,
//! getConference (focus). Elements are matched by local name, as clients do (SIPE); others are
//! [`Command::Other`] and answered with a failure. Left out: dial-out addUser, lobby, PSTN fields.

use vienna_xml::{Element, Limits, Writer};

use crate::error::C3pError;

/// The C3P namespace.
pub const NS_CCCP: &str = "urn:ietf:params:xml:ns:cccp";
/// RFC 4575 conference-info.
pub const NS_CI: &str = "urn:ietf:params:xml:ns:conference-info";
/// Microsoft conference-info extensions (2005).
pub const NS_MSCI: &str = "http://schemas.microsoft.com/rtc/2005/08/confinfoextensions";
/// Microsoft C3P extensions.
pub const NS_MSCP: &str = "http://schemas.microsoft.com/rtc/2005/08/cccpextensions";
/// Largest C3P body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// A parsed C3P request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `requestId`, echoed in the response.
    pub request_id: String,
    /// `from`: the sender's URI.
    pub from: String,
    /// `to`: the focus factory's or focus's URI.
    pub to: String,
    /// The command.
    pub command: Command,
}

/// Keys naming a user (and optionally an endpoint and media) of a conference.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keys {
    /// `confEntity`: the focus URI.
    pub conf_entity: String,
    /// `userEntity`.
    pub user_entity: Option<String>,
    /// `endpointEntity`.
    pub endpoint_entity: Option<String>,
    /// `mediaId`.
    pub media_id: Option<String>,
}

/// One C3P command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Create a conference (focus factory).
    AddConference {
        /// Subject, possibly empty.
        subject: String,
        /// The id the client proposes.
        conference_id: Option<String>,
        /// `msci:expiry-time`, as sent.
        expiry_time: Option<String>,
        /// `msci:admission-policy`.
        admission_policy: Option<String>,
    },
    /// The conference document (`conferenceKeys` names it).
    GetConference {
        /// Which conference: the focus URI, or the organizer's conference id.
        keys: Keys,
        /// `msci:conference-id` of the keys, if given that way.
        conference_id: Option<String>,
    },
    /// End a conference.
    DeleteConference {
        /// Which conference.
        keys: Keys,
    },
    /// What the focus factory offers (MCU types).
    GetConferencingCapabilities,
    /// Join (in the focus INVITE).
    AddUser {
        /// Which conference.
        keys: Keys,
        /// The user's URI.
        user: String,
        /// Roles asked for.
        roles: Vec<String>,
        /// The endpoint entity (the client's GUID), if joining.
        endpoint: Option<String>,
    },
    /// Eject a user.
    DeleteUser {
        /// Conference and user.
        keys: Keys,
    },
    /// Mute or unmute a user's media.
    ModifyEndpointMedia {
        /// Conference, user, endpoint and media id.
        keys: Keys,
        /// `sendrecv`, `recvonly`, `sendonly` or `inactive`.
        status: Option<String>,
        /// `block` or `unblock`.
        ingress_filter: Option<String>,
    },
    /// Lock or unlock.
    ModifyConferenceLock {
        /// Which conference.
        keys: Keys,
        /// The new state.
        locked: bool,
    },
    /// Change a user's roles.
    ModifyUserRoles {
        /// Conference and user.
        keys: Keys,
        /// The new roles.
        roles: Vec<String>,
    },
    /// A command this focus does not implement (its element name).
    Other(String),
}

impl Command {
    /// The command's element name (also the child of the response).
    pub fn name(&self) -> &str {
        match self {
            Command::AddConference { .. } => "addConference",
            Command::GetConference { .. } => "getConference",
            Command::DeleteConference { .. } => "deleteConference",
            Command::GetConferencingCapabilities => "getConferencingCapabilities",
            Command::AddUser { .. } => "addUser",
            Command::DeleteUser { .. } => "deleteUser",
            Command::ModifyEndpointMedia { .. } => "modifyEndpointMedia",
            Command::ModifyConferenceLock { .. } => "modifyConferenceLock",
            Command::ModifyUserRoles { .. } => "modifyUserRoles",
            Command::Other(name) => name,
        }
    }
}

fn child<'a>(e: &'a Element, name: &str) -> Option<&'a Element> {
    e.children.iter().find(|c| c.name == name)
}

fn descendant<'a>(e: &'a Element, name: &str) -> Option<&'a Element> {
    e.children.iter().find_map(|c| if c.name == name { Some(c) } else { descendant(c, name) })
}

fn keys(command: &Element, element: &str) -> Keys {
    let k = child(command, element).or_else(|| descendant(command, element));
    let attr = |n: &str| k.and_then(|k| k.attr(n)).map(str::to_owned);
    Keys {
        conf_entity: attr("confEntity").unwrap_or_default(),
        user_entity: attr("userEntity"),
        endpoint_entity: attr("endpointEntity"),
        media_id: attr("mediaId"),
    }
}

fn roles(e: Option<&Element>) -> Vec<String> {
    e.map(|r| r.children.iter().filter(|c| c.name == "entry").map(|c| c.text.trim().to_owned()).collect())
        .unwrap_or_default()
}

fn text(e: Option<&Element>) -> Option<String> {
    e.map(|e| e.text.trim().to_owned())
}

/// Parses a C3P request body.
pub fn parse(body: &[u8]) -> Result<Request, C3pError> {
    if body.len() > MAX_BODY {
        return Err(C3pError::Xml(vienna_xml::XmlError::TooLarge("C3P body")));
    }
    let limits = Limits { max_depth: 16, max_elements: 512, max_attributes: 16, max_text: 4096 };
    let root = vienna_xml::parse(body, limits)?;
    if root.name != "request" {
        return Err(C3pError::NotC3p("the root element is not <request>"));
    }
    let attr = |n: &str| root.attr(n).unwrap_or("").to_owned();
    let [cmd] = root.children.as_slice() else {
        return Err(C3pError::NotC3p("a request has exactly one command"));
    };
    let command = match cmd.name.as_str() {
        "addConference" => {
            let info = child(cmd, "conference-info");
            let desc = info.and_then(|i| child(i, "conference-description"));
            Command::AddConference {
                subject: text(desc.and_then(|d| child(d, "subject"))).unwrap_or_default(),
                conference_id: text(desc.and_then(|d| child(d, "conference-id"))),
                expiry_time: text(desc.and_then(|d| child(d, "expiry-time"))),
                admission_policy: text(desc.and_then(|d| child(d, "admission-policy"))),
            }
        }
        "getConference" => Command::GetConference {
            keys: keys(cmd, "conferenceKeys"),
            conference_id: child(cmd, "conferenceKeys").and_then(|k| k.attr("conference-id")).map(str::to_owned),
        },
        "deleteConference" => Command::DeleteConference { keys: keys(cmd, "conferenceKeys") },
        "getConferencingCapabilities" => Command::GetConferencingCapabilities,
        "addUser" => {
            let user = child(cmd, "user").ok_or(C3pError::Missing { command: "addUser", field: "user" })?;
            Command::AddUser {
                keys: keys(cmd, "conferenceKeys"),
                user: user.attr("entity").unwrap_or("").to_owned(),
                roles: roles(child(user, "roles")),
                endpoint: child(user, "endpoint").and_then(|e| e.attr("entity")).map(str::to_owned),
            }
        }
        "deleteUser" => Command::DeleteUser { keys: keys(cmd, "userKeys") },
        "modifyEndpointMedia" => {
            let media = child(cmd, "media");
            Command::ModifyEndpointMedia {
                keys: keys(cmd, "mediaKeys"),
                status: text(media.and_then(|m| child(m, "status"))),
                ingress_filter: text(media.and_then(|m| child(m, "media-ingress-filter"))),
            }
        }
        "modifyConferenceLock" => {
            let locked = text(child(cmd, "locked"))
                .ok_or(C3pError::Missing { command: "modifyConferenceLock", field: "locked" })?;
            Command::ModifyConferenceLock { keys: keys(cmd, "conferenceKeys"), locked: locked == "true" }
        }
        "modifyUserRoles" => {
            Command::ModifyUserRoles { keys: keys(cmd, "userKeys"), roles: roles(child(cmd, "user-roles")) }
        }
        other => Command::Other(other.to_owned()),
    };
    Ok(Request { request_id: attr("requestId"), from: attr("from"), to: attr("to"), command })
}

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `code="success"`; the command element's content (already-escaped XML), if any.
    Success(Option<String>),
    /// `code="failure"` with this reason.
    Failure(String),
}

/// The C3P response to `request` (`from` and `to` swapped).
pub fn response(request: &Request, outcome: &Outcome) -> String {
    let mut w = Writer::new();
    w.start("response")
        .attr("xmlns", NS_CCCP)
        .attr("xmlns:msci", NS_MSCI)
        .attr("xmlns:ci", NS_CI)
        .attr("C3PVersion", "1")
        .attr("requestId", &request.request_id)
        .attr("from", &request.to)
        .attr("to", &request.from);
    match outcome {
        Outcome::Success(content) => {
            w.attr("code", "success");
            w.start(request.command.name());
            if let Some(content) = content {
                w.raw(content);
            }
        }
        Outcome::Failure(reason) => {
            w.attr("code", "failure");
            w.start(request.command.name()).attr("reason", reason);
        }
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADD_USER: &str = r#"<?xml version="1.0"?>
<request xmlns="urn:ietf:params:xml:ns:cccp" xmlns:mscp="http://schemas.microsoft.com/rtc/2005/08/cccpextensions" C3PVersion="1" to="sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:ABCD1234" from="sip:bob@contoso.com" requestId="2">
  <addUser>
    <conferenceKeys confEntity="sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:ABCD1234"/>
    <ci:user xmlns:ci="urn:ietf:params:xml:ns:conference-info" entity="sip:bob@contoso.com">
      <ci:roles><ci:entry>attendee</ci:entry></ci:roles>
      <ci:endpoint entity="{A1B2C3D4-0000}" xmlns:msci="http://schemas.microsoft.com/rtc/2005/08/confinfoextensions"/>
    </ci:user>
  </addUser>
</request>"#;

    #[test]
    fn add_user_parses_and_is_answered() {
        let r = parse(ADD_USER.as_bytes()).unwrap();
        assert_eq!(r.request_id, "2");
        assert_eq!(r.from, "sip:bob@contoso.com");
        let Command::AddUser { keys, user, roles, endpoint } = &r.command else { panic!("{r:?}") };
        assert_eq!(keys.conf_entity, r.to);
        assert_eq!(user, "sip:bob@contoso.com");
        assert_eq!(roles, &["attendee"]);
        assert_eq!(endpoint.as_deref(), Some("{A1B2C3D4-0000}"));
        let ok = response(&r, &Outcome::Success(Some("<ci:user entity=\"x\"/>".into())));
        let back = vienna_xml::parse(ok.as_bytes(), Limits::default()).unwrap();
        assert_eq!(back.attr("code"), Some("success"));
        assert_eq!(back.attr("to"), Some("sip:bob@contoso.com"));
        assert_eq!(back.attr("requestId"), Some("2"));
        assert_eq!(back.children[0].name, "addUser");
        assert_eq!(back.children[0].children[0].attr("entity"), Some("x"));
        let failed = response(&r, &Outcome::Failure("conferenceLocked".into()));
        let back = vienna_xml::parse(failed.as_bytes(), Limits::default()).unwrap();
        assert_eq!(back.attr("code"), Some("failure"));
        assert_eq!(back.children[0].attr("reason"), Some("conferenceLocked"));
    }

    #[test]
    fn add_conference_and_mute_parse() {
        let add = r#"<request xmlns="urn:ietf:params:xml:ns:cccp" C3PVersion="1" to="sip:alice@contoso.com;gruu;opaque=app:conf:focusfactory" from="sip:alice@contoso.com" requestId="1"><addConference><ci:conference-info xmlns:ci="urn:ietf:params:xml:ns:conference-info" entity="" xmlns:msci="http://schemas.microsoft.com/rtc/2005/08/confinfoextensions"><ci:conference-description><ci:subject>Weekly</ci:subject><msci:conference-id>8386E6AEAAA41E4AA6627BA76D43B6D1</msci:conference-id><msci:expiry-time>2009-07-13T17:57:09Z</msci:expiry-time><msci:admission-policy>openAuthenticated</msci:admission-policy></ci:conference-description></ci:conference-info></addConference></request>"#;
        let r = parse(add.as_bytes()).unwrap();
        assert_eq!(
            r.command,
            Command::AddConference {
                subject: "Weekly".into(),
                conference_id: Some("8386E6AEAAA41E4AA6627BA76D43B6D1".into()),
                expiry_time: Some("2009-07-13T17:57:09Z".into()),
                admission_policy: Some("openAuthenticated".into()),
            }
        );
        let mute = r#"<request xmlns="urn:ietf:params:xml:ns:cccp" C3PVersion="1" to="f" from="sip:bob@contoso.com" requestId="9"><modifyEndpointMedia mscp:mcuUri="m" xmlns:mscp="http://schemas.microsoft.com/rtc/2005/08/cccpextensions"><mediaKeys confEntity="f" userEntity="sip:bob@contoso.com" endpointEntity="e1" mediaId="1"/><ci:media xmlns:ci="urn:ietf:params:xml:ns:conference-info" id="1"><ci:type>audio</ci:type><ci:status>recvonly</ci:status><media-ingress-filter xmlns="http://schemas.microsoft.com/rtc/2005/08/confinfoextensions">block</media-ingress-filter></ci:media></modifyEndpointMedia></request>"#;
        let Command::ModifyEndpointMedia { keys, status, ingress_filter } = parse(mute.as_bytes()).unwrap().command
        else {
            panic!()
        };
        assert_eq!(keys.user_entity.as_deref(), Some("sip:bob@contoso.com"));
        assert_eq!(keys.media_id.as_deref(), Some("1"));
        assert_eq!(status.as_deref(), Some("recvonly"));
        assert_eq!(ingress_filter.as_deref(), Some("block"));
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert!(parse(b"").is_err());
        assert!(parse(b"<response/>").is_err());
        assert!(parse(b"<request><a/><b/></request>").is_err());
        assert!(parse(b"<request><addUser/></request>").is_err());
        assert!(parse(b"<request><modifyConferenceLock/></request>").is_err());
        assert_eq!(parse(b"<request><doSomething/></request>").unwrap().command, Command::Other("doSomething".into()));
        assert!(parse(&vec![b'x'; MAX_BODY + 1]).is_err());
    }
}
