//! RFC 9111 §3 (storing responses) and §4.1 (Vary).

use super::*;

/// RFC 9111 §3: what a shared cache may store.
#[tokio::test]
async fn section_3_storing_responses() {
    const CASES: &[Case] = &[
        Case {
            name: "200 with max-age",
            steps: &[get(Answers(200, FRESH, "a"), 200, "MISS"), get(NotAsked, 200, "HIT")],
        },
        Case {
            name: "302 with explicit freshness",
            steps: &[
                get(Answers(302, &[("cache-control", "max-age=60"), ("location", "/x")], ""), 302, "MISS"),
                get(NotAsked, 302, "HIT"),
            ],
        },
        Case {
            name: "404 with explicit freshness",
            steps: &[get(Answers(404, FRESH, "gone"), 404, "MISS"), get(NotAsked, 404, "HIT")],
        },
        Case {
            name: "404 without freshness is not stored",
            steps: &[get(Answers(404, &[], "gone"), 404, "MISS"), get(Answers(404, &[], "gone"), 404, "MISS")],
        },
        Case {
            name: "500 with explicit freshness",
            steps: &[get(Answers(500, FRESH, "down"), 500, "MISS"), get(NotAsked, 500, "HIT")],
        },
        Case {
            name: "410 heuristically cacheable with Last-Modified",
            steps: &[
                get(Answers(410, &[("last-modified", "Mon, 01 Jan 2001 00:00:00 GMT")], ""), 410, "MISS"),
                get(NotAsked, 410, "HIT"),
            ],
        },
        Case {
            name: "no-store",
            steps: &[
                get(Answers(200, &[("cache-control", "no-store, max-age=60")], ""), 200, "MISS"),
                get(Answers(200, FRESH, ""), 200, "MISS"),
            ],
        },
        Case {
            name: "private",
            steps: &[
                get(Answers(200, &[("cache-control", "private, max-age=60")], ""), 200, "MISS"),
                get(Answers(200, FRESH, ""), 200, "MISS"),
            ],
        },
        Case {
            name: "must-understand with an understood status overrides no-store",
            steps: &[
                get(Answers(200, &[("cache-control", "must-understand, no-store, max-age=60")], ""), 200, "MISS"),
                get(NotAsked, 200, "HIT"),
            ],
        },
        Case {
            name: "must-understand with an unknown status is not stored",
            steps: &[
                get(Answers(299, &[("cache-control", "must-understand, no-store, max-age=60")], ""), 299, "MISS"),
                get(Answers(200, FRESH, ""), 200, "MISS"),
            ],
        },
        Case {
            name: "Vary: * never matches",
            steps: &[
                get(Answers(200, &[("cache-control", "max-age=60"), ("vary", "*")], ""), 200, "MISS"),
                get(Answers(200, FRESH, ""), 200, "MISS"),
            ],
        },
        // A deliberate difference (README, "What the cache stores"): a
        // response that sets a cookie is never stored, whatever it says.
        Case {
            name: "Set-Cookie is not stored",
            steps: &[
                get(Answers(200, &[("cache-control", "public, max-age=60"), ("set-cookie", "a=b")], ""), 200, "MISS"),
                get(Answers(200, FRESH, ""), 200, "MISS"),
            ],
        },
        Case {
            name: "HEAD is answered from a stored GET",
            steps: &[get(Answers(200, FRESH, "body"), 200, "MISS"), get(NotAsked, 200, "HIT").method("HEAD")],
        },
    ];
    run("RFC 9111 §3", CASES, |_| {}).await;
}

/// RFC 9111 §4.1: Vary, with what each field's syntax lets be normalised.
#[tokio::test]
async fn section_4_1_vary() {
    const VARY_LANGUAGE: &[(&str, &str)] = &[("cache-control", "max-age=60"), ("vary", "accept-language")];
    const CASES: &[Case] = &[
        Case {
            name: "the same languages in another order and case",
            steps: &[
                get_with(&[("accept-language", "en-US, fr")], Answers(200, VARY_LANGUAGE, "en"), 200, "MISS"),
                get_with(&[("accept-language", "fr,en-us")], NotAsked, 200, "HIT"),
            ],
        },
        Case {
            name: "other languages: another variant",
            steps: &[
                get_with(&[("accept-language", "en")], Answers(200, VARY_LANGUAGE, "en"), 200, "MISS"),
                get_with(&[("accept-language", "de")], Answers(200, VARY_LANGUAGE, "de"), 200, "MISS"),
                get_with(&[("accept-language", "en")], NotAsked, 200, "HIT"),
            ],
        },
        Case {
            name: "absent and empty are different",
            steps: &[
                get(Answers(200, VARY_LANGUAGE, "none"), 200, "MISS"),
                get_with(&[("accept-language", "")], Answers(200, VARY_LANGUAGE, "empty"), 200, "MISS"),
                get(NotAsked, 200, "HIT"),
            ],
        },
    ];
    run("RFC 9111 §4.1", CASES, |_| {}).await;
}
