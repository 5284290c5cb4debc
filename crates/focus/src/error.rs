//! Errors of the focus.

use thiserror::Error;

/// Why a C3P body was refused (the SIP request gets 400, MS-CONFPRO §2.2.3).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum C3pError {
    /// Not well-formed XML, or too large.
    #[error("{0}")]
    Xml(#[from] vienna_xml::XmlError),
    /// Well-formed, but not a C3P request.
    #[error("not a C3P request: {0}")]
    NotC3p(&'static str),
    /// A command without a field it needs.
    #[error("C3P {command} without {field}")]
    Missing {
        /// The command.
        command: &'static str,
        /// What is missing.
        field: &'static str,
    },
}

/// Why the focus refused a command: the C3P response carries `code="failure"` and this `reason`
/// (MS-CONFBAS §2.2.3.2 reason values where one fits, `otherFailure` otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum Refusal {
    /// No such conference.
    #[error("conferenceDoesNotExist")]
    NoConference,
    /// No such user in the conference.
    #[error("userDoesNotExist")]
    NoUser,
    /// The sender may not do this (not a presenter, not the organizer).
    #[error("unauthorized")]
    Unauthorized,
    /// The conference is locked.
    #[error("conferenceLocked")]
    Locked,
    /// The conference or the server is full.
    #[error("maxParticipantsReached")]
    Full,
    /// A conference with this id exists.
    #[error("conferenceAlreadyExists")]
    Exists,
    /// The command is not supported.
    #[error("requestMalformed")]
    Unsupported,
    /// Something else (a bad id, an unknown endpoint or media).
    #[error("otherFailure")]
    Other,
}

impl Refusal {
    /// The `reason` attribute value.
    pub fn reason(self) -> String {
        self.to_string()
    }
}
