//! RFC 9213: targeted cache control (CDN-Cache-Control, Surrogate-Control).

use super::*;

/// RFC 9213: targeted cache control, and Surrogate-Control.
#[tokio::test]
async fn rfc_9213_targeted_cache_control() {
    const CASES: &[Case] = &[
        Case {
            name: "CDN-Cache-Control over Cache-Control, and forwarded (other CDNs may be downstream)",
            steps: &[
                get(
                    Answers(200, &[("cache-control", "no-store"), ("cdn-cache-control", "max-age=600")], ""),
                    200,
                    "MISS",
                )
                .fields(&[("cdn-cache-control", Some("max-age=600")), ("cache-control", Some("no-store"))]),
                get(NotAsked, 200, "HIT").fields(&[("cdn-cache-control", Some("max-age=600"))]),
            ],
        },
        Case {
            name: "CDN-Cache-Control: private is obeyed over max-age and Expires, and forwarded",
            steps: &[
                get(
                    Answers(
                        200,
                        &[
                            ("cdn-cache-control", "private"),
                            ("cache-control", "max-age=10000"),
                            ("expires", "Thu, 01 Jan 2099 00:00:00 GMT"),
                        ],
                        "",
                    ),
                    200,
                    "MISS",
                )
                .fields(&[("cdn-cache-control", Some("private"))]),
                get(Answers(200, FRESH, ""), 200, "MISS"),
            ],
        },
        Case {
            name: "CDN-Cache-Control: no-store",
            steps: &[
                get(
                    Answers(200, &[("cache-control", "max-age=600"), ("cdn-cache-control", "no-store")], ""),
                    200,
                    "MISS",
                ),
                get(Answers(200, FRESH, ""), 200, "MISS"),
            ],
        },
        Case {
            name: "an invalid CDN-Cache-Control falls back to Cache-Control",
            steps: &[
                get(
                    Answers(200, &[("cache-control", "max-age=600"), ("cdn-cache-control", "max-age=\"x")], ""),
                    200,
                    "MISS",
                ),
                get(NotAsked, 200, "HIT"),
            ],
        },
        Case {
            name: "the operator's own field first",
            steps: &[
                get(
                    Answers(200, &[("cdn-cache-control", "no-store"), ("holdfast-cache-control", "max-age=600")], ""),
                    200,
                    "MISS",
                )
                .fields(&[("holdfast-cache-control", None)]),
                get(NotAsked, 200, "HIT"),
            ],
        },
        Case {
            name: "Surrogate-Control over Cache-Control, and not sent to clients",
            steps: &[
                get(
                    Answers(200, &[("cache-control", "no-store"), ("surrogate-control", "max-age=600")], ""),
                    200,
                    "MISS",
                )
                .fields(&[("surrogate-control", None)]),
                get(NotAsked, 200, "HIT"),
            ],
        },
        Case {
            name: "a cache downstream (Via) gets the targeted fields",
            steps: &[
                get(Answers(200, &[("cdn-cache-control", "max-age=600")], ""), 200, "MISS"),
                get_with(&[("via", "1.1 edge-1")], NotAsked, 200, "HIT")
                    .fields(&[("cdn-cache-control", Some("max-age=600"))]),
            ],
        },
    ];
    run("RFC 9213", CASES, |c| {
        c.policy.targets.insert(0, HeaderName::from_static("holdfast-cache-control"));
    })
    .await;
}
