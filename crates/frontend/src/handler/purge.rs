//! What a purge selects, as one matcher over stored metadata for every tier.

use std::sync::Arc;

use holdfast_cache::Meta;

use super::site::{Routing, normalize_host};

/// What a purge selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeTarget {
    /// One URL (`https://host/path?query`; the scheme is ignored, so the
    /// http and https copies go together), every variant of it.
    Url(String),
    /// Every URL that starts with this (`host/path-prefix`, scheme optional).
    Prefix(String),
    /// Every object tagged so by `Surrogate-Key` or `Cache-Tag`.
    Tag(String),
    /// Everything.
    All,
}

impl PurgeTarget {
    pub fn kind(&self) -> &'static str {
        match self {
            PurgeTarget::Url(_) => "url",
            PurgeTarget::Prefix(_) => "prefix",
            PurgeTarget::Tag(_) => "tag",
            PurgeTarget::All => "all",
        }
    }

    /// A URL purge as its object was keyed: the query filtered by the
    /// `origin.query_params` of the site that serves its host, so purging
    /// `/app.js?v=3` reaches the `/app.js` a site without queries stored.
    pub(crate) fn as_keyed(&self, routing: &Routing) -> PurgeTarget {
        let PurgeTarget::Url(url) = self else { return self.clone() };
        let (authority, target) = authority_and_target(url);
        let Some(site) = normalize_host(authority).and_then(|host| routing.site_for(&host)) else {
            return self.clone();
        };
        let filtered = routing.sites[site].query.apply(target.to_owned());
        PurgeTarget::Url(format!("{}{filtered}", &url[..url.len() - target.len()]))
    }

    /// The matcher over stored metadata, for every tier.
    pub(crate) fn matcher(&self) -> Arc<dyn Fn(&Meta) -> bool + Send + Sync> {
        match self {
            PurgeTarget::Url(url) => {
                let url = normalize_purge_url(url);
                Arc::new(move |meta| meta.purge_url() == url)
            }
            PurgeTarget::Prefix(prefix) => {
                let prefix = normalize_purge_url(prefix);
                Arc::new(move |meta| meta.purge_url().starts_with(&prefix))
            }
            PurgeTarget::Tag(tag) => {
                let tag = tag.clone();
                Arc::new(move |meta| meta.tags.contains(&tag))
            }
            PurgeTarget::All => Arc::new(|_| true),
        }
    }
}

/// A purge URL's authority and its path and query (`""` without a path);
/// the scheme, if any, dropped.
fn authority_and_target(url: &str) -> (&str, &str) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.find('/').map_or((rest, ""), |i| rest.split_at(i))
}

/// `https://Host:443/p` -> `host/p`: the form stored URLs are matched in
/// (without scheme; host lowercase and without port, as keys are made).
fn normalize_purge_url(url: &str) -> String {
    let (authority, path) = authority_and_target(url);
    let host = normalize_host(authority).unwrap_or_else(|| authority.to_ascii_lowercase());
    format!("{host}{path}")
}

/// How many stored responses a purge reached, per tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub memory: u64,
    pub disk: u64,
}
