//! The other documents a presence server writes: watcher information (RFC 3858,
//! `application/watcherinfo+xml`), resource list meta-information (RFC 4662 §5,
//! `application/rlmi+xml`) and the `multipart/related` body (RFC 2387) that carries RLMI with one PIDF
//! part per resource.

use std::fmt::Write as _;

use vienna_xml::escape;

/// Content type of watcher information.
pub const WINFO_CONTENT_TYPE: &str = "application/watcherinfo+xml";
/// Content type of RLMI.
pub const RLMI_CONTENT_TYPE: &str = "application/rlmi+xml";

/// Status of a watcher (RFC 3857 §3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatcherStatus {
    /// Subscribed, waiting for the user's decision.
    Pending,
    /// Subscribed and authorized (also a politely blocked watcher, who sees Offline).
    Active,
    /// Asked before, no live subscription, still undecided.
    Waiting,
    /// Refused.
    Terminated,
}

impl WatcherStatus {
    fn as_str(self) -> &'static str {
        match self {
            WatcherStatus::Pending => "pending",
            WatcherStatus::Active => "active",
            WatcherStatus::Waiting => "waiting",
            WatcherStatus::Terminated => "terminated",
        }
    }

    fn event(self) -> &'static str {
        match self {
            WatcherStatus::Pending | WatcherStatus::Waiting => "subscribe",
            WatcherStatus::Active => "approved",
            WatcherStatus::Terminated => "rejected",
        }
    }
}

/// One watcher entry of a watcher-list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatcherEntry {
    /// Watcher URI.
    pub uri: String,
    /// Identifier, stable for the subscription (RFC 3858 §4.4).
    pub id: String,
    /// Status.
    pub status: WatcherStatus,
    /// Display name, if known.
    pub display_name: Option<String>,
}

/// A full-state watcherinfo document for `resource`'s presence watchers.
pub fn watcherinfo(resource: &str, version: u32, watchers: &[WatcherEntry]) -> String {
    let mut out = String::with_capacity(256 + watchers.len() * 128);
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<watcherinfo xmlns=\"urn:ietf:params:xml:ns:watcherinfo\" \
         version=\"{version}\" state=\"full\">\n<watcher-list resource=\"{}\" package=\"presence\">\n",
        escape(resource)
    );
    for w in watchers {
        let _ = write!(
            out,
            "<watcher id=\"{}\" event=\"{}\" status=\"{}\"",
            escape(&w.id),
            w.status.event(),
            w.status.as_str()
        );
        if let Some(d) = &w.display_name {
            let _ = write!(out, " display-name=\"{}\"", escape(d));
        }
        let _ = writeln!(out, ">{}</watcher>", escape(&w.uri));
    }
    out.push_str("</watcher-list>\n</watcherinfo>\n");
    out
}

/// State of one resource in an RLMI document (RFC 4662 §5.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstanceState {
    /// Active: a PIDF part with this Content-ID follows.
    Active(String),
    /// Pending authorization: no part.
    Pending,
    /// Terminated, with a reason (`rejected`, `noresource`).
    Terminated(&'static str),
}

/// One resource of an RLMI document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource<'a> {
    /// Resource URI.
    pub uri: &'a str,
    /// Instance id (stable per resource).
    pub instance: String,
    /// State.
    pub state: InstanceState,
}

/// An RLMI document.
pub fn rlmi(list_uri: &str, version: u32, full_state: bool, resources: &[Resource<'_>]) -> String {
    let mut out = String::with_capacity(200 + resources.len() * 120);
    let _ = writeln!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<list xmlns=\"urn:ietf:params:xml:ns:rlmi\" uri=\"{}\" \
         version=\"{version}\" fullState=\"{full_state}\">",
        escape(list_uri)
    );
    for r in resources {
        let _ = write!(out, "<resource uri=\"{}\"><instance id=\"{}\" ", escape(r.uri), escape(&r.instance));
        match &r.state {
            InstanceState::Active(cid) => {
                let _ = write!(out, "state=\"active\" cid=\"{}\"", escape(cid));
            }
            InstanceState::Pending => out.push_str("state=\"pending\""),
            InstanceState::Terminated(reason) => {
                let _ = write!(out, "state=\"terminated\" reason=\"{reason}\"");
            }
        }
        out.push_str("/></resource>\n");
    }
    out.push_str("</list>\n");
    out
}

/// Builds a `multipart/related` body: the root part (RLMI) with Content-ID `root_cid`, then `parts`
/// (Content-ID, Content-Type, body). Returns the body and its Content-Type header value.
pub fn multipart_related(
    boundary: &str,
    root_cid: &str,
    root: &str,
    parts: &[(String, &str, String)],
) -> (Vec<u8>, String) {
    let mut out = String::with_capacity(root.len() + parts.iter().map(|p| p.2.len() + 128).sum::<usize>() + 128);
    let mut part = |cid: &str, ctype: &str, body: &str| {
        let _ = write!(
            out,
            "--{boundary}\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <{cid}>\r\nContent-Type: {ctype};charset=\"UTF-8\"\r\n\r\n{body}\r\n"
        );
    };
    part(root_cid, RLMI_CONTENT_TYPE, root);
    for (cid, ctype, body) in parts {
        part(cid, ctype, body);
    }
    let _ = write!(out, "--{boundary}--\r\n");
    let content_type =
        format!("multipart/related;type=\"{RLMI_CONTENT_TYPE}\";start=\"<{root_cid}>\";boundary=\"{boundary}\"");
    (out.into_bytes(), content_type)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vienna_xml as xml;

    #[test]
    fn documents_are_well_formed() {
        let w = watcherinfo(
            "sip:alice@example.com",
            3,
            &[WatcherEntry {
                uri: "sip:bob@example.com".into(),
                id: "w1".into(),
                status: WatcherStatus::Pending,
                display_name: Some("Bob & co".into()),
            }],
        );
        let root = xml::parse(w.as_bytes(), xml::Limits::default()).unwrap();
        let list = root.child("urn:ietf:params:xml:ns:watcherinfo", "watcher-list").unwrap();
        let watcher = &list.children[0];
        assert_eq!((watcher.attr("status"), watcher.text.as_str()), (Some("pending"), "sip:bob@example.com"));
        let r = rlmi(
            "sip:alice@example.com",
            0,
            true,
            &[
                Resource { uri: "sip:bob@x", instance: "i1".into(), state: InstanceState::Active("c1@x".into()) },
                Resource { uri: "sip:carol@x", instance: "i2".into(), state: InstanceState::Pending },
            ],
        );
        assert!(xml::parse(r.as_bytes(), xml::Limits::default()).is_ok());
        let (body, ctype) =
            multipart_related("b1", "root@x", &r, &[("c1@x".into(), "application/pidf+xml", "<p/>".into())]);
        let body = String::from_utf8(body).unwrap();
        assert!(ctype.contains("boundary=\"b1\"") && ctype.contains("start=\"<root@x>\""));
        assert_eq!(body.matches("--b1\r\n").count(), 2);
        assert!(body.ends_with("--b1--\r\n"));
    }
}
