//! Conference URIs (MS-CONFBAS §2.2.3.4, MS-CONFPRO §2.2.1.2): the organizer's address with
//! `;gruu;opaque=app:conf:<kind>[:id:<conference id>]`, for the focus factory, the focus of a conference
//! and its MCUs. Users may type `conf:sip:...` or `meet:sip:...`, possibly with a `?query`; both are
//! accepted and stripped.

use std::fmt;

/// Which conferencing entity a URI names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConfKind {
    /// The organizer's focus factory (`app:conf:focusfactory`): creates conferences.
    FocusFactory,
    /// The focus of one conference (`app:conf:focus`).
    Focus,
    /// The audio/video MCU of one conference (`app:conf:audio-video`).
    AudioVideo,
    /// The IM MCU (`app:conf:chat`).
    Chat,
    /// The application sharing MCU (`app:conf:applicationsharing`).
    ApplicationSharing,
}

impl ConfKind {
    /// The token in the opaque parameter.
    pub fn token(&self) -> &'static str {
        match self {
            ConfKind::FocusFactory => "focusfactory",
            ConfKind::Focus => "focus",
            ConfKind::AudioVideo => "audio-video",
            ConfKind::Chat => "chat",
            ConfKind::ApplicationSharing => "applicationsharing",
        }
    }

    fn parse(token: &str) -> Option<ConfKind> {
        Some(match token {
            "focusfactory" => ConfKind::FocusFactory,
            "focus" => ConfKind::Focus,
            "audio-video" => ConfKind::AudioVideo,
            "chat" => ConfKind::Chat,
            "applicationsharing" => ConfKind::ApplicationSharing,
            _ => return None,
        })
    }
}

/// A conference URI.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConfUri {
    /// The organizer's address of record, `sip:alice@contoso.com` (lower-cased).
    pub organizer: String,
    /// What the URI names.
    pub kind: ConfKind,
    /// The conference id (none for the focus factory).
    pub id: Option<String>,
}

/// Whether `id` is a valid conference id: 8 to 32 ASCII letters and digits (MS-CONFPRO §2.2.1.2).
pub fn valid_id(id: &str) -> bool {
    (8..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl ConfUri {
    /// The focus factory of `organizer`.
    pub fn focus_factory(organizer: &str) -> ConfUri {
        ConfUri { organizer: organizer.to_ascii_lowercase(), kind: ConfKind::FocusFactory, id: None }
    }

    /// The entity `kind` of conference `id` organized by `organizer`.
    pub fn of(organizer: &str, kind: ConfKind, id: &str) -> ConfUri {
        ConfUri { organizer: organizer.to_ascii_lowercase(), kind, id: Some(id.to_owned()) }
    }

    /// Parses a conference URI; `None` when it is not one (an ordinary SIP URI, for example).
    pub fn parse(text: &str) -> Option<ConfUri> {
        let mut s = text.trim();
        for prefix in ["conf:", "meet:"] {
            if s.len() > prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix) {
                s = &s[prefix.len()..];
            }
        }
        let s = s.split('?').next().unwrap_or(s);
        let mut parts = s.split(';');
        let organizer = parts.next()?.trim();
        let scheme_ok = organizer.len() > 4 && organizer[..4].eq_ignore_ascii_case("sip:");
        if !scheme_ok || !organizer.contains('@') {
            return None;
        }
        let opaque = parts.find_map(|p| {
            let (name, value) = p.split_once('=')?;
            name.trim().eq_ignore_ascii_case("opaque").then(|| value.trim().trim_matches('"'))
        })?;
        let rest = opaque.strip_prefix("app:conf:")?;
        let (kind, id) = match rest.split_once(":id:") {
            Some((kind, id)) => (ConfKind::parse(kind)?, Some(id)),
            None => (ConfKind::parse(rest)?, None),
        };
        match (&kind, id) {
            (ConfKind::FocusFactory, None) => {}
            (ConfKind::FocusFactory, Some(_)) | (_, None) => return None,
            (_, Some(id)) if !valid_id(id) => return None,
            _ => {}
        }
        Some(ConfUri { organizer: organizer.to_ascii_lowercase(), kind, id: id.map(str::to_owned) })
    }

    /// The same conference's entity of another kind (the AV MCU of a focus, for example).
    pub fn with_kind(&self, kind: ConfKind) -> ConfUri {
        ConfUri { kind, ..self.clone() }
    }
}

impl fmt::Display for ConfUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{};gruu;opaque=app:conf:{}", self.organizer, self.kind.token())?;
        if let Some(id) = &self.id {
            write!(f, ":id:{id}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let f = ConfUri::parse("sip:Alice@contoso.com;gruu;opaque=app:conf:focus:id:ABCD1234").unwrap();
        assert_eq!(f.organizer, "sip:alice@contoso.com");
        assert_eq!(f.kind, ConfKind::Focus);
        assert_eq!(f.id.as_deref(), Some("ABCD1234"));
        assert_eq!(f.to_string(), "sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:ABCD1234");
        assert_eq!(
            f.with_kind(ConfKind::AudioVideo).to_string(),
            "sip:alice@contoso.com;gruu;opaque=app:conf:audio-video:id:ABCD1234"
        );
        let ff = ConfUri::parse("sip:alice@contoso.com;gruu;opaque=app:conf:focusfactory").unwrap();
        assert_eq!(ff, ConfUri::focus_factory("sip:alice@contoso.com"));
        assert_eq!(ff.to_string(), "sip:alice@contoso.com;gruu;opaque=app:conf:focusfactory");
    }

    #[test]
    fn typed_forms_and_refusals() {
        let typed =
            ConfUri::parse("conf:sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:ABCD1234?conversation-id=x");
        assert_eq!(typed.unwrap().id.as_deref(), Some("ABCD1234"));
        for bad in [
            "sip:alice@contoso.com",
            "sip:alice@contoso.com;gruu;opaque=user:epid:xyz",
            "sip:alice@contoso.com;gruu;opaque=app:conf:focus",
            "sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:short",
            "sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:has-dash-in-it",
            "sip:alice@contoso.com;gruu;opaque=app:conf:focusfactory:id:ABCD1234",
            "sip:alice@contoso.com;gruu;opaque=app:conf:video:id:ABCD1234",
            "tel:+1234;opaque=app:conf:focus:id:ABCD1234",
            "",
        ] {
            assert_eq!(ConfUri::parse(bad), None, "{bad}");
        }
    }
}
