//! The `Date` header value, formatted once a second rather than once per
//! response (HTTP/3 responses need one; hyper adds its own for HTTP/1 and 2).

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;

thread_local! {
    static CACHED: RefCell<(u64, HeaderValue)> = const { RefCell::new((u64::MAX, HeaderValue::from_static(""))) };
}

/// `Date` for now, as an IMF-fixdate.
pub(crate) fn now() -> HeaderValue {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != second {
            let text = httpdate::fmt_http_date(now);
            // An IMF-fixdate is always a valid header value.
            cached.1 = HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""));
            cached.0 = second;
        }
        cached.1.clone()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_parse_back() {
        let value = super::now();
        assert!(httpdate::parse_http_date(value.to_str().unwrap()).is_ok(), "{value:?}");
    }
}
