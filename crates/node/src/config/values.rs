//! Typed values of the file: what a key may say, checked by serde when the
//! file is read, and what each becomes in the crates' typed configs.

use std::fmt;
use std::net::{AddrParseError, SocketAddr};
use std::str::FromStr;

use holdfast_cache::FsyncPolicy;
use http::StatusCode;
use serde::{Deserialize, Deserializer};

/// `cache.fsync`: what a disk write survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// Survives process kills (the page cache is written back later).
    #[default]
    Never,
    /// Survives power loss: every file is synced before it becomes visible.
    Always,
}

impl From<Fsync> for FsyncPolicy {
    fn from(fsync: Fsync) -> FsyncPolicy {
        match fsync {
            Fsync::Never => FsyncPolicy::Never,
            Fsync::Always => FsyncPolicy::Always,
        }
    }
}

/// `origin.selection`: how a request picks among an origin group's healthy
/// members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    /// At random, in proportion to the weights.
    #[default]
    Weighted,
    /// Each object to one member by rendezvous hashing: for a tier of shields.
    ConsistentHash,
}

impl From<Selection> for holdfast_origin::Selection {
    fn from(selection: Selection) -> holdfast_origin::Selection {
        match selection {
            Selection::Weighted => holdfast_origin::Selection::Weighted,
            Selection::ConsistentHash => holdfast_origin::Selection::ConsistentHash,
        }
    }
}

/// `log.access_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// Space-separated fields.
    Plain,
}

impl From<AccessFormat> for crate::access_log::Format {
    fn from(format: AccessFormat) -> crate::access_log::Format {
        match format {
            AccessFormat::Json => crate::access_log::Format::Json,
            AccessFormat::Plain => crate::access_log::Format::Plain,
        }
    }
}

/// `tls.h3_address_validation`: when QUIC clients are asked to prove their
/// address with a Retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum H3AddressValidation {
    /// While more than `tls.h3_retry_above_handshakes` handshakes are in
    /// progress.
    #[default]
    Auto,
    /// Every new connection.
    Always,
    /// No connection.
    Never,
}

/// `server.unknown_host_status`: the answer to a Host no site claims, 421
/// or 404 (written as the number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "u16")]
pub enum UnknownHostStatus {
    /// 421 Misdirected Request: this node does not serve that host.
    #[default]
    MisdirectedRequest,
    /// 404 Not Found.
    NotFound,
}

impl TryFrom<u16> for UnknownHostStatus {
    type Error = String;

    fn try_from(status: u16) -> Result<UnknownHostStatus, String> {
        match status {
            421 => Ok(UnknownHostStatus::MisdirectedRequest),
            404 => Ok(UnknownHostStatus::NotFound),
            other => Err(format!("{other}: use 421 or 404")),
        }
    }
}

impl From<UnknownHostStatus> for StatusCode {
    fn from(status: UnknownHostStatus) -> StatusCode {
        match status {
            UnknownHostStatus::MisdirectedRequest => StatusCode::MISDIRECTED_REQUEST,
            UnknownHostStatus::NotFound => StatusCode::NOT_FOUND,
        }
    }
}

/// A listener that can be turned off (`admin.listen`, `--admin-listen`):
/// an address and port, or `""` for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalListen(pub Option<SocketAddr>);

impl FromStr for OptionalListen {
    type Err = AddrParseError;

    fn from_str(text: &str) -> Result<OptionalListen, AddrParseError> {
        match text {
            "" => Ok(OptionalListen(None)),
            address => address.parse().map(|address| OptionalListen(Some(address))),
        }
    }
}

impl fmt::Display for OptionalListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(address) => write!(f, "{address}"),
            None => Ok(()),
        }
    }
}

impl<'de> Deserialize<'de> for OptionalListen {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<OptionalListen, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|e| serde::de::Error::custom(format!("{text:?} is not an address:port ({e})")))
    }
}

/// `origin.query_params`: `"all"`, `"none"`, or the names of the
/// parameters to keep (see holdfast_frontend::query).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum QueryParamsValue {
    Word(String),
    Names(Vec<String>),
}

impl Default for QueryParamsValue {
    fn default() -> Self {
        QueryParamsValue::Word("all".into())
    }
}

impl QueryParamsValue {
    pub fn parse(&self) -> Result<holdfast_frontend::QueryParams, holdfast_frontend::query::BadQueryParams> {
        match self {
            QueryParamsValue::Word(word) => holdfast_frontend::QueryParams::parse_word(word),
            QueryParamsValue::Names(names) => holdfast_frontend::QueryParams::parse_names(names),
        }
    }
}
