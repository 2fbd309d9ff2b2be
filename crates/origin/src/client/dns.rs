//! Origin name resolution that outlives a DNS outage: each connection
//! resolves the member's name afresh (a changed record is used at once),
//! and when resolution fails, times out or finds nothing, the addresses it
//! last found are used for `dns_last_good_for` (catalogue F14: misses keep
//! reaching the origin while its DNS is down). Resolution runs on tokio's
//! blocking pool (getaddrinfo), never on a runtime thread.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use tokio::time::Instant;

use crate::stats::Counter;

/// Per name: when it last resolved, and to what.
type LastAnswers = HashMap<String, (Instant, Vec<SocketAddr>)>;

/// How a member's name was resolved, and what to do when it cannot be.
#[derive(Clone)]
pub(super) struct LastKnownGood {
    lookup: Lookup,
    /// Longest wait for one resolution before falling back.
    timeout: Duration,
    keep_for: Duration,
    last: Arc<Mutex<LastAnswers>>,
    used: Arc<Counter>,
}

/// Where addresses come from: the system resolver, or fixed answers in tests.
#[derive(Clone)]
enum Lookup {
    System(GaiResolver),
    /// `None`: a resolver that never answers.
    #[cfg(test)]
    Scripted(Arc<Mutex<Option<std::io::Result<Vec<SocketAddr>>>>>),
}

impl LastKnownGood {
    pub(super) fn new(timeout: Duration, keep_for: Duration, used: Arc<Counter>) -> LastKnownGood {
        LastKnownGood::with(Lookup::System(GaiResolver::new()), timeout, keep_for, used)
    }

    fn with(lookup: Lookup, timeout: Duration, keep_for: Duration, used: Arc<Counter>) -> LastKnownGood {
        LastKnownGood { lookup, timeout, keep_for, last: Arc::default(), used }
    }

    fn resolve(&mut self, name: Name) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>> {
        match &mut self.lookup {
            Lookup::System(gai) => {
                let resolving = tower_service::Service::call(gai, name);
                Box::pin(async move { Ok(resolving.await?.collect()) })
            }
            #[cfg(test)]
            Lookup::Scripted(answer) => {
                let answer = match &*answer.lock().unwrap_or_else(|p| p.into_inner()) {
                    Some(Ok(addrs)) => Some(Ok(addrs.clone())),
                    Some(Err(e)) => Some(Err(std::io::Error::new(e.kind(), e.to_string()))),
                    None => None,
                };
                Box::pin(async move {
                    match answer {
                        Some(answer) => answer,
                        None => std::future::pending().await,
                    }
                })
            }
        }
    }
}

impl tower_service::Service<Name> for LastKnownGood {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // getaddrinfo runs on the blocking pool: always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let host = name.as_str().to_owned();
        let resolving = self.resolve(name);
        let (timeout, keep_for, last, used) =
            (self.timeout, self.keep_for, Arc::clone(&self.last), Arc::clone(&self.used));
        Box::pin(async move {
            let failure = match tokio::time::timeout(timeout, resolving).await {
                Ok(Ok(addrs)) if !addrs.is_empty() => {
                    last.lock().unwrap_or_else(|p| p.into_inner()).insert(host, (Instant::now(), addrs.clone()));
                    return Ok(addrs.into_iter());
                }
                Ok(Ok(_)) => std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host}: no address")),
                Ok(Err(error)) => error,
                Err(_) => std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("{host}: no answer from DNS in {timeout:?}"),
                ),
            };
            let known = last.lock().unwrap_or_else(|p| p.into_inner()).get(&host).cloned();
            match known {
                Some((found, addrs)) if found.elapsed() <= keep_for => {
                    used.inc();
                    tracing::warn!(%host, error = %failure, age = ?found.elapsed(), "origin DNS failed: using the addresses it last gave");
                    Ok(addrs.into_iter())
                }
                _ => Err(failure),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;
    use tower_service::Service;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_lookup_uses_the_last_good_answer_for_a_while() {
        let answer = Arc::new(Mutex::new(Some(Ok(vec![addr("192.0.2.1:0")]))));
        let used = Arc::new(Counter::default());
        let mut resolver = LastKnownGood::with(
            Lookup::Scripted(Arc::clone(&answer)),
            Duration::from_secs(2),
            Duration::from_secs(60),
            Arc::clone(&used),
        );
        let name = || Name::from_str("origin.test").unwrap();
        let got: Vec<_> = resolver.call(name()).await.unwrap().collect();
        assert_eq!(got, [addr("192.0.2.1:0")]);
        // SERVFAIL (an error), then an empty answer: the last good one.
        *answer.lock().unwrap() = Some(Err(std::io::Error::other("SERVFAIL")));
        let got: Vec<_> = resolver.call(name()).await.unwrap().collect();
        assert_eq!(got, [addr("192.0.2.1:0")]);
        *answer.lock().unwrap() = Some(Ok(Vec::new()));
        assert!(resolver.call(name()).await.is_ok());
        // A resolver that never answers: the last good answer after the timeout.
        *answer.lock().unwrap() = None;
        let started = Instant::now();
        let got: Vec<_> = resolver.call(name()).await.unwrap().collect();
        assert_eq!((got, started.elapsed()), (vec![addr("192.0.2.1:0")], Duration::from_secs(2)));
        assert_eq!(used.get(), 3);
        // A changed record is used at once.
        *answer.lock().unwrap() = Some(Ok(vec![addr("192.0.2.2:0")]));
        let got: Vec<_> = resolver.call(name()).await.unwrap().collect();
        assert_eq!(got, [addr("192.0.2.2:0")]);
        // Past the window, a failure is a failure.
        *answer.lock().unwrap() = Some(Err(std::io::Error::other("SERVFAIL")));
        tokio::time::advance(Duration::from_secs(61)).await;
        let error = resolver.call(name()).await.unwrap_err();
        assert!(error.to_string().contains("SERVFAIL"), "{error}");
        // A name never resolved has nothing to fall back on.
        assert!(resolver.call(Name::from_str("other.test").unwrap()).await.is_err());
    }
}
