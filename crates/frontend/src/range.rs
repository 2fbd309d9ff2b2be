//! Byte ranges (RFC 9110 §14) cut from complete stored objects.

use std::ops::Range;

/// What a `Range` header asks of an object of a known length.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RangeRequest {
    /// Serve the whole object with 200: no Range, a syntax holdfast does not
    /// honour (other units, several ranges), or an invalid header.
    Full,
    /// Serve these bytes with 206.
    Partial(Range<u64>),
    /// No range overlaps the object: 416.
    Unsatisfiable,
}

/// Parses one `Range` value against an object of `len` bytes.
///
/// Several ranges are answered with the whole object (a server may ignore
/// Range), which spares a multipart body and the amplification that
/// overlapping ranges invite.
pub(crate) fn parse(value: &str, len: u64) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return RangeRequest::Full };
    let mut parts = spec.split(',').map(str::trim).filter(|p| !p.is_empty());
    let (Some(first), None) = (parts.next(), parts.next()) else { return RangeRequest::Full };
    let Some((start, end)) = first.split_once('-') else { return RangeRequest::Full };
    let (start, end) = (start.trim(), end.trim());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match (start.is_empty(), end.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) if digits(end) => {
            let Ok(suffix) = end.parse::<u64>() else { return RangeRequest::Full };
            if suffix == 0 || len == 0 {
                return RangeRequest::Unsatisfiable;
            }
            RangeRequest::Partial(len.saturating_sub(suffix)..len)
        }
        // bytes=N- : from N to the end.
        (false, true) if digits(start) => {
            let Ok(start) = start.parse::<u64>() else { return RangeRequest::Unsatisfiable };
            if start >= len {
                return RangeRequest::Unsatisfiable;
            }
            RangeRequest::Partial(start..len)
        }
        (false, false) if digits(start) && digits(end) => {
            let (Ok(start), Ok(end)) = (start.parse::<u64>(), end.parse::<u64>()) else {
                return RangeRequest::Full;
            };
            if end < start {
                return RangeRequest::Full;
            }
            if start >= len {
                return RangeRequest::Unsatisfiable;
            }
            RangeRequest::Partial(start..end.min(len - 1) + 1)
        }
        _ => RangeRequest::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeRequest::*;

    #[test]
    fn single_ranges() {
        assert_eq!(parse("bytes=0-4", 10), Partial(0..5));
        assert_eq!(parse("bytes=5-", 10), Partial(5..10));
        assert_eq!(parse("bytes=-3", 10), Partial(7..10));
        assert_eq!(parse("bytes=-30", 10), Partial(0..10));
        assert_eq!(parse("bytes=8-100", 10), Partial(8..10));
        assert_eq!(parse(" bytes=0-0 ", 10), Partial(0..1));
    }

    #[test]
    fn unsatisfiable_and_ignored() {
        assert_eq!(parse("bytes=10-", 10), Unsatisfiable);
        assert_eq!(parse("bytes=10-20", 10), Unsatisfiable);
        assert_eq!(parse("bytes=-0", 10), Unsatisfiable);
        assert_eq!(parse("bytes=0-1,3-4", 10), Full);
        assert_eq!(parse("bytes=5-2", 10), Full);
        assert_eq!(parse("items=0-1", 10), Full);
        assert_eq!(parse("bytes=a-b", 10), Full);
        assert_eq!(parse("bytes=--1", 10), Full);
        assert_eq!(parse("bytes=99999999999999999999999-", 10), Unsatisfiable);
    }
}
