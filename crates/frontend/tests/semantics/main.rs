//! HTTP caching semantics, section by section (RFC 9111, RFC 9213), as
//! tables: each case is a sequence of client requests, what the origin
//! answers when it is asked (or that it must not be asked), and the status
//! and `x-cache` the client must get. The handler runs in process in front
//! of a scripted origin; time is never waited for (staleness comes from
//! `Age`, `max-age=0` and dates in the past).

#[path = "../support/mod.rs"]
mod support;

mod freshness;
mod partial;
mod storing;
mod targeted;
mod validation;

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
