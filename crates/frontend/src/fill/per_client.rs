//! Origin fills per client (`cache.max_fills_per_client`).
//!
//! One client address (IPv6: its /64) may lead at most so many fills at
//! once. Its next miss for a key nobody is fetching waits for one of its
//! own fills to end, for at most `cache.client_fill_wait`, and is then
//! answered 429 (or with its stale copy). A flood of never-seen keys from
//! one address (cache-busting query strings, catalogue S30) then holds a
//! bounded share of the node's fills and origin connections, and every
//! other client's misses go on. Joining a fill that is already running
//! costs the origin nothing and is never held back.
//!
//! Off by default, as `server.max_connections_per_client`: behind a load
//! balancer that does not keep client addresses, every client has the
//! same one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::connections::client_key;

/// The client address a request came from, set by the listeners as a
/// request extension when fills are limited per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

/// The fills each client leads, within its limit.
#[derive(Debug)]
pub(crate) struct ClientFills {
    max: usize,
    wait: Duration,
    /// Per client with fills running or waiting: its semaphore, and how
    /// many permits and waiters it has. Removed at zero, so the map only
    /// ever holds the clients with misses in flight.
    clients: Mutex<HashMap<IpAddr, (Arc<Semaphore>, usize)>>,
    waiting: AtomicUsize,
    shed: AtomicU64,
}

/// A client's share of its limit, held by the fill it leads until it ends.
#[derive(Debug)]
pub(crate) struct ClientFillPermit {
    _permit: OwnedSemaphorePermit,
    _user: User,
}

/// One permit or waiter of a client: counted in its entry until dropped.
#[derive(Debug)]
struct User {
    owner: Arc<ClientFills>,
    client: IpAddr,
}

impl Drop for User {
    fn drop(&mut self) {
        let mut clients = self.owner.lock();
        if let Some((_, users)) = clients.get_mut(&self.client) {
            *users = users.saturating_sub(1);
            if *users == 0 {
                clients.remove(&self.client);
            }
        }
    }
}

/// Counts a request while it waits for its client's semaphore.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ClientFills {
    /// `None` when `max` is 0 (no limit).
    pub(crate) fn new(max: usize, wait: Duration) -> Option<Arc<ClientFills>> {
        (max > 0).then(|| {
            Arc::new(ClientFills {
                max,
                wait,
                clients: Mutex::default(),
                waiting: AtomicUsize::new(0),
                shed: AtomicU64::new(0),
            })
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, (Arc<Semaphore>, usize)>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A permit to lead one more fill for `client`, waiting for one of its
    /// fills to end if it leads its maximum; `None` after the wait.
    pub(crate) async fn acquire(self: &Arc<Self>, client: IpAddr) -> Option<ClientFillPermit> {
        let client = client_key(client);
        let semaphore = {
            let mut clients = self.lock();
            let (semaphore, users) = clients.entry(client).or_insert_with(|| (Arc::new(Semaphore::new(self.max)), 0));
            *users += 1;
            Arc::clone(semaphore)
        };
        let user = User { owner: Arc::clone(self), client };
        let permit = match Arc::clone(&semaphore).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.waiting.fetch_add(1, Ordering::Relaxed);
                let _waiting = Waiting(&self.waiting);
                match tokio::time::timeout(self.wait, semaphore.acquire_owned()).await {
                    Ok(Ok(permit)) => permit,
                    _ => {
                        self.shed.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                }
            }
        };
        Some(ClientFillPermit { _permit: permit, _user: user })
    }

    /// Misses waiting for their client's fills now.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Misses answered 429 after waiting.
    pub(crate) fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// Clients with fills running or waiting.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[tokio::test(start_paused = true)]
    async fn a_client_waits_for_its_own_fills_and_others_do_not() {
        let fills = ClientFills::new(2, Duration::from_secs(10)).unwrap();
        let first = fills.acquire(A).await.unwrap();
        let _second = fills.acquire(A).await.unwrap();
        let _other = fills.acquire(B).await.expect("another client has its own share");
        let third = tokio::spawn({
            let fills = Arc::clone(&fills);
            async move { fills.acquire(A).await.is_some() }
        });
        while fills.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        drop(first);
        assert!(third.await.unwrap(), "a fill that ended lets the next one start");
        assert_eq!(fills.shed(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_is_bounded_and_idle_clients_are_forgotten() {
        let fills = ClientFills::new(1, Duration::from_secs(10)).unwrap();
        let held = fills.acquire(A).await.unwrap();
        assert!(fills.acquire(A).await.is_none(), "nothing ended within the wait");
        assert_eq!((fills.shed(), fills.waiting()), (1, 0));
        // A waiter whose client went away leaves no trace.
        let gone = tokio::spawn({
            let fills = Arc::clone(&fills);
            async move { fills.acquire(A).await.is_some() }
        });
        while fills.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        gone.abort();
        assert!(gone.await.is_err());
        assert_eq!(fills.waiting(), 0);
        drop(held);
        assert_eq!(fills.tracked(), 0, "no entry for a client with nothing in flight");
        assert!(ClientFills::new(0, Duration::ZERO).is_none(), "0: no limit");
    }
}
