//! Which query parameters a site keys and forwards (`origin.query_params`),
//! and in which order (`origin.query_sort`).
//!
//! The cache key and the origin request are made from the one filtered
//! target, so what is stored under a key is always what the origin was
//! asked for that key: a parameter left out of the key is not sent either
//! (no parameter cloaking, catalogue S02). Content-addressed assets rarely
//! need a query; with `none`, cache-busting strings (`?v=3`, `?_=<random>`)
//! all hit the one stored object instead of each filling the cache with a
//! copy and the origin with a request (catalogue S30). Sorting does the
//! same for the orders one set of parameters can be written in.

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
}

/// A site's whole query policy: which parameters, and whether they are
/// put in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryPolicy {
    pub params: QueryParams,
    /// Parameters sorted by name, byte for byte as sent; a name's values
    /// keep their order (`?b=1&a=2&a=1` is `?a=2&a=1&b=1`), since an origin
    /// may read them as a list. Empty parameters (`&&`) are dropped.
    pub sort: bool,
}

impl QueryPolicy {
    /// The origin-form target with only the parameters this policy keeps,
    /// in its order; `?` goes when none is left. The default policy returns
    /// `target` as is.
    pub fn apply(&self, target: String) -> String {
        // The default first: no scan of the target on every request.
        if self.params == QueryParams::All && !self.sort {
            return target;
        }
        let Some((path, query)) = target.split_once('?') else { return target };
        let mut kept: Vec<&str> = match &self.params {
            QueryParams::None => return path.to_owned(),
            QueryParams::All => query.split('&').filter(|param| !param.is_empty()).collect(),
            QueryParams::Keep(names) => {
                query.split('&').filter(|param| names.iter().any(|keep| keep == param_name(param))).collect()
            }
        };
        if self.sort {
            // Stable: equal names keep the order they were sent in.
            kept.sort_by(|a, b| param_name(a).cmp(param_name(b)));
        }
        if kept.is_empty() { path.to_owned() } else { format!("{path}?{}", kept.join("&")) }
    }
}

/// `v` of `v=1`, and of `v` alone.
fn param_name(param: &str) -> &str {
    param.split_once('=').map_or(param, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(names: &[&str]) -> QueryParams {
        QueryParams::parse_names(&names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn apply(params: &QueryParams, target: &str) -> String {
        QueryPolicy { params: params.clone(), sort: false }.apply(target.to_owned())
    }

    fn sorted(params: &QueryParams, target: &str) -> String {
        QueryPolicy { params: params.clone(), sort: true }.apply(target.to_owned())
    }

    #[test]
    fn each_policy_filters_the_target() {
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
    fn sorting_orders_parameters_by_name_and_keeps_each_names_values_in_order() {
        let all = QueryParams::All;
        assert_eq!(sorted(&all, "/a?v=1&b=2&a=3"), "/a?a=3&b=2&v=1");
        assert_eq!(sorted(&all, "/a?b=2&a=3&v=1"), sorted(&all, "/a?v=1&a=3&b=2"), "one key for every order");
        assert_eq!(sorted(&all, "/a?x=2&a&x=1"), "/a?a&x=2&x=1", "a name's values in the order sent");
        assert_eq!(sorted(&all, "/a?b&&a=1&"), "/a?a=1&b", "empty parameters dropped");
        assert_eq!(sorted(&all, "/a?&&"), "/a");
        assert_eq!(sorted(&all, "/a?B=1&a=1&%61=1"), "/a?%61=1&B=1&a=1", "bytes as sent: no decoding, no case folding");
        assert_eq!(sorted(&all, "/a/b"), "/a/b");
        assert_eq!(sorted(&keep(&["v", "lang"]), "/a?v=1&_=2&lang=de"), "/a?lang=de&v=1", "filtered, then sorted");
        assert_eq!(sorted(&QueryParams::None, "/a?v=1"), "/a");
        assert_eq!(apply(&all, "/a?v=1&&b=2&a=3"), "/a?v=1&&b=2&a=3", "unsorted, the default leaves the query as is");
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
