//! The crate's one error type.

/// Why a presence request or document was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The body is not well-formed XML, or not the document its Content-Type names.
    #[error("malformed document: {0}")]
    Malformed(&'static str),
    /// The body exceeds a bound (size, depth, element count, text length).
    #[error("document too large: {0}")]
    TooLarge(&'static str),
    /// Well-formed, but not a PIDF document (wrong root element or namespace).
    #[error("not a PIDF document: {0}")]
    NotPidf(&'static str),
}

impl From<vienna_xml::XmlError> for BodyError {
    fn from(e: vienna_xml::XmlError) -> Self {
        match e {
            vienna_xml::XmlError::Malformed(w) => BodyError::Malformed(w),
            vienna_xml::XmlError::TooLarge(w) => BodyError::TooLarge(w),
        }
    }
}
