//! RFC 9111 §4.2 (freshness) and §4.2.4 (serving stale).

use super::*;

/// RFC 9111 §4.2: freshness lifetime and age.
#[tokio::test]
async fn section_4_2_freshness() {
    const CASES: &[Case] = &[
        Case {
            name: "Age beyond max-age is stale on arrival",
            steps: &[
                get(Answers(200, &[("cache-control", "max-age=60"), ("age", "120")], ""), 200, "MISS"),
                get(Answers(200, FRESH, ""), 200, "MISS"),
            ],
        },
        Case {
            name: "Age as a list: the first value",
            steps: &[
                get(Answers(200, &[("cache-control", "max-age=60"), ("age", "30, 1000")], ""), 200, "MISS"),
                get(NotAsked, 200, "HIT"),
            ],
        },
        Case {
            name: "an invalid Age is ignored",
            steps: &[
                get(Answers(200, &[("cache-control", "max-age=60"), ("age", "soon")], ""), 200, "MISS"),
                get(NotAsked, 200, "HIT"),
            ],
        },
        Case {
            name: "s-maxage over max-age",
            steps: &[
                get(Answers(200, &[("cache-control", "max-age=0, s-maxage=60")], ""), 200, "MISS"),
                get(NotAsked, 200, "HIT"),
            ],
        },
        Case {
            name: "max-age over Expires",
            steps: &[
                get(
                    Answers(200, &[("cache-control", "max-age=60"), ("expires", "Mon, 01 Jan 2001 00:00:00 GMT")], ""),
                    200,
                    "MISS",
                ),
                get(NotAsked, 200, "HIT"),
            ],
        },
        Case {
            name: "Expires in the future, RFC 850 format",
            steps: &[
                get(Answers(200, &[("expires", "Thursday, 31-Dec-37 23:59:59 GMT")], ""), 200, "MISS"),
                get(NotAsked, 200, "HIT"),
            ],
        },
        Case {
            name: "Expires in upper case",
            steps: &[
                get(Answers(200, &[("expires", "FRI, 31 DEC 2100 23:59:59 GMT")], ""), 200, "MISS"),
                get(NotAsked, 200, "HIT"),
            ],
        },
        Case {
            name: "an invalid Expires is already expired",
            steps: &[
                get(Answers(200, &[("expires", "0"), ("etag", "\"v1\"")], ""), 200, "MISS"),
                get(Answers(200, FRESH, ""), 200, "MISS"),
            ],
        },
        Case {
            name: "heuristic freshness from an old Last-Modified",
            steps: &[
                get(Answers(200, &[("last-modified", "Mon, 01 Jan 2001 00:00:00 GMT")], ""), 200, "MISS"),
                get(NotAsked, 200, "HIT"),
            ],
        },
        Case {
            name: "no-cache is revalidated on every use",
            steps: &[
                get(Answers(200, &[("cache-control", "no-cache"), ("etag", "\"v1\"")], "kept"), 200, "MISS"),
                get(Answers(304, &[("etag", "\"v1\"")], ""), 200, "REVALIDATED"),
            ],
        },
    ];
    run("RFC 9111 §4.2", CASES, |_| {}).await;
}

/// RFC 9111 §4.2.4 and §4.3.3: stale responses, exactly when allowed.
#[tokio::test]
async fn section_4_2_4_serving_stale() {
    const CASES: &[Case] = &[
        Case {
            name: "stale served while the origin is unreachable",
            steps: &[get(Answers(200, STALE_WITH_ETAG, "old"), 200, "MISS"), get(Fails(503), 200, "STALE")],
        },
        Case {
            name: "must-revalidate: an error, never the stale copy",
            steps: &[
                get(
                    Answers(200, &[("cache-control", "max-age=0, must-revalidate"), ("etag", "\"v\"")], ""),
                    200,
                    "MISS",
                ),
                get(Fails(504), 504, "ERROR"),
            ],
        },
        Case {
            name: "proxy-revalidate: an error",
            steps: &[
                get(
                    Answers(200, &[("cache-control", "max-age=0, proxy-revalidate"), ("etag", "\"v\"")], ""),
                    200,
                    "MISS",
                ),
                get(Fails(503), 503, "ERROR"),
            ],
        },
        Case {
            name: "s-maxage carries proxy-revalidate",
            steps: &[
                get(Answers(200, &[("cache-control", "s-maxage=0"), ("etag", "\"v\"")], ""), 200, "MISS"),
                get(Fails(503), 503, "ERROR"),
            ],
        },
        Case {
            name: "no-cache: an error",
            steps: &[
                get(Answers(200, &[("cache-control", "no-cache"), ("etag", "\"v\"")], ""), 200, "MISS"),
                get(Fails(503), 503, "ERROR"),
            ],
        },
        Case {
            name: "must-revalidate wins over stale-if-error",
            steps: &[
                get(
                    Answers(
                        200,
                        &[("cache-control", "max-age=0, must-revalidate, stale-if-error=60"), ("etag", "\"v\"")],
                        "",
                    ),
                    200,
                    "MISS",
                ),
                get(Fails(503), 503, "ERROR"),
            ],
        },
        Case {
            name: "a 5xx to a revalidation serves the stale copy",
            steps: &[
                get(Answers(200, STALE_WITH_ETAG, "old"), 200, "MISS"),
                get(Answers(500, &[], "oops"), 200, "STALE"),
            ],
        },
        // A deliberate difference (README): a 4xx does not replace a stored
        // asset that may be served stale (a deploy removed the old file).
        Case {
            name: "a 404 to a revalidation keeps serving the stored copy",
            steps: &[
                get(Answers(200, STALE_WITH_ETAG, "old"), 200, "MISS"),
                get(Answers(404, &[], "gone"), 200, "STALE"),
            ],
        },
        Case {
            name: "a 404 to a revalidation of must-revalidate is relayed",
            steps: &[
                get(
                    Answers(200, &[("cache-control", "max-age=0, must-revalidate"), ("etag", "\"v\"")], ""),
                    200,
                    "MISS",
                ),
                get(Answers(404, &[], "gone"), 404, "MISS"),
            ],
        },
    ];
    run("RFC 9111 §4.2.4", CASES, |_| {}).await;
}
