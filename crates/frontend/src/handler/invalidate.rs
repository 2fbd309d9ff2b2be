//! What an unsafe request's answer makes stale (RFC 9111 §4.4).

use holdfast_cache::Key;
use http::header::{self, HeaderMap};

use super::route::ClientRequest;
use super::site::normalize_host;

/// The stored responses a non-error answer to an unsafe request makes
/// stale (RFC 9111 §4.4): the target URI's, and those of `Location` and
/// `Content-Location` when they name the same host (their query filtered
/// by the site's `origin.query_params`, as the keys were); under both
/// schemes, as purges are.
pub(super) fn invalidated_keys(request: &ClientRequest, response: &HeaderMap) -> Vec<Key> {
    let query = &request.routing.sites[request.site].query;
    let mut paths = vec![request.path_and_query.clone()];
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        let Some(reference) = response.get(name).and_then(|v| v.to_str().ok()) else { continue };
        let path = same_host_path(reference, &request.host, &request.path_and_query);
        paths.extend(path.map(|path| query.apply(path)));
    }
    // The target may also be what Content-Location names.
    paths.sort_unstable();
    paths.dedup();
    paths
        .iter()
        .flat_map(|path| ["http", "https"].map(|scheme| Key::primary("GET", scheme, &request.host, path)))
        .collect()
}

/// The path and query `reference` names on `host`, resolved against
/// `base` (RFC 3986 §5.2); `None` for another host or a fragment-only or
/// unusable reference.
fn same_host_path(reference: &str, host: &str, base: &str) -> Option<String> {
    let reference = reference.trim().split('#').next()?;
    // Absolute (`http://host/p`) or network-path (`//host/p`): an authority first.
    let after_scheme = match reference.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") => {
            Some(rest)
        }
        Some(_) => return None,
        None => reference.strip_prefix("//"),
    };
    if let Some(rest) = after_scheme {
        let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
        return (normalize_host(authority)? == host).then(|| path.to_owned());
    }
    if reference.starts_with('/') {
        return Some(reference.to_owned());
    }
    if reference.is_empty() || reference.contains(':') {
        return None;
    }
    // A relative path: beside the base's last segment.
    let base_path = base.split('?').next().unwrap_or("/");
    let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
    Some(format!("{dir}{reference}"))
}

#[cfg(test)]
mod tests {
    use super::same_host_path;

    /// RFC 9111 §4.4 and RFC 3986 §5.2: which Location and Content-Location
    /// values name a URI on the request's host.
    #[test]
    fn locations_on_the_same_host_resolve_to_paths() {
        let rows: &[(&str, Option<&str>)] = &[
            ("/b", Some("/b")),
            ("/b?x=1", Some("/b?x=1")),
            ("https://assets.test/c", Some("/c")),
            ("http://ASSETS.test:8080/c#frag", Some("/c")),
            ("https://assets.test", Some("/")),
            ("//assets.test/d", Some("/d")),
            ("sibling", Some("/dir/sibling")),
            ("https://other.test/c", None),
            ("//other.test/d", None),
            ("mailto:someone@assets.test", None),
            ("ftp://assets.test/x", None),
            ("", None),
        ];
        for (reference, expected) in rows {
            assert_eq!(same_host_path(reference, "assets.test", "/dir/page?q=1").as_deref(), *expected, "{reference}");
        }
    }
}
