//! The admin dashboard: one page and its assets, compiled into the binary
//! so it works with no network and no files to install.
//!
//! The page holds no data, so it is served without the token: it asks for
//! the token, keeps it in the tab's sessionStorage and sends it as
//! `Authorization: Bearer` when it polls `/stats` (never in a URL); every
//! figure comes from there. It has no inline script or style, so the admin
//! listener's `default-src 'self'` policy holds for it.

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;

use crate::admin::AdminResponse;

/// Path, content type, bytes.
const ASSETS: [(&str, &str, &[u8]); 4] = [
    ("/", "text/html; charset=utf-8", include_bytes!("dashboard/index.html")),
    ("/dashboard/app.js", "text/javascript; charset=utf-8", include_bytes!("dashboard/app.js")),
    ("/dashboard/app.css", "text/css; charset=utf-8", include_bytes!("dashboard/app.css")),
    ("/dashboard/icon.svg", "image/svg+xml", include_bytes!("dashboard/icon.svg")),
];

/// The page or asset at `path`, or `None` when the path is not one.
pub(crate) fn asset(method: &Method, path: &str) -> Option<AdminResponse> {
    let (_, content_type, bytes) = ASSETS.iter().find(|(p, _, _)| *p == path)?;
    if method != Method::GET && method != Method::HEAD {
        let mut response = Response::new(Full::new(Bytes::from_static(b"method not allowed\n")));
        *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        return Some(response);
    }
    let mut response = Response::new(Full::new(Bytes::from_static(bytes)));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files() {
        let page = std::str::from_utf8(ASSETS[0].2).unwrap();
        for (path, _, _) in &ASSETS[1..] {
            assert!(page.contains(&format!("\"{path}\"")), "{path} is not referenced by the page");
        }
        // Every <script> has a src: inline script would break the CSP.
        assert_eq!(page.matches("<script").count(), page.matches("<script src=\"/dashboard/").count());
        assert!(!page.contains("style=") && !page.contains("<style"), "inline style breaks the CSP");
    }

    #[test]
    fn only_the_dashboard_paths_are_assets() {
        assert!(asset(&Method::GET, "/").is_some());
        assert!(asset(&Method::HEAD, "/dashboard/app.js").is_some());
        assert_eq!(asset(&Method::POST, "/").map(|r| r.status()), Some(StatusCode::METHOD_NOT_ALLOWED));
        for path in ["/stats", "/dashboard/", "/dashboard/../stats", "/index.html", ""] {
            assert!(asset(&Method::GET, path).is_none(), "{path}");
        }
    }
}
