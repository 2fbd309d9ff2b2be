//! Partial content: 206 segments kept and completed.

use super::*;

/// RFC 9111 §3.3-3.4 and RFC 9110 §14: partial content kept by range and
/// combined into the whole object.
#[tokio::test]
async fn partial_content() {
    const PART: &[(&str, &str)] = &[("cache-control", "max-age=600"), ("etag", "\"v1\"")];
    const FIRST: &[(&str, &str)] =
        &[("cache-control", "max-age=600"), ("etag", "\"v1\""), ("content-range", "bytes 0-4/10")];
    const SECOND: &[(&str, &str)] =
        &[("cache-control", "max-age=600"), ("etag", "\"v1\""), ("content-range", "bytes 5-9/10")];
    const OTHER_VERSION: &[(&str, &str)] =
        &[("cache-control", "max-age=600"), ("etag", "\"v2\""), ("content-range", "bytes 5-9/10")];
    const CASES: &[Case] = &[
        Case {
            name: "a 206 is kept and answers the same and smaller ranges",
            steps: &[
                get_with(&[("range", "bytes=0-4")], Answers(206, FIRST, "01234"), 206, "MISS"),
                get_with(&[("range", "bytes=0-4")], NotAsked, 206, "HIT")
                    .body("01234")
                    .fields(&[("content-range", Some("bytes 0-4/10"))]),
                get_with(&[("range", "bytes=1-3")], NotAsked, 206, "HIT").body("123"),
                get_with(&[("range", "bytes=3-6")], Answers(206, SECOND, "56789"), 206, "MISS"),
            ],
        },
        Case {
            name: "two halves make the whole object",
            steps: &[
                get_with(&[("range", "bytes=0-4")], Answers(206, FIRST, "01234"), 206, "MISS"),
                get_with(&[("range", "bytes=5-9")], Answers(206, SECOND, "56789"), 206, "MISS"),
                get(NotAsked, 200, "HIT").body("0123456789"),
                get_with(&[("range", "bytes=2-7")], NotAsked, 206, "HIT").body("234567"),
            ],
        },
        Case {
            name: "halves of two versions are not combined",
            steps: &[
                get_with(&[("range", "bytes=0-4")], Answers(206, FIRST, "01234"), 206, "MISS"),
                get_with(&[("range", "bytes=5-9")], Answers(206, OTHER_VERSION, "abcde"), 206, "MISS"),
                get(Answers(200, PART, "0123456789"), 200, "MISS"),
            ],
        },
        Case {
            name: "If-Range that no longer matches goes to the origin",
            steps: &[
                get_with(&[("range", "bytes=0-4")], Answers(206, FIRST, "01234"), 206, "MISS"),
                get_with(
                    &[("range", "bytes=0-4"), ("if-range", "\"v0\"")],
                    Answers(200, PART, "0123456789"),
                    200,
                    "MISS",
                ),
            ],
        },
        Case {
            name: "a 206 without a complete length is relayed, not kept",
            steps: &[
                get_with(
                    &[("range", "bytes=0-4")],
                    Answers(206, &[("cache-control", "max-age=600"), ("content-range", "bytes 0-4/*")], "01234"),
                    206,
                    "MISS",
                ),
                get_with(
                    &[("range", "bytes=0-4")],
                    Answers(206, &[("cache-control", "max-age=600"), ("content-range", "bytes 0-4/*")], "01234"),
                    206,
                    "MISS",
                ),
            ],
        },
    ];
    run("RFC 9111 §3.3", CASES, |_| {}).await;
}
