//! An origin that serves files from a local directory.
//!
//! It exists so that the default configuration works on a fresh machine
//! with nothing else running (the bundled demo site), and so tests have an
//! origin without a socket. It answers like a minimal static file server:
//! `ETag`, `Last-Modified`, `Content-Type`, a configured `Cache-Control`,
//! 304 for a matching `If-None-Match`, 404 and 405.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use tokio_util::io::ReaderStream;

use crate::{OriginBody, OriginError, OriginErrorKind, OriginRequest};

/// Cache-Control for files from a directory origin unless configured.
pub const DEFAULT_CACHE_CONTROL: &str = "public, max-age=3600";

/// Serves one request from `root`.
pub(crate) async fn serve(
    root: &Path,
    cache_control: &str,
    request: &OriginRequest,
) -> Result<Response<OriginBody>, OriginErrorKind> {
    if request.method != Method::GET && request.method != Method::HEAD {
        return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"));
    }
    let Some(relative) = safe_relative_path(&request.path_and_query) else {
        return Ok(plain(StatusCode::NOT_FOUND, "not found\n"));
    };
    let mut path = root.join(relative);
    let mut metadata = match tokio::fs::metadata(&path).await {
        Ok(m) => m,
        Err(_) => return Ok(plain(StatusCode::NOT_FOUND, "not found\n")),
    };
    if metadata.is_dir() {
        path.push("index.html");
        metadata = match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => m,
            _ => return Ok(plain(StatusCode::NOT_FOUND, "not found\n")),
        };
    }
    let modified = metadata.modified().ok();
    let mtime = modified.and_then(|m| m.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0);
    let etag = format!("\"{:x}-{:x}\"", metadata.len(), mtime);
    let mut builder = Response::builder().header(header::ETAG, &etag).header(header::CACHE_CONTROL, cache_control);
    if let Some(modified) = modified {
        builder = builder.header(header::LAST_MODIFIED, httpdate::fmt_http_date(modified));
    }
    let not_modified = request
        .if_none_match
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if not_modified {
        return builder.status(StatusCode::NOT_MODIFIED).body(empty()).map_err(response_error);
    }
    let content_type = mime_guess::from_path(&path).first_or_octet_stream();
    let builder =
        builder.header(header::CONTENT_TYPE, content_type.as_ref()).header(header::CONTENT_LENGTH, metadata.len());
    let body = if request.method == Method::HEAD {
        empty()
    } else {
        let file = tokio::fs::File::open(&path).await.map_err(|e| OriginErrorKind::Io(Arc::new(e)))?;
        let stream = ReaderStream::new(file)
            .map_ok(Frame::data)
            .map_err(|e| OriginError::new(OriginErrorKind::Io(Arc::new(e)), String::new()));
        StreamBody::new(stream).boxed()
    };
    builder.body(body).map_err(response_error)
}

/// A response that cannot be built (a header value out of range): reported
/// as the i/o error it replaces.
fn response_error(error: http::Error) -> OriginErrorKind {
    OriginErrorKind::Io(Arc::new(std::io::Error::other(error)))
}

/// Maps a request path to a relative file path, or `None` if it tries to
/// leave the root (`..`), names a hidden file, or does not decode.
fn safe_relative_path(path_and_query: &str) -> Option<PathBuf> {
    let path = path_and_query.split(['?', '#']).next().unwrap_or("");
    let decoded = percent_decode(path)?;
    if decoded.contains('\0') || decoded.contains('\\') {
        return None;
    }
    let mut out = PathBuf::new();
    for component in Path::new(decoded.trim_start_matches('/')).components() {
        match component {
            Component::Normal(part) if !part.to_string_lossy().starts_with('.') => out.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn empty() -> OriginBody {
    Empty::<Bytes>::new().map_err(|never| match never {}).boxed()
}

fn plain(status: StatusCode, text: &'static str) -> Response<OriginBody> {
    let mut response =
        Response::new(Full::new(Bytes::from_static(text.as_bytes())).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_hidden_files_are_refused() {
        assert_eq!(safe_relative_path("/a/b.js?v=1"), Some(PathBuf::from("a/b.js")));
        assert_eq!(safe_relative_path("/"), Some(PathBuf::new()));
        assert_eq!(safe_relative_path("/%61pp.js"), Some(PathBuf::from("app.js")));
        assert_eq!(safe_relative_path("/../etc/passwd"), None);
        assert_eq!(safe_relative_path("/a/%2e%2e/%2e%2e/etc/passwd"), None);
        assert_eq!(safe_relative_path("/.git/config"), None);
        assert_eq!(safe_relative_path("/a%00b"), None);
        assert_eq!(safe_relative_path("/a%5c..%5cb"), None);
        assert_eq!(safe_relative_path("/bad%zz"), None);
    }
}
