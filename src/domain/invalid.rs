//! The one error of the domain's parsers.

/// Input that does not parse: what was wrong with it, worded for the person who sent it.
/// The HTTP layer answers it with `400` and this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
