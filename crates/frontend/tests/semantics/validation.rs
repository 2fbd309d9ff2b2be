//! RFC 9111 §4.3 (validation) and §4.4 (invalidation).

use super::*;

/// RFC 9111 §4.3: validation, by the origin and of clients' conditionals.
#[tokio::test]
async fn section_4_3_validation() {
    const CASES: &[Case] = &[
        Case {
            name: "a 304 freshens the stored response",
            steps: &[
                get(Answers(200, STALE_WITH_ETAG, "body"), 200, "MISS"),
                get(Answers(304, &[("cache-control", "max-age=600"), ("etag", "\"v1\"")], ""), 200, "REVALIDATED")
                    .fields(&[("cache-control", Some("max-age=600"))]),
                get(NotAsked, 200, "HIT"),
            ],
        },
        Case {
            name: "If-None-Match answered from the store",
            steps: &[
                get(Answers(200, &[("cache-control", "max-age=60"), ("etag", "\"v1\"")], ""), 200, "MISS"),
                get_with(&[("if-none-match", "\"v1\"")], NotAsked, 304, "HIT"),
                get_with(&[("if-none-match", "\"v2\"")], NotAsked, 200, "HIT"),
            ],
        },
        Case {
            name: "If-None-Match compares weakly",
            steps: &[
                get(Answers(200, &[("cache-control", "max-age=60"), ("etag", "W/\"v1\"")], ""), 200, "MISS"),
                get_with(&[("if-none-match", "\"v1\"")], NotAsked, 304, "HIT"),
            ],
        },
        Case {
            name: "If-Modified-Since without Last-Modified uses Date",
            steps: &[
                get(
                    Answers(200, &[("cache-control", "max-age=60"), ("date", "Fri, 01 Jan 2100 00:00:00 GMT")], ""),
                    200,
                    "MISS",
                ),
                get_with(&[("if-modified-since", "Sat, 02 Jan 2100 00:00:00 GMT")], NotAsked, 304, "HIT"),
                get_with(&[("if-modified-since", "Thu, 31 Dec 2099 00:00:00 GMT")], NotAsked, 200, "HIT"),
            ],
        },
        Case {
            name: "If-Modified-Since is ignored beside If-None-Match",
            steps: &[
                get(
                    Answers(
                        200,
                        &[
                            ("cache-control", "max-age=60"),
                            ("etag", "\"v1\""),
                            ("last-modified", "Mon, 01 Jan 2001 00:00:00 GMT"),
                        ],
                        "",
                    ),
                    200,
                    "MISS",
                ),
                get_with(
                    &[("if-none-match", "\"v2\""), ("if-modified-since", "Tue, 02 Jan 2001 00:00:00 GMT")],
                    NotAsked,
                    200,
                    "HIT",
                ),
            ],
        },
    ];
    run("RFC 9111 §4.3", CASES, |_| {}).await;
}

/// RFC 9111 §4.4: unsafe requests invalidate what they change.
#[tokio::test]
async fn section_4_4_invalidation() {
    const CASES: &[Case] = &[
        Case {
            name: "a POST invalidates its target",
            steps: &[
                get(Answers(200, FRESH, "v1"), 200, "MISS"),
                get(Answers(200, &[], "ok"), 200, "PASS").method("POST"),
                get(Answers(200, FRESH, "v2"), 200, "MISS"),
            ],
        },
        Case {
            name: "PUT and DELETE too",
            steps: &[
                get(Answers(200, FRESH, "v1"), 200, "MISS"),
                get(Answers(201, &[], ""), 201, "PASS").method("PUT"),
                get(Answers(200, FRESH, "v2"), 200, "MISS"),
                get(Answers(204, &[], ""), 204, "PASS").method("DELETE"),
                get(Answers(200, FRESH, "v3"), 200, "MISS"),
            ],
        },
        Case {
            name: "an error answer invalidates nothing",
            steps: &[
                get(Answers(200, FRESH, "v1"), 200, "MISS"),
                get(Answers(500, &[], "no"), 500, "PASS").method("POST"),
                get(NotAsked, 200, "HIT"),
            ],
        },
        Case {
            name: "Location and Content-Location on the same host",
            steps: &[
                get(Answers(200, FRESH, "l"), 200, "MISS").at("/l"),
                get(Answers(200, FRESH, "c"), 200, "MISS").at("/c"),
                get(
                    Answers(303, &[("location", "https://assets.test/l"), ("content-location", "/c")], ""),
                    303,
                    "PASS",
                )
                .method("POST"),
                get(Answers(200, FRESH, "l2"), 200, "MISS").at("/l"),
                get(Answers(200, FRESH, "c2"), 200, "MISS").at("/c"),
            ],
        },
        Case {
            name: "Location on another host invalidates nothing there",
            steps: &[
                get(Answers(200, FRESH, "l"), 200, "MISS").at("/l"),
                get(Answers(303, &[("location", "https://elsewhere.test/l")], ""), 303, "PASS").method("POST"),
                get(NotAsked, 200, "HIT").at("/l"),
            ],
        },
    ];
    run("RFC 9111 §4.4", CASES, |_| {}).await;
}
