//! The answer to `GET /stats`, read from the live counters: what the CLI's
//! `holdfast stats` prints and what the dashboard polls.

use holdfast_control::{BudgetUse, DiskStats, MemberStats, MemoryStats, OriginGroupStats, Stats};
use holdfast_frontend::CacheResult;

use crate::admin::Admin;

/// The node's version, as `holdfast --version` prints it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Reads every figure once.
pub(crate) fn read(admin: &Admin) -> Stats {
    let handler = &admin.handler;
    let results = handler.results();
    let count = |r: CacheResult| results.iter().find(|(x, _)| *x == r).map_or(0, |(_, n)| *n);
    let hits = count(CacheResult::Hit) + count(CacheResult::Stale) + count(CacheResult::Revalidated);
    let lookups = hits + count(CacheResult::Miss);
    let store = handler.store();
    store.run_pending_tasks();
    let memory = store.stats();
    let disk = handler.disk().map(|d| {
        let s = d.stats();
        DiskStats {
            blobs: s.blobs,
            corrupt: s.corrupt,
            evictions: s.evictions,
            files: s.files,
            full: s.full,
            hits: s.hits,
            limit_bytes: s.max_bytes,
            limit_files: s.max_files,
            objects_bytes: s.bytes,
            scanned: s.scanned,
            write_errors: s.write_errors,
        }
    });
    let (fills, waiters) = handler.fills_in_flight();
    let budget = handler.fill_budget();
    Stats {
        coalesced_waiters: waiters,
        config_path: admin.reloader.config_path().map(|p| p.display().to_string()),
        disk,
        fill_buffer: BudgetUse { limit_bytes: budget.limit(), used_bytes: budget.used() },
        fills_in_flight: fills,
        fills_limit: admin.fills_limit,
        hit_ratio: if lookups == 0 { 0.0 } else { hits as f64 / lookups as f64 },
        memory: MemoryStats {
            blobs: memory.blobs,
            bytes: memory.body_bytes,
            evictions: memory.evictions,
            limit_bytes: memory.memory_limit,
            objects: memory.objects,
            used_bytes: memory.memory_bytes,
        },
        origins: origins(admin),
        ready: admin.readiness.is_ready(),
        recent_purges: admin.purges.recent(),
        responses: results.iter().map(|(r, n)| (r.as_str().to_owned(), *n)).collect(),
        uptime_s: admin.started.elapsed().as_secs(),
        version: VERSION.to_owned(),
    }
}

fn origins(admin: &Admin) -> Vec<OriginGroupStats> {
    admin
        .reloader
        .origins()
        .iter()
        .map(|(site, client)| {
            let s = client.stats().snapshot();
            let members = client
                .members()
                .into_iter()
                .map(|m| MemberStats {
                    breaker: m.breaker.as_str().to_owned(),
                    consecutive_failures: m.consecutive_failures,
                    fallback: m.fallback,
                    in_use: m.in_use,
                    latency_count: m.latency_count,
                    latency_us_total: m.latency_us_total,
                    origin: m.origin,
                })
                .collect();
            OriginGroupStats {
                budget_exhausted: s.budget_exhausted,
                busy: s.busy,
                ejections: s.ejections,
                failures: s.failures,
                holds: s.holds,
                members,
                panic_routed: s.panic_routed,
                relayed_errors: s.relayed_errors,
                requests: s.requests,
                retries: s.retries,
                site: site.clone(),
            }
        })
        .collect()
}
