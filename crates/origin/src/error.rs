use std::fmt;
use std::time::Duration;

/// What went wrong talking to an origin.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OriginErrorKind {
    #[error("no origin is configured")]
    NoOrigin,
    #[error("connect failed: {0}")]
    Connect(String),
    #[error("no response head within {0:?}")]
    HeaderTimeout(Duration),
    #[error("body stalled for more than {0:?}")]
    BodyTimeout(Duration),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("body error: {0}")]
    Body(String),
    #[error("cannot build the origin request: {0}")]
    BadRequest(String),
    #[error("i/o error: {0}")]
    Io(String),
}

impl OriginErrorKind {
    /// The origin was never reached, so another endpoint may be tried.
    pub fn is_connect(&self) -> bool {
        matches!(self, OriginErrorKind::Connect(_))
    }

    /// A timeout, which a client sees as 504 rather than 502.
    pub fn is_timeout(&self) -> bool {
        matches!(self, OriginErrorKind::HeaderTimeout(_) | OriginErrorKind::BodyTimeout(_))
    }
}

/// An origin failure, with the endpoint it happened on.
#[derive(Debug, Clone)]
pub struct OriginError {
    kind: OriginErrorKind,
    origin: String,
}

impl OriginError {
    pub fn new(kind: OriginErrorKind, origin: String) -> OriginError {
        OriginError { kind, origin }
    }

    pub fn kind(&self) -> &OriginErrorKind {
        &self.kind
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }
}

impl fmt::Display for OriginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.origin.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "origin {}: {}", self.origin, self.kind)
        }
    }
}

impl std::error::Error for OriginError {}
