use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

/// What went wrong talking to an origin.
///
/// `Display` says what failed, one level only; the underlying error, when
/// there is one, is the [`source`](Error::source) (shared, so the kind stays
/// `Clone`). Print the whole chain with [`ErrorChain`].
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OriginErrorKind {
    #[error("no origin is configured")]
    NoOrigin,
    #[error("every origin is ejected after failures")]
    NoHealthyOrigin,
    #[error("connect failed")]
    Connect(#[source] Arc<hyper_util::client::legacy::Error>),
    #[error("no response head within {0:?}")]
    HeaderTimeout(Duration),
    #[error("body stalled for more than {0:?}")]
    BodyTimeout(Duration),
    #[error("answered {0}")]
    Status(StatusCode),
    #[error("protocol error")]
    Protocol(#[source] Arc<hyper_util::client::legacy::Error>),
    #[error("body error")]
    Body(#[source] Arc<hyper::Error>),
    #[error("cannot build the origin request")]
    BadRequest(#[source] Arc<http::Error>),
    #[error("i/o error")]
    Io(#[source] Arc<std::io::Error>),
    #[error("all {0} connections to it are in use")]
    Busy(usize),
}

impl OriginErrorKind {
    /// Whether the origin was up when this happened: it answered an error
    /// status, or took the request and closed the connection without a
    /// response. Refusals, unreachable addresses and ejections are not
    /// answers: they are what a restarting origin looks like.
    pub fn is_answer(&self) -> bool {
        matches!(self, OriginErrorKind::Status(_) | OriginErrorKind::Protocol(_))
    }

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

impl Error for OriginError {
    /// The kind's cause: `Display` already says the kind.
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.kind.source()
    }
}

/// Displays an error and its sources on one line, `: `-separated: for logs,
/// and for the reason a client is given.
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_level_and_the_chain_keeps_the_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error = OriginError::new(OriginErrorKind::Io(Arc::new(io)), "dir:site".into());
        assert_eq!(error.to_string(), "origin dir:site: i/o error");
        assert_eq!(error.source().map(ToString::to_string).as_deref(), Some("no such file"));
        assert_eq!(ErrorChain(&error).to_string(), "origin dir:site: i/o error: no such file");
        let copy = error.clone();
        assert_eq!(ErrorChain(&copy).to_string(), ErrorChain(&error).to_string());
        let timeout = OriginError::new(OriginErrorKind::HeaderTimeout(Duration::from_secs(1)), String::new());
        assert_eq!(ErrorChain(&timeout).to_string(), "no response head within 1s");
    }
}
