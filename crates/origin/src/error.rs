use std::fmt;
use std::time::Duration;

use http::StatusCode;

/// What went wrong talking to an origin.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OriginErrorKind {
    #[error("no origin is configured")]
    NoOrigin,
    #[error("every origin is ejected after failures")]
    NoHealthyOrigin,
    #[error("connect failed: {0}")]
    Connect(String),
    #[error("no response head within {0:?}")]
    HeaderTimeout(Duration),
    #[error("body stalled for more than {0:?}")]
    BodyTimeout(Duration),
    #[error("answered {0}")]
    Status(StatusCode),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("body error: {0}")]
    Body(String),
    #[error("cannot build the origin request: {0}")]
    BadRequest(String),
    #[error("i/o error: {0}")]
    Io(String),
    #[error("all {0} connections to it are in use")]
    Busy(usize),
}

impl OriginErrorKind {
    /// The status a client gets when this is the last error of a request:
    /// 504 for timeouts, 503 when the origin is down (refused, ejected, or
    /// said so itself), 502 for everything else the origin got wrong.
    pub fn client_status(&self) -> StatusCode {
        match self {
            OriginErrorKind::HeaderTimeout(_) | OriginErrorKind::BodyTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            OriginErrorKind::Status(status) if *status == StatusCode::GATEWAY_TIMEOUT => StatusCode::GATEWAY_TIMEOUT,
            OriginErrorKind::Status(status) if *status == StatusCode::SERVICE_UNAVAILABLE => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            OriginErrorKind::NoHealthyOrigin
            | OriginErrorKind::NoOrigin
            | OriginErrorKind::Connect(_)
            | OriginErrorKind::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        }
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
