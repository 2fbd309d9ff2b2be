//! Bounds on open connections, per listener kind and per client address,
//! so a flood of connections cannot exhaust file descriptors or memory and
//! take the node down for everyone; every refusal is counted for `/metrics`.
//!
//! IPv6 clients are counted per /64: one host usually owns a whole /64, so
//! a per-address limit would not hold it back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// How many connections a listener kind keeps open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections in all; beyond it new ones are refused.
    pub max: usize,
    /// Open connections per client address (IPv6: per /64); 0 means no
    /// per-address limit (the default: behind a load balancer that does
    /// not keep client addresses, every client has the same one).
    pub max_per_client: usize,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The listener kind is at its limit.
    Total,
    /// This client address is at its limit.
    PerClient,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Total => "limit",
            Refusal::PerClient => "per-client-limit",
        }
    }
}

/// Counts open connections and admits new ones within the limits.
#[derive(Debug)]
pub struct ConnectionLimiter {
    limits: ConnectionLimits,
    open: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    accepted: AtomicU64,
    refused_total: AtomicU64,
    refused_per_client: AtomicU64,
}

/// Counters of one limiter, for stats and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionCounts {
    pub open: usize,
    pub accepted: u64,
    pub refused_total: u64,
    pub refused_per_client: u64,
}

impl ConnectionLimiter {
    pub fn new(limits: ConnectionLimits) -> Arc<ConnectionLimiter> {
        Arc::new(ConnectionLimiter {
            limits,
            open: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
            accepted: AtomicU64::new(0),
            refused_total: AtomicU64::new(0),
            refused_per_client: AtomicU64::new(0),
        })
    }

    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    /// Admits a connection from `client`, or says why not. The permit keeps
    /// the connection counted until it is dropped.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<ConnectionPermit, Refusal> {
        let previous = self.open.fetch_add(1, Ordering::AcqRel);
        if previous >= self.limits.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            self.refused_total.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Total);
        }
        let client = if self.limits.max_per_client > 0 {
            let key = client_key(client);
            let mut per_client = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
            let count = per_client.entry(key).or_insert(0);
            if *count >= self.limits.max_per_client {
                drop(per_client);
                self.open.fetch_sub(1, Ordering::AcqRel);
                self.refused_per_client.fetch_add(1, Ordering::Relaxed);
                return Err(Refusal::PerClient);
            }
            *count += 1;
            Some(key)
        } else {
            None
        };
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(ConnectionPermit { limiter: Arc::clone(self), client })
    }

    pub fn counts(&self) -> ConnectionCounts {
        ConnectionCounts {
            open: self.open.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            refused_total: self.refused_total.load(Ordering::Relaxed),
            refused_per_client: self.refused_per_client.load(Ordering::Relaxed),
        }
    }
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct ConnectionPermit {
    limiter: Arc<ConnectionLimiter>,
    client: Option<IpAddr>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.limiter.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(key) = self.client {
            let mut per_client = self.limiter.per_client.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(count) = per_client.get_mut(&key) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    per_client.remove(&key);
                }
            }
        }
    }
}

/// IPv4 addresses as they are; IPv6 addresses by their /64 prefix (an
/// IPv4-mapped address counts as its IPv4 address).
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_total_limit_refuses_and_frees_on_drop() {
        let limiter = ConnectionLimiter::new(ConnectionLimits { max: 2, max_per_client: 0 });
        let a = limiter.admit(ip("10.0.0.1")).unwrap();
        let _b = limiter.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(limiter.admit(ip("10.0.0.3")).unwrap_err(), Refusal::Total);
        drop(a);
        assert!(limiter.admit(ip("10.0.0.3")).is_ok());
        let counts = limiter.counts();
        assert_eq!((counts.accepted, counts.refused_total), (3, 1));
    }

    #[test]
    fn per_client_limits_group_ipv6_by_prefix() {
        let limiter = ConnectionLimiter::new(ConnectionLimits { max: 100, max_per_client: 2 });
        let _a = limiter.admit(ip("2001:db8::1")).unwrap();
        let _b = limiter.admit(ip("2001:db8::ffff:2")).unwrap();
        assert_eq!(limiter.admit(ip("2001:db8::3")).unwrap_err(), Refusal::PerClient, "same /64");
        assert!(limiter.admit(ip("2001:db8:0:1::1")).is_ok(), "another /64");
        let _c = limiter.admit(ip("192.0.2.1")).unwrap();
        let _d = limiter.admit(ip("::ffff:192.0.2.1")).unwrap();
        assert_eq!(limiter.admit(ip("192.0.2.1")).unwrap_err(), Refusal::PerClient, "mapped counts as v4");
        assert_eq!(limiter.counts().open, 4);
    }

    #[test]
    fn dropped_permits_leave_no_per_client_entry() {
        let limiter = ConnectionLimiter::new(ConnectionLimits { max: 10, max_per_client: 1 });
        for _ in 0..100 {
            drop(limiter.admit(ip("10.1.1.1")).unwrap());
        }
        assert!(limiter.per_client.lock().unwrap().is_empty());
        assert_eq!(limiter.counts().open, 0);
    }
}
