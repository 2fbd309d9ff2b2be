//! Which query parameters a site keys and forwards (`origin.query_params`).
//!
//! The cache key and the origin request are made from the one filtered
//! target, so what is stored under a key is always what the origin was
//! asked for that key: a parameter left out of the key is not sent either
//! (no parameter cloaking, catalogue S02). Content-addressed assets rarely
//! need a query; with `none`, cache-busting strings (`?v=3`, `?_=<random>`)
//! all hit the one stored object instead of each filling the cache with a
//! copy and the origin with a request (catalogue S30).

use std::fmt;

/// A site's query policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum QueryParams {
    /// The query as the client sent it (the default).
    #[default]
    All,
    /// No query: `/app.js?v=3` is `/app.js`.
    None,
    /// Only parameters with these names, in the order the client sent
    /// them, duplicates kept. Names are compared byte for byte, as sent.
    Keep(Vec<String>),
}

/// Why a configured query policy is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadQueryParams(String);

impl fmt::Display for BadQueryParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadQueryParams {}

impl QueryParams {
    /// `"all"` or `"none"`.
    pub fn parse_word(word: &str) -> Result<QueryParams, BadQueryParams> {
        match word {
            "all" => Ok(QueryParams::All),
            "none" => Ok(QueryParams::None),
            other => Err(BadQueryParams(format!(
                "\"{other}\" is not a policy: \"all\", \"none\", or a list of parameter names"
            ))),
        }
    }

    /// A list of parameter names to keep. An empty list keeps none.
    pub fn parse_names(names: &[String]) -> Result<QueryParams, BadQueryParams> {
        if names.is_empty() {
            return Ok(QueryParams::None);
        }
        for name in names {
            let valid = !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'&' | b'=' | b'#' | b'?'));
            if !valid {
                return Err(BadQueryParams(format!(
                    "\"{name}\" is not a parameter name (printable ASCII without & = # ?)"
                )));
            }
        }
        Ok(QueryParams::Keep(names.to_vec()))
    }

    /// The origin-form target with only the parameters this policy keeps;
    /// `?` goes when none is left. The default policy returns `target` as is.
    pub fn apply(&self, target: String) -> String {
        // The default first: no scan of the target on every request.
        if *self == QueryParams::All {
            return target;
        }
        let Some((path, query)) = target.split_once('?') else { return target };
        match self {
            QueryParams::All => target,
            QueryParams::None => path.to_owned(),
            QueryParams::Keep(names) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|param| {
                        let name = param.split_once('=').map_or(*param, |(name, _)| name);
                        names.iter().any(|keep| keep == name)
                    })
                    .collect();
                if kept.is_empty() { path.to_owned() } else { format!("{path}?{}", kept.join("&")) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(names: &[&str]) -> QueryParams {
        QueryParams::parse_names(&names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn each_policy_filters_the_target() {
        let apply = |policy: &QueryParams, target: &str| policy.apply(target.to_owned());
        assert_eq!(apply(&QueryParams::All, "/a.js?v=1&_=2"), "/a.js?v=1&_=2");
        assert_eq!(apply(&QueryParams::None, "/a.js?v=1&_=2"), "/a.js");
        assert_eq!(apply(&QueryParams::None, "/a.js?"), "/a.js");
        assert_eq!(apply(&QueryParams::None, "/a.js"), "/a.js");
        let v = keep(&["v", "lang"]);
        assert_eq!(apply(&v, "/a.js?_=9&v=1&x&lang=de&v=2"), "/a.js?v=1&lang=de&v=2", "order and duplicates as sent");
        assert_eq!(apply(&v, "/a.js?_=9&vv=1&V=1"), "/a.js", "names match exactly");
        assert_eq!(apply(&v, "/a.js?v"), "/a.js?v", "a name without a value");
        assert_eq!(apply(&v, "/a.js?v=1;_=2"), "/a.js?v=1;_=2", "only & separates: what is kept is what is sent");
        assert_eq!(apply(&v, "/a.js?%76=1"), "/a.js", "an encoded name is another name");
        assert_eq!(apply(&v, "/p/q"), "/p/q");
    }

    #[test]
    fn config_values_are_checked() {
        assert_eq!(QueryParams::parse_word("all"), Ok(QueryParams::All));
        assert_eq!(QueryParams::parse_word("none"), Ok(QueryParams::None));
        assert!(QueryParams::parse_word("some").unwrap_err().to_string().contains("\"some\""));
        assert_eq!(QueryParams::parse_names(&[]), Ok(QueryParams::None));
        for bad in ["", "a=b", "a&b", "a b", "é"] {
            assert!(QueryParams::parse_names(&[bad.to_owned()]).is_err(), "{bad:?}");
        }
    }
}
