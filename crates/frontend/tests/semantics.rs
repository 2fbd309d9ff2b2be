//! HTTP caching semantics, section by section (RFC 9111, RFC 9213), as
//! tables: each case is a sequence of client requests, what the origin
//! answers when it is asked (or that it must not be asked), and the status
//! and `x-cache` the client must get. The handler runs in process in front
//! of a scripted origin; time is never waited for (staleness comes from
//! `Age`, `max-age=0` and dates in the past).

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use holdfast_frontend::HandlerConfig;
use http::{HeaderName, Method};
use support::{Got, Scripted, failure, handler, reply, request, settle};

/// What the origin does when a step reaches it.
#[derive(Clone, Copy)]
enum Origin {
    /// The step must be answered without the origin.
    NotAsked,
    /// Status, fields, body.
    Answers(u16, &'static [(&'static str, &'static str)], &'static str),
    /// No response (connection refused, timeout): the upstream's error.
    Fails(u16),
}

use Origin::{Answers, Fails, NotAsked};

/// One client request and what must come of it.
struct Step {
    method: &'static str,
    path: &'static str,
    request: &'static [(&'static str, &'static str)],
    origin: Origin,
    status: u16,
    x_cache: &'static str,
    /// Response fields that must be present with this value (`Some`) or absent (`None`).
    fields: &'static [(&'static str, Option<&'static str>)],
    /// The body the client must get, when it matters.
    body: Option<&'static str>,
}

const fn get(origin: Origin, status: u16, x_cache: &'static str) -> Step {
    Step { method: "GET", path: "/r", request: &[], origin, status, x_cache, fields: &[], body: None }
}

const fn get_with(
    request: &'static [(&'static str, &'static str)],
    origin: Origin,
    status: u16,
    x_cache: &'static str,
) -> Step {
    Step { method: "GET", path: "/r", request, origin, status, x_cache, fields: &[], body: None }
}

impl Step {
    const fn at(mut self, path: &'static str) -> Step {
        self.path = path;
        self
    }

    const fn method(mut self, method: &'static str) -> Step {
        self.method = method;
        self
    }

    const fn fields(mut self, fields: &'static [(&'static str, Option<&'static str>)]) -> Step {
        self.fields = fields;
        self
    }

    const fn body(mut self, body: &'static str) -> Step {
        self.body = Some(body);
        self
    }
}

struct Case {
    name: &'static str,
    steps: &'static [Step],
}

/// Runs every case of a section on a fresh handler each, and reports all
/// failing rows at once.
async fn run(section: &str, cases: &[Case], tweak: fn(&mut HandlerConfig)) {
    let mut failures = Vec::new();
    for case in cases {
        if let Err(failure) = run_case(case, tweak).await {
            failures.push(format!("{section} / {}: {failure}", case.name));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

async fn run_case(case: &Case, tweak: fn(&mut HandlerConfig)) -> Result<(), String> {
    let queue: Arc<Mutex<VecDeque<Origin>>> = Arc::default();
    let script = Arc::clone(&queue);
    let origin = Scripted::new(move |_, _| {
        let next = script.lock().unwrap().pop_front();
        Box::pin(async move {
            match next {
                Some(Answers(status, fields, body)) => reply(status, fields, body),
                Some(Fails(status)) => failure(status, "origin unreachable"),
                _ => failure(599, "the origin was asked when it should not have been"),
            }
        })
    });
    let handler = handler(Arc::clone(&origin), |c| {
        c.pass_methods = vec![Method::POST, Method::PUT, Method::DELETE];
        tweak(c)
    });
    let mut expected_fetches = 0;
    for (i, step) in case.steps.iter().enumerate() {
        if !matches!(step.origin, NotAsked) {
            queue.lock().unwrap().push_back(step.origin);
            expected_fetches += 1;
        }
        let got = request(&handler, step.method, step.path, step.request).await;
        settle(&handler).await;
        check(step, &got, origin.fetches(), expected_fetches).map_err(|e| format!("step {}: {e}", i + 1))?;
    }
    Ok(())
}

fn check(step: &Step, got: &Got, fetches: usize, expected_fetches: usize) -> Result<(), String> {
    if fetches != expected_fetches {
        return Err(format!("the origin was asked {fetches} times, expected {expected_fetches}"));
    }
    if (got.status, got.x_cache.as_str()) != (step.status, step.x_cache) {
        return Err(format!("got {} {}, expected {} {}", got.status, got.x_cache, step.status, step.x_cache));
    }
    if let Some(expected) = step.body {
        let body = got.body.as_ref().map_err(|e| format!("body: {e}"))?;
        if body.as_ref() != expected.as_bytes() {
            return Err(format!("body {:?}, expected {expected:?}", String::from_utf8_lossy(body)));
        }
    }
    for (name, value) in step.fields {
        let actual = got.headers.get(HeaderName::from_static(name)).and_then(|v| v.to_str().ok());
        if actual != *value {
            return Err(format!("{name}: got {actual:?}, expected {value:?}"));
        }
    }
    Ok(())
}

const FRESH: &[(&str, &str)] = &[("cache-control", "max-age=3600")];
const STALE_WITH_ETAG: &[(&str, &str)] = &[("cache-control", "max-age=0"), ("etag", "\"v1\"")];

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

/// RFC 9213: targeted cache control, and Surrogate-Control.
#[tokio::test]
async fn rfc_9213_targeted_cache_control() {
    const CASES: &[Case] = &[
        Case {
            name: "CDN-Cache-Control over Cache-Control, and not sent to clients",
            steps: &[
                get(
                    Answers(200, &[("cache-control", "no-store"), ("cdn-cache-control", "max-age=600")], ""),
                    200,
                    "MISS",
                )
                .fields(&[("cdn-cache-control", None), ("cache-control", Some("no-store"))]),
                get(NotAsked, 200, "HIT").fields(&[("cdn-cache-control", None)]),
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
