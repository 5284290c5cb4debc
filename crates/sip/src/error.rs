//! Errors of the SIP codec and the response each one maps to (RFC 3261 §21).

use crate::header::HeaderName;

/// What was wrong with a message, coarse enough to choose a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The message, a header line or the header count exceeds [`crate::Limits`]: 413 (or 494/513 in spirit).
    TooLarge(&'static str),
    /// The start line is not `Method SP Request-URI SP SIP-Version` or `SIP-Version SP Code SP Reason`.
    BadStartLine(&'static str),
    /// The version is well formed but not `SIP/2.0`: 505.
    BadVersion,
    /// A header line has no colon or an invalid name.
    BadHeaderLine,
    /// A header value does not follow its grammar; the text says what.
    BadHeader(&'static str),
    /// A mandatory header (Via, From, To, Call-ID, CSeq) is absent.
    MissingHeader,
    /// A single-valued header appears more than once.
    MultipleValues,
    /// The CSeq method differs from the request method.
    CSeqMismatch,
    /// Content-Length is larger than the bytes that follow the header (datagram), or missing on a stream.
    BadContentLength(&'static str),
    /// The header section is not valid UTF-8.
    BadUtf8,
    /// The bytes end before the header section does.
    Incomplete,
}

/// A message could not be parsed: which header, what was wrong, and which response to send.
///
/// The text never includes header values, so it is safe to log and to put in a reason phrase.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.reason_phrase())]
pub struct ParseError {
    /// What was wrong.
    pub kind: ParseErrorKind,
    /// The header concerned, if any.
    pub header: Option<HeaderName>,
}

impl ParseError {
    pub(crate) fn new(kind: ParseErrorKind) -> Self {
        Self { kind, header: None }
    }

    pub(crate) fn header(kind: ParseErrorKind, name: HeaderName) -> Self {
        Self { kind, header: Some(name) }
    }

    /// The status code of the response to a request that failed this way (RFC 3261 §21.4).
    /// A response that fails to parse is dropped instead (§18.1.2).
    pub fn status_code(&self) -> u16 {
        match self.kind {
            ParseErrorKind::TooLarge(_) => 413,
            ParseErrorKind::BadVersion => 505,
            _ => 400,
        }
    }

    /// A reason phrase naming the problem, e.g. `Bad Request (Malformed CSeq header)`.
    pub fn reason_phrase(&self) -> String {
        let hdr = self.header.as_ref().map(HeaderName::as_str);
        let what = match (&self.kind, hdr) {
            (ParseErrorKind::TooLarge(w), _) => return format!("Request Entity Too Large ({w})"),
            (ParseErrorKind::BadVersion, _) => return "Version Not Supported".to_owned(),
            (ParseErrorKind::BadStartLine(w), _) => format!("Malformed start line: {w}"),
            (ParseErrorKind::BadHeaderLine, _) => "Malformed header line".to_owned(),
            (ParseErrorKind::BadHeader(w), Some(h)) => format!("Malformed {h} header: {w}"),
            (ParseErrorKind::BadHeader(w), None) => format!("Malformed header: {w}"),
            (ParseErrorKind::MissingHeader, Some(h)) => format!("Missing {h} header"),
            (ParseErrorKind::MissingHeader, None) => "Missing header".to_owned(),
            (ParseErrorKind::MultipleValues, Some(h)) => format!("Multiple values in {h} header"),
            (ParseErrorKind::MultipleValues, None) => "Multiple values in single-valued header".to_owned(),
            (ParseErrorKind::CSeqMismatch, _) => "CSeq method does not match request method".to_owned(),
            (ParseErrorKind::BadContentLength(w), _) => format!("Bad Content-Length: {w}"),
            (ParseErrorKind::BadUtf8, _) => "Header is not UTF-8".to_owned(),
            (ParseErrorKind::Incomplete, _) => "Incomplete message".to_owned(),
        };
        format!("Bad Request ({what})")
    }
}

/// Errors of the transaction layer's API (misuse by the TU, never network input).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request has no top Via with an RFC 3261 branch (`z9hG4bK...`).
    #[error("request needs a top Via with a z9hG4bK branch")]
    MissingBranch,
    /// A client transaction with this branch and method already exists.
    #[error("a transaction with this branch already exists")]
    DuplicateTransaction,
    /// No such transaction, or it is already terminated.
    #[error("no such transaction")]
    NoTransaction,
    /// The response is not allowed in the transaction's state (e.g. a second final response).
    #[error("response not allowed in this transaction state")]
    InvalidState,
    /// ACK requests have no client transaction; send them with `send_stateless`.
    #[error("ACK is sent without a transaction")]
    AckNeedsNoTransaction,
}
